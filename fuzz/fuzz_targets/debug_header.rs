//! The debug header, from the header value to the sampler's decision.
//!
//! 1. `DebugRequest::from_header_value` on any header value: it keeps exactly the bounded,
//!    printable values, byte for byte, and never shows them in `Debug` output.
//! 2. The HMAC check (feature `debug-hmac`) through `CustomSampler`, configured with a
//!    secret, at a root: the input's first byte picks a mode, the next 16 bytes the trace id,
//!    the next 4 the token's age. Mode "raw": the rest of the input is the token; whatever it
//!    is, it forces sampling only if it is the token `debug_token_for` mints for its own
//!    time (no forgery), and only while that time is fresh. Mode "minted": the sampler's
//!    own token for that age, with at most one byte replaced (position and byte from the
//!    input); it forces sampling exactly when the token is fresh and the replacement, if
//!    any, only changed the case of a signature digit.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use meshtrace::sampler::{
    CustomSampler, DEBUG_TOKEN_CLOCK_SKEW_SECS, DebugConfig, DebugRequest, MAX_DEBUG_PER_SECOND,
    SamplingConfig, debug_token_for,
};
use opentelemetry::Context;
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest debug token accepted (`sampler::MAX_DEBUG_TOKEN_LEN`).
const MAX_LEN: usize = 256;
const SECRET: &str = "a-fuzzing-secret-of-32-bytes-ok!";
const MAX_AGE_SECS: u64 = 300;

/// The sampler's clock, in seconds since the Unix epoch. Each input moves it one second on,
/// so the debug rate limit always has room and only the token decides.
static NOW: AtomicU64 = AtomicU64::new(1_700_000_000);

fn sampler() -> &'static CustomSampler {
    static SAMPLER: OnceLock<CustomSampler> = OnceLock::new();
    SAMPLER.get_or_init(|| {
        let config = SamplingConfig::default().base_rate(0.0).debug(
            DebugConfig::default()
                .hmac_secret(SECRET)
                .max_age_secs(MAX_AGE_SECS)
                .max_per_second(MAX_DEBUG_PER_SECOND),
        );
        CustomSampler::with_clock(config, || Duration::from_secs(NOW.load(Ordering::Relaxed)))
            .expect("a valid sampling configuration")
    })
}

/// Whether the sampler keeps a root span of `trace_id` whose request carries `token`
/// (base rate 0: only a debug token can keep it).
fn forces_sampling(token: &[u8], trace_id: TraceId) -> bool {
    let Some(request) = HeaderValue::from_bytes(token)
        .ok()
        .and_then(|v| DebugRequest::from_header_value(&v))
    else {
        return false;
    };
    let cx = Context::new().with_value(request);
    let result = sampler().should_sample(Some(&cx), trace_id, "GET /", &SpanKind::Server, &[], &[]);
    result.decision == SamplingDecision::RecordAndSample
}

fn fresh(minted: u64, now: u64) -> bool {
    minted <= now + DEBUG_TOKEN_CLOCK_SKEW_SECS && now.saturating_sub(minted) <= MAX_AGE_SECS
}

fn header_value(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let acceptable =
        (1..=MAX_LEN).contains(&data.len()) && data.iter().all(|b| (0x21..=0x7e).contains(b));
    match DebugRequest::from_header_value(&value) {
        Some(request) => {
            assert!(acceptable);
            assert_eq!(request.as_bytes(), data);
            assert_eq!(
                format!("{request:?}"),
                format!("DebugRequest(<{} bytes redacted>)", data.len())
            );
        }
        None => assert!(!acceptable),
    }
}

fn hmac(data: &[u8]) {
    let Some((&[mode], rest)) = data.split_first_chunk::<1>() else {
        return;
    };
    let Some((trace_id, rest)) = rest.split_first_chunk::<16>() else {
        return;
    };
    let Some((age, rest)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let trace_id = TraceId::from_bytes(*trace_id);
    if trace_id == TraceId::INVALID {
        return;
    }
    let now = NOW.fetch_add(1, Ordering::Relaxed) + 1;
    // Ages from 64 s in the future to about 2.3 days in the past: both sides of the window.
    let minted = (now + 64).saturating_sub(u64::from(u32::from_le_bytes(*age) % 200_000));

    if mode % 2 == 0 {
        let accepted = forces_sampling(rest, trace_id);
        if accepted {
            // Only the token minted with the secret, for this trace id, at a fresh time.
            let text = std::str::from_utf8(rest).expect("an accepted token is ASCII");
            let (time, _) = text.split_once('.').expect("an accepted token has a dot");
            let time: u64 = time
                .parse()
                .expect("an accepted token starts with the time");
            assert!(
                fresh(time, now),
                "a stale token {text} was accepted at {now}"
            );
            let expected = debug_token_for(SECRET.as_bytes(), trace_id, time);
            assert!(
                text.eq_ignore_ascii_case(&expected),
                "{text} was accepted for {trace_id}; the token is {expected}"
            );
        }
        return;
    }

    let token = debug_token_for(SECRET.as_bytes(), trace_id, minted);
    let mut changed = token.clone().into_bytes();
    let mut same_mac = true;
    if let [position, byte, ..] = rest {
        let position = usize::from(*position) % changed.len();
        let dot = token.find('.').expect("a minted token has a dot");
        let before = changed[position];
        changed[position] = *byte;
        same_mac = before == *byte || (position > dot && before.eq_ignore_ascii_case(byte));
    }
    let expected = same_mac && fresh(minted, now);
    assert_eq!(
        forces_sampling(&changed, trace_id),
        expected,
        "token {:?} (minted {token}) at {now}",
        String::from_utf8_lossy(&changed)
    );
}

fuzz_target!(|data: &[u8]| {
    header_value(data);
    hmac(data);
});
