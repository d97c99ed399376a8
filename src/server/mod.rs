//! The server side: [`TracingLayer`] and the [`TracingService`] it builds.
//!
//! For each request the service, in this order:
//!
//! 1. reads the [`CorrelationId`](crate::context::CorrelationId) (configured header, then
//!    `X-Request-ID`, else a new UUID v4) and stores it in the request extensions;
//! 2. if the [skip predicate](TracingLayer::skip_if) matches, calls the inner service
//!    untraced and only echoes the correlation id;
//! 3. extracts `traceparent`, `tracestate` and `baggage` with `Context::new()` as the base
//!    (never the ambient context) and adds the correlation id (and, for the sampler, the
//!    debug header and the untrusted-edge marker) to that parent Context;
//! 4. starts the server span, an OpenTelemetry SDK span (kind Server), with a
//!    `SpanBuilder` that carries what the sampler reads (`http.request.method`,
//!    `http.route`, `url.scheme`, ...), so the provider's sampler decides once, with the
//!    parent and the attributes in hand. The span comes from
//!    [`TracingLayer::tracer_provider`], else the installed
//!    [`TracingManager`](crate::TracingManager), else OpenTelemetry's global provider;
//! 5. attaches the request's Context (the span, the baggage, the correlation id) as
//!    `opentelemetry::Context::current()` while the inner service is called and polled
//!    and while the response body is polled (with axum, read it with the `TraceContext`
//!    extractor): `tracing` spans made in the handler (`#[instrument]`, `#[traced]`,
//!    `info_span!`) are its children (through tracing-opentelemetry), log lines carry its
//!    ids, outgoing calls continue its trace. This holds for sampled and
//!    dropped requests alike: a dropped span still has its trace id and span id;
//! 6. on the response: records `http.response.status_code`, marks 5xx and inner-service
//!    errors as errors (with `error.type`; the [classifier](crate::classify) decides what
//!    a failure is), echoes the correlation id header, and wraps the body so that **the
//!    span ends when the body has been fully sent (trailers included), fails, or is
//!    dropped** (a `HEAD` request, 1xx/204/304 responses and upgrades end at the head; a
//!    `text/event-stream` response at a [limit](TracingLayer::event_stream_span_limit) at
//!    the latest);
//! 7. a panic in the handler becomes a `500` response; the span records it as an error
//!    (`error.type = "panic"` and an `exception` event) and still ends.
//!
//! Sampled or not, the request also records `http.server.request.duration` (see
//! [`crate::metrics`]) at the moment its span ends, from the same clock readings, with the
//! span's status code and `error.type`; skipped requests record nothing.
//!
//! # What each outcome records
//!
//! | what happened | `error.type` | span status |
//! |---|---|---|
//! | the handler answered 5xx | the status code | Error |
//! | the handler answered 4xx | - | Unset (the client's failure) |
//! | the inner service returned an error | its kind (`timeout`, ...) or its type name | Error |
//! | the handler panicked | `panic` | Error |
//! | the response body failed | `body` | Error |
//! | the client went away before the response (the future was dropped) | `cancelled` | Error |
//! | the response body was dropped before its end (the client hung up mid-stream) | `cancelled` | Error |
//! | gRPC: `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS` | the code's name | Error |
//! | gRPC: any other code (`OK`, `NOT_FOUND`, `CANCELLED`, ...) | - | Unset |
//! | gRPC: the call was dropped before its status (the client cancelled it) | `cancelled`, and `rpc.grpc.status_code = 1` | Error |
//! | a `text/event-stream` body still open at the limit | - (`meshtrace.truncated = true`) | unchanged |
//!
//! A layer only sees that its future or body was dropped, not why, so every drop is
//! `cancelled`. A server that could not deliver its response failed, as the conventions
//! say of network errors; the span ends at the drop, so its duration is what the exchange
//! really took. Client spans record the same values with the client-side rules (see the
//! [client module](crate::client)).
//!
//! # gRPC
//!
//! A `POST` with `content-type: application/grpc*` is a gRPC call (tonic's
//! `Server::builder().layer(TracingLayer::new())`): its span is named
//! `{rpc.service}/{rpc.method}` from the path, starts with `rpc.system`, `rpc.service` and
//! `rpc.method` (so sampling rules match them), and records `rpc.grpc.status_code` from the
//! response headers or the trailers. The path is chosen by the client: anything but
//! `/{service}/{method}` of proto identifiers within 256 and 128 bytes is named `_OTHER`,
//! and so is a call the service answers `UNIMPLEMENTED`. See the README's gRPC section for
//! the whole table.
//!
//! A call that ends by cancellation (the client dropped it, or hung up mid-stream) before
//! any status was sent records `rpc.grpc.status_code = 1` (`CANCELLED`), on the span and
//! on `rpc.server.duration`, since the v1.37 conventions make the code Required; its
//! `error.type` is `cancelled` and its span status Error, as for any HTTP request whose
//! response could not be delivered. That is a deliberate departure from the gRPC status
//! rule (`CANCELLED` is not a server error): that rule is about a status the service
//! *sent*, here none was, and the layer sees only the drop, not why it happened. The
//! span says what a reader of the trace needs: the call was cut off before its end, the
//! same on a gRPC and an HTTP server. On the client the HTTP rules apply too: a caller that
//! dropped a stream it was reading made a choice (status Unset, `error.type =
//! "cancelled"`, code `1`), a call dropped before any response is an Error.
//!
//! # Adding attributes from a handler
//!
//! The one way: the `TraceContext` extractor (`meshtrace::extract`, feature `axum`) holds
//! the server span; `trace.set_attribute(KeyValue::new("order.id", id))` records on it,
//! whatever `tracing` span the handler is in. `opentelemetry::Context::current().span()`
//! is the innermost span instead, which inside an `#[instrument]` span is that span (with
//! plain tower, `Context::current()` in the inner service, before it starts spans of its
//! own, is the request's Context).
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

mod forwarded;
mod future;
mod layer;
mod request_id;
mod service;
mod span;

pub use crate::http::long_lived::{DEFAULT_EVENT_STREAM_LIMIT, TRUNCATED};
pub use crate::http::{DEFAULT_SENSITIVE_QUERY_PARAMS, TracedBody};
pub use future::ResponseFuture;
pub use layer::{DEFAULT_DEBUG_HEADER, TracingLayer};
pub use request_id::MakeCorrelationId;
pub use service::TracingService;
