//! The OpenTelemetry `ot` tracestate entry: its `th` and `rv` sub-values through the public
//! parse API of `meshtrace::sampler::consistent` (what we encode parses back the same), and
//! the whole entry through `extract` -> meshtrace's sampler -> `inject`: no malformed `rv`
//! ever reaches the sampler or the next hop, and other vendors' entries are kept.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use meshtrace::CustomSampler;
use meshtrace::context::{self, parse_tracestate};
use meshtrace::sampler::consistent::{HEX_DIGITS, Randomness, Threshold};
use meshtrace_fuzz::sampler;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry_sdk::trace::ShouldSample;
use std::sync::OnceLock;

const TRACE_ID: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;

fn lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Every `rv` sub-value of an `ot` value is exactly 14 lowercase hex digits.
fn assert_rv_well_formed(ot: &str) {
    for sub in ot.split(';') {
        if let Some(("rv", rv)) = sub.split_once(':') {
            assert!(
                rv.len() == HEX_DIGITS && lower_hex(rv),
                "rv {rv:?} in {ot:?}"
            );
        }
    }
}

fn sub_values(value: &str) {
    for sub in value.split(';') {
        match sub.split_once(':') {
            Some(("th", th)) => match Threshold::parse(th) {
                Some(t) => {
                    assert!(!th.is_empty() && th.len() <= HEX_DIGITS && lower_hex(th));
                    let encoded = t.encode().expect("a parsed threshold has an encoding");
                    assert_eq!(Threshold::parse(&encoded), Some(t));
                    // The encoding is the shortest: trailing zeros removed, `0` for always.
                    let shortest = th.trim_end_matches('0');
                    assert_eq!(encoded, if shortest.is_empty() { "0" } else { shortest });
                }
                None => assert!(th.is_empty() || th.len() > HEX_DIGITS || !lower_hex(th)),
            },
            Some(("rv", rv)) => match Randomness::parse_rv(rv) {
                Some(r) => assert_eq!(format!("{:014x}", r.raw()), rv),
                None => assert!(rv.len() != HEX_DIGITS || !lower_hex(rv)),
            },
            _ => {}
        }
    }
}

fn the_sampler() -> &'static CustomSampler {
    static SAMPLER: OnceLock<CustomSampler> = OnceLock::new();
    SAMPLER.get_or_init(sampler)
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    sub_values(value);

    let tracestate = format!("a=1,ot={value},z@x@y=2");
    let Ok(header) = HeaderValue::from_str(&tracestate) else {
        return;
    };
    let valid = parse_tracestate([header.as_bytes()]).is_some();
    let flags = data.first().map_or(0, |b| b & 0x03);
    let mut incoming = HeaderMap::new();
    incoming.insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{TRACE_ID:032x}-00f067aa0ba902b7-{flags:02x}"))
            .expect("valid header"),
    );
    incoming.insert("tracestate", header);
    let cx = context::extract(&incoming);

    // What the sampler reads.
    let span = cx.span();
    let parent = span.span_context();
    if let Some(ot) = parent.trace_state().get("ot") {
        assert!(valid);
        assert_rv_well_formed(ot);
    }

    // What the sampler decides and the next hop receives.
    let trace_id = TraceId::from(TRACE_ID);
    let result =
        the_sampler().should_sample(Some(&cx), trace_id, "GET /", &SpanKind::Server, &[], &[]);
    let child = SpanContext::new(
        trace_id,
        SpanId::from(7),
        parent.trace_flags(),
        false,
        result.trace_state,
    );
    let mut outgoing = HeaderMap::new();
    context::inject(&cx.with_remote_span_context(child), &mut outgoing);
    let forwarded = outgoing.get("tracestate").map(|v| v.as_bytes());
    let Some(forwarded) = forwarded.and_then(|v| parse_tracestate([v])) else {
        // Only an invalid tracestate is dropped whole.
        assert!(!valid);
        return;
    };
    // (A `,` in the input makes members of its own, which may repeat these keys.)
    if valid && !value.contains(',') {
        assert_eq!(forwarded.get("a"), Some("1"));
        assert_eq!(forwarded.get("z@x@y"), Some("2"));
    }
    if let Some(ot) = forwarded.get("ot") {
        assert_rv_well_formed(ot);
        sub_values(ot);
    }
});
