//! Log correlation: every event inside a span carries the ids of the exported span.

use std::io;
use std::sync::{Arc, Mutex};

use meshtrace::logging::{CorrelatedFormat, CorrelationLayer, LogFormat, fmt_layer_with_writer};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use serde_json::Value;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;

/// Log output shared between the subscriber and the test.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn json_lines(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

struct Harness {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
    logs: Buffer,
}

impl Harness {
    fn new(sampler: Sampler) -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_sampler(sampler)
            .build();
        Self {
            provider,
            exporter,
            logs: Buffer::default(),
        }
    }

    fn subscriber(&self, format: LogFormat) -> impl Subscriber + Send + Sync + use<> {
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(self.provider.tracer("test")))
            .with(fmt_layer_with_writer(format, self.logs.clone()))
    }

    fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().unwrap();
        self.exporter.get_finished_spans().unwrap()
    }

    fn span(&self, name: &str) -> SpanData {
        self.spans()
            .into_iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| panic!("no exported span named {name}"))
    }
}

fn hex32(span: &SpanData) -> String {
    format!("{:032x}", span.span_context.trace_id())
}

fn hex16(span: &SpanData) -> String {
    format!("{:016x}", span.span_context.span_id())
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

fn only_line(lines: Vec<Value>) -> Value {
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.into_iter().next().unwrap()
}

#[test]
fn json_event_carries_the_exported_span_ids_and_correlation_id() {
    let h = Harness::new(Sampler::AlwaysOn);
    tracing::subscriber::with_default(h.subscriber(LogFormat::Json), || {
        let span = tracing::info_span!("request", correlation.id = "req-42");
        let _guard = span.enter();
        tracing::info!(order = 7, "order placed");
    });

    let line = only_line(h.logs.json_lines());
    let exported = h.span("request");
    assert_eq!(line["trace_id"], hex32(&exported));
    assert_eq!(line["span_id"], hex16(&exported));
    assert_eq!(
        line["correlation_id"].as_str(),
        attribute(&exported, "correlation.id").as_deref()
    );
    assert_eq!(line["correlation_id"], "req-42");
    // The rest has tracing-subscriber's JSON shape, span names without their fields.
    assert_eq!(line["fields"]["message"], "order placed");
    assert_eq!(line["fields"]["order"], 7);
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["span"]["name"], "request");
}

#[test]
fn text_event_carries_the_exported_span_ids_and_correlation_id() {
    let h = Harness::new(Sampler::AlwaysOn);
    tracing::subscriber::with_default(h.subscriber(LogFormat::Text), || {
        let span = tracing::info_span!("request", correlation.id = "req-42");
        span.in_scope(|| tracing::warn!("slow"));
    });

    let lines = h.logs.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let exported = h.span("request");
    let expected = format!(
        " trace_id={} span_id={} correlation_id=req-42",
        hex32(&exported),
        hex16(&exported)
    );
    assert!(lines[0].ends_with(&expected), "{}", lines[0]);
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert!(lines[0].contains("slow"), "{}", lines[0]);
    assert!(
        !lines[0].contains('\u{1b}'),
        "no ANSI colours: {}",
        lines[0]
    );
}

#[test]
fn event_outside_any_span_carries_no_ids() {
    for format in [LogFormat::Json, LogFormat::Text] {
        let h = Harness::new(Sampler::AlwaysOn);
        tracing::subscriber::with_default(h.subscriber(format), || {
            let span = tracing::info_span!("request", correlation.id = "req-42");
            span.in_scope(|| tracing::info!("inside"));
            tracing::info!("outside");
        });
        let lines = h.logs.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("trace_id"), "{}", lines[0]);
        for key in ["trace_id", "span_id", "correlation_id"] {
            assert!(!lines[1].contains(key), "{format:?}: {}", lines[1]);
        }
    }
}

#[test]
fn unsampled_span_still_carries_valid_ids() {
    let h = Harness::new(Sampler::AlwaysOff);
    let mut expected = None;
    tracing::subscriber::with_default(h.subscriber(LogFormat::Json), || {
        let span = tracing::info_span!("request", correlation.id = "req-7");
        let _guard = span.enter();
        tracing::info!("dropped but logged");
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && !sc.is_sampled());
        expected = Some((
            format!("{:032x}", sc.trace_id()),
            format!("{:016x}", sc.span_id()),
        ));
    });

    assert!(h.spans().is_empty(), "AlwaysOff exports nothing");
    let (trace_id, span_id) = expected.unwrap();
    let line = only_line(h.logs.json_lines());
    assert_eq!(line["trace_id"], trace_id);
    assert_eq!(line["span_id"], span_id);
    assert_eq!(line["correlation_id"], "req-7");
}

#[test]
fn nested_span_event_has_child_span_id_and_parent_correlation_id() {
    let h = Harness::new(Sampler::AlwaysOn);
    tracing::subscriber::with_default(h.subscriber(LogFormat::Json), || {
        let parent = tracing::info_span!("request", correlation.id = "req-9");
        let _p = parent.enter();
        let child = tracing::info_span!("db.query");
        let _c = child.enter();
        tracing::info!("querying");
    });

    let line = only_line(h.logs.json_lines());
    let parent = h.span("request");
    let child = h.span("db.query");
    assert_eq!(child.parent_span_id, parent.span_context.span_id());
    assert_eq!(line["trace_id"], hex32(&parent));
    assert_eq!(line["span_id"], hex16(&child));
    assert_eq!(line["correlation_id"], "req-9");
}

#[test]
fn nearest_correlation_id_wins_and_spans_without_one_still_get_ids() {
    let h = Harness::new(Sampler::AlwaysOn);
    tracing::subscriber::with_default(h.subscriber(LogFormat::Json), || {
        let plain = tracing::info_span!("job");
        plain.in_scope(|| {
            tracing::info!("no correlation id");
            let server = tracing::info_span!("server", correlation.id = "outer");
            server.in_scope(|| {
                let client = tracing::info_span!("client", correlation.id = "inner");
                client.in_scope(|| tracing::info!("in client"));
            });
        });
    });

    let lines = h.logs.json_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["span_id"], hex16(&h.span("job")));
    assert!(lines[0].get("correlation_id").is_none(), "{}", lines[0]);
    assert_eq!(lines[1]["span_id"], hex16(&h.span("client")));
    assert_eq!(lines[1]["correlation_id"], "inner");
}

#[test]
fn correlation_id_recorded_after_creation_is_used() {
    let h = Harness::new(Sampler::AlwaysOn);
    tracing::subscriber::with_default(h.subscriber(LogFormat::Json), || {
        let span = tracing::info_span!("request", correlation.id = tracing::field::Empty);
        let _guard = span.enter();
        tracing::info!("before");
        span.record("correlation.id", "late-1");
        tracing::info!("after");
    });

    let lines = h.logs.json_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].get("correlation_id").is_none(), "{}", lines[0]);
    assert_eq!(lines[1]["correlation_id"], "late-1");
    assert_eq!(lines[0]["span_id"], lines[1]["span_id"]);
}

#[test]
fn hostile_correlation_value_cannot_break_the_line() {
    // meshtrace only records validated ids, but the formatter must not trust span fields.
    let value = "a\"b\\c\n{\"level\":\"ERROR\"}\u{1b}[31m";
    for format in [LogFormat::Json, LogFormat::Text] {
        let h = Harness::new(Sampler::AlwaysOn);
        tracing::subscriber::with_default(h.subscriber(format), || {
            let span = tracing::info_span!("request", correlation.id = value);
            span.in_scope(|| tracing::info!("x"));
        });
        let lines = h.logs.lines();
        assert_eq!(lines.len(), 1, "{format:?}: {lines:?}");
        assert!(!lines[0].contains('\u{1b}'), "{format:?}: {}", lines[0]);
        if format == LogFormat::Json {
            let line: Value = serde_json::from_str(&lines[0]).unwrap();
            assert_eq!(line["correlation_id"], value);
        }
    }
}

#[test]
fn event_with_explicit_parent_that_never_started_has_no_ids_but_its_correlation_id() {
    let h = Harness::new(Sampler::AlwaysOn);
    tracing::subscriber::with_default(h.subscriber(LogFormat::Json), || {
        let span = tracing::info_span!("request", correlation.id = "req-1");
        tracing::info!(parent: &span, "before the span starts");
        span.in_scope(|| tracing::info!("inside"));
    });

    let lines = h.logs.json_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
    assert!(lines[0].get("span_id").is_none(), "{}", lines[0]);
    assert_eq!(lines[0]["correlation_id"], "req-1");
    assert_eq!(lines[1]["span_id"], hex16(&h.span("request")));
}

#[test]
fn ids_follow_an_async_span_across_threads() {
    let h = Harness::new(Sampler::AlwaysOn);
    let subscriber = h.subscriber(LogFormat::Json);
    let dispatch = tracing::Dispatch::new(subscriber);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        use tracing::Instrument as _;
        let span = tracing::dispatcher::with_default(&dispatch, || {
            tracing::info_span!("request", correlation.id = "async-1")
        });
        let task = async {
            tracing::info!("first");
            tokio::task::yield_now().await;
            tracing::info!("second");
        }
        .instrument(span);
        use tracing::instrument::WithSubscriber as _;
        tokio::spawn(task.with_subscriber(dispatch.clone()))
            .await
            .unwrap();
    });
    drop(rt);

    let lines = h.logs.json_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let exported = h.span("request");
    for line in &lines {
        assert_eq!(line["span_id"], hex16(&exported));
        assert_eq!(line["correlation_id"], "async-1");
    }
}

#[test]
fn own_fmt_layer_with_correlated_format() {
    let h = Harness::new(Sampler::AlwaysOn);
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(h.provider.tracer("test")))
        .with(CorrelationLayer::new())
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(h.logs.clone())
                .map_event_format(CorrelatedFormat::json),
        );
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request", correlation.id = "own-1");
        span.in_scope(|| tracing::info!(user = "u1", "custom"));
    });

    let line = only_line(h.logs.json_lines());
    assert_eq!(line["span_id"], hex16(&h.span("request")));
    assert_eq!(line["correlation_id"], "own-1");
    assert_eq!(line["message"], "custom");
    assert_eq!(line["user"], "u1");
    assert!(line.get("span").is_none());
}

#[test]
fn without_an_otel_layer_only_the_correlation_id_is_logged() {
    let logs = Buffer::default();
    let subscriber =
        tracing_subscriber::registry().with(fmt_layer_with_writer(LogFormat::Json, logs.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request", correlation.id = "solo");
        span.in_scope(|| tracing::info!("x"));
    });
    let line = only_line(logs.json_lines());
    assert!(line.get("trace_id").is_none(), "{line}");
    assert_eq!(line["correlation_id"], "solo");
}

// Keeps the generic bound of the public API honest: it must accept any registry-backed
// subscriber, not only the one built above.
#[allow(dead_code)]
fn accepts_any_lookup_span_subscriber<S>(subscriber: S) -> impl Subscriber
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    subscriber.with(meshtrace::logging::fmt_layer(LogFormat::Text))
}
