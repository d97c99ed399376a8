//! The sampler's environment variables, read with the crate's one environment reader
//! (trimmed, blank = unset, at most 16 KiB, invalid = an error naming the variable).

use super::{
    ENV_ADAPTATION_TIME_SECS, ENV_BASE_RATE, ENV_CONFIG_FILE, ENV_DEBUG_HMAC_SECRET,
    ENV_DEBUG_MAX_AGE_SECS, ENV_DEBUG_MAX_PER_SECOND, ENV_DEBUG_TOKENS, ENV_HIGH_VALUE_RATE,
    ENV_KEY_IDLE_SECS, ENV_LIMIT_KEY, ENV_LOWER_BOUND_TRACES_PER_SECOND, ENV_MAX_INCREASE,
    ENV_MAX_KEYS, ENV_MAX_PROBABILITY, ENV_MIN_PROBABILITY, ENV_OTEL_SAMPLER, ENV_OTEL_SAMPLER_ARG,
    ENV_OVERFLOW_TRACES_PER_SECOND, ENV_PER_KEY_TRACES_PER_SECOND, ENV_TRACES_PER_SECOND,
    SamplingConfig,
};
use super::{
    ENV_DEFERRED, ENV_DEFERRED_FRACTION, ENV_DEFERRED_MAX_BYTES, ENV_DEFERRED_MAX_PER_SECOND,
    ENV_DEFERRED_MAX_SPANS_PER_TRACE, ENV_DEFERRED_MAX_TRACES, ENV_DEFERRED_PROPAGATE_SAMPLED,
    ENV_DEFERRED_SLOW_ROUTES, ENV_DEFERRED_SLOW_THRESHOLD_MS, ENV_DEFERRED_TIMEOUT_MS, SlowRoute,
};
use crate::Error;
use crate::config::env::Reader;

/// Read no more: the debug header is a setting of the server layer.
const MOVED_DEBUG_HEADER: &str = "MESHTRACE_SAMPLING_DEBUG_HEADER";

impl SamplingConfig {
    /// Builds a configuration from the process environment; see [`Self::from_env_with`].
    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Builds a configuration from variables given by `lookup` (for tests and for
    /// sources other than the process environment), starting from the defaults:
    ///
    /// 1. `MESHTRACE_SAMPLING_CONFIG_FILE` (TOML/JSON/YAML) if set;
    /// 2. `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` set the base rate
    ///    (`always_on` 1.0, `always_off` 0.0, `*traceidratio` the argument). Parent
    ///    decisions are always honoured, so `traceidratio` behaves like
    ///    `parentbased_traceidratio`;
    /// 3. `MESHTRACE_SAMPLING_BASE_RATE`, `MESHTRACE_SAMPLING_HIGH_VALUE_RATE`,
    ///    `MESHTRACE_SAMPLING_DEBUG_TOKENS` (comma-separated),
    ///    `MESHTRACE_SAMPLING_DEBUG_HMAC_SECRET`, `MESHTRACE_SAMPLING_DEBUG_MAX_PER_SECOND`,
    ///    `MESHTRACE_SAMPLING_DEBUG_MAX_AGE_SECS`;
    /// 4. the rate limits ([`LimitsConfig`](crate::sampler::LimitsConfig)):
    ///    `MESHTRACE_SAMPLING_TRACES_PER_SECOND`, `..._PER_KEY_TRACES_PER_SECOND`,
    ///    `..._LOWER_BOUND_TRACES_PER_SECOND`, `..._OVERFLOW_TRACES_PER_SECOND`,
    ///    `..._LIMIT_KEY` (comma-separated attribute names), `..._MAX_KEYS`,
    ///    `..._KEY_IDLE_SECS`, `..._ADAPTATION_TIME_SECS`, `..._MAX_INCREASE`,
    ///    `..._MIN_PROBABILITY`, `..._MAX_PROBABILITY` (all `MESHTRACE_SAMPLING_...`);
    /// 5. deferred capture ([`DeferredConfig`](crate::sampler::DeferredConfig)):
    ///    `MESHTRACE_SAMPLING_DEFERRED` (`true`/`false`), `..._DEFERRED_FRACTION`,
    ///    `..._DEFERRED_MAX_PER_SECOND`, `..._DEFERRED_SLOW_THRESHOLD_MS`,
    ///    `..._DEFERRED_SLOW_ROUTES` (`glob=ms` pairs, comma-separated, e.g.
    ///    `/reports/**=5000,/search=800`), `..._DEFERRED_MAX_TRACES`,
    ///    `..._DEFERRED_MAX_SPANS_PER_TRACE`, `..._DEFERRED_MAX_BYTES`,
    ///    `..._DEFERRED_TIMEOUT_MS`, `..._DEFERRED_PROPAGATE_SAMPLED` (`true`/`false`).
    ///
    /// Values are trimmed and blank values count as unset, as for every variable meshtrace
    /// reads. Unparsable values are errors naming the variable, not silently ignored; so is
    /// `MESHTRACE_SAMPLING_DEBUG_HEADER`, which is no longer read (the header is set on the
    /// server layer). Span limits (`OTEL_SPAN_*_LIMIT`) are read by
    /// `TracingManager::from_env`, not here.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = Reader::new(&lookup);
        if let Some(v) = env.get(MOVED_DEBUG_HEADER)? {
            return Err(Error::config(
                MOVED_DEBUG_HEADER,
                crate::config::validate::truncate(&v, 64),
                "this variable is no longer read: the debug header is a setting of the server \
                 layer (`TracingLayer::debug_header`); unset it",
            ));
        }
        let mut config = match env.get(ENV_CONFIG_FILE)? {
            Some(path) => SamplingConfig::load(ENV_CONFIG_FILE, path.as_ref())?,
            None => SamplingConfig::default(),
        };
        if let Some(sampler) = env.get(ENV_OTEL_SAMPLER)? {
            config.base_rate = match sampler.to_ascii_lowercase().as_str() {
                "always_on" | "parentbased_always_on" => 1.0,
                "always_off" | "parentbased_always_off" => 0.0,
                "traceidratio" | "parentbased_traceidratio" => {
                    match env.get(ENV_OTEL_SAMPLER_ARG)? {
                        Some(arg) => parse_rate(ENV_OTEL_SAMPLER_ARG, &arg)?,
                        None => 1.0,
                    }
                }
                _ => {
                    return Err(Error::config(
                        ENV_OTEL_SAMPLER,
                        crate::config::validate::truncate(&sampler, 64),
                        "it must be always_on, always_off, traceidratio, parentbased_always_on, \
                         parentbased_always_off or parentbased_traceidratio",
                    ));
                }
            };
        }
        if let Some(v) = env.get(ENV_BASE_RATE)? {
            config.base_rate = parse_rate(ENV_BASE_RATE, &v)?;
        }
        if let Some(v) = env.get(ENV_HIGH_VALUE_RATE)? {
            config.high_value_rate = parse_rate(ENV_HIGH_VALUE_RATE, &v)?;
        }
        if let Some(v) = env.get(ENV_DEBUG_TOKENS)? {
            config.debug.tokens = v
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = env.get(ENV_DEBUG_HMAC_SECRET)? {
            config.debug.hmac_secret = Some(v);
        }
        if let Some(v) = env.get(ENV_DEBUG_MAX_PER_SECOND)? {
            config.debug.max_per_second = v.parse().map_err(|_| {
                Error::config(
                    ENV_DEBUG_MAX_PER_SECOND,
                    crate::config::validate::truncate(&v, 64),
                    format!(
                        "it must be a whole number of traces per second between 0 and {}",
                        super::MAX_DEBUG_PER_SECOND
                    ),
                )
            })?;
        }
        if let Some(v) = env.get(ENV_DEBUG_MAX_AGE_SECS)? {
            config.debug.max_age_secs = v.parse().map_err(|_| {
                Error::config(
                    ENV_DEBUG_MAX_AGE_SECS,
                    crate::config::validate::truncate(&v, 64),
                    format!(
                        "it must be a whole number of seconds between 1 and {}",
                        super::MAX_DEBUG_MAX_AGE_SECS
                    ),
                )
            })?;
        }
        read_limits(&env, &mut config.limits)?;
        read_deferred(&env, &mut config.deferred)?;
        // Checked again by the sampler; here so that errors name the variables.
        config.validate().map_err(rename_env_field)?;
        Ok(config)
    }
}

/// A check of a value that came from a variable names the variable, not the field.
fn rename_env_field(mut error: Error) -> Error {
    let (Error::Config { field, .. } | Error::MissingFeature { field, .. }) = &mut error else {
        return error;
    };
    let var = match field.as_str() {
        "sampling.base_rate" => ENV_BASE_RATE,
        "sampling.high_value_rate" => ENV_HIGH_VALUE_RATE,
        "sampling.debug.hmac_secret" => ENV_DEBUG_HMAC_SECRET,
        "sampling.debug.max_per_second" => ENV_DEBUG_MAX_PER_SECOND,
        "sampling.debug.max_age_secs" => ENV_DEBUG_MAX_AGE_SECS,
        f if f.starts_with("sampling.debug.tokens[") => ENV_DEBUG_TOKENS,
        "sampling.limits.traces_per_second" => ENV_TRACES_PER_SECOND,
        "sampling.limits.per_key_traces_per_second" => ENV_PER_KEY_TRACES_PER_SECOND,
        "sampling.limits.lower_bound_traces_per_second" => ENV_LOWER_BOUND_TRACES_PER_SECOND,
        "sampling.limits.overflow_traces_per_second" => ENV_OVERFLOW_TRACES_PER_SECOND,
        f if f.starts_with("sampling.limits.key") && !f.starts_with("sampling.limits.key_") => {
            ENV_LIMIT_KEY
        }
        "sampling.limits.max_keys" => ENV_MAX_KEYS,
        "sampling.limits.key_idle_secs" => ENV_KEY_IDLE_SECS,
        "sampling.limits.adaptation_time_secs" => ENV_ADAPTATION_TIME_SECS,
        "sampling.limits.max_increase" => ENV_MAX_INCREASE,
        "sampling.limits.min_probability" => ENV_MIN_PROBABILITY,
        "sampling.limits.max_probability" => ENV_MAX_PROBABILITY,
        "sampling.deferred.fraction" => ENV_DEFERRED_FRACTION,
        "sampling.deferred.max_per_second" => ENV_DEFERRED_MAX_PER_SECOND,
        "sampling.deferred.slow_threshold_ms" => ENV_DEFERRED_SLOW_THRESHOLD_MS,
        f if f.starts_with("sampling.deferred.slow_routes") => ENV_DEFERRED_SLOW_ROUTES,
        "sampling.deferred.max_traces" => ENV_DEFERRED_MAX_TRACES,
        "sampling.deferred.max_spans_per_trace" => ENV_DEFERRED_MAX_SPANS_PER_TRACE,
        "sampling.deferred.max_bytes" => ENV_DEFERRED_MAX_BYTES,
        "sampling.deferred.timeout_ms" => ENV_DEFERRED_TIMEOUT_MS,
        _ => return error,
    };
    *field = var.to_owned();
    error
}

fn parse_rate(name: &str, value: &str) -> Result<f64, Error> {
    let rate: f64 = value.parse().map_err(|_| {
        Error::config(
            name,
            crate::config::validate::truncate(value, 64),
            "it must be a number between 0.0 and 1.0",
        )
    })?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(Error::config(name, value, "it must be between 0.0 and 1.0"));
    }
    Ok(rate)
}

/// The `[limits]` variables; numbers that do not parse are errors naming the variable, the
/// ranges are checked with the rest of the configuration.
fn read_limits(env: &Reader<'_>, limits: &mut super::LimitsConfig) -> Result<(), Error> {
    let number = |name: &str| -> Result<Option<f64>, Error> {
        let Some(v) = env.get(name)? else {
            return Ok(None);
        };
        match v.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Some(n)),
            _ => Err(Error::config(
                name,
                crate::config::validate::truncate(&v, 64),
                "it must be a number",
            )),
        }
    };
    for (name, slot) in [
        (ENV_TRACES_PER_SECOND, &mut limits.traces_per_second),
        (
            ENV_PER_KEY_TRACES_PER_SECOND,
            &mut limits.per_key_traces_per_second,
        ),
        (
            ENV_LOWER_BOUND_TRACES_PER_SECOND,
            &mut limits.lower_bound_traces_per_second,
        ),
        (
            ENV_OVERFLOW_TRACES_PER_SECOND,
            &mut limits.overflow_traces_per_second,
        ),
    ] {
        if let Some(v) = number(name)? {
            *slot = Some(v);
        }
    }
    for (name, slot) in [
        (ENV_KEY_IDLE_SECS, &mut limits.key_idle_secs),
        (ENV_ADAPTATION_TIME_SECS, &mut limits.adaptation_time_secs),
        (ENV_MAX_INCREASE, &mut limits.max_increase),
        (ENV_MIN_PROBABILITY, &mut limits.min_probability),
        (ENV_MAX_PROBABILITY, &mut limits.max_probability),
    ] {
        if let Some(v) = number(name)? {
            *slot = v;
        }
    }
    if let Some(v) = env.get(ENV_LIMIT_KEY)? {
        limits.key = v
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(v) = env.get(ENV_MAX_KEYS)? {
        limits.max_keys = v.parse().map_err(|_| {
            Error::config(
                ENV_MAX_KEYS,
                crate::config::validate::truncate(&v, 64),
                format!(
                    "it must be a whole number between 1 and {}",
                    super::MAX_MAX_KEYS
                ),
            )
        })?;
    }
    Ok(())
}

/// The deferred-capture variables; values that do not parse are errors naming the variable,
/// the ranges are checked with the rest of the configuration.
fn read_deferred(env: &Reader<'_>, deferred: &mut super::DeferredConfig) -> Result<(), Error> {
    let shown = |v: &str| crate::config::validate::truncate(v, 64);
    let boolean = |name: &str| -> Result<Option<bool>, Error> {
        match env.get(name)? {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(Error::config(
                name,
                shown(&v),
                "it must be `true` or `false`",
            )),
        }
    };
    let whole = |name: &str| -> Result<Option<u64>, Error> {
        match env.get(name)? {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::config(name, shown(&v), "it must be a whole number")),
        }
    };
    let size = |name: &str| -> Result<Option<usize>, Error> {
        whole(name).map(|v| v.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
    };
    if let Some(on) = boolean(ENV_DEFERRED)? {
        deferred.enabled = on;
    }
    if let Some(on) = boolean(ENV_DEFERRED_PROPAGATE_SAMPLED)? {
        deferred.propagate_sampled = on;
    }
    if let Some(v) = env.get(ENV_DEFERRED_FRACTION)? {
        deferred.fraction = parse_rate(ENV_DEFERRED_FRACTION, &v)?;
    }
    if let Some(n) = whole(ENV_DEFERRED_MAX_PER_SECOND)? {
        deferred.max_per_second = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(n) = whole(ENV_DEFERRED_SLOW_THRESHOLD_MS)? {
        deferred.slow_threshold_ms = n;
    }
    if let Some(n) = whole(ENV_DEFERRED_TIMEOUT_MS)? {
        deferred.timeout_ms = n;
    }
    if let Some(n) = size(ENV_DEFERRED_MAX_TRACES)? {
        deferred.max_traces = n;
    }
    if let Some(n) = size(ENV_DEFERRED_MAX_SPANS_PER_TRACE)? {
        deferred.max_spans_per_trace = n;
    }
    if let Some(n) = size(ENV_DEFERRED_MAX_BYTES)? {
        deferred.max_bytes = n;
    }
    if let Some(v) = env.get(ENV_DEFERRED_SLOW_ROUTES)? {
        let mut routes = Vec::new();
        for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = pair
                .rsplit_once('=')
                .and_then(|(route, ms)| Some((route.trim(), ms.trim().parse::<u64>().ok()?)))
                .filter(|(route, _)| !route.is_empty());
            let Some((route, ms)) = parsed else {
                return Err(Error::config(
                    ENV_DEFERRED_SLOW_ROUTES,
                    shown(pair),
                    "each entry must be `route-glob=milliseconds`, e.g. `/reports/**=5000`",
                ));
            };
            routes.push(SlowRoute {
                route: route.to_owned(),
                threshold_ms: ms,
            });
        }
        deferred.slow_routes = routes;
    }
    Ok(())
}
