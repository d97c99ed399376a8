//! [`TracingConfig`]: everything [`TracingManager`](crate::manager::TracingManager) can be
//! told, as plain data that can come from a configuration file, from the standard `OTEL_*`
//! environment variables, or from code.
//!
//! Every field is optional; an unset field falls through to the next source, in this order
//! (first wins):
//!
//! 1. the [`TracingManagerBuilder`](crate::manager::TracingManagerBuilder) methods,
//! 2. the configuration file / [`TracingConfig`] given to `from_config`/`from_file`,
//! 3. `OTEL_SERVICE_NAME` (service name only),
//! 4. `OTEL_RESOURCE_ATTRIBUTES` and the other variables of [`env`](mod@env) (only with `from_env`,
//!    `from_config` and `from_file`; `builder()` reads no environment at all),
//! 5. the defaults documented on each field.
//!
//! ```toml
//! service_name = "checkout"
//! service_version = "1.4.2"
//! environment = "prod"
//! log_filter = "info,hyper=warn"     # log output only (RUST_LOG)
//! span_filter = "info"               # tracing spans that are exported (MESHTRACE_SPAN_FILTER)
//! log_format = "json"
//! shutdown_timeout_ms = 5000
//!
//! [resource]
//! "team" = "payments"
//!
//! [exporter]
//! kind = "otlp"                      # "stdout" (default) | "otlp" | "none"
//! endpoint = "https://collector:4318" # base URL; "/v1/traces" is appended for HTTP
//! protocol = "http/protobuf"         # or "http/json", "grpc"
//! compression = "gzip"               # or "none"
//! timeout_ms = 10000
//! headers = { "x-api-key" = "secret" }
//! certificate = "/etc/otel/ca.pem"   # https:// only (feature otlp-tls)
//! client_certificate = "/etc/otel/client.pem"
//! client_key = "/etc/otel/client-key.pem"
//!
//! [sampling]                        # see meshtrace::sampler::SamplingConfig
//! base_rate = 0.1
//!
//! [remote_sampling]                 # feature jaeger-remote; see meshtrace::sampler::RemoteSamplingConfig
//! endpoint = "http://jaeger-agent:5778/sampling"
//! interval_secs = 60.0
//!
//! [metrics]                        # see meshtrace::config::MetricsConfig; on by default
//! exporter = "otlp"                # "stdout" | "otlp" | "none"; default: as [exporter]
//! export_interval_ms = 60000
//! temporality = "cumulative"       # or "delta", "lowmemory"
//!
//! [logs]                           # feature otlp-logs; see meshtrace::config::LogsConfig
//! exporter = "otlp"                # default "none"
//!
//! [span_limits]
//! max_attributes_per_span = 128
//! max_attribute_value_length = 4096
//!
//! [batch]
//! max_queue_size = 2048
//! scheduled_delay_ms = 5000
//! max_export_batch_size = 512
//! export_timeout_ms = 30000
//! ```
//!
//! Where each concern lives: the serde types in `model`, the environment reader in
//! [`env`](mod@env), the file reader (shared with the sampler's configuration) in `file`, the checks
//! in `validate`, and the merge of the sources with the defaults in `resolve`.

pub mod env;
pub(crate) mod file;
mod model;
mod resolve;
mod signals;
pub(crate) mod validate;

/// Most bytes of any one environment variable that is read (16 KiB).
pub use env::MAX_ENV_VALUE_BYTES;
pub use file::MAX_CONFIG_FILE_BYTES;
pub use model::{
    BatchConfig, ExporterConfig, OtlpCompression, OtlpConfig, OtlpProtocol, SpanLimitsConfig,
    TracingConfig,
};
pub use resolve::{
    DEFAULT_ATTRIBUTE_VALUE_LENGTH, DEFAULT_LOG_FILTER, DEFAULT_SPAN_FILTER, DEFAULT_SPAN_LIMIT,
};
pub use signals::{
    DEFAULT_CARDINALITY_LIMIT, DEFAULT_METRIC_EXPORT_INTERVAL_MS, DEFAULT_METRIC_EXPORT_TIMEOUT_MS,
    LogsConfig, LogsExporter, MAX_CARDINALITY_LIMIT, MESHTRACE_METRICS_ENABLED, MetricsConfig,
    MetricsExporter, MetricsTemporality, OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
    OTEL_LOGS_EXPORTER, OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRIC_EXPORT_TIMEOUT,
    OTEL_METRICS_EXPORTER,
};
pub(crate) use signals::{ResolvedMetrics, ResolvedMetricsExporter};
pub use validate::{
    MAX_ATTRIBUTE_VALUE_LENGTH, MAX_OTLP_HEADERS, MAX_RESOURCE_ATTRIBUTES,
    MAX_RESOURCE_VALUE_BYTES, MAX_SPAN_LIMIT_COUNT,
};

pub(crate) use env::EnvLayer;
pub(crate) use file::Format;
pub(crate) use model::{Moved, millis, moved};
pub(crate) use resolve::{Resolved, ResolvedBatch, ResolvedExporter, resolve};
// For the OTLP wiring.
#[cfg_attr(not(feature = "otlp"), allow(unused_imports))]
pub(crate) use resolve::ResolvedOtlp;
#[allow(unused_imports)] // read by the TLS wiring (feature `otlp-tls`, export branch)
pub(crate) use resolve::ResolvedTls;

use crate::Error;
use std::path::Path;

impl TracingConfig {
    /// Parses a TOML document. Values are checked by [`validate`](Self::validate) (and by
    /// `install()`), so that every error names its field:
    ///
    /// ```
    /// use meshtrace::config::TracingConfig;
    ///
    /// let config = TracingConfig::from_toml(
    ///     r#"
    ///     service_name = "checkout"
    ///     [batch]
    ///     max_queue_size = 0
    ///     "#,
    /// )?;
    /// assert_eq!(
    ///     config.validate().unwrap_err().to_string(),
    ///     "batch.max_queue_size = \"0\" is invalid: it must be between 1 and 1048576"
    /// );
    /// # Ok::<(), meshtrace::Error>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        file::parse(Format::Toml, text)
    }

    /// Parses a JSON document.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        file::parse(Format::Json, text)
    }

    /// Parses a YAML document (feature `yaml`).
    #[cfg(feature = "yaml")]
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        file::parse(Format::Yaml, text)
    }

    /// Reads a file of at most [`MAX_CONFIG_FILE_BYTES`]; the format follows the extension:
    /// `.toml`, `.json`, `.yaml`/`.yml` (feature `yaml`). Other extensions are refused.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        file::load("config file", path.as_ref())
    }
}
