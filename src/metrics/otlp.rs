//! OTLP metrics (feature `otlp`): opentelemetry-otlp's `MetricExporter` on a private Tokio
//! runtime, as the span exporter (see `crate::export::otlp`): the SDK's `PeriodicReader`
//! drives exports on its own thread with `futures_executor::block_on`, without a reactor,
//! so each export is run on the runtime instead, bounded by `OTEL_METRIC_EXPORT_TIMEOUT`,
//! and every thread that exports is marked so that the exporter's own spans and log events
//! are never exported.

use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;

use crate::Error;
use crate::config::ResolvedOtlp;
use crate::export::otlp::{TransportError, build_exporter, export_on, on_private_runtime};

/// The OTLP metric exporter on its own runtime.
#[derive(Debug)]
pub(crate) struct OtlpMetricExporter {
    // `Some` until dropped; taken in `drop` to shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    inner: opentelemetry_otlp::MetricExporter,
    timeout: Duration,
    transport_error: TransportError,
    temporality: Temporality,
}

impl OtlpMetricExporter {
    pub(crate) fn build(
        otlp: &ResolvedOtlp,
        export_timeout: Duration,
        temporality: Temporality,
    ) -> Result<Self, Error> {
        let timeout = otlp.timeout.min(export_timeout);
        let transport_error = TransportError::default();
        let (runtime, inner) = on_private_runtime(|| {
            build_exporter!(
                opentelemetry_otlp::MetricExporter,
                otlp,
                timeout,
                &transport_error,
                |b: opentelemetry_otlp::MetricExporterBuilder<_>| b.with_temporality(temporality)
            )
        })?;
        Ok(OtlpMetricExporter {
            runtime: Some(runtime),
            inner,
            timeout: export_timeout,
            transport_error,
            temporality,
        })
    }
}

impl PushMetricExporter for OtlpMetricExporter {
    fn export(
        &self,
        metrics: &ResourceMetrics,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = export_on(
            self.runtime.as_ref(),
            self.timeout,
            &self.transport_error,
            self.inner.export(metrics),
        );
        std::future::ready(result)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.temporality
    }
}

impl Drop for OtlpMetricExporter {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
