//! Runtime support for the `#[traced]` expansion (reached through `__private`).
//!
//! The expansion calls `(&&Returned(&ret)).__meshtrace_record(&span)` with one of the
//! `ErrWith*` traits, [`AnyErr`] and [`NotResult`] in scope. Method resolution tries the
//! receiver `&&Returned<R>` first, then `&Returned<R>`, then `Returned<R>`, so the most
//! specific impl that applies wins: an `Err` whose error can be formatted, any other `Err`,
//! anything else (a no-op). The macro therefore needs no syntactic guess about whether a
//! return type (perhaps an alias such as `io::Result<T>`) is a `Result`.

use std::fmt;

use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, EXCEPTION_MESSAGE, EXCEPTION_TYPE,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// A function's return value, borrowed for recording.
pub struct Returned<'a, R>(pub &'a R);

// Manual impls: a derive would require `R: Copy`.
impl<R> Clone for Returned<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Returned<'_, R> {}

/// Records an `Err` with its `Display` message (the default).
pub trait ErrWithDisplay {
    /// Records the value on `span` if it is an `Err`.
    fn __meshtrace_record(&self, span: &tracing::Span);
}

impl<T, E: fmt::Display> ErrWithDisplay for &Returned<'_, Result<T, E>> {
    fn __meshtrace_record(&self, span: &tracing::Span) {
        if let Err(error) = self.0 {
            record_error(
                span,
                std::any::type_name::<E>(),
                Some(crate::limits::display_bounded(error)),
            );
        }
    }
}

/// Records an `Err` with its `Debug` representation (`#[traced(err(debug))]`).
pub trait ErrWithDebug {
    /// Records the value on `span` if it is an `Err`.
    fn __meshtrace_record(&self, span: &tracing::Span);
}

impl<T, E: fmt::Debug> ErrWithDebug for &Returned<'_, Result<T, E>> {
    fn __meshtrace_record(&self, span: &tracing::Span) {
        if let Err(error) = self.0 {
            let debug = crate::limits::DebugAsDisplay(error);
            record_error(
                span,
                std::any::type_name::<E>(),
                Some(crate::limits::display_bounded(&debug)),
            );
        }
    }
}

/// Records an `Err` whose error cannot be formatted: status and type, no message.
pub trait AnyErr {
    /// Records the value on `span` if it is an `Err`.
    fn __meshtrace_record(&self, span: &tracing::Span);
}

impl<T, E> AnyErr for Returned<'_, Result<T, E>> {
    fn __meshtrace_record(&self, span: &tracing::Span) {
        if self.0.is_err() {
            record_error(span, std::any::type_name::<E>(), None);
        }
    }
}

/// The fallback for return values that are not a `Result`: records nothing.
pub trait NotResult {
    /// Does nothing.
    fn __meshtrace_record(self, span: &tracing::Span);
}

impl<R> NotResult for Returned<'_, R> {
    fn __meshtrace_record(self, _span: &tracing::Span) {}
}

fn record_error(span: &tracing::Span, error_type: &'static str, message: Option<String>) {
    // A type name is not chosen by a client, but it is a string on a span all the same.
    let error_type = crate::limits::bounded(error_type);
    span.set_attribute(ERROR_TYPE, error_type);
    let mut attributes = vec![KeyValue::new(EXCEPTION_TYPE, error_type)];
    if let Some(message) = &message {
        attributes.push(KeyValue::new(EXCEPTION_MESSAGE, message.clone()));
    }
    span.add_event("exception", attributes);
    span.set_status(Status::error(message.unwrap_or_default()));
}

/// Unsigned integers, which `tracing-opentelemetry` 0.34 would record as strings (it has
/// no `record_u64`): `#[traced(record(n))]` records them through [`record_unsigned`].
pub trait Unsigned {
    /// The value, widened.
    fn __meshtrace_u128(&self) -> u128;
}

macro_rules! unsigned {
    ($($ty:ty),*) => {$(
        impl Unsigned for $ty {
            fn __meshtrace_u128(&self) -> u128 {
                // Lossless: every listed type is at most 128 bits wide.
                *self as u128
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, u128, usize);

impl<T: Unsigned + ?Sized> Unsigned for &T {
    fn __meshtrace_u128(&self) -> u128 {
        (**self).__meshtrace_u128()
    }
}

/// Records an unsigned parameter as an OTel integer when it fits in `i64` (OTel integers
/// are signed), else as its decimal string.
pub fn record_unsigned(span: &tracing::Span, field: &'static str, value: &impl Unsigned) {
    let value = value.__meshtrace_u128();
    match i64::try_from(value) {
        Ok(value) => span.record(field, value),
        Err(_) => span.record(field, tracing::field::display(value)),
    };
}

/// Marks a span that starts a new trace, so that calls made inside it send the W3C Level 2
/// `random` flag: the trace id comes from the SDK's random id generator, but
/// opentelemetry_sdk 0.33 gives root spans `TraceFlags::default()`, so the flag has to
/// travel as the [`TraceRandom`](crate::context::TraceRandom) Context marker.
///
/// Runs before the span is entered (its parent can still be set). A span with a `tracing`
/// parent or inside an OpenTelemetry Context with a valid span is not a root and is left
/// alone.
pub fn mark_root(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    if span.is_disabled() || !tracing::Span::current().is_none() {
        return;
    }
    if opentelemetry::Context::map_current(|cx| cx.span().span_context().is_valid()) {
        return;
    }
    let root = opentelemetry::Context::current().with_value(crate::context::TraceRandom);
    let _ = span.set_parent(root);
}
