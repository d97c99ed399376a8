//! `DeferredConfig`: deferred capture of error and slow traces (the `[deferred]` section of
//! a sampling configuration), and its checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Default `deferred.fraction`: every trace the head decision drops may be deferred (the
/// rate limit still applies).
pub const DEFAULT_DEFERRED_FRACTION: f64 = 1.0;
/// Default `deferred.max_per_second`: traces deferred per second per instance.
pub const DEFAULT_DEFERRED_MAX_PER_SECOND: u32 = 100;
/// Upper bound for `deferred.max_per_second`.
pub const MAX_DEFERRED_PER_SECOND: u32 = 1_000_000;
/// Default `deferred.slow_threshold_ms`: a request at least this long is kept as `slow`.
pub const DEFAULT_SLOW_THRESHOLD_MS: u64 = 1_000;
/// Upper bound for a slow threshold (and `deferred.timeout_ms`): one hour.
pub const MAX_DEFERRED_MILLIS: u64 = 3_600_000;
/// Most entries of `deferred.slow_routes`.
pub const MAX_SLOW_ROUTES: usize = 256;
/// Default `deferred.max_traces`: traces buffered at once.
pub const DEFAULT_DEFERRED_MAX_TRACES: usize = 1_024;
/// Upper bound for `deferred.max_traces`.
pub const MAX_DEFERRED_TRACES: usize = 1 << 20;
/// Default `deferred.max_spans_per_trace`.
pub const DEFAULT_DEFERRED_MAX_SPANS_PER_TRACE: usize = 256;
/// Upper bound for `deferred.max_spans_per_trace`.
pub const MAX_DEFERRED_SPANS_PER_TRACE: usize = 65_536;
/// Default `deferred.max_bytes`: 16 MiB of buffered span data (estimated) per instance.
pub const DEFAULT_DEFERRED_MAX_BYTES: usize = 16 << 20;
/// Upper bound for `deferred.max_bytes`: 1 GiB.
pub const MAX_DEFERRED_BYTES: usize = 1 << 30;
/// Default `deferred.timeout_ms`: a buffered trace whose local root has not ended after
/// 30 s is evicted at the next sweep.
pub const DEFAULT_DEFERRED_TIMEOUT_MS: u64 = 30_000;

/// Deferred capture: keep the error and slow traces the head decision dropped.
///
/// When the head decision (rules, high-value operations, base rate, rate limits, or an
/// unsampled caller) drops a trace at this service's entry, the sampler may record it
/// without sampling it (`RecordOnly`) instead: `fraction` of those traces, at most
/// `max_per_second`. The export pipeline buffers the spans of such a trace, bounded by
/// `max_traces`, `max_spans_per_trace` and `max_bytes`, until the trace's local root span
/// ends, then exports the whole local part of the trace when the request failed (`error`),
/// took at least its route's slow threshold (`slow`), or a downstream service answered that
/// it kept the trace (`downstream`); otherwise the buffer is freed. A trace whose root has
/// not ended after `timeout_ms` is evicted, lazily (see [`timeout_ms`](Self::timeout_ms)).
/// Off by default; see the
/// [sampler docs](crate::sampler#deferred-capture) for the details and the trade-offs.
///
/// ```
/// use std::time::Duration;
/// use meshtrace::sampler::{DeferredConfig, SamplingConfig};
///
/// let sampling = SamplingConfig::default().base_rate(0.01).deferred(
///     DeferredConfig::default()
///         .enabled(true)
///         .max_per_second(50)
///         .slow_threshold(Duration::from_millis(500))
///         .slow_route("/reports/**", Duration::from_secs(5)),
/// );
/// sampling.validate()?;
/// # Ok::<(), meshtrace::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DeferredConfig {
    /// Whether dropped traces may be deferred (default `false`).
    pub enabled: bool,
    /// Share of the dropped traces that are deferred, in `0.0..=1.0` (default 1.0). Chosen
    /// from the trace id (its upper 64 bits), so services with the same fraction defer the
    /// same traces.
    pub fraction: f64,
    /// Traces deferred per second per instance at most (default 100, `1..=1000000`); bursts
    /// up to this many.
    pub max_per_second: u32,
    /// A trace whose local root lasted at least this long is kept as `slow` (default 1000 ms).
    pub slow_threshold_ms: u64,
    /// Per-route slow thresholds, first match wins (route globs as in sampling rules);
    /// routes that match none use `slow_threshold_ms`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slow_routes: Vec<SlowRoute>,
    /// Traces buffered at once at most (default 1024); the local root of one more is not
    /// buffered (counted).
    pub max_traces: usize,
    /// Spans buffered per trace at most (default 256); more are dropped (counted).
    pub max_spans_per_trace: usize,
    /// Estimated bytes of span data buffered at once at most (default 16 MiB); a span that
    /// does not fit is dropped (counted).
    pub max_bytes: usize,
    /// A buffered trace whose local root has not ended after this long is evicted (default
    /// 30000 ms): set it above the longest request worth keeping. Eviction is lazy, there is
    /// no timer: a part of the buffer (one of its shards, chosen by trace id) is swept when
    /// a new deferred request starts in it, at most once every `timeout_ms / 4`, and the
    /// whole buffer on [`TracingManager::force_flush`](crate::TracingManager::force_flush).
    /// An expired trace keeps its place until then (still within `max_traces` and
    /// `max_bytes`); evicted, it is dropped and counted, and its spans that end later are
    /// dropped too.
    pub timeout_ms: u64,
    /// Outgoing calls of a deferred request say "sampled" in `traceparent` (default
    /// `false`: they say "not sampled", and each downstream service decides for itself).
    pub propagate_sampled: bool,
}

impl Default for DeferredConfig {
    fn default() -> Self {
        DeferredConfig {
            enabled: false,
            fraction: DEFAULT_DEFERRED_FRACTION,
            max_per_second: DEFAULT_DEFERRED_MAX_PER_SECOND,
            slow_threshold_ms: DEFAULT_SLOW_THRESHOLD_MS,
            slow_routes: Vec::new(),
            max_traces: DEFAULT_DEFERRED_MAX_TRACES,
            max_spans_per_trace: DEFAULT_DEFERRED_MAX_SPANS_PER_TRACE,
            max_bytes: DEFAULT_DEFERRED_MAX_BYTES,
            timeout_ms: DEFAULT_DEFERRED_TIMEOUT_MS,
            propagate_sampled: false,
        }
    }
}

/// A slow threshold for the routes a glob matches (`[[deferred.slow_routes]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SlowRoute {
    /// Route template glob (same syntax as [`SamplingRule::route`](crate::sampler::SamplingRule::route)).
    pub route: String,
    /// The threshold in milliseconds (`1..=3600000`).
    pub threshold_ms: u64,
}

impl SlowRoute {
    /// A threshold for the routes `route_glob` matches.
    pub fn new(route_glob: impl Into<String>, threshold: Duration) -> Self {
        SlowRoute {
            route: route_glob.into(),
            threshold_ms: to_millis(threshold),
        }
    }
}

impl DeferredConfig {
    /// Turns deferred capture on or off.
    #[must_use]
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// Sets the share of dropped traces that are deferred.
    #[must_use]
    pub fn fraction(mut self, fraction: f64) -> Self {
        self.fraction = fraction;
        self
    }

    /// Sets the most traces deferred per second.
    #[must_use]
    pub fn max_per_second(mut self, n: u32) -> Self {
        self.max_per_second = n;
        self
    }

    /// Sets the default slow threshold.
    #[must_use]
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold_ms = to_millis(threshold);
        self
    }

    /// Adds a slow threshold for the routes `route_glob` matches (first match wins).
    #[must_use]
    pub fn slow_route(mut self, route_glob: impl Into<String>, threshold: Duration) -> Self {
        self.slow_routes.push(SlowRoute::new(route_glob, threshold));
        self
    }

    /// Sets the most traces buffered at once.
    #[must_use]
    pub fn max_traces(mut self, n: usize) -> Self {
        self.max_traces = n;
        self
    }

    /// Sets the most spans buffered per trace.
    #[must_use]
    pub fn max_spans_per_trace(mut self, n: usize) -> Self {
        self.max_spans_per_trace = n;
        self
    }

    /// Sets the most (estimated) bytes buffered at once.
    #[must_use]
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets how long a trace may wait for its local root to end.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = to_millis(timeout);
        self
    }

    /// Makes outgoing calls of deferred requests say "sampled".
    #[must_use]
    pub fn propagate_sampled(mut self, on: bool) -> Self {
        self.propagate_sampled = on;
        self
    }

    /// Checks every field; errors name the field (`sampling.deferred.<name>`) and value.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let field = |name: &str| format!("sampling.deferred.{name}");
        if !(0.0..=1.0).contains(&self.fraction) {
            return Err(Error::config(
                field("fraction"),
                self.fraction,
                "it must be between 0.0 and 1.0",
            ));
        }
        if self.max_per_second == 0 || self.max_per_second > MAX_DEFERRED_PER_SECOND {
            return Err(Error::config(
                field("max_per_second"),
                self.max_per_second,
                format!(
                    "it must be a whole number of traces per second between 1 and \
                     {MAX_DEFERRED_PER_SECOND} (turn deferral off with enabled = false)"
                ),
            ));
        }
        millis(&field("slow_threshold_ms"), self.slow_threshold_ms)?;
        millis(&field("timeout_ms"), self.timeout_ms)?;
        if self.slow_routes.len() > MAX_SLOW_ROUTES {
            return Err(Error::config(
                field("slow_routes"),
                format_args!("<{} routes>", self.slow_routes.len()),
                format!("at most {MAX_SLOW_ROUTES} routes are accepted"),
            ));
        }
        for (i, route) in self.slow_routes.iter().enumerate() {
            millis(
                &format!("sampling.deferred.slow_routes[{i}].threshold_ms"),
                route.threshold_ms,
            )?;
        }
        for (name, value, max) in [
            ("max_traces", self.max_traces, MAX_DEFERRED_TRACES),
            (
                "max_spans_per_trace",
                self.max_spans_per_trace,
                MAX_DEFERRED_SPANS_PER_TRACE,
            ),
            ("max_bytes", self.max_bytes, MAX_DEFERRED_BYTES),
        ] {
            if value == 0 || value > max {
                return Err(Error::config(
                    field(name),
                    value,
                    format!("it must be between 1 and {max}"),
                ));
            }
        }
        Ok(())
    }
}

fn millis(field: &str, ms: u64) -> Result<(), Error> {
    if ms == 0 || ms > MAX_DEFERRED_MILLIS {
        return Err(Error::config(
            field,
            ms,
            format!("it must be a number of milliseconds between 1 and {MAX_DEFERRED_MILLIS}"),
        ));
    }
    Ok(())
}

fn to_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
