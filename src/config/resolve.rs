//! Resolution: the sources merged in precedence order, every value checked, the defaults
//! filled in, the files the configuration names (PEM) read. What comes out is what the
//! manager builds from; nothing after this point can fail because of the configuration.

use super::env::{EnvLayer, OtlpNames};
use super::file;
use super::model::{
    ExporterConfig, OtlpCompression, OtlpConfig, OtlpProtocol, SpanLimitsConfig, TracingConfig,
};
use super::signals::{ResolvedSignals, resolve_signals};
use super::validate::{
    MAX_ATTRIBUTE_VALUE_LENGTH, MAX_NAME_BYTES, MAX_OTLP_HEADERS, MAX_RESOURCE_ATTRIBUTES,
    MAX_RESOURCE_VALUE_BYTES, MAX_SPAN_LIMIT_COUNT, check_count, check_filter, check_header,
    check_limit, check_millis, check_text, check_url, shown_url, truncate,
};
use crate::Error;
use crate::logging::LogFormat;
use crate::sampler::{
    ENV_REMOTE_ENDPOINT, ENV_REMOTE_SERVICE, RemoteSamplingConfig, SamplingConfig,
};
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;
const DEFAULT_SCHEDULED_DELAY_MS: u64 = 5000;
const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;
const DEFAULT_EXPORT_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_OTLP_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 5000;
/// Default of `log_filter` when neither the configuration nor `RUST_LOG` sets it.
pub const DEFAULT_LOG_FILTER: &str = "info";
/// Default of `span_filter` when neither the configuration nor `MESHTRACE_SPAN_FILTER` sets
/// it: every `tracing` span at INFO and above.
pub const DEFAULT_SPAN_FILTER: &str = "info";
/// Default of every span count limit (the SDK's default).
pub const DEFAULT_SPAN_LIMIT: u32 = 128;
/// Default longest string value of a span, in bytes.
pub const DEFAULT_ATTRIBUTE_VALUE_LENGTH: u32 = 4096;

/// A fully resolved, validated configuration.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub(crate) service_name: String,
    pub(crate) service_version: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) exporter: ResolvedExporter,
    pub(crate) batch: ResolvedBatch,
    /// `EnvFilter` directives for log output; they parse.
    pub(crate) log_filter: String,
    /// `EnvFilter` directives for bridged `tracing` spans; they parse.
    #[allow(dead_code)] // wired by the manager's span layer
    pub(crate) span_filter: String,
    pub(crate) log_format: LogFormat,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) sampling: SamplingConfig,
    /// The strategies poller's settings, checked, with the endpoint and the service set;
    /// `None` when nothing asks for the poller. (Only `Some` with feature `jaeger-remote`.)
    #[cfg_attr(not(feature = "jaeger-remote"), allow(dead_code))]
    pub(crate) remote_sampling: Option<RemoteSamplingConfig>,
    pub(crate) span_limits: ResolvedSpanLimits,
    /// Checked: it compiles.
    pub(crate) export_filter: crate::export::ExportFilterConfig,
    /// Metrics (on by default) and OTLP logs (off by default).
    pub(crate) signals: ResolvedSignals,
}

#[derive(Clone, Debug)]
pub(crate) enum ResolvedExporter {
    Stdout,
    None,
    // Read only by the OTLP wiring (feature `otlp`); without it, resolution refuses OTLP.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    Otlp(ResolvedOtlp),
}

#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) struct ResolvedOtlp {
    /// The full URL requests go to (`/v1/traces` appended for HTTP).
    pub(crate) url: String,
    pub(crate) protocol: OtlpProtocol,
    pub(crate) compression: OtlpCompression,
    /// Lower-case names, validated as HTTP header names and values.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    /// `Some` exactly when the URL is `https://` (only possible with feature `otlp-tls`).
    #[allow(dead_code)] // read by the TLS wiring (feature `otlp-tls`)
    pub(crate) tls: Option<ResolvedTls>,
}

/// TLS material for an `https://` endpoint, read and checked as PEM at build time; `None`
/// fields use the defaults (the platform's roots, no client certificate). The client
/// certificate and key are both set or both unset. `Debug` shows sizes only.
#[derive(Clone, Default)]
#[cfg_attr(not(feature = "otlp-tls"), allow(dead_code))]
pub(crate) struct ResolvedTls {
    /// PEM `CERTIFICATE` block(s): the CA(s) that verify the collector instead of the roots.
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// PEM `CERTIFICATE` block(s): the client certificate chain.
    pub(crate) client_cert_pem: Option<Vec<u8>>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the client certificate.
    pub(crate) client_key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ResolvedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = |b: &Option<Vec<u8>>| b.as_ref().map(|b| format!("<{} bytes>", b.len()));
        f.debug_struct("ResolvedTls")
            .field("ca_pem", &size(&self.ca_pem))
            .field("client_cert_pem", &size(&self.client_cert_pem))
            .field("client_key_pem", &size(&self.client_key_pem))
            .finish()
    }
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

/// Span limits with every default filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedSpanLimits {
    pub(crate) max_attributes_per_span: u32,
    pub(crate) max_events_per_span: u32,
    pub(crate) max_links_per_span: u32,
    pub(crate) max_attributes_per_event: u32,
    pub(crate) max_attributes_per_link: u32,
    /// `1..=65536` bytes.
    pub(crate) max_attribute_value_length: usize,
}

impl Default for ResolvedSpanLimits {
    fn default() -> Self {
        ResolvedSpanLimits {
            max_attributes_per_span: DEFAULT_SPAN_LIMIT,
            max_events_per_span: DEFAULT_SPAN_LIMIT,
            max_links_per_span: DEFAULT_SPAN_LIMIT,
            max_attributes_per_event: DEFAULT_SPAN_LIMIT,
            max_attributes_per_link: DEFAULT_SPAN_LIMIT,
            max_attribute_value_length: DEFAULT_ATTRIBUTE_VALUE_LENGTH as usize,
        }
    }
}

impl ResolvedSpanLimits {
    /// The SDK's limits (all but the value length, which the SDK does not have).
    pub(crate) fn to_sdk(self) -> opentelemetry_sdk::trace::SpanLimits {
        opentelemetry_sdk::trace::SpanLimits {
            max_events_per_span: self.max_events_per_span,
            max_attributes_per_span: self.max_attributes_per_span,
            max_links_per_span: self.max_links_per_span,
            max_attributes_per_event: self.max_attributes_per_event,
            max_attributes_per_link: self.max_attributes_per_link,
        }
    }

    /// Cuts a string value (or each string of a string array) to
    /// `max_attribute_value_length` bytes on a char boundary.
    // The export gate cuts in place (status, event names, links too): `export::gate`.
    #[allow(dead_code)]
    pub(crate) fn truncate_value(&self, value: opentelemetry::Value) -> opentelemetry::Value {
        use opentelemetry::{Array, StringValue, Value};
        let max = self.max_attribute_value_length;
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

impl TracingConfig {
    /// Checks every field (ranges, URLs, header names, filter syntax, TLS files, features)
    /// as `install()` would, without reading the environment.
    pub fn validate(&self) -> Result<(), Error> {
        resolve(None, self.clone(), TracingConfig::default(), false).map(|_| ())
    }
}

/// Merges the sources (first wins: `overrides` (the builder), `file`, the environment,
/// the defaults), checks every value and fills in the defaults.
///
/// `exporter_in_code`: the builder was given a span exporter, so the configured exporter is
/// not built; its settings are still checked, but not whether this build has its features.
pub(crate) fn resolve(
    env: Option<EnvLayer>,
    file: TracingConfig,
    overrides: TracingConfig,
    exporter_in_code: bool,
) -> Result<Resolved, Error> {
    let env = env.unwrap_or_default();
    let top = file.merge(overrides);
    // Which setting asked for OTLP, to name it when this build cannot export OTLP.
    let otlp_origin = match (&top.exporter, env.selected_otlp) {
        (Some(ExporterConfig::Otlp(_)), _) => ("exporter.kind".to_owned(), "otlp".to_owned()),
        (Some(_), _) | (None, None) => (String::new(), String::new()),
        (None, Some(var)) => {
            let value = match var {
                super::env::OTEL_EXPORTER_OTLP_ENDPOINT => env.otlp.endpoint.as_deref(),
                super::env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT => {
                    env.otlp.traces_endpoint.as_deref()
                }
                _ => None,
            };
            (var.to_owned(), value.map_or("otlp".to_owned(), shown_url))
        }
    };
    let config = env.config.clone().merge(top);

    let service_name_set = config.service_name.is_some();
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
                format!("resource.{}", truncate(key, 64)),
                truncate(value, 64),
                format!("it must be at most {MAX_RESOURCE_VALUE_BYTES} bytes"),
            ));
        }
    }

    // Metrics and logs share these OTLP settings; their own are checked after the spans'.
    let exporter_config = config.exporter.clone();
    let exporter = match config.exporter.unwrap_or(ExporterConfig::Stdout) {
        ExporterConfig::Stdout => ResolvedExporter::Stdout,
        ExporterConfig::None => ResolvedExporter::None,
        ExporterConfig::Otlp(top_otlp) => {
            if !cfg!(feature = "otlp") && !exporter_in_code {
                let (field, value) = otlp_origin;
                return Err(Error::missing_feature(
                    field,
                    value,
                    "asks for the OTLP exporter",
                    "otlp",
                ));
            }
            ResolvedExporter::Otlp(resolve_otlp(top_otlp, &env, exporter_in_code)?)
        }
    };

    let signals = resolve_signals(
        &env,
        config.metrics,
        config.logs,
        exporter_config.as_ref(),
        exporter_in_code,
    )?;

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
            format!("it must not exceed batch.max_queue_size ({max_queue_size})"),
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
    sampling.validate()?;
    let remote_sampling = resolve_remote(
        config.remote_sampling,
        &env.remote,
        service_name_set.then_some(service_name.as_str()),
    )?;
    let span_limits = resolve_span_limits(config.span_limits)?;
    let export_filter = config.export_filter.unwrap_or_default();
    export_filter.validate()?;

    let log_filter = config
        .log_filter
        .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned());
    check_filter("log_filter", &log_filter)?;
    let span_filter = config
        .span_filter
        .unwrap_or_else(|| DEFAULT_SPAN_FILTER.to_owned());
    check_filter("span_filter", &span_filter)?;

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
        log_filter,
        span_filter,
        log_format: config.log_format.unwrap_or_default(),
        shutdown_timeout,
        sampling,
        remote_sampling,
        span_limits,
        export_filter,
        signals,
    })
}

/// The strategies poller's settings: the `[remote_sampling]` section (file and builder) over
/// the `MESHTRACE_SAMPLING_REMOTE_*` variables, field by field; errors name the key or the
/// variable that gave the value. `None` when there is no section and no endpoint variable
/// (the other variables alone start nothing, as the OTLP settings without an endpoint).
/// `service_name` is the configured service name (not the `unknown_service` default): the
/// service asked for when none is named.
fn resolve_remote(
    top: Option<RemoteSamplingConfig>,
    env: &RemoteSamplingConfig,
    service_name: Option<&str>,
) -> Result<Option<RemoteSamplingConfig>, Error> {
    if top.is_none() && env.endpoint.is_none() {
        return Ok(None);
    }
    let top = top.unwrap_or_default();
    let endpoint = pick(
        top.endpoint.clone(),
        "remote_sampling.endpoint",
        env.endpoint.clone(),
        ENV_REMOTE_ENDPOINT,
    );
    if !cfg!(feature = "jaeger-remote") {
        let (field, value) = match &endpoint {
            Some(named) => (named.field, shown_url(&named.value)),
            None => ("remote_sampling", "<a section without endpoint>".to_owned()),
        };
        return Err(Error::missing_feature(
            field,
            value,
            "asks for central sampling strategies",
            "jaeger-remote",
        ));
    }
    let Some(endpoint) = endpoint else {
        return Err(Error::config(
            "remote_sampling.endpoint",
            "<unset>",
            format!(
                "the [remote_sampling] section needs the strategies URL to poll (here or in \
                 {ENV_REMOTE_ENDPOINT}), such as http://jaeger-agent:5778/sampling"
            ),
        ));
    };
    check_url(endpoint.field, &endpoint.value)?;
    let service = match pick(
        top.service.clone(),
        "remote_sampling.service",
        env.service.clone(),
        ENV_REMOTE_SERVICE,
    ) {
        Some(named) => {
            if let Some(reason) = crate::sampler::remote_service_problem(&named.value) {
                return Err(Error::config(
                    named.field,
                    truncate(&named.value, 64),
                    reason,
                ));
            }
            named.value
        }
        None => match service_name {
            Some(name) => name.to_owned(),
            None => {
                return Err(Error::config(
                    "remote_sampling.service",
                    "<unset>",
                    format!(
                        "no service name is configured, so name the service to ask strategies \
                         for here (or in {ENV_REMOTE_SERVICE}), or set service_name \
                         (OTEL_SERVICE_NAME)"
                    ),
                ));
            }
        },
    };
    // The variables were checked when they were read; the section's values name its keys.
    top.check_ranges(|key| format!("remote_sampling.{key}"))?;
    let merged = env.clone().merge(top);
    Ok(Some(RemoteSamplingConfig {
        endpoint: Some(endpoint.value),
        service: Some(service),
        ..merged
    }))
}

fn resolve_span_limits(limits: SpanLimitsConfig) -> Result<ResolvedSpanLimits, Error> {
    let count = |field: &str, n: Option<u32>| {
        check_limit(
            field,
            n.unwrap_or(DEFAULT_SPAN_LIMIT),
            0,
            MAX_SPAN_LIMIT_COUNT,
        )
    };
    Ok(ResolvedSpanLimits {
        max_attributes_per_span: count(
            "span_limits.max_attributes_per_span",
            limits.max_attributes_per_span,
        )?,
        max_events_per_span: count(
            "span_limits.max_events_per_span",
            limits.max_events_per_span,
        )?,
        max_links_per_span: count("span_limits.max_links_per_span", limits.max_links_per_span)?,
        max_attributes_per_event: count(
            "span_limits.max_attributes_per_event",
            limits.max_attributes_per_event,
        )?,
        max_attributes_per_link: count(
            "span_limits.max_attributes_per_link",
            limits.max_attributes_per_link,
        )?,
        max_attribute_value_length: check_limit(
            "span_limits.max_attribute_value_length",
            limits
                .max_attribute_value_length
                .unwrap_or(DEFAULT_ATTRIBUTE_VALUE_LENGTH),
            1,
            MAX_ATTRIBUTE_VALUE_LENGTH,
        )? as usize,
    })
}

/// A setting and the name of the source that set it (a file key or a variable).
struct Named<T> {
    value: T,
    field: &'static str,
}

/// The file/builder value (named by its key) over the environment's (named by its variable).
fn pick<T>(
    top: Option<T>,
    key: &'static str,
    env: Option<T>,
    var: &'static str,
) -> Option<Named<T>> {
    match (top, env) {
        (Some(value), _) => Some(Named { value, field: key }),
        (None, Some(value)) => Some(Named { value, field: var }),
        (None, None) => None,
    }
}

/// Which signal an OTLP exporter sends: the path appended to a base URL for HTTP, and the
/// key of the signal's own full URL (held in `OtlpConfig::traces_endpoint`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signal {
    pub(crate) path: &'static str,
    pub(crate) endpoint_key: &'static str,
}

/// Spans: `/v1/traces`, `exporter.traces_endpoint`.
pub(crate) const TRACES: Signal = Signal {
    path: "/v1/traces",
    endpoint_key: "exporter.traces_endpoint",
};

fn resolve_otlp(
    top: OtlpConfig,
    env: &EnvLayer,
    exporter_in_code: bool,
) -> Result<ResolvedOtlp, Error> {
    resolve_otlp_signal(top, &env.otlp, env.names, TRACES, exporter_in_code)
}

/// One signal's OTLP exporter: `top` (file and builder; the signal's own URL in
/// `traces_endpoint`) over `base` (the environment, whose variables `names` gives), with
/// the same rules for every signal: the signal's URL is used as is, a base URL gets
/// `signal.path` appended for HTTP, the defaults are `http://localhost:4318` (HTTP) and
/// `http://localhost:4317` (gRPC).
pub(crate) fn resolve_otlp_signal(
    top: OtlpConfig,
    base: &OtlpConfig,
    names: OtlpNames,
    signal: Signal,
    exporter_in_code: bool,
) -> Result<ResolvedOtlp, Error> {
    let base = base.clone();
    let protocol = top
        .protocol
        .or(base.protocol)
        .unwrap_or(OtlpProtocol::HttpProtobuf);
    let traces_endpoint = pick(
        top.traces_endpoint,
        signal.endpoint_key,
        base.traces_endpoint,
        names.traces_endpoint,
    );
    let endpoint = pick(
        top.endpoint,
        "exporter.endpoint",
        base.endpoint,
        names.endpoint,
    );
    // The URL as the user gave it, and the one requests go to.
    let (given, url) = match (traces_endpoint, endpoint) {
        (Some(traces), _) => (
            Named {
                value: traces.value.clone(),
                field: traces.field,
            },
            traces.value,
        ),
        (None, base) => {
            let base = base.unwrap_or_else(|| Named {
                value: if protocol.is_http() {
                    "http://localhost:4318".to_owned()
                } else {
                    "http://localhost:4317".to_owned()
                },
                field: "exporter.endpoint",
            });
            // The specification: signal path appended to the base URL for HTTP only.
            let url = if protocol.is_http() {
                format!("{}{}", base.value.trim_end_matches('/'), signal.path)
            } else {
                base.value.clone()
            };
            (base, url)
        }
    };
    check_url(given.field, &given.value)?;
    let https = given
        .value
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if https && !cfg!(feature = "otlp-tls") && !exporter_in_code {
        return Err(Error::missing_feature(
            given.field,
            shown_url(&given.value),
            "is an https:// endpoint (TLS)",
            "otlp-tls",
        ));
    }

    let tls_files = [
        pick(
            top.certificate,
            "exporter.certificate",
            base.certificate,
            names.certificate,
        ),
        pick(
            top.client_certificate,
            "exporter.client_certificate",
            base.client_certificate,
            names.client_certificate,
        ),
        pick(
            top.client_key,
            "exporter.client_key",
            base.client_key,
            names.client_key,
        ),
    ];
    let tls = if https {
        Some(read_tls(tls_files)?)
    } else {
        if let Some(set) = tls_files.iter().flatten().next() {
            return Err(Error::config(
                set.field,
                set.value.display(),
                format!(
                    "TLS files apply to https:// endpoints only, and {} is {}: use an https:// \
                     endpoint or remove {}",
                    given.field,
                    shown_url(&given.value),
                    set.field
                ),
            ));
        }
        None
    };

    let mut headers = base.headers;
    headers.extend(top.headers);
    if headers.len() > MAX_OTLP_HEADERS {
        return Err(Error::config(
            "exporter.headers",
            format!("<{} headers>", headers.len()),
            format!("at most {MAX_OTLP_HEADERS} headers are accepted"),
        ));
    }
    let mut checked = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = check_header("exporter.headers", &name, &value)?;
        checked.push((name, value));
    }
    let timeout_ms = check_millis(
        "exporter.timeout_ms",
        top.timeout_ms
            .or(base.timeout_ms)
            .unwrap_or(DEFAULT_OTLP_TIMEOUT_MS),
    )?;
    Ok(ResolvedOtlp {
        url,
        protocol,
        compression: top
            .compression
            .or(base.compression)
            .unwrap_or(OtlpCompression::Gzip),
        headers: checked,
        timeout: Duration::from_millis(timeout_ms),
        tls,
    })
}

/// Reads the CA, client certificate and client key files (each optional, the last two
/// together) and checks that they hold what they should.
fn read_tls([ca, cert, key]: [Option<Named<PathBuf>>; 3]) -> Result<ResolvedTls, Error> {
    use super::validate::{PemKind, check_pem};
    let read = |named: &Named<PathBuf>, kind: PemKind| -> Result<Vec<u8>, Error> {
        let bytes = file::read_bytes(named.field, &named.value, file::MAX_CONFIG_FILE_BYTES)?;
        check_pem(named.field, &named.value, &bytes, kind)?;
        Ok(bytes)
    };
    match (&cert, &key) {
        (Some(cert), None) => {
            return Err(half_identity(
                cert,
                "exporter.client_key (OTEL_EXPORTER_OTLP_CLIENT_KEY)",
            ));
        }
        (None, Some(key)) => {
            return Err(half_identity(
                key,
                "exporter.client_certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)",
            ));
        }
        _ => {}
    }
    Ok(ResolvedTls {
        ca_pem: ca
            .as_ref()
            .map(|c| read(c, PemKind::Certificates))
            .transpose()?,
        client_cert_pem: cert
            .as_ref()
            .map(|c| read(c, PemKind::Certificates))
            .transpose()?,
        client_key_pem: key
            .as_ref()
            .map(|k| read(k, PemKind::PrivateKey))
            .transpose()?,
    })
}

fn half_identity(set: &Named<PathBuf>, missing: &str) -> Error {
    Error::config(
        set.field,
        set.value.display(),
        format!(
            "mutual TLS needs the client certificate and its key: set {missing} too, or \
             neither"
        ),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn otlp_url(protocol: OtlpProtocol, endpoint: Option<&str>) -> String {
        let mut top = OtlpConfig::default().protocol(protocol);
        top.endpoint = endpoint.map(str::to_owned);
        resolve_otlp(top, &EnvLayer::default(), false).unwrap().url
    }

    #[test]
    fn http_protocols_default_to_4318_and_append_the_signal_path() {
        for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::HttpJson] {
            assert_eq!(otlp_url(protocol, None), "http://localhost:4318/v1/traces");
            assert_eq!(
                otlp_url(protocol, Some("http://c:1/base/")),
                "http://c:1/base/v1/traces"
            );
        }
        assert_eq!(otlp_url(OtlpProtocol::Grpc, None), "http://localhost:4317");
    }

    #[test]
    fn span_limit_values_are_cut_on_char_boundaries() {
        use opentelemetry::{Array, StringValue, Value};
        let limits = ResolvedSpanLimits {
            max_attribute_value_length: 4,
            ..ResolvedSpanLimits::default()
        };
        assert_eq!(
            limits.truncate_value(Value::from("abcdefg")),
            Value::from("abcd")
        );
        // "a\u{e9}" is 3 bytes, "a\u{e9}\u{e9}" 5: never split a character.
        assert_eq!(
            limits.truncate_value(Value::from("a\u{e9}\u{e9}")),
            Value::from("a\u{e9}")
        );
        assert_eq!(
            limits.truncate_value(Value::I64(123456)),
            Value::I64(123456)
        );
        let array = Value::Array(Array::String(vec![
            StringValue::from("abcdef"),
            StringValue::from("ab"),
        ]));
        assert_eq!(
            limits.truncate_value(array),
            Value::Array(Array::String(vec![
                StringValue::from("abcd"),
                StringValue::from("ab")
            ]))
        );
        let sdk = resolve_span_limits(SpanLimitsConfig::default().max_links_per_span(3))
            .unwrap()
            .to_sdk();
        assert_eq!((sdk.max_links_per_span, sdk.max_events_per_span), (3, 128));
    }
}
