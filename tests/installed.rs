//! After `TracingManager::install()`, the layers built with `new()` are the manager's:
//! `TracingLayer::new()` behaves as `telemetry.server_layer()` for every documented
//! option, and the clients' `new()` start their spans from the installed provider.
//!
//! Its own test binary: `install()` sets process-wide state (the global subscriber).
#![cfg(all(feature = "reqwest", feature = "axum"))]

mod common;

use axum::Router;
use axum::routing::get;
use meshtrace::TracingManager;
use meshtrace::client::ReqwestTracingMiddleware;
use meshtrace::sampler::{DebugConfig, DeferredConfig, SamplingConfig, SamplingRule};
use meshtrace::server::TracingLayer;
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

/// What a reader of the trace sees of a span, without its ids and times.
fn shape(span: &SpanData) -> (String, Vec<(String, String)>) {
    let mut attributes: Vec<(String, String)> = span
        .attributes
        .iter()
        .filter(|kv| !["correlation.id", "server.port"].contains(&kv.key.as_str()))
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    attributes.sort();
    (span.name.to_string(), attributes)
}

#[tokio::test]
async fn layers_built_with_new_are_the_installed_managers() {
    let exporter = InMemorySpanExporter::default();
    let telemetry = TracingManager::builder()
        .sampling(
            SamplingConfig::default()
                .base_rate(0.0)
                .rule(SamplingRule::new("orders", 1.0).route("/orders/{id}"))
                .debug(DebugConfig::default().token("let-me-debug"))
                // The early decision: requests the base rate drops are deferred, and a
                // failing one is exported (with `traceresponse` to its caller).
                .deferred(
                    DeferredConfig::default()
                        .enabled(true)
                        .max_per_second(1_000_000),
                ),
        )
        .span_exporter(exporter.clone())
        .log_writer(std::io::sink)
        .install()
        .expect("install");

    let app = |layer: TracingLayer| {
        Router::new()
            .route("/orders/{id}", get(|| async { "order" }))
            .route("/users/{id}", get(|| async { "user" }))
            .route(
                "/fail/{id}",
                get(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "failed") }),
            )
            .layer(layer)
    };
    let by_new = common::serve(app(TracingLayer::new())).await;
    let by_manager = common::serve(app(telemetry.server_layer())).await;
    let client = reqwest::Client::new();

    // (path, headers): a rule keeps orders, the base rate drops users, a debug token
    // keeps a user, parents are followed, a dropped request that fails is kept by
    // deferred capture.
    let requests: [(&str, &[(&str, &str)]); 7] = [
        ("/orders/1", &[]),
        ("/users/1", &[]),
        ("/users/2", &[("x-debug-trace", "let-me-debug")]),
        ("/users/3", &[("traceparent", SAMPLED)]),
        ("/orders/4", &[("traceparent", UNSAMPLED)]),
        ("/fail/5", &[]),
        // A caller that did not sample hears that this service kept the trace.
        ("/fail/6", &[("traceparent", UNSAMPLED)]),
    ];
    let mut shapes = Vec::new();
    let mut answers = Vec::new();
    for addr in [by_new, by_manager] {
        let mut answered = Vec::new();
        for (path, headers) in requests {
            let mut call = client.get(format!("http://{addr}{path}"));
            for (name, value) in headers {
                call = call.header(*name, *value);
            }
            let response = call.send().await.expect("response");
            let expected = if path.starts_with("/fail") { 500 } else { 200 };
            assert_eq!(response.status(), expected);
            answered.push((path, response.headers().contains_key("traceresponse")));
        }
        answers.push(answered);
        telemetry.force_flush().expect("flush");
        let spans = exporter.get_finished_spans().expect("spans");
        exporter.reset();
        let mut servers: Vec<_> = spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Server)
            .map(shape)
            .collect();
        servers.sort();
        shapes.push(servers);
    }
    let names: Vec<&str> = shapes[0].iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "GET /fail/{id}",
            "GET /fail/{id}",
            "GET /orders/{id}",
            "GET /users/{id}",
            "GET /users/{id}"
        ]
    );
    for (_, failed) in &shapes[0][..2] {
        assert!(
            failed.contains(&("sampling.reason".into(), "error".into())),
            "{failed:?}"
        );
    }
    assert_eq!(
        shapes[0], shapes[1],
        "TracingLayer::new() and server_layer() differ"
    );
    assert_eq!(
        answers[0], answers[1],
        "TracingLayer::new() and server_layer() answer traceresponse differently"
    );
    assert!(answers[0].contains(&("/fail/6", true)), "{:?}", answers[0]);

    // `ReqwestTracingMiddleware::new()` starts its span from the installed provider too.
    use opentelemetry::context::FutureExt as _;
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", http::HeaderValue::from_static(SAMPLED));
    let parent = meshtrace::context::extract(&headers);
    let traced = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(ReqwestTracingMiddleware::new())
        .build();
    let status = traced
        .get(format!("http://{by_new}/users/9"))
        .send()
        .with_context(parent)
        .await
        .expect("response")
        .status();
    assert_eq!(status, 200);
    telemetry.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    let client = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .expect("a client span");
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("a server span");
    assert_eq!(client.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    telemetry.shutdown().await.expect("shutdown");
}
