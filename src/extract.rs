//! axum extractors for the values [`TracingLayer`](crate::server::TracingLayer) stores.
//!
//! ```
//! use axum::{Router, routing::get};
//! use meshtrace::context::CorrelationId;
//! use meshtrace::extract::TraceContext;
//! use meshtrace::server::TracingLayer;
//!
//! async fn handler(cid: CorrelationId, trace: TraceContext) -> String {
//!     format!("{cid} {} sampled={}", trace.trace_id, trace.sampled)
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(handler))
//!     .layer(TracingLayer::new());
//! ```
//!
//! Without the layer both extractors reject the request with a `500` whose body says
//! to add `TracingLayer`: a missing layer is a programming error, not a client error.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};

use crate::context::{CorrelationId, RequestMeta};

/// Rejection of [`CorrelationId`] and [`TraceContext`] when `TracingLayer` is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingTracingLayer;

impl std::fmt::Display for MissingTracingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "meshtrace: no trace context on this request; add `.layer(meshtrace::server::TracingLayer::new())` to the Router",
        )
    }
}

impl std::error::Error for MissingTracingLayer {}

impl IntoResponse for MissingTracingLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = MissingTracingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CorrelationId>()
            .cloned()
            .ok_or(MissingTracingLayer)
    }
}

/// The request's trace, as an axum extractor: ids, the sampling decision, the baggage
/// (through [`TraceContext::baggage`]) and the full OpenTelemetry Context (to start child spans or inject by hand).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TraceContext {
    /// The trace id (also when the span is not sampled).
    pub trace_id: TraceId,
    /// The server span's id (also when the span is not sampled).
    pub span_id: SpanId,
    /// Whether the server span is sampled (will be exported).
    pub sampled: bool,
    /// The full Context.
    pub context: opentelemetry::Context,
}

impl TraceContext {
    /// The W3C baggage received with the request.
    pub fn baggage(&self) -> &Baggage {
        self.context.baggage()
    }

    /// Records an attribute on the server span, whatever `tracing` span the handler is in
    /// (nothing when the span does not record). This is the way to add attributes to the
    /// request's span from a handler.
    ///
    /// ```
    /// use meshtrace::extract::TraceContext;
    /// use opentelemetry::KeyValue;
    ///
    /// async fn order(trace: TraceContext) -> &'static str {
    ///     trace.set_attribute(KeyValue::new("order.priority", "express"));
    ///     "ok"
    /// }
    /// ```
    pub fn set_attribute(&self, attribute: opentelemetry::KeyValue) {
        self.context.span().set_attribute(attribute);
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TraceContext {
    type Rejection = MissingTracingLayer;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // The layer attaches the request's Context while the inner service runs, and
        // extractors run before the handler starts spans of its own, so the current
        // Context is the request's. Only the layer puts a `RequestMeta` in it.
        let cx = opentelemetry::Context::current();
        if cx.get::<RequestMeta>().is_none() {
            return Err(MissingTracingLayer);
        }
        let span = cx.span();
        let sc = span.span_context();
        Ok(TraceContext {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            sampled: sc.is_sampled(),
            context: cx.clone(),
        })
    }
}
