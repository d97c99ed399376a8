//! The W3C `tracestate` header (Trace Context Level 2).

use super::traceparent::trim_ows;
use opentelemetry::trace::TraceState;

/// Most list-members a tracestate may hold.
const MAX_MEMBERS: usize = 32;
/// Longest key and longest value the grammar allows.
const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 256;
/// Longest combined `tracestate` input parsed: 32 maximal members (513 bytes each) with their
/// commas take 16 447 bytes; the rest leaves room for optional whitespace and empty members.
pub const MAX_TRACESTATE_INPUT: usize = 32 * 1024;
/// Longest header we send: the spec asks to propagate at least 512 characters.
pub const MAX_TRACESTATE_OUTPUT: usize = 512;
/// Entries longer than this are the first to go when truncating.
const LONG_ENTRY: usize = 128;

/// Parses (possibly repeated) `tracestate` header values, combined in order.
///
/// Returns `None` when the whole tracestate must be discarded; an empty or whitespace-only
/// input gives an empty `TraceState`.
///
/// ```text
/// list        = list-member 0*31( OWS "," OWS list-member )
/// list-member = (key "=" value) / OWS
/// key         = ( lcalpha / DIGIT ) 0*255( keychar )
/// keychar     = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"
/// value       = 0*255(chr) nblk-chr
/// nblk-chr    = %x21-2B / %x2D-3C / %x3E-7E
/// chr         = %x20 / nblk-chr
/// ```
///
/// This is the key rule of the published Level 2 text, which allows `@` anywhere after the
/// first character; it accepts every Level 1 simple key (`congo`) and multi-tenant key
/// (`tenant@system`). Receiving rules:
///
/// * Repeated headers are combined in order, as if joined with `,` (RFC 9110 field order).
/// * Empty and whitespace-only list-members are skipped and do not count towards the 32.
/// * More than 32 list-members, a duplicate key, or any malformed list-member discards the
///   whole tracestate (`None`); the trace itself continues.
/// * Combined input longer than [`MAX_TRACESTATE_INPUT`] bytes is discarded before it is
///   looked at, so a hostile header costs no allocation.
/// * A spec-valid key that `opentelemetry` 0.33's `TraceState` refuses to hold (its validator
///   still follows the Level 1 `tenant@system` split: at most one `@`, at most 13 characters
///   after it, and the first of those must be a letter or digit) is dropped on its own; deleting
///   a list-member is a mutation the spec allows.
pub fn parse_tracestate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<TraceState> {
    let mut total = 0usize;
    let mut members: Vec<(&'a [u8], &'a [u8])> = Vec::new();
    for value in values {
        // Counting one separator per header value also bounds a flood of empty headers.
        total = total.saturating_add(value.len()).saturating_add(1);
        if total > MAX_TRACESTATE_INPUT + 1 {
            return None;
        }
        for raw in value.split(|&b| b == b',') {
            let member = trim_ows(raw);
            if member.is_empty() {
                continue;
            }
            if members.len() == MAX_MEMBERS {
                return None;
            }
            let eq = member.iter().position(|&b| b == b'=')?;
            let (key, val) = (&member[..eq], &member[eq + 1..]);
            if !valid_key(key) || !valid_value(val) || members.iter().any(|(k, _)| *k == key) {
                return None;
            }
            members.push((key, val));
        }
    }
    let pairs: Vec<(&str, &str)> = members
        .into_iter()
        .filter_map(|(k, v)| Some((std::str::from_utf8(k).ok()?, std::str::from_utf8(v).ok()?)))
        .filter(|pair| TraceState::from_key_value([*pair]).is_ok())
        .collect();
    TraceState::from_key_value(pairs).ok()
}

/// Formats a tracestate for sending; `None` when there is nothing to send.
///
/// Entries that are not valid Level 2 list-members (the `TraceState` API accepts some) and
/// repeated keys after the first are skipped. The result is at most 512 characters: entries
/// longer than 128 characters are removed first, starting from the end, then entries from the
/// end, as the spec's truncation rule says.
pub fn format_tracestate(state: &TraceState) -> Option<String> {
    let mut entries: Vec<(&str, &str)> = Vec::new();
    for (key, value) in state {
        if entries.len() == MAX_MEMBERS {
            break;
        }
        if valid_key(key.as_bytes())
            && valid_value(value.as_bytes())
            && !entries.iter().any(|(k, _)| *k == key)
        {
            entries.push((key, value));
        }
    }
    let entry_len = |(k, v): &(&str, &str)| k.len() + 1 + v.len();
    let header_len = |entries: &[(&str, &str)]| {
        entries.iter().map(entry_len).sum::<usize>() + entries.len().saturating_sub(1)
    };
    while header_len(&entries) > MAX_TRACESTATE_OUTPUT {
        match entries.iter().rposition(|e| entry_len(e) > LONG_ENTRY) {
            Some(i) => {
                entries.remove(i);
            }
            None => {
                entries.pop();
            }
        }
    }
    if entries.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(header_len(&entries));
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    Some(out)
}

/// Level 2 key: `( lcalpha / DIGIT ) 0*255( keychar )`.
pub(crate) fn valid_key(key: &[u8]) -> bool {
    match key {
        [first, rest @ ..] if key.len() <= MAX_KEY_LEN => {
            (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.iter().all(|&b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
                })
        }
        _ => false,
    }
}

/// Level 2 value: 1 to 256 of `0x20..=0x7E` without `,` and `=`, not ending in a space.
pub(crate) fn valid_value(value: &[u8]) -> bool {
    match value {
        [.., last] if value.len() <= MAX_VALUE_LEN => {
            *last != b' '
                && value
                    .iter()
                    .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_grammar() {
        for ok in ["a", "0", "a1_-*/@", "tenant@system", "a@b@c"] {
            assert!(valid_key(ok.as_bytes()), "{ok}");
        }
        let long = "a".repeat(257);
        for bad in [
            "",
            "A",
            "_a",
            "-a",
            "*a",
            "/a",
            "@a",
            "a.b",
            "a b",
            "a=b",
            "é",
            long.as_str(),
        ] {
            assert!(!valid_key(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn value_grammar() {
        for ok in ["x", " x", "a b", "~", "!"] {
            assert!(valid_value(ok.as_bytes()), "{ok:?}");
        }
        let long = "v".repeat(257);
        for bad in [
            "",
            " ",
            "x ",
            "a,b",
            "a=b",
            "a\tb",
            "\x7f",
            "\x1f",
            long.as_str(),
        ] {
            assert!(!valid_value(bad.as_bytes()), "{bad:?}");
        }
    }
}
