//! [`ResponseFuture`]: records the response on the span and hands the span to the body.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use tracing::Span;

use super::body::TracedBody;
use super::layer::ServerConfig;
use crate::outcome::{MAX_MESSAGE_LEN, record_error, truncate};

pin_project! {
    /// The response future of a [`TracingService`](super::TracingService).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        // `None` for requests the skip predicate excluded.
        span: Option<Span>,
        // The extracted Context, attached on every poll when the span cannot carry it
        // (span disabled by a filter, or no tracing-opentelemetry layer).
        attach: Option<opentelemetry::Context>,
        // The correlation id to echo, if echoing is on.
        echo: Option<HeaderValue>,
        config: Arc<ServerConfig>,
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
        span: Option<Span>,
        attach: Option<opentelemetry::Context>,
        echo: Option<HeaderValue>,
        config: Arc<ServerConfig>,
    ) -> Self {
        ResponseFuture {
            state: State::Running { future },
            span,
            attach,
            echo,
            config,
        }
    }

    pub(crate) fn panicked(
        message: String,
        span: Option<Span>,
        echo: Option<HeaderValue>,
        config: Arc<ServerConfig>,
    ) -> Self {
        ResponseFuture {
            state: State::Panicked {
                message: Some(message),
            },
            span,
            attach: None,
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
    E: Display,
{
    type Output = Result<Response<TracedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = {
            let _entered = this.span.as_ref().map(Span::enter);
            let _attached = this.attach.as_ref().map(|cx| cx.clone().attach());
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
        let span = this.span.take();
        let result = match outcome {
            Outcome::Done(Ok(mut response)) => {
                if let Some(span) = &span {
                    record_status(span, response.status());
                }
                echo_correlation(&mut response, this.echo.take(), this.config);
                Ok(response.map(|body| TracedBody::new(body, span)))
            }
            Outcome::Done(Err(error)) => {
                if let Some(span) = &span {
                    record_error(span, std::any::type_name::<E>(), &error.to_string());
                }
                Err(error)
            }
            Outcome::Panic(message) => {
                if let Some(span) = &span {
                    record_panic(span, &message);
                }
                let mut response = Response::new(TracedBody::empty(span));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                echo_correlation(&mut response, this.echo.take(), this.config);
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
        if !response.headers().contains_key(&config.correlation_header) {
            response
                .headers_mut()
                .insert(config.correlation_header.clone(), value);
        }
    }
}

fn record_status(span: &Span, status: StatusCode) {
    span.record("http.response.status_code", i64::from(status.as_u16()));
    // Server spans are errors on 5xx only; a 4xx is the client's failure.
    if status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "error");
    }
}

fn record_panic(span: &Span, message: &str) {
    span.record("http.response.status_code", 500i64);
    record_error(span, "panic", message);
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "panic"
    };
    truncate(message, MAX_MESSAGE_LEN).to_owned()
}
