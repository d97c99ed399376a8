//! Deferred capture under a flood, with the buffer's caps set small: the buffer never holds
//! more than its caps (measured by its high-water marks), a request is never held up by a
//! full buffer, and memory (live heap bytes, counted by a global allocator) returns to its
//! baseline once the flood is over.
//!
//! One test in its own binary: the allocator counts every thread of the process.
#![cfg(all(feature = "reqwest", feature = "axum"))]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use futures_util::StreamExt as _;
use http::StatusCode;
use meshtrace::TracingManager;
use meshtrace::config::BatchConfig;
use meshtrace::export::DeferredStats;
use meshtrace::sampler::{DeferredConfig, SamplingConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::watch;

struct Live;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: delegates every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Live {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Live = Live;

/// Counts exported spans and lets them go (an in-memory exporter would keep them alive).
#[derive(Clone, Debug, Default)]
struct Discard(Arc<AtomicU64>);

impl SpanExporter for Discard {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

const MAX_TRACES: usize = 16;
const MAX_SPANS_PER_TRACE: usize = 4;
const MAX_BYTES: usize = 24 * 1024;
/// Child spans per request, each with a 1 KiB attribute: more than a trace may hold, and 16
/// traces' worth is more than the bytes cap.
const CHILDREN: usize = 6;

#[derive(Clone)]
struct App {
    release: watch::Receiver<bool>,
}

async fn flood(Path(id): Path<u32>) -> StatusCode {
    let payload = "x".repeat(1024);
    for step in 0..CHILDREN {
        let span = tracing::info_span!("step", step, payload = %payload);
        let _entered = span.enter();
    }
    // Let other requests in, so that many traces are buffered at once.
    tokio::task::yield_now().await;
    if id % 2 == 0 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn hold(State(mut app): State<App>) -> &'static str {
    let _ = app.release.wait_for(|released| *released).await;
    "released"
}

async fn send_all(client: &reqwest::Client, base: &str, ids: std::ops::Range<u32>) {
    let done: Vec<()> = futures_util::stream::iter(ids)
        .map(|id| {
            let url = format!("{base}/flood/{id}");
            async move {
                let response = client.get(url).send().await.expect("response");
                let _ = response.bytes().await;
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(!done.is_empty());
}

/// The live heap once the connections the last requests closed are gone on both sides:
/// the runtime runs (and polls its sockets) until the count stops changing.
async fn settled_live_bytes() -> i64 {
    let mut last = LIVE_BYTES.load(Ordering::Relaxed);
    let mut steady = 0;
    for _ in 0..400 {
        for _ in 0..64 {
            tokio::task::yield_now().await;
        }
        let now = LIVE_BYTES.load(Ordering::Relaxed);
        steady = if now == last { steady + 1 } else { 0 };
        if steady == 3 {
            break;
        }
        last = now;
    }
    last
}

fn assert_within_caps(d: &DeferredStats) {
    assert!(d.peak_traces as usize <= MAX_TRACES, "{d:#?}");
    assert!(
        d.peak_spans_per_trace as usize <= MAX_SPANS_PER_TRACE,
        "{d:#?}"
    );
    assert!(d.peak_bytes as usize <= MAX_BYTES, "{d:#?}");
}

#[tokio::test]
async fn a_flood_stays_within_the_caps_delays_nothing_and_leaves_nothing_behind() {
    let exported = Discard::default();
    let (manager, layers) = TracingManager::builder()
        .sampling(
            SamplingConfig::default().base_rate(0.0).deferred(
                DeferredConfig::default()
                    .enabled(true)
                    .max_per_second(1_000_000)
                    .max_traces(MAX_TRACES)
                    .max_spans_per_trace(MAX_SPANS_PER_TRACE)
                    .max_bytes(MAX_BYTES)
                    .slow_threshold(Duration::from_secs(60)),
            ),
        )
        .span_exporter(exported.clone())
        .batch(BatchConfig::default().max_queue_size(1 << 16))
        .log_writer(std::io::sink)
        .build()
        .expect("manager");
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let (release_tx, release) = watch::channel(false);
    let app = Router::new()
        .route("/flood/{id}", get(flood))
        .route("/hold/{id}", get(hold))
        .with_state(App { release })
        .layer(manager.server_layer());
    let base = format!("http://{}", common::serve(app).await);
    // No idle connections: each keep-alive connection holds ~9 KB of buffers on both
    // sides, and how many stay open after a flood varies (0.6 MB of noise in the heap
    // count with a pool).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");

    // Warm-up: connections, pools, the registry's slabs and the buffer's maps reach their
    // working size.
    send_all(&client, &base, 0..500).await;
    manager.force_flush().expect("flush");
    let baseline = settled_live_bytes().await;

    // The flood.
    send_all(&client, &base, 0..2000).await;
    manager.force_flush().expect("flush");
    let after = settled_live_bytes().await;
    let d = manager.stats().deferred;
    assert_within_caps(&d);
    // The caps were reached, or this test shows nothing.
    assert!(d.dropped_traces_full > 0, "{d:#?}");
    assert!(d.dropped_spans_trace_full > 0, "{d:#?}");
    assert!(d.dropped_spans_bytes > 0, "{d:#?}");
    assert!(d.kept_error > 0 && d.discarded > 0, "{d:#?}");
    assert_eq!((d.traces, d.spans, d.bytes), (0, 0, 0), "{d:#?}");
    // Memory is back where it was: nothing of 2000 requests (each with 6 KiB of span data)
    // stayed behind (measured: about +1 KB).
    let grown = after - baseline;
    println!("live heap after the flood: {grown:+} bytes against the baseline; {d:?}");
    assert!(
        grown < 64 * 1024,
        "live heap grew by {grown} bytes over the flood (baseline {baseline})"
    );
    assert!(exported.0.load(Ordering::Relaxed) > 0);

    // A full buffer holds nobody up: MAX_TRACES requests wait in their handlers (their
    // traces fill the buffer), and 100 more complete meanwhile, each refused a place.
    let before = manager.stats().deferred.dropped_traces_full;
    let held: Vec<_> = (0..MAX_TRACES)
        .map(|i| tokio::spawn(client.get(format!("{base}/hold/{i}")).send()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while manager.stats().deferred.traces < MAX_TRACES as u64 {
        assert!(Instant::now() < deadline, "the held requests never arrived");
        tokio::task::yield_now().await;
    }
    let mut slowest = Duration::ZERO;
    for id in 0..100 {
        let started = Instant::now();
        let response = client
            .get(format!("{base}/flood/{id}"))
            .send()
            .await
            .expect("response");
        let _ = response.bytes().await;
        slowest = slowest.max(started.elapsed());
    }
    let d = manager.stats().deferred;
    assert_eq!(
        d.traces, MAX_TRACES as u64,
        "the held traces are still there"
    );
    assert_eq!(d.dropped_traces_full - before, 100, "{d:#?}");
    assert!(
        slowest < Duration::from_secs(2),
        "a request took {slowest:?} with the buffer full"
    );
    release_tx.send(true).expect("release");
    for request in held {
        let response = request.await.expect("task").expect("response");
        assert_eq!(response.status(), StatusCode::OK);
    }
    manager.force_flush().expect("flush");
    let d = manager.stats().deferred;
    assert_within_caps(&d);
    assert_eq!((d.traces, d.spans, d.bytes), (0, 0, 0), "{d:#?}");
}
