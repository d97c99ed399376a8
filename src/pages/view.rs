//! What each page shows, as data: built once per request from the store, the sampler and
//! the export counters, then written as JSON (`serde`) or as HTML (`super::html`), so the
//! two always say the same.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::{KeyValue, Value};
use serde::Serialize;

use super::Pages;
use super::record::SpanRecord;
use super::store::{BOUNDS_NANOS, BUCKETS, RingKey, Sample, Store};
use crate::export::ExportStats;

/// The latency buckets' labels, lower bound inclusive, upper exclusive.
pub(crate) const BUCKET_LABELS: [&str; BUCKETS] = [
    "[0, 10µs)",
    "[10µs, 100µs)",
    "[100µs, 1ms)",
    "[1ms, 10ms)",
    "[10ms, 100ms)",
    "[100ms, 1s)",
    "[1s, 10s)",
    "[10s, 100s)",
    "[100s, ∞)",
];

/// The trace summary.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub(crate) service: Option<String>,
    /// The sliding window, in seconds (counts move out of it a tenth at a time).
    pub(crate) window_seconds: f64,
    pub(crate) bucket_labels: [&'static str; BUCKETS],
    pub(crate) bucket_lower_bounds_seconds: [f64; BUCKETS],
    pub(crate) rows: Vec<Row>,
    pub(crate) store: StoreView,
}

/// One span name.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) name: String,
    /// The row that names beyond `max_span_names` share.
    pub(crate) overflow: bool,
    pub(crate) running: i64,
    pub(crate) window: WindowCounts,
    pub(crate) total: TotalCounts,
    pub(crate) samples: SampleCounts,
    /// Root spans kept by the sampler since the pages were mounted, by `sampling.reason`
    /// (`parent` for those that followed a sampled caller).
    pub(crate) kept_by_reason: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct WindowCounts {
    pub(crate) buckets: [u64; BUCKETS],
    pub(crate) count: u64,
    pub(crate) errors: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct TotalCounts {
    pub(crate) buckets: [u64; BUCKETS],
    pub(crate) count: u64,
    pub(crate) errors: u64,
    /// Sum of the durations, in seconds (what `http.server.request.duration` sums).
    pub(crate) sum_seconds: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct SampleCounts {
    pub(crate) latency: [usize; BUCKETS],
    pub(crate) errors: BTreeMap<String, usize>,
}

/// The store's own bounds and counts.
#[derive(Debug, Serialize)]
pub(crate) struct StoreView {
    pub(crate) span_names: usize,
    pub(crate) max_span_names: usize,
    pub(crate) overflowed_exchanges: u64,
    pub(crate) samples: usize,
    pub(crate) sample_bytes: usize,
    pub(crate) max_sample_bytes: usize,
    pub(crate) samples_per_bucket: usize,
    pub(crate) sample_interval_seconds: f64,
    pub(crate) samples_taken: u64,
    pub(crate) samples_refused_bytes: u64,
    pub(crate) captures_in_flight: usize,
    pub(crate) capture_bytes: usize,
    pub(crate) captures_refused: u64,
    pub(crate) capture_spans_dropped: u64,
}

/// The samples of one ring.
#[derive(Debug, Serialize)]
pub(crate) struct Samples {
    pub(crate) name: String,
    /// `latency` or `error`.
    pub(crate) ring: &'static str,
    /// The latency bucket, for a latency ring.
    pub(crate) bucket: Option<usize>,
    pub(crate) bucket_label: Option<&'static str>,
    /// The error class (`error.type`), for an error ring.
    pub(crate) error: Option<String>,
    pub(crate) samples: Vec<SampleView>,
}

/// One sample: its root span, and how many spans of its trace were captured.
#[derive(Debug, Serialize)]
pub(crate) struct SampleView {
    pub(crate) span: SpanView,
    /// The latency bucket of its duration.
    pub(crate) bucket: usize,
    /// Its `error.type`, when it failed.
    pub(crate) error: Option<String>,
    /// Child spans of the trace kept with it.
    pub(crate) children: usize,
    /// Whether the trace was captured from its start (else its children are not known).
    pub(crate) captured: bool,
    pub(crate) children_dropped: u32,
}

/// A span as the pages show it.
#[derive(Debug, Serialize)]
pub(crate) struct SpanView {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) trace_id: String,
    pub(crate) span_id: String,
    /// `None` for a root.
    pub(crate) parent_span_id: Option<String>,
    pub(crate) parent_is_remote: bool,
    pub(crate) start: String,
    pub(crate) duration_seconds: f64,
    pub(crate) status: &'static str,
    pub(crate) status_description: String,
    /// Sampled (exported), or recorded for deferred capture (exported only if kept).
    pub(crate) sampled: bool,
    pub(crate) attributes: BTreeMap<String, serde_json::Value>,
    pub(crate) dropped_attributes: u32,
    pub(crate) events: Vec<EventView>,
    pub(crate) dropped_events: u32,
}

#[derive(Debug, Serialize)]
pub(crate) struct EventView {
    pub(crate) name: String,
    pub(crate) time: String,
    /// Since the span's start.
    pub(crate) offset_seconds: f64,
    pub(crate) attributes: BTreeMap<String, serde_json::Value>,
}

/// The local spans of one trace, as a tree (depth-first, children by start time).
#[derive(Debug, Serialize)]
pub(crate) struct Trace {
    pub(crate) trace_id: String,
    pub(crate) start: String,
    pub(crate) duration_seconds: f64,
    pub(crate) spans: Vec<TreeSpan>,
    /// Whether every sample of the trace was captured from its start.
    pub(crate) complete: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct TreeSpan {
    pub(crate) depth: usize,
    /// Since the trace's first start.
    pub(crate) offset_seconds: f64,
    pub(crate) span: SpanView,
}

/// The sampler page.
#[derive(Debug, Serialize)]
pub(crate) struct Sampler {
    /// Whether the pages know a sampler.
    pub(crate) available: bool,
    pub(crate) base_rate: Option<f64>,
    pub(crate) high_value_rate: Option<f64>,
    pub(crate) rules: Vec<RuleView>,
    pub(crate) high_value: Vec<HighValueView>,
    /// The whole configuration in force, debug tokens and the HMAC secret redacted.
    pub(crate) config: serde_json::Value,
    /// A central strategy in force, if any (its debug form).
    pub(crate) strategy: Option<String>,
    pub(crate) decisions: Option<Decisions>,
    /// Per rate-limit key, the most active first (at most 100).
    pub(crate) keys: Vec<KeyView>,
    /// Root spans kept while the pages are mounted, by `sampling.reason`, every row.
    pub(crate) kept_by_reason: BTreeMap<String, u64>,
    pub(crate) changes: Changes,
}

#[derive(Debug, Serialize)]
pub(crate) struct RuleView {
    pub(crate) name: String,
    pub(crate) route: Option<String>,
    pub(crate) method: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) attributes: String,
    pub(crate) rate: f64,
    pub(crate) priority: i32,
}

#[derive(Debug, Serialize)]
pub(crate) struct HighValueView {
    pub(crate) route: String,
    pub(crate) method: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Decisions {
    pub(crate) sampled: u64,
    pub(crate) dropped: u64,
    pub(crate) rate_limited: u64,
    pub(crate) lower_bound: u64,
    pub(crate) debug: u64,
    pub(crate) deferred: u64,
    pub(crate) total: u64,
    pub(crate) global_probability: Option<f64>,
    pub(crate) global_rate: Option<f64>,
    pub(crate) tracked_keys: usize,
}

#[derive(Debug, Serialize)]
pub(crate) struct KeyView {
    pub(crate) key: String,
    pub(crate) overflow: bool,
    pub(crate) arrivals: u64,
    pub(crate) sampled: u64,
    pub(crate) dropped: u64,
    pub(crate) rate_limited: u64,
    pub(crate) lower_bound: u64,
    pub(crate) probability: f64,
    pub(crate) arrival_rate: f64,
}

/// Whether rates can be changed here, and how.
#[derive(Debug, Serialize)]
pub(crate) struct Changes {
    /// A token is configured and a sampler is known.
    pub(crate) enabled: bool,
    pub(crate) how: &'static str,
}

/// The export page.
#[derive(Debug, Serialize)]
pub(crate) struct Export {
    pub(crate) available: bool,
    pub(crate) queued: Option<u64>,
    pub(crate) queue_capacity: Option<usize>,
    pub(crate) exported: Option<u64>,
    pub(crate) dropped_queue_full: Option<u64>,
    pub(crate) dropped_export_failed: Option<u64>,
    pub(crate) last_error: Option<String>,
    /// Deferred capture's counts (see `DeferredStats`), as `name: value`.
    pub(crate) deferred: BTreeMap<&'static str, u64>,
    /// Spans the export filter dropped, per rule.
    pub(crate) filter: Vec<(String, u64)>,
    pub(crate) filter_kept_with_children: u64,
    pub(crate) store: StoreView,
}

pub(crate) fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// RFC 3339 UTC with microseconds, e.g. `2025-01-31T12:00:00.123456Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// An attribute value as JSON (non-finite floats as strings).
pub(crate) fn json_value(value: &Value) -> serde_json::Value {
    use opentelemetry::Array;
    use serde_json::Value as J;
    let float = |f: f64| {
        serde_json::Number::from_f64(f).map_or_else(|| J::String(f.to_string()), J::Number)
    };
    match value {
        Value::Bool(b) => J::Bool(*b),
        Value::I64(i) => J::from(*i),
        Value::F64(f) => float(*f),
        Value::String(s) => J::String(s.as_str().to_owned()),
        Value::Array(Array::Bool(items)) => J::Array(items.iter().map(|b| J::Bool(*b)).collect()),
        Value::Array(Array::I64(items)) => J::Array(items.iter().map(|i| J::from(*i)).collect()),
        Value::Array(Array::F64(items)) => J::Array(items.iter().map(|f| float(*f)).collect()),
        Value::Array(Array::String(items)) => J::Array(
            items
                .iter()
                .map(|s| J::String(s.as_str().to_owned()))
                .collect(),
        ),
        other => J::String(other.to_string()),
    }
}

fn attributes(attributes: &[KeyValue]) -> BTreeMap<String, serde_json::Value> {
    attributes
        .iter()
        .map(|kv| (kv.key.as_str().to_owned(), json_value(&kv.value)))
        .collect()
}

fn span_view(span: &SpanRecord) -> SpanView {
    SpanView {
        name: span.name.clone(),
        kind: span.kind,
        trace_id: span.trace_id.to_string(),
        span_id: span.span_id.to_string(),
        parent_span_id: (span.parent_span_id != SpanId::INVALID)
            .then(|| span.parent_span_id.to_string()),
        parent_is_remote: span.parent_is_remote,
        start: rfc3339(span.start),
        duration_seconds: seconds(span.duration()),
        status: span.status,
        status_description: span.status_description.clone(),
        sampled: span.sampled,
        attributes: attributes(&span.attributes),
        dropped_attributes: span.dropped_attributes,
        events: span
            .events
            .iter()
            .map(|e| EventView {
                name: e.name.clone(),
                time: rfc3339(e.time),
                offset_seconds: seconds(e.time.duration_since(span.start).unwrap_or_default()),
                attributes: attributes(&e.attributes),
            })
            .collect(),
        dropped_events: span.dropped_events,
    }
}

pub(crate) fn store_view(store: &Store) -> StoreView {
    let s = store.stats();
    StoreView {
        span_names: s.span_names,
        max_span_names: store.limits.max_span_names,
        overflowed_exchanges: s.overflowed_exchanges,
        samples: s.samples,
        sample_bytes: s.sample_bytes,
        max_sample_bytes: store.limits.max_sample_bytes,
        samples_per_bucket: store.limits.samples_per_bucket,
        sample_interval_seconds: seconds(store.limits.sample_interval),
        samples_taken: s.samples_taken,
        samples_refused_bytes: s.samples_refused_bytes,
        captures_in_flight: s.captures_in_flight,
        capture_bytes: s.capture_bytes,
        captures_refused: s.captures_refused,
        capture_spans_dropped: s.capture_spans_dropped,
    }
}

pub(crate) fn summary(pages: &Pages, store: &Store) -> Summary {
    let now = store.now();
    let rows = store
        .rows()
        .iter()
        .map(|stats| {
            let s = store.snapshot(stats, now);
            Row {
                name: s.name.to_string(),
                overflow: s.overflow,
                running: s.running,
                window: WindowCounts {
                    buckets: s.window,
                    count: s.window.iter().sum(),
                    errors: s.window_errors,
                },
                total: TotalCounts {
                    buckets: s.total,
                    count: s.total.iter().sum(),
                    errors: s.total_errors,
                    sum_seconds: s.total_seconds,
                },
                samples: SampleCounts {
                    latency: s.latency_samples,
                    errors: s
                        .error_samples
                        .iter()
                        .map(|(class, n)| (class.to_string(), *n))
                        .collect(),
                },
                kept_by_reason: s
                    .reasons
                    .iter()
                    .map(|(reason, n)| (reason.to_string(), *n))
                    .collect(),
            }
        })
        .collect();
    Summary {
        service: pages.service.clone(),
        window_seconds: seconds(store.limits.window),
        bucket_labels: BUCKET_LABELS,
        bucket_lower_bounds_seconds: BOUNDS_NANOS.map(|n| n as f64 / 1e9),
        rows,
        store: store_view(store),
    }
}

/// The samples of row `name`'s ring `key`; `None` when there is no such row.
pub(crate) fn samples(store: &Store, name: &str, key: &RingKey) -> Option<Samples> {
    let stats = store.find_row(name)?;
    let samples = store
        .samples(&stats, key)
        .iter()
        .map(|s| SampleView {
            span: span_view(&s.root),
            bucket: s.bucket,
            error: s.error.as_deref().map(str::to_owned),
            children: s.children.len(),
            captured: s.captured,
            children_dropped: s.children_dropped,
        })
        .collect();
    let (ring, bucket, error) = match key {
        RingKey::Latency(b) => ("latency", Some(*b), None),
        RingKey::Error(class) => ("error", None, Some(class.clone())),
    };
    Some(Samples {
        name: stats.name.to_string(),
        ring,
        bucket,
        bucket_label: bucket.and_then(|b| BUCKET_LABELS.get(b).copied()),
        error,
        samples,
    })
}

/// The local tree of trace `trace_id`, from the samples that hold it; `None` when none does.
pub(crate) fn trace(store: &Store, trace_id: TraceId) -> Option<Trace> {
    let samples: Vec<Arc<Sample>> = store.trace(trace_id);
    if samples.is_empty() {
        return None;
    }
    let complete = samples.iter().all(|s| s.captured);
    let mut spans: Vec<&SpanRecord> = Vec::new();
    for sample in &samples {
        for span in std::iter::once(&sample.root).chain(&sample.children) {
            if !spans.iter().any(|s| s.span_id == span.span_id) {
                spans.push(span);
            }
        }
    }
    spans.sort_by_key(|s| s.start);
    let start = spans.iter().map(|s| s.start).min().unwrap_or(UNIX_EPOCH);
    let end = spans.iter().map(|s| s.end).max().unwrap_or(start);
    let mut out = Vec::with_capacity(spans.len());
    let is_root = |s: &SpanRecord| !spans.iter().any(|p| p.span_id == s.parent_span_id);
    let mut stack: Vec<(&SpanRecord, usize)> = spans
        .iter()
        .rev()
        .filter(|s| is_root(s))
        .map(|s| (*s, 0))
        .collect();
    while let Some((span, depth)) = stack.pop() {
        out.push(TreeSpan {
            depth,
            offset_seconds: seconds(span.start.duration_since(start).unwrap_or_default()),
            span: span_view(span),
        });
        // Reversed: the earliest child is popped first. Bounded: a span is visited once
        // (ids are unique; a cycle of parents cannot reach a root).
        for child in spans
            .iter()
            .rev()
            .filter(|c| c.parent_span_id == span.span_id && c.span_id != span.span_id)
        {
            stack.push((child, depth + 1));
        }
        if out.len() > spans.len() {
            break;
        }
    }
    Some(Trace {
        trace_id: trace_id.to_string(),
        start: rfc3339(start),
        duration_seconds: seconds(end.duration_since(start).unwrap_or_default()),
        spans: out,
        complete,
    })
}

/// The sampler's configuration as JSON, without debug tokens or the HMAC secret.
fn redacted_config(config: &crate::sampler::SamplingConfig) -> serde_json::Value {
    let mut value = serde_json::to_value(config).unwrap_or(serde_json::Value::Null);
    if let Some(debug) = value.get_mut("debug").and_then(|d| d.as_object_mut()) {
        let tokens = config.debug.tokens.len();
        debug.insert(
            "tokens".into(),
            serde_json::Value::String(format!("<{tokens} redacted>")),
        );
        if debug.contains_key("hmac_secret") {
            debug.insert(
                "hmac_secret".into(),
                serde_json::Value::String("<redacted>".into()),
            );
        }
    }
    value
}

pub(crate) fn sampler(pages: &Pages, store: Option<&Store>) -> Sampler {
    let mut kept_by_reason = BTreeMap::new();
    if let Some(store) = store {
        let now = store.now();
        for stats in store.rows() {
            for (reason, n) in store.snapshot(&stats, now).reasons {
                *kept_by_reason.entry(reason.to_string()).or_insert(0) += n;
            }
        }
    }
    let changes = Changes {
        enabled: pages.tokens.change.is_some() && pages.sampler.is_some(),
        how: match (&pages.tokens.change, &pages.sampler) {
            (_, None) => "disabled: these pages know no sampler",
            (None, _) => "disabled: no token is configured (TracePagesBuilder::token)",
            (Some(_), Some(_)) => "needs the token (constant-time check)",
        },
    };
    let Some(handle) = &pages.sampler else {
        return Sampler {
            available: false,
            base_rate: None,
            high_value_rate: None,
            rules: Vec::new(),
            high_value: Vec::new(),
            config: serde_json::Value::Null,
            strategy: None,
            decisions: None,
            keys: Vec::new(),
            kept_by_reason,
            changes,
        };
    };
    let config = handle.config();
    let stats = handle.stats();
    let mut keys: Vec<KeyView> = stats
        .keys
        .iter()
        .map(|k| KeyView {
            key: k.key.clone(),
            overflow: k.overflow,
            arrivals: k.arrivals,
            sampled: k.sampled,
            dropped: k.dropped,
            rate_limited: k.rate_limited,
            lower_bound: k.lower_bound,
            probability: k.probability,
            arrival_rate: k.arrival_rate,
        })
        .collect();
    keys.sort_by_key(|key| std::cmp::Reverse(key.arrivals));
    keys.truncate(100);
    Sampler {
        available: true,
        base_rate: Some(config.base_rate),
        high_value_rate: Some(config.high_value_rate),
        rules: config
            .rules
            .iter()
            .map(|r| RuleView {
                name: r.name.clone(),
                route: r.route.clone(),
                method: r.method.clone(),
                kind: r.kind.map(|k| format!("{k:?}").to_ascii_lowercase()),
                attributes: r
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                rate: r.rate,
                priority: r.priority,
            })
            .collect(),
        high_value: config
            .high_value
            .iter()
            .map(|h| HighValueView {
                route: h.route.clone(),
                method: h.method.clone(),
            })
            .collect(),
        config: redacted_config(&config),
        strategy: handle.strategy().map(|s| format!("{s:?}")),
        decisions: Some(Decisions {
            sampled: stats.sampled,
            dropped: stats.dropped,
            rate_limited: stats.rate_limited,
            lower_bound: stats.lower_bound,
            debug: stats.debug,
            deferred: stats.deferred,
            total: stats.decisions(),
            global_probability: stats.global_probability,
            global_rate: stats.global_rate,
            tracked_keys: stats.tracked_keys,
        }),
        keys,
        kept_by_reason,
        changes,
    }
}

pub(crate) fn export(pages: &Pages, store: &Store) -> Export {
    let stats: Option<ExportStats> = pages.export.as_ref().map(|e| (e.stats)());
    let Some(stats) = stats else {
        return Export {
            available: false,
            queued: None,
            queue_capacity: None,
            exported: None,
            dropped_queue_full: None,
            dropped_export_failed: None,
            last_error: None,
            deferred: BTreeMap::new(),
            filter: Vec::new(),
            filter_kept_with_children: 0,
            store: store_view(store),
        };
    };
    let d = &stats.deferred;
    let deferred = BTreeMap::from([
        ("buffered_traces", d.buffered_traces),
        ("kept_error", d.kept_error),
        ("kept_slow", d.kept_slow),
        ("kept_downstream", d.kept_downstream),
        ("discarded", d.discarded),
        ("exported_spans", d.exported_spans),
        ("dropped_traces_full", d.dropped_traces_full),
        ("dropped_spans_trace_full", d.dropped_spans_trace_full),
        ("dropped_spans_bytes", d.dropped_spans_bytes),
        ("dropped_spans_untracked", d.dropped_spans_untracked),
        ("evicted_traces", d.evicted_traces),
        ("evicted_spans", d.evicted_spans),
        ("traces", d.traces),
        ("spans", d.spans),
        ("bytes", d.bytes),
    ]);
    Export {
        available: true,
        queued: Some(stats.queued),
        queue_capacity: pages.export.as_ref().and_then(|e| e.queue_capacity),
        exported: Some(stats.exported),
        dropped_queue_full: Some(stats.dropped_queue_full),
        dropped_export_failed: Some(stats.dropped_export_failed),
        last_error: stats
            .last_error
            .as_deref()
            .map(|e| crate::limits::truncate(e, store.max_value_len()).to_owned()),
        deferred,
        filter: stats
            .filter
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.dropped))
            .collect(),
        filter_kept_with_children: stats.filter.kept_with_children,
        store: store_view(store),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123456Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }
}
