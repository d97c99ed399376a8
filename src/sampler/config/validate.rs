//! The checks of a `SamplingConfig`. The sampler compiles a configuration only through
//! these, so [`SamplingConfig::validate`], `CustomSampler::new` and `SamplerHandle::reload`
//! accept and refuse the same things. Errors name the field (`sampling.rules[2].rate`) and
//! never show a token or the secret.

use super::{
    AttributeMatch, MAX_DEBUG_MAX_AGE_SECS, MAX_DEBUG_PER_SECOND, MAX_DEBUG_TOKEN_LEN,
    MAX_RULE_NAME_LEN, MIN_HMAC_SECRET_LEN, SamplingConfig,
};
use crate::Error;
use crate::sampler::consistent::Threshold;

impl SamplingConfig {
    /// Checks every field; the error names the field and value, e.g.
    /// `sampling.rules[2].rate = "1.5" is invalid: it must be between 0.0 and 1.0 (rule "c")`.
    pub fn validate(&self) -> Result<(), Error> {
        crate::sampler::Compiled::new(self).map(|_| ())
    }
}

/// A probability in `0.0..=1.0`, as its consistent-sampling threshold.
pub(crate) fn rate(field: &str, rate: f64) -> Result<Threshold, Error> {
    Threshold::from_probability(rate)
        .ok_or_else(|| Error::config(field, rate, "it must be between 0.0 and 1.0"))
}

pub(crate) fn rule_name(field: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_RULE_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(Error::config(
            field,
            crate::config::validate::truncate(name, 64),
            "it must be 1-64 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    Ok(())
}

/// An HTTP method token (`GET`, `POST`, ...).
pub(crate) fn method(field: &str, method: &str) -> Result<(), Error> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || method.len() > 32 || !method.bytes().all(is_tchar) {
        return Err(Error::config(
            field,
            crate::config::validate::truncate(method, 64),
            "it must be an HTTP method such as GET or POST",
        ));
    }
    Ok(())
}

/// One attribute condition of a rule: `field` is the rule's `attributes` field (e.g.
/// `sampling.rules[2].attributes`, `export_filter.rules[0].attributes`).
pub(crate) fn attribute(field: &str, key: &str, value: &AttributeMatch) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::config(
            field,
            "",
            "an attribute key must not be empty",
        ));
    }
    if let AttributeMatch::Float(f) = value
        && !f.is_finite()
    {
        return Err(Error::config(
            format!("{field}.{}", crate::config::validate::truncate(key, 64)),
            f,
            "it must be a finite number",
        ));
    }
    Ok(())
}

/// An allow-listed token: 1-256 visible ASCII characters. The token is a secret: the error
/// names its position and length, never its value.
pub(crate) fn token(i: usize, token: &str) -> Result<(), Error> {
    let valid = !token.is_empty()
        && token.len() <= MAX_DEBUG_TOKEN_LEN
        && token.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !valid {
        return Err(Error::config(
            format!("sampling.debug.tokens[{i}]"),
            format_args!("<{} bytes>", token.len()),
            "a token must be 1-256 visible ASCII characters (no spaces)",
        ));
    }
    Ok(())
}

/// The HMAC secret: at least 16 bytes, and the `debug-hmac` feature compiled in.
pub(crate) fn hmac_secret(secret: &str) -> Result<(), Error> {
    const FIELD: &str = "sampling.debug.hmac_secret";
    let shown = format_args!("<{} bytes>", secret.len());
    if !cfg!(feature = "debug-hmac") {
        return Err(Error::missing_feature(
            FIELD,
            shown,
            "configures HMAC debug tokens",
            "debug-hmac",
        ));
    }
    if secret.len() < MIN_HMAC_SECRET_LEN {
        return Err(Error::config(
            FIELD,
            shown,
            format!("the secret must be at least {MIN_HMAC_SECRET_LEN} bytes"),
        ));
    }
    Ok(())
}

pub(crate) fn max_per_second(n: u32) -> Result<(), Error> {
    if n > MAX_DEBUG_PER_SECOND {
        return Err(Error::config(
            "sampling.debug.max_per_second",
            n,
            format!("it must be between 0 and {MAX_DEBUG_PER_SECOND}"),
        ));
    }
    Ok(())
}

pub(crate) fn max_age_secs(n: u64) -> Result<(), Error> {
    if n == 0 || n > MAX_DEBUG_MAX_AGE_SECS {
        return Err(Error::config(
            "sampling.debug.max_age_secs",
            n,
            format!("it must be between 1 and {MAX_DEBUG_MAX_AGE_SECS} seconds"),
        ));
    }
    Ok(())
}
