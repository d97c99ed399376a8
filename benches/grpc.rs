//! A unary gRPC call through `TracingLayer` against the bare tonic service, in one run.
//!
//! Every case calls the generated `EchoServer` of `tests/proto` in-process (`oneshot` on a
//! clone, no sockets): `POST /meshtrace.test.v1.Echo/Unary` with a prost-encoded request,
//! the response body (message and trailers) drained inside the timed region; requests are
//! built before it. The traced cases use what the README recommends, `TracingManager` and
//! `server_layer()`, exporting through the SDK's `BatchSpanProcessor` into an exporter that
//! counts and discards (the counts are printed after each case, `spans: ...`):
//!
//! - `bare`: the tonic service alone;
//! - `meshtrace/sampled`, `meshtrace/unsampled`: the caller's `traceparent` sampled or not;
//! - `meshtrace/root_100pct`: no `traceparent`, every root kept.
//!
//! `scripts/bench.sh grpc` runs it and prints the table with the ratio to `bare`. For
//! instruction counts (stable on a shared machine), `grpc count <case> <n>` serves `n`
//! requests of one case without criterion, to run under callgrind twice (see
//! `scripts/callgrind.sh` for the method): `(Ir(n2) - Ir(n1)) / (n2 - n1)` per request.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{BufMut as _, Bytes, BytesMut};
use common::{CountingExporter, SAMPLED, UNSAMPLED, runtime};
use criterion::{Criterion, criterion_group};
use http::Request;
use http_body_util::{BodyExt as _, Full};
use meshtrace::TracingManager;
use meshtrace::sampler::SamplingConfig;
use meshtrace_test_proto::echo::echo_server::{Echo, EchoServer};
use meshtrace_test_proto::echo::{EchoReply, EchoRequest};
use prost::Message as _;
use tower::{Service, ServiceExt as _};

/// Answers `Unary` with the message; `Stream` is not called here.
struct Bench;

#[tonic::async_trait]
impl Echo for Bench {
    async fn unary(
        &self,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoReply>, tonic::Status> {
        Ok(tonic::Response::new(EchoReply {
            message: request.into_inner().message,
            index: 0,
        }))
    }

    type StreamStream = futures_util::stream::Empty<Result<EchoReply, tonic::Status>>;

    async fn stream(
        &self,
        _: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not benched"))
    }
}

/// The gRPC frame of the request message: uncompressed flag, length, message.
fn frame() -> Bytes {
    let message = EchoRequest {
        message: "alice".to_owned(),
        ..EchoRequest::default()
    }
    .encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).expect("small"));
    frame.put_slice(&message);
    frame.freeze()
}

fn request(frame: &Bytes, traceparent: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::post("http://echo.internal/meshtrace.test.v1.Echo/Unary")
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(traceparent) = traceparent {
        builder = builder.header("traceparent", traceparent);
    }
    builder.body(Full::new(frame.clone())).expect("request")
}

/// Calls `service` with each request and drains each response, checking its status.
async fn drive<S, B>(service: &S, requests: Vec<Request<Full<Bytes>>>)
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    for request in requests {
        let response = service.clone().oneshot(request).await.expect("response");
        let collected = response.into_body().collect().await.expect("body");
        let ok = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .is_some_and(|s| s == "0");
        assert!(ok, "the call failed");
    }
}

/// The traced cases: name and the caller's `traceparent`.
const TRACED: [(&str, Option<&str>); 3] = [
    ("meshtrace/sampled", Some(SAMPLED)),
    ("meshtrace/unsampled", Some(UNSAMPLED)),
    ("meshtrace/root_100pct", None),
];

/// The manager as the README sets it up (logs into a sink), its subscriber, the counter of
/// exported spans.
fn manager() -> (TracingManager, tracing::Dispatch, std::sync::Arc<AtomicU64>) {
    let exporter = CountingExporter::default();
    let spans = exporter.spans.clone();
    let (telemetry, subscriber) = TracingManager::builder()
        .sampling(SamplingConfig::default().base_rate(1.0))
        .span_exporter(exporter)
        .log_writer(std::io::sink)
        .build()
        .expect("manager");
    let dispatch = tracing::Dispatch::new(subscriber.into_subscriber());
    (telemetry, dispatch, spans)
}

/// `grpc count <case> <n>`: warms up, then serves `n` requests of the case.
fn count(case: &str, n: u64) {
    let rt = runtime();
    let frame = frame();
    let batch = |n: u64, traceparent| {
        (0..n)
            .map(|_| request(&frame, traceparent))
            .collect::<Vec<_>>()
    };
    if case == "bare" {
        let bare = EchoServer::new(Bench);
        rt.block_on(drive(&bare, batch(200, Some(SAMPLED))));
        rt.block_on(drive(&bare, batch(n, Some(SAMPLED))));
        return;
    }
    let Some((_, traceparent)) = TRACED.iter().find(|(name, _)| *name == case) else {
        eprintln!("unknown case: bare, {}", TRACED.map(|(n, _)| n).join(", "));
        std::process::exit(2);
    };
    let (telemetry, dispatch, _) = manager();
    let traced = tower::Layer::layer(&telemetry.server_layer(), EchoServer::new(Bench));
    tracing::dispatcher::with_default(&dispatch, || {
        rt.block_on(drive(&traced, batch(200, *traceparent)));
        rt.block_on(drive(&traced, batch(n, *traceparent)));
    });
    let _ = rt.block_on(telemetry.shutdown());
}

fn grpc(c: &mut Criterion) {
    let rt = runtime();
    let frame = frame();
    let mut group = c.benchmark_group("grpc");
    let bare = EchoServer::new(Bench);
    group.bench_function("bare", |b| {
        b.iter_custom(|iters| {
            let batch: Vec<_> = (0..iters).map(|_| request(&frame, Some(SAMPLED))).collect();
            rt.block_on(async {
                let start = Instant::now();
                drive(&bare, batch).await;
                start.elapsed()
            })
        })
    });
    for (name, traceparent) in TRACED {
        let (telemetry, dispatch, spans) = manager();
        let traced = tower::Layer::layer(&telemetry.server_layer(), EchoServer::new(Bench));
        let requests = AtomicU64::new(0);
        tracing::dispatcher::with_default(&dispatch, || {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    requests.fetch_add(iters, Ordering::Relaxed);
                    let batch: Vec<_> = (0..iters).map(|_| request(&frame, traceparent)).collect();
                    rt.block_on(async {
                        let start = Instant::now();
                        drive(&traced, batch).await;
                        start.elapsed()
                    })
                })
            });
        });
        let _ = telemetry.tracer_provider().force_flush();
        println!(
            "spans: grpc/{name}: {} requests, {} spans exported",
            requests.load(Ordering::Relaxed),
            spans.load(Ordering::Relaxed)
        );
        let _ = rt.block_on(telemetry.shutdown());
    }
    group.finish();
}

criterion_group!(benches, grpc);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, case, n] = args.as_slice()
        && mode == "count"
    {
        count(case, n.parse().expect("n must be a number"));
        return;
    }
    // What `criterion_main!` expands to.
    benches();
    Criterion::default().configure_from_args().final_summary();
}
