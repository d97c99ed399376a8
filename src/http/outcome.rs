//! How a request ends, recorded the same way by the server and the client: the status,
//! errors with a low-cardinality `error.type`, cancellation, and the end of the span.
//!
//! | what happened | `error.type` | span status |
//! |---|---|---|
//! | server answered 5xx | the status code | Error |
//! | server answered 4xx | - | Unset (the client's failure) |
//! | client got 4xx or 5xx | the status code | Error |
//! | the inner service returned an error | `connect`, `timeout`, ... or the error's type | Error |
//! | the handler panicked | `panic` | Error |
//! | the response body failed | `body` | Error |
//! | server: the caller went away before the response (future dropped) | `cancelled` | Error |
//! | server: the response body was dropped before its end (client hung up mid-stream) | `cancelled` | Error |
//! | client: the call was dropped before the response (an outer timeout, an abort) | `cancelled` | Error |
//! | client: the caller dropped the response body before its end | `cancelled` | as the status code says |
//!
//! The status rows are the built-in rules (HTTP here, gRPC in `classify`); a classifier
//! given to a layer replaces them. The failure rows are recorded whatever it says.
//!
//! A gRPC call dropped before any status arrived also records `rpc.grpc.status_code = 1`
//! (`CANCELLED`, on the span and the RPC metric: the v1.37 conventions make the code
//! Required), and keeps the span status of the rows above; see `crate::server`'s gRPC
//! docs for why.
//!
//! `cancelled` is one value for every drop: a layer only sees that its future or body was
//! dropped, not why (an outer `tokio::time::timeout` and a hung-up client look the same).
//! A timeout the layer does see as an error (tower's `Elapsed` or reqwest's timeout from
//! a service below it) is `timeout`. A server that could not deliver its response, and a
//! call that got no response, failed: status Error, as the conventions ask for network
//! errors. A caller that stops reading a response it already has made a choice, not a
//! failed request: the span records `cancelled` and keeps the status the response code
//! gives. In every case the span ends when the drop happens, so its duration is what the
//! exchange really took.

use std::any::Any;
use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt::{Display, Write as _};

use http::StatusCode;
use opentelemetry::trace::{Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, EXCEPTION_MESSAGE, EXCEPTION_TYPE, HTTP_RESPONSE_STATUS_CODE,
};

use super::classify::{GrpcCall, Tracked};
use crate::limits::{bound_cow, bound_owned, bounded, display_bounded};
use crate::metrics::http::{ExchangeMetric, status_text};
use crate::pages::Exchange;

/// Deepest error `source()` chain followed (chains are finite in practice; this bounds a
/// pathological one).
const MAX_ERROR_CHAIN: usize = 16;

/// `error.type` of a request whose future or body was dropped before its end.
pub(crate) const CANCELLED: &str = "cancelled";

/// Which side of the exchange a span describes; the conventions differ on what an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// The end of one request's exchange: its span while it records, its metric while
/// metrics are on (`crate::metrics`), its count on the trace pages while they are mounted
/// (`crate::pages`), or any of them; held until the request ends. Dropping it ends the
/// span, records the metric and counts the exchange, at that moment and with one clock
/// reading for all (the span started at the metric's start time, see
/// `crate::metrics::http::start_time`), so the metric's value is the span's duration and
/// the pages count that same value.
/// Whatever else still holds the request's Context (a task the handler spawned, say)
/// cannot stretch it.
///
/// A span gets one `error.type`, the first failure recorded (the SDK keeps every
/// `set_attribute`, duplicates included): a 503 whose body is then dropped stays `503`.
/// The metric keeps the same one.
#[derive(Debug)]
pub(crate) struct OpenSpan {
    cx: Context,
    side: Side,
    error_type_set: bool,
    /// Whether the span records; a span that does not is only the Context's span
    /// context, and only the metric is kept.
    recording: bool,
    /// Boxed: the exchange object moves with the response future and into the response
    /// body, and an inline metric (~200 bytes) made every request copy it on each move,
    /// metrics on or off (0.6-0.9k instructions per request in `scripts/callgrind.sh`).
    metric: Option<Box<ExchangeMetric>>,
    /// gRPC, or a custom classifier: how the response is classified (see `classify`).
    /// `None` for plain HTTP with the default rules.
    tracked: Option<Box<Tracked>>,
    /// The trace pages' count of the exchange, while they are mounted.
    observer: Option<Exchange>,
}

impl OpenSpan {
    /// The exchange of a request whose span records (`recording`) or whose metric is on;
    /// `None` when neither.
    pub(crate) fn start(
        cx: &Context,
        side: Side,
        recording: bool,
        metric: Option<ExchangeMetric>,
    ) -> Option<Self> {
        Self::start_observed(cx, side, recording, metric, None)
    }

    /// [`start`](Self::start), also counted on the trace pages (`observer`).
    pub(crate) fn start_observed(
        cx: &Context,
        side: Side,
        recording: bool,
        metric: Option<ExchangeMetric>,
        observer: Option<Exchange>,
    ) -> Option<Self> {
        (recording || metric.is_some() || observer.is_some()).then(|| OpenSpan {
            cx: cx.clone(),
            side,
            error_type_set: false,
            recording,
            metric: metric.map(Box::new),
            tracked: None,
            observer,
        })
    }

    /// Classifies the response with `tracked` (gRPC, or a custom classifier).
    #[inline]
    pub(crate) fn tracking(mut self, tracked: Option<Box<Tracked>>) -> Self {
        if tracked.is_some() {
            self.tracked = tracked;
        }
        self
    }

    /// The gRPC call this span records, if it is one: its method and status, low
    /// cardinality (for RPC metrics, at the end of the exchange).
    pub(crate) fn grpc(&self) -> Option<&GrpcCall> {
        self.tracked.as_ref().and_then(|t| t.grpc())
    }

    /// The Context that holds the span.
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// Whether the span records (else only the metric is kept).
    pub(crate) fn is_recording(&self) -> bool {
        self.recording
    }

    pub(crate) fn set_error_type(&mut self, error_type: impl Into<Cow<'static, str>>) {
        let error_type = error_type.into();
        if !self.error_type_set {
            self.error_type_set = true;
            if let Some(metric) = &mut self.metric {
                metric.set_error_type(error_type.clone());
            }
            if let Some(observer) = &mut self.observer {
                observer.set_error();
            }
            if self.recording {
                self.cx
                    .span()
                    .set_attribute(KeyValue::new(ERROR_TYPE, bound_cow(error_type)));
            }
        }
    }

    /// Records `http.response.status_code` alone.
    pub(crate) fn record_status_code(&mut self, status: StatusCode) {
        if let Some(metric) = &mut self.metric {
            metric.set_status(status.as_u16());
        }
        if self.recording {
            self.cx.span().set_attribute(KeyValue::new(
                HTTP_RESPONSE_STATUS_CODE,
                i64::from(status.as_u16()),
            ));
        }
    }

    /// Records the response head: the status, and what the classifier makes of it (plain
    /// HTTP: [`record_status`](Self::record_status)).
    #[inline]
    pub(crate) fn record_response(&mut self, status: StatusCode, headers: &http::HeaderMap) {
        match self.tracked.take() {
            None => self.record_status(status),
            Some(tracked) => self.record_tracked_response(tracked, status, headers),
        }
    }

    fn record_tracked_response(
        &mut self,
        mut tracked: Box<Tracked>,
        status: StatusCode,
        headers: &http::HeaderMap,
    ) {
        tracked.on_head(self, status, headers);
        self.tracked = Some(tracked);
    }

    /// The response body ended (not dropped, not failed), with its trailers if any: a
    /// classification left for the end is made now.
    #[inline]
    pub(crate) fn end_of_stream(&mut self, trailers: Option<&http::HeaderMap>) {
        if let Some(tracked) = self.tracked.take() {
            self.tracked_end_of_stream(tracked, trailers);
        }
    }

    fn tracked_end_of_stream(
        &mut self,
        mut tracked: Box<Tracked>,
        trailers: Option<&http::HeaderMap>,
    ) {
        tracked.on_end(self, trailers);
        self.tracked = Some(tracked);
    }

    /// Records the response status; server spans are errors on 5xx, client spans on 4xx
    /// and 5xx.
    pub(crate) fn record_status(&mut self, status: StatusCode) {
        self.record_status_code(status);
        let failed = match self.side {
            Side::Server => status.is_server_error(),
            Side::Client => status.is_client_error() || status.is_server_error(),
        };
        if failed {
            self.set_error_type(Cow::Borrowed(status_text(status)));
            if self.recording {
                // No description: the status code says it.
                self.cx.span().set_status(Status::error(""));
            }
        }
    }

    /// Marks the span as failed: `error.type`, status Error with the (bounded) message as
    /// its description, and an `exception` event with the type and message.
    pub(crate) fn record_error(&mut self, error_type: impl Into<Cow<'static, str>>, message: &str) {
        let error_type = error_type.into();
        self.set_error_type(error_type.clone());
        if !self.recording {
            return;
        }
        let message = bounded(message).to_owned();
        let span = self.cx.span();
        span.add_event(
            "exception",
            vec![
                KeyValue::new(EXCEPTION_TYPE, error_type),
                KeyValue::new(EXCEPTION_MESSAGE, message.clone()),
            ],
        );
        span.set_status(Status::error(message));
    }

    /// The request was dropped before its end; see the [module docs](self) for when that
    /// is an error. `after_response`: the response head had already been produced.
    pub(crate) fn record_cancelled(&mut self, after_response: bool) {
        self.set_error_type(Cow::Borrowed(CANCELLED));
        if let Some(mut tracked) = self.tracked.take() {
            tracked.on_cancelled(self);
            self.tracked = Some(tracked);
        }
        if self.recording && (self.side == Side::Server || !after_response) {
            self.cx.span().set_status(Status::error(""));
        }
    }

    /// Whether the response body's bytes are counted (`add_body_bytes`).
    #[inline]
    pub(crate) fn counts_body(&self) -> bool {
        self.metric
            .as_ref()
            .is_some_and(|metric| metric.counts_body())
    }

    /// Adds `n` response body bytes sent.
    pub(crate) fn add_body_bytes(&mut self, n: usize) {
        if let Some(metric) = &mut self.metric {
            metric.add_body_bytes(n);
        }
    }
}

impl Drop for OpenSpan {
    fn drop(&mut self) {
        let metric = self.metric.take();
        let observer = self.observer.take();
        if metric.is_none() && observer.is_none() {
            if self.recording {
                self.cx.span().end();
            }
            return;
        }
        // One reading ends them all: the metric's value (and the pages' count) is the
        // span's duration.
        let end = opentelemetry::time::now();
        if self.recording {
            self.cx.span().end_with_timestamp(end);
        }
        if let Some(metric) = metric {
            metric.record(end, self.grpc());
        }
        if let Some(observer) = observer {
            observer.finish(end);
        }
    }
}

/// `error`'s message followed by its sources, `a: b: c`, bounded.
pub(crate) fn error_message(
    error: &dyn Display,
    source: Option<&(dyn StdError + 'static)>,
) -> String {
    let max = crate::limits::max_value_len();
    let mut message = display_bounded(error);
    let mut next = source;
    for _ in 0..MAX_ERROR_CHAIN {
        let Some(e) = next else { break };
        if message.len() >= max {
            break;
        }
        let _ = write!(message, ": {e}");
        next = e.source();
    }
    bound_owned(message)
}

/// `timeout` or `connect` when an error in the chain says so.
pub(crate) fn classify_chain(error: &(dyn StdError + 'static)) -> Option<&'static str> {
    let mut next = Some(error);
    for _ in 0..MAX_ERROR_CHAIN {
        let e = next?;
        if e.is::<tokio::time::error::Elapsed>() || e.is::<tower::timeout::error::Elapsed>() {
            return Some("timeout");
        }
        #[cfg(feature = "hyper")]
        if let Some(hyper) = e.downcast_ref::<hyper_util::client::legacy::Error>()
            && hyper.is_connect()
        {
            // A refused connection, DNS failure, or connect timeout: which one is in the
            // chain below, looked at next.
            return Some(classify_chain_below(hyper).unwrap_or("connect"));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::TimedOut => return Some("timeout"),
                std::io::ErrorKind::ConnectionRefused => return Some("connect"),
                _ => {}
            }
        }
        next = e.source();
    }
    None
}

#[cfg(feature = "hyper")]
fn classify_chain_below(error: &(dyn StdError + 'static)) -> Option<&'static str> {
    let mut next = error.source();
    for _ in 0..MAX_ERROR_CHAIN {
        let e = next?;
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return Some("timeout");
        }
        next = e.source();
    }
    None
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// `error.type` and the message for an error of any tower client or server.
///
/// The service's error type is only known to be `Display`, so its `source()` chain can
/// be followed only when it is a `BoxError` (what tower's own middleware returns), an
/// `io::Error`, or (feature `hyper`) hyper-util's client error; other errors are typed by
/// their Rust type name, as the semantic conventions ask for exceptions.
pub(crate) fn describe_error<E: Display + 'static>(error: &E) -> (Cow<'static, str>, String) {
    let any: &dyn Any = error;
    if let Some(boxed) = any.downcast_ref::<BoxError>() {
        let dyn_error: &(dyn StdError + 'static) = boxed.as_ref();
        let kind = classify_chain(dyn_error).unwrap_or("_OTHER");
        return (kind.into(), error_message(error, dyn_error.source()));
    }
    if let Some(io) = any.downcast_ref::<std::io::Error>() {
        let kind = classify_chain(io).unwrap_or("std::io::Error");
        return (kind.into(), error_message(error, io.source()));
    }
    #[cfg(feature = "hyper")]
    if let Some(hyper) = any.downcast_ref::<hyper_util::client::legacy::Error>() {
        let kind = classify_chain(hyper).unwrap_or("hyper_util::client::legacy::Error");
        return (kind.into(), error_message(error, hyper.source()));
    }
    (
        std::any::type_name::<E>().into(),
        error_message(error, None),
    )
}

/// The message of a caught panic, bounded.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "panic"
    };
    bounded(message).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_typed() {
        let refused: BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(describe_error(&refused).0, "connect");
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(describe_error(&timed_out).0, "timeout");
        let other: BoxError = "boom".into();
        assert_eq!(describe_error(&other), ("_OTHER".into(), "boom".to_owned()));
        let (kind, message) = describe_error(&"x".repeat(100_000));
        assert_eq!(kind, "alloc::string::String");
        assert_eq!(message.len(), crate::limits::max_value_len());
    }
}
