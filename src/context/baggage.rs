//! The W3C `baggage` header.

use super::traceparent::trim_ows;
use opentelemetry::baggage::Baggage;
use std::fmt::Write as _;

/// Largest combined `baggage` header parsed or produced, in bytes.
pub const MAX_BAGGAGE_BYTES: usize = 8192;
/// Most list-members produced.
pub const MAX_BAGGAGE_MEMBERS: usize = 64;

/// Parses (possibly repeated) `baggage` header values, skipping invalid list-members.
///
/// ```text
/// baggage-string = list-member 0*179( OWS "," OWS list-member )
/// list-member    = key OWS "=" OWS value *( OWS ";" OWS property )
/// property       = key OWS "=" OWS value / key OWS
/// key            = token                      ; RFC 9110
/// value          = *baggage-octet             ; percent-encoded UTF-8
/// baggage-octet  = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
/// ```
///
/// Receiving: repeated headers are combined in order; each list-member is parsed on its own
/// and a malformed one is skipped without affecting the others; keys, values and properties
/// are trimmed of OWS; values are percent-decoded (invalid UTF-8 becomes U+FFFD, as the spec
/// requires); properties are kept verbatim (OWS removed) as [`BaggageMetadata`]. When a key
/// repeats, the last value wins.
///
/// Limits (the spec's minimums, 64 list-members and 8192 bytes), and who enforces them:
/// * this parser looks at no more than the first [`MAX_BAGGAGE_BYTES`] bytes of the combined
///   header; the list-member that crosses that line and everything after it are dropped
///   (never a partial member), so a hostile header costs at most 8 KiB of work;
/// * `opentelemetry` 0.33's `Baggage` itself refuses a 65th key and any insert that would make
///   key + value + metadata bytes exceed 8192 (it drops that member silently).
///
/// [`BaggageMetadata`]: opentelemetry::baggage::BaggageMetadata
pub fn parse_baggage<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Baggage {
    let mut baggage = Baggage::new();
    // Offset in the combined header (values joined by one `,`).
    let mut offset = 0usize;
    'values: for value in values {
        for raw in value.split(|&b| b == b',') {
            let end = offset.saturating_add(raw.len());
            if end > MAX_BAGGAGE_BYTES {
                break 'values;
            }
            offset = end + 1;
            if let Some((key, value, metadata)) = parse_member(raw) {
                baggage.insert_with_metadata(key, value, metadata);
            }
        }
    }
    baggage
}

/// Formats baggage for sending; `None` when there is nothing to send.
///
/// Keys come in sorted order (a `Baggage` is a hash map, and a stable order makes headers
/// comparable); values are percent-encoded (everything outside `baggage-octet`, and `%`);
/// properties that do not follow the grammar are left out; whole members are dropped once 64
/// members or 8192 bytes would be exceeded. The output parses back to the same baggage.
///
/// A received member can come out longer than it came in: a `%` that starts no escape is kept
/// literally and sent as `%25`, and an invalid UTF-8 escape such as `%FF` is decoded to U+FFFD
/// and sent as `%EF%BF%BD`. Such a member is dropped when it no longer fits; the others are
/// still sent.
pub fn format_baggage(baggage: &Baggage) -> Option<String> {
    let mut entries: Vec<_> = baggage.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let mut out = String::new();
    let mut members = 0usize;
    let mut member = String::new();
    for (key, (value, metadata)) in entries {
        if members == MAX_BAGGAGE_MEMBERS {
            break;
        }
        let key = key.as_str();
        if !is_token(key.as_bytes()) {
            continue;
        }
        member.clear();
        member.push_str(key);
        member.push('=');
        encode_value(value.as_str(), &mut member);
        for property in metadata.as_str().split(';') {
            if let Some((k, v)) = parse_property(property.as_bytes()) {
                member.push(';');
                // Both parts were checked to be ASCII by `parse_property`.
                member.push_str(std::str::from_utf8(k).unwrap_or_default());
                if let Some(v) = v {
                    member.push('=');
                    member.push_str(std::str::from_utf8(v).unwrap_or_default());
                }
            }
        }
        let needed = member.len() + usize::from(members > 0);
        if out.len() + needed > MAX_BAGGAGE_BYTES {
            continue;
        }
        if members > 0 {
            out.push(',');
        }
        out.push_str(&member);
        members += 1;
    }
    (members > 0).then_some(out)
}

/// One list-member: `(key, decoded value, normalised properties)`.
fn parse_member(raw: &[u8]) -> Option<(String, String, String)> {
    let mut parts = raw.split(|&b| b == b';');
    let kv = parts.next()?;
    let eq = kv.iter().position(|&b| b == b'=')?;
    let key = trim_ows(&kv[..eq]);
    let value = trim_ows(&kv[eq + 1..]);
    if !is_token(key) || !value.iter().all(|&b| is_baggage_octet(b)) {
        return None;
    }
    let mut metadata = String::new();
    for property in parts {
        if trim_ows(property).is_empty() {
            continue;
        }
        let (k, v) = parse_property(property)?;
        if !metadata.is_empty() {
            metadata.push(';');
        }
        metadata.push_str(std::str::from_utf8(k).ok()?);
        if let Some(v) = v {
            metadata.push('=');
            metadata.push_str(std::str::from_utf8(v).ok()?);
        }
    }
    let key = std::str::from_utf8(key).ok()?.to_owned();
    // Baggage octets are ASCII, so a value without `%` is its own decoding.
    let value = if value.contains(&b'%') {
        percent_encoding::percent_decode(value)
            .decode_utf8_lossy()
            .into_owned()
    } else {
        std::str::from_utf8(value).ok()?.to_owned()
    };
    Some((key, value, metadata))
}

/// `key OWS "=" OWS value / key OWS`, surrounded by OWS; `None` when malformed or empty.
fn parse_property(raw: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let raw = trim_ows(raw);
    let (key, value) = match raw.iter().position(|&b| b == b'=') {
        Some(eq) => (trim_ows(&raw[..eq]), Some(trim_ows(&raw[eq + 1..]))),
        None => (raw, None),
    };
    let value_ok = value.is_none_or(|v| v.iter().all(|&b| is_baggage_octet(b)));
    (is_token(key) && value_ok).then_some((key, value))
}

/// Percent-encodes everything outside `baggage-octet`, and `%` itself.
fn encode_value(value: &str, out: &mut String) {
    for &b in value.as_bytes() {
        if is_baggage_octet(b) && b != b'%' {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// RFC 9110 `token`: one or more `tchar`.
fn is_token(key: &[u8]) -> bool {
    !key.is_empty() && key.iter().all(|&b| TCHAR[usize::from(b)])
}

/// `baggage-octet`: printable ASCII without DQUOTE, comma, semicolon and backslash.
fn is_baggage_octet(b: u8) -> bool {
    BAGGAGE_OCTET[usize::from(b)]
}

/// Builds a 256-entry table from a `const fn(u8) -> bool` (a macro: const fns cannot
/// call function pointers).
macro_rules! byte_table {
    ($accept:ident) => {{
        let mut table = [false; 256];
        let mut i = 0;
        while i < 256 {
            table[i] = $accept(i as u8);
            i += 1;
        }
        table
    }};
}

/// Byte tables: one load per byte instead of a chain of range comparisons.
const TCHAR: [bool; 256] = byte_table!(is_tchar);
const BAGGAGE_OCTET: [bool; 256] = byte_table!(in_baggage_octet_range);

const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

const fn in_baggage_octet_range(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}
