//! `parse_tracestate` on any (repeated) header values; what `format_tracestate` emits parses
//! back the same; the members survive `extract` -> `inject` (the next hop's tracestate).
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use meshtrace::context::{self, TraceStateMembers, format_tracestate, parse_tracestate};
use meshtrace_fuzz::split_values;
use opentelemetry::trace::TraceState;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Length of the header `members` formats to when nothing is truncated.
fn full_len(members: &TraceStateMembers) -> usize {
    members
        .iter()
        .map(|(k, v)| k.len() + 1 + v.len())
        .sum::<usize>()
        + members.len().saturating_sub(1)
}

/// Whether `small` is `big` with some members left out, order kept.
fn is_subsequence(small: &TraceStateMembers, big: &TraceStateMembers) -> bool {
    let mut big = big.iter();
    small.iter().all(|member| big.any(|m| m == member))
}

fuzz_target!(|data: &[u8]| {
    let values = split_values(data);
    let Some(members) = parse_tracestate(values.iter().copied()) else {
        return;
    };
    assert!(members.len() <= 32);
    for (i, (key, _)) in members.iter().enumerate() {
        assert!(members.iter().take(i).all(|(k, _)| k != key), "{key} twice");
    }
    // The TraceState holds exactly the members opentelemetry accepts, in order.
    let held: Vec<(&str, &str)> = members
        .iter()
        .filter(|pair| TraceState::from_key_value([*pair]).is_ok())
        .collect();
    let state = members.to_trace_state();
    assert_eq!(state.into_iter().collect::<Vec<_>>(), held);

    let Some(header) = format_tracestate(&members) else {
        assert!(members.is_empty());
        return;
    };
    assert!(header.len() <= 512);
    let back = parse_tracestate([header.as_bytes()]).expect("what we emit parses");
    assert_eq!(format_tracestate(&back).as_deref(), Some(header.as_str()));
    if full_len(&members) <= 512 {
        assert_eq!(back, members);
    } else {
        assert!(is_subsequence(&back, &members));
    }

    // End to end: every member reaches the next hop (the `ot` entry may be cleaned on the way).
    if members.get("ot").is_some() {
        return;
    }
    let mut incoming = HeaderMap::new();
    incoming.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
    for value in &values {
        match HeaderValue::from_bytes(value) {
            Ok(value) => incoming.append("tracestate", value),
            // A server never receives such a value; the parse above still covered it.
            Err(_) => return,
        };
    }
    let mut outgoing = HeaderMap::new();
    context::inject(&context::extract(&incoming), &mut outgoing);
    let forwarded = outgoing.get("tracestate").map(|v| v.as_bytes());
    assert_eq!(forwarded, Some(header.as_bytes()));
});
