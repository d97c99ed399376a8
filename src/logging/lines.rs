//! [`LogLayer`]: meshtrace's default log output, one line per event.
//!
//! It is a `tracing` layer of its own rather than `tracing_subscriber::fmt::Layer`
//! because that layer formats every field of every span into a `String` when the span is
//! created (its `FormattedFields` extension), whether or not a line is ever printed:
//! ~12.6k instructions per request for a server span, and every client-chosen value in
//! every line. This layer never looks at span fields; it reads span *names* when it
//! prints a line, and the ids from the current OpenTelemetry Context.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::{Correlation, LogFormat, capture_correlation_field, write_json_escaped};

thread_local! {
    /// The line being written, reused across events so that logging does not allocate.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Lines longer than this are not kept in the reusable buffer once written.
const KEEP_BUFFER: usize = 16 * 1024;

/// The default log output of [`fmt_layer`](super::fmt_layer).
pub(crate) struct LogLayer<W> {
    format: LogFormat,
    writer: W,
    ansi: bool,
}

impl<W> LogLayer<W> {
    pub(crate) fn new(format: LogFormat, writer: W, ansi: bool) -> Self {
        LogLayer {
            format,
            writer,
            ansi: ansi && format == LogFormat::Text,
        }
    }
}

impl<S, W> Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        capture_correlation_field(attrs.metadata(), |v| attrs.record(v), id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            capture_correlation_field(span.metadata(), |v| values.record(v), id, &ctx);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let write = |line: &mut String| {
            line.clear();
            let _ = self.format_line(line, event, &ctx);
            let mut out = self.writer.make_writer_for(event.metadata());
            let _ = out.write_all(line.as_bytes());
            if line.capacity() > KEEP_BUFFER {
                *line = String::new();
            }
        };
        // An event logged while a line is being formatted (from a `Debug` impl, say)
        // gets a buffer of its own.
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            Err(_) => write(&mut String::new()),
        });
    }
}

impl<W> LogLayer<W> {
    fn format_line<S>(
        &self,
        line: &mut String,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
    ) -> fmt::Result
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let correlation = Correlation::for_event(ctx, event);
        match self.format {
            LogFormat::Text => {
                SystemTime.format_time(&mut Writer::new(line))?;
                line.push(' ');
                self.write_level(line, *meta.level())?;
                line.push(' ');
                if let Some(scope) = ctx.event_scope(event) {
                    for span in scope.from_root() {
                        line.push_str(span.name());
                        line.push(':');
                    }
                    line.push(' ');
                }
                line.push_str(meta.target());
                line.push_str(": ");
                event.record(&mut TextFields {
                    out: line,
                    first: true,
                });
                correlation.write_text(line)?;
                line.push('\n');
            }
            LogFormat::Json => {
                line.push('{');
                correlation.write_json(line)?;
                if !correlation.is_empty() {
                    line.push(',');
                }
                line.push_str("\"timestamp\":\"");
                SystemTime.format_time(&mut Writer::new(line))?;
                write!(line, "\",\"level\":\"{}\",\"fields\":{{", meta.level())?;
                event.record(&mut JsonFields {
                    out: line,
                    first: true,
                });
                line.push_str("},\"target\":\"");
                write_json_escaped(line, meta.target())?;
                line.push('"');
                if let Some(scope) = ctx.event_scope(event) {
                    // tracing-subscriber's JSON shape (`span`: the innermost, `spans`:
                    // root first), names only.
                    if let Some(span) = ctx.event_span(event) {
                        line.push_str(",\"span\":{\"name\":\"");
                        write_json_escaped(line, span.name())?;
                        line.push_str("\"}");
                    }
                    line.push_str(",\"spans\":[");
                    for (i, span) in scope.from_root().enumerate() {
                        if i > 0 {
                            line.push(',');
                        }
                        line.push_str("{\"name\":\"");
                        write_json_escaped(line, span.name())?;
                        line.push_str("\"}");
                    }
                    line.push(']');
                }
                line.push_str("}\n");
            }
        }
        Ok(())
    }

    fn write_level(&self, line: &mut String, level: Level) -> fmt::Result {
        if !self.ansi {
            return write!(line, "{level:>5}");
        }
        let colour = match level {
            Level::TRACE => "35",
            Level::DEBUG => "34",
            Level::INFO => "32",
            Level::WARN => "33",
            Level::ERROR => "31",
        };
        write!(line, "\x1b[{colour}m{level:>5}\x1b[0m")
    }
}

/// Event fields as `message key=value ...`; strings and `Debug` values are quoted with
/// Rust escapes, so a value cannot break the line.
struct TextFields<'a> {
    out: &'a mut String,
    first: bool,
}

impl TextFields<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.push(' ');
        }
        self.first = false;
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.sep();
        if field.name() == "message" {
            self.out.push_str(value);
        } else {
            let _ = write!(self.out, "{}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.sep();
        if field.name() == "message" {
            let _ = write!(self.out, "{value:?}");
        } else {
            let _ = write!(self.out, "{}={value:?}", field.name());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.sep();
        let _ = write!(self.out, "{}={value}", field.name());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.sep();
        let _ = write!(self.out, "{}={value}", field.name());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.sep();
        let _ = write!(self.out, "{}={value}", field.name());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.sep();
        let _ = write!(self.out, "{}={value}", field.name());
    }
}

/// Event fields as the members of a JSON object.
struct JsonFields<'a> {
    out: &'a mut String,
    first: bool,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        let _ = write_json_escaped(self.out, field.name());
        self.out.push_str("\":");
    }

    fn string(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        self.key(field);
        self.out.push('"');
        let _ = JsonEscaping(self.out).write_fmt(value);
        self.out.push('"');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.string(field, format_args!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.key(field);
            let _ = write!(self.out, "{value}");
        } else {
            self.string(field, format_args!("{value}"));
        }
    }
}

/// Escapes what is written through it as the inside of a JSON string.
struct JsonEscaping<'a>(&'a mut String);

impl fmt::Write for JsonEscaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_json_escaped(self.0, s)
    }
}
