//! [`ClientTracingService`]: `poll_ready` and `call`.

use std::fmt::Display;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::call::{OutgoingCall, Target};
use super::future::ResponseFuture;
use super::layer::ClientConfig;
use crate::http::TracedBody;

/// The service built by [`ClientTracingLayer`](super::ClientTracingLayer); see the
/// [module documentation](crate::client).
#[derive(Clone)]
pub struct ClientTracingService<S> {
    inner: S,
    config: Arc<ClientConfig>,
}

impl<S> ClientTracingService<S> {
    pub(crate) fn new(inner: S, config: Arc<ClientConfig>) -> Self {
        ClientTracingService { inner, config }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for ClientTracingService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTracingService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClientTracingService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Display + 'static,
    ResBody: http_body::Body,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let call = OutgoingCall::start(
            &self.config,
            request.method(),
            request.headers(),
            &Target::from_uri(request.uri(), request.headers()),
            request.extensions(),
        );
        call.inject(request.headers_mut());
        let future = {
            let _attached = call.cx.clone().attach();
            self.inner.call(request)
        };
        ResponseFuture::new(future, call.cx, call.span)
    }
}
