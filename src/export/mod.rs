//! Getting finished spans out of the process: the export gate, the counters, and the
//! exporters [`TracingManager`](crate::manager::TracingManager) wires up.
//!
//! The pipeline, per finished span:
//!
//! ```text
//! span ends -> ExportGate: unsampled (RecordOnly)? -> discarded, never exported
//!                          random trace id?        -> W3C flag 0x02 set, as propagated
//!                          strings                 -> cut to max_attribute_value_length
//!                          queue full?             -> dropped, counted (never blocks)
//!           -> opentelemetry_sdk BatchSpanProcessor (own thread, bounded queue)
//!           -> counting exporter: exported / export failed counted, trouble logged once
//!           -> stdout | OTLP (HTTP/protobuf, HTTP/JSON, gRPC; TLS) | custom exporter
//! ```
//!
//! The counts are read with [`TracingManager::stats`](crate::manager::TracingManager::stats).
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
pub(crate) mod events;
mod gate;
#[cfg(feature = "otlp-logs")]
pub(crate) mod logs;
#[cfg(feature = "otlp")]
pub(crate) mod otlp;
pub(crate) mod stdout;
pub(crate) mod suppress;

pub use counting::ExportStats;
pub(crate) use counting::{Counters, CountingExporter, DynSpanExporter};
pub(crate) use gate::ExportGate;
pub use stdout::StdoutExporter;
pub use suppress::SpanFilter;
