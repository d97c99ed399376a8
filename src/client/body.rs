//! [`ResponseBody`]: the response body that ends the client span when it is done.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tracing::Span;

use super::call::error_message;
use crate::outcome::observe_body_frame;

pin_project! {
    /// The response body of a traced client call.
    ///
    /// It holds the client span and ends it when the last frame has been read, when
    /// the body fails (recorded as an error, `error.type = "body"`), or when the body is
    /// dropped unread, so the span covers the whole exchange, not just the headers.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        span: Option<Span>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, span: Option<Span>) -> Self {
        ResponseBody { inner, span }
    }
}

impl<B: Body> Body for ResponseBody<B>
where
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        observe_body_frame(
            this.span,
            &frame,
            || this.inner.is_end_stream(),
            |error| error_message(error, None),
        );
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("span_open", &self.span.is_some())
            .finish_non_exhaustive()
    }
}
