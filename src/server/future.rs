//! [`ResponseFuture`]: runs the inner service with the request's Context attached,
//! records the response on the span and hands the span to the body.

use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::layer::ServerConfig;
use crate::http::TracedBody;
use crate::http::deferred;
use crate::http::outcome::{OpenSpan, describe_error, panic_message};

pin_project! {
    /// The response future of a [`TracingService`](super::TracingService).
    ///
    /// Dropped before the inner service answered (the client hung up, an outer timeout),
    /// it ends the span with `error.type = "cancelled"`.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        // The request's Context, attached on every poll. `None` for requests the skip
        // predicate excluded.
        cx: Option<opentelemetry::Context>,
        // The span, while it records and the response has not been produced.
        span: Option<OpenSpan>,
        // A `HEAD` request: its response has no body to wait for.
        head: bool,
        // The correlation id to echo, if echoing is on.
        echo: Option<HeaderValue>,
        config: Arc<ServerConfig>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(mut span) = this.project().span.take() {
                span.record_cancelled(false);
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] future: F },
        // The inner service panicked in `call`, before returning a future.
        Panicked { message: Option<String> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        future: F,
        cx: opentelemetry::Context,
        span: Option<OpenSpan>,
        head: bool,
        echo: Option<HeaderValue>,
        config: Arc<ServerConfig>,
    ) -> Self {
        ResponseFuture {
            state: State::Running { future },
            cx: Some(cx),
            span,
            head,
            echo,
            config,
        }
    }

    pub(crate) fn untraced(
        future: F,
        echo: Option<HeaderValue>,
        config: Arc<ServerConfig>,
    ) -> Self {
        ResponseFuture {
            state: State::Running { future },
            cx: None,
            span: None,
            head: false,
            echo,
            config,
        }
    }

    pub(crate) fn panicked(
        message: String,
        cx: opentelemetry::Context,
        span: Option<OpenSpan>,
        echo: Option<HeaderValue>,
        config: Arc<ServerConfig>,
    ) -> Self {
        ResponseFuture {
            state: State::Panicked {
                message: Some(message),
            },
            cx: Some(cx),
            span,
            head: false,
            echo,
            config,
        }
    }
}

enum Outcome<T> {
    Done(T),
    Panic(String),
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
        let outcome = {
            let _attached = this.cx.as_ref().map(|cx| cx.clone().attach());
            match this.state.project() {
                StateProj::Running { future } => {
                    if this.config.catch_panic {
                        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                            Ok(Poll::Pending) => return Poll::Pending,
                            Ok(Poll::Ready(result)) => Outcome::Done(result),
                            Err(payload) => Outcome::Panic(panic_message(payload.as_ref())),
                        }
                    } else {
                        match future.poll(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(result) => Outcome::Done(result),
                        }
                    }
                }
                StateProj::Panicked { message } => {
                    Outcome::Panic(message.take().unwrap_or_default())
                }
            }
        };
        let mut span = this.span.take();
        let request_cx = this.cx.take();
        let result = match outcome {
            Outcome::Done(Ok(mut response)) => {
                if let Some(span) = &mut span {
                    span.record_response(response.status(), response.headers());
                }
                echo_correlation(&mut response, this.echo.take(), this.config);
                let status = response.status();
                deferred::answer(response.headers_mut(), request_cx.as_ref(), status);
                // Responses that carry no body end their span with the head: a peer
                // never polls their body.
                let status = response.status();
                let bodyless = *this.head
                    || status.is_informational()
                    || status == StatusCode::NO_CONTENT
                    || status == StatusCode::NOT_MODIFIED;
                if bodyless && let Some(span) = &mut span {
                    span.end_of_stream(None);
                }
                let span = if bodyless { None } else { span };
                let (parts, body) = response.into_parts();
                let body = TracedBody::limited(body, span, &this.config.limits, &parts.headers);
                let body = match request_cx {
                    Some(cx) => body.in_context(cx),
                    None => body,
                };
                Ok(Response::from_parts(parts, body))
            }
            Outcome::Done(Err(error)) => {
                if let Some(span) = &mut span {
                    let (kind, message) = describe_error(&error);
                    span.record_error(kind, &message);
                }
                Err(error)
            }
            Outcome::Panic(message) => {
                if let Some(span) = &mut span {
                    span.record_status_code(StatusCode::INTERNAL_SERVER_ERROR);
                    span.record_error("panic", &message);
                }
                drop(span);
                let mut response = Response::new(TracedBody::empty());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                echo_correlation(&mut response, this.echo.take(), this.config);
                let status = response.status();
                deferred::answer(response.headers_mut(), request_cx.as_ref(), status);
                Ok(response)
            }
        };
        Poll::Ready(result)
    }
}

fn echo_correlation<B>(
    response: &mut Response<B>,
    echo: Option<HeaderValue>,
    config: &ServerConfig,
) {
    if let Some(value) = echo {
        // Like tower-http's request id propagation: a header the handler set wins.
        if let http::header::Entry::Vacant(entry) = response
            .headers_mut()
            .entry(config.correlation_header.clone())
        {
            entry.insert(value);
        }
    }
}
