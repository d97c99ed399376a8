//! meshtrace: distributed tracing for axum, tower, hyper and reqwest services that is
//! correct (W3C Trace Context Level 2, W3C Baggage, OpenTelemetry HTTP semantic
//! conventions), cheap when a request is not sampled, and safe by default (bad headers
//! never fail a request, credentials and client-chosen values never leak).
//!
//! | module | what it holds |
//! |---|---|
//! | [`server`] | [`TracingLayer`](server::TracingLayer): the server span for axum / tower |
//! | [`client`] | [`ClientTracingLayer`](client::ClientTracingLayer) (tower / hyper) and `ReqwestTracingMiddleware` (feature `reqwest`): client spans, trace headers out, [`PropagationPolicy`](client::PropagationPolicy) |
//! | [`manager`] | [`TracingManager`]: one-call setup (provider, sampler, exporter, subscriber, propagator) and flushing shutdown |
//! | [`metrics`] | HTTP metrics (`http.server.request.duration`, `http.client.request.duration`) off the same request path, [`StdoutMetricExporter`](metrics::StdoutMetricExporter) |
//! | [`config`] | [`TracingConfig`](config::TracingConfig): the file / `OTEL_*` / builder configuration and its validation |
//! | [`export`] | the sampled-only bounded export queue, [`ExportStats`](export::ExportStats), [`StdoutExporter`](export::StdoutExporter) |
//! | [`context`] | W3C `traceparent` / `tracestate` / `baggage`, [`CorrelationId`](context::CorrelationId), [`W3cPropagator`](context::W3cPropagator) |
//! | [`sampler`] | [`CustomSampler`] and [`SamplingConfig`]: priority-based, consistent (`ot=th`/`rv`) head sampling, runtime reload |
//! | [`logging`] | log lines carrying `trace_id`, `span_id` and `correlation_id` (text or JSON) |
//! | `pages` | in-process trace pages (zPages): trace summary, samples, trace trees, sampler, export, as an axum Router (feature `pages`) |
//! | `extract` | axum extractors: `CorrelationId`, `TraceContext` (feature `axum`) |
//! | `traced` | the `#[traced]` attribute: a span per function, no argument recorded unless listed (feature `macros`) |
//! | [`prelude`] | everything above a service touches, in one `use meshtrace::prelude::*;` |
//!
//! A traced axum service, its spans exported by the real OpenTelemetry SDK:
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use meshtrace::context::CorrelationId;
//! use meshtrace::server::TracingLayer;
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tower::ServiceExt;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[cfg(not(feature = "axum"))] fn main() {} // the extractor needs feature `axum`
//! # #[cfg(feature = "axum")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder()
//!     .with_simple_exporter(exporter.clone())
//!     .build();
//! // For `tracing` spans made in handlers (`#[instrument]`, `#[traced]`): children of the
//! // server span.
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("docs")));
//! let _guard = tracing::subscriber::set_default(subscriber);
//!
//! let app = Router::new()
//!     .route("/orders/{id}", get(|cid: CorrelationId| async move { cid.to_string() }))
//!     // The server span is an OpenTelemetry span from this provider.
//!     .layer(TracingLayer::new().tracer_provider(&provider));
//!
//! let request = http::Request::get("/orders/42")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .header("x-correlation-id", "order-42")
//!     .body(Body::empty())
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()["x-correlation-id"], "order-42");
//! drop(response); // the span ends with the response body
//!
//! let spans = exporter.get_finished_spans().unwrap();
//! assert_eq!(spans[0].name, "GET /orders/{id}");
//! assert_eq!(spans[0].span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! # }
//! ```
//!
//! This file holds crate docs and re-exports only.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod context;
mod error;
pub mod export;
#[cfg(feature = "axum")]
pub mod extract;
mod http;
mod limits;
pub mod logging;
mod macro_support;
pub mod manager;
pub mod metrics;
#[cfg(feature = "pages")]
pub mod pages;
// Without the feature: the hooks the request path and the export gate call, doing nothing.
#[cfg(not(feature = "pages"))]
#[path = "pages/off.rs"]
pub(crate) mod pages;
pub mod sampler;
pub mod server;

pub use error::{Error, ParseError};
pub use http::classify;
pub use manager::{
    ExistingGlobals, Layers, TracingManager, TracingManagerBuilder, shutdown_signal,
};
pub use sampler::{CustomSampler, SamplerHandle, SamplingConfig};

// Compiles and runs the README's examples as doctests, so they cannot drift.
// (The README's examples use the integrations it shows; with fewer features they are
// not compiled.)
#[cfg(all(
    doctest,
    feature = "axum",
    feature = "reqwest",
    feature = "macros",
    feature = "pages"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "macros")]
#[doc = include_str!("traced.md")]
pub use meshtrace_macros::traced;

/// Paths used by macro expansions; not public API.
#[doc(hidden)]
pub mod __private {
    pub use opentelemetry;
    pub use tracing;
    pub use tracing_opentelemetry;

    pub use crate::macro_support::{
        AnyErr, ErrWithDebug, ErrWithDisplay, NotResult, Returned, Unsigned, mark_root,
        record_unsigned,
    };
}

/// What every user touches, in one import: `use meshtrace::prelude::*;`.
///
/// The manager and its shutdown signal, the server and client layers, the reqwest
/// middleware (feature `reqwest`), the extractors (feature `axum`), the sampler
/// configuration, the spawned-work helper and `#[traced]` (feature `macros`).
pub mod prelude {
    #[cfg(feature = "reqwest")]
    pub use crate::client::ReqwestTracingMiddleware;
    pub use crate::client::{ClientTracingLayer, NoPropagation, PropagationPolicy, UrlTemplate};
    pub use crate::context::{CorrelationId, TraceFutureExt};
    #[cfg(feature = "axum")]
    pub use crate::extract::TraceContext;
    pub use crate::logging::LogFormat;
    pub use crate::manager::{TracingManager, TracingManagerBuilder, shutdown_signal};
    pub use crate::sampler::{SamplingConfig, SamplingRule};
    pub use crate::server::TracingLayer;
    #[cfg(feature = "macros")]
    pub use meshtrace_macros::traced;
}
