//! The central-strategies poller against a real HTTP server on 127.0.0.1 serving Jaeger
//! strategy JSON: strategy changes, a 500, invalid JSON, an invalid strategy, a hanging
//! response bounded by the timeout, 10 MB bodies (with and without Content-Length), and
//! the failure logged once per streak. Polls are triggered (`poll_now`) and awaited on the
//! poller's own notification, never by sleeping.
#![cfg(feature = "jaeger-remote")]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use meshtrace::sampler::consistent::Threshold;
use meshtrace::sampler::{
    CustomSampler, LimitsConfig, RemoteSamplingConfig, SamplingConfig, SamplingRule,
    SamplingStrategy, StrategyPoller,
};
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

#[derive(Clone, Debug)]
enum Mode {
    Json(String),
    Status500,
    Hang,
    Huge { content_length: bool },
}

#[derive(Clone)]
struct Server {
    mode: Arc<Mutex<Mode>>,
    services: Arc<Mutex<Vec<String>>>,
}

async fn strategies(
    State(server): State<Server>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    server
        .services
        .lock()
        .unwrap()
        .push(query.get("service").cloned().unwrap_or_default());
    let mode = server.mode.lock().unwrap().clone();
    match mode {
        Mode::Json(text) => ([("content-type", "application/json")], text).into_response(),
        Mode::Status500 => (http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Mode::Hang => std::future::pending::<Response>().await,
        Mode::Huge { content_length } => {
            // A valid strategy followed by 10 MB of spaces: valid JSON, refused for its size.
            let head = r#"{"probabilisticSampling":{"samplingRate":0.5}}"#;
            if content_length {
                // `repeat` copies in doubling blocks: pushing 10 M chars one by one took over
                // the poller's 300 ms timeout in a debug build on a loaded machine, and the
                // poll failed as a timeout instead of for its size.
                format!("{head}{}", " ".repeat(10 << 20)).into_response()
            } else {
                let chunks = std::iter::once(Ok::<_, std::io::Error>(bytes::Bytes::from(head)))
                    .chain((0..160).map(|_| Ok(bytes::Bytes::from(vec![b' '; 64 << 10]))));
                Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
            }
        }
    }
}

async fn serve(mode: Mode) -> (Server, String) {
    let server = Server {
        mode: Arc::new(Mutex::new(mode)),
        services: Arc::default(),
    };
    let app = Router::new()
        .route("/sampling", get(strategies))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, format!("http://{addr}/sampling"))
}

fn decide(sampler: &CustomSampler, name: &str, route: &str, low56: u64) -> SamplingResult {
    sampler.should_sample(
        Some(&Context::new()),
        TraceId::from(0x4bf9_2f35_77b3_4da6_0000_0000_0000_0000u128 | u128::from(low56)),
        name,
        &SpanKind::Server,
        &[KeyValue::new("http.route", route.to_owned())],
        &[],
    )
}

fn attr(r: &SamplingResult, key: &str) -> Option<String> {
    r.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// Counts WARN events, to check that a failure streak is logged once.
#[derive(Clone, Default)]
struct Warnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

const PROBABILISTIC: &str =
    r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.25}}"#;
const PER_OPERATION: &str = r#"{"strategyType":"PROBABILISTIC","operationSampling":{
    "defaultSamplingProbability":0.0,
    "defaultLowerBoundTracesPerSecond":0.0,
    "perOperationStrategies":[
      {"operation":"GET /orders/{id}","probabilisticSampling":{"samplingRate":1.0}}]}}"#;

#[tokio::test(flavor = "current_thread")]
async fn strategies_are_polled_swapped_and_kept_through_failures() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Warnings::default();
    let _log =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));

    let (server, endpoint) = serve(Mode::Json(PROBABILISTIC.to_owned())).await;
    // A local rule keeps its say over the central strategy.
    let sampler = CustomSampler::new(
        SamplingConfig::default().rule(SamplingRule::new("health", 0.0).route("/health")),
    )
    .unwrap();
    let handle = sampler.handle();
    let poller = handle
        .poll_strategies(
            RemoteSamplingConfig::new(endpoint)
                .service("check out")
                .interval(Duration::from_secs(3600))
                .jitter(0.0)
                .timeout(Duration::from_millis(300)),
        )
        .unwrap();
    let wait = |n: u64| {
        let poller = &poller;
        async move {
            tokio::time::timeout(Duration::from_secs(20), poller.wait_for_polls(n))
                .await
                .expect("the poll finishes")
        }
    };

    // 1. The first poll happens at once.
    let status = wait(1).await;
    assert_eq!((status.applied, status.failures), (1, 0), "{status:?}");
    assert_eq!(server.services.lock().unwrap()[0], "check out");
    assert_eq!(
        handle.strategy(),
        Some(SamplingStrategy::Probabilistic { rate: 0.25 })
    );
    let kept = decide(&sampler, "GET /x", "/x", 0xff_ffff_ffff_ffff);
    assert_eq!(kept.decision, SamplingDecision::RecordAndSample);
    assert_eq!(
        attr(&kept, "sampler.type").as_deref(),
        Some("probabilistic")
    );
    assert_eq!(attr(&kept, "sampler.param").as_deref(), Some("0.25"));
    assert_eq!(attr(&kept, "sampling.reason").as_deref(), Some("remote"));
    assert_eq!(kept.trace_state.get("ot"), Some("th:c"));
    let dropped = decide(&sampler, "GET /x", "/x", 0);
    assert_eq!(dropped.decision, SamplingDecision::Drop);
    let health = decide(&sampler, "GET /health", "/health", 0xff_ffff_ffff_ffff);
    assert_eq!(health.decision, SamplingDecision::Drop, "local rules first");

    // 2. A change of strategy mid-test.
    *server.mode.lock().unwrap() = Mode::Json(PER_OPERATION.to_owned());
    poller.poll_now();
    let status = wait(2).await;
    assert_eq!(status.applied, 2, "{status:?}");
    let per_op = handle.strategy();
    assert!(matches!(
        per_op,
        Some(SamplingStrategy::PerOperation { .. })
    ));
    let op = decide(&sampler, "GET /orders/{id}", "/orders/{id}", 1);
    assert_eq!(op.decision, SamplingDecision::RecordAndSample);
    assert_eq!(attr(&op, "sampler.param").as_deref(), Some("1"));
    let other = decide(&sampler, "GET /x", "/x", 0xff_ffff_ffff_ffff);
    assert_eq!(
        other.decision,
        SamplingDecision::Drop,
        "default probability 0"
    );
    // The same strategy again is not swapped.
    poller.poll_now();
    assert_eq!(wait(3).await.applied, 2);

    // 3. Failures: each keeps the strategy in force; the streak is logged once.
    let oversized = Mode::Huge {
        content_length: true,
    };
    let chunked = Mode::Huge {
        content_length: false,
    };
    let failures: &[(&str, Mode, &str)] = &[
        ("500", Mode::Status500, "500"),
        ("invalid JSON", Mode::Json("{not json".into()), "JSON"),
        (
            "invalid strategy",
            Mode::Json(r#"{"probabilisticSampling":{"samplingRate":1.5}}"#.into()),
            "samplingRate = \"1.5\"",
        ),
        ("hanging response", Mode::Hang, "timeout"),
        ("10 MB with Content-Length", oversized, "over the limit"),
        ("10 MB chunked", chunked, "over the limit"),
    ];
    let warnings_before = warnings.0.load(Ordering::Relaxed);
    let mut polls = 3;
    for (i, (name, mode, message)) in failures.iter().enumerate() {
        *server.mode.lock().unwrap() = mode.clone();
        poller.poll_now();
        polls += 1;
        let status = wait(polls).await;
        assert_eq!(status.failures, i as u64 + 1, "{name}: {status:?}");
        assert!(status.failing, "{name}");
        let error = status.last_error.unwrap_or_default();
        assert!(error.contains(message), "{name}: {error}");
        assert_eq!(
            handle.strategy(),
            per_op,
            "{name}: the last good strategy stays"
        );
    }
    assert_eq!(
        warnings.0.load(Ordering::Relaxed) - warnings_before,
        1,
        "one warning per failure streak"
    );

    // 4. Back to a good strategy.
    *server.mode.lock().unwrap() = Mode::Json(PROBABILISTIC.to_owned());
    poller.poll_now();
    let status = wait(polls + 1).await;
    assert!(!status.failing && status.applied == 3, "{status:?}");
    assert_eq!(
        handle.strategy(),
        Some(SamplingStrategy::Probabilistic { rate: 0.25 })
    );
    // A local reload keeps the central strategy; clearing it restores the local config.
    handle
        .reload(SamplingConfig::default().base_rate(0.0))
        .unwrap();
    assert!(handle.strategy().is_some());
    handle.clear_strategy().unwrap();
    let r = decide(&sampler, "GET /x", "/x", 0xff_ffff_ffff_ffff);
    assert_eq!(r.decision, SamplingDecision::Drop, "base rate 0 again");
}

#[tokio::test]
async fn a_rate_limiting_strategy_becomes_the_global_target() {
    let (_server, endpoint) = serve(Mode::Json(
        r#"{"strategyType":"RATE_LIMITING","rateLimitingSampling":{"maxTracesPerSecond":5}}"#
            .to_owned(),
    ))
    .await;
    let sampler = CustomSampler::new(SamplingConfig::default()).unwrap();
    let handle = sampler.handle();
    let poller = handle
        .poll_strategies(RemoteSamplingConfig::new(endpoint).service("svc"))
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), poller.wait_for_polls(1))
        .await
        .unwrap();
    assert_eq!(status.applied, 1, "{status:?}");
    let r = decide(&sampler, "GET /x", "/x", 0xff_ffff_ffff_ffff);
    assert_eq!(attr(&r, "sampler.type").as_deref(), Some("ratelimiting"));
    assert_eq!(attr(&r, "sampler.param").as_deref(), Some("5"));
    assert!(handle.stats().global_probability.is_some());
}

/// A server whose answer waits until the test releases it, announcing each request.
async fn serve_gated() -> (Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>, String) {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let state = (Arc::clone(&arrived), Arc::clone(&release));
    let app = Router::new()
        .route(
            "/sampling",
            get(
                |State((arrived, release)): State<(
                    Arc<tokio::sync::Notify>,
                    Arc<tokio::sync::Notify>,
                )>| async move {
                    arrived.notify_one();
                    release.notified().await;
                    PROBABILISTIC
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (arrived, release, format!("http://{addr}/sampling"))
}

#[tokio::test]
async fn stop_lets_a_poll_in_progress_finish_within_the_grace() {
    let (arrived, release, endpoint) = serve_gated().await;
    let sampler = CustomSampler::new(SamplingConfig::default()).unwrap();
    let config = RemoteSamplingConfig::new(endpoint)
        .service("svc")
        .timeout(Duration::from_secs(30));
    fn bounded<F: std::future::IntoFuture>(f: F) -> tokio::time::Timeout<F::IntoFuture> {
        tokio::time::timeout(Duration::from_secs(20), f)
    }

    // Stopped mid-poll, released: the poll finishes, is counted and applies.
    let poller = sampler.handle().poll_strategies(config.clone()).unwrap();
    bounded(arrived.notified()).await.unwrap();
    let (status, ()) = tokio::join!(bounded(poller.stop(Duration::from_secs(20))), async {
        release.notify_one()
    });
    let status = status.expect("stop returns once the poll finished");
    assert_eq!((status.polls, status.applied), (1, 1), "{status:?}");
    assert!(sampler.handle().strategy().is_some());

    // Stopped mid-poll, never released: abandoned after the grace, not counted.
    sampler.handle().clear_strategy().unwrap();
    let poller = sampler.handle().poll_strategies(config).unwrap();
    bounded(arrived.notified()).await.unwrap();
    let status = bounded(poller.stop(Duration::from_millis(100)))
        .await
        .expect("stop returns after the grace");
    assert_eq!(status.polls, 0, "{status:?}");
    assert_eq!(sampler.handle().strategy(), None);
}

#[test]
fn poller_configuration_from_the_environment_and_its_errors() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        RemoteSamplingConfig::from_env_with(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    };
    assert_eq!(env(&[]).unwrap(), None);
    let c = env(&[
        (
            "MESHTRACE_SAMPLING_REMOTE_ENDPOINT",
            "http://agent:5778/sampling",
        ),
        ("OTEL_SERVICE_NAME", "checkout"),
        ("MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS", "30"),
        ("MESHTRACE_SAMPLING_REMOTE_TIMEOUT_MS", "2000"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(
        c,
        RemoteSamplingConfig::new("http://agent:5778/sampling")
            .service("checkout")
            .interval(Duration::from_secs(30))
            .timeout(Duration::from_secs(2))
    );
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("MESHTRACE_SAMPLING_REMOTE_ENDPOINT", "http://a/s")],
            "MESHTRACE_SAMPLING_REMOTE_SERVICE = <unset> is invalid",
        ),
        (
            &[
                ("MESHTRACE_SAMPLING_REMOTE_ENDPOINT", "agent:5778"),
                ("MESHTRACE_SAMPLING_REMOTE_SERVICE", "s"),
            ],
            "MESHTRACE_SAMPLING_REMOTE_ENDPOINT = \"agent:5778\" is invalid",
        ),
        (
            &[
                ("MESHTRACE_SAMPLING_REMOTE_ENDPOINT", "http://a/s"),
                ("MESHTRACE_SAMPLING_REMOTE_SERVICE", "s"),
                ("MESHTRACE_SAMPLING_REMOTE_TIMEOUT_MS", "0"),
            ],
            "MESHTRACE_SAMPLING_REMOTE_TIMEOUT_MS = \"0\" is invalid",
        ),
        (
            &[
                ("MESHTRACE_SAMPLING_REMOTE_ENDPOINT", "http://a/s"),
                ("MESHTRACE_SAMPLING_REMOTE_SERVICE", "s"),
                ("MESHTRACE_SAMPLING_REMOTE_JITTER", "1.0"),
            ],
            "MESHTRACE_SAMPLING_REMOTE_JITTER = \"1.0\" is invalid",
        ),
        (
            &[
                ("MESHTRACE_SAMPLING_REMOTE_ENDPOINT", "http://a/s"),
                ("MESHTRACE_SAMPLING_REMOTE_SERVICE", "s"),
                ("MESHTRACE_SAMPLING_REMOTE_MAX_BODY_BYTES", "1MiB"),
            ],
            "MESHTRACE_SAMPLING_REMOTE_MAX_BODY_BYTES = \"1MiB\" is invalid",
        ),
    ];
    for (vars, message) in cases {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let e = RemoteSamplingConfig::from_env_with(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with(message), "{e}");
    }
    // Outside a runtime, starting the poller is an error naming the setting.
    let handle = CustomSampler::new(SamplingConfig::default())
        .unwrap()
        .handle();
    let e = handle
        .poll_strategies(RemoteSamplingConfig::new("http://a/s").service("s"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("inside a tokio runtime"), "{e}");
    // Without a manager to name it, the service must be given.
    let e = handle
        .poll_strategies(RemoteSamplingConfig::new("http://a/s"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("remote_sampling.service = <unset> is invalid"),
        "{e}"
    );
}

/// A sampler on a manual clock (nanoseconds since the epoch) that has applied the strategy
/// `json`, served over HTTP, once.
async fn sampler_with_strategy(
    config: SamplingConfig,
    json: &str,
) -> (CustomSampler, Arc<AtomicU64>, StrategyPoller) {
    let (_server, endpoint) = serve(Mode::Json(json.to_owned())).await;
    let clock = Arc::new(AtomicU64::new(1_000_000_000_000));
    let c = Arc::clone(&clock);
    let sampler = CustomSampler::with_clock(config, move || {
        Duration::from_nanos(c.load(Ordering::Relaxed))
    })
    .unwrap();
    let poller = sampler
        .handle()
        .poll_strategies(
            RemoteSamplingConfig::new(endpoint)
                .service("svc")
                .interval(Duration::from_secs(3600)),
        )
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), poller.wait_for_polls(1))
        .await
        .unwrap();
    assert_eq!(status.applied, 1, "{status:?}");
    (sampler, clock, poller)
}

/// The probability a kept span's `th` states (`None` without `th`).
fn th_probability(r: &SamplingResult) -> Option<f64> {
    let ot = r.trace_state.get("ot")?;
    let th = ot.split(';').find_map(|m| m.strip_prefix("th:"))?;
    Threshold::parse(th).map(Threshold::probability)
}

/// `defaultLowerBoundTracesPerSecond` end to end: an operation whose probability is 0 is
/// still kept once per second, as a `lowerbound` pick with the probability in force (0) as
/// `sampler.param`, `sampling.reason = "lower_bound"` and no `th`; an operation kept by its
/// probability is a `probabilistic` pick and uses its key's grant.
#[tokio::test]
async fn the_strategys_lower_bound_keeps_a_rare_operation() {
    let (sampler, clock, _poller) = sampler_with_strategy(
        SamplingConfig::default(),
        r#"{"operationSampling":{
            "defaultSamplingProbability":0.0,
            "defaultLowerBoundTracesPerSecond":1.0,
            "perOperationStrategies":[
              {"operation":"GET /hot","probabilisticSampling":{"samplingRate":1.0}}]}}"#,
    )
    .await;
    let mut rare_kept = 0;
    for second in 0..5 {
        for i in 0..10u64 {
            let r = decide(&sampler, "GET /rare", "/rare", 0xff_ffff_ffff_ffff - i);
            if r.decision == SamplingDecision::RecordAndSample {
                rare_kept += 1;
                assert_eq!(i, 0, "second {second}: one pick per second, the first");
                assert_eq!(attr(&r, "sampler.type").as_deref(), Some("lowerbound"));
                assert_eq!(attr(&r, "sampler.param").as_deref(), Some("0"));
                assert_eq!(attr(&r, "sampling.reason").as_deref(), Some("lower_bound"));
                assert_eq!(r.trace_state.get("ot"), None, "no th on a lower-bound pick");
            }
            let hot = decide(&sampler, "GET /hot", "/hot", i);
            assert_eq!(hot.decision, SamplingDecision::RecordAndSample);
            assert_eq!(attr(&hot, "sampler.type").as_deref(), Some("probabilistic"));
            assert_eq!(attr(&hot, "sampler.param").as_deref(), Some("1"));
            assert_eq!(attr(&hot, "sampling.reason").as_deref(), Some("remote"));
            clock.fetch_add(10_000_000, Ordering::Relaxed);
        }
        clock.fetch_add(900_000_000, Ordering::Relaxed);
    }
    assert_eq!(rare_kept, 5, "5 s at one per second");
    let stats = sampler.handle().stats();
    assert_eq!((stats.lower_bound, stats.sampled), (5, 50), "{stats:?}");
    let rare = stats.keys.iter().find(|k| k.key == "/rare").unwrap();
    assert_eq!((rare.lower_bound, rare.dropped), (5, 45), "{rare:?}");
}

/// A local limit below the strategy's probability: kept spans say the probability in
/// force as `sampler.param` (what Jaeger's adaptive sampling compares with the probability
/// it served), the same as their `th`; before the limit lowers it, the strategy's own. A
/// lower-bound pick says the probability in force that dropped it.
#[tokio::test]
async fn sampler_param_is_the_probability_in_force() {
    let (sampler, clock, _poller) = sampler_with_strategy(
        SamplingConfig::default().limits(
            LimitsConfig::default()
                .per_key_traces_per_second(2.0)
                .lower_bound_traces_per_second(1.0)
                .adaptation_time_secs(1.0),
        ),
        PROBABILISTIC,
    )
    .await;
    let handle = sampler.handle();
    let param = |r: &SamplingResult| -> f64 { attr(r, "sampler.param").unwrap().parse().unwrap() };
    // The first decision: the limit has not lowered anything yet.
    let first = decide(&sampler, "GET /x", "/x", 0xff_ffff_ffff_ffff);
    assert_eq!(attr(&first, "sampler.param").as_deref(), Some("0.25"));
    assert_eq!(th_probability(&first), Some(0.25));
    // 1000 arrivals per second for 20 s against 2 per second: p about 0.002.
    let (mut lowered, mut lower_bound) = (0, 0);
    let mut random = 0x1234_5678_9abc_def0u64;
    for _ in 0..20_000 {
        clock.fetch_add(1_000_000, Ordering::Relaxed);
        random = random.wrapping_mul(0x5851_f42d_4c95_7f2d).wrapping_add(1);
        let r = decide(&sampler, "GET /x", "/x", random >> 8);
        if r.decision != SamplingDecision::RecordAndSample {
            continue;
        }
        if attr(&r, "sampler.type").as_deref() == Some("lowerbound") {
            lower_bound += 1;
            assert_eq!(th_probability(&r), None);
            let in_force = handle.stats().keys[0].probability;
            assert!((param(&r) - in_force).abs() < 1e-12, "{r:?} at {in_force}");
            assert!(param(&r) < 0.25, "{r:?}");
            continue;
        }
        assert_eq!(attr(&r, "sampler.type").as_deref(), Some("probabilistic"));
        let th = th_probability(&r).expect("a probabilistic pick has th");
        assert_eq!(param(&r), th, "sampler.param is the probability of th");
        assert!(th <= 0.25, "{th}");
        lowered += u32::from(th < 0.25);
    }
    assert!(lowered > 20, "the limit lowered the probability: {lowered}");
    assert!(lower_bound > 0, "some seconds had no probabilistic pick");
    let key = handle.stats().keys[0].probability;
    assert!((0.001..0.004).contains(&key), "{key}");
}
