//! Helpers for the client tests: a backend service B that records what it receives, a
//! reqwest client and a hyper-util client with meshtrace on them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshtrace::client::{ClientTracingLayer, ClientTracingService, ReqwestTracingMiddleware};
use meshtrace::context::CorrelationId;
use meshtrace::extract::TraceContext;
use meshtrace::server::TracingLayer;
use reqwest_middleware::ClientWithMiddleware;
use tower::{ServiceBuilder, ServiceExt};

use super::serve;

type Received = Arc<Mutex<Vec<HeaderMap>>>;

/// Service B on 127.0.0.1, traced by `TracingLayer`. Its server spans are named
/// `GET /echo`, `GET /status/{code}`, `GET /users/{id}`.
pub struct Backend {
    pub addr: SocketAddr,
    received: Received,
}

/// What B's handler saw: the correlation id and the `tenant` baggage entry.
async fn echo(
    State(received): State<Received>,
    headers: HeaderMap,
    cid: CorrelationId,
    trace: TraceContext,
) -> String {
    received.lock().unwrap().push(headers);
    let tenant = trace
        .baggage()
        .get("tenant")
        .map_or_else(|| "-".to_owned(), |v| v.to_string());
    format!("cid={cid} tenant={tenant}")
}

async fn status(
    State(received): State<Received>,
    headers: HeaderMap,
    axum::extract::Path(code): axum::extract::Path<u16>,
) -> StatusCode {
    received.lock().unwrap().push(headers);
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

impl Backend {
    pub async fn start(telemetry: &super::Telemetry) -> Self {
        Self::start_with(telemetry.layer()).await
    }

    pub async fn start_with(layer: TracingLayer) -> Self {
        let received = Received::default();
        let app = Router::new()
            .route("/echo", get(echo))
            .route("/users/{id}", get(echo))
            .route("/status/{code}", get(status))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .with_state(received.clone())
            .layer(layer);
        Backend {
            addr: serve(app).await,
            received,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The headers of every request B received, in order.
    pub fn received(&self) -> Vec<HeaderMap> {
        self.received.lock().unwrap().clone()
    }

    /// The headers of the one request B received; fails the test otherwise.
    pub fn only(&self) -> HeaderMap {
        let received = self.received();
        assert_eq!(received.len(), 1, "B received {} requests", received.len());
        received.into_iter().next().unwrap()
    }
}

/// A header as text, if present.
pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// `(trace_id, parent_id, flags)` of a `traceparent` value.
pub fn traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value:?}");
    assert_eq!(parts[0], "00");
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

pub fn reqwest_client(middleware: ReqwestTracingMiddleware) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

pub type HyperClient = ClientTracingService<Client<HttpConnector, Empty<Bytes>>>;

pub fn hyper_client(layer: ClientTracingLayer) -> HyperClient {
    ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http())
}

/// GETs `url` through the traced hyper client and reads the whole body.
pub async fn hyper_get(
    client: &HyperClient,
    request: http::Request<Empty<Bytes>>,
) -> Result<(StatusCode, String), hyper_util::client::legacy::Error> {
    let response = client.clone().oneshot(request).await?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Ok((status, String::from_utf8(body.to_vec()).expect("utf-8")))
}

pub fn hyper_request(url: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(url).body(Empty::new()).expect("request")
}

/// An address on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}
