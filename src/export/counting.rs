//! What happened to the sampled spans: the counters behind [`ExportStats`], and the exporter
//! wrapper that keeps them and says, once, when exporting starts failing and when it works
//! again.

use super::suppress;
use futures_util::future::BoxFuture;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Export counts since the manager was built; read them with
/// [`TracingManager::stats`](crate::manager::TracingManager::stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Why the last failed export failed, naming the exporter and its endpoint (e.g.
    /// `OTLP/gRPC https://collector:4317: ... invalid peer certificate: UnknownIssuer`);
    /// `None` once an export succeeds again.
    pub last_error: Option<String>,
    /// What deferred capture buffered, kept, discarded and dropped (all zero unless the
    /// sampler defers, see [`DeferredConfig`](crate::sampler::DeferredConfig)).
    pub deferred: super::DeferredStats,
    /// Spans the export filter dropped, per rule (see
    /// [`ExportFilterConfig`](super::ExportFilterConfig)).
    pub filter: super::FilterStats,
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
    pub(super) dropped_queue_full: AtomicU64,
    dropped_export_failed: AtomicU64,
    /// Spans accepted by the gate and not yet handed to the exporter, plus the batch in flight.
    pub(super) queued: AtomicUsize,
    health: Mutex<Health>,
}

/// Touched once per export, by the batch processor's thread only.
#[derive(Debug, Default)]
struct Health {
    /// The queue-full count seen at the previous export.
    queue_full_seen: u64,
    trouble: Option<Trouble>,
    last_error: Option<String>,
}

/// Exports fail or spans are dropped: since when, and what had been dropped before.
#[derive(Debug)]
struct Trouble {
    since: Instant,
    dropped_before: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ExportStats {
        ExportStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Ordering::Relaxed),
            dropped_export_failed: self.dropped_export_failed.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed) as u64,
            last_error: self.health.lock().ok().and_then(|h| h.last_error.clone()),
            deferred: super::DeferredStats::default(),
            filter: super::FilterStats::default(),
        }
    }

    /// After each export: one warning when trouble starts (an export failed, or the queue
    /// dropped spans since the last export), one line when an export succeeds again without
    /// new drops. Never one per span or per batch.
    fn after_export(&self, exporter: &str, batch_len: usize, error: Option<&OTelSdkError>) {
        let Ok(mut health) = self.health.lock() else {
            return;
        };
        let queue_full = self.dropped_queue_full.load(Ordering::Relaxed);
        let new_queue_full = queue_full.saturating_sub(health.queue_full_seen);
        health.queue_full_seen = queue_full;
        let failed = self.dropped_export_failed.load(Ordering::Relaxed);
        let dropped = queue_full + failed;
        let cause = error.map(|e| format!("{exporter}: {e}"));
        if let Some(cause) = &cause {
            health.last_error = Some(cause.clone());
        }
        match (&health.trouble, error.is_some() || new_queue_full > 0) {
            (None, true) => {
                let dropped_now = match error {
                    Some(_) => batch_len as u64 + new_queue_full,
                    None => new_queue_full,
                };
                health.trouble = Some(Trouble {
                    since: Instant::now(),
                    dropped_before: dropped.saturating_sub(dropped_now),
                });
                match &cause {
                    Some(cause) => tracing::warn!(
                        target: "meshtrace",
                        dropped_export_failed = failed,
                        dropped_queue_full = queue_full,
                        "span export failed, spans are being dropped: {cause} \
                         ({failed} spans lost in failed exports, {queue_full} dropped because \
                         the queue was full, so far); one more line when exports recover"
                    ),
                    None => tracing::warn!(
                        target: "meshtrace",
                        dropped_export_failed = failed,
                        dropped_queue_full = queue_full,
                        "the span export queue is full, spans are being dropped: {new_queue_full} \
                         since the last export to {exporter} ({queue_full} in total); the \
                         exporter is slower than the service makes spans (raise \
                         batch.max_queue_size, lower the sampling rate, or check the \
                         collector); one more line when exports recover"
                    ),
                }
            }
            (Some(trouble), false) => {
                let lost = dropped.saturating_sub(trouble.dropped_before);
                let after = trouble.since.elapsed();
                health.trouble = None;
                health.last_error = None;
                tracing::info!(
                    target: "meshtrace",
                    dropped_export_failed = failed,
                    dropped_queue_full = queue_full,
                    "span export to {exporter} works again after {after:.1?}; {lost} spans were \
                     dropped meanwhile"
                );
            }
            _ => {}
        }
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

/// Counts what the exporter does with each batch, releases its queue slots, and reports
/// trouble (see [`Counters::after_export`]).
#[derive(Debug)]
pub(crate) struct CountingExporter {
    inner: Box<dyn DynSpanExporter>,
    counters: Arc<Counters>,
    /// Names the exporter in warnings and [`ExportStats::last_error`], e.g.
    /// `OTLP/HTTP http://collector:4318/v1/traces`.
    name: String,
}

impl CountingExporter {
    pub(crate) fn new(
        inner: Box<dyn DynSpanExporter>,
        counters: Arc<Counters>,
        name: String,
    ) -> Self {
        CountingExporter {
            inner,
            counters,
            name,
        }
    }
}

impl SpanExporter for CountingExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // Only the batch processor's thread exports: whatever it emits from now on is
        // export work (the SDK suppresses its Context too; this also holds inside `tracing`
        // spans entered there).
        suppress::mark_thread();
        let n = batch.len();
        let export = self.inner.export_boxed(batch);
        let counters = &self.counters;
        let name = self.name.as_str();
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
            counters.after_export(name, n, result.as_ref().err());
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
