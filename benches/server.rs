//! Per-request cost of server tracing layers, side by side, in one process.
//!
//! Every case drives an axum `Router` in-process (`oneshot` on a clone, no sockets) with
//! `GET /users/42` on the route `/users/{id}`, a `baggage: userId=alice,tenant=acme`
//! header and a sampled, unsampled or absent `traceparent`; the response body is drained
//! inside the timed region. Spans go through the real SDK and a `BatchSpanProcessor`
//! into an exporter that counts and discards; the counts are printed after each case.
//!
//! Each case runs under its own `tracing` subscriber (`with_default`), so cases do not
//! see each other's layers. Run with `scripts/bench.sh` for the summary table.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;
use common::{SAMPLED, UNSAMPLED, meshtrace_provider, provider, run, runtime};
use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use meshtrace::sampler::{CustomSampler, SamplingConfig, SamplingRule};
use meshtrace::server::TracingLayer;
use opentelemetry::global;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Dispatch;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;

fn routes() -> Router {
    Router::new().route("/users/{id}", get(|| async { "alice" }))
}

/// Registry + tracing-opentelemetry over `provider`: what every tracing-based layer needs.
fn otel_dispatch(provider: &SdkTracerProvider) -> Dispatch {
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    Dispatch::new(Registry::default().with(otel))
}

fn sdk_default_sampler() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
}

/// Ten rules; only the last one matches `GET /users/{id}` (rate 1.0), so a decision
/// walks all of them.
fn ten_rules() -> SamplingConfig {
    let mut config = SamplingConfig::default();
    for (i, route) in [
        "/health",
        "/ready",
        "/metrics",
        "/admin/**",
        "/internal/*",
        "/orders/{id}",
        "/carts/{id}/items",
        "/static/**",
        "/search",
    ]
    .iter()
    .enumerate()
    {
        config = config.rule(SamplingRule::new(format!("r{i}"), 0.01).route(*route));
    }
    config.rule(
        SamplingRule::new("users", 1.0)
            .route("/users/{id}")
            .method("GET"),
    )
}

struct Case<'a> {
    rt: &'a tokio::runtime::Runtime,
    dispatch: Option<&'a Dispatch>,
    provider: Option<&'a SdkTracerProvider>,
    spans: Option<&'a Arc<AtomicU64>>,
}

impl Case<'_> {
    fn bench(
        &self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        name: &str,
        app: &Router,
        traceparent: Option<&'static str>,
    ) {
        let before = self.spans.map_or(0, |s| s.load(Ordering::Relaxed));
        let requests = AtomicU64::new(0);
        let mut body = || {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    requests.fetch_add(iters, Ordering::Relaxed);
                    run(self.rt, app, traceparent, iters)
                })
            });
        };
        match self.dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, body),
            None => body(),
        }
        if let (Some(provider), Some(spans)) = (self.provider, self.spans) {
            provider.force_flush().expect("flush");
            let exported = spans.load(Ordering::Relaxed) - before;
            println!(
                "spans: {name}: {} requests, {exported} spans exported",
                requests.load(Ordering::Relaxed)
            );
        }
    }
}

fn server(c: &mut Criterion) {
    let rt = runtime();
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let mut group = c.benchmark_group("server");

    // 1. The floor.
    let bare = routes();
    Case {
        rt: &rt,
        dispatch: None,
        provider: None,
        spans: None,
    }
    .bench(&mut group, "bare", &bare, Some(SAMPLED));

    // 2. tower-http, exported through tracing-opentelemetry.
    {
        let (provider, spans) = provider(sdk_default_sampler());
        let dispatch = otel_dispatch(&provider);
        let app = routes().layer(tower_http::trace::TraceLayer::new_for_http());
        let case = Case {
            rt: &rt,
            dispatch: Some(&dispatch),
            provider: Some(&provider),
            spans: Some(&spans),
        };
        case.bench(&mut group, "tower_http_trace/sampled", &app, Some(SAMPLED));
        provider.shutdown().expect("shutdown");
    }

    // 3. axum-tracing-opentelemetry (global propagator, tracing-opentelemetry).
    {
        let (provider, spans) = provider(sdk_default_sampler());
        let dispatch = otel_dispatch(&provider);
        let app = routes().layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default());
        let case = Case {
            rt: &rt,
            dispatch: Some(&dispatch),
            provider: Some(&provider),
            spans: Some(&spans),
        };
        case.bench(&mut group, "otel_axum/sampled", &app, Some(SAMPLED));
        case.bench(&mut group, "otel_axum/unsampled", &app, Some(UNSAMPLED));
        case.bench(&mut group, "otel_axum/root", &app, None);
        provider.shutdown().expect("shutdown");
    }

    // 4. opentelemetry-instrumentation-tower (global tracer provider, OTel API directly).
    // Its HTTP metrics are turned off: they are not tracing, and would only slow it down.
    {
        let (provider, spans) = provider(sdk_default_sampler());
        global::set_tracer_provider(provider.clone());
        let layer = opentelemetry_instrumentation_tower::http::server::LayerBuilder::builder()
            .with_metrics(false)
            .build()
            .expect("layer");
        let app = routes().layer(layer);
        let case = Case {
            rt: &rt,
            dispatch: None,
            provider: Some(&provider),
            spans: Some(&spans),
        };
        case.bench(&mut group, "otel_tower/sampled", &app, Some(SAMPLED));
        provider.shutdown().expect("shutdown");
    }

    // 5. meshtrace, hand-built (the provider's CustomSampler, the layer starting spans
    // from the provider), with the default config and with ten rules, and roots sampled
    // at 1%.
    for (label, config) in [
        ("meshtrace", SamplingConfig::default()),
        ("meshtrace_10_rules", ten_rules()),
        ("meshtrace_1pct", SamplingConfig::default().base_rate(0.01)),
    ] {
        let sampler = CustomSampler::new(config).expect("sampler");
        let (provider, spans) = meshtrace_provider(sampler.clone());
        let dispatch = otel_dispatch(&provider);
        let app = routes().layer(TracingLayer::new().tracer_provider(&provider));
        let case = Case {
            rt: &rt,
            dispatch: Some(&dispatch),
            provider: Some(&provider),
            spans: Some(&spans),
        };
        if label != "meshtrace_1pct" {
            case.bench(&mut group, &format!("{label}/sampled"), &app, Some(SAMPLED));
            let unsampled = format!("{label}/unsampled");
            case.bench(&mut group, &unsampled, &app, Some(UNSAMPLED));
        }
        case.bench(&mut group, &format!("{label}/root"), &app, None);
        provider.shutdown().expect("shutdown");
    }
    group.finish();
}

criterion_group!(benches, server);
criterion_main!(benches);
