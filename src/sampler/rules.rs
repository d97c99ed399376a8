//! Compiled rules: globs precompiled, cheap constraints checked first.

use opentelemetry::trace::SpanKind;
use opentelemetry::{KeyValue, Value};
use opentelemetry_semantic_conventions::attribute::{HTTP_REQUEST_METHOD, HTTP_ROUTE};

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
    Glob(globset::GlobMatcher),
}

const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}', '\\', '!'];

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
        if !escaped.contains(GLOB_META) {
            return Ok(RouteMatcher::Exact(pattern.to_owned()));
        }
        if let Some(prefix) = pattern.strip_suffix("/**")
            && !prefix.contains(GLOB_META)
        {
            return Ok(RouteMatcher::Below(prefix.to_owned()));
        }
        let glob = globset::GlobBuilder::new(&escaped)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| Error::config(field, pattern, format!("invalid glob: {}", e.kind())))?;
        Ok(RouteMatcher::Glob(glob.compile_matcher()))
    }

    #[inline]
    pub(crate) fn is_match(&self, route: &str) -> bool {
        match self {
            RouteMatcher::Exact(p) => p == route,
            RouteMatcher::Below(prefix) => route
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            RouteMatcher::Glob(m) => m.is_match(route),
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

pub(crate) fn validate_method(field: &str, method: &str) -> Result<(), Error> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || method.len() > 32 || !method.bytes().all(is_tchar) {
        return Err(Error::config(field, method, "not an HTTP method token"));
    }
    Ok(())
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
    pub(crate) threshold: Threshold,
    pub(crate) reason: Value,
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
            ("/files/{*rest}", "/files/{*rest}", true),
            ("/health*", "/healthz", true),
            ("/users/{id}/*", "/users/{id}/posts", true),
        ];
        for (pattern, route, expected) in cases {
            let m = RouteMatcher::new("r", pattern).unwrap();
            assert_eq!(m.is_match(route), *expected, "{pattern} vs {route} ({m:?})");
        }
    }

    #[test]
    fn bad_globs_and_methods_are_errors() {
        assert!(RouteMatcher::new("r", "").is_err());
        assert!(RouteMatcher::new("r", "/a/[b").is_err());
        assert!(RouteMatcher::new("r", &"a".repeat(2000)).is_err());
        assert!(validate_method("m", "GET").is_ok());
        assert!(validate_method("m", "").is_err());
        assert!(validate_method("m", "GE T").is_err());
    }
}
