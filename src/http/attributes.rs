//! HTTP semantic-convention values that server and client spans share: methods, span
//! names, protocol versions, `Host`/authority parsing, query redaction.

use std::borrow::Cow;

use http::request::Parts;
use http::{Method, Version};

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

/// Most route templates whose span names are interned; a Router has a fixed, small set
/// (they come from the code, never from a request), so this only bounds a pathological
/// one. Beyond it names are allocated per request.
const MAX_INTERNED_ROUTES: usize = 1024;

/// The span names of one route template, per known method (index of [`METHODS`]).
struct RouteNames {
    route: &'static str,
    names: [std::sync::OnceLock<&'static str>; METHODS.len()],
}

const METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// Route template -> its names. Keyed with FNV-1a instead of std's SipHash: the keys
/// are the app's own route templates (never a request's bytes), so there is no flooding
/// to defend against, and the lookup runs on every request.
type RouteMap = std::collections::HashMap<
    &'static str,
    &'static RouteNames,
    std::hash::BuildHasherDefault<Fnv1a>,
>;

static ROUTES: std::sync::LazyLock<std::sync::RwLock<RouteMap>> =
    std::sync::LazyLock::new(Default::default);

/// 64-bit FNV-1a.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The route template and its span name `{method} {route}` as `'static` strings, so that
/// a span built for every request copies neither (the SDK's `SpanBuilder` wants a
/// `Cow<'static, str>` name, and an `&'static str` attribute value is not copied either).
/// Route templates are few and fixed, so each is leaked once, up to
/// [`MAX_INTERNED_ROUTES`]; `None` beyond that.
pub(crate) fn interned_route(
    method: Option<&'static str>,
    route: &str,
) -> Option<(&'static str, Cow<'static, str>)> {
    let lookup = |map: &RouteMap| map.get(route).copied();
    let names = match ROUTES.read().ok().and_then(|map| lookup(&map)) {
        Some(names) => names,
        None => {
            let mut map = ROUTES.write().ok()?;
            match lookup(&map) {
                Some(names) => names,
                None => {
                    if map.len() >= MAX_INTERNED_ROUTES || route.len() > 1024 {
                        return None;
                    }
                    let route: &'static str = Box::leak(Box::from(route));
                    let names: &'static RouteNames = Box::leak(Box::new(RouteNames {
                        route,
                        names: Default::default(),
                    }));
                    map.insert(route, names);
                    names
                }
            }
        }
    };
    let name = match method.and_then(|m| METHODS.iter().position(|known| *known == m)) {
        Some(i) => Cow::Borrowed(
            *names.names[i].get_or_init(|| Box::leak(span_name(method, Some(route)).into())),
        ),
        None => span_name(method, Some(route)),
    };
    Some((names.route, name))
}

pub(crate) fn protocol_version(version: Version) -> Option<&'static str> {
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
pub(crate) fn server_address(parts: &Parts) -> (Option<&str>, Option<u16>) {
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

/// `user_agent.original`: a client chooses it, so it is cut to the one value limit
/// (`span_limits.max_attribute_value_length`) like every recorded string.
pub(crate) fn user_agent(parts: &Parts) -> Option<&str> {
    let ua = parts.headers.get(http::header::USER_AGENT)?.to_str().ok()?;
    Some(crate::limits::bounded(ua))
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
}
