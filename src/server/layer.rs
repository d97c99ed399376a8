//! [`TracingLayer`]: the server-side tower `Layer` and its builder methods.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use http::request::Parts;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower_layer::Layer;

use super::service::TracingService;
use crate::context::DEFAULT_CORRELATION_HEADER;
use crate::http::classify::{Classifier, ClassifyResponse};
use crate::http::long_lived::SpanLimits;
use crate::http::tracer::SpanSource;
use crate::http::{DEFAULT_SENSITIVE_QUERY_PARAMS, NEVER_RECORDED_HEADERS};
use crate::metrics::http::{MeterSource, ServerOptIns};
use crate::sampler::{AttributesRead, CustomSampler};

/// The debug-trace request header read by default.
pub const DEFAULT_DEBUG_HEADER: &str = "x-debug-trace";

pub(crate) type RequestPredicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Everything the service needs, shared by every clone of the layer and the service.
#[derive(Clone)]
pub(crate) struct ServerConfig {
    pub(crate) correlation_header: HeaderName,
    pub(crate) echo_correlation: bool,
    /// Lower-case parameter names.
    pub(crate) sensitive_query_params: Vec<Box<str>>,
    /// Header and the attribute key it is recorded under.
    pub(crate) recorded_headers: Vec<(HeaderName, opentelemetry::Key)>,
    pub(crate) skip: Option<RequestPredicate>,
    pub(crate) untrusted: Option<RequestPredicate>,
    /// Requests whose `Forwarded` / `X-Forwarded-*` headers come from a trusted proxy.
    pub(crate) trust_forwarded: Option<RequestPredicate>,
    pub(crate) debug_header: HeaderName,
    pub(crate) catch_panic: bool,
    /// A classifier set with `classifier(..)`; the default rules otherwise.
    pub(crate) classifier: Option<Classifier>,
    /// How long a span stays open after its response head at most.
    pub(crate) limits: SpanLimits,
    /// Where spans start.
    pub(crate) source: SpanSource,
    /// The provider's sampler, when the manager hands out the layer: it says whether a
    /// root decision reads more than the route and the method, so that the rest of the
    /// request's attributes are built only for spans that record. Without it the span
    /// starts with every attribute (any sampler may read them).
    pub(crate) sampler: Option<CustomSampler>,
    /// Where the HTTP metrics are recorded, if anywhere (see `crate::metrics`).
    pub(crate) meter: MeterSource,
    /// The opt-in metric attributes and instruments.
    pub(crate) metric_opt_ins: ServerOptIns,
    /// The trace pages this layer feeds, once mounted (see `crate::pages`).
    pub(crate) pages: crate::pages::Source,
}

impl ServerConfig {
    /// Calls `f` with the sampler that decides this layer's spans, when the layer knows it:
    /// the one the manager handed with the layer, or the installed manager's for a layer
    /// that starts its spans from it.
    pub(crate) fn with_sampler<R>(&self, f: impl FnOnce(Option<&CustomSampler>) -> R) -> R {
        match (&self.sampler, &self.source) {
            (Some(sampler), _) => f(Some(sampler)),
            (None, SpanSource::Installed) => crate::http::tracer::with_installed_sampler(f),
            (None, SpanSource::Provider(_)) => f(None),
        }
    }

    /// Which start attributes the sampler reads for a span with this parent: all of
    /// them unless the layer knows its sampler.
    pub(crate) fn attributes_read(&self, parent: &opentelemetry::Context) -> AttributesRead {
        self.with_sampler(|sampler| match sampler {
            Some(sampler) => sampler.attributes_read(parent),
            None => AttributesRead::All,
        })
    }

    /// Whether the request is not traced: the skip predicate says so, or it is one of the
    /// trace pages' own requests (they never appear in what they show).
    #[inline]
    pub(crate) fn skips(&self, parts: &Parts) -> bool {
        self.skip.as_ref().is_some_and(|skip| skip(parts)) || crate::pages::is_pages_request(parts)
    }

    /// Whether the debug header can change a decision: always, unless the layer knows
    /// its sampler and debug tokens are off there (then the header is not even looked up).
    pub(crate) fn reads_debug_header(&self) -> bool {
        self.with_sampler(|sampler| sampler.is_none_or(CustomSampler::debug_enabled))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            correlation_header: DEFAULT_CORRELATION_HEADER,
            echo_correlation: true,
            sensitive_query_params: crate::http::attributes::sensitive_params(
                DEFAULT_SENSITIVE_QUERY_PARAMS,
            ),
            recorded_headers: Vec::new(),
            skip: None,
            untrusted: None,
            trust_forwarded: None,
            debug_header: HeaderName::from_static(DEFAULT_DEBUG_HEADER),
            catch_panic: true,
            classifier: None,
            limits: SpanLimits::default(),
            source: SpanSource::default(),
            sampler: None,
            meter: MeterSource::default(),
            metric_opt_ins: ServerOptIns::default(),
            pages: crate::pages::Source::default(),
        }
    }
}

/// A tower [`Layer`] that traces every request of the service it wraps.
///
/// It works on an [`axum::Router`](https://docs.rs/axum/0.8/axum/struct.Router.html)
/// (through `Router::layer`, which also gives it the route template) and on any tower
/// service of `http::Request<B>` returning `http::Response<B>`. See the
/// [module documentation](crate::server) for exactly what happens to each request.
///
/// All settings have safe defaults; cloning the layer is cheap.
#[derive(Clone, Default)]
#[must_use]
pub struct TracingLayer {
    pub(crate) config: Arc<ServerConfig>,
}

impl fmt::Debug for TracingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingLayer")
            .field("correlation_header", &self.config.correlation_header)
            .field("echo_correlation", &self.config.echo_correlation)
            .field(
                "sensitive_query_params",
                &self.config.sensitive_query_params,
            )
            .field("recorded_headers", &self.config.recorded_headers)
            .field("skip", &self.config.skip.is_some())
            .field("untrusted", &self.config.untrusted.is_some())
            .field("trust_forwarded", &self.config.trust_forwarded.is_some())
            .field("debug_header", &self.config.debug_header)
            .field("catch_panic", &self.config.catch_panic)
            .field("classifier", &self.config.classifier)
            .field("limits", &self.config.limits)
            .field("source", &self.config.source)
            .field("meter", &self.config.meter)
            .field("metric_opt_ins", &self.config.metric_opt_ins)
            .field("pages", &self.config.pages)
            .finish()
    }
}

impl TracingLayer {
    /// A layer with the default settings.
    pub fn new() -> Self {
        Self::default()
    }

    fn update(mut self, f: impl FnOnce(&mut ServerConfig)) -> Self {
        // Builders run before the layer is shared, so this clones nothing in practice.
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The header the correlation id is read from and echoed in (default
    /// `x-correlation-id`). `x-request-id` is always accepted as a fallback.
    pub fn correlation_header(self, header: HeaderName) -> Self {
        self.update(|c| c.correlation_header = header)
    }

    /// Whether the correlation id is echoed in the response (default `true`). An existing
    /// response header set by the handler is never overwritten.
    pub fn echo_correlation_id(self, echo: bool) -> Self {
        self.update(|c| c.echo_correlation = echo)
    }

    /// Replaces the list of query parameters whose values are recorded as `REDACTED`
    /// in `url.query` (matched case-insensitively). Defaults to
    /// [`DEFAULT_SENSITIVE_QUERY_PARAMS`].
    pub fn sensitive_query_params<I, S>(self, params: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let params = crate::http::attributes::sensitive_params(params);
        self.update(|c| c.sensitive_query_params = params)
    }

    /// Records a request header as the span attribute `http.request.header.<name>`.
    ///
    /// `Authorization`, `Proxy-Authorization`, `Cookie` and `Set-Cookie` are never
    /// recorded: asking for them has no effect.
    pub fn record_request_header(self, header: HeaderName) -> Self {
        if NEVER_RECORDED_HEADERS.contains(&header.as_str()) {
            return self;
        }
        let key = opentelemetry::Key::from(format!("http.request.header.{}", header.as_str()));
        self.update(|c| {
            if !c.recorded_headers.iter().any(|(h, _)| *h == header) {
                c.recorded_headers.push((header, key));
            }
        })
    }

    /// Skips tracing for requests the predicate matches (for example health checks).
    /// Skipped requests still get a correlation id, echoed in the response.
    pub fn skip_if<F>(self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.update(|c| c.skip = Some(Arc::new(predicate)))
    }

    /// Marks requests that come from outside the mesh (the predicate sees the request
    /// head: headers, extensions such as `ConnectInfo`). For them the sampler ignores an
    /// incoming sampling decision and decides again as for a root, keeping the trace id.
    pub fn untrusted_if<F>(self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.update(|c| c.untrusted = Some(Arc::new(predicate)))
    }

    /// Behind a TLS-terminating proxy you trust: for requests the predicate accepts,
    /// `url.scheme`, `server.address` / `server.port` and `client.address` /
    /// `client.port` follow the standard `Forwarded` header (RFC 7239), else
    /// `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-For` (first element:
    /// the original client), each validated. Without it those headers are ignored:
    /// anyone can send them. The predicate sees the request head, e.g. axum's
    /// `ConnectInfo` to trust only the proxy's address.
    ///
    /// ```
    /// use axum::extract::ConnectInfo;
    /// use meshtrace::server::TracingLayer;
    /// use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    ///
    /// const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    /// let layer = TracingLayer::new().trust_forwarded_if(|request| {
    ///     request
    ///         .extensions
    ///         .get::<ConnectInfo<SocketAddr>>()
    ///         .is_some_and(|peer| peer.0.ip() == PROXY)
    /// });
    /// # drop(layer);
    /// ```
    pub fn trust_forwarded_if<F>(self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.update(|c| c.trust_forwarded = Some(Arc::new(predicate)))
    }

    /// [`trust_forwarded_if`](Self::trust_forwarded_if) for every request: the service is
    /// reachable only through a proxy you trust, which sets (or removes) those headers.
    pub fn trust_forwarded(self) -> Self {
        self.trust_forwarded_if(|_| true)
    }

    /// The header that requests a debug trace (default `x-debug-trace`). The layer only
    /// forwards a bounded, printable value to the sampler, which checks the token.
    pub fn debug_header(self, header: HeaderName) -> Self {
        self.update(|c| c.debug_header = header)
    }

    /// Starts the server spans with this provider's tracer (instead of the installed
    /// [`TracingManager`](crate::TracingManager)'s, or OpenTelemetry's global provider).
    /// The provider's sampler decides every span, once, with all of its attributes.
    pub fn tracer_provider(self, provider: &SdkTracerProvider) -> Self {
        let source = SpanSource::provider(provider);
        self.update(|c| c.source = source)
    }

    /// For the manager: the provider's own sampler, so that attributes no sampling rule
    /// reads are built only for spans that record.
    pub(crate) fn sampler_hint(self, sampler: CustomSampler) -> Self {
        self.update(|c| c.sampler = Some(sampler))
    }

    /// Whether the layer records the HTTP server metrics (default `true`; see
    /// [`crate::metrics`]): `http.server.request.duration` for every request, sampled or
    /// not. With `false` the request path reads no clock and builds no attribute for
    /// metrics.
    ///
    /// The meter is the one given to [`meter`](Self::meter), else the installed
    /// [`TracingManager`](crate::TracingManager)'s (none when its metrics are off), else
    /// OpenTelemetry's global meter provider (whose instruments are created at the first
    /// request: set it before serving).
    pub fn metrics(self, on: bool) -> Self {
        self.update(|c| {
            c.meter = match (on, &c.meter) {
                (false, _) => MeterSource::Off,
                (true, MeterSource::Off) => MeterSource::Installed,
                (true, source) => source.clone(),
            }
        })
    }

    /// For the manager: its instruments, or `Off` when its metrics are off.
    pub(crate) fn meter_source(self, source: MeterSource) -> Self {
        self.update(|c| c.meter = source)
    }

    /// Records the HTTP server metrics on `meter` (its instruments are created here, once).
    pub fn meter(self, meter: &opentelemetry::metrics::Meter) -> Self {
        let source = MeterSource::meter(meter);
        self.update(|c| c.meter = source)
    }

    /// Adds `server.address` and `server.port` to `http.server.request.duration` (default
    /// `false`, as the conventions advise: the client chooses the `Host` header, so the
    /// number of attribute sets is only bounded by the SDK's cardinality limit).
    pub fn metric_server_address(self, on: bool) -> Self {
        self.update(|c| c.metric_opt_ins.server_address = on)
    }

    /// Records `http.server.active_requests` (default `false`): requests whose response
    /// has not ended, by method and scheme.
    pub fn active_requests_metric(self, on: bool) -> Self {
        self.update(|c| c.metric_opt_ins.active_requests = on)
    }

    /// Records `http.server.request.body.size` (the request's `Content-Length`, when it
    /// has one) and `http.server.response.body.size` (the bytes of the response body as
    /// sent) (default `false`).
    pub fn body_size_metrics(self, on: bool) -> Self {
        self.update(|c| c.metric_opt_ins.body_sizes = on)
    }

    /// Feeds these trace pages (feature `pages`): each request is counted on them once they
    /// are mounted. Layers from [`TracingManager::server_layer`](crate::TracingManager::server_layer)
    /// (and `new()` layers after `install()`) feed the manager's pages without it.
    #[cfg(feature = "pages")]
    pub fn pages(self, pages: &crate::pages::TracePages) -> Self {
        let source = crate::pages::Source::given(&pages.slot());
        self.update(|c| c.pages = source)
    }

    /// For the manager: its pages' slot.
    pub(crate) fn pages_source(self, source: crate::pages::Source) -> Self {
        self.update(|c| c.pages = source)
    }

    /// Whether a panic in the inner service is caught, recorded on the span and turned
    /// into a `500` response (default `true`). When `false`, the panic unwinds through
    /// the layer; the span still ends, without an error status.
    pub fn catch_panic(self, catch: bool) -> Self {
        self.update(|c| c.catch_panic = catch)
    }

    /// Decides what counts as a failed request, in place of the built-in rules (HTTP: 5xx;
    /// gRPC: the status codes the conventions name for servers). See
    /// [`classify`](crate::classify) for when it is called and an example.
    pub fn classifier(self, classifier: impl ClassifyResponse) -> Self {
        let classifier = Classifier(Arc::new(classifier));
        self.update(|c| c.classifier = Some(classifier))
    }

    /// How long the span of a `text/event-stream` (server-sent events) response stays open
    /// after the response head at most (default
    /// [`DEFAULT_EVENT_STREAM_LIMIT`](crate::server::DEFAULT_EVENT_STREAM_LIMIT), 5
    /// minutes); `None`: until the stream ends. A span ended by the limit records
    /// `meshtrace.truncated = true`; the stream goes on. A timer ends it, so an idle
    /// stream's span ends on time too.
    pub fn event_stream_span_limit(self, limit: Option<Duration>) -> Self {
        self.update(|c| c.limits.event_stream = limit)
    }

    /// The same limit for every other response (default `None`: a span ends when its
    /// body ends), e.g. for long-lived gRPC streams. A span ended by it has no gRPC status.
    pub fn stream_span_limit(self, limit: Option<Duration>) -> Self {
        self.update(|c| c.limits.other = limit)
    }
}

impl<S> Layer<S> for TracingLayer {
    type Service = TracingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TracingService::new(inner, self.config.clone())
    }
}
