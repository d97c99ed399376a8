//! The unsampled path: what it allocates (counted by a global allocator, on this thread
//! only) and what the request still sees.
//!
//! The requests are the benchmark's: `GET /users/42` with an unsampled `traceparent`
//! (`-00`) and `baggage: userId=alice,tenant=acme`. Counts are compared, in the same test,
//! between
//! * the bare Router;
//! * the Router with a minimal propagating layer: it builds the Context the handler must
//!   see (with `context::extract`: the caller's trace with a span id of its own, the
//!   baggage and the correlation id), attaches it around the call and every poll,
//!   stores the id and the Context in the request extensions, echoes the id, and wraps
//!   the response body (axum boxes the body of every layered service);
//! * meshtrace set up as the README recommends (`TracingManager`, `server_layer()`), and
//!   a hand-built `TracingLayer::new().tracer_provider(..)` for contrast.
//!
//! The recommended setup must allocate no more than the minimal propagating layer, so
//! everything it allocates beyond the Router is that Context (opentelemetry 0.33 keeps
//! each Context value and the span in fresh `Arc`s, and `Baggage` is a `HashMap` of
//! owned strings), its request extensions, the echoed id and the body wrapper: the
//! dropped OpenTelemetry span itself allocates nothing beyond its place in the Context.
#![cfg(feature = "axum")]

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use meshtrace::TracingManager;
use meshtrace::context::{self, ContextExt, CorrelationId, DEFAULT_CORRELATION_HEADER};
use meshtrace::extract::TraceContext;
use meshtrace::sampler::SamplingConfig;
use meshtrace::server::TracingLayer;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tower::{Layer, Service, ServiceExt};

const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_in;

fn request() -> Request<Body> {
    Request::get("/users/42")
        .header("traceparent", UNSAMPLED)
        .header("baggage", "userId=alice,tenant=acme")
        .body(Body::empty())
        .expect("request")
}

fn routes() -> Router {
    Router::new().route("/users/{id}", get(|| async { "alice" }))
}

/// Sends one request and drains the body, without an async runtime: every future here
/// is ready at once, and a runtime would add allocations of its own.
fn send(app: &Router, request: Request<Body>) -> String {
    let response = app
        .clone()
        .oneshot(request)
        .now_or_never()
        .expect("ready")
        .expect("infallible");
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(frame) = body.frame().now_or_never().expect("ready") {
        if let Ok(data) = frame.expect("body").into_data() {
            text.extend_from_slice(&data);
        }
    }
    String::from_utf8(text).expect("utf-8")
}

/// Allocations per request, counted over `n` requests built beforehand.
fn allocations_per_request(app: &Router, n: u64) -> f64 {
    for _ in 0..16 {
        send(app, request()); // warm up lazily initialised state
    }
    let requests: Vec<_> = (0..n).map(|_| request()).collect();
    let ((), allocations) = allocations_in(|| {
        for request in requests {
            send(app, request);
        }
    });
    allocations as f64 / n as f64
}

/// The least a propagating layer does to give the handler what meshtrace gives it for an
/// unsampled request: `Context::current()` (and a request extension) holding a span
/// context of its own (the caller's trace id, a new span id), the baggage and the
/// correlation id, which is also echoed; the response body is wrapped.
///
/// Like any configurable layer it holds its configuration (here the correlation header)
/// behind an `Arc`: a zero-sized layer would be unfair, as axum clones the boxed layer
/// of a `Router<()>` for every request.
#[derive(Clone)]
struct MinimalPropagation<S>(S, Arc<HeaderName>);

type Wrapped = http_body_util::combinators::MapErr<Body, fn(axum::Error) -> axum::Error>;

impl<S> Service<Request<Body>> for MinimalPropagation<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Wrapped>;
    type Error = Infallible;
    type Future = MinimalFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let (id, _) = CorrelationId::from_headers(request.headers(), &self.1);
        let parent = context::extract(request.headers()).with_value(id.clone());
        let span = parent.span();
        let remote = span.span_context();
        let own = SpanContext::new(
            remote.trace_id(),
            opentelemetry_sdk::trace::IdGenerator::new_span_id(
                &opentelemetry_sdk::trace::RandomIdGenerator::default(),
            ),
            TraceFlags::default(),
            false,
            remote.trace_state().clone(),
        );
        let cx = parent.with_remote_span_context(own);
        let echo: HeaderValue = id.header_value().clone();
        request.extensions_mut().insert(id);
        request.extensions_mut().insert(cx.clone());
        let future = {
            let _attached = cx.clone().attach();
            self.0.call(request)
        };
        MinimalFuture {
            future,
            cx,
            echo: Some(echo),
            header: self.1.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    struct MinimalFuture<F> {
        #[pin]
        future: F,
        cx: opentelemetry::Context,
        echo: Option<HeaderValue>,
        header: Arc<HeaderName>,
    }
}

impl<F> Future for MinimalFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Wrapped>, Infallible>;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _attached = this.cx.clone().attach();
        let Poll::Ready(result) = this.future.poll(task) else {
            return Poll::Pending;
        };
        let mut response = result?;
        if let Some(echo) = this.echo.take()
            && !response.headers().contains_key(&**this.header)
        {
            response.headers_mut().insert((**this.header).clone(), echo);
        }
        let identity: fn(axum::Error) -> axum::Error = |e| e;
        Poll::Ready(Ok(response.map(|b| b.map_err(identity))))
    }
}

#[derive(Clone)]
struct MinimalPropagationLayer(Arc<HeaderName>);

impl<S> Layer<S> for MinimalPropagationLayer {
    type Service = MinimalPropagation<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MinimalPropagation(inner, self.0.clone())
    }
}

/// The README's setup: the manager's pipeline (its subscriber as this thread's default,
/// logs into a sink), spans into memory.
struct Recommended {
    telemetry: TracingManager,
    exporter: InMemorySpanExporter,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Recommended {
    fn new(sampling: SamplingConfig) -> Self {
        let exporter = InMemorySpanExporter::default();
        let (telemetry, subscriber) = TracingManager::builder()
            .sampling(sampling)
            .span_exporter(exporter.clone())
            .log_writer(std::io::sink)
            .build()
            .expect("manager");
        Recommended {
            telemetry,
            exporter,
            _guard: tracing::subscriber::set_default(subscriber.into_subscriber()),
        }
    }

    fn spans(&self) -> Vec<SpanData> {
        self.telemetry.force_flush().expect("flush");
        self.exporter.get_finished_spans().expect("spans")
    }
}

#[test]
fn the_unsampled_path_allocates_nothing_beyond_the_router_and_the_context() {
    let setup = Recommended::new(SamplingConfig::default());
    const N: u64 = 200;

    let bare = allocations_per_request(&routes(), N);
    let minimal = allocations_per_request(
        &routes().layer(MinimalPropagationLayer(Arc::new(
            DEFAULT_CORRELATION_HEADER,
        ))),
        N,
    );
    let recommended = allocations_per_request(&routes().layer(setup.telemetry.server_layer()), N);
    let hand_built = allocations_per_request(
        &routes().layer(TracingLayer::new().tracer_provider(setup.telemetry.tracer_provider())),
        N,
    );
    println!(
        "allocations per unsampled request: bare Router {bare}, minimal propagating layer \
         {minimal}, TracingManager::server_layer() {recommended}, hand-built TracingLayer {hand_built}"
    );
    assert!(
        recommended <= minimal,
        "the recommended setup allocates {recommended} per request, the minimal propagating layer {minimal}"
    );
    assert!(setup.spans().is_empty());
}

#[tokio::test]
async fn a_dropped_request_keeps_trace_baggage_and_correlation() {
    let setup = Recommended::new(SamplingConfig::default());
    let app = Router::new()
        .route(
            "/",
            get(|trace: TraceContext| async move {
                let cx = opentelemetry::Context::current();
                let span = cx.span();
                let sc = span.span_context().clone();
                // A child span continues the dropped trace and is dropped too.
                tracing::info_span!("child").in_scope(|| ());
                let mut outgoing = http::HeaderMap::new();
                context::inject(&cx, &mut outgoing);
                format!(
                    "{} {} {} {} {:?} {:?} {}",
                    sc.trace_id(),
                    sc.span_id() == trace.span_id,
                    sc.is_sampled(),
                    sc.is_remote(),
                    cx.baggage().get("userId").map(|v| v.to_string()),
                    cx.correlation_id().map(|c| c.to_string()),
                    outgoing["traceparent"].to_str().unwrap_or_default(),
                )
            }),
        )
        .layer(setup.telemetry.server_layer());
    let response = common::send(
        app,
        common::get(
            "/",
            &[
                ("traceparent", UNSAMPLED),
                ("baggage", "userId=alice"),
                ("x-correlation-id", "c-7"),
            ],
        ),
    )
    .await;
    assert_eq!(response.headers()["x-correlation-id"], "c-7");
    let body = common::text(response).await;
    let parts: Vec<&str> = body.split(' ').collect();
    assert_eq!(
        parts[..6],
        [
            TRACE_ID,
            "true",
            "false",
            "false",
            "Some(\"alice\")",
            "Some(\"c-7\")"
        ]
    );
    // The next hop sees our (new) span id as its parent, not our caller's, unsampled.
    let outgoing = parts[6];
    assert!(
        outgoing.starts_with(&format!("00-{TRACE_ID}-")),
        "{outgoing}"
    );
    assert!(!outgoing.contains(PARENT_ID), "{outgoing}");
    assert!(outgoing.ends_with("-00"), "{outgoing}");
    assert!(setup.spans().is_empty());
}

/// Whether the consistent-probability threshold for rate 0.5 keeps this trace id: its
/// low 56 bits are at least 2^55.
fn kept_at_half(span: &SpanData) -> bool {
    let id = u128::from_be_bytes(span.span_context.trace_id().to_bytes());
    (id & ((1 << 56) - 1)) >= 1 << 55
}

#[test]
fn roots_are_decided_once_on_the_trace_id_the_span_gets() {
    let setup = Recommended::new(SamplingConfig::default().base_rate(0.5));
    let app = routes().layer(setup.telemetry.server_layer());
    const N: usize = 400;
    for _ in 0..N {
        let request = Request::get("/users/1")
            .body(Body::empty())
            .expect("request");
        assert_eq!(send(&app, request), "alice");
    }
    let spans = setup.spans();
    // Every kept span carries a trace id the threshold keeps; a second, independent
    // decision on another id would keep about N/4 spans, many failing this.
    assert!(spans.iter().all(kept_at_half), "a span the threshold drops");
    // Binomial(400, 0.5): mean 200, sd 10; trace ids are random, so allow 6 sd.
    assert!(
        (140..=260).contains(&spans.len()),
        "{} of {N} kept",
        spans.len()
    );
    assert!(spans.iter().all(|s| !s.parent_span_is_remote));
}

#[test]
fn a_dropped_root_still_has_a_trace() {
    let setup = Recommended::new(SamplingConfig::default().base_rate(0.0));
    let app = Router::new()
        .route(
            "/",
            get(|trace: TraceContext| async move {
                let cx = opentelemetry::Context::current();
                let span = cx.span();
                let sc = span.span_context();
                format!(
                    "{} {} {} {}",
                    sc.is_valid(),
                    sc.is_sampled(),
                    sc.trace_id() == trace.trace_id,
                    cx.is_trace_random()
                )
            }),
        )
        .layer(setup.telemetry.server_layer());
    let body = send(
        &app,
        Request::get("/").body(Body::empty()).expect("request"),
    );
    assert_eq!(body, "true false true true");
    assert!(setup.spans().is_empty());
}

/// HTTP metrics cost one allocation per request, sampled or not, and no more: the
/// exchange's metric is boxed (moved with the response future and body, an inline one
/// was copied on every move, metrics on or off), the attribute set lives on the stack
/// (`&'static str` values) and the SDK finds the data point of a set it has seen without
/// allocating.
#[test]
fn metrics_allocate_one_box_per_request() {
    let metrics = opentelemetry_sdk::metrics::InMemoryMetricExporter::default();
    let (telemetry, layers) = TracingManager::builder()
        .span_exporter(InMemorySpanExporter::default())
        .metric_exporter(metrics)
        .log_writer(std::io::sink)
        .build()
        .expect("manager");
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    assert!(telemetry.meter_provider().is_some());
    const N: u64 = 200;
    let off = allocations_per_request(&routes().layer(telemetry.server_layer().metrics(false)), N);
    let on = allocations_per_request(&routes().layer(telemetry.server_layer()), N);
    println!("allocations per unsampled request: metrics off {off}, metrics on {on}");
    assert_eq!(on, off + 1.0);
}
