//! The server span: what it records when it starts, read once from the request head.

use std::borrow::Cow;

use http::request::Parts;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_semantic_conventions::attribute as a;

use super::forwarded::Forwarded;
use super::layer::ServerConfig;
use crate::context::CorrelationId;
use crate::http::attributes::{
    interned_route, known_method, protocol_version, redact_query, route, server_address, span_name,
    user_agent,
};
use crate::http::grpc::{self, GrpcMethod};
use crate::limits::{bound_cow, bound_owned, bounded};
use crate::metrics::http::{ServerOptIns, ServerRequest};
use crate::sampler::AttributesRead;

/// Room for what a span gets after it starts: the sampler's `sampling.reason`, the export
/// gate's marker, the status code and `error.type`.
const LATER: usize = 4;

/// Attributes every server span starts with (method, route, scheme, protocol version,
/// path, correlation id), plus [`LATER`].
const BASE_CAPACITY: usize = 6 + LATER;

/// The request's span facts, borrowed from its head.
pub(crate) struct RequestFacts<'a> {
    parts: &'a Parts,
    config: &'a ServerConfig,
    method: Option<&'static str>,
    route: Option<&'a str>,
    correlation: &'a CorrelationId,
    /// What a trusted proxy says, when the request came through one.
    forwarded: Option<Forwarded<'a>>,
    /// The route template and the span name, interned (looked up once per request).
    interned: Option<(&'static str, Cow<'static, str>)>,
    /// The method a gRPC request calls; `None` for plain HTTP.
    pub(crate) grpc: Option<GrpcMethod>,
}

impl<'a> RequestFacts<'a> {
    pub(crate) fn read(
        parts: &'a Parts,
        config: &'a ServerConfig,
        correlation: &'a CorrelationId,
    ) -> Self {
        let forwarded = config
            .trust_forwarded
            .as_ref()
            .is_some_and(|trusted| trusted(parts))
            .then(|| Forwarded::read(&parts.headers));
        let method = known_method(&parts.method);
        let route = route(parts);
        RequestFacts {
            parts,
            config,
            method,
            route,
            correlation,
            forwarded,
            interned: route.and_then(|route| interned_route(method, route)),
            grpc: grpc::is_grpc(&parts.method, &parts.headers)
                .then(|| GrpcMethod::from_path(parts.uri.path())),
        }
    }

    /// `url.scheme`: the URI carries a scheme only in absolute form (HTTP/2 `:scheme`,
    /// proxies); `http` otherwise, unless a trusted proxy says what the client used.
    fn scheme(&self) -> &'static str {
        let forwarded = self.forwarded.as_ref().and_then(|f| f.scheme);
        match (forwarded, self.parts.uri.scheme_str()) {
            (Some(scheme), _) => scheme,
            (None, Some("https")) => "https",
            _ => "http",
        }
    }

    /// `server.address` and `server.port`: what a trusted proxy says, else the request's
    /// authority or `Host`.
    fn address(&self) -> (Option<&'a str>, Option<u16>) {
        match self.forwarded.as_ref().filter(|f| f.host.is_some()) {
            Some(forwarded) => (forwarded.host, forwarded.port),
            None => server_address(self.parts),
        }
    }

    /// What the request's metric records (see `crate::metrics::http`): `'static` values,
    /// and the opt-in ones.
    pub(crate) fn metric_request(&self, opt_ins: ServerOptIns) -> ServerRequest {
        let (address, port) = if opt_ins.server_address {
            let (address, port) = self.address();
            (address.map(|a| StringValue::from(a.to_owned())), port)
        } else {
            (None, None)
        };
        let request_size = opt_ins
            .body_sizes
            .then(|| {
                self.parts
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .flatten();
        ServerRequest {
            method: self.method.unwrap_or("_OTHER"),
            scheme: self.scheme(),
            // Unmatched requests and routes beyond the interning bound carry no
            // `http.route`: never the raw path, never an unbounded set.
            route: self.interned.as_ref().map(|(route, _)| *route),
            protocol: protocol_version(self.parts.version),
            address,
            port,
            request_size,
        }
    }

    /// The route template, when the router gave one.
    pub(crate) fn route(&self) -> Option<&'a str> {
        self.route
    }

    /// The span as it starts, with the attributes the sampler reads (`read`; all of
    /// them when the sampler is not known: any sampler may read them), plus those that
    /// cost nothing; [`rest`](Self::rest) has the others. Its name is
    /// `{method} {route}`, `{method}`, or `HTTP`/`HTTP {route}`; never the raw path.
    /// A gRPC span is named `{rpc.service}/{rpc.method}` (or `_OTHER`) and always starts
    /// with its `rpc.*` attributes, which sampling rules match.
    pub(crate) fn builder(&self, read: AttributesRead) -> SpanBuilder {
        if let Some(grpc) = &self.grpc {
            return self.grpc_builder(grpc, read);
        }
        let interned = self.interned.clone();
        let name = match &interned {
            Some((_, name)) => name.clone(),
            None => span_name(self.method, self.route),
        };
        let builder = SpanBuilder::from_name(name).with_kind(SpanKind::Server);
        if read == AttributesRead::None {
            return builder;
        }
        let route = match (interned, self.route) {
            (Some((route, _)), _) => Some(Value::from(route)),
            (None, Some(route)) => Some(Value::from(bounded(route).to_owned())),
            (None, None) => None,
        };
        let method = KeyValue::new(a::HTTP_REQUEST_METHOD, self.method.unwrap_or("_OTHER"));
        let route = route.map(|route| KeyValue::new(a::HTTP_ROUTE, route));
        // Room for every attribute, the sampler's `sampling.reason` and the export gate's
        // marker, so a span that records never regrows it; and no more: the `Vec` is freed
        // on the exporter's thread, where glibc's malloc makes a larger block cost the next
        // request more to allocate (a 1 KiB block for 18 attributes cost ~500 instructions
        // per request more than a 560-byte one for 10, in `scripts/callgrind.sh`).
        let mut attributes = Vec::with_capacity(self.capacity());
        attributes.push(method);
        attributes.extend(route);
        if read == AttributesRead::All {
            self.push_free(&mut attributes);
            self.push_rest(&mut attributes);
        }
        builder.with_attributes(attributes)
    }

    /// [`builder`](Self::builder) for gRPC: `rpc.system`, `rpc.service` and `rpc.method`,
    /// then what an HTTP span starts with for `read` (`url.path` is the method's path,
    /// bounded).
    fn grpc_builder(&self, grpc: &GrpcMethod, read: AttributesRead) -> SpanBuilder {
        let mut attributes = Vec::with_capacity(self.capacity() + 3);
        grpc.push_start_attributes(&mut attributes);
        if read != AttributesRead::None {
            attributes.push(KeyValue::new(
                a::HTTP_REQUEST_METHOD,
                self.method.unwrap_or("_OTHER"),
            ));
            if let Some(route) = self.route {
                attributes.push(KeyValue::new(a::HTTP_ROUTE, bounded(route).to_owned()));
            }
            if read == AttributesRead::All {
                self.push_free(&mut attributes);
                self.push_rest(&mut attributes);
            }
        }
        SpanBuilder::from_name(grpc.span_name())
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
    }

    /// How many attributes the span can get (see `BASE_CAPACITY`), without looking
    /// headers up: most requests carry `Host` and `User-Agent`, so room for those three
    /// is always made.
    fn capacity(&self) -> usize {
        let parts = self.parts;
        let mut n = BASE_CAPACITY + 3 + self.config.recorded_headers.len();
        n += usize::from(self.method.is_none());
        n += usize::from(parts.uri.query().is_some());
        if self.forwarded.is_some() || connect_info(parts).is_some() {
            // peer address and port, client address and port
            n += 4;
        }
        n
    }

    /// What [`builder`](Self::builder) left out for `read`.
    pub(crate) fn late(&self, read: AttributesRead) -> Vec<KeyValue> {
        if read == AttributesRead::All {
            return Vec::new();
        }
        let mut attributes = Vec::with_capacity(self.capacity());
        match read {
            AttributesRead::All => {}
            AttributesRead::RouteAndMethod => {
                self.push_free(&mut attributes);
                self.push_rest(&mut attributes);
            }
            AttributesRead::None => {
                attributes.push(KeyValue::new(
                    a::HTTP_REQUEST_METHOD,
                    self.method.unwrap_or("_OTHER"),
                ));
                if let Some(route) = self.route {
                    let route = match &self.interned {
                        Some((route, _)) => Value::from(*route),
                        None => Value::from(bounded(route).to_owned()),
                    };
                    attributes.push(KeyValue::new(a::HTTP_ROUTE, route));
                }
                self.push_free(&mut attributes);
                self.push_rest(&mut attributes);
            }
        }
        attributes
    }

    /// Attributes whose values are `'static`.
    fn push_free(&self, out: &mut Vec<KeyValue>) {
        out.push(KeyValue::new(a::URL_SCHEME, self.scheme()));
        if let Some(version) = protocol_version(self.parts.version) {
            out.push(KeyValue::new(a::NETWORK_PROTOCOL_VERSION, version));
        }
    }

    fn push_rest(&self, out: &mut Vec<KeyValue>) {
        let parts = self.parts;
        if self.method.is_none() {
            out.push(KeyValue::new(
                a::HTTP_REQUEST_METHOD_ORIGINAL,
                bounded(parts.method.as_str()).to_owned(),
            ));
        }
        out.push(KeyValue::new(
            a::URL_PATH,
            bounded(parts.uri.path()).to_owned(),
        ));
        if let Some(query) = parts.uri.query() {
            let query = bound_cow(redact_query(query, &self.config.sensitive_query_params));
            out.push(KeyValue::new(a::URL_QUERY, query.into_owned()));
        }
        let (address, port) = self.address();
        if let Some(address) = address {
            out.push(KeyValue::new(
                a::SERVER_ADDRESS,
                bounded(address).to_owned(),
            ));
        }
        if let Some(port) = port {
            out.push(KeyValue::new(a::SERVER_PORT, i64::from(port)));
        }
        // The peer of the connection (axum's `ConnectInfo`), and the original client:
        // the peer itself, or what a trusted proxy says.
        let peer = connect_info(parts);
        if let Some(peer) = peer {
            out.push(KeyValue::new(
                a::NETWORK_PEER_ADDRESS,
                bound_owned(peer.ip().to_string()),
            ));
            out.push(KeyValue::new(a::NETWORK_PEER_PORT, i64::from(peer.port())));
        }
        let client = match self
            .forwarded
            .as_ref()
            .and_then(|f| f.client.map(|ip| (ip, f.client_port)))
        {
            Some(client) => Some(client),
            None => peer.map(|peer| (peer.ip(), Some(peer.port()))),
        };
        if let Some((ip, port)) = client {
            out.push(KeyValue::new(
                a::CLIENT_ADDRESS,
                bound_owned(ip.to_string()),
            ));
            if let Some(port) = port {
                out.push(KeyValue::new(a::CLIENT_PORT, i64::from(port)));
            }
        }
        if let Some(agent) = user_agent(parts) {
            out.push(KeyValue::new(a::USER_AGENT_ORIGINAL, agent.to_owned()));
        }
        out.push(KeyValue::new(
            "correlation.id",
            bounded(self.correlation.as_str()).to_owned(),
        ));
        for (header, key) in &self.config.recorded_headers {
            let values: Vec<StringValue> = parts
                .headers
                .get_all(header)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| StringValue::from(bounded(v).to_owned()))
                .collect();
            if !values.is_empty() {
                out.push(KeyValue::new(
                    key.clone(),
                    Value::Array(Array::String(values)),
                ));
            }
        }
    }
}

/// The connection's peer, when the app is served with axum's
/// `into_make_service_with_connect_info::<SocketAddr>()`.
fn connect_info(parts: &Parts) -> Option<std::net::SocketAddr> {
    #[cfg(feature = "axum")]
    {
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0)
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = parts;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attribute keys, sorted.
    fn sorted_keys(kvs: &[KeyValue]) -> Vec<String> {
        let mut keys: Vec<String> = kvs.iter().map(|kv| kv.key.to_string()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn start_and_late_attributes_are_the_same_set() {
        let (parts, _) = http::Request::builder()
            .method("PURGE")
            .uri("http://api.example.com:8443/x?q=1&token=t")
            .header("user-agent", "curl/8.5")
            .body(())
            .unwrap()
            .into_parts();
        let config = ServerConfig::default();
        let correlation = CorrelationId::parse(b"c-1").unwrap();
        let facts = RequestFacts::read(&parts, &config, &correlation);
        let eager = facts.builder(AttributesRead::All).attributes.unwrap();
        assert!(facts.late(AttributesRead::All).is_empty());
        for read in [AttributesRead::RouteAndMethod, AttributesRead::None] {
            let mut lazy = facts.builder(read).attributes.unwrap_or_default();
            lazy.extend(facts.late(read));
            assert_eq!(sorted_keys(&eager), sorted_keys(&lazy), "{read:?}");
        }
        for key in [
            a::HTTP_REQUEST_METHOD,
            a::HTTP_REQUEST_METHOD_ORIGINAL,
            a::URL_PATH,
            a::URL_SCHEME,
            a::URL_QUERY,
            a::SERVER_ADDRESS,
            a::SERVER_PORT,
            a::USER_AGENT_ORIGINAL,
            a::NETWORK_PROTOCOL_VERSION,
        ] {
            assert!(
                sorted_keys(&eager).iter().any(|k| k == key),
                "{key} is missing"
            );
        }
        let query = eager
            .iter()
            .find(|kv| kv.key.as_str() == a::URL_QUERY)
            .unwrap();
        assert_eq!(query.value.as_str(), "q=1&token=REDACTED");
    }

    #[test]
    fn grpc_spans_start_with_rpc_attributes_whatever_the_sampler_reads() {
        let (parts, _) = http::Request::post("http://echo.internal/pkg.v1.Echo/Unary")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
            .into_parts();
        let config = ServerConfig::default();
        let correlation = CorrelationId::parse(b"c-1").unwrap();
        let facts = RequestFacts::read(&parts, &config, &correlation);
        let eager = facts.builder(AttributesRead::All);
        assert_eq!(eager.name, "pkg.v1.Echo/Unary");
        let eager = eager.attributes.unwrap();
        for read in [AttributesRead::RouteAndMethod, AttributesRead::None] {
            let started = facts.builder(read).attributes.unwrap_or_default();
            for key in ["rpc.system", "rpc.service", "rpc.method"] {
                assert!(
                    started.iter().any(|kv| kv.key.as_str() == key),
                    "{read:?}: {key}"
                );
            }
            let mut lazy = started;
            lazy.extend(facts.late(read));
            assert_eq!(sorted_keys(&eager), sorted_keys(&lazy), "{read:?}");
        }
        // A GET is never gRPC, whatever its content type says.
        let (parts, _) = http::Request::get("/pkg.v1.Echo/Unary")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
            .into_parts();
        let facts = RequestFacts::read(&parts, &config, &correlation);
        assert_eq!(facts.builder(AttributesRead::All).name, "GET");
    }
}
