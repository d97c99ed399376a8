//! Without feature `pages`: what the request path and the export gate call, doing nothing
//! (the types that would carry a store cannot be built, so every hook compiles away).

use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry_sdk::trace::SpanData;

/// Never any: there are no pages to report to.
#[derive(Debug)]
pub(crate) enum Mounted {}

/// Never any.
#[derive(Debug)]
pub(crate) enum Exchange {}

impl Exchange {
    pub(crate) fn set_error(&mut self) {
        match *self {}
    }

    pub(crate) fn finish(self, _end: SystemTime) {
        match self {}
    }
}

#[derive(Debug, Default)]
pub(crate) struct Slot;

impl Slot {
    #[inline]
    pub(crate) fn on_end(&self, _span: &SpanData) {}
}

#[derive(Clone, Debug, Default)]
pub(crate) enum Source {
    #[default]
    Installed,
}

impl Source {
    pub(crate) fn given(_slot: &Arc<Slot>) -> Self {
        Source::Installed
    }

    #[inline]
    pub(crate) fn mounted(&self) -> Option<Mounted> {
        None
    }
}

pub(crate) fn begin(
    store: &Mounted,
    _name: &str,
    _start: SystemTime,
    _cx: &opentelemetry::Context,
    _recording: bool,
) -> Exchange {
    match *store {}
}

#[inline]
pub(crate) fn is_pages_request(_parts: &http::request::Parts) -> bool {
    false
}

pub(crate) fn set_installed(_slot: Option<&Arc<Slot>>) {}
