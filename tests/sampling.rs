//! CustomSampler behind TracingLayer, through real Routers: what the layer hands the
//! sampler (route template, method, debug header, untrusted edge) changes which
//! requests are exported.
#![cfg(feature = "axum")]

mod common;

use axum::Router;
use axum::routing::{get, post};
use common::{Telemetry, attr_str, get as request, send, text};
use http::Request;
use meshtrace::sampler::{CustomSampler, DebugConfig, SamplingConfig, SamplingRule};
use meshtrace::server::TracingLayer;
#[cfg(feature = "debug-hmac")]
use opentelemetry::trace::TraceId;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
#[cfg(feature = "debug-hmac")]
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
#[cfg(feature = "debug-hmac")]
const SECRET: &str = "a-debug-secret-of-32-bytes-long!";

fn telemetry(config: SamplingConfig) -> Telemetry {
    Telemetry::with_sampler(CustomSampler::new(config).expect("valid config"))
}

fn app(layer: TracingLayer) -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "alice" }))
        .route("/checkout", post(|| async { "paid" }))
        .route(
            "/forward",
            get(|| async {
                // What a client would send downstream from inside the handler.
                let mut headers = http::HeaderMap::new();
                meshtrace::context::inject(&opentelemetry::Context::current(), &mut headers);
                headers
                    .get("tracestate")
                    .map(|v| v.to_str().unwrap_or_default().to_owned())
                    .unwrap_or_default()
            }),
        )
        .layer(layer)
}

#[tokio::test]
async fn a_valid_debug_token_forces_sampling_at_base_rate_zero() {
    #[allow(unused_mut)]
    let mut debug = DebugConfig::default().token("let-me-debug");
    #[cfg(feature = "debug-hmac")]
    {
        debug = debug.hmac_secret(SECRET);
    }
    let telemetry = telemetry(SamplingConfig::default().base_rate(0.0).debug(debug));
    let oversized = "a".repeat(300);
    // (case, request headers, expected to be sampled)
    let cases: &[Case] = &[
        ("no header", vec![], false),
        (
            "allow-listed token",
            vec![("x-debug-trace", "let-me-debug")],
            true,
        ),
        ("wrong token", vec![("x-debug-trace", "let-me-in")], false),
        (
            "oversized token",
            vec![("x-debug-trace", &oversized)],
            false,
        ),
    ];
    assert_sampled(&telemetry, cases).await;
}

type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, bool);

async fn assert_sampled(telemetry: &common::Telemetry, cases: &[Case<'_>]) {
    for (name, headers, sampled) in cases {
        let before = telemetry.spans().len();
        let response = send(app(telemetry.layer()), request("/users/1", headers)).await;
        text(response).await;
        let after = telemetry.spans();
        assert_eq!(after.len() - before, usize::from(*sampled), "case {name}");
        if *sampled {
            let span = after.last().unwrap();
            assert_eq!(
                attr_str(span, "sampling.reason").as_deref(),
                Some("debug"),
                "case {name}"
            );
        }
    }
}

/// The signed form, minted with the wall clock as a caller would: bound to the trace id of
/// the `traceparent` and refused once older than `debug.max_age_secs` (default 300 s).
#[cfg(feature = "debug-hmac")]
#[tokio::test]
async fn an_hmac_debug_token_forces_sampling_for_its_trace_until_it_expires() {
    use meshtrace::sampler::debug_token_for;
    let telemetry = telemetry(
        SamplingConfig::default()
            .base_rate(0.0)
            .debug(DebugConfig::default().hmac_secret(SECRET)),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let id = TraceId::from_hex(TRACE_ID).unwrap();
    let fresh = debug_token_for(SECRET.as_bytes(), id, now);
    let expired = debug_token_for(SECRET.as_bytes(), id, now - 400);
    let cases: &[Case] = &[
        (
            "fresh, unsampled parent",
            vec![("x-debug-trace", &fresh), ("traceparent", UNSAMPLED)],
            true,
        ),
        (
            "fresh, for another trace",
            vec![
                ("x-debug-trace", &fresh),
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
                ),
            ],
            false,
        ),
        (
            "expired",
            vec![("x-debug-trace", &expired), ("traceparent", UNSAMPLED)],
            false,
        ),
    ];
    assert_sampled(&telemetry, cases).await;
}

#[tokio::test]
async fn the_debug_header_name_is_configurable() {
    let telemetry = telemetry(
        SamplingConfig::default()
            .base_rate(0.0)
            .debug(DebugConfig::default().token("t0k3n")),
    );
    let layer = telemetry
        .layer()
        .debug_header(http::HeaderName::from_static("x-trace-me"));
    text(
        send(
            app(layer.clone()),
            request("/users/1", &[("x-debug-trace", "t0k3n")]),
        )
        .await,
    )
    .await;
    assert!(telemetry.spans().is_empty());
    text(send(app(layer), request("/users/1", &[("x-trace-me", "t0k3n")])).await).await;
    assert_eq!(telemetry.spans().len(), 1);
}

#[tokio::test]
async fn rules_by_route_win_over_the_base_rate() {
    let telemetry = telemetry(
        SamplingConfig::default().base_rate(0.0).rule(
            SamplingRule::new("users", 1.0)
                .route("/users/*")
                .method("GET"),
        ),
    );
    text(send(app(telemetry.layer()), request("/users/1", &[])).await).await;
    let checkout = Request::post("/checkout")
        .body(axum::body::Body::empty())
        .unwrap();
    text(send(app(telemetry.layer()), checkout).await).await;

    let spans = telemetry.spans();
    assert_eq!(spans.len(), 1, "only the rule's route is kept");
    assert_eq!(spans[0].name, "GET /users/{id}");
    assert_eq!(
        attr_str(&spans[0], "sampling.reason").as_deref(),
        Some("rule:users")
    );
}

#[tokio::test]
async fn high_value_operations_are_kept_at_their_own_rate() {
    let telemetry = telemetry(
        SamplingConfig::default()
            .base_rate(0.0)
            .high_value("/checkout", "POST"),
    );
    let checkout = Request::post("/checkout")
        .body(axum::body::Body::empty())
        .unwrap();
    text(send(app(telemetry.layer()), checkout).await).await;
    text(send(app(telemetry.layer()), request("/users/1", &[])).await).await;

    let spans = telemetry.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "POST /checkout");
    assert_eq!(
        attr_str(&spans[0], "sampling.reason").as_deref(),
        Some("high_value")
    );
}

#[tokio::test]
async fn an_incoming_threshold_is_preserved_downstream() {
    let telemetry = telemetry(SamplingConfig::default().base_rate(0.0));
    let response = send(
        app(telemetry.layer()),
        request(
            "/forward",
            &[
                ("traceparent", SAMPLED),
                ("tracestate", "ot=th:8,congo=t61rcWkgMzE"),
            ],
        ),
    )
    .await;
    let forwarded = text(response).await;
    assert!(
        forwarded.contains("ot=th:8"),
        "forwarded tracestate {forwarded:?}"
    );
    assert!(
        forwarded.contains("congo=t61rcWkgMzE"),
        "forwarded tracestate {forwarded:?}"
    );

    let span = telemetry.span("GET /forward");
    assert_eq!(span.span_context.trace_state().get("ot"), Some("th:8"));
    // The caller decided; this service followed, so it names no reason of its own.
    assert_eq!(attr_str(&span, "sampling.reason"), None);
}

#[tokio::test]
async fn a_probabilistic_root_decision_is_announced_in_tracestate() {
    let telemetry = telemetry(SamplingConfig::default().base_rate(1.0));
    let forwarded = text(send(app(telemetry.layer()), request("/forward", &[])).await).await;
    assert!(
        forwarded.contains("ot=th:0"),
        "forwarded tracestate {forwarded:?}"
    );
    assert_eq!(telemetry.spans().len(), 1);
}

#[tokio::test]
async fn untrusted_edges_decide_again_instead_of_following_the_caller() {
    let telemetry = telemetry(SamplingConfig::default().base_rate(0.0));
    let layer = telemetry
        .layer()
        .untrusted_if(|req| !req.headers.contains_key("x-internal"));

    // From outside the mesh: the caller's sampled flag is ignored, base rate 0 drops it.
    text(
        send(
            app(layer.clone()),
            request("/users/1", &[("traceparent", SAMPLED)]),
        )
        .await,
    )
    .await;
    assert!(telemetry.spans().is_empty());

    // From inside: parent continuity keeps it, in the caller's trace.
    text(
        send(
            app(layer),
            request("/users/1", &[("traceparent", SAMPLED), ("x-internal", "1")]),
        )
        .await,
    )
    .await;
    let span = telemetry.span("GET /users/{id}");
    assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
}

/// Rate limits through the setup the README recommends (`TracingManager`,
/// `server_layer()`): the layer starts the server span with the route template, so the
/// per-route lower bound sees one key per route, not per path. At base rate 0 each route
/// is seen once (a lower-bound pick, without `th`), whatever its path parameters.
#[tokio::test]
async fn the_lower_bound_keys_on_the_route_template_through_the_manager() {
    use meshtrace::sampler::LimitsConfig;
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let (manager, _layers) = meshtrace::TracingManager::builder()
        .sampling(
            SamplingConfig::default()
                .base_rate(0.0)
                .limits(LimitsConfig::default().lower_bound_traces_per_second(1.0 / 60.0)),
        )
        .span_exporter(exporter.clone())
        .log_writer(std::io::sink)
        .build()
        .expect("valid configuration");
    let layer = manager.server_layer();
    for path in ["/users/1", "/users/2", "/users/3"] {
        text(send(app(layer.clone()), request(path, &[])).await).await;
    }
    let checkout = Request::post("/checkout")
        .body(axum::body::Body::empty())
        .unwrap();
    text(send(app(layer.clone()), checkout).await).await;
    manager.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let mut names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        ["GET /users/{id}", "POST /checkout"],
        "one per route"
    );
    for span in &spans {
        assert_eq!(
            attr_str(span, "sampling.reason").as_deref(),
            Some("lower_bound")
        );
        assert_eq!(span.span_context.trace_state().get("ot"), None, "no th");
    }
    let stats = manager.sampler().stats();
    assert_eq!((stats.lower_bound, stats.dropped), (2, 2), "{stats:?}");
    assert_eq!(stats.tracked_keys, 2);
}
