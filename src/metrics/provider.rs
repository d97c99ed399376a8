//! The manager's `SdkMeterProvider`: the same resource as the spans, a periodic reader
//! with the configured exporter, and a View that sets every instrument's cardinality
//! limit explicitly (the sampler's per-key counter gets one large enough for its keys).

use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{
    Instrument, MeterProviderBuilder, PeriodicReader, SdkMeterProvider, Stream,
};

use super::StdoutMetricExporter;
use crate::Error;
use crate::config::{ResolvedMetrics, ResolvedMetricsExporter};
use crate::sampler::METRIC_KEY_DECISIONS;

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
/// `key_sets` is the number of attribute sets the sampler's per-key counter may report
/// ([`LimitsConfig::key_metric_attribute_sets`](crate::sampler::LimitsConfig::key_metric_attribute_sets)).
pub(crate) fn build(
    metrics: &ResolvedMetrics,
    resource: Resource,
    code: Option<AddReader>,
    key_sets: usize,
) -> Result<SdkMeterProvider, Error> {
    let limit = metrics.cardinality_limit;
    // The per-key counter reports (max_keys + 1) keys x 4 outcomes, 4100 at the default
    // 1024 keys: under the common limit, keys beyond it would fold into the overflow set.
    // Its sets are bounded by the key table, so its own limit bounds nothing new.
    let key_limit = limit.max(key_sets);
    // Every instrument: the SDK's default limit (2000) would apply anyway; set here, it is
    // the configured one, and visible. Measurements beyond it go to one overflow set.
    let builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_view(move |instrument: &Instrument| {
            let limit = if instrument.name() == METRIC_KEY_DECISIONS {
                key_limit
            } else {
                limit
            };
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
