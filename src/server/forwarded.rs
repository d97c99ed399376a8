//! What a trusted proxy says about the original request: `Forwarded` (RFC 7239), else
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-For`.
//!
//! These headers are client-controlled unless a proxy the user trusts sets them, so they
//! are read only for requests [`TracingLayer::trust_forwarded_if`](super::TracingLayer::trust_forwarded_if)
//! accepts, only the first (client-facing) element is used, at most 1 KiB of each header
//! is looked at, and every value is validated: a scheme must be `http` or `https`, a host
//! a well-formed `host[:port]`, a client an IP address (obfuscated identifiers such as
//! `_hidden` and `unknown` are not recorded).

use std::net::IpAddr;

use http::HeaderMap;

use crate::http::attributes::{parse_host_port, strip_brackets};

/// Most bytes of a forwarding header looked at.
const MAX_LOOKED_AT: usize = 1024;

/// The original request, as a trusted proxy described it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Forwarded<'a> {
    pub(crate) scheme: Option<&'static str>,
    pub(crate) host: Option<&'a str>,
    pub(crate) port: Option<u16>,
    pub(crate) client: Option<IpAddr>,
    pub(crate) client_port: Option<u16>,
}

impl<'a> Forwarded<'a> {
    pub(crate) fn read(headers: &'a HeaderMap) -> Self {
        if let Some(value) = first_value(headers, "forwarded") {
            return Self::rfc7239(value);
        }
        let mut out = Forwarded::default();
        if let Some(proto) = first_value(headers, "x-forwarded-proto") {
            out.scheme = scheme(first_element(proto));
        }
        if let Some(host) = first_value(headers, "x-forwarded-host") {
            out.set_host(first_element(host));
        }
        if let Some(chain) = first_value(headers, "x-forwarded-for") {
            out.set_client(first_element(chain));
        }
        out
    }

    /// `Forwarded: for=192.0.2.60;proto=https;host=shop.example, for=...`: the first
    /// element's parameters.
    fn rfc7239(value: &'a str) -> Self {
        let mut out = Forwarded::default();
        for pair in first_element(value).split(';') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            match name.trim().to_ascii_lowercase().as_str() {
                "proto" => out.scheme = scheme(value),
                "host" => out.set_host(value),
                "for" => out.set_client(value),
                _ => {}
            }
        }
        out
    }

    fn set_host(&mut self, value: &'a str) {
        if let Some((host, port)) = parse_host_port(value) {
            self.host = Some(strip_brackets(host));
            self.port = port;
        }
    }

    /// An IP address, `IP:port` or `[IPv6]:port`; anything else is not recorded.
    fn set_client(&mut self, value: &str) {
        if let Ok(ip) = value.parse::<IpAddr>() {
            self.client = Some(ip);
            return;
        }
        if let Ok(socket) = value.parse::<std::net::SocketAddr>() {
            self.client = Some(socket.ip());
            self.client_port = Some(socket.port());
        }
    }
}

/// The header's value when it appears once, is visible ASCII and short enough to look at
/// (cut at the last element boundary within [`MAX_LOOKED_AT`] bytes otherwise).
fn first_value<'a>(headers: &'a HeaderMap, name: &'static str) -> Option<&'a str> {
    // A repeated header is combined in order; its first element is in the first value.
    let value = headers.get(name)?.to_str().ok()?;
    Some(crate::limits::truncate(value, MAX_LOOKED_AT))
}

/// The first element of a comma-separated list, trimmed.
fn first_element(value: &str) -> &str {
    value.split(',').next().unwrap_or("").trim()
}

fn scheme(value: &str) -> Option<&'static str> {
    if value.eq_ignore_ascii_case("https") {
        Some("https")
    } else if value.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&'static str, &str)]) -> Forwarded<'static> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        let headers: &'static HeaderMap = Box::leak(Box::new(headers));
        Forwarded::read(headers)
    }

    #[test]
    fn forwarded_and_x_forwarded_headers_are_read_and_validated() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let cases: Vec<(Vec<(&'static str, &str)>, Forwarded<'static>)> = vec![
            (
                vec![(
                    "forwarded",
                    r#"for="[2001:db8::17]:4711";proto=HTTPS;host=shop.example:8443, for=10.0.0.1"#,
                )],
                Forwarded {
                    scheme: Some("https"),
                    host: Some("shop.example"),
                    port: Some(8443),
                    client: ip("2001:db8::17"),
                    client_port: Some(4711),
                },
            ),
            (
                vec![("forwarded", "for=_hidden;proto=gopher;host=bad host")],
                Forwarded::default(),
            ),
            (
                vec![
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "api.example"),
                    ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
                ],
                Forwarded {
                    scheme: Some("https"),
                    host: Some("api.example"),
                    port: None,
                    client: ip("203.0.113.7"),
                    client_port: None,
                },
            ),
            (
                vec![("x-forwarded-for", "<script>"), ("x-forwarded-host", "a@b")],
                Forwarded::default(),
            ),
            // `Forwarded` wins over the X- headers.
            (
                vec![("forwarded", "proto=http"), ("x-forwarded-proto", "https")],
                Forwarded {
                    scheme: Some("http"),
                    ..Forwarded::default()
                },
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(read(&headers), expected, "{headers:?}");
        }
        let huge = format!("for=1.2.3.4;host={}", "a".repeat(5000));
        assert_eq!(read(&[("forwarded", &huge)]).host, None);
    }
}
