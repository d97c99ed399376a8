//! What the server and the client share: the tracer spans start from, HTTP
//! semantic-convention values (methods, span names, `Host` parsing, query redaction),
//! how a request's outcome is recorded and classified, gRPC, and the body that ends a
//! span.
//!
//! Neither side imports the other; both import this module.

pub(crate) mod attributes;
mod body;
pub mod classify;
pub(crate) mod deferred;
pub(crate) mod grpc;
pub(crate) mod long_lived;
pub(crate) mod outcome;
pub(crate) mod tracer;

pub use body::TracedBody;

/// Query parameters whose values are replaced by `REDACTED` in `url.query` (server) and
/// `url.full` (client) by default, matched case-insensitively. The OpenTelemetry HTTP
/// semantic conventions name `AWSAccessKeyId`, `Signature`, `sig` and `X-Goog-Signature`;
/// the rest are common carriers of credentials.
pub const DEFAULT_SENSITIVE_QUERY_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "sig",
    "signature",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "key",
    "api_key",
    "apikey",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
    "x-goog-signature",
    "x-goog-credential",
];

/// Headers that are never recorded, whatever the configuration says.
pub(crate) const NEVER_RECORDED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];
