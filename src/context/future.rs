//! [`TraceFutureExt::in_current_trace`]: hand the current trace to spawned work.

use opentelemetry::context::{FutureExt as _, WithContext};
use tracing::instrument::{Instrument as _, Instrumented};

/// The future returned by [`TraceFutureExt::in_current_trace`].
pub type InCurrentTrace<F> = Instrumented<WithContext<F>>;

/// Carries the current trace into a future that runs elsewhere (`tokio::spawn`, a
/// `JoinSet`, a channel consumer).
///
/// meshtrace's server and client spans are OpenTelemetry spans carried by the
/// OpenTelemetry Context, not `tracing` spans, so `fut.instrument(Span::current())` alone
/// does not carry them. `in_current_trace` captures both the current `tracing` span and
/// the current OpenTelemetry Context, and restores both on every poll: log lines in the
/// spawned work carry `trace_id`, `span_id` and `correlation_id`, `tracing` spans made there
/// are children of the request's span, outgoing calls continue its trace, and
/// `Context::current().baggage()` is the request's baggage. It works the same for sampled
/// and dropped requests, with [`TracingLayer::new`](crate::server::TracingLayer::new) and
/// with `TracingManager::server_layer()`.
///
/// ```
/// use meshtrace::context::TraceFutureExt as _;
///
/// async fn handler() -> &'static str {
///     tokio::spawn(
///         async {
///             tracing::info!("still in the request's trace");
///         }
///         .in_current_trace(),
///     );
///     "accepted"
/// }
/// ```
pub trait TraceFutureExt: Sized {
    /// Wraps the future so that it runs in the current `tracing` span and OpenTelemetry
    /// Context.
    fn in_current_trace(self) -> InCurrentTrace<Self> {
        self.with_current_context()
            .instrument(tracing::Span::current())
    }
}

impl<F: std::future::Future> TraceFutureExt for F {}
