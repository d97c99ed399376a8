//! [`SpanRecord`]: what the pages keep of a finished span, a bounded copy with the same
//! bounds and redaction as an exported span.

use std::mem::size_of;
use std::time::SystemTime;

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;

use crate::limits::{kv_bytes, truncate};

/// Attributes kept per span (and per event); opentelemetry_sdk 0.33's own default limit is
/// 128 per span.
pub(crate) const MAX_ATTRIBUTES: usize = 128;
/// Events kept per span, the first ones.
pub(crate) const MAX_EVENTS: usize = 32;
/// Attributes kept per event.
const MAX_EVENT_ATTRIBUTES: usize = 32;
/// Attribute keys meshtrace uses between its own processors; never shown (the export gate
/// removes them before export too).
const INTERNAL_PREFIX: &str = "meshtrace.internal.";

/// An event of a [`SpanRecord`].
#[derive(Debug)]
pub(crate) struct EventRecord {
    pub(crate) name: String,
    pub(crate) time: SystemTime,
    pub(crate) attributes: Vec<KeyValue>,
}

/// A finished span as the pages show it. Every string is cut to the span value limit
/// (`max_attribute_value_length`, as the export gate cuts exported spans); the values were
/// redacted where they were recorded (query values, headers), as for export.
#[derive(Debug)]
pub(crate) struct SpanRecord {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_span_id: SpanId,
    pub(crate) parent_is_remote: bool,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    /// `unset`, `ok` or `error`.
    pub(crate) status: &'static str,
    pub(crate) status_description: String,
    /// Sampled (exported), or recorded without being sampled (deferred capture: exported
    /// only if its trace is kept).
    pub(crate) sampled: bool,
    pub(crate) attributes: Vec<KeyValue>,
    /// Attributes the SDK's limit or ours dropped.
    pub(crate) dropped_attributes: u32,
    pub(crate) events: Vec<EventRecord>,
    pub(crate) dropped_events: u32,
    /// Estimated bytes held.
    pub(crate) bytes: usize,
}

impl SpanRecord {
    /// A copy of `span` with every string cut to `max` bytes.
    pub(crate) fn new(span: &SpanData, max: usize) -> Self {
        let mut dropped_attributes = span.dropped_attributes_count;
        let attributes = bounded_attributes(
            &span.attributes,
            max,
            MAX_ATTRIBUTES,
            &mut dropped_attributes,
        );
        let mut dropped_events = span.events.dropped_count;
        let events = span
            .events
            .events
            .iter()
            .enumerate()
            .filter_map(|(i, event)| {
                if i >= MAX_EVENTS {
                    dropped_events = dropped_events.saturating_add(1);
                    return None;
                }
                let mut dropped = 0;
                Some(EventRecord {
                    name: truncate(&event.name, max).to_owned(),
                    time: event.timestamp,
                    attributes: bounded_attributes(
                        &event.attributes,
                        max,
                        MAX_EVENT_ATTRIBUTES,
                        &mut dropped,
                    ),
                })
            })
            .collect();
        let (status, status_description) = match &span.status {
            Status::Unset => ("unset", String::new()),
            Status::Ok => ("ok", String::new()),
            Status::Error { description } => ("error", truncate(description, max).to_owned()),
        };
        let mut record = SpanRecord {
            name: truncate(&span.name, max).to_owned(),
            kind: kind_name(&span.span_kind),
            trace_id: span.span_context.trace_id(),
            span_id: span.span_context.span_id(),
            parent_span_id: span.parent_span_id,
            parent_is_remote: span.parent_span_is_remote,
            start: span.start_time,
            end: span.end_time,
            status,
            status_description,
            sampled: span.span_context.is_sampled(),
            attributes,
            dropped_attributes,
            events,
            dropped_events,
            bytes: 0,
        };
        record.bytes = record.estimate_bytes();
        record
    }

    /// The span's duration (zero when the clock went backwards).
    pub(crate) fn duration(&self) -> std::time::Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }

    fn estimate_bytes(&self) -> usize {
        let mut n = size_of::<SpanRecord>() + self.name.len() + self.status_description.len();
        n += self.attributes.iter().map(kv_bytes).sum::<usize>();
        for event in &self.events {
            n += size_of::<EventRecord>() + event.name.len();
            n += event.attributes.iter().map(kv_bytes).sum::<usize>();
        }
        n
    }
}

/// The span kind as the OpenTelemetry specification names it.
pub(crate) fn kind_name(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

/// The first `limit` attributes, without meshtrace's internal marks, each string cut to
/// `max` bytes; counts the others in `dropped`.
fn bounded_attributes(
    attributes: &[KeyValue],
    max: usize,
    limit: usize,
    dropped: &mut u32,
) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(attributes.len().min(limit));
    for kv in attributes {
        if kv.key.as_str().starts_with(INTERNAL_PREFIX) {
            continue;
        }
        if out.len() >= limit {
            *dropped = dropped.saturating_add(1);
            continue;
        }
        let key = truncate(kv.key.as_str(), max);
        let key = if key.len() == kv.key.as_str().len() {
            kv.key.clone()
        } else {
            opentelemetry::Key::from(key.to_owned())
        };
        out.push(KeyValue::new(key, bounded_value(&kv.value, max)));
    }
    out
}

fn bounded_value(value: &Value, max: usize) -> Value {
    match value {
        Value::String(s) if s.as_str().len() > max => {
            Value::from(truncate(s.as_str(), max).to_owned())
        }
        Value::Array(opentelemetry::Array::String(items))
            if items.iter().any(|s| s.as_str().len() > max) =>
        {
            Value::Array(opentelemetry::Array::String(
                items
                    .iter()
                    .map(|s| opentelemetry::StringValue::from(truncate(s.as_str(), max).to_owned()))
                    .collect(),
            ))
        }
        other => other.clone(),
    }
}
