//! `parse_baggage` on any (repeated) header values; what `format_baggage` emits parses back
//! the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshtrace::context::{MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS, format_baggage, parse_baggage};
use meshtrace_fuzz::split_values;
use opentelemetry::baggage::Baggage;

fn entries(baggage: &Baggage) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = baggage
        .iter()
        .map(|(k, (v, m))| (k.to_string(), v.to_string(), m.as_str().to_owned()))
        .collect();
    out.sort();
    out
}

/// Bytes of a member once sent: a received `%` that starts no escape is kept literally and
/// sent as `%25`, a `%FF` decodes to U+FFFD and is sent as `%EF%BF%BD`, so a member can grow
/// past what may be sent.
fn sent_len((key, value, metadata): &(String, String, String)) -> usize {
    let octet = |b: u8| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e);
    let value: usize = value
        .bytes()
        .map(|b| if octet(b) && b != b'%' { 1 } else { 3 })
        .sum();
    let properties = if metadata.is_empty() {
        0
    } else {
        1 + metadata.len()
    };
    key.len() + 1 + value + properties
}

fuzz_target!(|data: &[u8]| {
    let baggage = parse_baggage(split_values(data));
    assert!(baggage.len() <= MAX_BAGGAGE_MEMBERS);
    let all = entries(&baggage);
    let Some(header) = format_baggage(&baggage) else {
        // Nothing sent: no member, or none that fits on its own.
        assert!(
            all.iter().all(|m| sent_len(m) > MAX_BAGGAGE_BYTES),
            "{all:?}"
        );
        return;
    };
    assert!(header.len() <= MAX_BAGGAGE_BYTES, "{}", header.len());
    assert!(http::HeaderValue::from_str(&header).is_ok());
    let back = parse_baggage([header.as_bytes()]);
    // Every member sent comes back exactly; a member is left out only when it did not fit.
    let sent = header.split(',').count();
    assert_eq!(back.len(), sent);
    let got = entries(&back);
    for member in &all {
        if !got.contains(member) {
            assert!(
                header.len() + 1 + sent_len(member) > MAX_BAGGAGE_BYTES,
                "{member:?}"
            );
        }
    }
    assert!(
        got.iter().all(|e| all.contains(e)),
        "{got:?} not in {all:?}"
    );
    assert_eq!(format_baggage(&back).as_deref(), Some(header.as_str()));
});
