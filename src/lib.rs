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
pub mod sampler;
pub mod server;

pub use error::Error;

/// Paths used by macro expansions; not public API.
#[doc(hidden)]
pub mod __private {
    pub use opentelemetry;
    pub use tracing;
    pub use tracing_opentelemetry;
}
