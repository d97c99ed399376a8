//! [`TracedBody`]: the response body that ends its request's span when it is done.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::long_lived::{SpanLimits, SpanSlot};
use super::outcome::OpenSpan;

pin_project! {
    /// The response body of a traced request, on the server
    /// ([`TracingService`](crate::server::TracingService)) and the client
    /// ([`ClientTracingService`](crate::client::ClientTracingService), reqwest).
    ///
    /// It holds the request's span (and its metric, see [`crate::metrics`]) and ends it
    /// when the last frame has passed (trailers included: a gRPC status in the trailers is
    /// recorded then), when the body fails (`error.type = "body"`), or when the body is
    /// dropped before its end
    /// (`error.type = "cancelled"`; see [the outcome table](crate::server#what-each-outcome-records)),
    /// so a streamed response is timed to its end, not to its headers. A
    /// `text/event-stream` response's span ends at a limit at the latest (see
    /// [`TracingLayer::event_stream_span_limit`](crate::server::TracingLayer::event_stream_span_limit)).
    /// Frames pass through unchanged.
    pub struct TracedBody<B> {
        #[pin]
        kind: Kind<B>,
        span: SpanSlot,
        // Server side: the request's Context, attached while the body is polled, so that
        // a streaming body that logs (its producer runs in the connection's task) logs
        // with the request's ids.
        cx: Option<opentelemetry::Context>,
    }

    impl<B> PinnedDrop for TracedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Still open: the body had more to send (an ended body gives its span up at
            // its last frame). Dropping the span ends it, now.
            if let Some(mut span) = this.span.take() {
                span.record_cancelled(true);
            }
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        // The body of the `500` response that replaces a panic: empty, so it works for
        // any `B::Data`.
        Empty,
    }
}

/// Whether nothing is left to send: the body says so, or says it has no bytes left.
fn body_is_over<B: Body + ?Sized>(body: &B) -> bool {
    body.is_end_stream() || body.size_hint().upper() == Some(0)
}

impl<B: Body> TracedBody<B> {
    /// A body that ends `span` (if any) when it is done; at once when it has nothing to
    /// send (a peer may never poll such a body).
    pub(crate) fn new(body: B, span: Option<OpenSpan>) -> Self {
        let span = match span {
            Some(mut span) if body_is_over(&body) => {
                span.end_of_stream(None);
                None
            }
            span => span,
        };
        TracedBody {
            kind: Kind::Inner { body },
            span: SpanSlot::Here(span),
            cx: None,
        }
    }

    /// [`new`](Self::new) for a server response: a body of unknown length (a stream) that
    /// `limits` limit for these response `headers` has its span ended at the limit at the
    /// latest. One `size_hint` call serves both checks.
    pub(crate) fn limited(
        body: B,
        span: Option<OpenSpan>,
        limits: &SpanLimits,
        headers: &http::HeaderMap,
    ) -> Self {
        // A span that does not record (most requests, when sampling) costs nothing here.
        let (span, limit) = match span {
            None => (None, None),
            Some(mut span) => {
                let hint = body.size_hint();
                if body.is_end_stream() || hint.upper() == Some(0) {
                    span.end_of_stream(None);
                    (None, None)
                } else if hint.exact().is_none() {
                    (Some(span), limits.for_headers(headers))
                } else {
                    (Some(span), None)
                }
            }
        };
        let slot = SpanSlot::Here(span);
        TracedBody {
            kind: Kind::Inner { body },
            span: match limit {
                Some(limit) => slot.limit(limit),
                None => slot,
            },
            cx: None,
        }
    }

    /// Attaches `cx` while the body is polled.
    pub(crate) fn in_context(mut self, cx: opentelemetry::Context) -> Self {
        self.cx = Some(cx);
        self
    }
}

impl<B> TracedBody<B> {
    /// An empty body (the `500` that replaces a panic); its span was ended already.
    pub(crate) fn empty() -> Self {
        TracedBody {
            kind: Kind::Empty,
            span: SpanSlot::Here(None),
            cx: None,
        }
    }
}

impl<B: Body> Body for TracedBody<B>
where
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Inner { mut body } => {
                let frame = {
                    let _attached = this.cx.as_ref().map(|cx| cx.clone().attach());
                    ready!(body.as_mut().poll_frame(cx))
                };
                let over = match &frame {
                    None => true,
                    Some(Err(error)) => {
                        if let Some(mut span) = this.span.take() {
                            span.record_error("body", &error.to_string());
                        }
                        false
                    }
                    // Trailers are the last frame.
                    Some(Ok(frame)) if frame.is_trailers() => {
                        if let Some(mut span) = this.span.take() {
                            span.end_of_stream(frame.trailers_ref());
                        }
                        true
                    }
                    // A peer may stop polling once the body says it is over.
                    Some(Ok(frame)) => {
                        this.span
                            .add_body_bytes(frame.data_ref().map_or(0, Buf::remaining));
                        body.is_end_stream()
                    }
                };
                if over {
                    // Nothing of the body runs any more: end the span now and let the
                    // request's Context go (a last poll for `None` need not attach it).
                    if let Some(mut span) = this.span.take() {
                        span.end_of_stream(None);
                    }
                    this.cx.take();
                }
                Poll::Ready(frame)
            }
            KindProj::Empty => {
                this.span.take();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}

impl<B> std::fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedBody")
            .field("span_open", &self.span.is_open())
            .finish_non_exhaustive()
    }
}
