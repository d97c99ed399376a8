//! Central sampling strategies in Jaeger's format, and how they apply to the sampler.
//!
//! A strategy is the JSON a Jaeger agent or collector serves at `GET
//! <endpoint>?service=<name>` (proto JSON, camelCase; the snake_case field names of the
//! proto definition are accepted too). Exactly one of three kinds applies, checked in the
//! order Jaeger recommends:
//!
//! * `operationSampling`: `defaultSamplingProbability` replaces the base rate;
//!   `perOperationStrategies` give a probability per operation (the span name, e.g.
//!   `GET /orders/{id}`); `defaultLowerBoundTracesPerSecond` becomes the per-key lower bound
//!   and `defaultUpperBoundTracesPerSecond` (when above 0) the per-key target;
//! * `rateLimitingSampling`: `maxTracesPerSecond` becomes the global target, with base
//!   probability 1;
//! * `probabilisticSampling`: `samplingRate` replaces the base rate.
//!
//! Local rules and high-value operations still come first (they are the service owner's
//! word); the strategy replaces step 5 (base) and tightens the local limits (the lower of a
//! local and a remote target wins). Kept spans decided by the strategy carry
//! `sampler.type` (`probabilistic`, `ratelimiting` or `lowerbound`) and `sampler.param`, as
//! Jaeger's adaptive sampling expects: for `probabilistic` and `lowerbound` the probability
//! in force when the span was decided (the strategy's, or lower when a local limit lowered
//! it; the same probability as the span's `th`), for `ratelimiting` the traces per second.
//!
//! Where strategies come from: [`SamplerHandle::apply_strategy`](super::SamplerHandle::apply_strategy)
//! from any source; with feature `jaeger-remote`, a poller that a `TracingManager` starts from
//! its `[remote_sampling]` configuration (see [`RemoteSamplingConfig`](super::RemoteSamplingConfig)),
//! or `SamplerHandle::poll_strategies` without a manager.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::{KeyValue, Value};
use serde::Deserialize;

use super::LimitsConfig;
use super::consistent::Threshold;
use super::rules::Outcome;
use crate::Error;

/// Most per-operation strategies accepted.
pub const MAX_OPERATIONS: usize = 4096;
/// Longest operation name accepted.
pub const MAX_OPERATION_LEN: usize = 512;

/// The attribute naming the strategy that kept a span (Jaeger's convention).
pub const SAMPLER_TYPE: &str = "sampler.type";
/// The attribute holding the strategy's parameter (probability or traces per second).
pub const SAMPLER_PARAM: &str = "sampler.param";

/// A validated central sampling strategy (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SamplingStrategy {
    /// A fixed probability for every root decision the local rules leave to the base rate.
    Probabilistic {
        /// The probability.
        rate: f64,
    },
    /// A global target in traces per second.
    RateLimiting {
        /// Traces per second.
        max_traces_per_second: f64,
    },
    /// Probabilities per operation, with defaults and per-key bounds.
    PerOperation {
        /// The probability of operations not listed.
        default_probability: f64,
        /// Guaranteed traces per second per key (0: none).
        lower_bound_traces_per_second: f64,
        /// Per-key target (0 or absent: none).
        upper_bound_traces_per_second: Option<f64>,
        /// `(operation, probability)`, in the order served.
        operations: Vec<(String, f64)>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default, alias = "strategy_type")]
    #[allow(dead_code)] // legacy union tag; Jaeger asks consumers to ignore it
    strategy_type: Option<serde_json::Value>,
    #[serde(default, alias = "probabilistic_sampling")]
    probabilistic_sampling: Option<Probabilistic>,
    #[serde(default, alias = "rate_limiting_sampling")]
    rate_limiting_sampling: Option<RateLimiting>,
    #[serde(default, alias = "operation_sampling")]
    operation_sampling: Option<PerOperation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probabilistic {
    #[serde(alias = "sampling_rate")]
    sampling_rate: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RateLimiting {
    #[serde(alias = "max_traces_per_second")]
    max_traces_per_second: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PerOperation {
    #[serde(default, alias = "default_sampling_probability")]
    default_sampling_probability: f64,
    #[serde(default, alias = "default_lower_bound_traces_per_second")]
    default_lower_bound_traces_per_second: f64,
    #[serde(default, alias = "default_upper_bound_traces_per_second")]
    default_upper_bound_traces_per_second: Option<f64>,
    #[serde(default, alias = "per_operation_strategies")]
    per_operation_strategies: Vec<Operation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    operation: String,
    #[serde(alias = "probabilistic_sampling")]
    probabilistic_sampling: Probabilistic,
}

impl SamplingStrategy {
    /// Parses and validates a strategy document; the error names the field and value.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let response: Response = serde_json::from_str(text).map_err(|e| {
            // Redacted like every parse error: serde quotes the values it rejects.
            let message = crate::config::file::redact(&e.to_string());
            Error::parse("JSON", format!("sampling strategy: {message}"))
        })?;
        let strategy = if let Some(op) = response.operation_sampling {
            SamplingStrategy::PerOperation {
                default_probability: op.default_sampling_probability,
                lower_bound_traces_per_second: op.default_lower_bound_traces_per_second,
                upper_bound_traces_per_second: op
                    .default_upper_bound_traces_per_second
                    .filter(|v| *v > 0.0),
                operations: op
                    .per_operation_strategies
                    .into_iter()
                    .map(|o| (o.operation, o.probabilistic_sampling.sampling_rate))
                    .collect(),
            }
        } else if let Some(rl) = response.rate_limiting_sampling {
            SamplingStrategy::RateLimiting {
                max_traces_per_second: rl.max_traces_per_second,
            }
        } else if let Some(p) = response.probabilistic_sampling {
            SamplingStrategy::Probabilistic {
                rate: p.sampling_rate,
            }
        } else {
            return Err(Error::config(
                "sampling strategy",
                "<no strategy>",
                "it must hold operationSampling, rateLimitingSampling or probabilisticSampling",
            ));
        };
        strategy.validate()?;
        Ok(strategy)
    }

    /// Checks every value; the error names the field and value.
    pub fn validate(&self) -> Result<(), Error> {
        let rate = |field: &str, p: f64| super::config::validate::rate(field, p).map(|_| ());
        match self {
            SamplingStrategy::Probabilistic { rate: p } => {
                rate("strategy.probabilisticSampling.samplingRate", *p)
            }
            SamplingStrategy::RateLimiting {
                max_traces_per_second,
            } => super::config::limits_traces_per_second(
                "strategy.rateLimitingSampling.maxTracesPerSecond",
                *max_traces_per_second,
            ),
            SamplingStrategy::PerOperation {
                default_probability,
                lower_bound_traces_per_second,
                upper_bound_traces_per_second,
                operations,
            } => {
                rate(
                    "strategy.operationSampling.defaultSamplingProbability",
                    *default_probability,
                )?;
                super::config::limits_traces_per_second(
                    "strategy.operationSampling.defaultLowerBoundTracesPerSecond",
                    *lower_bound_traces_per_second,
                )?;
                if let Some(v) = upper_bound_traces_per_second {
                    super::config::limits_traces_per_second(
                        "strategy.operationSampling.defaultUpperBoundTracesPerSecond",
                        *v,
                    )?;
                }
                if operations.len() > MAX_OPERATIONS {
                    return Err(Error::config(
                        "strategy.operationSampling.perOperationStrategies",
                        format_args!("<{} operations>", operations.len()),
                        format!("at most {MAX_OPERATIONS} operations are accepted"),
                    ));
                }
                for (i, (name, p)) in operations.iter().enumerate() {
                    let field = format!("strategy.operationSampling.perOperationStrategies[{i}]");
                    if name.is_empty() || name.len() > MAX_OPERATION_LEN {
                        return Err(Error::config(
                            format!("{field}.operation"),
                            crate::config::validate::truncate(name, 64),
                            format!("an operation name must be 1 to {MAX_OPERATION_LEN} bytes"),
                        ));
                    }
                    rate(&format!("{field}.probabilisticSampling.samplingRate"), *p)?;
                }
                Ok(())
            }
        }
    }

    /// The local limits with this strategy's bounds applied (the lower target wins).
    pub(crate) fn merge_limits(&self, local: &LimitsConfig) -> LimitsConfig {
        let lower = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut merged = local.clone();
        match self {
            SamplingStrategy::Probabilistic { .. } => {}
            SamplingStrategy::RateLimiting {
                max_traces_per_second,
            } => {
                merged.traces_per_second =
                    lower(local.traces_per_second, Some(*max_traces_per_second));
            }
            SamplingStrategy::PerOperation {
                lower_bound_traces_per_second,
                upper_bound_traces_per_second,
                ..
            } => {
                merged.per_key_traces_per_second = lower(
                    local.per_key_traces_per_second,
                    *upper_bound_traces_per_second,
                );
                if *lower_bound_traces_per_second > 0.0 {
                    merged.lower_bound_traces_per_second = Some(*lower_bound_traces_per_second);
                }
            }
        }
        merged
    }
}

/// An outcome of the strategy, with its Jaeger attributes.
#[derive(Debug)]
pub(crate) struct RemoteOutcome {
    pub(crate) outcome: Outcome,
    /// `sampler.type` / `sampler.param` of a span kept at the strategy's own probability.
    tags: [KeyValue; 2],
    /// Whether `sampler.param` is a probability (`probabilistic`), not a rate.
    probabilistic: bool,
}

impl RemoteOutcome {
    fn new(kind: &'static str, param: f64, probability: f64) -> Self {
        let threshold = Threshold::from_probability(probability).unwrap_or(Threshold::NEVER);
        RemoteOutcome {
            outcome: Outcome::new(threshold, Value::from("remote")),
            tags: [
                KeyValue::new(SAMPLER_TYPE, kind),
                KeyValue::new(SAMPLER_PARAM, param),
            ],
            probabilistic: kind == "probabilistic",
        }
    }

    /// `sampler.type` / `sampler.param` of a span kept at `threshold`, the probability in
    /// force. A `probabilistic` pick states that probability: Jaeger's adaptive sampling
    /// counts these spans and checks `sampler.param` against the probability it served, so
    /// a local limit below it shows as such (Jaeger then leaves its probability as it is
    /// instead of raising it to make up for what the limit drops), and the parameter agrees
    /// with `th`. A `ratelimiting` pick
    /// keeps its traces per second, the parameter of that sampler type.
    pub(crate) fn tags(&self, threshold: Threshold) -> [KeyValue; 2] {
        if !self.probabilistic || threshold == self.outcome.threshold {
            return self.tags.clone();
        }
        [
            self.tags[0].clone(),
            KeyValue::new(SAMPLER_PARAM, threshold.probability()),
        ]
    }

    /// The same for a lower-bound pick: `lowerbound` and the probability in force (the one
    /// that dropped the span), as Jaeger's guaranteed-throughput sampler reports it.
    pub(crate) fn lower_tags(&self, threshold: Threshold) -> [KeyValue; 2] {
        [
            KeyValue::new(SAMPLER_TYPE, "lowerbound"),
            KeyValue::new(SAMPLER_PARAM, threshold.probability()),
        ]
    }
}

/// A strategy in the form the decision path reads.
#[derive(Debug)]
pub(crate) struct CompiledStrategy {
    pub(crate) source: Arc<SamplingStrategy>,
    default: RemoteOutcome,
    operations: HashMap<Box<str>, RemoteOutcome>,
}

impl CompiledStrategy {
    pub(crate) fn new(strategy: Arc<SamplingStrategy>) -> Self {
        let (default, operations) = match &*strategy {
            SamplingStrategy::Probabilistic { rate } => (
                RemoteOutcome::new("probabilistic", *rate, *rate),
                HashMap::new(),
            ),
            SamplingStrategy::RateLimiting {
                max_traces_per_second,
            } => (
                RemoteOutcome::new("ratelimiting", *max_traces_per_second, 1.0),
                HashMap::new(),
            ),
            SamplingStrategy::PerOperation {
                default_probability,
                operations,
                ..
            } => (
                RemoteOutcome::new("probabilistic", *default_probability, *default_probability),
                operations
                    .iter()
                    .map(|(name, p)| {
                        (
                            name.as_str().into(),
                            RemoteOutcome::new("probabilistic", *p, *p),
                        )
                    })
                    .collect(),
            ),
        };
        CompiledStrategy {
            source: strategy,
            default,
            operations,
        }
    }

    /// The outcome for a span named `name`.
    #[inline]
    pub(crate) fn outcome(&self, name: &str) -> &RemoteOutcome {
        if self.operations.is_empty() {
            return &self.default;
        }
        self.operations.get(name).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_kinds_parse_in_both_spellings() {
        let cases: &[(&str, SamplingStrategy)] = &[
            (
                r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.25}}"#,
                SamplingStrategy::Probabilistic { rate: 0.25 },
            ),
            (
                r#"{"strategy_type":1,"rate_limiting_sampling":{"max_traces_per_second":7}}"#,
                SamplingStrategy::RateLimiting {
                    max_traces_per_second: 7.0,
                },
            ),
            (
                r#"{"operationSampling":{"defaultSamplingProbability":0.1,
                    "defaultLowerBoundTracesPerSecond":0.5,
                    "perOperationStrategies":[{"operation":"GET /a","probabilisticSampling":{"samplingRate":1}}]},
                    "probabilisticSampling":{"samplingRate":0.9}}"#,
                SamplingStrategy::PerOperation {
                    default_probability: 0.1,
                    lower_bound_traces_per_second: 0.5,
                    upper_bound_traces_per_second: None,
                    operations: vec![("GET /a".to_owned(), 1.0)],
                },
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(
                &SamplingStrategy::from_json(json).unwrap(),
                expected,
                "{json}"
            );
        }
    }

    #[test]
    fn invalid_strategies_are_errors_naming_the_field() {
        let cases: &[(&str, &str)] = &[
            ("{}", "sampling strategy"),
            ("not json", "JSON"),
            (
                r#"{"probabilisticSampling":{"samplingRate":1.5}}"#,
                "strategy.probabilisticSampling.samplingRate = \"1.5\"",
            ),
            (
                r#"{"rateLimitingSampling":{"maxTracesPerSecond":-1}}"#,
                "strategy.rateLimitingSampling.maxTracesPerSecond",
            ),
            (
                r#"{"operationSampling":{"defaultSamplingProbability":0.1,"perOperationStrategies":[{"operation":"","probabilisticSampling":{"samplingRate":1}}]}}"#,
                "perOperationStrategies[0].operation",
            ),
        ];
        for (json, needle) in cases {
            let e = SamplingStrategy::from_json(json).unwrap_err().to_string();
            assert!(e.contains(needle), "{json}: {e}");
        }
    }
}
