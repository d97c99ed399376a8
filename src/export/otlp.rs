//! OTLP exporter wiring (feature `otlp`): HTTP/protobuf and gRPC, both gzip-capable.
//!
//! Both run on the SDK batch processor's own thread, which drives export futures with
//! `futures_executor::block_on` (opentelemetry_sdk 0.33, `BatchSpanProcessor`), i.e. without
//! a Tokio reactor:
//!
//! * HTTP uses opentelemetry-otlp's `reqwest-blocking-client`, which needs no reactor (and
//!   opentelemetry-otlp 0.33.1 builds that client on a scratch thread, so building is safe
//!   inside an async context too);
//! * gRPC (tonic) needs a Tokio reactor both when the channel is built (`connect_lazy`
//!   spawns its buffer task) and for every request. Rather than the SDK's experimental
//!   `span_processor_with_async_runtime` (which borrows the application's runtime, deadlocks
//!   on shutdown under a current-thread runtime, and would bypass our gate), the exporter
//!   owns a private current-thread Tokio runtime, is built inside it, and each export is
//!   `block_on`'d there, bounded by the export timeout.

use super::gate::{DynSpanExporter, timeout_error};
use crate::Error;
use crate::config::{OtlpCompression, OtlpProtocol, ResolvedOtlp};
use opentelemetry_otlp::{
    Compression, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::collections::HashMap;
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
    // Neither our reqwest (0.13, no default features) nor opentelemetry-otlp's tonic is built
    // with TLS here; without this check an https endpoint fails on every export instead.
    if otlp.url.starts_with("https://") {
        return Err(Error::config(
            "exporter.endpoint",
            &otlp.url,
            "https endpoints are not supported by this build (no TLS); use a local collector or proxy over http",
        ));
    }
    let timeout = otlp.timeout.min(export_timeout);
    let build_error = |e: opentelemetry_otlp::ExporterBuildError| Error::setup("OTLP exporter", e);
    match otlp.protocol {
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            let headers: HashMap<String, String> = otlp.headers.iter().cloned().collect();
            let protocol = if otlp.protocol == OtlpProtocol::HttpJson {
                Protocol::HttpJson
            } else {
                Protocol::HttpBinary
            };
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(otlp.url.clone())
                .with_protocol(protocol)
                .with_timeout(timeout)
                .with_headers(headers);
            if otlp.compression == OtlpCompression::Gzip {
                builder = builder.with_compression(Compression::Gzip);
            }
            Ok(Box::new(builder.build().map_err(build_error)?))
        }
        OtlpProtocol::Grpc => {
            use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
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
            let metadata = MetadataMap::from_headers(headers);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("meshtrace-otlp-grpc")
                .build()
                .map_err(|e| Error::setup("OTLP exporter runtime", e))?;
            let built = {
                let _entered = runtime.enter();
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(otlp.url.clone())
                    .with_protocol(Protocol::Grpc)
                    .with_timeout(timeout)
                    .with_metadata(metadata);
                if otlp.compression == OtlpCompression::Gzip {
                    builder = builder.with_compression(Compression::Gzip);
                }
                builder.build()
            };
            match built {
                Ok(inner) => Ok(Box::new(OnOwnRuntime {
                    runtime,
                    inner,
                    timeout: export_timeout,
                })),
                Err(e) => {
                    // Dropping a runtime blocks, which panics inside an async context.
                    runtime.shutdown_background();
                    Err(build_error(e))
                }
            }
        }
    }
}

/// Runs an exporter that needs Tokio on a runtime of its own; see the module docs.
#[derive(Debug)]
struct OnOwnRuntime {
    runtime: tokio::runtime::Runtime,
    inner: opentelemetry_otlp::SpanExporter,
    timeout: Duration,
}

impl SpanExporter for OnOwnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // `block_on` panics inside another runtime; only the batch processor's thread (no
        // runtime) calls this, but never risk a panic on a path that handles user data.
        let result = if tokio::runtime::Handle::try_current().is_ok() {
            Err(OTelSdkError::InternalFailure(
                "OTLP/gRPC export called from inside a Tokio runtime".into(),
            ))
        } else {
            self.runtime.block_on(async {
                tokio::time::timeout(self.timeout, self.inner.export(batch))
                    .await
                    .unwrap_or_else(|_| Err(timeout_error(self.timeout)))
            })
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
