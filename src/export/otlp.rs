//! OTLP exporter wiring (feature `otlp`): HTTP/protobuf, HTTP/JSON and gRPC, gzip-capable;
//! `https://` endpoints with feature `otlp-tls`.
//!
//! Both transports run on a private Tokio runtime that the exporter owns (one worker thread,
//! every thread marked as an export thread, see [`super::suppress`]):
//!
//! * the SDK's `BatchSpanProcessor` drives export futures on its own thread with
//!   `futures_executor::block_on` (opentelemetry_sdk 0.33), without a Tokio reactor; each
//!   export is `block_on`'d on the private runtime instead, bounded by the export timeout;
//! * HTTP uses an async `reqwest::Client` built here (opentelemetry-otlp's
//!   `reqwest-blocking-client` would run requests on a thread of its own that nothing marks,
//!   and it hides the cause of a failure behind "error sending request");
//! * gRPC (tonic) needs the reactor both when the channel is built (`connect_lazy` spawns
//!   its buffer task) and for every request, so the exporter is built inside the runtime.
//!   The SDK's experimental `span_processor_with_async_runtime` would borrow the
//!   application's runtime (deadlocking on shutdown under a current-thread runtime) and
//!   bypass our gate.
//!
//! TLS (feature `otlp-tls`): rustls with the aws-lc-rs provider (reqwest 0.13's `rustls`
//! feature; tonic's `tls-aws-lc`, so one provider serves both), and the platform's root
//! certificates (reqwest's platform verifier; tonic's native roots), or only the configured
//! CA when one is given, plus an optional client certificate for mutual TLS.

use super::DynSpanExporter;
use super::gate::timeout_error;
use super::suppress;
use crate::Error;
use crate::config::ResolvedOtlp;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::time::Duration;

/// Builds the OTLP exporter described by `otlp`. `export_timeout` caps each export.
///
/// Explicit values are given for everything opentelemetry-otlp would otherwise read from the
/// process environment (endpoint, protocol, timeout, compression when gzip), so the resolved
/// configuration wins. Two leftovers of its env handling remain (0.33.1): it adds
/// `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` from the process environment to our headers, and
/// with compression `none` it still honours `OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION`.
pub(crate) fn build(
    otlp: &ResolvedOtlp,
    export_timeout: Duration,
) -> Result<Box<dyn DynSpanExporter>, Error> {
    if otlp.url.starts_with("https://") && !cfg!(feature = "otlp-tls") {
        return Err(Error::config(
            "exporter.endpoint",
            &otlp.url,
            "https:// endpoints need meshtrace's `otlp-tls` feature (TLS with rustls); enable it, or send to a collector over http://",
        ));
    }
    let timeout = otlp.timeout.min(export_timeout);
    let transport_error = TransportError::default();
    let (runtime, inner) = on_private_runtime(|| {
        build_exporter!(
            opentelemetry_otlp::SpanExporter,
            otlp,
            timeout,
            &transport_error
        )
    })?;
    Ok(Box::new(OnOwnRuntime {
        runtime: Some(runtime),
        inner,
        timeout: export_timeout,
        transport_error,
    }))
}

/// Builds `build`'s exporter inside a new private runtime (one worker thread, every
/// thread marked as an export thread) and returns both; see the module docs.
pub(crate) fn on_private_runtime<T>(
    build: impl FnOnce() -> Result<T, Error>,
) -> Result<(tokio::runtime::Runtime, T), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .enable_all()
        .thread_name("meshtrace-otlp")
        .on_thread_start(suppress::mark_thread)
        .on_thread_stop(suppress::unmark_thread)
        .build()
        .map_err(|e| Error::setup("OTLP exporter runtime", e))?;
    let built = {
        let _entered = runtime.enter();
        // Whatever the clients create while being built belongs to the exporter too.
        let _suppressed = opentelemetry::Context::enter_telemetry_suppressed_scope();
        build()
    };
    match built {
        Ok(inner) => Ok((runtime, inner)),
        Err(e) => {
            // Dropping a runtime blocks, which panics inside an async context.
            runtime.shutdown_background();
            Err(e)
        }
    }
}

/// The gRPC metadata of `otlp`'s headers.
pub(crate) fn grpc_metadata(
    otlp: &ResolvedOtlp,
) -> Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap, Error> {
    let mut headers = http::HeaderMap::with_capacity(otlp.headers.len());
    for (name, value) in &otlp.headers {
        // Validated as HTTP header names and values when the config was resolved.
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) else {
            return Err(Error::config(
                "exporter.headers",
                name,
                "invalid header (value not shown)",
            ));
        };
        headers.append(name, value);
    }
    Ok(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers))
}

/// Builds an opentelemetry-otlp exporter of any signal (`$exporter`: `SpanExporter`,
/// `MetricExporter`, `LogExporter`; their builders share these methods) for `$otlp`, with
/// `$extra` applied to the builder (a metric exporter's temporality) before the transport
/// is chosen. Must run inside the private runtime (see [`on_private_runtime`]).
macro_rules! build_exporter {
    ($exporter:path, $otlp:expr, $timeout:expr, $transport_error:expr) => {
        $crate::export::otlp::build_exporter!($exporter, $otlp, $timeout, $transport_error, |b| b)
    };
    ($exporter:path, $otlp:expr, $timeout:expr, $transport_error:expr, $extra:expr) => {{
        use opentelemetry_otlp::{
            Compression, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig,
        };
        use $crate::config::{OtlpCompression, OtlpProtocol};
        use $crate::export::otlp::{ExportHttpClient, grpc_metadata, http_client};
        let otlp: &$crate::config::ResolvedOtlp = $otlp;
        let timeout: std::time::Duration = $timeout;
        let build_error = |e: opentelemetry_otlp::ExporterBuildError| {
            $crate::Error::setup("OTLP exporter", format!("{}: {e}", otlp.url))
        };
        let extra = $extra;
        match otlp.protocol {
            OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
                let headers: std::collections::HashMap<String, String> =
                    otlp.headers.iter().cloned().collect();
                let protocol = if otlp.protocol == OtlpProtocol::HttpJson {
                    Protocol::HttpJson
                } else {
                    Protocol::HttpBinary
                };
                let mut builder = extra(<$exporter>::builder())
                    .with_http()
                    .with_http_client(ExportHttpClient {
                        client: http_client(otlp, timeout)?,
                        transport_error: $transport_error.clone(),
                    })
                    .with_endpoint(otlp.url.clone())
                    .with_protocol(protocol)
                    .with_timeout(timeout)
                    .with_headers(headers);
                if otlp.compression == OtlpCompression::Gzip {
                    builder = builder.with_compression(Compression::Gzip);
                }
                builder.build().map_err(build_error)
            }
            OtlpProtocol::Grpc => {
                let mut builder = extra(<$exporter>::builder())
                    .with_tonic()
                    .with_endpoint(otlp.url.clone())
                    .with_protocol(Protocol::Grpc)
                    .with_timeout(timeout)
                    .with_metadata(grpc_metadata(otlp)?);
                if otlp.compression == OtlpCompression::Gzip {
                    builder = builder.with_compression(Compression::Gzip);
                }
                #[cfg(feature = "otlp-tls")]
                if otlp.url.starts_with("https://") {
                    builder = builder.with_tls_config($crate::export::otlp::grpc_tls(otlp));
                }
                builder.build().map_err(build_error)
            }
        }
    }};
}
pub(crate) use build_exporter;

pub(crate) fn http_client(
    otlp: &ResolvedOtlp,
    timeout: Duration,
) -> Result<reqwest::Client, Error> {
    #[allow(unused_mut)]
    let mut builder = reqwest::Client::builder().timeout(timeout);
    #[cfg(feature = "otlp-tls")]
    if let Some(tls) = &otlp.tls {
        if let Some(ca) = &tls.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| {
                Error::config_caused_by("exporter.certificate", "<PEM>", error_chain(&e), e)
            })?;
            // The configured CA replaces the platform's roots, as the OpenTelemetry
            // exporters of other languages do with OTEL_EXPORTER_OTLP_CERTIFICATE.
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert_pem, &tls.client_key_pem) {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                Error::config_caused_by("exporter.client_certificate", "<PEM>", error_chain(&e), e)
            })?;
            builder = builder.identity(identity);
        }
    }
    builder.build().map_err(|e| {
        Error::setup(
            "OTLP HTTP client",
            format!("{}: {}", otlp.url, error_chain(&e)),
        )
    })
}

#[cfg(feature = "otlp-tls")]
pub(crate) fn grpc_tls(
    otlp: &ResolvedOtlp,
) -> opentelemetry_otlp::tonic_types::transport::ClientTlsConfig {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
    let mut config = ClientTlsConfig::new();
    let tls = otlp.tls.clone().unwrap_or_default();
    config = match tls.ca_pem {
        Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
        None => config.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (tls.client_cert_pem, tls.client_key_pem) {
        config = config.identity(Identity::from_pem(cert, key));
    }
    config
}

/// The cause of the last failed HTTP request: opentelemetry-otlp 0.33 reports every
/// failure without a response as "HTTP export failed: network error" (the cause goes only
/// to its internal debug log), so a refused certificate would read like a network blip.
#[derive(Clone, Debug, Default)]
pub(crate) struct TransportError(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl TransportError {
    pub(crate) fn set(&self, cause: String) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(cause);
        }
    }

    pub(crate) fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// reqwest's `Client`, remembering the whole cause of a failure (reqwest 0.13's `Display`
/// says only "error sending request for url (..)"; the cause is in its sources).
#[derive(Debug)]
pub(crate) struct ExportHttpClient {
    pub(crate) client: reqwest::Client,
    pub(crate) transport_error: TransportError,
}

#[async_trait::async_trait]
impl HttpClient for ExportHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let result = HttpClient::send_bytes(&self.client, request).await;
        if let Err(e) = &result {
            self.transport_error.set(error_chain(&**e));
        }
        result
    }
}

/// `error: cause: cause ...`, each distinct message once.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// Runs an exporter that needs Tokio on a runtime of its own; see the module docs.
#[derive(Debug)]
struct OnOwnRuntime {
    // `Some` until dropped; taken in `drop` to shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    inner: opentelemetry_otlp::SpanExporter,
    timeout: Duration,
    transport_error: TransportError,
}

impl SpanExporter for OnOwnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // `block_on` panics inside another runtime; only the batch processor's thread (no
        // runtime) calls this, but never risk a panic on a path that handles user data.
        let result = match &self.runtime {
            Some(_) if tokio::runtime::Handle::try_current().is_ok() => {
                Err(OTelSdkError::InternalFailure(
                    "OTLP export called from inside a Tokio runtime".into(),
                ))
            }
            Some(runtime) => {
                let _ = self.transport_error.take();
                let result = runtime.block_on(async {
                    tokio::time::timeout(self.timeout, self.inner.export(batch))
                        .await
                        .unwrap_or_else(|_| Err(timeout_error(self.timeout)))
                });
                match (result, self.transport_error.take()) {
                    (Err(OTelSdkError::InternalFailure(message)), Some(cause)) => {
                        Err(OTelSdkError::InternalFailure(format!("{message}: {cause}")))
                    }
                    (result, _) => result,
                }
            }
            None => Err(OTelSdkError::AlreadyShutdown),
        };
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl Drop for OnOwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs one export of any signal on the exporter's private runtime, bounded by `timeout`,
/// with the transport's cause added to a failure (see [`TransportError`]). Never blocks
/// inside another runtime (that would panic): only the SDK's own threads call exports.
pub(crate) fn export_on(
    runtime: Option<&tokio::runtime::Runtime>,
    timeout: Duration,
    transport_error: &TransportError,
    export: impl std::future::Future<Output = OTelSdkResult>,
) -> OTelSdkResult {
    // The export runs on an SDK thread (a batch processor's, a periodic reader's): what it
    // emits from now on is export work.
    suppress::mark_thread();
    match runtime {
        Some(_) if tokio::runtime::Handle::try_current().is_ok() => Err(
            OTelSdkError::InternalFailure("OTLP export called from inside a Tokio runtime".into()),
        ),
        Some(runtime) => {
            let _ = transport_error.take();
            let result = runtime.block_on(async {
                tokio::time::timeout(timeout, export)
                    .await
                    .unwrap_or_else(|_| Err(timeout_error(timeout)))
            });
            match (result, transport_error.take()) {
                (Err(OTelSdkError::InternalFailure(message)), Some(cause)) => {
                    Err(OTelSdkError::InternalFailure(format!("{message}: {cause}")))
                }
                (result, _) => result,
            }
        }
        None => Err(OTelSdkError::AlreadyShutdown),
    }
}
