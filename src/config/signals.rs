//! The metrics and logs signals: their configuration (`[metrics]`, `[logs]`), their
//! variables, and how they resolve. OTLP settings follow the spans' rules (see
//! [`OtlpConfig`]): a signal's own URL is used as is, a base URL gets `/v1/metrics` or
//! `/v1/logs` appended for HTTP, and every `OTEL_EXPORTER_OTLP_METRICS_*` /
//! `OTEL_EXPORTER_OTLP_LOGS_*` variable wins over its general variant.

use super::env::{EnvLayer, OtlpNames, Reader, SignalVars, read_otlp};
use super::model::{ExporterConfig, OtlpConfig, OtlpProtocol};
use super::resolve::{ResolvedOtlp, Signal, resolve_otlp_signal};
use super::validate::{check_header, check_millis, parse_millis, truncate};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `otlp`, `console` (or `stdout`), `none`: where metrics go.
pub const OTEL_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
/// `otlp`, `console` (same as `none`: log lines go to the log output anyway), `none`.
pub const OTEL_LOGS_EXPORTER: &str = "OTEL_LOGS_EXPORTER";
/// Milliseconds between two metric exports (default 60000).
pub const OTEL_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// Milliseconds one metric export may take (default 30000).
pub const OTEL_METRIC_EXPORT_TIMEOUT: &str = "OTEL_METRIC_EXPORT_TIMEOUT";
/// `cumulative` (default), `delta` or `lowmemory`.
pub const OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: &str =
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
/// `true` / `false`: the one switch for metrics (default `true`).
pub const MESHTRACE_METRICS_ENABLED: &str = "MESHTRACE_METRICS_ENABLED";
/// OTLP metrics URL, used as is.
pub const OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
/// OTLP logs URL, used as is.
pub const OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";

/// The metrics' OTLP variables.
pub(crate) const METRICS_VARS: SignalVars = SignalVars {
    endpoint: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    protocol: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    compression: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    headers: "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    certificate: "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
};

/// The logs' OTLP variables.
pub(crate) const LOGS_VARS: SignalVars = SignalVars {
    endpoint: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    protocol: "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    compression: "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    headers: "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
    certificate: "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
};

const METRICS: Signal = Signal {
    path: "/v1/metrics",
    endpoint_key: "metrics.endpoint",
};

const LOGS: Signal = Signal {
    path: "/v1/logs",
    endpoint_key: "logs.endpoint",
};

/// Default milliseconds between metric exports (the specification's).
pub const DEFAULT_METRIC_EXPORT_INTERVAL_MS: u64 = 60_000;
/// Default milliseconds one metric export may take (the specification's).
pub const DEFAULT_METRIC_EXPORT_TIMEOUT_MS: u64 = 30_000;
/// Default number of attribute sets each instrument keeps (the SDK's default, set
/// explicitly); measurements beyond it share one overflow set
/// (`otel.metric.overflow = true`).
pub const DEFAULT_CARDINALITY_LIMIT: usize = 2000;
/// Largest `metrics.cardinality_limit`.
pub const MAX_CARDINALITY_LIMIT: usize = 1 << 20;

/// Where metrics go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MetricsExporter {
    /// One line per data point on stdout.
    Stdout,
    /// OTLP, with the settings of `[exporter]` and `[metrics]`.
    Otlp,
    /// Nowhere: metrics are off (no meter provider, nothing recorded).
    None,
}

/// Aggregation temporality asked of the metric exporter
/// (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MetricsTemporality {
    /// Totals since the start (the default).
    Cumulative,
    /// Counters and histograms per export interval.
    Delta,
    /// Delta for synchronous counters and histograms, cumulative otherwise.
    LowMemory,
}

impl MetricsTemporality {
    pub(crate) fn to_sdk(self) -> opentelemetry_sdk::metrics::Temporality {
        use opentelemetry_sdk::metrics::Temporality;
        match self {
            MetricsTemporality::Cumulative => Temporality::Cumulative,
            MetricsTemporality::Delta => Temporality::Delta,
            MetricsTemporality::LowMemory => Temporality::LowMemory,
        }
    }
}

/// The metrics settings (`[metrics]`); unset fields come from the next source, then the
/// defaults. OTLP metrics use the `[exporter]` OTLP settings (endpoint, protocol,
/// compression, headers, timeout, TLS files) under these.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// The one switch (`MESHTRACE_METRICS_ENABLED`); default `true`. Off: no meter
    /// provider, and the layers read no clock and build no attribute for metrics.
    pub enabled: Option<bool>,
    /// Where metrics go (`OTEL_METRICS_EXPORTER`); default: where spans go
    /// (`exporter.kind`; `none` there turns metrics off). With a span exporter given in
    /// code (`TracingManagerBuilder::span_exporter`) and no metric exporter
    /// (`metric_exporter`), metrics are off unless this says where they go.
    pub exporter: Option<MetricsExporter>,
    /// Full OTLP metrics URL used as is (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`); default
    /// the exporter's base endpoint with `/v1/metrics` appended for HTTP.
    pub endpoint: Option<String>,
    /// OTLP transport (`OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`); default the exporter's.
    pub protocol: Option<OtlpProtocol>,
    /// Extra OTLP request headers, over the exporter's (`OTEL_EXPORTER_OTLP_METRICS_HEADERS`).
    pub headers: BTreeMap<String, String>,
    /// OTLP request timeout in milliseconds (`OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`); default
    /// the exporter's.
    pub timeout_ms: Option<u64>,
    /// Milliseconds between two exports (`OTEL_METRIC_EXPORT_INTERVAL`); default 60000.
    pub export_interval_ms: Option<u64>,
    /// Milliseconds one export may take (`OTEL_METRIC_EXPORT_TIMEOUT`); default 30000.
    pub export_timeout_ms: Option<u64>,
    /// Temporality (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`); default
    /// cumulative.
    pub temporality: Option<MetricsTemporality>,
    /// Attribute sets per instrument; default [`DEFAULT_CARDINALITY_LIMIT`].
    pub cardinality_limit: Option<usize>,
}

impl MetricsConfig {
    /// Sets [`enabled`](Self::enabled).
    #[must_use]
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = Some(on);
        self
    }

    /// Sets [`exporter`](Self::exporter).
    #[must_use]
    pub fn exporter(mut self, exporter: MetricsExporter) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// Sets [`endpoint`](Self::endpoint).
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Sets [`protocol`](Self::protocol).
    #[must_use]
    pub fn protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Sets [`export_interval_ms`](Self::export_interval_ms).
    #[must_use]
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.export_interval_ms = Some(super::millis(interval));
        self
    }

    /// Sets [`export_timeout_ms`](Self::export_timeout_ms).
    #[must_use]
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout_ms = Some(super::millis(timeout));
        self
    }

    /// Sets [`temporality`](Self::temporality).
    #[must_use]
    pub fn temporality(mut self, temporality: MetricsTemporality) -> Self {
        self.temporality = Some(temporality);
        self
    }

    /// Sets [`cardinality_limit`](Self::cardinality_limit).
    #[must_use]
    pub fn cardinality_limit(mut self, limit: usize) -> Self {
        self.cardinality_limit = Some(limit);
        self
    }

    pub(crate) fn merge(self, over: MetricsConfig) -> MetricsConfig {
        let mut headers = self.headers;
        headers.extend(over.headers);
        MetricsConfig {
            enabled: over.enabled.or(self.enabled),
            exporter: over.exporter.or(self.exporter),
            endpoint: over.endpoint.or(self.endpoint),
            protocol: over.protocol.or(self.protocol),
            headers,
            timeout_ms: over.timeout_ms.or(self.timeout_ms),
            export_interval_ms: over.export_interval_ms.or(self.export_interval_ms),
            export_timeout_ms: over.export_timeout_ms.or(self.export_timeout_ms),
            temporality: over.temporality.or(self.temporality),
            cardinality_limit: over.cardinality_limit.or(self.cardinality_limit),
        }
    }
}

/// Where log events go besides the log output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogsExporter {
    /// OpenTelemetry log records over OTLP (feature `otlp-logs`).
    Otlp,
    /// Only the log output (the default).
    None,
}

/// The OTLP logs settings (`[logs]`, feature `otlp-logs`); OTLP settings not given here
/// come from `[exporter]`. Which events are sent is the log filter's choice (`log_filter`,
/// `RUST_LOG`), as for the log output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogsConfig {
    /// `otlp` or `none` (`OTEL_LOGS_EXPORTER`); default `none`.
    pub exporter: Option<LogsExporter>,
    /// Full OTLP logs URL used as is (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`); default the
    /// exporter's base endpoint with `/v1/logs` appended for HTTP.
    pub endpoint: Option<String>,
    /// OTLP transport (`OTEL_EXPORTER_OTLP_LOGS_PROTOCOL`); default the exporter's.
    pub protocol: Option<OtlpProtocol>,
    /// Extra OTLP request headers, over the exporter's (`OTEL_EXPORTER_OTLP_LOGS_HEADERS`).
    pub headers: BTreeMap<String, String>,
    /// OTLP request timeout in milliseconds (`OTEL_EXPORTER_OTLP_LOGS_TIMEOUT`); default
    /// the exporter's.
    pub timeout_ms: Option<u64>,
}

impl LogsConfig {
    /// OTLP logs, with the exporter's OTLP settings.
    pub fn otlp() -> Self {
        LogsConfig {
            exporter: Some(LogsExporter::Otlp),
            ..LogsConfig::default()
        }
    }

    /// Sets [`endpoint`](Self::endpoint).
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Sets [`protocol`](Self::protocol).
    #[must_use]
    pub fn protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    pub(crate) fn merge(self, over: LogsConfig) -> LogsConfig {
        let mut headers = self.headers;
        headers.extend(over.headers);
        LogsConfig {
            exporter: over.exporter.or(self.exporter),
            endpoint: over.endpoint.or(self.endpoint),
            protocol: over.protocol.or(self.protocol),
            headers,
            timeout_ms: over.timeout_ms.or(self.timeout_ms),
        }
    }
}

/// What the environment says about one signal's OTLP export.
#[derive(Clone, Debug, Default)]
pub(crate) struct SignalEnv {
    /// The signal's OTLP variables (its own URL in `traces_endpoint`).
    pub(crate) otlp: OtlpConfig,
    pub(crate) names: OtlpNames,
    /// The variable that chose the exporter (`OTEL_METRICS_EXPORTER`, or the signal's
    /// endpoint variable alone), to name it in errors.
    pub(crate) selected_by: Option<&'static str>,
}

fn parse_bool(name: &str, value: &str) -> Result<bool, Error> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::config(
            name,
            truncate(value, 64),
            "it must be `true` or `false`",
        )),
    }
}

/// Reads the metrics variables into `config` (the environment's `[metrics]`) and returns
/// their OTLP settings.
pub(crate) fn read_metrics_env(
    env: &Reader<'_>,
    config: &mut MetricsConfig,
    sdk_disabled: bool,
) -> Result<SignalEnv, Error> {
    let (otlp, names, endpoint_var) = read_otlp(env, &METRICS_VARS)?;
    let mut selected_by = None;
    if let Some(v) = env.get(MESHTRACE_METRICS_ENABLED)? {
        config.enabled = Some(parse_bool(MESHTRACE_METRICS_ENABLED, &v)?);
    }
    config.exporter = match env.get(OTEL_METRICS_EXPORTER)?.as_deref() {
        _ if sdk_disabled => Some(MetricsExporter::None),
        Some("none") => Some(MetricsExporter::None),
        Some("console") | Some("stdout") => Some(MetricsExporter::Stdout),
        Some("otlp") => {
            selected_by = Some(OTEL_METRICS_EXPORTER);
            Some(MetricsExporter::Otlp)
        }
        Some(other) => {
            return Err(Error::config(
                OTEL_METRICS_EXPORTER,
                truncate(other, 64),
                "it must be `otlp`, `console` or `none`",
            ));
        }
        // The metrics URL alone selects OTLP for metrics, as a traces URL does for spans.
        None => (endpoint_var == Some(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)).then(|| {
            selected_by = Some(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT);
            MetricsExporter::Otlp
        }),
    };
    if let Some(v) = env.get(OTEL_METRIC_EXPORT_INTERVAL)? {
        config.export_interval_ms = Some(parse_millis(OTEL_METRIC_EXPORT_INTERVAL, &v)?);
    }
    if let Some(v) = env.get(OTEL_METRIC_EXPORT_TIMEOUT)? {
        config.export_timeout_ms = Some(parse_millis(OTEL_METRIC_EXPORT_TIMEOUT, &v)?);
    }
    let var = OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE;
    if let Some(v) = env.get(var)? {
        config.temporality = Some(match v.to_ascii_lowercase().as_str() {
            "cumulative" => MetricsTemporality::Cumulative,
            "delta" => MetricsTemporality::Delta,
            "lowmemory" => MetricsTemporality::LowMemory,
            _ => {
                return Err(Error::config(
                    var,
                    truncate(&v, 64),
                    "it must be `cumulative`, `delta` or `lowmemory`",
                ));
            }
        });
    }
    Ok(SignalEnv {
        otlp,
        names,
        selected_by,
    })
}

/// Reads the logs variables into `config` (the environment's `[logs]`) and returns their
/// OTLP settings.
pub(crate) fn read_logs_env(
    env: &Reader<'_>,
    config: &mut LogsConfig,
    sdk_disabled: bool,
) -> Result<SignalEnv, Error> {
    let (otlp, names, _) = read_otlp(env, &LOGS_VARS)?;
    let mut selected_by = None;
    config.exporter = match env.get(OTEL_LOGS_EXPORTER)?.as_deref() {
        _ if sdk_disabled => Some(LogsExporter::None),
        // Log lines always go to the log output; `console` asks for nothing more.
        Some("none") | Some("console") | Some("stdout") => Some(LogsExporter::None),
        Some("otlp") => {
            selected_by = Some(OTEL_LOGS_EXPORTER);
            Some(LogsExporter::Otlp)
        }
        Some(other) => {
            return Err(Error::config(
                OTEL_LOGS_EXPORTER,
                truncate(other, 64),
                "it must be `otlp`, `console` or `none`",
            ));
        }
        None => None,
    };
    Ok(SignalEnv {
        otlp,
        names,
        selected_by,
    })
}

/// Resolved metrics: `None` in [`ResolvedSignals::metrics`] when they are off.
#[derive(Clone, Debug)]
pub(crate) struct ResolvedMetrics {
    pub(crate) exporter: ResolvedMetricsExporter,
    pub(crate) interval: Duration,
    /// Enforced by the OTLP exporter only (a custom exporter cannot be interrupted).
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) export_timeout: Duration,
    pub(crate) temporality: MetricsTemporality,
    pub(crate) cardinality_limit: usize,
}

#[derive(Clone, Debug)]
pub(crate) enum ResolvedMetricsExporter {
    Stdout,
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    Otlp(ResolvedOtlp),
}

/// The metrics and logs signals, resolved.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResolvedSignals {
    pub(crate) metrics: Option<ResolvedMetrics>,
    /// OTLP logs, when on (only with feature `otlp-logs`).
    #[cfg_attr(not(feature = "otlp-logs"), allow(dead_code))]
    pub(crate) logs: Option<ResolvedOtlp>,
}

/// The OTLP settings of a signal: the top `[exporter]` (when it is OTLP) with the
/// signal's own keys over it.
fn signal_top(
    exporter: Option<&ExporterConfig>,
    endpoint: Option<String>,
    protocol: Option<OtlpProtocol>,
    headers: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
) -> OtlpConfig {
    let mut top = match exporter {
        Some(ExporterConfig::Otlp(otlp)) => otlp.clone(),
        _ => OtlpConfig::default(),
    };
    // The spans' own URL is theirs alone; the signal's takes its place.
    top.traces_endpoint = endpoint;
    top.protocol = protocol.or(top.protocol);
    top.headers.extend(headers);
    top.timeout_ms = timeout_ms.or(top.timeout_ms);
    top
}

/// The base OTLP settings of a signal from the environment: the general variables under
/// the signal's own (never the traces' own).
fn signal_base(env: &EnvLayer, signal: &SignalEnv) -> (OtlpConfig, OtlpNames) {
    let mut names = signal.names;
    if names.endpoint.is_empty() {
        names.endpoint = env.names.endpoint;
    }
    (signal.otlp.clone(), names)
}

fn check_headers(key: &str, headers: &BTreeMap<String, String>) -> Result<(), Error> {
    for (name, value) in headers {
        check_header(key, name, value)?;
    }
    Ok(())
}

/// Resolves `[metrics]` and `[logs]` over the environment. `exporter` is the merged
/// `[exporter]` (file and builder over the environment).
pub(crate) fn resolve_signals(
    env: &EnvLayer,
    metrics: MetricsConfig,
    logs: LogsConfig,
    exporter: Option<&ExporterConfig>,
    exporter_in_code: bool,
) -> Result<ResolvedSignals, Error> {
    Ok(ResolvedSignals {
        metrics: resolve_metrics(env, metrics, exporter, exporter_in_code)?,
        logs: resolve_logs(env, logs, exporter)?,
    })
}

fn resolve_metrics(
    env: &EnvLayer,
    config: MetricsConfig,
    exporter: Option<&ExporterConfig>,
    exporter_in_code: bool,
) -> Result<Option<ResolvedMetrics>, Error> {
    if config.enabled == Some(false) {
        return Ok(None);
    }
    let interval = check_millis(
        "metrics.export_interval_ms",
        config
            .export_interval_ms
            .unwrap_or(DEFAULT_METRIC_EXPORT_INTERVAL_MS),
    )?;
    let export_timeout = check_millis(
        "metrics.export_timeout_ms",
        config
            .export_timeout_ms
            .unwrap_or(DEFAULT_METRIC_EXPORT_TIMEOUT_MS),
    )?;
    let cardinality_limit = config
        .cardinality_limit
        .unwrap_or(DEFAULT_CARDINALITY_LIMIT);
    if cardinality_limit == 0 || cardinality_limit > MAX_CARDINALITY_LIMIT {
        return Err(Error::config(
            "metrics.cardinality_limit",
            cardinality_limit,
            format!("it must be between 1 and {MAX_CARDINALITY_LIMIT} attribute sets"),
        ));
    }
    if let Some(timeout) = config.timeout_ms {
        check_millis("metrics.timeout_ms", timeout)?;
    }
    check_headers("metrics.headers", &config.headers)?;
    // Where the spans go, unless a span exporter was given in code: the manager cannot
    // send metrics there, so they go nowhere until `metrics.exporter`,
    // `OTEL_METRICS_EXPORTER` or a metric exporter in code says where.
    let kind = config.exporter.unwrap_or(match exporter {
        _ if exporter_in_code => MetricsExporter::None,
        Some(ExporterConfig::Otlp(_)) => MetricsExporter::Otlp,
        Some(ExporterConfig::None) => MetricsExporter::None,
        _ => MetricsExporter::Stdout,
    });
    let exporter_kind = match kind {
        MetricsExporter::None => return Ok(None),
        MetricsExporter::Stdout => ResolvedMetricsExporter::Stdout,
        MetricsExporter::Otlp => {
            if !cfg!(feature = "otlp") && !exporter_in_code {
                let field = env.metrics.selected_by.unwrap_or("metrics.exporter");
                return Err(Error::missing_feature(
                    field,
                    "otlp",
                    "asks for the OTLP metric exporter",
                    "otlp",
                ));
            }
            let top = signal_top(
                exporter,
                config.endpoint,
                config.protocol,
                config.headers,
                config.timeout_ms,
            );
            let (base, names) = signal_base(env, &env.metrics);
            ResolvedMetricsExporter::Otlp(resolve_otlp_signal(
                top,
                &base,
                names,
                METRICS,
                exporter_in_code,
            )?)
        }
    };
    Ok(Some(ResolvedMetrics {
        exporter: exporter_kind,
        interval: Duration::from_millis(interval),
        export_timeout: Duration::from_millis(export_timeout),
        temporality: config.temporality.unwrap_or(MetricsTemporality::Cumulative),
        cardinality_limit,
    }))
}

fn resolve_logs(
    env: &EnvLayer,
    config: LogsConfig,
    exporter: Option<&ExporterConfig>,
) -> Result<Option<ResolvedOtlp>, Error> {
    if config.exporter != Some(LogsExporter::Otlp) {
        return Ok(None);
    }
    if !cfg!(feature = "otlp-logs") {
        let field = env.logs.selected_by.unwrap_or("logs.exporter");
        return Err(Error::missing_feature(
            field,
            "otlp",
            "asks for OTLP logs",
            "otlp-logs",
        ));
    }
    if let Some(timeout) = config.timeout_ms {
        check_millis("logs.timeout_ms", timeout)?;
    }
    check_headers("logs.headers", &config.headers)?;
    let top = signal_top(
        exporter,
        config.endpoint,
        config.protocol,
        config.headers,
        config.timeout_ms,
    );
    let (base, names) = signal_base(env, &env.logs);
    let resolved = resolve_otlp_signal(top, &base, names, LOGS, false)?;
    Ok(Some(resolved))
}
