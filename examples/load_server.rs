//! The service of the end-to-end load test (`scripts/load.sh`): `GET /users/{id}` on
//! 127.0.0.1, bare or behind `TracingLayer`, sampling roots at a given rate, spans going
//! through the real SDK and a `BatchSpanProcessor` into an exporter that counts and
//! discards. It serves until Ctrl-C (SIGINT) or for a bounded time, then prints how many
//! spans were exported.
//!
//! ```text
//! cargo run --release --example load_server -- <bare|layer> <base_rate> <seconds>
//! ```
//!
//! It prints `listening on 127.0.0.1:<port>` once it accepts connections. The runtime has
//! one worker thread so that on a small machine the load generator keeps a core.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use meshtrace::sampler::{CustomSampler, SamplingConfig};
use meshtrace::server::TracingLayer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Debug, Default)]
struct CountingExporter(Arc<AtomicU64>);

impl SpanExporter for CountingExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "layer".into());
    let rate: f64 = args.next().map_or(Ok(1.0), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(20), |a| a.parse())?;

    let sampler = CustomSampler::new(SamplingConfig::default().base_rate(rate))?;
    let exporter = CountingExporter::default();
    let exported = exporter.0.clone();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_sampler(sampler)
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("load")));
    tracing::subscriber::set_global_default(subscriber)?;

    let routes = Router::new().route("/users/{id}", get(|| async { "alice" }));
    let app = match mode.as_str() {
        "bare" => routes,
        "layer" => routes.layer(TracingLayer::new().tracer_provider(&provider)),
        other => return Err(format!("mode {other:?}: expected bare or layer").into()),
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
    provider.force_flush()?;
    println!(
        "mode={mode} base_rate={rate}: {} spans exported",
        exported.load(Ordering::Relaxed)
    );
    provider.shutdown()?;
    Ok(())
}
