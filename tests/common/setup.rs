//! The setups every end-to-end test runs through: the manager's own pipeline (JSON logs,
//! and with a quiet `warn` log filter) and a hand-built SDK provider with `CustomSampler`
//! and a `tracing-opentelemetry` subscriber, spans exported into memory.

use meshtrace::TracingManager;
use meshtrace::client::ClientTracingLayer;
use meshtrace::logging::LogFormat;
use meshtrace::sampler::{CustomSampler, SamplingConfig};
use meshtrace::server::TracingLayer;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

use super::Logs;

/// How a user sets meshtrace up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// `TracingManager::builder()...build()`, `server_layer()`, JSON logs.
    Manager,
    /// The same with a `warn` log filter: log output changes, spans must not.
    ManagerQuietLogs,
    /// A plain SDK provider with `CustomSampler`, a `tracing-opentelemetry` subscriber,
    /// `TracingLayer::new().tracer_provider(..)`.
    HandBuilt,
}

pub struct Setup {
    pub how: How,
    pub provider: SdkTracerProvider,
    pub exporter: InMemorySpanExporter,
    pub logs: Logs,
    pub manager: Option<TracingManager>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Setup {
    /// With JSON log lines.
    pub fn new(how: How, sampling: SamplingConfig) -> Self {
        Self::with_log_format(how, sampling, LogFormat::Json)
    }

    pub fn with_log_format(how: How, sampling: SamplingConfig, format: LogFormat) -> Self {
        let exporter = InMemorySpanExporter::default();
        let logs = Logs::default();
        match how {
            How::Manager | How::ManagerQuietLogs => {
                let mut builder = TracingManager::builder()
                    .sampling(sampling)
                    .span_exporter(exporter.clone())
                    .log_format(format)
                    .log_writer(logs.clone());
                if how == How::ManagerQuietLogs {
                    builder = builder.log_filter("warn");
                }
                let (manager, subscriber) = builder.build().expect("manager");
                Setup {
                    how,
                    provider: manager.tracer_provider().clone(),
                    exporter,
                    logs,
                    manager: Some(manager),
                    _guard: tracing::subscriber::set_default(subscriber.into_subscriber()),
                }
            }
            How::HandBuilt => {
                let provider = SdkTracerProvider::builder()
                    .with_sampler(CustomSampler::new(sampling).expect("sampler"))
                    .with_simple_exporter(exporter.clone())
                    .build();
                let subscriber = tracing_subscriber::registry()
                    .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("hand")))
                    .with(meshtrace::logging::fmt_layer_with_writer(
                        format,
                        logs.clone(),
                    ));
                Setup {
                    how,
                    provider,
                    exporter,
                    logs,
                    manager: None,
                    _guard: tracing::subscriber::set_default(subscriber),
                }
            }
        }
    }

    pub fn server_layer(&self) -> TracingLayer {
        match &self.manager {
            Some(manager) => manager.server_layer(),
            None => TracingLayer::new().tracer_provider(&self.provider),
        }
    }

    #[cfg(feature = "reqwest")]
    pub fn reqwest(&self) -> reqwest_middleware::ClientWithMiddleware {
        let middleware = match &self.manager {
            Some(manager) => manager.reqwest_middleware(),
            None => {
                meshtrace::client::ReqwestTracingMiddleware::new().tracer_provider(&self.provider)
            }
        };
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(middleware)
            .build()
    }

    pub fn client_layer(&self) -> ClientTracingLayer {
        match &self.manager {
            Some(manager) => manager.client_layer(),
            None => ClientTracingLayer::new().tracer_provider(&self.provider),
        }
    }

    pub fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flush");
        self.exporter.get_finished_spans().expect("spans")
    }

    pub fn only(&self, kind: SpanKind) -> SpanData {
        let spans: Vec<SpanData> = self
            .spans()
            .into_iter()
            .filter(|s| s.span_kind == kind)
            .collect();
        assert_eq!(
            spans.len(),
            1,
            "{:?}: one {kind:?} span: {spans:#?}",
            self.how
        );
        spans.into_iter().next().expect("one span")
    }
}
