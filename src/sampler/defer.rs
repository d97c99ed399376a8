//! Deferred capture, the sampler's side: which dropped traces are recorded without being
//! sampled (`RecordOnly`), and the request-scoped marker that the layers and the sampler
//! share. The buffer that decides what is exported lives in `export::deferred`.
//!
//! # Which spans are deferred
//!
//! * At the service entry (no valid parent, or a remote parent), a decision that would drop
//!   the span becomes `RecordOnly` when deferral is on, an export pipeline that buffers
//!   deferred spans is attached (the manager's), the trace id is within `fraction`, and the
//!   per-instance limit (`max_per_second`, GCRA on one atomic) has room.
//! * A span with a local parent that is not sampled is deferred too when that parent was:
//!   the parent is still recording, or the parent Context carries the request's
//!   [`TraceKeep`] marker for the same trace (so a span started by work the request spawned
//!   still follows the request after its root ended). A remote child (the next service)
//!   sees an unsampled `traceparent` and decides for itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::trace::TraceId;

use super::config::DeferredConfig;
use super::rules::{Route, RouteMatcher};
use crate::Error;

/// The response header with which a service tells its caller that it kept the trace:
/// `traceresponse: 00-<trace-id>-<span-id>-01` (W3C Trace Context "HTTP Response Headers"
/// draft); the client layers read it on the responses of deferred calls.
pub const TRACE_RESPONSE_HEADER: &str = "traceresponse";

/// A validated [`DeferredConfig`] in the form the decision path and the buffer read.
#[derive(Debug)]
pub(crate) struct DeferredSettings {
    pub(crate) enabled: bool,
    /// Deferred iff the trace id's upper 64 bits are below this (2^64: always).
    fraction_bound: u128,
    pub(crate) max_per_second: u32,
    slow_default: Duration,
    slow_routes: Vec<(RouteMatcher, Duration)>,
    pub(crate) max_traces: usize,
    pub(crate) max_spans_per_trace: usize,
    pub(crate) max_bytes: usize,
    pub(crate) timeout: Duration,
    pub(crate) propagate_sampled: bool,
}

impl DeferredSettings {
    pub(crate) fn new(config: &DeferredConfig) -> Result<Self, Error> {
        config.check()?;
        let mut slow_routes = Vec::with_capacity(config.slow_routes.len());
        for (i, route) in config.slow_routes.iter().enumerate() {
            let field = format!("sampling.deferred.slow_routes[{i}].route");
            slow_routes.push((
                RouteMatcher::new(&field, &route.route)?,
                Duration::from_millis(route.threshold_ms),
            ));
        }
        // `fraction` is in 0..=1, so the product is in 0..=2^64.
        let fraction_bound = (config.fraction * 18_446_744_073_709_551_616.0) as u128;
        Ok(DeferredSettings {
            enabled: config.enabled,
            fraction_bound,
            max_per_second: config.max_per_second,
            slow_default: Duration::from_millis(config.slow_threshold_ms),
            slow_routes,
            max_traces: config.max_traces,
            max_spans_per_trace: config.max_spans_per_trace,
            max_bytes: config.max_bytes,
            timeout: Duration::from_millis(config.timeout_ms),
            propagate_sampled: config.propagate_sampled,
        })
    }

    /// Whether `trace_id` is within `fraction` (its upper 64 bits, independent of the low
    /// 56 bits that consistent probability sampling reads).
    #[inline]
    pub(crate) fn picks(&self, trace_id: TraceId) -> bool {
        let upper = u128::from_be_bytes(trace_id.to_bytes()) >> 64;
        upper < self.fraction_bound
    }

    /// The slow threshold of `route` (the route template), or the default.
    pub(crate) fn slow_threshold(&self, route: Option<&str>) -> Duration {
        if let Some(route) = route {
            let route = Route::new(route);
            for (matcher, threshold) in &self.slow_routes {
                if matcher.is_match(&route) {
                    return *threshold;
                }
            }
        }
        self.slow_default
    }
}

/// Request-scoped state of a trace whose export is decided at its end, or whose caller
/// may be waiting to hear whether it was kept. The server layer puts it into the request's
/// Context (one allocation, only for such requests); clones of the Context share it.
#[derive(Debug)]
pub(crate) struct TraceKeep {
    pub(crate) trace_id: TraceId,
    /// The request is deferred (not sampled at its head).
    pub(crate) deferred: bool,
    /// A downstream service answered that it kept the trace.
    downstream: AtomicBool,
    /// Outgoing calls say "sampled" (`deferred.propagate_sampled`).
    pub(crate) propagate_sampled: bool,
    /// When the request becomes slow enough to be kept, if the threshold is known.
    pub(crate) slow_at: Option<Instant>,
    /// The caller is a traced service that did not sample the trace: tell it, with
    /// `traceresponse`, when this service keeps it.
    pub(crate) respond: bool,
}

impl TraceKeep {
    pub(crate) fn new(
        trace_id: TraceId,
        deferred: bool,
        settings: Option<&DeferredSettings>,
        route: Option<&str>,
        respond: bool,
    ) -> Self {
        TraceKeep {
            trace_id,
            deferred,
            downstream: AtomicBool::new(false),
            propagate_sampled: settings.is_some_and(|s| s.propagate_sampled),
            slow_at: settings
                .filter(|_| deferred)
                .and_then(|s| Instant::now().checked_add(s.slow_threshold(route))),
            respond,
        }
    }

    /// Notes that a downstream service kept the trace.
    pub(crate) fn set_downstream_kept(&self) {
        self.downstream.store(true, Ordering::Relaxed);
    }

    /// Whether a downstream service kept the trace.
    pub(crate) fn downstream_kept(&self) -> bool {
        self.downstream.load(Ordering::Relaxed)
    }

    /// Whether this service will export its part of the trace, as far as is known when the
    /// response head goes out: it was sampled, or it failed (5xx), or it is already slow,
    /// or a downstream service kept the trace.
    pub(crate) fn kept_at_head(&self, server_error: bool) -> bool {
        !self.deferred
            || server_error
            || self.downstream_kept()
            || self.slow_at.is_some_and(|at| Instant::now() >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::config::SlowRoute;

    #[test]
    fn fraction_reads_the_upper_bits() {
        let settings = |fraction: f64| {
            DeferredSettings::new(&DeferredConfig::default().fraction(fraction)).unwrap()
        };
        let low = TraceId::from(0x0000_0000_0000_0000_ffff_ffff_ffff_ffff_u128);
        let high = TraceId::from(0xffff_ffff_ffff_fff0_0000_0000_0000_0000_u128);
        let cases = [
            (1.0, low, true),
            (1.0, high, true),
            (0.0, low, false),
            (0.5, low, true),
            (0.5, high, false),
        ];
        for (fraction, id, expected) in cases {
            assert_eq!(settings(fraction).picks(id), expected, "{fraction} {id}");
        }
    }

    #[test]
    fn slow_thresholds_by_route_first_match() {
        let mut config = DeferredConfig::default().slow_threshold(Duration::from_millis(300));
        config.slow_routes = vec![
            SlowRoute::new("/reports/**", Duration::from_secs(5)),
            SlowRoute::new("/reports/daily", Duration::from_millis(1)),
        ];
        let settings = DeferredSettings::new(&config).unwrap();
        let cases = [
            (Some("/reports/daily"), Duration::from_secs(5)),
            (Some("/reports"), Duration::from_secs(5)),
            (Some("/orders/{id}"), Duration::from_millis(300)),
            (None, Duration::from_millis(300)),
        ];
        for (route, expected) in cases {
            assert_eq!(settings.slow_threshold(route), expected, "{route:?}");
        }
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases: Vec<(DeferredConfig, &str)> = vec![
            (
                DeferredConfig::default().fraction(1.5),
                "sampling.deferred.fraction = \"1.5\" is invalid",
            ),
            (
                DeferredConfig::default().max_per_second(0),
                "sampling.deferred.max_per_second = \"0\" is invalid",
            ),
            (
                DeferredConfig::default().max_traces(0),
                "sampling.deferred.max_traces = \"0\" is invalid",
            ),
            (
                DeferredConfig::default().timeout(Duration::ZERO),
                "sampling.deferred.timeout_ms = \"0\" is invalid",
            ),
            (
                DeferredConfig::default().slow_route("", Duration::from_secs(1)),
                "sampling.deferred.slow_routes[0].route",
            ),
        ];
        for (config, expected) in cases {
            let message = DeferredSettings::new(&config).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{message}");
        }
    }
}
