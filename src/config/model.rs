//! The configuration as data: the serde types a file deserializes into and code builds.
//! Nothing here reads the environment or checks a value; see `env`, `validate` and
//! `resolve` for that.

use super::signals::{LogsConfig, MetricsConfig};
use crate::logging::LogFormat;
use crate::sampler::{RemoteSamplingConfig, SamplingConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Configuration of a [`TracingManager`](crate::manager::TracingManager), as read from a file
/// (TOML, JSON, or YAML with the `yaml` feature; chosen by extension) or built in code.
/// Unknown keys are rejected so that typos surface; see the [module docs](super) for the
/// format and the precedence of sources.
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
    /// `tracing_subscriber::EnvFilter` directives for **log output only**; default `RUST_LOG`
    /// (with `from_env`), else `info`. It never changes which spans are exported.
    pub log_filter: Option<String>,
    /// `EnvFilter` directives choosing which `tracing` spans (`#[traced]`, `info_span!`, ...)
    /// become OpenTelemetry spans; default `MESHTRACE_SPAN_FILTER` (with `from_env`), else
    /// `info`. meshtrace's own server and client spans are not `tracing` spans and are always
    /// traced (the sampler decides).
    pub span_filter: Option<String>,
    /// Log output format; default text.
    pub log_format: Option<LogFormat>,
    /// How long `shutdown` (and dropping the manager) waits for queued spans; default 5000.
    pub shutdown_timeout_ms: Option<u64>,
    /// Head sampling; replaces the environment's sampling settings as a whole when given.
    /// Default: [`SamplingConfig::default`] (everything sampled).
    pub sampling: Option<SamplingConfig>,
    /// Central sampling strategies (`[remote_sampling]`, feature `jaeger-remote`): when an
    /// endpoint is set here, by the builder or by `MESHTRACE_SAMPLING_REMOTE_ENDPOINT`, the
    /// manager polls it and applies what it answers to the sampler. Merged field by field
    /// over the `MESHTRACE_SAMPLING_REMOTE_*` variables. Default: no poller.
    pub remote_sampling: Option<RemoteSamplingConfig>,
    /// Per-span storage limits, applied where spans are recorded and exported
    /// (`OTEL_SPAN_*_LIMIT`); unset fields use the defaults.
    pub span_limits: SpanLimitsConfig,
    /// Rules that drop finished spans before export (`MESHTRACE_EXPORT_FILTER`); replaces
    /// the environment's filter as a whole when given. Default: no rule.
    pub export_filter: Option<crate::export::ExportFilterConfig>,
    /// HTTP and sampler metrics (`[metrics]`): on by default, exported where spans go.
    pub metrics: MetricsConfig,
    /// Log events as OpenTelemetry log records over OTLP (`[logs]`, feature `otlp-logs`);
    /// off by default.
    pub logs: LogsConfig,
    /// `env_filter` was renamed `log_filter`; kept to say so instead of "unknown field".
    #[serde(
        rename = "env_filter",
        skip_serializing,
        deserialize_with = "moved::env_filter"
    )]
    pub(crate) legacy_env_filter: Moved,
}

/// A key that used to exist: deserializing it is an error that says where it lives now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Moved;

/// The errors of keys that moved. serde calls these only when the key is present.
pub(crate) mod moved {
    use super::Moved;

    macro_rules! moved {
        ($($name:ident => $message:literal,)*) => {$(
            pub(crate) fn $name<'de, D: serde::Deserializer<'de>>(_: D) -> Result<Moved, D::Error> {
                Err(<D::Error as serde::de::Error>::custom($message))
            }
        )*};
    }

    // Backticks, not double quotes: quoted text is redacted from parse errors.
    moved! {
        env_filter => "`env_filter` was renamed `log_filter` (it filters log output only; \
            `span_filter` chooses which `tracing` spans are exported)",
        span_limits => "`span_limits` is no longer a sampling setting: move the table to the \
            top level of the tracing configuration (`[span_limits]`, or the OTEL_SPAN_*_LIMIT \
            variables)",
        debug_header => "`debug.header` is no longer a sampling setting: the header is a \
            setting of the server layer (`TracingLayer::debug_header`)",
        remote => "`remote` is not a sampling setting: the manager polls central strategies; \
            write the table at the top level of the tracing configuration \
            (`[remote_sampling]`), or use the MESHTRACE_SAMPLING_REMOTE_* variables",
    }
}

/// Where finished, sampled spans are sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum ExporterConfig {
    /// One human-readable line per span on stdout; the default when no endpoint is configured.
    Stdout,
    /// OTLP over HTTP/protobuf, HTTP/JSON or gRPC (needs the `otlp` feature at build time;
    /// `https://` endpoints need `otlp-tls`).
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
    /// PEM file of the CA certificate(s) that verify the collector, instead of the
    /// platform's roots (`OTEL_EXPORTER_OTLP_CERTIFICATE`); `https://` only.
    pub certificate: Option<PathBuf>,
    /// PEM file of the client certificate for mutual TLS
    /// (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`); needs `client_key`.
    pub client_certificate: Option<PathBuf>,
    /// PEM file of the client certificate's private key
    /// (`OTEL_EXPORTER_OTLP_CLIENT_KEY`); needs `client_certificate`.
    pub client_key: Option<PathBuf>,
}

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// Protobuf over HTTP (`http/protobuf`), port 4318.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON over HTTP (`http/json`), port 4318.
    #[serde(rename = "http/json")]
    HttpJson,
    /// gRPC (`grpc`), port 4317.
    #[serde(rename = "grpc")]
    Grpc,
}

impl OtlpProtocol {
    /// The name used in configuration and `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::HttpJson => "http/json",
            OtlpProtocol::Grpc => "grpc",
        }
    }

    /// Whether requests are plain HTTP (the signal path is appended to the base URL).
    pub(crate) fn is_http(self) -> bool {
        matches!(self, OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson)
    }
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

/// Per-span storage limits (`[span_limits]`, `OTEL_SPAN_*_LIMIT`); unset fields use the
/// defaults. An export setting: it bounds what every span holds, sampled by anyone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SpanLimitsConfig {
    /// Attributes per span (default 128, at most 65536).
    pub max_attributes_per_span: Option<u32>,
    /// Events per span (default 128, at most 65536).
    pub max_events_per_span: Option<u32>,
    /// Links per span (default 128, at most 65536).
    pub max_links_per_span: Option<u32>,
    /// Attributes per event (default 128, at most 65536).
    pub max_attributes_per_event: Option<u32>,
    /// Attributes per link (default 128, at most 65536).
    pub max_attributes_per_link: Option<u32>,
    /// Longest string value in bytes, for attributes, status descriptions, event names and
    /// exception messages (default 4096, `1..=65536`; there is no "unlimited").
    pub max_attribute_value_length: Option<u32>,
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

    pub(crate) fn merge(self, over: BatchConfig) -> BatchConfig {
        BatchConfig {
            max_queue_size: over.max_queue_size.or(self.max_queue_size),
            scheduled_delay_ms: over.scheduled_delay_ms.or(self.scheduled_delay_ms),
            max_export_batch_size: over.max_export_batch_size.or(self.max_export_batch_size),
            export_timeout_ms: over.export_timeout_ms.or(self.export_timeout_ms),
        }
    }
}

impl SpanLimitsConfig {
    /// Sets [`max_attributes_per_span`](Self::max_attributes_per_span).
    #[must_use]
    pub fn max_attributes_per_span(mut self, n: u32) -> Self {
        self.max_attributes_per_span = Some(n);
        self
    }

    /// Sets [`max_events_per_span`](Self::max_events_per_span).
    #[must_use]
    pub fn max_events_per_span(mut self, n: u32) -> Self {
        self.max_events_per_span = Some(n);
        self
    }

    /// Sets [`max_links_per_span`](Self::max_links_per_span).
    #[must_use]
    pub fn max_links_per_span(mut self, n: u32) -> Self {
        self.max_links_per_span = Some(n);
        self
    }

    /// Sets [`max_attributes_per_event`](Self::max_attributes_per_event).
    #[must_use]
    pub fn max_attributes_per_event(mut self, n: u32) -> Self {
        self.max_attributes_per_event = Some(n);
        self
    }

    /// Sets [`max_attributes_per_link`](Self::max_attributes_per_link).
    #[must_use]
    pub fn max_attributes_per_link(mut self, n: u32) -> Self {
        self.max_attributes_per_link = Some(n);
        self
    }

    /// Sets [`max_attribute_value_length`](Self::max_attribute_value_length).
    #[must_use]
    pub fn max_attribute_value_length(mut self, bytes: u32) -> Self {
        self.max_attribute_value_length = Some(bytes);
        self
    }

    pub(crate) fn merge(self, over: SpanLimitsConfig) -> SpanLimitsConfig {
        SpanLimitsConfig {
            max_attributes_per_span: over
                .max_attributes_per_span
                .or(self.max_attributes_per_span),
            max_events_per_span: over.max_events_per_span.or(self.max_events_per_span),
            max_links_per_span: over.max_links_per_span.or(self.max_links_per_span),
            max_attributes_per_event: over
                .max_attributes_per_event
                .or(self.max_attributes_per_event),
            max_attributes_per_link: over
                .max_attributes_per_link
                .or(self.max_attributes_per_link),
            max_attribute_value_length: over
                .max_attribute_value_length
                .or(self.max_attribute_value_length),
        }
    }
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::validate::shown_url;
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

    /// Sets [`certificate`](Self::certificate): the CA that verifies the collector.
    #[must_use]
    pub fn certificate(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.certificate = Some(pem_file.into());
        self
    }

    /// Sets [`client_certificate`](Self::client_certificate) and
    /// [`client_key`](Self::client_key), for mutual TLS.
    #[must_use]
    pub fn client_identity(
        mut self,
        certificate_pem_file: impl Into<PathBuf>,
        key_pem_file: impl Into<PathBuf>,
    ) -> Self {
        self.client_certificate = Some(certificate_pem_file.into());
        self.client_key = Some(key_pem_file.into());
        self
    }

    pub(crate) fn merge(self, over: OtlpConfig) -> OtlpConfig {
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

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TracingConfig {
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
            log_filter: over.log_filter.or(self.log_filter),
            span_filter: over.span_filter.or(self.span_filter),
            log_format: over.log_format.or(self.log_format),
            shutdown_timeout_ms: over.shutdown_timeout_ms.or(self.shutdown_timeout_ms),
            sampling: over.sampling.or(self.sampling),
            remote_sampling: match (self.remote_sampling, over.remote_sampling) {
                (Some(base), Some(top)) => Some(base.merge(top)),
                (base, top) => top.or(base),
            },
            span_limits: self.span_limits.merge(over.span_limits),
            export_filter: over.export_filter.or(self.export_filter),
            metrics: self.metrics.merge(over.metrics),
            logs: self.logs.merge(over.logs),
            legacy_env_filter: Moved,
        }
    }
}
