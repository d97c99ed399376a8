//! Per-request time of the server tracing setups, side by side, in one run.
//!
//! Every case drives the same axum `Router` in-process (`oneshot` on a clone, no sockets)
//! with `GET /users/42` on the route `/users/{id}`, with a sampled, unsampled or absent
//! `traceparent` and (unless the case says `no_baggage`) `baggage: userId=alice,tenant=acme`;
//! the response body is drained inside the timed region, requests are built before it.
//! Spans go through the real SDK and its `BatchSpanProcessor` into an exporter that counts
//! and discards; the counts are printed after each case (`spans: ...`).
//!
//! The cases are those of `benches/common` (shared with the instruction counts of
//! `scripts/callgrind.sh`): the bare Router, tower-http's `TraceLayer`,
//! opentelemetry-instrumentation-tower (tracing only), axum-tracing-opentelemetry's
//! `OtelAxumLayer`, meshtrace as the README recommends (`TracingManager` with logs on,
//! text and JSON, and `server_layer()`) and hand-built, the SDK's own W3C extract of
//! the same headers, and what deferred capture costs (`deferred/*`: off, on with a request
//! that succeeds, on with one that fails, and sampled at the head), and the trace pages
//! mounted (`meshtrace/text/{sampled,unsampled}/pages`, beside the same cases without them).
//! Each case runs under its own `tracing` subscriber (`with_default`).
//!
//! `scripts/bench.sh` runs it with the other benches and prints one table.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use common::{cases, runtime};
use criterion::{Criterion, criterion_group, criterion_main};

fn server(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("server");
    for case in cases() {
        let built = case.setup.build();
        let before = built.exported().map_or(0, |(n, _)| n);
        let requests = AtomicU64::new(0);
        let mut body = || {
            group.bench_function(case.name.as_str(), |b| {
                b.iter_custom(|iters| {
                    requests.fetch_add(iters, Ordering::Relaxed);
                    let batch: Vec<_> = (0..iters).map(|_| case.headers.request()).collect();
                    rt.block_on(async {
                        let start = Instant::now();
                        built.drive(batch).await;
                        start.elapsed()
                    })
                })
            });
        };
        match &built.dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, body),
            None => body(),
        }
        if let Some((exported, dropped)) = built.exported() {
            let dropped = dropped.map_or(String::new(), |d| format!(", {d} dropped (queue full)"));
            println!(
                "spans: {}: {} requests, {} spans exported{dropped}",
                case.name,
                requests.load(Ordering::Relaxed),
                exported - before,
            );
        }
        if let Some(d) = built.deferred().filter(|d| d.buffered_traces > 0) {
            println!(
                "deferred: {}: {} traces buffered, {} kept (error), {} discarded, {} refused \
                 (buffer full)",
                case.name, d.buffered_traces, d.kept_error, d.discarded, d.dropped_traces_full
            );
        }
        built.shutdown();
    }
    group.finish();
}

criterion_group!(benches, server);
criterion_main!(benches);
