//! The sampler's configuration as data: the serde types a file deserializes into and code
//! builds. Reading the environment is in `env`, the checks in `validate`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_DEBUG_MAX_AGE_SECS, DEFAULT_DEBUG_MAX_PER_SECOND, DeferredConfig, LimitsConfig,
};
use crate::config::{Moved, moved};

/// Head-sampling configuration for [`CustomSampler`](crate::sampler::CustomSampler): only
/// what the sampler applies, so [`SamplerHandle::reload`](crate::sampler::SamplerHandle::reload)
/// applies every field. (Span limits are an export setting,
/// [`TracingConfig::span_limits`](crate::config::TracingConfig::span_limits); the debug header
/// is a layer setting, `TracingLayer::debug_header`.)
///
/// Defaults: base rate 1.0 (a new user sees every span), no rules, high-value
/// rate 1.0, no valid debug token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SamplingConfig {
    /// Probability for root decisions no rule or high-value operation matched.
    pub base_rate: f64,
    /// Named rules; the highest `priority` that matches wins, ties in list order.
    pub rules: Vec<SamplingRule>,
    /// Operations sampled at `high_value_rate` when no rule matched.
    pub high_value: Vec<HighValueOperation>,
    /// Probability for high-value operations (default 1.0).
    pub high_value_rate: f64,
    /// Debug tokens: which force sampling, how often.
    pub debug: DebugConfig,
    /// Consistent rate limits and adaptive targets for root decisions (off by default).
    pub limits: LimitsConfig,
    /// Deferred capture of error and slow traces the head decision dropped (off by
    /// default).
    pub deferred: DeferredConfig,
    /// `span_limits` moved to the top level of `TracingConfig`; kept to say so.
    #[serde(
        rename = "span_limits",
        skip_serializing,
        deserialize_with = "moved::span_limits"
    )]
    pub(crate) legacy_span_limits: Moved,
    /// A guess at where the strategies poller is configured (`[sampling.remote]`); it lives
    /// at the top level of `TracingConfig` (`[remote_sampling]`), kept to say so.
    #[serde(
        rename = "remote",
        skip_serializing,
        deserialize_with = "moved::remote"
    )]
    pub(crate) misplaced_remote: Moved,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            base_rate: 1.0,
            rules: Vec::new(),
            high_value: Vec::new(),
            high_value_rate: 1.0,
            debug: DebugConfig::default(),
            limits: LimitsConfig::default(),
            deferred: DeferredConfig::default(),
            legacy_span_limits: Moved,
            misplaced_remote: Moved,
        }
    }
}

impl fmt::Debug for SamplingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamplingConfig")
            .field("base_rate", &self.base_rate)
            .field("rules", &self.rules)
            .field("high_value", &self.high_value)
            .field("high_value_rate", &self.high_value_rate)
            .field("debug", &self.debug)
            .field("limits", &self.limits)
            .field("deferred", &self.deferred)
            .finish()
    }
}

impl SamplingConfig {
    /// Sets the base rate (probability in `0.0..=1.0`).
    #[must_use]
    pub fn base_rate(mut self, rate: f64) -> Self {
        self.base_rate = rate;
        self
    }

    /// Appends a rule.
    #[must_use]
    pub fn rule(mut self, rule: SamplingRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Replaces all rules.
    #[must_use]
    pub fn rules(mut self, rules: impl IntoIterator<Item = SamplingRule>) -> Self {
        self.rules = rules.into_iter().collect();
        self
    }

    /// Marks an operation (route template glob + method, e.g. `"/checkout"`, `"POST"`)
    /// as high-value.
    #[must_use]
    pub fn high_value(mut self, route_glob: impl Into<String>, method: impl Into<String>) -> Self {
        self.high_value.push(HighValueOperation {
            route: route_glob.into(),
            method: Some(method.into()),
        });
        self
    }

    /// Sets the rate for high-value operations (default 1.0).
    #[must_use]
    pub fn high_value_rate(mut self, rate: f64) -> Self {
        self.high_value_rate = rate;
        self
    }

    /// Sets the debug token configuration.
    #[must_use]
    pub fn debug(mut self, debug: DebugConfig) -> Self {
        self.debug = debug;
        self
    }

    /// Sets the rate limits and adaptive targets.
    #[must_use]
    pub fn limits(mut self, limits: LimitsConfig) -> Self {
        self.limits = limits;
        self
    }

    /// Sets deferred capture (see [`DeferredConfig`]).
    #[must_use]
    pub fn deferred(mut self, deferred: DeferredConfig) -> Self {
        self.deferred = deferred;
        self
    }
}

/// A named sampling rule. Every constraint that is set must match; an empty rule
/// matches every root decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SamplingRule {
    /// Name, reported as `sampling.reason = "rule:<name>"` (1-64 of `A-Za-z0-9_.-`).
    pub name: String,
    /// Glob over the route template (`http.route`), e.g. `/orders/{id}` or `/api/**`.
    /// `*` stays within one path segment, `**` crosses segments (`/api/**` also
    /// matches `/api` itself); a brace group
    /// without a comma (`{id}`, `{*rest}`) is a literal route parameter, with commas
    /// (`{a,b}`) it is an alternation. Spans without `http.route` never match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// HTTP method (`http.request.method`), compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Span kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RuleSpanKind>,
    /// Attributes the span must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, AttributeMatch>,
    /// Probability in `0.0..=1.0`.
    pub rate: f64,
    /// Higher wins; equal priorities keep list order. Default 0.
    #[serde(default)]
    pub priority: i32,
}

impl SamplingRule {
    /// A rule named `name` sampling at `rate` that matches everything until constrained.
    pub fn new(name: impl Into<String>, rate: f64) -> Self {
        SamplingRule {
            name: name.into(),
            route: None,
            method: None,
            kind: None,
            attributes: BTreeMap::new(),
            rate,
            priority: 0,
        }
    }

    /// Restricts the rule to route templates matching `glob`.
    #[must_use]
    pub fn route(mut self, glob: impl Into<String>) -> Self {
        self.route = Some(glob.into());
        self
    }

    /// Restricts the rule to one HTTP method.
    #[must_use]
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Restricts the rule to one span kind.
    #[must_use]
    pub fn kind(mut self, kind: RuleSpanKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Requires attribute `key` to equal `value`.
    #[must_use]
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<AttributeMatch>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Sets the rate.
    #[must_use]
    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }

    /// Sets the priority (higher wins).
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

/// Span kinds a rule can match (serialized lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RuleSpanKind {
    /// `SpanKind::Server`.
    Server,
    /// `SpanKind::Client`.
    Client,
    /// `SpanKind::Internal`.
    Internal,
    /// `SpanKind::Producer`.
    Producer,
    /// `SpanKind::Consumer`.
    Consumer,
}

/// An attribute value a rule compares with (equality; integers also equal floats of
/// the same value).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum AttributeMatch {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    String(String),
}

impl From<&str> for AttributeMatch {
    fn from(v: &str) -> Self {
        AttributeMatch::String(v.to_owned())
    }
}
impl From<String> for AttributeMatch {
    fn from(v: String) -> Self {
        AttributeMatch::String(v)
    }
}
impl From<i64> for AttributeMatch {
    fn from(v: i64) -> Self {
        AttributeMatch::Int(v)
    }
}
impl From<f64> for AttributeMatch {
    fn from(v: f64) -> Self {
        AttributeMatch::Float(v)
    }
}
impl From<bool> for AttributeMatch {
    fn from(v: bool) -> Self {
        AttributeMatch::Bool(v)
    }
}

impl AttributeMatch {
    pub(crate) fn matches(&self, value: &opentelemetry::Value) -> bool {
        use opentelemetry::Value as V;
        match (self, value) {
            (AttributeMatch::Bool(a), V::Bool(b)) => a == b,
            (AttributeMatch::Int(a), V::I64(b)) => a == b,
            (AttributeMatch::Int(a), V::F64(b)) => (*a as f64) == *b,
            (AttributeMatch::Float(a), V::F64(b)) => a == b,
            (AttributeMatch::Float(a), V::I64(b)) => *a == (*b as f64),
            (AttributeMatch::String(a), V::String(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// An operation sampled at the high-value rate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HighValueOperation {
    /// Route template glob (same syntax as [`SamplingRule::route`]).
    pub route: String,
    /// HTTP method; any method when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl HighValueOperation {
    /// A high-value operation for `route_glob`, any method.
    pub fn new(route_glob: impl Into<String>) -> Self {
        HighValueOperation {
            route: route_glob.into(),
            method: None,
        }
    }

    /// Restricts it to one method.
    #[must_use]
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }
}

/// Debug tokens: which values of the server layer's debug header force sampling, and how
/// often.
///
/// A token is valid when it equals an allow-listed token, or (feature `debug-hmac`) when it
/// is a signed, expiring token for the request's trace id:
///
/// ```text
/// <unix_seconds>.<hex(HMAC-SHA256(hmac_secret, trace_id_hex + "." + unix_seconds))>
/// ```
///
/// with `trace_id_hex` the 32 lowercase hex digits of the trace id the caller sends in its
/// `traceparent`, and `unix_seconds` the decimal time the token was minted. It is accepted
/// from `unix_seconds` to `unix_seconds + max_age_secs` (and up to
/// [`DEBUG_TOKEN_CLOCK_SKEW_SECS`](crate::sampler::DEBUG_TOKEN_CLOCK_SKEW_SECS) before, for
/// clock skew), so a token seen in a log is useless after `max_age_secs`. Minting one in a
/// shell:
///
/// ```text
/// ts=$(date +%s); echo "$ts.$(printf '%s.%s' "$TRACE_ID" "$ts" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)"
/// ```
///
/// or `meshtrace::sampler::debug_token_for` (feature `debug-hmac`) in Rust. `Debug` output hides
/// tokens and the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DebugConfig {
    /// Allow-listed tokens (1-256 visible ASCII characters each).
    pub tokens: Vec<String>,
    /// Secret for HMAC-SHA256 tokens (at least 16 bytes). Serializing the
    /// configuration writes it out, as it does the tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<String>,
    /// Forced traces per second per instance (default 10; 0 disables debug).
    pub max_per_second: u32,
    /// How long an HMAC token is accepted after the time it carries, in seconds
    /// (default 300, `1..=86400`).
    pub max_age_secs: u64,
    /// `debug.header` moved to the server layer; kept to say so.
    #[serde(
        rename = "header",
        skip_serializing,
        deserialize_with = "moved::debug_header"
    )]
    pub(crate) legacy_header: Moved,
}

impl Default for DebugConfig {
    fn default() -> Self {
        DebugConfig {
            tokens: Vec::new(),
            hmac_secret: None,
            max_per_second: DEFAULT_DEBUG_MAX_PER_SECOND,
            max_age_secs: DEFAULT_DEBUG_MAX_AGE_SECS,
            legacy_header: Moved,
        }
    }
}

impl fmt::Debug for DebugConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DebugConfig")
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("max_per_second", &self.max_per_second)
            .field("max_age_secs", &self.max_age_secs)
            .finish()
    }
}

impl DebugConfig {
    /// Adds an allow-listed token.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.tokens.push(token.into());
        self
    }

    /// Sets the HMAC-SHA256 secret (at least 16 bytes; feature `debug-hmac`).
    #[must_use]
    pub fn hmac_secret(mut self, secret: impl Into<String>) -> Self {
        self.hmac_secret = Some(secret.into());
        self
    }

    /// Sets the per-instance limit of debug traces per second.
    #[must_use]
    pub fn max_per_second(mut self, n: u32) -> Self {
        self.max_per_second = n;
        self
    }

    /// Sets how long an HMAC token is accepted, in seconds.
    #[must_use]
    pub fn max_age_secs(mut self, seconds: u64) -> Self {
        self.max_age_secs = seconds;
        self
    }
}
