//! Shared by the benches: the cases (one Router, the same requests, the same discarding
//! exporter behind the SDK's batch processor, each tracing setup), built the same way for
//! criterion (`benches/server.rs`) and for the instruction counts
//! (`benches/instructions.rs`, run by `scripts/callgrind.sh`).
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderMap, Request};
use http_body_util::BodyExt;
use meshtrace::TracingManager;
use meshtrace::config::MetricsConfig;
use meshtrace::logging::LogFormat;
use meshtrace::sampler::{CustomSampler, DeferredConfig, SamplingConfig};
use meshtrace::server::TracingLayer;
use opentelemetry::global;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use tower::ServiceExt;
use tracing::Dispatch;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;

pub const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
pub const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
pub const BAGGAGE: &str = "userId=alice,tenant=acme";

/// Counts exported spans and drops them.
#[derive(Clone, Debug, Default)]
pub struct CountingExporter {
    pub spans: Arc<AtomicU64>,
}

impl SpanExporter for CountingExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.spans.fetch_add(batch.len() as u64, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

/// Metric exports never happen during a run (they would land in one run of a difference
/// and not the other).
pub const EXPORT_ONCE_AN_HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

/// Discards metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardMetrics;

impl PushMetricExporter for DiscardMetrics {
    fn export(&self, _: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        std::future::ready(Ok(()))
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// An SDK meter provider whose periodic reader discards, once an hour.
pub fn discarding_meter_provider() -> SdkMeterProvider {
    SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(DiscardMetrics)
                .with_interval(EXPORT_ONCE_AN_HOUR)
                .build(),
        )
        .build()
}

/// The caller's `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parent {
    /// `...-01`.
    Sampled,
    /// `...-00`.
    Unsampled,
    /// No `traceparent`: the request starts a trace.
    Root,
}

/// The headers of every request of a case: `GET /users/42` with this `traceparent` and,
/// if `baggage`, `baggage: userId=alice,tenant=acme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    pub parent: Parent,
    pub baggage: bool,
}

impl Headers {
    pub const fn new(parent: Parent, baggage: bool) -> Self {
        Headers { parent, baggage }
    }

    pub fn request(self) -> Request<Body> {
        let mut builder = Request::get("/users/42");
        match self.parent {
            Parent::Sampled => builder = builder.header("traceparent", SAMPLED),
            Parent::Unsampled => builder = builder.header("traceparent", UNSAMPLED),
            Parent::Root => {}
        }
        if self.baggage {
            builder = builder.header("baggage", BAGGAGE);
        }
        builder.body(Body::empty()).expect("request")
    }

    /// `sampled+baggage`, `root`, ...: names the request-only runs of the callgrind script.
    pub fn label(self) -> String {
        let parent = match self.parent {
            Parent::Sampled => "sampled",
            Parent::Unsampled => "unsampled",
            Parent::Root => "root",
        };
        if self.baggage {
            format!("{parent}+baggage")
        } else {
            parent.to_owned()
        }
    }

    pub fn parse(label: &str) -> Option<Self> {
        let (parent, baggage) = match label.strip_suffix("+baggage") {
            Some(parent) => (parent, true),
            None => (label, false),
        };
        let parent = match parent {
            "sampled" => Parent::Sampled,
            "unsampled" => Parent::Unsampled,
            "root" => Parent::Root,
            _ => return None,
        };
        Some(Headers { parent, baggage })
    }
}

/// A tracing setup in front of the Router.
#[derive(Clone, Copy, Debug)]
pub enum Setup {
    /// The Router alone.
    Bare,
    /// The Router with a layer that does nothing (`tower::layer::util::Identity`): what
    /// axum charges for any `Router::layer`.
    AxumLayer,
    /// tower-http's `TraceLayer`, exported through tracing-opentelemetry.
    TowerHttp,
    /// axum-tracing-opentelemetry's `OtelAxumLayer` (tracing-opentelemetry, the global
    /// propagator).
    OtelAxum,
    /// opentelemetry-instrumentation-tower, tracing only (its HTTP metrics off), the
    /// global tracer provider and propagator.
    OtelTower,
    /// opentelemetry-instrumentation-tower with its HTTP metrics on (the global meter
    /// provider: an SDK provider whose exporter discards, exporting once an hour).
    OtelTowerMetrics,
    /// What the README recommends: `TracingManager::builder()` with the counting
    /// exporter and logs into a sink (`log_format`), its subscriber as the default, and
    /// `telemetry.server_layer()`. `log_line`: the handler logs one INFO line.
    /// `metrics`: HTTP metrics on, into a metric exporter that discards (exporting once an
    /// hour, so never during a run); off, the manager has no meter provider (a span exporter
    /// given in code and no metric exporter). `pages`: the manager's trace pages are mounted
    /// (their Router merged into the app, default settings); off, they are never built.
    Manager {
        format: LogFormat,
        base_rate: f64,
        log_line: bool,
        metrics: bool,
        pages: bool,
    },
    /// The manager as in `Manager` (text logs) at `base_rate`, with deferred capture on
    /// (no rate limit in reach) or off; the handler answers 500 when `fail`.
    Deferred {
        base_rate: f64,
        deferral: bool,
        fail: bool,
    },
    /// meshtrace without the manager: a plain SDK provider with `CustomSampler`, a
    /// Registry + tracing-opentelemetry subscriber, `TracingLayer::new().tracer_provider(..)`.
    HandBuilt,
    /// Not a Router: the SDK's `TraceContextPropagator` + `BaggagePropagator` composite
    /// extracting the request's headers (through opentelemetry-http's `HeaderExtractor`,
    /// base `Context::new()`), the Context then dropped.
    SdkExtract,
    /// Not a Router: `meshtrace::context::extract` of the request's headers.
    MeshtraceExtract,
}

/// One measured case: a setup and the headers of its requests.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub setup: Setup,
    pub headers: Headers,
}

fn case(name: impl Into<String>, setup: Setup, parent: Parent, baggage: bool) -> Case {
    Case {
        name: name.into(),
        setup,
        headers: Headers::new(parent, baggage),
    }
}

/// Every case, in table order.
pub fn cases() -> Vec<Case> {
    use Parent::{Root, Sampled, Unsampled};
    let mut all = vec![
        case("bare", Setup::Bare, Sampled, true),
        case("bare/unsampled", Setup::Bare, Unsampled, false),
        case("bare/root", Setup::Bare, Root, false),
        case("bare/axum_layer", Setup::AxumLayer, Sampled, true),
        case("tower_http/sampled", Setup::TowerHttp, Sampled, true),
        case("otel_tower/sampled", Setup::OtelTower, Sampled, true),
        case("otel_axum/sampled", Setup::OtelAxum, Sampled, true),
        case("otel_axum/unsampled", Setup::OtelAxum, Unsampled, true),
        case("otel_axum/root", Setup::OtelAxum, Root, true),
    ];
    for (format, label) in [(LogFormat::Text, "text"), (LogFormat::Json, "json")] {
        let manager = |base_rate| Setup::Manager {
            format,
            base_rate,
            log_line: false,
            metrics: false,
            pages: false,
        };
        for baggage in [true, false] {
            let suffix = if baggage { "" } else { "/no_baggage" };
            let name = |what: &str| format!("meshtrace/{label}/{what}{suffix}");
            all.push(case(name("sampled"), manager(1.0), Sampled, baggage));
            all.push(case(name("unsampled"), manager(1.0), Unsampled, baggage));
            all.push(case(name("root_100pct"), manager(1.0), Root, baggage));
            all.push(case(name("root_1pct"), manager(0.01), Root, baggage));
        }
        all.push(case(
            format!("meshtrace/{label}/sampled/log_line"),
            Setup::Manager {
                format,
                base_rate: 1.0,
                log_line: true,
                metrics: false,
                pages: false,
            },
            Sampled,
            true,
        ));
    }
    // What error capture costs: the same Router and manager, requests that start a trace
    // (no `traceparent`), the head decision dropping (base rate 0) or keeping (1.0) them.
    let deferred = |base_rate, deferral, fail| Setup::Deferred {
        base_rate,
        deferral,
        fail,
    };
    all.push(case(
        "deferred/off",
        deferred(0.0, false, false),
        Root,
        false,
    ));
    all.push(case(
        "deferred/on_success",
        deferred(0.0, true, false),
        Root,
        false,
    ));
    all.push(case(
        "deferred/on_failure",
        deferred(0.0, true, true),
        Root,
        false,
    ));
    all.push(case(
        "deferred/sampled",
        deferred(1.0, true, false),
        Root,
        false,
    ));
    // HTTP metrics on (the manager's default when it exports spans itself), beside the
    // cases above (metrics off), and opentelemetry-instrumentation-tower with its metrics.
    for (what, base_rate, parent) in [
        ("sampled", 1.0, Sampled),
        ("unsampled", 1.0, Unsampled),
        ("root_1pct", 0.01, Root),
    ] {
        all.push(case(
            format!("meshtrace/text/{what}/metrics"),
            Setup::Manager {
                format: LogFormat::Text,
                base_rate,
                log_line: false,
                metrics: true,
                pages: false,
            },
            parent,
            true,
        ));
    }
    // The trace pages mounted (merged into the Router), beside the same cases without
    // them: what a request pays for being counted and sampled on the pages.
    for (what, parent) in [("sampled", Sampled), ("unsampled", Unsampled)] {
        all.push(case(
            format!("meshtrace/text/{what}/pages"),
            Setup::Manager {
                format: LogFormat::Text,
                base_rate: 1.0,
                log_line: false,
                metrics: false,
                pages: true,
            },
            parent,
            true,
        ));
    }
    all.push(case(
        "otel_tower/sampled/metrics",
        Setup::OtelTowerMetrics,
        Sampled,
        true,
    ));
    all.push(case(
        "meshtrace_hand_built/sampled",
        Setup::HandBuilt,
        Sampled,
        true,
    ));
    all.push(case(
        "extract/sdk/unsampled",
        Setup::SdkExtract,
        Unsampled,
        true,
    ));
    all.push(case("extract/sdk/root", Setup::SdkExtract, Root, true));
    all.push(case(
        "extract/meshtrace/unsampled",
        Setup::MeshtraceExtract,
        Unsampled,
        true,
    ));
    all
}

/// The Router every case serves: `GET /users/{id}` answering `alice`.
pub fn routes(log_line: bool) -> Router {
    if log_line {
        Router::new().route(
            "/users/{id}",
            get(|| async {
                tracing::info!(user = "alice", "user found");
                "alice"
            }),
        )
    } else {
        Router::new().route("/users/{id}", get(|| async { "alice" }))
    }
}

/// The Router of the `Deferred` cases: `GET /users/{id}` answering `alice`, or 500.
pub fn routes_failing(fail: bool) -> Router {
    if fail {
        Router::new().route(
            "/users/{id}",
            get(|| async { http::StatusCode::INTERNAL_SERVER_ERROR }),
        )
    } else {
        routes(false)
    }
}

/// Registry + tracing-opentelemetry over `provider`: what every tracing-based layer needs.
fn otel_dispatch(provider: &SdkTracerProvider) -> Dispatch {
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    Dispatch::new(Registry::default().with(otel))
}

fn sdk_default_sampler() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
}

/// A provider exporting through the SDK's `BatchSpanProcessor` (default settings) into a
/// [`CountingExporter`].
pub fn provider(
    sampler: impl opentelemetry_sdk::trace::ShouldSample + 'static,
) -> (SdkTracerProvider, Arc<AtomicU64>) {
    let exporter = CountingExporter::default();
    let spans = exporter.spans.clone();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .build();
    (provider, spans)
}

/// The SDK's W3C composite, as the peers install it globally.
pub fn sdk_propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

enum Telemetry {
    None,
    Provider(SdkTracerProvider, Arc<AtomicU64>),
    Manager(TracingManager, Arc<AtomicU64>),
}

/// What a case runs: the Router (or an extractor) and the subscriber to run it under.
pub struct Built {
    pub target: Target,
    pub dispatch: Option<Dispatch>,
    telemetry: Telemetry,
    /// The handler answers 500 (a `Deferred` case that fails).
    fails: bool,
}

pub enum Target {
    Router(Router),
    SdkExtract(TextMapCompositePropagator),
    MeshtraceExtract,
}

impl Setup {
    /// Builds the setup. Global state it touches: the text map propagator (the SDK
    /// composite, which the peers read) and, for `OtelTower`, the global tracer provider.
    pub fn build(self) -> Built {
        global::set_text_map_propagator(sdk_propagator());
        let router = |app: Router, dispatch, telemetry| Built {
            target: Target::Router(app),
            dispatch,
            telemetry,
            fails: false,
        };
        match self {
            Setup::Bare => router(routes(false), None, Telemetry::None),
            Setup::AxumLayer => router(
                routes(false).layer(tower::layer::util::Identity::new()),
                None,
                Telemetry::None,
            ),
            Setup::TowerHttp => {
                let (provider, spans) = provider(sdk_default_sampler());
                let dispatch = otel_dispatch(&provider);
                let app = routes(false).layer(tower_http::trace::TraceLayer::new_for_http());
                router(app, Some(dispatch), Telemetry::Provider(provider, spans))
            }
            Setup::OtelAxum => {
                let (provider, spans) = provider(sdk_default_sampler());
                let dispatch = otel_dispatch(&provider);
                let app = routes(false)
                    .layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default());
                router(app, Some(dispatch), Telemetry::Provider(provider, spans))
            }
            Setup::OtelTower => {
                let (provider, spans) = provider(sdk_default_sampler());
                global::set_tracer_provider(provider.clone());
                let layer =
                    opentelemetry_instrumentation_tower::http::server::LayerBuilder::builder()
                        .with_metrics(false)
                        .build()
                        .expect("layer");
                let app = routes(false).layer(layer);
                router(app, None, Telemetry::Provider(provider, spans))
            }
            Setup::OtelTowerMetrics => {
                let (provider, spans) = provider(sdk_default_sampler());
                global::set_tracer_provider(provider.clone());
                global::set_meter_provider(discarding_meter_provider());
                let layer =
                    opentelemetry_instrumentation_tower::http::server::LayerBuilder::builder()
                        .with_metrics(true)
                        .build()
                        .expect("layer");
                let app = routes(false).layer(layer);
                router(app, None, Telemetry::Provider(provider, spans))
            }
            Setup::Manager {
                format,
                base_rate,
                log_line,
                metrics,
                pages,
            } => {
                let exporter = CountingExporter::default();
                let spans = exporter.spans.clone();
                let mut builder = TracingManager::builder()
                    .sampling(SamplingConfig::default().base_rate(base_rate))
                    .log_format(format)
                    .span_exporter(exporter)
                    .log_writer(std::io::sink);
                if metrics {
                    builder = builder
                        .metric_exporter(DiscardMetrics)
                        .metrics(MetricsConfig::default().export_interval(EXPORT_ONCE_AN_HOUR));
                }
                let (telemetry, subscriber) = builder.build().expect("manager");
                let mut app = routes(log_line);
                if pages {
                    app = app.merge(telemetry.pages().build().expect("pages").router());
                }
                let app = app.layer(telemetry.server_layer());
                router(
                    app,
                    Some(Dispatch::new(subscriber.into_subscriber())),
                    Telemetry::Manager(telemetry, spans),
                )
            }
            Setup::Deferred {
                base_rate,
                deferral,
                fail,
            } => {
                let exporter = CountingExporter::default();
                let spans = exporter.spans.clone();
                let deferred = DeferredConfig::default()
                    .enabled(deferral)
                    .max_per_second(1_000_000);
                let (telemetry, subscriber) = TracingManager::builder()
                    .sampling(
                        SamplingConfig::default()
                            .base_rate(base_rate)
                            .deferred(deferred),
                    )
                    .log_format(LogFormat::Text)
                    .span_exporter(exporter)
                    .log_writer(std::io::sink)
                    .build()
                    .expect("manager");
                let app = routes_failing(fail).layer(telemetry.server_layer());
                Built {
                    fails: fail,
                    ..router(
                        app,
                        Some(Dispatch::new(subscriber.into_subscriber())),
                        Telemetry::Manager(telemetry, spans),
                    )
                }
            }
            Setup::HandBuilt => {
                let sampler = CustomSampler::new(SamplingConfig::default()).expect("sampler");
                let (provider, spans) = provider(sampler);
                let dispatch = otel_dispatch(&provider);
                // Metrics off: without a manager the layer would record into the global meter
                // provider, which `OtelTowerMetrics` sets in the same criterion process.
                let app = routes(false).layer(
                    TracingLayer::new()
                        .tracer_provider(&provider)
                        .metrics(false),
                );
                router(app, Some(dispatch), Telemetry::Provider(provider, spans))
            }
            Setup::SdkExtract => Built {
                target: Target::SdkExtract(sdk_propagator()),
                dispatch: None,
                telemetry: Telemetry::None,
                fails: false,
            },
            Setup::MeshtraceExtract => Built {
                target: Target::MeshtraceExtract,
                dispatch: None,
                telemetry: Telemetry::None,
                fails: false,
            },
        }
    }
}

impl Built {
    /// Serves each request (the Router through a clone, `oneshot`, body drained) or
    /// extracts its headers; checks every response.
    pub async fn drive(&self, requests: Vec<Request<Body>>) {
        match &self.target {
            Target::Router(app) => {
                for request in requests {
                    let response = app.clone().oneshot(request).await.expect("infallible");
                    let expected = self.fails == response.status().is_server_error();
                    assert!(expected, "{}", response.status());
                    let mut body = response.into_body();
                    while let Some(frame) = body.frame().await {
                        std::hint::black_box(frame.expect("body"));
                    }
                }
            }
            Target::SdkExtract(propagator) => {
                for request in requests {
                    let headers: &HeaderMap = request.headers();
                    std::hint::black_box(propagator.extract(&HeaderExtractor(headers)));
                }
            }
            Target::MeshtraceExtract => {
                for request in requests {
                    std::hint::black_box(meshtrace::context::extract(request.headers()));
                }
            }
        }
    }

    /// Flushes and returns (spans exported, spans dropped because the queue was full;
    /// the latter counted only by the manager), or `None` without a provider.
    pub fn exported(&self) -> Option<(u64, Option<u64>)> {
        match &self.telemetry {
            Telemetry::None => None,
            Telemetry::Provider(provider, spans) => {
                provider.force_flush().expect("flush");
                Some((spans.load(Ordering::Relaxed), None))
            }
            Telemetry::Manager(telemetry, spans) => {
                telemetry.force_flush().expect("flush");
                Some((
                    spans.load(Ordering::Relaxed),
                    Some(telemetry.stats().dropped_queue_full),
                ))
            }
        }
    }

    /// What deferred capture did (manager setups).
    pub fn deferred(&self) -> Option<meshtrace::export::DeferredStats> {
        match &self.telemetry {
            Telemetry::Manager(telemetry, _) => Some(telemetry.stats().deferred),
            _ => None,
        }
    }

    pub fn shutdown(self) {
        match self.telemetry {
            Telemetry::None => {}
            Telemetry::Provider(provider, _) => provider.shutdown().expect("shutdown"),
            Telemetry::Manager(telemetry, _) => drop(telemetry),
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}
