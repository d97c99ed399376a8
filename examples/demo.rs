//! `cargo run --example demo`: two services on 127.0.0.1, a gateway calling a backend,
//! both traced with meshtrace and set up by one `TracingManager` call. A few requests
//! go through; the log lines they write carry `trace_id`, `span_id` and
//! `correlation_id`, the stdout exporter prints each sampled span, at the end every trace
//! is printed as a tree across both services, and at shutdown the HTTP metrics of every
//! request (sampled or not) are printed, one line per data point. The trace pages of both
//! services are served on an admin listener while the demo runs (their URL is printed;
//! `MESHTRACE_DEMO_SCREENSHOT=docs/pages.png` has headless Chromium take a screenshot of
//! them before the demo ends). `cargo run --example demo -- --serve` keeps the services
//! and the pages up until Ctrl-C or SIGTERM. Either way the services then shut down
//! gracefully: open requests finish, their spans are exported, and only then does the
//! manager flush and stop. Exits 0; no network beyond loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path as FilePath;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshtrace::client::{ClientTracingLayer, UrlTemplate};
use meshtrace::context::CorrelationId;
use meshtrace::export::StdoutExporter;
use meshtrace::extract::TraceContext;
use meshtrace::manager::TracingManager;
use meshtrace::metrics::StdoutMetricExporter;
use opentelemetry::trace::SpanId;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData, SpanExporter};
use tower::{ServiceBuilder, ServiceExt};

/// Sends every exported span both to stdout (as a deployment would, to a collector)
/// and to memory, so that the demo can print the traces as trees at the end.
#[derive(Debug)]
struct Tee {
    stdout: StdoutExporter,
    memory: InMemorySpanExporter,
}

impl SpanExporter for Tee {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.memory.export(batch.clone()).await?;
        self.stdout.export(batch).await
    }
}

/// The backend: `/users/{id}`, a child span for the lookup, 503 for user 0.
async fn user(Path(id): Path<u64>, trace: TraceContext) -> (StatusCode, String) {
    let tenant = trace
        .baggage()
        .get("tenant")
        .map(|v| v.to_string())
        .unwrap_or_else(|| "-".into());
    if id == 0 {
        return (StatusCode::SERVICE_UNAVAILABLE, "user store down".into());
    }
    tracing::info_span!("load_user").in_scope(|| tracing::info!(user = id, "user loaded"));
    (StatusCode::OK, format!("user {id} of tenant {tenant}"))
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>;

#[derive(Clone)]
struct Gateway {
    backend: SocketAddr,
    client: HttpClient,
}

/// The gateway: `/orders/{id}` asks the backend for the order's user.
async fn order(
    State(gateway): State<Gateway>,
    Path(id): Path<u64>,
    cid: CorrelationId,
) -> (StatusCode, String) {
    // One layer on the client: a client span per call, and traceparent, tracestate,
    // baggage and the correlation id go to the backend.
    let client = ServiceBuilder::new()
        .layer(ClientTracingLayer::new())
        .service(gateway.client.clone());
    let mut request = http::Request::get(format!("http://{}/users/{}", gateway.backend, id % 10))
        .body(Empty::new())
        .expect("a valid request");
    request.extensions_mut().insert(UrlTemplate("/users/{id}"));
    tracing::info!(order = id, "asking the backend for the order's user");
    match client.oneshot(request).await {
        Ok(response) => {
            let status = response.status();
            let body = match response.into_body().collect().await {
                Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                Err(error) => error.to_string(),
            };
            let status = if status.is_success() {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (status, format!("order {id}: {body} (correlation {cid})"))
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
    }
}

/// The services of the demo, each on its own 127.0.0.1 port, and how to stop them.
struct Servers {
    stop: tokio::sync::watch::Sender<()>,
    running: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Servers {
    fn new() -> Self {
        Self {
            stop: tokio::sync::watch::channel(()).0,
            running: Vec::new(),
        }
    }

    /// Serves `app` until [`Servers::shut_down`], with axum's graceful shutdown: requests
    /// in flight finish (and end their spans) before the server returns.
    async fn serve(&mut self, app: Router) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut stop = self.stop.subscribe();
        self.running.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
        }));
        Ok(addr)
    }

    /// Stops accepting, waits for the requests in flight, then returns.
    async fn shut_down(self) -> Result<(), Box<dyn std::error::Error>> {
        self.stop.send_replace(());
        for server in self.running {
            server.await??;
        }
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let memory = InMemorySpanExporter::default();
    // One call: tracer provider with meshtrace's sampler, sampled-only bounded export,
    // the `tracing` subscriber with correlated log lines, the W3C propagator.
    let telemetry = TracingManager::builder()
        .service_name("demo")
        .service_version(env!("CARGO_PKG_VERSION"))
        .environment("dev")
        .span_exporter(Tee {
            stdout: StdoutExporter::new(),
            memory: memory.clone(),
        })
        // Spans go to code of ours, so metrics need an exporter too: stdout, printed at
        // shutdown (the export interval, 60 s, is longer than the demo).
        .metric_exporter(StdoutMetricExporter::new())
        // The SDK logs its own setup at INFO; the demo shows only the services' logs.
        .log_filter("info,opentelemetry=warn")
        .install()?;

    let mut servers = Servers::new();
    let backend = servers
        .serve(
            Router::new()
                .route("/users/{id}", get(user))
                .layer(telemetry.server_layer()),
        )
        .await?;
    let gateway = servers
        .serve(
            Router::new()
                .route("/orders/{id}", get(order))
                .route("/health", get(|| async { "ok" }))
                .with_state(Gateway {
                    backend,
                    client: Client::builder(TokioExecutor::new()).build_http(),
                })
                .layer(
                    telemetry
                        .server_layer()
                        .skip_if(|req| req.uri.path() == "/health"),
                ),
        )
        .await?;
    // The trace pages of both services (one manager), on an admin listener of their own;
    // merged into the gateway's Router instead, they would not appear in its traces either.
    // The token allows changing the sampler's rates from the page.
    let token = uuid::Uuid::new_v4().simple().to_string();
    let pages = telemetry.pages().token(token.as_str()).build()?;
    let admin = servers.serve(pages.router()).await?;
    println!("gateway on http://{gateway}, backend on http://{backend}");
    println!(
        "trace pages on http://{admin}{} (token for changes: {token})\n",
        pages.path()
    );

    let client = reqwest::Client::new();
    let requests: &[(&str, &[(&str, &str)])] = &[
        ("/orders/42", &[]),
        (
            "/orders/7?token=secret&page=2",
            &[
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                ("baggage", "userId=alice,tenant=acme"),
                ("x-correlation-id", "order-1234"),
            ],
        ),
        ("/orders/9", &[("x-correlation-id", "<script>")]),
        ("/orders/10", &[]),
        ("/health", &[]),
    ];
    for (path, headers) in requests {
        let mut request = client.get(format!("http://{gateway}{path}"));
        for (name, value) in *headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await?;
        let status = response.status();
        let correlation = response
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let body = response.text().await?;
        println!(
            "GET {path:<30} -> {status}  x-correlation-id: {correlation}\n    {}",
            body.trim()
        );
    }

    // A little more traffic for the trace pages, from a caller that did not sample its
    // trace: nothing is exported, every request is counted on the pages (and in the metrics).
    println!("\n12 more orders from a caller that did not sample them: counted, not exported");
    for i in 0..12 {
        let response = client
            .get(format!("http://{gateway}/orders/{}", 100 + i))
            .header(
                "traceparent",
                "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            )
            .send()
            .await?;
        response.bytes().await?;
    }
    if let Ok(path) = std::env::var("MESHTRACE_DEMO_SCREENSHOT") {
        let url = format!("http://{admin}{}", pages.path());
        screenshot(&url, FilePath::new(&path)).await?;
        println!("\nscreenshot of {url} in {path}");
    }

    // The spans only: the metrics are printed once, at shutdown.
    telemetry.tracer_provider().force_flush()?;
    print_traces(&memory.get_finished_spans()?);
    let stats = telemetry.stats();
    println!(
        "\nexported {} spans, dropped {}",
        stats.exported,
        stats.dropped()
    );
    if std::env::args().any(|arg| arg == "--serve") {
        println!("\nserving until Ctrl-C (or SIGTERM): try the trace pages above");
        meshtrace::shutdown_signal().await;
    }
    // Graceful shutdown, in this order: the servers finish their requests (so every span
    // of theirs has ended), then the manager exports what is queued and stops. A service
    // does the same with `axum::serve(..).with_graceful_shutdown(shutdown_signal())`
    // followed by `telemetry.shutdown()`, as the README's quickstart shows.
    servers.shut_down().await?;
    println!("\nmetrics (every request, sampled or not), exported at shutdown:");
    telemetry.shutdown().await?;
    Ok(())
}

/// Has headless Chromium take a screenshot of `url` into `path` (nothing but 127.0.0.1
/// resolves for it; at most 60 s).
async fn screenshot(url: &str, path: &FilePath) -> Result<(), Box<dyn std::error::Error>> {
    let profile = std::env::temp_dir().join(format!("meshtrace-demo-{}", std::process::id()));
    let path = std::path::absolute(path)?;
    let run = tokio::process::Command::new(
        std::env::var("MESHTRACE_CHROMIUM").unwrap_or_else(|_| "chromium".into()),
    )
    .args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1200,470",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--screenshot={}", path.display()))
    .arg(url)
    .kill_on_drop(true)
    .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run).await??;
    let _ = std::fs::remove_dir_all(&profile);
    if !output.status.success() {
        return Err(format!(
            "chromium failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

/// Prints spans grouped by trace, children indented under their parent.
fn print_traces(spans: &[SpanData]) {
    let mut traces: BTreeMap<String, Vec<&SpanData>> = BTreeMap::new();
    for span in spans {
        traces
            .entry(span.span_context.trace_id().to_string())
            .or_default()
            .push(span);
    }
    println!(
        "\n{} spans exported in {} traces",
        spans.len(),
        traces.len()
    );
    for (trace_id, spans) in &traces {
        println!("\ntrace {trace_id}");
        let ids: Vec<SpanId> = spans.iter().map(|s| s.span_context.span_id()).collect();
        // Roots of this process: no parent, or a parent in another process.
        for root in spans.iter().filter(|s| !ids.contains(&s.parent_span_id)) {
            print_span(root, spans, 1);
        }
    }
}

fn print_span(span: &SpanData, all: &[&SpanData], depth: usize) {
    let indent = "  ".repeat(depth);
    let parent = if span.parent_span_id == SpanId::INVALID {
        "root".to_owned()
    } else if span.parent_span_is_remote {
        format!("remote parent {}", span.parent_span_id)
    } else {
        format!("parent {}", span.parent_span_id)
    };
    let millis = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0;
    println!(
        "{indent}{} [{:?}] span {} ({parent}) {millis:.2} ms status={:?}",
        span.name,
        span.span_kind,
        span.span_context.span_id(),
        span.status
    );
    let mut attributes: Vec<String> = span
        .attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    attributes.sort();
    if !attributes.is_empty() {
        println!("{indent}    {}", attributes.join(" "));
    }
    for child in all
        .iter()
        .filter(|s| s.parent_span_id == span.span_context.span_id())
    {
        print_span(child, all, depth + 1);
    }
}
