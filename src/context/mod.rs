//! W3C Trace Context Level 2 and W3C Baggage propagation, and the correlation id.
//!
//! [`extract`] reads `traceparent`, `tracestate` and `baggage` from request headers into a
//! fresh [`Context`]; [`inject`] writes them for the span in a context. [`W3cPropagator`] does
//! the same behind OpenTelemetry's `TextMapPropagator`. The parsers ([`TraceParent::parse`],
//! [`parse_tracestate`], [`parse_baggage`], [`CorrelationId::parse`]) accept any bytes without
//! panicking and bound their work on hostile input.
//!
//! ```
//! use meshtrace::context::{self, ContextExt};
//! use http::{HeaderMap, HeaderValue};
//! use opentelemetry::baggage::BaggageExt;
//! use opentelemetry::trace::TraceContextExt;
//!
//! let mut incoming = HeaderMap::new();
//! incoming.insert("traceparent", HeaderValue::from_static(
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"));
//! incoming.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE,foo@bar@baz=1"));
//! incoming.insert("baggage", HeaderValue::from_static("user=alice,node=DF%2028;zone"));
//!
//! let cx = context::extract(&incoming);
//! let parent = cx.span().span_context().clone();
//! assert!(parent.is_remote() && parent.is_sampled());
//! assert!(cx.is_trace_random()); // flags 0x03: sampled + random
//! assert_eq!(cx.baggage().get("node").map(|v| v.as_str()), Some("DF 28"));
//!
//! // Forward to the next hop (a real client would inject a context holding its own span).
//! let mut outgoing = HeaderMap::new();
//! context::inject(&cx, &mut outgoing);
//! assert_eq!(outgoing["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03");
//! assert_eq!(outgoing["tracestate"], "congo=t61rcWkgMzE,foo@bar@baz=1");
//! assert_eq!(outgoing["baggage"], "node=DF%2028;zone,user=alice");
//! ```
//!
//! # Why not the SDK's `TraceContextPropagator`
//!
//! `opentelemetry_sdk` 0.33's `TraceContextPropagator` is not W3C-conformant: it accepts short or
//! long version, flags and parent-id fields; accepts empty tracestate values; truncates a
//! tracestate of more than 32 members instead of discarding it; validates keys with an outdated
//! grammar; masks the trace flags to the sampled bit, dropping the Level 2 random flag (0x02);
//! and opentelemetry-http's `HeaderExtractor::get` reads only the first of repeated headers.
//! This module fixes all of these and still plugs into the global API via [`W3cPropagator`].
//!
//! # Decisions where the specs leave room
//!
//! * Leading/trailing spaces and tabs around a `traceparent` value are ignored (RFC 9110 OWS
//!   is not part of a field value); any other whitespace makes it invalid.
//! * A repeated `traceparent` header is invalid, even when the copies are equal: no parent,
//!   and the `tracestate` is ignored.
//! * Only the sampled (0x01) and random (0x02) flags are kept; other bits are dropped on extract
//!   and never sent.
//! * The OpenTelemetry SDK (0.33) gives root spans and dropped spans `TraceFlags::default()`, so
//!   the random flag would be lost. [`extract`] therefore puts a [`TraceRandom`] marker in the
//!   context when the parent had the random flag, or when there is no valid parent (the new
//!   root's id then comes from the SDK's random id generator), and [`inject`] sets 0x02 when
//!   the marker is present.
//! * [`inject`] with no valid span in the context leaves `traceparent` and `tracestate` in the
//!   header map untouched; with a valid span it replaces both (removing a stale `tracestate`
//!   when there is none to send). An empty baggage leaves an existing `baggage` header alone.
//! * `tracestate` follows the current W3C key grammar (`@` anywhere after the first character),
//!   and a repeated key keeps its first occurrence instead of discarding the header (see
//!   [`parse_tracestate`]). `opentelemetry` 0.33's `TraceState` refuses some of these keys
//!   (`foo@@bar`, `foo@bar@baz`, more than 13 characters after an `@`), so when a received
//!   tracestate has one, [`extract`] also keeps every received member, in order, in a private
//!   value of the returned [`Context`] (nothing is added otherwise). [`inject`] merges them
//!   back for a span of the same trace: members the span's `TraceState` added or changed
//!   (e.g. the sampler's `ot`) first, then the received members in their order, without the
//!   ones it changed or deleted. Contexts derived from the request's keep the value, so
//!   outgoing calls forward every member; a span of another trace never gets them.
//! * An `ot` entry's `rv` sub-values (OpenTelemetry's explicit randomness) that are not exactly
//!   14 lowercase hex digits are removed when the tracestate is extracted, so neither the
//!   sampler nor the next hop sees them; the rest of the `ot` value keeps its order, and an
//!   `ot` entry left empty is removed. Other sub-values (`th` included) are the sampler's
//!   to judge.

mod baggage;
mod correlation;
mod future;
mod propagator;
mod traceparent;
mod tracestate;

pub use baggage::{MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS, format_baggage, parse_baggage};
pub use correlation::{
    CorrelationId, CorrelationSource, DEFAULT_CORRELATION_HEADER, FALLBACK_CORRELATION_HEADER,
    MAX_CORRELATION_ID_LEN,
};
pub use future::{InCurrentTrace, TraceFutureExt};
pub use propagator::W3cPropagator;
pub use traceparent::{TraceParent, TraceParentError};
pub use tracestate::{
    MAX_TRACESTATE_INPUT, MAX_TRACESTATE_OUTPUT, TraceStateMembers, format_tracestate,
    parse_tracestate,
};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceId, TraceState};
use std::borrow::Cow;
use traceparent::KNOWN_FLAGS;
use tracestate::{merge_received, otel_holds_key, parse_members, trace_state_of};

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
const BAGGAGE: &str = "baggage";
// Looking a header up by `&str` parses and validates the name on every call
// (http 1.x `HdrName::from_bytes`); a prepared `HeaderName` skips that.
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);
const TRACESTATE_HEADER: HeaderName = HeaderName::from_static(TRACESTATE);
const BAGGAGE_HEADER: HeaderName = HeaderName::from_static(BAGGAGE);

/// The W3C Level 2 random trace-id flag.
pub const RANDOM_FLAG: TraceFlags = TraceFlags::new(0x02);

/// Context marker: the trace's trace-id low 56 bits are random (W3C Level 2 `random` flag 0x02).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceRandom;

/// Read traceparent, tracestate, baggage from request headers; base is `Context::new()` (never `Context::current()`).
///
/// All values of repeated headers are seen (`HeaderMap::get_all`), unlike opentelemetry-http's
/// `HeaderExtractor::get`.
pub fn extract(headers: &HeaderMap) -> Context {
    extract_parts(
        &Context::new(),
        headers
            .get_all(&TRACEPARENT_HEADER)
            .iter()
            .map(HeaderValue::as_bytes),
        headers
            .get_all(&TRACESTATE_HEADER)
            .iter()
            .map(HeaderValue::as_bytes),
        headers
            .get_all(&BAGGAGE_HEADER)
            .iter()
            .map(HeaderValue::as_bytes),
    )
}

/// Write traceparent, tracestate, baggage for the span in `cx` into `headers` (replacing existing ones).
///
/// Never panics; a value that cannot be encoded is skipped. The flags written are the span's
/// sampled and random bits, plus the random bit when `cx` holds [`TraceRandom`].
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    inject_parts(cx, |name, value| {
        let name = HeaderName::from_static(name);
        match value.and_then(|v| HeaderValue::try_from(v).ok()) {
            Some(value) => {
                headers.insert(name, value);
            }
            // Only `tracestate` can be absent while a span is present; removing the stale one
            // keeps it from being paired with our new `traceparent`.
            None if name == TRACESTATE => {
                headers.remove(name);
            }
            None => {}
        }
    });
}

/// Context value: every tracestate member received for `trace_id`, in order, set by
/// extraction only when some of them cannot live in the span context's `TraceState`
/// (opentelemetry 0.33 refuses keys the current W3C grammar allows, e.g. `foo@@bar`).
/// [`inject`] puts them back for spans of the same trace. Contexts derived from the request's
/// (child spans, `with_value`) keep it, so outgoing calls forward the members too.
#[derive(Debug)]
struct ReceivedTraceState {
    trace_id: TraceId,
    members: TraceStateMembers,
}

/// Reads meshtrace values from a [`Context`].
pub trait ContextExt {
    /// The correlation id the server layer stored in this context, if any.
    fn correlation_id(&self) -> Option<&CorrelationId>;
    /// Whether this context carries the [`TraceRandom`] marker.
    fn is_trace_random(&self) -> bool;
}

impl ContextExt for Context {
    fn correlation_id(&self) -> Option<&CorrelationId> {
        match self.get::<RequestMeta>() {
            Some(meta) => Some(&meta.correlation),
            None => self.get::<CorrelationId>(),
        }
    }

    fn is_trace_random(&self) -> bool {
        self.get::<TraceRandom>().is_some() || self.get::<RequestMeta>().is_some_and(|m| m.random)
    }
}

/// What the server layer keeps about a request in its Context, as one value: every
/// `Context::with_value` copies the Context's value map, so one value costs less than a
/// correlation id and a marker apart. Read it through [`ContextExt`].
#[derive(Clone, Debug)]
pub(crate) struct RequestMeta {
    pub(crate) correlation: CorrelationId,
    /// The trace id's low 56 bits are random (see [`TraceRandom`]).
    pub(crate) random: bool,
}

/// The parent Context of a request at the server edge: the extracted trace context and
/// baggage (with `Context::new()` as the base) and the request's correlation id.
pub(crate) fn extract_request(headers: &HeaderMap, correlation: CorrelationId) -> Context {
    let parsed = parse_parts(
        &Context::new(),
        headers
            .get_all(&TRACEPARENT_HEADER)
            .iter()
            .map(HeaderValue::as_bytes),
        // Looked up only after a valid `traceparent`: most roots have none.
        LazyHeader {
            headers,
            name: &TRACESTATE_HEADER,
        },
        headers
            .get_all(&BAGGAGE_HEADER)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let mut cx = Context::new();
    if let Some(received) = parsed.received {
        cx = cx.with_value(received);
    }
    if let Some(span_context) = parsed.span_context {
        cx = cx.with_remote_span_context(span_context);
    }
    if !parsed.baggage.is_empty() {
        cx = cx.with_baggage(parsed.baggage);
    }
    cx.with_value(RequestMeta {
        correlation,
        random: parsed.random,
    })
}

/// Every value of a header, looked up when iterated rather than when built.
struct LazyHeader<'a> {
    headers: &'a HeaderMap,
    name: &'a HeaderName,
}

impl<'a> IntoIterator for LazyHeader<'a> {
    type Item = &'a [u8];
    type IntoIter =
        std::iter::Map<http::header::ValueIter<'a, HeaderValue>, fn(&HeaderValue) -> &[u8]>;

    fn into_iter(self) -> Self::IntoIter {
        self.headers
            .get_all(self.name)
            .into_iter()
            .map(HeaderValue::as_bytes)
    }
}

/// What the three headers say.
struct Parsed {
    span_context: Option<SpanContext>,
    /// The trace is random: the parent said so, or there is no parent (a new root's id
    /// comes from the SDK's random id generator).
    random: bool,
    baggage: opentelemetry::baggage::Baggage,
    /// Set when the received tracestate does not fit in `TraceState` (see
    /// [`ReceivedTraceState`]).
    received: Option<ReceivedTraceState>,
}

fn parse_parts<'a>(
    base: &Context,
    traceparent: impl IntoIterator<Item = &'a [u8]>,
    tracestate: impl IntoIterator<Item = &'a [u8]>,
    baggage: impl IntoIterator<Item = &'a [u8]>,
) -> Parsed {
    let mut traceparent = traceparent.into_iter();
    let parent = match (traceparent.next(), traceparent.next()) {
        (Some(value), None) => TraceParent::parse(value).ok(),
        _ => None,
    };
    let (span_context, random, received) = match parent {
        Some(parent) => {
            let flags = TraceFlags::new(parent.flags.to_u8() & KNOWN_FLAGS);
            // The tracestate is read only after a valid traceparent; a bad one is dropped alone.
            let mut cleaned = String::new();
            let members = received_members(tracestate, &mut cleaned);
            let state = trace_state_of(members.iter().copied());
            // A base context may hold what an earlier extraction received: replace it, so that
            // it cannot be merged into this trace.
            let received = (members.iter().any(|(k, _)| !otel_holds_key(k))
                || base.get::<ReceivedTraceState>().is_some())
            .then(|| ReceivedTraceState {
                trace_id: parent.trace_id,
                members: TraceStateMembers::from_pairs(members.iter().copied()),
            });
            let random = flags & RANDOM_FLAG == RANDOM_FLAG;
            (
                Some(SpanContext::new(
                    parent.trace_id,
                    parent.parent_id,
                    flags,
                    true,
                    state,
                )),
                random,
                received,
            )
        }
        None => (None, !base.span().span_context().is_valid(), None),
    };
    Parsed {
        span_context,
        random,
        baggage: parse_baggage(baggage),
        received,
    }
}

/// Shared by [`extract`] and [`W3cPropagator`]: layers what the header values say onto `base`.
fn extract_parts<'a>(
    base: &Context,
    traceparent: impl IntoIterator<Item = &'a [u8]>,
    tracestate: impl IntoIterator<Item = &'a [u8]>,
    baggage: impl IntoIterator<Item = &'a [u8]>,
) -> Context {
    let parsed = parse_parts(base, traceparent, tracestate, baggage);
    let mut cx = base.clone();
    if let Some(received) = parsed.received {
        cx = cx.with_value(received);
    }
    if let Some(span_context) = parsed.span_context {
        cx = cx.with_remote_span_context(span_context);
    }
    if parsed.random {
        cx = cx.with_value(TraceRandom);
    }
    if !parsed.baggage.is_empty() {
        cx = cx.with_baggage(parsed.baggage);
    }
    cx
}

/// Shared by [`inject`] and [`W3cPropagator`]: calls `set` with each header to write; `None`
/// means "nothing to send for this header".
fn inject_parts(cx: &Context, mut set: impl FnMut(&'static str, Option<String>)) {
    let span = cx.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        let mut flags = span_context.trace_flags() & TraceFlags::new(KNOWN_FLAGS);
        if cx.is_trace_random() {
            flags = flags | RANDOM_FLAG;
        }
        let parent = TraceParent::new(span_context.trace_id(), span_context.span_id(), flags);
        let value = parent.to_header_value().to_str().ok().map(str::to_owned);
        set(TRACEPARENT, value);
        set(TRACESTATE, outgoing_tracestate(cx, span_context));
    }
    if let Some(baggage) = format_baggage(cx.baggage()) {
        set(BAGGAGE, Some(baggage));
    }
}

/// The tracestate to send for `span_context`: its `TraceState`, with the members received for
/// the same trace that `TraceState` could not hold merged back (see [`ReceivedTraceState`]).
fn outgoing_tracestate(cx: &Context, span_context: &SpanContext) -> Option<String> {
    let state: &TraceState = span_context.trace_state();
    match cx.get::<ReceivedTraceState>() {
        Some(received) if received.trace_id == span_context.trace_id() => {
            format_tracestate(merge_received(state, &received.members))
        }
        _ => format_tracestate(state),
    }
}

/// The tracestate members as received, with malformed `ot=rv:` sub-values removed; empty when
/// the tracestate must be discarded. `cleaned` holds a rewritten `ot` value.
fn received_members<'a: 'b, 'b>(
    tracestate: impl IntoIterator<Item = &'a [u8]>,
    cleaned: &'b mut String,
) -> Vec<(&'b str, &'b str)> {
    let mut members: Vec<(&'b str, &'b str)> = parse_members(tracestate).unwrap_or_default();
    if let Some(i) = members.iter().position(|(k, _)| *k == OT_KEY) {
        match without_malformed_rv(members[i].1) {
            Cow::Borrowed(_) => {}
            Cow::Owned(value) if value.is_empty() => {
                members.remove(i);
            }
            Cow::Owned(value) => {
                *cleaned = value;
                let cleaned: &'b String = cleaned;
                members[i].1 = cleaned.as_str();
            }
        }
    }
    members
}

/// The OpenTelemetry tracestate key (`ot=th:<hex>;rv:<hex>`).
const OT_KEY: &str = "ot";

/// An `ot` value without its `rv` sub-values that are not exactly 14 lowercase hex digits
/// (OpenTelemetry's explicit randomness); borrowed when there is none. A sampler must not
/// read them and the next hop must not receive them. The other sub-values keep their order;
/// empty ones are dropped once the value is rewritten. An empty result means "drop `ot`".
fn without_malformed_rv(value: &str) -> Cow<'_, str> {
    fn malformed_rv(sub: &str) -> bool {
        match sub.split_once(':') {
            Some(("rv", rv)) => {
                rv.len() != 14 || !rv.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
            _ => false,
        }
    }
    if !value.split(';').any(malformed_rv) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    for sub in value.split(';') {
        if sub.is_empty() || malformed_rv(sub) {
            continue;
        }
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(sub);
    }
    // A tracestate value must not end in a space; removing the last sub-value may expose one.
    let len = out.trim_end_matches(' ').len();
    out.truncate(len);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_rv_sub_values_are_removed() {
        let cases: &[(&str, &str)] = &[
            ("th:8", "th:8"),
            ("rv:0123456789abcd", "rv:0123456789abcd"),
            ("th:8;rv:0123456789abcd;x:1", "th:8;rv:0123456789abcd;x:1"),
            ("rv:0123456789abc", ""),
            ("th:8;rv:0123456789abcde", "th:8"),
            ("th:8;rv:0123456789ABCD;x:1", "th:8;x:1"),
            ("rv:;th:c", "th:c"),
            ("rv", "rv"),
            ("th:8;;rv:zz", "th:8"),
            ("x:1 ;rv:g123456789abcd", "x:1"),
            ("rv:0123456789abcd;rv:1", "rv:0123456789abcd"),
            ("a:rv:1", "a:rv:1"),
        ];
        for (input, expected) in cases {
            assert_eq!(without_malformed_rv(input), *expected, "{input:?}");
        }
        assert!(matches!(without_malformed_rv("th:8;x:1"), Cow::Borrowed(_)));
    }
}
