//! The W3C `traceparent` header.

use http::HeaderValue;
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

/// A parsed W3C `traceparent` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// Version field (00 today; higher versions are parsed by their first four fields).
    pub version: u8,
    /// The trace id.
    pub trace_id: TraceId,
    /// The parent (caller's span) id.
    pub parent_id: SpanId,
    /// The trace flags as received.
    pub flags: TraceFlags,
}

/// Why a `traceparent` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// The value does not follow the `version-traceid-parentid-flags` format.
    #[error("traceparent is malformed")]
    Malformed,
}

impl TraceParent {
    /// Parses a `traceparent` header value.
    pub fn parse(value: &[u8]) -> Result<TraceParent, TraceParentError> {
        let _ = value;
        Err(TraceParentError::Malformed)
    }

    /// Formats this value as a version 00 header value.
    pub fn to_header_value(&self) -> HeaderValue {
        let s = format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            self.flags.to_u8() & 0x03
        );
        HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}
