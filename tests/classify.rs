//! A response classifier of the application's own, end to end: an axum service on
//! 127.0.0.1 behind `TracingLayer::classifier`, called through hyper-util's client behind
//! `ClientTracingLayer::classifier` and through reqwest behind the reqwest middleware's
//! `classifier` (the closure form), spans and metrics exported into memory by the
//! manager's pipeline.
//!
//! The application's rules: a `200` with an `x-app-error` header is a failure; a `500` is
//! not (the service reports a failing dependency as data); an `application/x-app-stream`
//! body is decided at its end by its `x-app-status` trailer; everything else by the
//! built-in rules. Each case checks the span (status, `error.type`) and that the duration
//! metric carries the same `error.type`.
#![cfg(all(feature = "axum", feature = "reqwest"))]

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use common::attr_str;
use common::client::hyper_client;
use common::metrics::Pipeline;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt as _, Empty, StreamBody};
use meshtrace::TracingManager;
use meshtrace::classify::{Classification, ClassifyResponse, DefaultClassifier, Exchange};
use meshtrace::sampler::SamplingConfig;
use meshtrace::server::TracingLayer;
use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::SpanData;
use tower::ServiceExt as _;

const APP_STREAM: &str = "application/x-app-stream";
const APP_STATUS: &str = "x-app-status";

/// The application's rules (see the module docs).
struct AppRules;

impl ClassifyResponse for AppRules {
    fn classify_response(
        &self,
        exchange: &Exchange,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Classification {
        if headers.contains_key("x-app-error") {
            return Classification::failure("app_error");
        }
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            return Classification::Success;
        }
        if headers.get(CONTENT_TYPE).is_some_and(|v| v == APP_STREAM) {
            return Classification::AtEnd;
        }
        DefaultClassifier.classify_response(exchange, status, headers)
    }

    fn classify_end(&self, _: &Exchange, trailers: Option<&HeaderMap>) -> Classification {
        match trailers.and_then(|t| t.get(APP_STATUS)) {
            Some(status) if status == "ok" => Classification::Success,
            Some(_) => Classification::failure("app_stream_failed"),
            None => Classification::failure("app_stream_unfinished"),
        }
    }
}

/// An `application/x-app-stream` body of two parts and, unless `outcome` is `none`, an
/// `x-app-status: {outcome}` trailer (declared in `trailer`, as HTTP/1.1 asks).
async fn app_stream(Path(outcome): Path<String>) -> Response {
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"part 1\n"))),
        Ok(Frame::data(Bytes::from_static(b"part 2\n"))),
    ];
    if outcome != "none" {
        let mut trailers = HeaderMap::new();
        trailers.insert(
            APP_STATUS,
            HeaderValue::from_str(&outcome).expect("a header value"),
        );
        frames.push(Ok(Frame::trailers(trailers)));
    }
    (
        [
            (CONTENT_TYPE, APP_STREAM),
            (http::header::TRAILER, APP_STATUS),
        ],
        Body::new(StreamBody::new(futures_util::stream::iter(frames))),
    )
        .into_response()
}

/// The service, behind `layer` if any.
async fn serve(layer: Option<TracingLayer>) -> SocketAddr {
    let app = Router::new()
        .route("/plain", get(|| async { "plain" }))
        .route(
            "/app-error",
            get(|| async { ([("x-app-error", "quota")], "not done") }),
        )
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move {
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
            }),
        )
        .route("/stream/{outcome}", get(app_stream));
    let app = match layer {
        Some(layer) => app.layer(layer),
        None => app,
    };
    common::serve(app).await
}

/// What one exchange should record: the status code, and the `error.type` of a failure
/// (span status Error), `None` for a success (Unset).
struct Case {
    path: &'static str,
    status: i64,
    error_type: Option<&'static str>,
}

const fn case(path: &'static str, status: i64, error_type: Option<&'static str>) -> Case {
    Case {
        path,
        status,
        error_type,
    }
}

/// The same answers on both sides with [`AppRules`].
const APP_CASES: &[Case] = &[
    case("/plain", 200, None),
    case("/app-error", 200, Some("app_error")),
    // The classifier says a 500 is a success: Unset, no `error.type`.
    case("/status/500", 500, None),
    // The classifier falls back on the built-in rules.
    case("/status/503", 503, Some("503")),
    // Decided at the end, from the trailers.
    case("/stream/ok", 200, None),
    case("/stream/failed", 200, Some("app_stream_failed")),
    case("/stream/none", 200, Some("app_stream_unfinished")),
];

fn pipeline() -> Pipeline {
    Pipeline::new(
        TracingManager::builder().sampling(SamplingConfig::default().base_rate(1.0)),
        Temporality::Cumulative,
    )
}

/// Checks one span against its case.
fn check_span(span: &SpanData, case: &Case, at: &str) {
    assert_eq!(
        common::attr(span, "http.response.status_code"),
        Some(Value::I64(case.status)),
        "{at}"
    );
    assert_eq!(
        attr_str(span, "error.type").as_deref(),
        case.error_type,
        "{at}"
    );
    match case.error_type {
        Some(_) => assert!(
            matches!(span.status, Status::Error { .. }),
            "{at}: {span:#?}"
        ),
        None => assert_eq!(span.status, Status::Unset, "{at}"),
    }
}

/// The duration metric `name` counts each case once, with its status code and
/// `error.type`.
/// The client span of each case's call to `addr`, and the client metric of them all.
async fn check_client_calls(pipeline: &Pipeline, addr: SocketAddr, cases: &[Case]) {
    let spans = pipeline.finished_spans().await;
    for case in cases {
        let url = format!("http://{addr}{}", case.path);
        let span = spans
            .iter()
            .find(|s| attr_str(s, "url.full").as_deref() == Some(url.as_str()))
            .unwrap_or_else(|| panic!("no span for {url}: {spans:#?}"));
        assert_eq!(span.span_kind, SpanKind::Client);
        check_span(span, case, &url);
    }
    check_metric(pipeline, "http.client.request.duration", cases).await;
}

async fn check_metric(pipeline: &Pipeline, name: &str, cases: &[Case]) {
    let key = |status: String, error_type: Option<String>| (status, error_type);
    let mut expected = BTreeMap::new();
    for case in cases {
        *expected
            .entry(key(
                case.status.to_string(),
                case.error_type.map(str::to_owned),
            ))
            .or_insert(0u64) += 1;
    }
    let mut counted = BTreeMap::new();
    for point in pipeline.points(name).await {
        let status = point.attributes["http.response.status_code"].clone();
        let error_type = point.attributes.get("error.type").cloned();
        *counted.entry(key(status, error_type)).or_insert(0u64) += point.count;
    }
    assert_eq!(counted, expected, "{name}");
}

#[tokio::test]
async fn a_server_classifier_decides_the_span_and_the_metric() {
    let pipeline = pipeline();
    let addr = serve(Some(pipeline.manager.server_layer().classifier(AppRules))).await;
    for case in APP_CASES {
        let response = reqwest::get(format!("http://{addr}{}", case.path))
            .await
            .expect("response");
        assert_eq!(i64::from(response.status().as_u16()), case.status);
        response.bytes().await.expect("the whole body");
    }
    let spans = pipeline.finished_spans().await;
    for case in APP_CASES {
        let span = spans
            .iter()
            .find(|s| attr_str(s, "url.path").as_deref() == Some(case.path))
            .unwrap_or_else(|| panic!("no span for {}: {spans:#?}", case.path));
        assert_eq!(span.span_kind, SpanKind::Server);
        check_span(span, case, case.path);
    }
    check_metric(&pipeline, "http.server.request.duration", APP_CASES).await;
}

#[tokio::test]
async fn a_hyper_client_classifier_decides_the_span_and_the_metric() {
    let pipeline = pipeline();
    let addr = serve(None).await;
    let client = hyper_client(pipeline.manager.client_layer().classifier(AppRules));
    for case in APP_CASES {
        // `te: trailers`: an HTTP/1.1 server sends trailers only to a client that asks.
        let request = http::Request::get(format!("http://{addr}{}", case.path))
            .header(http::header::TE, "trailers")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = client.clone().oneshot(request).await.expect("response");
        assert_eq!(i64::from(response.status().as_u16()), case.status);
        let body = response.into_body().collect().await.expect("body");
        if case.path == "/stream/failed" {
            // The trailer came through to the caller too.
            assert_eq!(
                body.trailers().and_then(|t| t.get(APP_STATUS)),
                Some(&HeaderValue::from_static("failed"))
            );
        }
    }
    check_client_calls(&pipeline, addr, APP_CASES).await;
}

#[tokio::test]
async fn a_closure_classifies_reqwest_calls() {
    let pipeline = pipeline();
    let addr = serve(None).await;
    // The closure form: the head alone.
    let rules = |exchange: &Exchange, status: StatusCode, headers: &HeaderMap| {
        if headers.contains_key("x-app-error") {
            Classification::failure("app_error")
        } else if status == StatusCode::INTERNAL_SERVER_ERROR {
            Classification::Success
        } else {
            DefaultClassifier.classify_response(exchange, status, headers)
        }
    };
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(pipeline.manager.reqwest_middleware().classifier(rules))
        .build();
    let cases = [
        case("/plain", 200, None),
        case("/app-error", 200, Some("app_error")),
        case("/status/500", 500, None),
        // The built-in client rules: 4xx is a failure.
        case("/status/404", 404, Some("404")),
    ];
    for case in &cases {
        let response = client
            .get(format!("http://{addr}{}", case.path))
            .send()
            .await
            .expect("response");
        assert_eq!(i64::from(response.status().as_u16()), case.status);
        response.bytes().await.expect("the whole body");
    }
    check_client_calls(&pipeline, addr, &cases).await;
}
