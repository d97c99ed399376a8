//! Every span tells the truth about its request: duration, outcome and parent, whatever
//! the body, the caller or the log level do.
//!
//! Each test runs the same checks through a table of setups: the manager's own pipeline
//! (JSON logs, and with a quiet `warn` log filter), and a hand-built SDK provider with a
//! `tracing-opentelemetry` subscriber. Real axum servers on 127.0.0.1, real reqwest and
//! hyper-util clients; spans are read after a flush, never after a sleep: a test that
//! needs a span that ends when something is dropped waits for that drop
//! ([`common::DropSignal`]).
#![cfg(all(feature = "reqwest", feature = "axum"))]

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use common::setup::{How, Setup};
use common::{DropSignal, attr_str};
use futures_util::StreamExt as _;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshtrace::context::TraceFutureExt as _;
use meshtrace::logging::LogFormat;
use meshtrace::sampler::SamplingConfig;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use tokio::sync::mpsc;
use tower::{ServiceBuilder, ServiceExt};

const CHUNKS: u32 = 20;
const CHUNK_DELAY: Duration = Duration::from_millis(20);
const STREAM: Duration = Duration::from_millis(20 * 20);

const SETUPS: [How; 3] = [How::Manager, How::ManagerQuietLogs, How::HandBuilt];

fn duration(span: &SpanData) -> Duration {
    span.end_time
        .duration_since(span.start_time)
        .unwrap_or_default()
}

/// A body of 20 chunks, each after 20 ms; `done` fires when the stream is dropped (read to
/// its end or not).
async fn stream(State(done): State<mpsc::UnboundedSender<()>>) -> Body {
    let guard = DropSignal(done);
    let chunks = futures_util::stream::unfold((0, guard), |(i, guard)| async move {
        if i == CHUNKS {
            return None;
        }
        tokio::time::sleep(CHUNK_DELAY).await;
        Some((
            Ok::<_, Infallible>(Bytes::from_static(b"chunk\n")),
            (i + 1, guard),
        ))
    });
    Body::from_stream(chunks)
}

/// A handler that never answers in time; `done` fires when its future is dropped.
async fn hang(State(done): State<mpsc::UnboundedSender<()>>) -> &'static str {
    let _guard = DropSignal(done);
    tokio::time::sleep(Duration::from_secs(30)).await;
    "too late"
}

async fn serve(setup: &Setup) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/stream", get(stream))
        .route("/hang", get(hang))
        .with_state(tx)
        .layer(setup.server_layer());
    (common::serve(app).await, rx)
}

#[tokio::test]
async fn a_streamed_body_read_to_its_end_is_timed_to_its_end_on_both_sides() {
    for how in SETUPS {
        for client in ["reqwest", "hyper"] {
            let setup = Setup::new(how, SamplingConfig::default());
            let (addr, mut dropped) = serve(&setup).await;
            let url = format!("http://{addr}/stream");
            let started = Instant::now();
            let bytes = match client {
                "reqwest" => setup
                    .reqwest()
                    .get(&url)
                    .send()
                    .await
                    .expect("response")
                    .bytes()
                    .await
                    .expect("body")
                    .len(),
                _ => {
                    let hyper = ServiceBuilder::new().layer(setup.client_layer()).service(
                        Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>(),
                    );
                    let request = http::Request::get(&url)
                        .body(Empty::new())
                        .expect("request");
                    let response = hyper.oneshot(request).await.expect("response");
                    response
                        .into_body()
                        .collect()
                        .await
                        .expect("body")
                        .to_bytes()
                        .len()
                }
            };
            let observed = started.elapsed();
            assert_eq!(bytes, 6 * CHUNKS as usize);
            dropped.recv().await.expect("the stream is dropped");

            let server = setup.only(SpanKind::Server);
            let client_span = setup.only(SpanKind::Client);
            for span in [&server, &client_span] {
                let took = duration(span);
                assert!(
                    took >= STREAM,
                    "{how:?}/{client}: {:?} span lasted {took:?}, the stream {STREAM:?}",
                    span.span_kind
                );
                assert!(
                    took <= observed + Duration::from_millis(50),
                    "{how:?}/{client}"
                );
                assert_eq!(span.status, Status::Unset, "{how:?}/{client}");
                assert_eq!(attr_str(span, "error.type"), None, "{how:?}/{client}");
            }
            // The server span is the client span's child, in one trace.
            assert_eq!(server.parent_span_id, client_span.span_context.span_id());
            assert_eq!(
                server.span_context.trace_id(),
                client_span.span_context.trace_id()
            );
        }
    }
}

#[tokio::test]
async fn a_streamed_body_dropped_after_three_chunks_says_so_on_both_sides() {
    for how in SETUPS {
        for client in ["reqwest", "hyper"] {
            let setup = Setup::new(how, SamplingConfig::default());
            let (addr, mut dropped) = serve(&setup).await;
            let url = format!("http://{addr}/stream");
            let started = Instant::now();
            match client {
                "reqwest" => {
                    let mut response = setup.reqwest().get(&url).send().await.expect("response");
                    for _ in 0..3 {
                        response
                            .chunk()
                            .await
                            .expect("a chunk")
                            .expect("not the end");
                    }
                }
                _ => {
                    let hyper = ServiceBuilder::new().layer(setup.client_layer()).service(
                        Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>(),
                    );
                    let request = http::Request::get(&url)
                        .body(Empty::new())
                        .expect("request");
                    let mut body = hyper.oneshot(request).await.expect("response").into_body();
                    let mut chunks = 0;
                    while chunks < 3 {
                        let frame = body.frame().await.expect("a frame").expect("data");
                        chunks += usize::from(frame.is_data());
                    }
                }
            }
            let read = started.elapsed();
            // The response is dropped here; the server notices when it writes next.
            dropped.recv().await.expect("the server drops the stream");
            let noticed = started.elapsed();

            let server = setup.only(SpanKind::Server);
            let client_span = setup.only(SpanKind::Client);
            for span in [&server, &client_span] {
                let took = duration(span);
                // At least the 3 chunks read (3 x 20 ms). The client span ends at the drop,
                // about 60 ms; the server span when the server next writes to the closed
                // connection: chunk 4 at 80 ms, or chunk 5 at 100 ms when the first write
                // after the close still lands in the socket buffer. 250 ms leaves 150 ms of
                // scheduling delay on a loaded 2-core machine and is still far from the
                // 400 ms the stream would have taken; and neither span may end after the
                // moment the test saw the drop.
                assert!(
                    took >= CHUNK_DELAY * 3 && took < Duration::from_millis(250) && took <= noticed,
                    "{how:?}/{client}: {:?} span lasted {took:?} (read {read:?}, dropped \
                     {noticed:?})",
                    span.span_kind
                );
                assert_eq!(
                    attr_str(span, "error.type").as_deref(),
                    Some("cancelled"),
                    "{how:?}/{client}: {:?}",
                    span.span_kind
                );
            }
            assert!(duration(&client_span) <= read + Duration::from_millis(50));
            // The server could not deliver its response: an error. The caller chose to
            // stop reading a 200: the status stays what the response said.
            assert!(
                matches!(server.status, Status::Error { .. }),
                "{how:?}/{client}"
            );
            assert_eq!(client_span.status, Status::Unset, "{how:?}/{client}");
        }
    }
}

#[tokio::test]
async fn a_client_that_gives_up_before_the_response_is_recorded_on_both_sides() {
    // reqwest's own timeout (a timeout the middleware sees as an error), an outer
    // `tokio::time::timeout` (the middleware's future is dropped), and tower's timeout
    // outside and inside the hyper client's layer.
    for how in SETUPS {
        for caller in [
            "reqwest_timeout",
            "outer_timeout",
            "tower_outer",
            "tower_inner",
        ] {
            let setup = Setup::new(how, SamplingConfig::default());
            let (addr, mut dropped) = serve(&setup).await;
            let url = format!("http://{addr}/hang");
            let limit = Duration::from_millis(100);
            let started = Instant::now();
            let hyper = || Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let request = || {
                http::Request::get(&url)
                    .body(Empty::new())
                    .expect("request")
            };
            match caller {
                "reqwest_timeout" => {
                    let error = setup.reqwest().get(&url).timeout(limit).send().await;
                    assert!(error.expect_err("times out").is_timeout());
                }
                "outer_timeout" => {
                    let call = setup.reqwest().get(&url).send();
                    assert!(tokio::time::timeout(limit, call).await.is_err());
                }
                "tower_outer" => {
                    let client = ServiceBuilder::new()
                        .timeout(limit)
                        .layer(setup.client_layer())
                        .service(hyper());
                    assert!(client.oneshot(request()).await.is_err());
                }
                _ => {
                    let client = ServiceBuilder::new()
                        .layer(setup.client_layer())
                        .timeout(limit)
                        .service(hyper());
                    assert!(client.oneshot(request()).await.is_err());
                }
            }
            let gave_up = started.elapsed();
            dropped.recv().await.expect("the server drops the handler");

            let client_span = setup.only(SpanKind::Client);
            let expected = match caller {
                "reqwest_timeout" | "tower_inner" => "timeout",
                _ => "cancelled",
            };
            assert_eq!(
                attr_str(&client_span, "error.type").as_deref(),
                Some(expected),
                "{how:?}/{caller}"
            );
            assert!(
                matches!(client_span.status, Status::Error { .. }),
                "{how:?}/{caller}"
            );
            // Until the drop (or the error): the timer starts before the client span does,
            // so on a busy machine the span can be a little shorter than the limit.
            let took = duration(&client_span);
            let slack = Duration::from_millis(50);
            assert!(
                took >= limit - slack && took <= gave_up + slack,
                "{how:?}/{caller}: {took:?}"
            );

            let server = setup.only(SpanKind::Server);
            assert_eq!(
                attr_str(&server, "error.type").as_deref(),
                Some("cancelled"),
                "{how:?}/{caller}"
            );
            assert!(
                matches!(server.status, Status::Error { .. }),
                "{how:?}/{caller}"
            );
            assert_eq!(attr_str(&server, "http.response.status_code"), None);
            assert!(
                duration(&server) >= limit - Duration::from_millis(50),
                "{how:?}/{caller}"
            );
        }
    }
}

#[tokio::test]
async fn a_logged_error_does_not_make_a_request_an_error() {
    for how in SETUPS {
        let setup = Setup::new(how, SamplingConfig::default());
        let app = Router::new()
            .route(
                "/",
                get(|| async {
                    tracing::error!("a retry failed, the fallback answered");
                    "ok"
                }),
            )
            .layer(setup.server_layer());
        let addr = common::serve(app).await;
        let status = reqwest::get(format!("http://{addr}/"))
            .await
            .expect("response")
            .status();
        assert_eq!(status, 200);
        let server = setup.only(SpanKind::Server);
        assert_eq!(server.status, Status::Unset, "{how:?}");
        // ... and it is still a log line, with the request's ids.
        let lines = setup.logs.json();
        let line = lines
            .iter()
            .find(|l| l["fields"]["message"] == "a retry failed, the fallback answered")
            .unwrap_or_else(|| panic!("{how:?}: {lines:?}"));
        assert_eq!(line["trace_id"], server.span_context.trace_id().to_string());
        assert_eq!(line["span_id"], server.span_context.span_id().to_string());
    }
}

/// Log lines of spawned work carry the request's ids, sampled or not, in every setup: at
/// base rates 1.0, 0.0 and 0.01, without a parent and under a caller's unsampled parent.
#[tokio::test]
async fn spawned_work_keeps_the_ids_in_its_log_lines_sampled_or_dropped() {
    const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER_SPAN: &str = "00f067aa0ba902b7";
    let unsampled = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");
    // (base rate, incoming traceparent, sampled: None when the trace id decides)
    let cases = [
        (1.0, None, Some(true)),
        (0.0, None, Some(false)),
        (0.01, None, None),
        (1.0, Some(unsampled.as_str()), Some(false)),
        (0.01, Some(unsampled.as_str()), Some(false)),
    ];
    for how in SETUPS {
        for (rate, incoming, expected) in cases {
            let case = format!("{how:?} at {rate}, parent {incoming:?}");
            let setup = Setup::new(how, SamplingConfig::default().base_rate(rate));
            let app = Router::new()
                .route(
                    "/",
                    get(|| async {
                        tokio::spawn(async { tracing::warn!("spawned work") }.in_current_trace())
                            .await
                            .expect("task");
                        let cx = opentelemetry::Context::current();
                        use opentelemetry::trace::TraceContextExt as _;
                        let span = cx.span();
                        let sc = span.span_context();
                        format!("{} {} {}", sc.trace_id(), sc.span_id(), sc.is_sampled())
                    }),
                )
                .layer(setup.server_layer());
            let addr = common::serve(app).await;
            let mut request = reqwest::Client::new()
                .get(format!("http://{addr}/"))
                .header("x-correlation-id", "job-1");
            if let Some(traceparent) = incoming {
                request = request.header("traceparent", traceparent);
            }
            let ids = request
                .send()
                .await
                .expect("response")
                .text()
                .await
                .expect("body");
            let mut ids = ids.split(' ');
            let (trace_id, span_id, sampled) = (
                ids.next().expect("trace id"),
                ids.next().expect("span id"),
                ids.next().expect("sampled") == "true",
            );
            if let Some(expected) = expected {
                assert_eq!(sampled, expected, "{case}");
            }
            if incoming.is_some() {
                // The caller's trace, the request's own span id.
                assert_eq!(trace_id, CALLER_TRACE, "{case}");
                assert_ne!(span_id, CALLER_SPAN, "{case}");
            }
            let lines = setup.logs.json();
            let line = lines
                .iter()
                .find(|l| l["fields"]["message"] == "spawned work")
                .unwrap_or_else(|| panic!("{case}: {lines:?}"));
            assert_eq!(line["trace_id"], trace_id, "{case}");
            assert_eq!(line["span_id"], span_id, "{case}");
            assert_eq!(line["correlation_id"], "job-1", "{case}");
            assert_eq!(setup.spans().len(), usize::from(sampled), "{case}");
        }
    }
}

/// The shape of a log line: JSON, its sorted keys; text, its words with every value and
/// the timestamp left out (`trace_id=…` becomes `trace_id`).
fn shape(format: LogFormat, line: &str) -> Vec<String> {
    match format {
        LogFormat::Json => {
            let json: serde_json::Value = serde_json::from_str(line).expect("json");
            let mut keys: Vec<String> = json.as_object().expect("object").keys().cloned().collect();
            keys.sort();
            keys
        }
        _ => line
            .split_whitespace()
            .skip(1)
            .map(|word| word.split('=').next().unwrap_or(word).to_owned())
            .collect(),
    }
}

/// A client-chosen 60 KB path and 2 KB user agent never reach a log line, text or JSON, and
/// sampled and dropped requests log lines of the same shape.
#[tokio::test]
async fn log_lines_do_not_carry_client_chosen_span_fields() {
    for format in [LogFormat::Json, LogFormat::Text] {
        for how in SETUPS {
            let mut shapes = Vec::new();
            for rate in [1.0, 0.0] {
                let case = format!("{format:?}/{how:?} at {rate}");
                let setup =
                    Setup::with_log_format(how, SamplingConfig::default().base_rate(rate), format);
                let app = Router::new()
                    .route(
                        "/{*path}",
                        get(|| async {
                            tracing::warn!("handling");
                            "ok"
                        }),
                    )
                    .layer(setup.server_layer());
                let addr = common::serve(app).await;
                let path = "p".repeat(60_000);
                let response = reqwest::Client::new()
                    .get(format!("http://{addr}/{path}"))
                    .header("user-agent", "u".repeat(2_000))
                    .send()
                    .await
                    .expect("response");
                assert_eq!(response.status(), 200);
                let lines = setup.logs.lines();
                let line = lines
                    .iter()
                    .find(|l| l.contains("handling"))
                    .unwrap_or_else(|| panic!("{case}: {lines:?}"));
                assert!(line.len() < 512, "{case}: a {}-byte log line", line.len());
                assert!(
                    !line.contains("pppp") && !line.contains("uuuu"),
                    "{case}: {line}"
                );
                assert!(line.contains("trace_id"), "{case}: {line}");
                shapes.push(shape(format, line));
                if rate == 1.0 {
                    // The span has the path, bounded.
                    let server = setup.only(SpanKind::Server);
                    let recorded = attr_str(&server, "url.path").expect("url.path");
                    assert!(
                        recorded.len() <= 4096,
                        "{case}: url.path of {}",
                        recorded.len()
                    );
                    assert!(recorded.starts_with("/ppp"));
                }
            }
            assert_eq!(
                shapes[0], shapes[1],
                "{format:?}/{how:?}: sampled and dropped lines differ"
            );
        }
    }
}

/// The opt-in `fmt_layer_with_span_fields`, composed from `build()`'s layers (the manager
/// has no setting for it): it prints the fields of the user's own `tracing` spans, and
/// still never the request's HTTP attributes (the server span is an OpenTelemetry span, not
/// a `tracing` span).
#[tokio::test]
async fn the_span_fields_opt_in_prints_the_fields_of_tracing_spans_only() {
    use tracing::Instrument as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let logs = common::Logs::default();
    let (manager, layers) = meshtrace::TracingManager::builder()
        .span_exporter(exporter.clone())
        .build()
        .expect("manager");
    let subscriber = tracing_subscriber::registry().with(layers.span_layer).with(
        meshtrace::logging::fmt_layer_with_span_fields(LogFormat::Json, logs.clone())
            .with_filter(layers.log_filter),
    );
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = Router::new()
        .route(
            "/{*path}",
            get(|| {
                async {
                    tracing::warn!("charging");
                    "ok"
                }
                .instrument(tracing::info_span!("charge", order = 7))
            }),
        )
        .layer(manager.server_layer());
    let addr = common::serve(app).await;
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/{}", "p".repeat(60_000)))
        .header("user-agent", "u".repeat(2_000))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    manager.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    let charge = spans
        .iter()
        .find(|s| s.name == "charge")
        .expect("the user span");

    let lines = logs.json();
    let line = lines
        .iter()
        .find(|l| l["fields"]["message"] == "charging")
        .unwrap_or_else(|| panic!("{lines:?}"));
    // The user span's field, with the ids of that span.
    assert_eq!(line["span"]["name"], "charge", "{line}");
    assert_eq!(line["span"]["order"], 7, "{line}");
    assert_eq!(line["trace_id"], charge.span_context.trace_id().to_string());
    assert_eq!(line["span_id"], charge.span_context.span_id().to_string());
    // Not the request's path or user agent: the line stays short.
    let text = line.to_string();
    assert!(text.len() < 1024, "a {}-byte log line", text.len());
    assert!(!text.contains("pppp") && !text.contains("uuuu"), "{text}");
}

/// A streaming body's producer runs in the connection's task, not the handler's: its
/// log lines still carry the request's ids.
#[tokio::test]
async fn a_streaming_body_logs_with_the_request_ids() {
    for how in SETUPS {
        for rate in [1.0, 0.0] {
            let setup = Setup::new(how, SamplingConfig::default().base_rate(rate));
            let app = Router::new()
                .route(
                    "/events",
                    get(|| async {
                        let events = futures_util::stream::iter(0..2).then(|i| async move {
                            tokio::task::yield_now().await;
                            tracing::warn!(event = i, "sending an event");
                            Ok::<_, Infallible>(Bytes::from(format!("event {i}\n")))
                        });
                        Body::from_stream(events)
                    }),
                )
                .layer(setup.server_layer());
            let addr = common::serve(app).await;
            let response = reqwest::Client::new()
                .get(format!("http://{addr}/events"))
                .header("x-correlation-id", "sse-1")
                .send()
                .await
                .expect("response");
            let trace_id = response.headers().get("x-correlation-id").cloned();
            assert_eq!(trace_id.as_ref().map(|v| v.as_bytes()), Some(&b"sse-1"[..]));
            assert_eq!(response.text().await.expect("body"), "event 0\nevent 1\n");
            let lines: Vec<serde_json::Value> = setup
                .logs
                .json()
                .into_iter()
                .filter(|l| l["fields"]["message"] == "sending an event")
                .collect();
            assert_eq!(lines.len(), 2, "{how:?} at {rate}");
            for line in &lines {
                assert_eq!(line["correlation_id"], "sse-1", "{how:?} at {rate}: {line}");
                assert_eq!(line["trace_id"].as_str().map(str::len), Some(32));
            }
            if rate == 1.0 {
                let server = setup.only(SpanKind::Server);
                assert_eq!(
                    lines[0]["span_id"],
                    server.span_context.span_id().to_string()
                );
            }
        }
    }
}
