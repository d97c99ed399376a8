//! Debug tokens: the bounded header value the layer forwards, and its validation.

use std::fmt;

use hmac::{Hmac, Mac};
use http::HeaderValue;
use opentelemetry::trace::TraceId;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::config::{DebugConfig, MAX_DEBUG_TOKEN_LEN, MIN_HMAC_SECRET_LEN};
use crate::Error;

/// The raw debug header value, put into the parent `Context` by the server layer.
///
/// Holding one does not force sampling: the sampler checks the token against its
/// configuration and its per-instance rate limit. `Debug` output hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct DebugRequest(HeaderValue);

impl DebugRequest {
    /// Accepts 1 to 256 bytes of visible ASCII (`0x21..=0x7e`); anything else is `None`.
    pub fn from_header_value(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_DEBUG_TOKEN_LEN
            && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
        ok.then(|| DebugRequest(value.clone()))
    }

    /// The token bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for DebugRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DebugRequest(<{} bytes redacted>)", self.0.len())
    }
}

/// The debug part of a compiled configuration.
pub(crate) struct CompiledDebug {
    pub(crate) header: http::HeaderName,
    tokens: Vec<Box<[u8]>>,
    mac: Option<Hmac<Sha256>>,
    pub(crate) max_per_second: u32,
}

impl fmt::Debug for CompiledDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledDebug")
            .field("header", &self.header)
            .field("tokens", &self.tokens.len())
            .field("hmac", &self.mac.is_some())
            .field("max_per_second", &self.max_per_second)
            .finish()
    }
}

impl CompiledDebug {
    pub(crate) fn new(config: &DebugConfig) -> Result<Self, Error> {
        let header = http::HeaderName::from_bytes(config.header.as_bytes()).map_err(|_| {
            Error::config(
                "sampling.debug.header",
                &config.header,
                "not a valid header name",
            )
        })?;
        let mut tokens = Vec::with_capacity(config.tokens.len());
        for (i, token) in config.tokens.iter().enumerate() {
            let valid = !token.is_empty()
                && token.len() <= MAX_DEBUG_TOKEN_LEN
                && token.bytes().all(|b| (0x21..=0x7e).contains(&b));
            if !valid {
                // The token is a secret: name its position and length, never its value.
                return Err(Error::config(
                    format!("sampling.debug.tokens[{i}]"),
                    format_args!("<{} bytes>", token.len()),
                    "must be 1-256 visible ASCII characters",
                ));
            }
            tokens.push(token.as_bytes().into());
        }
        let mac = match &config.hmac_secret {
            None => None,
            Some(secret) if secret.len() < MIN_HMAC_SECRET_LEN => {
                return Err(Error::config(
                    "sampling.debug.hmac_secret",
                    format_args!("<{} bytes>", secret.len()),
                    format!("shorter than {MIN_HMAC_SECRET_LEN} bytes"),
                ));
            }
            Some(secret) => Some(
                <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_err(|_| {
                    Error::config("sampling.debug.hmac_secret", "<redacted>", "unusable key")
                })?,
            ),
        };
        if config.max_per_second > super::config::MAX_DEBUG_PER_SECOND {
            return Err(Error::config(
                "sampling.debug.max_per_second",
                config.max_per_second,
                format!("above {}", super::config::MAX_DEBUG_PER_SECOND),
            ));
        }
        Ok(CompiledDebug {
            header,
            tokens,
            mac,
            max_per_second: config.max_per_second,
        })
    }

    /// Whether `token` is allow-listed or the HMAC of `trace_id`. Comparisons are
    /// constant-time in the token contents.
    pub(crate) fn accepts(&self, token: &[u8], trace_id: TraceId) -> bool {
        let mut listed = subtle::Choice::from(0);
        for allowed in &self.tokens {
            listed |= allowed.as_ref().ct_eq(token);
        }
        if bool::from(listed) {
            return true;
        }
        let Some(mac) = &self.mac else {
            return false;
        };
        let Some(expected) = decode_hex_32(token) else {
            return false;
        };
        let mut mac = mac.clone();
        mac.update(&trace_id_hex(trace_id));
        mac.verify_slice(&expected).is_ok()
    }
}

/// The trace id as 32 lowercase hex digits, on the stack.
pub(crate) fn trace_id_hex(trace_id: TraceId) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in trace_id.to_bytes().iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

fn decode_hex_32(token: &[u8]) -> Option<[u8; 32]> {
    if token.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in token.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The HMAC token a caller sends for `trace_id`: hex(HMAC-SHA256(secret, trace id
/// as 32 lowercase hex digits)). For clients and tests.
pub fn debug_token_for(secret: &[u8], trace_id: TraceId) -> String {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(&trace_id_hex(trace_id));
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
