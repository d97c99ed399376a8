//! meshtrace: distributed tracing for axum, tower, hyper and reqwest services.
//!
//! See the README for a quickstart. This file holds crate docs and re-exports only.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod context;
mod error;
pub mod export;
pub mod sampler;
pub mod server;

pub use error::Error;
pub use sampler::{CustomSampler, SamplerHandle, SamplingConfig};
