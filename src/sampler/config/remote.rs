//! `RemoteSamplingConfig`: where and how often to poll central sampling strategies (the
//! `[remote_sampling]` section of a tracing configuration, the `MESHTRACE_SAMPLING_REMOTE_*`
//! variables, [`TracingManagerBuilder::remote_sampling`](crate::TracingManagerBuilder::remote_sampling)),
//! and its checks.
//!
//! The data and the checks are compiled whatever the features, so that a configuration that
//! asks for the poller in a build without feature `jaeger-remote` is refused naming the
//! setting and the feature, not as an unknown key. The poller itself is
//! `sampler/remote.rs` (feature `jaeger-remote`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::config::env::Reader;
use crate::config::validate::{check_url, truncate};

/// `MESHTRACE_SAMPLING_REMOTE_ENDPOINT`: the strategies URL (e.g.
/// `http://jaeger-agent:5778/sampling`); setting it starts the poller.
pub const ENV_REMOTE_ENDPOINT: &str = "MESHTRACE_SAMPLING_REMOTE_ENDPOINT";
/// `MESHTRACE_SAMPLING_REMOTE_SERVICE`: the `service` query parameter (default: the service
/// name).
pub const ENV_REMOTE_SERVICE: &str = "MESHTRACE_SAMPLING_REMOTE_SERVICE";
/// `MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS`: seconds between polls (default 60).
pub const ENV_REMOTE_INTERVAL_SECS: &str = "MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS";
/// `MESHTRACE_SAMPLING_REMOTE_JITTER`: fraction of the interval drawn at random (default 0.1).
pub const ENV_REMOTE_JITTER: &str = "MESHTRACE_SAMPLING_REMOTE_JITTER";
/// `MESHTRACE_SAMPLING_REMOTE_TIMEOUT_MS`: how long one poll may take (default 5000).
pub const ENV_REMOTE_TIMEOUT_MS: &str = "MESHTRACE_SAMPLING_REMOTE_TIMEOUT_MS";
/// `MESHTRACE_SAMPLING_REMOTE_MAX_BODY_BYTES`: largest strategy body read (default 1 MiB).
pub const ENV_REMOTE_MAX_BODY_BYTES: &str = "MESHTRACE_SAMPLING_REMOTE_MAX_BODY_BYTES";
/// Default interval between polls.
pub const DEFAULT_REMOTE_INTERVAL: Duration = Duration::from_secs(60);
/// Default jitter: each interval is drawn from `interval * (1 ± 0.1)`.
pub const DEFAULT_REMOTE_JITTER: f64 = 0.1;
/// Default bound on one poll (connect, headers and body).
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest strategy body read.
pub const DEFAULT_REMOTE_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest interval accepted, in seconds: one day.
pub const MAX_REMOTE_INTERVAL_SECS: f64 = 86_400.0;
/// Longest timeout accepted, in milliseconds: ten minutes.
pub const MAX_REMOTE_TIMEOUT_MS: u64 = 600_000;
/// Largest `max_body_bytes` accepted: 64 MiB.
pub const MAX_REMOTE_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Longest service name sent.
const MAX_SERVICE_BYTES: usize = 256;

/// Where and how often to poll central sampling strategies in Jaeger's format
/// (`GET <endpoint>?service=<name>`; the poller needs feature `jaeger-remote`).
///
/// The `[remote_sampling]` section of a [`TracingConfig`](crate::config::TracingConfig), the
/// `MESHTRACE_SAMPLING_REMOTE_*` variables and
/// [`TracingManagerBuilder::remote_sampling`](crate::TracingManagerBuilder::remote_sampling)
/// all give one; the manager merges them field by field (builder, then file, then
/// environment) and starts the poller when an endpoint is set. Unset fields use the
/// defaults: the manager's service name, every 60 s with ±10% jitter, 5 s per poll, bodies up
/// to 1 MiB.
///
/// ```toml
/// [remote_sampling]
/// endpoint = "http://jaeger-agent:5778/sampling"
/// service = "checkout"        # default: the service name
/// interval_secs = 60.0
/// jitter = 0.1                # each interval is drawn from interval * (1 ± jitter)
/// timeout_ms = 5000
/// max_body_bytes = 1048576
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RemoteSamplingConfig {
    /// The strategies URL (`http://` or `https://`; `https://` needs a TLS feature of reqwest,
    /// e.g. meshtrace's `otlp-tls` or the application's own reqwest).
    pub endpoint: Option<String>,
    /// The service name sent as `?service=` (1 to 256 bytes); default: the manager's service
    /// name.
    pub service: Option<String>,
    /// Seconds between polls (`0.001 ..= 86400`, default 60).
    pub interval_secs: Option<f64>,
    /// Each interval is drawn uniformly from `interval * (1 ± jitter)`, so a fleet of
    /// instances does not poll in lockstep (`0.0 <= jitter < 1.0`, default 0.1).
    pub jitter: Option<f64>,
    /// Bound on one poll in milliseconds: connecting, the response head and the body
    /// (`1 ..= 600000`, default 5000).
    pub timeout_ms: Option<u64>,
    /// Largest body accepted, in bytes; a longer one is refused without being read whole
    /// (`1 ..= 67108864`, default 1048576).
    pub max_body_bytes: Option<usize>,
}

impl RemoteSamplingConfig {
    /// Polls `endpoint`; the other fields are unset (defaults, or lower-precedence sources).
    pub fn new(endpoint: impl Into<String>) -> Self {
        RemoteSamplingConfig {
            endpoint: Some(endpoint.into()),
            ..RemoteSamplingConfig::default()
        }
    }

    /// Sets the service name sent as `?service=`.
    #[must_use]
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Sets the time between polls.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval_secs = Some(interval.as_secs_f64());
        self
    }

    /// Sets the jitter (fraction of the interval).
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Sets the bound on one poll (whole milliseconds).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(crate::config::millis(timeout));
        self
    }

    /// Sets the largest body accepted.
    #[must_use]
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = Some(n);
        self
    }

    /// Reads the `MESHTRACE_SAMPLING_REMOTE_*` variables from the process environment; see
    /// [`from_env_with`](Self::from_env_with).
    pub fn from_env() -> Result<Option<Self>, Error> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// `None` unless `MESHTRACE_SAMPLING_REMOTE_ENDPOINT` is set; the service is
    /// `MESHTRACE_SAMPLING_REMOTE_SERVICE`, else `OTEL_SERVICE_NAME`, else an error. Invalid
    /// values are errors naming the variable and the value. (The manager reads the same
    /// variables itself; this is for [`SamplerHandle::poll_strategies`] without it.)
    ///
    /// [`SamplerHandle::poll_strategies`]: crate::sampler::SamplerHandle
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, Error> {
        let env = Reader::new(&lookup);
        let mut config = Self::read_env(&env)?;
        if config.endpoint.is_none() {
            return Ok(None);
        }
        if config.service.is_none() {
            config.service = Some(env.get(crate::config::env::OTEL_SERVICE_NAME)?.ok_or_else(
                || {
                    Error::config(
                        ENV_REMOTE_SERVICE,
                        "<unset>",
                        format!(
                            "{ENV_REMOTE_ENDPOINT} is set, so the service to ask strategies \
                                 for must be named here or in OTEL_SERVICE_NAME"
                        ),
                    )
                },
            )?);
        }
        Ok(Some(config))
    }

    /// The variables that are set, each parsed and checked (errors name the variable and show
    /// the value as given). Without the endpoint variable the others are returned too: they
    /// apply to a poller that a file or the builder configures.
    pub(crate) fn read_env(env: &Reader<'_>) -> Result<Self, Error> {
        let mut config = RemoteSamplingConfig::default();
        if let Some(url) = env.get(ENV_REMOTE_ENDPOINT)? {
            check_url(ENV_REMOTE_ENDPOINT, &url)?;
            config.endpoint = Some(url);
        }
        if let Some(service) = env.get(ENV_REMOTE_SERVICE)? {
            check(ENV_REMOTE_SERVICE, &service, service_problem(&service))?;
            config.service = Some(service);
        }
        if let Some(v) = env.get(ENV_REMOTE_INTERVAL_SECS)? {
            let secs = parse(ENV_REMOTE_INTERVAL_SECS, &v, "a number of seconds")?;
            check(ENV_REMOTE_INTERVAL_SECS, &v, interval_problem(secs))?;
            config.interval_secs = Some(secs);
        }
        if let Some(v) = env.get(ENV_REMOTE_JITTER)? {
            let jitter = parse(ENV_REMOTE_JITTER, &v, "a number")?;
            check(ENV_REMOTE_JITTER, &v, jitter_problem(jitter))?;
            config.jitter = Some(jitter);
        }
        if let Some(v) = env.get(ENV_REMOTE_TIMEOUT_MS)? {
            let ms = parse(ENV_REMOTE_TIMEOUT_MS, &v, "a whole number of milliseconds")?;
            check(ENV_REMOTE_TIMEOUT_MS, &v, timeout_problem(ms))?;
            config.timeout_ms = Some(ms);
        }
        if let Some(v) = env.get(ENV_REMOTE_MAX_BODY_BYTES)? {
            let n = parse(ENV_REMOTE_MAX_BODY_BYTES, &v, "a whole number of bytes")?;
            check(ENV_REMOTE_MAX_BODY_BYTES, &v, max_body_problem(n))?;
            config.max_body_bytes = Some(n);
        }
        Ok(config)
    }

    /// Checks every field as the poller needs it: the endpoint and the service must be set
    /// (the manager fills the service in with its service name), the rest must be in range
    /// when set. Errors name the key (`remote_sampling.<name>`) and the value.
    pub fn validate(&self) -> Result<(), Error> {
        const ENDPOINT: &str = "remote_sampling.endpoint";
        match &self.endpoint {
            Some(url) => check_url(ENDPOINT, url)?,
            None => {
                return Err(Error::config(
                    ENDPOINT,
                    "<unset>",
                    "name the strategies URL to poll, such as http://jaeger-agent:5778/sampling",
                ));
            }
        }
        match &self.service {
            Some(service) => check("remote_sampling.service", service, service_problem(service))?,
            None => {
                return Err(Error::config(
                    "remote_sampling.service",
                    "<unset>",
                    "name the service to ask strategies for",
                ));
            }
        }
        self.check_ranges(|key| format!("remote_sampling.{key}"))
    }

    /// Checks the set numeric fields; `field` names a key (`interval_secs`, ...) for errors.
    pub(crate) fn check_ranges(&self, field: impl Fn(&'static str) -> String) -> Result<(), Error> {
        if let Some(v) = self.interval_secs {
            check(field("interval_secs"), v, interval_problem(v))?;
        }
        if let Some(v) = self.jitter {
            check(field("jitter"), v, jitter_problem(v))?;
        }
        if let Some(v) = self.timeout_ms {
            check(field("timeout_ms"), v, timeout_problem(v))?;
        }
        if let Some(v) = self.max_body_bytes {
            check(field("max_body_bytes"), v, max_body_problem(v))?;
        }
        Ok(())
    }

    /// `over`'s set fields win.
    pub(crate) fn merge(self, over: RemoteSamplingConfig) -> RemoteSamplingConfig {
        RemoteSamplingConfig {
            endpoint: over.endpoint.or(self.endpoint),
            service: over.service.or(self.service),
            interval_secs: over.interval_secs.or(self.interval_secs),
            jitter: over.jitter.or(self.jitter),
            timeout_ms: over.timeout_ms.or(self.timeout_ms),
            max_body_bytes: over.max_body_bytes.or(self.max_body_bytes),
        }
    }
}

/// The service name is checked by [`RemoteSamplingConfig::validate`] and by the manager.
pub(crate) fn service_problem(service: &str) -> Option<String> {
    if service.trim().is_empty() || service.len() > MAX_SERVICE_BYTES {
        return Some(format!("it must be 1 to {MAX_SERVICE_BYTES} bytes"));
    }
    if service.chars().any(char::is_control) {
        return Some("it must not contain control characters".to_owned());
    }
    None
}

fn interval_problem(secs: f64) -> Option<String> {
    (!(0.001..=MAX_REMOTE_INTERVAL_SECS).contains(&secs)).then(|| {
        format!("it must be a number of seconds between 0.001 and {MAX_REMOTE_INTERVAL_SECS}")
    })
}

fn jitter_problem(jitter: f64) -> Option<String> {
    (!(0.0..1.0).contains(&jitter))
        .then(|| "it must be at least 0.0 and below 1.0 (a fraction of the interval)".to_owned())
}

fn timeout_problem(ms: u64) -> Option<String> {
    (!(1..=MAX_REMOTE_TIMEOUT_MS).contains(&ms))
        .then(|| format!("it must be between 1 and {MAX_REMOTE_TIMEOUT_MS} milliseconds"))
}

fn max_body_problem(n: usize) -> Option<String> {
    (!(1..=MAX_REMOTE_MAX_BODY_BYTES).contains(&n))
        .then(|| format!("it must be between 1 and {MAX_REMOTE_MAX_BODY_BYTES} bytes"))
}

/// An error naming `field` and showing `value` when there is a problem.
fn check(
    field: impl Into<String>,
    value: impl std::fmt::Display,
    problem: Option<String>,
) -> Result<(), Error> {
    match problem {
        Some(reason) => Err(Error::config(
            field,
            truncate(&value.to_string(), 64),
            reason,
        )),
        None => Ok(()),
    }
}

fn parse<T: std::str::FromStr>(var: &str, value: &str, what: &str) -> Result<T, Error> {
    value
        .parse()
        .map_err(|_| Error::config(var, truncate(value, 64), format!("it must be {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_the_keys_units() {
        let c = RemoteSamplingConfig::new("http://a/s")
            .interval(Duration::from_millis(1500))
            .timeout(Duration::from_secs(2));
        assert_eq!((c.interval_secs, c.timeout_ms), (Some(1.5), Some(2000)));
    }

    #[test]
    fn merge_is_field_by_field() {
        let base = RemoteSamplingConfig::new("http://env/s").service("env");
        let top = RemoteSamplingConfig {
            interval_secs: Some(5.0),
            ..RemoteSamplingConfig::default()
        }
        .service("file");
        let merged = base.merge(top);
        assert_eq!(merged.endpoint.as_deref(), Some("http://env/s"));
        assert_eq!(merged.service.as_deref(), Some("file"));
        assert_eq!(merged.interval_secs, Some(5.0));
    }
}
