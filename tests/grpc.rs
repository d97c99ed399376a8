//! gRPC traced end to end: a real tonic server (`Server::builder().layer(TracingLayer)`) and
//! a real tonic client (a `Channel` wrapped with `ClientTracingLayer` through
//! `tower::ServiceBuilder`) on 127.0.0.1, calling the tiny `meshtrace.test.v1.Echo` service
//! of `tests/proto`.
//!
//! Every case runs through the manager's pipeline and a hand-built provider with
//! `CustomSampler`, and checks what a reader of the trace would conclude: the spans' names,
//! `rpc.*` attributes, status and `error.type` on both sides, and that the client span is
//! the server span's parent in one trace, with the correlation id carried over. Spans are
//! read after a flush; a span that ends when something is dropped is awaited through that
//! drop ([`common::DropSignal`]), never a sleep.

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use common::setup::{How, Setup};
use common::{DropSignal, attr, attr_str};
use futures_util::Stream;
use meshtrace::context::CorrelationId;
use meshtrace::sampler::{SamplingConfig, SamplingRule};
use meshtrace::server::TracingLayer;
use meshtrace_test_proto::echo::echo_client::EchoClient;
use meshtrace_test_proto::echo::echo_server::{Echo, EchoServer};
use meshtrace_test_proto::echo::{EchoReply, EchoRequest};
use opentelemetry::Value;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response};
use tower::ServiceBuilder;

const UNARY: &str = "meshtrace.test.v1.Echo/Unary";
const STREAM: &str = "meshtrace.test.v1.Echo/Stream";

/// The service: answers with the status a request asks for; `Stream` sends `count`
/// replies first, or hangs after `hang_after` of them. `dropped` fires when a reply stream
/// is dropped (ended or cancelled).
struct EchoService {
    dropped: mpsc::UnboundedSender<()>,
}

type Replies = Pin<Box<dyn Stream<Item = Result<EchoReply, tonic::Status>> + Send>>;

fn status(code: i32) -> Option<tonic::Status> {
    (code != 0).then(|| tonic::Status::new(Code::from(code), "asked for"))
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoReply>, tonic::Status> {
        let request = request.into_inner();
        match status(request.code) {
            Some(status) => Err(status),
            None => Ok(Response::new(EchoReply {
                message: request.message,
                index: 0,
            })),
        }
    }

    type StreamStream = Replies;

    async fn stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Replies>, tonic::Status> {
        let request = request.into_inner();
        let guard = DropSignal(self.dropped.clone());
        let replies = futures_util::stream::unfold((0u32, guard), move |(i, guard)| {
            let request = request.clone();
            async move {
                if request.hang_after > 0 && i == request.hang_after {
                    std::future::pending::<()>().await;
                }
                if i < request.count {
                    let reply = EchoReply {
                        message: request.message.clone(),
                        index: i,
                    };
                    return Some((Ok(reply), (i + 1, guard)));
                }
                // The end: the status asked for, once (then the stream ends).
                let status = status(request.code)?;
                Some((Err(status), (u32::MAX - 1, guard)))
            }
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

/// The manager's pipeline and a hand-built provider (the log filter has nothing to say
/// about gRPC that the HTTP tests do not).
const SETUPS: [How; 2] = [How::Manager, How::HandBuilt];

impl Setup {
    /// The tonic server behind this setup's layer, and its reply-stream drop signal.
    async fn serve(&self) -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
        serve(self.server_layer()).await
    }

    /// A client of `addr` through this setup's client layer.
    async fn client(
        &self,
        addr: SocketAddr,
    ) -> EchoClient<meshtrace::client::ClientTracingService<Channel>> {
        let channel = channel(addr).await;
        let traced = ServiceBuilder::new()
            .layer(self.client_layer())
            .service(channel);
        // With the origin, requests carry an absolute URI: `server.address`/`server.port`.
        EchoClient::with_origin(traced, origin(addr))
    }
}

async fn serve(layer: TracingLayer) -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let (dropped, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .add_service(EchoServer::new(EchoService { dropped }))
            .serve_with_incoming(incoming)
            .await
            .expect("serve");
    });
    (addr, rx)
}

fn origin(addr: SocketAddr) -> http::Uri {
    format!("http://{addr}").parse().expect("uri")
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::builder(origin(addr))
        .connect()
        .await
        .expect("connect")
}

fn request(message: &str, code: Code, count: u32, hang_after: u32) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        code: code as i32,
        count,
        hang_after,
    }
}

/// The caller's Context: the correlation id the client layer sends.
fn caller() -> opentelemetry::Context {
    opentelemetry::Context::new().with_value(CorrelationId::parse(b"grpc-call-1").expect("id"))
}

fn int(span: &SpanData, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(Value::I64(v)) => Some(v),
        _ => None,
    }
}

/// What one side of a call records: `error.type`, and whether the status is Error.
type Outcome<'a> = (Option<&'a str>, bool);

const OK: Outcome<'static> = (None, false);

fn failed(error_type: &str) -> Outcome<'_> {
    (Some(error_type), true)
}

/// Both spans of one call: named `name`, with `rpc.*`, the status code and the outcome
/// given; the client span is the server span's parent, in one trace, and the correlation
/// id went along.
fn check_call(
    setup: &Setup,
    name: &str,
    method: &str,
    code: Option<i64>,
    server_outcome: Outcome<'_>,
    client_outcome: Outcome<'_>,
) -> (SpanData, SpanData) {
    let how = setup.how;
    let server = setup.only(SpanKind::Server);
    let client = setup.only(SpanKind::Client);
    for (span, (error, is_error)) in [(&server, server_outcome), (&client, client_outcome)] {
        let side = span.span_kind.clone();
        assert_eq!(span.name, name, "{how:?} {side:?}");
        assert_eq!(
            attr_str(span, "rpc.system").as_deref(),
            Some("grpc"),
            "{how:?} {side:?}"
        );
        assert_eq!(
            attr_str(span, "rpc.service").as_deref(),
            Some("meshtrace.test.v1.Echo"),
            "{how:?} {side:?}"
        );
        assert_eq!(
            attr_str(span, "rpc.method").as_deref(),
            Some(method),
            "{how:?} {side:?}"
        );
        assert_eq!(int(span, "rpc.grpc.status_code"), code, "{how:?} {side:?}");
        assert_eq!(
            attr_str(span, "error.type").as_deref(),
            error,
            "{how:?} {side:?}"
        );
        if is_error {
            assert!(
                matches!(span.status, Status::Error { .. }),
                "{how:?} {side:?}"
            );
        } else {
            assert_eq!(span.status, Status::Unset, "{how:?} {side:?}");
        }
    }
    assert_eq!(
        server.parent_span_id,
        client.span_context.span_id(),
        "{how:?}"
    );
    assert_eq!(
        server.span_context.trace_id(),
        client.span_context.trace_id(),
        "{how:?}"
    );
    assert_eq!(
        attr_str(&server, "correlation.id").as_deref(),
        Some("grpc-call-1"),
        "{how:?}"
    );
    assert_eq!(
        attr_str(&client, "server.address").as_deref(),
        Some("127.0.0.1"),
        "{how:?}"
    );
    assert!(int(&client, "server.port").is_some(), "{how:?}");
    (server, client)
}

#[tokio::test]
async fn a_unary_call_that_succeeds() {
    for how in SETUPS {
        let setup = Setup::new(how, SamplingConfig::default());
        let (addr, _) = setup.serve().await;
        let mut client = setup.client(addr).await;
        let reply = client
            .unary(request("hello", Code::Ok, 0, 0))
            .with_context(caller())
            .await
            .expect("reply");
        assert_eq!(reply.into_inner().message, "hello");
        let (server, _) = check_call(&setup, UNARY, "Unary", Some(0), OK, OK);
        assert_eq!(int(&server, "http.response.status_code"), Some(200));
        assert_eq!(
            attr_str(&server, "url.path").as_deref(),
            Some("/meshtrace.test.v1.Echo/Unary")
        );
    }
}

#[tokio::test]
async fn a_unary_call_that_fails_with_a_trailers_only_response() {
    for how in SETUPS {
        // UNAVAILABLE is an error on both sides; NOT_FOUND only on the client's: the
        // server answered as asked.
        for (code, name, server_outcome) in [
            (Code::Unavailable, "UNAVAILABLE", failed("UNAVAILABLE")),
            (Code::NotFound, "NOT_FOUND", OK),
        ] {
            let setup = Setup::new(how, SamplingConfig::default());
            let (addr, _) = setup.serve().await;
            // Below the client layer, the response heads as they came off the wire.
            let heads = Arc::new(Mutex::new(Vec::<http::HeaderMap>::new()));
            let record = {
                let heads = Arc::clone(&heads);
                move |response: http::Response<tonic::body::Body>| {
                    heads
                        .lock()
                        .expect("heads")
                        .push(response.headers().clone());
                    response
                }
            };
            let traced = ServiceBuilder::new()
                .layer(setup.client_layer())
                .map_response(record)
                .service(channel(addr).await);
            let mut client = EchoClient::with_origin(traced, origin(addr));
            let status = client
                .unary(request("x", code, 0, 0))
                .with_context(caller())
                .await
                .expect_err("fails");
            assert_eq!(status.code(), code);
            // Trailers-only: the status is in the response headers, so that is where both
            // layers read it (the code is not the `INTERNAL` of a body without trailers).
            let heads = heads.lock().expect("heads").clone();
            assert_eq!(heads.len(), 1, "{how:?}");
            assert_eq!(
                heads[0].get("grpc-status").map(|v| v.as_bytes()),
                Some((code as i32).to_string().as_bytes()),
                "{how:?}: {:?}",
                heads[0]
            );
            check_call(
                &setup,
                UNARY,
                "Unary",
                Some(code as i64),
                server_outcome,
                failed(name),
            );
        }
    }
}

#[tokio::test]
async fn a_server_stream_that_fails_in_the_trailers_after_three_messages() {
    for how in SETUPS {
        let setup = Setup::new(how, SamplingConfig::default());
        let (addr, mut dropped) = setup.serve().await;
        let mut client = setup.client(addr).await;
        let mut stream = client
            .stream(request("m", Code::Internal, 3, 0))
            .with_context(caller())
            .await
            .expect("stream")
            .into_inner();
        let mut received = 0;
        let status = loop {
            match stream.message().await {
                Ok(Some(reply)) => {
                    assert_eq!(reply.index, received);
                    received += 1;
                }
                Ok(None) => panic!("{how:?}: the stream ended without its error"),
                Err(status) => break status,
            }
        };
        assert_eq!((received, status.code()), (3, Code::Internal));
        drop(stream);
        dropped.recv().await.expect("the reply stream is dropped");
        let (server, client) = check_call(
            &setup,
            STREAM,
            "Stream",
            Some(13),
            failed("INTERNAL"),
            failed("INTERNAL"),
        );
        // The status came in the trailers, after a 200 head with the messages.
        assert_eq!(int(&server, "http.response.status_code"), Some(200));
        assert_eq!(int(&client, "http.response.status_code"), Some(200));
    }
}

#[tokio::test]
async fn a_stream_the_client_drops_is_cancelled_on_both_sides() {
    for how in SETUPS {
        let setup = Setup::new(how, SamplingConfig::default());
        let (addr, mut dropped) = setup.serve().await;
        let mut client = setup.client(addr).await;
        let mut stream = client
            .stream(request("m", Code::Ok, 5, 1))
            .with_context(caller())
            .await
            .expect("stream")
            .into_inner();
        let first = stream
            .message()
            .await
            .expect("a message")
            .expect("not the end");
        assert_eq!(first.index, 0);
        // The server hangs after one message; the client gives up on the stream.
        drop(stream);
        dropped
            .recv()
            .await
            .expect("the server drops the reply stream");
        // No gRPC status was ever sent: both sides record `CANCELLED` (1), which the
        // conventions require. The span status is chosen as for HTTP: the server could not
        // deliver its response (Error), the client chose to stop reading (Unset).
        check_call(
            &setup,
            STREAM,
            "Stream",
            Some(1),
            failed("cancelled"),
            (Some("cancelled"), false),
        );
    }
}

/// Calls `path` (a method the server does not have, or a malformed path) with the Echo
/// messages, through `service`.
async fn call_path(
    service: meshtrace::client::ClientTracingService<Channel>,
    addr: SocketAddr,
    path: &'static str,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::with_origin(service, origin(addr));
    grpc.ready().await.map_err(|_| "not ready").expect("ready");
    let codec = meshtrace_test_proto::ProstCodec::<EchoRequest, EchoReply>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(Request::new(request("x", Code::Ok, 0, 0)), path, codec)
        .with_context(caller())
        .await
        .expect_err("not a method of the server")
}

#[tokio::test]
async fn unknown_methods_and_malformed_paths_are_other() {
    for how in SETUPS {
        // (path, rpc.method at the start, rpc.method_original)
        let cases = [
            // Well formed, but the server has no such method: it answers UNIMPLEMENTED, and
            // only then is the name known to be client-chosen.
            (
                "/meshtrace.test.v1.Echo/Nope",
                "Nope",
                "meshtrace.test.v1.Echo/Nope",
            ),
            // Not `/{service}/{method}`: `_OTHER` from the start.
            (
                "/meshtrace.test.v1.Echo/Unary/x",
                "_OTHER",
                "meshtrace.test.v1.Echo/Unary/x",
            ),
            ("/not-a-service/1", "_OTHER", "not-a-service/1"),
        ];
        for (path, method, original) in cases {
            let setup = Setup::new(how, SamplingConfig::default());
            let (addr, _) = setup.serve().await;
            let traced = ServiceBuilder::new()
                .layer(setup.client_layer())
                .service(channel(addr).await);
            let status = call_path(traced, addr, path).await;
            assert_eq!(status.code(), Code::Unimplemented, "{how:?} {path}");
            for kind in [SpanKind::Server, SpanKind::Client] {
                let span = setup.only(kind.clone());
                let at = format!("{how:?} {path} {kind:?}");
                assert_eq!(span.name, "_OTHER", "{at}");
                assert_eq!(
                    attr_str(&span, "rpc.method").as_deref(),
                    Some(method),
                    "{at}"
                );
                assert_eq!(
                    attr_str(&span, "rpc.method_original").as_deref(),
                    Some(original),
                    "{at}"
                );
                assert_eq!(int(&span, "rpc.grpc.status_code"), Some(12), "{at}");
                assert_eq!(
                    attr_str(&span, "error.type").as_deref(),
                    Some("UNIMPLEMENTED"),
                    "{at}"
                );
                assert!(matches!(span.status, Status::Error { .. }), "{at}");
            }
        }
    }
}

#[tokio::test]
async fn sampling_rules_match_rpc_service_and_method() {
    let sampling = || {
        SamplingConfig::default().base_rate(0.0).rule(
            SamplingRule::new("echo-unary", 1.0)
                .attribute("rpc.service", "meshtrace.test.v1.Echo")
                .attribute("rpc.method", "Unary"),
        )
    };
    // The same rule in a configuration file, as the README writes it.
    let file = SamplingConfig::from_toml_str(
        r#"
        base_rate = 0.0

        [[rules]]
        name = "echo-unary"
        attributes = { "rpc.service" = "meshtrace.test.v1.Echo", "rpc.method" = "Unary" }
        rate = 1.0
        "#,
    )
    .expect("sampling file");
    assert_eq!(file, sampling());
    for how in SETUPS {
        // A traced client: its span is the root the rule decides; the server follows.
        let setup = Setup::new(how, sampling());
        let (addr, mut dropped) = setup.serve().await;
        let mut client = setup.client(addr).await;
        client
            .unary(request("x", Code::Ok, 0, 0))
            .with_context(caller())
            .await
            .expect("reply");
        let spans = setup.spans();
        assert_eq!(spans.len(), 2, "{how:?}: {spans:#?}");
        let root = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Client)
            .expect("client span");
        assert_eq!(root.name, UNARY, "{how:?}");
        assert_eq!(
            attr_str(root, "sampling.reason").as_deref(),
            Some("rule:echo-unary"),
            "{how:?}"
        );
        let mut stream = client
            .stream(request("x", Code::Ok, 1, 0))
            .with_context(caller())
            .await
            .expect("stream")
            .into_inner();
        while stream.message().await.expect("message").is_some() {}
        dropped.recv().await.expect("the reply stream is dropped");
        assert_eq!(setup.spans().len(), 2, "{how:?}: the stream is not sampled");

        // An untraced client: the server span is the root, and the rule decides it.
        let setup = Setup::new(how, sampling());
        let (addr, mut dropped) = setup.serve().await;
        let mut client = EchoClient::new(channel(addr).await);
        client
            .unary(request("x", Code::Ok, 0, 0))
            .await
            .expect("reply");
        let server = setup.only(SpanKind::Server);
        assert_eq!(server.name, UNARY, "{how:?}");
        assert_eq!(
            attr_str(&server, "sampling.reason").as_deref(),
            Some("rule:echo-unary"),
            "{how:?}"
        );
        let mut stream = client
            .stream(request("x", Code::Ok, 1, 0))
            .await
            .expect("stream")
            .into_inner();
        while stream.message().await.expect("message").is_some() {}
        dropped.recv().await.expect("the reply stream is dropped");
        assert_eq!(setup.spans().len(), 1, "{how:?}: the stream is not sampled");
    }
}

#[tokio::test]
async fn rpc_durations_count_every_call_and_equal_the_spans() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    // Base rate 0 with the caller's context unsampled would export nothing; the client
    // starts roots here, so a rate of 1.0 samples every call and the metric can be
    // compared with the exported spans, and a second, unsampled round shows every call is
    // counted whatever the sampler says.
    for base_rate in [1.0, 0.0] {
        let metrics = InMemoryMetricExporter::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        let meter = meter_provider.meter("grpc-test");
        let setup = Setup::new(
            How::HandBuilt,
            SamplingConfig::default().base_rate(base_rate),
        );
        let (addr, mut dropped) = serve(setup.server_layer().meter(&meter)).await;
        let traced = ServiceBuilder::new()
            .layer(setup.client_layer().meter(&meter))
            .service(channel(addr).await);
        let mut client = EchoClient::with_origin(traced.clone(), origin(addr));
        for _ in 0..2 {
            client
                .unary(request("ok", Code::Ok, 0, 0))
                .await
                .expect("unary");
        }
        let failed = client
            .unary(request("no", Code::Unavailable, 0, 0))
            .await
            .expect_err("unavailable");
        assert_eq!(failed.code(), Code::Unavailable);
        let status = call_path(traced, addr, "/meshtrace.test.v1.Echo/Nope").await;
        assert_eq!(status.code(), Code::Unimplemented);
        // A stream the client drops after one message: cancelled on both sides.
        let mut stream = client
            .stream(request("m", Code::Ok, 5, 1))
            .await
            .expect("stream")
            .into_inner();
        stream
            .message()
            .await
            .expect("a message")
            .expect("not the end");
        drop(stream);
        dropped
            .recv()
            .await
            .expect("the server drops the reply stream");
        meter_provider.force_flush().expect("flush metrics");
        let exported = metrics.get_finished_metrics().expect("metrics");
        let at = format!("base rate {base_rate}");

        for name in ["rpc.server.duration", "rpc.client.duration"] {
            let points = common::metrics::histogram_points(&exported, name);
            let count = |method: &str, code: &str| -> u64 {
                points
                    .iter()
                    .filter(|p| {
                        let a = &p.attributes;
                        a.get("rpc.method").map(String::as_str) == Some(method)
                            && a.get("rpc.grpc.status_code").map(String::as_str) == Some(code)
                    })
                    .map(|p| p.count)
                    .sum()
            };
            assert_eq!(count("Unary", "0"), 2, "{at} {name}: {points:?}");
            assert_eq!(count("Unary", "14"), 1, "{at} {name}: {points:?}");
            // The unknown method is `_OTHER`, without `rpc.service`: never the raw name.
            assert_eq!(count("_OTHER", "12"), 1, "{at} {name}: {points:?}");
            // The cancelled stream has the code its spans have, `CANCELLED`.
            assert_eq!(count("Stream", "1"), 1, "{at} {name}: {points:?}");
            assert!(
                points
                    .iter()
                    .all(|p| p.attributes.get("rpc.system").map(String::as_str) == Some("grpc")),
                "{at} {name}"
            );
            assert!(
                points
                    .iter()
                    .all(|p| !p.attributes.contains_key("http.request.method")),
                "{at} {name}"
            );
            let unavailable = points
                .iter()
                .find(|p| {
                    p.attributes.get("rpc.grpc.status_code").map(String::as_str) == Some("14")
                })
                .expect("the failed call");
            assert_eq!(
                unavailable.attributes.get("error.type").map(String::as_str),
                Some("UNAVAILABLE"),
                "{at} {name}"
            );
            let cancelled = points
                .iter()
                .find(|p| p.attributes.get("rpc.method").map(String::as_str) == Some("Stream"))
                .expect("the cancelled stream");
            assert_eq!(
                cancelled.attributes.get("error.type").map(String::as_str),
                Some("cancelled"),
                "{at} {name}"
            );
        }
        // gRPC calls are RPCs: no HTTP duration counts them a second time.
        for name in [
            "http.server.request.duration",
            "http.client.request.duration",
        ] {
            assert!(
                common::metrics::histogram_points(&exported, name).is_empty(),
                "{at}: {name}"
            );
        }
        // The calls' spans (the hand-built subscriber also bridges h2's own `tracing` spans).
        let spans: Vec<SpanData> = setup
            .spans()
            .into_iter()
            .filter(|s| matches!(s.span_kind, SpanKind::Server | SpanKind::Client))
            .collect();
        if base_rate == 0.0 {
            assert!(
                spans.is_empty(),
                "{at}: nothing sampled, every call counted"
            );
            continue;
        }
        assert_eq!(spans.len(), 10, "{at}: five calls, both sides");
        // Each call's metric is its span's duration: compare the sums per side.
        for (kind, name) in [
            (SpanKind::Server, "rpc.server.duration"),
            (SpanKind::Client, "rpc.client.duration"),
        ] {
            let spans_ms: f64 = spans
                .iter()
                .filter(|s| s.span_kind == kind)
                .map(|s| {
                    s.end_time
                        .duration_since(s.start_time)
                        .expect("ends after it starts")
                        .as_secs_f64()
                        * 1000.0
                })
                .sum();
            let metric_ms: f64 = common::metrics::histogram_points(&exported, name)
                .iter()
                .map(|p| p.sum)
                .sum();
            assert!(
                (spans_ms - metric_ms).abs() < 1e-6,
                "{name}: spans {spans_ms} ms, metric {metric_ms} ms"
            );
        }
    }
}
