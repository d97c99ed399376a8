//! [`TracedBody`]: the response body that ends the server span when it is done.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tracing::Span;

pin_project! {
    /// The response body of a [`TracingService`](super::TracingService).
    ///
    /// It holds the server span and ends it when the last frame has been sent, when the
    /// body fails, or when the body is dropped (client gone), so streamed responses are
    /// timed to their end, not to their headers.
    pub struct TracedBody<B> {
        #[pin]
        kind: Kind<B>,
        span: Option<Span>,
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

impl<B> TracedBody<B> {
    pub(crate) fn new(body: B, span: Option<Span>) -> Self {
        TracedBody {
            kind: Kind::Inner { body },
            span,
        }
    }

    pub(crate) fn empty(span: Option<Span>) -> Self {
        TracedBody {
            kind: Kind::Empty,
            span,
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
                let frame = ready!(body.as_mut().poll_frame(cx));
                crate::outcome::observe_body_frame(
                    this.span,
                    &frame,
                    || body.is_end_stream(),
                    |error| error.to_string(),
                );
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
            .field("span_open", &self.span.is_some())
            .finish_non_exhaustive()
    }
}
