//! The pages' tokens: one to change configuration (always needed for that), one to read
//! (optional), compared in constant time.
//!
//! A request presents a token as `Authorization: Bearer <token>`, as the password of HTTP
//! Basic authentication (what a browser sends after the page asked for it with
//! `WWW-Authenticate: Basic`; the user name is ignored), or, for the sampler form, in its
//! `token` field. A token is compared with [`subtle`]'s constant-time equality over a
//! fixed-size buffer, lengths included, so neither its bytes nor its length leak through
//! timing.

use subtle::ConstantTimeEq as _;

use crate::Error;

/// The shortest token accepted: 16 bytes (128 bits of a random token).
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest token accepted.
pub const MAX_TOKEN_LEN: usize = 256;

/// A configured token.
#[derive(Clone)]
pub(crate) struct Token {
    bytes: Box<[u8; MAX_TOKEN_LEN]>,
    len: usize,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Validates a token: [`MIN_TOKEN_LEN`]..=[`MAX_TOKEN_LEN`] visible ASCII characters.
    pub(crate) fn new(field: &str, token: &str) -> Result<Self, Error> {
        let len = token.len();
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&len) {
            return Err(Error::config(
                field,
                format!("<{len} bytes>"),
                format!(
                    "a token must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} bytes (e.g. 32 random \
                     hex digits: `openssl rand -hex 16`)"
                ),
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::config(
                field,
                "<redacted>",
                "a token must be visible ASCII characters (no spaces, no control characters)",
            ));
        }
        let mut bytes = Box::new([0u8; MAX_TOKEN_LEN]);
        bytes[..len].copy_from_slice(token.as_bytes());
        Ok(Token { bytes, len })
    }

    /// Whether `given` is this token, in constant time for every `given` up to
    /// [`MAX_TOKEN_LEN`] bytes (longer ones are refused at once: no token is that long).
    pub(crate) fn matches(&self, given: &[u8]) -> bool {
        if given.len() > MAX_TOKEN_LEN {
            return false;
        }
        let mut padded = [0u8; MAX_TOKEN_LEN];
        padded[..given.len()].copy_from_slice(given);
        let same_bytes = self.bytes.as_slice().ct_eq(padded.as_slice());
        let same_len = (self.len as u64).ct_eq(&(given.len() as u64));
        bool::from(same_bytes & same_len)
    }
}

/// The token a request presents in its `Authorization` header (Bearer, or Basic's
/// password), if any.
pub(crate) fn presented(headers: &http::HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = split_scheme(value)?;
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return Some(rest.to_vec());
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = base64_decode(rest)?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = value.iter().position(|&b| b == b' ')?;
    let rest = &value[space + 1..];
    let start = rest.iter().position(|&b| b != b' ')?;
    Some((&value[..space], &rest[start..]))
}

/// Standard base64 with padding (what browsers send for Basic); `None` if malformed. Small
/// inputs only (an `Authorization` header).
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if !input.len().is_multiple_of(4) || input.len() > 4 * MAX_TOKEN_LEN {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    for chunk in input.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { value(c)? };
            n = (n << 6) | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let token = Token::new("t", "0123456789abcdef").unwrap();
        assert!(token.matches(b"0123456789abcdef"));
        assert!(
            !token.matches(b"0123456789abcdeX"),
            "same length, one byte off"
        );
        assert!(!token.matches(b"0123456789abcde"), "a prefix");
        assert!(!token.matches(b"0123456789abcdef0"), "longer");
        assert!(!token.matches(b""));
        assert!(!token.matches(&[b'a'; MAX_TOKEN_LEN + 1]));
        assert!(Token::new("t", "short").is_err());
        assert!(Token::new("t", "has a space in it!").is_err());
        let message = Token::new("pages.token", "secret-but-short")
            .map_or_else(|e| e.to_string(), |_| String::new());
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn authorization_headers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(presented(&headers), None);
        headers.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(presented(&headers).as_deref(), Some(&b"abc"[..]));
        // "admin:s3cret-token" in base64.
        headers.insert(
            "authorization",
            "Basic YWRtaW46czNjcmV0LXRva2Vu".parse().unwrap(),
        );
        assert_eq!(presented(&headers).as_deref(), Some(&b"s3cret-token"[..]));
        headers.insert("authorization", "Basic !!!!".parse().unwrap());
        assert_eq!(presented(&headers), None);
        headers.insert("authorization", "Digest x".parse().unwrap());
        assert_eq!(presented(&headers), None);
        assert_eq!(base64_decode(b"YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode(b"YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode(b"YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(base64_decode(b"YWJ"), None);
    }
}
