//! Metrics in tests: a manager exporting spans and metrics into memory, and the data
//! points of a histogram as plain values.

use std::collections::BTreeMap;

use meshtrace::TracingManager;
use meshtrace::manager::TracingManagerBuilder;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, InMemoryMetricExporterBuilder, Temporality,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

/// One data point of an f64 histogram: its attributes (as text) and what it aggregated.
#[derive(Clone, Debug)]
pub struct HistogramPoint {
    pub attributes: BTreeMap<String, String>,
    pub count: u64,
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub bounds: Vec<f64>,
    pub buckets: Vec<u64>,
}

/// The data points of histogram `name` in the last export of `exported`.
pub fn histogram_points(exported: &[ResourceMetrics], name: &str) -> Vec<HistogramPoint> {
    let Some(last) = exported.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for scope in last.scope_metrics() {
        for metric in scope.metrics().filter(|m| m.name() == name) {
            let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
                panic!("{name} is not an f64 histogram: {:?}", metric.data());
            };
            for point in histogram.data_points() {
                out.push(HistogramPoint {
                    attributes: point
                        .attributes()
                        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                        .collect(),
                    count: point.count(),
                    sum: point.sum(),
                    min: point.min(),
                    max: point.max(),
                    bounds: point.bounds().collect(),
                    buckets: point.bucket_counts().collect(),
                });
            }
        }
    }
    out
}

/// A manager exporting spans and metrics into memory, its subscriber the thread's default.
pub struct Pipeline {
    pub manager: TracingManager,
    pub spans: InMemorySpanExporter,
    pub metrics: InMemoryMetricExporter,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Pipeline {
    /// `builder` with in-memory span and metric exporters (metrics in `temporality`) and
    /// logs into a sink.
    pub fn new(builder: TracingManagerBuilder, temporality: Temporality) -> Self {
        let spans = InMemorySpanExporter::default();
        let metrics = InMemoryMetricExporterBuilder::new()
            .with_temporality(temporality)
            .build();
        let (manager, layers) = builder
            .span_exporter(spans.clone())
            .metric_exporter(metrics.clone())
            .log_writer(std::io::sink)
            .build()
            .expect("manager");
        let guard = tracing::subscriber::set_default(layers.into_subscriber());
        Pipeline {
            manager,
            spans,
            metrics,
            _guard: guard,
        }
    }

    /// Flushes spans and metrics (the flush blocks: off the runtime's thread).
    pub async fn flush(&self) {
        let spans = self.manager.tracer_provider().clone();
        let meters = self
            .manager
            .meter_provider()
            .expect("metrics are on")
            .clone();
        tokio::task::spawn_blocking(move || {
            spans.force_flush().expect("span flush");
            meters.force_flush().expect("metric flush");
        })
        .await
        .expect("flush");
    }

    /// The data points of histogram `name`, after a flush.
    pub async fn points(&self, name: &str) -> Vec<HistogramPoint> {
        self.flush().await;
        histogram_points(&self.metrics.get_finished_metrics().expect("metrics"), name)
    }

    /// The spans exported so far, after a flush.
    pub async fn finished_spans(&self) -> Vec<SpanData> {
        self.flush().await;
        self.spans.get_finished_spans().expect("spans")
    }
}
