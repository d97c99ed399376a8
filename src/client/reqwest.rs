//! [`ReqwestTracingMiddleware`]: the client span and trace headers for
//! [reqwest-middleware](https://docs.rs/reqwest-middleware/0.5) clients.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Extensions;
use opentelemetry::context::FutureExt as _;
use reqwest::{Request, Response, ResponseBuilderExt as _};
use reqwest_middleware::{Middleware, Next};

use super::call::{OutgoingCall, Target};
use super::layer::ClientConfig;
use crate::http::TracedBody;
use crate::http::outcome::{OpenSpan, error_message};

/// Traces every request of a `reqwest_middleware::ClientWithMiddleware` and hands the
/// trace on (feature `reqwest`). See the [module documentation](crate::client) for
/// what is sent and recorded.
///
/// Per-request settings ([`UrlTemplate`](super::UrlTemplate),
/// [`NoPropagation`](super::NoPropagation)) go in with
/// `RequestBuilder::with_extension`.
///
/// Middleware runs in the order it was added, the first outermost. Add this one
/// *after* a retry middleware, so that every attempt gets its own client span and
/// parent-id; added before it, all attempts share one span. Redirects are followed by
/// reqwest below every middleware: a redirected call is one span, with the `url.full`
/// first asked for.
///
/// The `Response` handed back has its body wrapped so that the client span ends when
/// the body has been read to its end, fails, or is dropped; everything else about the
/// response (status, headers, URL, remote address, extensions) is unchanged.
///
/// ```
/// use meshtrace::client::{PropagationPolicy, ReqwestTracingMiddleware};
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(ReqwestTracingMiddleware::new().propagation_policy(
///         PropagationPolicy::internal_only(["*.svc.cluster.local"])?,
///     ))
///     .build();
/// # drop(client);
/// # Ok::<(), meshtrace::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ReqwestTracingMiddleware {
    config: Arc<ClientConfig>,
}

impl ReqwestTracingMiddleware {
    super::layer::client_builder_methods!("middleware");

    async fn traced(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let call = OutgoingCall::start(
            &self.config,
            request.method(),
            request.headers(),
            &Target::from_url(request.url()),
            extensions,
        );
        call.inject(request.headers_mut());
        // Ends the span as `cancelled` if this future is dropped before the response
        // (an outer `tokio::time::timeout`, an aborted task).
        let mut open = Pending(call.span);
        let result = next.run(request, extensions).with_context(call.cx).await;
        let mut span = open.0.take();
        match result {
            Ok(response) => match span {
                Some(mut span) => {
                    crate::http::deferred::read_answer(span.context(), response.headers());
                    span.record_response(response.status(), response.headers());
                    Ok(end_with_body(response, span))
                }
                None => Ok(response),
            },
            Err(error) => Err(record_failure(error, span.as_mut())),
        }
    }
}

/// The span of a call still waiting for its response.
struct Pending(Option<OpenSpan>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut span) = self.0.take() {
            span.record_cancelled(false);
        }
    }
}

/// Records a failed call. The message is taken with the URL removed: reqwest 0.13 puts
/// the full URL (query and userinfo included) in its error messages.
fn record_failure(
    error: reqwest_middleware::Error,
    span: Option<&mut OpenSpan>,
) -> reqwest_middleware::Error {
    let Some(span) = span else { return error };
    match error {
        reqwest_middleware::Error::Reqwest(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else if e.is_redirect() {
                "redirect"
            } else if e.is_body() {
                "body"
            } else if e.is_decode() {
                "decode"
            } else if e.is_builder() {
                "builder"
            } else if e.is_request() {
                "request"
            } else {
                "reqwest::Error"
            };
            let url = e.url().cloned();
            let e = e.without_url();
            span.record_error(kind, &error_message(&e, std::error::Error::source(&e)));
            let e = match url {
                Some(url) => e.with_url(url),
                None => e,
            };
            reqwest_middleware::Error::Reqwest(e)
        }
        reqwest_middleware::Error::Middleware(e) => {
            span.record_error("middleware", &error_message(&e, e.source()));
            reqwest_middleware::Error::Middleware(e)
        }
    }
}

/// Moves the span into the response body, so that it ends with the body.
///
/// reqwest 0.13 can only rebuild a `Response` from an `http::Response`; the request URL
/// survives the round trip through its `ResponseBuilderExt::url` extension. If that ever
/// fails, the span ends here, at the headers.
fn end_with_body(response: Response, span: OpenSpan) -> Response {
    let Ok(url) = http::Response::builder()
        .url(response.url().clone())
        .body(())
    else {
        return response;
    };
    let mut response: http::Response<reqwest::Body> = response.into();
    response
        .extensions_mut()
        .extend(url.into_parts().0.extensions);
    Response::from(response.map(|body| reqwest::Body::wrap(TracedBody::new(body, Some(span)))))
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// Written out instead of through `#[async_trait]` (what reqwest-middleware 0.5 uses to
// declare the trait) so that the crate does not depend on async-trait; this is the
// signature that macro expands to.
impl Middleware for ReqwestTracingMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        req: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> BoxFuture<'async_trait, reqwest_middleware::Result<Response>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.traced(req, extensions, next))
    }
}
