//! CustomSampler through the real SDK (SdkTracerProvider + InMemorySpanExporter),
//! the consistent-probability vectors, configuration files, environment and reload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshtrace::sampler::consistent::{Randomness, Threshold};
use meshtrace::sampler::{
    CustomSampler, DebugConfig, DebugRequest, RuleSpanKind, SamplerHandle, SamplingConfig,
    SamplingRule, UntrustedEdge,
};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use opentelemetry_semantic_conventions::attribute::{HTTP_REQUEST_METHOD, HTTP_ROUTE, URL_PATH};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_in;

// ---------------------------------------------------------------------------
// Harness

struct Harness {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
    handle: SamplerHandle,
}

impl Harness {
    fn new(config: SamplingConfig) -> Self {
        Self::with_sampler(CustomSampler::new(config).expect("valid config"))
    }

    fn with_sampler(sampler: CustomSampler) -> Self {
        let exporter = InMemorySpanExporter::default();
        let handle = sampler.handle();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_simple_exporter(exporter.clone())
            .build();
        Harness {
            provider,
            exporter,
            handle,
        }
    }

    /// Starts and ends a server span for `method route` under `parent`, returning
    /// its span context (sampled or not).
    fn server_span(&self, parent: &Context, method: &str, route: &str) -> SpanContext {
        let tracer = self.provider.tracer("test");
        let mut span = tracer
            .span_builder(format!("{method} {route}"))
            .with_kind(SpanKind::Server)
            .with_attributes(vec![
                KeyValue::new(HTTP_REQUEST_METHOD, method.to_owned()),
                KeyValue::new(HTTP_ROUTE, route.to_owned()),
                KeyValue::new(URL_PATH, route.replace("{id}", "42")),
            ])
            .start_with_context(&tracer, parent);
        let sc = span.span_context().clone();
        span.end();
        sc
    }

    fn finished(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flush");
        self.exporter.get_finished_spans().expect("spans")
    }

    fn only_span(&self) -> SpanData {
        let mut spans = self.finished();
        assert_eq!(spans.len(), 1, "expected one exported span: {spans:#?}");
        spans.remove(0)
    }
}

fn reason(span: &SpanData) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "sampling.reason")
        .map(|kv| kv.value.as_str().into_owned())
}

fn trace_id(low56: u64) -> TraceId {
    // High bytes arbitrary but fixed; the low 56 bits carry the randomness.
    TraceId::from(0x4bf9_2f35_77b3_4da6_0000_0000_0000_0000u128 | u128::from(low56))
}

fn remote_parent(trace_id: TraceId, sampled: bool, tracestate: &str) -> Context {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let state: TraceState = tracestate.parse().expect("valid tracestate");
    Context::new().with_remote_span_context(SpanContext::new(
        trace_id,
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        flags,
        true,
        state,
    ))
}

fn debug_value(token: &str) -> DebugRequest {
    DebugRequest::from_header_value(&http::HeaderValue::from_str(token).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------
// Consistent probability: published vectors

#[test]
fn threshold_encoding_matches_published_vectors() {
    let cases: &[(&str, f64, &str)] = &[
        ("p=1", 1.0, "0"),
        ("p=1/2", 0.5, "8"),
        ("p=1/4", 0.25, "c"),
        ("p=2^-56", 2f64.powi(-56), "ffffffffffffff"),
        ("p=1/3", 1.0 / 3.0, "aaaaaaaaaaaaac"),
        ("p=2/3", 2.0 / 3.0, "55555555555558"),
        ("p=0.1", 0.1, "e6666666666666"),
    ];
    for (name, p, expected) in cases {
        let t = Threshold::from_probability(*p).unwrap();
        assert_eq!(t.encode().as_deref(), Some(*expected), "{name}");
        assert_eq!(Threshold::parse(expected), Some(t), "{name} parses back");
    }
    let tenth = Threshold::from_probability(0.1).unwrap();
    assert_eq!(tenth.encode_with_precision(4).as_deref(), Some("e666"));
    assert_eq!(Threshold::from_probability(0.0), Some(Threshold::NEVER));
    assert_eq!(Threshold::NEVER.encode(), None);
    for bad in [f64::NAN, -0.1, 1.5, f64::INFINITY] {
        assert_eq!(Threshold::from_probability(bad), None, "{bad}");
    }
}

#[test]
fn half_probability_boundaries() {
    let half = Threshold::from_probability(0.5).unwrap();
    let cases: &[(u64, bool)] = &[
        (0x00000000000000, false),
        (0x7fffffffffffff, false),
        (0x80000000000000, true),
        (0xffffffffffffff, true),
    ];
    for (r, kept) in cases {
        let r = Randomness::from_raw(*r).unwrap();
        assert_eq!(half.keeps(r), *kept, "{r:?}");
        // The same through the trace id's low 56 bits.
        assert_eq!(
            half.keeps(Randomness::from_trace_id(trace_id(r.raw()))),
            *kept
        );
    }
}

#[test]
fn threshold_and_rv_parsing() {
    assert_eq!(Threshold::parse("10000000000000"), Threshold::parse("1"));
    assert_eq!(
        Threshold::parse("1").map(Threshold::raw),
        Some(0x10000000000000)
    );
    for bad in ["", "g", "8A", "000000000000000", " 8", "-1"] {
        assert_eq!(Threshold::parse(bad), None, "th {bad:?}");
    }
    assert_eq!(
        Randomness::parse_rv("0123456789abcd").map(Randomness::raw),
        Some(0x0123456789abcd)
    );
    for bad in [
        "",
        "0123456789abc",
        "0123456789abcde",
        "0123456789ABCD",
        "0123456789abcg",
    ] {
        assert_eq!(Randomness::parse_rv(bad), None, "rv {bad:?}");
    }
}

/// SplitMix64: a tiny fixed-seed generator, fast even in debug builds.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn trace_id(&mut self) -> TraceId {
        TraceId::from((u128::from(self.next()) << 64) | u128::from(self.next()))
    }
}

#[test]
fn sampled_fraction_is_within_four_sigma() {
    const N: usize = 1_000_000;
    let mut rng = SplitMix64(0x5eed);
    let randomness: Vec<Randomness> = (0..N)
        .map(|_| Randomness::from_trace_id(rng.trace_id()))
        .collect();
    for p in [0.5, 0.1, 0.01] {
        let t = Threshold::from_probability(p).unwrap();
        let kept = randomness.iter().filter(|r| t.keeps(**r)).count();
        let fraction = kept as f64 / N as f64;
        let tolerance = 4.0 * (p * (1.0 - p) / N as f64).sqrt();
        assert!(
            (fraction - p).abs() <= tolerance,
            "p={p}: kept {fraction}, tolerance {tolerance}"
        );
    }
}

#[test]
fn lower_probability_keeps_a_subset() {
    let mut rng = SplitMix64(42);
    let probabilities = [0.001, 0.01, 0.1, 1.0 / 3.0, 0.5, 0.9, 1.0];
    for _ in 0..100_000 {
        let r = Randomness::from_trace_id(rng.trace_id());
        for pair in probabilities.windows(2) {
            let (low, high) = (
                Threshold::from_probability(pair[0]).unwrap(),
                Threshold::from_probability(pair[1]).unwrap(),
            );
            assert!(!low.keeps(r) || high.keeps(r), "{r:?} at {pair:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Priority levels through real SDK spans

#[test]
fn default_config_samples_roots_with_reason_base_and_th_zero() {
    let h = Harness::new(SamplingConfig::default());
    h.server_span(&Context::new(), "GET", "/orders/{id}");
    let span = h.only_span();
    assert_eq!(reason(&span).as_deref(), Some("base"));
    assert_eq!(span.span_context.trace_state().header(), "ot=th:0");
}

#[test]
fn base_rate_decides_roots_consistently() {
    let h = Harness::new(SamplingConfig::default().base_rate(0.5));
    let tracer = h.provider.tracer("test");
    // Roots get fresh trace ids from the SDK: every decision must agree with the
    // threshold applied to the id's low 56 bits.
    let half = Threshold::from_probability(0.5).unwrap();
    let mut expected_kept = 0;
    for _ in 0..200 {
        let mut span = tracer.start_with_context("root", &Context::new());
        let sc = span.span_context().clone();
        span.end();
        let keep = half.keeps(Randomness::from_trace_id(sc.trace_id()));
        assert_eq!(sc.is_sampled(), keep);
        if keep {
            expected_kept += 1;
            assert_eq!(sc.trace_state().header(), "ot=th:8");
        } else {
            assert_eq!(sc.trace_state().header(), "");
        }
    }
    let spans = h.finished();
    assert_eq!(spans.len(), expected_kept);
    assert!(spans.iter().all(|s| reason(s).as_deref() == Some("base")));
}

#[test]
fn sampled_remote_parent_is_kept_with_its_tracestate() {
    let h = Harness::new(SamplingConfig::default().base_rate(0.0));
    let state = "ot=th:8;rv:ffffffffffffff,vendor=abc";
    h.server_span(&remote_parent(trace_id(1), true, state), "GET", "/x");
    let span = h.only_span();
    // Followed, not decided here: no `sampling.reason`.
    assert_eq!(reason(&span), None);
    assert_eq!(span.span_context.trace_state().header(), state);
    assert_eq!(span.span_context.trace_id(), trace_id(1));
}

#[test]
fn sampled_remote_parent_without_th_gives_no_th() {
    let h = Harness::new(SamplingConfig::default().base_rate(0.0));
    h.server_span(&remote_parent(trace_id(1), true, "vendor=abc"), "GET", "/x");
    let span = h.only_span();
    // Followed, not decided here: no `sampling.reason`.
    assert_eq!(reason(&span), None);
    assert_eq!(span.span_context.trace_state().header(), "vendor=abc");
}

#[test]
fn inconsistent_parent_is_kept_but_loses_th() {
    let h = Harness::new(SamplingConfig::default());
    let cases: &[(&str, u64, &str)] = &[
        // rv below th
        (
            "ot=th:8;rv:00000000000001,v=1",
            0xff_ffff_ffff_ffff,
            "ot=rv:00000000000001,v=1",
        ),
        // trace id randomness below th
        ("ot=th:8,v=1", 0x7f_ffff_ffff_ffff, "v=1"),
        // malformed th
        ("ot=th:XYZ;k:v,v=1", 0xff_ffff_ffff_ffff, "ot=k:v,v=1"),
    ];
    for (state, low, expected) in cases {
        h.exporter.reset();
        h.server_span(&remote_parent(trace_id(*low), true, state), "GET", "/x");
        let span = h.only_span();
        assert_eq!(reason(&span), None, "{state}");
        assert_eq!(
            span.span_context.trace_state().header(),
            *expected,
            "{state}"
        );
    }
}

#[test]
fn unsampled_remote_parent_drops_and_keeps_tracestate() {
    let h = Harness::new(SamplingConfig::default().base_rate(1.0));
    let sc = h.server_span(
        &remote_parent(
            trace_id(u64::MAX >> 8),
            false,
            "vendor=abc,ot=rv:ffffffffffffff",
        ),
        "GET",
        "/x",
    );
    assert!(!sc.is_sampled());
    assert!(h.finished().is_empty());
    assert_eq!(sc.trace_state().header(), "vendor=abc,ot=rv:ffffffffffffff");
}

#[test]
fn local_children_follow_the_parent() {
    let h = Harness::new(SamplingConfig::default().base_rate(0.5));
    let tracer = h.provider.tracer("test");
    let root_cx = remote_parent(trace_id(0xff_ffff_ffff_ffff), true, "ot=th:8");
    let mut server = tracer.start_with_context("server", &root_cx);
    server.end();
    let server_cx = Context::new().with_span(server);
    let mut child = tracer.start_with_context("child", &server_cx);
    child.end();
    let spans = h.finished();
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(reason(span), None, "{}", span.name);
        assert_eq!(span.span_context.trace_state().header(), "ot=th:8");
    }
    // An unsampled local parent drops the child even at base rate 1.
    h.exporter.reset();
    h.handle
        .reload(SamplingConfig::default().base_rate(1.0))
        .unwrap();
    let dropped = remote_parent(trace_id(3), false, "");
    let mut server = tracer.start_with_context("server", &dropped);
    server.end();
    let mut child = tracer.start_with_context("child", &Context::new().with_span(server));
    assert!(!child.span_context().is_sampled());
    child.end();
    assert!(h.finished().is_empty());
}

#[test]
fn untrusted_edge_makes_the_root_decision_again() {
    let h = Harness::new(SamplingConfig::default().base_rate(0.0));
    // Sampled but untrusted: base 0 drops it, and the trace id is kept.
    let cx = remote_parent(trace_id(5), true, "ot=th:0,v=1").with_value(UntrustedEdge);
    let sc = h.server_span(&cx, "GET", "/x");
    assert!(!sc.is_sampled());
    assert_eq!(sc.trace_id(), trace_id(5));
    assert_eq!(sc.trace_state().header(), "v=1");
    assert!(h.finished().is_empty());

    // Unsampled but untrusted at base 0.5: the rv decides (ffff.. is kept although
    // the trace id's low bits are 0), rv is kept and th written.
    h.handle
        .reload(SamplingConfig::default().base_rate(0.5))
        .unwrap();
    let cx = remote_parent(trace_id(0), false, "ot=rv:ffffffffffffff").with_value(UntrustedEdge);
    h.server_span(&cx, "GET", "/x");
    let span = h.only_span();
    assert_eq!(reason(&span).as_deref(), Some("base"));
    assert_eq!(span.span_context.trace_id(), trace_id(0));
    assert_eq!(
        span.span_context.trace_state().header(),
        "ot=th:8;rv:ffffffffffffff"
    );
}

#[test]
fn rules_by_priority_then_high_value_then_base() {
    let config = SamplingConfig::default()
        .base_rate(0.0)
        .rule(SamplingRule::new("orders-low", 1.0).route("/orders/**"))
        .rule(
            SamplingRule::new("orders-get", 1.0)
                .route("/orders/{id}")
                .method("GET")
                .priority(5),
        )
        .rule(
            SamplingRule::new("health", 0.0)
                .route("/health")
                .priority(100),
        )
        .rule(
            SamplingRule::new("clients", 1.0)
                .kind(RuleSpanKind::Client)
                .attribute("server.address", "payments"),
        )
        .high_value("/checkout", "POST")
        .high_value("/health", "GET");
    let h = Harness::new(config);
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("GET", "/orders/{id}", Some("rule:orders-get")),
        ("DELETE", "/orders/{id}", Some("rule:orders-low")),
        ("get", "/orders/{id}", Some("rule:orders-get")),
        ("POST", "/checkout", Some("high_value")),
        ("GET", "/checkout", None),
        ("GET", "/health", None), // the rule (rate 0) wins over the high-value entry
        ("GET", "/other", None),
    ];
    for (method, route, expected) in cases {
        h.exporter.reset();
        let sc = h.server_span(&Context::new(), method, route);
        let spans = h.finished();
        assert_eq!(sc.is_sampled(), expected.is_some(), "{method} {route}");
        assert_eq!(
            spans.first().and_then(reason).as_deref(),
            *expected,
            "{method} {route}"
        );
        if expected.is_some() {
            assert_eq!(sc.trace_state().header(), "ot=th:0", "{method} {route}");
        }
    }

    // Kind and attribute constraints.
    let tracer = h.provider.tracer("test");
    for (address, kind, kept) in [
        ("payments", SpanKind::Client, true),
        ("payments", SpanKind::Internal, false),
        ("billing", SpanKind::Client, false),
    ] {
        h.exporter.reset();
        let mut span = tracer
            .span_builder("GET")
            .with_kind(kind.clone())
            .with_attributes(vec![
                KeyValue::new(HTTP_REQUEST_METHOD, "GET"),
                KeyValue::new("server.address", address),
            ])
            .start_with_context(&tracer, &Context::new());
        assert_eq!(span.span_context().is_sampled(), kept, "{address} {kind:?}");
        span.end();
        if kept {
            assert_eq!(reason(&h.only_span()).as_deref(), Some("rule:clients"));
        }
    }
}

#[test]
fn rule_rates_are_consistent_probabilities() {
    let h = Harness::new(
        SamplingConfig::default()
            .base_rate(1.0)
            .rule(SamplingRule::new("quarter", 0.25).route("/q")),
    );
    let kept = h.server_span(
        &remote_parent(trace_id(0xc0_0000_0000_0000), false, "").with_value(UntrustedEdge),
        "GET",
        "/q",
    );
    assert!(kept.is_sampled());
    assert_eq!(kept.trace_state().header(), "ot=th:c");
    let dropped = h.server_span(
        &remote_parent(trace_id(0xbf_ffff_ffff_ffff), false, "").with_value(UntrustedEdge),
        "GET",
        "/q",
    );
    assert!(!dropped.is_sampled());
}

#[test]
fn dropping_a_span_allocates_nothing() {
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
    let sampler = CustomSampler::new(
        SamplingConfig::default()
            .base_rate(0.0)
            .rule(SamplingRule::new("exact", 1.0).route("/health"))
            .rule(SamplingRule::new("below", 1.0).route("/admin/**"))
            .rule(SamplingRule::new("glob", 1.0).route("/users/*/posts"))
            .rule(SamplingRule::new("regex", 1.0).route("/*/orders/[0-9]*"))
            .rule(SamplingRule::new("alt", 1.0).route("/{v1,v2}/**"))
            .rule(SamplingRule::new("attr", 1.0).attribute("tenant", "acme"))
            .rule(SamplingRule::new("kind", 1.0).kind(RuleSpanKind::Client))
            .high_value("/checkout", "POST")
            .debug(DebugConfig::default().token("t0k3n")),
    )
    .unwrap();
    let attributes = vec![
        KeyValue::new(HTTP_REQUEST_METHOD, "GET"),
        KeyValue::new(HTTP_ROUTE, "/x/orders/{id}"),
        KeyValue::new(URL_PATH, "/x/orders/42"),
    ];
    // The counter sees allocations on this thread.
    assert_eq!(allocations_in(|| std::hint::black_box(vec![1u8])).1, 1);
    let root = Context::new();
    let unsampled_parent = remote_parent(trace_id(9), false, "");
    let wrong_debug = Context::new().with_value(debug_value("wrong"));
    for (name, cx) in [
        ("root", &root),
        ("unsampled remote parent", &unsampled_parent),
        ("invalid debug token", &wrong_debug),
    ] {
        let decide = || {
            sampler.should_sample(
                Some(cx),
                trace_id(1),
                "GET /x/orders/{id}",
                &SpanKind::Server,
                &attributes,
                &[],
            )
        };
        // The first call may set up thread-local state (arc-swap debt slots, the
        // regex cache); only steady-state decisions are measured.
        assert_eq!(decide().decision, SamplingDecision::Drop, "{name}");
        let (drops, allocations) = allocations_in(|| {
            (0..100)
                .filter(|_| decide().decision == SamplingDecision::Drop)
                .count()
        });
        assert_eq!(drops, 100, "{name}");
        assert_eq!(allocations, 0, "{name}");
    }
}

/// The decision path of the benchmark (ten rules, none matching, a high-value operation)
/// and every token check: dropping allocates nothing, whatever token the caller sends.
#[test]
fn dropping_a_span_with_ten_rules_and_any_debug_token_allocates_nothing() {
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
    #[allow(unused_mut)]
    let mut debug = DebugConfig::default()
        .token("allow-listed")
        .max_age_secs(60);
    let id = trace_id(11);
    #[allow(unused_mut)]
    let mut tokens: Vec<(&str, String)> = vec![
        ("wrong allow-listed", "allow-listeD".into()),
        ("garbage", "x.y".into()),
        ("long", "a".repeat(256)),
    ];
    #[cfg(feature = "debug-hmac")]
    {
        use meshtrace::sampler::debug_token_for;
        let secret = "0123456789abcdef-secret";
        debug = debug.hmac_secret(secret);
        tokens.push(("expired", debug_token_for(secret.as_bytes(), id, NOW - 61)));
        tokens.push(("future", debug_token_for(secret.as_bytes(), id, NOW + 3600)));
        tokens.push(("forged", debug_token_for(b"not-the-secret-at-all", id, NOW)));
    }
    let mut config = SamplingConfig::default()
        .base_rate(0.0)
        .high_value("/checkout", "POST")
        .debug(debug);
    for i in 0..10 {
        config = config.rule(SamplingRule::new(format!("r{i}"), 1.0).route(format!("/r{i}/**")));
    }
    let (nanos, clock) = manual_clock();
    nanos.store(1_700_000_000 * 1_000_000_000, Ordering::SeqCst);
    let sampler = CustomSampler::with_clock(config, clock).unwrap();
    let attributes = vec![
        KeyValue::new(HTTP_REQUEST_METHOD, "GET"),
        KeyValue::new(HTTP_ROUTE, "/orders/{id}"),
    ];
    for (name, token) in tokens {
        let cx = remote_parent(id, false, "").with_value(debug_value(&token));
        let decide =
            || sampler.should_sample(Some(&cx), id, "GET", &SpanKind::Server, &attributes, &[]);
        assert_eq!(decide().decision, SamplingDecision::Drop, "{name}");
        let (_, allocations) = allocations_in(|| {
            for _ in 0..100 {
                std::hint::black_box(decide());
            }
        });
        assert_eq!(allocations, 0, "{name}");
    }
}

// ---------------------------------------------------------------------------
// Debug

fn manual_clock() -> (
    Arc<AtomicU64>,
    impl Fn() -> Duration + Send + Sync + 'static,
) {
    let nanos = Arc::new(AtomicU64::new(0));
    let reader = Arc::clone(&nanos);
    (nanos, move || {
        Duration::from_nanos(reader.load(Ordering::SeqCst))
    })
}

#[test]
fn allow_listed_debug_token_forces_sampling_without_th() {
    let h = Harness::new(
        SamplingConfig::default()
            .base_rate(0.0)
            .debug(DebugConfig::default().token("let-me-debug")),
    );
    // Root entry.
    let cx = Context::new().with_value(debug_value("let-me-debug"));
    h.server_span(&cx, "GET", "/x");
    assert_eq!(reason(&h.only_span()).as_deref(), Some("debug"));
    // Remote parent that was unsampled with a th: forced, th removed, rest kept.
    h.exporter.reset();
    let cx = remote_parent(trace_id(1), false, "ot=th:8;rv:00000000000001,v=1")
        .with_value(debug_value("let-me-debug"));
    h.server_span(&cx, "GET", "/x");
    let span = h.only_span();
    assert_eq!(reason(&span).as_deref(), Some("debug"));
    assert_eq!(
        span.span_context.trace_state().header(),
        "ot=rv:00000000000001,v=1"
    );
    // Wrong tokens have no effect.
    for wrong in ["let-me-debuG", "let-me-debug2", "x"] {
        h.exporter.reset();
        let cx = Context::new().with_value(debug_value(wrong));
        assert!(!h.server_span(&cx, "GET", "/x").is_sampled(), "{wrong}");
        assert!(h.finished().is_empty());
    }
}

/// 2023-11-14T22:13:20Z, the fixed "now" of the HMAC tests.
#[cfg(feature = "debug-hmac")]
const NOW: u64 = 1_700_000_000;

#[cfg(feature = "debug-hmac")]
fn hmac_harness(secret: &str, max_age_secs: u64) -> (Arc<AtomicU64>, Harness) {
    let (nanos, clock) = manual_clock();
    nanos.store(NOW * 1_000_000_000, Ordering::SeqCst);
    let sampler = CustomSampler::with_clock(
        SamplingConfig::default().base_rate(0.0).debug(
            DebugConfig::default()
                .hmac_secret(secret)
                .max_age_secs(max_age_secs),
        ),
        clock,
    )
    .unwrap();
    (nanos, Harness::with_sampler(sampler))
}

#[cfg(feature = "debug-hmac")]
#[test]
fn hmac_debug_token_is_bound_to_the_trace_id_and_expires() {
    use meshtrace::sampler::{DEBUG_TOKEN_CLOCK_SKEW_SECS, debug_token_for};
    let secret = "0123456789abcdef-secret";
    let (_clock, h) = hmac_harness(secret, 300);
    let id = trace_id(7);
    let token = debug_token_for(secret.as_bytes(), id, NOW);
    assert_eq!(token.len(), "1700000000.".len() + 64);
    let sampled = |token: &str, tid: TraceId| {
        let cx = remote_parent(tid, false, "").with_value(debug_value(token));
        h.server_span(&cx, "GET", "/x").is_sampled()
    };
    assert!(sampled(&token, id));
    assert_eq!(reason(&h.only_span()).as_deref(), Some("debug"));
    // Upper-case hex of the same MAC is the same token.
    assert!(sampled(&token.to_uppercase(), id));

    let mac_of = |t: &str| t.split_once('.').unwrap().1.to_owned();
    let skew = DEBUG_TOKEN_CLOCK_SKEW_SECS;
    let cases: Vec<(&str, String, TraceId, bool)> = vec![
        (
            "minted 300 s ago",
            debug_token_for(secret.as_bytes(), id, NOW - 300),
            id,
            true,
        ),
        (
            "minted 301 s ago",
            debug_token_for(secret.as_bytes(), id, NOW - 301),
            id,
            false,
        ),
        (
            "minted within the skew",
            debug_token_for(secret.as_bytes(), id, NOW + skew),
            id,
            true,
        ),
        (
            "minted beyond the skew",
            debug_token_for(secret.as_bytes(), id, NOW + skew + 1),
            id,
            false,
        ),
        ("another trace id", token.clone(), trace_id(8), false),
        (
            "another secret",
            debug_token_for(b"another-secret-of-16+", id, NOW),
            id,
            false,
        ),
        // The time is signed: a fresh time on an old MAC does not verify.
        (
            "time rewritten",
            format!(
                "{NOW}.{}",
                mac_of(&debug_token_for(secret.as_bytes(), id, NOW - 1000))
            ),
            id,
            false,
        ),
        ("the old untimed form", mac_of(&token), id, false),
        ("truncated", token[..token.len() - 1].to_owned(), id, false),
        (
            "not hex",
            format!("{}zz", &token[..token.len() - 2]),
            id,
            false,
        ),
        ("no time", format!(".{}", mac_of(&token)), id, false),
        (
            "signed time",
            format!("+{NOW}.{}", mac_of(&token)),
            id,
            false,
        ),
        (
            "time overflows u64",
            format!("99999999999999999999999.{}", mac_of(&token)),
            id,
            false,
        ),
        ("two dots", format!("{NOW}..{}", mac_of(&token)), id, false),
    ];
    for (name, token, tid, expected) in cases {
        assert_eq!(sampled(&token, tid), expected, "{name}: {token}");
    }
}

/// The README's openssl recipe and `debug_token_for` mint the same token:
/// `ts=1700000000; echo "$ts.$(printf '%s.%s' "$TRACE_ID" "$ts" | openssl dgst -sha256
/// -hmac "$SECRET" -r | cut -d' ' -f1)"` printed this value.
#[cfg(feature = "debug-hmac")]
#[test]
fn debug_token_for_matches_the_openssl_recipe() {
    let id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    assert_eq!(
        meshtrace::sampler::debug_token_for(b"a-debug-secret-of-32-bytes-long!", id, 1_700_000_000),
        "1700000000.96ab2e3b8e87a0d7e4d78032c00671e6e3dd435e90559f4eb7d2956476955040"
    );
}

#[cfg(feature = "debug-hmac")]
#[test]
fn an_hmac_token_is_accepted_until_max_age_then_never_again() {
    use meshtrace::sampler::debug_token_for;
    let secret = "0123456789abcdef-secret";
    let (clock, h) = hmac_harness(secret, 60);
    let id = trace_id(3);
    let token = debug_token_for(secret.as_bytes(), id, NOW);
    let at = |secs: u64| {
        clock.store(secs * 1_000_000_000, Ordering::SeqCst);
        let cx = remote_parent(id, false, "").with_value(debug_value(&token));
        h.server_span(&cx, "GET", "/x").is_sampled()
    };
    assert!(at(NOW));
    assert!(at(NOW + 60));
    assert!(!at(NOW + 61), "replayed after max_age");
    assert!(!at(NOW + 86_400));
    // The limit is the configured one: reloading a longer age accepts it again.
    h.handle
        .reload(
            SamplingConfig::default().base_rate(0.0).debug(
                DebugConfig::default()
                    .hmac_secret(secret)
                    .max_age_secs(3600),
            ),
        )
        .unwrap();
    assert!(at(NOW + 61));
}

#[cfg(not(feature = "debug-hmac"))]
#[test]
fn an_hmac_secret_without_the_feature_is_an_error_naming_it() {
    let error = CustomSampler::new(
        SamplingConfig::default().debug(DebugConfig::default().hmac_secret("0123456789abcdef")),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            meshtrace::Error::MissingFeature {
                feature: "debug-hmac",
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains("sampling.debug.hmac_secret"), "{message}");
    assert!(!message.contains("0123456789abcdef"), "{message}");
}

#[test]
fn debug_rate_limit_per_instance_with_controlled_clock() {
    let (nanos, clock) = manual_clock();
    let sampler = CustomSampler::with_clock(
        SamplingConfig::default()
            .base_rate(0.0)
            .debug(DebugConfig::default().token("t0k3n").max_per_second(2)),
        clock,
    )
    .unwrap();
    let h = Harness::with_sampler(sampler);
    let debug_cx = || Context::new().with_value(debug_value("t0k3n"));
    let sampled_now = |n: usize| -> usize {
        (0..n)
            .filter(|_| h.server_span(&debug_cx(), "GET", "/x").is_sampled())
            .count()
    };
    nanos.store(1_000_000_000, Ordering::SeqCst);
    assert_eq!(sampled_now(5), 2);
    nanos.store(1_400_000_000, Ordering::SeqCst);
    assert_eq!(sampled_now(5), 0);
    nanos.store(1_500_000_000, Ordering::SeqCst);
    assert_eq!(sampled_now(5), 1);
    nanos.store(5_000_000_000, Ordering::SeqCst);
    assert_eq!(sampled_now(5), 2);
    // Invalid tokens never consumed budget: 5 spans exported in total.
    assert_eq!(h.finished().len(), 5);
}

#[test]
fn local_children_of_a_debug_trace_do_not_consume_the_limit() {
    let (nanos, clock) = manual_clock();
    nanos.store(1, Ordering::SeqCst);
    let sampler = CustomSampler::with_clock(
        SamplingConfig::default()
            .base_rate(0.0)
            .debug(DebugConfig::default().token("t0k3n").max_per_second(2)),
        clock,
    )
    .unwrap();
    let h = Harness::with_sampler(sampler);
    let tracer = h.provider.tracer("test");
    let cx = Context::new().with_value(debug_value("t0k3n"));
    let mut server = tracer.start_with_context("server", &cx);
    server.end();
    // The child context still carries the DebugRequest value.
    let server_cx = cx.with_span(server);
    assert!(server_cx.get::<DebugRequest>().is_some());
    for _ in 0..10 {
        let mut child = tracer.start_with_context("child", &server_cx);
        assert!(child.span_context().is_sampled());
        child.end();
    }
    // One debug grant left for the next request.
    assert!(h.server_span(&cx, "GET", "/x").is_sampled());
    assert!(!h.server_span(&cx, "GET", "/x").is_sampled());
    let spans = h.finished();
    let debug = spans
        .iter()
        .filter(|s| reason(s).as_deref() == Some("debug"))
        .count();
    // The children followed their debug parent: no reason of their own.
    let parent = spans.iter().filter(|s| reason(s).is_none()).count();
    assert_eq!((debug, parent), (2, 10));
}

#[test]
fn debug_header_value_is_bounded_visible_ascii() {
    let ok = |v: &[u8]| {
        http::HeaderValue::from_bytes(v)
            .ok()
            .and_then(|v| DebugRequest::from_header_value(&v))
            .is_some()
    };
    assert!(ok(b"token"));
    assert!(ok(&[b'a'; 256]));
    assert!(!ok(&[b'a'; 257]));
    assert!(!ok(b""));
    assert!(!ok(b"has space"));
    assert!(!ok(b"tab\there"));
    assert!(!ok(&[0x80, 0x81]));
    assert!(!ok("caf\u{e9}".as_bytes()));
    // Debug output never shows the token.
    let shown = format!("{:?}", debug_value("super-secret"));
    assert!(!shown.contains("super-secret"), "{shown}");
    let config = DebugConfig::default()
        .token("super-secret")
        .hmac_secret("0123456789abcdef!");
    let shown = format!("{:?}", SamplingConfig::default().debug(config));
    assert!(
        !shown.contains("super-secret") && !shown.contains("0123456789abcdef!"),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------
// Configuration

fn config_error(config: SamplingConfig) -> String {
    match CustomSampler::new(config) {
        Ok(_) => panic!("expected a configuration error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn validation_errors_name_field_and_value() {
    let three_rules = SamplingConfig::default()
        .rule(SamplingRule::new("a", 0.1))
        .rule(SamplingRule::new("b", 0.2))
        .rule(SamplingRule::new("c", 1.5));
    let cases: Vec<(SamplingConfig, &[&str])> = vec![
        (
            three_rules,
            &[
                "sampling.rules[2].rate = \"1.5\" is invalid: it must be between 0.0 and 1.0",
                "rule \"c\"",
            ],
        ),
        (
            SamplingConfig::default().base_rate(f64::NAN),
            &["sampling.base_rate", "NaN"],
        ),
        (
            SamplingConfig::default().base_rate(-0.5),
            &["sampling.base_rate", "-0.5"],
        ),
        (
            SamplingConfig::default().high_value_rate(2.0),
            &["sampling.high_value_rate", "2"],
        ),
        (
            SamplingConfig::default()
                .rule(SamplingRule::new("x", 1.0))
                .rule(SamplingRule::new("x", 1.0)),
            &["sampling.rules[1].name", "must be unique"],
        ),
        (
            SamplingConfig::default().rule(SamplingRule::new("", 1.0)),
            &["sampling.rules[0].name"],
        ),
        (
            SamplingConfig::default().rule(SamplingRule::new("a b", 1.0)),
            &["sampling.rules[0].name", "a b"],
        ),
        (
            SamplingConfig::default().rule(SamplingRule::new("g", 1.0).route("/a/[b")),
            &["sampling.rules[0].route", "/a/[b", "invalid glob"],
        ),
        (
            SamplingConfig::default().rule(SamplingRule::new("m", 1.0).method("GE T")),
            &["sampling.rules[0].method", "GE T"],
        ),
        (
            SamplingConfig::default().rule(SamplingRule::new("f", 1.0).attribute("k", f64::NAN)),
            &["sampling.rules[0].attributes.k"],
        ),
        (
            SamplingConfig::default().high_value("", "POST"),
            &["sampling.high_value[0].route"],
        ),
        (
            SamplingConfig::default().high_value("/x", "PO ST"),
            &["sampling.high_value[0].method"],
        ),
        (
            SamplingConfig::default().debug(DebugConfig::default().hmac_secret("short")),
            if cfg!(feature = "debug-hmac") {
                &["sampling.debug.hmac_secret", "at least 16 bytes"]
            } else {
                &["sampling.debug.hmac_secret", "`debug-hmac` feature"]
            },
        ),
        (
            SamplingConfig::default().debug(DebugConfig::default().max_age_secs(0)),
            &["sampling.debug.max_age_secs = \"0\"", "between 1 and 86400"],
        ),
        (
            SamplingConfig::default().debug(DebugConfig::default().max_age_secs(86_401)),
            &["sampling.debug.max_age_secs = \"86401\""],
        ),
        (
            SamplingConfig::default().debug(DebugConfig::default().token("ok").token("has space")),
            &["sampling.debug.tokens[1]"],
        ),
        (
            SamplingConfig::default().debug(DebugConfig::default().max_per_second(2_000_000)),
            &["sampling.debug.max_per_second", "2000000"],
        ),
    ];
    for (config, needles) in cases {
        let message = config_error(config);
        for needle in needles {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }
    // Secrets never appear in errors.
    let message =
        config_error(SamplingConfig::default().debug(DebugConfig::default().token("secret value")));
    assert!(!message.contains("secret value"), "{message}");
    let message = config_error(
        SamplingConfig::default().debug(DebugConfig::default().hmac_secret("short-secret")),
    );
    assert!(!message.contains("short-secret"), "{message}");
}

#[test]
fn keys_that_moved_out_of_sampling_are_errors_saying_where_they_live() {
    let cases = [
        ("[span_limits]\nmax_attributes_per_span = 64", "top level"),
        (
            "[debug]\nheader = \"x-debug\"",
            "TracingLayer::debug_header",
        ),
    ];
    for (toml, needle) in cases {
        let message = SamplingConfig::from_toml_str(toml).unwrap_err().to_string();
        assert!(message.contains(needle), "{toml}: {message}");
        assert!(message.contains("line"), "{toml}: {message}");
    }
    let json = r#"{"debug": {"header": "x-debug"}}"#;
    let message = SamplingConfig::from_json_str(json).unwrap_err().to_string();
    assert!(message.contains("TracingLayer::debug_header"), "{message}");
}

const TOML: &str = r#"
base_rate = 0.25
high_value_rate = 0.75

[[high_value]]
route = "/checkout"
method = "POST"

[[rules]]
name = "health"
route = "/health*"
rate = 0.0
priority = 10

[[rules]]
name = "orders"
route = "/orders/{id}"
method = "GET"
kind = "server"
rate = 0.5
attributes = { tenant = "acme", shard = 3 }

[debug]
tokens = ["a", "b"]
max_per_second = 3
max_age_secs = 120
"#;

fn expected_file_config() -> SamplingConfig {
    SamplingConfig::default()
        .base_rate(0.25)
        .high_value_rate(0.75)
        .high_value("/checkout", "POST")
        .rule(
            SamplingRule::new("health", 0.0)
                .route("/health*")
                .priority(10),
        )
        .rule(
            SamplingRule::new("orders", 0.5)
                .route("/orders/{id}")
                .method("GET")
                .kind(RuleSpanKind::Server)
                .attribute("tenant", "acme")
                .attribute("shard", 3i64),
        )
        .debug(
            DebugConfig::default()
                .token("a")
                .token("b")
                .max_per_second(3)
                .max_age_secs(120),
        )
}

#[test]
fn toml_json_yaml_parse_to_the_same_config() {
    let expected = expected_file_config();
    assert_eq!(SamplingConfig::from_toml_str(TOML).unwrap(), expected);
    let json = serde_json::to_string(&expected).unwrap();
    assert_eq!(SamplingConfig::from_json_str(&json).unwrap(), expected);
    #[cfg(feature = "yaml")]
    {
        let yaml = serde_yaml_ng::to_string(&expected).unwrap();
        assert_eq!(SamplingConfig::from_yaml_str(&yaml).unwrap(), expected);
    }
    let toml_again = toml::to_string(&expected).unwrap();
    assert_eq!(
        SamplingConfig::from_toml_str(&toml_again).unwrap(),
        expected
    );
    // An empty document is the default configuration.
    assert_eq!(
        SamplingConfig::from_toml_str("").unwrap(),
        SamplingConfig::default()
    );
}

#[test]
fn malformed_or_invalid_documents_are_errors() {
    type Parse = fn(&str) -> Result<SamplingConfig, meshtrace::Error>;
    let cases: &[(&str, Parse, &str)] = &[
        (
            "toml syntax",
            SamplingConfig::from_toml_str,
            "base_rate = = 1",
        ),
        (
            "toml type",
            SamplingConfig::from_toml_str,
            "base_rate = \"high\"",
        ),
        (
            "toml unknown field",
            SamplingConfig::from_toml_str,
            "base_rat = 0.5",
        ),
        (
            "toml rule without rate",
            SamplingConfig::from_toml_str,
            "[[rules]]\nname = \"x\"",
        ),
        (
            "toml invalid value",
            SamplingConfig::from_toml_str,
            "base_rate = 3.0",
        ),
        (
            "toml bad kind",
            SamplingConfig::from_toml_str,
            "[[rules]]\nname = \"x\"\nrate = 1.0\nkind = \"sever\"",
        ),
        (
            "json syntax",
            SamplingConfig::from_json_str,
            "{\"base_rate\": }",
        ),
        (
            "json unknown",
            SamplingConfig::from_json_str,
            "{\"debug\": {\"tokenz\": []}}",
        ),
        (
            "json deep",
            SamplingConfig::from_json_str,
            &"[".repeat(10_000),
        ),
        (
            "json oversized",
            SamplingConfig::from_json_str,
            &format!(
                "{{\"rules\": [{}]}}",
                "{\"name\": \"x\", \"rate\": 1},".repeat(60_000)
            ),
        ),
        (
            "toml deep",
            SamplingConfig::from_toml_str,
            &format!("base_rate = {}", "[".repeat(10_000)),
        ),
        (
            "toml control characters",
            SamplingConfig::from_toml_str,
            "base_rate = \u{0}\u{1b}[31m",
        ),
    ];
    for (name, parse, text) in cases {
        assert!(parse(text).is_err(), "{name} should fail");
    }
    #[cfg(feature = "yaml")]
    {
        let yaml: &[(&str, &str)] = &[
            ("yaml syntax", "base_rate: [1"),
            ("yaml type", "rules: 5"),
            ("yaml invalid", "rules:\n  - name: x\n    rate: 1.5"),
            ("yaml deep", &"[".repeat(10_000)),
            // Billion laughs: aliases expanding exponentially.
            (
                "yaml aliases",
                "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
            ),
        ];
        for (name, text) in yaml {
            assert!(
                SamplingConfig::from_yaml_str(text).is_err(),
                "{name} should fail"
            );
        }
        let message = SamplingConfig::from_yaml_str("rules:\n  - name: x\n    rate: 1.5")
            .unwrap_err()
            .to_string();
        assert!(message.contains("sampling.rules[0].rate"), "{message}");
    }
    let message = SamplingConfig::from_toml_str(&format!("# {}", "x".repeat(2 << 20)))
        .unwrap_err()
        .to_string();
    assert!(message.contains("at most 1048576"), "{message}");
}

#[test]
fn files_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let expected = expected_file_config();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let toml_path = write("s.toml", TOML);
    let json_path = write("s.JSON", &serde_json::to_string(&expected).unwrap());
    #[allow(unused_mut)]
    let mut paths = vec![toml_path, json_path];
    #[cfg(feature = "yaml")]
    paths.push(write(
        "s.YML",
        &serde_yaml_ng::to_string(&expected).unwrap(),
    ));
    #[cfg(not(feature = "yaml"))]
    {
        let yaml = write("s.yaml", "base_rate: 0.5");
        let error = SamplingConfig::from_file(&yaml).unwrap_err();
        assert!(
            matches!(
                error,
                meshtrace::Error::MissingFeature {
                    feature: "yaml",
                    ..
                }
            ),
            "{error}"
        );
    }
    for path in &paths {
        assert_eq!(
            SamplingConfig::from_file(path).unwrap(),
            expected,
            "{path:?}"
        );
    }
    for name in ["s.ini", "s", "s.toml.bak"] {
        let unknown = write(name, "base_rate = 1");
        let message = SamplingConfig::from_file(&unknown).unwrap_err().to_string();
        assert!(
            message.contains("extension") && message.contains(".toml"),
            "{message}"
        );
    }
    assert!(
        SamplingConfig::from_file(dir.path()).is_err(),
        "a directory"
    );
    let not_utf8 = dir.path().join("latin1.toml");
    std::fs::write(&not_utf8, b"base_rate = 0.5 # caf\xe9").unwrap();
    assert!(
        SamplingConfig::from_file(&not_utf8)
            .unwrap_err()
            .to_string()
            .contains("UTF-8")
    );
    assert!(SamplingConfig::from_file(dir.path().join("missing.toml")).is_err());
    let big = write("big.toml", &format!("# {}\n", "x".repeat(2 << 20)));
    assert!(
        SamplingConfig::from_file(&big)
            .unwrap_err()
            .to_string()
            .contains("larger")
    );
    // JSON content in a .toml file is a TOML error naming the file.
    let wrong = write("wrong.toml", "{\"base_rate\": 0.5}");
    let message = SamplingConfig::from_file(&wrong).unwrap_err().to_string();
    assert!(
        message.contains("wrong.toml") && message.contains("TOML"),
        "{message}"
    );
}

#[test]
fn environment_variables() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        SamplingConfig::from_env_with(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    };
    assert_eq!(env(&[]).unwrap(), SamplingConfig::default());
    let c = env(&[
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.2"),
    ])
    .unwrap();
    assert_eq!(c.base_rate, 0.2);
    assert_eq!(
        env(&[("OTEL_TRACES_SAMPLER", "always_off")])
            .unwrap()
            .base_rate,
        0.0
    );
    let c = env(&[
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.2"),
        ("MESHTRACE_SAMPLING_BASE_RATE", "0.3"),
        ("MESHTRACE_SAMPLING_HIGH_VALUE_RATE", " 0.9 "),
        ("MESHTRACE_SAMPLING_DEBUG_TOKENS", "a, b,,c"),
        ("MESHTRACE_SAMPLING_DEBUG_MAX_PER_SECOND", "4"),
        ("MESHTRACE_SAMPLING_DEBUG_MAX_AGE_SECS", "60"),
        // Span limits are read by the manager's environment reader, not the sampler's.
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "many"),
    ])
    .unwrap();
    assert_eq!(c.base_rate, 0.3);
    assert_eq!(c.high_value_rate, 0.9);
    assert_eq!(c.debug.tokens, ["a", "b", "c"]);
    assert_eq!(c.debug.max_per_second, 4);
    assert_eq!(c.debug.max_age_secs, 60);
    // Blank values are unset.
    assert_eq!(
        env(&[
            ("MESHTRACE_SAMPLING_BASE_RATE", "  "),
            ("OTEL_TRACES_SAMPLER", "")
        ])
        .unwrap(),
        SamplingConfig::default()
    );
    let secret = env(&[("MESHTRACE_SAMPLING_DEBUG_HMAC_SECRET", " 0123456789abcdef ")]);
    if cfg!(feature = "debug-hmac") {
        assert_eq!(
            secret.unwrap().debug.hmac_secret.as_deref(),
            Some("0123456789abcdef")
        );
    } else {
        let message = secret.unwrap_err().to_string();
        assert!(
            message.contains("MESHTRACE_SAMPLING_DEBUG_HMAC_SECRET")
                && message.contains("debug-hmac"),
            "{message}"
        );
        assert!(!message.contains("0123456789abcdef"), "{message}");
    }

    let huge: &'static str = Box::leak("0".repeat(20_000).into_boxed_str());
    let message = env(Box::leak(Box::new([(
        "MESHTRACE_SAMPLING_BASE_RATE",
        huge,
    )])))
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("<20000 bytes>") && message.contains("16384"),
        "{message}"
    );

    for (vars, needle) in [
        (
            &[("OTEL_TRACES_SAMPLER", "jaeger_remote")][..],
            "OTEL_TRACES_SAMPLER",
        ),
        (
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "x"),
            ][..],
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            &[("MESHTRACE_SAMPLING_BASE_RATE", "1.5")][..],
            "MESHTRACE_SAMPLING_BASE_RATE",
        ),
        (
            &[("MESHTRACE_SAMPLING_DEBUG_MAX_PER_SECOND", "-1")][..],
            "MESHTRACE_SAMPLING_DEBUG_MAX_PER_SECOND",
        ),
        (
            &[("MESHTRACE_SAMPLING_DEBUG_MAX_AGE_SECS", "0")][..],
            "MESHTRACE_SAMPLING_DEBUG_MAX_AGE_SECS",
        ),
        (
            &[("MESHTRACE_SAMPLING_DEBUG_TOKENS", "ok,\u{7f}bad")][..],
            "MESHTRACE_SAMPLING_DEBUG_TOKENS",
        ),
        (
            &[("MESHTRACE_SAMPLING_DEBUG_HEADER", "x-dbg")][..],
            "TracingLayer::debug_header",
        ),
        (
            &[("MESHTRACE_SAMPLING_CONFIG_FILE", "/nonexistent/s.toml")][..],
            "/nonexistent/s.toml",
        ),
    ] {
        let message = env(vars).unwrap_err().to_string();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

// ---------------------------------------------------------------------------
// Hot reload

#[test]
fn reload_swaps_and_invalid_reload_keeps_the_old_config() {
    let sampler = CustomSampler::new(SamplingConfig::default().base_rate(0.0)).unwrap();
    let clone = sampler.clone();
    let h = Harness::with_sampler(sampler);
    assert!(!h.server_span(&Context::new(), "GET", "/x").is_sampled());

    h.handle
        .reload(
            SamplingConfig::default()
                .base_rate(0.0)
                .rule(SamplingRule::new("x", 1.0).route("/x")),
        )
        .unwrap();
    assert!(h.server_span(&Context::new(), "GET", "/x").is_sampled());
    // Clones share the configuration.
    assert_eq!(clone.handle().config().rules.len(), 1);

    let err = h
        .handle
        .reload(SamplingConfig::default().base_rate(7.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sampling.base_rate"), "{err}");
    assert_eq!(h.handle.config().rules.len(), 1);
    assert!(h.server_span(&Context::new(), "GET", "/x").is_sampled());

    // From files: a valid one swaps, a malformed one leaves the config in place.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "base_rate = 0.0\n[debug]\ntokens = [\"t\"]\n").unwrap();
    h.handle.reload_from_file(&good).unwrap();
    assert!(!h.server_span(&Context::new(), "GET", "/x").is_sampled());
    assert_eq!(h.handle.config().debug.tokens, ["t"]);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"base_rate\": 1.0,").unwrap();
    assert!(h.handle.reload_from_file(&bad).is_err());
    // A key the sampler cannot apply is refused, not ignored.
    let moved = dir.path().join("moved.toml");
    std::fs::write(&moved, "base_rate = 1.0\n[debug]\nheader = \"x-other\"\n").unwrap();
    let message = h.handle.reload_from_file(&moved).unwrap_err().to_string();
    assert!(message.contains("debug_header"), "{message}");
    assert_eq!(h.handle.config().base_rate, 0.0);
    assert_eq!(h.handle.config().debug.tokens, ["t"]);
}

/// Every field of `SamplingConfig` changes decisions after `reload`: nothing is accepted and
/// then silently ignored.
#[test]
fn reload_applies_every_field() {
    let (nanos, clock) = manual_clock();
    nanos.store(10_000_000_000, Ordering::SeqCst);
    let h = Harness::with_sampler(
        CustomSampler::with_clock(SamplingConfig::default().base_rate(0.0), clock).unwrap(),
    );
    let root = Context::new;
    let debug = |token: &str| Context::new().with_value(debug_value(token));
    let base = || SamplingConfig::default().base_rate(0.0);
    let reload = |config: SamplingConfig| h.handle.reload(config).unwrap();
    let kept =
        |cx: &Context, method: &str, route: &str| h.server_span(cx, method, route).is_sampled();

    // base_rate
    assert!(!kept(&root(), "GET", "/x"));
    reload(SamplingConfig::default().base_rate(1.0));
    assert!(kept(&root(), "GET", "/x"));
    // rules
    reload(base().rule(SamplingRule::new("x", 1.0).route("/x")));
    assert!(kept(&root(), "GET", "/x") && !kept(&root(), "GET", "/y"));
    // high_value and high_value_rate
    reload(base().high_value("/checkout", "POST"));
    assert!(kept(&root(), "POST", "/checkout"));
    reload(base().high_value("/checkout", "POST").high_value_rate(0.0));
    assert!(!kept(&root(), "POST", "/checkout"));
    // debug.tokens
    assert!(!kept(&debug("t0k3n"), "GET", "/x"));
    reload(base().debug(DebugConfig::default().token("t0k3n")));
    assert!(kept(&debug("t0k3n"), "GET", "/x"));
    // debug.max_per_second (the budget of the last second is spent by now)
    reload(base().debug(DebugConfig::default().token("t0k3n").max_per_second(0)));
    assert!(!kept(&debug("t0k3n"), "GET", "/x"));
    // debug.hmac_secret and debug.max_age_secs
    #[cfg(feature = "debug-hmac")]
    {
        use meshtrace::sampler::debug_token_for;
        let secret = "0123456789abcdef-secret";
        let token = debug_token_for(secret.as_bytes(), trace_id(5), 10 - 5);
        let signed = || remote_parent(trace_id(5), false, "").with_value(debug_value(&token));
        assert!(!kept(&signed(), "GET", "/x"));
        reload(base().debug(DebugConfig::default().hmac_secret(secret)));
        assert!(kept(&signed(), "GET", "/x"));
        reload(base().debug(DebugConfig::default().hmac_secret(secret).max_age_secs(4)));
        assert!(!kept(&signed(), "GET", "/x"));
    }
}

#[test]
fn reload_races_with_decisions_without_blocking() {
    let sampler = CustomSampler::new(SamplingConfig::default()).unwrap();
    let handle = sampler.handle();
    let h = Harness::with_sampler(sampler);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..200 {
                let rate = if i % 2 == 0 { 0.0 } else { 1.0 };
                handle
                    .reload(SamplingConfig::default().base_rate(rate))
                    .unwrap();
            }
        });
        for _ in 0..200 {
            // Each decision sees one whole configuration: reason base, th:0 when kept.
            let sc = h.server_span(&Context::new(), "GET", "/x");
            if sc.is_sampled() {
                assert_eq!(sc.trace_state().header(), "ot=th:0");
            }
        }
    });
}

#[test]
fn parse_errors_do_not_echo_secrets() {
    let text = "[debug]\nhmac_secret = \"0123456789abcdef-very-secret\" oops\n";
    let message = SamplingConfig::from_toml_str(text).unwrap_err().to_string();
    assert!(!message.contains("very-secret"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[tokio::test]
async fn watched_file_is_loaded_then_reloaded_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sampling.toml");
    std::fs::write(&path, "base_rate = 0.5").unwrap();
    let handle = CustomSampler::new(SamplingConfig::default())
        .unwrap()
        .handle();
    let _watcher = handle.watch_file(&path, Duration::from_millis(10)).unwrap();
    // Loaded at once.
    assert_eq!(handle.config().base_rate, 0.5);
    std::fs::write(&path, "base_rate = 0.25").unwrap();
    // Wait for the watcher task (polls every 10 ms), bounded so a broken watcher fails.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handle.config().base_rate != 0.25 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watcher never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn watch_file_needs_a_runtime_and_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    std::fs::write(&path, "{}").unwrap();
    let handle = CustomSampler::new(SamplingConfig::default())
        .unwrap()
        .handle();
    let message = handle
        .watch_file(&path, Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(message.contains("tokio runtime"), "{message}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        std::fs::write(&path, "{\"base_rate\": 2}").unwrap();
        assert!(handle.watch_file(&path, Duration::from_secs(1)).is_err());
        assert!(handle.watch_file(&path, Duration::ZERO).is_err());
    });
}

// ---------------------------------------------------------------------------
// Hostile tracestate and debug values

mod hostile {
    use super::*;
    use opentelemetry_sdk::trace::ShouldSample;
    use proptest::prelude::*;

    fn ot_member() -> impl Strategy<Value = String> {
        prop_oneof![
            "th:[0-9a-fA-F]{0,16}",
            "rv:[0-9a-fA-F]{0,16}",
            "[a-z]{1,3}:[!-+--~&&[^;=,]]{0,20}",
            "[!-+--~&&[^=,]]{0,12}",
        ]
    }

    fn ot_value() -> impl Strategy<Value = String> {
        prop::collection::vec(ot_member(), 0..30)
            .prop_map(|members| members.join(";"))
            .prop_filter("tracestate value limit", |v| {
                v.len() <= 256 && !v.is_empty()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_ot_value_gives_a_bounded_consistent_tracestate(
            ot in ot_value(),
            sampled in any::<bool>(),
            untrusted in any::<bool>(),
            low in 0u64..(1 << 56),
            rate in 0.0f64..=1.0,
        ) {
            let sampler = CustomSampler::new(SamplingConfig::default().base_rate(rate)).unwrap();
            let state = TraceState::from_key_value([("ot", ot.as_str()), ("v", "1")]).unwrap();
            let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
            let mut cx = Context::new().with_remote_span_context(SpanContext::new(
                trace_id(low), SpanId::from(1), flags, true, state,
            ));
            if untrusted {
                cx = cx.with_value(UntrustedEdge);
            }
            let result = sampler.should_sample(
                Some(&cx), trace_id(low), "GET", &SpanKind::Server, &[], &[],
            );
            let out = result.trace_state;
            prop_assert_eq!(out.get("v"), Some("1"));
            let out_ot = out.get("ot").unwrap_or("");
            prop_assert!(out_ot.len() <= 256);
            // A valid incoming rv is never lost or changed.
            let rv_in: Vec<&str> = ot.split(';').filter(|m| m.starts_with("rv:")).collect();
            if rv_in.len() == 1 && Randomness::parse_rv(&rv_in[0][3..]).is_some() {
                prop_assert!(out_ot.split(';').any(|m| m == rv_in[0]), "{} -> {}", ot, out_ot);
            }
            // Any th written out is valid, single, and consistent with the decision.
            let th_out: Vec<&str> = out_ot.split(';').filter(|m| m.starts_with("th:")).collect();
            prop_assert!(th_out.len() <= 1);
            if let Some(th) = th_out.first() {
                prop_assert!(Threshold::parse(&th[3..]).is_some(), "{}", th);
                prop_assert_eq!(&result.decision, &opentelemetry_sdk::trace::SamplingDecision::RecordAndSample);
            }
        }

        #[test]
        fn debug_request_accepts_only_bounded_visible_ascii(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
                let accepted = DebugRequest::from_header_value(&value).is_some();
                let expected = !bytes.is_empty()
                    && bytes.len() <= 256
                    && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
                prop_assert_eq!(accepted, expected);
            }
        }

        #[test]
        fn th_and_rv_parsers_never_panic(s in "\\PC{0,20}") {
            let _ = Threshold::parse(&s);
            let _ = Randomness::parse_rv(&s);
        }
    }
}
