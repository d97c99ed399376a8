//! The environment variables meshtrace reads, and the one environment reader that both
//! [`TracingManager::from_env`](crate::manager::TracingManager::from_env) and
//! [`SamplingConfig::from_env_with`](crate::sampler::SamplingConfig::from_env_with) use.
//!
//! Rules, the same for every variable: values are trimmed; an empty (or all-blank) value
//! counts as unset, as the OpenTelemetry specification asks; a value longer than
//! [`MAX_ENV_VALUE_BYTES`] is an error; an invalid value is an error naming the variable
//! (never silently ignored); where a `..._TRACES_...` variant exists, it wins.

use super::model::{ExporterConfig, OtlpCompression, OtlpConfig, OtlpProtocol, TracingConfig};
use super::signals::{SignalEnv, read_logs_env, read_metrics_env};
use super::validate::{
    MAX_ATTRIBUTE_VALUE_LENGTH, MAX_SPAN_LIMIT_COUNT, check_filter, check_header, check_url,
    parse_count, parse_key_values, parse_limit, parse_millis, truncate,
};
use crate::Error;
use crate::sampler::{RemoteSamplingConfig, SamplingConfig};

/// Most bytes of any one environment variable that is read.
pub const MAX_ENV_VALUE_BYTES: usize = 16 * 1024;

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
/// `http/protobuf`, `http/json` or `grpc`.
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
/// PEM file of the CA certificate(s) verifying the collector (`https://` only).
pub const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// Traces-only variant of `OTEL_EXPORTER_OTLP_CERTIFICATE`; wins over it.
pub const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// PEM file of the client certificate (mutual TLS).
pub const OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
/// Traces-only variant of `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`; wins over it.
pub const OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE";
/// PEM file of the client certificate's private key (mutual TLS).
pub const OTEL_EXPORTER_OTLP_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
/// Traces-only variant of `OTEL_EXPORTER_OTLP_CLIENT_KEY`; wins over it.
pub const OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY";
/// Export queue size in spans.
pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// Milliseconds between exports.
pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// Spans per export request.
pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// Milliseconds one export may take.
pub const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
/// Attributes per span.
pub const OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT";
/// Events per span.
pub const OTEL_SPAN_EVENT_COUNT_LIMIT: &str = "OTEL_SPAN_EVENT_COUNT_LIMIT";
/// Links per span.
pub const OTEL_SPAN_LINK_COUNT_LIMIT: &str = "OTEL_SPAN_LINK_COUNT_LIMIT";
/// Attributes per span event.
pub const OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT";
/// Attributes per span link.
pub const OTEL_LINK_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT";
/// Longest span attribute value, in bytes.
pub const OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT";
/// General attribute count limit; `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` wins over it.
pub const OTEL_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_ATTRIBUTE_COUNT_LIMIT";
/// General attribute value length limit; `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT` wins over it.
pub const OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";
/// `EnvFilter` directives for log output.
pub const RUST_LOG: &str = "RUST_LOG";
/// `EnvFilter` directives for the `tracing` spans that are exported (default `info`).
pub const MESHTRACE_SPAN_FILTER: &str = "MESHTRACE_SPAN_FILTER";

/// Reads variables through a lookup function with the rules of the [module docs](self).
pub(crate) struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Reader { lookup }
    }

    /// The trimmed value of `name`; `None` when unset or blank.
    pub(crate) fn get(&self, name: &str) -> Result<Option<String>, Error> {
        match (self.lookup)(name) {
            None => Ok(None),
            Some(v) if v.len() > MAX_ENV_VALUE_BYTES => Err(Error::config(
                name,
                format!("<{} bytes>", v.len()),
                format!("the value must be at most {MAX_ENV_VALUE_BYTES} bytes"),
            )),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => Ok(Some(v.trim().to_owned())),
        }
    }

    /// The first of `names` that is set, with its name (`..._TRACES_...` variants first).
    pub(crate) fn first(
        &self,
        names: &[&'static str],
    ) -> Result<Option<(&'static str, String)>, Error> {
        for name in names {
            if let Some(v) = self.get(name)? {
                return Ok(Some((name, v)));
            }
        }
        Ok(None)
    }
}

/// What the environment contributes, with the names of the variables that set the OTLP
/// settings (so that errors found later name the variable the user wrote).
#[derive(Clone, Debug, Default)]
pub(crate) struct EnvLayer {
    /// Everything but the OTLP settings; `sampling` is always set.
    pub(crate) config: TracingConfig,
    /// The `OTEL_EXPORTER_OTLP_*` settings: they sit beneath whatever OTLP exporter a file
    /// or the builder configures, whichever source selected OTLP.
    pub(crate) otlp: OtlpConfig,
    pub(crate) names: OtlpNames,
    /// The variable that selected the OTLP exporter, if one did.
    pub(crate) selected_otlp: Option<&'static str>,
    /// The `MESHTRACE_SAMPLING_REMOTE_*` settings, each checked: the endpoint alone starts
    /// the poller; the others sit beneath a `[remote_sampling]` section or the builder's.
    pub(crate) remote: RemoteSamplingConfig,
    /// The `OTEL_EXPORTER_OTLP_METRICS_*` settings (and the general ones beneath them).
    pub(crate) metrics: SignalEnv,
    /// The `OTEL_EXPORTER_OTLP_LOGS_*` settings (and the general ones beneath them).
    pub(crate) logs: SignalEnv,
}

/// Which variable set each OTLP setting.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OtlpNames {
    pub(crate) endpoint: &'static str,
    pub(crate) traces_endpoint: &'static str,
    pub(crate) certificate: &'static str,
    pub(crate) client_certificate: &'static str,
    pub(crate) client_key: &'static str,
}

/// Reads the `OTEL_*` variables, `RUST_LOG`, `MESHTRACE_SPAN_FILTER`, the sampler's
/// variables and the strategies poller's (`MESHTRACE_SAMPLING_REMOTE_*`) through `lookup`.
pub(crate) fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<EnvLayer, Error> {
    let env = Reader::new(lookup);
    let mut config = TracingConfig::default();

    if let Some(attrs) = env.get(OTEL_RESOURCE_ATTRIBUTES)? {
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
    if let Some(name) = env.get(OTEL_SERVICE_NAME)? {
        config.service_name = Some(name);
    }

    let (otlp, names, endpoint_var) = read_otlp(&env, &TRACES_VARS)?;

    let disabled = match env.get(OTEL_SDK_DISABLED)? {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(Error::config(
                OTEL_SDK_DISABLED,
                truncate(&v, 64),
                "it must be `true` or `false`",
            ));
        }
    };
    let mut selected_otlp = None;
    config.exporter = match env.get(OTEL_TRACES_EXPORTER)?.as_deref() {
        _ if disabled => Some(ExporterConfig::None),
        Some("none") => Some(ExporterConfig::None),
        Some("console") | Some("stdout") => Some(ExporterConfig::Stdout),
        Some("otlp") => {
            selected_otlp = Some(OTEL_TRACES_EXPORTER);
            Some(ExporterConfig::Otlp(OtlpConfig::default()))
        }
        Some(other) => {
            return Err(Error::config(
                OTEL_TRACES_EXPORTER,
                truncate(other, 64),
                "it must be `otlp`, `console` or `none`",
            ));
        }
        // An endpoint alone selects OTLP; other OTLP settings (say, only an API key header)
        // do not, they apply once a file or the builder selects OTLP.
        None => endpoint_var.map(|name| {
            selected_otlp = Some(name);
            ExporterConfig::Otlp(OtlpConfig::default())
        }),
    };

    let metrics = read_metrics_env(&env, &mut config.metrics, disabled)?;
    let logs = read_logs_env(&env, &mut config.logs, disabled)?;

    if let Some(v) = env.get(OTEL_BSP_MAX_QUEUE_SIZE)? {
        config.batch.max_queue_size = Some(parse_count(OTEL_BSP_MAX_QUEUE_SIZE, &v)?);
    }
    if let Some(v) = env.get(OTEL_BSP_SCHEDULE_DELAY)? {
        config.batch.scheduled_delay_ms = Some(parse_millis(OTEL_BSP_SCHEDULE_DELAY, &v)?);
    }
    if let Some(v) = env.get(OTEL_BSP_MAX_EXPORT_BATCH_SIZE)? {
        config.batch.max_export_batch_size = Some(parse_count(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, &v)?);
    }
    if let Some(v) = env.get(OTEL_BSP_EXPORT_TIMEOUT)? {
        config.batch.export_timeout_ms = Some(parse_millis(OTEL_BSP_EXPORT_TIMEOUT, &v)?);
    }

    let limits = &mut config.span_limits;
    let counts: [(&[&'static str], &mut Option<u32>); 5] = [
        (
            &[OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_ATTRIBUTE_COUNT_LIMIT],
            &mut limits.max_attributes_per_span,
        ),
        (
            &[OTEL_SPAN_EVENT_COUNT_LIMIT],
            &mut limits.max_events_per_span,
        ),
        (
            &[OTEL_SPAN_LINK_COUNT_LIMIT],
            &mut limits.max_links_per_span,
        ),
        (
            &[OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT],
            &mut limits.max_attributes_per_event,
        ),
        (
            &[OTEL_LINK_ATTRIBUTE_COUNT_LIMIT],
            &mut limits.max_attributes_per_link,
        ),
    ];
    for (names, slot) in counts {
        if let Some((name, v)) = env.first(names)? {
            *slot = Some(parse_limit(name, &v, 0, MAX_SPAN_LIMIT_COUNT)?);
        }
    }
    if let Some((name, v)) = env.first(&[
        OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
        OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    ])? {
        limits.max_attribute_value_length =
            Some(parse_limit(name, &v, 1, MAX_ATTRIBUTE_VALUE_LENGTH)?);
    }

    for (name, slot) in [
        (RUST_LOG, &mut config.log_filter),
        (MESHTRACE_SPAN_FILTER, &mut config.span_filter),
    ] {
        if let Some(v) = env.get(name)? {
            check_filter(name, &v)?;
            *slot = Some(v);
        }
    }

    config.sampling = Some(SamplingConfig::from_env_with(lookup)?);
    let remote = RemoteSamplingConfig::read_env(&env)?;
    if let Some(v) = env.get(crate::export::ENV_EXPORT_FILTER)? {
        let filter = crate::export::ExportFilterConfig::from_env_json(&v)?;
        filter.validate().map_err(|e| match e {
            Error::Config {
                field,
                value,
                reason,
                source,
            } => Error::Config {
                field: crate::export::ENV_EXPORT_FILTER.to_owned(),
                value: truncate(&v, 64),
                reason: format!("{field} = {value:?}: {reason}"),
                source,
            },
            other => other,
        })?;
        config.export_filter = Some(filter);
    }

    Ok(EnvLayer {
        config,
        otlp,
        names,
        selected_otlp,
        remote,
        metrics,
        logs,
    })
}

/// The names of one signal's OTLP variables (`..._TRACES_...`, `..._METRICS_...`,
/// `..._LOGS_...`); each wins over its general `OTEL_EXPORTER_OTLP_*` variant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignalVars {
    pub(crate) endpoint: &'static str,
    pub(crate) protocol: &'static str,
    pub(crate) compression: &'static str,
    pub(crate) headers: &'static str,
    pub(crate) timeout: &'static str,
    pub(crate) certificate: &'static str,
    pub(crate) client_certificate: &'static str,
    pub(crate) client_key: &'static str,
}

/// The traces' variables.
pub(crate) const TRACES_VARS: SignalVars = SignalVars {
    endpoint: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    protocol: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    compression: OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    headers: OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    timeout: OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    certificate: OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    client_certificate: OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
    client_key: OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
};

/// The `OTEL_EXPORTER_OTLP_*` variables of one signal (`vars`; the signal's own URL goes
/// in `traces_endpoint`), checked one by one (so that errors name the variable), and the
/// endpoint variable that was set, if any.
pub(crate) fn read_otlp(
    env: &Reader<'_>,
    vars: &SignalVars,
) -> Result<(OtlpConfig, OtlpNames, Option<&'static str>), Error> {
    let mut otlp = OtlpConfig::default();
    let mut names = OtlpNames::default();
    let mut endpoint_var = None;
    // The signal's URL first: when both are set, it is the one that selected OTLP.
    for (name, slot, name_slot) in [
        (
            vars.endpoint,
            &mut otlp.traces_endpoint,
            &mut names.traces_endpoint,
        ),
        (
            OTEL_EXPORTER_OTLP_ENDPOINT,
            &mut otlp.endpoint,
            &mut names.endpoint,
        ),
    ] {
        if let Some(url) = env.get(name)? {
            check_url(name, &url)?;
            *slot = Some(url);
            *name_slot = name;
            endpoint_var.get_or_insert(name);
        }
    }
    if let Some((name, value)) = env.first(&[vars.protocol, OTEL_EXPORTER_OTLP_PROTOCOL])? {
        otlp.protocol = Some(match value.as_str() {
            "http/protobuf" => OtlpProtocol::HttpProtobuf,
            "http/json" => OtlpProtocol::HttpJson,
            "grpc" => OtlpProtocol::Grpc,
            _ => {
                return Err(Error::config(
                    name,
                    truncate(&value, 64),
                    "it must be `http/protobuf`, `http/json` or `grpc`",
                ));
            }
        });
    }
    if let Some((name, value)) = env.first(&[vars.compression, OTEL_EXPORTER_OTLP_COMPRESSION])? {
        otlp.compression = Some(match value.to_ascii_lowercase().as_str() {
            "gzip" => OtlpCompression::Gzip,
            "none" => OtlpCompression::None,
            _ => {
                return Err(Error::config(
                    name,
                    truncate(&value, 64),
                    "it must be `gzip` or `none`",
                ));
            }
        });
    }
    for name in [OTEL_EXPORTER_OTLP_HEADERS, vars.headers] {
        if let Some(value) = env.get(name)? {
            for (header, value) in parse_key_values(name, &value, false)? {
                check_header(name, &header, &value)?;
                otlp.headers.insert(header, value);
            }
        }
    }
    if let Some((name, value)) = env.first(&[vars.timeout, OTEL_EXPORTER_OTLP_TIMEOUT])? {
        otlp.timeout_ms = Some(parse_millis(name, &value)?);
    }
    for (vars, slot, name_slot) in [
        (
            [vars.certificate, OTEL_EXPORTER_OTLP_CERTIFICATE],
            &mut otlp.certificate,
            &mut names.certificate,
        ),
        (
            [
                vars.client_certificate,
                OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
            ],
            &mut otlp.client_certificate,
            &mut names.client_certificate,
        ),
        (
            [vars.client_key, OTEL_EXPORTER_OTLP_CLIENT_KEY],
            &mut otlp.client_key,
            &mut names.client_key,
        ),
    ] {
        if let Some((name, path)) = env.first(&vars)? {
            *slot = Some(path.into());
            *name_slot = name;
        }
    }
    Ok((otlp, names, endpoint_var))
}
