//! Log correlation end to end: a handler behind TracingLayer logs, and the captured
//! line carries the ids of the exported server span and the request's correlation id.
#![cfg(feature = "axum")]

use std::io;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use meshtrace::logging::{LogFormat, fmt_layer_with_writer};
use meshtrace::server::TracingLayer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use serde_json::Value;
use tower::ServiceExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
    fn json(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON log line"))
            .collect()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

struct Setup {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
    logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
}

fn setup(format: LogFormat) -> Setup {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .build();
    let logs = Logs::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("logs")))
        .with(fmt_layer_with_writer(format, logs.clone()));
    let guard = tracing::subscriber::set_default(subscriber);
    Setup {
        provider,
        exporter,
        logs,
        _guard: guard,
    }
}

impl Setup {
    fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().unwrap();
        self.exporter.get_finished_spans().unwrap()
    }
}

fn app(provider: &SdkTracerProvider) -> Router {
    Router::new()
        .route(
            "/orders/{id}",
            get(|| async {
                tracing::info!(order = 42, "loading order");
                "order"
            }),
        )
        .layer(TracingLayer::new().tracer_provider(provider))
}

async fn call(setup: &Setup, headers: &[(&str, &str)]) {
    let mut request = http::Request::get("/orders/42");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app(&setup.provider)
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
}

#[tokio::test]
async fn json_log_line_has_the_exported_span_ids_and_the_correlation_id() {
    let setup = setup(LogFormat::Json);
    call(
        &setup,
        &[
            ("x-correlation-id", "order-42"),
            ("baggage", "user=alice-secret"),
        ],
    )
    .await;

    let spans = setup.spans();
    assert_eq!(spans.len(), 1);
    let lines = setup.logs.json();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(
        line["trace_id"],
        spans[0].span_context.trace_id().to_string()
    );
    assert_eq!(line["span_id"], spans[0].span_context.span_id().to_string());
    assert_eq!(line["correlation_id"], "order-42");
    assert!(
        !setup.logs.text().contains("alice-secret"),
        "baggage reached the logs: {}",
        setup.logs.text()
    );
}

#[tokio::test]
async fn text_log_line_has_the_ids_and_never_a_rejected_correlation_id() {
    let setup = setup(LogFormat::Text);
    call(&setup, &[("x-correlation-id", "<script>alert(1)</script>")]).await;

    let spans = setup.spans();
    let text = setup.logs.text();
    assert!(
        text.contains(&format!("trace_id={}", spans[0].span_context.trace_id())),
        "{text}"
    );
    assert!(
        text.contains(&format!("span_id={}", spans[0].span_context.span_id())),
        "{text}"
    );
    assert!(
        !text.contains("<script>"),
        "a rejected id reached the logs: {text}"
    );
    let generated = text
        .split("correlation_id=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a correlation_id field");
    assert!(
        uuid::Uuid::parse_str(generated.trim_matches('"')).is_ok(),
        "{generated}"
    );
}

#[tokio::test]
async fn an_unsampled_request_still_logs_its_trace_id() {
    let setup = setup(LogFormat::Json);
    call(
        &setup,
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )],
    )
    .await;
    assert!(setup.spans().is_empty());
    let lines = setup.logs.json();
    assert_eq!(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(lines[0]["span_id"].as_str().map(str::len), Some(16));
}

#[tokio::test]
async fn an_event_outside_any_span_takes_the_ids_from_the_current_context() {
    // What a request dropped before any span is built runs with: the extracted Context,
    // attached, holding the caller's trace and the validated correlation id.
    let setup = setup(LogFormat::Json);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
    );
    let cx = meshtrace::context::extract(&headers)
        .with_value(meshtrace::context::CorrelationId::parse(b"req-5").unwrap());
    {
        let _attached = cx.attach();
        tracing::info!("inside the dropped request");
    }
    tracing::info!("outside any request");

    let lines = setup.logs.json();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(lines[0]["span_id"], "00f067aa0ba902b7");
    assert_eq!(lines[0]["correlation_id"], "req-5");
    for key in ["trace_id", "span_id", "correlation_id"] {
        assert!(
            lines[1].get(key).is_none(),
            "{key} outside a request: {}",
            lines[1]
        );
    }
}
