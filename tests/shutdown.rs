//! Graceful shutdown: `axum::serve(..).with_graceful_shutdown(meshtrace::shutdown_signal())`
//! returns on SIGINT, and `shutdown()` then exports the spans of the last request.
//!
//! Its own test binary: it sends SIGINT to its own process (Tokio's handler, installed by
//! `shutdown_signal`, keeps the process alive).
#![cfg(all(unix, feature = "axum"))]

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use meshtrace::TracingManager;
use meshtrace::config::BatchConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Keeps what it exported, also after shutdown (the SDK's in-memory exporter forgets it).
#[derive(Clone, Debug, Default)]
struct Capture(Arc<Mutex<Vec<SpanData>>>);

impl Capture {
    fn names(&self) -> Vec<String> {
        let spans = self.0.lock().unwrap();
        spans.iter().map(|s| s.name.to_string()).collect()
    }
}

impl SpanExporter for Capture {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

#[tokio::test]
async fn the_last_requests_spans_are_exported_after_the_shutdown_signal() {
    let spans = Capture::default();
    let (telemetry, layers) = TracingManager::builder()
        .span_exporter(spans.clone())
        // Nothing is exported on a timer during the test: only shutdown() flushes.
        .batch(BatchConfig::default().scheduled_delay(Duration::from_secs(600)))
        .log_writer(std::io::sink)
        .build()
        .expect("build");
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(telemetry.server_layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(meshtrace::shutdown_signal())
            .await
    });

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /orders/7 HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    // What Ctrl-C does.
    // SAFETY: raise(3) has no preconditions; SIGINT is handled by Tokio's handler.
    assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops on SIGINT")
        .unwrap()
        .unwrap();
    assert!(spans.names().is_empty(), "still queued before shutdown()");

    telemetry.shutdown().await.expect("shutdown");
    assert_eq!(spans.names(), ["GET /orders/{id}"]);
}
