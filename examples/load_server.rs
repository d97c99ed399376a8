//! The service of the end-to-end load test (`scripts/load.sh`): `GET /users/{id}` on
//! 127.0.0.1, bare or behind a tracing middleware sampling root requests at a given rate,
//! spans going through the real SDK's batch processor into an exporter that counts and
//! discards. It serves until Ctrl-C (SIGINT) or for a bounded time, then prints how many
//! spans were exported.
//!
//! ```text
//! cargo run --release --example load_server -- <mode> <base_rate> <seconds> [trivial|work]
//! ```
//!
//! Modes:
//! * `bare`: the Router alone;
//! * `meshtrace`: as the README recommends: `TracingManager::builder()` (sampling
//!   `base_rate`, the counting exporter, logs into a sink), installed, and
//!   `telemetry.server_layer()`;
//! * `otel_tower`: opentelemetry-instrumentation-tower, tracing only (metrics off), the
//!   SDK's `ParentBased(TraceIdRatioBased(base_rate))` and W3C propagators, installed
//!   globally;
//! * `otel_axum`: axum-tracing-opentelemetry's `OtelAxumLayer` over tracing-opentelemetry,
//!   the same sampler and propagators.
//!
//! The handler answers at once (`trivial`, the default) or after 50 µs of CPU work
//! (`work`: a spin on the clock, so that the request costs the same CPU whatever the
//! timer resolution).
//!
//! It prints `listening on 127.0.0.1:<port>` once it accepts connections. The runtime has
//! one worker thread so that on a small machine the load generator keeps a core.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use meshtrace::TracingManager;
use meshtrace::sampler::SamplingConfig;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Debug, Default)]
struct CountingExporter(Arc<AtomicU64>);

impl SpanExporter for CountingExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

/// What must be flushed and counted when the server stops.
enum Pipeline {
    None,
    Sdk(SdkTracerProvider),
    Manager(TracingManager),
}

/// The peers' pipeline: the SDK's sampler and batch processor, W3C propagators.
fn sdk_provider(rate: f64, exporter: CountingExporter) -> SdkTracerProvider {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            rate,
        ))))
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .build()
}

/// 50 µs of CPU.
async fn work() -> &'static str {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(50) {
        std::hint::spin_loop();
    }
    "alice"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "meshtrace".into());
    let rate: f64 = args.next().map_or(Ok(1.0), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(20), |a| a.parse())?;
    let handler = args.next().unwrap_or_else(|| "trivial".into());

    let routes = match handler.as_str() {
        "trivial" => Router::new().route("/users/{id}", get(|| async { "alice" })),
        "work" => Router::new().route("/users/{id}", get(work)),
        other => return Err(format!("handler {other:?}: expected trivial or work").into()),
    };
    let exporter = CountingExporter::default();
    let exported = exporter.0.clone();
    let (app, pipeline) = match mode.as_str() {
        "bare" => (routes, Pipeline::None),
        "meshtrace" => {
            let telemetry = TracingManager::builder()
                .sampling(SamplingConfig::default().base_rate(rate))
                .span_exporter(exporter)
                .log_writer(std::io::sink)
                .install()?;
            (
                routes.layer(telemetry.server_layer()),
                Pipeline::Manager(telemetry),
            )
        }
        "otel_tower" => {
            let provider = sdk_provider(rate, exporter);
            opentelemetry::global::set_tracer_provider(provider.clone());
            let layer = opentelemetry_instrumentation_tower::http::server::LayerBuilder::builder()
                .with_metrics(false)
                .build()?;
            (routes.layer(layer), Pipeline::Sdk(provider))
        }
        "otel_axum" => {
            let provider = sdk_provider(rate, exporter);
            let subscriber = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("load")));
            tracing::subscriber::set_global_default(subscriber)?;
            let layer = axum_tracing_opentelemetry::middleware::OtelAxumLayer::default();
            (routes.layer(layer), Pipeline::Sdk(provider))
        }
        other => {
            return Err(format!(
                "mode {other:?}: expected bare, meshtrace, otel_tower or otel_axum"
            )
            .into());
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        // Bounded: a forgotten server never outlives the run.
        let _ = tokio::time::timeout(Duration::from_secs(seconds), serve).await;
        Ok::<_, std::io::Error>(())
    })?;
    match &pipeline {
        Pipeline::None => {}
        Pipeline::Sdk(provider) => provider.force_flush()?,
        Pipeline::Manager(telemetry) => telemetry.force_flush()?,
    }
    println!(
        "mode={mode} base_rate={rate} handler={handler}: {} spans exported",
        exported.load(Ordering::Relaxed)
    );
    match pipeline {
        Pipeline::None => {}
        Pipeline::Sdk(provider) => provider.shutdown()?,
        Pipeline::Manager(telemetry) => drop(telemetry),
    }
    Ok(())
}
