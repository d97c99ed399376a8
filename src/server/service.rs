//! [`TracingService`]: `poll_ready` and `call`.

use std::borrow::Cow;
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::{Request, Response};
use opentelemetry::{Array, StringValue, Value};
use tower_service::Service;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceId};
use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

use super::RequestContext;
use super::attributes;
use super::body::TracedBody;
use super::future::{ResponseFuture, panic_message};
use super::ids;
use super::layer::ServerConfig;
use crate::context::{self, CorrelationId};
use crate::sampler::{DebugRequest, RootInputs, UntrustedEdge};

/// The service built by [`TracingLayer`](super::TracingLayer); see the
/// [module documentation](crate::server).
#[derive(Clone)]
pub struct TracingService<S> {
    inner: S,
    config: Arc<ServerConfig>,
}

impl<S> TracingService<S> {
    pub(crate) fn new(inner: S, config: Arc<ServerConfig>) -> Self {
        TracingService { inner, config }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for TracingService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TracingService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Display,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let (mut parts, body) = request.into_parts();

        let (correlation, _source) =
            CorrelationId::from_headers(&parts.headers, &config.correlation_header);
        let echo = config
            .echo_correlation
            .then(|| correlation.header_value().clone());

        if config.skip.as_ref().is_some_and(|skip| skip(&parts)) {
            parts.extensions.insert(correlation);
            let future = self.inner.call(Request::from_parts(parts, body));
            return ResponseFuture::new(future, None, None, echo, config.clone());
        }

        let parent = sampler_inputs(
            context::extract(&parts.headers).with_value(correlation.clone()),
            &parts,
            config,
        );
        let (root_offer, span) = match decide_early(&parent, &parts, &correlation, config) {
            Early::Drop(cx) => {
                parts.extensions.insert(correlation);
                parts.extensions.insert(RequestContext { cx: cx.clone() });
                let request = Request::from_parts(parts, body);
                return self.call_inner(request, None, Some(cx), echo);
            }
            // The facts the decision was made on build the span: read once.
            Early::SampledRoot(trace_id, facts) => (Some(trace_id), facts.span()),
            Early::Undecided => (
                None,
                attributes::RequestFacts::read(&parts, config, &correlation).span(),
            ),
        };
        // The parent must be set before anything starts the OpenTelemetry span, or the
        // sampler would see no parent (tracing-opentelemetry 0.34 starts it lazily).
        let attach = match span.set_parent(parent.clone()) {
            Ok(()) => None,
            // Disabled span or no tracing-opentelemetry layer: keep the trace going for
            // outgoing calls by attaching the extracted Context ourselves.
            Err(_) => Some(parent),
        };
        let trace_cx = match &attach {
            None => {
                record_request_headers(&span, &parts, config);
                if let Some(trace_id) = root_offer {
                    ids::offer(trace_id);
                }
                // Starts the OpenTelemetry span: the SDK samples it now.
                let cx = span.context();
                if root_offer.is_some() && !ids::taken() {
                    config.roots_unsupported();
                }
                cx
            }
            Some(parent) => parent.clone(),
        };
        parts.extensions.insert(correlation);
        parts.extensions.insert(RequestContext { cx: trace_cx });
        let request = Request::from_parts(parts, body);
        self.call_inner(request, Some(span), attach, echo)
    }
}

impl<S> TracingService<S> {
    /// Calls the inner service inside `span` and with `attach` as the current Context.
    fn call_inner<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
        span: Option<tracing::Span>,
        attach: Option<opentelemetry::Context>,
        echo: Option<http::HeaderValue>,
    ) -> ResponseFuture<S::Future>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let config = &self.config;
        let called = {
            let _entered = span.as_ref().map(tracing::Span::enter);
            let _attached = attach.as_ref().map(|cx| cx.clone().attach());
            if config.catch_panic {
                catch_unwind(AssertUnwindSafe(|| self.inner.call(request)))
            } else {
                Ok(self.inner.call(request))
            }
        };
        match called {
            Ok(future) => ResponseFuture::new(future, span, attach, echo, config.clone()),
            Err(payload) => ResponseFuture::panicked(
                panic_message(payload.as_ref()),
                span,
                echo,
                config.clone(),
            ),
        }
    }
}

/// What the layer could decide before building the span.
enum Early<'a> {
    /// The sampler drops the request: run it with this Context, without a span.
    Drop(opentelemetry::Context),
    /// The sampler keeps this root request: build the span from these facts, with this
    /// trace id.
    SampledRoot(TraceId, attributes::RequestFacts<'a>),
    /// Build the span and let the SDK's sampler decide.
    Undecided,
}

/// Asks the provider's sampler, before any span is built (see
/// [`TracingLayer::sampler`](super::TracingLayer::sampler)), about the requests whose
/// decision it can make exactly as the SDK would:
///
/// * an unsampled, trusted remote parent: the sampler follows the parent, so it decides
///   on the parent alone;
/// * no parent (a root): the layer chooses the trace id, the sampler decides on it and
///   on the span's attributes, and a kept root is started with that trace id by
///   [`RootIdGenerator`](super::RootIdGenerator).
///
/// Never with a debug request (the sampler's debug rate limit must be consumed once) or
/// a sampled parent (the span is built anyway). A dropped request gets what the SDK gives
/// a dropped span: the trace id, a new span id, no flags, the sampler's tracestate.
fn decide_early<'a>(
    parent: &opentelemetry::Context,
    parts: &'a http::request::Parts,
    correlation: &'a CorrelationId,
    config: &ServerConfig,
) -> Early<'a> {
    let Some(sampler) = config.sampler.as_ref() else {
        return Early::Undecided;
    };
    if parent.get::<DebugRequest>().is_some() {
        return Early::Undecided;
    }
    let span = parent.span();
    let sc = span.span_context();
    let root = !sc.is_valid();
    let mut root_facts = None;
    let (trace_id, name, attributes) = if root {
        if !config.roots_decidable.load(Ordering::Relaxed) {
            return Early::Undecided;
        }
        // Nothing to decide early when every root is kept; no attributes to build when
        // the trace id alone decides.
        let inputs = sampler.root_inputs();
        if inputs == RootInputs::KeepsAll {
            return Early::Undecided;
        }
        let facts = attributes::RequestFacts::read(parts, config, correlation);
        let attributes = if inputs == RootInputs::Attributes {
            facts.attributes()
        } else {
            Vec::new()
        };
        let name = facts.name();
        root_facts = Some(facts);
        (ids::random_trace_id(), name, attributes)
    } else {
        if !sc.is_remote() || sc.is_sampled() || parent.get::<UntrustedEdge>().is_some() {
            return Early::Undecided;
        }
        // The sampler follows the parent here: name and attributes are not built.
        (sc.trace_id(), Cow::Borrowed(""), Vec::new())
    };
    let result = sampler.should_sample(
        Some(parent),
        trace_id,
        &name,
        &SpanKind::Server,
        &attributes,
        &[],
    );
    match result.decision {
        SamplingDecision::Drop => {
            let own = SpanContext::new(
                trace_id,
                ids::random_span_id(),
                TraceFlags::default(),
                false,
                result.trace_state,
            );
            Early::Drop(parent.with_remote_span_context(own))
        }
        _ => match root_facts {
            Some(facts) => Early::SampledRoot(trace_id, facts),
            None => Early::Undecided,
        },
    }
}

/// Adds what the sampler needs beyond the span's fields to the parent Context: the
/// debug token (only a bounded, printable value; the sampler checks it) and the
/// untrusted-edge marker.
fn sampler_inputs(
    mut cx: opentelemetry::Context,
    parts: &http::request::Parts,
    config: &ServerConfig,
) -> opentelemetry::Context {
    if let Some(debug) = parts
        .headers
        .get(&config.debug_header)
        .and_then(DebugRequest::from_header_value)
    {
        cx = cx.with_value(debug);
    }
    if config
        .untrusted
        .as_ref()
        .is_some_and(|untrusted| untrusted(parts))
    {
        cx = cx.with_value(UntrustedEdge);
    }
    cx
}

fn record_request_headers(
    span: &tracing::Span,
    parts: &http::request::Parts,
    config: &ServerConfig,
) {
    for (header, key) in &config.recorded_headers {
        let values: Vec<StringValue> = parts
            .headers
            .get_all(header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| StringValue::from(v.to_owned()))
            .collect();
        if !values.is_empty() {
            span.set_attribute(key.clone(), Value::Array(Array::String(values)));
        }
    }
}
