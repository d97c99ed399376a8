//! Consistent rate limits on root decisions: per key, for the keys beyond the table
//! (overflow), and global; the guaranteed minimum per key; and the root decision when limits
//! or a central strategy apply.
//!
//! The probability of a root decision is, in this order:
//!
//! 1. `q`, the rule's (or high-value, base, or central strategy's) probability;
//! 2. `p_key = min(q, key controller)`: the key's controller follows
//!    `per_key_traces_per_second / key arrival rate` (the overflow entry's controller
//!    `overflow_traces_per_second / overflow arrival rate`);
//! 3. `p = p_key * global controller`: the global controller follows `traces_per_second /
//!    (sum of p_key over the arrivals)`, the volume the per-key stage lets through, so the
//!    global target holds after the per-key limits and a noisy key does not take the other
//!    keys' share. Its value is a factor in `[min_probability, 1]` (1 under its target:
//!    capped at `max_probability` like `p_key`, the product would be `max_probability^2`);
//! 4. clamped to `[min_probability, max_probability]`, and never above `q`.
//!
//! The span is kept iff its randomness is at least the threshold of `p`, and then carries
//! `ot=th` for `p`: a limit is one more consistent probability, so services that sample the
//! same trace keep nested sets and span-derived counts (`1/p`) stay unbiased.
//!
//! When the probability drops the span and the key's lower bound has a grant left, the
//! span is kept with `sampling.reason = "lower_bound"` and **no** `th`: whether such a span
//! is kept depends on when it arrived relative to the other spans of its key, not on its
//! randomness, so there is no probability to state. OpenTelemetry's consistent sampling
//! treats a span without `th` as of unknown adjusted count, so counting from `th` skips it
//! rather than count it wrongly (an honest `th` would need the inclusion probability, which
//! a rate-based pick does not have). A probabilistic keep also uses the key's grant, so the
//! lower bound is a minimum, not an addition (as in Jaeger's guaranteed-throughput sampler).

use std::sync::Arc;

use opentelemetry::trace::{TraceId, TraceState};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult};

use super::adaptive::{Controller, Dynamics, Shards};
use super::config::LimitsConfig;
use super::consistent::{self, OtValue, Threshold, with_threshold};
use super::keys::{self, KeyTable};
use super::stats::Tally;
use super::strategy::CompiledStrategy;
use super::{AttributesRead, Compiled, Inner, SAMPLING_REASON};

/// Fixed-point scale of the weights the global controller counts (one arrival at `p_key`
/// adds `p_key * GLOBAL_SCALE`).
pub(crate) const GLOBAL_SCALE: f64 = 4_294_967_296.0;

/// The global limit's state: the weighted arrival counter and its controller.
#[derive(Debug)]
pub(crate) struct GlobalLimit {
    shards: Shards,
    pub(crate) controller: Controller,
}

/// The state that outlives a reload (so a reload keeps the rate estimates).
#[derive(Debug, Default)]
pub(crate) struct Runtime {
    pub(crate) global: Option<Arc<GlobalLimit>>,
    pub(crate) table: Option<Arc<KeyTable>>,
}

/// The limits of a configuration, compiled.
#[derive(Debug)]
pub(crate) struct Limits {
    global: Option<f64>,
    per_key: Option<f64>,
    overflow: Option<f64>,
    /// Nanoseconds between two lower-bound picks of a key.
    lower_interval: Option<u64>,
    dynamics: Dynamics,
    /// The same for the global controller, whose value is a factor on `p_key`: up to 1, so
    /// that under its target it leaves `p_key` as it is (capped at `max_probability`, a
    /// product of two capped values would be kept at `max_probability^2`).
    global_dynamics: Dynamics,
    max_keys: usize,
    idle_ns: u64,
    key: Vec<String>,
    pub(crate) reads: AttributesRead,
    pub(crate) runtime: Option<Runtime>,
}

impl Limits {
    /// `None` when the configuration sets no target and no lower bound.
    pub(crate) fn new(config: &LimitsConfig) -> Option<Limits> {
        if !config.is_enabled() {
            return None;
        }
        let route_or_method = |k: &String| {
            k == opentelemetry_semantic_conventions::attribute::HTTP_ROUTE
                || k == opentelemetry_semantic_conventions::attribute::HTTP_REQUEST_METHOD
        };
        let reads = if !config.needs_keys() {
            AttributesRead::None
        } else if config.key.iter().all(route_or_method) {
            AttributesRead::RouteAndMethod
        } else {
            AttributesRead::All
        };
        Some(Limits {
            global: config.traces_per_second,
            per_key: config.per_key_traces_per_second,
            overflow: config
                .overflow_traces_per_second
                .or(config.per_key_traces_per_second),
            lower_interval: config
                .lower_bound_traces_per_second
                .filter(|r| *r > 0.0)
                .map(|r| (1e9 / r).min(u64::MAX as f64) as u64),
            dynamics: Dynamics::new(
                config.adaptation_time_secs,
                config.max_increase,
                config.min_probability,
                config.max_probability,
            ),
            global_dynamics: Dynamics::new(
                config.adaptation_time_secs,
                config.max_increase,
                config.min_probability,
                1.0,
            ),
            max_keys: config.max_keys,
            idle_ns: (config.key_idle_secs * 1e9) as u64,
            key: config.key.clone(),
            reads,
            runtime: None,
        })
    }

    /// Creates the runtime state, reusing `previous`'s estimates where they still apply:
    /// the global estimate always, the key table when the key and its size are unchanged.
    pub(crate) fn attach(&mut self, previous: Option<&Runtime>, now: u64) {
        let global = self.global.map(|_| {
            previous.and_then(|r| r.global.clone()).unwrap_or_else(|| {
                Arc::new(GlobalLimit {
                    shards: Shards::new(),
                    controller: Controller::new(now, 1.0),
                })
            })
        });
        let needs_keys =
            self.per_key.is_some() || self.overflow.is_some() || self.lower_interval.is_some();
        let table = needs_keys.then(|| {
            match previous
                .and_then(|r| r.table.clone())
                .filter(|t| t.fits(self.max_keys, &self.key))
            {
                Some(table) => {
                    table.set_idle(self.idle_ns);
                    table
                }
                None => Arc::new(KeyTable::new(
                    self.max_keys,
                    self.idle_ns,
                    &self.key,
                    now,
                    self.dynamics.max_p,
                )),
            }
        });
        self.runtime = Some(Runtime { global, table });
    }
}

/// What a root decision under limits came to.
enum Verdict {
    Keep(Threshold),
    /// Kept by the lower bound; the probability in force (which dropped it).
    LowerBound(Threshold),
    RateLimited,
    Drop,
}

/// The root decision when limits or a central strategy apply (steps 3-5 and the limits).
#[allow(clippy::too_many_arguments)]
pub(super) fn root_result(
    inner: &Inner,
    compiled: &Compiled,
    limits: Option<&Limits>,
    remote: Option<&CompiledStrategy>,
    state: &TraceState,
    trace_id: TraceId,
    name: &str,
    kind: &opentelemetry::trace::SpanKind,
    attributes: &[KeyValue],
) -> SamplingResult {
    let ot = if *state == TraceState::NONE {
        OtValue::EMPTY
    } else {
        OtValue::parse(state.get(consistent::OT_KEY))
    };
    let randomness = ot.randomness(trace_id);
    let outcome = compiled.root_decision(kind, attributes);
    // The central strategy takes the base rate's place; local rules come first.
    let remote = remote
        .filter(|_| std::ptr::eq(outcome, &compiled.base))
        .map(|r| r.outcome(name));
    let outcome = remote.map_or(outcome, |r| &r.outcome);
    let rule = outcome.threshold;
    let (verdict, key) = match limits.and_then(|l| l.runtime.as_ref().map(|r| (l, r))) {
        None => (
            if rule.keeps(randomness) {
                Verdict::Keep(rule)
            } else {
                Verdict::Drop
            },
            None,
        ),
        Some((limits, runtime)) => {
            let now = inner.clock.now_nanos();
            decide(limits, runtime, now, rule, randomness, attributes)
        }
    };
    let count = |tally: Tally, c: usize| {
        inner.counters.add(tally);
        if let Some((table, i)) = key {
            KeyTable::count(table, i, c);
        }
    };
    match verdict {
        Verdict::Keep(threshold) => {
            count(Tally::Sampled, keys::SAMPLED);
            let trace_state = if threshold == rule && *state == TraceState::NONE {
                outcome.root_state.clone()
            } else {
                with_threshold(state, Some(threshold))
            };
            let mut attributes = Vec::with_capacity(3);
            attributes.push(KeyValue::new(SAMPLING_REASON, outcome.reason.clone()));
            if let Some(r) = remote {
                attributes.extend(r.tags(threshold));
            }
            SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes,
                trace_state,
            }
        }
        Verdict::LowerBound(threshold) => {
            count(Tally::LowerBound, keys::LOWER_BOUND);
            let mut attributes = Vec::with_capacity(3);
            attributes.push(KeyValue::new(SAMPLING_REASON, Value::from("lower_bound")));
            if let Some(r) = remote {
                attributes.extend(r.lower_tags(threshold));
            }
            SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes,
                trace_state: with_threshold(state, None),
            }
        }
        Verdict::RateLimited => {
            count(Tally::RateLimited, keys::RATE_LIMITED);
            super::dropped(state, &ot)
        }
        Verdict::Drop => {
            count(Tally::Dropped, keys::DROPPED);
            super::dropped(state, &ot)
        }
    }
}

/// The limited probability and the verdict for one root decision, and the key's slot.
#[inline]
fn decide<'a>(
    limits: &Limits,
    runtime: &'a Runtime,
    now: u64,
    rule: Threshold,
    randomness: consistent::Randomness,
    attributes: &[KeyValue],
) -> (Verdict, Option<(&'a KeyTable, usize)>) {
    let q = rule.probability();
    let mut p = q;
    let mut key = None;
    if let Some(table) = runtime.table.as_deref() {
        let i = table.find(table.hash(attributes), attributes, now);
        table.count(i, keys::ARRIVALS);
        let target = if i == table.overflow() {
            limits.overflow
        } else {
            limits.per_key
        };
        if let Some(target) = target {
            let controller = &table.slot(i).controller;
            if controller.due(now) {
                controller.tick(
                    now,
                    || table.sum(i, keys::ARRIVALS),
                    1.0,
                    target,
                    &limits.dynamics,
                );
            }
            p = p.min(controller.probability());
        }
        key = Some((table, i));
    }
    if let (Some(target), Some(global)) = (limits.global, runtime.global.as_deref()) {
        global.shards.add((p * GLOBAL_SCALE) as u64);
        if global.controller.due(now) {
            global.controller.tick(
                now,
                || global.shards.total(),
                GLOBAL_SCALE,
                target,
                &limits.global_dynamics,
            );
        }
        p *= global.controller.probability();
    }
    let p = p.clamp(limits.dynamics.min_p, limits.dynamics.max_p).min(q);
    let threshold = Threshold::from_probability(p).unwrap_or(Threshold::NEVER);
    let lower = |table: &KeyTable, i: usize| {
        limits
            .lower_interval
            .is_some_and(|interval| table.lower_bound(i, now, interval))
    };
    let verdict = if threshold.keeps(randomness) {
        if let Some((table, i)) = key {
            // A probabilistic keep uses the key's grant: the lower bound is a minimum.
            lower(table, i);
        }
        Verdict::Keep(threshold)
    } else if key.is_some_and(|(table, i)| lower(table, i)) {
        Verdict::LowerBound(threshold)
    } else if rule.keeps(randomness) {
        Verdict::RateLimited
    } else {
        Verdict::Drop
    };
    (verdict, key)
}
