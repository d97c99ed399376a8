//! The correlation id: a caller-supplied or generated request identifier that is echoed in the
//! response, recorded on the server span and forwarded on outgoing calls.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

/// Default header carrying the correlation id (`x-correlation-id`).
pub const DEFAULT_CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");
/// Header accepted when the configured correlation header is absent (`x-request-id`).
pub const FALLBACK_CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest accepted correlation id, in bytes.
pub const MAX_CORRELATION_ID_LEN: usize = 128;

/// A validated correlation id: 1 to 128 characters of `[A-Za-z0-9._:-]`.
///
/// It travels in the OpenTelemetry `Context` as a value (`cx.with_value(id)`), read back with
/// `cx.get::<CorrelationId>()` or [`ContextExt::correlation_id`](super::ContextExt::correlation_id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CorrelationId(HeaderValue);

/// Where a [`CorrelationId`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CorrelationSource {
    /// A valid value of the configured header.
    Header,
    /// A valid value of the fallback header (`x-request-id`); the configured one was absent.
    FallbackHeader,
    /// Neither header was present: a new id was generated.
    Generated,
    /// A header was present but invalid or repeated: a new id was generated.
    Rejected,
}

impl CorrelationSource {
    /// A short lowercase name, for span attributes and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CorrelationSource::Header => "header",
            CorrelationSource::FallbackHeader => "fallback_header",
            CorrelationSource::Generated => "generated",
            CorrelationSource::Rejected => "rejected",
        }
    }
}

enum Lookup {
    Absent,
    Invalid,
    Valid(CorrelationId),
}

impl CorrelationId {
    /// Generates a new random id (UUID v4, hyphenated lowercase).
    pub fn generate() -> Self {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        // One allocation that every clone (echo, extensions, outgoing calls) shares; a
        // `HeaderValue::from_str` copy is a `Vec`-backed `Bytes` (bytes 1.x) that allocates
        // again on its first clone. A hyphenated UUID is ASCII hex and dashes, always a
        // valid header value; the fallback only keeps this function free of panic paths.
        CorrelationId(
            HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
                .unwrap_or_else(|_| HeaderValue::from_static("0")),
        )
    }

    /// Validates a value: `Some` only for 1 to 128 characters of `[A-Za-z0-9._:-]`.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if !Self::is_valid(value) {
            return None;
        }
        HeaderValue::from_bytes(value).ok().map(CorrelationId)
    }

    /// Validates a header value, sharing its bytes instead of copying them.
    pub fn from_header_value(value: &HeaderValue) -> Option<Self> {
        Self::is_valid(value.as_bytes()).then(|| CorrelationId(value.clone()))
    }

    fn is_valid(value: &[u8]) -> bool {
        !value.is_empty()
            && value.len() <= MAX_CORRELATION_ID_LEN
            && value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    }

    /// Reads the id from `header`, else [`FALLBACK_CORRELATION_HEADER`], else generates one.
    ///
    /// Rules:
    /// 1. If the configured header is present, it alone decides: one valid value is used
    ///    ([`CorrelationSource::Header`]); an invalid value, or the header repeated (even with equal
    ///    values — which one the caller meant is unknowable, and a proxy may have appended one),
    ///    gives a fresh id ([`CorrelationSource::Rejected`]).
    /// 2. Otherwise the same rule applies to [`FALLBACK_CORRELATION_HEADER`] (`x-request-id`),
    ///    giving [`CorrelationSource::FallbackHeader`] or [`CorrelationSource::Rejected`].
    /// 3. Otherwise a UUID v4 is generated ([`CorrelationSource::Generated`]).
    ///
    /// A rejected value is never kept anywhere: only validated bytes can become a `CorrelationId`.
    pub fn from_headers(
        headers: &HeaderMap,
        header: &HeaderName,
    ) -> (CorrelationId, CorrelationSource) {
        match Self::lookup(headers, header) {
            Lookup::Valid(id) => (id, CorrelationSource::Header),
            Lookup::Invalid => (Self::generate(), CorrelationSource::Rejected),
            Lookup::Absent => match Self::lookup(headers, &FALLBACK_CORRELATION_HEADER) {
                Lookup::Valid(id) => (id, CorrelationSource::FallbackHeader),
                Lookup::Invalid => (Self::generate(), CorrelationSource::Rejected),
                Lookup::Absent => (Self::generate(), CorrelationSource::Generated),
            },
        }
    }

    fn lookup(headers: &HeaderMap, name: &HeaderName) -> Lookup {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Lookup::Absent,
            (Some(_), Some(_)) => Lookup::Invalid,
            // A clone shares the received bytes (a reference count for hyper's headers)
            // instead of copying them as `parse` must.
            (Some(v), None) if Self::is_valid(v.as_bytes()) => {
                Lookup::Valid(CorrelationId(v.clone()))
            }
            (Some(_), None) => Lookup::Invalid,
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Validated ASCII, so `to_str` cannot fail.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value, ready to be echoed or forwarded.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for CorrelationId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<CorrelationId> for HeaderValue {
    fn from(id: CorrelationId) -> Self {
        id.0
    }
}
