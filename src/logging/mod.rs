//! Trace ids and the correlation id in every log line.
//!
//! Every event emitted inside a traced request (or a span of yours) carries three extra
//! fields:
//!
//! - `trace_id`: the trace id of the current OpenTelemetry Context, 32 lowercase hex
//!   digits: inside a handler the server span's, inside a `tracing` span bridged by
//!   tracing-opentelemetry that span's (it attaches its Context when entered);
//! - `span_id`: the span id of the same span, 16 lowercase hex digits;
//! - `correlation_id`: the `correlation.id` field of the nearest span in the event's scope
//!   that carries one, else the request's validated correlation id from the Context.
//!
//! Events outside any request or span carry none of them. A span the sampler dropped still
//! has valid ids, so sampled and dropped requests log the same fields, and the ids match
//! those of the exported span.
//!
//! # Output
//!
//! [`fmt_layer`] writes one line per event: the timestamp, the level, the names of the
//! `tracing` spans it is in, the target, the event's fields and the three ids. It never
//! prints or even formats the fields of `tracing` spans, so a span that never logs costs the
//! log layer nothing. A request's HTTP attributes (a client-chosen 60 KB path or user
//! agent) are not `tracing` fields at all: meshtrace's server and client spans are
//! OpenTelemetry SDK spans, whose attributes only go to the exporter.
//! [`LogFormat::Json`] has the ids first:
//!
//! ```text
//! {"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","correlation_id":"req-42","timestamp":"…","level":"INFO","fields":{"message":"order placed","order":7},"target":"shop","span":{"name":"charge"},"spans":[{"name":"charge"}]}
//! ```
//!
//! [`LogFormat::Text`] has them at the end of the line, logfmt-style:
//!
//! ```text
//! 2026-11-24T08:00:00.000000Z  INFO charge: shop: order placed order=7 trace_id=4bf9… span_id=00f0… correlation_id=req-42
//! ```
//!
//! [`fmt_layer_with_span_fields`] (tracing-subscriber's own format with the ids added)
//! prints the fields of every `tracing` span in scope (yours, and `#[traced]` spans) on
//! every line, for those who want them.
//!
//! # Using it
//!
//! [`fmt_layer`] is a complete log output layer; add it next to the
//! `tracing-opentelemetry` layer in your own subscriber:
//!
//! ```
//! use meshtrace::logging::{fmt_layer_with_writer, LogFormat};
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("example")))
//!     .with(fmt_layer_with_writer(LogFormat::Json, std::io::stderr));
//!
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::info_span!("request", correlation.id = "req-42");
//!     let _guard = span.enter();
//!     // {"trace_id":"…","span_id":"…","correlation_id":"req-42",…,"fields":{"message":"order placed"},…}
//!     tracing::info!("order placed");
//! });
//! ```
//!
//! To keep your own `tracing_subscriber::fmt` configuration, wrap its event formatter in
//! [`CorrelatedFormat`] and add [`CorrelationLayer`] (which captures the ids) to the same
//! subscriber:
//!
//! ```
//! use meshtrace::logging::{CorrelatedFormat, CorrelationLayer};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer())
//!     .with(CorrelationLayer::new())
//!     .with(
//!         tracing_subscriber::fmt::layer()
//!             .json()
//!             .with_writer(std::io::stderr)
//!             .map_event_format(CorrelatedFormat::json),
//!     );
//! # drop(subscriber);
//! ```
//!
//! # When the ids are read
//!
//! [`fmt_layer`] reads them from the current OpenTelemetry Context when it writes a line.
//! [`CorrelationLayer`] (for [`CorrelatedFormat`]) captures the ids of each span the first
//! time it is entered and keeps them in the span's extensions; an event whose innermost
//! span has none falls back to the current Context. We never start an OpenTelemetry span
//! from a log call: that would freeze the sampler's inputs.
//!
//! # Cost
//!
//! Per event: a walk up the event's scope to the nearest `correlation.id` (read locks on
//! span extensions, no allocation), a look at the current Context, and the line, written
//! into a reused buffer. Per span: nothing, unless it has a `correlation.id` field (one
//! shared copy of the value).
//!
//! # Recording the correlation id
//!
//! Record `correlation.id` as a string (`correlation.id = id.as_str()`) or with `%`
//! (`Display`); a `?` (`Debug`) value is logged as its `Debug` text. A field recorded later
//! with `Span::record` replaces the earlier value. With `flatten_event(true)`, an event field
//! named `trace_id`, `span_id` or `correlation_id` would duplicate a key: don't use those
//! names for event fields.
//!
//! # What is never logged
//!
//! Only the `correlation.id` span field is read. meshtrace records there the id it
//! validated; rejected client-supplied ids and baggage values never reach a span field, so
//! they never reach a log line. Values are escaped (JSON string escaping; quoted with Rust
//! escapes in text when they contain anything beyond `[A-Za-z0-9._:/@+=~-]`), so a value
//! cannot forge a log line.

use std::fmt;
use std::sync::{Arc, OnceLock};

mod lines;

use lines::LogLayer;
use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The span field the correlation id is read from.
pub const CORRELATION_ID_FIELD: &str = "correlation.id";

/// Output format of [`fmt_layer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// `tracing-subscriber`'s human-readable format, ids appended as `key=value`.
    #[default]
    Text,
    /// `tracing-subscriber`'s JSON format, one object per line, ids as top-level fields.
    Json,
}

/// A log layer writing to stdout: one line per event with its timestamp, level, the
/// names of the spans it is in, its target, its fields, and `trace_id`, `span_id` and
/// `correlation_id`; see the [module docs](self).
///
/// The fields of `tracing` spans (`info_span!("charge", order = 7)`, the arguments a
/// `#[traced]` function records) are not printed and not even formatted;
/// [`fmt_layer_with_span_fields`] brings them back. A request's HTTP attributes never reach a
/// log line with either layer: meshtrace's server and client spans are OpenTelemetry SDK
/// spans, not `tracing` spans, so a client-chosen 60 KB path stays out of the logs.
///
/// Text output uses ANSI colours when stdout is a terminal and `NO_COLOR` is not set.
pub fn fmt_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    Box::new(LogLayer::new(format, std::io::stdout, stdout_ansi()))
}

/// Like [`fmt_layer`], writing to `writer` (never with ANSI colours).
pub fn fmt_layer_with_writer<S, W>(
    format: LogFormat,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    Box::new(LogLayer::new(format, writer, false))
}

/// `tracing-subscriber`'s own format (`fmt::layer()`, `.json()` for JSON) with the three
/// ids added: it brings back the fields of `tracing` spans, i.e. of your own spans
/// (`info_span!("charge", order = 7)`) and of `#[traced]` spans (the arguments they
/// record). Every field of every `tracing` span in scope is printed on every line, and
/// formatted when the span is created, whether or not a line is ever printed. Choose it
/// when you want those fields in your logs; [`fmt_layer`] is the cheaper default.
///
/// It does not bring back a request's HTTP attributes (`url.path`, `user_agent.original`,
/// ...): meshtrace's server and client spans are OpenTelemetry SDK spans, not `tracing`
/// spans, and their attributes go to the exporter only.
///
/// [`TracingManager`](crate::TracingManager) has no setting for it (`log_format` chooses
/// between the text and JSON forms of [`fmt_layer`]). Build the manager with
/// [`build`](crate::TracingManagerBuilder::build) and put this layer, with the manager's
/// log filter, where `layers.log_layer` would go:
///
/// ```
/// use meshtrace::TracingManager;
/// use meshtrace::logging::{LogFormat, fmt_layer_with_span_fields};
/// use tracing_subscriber::Layer as _;
/// use tracing_subscriber::layer::SubscriberExt as _;
///
/// # fn main() -> Result<(), meshtrace::Error> {
/// let (telemetry, layers) = TracingManager::builder()
///     .span_exporter(opentelemetry_sdk::trace::InMemorySpanExporter::default())
///     .build()?;
/// let subscriber = tracing_subscriber::registry()
///     .with(layers.span_layer)
///     .with(fmt_layer_with_span_fields(LogFormat::Json, std::io::stderr).with_filter(layers.log_filter));
/// tracing::subscriber::with_default(subscriber, || {
///     // {…,"fields":{"message":"charging"},"target":"…","span":{"order":7,"name":"charge"},…}
///     tracing::info_span!("charge", order = 7).in_scope(|| tracing::info!("charging"));
/// });
/// # drop((telemetry, layers.log_layer));
/// # Ok(()) }
/// ```
pub fn fmt_layer_with_span_fields<S, W>(
    format: LogFormat,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build_layer(format, writer, false)
}

fn stdout_ansi() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

fn build_layer<S, W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            CorrelationLayer::new().and_then(
                base.json()
                    .with_ansi(false)
                    .map_event_format(CorrelatedFormat::json),
            ),
        ),
        // The text formatter writes through our wrapping writer, which cannot carry the
        // fmt layer's ANSI flag (tracing-subscriber 0.3.23 keeps `Writer::with_ansi`
        // crate-private), so the inner format gets it set explicitly.
        LogFormat::Text => Box::new(
            CorrelationLayer::new().and_then(
                base.with_ansi(ansi)
                    .map_event_format(|inner| CorrelatedFormat::text(inner.with_ansi(ansi))),
            ),
        ),
    }
}

/// The OpenTelemetry ids of a span, captured once when it is first entered.
/// `None` when the span has no valid OpenTelemetry span context.
struct OtelIds(Option<(TraceId, SpanId)>);

/// The `correlation.id` recorded on a span.
struct CorrelationField(Arc<str>);

/// A layer that captures, into span extensions, what [`CorrelatedFormat`] prints: the
/// OpenTelemetry ids of each span (when it is first entered) and its `correlation.id` field
/// (when it is created or recorded).
///
/// [`fmt_layer`] includes it; add it yourself only when you build your own fmt layer with
/// [`CorrelatedFormat`]. It needs the `tracing-opentelemetry` layer in the same subscriber
/// (without it, events carry only `correlation_id`).
#[derive(Debug, Default)]
pub struct CorrelationLayer {
    // A weak handle: the dispatch owns this layer, so a strong one would be a cycle.
    dispatch: OnceLock<WeakDispatch>,
}

impl CorrelationLayer {
    /// Creates the layer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for CorrelationLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        // `tracing::dispatcher::get_default` cannot be used from inside a subscriber
        // callback (tracing-core 0.1 hands nested callers `Dispatch::none()` while a
        // scoped dispatcher is set), so the dispatch is remembered here.
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        capture_correlation_field(attrs.metadata(), |v| attrs.record(v), id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            capture_correlation_field(span.metadata(), |v| values.record(v), id, &ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if span.extensions().get::<OtelIds>().is_some() {
            return;
        }
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        // No extension lock may be held here: tracing-opentelemetry takes it.
        let ids = tracing_opentelemetry::get_otel_context(id, &dispatch).and_then(|cx| {
            let span_ref = cx.span();
            let sc = span_ref.span_context();
            sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
        });
        // `replace`, not `insert`: two threads may enter the same span at once.
        span.extensions_mut().replace(OtelIds(ids));
    }
}

/// Keeps a span's `correlation.id` field (bounded) in its extensions, when the span has
/// one and `record` sets it: at creation (`Attributes`) or later (`Record`).
fn capture_correlation_field<S>(
    meta: &tracing::Metadata<'_>,
    record: impl FnOnce(&mut dyn Visit),
    id: &Id,
    ctx: &Context<'_, S>,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if meta.fields().field(CORRELATION_ID_FIELD).is_none() {
        return;
    }
    let mut visitor = CorrelationVisitor(None);
    record(&mut visitor);
    if let (Some(value), Some(span)) = (visitor.0, ctx.span(id)) {
        span.extensions_mut().replace(CorrelationField(value));
    }
}

/// Longest `correlation.id` span field printed.
const MAX_CORRELATION_FIELD: usize = 256;

struct CorrelationVisitor(Option<Arc<str>>);

impl Visit for CorrelationVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == CORRELATION_ID_FIELD && !value.is_empty() {
            self.0 = Some(Arc::from(crate::limits::truncate(
                value,
                MAX_CORRELATION_FIELD,
            )));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == CORRELATION_ID_FIELD {
            let value = format!("{value:?}");
            if !value.is_empty() {
                self.0 = Some(Arc::from(crate::limits::truncate(
                    &value,
                    MAX_CORRELATION_FIELD,
                )));
            }
        }
    }
}

/// What an event carries: looked up in the event's scope, copied out so that no extension
/// lock is held while the inner formatter (which takes them too) runs.
#[derive(Default)]
struct Correlation {
    ids: Option<(TraceId, SpanId)>,
    correlation_id: Option<CorrelationText>,
}

/// A correlation id to write, shared, not copied: captured from a span field, or the
/// validated id of the current Context (a clone is a reference count).
enum CorrelationText {
    Field(Arc<str>),
    Context(crate::context::CorrelationId),
}

impl CorrelationText {
    fn as_str(&self) -> &str {
        match self {
            CorrelationText::Field(text) => text,
            CorrelationText::Context(id) => id.as_str(),
        }
    }
}

impl Correlation {
    /// For [`CorrelatedFormat`]: the innermost span's captured ids and the nearest
    /// `correlation.id` field; what is missing comes from the current OpenTelemetry Context.
    fn of<S, N>(ctx: &FmtContext<'_, S, N>) -> Self
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let mut found = Self::default();
        if let Some(scope) = ctx.event_scope() {
            for (depth, span) in scope.enumerate() {
                let extensions = span.extensions();
                if depth == 0 {
                    found.ids = extensions.get::<OtelIds>().and_then(|ids| ids.0);
                }
                if let Some(CorrelationField(value)) = extensions.get::<CorrelationField>() {
                    found.correlation_id = Some(CorrelationText::Field(Arc::clone(value)));
                    break;
                }
            }
        }
        found.fill_from_current_context();
        found
    }

    /// For [`LogLayer`]: the ids of the current OpenTelemetry Context (the innermost
    /// span bridged by tracing-opentelemetry, which attaches its Context on enter, or the
    /// request's span), and the nearest `correlation.id` span field, else the Context's
    /// correlation id.
    fn for_event<S>(ctx: &Context<'_, S>, event: &Event<'_>) -> Self
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut found = Self::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(CorrelationField(value)) = span.extensions().get::<CorrelationField>() {
                    found.correlation_id = Some(CorrelationText::Field(Arc::clone(value)));
                    break;
                }
            }
        }
        found.fill_from_current_context();
        found
    }

    /// Fills what is missing from the current OpenTelemetry Context. A request traced by
    /// `TracingLayer` runs with its Context attached (the span's ids, the validated
    /// correlation id), so its log lines are correlated whether or not a `tracing` span is
    /// in scope; outside a request the Context is empty and nothing is added.
    fn fill_from_current_context(&mut self) {
        use crate::context::ContextExt as _;

        if self.ids.is_some() && self.correlation_id.is_some() {
            return;
        }
        opentelemetry::Context::map_current(|cx| {
            if self.ids.is_none() {
                let span = cx.span();
                let sc = span.span_context();
                self.ids = sc.is_valid().then(|| (sc.trace_id(), sc.span_id()));
            }
            if self.correlation_id.is_none() {
                self.correlation_id = cx.correlation_id().cloned().map(CorrelationText::Context);
            }
        });
    }

    fn is_empty(&self) -> bool {
        self.ids.is_none() && self.correlation_id.is_none()
    }

    fn write_json(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let mut sep = "";
        if let Some((trace_id, span_id)) = self.ids {
            write!(
                out,
                "\"trace_id\":\"{trace_id:032x}\",\"span_id\":\"{span_id:016x}\""
            )?;
            sep = ",";
        }
        if let Some(cid) = self.correlation_id.as_ref().map(CorrelationText::as_str) {
            write!(out, "{sep}\"correlation_id\":\"")?;
            write_json_escaped(out, cid)?;
            out.write_char('"')?;
        }
        Ok(())
    }

    fn write_text(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        if let Some((trace_id, span_id)) = self.ids {
            write!(out, " trace_id={trace_id:032x} span_id={span_id:016x}")?;
        }
        if let Some(cid) = self.correlation_id.as_ref().map(CorrelationText::as_str) {
            if cid.bytes().all(is_plain_text_byte) {
                write!(out, " correlation_id={cid}")?;
            } else {
                write!(out, " correlation_id={cid:?}")?;
            }
        }
        Ok(())
    }
}

/// The correlation id an event carries in the log output (the nearest `correlation.id`
/// span field, else the current Context's validated id), for the OTLP log records.
#[cfg_attr(not(feature = "otlp-logs"), allow(dead_code))]
pub(crate) fn correlation_id_of<S>(
    ctx: &Context<'_, S>,
    event: &Event<'_>,
) -> Option<opentelemetry::StringValue>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    Correlation::for_event(ctx, event)
        .correlation_id
        .map(|text| match text {
            CorrelationText::Field(text) => opentelemetry::StringValue::from(text),
            CorrelationText::Context(id) => {
                opentelemetry::StringValue::from(id.as_str().to_owned())
            }
        })
}

fn is_plain_text_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._:/@+=~-".contains(&b)
}

fn write_json_escaped(out: &mut dyn fmt::Write, value: &str) -> fmt::Result {
    let mut start = 0;
    for (i, c) in value.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 || c == '\u{7f}' => "",
            _ => continue,
        };
        out.write_str(&value[start..i])?;
        if escape.is_empty() {
            write!(out, "\\u{:04x}", c as u32)?;
        } else {
            out.write_str(escape)?;
        }
        start = i + c.len_utf8();
    }
    out.write_str(&value[start..])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Inside the leading `{` of a JSON object.
    JsonPrefix,
    /// Before the trailing newline.
    TextSuffix,
}

/// An event formatter that adds `trace_id`, `span_id` and `correlation_id` to the output of
/// another one (captured by [`CorrelationLayer`], which must be in the same subscriber).
///
/// [`CorrelatedFormat::json`] wraps a formatter that writes one JSON object per line (such as
/// `tracing_subscriber::fmt::format().json()`), adding the ids as its first fields.
/// [`CorrelatedFormat::text`] wraps a line-oriented formatter, appending ` key=value` pairs
/// before the newline. The inner formatter writes through a wrapper, so it sees a writer
/// without ANSI colours unless configured with `Format::with_ansi(true)` itself.
#[derive(Clone, Debug)]
pub struct CorrelatedFormat<F> {
    inner: F,
    placement: Placement,
}

impl<F> CorrelatedFormat<F> {
    /// Wraps a formatter that writes one JSON object per event.
    #[must_use]
    pub fn json(inner: F) -> Self {
        Self {
            inner,
            placement: Placement::JsonPrefix,
        }
    }

    /// Wraps a formatter that writes one line per event.
    #[must_use]
    pub fn text(inner: F) -> Self {
        Self {
            inner,
            placement: Placement::TextSuffix,
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for CorrelatedFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let correlation = Correlation::of(ctx);
        if correlation.is_empty() {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut splice = Splice {
            out: &mut writer,
            correlation: &correlation,
            placement: self.placement,
            state: SpliceState::Start,
        };
        self.inner
            .format_event(ctx, Writer::new(&mut splice), event)?;
        splice.finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SpliceState {
    /// Nothing written yet.
    Start,
    /// JSON: our fields were written after `{`; a comma is due unless the object ends.
    NeedComma,
    /// Text: a newline was held back.
    HeldNewline,
    /// Pass everything through.
    Through,
}

/// Streams the inner formatter's output to the real writer, inserting our fields at the
/// right place without buffering the line.
struct Splice<'a, 'w> {
    out: &'a mut Writer<'w>,
    correlation: &'a Correlation,
    placement: Placement,
    state: SpliceState,
}

impl Splice<'_, '_> {
    fn finish(self) -> fmt::Result {
        match (self.placement, self.state) {
            (Placement::TextSuffix, SpliceState::HeldNewline) => {
                self.correlation.write_text(self.out)?;
                self.out.write_char('\n')
            }
            (Placement::TextSuffix, _) => self.correlation.write_text(self.out),
            (Placement::JsonPrefix, _) => Ok(()),
        }
    }
}

impl fmt::Write for Splice<'_, '_> {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        if s.is_empty() {
            return Ok(());
        }
        match self.placement {
            Placement::JsonPrefix => {
                if self.state == SpliceState::Start {
                    if let Some(rest) = s.strip_prefix('{') {
                        self.out.write_char('{')?;
                        self.correlation.write_json(self.out)?;
                        self.state = SpliceState::NeedComma;
                        s = rest;
                        if s.is_empty() {
                            return Ok(());
                        }
                    } else {
                        // Not a JSON object: leave it untouched rather than corrupt it.
                        self.state = SpliceState::Through;
                    }
                }
                if self.state == SpliceState::NeedComma {
                    self.state = SpliceState::Through;
                    if !s.starts_with('}') {
                        self.out.write_char(',')?;
                    }
                }
                self.out.write_str(s)
            }
            Placement::TextSuffix => {
                if self.state == SpliceState::HeldNewline {
                    self.out.write_char('\n')?;
                }
                if let Some(line) = s.strip_suffix('\n') {
                    self.state = SpliceState::HeldNewline;
                    self.out.write_str(line)
                } else {
                    self.state = SpliceState::Through;
                    self.out.write_str(s)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escaping_covers_quotes_backslashes_and_controls() {
        let mut out = String::new();
        write_json_escaped(&mut out, "a\"b\\c\nd\u{1}e\u{7f}é").unwrap();
        assert_eq!(out, r#"a\"b\\c\nd\u0001e\u007fé"#);
        let parsed: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}e\u{7f}é");
    }

    #[test]
    fn text_quotes_values_that_could_forge_fields_or_lines() {
        let correlation = Correlation {
            ids: None,
            correlation_id: Some(CorrelationText::Field(Arc::from("x trace_id=1\nfake"))),
        };
        let mut out = String::new();
        correlation.write_text(&mut out).unwrap();
        assert_eq!(out, r#" correlation_id="x trace_id=1\nfake""#);
    }

    fn spliced(placement: Placement, chunks: &[&str]) -> String {
        let correlation = Correlation {
            ids: Some((TraceId::from(1), SpanId::from(2))),
            correlation_id: Some(CorrelationText::Field(Arc::from("c"))),
        };
        let mut out = String::new();
        let mut writer = Writer::new(&mut out);
        let mut splice = Splice {
            out: &mut writer,
            correlation: &correlation,
            placement,
            state: SpliceState::Start,
        };
        for chunk in chunks {
            fmt::Write::write_str(&mut splice, chunk).unwrap();
        }
        splice.finish().unwrap();
        out
    }

    #[test]
    fn json_splice_handles_chunking_empty_objects_and_non_objects() {
        let ids = r#""trace_id":"00000000000000000000000000000001","span_id":"0000000000000002","correlation_id":"c""#;
        assert_eq!(
            spliced(Placement::JsonPrefix, &["{", "\"a\":1", "}\n"]),
            format!("{{{ids},\"a\":1}}\n")
        );
        assert_eq!(
            spliced(Placement::JsonPrefix, &["{\"a\":1}\n"]),
            format!("{{{ids},\"a\":1}}\n")
        );
        assert_eq!(
            spliced(Placement::JsonPrefix, &["{", "}", "\n"]),
            format!("{{{ids}}}\n")
        );
        assert_eq!(spliced(Placement::JsonPrefix, &["[1]\n"]), "[1]\n");
    }

    #[test]
    fn text_splice_appends_before_the_last_newline_only() {
        let ids =
            " trace_id=00000000000000000000000000000001 span_id=0000000000000002 correlation_id=c";
        assert_eq!(
            spliced(Placement::TextSuffix, &["a", " b", "\n"]),
            format!("a b{ids}\n")
        );
        assert_eq!(
            spliced(Placement::TextSuffix, &["a\n", "b\n"]),
            format!("a\nb{ids}\n")
        );
        assert_eq!(spliced(Placement::TextSuffix, &["a"]), format!("a{ids}"));
    }

    #[test]
    fn log_format_serde_names() {
        assert_eq!(serde_json::to_string(&LogFormat::Json).unwrap(), "\"json\"");
        assert_eq!(
            serde_json::from_str::<LogFormat>("\"text\"").unwrap(),
            LogFormat::Text
        );
    }
}
