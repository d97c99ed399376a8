//! Decision cost of `CustomSampler` against the SDK's `TraceIdRatioBased` and
//! `ParentBased`, called directly through `ShouldSample` (no span creation).
//!
//! `cargo bench --bench sampler -- --warm-up-time 1 --measurement-time 3`
//!
//! Two clocks: the `wall/` group is criterion's usual wall-clock median of a decision and
//! the drop of its result; the `cpu/` group measures the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), so that time the thread spends descheduled on a busy machine
//! is not counted, of the decision alone: results are dropped outside the timed region, as
//! the SDK keeps them in the span (its tracestate and `sampling.reason`) until the span
//! ends. The target (a kept decision with 10 rules under 100 ns) is
//! `cpu/ours/root_10_rules_kept`.
//!
//! `limits/`: the root decision with rate limits and adaptation on (a global target, a
//! per-key target and a per-key lower bound, key = route) over 10 and 100,000 keys, the same
//! decisions in the same run as the plain decision (`ours/c_root_no_rules`) and the SDK's
//! `TraceIdRatioBased` (`sdk/trace_id_ratio_root`); `limits/10_keys_2_threads` runs the
//! 10-key case on two threads at once (time per decision of each thread: equal to the
//! one-thread figure when the two do not contend).
//! `cargo bench --bench sampler -- 'limits/|c_root_no_rules$|trace_id_ratio_root'`

use std::hint::black_box;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use meshtrace::sampler::{CustomSampler, LimitsConfig, RuleSpanKind, SamplingConfig, SamplingRule};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, ShouldSample};
use opentelemetry_semantic_conventions::attribute::{HTTP_REQUEST_METHOD, HTTP_ROUTE, URL_PATH};

/// 1024 fixed pseudo-random trace ids, so about half of the decisions keep.
fn trace_ids() -> Vec<TraceId> {
    let mut state = 0x5eed_u64;
    (0..1024)
        .map(|_| {
            let mut next = || {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            };
            TraceId::from((u128::from(next()) << 64) | u128::from(next()))
        })
        .collect()
}

fn server_attributes() -> Vec<KeyValue> {
    vec![
        KeyValue::new(HTTP_REQUEST_METHOD, "GET"),
        KeyValue::new(HTTP_ROUTE, "/orders/{id}"),
        KeyValue::new(URL_PATH, "/orders/42"),
    ]
}

/// Ten realistic rules, none of which matches `GET /orders/{id}`: the worst case
/// walks all of them.
fn ten_rules() -> SamplingConfig {
    SamplingConfig::default()
        .base_rate(0.5)
        .rule(
            SamplingRule::new("health", 0.0)
                .route("/health")
                .priority(100),
        )
        .rule(
            SamplingRule::new("ready", 0.0)
                .route("/ready*")
                .priority(100),
        )
        .rule(SamplingRule::new("metrics", 0.0).route("/metrics"))
        .rule(SamplingRule::new("admin", 1.0).route("/admin/**"))
        .rule(
            SamplingRule::new("orders-post", 1.0)
                .route("/orders")
                .method("POST"),
        )
        .rule(
            SamplingRule::new("orders-delete", 1.0)
                .route("/orders/{id}")
                .method("DELETE"),
        )
        .rule(SamplingRule::new("users", 0.2).route("/users/*/posts"))
        .rule(SamplingRule::new("v1", 0.1).route("/{v1,v2}/**"))
        .rule(SamplingRule::new("clients", 0.3).kind(RuleSpanKind::Client))
        .rule(SamplingRule::new("tenant", 1.0).attribute("tenant", "acme"))
        .high_value("/checkout", "POST")
}

fn remote_sampled_parent(trace_id: TraceId) -> Context {
    let state: TraceState = "ot=th:0".parse().expect("valid tracestate");
    Context::new().with_remote_span_context(SpanContext::new(
        trace_id,
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        TraceFlags::SAMPLED,
        true,
        state,
    ))
}

/// CPU time of this thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant of the platform.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn bench<S: ShouldSample>(
    c: &mut Criterion,
    name: &str,
    sampler: &S,
    parents: &[Context],
    ids: &[TraceId],
) {
    bench_with(c, name, sampler, parents, ids, &server_attributes());
}

fn bench_with<S: ShouldSample>(
    c: &mut Criterion,
    name: &str,
    sampler: &S,
    parents: &[Context],
    ids: &[TraceId],
    attributes: &[KeyValue],
) {
    let decide = |i: usize| {
        let parent = &parents[i % parents.len()];
        black_box(sampler.should_sample(
            Some(black_box(parent)),
            black_box(ids[i]),
            "GET /orders/{id}",
            &SpanKind::Server,
            attributes,
            &[],
        ))
    };
    let mut i = 0usize;
    c.bench_function(&format!("wall/{name}"), |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            decide(i)
        })
    });
    c.bench_function(&format!("cpu/{name}"), |b| {
        let mut results = Vec::with_capacity(1024);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(1024);
                let start = thread_cpu_time();
                for n in 0..chunk {
                    results.push(decide(n as usize));
                }
                total += thread_cpu_time() - start;
                results.clear();
                left -= chunk;
            }
            total
        })
    });
}

/// Returns what a kept decision must return, and decides nothing.
#[derive(Clone, Debug)]
struct KeptResultOnly {
    state: TraceState,
}

impl ShouldSample for KeptResultOnly {
    fn should_sample(
        &self,
        _: Option<&Context>,
        _: TraceId,
        _: &str,
        _: &SpanKind,
        _: &[KeyValue],
        _: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        opentelemetry_sdk::trace::SamplingResult {
            decision: opentelemetry_sdk::trace::SamplingDecision::RecordAndSample,
            attributes: vec![KeyValue::new("sampling.reason", "base")],
            trace_state: self.state.clone(),
        }
    }
}

/// A sampler with every limit on; its targets are far below the offered load, so most
/// decisions are dropped by the limits (the path that must not allocate).
fn limited(max_keys: usize) -> CustomSampler {
    CustomSampler::new(
        SamplingConfig::default().base_rate(1.0).limits(
            LimitsConfig::default()
                .traces_per_second(100.0)
                .per_key_traces_per_second(10.0)
                .lower_bound_traces_per_second(1.0 / 60.0)
                .max_keys(max_keys)
                .adaptation_time_secs(1.0),
        ),
    )
    .expect("valid limits")
}

fn key_attributes(n: usize) -> Vec<Vec<KeyValue>> {
    (0..n)
        .map(|i| {
            vec![
                KeyValue::new(HTTP_REQUEST_METHOD, "GET"),
                KeyValue::new(HTTP_ROUTE, format!("/tenant/{i}/orders/{{id}}")),
                KeyValue::new(URL_PATH, format!("/tenant/{i}/orders/42")),
            ]
        })
        .collect()
}

/// Decisions cycling over `keys` (and the 1024 trace ids).
fn bench_keys(c: &mut Criterion, name: &str, sampler: &CustomSampler, keys: &[Vec<KeyValue>]) {
    let ids = trace_ids();
    let root = Context::new();
    let decide = |i: usize| {
        black_box(sampler.should_sample(
            Some(&root),
            ids[i & 1023],
            "GET /orders/{id}",
            &SpanKind::Server,
            &keys[i % keys.len()],
            &[],
        ))
    };
    // Warm up: every key has its place and its estimate before measuring.
    for i in 0..keys.len().max(100_000) {
        decide(i);
    }
    let mut i = 0usize;
    c.bench_function(&format!("wall/{name}"), |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            decide(i)
        })
    });
}

fn bench_two_threads(c: &mut Criterion, name: &str, sampler: &CustomSampler) {
    let keys = key_attributes(10);
    let ids = trace_ids();
    c.bench_function(&format!("wall/{name}"), |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for t in 0..2usize {
                    let (keys, ids) = (&keys, &ids);
                    s.spawn(move || {
                        let root = Context::new();
                        for n in 0..iters as usize {
                            let i = n.wrapping_mul(7919).wrapping_add(t);
                            black_box(sampler.should_sample(
                                Some(&root),
                                ids[i & 1023],
                                "GET /orders/{id}",
                                &SpanKind::Server,
                                &keys[i % keys.len()],
                                &[],
                            ));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
}

fn limits(c: &mut Criterion) {
    let ten = limited(1024);
    bench_keys(c, "limits/10_keys", &ten, &key_attributes(10));
    bench_two_threads(c, "limits/10_keys_2_threads", &ten);
    let many = limited(131_072);
    bench_keys(c, "limits/100k_keys", &many, &key_attributes(100_000));
    // The same key set without limits: what the limits add to the plain decision.
    let plain = CustomSampler::new(SamplingConfig::default().base_rate(0.5)).unwrap();
    bench_keys(c, "limits/off_10_keys", &plain, &key_attributes(10));
}

fn benches(c: &mut Criterion) {
    let ids = trace_ids();
    let roots = vec![Context::new()];
    let remote: Vec<Context> = ids.iter().map(|id| remote_sampled_parent(*id)).collect();

    let ours_no_rules = CustomSampler::new(SamplingConfig::default().base_rate(0.5)).unwrap();
    let ours_ten_rules = CustomSampler::new(ten_rules()).unwrap();
    let ratio = Sampler::TraceIdRatioBased(0.5);
    let parent_based = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.5)));

    bench(
        c,
        "ours/a_remote_sampled_parent",
        &ours_no_rules,
        &remote,
        &ids,
    );
    bench(c, "ours/b_root_10_rules", &ours_ten_rules, &roots, &ids);
    // The two targets: every decision kept (no rule matches, base 1.0; then the 10th
    // rule matching), every decision dropped.
    let ten_kept = CustomSampler::new(ten_rules().base_rate(1.0)).unwrap();
    let ten_dropped = CustomSampler::new(ten_rules().base_rate(0.0)).unwrap();
    bench(c, "ours/root_10_rules_kept", &ten_kept, &roots, &ids);
    bench(c, "ours/root_10_rules_dropped", &ten_dropped, &roots, &ids);
    let mut tenant = server_attributes();
    tenant.push(KeyValue::new("tenant", "acme"));
    bench_with(
        c,
        "ours/root_10_rules_last_matches_kept",
        &ten_dropped,
        &roots,
        &ids,
        &tenant,
    );
    bench(c, "ours/c_root_no_rules", &ours_no_rules, &roots, &ids);
    // The two halves of (c): every root dropped (the no-allocation path) or kept.
    let drop_all = CustomSampler::new(SamplingConfig::default().base_rate(0.0)).unwrap();
    let keep_all = CustomSampler::new(SamplingConfig::default().base_rate(1.0)).unwrap();
    bench(
        c,
        "ours/c_root_no_rules_all_dropped",
        &drop_all,
        &roots,
        &ids,
    );
    bench(c, "ours/c_root_no_rules_all_kept", &keep_all, &roots, &ids);
    bench(c, "sdk/trace_id_ratio_root", &ratio, &roots, &ids);
    // The floor of every kept decision that reports `sampling.reason` and `ot=th`: the
    // result the SDK's API makes a sampler return (a `Vec` of one attribute and an owned
    // copy of the one-member tracestate: four allocations), built from prepared parts.
    let floor = KeptResultOnly {
        state: "ot=th:0".parse().expect("valid tracestate"),
    };
    bench(c, "floor/kept_result_allocations", &floor, &roots, &ids);
    bench(
        c,
        "sdk/parent_based_remote_sampled_parent",
        &parent_based,
        &remote,
        &ids,
    );
    bench(c, "sdk/parent_based_root", &parent_based, &roots, &ids);
}

criterion_group!(sampler, benches, limits);
criterion_main!(sampler);
