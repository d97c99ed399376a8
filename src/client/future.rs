//! [`ResponseFuture`]: records the response on the client span and hands the span to
//! the body.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use tracing::Span;

use super::body::ResponseBody;
use super::call::{describe_error, record_error, record_status};

pin_project! {
    /// The response future of a [`ClientTracingService`](super::ClientTracingService).
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        // Taken when the response (or error) arrives.
        span: Option<Span>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, span: Span) -> Self {
        ResponseFuture {
            future,
            span: Some(span),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Display + 'static,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.as_ref().map(Span::enter);
            ready!(this.future.poll(cx))
        };
        let span = this.span.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(span) = &span {
                    record_status(span, response.status());
                }
                Ok(response.map(|body| ResponseBody::new(body, span)))
            }
            Err(error) => {
                if let Some(span) = &span {
                    let (kind, message) = describe_error(&error);
                    record_error(span, kind, &message);
                }
                Err(error)
            }
        })
    }
}
