//! [`TracingConfig`]: everything [`TracingManager`](crate::manager::TracingManager) can be
//! told, as plain data that can come from a TOML/JSON file, from the standard `OTEL_*`
//! environment variables, or from code.
//!
//! Every field is optional; an unset field falls through to the next source, in this order
//! (first wins):
//!
//! 1. the [`TracingManagerBuilder`](crate::manager::TracingManagerBuilder) methods,
//! 2. the configuration file / [`TracingConfig`] given to `from_config`/`from_file`,
//! 3. `OTEL_SERVICE_NAME` (service name only),
//! 4. `OTEL_RESOURCE_ATTRIBUTES` and the other `OTEL_*` variables (only with `from_env`,
//!    `from_config` and `from_file`; `builder()` reads no environment at all),
//! 5. the defaults documented on each field.
//!
//! ```toml
//! service_name = "checkout"
//! service_version = "1.4.2"
//! environment = "prod"
//! env_filter = "info,hyper=warn"
//! log_format = "json"
//! shutdown_timeout_ms = 5000
//!
//! [resource]
//! "team" = "payments"
//!
//! [exporter]
//! kind = "otlp"                      # "stdout" (default) | "otlp" | "none"
//! endpoint = "http://collector:4318" # base URL; "/v1/traces" is appended for HTTP
//! protocol = "http/protobuf"         # or "grpc"
//! compression = "gzip"               # or "none"
//! timeout_ms = 10000
//! headers = { "x-api-key" = "secret" }
//!
//! [sampling]                        # see meshtrace::sampler::SamplingConfig
//! base_rate = 0.1
//!
//! [batch]
//! max_queue_size = 2048
//! scheduled_delay_ms = 5000
//! max_export_batch_size = 512
//! export_timeout_ms = 30000
//! ```

use crate::Error;
use crate::logging::LogFormat;
use crate::sampler::SamplingConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most resource attributes accepted from all sources together.
pub const MAX_RESOURCE_ATTRIBUTES: usize = 128;
/// Most bytes of a resource attribute key or value.
pub const MAX_RESOURCE_VALUE_BYTES: usize = 4096;
/// Most OTLP headers accepted.
pub const MAX_OTLP_HEADERS: usize = 64;
/// Most bytes of any one environment variable that is parsed (`OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_EXPORTER_OTLP_HEADERS`, ...).
pub const MAX_ENV_VALUE_BYTES: usize = 16 * 1024;

const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;
const DEFAULT_SCHEDULED_DELAY_MS: u64 = 5000;
const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;
const DEFAULT_EXPORT_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_OTLP_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 5000;
const DEFAULT_ENV_FILTER: &str = "info";
const MAX_QUEUE_SIZE_LIMIT: usize = 1 << 20;
/// Upper bound for every millisecond knob: one hour.
const MAX_MILLIS: u64 = 3_600_000;

/// Configuration of a [`TracingManager`](crate::manager::TracingManager), as read from a file
/// (TOML, or JSON by extension) or built in code. Unknown keys are rejected so that typos
/// surface; see the [module docs](self) for the format and the precedence of sources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TracingConfig {
    /// `service.name`; default `unknown_service:<executable name>`.
    pub service_name: Option<String>,
    /// `service.version`; default unset.
    pub service_version: Option<String>,
    /// `deployment.environment.name`; default unset.
    pub environment: Option<String>,
    /// Extra resource attributes (string values).
    pub resource: BTreeMap<String, String>,
    /// Where spans go; default [`ExporterConfig::Stdout`].
    pub exporter: Option<ExporterConfig>,
    /// Batching knobs.
    pub batch: BatchConfig,
    /// `tracing_subscriber::EnvFilter` directives; default `RUST_LOG` (with `from_env`), else `info`.
    pub env_filter: Option<String>,
    /// Log output format; default text.
    pub log_format: Option<LogFormat>,
    /// How long `shutdown` (and dropping the manager) waits for queued spans; default 5000.
    pub shutdown_timeout_ms: Option<u64>,
    /// Head sampling and span limits; replaces the environment's sampling settings as a
    /// whole when given. Default: [`SamplingConfig::default`] (everything sampled).
    pub sampling: Option<SamplingConfig>,
}

/// Where finished, sampled spans are sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum ExporterConfig {
    /// One human-readable line per span on stdout; the default when no endpoint is configured.
    Stdout,
    /// OTLP over HTTP/protobuf or gRPC (needs the `otlp` feature at build time).
    Otlp(OtlpConfig),
    /// Spans are sampled and recorded but sent nowhere.
    None,
}

/// OTLP exporter settings; unset fields come from the next source, then the defaults.
/// Its `Debug` output shows header names only.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// Base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`); for HTTP `/v1/traces` is appended.
    /// Default `http://localhost:4318` (HTTP) or `http://localhost:4317` (gRPC).
    pub endpoint: Option<String>,
    /// Full traces URL used as is (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); wins over `endpoint`.
    pub traces_endpoint: Option<String>,
    /// Transport; default HTTP/protobuf.
    pub protocol: Option<OtlpProtocol>,
    /// Compression; default gzip.
    pub compression: Option<OtlpCompression>,
    /// Extra request headers (e.g. an API key). Values never appear in errors or logs.
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout in milliseconds; default 10000.
    pub timeout_ms: Option<u64>,
    // TODO(config branch): replaced by the config branch's TLS settings (same names).
    /// PEM file of the CA that signs the collector's certificate
    /// (`OTEL_EXPORTER_OTLP_CERTIFICATE`); replaces the platform's roots. Feature `otlp-tls`.
    pub certificate: Option<String>,
    /// PEM file of the client certificate for mutual TLS (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`).
    pub client_certificate: Option<String>,
    /// PEM file of the client certificate's key (`OTEL_EXPORTER_OTLP_CLIENT_KEY`).
    pub client_key: Option<String>,
}

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// Protobuf over HTTP/1.1 (`http/protobuf`), port 4318.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON over HTTP/1.1 (`http/json`), port 4318.
    #[serde(rename = "http/json")]
    HttpJson,
    /// gRPC (`grpc`), port 4317.
    #[serde(rename = "grpc")]
    Grpc,
}

/// OTLP payload compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OtlpCompression {
    /// gzip (the meshtrace default: every collector accepts it and spans shrink several-fold).
    Gzip,
    /// No compression (the OpenTelemetry specification's default).
    None,
}

/// Batching knobs of the export queue (`OTEL_BSP_*`); unset fields use the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BatchConfig {
    /// Spans held for export at most; more are dropped and counted. Default 2048.
    pub max_queue_size: Option<usize>,
    /// Milliseconds between two exports. Default 5000.
    pub scheduled_delay_ms: Option<u64>,
    /// Spans per export request at most (<= `max_queue_size`). Default 512.
    pub max_export_batch_size: Option<usize>,
    /// Milliseconds one OTLP export may take, retries included. Default 30000.
    pub export_timeout_ms: Option<u64>,
}

impl BatchConfig {
    /// Sets [`max_queue_size`](Self::max_queue_size).
    #[must_use]
    pub fn max_queue_size(mut self, spans: usize) -> Self {
        self.max_queue_size = Some(spans);
        self
    }

    /// Sets [`scheduled_delay_ms`](Self::scheduled_delay_ms).
    #[must_use]
    pub fn scheduled_delay(mut self, delay: Duration) -> Self {
        self.scheduled_delay_ms = Some(millis(delay));
        self
    }

    /// Sets [`max_export_batch_size`](Self::max_export_batch_size).
    #[must_use]
    pub fn max_export_batch_size(mut self, spans: usize) -> Self {
        self.max_export_batch_size = Some(spans);
        self
    }

    /// Sets [`export_timeout_ms`](Self::export_timeout_ms).
    #[must_use]
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout_ms = Some(millis(timeout));
        self
    }

    fn merge(self, over: BatchConfig) -> BatchConfig {
        BatchConfig {
            max_queue_size: over.max_queue_size.or(self.max_queue_size),
            scheduled_delay_ms: over.scheduled_delay_ms.or(self.scheduled_delay_ms),
            max_export_batch_size: over.max_export_batch_size.or(self.max_export_batch_size),
            export_timeout_ms: over.export_timeout_ms.or(self.export_timeout_ms),
        }
    }
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint.as_deref().map(shown_url))
            .field(
                "traces_endpoint",
                &self.traces_endpoint.as_deref().map(shown_url),
            )
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .field("certificate", &self.certificate)
            .field("client_certificate", &self.client_certificate)
            .field("client_key", &self.client_key)
            .finish()
    }
}

impl OtlpConfig {
    /// An OTLP config sending to `endpoint` (a base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        OtlpConfig {
            endpoint: Some(endpoint.into()),
            ..OtlpConfig::default()
        }
    }

    /// Sets [`traces_endpoint`](Self::traces_endpoint).
    #[must_use]
    pub fn traces_endpoint(mut self, url: impl Into<String>) -> Self {
        self.traces_endpoint = Some(url.into());
        self
    }

    /// Sets [`protocol`](Self::protocol).
    #[must_use]
    pub fn protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Sets [`compression`](Self::compression).
    #[must_use]
    pub fn compression(mut self, compression: OtlpCompression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// Adds a request header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets [`timeout_ms`](Self::timeout_ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(millis(timeout));
        self
    }

    fn merge(self, over: OtlpConfig) -> OtlpConfig {
        let mut headers = self.headers;
        headers.extend(over.headers);
        OtlpConfig {
            endpoint: over.endpoint.or(self.endpoint),
            traces_endpoint: over.traces_endpoint.or(self.traces_endpoint),
            protocol: over.protocol.or(self.protocol),
            compression: over.compression.or(self.compression),
            headers,
            timeout_ms: over.timeout_ms.or(self.timeout_ms),
            certificate: over.certificate.or(self.certificate),
            client_certificate: over.client_certificate.or(self.client_certificate),
            client_key: over.client_key.or(self.client_key),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

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
    ///     r#"invalid configuration: batch.max_queue_size = "0": must be between 1 and 1048576"#
    /// );
    /// # Ok::<(), meshtrace::Error>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| {
            // `Display` of toml 0.9's error quotes the offending source line, which may hold
            // a secret (an OTLP header); report the message, the key and the position only.
            let place = e
                .span()
                .map(|span| toml_place(text, span.start))
                .unwrap_or_default();
            Error::config("config", "<toml>", format!("{}{place}", e.message().trim()))
        })
    }

    /// Parses a JSON document.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| Error::config("config", "<json>", e.to_string()))
    }

    /// Reads a file: JSON when the extension is `.json`, TOML otherwise.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config("config file", path.display(), e.to_string()))?;
        let is_json = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        let parsed = if is_json {
            Self::from_json(&text)
        } else {
            Self::from_toml(&text)
        };
        // Name the file in the error: the parser only knows line and column.
        parsed.map_err(|e| match e {
            Error::Config { reason, .. } => Error::config("config file", path.display(), reason),
            other => other,
        })
    }

    /// Checks every field (ranges, URLs, header names, filter syntax) as `install()` would.
    pub fn validate(&self) -> Result<(), Error> {
        resolve(self.clone(), OtlpConfig::default()).map(|_| ())
    }

    /// `over`'s set fields win; maps are merged key by key.
    pub(crate) fn merge(self, over: TracingConfig) -> TracingConfig {
        let mut resource = self.resource;
        resource.extend(over.resource);
        let exporter = match (self.exporter, over.exporter) {
            // Field by field, so that e.g. a file's endpoint and an env var's API key combine.
            (Some(ExporterConfig::Otlp(base)), Some(ExporterConfig::Otlp(top))) => {
                Some(ExporterConfig::Otlp(base.merge(top)))
            }
            (base, top) => top.or(base),
        };
        TracingConfig {
            service_name: over.service_name.or(self.service_name),
            service_version: over.service_version.or(self.service_version),
            environment: over.environment.or(self.environment),
            resource,
            exporter,
            batch: self.batch.merge(over.batch),
            env_filter: over.env_filter.or(self.env_filter),
            log_format: over.log_format.or(self.log_format),
            shutdown_timeout_ms: over.shutdown_timeout_ms.or(self.shutdown_timeout_ms),
            sampling: over.sampling.or(self.sampling),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Environment

/// The environment variables read by `TracingManager::from_env`.
pub mod env {
    /// `service.name`; wins over a `service.name` inside `OTEL_RESOURCE_ATTRIBUTES`.
    pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    /// `key=value,key=value` resource attributes (values percent-decoded).
    pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    /// `otlp`, `console` (or `stdout`), `none`.
    pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
    /// `true` disables export (as `OTEL_TRACES_EXPORTER=none`).
    pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
    /// OTLP base URL; `/v1/traces` is appended for HTTP.
    pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    /// OTLP traces URL, used as is.
    pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    /// `http/protobuf` or `grpc`.
    pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    /// Traces-only variant of `OTEL_EXPORTER_OTLP_PROTOCOL`; wins over it.
    pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
    /// `gzip` or `none`.
    pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
    /// Traces-only variant of `OTEL_EXPORTER_OTLP_COMPRESSION`; wins over it.
    pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
    /// `key=value,key=value` request headers (values percent-decoded).
    pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    /// Traces-only headers; merged over `OTEL_EXPORTER_OTLP_HEADERS`.
    pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    /// Request timeout in milliseconds.
    pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
    /// Traces-only variant of `OTEL_EXPORTER_OTLP_TIMEOUT`; wins over it.
    pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
    /// Export queue size in spans.
    pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
    /// Milliseconds between exports.
    pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
    /// Spans per export request.
    pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
    /// Milliseconds one export may take.
    pub const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
    /// `tracing_subscriber::EnvFilter` directives.
    pub const RUST_LOG: &str = "RUST_LOG";
}

/// Reads the `OTEL_*` variables (and `RUST_LOG`) through `lookup` into a config layer.
/// Empty values count as unset, as the OpenTelemetry specification asks.
///
/// The OTLP settings are returned apart: they sit beneath whatever OTLP exporter the file or
/// the builder configures, whichever source selected OTLP.
pub(crate) fn from_env_lookup(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(TracingConfig, OtlpConfig), Error> {
    use env::*;
    let get = |name: &str| -> Result<Option<String>, Error> {
        match lookup(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) if v.len() > MAX_ENV_VALUE_BYTES => Err(Error::config(
                name,
                format!("<{} bytes>", v.len()),
                format!("longer than {MAX_ENV_VALUE_BYTES} bytes"),
            )),
            Some(v) => Ok(Some(v.trim().to_owned())),
        }
    };
    let first = |a: &str, b: &str| -> Result<Option<(String, String)>, Error> {
        Ok(match get(a)? {
            Some(v) => Some((a.to_owned(), v)),
            None => get(b)?.map(|v| (b.to_owned(), v)),
        })
    };

    let mut config = TracingConfig::default();

    if let Some(attrs) = get(OTEL_RESOURCE_ATTRIBUTES)? {
        for (key, value) in parse_key_values(OTEL_RESOURCE_ATTRIBUTES, &attrs, true)? {
            match key.as_str() {
                "service.name" => config.service_name = Some(value),
                "service.version" => config.service_version = Some(value),
                "deployment.environment.name" | "deployment.environment" => {
                    config.environment = Some(value)
                }
                _ => {
                    config.resource.insert(key, value);
                }
            }
        }
    }
    if let Some(name) = get(OTEL_SERVICE_NAME)? {
        config.service_name = Some(name);
    }

    let mut otlp = OtlpConfig::default();
    let mut otlp_configured = false;
    if let Some(url) = get(OTEL_EXPORTER_OTLP_ENDPOINT)? {
        check_url(OTEL_EXPORTER_OTLP_ENDPOINT, &url)?;
        otlp.endpoint = Some(url);
        otlp_configured = true;
    }
    if let Some(url) = get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)? {
        check_url(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, &url)?;
        otlp.traces_endpoint = Some(url);
        otlp_configured = true;
    }
    if let Some((name, value)) = first(
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        OTEL_EXPORTER_OTLP_PROTOCOL,
    )? {
        otlp.protocol = Some(match value.as_str() {
            "http/protobuf" => OtlpProtocol::HttpProtobuf,
            "http/json" => OtlpProtocol::HttpJson,
            "grpc" => OtlpProtocol::Grpc,
            _ => {
                return Err(Error::config(
                    name,
                    value,
                    "supported protocols are `http/protobuf`, `http/json` and `grpc`",
                ));
            }
        });
    }
    if let Some((name, value)) = first(
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
        OTEL_EXPORTER_OTLP_COMPRESSION,
    )? {
        otlp.compression = Some(match value.to_ascii_lowercase().as_str() {
            "gzip" => OtlpCompression::Gzip,
            "none" => OtlpCompression::None,
            _ => {
                return Err(Error::config(
                    name,
                    value,
                    "supported compressions are `gzip` and `none`",
                ));
            }
        });
    }
    for name in [
        OTEL_EXPORTER_OTLP_HEADERS,
        OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    ] {
        if let Some(value) = get(name)? {
            otlp.headers.extend(parse_key_values(name, &value, false)?);
        }
    }
    if let Some((name, value)) = first(
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        OTEL_EXPORTER_OTLP_TIMEOUT,
    )? {
        otlp.timeout_ms = Some(parse_millis(&name, &value)?);
    }
    for (field, traces, general) in [
        (
            &mut otlp.certificate,
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ),
        (
            &mut otlp.client_certificate,
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ),
        (
            &mut otlp.client_key,
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ),
    ] {
        if let Some((_, path)) = first(traces, general)? {
            *field = Some(path);
        }
    }

    let disabled = match get(OTEL_SDK_DISABLED)? {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(Error::config(
                OTEL_SDK_DISABLED,
                v,
                "expected true or false",
            ));
        }
    };
    config.exporter = match get(OTEL_TRACES_EXPORTER)?.as_deref() {
        _ if disabled => Some(ExporterConfig::None),
        Some("none") => Some(ExporterConfig::None),
        Some("console") | Some("stdout") => Some(ExporterConfig::Stdout),
        Some("otlp") => Some(ExporterConfig::Otlp(OtlpConfig::default())),
        Some(other) => {
            return Err(Error::config(
                OTEL_TRACES_EXPORTER,
                other,
                "supported exporters are `otlp`, `console` and `none`",
            ));
        }
        // An endpoint alone selects OTLP; other OTLP settings (say, only an API key header)
        // do not, they apply once a file or the builder selects OTLP.
        None if otlp_configured => Some(ExporterConfig::Otlp(OtlpConfig::default())),
        None => None,
    };

    if let Some(v) = get(OTEL_BSP_MAX_QUEUE_SIZE)? {
        config.batch.max_queue_size = Some(parse_count(OTEL_BSP_MAX_QUEUE_SIZE, &v)?);
    }
    if let Some(v) = get(OTEL_BSP_SCHEDULE_DELAY)? {
        config.batch.scheduled_delay_ms = Some(parse_millis(OTEL_BSP_SCHEDULE_DELAY, &v)?);
    }
    if let Some(v) = get(OTEL_BSP_MAX_EXPORT_BATCH_SIZE)? {
        config.batch.max_export_batch_size = Some(parse_count(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, &v)?);
    }
    if let Some(v) = get(OTEL_BSP_EXPORT_TIMEOUT)? {
        config.batch.export_timeout_ms = Some(parse_millis(OTEL_BSP_EXPORT_TIMEOUT, &v)?);
    }
    if let Some(v) = get(RUST_LOG)? {
        check_env_filter(RUST_LOG, &v)?;
        config.env_filter = Some(v);
    }
    Ok((config, otlp))
}

/// Parses `key=value,key=value` (W3C-baggage-like, as `OTEL_RESOURCE_ATTRIBUTES` and
/// `OTEL_EXPORTER_OTLP_HEADERS` are specified); values are percent-decoded. Header values are
/// secrets, so `show_values` is false for them and errors name only the key.
fn parse_key_values(
    field: &str,
    input: &str,
    show_values: bool,
) -> Result<Vec<(String, String)>, Error> {
    let limit = if show_values {
        MAX_RESOURCE_ATTRIBUTES
    } else {
        MAX_OTLP_HEADERS
    };
    let mut out = Vec::new();
    for member in input.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let shown = |m: &str| {
            if show_values {
                truncate(m, 64)
            } else {
                // Only the leading header-name characters: `x-api-key:secret` must not leak.
                let name: String = m
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                    .take(64)
                    .collect();
                name + "=<redacted>"
            }
        };
        let Some((key, value)) = member.split_once('=') else {
            return Err(Error::config(field, shown(member), "expected key=value"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(Error::config(field, shown(member), "empty key"));
        }
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| Error::config(field, shown(member), "value is not UTF-8 once decoded"))?;
        out.push((key.to_owned(), value.into_owned()));
        if out.len() > limit {
            return Err(Error::config(
                field,
                format!("<{} or more members>", out.len()),
                format!("at most {limit} members are accepted"),
            ));
        }
    }
    Ok(out)
}

/// ` (key `batch.max_queue_size`, line 2, column 18)` for an error at byte `offset`: the key
/// is the text before `=` on that line, prefixed with the last `[table]` header above it.
fn toml_place(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_no = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let key = match (table, key) {
        (Some(table), Some(key)) => {
            format!("key `{}.{}`, ", truncate(table, 64), truncate(key, 64))
        }
        (None, Some(key)) => format!("key `{}`, ", truncate(key, 64)),
        _ => String::new(),
    };
    format!(" ({key}line {line_no}, column {column})")
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// URLs may carry credentials (`user:pass@host`); never echo those.
fn shown_url(url: &str) -> String {
    if url.contains('@') {
        "<redacted: contains credentials>".to_owned()
    } else {
        truncate(url, 256)
    }
}

fn check_url(field: &str, url: &str) -> Result<(), Error> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::config(field, shown_url(url), e.to_string()))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(Error::config(
                field,
                shown_url(url),
                "expected an http:// or https:// URL",
            ));
        }
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(Error::config(field, shown_url(url), "the URL has no host"));
    };
    // opentelemetry-otlp logs the endpoint it connects to; credentials must not go there.
    if authority.as_str().contains('@') {
        return Err(Error::config(
            field,
            shown_url(url),
            "credentials in the URL are not accepted; send them in a header",
        ));
    }
    Ok(())
}

fn parse_millis(field: &str, value: &str) -> Result<u64, Error> {
    let n = value
        .parse::<u64>()
        .map_err(|_| Error::config(field, truncate(value, 64), "expected milliseconds"))?;
    check_millis(field, n)
}

fn check_millis(field: &str, n: u64) -> Result<u64, Error> {
    if n == 0 || n > MAX_MILLIS {
        return Err(Error::config(
            field,
            n,
            format!("must be between 1 and {MAX_MILLIS} milliseconds"),
        ));
    }
    Ok(n)
}

fn parse_count(field: &str, value: &str) -> Result<usize, Error> {
    let n = value
        .parse::<usize>()
        .map_err(|_| Error::config(field, truncate(value, 64), "expected a positive integer"))?;
    check_count(field, n)
}

fn check_count(field: &str, n: usize) -> Result<usize, Error> {
    if n == 0 || n > MAX_QUEUE_SIZE_LIMIT {
        return Err(Error::config(
            field,
            n,
            format!("must be between 1 and {MAX_QUEUE_SIZE_LIMIT}"),
        ));
    }
    Ok(n)
}

fn check_env_filter(field: &str, directives: &str) -> Result<(), Error> {
    if directives.len() > MAX_ENV_VALUE_BYTES {
        return Err(Error::config(
            field,
            format!("<{} bytes>", directives.len()),
            format!("longer than {MAX_ENV_VALUE_BYTES} bytes"),
        ));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(directives)
        .map(|_| ())
        .map_err(|e| Error::config(field, truncate(directives, 256), e.to_string()))
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::config(field, value, "must not be empty"));
    }
    if value.len() > max {
        return Err(Error::config(
            field,
            truncate(value, 64),
            format!("longer than {max} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::config(
            field,
            truncate(value, 64),
            "contains control characters",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Resolution: merged layers -> concrete, validated values

/// A fully resolved, validated configuration.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub(crate) service_name: String,
    pub(crate) service_version: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) exporter: ResolvedExporter,
    pub(crate) batch: ResolvedBatch,
    pub(crate) env_filter: String,
    pub(crate) log_format: LogFormat,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) sampling: SamplingConfig,
}

#[derive(Clone, Debug)]
pub(crate) enum ResolvedExporter {
    Stdout,
    None,
    // Read only by the OTLP wiring (feature `otlp`).
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    Otlp(ResolvedOtlp),
}

#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) struct ResolvedOtlp {
    /// The full URL requests go to.
    pub(crate) url: String,
    pub(crate) protocol: OtlpProtocol,
    pub(crate) compression: OtlpCompression,
    /// Lower-case names, validated as HTTP header names and values.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    /// Custom CA and client identity for `https://` endpoints (PEM, read at build time).
    #[cfg_attr(not(feature = "otlp-tls"), allow(dead_code))]
    pub(crate) tls: Option<ResolvedTls>,
}

/// TLS material for the OTLP exporter; `None` fields use the defaults (platform roots, no
/// client certificate).
#[derive(Clone, Debug, Default)]
#[cfg_attr(not(feature = "otlp-tls"), allow(dead_code))]
pub(crate) struct ResolvedTls {
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) client_cert_pem: Option<Vec<u8>>,
    pub(crate) client_key_pem: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ResolvedBatch {
    pub(crate) max_queue_size: usize,
    pub(crate) scheduled_delay: Duration,
    pub(crate) max_export_batch_size: usize,
    /// Enforced by the OTLP exporters only (the SDK's thread-based batch processor ignores
    /// it, and a blocking custom exporter cannot be interrupted).
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) export_timeout: Duration,
}

const MAX_NAME_BYTES: usize = 255;

/// Validates `config` (merged from every source) and fills in the defaults. `otlp_env` holds
/// the `OTEL_EXPORTER_OTLP_*` settings, which sit beneath any OTLP exporter configuration.
pub(crate) fn resolve(config: TracingConfig, otlp_env: OtlpConfig) -> Result<Resolved, Error> {
    let service_name = match config.service_name {
        Some(name) => {
            check_text("service_name", &name, MAX_NAME_BYTES)?;
            name
        }
        None => default_service_name(),
    };
    if let Some(v) = &config.service_version {
        check_text("service_version", v, MAX_NAME_BYTES)?;
    }
    if let Some(v) = &config.environment {
        check_text("environment", v, MAX_NAME_BYTES)?;
    }
    if config.resource.len() > MAX_RESOURCE_ATTRIBUTES {
        return Err(Error::config(
            "resource",
            format!("<{} attributes>", config.resource.len()),
            format!("at most {MAX_RESOURCE_ATTRIBUTES} attributes are accepted"),
        ));
    }
    for (key, value) in &config.resource {
        check_text("resource", key, MAX_NAME_BYTES)?;
        if value.len() > MAX_RESOURCE_VALUE_BYTES {
            return Err(Error::config(
                format!("resource.{key}"),
                truncate(value, 64),
                format!("longer than {MAX_RESOURCE_VALUE_BYTES} bytes"),
            ));
        }
    }

    let exporter = match config.exporter.unwrap_or(ExporterConfig::Stdout) {
        ExporterConfig::Stdout => ResolvedExporter::Stdout,
        ExporterConfig::None => ResolvedExporter::None,
        ExporterConfig::Otlp(otlp) => ResolvedExporter::Otlp(resolve_otlp(otlp_env.merge(otlp))?),
    };

    let b = config.batch;
    let max_queue_size = check_count(
        "batch.max_queue_size",
        b.max_queue_size.unwrap_or(DEFAULT_MAX_QUEUE_SIZE),
    )?;
    let max_export_batch_size = check_count(
        "batch.max_export_batch_size",
        b.max_export_batch_size
            .unwrap_or(DEFAULT_MAX_EXPORT_BATCH_SIZE.min(max_queue_size)),
    )?;
    if max_export_batch_size > max_queue_size {
        return Err(Error::config(
            "batch.max_export_batch_size",
            max_export_batch_size,
            format!("must not exceed batch.max_queue_size ({max_queue_size})"),
        ));
    }
    let batch = ResolvedBatch {
        max_queue_size,
        max_export_batch_size,
        scheduled_delay: Duration::from_millis(check_millis(
            "batch.scheduled_delay_ms",
            b.scheduled_delay_ms.unwrap_or(DEFAULT_SCHEDULED_DELAY_MS),
        )?),
        export_timeout: Duration::from_millis(check_millis(
            "batch.export_timeout_ms",
            b.export_timeout_ms.unwrap_or(DEFAULT_EXPORT_TIMEOUT_MS),
        )?),
    };

    let sampling = config.sampling.unwrap_or_default();
    // Errors from the sampler name the sampling field; prefix them with the section.
    sampling.validate().map_err(|e| match e {
        Error::Config {
            field,
            value,
            reason,
        } if !field.starts_with("sampling") => Error::Config {
            field: format!("sampling.{field}"),
            value,
            reason,
        },
        other => other,
    })?;

    let env_filter = config
        .env_filter
        .unwrap_or_else(|| DEFAULT_ENV_FILTER.to_owned());
    check_env_filter("env_filter", &env_filter)?;

    let shutdown_timeout = Duration::from_millis(check_millis(
        "shutdown_timeout_ms",
        config
            .shutdown_timeout_ms
            .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_MS),
    )?);

    Ok(Resolved {
        service_name,
        service_version: config.service_version,
        environment: config.environment,
        resource: config.resource.into_iter().collect(),
        exporter,
        batch,
        env_filter,
        log_format: config.log_format.unwrap_or_default(),
        shutdown_timeout,
        sampling,
    })
}

fn resolve_otlp(otlp: OtlpConfig) -> Result<ResolvedOtlp, Error> {
    let protocol = otlp.protocol.unwrap_or(OtlpProtocol::HttpProtobuf);
    let url = match (otlp.traces_endpoint, otlp.endpoint) {
        (Some(url), _) => {
            check_url("exporter.traces_endpoint", &url)?;
            url
        }
        (None, base) => {
            let field = "exporter.endpoint";
            let base = base.unwrap_or_else(|| match protocol {
                OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
                    "http://localhost:4318".to_owned()
                }
                OtlpProtocol::Grpc => "http://localhost:4317".to_owned(),
            });
            check_url(field, &base)?;
            match protocol {
                // The specification: signal path appended to the base URL for HTTP only.
                OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
                    format!("{}/v1/traces", base.trim_end_matches('/'))
                }
                OtlpProtocol::Grpc => base,
            }
        }
    };
    if otlp.headers.len() > MAX_OTLP_HEADERS {
        return Err(Error::config(
            "exporter.headers",
            format!("<{} headers>", otlp.headers.len()),
            format!("at most {MAX_OTLP_HEADERS} headers are accepted"),
        ));
    }
    let mut headers = Vec::with_capacity(otlp.headers.len());
    for (name, value) in otlp.headers {
        let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::config(
                "exporter.headers",
                truncate(&name, 64),
                "invalid header name",
            )
        })?;
        if header.as_str().ends_with("-bin") {
            return Err(Error::config(
                "exporter.headers",
                header.as_str(),
                "binary (`-bin`) headers are not supported",
            ));
        }
        if http::HeaderValue::from_str(&value).is_err() || !value.is_ascii() {
            return Err(Error::config(
                format!("exporter.headers.{header}"),
                "<redacted>",
                "invalid header value (printable ASCII only)",
            ));
        }
        headers.push((header.as_str().to_owned(), value));
    }
    let timeout_ms = check_millis(
        "exporter.timeout_ms",
        otlp.timeout_ms.unwrap_or(DEFAULT_OTLP_TIMEOUT_MS),
    )?;
    Ok(ResolvedOtlp {
        url,
        protocol,
        compression: otlp.compression.unwrap_or(OtlpCompression::Gzip),
        headers,
        timeout: Duration::from_millis(timeout_ms),
        tls: resolve_tls(
            &otlp.certificate,
            &otlp.client_certificate,
            &otlp.client_key,
        )?,
    })
}

fn resolve_tls(
    ca: &Option<String>,
    cert: &Option<String>,
    key: &Option<String>,
) -> Result<Option<ResolvedTls>, Error> {
    let read = |field: &str, path: &Option<String>| -> Result<Option<Vec<u8>>, Error> {
        path.as_ref()
            .map(|path| std::fs::read(path).map_err(|e| Error::config(field, path, e.to_string())))
            .transpose()
    };
    if cert.is_some() != key.is_some() {
        return Err(Error::config(
            "exporter.client_certificate",
            cert.as_deref().or(key.as_deref()).unwrap_or_default(),
            "set both client_certificate and client_key, or neither",
        ));
    }
    if ca.is_none() && cert.is_none() {
        return Ok(None);
    }
    Ok(Some(ResolvedTls {
        ca_pem: read("exporter.certificate", ca)?,
        client_cert_pem: read("exporter.client_certificate", cert)?,
        client_key_pem: read("exporter.client_key", key)?,
    }))
}

/// The specification's default: `unknown_service:` followed by the executable name.
fn default_service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .map(|exe| format!("unknown_service:{exe}"))
        .unwrap_or_else(|| "unknown_service".to_owned())
}
