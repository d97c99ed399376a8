//! Compiled rules: globs precompiled, cheap constraints checked first.

use opentelemetry::trace::SpanKind;
use opentelemetry::{KeyValue, Value};
use opentelemetry_semantic_conventions::attribute::{HTTP_REQUEST_METHOD, HTTP_ROUTE};

#[cfg(test)]
use super::config::validate;
use super::config::{AttributeMatch, RuleSpanKind};
use super::consistent::Threshold;
use crate::Error;

/// A route template matcher. Literal patterns and `prefix/**` patterns avoid the
/// regex engine, which covers most real configurations.
#[derive(Debug)]
pub(crate) enum RouteMatcher {
    Exact(String),
    /// `prefix/**`: the prefix itself or anything below it.
    Below(String),
    /// A general glob. `prefix`/`suffix` are the literal text every match starts and
    /// ends with; checking them first skips the regex engine for most routes.
    /// An alternation (`{a,b}`) expanded into simpler matchers.
    Any(Vec<RouteMatcher>),
    Glob {
        matcher: globset::GlobMatcher,
        prefix: String,
        suffix: String,
    },
}

const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

impl RouteMatcher {
    pub(crate) fn new(field: &str, pattern: &str) -> Result<Self, Error> {
        if pattern.is_empty() {
            return Err(Error::config(field, pattern, "empty route glob"));
        }
        if pattern.len() > 1024 {
            return Err(Error::config(
                field,
                pattern,
                "route glob longer than 1024 bytes",
            ));
        }
        let escaped = escape_route_params(pattern);
        // Validate the pattern as written, so errors name the user's glob.
        globset::GlobBuilder::new(&escaped)
            .literal_separator(true)
            .backslash_escape(true)
            .empty_alternates(true)
            .build()
            .map_err(|e| Error::config(field, pattern, format!("invalid glob: {}", e.kind())))?;
        match expand_alternation(&escaped) {
            Some(alternatives) if alternatives.len() > 1 => {
                let compiled = alternatives
                    .iter()
                    .map(|alt| Self::compile(field, pattern, alt))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(RouteMatcher::Any(compiled))
            }
            _ => Self::compile(field, pattern, &escaped),
        }
    }

    /// Compiles one escaped pattern without alternations (or with too many to expand).
    fn compile(field: &str, pattern: &str, escaped: &str) -> Result<Self, Error> {
        let (prefix, suffix) = literal_ends(escaped);
        let Some(suffix) = suffix else {
            return Ok(RouteMatcher::Exact(prefix));
        };
        if let Some(stem) = escaped.strip_suffix("/**") {
            let (stem_prefix, stem_suffix) = literal_ends(stem);
            if stem_suffix.is_none() {
                return Ok(RouteMatcher::Below(stem_prefix));
            }
        }
        let glob = globset::GlobBuilder::new(escaped)
            .literal_separator(true)
            .backslash_escape(true)
            .empty_alternates(true)
            .build()
            .map_err(|e| Error::config(field, pattern, format!("invalid glob: {}", e.kind())))?;
        Ok(RouteMatcher::Glob {
            matcher: glob.compile_matcher(),
            prefix,
            suffix,
        })
    }

    #[inline]
    pub(crate) fn is_match(&self, route: &str) -> bool {
        match self {
            RouteMatcher::Exact(p) => p == route,
            RouteMatcher::Any(all) => all.iter().any(|m| m.is_match(route)),
            RouteMatcher::Below(prefix) => route
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            RouteMatcher::Glob {
                matcher,
                prefix,
                suffix,
            } => {
                route.starts_with(prefix.as_str())
                    && route.ends_with(suffix.as_str())
                    && matcher.is_match(route)
            }
        }
    }
}

/// Route templates use `{id}` / `{*rest}` for parameters, which globset would read as
/// a one-way alternation (`{id}` matching the text `id`). A brace group without a
/// comma is therefore escaped to match literally; `{a,b}` stays an alternation.
fn escape_route_params(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        match after.find('}') {
            Some(close) if !after[..close].contains(',') && !after[1..close].contains('{') => {
                out.push_str("\\{");
                for c in after[1..close].chars() {
                    if GLOB_META.contains(&c) {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push_str("\\}");
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Most alternatives a pattern is expanded into; beyond, the regex engine matches it.
const MAX_EXPANSIONS: usize = 32;

/// Expands unescaped, non-nested `{a,b}` groups of an escaped pattern into the
/// list of patterns they stand for. `None` when a group is nested, unclosed or the
/// expansion would exceed [`MAX_EXPANSIONS`]; then globset matches the pattern.
fn expand_alternation(escaped: &str) -> Option<Vec<String>> {
    let bytes = escaped.as_bytes();
    let mut i = 0;
    let mut open = None;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' => return None, // a class may contain braces; leave it to globset
            b'{' => {
                open = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let Some(open) = open else {
        return Some(vec![escaped.to_owned()]);
    };
    let mut alternatives = Vec::new();
    let mut start = open + 1;
    let mut j = open + 1;
    let close = loop {
        match bytes.get(j)? {
            b'\\' => j += 1,
            b'{' | b'[' => return None,
            b',' => {
                alternatives.push(&escaped[start..j]);
                start = j + 1;
            }
            b'}' => {
                alternatives.push(&escaped[start..j]);
                break j;
            }
            _ => {}
        }
        j += 1;
    };
    let head = &escaped[..open];
    let tails = expand_alternation(&escaped[close + 1..])?;
    if alternatives.len().saturating_mul(tails.len()) > MAX_EXPANSIONS {
        return None;
    }
    let mut out = Vec::with_capacity(alternatives.len() * tails.len());
    for alt in alternatives {
        for tail in &tails {
            out.push(format!("{head}{alt}{tail}"));
        }
    }
    Some(out)
}

/// The literal text before the first and after the last glob operator of an
/// escaped pattern (backslash escapes resolved). The suffix is `None` when the
/// whole pattern is literal (then the prefix is all of it).
fn literal_ends(escaped: &str) -> (String, Option<String>) {
    // (char, is_literal) tokens.
    let mut tokens = Vec::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    tokens.push((next, true));
                }
            }
            c if GLOB_META.contains(&c) => tokens.push((c, false)),
            c => tokens.push((c, true)),
        }
    }
    let prefix: String = tokens.iter().take_while(|t| t.1).map(|t| t.0).collect();
    if prefix.len() == tokens.len() {
        return (prefix, None);
    }
    let mut suffix: Vec<char> = tokens
        .iter()
        .rev()
        .take_while(|t| t.1)
        .map(|t| t.0)
        .collect();
    suffix.reverse();
    (prefix, Some(suffix.into_iter().collect()))
}

/// The attributes a decision reads, found in one pass.
#[derive(Default)]
pub(crate) struct SpanFacts<'a> {
    pub(crate) route: Option<&'a str>,
    pub(crate) method: Option<&'a str>,
}

impl<'a> SpanFacts<'a> {
    pub(crate) fn read(attributes: &'a [KeyValue]) -> Self {
        let mut facts = SpanFacts::default();
        for kv in attributes {
            let key = kv.key.as_str();
            if key == HTTP_ROUTE {
                if let Value::String(s) = &kv.value {
                    facts.route = Some(s.as_str());
                }
            } else if key == HTTP_REQUEST_METHOD
                && let Value::String(s) = &kv.value
            {
                facts.method = Some(s.as_str());
            }
        }
        facts
    }
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) route: Option<RouteMatcher>,
    pub(crate) method: Option<String>,
    pub(crate) kind: Option<RuleSpanKind>,
    pub(crate) attributes: Vec<(String, AttributeMatch)>,
    pub(crate) outcome: Outcome,
}

/// A probabilistic outcome, precomputed: the threshold, the `sampling.reason`
/// value, and the tracestate a root without parent tracestate gets when kept.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) threshold: Threshold,
    pub(crate) reason: Value,
    pub(crate) root_state: opentelemetry::trace::TraceState,
}

impl Outcome {
    pub(crate) fn new(threshold: Threshold, reason: Value) -> Self {
        let root_state = super::consistent::with_threshold(
            &opentelemetry::trace::TraceState::NONE,
            Some(threshold),
        );
        Outcome {
            threshold,
            reason,
            root_state,
        }
    }
}

impl CompiledRule {
    #[inline]
    pub(crate) fn matches(
        &self,
        kind: &SpanKind,
        facts: &SpanFacts<'_>,
        attributes: &[KeyValue],
    ) -> bool {
        if let Some(k) = self.kind
            && !k.matches(kind)
        {
            return false;
        }
        if let Some(m) = &self.method
            && !facts
                .method
                .is_some_and(|actual| actual.eq_ignore_ascii_case(m))
        {
            return false;
        }
        if let Some(r) = &self.route
            && !facts.route.is_some_and(|route| r.is_match(route))
        {
            return false;
        }
        self.attributes.iter().all(|(key, expected)| {
            attributes
                .iter()
                .any(|kv| kv.key.as_str() == key && expected.matches(&kv.value))
        })
    }
}

#[derive(Debug)]
pub(crate) struct CompiledHighValue {
    pub(crate) route: RouteMatcher,
    pub(crate) method: Option<String>,
}

impl CompiledHighValue {
    #[inline]
    pub(crate) fn matches(&self, facts: &SpanFacts<'_>) -> bool {
        if let Some(m) = &self.method
            && !facts
                .method
                .is_some_and(|actual| actual.eq_ignore_ascii_case(m))
        {
            return false;
        }
        facts.route.is_some_and(|route| self.route.is_match(route))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_matchers() {
        let cases: &[(&str, &str, bool)] = &[
            ("/checkout", "/checkout", true),
            ("/checkout", "/checkout/x", false),
            ("/orders/{id}", "/orders/{id}", true),
            ("/orders/{id}", "/orders/id", false),
            ("/orders/{id}", "/orders/42", false),
            ("/api/**", "/api", true),
            ("/api/**", "/api/orders/{id}", true),
            ("/api/**", "/apix", false),
            ("/api/*", "/api/orders", true),
            ("/api/*", "/api/orders/{id}", false),
            ("/{a,b}/x", "/a/x", true),
            ("/{a,b}/x", "/c/x", false),
            ("/{a,b*}/x", "/bzz/x", true),
            ("/{a,}x", "/x", true),
            ("/files/{*rest}", "/files/{*rest}", true),
            ("/health*", "/healthz", true),
            ("/users/{id}/*", "/users/{id}/posts", true),
            ("/users/*/posts", "/users/{id}/posts", true),
            ("/users/*/posts", "/users/{id}/post", false),
            ("/users/*/posts", "/users/posts", false),
            ("/a\\*b", "/a*b", true),
            ("/a\\*b", "/axb", false),
            ("/{v1,v2}/**", "/v2/orders/{id}", true),
            ("/{v1,v2}/**", "/v3/orders", false),
            ("*", "/", false),
            ("/**", "/", true),
        ];
        for (pattern, route, expected) in cases {
            let m = RouteMatcher::new("r", pattern).unwrap();
            assert_eq!(m.is_match(route), *expected, "{pattern} vs {route} ({m:?})");
        }
    }

    #[test]
    fn literal_ends_of_patterns() {
        let ends = |p: &str, a: &str, b: Option<&str>| {
            assert_eq!(literal_ends(p), (a.to_owned(), b.map(str::to_owned)), "{p}");
        };
        ends("/users/*/posts", "/users/", Some("/posts"));
        ends("/a\\*b*", "/a*b", Some(""));
        ends("{a,b}/x", "", Some("/x"));
        ends("/orders/\\{id\\}", "/orders/{id}", None);
        // Parameters become literal, so these need no regex.
        let kind = |p: &str| match RouteMatcher::new("r", p).unwrap() {
            RouteMatcher::Exact(_) => "exact",
            RouteMatcher::Below(_) => "below",
            RouteMatcher::Glob { .. } => "glob",
            RouteMatcher::Any(_) => "any",
        };
        assert_eq!(kind("/orders/{id}"), "exact");
        assert_eq!(kind("/orders/{id}/**"), "below");
        assert_eq!(kind("/orders/*"), "glob");
        assert_eq!(kind("/{v1,v2}/**"), "any");
        assert_eq!(
            expand_alternation("/{a,b}/x/{c,d}").unwrap(),
            ["/a/x/c", "/a/x/d", "/b/x/c", "/b/x/d"]
        );
        assert_eq!(expand_alternation("/{a,{b,c}}"), None);
        assert_eq!(expand_alternation("/[{]a"), None);
        assert_eq!(expand_alternation("/\\{a,b\\}").unwrap(), ["/\\{a,b\\}"]);
        let many = "/{a,b,c,d}/{a,b,c,d}/{a,b,c,d}";
        assert_eq!(expand_alternation(many), None);
        assert_eq!(kind(many), "glob");
        let m = RouteMatcher::new("r", many).unwrap();
        assert!(m.is_match("/a/b/c") && !m.is_match("/a/b/e"));
    }

    #[test]
    fn bad_globs_and_methods_are_errors() {
        assert!(RouteMatcher::new("r", "").is_err());
        assert!(RouteMatcher::new("r", "/a/[b").is_err());
        assert!(RouteMatcher::new("r", &"a".repeat(2000)).is_err());
        assert!(validate::method("m", "GET").is_ok());
        assert!(validate::method("m", "").is_err());
        assert!(validate::method("m", "GE T").is_err());
    }
}
