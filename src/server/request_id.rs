//! [`MakeCorrelationId`]: tower-http's request ids and meshtrace's correlation ids as one id.

use http::Request;
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::context::CorrelationId;

/// A tower-http [`MakeRequestId`] that makes the request's correlation id its request id,
/// for a `SetRequestIdLayer` that runs *after* (inside) [`TracingLayer`](super::TracingLayer).
///
/// The two orders of the layers, and how they end up with one id per request:
///
/// * `SetRequestIdLayer` **before** `TracingLayer` (added after it with `Router::layer`):
///   nothing to configure; its [`RequestId`] becomes the correlation id when it is a valid
///   one (else the usual rules pick the correlation id).
/// * `SetRequestIdLayer` **after** `TracingLayer`: give it `MakeCorrelationId`, so that a
///   request without an `x-request-id` gets the correlation id as its request id (a
///   received `x-request-id` is kept, as tower-http always does). `TracingLayer` never
///   changes the request's headers itself: what the handler sees is what the client sent.
///
/// Without the `TracingLayer` in front (no correlation id in the extensions) it makes a
/// new id, as [`CorrelationId::generate`] does.
///
/// ```
/// use axum::{Router, routing::get};
/// use meshtrace::server::{MakeCorrelationId, TracingLayer};
/// use tower_http::request_id::SetRequestIdLayer;
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "ok" }))
///     // `Router::layer`: the layer added last runs first, so this one runs after ours.
///     .layer(SetRequestIdLayer::x_request_id(MakeCorrelationId))
///     .layer(TracingLayer::new());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeCorrelationId;

impl MakeRequestId for MakeCorrelationId {
    fn make_request_id<B>(&mut self, request: &Request<B>) -> Option<RequestId> {
        let id = match request.extensions().get::<CorrelationId>() {
            Some(id) => id.header_value().clone(),
            None => CorrelationId::generate().header_value().clone(),
        };
        Some(RequestId::new(id))
    }
}
