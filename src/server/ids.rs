//! [`RootIdGenerator`]: lets [`TracingLayer`](super::TracingLayer) decide root requests
//! before building their span.

use std::cell::Cell;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

thread_local! {
    /// The trace id the layer decided on, for the root span it is about to start on this
    /// thread; taken by the next `new_trace_id`.
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// The tracer provider's id generator when the server layer should decide root
/// requests early (install it with `SdkTracerProvider::builder().with_id_generator(..)`).
///
/// To decide a root request before building its span, the layer must choose the trace
/// id the sampler decides on. opentelemetry_sdk 0.33 always takes a root's trace id from
/// the provider's id generator (it ignores `SpanBuilder::trace_id`), so this generator
/// hands the SDK the id the layer chose for the span it starts next on the same thread,
/// and otherwise generates random ids exactly like the SDK's `RandomIdGenerator`.
#[derive(Clone, Debug, Default)]
pub struct RootIdGenerator {
    random: RandomIdGenerator,
}

impl RootIdGenerator {
    /// Creates the generator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl IdGenerator for RootIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.random.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.random.new_span_id()
    }
}

/// A random, valid trace id (the W3C random flag holds for it).
pub(crate) fn random_trace_id() -> TraceId {
    loop {
        let id = rand::random::<u128>();
        if id != 0 {
            return TraceId::from(id);
        }
    }
}

/// A random, valid span id.
pub(crate) fn random_span_id() -> SpanId {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return SpanId::from(id);
        }
    }
}

/// Offers `trace_id` to the next root span started on this thread.
pub(crate) fn offer(trace_id: TraceId) {
    NEXT_TRACE_ID.with(|next| next.set(Some(trace_id)));
}

/// Withdraws the offer; `true` when a [`RootIdGenerator`] took it.
pub(crate) fn taken() -> bool {
    NEXT_TRACE_ID.with(Cell::take).is_none()
}
