//! [`TracingManager`]: one call from nothing to a traced service, and the guard that flushes
//! what is queued when the service stops.
//!
//! `install()` sets up, in this order: the resource (`service.name`, `service.version`,
//! `deployment.environment.name`, `host.name`, `process.pid`), the SDK tracer provider with
//! [`CustomSampler`] and the span limits, the export pipeline (only sampled spans, a bounded
//! queue whose drops are counted, stdout or OTLP), the global `tracing` subscriber
//! (`EnvFilter` + `tracing-opentelemetry` + log output with trace ids), and
//! [`W3cPropagator`] as the global propagator.
//!
//! ```no_run
//! use meshtrace::manager::TracingManager;
//! use meshtrace::sampler::SamplingConfig;
//!
//! # #[tokio::main] async fn main() -> Result<(), meshtrace::Error> {
//! let telemetry = TracingManager::from_env()      // OTEL_* and RUST_LOG
//!     .service_name("checkout")                    // the builder wins over everything
//!     .service_version(env!("CARGO_PKG_VERSION"))
//!     .sampling(SamplingConfig::default().base_rate(0.1))
//!     .install()?;
//!
//! // ... serve requests, with `telemetry.server_layer()` on the Router ...
//!
//! telemetry.shutdown().await?;                     // flushes what is queued, bounded
//! # Ok(()) }
//! ```
//!
//! Precedence, first wins: builder methods > config file ([`TracingConfig`]) >
//! `OTEL_SERVICE_NAME` > `OTEL_RESOURCE_ATTRIBUTES` and the other `OTEL_*` variables >
//! defaults. [`TracingManager::builder`] reads no environment variable at all (not even
//! `RUST_LOG`), so that what it builds depends only on the code.

use crate::Error;
use crate::config::{
    self, BatchConfig, ExporterConfig, OtlpConfig, Resolved, ResolvedExporter, TracingConfig,
};
use crate::context::W3cPropagator;
use crate::export::{Counters, CountingExporter, DynSpanExporter, ExportGate, ExportStats};
use crate::logging::{LogFormat, fmt_layer, fmt_layer_with_writer};
use crate::sampler::{CustomSampler, SamplerHandle, SamplingConfig};
use crate::server::TracingLayer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use opentelemetry_semantic_conventions::attribute as semconv;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

/// The installed tracing pipeline; returned by [`TracingManagerBuilder::install`].
///
/// Keep it alive for as long as the service runs. [`shutdown`](Self::shutdown) flushes the
/// queued spans within the shutdown timeout and logs the export counts; dropping the manager
/// does the same (blocking the dropping thread for at most the timeout).
#[derive(Debug)]
#[must_use = "dropping the manager shuts tracing down"]
pub struct TracingManager {
    provider: SdkTracerProvider,
    counters: Arc<Counters>,
    shutdown_timeout: Duration,
    // The provider's own sampler, shared with the server layers this manager hands out
    // so that they can drop requests before building spans.
    sampler: CustomSampler,
    shut_down: bool,
}

/// Configures and builds a [`TracingManager`]; see the [module docs](self) for precedence.
#[must_use]
pub struct TracingManagerBuilder {
    /// `OTEL_*` layer: the config and the OTLP settings, or the first error reading them.
    env: Option<Result<(TracingConfig, OtlpConfig), Error>>,
    env_sampling: Option<Result<SamplingConfig, Error>>,
    file: Option<TracingConfig>,
    overrides: TracingConfig,
    exporter: Option<Box<dyn DynSpanExporter>>,
    log_writer: Option<BoxMakeWriter>,
}

impl std::fmt::Debug for TracingManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingManagerBuilder")
            .field(
                "env",
                &self.env.as_ref().map(|r| r.as_ref().map(|(c, _)| c)),
            )
            .field("file", &self.file)
            .field("overrides", &self.overrides)
            .field("custom_exporter", &self.exporter.is_some())
            .field("custom_log_writer", &self.log_writer.is_some())
            .finish()
    }
}

impl TracingManager {
    /// A builder that starts from the defaults and reads no environment variable.
    pub fn builder() -> TracingManagerBuilder {
        TracingManagerBuilder {
            env: None,
            env_sampling: None,
            file: None,
            overrides: TracingConfig::default(),
            exporter: None,
            log_writer: None,
        }
    }

    /// A builder prefilled from the process environment: the `OTEL_*` variables listed in
    /// [`config::env`], the sampler's variables (see [`SamplingConfig::from_env_with`]) and
    /// `RUST_LOG`. Invalid values are reported by `install()`, naming the variable.
    pub fn from_env() -> TracingManagerBuilder {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (tests, or
    /// another source than the process environment).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> TracingManagerBuilder {
        let mut builder = Self::builder();
        builder.env = Some(config::from_env_lookup(&lookup));
        builder.env_sampling = Some(SamplingConfig::from_env_with(&lookup));
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
    /// dropped because the export failed, still queued).
    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// The SDK tracer provider, e.g. for `opentelemetry` API users or `force_flush`.
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports everything queued now and waits for it (at most 5 s: opentelemetry_sdk
    /// 0.33's batch processor has a fixed flush timeout). Blocks the calling thread.
    pub fn force_flush(&self) -> Result<(), Error> {
        self.provider
            .force_flush()
            .map_err(|e| Error::setup("force_flush", e))
    }

    /// A [`TracingLayer`] for the server side, using the sampling config's debug header
    /// and sharing the provider's sampler, so that requests the sampler drops (an
    /// unsampled caller, a root below the base rate) build no span at all (see
    /// [`TracingLayer::sampler`]); their handlers and log lines still see the trace.
    pub fn server_layer(&self) -> TracingLayer {
        TracingLayer::new()
            .debug_header(self.sampler.handle().debug_header())
            .tracer_provider(&self.provider)
            .sampler_hint(self.sampler.clone())
    }

    /// A [`ClientTracingLayer`](crate::client::ClientTracingLayer) (tower/hyper clients)
    /// whose spans come from this manager's provider. After [`install`](TracingManagerBuilder::install),
    /// `ClientTracingLayer::new()` does the same.
    pub fn client_layer(&self) -> crate::client::ClientTracingLayer {
        crate::client::ClientTracingLayer::new().tracer_provider(&self.provider)
    }

    /// A [`ReqwestTracingMiddleware`](crate::client::ReqwestTracingMiddleware) whose spans
    /// come from this manager's provider. After
    /// [`install`](TracingManagerBuilder::install), `ReqwestTracingMiddleware::new()` does
    /// the same.
    #[cfg(feature = "reqwest")]
    pub fn reqwest_middleware(&self) -> crate::client::ReqwestTracingMiddleware {
        crate::client::ReqwestTracingMiddleware::new().tracer_provider(&self.provider)
    }

    /// The sampler's handle, to reload the sampling configuration at runtime.
    pub fn sampler(&self) -> SamplerHandle {
        self.sampler.handle()
    }

    /// Flushes the queued spans and stops exporting, waiting at most the shutdown timeout;
    /// logs the export counts. The wait happens on a helper thread, so the async runtime is
    /// not blocked. Returns an error if the timeout elapsed (the spans still queued are
    /// lost; [`stats`](Self::stats) counted them as queued) or the exporter failed.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.shut_down = true;
        let provider = self.provider.clone();
        let timeout = self.shutdown_timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("meshtrace-shutdown".into())
            .spawn(move || {
                let _ = tx.send(provider.shutdown_with_timeout(timeout));
            });
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
            let _ = self.provider.shutdown_with_timeout(self.shutdown_timeout);
            self.log_stats();
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

    /// Head sampling and span limits.
    pub fn sampling(mut self, sampling: SamplingConfig) -> Self {
        self.overrides.sampling = Some(sampling);
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
    /// in-memory exporter in tests).
    pub fn span_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.exporter = Some(Box::new(exporter));
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

    /// `EnvFilter` directives, e.g. `info,hyper=warn`; wins over `RUST_LOG`.
    pub fn env_filter(mut self, directives: &str) -> Self {
        self.overrides.env_filter = Some(directives.to_owned());
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
        let (env, otlp_env) = match self.env.take() {
            Some(result) => result?,
            None => (TracingConfig::default(), OtlpConfig::default()),
        };
        let mut env = env;
        if let Some(sampling) = self.env_sampling.take() {
            env.sampling = Some(sampling?);
        }
        let file = self.file.take().unwrap_or_default();
        let merged = env.merge(file).merge(std::mem::take(&mut self.overrides));
        config::resolve(merged, otlp_env)
    }

    /// Builds the pipeline and returns it with its subscriber, without installing anything
    /// globally (no global subscriber, tracer provider or propagator): for tests, use
    /// `tracing::subscriber::set_default` or `with_default`.
    pub fn build(
        mut self,
    ) -> Result<(TracingManager, impl Subscriber + Send + Sync + 'static), Error> {
        let resolved = self.resolve()?;
        let (manager, provider) = self.build_provider(&resolved)?;
        let filter = EnvFilter::builder()
            .parse(&resolved.env_filter)
            .map_err(|e| Error::config("env_filter", &resolved.env_filter, e.to_string()))?;
        let scope = InstrumentationScope::builder("meshtrace")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        // tracing-opentelemetry 0.34 adds code location, thread, Rust target and busy/idle
        // timing attributes to every span by default: per-span cost and exported volume
        // that request spans don't need (OpenTelemetry's HTTP conventions don't ask for
        // them).
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_target(false)
            .with_threads(false)
            .with_tracked_inactivity(false);
        let base = tracing_subscriber::registry().with(filter).with(otel);
        let logs = match self.log_writer.take() {
            Some(writer) => fmt_layer_with_writer(resolved.log_format, writer),
            None => fmt_layer(resolved.log_format),
        };
        Ok((manager, base.with(logs)))
    }

    /// Builds the pipeline and installs it globally: the `tracing` subscriber, the tracer
    /// provider and [`W3cPropagator`]. Fails, naming the cause, when the configuration is
    /// invalid, the exporter cannot be built, or a global subscriber is already set (then
    /// nothing global is changed).
    pub fn install(self) -> Result<TracingManager, Error> {
        let (manager, subscriber) = self.build()?;
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            // Nothing was queued yet, so this returns at once.
            let mut manager = manager;
            manager.shut_down = true;
            let _ = manager
                .provider
                .shutdown_with_timeout(Duration::from_millis(100));
            return Err(Error::setup(
                "global subscriber",
                "a global tracing subscriber is already set; use build() to compose with it",
            ));
        }
        opentelemetry::global::set_text_map_propagator(W3cPropagator::new());
        opentelemetry::global::set_tracer_provider(manager.provider.clone());
        crate::http::tracer::set_installed(Some(&manager.provider));
        Ok(manager)
    }

    fn build_provider(
        &mut self,
        resolved: &Resolved,
    ) -> Result<(TracingManager, SdkTracerProvider), Error> {
        let sampler = CustomSampler::new(resolved.sampling.clone())?;
        // One bound for every string recorded on a span: server, client, #[traced] and
        // the export gate (see `limits`).
        crate::limits::set_max_value_len(
            match resolved.sampling.span_limits.max_attribute_value_length {
                0 => crate::limits::DEFAULT_MAX_VALUE_LEN,
                n => n as usize,
            },
        );
        let counters = Arc::new(Counters::default());
        let exporter: Option<Box<dyn DynSpanExporter>> = match self.exporter.take() {
            Some(custom) => Some(custom),
            None => match &resolved.exporter {
                ResolvedExporter::Stdout => Some(Box::new(crate::export::StdoutExporter::new())),
                ResolvedExporter::None => None,
                #[cfg(feature = "otlp")]
                ResolvedExporter::Otlp(otlp) => Some(crate::export::otlp::build(
                    otlp,
                    resolved.batch.export_timeout,
                )?),
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
            .with_span_limits(resolved.sampling.span_limits.to_sdk())
            .with_resource(build_resource(resolved));
        if let Some(exporter) = exporter {
            let exporter = CountingExporter::new(exporter, Arc::clone(&counters));
            builder = builder.with_span_processor(ExportGate::new(
                exporter,
                Arc::clone(&counters),
                &resolved.batch,
                resolved.sampling.span_limits,
            ));
        }
        let provider = builder.build();
        let manager = TracingManager {
            provider: provider.clone(),
            counters,
            shutdown_timeout: resolved.shutdown_timeout,
            sampler,
            shut_down: false,
        };
        Ok((manager, provider))
    }
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
