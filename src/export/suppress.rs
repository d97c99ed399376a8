//! The exporter never traces itself.
//!
//! The OTLP exporters' own HTTP clients (reqwest, hyper, tonic, h2) emit `tracing` spans and
//! events. Bridged to OpenTelemetry, they would be exported, which makes more export
//! requests, which make more spans: with `RUST_LOG=trace` and gRPC, one application span
//! became thousands of exported h2 spans within seconds (meshtrace 0.1 before this module).
//!
//! Two marks, checked by [`SpanFilter`] (the filter of the `tracing-opentelemetry` layer
//! that the manager builds) for every span and event:
//!
//! * the OpenTelemetry convention, `Context::is_current_telemetry_suppressed()`: the SDK's
//!   `BatchSpanProcessor` thread runs inside `Context::enter_telemetry_suppressed_scope`
//!   (opentelemetry_sdk 0.33), and the SDK tracer itself builds no span in a suppressed
//!   Context;
//! * a thread mark, set on every thread that runs export work: the batch processor's thread
//!   (marked by the first export it runs) and every thread of the exporter's private Tokio
//!   runtime (marked in `on_thread_start`, blocking-pool threads included). The thread mark
//!   holds even inside a `tracing` span that was created elsewhere and whose (unsuppressed)
//!   OpenTelemetry Context `tracing-opentelemetry` attaches when it is entered there.
//!
//! Log output is not affected: with `RUST_LOG=trace` the exporter's h2 lines are still
//! printed; they are only never exported.

use opentelemetry::Context;
use std::cell::{Cell, RefCell};
use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context as LayerContext, Filter};
use tracing_subscriber::registry::LookupSpan;

thread_local! {
    static EXPORT_THREAD: Cell<bool> = const { Cell::new(false) };
    // Kept for the thread's life so that the SDK tracer sees a suppressed Context too; taken
    // back in `unmark_thread`, before thread-local destruction (the guard touches another
    // thread local when dropped).
    static SUPPRESSED: RefCell<Option<opentelemetry::ContextGuard>> = const { RefCell::new(None) };
}

/// Marks the current thread as an export thread, for the rest of its life.
pub(crate) fn mark_thread() {
    if EXPORT_THREAD.with(|mark| mark.replace(true)) {
        return;
    }
    let guard = Context::enter_telemetry_suppressed_scope();
    SUPPRESSED.with(|slot| *slot.borrow_mut() = Some(guard));
}

/// Undoes [`mark_thread`]; called when a runtime thread stops.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) fn unmark_thread() {
    EXPORT_THREAD.with(|mark| mark.set(false));
    let _ = SUPPRESSED.try_with(|slot| slot.borrow_mut().take());
}

/// Whether spans and events emitted here belong to an export and must not be exported.
pub(crate) fn exporting() -> bool {
    EXPORT_THREAD.with(Cell::get) || Context::is_current_telemetry_suppressed()
}

/// The filter of the span layer: the span filter's directives, minus everything emitted
/// while exporting (the OTLP clients' hyper, h2, tonic and reqwest spans), so that export
/// never feeds itself. Rejected: whatever runs in a suppressed OpenTelemetry Context
/// (`Context::is_current_telemetry_suppressed`, as the SDK's batch thread does) or on one
/// of the exporter's threads, even inside a `tracing` span created elsewhere.
///
/// [`Layers::span_filter`](crate::Layers::span_filter) is a copy for an OpenTelemetry layer
/// of your own.
///
/// The directives decide per callsite, once (`EnvFilter`'s cached interest); callsites they
/// enable are checked per call for the export marks, two thread-local reads.
#[derive(Debug)]
pub struct SpanFilter {
    directives: EnvFilter,
    events: Events,
}

/// Which events a [`SpanFilter`] lets through (spans: those the directives enable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Events {
    /// Every event the directives enable (a filter for an OpenTelemetry layer of your own).
    All,
    /// All but ERROR events: tracing-opentelemetry 0.34 turns every ERROR event inside a
    /// span into span status Error whatever `with_error_events_to_status` says
    /// (`OpenTelemetryLayer::on_event`), so the manager's layer never sees them and
    /// [`super::events::ErrorEvents`] records them as plain span events.
    NotErrors,
    /// Only ERROR events (the filter of `ErrorEvents`).
    OnlyErrors,
}

impl SpanFilter {
    pub(crate) fn new(directives: EnvFilter, events: Events) -> Self {
        SpanFilter { directives, events }
    }

    fn admits(&self, meta: &Metadata<'_>) -> bool {
        if !meta.is_event() {
            return true;
        }
        let error = *meta.level() == tracing::Level::ERROR;
        match self.events {
            Events::All => true,
            Events::NotErrors => !error,
            Events::OnlyErrors => error,
        }
    }
}

impl<S> Filter<S> for SpanFilter
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &LayerContext<'_, S>) -> bool {
        self.admits(meta) && !exporting() && Filter::<S>::enabled(&self.directives, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if !self.admits(meta) {
            return Interest::never();
        }
        let interest = Filter::<S>::callsite_enabled(&self.directives, meta);
        if interest.is_never() {
            interest
        } else {
            Interest::sometimes()
        }
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &LayerContext<'_, S>) -> bool {
        !exporting() && Filter::<S>::event_enabled(&self.directives, event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // Spans of every level the directives enable pass, so the hint stays theirs.
        Filter::<S>::max_level_hint(&self.directives)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: LayerContext<'_, S>,
    ) {
        Filter::<S>::on_new_span(&self.directives, attrs, id, ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: LayerContext<'_, S>,
    ) {
        Filter::<S>::on_record(&self.directives, id, values, ctx);
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: LayerContext<'_, S>) {
        Filter::<S>::on_enter(&self.directives, id, ctx);
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: LayerContext<'_, S>) {
        Filter::<S>::on_exit(&self.directives, id, ctx);
    }

    fn on_close(&self, id: tracing::span::Id, ctx: LayerContext<'_, S>) {
        Filter::<S>::on_close(&self.directives, id, ctx);
    }
}
