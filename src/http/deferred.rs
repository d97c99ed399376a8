//! Deferred capture at the edges of a request: the marker a deferred request carries in its
//! Context, the `traceresponse` header with which a service tells its caller that it kept
//! the trace, and how outgoing calls of a deferred request propagate.
//!
//! # The downstream signal: `traceresponse`
//!
//! A service that keeps its part of a trace its caller did not sample answers with the
//! W3C Trace Context `traceresponse` response header (the "Trace Context: HTTP Response
//! Headers" draft), version `00`, the trace id, its server span's id and the flags `01`
//! (sampled):
//!
//! ```text
//! traceresponse: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//! ```
//!
//! The server layer sends it only when the request came from a traced caller (a valid
//! `traceparent` from a trusted peer, not an untrusted edge) that did not sample the trace,
//! and this service keeps it as far as is known when the response head goes out: its span
//! is sampled, or it is deferred and the status is 5xx, the request is already past its
//! slow threshold, or a downstream service of its own answered the same. A header the
//! handler set is kept. A request that is only found to be slow, failed or cancelled
//! after its head was sent is exported here but cannot be announced any more.
//!
//! The client layers (`ClientTracingLayer`, `ReqwestTracingMiddleware`) read it on the
//! responses of deferred calls: a valid value for the same trace id with the sampled flag
//! makes the caller's trace be kept with `sampling.reason = "downstream"`, so the collector
//! gets the whole trace.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceFlags, TraceId};
use opentelemetry::{Context, KeyValue};

use super::tracer::Started;
use crate::export::deferred::DOWNSTREAM_MARK;
use crate::sampler::TRACE_RESPONSE_HEADER;
use crate::sampler::defer::TraceKeep;
use crate::sampler::{CustomSampler, UntrustedEdge};

/// `traceresponse` as a header name.
const TRACE_RESPONSE: HeaderName = HeaderName::from_static(TRACE_RESPONSE_HEADER);

/// Marks a request whose span just started: a deferred one gets the [`TraceKeep`] marker
/// (with the slow threshold of `route` and the propagation setting of `sampler`'s
/// configuration, when the layer knows it); a sampled one whose traced caller did not sample
/// gets one too, to answer with `traceresponse`. Everything else is returned as it is, at
/// the cost of a flag check.
pub(crate) fn mark(
    started: Started,
    parent: &Context,
    sampler: Option<&CustomSampler>,
    route: Option<&str>,
) -> Started {
    if !started.recording {
        return started;
    }
    let (trace_id, sampled) = {
        let span = started.cx.span();
        let sc = span.span_context();
        (sc.trace_id(), sc.is_sampled())
    };
    let caller_unsampled = {
        let parent_span = parent.span();
        let psc = parent_span.span_context();
        psc.is_valid()
            && psc.is_remote()
            && !psc.is_sampled()
            && parent.get::<UntrustedEdge>().is_none()
    };
    let keep = if sampled {
        if !caller_unsampled {
            return started;
        }
        TraceKeep::new(trace_id, false, None, None, true)
    } else {
        // A span of a request that is deferred already (a client span inside a handler).
        if started
            .cx
            .get::<TraceKeep>()
            .is_some_and(|keep| keep.trace_id == trace_id)
        {
            return started;
        }
        let settings = sampler.map(CustomSampler::deferred_settings);
        TraceKeep::new(trace_id, true, settings.as_deref(), route, caller_unsampled)
    };
    Started {
        cx: started.cx.with_value(keep),
        recording: true,
    }
}

/// The `traceresponse` value for a response with `status` of the request in `cx`, when
/// this service keeps the trace and its caller waits to hear it.
pub(crate) fn trace_response(cx: &Context, status: StatusCode) -> Option<HeaderValue> {
    let keep = cx.get::<TraceKeep>()?;
    if !keep.respond || !keep.kept_at_head(status.is_server_error()) {
        return None;
    }
    let span = cx.span();
    let sc = span.span_context();
    let value = format!("00-{}-{}-01", sc.trace_id(), sc.span_id());
    HeaderValue::from_str(&value).ok()
}

/// Adds `traceresponse` to `headers` (see [`trace_response`]) unless the handler set one.
pub(crate) fn answer(headers: &mut HeaderMap, cx: Option<&Context>, status: StatusCode) {
    let Some(value) = cx.and_then(|cx| trace_response(cx, status)) else {
        return;
    };
    if let http::header::Entry::Vacant(entry) = headers.entry(TRACE_RESPONSE) {
        entry.insert(value);
    }
}

/// On the response of a deferred call (the client span in `cx` records and is not
/// sampled): a `traceresponse` saying the downstream service kept the trace marks the client
/// span for the export buffer and the request's [`TraceKeep`] for the server's own answer.
pub(crate) fn read_answer(cx: &Context, headers: &HeaderMap) {
    let span = cx.span();
    let trace_id = {
        let sc = span.span_context();
        if sc.is_sampled() {
            return;
        }
        sc.trace_id()
    };
    let Some(value) = headers.get(&TRACE_RESPONSE) else {
        return;
    };
    if !kept_by_downstream(value.as_bytes(), trace_id) {
        return;
    }
    span.set_attribute(KeyValue::new(DOWNSTREAM_MARK, true));
    if let Some(keep) = cx.get::<TraceKeep>()
        && keep.trace_id == trace_id
    {
        keep.set_downstream_kept();
    }
}

/// Whether a `traceresponse` value says the callee kept `trace_id`: version `00` with
/// exactly the four fields, lowercase hex, the same trace id, a non-zero child id and the
/// sampled flag; a higher version (not `ff`) is read by its first four fields, as W3C
/// Trace Context asks for `traceparent`.
fn kept_by_downstream(value: &[u8], trace_id: TraceId) -> bool {
    fn hex(bytes: &[u8]) -> Option<u128> {
        if bytes.is_empty() || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        u128::from_str_radix(text, 16).ok()
    }
    let value = value.trim_ascii();
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return false;
    }
    let version = match hex(&value[..2]) {
        Some(v) if v != 0xff => v,
        _ => return false,
    };
    if (version == 0 && value.len() != 55) || (version > 0 && value.len() > 55 && value[55] != b'-')
    {
        return false;
    }
    let (Some(id), Some(child), Some(flags)) =
        (hex(&value[3..35]), hex(&value[36..52]), hex(&value[53..55]))
    else {
        return false;
    };
    id != 0 && child != 0 && TraceId::from(id) == trace_id && flags & 1 == 1
}

/// The Context whose span context outgoing headers are written from: a deferred request
/// whose configuration says `propagate_sampled` sends its call's span as sampled.
pub(crate) fn propagated(cx: &Context) -> Option<Context> {
    let keep = cx.get::<TraceKeep>()?;
    if !keep.deferred || !keep.propagate_sampled {
        return None;
    }
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() || sc.is_sampled() || sc.trace_id() != keep.trace_id {
        return None;
    }
    Some(cx.with_remote_span_context(SpanContext::new(
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags() | TraceFlags::SAMPLED,
        false,
        sc.trace_state().clone(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceresponse_values() {
        let id = TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128);
        let cases: &[(&str, bool)] = &[
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                true,
            ),
            (
                " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03 ",
                true,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                false,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                true,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                false,
            ),
            ("", false),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7-01",
                false,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                kept_by_downstream(value.as_bytes(), id),
                *expected,
                "{value:?}"
            );
        }
    }
}
