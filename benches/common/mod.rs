//! Shared by the benches: a real SDK provider with a `BatchSpanProcessor` over an
//! exporter that counts and discards, and a way to drive a Router in-process.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use meshtrace::sampler::CustomSampler;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, ShouldSample, SpanData, SpanExporter,
    TracerProviderBuilder,
};
use tower::ServiceExt;

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

/// A provider exporting through a `BatchSpanProcessor` into a [`CountingExporter`].
pub fn provider(sampler: impl ShouldSample + 'static) -> (SdkTracerProvider, Arc<AtomicU64>) {
    build(SdkTracerProvider::builder().with_sampler(sampler))
}

/// The same with meshtrace's sampler.
pub fn meshtrace_provider(sampler: CustomSampler) -> (SdkTracerProvider, Arc<AtomicU64>) {
    build(SdkTracerProvider::builder().with_sampler(sampler))
}

fn build(builder: TracerProviderBuilder) -> (SdkTracerProvider, Arc<AtomicU64>) {
    let exporter = CountingExporter::default();
    let spans = exporter.spans.clone();
    let provider = builder
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .build();
    (provider, spans)
}

/// `GET /users/42` with the given `traceparent` (if any) and the baggage header.
pub fn request(traceparent: Option<&'static str>) -> Request<Body> {
    let mut builder = Request::get("/users/42").header("baggage", BAGGAGE);
    if let Some(tp) = traceparent {
        builder = builder.header("traceparent", tp);
    }
    builder.body(Body::empty()).expect("request")
}

/// Sends `iters` requests through clones of `app` and drains each body; returns the
/// time spent, requests built beforehand so that only the service is timed.
pub fn run(
    rt: &tokio::runtime::Runtime,
    app: &Router,
    traceparent: Option<&'static str>,
    iters: u64,
) -> Duration {
    let requests: Vec<_> = (0..iters).map(|_| request(traceparent)).collect();
    rt.block_on(async {
        let start = Instant::now();
        for req in requests {
            let response = app.clone().oneshot(req).await.expect("infallible");
            assert!(response.status().is_success());
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                std::hint::black_box(frame.expect("body"));
            }
        }
        start.elapsed()
    })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}
