//! The central-strategies poller configured the three ways (a TOML, JSON or YAML file's
//! `[remote_sampling]`, the `MESHTRACE_SAMPLING_REMOTE_*` variables, the builder) and
//! started by `TracingManager`: it polls a real axum server on 127.0.0.1 and the sampler
//! follows what it serves; the sources merge field by field; invalid values are errors
//! naming the key or variable and the value; without feature `jaeger-remote` the setting is
//! refused naming the feature; `shutdown()` and dropping the manager stop the polls.
//!
//! Polls are awaited with the poller's own notification (`wait_for_polls`); that no more
//! polls come after a shutdown is checked against a second poller on the same server, never
//! by sleeping. Environment variables are passed through `from_env_with` maps, never set on
//! the process.

use std::collections::HashMap;

use meshtrace::config::TracingConfig;
use meshtrace::sampler::RemoteSamplingConfig;
use meshtrace::{Error, TracingManager, TracingManagerBuilder};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn build(builder: TracingManagerBuilder) -> Result<TracingManager, Error> {
    builder
        .span_exporter(opentelemetry_sdk::trace::InMemorySpanExporter::default())
        .log_writer(std::io::sink)
        .build()
        .map(|(manager, _)| manager)
}

/// One line, `Debug` = `Display`, as every configuration error.
fn readable(error: &Error) -> String {
    let message = error.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert_eq!(format!("{error:?}"), message);
    message
}

#[cfg(feature = "jaeger-remote")]
mod with_the_feature {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::Router;
    use axum::extract::{Query, State};
    use axum::routing::get;
    use meshtrace::sampler::{
        CustomSampler, PollerStatus, SamplingConfig, SamplingStrategy, StrategyPoller,
    };
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

    use super::*;

    const RATE_025: &str =
        r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.25}}"#;
    const RATE_1: &str =
        r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":1.0}}"#;

    /// A strategies server on 127.0.0.1 that records the `service` of every request.
    #[derive(Clone, Default)]
    struct Strategies {
        body: Arc<Mutex<String>>,
        services: Arc<Mutex<Vec<String>>>,
    }

    impl Strategies {
        fn requests(&self, service: &str) -> usize {
            let services = self.services.lock().unwrap();
            services.iter().filter(|s| *s == service).count()
        }

        fn services(&self) -> Vec<String> {
            self.services.lock().unwrap().clone()
        }
    }

    async fn answer(
        State(server): State<Strategies>,
        Query(query): Query<HashMap<String, String>>,
    ) -> String {
        let service = query.get("service").cloned().unwrap_or_default();
        server.services.lock().unwrap().push(service);
        server.body.lock().unwrap().clone()
    }

    /// Serves `body` at `/sampling` on the current runtime; returns the endpoint URL.
    async fn serve(body: &str) -> (Strategies, String) {
        let server = Strategies::default();
        *server.body.lock().unwrap() = body.to_owned();
        let app = Router::new()
            .route("/sampling", get(answer))
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (server, format!("http://{addr}/sampling"))
    }

    async fn wait(poller: &StrategyPoller, polls: u64) -> PollerStatus {
        tokio::time::timeout(Duration::from_secs(20), poller.wait_for_polls(polls))
            .await
            .expect("the polls finish")
    }

    fn poller(manager: &TracingManager) -> &StrategyPoller {
        manager
            .strategy_poller()
            .expect("a configured endpoint starts the poller")
    }

    fn attribute(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[tokio::test]
    async fn a_toml_file_starts_the_poller_and_its_strategy_decides() {
        let (server, endpoint) = serve(RATE_1).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tracing.toml");
        std::fs::write(
            &path,
            format!(
                r#"
service_name = "checkout"

[remote_sampling]
endpoint = "{endpoint}"
interval_secs = 3600
jitter = 0.0
timeout_ms = 2000
max_body_bytes = 4096
"#
            ),
        )
        .unwrap();
        let exporter = InMemorySpanExporter::default();
        let (manager, layers) = TracingManager::from_env_with(env(&[]))
            .config(TracingConfig::from_file(&path).unwrap())
            .span_exporter(exporter.clone())
            .log_writer(std::io::sink)
            .build()
            .unwrap();

        let status = wait(poller(&manager), 1).await;
        assert_eq!((status.applied, status.failures), (1, 0), "{status:?}");
        assert_eq!(
            server.services(),
            ["checkout"],
            "the service name by default"
        );
        assert_eq!(
            manager.sampler().strategy(),
            Some(SamplingStrategy::Probabilistic { rate: 1.0 })
        );
        // A root span is decided by the strategy and says so.
        tracing::subscriber::with_default(layers.into_subscriber(), || {
            tracing::info_span!("GET /orders").in_scope(|| {});
        });
        manager.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let span = spans.iter().find(|s| s.name == "GET /orders").unwrap();
        assert_eq!(
            attribute(span, "sampler.type").as_deref(),
            Some("probabilistic")
        );
        assert_eq!(attribute(span, "sampler.param").as_deref(), Some("1"));
        assert_eq!(
            attribute(span, "sampling.reason").as_deref(),
            Some("remote")
        );
    }

    #[tokio::test]
    async fn a_json_file_sets_the_service_and_the_body_limit() {
        let (server, endpoint) = serve(RATE_025).await;
        let config = TracingConfig::from_json(&format!(
            r#"{{
                "service_name": "checkout",
                "remote_sampling": {{
                    "endpoint": "{endpoint}",
                    "service": "orders",
                    "interval_secs": 3600,
                    "jitter": 0,
                    "timeout_ms": 2000,
                    "max_body_bytes": 64
                }}
            }}"#
        ))
        .unwrap();
        let manager = build(TracingManager::from_env_with(env(&[])).config(config)).unwrap();
        let status = wait(poller(&manager), 1).await;
        assert_eq!(server.services(), ["orders"]);
        // The answer (78 bytes) is over the file's limit: refused, nothing applied.
        assert_eq!((status.applied, status.failures), (0, 1), "{status:?}");
        let error = status.last_error.unwrap_or_default();
        assert!(error.contains("over the limit of 64"), "{error}");
        assert_eq!(manager.sampler().strategy(), None);
    }

    #[cfg(feature = "yaml")]
    #[test]
    fn a_yaml_file_parses_into_the_same_settings() {
        let config = TracingConfig::from_yaml(
            "service_name: checkout\nremote_sampling:\n  endpoint: http://agent:5778/sampling\n  \
             interval_secs: 30\n  timeout_ms: 2000\n",
        )
        .unwrap();
        assert_eq!(
            config.remote_sampling,
            Some(
                RemoteSamplingConfig::new("http://agent:5778/sampling")
                    .interval(Duration::from_secs(30))
                    .timeout(Duration::from_secs(2))
            )
        );
        config.validate().unwrap();
    }

    #[tokio::test]
    async fn environment_variables_start_the_poller() {
        let (server, endpoint) = serve(RATE_025).await;
        let manager = build(TracingManager::from_env_with(env(&[
            ("OTEL_SERVICE_NAME", "checkout"),
            ("MESHTRACE_SAMPLING_REMOTE_ENDPOINT", &endpoint),
            ("MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS", "3600"),
            ("MESHTRACE_SAMPLING_REMOTE_JITTER", "0"),
            ("MESHTRACE_SAMPLING_REMOTE_TIMEOUT_MS", "2000"),
            ("MESHTRACE_SAMPLING_REMOTE_MAX_BODY_BYTES", "4096"),
        ])))
        .unwrap();
        let status = wait(poller(&manager), 1).await;
        assert_eq!(status.applied, 1, "{status:?}");
        assert_eq!(server.services(), ["checkout"]);
        assert_eq!(
            manager.sampler().strategy(),
            Some(SamplingStrategy::Probabilistic { rate: 0.25 })
        );

        // The other variables alone start nothing (as OTLP settings without an endpoint).
        let manager = build(TracingManager::from_env_with(env(&[(
            "MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS",
            "30",
        )])))
        .unwrap();
        assert!(manager.strategy_poller().is_none());
    }

    /// Builder over file over environment, field by field: the file's endpoint, the
    /// environment's service unless the builder names one.
    #[tokio::test]
    async fn sources_merge_field_by_field_and_the_builder_wins() {
        let (env_server, env_endpoint) = serve(RATE_025).await;
        let (file_server, file_endpoint) = serve(RATE_025).await;
        let variables = [
            ("OTEL_SERVICE_NAME", "checkout"),
            ("MESHTRACE_SAMPLING_REMOTE_ENDPOINT", env_endpoint.as_str()),
            ("MESHTRACE_SAMPLING_REMOTE_SERVICE", "from-env"),
            ("MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS", "3600"),
        ];
        let file = TracingConfig::from_toml(&format!(
            "[remote_sampling]\nendpoint = \"{file_endpoint}\"\njitter = 0.0"
        ))
        .unwrap();

        let manager =
            build(TracingManager::from_env_with(env(&variables)).config(file.clone())).unwrap();
        wait(poller(&manager), 1).await;
        assert_eq!(file_server.services(), ["from-env"]);
        drop(manager);

        let manager = build(
            TracingManager::from_env_with(env(&variables))
                .config(file)
                .remote_sampling(RemoteSamplingConfig::default().service("from-builder")),
        )
        .unwrap();
        wait(poller(&manager), 1).await;
        assert_eq!(file_server.services(), ["from-env", "from-builder"]);
        // Only one poller per manager, and it polled the file's endpoint both times.
        assert!(env_server.services().is_empty());
    }

    /// `build()` outside any runtime: the poller runs on the manager's own thread.
    #[test]
    fn a_manager_built_outside_a_runtime_polls_on_its_own_thread() {
        let server_runtime = tokio::runtime::Runtime::new().unwrap();
        let (server, endpoint) = server_runtime.block_on(serve(RATE_025));
        assert!(tokio::runtime::Handle::try_current().is_err());
        let manager = build(
            TracingManager::builder()
                .service_name("checkout")
                .remote_sampling(RemoteSamplingConfig::new(endpoint)),
        )
        .unwrap();
        let status = server_runtime.block_on(wait(poller(&manager), 1));
        assert_eq!(status.applied, 1, "{status:?}");
        assert_eq!(server.services(), ["checkout"]);
        drop(manager);
    }

    /// Polls every 50 ms until the manager stops; afterwards a second poller on the same
    /// server polls 5 more intervals and the manager's service is not asked for again.
    async fn polls_stop(stop: impl AsyncFnOnce(TracingManager)) {
        let (server, endpoint) = serve(RATE_025).await;
        let every = Duration::from_millis(50);
        let manager = build(
            TracingManager::builder()
                .service_name("checkout")
                .remote_sampling(
                    RemoteSamplingConfig::new(endpoint.clone())
                        .interval(every)
                        .jitter(0.0),
                ),
        )
        .unwrap();
        let status = wait(poller(&manager), 3).await;
        assert_eq!(status.failures, 0, "{status:?}");
        stop(manager).await;

        let control = CustomSampler::new(SamplingConfig::default())
            .unwrap()
            .handle()
            .poll_strategies(
                RemoteSamplingConfig::new(endpoint)
                    .service("control")
                    .interval(every)
                    .jitter(0.0),
            )
            .unwrap();
        // A request that was in flight when the manager stopped has arrived by now.
        wait(&control, 6).await;
        let after_stop = server.requests("checkout");
        assert!(after_stop >= 3, "{after_stop}");
        wait(&control, 12).await;
        assert_eq!(
            server.requests("checkout"),
            after_stop,
            "no poll once the manager stopped, while the control poller polled 6 times"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_the_poller() {
        polls_stop(async |manager: TracingManager| {
            manager.shutdown().await.unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn dropping_the_manager_stops_the_poller() {
        polls_stop(async |manager: TracingManager| drop(manager)).await;
    }

    #[test]
    fn invalid_values_name_the_key_or_variable_and_the_value() {
        let file_cases: &[(&str, &str)] = &[
            (
                "endpoint = \"agent:5778\"",
                "remote_sampling.endpoint = \"agent:5778\" is invalid",
            ),
            (
                "endpoint = \"http://a/s\"\ninterval_secs = 0",
                "remote_sampling.interval_secs = \"0\" is invalid: it must be a number of seconds",
            ),
            (
                "endpoint = \"http://a/s\"\njitter = 1.5",
                "remote_sampling.jitter = \"1.5\" is invalid",
            ),
            (
                "endpoint = \"http://a/s\"\ntimeout_ms = 0",
                "remote_sampling.timeout_ms = \"0\" is invalid: it must be between 1 and 600000",
            ),
            (
                "endpoint = \"http://a/s\"\nmax_body_bytes = 0",
                "remote_sampling.max_body_bytes = \"0\" is invalid",
            ),
            (
                "endpoint = \"http://a/s\"\nservice = \"\"",
                "remote_sampling.service = \"\" is invalid",
            ),
            (
                "interval_secs = 5",
                "remote_sampling.endpoint = <unset> is invalid",
            ),
        ];
        for (section, expected) in file_cases {
            let toml = format!("service_name = \"svc\"\n[remote_sampling]\n{section}");
            let error = TracingConfig::from_toml(&toml)
                .unwrap()
                .validate()
                .unwrap_err();
            let message = readable(&error);
            assert!(message.starts_with(expected), "{section}: {message}");
        }
        // No service name anywhere: the service to ask for must be named.
        let error = TracingConfig::from_toml("[remote_sampling]\nendpoint = \"http://a/s\"")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            readable(&error).starts_with("remote_sampling.service = <unset> is invalid"),
            "{error}"
        );

        let env_cases: &[(&str, &str)] = &[
            ("MESHTRACE_SAMPLING_REMOTE_ENDPOINT", "ftp://agent"),
            ("MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS", "soon"),
            ("MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS", "-1"),
            ("MESHTRACE_SAMPLING_REMOTE_JITTER", "-0.1"),
            ("MESHTRACE_SAMPLING_REMOTE_TIMEOUT_MS", "0"),
            ("MESHTRACE_SAMPLING_REMOTE_TIMEOUT_MS", "5s"),
            ("MESHTRACE_SAMPLING_REMOTE_MAX_BODY_BYTES", "99999999999"),
        ];
        for (var, value) in env_cases {
            let error = build(TracingManager::from_env_with(env(&[
                ("OTEL_SERVICE_NAME", "svc"),
                ("MESHTRACE_SAMPLING_REMOTE_ENDPOINT", "http://a/s"),
                (var, value),
            ])))
            .map(drop)
            .unwrap_err();
            assert_eq!(error.field(), Some(*var), "{error}");
            let message = readable(&error);
            assert!(
                message.starts_with(&format!("{var} = \"{value}\" is invalid")),
                "{message}"
            );
        }

        let error = build(
            TracingManager::builder()
                .service_name("svc")
                .remote_sampling(RemoteSamplingConfig::new("http://a/s").jitter(2.0)),
        )
        .map(drop)
        .unwrap_err();
        assert!(
            readable(&error).starts_with("remote_sampling.jitter = \"2\" is invalid"),
            "{error}"
        );
    }
}

#[test]
fn unknown_and_misplaced_keys_say_what_to_write() {
    let error = TracingConfig::from_toml("[remote_sampling]\ninterval = 5").unwrap_err();
    let message = readable(&error);
    assert!(
        message.contains("`interval`") && message.contains("line 2"),
        "{message}"
    );
    // The poller is not a sampler setting: `[sampling.remote]` says where it lives.
    let error =
        TracingConfig::from_toml("[sampling.remote]\nendpoint = \"http://a/s\"").unwrap_err();
    let message = readable(&error);
    assert!(message.contains("`[remote_sampling]`"), "{message}");
    let error = meshtrace::sampler::SamplingConfig::from_json_str(r#"{"remote": {}}"#).unwrap_err();
    assert!(error.to_string().contains("`[remote_sampling]`"), "{error}");
}

/// The README's examples with `[remote_sampling]` are configuration files that parse.
#[test]
fn the_readmes_remote_sampling_examples_parse() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .filter(|block| block.contains("[remote_sampling]"))
        .collect();
    assert_eq!(
        blocks.len(),
        2,
        "the Sampling and the Configuration file sections"
    );
    for block in blocks {
        let config = TracingConfig::from_toml(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        let remote = config.remote_sampling.expect("the section");
        assert_eq!(
            remote.endpoint.as_deref(),
            Some("http://jaeger-agent:5778/sampling")
        );
    }
}

#[cfg(not(feature = "jaeger-remote"))]
#[test]
fn without_the_feature_the_poller_is_refused_naming_the_setting_and_the_feature() {
    let endpoint = "http://agent:5778/sampling";
    let error = build(TracingManager::from_env_with(env(&[
        ("OTEL_SERVICE_NAME", "checkout"),
        ("MESHTRACE_SAMPLING_REMOTE_ENDPOINT", endpoint),
    ])))
    .map(drop)
    .unwrap_err();
    assert_eq!(
        readable(&error),
        format!(
            "MESHTRACE_SAMPLING_REMOTE_ENDPOINT = \"{endpoint}\" asks for central sampling \
             strategies, which needs meshtrace's `jaeger-remote` feature: enable it (`cargo add \
             meshtrace --features jaeger-remote`) or remove the setting"
        )
    );

    let cases: &[(&str, &str)] = &[
        (
            "[remote_sampling]\nendpoint = \"http://agent:5778/sampling\"",
            "remote_sampling.endpoint",
        ),
        ("[remote_sampling]\ninterval_secs = 5", "remote_sampling"),
    ];
    for (toml, field) in cases {
        let error = TracingConfig::from_toml(toml)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            matches!(
                &error,
                Error::MissingFeature { field: f, feature: "jaeger-remote", .. } if f == field
            ),
            "{error}"
        );
    }
    let error = build(
        TracingManager::builder()
            .service_name("checkout")
            .remote_sampling(RemoteSamplingConfig::new(endpoint)),
    )
    .map(drop)
    .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::MissingFeature {
                feature: "jaeger-remote",
                ..
            }
        ),
        "{error}"
    );
    // The other variables alone ask for nothing.
    build(TracingManager::from_env_with(env(&[(
        "MESHTRACE_SAMPLING_REMOTE_INTERVAL_SECS",
        "30",
    )])))
    .map(drop)
    .unwrap();
}
