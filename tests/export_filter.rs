//! The export filter through the manager's pipeline and a real Router: matching leaf spans
//! are dropped before export and counted per rule; a matching span with children is kept,
//! including one whose child is still running when it ends, so no exported span points to
//! a parent that was filtered out.
#![cfg(all(feature = "reqwest", feature = "axum"))]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use meshtrace::TracingManager;
use meshtrace::export::{ExportFilterConfig, FilterRule, FilterRuleStats};
use meshtrace::sampler::{RuleSpanKind, SamplingConfig};
use opentelemetry::trace::{SpanId, SpanKind};
use opentelemetry_sdk::trace::InMemorySpanExporter;
use tokio::sync::watch;
use tracing::Instrument as _;

async fn work() -> &'static str {
    // A short internal leaf: dropped by `short-internal`.
    async {}.instrument(tracing::info_span!("quick")).await;
    // A long leaf named `cache.*`: dropped by `cache`.
    tokio::time::sleep(Duration::from_millis(60))
        .instrument(tracing::info_span!("cache.get"))
        .await;
    // A short internal span with a child: its child (`cache.put`) is dropped, it is kept.
    async {
        async {}.instrument(tracing::info_span!("cache.put")).await;
    }
    .instrument(tracing::info_span!("batch"))
    .await;
    // A long internal leaf that no rule matches.
    tokio::time::sleep(Duration::from_millis(60))
        .instrument(tracing::info_span!("render"))
        .await;
    "done"
}

#[tokio::test]
async fn matching_leaves_are_dropped_and_counted_and_the_tree_stays_whole() {
    let exporter = InMemorySpanExporter::default();
    let (manager, layers) = TracingManager::builder()
        .sampling(SamplingConfig::default())
        .export_filter(
            ExportFilterConfig::default()
                .rule(
                    FilterRule::new("short-internal")
                        .kind(RuleSpanKind::Internal)
                        .shorter_than(Duration::from_millis(50)),
                )
                .rule(FilterRule::new("cache").span_name("cache.*"))
                .rule(FilterRule::new("health").attribute("http.route", "/health"))
                // Client spans are never dropped: their child lives in another service.
                .rule(FilterRule::new("clients").kind(RuleSpanKind::Client)),
        )
        .span_exporter(exporter.clone())
        .log_writer(std::io::sink)
        .build()
        .expect("manager");
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let backend = common::serve(Router::new().route("/b", get(|| async { "b" }))).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(manager.reqwest_middleware())
        .build();
    let app = Router::new()
        .route("/work", get(work))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/call",
            get(move || {
                let client = client.clone();
                async move {
                    let _ = client
                        .get(format!("http://{backend}/b"))
                        .send()
                        .await
                        .expect("backend");
                    "called"
                }
            }),
        )
        .layer(manager.server_layer());
    let addr = common::serve(app).await;
    for path in ["/work", "/health", "/call"] {
        let response = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("response");
        assert_eq!(response.status(), 200, "{path}");
        let _ = response.text().await;
    }

    manager.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["GET", "GET /call", "GET /work", "batch", "render"]);
    // No orphan: every parent is exported, or remote, or none.
    let ids: HashSet<SpanId> = spans.iter().map(|s| s.span_context.span_id()).collect();
    for span in &spans {
        assert!(
            span.parent_span_id == SpanId::INVALID
                || span.parent_span_is_remote
                || ids.contains(&span.parent_span_id),
            "{} lost its parent",
            span.name
        );
    }
    let client_span = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .expect("client span");
    assert_eq!(client_span.name, "GET");

    let filter = manager.stats().filter;
    let counts: Vec<(&str, u64)> = filter
        .rules
        .iter()
        .map(|FilterRuleStats { name, dropped, .. }| (name.as_str(), *dropped))
        .collect();
    assert_eq!(
        counts,
        [
            // `quick`, and `cache.put` (short and internal: the first rule it matches).
            ("short-internal", 2),
            ("cache", 1),
            ("health", 1),
            ("clients", 0)
        ]
    );
    // `batch` (short, internal, with a child) and the client span matched and were kept.
    assert_eq!(filter.kept_with_children, 2);
}

#[tokio::test]
async fn a_child_still_running_when_its_parent_ends_keeps_the_parent() {
    let exporter = InMemorySpanExporter::default();
    let (manager, layers) = TracingManager::builder()
        .sampling(SamplingConfig::default())
        .export_filter(
            ExportFilterConfig::default()
                .rule(FilterRule::new("accept").attribute("http.route", "/accept")),
        )
        .span_exporter(exporter.clone())
        .log_writer(std::io::sink)
        .build()
        .expect("manager");
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let (release_tx, release) = watch::channel(false);
    let app = Router::new()
        .route("/accept", get(common::spawns_work))
        .with_state(release)
        .layer(manager.server_layer());
    let addr = common::serve(app).await;
    let response = reqwest::get(format!("http://{addr}/accept"))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let _ = response.text().await;

    // The server span ends (and is judged by the filter) while `background` still runs.
    let judged =
        |stats: &meshtrace::export::FilterStats| stats.rules[0].dropped + stats.kept_with_children;
    let deadline = Instant::now() + Duration::from_secs(10);
    while judged(&manager.stats().filter) == 0 {
        assert!(Instant::now() < deadline, "the server span never ended");
        tokio::task::yield_now().await;
    }
    release_tx.send(true).expect("release");
    let has_background = || {
        manager.force_flush().expect("flush");
        let spans = exporter.get_finished_spans().expect("spans");
        spans.iter().any(|s| s.name == "background")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_background() {
        assert!(Instant::now() < deadline, "the background span never ended");
        tokio::task::yield_now().await;
    }

    let spans = exporter.get_finished_spans().expect("spans");
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("the server span is kept");
    let background = spans
        .iter()
        .find(|s| s.name == "background")
        .expect("background span");
    assert_eq!(background.parent_span_id, server.span_context.span_id());
    assert!(background.end_time > server.end_time);
    let filter = manager.stats().filter;
    assert_eq!(filter.rules[0].dropped, 0);
    assert_eq!(filter.kept_with_children, 1);
}
