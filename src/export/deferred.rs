//! The buffer of deferred traces: spans recorded without being sampled (`RecordOnly`, see
//! [`crate::sampler`]'s deferred capture) wait here, per trace, until the trace's local root
//! span ends; then the whole local part of the trace is exported or freed.
//!
//! # Lifecycle of a trace
//!
//! * The **local root** (a deferred span whose parent is remote or absent) starts: an entry
//!   is made for its trace id, unless `max_traces` entries exist already (then nothing of the
//!   trace is buffered; counted as `dropped_traces_full`).
//! * Every deferred span of the trace that starts counts as open; one that ends is buffered,
//!   unless the trace already holds `max_spans_per_trace` spans or the buffer
//!   `max_bytes` (estimated; counted as `dropped_spans_trace_full` / `dropped_spans_bytes`).
//! * The local root ends: the trace is **kept** when the root's status is Error (5xx, an
//!   error of the inner service, a panic, a cancelled request: see
//!   [`crate::http`]'s outcome table), else when the root lasted at least the slow threshold
//!   of its `http.route`, else when a downstream service answered that it kept the trace;
//!   otherwise it is **discarded** and its buffer freed. Kept spans are exported at once,
//!   each with the sampled flag, `sampling.reason` = `error`, `slow` or `downstream`, and no
//!   `th` in their tracestate (the decision was not probabilistic).
//! * Spans still open when the decision is made follow it when they end (a kept trace
//!   exports them, a discarded one drops them); the entry is removed when the last one ends.
//!   Several local roots of one trace (a service that calls itself) share the entry: a kept
//!   decision is final, a discard waits for the last root.
//! * Eviction is **lazy**: no timer runs. A shard is swept of its entries older than
//!   `timeout` when a new local root lands in it (at most once every `timeout / 4`, at
//!   least 1 ms apart), and every shard is swept on
//!   [`force_flush`](crate::TracingManager::force_flush); until then an expired entry keeps
//!   its place and its memory (within the bounds above). A swept entry still undecided has
//!   its buffered spans dropped (counted as `evicted_traces` / `evicted_spans`); spans of the
//!   trace that end after the sweep, decided or not, find no entry and are dropped (counted
//!   as `dropped_spans_untracked`), so an evicted trace is never exported half-decided.
//!
//! # Locking
//!
//! Entries live in shards (a power of two, four per CPU up to 64), each behind its own
//! `Mutex`, chosen by the trace id's low bits: two requests contend only when their traces
//! share a shard, and only for the length of a map operation. Exports happen after the lock
//! is released. Sampled spans never come here. Nothing waits for room: a full buffer drops
//! and counts.

use std::collections::HashMap;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceId,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{Span, SpanData};

use crate::limits::kv_bytes;
use crate::sampler::defer::DeferredSettings;
use crate::sampler::{CustomSampler, SAMPLING_REASON};

/// Set by the client layers on a deferred client span whose response said that the
/// downstream service kept the trace (`traceresponse` with the sampled flag); removed before
/// export.
pub(crate) const DOWNSTREAM_MARK: &str = "meshtrace.internal.downstream_kept";

/// Why a deferred trace was exported (the value of `sampling.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    Error,
    Slow,
    Downstream,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Error => "error",
            Reason::Slow => "slow",
            Reason::Downstream => "downstream",
        }
    }
}

/// What deferred capture did, since the manager was built (see
/// [`ExportStats::deferred`](super::ExportStats::deferred)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeferredStats {
    /// Traces whose spans were buffered (local roots that found room).
    pub buffered_traces: u64,
    /// Traces exported because the request failed (`sampling.reason = "error"`).
    pub kept_error: u64,
    /// Traces exported because the request was slow (`sampling.reason = "slow"`).
    pub kept_slow: u64,
    /// Traces exported because a downstream service kept the trace
    /// (`sampling.reason = "downstream"`).
    pub kept_downstream: u64,
    /// Traces decided not to keep: their buffers were freed.
    pub discarded: u64,
    /// Spans handed to the export queue by deferred capture.
    pub exported_spans: u64,
    /// Traces not buffered at all: `max_traces` traces were buffered already.
    pub dropped_traces_full: u64,
    /// Spans not buffered: their trace held `max_spans_per_trace` spans.
    pub dropped_spans_trace_full: u64,
    /// Spans not buffered: the buffer held `max_bytes`.
    pub dropped_spans_bytes: u64,
    /// Spans of traces that were not buffered (their root found no room, or their entry
    /// was evicted), and spans still open when their trace was discarded.
    pub dropped_spans_untracked: u64,
    /// Traces evicted undecided: their local root had not ended after `timeout_ms` when a
    /// sweep found them (a sweep runs when a new deferred root lands in the trace's shard,
    /// or on `force_flush`: eviction is lazy, see `timeout_ms`), or at shutdown.
    pub evicted_traces: u64,
    /// The buffered spans of the evicted traces.
    pub evicted_spans: u64,
    /// Traces in the buffer now (waiting for their root, or for their open spans).
    pub traces: u64,
    /// Spans in the buffer now.
    pub spans: u64,
    /// Estimated bytes in the buffer now.
    pub bytes: u64,
    /// The most traces the buffer held at once.
    pub peak_traces: u64,
    /// The most spans one trace held at once.
    pub peak_spans_per_trace: u64,
    /// The most estimated bytes the buffer held at once.
    pub peak_bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    buffered_traces: AtomicU64,
    kept_error: AtomicU64,
    kept_slow: AtomicU64,
    kept_downstream: AtomicU64,
    discarded: AtomicU64,
    exported_spans: AtomicU64,
    dropped_traces_full: AtomicU64,
    dropped_spans_trace_full: AtomicU64,
    dropped_spans_bytes: AtomicU64,
    dropped_spans_untracked: AtomicU64,
    evicted_traces: AtomicU64,
    evicted_spans: AtomicU64,
    peak_traces: AtomicU64,
    peak_spans_per_trace: AtomicU64,
    peak_bytes: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn peak(counter: &AtomicU64, value: usize) {
    counter.fetch_max(value as u64, Ordering::Relaxed);
}

/// One trace's state.
#[derive(Debug)]
enum State {
    /// Waiting for the local root(s) to end.
    Pending {
        /// Each with whether it was a leaf when it ended (for the export filter).
        spans: Vec<(SpanData, bool)>,
        bytes: usize,
        open_roots: u32,
        downstream: bool,
    },
    /// Kept: spans that end from now on are exported.
    Kept(Reason),
    /// Discarded: spans that end from now on are dropped.
    Discarded,
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// Deferred spans of the trace started and not ended yet.
    open: u32,
    created: Instant,
}

#[derive(Debug)]
struct Shard {
    entries: HashMap<TraceId, Entry>,
    next_sweep: Instant,
}

/// What [`Deferred::on_end`] hands back to be exported, outside the shard's lock.
pub(crate) struct Kept {
    spans: Vec<(SpanData, bool)>,
    reason: Reason,
}

impl Kept {
    /// The spans as they are exported (sampled, with `sampling.reason`, without `th`),
    /// each with whether it was a leaf when it ended.
    pub(crate) fn into_spans(self) -> impl Iterator<Item = (SpanData, bool)> {
        let reason = self.reason;
        self.spans
            .into_iter()
            .map(move |(span, leaf)| (mark_kept(span, reason), leaf))
    }
}

/// The buffer; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Deferred {
    sampler: CustomSampler,
    shards: Box<[Mutex<Shard>]>,
    mask: usize,
    /// Entries of every shard (bounded by `max_traces`).
    traces: AtomicUsize,
    /// Buffered spans and their estimated bytes (bounded by `max_bytes`).
    spans: AtomicUsize,
    bytes: AtomicUsize,
    counters: Counters,
}

impl Deferred {
    /// A buffer whose bounds and thresholds are `sampler`'s configuration in force (read at
    /// each decision, so a reload applies at once); attaches itself to the sampler, which
    /// defers nothing before.
    pub(crate) fn new(sampler: &CustomSampler) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let n = (cpus * 4).next_power_of_two().clamp(4, 64);
        let now = Instant::now();
        let shards = (0..n)
            .map(|_| {
                Mutex::new(Shard {
                    entries: HashMap::new(),
                    next_sweep: now,
                })
            })
            .collect();
        sampler.attach_deferred();
        Deferred {
            sampler: sampler.clone(),
            shards,
            mask: n - 1,
            traces: AtomicUsize::new(0),
            spans: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            counters: Counters::default(),
        }
    }

    fn shard(&self, trace_id: TraceId) -> MutexGuard<'_, Shard> {
        let i = (u128::from_be_bytes(trace_id.to_bytes()) as usize) & self.mask;
        // A panic while a shard was held cannot leave it inconsistent in a way that matters
        // more than losing a trace: keep going.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A deferred (recording, unsampled) span started in `cx`.
    pub(crate) fn on_start(&self, span: &Span, cx: &Context) {
        use opentelemetry::trace::Span as _;
        let sc = span.span_context();
        let trace_id = sc.trace_id();
        let local_root = {
            let parent = cx.span();
            let parent = parent.span_context();
            !parent.is_valid() || parent.is_remote() || parent.trace_id() != trace_id
        };
        let settings = self.sampler.deferred_settings();
        let now = Instant::now();
        let mut shard = self.shard(trace_id);
        if local_root && now >= shard.next_sweep {
            self.sweep(&mut shard, &settings, now);
        }
        match shard.entries.get_mut(&trace_id) {
            Some(entry) => {
                entry.open = entry.open.saturating_add(1);
                if local_root {
                    match &mut entry.state {
                        State::Pending { open_roots, .. } => *open_roots += 1,
                        // Another request of a trace already discarded here (a retry):
                        // it gets a decision of its own.
                        State::Discarded => {
                            entry.state = pending();
                            self.counters
                                .buffered_traces
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        State::Kept(_) => {}
                    }
                }
            }
            None if local_root => {
                let traces = self.traces.fetch_add(1, Ordering::Relaxed) + 1;
                if traces > settings.max_traces {
                    self.traces.fetch_sub(1, Ordering::Relaxed);
                    add(&self.counters.dropped_traces_full, 1);
                    return;
                }
                peak(&self.counters.peak_traces, traces);
                add(&self.counters.buffered_traces, 1);
                shard.entries.insert(
                    trace_id,
                    Entry {
                        state: pending(),
                        open: 1,
                        created: now,
                    },
                );
            }
            // A child of a trace that is not buffered.
            None => {}
        }
    }

    /// A deferred span ended. Returns the spans to export when this decided to keep the
    /// trace, or when the trace was kept already.
    pub(crate) fn on_end(&self, mut span: SpanData, leaf: bool) -> Option<Kept> {
        let trace_id = span.span_context.trace_id();
        let is_root = span.parent_span_is_remote || span.parent_span_id == SpanId::INVALID;
        let downstream = take_mark(&mut span.attributes, DOWNSTREAM_MARK);
        let mut shard = self.shard(trace_id);
        let Some(entry) = shard.entries.get_mut(&trace_id) else {
            add(&self.counters.dropped_spans_untracked, 1);
            return None;
        };
        entry.open = entry.open.saturating_sub(1);
        let mut out = None;
        match &mut entry.state {
            State::Kept(reason) => {
                out = Some(Kept {
                    spans: vec![(span, leaf)],
                    reason: *reason,
                });
            }
            State::Discarded => add(&self.counters.dropped_spans_untracked, 1),
            State::Pending {
                spans,
                bytes,
                open_roots,
                downstream: kept_downstream,
            } => {
                *kept_downstream |= downstream;
                let settings = self.sampler.deferred_settings();
                if is_root {
                    *open_roots = open_roots.saturating_sub(1);
                    match decide(&span, &settings, *kept_downstream) {
                        Some(reason) => {
                            let mut all = std::mem::take(spans);
                            all.push((span, leaf));
                            self.release(all.len() - 1, *bytes);
                            self.count_kept(reason);
                            out = Some(Kept { spans: all, reason });
                            entry.state = State::Kept(reason);
                        }
                        None if *open_roots == 0 => {
                            self.release(spans.len(), *bytes);
                            add(&self.counters.discarded, 1);
                            entry.state = State::Discarded;
                        }
                        // An inner root (this service called itself) ended fine; the outer
                        // one decides.
                        None => self.buffer(spans, bytes, (span, leaf), &settings),
                    }
                } else {
                    self.buffer(spans, bytes, (span, leaf), &settings);
                }
            }
        }
        if entry.open == 0 && !matches!(entry.state, State::Pending { .. }) {
            shard.entries.remove(&trace_id);
            self.traces.fetch_sub(1, Ordering::Relaxed);
        }
        drop(shard);
        if let Some(kept) = &out {
            add(&self.counters.exported_spans, kept.spans.len() as u64);
        }
        out
    }

    /// Buffers `span` if the trace and the buffer have room.
    fn buffer(
        &self,
        spans: &mut Vec<(SpanData, bool)>,
        bytes: &mut usize,
        span: (SpanData, bool),
        settings: &DeferredSettings,
    ) {
        if spans.len() >= settings.max_spans_per_trace {
            add(&self.counters.dropped_spans_trace_full, 1);
            return;
        }
        let size = approx_bytes(&span.0);
        let total = self.bytes.fetch_add(size, Ordering::Relaxed) + size;
        if total > settings.max_bytes {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            add(&self.counters.dropped_spans_bytes, 1);
            return;
        }
        peak(&self.counters.peak_bytes, total);
        self.spans.fetch_add(1, Ordering::Relaxed);
        *bytes += size;
        spans.push(span);
        peak(&self.counters.peak_spans_per_trace, spans.len());
    }

    /// Gives back what `n` spans of `bytes` bytes held.
    fn release(&self, n: usize, bytes: usize) {
        self.spans.fetch_sub(n, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn count_kept(&self, reason: Reason) {
        let counter = match reason {
            Reason::Error => &self.counters.kept_error,
            Reason::Slow => &self.counters.kept_slow,
            Reason::Downstream => &self.counters.kept_downstream,
        };
        add(counter, 1);
    }

    /// Evicts the entries of `shard` older than the timeout.
    fn sweep(&self, shard: &mut Shard, settings: &DeferredSettings, now: Instant) {
        shard.next_sweep = now + (settings.timeout / 4).max(Duration::from_millis(1));
        let timeout = settings.timeout;
        let mut evicted = (0usize, 0usize, 0usize, 0usize);
        shard.entries.retain(|_, entry| {
            if now.saturating_duration_since(entry.created) < timeout {
                return true;
            }
            evicted.0 += 1;
            if let State::Pending { spans, bytes, .. } = &entry.state {
                evicted.1 += 1;
                evicted.2 += spans.len();
                evicted.3 += bytes;
            }
            false
        });
        let (entries, pending, spans, bytes) = evicted;
        if entries > 0 {
            self.traces.fetch_sub(entries, Ordering::Relaxed);
            self.release(spans, bytes);
            add(&self.counters.evicted_traces, pending as u64);
            add(&self.counters.evicted_spans, spans as u64);
        }
    }

    /// Evicts what is past its timeout in every shard (on flush).
    pub(crate) fn sweep_all(&self) {
        let settings = self.sampler.deferred_settings();
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            self.sweep(&mut shard, &settings, now);
        }
    }

    /// Drops everything still buffered (at shutdown: these roots never ended).
    pub(crate) fn clear(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.next_sweep = now;
            let mut evicted = (0usize, 0usize, 0usize, 0usize);
            for (_, entry) in shard.entries.drain() {
                evicted.0 += 1;
                if let State::Pending { spans, bytes, .. } = &entry.state {
                    evicted.1 += 1;
                    evicted.2 += spans.len();
                    evicted.3 += bytes;
                }
            }
            let (entries, pending, spans, bytes) = evicted;
            self.traces.fetch_sub(entries, Ordering::Relaxed);
            self.release(spans, bytes);
            add(&self.counters.evicted_traces, pending as u64);
            add(&self.counters.evicted_spans, spans as u64);
        }
    }

    pub(crate) fn stats(&self) -> DeferredStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeferredStats {
            buffered_traces: get(&c.buffered_traces),
            kept_error: get(&c.kept_error),
            kept_slow: get(&c.kept_slow),
            kept_downstream: get(&c.kept_downstream),
            discarded: get(&c.discarded),
            exported_spans: get(&c.exported_spans),
            dropped_traces_full: get(&c.dropped_traces_full),
            dropped_spans_trace_full: get(&c.dropped_spans_trace_full),
            dropped_spans_bytes: get(&c.dropped_spans_bytes),
            dropped_spans_untracked: get(&c.dropped_spans_untracked),
            evicted_traces: get(&c.evicted_traces),
            evicted_spans: get(&c.evicted_spans),
            traces: self.traces.load(Ordering::Relaxed) as u64,
            spans: self.spans.load(Ordering::Relaxed) as u64,
            bytes: self.bytes.load(Ordering::Relaxed) as u64,
            peak_traces: get(&c.peak_traces),
            peak_spans_per_trace: get(&c.peak_spans_per_trace),
            peak_bytes: get(&c.peak_bytes),
        }
    }
}

fn pending() -> State {
    State::Pending {
        spans: Vec::new(),
        bytes: 0,
        open_roots: 1,
        downstream: false,
    }
}

/// Why the trace whose local root is `root` is kept, if it is.
fn decide(root: &SpanData, settings: &DeferredSettings, downstream: bool) -> Option<Reason> {
    if matches!(root.status, Status::Error { .. }) {
        return Some(Reason::Error);
    }
    let took = root
        .end_time
        .duration_since(root.start_time)
        .unwrap_or_default();
    let route = root
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == opentelemetry_semantic_conventions::attribute::HTTP_ROUTE)
        .and_then(|kv| match &kv.value {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        });
    if took >= settings.slow_threshold(route) {
        return Some(Reason::Slow);
    }
    downstream.then_some(Reason::Downstream)
}

/// Removes the attribute `key` (the last one), saying whether it was there.
pub(crate) fn take_mark(attributes: &mut Vec<KeyValue>, key: &str) -> bool {
    match attributes.iter().rposition(|kv| kv.key.as_str() == key) {
        Some(i) => {
            attributes.remove(i);
            true
        }
        None => false,
    }
}

/// A kept span as it is exported.
fn mark_kept(mut span: SpanData, reason: Reason) -> SpanData {
    let sc = &span.span_context;
    // Deferred spans carry the dropped decision's tracestate, which has no `th` already;
    // this also holds for whatever else could reach here (it clones when nothing changes).
    let state = crate::sampler::consistent::with_threshold(sc.trace_state(), None);
    span.span_context = SpanContext::new(
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags() | TraceFlags::SAMPLED,
        sc.is_remote(),
        state,
    );
    span.attributes
        .push(KeyValue::new(SAMPLING_REASON, reason.as_str()));
    span
}

/// Estimated heap and inline bytes of a span: the struct, its strings and its collections.
fn approx_bytes(span: &SpanData) -> usize {
    let mut n = size_of::<SpanData>() + span.name.len();
    n += span.attributes.iter().map(kv_bytes).sum::<usize>();
    for event in &span.events.events {
        n += size_of::<opentelemetry::trace::Event>() + event.name.len();
        n += event.attributes.iter().map(kv_bytes).sum::<usize>();
    }
    for link in &span.links.links {
        n += size_of::<opentelemetry::trace::Link>();
        n += link.attributes.iter().map(kv_bytes).sum::<usize>();
    }
    if let Status::Error { description } = &span.status {
        n += description.len();
    }
    n
}
