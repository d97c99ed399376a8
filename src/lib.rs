//! meshtrace: distributed tracing for axum, tower, hyper and reqwest services.
//!
//! See the README for a quickstart. This file holds crate docs and re-exports only.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod context;
mod error;
pub mod export;
pub mod logging;
mod macro_support;
pub mod sampler;
pub mod server;

pub use error::Error;

#[cfg(feature = "macros")]
#[doc = include_str!("traced.md")]
pub use meshtrace_macros::traced;

/// Paths used by macro expansions; not public API.
#[doc(hidden)]
pub mod __private {
    pub use opentelemetry;
    pub use tracing;
    pub use tracing_opentelemetry;

    pub use crate::macro_support::{
        AnyErr, ErrWithDebug, ErrWithDisplay, NotResult, Returned, Unsigned, record_unsigned,
    };
}
