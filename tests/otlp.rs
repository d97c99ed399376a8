//! The OTLP exporter against a real receiver on 127.0.0.1 (HTTP/protobuf and gRPC, gzip),
//! and a Router's behaviour while the collector is down.
#![cfg(all(feature = "otlp", feature = "axum"))]

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshtrace::config::{BatchConfig, ExporterConfig, OtlpCompression, OtlpConfig, OtlpProtocol};
use meshtrace::{TracingManager, TracingManagerBuilder};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

// ---------------------------------------------------------------------------------------
// an OTLP receiver: HTTP/1.1 protobuf and gRPC (h2c), gzip or not

struct Received<R = ExportTraceServiceRequest> {
    path: String,
    headers: HeaderMap,
    request: R,
}

/// What arrived, per signal.
#[derive(Clone, Default)]
struct Arrived {
    traces: Arc<Mutex<Vec<Received>>>,
    metrics: Arc<Mutex<Vec<Received<ExportMetricsServiceRequest>>>>,
    logs: Arc<Mutex<Vec<Received<ExportLogsServiceRequest>>>>,
}

struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arrived,
    /// Whether exports are held (see [`Store`]).
    held: Arc<std::sync::atomic::AtomicBool>,
}

/// The receiver's state: what arrived, whether it is down (answering every export with
/// HTTP 400 until `POST /control/up` arrives), and whether it is held (answering no export
/// until `POST /control/release` arrives, then every one with success).
#[derive(Clone, Default)]
struct Store {
    arrived: Arrived,
    down: Arc<std::sync::atomic::AtomicBool>,
    held: Arc<std::sync::atomic::AtomicBool>,
    released: Arc<tokio::sync::Notify>,
}

impl Receiver {
    /// Serves on its own thread and runtime, so that the test thread may block (flush).
    fn start() -> Receiver {
        Self::start_with(false)
    }

    /// A receiver that is down until told otherwise (see [`Store`]).
    fn start_with(down: bool) -> Receiver {
        Self::serve(down, None)
    }

    /// A receiver that holds every export until told otherwise (see [`Store`]).
    fn start_held() -> Receiver {
        let receiver = Self::serve_plain(false);
        receiver
            .held
            .store(true, std::sync::atomic::Ordering::SeqCst);
        receiver
    }

    /// A receiver behind TLS (feature `otlp-tls`).
    #[cfg(feature = "otlp-tls")]
    fn start_tls(config: rustls::ServerConfig) -> Receiver {
        Self::serve(
            false,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
    }

    #[cfg(not(feature = "otlp-tls"))]
    fn serve(down: bool, _tls: Option<std::convert::Infallible>) -> Receiver {
        Self::serve_plain(down)
    }

    #[cfg(feature = "otlp-tls")]
    fn serve(down: bool, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        match tls {
            None => Self::serve_plain(down),
            Some(acceptor) => {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                listener.set_nonblocking(true).unwrap();
                let addr = listener.local_addr().unwrap();
                let arrived = Arrived::default();
                let received = Arc::clone(&arrived.traces);
                let store = Store {
                    arrived: arrived.clone(),
                    down: Arc::new(std::sync::atomic::AtomicBool::new(down)),
                    ..Store::default()
                };
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                        loop {
                            let (stream, _) = listener.accept().await.unwrap();
                            let store = store.clone();
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                // A refused handshake just closes the connection.
                                let Ok(stream) = acceptor.accept(stream).await else {
                                    return;
                                };
                                let service = hyper::service::service_fn(move |request| {
                                    handle(request, store.clone())
                                });
                                let _ = hyper_util::server::conn::auto::Builder::new(
                                    TokioExecutor::new(),
                                )
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                            });
                        }
                    });
                });
                Receiver {
                    addr,
                    received,
                    arrived,
                    held: Arc::default(),
                }
            }
        }
    }

    fn serve_plain(down: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let arrived = Arrived::default();
        let received = Arc::clone(&arrived.traces);
        let store = Store {
            arrived: arrived.clone(),
            down: Arc::new(std::sync::atomic::AtomicBool::new(down)),
            ..Store::default()
        };
        let held = Arc::clone(&store.held);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let store = store.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            handle(request, store.clone())
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Receiver {
            addr,
            received,
            arrived,
            held,
        }
    }

    /// The trace export requests that arrived so far.
    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }

    fn take_metrics(&self) -> Vec<Received<ExportMetricsServiceRequest>> {
        std::mem::take(&mut *self.arrived.metrics.lock().unwrap())
    }

    fn take_logs(&self) -> Vec<Received<ExportLogsServiceRequest>> {
        std::mem::take(&mut *self.arrived.logs.lock().unwrap())
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

async fn handle(
    request: Request<Incoming>,
    store: Store,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    use std::sync::atomic::Ordering;
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    if parts.uri.path() == "/control/up" {
        store.down.store(false, Ordering::SeqCst);
        return Ok(Response::new(Full::new(Bytes::new()).boxed()));
    }
    if parts.uri.path() == "/control/release" {
        store.held.store(false, Ordering::SeqCst);
        store.released.notify_waiters();
        return Ok(Response::new(Full::new(Bytes::new()).boxed()));
    }
    loop {
        let released = store.released.notified();
        if !store.held.load(Ordering::SeqCst) {
            break;
        }
        released.await;
    }
    if store.down.load(Ordering::SeqCst) {
        return Ok(Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::from_static(b"collector is down")).boxed())
            .unwrap());
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let grpc = header("content-type").starts_with("application/grpc");
    let payload = if grpc {
        // Length-prefixed message: compressed flag (1 byte), length (4 bytes, big endian).
        let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        let message = &bytes[5..5 + len];
        if bytes[0] == 1 {
            assert_eq!(header("grpc-encoding"), "gzip");
            gunzip(message)
        } else {
            message.to_vec()
        }
    } else if header("content-encoding") == "gzip" {
        gunzip(&bytes)
    } else {
        bytes.to_vec()
    };
    let json = header("content-type") == "application/json";
    let path = parts.uri.path().to_owned();
    // By the signal path: `/v1/metrics`, `...MetricsService/Export`, and so on.
    fn decode<R: Message + Default + serde::de::DeserializeOwned>(json: bool, payload: &[u8]) -> R {
        if json {
            serde_json::from_slice(payload).expect("OTLP JSON")
        } else {
            R::decode(payload).expect("protobuf")
        }
    }
    let headers = parts.headers.clone();
    if path.to_ascii_lowercase().contains("metrics") {
        store.arrived.metrics.lock().unwrap().push(Received {
            path,
            headers,
            request: decode(json, &payload),
        });
    } else if path.to_ascii_lowercase().contains("logs") {
        store.arrived.logs.lock().unwrap().push(Received {
            path,
            headers,
            request: decode(json, &payload),
        });
    } else {
        store.arrived.traces.lock().unwrap().push(Received {
            path,
            headers,
            request: decode(json, &payload),
        });
    }
    let response = if grpc {
        // An empty ExportTraceServiceResponse, then the status in trailers.
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames = futures_util::stream::iter([
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
            Ok(Frame::trailers(trailers)),
        ]);
        Response::builder()
            .header("content-type", "application/grpc")
            .body(BodyExt::boxed(StreamBody::new(frames)))
            .unwrap()
    } else {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap()
    };
    Ok(response)
}

// ---------------------------------------------------------------------------------------
// helpers

fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |name| map.get(name).cloned()
}

/// Records a root span with a child through `builder`'s pipeline and flushes it. Metrics
/// are off: some of these pipelines configure the spans' URL or CA alone (the metrics
/// round trips are below).
fn export_two_spans(builder: TracingManagerBuilder) -> TracingManager {
    let (manager, layers) = builder
        .metrics_enabled(false)
        .log_writer(std::io::sink)
        .build()
        .expect("build");
    tracing::subscriber::with_default(layers.into_subscriber(), || {
        tracing::info_span!("root", order.id = 42_i64).in_scope(|| {
            tracing::info_span!("child").in_scope(|| {});
        });
    });
    manager.force_flush().expect("flush");
    manager
}

fn resource_attr(request: &ExportTraceServiceRequest, key: &str) -> Option<String> {
    let resource = request.resource_spans[0].resource.as_ref()?;
    resource
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            _ => None,
        })
}

fn spans(request: &ExportTraceServiceRequest) -> Vec<&Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect()
}

fn assert_root_and_child(received: &[Received]) {
    let all: Vec<&Span> = received.iter().flat_map(|r| spans(&r.request)).collect();
    assert_eq!(all.len(), 2, "two spans arrive");
    let root = all.iter().find(|s| s.name == "root").expect("root");
    let child = all.iter().find(|s| s.name == "child").expect("child");
    assert_eq!(root.trace_id.len(), 16);
    assert_eq!(child.trace_id, root.trace_id, "same trace");
    assert_eq!(
        child.parent_span_id, root.span_id,
        "the child points at the root"
    );
    assert!(root.parent_span_id.is_empty(), "the root has no parent");
    assert!(
        root.attributes.iter().any(|kv| kv.key == "order.id"),
        "attributes arrive: {:?}",
        root.attributes
    );
}

// ---------------------------------------------------------------------------------------
// round trips

#[test]
fn http_protobuf_round_trip_with_gzip_from_env() {
    let receiver = Receiver::start();
    let _manager = export_two_spans(
        TracingManager::from_env_with(env(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", receiver.addr),
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-api-key=s3cr3t%20value".into(),
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".into()),
            ("OTEL_SERVICE_NAME", "checkout".into()),
        ]))
        .service_version("1.4.2")
        .environment("staging"),
    );
    let received = receiver.take();
    assert!(!received.is_empty());
    for r in &received {
        assert_eq!(
            r.path, "/v1/traces",
            "the signal path is appended to the base URL"
        );
        assert_eq!(r.headers["content-encoding"], "gzip");
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        assert_eq!(r.headers["x-api-key"], "s3cr3t value");
        let request = &r.request;
        assert_eq!(resource_attr(request, "service.name").unwrap(), "checkout");
        assert_eq!(resource_attr(request, "service.version").unwrap(), "1.4.2");
        assert_eq!(
            resource_attr(request, "deployment.environment.name").unwrap(),
            "staging"
        );
        assert_eq!(
            resource_attr(request, "process.pid").unwrap(),
            std::process::id().to_string()
        );
    }
    assert_root_and_child(&received);
}

#[test]
fn http_protobuf_without_compression_to_a_full_traces_url() {
    let receiver = Receiver::start();
    let _manager = export_two_spans(
        TracingManager::builder().exporter(ExporterConfig::Otlp(
            OtlpConfig::default()
                .traces_endpoint(format!("http://{}/custom/path", receiver.addr))
                .compression(OtlpCompression::None)
                .timeout(Duration::from_secs(1)),
        )),
    );
    let received = receiver.take();
    assert!(!received.is_empty());
    assert_eq!(
        received[0].path, "/custom/path",
        "a traces URL is used as is"
    );
    assert!(received[0].headers.get("content-encoding").is_none());
    assert_root_and_child(&received);
}

#[test]
fn grpc_round_trip_with_gzip() {
    let receiver = Receiver::start();
    let manager = export_two_spans(
        TracingManager::builder()
            .service_name("grpc-svc")
            .exporter(ExporterConfig::Otlp(
                OtlpConfig::new(format!("http://{}", receiver.addr))
                    .protocol(OtlpProtocol::Grpc)
                    .compression(OtlpCompression::Gzip)
                    .header("x-api-key", "grpc-secret")
                    .timeout(Duration::from_secs(1)),
            )),
    );
    let received = receiver.take();
    assert!(!received.is_empty());
    for r in &received {
        assert_eq!(
            r.path,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        assert_eq!(r.headers["x-api-key"], "grpc-secret");
        assert_eq!(
            r.headers["grpc-encoding"], "gzip",
            "the payload is gzip-compressed"
        );
        assert_eq!(
            resource_attr(&r.request, "service.name").unwrap(),
            "grpc-svc"
        );
    }
    assert_root_and_child(&received);
    assert_eq!(manager.stats().exported, 2);
}

// ---------------------------------------------------------------------------------------
// collector down

fn traced_app(manager: &TracingManager) -> Router {
    Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(manager.server_layer())
}

/// A collector that accepts connections and never answers.
fn blackhole() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

#[tokio::test]
async fn requests_are_unaffected_and_drops_counted_while_the_collector_hangs() {
    collector_hangs(OtlpProtocol::HttpProtobuf).await;
}

#[tokio::test]
async fn requests_are_unaffected_and_drops_counted_while_a_grpc_collector_hangs() {
    collector_hangs(OtlpProtocol::Grpc).await;
}

async fn collector_hangs(protocol: OtlpProtocol) {
    let (_listener, addr) = blackhole();
    let (manager, layers) = TracingManager::builder()
        .exporter(ExporterConfig::Otlp(
            OtlpConfig::new(format!("http://{addr}"))
                .protocol(protocol)
                .timeout(Duration::from_secs(1)),
        ))
        .batch(
            BatchConfig::default()
                .max_queue_size(4)
                .max_export_batch_size(1),
        )
        .shutdown_timeout(Duration::from_millis(300))
        .log_writer(std::io::sink)
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let app = traced_app(&manager);

    let started = Instant::now();
    for i in 0..20 {
        let request_started = Instant::now();
        let response = common::send(app.clone(), common::get(&format!("/orders/{i}"), &[])).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(common::text(response).await, "ok");
        assert!(
            request_started.elapsed() < Duration::from_millis(250),
            "request {i} waited for the exporter"
        );
    }
    let elapsed = started.elapsed();
    let stats = manager.stats();
    // At most 4 spans are held (queue plus the export hanging on the collector).
    assert!(stats.queued <= 4, "{stats:?}");
    assert!(
        stats.dropped() >= 16,
        "{stats:?} after {elapsed:?}: 20 spans, at most 4 held"
    );
    assert_eq!(stats.exported, 0, "{stats:?}");

    let shutdown_started = Instant::now();
    let result = manager.shutdown().await;
    let took = shutdown_started.elapsed();
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    let error = result.expect_err("spans were still queued when the timeout elapsed");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn failed_exports_are_counted_when_the_collector_refuses_connections() {
    // A port that was just free: connections to it are refused.
    let addr = blackhole().1;
    let (manager, layers) = TracingManager::builder()
        .exporter(ExporterConfig::Otlp(
            OtlpConfig::new(format!("http://{addr}")).timeout(Duration::from_millis(300)),
        ))
        .shutdown_timeout(Duration::from_secs(1))
        .log_writer(std::io::sink)
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let app = traced_app(&manager);
    for i in 0..3 {
        let response = common::send(app.clone(), common::get(&format!("/orders/{i}"), &[])).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // The flush blocks: run it off the runtime thread.
    let provider = manager.tracer_provider().clone();
    let _ = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();
    let stats = manager.stats();
    assert_eq!(stats.dropped_export_failed, 3, "{stats:?}");
    assert_eq!(stats.exported, 0, "{stats:?}");
    let started = Instant::now();
    let _ = manager.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_file_endpoint_and_an_env_api_key_combine() {
    let receiver = Receiver::start();
    let toml = format!(
        "service_name = \"from-file\"\n[exporter]\nkind = \"otlp\"\nendpoint = \"http://{}\"\ntimeout_ms = 1000\n",
        receiver.addr
    );
    let config = meshtrace::config::TracingConfig::from_toml(&toml).unwrap();
    let _manager = export_two_spans(
        TracingManager::from_env_with(env(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=from-env".into()),
            // The file's endpoint wins over the environment's.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9".into()),
            ("OTEL_SERVICE_NAME", "from-env".into()),
        ]))
        .config(config),
    );
    let received = receiver.take();
    assert!(!received.is_empty());
    assert_eq!(received[0].headers["x-api-key"], "from-env");
    assert_eq!(
        resource_attr(&received[0].request, "service.name").unwrap(),
        "from-file"
    );
    assert_root_and_child(&received);
}

// ---------------------------------------------------------------------------------------
// the exporter never traces itself

/// Runs `child_exports_one_app_span` in a child process, where the pipeline is installed
/// globally as in a service (the exporter's own threads then see the subscriber too), with
/// `RUST_LOG=trace` and the span filter at `trace`, and returns the names of the spans that
/// arrived.
fn spans_exported_by_a_child(protocol: &str) -> Vec<String> {
    let receiver = Receiver::start();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_exports_one_app_span",
            "--ignored",
            "--nocapture",
        ])
        .env("MESHTRACE_TEST_RECEIVER", receiver.addr.to_string())
        .env("MESHTRACE_TEST_PROTOCOL", protocol)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    receiver
        .take()
        .iter()
        .flat_map(|r| spans(&r.request))
        .map(|s| s.name.clone())
        .collect()
}

/// The OTLP protocol a child process is told to use (`MESHTRACE_TEST_PROTOCOL`).
fn child_protocol() -> OtlpProtocol {
    match std::env::var("MESHTRACE_TEST_PROTOCOL").as_deref() {
        Ok("grpc") => OtlpProtocol::Grpc,
        Ok("http/json") => OtlpProtocol::HttpJson,
        _ => OtlpProtocol::HttpProtobuf,
    }
}

#[test]
#[ignore = "run in a child process by the exporter_never_traces_itself tests"]
fn child_exports_one_app_span() {
    let Ok(addr) = std::env::var("MESHTRACE_TEST_RECEIVER") else {
        return;
    };
    let protocol = child_protocol();
    let manager = TracingManager::from_env_with(env(&[
        ("RUST_LOG", "trace".into()),
        ("MESHTRACE_SPAN_FILTER", "trace".into()),
    ]))
    .exporter(ExporterConfig::Otlp(
        OtlpConfig::new(format!("http://{addr}"))
            .protocol(protocol)
            .timeout(Duration::from_secs(2)),
    ))
    .log_writer(std::io::sink)
    .install()
    .expect("install");
    tracing::info_span!("app").in_scope(|| tracing::info!("inside"));
    // Each flush exports what the previous export emitted, if anything leaks.
    for _ in 0..5 {
        manager.force_flush().expect("flush");
    }
}

#[test]
fn the_grpc_exporter_never_traces_itself() {
    let names = spans_exported_by_a_child("grpc");
    assert_eq!(names, ["app"], "{} spans: {names:?}", names.len());
}

#[test]
fn the_http_exporter_never_traces_itself() {
    let names = spans_exported_by_a_child("http/protobuf");
    assert_eq!(names, ["app"], "{} spans: {names:?}", names.len());
}

// ---------------------------------------------------------------------------------------
// loud when something goes wrong: one warning, one recovery line

fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
#[ignore = "run in a child process by failing_exports_are_reported_once_and_so_is_the_recovery"]
fn child_reports_failing_exports() {
    let Ok(addr) = std::env::var("MESHTRACE_TEST_RECEIVER") else {
        return;
    };
    let manager = TracingManager::from_env_with(env(&[("RUST_LOG", "info".into())]))
        .exporter(ExporterConfig::Otlp(
            OtlpConfig::new(format!("http://{addr}")).timeout(Duration::from_secs(2)),
        ))
        .install()
        .expect("install");
    for i in 0..3 {
        tracing::info_span!("while down", i).in_scope(|| {});
        let _ = manager.force_flush();
    }
    let stats = manager.stats();
    assert_eq!(stats.dropped_export_failed, 3, "{stats:?}");
    let cause = stats.last_error.expect("the cause is kept");
    assert!(
        cause.contains(&format!("http://{addr}/v1/traces")),
        "{cause}"
    );
    assert!(cause.contains("400"), "{cause}");

    // The collector comes back.
    control(&addr, "/control/up");

    tracing::info_span!("after recovery").in_scope(|| {});
    manager.force_flush().expect("flush");
    let stats = manager.stats();
    assert_eq!(stats.exported, 1, "{stats:?}");
    assert_eq!(stats.last_error, None);
}

#[test]
fn failing_exports_are_reported_once_and_so_is_the_recovery() {
    let receiver = Receiver::start_with(true);
    let log = common::run_child(
        "child_reports_failing_exports",
        &[("MESHTRACE_TEST_RECEIVER", receiver.addr.to_string())],
    );
    let warnings = lines_with(&log, "WARN");
    assert_eq!(
        warnings.len(),
        1,
        "one warning for three failed exports:\n{log}"
    );
    let warning = warnings[0];
    // Written after the first failed export: one span lost, none dropped by the queue.
    for needle in [
        "meshtrace",
        "span export failed",
        &format!("http://{}/v1/traces", receiver.addr),
        "400",
        "(1 spans lost in failed exports, 0 dropped because the queue was full, so far)",
        "dropped_export_failed=1",
        "dropped_queue_full=0",
    ] {
        assert!(warning.contains(needle), "{needle:?} in {warning}");
    }
    let recovered = lines_with(&log, "works again");
    assert_eq!(recovered.len(), 1, "{log}");
    assert!(
        recovered[0].contains("3 spans were dropped meanwhile"),
        "{}",
        recovered[0]
    );
    let names: Vec<String> = receiver
        .take()
        .iter()
        .flat_map(|r| spans(&r.request))
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["after recovery"]);
}

/// Sends `POST {path}` to the receiver at `addr` and waits for its answer.
fn control(addr: &str, path: &str) {
    use std::io::{Read as _, Write as _};
    let mut control = std::net::TcpStream::connect(addr).unwrap();
    write!(
        control,
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let _ = control.read_to_end(&mut Vec::new());
}

#[test]
#[ignore = "run in a child process by a_full_queue_is_reported_once"]
fn child_fills_the_queue_of_a_slow_collector() {
    let Ok(addr) = std::env::var("MESHTRACE_TEST_RECEIVER") else {
        return;
    };
    let manager = TracingManager::from_env_with(env(&[("RUST_LOG", "info".into())]))
        .exporter(ExporterConfig::Otlp(
            OtlpConfig::new(format!("http://{addr}")).timeout(Duration::from_secs(10)),
        ))
        .batch(
            BatchConfig::default()
                .max_queue_size(2)
                .max_export_batch_size(1)
                .export_timeout(Duration::from_secs(10)),
        )
        .install()
        .expect("install");
    // The collector holds the first export: the queue fills, the rest is dropped.
    for i in 0..10 {
        tracing::info_span!("request", i).in_scope(|| {});
    }
    // It answers again, every export succeeds.
    control(&addr, "/control/release");
    manager.force_flush().expect("flush");
    let stats = manager.stats();
    assert!(stats.dropped_queue_full >= 7, "{stats:?}");
    assert_eq!(stats.dropped_export_failed, 0, "{stats:?}");
    assert_eq!(stats.exported + stats.dropped_queue_full, 10, "{stats:?}");
    println!(
        "child stats: dropped_queue_full={}",
        stats.dropped_queue_full
    );
}

#[test]
fn a_full_queue_is_reported_once() {
    let receiver = Receiver::start_held();
    let addr = receiver.addr.to_string();
    let log = common::run_child(
        "child_fills_the_queue_of_a_slow_collector",
        &[("MESHTRACE_TEST_RECEIVER", addr.clone())],
    );
    let dropped = log
        .lines()
        .find_map(|l| l.strip_prefix("child stats: dropped_queue_full="))
        .expect("the child prints its stats");
    let warnings = lines_with(&log, "WARN");
    assert_eq!(warnings.len(), 1, "{log}");
    let warning = warnings[0];
    // The queue-full warning, not the export-failed one (which mentions the queue too).
    for needle in [
        "meshtrace",
        "the span export queue is full",
        &format!("{dropped} since the last export to OTLP/HTTP protobuf http://{addr}/v1/traces"),
        &format!("({dropped} in total)"),
        &format!("dropped_queue_full={dropped}"),
        "dropped_export_failed=0",
    ] {
        assert!(warning.contains(needle), "{needle:?} in {warning}");
    }
    assert!(!warning.contains("span export failed"), "{warning}");
    let recovered = lines_with(&log, "works again");
    assert_eq!(recovered.len(), 1, "{log}");
    assert!(
        recovered[0].contains(&format!("{dropped} spans were dropped meanwhile")),
        "{}",
        recovered[0]
    );
}

#[test]
fn http_json_round_trip() {
    let receiver = Receiver::start();
    let _manager = export_two_spans(
        TracingManager::builder().exporter(ExporterConfig::Otlp(
            OtlpConfig::new(format!("http://{}", receiver.addr))
                .protocol(OtlpProtocol::HttpJson)
                .compression(OtlpCompression::None)
                .timeout(Duration::from_secs(1)),
        )),
    );
    let received = receiver.take();
    assert!(!received.is_empty());
    assert_eq!(received[0].path, "/v1/traces");
    assert_eq!(received[0].headers["content-type"], "application/json");
    assert_root_and_child(&received);
}

// ---------------------------------------------------------------------------------------
// OTLP over TLS (feature `otlp-tls`): a real TLS receiver, a CA made in the test

#[cfg(feature = "otlp-tls")]
mod tls {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    const PROTOCOLS: [(OtlpProtocol, &str); 3] = [
        (OtlpProtocol::HttpProtobuf, "http/protobuf"),
        (OtlpProtocol::HttpJson, "http/json"),
        (OtlpProtocol::Grpc, "grpc"),
    ];

    struct Ca(CertifiedIssuer<'static, KeyPair>);

    /// A certificate and its key, as PEM and DER.
    struct Leaf {
        cert_pem: String,
        key_pem: String,
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    }

    impl Ca {
        fn new(name: &str) -> Ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
        }

        fn pem(&self) -> String {
            self.0.pem()
        }

        fn der(&self) -> CertificateDer<'static> {
            self.0.der().clone()
        }

        /// A certificate for 127.0.0.1 (server) or for a client.
        fn issue(&self, name: &str) -> Leaf {
            let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.0).unwrap();
            Leaf {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                cert: cert.der().clone(),
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            }
        }
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    /// A TLS server config with `server`'s certificate, requiring client certificates
    /// signed by `client_ca` when given.
    fn server_config(server: &Leaf, client_ca: Option<&Ca>) -> rustls::ServerConfig {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(vec![server.cert.clone()], server.key.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn https_builder(
        receiver: &Receiver,
        protocol: OtlpProtocol,
        vars: &[(&str, String)],
    ) -> TracingManagerBuilder {
        // The spans' TLS alone (metrics would take the same path: see the round trips).
        TracingManager::from_env_with(env(vars))
            .metrics_enabled(false)
            .exporter(ExporterConfig::Otlp(
                OtlpConfig::new(format!("https://127.0.0.1:{}", receiver.addr.port()))
                    .protocol(protocol)
                    .timeout(Duration::from_secs(2)),
            ))
    }

    #[test]
    fn spans_arrive_over_tls_with_a_custom_ca_for_every_protocol() {
        let ca = Ca::new("meshtrace test CA");
        let server = ca.issue("collector");
        let dir = tempfile::tempdir().unwrap();
        let ca_file = write(&dir, "ca.pem", &ca.pem());
        for (protocol, name) in PROTOCOLS {
            let receiver = Receiver::start_tls(server_config(&server, None));
            let manager = export_two_spans(https_builder(
                &receiver,
                protocol,
                &[("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca_file.clone())],
            ));
            assert_eq!(manager.stats().exported, 2, "{name}: {:?}", manager.stats());
            assert_root_and_child(&receiver.take());
        }
    }

    /// Metrics over TLS, with their own CA variable (and the spans' for the spans).
    #[tokio::test]
    async fn metrics_arrive_over_tls_for_every_protocol() {
        let ca = Ca::new("meshtrace test CA");
        let server = ca.issue("collector");
        let dir = tempfile::tempdir().unwrap();
        let ca_file = write(&dir, "ca.pem", &ca.pem());
        for (protocol, name) in PROTOCOLS {
            let receiver = Receiver::start_tls(server_config(&server, None));
            let (manager, layers) = TracingManager::from_env_with(env(&[
                ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", ca_file.clone()),
                ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca_file.clone()),
            ]))
            .exporter(ExporterConfig::Otlp(
                OtlpConfig::new(format!("https://127.0.0.1:{}", receiver.addr.port()))
                    .protocol(protocol)
                    .timeout(Duration::from_secs(2)),
            ))
            .log_writer(std::io::sink)
            .build()
            .unwrap();
            let _guard = tracing::subscriber::set_default(layers.into_subscriber());
            let response = common::send(traced_app(&manager), common::get("/orders/1", &[])).await;
            assert_eq!(response.status(), StatusCode::OK);
            drop(response);
            flush_all(&manager).await;
            let points = histogram(&receiver.take_metrics(), "http.server.request.duration");
            assert_eq!(points.len(), 1, "{name}");
            assert_eq!(points[0].1, 1, "{name}");
        }
    }

    #[test]
    fn mutual_tls_for_every_protocol() {
        let ca = Ca::new("meshtrace test CA");
        let server = ca.issue("collector");
        let clients = Ca::new("meshtrace client CA");
        let client = clients.issue("checkout");
        let dir = tempfile::tempdir().unwrap();
        let vars = [
            (
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                write(&dir, "ca.pem", &ca.pem()),
            ),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                write(&dir, "client.pem", &client.cert_pem),
            ),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                write(&dir, "client.key", &client.key_pem),
            ),
        ];
        for (protocol, name) in PROTOCOLS {
            let receiver = Receiver::start_tls(server_config(&server, Some(&clients)));
            let manager = export_two_spans(https_builder(&receiver, protocol, &vars));
            assert_eq!(manager.stats().exported, 2, "{name}: {:?}", manager.stats());
            assert_root_and_child(&receiver.take());

            // Without the client certificate the collector refuses the connection.
            let (refused, layers) = https_builder(&receiver, protocol, &vars[..1])
                .log_writer(std::io::sink)
                .build()
                .unwrap();
            tracing::subscriber::with_default(layers.into_subscriber(), || {
                tracing::info_span!("refused").in_scope(|| {});
            });
            let error = refused
                .force_flush()
                .expect_err("the collector refuses")
                .to_string();
            // TLS 1.3 rejects a missing client certificate after the handshake: reqwest
            // reports the server's alert, or (when the server closes first) the closed
            // connection; tonic the connection it closed. The stats below say refused.
            if protocol != OtlpProtocol::Grpc {
                assert!(
                    error.contains("CertificateRequired") || error.contains("closed"),
                    "{name}: {error}"
                );
            }
            let stats = refused.stats();
            assert_eq!(stats.exported, 0, "{name}: {stats:?}");
            assert!(stats.dropped_export_failed >= 1, "{name}: {stats:?}");
            assert!(receiver.take().is_empty(), "{name}");
        }
    }

    #[tokio::test]
    async fn a_certificate_from_an_unknown_ca_is_refused_naming_the_endpoint_and_requests_go_on() {
        let ca = Ca::new("meshtrace test CA");
        let other = Ca::new("some other CA");
        let server = ca.issue("collector");
        let dir = tempfile::tempdir().unwrap();
        let other_file = write(&dir, "other.pem", &other.pem());
        for (protocol, name) in PROTOCOLS {
            for trusted in ["the platform's roots", "another CA"] {
                let receiver = Receiver::start_tls(server_config(&server, None));
                let vars = match trusted {
                    "another CA" => vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", other_file.clone())],
                    _ => vec![],
                };
                let (manager, layers) = https_builder(&receiver, protocol, &vars)
                    .log_writer(std::io::sink)
                    .build()
                    .expect("a refused certificate is not a build error");
                let _guard = tracing::subscriber::set_default(layers.into_subscriber());
                let app = traced_app(&manager);
                for i in 0..5 {
                    let started = Instant::now();
                    let response =
                        common::send(app.clone(), common::get(&format!("/orders/{i}"), &[])).await;
                    assert_eq!(response.status(), StatusCode::OK);
                    assert!(started.elapsed() < Duration::from_millis(250), "{name}");
                }
                let provider = manager.tracer_provider().clone();
                let _ = tokio::task::spawn_blocking(move || provider.force_flush())
                    .await
                    .unwrap();
                let stats = manager.stats();
                assert_eq!(stats.exported, 0, "{name}, {trusted}: {stats:?}");
                assert_eq!(
                    stats.dropped_export_failed, 5,
                    "{name}, {trusted}: {stats:?}"
                );
                let error = stats.last_error.unwrap_or_default();
                let endpoint = format!("https://127.0.0.1:{}", receiver.addr.port());
                assert!(error.contains(&endpoint), "{name}, {trusted}: {error}");
                assert!(
                    error.to_lowercase().contains("certificate"),
                    "{name}, {trusted}: the cause is named: {error}"
                );
                assert!(receiver.take().is_empty());
            }
        }
    }

    /// With no CA configured, the platform's roots decide: here `SSL_CERT_FILE` names the
    /// test CA (read by the platform verifier and the native roots on Linux), in a child
    /// process so that no other test sees it.
    #[test]
    #[cfg(target_os = "linux")]
    fn spans_arrive_over_tls_with_the_platform_roots() {
        let ca = Ca::new("meshtrace test CA");
        let server = ca.issue("collector");
        let dir = tempfile::tempdir().unwrap();
        let ca_file = write(&dir, "ca.pem", &ca.pem());
        for (_, name) in PROTOCOLS {
            let receiver = Receiver::start_tls(server_config(&server, None));
            common::run_child(
                "tls::child_exports_over_https",
                &[
                    ("SSL_CERT_FILE", ca_file.clone()),
                    ("MESHTRACE_TEST_RECEIVER", receiver.addr.to_string()),
                    ("MESHTRACE_TEST_PROTOCOL", name.to_owned()),
                ],
            );
            assert_root_and_child(&receiver.take());
        }
    }

    #[test]
    #[ignore = "run in a child process by spans_arrive_over_tls_with_the_platform_roots"]
    fn child_exports_over_https() {
        let Ok(addr) = std::env::var("MESHTRACE_TEST_RECEIVER") else {
            return;
        };
        let protocol = super::child_protocol();
        let manager = export_two_spans(
            TracingManager::builder().exporter(ExporterConfig::Otlp(
                OtlpConfig::new(format!("https://{addr}"))
                    .protocol(protocol)
                    .timeout(Duration::from_secs(2)),
            )),
        );
        assert_eq!(manager.stats().exported, 2, "{:?}", manager.stats());
    }
}

// ---------------------------------------------------------------------------------------
// metrics and logs over OTLP

use meshtrace::config::{LogsConfig, MetricsConfig, MetricsTemporality};
use opentelemetry_proto::tonic::metrics::v1::metric::Data as MetricKind;

/// Flushes spans, metrics and logs off the runtime's thread (the flush blocks).
async fn flush_all(manager: &TracingManager) {
    let spans = manager.tracer_provider().clone();
    let meters = manager.meter_provider().cloned();
    #[cfg(feature = "otlp-logs")]
    let logs = manager.logger_provider().cloned();
    tokio::task::spawn_blocking(move || {
        spans.force_flush().expect("spans");
        if let Some(meters) = meters {
            meters.force_flush().expect("metrics");
        }
        #[cfg(feature = "otlp-logs")]
        if let Some(logs) = logs {
            logs.force_flush().expect("logs");
        }
    })
    .await
    .unwrap();
}

/// `name`'s histogram data points in the last metrics request: (attributes, count, temporality).
fn histogram(
    received: &[Received<ExportMetricsServiceRequest>],
    name: &str,
) -> Vec<(HashMap<String, String>, u64, i32)> {
    let Some(last) = received.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rm in &last.request.resource_metrics {
        for sm in &rm.scope_metrics {
            for metric in sm.metrics.iter().filter(|m| m.name == name) {
                let Some(MetricKind::Histogram(h)) = &metric.data else {
                    panic!("{name} is not a histogram");
                };
                for point in &h.data_points {
                    let attributes = point
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), any_text(kv.value.as_ref())))
                        .collect();
                    out.push((attributes, point.count, h.aggregation_temporality));
                }
            }
        }
    }
    out
}

fn any_text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn metric_names(received: &[Received<ExportMetricsServiceRequest>]) -> Vec<String> {
    received
        .iter()
        .flat_map(|r| &r.request.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| m.name.clone())
        .collect()
}

#[tokio::test]
async fn metrics_reach_an_http_and_a_grpc_collector() {
    for (protocol, path) in [
        (OtlpProtocol::HttpProtobuf, "/v1/metrics"),
        (
            OtlpProtocol::Grpc,
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        ),
    ] {
        let receiver = Receiver::start();
        let (manager, layers) = TracingManager::builder()
            .service_name("metrics-svc")
            .exporter(ExporterConfig::Otlp(
                OtlpConfig::new(format!("http://{}", receiver.addr))
                    .protocol(protocol)
                    .header("x-api-key", "k")
                    .timeout(Duration::from_secs(2)),
            ))
            .log_writer(std::io::sink)
            .build()
            .unwrap();
        let _guard = tracing::subscriber::set_default(layers.into_subscriber());
        let app = traced_app(&manager);
        for i in 0..3 {
            let response =
                common::send(app.clone(), common::get(&format!("/orders/{i}"), &[])).await;
            assert_eq!(common::text(response).await, "ok");
        }
        flush_all(&manager).await;
        let received = receiver.take_metrics();
        assert!(!received.is_empty(), "{protocol:?}: no metrics arrived");
        for r in &received {
            assert_eq!(r.path, path);
            assert_eq!(r.headers["x-api-key"], "k");
            let resource = r.request.resource_metrics[0].resource.as_ref().unwrap();
            let service = resource
                .attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .map(|kv| any_text(kv.value.as_ref()));
            assert_eq!(
                service.as_deref(),
                Some("metrics-svc"),
                "the spans' resource"
            );
        }
        let points = histogram(&received, "http.server.request.duration");
        assert_eq!(points.len(), 1, "{points:?}");
        let (attributes, count, temporality) = &points[0];
        assert_eq!(*count, 3);
        assert_eq!(attributes["http.route"], "/orders/{id}");
        assert_eq!(attributes["http.response.status_code"], "200");
        assert_eq!(*temporality, 2, "cumulative by default");
        assert!(
            metric_names(&received)
                .iter()
                .any(|n| n == "meshtrace.sampler.decisions"),
            "the sampler's counters are in the same meter"
        );
        assert_eq!(receiver.take().len(), 1, "and the spans went too");
        let _ = manager.shutdown().await;
    }
}

#[tokio::test]
async fn metrics_follow_their_own_variables() {
    let receiver = Receiver::start();
    let (manager, layers) = TracingManager::from_env_with(env(&[
        ("OTEL_TRACES_EXPORTER", "none".into()),
        ("OTEL_METRICS_EXPORTER", "otlp".into()),
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("http://{}/custom/metrics", receiver.addr),
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "x-api-key=metrics".into(),
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-general=yes".into()),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2000".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000".into()),
        (
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "delta".into(),
        ),
    ]))
    .log_writer(std::io::sink)
    .build()
    .unwrap();
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let app = traced_app(&manager);
    let response = common::send(app, common::get("/orders/1", &[])).await;
    assert_eq!(common::text(response).await, "ok");
    flush_all(&manager).await;
    let received = receiver.take_metrics();
    assert!(!received.is_empty());
    assert_eq!(
        received[0].path, "/custom/metrics",
        "the metrics URL is used as is"
    );
    assert_eq!(received[0].headers["x-api-key"], "metrics");
    assert_eq!(received[0].headers["x-general"], "yes");
    let points = histogram(&received, "http.server.request.duration");
    assert_eq!(points[0].2, 1, "delta temporality");
    assert!(receiver.take().is_empty(), "spans go nowhere");
}

#[test]
fn metric_config_errors_name_the_setting_and_the_value() {
    let cases: Vec<(TracingManagerBuilder, &str)> = vec![
        (
            TracingManager::from_env_with(env(&[("OTEL_METRICS_EXPORTER", "prometheus".into())])),
            "OTEL_METRICS_EXPORTER = \"prometheus\" is invalid: it must be `otlp`, `console` or `none`",
        ),
        (
            TracingManager::from_env_with(env(&[(
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "sometimes".into(),
            )])),
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE = \"sometimes\" is invalid",
        ),
        (
            TracingManager::from_env_with(env(&[("OTEL_METRIC_EXPORT_INTERVAL", "0".into())])),
            "OTEL_METRIC_EXPORT_INTERVAL = \"0\" is invalid",
        ),
        (
            TracingManager::from_env_with(env(&[("MESHTRACE_METRICS_ENABLED", "maybe".into())])),
            "MESHTRACE_METRICS_ENABLED = \"maybe\" is invalid: it must be `true` or `false`",
        ),
        (
            TracingManager::builder().metrics(MetricsConfig::default().cardinality_limit(0)),
            "metrics.cardinality_limit = \"0\" is invalid",
        ),
        (
            TracingManager::builder().metrics(
                MetricsConfig::default()
                    .exporter(meshtrace::config::MetricsExporter::Otlp)
                    .endpoint("ftp://collector"),
            ),
            "metrics.endpoint = \"ftp://collector\" is invalid",
        ),
    ];
    for (builder, expected) in cases {
        let error = builder
            .log_writer(std::io::sink)
            .build()
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(expected), "{error}");
    }
    let file = meshtrace::config::TracingConfig::from_toml(
        "[metrics]\nexport_interval_ms = 0\ntemporality = \"delta\"\n",
    )
    .unwrap();
    assert_eq!(
        file.validate().unwrap_err().to_string(),
        "metrics.export_interval_ms = \"0\" is invalid: it must be between 1 and 3600000 milliseconds"
    );
    let _ = MetricsTemporality::Delta;
}

#[cfg(feature = "otlp-logs")]
mod logs {
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;

    fn records(received: &[Received<ExportLogsServiceRequest>]) -> Vec<(String, LogRecord)> {
        received
            .iter()
            .flat_map(|r| &r.request.resource_logs)
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| {
                let scope = sl
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                sl.log_records
                    .iter()
                    .map(move |r| (scope.clone(), r.clone()))
            })
            .collect()
    }

    fn attribute(record: &LogRecord, key: &str) -> Option<String> {
        record
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| any_text(kv.value.as_ref()))
    }

    fn body(record: &LogRecord) -> String {
        any_text(record.body.as_ref())
    }

    #[tokio::test]
    async fn log_records_carry_the_request_ids_for_sampled_and_dropped_requests() {
        const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
        for (protocol, path) in [
            (OtlpProtocol::HttpProtobuf, "/v1/logs"),
            (
                OtlpProtocol::Grpc,
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            ),
        ] {
            let receiver = Receiver::start();
            let (manager, layers) = TracingManager::builder()
                .exporter(ExporterConfig::Otlp(
                    OtlpConfig::new(format!("http://{}", receiver.addr))
                        .protocol(protocol)
                        .timeout(Duration::from_secs(2)),
                ))
                .logs(LogsConfig::otlp())
                .log_writer(std::io::sink)
                .build()
                .unwrap();
            let _guard = tracing::subscriber::set_default(layers.into_subscriber());
            let app = Router::new()
                .route(
                    "/orders/{id}",
                    get(|| async {
                        tracing::info!(order = 42_i64, "order placed");
                        tracing::warn!("{}", "x".repeat(10_000));
                        "ok"
                    }),
                )
                .layer(manager.server_layer());
            for (flags, correlation) in [("01", "sampled-1"), ("00", "dropped-1")] {
                let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-{flags}");
                let response = common::send(
                    app.clone(),
                    common::get(
                        "/orders/1",
                        &[
                            ("traceparent", &traceparent),
                            ("x-correlation-id", correlation),
                        ],
                    ),
                )
                .await;
                assert_eq!(common::text(response).await, "ok");
            }
            tracing::info!("outside any request");
            flush_all(&manager).await;
            let received = receiver.take_logs();
            assert!(!received.is_empty(), "{protocol:?}: no logs arrived");
            for request in &received {
                assert_eq!(request.path, path, "{protocol:?}");
            }
            let all = records(&received);
            let placed: Vec<&LogRecord> = all
                .iter()
                .map(|(_, r)| r)
                .filter(|r| body(r) == "order placed")
                .collect();
            assert_eq!(placed.len(), 2, "{protocol:?}");
            let server_spans: Vec<Span> = receiver
                .take()
                .iter()
                .flat_map(|r| spans(&r.request).into_iter().cloned().collect::<Vec<_>>())
                .collect();
            assert_eq!(server_spans.len(), 1, "only the sampled request's span");
            for (record, (flags, correlation)) in
                placed.iter().zip([(1, "sampled-1"), (0, "dropped-1")])
            {
                assert_eq!(hex(&record.trace_id), TRACE);
                assert_eq!(record.span_id.len(), 8);
                assert_ne!(
                    hex(&record.span_id),
                    "00f067aa0ba902b7",
                    "the server span, not the caller's"
                );
                assert_eq!(record.flags & 1, flags, "{correlation}");
                assert_eq!(
                    attribute(record, "correlation.id").as_deref(),
                    Some(correlation)
                );
                assert_eq!(attribute(record, "order").as_deref(), Some("42"));
                assert_eq!(record.severity_number, 9);
                assert_eq!(record.severity_text, "INFO");
            }
            assert_eq!(
                placed[0].span_id, server_spans[0].span_id,
                "the exported span's id"
            );
            let long: Vec<&LogRecord> = all
                .iter()
                .map(|(_, r)| r)
                .filter(|r| body(r).starts_with("xxx"))
                .collect();
            assert_eq!(long.len(), 2);
            assert_eq!(
                body(long[0]).len(),
                4096,
                "bounded like every recorded value"
            );
            assert_eq!(long[0].severity_number, 13);
            let outside = all
                .iter()
                .map(|(_, r)| r)
                .find(|r| body(r) == "outside any request")
                .expect("events outside requests go too");
            assert!(outside.trace_id.is_empty() || outside.trace_id.iter().all(|b| *b == 0));
            let _ = manager.shutdown().await;
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Runs `child_logs_one_event` in a child process, where the pipeline is installed
    /// globally (the exporters' threads see the subscriber too) with `RUST_LOG=trace`, and
    /// returns the (scope, body) of the records that arrived.
    fn logs_exported_by_a_child(protocol: &str) -> Vec<(String, String)> {
        let receiver = Receiver::start();
        common::run_child(
            "logs::child_logs_one_event",
            &[
                ("MESHTRACE_TEST_RECEIVER", receiver.addr.to_string()),
                ("MESHTRACE_TEST_PROTOCOL", protocol.to_owned()),
            ],
        );
        records(&receiver.take_logs())
            .into_iter()
            .map(|(scope, record)| (scope, body(&record)))
            .collect()
    }

    #[test]
    #[ignore = "run in a child process by the log export never feeds back tests"]
    fn child_logs_one_event() {
        let Ok(addr) = std::env::var("MESHTRACE_TEST_RECEIVER") else {
            return;
        };
        let protocol = super::child_protocol();
        let manager = TracingManager::from_env_with(env(&[
            ("RUST_LOG", "trace".into()),
            ("OTEL_LOGS_EXPORTER", "otlp".into()),
        ]))
        .exporter(ExporterConfig::Otlp(
            OtlpConfig::new(format!("http://{addr}"))
                .protocol(protocol)
                .timeout(Duration::from_secs(2)),
        ))
        .log_writer(std::io::sink)
        .install()
        .expect("install");
        tracing::info!(target: "app", "app event");
        // Each flush exports what the previous export emitted, if anything leaks.
        for _ in 0..5 {
            manager.force_flush().expect("flush");
        }
    }

    fn assert_only_the_app_event(records: Vec<(String, String)>) {
        let app: Vec<&(String, String)> =
            records.iter().filter(|(_, b)| b == "app event").collect();
        assert_eq!(app.len(), 1, "{records:?}");
        for (scope, body) in &records {
            for exporter in ["h2", "hyper", "tonic", "tower", "reqwest", "opentelemetry"] {
                assert!(
                    !scope.starts_with(exporter),
                    "an exporter's own event was exported: {scope}: {body}"
                );
            }
        }
    }

    #[test]
    fn grpc_log_export_never_feeds_back() {
        assert_only_the_app_event(logs_exported_by_a_child("grpc"));
    }

    #[test]
    fn http_log_export_never_feeds_back() {
        assert_only_the_app_event(logs_exported_by_a_child("http/protobuf"));
    }
}
