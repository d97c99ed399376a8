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

fuzz_target!(|data: &[u8]| {
    let baggage = parse_baggage(split_values(data));
    assert!(baggage.len() <= MAX_BAGGAGE_MEMBERS);
    let Some(header) = format_baggage(&baggage) else {
        assert_eq!(baggage.len(), 0);
        return;
    };
    assert!(header.len() <= MAX_BAGGAGE_BYTES, "{}", header.len());
    assert!(http::HeaderValue::from_str(&header).is_ok());
    let back = parse_baggage([header.as_bytes()]);
    // Every member sent comes back exactly; a member is left out only to stay within limits.
    let sent = header.split(',').count();
    assert_eq!(back.len(), sent);
    let (all, got) = (entries(&baggage), entries(&back));
    assert!(
        got.iter().all(|e| all.contains(e)),
        "{got:?} not in {all:?}"
    );
    if sent == baggage.len() {
        assert_eq!(got, all);
    }
    assert_eq!(format_baggage(&back).as_deref(), Some(header.as_str()));
});
