//! `SamplingConfig`: builder, serde (TOML/JSON/YAML), environment variables, validation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// `MESHTRACE_SAMPLING_CONFIG_FILE`: a TOML/JSON/YAML file loaded first; the other
/// variables override it.
pub const ENV_CONFIG_FILE: &str = "MESHTRACE_SAMPLING_CONFIG_FILE";
/// `MESHTRACE_SAMPLING_BASE_RATE`: base rate in `0.0..=1.0` (overrides `OTEL_TRACES_SAMPLER_ARG`).
pub const ENV_BASE_RATE: &str = "MESHTRACE_SAMPLING_BASE_RATE";
/// `MESHTRACE_SAMPLING_HIGH_VALUE_RATE`: rate for high-value operations.
pub const ENV_HIGH_VALUE_RATE: &str = "MESHTRACE_SAMPLING_HIGH_VALUE_RATE";
/// `MESHTRACE_SAMPLING_DEBUG_HEADER`: name of the debug request header.
pub const ENV_DEBUG_HEADER: &str = "MESHTRACE_SAMPLING_DEBUG_HEADER";
/// `MESHTRACE_SAMPLING_DEBUG_TOKENS`: comma-separated allow-listed debug tokens.
pub const ENV_DEBUG_TOKENS: &str = "MESHTRACE_SAMPLING_DEBUG_TOKENS";
/// `MESHTRACE_SAMPLING_DEBUG_HMAC_SECRET`: secret for HMAC-SHA256 debug tokens.
pub const ENV_DEBUG_HMAC_SECRET: &str = "MESHTRACE_SAMPLING_DEBUG_HMAC_SECRET";
/// `MESHTRACE_SAMPLING_DEBUG_MAX_PER_SECOND`: debug traces per second per instance.
pub const ENV_DEBUG_MAX_PER_SECOND: &str = "MESHTRACE_SAMPLING_DEBUG_MAX_PER_SECOND";
/// `OTEL_TRACES_SAMPLER`: `always_on`, `always_off`, `traceidratio`,
/// `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`.
pub const ENV_OTEL_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// `OTEL_TRACES_SAMPLER_ARG`: the ratio for the `*traceidratio` samplers.
pub const ENV_OTEL_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`.
pub const ENV_SPAN_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_SPAN_EVENT_COUNT_LIMIT`.
pub const ENV_SPAN_EVENT_COUNT_LIMIT: &str = "OTEL_SPAN_EVENT_COUNT_LIMIT";
/// `OTEL_SPAN_LINK_COUNT_LIMIT`.
pub const ENV_SPAN_LINK_COUNT_LIMIT: &str = "OTEL_SPAN_LINK_COUNT_LIMIT";
/// `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`.
pub const ENV_EVENT_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`.
pub const ENV_LINK_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`.
pub const ENV_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT";

/// Default debug header name.
pub const DEFAULT_DEBUG_HEADER: &str = "x-debug-trace";
/// Default debug traces per second per instance.
pub const DEFAULT_DEBUG_MAX_PER_SECOND: u32 = 10;
/// Upper bound for `debug.max_per_second`.
pub const MAX_DEBUG_PER_SECOND: u32 = 1_000_000;
/// Longest accepted debug token (and debug header value).
pub const MAX_DEBUG_TOKEN_LEN: usize = 256;
/// Shortest accepted HMAC secret, in bytes.
pub const MIN_HMAC_SECRET_LEN: usize = 16;
/// Longest accepted rule name.
pub const MAX_RULE_NAME_LEN: usize = 64;
/// Largest configuration file `from_file`/`reload_from_file` reads.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;
/// Default span limit for attributes, events and links (the SDK's default).
pub const DEFAULT_SPAN_LIMIT: u32 = 128;
/// Default longest attribute value, in bytes.
pub const DEFAULT_ATTRIBUTE_VALUE_LENGTH: u32 = 4096;

/// Head-sampling configuration for [`CustomSampler`](super::CustomSampler).
///
/// Defaults: base rate 1.0 (a new user sees every span), no rules, high-value
/// rate 1.0, debug header `x-debug-trace` with no valid token.
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
    /// Debug header handling.
    pub debug: DebugConfig,
    /// Per-span storage limits.
    pub span_limits: SpanLimitsConfig,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            base_rate: 1.0,
            rules: Vec::new(),
            high_value: Vec::new(),
            high_value_rate: 1.0,
            debug: DebugConfig::default(),
            span_limits: SpanLimitsConfig::default(),
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
            .field("span_limits", &self.span_limits)
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

    /// Sets the debug header configuration.
    #[must_use]
    pub fn debug(mut self, debug: DebugConfig) -> Self {
        self.debug = debug;
        self
    }

    /// Sets the span limits.
    #[must_use]
    pub fn span_limits(mut self, limits: SpanLimitsConfig) -> Self {
        self.span_limits = limits;
        self
    }

    /// Checks every field; the error names the field and value, e.g.
    /// `sampling.rules[2].rate = "1.5": outside 0.0..=1.0`.
    pub fn validate(&self) -> Result<(), Error> {
        super::Compiled::new(self).map(|_| ())
    }

    /// Parses and validates a TOML document.
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        // toml's Display quotes the offending source line, which may hold a debug
        // token or the HMAC secret: report the message and the line number only.
        let config: SamplingConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
            Error::config(
                "sampling",
                "<toml>",
                format!("invalid TOML{at}: {}", e.message().trim()),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates a JSON document.
    pub fn from_json_str(text: &str) -> Result<Self, Error> {
        let config: SamplingConfig = serde_json::from_str(text)
            .map_err(|e| Error::config("sampling", "<json>", format!("invalid JSON: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates a YAML document.
    pub fn from_yaml_str(text: &str) -> Result<Self, Error> {
        let config: SamplingConfig = serde_yaml_ng::from_str(text)
            .map_err(|e| Error::config("sampling", "<yaml>", format!("invalid YAML: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a file; the format follows the extension
    /// (`.toml`, `.json`, `.yaml`/`.yml`). Files over 1 MiB are rejected.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = read_config_file(path)?;
        Self::parse_for_path(path, &text)
    }

    /// Parses `text` in the format `path`'s extension names.
    pub(crate) fn parse_for_path(path: &Path, text: &str) -> Result<Self, Error> {
        let shown = path.display();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let parse: fn(&str) -> Result<Self, Error> = match ext.as_deref() {
            Some("toml") => Self::from_toml_str,
            Some("json") => Self::from_json_str,
            Some("yaml" | "yml") => Self::from_yaml_str,
            _ => {
                return Err(Error::config(
                    FILE_FIELD,
                    shown,
                    "unknown extension (expected .toml, .json, .yaml or .yml)",
                ));
            }
        };
        parse(text).map_err(|e| match e {
            Error::Config {
                field: f,
                value,
                reason,
            } if f == "sampling" => {
                Error::config(FILE_FIELD, &shown, format!("{reason} ({value})"))
            }
            other => other,
        })
    }

    /// Builds a configuration from the process environment; see [`Self::from_env_with`].
    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Builds a configuration from variables given by `lookup` (for tests and for
    /// sources other than the process environment), starting from the defaults:
    ///
    /// 1. `MESHTRACE_SAMPLING_CONFIG_FILE` (TOML/JSON/YAML) if set;
    /// 2. `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` set the base rate
    ///    (`always_on` 1.0, `always_off` 0.0, `*traceidratio` the argument). Parent
    ///    decisions are always honoured, so `traceidratio` behaves like
    ///    `parentbased_traceidratio`;
    /// 3. `MESHTRACE_SAMPLING_BASE_RATE`, `MESHTRACE_SAMPLING_HIGH_VALUE_RATE`,
    ///    `MESHTRACE_SAMPLING_DEBUG_HEADER`, `MESHTRACE_SAMPLING_DEBUG_TOKENS`
    ///    (comma-separated), `MESHTRACE_SAMPLING_DEBUG_HMAC_SECRET`,
    ///    `MESHTRACE_SAMPLING_DEBUG_MAX_PER_SECOND`;
    /// 4. `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, `OTEL_SPAN_EVENT_COUNT_LIMIT`,
    ///    `OTEL_SPAN_LINK_COUNT_LIMIT`, `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`,
    ///    `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`, `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`.
    ///
    /// Unparsable values are errors naming the variable, not silently ignored.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = match get(ENV_CONFIG_FILE) {
            Some(path) => Self::from_file(path.trim())?,
            None => SamplingConfig::default(),
        };
        if let Some(sampler) = get(ENV_OTEL_SAMPLER) {
            let sampler = sampler.trim().to_ascii_lowercase();
            config.base_rate = match sampler.as_str() {
                "always_on" | "parentbased_always_on" => 1.0,
                "always_off" | "parentbased_always_off" => 0.0,
                "traceidratio" | "parentbased_traceidratio" => match get(ENV_OTEL_SAMPLER_ARG) {
                    Some(arg) => parse_rate(ENV_OTEL_SAMPLER_ARG, &arg)?,
                    None => 1.0,
                },
                other => {
                    return Err(Error::config(
                        ENV_OTEL_SAMPLER,
                        other,
                        "unsupported sampler (expected always_on, always_off, traceidratio, \
                         parentbased_always_on, parentbased_always_off or parentbased_traceidratio)",
                    ));
                }
            };
        }
        if let Some(v) = get(ENV_BASE_RATE) {
            config.base_rate = parse_rate(ENV_BASE_RATE, &v)?;
        }
        if let Some(v) = get(ENV_HIGH_VALUE_RATE) {
            config.high_value_rate = parse_rate(ENV_HIGH_VALUE_RATE, &v)?;
        }
        if let Some(v) = get(ENV_DEBUG_HEADER) {
            config.debug.header = v.trim().to_owned();
        }
        if let Some(v) = get(ENV_DEBUG_TOKENS) {
            config.debug.tokens = v
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = lookup(ENV_DEBUG_HMAC_SECRET).filter(|v| !v.is_empty()) {
            config.debug.hmac_secret = Some(v);
        }
        if let Some(v) = get(ENV_DEBUG_MAX_PER_SECOND) {
            config.debug.max_per_second = parse_u32(ENV_DEBUG_MAX_PER_SECOND, &v)?;
        }
        let limits = &mut config.span_limits;
        for (name, slot) in [
            (
                ENV_SPAN_ATTRIBUTE_COUNT_LIMIT,
                &mut limits.max_attributes_per_span,
            ),
            (ENV_SPAN_EVENT_COUNT_LIMIT, &mut limits.max_events_per_span),
            (ENV_SPAN_LINK_COUNT_LIMIT, &mut limits.max_links_per_span),
            (
                ENV_EVENT_ATTRIBUTE_COUNT_LIMIT,
                &mut limits.max_attributes_per_event,
            ),
            (
                ENV_LINK_ATTRIBUTE_COUNT_LIMIT,
                &mut limits.max_attributes_per_link,
            ),
        ] {
            if let Some(v) = get(name) {
                *slot = parse_u32(name, &v)?;
            }
        }
        if let Some(v) = get(ENV_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT) {
            limits.max_attribute_value_length =
                parse_u32(ENV_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, &v)?;
        }
        config.validate()?;
        Ok(config)
    }
}

const FILE_FIELD: &str = "sampling.file";

/// Reads a configuration file, refusing more than [`MAX_CONFIG_FILE_BYTES`].
pub(crate) fn read_config_file(path: &Path) -> Result<String, Error> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| Error::config(FILE_FIELD, &shown, format!("cannot read: {e}")))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::config(FILE_FIELD, &shown, format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(Error::config(
            FILE_FIELD,
            &shown,
            format!("larger than {MAX_CONFIG_FILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

fn parse_rate(name: &str, value: &str) -> Result<f64, Error> {
    let rate: f64 = value
        .trim()
        .parse()
        .map_err(|_| Error::config(name, value, "not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(Error::config(name, value, "outside 0.0..=1.0"));
    }
    Ok(rate)
}

fn parse_u32(name: &str, value: &str) -> Result<u32, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::config(name, value, "not an unsigned 32-bit integer"))
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

impl RuleSpanKind {
    pub(crate) fn matches(self, kind: &opentelemetry::trace::SpanKind) -> bool {
        use opentelemetry::trace::SpanKind as K;
        matches!(
            (self, kind),
            (RuleSpanKind::Server, K::Server)
                | (RuleSpanKind::Client, K::Client)
                | (RuleSpanKind::Internal, K::Internal)
                | (RuleSpanKind::Producer, K::Producer)
                | (RuleSpanKind::Consumer, K::Consumer)
        )
    }
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

/// Debug header handling: which tokens force sampling and how often.
///
/// A token is valid when it equals an allow-listed token, or when it is the
/// hex-encoded HMAC-SHA256 of the trace id (32 lowercase hex digits) keyed with
/// `hmac_secret`; the HMAC form needs the caller to send a `traceparent` with the
/// trace id it signed. `Debug` output hides tokens and the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DebugConfig {
    /// Request header carrying the token (default `x-debug-trace`).
    pub header: String,
    /// Allow-listed tokens (1-256 visible ASCII characters each).
    pub tokens: Vec<String>,
    /// Secret for HMAC-SHA256 tokens (at least 16 bytes). Serializing the
    /// configuration writes it out, as it does the tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<String>,
    /// Forced traces per second per instance (default 10; 0 disables debug).
    pub max_per_second: u32,
}

impl Default for DebugConfig {
    fn default() -> Self {
        DebugConfig {
            header: DEFAULT_DEBUG_HEADER.to_owned(),
            tokens: Vec::new(),
            hmac_secret: None,
            max_per_second: DEFAULT_DEBUG_MAX_PER_SECOND,
        }
    }
}

impl fmt::Debug for DebugConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DebugConfig")
            .field("header", &self.header)
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("max_per_second", &self.max_per_second)
            .finish()
    }
}

impl DebugConfig {
    /// Sets the header name.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = name.into();
        self
    }

    /// Adds an allow-listed token.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.tokens.push(token.into());
        self
    }

    /// Sets the HMAC-SHA256 secret.
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
}

/// Per-span storage limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SpanLimitsConfig {
    /// Attributes per span (default 128).
    pub max_attributes_per_span: u32,
    /// Events per span (default 128).
    pub max_events_per_span: u32,
    /// Links per span (default 128).
    pub max_links_per_span: u32,
    /// Attributes per event (default 128).
    pub max_attributes_per_event: u32,
    /// Attributes per link (default 128).
    pub max_attributes_per_link: u32,
    /// Longest string attribute value in bytes (default 4096; 0 = unlimited).
    /// The SDK's `SpanLimits` has no such field: apply it with
    /// [`SpanLimitsConfig::truncate_value`].
    pub max_attribute_value_length: u32,
}

impl Default for SpanLimitsConfig {
    fn default() -> Self {
        SpanLimitsConfig {
            max_attributes_per_span: DEFAULT_SPAN_LIMIT,
            max_events_per_span: DEFAULT_SPAN_LIMIT,
            max_links_per_span: DEFAULT_SPAN_LIMIT,
            max_attributes_per_event: DEFAULT_SPAN_LIMIT,
            max_attributes_per_link: DEFAULT_SPAN_LIMIT,
            max_attribute_value_length: DEFAULT_ATTRIBUTE_VALUE_LENGTH,
        }
    }
}

impl SpanLimitsConfig {
    /// Sets attributes per span.
    #[must_use]
    pub fn max_attributes_per_span(mut self, n: u32) -> Self {
        self.max_attributes_per_span = n;
        self
    }

    /// Sets events per span.
    #[must_use]
    pub fn max_events_per_span(mut self, n: u32) -> Self {
        self.max_events_per_span = n;
        self
    }

    /// Sets links per span.
    #[must_use]
    pub fn max_links_per_span(mut self, n: u32) -> Self {
        self.max_links_per_span = n;
        self
    }

    /// Sets attributes per event.
    #[must_use]
    pub fn max_attributes_per_event(mut self, n: u32) -> Self {
        self.max_attributes_per_event = n;
        self
    }

    /// Sets attributes per link.
    #[must_use]
    pub fn max_attributes_per_link(mut self, n: u32) -> Self {
        self.max_attributes_per_link = n;
        self
    }

    /// Sets the longest attribute value (0 = unlimited).
    #[must_use]
    pub fn max_attribute_value_length(mut self, n: u32) -> Self {
        self.max_attribute_value_length = n;
        self
    }

    /// The SDK limits (all but the value length, which the SDK does not enforce).
    pub fn to_sdk(&self) -> opentelemetry_sdk::trace::SpanLimits {
        opentelemetry_sdk::trace::SpanLimits {
            max_events_per_span: self.max_events_per_span,
            max_attributes_per_span: self.max_attributes_per_span,
            max_links_per_span: self.max_links_per_span,
            max_attributes_per_event: self.max_attributes_per_event,
            max_attributes_per_link: self.max_attributes_per_link,
        }
    }

    /// Truncates a string value (or each string of a string array) to
    /// `max_attribute_value_length` bytes on a char boundary.
    pub fn truncate_value(&self, value: opentelemetry::Value) -> opentelemetry::Value {
        use opentelemetry::{Array, StringValue, Value};
        let max = self.max_attribute_value_length;
        if max == 0 {
            return value;
        }
        let max = max as usize;
        let cut = |s: StringValue| -> StringValue {
            let text = s.as_str();
            if text.len() <= max {
                return s;
            }
            let mut end = max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            StringValue::from(text[..end].to_owned())
        };
        match value {
            Value::String(s) => Value::String(cut(s)),
            Value::Array(Array::String(items)) => {
                Value::Array(Array::String(items.into_iter().map(cut).collect()))
            }
            other => other,
        }
    }
}
