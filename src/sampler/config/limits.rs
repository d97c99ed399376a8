//! `LimitsConfig`: consistent rate limits and adaptive targets (the `[limits]` section of a
//! sampling configuration), and its checks.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Default `limits.max_keys`: how many keys the sampler tracks at most.
pub const DEFAULT_MAX_KEYS: usize = 1024;
/// Upper bound for `limits.max_keys`.
pub const MAX_MAX_KEYS: usize = 1 << 20;
/// Most attributes a limit key may combine.
pub const MAX_KEY_ATTRIBUTES: usize = 8;
/// Default `limits.adaptation_time_secs`: the time constant of the arrival-rate estimate.
pub const DEFAULT_ADAPTATION_TIME_SECS: f64 = 5.0;
/// Default `limits.max_increase`: the probability at most doubles per adaptation time.
pub const DEFAULT_MAX_INCREASE: f64 = 2.0;
/// Default `limits.key_idle_secs`: a key unseen this long may give its place to another.
pub const DEFAULT_KEY_IDLE_SECS: f64 = 300.0;
/// Largest rate (traces per second) any limit accepts.
pub const MAX_TRACES_PER_SECOND: f64 = 1e9;
/// The attribute a limit key reads unless `limits.key` names others: the route template.
pub const DEFAULT_LIMIT_KEY: &str = "http.route";

/// Consistent rate limits and adaptive targets, applied to root decisions (steps 3-5 of the
/// [sampler](crate::sampler)) after the rule, high-value or base probability is chosen.
///
/// Every target is in traces per second; a target that is not set is no limit. A limit
/// lowers the probability, it never keeps "the first N": the arrival rate is estimated with
/// exponential smoothing (time constant `adaptation_time_secs`), the probability in force
/// follows `target / estimate` (a decrease applies at once, an increase by at most
/// `max_increase` per adaptation time), is clamped to `[min_probability, max_probability]`
/// and never exceeds the rule's probability, and kept spans carry it as `ot=th`.
///
/// Defaults: no target, key `["http.route"]`, 1024 keys, keys idle for 300 s may be
/// replaced, adaptation time 5 s, increase at most 2x per adaptation time, probabilities
/// clamped to `[0.0, 1.0]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Global target: traces per second kept by root decisions of this instance, after the
    /// per-key limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces_per_second: Option<f64>,
    /// Per-key target: traces per second kept for each key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_key_traces_per_second: Option<f64>,
    /// Guaranteed minimum per key (e.g. `0.0167`, one trace a minute), kept even when the
    /// probability says drop. These picks are marked `sampling.reason = "lower_bound"` and
    /// carry no `th` (they are not probabilistic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_bound_traces_per_second: Option<f64>,
    /// The one budget that keys beyond `max_keys` share (default: the per-key target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow_traces_per_second: Option<f64>,
    /// The start attributes whose values form the key (default `["http.route"]`; e.g.
    /// `["http.request.method", "http.route"]` or `["tenant"]`).
    pub key: Vec<String>,
    /// Most keys tracked at once (default 1024).
    pub max_keys: usize,
    /// Seconds after which an unseen key may give its place to a new one (default 300).
    pub key_idle_secs: f64,
    /// Time constant of the arrival-rate estimate, in seconds (default 5).
    pub adaptation_time_secs: f64,
    /// Largest factor by which the probability may grow per adaptation time (default 2;
    /// at least 1). Decreases apply at once.
    pub max_increase: f64,
    /// The limits never lower the probability below this (default 0.0). Setting it above 0
    /// lets a burst exceed the targets.
    pub min_probability: f64,
    /// The limits never raise the probability above this (default 1.0); the rule's
    /// probability is an upper bound too.
    pub max_probability: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            traces_per_second: None,
            per_key_traces_per_second: None,
            lower_bound_traces_per_second: None,
            overflow_traces_per_second: None,
            key: vec![DEFAULT_LIMIT_KEY.to_owned()],
            max_keys: DEFAULT_MAX_KEYS,
            key_idle_secs: DEFAULT_KEY_IDLE_SECS,
            adaptation_time_secs: DEFAULT_ADAPTATION_TIME_SECS,
            max_increase: DEFAULT_MAX_INCREASE,
            min_probability: 0.0,
            max_probability: 1.0,
        }
    }
}

impl LimitsConfig {
    /// Sets the global target (traces per second).
    #[must_use]
    pub fn traces_per_second(mut self, target: f64) -> Self {
        self.traces_per_second = Some(target);
        self
    }

    /// Sets the per-key target (traces per second per key).
    #[must_use]
    pub fn per_key_traces_per_second(mut self, target: f64) -> Self {
        self.per_key_traces_per_second = Some(target);
        self
    }

    /// Sets the guaranteed minimum per key (traces per second, e.g. `1.0 / 60.0`).
    #[must_use]
    pub fn lower_bound_traces_per_second(mut self, rate: f64) -> Self {
        self.lower_bound_traces_per_second = Some(rate);
        self
    }

    /// Sets the budget keys beyond `max_keys` share.
    #[must_use]
    pub fn overflow_traces_per_second(mut self, target: f64) -> Self {
        self.overflow_traces_per_second = Some(target);
        self
    }

    /// Sets the attributes whose values form the key.
    #[must_use]
    pub fn key<S: Into<String>>(mut self, attributes: impl IntoIterator<Item = S>) -> Self {
        self.key = attributes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the most keys tracked at once.
    #[must_use]
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// Sets after how many seconds an unseen key may be replaced.
    #[must_use]
    pub fn key_idle_secs(mut self, seconds: f64) -> Self {
        self.key_idle_secs = seconds;
        self
    }

    /// Sets the time constant of the rate estimate, in seconds.
    #[must_use]
    pub fn adaptation_time_secs(mut self, seconds: f64) -> Self {
        self.adaptation_time_secs = seconds;
        self
    }

    /// Sets the largest growth factor of the probability per adaptation time.
    #[must_use]
    pub fn max_increase(mut self, factor: f64) -> Self {
        self.max_increase = factor;
        self
    }

    /// Sets the probability the limits never go below.
    #[must_use]
    pub fn min_probability(mut self, p: f64) -> Self {
        self.min_probability = p;
        self
    }

    /// Sets the probability the limits never go above.
    #[must_use]
    pub fn max_probability(mut self, p: f64) -> Self {
        self.max_probability = p;
        self
    }

    /// The attribute sets the per-key counter
    /// ([`METRIC_KEY_DECISIONS`](crate::sampler::METRIC_KEY_DECISIONS)) may report at once:
    /// `(max_keys + 1) * 4` (every tracked key and the overflow entry, four outcomes each;
    /// 4100 at the default 1024 keys). The manager gives that instrument this cardinality
    /// limit when it is above `metrics.cardinality_limit`; a meter provider of your own
    /// needs a View that does the same, or the SDK's default limit (2000) folds the keys
    /// beyond it into one overflow set (`otel.metric.overflow = true`).
    pub fn key_metric_attribute_sets(&self) -> usize {
        self.max_keys
            .saturating_add(1)
            .saturating_mul(crate::sampler::KEY_OUTCOMES)
    }

    /// Whether any target or lower bound is set (otherwise the section has no effect).
    pub fn is_enabled(&self) -> bool {
        self.traces_per_second.is_some()
            || self.per_key_traces_per_second.is_some()
            || self.lower_bound_traces_per_second.is_some()
            || self.overflow_traces_per_second.is_some()
    }

    /// Whether decisions need the key table (a per-key target or lower bound).
    pub(crate) fn needs_keys(&self) -> bool {
        self.per_key_traces_per_second.is_some()
            || self.lower_bound_traces_per_second.is_some()
            || self.overflow_traces_per_second.is_some()
    }

    /// Checks every field; errors name the field (`sampling.limits.<name>`) and value.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let field = |name: &str| format!("sampling.limits.{name}");
        for (name, value) in [
            ("traces_per_second", self.traces_per_second),
            ("per_key_traces_per_second", self.per_key_traces_per_second),
            (
                "lower_bound_traces_per_second",
                self.lower_bound_traces_per_second,
            ),
            (
                "overflow_traces_per_second",
                self.overflow_traces_per_second,
            ),
        ] {
            if let Some(v) = value {
                traces_per_second(&field(name), v)?;
            }
        }
        if self.key.is_empty() || self.key.len() > MAX_KEY_ATTRIBUTES {
            return Err(Error::config(
                field("key"),
                format_args!("<{} attributes>", self.key.len()),
                format!("it must name 1 to {MAX_KEY_ATTRIBUTES} span attributes"),
            ));
        }
        for (i, name) in self.key.iter().enumerate() {
            if name.is_empty() || name.len() > 255 {
                return Err(Error::config(
                    format!("sampling.limits.key[{i}]"),
                    crate::config::validate::truncate(name, 64),
                    "an attribute name must be 1 to 255 bytes",
                ));
            }
        }
        if self.max_keys == 0 || self.max_keys > MAX_MAX_KEYS {
            return Err(Error::config(
                field("max_keys"),
                self.max_keys,
                format!("it must be between 1 and {MAX_MAX_KEYS}"),
            ));
        }
        seconds(&field("key_idle_secs"), self.key_idle_secs, 0.001, 86_400.0)?;
        seconds(
            &field("adaptation_time_secs"),
            self.adaptation_time_secs,
            0.001,
            3_600.0,
        )?;
        if !(1.0..=1e6).contains(&self.max_increase) {
            return Err(Error::config(
                field("max_increase"),
                self.max_increase,
                "it must be a factor between 1.0 (never increase) and 1000000",
            ));
        }
        for (name, p) in [
            ("min_probability", self.min_probability),
            ("max_probability", self.max_probability),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::config(
                    field(name),
                    p,
                    "it must be between 0.0 and 1.0",
                ));
            }
        }
        if self.min_probability > self.max_probability {
            return Err(Error::config(
                field("min_probability"),
                self.min_probability,
                format!(
                    "it must not exceed sampling.limits.max_probability ({})",
                    self.max_probability
                ),
            ));
        }
        Ok(())
    }
}

/// A rate in traces per second: finite, `0.0..=MAX_TRACES_PER_SECOND`.
pub(crate) fn traces_per_second(field: &str, v: f64) -> Result<(), Error> {
    if !(0.0..=MAX_TRACES_PER_SECOND).contains(&v) {
        return Err(Error::config(
            field,
            v,
            "it must be a number of traces per second between 0 and 1000000000",
        ));
    }
    Ok(())
}

fn seconds(field: &str, v: f64, min: f64, max: f64) -> Result<(), Error> {
    if !(min..=max).contains(&v) {
        return Err(Error::config(
            field,
            v,
            format!("it must be a number of seconds between {min} and {max}"),
        ));
    }
    Ok(())
}
