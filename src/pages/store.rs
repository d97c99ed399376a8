//! What the pages show, kept in the process: per span name, the running exchanges, the
//! completed ones in the zPages latency buckets (over a sliding window and since the start)
//! and the errors; bounded samples of recent spans per bucket and per error class, each with
//! the local spans of its trace.
//!
//! # Where the numbers come from
//!
//! * **Counts** come from the end of each server exchange, the point where the span ends and
//!   `http.server.request.duration` is recorded (`OpenSpan`'s drop, see
//!   `crate::http::outcome`): the same clock readings, so the same duration and the same
//!   `error.type`, for sampled and unsampled requests alike. An [`Exchange`] is what the
//!   request holds until then.
//! * **Samples** come from the spans that record (sampled, or deferred: recorded without being
//!   sampled), when they end: the manager's export gate (or, hand-built,
//!   [`PagesSpanProcessor`](super::PagesSpanProcessor)) hands each one to [`Store::on_end`]. A
//!   local root server span becomes a sample of its row (its latency bucket, or its error
//!   class when it failed), with the child spans of its trace that ended before it, when the
//!   trace was captured: a recording request whose name's capture budget allowed it (one
//!   trace per name per `sample_interval / 8`) is captured from its start, so its children
//!   are copied as they end; other traces cost nothing more.
//!
//! # Bounds
//!
//! At most `max_span_names` rows; exchanges of further names count in one overflow row. Per
//! row: 9 latency rings and at most [`MAX_ERROR_CLASSES`] error-class rings (further classes
//! share `_OTHER`) of `samples_per_bucket` samples each, one new sample per ring per
//! `sample_interval`; a sample holds at most [`MAX_SPANS_PER_SAMPLE`] spans; all samples
//! together at most `max_sample_bytes` (estimated). Captures in flight: at most
//! [`MAX_CAPTURES`], each bounded like a sample, all together within
//! [`MAX_CAPTURE_BYTES`]. Nothing grows with the number of distinct paths, trace ids or
//! clients.
//!
//! # Locking
//!
//! Rows live in 8 shards by name hash, each behind a `RwLock` taken for reading per request
//! (written once per new name). Each row has its own `Mutex` for its counts (held for a few
//! additions when an exchange ends) and one for its samples (held to check a ring and to
//! insert; samples are built outside it). Captures live in 16 shards by trace id, each
//! behind its own `Mutex`, touched only while a capture is in flight. There is no lock
//! shared by every request.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt as _, TraceId};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_semantic_conventions::attribute::ERROR_TYPE;

use super::record::SpanRecord;
use crate::metrics::http::seconds_between;
use crate::sampler::SAMPLING_REASON;

/// The zPages latency buckets' lower bounds, in nanoseconds: 0, 10 µs, 100 µs, 1 ms,
/// 10 ms, 100 ms, 1 s, 10 s, 100 s.
pub(crate) const BOUNDS_NANOS: [u64; 9] = [
    0,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
];
pub(crate) const BUCKETS: usize = BOUNDS_NANOS.len();

/// Error classes (`error.type` values) with a ring of their own per row; further classes
/// share one ring, `_OTHER`.
pub const MAX_ERROR_CLASSES: usize = 8;
/// Spans one sample (or one capture) holds at most: its root and 63 children.
pub const MAX_SPANS_PER_SAMPLE: usize = 64;
/// Traces captured at once at most (16 shards of 16).
pub const MAX_CAPTURES: usize = 256;
/// Bytes (estimated) all captures in flight hold at most.
pub const MAX_CAPTURE_BYTES: usize = 4 << 20;
/// Distinct `sampling.reason` values counted per row; further values count as `_OTHER`.
const MAX_REASONS: usize = 32;
/// Slots of the sliding window.
const SLOTS: usize = 10;
const NAME_SHARDS: usize = 8;
const CAPTURE_SHARDS: usize = 16;
/// The name of the row of the names beyond `max_span_names`.
pub(crate) const OVERFLOW_NAME: &str = "(other span names)";
/// The error class shared by classes beyond [`MAX_ERROR_CLASSES`].
const OTHER_CLASS: &str = "_OTHER";

/// The latency bucket of a duration.
pub(crate) fn bucket_of(duration: Duration) -> usize {
    let nanos = duration.as_nanos();
    BOUNDS_NANOS
        .iter()
        .rposition(|bound| nanos >= u128::from(*bound))
        .unwrap_or(0)
}

/// The store's limits (validated by the builder).
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub(crate) window: Duration,
    pub(crate) max_span_names: usize,
    pub(crate) samples_per_bucket: usize,
    pub(crate) max_sample_bytes: usize,
    pub(crate) sample_interval: Duration,
    /// The bound on every string kept: the manager's `max_attribute_value_length` (what its
    /// export gate cuts exported spans to); `None`, hand-built: the process-wide bound.
    pub(crate) max_value_len: Option<usize>,
}

/// 64-bit FNV-1a: the keys are span names, which meshtrace builds from route templates and
/// method names (never from a request's bytes), so there is no flooding to defend against.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type NameMap = HashMap<Box<str>, Arc<NameStats>, BuildHasherDefault<Fnv>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a lock was held can lose a count or a sample, nothing more: go on.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One slot of the sliding window.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    epoch: u64,
    buckets: [u64; BUCKETS],
    errors: u64,
}

/// Counts over the last `SLOTS` slots of `slot_nanos` each.
#[derive(Debug)]
pub(crate) struct Window {
    slot_nanos: u64,
    slots: [Slot; SLOTS],
}

impl Window {
    pub(crate) fn new(window: Duration) -> Self {
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Window {
            slot_nanos: (nanos / SLOTS as u64).max(1),
            slots: [Slot::default(); SLOTS],
        }
    }

    /// Counts one exchange that ended `at` nanoseconds after the store's start.
    pub(crate) fn add(&mut self, at: u64, bucket: usize, error: bool) {
        let epoch = at / self.slot_nanos;
        let slot = &mut self.slots[(epoch % SLOTS as u64) as usize];
        if slot.epoch != epoch {
            *slot = Slot {
                epoch,
                ..Slot::default()
            };
        }
        if let Some(count) = slot.buckets.get_mut(bucket) {
            *count += 1;
        }
        if error {
            slot.errors += 1;
        }
    }

    /// The counts of the slots within the window that ends `now` (nanoseconds after the
    /// store's start): per bucket, and the errors.
    pub(crate) fn read(&self, now: u64) -> ([u64; BUCKETS], u64) {
        let current = now / self.slot_nanos;
        let mut buckets = [0; BUCKETS];
        let mut errors = 0;
        for slot in &self.slots {
            if slot.epoch <= current && slot.epoch + (SLOTS as u64) > current {
                for (sum, n) in buckets.iter_mut().zip(slot.buckets) {
                    *sum += n;
                }
                errors += slot.errors;
            }
        }
        (buckets, errors)
    }
}

/// The completed exchanges of a row.
#[derive(Debug)]
struct Counts {
    total: [u64; BUCKETS],
    total_errors: u64,
    /// Sum of the durations in seconds, as `http.server.request.duration` sums them.
    total_seconds: f64,
    window: Window,
    /// Kept root spans by `sampling.reason` (`parent` for those that followed a sampled
    /// caller), while the pages are mounted.
    reasons: Vec<(Box<str>, u64)>,
}

/// A ring of recent samples.
#[derive(Debug, Default)]
struct Ring {
    items: VecDeque<Arc<Sample>>,
    /// When the last sample was taken (nanoseconds after the store's start).
    last: Option<u64>,
}

#[derive(Debug)]
struct Samples {
    latency: [Ring; BUCKETS],
    errors: Vec<(Box<str>, Ring)>,
}

/// One row: a span name.
#[derive(Debug)]
pub(crate) struct NameStats {
    pub(crate) name: Box<str>,
    running: AtomicI64,
    /// Before this instant (nanoseconds after the store's start) no new trace of this name
    /// is captured.
    next_capture: AtomicU64,
    counts: Mutex<Counts>,
    samples: Mutex<Samples>,
}

/// A sample: a local root span and the spans of its trace that ended before it.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) id: u64,
    pub(crate) root: SpanRecord,
    pub(crate) children: Vec<SpanRecord>,
    /// Whether the trace was captured from its start (else only the root is known).
    pub(crate) captured: bool,
    /// Children of the capture left out because it was full.
    pub(crate) children_dropped: u32,
    pub(crate) error: Option<Box<str>>,
    pub(crate) bucket: usize,
    bytes: usize,
}

/// A trace being captured.
#[derive(Debug)]
struct Capture {
    trace_id: TraceId,
    spans: Vec<SpanRecord>,
    bytes: usize,
    dropped: u32,
}

/// The counters of the store itself (see [`super::PagesStats`]).
#[derive(Debug, Default)]
struct StoreCounters {
    overflowed: AtomicU64,
    samples_refused_bytes: AtomicU64,
    captures_refused: AtomicU64,
    capture_spans_dropped: AtomicU64,
    samples_taken: AtomicU64,
}

/// What [`Store::stats`] reads.
#[derive(Clone, Debug)]
pub(crate) struct StoreStats {
    pub(crate) span_names: usize,
    pub(crate) overflowed_exchanges: u64,
    pub(crate) samples: usize,
    pub(crate) sample_bytes: usize,
    pub(crate) samples_taken: u64,
    pub(crate) samples_refused_bytes: u64,
    pub(crate) captures_in_flight: usize,
    pub(crate) capture_bytes: usize,
    pub(crate) captures_refused: u64,
    pub(crate) capture_spans_dropped: u64,
}

/// The store; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) limits: Limits,
    /// The wall-clock instant the counts' times are measured from (the exchanges' end times
    /// are wall-clock readings: the ones their spans end with).
    epoch: SystemTime,
    names: [RwLock<NameMap>; NAME_SHARDS],
    name_count: AtomicUsize,
    overflow: Arc<NameStats>,
    captures: [Mutex<Vec<Capture>>; CAPTURE_SHARDS],
    captures_in_flight: AtomicUsize,
    capture_bytes: AtomicUsize,
    sample_bytes: AtomicUsize,
    sample_count: AtomicUsize,
    next_sample_id: AtomicU64,
    counters: StoreCounters,
}

/// What a request of a row holds until its exchange ends (see `OpenSpan`): counted as
/// running until then, and counted as completed with the exchange's own end time.
#[derive(Debug)]
pub(crate) struct Exchange {
    store: Arc<Store>,
    stats: Arc<NameStats>,
    start: SystemTime,
    error: bool,
}

impl Exchange {
    /// The exchange failed (its `error.type` is set; the first one counts, as on the span).
    pub(crate) fn set_error(&mut self) {
        self.error = true;
    }

    /// The exchange ended at `end`, the instant its span ends and its metric is recorded.
    pub(crate) fn finish(self, end: SystemTime) {
        self.stats.running.fetch_sub(1, Ordering::Relaxed);
        let duration = end.duration_since(self.start).unwrap_or_default();
        let seconds = seconds_between(self.start, end);
        let at = self.store.nanos_since_epoch(end);
        let bucket = bucket_of(duration);
        let mut counts = lock(&self.stats.counts);
        counts.total[bucket] += 1;
        if self.error {
            counts.total_errors += 1;
        }
        counts.total_seconds += seconds;
        counts.window.add(at, bucket, self.error);
    }
}

/// A row as the pages read it.
#[derive(Clone, Debug)]
pub(crate) struct RowSnapshot {
    pub(crate) name: Box<str>,
    pub(crate) overflow: bool,
    pub(crate) running: i64,
    pub(crate) window: [u64; BUCKETS],
    pub(crate) window_errors: u64,
    pub(crate) total: [u64; BUCKETS],
    pub(crate) total_errors: u64,
    pub(crate) total_seconds: f64,
    /// Samples held per latency bucket.
    pub(crate) latency_samples: [usize; BUCKETS],
    /// Samples held per error class.
    pub(crate) error_samples: Vec<(Box<str>, usize)>,
    pub(crate) reasons: Vec<(Box<str>, u64)>,
}

/// Which ring a page asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RingKey {
    Latency(usize),
    Error(String),
}

impl NameStats {
    fn new(name: Box<str>, window: Duration) -> Self {
        NameStats {
            name,
            running: AtomicI64::new(0),
            next_capture: AtomicU64::new(0),
            counts: Mutex::new(Counts {
                total: [0; BUCKETS],
                total_errors: 0,
                total_seconds: 0.0,
                window: Window::new(window),
                reasons: Vec::new(),
            }),
            samples: Mutex::new(Samples {
                latency: Default::default(),
                errors: Vec::new(),
            }),
        }
    }
}

impl Store {
    pub(crate) fn new(limits: Limits) -> Self {
        Store {
            overflow: Arc::new(NameStats::new(OVERFLOW_NAME.into(), limits.window)),
            limits,
            epoch: opentelemetry::time::now(),
            names: Default::default(),
            name_count: AtomicUsize::new(0),
            captures: Default::default(),
            captures_in_flight: AtomicUsize::new(0),
            capture_bytes: AtomicUsize::new(0),
            sample_bytes: AtomicUsize::new(0),
            sample_count: AtomicUsize::new(0),
            next_sample_id: AtomicU64::new(1),
            counters: StoreCounters::default(),
        }
    }

    fn nanos_since_epoch(&self, at: SystemTime) -> u64 {
        at.duration_since(self.epoch)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The longest string the pages keep, in bytes (see [`Limits::max_value_len`]). The
    /// process-wide bound is the last built manager's, which need not be this store's.
    pub(crate) fn max_value_len(&self) -> usize {
        self.limits
            .max_value_len
            .unwrap_or_else(crate::limits::max_value_len)
    }

    /// The nanoseconds since the store's start, now.
    pub(crate) fn now(&self) -> u64 {
        self.nanos_since_epoch(opentelemetry::time::now())
    }

    fn shard(name: &str) -> usize {
        let mut hasher = Fnv::default();
        hasher.write(name.as_bytes());
        (hasher.finish() as usize) % NAME_SHARDS
    }

    /// The row of `name`, made if there is room, else the overflow row.
    fn row(&self, name: &str) -> Arc<NameStats> {
        let shard = &self.names[Self::shard(name)];
        if let Some(stats) = shard.read().ok().and_then(|map| map.get(name).cloned()) {
            return stats;
        }
        let Ok(mut map) = shard.write() else {
            return Arc::clone(&self.overflow);
        };
        if let Some(stats) = map.get(name) {
            return Arc::clone(stats);
        }
        if self.name_count.fetch_add(1, Ordering::Relaxed) >= self.limits.max_span_names {
            self.name_count.fetch_sub(1, Ordering::Relaxed);
            self.counters.overflowed.fetch_add(1, Ordering::Relaxed);
            return Arc::clone(&self.overflow);
        }
        let stats = Arc::new(NameStats::new(name.into(), self.limits.window));
        map.insert(name.into(), Arc::clone(&stats));
        stats
    }

    /// The row of `name` if it exists, else the overflow row once rows are full (a span's
    /// end never makes a row: the exchange's start made it, or found no room). `None`: a
    /// server span no exchange of the pages counted (a layer that does not feed them).
    fn existing_row(&self, name: &str) -> Option<Arc<NameStats>> {
        let shard = &self.names[Self::shard(name)];
        if let Some(stats) = shard.read().ok().and_then(|map| map.get(name).cloned()) {
            return Some(stats);
        }
        (self.name_count.load(Ordering::Relaxed) >= self.limits.max_span_names)
            .then(|| Arc::clone(&self.overflow))
    }

    /// Every row, the overflow row last (when it counted anything).
    pub(crate) fn rows(&self) -> Vec<Arc<NameStats>> {
        let mut rows: Vec<Arc<NameStats>> = Vec::new();
        for shard in &self.names {
            if let Ok(map) = shard.read() {
                rows.extend(map.values().cloned());
            }
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let overflow_used = self.counters.overflowed.load(Ordering::Relaxed) > 0
            || self.overflow.running.load(Ordering::Relaxed) != 0;
        if overflow_used {
            rows.push(Arc::clone(&self.overflow));
        }
        rows
    }

    /// A server exchange named `name` started at `start` (the clock reading its span
    /// starts with); `cx` holds its span. Counted as running; a recording span may have its
    /// trace captured.
    pub(crate) fn begin(
        self: &Arc<Self>,
        name: &str,
        start: SystemTime,
        cx: &opentelemetry::Context,
        recording: bool,
    ) -> Exchange {
        let stats = self.row(name);
        stats.running.fetch_add(1, Ordering::Relaxed);
        if recording {
            self.maybe_capture(&stats, cx.span().span_context().trace_id(), start);
        }
        Exchange {
            store: Arc::clone(self),
            stats,
            start,
            error: false,
        }
    }

    fn maybe_capture(&self, stats: &NameStats, trace_id: TraceId, start: SystemTime) {
        let now = self.nanos_since_epoch(start);
        let next = stats.next_capture.load(Ordering::Relaxed);
        if now < next {
            return;
        }
        let interval =
            u64::try_from(self.limits.sample_interval.as_nanos() / 8).unwrap_or(u64::MAX);
        if stats
            .next_capture
            .compare_exchange(
                next,
                now.saturating_add(interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        let mut shard = lock(&self.captures[capture_shard(trace_id)]);
        if shard.iter().any(|c| c.trace_id == trace_id) {
            return;
        }
        if shard.len() >= MAX_CAPTURES / CAPTURE_SHARDS {
            // The oldest capture of the shard gives its place (its root never ended here:
            // a provider without the pages' processor, or a trace still running).
            let evicted = shard.remove(0);
            self.release_capture(&evicted);
            self.counters
                .captures_refused
                .fetch_add(1, Ordering::Relaxed);
        }
        shard.push(Capture {
            trace_id,
            spans: Vec::new(),
            bytes: 0,
            dropped: 0,
        });
        self.captures_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn release_capture(&self, capture: &Capture) {
        self.captures_in_flight.fetch_sub(1, Ordering::Relaxed);
        self.capture_bytes
            .fetch_sub(capture.bytes, Ordering::Relaxed);
    }

    fn take_capture(&self, trace_id: TraceId) -> Option<Capture> {
        if self.captures_in_flight.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut shard = lock(&self.captures[capture_shard(trace_id)]);
        let i = shard.iter().position(|c| c.trace_id == trace_id)?;
        let capture = shard.swap_remove(i);
        drop(shard);
        self.release_capture(&capture);
        Some(capture)
    }

    /// A span that recorded (sampled or deferred) ended.
    pub(crate) fn on_end(&self, span: &SpanData) {
        let local_root = span.parent_span_id == SpanId::INVALID || span.parent_span_is_remote;
        if !local_root {
            self.add_to_capture(span);
            return;
        }
        if span.span_kind != SpanKind::Server {
            return;
        }
        let trace_id = span.span_context.trace_id();
        let capture = self.take_capture(trace_id);
        let Some(stats) = self.existing_row(&span.name) else {
            return;
        };
        let at = self.nanos_since_epoch(span.end_time);
        let duration = span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default();
        let error: Option<Box<str>> = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == ERROR_TYPE)
            .map(|kv| kv.value.as_str().into());
        if span.span_context.is_sampled() {
            let reason = span
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == SAMPLING_REASON)
                .map_or(Cow::Borrowed("parent"), |kv| kv.value.as_str());
            count_reason(&mut lock(&stats.counts).reasons, &reason);
        }
        let bucket = bucket_of(duration);
        let key = match &error {
            Some(class) => RingKey::Error(class.to_string()),
            None => RingKey::Latency(bucket),
        };
        let interval = u64::try_from(self.limits.sample_interval.as_nanos()).unwrap_or(u64::MAX);
        {
            let mut samples = lock(&stats.samples);
            let Some(ring) = ring_for(&mut samples, &key, true) else {
                return;
            };
            if ring
                .last
                .is_some_and(|last| at < last.saturating_add(interval))
            {
                return;
            }
            ring.last = Some(at);
        }
        // Built outside the lock.
        let root = SpanRecord::new(span, self.max_value_len());
        let (children, captured, children_dropped) = match capture {
            Some(capture) => (capture.spans, true, capture.dropped),
            None => (Vec::new(), false, 0),
        };
        let bytes = root.bytes + children.iter().map(|c| c.bytes).sum::<usize>();
        let sample = Arc::new(Sample {
            id: self.next_sample_id.fetch_add(1, Ordering::Relaxed),
            root,
            children,
            captured,
            children_dropped,
            error,
            bucket,
            bytes,
        });
        let mut samples = lock(&stats.samples);
        let Some(ring) = ring_for(&mut samples, &key, true) else {
            return;
        };
        if ring.items.len() >= self.limits.samples_per_bucket
            && let Some(old) = ring.items.pop_front()
        {
            self.sample_bytes.fetch_sub(old.bytes, Ordering::Relaxed);
            self.sample_count.fetch_sub(1, Ordering::Relaxed);
        }
        let total = self.sample_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > self.limits.max_sample_bytes {
            self.sample_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.counters
                .samples_refused_bytes
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.sample_count.fetch_add(1, Ordering::Relaxed);
        self.counters.samples_taken.fetch_add(1, Ordering::Relaxed);
        ring.items.push_back(sample);
    }

    fn add_to_capture(&self, span: &SpanData) {
        if self.captures_in_flight.load(Ordering::Relaxed) == 0 {
            return;
        }
        let trace_id = span.span_context.trace_id();
        let shard = &self.captures[capture_shard(trace_id)];
        let room = {
            let shard = lock(shard);
            match shard.iter().find(|c| c.trace_id == trace_id) {
                None => return,
                Some(capture) => capture.spans.len() + 1 < MAX_SPANS_PER_SAMPLE,
            }
        };
        let record = room.then(|| SpanRecord::new(span, self.max_value_len()));
        let mut shard = lock(shard);
        let Some(capture) = shard.iter_mut().find(|c| c.trace_id == trace_id) else {
            return;
        };
        let Some(record) = record.filter(|_| capture.spans.len() + 1 < MAX_SPANS_PER_SAMPLE) else {
            capture.dropped = capture.dropped.saturating_add(1);
            self.counters
                .capture_spans_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let total = self
            .capture_bytes
            .fetch_add(record.bytes, Ordering::Relaxed)
            + record.bytes;
        if total > MAX_CAPTURE_BYTES {
            self.capture_bytes
                .fetch_sub(record.bytes, Ordering::Relaxed);
            capture.dropped = capture.dropped.saturating_add(1);
            self.counters
                .capture_spans_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        capture.bytes += record.bytes;
        capture.spans.push(record);
    }

    /// A snapshot of a row.
    pub(crate) fn snapshot(&self, stats: &NameStats, now: u64) -> RowSnapshot {
        let (window, window_errors, total, total_errors, total_seconds, reasons) = {
            let counts = lock(&stats.counts);
            let (window, window_errors) = counts.window.read(now);
            (
                window,
                window_errors,
                counts.total,
                counts.total_errors,
                counts.total_seconds,
                counts.reasons.clone(),
            )
        };
        let samples = lock(&stats.samples);
        let mut latency_samples = [0; BUCKETS];
        for (n, ring) in latency_samples.iter_mut().zip(&samples.latency) {
            *n = ring.items.len();
        }
        let error_samples = samples
            .errors
            .iter()
            .map(|(class, ring)| (class.clone(), ring.items.len()))
            .collect();
        RowSnapshot {
            name: stats.name.clone(),
            overflow: std::ptr::eq(stats, Arc::as_ptr(&self.overflow)),
            running: stats.running.load(Ordering::Relaxed),
            window,
            window_errors,
            total,
            total_errors,
            total_seconds,
            latency_samples,
            error_samples,
            reasons,
        }
    }

    /// The row named `name` (the overflow row by its name), if any.
    pub(crate) fn find_row(&self, name: &str) -> Option<Arc<NameStats>> {
        if name == OVERFLOW_NAME {
            return Some(Arc::clone(&self.overflow));
        }
        let shard = &self.names[Self::shard(name)];
        shard.read().ok().and_then(|map| map.get(name).cloned())
    }

    /// The samples of a ring, newest first.
    pub(crate) fn samples(&self, stats: &NameStats, key: &RingKey) -> Vec<Arc<Sample>> {
        let mut samples = lock(&stats.samples);
        match ring_for(&mut samples, key, false) {
            Some(ring) => ring.items.iter().rev().cloned().collect(),
            None => Vec::new(),
        }
    }

    /// Every sample of trace `trace_id`.
    pub(crate) fn trace(&self, trace_id: TraceId) -> Vec<Arc<Sample>> {
        let mut out = Vec::new();
        for stats in self.rows() {
            let samples = lock(&stats.samples);
            let rings = samples
                .latency
                .iter()
                .chain(samples.errors.iter().map(|(_, ring)| ring));
            for ring in rings {
                out.extend(
                    ring.items
                        .iter()
                        .filter(|s| s.root.trace_id == trace_id)
                        .cloned(),
                );
            }
        }
        out.sort_by_key(|s| s.id);
        out
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            span_names: self.name_count.load(Ordering::Relaxed),
            overflowed_exchanges: c.overflowed.load(Ordering::Relaxed),
            samples: self.sample_count.load(Ordering::Relaxed),
            sample_bytes: self.sample_bytes.load(Ordering::Relaxed),
            samples_taken: c.samples_taken.load(Ordering::Relaxed),
            samples_refused_bytes: c.samples_refused_bytes.load(Ordering::Relaxed),
            captures_in_flight: self.captures_in_flight.load(Ordering::Relaxed),
            capture_bytes: self.capture_bytes.load(Ordering::Relaxed),
            captures_refused: c.captures_refused.load(Ordering::Relaxed),
            capture_spans_dropped: c.capture_spans_dropped.load(Ordering::Relaxed),
        }
    }
}

fn capture_shard(trace_id: TraceId) -> usize {
    (u128::from_be_bytes(trace_id.to_bytes()) as usize) % CAPTURE_SHARDS
}

/// The ring `key` names; with `make`, an error class gets a ring if there is room (else the
/// shared `_OTHER` ring).
fn ring_for<'a>(samples: &'a mut Samples, key: &RingKey, make: bool) -> Option<&'a mut Ring> {
    match key {
        RingKey::Latency(bucket) => samples.latency.get_mut(*bucket),
        RingKey::Error(class) => {
            let class = match samples.errors.iter().position(|(c, _)| **c == **class) {
                Some(i) => i,
                None if !make => return None,
                None => {
                    let name: &str = if samples.errors.len() < MAX_ERROR_CLASSES {
                        class
                    } else {
                        OTHER_CLASS
                    };
                    match samples.errors.iter().position(|(c, _)| &**c == name) {
                        Some(i) => i,
                        None => {
                            samples.errors.push((name.into(), Ring::default()));
                            samples.errors.len() - 1
                        }
                    }
                }
            };
            samples.errors.get_mut(class).map(|(_, ring)| ring)
        }
    }
}

fn count_reason(reasons: &mut Vec<(Box<str>, u64)>, reason: &str) {
    if let Some((_, n)) = reasons.iter_mut().find(|(r, _)| **r == *reason) {
        *n += 1;
        return;
    }
    let reason = if reasons.len() < MAX_REASONS {
        reason
    } else {
        OTHER_CLASS
    };
    match reasons.iter_mut().find(|(r, _)| **r == *reason) {
        Some((_, n)) => *n += 1,
        None => reasons.push((reason.into(), 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_the_zpages_boundaries() {
        let cases: &[(u64, usize)] = &[
            (0, 0),
            (9_999, 0),
            (10_000, 1),
            (99_999, 1),
            (100_000, 2),
            (999_999, 2),
            (1_000_000, 3),
            (10_000_000, 4),
            (99_999_999, 4),
            (100_000_000, 5),
            (1_000_000_000, 6),
            (10_000_000_000, 7),
            (100_000_000_000, 8),
            (u64::MAX, 8),
        ];
        for (nanos, bucket) in cases {
            assert_eq!(
                bucket_of(Duration::from_nanos(*nanos)),
                *bucket,
                "{nanos} ns"
            );
        }
    }

    #[test]
    fn the_window_slides() {
        // 10 s in 10 slots of 1 s.
        let mut window = Window::new(Duration::from_secs(10));
        let s = 1_000_000_000u64;
        window.add(0, 2, false);
        window.add(s / 2, 2, true);
        window.add(3 * s, 5, false);
        assert_eq!(window.read(3 * s).0[2], 2);
        assert_eq!(window.read(3 * s).0[5], 1);
        assert_eq!(window.read(3 * s).1, 1);
        // At 10 s the first slot has left the window; the one at 3 s stays until 13 s.
        let (buckets, errors) = window.read(10 * s);
        assert_eq!((buckets[2], buckets[5], errors), (0, 1, 0));
        assert_eq!(window.read(13 * s).0[5], 0);
        // A slot is reused for a later epoch and starts from zero: 13 s lands in the slot
        // that held 3 s, whose count is gone, and the 0 s slot (epoch 0) stays out.
        window.add(13 * s, 5, false);
        assert_eq!(window.read(13 * s).0[5], 1);
        assert_eq!(window.read(13 * s).0.iter().sum::<u64>(), 1);
    }

    #[test]
    fn error_classes_are_bounded() {
        let mut samples = Samples {
            latency: Default::default(),
            errors: Vec::new(),
        };
        for i in 0..100 {
            let key = RingKey::Error(format!("class-{i}"));
            assert!(ring_for(&mut samples, &key, true).is_some());
        }
        assert_eq!(samples.errors.len(), MAX_ERROR_CLASSES + 1);
        assert_eq!(&*samples.errors[MAX_ERROR_CLASSES].0, OTHER_CLASS);
        let mut reasons = Vec::new();
        for i in 0..100 {
            count_reason(&mut reasons, &format!("rule:{i}"));
        }
        assert_eq!(reasons.len(), MAX_REASONS + 1);
        assert_eq!(reasons.iter().map(|(_, n)| n).sum::<u64>(), 100);
    }
}
