//! `TraceParent::parse` on any bytes; what `to_header_value` emits parses back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshtrace::context::{TraceParent, TraceParentError};
use meshtrace_fuzz::trim_ows;
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

/// Emits `parent`, checks the value's shape and that it parses back to `parent` as sent
/// (version 00, only the sampled and random flags).
fn round_trip(parent: &TraceParent) -> http::HeaderValue {
    let emitted = parent.to_header_value();
    assert_eq!(emitted.len(), 55, "{emitted:?}");
    let back = TraceParent::parse(emitted.as_bytes()).expect("what we emit parses");
    let sent = TraceParent {
        version: 0,
        flags: TraceFlags::new(parent.flags.to_u8() & 0x03),
        ..*parent
    };
    assert_eq!(back, sent);
    assert_eq!(back.to_header_value(), emitted);
    emitted
}

fuzz_target!(|data: &[u8]| {
    match TraceParent::parse(data) {
        Ok(parent) => {
            assert_ne!(parent.version, 0xff);
            assert_ne!(parent.trace_id, TraceId::INVALID);
            assert_ne!(parent.parent_id, SpanId::INVALID);
            let emitted = round_trip(&parent);
            // A version 00 value with known flags only is sent on exactly as received.
            if parent.version == 0 && parent.flags.to_u8() & !0x03 == 0 {
                assert_eq!(emitted.as_bytes(), trim_ows(data));
            }
        }
        Err(TraceParentError::Length) => {
            // Only a value of the wrong length is refused for its length.
            assert_ne!(trim_ows(data).len(), 55);
        }
        Err(_) => {}
    }
    // The same bytes as ids and flags: every valid triple round-trips.
    let mut raw = [0u8; 25];
    let n = data.len().min(25);
    raw[..n].copy_from_slice(&data[..n]);
    let trace_id = TraceId::from_bytes(raw[..16].try_into().unwrap_or_default());
    let span_id = SpanId::from_bytes(raw[16..24].try_into().unwrap_or_default());
    if trace_id != TraceId::INVALID && span_id != SpanId::INVALID {
        round_trip(&TraceParent::new(
            trace_id,
            span_id,
            TraceFlags::new(raw[24]),
        ));
    }
});
