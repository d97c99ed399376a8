//! [`ResponseFuture`]: records the response on the client span and hands the span to
//! the body.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::http::TracedBody;
use crate::http::deferred;
use crate::http::outcome::{OpenSpan, describe_error};

pin_project! {
    /// The response future of a [`ClientTracingService`](super::ClientTracingService).
    ///
    /// Dropped before the response arrived (an outer timeout, an aborted task), it ends
    /// the span with `error.type = "cancelled"`.
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        // The client span's Context, attached on every poll.
        cx: opentelemetry::Context,
        // The span, while it records and the response has not arrived.
        span: Option<OpenSpan>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(mut span) = this.project().span.take() {
                span.record_cancelled(false);
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, cx: opentelemetry::Context, span: Option<OpenSpan>) -> Self {
        ResponseFuture { future, cx, span }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    E: Display + 'static,
{
    type Output = Result<Response<TracedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _attached = this.cx.clone().attach();
            ready!(this.future.poll(cx))
        };
        let mut span = this.span.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(span) = &mut span {
                    deferred::read_answer(span.context(), response.headers());
                    span.record_response(response.status(), response.headers());
                }
                Ok(response.map(|body| TracedBody::new(body, span)))
            }
            Err(error) => {
                if let Some(span) = &mut span {
                    let (kind, message) = describe_error(&error);
                    span.record_error(kind, &message);
                }
                Err(error)
            }
        })
    }
}
