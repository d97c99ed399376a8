//! The central-strategies poller (feature `jaeger-remote`): `GET <endpoint>?service=<name>`
//! on an interval with jitter, each answer parsed and validated as a
//! [`SamplingStrategy`] and swapped into the sampler atomically
//! ([`SamplerHandle::apply_strategy`]). Its configuration is
//! [`RemoteSamplingConfig`](super::RemoteSamplingConfig) (`sampler/config/remote.rs`).
//!
//! Whatever goes wrong (the endpoint unreachable, slower than the timeout, an HTTP error
//! status, a body over the size limit, invalid JSON, an invalid strategy), the last good
//! strategy stays in force, and the failure is logged once per streak (a `tracing` warning
//! when a streak starts, an info event when a poll succeeds again). The poller never
//! replaces a good strategy with an invalid one; an unchanged strategy is not swapped.
//!
//! Where it runs: [`SamplerHandle::poll_strategies`] spawns it on the caller's tokio runtime;
//! the manager starts it on a runtime of its own (one thread, `meshtrace-strategies`), so
//! that it does not depend on the runtime `build()` happened to run in (there may be none,
//! it may be a current-thread runtime or one dropped after setup). Either way the poller's
//! HTTP client runs with OpenTelemetry telemetry suppressed, so its own `tracing` spans are
//! never exported (as for the OTLP exporter, see `export::suppress`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::context::FutureExt as _;
use tokio::sync::Notify;

use super::{
    DEFAULT_REMOTE_INTERVAL, DEFAULT_REMOTE_JITTER, DEFAULT_REMOTE_MAX_BODY_BYTES,
    DEFAULT_REMOTE_TIMEOUT, RemoteSamplingConfig, SamplerHandle, SamplingStrategy,
};
use crate::Error;
use crate::export::suppress;

/// Longest kept text of the last error.
const MAX_ERROR_LEN: usize = 512;

/// What the poller runs with: a validated configuration with the defaults filled in.
#[derive(Clone, Debug)]
struct Settings {
    endpoint: String,
    /// The endpoint with `service=<name>` (percent-encoded) appended.
    url: String,
    interval: Duration,
    jitter: f64,
    timeout: Duration,
    max_body_bytes: usize,
}

impl Settings {
    fn new(config: &RemoteSamplingConfig) -> Result<Self, Error> {
        config.validate()?;
        // `validate` checked that both are set and every value is in range.
        let endpoint = config.endpoint.clone().unwrap_or_default();
        let service = config.service.as_deref().unwrap_or_default();
        Ok(Settings {
            url: url(&endpoint, service),
            endpoint,
            interval: config
                .interval_secs
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .unwrap_or(DEFAULT_REMOTE_INTERVAL),
            jitter: config.jitter.unwrap_or(DEFAULT_REMOTE_JITTER),
            timeout: config
                .timeout_ms
                .map_or(DEFAULT_REMOTE_TIMEOUT, Duration::from_millis),
            max_body_bytes: config
                .max_body_bytes
                .unwrap_or(DEFAULT_REMOTE_MAX_BODY_BYTES),
        })
    }
}

/// `endpoint` with `service=<name>` (percent-encoded) appended.
fn url(endpoint: &str, service: &str) -> String {
    let service =
        percent_encoding::utf8_percent_encode(service, percent_encoding::NON_ALPHANUMERIC);
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{sep}service={service}")
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
    /// Asks the task to stop (a permit is kept if it is polling, so the request is seen).
    stop: Notify,
    /// How long a poll in progress may still take once `stop` is notified.
    grace: Mutex<Duration>,
    status: Mutex<PollerStatus>,
}

impl Shared {
    fn status(&self) -> PollerStatus {
        lock(&self.status).clone()
    }
}

/// The guard of `mutex`, also when a thread panicked holding it (the data stays usable).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls central strategies until stopped or dropped (see
/// [`SamplerHandle::poll_strategies`]; a
/// [`TracingManager`](crate::TracingManager) configured with a
/// [`RemoteSamplingConfig`] keeps one, see
/// [`TracingManager::strategy_poller`](crate::TracingManager::strategy_poller)).
///
/// Dropping it aborts the task at once (a request in flight is abandoned);
/// [`stop`](Self::stop) lets a poll in progress finish first.
#[derive(Debug)]
#[must_use = "strategies are polled only until the StrategyPoller is dropped"]
pub struct StrategyPoller {
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    /// When the poller runs on a runtime of its own: dropping this ends that runtime's thread.
    _own_runtime: Option<tokio::sync::oneshot::Sender<()>>,
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

    /// Stops polling, waits for the task to end and returns the final status. A poll in
    /// progress may finish within `grace` (then it is counted and its strategy applies), so
    /// that no request is left in flight; after `grace` it is abandoned. Returns at once when
    /// the poller is between polls.
    pub async fn stop(mut self, grace: Duration) -> PollerStatus {
        *lock(&self.shared.grace) = grace;
        self.shared.stop.notify_one();
        // An error means the task is gone already (aborted, or its runtime shut down).
        let _ = (&mut self.task).await;
        self.status()
    }
}

impl SamplerHandle {
    /// Starts polling central sampling strategies (feature `jaeger-remote`; see
    /// [`strategy`](super::strategy) for what each kind changes) on the current tokio
    /// runtime: a first poll at once, then one per jittered interval. `config` must name the
    /// endpoint and the service. Errors when the configuration is invalid or when called
    /// outside a tokio runtime; failures of the polls themselves keep the last good strategy
    /// (see [`StrategyPoller::status`]).
    ///
    /// A [`TracingManager`](crate::TracingManager) does this for you when it is configured
    /// with a [`RemoteSamplingConfig`] (file, environment or builder), on a runtime of its own.
    pub fn poll_strategies(&self, config: RemoteSamplingConfig) -> Result<StrategyPoller, Error> {
        let settings = Settings::new(&config)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "remote_sampling.endpoint",
                crate::config::validate::shown_url(&settings.endpoint),
                "poll_strategies must be called inside a tokio runtime",
            )
        })?;
        let (task, shared) = self.start(settings, &runtime)?;
        Ok(StrategyPoller {
            task,
            shared,
            _own_runtime: None,
        })
    }

    /// Starts the poller on a runtime of its own: one thread (`meshtrace-strategies`) that
    /// lives until the [`StrategyPoller`] is stopped or dropped. Works inside and outside a
    /// tokio runtime.
    pub(crate) fn poll_strategies_in_background(
        &self,
        config: &RemoteSamplingConfig,
    ) -> Result<StrategyPoller, Error> {
        let settings = Settings::new(config)?;
        let handle = self.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (keep, ended) = tokio::sync::oneshot::channel::<()>();
        // The runtime is built, used and dropped on its own thread: dropping a runtime on the
        // caller's thread would panic when that thread is inside an async context.
        std::thread::Builder::new()
            .name("meshtrace-strategies".into())
            .spawn(move || {
                suppress::mark_thread();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    // The blocking pool (DNS lookups) is the poller's too.
                    .on_thread_start(suppress::mark_thread)
                    .on_thread_stop(suppress::unmark_thread)
                    .build()
                    .map_err(|e| Error::setup_caused_by("sampling strategies runtime", e));
                match runtime.and_then(|rt| handle.start(settings, rt.handle()).map(|s| (rt, s))) {
                    Ok((runtime, started)) => {
                        if ready_tx.send(Ok(started)).is_ok() {
                            runtime.block_on(async {
                                let _ = ended.await;
                            });
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
                suppress::unmark_thread();
            })
            .map_err(|e| Error::setup_caused_by("sampling strategies thread", e))?;
        let (task, shared) = ready_rx.recv().map_err(|_| {
            Error::setup(
                "sampling strategies thread",
                "the thread ended before the poller started",
            )
        })??;
        Ok(StrategyPoller {
            task,
            shared,
            _own_runtime: Some(keep),
        })
    }

    /// Builds the HTTP client and spawns the poll loop on `runtime`.
    fn start(
        &self,
        settings: Settings,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(tokio::task::JoinHandle<()>, Arc<Shared>), Error> {
        // Whatever the client does belongs to the poller, not to the application's traces.
        let suppressed = opentelemetry::Context::new().with_telemetry_suppressed();
        let client = {
            let _entered = runtime.enter();
            let _suppressed = suppressed.clone().attach();
            reqwest::Client::builder()
                .connect_timeout(settings.timeout)
                .timeout(settings.timeout)
                .build()
                .map_err(|e| Error::setup_caused_by("sampling strategies HTTP client", e))?
        };
        let shared = Arc::new(Shared::default());
        let poller = Poller {
            settings,
            client,
            handle: self.clone(),
            shared: Arc::clone(&shared),
        };
        let task = runtime.spawn(poller.run().with_context(suppressed));
        Ok((task, shared))
    }
}

struct Poller {
    settings: Settings,
    client: reqwest::Client,
    handle: SamplerHandle,
    shared: Arc<Shared>,
}

impl Poller {
    async fn run(self) {
        loop {
            // reqwest's own timeout covers the request; this one bounds the poll whatever
            // reqwest does.
            let poll = tokio::time::timeout(self.settings.timeout, self.poll());
            tokio::pin!(poll);
            let (result, stopping) = tokio::select! {
                biased;
                result = &mut poll => (result, false),
                () = self.shared.stop.notified() => {
                    let grace = *lock(&self.shared.grace);
                    match tokio::time::timeout(grace, &mut poll).await {
                        Ok(result) => (result, true),
                        Err(_) => return,
                    }
                }
            };
            self.record(result.unwrap_or_else(|_| Err(self.timed_out())));
            if stopping {
                return;
            }
            let delay = jittered(self.settings.interval, self.settings.jitter, random_unit());
            tokio::select! {
                biased;
                () = self.shared.stop.notified() => return,
                () = tokio::time::sleep(delay) => {}
                () = self.shared.trigger.notified() => {}
            }
        }
    }

    /// One poll: `Ok(true)` when a new strategy was put in force.
    async fn poll(&self) -> Result<bool, String> {
        let mut response = self
            .client
            .get(&self.settings.url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.describe("request failed", &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the endpoint answered {status}"));
        }
        let max = self.settings.max_body_bytes;
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
            self.settings.timeout
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
                        endpoint = %self.settings.endpoint,
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
                        endpoint = %self.settings.endpoint,
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
        assert_eq!(
            url("http://agent:5778/sampling", "check out"),
            "http://agent:5778/sampling?service=check%20out"
        );
        assert_eq!(
            url("http://agent:5778/sampling?x=1", "a"),
            "http://agent:5778/sampling?x=1&service=a"
        );
    }

    #[test]
    fn settings_fill_in_the_defaults() {
        let s = Settings::new(&RemoteSamplingConfig::new("http://a/s").service("svc")).unwrap();
        assert_eq!(s.interval, DEFAULT_REMOTE_INTERVAL);
        assert_eq!(s.timeout, DEFAULT_REMOTE_TIMEOUT);
        assert_eq!(s.jitter, DEFAULT_REMOTE_JITTER);
        assert_eq!(s.max_body_bytes, DEFAULT_REMOTE_MAX_BODY_BYTES);
        assert_eq!(s.url, "http://a/s?service=svc");
    }
}
