//! The W3C `traceparent` header (Trace Context Level 2).
//!
//! Grammar for version `00`: `2HEXDIGLC "-" 32HEXDIGLC "-" 16HEXDIGLC "-" 2HEXDIGLC`, exactly
//! 55 bytes. A higher version is parsed by its first four fields; after the flags it either ends
//! or continues with `-` and data we do not interpret. Leading and trailing optional whitespace
//! (space, horizontal tab) is ignored, as RFC 9110 says OWS around a field value is not part of
//! it (the W3C test suite sends such values and expects them accepted); whitespace anywhere else
//! makes the value invalid.

use http::HeaderValue;
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

/// The flag bits this crate understands and propagates: sampled (0x01) and random (0x02).
pub(crate) const KNOWN_FLAGS: u8 = 0x03;

/// Length of a version `00` value, and the minimum length of any version.
const V00_LEN: usize = 55;

/// A parsed W3C `traceparent` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// Version field as received (`00` today; `ff` is never accepted).
    pub version: u8,
    /// The trace id (never all zeroes).
    pub trace_id: TraceId,
    /// The caller's span id (never all zeroes).
    pub parent_id: SpanId,
    /// The trace flags exactly as received, unknown bits included.
    pub flags: TraceFlags,
}

/// Why a `traceparent` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Shorter than 55 bytes, or longer than 55 bytes on version `00`.
    #[error("traceparent has the wrong length")]
    Length,
    /// The version is not two lowercase hex digits, or it is `ff`.
    #[error("traceparent version is invalid")]
    Version,
    /// A field is not followed by `-` where the grammar requires one.
    #[error("traceparent field delimiter is missing")]
    Delimiter,
    /// The trace id is not 32 lowercase hex digits.
    #[error("traceparent trace-id is not 32 lowercase hex digits")]
    TraceId,
    /// The trace id is all zeroes.
    #[error("traceparent trace-id is all zeroes")]
    ZeroTraceId,
    /// The parent id is not 16 lowercase hex digits.
    #[error("traceparent parent-id is not 16 lowercase hex digits")]
    ParentId,
    /// The parent id is all zeroes.
    #[error("traceparent parent-id is all zeroes")]
    ZeroParentId,
    /// The flags are not two lowercase hex digits.
    #[error("traceparent trace-flags are not 2 lowercase hex digits")]
    Flags,
}

impl TraceParent {
    /// Builds a traceparent from its parts (version `00`).
    pub fn new(trace_id: TraceId, parent_id: SpanId, flags: TraceFlags) -> Self {
        TraceParent {
            version: 0,
            trace_id,
            parent_id,
            flags,
        }
    }

    /// Parses a `traceparent` header value.
    ///
    /// Looks at no more than the first 56 bytes after trimming, so hostile long values cost
    /// nothing beyond the trim.
    pub fn parse(value: &[u8]) -> Result<TraceParent, TraceParentError> {
        let v = trim_ows(value);
        if v.len() < V00_LEN {
            return Err(TraceParentError::Length);
        }
        let version = hex_lc(&v[0..2]).ok_or(TraceParentError::Version)? as u8;
        if version == 0xff {
            return Err(TraceParentError::Version);
        }
        if v[2] != b'-' {
            return Err(TraceParentError::Delimiter);
        }
        if version == 0 && v.len() != V00_LEN {
            return Err(TraceParentError::Length);
        }
        // Higher versions: "the 2 characters [of flags] are either at the end of the string
        // or followed by a dash"; what follows is not ours to interpret.
        if v.len() > V00_LEN && v[V00_LEN] != b'-' {
            return Err(TraceParentError::Delimiter);
        }
        let trace_id = hex_lc(&v[3..35]).ok_or(TraceParentError::TraceId)?;
        if v[35] != b'-' {
            return Err(TraceParentError::Delimiter);
        }
        let parent_id = hex_lc(&v[36..52]).ok_or(TraceParentError::ParentId)? as u64;
        if v[52] != b'-' {
            return Err(TraceParentError::Delimiter);
        }
        let flags = hex_lc(&v[53..55]).ok_or(TraceParentError::Flags)? as u8;
        if trace_id == 0 {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == 0 {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(TraceParent {
            version,
            trace_id: TraceId::from(trace_id),
            parent_id: SpanId::from(parent_id),
            flags: TraceFlags::new(flags),
        })
    }

    /// Formats this value as a version `00` header value.
    ///
    /// Only the sampled (0x01) and random (0x02) flags are written: Level 2 says vendors MUST
    /// set the other bits to zero.
    pub fn to_header_value(&self) -> HeaderValue {
        let s = format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.parent_id,
            self.flags.to_u8() & KNOWN_FLAGS
        );
        // The string is lowercase hex and dashes, which `HeaderValue` always accepts; the
        // fallback only exists so that this function has no panic path.
        HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Strips leading and trailing RFC 9110 OWS (space, horizontal tab).
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Value of each byte as a lowercase hex digit; `0xff` for every other byte.
const HEX_LC: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes up to 16 lowercase hex digits without a branch per digit: an invalid byte
/// maps to `0xff`, whose high bits mark the whole input invalid.
fn hex_u64(digits: &[u8]) -> Option<u64> {
    let mut acc = 0u64;
    let mut invalid = 0u8;
    for &b in digits {
        let d = HEX_LC[usize::from(b)];
        invalid |= d;
        acc = (acc << 4) | u64::from(d & 0x0f);
    }
    (invalid & 0xf0 == 0).then_some(acc)
}

/// Decodes up to 32 lowercase hex digits; `None` on any other byte (uppercase included).
fn hex_lc(digits: &[u8]) -> Option<u128> {
    debug_assert!(digits.len() <= 32);
    if digits.len() <= 16 {
        return hex_u64(digits).map(u128::from);
    }
    let (high, low) = digits.split_at(digits.len() - 16);
    Some((u128::from(hex_u64(high)?) << 64) | u128::from(hex_u64(low)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_ows_strips_only_space_and_tab() {
        assert_eq!(trim_ows(b" \t a b \t "), b"a b");
        assert_eq!(trim_ows(b"\r\na\n"), b"\r\na\n");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    #[test]
    fn hex_lc_accepts_lowercase_hex_only() {
        assert_eq!(hex_lc(b"00ff"), Some(0xff));
        assert_eq!(hex_lc(b"ffffffffffffffffffffffffffffffff"), Some(u128::MAX));
        assert_eq!(hex_lc(b"0F"), None);
        assert_eq!(hex_lc(b"+1"), None);
        assert_eq!(hex_lc(b""), Some(0));
    }
}
