//! [`TracingManager`]: one call from nothing to a traced service, and the guard that flushes
//! what is queued when the service stops.
//!
//! `install()` sets up, in this order: the resource (`service.name`, `service.version`,
//! `deployment.environment.name`, `host.name`, `process.pid`), the SDK tracer provider with
//! [`CustomSampler`] and the span limits, the export pipeline (only sampled spans, a bounded
//! queue whose drops are counted, stdout or OTLP), the global `tracing` subscriber (the
//! span layer and the log layer, each with its own filter), and [`W3cPropagator`] as the
//! global propagator.
//!
//! ```no_run
//! use meshtrace::manager::TracingManager;
//! use meshtrace::sampler::SamplingConfig;
//!
//! # #[tokio::main] async fn main() -> Result<(), meshtrace::Error> {
//! let telemetry = TracingManager::from_env()      // OTEL_*, RUST_LOG, MESHTRACE_SPAN_FILTER
//!     .service_name("checkout")                    // the builder wins over everything
//!     .service_version(env!("CARGO_PKG_VERSION"))
//!     .sampling(SamplingConfig::default().base_rate(0.1))
//!     .install()?;
//!
//! // ... serve requests, with `telemetry.server_layer()` on the Router, until
//! // `meshtrace::shutdown_signal()` resolves (axum's `with_graceful_shutdown`) ...
//!
//! telemetry.shutdown().await?;                     // flushes what is queued, bounded
//! # Ok(()) }
//! ```
//!
//! Precedence, first wins: builder methods > config file ([`TracingConfig`]) >
//! `OTEL_SERVICE_NAME` > `OTEL_RESOURCE_ATTRIBUTES` and the other `OTEL_*` variables >
//! defaults. [`TracingManager::builder`] reads no environment variable at all (not even
//! `RUST_LOG`), so that what it builds depends only on the code.
//!
//! # Two filters: what is logged, and what is traced
//!
//! | | log filter | span filter |
//! |---|---|---|
//! | decides | which events (and spans, as context) the log output prints | which `tracing` spans and events are bridged to OpenTelemetry (your spans, `#[traced]`, span events); never meshtrace's server and client spans |
//! | builder | [`log_filter`](TracingManagerBuilder::log_filter) | [`span_filter`](TracingManagerBuilder::span_filter) |
//! | config key | `log_filter` | `span_filter` |
//! | environment | `RUST_LOG` | `MESHTRACE_SPAN_FILTER` |
//! | default | `info` | `info` |
//! | syntax | `EnvFilter` directives | `EnvFilter` directives |
//!
//! Each is a per-layer filter; the subscriber itself filters nothing. So `RUST_LOG=warn`
//! makes the log quieter and changes nothing that is traced or propagated, and a span
//! filter of `debug` traces debug spans without printing them. meshtrace's server and client
//! spans are OpenTelemetry SDK spans, not `tracing` spans: no filter sees them, so they are
//! traced whatever either filter says (sampling decides), even with a span filter of `off`.
//! `#[traced]` spans are `tracing` spans with the target of your module, so the span filter
//! applies to them like to your own. Whatever the OTLP exporter's clients emit while
//! exporting is never traced (see [`crate::export`]).
//!
//! # Your own subscriber
//!
//! [`build`](TracingManagerBuilder::build) installs nothing globally and returns the
//! manager and the [`Layers`]: the span layer and the log layer (each already filtered), and
//! copies of both filters for layers of your own. Add them to a subscriber you compose:
//!
//! ```
//! use meshtrace::TracingManager;
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::Layer as _;
//!
//! # fn main() -> Result<(), meshtrace::Error> {
//! let (telemetry, layers) = TracingManager::builder()
//!     .span_exporter(opentelemetry_sdk::trace::InMemorySpanExporter::default())
//!     .build()?;
//! let subscriber = tracing_subscriber::registry()
//!     .with(layers.span_layer)                         // spans to OpenTelemetry
//!     .with(                                           // your own log output, our log filter
//!         tracing_subscriber::fmt::layer()
//!             .with_writer(std::io::stderr)
//!             .with_filter(layers.log_filter),
//!     );
//! tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
//! # drop(layers.log_layer);
//! # Ok(()) }
//! ```
//!
//! # Global state
//!
//! `install()` sets the `tracing` subscriber (refused with an error when one is already
//! set), the OpenTelemetry tracer provider, the text map propagator and, when meshtrace's
//! metrics are on, the meter provider. When a tracer provider or a propagator of your own is
//! already installed, `install()` refuses too, naming it, unless you choose with
//! [`existing_globals`](TracingManagerBuilder::existing_globals): [`ExistingGlobals::Replace`]
//! (meshtrace's win) or [`ExistingGlobals::Keep`] (yours stay; meshtrace's server and client
//! layers still use meshtrace's provider through the server layer and the current Context).
//! Nothing global is changed when `install()` returns an error.
//!
//! A global **meter provider** of your own cannot be detected: OpenTelemetry 0.33 hands it
//! out only as a `dyn MeterProvider`, and telling its no-op default from yours would take
//! registering an instrument in yours, for good. So the default refuses on the tracer
//! provider and the propagator only; when neither is set (or with `Replace`), a meter
//! provider you set is replaced by meshtrace's if its metrics are on. To keep yours, choose
//! `Keep`, turn meshtrace's metrics off
//! ([`metrics_enabled(false)`](TracingManagerBuilder::metrics_enabled)), or use
//! [`build`](TracingManagerBuilder::build).
//!
//! # Central sampling strategies
//!
//! With feature `jaeger-remote`, a manager configured with a strategies endpoint polls it
//! and puts what it answers in force in its sampler (Jaeger's format, see
//! [`strategy`](crate::sampler::strategy)): the `[remote_sampling]` section of the file,
//! the `MESHTRACE_SAMPLING_REMOTE_*` variables or
//! [`remote_sampling`](TracingManagerBuilder::remote_sampling), merged field by field
//! (builder, file, environment; see [`RemoteSamplingConfig`] for the keys and defaults;
//! the service asked for defaults to the service name).
//!
//! ```toml
//! service_name = "checkout"
//!
//! [remote_sampling]
//! endpoint = "http://jaeger-agent:5778/sampling"
//! interval_secs = 60.0
//! ```
//!
//! The poller starts when the manager is built (a first poll at once) and runs on a runtime
//! of its own, one thread named `meshtrace-strategies`, whether `build()`/`install()` run
//! inside a tokio runtime or not: it neither needs nor borrows the application's runtime, so
//! it keeps polling whatever happens to the runtime the manager was built in, and the
//! `tracing` spans of its HTTP client are never exported. It lives as long as the manager:
//! [`shutdown`](TracingManager::shutdown) lets a poll in progress finish (within the
//! shutdown timeout) and stops it; dropping the manager stops it at once.
//! `TracingManager::strategy_poller()` reports what it did. A remote
//! setting in a build without the feature is an error naming the setting and the feature.
//!
//! # Metrics and logs
//!
//! The manager also sets up a meter provider with the same resource, on by default and
//! exported where the spans go (`[metrics]`, `OTEL_METRICS_EXPORTER`, see
//! [`MetricsConfig`]); its layers record the HTTP metrics of every request on it (see
//! [`crate::metrics`]), and the sampler's counters are registered on it. With feature
//! `otlp-logs` and `[logs]` / `OTEL_LOGS_EXPORTER=otlp`, log events also go over OTLP as
//! log records (see [`LogsConfig`]). [`force_flush`](TracingManager::force_flush) and
//! [`shutdown`](TracingManager::shutdown) take every signal along.
//!
//! The sampler's decision counters reach a meter of your choice with
//! [`sampler_metrics`](TracingManagerBuilder::sampler_metrics) (otherwise the manager's
//! meter when its metrics are on; [`SamplerHandle::stats`] counts them either way).
//!
//! # Shutdown
//!
//! [`shutdown`](TracingManager::shutdown) flushes the queue. A server that runs until
//! Ctrl-C must let `shutdown()` run: serve with
//! `axum::serve(..).with_graceful_shutdown(meshtrace::shutdown_signal())`, which returns
//! once SIGINT or SIGTERM arrives and the open requests are done, then call `shutdown()`.

use crate::Error;
use crate::config::{
    self, BatchConfig, EnvLayer, ExporterConfig, LogsConfig, MetricsConfig, MetricsExporter,
    Resolved, ResolvedExporter, SpanLimitsConfig, TracingConfig,
};
use crate::context::W3cPropagator;
use crate::export::events::ErrorEvents;
use crate::export::suppress::Events;
use crate::export::{
    Counters, CountingExporter, Deferred, DynSpanExporter, ExportFilter, ExportFilterConfig,
    ExportGate, ExportStats, SpanFilter,
};
use crate::logging::{LogFormat, fmt_layer, fmt_layer_with_writer};
use crate::metrics::http::{HttpInstruments, MeterSource};
use crate::metrics::provider::AddReader;
#[cfg(feature = "jaeger-remote")]
use crate::sampler::StrategyPoller;
use crate::sampler::{CustomSampler, RemoteSamplingConfig, SamplerHandle, SamplingConfig};
use crate::server::TracingLayer;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use opentelemetry_semantic_conventions::attribute as semconv;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::Subscriber;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The installed tracing pipeline; returned by [`TracingManagerBuilder::install`].
///
/// Keep it alive for as long as the service runs. [`shutdown`](Self::shutdown) flushes the
/// queued spans within the shutdown timeout and logs the export counts; dropping the manager
/// does the same (blocking the dropping thread for at most the timeout).
#[derive(Debug)]
#[must_use = "dropping the manager shuts tracing down"]
pub struct TracingManager {
    provider: SdkTracerProvider,
    /// The meter provider, when metrics are on.
    meter_provider: Option<SdkMeterProvider>,
    /// Its HTTP instruments, handed to the layers.
    instruments: Option<Arc<HttpInstruments>>,
    /// The OTLP logs' provider, when they are on.
    #[cfg(feature = "otlp-logs")]
    logger_provider: Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
    counters: Arc<Counters>,
    shutdown_timeout: Duration,
    // The provider's own sampler, shared with the server layers this manager hands out
    // so that they can drop requests before building spans.
    sampler: CustomSampler,
    /// The central-strategies poller, when one is configured; it runs on a runtime of its
    /// own and lives as long as the manager.
    #[cfg(feature = "jaeger-remote")]
    poller: Option<StrategyPoller>,
    /// The deferred-capture buffer and the export filter, for `stats()`.
    deferred: Option<Arc<Deferred>>,
    filter: Arc<ExportFilter>,
    /// Where this manager's layers and export gate find its trace pages, once mounted.
    pages: Arc<crate::pages::Slot>,
    /// For the trace pages: the service name and the export queue's bound.
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    service_name: String,
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    max_queue_size: usize,
    /// For the trace pages: `span_limits.max_attribute_value_length`, which the export gate
    /// cuts to (the process-wide bound is the last built manager's).
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    max_value_len: usize,
    shut_down: bool,
}

/// What [`TracingManagerBuilder::build`] returns besides the manager: the pieces of the
/// subscriber that [`install`](TracingManagerBuilder::install) would set, for a subscriber
/// of your own (see the [module docs](self#your-own-subscriber)).
///
/// `S` is the subscriber the layers are added to (`tracing_subscriber::Registry` when they
/// come first, which is what type inference picks in most programs).
#[non_exhaustive]
pub struct Layers<S> {
    /// `tracing-opentelemetry`, filtered by the span filter (and never what the exporter
    /// emits): bridges `tracing` spans and their events to the SDK tracer provider.
    pub span_layer: Box<dyn Layer<S> + Send + Sync + 'static>,
    /// The log output (text or JSON, with `trace_id`, `span_id` and `correlation_id`),
    /// filtered by the log filter; with OTLP logs on (feature `otlp-logs`), also the
    /// OpenTelemetry appender, with the same filter.
    pub log_layer: Box<dyn Layer<S> + Send + Sync + 'static>,
    /// A copy of the log filter (`RUST_LOG` / `log_filter`), for a log layer of your own.
    pub log_filter: EnvFilter,
    /// A copy of the span filter, for an OpenTelemetry layer of your own.
    pub span_filter: SpanFilter,
}

impl<S> std::fmt::Debug for Layers<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layers")
            .field("log_filter", &self.log_filter)
            .field("span_filter", &self.span_filter)
            .finish_non_exhaustive()
    }
}

impl<S> Layers<S>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
{
    /// The span layer and the log layer as one layer.
    pub fn into_layer(self) -> impl Layer<S> + Send + Sync + 'static {
        self.span_layer.and_then(self.log_layer)
    }
}

impl Layers<Registry> {
    /// The subscriber [`install`](TracingManagerBuilder::install) sets globally: a registry
    /// with the span layer and the log layer. For tests:
    /// `tracing::subscriber::set_default(layers.into_subscriber())`.
    pub fn into_subscriber(
        self,
    ) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static {
        tracing_subscriber::registry().with(self.into_layer())
    }
}

/// What [`install`](TracingManagerBuilder::install) does when an OpenTelemetry tracer
/// provider or text map propagator is already installed globally.
///
/// The global meter provider is not checked: OpenTelemetry 0.33 offers no way to tell
/// whether one was set (it hands out a `dyn MeterProvider`; only registering an instrument
/// in it, for good, would tell). `Refuse` (when it lets `install()` go on) and `Replace`
/// install meshtrace's meter provider when its metrics are on, replacing one you set;
/// `Keep` leaves it alone (see the [module docs](self#global-state)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExistingGlobals {
    /// Refuse with an error naming what is installed; nothing global is changed. The default.
    #[default]
    Refuse,
    /// Replace them with meshtrace's provider and [`W3cPropagator`] (and the global meter
    /// provider with meshtrace's, when its metrics are on).
    Replace,
    /// Keep them: meshtrace installs its `tracing` subscriber only (not its meter provider
    /// either). `telemetry.server_layer()` still uses meshtrace's provider; whatever uses the
    /// global provider or propagator uses yours.
    Keep,
}

/// Configures and builds a [`TracingManager`]; see the [module docs](self) for precedence.
#[must_use]
pub struct TracingManagerBuilder {
    /// The environment's layer (`OTEL_*`, `RUST_LOG`, the sampler's variables), or the
    /// first error reading it.
    env: Option<Result<EnvLayer, Error>>,
    file: Option<TracingConfig>,
    overrides: TracingConfig,
    exporter: Option<Box<dyn DynSpanExporter>>,
    log_writer: Option<BoxMakeWriter>,
    existing_globals: ExistingGlobals,
    /// Where the sampler's instruments are registered, if anywhere.
    sampler_meter: Option<opentelemetry::metrics::Meter>,
    /// A metric exporter given in code.
    metric_exporter: Option<AddReader>,
}

impl std::fmt::Debug for TracingManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingManagerBuilder")
            .field(
                "env",
                &self
                    .env
                    .as_ref()
                    .map(|r| r.as_ref().map(|layer| &layer.config)),
            )
            .field("file", &self.file)
            .field("overrides", &self.overrides)
            .field("custom_exporter", &self.exporter.is_some())
            .field("custom_log_writer", &self.log_writer.is_some())
            .field("existing_globals", &self.existing_globals)
            .field("sampler_metrics", &self.sampler_meter.is_some())
            .field("custom_metric_exporter", &self.metric_exporter.is_some())
            .finish()
    }
}

impl TracingManager {
    /// A builder that starts from the defaults and reads no environment variable.
    pub fn builder() -> TracingManagerBuilder {
        TracingManagerBuilder {
            env: None,
            file: None,
            overrides: TracingConfig::default(),
            exporter: None,
            log_writer: None,
            existing_globals: ExistingGlobals::Refuse,
            sampler_meter: None,
            metric_exporter: None,
        }
    }

    /// A builder prefilled from the process environment: the `OTEL_*` variables listed in
    /// [`config::env`], the sampler's variables (see [`SamplingConfig::from_env_with`]), the
    /// strategies poller's `MESHTRACE_SAMPLING_REMOTE_*` (see [`RemoteSamplingConfig`]),
    /// `RUST_LOG` (the log filter) and `MESHTRACE_SPAN_FILTER` (the span filter). Invalid
    /// values are reported by `install()`, naming the variable.
    pub fn from_env() -> TracingManagerBuilder {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (tests, or
    /// another source than the process environment).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> TracingManagerBuilder {
        let mut builder = Self::builder();
        builder.env = Some(config::env::read(&lookup));
        builder
    }

    /// A builder from `config`, layered over the process environment as [`from_env`](Self::from_env).
    pub fn from_config(config: TracingConfig) -> TracingManagerBuilder {
        Self::from_env().config(config)
    }

    /// A builder from a TOML file (JSON when the extension is `.json`), layered over the
    /// process environment as [`from_env`](Self::from_env). Fails when the file cannot be
    /// read or parsed; values are validated by `install()`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<TracingManagerBuilder, Error> {
        Ok(Self::from_config(TracingConfig::from_file(path)?))
    }

    /// The export counts so far (sampled spans exported, dropped because the queue was full,
    /// dropped because the export failed, still queued) and the cause of the last failure.
    pub fn stats(&self) -> ExportStats {
        export_stats(&self.counters, self.deferred.as_deref(), &self.filter)
    }

    /// The in-process trace pages of this manager (feature `pages`; see [`crate::pages`]):
    /// they know its sampler (configuration, counters, the rate form) and its export queue,
    /// and its layers feed them once [`TracePages::router`](crate::pages::TracePages::router)
    /// is called. Set a [`token`](crate::pages::TracePagesBuilder::token) to allow changing
    /// rates.
    #[cfg(feature = "pages")]
    pub fn pages(&self) -> crate::pages::TracePagesBuilder {
        let counters = Arc::clone(&self.counters);
        let deferred = self.deferred.clone();
        let filter = Arc::clone(&self.filter);
        crate::pages::TracePagesBuilder::for_manager(
            Arc::clone(&self.pages),
            self.sampler.handle(),
            crate::pages::ExportSource {
                stats: Arc::new(move || export_stats(&counters, deferred.as_deref(), &filter)),
                queue_capacity: Some(self.max_queue_size),
            },
            self.service_name.clone(),
            self.max_value_len,
        )
    }

    /// The SDK tracer provider, e.g. for `opentelemetry` API users or `force_flush`.
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports everything queued now and waits for it: the spans (at most 5 s:
    /// opentelemetry_sdk 0.33's batch processor has a fixed flush timeout), the metrics
    /// collected so far, and the OTLP logs. Blocks the calling thread.
    pub fn force_flush(&self) -> Result<(), Error> {
        let spans = self.provider.force_flush();
        let metrics = match &self.meter_provider {
            Some(meter_provider) => meter_provider.force_flush(),
            None => Ok(()),
        };
        #[cfg(feature = "otlp-logs")]
        let logs = match &self.logger_provider {
            Some(logger_provider) => logger_provider.force_flush(),
            None => Ok(()),
        };
        #[cfg(not(feature = "otlp-logs"))]
        let logs: Result<(), OTelSdkError> = Ok(());
        spans
            .map_err(|e| Error::setup("force_flush", e))
            .and(metrics.map_err(|e| Error::setup("force_flush (metrics)", e)))
            .and(logs.map_err(|e| Error::setup("force_flush (logs)", e)))
    }

    /// The SDK meter provider when metrics are on (see [`crate::metrics`]), e.g. for
    /// instruments of your own with the same resource and export.
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.meter_provider.as_ref()
    }

    /// The SDK logger provider when OTLP logs are on (feature `otlp-logs`).
    #[cfg(feature = "otlp-logs")]
    pub fn logger_provider(&self) -> Option<&opentelemetry_sdk::logs::SdkLoggerProvider> {
        self.logger_provider.as_ref()
    }

    /// Where this manager's layers record metrics: its instruments, or nowhere.
    fn meter_source(&self) -> MeterSource {
        match &self.instruments {
            Some(instruments) => MeterSource::Given(Arc::clone(instruments)),
            None => MeterSource::Off,
        }
    }

    /// A [`TracingLayer`] for the server side whose spans come from this manager's
    /// provider. It behaves as `TracingLayer::new()` after [`install`](TracingManagerBuilder::install),
    /// and knows the provider's sampler: request attributes no sampling decision reads are
    /// built only for spans that record.
    pub fn server_layer(&self) -> TracingLayer {
        TracingLayer::new()
            .tracer_provider(&self.provider)
            .sampler_hint(self.sampler.clone())
            .meter_source(self.meter_source())
            .pages_source(crate::pages::Source::given(&self.pages))
    }

    /// A [`ClientTracingLayer`](crate::client::ClientTracingLayer) (tower/hyper clients)
    /// whose spans come from this manager's provider. After [`install`](TracingManagerBuilder::install),
    /// `ClientTracingLayer::new()` does the same.
    pub fn client_layer(&self) -> crate::client::ClientTracingLayer {
        crate::client::ClientTracingLayer::new()
            .tracer_provider(&self.provider)
            .sampler_hint(self.sampler.clone())
            .meter_source(self.meter_source())
    }

    /// A [`ReqwestTracingMiddleware`](crate::client::ReqwestTracingMiddleware) whose spans
    /// come from this manager's provider. After
    /// [`install`](TracingManagerBuilder::install), `ReqwestTracingMiddleware::new()` does
    /// the same.
    #[cfg(feature = "reqwest")]
    pub fn reqwest_middleware(&self) -> crate::client::ReqwestTracingMiddleware {
        crate::client::ReqwestTracingMiddleware::new()
            .tracer_provider(&self.provider)
            .sampler_hint(self.sampler.clone())
            .meter_source(self.meter_source())
    }

    /// The sampler's handle, to reload the sampling configuration at runtime.
    pub fn sampler(&self) -> SamplerHandle {
        self.sampler.handle()
    }

    /// The central-strategies poller this manager started (see
    /// [Central sampling strategies](self#central-sampling-strategies)), if one is
    /// configured: its [`status`](StrategyPoller::status), or
    /// [`poll_now`](StrategyPoller::poll_now) after a change on the strategies server.
    #[cfg(feature = "jaeger-remote")]
    pub fn strategy_poller(&self) -> Option<&StrategyPoller> {
        self.poller.as_ref()
    }

    /// Flushes the queued spans and stops exporting, waiting at most the shutdown timeout;
    /// logs the export counts. A strategies poller stops too (a poll in progress may finish
    /// within the same timeout). The wait happens on a helper thread, so the async runtime is
    /// not blocked. Returns an error if the timeout elapsed (the spans still queued are
    /// lost; [`stats`](Self::stats) counted them as queued) or the exporter failed.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.shut_down = true;
        let provider = self.provider.clone();
        let timeout = self.shutdown_timeout;
        // A poll in progress may finish (no request left in flight), within the same bound,
        // while the provider flushes on its thread.
        #[cfg(feature = "jaeger-remote")]
        let poller = self.poller.take();
        // Metrics and logs shut down beside the spans, within the same timeout.
        let others = self.other_providers().start_shutdown(timeout);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("meshtrace-shutdown".into())
            .spawn(move || {
                let spans = provider.shutdown_with_timeout(timeout);
                let _ = tx.send(spans.and(others.wait()));
            });
        #[cfg(feature = "jaeger-remote")]
        if let Some(poller) = poller {
            poller.stop(timeout).await;
        }
        let result = match spawned {
            Ok(_) => rx.await.unwrap_or_else(|_| {
                Err(OTelSdkError::InternalFailure(
                    "shutdown thread panicked".into(),
                ))
            }),
            // No thread to spare: block here rather than lose the spans.
            Err(_) => self.provider.shutdown_with_timeout(timeout),
        };
        self.log_stats();
        result.map_err(|e| {
            // opentelemetry_sdk 0.33's provider wraps a processor's `Timeout` into
            // `InternalFailure("Shutdown errors: [Timeout(..)]")`.
            let timed_out =
                matches!(e, OTelSdkError::Timeout(_)) || e.to_string().contains("Timeout(");
            if timed_out {
                Error::setup(
                    "shutdown",
                    format!(
                        "timed out after {timeout:?}; {} spans were still queued",
                        self.stats().queued
                    ),
                )
            } else {
                Error::setup("shutdown", e)
            }
        })
    }

    fn log_stats(&self) {
        let s = self.stats();
        tracing::info!(
            target: "meshtrace",
            exported = s.exported,
            dropped_queue_full = s.dropped_queue_full,
            dropped_export_failed = s.dropped_export_failed,
            queued = s.queued,
            "tracing shut down"
        );
    }
}

impl Drop for TracingManager {
    fn drop(&mut self) {
        if !self.shut_down {
            let others = self.other_providers().start_shutdown(self.shutdown_timeout);
            let _ = self.provider.shutdown_with_timeout(self.shutdown_timeout);
            let _ = others.wait();
            self.log_stats();
        }
    }
}

/// The providers besides the spans' (metrics, OTLP logs), shut down with them.
struct OtherProviders {
    meter: Option<SdkMeterProvider>,
    #[cfg(feature = "otlp-logs")]
    logger: Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
}

/// A shutdown of the other providers in progress (see [`OtherProviders::start_shutdown`]).
struct ShuttingDown {
    deadline: std::time::Instant,
    timeout: Duration,
    done: Option<std::sync::mpsc::Receiver<Result<(), OTelSdkError>>>,
}

impl OtherProviders {
    /// Starts exporting what is left (the last metric collection, the queued log records)
    /// and stopping, on a thread of its own, so that it overlaps the spans' shutdown.
    /// opentelemetry_sdk 0.33's meter provider ignores its shutdown timeout (its periodic
    /// reader waits for the last export), so the wait is bounded here.
    fn start_shutdown(self, timeout: Duration) -> ShuttingDown {
        let deadline = std::time::Instant::now() + timeout;
        #[cfg(feature = "otlp-logs")]
        let nothing = self.meter.is_none() && self.logger.is_none();
        #[cfg(not(feature = "otlp-logs"))]
        let nothing = self.meter.is_none();
        if nothing {
            return ShuttingDown {
                deadline,
                timeout,
                done: None,
            };
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("meshtrace-shutdown".into())
            .spawn(move || {
                let metrics = match self.meter {
                    Some(meter) => meter.shutdown_with_timeout(timeout),
                    None => Ok(()),
                };
                #[cfg(feature = "otlp-logs")]
                let logs = match self.logger {
                    Some(logger) => logger.shutdown_with_timeout(timeout),
                    None => Ok(()),
                };
                #[cfg(not(feature = "otlp-logs"))]
                let logs = Ok(());
                let _ = tx.send(metrics.and(logs));
            });
        ShuttingDown {
            deadline,
            timeout,
            // No thread to spare: the providers shut down when their last handle drops.
            done: spawned.ok().map(|_| rx),
        }
    }
}

impl ShuttingDown {
    /// Waits for the shutdown, at most until the deadline.
    fn wait(self) -> Result<(), OTelSdkError> {
        let Some(done) = self.done else {
            return Ok(());
        };
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        match done.recv_timeout(left) {
            Ok(result) => result,
            Err(_) => Err(OTelSdkError::Timeout(self.timeout)),
        }
    }
}

impl TracingManager {
    fn other_providers(&self) -> OtherProviders {
        OtherProviders {
            meter: self.meter_provider.clone(),
            #[cfg(feature = "otlp-logs")]
            logger: self.logger_provider.clone(),
        }
    }
}

impl TracingManagerBuilder {
    /// Layers `config` (a parsed config file) under the builder methods and over the
    /// environment; called twice, the second config wins field by field.
    pub fn config(mut self, config: TracingConfig) -> Self {
        self.file = Some(match self.file.take() {
            Some(previous) => previous.merge(config),
            None => config,
        });
        self
    }

    /// `service.name`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.overrides.service_name = Some(name.into());
        self
    }

    /// `service.version`.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.overrides.service_version = Some(version.into());
        self
    }

    /// `deployment.environment.name` (e.g. `prod`, `staging`).
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.overrides.environment = Some(environment.into());
        self
    }

    /// An extra resource attribute.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.resource.insert(key.into(), value.into());
        self
    }

    /// Head sampling.
    pub fn sampling(mut self, sampling: SamplingConfig) -> Self {
        self.overrides.sampling = Some(sampling);
        self
    }

    /// Central sampling strategies (feature `jaeger-remote`): the manager polls
    /// `config`'s endpoint and applies the strategies to the sampler (see
    /// [Central sampling strategies](self#central-sampling-strategies)). Fields left unset
    /// keep their lower-precedence values (the file's `[remote_sampling]`, the
    /// `MESHTRACE_SAMPLING_REMOTE_*` variables), then the defaults; the service defaults to
    /// the service name. Without the feature, building fails naming the setting and the
    /// feature.
    pub fn remote_sampling(mut self, config: RemoteSamplingConfig) -> Self {
        self.overrides.remote_sampling = Some(match self.overrides.remote_sampling.take() {
            Some(previous) => previous.merge(config),
            None => config,
        });
        self
    }

    /// Registers the sampler's instruments on `meter` when the manager is built: the
    /// decision counters by outcome and by key and the global limit's probability (see
    /// [`SamplerHandle::register_metrics`]). For OpenTelemetry's global meter provider:
    /// `.sampler_metrics(&opentelemetry::global::meter("meshtrace"))`, after that provider
    /// is set. Default: the manager's own meter when its metrics are on, else not
    /// registered ([`stats`](SamplerHandle::stats) still counts).
    pub fn sampler_metrics(mut self, meter: &opentelemetry::metrics::Meter) -> Self {
        self.sampler_meter = Some(meter.clone());
        self
    }

    /// Metrics settings (see [`crate::metrics`]); fields left unset keep their
    /// lower-precedence values (the file's `[metrics]`, the `OTEL_METRIC*` variables).
    pub fn metrics(mut self, metrics: MetricsConfig) -> Self {
        self.overrides.metrics = std::mem::take(&mut self.overrides.metrics).merge(metrics);
        self
    }

    /// The one switch for metrics (default on; file key `metrics.enabled`, variable
    /// `MESHTRACE_METRICS_ENABLED`). Off: no meter provider, and the layers the manager
    /// hands out (and `TracingLayer::new()` after `install()`) read no clock and build no
    /// attribute for metrics.
    pub fn metrics_enabled(mut self, on: bool) -> Self {
        self.overrides.metrics.enabled = Some(on);
        self
    }

    /// Exports metrics to `exporter` (e.g. the SDK's `InMemoryMetricExporter` in tests)
    /// instead of what `[metrics]` configures, at the configured interval. Metrics stay
    /// off when [`metrics_enabled(false)`](Self::metrics_enabled) says so.
    pub fn metric_exporter<E>(mut self, exporter: E) -> Self
    where
        E: opentelemetry_sdk::metrics::exporter::PushMetricExporter,
    {
        self.metric_exporter = Some(crate::metrics::provider::reader_for(exporter));
        self
    }

    /// OTLP logs (feature `otlp-logs`): `LogsConfig::otlp()` sends every event the log
    /// filter lets through as an OpenTelemetry log record (see `crate::export::logs`).
    /// Fields left unset keep their lower-precedence values (`[logs]`,
    /// `OTEL_LOGS_EXPORTER`, `OTEL_EXPORTER_OTLP_LOGS_*`).
    pub fn logs(mut self, logs: LogsConfig) -> Self {
        self.overrides.logs = std::mem::take(&mut self.overrides.logs).merge(logs);
        self
    }

    /// Per-span storage limits; fields left unset keep their lower-precedence values.
    pub fn span_limits(mut self, limits: SpanLimitsConfig) -> Self {
        self.overrides.span_limits = limits;
        self
    }

    /// Where spans go.
    pub fn exporter(mut self, exporter: ExporterConfig) -> Self {
        self.overrides.exporter = Some(exporter);
        self
    }

    /// Exports to `exporter` instead of what [`exporter`](Self::exporter) configures, still
    /// through the sampled-only, bounded, counted queue (e.g. a
    /// [`StdoutExporter`](crate::export::StdoutExporter) writing to a buffer, or the SDK's
    /// in-memory exporter in tests). Metrics then go nowhere (they cannot go where the spans
    /// go) unless a [`metric_exporter`](Self::metric_exporter) or `metrics.exporter` /
    /// `OTEL_METRICS_EXPORTER` says where.
    pub fn span_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.exporter = Some(Box::new(exporter));
        self
    }

    /// Rules that drop finished spans before export (see [`ExportFilterConfig`]); wins over
    /// the file's `[export_filter]` and `MESHTRACE_EXPORT_FILTER`.
    pub fn export_filter(mut self, filter: ExportFilterConfig) -> Self {
        self.overrides.export_filter = Some(filter);
        self
    }

    /// Batching knobs; fields left unset keep their lower-precedence values.
    pub fn batch(mut self, batch: BatchConfig) -> Self {
        self.overrides.batch = batch;
        self
    }

    /// Log output format.
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.overrides.log_format = Some(format);
        self
    }

    /// Where log lines go (default stdout), e.g. `std::io::stderr` or a test buffer.
    pub fn log_writer(
        mut self,
        writer: impl for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    ) -> Self {
        self.log_writer = Some(BoxMakeWriter::new(writer));
        self
    }

    /// The log filter: `EnvFilter` directives for the log output only, e.g.
    /// `warn,checkout=info`; wins over `RUST_LOG`. Default `info`. It changes nothing that
    /// is traced (see the [module docs](self#two-filters-what-is-logged-and-what-is-traced)).
    pub fn log_filter(mut self, directives: &str) -> Self {
        self.overrides.log_filter = Some(directives.to_owned());
        self
    }

    /// The span filter: `EnvFilter` directives for the `tracing` spans (and their events)
    /// that are bridged to OpenTelemetry, e.g. `info,my_crate::db=debug`; wins over
    /// `MESHTRACE_SPAN_FILTER`. Default `info`. It changes nothing that is logged, and never
    /// applies to meshtrace's server and client spans (OpenTelemetry SDK spans, not `tracing`
    /// spans), which are traced even with `off`.
    pub fn span_filter(mut self, directives: &str) -> Self {
        self.overrides.span_filter = Some(directives.to_owned());
        self
    }

    /// What [`install`](Self::install) does when a global tracer provider or propagator is
    /// already set; default [`ExistingGlobals::Refuse`].
    pub fn existing_globals(mut self, choice: ExistingGlobals) -> Self {
        self.existing_globals = choice;
        self
    }

    /// How long [`TracingManager::shutdown`] and dropping the manager wait (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.overrides.shutdown_timeout_ms =
            Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The configuration every source merges into, validated, without building anything.
    fn resolve(&mut self) -> Result<Resolved, Error> {
        let env = self.env.take().transpose()?;
        let file = self.file.take().unwrap_or_default();
        let exporter_in_code = self.exporter.is_some();
        if self.metric_exporter.is_some() && self.overrides.metrics.exporter.is_none() {
            // The exporter given in code replaces whichever is configured; `stdout` stands
            // for "on", and nothing is built for it.
            self.overrides.metrics.exporter = Some(MetricsExporter::Stdout);
        }
        config::resolve(
            env,
            file,
            std::mem::take(&mut self.overrides),
            exporter_in_code,
        )
    }

    /// Builds the pipeline without installing anything globally (no global subscriber,
    /// tracer provider or propagator) and returns the manager with the [`Layers`] of the
    /// subscriber, for a `tracing_subscriber::registry()` of your own (see the
    /// [module docs](self#your-own-subscriber)) or for tests
    /// (`tracing::subscriber::set_default(layers.into_subscriber())`). To add the layers
    /// after layers of your own, use [`build_layers`](Self::build_layers).
    pub fn build(self) -> Result<(TracingManager, Layers<Registry>), Error> {
        self.build_layers()
    }

    /// Like [`build`](Self::build), for layers that are added to the subscriber `S` (e.g.
    /// `Layered<YourLayer, Registry>` when yours comes first).
    pub fn build_layers<S>(mut self) -> Result<(TracingManager, Layers<S>), Error>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
    {
        let resolved = self.resolve()?;
        // Both already parse: checked when the configuration was resolved.
        let log_directives = resolved.log_filter.clone();
        let span_directives = resolved.span_filter.clone();
        let log_filter = || {
            EnvFilter::builder().parse(&log_directives).map_err(|e| {
                Error::config_caused_by("log_filter", &log_directives, e.to_string(), e)
            })
        };
        let span_filter = |events: Events| -> Result<SpanFilter, Error> {
            let invalid = |e: tracing_subscriber::filter::ParseError| {
                Error::config_caused_by("span_filter", &span_directives, e.to_string(), e)
            };
            let directives = EnvFilter::builder()
                .parse(&span_directives)
                .map_err(invalid)?;
            Ok(SpanFilter::new(directives, events))
        };
        // Both filters are checked before anything starts a thread.
        let (layer_log_filter, layer_span_filter) =
            (log_filter()?, span_filter(Events::NotErrors)?);
        let (manager, provider) = self.build_provider(&resolved)?;
        let scope = InstrumentationScope::builder("meshtrace")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        // tracing-opentelemetry 0.34 adds code location, thread, Rust target and busy/idle
        // timing attributes to every span by default: per-span cost and exported volume
        // that request spans don't need (OpenTelemetry's HTTP conventions don't ask for
        // them). Its default `error_events_to_status` turns an `error!` event into span
        // status Error; the semantic conventions decide a span's status, a logged error stays
        // a log event.
        let span_layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_target(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_error_events_to_status(false)
            .with_filter(layer_span_filter)
            // tracing-opentelemetry 0.34 makes every ERROR event a span error regardless of
            // `with_error_events_to_status`: those events reach the spans through
            // `ErrorEvents` instead (see `export::events`).
            .and_then(ErrorEvents::default().with_filter(span_filter(Events::OnlyErrors)?))
            .boxed();
        let logs = match self.log_writer.take() {
            Some(writer) => fmt_layer_with_writer(resolved.log_format, writer),
            None => fmt_layer(resolved.log_format),
        };
        let log_layer = logs.with_filter(layer_log_filter);
        // Boxed in each branch: an `Option` layer that is `None` beside per-layer filters
        // gives tracing-subscriber 0.3 a max level hint of OFF for the whole stack.
        #[cfg(feature = "otlp-logs")]
        let log_layer: Box<dyn Layer<S> + Send + Sync + 'static> = match &manager.logger_provider {
            Some(provider) => {
                use tracing_subscriber::filter::{FilterExt as _, filter_fn};
                // The log filter's events, never those of an export, nor OpenTelemetry's own
                // (see `export::logs`).
                let otlp = crate::export::logs::OtlpLogLayer::new(provider)
                    .with_filter(log_filter()?.and(filter_fn(crate::export::logs::admits)));
                log_layer.and_then(otlp).boxed()
            }
            None => log_layer.boxed(),
        };
        #[cfg(not(feature = "otlp-logs"))]
        let log_layer = log_layer.boxed();
        let layers = Layers {
            span_layer,
            log_layer,
            log_filter: log_filter()?,
            span_filter: span_filter(Events::All)?,
        };
        Ok((manager, layers))
    }

    /// Builds the pipeline and installs it globally: the `tracing` subscriber, the tracer
    /// provider, [`W3cPropagator`] and, when metrics are on, the meter provider (see the
    /// [module docs](self#global-state)). Fails, naming the cause, when the configuration is
    /// invalid, the exporter cannot be built, a global subscriber is already set, or a
    /// global tracer provider or propagator is already set and
    /// [`existing_globals`](Self::existing_globals) says to refuse; then nothing global is
    /// changed. A global meter provider you set cannot be detected, so it is not refused:
    /// unless you choose [`ExistingGlobals::Keep`] or turn metrics off, it is replaced.
    pub fn install(self) -> Result<TracingManager, Error> {
        let existing = self.existing_globals;
        if existing == ExistingGlobals::Refuse {
            refuse_existing_globals()?;
        }
        let (manager, layers) = self.build()?;
        if tracing::subscriber::set_global_default(layers.into_subscriber()).is_err() {
            // Nothing was queued yet, so this returns at once.
            let mut manager = manager;
            manager.shut_down = true;
            let _ = manager
                .provider
                .shutdown_with_timeout(Duration::from_millis(100));
            return Err(Error::setup(
                "global subscriber",
                "a global tracing subscriber is already set; use build() and add its layers to your subscriber",
            ));
        }
        if existing != ExistingGlobals::Keep {
            opentelemetry::global::set_text_map_propagator(W3cPropagator::new());
            opentelemetry::global::set_tracer_provider(manager.provider.clone());
            if let Some(meter_provider) = &manager.meter_provider {
                opentelemetry::global::set_meter_provider(meter_provider.clone());
            }
        }
        // Layers built with `new()` record on this manager's instruments (nowhere when its
        // metrics are off), whatever the global meter provider is.
        crate::metrics::http::set_installed(manager.instruments.clone());
        // meshtrace's own layers built with `new()` use this provider either way, and feed
        // its trace pages once they are mounted.
        crate::http::tracer::set_installed(Some((&manager.provider, &manager.sampler)));
        crate::pages::set_installed(Some(&manager.pages));
        Ok(manager)
    }

    fn build_provider(
        &mut self,
        resolved: &Resolved,
    ) -> Result<(TracingManager, SdkTracerProvider), Error> {
        let sampler = CustomSampler::new(resolved.sampling.clone())?;
        // One bound for every string recorded on a span: server, client, #[traced] and
        // the export gate (see `limits`).
        crate::limits::set_max_value_len(resolved.span_limits.max_attribute_value_length);
        let counters = Arc::new(Counters::default());
        let resource = build_resource(resolved);
        // Metrics and logs first: they can fail (an OTLP runtime), and start no thread
        // that would outlive a failed build.
        let (meter_provider, instruments) = match &resolved.signals.metrics {
            Some(metrics) => {
                let meter_provider = crate::metrics::provider::build(
                    metrics,
                    resource.clone(),
                    self.metric_exporter.take(),
                    resolved.sampling.limits.key_metric_attribute_sets(),
                )?;
                let meter = meter_provider.meter_with_scope(crate::http::tracer::scope());
                let instruments = Arc::new(HttpInstruments::new(&meter));
                (Some(meter_provider), Some(instruments))
            }
            None => (None, None),
        };
        #[cfg(feature = "otlp-logs")]
        let logger_provider = match &resolved.signals.logs {
            Some(otlp) => Some(crate::export::logs::provider(
                crate::export::logs::OtlpLogExporter::build(otlp, resolved.batch.export_timeout)?,
                resource.clone(),
            )),
            None => None,
        };
        let exporter: Option<(Box<dyn DynSpanExporter>, String)> = match self.exporter.take() {
            Some(custom) => Some((custom, "the custom span exporter".to_owned())),
            None => match &resolved.exporter {
                ResolvedExporter::Stdout => Some((
                    Box::new(crate::export::StdoutExporter::new()),
                    "stdout".to_owned(),
                )),
                ResolvedExporter::None => None,
                #[cfg(feature = "otlp")]
                ResolvedExporter::Otlp(otlp) => Some((
                    crate::export::otlp::build(otlp, resolved.batch.export_timeout)?,
                    exporter_name(otlp),
                )),
                #[cfg(not(feature = "otlp"))]
                ResolvedExporter::Otlp(_) => {
                    return Err(Error::config(
                        "exporter",
                        "otlp",
                        "meshtrace was built without the `otlp` feature",
                    ));
                }
            },
        };
        let mut builder = SdkTracerProvider::builder()
            .with_sampler(sampler.clone())
            .with_span_limits(resolved.span_limits.to_sdk())
            .with_resource(resource);
        let filter = Arc::new(ExportFilter::new(&resolved.export_filter)?);
        let pages = Arc::<crate::pages::Slot>::default();
        let mut deferred = None;
        if let Some((exporter, name)) = exporter {
            let exporter = CountingExporter::new(exporter, Arc::clone(&counters), name);
            // The gate is the only processor in front of the exporter, so the sampler may
            // defer (return RecordOnly): the buffer attaches itself to it.
            let buffer = Arc::new(Deferred::new(&sampler));
            deferred = Some(Arc::clone(&buffer));
            builder = builder.with_span_processor(ExportGate::new(
                exporter,
                Arc::clone(&counters),
                &resolved.batch,
                resolved.span_limits.max_attribute_value_length,
                Some(buffer),
                Arc::clone(&filter),
                Arc::clone(&pages),
            ));
        }
        // No export pipeline (`exporter = "none"`): the trace pages still see the spans that
        // record, through a processor of their own (the only one, so the SDK copies nothing).
        #[cfg(feature = "pages")]
        if deferred.is_none() {
            builder = builder.with_span_processor(crate::pages::PagesSpanProcessor::for_slot(
                Arc::clone(&pages),
            ));
        }
        let provider = builder.build();
        // The sampler's counters: on the meter given for them, else on the manager's.
        match (&self.sampler_meter, &meter_provider) {
            (Some(meter), _) => sampler.handle().register_metrics(meter),
            (None, Some(meter_provider)) => sampler
                .handle()
                .register_metrics(&meter_provider.meter_with_scope(crate::http::tracer::scope())),
            (None, None) => {}
        }
        // Started last; should a later step fail, dropping the manager stops it.
        #[cfg(feature = "jaeger-remote")]
        let poller = match &resolved.remote_sampling {
            Some(config) => Some(sampler.handle().poll_strategies_in_background(config)?),
            None => None,
        };
        let manager = TracingManager {
            provider: provider.clone(),
            meter_provider,
            instruments,
            #[cfg(feature = "otlp-logs")]
            logger_provider,
            counters,
            shutdown_timeout: resolved.shutdown_timeout,
            sampler,
            #[cfg(feature = "jaeger-remote")]
            poller,
            deferred,
            filter,
            pages,
            service_name: resolved.service_name.clone(),
            max_queue_size: resolved.batch.max_queue_size,
            max_value_len: resolved.span_limits.max_attribute_value_length,
            shut_down: false,
        };
        Ok((manager, provider))
    }
}

/// The export counts: the gate's counters, deferred capture's and the export filter's.
fn export_stats(
    counters: &Counters,
    deferred: Option<&Deferred>,
    filter: &ExportFilter,
) -> ExportStats {
    let mut stats = counters.snapshot();
    if let Some(deferred) = deferred {
        stats.deferred = deferred.stats();
    }
    stats.filter = filter.stats();
    stats
}

/// Names an OTLP exporter in warnings and stats: `OTLP/gRPC https://collector:4317`.
#[cfg(feature = "otlp")]
fn exporter_name(otlp: &config::ResolvedOtlp) -> String {
    let protocol = match otlp.protocol {
        config::OtlpProtocol::HttpProtobuf => "OTLP/HTTP protobuf",
        config::OtlpProtocol::HttpJson => "OTLP/HTTP JSON",
        config::OtlpProtocol::Grpc => "OTLP/gRPC",
    };
    format!("{protocol} {}", otlp.url)
}

/// Errors when a tracer provider or a propagator other than the API's no-op default is
/// installed globally (see [`ExistingGlobals`]).
fn refuse_existing_globals() -> Result<(), Error> {
    use opentelemetry::trace::{
        SpanBuilder, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        Tracer as _,
    };
    let choice = "call .existing_globals(ExistingGlobals::Replace) to replace it with meshtrace's, or ExistingGlobals::Keep to keep yours";
    let propagator_set =
        opentelemetry::global::get_text_map_propagator(|p| p.fields().next().is_some());
    if propagator_set {
        return Err(Error::setup(
            "global propagator",
            format!("an OpenTelemetry text map propagator is already installed; {choice}"),
        ));
    }
    // The API's no-op tracer hands back the parent's span context; a real provider starts
    // a span of its own, or (the SDK) none at all in a suppressed Context. The probe Context
    // is suppressed so that a real provider records nothing.
    let probe = SpanContext::new(
        TraceId::from(0x6d65_7368_7472_6163_655f_7072_6f62_6521_u128),
        SpanId::from(0x7072_6f62_6521_0001_u64),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    let cx = opentelemetry::Context::new()
        .with_remote_span_context(probe.clone())
        .with_telemetry_suppressed();
    let span = opentelemetry::global::tracer("meshtrace-probe")
        .build_with_context(SpanBuilder::from_name("meshtrace-probe"), &cx);
    if opentelemetry::trace::Span::span_context(&span) != &probe {
        return Err(Error::setup(
            "global tracer provider",
            format!("an OpenTelemetry tracer provider is already installed; {choice}"),
        ));
    }
    Ok(())
}

fn build_resource(resolved: &Resolved) -> Resource {
    let mut attributes = Vec::with_capacity(resolved.resource.len() + 5);
    attributes.push(KeyValue::new(
        semconv::PROCESS_PID,
        i64::from(std::process::id()),
    ));
    if let Some(host) = host_name() {
        attributes.push(KeyValue::new(semconv::HOST_NAME, host));
    }
    // Later entries win: configured attributes over detected ones, the dedicated service
    // fields over the generic attribute map.
    for (key, value) in &resolved.resource {
        attributes.push(KeyValue::new(key.clone(), value.clone()));
    }
    attributes.push(KeyValue::new(
        semconv::SERVICE_NAME,
        resolved.service_name.clone(),
    ));
    if let Some(version) = &resolved.service_version {
        attributes.push(KeyValue::new(semconv::SERVICE_VERSION, version.clone()));
    }
    if let Some(environment) = &resolved.environment {
        attributes.push(KeyValue::new(
            semconv::DEPLOYMENT_ENVIRONMENT_NAME,
            environment.clone(),
        ));
    }
    // `builder_empty`: `Resource::builder()` would run the SDK's detectors, which read
    // OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES from the process environment behind our
    // precedence rules.
    Resource::builder_empty()
        .with_attributes(attributes)
        .build()
}

/// The host name, from the kernel on Linux; `None` elsewhere or when unreadable.
fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty() && name.len() <= 255 && !name.chars().any(|c| c.is_control()))
}

/// A future that completes when the process is asked to stop: SIGINT (Ctrl-C) or SIGTERM
/// (what `docker stop`, systemd and Kubernetes send) on Unix, Ctrl-C elsewhere. Made for
/// `axum::serve(..).with_graceful_shutdown(meshtrace::shutdown_signal())`, after which
/// [`TracingManager::shutdown`] exports the spans of the last requests:
///
/// ```no_run
/// # async fn run(app: axum::Router, telemetry: meshtrace::TracingManager) -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown(meshtrace::shutdown_signal())
///     .await?;                      // returns once the signal came and open requests are done
/// telemetry.shutdown().await?;      // exports what is queued, bounded in time
/// # Ok(()) }
/// ```
///
/// Called inside a Tokio runtime, it listens from the call on (a signal that arrives before
/// the future is first polled is not missed); outside one, from the first poll. Once it
/// listens, SIGINT and SIGTERM no longer end the process by themselves (Tokio keeps its
/// handlers installed for the process's life). When the handlers cannot be installed, a
/// warning is logged and the future never completes: the process stops as it would without
/// it. One line (target `meshtrace`) is logged when the signal arrives.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let early = tokio::runtime::Handle::try_current()
        .is_ok()
        .then(Signals::listen);
    async move {
        let signals = match early {
            Some(signals) => signals,
            None => Signals::listen(),
        };
        let name = signals.recv().await;
        tracing::info!(
            target: "meshtrace",
            "{name} received: finishing open requests, then shutting down"
        );
    }
}

/// The signals [`shutdown_signal`] waits for.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(target: "meshtrace", "cannot listen for {name}: {e}");
                None
            }
        };
        Signals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
        }
    }

    #[cfg(not(unix))]
    fn listen() -> Self {
        Signals {}
    }

    #[cfg(unix)]
    async fn recv(mut self) -> &'static str {
        async fn next(signal: Option<&mut tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = next(self.interrupt.as_mut()) => "SIGINT",
            () = next(self.terminate.as_mut()) => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    async fn recv(self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(e) => {
                tracing::warn!(target: "meshtrace", "cannot listen for Ctrl-C: {e}");
                std::future::pending().await
            }
        }
    }
}
