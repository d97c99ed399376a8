//! [`ClientTracingLayer`]: the client-side tower `Layer` and its builder methods.

use std::sync::Arc;

use http::HeaderName;
use tower_layer::Layer;

use super::policy::PropagationPolicy;
use super::service::ClientTracingService;
use crate::context::DEFAULT_CORRELATION_HEADER;
use crate::http::DEFAULT_SENSITIVE_QUERY_PARAMS;
use crate::http::attributes::sensitive_params;
use crate::http::classify::Classifier;
use crate::http::tracer::SpanSource;
use crate::metrics::http::MeterSource;
use crate::sampler::CustomSampler;

/// Everything a client needs, shared by every clone of the layer, the service and the
/// reqwest middleware.
#[derive(Clone, Debug)]
pub(crate) struct ClientConfig {
    pub(crate) correlation_header: HeaderName,
    pub(crate) policy: PropagationPolicy,
    /// Lower-case parameter names.
    pub(crate) sensitive_query_params: Vec<Box<str>>,
    /// A classifier set with `classifier(..)`; the default rules otherwise.
    pub(crate) classifier: Option<Classifier>,
    /// Where spans start.
    pub(crate) source: SpanSource,
    /// The provider's sampler, when the manager hands out the client: its deferred-capture
    /// settings (`propagate_sampled`) apply to calls that start a deferred trace.
    pub(crate) sampler: Option<CustomSampler>,
    /// Where `http.client.request.duration` is recorded, if anywhere.
    pub(crate) meter: MeterSource,
}

impl ClientConfig {
    /// Calls `f` with the sampler that decides this client's spans, when it is known: the
    /// one the manager handed out with it, or the installed manager's.
    pub(crate) fn with_sampler<R>(&self, f: impl FnOnce(Option<&CustomSampler>) -> R) -> R {
        match (&self.sampler, &self.source) {
            (Some(sampler), _) => f(Some(sampler)),
            (None, SpanSource::Installed) => crate::http::tracer::with_installed_sampler(f),
            (None, SpanSource::Provider(_)) => f(None),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            correlation_header: DEFAULT_CORRELATION_HEADER,
            policy: PropagationPolicy::default(),
            sensitive_query_params: sensitive_params(DEFAULT_SENSITIVE_QUERY_PARAMS),
            classifier: None,
            source: SpanSource::default(),
            sampler: None,
            meter: MeterSource::default(),
        }
    }
}

/// A tower [`Layer`] that traces every request sent through the client it wraps
/// (hyper-util's `Client`, any tower service of `http::Request<B>` returning
/// `http::Response<B>`). See the [module documentation](crate::client).
///
/// All settings have safe defaults; cloning the layer is cheap.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ClientTracingLayer {
    pub(crate) config: Arc<ClientConfig>,
}

/// The builder methods `ClientTracingLayer` and `ReqwestTracingMiddleware` share: both
/// wrap an `Arc<ClientConfig>` in a field named `config`, and their options must stay the
/// same.
macro_rules! client_builder_methods {
    ($what:literal) => {
        #[doc = concat!("A ", $what, " with the default settings: everything propagated")]
        /// everywhere, the correlation id in `x-correlation-id`.
        pub fn new() -> Self {
            Self::default()
        }

        fn update(mut self, f: impl FnOnce(&mut $crate::client::layer::ClientConfig)) -> Self {
            // Builders run before the value is shared, so this clones nothing in practice.
            f(std::sync::Arc::make_mut(&mut self.config));
            self
        }

        /// The header the correlation id is sent in (default `x-correlation-id`).
        pub fn correlation_header(self, header: http::HeaderName) -> Self {
            self.update(|c| c.correlation_header = header)
        }

        /// Which hosts receive which trace headers (default: everything everywhere).
        pub fn propagation_policy(self, policy: $crate::client::PropagationPolicy) -> Self {
            self.update(|c| c.policy = policy)
        }

        /// Replaces the list of query parameters whose values are recorded as `REDACTED`
        /// in `url.full` (matched case-insensitively). Defaults to
        /// [`DEFAULT_SENSITIVE_QUERY_PARAMS`](crate::client::DEFAULT_SENSITIVE_QUERY_PARAMS).
        pub fn sensitive_query_params<I, S>(self, params: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: AsRef<str>,
        {
            let params = $crate::http::attributes::sensitive_params(params);
            self.update(|c| c.sensitive_query_params = params)
        }

        /// Decides what counts as a failed call, in place of the built-in rules (HTTP: 4xx
        /// and 5xx; gRPC: every status but `OK`). See [`classify`](crate::classify) for
        /// when it is called and an example.
        pub fn classifier(self, classifier: impl $crate::classify::ClassifyResponse) -> Self {
            let classifier = $crate::http::classify::Classifier(std::sync::Arc::new(classifier));
            self.update(|c| c.classifier = Some(classifier))
        }

        /// Starts the client spans with this provider's tracer (instead of the installed
        /// [`TracingManager`](crate::TracingManager)'s, or OpenTelemetry's global
        /// provider). The provider's sampler decides every span, once.
        pub fn tracer_provider(
            self,
            provider: &opentelemetry_sdk::trace::SdkTracerProvider,
        ) -> Self {
            let source = $crate::http::tracer::SpanSource::provider(provider);
            self.update(|c| c.source = source)
        }

        /// For the manager: the provider's own sampler (its deferred-capture settings).
        pub(crate) fn sampler_hint(self, sampler: $crate::sampler::CustomSampler) -> Self {
            self.update(|c| c.sampler = Some(sampler))
        }

        /// Whether `http.client.request.duration` is recorded for every call, sampled or
        /// not (default `true`; see [`crate::metrics`]). With `false` a call reads no
        /// clock and builds no attribute for metrics. The meter is the one given to
        /// `meter(..)`, else the installed [`TracingManager`](crate::TracingManager)'s
        /// (none when its metrics are off), else OpenTelemetry's global meter provider
        /// (instruments created at the first call: set it before).
        pub fn metrics(self, on: bool) -> Self {
            use $crate::metrics::http::MeterSource;
            self.update(|c| {
                c.meter = match (on, &c.meter) {
                    (false, _) => MeterSource::Off,
                    (true, MeterSource::Off) => MeterSource::Installed,
                    (true, source) => source.clone(),
                }
            })
        }

        /// For the manager: its instruments, or `Off` when its metrics are off.
        #[allow(dead_code)]
        pub(crate) fn meter_source(self, source: $crate::metrics::http::MeterSource) -> Self {
            self.update(|c| c.meter = source)
        }

        /// Records `http.client.request.duration` on `meter` (its instruments are created
        /// here, once).
        pub fn meter(self, meter: &opentelemetry::metrics::Meter) -> Self {
            let source = $crate::metrics::http::MeterSource::meter(meter);
            self.update(|c| c.meter = source)
        }
    };
}
#[cfg(feature = "reqwest")]
pub(crate) use client_builder_methods;

impl ClientTracingLayer {
    client_builder_methods!("layer");
}

impl<S> Layer<S> for ClientTracingLayer {
    type Service = ClientTracingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTracingService::new(inner, self.config.clone())
    }
}
