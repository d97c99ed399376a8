//! Where server and client spans come from: an OpenTelemetry SDK tracer, started with a
//! `SpanBuilder` that already carries what the sampler reads.
//!
//! meshtrace's request spans are native OpenTelemetry spans, not `tracing` spans bridged
//! by tracing-opentelemetry: the SDK samples once with every attribute in hand, the span
//! ends when the code that owns it says so (so its duration is true), and a log filter
//! can never disable it. `tracing` spans made inside a handler still become its children,
//! because the request's Context is attached while the handler runs and
//! tracing-opentelemetry 0.34 takes `Context::current()` as the parent of a contextual
//! span.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use opentelemetry::trace::{SpanBuilder, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::sampler::CustomSampler;

/// The instrumentation scope of every span meshtrace starts.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("meshtrace")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The tracer and sampler of the installed `TracingManager`, so that layers built with
/// `new()` use the SDK tracer directly instead of going through OpenTelemetry's boxed
/// global API, and know the sampler as the manager's own layers do.
static INSTALLED: ArcSwapOption<Installed> = ArcSwapOption::const_empty();

struct Installed {
    tracer: SdkTracer,
    sampler: CustomSampler,
}

/// Registers (or, with `None`, clears) the tracer and the sampler of the installed manager.
pub(crate) fn set_installed(installed: Option<(&SdkTracerProvider, &CustomSampler)>) {
    INSTALLED.store(installed.map(|(provider, sampler)| {
        Arc::new(Installed {
            tracer: provider.tracer_with_scope(scope()),
            sampler: sampler.clone(),
        })
    }));
}

/// Calls `f` with the installed manager's sampler, if a manager is installed.
pub(crate) fn with_installed_sampler<R>(f: impl FnOnce(Option<&CustomSampler>) -> R) -> R {
    f(INSTALLED
        .load()
        .as_ref()
        .map(|installed| &installed.sampler))
}

/// Which tracer a layer starts its spans with.
#[derive(Clone, Debug, Default)]
pub(crate) enum SpanSource {
    /// The installed `TracingManager`'s tracer, else OpenTelemetry's global tracer
    /// provider, looked up for every request (so a provider installed after the layer
    /// was built is used).
    #[default]
    Installed,
    /// A provider given to the layer.
    Provider(SdkTracer),
}

/// A started span: the Context that holds it (the parent Context plus the span) and
/// whether the span records (sampled, or recorded without sampling).
pub(crate) struct Started {
    pub(crate) cx: Context,
    pub(crate) recording: bool,
}

impl SpanSource {
    pub(crate) fn provider(provider: &SdkTracerProvider) -> Self {
        SpanSource::Provider(provider.tracer_with_scope(scope()))
    }

    /// Starts a span as a child of `parent`. `late` gives the attributes the sampler does
    /// not need; they are built only when the span records.
    pub(crate) fn start(
        &self,
        builder: SpanBuilder,
        parent: &Context,
        late: impl FnOnce() -> Vec<KeyValue>,
    ) -> Started {
        match self {
            SpanSource::Provider(tracer) => {
                finish(tracer.build_with_context(builder, parent), parent, late)
            }
            SpanSource::Installed => match &*INSTALLED.load() {
                Some(installed) => finish(
                    installed.tracer.build_with_context(builder, parent),
                    parent,
                    late,
                ),
                None => {
                    let tracer = opentelemetry::global::tracer_with_scope(scope());
                    finish(tracer.build_with_context(builder, parent), parent, late)
                }
            },
        }
    }
}

fn finish<S>(mut span: S, parent: &Context, late: impl FnOnce() -> Vec<KeyValue>) -> Started
where
    S: opentelemetry::trace::Span + Send + Sync + 'static,
{
    // Without an SDK (OpenTelemetry's no-op provider) the span carries the parent's
    // span context, so the trace still goes on through outgoing calls.
    if span.is_recording() {
        span.set_attributes(late());
        Started {
            cx: parent.with_span(span),
            recording: true,
        }
    } else {
        // A span that does not record is only its span context: keeping that alone
        // saves boxing the span object (the Context boxes every span it holds).
        let sc = span.span_context().clone();
        Started {
            cx: parent.with_remote_span_context(sc),
            recording: false,
        }
    }
}
