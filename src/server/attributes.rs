//! The server span and the HTTP semantic-convention values recorded on it.
//!
//! Field names are the stable OpenTelemetry HTTP semantic conventions; `tracing` needs
//! them as literal identifiers, so a test checks them against
//! `opentelemetry-semantic-conventions`.

use std::borrow::Cow;

use http::request::Parts;
use http::{Method, Version};
use opentelemetry::KeyValue;
use tracing::Span;
use tracing::field::Empty;

use super::layer::ServerConfig;
use crate::context::CorrelationId;

/// Longest `user_agent.original` we record; a client chooses it, so it is bounded.
const MAX_USER_AGENT_LEN: usize = 256;
/// Longest `server.address` we record (a DNS name is at most 253 bytes).
const MAX_HOST_LEN: usize = 253;

/// The method as the semantic conventions want it: known methods as-is, anything else
/// as `_OTHER` (the original then goes to `http.request.method_original`).
pub(crate) fn known_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return None,
    })
}

/// `{method} {route}`, `{method}`, or `HTTP`/`HTTP {route}` for unknown methods; never
/// the raw path.
pub(crate) fn span_name(method: Option<&'static str>, route: Option<&str>) -> Cow<'static, str> {
    match (method, route) {
        // Built by hand: `format!` goes through the formatting machinery on every request.
        (Some(m), Some(r)) => Cow::Owned([m, " ", r].concat()),
        (Some(m), None) => Cow::Borrowed(m),
        (None, Some(r)) => Cow::Owned(["HTTP ", r].concat()),
        (None, None) => Cow::Borrowed("HTTP"),
    }
}

fn protocol_version(version: Version) -> Option<&'static str> {
    Some(match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => return None,
    })
}

/// The list `redact_query` compares against: lower-case names.
pub(crate) fn sensitive_params<I, S>(params: I) -> Vec<Box<str>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    params
        .into_iter()
        .map(|p| Box::from(p.as_ref().to_ascii_lowercase()))
        .collect()
}

/// Replaces the values of sensitive parameters with `REDACTED`. Borrows when nothing
/// is sensitive, so the common case does not allocate.
pub(crate) fn redact_query<'a>(query: &'a str, sensitive: &[Box<str>]) -> Cow<'a, str> {
    let is_sensitive = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(k, _)| k);
        // Names are compared case-insensitively and also in their decoded form, so
        // `%74oken=...` or `Token=...` is redacted like `token=...`.
        let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        sensitive
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s) || decoded.eq_ignore_ascii_case(s))
    };
    if !query
        .split('&')
        .any(|pair| pair.contains('=') && is_sensitive(pair))
    {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if is_sensitive(pair) => {
                out.push_str(name);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
    }
    Cow::Owned(out)
}

/// `server.address` and `server.port` from the URI authority (HTTP/2 `:authority`) or
/// the `Host` header (HTTP/1.1). The client chooses the value, so only a well-formed
/// `host[:port]` (reg-name or IP literal, no userinfo) is recorded. Parsed by hand
/// because `http::uri::Authority::from_str` copies the value on every request.
fn server_address(parts: &Parts) -> (Option<&str>, Option<u16>) {
    let raw = match parts.uri.authority() {
        Some(a) => a.as_str(),
        None => match parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            Some(h) => h,
            None => return (None, None),
        },
    };
    match parse_host_port(raw) {
        Some((host, port)) => (Some(strip_brackets(host)), port),
        None => (None, None),
    }
}

/// `host[:port]` of an authority or `Host` header: the host as written (an IPv6 literal
/// keeps its brackets) and the port. `None` unless well formed: a reg-name of letters,
/// digits, `-`, `.`, `_`, or a bracketed IPv6 literal, at most 253 bytes, no userinfo, a
/// valid port. Shared by the server (`server.address`) and the client (`Host` of relative
/// URIs).
pub(crate) fn parse_host_port(raw: &str) -> Option<(&str, Option<u16>)> {
    let (host, inner, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let valid = v6
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !valid {
            return None;
        }
        let port = if after.is_empty() {
            ""
        } else {
            after.strip_prefix(':')?
        };
        (&raw[..v6.len() + 2], v6, port)
    } else {
        let (host, port) = raw.rsplit_once(':').unwrap_or((raw, ""));
        let reg_name = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
        if !host.bytes().all(reg_name) {
            return None;
        }
        (host, host, port)
    };
    if inner.is_empty() || inner.len() > MAX_HOST_LEN {
        return None;
    }
    let port = match port {
        "" => None,
        p => Some(p.parse::<u16>().ok()?),
    };
    Some((host, port))
}

/// A host as the semantic conventions record it: IPv6 literals without brackets.
pub(crate) fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn user_agent(parts: &Parts) -> Option<&str> {
    let ua = parts.headers.get(http::header::USER_AGENT)?.to_str().ok()?;
    if ua.len() <= MAX_USER_AGENT_LEN {
        return Some(ua);
    }
    // `to_str` succeeded, so the value is visible ASCII and any index is a boundary.
    Some(&ua[..MAX_USER_AGENT_LEN])
}

/// The route template axum matched, when the layer runs after routing.
pub(crate) fn route(parts: &Parts) -> Option<&str> {
    #[cfg(feature = "axum")]
    {
        parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(|p| p.as_str())
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = parts;
        None
    }
}

/// What the server span records when it is created: the values the sampler decides on.
pub(crate) struct RequestFacts<'a> {
    method: Option<&'static str>,
    original_method: Option<&'a str>,
    route: Option<&'a str>,
    path: &'a str,
    scheme: &'a str,
    query: Option<Cow<'a, str>>,
    address: Option<&'a str>,
    port: Option<u16>,
    user_agent: Option<&'a str>,
    version: Option<&'static str>,
    correlation: &'a str,
}

impl<'a> RequestFacts<'a> {
    pub(crate) fn read(
        parts: &'a Parts,
        config: &ServerConfig,
        correlation: &'a CorrelationId,
    ) -> Self {
        let method = known_method(&parts.method);
        let route = route(parts);
        let (address, port) = server_address(parts);
        RequestFacts {
            method,
            original_method: match method {
                Some(_) => None,
                None => Some(parts.method.as_str()),
            },
            route,
            path: parts.uri.path(),
            scheme: parts.uri.scheme_str().unwrap_or("http"),
            query: parts
                .uri
                .query()
                .map(|q| redact_query(q, &config.sensitive_query_params)),
            address,
            port,
            user_agent: user_agent(parts),
            version: protocol_version(parts.version),
            correlation: correlation.as_str(),
        }
    }

    /// `{method} {route}`, `{method}`, or `HTTP`/`HTTP {route}`; never the raw path.
    pub(crate) fn name(&self) -> Cow<'static, str> {
        span_name(self.method, self.route)
    }

    /// Creates the server span with every field the sampler reads already set, so that
    /// tracing-opentelemetry hands them to the sampler when the OpenTelemetry span starts.
    pub(crate) fn span(&self) -> Span {
        let name = self.name();
        tracing::info_span!(
            target: "meshtrace::server",
            "http.server.request",
            // A `str`, not `%name`: tracing-opentelemetry 0.34 formats `Display` values
            // through `Debug` into a new `String`; a `str` is copied once.
            otel.name = &*name,
            otel.kind = "server",
            http.request.method = self.method.unwrap_or("_OTHER"),
            http.request.method_original = self.original_method,
            http.route = self.route,
            url.path = self.path,
            url.scheme = self.scheme,
            url.query = self.query.as_deref(),
            server.address = self.address,
            // tracing-opentelemetry 0.34 has no `record_u64`: unsigned values would become
            // strings, so integers are recorded as i64.
            server.port = self.port.map(i64::from),
            user_agent.original = self.user_agent,
            network.protocol.version = self.version,
            correlation.id = self.correlation,
            http.response.status_code = Empty,
            error.type = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        )
    }

    /// The attributes the span above starts with, as the SDK hands them to the sampler
    /// (without tracing-opentelemetry's own location and thread attributes).
    pub(crate) fn attributes(&self) -> Vec<KeyValue> {
        use opentelemetry_semantic_conventions::attribute as a;
        let mut out = Vec::with_capacity(11);
        out.push(KeyValue::new(
            a::HTTP_REQUEST_METHOD,
            self.method.unwrap_or("_OTHER"),
        ));
        let mut push = |key: &'static str, value: Option<&str>| {
            if let Some(value) = value {
                out.push(KeyValue::new(key, value.to_owned()));
            }
        };
        push(a::HTTP_REQUEST_METHOD_ORIGINAL, self.original_method);
        push(a::HTTP_ROUTE, self.route);
        push(a::URL_PATH, Some(self.path));
        push(a::URL_SCHEME, Some(self.scheme));
        push(a::URL_QUERY, self.query.as_deref());
        push(a::SERVER_ADDRESS, self.address);
        push(a::USER_AGENT_ORIGINAL, self.user_agent);
        push(a::NETWORK_PROTOCOL_VERSION, self.version);
        push("correlation.id", Some(self.correlation));
        if let Some(port) = self.port {
            out.push(KeyValue::new(a::SERVER_PORT, i64::from(port)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|k| Box::from(*k)).collect()
    }

    #[test]
    fn redacts_sensitive_query_values() {
        let sensitive = keys(&["token", "sig", "x-amz-signature"]);
        let cases: &[(&str, &str)] = &[
            ("q=rust", "q=rust"),
            ("q=rust&token=abc", "q=rust&token=REDACTED"),
            ("Token=abc&page=2", "Token=REDACTED&page=2"),
            ("%74oken=abc", "%74oken=REDACTED"),
            (
                "X-Amz-Signature=deadbeef&X-Amz-Date=1",
                "X-Amz-Signature=REDACTED&X-Amz-Date=1",
            ),
            ("sig=1&sig=2", "sig=REDACTED&sig=REDACTED"),
            ("token", "token"),
            ("", ""),
            ("a=1&&b=2&sig=", "a=1&&b=2&sig=REDACTED"),
            ("tokenizer=x", "tokenizer=x"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                redact_query(input, &sensitive),
                *expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn unredacted_query_is_borrowed() {
        let sensitive = keys(&["token"]);
        assert!(matches!(
            redact_query("a=1&b=2", &sensitive),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn span_names_never_use_the_raw_path() {
        assert_eq!(
            span_name(Some("GET"), Some("/users/{id}")),
            "GET /users/{id}"
        );
        assert_eq!(span_name(Some("POST"), None), "POST");
        assert_eq!(span_name(None, Some("/x")), "HTTP /x");
        assert_eq!(span_name(None, None), "HTTP");
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(known_method(&Method::GET), Some("GET"));
        assert_eq!(known_method(&Method::from_bytes(b"PURGE").unwrap()), None);
    }

    #[test]
    fn server_address_from_host_header() {
        let parts = |host: &str| {
            let (parts, _) = http::Request::builder()
                .uri("/x")
                .header("host", host)
                .body(())
                .unwrap()
                .into_parts();
            parts
        };
        let p = parts("example.com:8080");
        assert_eq!(server_address(&p), (Some("example.com"), Some(8080)));
        let p = parts("example.com");
        assert_eq!(server_address(&p), (Some("example.com"), None));
        let p = parts("user@evil.com");
        assert_eq!(server_address(&p), (None, None));
        let p = parts("bad host");
        assert_eq!(server_address(&p), (None, None));
        let p = parts("[::1]:3000");
        assert_eq!(server_address(&p), (Some("::1"), Some(3000)));
        let p = parts("example.com:99999");
        assert_eq!(server_address(&p), (None, None));
        let long = "a".repeat(400);
        let p = parts(&long);
        assert_eq!(server_address(&p), (None, None));
    }

    #[test]
    fn span_fields_use_semantic_convention_names_and_the_sampler_sees_only_those() {
        use opentelemetry_semantic_conventions::attribute as a;
        let (parts, _) = http::Request::builder()
            .method("PURGE")
            .uri("http://api.example.com:8443/x?q=1")
            .header("user-agent", "curl/8.5")
            .body(())
            .unwrap()
            .into_parts();
        let config = ServerConfig::default();
        let correlation = CorrelationId::parse(b"c-1").unwrap();
        let facts = RequestFacts::read(&parts, &config, &correlation);
        // The real span's field names, as tracing-opentelemetry turns them into keys.
        let span =
            tracing::subscriber::with_default(tracing_subscriber::registry(), || facts.span());
        let fields: Vec<&str> = span
            .metadata()
            .expect("an enabled span")
            .fields()
            .iter()
            .map(|f| f.name())
            .collect();
        for name in [
            a::HTTP_REQUEST_METHOD,
            a::HTTP_REQUEST_METHOD_ORIGINAL,
            a::HTTP_ROUTE,
            a::URL_PATH,
            a::URL_SCHEME,
            a::URL_QUERY,
            a::SERVER_ADDRESS,
            a::SERVER_PORT,
            a::USER_AGENT_ORIGINAL,
            a::NETWORK_PROTOCOL_VERSION,
            a::HTTP_RESPONSE_STATUS_CODE,
            a::ERROR_TYPE,
        ] {
            assert!(fields.contains(&name), "{name} is not a span field");
        }
        // The early root decision must see what the SDK's sampler would see.
        for kv in facts.attributes() {
            assert!(
                fields.contains(&kv.key.as_str()),
                "{} is given to the sampler but is not a span field",
                kv.key
            );
        }
    }
}
