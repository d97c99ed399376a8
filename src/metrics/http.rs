//! The HTTP instruments and what one request records on them, at the moment its span
//! ends.
//!
//! The instruments of a meter are created once ([`HttpInstruments::new`]); a layer finds
//! them through its [`MeterSource`]. Per request, an [`ExchangeMetric`] holds what the
//! attribute set needs, as `'static` strings where the values come from a fixed set
//! (methods, schemes, route templates, protocol versions, status codes, error types), and
//! records when the request's [`OpenSpan`](crate::http::outcome::OpenSpan) ends, with the
//! same clock readings as the span (see [`start_time`]).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};
use opentelemetry::trace::SpanBuilder;
use opentelemetry::{Key, KeyValue, StringValue, Value};
use opentelemetry_semantic_conventions::attribute as a;
use opentelemetry_semantic_conventions::metric as m;

use crate::http::classify::GrpcCall;

// The v1.37.0 RPC attribute names the gRPC spans record (see `RPC_SERVER_DURATION`).
const RPC_SYSTEM: &str = "rpc.system";
const RPC_SERVICE: &str = "rpc.service";
const RPC_METHOD: &str = "rpc.method";
const RPC_GRPC_STATUS_CODE: &str = "rpc.grpc.status_code";

/// The explicit bucket boundaries of `http.server.request.duration` and
/// `http.client.request.duration`, in seconds, as the HTTP semantic conventions give them.
pub const HTTP_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Body size buckets, in bytes (powers of 4 from 64 B to 16 MiB): the conventions give
/// none for sizes, and the SDK's default (made for milliseconds) would put every body
/// above 10 KB in one bucket.
const BODY_SIZE_BUCKETS: [f64; 10] = [
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// The instruments a meter gives meshtrace's layers, created once per meter.
#[derive(Debug)]
pub(crate) struct HttpInstruments {
    server_duration: Histogram<f64>,
    server_active: UpDownCounter<i64>,
    server_request_size: Histogram<u64>,
    server_response_size: Histogram<u64>,
    client_duration: Histogram<f64>,
    rpc_server_duration: Histogram<f64>,
    rpc_client_duration: Histogram<f64>,
}

/// `rpc.server.duration` and `rpc.client.duration`, in milliseconds: the RPC semantic
/// conventions as of v1.37.0, the version the gRPC spans follow (`rpc.system`,
/// `rpc.service`, `rpc.method`, `rpc.grpc.status_code`); later versions rename them
/// `rpc.*.call.duration` in seconds.
const RPC_SERVER_DURATION: &str = "rpc.server.duration";
const RPC_CLIENT_DURATION: &str = "rpc.client.duration";

/// Bucket boundaries of the RPC durations, in milliseconds (the SDK's default, which is
/// made for milliseconds; the conventions give none).
const RPC_DURATION_BUCKETS_MS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

impl HttpInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        HttpInstruments {
            server_duration: meter
                .f64_histogram(m::HTTP_SERVER_REQUEST_DURATION)
                .with_description(
                    "Duration of HTTP server requests, to the end of the response body",
                )
                .with_unit("s")
                .with_boundaries(HTTP_DURATION_BUCKETS.to_vec())
                .build(),
            server_active: meter
                .i64_up_down_counter(m::HTTP_SERVER_ACTIVE_REQUESTS)
                .with_description("Number of active HTTP server requests")
                .with_unit("{request}")
                .build(),
            server_request_size: meter
                .u64_histogram(m::HTTP_SERVER_REQUEST_BODY_SIZE)
                .with_description("Size of HTTP server request bodies (Content-Length)")
                .with_unit("By")
                .with_boundaries(BODY_SIZE_BUCKETS.to_vec())
                .build(),
            server_response_size: meter
                .u64_histogram(m::HTTP_SERVER_RESPONSE_BODY_SIZE)
                .with_description("Size of HTTP server response bodies, as sent")
                .with_unit("By")
                .with_boundaries(BODY_SIZE_BUCKETS.to_vec())
                .build(),
            client_duration: meter
                .f64_histogram(m::HTTP_CLIENT_REQUEST_DURATION)
                .with_description(
                    "Duration of HTTP client requests, to the end of the response body",
                )
                .with_unit("s")
                .with_boundaries(HTTP_DURATION_BUCKETS.to_vec())
                .build(),
            rpc_server_duration: meter
                .f64_histogram(RPC_SERVER_DURATION)
                .with_description(
                    "Duration of inbound RPCs (gRPC), to the end of the response stream",
                )
                .with_unit("ms")
                .with_boundaries(RPC_DURATION_BUCKETS_MS.to_vec())
                .build(),
            rpc_client_duration: meter
                .f64_histogram(RPC_CLIENT_DURATION)
                .with_description(
                    "Duration of outbound RPCs (gRPC), to the end of the response stream",
                )
                .with_unit("ms")
                .with_boundaries(RPC_DURATION_BUCKETS_MS.to_vec())
                .build(),
        }
    }
}

/// The installed `TracingManager`'s instruments: `None` until a manager is installed,
/// then `Some(None)` when its metrics are off.
static INSTALLED: ArcSwapOption<Option<Arc<HttpInstruments>>> = ArcSwapOption::const_empty();

/// The instruments of OpenTelemetry's global meter provider, created at the first
/// request a layer without a manager serves.
static GLOBAL: OnceLock<Arc<HttpInstruments>> = OnceLock::new();

/// The instruments of OpenTelemetry's global meter provider. Made with no `tracing`
/// dispatcher: opentelemetry 0.33's no-op provider logs a DEBUG event
/// (`NoopMeterProvider.MeterCreation`) per meter, which would land in the application's
/// log in the middle of its first request.
fn global_instruments() -> Arc<HttpInstruments> {
    tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
        Arc::new(HttpInstruments::new(
            &opentelemetry::global::meter_with_scope(crate::http::tracer::scope()),
        ))
    })
}

/// Registers the installed manager's instruments (`None`: its metrics are off).
pub(crate) fn set_installed(instruments: Option<Arc<HttpInstruments>>) {
    INSTALLED.store(Some(Arc::new(instruments)));
}

/// Where a layer's instruments come from.
#[derive(Clone, Debug, Default)]
pub(crate) enum MeterSource {
    /// The installed `TracingManager`'s meter (nothing when its metrics are off), else
    /// OpenTelemetry's global meter provider.
    #[default]
    Installed,
    /// A meter given to the layer.
    Given(Arc<HttpInstruments>),
    /// Metrics switched off for this layer.
    Off,
}

impl MeterSource {
    pub(crate) fn meter(meter: &Meter) -> Self {
        MeterSource::Given(Arc::new(HttpInstruments::new(meter)))
    }

    /// The instruments this request records on; `None` when metrics are off.
    #[inline]
    pub(crate) fn instruments(&self) -> Option<Arc<HttpInstruments>> {
        match self {
            MeterSource::Off => None,
            MeterSource::Given(instruments) => Some(Arc::clone(instruments)),
            MeterSource::Installed => match &*INSTALLED.load() {
                Some(installed) => installed.as_ref().clone(),
                None => Some(Arc::clone(GLOBAL.get_or_init(global_instruments))),
            },
        }
    }
}

/// Reads the clock once for a request that records a metric, and gives the reading to
/// the span too: the span's start and the metric's start are the same instant.
pub(crate) fn start_time(builder: &mut SpanBuilder) -> SystemTime {
    let now = opentelemetry::time::now();
    builder.start_time = Some(now);
    now
}

/// The duration `start..end` in seconds, as the duration histograms record it (zero when
/// the clock went backwards); the trace pages count the same value.
#[inline]
pub(crate) fn seconds_between(start: SystemTime, end: SystemTime) -> f64 {
    end.duration_since(start)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// What the server side records besides the duration (the layer's opt-ins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServerOptIns {
    /// `server.address` and `server.port` on the duration (client-chosen `Host`: their
    /// cardinality is the SDK's limit's to bound).
    pub(crate) server_address: bool,
    /// `http.server.active_requests`.
    pub(crate) active_requests: bool,
    /// `http.server.request.body.size` and `http.server.response.body.size`.
    pub(crate) body_sizes: bool,
}

/// The attributes of a server request known when it starts.
#[derive(Debug)]
pub(crate) struct ServerRequest {
    pub(crate) method: &'static str,
    pub(crate) scheme: &'static str,
    /// The interned route template; `None` for unmatched requests, which share one
    /// attribute set without `http.route`, as the conventions ask.
    pub(crate) route: Option<&'static str>,
    pub(crate) protocol: Option<&'static str>,
    /// Opt-in: `server.address` (bounded) and `server.port`.
    pub(crate) address: Option<StringValue>,
    pub(crate) port: Option<u16>,
    /// Opt-in: the request's `Content-Length`.
    pub(crate) request_size: Option<u64>,
}

/// The attributes of a client request known when it starts.
#[derive(Debug)]
pub(crate) struct ClientRequest {
    pub(crate) method: &'static str,
    pub(crate) address: Option<StringValue>,
    pub(crate) port: Option<u16>,
    pub(crate) template: Option<&'static str>,
}

#[derive(Debug)]
enum Side {
    Server {
        request: ServerRequest,
        opt_ins: ServerOptIns,
        /// Response body bytes so far (counted when body sizes are on).
        response_bytes: u64,
    },
    Client(ClientRequest),
}

/// One request's metric: recorded once, when its exchange ends.
#[derive(Debug)]
pub(crate) struct ExchangeMetric {
    instruments: Arc<HttpInstruments>,
    start: SystemTime,
    side: Side,
    status: Option<u16>,
    error_type: Option<Cow<'static, str>>,
}

/// Most attributes one duration data point carries.
const MAX_ATTRIBUTES: usize = 8;

/// A fixed array of attributes on the stack: the SDK takes a slice, so the set of a
/// request costs no allocation.
struct AttributeSet {
    items: [KeyValue; MAX_ATTRIBUTES],
    len: usize,
}

impl AttributeSet {
    fn new() -> Self {
        AttributeSet {
            items: std::array::from_fn(|_| KeyValue::new(Key::from_static_str(""), false)),
            len: 0,
        }
    }

    #[inline]
    fn push(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = KeyValue::new(Key::from_static_str(key), value);
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[KeyValue] {
        &self.items[..self.len]
    }
}

impl ExchangeMetric {
    /// A server request; counts it as active when that is on.
    pub(crate) fn server(
        instruments: Arc<HttpInstruments>,
        start: SystemTime,
        request: ServerRequest,
        opt_ins: ServerOptIns,
    ) -> Self {
        if opt_ins.active_requests {
            let attributes = active_attributes(&request);
            instruments.server_active.add(1, attributes.as_slice());
        }
        ExchangeMetric {
            instruments,
            start,
            side: Side::Server {
                request,
                opt_ins,
                response_bytes: 0,
            },
            status: None,
            error_type: None,
        }
    }

    /// A client request.
    pub(crate) fn client(
        instruments: Arc<HttpInstruments>,
        start: SystemTime,
        request: ClientRequest,
    ) -> Self {
        ExchangeMetric {
            instruments,
            start,
            side: Side::Client(request),
            status: None,
            error_type: None,
        }
    }

    pub(crate) fn set_status(&mut self, status: u16) {
        self.status = Some(status);
    }

    /// The first `error.type` wins, as on the span.
    pub(crate) fn set_error_type(&mut self, error_type: Cow<'static, str>) {
        if self.error_type.is_none() {
            self.error_type = Some(error_type);
        }
    }

    /// Whether response body bytes are counted.
    #[inline]
    pub(crate) fn counts_body(&self) -> bool {
        matches!(&self.side, Side::Server { opt_ins, .. } if opt_ins.body_sizes)
    }

    pub(crate) fn add_body_bytes(&mut self, n: usize) {
        if let Side::Server { response_bytes, .. } = &mut self.side {
            *response_bytes = response_bytes.saturating_add(n as u64);
        }
    }

    /// Records the duration `start..end` (the span's own start and end), and the opt-in
    /// instruments. A gRPC call (`grpc`) records `rpc.server.duration` or
    /// `rpc.client.duration` instead of the HTTP duration: its HTTP status says nothing
    /// about the call, and counting it twice would double the request rates.
    pub(crate) fn record(self, end: SystemTime, grpc: Option<&GrpcCall>) {
        let seconds = seconds_between(self.start, end);
        if let Some(grpc) = grpc {
            self.record_rpc(seconds * 1000.0, grpc);
            return;
        }
        let mut set = AttributeSet::new();
        match &self.side {
            Side::Server {
                request,
                opt_ins,
                response_bytes,
            } => {
                set.push(a::HTTP_REQUEST_METHOD, request.method);
                set.push(a::URL_SCHEME, request.scheme);
                if let Some(route) = request.route {
                    set.push(a::HTTP_ROUTE, route);
                }
                self.push_outcome(&mut set);
                if let Some(protocol) = request.protocol {
                    set.push(a::NETWORK_PROTOCOL_VERSION, protocol);
                }
                push_address(&mut set, request.address.as_ref(), request.port);
                let attributes = set.as_slice();
                self.instruments.server_duration.record(seconds, attributes);
                if opt_ins.body_sizes {
                    if let Some(size) = request.request_size {
                        self.instruments
                            .server_request_size
                            .record(size, attributes);
                    }
                    self.instruments
                        .server_response_size
                        .record(*response_bytes, attributes);
                }
                if opt_ins.active_requests {
                    let attributes = active_attributes(request);
                    self.instruments
                        .server_active
                        .add(-1, attributes.as_slice());
                }
            }
            Side::Client(request) => {
                set.push(a::HTTP_REQUEST_METHOD, request.method);
                push_address(&mut set, request.address.as_ref(), request.port);
                self.push_outcome(&mut set);
                if let Some(template) = request.template {
                    set.push(a::URL_TEMPLATE, template);
                }
                self.instruments
                    .client_duration
                    .record(seconds, set.as_slice());
            }
        }
    }

    /// The RPC duration of a gRPC call. `rpc.service`/`rpc.method` are the validated,
    /// bounded names of a method the server knew (`_OTHER` otherwise), so their set is the
    /// server's own methods; the SDK's cardinality limit bounds the rest.
    fn record_rpc(self, millis: f64, grpc: &GrpcCall) {
        let mut set = AttributeSet::new();
        set.push(RPC_SYSTEM, "grpc");
        if let Some(service) = grpc.service() {
            set.push(RPC_SERVICE, service.to_owned());
        }
        set.push(RPC_METHOD, grpc.method().to_owned());
        if let Some(code) = grpc.code() {
            set.push(RPC_GRPC_STATUS_CODE, code);
        }
        if let Some(error_type) = &self.error_type {
            set.push(a::ERROR_TYPE, error_type.clone());
        }
        match &self.side {
            Side::Server {
                request, opt_ins, ..
            } => {
                push_address(&mut set, request.address.as_ref(), request.port);
                self.instruments
                    .rpc_server_duration
                    .record(millis, set.as_slice());
                if opt_ins.active_requests {
                    let attributes = active_attributes(request);
                    self.instruments
                        .server_active
                        .add(-1, attributes.as_slice());
                }
            }
            Side::Client(request) => {
                push_address(&mut set, request.address.as_ref(), request.port);
                self.instruments
                    .rpc_client_duration
                    .record(millis, set.as_slice());
            }
        }
    }

    fn push_outcome(&self, set: &mut AttributeSet) {
        if let Some(status) = self.status {
            set.push(a::HTTP_RESPONSE_STATUS_CODE, i64::from(status));
        }
        if let Some(error_type) = &self.error_type {
            set.push(a::ERROR_TYPE, error_type.clone());
        }
    }
}

fn push_address(set: &mut AttributeSet, address: Option<&StringValue>, port: Option<u16>) {
    if let Some(address) = address {
        set.push(a::SERVER_ADDRESS, address.clone());
    }
    if let Some(port) = port {
        set.push(a::SERVER_PORT, i64::from(port));
    }
}

/// `http.server.active_requests` carries the attributes known at the start only.
fn active_attributes(request: &ServerRequest) -> AttributeSet {
    let mut set = AttributeSet::new();
    set.push(a::HTTP_REQUEST_METHOD, request.method);
    set.push(a::URL_SCHEME, request.scheme);
    push_address(&mut set, request.address.as_ref(), request.port);
    set
}

/// Three ASCII digits for every code in `0..1000`, so that a status code becomes an
/// `&'static str` (`error.type`) without an allocation.
static STATUS_DIGITS: [u8; 3000] = {
    let mut out = [0u8; 3000];
    let mut i = 0;
    while i < 1000 {
        out[i * 3] = b'0' + (i / 100) as u8;
        out[i * 3 + 1] = b'0' + ((i / 10) % 10) as u8;
        out[i * 3 + 2] = b'0' + (i % 10) as u8;
        i += 1;
    }
    out
};

/// The status code as text (`"503"`), `'static`.
pub(crate) fn status_text(status: http::StatusCode) -> &'static str {
    let i = usize::from(status.as_u16()) * 3;
    STATUS_DIGITS
        .get(i..i + 3)
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .unwrap_or("_OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts_are_the_codes() {
        for code in [100u16, 200, 404, 503, 599, 999] {
            let status = http::StatusCode::from_u16(code).unwrap();
            assert_eq!(status_text(status), status.as_str());
        }
    }

    #[test]
    fn attribute_sets_never_overflow() {
        let mut set = AttributeSet::new();
        for _ in 0..MAX_ATTRIBUTES + 3 {
            set.push(a::URL_SCHEME, "http");
        }
        assert_eq!(set.as_slice().len(), MAX_ATTRIBUTES);
    }
}
