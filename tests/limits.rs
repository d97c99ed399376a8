//! Consistent rate limits and adaptive targets, driven by a controllable clock (never
//! sleeping): the issue's steady-state, step, proportionality, cardinality and coarse-clock
//! tests, lower bounds, reload, concurrency, counters, metrics and configuration.
//!
//! Randomness: most tests draw trace ids from SplitMix64 with a fixed seed and state their
//! tolerance in binomial standard deviations. The step and proportionality tests measure
//! the limiter itself, so they take each key's randomness from the golden-ratio sequence
//! (`frac(i * phi)`, a fixed low-discrepancy sequence): the kept count then equals the sum
//! of the probabilities in force to within a few spans, instead of within `sqrt(kept)`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshtrace::sampler::consistent::Threshold;
use meshtrace::sampler::{
    CustomSampler, DebugConfig, DebugRequest, LimitsConfig, SamplerHandle, SamplingConfig,
    SamplingRule,
};
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_in;

// ---------------------------------------------------------------------------
// Harness

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// A sampler on a manual clock (nanoseconds), optionally read at 1 ms resolution.
struct Sim {
    sampler: CustomSampler,
    handle: SamplerHandle,
    clock: Arc<AtomicU64>,
}

impl Sim {
    fn new(config: SamplingConfig) -> Sim {
        Sim::with_resolution(config, 1)
    }

    fn with_resolution(config: SamplingConfig, resolution: u64) -> Sim {
        let clock = Arc::new(AtomicU64::new(1_000 * SEC));
        let c = Arc::clone(&clock);
        let sampler = CustomSampler::with_clock(config, move || {
            let ns = c.load(Ordering::Relaxed);
            Duration::from_nanos(ns / resolution * resolution)
        })
        .expect("valid config");
        let handle = sampler.handle();
        Sim {
            sampler,
            handle,
            clock,
        }
    }

    fn advance(&self, ns: u64) {
        self.clock.fetch_add(ns, Ordering::Relaxed);
    }

    fn decide(&self, attributes: &[KeyValue], randomness: u64) -> SamplingResult {
        self.sampler.should_sample(
            Some(&Context::new()),
            trace_id(randomness),
            "GET /x",
            &SpanKind::Server,
            attributes,
            &[],
        )
    }
}

fn trace_id(randomness: u64) -> TraceId {
    TraceId::from(0x4bf9_2f35_77b3_4da6_0000_0000_0000_0000u128 | u128::from(randomness & MASK))
}

const MASK: u64 = (1 << 56) - 1;

fn route(r: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("http.request.method", "GET"),
        KeyValue::new("http.route", r.to_owned()),
    ]
}

fn kept(r: &SamplingResult) -> bool {
    r.decision == SamplingDecision::RecordAndSample
}

fn reason(r: &SamplingResult) -> Option<String> {
    r.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "sampling.reason")
        .map(|kv| kv.value.as_str().into_owned())
}

/// The probability a kept span's `th` states (`None` without `th`).
fn th_probability(r: &SamplingResult) -> Option<f64> {
    let ot = r.trace_state.get("ot")?;
    let th = ot.split(';').find_map(|m| m.strip_prefix("th:"))?;
    Threshold::parse(th).map(Threshold::probability)
}

/// SplitMix64 with a fixed seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The golden-ratio sequence, scaled to 56 bits: `frac(i * phi) * 2^56`.
struct Golden(u64);

impl Golden {
    fn next(&mut self) -> u64 {
        // 2^64 / phi, so wrapping adds walk frac(i * phi) in the top bits.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0 >> 8
    }
}

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual / expected - 1.0).abs() <= tolerance
}

// ---------------------------------------------------------------------------
// Steady state (and the coarse clock)

/// 1,000,000 decisions 100 us apart (10,000 per second) against a target of 1000/s: the
/// kept rate over the last 5 s is within 5% of the target. 5 s at 1000/s is 5000 kept
/// spans: binomial sigma 1.3%, so 5% is about 3.8 sigma. Table-driven over the global and
/// the per-key limit, each with a nanosecond and a 1 ms clock.
#[test]
fn steady_state_keeps_the_target_rate() {
    let cases: &[(&str, LimitsConfig, u64)] = &[
        (
            "global",
            LimitsConfig::default().traces_per_second(1000.0),
            1,
        ),
        (
            "per key",
            LimitsConfig::default().per_key_traces_per_second(1000.0),
            1,
        ),
        (
            "global, 1 ms clock",
            LimitsConfig::default().traces_per_second(1000.0),
            MS,
        ),
        (
            "per key, 1 ms clock",
            LimitsConfig::default().per_key_traces_per_second(1000.0),
            MS,
        ),
    ];
    for (name, limits, resolution) in cases {
        let sim = Sim::with_resolution(
            SamplingConfig::default().limits(limits.clone()),
            *resolution,
        );
        let attributes = route("/orders/{id}");
        let mut rng = SplitMix(0x5eed);
        let n = 1_000_000u64;
        let mut last_5s = 0u64;
        for i in 0..n {
            sim.advance(100_000);
            let r = sim.decide(&attributes, rng.next());
            if kept(&r) {
                assert!(th_probability(&r).is_some(), "{name}: kept spans carry th");
                if i >= n - 50_000 {
                    last_5s += 1;
                }
            }
        }
        let rate = last_5s as f64 / 5.0;
        assert!(within(rate, 1000.0, 0.05), "{name}: {rate} kept per second");
        let stats = sim.handle.stats();
        assert_eq!(stats.decisions(), n, "{name}");
        assert!(stats.rate_limited > stats.dropped, "{name}: {stats:?}");
    }
}

// ---------------------------------------------------------------------------
// Step up and step down

/// Kept spans per second over `secs` seconds at `rate` arrivals per second.
fn run(sim: &Sim, attributes: &[KeyValue], random: &mut Golden, rate: u64, secs: f64) -> f64 {
    let n = (rate as f64 * secs) as u64;
    let gap = SEC / rate;
    let mut kept_n = 0u64;
    for _ in 0..n {
        sim.advance(gap);
        kept_n += u64::from(kept(&sim.decide(attributes, random.next())));
    }
    kept_n as f64 / secs
}

/// A 10x load step up: right after it the kept rate is above 2x the target (the limiter
/// smooths, it does not drop everything), and it is back within 5% of the target within 5
/// adaptation periods; after the step down it recovers within 5 adaptation periods too.
/// Adaptation time 1 s, target 1000/s, load 10,000/s then 100,000/s then 10,000/s.
#[test]
fn a_load_step_is_absorbed_within_five_adaptation_periods() {
    let cases: &[(&str, LimitsConfig)] = &[
        ("global", LimitsConfig::default().traces_per_second(1000.0)),
        (
            "per key",
            LimitsConfig::default().per_key_traces_per_second(1000.0),
        ),
    ];
    for (name, limits) in cases {
        let sim =
            Sim::new(SamplingConfig::default().limits(limits.clone().adaptation_time_secs(1.0)));
        let attributes = route("/orders/{id}");
        let mut random = Golden(0);
        let steady = run(&sim, &attributes, &mut random, 10_000, 10.0);
        assert!(steady > 0.0);
        let settled = run(&sim, &attributes, &mut random, 10_000, 2.0);
        assert!(
            within(settled, 1000.0, 0.05),
            "{name}: before the step {settled}"
        );
        // Step up 10x.
        let right_after = run(&sim, &attributes, &mut random, 100_000, 0.1);
        assert!(
            right_after > 2_000.0,
            "{name}: right after the step {right_after}"
        );
        run(&sim, &attributes, &mut random, 100_000, 3.9);
        let fifth_period = run(&sim, &attributes, &mut random, 100_000, 1.0);
        assert!(
            within(fifth_period, 1000.0, 0.05),
            "{name}: 4-5 adaptation periods after the step up {fifth_period}"
        );
        // Step down 10x.
        run(&sim, &attributes, &mut random, 10_000, 4.0);
        let fifth_period = run(&sim, &attributes, &mut random, 10_000, 1.0);
        assert!(
            within(fifth_period, 1000.0, 0.05),
            "{name}: 4-5 adaptation periods after the step down {fifth_period}"
        );
    }
}

// ---------------------------------------------------------------------------
// Proportionality and unbiased counts

/// Three keys with the same per-key target (equal weight) and 1:3:10 arrival rates keep
/// shares within 2% of each other: a noisy key does not crowd out the others.
#[test]
fn keys_with_equal_weight_keep_equal_shares() {
    let sim = Sim::new(
        SamplingConfig::default().limits(
            LimitsConfig::default()
                .per_key_traces_per_second(200.0)
                .adaptation_time_secs(1.0),
        ),
    );
    let keys = [route("/a"), route("/b"), route("/c")];
    let every = [10u64, 3, 1]; // of each 10 slots of 50 us: /a 2k/s, /b 6k/s, /c 20k/s
    let mut random = [Golden(1 << 60), Golden(2 << 60), Golden(3 << 60)];
    let mut counts = [0u64; 3];
    let slots = 30 * 20_000u64; // 30 s of 50 us slots
    for slot in 0..slots {
        sim.advance(50_000);
        for k in 0..3 {
            if slot % every[k] == 0 {
                let r = sim.decide(&keys[k], random[k].next());
                if kept(&r) && slot >= slots / 3 {
                    counts[k] += 1;
                }
            }
        }
    }
    let max = *counts.iter().max().unwrap() as f64;
    let min = *counts.iter().min().unwrap() as f64;
    assert!(max / min - 1.0 <= 0.02, "shares {counts:?}");
    for c in counts {
        assert!(within(c as f64 / 20.0, 200.0, 0.05), "{counts:?}");
    }
}

/// `th` on kept spans is the probability in force: the sum of 1/p over the kept spans
/// (Horvitz-Thompson) estimates each key's arrivals within 5%. Pseudo-random ids; with
/// about 6000 kept spans per key the estimate's relative sigma is about 1.3%, so 5% is
/// about 3.8 sigma. Global and per-key limits and a rule probability all compose into it.
#[test]
fn th_of_kept_spans_gives_unbiased_counts() {
    let sim = Sim::new(
        SamplingConfig::default()
            .rule(SamplingRule::new("half", 0.5).route("/b"))
            .limits(
                LimitsConfig::default()
                    .per_key_traces_per_second(300.0)
                    .traces_per_second(500.0)
                    .adaptation_time_secs(1.0),
            ),
    );
    let keys = [route("/a"), route("/b"), route("/c")];
    let every = [1u64, 2, 20]; // /a 20k/s, /b 10k/s (rule 0.5), /c 1k/s
    let mut rng = SplitMix(42);
    let mut arrivals = [0u64; 3];
    let mut estimate = [0f64; 3];
    let mut kept_n = [0u64; 3];
    for slot in 0..(30 * 20_000u64) {
        sim.advance(50_000);
        for k in 0..3 {
            if slot % every[k] == 0 {
                arrivals[k] += 1;
                let r = sim.decide(&keys[k], rng.next());
                if kept(&r) {
                    let p = th_probability(&r).expect("kept spans carry th");
                    estimate[k] += 1.0 / p;
                    kept_n[k] += 1;
                }
            }
        }
    }
    for k in 0..3 {
        assert!(
            within(estimate[k], arrivals[k] as f64, 0.05),
            "key {k}: sum 1/p {} for {} arrivals ({} kept)",
            estimate[k],
            arrivals[k],
            kept_n[k]
        );
    }
    // The global target holds over the whole run (warm-up included) within 5%.
    let total: u64 = kept_n.iter().sum();
    assert!(total as f64 / 30.0 < 500.0 * 1.05, "{kept_n:?}");
}

// ---------------------------------------------------------------------------
// Cardinality

/// 10^6 distinct keys: the table never holds more than `max_keys` (1024) entries, and the
/// keys beyond it share the overflow budget (100/s): its kept rate over the last 50 s is
/// within 5% of that (5000 spans: sigma 1.4%), never more.
#[test]
fn a_million_distinct_keys_keep_the_table_bounded_and_share_the_overflow_budget() {
    let sim = Sim::new(
        SamplingConfig::default().limits(
            LimitsConfig::default()
                .per_key_traces_per_second(10.0)
                .overflow_traces_per_second(100.0)
                .adaptation_time_secs(1.0),
        ),
    );
    let mut rng = SplitMix(7);
    let mut overflow_kept_late = 0u64;
    let n = 1_000_000u64;
    let mut attributes = route("");
    for i in 0..n {
        sim.advance(100_000);
        attributes[1] = KeyValue::new("http.route", format!("/tenant/{i}"));
        let r = sim.decide(&attributes, rng.next());
        if i % 100_000 == 0 {
            let tracked = sim.handle.stats().tracked_keys;
            assert!(tracked <= 1024, "{tracked} keys at decision {i}");
        }
        // Keys 1024 on are in the overflow entry (each key arrives once).
        if kept(&r) && i >= n / 2 {
            overflow_kept_late += 1;
        }
    }
    let stats = sim.handle.stats();
    assert_eq!(stats.tracked_keys, 1024);
    let overflow = stats
        .keys
        .iter()
        .find(|k| k.overflow)
        .expect("overflow entry");
    assert!(overflow.arrivals >= n - 1024 - 1024, "{overflow:?}");
    let rate = overflow_kept_late as f64 / 50.0;
    assert!(within(rate, 100.0, 0.05), "overflow kept {rate}/s");
}

// ---------------------------------------------------------------------------
// Probability bounds

/// The probabilities in force: the global limit's and the key's (`None` for a key not
/// tracked yet).
fn in_force(handle: &SamplerHandle, key: &str) -> (Option<f64>, Option<f64>) {
    let stats = handle.stats();
    let key = stats
        .keys
        .iter()
        .find(|k| k.key == key)
        .map(|k| k.probability);
    (stats.global_probability, key)
}

/// `min_probability` holds while deciding: 100,000 arrivals per second against targets of
/// 10 per second would take the key's probability and the global factor to 1e-4 each (1e-8
/// together); neither goes below 0.2, nor does their product or the `th` of any kept span.
/// Once the estimates have settled (1 s, five adaptation times), every kept span is kept at
/// exactly 0.2, so the burst exceeds the targets as documented.
#[test]
fn min_probability_holds_under_a_huge_burst() {
    let sim = Sim::new(
        SamplingConfig::default().limits(
            LimitsConfig::default()
                .per_key_traces_per_second(10.0)
                .traces_per_second(10.0)
                .adaptation_time_secs(0.2)
                .min_probability(0.2),
        ),
    );
    let min = Threshold::from_probability(0.2).unwrap().probability();
    let attributes = route("/burst");
    let mut rng = SplitMix(5);
    let (mut kept_after, mut decided_after) = (0u32, 0u32);
    for i in 0..300_000u32 {
        sim.advance(10_000);
        let r = sim.decide(&attributes, rng.next());
        if kept(&r) {
            let p = th_probability(&r).expect("a probabilistic keep has th");
            assert!(p >= min, "decision {i}: th states {p}");
            if i >= 100_000 {
                assert_eq!(p, min, "decision {i}");
            }
        }
        if i >= 100_000 {
            decided_after += 1;
            kept_after += u32::from(kept(&r));
        }
        if i % 1_000 == 0 {
            let (global, key) = in_force(&sim.handle, "/burst");
            for p in [global.unwrap(), key.unwrap()] {
                assert!((0.2..=1.0).contains(&p), "decision {i}: {p}");
            }
        }
    }
    // 200,000 decisions at 0.2: sigma 0.2%.
    let share = f64::from(kept_after) / f64::from(decided_after);
    assert!(within(share, 0.2, 0.02), "{share}");
}

/// `max_probability` holds while deciding: 10 arrivals per second against targets of 1000
/// per second would take every probability to 1. The key's never goes above 0.3, from its
/// first decision on (a key starts at the highest probability allowed, not at 1); the
/// global limit's factor stays at 1, so the probability in force, and every kept span's
/// `th`, is exactly 0.3 (not 0.3 x 0.3).
#[test]
fn max_probability_holds_far_under_the_target() {
    let sim = Sim::new(
        SamplingConfig::default().limits(
            LimitsConfig::default()
                .per_key_traces_per_second(1000.0)
                .traces_per_second(1000.0)
                .max_probability(0.3),
        ),
    );
    let max = Threshold::from_probability(0.3).unwrap().probability();
    let attributes = route("/quiet");
    let mut rng = SplitMix(6);
    let mut kept_count = 0u32;
    for i in 0..20_000u32 {
        sim.advance(100 * MS);
        let r = sim.decide(&attributes, rng.next());
        if kept(&r) {
            kept_count += 1;
            assert_eq!(th_probability(&r), Some(max), "decision {i}");
        }
        if i < 100 || i % 100 == 0 {
            let (global, key) = in_force(&sim.handle, "/quiet");
            assert_eq!(
                global,
                Some(1.0),
                "decision {i}: far under the global target"
            );
            let key = key.unwrap();
            assert!((0.0..=0.3).contains(&key), "decision {i}: {key}");
        }
    }
    // 20,000 decisions at 0.3: sigma 1.1%.
    let share = f64::from(kept_count) / 20_000.0;
    assert!(within(share, 0.3, 0.05), "{share}");
}

// ---------------------------------------------------------------------------
// Lower bound

/// A rare route at base rate 0 is still seen once a minute: lower-bound picks are marked
/// and carry no `th`; a probabilistic keep uses the grant, so the bound is a minimum.
#[test]
fn the_lower_bound_keeps_rare_keys_without_th() {
    let sim = Sim::new(
        SamplingConfig::default()
            .base_rate(0.0)
            .rule(SamplingRule::new("all", 1.0).route("/hot"))
            .limits(LimitsConfig::default().lower_bound_traces_per_second(1.0 / 60.0)),
    );
    let rare = route("/rare");
    let hot = route("/hot");
    let mut rng = SplitMix(3);
    let mut rare_kept = 0;
    let mut hot_lower = 0;
    for _ in 0..600 {
        sim.advance(SEC);
        let r = sim.decide(&rare, rng.next());
        if kept(&r) {
            rare_kept += 1;
            assert_eq!(reason(&r).as_deref(), Some("lower_bound"));
            assert_eq!(th_probability(&r), None, "no th on a lower-bound pick");
            assert_eq!(r.trace_state.get("ot"), None);
        }
        let r = sim.decide(&hot, rng.next());
        assert!(kept(&r));
        hot_lower += u32::from(reason(&r).as_deref() == Some("lower_bound"));
    }
    assert_eq!(rare_kept, 10, "600 s at one per minute");
    assert_eq!(hot_lower, 0, "probabilistic keeps use the grant");
    let stats = sim.handle.stats();
    assert_eq!(stats.lower_bound, 10);
    let rare_stats = stats.keys.iter().find(|k| k.key == "/rare").unwrap();
    assert_eq!((rare_stats.lower_bound, rare_stats.dropped), (10, 590));
}

// ---------------------------------------------------------------------------
// Reload, concurrency, allocation, counters

/// A reload keeps the estimates: the new target applies from the next tick, without a
/// warm-up at probability 1.
#[test]
fn reload_keeps_the_rate_estimates() {
    let limits = LimitsConfig::default().adaptation_time_secs(1.0);
    let sim = Sim::new(
        SamplingConfig::default().limits(
            limits
                .clone()
                .per_key_traces_per_second(1000.0)
                .traces_per_second(5000.0),
        ),
    );
    let attributes = route("/orders/{id}");
    let mut random = Golden(0);
    run(&sim, &attributes, &mut random, 10_000, 10.0);
    let before = sim.handle.stats();
    let key_p = before
        .keys
        .iter()
        .find(|k| !k.overflow)
        .unwrap()
        .probability;
    assert!(within(key_p, 0.1, 0.05), "{key_p}");
    sim.handle
        .reload(
            SamplingConfig::default().limits(
                limits
                    .per_key_traces_per_second(500.0)
                    .traces_per_second(5000.0),
            ),
        )
        .unwrap();
    run(&sim, &attributes, &mut random, 10_000, 0.05);
    let after = sim.handle.stats();
    let key = after.keys.iter().find(|k| !k.overflow).unwrap();
    assert!(within(key.probability, 0.05, 0.05), "{key:?}");
    assert!(within(key.arrival_rate, 10_000.0, 0.05), "{key:?}");
    assert!(key.arrivals > 100_000, "the key kept its counters: {key:?}");
    // The global limit sees the per-key stage's output: 0.1 * 10,000/s before the reload,
    // and its estimate carries on from there.
    let global = after.global_rate.unwrap();
    assert!(
        within(global, 1000.0, 0.05),
        "the global estimate is kept: {global}"
    );
}

/// Two threads deciding at once: every decision is counted exactly once, per outcome and
/// per key, and the table holds each key once.
#[test]
fn two_threads_deciding_at_once_count_every_decision() {
    let sim = Arc::new(Sim::new(
        SamplingConfig::default().limits(
            LimitsConfig::default()
                .per_key_traces_per_second(100.0)
                .traces_per_second(150.0),
        ),
    ));
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let sim = Arc::clone(&sim);
            std::thread::spawn(move || {
                let keys = [route("/a"), route("/b")];
                let mut rng = SplitMix(t);
                for i in 0..100_000usize {
                    sim.advance(10_000);
                    sim.decide(&keys[i % 2], rng.next());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = sim.handle.stats();
    assert_eq!(stats.decisions(), 200_000);
    assert_eq!(stats.tracked_keys, 2);
    let per_key: u64 = stats.keys.iter().map(|k| k.arrivals).sum();
    assert_eq!(per_key, 200_000);
    for k in &stats.keys {
        assert_eq!(
            k.arrivals,
            k.sampled + k.dropped + k.rate_limited + k.lower_bound,
            "{k:?}"
        );
    }
}

/// A decision dropped by a limit allocates nothing (the key exists; a new key is claimed
/// without allocating too).
#[test]
fn a_dropped_decision_with_limits_on_allocates_nothing() {
    let sim = Sim::new(
        SamplingConfig::default().limits(
            LimitsConfig::default()
                .per_key_traces_per_second(10.0)
                .traces_per_second(20.0)
                .lower_bound_traces_per_second(0.001)
                .key(["http.request.method", "http.route", "tenant"]),
        ),
    );
    let mut attributes = route("/orders/{id}");
    attributes.push(KeyValue::new("tenant", "acme"));
    let mut rng = SplitMix(9);
    for _ in 0..100_000 {
        sim.advance(10_000);
        sim.decide(&attributes, rng.next());
    }
    let mut other = route("/new");
    other.push(KeyValue::new("tenant", "new"));
    // A zero randomness is below every threshold but probability 1's.
    for (name, attributes) in [("existing key", &attributes), ("new key", &other)] {
        let (r, allocations) = allocations_in(|| {
            sim.advance(10_000);
            sim.decide(attributes, 0)
        });
        if name == "existing key" {
            assert!(!kept(&r), "{name}");
            assert_eq!(allocations, 0, "{name}");
        } else {
            // A new key's first span may be its lower-bound pick; the lookup itself and the
            // claim of the slot allocate nothing (a kept result allocates its attributes).
            let (r2, allocations) = allocations_in(|| {
                sim.advance(10_000);
                sim.decide(attributes, 0)
            });
            assert!(kept(&r) || !kept(&r2));
            if !kept(&r2) {
                assert_eq!(allocations, 0, "{name}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Metrics

/// Every outcome counter, through the handle and through the exported metrics, equals the
/// decisions made: a rule probability of 0.5 (`dropped` below it), a per-key target
/// (`rate_limited` above it), a lower bound of one per second (`lower_bound`) and a debug
/// token (`debug`, never per key). The test counts each decision from its result.
#[test]
fn counters_are_exported_through_the_metrics_api() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let sim = Sim::new(
        SamplingConfig::default()
            .base_rate(0.5)
            .debug(DebugConfig::default().token("let-me-debug"))
            .limits(
                LimitsConfig::default()
                    .per_key_traces_per_second(10.0)
                    .lower_bound_traces_per_second(1.0),
            ),
    );
    sim.handle.register_metrics(&provider.meter("test"));
    let debug = Context::new().with_value(
        DebugRequest::from_header_value(&http::HeaderValue::from_static("let-me-debug")).unwrap(),
    );
    let attributes = route("/orders/{id}");
    let mut rng = SplitMix(1);
    // sampled, dropped, rate_limited, lower_bound, debug: as the results say.
    let mut expected = [0u64; 5];
    for i in 0..10_000 {
        sim.advance(MS);
        let randomness = rng.next();
        let r = if i % 100 == 0 {
            sim.sampler.should_sample(
                Some(&debug),
                trace_id(randomness),
                "GET /x",
                &SpanKind::Server,
                &attributes,
                &[],
            )
        } else {
            sim.decide(&attributes, randomness)
        };
        let outcome = match reason(&r).as_deref() {
            Some("debug") => 4,
            Some("lower_bound") => 3,
            Some(_) => 0,
            // The rule's probability 0.5 keeps randomness from 2^55 on.
            None if randomness & MASK >= 1 << 55 => 2,
            None => 1,
        };
        assert_eq!(kept(&r), outcome == 0 || outcome >= 3, "{r:?}");
        expected[outcome] += 1;
    }
    assert!(
        expected.iter().all(|n| *n > 0),
        "every outcome: {expected:?}"
    );
    let stats = sim.handle.stats();
    assert_eq!(
        [
            stats.sampled,
            stats.dropped,
            stats.rate_limited,
            stats.lower_bound,
            stats.debug
        ],
        expected,
        "{stats:?}"
    );
    let key = stats.keys.iter().find(|k| k.key == "/orders/{id}").unwrap();
    let per_key = [key.sampled, key.dropped, key.rate_limited, key.lower_bound];
    assert_eq!(
        per_key,
        expected[..4],
        "a debug decision has no key: {key:?}"
    );
    provider.force_flush().unwrap();
    let metrics = exporter.get_finished_metrics().unwrap();
    let mut seen = std::collections::HashMap::new();
    for scope in metrics.last().unwrap().scope_metrics() {
        for metric in scope.metrics() {
            if let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() {
                for point in sum.data_points() {
                    let attrs: Vec<String> = point
                        .attributes()
                        .map(|kv| format!("{}={}", kv.key, kv.value))
                        .collect();
                    seen.insert(
                        format!("{} {}", metric.name(), attrs.join(",")),
                        point.value(),
                    );
                }
            }
        }
    }
    let get = |k: &str| {
        seen.get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k}: {seen:?}"))
    };
    let outcomes = ["sampled", "dropped", "rate_limited", "lower_bound", "debug"];
    for (outcome, n) in outcomes.iter().zip(expected) {
        assert_eq!(
            get(&format!("meshtrace.sampler.decisions outcome={outcome}")),
            n,
            "{outcome}"
        );
    }
    for (outcome, n) in outcomes.iter().zip(per_key) {
        assert_eq!(
            get(&format!(
                "meshtrace.sampler.key.decisions key=/orders/{{id}},outcome={outcome}"
            )),
            n,
            "{outcome} per key"
        );
    }
    assert!(
        !seen.contains_key("meshtrace.sampler.key.decisions key=/orders/{id},outcome=debug"),
        "{seen:?}"
    );
}

// ---------------------------------------------------------------------------
// Configuration

#[test]
fn limits_from_files_and_environment() {
    let toml = r#"
base_rate = 0.5
[limits]
traces_per_second = 100.0
per_key_traces_per_second = 10.0
lower_bound_traces_per_second = 0.0167
overflow_traces_per_second = 20.0
key = ["http.request.method", "http.route"]
max_keys = 256
key_idle_secs = 60.0
adaptation_time_secs = 2.0
max_increase = 1.5
min_probability = 0.001
max_probability = 0.9
"#;
    let expected = SamplingConfig::default().base_rate(0.5).limits(
        LimitsConfig::default()
            .traces_per_second(100.0)
            .per_key_traces_per_second(10.0)
            .lower_bound_traces_per_second(0.0167)
            .overflow_traces_per_second(20.0)
            .key(["http.request.method", "http.route"])
            .max_keys(256)
            .key_idle_secs(60.0)
            .adaptation_time_secs(2.0)
            .max_increase(1.5)
            .min_probability(0.001)
            .max_probability(0.9),
    );
    assert_eq!(SamplingConfig::from_toml_str(toml).unwrap(), expected);
    let json = serde_json::to_string(&expected).unwrap();
    assert_eq!(SamplingConfig::from_json_str(&json).unwrap(), expected);
    let vars: &[(&str, &str)] = &[
        ("MESHTRACE_SAMPLING_BASE_RATE", "0.5"),
        ("MESHTRACE_SAMPLING_TRACES_PER_SECOND", "100"),
        ("MESHTRACE_SAMPLING_PER_KEY_TRACES_PER_SECOND", "10"),
        ("MESHTRACE_SAMPLING_LOWER_BOUND_TRACES_PER_SECOND", "0.0167"),
        ("MESHTRACE_SAMPLING_OVERFLOW_TRACES_PER_SECOND", "20"),
        (
            "MESHTRACE_SAMPLING_LIMIT_KEY",
            "http.request.method, http.route",
        ),
        ("MESHTRACE_SAMPLING_MAX_KEYS", "256"),
        ("MESHTRACE_SAMPLING_KEY_IDLE_SECS", "60"),
        ("MESHTRACE_SAMPLING_ADAPTATION_TIME_SECS", "2"),
        ("MESHTRACE_SAMPLING_MAX_INCREASE", "1.5"),
        ("MESHTRACE_SAMPLING_MIN_PROBABILITY", "0.001"),
        ("MESHTRACE_SAMPLING_MAX_PROBABILITY", "0.9"),
    ];
    let env = |vars: &[(&str, &str)]| {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        SamplingConfig::from_env_with(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    };
    assert_eq!(env(vars).unwrap(), expected);
    // Invalid values name the variable and the value.
    let cases: &[(&str, &str, &str)] = &[
        (
            "MESHTRACE_SAMPLING_TRACES_PER_SECOND",
            "fast",
            "MESHTRACE_SAMPLING_TRACES_PER_SECOND = \"fast\" is invalid: it must be a number",
        ),
        (
            "MESHTRACE_SAMPLING_PER_KEY_TRACES_PER_SECOND",
            "-1",
            "MESHTRACE_SAMPLING_PER_KEY_TRACES_PER_SECOND = \"-1\" is invalid",
        ),
        (
            "MESHTRACE_SAMPLING_MAX_KEYS",
            "0",
            "MESHTRACE_SAMPLING_MAX_KEYS = \"0\" is invalid: it must be between 1 and",
        ),
        (
            "MESHTRACE_SAMPLING_MAX_KEYS",
            "many",
            "MESHTRACE_SAMPLING_MAX_KEYS = \"many\"",
        ),
        (
            "MESHTRACE_SAMPLING_MAX_INCREASE",
            "0.5",
            "MESHTRACE_SAMPLING_MAX_INCREASE = \"0.5\"",
        ),
        (
            "MESHTRACE_SAMPLING_MIN_PROBABILITY",
            "2",
            "MESHTRACE_SAMPLING_MIN_PROBABILITY = \"2\"",
        ),
        (
            "MESHTRACE_SAMPLING_LIMIT_KEY",
            ",",
            "MESHTRACE_SAMPLING_LIMIT_KEY = <0 attributes>",
        ),
    ];
    for (var, value, message) in cases {
        let e = env(&[(var, value)]).unwrap_err().to_string();
        assert!(e.starts_with(message), "{var}={value}: {e}");
    }
}

#[test]
fn invalid_limits_are_errors_naming_field_and_value() {
    let d = LimitsConfig::default;
    let cases: Vec<(LimitsConfig, &str)> = vec![
        (
            d().traces_per_second(f64::NAN),
            "sampling.limits.traces_per_second = \"NaN\" is invalid",
        ),
        (
            d().per_key_traces_per_second(-2.0),
            "sampling.limits.per_key_traces_per_second = \"-2\" is invalid",
        ),
        (
            d().lower_bound_traces_per_second(f64::INFINITY),
            "sampling.limits.lower_bound_traces_per_second = \"inf\"",
        ),
        (d().max_keys(0), "sampling.limits.max_keys = \"0\""),
        (
            d().key(Vec::<String>::new()),
            "sampling.limits.key = <0 attributes> is invalid",
        ),
        (d().key([""]), "sampling.limits.key[0] = \"\" is invalid"),
        (
            d().adaptation_time_secs(0.0),
            "sampling.limits.adaptation_time_secs = \"0\"",
        ),
        (
            d().key_idle_secs(-1.0),
            "sampling.limits.key_idle_secs = \"-1\"",
        ),
        (
            d().max_increase(0.9),
            "sampling.limits.max_increase = \"0.9\"",
        ),
        (
            d().min_probability(0.5).max_probability(0.4),
            "sampling.limits.min_probability = \"0.5\" is invalid: it must not exceed",
        ),
    ];
    for (limits, message) in cases {
        let e = CustomSampler::new(SamplingConfig::default().limits(limits))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(message), "{e}");
        assert_eq!(e.matches(" is invalid: ").count(), 1, "one sentence: {e}");
    }
}
