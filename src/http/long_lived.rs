//! Responses that do not end on their own (server-sent events, watch streams): a limit on
//! how long their span stays open, enforced by a timer.
//!
//! A span normally ends when its response body ends. A `text/event-stream` body may never
//! end, so by default its span ends [`DEFAULT_EVENT_STREAM_LIMIT`] after the response head
//! at the latest, with `meshtrace.truncated = true`; the stream itself goes on untouched.
//! The limit is a timer (a Tokio task per limited response, aborted when the body ends
//! first), so an idle stream's span ends on time, not at its next event. Other bodies have
//! no limit unless one is set. WebSocket and other upgrades end their span when the `101`
//! response is sent: the upgraded connection is not the request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt as _;

use super::outcome::OpenSpan;

/// How long the span of a `text/event-stream` response stays open at most, by default.
/// Long enough for a streamed answer (a model's tokens, a report's progress) to be timed to
/// its end; short enough that a notification stream open for hours neither holds its span
/// (and its trace) back from export that long nor counts as one hours-long request.
pub const DEFAULT_EVENT_STREAM_LIMIT: Duration = Duration::from_secs(300);

/// The attribute a span gets when a limit ended it before its response body ended.
pub const TRUNCATED: &str = "meshtrace.truncated";

/// The limits a layer applies to the spans of its responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpanLimits {
    /// `text/event-stream` responses.
    pub(crate) event_stream: Option<Duration>,
    /// Every other response.
    pub(crate) other: Option<Duration>,
}

impl Default for SpanLimits {
    fn default() -> Self {
        SpanLimits {
            event_stream: Some(DEFAULT_EVENT_STREAM_LIMIT),
            other: None,
        }
    }
}

impl SpanLimits {
    /// The limit for a response with these headers (the body's length is unknown).
    pub(crate) fn for_headers(&self, headers: &HeaderMap) -> Option<Duration> {
        if self.event_stream == self.other {
            return self.other;
        }
        let event_stream = headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| is_event_stream(v.as_bytes()));
        if event_stream {
            self.event_stream
        } else {
            self.other
        }
    }
}

fn is_event_stream(value: &[u8]) -> bool {
    const SSE: &[u8] = b"text/event-stream";
    value.len() >= SSE.len()
        && value[..SSE.len()].eq_ignore_ascii_case(SSE)
        && matches!(value.get(SSE.len()), None | Some(b';' | b' '))
}

/// Where a body keeps its span: with the body, or shared with the timer that ends it at
/// the limit.
#[derive(Debug)]
pub(crate) enum SpanSlot {
    Here(Option<OpenSpan>),
    Timed {
        span: Arc<Mutex<Option<OpenSpan>>>,
        timer: tokio::task::AbortHandle,
    },
}

impl SpanSlot {
    /// Hands the span to a timer that ends it after `limit`, unless the body ends it first.
    /// Without a Tokio runtime the span stays with the body (it ends with the body).
    pub(crate) fn limit(self, limit: Duration) -> Self {
        let SpanSlot::Here(Some(span)) = self else {
            return self;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return SpanSlot::Here(Some(span));
        };
        let shared = Arc::new(Mutex::new(Some(span)));
        let weak = Arc::downgrade(&shared);
        let timer = runtime.spawn(async move {
            tokio::time::sleep(limit).await;
            let span = weak
                .upgrade()
                .and_then(|shared| shared.lock().ok().and_then(|mut span| span.take()));
            if let Some(span) = span {
                span.context()
                    .span()
                    .set_attribute(KeyValue::new(TRUNCATED, true));
                // Dropping it ends it, now.
            }
        });
        SpanSlot::Timed {
            span: shared,
            timer: timer.abort_handle(),
        }
    }

    /// Takes the span, if it is still open (the timer, if any, is stopped).
    #[inline]
    pub(crate) fn take(&mut self) -> Option<OpenSpan> {
        match self {
            SpanSlot::Here(span) => span.take(),
            SpanSlot::Timed { .. } => self.take_timed(),
        }
    }

    #[cold]
    #[inline(never)]
    fn take_timed(&mut self) -> Option<OpenSpan> {
        match self {
            SpanSlot::Here(span) => span.take(),
            SpanSlot::Timed { span, timer } => {
                timer.abort();
                span.lock().ok().and_then(|mut span| span.take())
            }
        }
    }

    /// Counts response body bytes on the span's metric, when body sizes are counted.
    #[inline]
    pub(crate) fn add_body_bytes(&mut self, n: usize) {
        match self {
            SpanSlot::Here(Some(span)) if span.counts_body() => span.add_body_bytes(n),
            SpanSlot::Here(_) => {}
            SpanSlot::Timed { span, .. } => {
                if let Ok(mut span) = span.lock()
                    && let Some(span) = span.as_mut().filter(|s| s.counts_body())
                {
                    span.add_body_bytes(n);
                }
            }
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        match self {
            SpanSlot::Here(span) => span.is_some(),
            SpanSlot::Timed { span, .. } => span.lock().is_ok_and(|span| span.is_some()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_get_their_own_limit() {
        let limits = SpanLimits::default();
        let with = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(ct),
            );
            h
        };
        assert_eq!(
            limits.for_headers(&with("text/event-stream")),
            Some(DEFAULT_EVENT_STREAM_LIMIT)
        );
        assert_eq!(
            limits.for_headers(&with("Text/Event-Stream; charset=utf-8")),
            Some(DEFAULT_EVENT_STREAM_LIMIT)
        );
        assert_eq!(limits.for_headers(&with("text/event-streamx")), None);
        assert_eq!(limits.for_headers(&with("application/grpc")), None);
        assert_eq!(limits.for_headers(&HeaderMap::new()), None);
    }
}
