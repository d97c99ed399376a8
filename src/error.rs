//! The crate's one error type.

/// Everything meshtrace can report as an error: configuration problems found at
/// build time and setup failures. Nothing on the request path returns it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration entry is invalid; names the field and the offending value.
    #[error("invalid configuration: {field} = {value:?}: {reason}")]
    Config {
        /// The field, e.g. `sampling.rules[3].rate`.
        field: String,
        /// The rejected value, as given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Setting up or shutting down the telemetry pipeline failed; names the component.
    #[error("{component}: {reason}")]
    Setup {
        /// What failed, e.g. `global subscriber` or `OTLP exporter`.
        component: String,
        /// Why, as reported by the component.
        reason: String,
    },
}

impl Error {
    /// Builds an [`Error::Config`].
    #[allow(dead_code)] // used by the sampler and manager configuration, being merged
    pub(crate) fn config(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::Config {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Setup`].
    pub(crate) fn setup(component: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Setup {
            component: component.into(),
            reason: reason.to_string(),
        }
    }
}
