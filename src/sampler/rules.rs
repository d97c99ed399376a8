//! Compiled rules: globs precompiled, cheap constraints checked first.
//!
//! The decision path reads the span's facts once ([`SpanFacts`]: the route with its first
//! eight bytes as a word, the method as a small id, the span kind as a bit), so that a rule
//! that does not match is usually rejected in a few integer comparisons: kind and method
//! first, then the route's length and leading word against the matcher's literal, and only
//! then a byte comparison or the glob engine.

use opentelemetry::trace::SpanKind;
use opentelemetry::{KeyValue, Value};

#[cfg(test)]
use super::config::validate;
use super::config::{AttributeMatch, RuleSpanKind};
use super::consistent::Threshold;
use crate::Error;

/// A route template matcher. Literal patterns and `prefix/**` patterns avoid the
/// regex engine, which covers most real configurations.
#[derive(Debug)]
pub(crate) enum RouteMatcher {
    Exact(Literal),
    /// `prefix/**`: the prefix itself or anything below it.
    Below(Literal),
    /// An alternation (`{a,b}`) expanded into simpler matchers.
    Any(Vec<RouteMatcher>),
    /// A general glob. `prefix`/`suffix` are the literal text every match starts and
    /// ends with; checking them first skips the regex engine for most routes.
    Glob {
        matcher: globset::GlobMatcher,
        prefix: Literal,
        suffix: String,
    },
}

/// The first eight bytes of `bytes` as a little-endian word, zero-padded.
#[inline]
fn head_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = bytes.len().min(8);
    word[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(word)
}

/// A literal a route must equal or start with. Its first eight bytes are kept as a word
/// (with a mask for shorter literals), so most routes are rejected by comparing the length
/// and one word, without a call to `memcmp`.
#[derive(Debug)]
pub(crate) struct Literal {
    text: Box<str>,
    head: u64,
    mask: u64,
}

impl Literal {
    pub(crate) fn new(text: &str) -> Self {
        let n = text.len().min(8);
        Literal {
            head: head_word(text.as_bytes()),
            mask: if n == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * n)) - 1
            },
            text: text.into(),
        }
    }

    #[inline]
    fn tail_matches(&self, route: &Route<'_>) -> bool {
        let n = self.text.len();
        n <= 8 || route.text.as_bytes()[8..n] == self.text.as_bytes()[8..]
    }

    #[inline]
    pub(crate) fn is_prefix_of(&self, route: &Route<'_>) -> bool {
        route.text.len() >= self.text.len()
            && route.head & self.mask == self.head
            && self.tail_matches(route)
    }

    #[inline]
    pub(crate) fn equals(&self, route: &Route<'_>) -> bool {
        route.text.len() == self.text.len()
            && route.head & self.mask == self.head
            && self.tail_matches(route)
    }
}

/// A route template as the matchers read it: the text and its first eight bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route<'a> {
    pub(crate) text: &'a str,
    head: u64,
}

impl<'a> Route<'a> {
    #[inline]
    pub(crate) fn new(text: &'a str) -> Self {
        Route {
            text,
            head: head_word(text.as_bytes()),
        }
    }
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
            return Ok(RouteMatcher::Exact(Literal::new(&prefix)));
        };
        if let Some(stem) = escaped.strip_suffix("/**") {
            let (stem_prefix, stem_suffix) = literal_ends(stem);
            if stem_suffix.is_none() {
                return Ok(RouteMatcher::Below(Literal::new(&stem_prefix)));
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
            prefix: Literal::new(&prefix),
            suffix,
        })
    }

    /// `(head, mask, min_len, max_len)` every matching route satisfies: its first eight bytes
    /// under `mask` equal `head`, and its length is in `min_len..=max_len`.
    fn bounds(&self) -> (u64, u64, usize, usize) {
        match self {
            RouteMatcher::Exact(l) => (l.head, l.mask, l.text.len(), l.text.len()),
            RouteMatcher::Below(l) => (l.head, l.mask, l.text.len(), usize::MAX),
            // Not the sum: `/a/**/b` matches `/a/b`, where prefix and suffix share a `/`.
            RouteMatcher::Glob { prefix, suffix, .. } => (
                prefix.head,
                prefix.mask,
                prefix.text.len().max(suffix.len()),
                usize::MAX,
            ),
            RouteMatcher::Any(all) => {
                // The bytes every alternative's bound agrees on.
                let bounds: Vec<_> = all.iter().map(RouteMatcher::bounds).collect();
                let Some(&(head, mut mask, mut min, mut max)) = bounds.first() else {
                    return (0, 0, 0, usize::MAX);
                };
                for &(h, m, lo, hi) in &bounds[1..] {
                    mask &= m & !(h ^ head);
                    min = min.min(lo);
                    max = max.max(hi);
                }
                // Keep only whole leading bytes that all agree on.
                let mut agreed = 0u64;
                for byte in 0..8 {
                    let b = 0xffu64 << (8 * byte);
                    if mask & b != b {
                        break;
                    }
                    agreed |= b;
                }
                (head & agreed, agreed, min, max)
            }
        }
    }

    /// Inlined into the rule loop: the literal checks reject most routes in a few integer
    /// comparisons; alternations and the glob engine are out of line.
    #[inline(always)]
    pub(crate) fn is_match(&self, route: &Route<'_>) -> bool {
        match self {
            RouteMatcher::Exact(literal) => literal.equals(route),
            RouteMatcher::Below(prefix) => {
                prefix.is_prefix_of(route)
                    && route
                        .text
                        .as_bytes()
                        .get(prefix.text.len())
                        .is_none_or(|&b| b == b'/')
            }
            RouteMatcher::Any(all) => any_match(all, route),
            RouteMatcher::Glob {
                matcher,
                prefix,
                suffix,
            } => prefix.is_prefix_of(route) && glob_match(matcher, suffix, route),
        }
    }
}

#[inline(never)]
fn any_match(all: &[RouteMatcher], route: &Route<'_>) -> bool {
    all.iter().any(|m| m.is_match(route))
}

#[inline(never)]
fn glob_match(matcher: &globset::GlobMatcher, suffix: &str, route: &Route<'_>) -> bool {
    route.text.ends_with(suffix) && matcher.is_match(route.text)
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

/// An HTTP method as a small id, so that rules compare one byte instead of strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MethodId {
    Missing,
    Other,
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

impl MethodId {
    /// The id of `method`, compared case-insensitively (rules always were).
    #[inline]
    pub(crate) fn of(method: &str) -> MethodId {
        let bytes = method.as_bytes();
        if bytes.len() > 7 {
            return MethodId::Other;
        }
        let mut upper = [0u8; 7];
        for (u, b) in upper.iter_mut().zip(bytes) {
            *u = b.to_ascii_uppercase();
        }
        match &upper[..bytes.len()] {
            b"GET" => MethodId::Get,
            b"HEAD" => MethodId::Head,
            b"POST" => MethodId::Post,
            b"PUT" => MethodId::Put,
            b"DELETE" => MethodId::Delete,
            b"CONNECT" => MethodId::Connect,
            b"OPTIONS" => MethodId::Options,
            b"TRACE" => MethodId::Trace,
            b"PATCH" => MethodId::Patch,
            _ => MethodId::Other,
        }
    }
}

/// The method a rule or high-value operation requires.
#[derive(Debug)]
pub(crate) enum MethodMatch {
    /// No method constraint.
    Any,
    Known(MethodId),
    /// An extension method, compared case-insensitively.
    Other(Box<str>),
}

impl MethodMatch {
    pub(crate) fn new(method: Option<&str>) -> Self {
        let Some(method) = method else {
            return MethodMatch::Any;
        };
        match MethodId::of(method) {
            MethodId::Other | MethodId::Missing => MethodMatch::Other(method.into()),
            known => MethodMatch::Known(known),
        }
    }

    #[inline(always)]
    fn matches(&self, facts: &SpanFacts<'_>) -> bool {
        match self {
            MethodMatch::Any => true,
            MethodMatch::Known(id) => facts.method_id == *id,
            MethodMatch::Other(m) => other_method_matches(m, facts),
        }
    }
}

#[inline(never)]
fn other_method_matches(method: &str, facts: &SpanFacts<'_>) -> bool {
    facts
        .method
        .is_some_and(|actual| actual.eq_ignore_ascii_case(method))
}

/// The span kind as a bit, so that a rule's kind is one `and`.
#[inline]
pub(crate) fn kind_bit(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Server => 1,
        SpanKind::Client => 2,
        SpanKind::Internal => 4,
        SpanKind::Producer => 8,
        SpanKind::Consumer => 16,
    }
}

pub(crate) fn rule_kind_bit(kind: RuleSpanKind) -> u8 {
    kind_bit(&match kind {
        RuleSpanKind::Server => SpanKind::Server,
        RuleSpanKind::Client => SpanKind::Client,
        RuleSpanKind::Internal => SpanKind::Internal,
        RuleSpanKind::Producer => SpanKind::Producer,
        RuleSpanKind::Consumer => SpanKind::Consumer,
    })
}

/// `key` equals the attribute name `name`: a length check, then a fixed-size comparison
/// the compiler expands inline.
#[inline]
fn key_is<const N: usize>(key: &str, name: &[u8; N]) -> bool {
    <&[u8; N]>::try_from(key.as_bytes()).is_ok_and(|k| k == name)
}

/// What a decision reads from the span, found in one pass over its attributes.
pub(crate) struct SpanFacts<'a> {
    pub(crate) route: Option<Route<'a>>,
    pub(crate) method: Option<&'a str>,
    pub(crate) method_id: MethodId,
    pub(crate) kind_bit: u8,
    // For the prefilters: the route's length ([`NO_ROUTE`] without one) and leading word,
    // and the method's code.
    route_len: u32,
    route_head: u64,
    method_code: u8,
}

// The semantic-convention names as arrays (checked against the constants in the tests).
const HTTP_ROUTE_KEY: &[u8; 10] = b"http.route";
const HTTP_REQUEST_METHOD_KEY: &[u8; 19] = b"http.request.method";

impl<'a> SpanFacts<'a> {
    #[inline]
    pub(crate) fn read(kind: &SpanKind, attributes: &'a [KeyValue]) -> Self {
        let mut facts = SpanFacts {
            route: None,
            method: None,
            method_id: MethodId::Missing,
            kind_bit: kind_bit(kind),
            route_len: NO_ROUTE,
            route_head: 0,
            method_code: method_code(MethodId::Missing),
        };
        for kv in attributes {
            let key = kv.key.as_str();
            if key_is(key, HTTP_ROUTE_KEY) {
                if let Value::String(s) = &kv.value {
                    facts.route = Some(Route::new(s.as_str()));
                }
            } else if key_is(key, HTTP_REQUEST_METHOD_KEY)
                && let Value::String(s) = &kv.value
            {
                facts.method = Some(s.as_str());
                facts.method_id = MethodId::of(s.as_str());
            }
        }
        if let Some(route) = facts.route {
            facts.route_len = u32::try_from(route.text.len())
                .unwrap_or(NO_ROUTE - 1)
                .min(NO_ROUTE - 1);
            facts.route_head = route.head;
        }
        facts.method_code = method_code(facts.method_id);
        facts
    }
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) route: Option<RouteMatcher>,
    pub(crate) method: MethodMatch,
    /// The span kind's bit ([`kind_bit`]), or every bit when the rule names no kind.
    pub(crate) kind_bits: u8,
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
    #[inline(always)]
    pub(crate) fn matches(&self, facts: &SpanFacts<'_>, attributes: &[KeyValue]) -> bool {
        if self.kind_bits & facts.kind_bit == 0 || !self.method.matches(facts) {
            return false;
        }
        if let Some(r) = &self.route
            && !facts.route.is_some_and(|route| r.is_match(&route))
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

/// What a rule needs, packed into a few words so that the rule loop rejects most rules
/// without touching the rule itself: the kind bits, the method code, and the route's
/// length range and leading word (see [`Literal`]). A rule without a route constraint
/// admits every length, including [`NO_ROUTE`].
#[derive(Clone, Copy, Debug)]
struct Prefilter {
    head: u64,
    mask: u64,
    min_len: u32,
    /// `max_len - min_len`, so the range check is one wrapping subtraction.
    len_span: u32,
    kind_bits: u8,
    /// 0: any method; else [`method_code`] of the rule's method.
    method: u8,
}

/// The route length facts carry when the span has no `http.route`: above every range a
/// rule with a route constraint admits.
const NO_ROUTE: u32 = u32::MAX;

/// 0 is "any method"; facts and rules share the other codes.
#[inline(always)]
fn method_code(id: MethodId) -> u8 {
    id as u8 + 1
}

impl Prefilter {
    fn new(rule: &CompiledRule) -> Self {
        let method = match &rule.method {
            MethodMatch::Any => 0,
            MethodMatch::Known(id) => method_code(*id),
            MethodMatch::Other(_) => method_code(MethodId::Other),
        };
        let clamp = |n: usize| u32::try_from(n).unwrap_or(NO_ROUTE - 1).min(NO_ROUTE - 1);
        let (head, mask, min_len, max_len) = match &rule.route {
            Some(route) => {
                let (head, mask, min, max) = route.bounds();
                (head, mask, clamp(min), clamp(max))
            }
            None => (0, 0, 0, NO_ROUTE),
        };
        Prefilter {
            head,
            mask,
            min_len,
            len_span: max_len - min_len,
            kind_bits: rule.kind_bits,
            method,
        }
    }

    /// `false` only when the rule cannot match; `true` means "check the rule". Written
    /// with `&` rather than `&&`: four cheap tests without branches.
    #[inline(always)]
    fn admits(&self, facts: &SpanFacts<'_>) -> bool {
        (self.kind_bits & facts.kind_bit != 0)
            & ((self.method == 0) | (self.method == facts.method_code))
            & (facts.route_len.wrapping_sub(self.min_len) <= self.len_span)
            & (facts.route_head & self.mask == self.head)
    }
}

/// The rules in decision order (priority, then list order), with their prefilters.
#[derive(Debug, Default)]
pub(crate) struct RuleSet {
    filters: Vec<Prefilter>,
    rules: Vec<CompiledRule>,
}

impl RuleSet {
    pub(crate) fn new(rules: Vec<CompiledRule>) -> Self {
        RuleSet {
            filters: rules.iter().map(Prefilter::new).collect(),
            rules,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule matches on span attributes (beyond route, method and kind).
    pub(crate) fn reads_attributes(&self) -> bool {
        self.rules.iter().any(|rule| !rule.attributes.is_empty())
    }

    /// The first rule that matches: a tight scan of the prefilters, and the full check
    /// only for the rules they admit.
    #[inline]
    pub(crate) fn first_match(
        &self,
        facts: &SpanFacts<'_>,
        attributes: &[KeyValue],
    ) -> Option<&CompiledRule> {
        let mut start = 0;
        while let Some(offset) = self.filters[start..].iter().position(|f| f.admits(facts)) {
            let i = start + offset;
            let rule = &self.rules[i];
            if rule.matches(facts, attributes) {
                return Some(rule);
            }
            start = i + 1;
        }
        None
    }
}

#[derive(Debug)]
pub(crate) struct CompiledHighValue {
    pub(crate) route: RouteMatcher,
    pub(crate) method: MethodMatch,
}

impl CompiledHighValue {
    #[inline]
    pub(crate) fn matches(&self, facts: &SpanFacts<'_>) -> bool {
        self.method.matches(facts) && facts.route.is_some_and(|route| self.route.is_match(&route))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_semantic_conventions::attribute::{HTTP_REQUEST_METHOD, HTTP_ROUTE};

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
            ("/a/**/b", "/a/b", true),
            ("/a/**/b", "/a/x/y/b", true),
            ("/a*a", "/a", false),
            ("/a*a", "/aa", true),
            ("/{orders,order-items}/**", "/order-items/3", true),
            ("/{orders,order-items}/**", "/orderz", false),
        ];
        for (pattern, route, expected) in cases {
            let m = RouteMatcher::new("r", pattern).unwrap();
            assert_eq!(
                m.is_match(&Route::new(route)),
                *expected,
                "{pattern} vs {route} ({m:?})"
            );
            // The prefilter never rejects a route the matcher accepts.
            let rule = CompiledRule {
                route: Some(m),
                method: MethodMatch::Any,
                kind_bits: u8::MAX,
                attributes: Vec::new(),
                outcome: Outcome::new(Threshold::ALWAYS, Value::from("r")),
            };
            let set = RuleSet::new(vec![rule]);
            let attributes = [KeyValue::new(HTTP_ROUTE, route.to_string())];
            let facts = SpanFacts::read(&SpanKind::Server, &attributes);
            assert_eq!(
                set.first_match(&facts, &attributes).is_some(),
                *expected,
                "{pattern} vs {route} through the rule set"
            );
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
        assert!(m.is_match(&Route::new("/a/b/c")) && !m.is_match(&Route::new("/a/b/e")));
    }

    #[test]
    fn facts_read_the_semantic_convention_keys() {
        assert_eq!(HTTP_ROUTE_KEY, HTTP_ROUTE.as_bytes());
        assert_eq!(HTTP_REQUEST_METHOD_KEY, HTTP_REQUEST_METHOD.as_bytes());
        let attributes = [
            KeyValue::new("http.routeX", "/no"),
            KeyValue::new(HTTP_ROUTE, "/orders/{id}"),
            KeyValue::new(HTTP_REQUEST_METHOD, "get"),
        ];
        let facts = SpanFacts::read(&SpanKind::Client, &attributes);
        assert_eq!(facts.route.map(|r| r.text), Some("/orders/{id}"));
        assert_eq!(facts.method_id, MethodId::Get);
        assert_eq!(facts.kind_bit, kind_bit(&SpanKind::Client));
        for (method, id) in [
            ("DELETE", MethodId::Delete),
            ("options", MethodId::Options),
            ("PURGE", MethodId::Other),
            ("GETX", MethodId::Other),
            ("CONNECTS", MethodId::Other),
            ("", MethodId::Other),
        ] {
            assert_eq!(MethodId::of(method), id, "{method}");
        }
        assert!(matches!(
            MethodMatch::new(Some("purge")),
            MethodMatch::Other(_)
        ));
        assert!(matches!(MethodMatch::new(None), MethodMatch::Any));
    }

    #[test]
    fn literals_compare_length_word_and_tail() {
        for (literal, route, prefix, equal) in [
            ("/orders", "/orders", true, true),
            ("/orders", "/orders/42", true, false),
            ("/orders", "/order", false, false),
            ("/orders/{id}/items", "/orders/{id}/items/7", true, false),
            ("/orders/{id}/items", "/orders/{id}/itemz/7", false, false),
            ("", "/x", true, false),
            ("/a", "/b", false, false),
            (
                "/\u{e9}t\u{e9}/long-path",
                "/\u{e9}t\u{e9}/long-path",
                true,
                true,
            ),
        ] {
            let l = Literal::new(literal);
            let r = Route::new(route);
            assert_eq!(l.is_prefix_of(&r), prefix, "{literal} prefix of {route}");
            assert_eq!(l.equals(&r), equal, "{literal} == {route}");
        }
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
