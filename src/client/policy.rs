//! [`PropagationPolicy`]: what the client sends to which destination host.

use std::net::IpAddr;

use crate::Error;

/// Longest host pattern accepted (a DNS name is at most 253 bytes, plus `*.`).
const MAX_PATTERN_LEN: usize = 255;
/// Most patterns accepted in one list; matching is linear, so the list is bounded.
const MAX_PATTERNS: usize = 256;

/// What is propagated to one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Propagation {
    /// Nothing: no `traceparent`, `tracestate`, `baggage` or correlation id header.
    None,
    /// `traceparent` and `tracestate` only; baggage and the correlation id stay home.
    TraceContext,
    /// `traceparent`, `tracestate`, `baggage` and the correlation id header.
    All,
}

/// A validated host pattern: an exact host name, `*.` followed by a host name (any
/// subdomain, not the name itself), or an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(Box<str>),
    Subdomains(Box<str>),
    Ip(IpAddr),
}

impl HostPattern {
    fn parse(pattern: &str) -> Result<Self, &'static str> {
        if pattern.is_empty() {
            return Err("empty host pattern");
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err("host pattern longer than 255 bytes");
        }
        let unbracketed = pattern
            .strip_prefix('[')
            .and_then(|p| p.strip_suffix(']'))
            .unwrap_or(pattern);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(HostPattern::Ip(ip.to_canonical()));
        }
        let (wildcard, name) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.contains('*') {
            return Err("`*` is only allowed as the whole first label, as in `*.example.com`");
        }
        if name.is_empty() {
            return Err("no host name after `*.`");
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err("each label must be 1 to 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err("a host name may only contain letters, digits, `-`, `_` and `.`");
            }
        }
        let name = Box::from(name.to_ascii_lowercase());
        Ok(if wildcard {
            HostPattern::Subdomains(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    /// `host` is ASCII (an `http::Uri` or `url::Url` host, brackets removed), `ip` its
    /// parsed form when it is an address.
    fn matches(&self, host: &str, ip: Option<IpAddr>) -> bool {
        match self {
            HostPattern::Ip(pattern) => ip == Some(*pattern),
            HostPattern::Exact(name) => host.as_bytes().eq_ignore_ascii_case(name.as_bytes()),
            HostPattern::Subdomains(suffix) => is_subdomain(host, suffix),
        }
    }
}

/// Whether `host` is a proper subdomain of `suffix` (ASCII case-insensitive).
fn is_subdomain(host: &str, suffix: &str) -> bool {
    let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
    host.len() > suffix.len() + 1
        && host[host.len() - suffix.len() - 1] == b'.'
        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

fn parse_list<I, S>(field: &str, patterns: I) -> Result<Vec<HostPattern>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut parsed = Vec::new();
    for (i, pattern) in patterns.into_iter().enumerate() {
        let pattern = pattern.as_ref();
        if i == MAX_PATTERNS {
            return Err(Error::config(
                field,
                pattern,
                format!("more than {MAX_PATTERNS} host patterns"),
            ));
        }
        let p = HostPattern::parse(pattern)
            .map_err(|reason| Error::config(format!("{field}[{i}]"), pattern, reason))?;
        parsed.push(p);
    }
    Ok(parsed)
}

/// Which destinations receive which trace headers.
///
/// The default sends everything everywhere. [`internal_only`](Self::internal_only)
/// keeps baggage and the correlation id inside the mesh; the
/// [builder](Self::builder) also turns propagation off entirely for some hosts. For
/// a single request, put [`NoPropagation`](super::NoPropagation) in its extensions.
///
/// Host patterns are validated when the policy is built: an exact host name
/// (`payments.internal`), `*.` and a host name (`*.svc.cluster.local` matches any
/// subdomain, at any depth, but not `svc.cluster.local` itself), or an IP address
/// (`10.0.0.7`, `::1`, `[::1]`). Names compare case-insensitively; a trailing dot
/// is ignored.
///
/// ```
/// use meshtrace::client::{Propagation, PropagationPolicy};
///
/// let policy = PropagationPolicy::internal_only(["*.svc.cluster.local", "*.internal"])?;
/// assert_eq!(policy.propagation_for("orders.shop.svc.cluster.local"), Propagation::All);
/// assert_eq!(policy.propagation_for("127.0.0.1"), Propagation::All); // loopback is internal
/// assert_eq!(policy.propagation_for("api.partner.com"), Propagation::TraceContext);
///
/// let policy = PropagationPolicy::builder()
///     .disable_for_hosts(["*.partner.com"])
///     .build()?;
/// assert_eq!(policy.propagation_for("api.partner.com"), Propagation::None);
///
/// let err = PropagationPolicy::internal_only(["*.internal", "bad host"]).unwrap_err();
/// assert!(err.to_string().contains("bad host"));
/// # Ok::<(), meshtrace::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PropagationPolicy {
    /// `None`: baggage and correlation go everywhere.
    internal: Option<Vec<HostPattern>>,
    loopback_is_internal: bool,
    disabled: Vec<HostPattern>,
}

impl Default for PropagationPolicy {
    /// Sends `traceparent`, `tracestate`, `baggage` and the correlation id everywhere.
    fn default() -> Self {
        PropagationPolicy {
            internal: None,
            loopback_is_internal: true,
            disabled: Vec::new(),
        }
    }
}

impl PropagationPolicy {
    /// A builder for a policy.
    pub fn builder() -> PropagationPolicyBuilder {
        PropagationPolicyBuilder::default()
    }

    /// Baggage and the correlation id go only to hosts matching `patterns` and to
    /// loopback (`localhost`, `*.localhost`, `127.0.0.0/8`, `::1`); trace context goes
    /// everywhere. Fails on the first invalid pattern, naming it.
    pub fn internal_only<I, S>(patterns: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::builder().internal_hosts(patterns).build()
    }

    /// What this policy sends to `host` (a URL host; IPv6 with or without brackets).
    pub fn propagation_for(&self, host: &str) -> Propagation {
        self.decide(Some(host))
    }

    /// `None` when the request has no host (a relative URI without `Host`): nothing is
    /// internal then.
    pub(crate) fn decide(&self, host: Option<&str>) -> Propagation {
        let host = host.map(|h| {
            let h = h
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(h);
            h.strip_suffix('.').unwrap_or(h)
        });
        let ip = host
            .and_then(|h| h.parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical());
        let matches_any =
            |list: &[HostPattern]| host.is_some_and(|h| list.iter().any(|p| p.matches(h, ip)));
        if matches_any(&self.disabled) {
            return Propagation::None;
        }
        let Some(internal) = &self.internal else {
            return Propagation::All;
        };
        let loopback = self.loopback_is_internal
            && match (host, ip) {
                (_, Some(ip)) => ip.is_loopback(),
                (Some(h), None) => {
                    h.eq_ignore_ascii_case("localhost") || is_subdomain(h, "localhost")
                }
                (None, None) => false,
            };
        if loopback || matches_any(internal) {
            Propagation::All
        } else {
            Propagation::TraceContext
        }
    }
}

/// Builds a [`PropagationPolicy`]; patterns are validated by [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use]
pub struct PropagationPolicyBuilder {
    internal: Option<Vec<String>>,
    loopback_is_internal: bool,
    disabled: Vec<String>,
}

impl Default for PropagationPolicyBuilder {
    fn default() -> Self {
        PropagationPolicyBuilder {
            internal: None,
            loopback_is_internal: true,
            disabled: Vec::new(),
        }
    }
}

impl PropagationPolicyBuilder {
    /// Restricts baggage and the correlation id to hosts matching these patterns (and
    /// loopback, unless [`loopback_is_internal(false)`](Self::loopback_is_internal)).
    /// Adds to the patterns given before.
    pub fn internal_hosts<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.internal
            .get_or_insert_with(Vec::new)
            .extend(patterns.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// Whether loopback hosts count as internal (default `true`).
    pub fn loopback_is_internal(mut self, internal: bool) -> Self {
        self.loopback_is_internal = internal;
        self
    }

    /// Sends no trace headers at all to hosts matching these patterns (third parties
    /// that must not learn trace ids). Adds to the patterns given before.
    pub fn disable_for_hosts<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.disabled
            .extend(patterns.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// Validates every pattern; the error names the list, the index and the pattern.
    pub fn build(self) -> Result<PropagationPolicy, Error> {
        let internal = match self.internal {
            Some(list) => Some(parse_list("propagation.internal_hosts", list)?),
            None => None,
        };
        Ok(PropagationPolicy {
            internal,
            loopback_is_internal: self.loopback_is_internal,
            disabled: parse_list("propagation.disabled_hosts", self.disabled)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_validated() {
        let ok: &[(&str, HostPattern)] = &[
            ("api.internal", HostPattern::Exact("api.internal".into())),
            ("API.Internal.", HostPattern::Exact("api.internal".into())),
            ("*.internal", HostPattern::Subdomains("internal".into())),
            ("localhost", HostPattern::Exact("localhost".into())),
            ("10.0.0.7", HostPattern::Ip("10.0.0.7".parse().unwrap())),
            ("::1", HostPattern::Ip("::1".parse().unwrap())),
            ("[::1]", HostPattern::Ip("::1".parse().unwrap())),
            (
                "::ffff:127.0.0.1",
                HostPattern::Ip("127.0.0.1".parse().unwrap()),
            ),
        ];
        for (input, expected) in ok {
            assert_eq!(
                HostPattern::parse(input).as_ref(),
                Ok(expected),
                "{input:?}"
            );
        }
        let long_label = format!("{}.com", "a".repeat(64));
        let long = "a.".repeat(200);
        let bad = [
            "",
            "*",
            "*.",
            "**.internal",
            "a.*.internal",
            "*internal",
            "bad host",
            "a..b",
            ".internal",
            "user@host",
            "host:8080",
            "ünïcode.de",
            "a\u{0}b",
            "[::1",
            long_label.as_str(),
            long.as_str(),
        ];
        for input in bad {
            assert!(HostPattern::parse(input).is_err(), "{input:?} was accepted");
        }
    }

    #[test]
    fn errors_name_the_list_index_and_pattern() {
        let err = PropagationPolicy::builder()
            .disable_for_hosts(["ok.com", "not ok"])
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("propagation.disabled_hosts[1]"), "{err}");
        assert!(err.contains("not ok"), "{err}");
        let many = vec!["a.com"; MAX_PATTERNS + 1];
        assert!(PropagationPolicy::internal_only(many).is_err());
    }

    #[test]
    fn decisions() {
        use Propagation::*;
        let policy = PropagationPolicy::builder()
            .internal_hosts(["*.svc.cluster.local", "*.internal", "10.1.2.3"])
            .disable_for_hosts(["*.partner.com", "tracker.example"])
            .build()
            .unwrap();
        let cases: &[(Option<&str>, Propagation)] = &[
            (Some("orders.shop.svc.cluster.local"), All),
            (Some("Orders.SVC.cluster.local."), All),
            (Some("svc.cluster.local"), TraceContext),
            (Some("evilsvc.cluster.local"), TraceContext),
            (Some("a.internal"), All),
            (Some("internal"), TraceContext),
            (Some("notinternal"), TraceContext),
            (Some("10.1.2.3"), All),
            (Some("10.1.2.4"), TraceContext),
            (Some("localhost"), All),
            (Some("app.localhost"), All),
            (Some("127.0.0.1"), All),
            (Some("127.9.9.9"), All),
            (Some("[::1]"), All),
            (Some("::ffff:127.0.0.1"), All),
            (Some("api.partner.com"), None),
            (Some("partner.com"), TraceContext),
            (Some("tracker.example"), None),
            (Some("example.com"), TraceContext),
            (Option::None, TraceContext),
        ];
        for (host, expected) in cases {
            assert_eq!(policy.decide(*host), *expected, "{host:?}");
        }
    }

    #[test]
    fn default_sends_everything_and_loopback_can_be_external() {
        let default = PropagationPolicy::default();
        assert_eq!(default.propagation_for("api.partner.com"), Propagation::All);
        assert_eq!(default.decide(None), Propagation::All);
        let strict = PropagationPolicy::builder()
            .internal_hosts(["*.internal"])
            .loopback_is_internal(false)
            .build()
            .unwrap();
        assert_eq!(
            strict.propagation_for("127.0.0.1"),
            Propagation::TraceContext
        );
        assert_eq!(
            strict.propagation_for("localhost"),
            Propagation::TraceContext
        );
    }
}
