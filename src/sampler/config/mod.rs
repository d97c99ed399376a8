//! `SamplingConfig`: the serde model (`model`), the environment variables (`env`) and the
//! checks (`validate`); beside it `RemoteSamplingConfig` (`remote`), where central
//! strategies are polled from. Files are read by the crate's one file reader (shared with
//! `TracingConfig`): `.toml`, `.json`, `.yaml`/`.yml` (feature `yaml`), at most 1 MiB.

mod deferred;
mod env;
mod limits;
mod model;
mod remote;
pub(crate) mod validate;

use std::path::Path;

use crate::Error;
use crate::config::Format;

pub use deferred::{
    DEFAULT_DEFERRED_FRACTION, DEFAULT_DEFERRED_MAX_BYTES, DEFAULT_DEFERRED_MAX_PER_SECOND,
    DEFAULT_DEFERRED_MAX_SPANS_PER_TRACE, DEFAULT_DEFERRED_MAX_TRACES, DEFAULT_DEFERRED_TIMEOUT_MS,
    DEFAULT_SLOW_THRESHOLD_MS, DeferredConfig, MAX_DEFERRED_BYTES, MAX_DEFERRED_MILLIS,
    MAX_DEFERRED_PER_SECOND, MAX_DEFERRED_SPANS_PER_TRACE, MAX_DEFERRED_TRACES, MAX_SLOW_ROUTES,
    SlowRoute,
};
pub(crate) use limits::traces_per_second as limits_traces_per_second;
pub use limits::{
    DEFAULT_ADAPTATION_TIME_SECS, DEFAULT_KEY_IDLE_SECS, DEFAULT_LIMIT_KEY, DEFAULT_MAX_INCREASE,
    DEFAULT_MAX_KEYS, LimitsConfig, MAX_KEY_ATTRIBUTES, MAX_MAX_KEYS, MAX_TRACES_PER_SECOND,
};
pub use model::{
    AttributeMatch, DebugConfig, HighValueOperation, RuleSpanKind, SamplingConfig, SamplingRule,
};
pub(crate) use remote::service_problem as remote_service_problem;
pub use remote::{
    DEFAULT_REMOTE_INTERVAL, DEFAULT_REMOTE_JITTER, DEFAULT_REMOTE_MAX_BODY_BYTES,
    DEFAULT_REMOTE_TIMEOUT, ENV_REMOTE_ENDPOINT, ENV_REMOTE_INTERVAL_SECS, ENV_REMOTE_JITTER,
    ENV_REMOTE_MAX_BODY_BYTES, ENV_REMOTE_SERVICE, ENV_REMOTE_TIMEOUT_MS, MAX_REMOTE_INTERVAL_SECS,
    MAX_REMOTE_MAX_BODY_BYTES, MAX_REMOTE_TIMEOUT_MS, RemoteSamplingConfig,
};

/// `MESHTRACE_SAMPLING_CONFIG_FILE`: a TOML/JSON/YAML file loaded first; the other
/// variables override it.
pub const ENV_CONFIG_FILE: &str = "MESHTRACE_SAMPLING_CONFIG_FILE";
/// `MESHTRACE_SAMPLING_BASE_RATE`: base rate in `0.0..=1.0` (overrides `OTEL_TRACES_SAMPLER_ARG`).
pub const ENV_BASE_RATE: &str = "MESHTRACE_SAMPLING_BASE_RATE";
/// `MESHTRACE_SAMPLING_HIGH_VALUE_RATE`: rate for high-value operations.
pub const ENV_HIGH_VALUE_RATE: &str = "MESHTRACE_SAMPLING_HIGH_VALUE_RATE";
/// `MESHTRACE_SAMPLING_DEBUG_TOKENS`: comma-separated allow-listed debug tokens.
pub const ENV_DEBUG_TOKENS: &str = "MESHTRACE_SAMPLING_DEBUG_TOKENS";
/// `MESHTRACE_SAMPLING_DEBUG_HMAC_SECRET`: secret for HMAC-SHA256 debug tokens
/// (feature `debug-hmac`).
pub const ENV_DEBUG_HMAC_SECRET: &str = "MESHTRACE_SAMPLING_DEBUG_HMAC_SECRET";
/// `MESHTRACE_SAMPLING_DEBUG_MAX_PER_SECOND`: debug traces per second per instance.
pub const ENV_DEBUG_MAX_PER_SECOND: &str = "MESHTRACE_SAMPLING_DEBUG_MAX_PER_SECOND";
/// `MESHTRACE_SAMPLING_DEBUG_MAX_AGE_SECS`: how long an HMAC debug token is accepted.
pub const ENV_DEBUG_MAX_AGE_SECS: &str = "MESHTRACE_SAMPLING_DEBUG_MAX_AGE_SECS";
/// `MESHTRACE_SAMPLING_TRACES_PER_SECOND`: `limits.traces_per_second`, the global target.
pub const ENV_TRACES_PER_SECOND: &str = "MESHTRACE_SAMPLING_TRACES_PER_SECOND";
/// `MESHTRACE_SAMPLING_PER_KEY_TRACES_PER_SECOND`: `limits.per_key_traces_per_second`.
pub const ENV_PER_KEY_TRACES_PER_SECOND: &str = "MESHTRACE_SAMPLING_PER_KEY_TRACES_PER_SECOND";
/// `MESHTRACE_SAMPLING_LOWER_BOUND_TRACES_PER_SECOND`: `limits.lower_bound_traces_per_second`.
pub const ENV_LOWER_BOUND_TRACES_PER_SECOND: &str =
    "MESHTRACE_SAMPLING_LOWER_BOUND_TRACES_PER_SECOND";
/// `MESHTRACE_SAMPLING_OVERFLOW_TRACES_PER_SECOND`: `limits.overflow_traces_per_second`.
pub const ENV_OVERFLOW_TRACES_PER_SECOND: &str = "MESHTRACE_SAMPLING_OVERFLOW_TRACES_PER_SECOND";
/// `MESHTRACE_SAMPLING_LIMIT_KEY`: `limits.key`, comma-separated attribute names.
pub const ENV_LIMIT_KEY: &str = "MESHTRACE_SAMPLING_LIMIT_KEY";
/// `MESHTRACE_SAMPLING_MAX_KEYS`: `limits.max_keys`.
pub const ENV_MAX_KEYS: &str = "MESHTRACE_SAMPLING_MAX_KEYS";
/// `MESHTRACE_SAMPLING_KEY_IDLE_SECS`: `limits.key_idle_secs`.
pub const ENV_KEY_IDLE_SECS: &str = "MESHTRACE_SAMPLING_KEY_IDLE_SECS";
/// `MESHTRACE_SAMPLING_ADAPTATION_TIME_SECS`: `limits.adaptation_time_secs`.
pub const ENV_ADAPTATION_TIME_SECS: &str = "MESHTRACE_SAMPLING_ADAPTATION_TIME_SECS";
/// `MESHTRACE_SAMPLING_MAX_INCREASE`: `limits.max_increase`.
pub const ENV_MAX_INCREASE: &str = "MESHTRACE_SAMPLING_MAX_INCREASE";
/// `MESHTRACE_SAMPLING_MIN_PROBABILITY`: `limits.min_probability`.
pub const ENV_MIN_PROBABILITY: &str = "MESHTRACE_SAMPLING_MIN_PROBABILITY";
/// `MESHTRACE_SAMPLING_MAX_PROBABILITY`: `limits.max_probability`.
pub const ENV_MAX_PROBABILITY: &str = "MESHTRACE_SAMPLING_MAX_PROBABILITY";
/// `MESHTRACE_SAMPLING_DEFERRED`: `true` or `false`, `deferred.enabled`.
pub const ENV_DEFERRED: &str = "MESHTRACE_SAMPLING_DEFERRED";
/// `MESHTRACE_SAMPLING_DEFERRED_FRACTION`: `deferred.fraction`.
pub const ENV_DEFERRED_FRACTION: &str = "MESHTRACE_SAMPLING_DEFERRED_FRACTION";
/// `MESHTRACE_SAMPLING_DEFERRED_MAX_PER_SECOND`: `deferred.max_per_second`.
pub const ENV_DEFERRED_MAX_PER_SECOND: &str = "MESHTRACE_SAMPLING_DEFERRED_MAX_PER_SECOND";
/// `MESHTRACE_SAMPLING_DEFERRED_SLOW_THRESHOLD_MS`: `deferred.slow_threshold_ms`.
pub const ENV_DEFERRED_SLOW_THRESHOLD_MS: &str = "MESHTRACE_SAMPLING_DEFERRED_SLOW_THRESHOLD_MS";
/// `MESHTRACE_SAMPLING_DEFERRED_SLOW_ROUTES`: `deferred.slow_routes` as comma-separated
/// `glob=milliseconds` pairs, e.g. `/reports/**=5000,/search=800`.
pub const ENV_DEFERRED_SLOW_ROUTES: &str = "MESHTRACE_SAMPLING_DEFERRED_SLOW_ROUTES";
/// `MESHTRACE_SAMPLING_DEFERRED_MAX_TRACES`: `deferred.max_traces`.
pub const ENV_DEFERRED_MAX_TRACES: &str = "MESHTRACE_SAMPLING_DEFERRED_MAX_TRACES";
/// `MESHTRACE_SAMPLING_DEFERRED_MAX_SPANS_PER_TRACE`: `deferred.max_spans_per_trace`.
pub const ENV_DEFERRED_MAX_SPANS_PER_TRACE: &str =
    "MESHTRACE_SAMPLING_DEFERRED_MAX_SPANS_PER_TRACE";
/// `MESHTRACE_SAMPLING_DEFERRED_MAX_BYTES`: `deferred.max_bytes`.
pub const ENV_DEFERRED_MAX_BYTES: &str = "MESHTRACE_SAMPLING_DEFERRED_MAX_BYTES";
/// `MESHTRACE_SAMPLING_DEFERRED_TIMEOUT_MS`: `deferred.timeout_ms`.
pub const ENV_DEFERRED_TIMEOUT_MS: &str = "MESHTRACE_SAMPLING_DEFERRED_TIMEOUT_MS";
/// `MESHTRACE_SAMPLING_DEFERRED_PROPAGATE_SAMPLED`: `true` or `false`,
/// `deferred.propagate_sampled`.
pub const ENV_DEFERRED_PROPAGATE_SAMPLED: &str = "MESHTRACE_SAMPLING_DEFERRED_PROPAGATE_SAMPLED";
/// `OTEL_TRACES_SAMPLER`: `always_on`, `always_off`, `traceidratio`,
/// `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`.
pub const ENV_OTEL_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// `OTEL_TRACES_SAMPLER_ARG`: the ratio for the `*traceidratio` samplers.
pub const ENV_OTEL_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";

/// The request header the server layer reads debug tokens from unless
/// `TracingLayer::debug_header` names another (defined once, by the server layer).
pub use crate::server::DEFAULT_DEBUG_HEADER;
/// Default debug traces per second per instance.
pub const DEFAULT_DEBUG_MAX_PER_SECOND: u32 = 10;
/// Upper bound for `debug.max_per_second`.
pub const MAX_DEBUG_PER_SECOND: u32 = 1_000_000;
/// Default `debug.max_age_secs`: an HMAC token is accepted for five minutes.
pub const DEFAULT_DEBUG_MAX_AGE_SECS: u64 = 300;
/// Upper bound for `debug.max_age_secs`: one day.
pub const MAX_DEBUG_MAX_AGE_SECS: u64 = 86_400;
/// How far in the future an HMAC token's time may be (the minting clock ahead of ours).
pub const DEBUG_TOKEN_CLOCK_SKEW_SECS: u64 = 30;
/// Longest accepted debug token (and debug header value).
pub const MAX_DEBUG_TOKEN_LEN: usize = 256;
/// Shortest accepted HMAC secret, in bytes.
pub const MIN_HMAC_SECRET_LEN: usize = 16;
/// Longest accepted rule name.
pub const MAX_RULE_NAME_LEN: usize = 64;
/// Largest configuration file `from_file`/`reload_from_file` reads.
pub const MAX_CONFIG_FILE_BYTES: u64 = crate::config::MAX_CONFIG_FILE_BYTES;

/// The setting that names a sampling file read through the API.
const FILE_FIELD: &str = "sampling config file";

impl SamplingConfig {
    /// Parses and validates a TOML document.
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        Self::parse(Format::Toml, text)
    }

    /// Parses and validates a JSON document.
    pub fn from_json_str(text: &str) -> Result<Self, Error> {
        Self::parse(Format::Json, text)
    }

    /// Parses and validates a YAML document (feature `yaml`).
    #[cfg(feature = "yaml")]
    pub fn from_yaml_str(text: &str) -> Result<Self, Error> {
        Self::parse(Format::Yaml, text)
    }

    fn parse(format: Format, text: &str) -> Result<Self, Error> {
        let config: SamplingConfig = crate::config::file::parse(format, text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a file; the format follows the extension (`.toml`, `.json`,
    /// `.yaml`/`.yml` with feature `yaml`; others are refused). Files over 1 MiB are
    /// rejected.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::load(FILE_FIELD, path.as_ref())
    }

    /// [`from_file`](Self::from_file), naming the setting that gave the path in errors.
    pub(crate) fn load(field: &str, path: &Path) -> Result<Self, Error> {
        let format = Format::of(field, path)?;
        let text = crate::config::file::read_text(field, path)?;
        Self::parse_file(field, path, format, &text)
    }

    /// Reads `path` for the file watcher: its text, to compare with the last one.
    pub(crate) fn read_file(path: &Path) -> Result<String, Error> {
        Format::of(FILE_FIELD, path)?;
        crate::config::file::read_text(FILE_FIELD, path)
    }

    /// Parses `text`, the content of `path`, in the format its extension names.
    pub(crate) fn parse_for_path(path: &Path, text: &str) -> Result<Self, Error> {
        let format = Format::of(FILE_FIELD, path)?;
        Self::parse_file(FILE_FIELD, path, format, text)
    }

    fn parse_file(field: &str, path: &Path, format: Format, text: &str) -> Result<Self, Error> {
        let config: SamplingConfig = crate::config::file::parse_file(field, path, format, text)?;
        config.validate()?;
        Ok(config)
    }
}
