//! W3C propagation: meshtrace's `context::extract`/`inject` against the SDK's
//! `TraceContextPropagator` + `BaggagePropagator` composite through opentelemetry-http's
//! `HeaderExtractor`/`HeaderInjector`, on the same headers.

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use std::hint::black_box;

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    headers.insert(
        "tracestate",
        HeaderValue::from_static("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
    );
    headers.insert(
        "baggage",
        HeaderValue::from_static("userId=alice,tenant=acme"),
    );
    headers
}

fn sdk() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

fn propagation(c: &mut Criterion) {
    let headers = headers();
    let sdk = sdk();
    let mut group = c.benchmark_group("propagation");
    group.bench_function("extract/meshtrace", |b| {
        b.iter(|| meshtrace::context::extract(black_box(&headers)))
    });
    group.bench_function("extract/sdk", |b| {
        b.iter(|| sdk.extract(&HeaderExtractor(black_box(&headers))))
    });

    // Both inject the same Context (extracted once by the SDK) into a fresh map, the way
    // a client does per outgoing request.
    let cx = sdk.extract(&HeaderExtractor(&headers));
    group.bench_function("inject/meshtrace", |b| {
        b.iter(|| {
            let mut out = HeaderMap::new();
            meshtrace::context::inject(black_box(&cx), &mut out);
            out
        })
    });
    group.bench_function("inject/sdk", |b| {
        b.iter(|| {
            let mut out = HeaderMap::new();
            sdk.inject_context(black_box(&cx), &mut HeaderInjector(&mut out));
            out
        })
    });
    group.finish();
}

criterion_group!(benches, propagation);
criterion_main!(benches);
