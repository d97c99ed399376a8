//! TracingLayer driven through real axum Routers (in-process and on 127.0.0.1) with the
//! real OpenTelemetry SDK exporting into memory.
#![cfg(feature = "axum")]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::{Telemetry, attr, attr_str, get as request, send, serve, text};
use http::{Response, StatusCode};
use meshtrace::context::TraceFutureExt as _;
use meshtrace::context::{ContextExt, CorrelationId};
use meshtrace::extract::TraceContext;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use tower::{ServiceBuilder, ServiceExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

fn users(telemetry: &Telemetry) -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "alice" }))
        .layer(telemetry.layer())
}

#[tokio::test]
async fn continues_the_incoming_trace_with_a_remote_parent() {
    let telemetry = Telemetry::new();
    let response = send(
        users(&telemetry),
        request("/users/42", &[("traceparent", SAMPLED)]),
    )
    .await;
    assert_eq!(text(response).await, "alice");

    let span = telemetry.span("GET /users/{id}");
    assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(span.parent_span_id.to_string(), PARENT_ID);
    assert!(span.parent_span_is_remote);
    assert_eq!(span.span_kind, SpanKind::Server);
}

#[tokio::test]
async fn starts_a_new_trace_without_or_with_an_invalid_traceparent() {
    let telemetry = Telemetry::new();
    for traceparent in [
        None,
        Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        Some("garbage"),
        Some(&*"0".repeat(10_000)),
    ] {
        let headers: Vec<(&str, &str)> = traceparent
            .map(|t| ("traceparent", t))
            .into_iter()
            .collect();
        let response = send(users(&telemetry), request("/users/1", &headers)).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "traceparent {traceparent:?}"
        );
    }
    let spans = telemetry.spans();
    assert_eq!(spans.len(), 5);
    for span in spans {
        assert_ne!(span.span_context.trace_id().to_string(), TRACE_ID);
        assert!(!span.parent_span_is_remote);
        assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    }
}

#[tokio::test]
async fn unsampled_parent_is_not_exported_but_the_handler_keeps_the_trace() {
    let telemetry = Telemetry::new();
    let app =
        Router::new()
            .route(
                "/",
                get(|trace: TraceContext| async move {
                    format!("{} {}", trace.trace_id, trace.sampled)
                }),
            )
            .layer(telemetry.layer());
    let response = send(app, request("/", &[("traceparent", UNSAMPLED)])).await;
    assert_eq!(text(response).await, format!("{TRACE_ID} false"));
    assert!(telemetry.spans().is_empty());
}

#[tokio::test]
async fn records_http_semantic_convention_attributes() {
    let telemetry = Telemetry::new();
    let response = send(
        users(&telemetry),
        request(
            "/users/42?q=rust&token=s3cr3t&Signature=abc",
            &[("host", "api.example.com:8443"), ("user-agent", "curl/8.5")],
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    text(response).await;

    let span = telemetry.span("GET /users/{id}");
    let expect = [
        ("http.request.method", "GET"),
        ("url.path", "/users/42"),
        ("url.scheme", "http"),
        ("http.route", "/users/{id}"),
        ("server.address", "api.example.com"),
        ("user_agent.original", "curl/8.5"),
        ("url.query", "q=rust&token=REDACTED&Signature=REDACTED"),
        ("network.protocol.version", "1.1"),
    ];
    for (key, value) in expect {
        assert_eq!(
            attr_str(&span, key).as_deref(),
            Some(value),
            "attribute {key}"
        );
    }
    assert_eq!(
        attr(&span, "server.port"),
        Some(opentelemetry::Value::I64(8443))
    );
    assert_eq!(
        attr(&span, "http.response.status_code"),
        Some(opentelemetry::Value::I64(200))
    );
    assert_eq!(span.status, Status::Unset);
    assert!(
        !format!("{:?}", span.attributes).contains("s3cr3t"),
        "a sensitive query value leaked: {:?}",
        span.attributes
    );
}

#[tokio::test]
async fn never_records_credentials_even_when_asked() {
    let telemetry = Telemetry::new();
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        telemetry
            .layer()
            .record_request_header(http::header::AUTHORIZATION)
            .record_request_header(http::header::COOKIE)
            .record_request_header(http::HeaderName::from_static("x-tenant")),
    );
    send(
        app,
        request(
            "/",
            &[
                ("authorization", "Bearer top-secret"),
                ("cookie", "session=top-secret"),
                ("x-tenant", "acme"),
            ],
        ),
    )
    .await;
    let span = telemetry.span("GET /");
    assert!(!format!("{:?}", span).contains("top-secret"));
    match attr(&span, "http.request.header.x-tenant") {
        Some(opentelemetry::Value::Array(opentelemetry::Array::String(values))) => {
            assert_eq!(values.len(), 1);
            assert_eq!(values[0].as_str(), "acme");
        }
        other => panic!("x-tenant not recorded as a string array: {other:?}"),
    }
}

#[tokio::test]
async fn span_name_uses_the_route_template_or_only_the_method() {
    let telemetry = Telemetry::new();
    // Wrapping the whole Router (outside routing) there is no MatchedPath yet.
    let outer = ServiceBuilder::new()
        .layer(telemetry.layer())
        .service(Router::new().route("/users/{id}", get(|| async { "alice" })));
    let response = outer.oneshot(request("/users/7", &[])).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    send(users(&telemetry), request("/users/7", &[])).await;

    let names: Vec<_> = telemetry.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["GET", "GET /users/{id}"]);
    assert!(names.iter().all(|n| !n.contains("/users/7")));
}

#[tokio::test]
async fn server_errors_are_errors_client_errors_are_not() {
    let telemetry = Telemetry::new();
    let app = Router::new()
        .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .layer(telemetry.layer());
    assert_eq!(send(app.clone(), request("/fail", &[])).await.status(), 503);
    assert_eq!(send(app, request("/missing", &[])).await.status(), 404);

    let fail = telemetry.span("GET /fail");
    assert!(matches!(fail.status, Status::Error { .. }));
    assert_eq!(attr_str(&fail, "error.type").as_deref(), Some("503"));
    assert_eq!(
        attr(&fail, "http.response.status_code"),
        Some(opentelemetry::Value::I64(503))
    );
    let missing = telemetry.span("GET /missing");
    assert_eq!(missing.status, Status::Unset);
    assert_eq!(attr(&missing, "error.type"), None);
}

#[tokio::test]
async fn a_panicking_handler_is_recorded_and_the_span_ends() {
    let telemetry = Telemetry::new();
    let app = Router::new()
        .route(
            "/boom",
            get(|| async {
                if true {
                    panic!("handler exploded");
                }
                "unreachable"
            }),
        )
        .layer(telemetry.layer());
    let response = send(app, request("/boom", &[("x-correlation-id", "panic-1")])).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-correlation-id"], "panic-1");
    text(response).await;

    let span = telemetry.span("GET /boom");
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(attr_str(&span, "error.type").as_deref(), Some("panic"));
    let event = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("exception event");
    assert!(format!("{:?}", event.attributes).contains("handler exploded"));
}

#[tokio::test]
async fn inner_service_errors_are_recorded_with_error_type() {
    let telemetry = Telemetry::new();
    #[derive(Debug)]
    struct Refused;
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("upstream refused")
        }
    }
    let service = ServiceBuilder::new()
        .layer(telemetry.layer())
        .service_fn(|_req: http::Request<Body>| async { Err::<Response<Body>, _>(Refused) });
    let error = service.oneshot(request("/", &[])).await.unwrap_err();
    assert_eq!(error.to_string(), "upstream refused");

    let span = telemetry.span("GET");
    assert!(matches!(span.status, Status::Error { .. }));
    assert!(attr_str(&span, "error.type").unwrap().ends_with("Refused"));
}

#[tokio::test]
async fn the_span_ends_when_a_streamed_body_ends() {
    let telemetry = Telemetry::new();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<&'static str, Infallible>>(4);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(Some(rx)));
    let app = Router::new()
        .route(
            "/stream",
            get(move || {
                let rx = rx.lock().unwrap().take().expect("one request");
                async move {
                    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|chunk| (chunk, rx))
                    });
                    Body::from_stream(stream)
                }
            }),
        )
        .layer(telemetry.layer());

    let response = send(app, request("/stream", &[])).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Headers are here, the body is not: the span must still be open.
    assert!(telemetry.spans().is_empty(), "span ended at the headers");

    tx.send(Ok("part 1, ")).await.unwrap();
    tx.send(Ok("part 2")).await.unwrap();
    drop(tx);
    assert_eq!(text(response).await, "part 1, part 2");
    let span = telemetry.span("GET /stream");
    assert!(span.end_time >= span.start_time);
}

#[tokio::test]
async fn a_dropped_body_ends_the_span() {
    let telemetry = Telemetry::new();
    let response = send(users(&telemetry), request("/users/1", &[])).await;
    assert!(telemetry.spans().is_empty());
    drop(response);
    telemetry.span("GET /users/{id}");
}

#[tokio::test]
async fn correlation_id_is_accepted_generated_rejected_and_echoed() {
    let telemetry = Telemetry::new();
    let app = || {
        Router::new()
            .route(
                "/",
                get(|cid: CorrelationId| async move { cid.to_string() }),
            )
            .layer(telemetry.layer())
    };

    // Accepted: echoed, visible in the handler, recorded on the span.
    let response = send(
        app(),
        request("/", &[("x-correlation-id", "order-42.a:b_c-d")]),
    )
    .await;
    assert_eq!(response.headers()["x-correlation-id"], "order-42.a:b_c-d");
    assert_eq!(text(response).await, "order-42.a:b_c-d");

    // Fallback header.
    let response = send(app(), request("/", &[("x-request-id", "req-7")])).await;
    assert_eq!(response.headers()["x-correlation-id"], "req-7");
    drop(response);

    // Generated: a UUID v4.
    let response = send(app(), request("/", &[])).await;
    let generated = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(text(response).await, generated);
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    // Rejected: replaced, never echoed or recorded raw.
    for hostile in ["<script>alert(1)</script>", "has space", &"a".repeat(129)] {
        let response = send(app(), request("/", &[("x-correlation-id", hostile)])).await;
        let echoed = response.headers()["x-correlation-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(echoed, hostile);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok());
    }

    let spans = telemetry.spans();
    assert_eq!(spans.len(), 6);
    assert_eq!(
        attr_str(&spans[0], "correlation.id").as_deref(),
        Some("order-42.a:b_c-d")
    );
    for span in &spans[3..] {
        let recorded = attr_str(span, "correlation.id").unwrap();
        assert!(uuid::Uuid::parse_str(&recorded).is_ok(), "{recorded}");
    }
}

#[tokio::test]
async fn custom_correlation_header() {
    let telemetry = Telemetry::new();
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        telemetry
            .layer()
            .correlation_header(http::HeaderName::from_static("x-trace-tag")),
    );
    let response = send(app, request("/", &[("x-trace-tag", "tag-1")])).await;
    assert_eq!(response.headers()["x-trace-tag"], "tag-1");
}

#[tokio::test]
async fn handler_sees_span_baggage_and_correlation_in_the_current_context() {
    let telemetry = Telemetry::new();
    let app = Router::new()
        .route(
            "/",
            get(|trace: TraceContext| async move {
                let cx = opentelemetry::Context::current();
                // A `tracing` span made here is a child of the server span.
                let current_span = tracing::info_span!("child")
                    .context()
                    .span()
                    .span_context()
                    .span_id();
                let cx_span = cx.span().span_context().span_id();
                let user = cx.baggage().get("userId").map(|v| v.to_string());
                let cid = cx.correlation_id().map(|c| c.to_string());
                let extracted_user = trace.baggage().get("userId").map(|v| v.to_string());
                format!("{current_span} {cx_span} {user:?} {cid:?} {extracted_user:?}")
            }),
        )
        .layer(telemetry.layer());
    let response = send(
        app,
        request(
            "/",
            &[
                ("traceparent", SAMPLED),
                ("baggage", "userId=alice,tenant=acme"),
                ("x-correlation-id", "c-1"),
            ],
        ),
    )
    .await;
    let body = text(response).await;
    let span = telemetry.span("GET /");
    let child = telemetry.span("child");
    assert_eq!(child.parent_span_id, span.span_context.span_id());
    let (id, child) = (span.span_context.span_id(), child.span_context.span_id());
    assert_eq!(
        body,
        format!("{child} {id} Some(\"alice\") Some(\"c-1\") Some(\"alice\")")
    );
}

#[tokio::test]
async fn spawned_work_instrumented_with_the_span_keeps_the_trace() {
    let telemetry = Telemetry::new();
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                let task = tokio::spawn(
                    async {
                        let cx = opentelemetry::Context::current();
                        let trace_id = cx.span().span_context().trace_id();
                        let cid = cx.correlation_id().map(|c| c.to_string());
                        tracing::info_span!("background").in_scope(|| ());
                        format!("{trace_id} {cid:?}")
                    }
                    .in_current_trace(),
                );
                task.await.unwrap()
            }),
        )
        .layer(telemetry.layer());
    let response = send(
        app,
        request(
            "/",
            &[("traceparent", SAMPLED), ("x-correlation-id", "c-9")],
        ),
    )
    .await;
    assert_eq!(text(response).await, format!("{TRACE_ID} Some(\"c-9\")"));

    let server = telemetry.span("GET /");
    let background = telemetry.span("background");
    assert_eq!(background.parent_span_id, server.span_context.span_id());
    assert_eq!(
        background.span_context.trace_id(),
        server.span_context.trace_id()
    );
}

#[tokio::test]
async fn skipped_requests_are_not_traced_but_get_a_correlation_id() {
    let telemetry = Telemetry::new();
    let app = Router::new()
        .route(
            "/health",
            get(|cid: CorrelationId| async move { cid.to_string() }),
        )
        .route("/work", get(|| async { "done" }))
        .layer(telemetry.layer().skip_if(|req| req.uri.path() == "/health"));
    let response = send(
        app.clone(),
        request("/health", &[("x-correlation-id", "probe-1")]),
    )
    .await;
    assert_eq!(response.headers()["x-correlation-id"], "probe-1");
    assert_eq!(text(response).await, "probe-1");
    send(app, request("/work", &[])).await;

    let names: Vec<_> = telemetry.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["GET /work"]);
}

#[tokio::test]
async fn a_quiet_log_filter_changes_no_span() {
    // A registry-wide EnvFilter that turns meshtrace off: the server span is an
    // OpenTelemetry span, so the handler still sees it and it is still exported.
    let telemetry = Telemetry::with_filter("error,meshtrace=off");
    let app = Router::new()
        .route(
            "/",
            get(|trace: TraceContext| async move {
                let cx = opentelemetry::Context::current();
                let span = cx.span();
                let sc = span.span_context();
                format!(
                    "{} {} {}",
                    sc.trace_id(),
                    sc.span_id(),
                    cx.baggage()
                        .get("tenant")
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                ) + &format!(" {}", trace.span_id)
            }),
        )
        .layer(telemetry.layer());
    let response = send(
        app,
        request("/", &[("traceparent", SAMPLED), ("baggage", "tenant=acme")]),
    )
    .await;
    let body = text(response).await;
    let span = telemetry.span("GET /");
    let id = span.span_context.span_id();
    assert_eq!(body, format!("{TRACE_ID} {id} acme {id}"));
    assert_eq!(span.parent_span_id.to_string(), PARENT_ID);
}

#[tokio::test]
async fn extractors_without_the_layer_reject_with_a_helpful_500() {
    let app = Router::new()
        .route(
            "/cid",
            get(|cid: CorrelationId| async move { cid.to_string() }),
        )
        .route(
            "/trace",
            get(|t: TraceContext| async move { t.trace_id.to_string() }),
        );
    for path in ["/cid", "/trace"] {
        let response = send(app.clone(), request(path, &[])).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text(response).await.contains("TracingLayer"));
    }
}

#[tokio::test]
async fn hostile_headers_never_fail_the_request() {
    let telemetry = Telemetry::new();
    let huge = "k=v,".repeat(5_000);
    let many_members = (0..100)
        .map(|i| format!("k{i}={i}"))
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("traceparent", SAMPLED), ("tracestate", &huge)],
        vec![("traceparent", SAMPLED), ("tracestate", "=,,=,a=b=c")],
        vec![("baggage", &huge)],
        vec![("baggage", "%%%,=,;;;,k=%ZZ")],
        vec![("traceparent", SAMPLED), ("tracestate", &many_members)],
        vec![("x-correlation-id", ""), ("x-request-id", "\t")],
    ];
    for headers in &cases {
        let response = send(users(&telemetry), request("/users/1", headers)).await;
        assert_eq!(response.status(), StatusCode::OK, "{headers:?}");
        text(response).await;
    }
    assert_eq!(telemetry.spans().len(), cases.len());
}

#[tokio::test]
async fn concurrent_requests_on_a_real_server_do_not_share_context() {
    let telemetry = Telemetry::new();
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                let before = opentelemetry::Context::current();
                let cid = before.correlation_id().map(|c| c.to_string());
                let user = before.baggage().get("user").map(|v| v.to_string());
                // Let the other requests run in between.
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                }
                let after = opentelemetry::Context::current();
                let cid_after = after.correlation_id().map(|c| c.to_string());
                let user_after = after.baggage().get("user").map(|v| v.to_string());
                assert_eq!(cid, cid_after);
                assert_eq!(user, user_after);
                format!("{} {}", cid.unwrap_or_default(), user.unwrap_or_default())
            }),
        )
        .layer(telemetry.layer());
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    let calls = (0..20).map(|i| {
        let client = client.clone();
        async move {
            let body = client
                .get(format!("http://{addr}/"))
                .header("x-correlation-id", format!("req-{i}"))
                .header("baggage", format!("user=u{i}"))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert_eq!(body, format!("req-{i} u{i}"));
        }
    });
    futures_util::future::join_all(calls).await;
}

#[tokio::test]
async fn tower_http_request_ids_and_correlation_ids_agree_in_either_order() {
    use meshtrace::server::MakeCorrelationId;
    use tower_http::request_id::{MakeRequestUuid, RequestId, SetRequestIdLayer};
    let telemetry = Telemetry::new();
    let handler = get(
        |cid: CorrelationId, request: http::Request<Body>| async move {
            let request_id = request
                .extensions()
                .get::<RequestId>()
                .map(|id| id.header_value().to_str().unwrap_or_default().to_owned());
            format!("{cid} {}", request_id.unwrap_or_default())
        },
    );
    // `Router::layer`: the layer added last runs first.
    let set_id_first = Router::new()
        .route("/", handler.clone())
        .layer(telemetry.layer())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    // Ours first: `MakeCorrelationId` hands tower-http the correlation id.
    let ours_first = Router::new()
        .route("/", handler.clone())
        .layer(SetRequestIdLayer::x_request_id(MakeCorrelationId))
        .layer(telemetry.layer());
    for (order, app) in [
        ("set-request-id first", set_id_first),
        ("ours first", ours_first),
    ] {
        for sent in [None, Some("order-9")] {
            let headers: Vec<(&str, &str)> = sent
                .map(|id| ("x-correlation-id", id))
                .into_iter()
                .collect();
            let response = send(app.clone(), request("/", &headers)).await;
            let echoed = response.headers()["x-correlation-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = text(response).await;
            let (cid, request_id) = body.split_once(' ').unwrap();
            assert_eq!(cid, echoed, "{order}, sent {sent:?}");
            // One id for the request whichever runs first.
            assert_eq!(request_id, cid, "{order}, sent {sent:?}");
            match (order, sent) {
                // SetRequestIdLayer first made the id: it is the correlation id.
                ("set-request-id first", _) => {
                    assert!(uuid::Uuid::parse_str(cid).is_ok(), "{order}: {cid}")
                }
                // Our layer first: the client's id, or ours, reaches SetRequestIdLayer.
                (_, Some(sent)) => assert_eq!(cid, sent),
                (_, None) => assert!(uuid::Uuid::parse_str(cid).is_ok()),
            }
        }
    }

    // SetRequestIdLayer first keeps a received `x-request-id` as its `RequestId`: that is
    // the correlation id only if it is a valid one. An invalid one (too long, characters
    // outside `[A-Za-z0-9._:-]`, a tab, non-ASCII) never becomes the correlation id, not
    // even through the `x-request-id` fallback: the usual rules pick one, and the request
    // goes on.
    let set_id_first = Router::new()
        .route("/", handler)
        .layer(telemetry.layer())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    let too_long = "r".repeat(129);
    // (headers sent, the correlation id expected; `None`: a new one)
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers, Option<&str>); 6] = [
        (&[("x-request-id", "req-7")], Some("req-7")),
        (&[("x-request-id", &too_long)], None),
        (&[("x-request-id", "two words")], None),
        (&[("x-request-id", "tab\there")], None),
        (&[("x-request-id", "caf\u{e9}")], None),
        (
            &[
                ("x-request-id", "two words"),
                ("x-correlation-id", "order-9"),
            ],
            Some("order-9"),
        ),
    ];
    for (headers, expected) in cases {
        let response = send(set_id_first.clone(), request("/", headers)).await;
        assert_eq!(response.status(), StatusCode::OK, "{headers:?}");
        let echoed = response.headers()["x-correlation-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = text(response).await;
        let (cid, _request_id) = body.split_once(' ').unwrap();
        assert_eq!(cid, echoed, "{headers:?}");
        match expected {
            Some(expected) => assert_eq!(cid, expected, "{headers:?}"),
            None => {
                assert_ne!(cid, headers[0].1, "{headers:?}");
                assert!(uuid::Uuid::parse_str(cid).is_ok(), "{headers:?}: {cid}");
            }
        }
    }

    // The layer never changes the request's headers: the handler sees what was sent.
    let alone =
        Router::new()
            .route(
                "/",
                get(|headers: http::HeaderMap| async move {
                    format!("{:?}", headers.get("x-request-id"))
                }),
            )
            .layer(telemetry.layer());
    let response = send(alone, request("/", &[])).await;
    assert!(response.headers().contains_key("x-correlation-id"));
    assert_eq!(text(response).await, "None");
}

#[tokio::test]
async fn forwarded_headers_count_only_from_a_trusted_proxy() {
    let telemetry = Telemetry::new();
    let proxied = [
        ("forwarded", "for=203.0.113.7;proto=https;host=shop.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "198.51.100.1"),
    ];
    let cases = [
        ("untrusted", telemetry.layer()),
        ("trusted", telemetry.layer().trust_forwarded()),
        (
            "trusted_if_peer_is_the_proxy",
            telemetry.layer().trust_forwarded_if(|request| {
                request
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .is_some_and(|peer| peer.0.ip().is_loopback())
            }),
        ),
        (
            "not_the_proxy",
            telemetry.layer().trust_forwarded_if(|_| false),
        ),
    ];
    for (case, layer) in cases {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        let mut call = reqwest::Client::new().get(format!("http://{addr}/"));
        for (name, value) in proxied {
            call = call.header(name, value);
        }
        assert_eq!(call.send().await.unwrap().status(), 200);
        let span = telemetry.spans().pop().unwrap();
        let trusted = case.starts_with("trusted");
        let expect = |key: &str| attr_str(&span, key);
        assert_eq!(
            expect("network.peer.address").as_deref(),
            Some("127.0.0.1"),
            "{case}"
        );
        if trusted {
            assert_eq!(expect("url.scheme").as_deref(), Some("https"), "{case}");
            assert_eq!(
                expect("server.address").as_deref(),
                Some("shop.example"),
                "{case}"
            );
            assert_eq!(
                expect("client.address").as_deref(),
                Some("203.0.113.7"),
                "{case}"
            );
        } else {
            assert_eq!(expect("url.scheme").as_deref(), Some("http"), "{case}");
            assert_eq!(
                expect("server.address").as_deref(),
                Some("127.0.0.1"),
                "{case}"
            );
            assert_eq!(
                expect("client.address").as_deref(),
                Some("127.0.0.1"),
                "{case}"
            );
        }
    }
}
