//! Helpers shared by the integration tests: a real SDK tracer provider exporting into
//! memory, a per-test `tracing` subscriber bridged by tracing-opentelemetry, and ways
//! to drive a Router in-process or on 127.0.0.1.
#![allow(dead_code)]

// The backend uses the axum extractors; `otlp-tls` turns `reqwest` on without `axum`.
#[cfg(all(feature = "reqwest", feature = "axum"))]
pub mod client;
pub mod metrics;
pub mod setup;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use http::{Request, Response};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, Sampler, SdkTracerProvider, ShouldSample, SpanData,
};
use tower::ServiceExt;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

/// Tracing set up for one test: spans go through the real SDK into memory.
///
/// The subscriber is the thread's default (not global), so tests run in parallel
/// without seeing each other's spans; use `#[tokio::test]` (current-thread runtime) so
/// every task of the test runs on the thread that has the subscriber.
pub struct Telemetry {
    pub provider: SdkTracerProvider,
    pub exporter: InMemorySpanExporter,
    _guard: DefaultGuard,
}

impl Telemetry {
    /// The SDK's default sampler (parent-based, always on for roots).
    pub fn new() -> Self {
        Self::with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
    }

    pub fn with_sampler(sampler: impl ShouldSample + 'static) -> Self {
        Self::build(sampler, None)
    }

    /// With an `EnvFilter` directive, e.g. to disable the server span.
    pub fn with_filter(directive: &str) -> Self {
        Self::build(
            Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Some(EnvFilter::new(directive)),
        )
    }

    fn build(sampler: impl ShouldSample + 'static, filter: Option<EnvFilter>) -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_sampler(sampler)
            .build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("meshtrace-tests"));
        let subscriber = Registry::default().with(otel).with(filter);
        let guard = tracing::subscriber::set_default(subscriber);
        Telemetry {
            provider,
            exporter,
            _guard: guard,
        }
    }

    /// Every finished span, after flushing the provider.
    pub fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flush");
        self.exporter.get_finished_spans().expect("spans")
    }

    /// The one finished span with this name; fails the test otherwise.
    pub fn span(&self, name: &str) -> SpanData {
        let spans: Vec<SpanData> = self
            .spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect();
        assert_eq!(
            spans.len(),
            1,
            "expected one span named {name:?}, got {:?}",
            self.spans()
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        );
        spans.into_iter().next().expect("one span")
    }
}

impl Telemetry {
    /// `TracingLayer` starting its spans from this provider.
    pub fn layer(&self) -> meshtrace::server::TracingLayer {
        meshtrace::server::TracingLayer::new().tracer_provider(&self.provider)
    }

    /// `ClientTracingLayer` starting its spans from this provider.
    pub fn client_layer(&self) -> meshtrace::client::ClientTracingLayer {
        meshtrace::client::ClientTracingLayer::new().tracer_provider(&self.provider)
    }

    /// `ReqwestTracingMiddleware` starting its spans from this provider.
    #[cfg(feature = "reqwest")]
    pub fn middleware(&self) -> meshtrace::client::ReqwestTracingMiddleware {
        meshtrace::client::ReqwestTracingMiddleware::new().tracer_provider(&self.provider)
    }
}

/// The value of an attribute of a span.
pub fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_owned()))
        .map(|kv| kv.value.clone())
}

/// The value of a string attribute.
pub fn attr_str(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}

/// Sends one request through the Router in-process.
pub async fn send(app: Router, request: Request<Body>) -> Response<Body> {
    app.oneshot(request).await.expect("infallible")
}

/// A GET request with the given headers.
pub fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).expect("request")
}

/// Reads the whole body as text.
pub async fn text(response: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

/// Captured log output (a `MakeWriter`), shared by clones.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("logs").clone()).expect("utf-8 logs")
    }

    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    /// Every line as JSON; fails the test on a line that is not.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON log line"))
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// An exporter that fails every export with its message.
#[derive(Clone, Debug)]
pub struct FailingExporter(pub &'static str);

impl opentelemetry_sdk::trace::SpanExporter for FailingExporter {
    async fn export(&self, _batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
            self.0.into(),
        ))
    }
}

/// Sends `()` when dropped: lets a test wait for a handler's future or a body's stream
/// to be dropped (which is when its span ends) without sleeping.
pub struct DropSignal(pub tokio::sync::mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// A handler that spawns work and answers without waiting for it: the work's `background`
/// span starts (the task signals from inside it) before the response, and ends when the
/// test sends `true` on `release`, after the server span.
pub async fn spawns_work(
    axum::extract::State(mut release): axum::extract::State<tokio::sync::watch::Receiver<bool>>,
) -> &'static str {
    use tracing::Instrument as _;
    let (started_tx, started) = tokio::sync::oneshot::channel();
    tokio::spawn(
        async move {
            let _ = started_tx.send(());
            let _ = release.wait_for(|released| *released).await;
        }
        .instrument(tracing::info_span!("background")),
    );
    let _ = started.await;
    "accepted"
}

/// Serves the Router on 127.0.0.1 at a port the OS picks; returns its address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

/// Runs the ignored test `name` of this test binary in a child process with `envs`: a
/// fresh process, for what sets process-wide state once (`install()` and its globals).
/// Fails unless it passes; returns what it wrote to stdout (the log output of a global
/// install).
pub fn run_child(name: &str, envs: &[(&str, String)]) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child {name} failed: {stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "child {name} ran no test: {stdout}\n{stderr}"
    );
    stdout
}
