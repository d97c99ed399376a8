//! The one bound on every string meshtrace records on a span.
//!
//! Server and client span attributes, `#[traced]` error messages, exception events and
//! the export gate all cut strings to the same length: the configured
//! `span_limits.max_attribute_value_length` (default 4096 bytes). It is bounded where the
//! value is recorded, not only when the span is exported, so a span waiting in a full
//! queue never holds more than this per value.
//!
//! The limit is process-wide because `#[traced]` functions have no handle to a layer or a
//! manager; [`TracingManager`](crate::TracingManager) sets it when it is built.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The default bound, in bytes.
pub(crate) const DEFAULT_MAX_VALUE_LEN: usize = 4096;

static MAX_VALUE_LEN: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_VALUE_LEN);

/// The longest string recorded on a span, in bytes.
#[inline]
pub(crate) fn max_value_len() -> usize {
    MAX_VALUE_LEN.load(Ordering::Relaxed)
}

/// Sets the bound to the configured `max_attribute_value_length`, as it is: the
/// configuration has already refused values outside `1..=65536` with an error naming the
/// field, and the export gate cuts at the same value, so there is one limit, not two.
#[allow(dead_code)] // called by the manager
pub(crate) fn set_max_value_len(len: usize) {
    MAX_VALUE_LEN.store(len, Ordering::Relaxed);
}

/// `value` cut to at most `max` bytes, on a char boundary.
pub(crate) fn truncate(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// `value` cut to [`max_value_len`] bytes.
#[inline]
pub(crate) fn bounded(value: &str) -> &str {
    truncate(value, max_value_len())
}

/// An owned string cut to [`max_value_len`] bytes in place.
pub(crate) fn bound_owned(mut value: String) -> String {
    let end = bounded(&value).len();
    value.truncate(end);
    value
}

/// A `Cow` cut to [`max_value_len`] bytes.
pub(crate) fn bound_cow(value: Cow<'_, str>) -> Cow<'_, str> {
    match value {
        Cow::Borrowed(s) => Cow::Borrowed(bounded(s)),
        Cow::Owned(s) => Cow::Owned(bound_owned(s)),
    }
}

/// `value`'s `Display` text, at most [`max_value_len`] bytes, without ever formatting
/// more than that (a 1 MiB message costs 4 KiB, not 1 MiB and a copy).
pub(crate) fn display_bounded(value: &dyn std::fmt::Display) -> String {
    use std::fmt::Write as _;
    let mut out = BoundedString {
        text: String::new(),
        max: max_value_len(),
    };
    // A full buffer stops the formatter with an error, which is the point.
    let _ = write!(out, "{value}");
    out.text
}

/// Formats a value's `Debug` form through `Display`, for [`display_bounded`].
pub(crate) struct DebugAsDisplay<'a, T: ?Sized>(pub(crate) &'a T);

impl<T: std::fmt::Debug + ?Sized> std::fmt::Display for DebugAsDisplay<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0, f)
    }
}

struct BoundedString {
    text: String,
    max: usize,
}

impl std::fmt::Write for BoundedString {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.max - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
            Ok(())
        } else {
            self.text.push_str(truncate(s, room));
            Err(std::fmt::Error)
        }
    }
}

/// Estimated bytes of an attribute (the `KeyValue`, its key and its value's strings or
/// items), for the byte bounds of the deferred-capture buffer and the trace pages' store.
pub(crate) fn kv_bytes(kv: &opentelemetry::KeyValue) -> usize {
    use opentelemetry::{Array, StringValue, Value};
    let value = match &kv.value {
        Value::String(s) => s.as_str().len(),
        Value::Array(Array::String(items)) => items
            .iter()
            .map(|s| size_of::<StringValue>() + s.as_str().len())
            .sum(),
        Value::Array(Array::I64(items)) => items.len() * 8,
        Value::Array(Array::F64(items)) => items.len() * 8,
        Value::Array(Array::Bool(items)) => items.len(),
        _ => 0,
    };
    size_of::<opentelemetry::KeyValue>() + kv.key.as_str().len() + value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_stops_at_the_bound() {
        struct Huge;
        impl std::fmt::Display for Huge {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                for _ in 0..1_000_000 {
                    f.write_str("é")?;
                }
                Ok(())
            }
        }
        let text = display_bounded(&Huge);
        assert!(text.len() <= max_value_len() && text.len() > max_value_len() - 2);
        assert!(text.chars().all(|c| c == 'é'));
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("short", 512), "short");
        assert_eq!(truncate("abcdef", 3), "abc");
        // 'é' is two bytes: cutting inside it backs off to the boundary before it.
        assert_eq!(truncate("aé", 2), "a");
    }
}
