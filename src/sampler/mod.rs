//! Priority-based, consistent head sampling.
//!
//! [`CustomSampler`] implements the SDK's [`ShouldSample`]. For every span the
//! first step that applies decides, and a span this sampler decided to keep gets the
//! attribute `sampling.reason` (a span that follows its parent gets none: the decision
//! was made where the trace came from, which says why; every span that
//! [deferred capture](#deferred-capture) exports carries its reason):
//!
//! 1. **Debug** (`debug`): only at the service entry (no valid parent, or a
//!    remote parent), when the parent `Context` holds a [`DebugRequest`] whose
//!    token is allow-listed or (feature `debug-hmac`) an unexpired HMAC token for
//!    the trace id (see [`DebugConfig`] for the format and a recipe to mint one),
//!    and the per-instance limit (`debug.max_per_second`, default 10) has room. An
//!    invalid, expired or excess token has no effect. Local child spans never
//!    consume the limit; they follow their parent (step 2).
//! 2. **Parent** (no `sampling.reason`): a sampled parent keeps the span, an unsampled
//!    parent drops it, for remote and local parents, like the specification's
//!    ParentThreshold: the parent's `th` is kept, a parent without `th` gives
//!    none, an inconsistent parent (`rv` < `th`) is kept but its `th` removed.
//!    When the parent `Context` holds [`UntrustedEdge`] and the parent is remote,
//!    the remote sampled flag is ignored and steps 3-5 decide (same trace id).
//! 3. **Rules** (`rule:<name>`): the matching rule with the highest priority
//!    (ties: list order).
//! 4. **High-value operations** (`high_value`) at `high_value_rate` (default 1.0).
//! 5. **Base rate** (`base`, default 1.0), or the central strategy in force
//!    (`remote`, see [`strategy`]; its kept spans also carry `sampler.type` and
//!    `sampler.param`; a `TracingManager` polls strategies when configured with a
//!    [`RemoteSamplingConfig`]).
//!
//! **Rate limits** ([`LimitsConfig`], off by default) then lower the probability of steps
//! 3-5 to follow global and per-key targets in traces per second, and a key's lower bound
//! may keep a span the probability dropped (`lower_bound`, without `th`); see the `limit`
//! and `adaptive` modules' docs (in the source) for the estimator and how it improves on
//! OpenTelemetry Java contrib's rate-limiting sampler. [`SamplerHandle::stats`] counts every
//! decision by outcome, [`SamplerHandle::register_metrics`] exports the counts.
//!
//! Steps 3-5 use OpenTelemetry consistent probability sampling: randomness `R`
//! is the `rv` sub-key of the `ot` tracestate entry when valid, else the low 56
//! bits of the trace id; the span is kept iff `R >= 2^56 - round(p * 2^56)`, and
//! a kept span carries `ot=th:<threshold>`. Services that sample the same trace
//! at `p_a <= p_b` therefore keep nested sets. Debug decisions remove `th`;
//! `th` is never written on a dropped span; `rv` and other vendors' entries are
//! never changed. Rates of 1.0 are probabilistic decisions too (`th:0`).
//!
//! # What the sampler reads
//!
//! Rules see only what exists when the span starts: the span kind and the
//! attributes `http.route` (the route template, never the raw path) and
//! `http.request.method`, plus any attribute a rule names. The server layer
//! therefore creates its span with those attributes and puts [`DebugRequest`]
//! (the bounded raw header value; the sampler validates it) and, for requests
//! from outside the mesh, [`UntrustedEdge`] into the parent `Context` before the
//! span starts; which header carries the token is the layer's setting
//! (`TracingLayer::debug_header`, default [`DEFAULT_DEBUG_HEADER`]). The decision
//! path never waits for a reload, and takes no lock that covers the sampler or the key
//! table: without rate limits it takes no lock at all (one `arc-swap` load); with them it
//! adds to per-thread counter shards (atomic adds) and, once per tick
//! (`adaptation_time_secs / 64`) per estimate, takes that estimate's `Mutex::try_lock`
//! (never waited for) and publishes the new probability with atomic stores. Claiming a
//! slot for a new key locks that slot's own mutexes, which only a
//! [`SamplerHandle::stats`] snapshot or an update of that slot in progress can hold. It
//! allocates nothing when a span is dropped without parent tracestate (a parent's
//! tracestate is cloned into the result, as the SDK's API requires), and a kept decision
//! allocates only the `Vec` of its attributes (`sampling.reason`, and under a central
//! strategy `sampler.type` and `sampler.param`).
//!
//! The SDK (0.33) builds a new root's trace flags from the parent's, so a
//! sampler cannot set the W3C random flag (0x02); the id generator and the
//! propagator own that bit.
//!
//! ```
//! use meshtrace::sampler::{CustomSampler, DebugConfig, SamplingConfig, SamplingRule};
//! use opentelemetry::trace::{Tracer, TracerProvider};
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//!
//! let sampler = CustomSampler::new(
//!     SamplingConfig::default()
//!         .base_rate(0.1)
//!         .rule(SamplingRule::new("health", 0.0).route("/health*"))
//!         .high_value("/checkout", "POST")
//!         .debug(DebugConfig::default().token("let-me-debug")),
//! )?;
//! let handle = sampler.handle(); // keep it to change rates at runtime
//! let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
//! let _span = provider.tracer("doc").start("work");
//!
//! handle.reload(SamplingConfig::default().base_rate(0.5))?;
//! assert_eq!(handle.config().base_rate, 0.5);
//! # Ok::<(), meshtrace::Error>(())
//! ```
//!
//! The same configuration as a TOML file (also JSON, or YAML with the `yaml` feature,
//! chosen by the extension, see [`SamplingConfig::from_file`] and
//! [`SamplerHandle::reload_from_file`]):
//!
//! ```
//! # let text = r#"
//! base_rate = 0.1
//! high_value_rate = 1.0
//!
//! [[high_value]]
//! route = "/checkout"
//! method = "POST"
//!
//! [[rules]]
//! name = "health"
//! route = "/health*"
//! rate = 0.0
//! priority = 10
//!
//! [[rules]]
//! name = "order-reads"
//! route = "/orders/{id}"
//! method = "GET"
//! kind = "server"
//! rate = 0.5
//! attributes = { tenant = "acme" }
//!
//! [debug]
//! tokens = ["let-me-debug"]
//! max_per_second = 10
//! # "#;
//! # let config = meshtrace::sampler::SamplingConfig::from_toml_str(text)?;
//! # assert_eq!(config.rules.len(), 2);
//! # Ok::<(), meshtrace::Error>(())
//! ```
//!
//! # Deferred capture
//!
//! A head decision is made before the request has run, so at a 1% base rate it drops 99%
//! of the failing requests too. With [`DeferredConfig`] on (`[deferred]`, off by default),
//! a decision to drop at the service entry (no parent, or a remote one: steps 2-5 and the
//! rate limits) becomes **RecordOnly** instead for a bounded budget: the traces whose id is
//! within `fraction` (read from the upper 64 bits of the trace id, so services with the
//! same fraction pick the same traces), at most `max_per_second` per instance. Their local
//! child spans (`#[traced]`, `tracing` spans, client spans) are recorded too: a local
//! parent that is not sampled but still records, or whose Context carries the request's
//! private marker, makes its child RecordOnly (counted as `dropped` and `deferred` in
//! [`SamplerStats`]). Nothing is deferred unless an export pipeline that buffers
//! deferred spans sits in front of the exporter, i.e. the
//! [`TracingManager`](crate::TracingManager)'s: a `CustomSampler` used with a plain
//! `BatchSpanProcessor`, which would export RecordOnly spans, never defers.
//!
//! The manager's export gate buffers those spans per trace (bounded by `max_traces`,
//! `max_spans_per_trace`, `max_bytes`; drops counted) and decides when the trace's local
//! root ends: exported, with the sampled flag, `sampling.reason` = `error` (status Error:
//! 5xx, an error of the inner service, a panic, a cancelled request), `slow` (the root
//! lasted at least the slow threshold of its `http.route`, `slow_routes` first match, else
//! `slow_threshold_ms`) or `downstream` (a downstream service answered that it kept the
//! trace, see below), and no `th` in its tracestate; or freed. Spans still open then follow
//! the decision; a trace whose root has not ended after `timeout_ms` is evicted at the next
//! sweep (lazily: when a new deferred request lands in its shard of the buffer, or on
//! [`TracingManager::force_flush`](crate::TracingManager::force_flush)). See
//! [`ExportStats::deferred`](crate::export::ExportStats::deferred) for the counts and
//! [`crate::export`] for the buffer's locking.
//!
//! **The downstream signal** is the W3C `traceresponse` response header
//! ([`TRACE_RESPONSE_HEADER`], "Trace Context: HTTP Response Headers" draft):
//! `00-<trace-id>-<span-id>-01`. The server layer sends it when the caller is a traced,
//! trusted service that did not sample the trace and this service keeps it, as far as is
//! known when the response head goes out (sampled here, or deferred and a 5xx, already past
//! the slow threshold, or kept by a service further down); the client layers read it on
//! the responses of deferred calls. A failure found after the head was sent (a body that
//! fails, a client that hangs up) is exported here but cannot be announced any more.
//!
//! **Outgoing calls** of a deferred request say "not sampled" in `traceparent`, so each
//! downstream service decides for itself (and may defer in turn, and answer with
//! `traceresponse`). With `propagate_sampled = true` they say "sampled": downstream
//! services then record and export every deferred request's calls, whole traces for every
//! failure at the cost of the downstream volume of all deferred requests (`fraction` ×
//! `max_per_second`), and of downstream fragments whose upstream part is discarded.
//!
//! ```toml
//! base_rate = 0.01
//!
//! [deferred]
//! enabled = true
//! fraction = 1.0              # share of the dropped traces that are deferred
//! max_per_second = 100        # per instance
//! slow_threshold_ms = 1000
//! max_traces = 1024           # buffered at once
//! max_spans_per_trace = 256
//! max_bytes = 16777216        # estimated span data buffered at once
//! timeout_ms = 30000          # a root that has not ended by then is evicted (lazily)
//! propagate_sampled = false
//!
//! [[deferred.slow_routes]]
//! route = "/reports/**"
//! threshold_ms = 5000
//! ```

mod adaptive;
mod config;
pub mod consistent;
mod debug;
pub(crate) mod defer;
mod keys;
mod limit;
mod rate;
#[cfg(feature = "jaeger-remote")]
mod remote;
mod rules;
mod stats;
pub mod strategy;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::Error;
use opentelemetry::trace::{Link, SpanContext, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

pub(crate) use config::remote_service_problem;
pub use config::{
    AttributeMatch, DebugConfig, HighValueOperation, RuleSpanKind, SamplingConfig, SamplingRule,
};
pub use config::{
    DEBUG_TOKEN_CLOCK_SKEW_SECS, DEFAULT_DEBUG_HEADER, DEFAULT_DEBUG_MAX_AGE_SECS,
    DEFAULT_DEBUG_MAX_PER_SECOND, ENV_BASE_RATE, ENV_CONFIG_FILE, ENV_DEBUG_HMAC_SECRET,
    ENV_DEBUG_MAX_AGE_SECS, ENV_DEBUG_MAX_PER_SECOND, ENV_DEBUG_TOKENS, ENV_HIGH_VALUE_RATE,
    ENV_OTEL_SAMPLER, ENV_OTEL_SAMPLER_ARG, MAX_CONFIG_FILE_BYTES, MAX_DEBUG_MAX_AGE_SECS,
    MAX_DEBUG_PER_SECOND, MAX_DEBUG_TOKEN_LEN, MAX_RULE_NAME_LEN, MIN_HMAC_SECRET_LEN,
};
pub use config::{
    DEFAULT_ADAPTATION_TIME_SECS, DEFAULT_KEY_IDLE_SECS, DEFAULT_LIMIT_KEY, DEFAULT_MAX_INCREASE,
    DEFAULT_MAX_KEYS, ENV_ADAPTATION_TIME_SECS, ENV_KEY_IDLE_SECS, ENV_LIMIT_KEY,
    ENV_LOWER_BOUND_TRACES_PER_SECOND, ENV_MAX_INCREASE, ENV_MAX_KEYS, ENV_MAX_PROBABILITY,
    ENV_MIN_PROBABILITY, ENV_OVERFLOW_TRACES_PER_SECOND, ENV_PER_KEY_TRACES_PER_SECOND,
    ENV_TRACES_PER_SECOND, LimitsConfig, MAX_KEY_ATTRIBUTES, MAX_MAX_KEYS, MAX_TRACES_PER_SECOND,
};
pub use config::{
    DEFAULT_DEFERRED_FRACTION, DEFAULT_DEFERRED_MAX_BYTES, DEFAULT_DEFERRED_MAX_PER_SECOND,
    DEFAULT_DEFERRED_MAX_SPANS_PER_TRACE, DEFAULT_DEFERRED_MAX_TRACES, DEFAULT_DEFERRED_TIMEOUT_MS,
    DEFAULT_SLOW_THRESHOLD_MS, DeferredConfig, ENV_DEFERRED, ENV_DEFERRED_FRACTION,
    ENV_DEFERRED_MAX_BYTES, ENV_DEFERRED_MAX_PER_SECOND, ENV_DEFERRED_MAX_SPANS_PER_TRACE,
    ENV_DEFERRED_MAX_TRACES, ENV_DEFERRED_PROPAGATE_SAMPLED, ENV_DEFERRED_SLOW_ROUTES,
    ENV_DEFERRED_SLOW_THRESHOLD_MS, ENV_DEFERRED_TIMEOUT_MS, MAX_DEFERRED_BYTES,
    MAX_DEFERRED_MILLIS, MAX_DEFERRED_PER_SECOND, MAX_DEFERRED_SPANS_PER_TRACE,
    MAX_DEFERRED_TRACES, MAX_SLOW_ROUTES, SlowRoute,
};
pub use config::{
    DEFAULT_REMOTE_INTERVAL, DEFAULT_REMOTE_JITTER, DEFAULT_REMOTE_MAX_BODY_BYTES,
    DEFAULT_REMOTE_TIMEOUT, ENV_REMOTE_ENDPOINT, ENV_REMOTE_INTERVAL_SECS, ENV_REMOTE_JITTER,
    ENV_REMOTE_MAX_BODY_BYTES, ENV_REMOTE_SERVICE, ENV_REMOTE_TIMEOUT_MS, MAX_REMOTE_INTERVAL_SECS,
    MAX_REMOTE_MAX_BODY_BYTES, MAX_REMOTE_TIMEOUT_MS, RemoteSamplingConfig,
};
pub use debug::DebugRequest;
#[cfg(feature = "debug-hmac")]
pub use debug::debug_token_for;
pub use defer::TRACE_RESPONSE_HEADER;
pub use keys::MAX_KEY_TEXT;
#[cfg(feature = "jaeger-remote")]
pub use remote::{PollerStatus, StrategyPoller};
pub use stats::{
    KeyStats, METRIC_DECISIONS, METRIC_KEY_DECISIONS, METRIC_PROBABILITY, SamplerStats,
};
pub use strategy::{SAMPLER_PARAM, SAMPLER_TYPE, SamplingStrategy};

use config::validate;
pub(crate) use config::validate::{
    attribute as validate_attribute, rule_name as validate_rule_name,
};
use consistent::{Field, OtValue, with_threshold};
use debug::CompiledDebug;
use defer::{DeferredSettings, TraceKeep};
use limit::Limits;
use rate::{Clock, RateLimiter};
use rules::{
    CompiledHighValue, CompiledRule, MethodMatch, Outcome, RouteMatcher, RuleSet, SpanFacts,
};
pub(crate) use rules::{kind_bit as span_kind_bit, rule_kind_bit as rules_kind_bit};
pub(crate) use stats::KEY_OUTCOMES;
use stats::{Counters, Tally};
use strategy::CompiledStrategy;

/// The attribute naming why a span was sampled.
pub const SAMPLING_REASON: &str = "sampling.reason";

/// Marker the server layer puts into the parent `Context` for requests from
/// outside the mesh: the remote parent's sampled flag is ignored and the root
/// decision (rules, high-value, base) is made again, keeping the trace id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UntrustedEdge;

/// Which start attributes a [`CustomSampler`] decision reads (see
/// `CustomSampler::attributes_read`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttributesRead {
    /// None: the Context or the trace id decides.
    None,
    /// `http.route` and `http.request.method` (and the span kind).
    RouteAndMethod,
    /// Any attribute: a rule matches on attributes, or the span records whatever they
    /// say (a sampled parent that is followed, every root kept).
    All,
}

/// Why a span was sampled (the value of `sampling.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Debug,
    HighValue,
    Base,
}

impl Reason {
    fn value(self) -> Value {
        Value::from(match self {
            Reason::Debug => "debug",
            Reason::HighValue => "high_value",
            Reason::Base => "base",
        })
    }
}

/// A validated configuration in the form the decision path reads.
#[derive(Debug)]
pub(crate) struct Compiled {
    config: Arc<SamplingConfig>,
    base: Outcome,
    high_value_rate: Outcome,
    /// Sorted by priority, highest first; stable, so ties keep list order.
    rules: RuleSet,
    high_value: Vec<CompiledHighValue>,
    debug: CompiledDebug,
    /// Rate limits (with the central strategy's bounds applied), when any is set.
    limits: Option<Limits>,
    /// The central strategy in force, if any (it replaces the base rate).
    strategy: Option<CompiledStrategy>,
    /// Deferred capture (see [`defer`]).
    pub(crate) deferred: Arc<DeferredSettings>,
}

/// Compiles rule `i` (its name is already validated).
fn compile_rule(i: usize, rule: &SamplingRule) -> Result<CompiledRule, Error> {
    let field = |name: &str| format!("sampling.rules[{i}].{name}");
    let threshold = validate::rate(&field("rate"), rule.rate)?;
    let route = match &rule.route {
        Some(glob) => Some(RouteMatcher::new(&field("route"), glob)?),
        None => None,
    };
    if let Some(method) = &rule.method {
        validate::method(&field("method"), method)?;
    }
    for (key, value) in &rule.attributes {
        validate::attribute(&field("attributes"), key, value)?;
    }
    Ok(CompiledRule {
        route,
        method: MethodMatch::new(rule.method.as_deref()),
        kind_bits: rule.kind.map_or(u8::MAX, rules::rule_kind_bit),
        attributes: rule
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        // Arc-backed, so attaching it to each sampled span is a reference-count bump.
        outcome: Outcome::new(
            threshold,
            Value::String(opentelemetry::StringValue::from(Arc::<str>::from(format!(
                "rule:{}",
                rule.name
            )))),
        ),
    })
}

impl Compiled {
    /// Validates and compiles `config` (no runtime state: for validation).
    pub(crate) fn new(config: &SamplingConfig) -> Result<Self, Error> {
        Self::with_strategy(config, None)
    }

    /// Compiles `config` under the central `strategy`, and creates the limits' runtime
    /// state, reusing `previous`'s estimates where they still apply.
    fn build(
        config: &SamplingConfig,
        strategy: Option<Arc<SamplingStrategy>>,
        previous: Option<&Compiled>,
        now: u64,
    ) -> Result<Self, Error> {
        let mut compiled = Self::with_strategy(config, strategy)?;
        if let Some(limits) = &mut compiled.limits {
            limits.attach(previous.and_then(Compiled::limits_runtime), now);
        }
        Ok(compiled)
    }

    /// The limits' runtime state, if limits apply.
    pub(crate) fn limits_runtime(&self) -> Option<&limit::Runtime> {
        self.limits.as_ref().and_then(|l| l.runtime.as_ref())
    }

    fn with_strategy(
        config: &SamplingConfig,
        strategy: Option<Arc<SamplingStrategy>>,
    ) -> Result<Self, Error> {
        config.limits.check()?;
        let limits = match &strategy {
            Some(s) => Limits::new(&s.merge_limits(&config.limits)),
            None => Limits::new(&config.limits),
        };
        let base = validate::rate("sampling.base_rate", config.base_rate)?;
        let high_value_rate = validate::rate("sampling.high_value_rate", config.high_value_rate)?;
        let mut rules = Vec::with_capacity(config.rules.len());
        let mut names = std::collections::HashSet::new();
        for (i, rule) in config.rules.iter().enumerate() {
            let field = |name: &str| format!("sampling.rules[{i}].{name}");
            validate::rule_name(&field("name"), &rule.name)?;
            if !names.insert(rule.name.as_str()) {
                return Err(Error::config(
                    field("name"),
                    &rule.name,
                    "another rule has this name; rule names must be unique",
                ));
            }
            let compiled = compile_rule(i, rule).map_err(|mut e| {
                // `if let`: Error may grow variants that carry no reason.
                #[allow(irrefutable_let_patterns)]
                if let Error::Config { reason, .. } = &mut e {
                    reason.push_str(&format!(" (rule {:?})", rule.name));
                }
                e
            })?;
            rules.push((rule.priority, compiled));
        }
        rules.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
        let mut high_value = Vec::with_capacity(config.high_value.len());
        for (i, op) in config.high_value.iter().enumerate() {
            let route = RouteMatcher::new(&format!("sampling.high_value[{i}].route"), &op.route)?;
            if let Some(method) = &op.method {
                validate::method(&format!("sampling.high_value[{i}].method"), method)?;
            }
            high_value.push(CompiledHighValue {
                route,
                method: MethodMatch::new(op.method.as_deref()),
            });
        }
        let debug = CompiledDebug::new(&config.debug)?;
        let deferred = Arc::new(DeferredSettings::new(&config.deferred)?);
        Ok(Compiled {
            config: Arc::new(config.clone()),
            base: Outcome::new(base, Reason::Base.value()),
            high_value_rate: Outcome::new(high_value_rate, Reason::HighValue.value()),
            rules: RuleSet::new(rules.into_iter().map(|(_, r)| r).collect()),
            high_value,
            debug,
            limits,
            strategy: strategy.map(CompiledStrategy::new),
            deferred,
        })
    }

    /// Steps 3-5: the outcome for a root decision.
    #[inline]
    fn root_decision(&self, kind: &SpanKind, attributes: &[KeyValue]) -> &Outcome {
        if self.rules.is_empty() && self.high_value.is_empty() {
            return &self.base;
        }
        let facts = SpanFacts::read(kind, attributes);
        if let Some(rule) = self.rules.first_match(&facts, attributes) {
            return &rule.outcome;
        }
        if self.high_value.iter().any(|op| op.matches(&facts)) {
            return &self.high_value_rate;
        }
        &self.base
    }
}

struct Inner {
    compiled: ArcSwap<Compiled>,
    limiter: RateLimiter,
    clock: Clock,
    counters: Counters,
    /// Serializes reloads and strategy updates (never taken by a decision).
    reload: std::sync::Mutex<()>,
    /// The per-instance limit of deferred traces.
    defer_limiter: RateLimiter,
    /// An export pipeline that buffers deferred spans is attached: without one, nothing is
    /// deferred (a plain `BatchSpanProcessor` would export `RecordOnly` spans).
    deferred_attached: std::sync::atomic::AtomicBool,
}

/// The sampler: see the [module docs](self) for the decision order.
///
/// Cloning is cheap and clones share configuration and the debug rate limit.
#[derive(Clone)]
pub struct CustomSampler {
    inner: Arc<Inner>,
}

impl fmt::Debug for CustomSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomSampler")
            .field("config", &self.inner.compiled.load().config)
            .finish()
    }
}

impl CustomSampler {
    /// Validates `config` and builds the sampler.
    pub fn new(config: SamplingConfig) -> Result<Self, Error> {
        Self::build(config, Clock::System(Instant::now()))
    }

    /// Like [`CustomSampler::new`] with the time source replaced: `clock` returns the
    /// current time as a duration since the Unix epoch. It drives both the debug rate
    /// limit and the expiry of HMAC debug tokens. For tests and simulations.
    pub fn with_clock(
        config: SamplingConfig,
        clock: impl Fn() -> Duration + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        Self::build(config, Clock::Custom(Arc::new(clock)))
    }

    fn build(config: SamplingConfig, clock: Clock) -> Result<Self, Error> {
        let compiled = Compiled::build(&config, None, None, clock.now_nanos())?;
        Ok(CustomSampler {
            inner: Arc::new(Inner {
                compiled: ArcSwap::from_pointee(compiled),
                limiter: RateLimiter::default(),
                clock,
                counters: Counters::default(),
                reload: std::sync::Mutex::new(()),
                defer_limiter: RateLimiter::default(),
                deferred_attached: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Which of a span's start attributes a decision on it reads, under the
    /// configuration in force (for the server layer the manager hands out: attributes no
    /// decision reads are added only once the span records). Reads the configuration
    /// through the lock-free guard.
    pub(crate) fn attributes_read(&self, parent: &Context) -> AttributesRead {
        let span = parent.span();
        let sc = span.span_context();
        // Steps 1-2 decide on the Context alone: a debug token, or a parent that is
        // followed (a remote one unless the request comes from an untrusted edge).
        // A followed parent that is sampled keeps the span: it will record, so all of
        // its attributes may as well start with it (one allocation instead of regrowing).
        if sc.is_valid() && (!sc.is_remote() || parent.get::<UntrustedEdge>().is_none()) {
            return if sc.is_sampled() {
                AttributesRead::All
            } else {
                AttributesRead::None
            };
        }
        let compiled = self.inner.compiled.load();
        let limits = compiled
            .limits
            .as_ref()
            .map_or(AttributesRead::None, |l| l.reads);
        if compiled.rules.reads_attributes() || limits == AttributesRead::All {
            AttributesRead::All
        } else if limits == AttributesRead::RouteAndMethod {
            AttributesRead::RouteAndMethod
        } else if compiled.rules.is_empty() && compiled.high_value.is_empty() {
            // The base rate alone decides; at 1.0 every root records.
            if compiled.config.base_rate >= 1.0 {
                AttributesRead::All
            } else {
                AttributesRead::None
            }
        } else {
            AttributesRead::RouteAndMethod
        }
    }

    /// Whether debug tokens can force a decision under the configuration in force.
    pub(crate) fn debug_enabled(&self) -> bool {
        self.inner.compiled.load().debug.is_enabled()
    }

    /// A handle that swaps the configuration at runtime.
    pub fn handle(&self) -> SamplerHandle {
        SamplerHandle {
            inner: Arc::clone(&self.inner),
        }
    }

    fn decide(
        &self,
        parent_cx: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
    ) -> SamplingResult {
        let compiled = self.inner.compiled.load();
        let root = Root {
            inner: &self.inner,
            trace_id,
            name,
            kind,
            attributes,
        };
        // The SDK always passes `Some(parent)`; "no parent" is an invalid span context.
        let Some(cx) = parent_cx else {
            let result = root_result(&root, &compiled, &TraceState::NONE);
            return self.defer_at_entry(result, &compiled, trace_id);
        };
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            let result = self.decide_with_parent(&compiled, cx, sc, &root);
            if sc.is_remote() {
                self.defer_at_entry(result, &compiled, trace_id)
            } else {
                result
            }
        } else {
            if let Some(result) = self.debug_decision(&compiled, cx, &TraceState::NONE, trace_id) {
                return result;
            }
            let result = root_result(&root, &compiled, &TraceState::NONE);
            self.defer_at_entry(result, &compiled, trace_id)
        }
    }

    /// A service-entry decision to drop becomes `RecordOnly` when deferred capture takes
    /// the trace (see [`defer`]). Counted as what it was (dropped or rate-limited) and as
    /// deferred.
    #[inline]
    fn defer_at_entry(
        &self,
        result: SamplingResult,
        compiled: &Compiled,
        trace_id: TraceId,
    ) -> SamplingResult {
        let settings = &compiled.deferred;
        if !settings.enabled || result.decision != SamplingDecision::Drop {
            return result;
        }
        if !self
            .inner
            .deferred_attached
            .load(std::sync::atomic::Ordering::Relaxed)
            || !settings.picks(trace_id)
            || !self
                .inner
                .defer_limiter
                .try_acquire(self.inner.clock.now_nanos(), settings.max_per_second)
        {
            return result;
        }
        self.inner.counters.add(Tally::Deferred);
        SamplingResult {
            decision: SamplingDecision::RecordOnly,
            ..result
        }
    }

    /// Whether a local, unsampled parent is deferred: it still records, or the Context
    /// carries its request's marker (a span started after the request's root ended).
    fn parent_deferred(cx: &Context, sc: &SpanContext) -> bool {
        cx.get::<TraceKeep>()
            .is_some_and(|keep| keep.deferred && keep.trace_id == sc.trace_id())
            || cx.span().is_recording()
    }

    /// Tells the sampler that an export pipeline which buffers deferred spans is in front
    /// of the exporter (the manager's); until then nothing is deferred.
    pub(crate) fn attach_deferred(&self) {
        self.inner
            .deferred_attached
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The deferred-capture settings in force.
    pub(crate) fn deferred_settings(&self) -> Arc<DeferredSettings> {
        Arc::clone(&self.inner.compiled.load().deferred)
    }

    fn decide_with_parent(
        &self,
        compiled: &Compiled,
        cx: &Context,
        sc: &SpanContext,
        root: &Root<'_>,
    ) -> SamplingResult {
        let trace_id = root.trace_id;
        let state = sc.trace_state();
        if sc.is_remote() {
            if let Some(result) = self.debug_decision(compiled, cx, state, trace_id) {
                return result;
            }
            if cx.get::<UntrustedEdge>().is_some() {
                return root_result(root, compiled, state);
            }
        }
        let ot = OtValue::parse(state.get(consistent::OT_KEY));
        if sc.is_sampled() {
            let keep_th = match ot.th {
                Field::Absent => true,
                Field::Valid(th) => th.keeps(ot.randomness(trace_id)),
                Field::Invalid => false,
            };
            let state = if keep_th {
                state.clone()
            } else {
                with_threshold(state, None)
            };
            self.inner.counters.add(Tally::Sampled);
            followed(state)
        } else if !sc.is_remote() && Self::parent_deferred(cx, sc) {
            self.inner.counters.add(Tally::Dropped);
            self.inner.counters.add(Tally::Deferred);
            SamplingResult {
                decision: SamplingDecision::RecordOnly,
                ..dropped(state, &ot)
            }
        } else {
            self.inner.counters.add(Tally::Dropped);
            dropped(state, &ot)
        }
    }

    /// Step 1, only called at the service entry.
    fn debug_decision(
        &self,
        compiled: &Compiled,
        cx: &Context,
        state: &TraceState,
        trace_id: TraceId,
    ) -> Option<SamplingResult> {
        if !compiled.debug.is_enabled() {
            return None;
        }
        let request = cx.get::<DebugRequest>()?;
        let now = self.inner.clock.unix_seconds();
        if !compiled.debug.accepts(request.as_bytes(), trace_id, now) {
            return None;
        }
        let now = self.inner.clock.now_nanos();
        if !self
            .inner
            .limiter
            .try_acquire(now, compiled.debug.max_per_second)
        {
            return None;
        }
        self.inner.counters.add(Tally::Debug);
        Some(sampled(Reason::Debug.value(), with_threshold(state, None)))
    }
}

/// What a root decision reads besides the configuration and the parent's tracestate.
struct Root<'a> {
    inner: &'a Inner,
    trace_id: TraceId,
    name: &'a str,
    kind: &'a SpanKind,
    attributes: &'a [KeyValue],
}

fn root_result(root: &Root<'_>, compiled: &Compiled, state: &TraceState) -> SamplingResult {
    let Root {
        inner,
        trace_id,
        kind,
        attributes,
        ..
    } = *root;
    if compiled.limits.is_some() || compiled.strategy.is_some() {
        return limit::root_result(
            inner,
            compiled,
            compiled.limits.as_ref(),
            compiled.strategy.as_ref(),
            state,
            trace_id,
            root.name,
            kind,
            attributes,
        );
    }
    // Roots without parent tracestate (the common case) skip the tracestate scan.
    let ot = if *state == TraceState::NONE {
        OtValue::EMPTY
    } else {
        OtValue::parse(state.get(consistent::OT_KEY))
    };
    let outcome = compiled.root_decision(kind, attributes);
    if outcome.threshold.keeps(ot.randomness(trace_id)) {
        let trace_state = if *state == TraceState::NONE {
            outcome.root_state.clone()
        } else {
            with_threshold(state, Some(outcome.threshold))
        };
        inner.counters.add(Tally::Sampled);
        sampled(outcome.reason.clone(), trace_state)
    } else {
        inner.counters.add(Tally::Dropped);
        dropped(state, &ot)
    }
}

/// A span kept because its parent was: no `sampling.reason`, the decision was made
/// upstream (and a `Vec` allocated for every child span would be the cost of saying so).
fn followed(trace_state: TraceState) -> SamplingResult {
    SamplingResult {
        decision: SamplingDecision::RecordAndSample,
        attributes: Vec::new(),
        trace_state,
    }
}

fn sampled(reason: Value, trace_state: TraceState) -> SamplingResult {
    SamplingResult {
        decision: SamplingDecision::RecordAndSample,
        attributes: vec![KeyValue::new(SAMPLING_REASON, reason)],
        trace_state,
    }
}

/// A dropped span keeps the parent's tracestate (it still propagates) minus `th`,
/// which only describes sampled spans.
fn dropped(state: &TraceState, ot: &OtValue) -> SamplingResult {
    let trace_state = if ot.th == Field::Absent {
        state.clone()
    } else {
        with_threshold(state, None)
    };
    SamplingResult {
        decision: SamplingDecision::Drop,
        attributes: Vec::new(),
        trace_state,
    }
}

impl ShouldSample for CustomSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        self.decide(parent_context, trace_id, name, span_kind, attributes)
    }
}

/// What the file watcher remembers between polls.
struct WatchState {
    path: std::path::PathBuf,
    last: String,
    handle: SamplerHandle,
}

impl WatchState {
    /// Reloads when the content changed; `Ok(true)` when a new configuration is in force.
    fn poll(&mut self) -> Result<bool, Error> {
        // A config file is small and bounded (1 MiB), so a blocking read on the
        // runtime thread every interval costs less than a blocking-pool hop.
        let text = SamplingConfig::read_file(&self.path)?;
        if text == self.last {
            return Ok(false);
        }
        let result = SamplingConfig::parse_for_path(&self.path, &text)
            .and_then(|config| self.handle.reload(config));
        // Remember invalid content too, so it is reported once, not on every tick.
        self.last = text;
        result.map(|()| true)
    }
}

/// Stops the file watcher started by [`SamplerHandle::watch_file`] when dropped, so keep
/// it for as long as the file should be watched.
#[derive(Debug)]
#[must_use = "the file is watched only until the FileWatcher is dropped"]
pub struct FileWatcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Swaps the sampler's configuration at runtime; every clone of the sampler sees
/// the new configuration on its next decision. Decisions never wait for a reload.
#[derive(Clone)]
pub struct SamplerHandle {
    inner: Arc<Inner>,
}

impl fmt::Debug for SamplerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamplerHandle")
            .field("config", &self.inner.compiled.load().config)
            .finish()
    }
}

impl SamplerHandle {
    /// Validates `config`, then swaps it in atomically: every field applies from the next
    /// decision on (rates, rules, high-value operations, debug tokens, the HMAC secret, the
    /// debug rate limit and token age). On error the current configuration stays in place.
    ///
    /// Rate estimates survive a reload: the global estimate always, the per-key estimates
    /// while `limits.key` and `limits.max_keys` stay the same. A central strategy in force
    /// (see [`apply_strategy`](Self::apply_strategy)) stays in force.
    pub fn reload(&self, config: SamplingConfig) -> Result<(), Error> {
        let _serial = self.inner.reload.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.inner.compiled.load();
        let strategy = current.strategy.as_ref().map(|s| Arc::clone(&s.source));
        self.swap(&config, strategy, &current)
    }

    /// Changes the configuration in force with `f` and swaps the result in as
    /// [`reload`](Self::reload) does (same validation, atomic), with no other reload or
    /// strategy update in between: the trace pages' rate form.
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    pub(crate) fn update(
        &self,
        f: impl FnOnce(&SamplingConfig) -> Result<SamplingConfig, Error>,
    ) -> Result<(), Error> {
        let _serial = self.inner.reload.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.inner.compiled.load();
        let config = f(&current.config)?;
        let strategy = current.strategy.as_ref().map(|s| Arc::clone(&s.source));
        self.swap(&config, strategy, &current)
    }

    fn swap(
        &self,
        config: &SamplingConfig,
        strategy: Option<Arc<SamplingStrategy>>,
        current: &Compiled,
    ) -> Result<(), Error> {
        let now = self.inner.clock.now_nanos();
        let compiled = Compiled::build(config, strategy, Some(current), now)?;
        self.inner.compiled.store(Arc::new(compiled));
        Ok(())
    }

    /// Puts a central sampling strategy in force (see [`strategy`](mod@strategy) for what
    /// each kind changes), atomically, keeping the rate estimates. The local configuration
    /// stays; a later [`reload`](Self::reload) keeps the strategy.
    pub fn apply_strategy(&self, strategy: SamplingStrategy) -> Result<(), Error> {
        strategy.validate()?;
        let _serial = self.inner.reload.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.inner.compiled.load();
        let config = Arc::clone(&current.config);
        self.swap(&config, Some(Arc::new(strategy)), &current)
    }

    /// Removes the central strategy: the local configuration alone decides again.
    pub fn clear_strategy(&self) -> Result<(), Error> {
        let _serial = self.inner.reload.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.inner.compiled.load();
        let config = Arc::clone(&current.config);
        self.swap(&config, None, &current)
    }

    /// The central strategy in force, if any.
    pub fn strategy(&self) -> Option<SamplingStrategy> {
        let compiled = self.inner.compiled.load();
        compiled.strategy.as_ref().map(|s| (*s.source).clone())
    }

    /// What the sampler has decided so far, by outcome, and the state of the rate limits
    /// (see [`SamplerStats`]).
    pub fn stats(&self) -> SamplerStats {
        self.inner.stats()
    }

    /// Registers the sampler's instruments on `meter`: the observable counters
    /// [`METRIC_DECISIONS`] (attribute `outcome`: `sampled`, `dropped`, `rate_limited`,
    /// `lower_bound`, `debug`) and [`METRIC_KEY_DECISIONS`] (attributes `key`, `outcome`; at
    /// most `limits.max_keys + 1` keys, four outcomes each: give that instrument a View with
    /// a cardinality limit of [`LimitsConfig::key_metric_attribute_sets`] or more, as the
    /// `TracingManager` does, since the SDK's default of 2000 sets is below the 4100 of the
    /// default 1024 keys), and the gauge [`METRIC_PROBABILITY`] (the global limit's
    /// probability). The callbacks read the same counters as
    /// [`stats`](Self::stats) and stop reporting once the sampler is dropped.
    pub fn register_metrics(&self, meter: &opentelemetry::metrics::Meter) {
        stats::register(&self.inner, meter);
    }

    /// [`register_metrics`](Self::register_metrics) on OpenTelemetry's global meter
    /// provider, meter `meshtrace`.
    pub fn register_global_metrics(&self) {
        self.register_metrics(&opentelemetry::global::meter("meshtrace"));
    }

    /// Reads a TOML/JSON/YAML file (by extension, YAML with feature `yaml`) and
    /// [`reload`](Self::reload)s it.
    pub fn reload_from_file(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        self.reload(SamplingConfig::from_file(path)?)
    }

    /// Loads `path` now (an invalid file is an error here), then polls it every
    /// `interval` on the current tokio runtime and reloads it when its content
    /// changes. A later invalid version is logged (`tracing` warning) and the
    /// configuration in force stays. The task stops when the returned
    /// [`FileWatcher`] is dropped. Errors when called outside a tokio runtime.
    pub fn watch_file(
        &self,
        path: impl AsRef<Path>,
        interval: Duration,
    ) -> Result<FileWatcher, Error> {
        let path = path.as_ref().to_path_buf();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "sampling config file",
                path.display(),
                "watch_file must be called inside a tokio runtime",
            )
        })?;
        if interval.is_zero() {
            return Err(Error::config(
                "watch_file interval",
                format_args!("{interval:?}"),
                "it must be greater than zero",
            ));
        }
        let last = SamplingConfig::read_file(&path)?;
        self.reload(SamplingConfig::parse_for_path(&path, &last)?)?;
        let mut state = WatchState {
            path,
            last,
            handle: self.clone(),
        };
        let task = runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick completes at once
            loop {
                ticker.tick().await;
                if let Err(error) = state.poll() {
                    tracing::warn!(%error, "sampling config file not applied; keeping the current configuration");
                }
            }
        });
        Ok(FileWatcher { task })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<SamplingConfig> {
        Arc::clone(&self.inner.compiled.load().config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server layer starts spans with the attributes a decision reads: a limit key
    /// needs its attributes at span start, whatever the rates say.
    #[test]
    fn limit_keys_are_read_at_span_start() {
        let read = |config: SamplingConfig| {
            CustomSampler::new(config)
                .unwrap()
                .attributes_read(&Context::new())
        };
        let base = || SamplingConfig::default().base_rate(0.1);
        let cases: &[(&str, SamplingConfig, AttributesRead)] = &[
            ("no limits", base(), AttributesRead::None),
            (
                "global target only",
                base().limits(LimitsConfig::default().traces_per_second(10.0)),
                AttributesRead::None,
            ),
            (
                "per key, route",
                base().limits(LimitsConfig::default().per_key_traces_per_second(10.0)),
                AttributesRead::RouteAndMethod,
            ),
            (
                "per key, tenant",
                base().limits(
                    LimitsConfig::default()
                        .per_key_traces_per_second(10.0)
                        .key(["tenant"]),
                ),
                AttributesRead::All,
            ),
        ];
        for (name, config, expected) in cases {
            assert_eq!(read(config.clone()), *expected, "{name}");
        }
    }

    #[test]
    fn watch_poll_reloads_changes_and_keeps_config_on_bad_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "base_rate = 0.5").unwrap();
        let handle = CustomSampler::new(SamplingConfig::default())
            .unwrap()
            .handle();
        let mut state = WatchState {
            last: SamplingConfig::read_file(&path).unwrap(),
            path: path.clone(),
            handle: handle.clone(),
        };
        assert!(!state.poll().unwrap(), "unchanged content");
        std::fs::write(&path, "base_rate = 0.25").unwrap();
        assert!(state.poll().unwrap());
        assert_eq!(handle.config().base_rate, 0.25);
        std::fs::write(&path, "base_rate = 4.0").unwrap();
        let message = state.poll().unwrap_err().to_string();
        assert!(message.contains("sampling.base_rate"), "{message}");
        assert_eq!(handle.config().base_rate, 0.25);
        assert!(!state.poll().unwrap(), "bad content is reported once");
        std::fs::remove_file(&path).unwrap();
        assert!(state.poll().is_err());
        assert_eq!(handle.config().base_rate, 0.25);
        std::fs::write(&path, "base_rate = 0.125").unwrap();
        assert!(state.poll().unwrap());
        assert_eq!(handle.config().base_rate, 0.125);
    }
}
