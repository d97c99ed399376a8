//! Service A (axum + TracingLayer) calls service B (axum + TracingLayer) on 127.0.0.1
//! through reqwest + ReqwestTracingMiddleware and through hyper-util's client +
//! ClientTracingLayer; the spans come from the real SDK exporting into memory.
#![cfg(all(feature = "reqwest", feature = "axum"))]

mod common;

use meshtrace::context::TraceFutureExt as _;

use axum::Router;
use axum::routing::get;
use common::client::{
    Backend, HyperClient, closed_port, header, hyper_client, hyper_get, hyper_request,
    reqwest_client, traceparent,
};
use common::{Telemetry, attr, attr_str};
use http::StatusCode;
use meshtrace::client::{
    ClientTracingLayer, NoPropagation, PropagationPolicy, ReqwestTracingMiddleware, UrlTemplate,
};
use meshtrace::server::TracingLayer;
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use reqwest_middleware::ClientWithMiddleware;

const TENANT_BAGGAGE: (&str, &str) = ("baggage", "tenant=acme");
const CORRELATION: (&str, &str) = ("x-correlation-id", "order-1234");

/// Service A: `GET /call` calls `target` through the reqwest client `n` times and
/// answers with B's last body.
fn reqwest_gateway(
    telemetry: &Telemetry,
    client: ClientWithMiddleware,
    target: String,
    n: usize,
) -> Router {
    Router::new()
        .route(
            "/call",
            get(move || {
                let (client, target) = (client.clone(), target.clone());
                async move {
                    let mut body = String::new();
                    for _ in 0..n {
                        match client.get(&target).send().await {
                            Ok(response) => body = response.text().await.unwrap_or_default(),
                            Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()),
                        }
                    }
                    (StatusCode::OK, body)
                }
            }),
        )
        .layer(telemetry.layer())
}

/// Service A with the hyper-util client.
fn hyper_gateway(telemetry: &Telemetry, client: HyperClient, target: String) -> Router {
    Router::new()
        .route(
            "/call",
            get(move || {
                let (client, target) = (client.clone(), target.clone());
                async move {
                    match hyper_get(&client, hyper_request(&target)).await {
                        Ok((_, body)) => (StatusCode::OK, body),
                        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
                    }
                }
            }),
        )
        .layer(telemetry.layer())
}

/// Calls A's `/call` with an untraced client (A starts the trace), with baggage and a
/// correlation id.
async fn call_gateway(gateway: Router) -> (StatusCode, String) {
    let addr = common::serve(gateway).await;
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/call"))
        .header(TENANT_BAGGAGE.0, TENANT_BAGGAGE.1)
        .header(CORRELATION.0, CORRELATION.1)
        .send()
        .await
        .expect("A answers");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

fn client_spans(telemetry: &Telemetry) -> Vec<SpanData> {
    telemetry
        .spans()
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect()
}

/// One trace: A server -> A client -> B server, B's parent is the client span, and the
/// traceparent B received names the client span.
fn assert_one_trace_through_the_client(telemetry: &Telemetry, backend: &Backend) {
    let a = telemetry.span("GET /call");
    let client = telemetry.span("GET");
    let b = telemetry.span("GET /echo");
    let trace_id = a.span_context.trace_id();
    assert_eq!(client.span_context.trace_id(), trace_id);
    assert_eq!(b.span_context.trace_id(), trace_id);
    assert_eq!(client.parent_span_id, a.span_context.span_id());
    assert!(!client.parent_span_is_remote);
    assert_eq!(b.parent_span_id, client.span_context.span_id());
    assert!(b.parent_span_is_remote);
    assert_eq!(client.span_kind, SpanKind::Client);
    assert_eq!(client.status, Status::Unset);

    let (tid, parent, flags) = traceparent(&header(&backend.only(), "traceparent").unwrap());
    assert_eq!(tid, trace_id.to_string());
    assert_eq!(parent, client.span_context.span_id().to_string());
    // A started the trace: sampled (0x01) and, as a root with a random id, 0x02.
    assert_eq!(flags, "03");

    let port = i64::from(backend.addr.port());
    assert_eq!(
        attr_str(&client, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attr_str(&client, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(attr(&client, "server.port"), Some(Value::I64(port)));
    assert_eq!(
        attr_str(&client, "url.full"),
        Some(format!("http://127.0.0.1:{port}/echo"))
    );
    assert_eq!(
        attr(&client, "http.response.status_code"),
        Some(Value::I64(200))
    );
    assert_eq!(attr(&client, "error.type"), None);
}

#[tokio::test]
async fn reqwest_call_continues_the_trace_from_a_to_b() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    let (status, body) =
        call_gateway(reqwest_gateway(&telemetry, client, backend.url("/echo"), 1)).await;
    assert_eq!(status, StatusCode::OK);
    // Baggage and correlation id arrived in B's handler.
    assert_eq!(body, "cid=order-1234 tenant=acme");
    assert_one_trace_through_the_client(&telemetry, &backend);
}

#[tokio::test]
async fn hyper_call_continues_the_trace_from_a_to_b() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = hyper_client(telemetry.client_layer());
    let (status, body) =
        call_gateway(hyper_gateway(&telemetry, client, backend.url("/echo"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "cid=order-1234 tenant=acme");
    assert_one_trace_through_the_client(&telemetry, &backend);
}

#[tokio::test]
async fn tracestate_is_forwarded() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    let addr = common::serve(reqwest_gateway(&telemetry, client, backend.url("/echo"), 1)).await;
    reqwest::Client::new()
        .get(format!("http://{addr}/call"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("tracestate", "congo=t61rcWkgMzE")
        .send()
        .await
        .unwrap();
    let received = backend.only();
    assert_eq!(
        header(&received, "tracestate").as_deref(),
        Some("congo=t61rcWkgMzE")
    );
    let (tid, parent, flags) = traceparent(&header(&received, "traceparent").unwrap());
    assert_eq!(tid, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        parent,
        telemetry.span("GET").span_context.span_id().to_string()
    );
    // The caller did not set the random flag, so it is not invented.
    assert_eq!(flags, "01");
}

#[tokio::test]
async fn three_calls_carry_three_parent_ids() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    call_gateway(reqwest_gateway(&telemetry, client, backend.url("/echo"), 3)).await;

    let received = backend.received();
    assert_eq!(received.len(), 3);
    let parents: Vec<(String, String)> = received
        .iter()
        .map(|h| {
            let (tid, parent, _) = traceparent(&header(h, "traceparent").unwrap());
            (tid, parent)
        })
        .collect();
    let trace_id = telemetry
        .span("GET /call")
        .span_context
        .trace_id()
        .to_string();
    assert!(parents.iter().all(|(tid, _)| *tid == trace_id));
    let mut ids: Vec<String> = parents.into_iter().map(|(_, p)| p).collect();
    let mut client_ids: Vec<String> = client_spans(&telemetry)
        .iter()
        .map(|s| s.span_context.span_id().to_string())
        .collect();
    ids.sort();
    client_ids.sort();
    assert_eq!(
        ids, client_ids,
        "each call's parent-id is its own client span"
    );
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

#[tokio::test]
async fn policy_withholds_baggage_and_correlation_from_non_matching_hosts() {
    let telemetry = Telemetry::new();
    // Loopback is not internal here, so 127.0.0.1 stands for a host outside the mesh.
    let external = PropagationPolicy::builder()
        .internal_hosts(["*.svc.cluster.local"])
        .loopback_is_internal(false)
        .build()
        .unwrap();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware().propagation_policy(external));
    let (_, body) =
        call_gateway(reqwest_gateway(&telemetry, client, backend.url("/echo"), 1)).await;
    assert!(body.ends_with("tenant=-"), "{body}");
    assert!(!body.contains("order-1234"), "{body}");
    let received = backend.only();
    assert!(
        header(&received, "traceparent").is_some(),
        "trace context still sent"
    );
    assert_eq!(header(&received, "baggage"), None);
    assert_eq!(header(&received, "x-correlation-id"), None);

    // The same policy with 127.0.0.1 listed sends everything.
    let internal = PropagationPolicy::builder()
        .internal_hosts(["*.svc.cluster.local", "127.0.0.1"])
        .loopback_is_internal(false)
        .build()
        .unwrap();
    let backend = Backend::start(&telemetry).await;
    let client = hyper_client(telemetry.client_layer().propagation_policy(internal));
    let (_, body) = call_gateway(hyper_gateway(&telemetry, client, backend.url("/echo"))).await;
    assert_eq!(body, "cid=order-1234 tenant=acme");
}

#[tokio::test]
async fn disabled_hosts_and_no_propagation_requests_send_no_trace_headers() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;

    let disabled = PropagationPolicy::builder()
        .disable_for_hosts(["127.0.0.1"])
        .build()
        .unwrap();
    let client = reqwest_client(telemetry.middleware().propagation_policy(disabled));
    call_gateway(reqwest_gateway(&telemetry, client, backend.url("/echo"), 1)).await;

    let client = reqwest_client(telemetry.middleware());
    let url = backend.url("/echo");
    let app = Router::new()
        .route(
            "/call",
            get(move || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    client
                        .get(&url)
                        .with_extension(NoPropagation)
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap()
                }
            }),
        )
        .layer(telemetry.layer());
    call_gateway(app).await;

    let hyper = hyper_client(telemetry.client_layer());
    let mut request = hyper_request(&backend.url("/echo"));
    request.extensions_mut().insert(NoPropagation);
    hyper_get(&hyper, request).await.unwrap();

    for received in backend.received() {
        for name in ["traceparent", "tracestate", "baggage", "x-correlation-id"] {
            assert_eq!(header(&received, name), None, "{name} was sent");
        }
    }
    // The calls are still recorded, and B started its own traces.
    let clients = client_spans(&telemetry);
    assert_eq!(clients.len(), 3);
    for b in telemetry.spans().iter().filter(|s| s.name == "GET /echo") {
        assert_eq!(b.parent_span_id, SpanId::INVALID);
    }
}

#[tokio::test]
async fn error_statuses_mark_the_client_span_as_error() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    for code in [503u16, 404] {
        let response = client
            .get(backend.url(&format!("/status/{code}")))
            .send()
            .await
            .expect("an HTTP error status is still a response");
        assert_eq!(response.status().as_u16(), code);
    }
    let hyper = hyper_client(telemetry.client_layer());
    let (status, _) = hyper_get(&hyper, hyper_request(&backend.url("/status/503")))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // A 2xx is not an error.
    client.get(backend.url("/status/204")).send().await.unwrap();

    let clients = client_spans(&telemetry);
    assert_eq!(clients.len(), 4);
    for (span, code) in clients.iter().zip([503i64, 404, 503, 204]) {
        assert_eq!(
            attr(span, "http.response.status_code"),
            Some(Value::I64(code))
        );
        if code >= 400 {
            assert!(matches!(span.status, Status::Error { .. }), "{code}");
            assert_eq!(attr_str(span, "error.type"), Some(code.to_string()));
        } else {
            assert_eq!(span.status, Status::Unset);
            assert_eq!(attr(span, "error.type"), None);
        }
    }
}

fn exception_message(span: &SpanData) -> String {
    let event = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("an exception event");
    event
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.message")
        .map(|kv| kv.value.as_str().into_owned())
        .expect("exception.message")
}

#[tokio::test]
async fn unreachable_backend_is_a_recorded_transport_error() {
    let telemetry = Telemetry::new();
    let down = closed_port();
    let url = format!("http://{down}/echo?token=secret");

    let client = reqwest_client(telemetry.middleware());
    let error = client.get(&url).send().await.expect_err("nothing listens");
    assert!(error.is_connect(), "{error}");
    // The caller's error still names the URL; only the span's copy is stripped.
    assert_eq!(error.url().map(|u| u.as_str()), Some(url.as_str()));

    let hyper = hyper_client(telemetry.client_layer());
    let error = hyper_get(&hyper, hyper_request(&url))
        .await
        .expect_err("nothing listens");
    assert!(error.is_connect(), "{error}");

    let clients = client_spans(&telemetry);
    assert_eq!(clients.len(), 2);
    let (reqwest_span, hyper_span) = (&clients[0], &clients[1]);
    for span in &clients {
        assert!(matches!(span.status, Status::Error { .. }));
        assert_eq!(attr(span, "http.response.status_code"), None);
        assert!(!exception_message(span).contains("secret"));
        assert_eq!(
            attr_str(span, "url.full"),
            Some(format!("http://{down}/echo?token=REDACTED"))
        );
    }
    assert_eq!(
        attr_str(reqwest_span, "error.type").as_deref(),
        Some("connect")
    );
    // The same `error.type` on both clients (feature `hyper` types hyper-util's errors).
    assert_eq!(
        attr_str(hyper_span, "error.type").as_deref(),
        Some("connect")
    );
}

#[tokio::test]
async fn calls_from_spawned_tasks_keep_the_trace() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    let url = backend.url("/echo");
    let app = Router::new()
        .route(
            "/call",
            get(move || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let task = tokio::spawn(
                        async move { client.get(&url).send().await.unwrap().text().await.unwrap() }
                            .in_current_trace(),
                    );
                    task.await.unwrap()
                }
            }),
        )
        .layer(telemetry.layer());
    let (_, body) = call_gateway(app).await;
    assert_eq!(body, "cid=order-1234 tenant=acme");
    assert_one_trace_through_the_client(&telemetry, &backend);
}

#[tokio::test]
async fn background_call_starts_a_random_root_trace() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    client.get(backend.url("/echo")).send().await.unwrap();
    let hyper = hyper_client(telemetry.client_layer());
    hyper_get(&hyper, hyper_request(&backend.url("/echo")))
        .await
        .unwrap();

    let clients = client_spans(&telemetry);
    assert_eq!(clients.len(), 2);
    for (client, received) in clients.iter().zip(backend.received()) {
        assert_eq!(client.parent_span_id, SpanId::INVALID, "a root");
        let (tid, parent, flags) = traceparent(&header(&received, "traceparent").unwrap());
        assert_eq!(tid, client.span_context.trace_id().to_string());
        assert_eq!(parent, client.span_context.span_id().to_string());
        assert_eq!(flags, "03", "sampled + random");
        // No correlation id in the context: none is made up.
        assert_eq!(header(&received, "x-correlation-id"), None);
    }
    assert_ne!(
        clients[0].span_context.trace_id(),
        clients[1].span_context.trace_id()
    );
}

#[tokio::test]
async fn the_client_span_ends_with_the_response_body() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;

    let client = reqwest_client(telemetry.middleware());
    let response = client.get(backend.url("/echo")).send().await.unwrap();
    assert!(
        client_spans(&telemetry).is_empty(),
        "open until the body is read"
    );
    // The rebuilt response keeps what reqwest knew about it.
    assert_eq!(response.url().as_str(), backend.url("/echo"));
    assert_eq!(response.remote_addr(), Some(backend.addr));
    let content_length = response.content_length();
    let text = response.text().await.unwrap();
    assert!(text.starts_with("cid="));
    assert_eq!(content_length, Some(text.len() as u64));
    assert_eq!(client_spans(&telemetry).len(), 1);

    let response = client.get(backend.url("/echo")).send().await.unwrap();
    assert_eq!(client_spans(&telemetry).len(), 1);
    drop(response);
    assert_eq!(
        client_spans(&telemetry).len(),
        2,
        "a dropped body ends the span"
    );

    let hyper = hyper_client(telemetry.client_layer());
    let response = tower::ServiceExt::oneshot(hyper.clone(), hyper_request(&backend.url("/echo")))
        .await
        .unwrap();
    assert_eq!(client_spans(&telemetry).len(), 2);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(body.starts_with(b"cid="));
    assert_eq!(client_spans(&telemetry).len(), 3);
}

#[tokio::test]
async fn url_template_names_the_span_and_url_full_hides_secrets() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    let port = backend.addr.port();
    client
        .get(format!(
            "http://user:hunter2@127.0.0.1:{port}/users/42?api_key=k&page=2&Signature=s"
        ))
        .with_extension(UrlTemplate("/users/{id}"))
        .send()
        .await
        .unwrap();
    let hyper = hyper_client(telemetry.client_layer());
    let mut request = hyper_request(&format!("http://127.0.0.1:{port}/users/7?token=t"));
    request.extensions_mut().insert(UrlTemplate("/users/{id}"));
    hyper_get(&hyper, request).await.unwrap();

    let clients = client_spans(&telemetry);
    assert_eq!(clients.len(), 2);
    assert!(clients.iter().all(|s| s.name == "GET /users/{id}"));
    assert!(
        clients
            .iter()
            .all(|s| attr_str(s, "url.template").as_deref() == Some("/users/{id}"))
    );
    assert_eq!(
        attr_str(&clients[0], "url.full"),
        Some(format!(
            "http://127.0.0.1:{port}/users/42?api_key=REDACTED&page=2&Signature=REDACTED"
        ))
    );
    assert_eq!(
        attr_str(&clients[1], "url.full"),
        Some(format!("http://127.0.0.1:{port}/users/7?token=REDACTED"))
    );
}

#[tokio::test]
async fn a_quiet_log_filter_changes_no_span() {
    // A registry-wide EnvFilter that turns meshtrace's targets off entirely: the server
    // and client spans are OpenTelemetry spans, so they are still traced and exported.
    let telemetry = Telemetry::with_filter("error,meshtrace=off");
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    let (_, body) =
        call_gateway(reqwest_gateway(&telemetry, client, backend.url("/echo"), 1)).await;
    assert_eq!(body, "cid=order-1234 tenant=acme");
    assert_one_trace_through_the_client(&telemetry, &backend);
}

#[tokio::test]
async fn correlation_header_is_configurable_and_never_overwritten() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(
        telemetry
            .middleware()
            .correlation_header(http::HeaderName::from_static("x-request-id")),
    );
    call_gateway(reqwest_gateway(&telemetry, client, backend.url("/echo"), 1)).await;
    let received = backend.only();
    assert_eq!(
        header(&received, "x-request-id").as_deref(),
        Some("order-1234")
    );
    assert_eq!(header(&received, "x-correlation-id"), None);

    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    let url = backend.url("/echo");
    let app = Router::new()
        .route(
            "/call",
            get(move || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    client
                        .get(&url)
                        .header("x-correlation-id", "set-by-caller")
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap()
                }
            }),
        )
        .layer(telemetry.layer());
    let (_, body) = call_gateway(app).await;
    assert_eq!(body, "cid=set-by-caller tenant=acme");
}

#[tokio::test]
async fn an_unsampled_trace_stays_unsampled_downstream() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    let addr = common::serve(reqwest_gateway(&telemetry, client, backend.url("/echo"), 1)).await;
    reqwest::Client::new()
        .get(format!("http://{addr}/call"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
        )
        .send()
        .await
        .unwrap();
    let (tid, parent, flags) = traceparent(&header(&backend.only(), "traceparent").unwrap());
    assert_eq!(tid, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(
        parent, "00f067aa0ba902b7",
        "a new parent-id even when not sampled"
    );
    assert_eq!(flags, "02", "not sampled, random kept");
    assert!(telemetry.spans().is_empty());
}

#[tokio::test]
async fn without_a_subscriber_the_current_otel_context_is_handed_on() {
    use meshtrace::context::{self, CorrelationId};
    use opentelemetry::context::FutureExt as _;

    // No SDK (OpenTelemetry's no-op provider): no client span; the attached
    // OpenTelemetry Context is sent as it is.
    let backend = Backend::start_with(TracingLayer::new()).await;
    let mut incoming = http::HeaderMap::new();
    incoming.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"),
    );
    incoming.insert("baggage", http::HeaderValue::from_static("tenant=acme"));
    let cx = context::extract(&incoming).with_value(CorrelationId::parse(b"job-7").unwrap());

    let client = reqwest_client(ReqwestTracingMiddleware::new());
    let body = client
        .get(backend.url("/echo"))
        .send()
        .with_context(cx.clone())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hyper = hyper_client(ClientTracingLayer::new());
    hyper_get(&hyper, hyper_request(&backend.url("/echo")))
        .with_context(cx)
        .await
        .unwrap();

    assert_eq!(body, "cid=job-7 tenant=acme");
    for received in backend.received() {
        assert_eq!(
            header(&received, "traceparent").as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
        );
        assert_eq!(
            header(&received, "x-correlation-id").as_deref(),
            Some("job-7")
        );
    }
}

#[tokio::test]
async fn baggage_the_handler_attaches_is_sent() {
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::BaggageExt as _;
    use opentelemetry::context::FutureExt as _;

    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    let url = backend.url("/echo");
    let app = Router::new()
        .route(
            "/call",
            get(move || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let cx = opentelemetry::Context::current_with_baggage([KeyValue::new(
                        "tenant", "beta",
                    )]);
                    let response = client.get(&url).send().with_context(cx).await.unwrap();
                    response.text().await.unwrap()
                }
            }),
        )
        .layer(telemetry.layer());
    let (_, body) = call_gateway(app).await;
    assert_eq!(body, "cid=order-1234 tenant=beta");
    // Still the client span's child, in A's trace.
    assert_one_trace_through_the_client(&telemetry, &backend);
}

#[tokio::test]
async fn a_timeout_is_recorded_as_timeout() {
    let telemetry = Telemetry::new();
    let backend = Backend::start(&telemetry).await;
    let client = reqwest_client(telemetry.middleware());
    let error = client
        .get(backend.url("/slow"))
        .timeout(std::time::Duration::from_millis(50))
        .send()
        .await
        .expect_err("times out");
    assert!(error.is_timeout(), "{error}");
    let span = telemetry.span("GET");
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(attr_str(&span, "error.type").as_deref(), Some("timeout"));
}
