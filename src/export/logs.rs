//! Log events as OpenTelemetry log records over OTLP (feature `otlp-logs`).
//!
//! The OpenTelemetry tracing appender (`opentelemetry-appender-tracing`) turns each
//! `tracing` event the log filter lets through into a log record: the message as the
//! body, the fields as attributes, the level as severity (TRACE 1, DEBUG 5, INFO 9, WARN
//! 13, ERROR 17, with the level's name as severity text), the target. Around it:
//!
//! * **trace_id and span_id**: the SDK logger (opentelemetry_sdk 0.33) takes them from
//!   `Context::current()` when the record has none. A request traced by
//!   [`TracingLayer`](crate::server::TracingLayer) runs with its Context attached, and a
//!   span the sampler dropped still has its ids there, so records of sampled and dropped
//!   requests alike carry them (with the sampled flag as it is);
//! * **correlation.id**: the request's validated correlation id (or the nearest
//!   `correlation.id` span field), as the log output prints it;
//! * **bounds**: the body and every string attribute are cut to the crate's value length
//!   (`span_limits.max_attribute_value_length`), and a record keeps at most
//!   [`MAX_LOG_ATTRIBUTES`] attributes. As in the log output, span fields are never
//!   copied (the appender's `experimental_span_attributes` is off);
//! * **no feedback**: events emitted on an exporter's thread or in a suppressed Context
//!   (the OTLP clients' hyper, h2, tonic and reqwest events) never reach the appender (see
//!   [`super::suppress`]), and the SDK's batch processor exports in a suppressed Context.
//!   OpenTelemetry's own internal log events (targets `opentelemetry*`) are left out too:
//!   the SDK logs from inside `emit` (a full queue), which would append again. They still
//!   reach the log output when the log filter enables them.
//!
//! The exporter runs on a private Tokio runtime, as the span exporter does (see
//! `super::otlp`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider, Severity};
use opentelemetry::{InstrumentationScope, Key, SpanId, StringValue, TraceFlags, TraceId};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::otlp::{TransportError, build_exporter, export_on, on_private_runtime};
use crate::Error;
use crate::config::ResolvedOtlp;
use crate::limits::{bounded, max_value_len};

/// Most attributes a log record keeps (the correlation id included); more are dropped.
pub const MAX_LOG_ATTRIBUTES: usize = 128;

thread_local! {
    /// The correlation id of the event being appended, for [`BoundedLogger::emit`].
    static CORRELATION: RefCell<Option<StringValue>> = const { RefCell::new(None) };
}

/// The OTLP log exporter on its own runtime.
#[derive(Debug)]
pub(crate) struct OtlpLogExporter {
    // `Some` until dropped; taken in `drop` to shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    inner: opentelemetry_otlp::LogExporter,
    timeout: Duration,
    transport_error: TransportError,
}

impl OtlpLogExporter {
    pub(crate) fn build(otlp: &ResolvedOtlp, export_timeout: Duration) -> Result<Self, Error> {
        let timeout = otlp.timeout.min(export_timeout);
        let transport_error = TransportError::default();
        let (runtime, inner) = on_private_runtime(|| {
            build_exporter!(
                opentelemetry_otlp::LogExporter,
                otlp,
                timeout,
                &transport_error
            )
        })?;
        Ok(OtlpLogExporter {
            runtime: Some(runtime),
            inner,
            timeout: export_timeout,
            transport_error,
        })
    }
}

impl LogExporter for OtlpLogExporter {
    fn export(
        &self,
        batch: LogBatch<'_>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = export_on(
            self.runtime.as_ref(),
            self.timeout,
            &self.transport_error,
            self.inner.export(batch),
        );
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl Drop for OtlpLogExporter {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The SDK's logger provider, handing out [`BoundedLogger`]s.
#[derive(Clone, Debug)]
pub(crate) struct BoundedProvider(pub(crate) SdkLoggerProvider);

impl LoggerProvider for BoundedProvider {
    type Logger = BoundedLogger;

    fn logger_with_scope(&self, scope: InstrumentationScope) -> BoundedLogger {
        BoundedLogger(self.0.logger_with_scope(scope))
    }
}

/// The SDK's logger, whose records bound what they hold and get the correlation id.
#[derive(Debug)]
pub(crate) struct BoundedLogger(SdkLogger);

impl Logger for BoundedLogger {
    type LogRecord = BoundedRecord;

    fn create_log_record(&self) -> BoundedRecord {
        BoundedRecord {
            inner: self.0.create_log_record(),
            attributes: 0,
        }
    }

    fn emit(&self, mut record: BoundedRecord) {
        if let Some(id) = CORRELATION.with(|slot| slot.borrow().clone()) {
            record.add_attribute(Key::from_static_str("correlation.id"), id);
        }
        self.0.emit(record.inner);
    }

    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.0.event_enabled(level, target, name)
    }
}

/// A log record whose body and string attributes are bounded, with at most
/// [`MAX_LOG_ATTRIBUTES`] attributes.
#[derive(Debug)]
pub(crate) struct BoundedRecord {
    inner: SdkLogRecord,
    attributes: usize,
}

/// `value` with its string (or bytes) cut to the crate's value length.
fn bound(value: AnyValue) -> AnyValue {
    match value {
        AnyValue::String(s) if s.as_str().len() > max_value_len() => {
            AnyValue::String(StringValue::from(bounded(s.as_str()).to_owned()))
        }
        AnyValue::Bytes(mut bytes) if bytes.len() > max_value_len() => {
            bytes.truncate(max_value_len());
            AnyValue::Bytes(bytes)
        }
        other => other,
    }
}

impl LogRecord for BoundedRecord {
    fn set_event_name(&mut self, name: &'static str) {
        self.inner.set_event_name(name);
    }

    fn set_target<T>(&mut self, target: T)
    where
        T: Into<Cow<'static, str>>,
    {
        self.inner.set_target(target);
    }

    fn set_timestamp(&mut self, timestamp: SystemTime) {
        self.inner.set_timestamp(timestamp);
    }

    fn set_observed_timestamp(&mut self, timestamp: SystemTime) {
        self.inner.set_observed_timestamp(timestamp);
    }

    fn set_severity_text(&mut self, text: &'static str) {
        self.inner.set_severity_text(text);
    }

    fn set_severity_number(&mut self, number: Severity) {
        self.inner.set_severity_number(number);
    }

    fn set_body(&mut self, body: AnyValue) {
        self.inner.set_body(bound(body));
    }

    fn add_attributes<I, K, V>(&mut self, attributes: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<Key>,
        V: Into<AnyValue>,
    {
        for (key, value) in attributes {
            self.add_attribute(key, value);
        }
    }

    fn add_attribute<K, V>(&mut self, key: K, value: V)
    where
        K: Into<Key>,
        V: Into<AnyValue>,
    {
        if self.attributes < MAX_LOG_ATTRIBUTES {
            self.attributes += 1;
            self.inner.add_attribute(key, bound(value.into()));
        }
    }

    fn set_trace_context(
        &mut self,
        trace_id: TraceId,
        span_id: SpanId,
        trace_flags: Option<TraceFlags>,
    ) {
        self.inner.set_trace_context(trace_id, span_id, trace_flags);
    }
}

/// The appender layer: the OpenTelemetry tracing bridge over [`BoundedProvider`], told
/// each event's correlation id. The manager filters it with the log filter and keeps the
/// exporters' own events away (see the [module docs](self)).
pub(crate) struct OtlpLogLayer {
    bridge: OpenTelemetryTracingBridge<BoundedProvider, BoundedLogger>,
}

impl OtlpLogLayer {
    pub(crate) fn new(provider: &SdkLoggerProvider) -> Self {
        OtlpLogLayer {
            bridge: OpenTelemetryTracingBridge::new(&BoundedProvider(provider.clone())),
        }
    }
}

impl<S> Layer<S> for OtlpLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let id = crate::logging::correlation_id_of(&ctx, event);
        let previous = CORRELATION.with(|slot| slot.replace(id));
        self.bridge.on_event(event, ctx);
        CORRELATION.with(|slot| *slot.borrow_mut() = previous);
    }
}

/// Whether an event may become a log record: never one emitted while exporting (an
/// exporter's thread, a suppressed Context), nor one of OpenTelemetry's own internal log
/// events (targets `opentelemetry*`: the SDK logs from inside `emit` when its queue is full,
/// which would append again).
pub(crate) fn admits(meta: &tracing::Metadata<'_>) -> bool {
    !meta.target().starts_with("opentelemetry") && !super::suppress::exporting()
}

/// The logger provider exporting to `exporter` in batches (the SDK's defaults: a queue of
/// 2048 records, an export every second, 512 per request).
pub(crate) fn provider(exporter: OtlpLogExporter, resource: Resource) -> SdkLoggerProvider {
    SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build()
}
