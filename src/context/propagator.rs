//! [`W3cPropagator`]: the rules of [`extract`](super::extract) and [`inject`](super::inject)
//! behind OpenTelemetry's `TextMapPropagator`, so that it can be installed with
//! `opentelemetry::global::set_text_map_propagator`.

use super::{BAGGAGE, TRACEPARENT, TRACESTATE, extract_parts, inject_parts};
use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};

/// W3C Trace Context Level 2 + W3C Baggage propagator (`traceparent`, `tracestate`, `baggage`).
///
/// Differences from [`extract`](super::extract)/[`inject`](super::inject), which work on an
/// `http::HeaderMap` and should be preferred where one is at hand:
/// * repeated headers are seen only as well as the carrier's [`Extractor::get_all`] reports them
///   (its default implementation, used by `HashMap`, returns the first value only;
///   opentelemetry-http 0.33's `HeaderExtractor` returns all values that are valid UTF-8);
/// * the result is layered onto the given context, as the trait requires: values already in it
///   are kept unless replaced, which includes a [`TraceRandom`](super::TraceRandom) marker
///   (extract onto `Context::new()` at a service edge);
/// * an [`Injector`] can only set, so a stale `tracestate` or `baggage` already in the carrier
///   is left in place when there is nothing to write.
#[derive(Clone, Debug)]
pub struct W3cPropagator {
    fields: [String; 3],
}

impl W3cPropagator {
    /// Creates the propagator.
    pub fn new() -> Self {
        W3cPropagator {
            fields: [TRACEPARENT.into(), TRACESTATE.into(), BAGGAGE.into()],
        }
    }
}

impl Default for W3cPropagator {
    fn default() -> Self {
        Self::new()
    }
}

fn values<'a>(extractor: &'a dyn Extractor, key: &str) -> impl Iterator<Item = &'a [u8]> {
    extractor
        .get_all(key)
        .unwrap_or_default()
        .into_iter()
        .map(str::as_bytes)
}

impl TextMapPropagator for W3cPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        inject_parts(cx, |name, value| {
            if let Some(value) = value {
                injector.set(name, value);
            }
        });
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        extract_parts(
            cx,
            values(extractor, TRACEPARENT),
            values(extractor, TRACESTATE),
            values(extractor, BAGGAGE),
        )
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}
