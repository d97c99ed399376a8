//! Deferred capture through the manager's own pipeline: real axum servers on 127.0.0.1,
//! real reqwest clients, the real SDK, spans read from an in-memory exporter after a flush.
//!
//! * 1000 requests at base rate 0 with deferral on, 10% answering 500, 5% panicking, 5%
//!   cancelled by the client: every failing one is exported with its whole local subtree
//!   (`#[traced]` and `tracing` spans, the client span of its outgoing call, a span still
//!   open when the request was cancelled), nothing of a successful fast one is, and a
//!   request over its route's slow threshold is exported as `slow`;
//! * two services: the downstream one keeps an error trace and says so with
//!   `traceresponse`; the upstream one, which deferred, exports its part as `downstream`;
//! * outgoing calls of a deferred request say "not sampled", or "sampled" when configured;
//! * a trace whose root never ends is evicted after the timeout, lazily (by a new root in
//!   its shard of the buffer, or a flush), and its late spans are dropped, never exported;
//!   a span still open when its trace is discarded is dropped and counted;
//! * `fraction` and `max_per_second` limit what is deferred;
//! * an error of the inner service (no response at all) is exported as `error`.
#![cfg(all(feature = "reqwest", feature = "axum", feature = "macros"))]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Path, State};
use axum::routing::get;
use common::{DropSignal, attr_str};
use futures_util::StreamExt as _;
use http::{HeaderMap, StatusCode};
use meshtrace::config::BatchConfig;
use meshtrace::export::DeferredStats;
use meshtrace::sampler::{DeferredConfig, SamplingConfig};
use meshtrace::{TracingManager, traced};
use opentelemetry::trace::{SpanKind, Status, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use reqwest_middleware::ClientWithMiddleware;
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

const REQUESTS: u32 = 1000;

/// What request `id` does: 10% answer 500, 5% panic, 5% hang until the client gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fail,
    Panic,
    Cancel,
    Ok,
}

fn kind(id: u32) -> Kind {
    match id % 20 {
        0 | 1 => Kind::Fail,
        2 => Kind::Panic,
        3 => Kind::Cancel,
        _ => Kind::Ok,
    }
}

/// The test's panics are expected: keep their messages out of the output.
fn quiet_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let expected = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with("expected panic"));
            if !expected {
                default(info);
            }
        }));
    });
}

struct Service {
    manager: TracingManager,
    exporter: InMemorySpanExporter,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Service {
    /// A manager at base rate 0 with `deferred`, its subscriber this thread's default.
    fn new(deferred: DeferredConfig) -> Self {
        let exporter = InMemorySpanExporter::default();
        let (manager, layers) = TracingManager::builder()
            .service_name("deferred-test")
            .sampling(SamplingConfig::default().base_rate(0.0).deferred(deferred))
            .span_exporter(exporter.clone())
            .batch(BatchConfig::default().max_queue_size(1 << 16))
            .log_writer(std::io::sink)
            .build()
            .expect("manager");
        let guard = tracing::subscriber::set_default(layers.into_subscriber());
        Service {
            manager,
            exporter,
            _guard: guard,
        }
    }

    fn spans(&self) -> Vec<SpanData> {
        self.manager.force_flush().expect("flush");
        self.exporter.get_finished_spans().expect("spans")
    }

    fn client(&self) -> ClientWithMiddleware {
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(self.manager.reqwest_middleware())
            .build()
    }
}

#[derive(Clone)]
struct App {
    client: ClientWithMiddleware,
    backend: String,
    dropped: mpsc::UnboundedSender<()>,
}

/// The outgoing call every request makes, in a `#[traced]` span.
#[traced(record(%url))]
async fn fetch(
    client: &ClientWithMiddleware,
    url: &str,
) -> Result<String, reqwest_middleware::Error> {
    Ok(client.get(url).send().await?.text().await?)
}

async fn work(State(app): State<App>, Path(id): Path<u32>) -> Result<String, StatusCode> {
    // Signals the handler's drop however early the client gives up, so that the test
    // waiting for it fails on what it then checks instead of hanging.
    let _dropped = (kind(id) == Kind::Cancel).then(|| DropSignal(app.dropped.clone()));
    let fetched = fetch(&app.client, &app.backend).await;
    async { tracing::info!(ok = fetched.is_ok(), "prepared") }
        .instrument(tracing::info_span!("prepare"))
        .await;
    match kind(id) {
        Kind::Fail => Err(StatusCode::INTERNAL_SERVER_ERROR),
        Kind::Panic => panic!("expected panic in request {id}"),
        Kind::Cancel => {
            // Open when the client gives up: it ends after the request's root span.
            std::future::pending::<()>()
                .instrument(tracing::info_span!("waiting"))
                .await;
            Ok("never".into())
        }
        Kind::Ok => Ok("done".into()),
    }
}

async fn slow(State(app): State<App>) -> &'static str {
    let _ = fetch(&app.client, &app.backend).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    "slow but fine"
}

/// An untraced backend the handlers call.
async fn backend() -> String {
    let app = Router::new().route("/backend", get(|| async { "ok" }));
    format!("http://{}/backend", common::serve(app).await)
}

fn by_trace(spans: &[SpanData]) -> HashMap<TraceId, Vec<SpanData>> {
    let mut traces: HashMap<TraceId, Vec<SpanData>> = HashMap::new();
    for span in spans {
        traces
            .entry(span.span_context.trace_id())
            .or_default()
            .push(span.clone());
    }
    traces
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name:?} span in {spans:#?}");
    found[0]
}

/// What every span exported by deferred capture carries: the sampled flag, the reason, no
/// `th`, none of meshtrace's private marks.
fn assert_kept_as(span: &SpanData, reason: &str) {
    assert!(span.span_context.is_sampled(), "{span:#?}");
    assert_eq!(
        attr_str(span, "sampling.reason").as_deref(),
        Some(reason),
        "{span:#?}"
    );
    let ot = span.span_context.trace_state().get("ot").unwrap_or("");
    assert!(!ot.contains("th:"), "no th: {ot:?}");
    assert!(
        span.attributes
            .iter()
            .all(|kv| !kv.key.as_str().starts_with("meshtrace.internal")),
        "{span:#?}"
    );
}

#[tokio::test]
async fn failing_requests_are_exported_whole_and_fast_successes_are_not() {
    quiet_expected_panics();
    let service = Service::new(
        DeferredConfig::default()
            .enabled(true)
            .max_per_second(1_000_000)
            .slow_threshold(Duration::from_secs(5))
            .slow_route("/slow", Duration::from_millis(100)),
    );
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let app = App {
        client: service.client(),
        backend: backend().await,
        dropped: dropped_tx,
    };
    let router = Router::new()
        .route("/work/{id}", get(work))
        .route("/slow", get(slow))
        .with_state(app)
        .layer(service.manager.server_layer());
    let addr = common::serve(router).await;

    // The callers are outside: no traceparent, so every request is a root at base rate 0.
    let caller = reqwest::Client::new();
    let statuses: Vec<(u32, Option<StatusCode>)> = futures_util::stream::iter(0..REQUESTS)
        .map(|id| {
            let caller = caller.clone();
            async move {
                let mut request = caller.get(format!("http://{addr}/work/{id}"));
                if kind(id) == Kind::Cancel {
                    // Long enough for the handler to reach its `waiting` span on a loaded
                    // 2-core machine (it takes a few ms), short enough to keep the test fast.
                    request = request.timeout(Duration::from_millis(1000));
                }
                let status = match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.bytes().await;
                        Some(status)
                    }
                    Err(_) => None,
                };
                (id, status)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let slow_status = caller
        .get(format!("http://{addr}/slow"))
        .send()
        .await
        .expect("slow response")
        .status();
    assert_eq!(slow_status, StatusCode::OK);
    for (id, status) in &statuses {
        let expected = match kind(*id) {
            Kind::Fail | Kind::Panic => Some(StatusCode::INTERNAL_SERVER_ERROR),
            Kind::Cancel => None,
            Kind::Ok => Some(StatusCode::OK),
        };
        assert_eq!(*status, expected, "request {id}");
    }
    // The server drops every cancelled handler (that is when their spans end).
    for _ in 0..(REQUESTS / 20) {
        tokio::time::timeout(Duration::from_secs(30), dropped.recv())
            .await
            .expect("the server drops a cancelled handler within 30 s")
            .expect("a cancelled handler is dropped");
    }

    let spans = service.spans();
    assert!(
        spans.iter().all(|s| s.span_context.is_sampled()),
        "only sampled spans reach the exporter"
    );
    let traces = by_trace(&spans);
    let mut exported_ids = BTreeSet::new();
    let mut slow_traces = 0;
    for (trace_id, spans) in &traces {
        let roots: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Server)
            .collect();
        assert_eq!(roots.len(), 1, "one server span in trace {trace_id}");
        let root = roots[0];
        let fetch = named(spans, "fetch");
        let client: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Client)
            .collect();
        assert_eq!(client.len(), 1, "{spans:#?}");
        // The local subtree, whole and linked.
        assert_eq!(fetch.parent_span_id, root.span_context.span_id());
        assert_eq!(client[0].parent_span_id, fetch.span_context.span_id());
        if root.name == "GET /slow" {
            slow_traces += 1;
            assert_eq!(spans.len(), 3, "{spans:#?}");
            for span in spans {
                assert_kept_as(span, "slow");
            }
            assert_eq!(root.status, Status::Unset);
            continue;
        }
        let prepare = named(spans, "prepare");
        assert_eq!(prepare.parent_span_id, root.span_context.span_id());
        assert_eq!(root.name, "GET /work/{id}");
        let id: u32 = attr_str(root, "url.path")
            .and_then(|p| p.strip_prefix("/work/").map(str::to_owned))
            .and_then(|id| id.parse().ok())
            .expect("url.path");
        assert!(exported_ids.insert(id), "request {id} exported once");
        for span in spans {
            assert_kept_as(span, "error");
        }
        assert!(matches!(root.status, Status::Error { .. }), "{root:#?}");
        let error_type = attr_str(root, "error.type");
        match kind(id) {
            Kind::Fail => {
                assert_eq!(spans.len(), 4, "{spans:#?}");
                assert_eq!(error_type.as_deref(), Some("500"));
            }
            Kind::Panic => {
                assert_eq!(spans.len(), 4, "{spans:#?}");
                assert_eq!(error_type.as_deref(), Some("panic"));
                // The exception event: type and message, nothing else.
                let event = root
                    .events
                    .iter()
                    .find(|e| e.name == "exception")
                    .expect("exception event");
                let mut keys: Vec<&str> =
                    event.attributes.iter().map(|kv| kv.key.as_str()).collect();
                keys.sort_unstable();
                assert_eq!(keys, ["exception.message", "exception.type"]);
            }
            Kind::Cancel => {
                assert_eq!(spans.len(), 5, "{spans:#?}");
                assert_eq!(error_type.as_deref(), Some("cancelled"));
                // Still open when the root ended; it followed the decision.
                let waiting = named(spans, "waiting");
                assert_eq!(waiting.parent_span_id, root.span_context.span_id());
                assert!(waiting.end_time >= root.end_time);
            }
            Kind::Ok => panic!("successful fast request {id} was exported: {spans:#?}"),
        }
    }
    let failing: BTreeSet<u32> = (0..REQUESTS).filter(|id| kind(*id) != Kind::Ok).collect();
    assert_eq!(
        exported_ids, failing,
        "exactly the failing requests are exported"
    );
    assert_eq!(slow_traces, 1);

    let stats = service.manager.stats();
    let d = &stats.deferred;
    assert_eq!(d.kept_error, 200, "{d:#?}");
    assert_eq!(d.kept_slow, 1, "{d:#?}");
    assert_eq!(d.kept_downstream, 0, "{d:#?}");
    assert_eq!(d.discarded, 800, "{d:#?}");
    assert_eq!(d.buffered_traces, 1001, "{d:#?}");
    assert_eq!(
        d.dropped_traces_full + d.dropped_spans_trace_full + d.dropped_spans_bytes,
        0
    );
    assert_eq!(
        (d.traces, d.spans, d.bytes),
        (0, 0, 0),
        "everything freed: {d:#?}"
    );
    assert_eq!(d.exported_spans, spans.len() as u64);
    assert_eq!(stats.exported, spans.len() as u64);
    let sampler = service.manager.sampler().stats();
    assert_eq!(sampler.sampled, 0);
    assert!(sampler.deferred > u64::from(REQUESTS), "{sampler:#?}");
}

/// The downstream service, on a thread and runtime of its own with its own manager (so its
/// `tracing` spans go to its own provider): `/charge` answers 500, `/ok` 200; both record
/// the `traceparent` they received.
struct Downstream {
    addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<HeaderMap>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Ends with what the service exported (read before its manager shuts down, which
    /// clears the in-memory exporter).
    thread: Option<std::thread::JoinHandle<Vec<SpanData>>>,
}

impl Downstream {
    fn start(deferred: DeferredConfig) -> Self {
        let received: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = {
            let exporter = InMemorySpanExporter::default();
            let received = Arc::clone(&received);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let (manager, layers) = TracingManager::builder()
                    .service_name("payments")
                    .sampling(SamplingConfig::default().base_rate(0.0).deferred(deferred))
                    .span_exporter(exporter.clone())
                    .log_writer(std::io::sink)
                    .build()
                    .expect("manager");
                let _guard = tracing::subscriber::set_default(layers.into_subscriber());
                runtime.block_on(async move {
                    let record = move |headers: HeaderMap| {
                        received.lock().expect("received").push(headers);
                    };
                    let (r1, r2) = (record.clone(), record);
                    let app = Router::new()
                        .route(
                            "/charge",
                            get(move |headers: HeaderMap| async move {
                                r1(headers);
                                async { tracing::warn!("card declined") }
                                    .instrument(tracing::info_span!("authorize"))
                                    .await;
                                StatusCode::INTERNAL_SERVER_ERROR
                            }),
                        )
                        .route(
                            "/ok",
                            get(move |headers: HeaderMap| async move {
                                r2(headers);
                                "ok"
                            }),
                        )
                        .layer(manager.server_layer());
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    addr_tx
                        .send(listener.local_addr().expect("addr"))
                        .expect("send");
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                        .expect("serve");
                    manager.force_flush().expect("flush");
                    exporter.get_finished_spans().expect("spans")
                })
            })
        };
        Downstream {
            addr: addr_rx.recv().expect("downstream address"),
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the service and returns what it exported.
    fn finish(mut self) -> Vec<SpanData> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread
            .take()
            .map(|thread| thread.join().expect("downstream thread"))
            .unwrap_or_default()
    }

    fn traceparents(&self) -> Vec<String> {
        self.received
            .lock()
            .expect("received")
            .iter()
            .map(|h| {
                h.get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The sampled bit of a `traceparent` value's flags.
fn sampled_flag(traceparent: &str) -> bool {
    let flags = traceparent.rsplit('-').next().unwrap_or("");
    u8::from_str_radix(flags, 16).expect("flags") & 1 == 1
}

fn on() -> DeferredConfig {
    DeferredConfig::default()
        .enabled(true)
        .max_per_second(1_000_000)
        .slow_threshold(Duration::from_secs(5))
}

/// The upstream service's `/checkout` calls `downstream{path}` and answers 200 whatever it
/// gets (it has a fallback); returns the upstream service and the response's
/// `traceresponse`, if any, as the downstream service sent it to upstream's client.
async fn upstream_call(
    upstream: &Service,
    downstream: std::net::SocketAddr,
    path: &str,
) -> Option<String> {
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let app = {
        let client = upstream.client();
        let url = format!("http://{downstream}{path}");
        let seen = Arc::clone(&seen);
        Router::new()
            .route(
                "/checkout",
                get(move || async move {
                    let response = checkout(&client, &url).await.expect("downstream answers");
                    *seen.lock().expect("seen") = response;
                    "order placed (payment retried later)"
                }),
            )
            .layer(upstream.manager.server_layer())
    };
    let addr = common::serve(app).await;
    let response = reqwest::get(format!("http://{addr}/checkout"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.text().await;
    seen.lock().expect("seen").clone()
}

#[traced]
async fn checkout(
    client: &ClientWithMiddleware,
    url: &str,
) -> Result<Option<String>, reqwest_middleware::Error> {
    let response = client.get(url).send().await?;
    let answer = response
        .headers()
        .get("traceresponse")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = response.text().await?;
    Ok(answer)
}

#[tokio::test]
async fn a_downstream_error_trace_makes_the_upstream_part_exported_as_downstream() {
    let downstream = Downstream::start(on());
    let upstream = Service::new(on());
    let answer = upstream_call(&upstream, downstream.addr, "/charge").await;
    let traceparents = downstream.traceparents();
    let up = upstream.spans();
    let down = downstream.finish();

    // Upstream deferred its request and said so: not sampled.
    assert_eq!(traceparents.len(), 1);
    assert!(!sampled_flag(&traceparents[0]), "{traceparents:?}");

    // Downstream kept its error trace: server span and its child, as `error`.
    assert_eq!(down.len(), 2, "{down:#?}");
    let down_server = down
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("downstream server span");
    for span in &down {
        assert_kept_as(span, "error");
    }
    assert_eq!(attr_str(down_server, "error.type").as_deref(), Some("500"));

    // It answered with traceresponse for that span.
    let answer = answer.expect("traceresponse");
    assert_eq!(
        answer,
        format!(
            "00-{}-{}-01",
            down_server.span_context.trace_id(),
            down_server.span_context.span_id()
        )
    );

    // Upstream exported its part, whole, as `downstream`, and the two parts join up.
    assert_eq!(up.len(), 3, "server, checkout, client: {up:#?}");
    for span in &up {
        assert_kept_as(span, "downstream");
        assert_eq!(
            span.span_context.trace_id(),
            down_server.span_context.trace_id()
        );
    }
    let up_server = up
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("server");
    let up_client = up
        .iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .expect("client");
    assert_eq!(up_server.status, Status::Unset, "upstream itself succeeded");
    assert_eq!(down_server.parent_span_id, up_client.span_context.span_id());
    let checkout = named(&up, "checkout");
    assert_eq!(checkout.parent_span_id, up_server.span_context.span_id());
    assert_eq!(up_client.parent_span_id, checkout.span_context.span_id());
    assert_eq!(upstream.manager.stats().deferred.kept_downstream, 1);
}

#[tokio::test]
async fn a_downstream_that_keeps_nothing_says_nothing_and_nothing_is_exported() {
    let downstream = Downstream::start(on());
    let upstream = Service::new(on());
    let answer = upstream_call(&upstream, downstream.addr, "/ok").await;
    let up = upstream.spans();
    let down = downstream.finish();
    assert_eq!(answer, None);
    assert!(up.is_empty(), "{up:#?}");
    assert!(down.is_empty(), "{down:#?}");
    let stats = upstream.manager.stats().deferred;
    assert_eq!(
        (stats.buffered_traces, stats.discarded),
        (1, 1),
        "{stats:#?}"
    );
}

#[tokio::test]
async fn deferred_calls_propagate_sampled_only_when_configured() {
    for propagate in [false, true] {
        // The downstream service does not defer: what it records follows the flag.
        let downstream = Downstream::start(DeferredConfig::default());
        let upstream = Service::new(on().propagate_sampled(propagate));
        let _ = upstream_call(&upstream, downstream.addr, "/ok").await;
        let traceparents = downstream.traceparents();
        let down = downstream.finish();
        assert_eq!(traceparents.len(), 1);
        assert_eq!(
            sampled_flag(&traceparents[0]),
            propagate,
            "{propagate}: {traceparents:?}"
        );
        // Sampled by its caller's word, the downstream service exports its part.
        assert_eq!(down.len(), usize::from(propagate), "{propagate}: {down:#?}");
        // Upstream's own request succeeded fast: nothing of it is exported either way.
        assert!(upstream.spans().is_empty(), "{propagate}");
    }
}

#[tokio::test]
async fn a_reload_turns_deferral_on_and_off_at_runtime() {
    let service = Service::new(DeferredConfig::default());
    let router = Router::new()
        .route(
            "/fail",
            get(|| async {
                async {}.instrument(tracing::info_span!("step")).await;
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .layer(service.manager.server_layer());
    let addr = common::serve(router).await;
    let fail = || async {
        let response = reqwest::get(format!("http://{addr}/fail"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    };
    fail().await;
    assert!(service.spans().is_empty(), "deferral is off");
    let handle = service.manager.sampler();
    handle
        .reload(SamplingConfig::default().base_rate(0.0).deferred(on()))
        .expect("reload");
    fail().await;
    let spans = service.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for span in &spans {
        assert_kept_as(span, "error");
    }
    handle
        .reload(SamplingConfig::default().base_rate(0.0))
        .expect("reload");
    fail().await;
    assert_eq!(service.spans().len(), 2, "off again: nothing more");
}

/// A `traceparent` of an unsampled caller with the given trace id: the request is a
/// service entry that the head sampler drops, so it is deferred.
fn unsampled_parent(trace_id: u128) -> String {
    format!("00-{trace_id:032x}-00f067aa0ba902b7-00")
}

/// Waits, yielding to the server, until `done` holds for the deferred stats.
async fn until(service: &Service, what: &str, done: impl Fn(&DeferredStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&service.manager.stats().deferred) {
        assert!(
            Instant::now() < deadline,
            "{what}: {:#?}",
            service.manager.stats()
        );
        tokio::task::yield_now().await;
    }
}

/// Ends a buffered span, then waits in an open one until released, then answers 500: kept
/// as `error` if its trace is still buffered when the root ends.
async fn held(State(mut release): State<watch::Receiver<bool>>) -> StatusCode {
    async {}.instrument(tracing::info_span!("before")).await;
    let _ = release
        .wait_for(|released| *released)
        .instrument(tracing::info_span!("waiting"))
        .await;
    StatusCode::INTERNAL_SERVER_ERROR
}

#[tokio::test]
async fn a_trace_whose_root_never_ends_is_evicted_lazily_after_the_timeout() {
    let service = Service::new(on().timeout(Duration::from_millis(50)));
    let (release_tx, release) = watch::channel(false);
    let router = Router::new()
        .route("/hold", get(held))
        .route("/quick", get(|| async { "quick" }))
        .with_state(release)
        .layer(service.manager.server_layer());
    let addr = common::serve(router).await;
    let call = |path: &'static str, trace_id: u128| {
        reqwest::Client::new()
            .get(format!("http://{addr}{path}"))
            .header("traceparent", unsampled_parent(trace_id))
            .send()
    };
    // The buffer's shard is chosen by the trace id's low bits (at most 64 shards): A and C
    // share one, B is in another.
    let a = 0x1111_1111_1111_1111_0000_0000_0000_0001_u128;
    let b = 0x2222_2222_2222_2222_0000_0000_0000_0002_u128;
    let c = 0x3333_3333_3333_3333_0000_0000_0000_0001_u128;
    let held_a = tokio::spawn(call("/hold", a));
    let held_b = tokio::spawn(call("/hold", b));
    until(&service, "both held requests buffered a span", |d| {
        d.spans == 2
    })
    .await;
    assert_eq!(service.manager.stats().deferred.traces, 2);

    // The buffer has no clock hook (it reads `Instant`): wait past the 50 ms timeout.
    tokio::time::sleep(Duration::from_millis(75)).await;
    let d = service.manager.stats().deferred;
    assert_eq!(
        (d.traces, d.evicted_traces),
        (2, 0),
        "eviction is lazy, time alone evicts nothing: {d:#?}"
    );

    // A new local root in A's shard evicts A, not B.
    let response = call("/quick", c).await.expect("quick");
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.text().await;
    until(&service, "C decided", |d| d.discarded == 1).await;
    let d = service.manager.stats().deferred;
    assert_eq!((d.evicted_traces, d.evicted_spans), (1, 1), "{d:#?}");
    assert_eq!((d.traces, d.spans), (1, 1), "B is still buffered: {d:#?}");

    // A flush sweeps every shard: B goes too.
    service.manager.force_flush().expect("flush");
    let d = service.manager.stats().deferred;
    assert_eq!((d.evicted_traces, d.evicted_spans), (2, 2), "{d:#?}");
    assert_eq!((d.traces, d.spans, d.bytes), (0, 0, 0), "{d:#?}");

    // The held requests end now, failing: their open spans and roots find no entry and are
    // dropped, never exported half-decided.
    release_tx.send(true).expect("release");
    for request in [held_a, held_b] {
        let response = request.await.expect("task").expect("response");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let _ = response.text().await;
    }
    until(&service, "the held spans ended", |d| {
        d.dropped_spans_untracked == 4
    })
    .await;
    assert!(service.spans().is_empty(), "{:#?}", service.spans());
    let d = service.manager.stats().deferred;
    assert_eq!((d.kept_error, d.buffered_traces), (0, 3), "{d:#?}");
    assert_eq!((d.traces, d.spans, d.bytes), (0, 0, 0), "{d:#?}");
}

#[tokio::test]
async fn a_span_still_open_when_its_trace_is_discarded_is_dropped_and_counted() {
    let service = Service::new(on());
    let (release_tx, release) = watch::channel(false);
    let router = Router::new()
        .route(
            "/accept",
            // Work the handler does not wait for: its span starts now, ends later.
            get(common::spawns_work),
        )
        .with_state(release)
        .layer(service.manager.server_layer());
    let addr = common::serve(router).await;
    let response = reqwest::get(format!("http://{addr}/accept"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.text().await;

    // The root ended fast and fine: discarded, its buffer freed, the entry kept for the
    // span still open.
    until(&service, "the request decided", |d| d.discarded == 1).await;
    let d = service.manager.stats().deferred;
    assert_eq!((d.traces, d.spans, d.bytes), (1, 0, 0), "{d:#?}");
    assert_eq!(d.dropped_spans_untracked, 0, "{d:#?}");

    // It follows the decision when it ends: dropped, counted, and the entry goes.
    release_tx.send(true).expect("release");
    until(&service, "the background span ended", |d| {
        d.dropped_spans_untracked == 1
    })
    .await;
    assert!(service.spans().is_empty(), "{:#?}", service.spans());
    let d = service.manager.stats().deferred;
    assert_eq!((d.traces, d.spans, d.bytes), (0, 0, 0), "{d:#?}");
    assert_eq!(d.evicted_traces, 0, "{d:#?}");
}

/// Sends `n` requests without `traceparent` to a Router whose only route answers 500 with
/// no child span; returns how many server spans were exported.
async fn fail_many(service: &Service, n: u32) -> u64 {
    let router = Router::new()
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .layer(service.manager.server_layer());
    let addr = common::serve(router).await;
    let caller = reqwest::Client::new();
    let done: Vec<StatusCode> = futures_util::stream::iter(0..n)
        .map(|_| {
            let caller = caller.clone();
            async move {
                let response = caller
                    .get(format!("http://{addr}/fail"))
                    .send()
                    .await
                    .expect("response");
                let status = response.status();
                let _ = response.bytes().await;
                status
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(done.iter().all(|s| *s == StatusCode::INTERNAL_SERVER_ERROR));
    let spans = service.spans();
    assert!(spans.iter().all(|s| s.span_kind == SpanKind::Server));
    spans.len() as u64
}

/// How many of the requests were deferred, checked against every count that says it: the
/// sampler's, the buffer's, and what was exported (every deferred request failed).
fn deferred_count(service: &Service, requests: u32, exported: u64) -> u64 {
    let sampler = service.manager.sampler().stats();
    let d = service.manager.stats().deferred;
    assert_eq!(sampler.sampled, 0, "{sampler:#?}");
    assert_eq!(sampler.dropped, u64::from(requests), "{sampler:#?}");
    assert_eq!(d.buffered_traces, sampler.deferred, "{d:#?}");
    assert_eq!(d.kept_error, sampler.deferred, "{d:#?}");
    assert_eq!(exported, sampler.deferred);
    sampler.deferred
}

#[tokio::test]
async fn fraction_defers_that_share_of_the_dropped_traces() {
    const REQUESTS: u32 = 400;
    let service = Service::new(on().fraction(0.25));
    let exported = fail_many(&service, REQUESTS).await;
    let deferred = deferred_count(&service, REQUESTS, exported);
    // Binomial(400, 0.25): mean 100, standard deviation 8.7; outside 50..=150 (5.8
    // deviations) with probability 1.2e-8.
    assert!(
        (50..=150).contains(&deferred),
        "{deferred} of {REQUESTS} deferred at fraction 0.25"
    );
}

#[tokio::test]
async fn max_per_second_bounds_the_deferred_traces() {
    const REQUESTS: u32 = 100;
    const PER_SECOND: u32 = 5;
    let started = Instant::now();
    let service = Service::new(on().max_per_second(PER_SECOND));
    let exported = fail_many(&service, REQUESTS).await;
    let elapsed = started.elapsed();
    let deferred = deferred_count(&service, REQUESTS, exported);
    // A burst of PER_SECOND, then PER_SECOND a second since the sampler was built.
    let bound =
        u64::from(PER_SECOND) + (f64::from(PER_SECOND) * elapsed.as_secs_f64()).ceil() as u64;
    assert!(
        (u64::from(PER_SECOND)..=bound).contains(&deferred),
        "{deferred} of {REQUESTS} deferred in {elapsed:?} at {PER_SECOND}/s (at most {bound})"
    );
}

#[tokio::test]
async fn an_inner_service_error_of_a_deferred_request_is_exported_as_error() {
    #[derive(Debug)]
    struct Refused;
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("upstream refused")
        }
    }
    let service = Service::new(on());
    // The traced service fails with an error (no response at all); axum's error handler
    // outside the layer turns it into a 502 for the client.
    let refused = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: Refused| async {
            StatusCode::BAD_GATEWAY
        }))
        .layer(service.manager.server_layer())
        .service_fn(|_request: http::Request<Body>| async {
            async {}.instrument(tracing::info_span!("lookup")).await;
            Err::<http::Response<Body>, _>(Refused)
        });
    let addr = common::serve(Router::new().route_service("/refused", refused)).await;
    let response = reqwest::get(format!("http://{addr}/refused"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let _ = response.text().await;

    let spans = service.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for span in &spans {
        assert_kept_as(span, "error");
    }
    let root = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("server span");
    assert!(matches!(root.status, Status::Error { .. }), "{root:#?}");
    assert!(
        attr_str(root, "error.type").is_some_and(|t| t.ends_with("Refused")),
        "{root:#?}"
    );
    assert_eq!(
        named(&spans, "lookup").parent_span_id,
        root.span_context.span_id()
    );
    assert_eq!(service.manager.stats().deferred.kept_error, 1);
}
