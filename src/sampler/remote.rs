//! The central-strategies poller (feature `jaeger-remote`): `GET <endpoint>?service=<name>`
//! on an interval with jitter, each answer parsed and validated as a
//! [`SamplingStrategy`] and swapped into the sampler atomically
//! ([`SamplerHandle::apply_strategy`]).
//!
//! Whatever goes wrong (the endpoint unreachable, slower than the timeout, an HTTP error
//! status, a body over the size limit, invalid JSON, an invalid strategy), the last good
//! strategy stays in force, and the failure is logged once per streak (a `tracing` warning
//! when a streak starts, an info event when a poll succeeds again). The poller never
//! replaces a good strategy with an invalid one; an unchanged strategy is not swapped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::{SamplerHandle, SamplingStrategy};
use crate::Error;
use crate::config::env::Reader;

/// `MESHTRACE_SAMPLING_REMOTE_ENDPOINT`: the strategies URL (e.g.
/// `http://jaeger-agent:5778/sampling`); setting it enables the poller.
pub const ENV_REMOTE_ENDPOINT: &str = "MESHTRACE_SAMPLING_REMOTE_ENDPOINT";
/// `MESHTRACE_SAMPLING_REMOTE_SERVICE`: the `service` query parameter (default:
/// `OTEL_SERVICE_NAME`).
pub const ENV_REMOTE_SERVICE: &str = "MESHTRACE_SAMPLING_REMOTE_SERVICE";
/// `MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS`: seconds between polls (default 60).
pub const ENV_REMOTE_INTERVAL_SECS: &str = "MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS";
/// `MESHTRACE_SAMPLING_REMOTE_TIMEOUT_MS`: how long one poll may take (default 5000).
pub const ENV_REMOTE_TIMEOUT_MS: &str = "MESHTRACE_SAMPLING_REMOTE_TIMEOUT_MS";
/// Default interval between polls.
pub const DEFAULT_REMOTE_INTERVAL: Duration = Duration::from_secs(60);
/// Default bound on one poll (connect, headers and body).
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest strategy body read.
pub const DEFAULT_REMOTE_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest kept text of the last error.
const MAX_ERROR_LEN: usize = 512;

/// Where and how often to poll central sampling strategies.
///
/// Defaults: every 60 s with ±10% jitter, 5 s per poll, bodies up to 1 MiB.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RemoteSamplingConfig {
    /// The strategies URL (`http://` or `https://`; `https://` needs a TLS feature of reqwest,
    /// e.g. meshtrace's `otlp-tls` or the application's own reqwest).
    pub endpoint: String,
    /// The service name sent as `?service=`.
    pub service: String,
    /// Time between polls.
    pub interval: Duration,
    /// Each interval is drawn uniformly from `interval * (1 ± jitter)`, so a fleet of
    /// instances does not poll in lockstep (`0.0..1.0`, default 0.1).
    pub jitter: f64,
    /// Bound on one poll: connecting, the response head and the body.
    pub timeout: Duration,
    /// Largest body accepted; a longer one is refused without being read whole.
    pub max_body_bytes: usize,
}

impl RemoteSamplingConfig {
    /// Polls `endpoint` for `service` with the defaults.
    pub fn new(endpoint: impl Into<String>, service: impl Into<String>) -> Self {
        RemoteSamplingConfig {
            endpoint: endpoint.into(),
            service: service.into(),
            interval: DEFAULT_REMOTE_INTERVAL,
            jitter: 0.1,
            timeout: DEFAULT_REMOTE_TIMEOUT,
            max_body_bytes: DEFAULT_REMOTE_MAX_BODY_BYTES,
        }
    }

    /// Sets the time between polls.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the jitter (fraction of the interval).
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the bound on one poll.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the largest body accepted.
    #[must_use]
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Reads the `MESHTRACE_SAMPLING_REMOTE_*` variables from the process environment; see
    /// [`from_env_with`](Self::from_env_with).
    pub fn from_env() -> Result<Option<Self>, Error> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// `None` unless `MESHTRACE_SAMPLING_REMOTE_ENDPOINT` is set; the service is
    /// `MESHTRACE_SAMPLING_REMOTE_SERVICE`, else `OTEL_SERVICE_NAME`. Invalid values are
    /// errors naming the variable.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, Error> {
        let env = Reader::new(&lookup);
        let Some(endpoint) = env.get(ENV_REMOTE_ENDPOINT)? else {
            return Ok(None);
        };
        let service = match env.get(ENV_REMOTE_SERVICE)? {
            Some(s) => s,
            None => env
                .get(crate::config::env::OTEL_SERVICE_NAME)?
                .ok_or_else(|| {
                    Error::config(
                        ENV_REMOTE_SERVICE,
                        "<unset>",
                        format!(
                            "{ENV_REMOTE_ENDPOINT} is set, so the service to ask strategies \
                             for must be named here or in OTEL_SERVICE_NAME"
                        ),
                    )
                })?,
        };
        let mut config = RemoteSamplingConfig::new(endpoint, service);
        if let Some(v) = env.get(ENV_REMOTE_INTERVAL_SECS)? {
            config.interval = v
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| {
                    Error::config(
                        ENV_REMOTE_INTERVAL_SECS,
                        crate::config::validate::truncate(&v, 64),
                        "it must be a number of seconds",
                    )
                })?;
        }
        if let Some(v) = env.get(ENV_REMOTE_TIMEOUT_MS)? {
            config.timeout = v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                Error::config(
                    ENV_REMOTE_TIMEOUT_MS,
                    crate::config::validate::truncate(&v, 64),
                    "it must be a whole number of milliseconds",
                )
            })?;
        }
        config.validate().map_err(|mut e| {
            if let Error::Config { field, .. } = &mut e {
                *field = match field.as_str() {
                    "sampling.remote.endpoint" => ENV_REMOTE_ENDPOINT,
                    "sampling.remote.service" => ENV_REMOTE_SERVICE,
                    "sampling.remote.interval" => ENV_REMOTE_INTERVAL_SECS,
                    "sampling.remote.timeout" => ENV_REMOTE_TIMEOUT_MS,
                    _ => return e,
                }
                .to_owned();
            }
            e
        })?;
        Ok(Some(config))
    }

    /// Checks every field; errors name the field (`sampling.remote.<name>`) and value.
    pub fn validate(&self) -> Result<(), Error> {
        crate::config::validate::check_url("sampling.remote.endpoint", &self.endpoint)?;
        if self.service.is_empty() || self.service.len() > 256 {
            return Err(Error::config(
                "sampling.remote.service",
                crate::config::validate::truncate(&self.service, 64),
                "it must be 1 to 256 bytes",
            ));
        }
        let range = |field: &str, d: Duration, max: Duration| {
            if d < Duration::from_millis(1) || d > max {
                return Err(Error::config(
                    field,
                    format_args!("{d:?}"),
                    format!("it must be between 1ms and {max:?}"),
                ));
            }
            Ok(())
        };
        range(
            "sampling.remote.interval",
            self.interval,
            Duration::from_secs(86_400),
        )?;
        range(
            "sampling.remote.timeout",
            self.timeout,
            Duration::from_secs(600),
        )?;
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(Error::config(
                "sampling.remote.jitter",
                self.jitter,
                "it must be at least 0.0 and below 1.0",
            ));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > 64 * 1024 * 1024 {
            return Err(Error::config(
                "sampling.remote.max_body_bytes",
                self.max_body_bytes,
                "it must be between 1 and 67108864",
            ));
        }
        Ok(())
    }

    /// The URL polled: the endpoint with `service=<name>` (percent-encoded) appended.
    fn url(&self) -> String {
        let service = percent_encoding::utf8_percent_encode(
            &self.service,
            percent_encoding::NON_ALPHANUMERIC,
        );
        let sep = if self.endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}service={service}", self.endpoint)
    }
}

/// What the poller has done so far (see [`StrategyPoller::status`]).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PollerStatus {
    /// Polls finished (successful or not).
    pub polls: u64,
    /// Polls whose strategy was put in force (a changed, valid strategy).
    pub applied: u64,
    /// Polls that failed; the strategy in force stayed.
    pub failures: u64,
    /// Whether the last poll failed.
    pub failing: bool,
    /// The last failure, as logged (at most 512 bytes).
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Wakes the task for an immediate poll.
    trigger: Notify,
    /// Wakes waiters after each poll.
    polled: Notify,
    status: Mutex<PollerStatus>,
}

impl Shared {
    fn status(&self) -> PollerStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }
}

/// Polls central strategies until dropped (see [`SamplerHandle::poll_strategies`]).
#[derive(Debug)]
#[must_use = "strategies are polled only until the StrategyPoller is dropped"]
pub struct StrategyPoller {
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Drop for StrategyPoller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StrategyPoller {
    /// Polls now instead of at the end of the current interval.
    pub fn poll_now(&self) {
        self.shared.trigger.notify_one();
    }

    /// What the poller has done so far.
    pub fn status(&self) -> PollerStatus {
        self.shared.status()
    }

    /// Waits until at least `polls` polls have finished, and returns the status then.
    pub async fn wait_for_polls(&self, polls: u64) -> PollerStatus {
        loop {
            let notified = self.shared.polled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let status = self.status();
            if status.polls >= polls {
                return status;
            }
            notified.await;
        }
    }
}

impl SamplerHandle {
    /// Starts polling central sampling strategies (feature `jaeger-remote`; see
    /// [`strategy`](super::strategy) for what each kind changes) on the current tokio
    /// runtime: a first poll at once, then one per jittered interval. Errors when the
    /// configuration is invalid or when called outside a tokio runtime; failures of the
    /// polls themselves keep the last good strategy (see [`StrategyPoller::status`]).
    pub fn poll_strategies(&self, config: RemoteSamplingConfig) -> Result<StrategyPoller, Error> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "sampling.remote.endpoint",
                &config.endpoint,
                "poll_strategies must be called inside a tokio runtime",
            )
        })?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .build()
            .map_err(|e| Error::setup_caused_by("sampling strategies HTTP client", e))?;
        let shared = Arc::new(Shared::default());
        let poller = Poller {
            url: config.url(),
            config,
            client,
            handle: self.clone(),
            shared: Arc::clone(&shared),
        };
        let task = runtime.spawn(poller.run());
        Ok(StrategyPoller { task, shared })
    }
}

struct Poller {
    url: String,
    config: RemoteSamplingConfig,
    client: reqwest::Client,
    handle: SamplerHandle,
    shared: Arc<Shared>,
}

impl Poller {
    async fn run(self) {
        loop {
            // reqwest's own timeout covers the request; this one bounds the poll whatever
            // reqwest does.
            let result = match tokio::time::timeout(self.config.timeout, self.poll()).await {
                Ok(result) => result,
                Err(_) => Err(self.timed_out()),
            };
            self.record(result);
            let delay = jittered(self.config.interval, self.config.jitter, random_unit());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shared.trigger.notified() => {}
            }
        }
    }

    /// One poll: `Ok(true)` when a new strategy was put in force.
    async fn poll(&self) -> Result<bool, String> {
        let mut response = self
            .client
            .get(&self.url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.describe("request failed", &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the endpoint answered {status}"));
        }
        let max = self.config.max_body_bytes;
        if let Some(len) = response.content_length()
            && len > max as u64
        {
            return Err(format!(
                "the body is {len} bytes, over the limit of {max}; refused"
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.describe("reading the body failed", &e))?
        {
            if body.len() + chunk.len() > max {
                return Err(format!(
                    "the body is over the limit of {max} bytes; refused"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let text = std::str::from_utf8(&body).map_err(|_| "the body is not UTF-8".to_owned())?;
        let strategy = SamplingStrategy::from_json(text).map_err(|e| e.to_string())?;
        if self.handle.strategy().as_ref() == Some(&strategy) {
            return Ok(false);
        }
        self.handle
            .apply_strategy(strategy)
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    fn timed_out(&self) -> String {
        format!(
            "no complete answer within the timeout of {:?}",
            self.config.timeout
        )
    }

    /// A reqwest error with its causes (reqwest's `Display` omits them).
    fn describe(&self, what: &str, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            return self.timed_out();
        }
        let mut text = format!("{what}: {error}");
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    fn record(&self, result: Result<bool, String>) {
        let mut status = match self.shared.status.lock() {
            Ok(s) => s,
            Err(e) => e.into_inner(),
        };
        status.polls += 1;
        match result {
            Ok(applied) => {
                if status.failing {
                    tracing::info!(
                        endpoint = %self.config.endpoint,
                        "sampling strategies: the endpoint answers again"
                    );
                }
                status.failing = false;
                status.applied += u64::from(applied);
            }
            Err(mut error) => {
                if error.len() > MAX_ERROR_LEN {
                    error = crate::config::validate::truncate(&error, MAX_ERROR_LEN);
                }
                if !status.failing {
                    tracing::warn!(
                        endpoint = %self.config.endpoint,
                        %error,
                        "sampling strategies not updated; keeping the strategy in force \
                         (logged once until a poll succeeds)"
                    );
                }
                status.failing = true;
                status.failures += 1;
                status.last_error = Some(error);
            }
        }
        drop(status);
        self.shared.polled.notify_waiters();
    }
}

/// `interval * (1 + jitter * (2u - 1))` for `u` in `[0, 1)`.
fn jittered(interval: Duration, jitter: f64, u: f64) -> Duration {
    interval.mul_f64(1.0 + jitter * (2.0 * u - 1.0))
}

/// A uniform number in `[0, 1)` from the operating system's randomness (uuid's v4).
fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_jittered_within_bounds() {
        let base = Duration::from_secs(60);
        assert_eq!(jittered(base, 0.1, 0.0), Duration::from_secs(54));
        assert_eq!(jittered(base, 0.1, 0.5), base);
        let draws: Vec<Duration> = (0..100)
            .map(|_| jittered(base, 0.1, random_unit()))
            .collect();
        assert!(
            draws
                .iter()
                .all(|d| (54.0..=66.0).contains(&d.as_secs_f64()))
        );
        assert!(draws.iter().any(|d| *d != draws[0]), "the delays vary");
    }

    #[test]
    fn the_url_carries_the_service() {
        let c = RemoteSamplingConfig::new("http://agent:5778/sampling", "check out");
        assert_eq!(c.url(), "http://agent:5778/sampling?service=check%20out");
        let c = RemoteSamplingConfig::new("http://agent:5778/sampling?x=1", "a");
        assert_eq!(c.url(), "http://agent:5778/sampling?x=1&service=a");
    }
}
