//! The sampled-only, bounded, counting front of the SDK's batch span processor.

use super::counting::{Counters, CountingExporter};
use super::deferred::{Deferred, take_mark};
use super::filter::ExportFilter;
use crate::config::ResolvedBatch;
use crate::context::RANDOM_FLAG;
use opentelemetry::trace::{SpanContext, Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanProcessor,
};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Carries "this trace id is random" from `on_start` (which sees the parent Context) to
/// `on_end` (which owns the span's data); removed before export.
const RANDOM_MARK: &str = "meshtrace.internal.trace_random";

/// A [`SpanProcessor`] in front of the SDK's thread-based [`BatchSpanProcessor`]:
///
/// * only sampled spans pass: opentelemetry_sdk 0.33's `BatchSpanProcessor` also exports
///   RecordOnly (recording, unsampled) spans, which our sampler returns;
/// * the queue is bounded by our own count, so that drops can be counted: the SDK's processor
///   counts its queue-full drops but exposes the number only in an internal log at shutdown.
///   Our count includes the batch being exported, so it is never below the SDK's channel
///   occupancy and the SDK's own (uncounted) queue-full path is never taken;
/// * nothing here blocks: a full queue drops the span;
/// * strings are cut to the shared value limit (`max_attribute_value_length`): span, event
///   and link attribute values, event names and the status description. opentelemetry_sdk
///   0.33's `SpanLimits` has no length limit, and doing it here costs nothing for spans that
///   are not exported;
/// * exported spans carry the W3C Level 2 `random` flag (0x02) that was propagated: the SDK
///   (0.33, `SdkTracer::build_with_context`) builds a root's flags from an empty parent, so a
///   root whose `traceparent` goes out as `-03` would be exported as `01`. A span gets the
///   flag when its parent Context says the trace id is random: the
///   [`TraceRandom`](crate::context::TraceRandom) marker (a new root that meshtrace made) or
///   a parent span context with the flag (the SDK copies a parent's flags to its children);
/// * deferred spans (recording, unsampled: the sampler's deferred capture) go to the
///   [`Deferred`] buffer, which hands back the traces it keeps, as sampled spans;
/// * the export filter drops matching leaf spans (see [`super::filter`]).
#[derive(Debug)]
pub(crate) struct ExportGate {
    inner: BatchSpanProcessor,
    /// The deferred-capture buffer, when the sampler can defer.
    deferred: Option<Arc<Deferred>>,
    filter: Arc<ExportFilter>,
    counters: Arc<Counters>,
    max_queue_size: usize,
    /// Most bytes of any string that is exported; 0: no limit.
    max_value_len: usize,
    /// The trace pages, which see every span that ends here (sampled or deferred) once
    /// they are mounted; one atomic load per span until then.
    pages: Arc<crate::pages::Slot>,
}

impl ExportGate {
    /// Wraps `exporter` (already counting into `counters`) in a batch processor.
    pub(crate) fn new(
        exporter: CountingExporter,
        counters: Arc<Counters>,
        batch: &ResolvedBatch,
        max_value_len: usize,
        deferred: Option<Arc<Deferred>>,
        filter: Arc<ExportFilter>,
        pages: Arc<crate::pages::Slot>,
    ) -> Self {
        // Every field is set explicitly: `BatchConfigBuilder::default()` reads the process's
        // OTEL_BSP_* variables, which must not override what the manager resolved. The export
        // timeout is not among them: the thread-based processor ignores it (0.33), so the
        // exporters enforce it themselves (see `export::otlp`).
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(batch.max_queue_size)
            .with_max_export_batch_size(batch.max_export_batch_size)
            .with_scheduled_delay(batch.scheduled_delay)
            .build();
        ExportGate {
            inner: BatchSpanProcessor::new(exporter, config),
            deferred,
            filter,
            counters,
            max_queue_size: batch.max_queue_size,
            max_value_len,
            pages,
        }
    }

    fn bound(&self, span: &mut SpanData) {
        let max = self.max_value_len;
        if max == 0 {
            return;
        }
        if let Status::Error { description } = &mut span.status {
            cut_cow(description, max);
        }
        // Plain loops: this runs for every exported span, and the common span has
        // attributes only.
        for kv in &mut span.attributes {
            cut_value(&mut kv.value, max);
        }
        for event in &mut span.events.events {
            cut_cow(&mut event.name, max);
            for kv in &mut event.attributes {
                cut_value(&mut kv.value, max);
            }
        }
        for link in &mut span.links.links {
            for kv in &mut link.attributes {
                cut_value(&mut kv.value, max);
            }
        }
    }
}

/// Whether the trace of a span started in `cx` has a random trace id (see [`ExportGate`]).
fn trace_is_random(cx: &Context) -> bool {
    use crate::context::ContextExt as _;
    cx.is_trace_random() || {
        let parent = cx.span();
        let sc = parent.span_context();
        sc.is_valid() && sc.trace_flags() & RANDOM_FLAG == RANDOM_FLAG
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn cut_str(text: &str, max: usize) -> Option<&str> {
    if text.len() <= max {
        return None;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(&text[..end])
}

fn cut_cow(text: &mut Cow<'static, str>, max: usize) {
    if let Some(cut) = cut_str(text, max) {
        *text = Cow::Owned(cut.to_owned());
    }
}

/// Cuts a string value (or the strings of an array) to `max` bytes. Inlined: it runs for
/// every attribute of every exported span, and almost every value is short.
#[inline]
fn cut_value(value: &mut Value, max: usize) {
    match value {
        Value::String(s) if s.as_str().len() > max => cut_string(s, max),
        Value::Array(opentelemetry::Array::String(items)) => {
            for s in items.iter_mut().filter(|s| s.as_str().len() > max) {
                cut_string(s, max);
            }
        }
        _ => {}
    }
}

#[cold]
fn cut_string(s: &mut opentelemetry::StringValue, max: usize) {
    if let Some(cut) = cut_str(s.as_str(), max) {
        *s = opentelemetry::StringValue::from(cut.to_owned());
    }
}

impl ExportGate {
    /// Queues a span that is to be exported (sampled, or kept by deferred capture), unless
    /// the export filter drops it. Inlined: a `SpanData` is ~400 bytes, and each call that
    /// takes it by value copies it.
    #[inline(always)]
    fn export(&self, mut span: SpanData, leaf: bool) {
        if self.filter.is_active() && self.filter.drops(&span, leaf) {
            return;
        }
        if take_mark(&mut span.attributes, RANDOM_MARK) {
            let sc = &span.span_context;
            span.span_context = SpanContext::new(
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags() | RANDOM_FLAG,
                sc.is_remote(),
                sc.trace_state().clone(),
            );
        }
        self.bound(&mut span);
        let queued = self.counters.queued.fetch_add(1, Ordering::AcqRel);
        if queued >= self.max_queue_size {
            self.counters.queued.fetch_sub(1, Ordering::AcqRel);
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }
}

impl SpanProcessor for ExportGate {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        use opentelemetry::trace::Span as _;
        // Every span here records: sampled, or deferred (which may be exported later).
        let sampled = span.span_context().is_sampled();
        if span.span_context().trace_flags() & RANDOM_FLAG != RANDOM_FLAG && trace_is_random(cx) {
            span.set_attribute(KeyValue::new(RANDOM_MARK, true));
        }
        if !sampled && let Some(deferred) = &self.deferred {
            deferred.on_start(span, cx);
        }
        self.filter.on_start(cx);
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.pages.on_end(&span);
        let leaf = self.filter.on_end(&span);
        if span.span_context.is_sampled() {
            // No `DOWNSTREAM_MARK` to take off: it is set only on unsampled client spans
            // (`http::deferred::read_answer`), and a deferred span is marked sampled only
            // after the buffer took it off.
            self.export(span, leaf);
            return;
        }
        // Unsampled (RecordOnly): never exported as it is.
        let Some(deferred) = &self.deferred else {
            return;
        };
        if let Some(kept) = deferred.on_end(span, leaf) {
            for (span, leaf) in kept.into_spans() {
                self.export(span, leaf);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        if let Some(deferred) = &self.deferred {
            deferred.sweep_all();
        }
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if let Some(deferred) = &self.deferred {
            deferred.clear();
        }
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The error used when an export exceeds its time budget.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) fn timeout_error(timeout: Duration) -> OTelSdkError {
    OTelSdkError::Timeout(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{
        Link, SpanKind, TraceId, TraceState, Tracer as _, TracerProvider as _,
    };
    use opentelemetry_sdk::trace::{
        InMemorySpanExporter, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample,
    };

    /// Records every span but samples only those whose name starts with `keep`.
    #[derive(Clone, Debug)]
    struct RecordOnlyUnlessKeep;

    impl ShouldSample for RecordOnlyUnlessKeep {
        fn should_sample(
            &self,
            _parent: Option<&Context>,
            _trace_id: TraceId,
            name: &str,
            _kind: &SpanKind,
            _attributes: &[KeyValue],
            _links: &[Link],
        ) -> SamplingResult {
            SamplingResult {
                decision: if name.starts_with("keep") {
                    SamplingDecision::RecordAndSample
                } else {
                    SamplingDecision::RecordOnly
                },
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            }
        }
    }

    #[test]
    fn record_only_spans_never_reach_the_exporter() {
        let memory = InMemorySpanExporter::default();
        let counters = Arc::new(Counters::default());
        let batch = ResolvedBatch {
            max_queue_size: 16,
            scheduled_delay: Duration::from_secs(60),
            max_export_batch_size: 16,
            export_timeout: Duration::from_secs(1),
        };
        let exporter = CountingExporter::new(
            Box::new(memory.clone()),
            Arc::clone(&counters),
            "memory".into(),
        );
        let provider = SdkTracerProvider::builder()
            .with_sampler(RecordOnlyUnlessKeep)
            .with_span_processor(ExportGate::new(
                exporter,
                Arc::clone(&counters),
                &batch,
                4096,
                None,
                Arc::new(ExportFilter::new(&Default::default()).unwrap()),
                Arc::default(),
            ))
            .build();
        let tracer = provider.tracer("gate-test");
        for name in ["keep-1", "record-only-1", "keep-2", "record-only-2"] {
            tracer.in_span(name, |_| {});
        }
        provider.force_flush().unwrap();
        let mut names: Vec<String> = memory
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .map(|s| s.name.into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["keep-1", "keep-2"]);
        let stats = counters.snapshot();
        assert_eq!(stats.exported, 2);
        assert_eq!(stats.dropped(), 0);
        assert_eq!(stats.queued, 0);
    }
}
