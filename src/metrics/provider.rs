//! The manager's `SdkMeterProvider`: the same resource as the spans, a periodic reader
//! with the configured exporter, and a View that sets every instrument's cardinality
//! limit explicitly.

use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{
    Instrument, MeterProviderBuilder, PeriodicReader, SdkMeterProvider, Stream,
};

use super::StdoutMetricExporter;
use crate::Error;
use crate::config::{ResolvedMetrics, ResolvedMetricsExporter};

/// Adds a periodic reader of an exporter given in code (its type is known only where it
/// was given), exporting at the interval passed.
pub(crate) type AddReader =
    Box<dyn FnOnce(MeterProviderBuilder, Duration) -> MeterProviderBuilder + Send>;

/// The reader for `exporter`, exporting every `interval`.
pub(crate) fn reader_for<E>(exporter: E) -> AddReader
where
    E: opentelemetry_sdk::metrics::exporter::PushMetricExporter,
{
    Box::new(move |builder: MeterProviderBuilder, interval: Duration| {
        builder.with_reader(
            PeriodicReader::builder(exporter)
                .with_interval(interval)
                .build(),
        )
    })
}

/// Builds the meter provider `metrics` describes (or with `code`'s exporter).
pub(crate) fn build(
    metrics: &ResolvedMetrics,
    resource: Resource,
    code: Option<AddReader>,
) -> Result<SdkMeterProvider, Error> {
    let limit = metrics.cardinality_limit;
    // Every instrument: the SDK's default limit (2000) would apply anyway; set here, it is
    // the configured one, and visible. Measurements beyond it go to one overflow set.
    let builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_view(move |_: &Instrument| {
            Stream::builder().with_cardinality_limit(limit).build().ok()
        });
    let builder = match code {
        Some(add) => add(builder, metrics.interval),
        None => match &metrics.exporter {
            ResolvedMetricsExporter::Stdout => reader_for(
                StdoutMetricExporter::new().with_temporality(metrics.temporality.to_sdk()),
            )(builder, metrics.interval),
            #[cfg(feature = "otlp")]
            ResolvedMetricsExporter::Otlp(otlp) => {
                reader_for(super::otlp::OtlpMetricExporter::build(
                    otlp,
                    metrics.export_timeout,
                    metrics.temporality.to_sdk(),
                )?)(builder, metrics.interval)
            }
            #[cfg(not(feature = "otlp"))]
            ResolvedMetricsExporter::Otlp(_) => {
                return Err(Error::missing_feature(
                    "metrics.exporter",
                    "otlp",
                    "asks for the OTLP metric exporter",
                    "otlp",
                ));
            }
        },
    };
    Ok(builder.build())
}
