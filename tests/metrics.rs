//! HTTP metrics through the public API: a real Router, the real SDK, an in-memory metric
//! exporter. Every request is counted, sampled or not; attribute sets stay bounded; the
//! metric's value is the span's duration, to the end of the body.
#![cfg(feature = "axum")]

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::{any, get, post};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use meshtrace::TracingManager;
use meshtrace::config::MetricsConfig;
use meshtrace::sampler::SamplingConfig;
use meshtrace::server::TracingLayer;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, PeriodicReader, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tokio::sync::mpsc;
use tower::ServiceExt;

use common::DropSignal;
use common::metrics::{HistogramPoint as Point, Pipeline, histogram_points};

const SERVER: &str = "http.server.request.duration";

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The recommended setup at `base_rate`, exporting spans and metrics into memory.
fn pipeline(base_rate: f64, temporality: Temporality) -> Pipeline {
    Pipeline::new(
        TracingManager::builder().sampling(SamplingConfig::default().base_rate(base_rate)),
        temporality,
    )
}

async fn drain(response: http::Response<impl http_body::Body<Error = impl std::fmt::Debug>>) {
    let _ = response.into_body().collect().await.expect("body");
}

fn request(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn every_request_is_counted_with_base_rate_zero() {
    let pipeline = pipeline(0.0, Temporality::Cumulative);
    let app = Router::new()
        .route("/users/{id}", get(|| async { "alice" }))
        .route("/orders", post(|| async { (StatusCode::CREATED, "made") }))
        .route(
            "/fail/{id}",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/purge/{id}", any(|| async { "purged" }))
        .layer(pipeline.manager.server_layer());

    let sends: &[(&str, &str, usize)] = &[
        ("GET", "/users/1", 5),
        ("GET", "/users/2", 2),
        ("POST", "/orders", 3),
        ("GET", "/fail/7", 4),
        ("PURGE", "/purge/1", 2),
        ("GET", "/nowhere/at/all", 3),
    ];
    for (method, uri, times) in sends {
        for _ in 0..*times {
            let response = app.clone().oneshot(request(method, uri)).await.unwrap();
            drain(response).await;
        }
    }

    let common = [("url.scheme", "http"), ("network.protocol.version", "1.1")];
    let with = |extra: &[(&str, &str)]| {
        let mut set = attrs(&common);
        set.extend(attrs(extra));
        set
    };
    let expected: Vec<(BTreeMap<String, String>, u64)> = vec![
        (
            with(&[
                ("http.request.method", "GET"),
                ("http.route", "/users/{id}"),
                ("http.response.status_code", "200"),
            ]),
            7,
        ),
        (
            with(&[
                ("http.request.method", "POST"),
                ("http.route", "/orders"),
                ("http.response.status_code", "201"),
            ]),
            3,
        ),
        (
            with(&[
                ("http.request.method", "GET"),
                ("http.route", "/fail/{id}"),
                ("http.response.status_code", "503"),
                ("error.type", "503"),
            ]),
            4,
        ),
        (
            with(&[
                ("http.request.method", "_OTHER"),
                ("http.route", "/purge/{id}"),
                ("http.response.status_code", "200"),
            ]),
            2,
        ),
        // No route matched: no `http.route`, one set for all such requests.
        (
            with(&[
                ("http.request.method", "GET"),
                ("http.response.status_code", "404"),
            ]),
            3,
        ),
    ];
    let mut got: Vec<(BTreeMap<String, String>, u64)> = pipeline
        .points(SERVER)
        .await
        .into_iter()
        .map(|p| (p.attributes, p.count))
        .collect();
    got.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(got, expected);
    assert!(
        pipeline.finished_spans().await.is_empty(),
        "base rate 0 exports no span"
    );

    // The sampler's counters are on the same meter provider.
    let exported = pipeline.metrics.get_finished_metrics().unwrap();
    let names: Vec<String> = exported
        .last()
        .unwrap()
        .scope_metrics()
        .flat_map(|s| s.metrics().map(|m| m.name().to_owned()))
        .collect();
    assert!(
        names.iter().any(|n| n == "meshtrace.sampler.decisions"),
        "{names:?}"
    );

    // The convention's instrument: seconds, and its bucket boundaries on every data point.
    let server = exported
        .last()
        .unwrap()
        .scope_metrics()
        .flat_map(|s| s.metrics())
        .find(|m| m.name() == SERVER)
        .expect("the server histogram");
    assert_eq!(server.unit(), "s");
    for point in pipeline.points(SERVER).await {
        assert_eq!(
            point.bounds,
            [
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
            ],
            "{point:?}"
        );
    }
}

#[tokio::test]
async fn distinct_raw_paths_give_one_attribute_set_per_route_template() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "alice" }))
        .route("/orders/{id}/items/{item}", get(|| async { "item" }))
        .layer(TracingLayer::new().meter(&provider.meter("test")));
    const N: usize = 100_000;
    for i in 0..N {
        let uri = if i % 2 == 0 {
            format!("/users/{i}")
        } else {
            format!("/orders/{i}/items/{}", i * 7)
        };
        let response = app.clone().oneshot(request("GET", &uri)).await.unwrap();
        drain(response).await;
    }
    let provider_ = provider.clone();
    tokio::task::spawn_blocking(move || provider_.force_flush().unwrap())
        .await
        .unwrap();
    let points = histogram_points(&exporter.get_finished_metrics().unwrap(), SERVER);
    let routes: Vec<&str> = points
        .iter()
        .map(|p| p.attributes["http.route"].as_str())
        .collect();
    assert_eq!(points.len(), 2, "{routes:?}");
    assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), N as u64);
    assert!(routes.contains(&"/users/{id}") && routes.contains(&"/orders/{id}/items/{item}"));
}

const CHUNKS: usize = 20;
const CHUNK_DELAY: Duration = Duration::from_millis(20);

/// 20 chunks, 20 ms apart; `done` fires when the stream is dropped (ended or not).
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

fn span_seconds(span: &SpanData) -> f64 {
    span.end_time
        .duration_since(span.start_time)
        .expect("end after start")
        .as_secs_f64()
}

/// Each request on its own (delta temporality: one export holds one request): the one
/// data point's sum, min and max are the one exported span's duration, exactly.
#[tokio::test]
async fn the_metric_is_the_spans_duration_for_each_sampled_request() {
    let pipeline = pipeline(1.0, Temporality::Delta);
    let (tx, mut dropped) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "alice" }))
        .route("/stream", get(stream))
        .with_state(tx)
        .layer(pipeline.manager.server_layer());
    let addr = common::serve(app.clone()).await;

    // 1: a plain request.
    drain(
        app.clone()
            .oneshot(request("GET", "/users/1"))
            .await
            .unwrap(),
    )
    .await;
    let point = only(pipeline.points(SERVER).await);
    let span = only_span(pipeline.finished_spans().await);
    assert_equal(&point, &span);
    pipeline.spans.reset();

    // 2: a streamed body, timed to its end (>= 20 x 20 ms), sampled and read to the end.
    drain(
        app.clone()
            .oneshot(request("GET", "/stream"))
            .await
            .unwrap(),
    )
    .await;
    dropped.recv().await.expect("the stream ends");
    let point = only(pipeline.points(SERVER).await);
    let span = only_span(pipeline.finished_spans().await);
    assert!(point.sum >= 0.4, "{point:?}");
    assert_equal(&point, &span);
    pipeline.spans.reset();

    // 3: a client that hangs up after three chunks, over a real connection.
    let client = reqwest::Client::new();
    let mut response = client
        .get(format!("http://{addr}/stream"))
        .send()
        .await
        .expect("response");
    for _ in 0..3 {
        response.chunk().await.expect("chunk").expect("not the end");
    }
    drop(response);
    drop(client);
    dropped.recv().await.expect("the server drops the stream");
    let point = only(pipeline.points(SERVER).await);
    let span = only_span(pipeline.finished_spans().await);
    assert_eq!(point.attributes["error.type"], "cancelled", "{point:?}");
    assert_eq!(
        common::attr_str(&span, "error.type").as_deref(),
        Some("cancelled")
    );
    assert!(point.sum >= 0.06 && point.sum < 0.4, "{point:?}");
    assert_equal(&point, &span);
}

/// Unsampled requests are measured the same way: to the end of the body.
#[tokio::test]
async fn unsampled_streamed_bodies_are_measured_to_their_end() {
    let pipeline = pipeline(0.0, Temporality::Delta);
    let (tx, mut dropped) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/stream", get(stream))
        .with_state(tx)
        .layer(pipeline.manager.server_layer());
    drain(app.oneshot(request("GET", "/stream")).await.unwrap()).await;
    dropped.recv().await.expect("the stream ends");
    let point = only(pipeline.points(SERVER).await);
    assert!(point.sum >= 0.4, "{point:?}");
    assert_eq!(point.attributes["http.route"], "/stream");
    assert!(pipeline.finished_spans().await.is_empty());
}

fn only(points: Vec<Point>) -> Point {
    assert_eq!(points.len(), 1, "{points:?}");
    let point = points.into_iter().next().unwrap();
    assert_eq!(point.count, 1, "{point:?}");
    point
}

fn only_span(spans: Vec<SpanData>) -> SpanData {
    assert_eq!(spans.len(), 1, "{spans:?}");
    spans.into_iter().next().unwrap()
}

fn assert_equal(point: &Point, span: &SpanData) {
    let seconds = span_seconds(span);
    assert_eq!(point.sum, seconds, "{point:?} vs span {:?}", span.name);
    assert_eq!(point.min, Some(seconds));
    assert_eq!(point.max, Some(seconds));
}

/// The layers of a switched-off manager record nothing, and a layer can be switched off.
#[tokio::test]
async fn metrics_switched_off_record_nothing() {
    let metrics = InMemoryMetricExporter::default();
    let (manager, layers) = TracingManager::builder()
        .span_exporter(InMemorySpanExporter::default())
        .metric_exporter(metrics.clone())
        .metrics(MetricsConfig::default().enabled(false))
        .log_writer(std::io::sink)
        .build()
        .unwrap();
    let guard = tracing::subscriber::set_default(layers.into_subscriber());
    assert!(manager.meter_provider().is_none());
    let app = Router::new()
        .route("/users/{id}", get(|| async { "alice" }))
        .layer(manager.server_layer());
    drain(app.oneshot(request("GET", "/users/1")).await.unwrap()).await;
    assert!(metrics.get_finished_metrics().unwrap().is_empty());
    drop(guard);

    // The same switch from the environment: `MESHTRACE_METRICS_ENABLED=false`.
    for (value, on) in [("false", false), ("true", true)] {
        let metrics = InMemoryMetricExporter::default();
        let vars = [("MESHTRACE_METRICS_ENABLED", value)];
        let (manager, layers) = TracingManager::from_env_with(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .span_exporter(InMemorySpanExporter::default())
        .metric_exporter(metrics.clone())
        .log_writer(std::io::sink)
        .build()
        .unwrap();
        let _guard = tracing::subscriber::set_default(layers.into_subscriber());
        assert_eq!(manager.meter_provider().is_some(), on, "{value}");
        let app = Router::new()
            .route("/users/{id}", get(|| async { "alice" }))
            .layer(manager.server_layer());
        drain(app.oneshot(request("GET", "/users/1")).await.unwrap()).await;
        manager.shutdown().await.unwrap();
        let points = histogram_points(&metrics.get_finished_metrics().unwrap(), SERVER);
        assert_eq!(points.len(), usize::from(on), "{value}: {points:?}");
    }

    // A layer switched off on a meter that works.
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "alice" }))
        .layer(
            TracingLayer::new()
                .meter(&provider.meter("test"))
                .metrics(false),
        );
    drain(app.oneshot(request("GET", "/users/1")).await.unwrap()).await;
    let provider_ = provider.clone();
    tokio::task::spawn_blocking(move || provider_.force_flush().unwrap())
        .await
        .unwrap();
    assert!(histogram_points(&exporter.get_finished_metrics().unwrap(), SERVER).is_empty());
}

/// The opt-ins: server address and port, active requests, body sizes.
#[tokio::test]
async fn opt_in_attributes_and_instruments() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let app = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .layer(
            TracingLayer::new()
                .meter(&provider.meter("test"))
                .metric_server_address(true)
                .active_requests_metric(true)
                .body_size_metrics(true),
        );
    let request = Request::post("/echo")
        .header("host", "api.example.com:8443")
        .header("content-length", "11")
        .body(Body::from("hello world"))
        .unwrap();
    drain(app.oneshot(request).await.unwrap()).await;
    let provider_ = provider.clone();
    tokio::task::spawn_blocking(move || provider_.force_flush().unwrap())
        .await
        .unwrap();
    let exported = exporter.get_finished_metrics().unwrap();
    let point = only(histogram_points(&exported, SERVER));
    assert_eq!(point.attributes["server.address"], "api.example.com");
    assert_eq!(point.attributes["server.port"], "8443");
    let sizes = |name: &str| -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for scope in exported.last().unwrap().scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::U64(MetricData::Histogram(h)) = metric.data() {
                    out.extend(h.data_points().map(|p| (p.count(), p.sum())));
                }
            }
        }
        out
    };
    assert_eq!(sizes("http.server.request.body.size"), [(1, 11)]);
    assert_eq!(sizes("http.server.response.body.size"), [(1, 11)]);
    let mut active = Vec::new();
    for scope in exported.last().unwrap().scope_metrics() {
        for metric in scope
            .metrics()
            .filter(|m| m.name() == "http.server.active_requests")
        {
            if let AggregatedMetrics::I64(MetricData::Sum(sum)) = metric.data() {
                active.extend(sum.data_points().map(|p| p.value()));
            }
        }
    }
    assert_eq!(active, [0], "one request came and went");
}

#[cfg(all(feature = "reqwest", feature = "hyper"))]
mod client {
    use super::*;
    use common::Telemetry;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use meshtrace::client::{ClientTracingLayer, ReqwestTracingMiddleware, UrlTemplate};
    use opentelemetry::metrics::Meter;
    use tower::ServiceBuilder;

    const CLIENT: &str = "http.client.request.duration";

    async fn upstream() -> std::net::SocketAddr {
        common::serve(
            Router::new()
                .route("/users/{id}", get(|| async { "alice" }))
                .route(
                    "/fail",
                    get(|| async { (StatusCode::BAD_GATEWAY, "upstream down") }),
                ),
        )
        .await
    }

    fn meter() -> (SdkMeterProvider, InMemoryMetricExporter, Meter) {
        let exporter = opentelemetry_sdk::metrics::InMemoryMetricExporterBuilder::new()
            .with_temporality(Temporality::Delta)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let meter = provider.meter("test");
        (provider, exporter, meter)
    }

    async fn client_points(
        provider: &SdkMeterProvider,
        exporter: &InMemoryMetricExporter,
    ) -> Vec<Point> {
        let provider = provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
            .await
            .unwrap();
        histogram_points(&exporter.get_finished_metrics().unwrap(), CLIENT)
    }

    #[tokio::test]
    async fn reqwest_and_hyper_record_the_client_histogram_equal_to_the_span() {
        let addr = upstream().await;
        let port = addr.port().to_string();
        for client in ["reqwest", "hyper"] {
            let telemetry = Telemetry::new();
            let (provider, exporter, meter) = meter();
            for (path, template, status) in [
                ("/users/42", "/users/{id}", "200"),
                ("/fail", "/fail", "502"),
            ] {
                let url = format!("http://{addr}{path}");
                match client {
                    "reqwest" => {
                        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                            .with(
                                ReqwestTracingMiddleware::new()
                                    .tracer_provider(&telemetry.provider)
                                    .meter(&meter),
                            )
                            .build();
                        let response = client
                            .get(&url)
                            .with_extension(UrlTemplate(template))
                            .send()
                            .await
                            .unwrap();
                        response.bytes().await.unwrap();
                    }
                    _ => {
                        let hyper = ServiceBuilder::new()
                            .layer(
                                ClientTracingLayer::new()
                                    .tracer_provider(&telemetry.provider)
                                    .meter(&meter),
                            )
                            .service(
                                Client::builder(TokioExecutor::new())
                                    .build_http::<http_body_util::Empty<Bytes>>(),
                            );
                        let mut request = Request::get(&url)
                            .body(http_body_util::Empty::new())
                            .unwrap();
                        request.extensions_mut().insert(UrlTemplate(template));
                        drain(hyper.oneshot(request).await.unwrap()).await;
                    }
                }
                let point = only(client_points(&provider, &exporter).await);
                let mut expected = attrs(&[
                    ("http.request.method", "GET"),
                    ("server.address", "127.0.0.1"),
                    ("server.port", &port),
                    ("http.response.status_code", status),
                    ("url.template", template),
                ]);
                if status != "200" {
                    expected.insert("error.type".into(), status.into());
                }
                assert_eq!(point.attributes, expected, "{client}");
                let span = only_span(telemetry.spans());
                assert_equal(&point, &span);
                telemetry.exporter.reset();
            }
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_recorded_with_its_error_type() {
        let closed = common::client::closed_port();
        let (provider, exporter, meter) = meter();
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(ReqwestTracingMiddleware::new().meter(&meter))
            .build();
        let _ = client
            .get(format!("http://{closed}/x"))
            .send()
            .await
            .expect_err("refused");
        let point = only(client_points(&provider, &exporter).await);
        assert_eq!(point.attributes["error.type"], "connect", "{point:?}");
        assert!(!point.attributes.contains_key("http.response.status_code"));
    }
}

/// The manager sets the SDK's cardinality limit on every instrument: beyond it,
/// measurements share one overflow attribute set, and nothing is lost.
#[tokio::test]
async fn the_cardinality_limit_is_set_explicitly() {
    let metrics = InMemoryMetricExporter::default();
    let (manager, layers) = TracingManager::builder()
        .span_exporter(InMemorySpanExporter::default())
        .metric_exporter(metrics.clone())
        .metrics(MetricsConfig::default().cardinality_limit(3))
        .log_writer(std::io::sink)
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let mut app = Router::new();
    for i in 0..6 {
        app = app.route(&format!("/r{i}/{{id}}"), get(|| async { "ok" }));
    }
    let app = app.layer(manager.server_layer());
    for i in 0..6 {
        drain(
            app.clone()
                .oneshot(request("GET", &format!("/r{i}/1")))
                .await
                .unwrap(),
        )
        .await;
    }
    let meters = manager.meter_provider().unwrap().clone();
    tokio::task::spawn_blocking(move || meters.force_flush().unwrap())
        .await
        .unwrap();
    let points = histogram_points(&metrics.get_finished_metrics().unwrap(), SERVER);
    // Three sets, then the overflow set (opentelemetry_sdk 0.33 does not count it).
    assert_eq!(points.len(), 4, "{points:?}");
    assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), 6);
    assert!(
        points
            .iter()
            .any(|p| p.attributes.get("otel.metric.overflow").map(String::as_str) == Some("true")),
        "{points:?}"
    );
}

/// The sampler's per-key counter reports every tracked key and the overflow entry, four
/// outcomes each: 4100 attribute sets at the default 1024 keys, above the SDK's default
/// limit of 2000. The manager gives that instrument a limit computed from the sampling
/// configuration, while every other instrument keeps `metrics.cardinality_limit` (here 3,
/// so the five outcomes of `meshtrace.sampler.decisions` overflow).
#[tokio::test]
async fn the_per_key_counter_has_a_cardinality_limit_for_every_key() {
    use meshtrace::sampler::{LimitsConfig, METRIC_DECISIONS, METRIC_KEY_DECISIONS};
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};

    let metrics = InMemoryMetricExporter::default();
    let limits = LimitsConfig::default().per_key_traces_per_second(10.0);
    assert_eq!(limits.key_metric_attribute_sets(), 4100);
    let (manager, _layers) = TracingManager::builder()
        .span_exporter(InMemorySpanExporter::default())
        .metric_exporter(metrics.clone())
        .metrics(MetricsConfig::default().cardinality_limit(3))
        .sampling(SamplingConfig::default().base_rate(0.0).limits(limits))
        .log_writer(std::io::sink)
        .build()
        .unwrap();
    // Enough distinct routes to fill every probe window of the 1024 slots, and to use the
    // overflow entry.
    let tracer = manager.tracer_provider().tracer("keys");
    for i in 0..20_000 {
        tracer
            .span_builder("GET")
            .with_attributes([opentelemetry::KeyValue::new(
                "http.route",
                format!("/r{i}/{{id}}"),
            )])
            .start(&tracer)
            .end();
    }
    let stats = manager.sampler().stats();
    assert_eq!(stats.tracked_keys, 1024, "the table is full");
    assert_eq!(stats.keys.len(), 1025, "every key and the overflow entry");
    let meters = manager.meter_provider().unwrap().clone();
    tokio::task::spawn_blocking(move || meters.force_flush().unwrap())
        .await
        .unwrap();
    let exported = metrics.get_finished_metrics().unwrap();
    let sums = |name: &str| -> Vec<(Vec<String>, u64)> {
        let last = exported.last().expect("an export");
        let mut out = Vec::new();
        for scope in last.scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == name) {
                let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else {
                    panic!("{name} is not a u64 sum: {:?}", metric.data());
                };
                for point in sum.data_points() {
                    let attributes = point
                        .attributes()
                        .map(|kv| format!("{}={}", kv.key, kv.value))
                        .collect();
                    out.push((attributes, point.value()));
                }
            }
        }
        out
    };
    let overflowed = |points: &[(Vec<String>, u64)]| {
        points
            .iter()
            .any(|(a, _)| a.iter().any(|kv| kv == "otel.metric.overflow=true"))
    };
    let keys = sums(METRIC_KEY_DECISIONS);
    assert_eq!(keys.len(), 1025 * 4, "one set per key and outcome");
    assert!(!overflowed(&keys), "no key folded into the overflow set");
    assert_eq!(keys.iter().map(|(_, v)| v).sum::<u64>(), 20_000);
    let decisions = sums(METRIC_DECISIONS);
    assert_eq!(
        decisions.len(),
        4,
        "3 sets and the overflow set: {decisions:?}"
    );
    assert!(overflowed(&decisions), "{decisions:?}");
}
