//! The client side: [`ClientTracingLayer`] for tower and hyper clients and
//! `ReqwestTracingMiddleware` for reqwest (feature `reqwest`).
//!
//! For each outgoing request, in this order:
//!
//! 1. the **current Context** is read: the current `tracing` span's OpenTelemetry
//!    Context when that span is enabled and has one, else
//!    `opentelemetry::Context::current()`. Inside a handler traced by
//!    [`TracingLayer`](crate::server::TracingLayer) that is the server span, with the
//!    incoming baggage and correlation id. When `Context::current()` holds that same
//!    span (as it does inside the span), it is used, so baggage the caller attached on
//!    top (`Context::current_with_baggage(..)`) is sent too;
//! 2. the **client span** (kind Client), an OpenTelemetry SDK span, starts as a child of
//!    that Context with every attribute the sampler reads (`http.request.method`,
//!    `server.address`, `server.port`, `url.full`). Its name is `{method}`, or
//!    `{method} {template}` when the request carries a [`UrlTemplate`]; a gRPC call (a
//!    tonic `Channel` wrapped with this layer) is named `{rpc.service}/{rpc.method}` and
//!    starts with `rpc.system`, `rpc.service` and `rpc.method`. With no valid
//!    current span (a background job) it is the root of a new trace, decided by the
//!    sampler, and the W3C random flag goes out with it. It comes from the layer's
//!    `tracer_provider(..)`, else the installed [`TracingManager`](crate::TracingManager),
//!    else OpenTelemetry's global provider;
//! 3. the headers are written from the client span's Context, so each call carries a
//!    new parent-id: `traceparent` (sampled and random flags kept), `tracestate`,
//!    `baggage`, and the correlation id header (`x-correlation-id` by default, from the
//!    validated [`CorrelationId`](crate::context::CorrelationId) in the Context; a value
//!    the caller set is never overwritten). The [`PropagationPolicy`] decides per host
//!    what is sent; [`NoPropagation`] turns it off for one request. A value that cannot
//!    be encoded is skipped, and the request goes on. `traceparent` and `tracestate`
//!    already on the request are replaced (the client span is the parent now), as is
//!    `baggage` when the Context has baggage to send; when a header is withheld, one
//!    the caller set is left alone;
//! 4. the inner client is called inside the span;
//! 5. on the response: `http.response.status_code`; 4xx and 5xx mark the span as an
//!    error with `error.type` = the status code (a gRPC call: every `grpc-status` but `OK`,
//!    read from the headers or the trailers, `error.type` = the code's name; the
//!    [classifier](crate::classify) decides). A transport error marks it as an error
//!    with a short `error.type` (`connect` for a refused connection, `timeout`, or the
//!    error's type name; with feature `hyper`, hyper-util's client errors are typed too)
//!    and an `exception` event, and is returned to the caller unchanged;
//! 6. **the span ends when the response body has been read to its end, fails, or is
//!    dropped**, so a streamed download is timed to its end.
//!
//! Each call also records `http.client.request.duration` (see [`crate::metrics`]), sampled
//! or not, when its span ends and with the same clock readings.
//!
//! A call dropped before its response (an outer `tokio::time::timeout` or
//! `tower::timeout`, an aborted task) ends its span then, with `error.type = "cancelled"`
//! and status Error. A response body the caller drops before its end records
//! `error.type = "cancelled"` and keeps the status the response code gives: the caller
//! chose to stop reading. A timeout a layer *below* this one reports as an error (tower's
//! `Elapsed`, reqwest's own timeout) is `error.type = "timeout"`.
//!
//! `url.full` never contains userinfo, and the values of sensitive query parameters
//! ([`DEFAULT_SENSITIVE_QUERY_PARAMS`])
//! are recorded as `REDACTED`, as on the server side.
//!
//! With hyper-util's client (or any tower service of `http::Request`):
//!
//! ```
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use meshtrace::client::{ClientTracingLayer, UrlTemplate};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let client = ServiceBuilder::new()
//!     .layer(ClientTracingLayer::new())
//!     .service(Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>());
//!
//! let mut request = http::Request::get("http://orders.internal/orders/42")
//!     .body(Empty::new())
//!     .unwrap();
//! // Optional: the span is then named `GET /orders/{id}`.
//! request.extensions_mut().insert(UrlTemplate("/orders/{id}"));
//! # if false {
//! let response = client.oneshot(request).await;
//! # }
//! # }
//! ```
//!
//! With reqwest, see `ReqwestTracingMiddleware` (feature `reqwest`).

mod call;
mod future;
mod layer;
mod policy;
#[cfg(feature = "reqwest")]
mod reqwest;
mod service;

pub use crate::http::{DEFAULT_SENSITIVE_QUERY_PARAMS, TracedBody};
pub use future::ResponseFuture;
pub use layer::ClientTracingLayer;
pub use policy::{Propagation, PropagationPolicy, PropagationPolicyBuilder};
#[cfg(feature = "reqwest")]
pub use reqwest::ReqwestTracingMiddleware;
pub use service::ClientTracingService;

/// Request extension: send no trace headers at all with this request (no
/// `traceparent`, `tracestate`, `baggage` or correlation id). The client span is still
/// recorded.
///
/// ```
/// use meshtrace::client::NoPropagation;
///
/// let mut request = http::Request::get("https://api.partner.example/v1/rates")
///     .body(())
///     .unwrap();
/// request.extensions_mut().insert(NoPropagation);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoPropagation;

/// Request extension: the URL template of this request (e.g. `"/users/{id}"`); the
/// client span is then named `{method} {template}` and records `url.template`.
///
/// It is a `&'static str` on purpose: span names must have low cardinality, so a
/// template is written in the code, never built from request data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlTemplate(pub &'static str);
