//! Getting finished spans out of the process: the export gate, the counters, and the
//! exporters [`TracingManager`](crate::manager::TracingManager) wires up.
//!
//! The pipeline, per finished span:
//!
//! ```text
//! span ends -> ExportGate: unsampled (RecordOnly)? -> deferred: buffered per trace until its
//!                                                     local root ends, then exported as
//!                                                     sampled (error | slow | downstream)
//!                                                     or freed; never exported as it is
//!                          export filter?          -> matching leaf spans dropped, counted
//!                          random trace id?        -> W3C flag 0x02 set, as propagated
//!                          strings                 -> cut to max_attribute_value_length
//!                          queue full?             -> dropped, counted (never blocks)
//!           -> opentelemetry_sdk BatchSpanProcessor (own thread, bounded queue)
//!           -> counting exporter: exported / export failed counted, trouble logged once
//!           -> stdout | OTLP (HTTP/protobuf, HTTP/JSON, gRPC; TLS) | custom exporter
//! ```
//!
//! The counts are read with [`TracingManager::stats`](crate::manager::TracingManager::stats):
//! [`ExportStats`], with [`DeferredStats`] and [`FilterStats`] in it.
//!
//! # Deferred capture
//!
//! The gate is the only processor in front of the exporter, so RecordOnly spans (the
//! sampler's deferred capture, see [`crate::sampler#deferred-capture`]) never reach it as
//! they are. They wait in a buffer, one entry per trace id, in shards chosen by the trace
//! id (four per CPU, up to 64), each behind its own `Mutex` held for one map operation:
//! requests contend only when their traces share a shard, sampled spans never touch it,
//! and kept spans are queued after the lock is released. Nothing waits for room: a full
//! buffer drops the span (or the whole trace, when `max_traces` traces are buffered) and
//! counts it. Bounds and thresholds are read from the sampler's configuration in force, so
//! a reload applies at once.
//!
//! # The export filter
//!
//! [`ExportFilterConfig`] drops finished spans before they are queued, by span name
//! (glob), kind, attributes and duration, e.g. internal spans shorter than 1 ms or one
//! noisy library's spans. Only **leaf** spans are dropped: a matching span that a recorded
//! span of this process started as its child before it ended (a child still running when
//! its parent ends counts), or a client or producer span (its child may be in another
//! service, which received its id in `traceparent`), is kept and counted as
//! `kept_with_children`. It applies to sampled spans and to the spans deferred capture
//! keeps alike; drops are counted per rule (the first rule a span matches) in
//! [`FilterStats`].
//!
//! Why leaves and not re-parenting the children of a dropped span: children end before
//! their parents, so when a child is queued its parent's fate is unknown (a duration rule
//! needs the parent's end). Re-parenting would hold every exported child back until its
//! parent ended, which is buffering all sampled traffic and delaying its export; leaves
//! need only the set of span ids that have started children (one entry per parent, added
//! when its first child starts, removed when the parent ends, in 16 shards each behind its
//! own lock, only while rules are set; bounded: [`MAX_TRACKED_PARENTS`] entries, swept
//! after [`TRACKED_PARENT_MAX_AGE`]; when it is full, nothing counts as a leaf for that
//! long and spans are kept). And what users want filtered (short internal spans, one
//! library's calls, health checks) is nearly always a leaf.
//!
//! So no exported span points to a parent that was filtered out, with one exception: a
//! child that **starts after its parent ended** is not known when the parent is decided.
//! That takes an OpenTelemetry parent whose Context outlives it (the server span, a client
//! span, a Context handed to later work): a `tracing` span never ends before its `tracing`
//! children. With tracing-opentelemetry 0.34 a `tracing` span starts when it is first
//! entered, so a task spawned with `.instrument(span)` starts its span at its first poll,
//! which may come after the request's server span ended.
//!
//! # When something goes wrong
//!
//! The request path only enqueues: a collector that is down, slow, or refuses the TLS
//! handshake never slows a request. What is lost is counted ([`ExportStats`]) and said once,
//! as a `WARN` line with target `meshtrace` when exports start failing or the queue starts
//! dropping spans (with the counts and the cause, e.g. the refused certificate and the
//! endpoint), and an `INFO` line when an export succeeds again (how long it took and how many
//! spans were lost). The lines are written from the exporter's thread when an export ends,
//! so a hung collector is reported when its export times out (`batch.export_timeout_ms`,
//! and the OTLP `timeout_ms` per request).
//!
//! # The exporter never traces itself
//!
//! Spans and events emitted while exporting (the OTLP clients' hyper, h2, tonic and reqwest
//! spans) are never exported, whatever the span filter says: see [`SpanFilter`]. They
//! still reach the log output when the log filter enables them.

mod counting;
pub(crate) mod deferred;
pub(crate) mod events;
mod filter;
mod gate;
#[cfg(feature = "otlp-logs")]
pub(crate) mod logs;
#[cfg(feature = "otlp")]
pub(crate) mod otlp;
pub(crate) mod stdout;
pub(crate) mod suppress;

pub use counting::ExportStats;
pub(crate) use counting::{Counters, CountingExporter, DynSpanExporter};
pub(crate) use deferred::Deferred;
pub use deferred::DeferredStats;
pub(crate) use filter::ExportFilter;
pub use filter::{
    ENV_EXPORT_FILTER, ExportFilterConfig, FilterRule, FilterRuleStats, FilterStats,
    MAX_FILTER_RULES, MAX_TRACKED_PARENTS, TRACKED_PARENT_MAX_AGE,
};
pub(crate) use gate::ExportGate;
pub use stdout::StdoutExporter;
pub use suppress::SpanFilter;
