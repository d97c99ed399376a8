//! Responses that do not end on their own: server-sent events (axum's `Sse`), an endless
//! download, and a WebSocket upgrade (axum's `ws`), served on 127.0.0.1 and read by real
//! clients.
//!
//! An event stream's span ends at the stream's end or at the limit, whichever comes first,
//! and the limit is a timer: an idle stream's span ends on time. Other streams have a limit
//! only when one is set for them. A truncated stream's duration metric is its span's
//! duration. An upgrade's span ends with the `101` response, however long the connection
//! then lives. Spans are awaited with a bound (flush, look, wait a little, up to a few
//! seconds), never with a fixed sleep.
#![cfg(feature = "axum")]

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use common::metrics::Pipeline;
use common::{DropSignal, Telemetry, attr, attr_str};
use futures_util::{SinkExt as _, Stream, StreamExt as _};
use meshtrace::TracingManager;
use opentelemetry::Value;
use opentelemetry::trace::Status;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::SpanData;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_millis(300);
const EVENT_EVERY: Duration = Duration::from_millis(25);
const SERVER_DURATION: &str = "http.server.request.duration";

fn duration(span: &SpanData) -> Duration {
    span.end_time
        .duration_since(span.start_time)
        .unwrap_or_default()
}

/// The server span named `name`, once it has ended: flushes and looks every 10 ms, for 5 s
/// at most.
async fn ended(telemetry: &Telemetry, name: &str) -> SpanData {
    ended_in(name, || std::future::ready(telemetry.spans())).await
}

/// [`ended`], with the spans that `spans` flushes and returns.
async fn ended_in<F, Fut>(name: &str, spans: F) -> SpanData
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<SpanData>>,
{
    let wait = async {
        loop {
            if let Some(span) = spans().await.into_iter().find(|s| s.name == name) {
                return span;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| panic!("no span {name:?} ended within 5 s"))
}

fn truncated(span: &SpanData) -> Option<bool> {
    match attr(span, meshtrace::server::TRUNCATED) {
        Some(Value::Bool(b)) => Some(b),
        _ => None,
    }
}

/// `span` was ended by the limit, within 200 ms of it: marked truncated, not an error.
fn assert_ended_by_the_limit(span: &SpanData) {
    let took = duration(span);
    assert!(
        took >= LIMIT && took < LIMIT + Duration::from_millis(200),
        "{took:?}"
    );
    assert_eq!(truncated(span), Some(true));
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attr_str(span, "error.type"), None);
}

/// `n` events (`None`: forever), one every 25 ms; then, with `idle`, none ever again
/// without ending. `done` fires when the stream is dropped.
fn events(
    n: Option<u32>,
    idle: bool,
    done: mpsc::UnboundedSender<()>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((0u32, DropSignal(done)), move |(i, guard)| async move {
        if n.is_some_and(|n| i >= n) {
            if idle {
                std::future::pending::<()>().await;
            }
            return None;
        }
        if i > 0 {
            tokio::time::sleep(EVENT_EVERY).await;
        }
        Some((
            Ok(Event::default().data(format!("event {i}"))),
            (i + 1, guard),
        ))
    })
}

async fn serve_events(
    telemetry: &Telemetry,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<()>) {
    let (done, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/finite",
            get(|State(done): State<mpsc::UnboundedSender<()>>| async move {
                Sse::new(events(Some(6), false, done))
            }),
        )
        .route(
            "/endless",
            get(|State(done): State<mpsc::UnboundedSender<()>>| async move {
                Sse::new(events(None, false, done))
            }),
        )
        .route(
            "/idle",
            get(|State(done): State<mpsc::UnboundedSender<()>>| async move {
                Sse::new(events(Some(1), true, done))
            }),
        )
        .with_state(done)
        .layer(telemetry.layer().event_stream_span_limit(Some(LIMIT)));
    (common::serve(app).await, rx)
}

/// Reads `n` events (one `data:` line each) from a streamed response.
async fn read_events(response: &mut reqwest::Response, n: usize) -> Vec<String> {
    let mut text = String::new();
    while text.matches("data:").count() < n {
        let chunk = response
            .chunk()
            .await
            .expect("a chunk")
            .expect("not the end");
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_event_stream_that_ends_before_the_limit_is_timed_to_its_end() {
    let telemetry = Telemetry::new();
    let (addr, mut done) = serve_events(&telemetry).await;
    let started = Instant::now();
    let body = reqwest::get(format!("http://{addr}/finite"))
        .await
        .expect("response")
        .text()
        .await
        .expect("body");
    assert_eq!(body.matches("data:").count(), 6);
    done.recv().await.expect("the stream is dropped");
    let span = ended(&telemetry, "GET /finite").await;
    let took = duration(&span);
    assert!(took >= EVENT_EVERY * 5, "{took:?}");
    assert!(took <= started.elapsed(), "{took:?}");
    assert_eq!(truncated(&span), None);
    assert_eq!(span.status, Status::Unset);
}

#[tokio::test]
async fn an_endless_event_stream_ends_its_span_at_the_limit_and_goes_on() {
    let telemetry = Telemetry::new();
    let (addr, mut done) = serve_events(&telemetry).await;
    let mut response = reqwest::get(format!("http://{addr}/endless"))
        .await
        .expect("response");
    assert_eq!(
        response.headers()["content-type"].to_str().expect("ascii"),
        "text/event-stream"
    );
    let span = ended(&telemetry, "GET /endless").await;
    assert_ended_by_the_limit(&span);
    // The stream itself goes on after its span ended.
    let before = read_events(&mut response, 1).await;
    assert!(!before.is_empty());
    let more = read_events(&mut response, 3).await;
    assert!(more.len() >= 3, "{more:?}");
    // Hanging up later changes nothing on the ended span.
    drop(response);
    done.recv().await.expect("the server drops the stream");
    let spans = telemetry.spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(attr_str(&spans[0], "error.type"), None);
}

#[tokio::test]
async fn an_idle_event_stream_ends_its_span_on_time() {
    let telemetry = Telemetry::new();
    let (addr, mut done) = serve_events(&telemetry).await;
    let started = Instant::now();
    let mut response = reqwest::get(format!("http://{addr}/idle"))
        .await
        .expect("response");
    assert_eq!(read_events(&mut response, 1).await, ["event 0"]);
    // Nothing is sent any more, and nothing polls the body with anything to send: the
    // timer ends the span, while the client still holds the stream open.
    let span = ended(&telemetry, "GET /idle").await;
    assert_ended_by_the_limit(&span);
    assert!(started.elapsed() < LIMIT + Duration::from_secs(1));
    drop(response);
    done.recv().await.expect("the server drops the stream");
    assert_eq!(telemetry.spans().len(), 1);
}

#[tokio::test]
async fn without_a_limit_an_event_stream_span_lasts_until_the_stream_ends() {
    let telemetry = Telemetry::new();
    let (done, mut dropped) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/finite",
            get(|State(done): State<mpsc::UnboundedSender<()>>| async move {
                Sse::new(events(Some(16), false, done))
            }),
        )
        .with_state(done)
        .layer(telemetry.layer().event_stream_span_limit(None));
    let addr = common::serve(app).await;
    let body = reqwest::get(format!("http://{addr}/finite"))
        .await
        .expect("response")
        .text()
        .await
        .expect("body");
    assert_eq!(body.matches("data:").count(), 16);
    dropped.recv().await.expect("the stream is dropped");
    let span = ended(&telemetry, "GET /finite").await;
    assert!(duration(&span) >= EVENT_EVERY * 15, "{:?}", duration(&span));
    assert_eq!(truncated(&span), None);
}

#[tokio::test]
async fn a_truncated_event_stream_records_the_span_duration_in_the_metric() {
    let pipeline = Pipeline::new(TracingManager::builder(), Temporality::Cumulative);
    let (done, mut dropped) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/endless",
            get(|State(done): State<mpsc::UnboundedSender<()>>| async move {
                Sse::new(events(None, false, done))
            }),
        )
        .with_state(done)
        .layer(
            pipeline
                .manager
                .server_layer()
                .event_stream_span_limit(Some(LIMIT)),
        );
    let addr = common::serve(app).await;
    let mut response = reqwest::get(format!("http://{addr}/endless"))
        .await
        .expect("response");
    let span = ended_in("GET /endless", || pipeline.finished_spans()).await;
    assert_eq!(truncated(&span), Some(true));
    // The request is counted once, when its span ended, with the span's duration: the
    // limit, not the life of the stream.
    let points = pipeline.points(SERVER_DURATION).await;
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(points[0].count, 1, "{points:?}");
    let took = duration(&span).as_secs_f64();
    assert!(
        (points[0].sum - took).abs() < 1e-6,
        "{points:?}, span {took} s"
    );
    assert!(
        points[0].sum >= LIMIT.as_secs_f64()
            && points[0].sum < (LIMIT + Duration::from_millis(200)).as_secs_f64(),
        "{points:?}"
    );
    assert_eq!(points[0].attributes.get("error.type"), None, "{points:?}");
    // The stream goes on; hanging up later records nothing more.
    assert!(read_events(&mut response, 3).await.len() >= 3);
    drop(response);
    dropped.recv().await.expect("the server drops the stream");
    let points = pipeline.points(SERVER_DURATION).await;
    assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), 1, "{points:?}");
}

/// Chunks of bytes, one every 25 ms, forever. `done` fires when the stream is dropped.
fn chunks(done: mpsc::UnboundedSender<()>) -> impl Stream<Item = Result<bytes::Bytes, Infallible>> {
    futures_util::stream::unfold((0u32, DropSignal(done)), |(i, guard)| async move {
        if i > 0 {
            tokio::time::sleep(EVENT_EVERY).await;
        }
        Some((
            Ok(bytes::Bytes::from(format!("chunk {i}\n"))),
            (i + 1, guard),
        ))
    })
}

#[tokio::test]
async fn a_long_stream_ends_its_span_at_the_stream_limit_and_goes_on() {
    let telemetry = Telemetry::new();
    let (done, mut dropped) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/download",
            get(|State(done): State<mpsc::UnboundedSender<()>>| async move {
                (
                    [(http::header::CONTENT_TYPE, "application/octet-stream")],
                    axum::body::Body::from_stream(chunks(done)),
                )
            }),
        )
        .with_state(done)
        .layer(telemetry.layer().stream_span_limit(Some(LIMIT)));
    let addr = common::serve(app).await;
    let mut response = reqwest::get(format!("http://{addr}/download"))
        .await
        .expect("response");
    // Not an event stream: the limit for other streams ends its span.
    let span = ended(&telemetry, "GET /download").await;
    assert_ended_by_the_limit(&span);
    // The stream itself goes on after its span ended.
    let mut read = String::new();
    while read.matches("chunk").count() < 20 {
        let chunk = response
            .chunk()
            .await
            .expect("a chunk")
            .expect("not the end");
        read.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    // Hanging up later changes nothing on the ended span.
    drop(response);
    dropped.recv().await.expect("the server drops the stream");
    let spans = telemetry.spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(attr_str(&spans[0], "error.type"), None);
}

async fn echo(mut socket: WebSocket, closed: mpsc::UnboundedSender<()>) {
    let _closed = DropSignal(closed);
    while let Some(Ok(message)) = socket.recv().await {
        if let Message::Text(text) = message
            && socket.send(Message::Text(text)).await.is_err()
        {
            break;
        }
    }
}

#[tokio::test]
async fn a_websocket_upgrade_ends_its_span_with_the_101() {
    let telemetry = Telemetry::new();
    let (closed, mut socket_closed) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/ws",
            get(
                |State(closed): State<mpsc::UnboundedSender<()>>, upgrade: WebSocketUpgrade| async move {
                    upgrade.on_upgrade(move |socket| echo(socket, closed))
                },
            ),
        )
        .with_state(closed)
        .layer(telemetry.layer());
    let addr = common::serve(app).await;
    let (mut socket, response) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("upgrade");
    assert_eq!(response.status(), 101);
    let upgraded = std::time::SystemTime::now();

    // The span ended with the 101 (before the client had it), while the connection is
    // open and in use.
    let span = ended(&telemetry, "GET /ws").await;
    assert!(span.end_time <= upgraded);
    assert_eq!(
        attr(&span, "http.response.status_code"),
        Some(Value::I64(101))
    );
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attr_str(&span, "error.type"), None);
    for i in 0..3 {
        let text = format!("ping {i}");
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text.clone()))
            .await
            .expect("send");
        let echoed = socket.next().await.expect("a message").expect("ok");
        assert_eq!(echoed.into_text().expect("text").as_str(), text);
    }
    socket.close(None).await.expect("close");
    socket_closed
        .recv()
        .await
        .expect("the server closes its socket");

    // One span, as it was: the messages and the close made no span and changed none.
    let spans = telemetry.spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].end_time, span.end_time);
}
