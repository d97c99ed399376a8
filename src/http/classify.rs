//! What counts as a failed request: [`ClassifyResponse`], the hook that decides it from
//! the response head and, for streaming protocols, from the end of the stream.
//!
//! Every traced exchange (server and client spans alike) is classified twice at most:
//!
//! 1. when the **response head** arrives, [`classify_response`](ClassifyResponse::classify_response)
//!    sees the status and the headers and answers [`Classification::Success`],
//!    [`Classification::Failure`] (with the `error.type` to record), or
//!    [`Classification::AtEnd`]: the head does not tell;
//! 2. after `AtEnd` only, when the **response body ends**,
//!    [`classify_end`](ClassifyResponse::classify_end) sees the trailers (`None` when the
//!    body ended without any) and decides.
//!
//! A failure records `error.type` and span status Error; a success records nothing. What
//! the layers record whatever a classifier says is not its business: the status code
//! (`http.response.status_code`, and `rpc.grpc.status_code` for gRPC), a failed or dropped
//! body (`error.type = "body"` / `"cancelled"`, see [the outcome table](crate::server#what-each-outcome-records)),
//! an error of the inner service. A body dropped before its end is never classified (a gRPC
//! call dropped before its status records `rpc.grpc.status_code = 1`, `CANCELLED`; see
//! [the outcome table](crate::server#what-each-outcome-records)).
//!
//! The [`DefaultClassifier`] is used unless a layer is given another one with
//! `classifier(..)` ([`TracingLayer`](crate::server::TracingLayer::classifier),
//! [`ClientTracingLayer`](crate::client::ClientTracingLayer::classifier), and the reqwest
//! middleware). It picks the rules of the [`Protocol`] of each request:
//!
//! | protocol | server span fails on | client span fails on | `error.type` |
//! |---|---|---|---|
//! | HTTP | 5xx | 4xx and 5xx | the status code (`503`) |
//! | gRPC | `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS` | every code but `OK` | the code's name (`UNAVAILABLE`) |
//!
//! A gRPC status comes from the response headers (a trailers-only response, as servers
//! send errors that precede any message) or else from the trailers at the end of the body.
//! A gRPC response without any status is classified as a gRPC client reports it: a non-200
//! head by gRPC's HTTP-to-gRPC mapping (a proxy's `503` is `UNAVAILABLE`), a body that ends
//! without a status as `INTERNAL`.
//!
//! # A classifier of your own
//!
//! For a protocol of your own, say an API that answers `200` with an `x-outcome: failed`
//! header, and a streaming one whose failures arrive in an `x-stream-status` trailer, and
//! HTTP's rules for everything else:
//!
//! ```
//! use http::{HeaderMap, StatusCode};
//! use meshtrace::classify::{Classification, ClassifyResponse, DefaultClassifier, Exchange};
//! use meshtrace::server::TracingLayer;
//!
//! struct Outcomes;
//!
//! impl ClassifyResponse for Outcomes {
//!     fn classify_response(
//!         &self,
//!         exchange: &Exchange,
//!         status: StatusCode,
//!         headers: &HeaderMap,
//!     ) -> Classification {
//!         if headers.get("x-outcome").is_some_and(|v| v == "failed") {
//!             return Classification::failure("outcome_failed");
//!         }
//!         if headers.get("content-type").is_some_and(|v| v == "application/x-my-stream") {
//!             return Classification::AtEnd;
//!         }
//!         DefaultClassifier.classify_response(exchange, status, headers)
//!     }
//!
//!     fn classify_end(&self, exchange: &Exchange, trailers: Option<&HeaderMap>) -> Classification {
//!         match trailers.and_then(|t| t.get("x-stream-status")) {
//!             Some(v) if v != "ok" => Classification::failure("stream_failed"),
//!             Some(_) => Classification::Success,
//!             None => DefaultClassifier.classify_end(exchange, trailers),
//!         }
//!     }
//! }
//!
//! let layer = TracingLayer::new().classifier(Outcomes);
//!
//! // A closure classifies the head alone (and nothing fails at the end):
//! let layer = TracingLayer::new().classifier(|_: &Exchange, status: StatusCode, _: &HeaderMap| {
//!     if status == StatusCode::TOO_MANY_REQUESTS {
//!         Classification::failure("throttled")
//!     } else {
//!         Classification::Success
//!     }
//! });
//! # drop(layer);
//! ```
//!
//! `error.type` should have low cardinality (a fixed set of values, never request data);
//! it is bounded like every recorded value.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use opentelemetry::trace::{Status, TraceContextExt as _};

use super::grpc::{self, Code, GrpcMethod};
use super::outcome::{OpenSpan, Side};
use crate::limits::bound_cow;

/// Decides whether a response is a failure; see the [module documentation](self).
///
/// Implemented for closures `Fn(&Exchange, StatusCode, &HeaderMap) -> Classification`
/// (which classify the head alone).
pub trait ClassifyResponse: Send + Sync + 'static {
    /// The response head arrived: its status and headers.
    fn classify_response(
        &self,
        exchange: &Exchange,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Classification;

    /// The response body ended, after [`classify_response`](Self::classify_response)
    /// answered [`Classification::AtEnd`]: its trailers, or `None` when it had none. The
    /// default says [`Classification::Success`].
    fn classify_end(&self, exchange: &Exchange, trailers: Option<&HeaderMap>) -> Classification {
        let _ = (exchange, trailers);
        Classification::Success
    }
}

impl<F> ClassifyResponse for F
where
    F: Fn(&Exchange, StatusCode, &HeaderMap) -> Classification + Send + Sync + 'static,
{
    fn classify_response(
        &self,
        exchange: &Exchange,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Classification {
        self(exchange, status, headers)
    }
}

/// What a classifier says about a response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Classification {
    /// Not a failure: nothing is recorded.
    Success,
    /// A failure: span status Error and this `error.type` (low cardinality).
    Failure(Cow<'static, str>),
    /// The head does not tell (a streaming protocol): decide when the body ends, with
    /// [`ClassifyResponse::classify_end`]. From `classify_end` it means
    /// [`Success`](Self::Success).
    AtEnd,
}

impl Classification {
    /// A failure with this `error.type`.
    pub fn failure(error_type: impl Into<Cow<'static, str>>) -> Self {
        Classification::Failure(error_type.into())
    }
}

/// The exchange being classified: which side records it, and its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    side: Side,
    protocol: Protocol,
}

impl Exchange {
    pub(crate) fn new(side: Side, protocol: Protocol) -> Self {
        Exchange { side, protocol }
    }

    /// Whether this is a server span (an incoming request, [`TracingLayer`](crate::server::TracingLayer)).
    pub fn is_server(&self) -> bool {
        self.side == Side::Server
    }

    /// Whether this is a client span (an outgoing call).
    pub fn is_client(&self) -> bool {
        self.side == Side::Client
    }

    /// The protocol the request speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
}

/// The protocol of a request, as the layers recognise it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// Plain HTTP.
    Http,
    /// gRPC: a `POST` with `content-type: application/grpc` (or `application/grpc+proto`,
    /// ...). Not gRPC-Web, whose status travels inside the body.
    Grpc,
}

/// The built-in rules (see the [module documentation](self)): HTTP's or gRPC's, by the
/// request's [`Protocol`]. A classifier of your own can fall back on it.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl ClassifyResponse for DefaultClassifier {
    fn classify_response(
        &self,
        exchange: &Exchange,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Classification {
        match exchange.protocol {
            Protocol::Http => http_classification(exchange.side, status),
            Protocol::Grpc => match grpc_code_at_head(status, headers) {
                Some(code) => grpc_classification(exchange.side, code),
                None => Classification::AtEnd,
            },
        }
    }

    fn classify_end(&self, exchange: &Exchange, trailers: Option<&HeaderMap>) -> Classification {
        match exchange.protocol {
            Protocol::Http => Classification::Success,
            Protocol::Grpc => grpc_classification(exchange.side, grpc_code_at_end(trailers)),
        }
    }
}

/// HTTP's rule: server spans fail on 5xx, client spans on 4xx and 5xx.
pub(crate) fn http_failed(side: Side, status: StatusCode) -> bool {
    match side {
        Side::Server => status.is_server_error(),
        Side::Client => status.is_client_error() || status.is_server_error(),
    }
}

fn http_classification(side: Side, status: StatusCode) -> Classification {
    if http_failed(side, status) {
        Classification::Failure(Cow::Owned(status.as_str().to_owned()))
    } else {
        Classification::Success
    }
}

fn grpc_classification(side: Side, code: Code) -> Classification {
    let failed = match side {
        Side::Server => code.is_server_error(),
        Side::Client => code.is_client_error(),
    };
    if failed {
        Classification::Failure(Cow::Borrowed(code.name()))
    } else {
        Classification::Success
    }
}

/// The gRPC status a response head gives: its `grpc-status` (trailers-only), else for a
/// non-200 head what a gRPC client makes of the HTTP status; `None` when the status is
/// to come in the trailers.
fn grpc_code_at_head(status: StatusCode, headers: &HeaderMap) -> Option<Code> {
    Code::from_headers(headers)
        .or_else(|| (status != StatusCode::OK).then(|| Code::from_http(status)))
}

/// The gRPC status at the end of a body: the trailers' `grpc-status`, else `INTERNAL` (a
/// stream that ends without a status, as gRPC's clients report it).
fn grpc_code_at_end(trailers: Option<&HeaderMap>) -> Code {
    trailers
        .and_then(Code::from_headers)
        .unwrap_or(Code::INTERNAL)
}

/// A classifier given to a layer, shared by every request.
#[derive(Clone)]
pub(crate) struct Classifier(pub(crate) Arc<dyn ClassifyResponse>);

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Classifier(..)")
    }
}

/// What a gRPC span knows about its call: the method and, once known, the status. It is
/// also what RPC metrics record at the end of the exchange ([`GrpcCall::service`],
/// [`GrpcCall::method`], [`GrpcCall::code`]).
#[derive(Debug)]
pub(crate) struct GrpcCall {
    method: GrpcMethod,
    code: Option<Code>,
    /// The server did not know the method (`UNIMPLEMENTED`): named `_OTHER` from then on.
    other: bool,
}

/// Read where the exchange ends, for the RPC metrics (`crate::metrics::http`).
impl GrpcCall {
    /// `rpc.service`, low cardinality: `None` for a malformed path or an unknown method.
    pub(crate) fn service(&self) -> Option<&str> {
        if self.other {
            return None;
        }
        self.method.parts().map(|(service, _)| service)
    }

    /// `rpc.method`, low cardinality: `_OTHER` for a malformed path or an unknown method.
    pub(crate) fn method(&self) -> &str {
        match self.method.parts() {
            Some((_, method)) if !self.other => method,
            _ => grpc::OTHER,
        }
    }

    /// `rpc.grpc.status_code`, once known.
    pub(crate) fn code(&self) -> Option<i64> {
        self.code.map(Code::value)
    }
}

/// How one exchange is classified, held by its [`OpenSpan`] from the head to the end of
/// the body. Plain HTTP with the default classifier has none (the span records its status
/// as it always did).
pub(crate) struct Tracked {
    exchange: Exchange,
    classifier: Option<Classifier>,
    grpc: Option<GrpcCall>,
    at_end: bool,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("exchange", &self.exchange)
            .field("grpc", &self.grpc)
            .field("at_end", &self.at_end)
            .finish_non_exhaustive()
    }
}

impl Tracked {
    /// `None` for plain HTTP with the default classifier.
    #[inline]
    pub(crate) fn new(
        side: Side,
        grpc: Option<GrpcMethod>,
        classifier: Option<&Classifier>,
    ) -> Option<Box<Self>> {
        if grpc.is_none() && classifier.is_none() {
            return None;
        }
        let protocol = if grpc.is_some() {
            Protocol::Grpc
        } else {
            Protocol::Http
        };
        Some(Box::new(Tracked {
            exchange: Exchange::new(side, protocol),
            classifier: classifier.cloned(),
            grpc: grpc.map(|method| GrpcCall {
                method,
                code: None,
                other: false,
            }),
            at_end: false,
        }))
    }

    pub(crate) fn grpc(&self) -> Option<&GrpcCall> {
        self.grpc.as_ref()
    }

    fn classifier(&self) -> &dyn ClassifyResponse {
        match &self.classifier {
            Some(custom) => custom.0.as_ref(),
            None => &DefaultClassifier,
        }
    }

    /// The response head: the gRPC status it carries, then the classification.
    pub(crate) fn on_head(&mut self, span: &mut OpenSpan, status: StatusCode, headers: &HeaderMap) {
        span.record_status_code(status);
        if let Some(grpc) = &mut self.grpc
            && let Some(code) = grpc_code_at_head(status, headers)
        {
            record_grpc_code(grpc, span, code);
        }
        let classification = self
            .classifier()
            .classify_response(&self.exchange, status, headers);
        self.at_end = classification == Classification::AtEnd;
        apply(span, classification);
    }

    /// The end of the body, with its trailers if any.
    pub(crate) fn on_end(&mut self, span: &mut OpenSpan, trailers: Option<&HeaderMap>) {
        if let Some(grpc) = &mut self.grpc
            && grpc.code.is_none()
        {
            record_grpc_code(grpc, span, grpc_code_at_end(trailers));
        }
        if std::mem::take(&mut self.at_end) {
            let classification = self.classifier().classify_end(&self.exchange, trailers);
            apply(span, classification);
        }
    }

    /// The exchange was dropped before its end: a gRPC call without a status yet is
    /// `CANCELLED`, the code a gRPC client or server reports for a call its peer or its
    /// caller gave up (v1.37 makes `rpc.grpc.status_code` Required). Nothing is classified:
    /// the span's status follows the outcome table (`crate::http::outcome`), as for HTTP.
    pub(crate) fn on_cancelled(&mut self, span: &mut OpenSpan) {
        if let Some(grpc) = &mut self.grpc
            && grpc.code.is_none()
        {
            record_grpc_code(grpc, span, Code::CANCELLED);
        }
    }
}

/// `rpc.grpc.status_code`; an `UNIMPLEMENTED` answer means the method is unknown to the
/// server: the span is renamed `_OTHER` and records the method as `rpc.method_original`
/// (its `rpc.service` and `rpc.method`, set when it started so that the sampler could read
/// them, stay: the SDK cannot replace an attribute).
fn record_grpc_code(grpc: &mut GrpcCall, span: &mut OpenSpan, code: Code) {
    grpc.code = Some(code);
    let unknown = code == Code::UNIMPLEMENTED && grpc.method.parts().is_some();
    grpc.other |= unknown;
    if !span.is_recording() {
        return;
    }
    let otel = span.context().span();
    otel.set_attribute(code.attribute());
    if unknown {
        otel.update_name(grpc::OTHER);
        otel.set_attribute(grpc::method_original(&grpc.method));
    }
}

fn apply(span: &mut OpenSpan, classification: Classification) {
    if let Classification::Failure(error_type) = classification {
        span.set_error_type(bound_cow(error_type).into_owned());
        if span.is_recording() {
            // No description: the status code says it.
            span.context().span().set_status(Status::error(""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, http::HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn default_rules() {
        let server_grpc = Exchange::new(Side::Server, Protocol::Grpc);
        let client_grpc = Exchange::new(Side::Client, Protocol::Grpc);
        let server_http = Exchange::new(Side::Server, Protocol::Http);
        let client_http = Exchange::new(Side::Client, Protocol::Http);
        let c = DefaultClassifier;
        let ok = StatusCode::OK;
        let fail = |t: &'static str| Classification::failure(t);
        // (exchange, status, head, trailers at the end, head says, end says)
        type Case = (
            Exchange,
            StatusCode,
            &'static [(&'static str, &'static str)],
            Option<&'static [(&'static str, &'static str)]>,
            Classification,
            Option<Classification>,
        );
        let cases: Vec<Case> = vec![
            (
                server_http,
                StatusCode::NOT_FOUND,
                &[],
                None,
                Classification::Success,
                None,
            ),
            (
                client_http,
                StatusCode::NOT_FOUND,
                &[],
                None,
                fail("404"),
                None,
            ),
            (
                server_http,
                StatusCode::BAD_GATEWAY,
                &[],
                None,
                fail("502"),
                None,
            ),
            // trailers-only
            (
                server_grpc,
                ok,
                &[("grpc-status", "5")],
                None,
                Classification::Success,
                None,
            ),
            (
                client_grpc,
                ok,
                &[("grpc-status", "5")],
                None,
                fail("NOT_FOUND"),
                None,
            ),
            (
                server_grpc,
                ok,
                &[("grpc-status", "14")],
                None,
                fail("UNAVAILABLE"),
                None,
            ),
            (
                server_grpc,
                ok,
                &[("grpc-status", "0")],
                None,
                Classification::Success,
                None,
            ),
            // status in the trailers
            (
                server_grpc,
                ok,
                &[],
                Some(&[("grpc-status", "0")]),
                Classification::AtEnd,
                Some(Classification::Success),
            ),
            (
                server_grpc,
                ok,
                &[],
                Some(&[("grpc-status", "13")]),
                Classification::AtEnd,
                Some(fail("INTERNAL")),
            ),
            (
                server_grpc,
                ok,
                &[],
                Some(&[("grpc-status", "3")]),
                Classification::AtEnd,
                Some(Classification::Success),
            ),
            (
                client_grpc,
                ok,
                &[],
                Some(&[("grpc-status", "3")]),
                Classification::AtEnd,
                Some(fail("INVALID_ARGUMENT")),
            ),
            (
                client_grpc,
                ok,
                &[],
                None,
                Classification::AtEnd,
                Some(fail("INTERNAL")),
            ),
            // a proxy's answer to a gRPC call
            (
                client_grpc,
                StatusCode::SERVICE_UNAVAILABLE,
                &[],
                None,
                fail("UNAVAILABLE"),
                None,
            ),
            (
                server_grpc,
                StatusCode::UNAUTHORIZED,
                &[],
                None,
                Classification::Success,
                None,
            ),
        ];
        for (exchange, status, head, trailers, at_head, at_end) in cases {
            let said = c.classify_response(&exchange, status, &headers(head));
            assert_eq!(said, at_head, "{exchange:?} {status} {head:?}");
            if let Some(at_end) = at_end {
                let trailers = trailers.map(headers);
                assert_eq!(
                    c.classify_end(&exchange, trailers.as_ref()),
                    at_end,
                    "{exchange:?} {trailers:?}"
                );
            }
        }
    }
}
