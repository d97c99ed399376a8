//! The checks every source's values go through, whether they came from a file, the
//! environment or code. Each error names the setting (`field`: a file key or a variable)
//! and shows the value as given, or describes it when it is a secret.

use crate::Error;
use std::path::Path;

/// Most resource attributes accepted from all sources together.
pub const MAX_RESOURCE_ATTRIBUTES: usize = 128;
/// Most bytes of a resource attribute key or value.
pub const MAX_RESOURCE_VALUE_BYTES: usize = 4096;
/// Most OTLP headers accepted.
pub const MAX_OTLP_HEADERS: usize = 64;
/// Largest count a span limit accepts (attributes, events, links).
pub const MAX_SPAN_LIMIT_COUNT: u32 = 65_536;
/// Largest `span_limits.max_attribute_value_length`, in bytes.
pub const MAX_ATTRIBUTE_VALUE_LENGTH: u32 = 65_536;

/// Upper bound for every count of spans.
pub(crate) const MAX_QUEUE_SIZE_LIMIT: usize = 1 << 20;
/// Upper bound for every millisecond knob: one hour.
pub(crate) const MAX_MILLIS: u64 = 3_600_000;
/// Longest service name, version, environment or resource key.
pub(crate) const MAX_NAME_BYTES: usize = 255;
/// Longest filter directive string.
pub(crate) const MAX_FILTER_BYTES: usize = 16 * 1024;

/// `s` cut to at most `max` bytes (on a char boundary), with `...` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// URLs may carry credentials (`user:pass@host`); never echo those.
pub(crate) fn shown_url(url: &str) -> String {
    if url.contains('@') {
        "<redacted: contains credentials>".to_owned()
    } else {
        truncate(url, 256)
    }
}

/// An absolute `http://` or `https://` URL with a host and without credentials.
pub(crate) fn check_url(field: &str, url: &str) -> Result<(), Error> {
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
        // `InvalidUri` names the problem, never the URL (which may hold credentials).
        Error::config_caused_by(
            field,
            shown_url(url),
            format!("{e}; write an absolute URL such as http://collector:4318"),
            e,
        )
    })?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(Error::config(
                field,
                shown_url(url),
                "it must be an http:// or https:// URL, such as http://collector:4318",
            ));
        }
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(Error::config(
            field,
            shown_url(url),
            "the URL has no host; write one such as http://collector:4318",
        ));
    };
    // opentelemetry-otlp logs the endpoint it connects to; credentials must not go there.
    if authority.as_str().contains('@') {
        return Err(Error::config(
            field,
            shown_url(url),
            "credentials in the URL are not accepted; send them in a header \
             (exporter.headers or OTEL_EXPORTER_OTLP_HEADERS)",
        ));
    }
    Ok(())
}

pub(crate) fn parse_millis(field: &str, value: &str) -> Result<u64, Error> {
    let n = value.parse::<u64>().map_err(|_| {
        Error::config(
            field,
            truncate(value, 64),
            format!("it must be a whole number of milliseconds between 1 and {MAX_MILLIS}"),
        )
    })?;
    check_millis(field, n)
}

pub(crate) fn check_millis(field: &str, n: u64) -> Result<u64, Error> {
    if n == 0 || n > MAX_MILLIS {
        return Err(Error::config(
            field,
            n,
            format!("it must be between 1 and {MAX_MILLIS} milliseconds"),
        ));
    }
    Ok(n)
}

pub(crate) fn parse_count(field: &str, value: &str) -> Result<usize, Error> {
    let n = value.parse::<usize>().map_err(|_| {
        Error::config(
            field,
            truncate(value, 64),
            format!("it must be a whole number between 1 and {MAX_QUEUE_SIZE_LIMIT}"),
        )
    })?;
    check_count(field, n)
}

pub(crate) fn check_count(field: &str, n: usize) -> Result<usize, Error> {
    if n == 0 || n > MAX_QUEUE_SIZE_LIMIT {
        return Err(Error::config(
            field,
            n,
            format!("it must be between 1 and {MAX_QUEUE_SIZE_LIMIT}"),
        ));
    }
    Ok(n)
}

/// A span limit: a count in `0..=max`, or (for the value length) `1..=max`.
pub(crate) fn parse_limit(field: &str, value: &str, min: u32, max: u32) -> Result<u32, Error> {
    let n = value.parse::<u32>().map_err(|_| {
        Error::config(
            field,
            truncate(value, 64),
            format!("it must be a whole number between {min} and {max}"),
        )
    })?;
    check_limit(field, n, min, max)
}

pub(crate) fn check_limit(field: &str, n: u32, min: u32, max: u32) -> Result<u32, Error> {
    if !(min..=max).contains(&n) {
        return Err(Error::config(
            field,
            n,
            format!("it must be between {min} and {max}"),
        ));
    }
    Ok(n)
}

/// `tracing_subscriber::EnvFilter` directives, as `install()` will parse them.
pub(crate) fn check_filter(field: &str, directives: &str) -> Result<(), Error> {
    if directives.len() > MAX_FILTER_BYTES {
        return Err(Error::config(
            field,
            format!("<{} bytes>", directives.len()),
            format!("it must be at most {MAX_FILTER_BYTES} bytes of EnvFilter directives"),
        ));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(directives)
        .map(|_| ())
        .map_err(|e| {
            Error::config_caused_by(
                field,
                truncate(directives, 256),
                format!(
                    "{e}; write EnvFilter directives such as `info` or `info,hyper=warn,my_crate=debug`"
                ),
                e,
            )
        })
}

pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::config(field, value, "it must not be empty"));
    }
    if value.len() > max {
        return Err(Error::config(
            field,
            truncate(value, 64),
            format!("it must be at most {max} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::config(
            field,
            truncate(value, 64),
            "it must not contain control characters (line breaks, tabs, ...)",
        ));
    }
    Ok(())
}

/// The leading header-name characters of `member`, for errors about a header: what follows
/// may be the secret value (`x-api-key:secret`).
pub(crate) fn header_name_only(member: &str) -> String {
    let name: String = member
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(64)
        .collect();
    if name.is_empty() {
        "<redacted>".to_owned()
    } else {
        name
    }
}

/// Parses `key=value,key=value` (W3C-baggage-like, as `OTEL_RESOURCE_ATTRIBUTES` and
/// `OTEL_EXPORTER_OTLP_HEADERS` are specified); values are percent-decoded. Header values are
/// secrets, so `show_values` is false for them and errors name only the header.
pub(crate) fn parse_key_values(
    field: &str,
    input: &str,
    show_values: bool,
) -> Result<Vec<(String, String)>, Error> {
    let (limit, what) = if show_values {
        (MAX_RESOURCE_ATTRIBUTES, "attributes")
    } else {
        (MAX_OTLP_HEADERS, "headers")
    };
    let mut out = Vec::new();
    for member in input.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let shown = |m: &str| {
            if show_values {
                truncate(m, 64)
            } else {
                header_name_only(m)
            }
        };
        let Some((key, value)) = member.split_once('=') else {
            return Err(Error::config(
                field,
                shown(member),
                "each member must be written key=value (members separated by commas)",
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(Error::config(
                field,
                shown(member),
                "the key before `=` is empty",
            ));
        }
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| {
                Error::config(
                    field,
                    shown(member),
                    "the value is not UTF-8 once percent-decoded; percent-encode UTF-8 bytes only",
                )
            })?;
        out.push((key.to_owned(), value.into_owned()));
        if out.len() > limit {
            return Err(Error::config(
                field,
                format!("<{} or more {what}>", out.len()),
                format!("at most {limit} {what} are accepted"),
            ));
        }
    }
    Ok(out)
}

/// An OTLP header: a valid HTTP header name (not `-bin`) and a printable ASCII value.
/// Returns the lower-case name.
pub(crate) fn check_header(field: &str, name: &str, value: &str) -> Result<String, Error> {
    let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        Error::config(
            field,
            truncate(name, 64),
            "it is not a valid HTTP header name (letters, digits and -_.!#$%&'*+^`|~ only)",
        )
    })?;
    if header.as_str().ends_with("-bin") {
        return Err(Error::config(
            field,
            header.as_str(),
            "binary (`-bin`) headers are not supported",
        ));
    }
    if http::HeaderValue::from_str(value).is_err() || !value.is_ascii() {
        let reason = "the header value must be printable ASCII (percent-encode anything else)";
        // A file key names the header; a variable holds all of them, so the value says which.
        return Err(if field.starts_with("OTEL_") {
            Error::config(field, format!("<the value of {header}>"), reason)
        } else {
            Error::config(format!("{field}.{header}"), "<redacted>", reason)
        });
    }
    Ok(header.as_str().to_owned())
}

/// What a PEM file must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PemKind {
    /// One or more `CERTIFICATE` blocks.
    Certificates,
    /// A `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1) block.
    PrivateKey,
}

/// Checks that `bytes` (the content of `path`) is PEM holding `kind`: well-formed
/// `-----BEGIN/END <label>-----` blocks with base64 bodies. No cryptography: whether the
/// certificate is usable is up to the TLS stack. Errors never quote the content.
pub(crate) fn check_pem(
    field: &str,
    path: &Path,
    bytes: &[u8],
    kind: PemKind,
) -> Result<(), Error> {
    let bad = |reason: String| Error::file(field, path, reason, None);
    let text = std::str::from_utf8(bytes).map_err(|_| {
        bad("it is not a PEM file (PEM is ASCII text; DER files must be converted)".into())
    })?;
    let mut found = 0usize;
    let mut lines = text.lines().enumerate();
    while let Some((line_no, line)) = lines.next() {
        let line = line.trim();
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = 0usize;
        let mut closed = false;
        for (_, inner) in lines.by_ref() {
            let inner = inner.trim();
            if inner == end {
                closed = true;
                break;
            }
            if inner.contains(':') {
                // RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`) mark an encrypted legacy key.
                return Err(bad(format!(
                    "the {label} block at line {} is encrypted; give an unencrypted key \
                     (e.g. `openssl pkey -in key.pem -out key-plain.pem`)",
                    line_no + 1
                )));
            }
            if !inner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
            {
                return Err(bad(format!(
                    "the {label} block at line {} is not valid base64",
                    line_no + 1
                )));
            }
            body += inner.len();
        }
        if !closed {
            return Err(bad(format!(
                "the {label} block at line {} has no `{end}` line",
                line_no + 1
            )));
        }
        if body == 0 || !body.is_multiple_of(4) {
            return Err(bad(format!(
                "the {label} block at line {} is not valid base64",
                line_no + 1
            )));
        }
        match (kind, label) {
            (PemKind::Certificates, "CERTIFICATE") => found += 1,
            (PemKind::PrivateKey, "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY") => {
                found += 1
            }
            (PemKind::PrivateKey, "ENCRYPTED PRIVATE KEY") => {
                return Err(bad("the key is encrypted; give an unencrypted key \
                     (e.g. `openssl pkey -in key.pem -out key-plain.pem`)"
                    .into()));
            }
            _ => {}
        }
    }
    if found == 0 {
        return Err(bad(match kind {
            PemKind::Certificates => {
                "it holds no PEM certificate; expected a -----BEGIN CERTIFICATE----- block".into()
            }
            PemKind::PrivateKey => "it holds no PEM private key; expected a -----BEGIN PRIVATE \
                                    KEY----- (or RSA / EC PRIVATE KEY) block"
                .into(),
        }));
    }
    if kind == PemKind::PrivateKey && found > 1 {
        return Err(bad(format!(
            "it holds {found} private keys; give the one key of the client certificate"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\nAAAA\n-----END CERTIFICATE-----\n";

    #[test]
    fn pem_blocks_are_checked_without_quoting_them() {
        let check = |text: &str, kind| check_pem("f", Path::new("/p.pem"), text.as_bytes(), kind);
        assert!(check(CERT, PemKind::Certificates).is_ok());
        assert!(check(&format!("{CERT}{CERT}"), PemKind::Certificates).is_ok());
        let key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----";
        assert!(check(key, PemKind::PrivateKey).is_ok());
        let cases: &[(&str, PemKind, &str)] = &[
            ("", PemKind::Certificates, "no PEM certificate"),
            ("hello secret", PemKind::Certificates, "no PEM certificate"),
            (key, PemKind::Certificates, "no PEM certificate"),
            (CERT, PemKind::PrivateKey, "no PEM private key"),
            (
                "-----BEGIN CERTIFICATE-----\nMIIB\n",
                PemKind::Certificates,
                "no `-----END CERTIFICATE-----` line",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nsecret!!\n-----END CERTIFICATE-----",
                PemKind::Certificates,
                "not valid base64",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----",
                PemKind::Certificates,
                "not valid base64",
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----",
                PemKind::PrivateKey,
                "encrypted",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIB\n-----END RSA PRIVATE KEY-----",
                PemKind::PrivateKey,
                "encrypted",
            ),
            (
                &format!("{key}\n{key}"),
                PemKind::PrivateKey,
                "2 private keys",
            ),
        ];
        for (text, kind, needle) in cases {
            let message = check(text, *kind).expect_err(text).to_string();
            assert!(message.contains(needle), "{text:?}: {message}");
            assert!(
                !message.contains("secret") && !message.contains("MIIB"),
                "{message}"
            );
        }
        let binary = check_pem(
            "f",
            Path::new("/p.der"),
            &[0x30, 0x82, 0xff],
            PemKind::Certificates,
        );
        assert!(binary.unwrap_err().to_string().contains("not a PEM file"));
    }
}
