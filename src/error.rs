//! The crate's one error type.
//!
//! Every message is one sentence a user can act on: it names the setting (a file key such
//! as `batch.max_queue_size`, or an environment variable such as `OTEL_BSP_MAX_QUEUE_SIZE`),
//! shows the value as given (never a secret: OTLP header values, debug tokens, the HMAC
//! secret, URL credentials and key files are described, not shown), and says what to do.
//! Where an error has an underlying cause (an I/O error, a parser's error), `source()`
//! returns it; its text is also part of the message, so printing the error alone is enough.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// Everything meshtrace can report as an error: configuration problems found at
/// build time and setup failures. Nothing on the request path returns it.
///
/// `Debug` prints the same sentence as `Display`, so `fn main() -> Result<(), Box<dyn
/// Error>>` shows a readable message rather than the fields of a struct.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid; names the setting and the offending value.
    #[error("{field} = {} is invalid: {reason}", Shown(.value))]
    #[non_exhaustive]
    Config {
        /// The setting: a file key (`sampling.rules[3].rate`) or an environment variable.
        field: String,
        /// The rejected value as given, or a description in angle brackets (`<redacted>`,
        /// `<20000 bytes>`) when it must not or cannot be shown.
        value: String,
        /// Why it was rejected and what to write instead.
        reason: String,
        /// The parser's error underneath (an `EnvFilter` directive, a JSON document, a PEM
        /// bundle), if any; its text is part of `reason`.
        #[source]
        source: Option<Source>,
    },
    /// A file the configuration names (a configuration file, a PEM file) cannot be read or
    /// is not what it should be.
    #[error("{field} {}: {reason}", Shown(&.path.display().to_string()))]
    #[non_exhaustive]
    File {
        /// The setting that names the file (`exporter.certificate`,
        /// `OTEL_EXPORTER_OTLP_CERTIFICATE`, `config file`, ...).
        field: String,
        /// The file's path as given.
        path: PathBuf,
        /// What is wrong with it and what to do. Never quotes the file's content.
        reason: String,
        /// The I/O or parse error underneath, if any.
        #[source]
        source: Option<Source>,
    },
    /// A configuration or document could not be parsed.
    #[error("the {format} configuration cannot be parsed: {reason}")]
    #[non_exhaustive]
    Parse {
        /// `TOML`, `JSON` or `YAML`.
        format: &'static str,
        /// The parser's message with its position; quoted strings of the input are left out
        /// (they may be secrets).
        reason: String,
        /// A [`ParseError`] with the same (redacted) message.
        #[source]
        source: Option<Source>,
    },
    /// The configuration asks for something this build of meshtrace leaves out.
    #[error(
        "{field} = {} {wants}, which needs meshtrace's `{feature}` feature: enable it \
         (`cargo add meshtrace --features {feature}`) or remove the setting",
        Shown(.value)
    )]
    #[non_exhaustive]
    MissingFeature {
        /// The setting that asked, as in [`Error::Config`].
        field: String,
        /// Its value, as in [`Error::Config`].
        value: String,
        /// What the setting asks for, e.g. `asks for the OTLP exporter`.
        wants: String,
        /// The Cargo feature to enable, e.g. `otlp`.
        feature: &'static str,
    },
    /// Setting up or shutting down the telemetry pipeline failed; names the component.
    #[error("{component}: {reason}")]
    #[non_exhaustive]
    Setup {
        /// What failed, e.g. `global subscriber` or `OTLP exporter`.
        component: String,
        /// Why, as reported by the component.
        reason: String,
        /// The component's error, if any.
        #[source]
        source: Option<Source>,
    },
}

/// The `source()` of a configuration or document that cannot be parsed: the parser's
/// message with its position, and with the input's quoted strings left out (a value given
/// with the wrong type may be a secret). Reached by `error.source()` and
/// `downcast_ref::<ParseError>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl ParseError {
    /// Wraps a message that is already redacted.
    pub(crate) fn new(redacted: impl Into<String>) -> Self {
        ParseError(redacted.into())
    }

    /// The redacted message, as `Display` prints it.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for ParseError {}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A value quoted (control characters escaped, so a hostile value cannot break a log
/// line), or shown as is when it is a `<description>`.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.len() >= 2 && v.starts_with('<') && v.ends_with('>') {
            f.write_str(v)
        } else {
            write!(f, "\"{}\"", v.escape_debug())
        }
    }
}

impl Error {
    /// Builds an [`Error::Config`].
    pub(crate) fn config(
        field: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::Config {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
            source: None,
        }
    }

    /// Builds an [`Error::Config`] whose `source()` is `error` (the parser's error).
    pub(crate) fn config_caused_by(
        field: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
        error: impl Into<Source>,
    ) -> Self {
        Error::Config {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
            source: Some(error.into()),
        }
    }

    /// Builds an [`Error::Parse`] whose `source()` is a [`ParseError`] with the same
    /// (redacted) message.
    pub(crate) fn parse(format: &'static str, reason: String) -> Self {
        Error::Parse {
            format,
            source: Some(Box::new(ParseError(reason.clone()))),
            reason,
        }
    }

    /// Builds an [`Error::File`].
    pub(crate) fn file(
        field: impl Into<String>,
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
        source: Option<Source>,
    ) -> Self {
        Error::File {
            field: field.into(),
            path: path.into(),
            reason: reason.into(),
            source,
        }
    }

    /// Builds an [`Error::MissingFeature`].
    #[allow(dead_code)] // every call site is behind a feature that may be on
    pub(crate) fn missing_feature(
        field: impl Into<String>,
        value: impl fmt::Display,
        wants: impl Into<String>,
        feature: &'static str,
    ) -> Self {
        Error::MissingFeature {
            field: field.into(),
            value: value.to_string(),
            wants: wants.into(),
            feature,
        }
    }

    /// Builds an [`Error::Setup`] without an underlying error.
    pub(crate) fn setup(component: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::Setup {
            component: component.into(),
            reason: reason.to_string(),
            source: None,
        }
    }

    /// Builds an [`Error::Setup`] whose `source()` is `error` (its text is the reason).
    #[allow(dead_code)] // for the exporter and manager wiring
    pub(crate) fn setup_caused_by(
        component: impl Into<String>,
        error: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Error::Setup {
            component: component.into(),
            reason: error.to_string(),
            source: Some(Box::new(error)),
        }
    }

    /// The setting this error is about (file key or environment variable), if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Config { field, .. }
            | Error::File { field, .. }
            | Error::MissingFeature { field, .. } => Some(field),
            Error::Parse { .. } | Error::Setup { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_and_escaped_descriptions_are_not() {
        let e = Error::config("OTEL_X", "a\nb\"c", "it must be short");
        assert_eq!(
            e.to_string(),
            r#"OTEL_X = "a\nb\"c" is invalid: it must be short"#
        );
        let e = Error::config("exporter.headers.x-key", "<redacted>", "bad");
        assert_eq!(
            e.to_string(),
            "exporter.headers.x-key = <redacted> is invalid: bad"
        );
        assert_eq!(format!("{e:?}"), e.to_string());
    }

    #[test]
    fn source_is_the_underlying_error() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::file(
            "exporter.certificate",
            "/x.pem",
            "cannot read it: gone",
            Some(Box::new(io)),
        );
        assert_eq!(
            e.to_string(),
            "exporter.certificate \"/x.pem\": cannot read it: gone"
        );
        assert_eq!(e.source().unwrap().to_string(), "gone");
        assert!(Error::config("a", "b", "c").source().is_none());
    }
}
