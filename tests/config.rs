//! Every configuration entry point (`TracingConfig::from_toml` / `from_json` / `from_yaml` /
//! `from_file` / `validate`, `TracingManager::from_env_with(..).build()`) with valid,
//! malformed, oversized and hostile input, and the errors a user sees: one sentence naming
//! the setting, the value as given (never a secret) and the fix.
//!
//! Environment variables are passed through `from_env_with` maps, never set on the process.

use std::collections::HashMap;
use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[cfg(feature = "otlp-tls")]
use meshtrace::config::OtlpConfig;
use meshtrace::config::{SpanLimitsConfig, TracingConfig, env as vars};
use meshtrace::{Error, TracingManager, TracingManagerBuilder};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn build(builder: TracingManagerBuilder) -> Result<(), Error> {
    builder
        .log_writer(std::io::sink)
        .build()
        .map(|(manager, _)| drop(manager))
}

fn env_error(pairs: &[(&str, &str)]) -> Error {
    let names: Vec<&str> = pairs.iter().map(|(name, _)| *name).collect();
    build(TracingManager::from_env_with(env(pairs))).expect_err(&format!("{names:?}"))
}

/// What every error must look like: one line, no struct syntax, `Debug` = `Display`.
fn readable(error: &Error) -> String {
    let message = error.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        !message.contains("Config {") && !message.contains("reason:"),
        "{message}"
    );
    assert_eq!(format!("{error:?}"), message);
    assert!(message.len() < 1024, "bounded: {} bytes", message.len());
    message
}

/// An exporter that keeps the spans.
#[derive(Clone, Debug, Default)]
struct Capture(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Capture {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// log_filter and span_filter

#[test]
fn log_and_span_filters_come_from_their_keys_and_variables_and_are_validated() {
    let config = TracingConfig::from_toml(
        "log_filter = \"warn,my_app=debug\"\nspan_filter = \"info,noisy=off\"",
    )
    .unwrap();
    assert_eq!(config.log_filter.as_deref(), Some("warn,my_app=debug"));
    assert_eq!(config.span_filter.as_deref(), Some("info,noisy=off"));
    config.validate().unwrap();
    build(TracingManager::from_env_with(env(&[
        ("RUST_LOG", " warn "),
        ("MESHTRACE_SPAN_FILTER", "debug"),
    ])))
    .unwrap();

    for (var, value) in [("RUST_LOG", "info,[[["), ("MESHTRACE_SPAN_FILTER", "=")] {
        let error = env_error(&[(var, value)]);
        assert_eq!(error.field(), Some(var), "{error}");
        let message = readable(&error);
        assert!(
            message.contains(value) && message.contains("EnvFilter"),
            "{message}"
        );
    }
    for (toml, field) in [
        ("log_filter = \"[[[\"", "log_filter"),
        ("span_filter = \"a=b=c\"", "span_filter"),
    ] {
        let error = TracingConfig::from_toml(toml)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(error.field(), Some(field), "{error}");
    }
    let error = build(TracingManager::builder().span_filter("[[[")).unwrap_err();
    assert_eq!(error.field(), Some("span_filter"));
    // The meshtrace default: every span at INFO and above.
    assert_eq!(meshtrace::config::DEFAULT_SPAN_FILTER, "info");
}

#[test]
fn the_old_env_filter_key_says_it_was_renamed() {
    let error = TracingConfig::from_toml("env_filter = \"info\"").unwrap_err();
    let message = readable(&error);
    assert!(
        message.contains("`log_filter`") && message.contains("line 1"),
        "{message}"
    );
    let error = TracingConfig::from_json(r#"{"env_filter": "info"}"#).unwrap_err();
    assert!(error.to_string().contains("`log_filter`"), "{error}");
}

// ---------------------------------------------------------------------------------------
// span limits: a top-level export setting

#[test]
fn span_limits_are_a_top_level_setting_and_sampling_refuses_them() {
    let config = TracingConfig::from_toml(
        "[span_limits]\nmax_attributes_per_span = 64\nmax_attribute_value_length = 100",
    )
    .unwrap();
    assert_eq!(
        config.span_limits,
        SpanLimitsConfig::default()
            .max_attributes_per_span(64)
            .max_attribute_value_length(100)
    );
    config.validate().unwrap();

    let error = TracingConfig::from_toml("[sampling.span_limits]\nmax_attributes_per_span = 64")
        .unwrap_err();
    let message = readable(&error);
    assert!(message.contains("top level"), "{message}");
    let error = TracingConfig::from_toml("[sampling.debug]\nheader = \"x-debug\"").unwrap_err();
    assert!(
        error.to_string().contains("TracingLayer::debug_header"),
        "{error}"
    );
}

#[test]
fn span_limit_values_are_bounded() {
    let cases: &[(&str, &str)] = &[
        (
            "[span_limits]\nmax_attribute_value_length = 0",
            "span_limits.max_attribute_value_length",
        ),
        (
            "[span_limits]\nmax_attribute_value_length = 65537",
            "span_limits.max_attribute_value_length",
        ),
        (
            "[span_limits]\nmax_events_per_span = 65537",
            "span_limits.max_events_per_span",
        ),
    ];
    for (toml, field) in cases {
        let error = TracingConfig::from_toml(toml)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(error.field(), Some(*field), "{error}");
        assert!(readable(&error).contains("between"), "{error}");
    }
    TracingConfig::from_toml(
        "[span_limits]\nmax_attribute_value_length = 65536\nmax_events_per_span = 0",
    )
    .unwrap()
    .validate()
    .unwrap();
    assert!(TracingConfig::from_toml("[span_limits]\nmax_attribute_value_length = -1").is_err());

    for (var, value) in [
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "0"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "65537"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "unlimited"),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "-1"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "1e3"),
        ("OTEL_SPAN_LINK_COUNT_LIMIT", "many"),
        ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "99999999999"),
        ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "1.5"),
    ] {
        let error = env_error(&[(var, value)]);
        assert_eq!(error.field(), Some(var), "{error}");
        assert!(readable(&error).contains(value), "{error}");
    }
}

/// The variables reach the spans: the value length cuts exported strings, the count limit
/// is the SDK's.
#[test]
fn span_limit_variables_apply_to_exported_spans() {
    let capture = Capture::default();
    let (manager, layers) = TracingManager::from_env_with(env(&[
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8"),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2"),
    ]))
    .span_exporter(capture.clone())
    .log_writer(std::io::sink)
    .build()
    .unwrap();
    tracing::subscriber::with_default(layers.into_subscriber(), || {
        tracing::info_span!("long", a = "0123456789abcdef", b = "ok", c = "dropped")
            .in_scope(|| {});
    });
    manager.force_flush().unwrap();
    let spans = capture.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 1);
    let attributes = &spans[0].attributes;
    assert!(attributes.len() <= 2, "{attributes:?}");
    let a = attributes.iter().find(|kv| kv.key.as_str() == "a").unwrap();
    assert_eq!(a.value.as_str(), "01234567");
    // The span-specific variable wins over the general one.
    build(TracingManager::from_env_with(env(&[
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "0"),
    ])))
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// OTLP: protocol, endpoints, headers

#[test]
fn http_json_is_an_otlp_protocol() {
    let config = TracingConfig::from_toml(
        "[exporter]\nkind = \"otlp\"\nprotocol = \"http/json\"\nendpoint = \"http://127.0.0.1:4318\"",
    )
    .unwrap();
    let Some(meshtrace::config::ExporterConfig::Otlp(otlp)) = &config.exporter else {
        panic!("{config:?}")
    };
    assert_eq!(
        otlp.protocol,
        Some(meshtrace::config::OtlpProtocol::HttpJson)
    );
    assert_eq!(
        meshtrace::config::OtlpProtocol::HttpJson.as_str(),
        "http/json"
    );
    let builder = TracingManager::from_env_with(env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ]))
    .shutdown_timeout(std::time::Duration::from_millis(100));
    if cfg!(feature = "otlp") {
        build(builder).unwrap();
        config.validate().unwrap();
    }
    let error = env_error(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml")]);
    assert!(readable(&error).contains("`http/json`"), "{error}");
}

#[cfg(not(feature = "otlp"))]
#[test]
fn otlp_asked_for_without_the_feature_names_the_variable_and_the_feature() {
    // (variables, the variable named, its value)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318",
        ),
        (
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://collector:4318/v1/traces",
            )],
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/v1/traces",
        ),
        (
            &[("OTEL_TRACES_EXPORTER", "otlp")],
            "OTEL_TRACES_EXPORTER",
            "otlp",
        ),
    ];
    for (pairs, var, value) in cases {
        let error = env_error(pairs);
        let message = readable(&error);
        assert!(
            matches!(&error, Error::MissingFeature { field, feature: "otlp", .. } if field == var),
            "{message}"
        );
        assert_eq!(
            message,
            format!(
                "{var} = \"{value}\" asks for the OTLP exporter, which needs meshtrace's `otlp` \
                 feature: enable it (`cargo add meshtrace --features otlp`) or remove the setting"
            )
        );
    }
    let error = TracingConfig::from_toml("[exporter]\nkind = \"otlp\"")
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(error.field(), Some("exporter.kind"));
    // A span exporter given in code replaces the configured one: no feature needed.
    build(
        TracingManager::from_env_with(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318",
        )]))
        .span_exporter(Capture::default()),
    )
    .unwrap();
}

#[cfg(feature = "otlp")]
#[test]
fn endpoint_errors_show_the_value_given_and_name_its_source() {
    // (variables, config file, the setting named, the value shown)
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
            None,
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "collector:4318",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://")],
            None,
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://",
        ),
        (
            &[],
            Some("[exporter]\nkind = \"otlp\"\nendpoint = \"http:///v1\""),
            "exporter.endpoint",
            "http:///v1",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://fine:4318")],
            Some("[exporter]\nkind = \"otlp\"\nendpoint = \"ftp://collector\""),
            "exporter.endpoint",
            "ftp://collector",
        ),
    ];
    for (pairs, toml, field, value) in cases {
        let mut builder = TracingManager::from_env_with(env(pairs));
        if let Some(toml) = toml {
            builder = builder.config(TracingConfig::from_toml(toml).unwrap());
        }
        let error = build(builder).unwrap_err();
        let message = readable(&error);
        assert_eq!(error.field(), Some(*field), "{message}");
        assert!(
            message.starts_with(&format!("{field} = \"{value}\" is invalid: ")),
            "{message}"
        );
        assert!(!message.contains("/v1/traces"), "{message}");
    }
}

#[cfg(all(feature = "otlp", not(feature = "otlp-tls")))]
#[test]
fn https_without_the_tls_feature_names_the_setting_and_the_feature() {
    let error = env_error(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.example.com")]);
    assert_eq!(
        readable(&error),
        "OTEL_EXPORTER_OTLP_ENDPOINT = \"https://api.example.com\" is an https:// endpoint \
         (TLS), which needs meshtrace's `otlp-tls` feature: enable it (`cargo add meshtrace \
         --features otlp-tls`) or remove the setting"
    );
    let error = TracingConfig::from_toml(
        "[exporter]\nkind = \"otlp\"\ntraces_endpoint = \"HTTPS://api.example.com/v1/traces\"",
    )
    .unwrap()
    .validate()
    .unwrap_err();
    assert!(
        matches!(&error, Error::MissingFeature { field, feature: "otlp-tls", .. } if field == "exporter.traces_endpoint"),
        "{error}"
    );
}

#[test]
fn a_header_without_equals_shows_the_header_name_only() {
    for (headers, shown) in [
        ("x-api-key:s3cr3t", "x-api-key"),
        ("authorization Bearer s3cr3t", "authorization"),
        ("ok=1,x-api-key s3cr3t", "x-api-key"),
        (":s3cr3t", "<redacted>"),
    ] {
        let error = env_error(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", headers),
        ]);
        let message = readable(&error);
        assert!(
            !message.contains("s3cr3t") && !message.contains("Bearer"),
            "{message}"
        );
        match &error {
            Error::Config { field, value, .. } => {
                assert_eq!(field, "OTEL_EXPORTER_OTLP_HEADERS");
                assert_eq!(value, shown, "{message}");
            }
            other => panic!("{other}"),
        }
    }
    // A bad value names the header and hides the value.
    let error = env_error(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-api-key=s3cr3t%0A"),
    ]);
    let message = readable(&error);
    assert!(
        message.contains("x-api-key") && !message.contains("s3cr3t"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------
// TLS settings

#[cfg(feature = "otlp-tls")]
const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZ2V0\nLXRoaXMtaXMtbm90LWEtcmVhbC1jZXJ0\n-----END CERTIFICATE-----\n";
#[cfg(feature = "otlp-tls")]
const PEM_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEG\n-----END PRIVATE KEY-----\n";

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[cfg(feature = "otlp-tls")]
fn tls_config(endpoint: &str, otlp: impl FnOnce(OtlpConfig) -> OtlpConfig) -> TracingConfig {
    let mut config = TracingConfig::default();
    config.exporter = Some(meshtrace::config::ExporterConfig::Otlp(otlp(
        OtlpConfig::new(endpoint),
    )));
    config
}

#[test]
fn tls_keys_and_variables_parse() {
    let config = TracingConfig::from_toml(
        "[exporter]\nkind = \"otlp\"\nendpoint = \"https://c:4318\"\ncertificate = \"/ca.pem\"\n\
         client_certificate = \"/c.pem\"\nclient_key = \"/k.pem\"",
    )
    .unwrap();
    let Some(meshtrace::config::ExporterConfig::Otlp(otlp)) = &config.exporter else {
        panic!("{config:?}")
    };
    assert_eq!(otlp.certificate.as_deref(), Some(Path::new("/ca.pem")));
    assert_eq!(
        otlp.client_certificate.as_deref(),
        Some(Path::new("/c.pem"))
    );
    assert_eq!(otlp.client_key.as_deref(), Some(Path::new("/k.pem")));
    assert_eq!(
        vars::OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"
    );
}

#[cfg(feature = "otlp-tls")]
#[test]
fn tls_files_are_read_and_checked_at_build_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = write(d, "ca.pem", PEM_CERT.as_bytes());
    let cert = write(d, "client.pem", PEM_CERT.as_bytes());
    let key = write(d, "client-key.pem", PEM_KEY.as_bytes());
    tls_config("https://collector:4318", |o| {
        o.certificate(&ca).client_identity(&cert, &key)
    })
    .validate()
    .unwrap();
    tls_config("https://collector:4318", |o| o.certificate(&ca))
        .validate()
        .unwrap();
    // The platform's roots: no file at all.
    tls_config("https://collector:4318", |o| o)
        .validate()
        .unwrap();

    let secret_key = write(d, "secret.pem", b"not pem: the-private-key-bytes");
    let huge = write(d, "huge.pem", &vec![b'A'; (1 << 20) + 1]);
    let der = write(d, "ca.der", &[0x30, 0x82, 0x01, 0xff, 0x00]);
    let missing = d.join("missing.pem");
    let cases: Vec<(&str, TracingConfig, &str, &str)> = vec![
        (
            "missing CA",
            tls_config("https://c", |o| o.certificate(&missing)),
            "exporter.certificate",
            "cannot read it",
        ),
        (
            "CA is a key",
            tls_config("https://c", |o| o.certificate(&key)),
            "exporter.certificate",
            "no PEM certificate",
        ),
        (
            "DER CA",
            tls_config("https://c", |o| o.certificate(&der)),
            "exporter.certificate",
            "not a PEM file",
        ),
        (
            "huge CA",
            tls_config("https://c", |o| o.certificate(&huge)),
            "exporter.certificate",
            "larger than",
        ),
        (
            "CA is a directory",
            tls_config("https://c", |o| o.certificate(d)),
            "exporter.certificate",
            "directory",
        ),
        (
            "key is not PEM",
            tls_config("https://c", |o| o.client_identity(&cert, &secret_key)),
            "exporter.client_key",
            "no PEM private key",
        ),
        (
            "cert is a key",
            tls_config("https://c", |o| o.client_identity(&key, &key)),
            "exporter.client_certificate",
            "no PEM certificate",
        ),
    ];
    for (name, config, field, needle) in cases {
        let error = config.validate().expect_err(name);
        let message = readable(&error);
        assert!(matches!(error, Error::File { .. }), "{name}: {message}");
        assert_eq!(error.field(), Some(field), "{name}: {message}");
        assert!(message.contains(needle), "{name}: {message}");
        assert!(
            !message.contains("private-key-bytes") && !message.contains("MIIB"),
            "{name}: {message}"
        );
    }
    let error = tls_config("https://c", |o| o.certificate(&missing))
        .validate()
        .unwrap_err();
    let io = error
        .source()
        .expect("an I/O source")
        .downcast_ref::<std::io::Error>()
        .unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(error.to_string().contains("missing.pem"));
}

#[cfg(feature = "otlp-tls")]
#[test]
fn half_a_client_identity_or_tls_files_on_plain_http_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "c.pem", PEM_CERT.as_bytes());
    let mut only_cert = OtlpConfig::new("https://c");
    only_cert.client_certificate = Some(cert.clone());
    let mut config = TracingConfig::default();
    config.exporter = Some(meshtrace::config::ExporterConfig::Otlp(only_cert));
    let error = config.validate().unwrap_err();
    assert_eq!(error.field(), Some("exporter.client_certificate"));
    assert!(readable(&error).contains("exporter.client_key"), "{error}");

    let error = env_error(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c"),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
    ]);
    assert_eq!(
        error.field(),
        Some("OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        "{error}"
    );

    let error = tls_config("http://c:4318", |o| o.certificate(&cert))
        .validate()
        .unwrap_err();
    let message = readable(&error);
    assert_eq!(error.field(), Some("exporter.certificate"));
    assert!(message.contains("https://"), "{message}");
}

#[cfg(feature = "otlp-tls")]
#[test]
fn the_traces_tls_variables_win_and_errors_name_them() {
    let error = env_error(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/general.pem"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "/nonexistent/traces.pem",
        ),
    ]);
    let message = readable(&error);
    assert_eq!(
        error.field(),
        Some("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"),
        "{message}"
    );
    assert!(message.contains("/nonexistent/traces.pem"), "{message}");
    // A file key wins over the variables.
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", PEM_CERT.as_bytes());
    build(
        TracingManager::from_env_with(env(&[(
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "/nonexistent/general.pem",
        )]))
        .config(tls_config("https://c", |o| o.certificate(&ca)))
        .span_exporter(Capture::default()),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// Malformed, oversized and hostile input at every entry point

#[test]
fn parse_errors_never_echo_values_and_say_where() {
    let secret = "s3cr3t-value";
    let cases: Vec<(&str, Result<TracingConfig, Error>)> = vec![
        (
            "toml type",
            TracingConfig::from_toml(&format!(
                "[exporter]\nkind = \"otlp\"\nheaders = \"{secret}\""
            )),
        ),
        (
            "toml syntax",
            TracingConfig::from_toml(&format!(
                "[exporter]\nheaders = {{ \"k\" = \"{secret}\" oops }}"
            )),
        ),
        (
            "json type",
            TracingConfig::from_json(&format!(
                r#"{{"exporter": {{"kind": "otlp", "headers": "{secret}"}}}}"#
            )),
        ),
        (
            "json token list",
            TracingConfig::from_json(&format!(
                r#"{{"sampling": {{"debug": {{"tokens": "{secret}"}}}}}}"#
            )),
        ),
    ];
    for (name, result) in cases {
        let error = result.expect_err(name);
        let message = readable(&error);
        assert!(!message.contains(secret), "{name}: {message}");
        assert!(message.contains("line"), "{name}: {message}");
        assert!(
            error.source().is_some(),
            "{name}: parse errors have a source"
        );
        assert!(
            !error.source().unwrap().to_string().contains(secret),
            "{name}"
        );
    }
    // Enum values are never secrets: a typo is shown, to be fixed.
    let error = TracingConfig::from_json(r#"{"exporter": {"kind": "zipkn"}}"#).unwrap_err();
    assert!(readable(&error).contains("`zipkn`"), "{error}");
    let error = TracingConfig::from_toml("[batch]\nmax_queue_size = \"lots\"").unwrap_err();
    assert!(
        readable(&error).contains("key `batch.max_queue_size`, line 2"),
        "{error}"
    );
}

/// The error a case is expected to carry as its `source()`.
enum Underneath {
    EnvFilter,
    Redacted,
    #[cfg(feature = "otlp")]
    Uri,
    #[cfg(feature = "otlp-tls")]
    Reqwest,
}

#[test]
fn configuration_errors_keep_the_parser_error_as_their_source() {
    let secret = "s3cr3t-value";
    let dir = tempfile::tempdir().unwrap();
    #[cfg(feature = "otlp-tls")]
    let bad_base64 = write(
        dir.path(),
        "bad.pem",
        // Passes the PEM check (base64 characters, a multiple of 4 long) but not decoding.
        b"-----BEGIN CERTIFICATE-----\nAA==AAAA\n-----END CERTIFICATE-----\n",
    );
    #[cfg(feature = "otlp-tls")]
    let key = write(dir.path(), "key.pem", PEM_KEY.as_bytes());
    #[cfg(not(feature = "otlp-tls"))]
    let _ = &dir;
    // (case, what it gave, the field its error names, the source's type)
    type Case<'a> = (&'a str, Result<(), Error>, Option<&'a str>, Underneath);
    let cases: Vec<Case> = vec![
        (
            "log_filter",
            build(TracingManager::builder().log_filter("info,[[[")),
            Some("log_filter"),
            Underneath::EnvFilter,
        ),
        (
            "span_filter",
            build(TracingManager::builder().span_filter("info,[[[")),
            Some("span_filter"),
            Underneath::EnvFilter,
        ),
        (
            "MESHTRACE_SPAN_FILTER",
            build(TracingManager::from_env_with(env(&[(
                vars::MESHTRACE_SPAN_FILTER,
                "info,[[[",
            )]))),
            Some(vars::MESHTRACE_SPAN_FILTER),
            Underneath::EnvFilter,
        ),
        (
            "MESHTRACE_EXPORT_FILTER syntax",
            build(TracingManager::from_env_with(env(&[(
                "MESHTRACE_EXPORT_FILTER",
                "{not json",
            )]))),
            Some("MESHTRACE_EXPORT_FILTER"),
            Underneath::Redacted,
        ),
        (
            "MESHTRACE_EXPORT_FILTER type",
            build(TracingManager::from_env_with(env(&[(
                "MESHTRACE_EXPORT_FILTER",
                &format!(r#"{{"rules": "{secret}"}}"#),
            )]))),
            Some("MESHTRACE_EXPORT_FILTER"),
            Underneath::Redacted,
        ),
        (
            "sampling strategy",
            meshtrace::sampler::SamplingStrategy::from_json(&format!(
                r#"{{"probabilisticSampling": "{secret}"}}"#
            ))
            .map(drop),
            None,
            Underneath::Redacted,
        ),
        #[cfg(feature = "otlp")]
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            build(TracingManager::from_env_with(env(&[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("http://user:{secret}@collector 4318"),
            )]))),
            Some("OTEL_EXPORTER_OTLP_ENDPOINT"),
            Underneath::Uri,
        ),
        #[cfg(feature = "otlp-tls")]
        (
            "custom CA",
            build(
                TracingManager::builder().config(tls_config("https://127.0.0.1:4318", |o| {
                    o.certificate(&bad_base64)
                })),
            ),
            Some("exporter.certificate"),
            Underneath::Reqwest,
        ),
        #[cfg(feature = "otlp-tls")]
        (
            "client certificate",
            build(
                TracingManager::builder().config(tls_config("https://127.0.0.1:4318", |o| {
                    o.client_identity(&bad_base64, &key)
                })),
            ),
            Some("exporter.client_certificate"),
            Underneath::Reqwest,
        ),
    ];
    for (name, result, field, underneath) in cases {
        let error = result.expect_err(name);
        let message = readable(&error);
        assert_eq!(error.field(), field, "{name}: {message}");
        let source = error
            .source()
            .unwrap_or_else(|| panic!("{name}: no source: {message}"));
        assert!(!source.to_string().contains(secret), "{name}: {source}");
        match underneath {
            Underneath::EnvFilter => assert!(
                source
                    .downcast_ref::<tracing_subscriber::filter::ParseError>()
                    .is_some(),
                "{name}: {source:?}"
            ),
            // serde quotes the values it rejects: the source is the parser's message
            // without them, as every parse error's is.
            Underneath::Redacted => {
                let parse = source
                    .downcast_ref::<meshtrace::ParseError>()
                    .unwrap_or_else(|| panic!("{name}: {source:?}"));
                assert!(parse.message().contains("line 1"), "{name}: {parse}");
            }
            #[cfg(feature = "otlp")]
            Underneath::Uri => assert!(
                source.downcast_ref::<http::uri::InvalidUri>().is_some(),
                "{name}: {source:?}"
            ),
            #[cfg(feature = "otlp-tls")]
            Underneath::Reqwest => assert!(
                source.downcast_ref::<reqwest::Error>().is_some(),
                "{name}: {source:?}"
            ),
        }
    }
}

#[test]
fn hostile_documents_are_errors_not_crashes() {
    let big = format!("service_name = \"x\"\n# {}\n", "x".repeat(1 << 20));
    let deep_json = "[".repeat(100_000);
    let deep_toml = format!("a = {}", "[".repeat(100_000));
    let long_key = format!("{} = 1", "k".repeat(100_000));
    let cases: Vec<(&str, Result<TracingConfig, Error>)> = vec![
        ("toml over 1 MiB", TracingConfig::from_toml(&big)),
        (
            "json over 1 MiB",
            TracingConfig::from_json(&format!(
                "{{\"service_name\": \"{}\"}}",
                "x".repeat(1 << 20)
            )),
        ),
        ("deep json", TracingConfig::from_json(&deep_json)),
        ("deep toml", TracingConfig::from_toml(&deep_toml)),
        ("long unknown key", TracingConfig::from_toml(&long_key)),
        (
            "NUL and escapes",
            TracingConfig::from_toml("service_name = \"\u{0}\u{1b}[2J\"\n\u{0}"),
        ),
        (
            "json NUL",
            TracingConfig::from_json("{\"service_name\": \"a\u{0}b\"}"),
        ),
    ];
    for (name, result) in cases {
        match result {
            Err(error) => {
                readable(&error);
            }
            // Parsed: then validation refuses it.
            Ok(config) => {
                readable(&config.validate().expect_err(name));
            }
        }
    }
    let message = TracingConfig::from_toml(&big).unwrap_err().to_string();
    assert!(message.contains("at most 1048576"), "{message}");
}

#[cfg(feature = "yaml")]
#[test]
fn yaml_documents_parse_and_hostile_ones_fail() {
    let config = TracingConfig::from_yaml(
        "service_name: checkout\nspan_limits:\n  max_attributes_per_span: 8\n",
    )
    .unwrap();
    assert_eq!(config.service_name.as_deref(), Some("checkout"));
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    for text in [
        laughs,
        &"[".repeat(100_000),
        "exporter:\n  kind: otlp\n  headers: s3cr3t\n",
    ] {
        let error = TracingConfig::from_yaml(text).unwrap_err();
        assert!(!readable(&error).contains("s3cr3t"), "{error}");
    }
}

#[test]
fn config_files_are_chosen_by_extension_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let toml = write(d, "t.TOML", b"service_name = \"a\"");
    assert_eq!(
        TracingConfig::from_file(&toml)
            .unwrap()
            .service_name
            .as_deref(),
        Some("a")
    );
    let json = write(d, "t.json", b"{\"service_name\": \"b\"}");
    assert_eq!(
        TracingConfig::from_file(&json)
            .unwrap()
            .service_name
            .as_deref(),
        Some("b")
    );

    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "unknown extension",
            write(d, "t.conf", b"service_name = \"a\""),
            "extension",
        ),
        (
            "no extension",
            write(d, "tracing", b"service_name = \"a\""),
            "extension",
        ),
        (
            "over 1 MiB",
            write(d, "big.toml", &vec![b'#'; (1 << 20) + 1]),
            "larger than 1048576 bytes",
        ),
        (
            "not UTF-8",
            write(d, "latin1.toml", b"service_name = \"caf\xe9\""),
            "UTF-8",
        ),
        (
            "a directory",
            {
                let p = d.join("dir.toml");
                std::fs::create_dir(&p).unwrap();
                p
            },
            "directory",
        ),
        ("missing", d.join("missing.toml"), "cannot read it"),
        (
            "JSON in a .toml",
            write(d, "wrong.toml", b"{\"service_name\": \"a\"}"),
            "not valid TOML",
        ),
    ];
    for (name, path, needle) in cases {
        let error = TracingConfig::from_file(&path).expect_err(name);
        let message = readable(&error);
        assert!(message.contains(needle), "{name}: {message}");
        assert!(
            message.contains(&path.display().to_string()),
            "{name}: {message}"
        );
        assert_eq!(error.field(), Some("config file"), "{name}");
    }
    let error = TracingConfig::from_file(d.join("missing.toml")).unwrap_err();
    assert!(
        error
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .is_some()
    );
    #[cfg(not(feature = "yaml"))]
    {
        let yaml = write(d, "t.yml", b"service_name: a");
        let error = TracingConfig::from_file(&yaml).unwrap_err();
        assert!(
            matches!(
                error,
                Error::MissingFeature {
                    feature: "yaml",
                    ..
                }
            ),
            "{error}"
        );
    }
    #[cfg(feature = "yaml")]
    {
        let yaml = write(d, "t.yml", b"service_name: c");
        assert_eq!(
            TracingConfig::from_file(&yaml)
                .unwrap()
                .service_name
                .as_deref(),
            Some("c")
        );
    }
}

/// Every variable meshtrace reads refuses a value over 16 KiB, naming the variable and
/// describing (not showing) the value; blank values are unset; values are trimmed.
#[test]
fn every_variable_is_bounded_trimmed_and_blank_means_unset() {
    let all = [
        vars::OTEL_SERVICE_NAME,
        vars::OTEL_RESOURCE_ATTRIBUTES,
        vars::OTEL_TRACES_EXPORTER,
        vars::OTEL_SDK_DISABLED,
        vars::OTEL_EXPORTER_OTLP_ENDPOINT,
        vars::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        vars::OTEL_EXPORTER_OTLP_PROTOCOL,
        vars::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        vars::OTEL_EXPORTER_OTLP_COMPRESSION,
        vars::OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
        vars::OTEL_EXPORTER_OTLP_HEADERS,
        vars::OTEL_EXPORTER_OTLP_TRACES_HEADERS,
        vars::OTEL_EXPORTER_OTLP_TIMEOUT,
        vars::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        vars::OTEL_EXPORTER_OTLP_CERTIFICATE,
        vars::OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
        vars::OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
        vars::OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
        vars::OTEL_EXPORTER_OTLP_CLIENT_KEY,
        vars::OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
        vars::OTEL_BSP_MAX_QUEUE_SIZE,
        vars::OTEL_BSP_SCHEDULE_DELAY,
        vars::OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
        vars::OTEL_BSP_EXPORT_TIMEOUT,
        vars::OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT,
        vars::OTEL_SPAN_EVENT_COUNT_LIMIT,
        vars::OTEL_SPAN_LINK_COUNT_LIMIT,
        vars::OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT,
        vars::OTEL_LINK_ATTRIBUTE_COUNT_LIMIT,
        vars::OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
        vars::OTEL_ATTRIBUTE_COUNT_LIMIT,
        vars::OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
        vars::RUST_LOG,
        vars::MESHTRACE_SPAN_FILTER,
        meshtrace::sampler::ENV_CONFIG_FILE,
        meshtrace::sampler::ENV_BASE_RATE,
        meshtrace::sampler::ENV_HIGH_VALUE_RATE,
        meshtrace::sampler::ENV_DEBUG_TOKENS,
        meshtrace::sampler::ENV_DEBUG_HMAC_SECRET,
        meshtrace::sampler::ENV_DEBUG_MAX_PER_SECOND,
        meshtrace::sampler::ENV_DEBUG_MAX_AGE_SECS,
        meshtrace::sampler::ENV_OTEL_SAMPLER,
        meshtrace::sampler::ENV_OTEL_SAMPLER_ARG,
    ];
    let huge = format!("a{}", "s3cr3t".repeat(3000));
    for var in all {
        let error = if var == meshtrace::sampler::ENV_OTEL_SAMPLER_ARG {
            // Read only for a ratio sampler.
            env_error(&[("OTEL_TRACES_SAMPLER", "traceidratio"), (var, &huge)])
        } else {
            env_error(&[(var, &huge)])
        };
        let message = readable(&error);
        assert_eq!(error.field(), Some(var), "{message}");
        assert!(
            message.contains(&format!("<{} bytes>", huge.len())),
            "{message}"
        );
        assert!(message.contains("16384"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
        // Blank is unset.
        build(TracingManager::from_env_with(env(&[(var, " \t ")])))
            .unwrap_or_else(|e| panic!("{var}: {e}"));
    }
    // Trimmed.
    build(TracingManager::from_env_with(env(&[
        ("OTEL_BSP_MAX_QUEUE_SIZE", " 10\n"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "\t5 "),
        ("OTEL_SDK_DISABLED", " true "),
    ])))
    .unwrap();
    // Hostile values are errors that escape what they show.
    let error = env_error(&[("OTEL_SERVICE_NAME", "svc\n2024-01-01 ERROR forged log line")]);
    let message = readable(&error);
    assert!(message.contains("\\n2024"), "{message}");
}
