//! [`TracingService`]: `poll_ready` and `call`.

use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::ServerConfig;
use super::span::RequestFacts;
use crate::context::{self, CorrelationId};
use crate::http::TracedBody;
use crate::http::classify::Tracked;
use crate::http::deferred;
use crate::http::outcome::{OpenSpan, Side, panic_message};
use crate::metrics;
use crate::metrics::http::ExchangeMetric;
use crate::sampler::{DebugRequest, UntrustedEdge};

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
    S::Error: Display + 'static,
    ResBody: http_body::Body,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = Arc::clone(&self.config);
        let (mut parts, body) = request.into_parts();

        // tower-http's `SetRequestIdLayer` ran before this layer: its id is the
        // correlation id, when it is one we accept.
        let correlation = match parts
            .extensions
            .get::<tower_http::request_id::RequestId>()
            .and_then(|id| CorrelationId::from_header_value(id.header_value()))
        {
            Some(id) => id,
            None => CorrelationId::from_headers(&parts.headers, &config.correlation_header).0,
        };
        let echo = config
            .echo_correlation
            .then(|| correlation.header_value().clone());

        if config.skips(&parts) {
            parts.extensions.insert(correlation);
            let future = self.inner.call(Request::from_parts(parts, body));
            return ResponseFuture::untraced(future, echo, config);
        }

        let mut parent = context::extract_request(&parts.headers, correlation.clone());
        // What the sampler reads beyond the span: the debug token (only a bounded,
        // printable value; the sampler checks it) and the untrusted-edge marker. Rare, so
        // they cost a Context value only when present.
        if let Some(debug) = config
            .reads_debug_header()
            .then(|| parts.headers.get(&config.debug_header))
            .flatten()
            .and_then(DebugRequest::from_header_value)
        {
            parent = parent.with_value(debug);
        }
        if config
            .untrusted
            .as_ref()
            .is_some_and(|untrusted| untrusted(&parts))
        {
            parent = parent.with_value(UntrustedEdge);
        }

        let (started, metric, pages, grpc) = {
            let facts = RequestFacts::read(&parts, &config, &correlation);
            let read = config.attributes_read(&parent);
            let mut builder = facts.builder(read);
            // Metrics on: the span starts at the clock reading the metric starts from.
            let metric = config.meter.instruments().map(|instruments| {
                let start = metrics::http::start_time(&mut builder);
                let request = facts.metric_request(config.metric_opt_ins);
                ExchangeMetric::server(instruments, start, request, config.metric_opt_ins)
            });
            // Trace pages mounted: they count the exchange from the same reading.
            let pages = config.pages.mounted().map(|store| {
                let start = match builder.start_time {
                    Some(start) => start,
                    None => metrics::http::start_time(&mut builder),
                };
                (store, builder.name.clone(), start)
            });
            let started = config.source.start(builder, &parent, || facts.late(read));
            // Deferred capture: a deferred request (or one whose caller waits to hear
            // whether it is kept) carries a marker; one flag check for the others.
            let started = if started.recording {
                config.with_sampler(|s| deferred::mark(started, &parent, s, facts.route()))
            } else {
                started
            };
            (started, metric, pages, facts.grpc)
        };
        drop(parent);
        let cx = started.cx;
        let observer = pages.map(|(store, name, start)| {
            crate::pages::begin(&store, &name, start, &cx, started.recording)
        });
        let span = OpenSpan::start_observed(&cx, Side::Server, started.recording, metric, observer)
            .map(|span| {
                span.tracking(Tracked::new(Side::Server, grpc, config.classifier.as_ref()))
            });
        let head = parts.method == http::Method::HEAD;
        parts.extensions.insert(correlation);
        let request = Request::from_parts(parts, body);

        let called = {
            let _attached = cx.clone().attach();
            if config.catch_panic {
                catch_unwind(AssertUnwindSafe(|| self.inner.call(request)))
            } else {
                Ok(self.inner.call(request))
            }
        };
        match called {
            Ok(future) => ResponseFuture::new(future, cx, span, head, echo, config),
            Err(payload) => {
                ResponseFuture::panicked(panic_message(payload.as_ref()), cx, span, echo, config)
            }
        }
    }
}
