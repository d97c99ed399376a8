//! HTTP metrics off the same request path as the spans, for every request, sampled or not.
//!
//! [`TracingLayer`](crate::server::TracingLayer) records, per request (the stable HTTP
//! semantic conventions):
//!
//! | instrument | unit | attributes |
//! |---|---|---|
//! | `http.server.request.duration` (histogram, buckets [`HTTP_DURATION_BUCKETS`]) | `s` | `http.request.method` (`_OTHER` for unknown methods), `url.scheme`, `http.route` (the template; absent when no route matched), `http.response.status_code`, `error.type`, `network.protocol.version`; opt-in `server.address`, `server.port` |
//! | `http.server.active_requests` (opt-in, up-down counter) | `{request}` | `http.request.method`, `url.scheme` |
//! | `http.server.request.body.size`, `http.server.response.body.size` (opt-in, histograms) | `By` | as the duration |
//!
//! [`ClientTracingLayer`](crate::client::ClientTracingLayer) and
//! `ReqwestTracingMiddleware` record `http.client.request.duration` (`s`) with
//! `http.request.method`, `server.address`, `server.port`, `http.response.status_code`,
//! `error.type` and `url.template` (when the request carries a
//! [`UrlTemplate`](crate::client::UrlTemplate)).
//!
//! # The value is the span's duration
//!
//! The metric is recorded where the span ends (when the response body ends, fails or is
//! dropped, see [the outcome table](crate::server#what-each-outcome-records)), from the
//! same two clock readings: the layer reads the clock once when the request starts and
//! starts the span at that instant (`SpanBuilder::start_time`), and reads it once when the
//! exchange ends and ends the span at that instant (`end_with_timestamp`). A span that the
//! sampler dropped is measured the same way, so sampled and unsampled requests alike are
//! counted, with the duration their span has (or would have had). `error.type` and the
//! status code are the span's.
//!
//! # Cardinality
//!
//! Every attribute value comes from a bounded set: the nine known methods and `_OTHER`,
//! route templates (never a raw path; requests no route matched carry no `http.route`, as
//! the conventions ask, so they share one attribute set per method and status; so do the
//! routes of a process beyond its first 1024 distinct route templates, a bound that only a
//! pathological Router reaches), status
//! codes, the `error.type` values of [the outcome table](crate::server#what-each-outcome-records)
//! and error type names. `server.address` is opt-in on the server because the client
//! chooses the `Host` header. The manager sets the SDK's per-instrument cardinality limit
//! explicitly (`metrics.cardinality_limit`, default 2000): measurements beyond it go to
//! one overflow attribute set. The sampler's per-key counter gets
//! [`LimitsConfig::key_metric_attribute_sets`](crate::sampler::LimitsConfig::key_metric_attribute_sets)
//! when that is larger (4100 at the default 1024 keys).
//!
//! # Cost
//!
//! Instruments are created once per meter. Per request, with metrics on: two clock
//! readings (with a sampled span, the same two the SDK would make for the span), the
//! attribute set on the stack (no allocation: `&'static str` values), and one histogram
//! record. With metrics off (`metrics(false)` on a layer, or the manager's metrics off),
//! nothing: no clock reading, no attribute. `docs/performance.md` has the figures.
//!
//! # Where they go
//!
//! [`TracingManager`](crate::TracingManager) sets up a meter provider with the spans'
//! resource (`[metrics]` in the configuration: on by default, exported where the spans
//! go: stdout with [`StdoutMetricExporter`], or OTLP), registers the sampler's counters
//! on it, and hands its meter to the layers. Without a manager, layers use OpenTelemetry's
//! global meter provider, or the meter given to their `meter(..)` method.

pub(crate) mod http;
#[cfg(feature = "otlp")]
mod otlp;
pub(crate) mod provider;
mod stdout;

pub use http::HTTP_DURATION_BUCKETS;
pub use stdout::StdoutMetricExporter;
