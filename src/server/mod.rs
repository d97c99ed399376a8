//! The server side: [`TracingLayer`] and the [`TracingService`] it builds.
//!
//! For each request the service, in this order:
//!
//! 1. reads the [`CorrelationId`](crate::context::CorrelationId) (configured header, then
//!    `X-Request-ID`, else a new UUID v4) and stores it in the request extensions;
//! 2. if the [skip predicate](TracingLayer::skip_if) matches, calls the inner service
//!    untraced and only echoes the correlation id;
//! 3. extracts `traceparent`, `tracestate` and `baggage` with `Context::new()` as the base
//!    (never the ambient context), adds the correlation id (and, for the sampler, the
//!    debug header and the untrusted-edge marker) to that parent Context;
//! 4. creates the server span with every field the sampler needs (`otel.name`,
//!    `http.request.method`, `http.route`, `url.path`, ...) and sets its parent
//!    **before** it is entered, so the OpenTelemetry sampler decides with them;
//! 5. stores the span's Context in the request extensions (read it with the
//!    [`TraceContext`](crate::extract::TraceContext) extractor) and calls the inner
//!    service inside the span; with tracing-opentelemetry's default context activation,
//!    `opentelemetry::Context::current()` in the handler carries the span, the baggage
//!    and the correlation id. When the span is disabled (for example by an `EnvFilter`)
//!    or no tracing-opentelemetry layer is installed, the extracted Context is attached
//!    instead, so outgoing calls still continue the trace;
//! 6. on the response: records `http.response.status_code`, marks 5xx and inner-service
//!    errors as errors (with `error.type`), echoes the correlation id header, and wraps
//!    the body so that **the span ends when the body has been fully sent or dropped**;
//! 7. a panic in the handler becomes a `500` response; the span records it as an error
//!    (`error.type = "panic"` and an `exception` event) and still ends.
//!
//! ```
//! use axum::{Router, routing::get};
//! use meshtrace::server::TracingLayer;
//!
//! let app: Router = Router::new()
//!     .route("/orders/{id}", get(|| async { "order" }))
//!     .route("/health", get(|| async { "ok" }))
//!     // `Router::layer` runs the layer after routing, so the span is named
//!     // `GET /orders/{id}` (axum's `MatchedPath`), never with the raw path.
//!     .layer(TracingLayer::new().skip_if(|req| req.uri.path() == "/health"));
//! ```

pub(crate) mod attributes;
mod body;
mod future;
mod ids;
mod layer;
mod service;

pub use body::TracedBody;
pub use future::ResponseFuture;
pub use ids::RootIdGenerator;
pub use layer::{DEFAULT_SENSITIVE_QUERY_PARAMS, TracingLayer};
pub use service::TracingService;

/// The request's trace Context, stored in the request extensions by [`TracingService`].
///
/// It holds the server span (when there is one), the extracted baggage and the
/// correlation id. With axum, the [`TraceContext`](crate::extract::TraceContext)
/// extractor reads it; with plain tower, read it from `request.extensions()`.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub(crate) cx: opentelemetry::Context,
}

impl RequestContext {
    /// The OpenTelemetry Context of the request: the server span (or the remote parent
    /// when the span is disabled), baggage and correlation id.
    pub fn context(&self) -> &opentelemetry::Context {
        &self.cx
    }
}
