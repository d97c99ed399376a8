//! One limit for every string meshtrace records on a span: the configured
//! `span_limits.max_attribute_value_length`, applied where the value is recorded (server,
//! client, `#[traced]`) and again by the export gate, with no floor of its own.
//!
//! The same requests go through the manager's pipeline (recording and export gate) and
//! through a hand-built provider that has no export gate: what the hand-built provider
//! exports is what was recorded. This is its own test binary because the limit is
//! process-wide (a `#[traced]` function has no handle to a manager): the manager built last
//! sets it, so no other test may build one while this one runs.
#![cfg(all(feature = "axum", feature = "reqwest", feature = "macros"))]

mod common;

use axum::Router;
use axum::routing::get;
use common::setup::{How, Setup};
use meshtrace::TracingManager;
use meshtrace::config::SpanLimitsConfig;
use meshtrace::sampler::SamplingConfig;
use meshtrace::server::TracingLayer;
use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use reqwest_middleware::ClientWithMiddleware;

/// A `#[traced]` function failing with a long message.
#[meshtrace::traced]
async fn charge(message: String) -> Result<(), String> {
    Err(message)
}

/// Sends `GET /<1000 x p>` with a 1000-byte user agent to a service whose handler calls
/// `charge` and then a downstream service at a 1000-byte URL through `client`.
async fn requests(layer: TracingLayer, client: ClientWithMiddleware) {
    let downstream = common::serve(Router::new().route("/{*path}", get(|| async { "ok" }))).await;
    let app = Router::new()
        .route(
            "/{*path}",
            get(move || {
                let client = client.clone();
                async move {
                    let _ = charge("e".repeat(1000)).await;
                    let url = format!("http://{downstream}/{}", "q".repeat(1000));
                    let response = client.get(url).send().await.expect("downstream");
                    assert_eq!(response.status(), 200);
                    "ok"
                }
            }),
        )
        .layer(layer);
    let addr = common::serve(app).await;
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/{}", "p".repeat(1000)))
        .header("user-agent", "u".repeat(1000))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
}

fn attr(span: &SpanData, key: &str) -> String {
    common::attr_str(span, key).unwrap_or_else(|| panic!("no {key} on {}", span.name))
}

/// Every client-chosen or unbounded string is cut to exactly `limit` bytes, and no string
/// on any span is longer.
fn check(spans: &[SpanData], limit: usize, pipeline: &str) {
    let case = format!("{pipeline}, limit {limit}");
    let of_kind = |kind: SpanKind| {
        spans
            .iter()
            .find(|s| s.span_kind == kind)
            .unwrap_or_else(|| panic!("{case}: no {kind:?} span in {spans:#?}"))
    };
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server && attr(s, "url.path").starts_with("/p"))
        .unwrap_or_else(|| panic!("{case}: no server span in {spans:#?}"));
    assert_eq!(attr(server, "url.path").len(), limit, "{case}");
    assert_eq!(attr(server, "user_agent.original").len(), limit, "{case}");
    assert_eq!(
        attr(of_kind(SpanKind::Client), "url.full").len(),
        limit,
        "{case}"
    );

    let traced = spans
        .iter()
        .find(|s| s.name == "charge")
        .unwrap_or_else(|| panic!("{case}: no #[traced] span"));
    assert_eq!(traced.status, Status::error("e".repeat(limit)), "{case}");
    let exception = traced.events.events.first().expect("an exception event");
    let message = exception
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.message")
        .map(|kv| kv.value.as_str().into_owned());
    assert_eq!(message, Some("e".repeat(limit)), "{case}");

    for span in spans {
        let events = span.events.events.iter().flat_map(|e| e.attributes.iter());
        // `target`, `thread.*` and `code.*` are tracing-opentelemetry's own, not recorded
        // by meshtrace (the hand-built subscriber keeps its defaults).
        let recorded = span.attributes.iter().chain(events).filter(|kv| {
            let key = kv.key.as_str();
            key != "target" && !key.starts_with("thread.") && !key.starts_with("code.")
        });
        for kv in recorded {
            if let Value::String(s) = &kv.value {
                assert!(
                    s.as_str().len() <= limit,
                    "{case}: {} = {s} on {}",
                    kv.key,
                    span.name
                );
            }
        }
    }
}

#[tokio::test]
async fn the_configured_value_length_bounds_every_string_where_it_is_recorded() {
    // 8 is below the floor of 16 that recording once had of its own.
    for limit in [64_u32, 8] {
        let exporter = InMemorySpanExporter::default();
        let (manager, layers) = TracingManager::builder()
            .span_limits(SpanLimitsConfig::default().max_attribute_value_length(limit))
            .span_exporter(exporter.clone())
            .log_writer(std::io::sink)
            .build()
            .expect("manager");
        {
            let _guard = tracing::subscriber::set_default(layers.into_subscriber());
            let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                .with(manager.reqwest_middleware())
                .build();
            requests(manager.server_layer(), client).await;
            manager.force_flush().expect("flush");
            let spans = exporter.get_finished_spans().expect("spans");
            check(&spans, limit as usize, "the manager's pipeline");
        }
        // No export gate: the spans are exported as they were recorded.
        let setup = Setup::new(How::HandBuilt, SamplingConfig::default());
        requests(setup.server_layer(), setup.reqwest()).await;
        check(&setup.spans(), limit as usize, "recorded (no export gate)");
        drop(setup);
        drop(manager);
    }
}
