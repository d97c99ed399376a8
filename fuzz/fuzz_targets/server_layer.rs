//! The whole server layer on arbitrary header sets (and paths and methods): a Router with
//! `TracingLayer` driven in-process. Every request is answered by the handler; the response
//! echoes a valid correlation id; what the handler would send to the next hop
//! (`context::inject` of its current Context) parses back and continues a valid parent.
#![no_main]

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;
use meshtrace::context::{self, CorrelationId, TraceParent, parse_baggage, parse_tracestate};
use meshtrace_fuzz::{header_set, server_layer, split_values};
use opentelemetry::Context;
use std::sync::OnceLock;
use tower::ServiceExt;

/// Answers with the headers the handler would send on an outgoing call.
async fn handler() -> HeaderMap {
    let mut outgoing = HeaderMap::new();
    context::inject(&Context::current(), &mut outgoing);
    outgoing
}

fn app() -> Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| {
        Router::new()
            .route("/", any(handler))
            .route("/users/{id}", any(handler))
            .fallback(any(handler))
            .layer(server_layer())
    })
    .clone()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
];

/// The one value of `name`, when it is there exactly once.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => Some(v.as_bytes()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    // Line 1: method selector byte, then path and query; every further line is a header.
    let lines = split_values(data);
    let (first, headers) = lines
        .split_first()
        .expect("splitn yields at least one line");
    let method = first.first().map_or(0, |b| usize::from(*b) % METHODS.len());
    let target = first.get(1..).unwrap_or_default();
    let uri = [b"/".as_slice(), target].concat();
    let uri = Uri::try_from(uri).unwrap_or_else(|_| Uri::from_static("/"));
    let headers = header_set(headers);

    let mut request = Request::new(Body::empty());
    *request.method_mut() = METHODS[method].clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers.clone();

    let response = runtime().block_on(async {
        let response = app().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        // Read to the end, so the span ends as it does for a real client.
        axum::body::to_bytes(body, 1 << 16)
            .await
            .expect("small body");
        parts
    });
    assert_eq!(response.status, StatusCode::OK);

    // The correlation id: one, valid, and the caller's when it sent one valid value.
    let echoed = single(&response.headers, "x-correlation-id").expect("one correlation id");
    assert!(CorrelationId::parse(echoed).is_some(), "{echoed:?}");
    if let Some(sent) = single(&headers, "x-correlation-id")
        && CorrelationId::parse(sent).is_some()
    {
        assert_eq!(echoed, sent);
    }

    // The next hop's headers.
    let outgoing = &response.headers;
    let parent = single(&headers, "traceparent").and_then(|v| TraceParent::parse(v).ok());
    match single(outgoing, "traceparent") {
        Some(value) => {
            let sent = TraceParent::parse(value).expect("what we emit parses");
            if let Some(parent) = parent {
                assert_eq!(sent.trace_id, parent.trace_id);
                assert_ne!(sent.parent_id, parent.parent_id);
            }
        }
        // No span to continue only when there is no valid parent either.
        None => assert!(parent.is_none()),
    }
    if let Some(value) = single(outgoing, "tracestate") {
        assert!(value.len() <= 512);
        assert!(parse_tracestate([value]).is_some(), "{value:?}");
    }
    if let Some(value) = single(outgoing, "baggage") {
        assert!(value.len() <= 8192);
        assert!(!parse_baggage([value]).is_empty());
    }
});
