//! The trace pages through a real Router on 127.0.0.1, real reqwest traffic and the real
//! SDK: the counts are what was sent and what `http.server.request.duration` says, the
//! samples and trees are what was recorded, running and windowed counts follow the
//! requests, the pages' links lead to the trees, the sampler and export pages show the
//! configuration and counters in force (secrets never), values are cut as exported,
//! hostile values are escaped, changes need the token, the store stays bounded, unmounted
//! pages record nothing, and the pages never appear in what they show.
#![cfg(feature = "pages")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use meshtrace::TracingManager;
use meshtrace::config::{BatchConfig, SpanLimitsConfig};
use meshtrace::pages::{PagesStats, TracePages, TracePagesBuilder};
use meshtrace::sampler::{DebugConfig, DeferredConfig, LimitsConfig, SamplingConfig, SamplingRule};
use meshtrace::server::TracingLayer;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, PeriodicReader, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData, SpanExporter};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower::ServiceExt;

use common::metrics::{HistogramPoint as Point, Pipeline, histogram_points};

const SERVER: &str = "http.server.request.duration";
const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// The manager with `sampling`, exporting spans and metrics into memory.
fn pipeline(sampling: SamplingConfig) -> Pipeline {
    Pipeline::new(
        TracingManager::builder()
            .service_name("pages-test")
            .sampling(sampling),
        Temporality::Cumulative,
    )
}

async fn user(axum::extract::Path(id): axum::extract::Path<String>) -> String {
    tracing::info_span!("load_user").in_scope(|| tracing::info!(user = %id, "user loaded"));
    format!("user {id}")
}

const CHUNKS: usize = 5;

/// Five chunks, 10 ms apart.
async fn stream() -> Body {
    let chunks = futures_util::stream::unfold(0, |i| async move {
        if i == CHUNKS {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Some((Ok::<_, Infallible>(Bytes::from_static(b"chunk\n")), i + 1))
    });
    Body::from_stream(chunks)
}

/// The app of most tests: a fast route (with a child span and an event), a slow one, one
/// that fails, a streamed response.
fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(user))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(15)).await;
                "slow"
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/stream", get(stream))
}

async fn send(client: &reqwest::Client, url: String, traceparent: Option<&str>) -> StatusCode {
    let mut request = client.get(url);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.expect("response");
    let status = response.status();
    response.bytes().await.expect("body");
    status
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    let response = client.get(&url).send().await.expect("response");
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    assert_eq!(response.headers()["content-type"], "application/json");
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("json")
}

fn row<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {summary:#}"))
}

fn numbers(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_u64().expect("number"))
        .collect()
}

/// Serves `app` with `pages` merged in, behind `manager`'s server layer, on 127.0.0.1; its
/// address and a client.
async fn serve_with_pages(
    app: Router,
    pages: &TracePages,
    manager: &TracingManager,
) -> (SocketAddr, reqwest::Client) {
    let app = app.merge(pages.router()).layer(manager.server_layer());
    (common::serve(app).await, reqwest::Client::new())
}

/// The URL of the pages' `path` (below the default `/debug/tracez`) on `addr`.
fn pages_url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}/debug/tracez{path}")
}

/// The samples of `GET /users/{id}` in latency bucket `bucket`, as JSON.
fn users_samples_url(addr: SocketAddr, bucket: usize) -> String {
    pages_url(
        addr,
        &format!("/api/samples?name=GET%20%2Fusers%2F%7Bid%7D&bucket={bucket}"),
    )
}

fn pages_builder(telemetry: &TracingManager) -> TracePagesBuilder {
    telemetry
        .pages()
        .token(TOKEN)
        .sample_interval(Duration::ZERO)
}

/// Every request counted, sampled or not, in its latency bucket and as an error when it
/// failed; the same counts, errors, sums and bucket splits as the histogram; the pages'
/// own requests nowhere.
#[tokio::test]
async fn counts_are_the_traffic_and_match_the_metrics() {
    let pipeline = pipeline(SamplingConfig::default());
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    // Merged before the layer: the layer wraps the pages' routes too, and skips them.
    let (addr, client) = serve_with_pages(app(), &pages, &pipeline.manager).await;
    let url = |path: &str| format!("http://{addr}{path}");

    let plan: &[(&str, Option<&str>, usize, StatusCode)] = &[
        ("/users/1", None, 3, StatusCode::OK),
        ("/users/2", Some(SAMPLED), 2, StatusCode::OK),
        ("/users/3", Some(UNSAMPLED), 3, StatusCode::OK),
        ("/slow", None, 2, StatusCode::OK),
        ("/fail", Some(SAMPLED), 2, StatusCode::SERVICE_UNAVAILABLE),
        ("/fail", Some(UNSAMPLED), 2, StatusCode::SERVICE_UNAVAILABLE),
        ("/stream", None, 1, StatusCode::OK),
        ("/nowhere/at/all", None, 2, StatusCode::NOT_FOUND),
    ];
    let mut traced = 0;
    for (path, parent, times, status) in plan {
        for _ in 0..*times {
            assert_eq!(send(&client, url(path), *parent).await, *status, "{path}");
            traced += 1;
            // The pages' own requests, in between: never counted.
            assert_eq!(
                send(&client, pages_url(addr, ""), None).await,
                StatusCode::OK
            );
        }
    }
    for page in ["/sampler", "/export", "/api/summary", "/nope", "/style.css"] {
        send(&client, pages_url(addr, page), None).await;
    }

    let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
    assert_eq!(summary["service"], "pages-test");
    let names: Vec<&str> = summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "GET",
            "GET /fail",
            "GET /slow",
            "GET /stream",
            "GET /users/{id}"
        ],
        "one row per route template (the unmatched requests share `GET`); no row of the pages"
    );
    let expect = |name: &str, count: u64, errors: u64| {
        let row = row(&summary, name);
        assert_eq!(row["total"]["count"], count, "{name}: {row:#}");
        assert_eq!(row["total"]["errors"], errors, "{name}");
        assert_eq!(
            row["window"]["count"], count,
            "{name}: the window holds the whole test"
        );
        assert_eq!(row["window"]["errors"], errors, "{name}");
        assert_eq!(numbers(&row["total"]["buckets"]).iter().sum::<u64>(), count);
        assert_eq!(row["running"], 0, "{name}");
    };
    expect("GET /users/{id}", 8, 0);
    expect("GET /slow", 2, 0);
    expect("GET /fail", 4, 4);
    expect("GET /stream", 1, 0);
    expect("GET", 2, 0);
    // 15 ms handlers: in [10 ms, 100 ms) or above, never below.
    let slow = numbers(&row(&summary, "GET /slow")["total"]["buckets"]);
    assert_eq!(slow[..4].iter().sum::<u64>(), 0, "{slow:?}");
    // The stream takes 5 x 10 ms to its end: the count is timed to the end of the body.
    let streamed = numbers(&row(&summary, "GET /stream")["total"]["buckets"]);
    assert_eq!(streamed[..4].iter().sum::<u64>(), 0, "{streamed:?}");
    // Unsampled requests are counted, and have no sample.
    let users = row(&summary, "GET /users/{id}");
    let samples: u64 = users["samples"]["latency"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!((1..=5).contains(&samples), "{users:#}");
    for (bucket, n) in numbers(&users["samples"]["latency"]).iter().enumerate() {
        if *n == 0 {
            continue;
        }
        let ring = get_json(&client, users_samples_url(addr, bucket)).await;
        for sample in ring["samples"].as_array().unwrap() {
            assert_ne!(
                sample["span"]["trace_id"], "5bf92f3577b34da6a3ce929d0e0e4736",
                "the unsampled caller's requests recorded nothing"
            );
        }
    }

    // The histogram of the same requests.
    let points = pipeline.points(SERVER).await;
    assert!(
        points.iter().all(|p| !p
            .attributes
            .get("http.route")
            .is_some_and(|r| r.contains("tracez"))),
        "{points:?}"
    );
    assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), traced);
    let metric_rows: Vec<(String, Vec<&Point>)> = names
        .iter()
        .map(|name| {
            let route = name.strip_prefix("GET ");
            let of_row = points
                .iter()
                .filter(|p| {
                    p.attributes["http.request.method"] == "GET"
                        && p.attributes.get("http.route").map(String::as_str) == route
                })
                .collect();
            (name.to_string(), of_row)
        })
        .collect();
    for (name, of_row) in &metric_rows {
        let row = row(&summary, name);
        let count: u64 = of_row.iter().map(|p| p.count).sum();
        let errors: u64 = of_row
            .iter()
            .filter(|p| p.attributes.contains_key("error.type"))
            .map(|p| p.count)
            .sum();
        let sum: f64 = of_row.iter().map(|p| p.sum).sum();
        assert_eq!(row["total"]["count"], count, "{name}");
        assert_eq!(row["total"]["errors"], errors, "{name}");
        let page_sum = row["total"]["sum_seconds"].as_f64().unwrap();
        assert!(
            (page_sum - sum).abs() <= 1e-9 * sum.max(1.0),
            "{name}: the pages' sum {page_sum} vs the histogram's {sum}"
        );
        // The zPages bounds 10 ms, 100 ms, 1 s and 10 s are bounds of the histogram too:
        // how many requests took less than each is the same on both sides.
        let page_buckets = numbers(&row["total"]["buckets"]);
        for (zpages_bucket, bound) in [(4, 0.01), (5, 0.1), (6, 1.0), (7, 10.0)] {
            let page_below: u64 = page_buckets[..zpages_bucket].iter().sum();
            let metric_below: u64 = of_row
                .iter()
                .map(|p| {
                    p.bounds
                        .iter()
                        .zip(&p.buckets)
                        .take_while(|(b, _)| **b <= bound)
                        .map(|(_, n)| *n)
                        .sum::<u64>()
                })
                .sum();
            assert_eq!(page_below, metric_below, "{name}: below {bound} s");
        }
    }

    // The pages never appear in the traces, and the sampler decided only the app's
    // requests.
    let spans = pipeline.finished_spans().await;
    assert!(
        spans.iter().all(|s| !s.name.contains("tracez")
            && !common::attr_str(s, "url.path").is_some_and(|p| p.contains("tracez"))),
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let decisions = pipeline.manager.sampler().stats().decisions();
    let server_spans = traced;
    let child_spans = 8; // `load_user` of each /users request
    assert_eq!(decisions, server_spans + child_spans);
}

/// Samples hold the recorded spans (redacted and bounded as exported), their events, trace
/// id and parent, and link to the local trace tree; failed requests are samples of their
/// error class.
#[tokio::test]
async fn samples_and_trees_are_what_was_recorded() {
    let pipeline = pipeline(SamplingConfig::default());
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    let (addr, client) = serve_with_pages(app(), &pages, &pipeline.manager).await;

    let response = client
        .get(format!("http://{addr}/users/7?token=secret&page=2"))
        .header("traceparent", SAMPLED)
        .header("user-agent", "pages-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "user 7");
    send(&client, format!("http://{addr}/fail"), None).await;

    let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
    let users = row(&summary, "GET /users/{id}");
    let bucket = users["samples"]["latency"]
        .as_array()
        .unwrap()
        .iter()
        .position(|n| n.as_u64() == Some(1))
        .expect("one sample");
    let samples = get_json(&client, users_samples_url(addr, bucket)).await;
    assert_eq!(samples["name"], "GET /users/{id}");
    let sample = &samples["samples"][0];
    let span = &sample["span"];
    assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(span["parent_is_remote"], true);
    assert_eq!(span["kind"], "server");
    assert_eq!(span["sampled"], true);
    let attributes = &span["attributes"];
    assert_eq!(attributes["http.route"], "/users/{id}");
    assert_eq!(attributes["url.path"], "/users/7");
    assert_eq!(attributes["url.query"], "token=REDACTED&page=2");
    assert_eq!(attributes["user_agent.original"], "pages-test/1.0");
    assert_eq!(attributes["http.response.status_code"], 200);
    assert!(
        attributes
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("meshtrace.internal")),
        "{attributes:#}"
    );
    assert_eq!(sample["captured"], true);
    assert_eq!(sample["children"], 1);

    // The same span as exported.
    let exported = pipeline.finished_spans().await;
    let server = exported
        .iter()
        .find(|s| s.name == "GET /users/{id}")
        .expect("exported");
    assert_eq!(
        span["span_id"],
        server.span_context.span_id().to_string(),
        "the sample is the exported span"
    );

    // The trace tree: the server span, its child and the child's event.
    let trace = get_json(
        &client,
        pages_url(addr, "/api/trace/4bf92f3577b34da6a3ce929d0e0e4736"),
    )
    .await;
    let tree = trace["spans"].as_array().unwrap();
    assert_eq!(tree.len(), 2, "{trace:#}");
    assert_eq!(tree[0]["depth"], 0);
    assert_eq!(tree[0]["span"]["name"], "GET /users/{id}");
    assert_eq!(tree[1]["depth"], 1);
    assert_eq!(tree[1]["span"]["name"], "load_user");
    assert_eq!(
        tree[1]["span"]["parent_span_id"],
        tree[0]["span"]["span_id"]
    );
    assert_eq!(tree[1]["span"]["events"][0]["name"], "user loaded");
    assert_eq!(tree[1]["span"]["events"][0]["attributes"]["user"], "7");
    assert_eq!(trace["complete"], true);
    let html = client
        .get(pages_url(addr, "/trace/4bf92f3577b34da6a3ce929d0e0e4736"))
        .send()
        .await
        .unwrap();
    let csp = html.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = html.text().await.unwrap();
    assert_eq!(html.matches("<svg class=\"bar\"").count(), 2, "{html}");
    assert!(html.contains("load_user"));
    assert!(!html.contains("<script"), "no script on the pages");

    // The failed request: a sample of its error class, and red on the summary.
    let fail = row(&summary, "GET /fail");
    assert_eq!(fail["samples"]["errors"]["503"], 1, "{fail:#}");
    let errors = get_json(
        &client,
        pages_url(addr, "/api/samples?name=GET%20%2Ffail&error=503"),
    )
    .await;
    assert_eq!(errors["samples"][0]["error"], "503");
    assert_eq!(errors["samples"][0]["span"]["status"], "error");
    let summary_html = client
        .get(pages_url(addr, ""))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        summary_html.contains("<td class=\"num err\">1<div class=\"classes\">"),
        "{summary_html}"
    );
    assert!(summary_html.contains("samples?name=GET%20%2Ffail&amp;error=503"));

    // Unknown names, buckets and trace ids are answered, not failed.
    for (path, status) in [
        ("/api/samples?name=nothing&bucket=1", StatusCode::NOT_FOUND),
        (
            "/api/samples?name=GET%20%2Ffail&bucket=12",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/trace/nothex", StatusCode::BAD_REQUEST),
        (
            "/api/trace/00000000000000000000000000000001",
            StatusCode::NOT_FOUND,
        ),
        ("/missing", StatusCode::NOT_FOUND),
    ] {
        let response = client.get(pages_url(addr, path)).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
}

/// Deferred spans (recorded, not sampled: deferred capture took the trace at the service
/// entry) are samples too, marked as such.
#[tokio::test]
async fn deferred_spans_are_samples_marked_as_such() {
    let deferred = DeferredConfig::default().enabled(true).max_per_second(1000);
    let pipeline = pipeline(SamplingConfig::default().base_rate(0.0).deferred(deferred));
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    let (addr, client) = serve_with_pages(app(), &pages, &pipeline.manager).await;
    send(&client, format!("http://{addr}/fail"), None).await;
    send(&client, format!("http://{addr}/users/1"), Some(UNSAMPLED)).await;
    let summary = get_json(&client, format!("http://{addr}/debug/tracez/api/summary")).await;
    let fail = row(&summary, "GET /fail");
    assert_eq!(fail["total"]["errors"], 1);
    let samples = get_json(
        &client,
        format!("http://{addr}/debug/tracez/api/samples?name=GET%20%2Ffail&error=503"),
    )
    .await;
    assert_eq!(
        samples["samples"][0]["span"]["sampled"], false,
        "{samples:#}"
    );
    let users = row(&summary, "GET /users/{id}");
    assert_eq!(users["total"]["count"], 1);
    let bucket = numbers(&users["samples"]["latency"])
        .iter()
        .position(|n| *n == 1)
        .expect("the unsampled caller's request, deferred, is a sample");
    let samples = get_json(&client, users_samples_url(addr, bucket)).await;
    let span = &samples["samples"][0]["span"];
    assert_eq!(span["sampled"], false);
    assert_eq!(span["trace_id"], "5bf92f3577b34da6a3ce929d0e0e4736");
}

/// A raw request (reqwest would percent-encode the path).
async fn raw_get(addr: SocketAddr, target: &str, user_agent: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: {user_agent}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// What a client chose (its user agent, its path) is escaped on every page.
#[tokio::test]
async fn hostile_user_agent_and_path_are_escaped() {
    let pipeline = pipeline(SamplingConfig::default());
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    let app = app()
        .merge(pages.router())
        .layer(pipeline.manager.server_layer());
    let addr = common::serve(app).await;
    let agent = "<script>alert(\"ua\")</script>";
    let path = "/users/x\"onmouseover='alert(1)'{}";
    let response = raw_get(addr, path, agent).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let client = reqwest::Client::new();
    let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
    let bucket = row(&summary, "GET /users/{id}")["samples"]["latency"]
        .as_array()
        .unwrap()
        .iter()
        .position(|n| n.as_u64() == Some(1))
        .expect("a sample");
    let samples_path = format!("/samples?name=GET%20%2Fusers%2F%7Bid%7D&bucket={bucket}");
    let json = get_json(&client, pages_url(addr, &format!("/api{samples_path}"))).await;
    let attributes = &json["samples"][0]["span"]["attributes"];
    assert_eq!(
        attributes["user_agent.original"], agent,
        "kept as sent in JSON"
    );
    assert_eq!(attributes["url.path"], path);
    let trace_id = json["samples"][0]["span"]["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for page in [samples_path, format!("/trace/{trace_id}")] {
        let html = client
            .get(pages_url(addr, &page))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!html.contains(agent), "{page}: raw user agent");
        assert!(!html.contains("<script"), "{page}");
        assert!(!html.contains("x\"onmouseover"), "{page}: raw path");
        assert!(!html.contains("'alert(1)'"), "{page}");
        assert!(
            html.contains("&lt;script&gt;alert(&quot;ua&quot;)&lt;/script&gt;"),
            "{page}: {html}"
        );
        assert!(
            html.contains("/users/x&quot;onmouseover=&#39;alert(1)&#39;{}"),
            "{page}"
        );
    }
    // A hostile error class or name in the query is escaped too.
    let html = client
        .get(pages_url(
            addr,
            "/samples?name=GET%20%2Fusers%2F%7Bid%7D&error=%3Cimg%20src%3Dx%3E",
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;img src=x&gt;"));
}

/// Changing rates needs the token: none, a wrong one (even of the right length) and an
/// invalid rate change nothing; the right one goes through `reload`'s validation.
#[tokio::test]
async fn changes_need_the_token() {
    let pipeline = pipeline(
        SamplingConfig::default()
            .base_rate(0.5)
            .rule(SamplingRule::new("health", 0.0).route("/health")),
    );
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    let addr = common::serve(pages.router()).await;
    let client = reqwest::Client::new();
    let api = format!("http://{addr}/debug/tracez/api/sampler");
    let form = format!("http://{addr}/debug/tracez/sampler");
    let handle = pipeline.manager.sampler();
    let base_rate = || handle.config().base_rate;

    let post = |token: Option<&str>, body: &str| {
        let mut request = client
            .post(&api)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let change = r#"{"base_rate": 0.25, "rules": {"health": 0.1}}"#;
    let response = post(None, change).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(base_rate(), 0.5);
    let wrong = "0123456789abcdef0123456789abcdeX";
    assert_eq!(wrong.len(), TOKEN.len());
    let response = post(Some(wrong), change).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(base_rate(), 0.5);
    let response = post(Some(&TOKEN[..16]), change).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "a prefix");
    let response = post(Some(TOKEN), change).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(base_rate(), 0.25);
    assert_eq!(handle.config().rules[0].rate, 0.1);
    // The same validation as `reload`: all or nothing.
    let response = post(
        Some(TOKEN),
        r#"{"base_rate": 0.75, "rules": {"health": 1.5}}"#,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(body["message"].as_str().unwrap().contains("rate"), "{body}");
    assert_eq!(base_rate(), 0.25, "nothing applied");
    let response = post(Some(TOKEN), r#"{"rules": {"nope": 0.5}}"#)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // The HTML form: the token in its field.
    let response = client
        .post(&form)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={wrong}&base_rate=0.9"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let text = response.text().await.unwrap();
    assert!(!text.contains(wrong), "the token is never shown");
    assert_eq!(base_rate(), 0.25);
    let response = client
        .post(&form)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}&base_rate=0.9&rule.health=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("Applied: base rate 0.9, rule health 0."),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
    assert_eq!(base_rate(), 0.9);
    // The page says that changes need the token, and shows the rates in force.
    let page = client
        .get(&form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Changing rates needs the pages' token"),
        "{page}"
    );
    assert!(page.contains("name=\"base_rate\" value=\"0.9\""));

    // Pages without a token: read-only, and they say so.
    let read_only = pipeline.manager.pages().path("/ro").build().unwrap();
    let addr = common::serve(read_only.router()).await;
    let response = client
        .post(format!("http://{addr}/ro/api/sampler"))
        .bearer_auth(TOKEN)
        .body(change)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(base_rate(), 0.9);
    let page = client
        .get(format!("http://{addr}/ro/sampler"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Changing rates is disabled: no token is configured"),
        "{page}"
    );
    assert!(!page.contains("type=\"password\""));
}

/// With a read token, every page needs it (or the change token): as a bearer token or the
/// password of HTTP Basic authentication, which a browser is asked for.
#[tokio::test]
async fn a_read_token_guards_every_page() {
    let pipeline = pipeline(SamplingConfig::default());
    let read = "read-only-token-0123456789";
    let pages = pages_builder(&pipeline.manager)
        .read_token(read)
        .build()
        .unwrap();
    let addr = common::serve(pages.router()).await;
    let client = reqwest::Client::new();
    for path in [
        "",
        "/api/summary",
        "/sampler",
        "/api/export",
        "/trace/00000000000000000000000000000001",
    ] {
        let url = format!("http://{addr}/debug/tracez{path}");
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic "),
            "{path}"
        );
        let response = client
            .get(&url)
            .bearer_auth("read-only-token-0123456788")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{path}: wrong token"
        );
        let response = client.get(&url).bearer_auth(read).send().await.unwrap();
        assert_ne!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let response = client
            .get(&url)
            .basic_auth("anyone", Some(read))
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), StatusCode::UNAUTHORIZED, "{path}: basic");
        let response = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_ne!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{path}: the change token"
        );
    }
    let css = client
        .get(format!("http://{addr}/debug/tracez/style.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK, "the stylesheet is public");
    // The read token cannot change anything.
    let response = client
        .post(format!("http://{addr}/debug/tracez/api/sampler"))
        .bearer_auth(read)
        .body(r#"{"base_rate": 0.1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(pipeline.manager.sampler().config().base_rate, 1.0);
    // Tokens are validated when the pages are built.
    let error = TracePages::builder().token("short").build().unwrap_err();
    assert!(error.to_string().contains("pages.token"), "{error}");
    assert!(TracePages::builder().path("/x/").build().is_err());
    assert!(TracePages::builder().path("/x/{id}").build().is_err());
}

/// Discards spans.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

fn request(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn drain(app: &Router, uri: &str) {
    let response = app.clone().oneshot(request(uri)).await.unwrap();
    let _ = response.into_body().collect().await.unwrap();
}

/// 10^5 distinct raw paths (and long query strings, every request a sample candidate) keep
/// the store bounded: rows per template, samples per ring, bytes under the bound; further
/// names share the overflow row.
#[tokio::test]
async fn distinct_raw_paths_keep_the_store_bounded() {
    let (manager, layers) = TracingManager::builder()
        .span_exporter(Discard)
        .metrics_enabled(false)
        .log_writer(std::io::sink)
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let max_bytes = 256 << 10;
    let pages = manager
        .pages()
        .sample_interval(Duration::ZERO)
        .max_sample_bytes(max_bytes)
        .max_span_names(8)
        .build()
        .unwrap();
    let mut app = Router::new().route("/users/{id}", get(user));
    for i in 0..20 {
        app = app.route(&format!("/r{i}/{{id}}"), get(|| async { "ok" }));
    }
    let app = app.merge(pages.router()).layer(manager.server_layer());
    let padding = "q".repeat(2000);
    const N: usize = 100_000;
    for i in 0..N {
        let uri = match i % 4 {
            0 => format!("/users/{i}?pad={padding}{i}"),
            1 => format!("/raw/{i}/x"),
            2 => format!("/r{}/{i}", (i / 4) % 20),
            _ => format!("/users/{i}"),
        };
        drain(&app, &uri).await;
        if i % 10_000 == 0 {
            let stats = pages.stats();
            assert!(stats.sample_bytes <= max_bytes, "{stats:?}");
        }
    }
    let stats = pages.stats();
    assert_eq!(stats.span_names, 8, "{stats:?}");
    assert!(stats.overflowed_exchanges > 0);
    assert!(stats.sample_bytes <= max_bytes, "{stats:?}");
    // Rows are bounded, rings are bounded: at most 9 rings of 4 per row and the overflow row.
    assert!(stats.samples <= 9 * 9 * 4, "{stats:?}");
    assert_eq!(stats.captures_in_flight, 0, "{stats:?}");
    assert!(
        stats.samples_taken > 1000,
        "every request was a candidate: {stats:?}"
    );

    let response = app
        .clone()
        .oneshot(request("/debug/tracez/api/summary"))
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let summary: Value = serde_json::from_slice(&body).unwrap();
    let rows = summary["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 9, "8 names and the overflow row");
    assert_eq!(rows[8]["name"], "(other span names)");
    assert_eq!(rows[8]["overflow"], true);
    let total: u64 = rows
        .iter()
        .map(|r| r["total"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, N as u64, "every request counted once");
    assert!(
        rows.iter()
            .all(|r| !r["name"].as_str().unwrap().contains("raw")),
        "never a raw path"
    );
}

/// Hand-built: a provider with the pages' span processor, a layer given the pages, its own
/// meter. Counts, samples, and the pages nowhere in the spans or the metric, whether the
/// pages are merged before or after the layer, or nested.
#[tokio::test]
async fn hand_built_setups_feed_the_pages_and_never_see_them() {
    let spans = InMemorySpanExporter::default();
    let pages = TracePages::builder()
        .path("/admin/trace")
        .sample_interval(Duration::ZERO)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .with_span_processor(pages.span_processor())
        .build();
    let metrics = InMemoryMetricExporter::default();
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let layer = TracingLayer::new()
        .tracer_provider(&provider)
        .meter(&meters.meter("test"))
        .pages(&pages);
    // Merged before the layer, after it, and nested under a prefix (the index is then
    // recognised by the end of its template).
    let setups = [
        ("", app().merge(pages.router()).layer(layer.clone())),
        ("", app().layer(layer.clone()).merge(pages.router())),
        (
            "/ops",
            app().nest("/ops", pages.router()).layer(layer.clone()),
        ),
    ];
    for (prefix, app) in &setups {
        for uri in [
            "/users/1",
            "/fail",
            "/admin/trace",
            "/admin/trace/api/summary",
            "/admin/trace/nope",
        ] {
            let uri = if uri.starts_with("/admin") {
                format!("{prefix}{uri}")
            } else {
                uri.to_owned()
            };
            drain(app, &uri).await;
        }
    }
    let response = app()
        .merge(pages.router())
        .oneshot(request("/admin/trace/api/summary"))
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let summary: Value = serde_json::from_slice(&body).unwrap();
    let n = setups.len() as u64;
    assert_eq!(row(&summary, "GET /users/{id}")["total"]["count"], n);
    assert_eq!(row(&summary, "GET /fail")["total"]["errors"], n);
    assert_eq!(summary["rows"].as_array().unwrap().len(), 2, "{summary:#}");
    assert_eq!(
        numbers(&row(&summary, "GET /users/{id}")["samples"]["latency"])
            .iter()
            .sum::<u64>(),
        n
    );
    provider.force_flush().unwrap();
    let names: Vec<String> = spans
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "GET /users/{id}" || n == "GET /fail"),
        "{names:?}"
    );
    let meters_ = meters.clone();
    tokio::task::spawn_blocking(move || meters_.force_flush().unwrap())
        .await
        .unwrap();
    let points = histogram_points(&metrics.get_finished_metrics().unwrap(), SERVER);
    assert_eq!(
        points.iter().map(|p| p.count).sum::<u64>(),
        2 * n,
        "{points:?}"
    );
}

/// A GET that must answer 200; its body as text.
async fn get_text(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.expect("response");
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.text().await.expect("body")
}

/// The `href`s of a page, `&amp;` read back as `&` (the only escape a link of the pages
/// carries).
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"'))
        .map(|(href, _)| href.replace("&amp;", "&"))
        .collect()
}

/// The one latency bucket of row `name` that holds samples.
fn sampled_bucket(summary: &Value, name: &str) -> usize {
    let held = numbers(&row(summary, name)["samples"]["latency"]);
    let buckets: Vec<usize> = (0..held.len()).filter(|b| held[*b] > 0).collect();
    assert_eq!(buckets.len(), 1, "{name}: {held:?}");
    buckets[0]
}

/// The summary table's row of `name` in HTML, up to its running count.
fn html_running(name: &str, running: u64) -> String {
    format!("<th scope=\"row\" class=\"name\">{name}</th><td class=\"num\">{running}</td>")
}

/// A response whose body stays open until the test says: running on its own row (JSON and
/// HTML, the other rows not), then, once its body has ended, completed and no longer
/// running.
#[tokio::test]
async fn a_response_is_running_until_its_body_ends() {
    let pipeline = pipeline(SamplingConfig::default());
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    let (chunks, held) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let held = Arc::new(Mutex::new(Some(held)));
    let hold = get(move || {
        let held = held.lock().unwrap().take();
        async move {
            // The body ends when the test drops the sender.
            Body::from_stream(futures_util::stream::unfold(held, |held| async move {
                let mut held = held?;
                let chunk = held.recv().await?;
                Some((Ok::<_, Infallible>(chunk), Some(held)))
            }))
        }
    });
    let app = app()
        .route("/hold", hold)
        .merge(pages.router())
        .layer(pipeline.manager.server_layer());
    let addr = common::serve(app).await;
    let client = reqwest::Client::new();
    assert_eq!(
        send(&client, format!("http://{addr}/users/1"), None).await,
        StatusCode::OK
    );

    chunks.send(Bytes::from_static(b"first\n")).unwrap();
    let mut response = client
        .get(format!("http://{addr}/hold"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.chunk().await.unwrap().unwrap(), "first\n");
    let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
    let hold = row(&summary, "GET /hold");
    assert_eq!(hold["running"], 1, "{hold:#}");
    assert_eq!(hold["total"]["count"], 0, "not completed yet");
    assert_eq!(hold["window"]["count"], 0);
    assert_eq!(row(&summary, "GET /users/{id}")["running"], 0);
    let html = get_text(&client, &pages_url(addr, "")).await;
    assert!(html.contains(&html_running("GET /hold", 1)), "{html}");
    assert!(html.contains(&html_running("GET /users/{id}", 0)), "{html}");

    chunks.send(Bytes::from_static(b"last\n")).unwrap();
    drop(chunks);
    assert_eq!(response.bytes().await.unwrap(), "last\n");
    let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
    let hold = row(&summary, "GET /hold");
    assert_eq!(hold["running"], 0, "{hold:#}");
    assert_eq!(hold["total"]["count"], 1);
    assert_eq!(hold["total"]["errors"], 0);
    assert_eq!(hold["window"]["count"], 1);
    let html = get_text(&client, &pages_url(addr, "")).await;
    assert!(html.contains(&html_running("GET /hold", 0)), "{html}");
}

/// Counts leave the sliding window as it moves on and stay in the totals. The store reads
/// the wall clock (the clock the spans end with), which a test cannot move, and the
/// shortest window is 1 s, moving a tenth at a time: this test waits about a second. A
/// request leaves at most 1 s after it ended, and not before 0.9 s, so a request made
/// 0.5 s after the first is still in the window when the first has left.
#[tokio::test]
async fn counts_leave_the_window_as_it_slides() {
    let pipeline = pipeline(SamplingConfig::default());
    let pages = pages_builder(&pipeline.manager)
        .window(Duration::from_secs(1))
        .build()
        .unwrap();
    let (addr, client) = serve_with_pages(app(), &pages, &pipeline.manager).await;
    let fail = format!("http://{addr}/fail");

    let first = Instant::now();
    assert_eq!(
        send(&client, fail.clone(), None).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
    assert_eq!(summary["window_seconds"], 1.0);
    let row_now = row(&summary, "GET /fail");
    assert_eq!(row_now["window"]["count"], 1, "{row_now:#}");
    assert_eq!(row_now["window"]["errors"], 1);
    let html = get_text(&client, &pages_url(addr, "")).await;
    assert!(html.contains("Errors, last 1.00 s"), "{html}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
    if first.elapsed() < Duration::from_millis(900) {
        let fail = row(&summary, "GET /fail");
        assert_eq!(fail["window"]["count"], 1, "left too early: {fail:#}");
    }
    let second = Instant::now();
    assert_eq!(
        send(&client, fail, None).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    loop {
        let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
        let read_by = Instant::now();
        let fail = row(&summary, "GET /fail");
        assert_eq!(fail["total"]["count"], 2, "{fail:#}");
        assert_eq!(fail["total"]["errors"], 2);
        let in_window = fail["window"]["count"].as_u64().unwrap();
        assert_eq!(fail["window"]["errors"], in_window, "{fail:#}");
        assert_eq!(
            numbers(&fail["window"]["buckets"]).iter().sum::<u64>(),
            in_window
        );
        if in_window < 2 {
            assert!(
                in_window == 1 || read_by >= second + Duration::from_millis(900),
                "the second request left the window before 0.9 s: {fail:#}"
            );
            break;
        }
        // Only a failure waits this long: the first request leaves by about 1 s.
        assert!(
            first.elapsed() < Duration::from_secs(3),
            "the first request never left the 1 s window: {fail:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails with a message a browser would read as markup.
async fn panics() -> &'static str {
    panic!("boom <at> checkout")
}

/// Records an event of its own on the server span (through the OpenTelemetry API: the
/// handler runs in the span's Context; a `tracing` event outside any `tracing` span is a
/// log line, not a span event).
async fn order() -> &'static str {
    opentelemetry::trace::get_active_span(|span| {
        span.add_event(
            "order placed",
            vec![opentelemetry::KeyValue::new("order_id", 42)],
        );
    });
    "placed"
}

/// The links a reader follows: the summary's count to the samples of its bucket, a sample
/// to the tree of its trace, which shows that trace. A sample carries the events of its own
/// span: the handler's event, and the `exception` event of a panic.
#[tokio::test]
async fn links_lead_from_the_summary_to_a_trace_tree_and_samples_keep_their_events() {
    let pipeline = pipeline(SamplingConfig::default());
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    let app = app()
        .route("/order", get(order))
        .route("/panic", get(panics))
        .merge(pages.router())
        .layer(pipeline.manager.server_layer());
    let addr = common::serve(app).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(send(&client, url("/users/7"), None).await, StatusCode::OK);
    assert_eq!(send(&client, url("/order"), None).await, StatusCode::OK);
    assert_eq!(
        send(&client, url("/panic"), None).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    // Summary -> samples -> trace tree, by the pages' own links.
    let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
    let bucket = sampled_bucket(&summary, "GET /users/{id}");
    let samples = get_json(&client, users_samples_url(addr, bucket)).await;
    let trace_id = samples["samples"][0]["span"]["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let html = get_text(&client, &pages_url(addr, "")).await;
    let to_samples =
        format!("/debug/tracez/samples?name=GET%20%2Fusers%2F%7Bid%7D&bucket={bucket}");
    assert!(hrefs(&html).contains(&to_samples), "{html}");
    let html = get_text(&client, &url(&to_samples)).await;
    let to_trees: Vec<String> = hrefs(&html)
        .into_iter()
        .filter(|href| href.contains("/trace/"))
        .collect();
    assert_eq!(
        to_trees,
        [format!("/debug/tracez/trace/{trace_id}")],
        "{html}"
    );
    let tree = get_text(&client, &url(&to_trees[0])).await;
    assert!(
        tree.contains(&format!("<h1>Trace <code>{trace_id}</code></h1>")),
        "{tree}"
    );
    assert!(tree.contains("<summary>GET /users/{id} <span class=\"kind\">server</span>"));
    assert!(tree.contains("<summary>load_user <span class=\"kind\">internal</span>"));
    assert_eq!(tree.matches("<svg class=\"bar\"").count(), 2, "{tree}");
    assert!(tree.contains("<td>user loaded</td>"), "the child's event");

    // The handler's event, on the server span itself.
    let bucket = sampled_bucket(&summary, "GET /order");
    let samples = get_json(
        &client,
        pages_url(
            addr,
            &format!("/api/samples?name=GET%20%2Forder&bucket={bucket}"),
        ),
    )
    .await;
    let span = &samples["samples"][0]["span"];
    assert_eq!(span["name"], "GET /order");
    let events = span["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{span:#}");
    assert_eq!(events[0]["name"], "order placed");
    assert_eq!(events[0]["attributes"]["order_id"], 42);

    // The panic: an error of class `panic`, its sample with the `exception` event.
    let panic = row(&summary, "GET /panic");
    assert_eq!(panic["total"]["errors"], 1, "{panic:#}");
    assert_eq!(panic["samples"]["errors"]["panic"], 1);
    let samples = get_json(
        &client,
        pages_url(addr, "/api/samples?name=GET%20%2Fpanic&error=panic"),
    )
    .await;
    let span = &samples["samples"][0]["span"];
    assert_eq!(span["status"], "error");
    assert_eq!(span["status_description"], "boom <at> checkout");
    assert_eq!(span["attributes"]["error.type"], "panic");
    assert_eq!(span["attributes"]["http.response.status_code"], 500);
    let events = span["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{span:#}");
    assert_eq!(events[0]["name"], "exception");
    assert_eq!(events[0]["attributes"]["exception.type"], "panic");
    assert_eq!(
        events[0]["attributes"]["exception.message"],
        "boom <at> checkout"
    );
    let html = get_text(
        &client,
        &pages_url(addr, "/samples?name=GET%20%2Fpanic&error=panic"),
    )
    .await;
    assert!(html.contains("<td>exception</td>"), "{html}");
    assert!(html.contains("boom &lt;at&gt; checkout"));
    assert!(!html.contains("<at>"));
}

const DEBUG_TOKEN: &str = "debug-token-Zq7Wm2Kx9Lp4";
const HMAC_SECRET: &str = "hmac-secret-Rt5Yn8Vb3Jc6";

/// The sampler page shows the configuration in force (rules, rates, limits) and counts
/// what the traffic made the sampler decide, per decision, per rate-limit key and per
/// `sampling.reason` of the kept roots, in JSON and HTML alike; debug tokens and the HMAC
/// secret are never shown, on any page.
#[tokio::test]
async fn the_sampler_page_shows_the_configuration_and_the_decisions() {
    let debug = DebugConfig::default().token(DEBUG_TOKEN).max_per_second(5);
    // An HMAC secret needs feature `debug-hmac` (without it, the manager refuses one).
    #[cfg(feature = "debug-hmac")]
    let debug = debug.hmac_secret(HMAC_SECRET);
    let pipeline = pipeline(
        SamplingConfig::default()
            .base_rate(0.0)
            .rule(SamplingRule::new("users", 1.0).route("/users/{id}"))
            .rule(
                SamplingRule::new("slow", 0.0)
                    .route("/slow")
                    .method("GET")
                    .priority(5),
            )
            .high_value("/fail", "GET")
            .high_value_rate(1.0)
            .debug(debug)
            // Far above this traffic: they decide nothing here, and are shown.
            .limits(
                LimitsConfig::default()
                    .traces_per_second(100_000.0)
                    .per_key_traces_per_second(50_000.0)
                    .key(["http.route"]),
            ),
    );
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    let (addr, client) = serve_with_pages(app(), &pages, &pipeline.manager).await;
    let url = |path: &str| format!("http://{addr}{path}");

    for _ in 0..3 {
        send(&client, url("/users/1"), None).await; // rule `users`: kept
    }
    send(&client, url("/users/2"), Some(SAMPLED)).await; // a sampled caller: kept
    for _ in 0..2 {
        send(&client, url("/slow"), None).await; // rule `slow`: dropped
        send(&client, url("/fail"), None).await; // high-value: kept
    }
    let debug = client
        .get(url("/slow"))
        .header("x-debug-trace", DEBUG_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(debug.status(), StatusCode::OK);
    debug.bytes().await.unwrap();
    // Sampled: 3 + 1 roots of /users with their 4 `load_user` children, and 2 /fail.
    let expected_decisions = [
        ("sampled", 10),
        ("dropped", 2),
        ("rate_limited", 0),
        ("lower_bound", 0),
        ("debug", 1),
        ("deferred", 0),
        ("total", 13),
    ];
    let kept = [
        ("debug", 1),
        ("high_value", 2),
        ("parent", 1),
        ("rule:users", 3),
    ];

    let json = get_json(&client, pages_url(addr, "/api/sampler")).await;
    assert_eq!(json["available"], true);
    assert_eq!(json["base_rate"], 0.0);
    assert_eq!(json["high_value_rate"], 1.0);
    let rules: Vec<_> = json["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["route"].as_str().unwrap(),
                r["method"].as_str(),
                r["rate"].as_f64().unwrap(),
                r["priority"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("users", "/users/{id}", None, 1.0, 0),
            ("slow", "/slow", Some("GET"), 0.0, 5)
        ]
    );
    assert_eq!(json["high_value"][0]["route"], "/fail");
    assert_eq!(json["high_value"][0]["method"], "GET");
    let limits = &json["config"]["limits"];
    assert_eq!(limits["traces_per_second"], 100_000.0, "{limits:#}");
    assert_eq!(limits["per_key_traces_per_second"], 50_000.0);
    assert_eq!(limits["key"][0], "http.route");
    assert_eq!(json["config"]["debug"]["max_per_second"], 5);
    assert_eq!(json["config"]["debug"]["tokens"], "<1 redacted>");
    if cfg!(feature = "debug-hmac") {
        assert_eq!(json["config"]["debug"]["hmac_secret"], "<redacted>");
    }
    for (name, n) in expected_decisions {
        assert_eq!(
            json["decisions"][name], n,
            "{name}: {:#}",
            json["decisions"]
        );
    }
    assert_eq!(
        json["decisions"]["total"],
        pipeline.manager.sampler().stats().decisions()
    );
    assert_eq!(json["decisions"]["tracked_keys"], 3);
    // Per key: the roots the limits saw (the debug request and the sampled caller's
    // were decided before them).
    let mut keys: Vec<_> = json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap(),
                k["arrivals"].as_u64().unwrap(),
                k["sampled"].as_u64().unwrap(),
                k["dropped"].as_u64().unwrap(),
                k["rate_limited"].as_u64().unwrap(),
            )
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("/fail", 2, 2, 0, 0),
            ("/slow", 2, 0, 2, 0),
            ("/users/{id}", 3, 3, 0, 0)
        ],
        "{:#}",
        json["keys"]
    );
    for (reason, n) in kept {
        assert_eq!(json["kept_by_reason"][reason], n, "{reason}: {json:#}");
    }
    assert_eq!(
        json["kept_by_reason"].as_object().unwrap().len(),
        kept.len()
    );
    assert_eq!(json["changes"]["enabled"], true);

    let html = get_text(&client, &pages_url(addr, "/sampler")).await;
    for field in [
        "name=\"base_rate\" value=\"0\"",
        "name=\"high_value_rate\" value=\"1\"",
        "name=\"rule.users\" value=\"1\"",
        "name=\"rule.slow\" value=\"0\"",
        "<td>users</td><td><code>/users/{id}</code></td><td>*</td>",
        "<td>slow</td><td><code>/slow</code></td><td>GET</td>",
        "<tr><td><code>/fail</code></td><td>GET</td></tr>",
        "&quot;traces_per_second&quot;: 100000.0",
        "&quot;per_key_traces_per_second&quot;: 50000.0",
        "&quot;tokens&quot;: &quot;&lt;1 redacted&gt;&quot;",
        "<tr><td>/users/{id}</td><td class=\"num\">3</td><td class=\"num\">3</td>",
        "<tr><td>/slow</td><td class=\"num\">2</td><td class=\"num\">0</td><td class=\"num\">2</td>",
    ] {
        assert!(html.contains(field), "{field}: {html}");
    }
    if cfg!(feature = "debug-hmac") {
        let field = "&quot;hmac_secret&quot;: &quot;&lt;redacted&gt;&quot;";
        assert!(html.contains(field), "{field}: {html}");
    }
    for (label, n) in [
        ("sampled (probability or sampled parent)", 10),
        ("dropped (probability or unsampled parent)", 2),
        ("rate limited", 0),
        ("kept by a key&#39;s lower bound", 0),
        ("kept by a debug token", 1),
        ("all decisions", 13),
    ] {
        let cell = format!("<tr><th>{label}</th><td class=\"num\">{n}</td></tr>");
        assert!(
            html.contains(&cell) || html.contains(&cell.replace("&#39;", "'")),
            "{cell}: {html}"
        );
    }
    for (reason, n) in kept {
        let cell = format!("<tr><th>{reason}</th><td class=\"num\">{n}</td></tr>");
        assert!(html.contains(&cell), "{cell}");
    }

    // The debug request's own sample and trace, and every other page: no token, no secret.
    let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
    let bucket = sampled_bucket(&summary, "GET /slow");
    let samples = format!("/samples?name=GET%20%2Fslow&bucket={bucket}");
    let debug_sample = get_json(&client, pages_url(addr, &format!("/api{samples}"))).await;
    let span = &debug_sample["samples"][0]["span"];
    assert_eq!(span["attributes"]["sampling.reason"], "debug");
    let trace = format!("/trace/{}", span["trace_id"].as_str().unwrap());
    for page in [
        "".to_owned(),
        "/api/summary".to_owned(),
        "/sampler".to_owned(),
        "/api/sampler".to_owned(),
        "/export".to_owned(),
        "/api/export".to_owned(),
        samples.clone(),
        format!("/api{samples}"),
        trace.clone(),
        format!("/api{trace}"),
    ] {
        let text = get_text(&client, &pages_url(addr, &page)).await;
        assert!(!text.contains(DEBUG_TOKEN), "{page}: the debug token");
        assert!(!text.contains(HMAC_SECRET), "{page}: the HMAC secret");
    }
}

/// The export page shows the queue, exported and dropped counts of the manager's export:
/// what is queued before a flush, exported after it, nothing dropped, no error.
#[tokio::test]
async fn the_export_page_counts_what_was_exported() {
    let pipeline = Pipeline::new(
        TracingManager::builder()
            .service_name("pages-test")
            // No export before the flush: the queue is seen as it fills.
            .batch(
                BatchConfig::default()
                    .max_queue_size(64)
                    .scheduled_delay(Duration::from_secs(3600)),
            ),
        Temporality::Cumulative,
    );
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    let (addr, client) = serve_with_pages(app(), &pages, &pipeline.manager).await;
    for path in ["/users/1", "/users/2", "/fail"] {
        send(&client, format!("http://{addr}{path}"), None).await;
    }
    // Two server spans with their `load_user` children, and /fail.
    let spans = 5;

    let export = get_json(&client, pages_url(addr, "/api/export")).await;
    assert_eq!(export["available"], true);
    assert_eq!(export["queued"], spans, "{export:#}");
    assert_eq!(export["queue_capacity"], 64);
    assert_eq!(export["exported"], 0);
    let html = get_text(&client, &pages_url(addr, "/export")).await;
    assert!(
        html.contains(&format!(
            "<tr><th>queued now</th><td class=\"num\">{spans} of 64</td></tr>"
        )),
        "{html}"
    );

    assert_eq!(pipeline.finished_spans().await.len(), spans as usize);
    let export = get_json(&client, pages_url(addr, "/api/export")).await;
    let stats = pipeline.manager.stats();
    assert_eq!(stats.exported, spans);
    assert_eq!(export["exported"], stats.exported, "{export:#}");
    assert_eq!(export["queued"], 0);
    assert_eq!(export["dropped_queue_full"], 0);
    assert_eq!(export["dropped_export_failed"], 0);
    assert_eq!(export["last_error"], Value::Null);
    let html = get_text(&client, &pages_url(addr, "/export")).await;
    for row in [
        "<tr><th>queued now</th><td class=\"num\">0 of 64</td></tr>".to_owned(),
        format!("<tr><th>exported</th><td class=\"num\">{spans}</td></tr>"),
        "<tr><th>dropped: queue full</th><td class=\"num\">0</td></tr>".to_owned(),
        "<tr><th>dropped: export failed</th><td class=\"num\">0</td></tr>".to_owned(),
        "<tr><th>last error</th><td>none</td></tr>".to_owned(),
    ] {
        assert!(html.contains(&row), "{row}: {html}");
    }
}

/// An exporter that fails: its spans are counted as dropped, and the last error is shown
/// (in red on the HTML page, escaped).
#[tokio::test]
async fn the_export_page_shows_the_last_export_error() {
    let (manager, layers) = TracingManager::builder()
        .service_name("pages-test")
        // A message a browser would read as markup.
        .span_exporter(common::FailingExporter("the collector said <no>"))
        .metrics_enabled(false)
        .log_writer(std::io::sink)
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let pages = pages_builder(&manager).build().unwrap();
    let (addr, client) = serve_with_pages(app(), &pages, &manager).await;
    send(&client, format!("http://{addr}/users/1"), None).await;
    send(&client, format!("http://{addr}/fail"), None).await;
    let provider = manager.tracer_provider().clone();
    // The flush reports the export's failure; what it did is in the stats.
    let _ = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();

    let stats = manager.stats();
    assert_eq!(stats.dropped_export_failed, 3, "{stats:?}");
    let export = get_json(&client, pages_url(addr, "/api/export")).await;
    assert_eq!(export["exported"], 0, "{export:#}");
    assert_eq!(export["queued"], 0);
    assert_eq!(export["dropped_queue_full"], 0);
    assert_eq!(export["dropped_export_failed"], 3);
    let error = export["last_error"].as_str().expect("the last error");
    assert_eq!(Some(error), stats.last_error.as_deref());
    assert!(error.starts_with("the custom span exporter: "), "{error}");
    assert!(error.contains("the collector said <no>"), "{error}");
    let html = get_text(&client, &pages_url(addr, "/export")).await;
    assert!(
        html.contains("<tr><th>dropped: export failed</th><td class=\"num err\">3</td></tr>"),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<tr><th>last error</th><td class=\"err\">{}</td></tr>",
            error.replace('<', "&lt;").replace('>', "&gt;")
        )),
        "{html}"
    );
    assert!(!html.contains("<no>"));
}

/// Strings a client chose are cut to the manager's `max_attribute_value_length` on the
/// pages, as on the exported span, even when another manager built later in the process
/// has another bound.
#[tokio::test]
async fn long_values_are_cut_as_exported() {
    let max = 128;
    let pipeline = Pipeline::new(
        TracingManager::builder()
            .service_name("pages-test")
            .span_limits(SpanLimitsConfig::default().max_attribute_value_length(max as u32)),
        Temporality::Cumulative,
    );
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    // The last manager built sets the process-wide bound (for `#[traced]`): the default.
    let (_other, _) = TracingManager::builder()
        .span_exporter(Discard)
        .metrics_enabled(false)
        .log_writer(std::io::sink)
        .build()
        .unwrap();
    let (addr, client) = serve_with_pages(app(), &pages, &pipeline.manager).await;
    let agent = format!("agent/{}", "0123456789".repeat(100));
    let query = format!("q={}", "abcdefghij".repeat(100));
    let response = client
        .get(format!("http://{addr}/users/1?{query}"))
        .header("user-agent", &agent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap();

    let summary = get_json(&client, pages_url(addr, "/api/summary")).await;
    let samples = format!(
        "/samples?name=GET%20%2Fusers%2F%7Bid%7D&bucket={}",
        sampled_bucket(&summary, "GET /users/{id}")
    );
    let json = get_json(&client, pages_url(addr, &format!("/api{samples}"))).await;
    let attributes = &json["samples"][0]["span"]["attributes"];
    assert_eq!(
        attributes["user_agent.original"],
        agent[..max],
        "{attributes:#}"
    );
    assert_eq!(attributes["url.query"], query[..max]);
    let exported = pipeline.finished_spans().await;
    let server = exported
        .iter()
        .find(|s| s.name == "GET /users/{id}")
        .unwrap();
    assert_eq!(
        common::attr_str(server, "user_agent.original").as_deref(),
        Some(&agent[..max]),
        "the same as exported"
    );
    assert_eq!(
        common::attr_str(server, "url.query").as_deref(),
        Some(&query[..max])
    );
    let html = get_text(&client, &pages_url(addr, &samples)).await;
    assert!(html.contains(&agent[..max]), "{html}");
    assert!(!html.contains(&agent[..=max]));
    assert!(!html.contains(&query[..=max]));
}

/// Pages that were built and never mounted record nothing: the traffic before `router()`
/// is nowhere, the traffic after it is counted.
#[tokio::test]
async fn unmounted_pages_record_nothing() {
    let pipeline = pipeline(SamplingConfig::default());
    let pages = pages_builder(&pipeline.manager).build().unwrap();
    let addr = common::serve(app().layer(pipeline.manager.server_layer())).await;
    let client = reqwest::Client::new();
    for path in ["/users/1", "/fail", "/slow"] {
        send(&client, format!("http://{addr}{path}"), None).await;
    }
    assert_eq!(pages.stats(), PagesStats::default());
    assert_eq!(
        pipeline.manager.sampler().stats().decisions(),
        4,
        "the requests were traced"
    );

    // Mounted now, on a listener of their own.
    let admin = common::serve(pages.router()).await;
    let summary = get_json(&client, pages_url(admin, "/api/summary")).await;
    assert_eq!(summary["rows"], serde_json::json!([]), "{summary:#}");
    assert_eq!(summary["store"]["samples_taken"], 0);
    let html = get_text(&client, &pages_url(admin, "")).await;
    assert!(html.contains("No request yet."), "{html}");
    let sampler = get_json(&client, pages_url(admin, "/api/sampler")).await;
    assert_eq!(sampler["kept_by_reason"], serde_json::json!({}));
    assert_eq!(pages.stats(), PagesStats::default());

    send(&client, format!("http://{addr}/users/2"), None).await;
    let summary = get_json(&client, pages_url(admin, "/api/summary")).await;
    assert_eq!(summary["rows"].as_array().unwrap().len(), 1, "{summary:#}");
    assert_eq!(row(&summary, "GET /users/{id}")["total"]["count"], 1);
    let stats = pages.stats();
    assert_eq!((stats.span_names, stats.samples_taken), (1, 1), "{stats:?}");
}
