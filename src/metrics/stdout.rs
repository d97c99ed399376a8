//! A human-readable metric exporter: one line per data point.

use std::fmt::{Display, Write as _};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;

/// Writes one line per data point: the instrument, its unit, the values and the
/// attributes, e.g.
///
/// ```text
/// metric http.server.request.duration unit=s histogram count=3 sum=0.0042 min=0.0009 max=0.0021 http.request.method="GET" url.scheme="http" http.route="/orders/{id}" http.response.status_code=200 network.protocol.version="1.1"
/// metric meshtrace.sampler.decisions unit={decision} sum=12 outcome="sampled"
/// ```
///
/// Histograms print their count, sum, min and max (buckets are left to OTLP). String
/// values are quoted with Rust escapes, as the span lines of
/// [`StdoutExporter`](crate::export::StdoutExporter), so a data point is always one line.
/// The writer is stdout unless given.
#[derive(Clone)]
pub struct StdoutMetricExporter {
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    temporality: Temporality,
}

impl std::fmt::Debug for StdoutMetricExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutMetricExporter")
            .field("temporality", &self.temporality)
            .finish_non_exhaustive()
    }
}

impl Default for StdoutMetricExporter {
    fn default() -> Self {
        Self::new()
    }
}

impl StdoutMetricExporter {
    /// An exporter writing to stdout, cumulative.
    pub fn new() -> Self {
        Self::with_writer(std::io::stdout())
    }

    /// An exporter writing to `writer` (a file, a buffer in a test, ...), cumulative.
    pub fn with_writer(writer: impl Write + Send + 'static) -> Self {
        StdoutMetricExporter {
            writer: Arc::new(Mutex::new(Box::new(writer))),
            temporality: Temporality::Cumulative,
        }
    }

    /// The same exporter asking the SDK for `temporality`.
    #[must_use]
    pub fn with_temporality(
        mut self,
        temporality: opentelemetry_sdk::metrics::Temporality,
    ) -> Self {
        self.temporality = temporality;
        self
    }

    /// Formats every data point of `metrics`, one line each (with newlines).
    pub fn format(metrics: &ResourceMetrics) -> String {
        let mut out = String::new();
        for scope in metrics.scope_metrics() {
            for metric in scope.metrics() {
                format_metric(&mut out, metric);
            }
        }
        out
    }
}

fn format_metric(out: &mut String, metric: &Metric) {
    match metric.data() {
        AggregatedMetrics::F64(data) => format_data(out, metric, data),
        AggregatedMetrics::U64(data) => format_data(out, metric, data),
        AggregatedMetrics::I64(data) => format_data(out, metric, data),
    }
}

fn head(out: &mut String, metric: &Metric) {
    let _ = write!(out, "metric {}", metric.name());
    if !metric.unit().is_empty() {
        let _ = write!(out, " unit={}", metric.unit());
    }
}

fn format_data<T: Display + Copy>(out: &mut String, metric: &Metric, data: &MetricData<T>) {
    match data {
        MetricData::Gauge(gauge) => {
            for point in gauge.data_points() {
                head(out, metric);
                let _ = write!(out, " gauge={}", point.value());
                attributes(out, point.attributes());
            }
        }
        MetricData::Sum(sum) => {
            for point in sum.data_points() {
                head(out, metric);
                let _ = write!(out, " sum={}", point.value());
                attributes(out, point.attributes());
            }
        }
        MetricData::Histogram(histogram) => {
            for point in histogram.data_points() {
                head(out, metric);
                let _ = write!(
                    out,
                    " histogram count={} sum={}",
                    point.count(),
                    point.sum()
                );
                if let (Some(min), Some(max)) = (point.min(), point.max()) {
                    let _ = write!(out, " min={min} max={max}");
                }
                attributes(out, point.attributes());
            }
        }
        MetricData::ExponentialHistogram(histogram) => {
            for point in histogram.data_points() {
                head(out, metric);
                let _ = write!(
                    out,
                    " exponential_histogram count={} sum={}",
                    point.count(),
                    point.sum()
                );
                attributes(out, point.attributes());
            }
        }
    }
}

fn attributes<'a>(out: &mut String, attributes: impl Iterator<Item = &'a KeyValue>) {
    for kv in attributes {
        out.push(' ');
        crate::export::stdout::push_key(out, kv.key.as_str());
        out.push('=');
        crate::export::stdout::push_value(out, &kv.value);
    }
    out.push('\n');
}

impl PushMetricExporter for StdoutMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let out = Self::format(metrics);
        if out.is_empty() {
            return Ok(());
        }
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| OTelSdkError::InternalFailure("stdout exporter lock poisoned".into()))?;
        writer
            .write_all(out.as_bytes())
            .and_then(|()| writer.flush())
            .map_err(|e| OTelSdkError::InternalFailure(format!("writing metrics failed: {e}")))
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        self.temporality
    }
}
