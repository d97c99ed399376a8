//! Deferred capture and the export filter are configured the three ways every setting is
//! (builder, file, environment), to the same result, and invalid values are refused at
//! build time with one sentence naming the field or variable and the value.
//!
//! Environment variables are passed through `from_env_with` maps, never set on the process.

use std::collections::HashMap;
use std::time::Duration;

use meshtrace::config::TracingConfig;
use meshtrace::export::{ExportFilterConfig, FilterRule};
use meshtrace::sampler::{DeferredConfig, RuleSpanKind, SamplingConfig};
use meshtrace::{Error, TracingManager, TracingManagerBuilder};
use opentelemetry_sdk::trace::InMemorySpanExporter;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn build(builder: TracingManagerBuilder) -> Result<TracingManager, Error> {
    builder
        .span_exporter(InMemorySpanExporter::default())
        .log_writer(std::io::sink)
        .build()
        .map(|(manager, _)| manager)
}

/// The deferred settings every source below describes.
fn expected_deferred() -> DeferredConfig {
    DeferredConfig::default()
        .enabled(true)
        .fraction(0.5)
        .max_per_second(20)
        .slow_threshold(Duration::from_millis(750))
        .slow_route("/reports/**", Duration::from_secs(5))
        .slow_route("/search", Duration::from_millis(300))
        .max_traces(64)
        .max_spans_per_trace(32)
        .max_bytes(1 << 20)
        .timeout(Duration::from_secs(10))
        .propagate_sampled(true)
}

fn expected_filter() -> ExportFilterConfig {
    ExportFilterConfig::default()
        .rule(
            FilterRule::new("short-internal")
                .kind(RuleSpanKind::Internal)
                .shorter_than(Duration::from_millis(1)),
        )
        .rule(FilterRule::new("cache").span_name("cache.*"))
        .rule(FilterRule::new("health").attribute("http.route", "/health"))
}

const TOML: &str = r#"
[sampling]
base_rate = 0.01

[sampling.deferred]
enabled = true
fraction = 0.5
max_per_second = 20
slow_threshold_ms = 750
max_traces = 64
max_spans_per_trace = 32
max_bytes = 1048576
timeout_ms = 10000
propagate_sampled = true

[[sampling.deferred.slow_routes]]
route = "/reports/**"
threshold_ms = 5000

[[sampling.deferred.slow_routes]]
route = "/search"
threshold_ms = 300

[[export_filter.rules]]
name = "short-internal"
kind = "internal"
shorter_than_ms = 1.0

[[export_filter.rules]]
name = "cache"
span_name = "cache.*"

[[export_filter.rules]]
name = "health"
attributes = { "http.route" = "/health" }
"#;

const JSON: &str = r#"{
  "sampling": {
    "base_rate": 0.01,
    "deferred": {
      "enabled": true, "fraction": 0.5, "max_per_second": 20, "slow_threshold_ms": 750,
      "slow_routes": [
        {"route": "/reports/**", "threshold_ms": 5000},
        {"route": "/search", "threshold_ms": 300}
      ],
      "max_traces": 64, "max_spans_per_trace": 32, "max_bytes": 1048576,
      "timeout_ms": 10000, "propagate_sampled": true
    }
  },
  "export_filter": {
    "rules": [
      {"name": "short-internal", "kind": "internal", "shorter_than_ms": 1.0},
      {"name": "cache", "span_name": "cache.*"},
      {"name": "health", "attributes": {"http.route": "/health"}}
    ]
  }
}"#;

const ENV_FILTER: &str = r#"[
  {"name": "short-internal", "kind": "internal", "shorter_than_ms": 1},
  {"name": "cache", "span_name": "cache.*"},
  {"name": "health", "attributes": {"http.route": "/health"}}
]"#;

fn env_pairs() -> Vec<(&'static str, &'static str)> {
    vec![
        ("MESHTRACE_SAMPLING_BASE_RATE", "0.01"),
        ("MESHTRACE_SAMPLING_DEFERRED", "true"),
        ("MESHTRACE_SAMPLING_DEFERRED_FRACTION", "0.5"),
        ("MESHTRACE_SAMPLING_DEFERRED_MAX_PER_SECOND", "20"),
        ("MESHTRACE_SAMPLING_DEFERRED_SLOW_THRESHOLD_MS", "750"),
        (
            "MESHTRACE_SAMPLING_DEFERRED_SLOW_ROUTES",
            "/reports/**=5000, /search=300",
        ),
        ("MESHTRACE_SAMPLING_DEFERRED_MAX_TRACES", "64"),
        ("MESHTRACE_SAMPLING_DEFERRED_MAX_SPANS_PER_TRACE", "32"),
        ("MESHTRACE_SAMPLING_DEFERRED_MAX_BYTES", "1048576"),
        ("MESHTRACE_SAMPLING_DEFERRED_TIMEOUT_MS", "10000"),
        ("MESHTRACE_SAMPLING_DEFERRED_PROPAGATE_SAMPLED", "TRUE"),
        ("MESHTRACE_EXPORT_FILTER", ENV_FILTER),
    ]
}

fn filter_rule_names(manager: &TracingManager) -> Vec<String> {
    manager
        .stats()
        .filter
        .rules
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[test]
fn builder_file_and_environment_give_the_same_settings() {
    let files = [
        ("toml", TracingConfig::from_toml(TOML).expect("toml")),
        ("json", TracingConfig::from_json(JSON).expect("json")),
    ];
    for (name, config) in files {
        let sampling = config.sampling.clone().expect("sampling");
        assert_eq!(sampling.deferred, expected_deferred(), "{name}");
        assert_eq!(
            config.export_filter.clone().expect("filter"),
            expected_filter(),
            "{name}"
        );
        config.validate().expect(name);
    }
    let from_file =
        build(TracingManager::builder().config(TracingConfig::from_toml(TOML).unwrap()))
            .expect("file");
    let from_env = build(TracingManager::from_env_with(env(&env_pairs()))).expect("env");
    let from_builder = build(
        TracingManager::builder()
            .sampling(
                SamplingConfig::default()
                    .base_rate(0.01)
                    .deferred(expected_deferred()),
            )
            .export_filter(expected_filter()),
    )
    .expect("builder");
    for (name, manager) in [
        ("file", &from_file),
        ("env", &from_env),
        ("builder", &from_builder),
    ] {
        assert_eq!(
            manager.sampler().config().deferred,
            expected_deferred(),
            "{name}"
        );
        assert_eq!(
            filter_rule_names(manager),
            ["short-internal", "cache", "health"],
            "{name}"
        );
    }
    // The builder wins over the file, which wins over the environment.
    let manager = build(
        TracingManager::from_env_with(env(&env_pairs()))
            .config(TracingConfig::from_toml(TOML).unwrap())
            .export_filter(
                ExportFilterConfig::default()
                    .rule(FilterRule::new("mine").kind(RuleSpanKind::Consumer)),
            ),
    )
    .expect("layers");
    assert_eq!(filter_rule_names(&manager), ["mine"]);
}

#[cfg(feature = "yaml")]
#[test]
fn yaml_gives_the_same_settings() {
    let yaml = r#"
sampling:
  base_rate: 0.01
  deferred:
    enabled: true
    fraction: 0.5
    max_per_second: 20
    slow_threshold_ms: 750
    slow_routes:
      - { route: "/reports/**", threshold_ms: 5000 }
      - { route: "/search", threshold_ms: 300 }
    max_traces: 64
    max_spans_per_trace: 32
    max_bytes: 1048576
    timeout_ms: 10000
    propagate_sampled: true
export_filter:
  rules:
    - { name: short-internal, kind: internal, shorter_than_ms: 1.0 }
    - { name: cache, span_name: "cache.*" }
    - { name: health, attributes: { "http.route": "/health" } }
"#;
    let config = TracingConfig::from_yaml(yaml).expect("yaml");
    assert_eq!(
        config.sampling.expect("sampling").deferred,
        expected_deferred()
    );
    assert_eq!(config.export_filter.expect("filter"), expected_filter());
}

#[test]
fn invalid_values_are_one_sentence_naming_the_setting_and_the_value() {
    let env_cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("MESHTRACE_SAMPLING_DEFERRED", "yes")],
            "MESHTRACE_SAMPLING_DEFERRED = \"yes\" is invalid: it must be `true` or `false`",
        ),
        (
            &[("MESHTRACE_SAMPLING_DEFERRED_FRACTION", "2")],
            "MESHTRACE_SAMPLING_DEFERRED_FRACTION = \"2\" is invalid: it must be between 0.0 and 1.0",
        ),
        (
            &[("MESHTRACE_SAMPLING_DEFERRED_MAX_PER_SECOND", "0")],
            "MESHTRACE_SAMPLING_DEFERRED_MAX_PER_SECOND = \"0\" is invalid: it must be a whole number of traces per second between 1 and 1000000",
        ),
        (
            &[("MESHTRACE_SAMPLING_DEFERRED_MAX_TRACES", "many")],
            "MESHTRACE_SAMPLING_DEFERRED_MAX_TRACES = \"many\" is invalid: it must be a whole number",
        ),
        (
            &[("MESHTRACE_SAMPLING_DEFERRED_MAX_BYTES", "0")],
            "MESHTRACE_SAMPLING_DEFERRED_MAX_BYTES = \"0\" is invalid: it must be between 1 and 1073741824",
        ),
        (
            &[("MESHTRACE_SAMPLING_DEFERRED_SLOW_ROUTES", "/a=5,/b")],
            "MESHTRACE_SAMPLING_DEFERRED_SLOW_ROUTES = \"/b\" is invalid: each entry must be `route-glob=milliseconds`",
        ),
        (
            &[("MESHTRACE_SAMPLING_DEFERRED_SLOW_ROUTES", "/a=0")],
            "MESHTRACE_SAMPLING_DEFERRED_SLOW_ROUTES = \"0\" is invalid",
        ),
        (
            &[("MESHTRACE_EXPORT_FILTER", "{not json")],
            "MESHTRACE_EXPORT_FILTER = \"{not json\" is invalid: it must be JSON",
        ),
        (
            &[("MESHTRACE_EXPORT_FILTER", r#"[{"name":"all"}]"#)],
            "MESHTRACE_EXPORT_FILTER = \"[{\\\"name\\\":\\\"all\\\"}]\" is invalid: export_filter.rules[0].name = \"all\": the rule has no condition",
        ),
    ];
    for (pairs, expected) in env_cases {
        let error = build(TracingManager::from_env_with(env(pairs))).expect_err(expected);
        let message = error.to_string();
        assert!(
            message.starts_with(expected),
            "{message}\nexpected {expected}"
        );
        assert!(!message.contains('\n'));
    }

    let file_cases: &[(&str, &str)] = &[
        (
            "[sampling.deferred]\nmax_traces = 0",
            "sampling.deferred.max_traces = \"0\" is invalid: it must be between 1 and 1048576",
        ),
        (
            "[sampling.deferred]\nfraction = -0.5",
            "sampling.deferred.fraction = \"-0.5\" is invalid: it must be between 0.0 and 1.0",
        ),
        (
            "[sampling.deferred]\ntimeout_ms = 0",
            "sampling.deferred.timeout_ms = \"0\" is invalid: it must be a number of milliseconds between 1 and 3600000",
        ),
        (
            "[[sampling.deferred.slow_routes]]\nroute = \"\"\nthreshold_ms = 5",
            "sampling.deferred.slow_routes[0].route = \"\" is invalid: empty route glob",
        ),
        (
            "[[export_filter.rules]]\nname = \"g\"\nspan_name = \"a[\"",
            "export_filter.rules[0].span_name = \"a[\" is invalid: invalid glob",
        ),
        (
            "[[export_filter.rules]]\nname = \"d\"\nshorter_than_ms = 0",
            "export_filter.rules[0].shorter_than_ms = \"0\" is invalid",
        ),
    ];
    for (text, expected) in file_cases {
        let config = TracingConfig::from_toml(text).expect(text);
        let message = config.validate().expect_err(text).to_string();
        assert!(
            message.starts_with(expected),
            "{message}\nexpected {expected}"
        );
        let message = build(TracingManager::builder().config(config))
            .expect_err(text)
            .to_string();
        assert!(message.starts_with(expected), "{message}");
    }
    // Unknown keys are typos, not silently ignored.
    let message = TracingConfig::from_toml("[sampling.deferred]\nenable = true")
        .expect_err("unknown key")
        .to_string();
    assert!(message.contains("enable"), "{message}");
}
