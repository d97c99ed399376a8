//! Getting finished spans out of the process: the export gate, the counters, and the
//! exporters [`TracingManager`](crate::manager::TracingManager) wires up.
//!
//! The pipeline, per finished span:
//!
//! ```text
//! span ends -> ExportGate: unsampled (RecordOnly)? -> discarded, never exported
//!                          queue full?             -> dropped, counted (never blocks)
//!           -> opentelemetry_sdk BatchSpanProcessor (own thread, bounded queue)
//!           -> counting exporter: exported / export failed counted
//!           -> stdout | OTLP (HTTP/protobuf, gRPC) | custom exporter
//! ```
//!
//! The counts are read with [`TracingManager::stats`](crate::manager::TracingManager::stats).

mod gate;
#[cfg(feature = "otlp")]
pub(crate) mod otlp;
mod stdout;

pub use gate::ExportStats;
pub(crate) use gate::{Counters, CountingExporter, DynSpanExporter, ExportGate};
pub use stdout::StdoutExporter;
