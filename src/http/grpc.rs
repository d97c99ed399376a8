//! gRPC over HTTP/2, as server and client spans see it: which requests are gRPC, the
//! method a request calls (read from its path, which the client chooses, so validated and
//! bounded), status codes and their names, and the `rpc.*` attributes.
//!
//! We follow the OpenTelemetry RPC and gRPC semantic conventions as of v1.37.0 (the last
//! release before the RPC conventions were reworked): span name `{rpc.service}/{rpc.method}`,
//! `rpc.system = "grpc"`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code` (an int);
//! span status Error on server spans for `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`,
//! `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`, on client spans for every code but `OK`; and,
//! from the later conventions, `error.type` = the status code's name and `_OTHER` with
//! `rpc.method_original` for a method that is not recognised.
//! (`opentelemetry-semantic-conventions` 0.33 implements schema 1.42, where `rpc.system`,
//! `rpc.service` and `rpc.grpc.status_code` are deprecated in favour of `rpc.system.name`,
//! a fully-qualified `rpc.method` and `rpc.response.status_code`; hence the
//! `#[allow(deprecated)]`.)

use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode};
use opentelemetry::{KeyValue, StringValue};
#[allow(deprecated)]
use opentelemetry_semantic_conventions::attribute::{
    RPC_GRPC_STATUS_CODE, RPC_METHOD, RPC_METHOD_ORIGINAL, RPC_SERVICE, RPC_SYSTEM,
};

use crate::limits::bounded;

/// Longest `rpc.service` accepted: a fully-qualified proto service name
/// (`opentelemetry.proto.collector.trace.v1.TraceService` is 51 bytes). Longer names are
/// not real services; with [`MAX_METHOD_LEN`] this bounds a span name to 385 bytes.
pub(crate) const MAX_SERVICE_LEN: usize = 256;
/// Longest `rpc.method` accepted.
pub(crate) const MAX_METHOD_LEN: usize = 128;

/// Span name, `rpc.method` and `error.type` of a call whose method is not recognised: a
/// malformed path, or a method the server answered `UNIMPLEMENTED`.
pub(crate) const OTHER: &str = "_OTHER";

/// `grpc-status`.
pub(crate) const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// Whether a request is gRPC: a `POST` (checked first: one comparison for every other
/// request) whose `content-type` is `application/grpc`, `application/grpc+<format>` or
/// `application/grpc;<params>`. gRPC-Web (`application/grpc-web*`) is not: its status
/// travels in the body, where a layer cannot read it; put the layer behind the gRPC-Web
/// translation.
#[inline]
pub(crate) fn is_grpc(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::POST
        && headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| is_grpc_content_type(value.as_bytes()))
}

fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// The method a gRPC request calls, from its path `/{service}/{method}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GrpcMethod {
    /// A well-formed path: the service (`package.Service`) and the method.
    Named {
        /// `service/method`: the span name.
        full: Arc<str>,
    },
    /// A path that is not `/{service}/{method}` with proto identifiers within the bounds:
    /// the original, bounded, for `rpc.method_original`.
    Malformed(Box<str>),
}

impl GrpcMethod {
    /// Reads `path`. A service is dot-separated proto identifiers (`[A-Za-z_][A-Za-z0-9_]*`)
    /// of at most [`MAX_SERVICE_LEN`] bytes, a method one identifier of at most
    /// [`MAX_METHOD_LEN`]; anything else is [`Malformed`](Self::Malformed).
    pub(crate) fn from_path(path: &str) -> Self {
        let named = path.strip_prefix('/').and_then(|rest| {
            let (service, method) = rest.split_once('/')?;
            let valid = service.len() <= MAX_SERVICE_LEN
                && method.len() <= MAX_METHOD_LEN
                && service.split('.').all(is_identifier)
                && is_identifier(method);
            valid.then_some(rest)
        });
        match named {
            Some(full) => GrpcMethod::Named {
                full: Arc::from(full),
            },
            None => {
                GrpcMethod::Malformed(Box::from(bounded(path.strip_prefix('/').unwrap_or(path))))
            }
        }
    }

    /// The span name: `package.Service/Method`, or `_OTHER`.
    pub(crate) fn span_name(&self) -> std::borrow::Cow<'static, str> {
        match self {
            GrpcMethod::Named { full, .. } => std::borrow::Cow::Owned(String::from(&**full)),
            GrpcMethod::Malformed(_) => std::borrow::Cow::Borrowed(OTHER),
        }
    }

    /// `rpc.service` and `rpc.method`, when the path named them.
    pub(crate) fn parts(&self) -> Option<(&str, &str)> {
        match self {
            GrpcMethod::Named { full } => full.split_once('/'),
            GrpcMethod::Malformed(_) => None,
        }
    }

    /// `service/method` or the malformed path, for `rpc.method_original`.
    pub(crate) fn original(&self) -> StringValue {
        match self {
            GrpcMethod::Named { full, .. } => StringValue::from(Arc::clone(full)),
            GrpcMethod::Malformed(path) => StringValue::from(String::from(&**path)),
        }
    }

    /// The attributes a gRPC span starts with: `rpc.system`, `rpc.service`, `rpc.method`
    /// (`_OTHER` and `rpc.method_original` for a malformed path).
    #[allow(deprecated)]
    pub(crate) fn push_start_attributes(&self, out: &mut Vec<KeyValue>) {
        out.push(KeyValue::new(RPC_SYSTEM, "grpc"));
        match self.parts() {
            Some((service, method)) => {
                out.push(KeyValue::new(RPC_SERVICE, service.to_owned()));
                out.push(KeyValue::new(RPC_METHOD, method.to_owned()));
            }
            None => {
                out.push(KeyValue::new(RPC_METHOD, OTHER));
                out.push(KeyValue::new(RPC_METHOD_ORIGINAL, self.original()));
            }
        }
    }
}

/// A proto identifier: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A gRPC status code, `0..=16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Code(u8);

/// The names of the codes, by value (the `error.type` of a failed call).
const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl Code {
    pub(crate) const OK: Code = Code(0);
    pub(crate) const CANCELLED: Code = Code(1);
    pub(crate) const UNKNOWN: Code = Code(2);
    pub(crate) const UNIMPLEMENTED: Code = Code(12);
    pub(crate) const INTERNAL: Code = Code(13);
    pub(crate) const UNAVAILABLE: Code = Code(14);
    pub(crate) const UNAUTHENTICATED: Code = Code(16);
    pub(crate) const PERMISSION_DENIED: Code = Code(7);

    /// The code of a `grpc-status` value. A value that is not a code (gRPC's own clients
    /// read it so) is `UNKNOWN`.
    pub(crate) fn from_header(value: &[u8]) -> Code {
        let code = match value {
            [d] if d.is_ascii_digit() => d - b'0',
            [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => (a - b'0') * 10 + (b - b'0'),
            _ => return Code::UNKNOWN,
        };
        if usize::from(code) < NAMES.len() {
            Code(code)
        } else {
            Code::UNKNOWN
        }
    }

    /// `grpc-status` of `headers` (response headers or trailers), if present.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Code> {
        headers
            .get(&GRPC_STATUS)
            .map(|value| Code::from_header(value.as_bytes()))
    }

    /// What a gRPC client reports for an HTTP response without `grpc-status` (gRPC's
    /// "HTTP to gRPC status code mapping"): a proxy's 503 is `UNAVAILABLE`, and so on.
    pub(crate) fn from_http(status: StatusCode) -> Code {
        match status.as_u16() {
            400 => Code::INTERNAL,
            401 => Code::UNAUTHENTICATED,
            403 => Code::PERMISSION_DENIED,
            404 => Code::UNIMPLEMENTED,
            429 | 502 | 503 | 504 => Code::UNAVAILABLE,
            _ => Code::UNKNOWN,
        }
    }

    /// The value, for `rpc.grpc.status_code`.
    pub(crate) fn value(self) -> i64 {
        i64::from(self.0)
    }

    /// The name, e.g. `DEADLINE_EXCEEDED` (the `error.type` of a failed call).
    pub(crate) fn name(self) -> &'static str {
        NAMES.get(usize::from(self.0)).copied().unwrap_or("UNKNOWN")
    }

    /// Whether a server span with this code is an error (the conventions' list).
    pub(crate) fn is_server_error(self) -> bool {
        matches!(self.0, 2 | 4 | 12 | 13 | 14 | 15)
    }

    /// Whether a client span with this code is an error: every code but `OK`.
    pub(crate) fn is_client_error(self) -> bool {
        self != Code::OK
    }

    /// `rpc.grpc.status_code`.
    #[allow(deprecated)]
    pub(crate) fn attribute(self) -> KeyValue {
        KeyValue::new(RPC_GRPC_STATUS_CODE, self.value())
    }
}

/// `rpc.method_original`, for a call renamed `_OTHER` after it started.
pub(crate) fn method_original(method: &GrpcMethod) -> KeyValue {
    KeyValue::new(RPC_METHOD_ORIGINAL, method.original())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_requests_are_posts_with_a_grpc_content_type() {
        let cases: &[(&str, &str, bool)] = &[
            ("POST", "application/grpc", true),
            ("POST", "application/grpc+proto", true),
            ("POST", "Application/GRPC; charset=utf-8", true),
            ("POST", "application/grpc-web", false),
            ("POST", "application/grpc-web-text", false),
            ("POST", "application/grpcx", false),
            ("POST", "application/json", false),
            ("GET", "application/grpc", false),
        ];
        for (method, content_type, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(
                is_grpc(&method, &headers),
                *expected,
                "{method} {content_type}"
            );
        }
        assert!(!is_grpc(&Method::POST, &HeaderMap::new()));
    }

    #[test]
    fn methods_are_validated_and_bounded() {
        let named = |path: &str| {
            GrpcMethod::from_path(path)
                .parts()
                .map(|(s, m)| (s.to_owned(), m.to_owned()))
        };
        let pair = |s: &str, m: &str| Some((s.to_owned(), m.to_owned()));
        assert_eq!(
            named("/meshtrace.test.v1.Echo/Unary"),
            pair("meshtrace.test.v1.Echo", "Unary")
        );
        assert_eq!(named("/Echo/Unary"), pair("Echo", "Unary"));
        assert_eq!(named("/_a.b_1/_m2"), pair("_a.b_1", "_m2"));
        let long_service = format!("/{}/M", "s".repeat(MAX_SERVICE_LEN));
        assert!(named(&long_service).is_some());
        for malformed in [
            "", "/", "//M", "/S/", "/S", "S/M", "/S/M/x", "/a..b/M", "/.a/M", "/a./M", "/1a/M",
            "/S/1m", "/S/M-x", "/S/M?x", "/S%2F/M", "/Säge/M", "/S/M ",
        ] {
            assert_eq!(named(malformed), None, "{malformed:?}");
        }
        assert_eq!(
            named(&format!("/{}/M", "s".repeat(MAX_SERVICE_LEN + 1))),
            None
        );
        assert_eq!(
            named(&format!("/S/{}", "m".repeat(MAX_METHOD_LEN + 1))),
            None
        );
        // The original of a malformed path is bounded like every recorded value.
        let huge = GrpcMethod::from_path(&format!("/{}", "x/".repeat(50_000)));
        assert_eq!(huge.span_name(), OTHER);
        assert_eq!(
            huge.original().as_str().len(),
            crate::limits::max_value_len()
        );
    }

    #[test]
    fn start_attributes() {
        let keys = |method: &GrpcMethod| {
            let mut out = Vec::new();
            method.push_start_attributes(&mut out);
            out.into_iter()
                .map(|kv| (kv.key.to_string(), kv.value.as_str().into_owned()))
                .collect::<Vec<_>>()
        };
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let named = GrpcMethod::from_path("/pkg.Svc/Do");
        assert_eq!(named.span_name(), "pkg.Svc/Do");
        assert_eq!(
            keys(&named),
            pairs(&[
                ("rpc.system", "grpc"),
                ("rpc.service", "pkg.Svc"),
                ("rpc.method", "Do")
            ])
        );
        let malformed = GrpcMethod::from_path("/not a method");
        assert_eq!(
            keys(&malformed),
            pairs(&[
                ("rpc.system", "grpc"),
                ("rpc.method", "_OTHER"),
                ("rpc.method_original", "not a method")
            ])
        );
    }

    #[test]
    fn status_codes() {
        let cases: &[(&[u8], i64, &str)] = &[
            (b"0", 0, "OK"),
            (b"1", 1, "CANCELLED"),
            (b"4", 4, "DEADLINE_EXCEEDED"),
            (b"12", 12, "UNIMPLEMENTED"),
            (b"16", 16, "UNAUTHENTICATED"),
            (b"17", 2, "UNKNOWN"),
            (b"99", 2, "UNKNOWN"),
            (b"", 2, "UNKNOWN"),
            (b"-1", 2, "UNKNOWN"),
            (b"007", 2, "UNKNOWN"),
            (b"x", 2, "UNKNOWN"),
        ];
        for (value, code, name) in cases {
            let parsed = Code::from_header(value);
            assert_eq!((parsed.value(), parsed.name()), (*code, *name), "{value:?}");
        }
        let server_errors: Vec<&str> = (0..17u8)
            .map(Code)
            .filter(|c| c.is_server_error())
            .map(Code::name)
            .collect();
        assert_eq!(
            server_errors,
            [
                "UNKNOWN",
                "DEADLINE_EXCEEDED",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS"
            ]
        );
        assert!((1..17u8).map(Code).all(Code::is_client_error));
        assert!(!Code::OK.is_client_error());
        assert_eq!(
            Code::from_http(StatusCode::SERVICE_UNAVAILABLE),
            Code::UNAVAILABLE
        );
        assert_eq!(Code::from_http(StatusCode::NOT_FOUND), Code::UNIMPLEMENTED);
        assert_eq!(Code::from_http(StatusCode::IM_A_TEAPOT), Code::UNKNOWN);
    }
}
