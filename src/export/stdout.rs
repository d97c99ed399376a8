//! A human-readable exporter: one line per span.

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Writes one line per span: name, trace id, span id, parent id, kind, status, duration and
/// attributes, e.g.
///
/// ```text
/// span "GET /orders/{id}" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 parent_id=- kind=server status=unset duration=1.52ms http.request.method="GET" http.route="/orders/{id}"
/// ```
///
/// Names and string values are quoted with Rust escapes, so a span is always exactly one
/// line whatever a client put into an attribute. The writer is stdout unless given.
#[derive(Clone)]
pub struct StdoutExporter {
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for StdoutExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutExporter").finish_non_exhaustive()
    }
}

impl Default for StdoutExporter {
    fn default() -> Self {
        Self::new()
    }
}

impl StdoutExporter {
    /// An exporter writing to stdout.
    pub fn new() -> Self {
        Self::with_writer(std::io::stdout())
    }

    /// An exporter writing to `writer` (a file, a buffer in a test, ...).
    pub fn with_writer(writer: impl Write + Send + 'static) -> Self {
        StdoutExporter {
            writer: Arc::new(Mutex::new(Box::new(writer))),
        }
    }

    /// Formats one span as its line, without the trailing newline.
    pub fn format_span(span: &SpanData) -> String {
        let mut line = String::with_capacity(256);
        let cx = &span.span_context;
        let _ = write!(
            line,
            "span {:?} trace_id={} span_id={} parent_id=",
            span.name.as_ref(),
            cx.trace_id(),
            cx.span_id()
        );
        if span.parent_span_id == SpanId::INVALID {
            line.push('-');
        } else {
            let _ = write!(line, "{}", span.parent_span_id);
        }
        let kind = match span.span_kind {
            SpanKind::Client => "client",
            SpanKind::Server => "server",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
            SpanKind::Internal => "internal",
        };
        let _ = write!(line, " kind={kind} status=");
        match &span.status {
            Status::Unset => line.push_str("unset"),
            Status::Ok => line.push_str("ok"),
            Status::Error { description } if description.is_empty() => line.push_str("error"),
            Status::Error { description } => {
                let _ = write!(line, "error({:?})", description.as_ref());
            }
        }
        let duration = span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default();
        let _ = write!(line, " duration={duration:.2?}");
        for kv in &span.attributes {
            line.push(' ');
            push_key(&mut line, kv.key.as_str());
            line.push('=');
            push_value(&mut line, &kv.value);
        }
        line
    }
}

pub(crate) fn push_key(line: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '=' && c != '"');
    if plain {
        line.push_str(key);
    } else {
        let _ = write!(line, "{key:?}");
    }
}

pub(crate) fn push_value(line: &mut String, value: &Value) {
    match value {
        Value::String(s) => {
            let _ = write!(line, "{:?}", s.as_str());
        }
        Value::Array(Array::String(items)) => {
            let items: Vec<&str> = items.iter().map(|s| s.as_str()).collect();
            let _ = write!(line, "{items:?}");
        }
        // Numbers and booleans (and their arrays) print plainly; anything else that would
        // contain a space or control character is quoted.
        other => {
            let text = other.to_string();
            if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                let _ = write!(line, "{text:?}");
            } else {
                line.push_str(&text);
            }
        }
    }
}

impl SpanExporter for StdoutExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut out = String::with_capacity(batch.len() * 256);
        for span in &batch {
            out.push_str(&Self::format_span(span));
            out.push('\n');
        }
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| OTelSdkError::InternalFailure("stdout exporter lock poisoned".into()))?;
        writer
            .write_all(out.as_bytes())
            .and_then(|()| writer.flush())
            .map_err(|e| OTelSdkError::InternalFailure(format!("writing spans failed: {e}")))
    }
}
