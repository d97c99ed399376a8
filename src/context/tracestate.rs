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

/// A parsed `tracestate`: its list-members in order, each key and value valid, no key twice.
///
/// Unlike `opentelemetry` 0.33's `TraceState`, it holds every key the current W3C grammar
/// allows, such as `foo@@bar`, `foo@bar@baz` or a key with more than 13 characters after an
/// `@` ([`to_trace_state`](Self::to_trace_state) leaves those out). [`format_tracestate`]
/// formats it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceStateMembers {
    members: Vec<Member>,
}

impl TraceStateMembers {
    /// The list-members in order, as `(key, value)`.
    pub fn iter(&self) -> <&Self as IntoIterator>::IntoIter {
        self.into_iter()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find_map(|(k, v)| (k == key).then_some(v))
    }

    /// How many list-members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no list-member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The list-members `opentelemetry` 0.33's `TraceState` can hold, in order.
    ///
    /// Its key check still follows the Level 1 `tenant@system` split (at most one `@`, at most
    /// 13 characters after it, the first of them a letter or digit); other keys are left out.
    pub fn to_trace_state(&self) -> TraceState {
        trace_state_of(self.iter())
    }

    pub(crate) fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        TraceStateMembers {
            members: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

type Member = (Box<str>, Box<str>);

impl<'a> IntoIterator for &'a TraceStateMembers {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Member>, fn(&Member) -> (&str, &str)>;

    fn into_iter(self) -> Self::IntoIter {
        self.members.iter().map(|(k, v)| (&**k, &**v))
    }
}

/// Parses (possibly repeated) `tracestate` header values, combined in order.
///
/// Returns `None` when the whole tracestate must be discarded; an empty or whitespace-only
/// input gives no members.
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
/// This is the key rule of the current W3C text: `@` is a key character like any other after
/// the first one (there is no vendor/tenant split any more), so `foo@`, `foo@@bar` and
/// `foo@bar@baz` are keys; a key starting with `@` is not. Receiving rules:
///
/// * Repeated headers are combined in order, as if joined with `,` (RFC 9110 field order).
/// * Empty and whitespace-only list-members are skipped and do not count towards the 32.
/// * A key seen again keeps its first occurrence; the later ones are dropped (the spec lets
///   a vendor discard duplicates, not the header). They still count towards the 32.
/// * More than 32 list-members, or any malformed list-member, discards the whole tracestate
///   (`None`); the trace itself continues.
/// * Combined input longer than [`MAX_TRACESTATE_INPUT`] bytes is discarded before it is
///   looked at, so a hostile header costs no allocation.
pub fn parse_tracestate<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Option<TraceStateMembers> {
    parse_members(values).map(TraceStateMembers::from_pairs)
}

/// [`parse_tracestate`] without the copy: the members borrow the header values.
pub(crate) fn parse_members<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Vec<(&'a str, &'a str)>> {
    let mut total = 0usize;
    let mut count = 0usize;
    let mut members: Vec<(&'a str, &'a str)> = Vec::new();
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
            if count == MAX_MEMBERS {
                return None;
            }
            count += 1;
            let eq = member.iter().position(|&b| b == b'=')?;
            let (key, val) = (&member[..eq], &member[eq + 1..]);
            if !valid_key(key) || !valid_value(val) {
                return None;
            }
            // Both were checked to be ASCII, so these conversions cannot fail.
            let (Ok(key), Ok(val)) = (std::str::from_utf8(key), std::str::from_utf8(val)) else {
                return None;
            };
            if !members.iter().any(|(k, _)| *k == key) {
                members.push((key, val));
            }
        }
    }
    Some(members)
}

/// A `TraceState` of the pairs `opentelemetry` 0.33 can hold; the others are left out.
pub(crate) fn trace_state_of<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> TraceState {
    let held = pairs.filter(|(k, _)| otel_holds_key(k));
    TraceState::from_key_value(held.clone()).unwrap_or_else(|_| {
        // Only if `otel_holds_key` and opentelemetry's private check ever disagree: ask it
        // about each pair instead of losing them all.
        let checked: Vec<(&str, &str)> = held
            .filter(|pair| TraceState::from_key_value([*pair]).is_ok())
            .collect();
        TraceState::from_key_value(checked).unwrap_or_default()
    })
}

/// Formats list-members for sending; `None` when there is nothing to send.
///
/// Takes a `&TraceState`, a `&TraceStateMembers` or any `(key, value)` pairs. Pairs that are
/// not valid Level 2 list-members (the `TraceState` API accepts some) and repeated keys after
/// the first are skipped. At most 32 members are sent, and at most 512 characters: entries
/// longer than 128 characters are removed first, starting from the end, then entries from the
/// end, as the spec's truncation rule says.
pub fn format_tracestate<'a>(
    members: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let mut entries: Vec<(&str, &str)> = Vec::new();
    for (key, value) in members {
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

/// Merges the tracestate a span carries with the members received for its trace.
///
/// `span` is what the span's `TraceState` holds now (the received members `opentelemetry`
/// could hold, as changed by the sampler); `received` is every member as received. The
/// members that `span` added or changed come first, in its order (the spec moves a modified
/// member to the front); then the received members in their order, without those `span`
/// changed or deleted, with the ones `TraceState` could not hold put back.
pub(crate) fn merge_received<'a>(
    span: &'a TraceState,
    received: &'a TraceStateMembers,
) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(received.len() + 1);
    for (key, value) in span {
        if received.get(key) != Some(value) {
            out.push((key, value));
        }
    }
    for (key, value) in received.iter() {
        let kept = if otel_holds_key(key) {
            span.get(key) == Some(value)
        } else {
            true
        };
        if kept {
            out.push((key, value));
        }
    }
    out
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

/// Whether `opentelemetry` 0.33's `TraceState` accepts a key that [`valid_key`] accepted.
///
/// Its private `valid_key` (`trace/span_context.rs`) still applies the Level 1
/// `tenant@system` split: at most one `@`, at most 13 characters after it, and the first of
/// those a letter or digit. Asking `TraceState::from_key_value` instead would allocate.
pub(crate) fn otel_holds_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let mut ats = bytes.iter().enumerate().filter(|(_, b)| **b == b'@');
    match (ats.next(), ats.next()) {
        (None, _) => true,
        (Some(_), Some(_)) => false,
        (Some((i, _)), None) => {
            bytes.len() - i <= 14
                && bytes
                    .get(i + 1)
                    .is_none_or(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        }
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
        let at_241_14 = format!("{}@{}", "a".repeat(241), "b".repeat(14));
        for ok in [
            "a",
            "0",
            "a1_-*/@",
            "tenant@system",
            "a@b@c",
            "foo@",
            "foo@@bar",
            "foo@bar@baz",
            "t@_x",
            at_241_14.as_str(),
        ] {
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
            "@",
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
    fn otel_holds_key_matches_opentelemetry() {
        let at_241_14 = format!("{}@{}", "a".repeat(241), "b".repeat(14));
        let at_242_13 = format!("{}@{}", "a".repeat(242), "b".repeat(13));
        let long_plain = "a".repeat(256);
        let keys = [
            "a",
            "congo",
            "tenant@system",
            "t@abcdefghijklm",
            "t@abcdefghijklmn",
            "t@_x",
            "t@-x",
            "t@1x",
            "foo@",
            "foo@@bar",
            "foo@bar@baz",
            "a/b*c-d_e",
            at_241_14.as_str(),
            at_242_13.as_str(),
            long_plain.as_str(),
        ];
        for key in keys {
            assert!(valid_key(key.as_bytes()), "{key}");
            assert_eq!(
                otel_holds_key(key),
                TraceState::from_key_value([(key, "v")]).is_ok(),
                "{key}"
            );
        }
    }

    #[test]
    fn merge_puts_changed_members_first_and_received_ones_back() {
        let received = TraceStateMembers::from_pairs([
            ("a", "1"),
            ("foo@@bar", "2"),
            ("ot", "th:8"),
            ("b", "3"),
            ("x@y@z", "4"),
            ("c", "5"),
        ]);
        // The sampler rewrote `ot` (moved to the front), deleted `b`, added `new`.
        let span =
            TraceState::from_key_value([("new", "n"), ("ot", "th:4"), ("a", "1"), ("c", "5")])
                .unwrap();
        let merged = merge_received(&span, &received);
        assert_eq!(
            merged,
            [
                ("new", "n"),
                ("ot", "th:4"),
                ("a", "1"),
                ("foo@@bar", "2"),
                ("x@y@z", "4"),
                ("c", "5"),
            ]
        );
        // Nothing changed: the received order exactly.
        let span = received.to_trace_state();
        let merged = merge_received(&span, &received);
        assert_eq!(merged, received.iter().collect::<Vec<_>>());
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
