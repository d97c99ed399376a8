//! What both clients share: the current Context, the client span, the headers it sends,
//! and how the outcome is recorded.

use std::fmt::Write as _;

use http::{Extensions, HeaderMap, Method, Uri};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt};
use opentelemetry::{Context, KeyValue, StringValue};
use opentelemetry_semantic_conventions::attribute as a;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::layer::ClientConfig;
use super::policy::Propagation;
use super::{NoPropagation, UrlTemplate};
use crate::context::{self, ContextExt, TraceRandom};
use crate::http::attributes::{
    known_method, parse_host_port, redact_query, span_name, strip_brackets,
};
use crate::http::classify::Tracked;
use crate::http::grpc::{self, GrpcMethod};
use crate::http::outcome::{OpenSpan, Side};
use crate::limits::{bound_owned, bounded};
use crate::metrics;
use crate::metrics::http::{ClientRequest, ExchangeMetric};

/// Longest host recorded or matched (a DNS name is at most 253 bytes).
const MAX_HOST_LEN: usize = 253;

/// The destination of a request, borrowed from its URI (or `url::Url`).
#[derive(Debug, Default)]
pub(crate) struct Target<'a> {
    pub(crate) scheme: Option<&'a str>,
    /// As written in a URL: IPv6 addresses keep their brackets.
    pub(crate) host: Option<&'a str>,
    /// The port written in the URL, if any.
    pub(crate) port: Option<u16>,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// From an absolute URI (what hyper-util's client requires), else from the `Host`
    /// header of a relative one. Userinfo is never part of a `Target`.
    pub(crate) fn from_uri(uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        let (host, port) = match uri.authority() {
            Some(a) => (Some(a.host()), a.port_u16()),
            None => headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(parse_host_port)
                .map_or((None, None), |(h, p)| (Some(h), p)),
        };
        Target {
            scheme: uri.scheme_str(),
            host: host.filter(|h| valid_host(h)),
            port,
            path: uri.path(),
            query: uri.query(),
        }
    }

    /// From a reqwest URL (userinfo and fragment are left out).
    #[cfg(feature = "reqwest")]
    pub(crate) fn from_url(url: &'a reqwest::Url) -> Self {
        Target {
            scheme: Some(url.scheme()),
            host: url.host_str().filter(|h| valid_host(h)),
            port: url.port(),
            path: url.path(),
            query: url.query(),
        }
    }

    /// `server.address`: the host without IPv6 brackets.
    pub(crate) fn address(&self) -> Option<&'a str> {
        self.host.map(strip_brackets)
    }

    /// `server.port`: the explicit port, else the scheme's default.
    pub(crate) fn server_port(&self) -> Option<u16> {
        self.port.or(match self.scheme {
            Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
            Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
            _ => None,
        })
    }

    /// `scheme://host[:port]/path[?query]`, sensitive query values `REDACTED`, no
    /// userinfo, bounded like every recorded value. `None` without a scheme and a host.
    pub(crate) fn url_full(&self, sensitive: &[Box<str>]) -> Option<String> {
        let (scheme, host) = (self.scheme?, self.host?);
        let mut url = String::with_capacity(
            scheme.len() + host.len() + self.path.len() + self.query.map_or(0, str::len) + 16,
        );
        url.push_str(scheme);
        url.push_str("://");
        url.push_str(host);
        if let Some(port) = self.port {
            let _ = write!(url, ":{port}");
        }
        if !self.path.starts_with('/') {
            url.push('/');
        }
        url.push_str(self.path);
        if let Some(query) = self.query {
            url.push('?');
            url.push_str(&redact_query(query, sensitive));
        }
        Some(bound_owned(url))
    }
}

/// A host we are willing to record and match: bounded, reg-name or IP-literal characters.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN + 2
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        })
}

/// The Context outgoing calls continue: the current `tracing` span's OpenTelemetry
/// Context when that span is enabled and has one, else `Context::current()`.
///
/// When `Context::current()` holds that same span, it is used instead: it is what
/// tracing-opentelemetry attached when the span was entered, plus anything the caller
/// layered on top since (`Context::current_with_baggage(..).attach()`).
pub(crate) fn current_context() -> Context {
    let span = Span::current();
    if !span.is_disabled() {
        let span_cx = span.context();
        if span_cx.has_active_span() {
            let current = Context::current();
            let same_span = {
                let (a, b) = (current.span(), span_cx.span());
                let (a, b) = (a.span_context(), b.span_context());
                a.span_id() == b.span_id() && a.trace_id() == b.trace_id()
            };
            return if same_span { current } else { span_cx };
        }
    }
    Context::current()
}

/// One outgoing call: its span, and what goes into the request headers.
pub(crate) struct OutgoingCall {
    /// The client span's Context (the current Context plus the client span).
    pub(crate) cx: Context,
    /// The client span while it records, and the call's metric while metrics are on.
    pub(crate) span: Option<OpenSpan>,
    propagation: Propagation,
    correlation_header: http::HeaderName,
}

impl OutgoingCall {
    /// Starts the client span as a child of the current Context. Nothing is sent yet:
    /// call [`inject`](Self::inject) with the request's headers.
    pub(crate) fn start(
        config: &ClientConfig,
        method: &Method,
        headers: &HeaderMap,
        target: &Target<'_>,
        extensions: &Extensions,
    ) -> Self {
        let current = current_context();
        // A root: the SDK (0.33) gives it `TraceFlags::default()`, so the marker is what
        // tells `inject` that the new trace id is random (W3C Level 2 flag 0x02).
        let parent = if current.span().span_context().is_valid() {
            current
        } else {
            current.with_value(TraceRandom)
        };
        let template = extensions.get::<UrlTemplate>();
        let grpc = grpc::is_grpc(method, headers).then(|| GrpcMethod::from_path(target.path));
        let mut builder = client_span(config, method, target, template, grpc.as_ref());
        // Metrics on: the span starts at the clock reading the metric starts from.
        let metric = config.meter.instruments().map(|instruments| {
            let start = metrics::http::start_time(&mut builder);
            let request = ClientRequest {
                method: known_method(method).unwrap_or("_OTHER"),
                address: target.address().map(|a| StringValue::from(a.to_owned())),
                port: target.server_port(),
                template: template.map(|t| t.0),
            };
            ExchangeMetric::client(instruments, start, request)
        });
        let started = config.source.start(builder, &parent, Vec::new);
        // A client span that starts a deferred trace (a background job's call) marks it.
        let started = if started.recording {
            config.with_sampler(|s| crate::http::deferred::mark(started, &parent, s, None))
        } else {
            started
        };
        let propagation = if extensions.get::<NoPropagation>().is_some() {
            Propagation::None
        } else {
            config.policy.decide(target.address())
        };
        let span =
            OpenSpan::start(&started.cx, Side::Client, started.recording, metric).map(|span| {
                span.tracking(Tracked::new(Side::Client, grpc, config.classifier.as_ref()))
            });
        OutgoingCall {
            cx: started.cx,
            span,
            propagation,
            correlation_header: config.correlation_header.clone(),
        }
    }

    /// Writes `traceparent`, `tracestate`, `baggage` and the correlation id header as the
    /// policy allows. A correlation header the caller set is kept; a value that cannot
    /// be encoded is skipped.
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        // `deferred.propagate_sampled`: a deferred call says "sampled".
        let sampled = crate::http::deferred::propagated(&self.cx);
        let cx = sampled.as_ref().unwrap_or(&self.cx);
        match self.propagation {
            Propagation::None => {}
            Propagation::TraceContext => {
                context::inject(&cx.with_cleared_baggage(), headers);
            }
            Propagation::All => {
                context::inject(cx, headers);
                if let Some(id) = cx.correlation_id()
                    && !headers.contains_key(&self.correlation_header)
                {
                    headers.insert(self.correlation_header.clone(), id.header_value().clone());
                }
            }
        }
    }
}

/// The client span as it starts, with every attribute the sampler may read. A gRPC call
/// is named `{rpc.service}/{rpc.method}` and starts with its `rpc.*` attributes too.
fn client_span(
    config: &ClientConfig,
    method: &Method,
    target: &Target<'_>,
    template: Option<&UrlTemplate>,
    grpc: Option<&GrpcMethod>,
) -> SpanBuilder {
    let known = known_method(method);
    let template = template.map(|t| t.0);
    // Named like server spans, with the URL template in place of the route.
    let name = match grpc {
        Some(grpc) => grpc.span_name(),
        None => span_name(known, template),
    };
    // Room for the sampler's `sampling.reason` and the export gate's marker too.
    let mut attributes = Vec::with_capacity(if grpc.is_some() { 11 } else { 8 });
    if let Some(grpc) = grpc {
        grpc.push_start_attributes(&mut attributes);
    }
    attributes.push(KeyValue::new(
        a::HTTP_REQUEST_METHOD,
        known.unwrap_or("_OTHER"),
    ));
    if known.is_none() {
        attributes.push(KeyValue::new(
            a::HTTP_REQUEST_METHOD_ORIGINAL,
            bounded(method.as_str()).to_owned(),
        ));
    }
    if let Some(address) = target.address() {
        attributes.push(KeyValue::new(
            a::SERVER_ADDRESS,
            bounded(address).to_owned(),
        ));
    }
    if let Some(port) = target.server_port() {
        attributes.push(KeyValue::new(a::SERVER_PORT, i64::from(port)));
    }
    if let Some(url) = target.url_full(&config.sensitive_query_params) {
        attributes.push(KeyValue::new(a::URL_FULL, url));
    }
    if let Some(template) = template {
        attributes.push(KeyValue::new(a::URL_TEMPLATE, bounded(template)));
    }
    SpanBuilder::from_name(name)
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn sensitive() -> Vec<Box<str>> {
        crate::http::DEFAULT_SENSITIVE_QUERY_PARAMS
            .iter()
            .map(|p| Box::from(*p))
            .collect()
    }

    #[test]
    fn url_full_strips_userinfo_and_redacts() {
        let headers = HeaderMap::new();
        // (uri, url.full, server.address, server.port)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<i64>);
        let cases: &[Case] = &[
            (
                "http://user:pass@api.internal:8080/a/b?token=t&q=1",
                Some("http://api.internal:8080/a/b?token=REDACTED&q=1"),
                Some("api.internal"),
                Some(8080),
            ),
            (
                "https://example.com",
                Some("https://example.com/"),
                Some("example.com"),
                Some(443),
            ),
            (
                "http://[::1]:3000/x",
                Some("http://[::1]:3000/x"),
                Some("::1"),
                Some(3000),
            ),
            ("/relative?sig=abc", None, None, None),
        ];
        for (uri, full, address, port) in cases {
            let uri: Uri = uri.parse().unwrap();
            let target = Target::from_uri(&uri, &headers);
            assert_eq!(target.url_full(&sensitive()).as_deref(), *full, "{uri}");
            assert_eq!(target.address(), *address, "{uri}");
            assert_eq!(target.server_port().map(i64::from), *port, "{uri}");
        }
    }

    #[test]
    fn host_header_of_relative_uri() {
        let uri: Uri = "/x".parse().unwrap();
        let cases: &[(&str, Option<&str>, Option<u16>)] = &[
            ("svc.internal:81", Some("svc.internal"), Some(81)),
            ("svc.internal", Some("svc.internal"), None),
            ("[::1]:9", Some("::1"), Some(9)),
            ("svc.internal:99999", None, None),
            ("bad host", None, None),
            ("user@evil", None, None),
            ("[::1", None, None),
            ("", None, None),
        ];
        for (host, address, port) in cases {
            let mut headers = HeaderMap::new();
            headers.insert("host", HeaderValue::from_str(host).unwrap());
            let target = Target::from_uri(&uri, &headers);
            assert_eq!(target.address(), *address, "{host:?}");
            if address.is_some() {
                assert_eq!(target.port, *port, "{host:?}");
            }
        }
        let long = "a".repeat(400);
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_str(&long).unwrap());
        assert_eq!(Target::from_uri(&uri, &headers).address(), None);
    }

    #[test]
    fn long_urls_are_bounded() {
        let uri: Uri = format!("http://a.b/{}", "x".repeat(60_000))
            .parse()
            .unwrap();
        let headers = HeaderMap::new();
        let target = Target::from_uri(&uri, &headers);
        assert_eq!(
            target.url_full(&sensitive()).unwrap().len(),
            crate::limits::max_value_len()
        );
    }

    #[test]
    fn hostile_baggage_values_are_encoded_never_panic() {
        use opentelemetry::baggage::BaggageExt as _;
        let cx = context::extract(&HeaderMap::new())
            .with_baggage([
                opentelemetry::KeyValue::new("note", "line\r\nbreak, é; \u{0}"),
                opentelemetry::KeyValue::new("ok", "1"),
            ])
            .with_value(crate::context::CorrelationId::parse(b"job-7").unwrap());
        let _attached = cx.attach();
        let uri: Uri = "http://svc.internal/x".parse().unwrap();
        let mut headers = HeaderMap::new();
        // No subscriber: no client span, the attached Context goes out as it is.
        let call = OutgoingCall::start(
            &ClientConfig::default(),
            &Method::GET,
            &HeaderMap::new(),
            &Target::from_uri(&uri, &headers),
            &Extensions::new(),
        );
        call.inject(&mut headers);
        let baggage = headers["baggage"].to_str().unwrap();
        assert!(baggage.contains("ok=1"), "{baggage}");
        assert!(
            !baggage.contains('\n') && !baggage.contains('é'),
            "{baggage}"
        );
        assert_eq!(headers["x-correlation-id"], "job-7");
        // A root Context has no span to send.
        assert!(!headers.contains_key("traceparent"));
    }
}
