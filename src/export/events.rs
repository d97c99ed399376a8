//! ERROR events on bridged spans, recorded as span events only.
//!
//! tracing-opentelemetry 0.34 sets span status Error for every ERROR-level event inside a
//! span, even with `with_error_events_to_status(false)` (`OpenTelemetryLayer::on_event`,
//! the `Level::ERROR` branch). The semantic conventions decide a span's status; a logged
//! error is a log event. So the manager's span filter keeps ERROR events away from the
//! `tracing-opentelemetry` layer ([`Events::NotErrors`](super::suppress::Events)), and this
//! layer, beside it with the same directives, adds them to the span as events: name (the
//! message), `level`, `target` and the fields, as tracing-opentelemetry would.

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{Key, KeyValue, Value};
use std::sync::OnceLock;
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct ErrorEvents {
    // Weak: the dispatch owns this layer.
    dispatch: OnceLock<WeakDispatch>,
}

impl<S> Layer<S> for ErrorEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = event.parent().and_then(|id| ctx.span(id)).or_else(|| {
            event
                .is_contextual()
                .then(|| ctx.lookup_current())
                .flatten()
        });
        let Some(id) = span.map(|span| span.id()) else {
            return;
        };
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        let meta = event.metadata();
        let mut visitor = EventVisitor {
            name: None,
            attributes: vec![
                KeyValue::new(Key::from_static_str("level"), meta.level().as_str()),
                KeyValue::new(Key::from_static_str("target"), meta.target()),
            ],
        };
        event.record(&mut visitor);
        let name = visitor
            .name
            .unwrap_or_else(|| std::borrow::Cow::Borrowed(meta.name()));
        // No extension lock is held here: tracing-opentelemetry takes them.
        if let Some(cx) = tracing_opentelemetry::get_otel_context(&id, &dispatch) {
            cx.span().add_event(name, visitor.attributes);
        }
    }
}

struct EventVisitor {
    name: Option<std::borrow::Cow<'static, str>>,
    attributes: Vec<KeyValue>,
}

impl EventVisitor {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.name = Some(value.as_str().into_owned().into());
        } else {
            self.attributes.push(KeyValue::new(field.name(), value));
        }
    }
}

impl Visit for EventVisitor {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.push(field, Value::I64(value)),
            Err(_) => self.push(field, Value::from(value.to_string())),
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::F64(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::from(value.to_owned()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, Value::from(format!("{value:?}")));
    }
}
