//! Decision cost of `CustomSampler` against the SDK's `TraceIdRatioBased` and
//! `ParentBased`, called directly through `ShouldSample` (no span creation).
//!
//! `cargo bench --all-features --bench sampler -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use meshtrace::sampler::{CustomSampler, RuleSpanKind, SamplingConfig, SamplingRule};
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

fn bench<S: ShouldSample>(
    c: &mut Criterion,
    name: &str,
    sampler: &S,
    parents: &[Context],
    ids: &[TraceId],
) {
    let attributes = server_attributes();
    let mut i = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            let parent = &parents[i % parents.len()];
            black_box(sampler.should_sample(
                Some(black_box(parent)),
                black_box(ids[i]),
                "GET /orders/{id}",
                &SpanKind::Server,
                &attributes,
                &[],
            ))
        })
    });
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
    // Issue 10's target (< 100 ns): a span that is kept after walking the ten rules
    // (none matches `GET /orders/{id}`; the base rate 1.0 keeps it).
    let ten_rules_kept = CustomSampler::new(ten_rules().base_rate(1.0)).unwrap();
    bench(
        c,
        "ours/b_root_10_rules_kept",
        &ten_rules_kept,
        &roots,
        &ids,
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
    bench(
        c,
        "sdk/parent_based_remote_sampled_parent",
        &parent_based,
        &remote,
        &ids,
    );
    bench(c, "sdk/parent_based_root", &parent_based, &roots, &ids);
}

criterion_group!(sampler, benches);
criterion_main!(sampler);
