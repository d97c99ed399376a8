//! What the sampler did: counters by decision and reason, readable from the
//! [`SamplerHandle`](super::SamplerHandle) and exported through the OpenTelemetry metrics API.
//!
//! Every decision counts once, in exactly one of five counters: `sampled` (kept by a
//! probability or a sampled parent), `dropped` (dropped by a probability or an unsampled
//! parent), `rate_limited` (dropped because a rate limit lowered the probability: the rule's
//! probability alone would have kept it), `lower_bound` (kept by a key's guaranteed minimum)
//! and `debug` (kept by a debug token); `deferred` counts, among the dropped and
//! rate-limited ones, those recorded for deferred capture. The counters are sharded per thread, so counting
//! costs one uncontended atomic add.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use super::adaptive::{shard_count, shard_index};
use super::keys;

/// Index of each counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tally {
    Sampled = 0,
    Dropped = 1,
    RateLimited = 2,
    LowerBound = 3,
    Debug = 4,
    /// Not a decision of its own: of the `Dropped` and `RateLimited` ones, those recorded
    /// for deferred capture.
    Deferred = 5,
}

const NAMES: [&str; 5] = ["sampled", "dropped", "rate_limited", "lower_bound", "debug"];

/// Outcomes reported per key (the first four of [`NAMES`]: a debug decision has no key).
pub(crate) const KEY_OUTCOMES: usize = 4;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard([AtomicU64; 6]);

/// The sampler's global counters.
#[derive(Debug)]
pub(crate) struct Counters {
    shards: Box<[Shard]>,
    mask: usize,
}

impl Default for Counters {
    fn default() -> Self {
        let n = shard_count();
        Counters {
            shards: (0..n).map(|_| Shard::default()).collect(),
            mask: n - 1,
        }
    }
}

impl Counters {
    #[inline]
    pub(crate) fn add(&self, tally: Tally) {
        self.shards[shard_index() & self.mask].0[tally as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> [u64; 6] {
        let mut out = [0u64; 6];
        for shard in self.shards.iter() {
            for (o, c) in out.iter_mut().zip(&shard.0) {
                *o = o.wrapping_add(c.load(Ordering::Relaxed));
            }
        }
        out
    }
}

/// A snapshot of the sampler's counters (see [`SamplerHandle::stats`](super::SamplerHandle::stats)).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SamplerStats {
    /// Decisions kept by a probability (rule, high-value, base, remote strategy) or a
    /// sampled parent.
    pub sampled: u64,
    /// Decisions dropped by a probability or an unsampled parent.
    pub dropped: u64,
    /// Decisions a rate limit dropped (the rule's probability alone would have kept them).
    pub rate_limited: u64,
    /// Decisions kept by a key's guaranteed minimum (`sampling.reason = "lower_bound"`).
    pub lower_bound: u64,
    /// Decisions kept by a debug token.
    pub debug: u64,
    /// Of the `dropped` and `rate_limited` decisions, those recorded for deferred capture
    /// (`RecordOnly`): traces the deferral budget took at the service entry, and their local
    /// child spans. Whether they were exported is in the export stats
    /// ([`ExportStats::deferred`](crate::export::ExportStats::deferred)).
    pub deferred: u64,
    /// The factor the global limit applies, when one is configured: in `[min_probability,
    /// 1]`, 1 while under its target. The probability in force for a key is its
    /// `probability` (or the rule's, if lower) times this factor, clamped to
    /// `[min_probability, max_probability]`.
    pub global_probability: Option<f64>,
    /// The smoothed rate (per second) the global limit sees, when one is configured.
    pub global_rate: Option<f64>,
    /// How many keys hold a place in the key table (at most `limits.max_keys`).
    pub tracked_keys: usize,
    /// The keys seen within `limits.key_idle_secs`, and the shared overflow entry when it
    /// was used.
    pub keys: Vec<KeyStats>,
}

impl SamplerStats {
    /// Every decision counted.
    pub fn decisions(&self) -> u64 {
        self.sampled + self.dropped + self.rate_limited + self.lower_bound + self.debug
    }
}

/// One key of the rate limits (see [`SamplerStats::keys`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct KeyStats {
    /// The key's attribute values joined by spaces (`-` for a missing one), at most 128
    /// bytes; `<overflow>` for the shared entry.
    pub key: String,
    /// Whether this is the entry that keys beyond `limits.max_keys` share.
    pub overflow: bool,
    /// Root decisions for this key since it took its place.
    pub arrivals: u64,
    /// Of which kept by the probability.
    pub sampled: u64,
    /// Of which dropped by the probability.
    pub dropped: u64,
    /// Of which dropped by a rate limit.
    pub rate_limited: u64,
    /// Of which kept by the lower bound.
    pub lower_bound: u64,
    /// The per-key limit's probability in force.
    pub probability: f64,
    /// The smoothed arrival rate per second.
    pub arrival_rate: f64,
}

impl From<keys::KeySnapshot> for KeyStats {
    fn from(s: keys::KeySnapshot) -> Self {
        KeyStats {
            key: s.key,
            overflow: s.overflow,
            arrivals: s.counts[keys::ARRIVALS],
            sampled: s.counts[keys::SAMPLED],
            dropped: s.counts[keys::DROPPED],
            rate_limited: s.counts[keys::RATE_LIMITED],
            lower_bound: s.counts[keys::LOWER_BOUND],
            probability: s.probability,
            arrival_rate: s.rate,
        }
    }
}

impl super::Inner {
    pub(crate) fn stats(&self) -> SamplerStats {
        let [sampled, dropped, rate_limited, lower_bound, debug, deferred] = self.counters.read();
        let mut stats = SamplerStats {
            sampled,
            dropped,
            rate_limited,
            lower_bound,
            debug,
            deferred,
            ..SamplerStats::default()
        };
        let compiled = self.compiled.load();
        if let Some(runtime) = compiled.limits_runtime() {
            let now = self.clock.now_nanos();
            if let Some(global) = &runtime.global {
                stats.global_probability = Some(global.controller.probability());
                stats.global_rate = Some(global.controller.rate_per_second());
            }
            if let Some(table) = &runtime.table {
                stats.tracked_keys = table.len();
                stats.keys = table
                    .snapshot(now)
                    .into_iter()
                    .map(KeyStats::from)
                    .collect();
            }
        }
        stats
    }
}

/// Metric names.
pub const METRIC_DECISIONS: &str = "meshtrace.sampler.decisions";
/// Per-key decisions (tracked keys and the overflow entry).
pub const METRIC_KEY_DECISIONS: &str = "meshtrace.sampler.key.decisions";
/// The global limit's probability.
pub const METRIC_PROBABILITY: &str = "meshtrace.sampler.probability";

/// Registers the sampler's observable instruments on `meter`. The callbacks hold a weak
/// reference: once the sampler is gone they report nothing.
pub(crate) fn register(inner: &Arc<super::Inner>, meter: &Meter) {
    let weak: Weak<super::Inner> = Arc::downgrade(inner);
    let w = weak.clone();
    let _decisions = meter
        .u64_observable_counter(METRIC_DECISIONS)
        .with_description("Sampling decisions by outcome")
        .with_unit("{decision}")
        .with_callback(move |observer| {
            let Some(inner) = w.upgrade() else { return };
            let stats = inner.stats();
            let values = [
                stats.sampled,
                stats.dropped,
                stats.rate_limited,
                stats.lower_bound,
                stats.debug,
            ];
            for (name, value) in NAMES.iter().zip(values) {
                observer.observe(value, &[KeyValue::new("outcome", *name)]);
            }
        })
        .build();
    let w = weak.clone();
    let _keys = meter
        .u64_observable_counter(METRIC_KEY_DECISIONS)
        .with_description("Root decisions per rate-limit key, by outcome")
        .with_unit("{decision}")
        .with_callback(move |observer| {
            let Some(inner) = w.upgrade() else { return };
            for key in inner.stats().keys {
                let values: [u64; KEY_OUTCOMES] =
                    [key.sampled, key.dropped, key.rate_limited, key.lower_bound];
                for (name, value) in NAMES.iter().zip(values) {
                    observer.observe(
                        value,
                        &[
                            KeyValue::new("key", key.key.clone()),
                            KeyValue::new("outcome", *name),
                        ],
                    );
                }
            }
        })
        .build();
    let w = weak;
    let _probability = meter
        .f64_observable_gauge(METRIC_PROBABILITY)
        .with_description("The probability the global rate limit applies")
        .with_callback(move |observer| {
            let Some(inner) = w.upgrade() else { return };
            if let Some(p) = inner.stats().global_probability {
                observer.observe(p, &[]);
            }
        })
        .build();
}
