//! Debug tokens: the bounded header value the layer forwards, and its validation.
//!
//! Two kinds of token force sampling (see [`DebugConfig`]): allow-listed tokens, compared
//! in constant time, and (feature `debug-hmac`) expiring HMAC tokens,
//! `<unix_seconds>.<hex HMAC-SHA256(secret, trace_id_hex "." unix_seconds)>`, bound to the
//! trace id the caller sends and accepted for `max_age_secs` after `unix_seconds`.

use std::fmt;

use http::HeaderValue;
use opentelemetry::trace::TraceId;
use subtle::ConstantTimeEq;

use super::config::{DebugConfig, MAX_DEBUG_TOKEN_LEN, validate};
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
    tokens: Vec<Box<[u8]>>,
    #[cfg(feature = "debug-hmac")]
    mac: Option<hmac::Hmac<sha2::Sha256>>,
    pub(crate) max_per_second: u32,
    max_age_secs: u64,
}

impl fmt::Debug for CompiledDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledDebug")
            .field("tokens", &self.tokens.len())
            .field("hmac", &self.has_hmac())
            .field("max_per_second", &self.max_per_second)
            .field("max_age_secs", &self.max_age_secs)
            .finish()
    }
}

impl CompiledDebug {
    pub(crate) fn new(config: &DebugConfig) -> Result<Self, Error> {
        let mut tokens = Vec::with_capacity(config.tokens.len());
        for (i, token) in config.tokens.iter().enumerate() {
            validate::token(i, token)?;
            tokens.push(token.as_bytes().into());
        }
        if let Some(secret) = &config.hmac_secret {
            validate::hmac_secret(secret)?;
        }
        validate::max_per_second(config.max_per_second)?;
        validate::max_age_secs(config.max_age_secs)?;
        Ok(CompiledDebug {
            tokens,
            #[cfg(feature = "debug-hmac")]
            mac: match &config.hmac_secret {
                None => None,
                Some(secret) => Some(
                    <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(secret.as_bytes())
                        .map_err(|_| {
                            Error::config(
                                "sampling.debug.hmac_secret",
                                "<redacted>",
                                "the secret cannot be used as an HMAC key",
                            )
                        })?,
                ),
            },
            max_per_second: config.max_per_second,
            max_age_secs: config.max_age_secs,
        })
    }

    #[cfg(feature = "debug-hmac")]
    fn has_hmac(&self) -> bool {
        self.mac.is_some()
    }

    #[cfg(not(feature = "debug-hmac"))]
    fn has_hmac(&self) -> bool {
        false
    }

    /// Whether any token can be accepted at all (a cheap test before reading the clock).
    pub(crate) fn is_enabled(&self) -> bool {
        self.max_per_second > 0 && (!self.tokens.is_empty() || self.has_hmac())
    }

    /// Whether `token` is allow-listed, or a valid HMAC token for `trace_id` that is not
    /// expired at `now_unix_secs`. Token comparisons are constant-time in the contents.
    pub(crate) fn accepts(&self, token: &[u8], trace_id: TraceId, now_unix_secs: u64) -> bool {
        let mut listed = subtle::Choice::from(0);
        for allowed in &self.tokens {
            listed |= allowed.as_ref().ct_eq(token);
        }
        if bool::from(listed) {
            return true;
        }
        #[cfg(feature = "debug-hmac")]
        if let Some(mac) = &self.mac {
            return hmac_token::verify(mac, token, trace_id, now_unix_secs, self.max_age_secs);
        }
        let _ = (trace_id, now_unix_secs);
        false
    }
}

#[cfg(feature = "debug-hmac")]
mod hmac_token {
    use hmac::{Hmac, Mac};
    use opentelemetry::trace::TraceId;
    use sha2::Sha256;

    use crate::sampler::config::DEBUG_TOKEN_CLOCK_SKEW_SECS;

    /// Most digits of the time in a token (`u64::MAX` has 20).
    const MAX_TIME_DIGITS: usize = 20;

    pub(super) fn verify(
        mac: &Hmac<Sha256>,
        token: &[u8],
        trace_id: TraceId,
        now: u64,
        max_age: u64,
    ) -> bool {
        let Some(dot) = token.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (time, signature) = (&token[..dot], &token[dot + 1..]);
        let Some(minted) = parse_time(time) else {
            return false;
        };
        // The time is not secret: refuse stale and future tokens before hashing.
        let fresh = minted <= now.saturating_add(DEBUG_TOKEN_CLOCK_SKEW_SECS)
            && now.saturating_sub(minted) <= max_age;
        if !fresh {
            return false;
        }
        let Some(expected) = decode_hex_32(signature) else {
            return false;
        };
        let mut mac = mac.clone();
        mac.update(&trace_id_hex(trace_id));
        mac.update(b".");
        mac.update(time);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&expected).is_ok()
    }

    fn parse_time(digits: &[u8]) -> Option<u64> {
        if digits.is_empty() || digits.len() > MAX_TIME_DIGITS {
            return None;
        }
        digits.iter().try_fold(0u64, |n, &b| {
            let d = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
            n.checked_mul(10)?.checked_add(d)
        })
    }

    /// The trace id as 32 lowercase hex digits, on the stack.
    pub(super) fn trace_id_hex(trace_id: TraceId) -> [u8; 32] {
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
}

/// The HMAC debug token a caller sends for `trace_id`, minted at `unix_seconds`:
/// `<unix_seconds>.<hex(HMAC-SHA256(secret, trace_id_hex + "." + unix_seconds))>`, with
/// `trace_id_hex` the 32 lowercase hex digits of the trace id (feature `debug-hmac`).
/// The sampler accepts it for `debug.max_age_secs` after `unix_seconds`.
///
/// ```
/// use meshtrace::sampler::debug_token_for;
/// use opentelemetry::trace::TraceId;
///
/// let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
/// let token = debug_token_for(b"a-debug-secret-of-32-bytes-long!", trace_id, 1_700_000_000);
/// assert!(token.starts_with("1700000000."));
/// assert_eq!(token.len(), "1700000000.".len() + 64);
/// ```
#[cfg(feature = "debug-hmac")]
pub fn debug_token_for(secret: &[u8], trace_id: TraceId, unix_seconds: u64) -> String {
    use hmac::{Hmac, Mac};
    use std::fmt::Write as _;
    let time = unix_seconds.to_string();
    let mut out = String::with_capacity(time.len() + 65);
    out.push_str(&time);
    out.push('.');
    let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret) else {
        // HMAC accepts keys of any length; this arm cannot be reached.
        return out;
    };
    mac.update(&hmac_token::trace_id_hex(trace_id));
    mac.update(b".");
    mac.update(time.as_bytes());
    for b in mac.finalize().into_bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}
