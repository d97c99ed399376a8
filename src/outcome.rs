//! Recording a failed request on its span: shared by the server and the client sides so
//! that both report errors the same way.

use opentelemetry::KeyValue;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Longest error or panic message recorded on a span.
pub(crate) const MAX_MESSAGE_LEN: usize = 512;

/// `message` cut to at most `max` bytes, on a char boundary.
pub(crate) fn truncate(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Marks the span as failed: `error.type`, status Error with the (bounded) message as its
/// description, and an `exception` event with the type and message.
pub(crate) fn record_error(span: &Span, error_type: &str, message: &str) {
    let message = truncate(message, MAX_MESSAGE_LEN);
    span.record("error.type", error_type);
    span.record("otel.status_code", "error");
    span.record("otel.status_description", message);
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", error_type.to_owned()),
            KeyValue::new("exception.message", message.to_owned()),
        ],
    );
}

/// What both response bodies do with each frame they pass on: the span ends after the
/// last frame, and a failed body is recorded (`error.type = "body"`) and ends it too.
/// `body_ended` is asked only after a data frame; `message` only for an error.
pub(crate) fn observe_body_frame<D, E>(
    span: &mut Option<Span>,
    frame: &Option<Result<http_body::Frame<D>, E>>,
    body_ended: impl FnOnce() -> bool,
    message: impl FnOnce(&E) -> String,
) {
    match frame {
        None => {
            span.take();
        }
        Some(Err(error)) => {
            if let Some(span) = span.take() {
                record_error(&span, "body", &message(error));
            }
        }
        Some(Ok(_)) => {
            if body_ended() {
                span.take();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("short", 512), "short");
        assert_eq!(truncate("abcdef", 3), "abc");
        // 'é' is two bytes: cutting inside it backs off to the boundary before it.
        assert_eq!(truncate("aé", 2), "a");
    }
}
