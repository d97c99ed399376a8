//! [`TracingLayer`]: the server-side tower `Layer` and its builder methods.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderName;
use http::request::Parts;
use tower_layer::Layer;

use super::service::TracingService;
use crate::context::DEFAULT_CORRELATION_HEADER;
use crate::sampler::{CustomSampler, DEFAULT_DEBUG_HEADER};

/// Query parameters whose values are replaced by `REDACTED` in `url.query` by default
/// (matched case-insensitively). The OpenTelemetry HTTP semantic conventions name
/// `AWSAccessKeyId`, `Signature`, `sig` and `X-Goog-Signature`; the rest are common
/// carriers of credentials.
pub const DEFAULT_SENSITIVE_QUERY_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "sig",
    "signature",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "key",
    "api_key",
    "apikey",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
    "x-goog-signature",
    "x-goog-credential",
];

/// Headers that are never recorded, whatever the configuration says.
pub(crate) const NEVER_RECORDED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

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
    pub(crate) debug_header: HeaderName,
    pub(crate) catch_panic: bool,
    /// The provider's sampler, when the user shares it with the layer: lets the layer
    /// drop a request before building a span that the sampler would drop anyway.
    pub(crate) sampler: Option<CustomSampler>,
    /// Cleared when a root offered to the id generator was not taken: the provider does
    /// not use [`RootIdGenerator`](super::RootIdGenerator), so roots are left to the SDK.
    pub(crate) roots_decidable: Arc<AtomicBool>,
}

impl ServerConfig {
    pub(crate) fn roots_unsupported(&self) {
        if self.roots_decidable.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                target: "meshtrace::server",
                "TracingLayer::sampler: the tracer provider does not use \
                 meshtrace::server::RootIdGenerator, so root requests are sampled by the SDK \
                 after their span is built"
            );
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            correlation_header: DEFAULT_CORRELATION_HEADER,
            echo_correlation: true,
            sensitive_query_params: super::attributes::sensitive_params(
                DEFAULT_SENSITIVE_QUERY_PARAMS,
            ),
            recorded_headers: Vec::new(),
            skip: None,
            untrusted: None,
            debug_header: HeaderName::from_static(DEFAULT_DEBUG_HEADER),
            catch_panic: true,
            sampler: None,
            roots_decidable: Arc::new(AtomicBool::new(true)),
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
            .field("debug_header", &self.config.debug_header)
            .field("catch_panic", &self.config.catch_panic)
            .field("sampler", &self.config.sampler.is_some())
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
        let params = super::attributes::sensitive_params(params);
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

    /// The header that requests a debug trace (default `x-debug-trace`). The layer only
    /// forwards a bounded, printable value to the sampler, which checks the token.
    pub fn debug_header(self, header: HeaderName) -> Self {
        self.update(|c| c.debug_header = header)
    }

    /// Shares the tracer provider's sampler with the layer (pass a clone of the
    /// [`CustomSampler`] installed with `SdkTracerProvider::builder().with_sampler(..)`),
    /// so that the layer decides, before building any span, the requests whose decision
    /// the sampler can make exactly as the SDK would:
    ///
    /// * a trusted remote parent that is not sampled (and no debug request): the sampler
    ///   follows the parent;
    /// * a root request (no valid parent, no debug request), when the provider also uses
    ///   [`RootIdGenerator`](super::RootIdGenerator): the layer chooses the trace id, the
    ///   sampler decides on it and on the span's HTTP attributes, and a kept root is
    ///   started with that id. Without the generator the layer notices on the first kept
    ///   root, logs a warning once, and leaves roots to the SDK.
    ///
    /// A request the sampler drops then builds no `tracing` span and no OpenTelemetry
    /// span: it runs with a Context holding a non-recording span context (the trace id, a
    /// new span id, the sampler's tracestate), the baggage and the correlation id,
    /// attached as the current OpenTelemetry Context while the inner service runs, so
    /// outgoing calls and child spans continue the trace exactly as with a dropped span.
    /// Log events of such a request have no meshtrace span around them: a log layer reads
    /// the ids from `opentelemetry::Context::current()`.
    ///
    /// Without this setting every request builds a span and the SDK's sampler decides.
    pub fn sampler(self, sampler: CustomSampler) -> Self {
        self.update(|c| c.sampler = Some(sampler))
    }

    /// Whether a panic in the inner service is caught, recorded on the span and turned
    /// into a `500` response (default `true`). When `false`, the panic unwinds through
    /// the layer; the span still ends, without an error status.
    pub fn catch_panic(self, catch: bool) -> Self {
        self.update(|c| c.catch_panic = catch)
    }
}

impl<S> Layer<S> for TracingLayer {
    type Service = TracingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TracingService::new(inner, self.config.clone())
    }
}
