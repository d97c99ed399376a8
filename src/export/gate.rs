//! The sampled-only, bounded, counting front of the SDK's batch span processor.

use crate::config::ResolvedBatch;
use crate::config::ResolvedSpanLimits;
use futures_util::future::BoxFuture;
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Export counts since the manager was built; read them with
/// [`TracingManager::stats`](crate::manager::TracingManager::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Sampled spans the exporter accepted.
    pub exported: u64,
    /// Sampled spans dropped because the export queue was full.
    pub dropped_queue_full: u64,
    /// Sampled spans in export requests that failed or timed out.
    pub dropped_export_failed: u64,
    /// Sampled spans waiting in the queue (or in an export still running) right now.
    pub queued: u64,
}

impl ExportStats {
    /// All dropped spans: queue full plus export failed.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_export_failed
    }
}

/// The shared counters behind [`ExportStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    exported: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_export_failed: AtomicU64,
    /// Spans accepted by the gate and not yet handed to the exporter, plus the batch in flight.
    queued: AtomicUsize,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ExportStats {
        ExportStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Ordering::Relaxed),
            dropped_export_failed: self.dropped_export_failed.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed) as u64,
        }
    }
}

/// A [`SpanProcessor`] in front of the SDK's thread-based [`BatchSpanProcessor`]:
///
/// * only sampled spans pass: opentelemetry_sdk 0.33's `BatchSpanProcessor` also exports
///   RecordOnly (recording, unsampled) spans, which our sampler returns;
/// * the queue is bounded by our own count, so that drops can be counted: the SDK's processor
///   counts its queue-full drops but exposes the number only in an internal log at shutdown.
///   Our count includes the batch being exported, so it is never below the SDK's channel
///   occupancy and the SDK's own (uncounted) queue-full path is never taken;
/// * nothing here blocks: a full queue drops the span;
/// * string attribute values (span and event attributes) are cut to
///   `max_attribute_value_length`: opentelemetry_sdk 0.33's `SpanLimits` has no such limit,
///   and doing it here costs nothing for spans that are not exported.
#[derive(Debug)]
pub(crate) struct ExportGate {
    inner: BatchSpanProcessor,
    counters: Arc<Counters>,
    max_queue_size: usize,
    limits: ResolvedSpanLimits,
}

impl ExportGate {
    /// Wraps `exporter` (already counting into `counters`) in a batch processor.
    pub(crate) fn new(
        exporter: CountingExporter,
        counters: Arc<Counters>,
        batch: &ResolvedBatch,
        limits: ResolvedSpanLimits,
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
            counters,
            max_queue_size: batch.max_queue_size,
            limits,
        }
    }
}

impl SpanProcessor for ExportGate {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.limits.max_attribute_value_length > 0 {
            let events = span
                .events
                .events
                .iter_mut()
                .flat_map(|e| e.attributes.iter_mut());
            for kv in span.attributes.iter_mut().chain(events) {
                let value = std::mem::replace(&mut kv.value, opentelemetry::Value::Bool(false));
                kv.value = self.limits.truncate_value(value);
            }
        }
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

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// An object-safe [`SpanExporter`], so that the manager can hold any exporter.
pub(crate) trait DynSpanExporter: Send + Sync + std::fmt::Debug {
    fn export_boxed(&self, batch: Vec<SpanData>) -> BoxFuture<'_, OTelSdkResult>;
    fn shutdown_dyn(&self, timeout: Duration) -> OTelSdkResult;
    fn force_flush_dyn(&self) -> OTelSdkResult;
    fn set_resource_dyn(&mut self, resource: &Resource);
}

impl<E: SpanExporter> DynSpanExporter for E {
    fn export_boxed(&self, batch: Vec<SpanData>) -> BoxFuture<'_, OTelSdkResult> {
        Box::pin(self.export(batch))
    }
    fn shutdown_dyn(&self, timeout: Duration) -> OTelSdkResult {
        self.shutdown_with_timeout(timeout)
    }
    fn force_flush_dyn(&self) -> OTelSdkResult {
        self.force_flush()
    }
    fn set_resource_dyn(&mut self, resource: &Resource) {
        self.set_resource(resource);
    }
}

/// Counts what the exporter does with each batch and releases its queue slots.
#[derive(Debug)]
pub(crate) struct CountingExporter {
    inner: Box<dyn DynSpanExporter>,
    counters: Arc<Counters>,
}

impl CountingExporter {
    pub(crate) fn new(inner: Box<dyn DynSpanExporter>, counters: Arc<Counters>) -> Self {
        CountingExporter { inner, counters }
    }
}

impl SpanExporter for CountingExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let n = batch.len();
        let export = self.inner.export_boxed(batch);
        let counters = &self.counters;
        async move {
            let result = export.await;
            // The slots are released only once the export is over, so that the spans held by
            // a hanging export (collector down) count against the queue bound.
            counters.queued.fetch_sub(n, Ordering::AcqRel);
            let counter = match result {
                Ok(()) => &counters.exported,
                Err(_) => &counters.dropped_export_failed,
            };
            counter.fetch_add(n as u64, Ordering::Relaxed);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_dyn(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush_dyn()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource_dyn(resource);
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
        let exporter = CountingExporter::new(Box::new(memory.clone()), Arc::clone(&counters));
        let provider = SdkTracerProvider::builder()
            .with_sampler(RecordOnlyUnlessKeep)
            .with_span_processor(ExportGate::new(
                exporter,
                Arc::clone(&counters),
                &batch,
                ResolvedSpanLimits::default(),
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
