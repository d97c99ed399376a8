//! Helpers shared by the fuzz targets: turning the fuzzer's bytes into header values and
//! header sets, and the one place where the server layer and the sampler are set up.

use http::{HeaderMap, HeaderName, HeaderValue};
use meshtrace::server::TracingLayer;
use meshtrace::{CustomSampler, SamplingConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;

/// Most header values a target builds from one input (a real request has a few dozen).
pub const MAX_VALUES: usize = 64;

/// Splits the input at `\n` into at most [`MAX_VALUES`] values (the last one takes the rest),
/// so one input can stand for a repeated header.
pub fn split_values(data: &[u8]) -> Vec<&[u8]> {
    data.splitn(MAX_VALUES, |&b| b == b'\n').collect()
}

/// Strips leading and trailing spaces and tabs (RFC 9110 OWS).
pub fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Header names a client controls that meshtrace reads, and a few it must leave alone.
pub const NAMES: [&str; 15] = [
    "traceparent",
    "tracestate",
    "baggage",
    "x-correlation-id",
    "x-request-id",
    "x-debug-trace",
    "host",
    "user-agent",
    "authorization",
    "cookie",
    "x-forwarded-for",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// A header set from the input: one header per line; the line's first byte picks a name from
/// [`NAMES`], or (when it is past the table) the line is `name:value` with a name of its own.
/// Values that `http` refuses (CR, LF, NUL, ...) are skipped, as a server never sees them.
pub fn header_set(lines: &[&[u8]]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines {
        let Some((&selector, rest)) = line.split_first() else {
            continue;
        };
        let (name, value) = match NAMES.get(usize::from(selector) % (NAMES.len() + 1)) {
            Some(name) => (HeaderName::from_static(name), rest),
            None => {
                let Some(colon) = rest.iter().position(|&b| b == b':') else {
                    continue;
                };
                let Ok(name) = HeaderName::from_bytes(&rest[..colon]) else {
                    continue;
                };
                (name, &rest[colon + 1..])
            }
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(name, value);
        }
    }
    map
}

/// meshtrace's sampler with its default configuration.
pub fn sampler() -> CustomSampler {
    CustomSampler::new(SamplingConfig::default()).expect("the default sampling config is valid")
}

/// The server layer under test, reporting to an SDK provider with meshtrace's sampler and no
/// exporter (spans are built, sampled, ended and dropped, so memory stays flat).
///
pub fn server_layer() -> TracingLayer {
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
    let provider =
        PROVIDER.get_or_init(|| SdkTracerProvider::builder().with_sampler(sampler()).build());
    TracingLayer::new().tracer_provider(provider)
}
