//! The axum [`Router`] of the pages: two routes (the index, and everything under it through
//! one catch-all whose parameter name marks the pages' requests, see
//! [`super::is_pages_request`]), one handler that dispatches on the rest of the path.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::routing::any;
use http::{HeaderValue, Method, Response, StatusCode, header};
use opentelemetry::trace::TraceId;
use serde::{Deserialize, Serialize};

use super::auth::{self, Token};
use super::html::{self, Links, Notice};
use super::store::{BUCKETS, RingKey, Store};
use super::{MARKER, Pages, view};
use crate::Error;

/// Largest request body read (the rate form, the JSON change).
const MAX_BODY: usize = 16 * 1024;
/// Most fields read from a form or a query.
const MAX_FIELDS: usize = 256;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn router(pages: Arc<Pages>) -> Router {
    let base = pages.path.clone();
    let rest = if base == "/" {
        format!("/{MARKER}")
    } else {
        format!("{base}/{MARKER}")
    };
    Router::new()
        .route(&base, any(handle))
        .route(&rest, any(handle))
        .with_state(pages)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", body)
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => respond(status, "application/json", body),
        Err(_) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "the page could not be serialized",
        ),
    }
}

/// The error pages: HTML, or JSON `{"error": ...}` under `api/`.
fn failure(pages: &Pages, api: bool, status: StatusCode, text: &str) -> Response<Body> {
    if api {
        json(status, &serde_json::json!({ "error": text }))
    } else {
        let links = Links { base: &pages.path };
        let title = status.canonical_reason().unwrap_or("Error");
        html(status, html::message(&links, title, text))
    }
}

fn unauthorized(pages: &Pages, api: bool) -> Response<Body> {
    let mut response = failure(
        pages,
        api,
        StatusCode::UNAUTHORIZED,
        "These pages need a token: Authorization: Bearer <token>, or the password of the \
         browser's sign-in prompt.",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"meshtrace trace pages\", charset=\"UTF-8\""),
    );
    response
}

/// Whether the request may read: always when no read token is set, else with the read token
/// or the change token (both compared, in constant time).
fn may_read(pages: &Pages, headers: &http::HeaderMap) -> bool {
    let Some(read) = &pages.tokens.read else {
        return true;
    };
    let Some(given) = auth::presented(headers) else {
        return false;
    };
    let as_read = read.matches(&given);
    let as_change = pages
        .tokens
        .change
        .as_ref()
        .is_some_and(|t| t.matches(&given));
    as_read | as_change
}

/// `&`-separated `name=value` pairs, `+` as space, percent-decoded; at most [`MAX_FIELDS`].
pub(crate) fn parse_pairs(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .take(MAX_FIELDS)
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn handle(State(pages): State<Arc<Pages>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let sub = match path.strip_prefix(pages.path.as_str()) {
        Some(rest) => rest.trim_start_matches('/'),
        None => path.trim_start_matches('/'),
    };
    let (api, page) = match sub.strip_prefix("api/") {
        Some(page) => (true, page),
        None => (false, sub),
    };
    match page {
        "style.css" if !api => {
            return respond(StatusCode::OK, "text/css; charset=utf-8", html::STYLE);
        }
        "favicon.svg" if !api => return respond(StatusCode::OK, "image/svg+xml", html::ICON),
        _ => {}
    }
    let reading = parts.method == Method::GET || parts.method == Method::HEAD;
    let changing = parts.method == Method::POST && page == "sampler";
    if !reading && !changing {
        let mut response = failure(
            &pages,
            api,
            StatusCode::METHOD_NOT_ALLOWED,
            "Only GET (and POST to the sampler page) are served here.",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        return response;
    }
    let Some(store) = pages.store() else {
        return failure(
            &pages,
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            "The pages are not mounted.",
        );
    };
    if changing {
        return change(&pages, store, api, &parts.headers, body).await;
    }
    if !may_read(&pages, &parts.headers) {
        return unauthorized(&pages, api);
    }
    let links = Links { base: &pages.path };
    let service = pages.service.as_deref();
    let query = parts.uri.query().unwrap_or("");
    match page {
        "" | "summary" => {
            let summary = view::summary(&pages, store);
            if api {
                json(StatusCode::OK, &summary)
            } else {
                html(StatusCode::OK, html::summary(&links, &summary))
            }
        }
        "samples" => {
            let pairs = parse_pairs(query);
            let name = field(&pairs, "name").unwrap_or("");
            let key = match (field(&pairs, "bucket"), field(&pairs, "error")) {
                (Some(b), _) => match b.parse::<usize>() {
                    Ok(b) if b < BUCKETS => RingKey::Latency(b),
                    _ => {
                        return failure(
                            &pages,
                            api,
                            StatusCode::BAD_REQUEST,
                            "bucket must be 0 to 8.",
                        );
                    }
                },
                (None, Some(class)) => RingKey::Error(class.to_owned()),
                (None, None) => {
                    return failure(
                        &pages,
                        api,
                        StatusCode::BAD_REQUEST,
                        "Ask for a bucket or an error class.",
                    );
                }
            };
            match view::samples(store, name, &key) {
                Some(samples) if api => json(StatusCode::OK, &samples),
                Some(samples) => {
                    let json_link = format!("api/samples?{query}");
                    html(
                        StatusCode::OK,
                        html::samples(&links, service, &samples, &json_link),
                    )
                }
                None => failure(&pages, api, StatusCode::NOT_FOUND, "No such span name."),
            }
        }
        "sampler" => {
            let sampler = view::sampler(&pages, Some(store));
            if api {
                json(StatusCode::OK, &sampler)
            } else {
                html(
                    StatusCode::OK,
                    html::sampler(&links, service, &sampler, Notice::None),
                )
            }
        }
        "export" => {
            let export = view::export(&pages, store);
            if api {
                json(StatusCode::OK, &export)
            } else {
                html(StatusCode::OK, html::export(&links, service, &export))
            }
        }
        other => match other.strip_prefix("trace/") {
            Some(id) => trace(&pages, store, api, id, &links),
            None => failure(&pages, api, StatusCode::NOT_FOUND, "No such page."),
        },
    }
}

fn trace(pages: &Pages, store: &Store, api: bool, id: &str, links: &Links<'_>) -> Response<Body> {
    let trace_id = (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| TraceId::from_hex(id).ok())
        .flatten();
    let Some(trace_id) = trace_id else {
        return failure(
            pages,
            api,
            StatusCode::BAD_REQUEST,
            "A trace id is 32 hex digits.",
        );
    };
    match view::trace(store, trace_id) {
        Some(trace) if api => json(StatusCode::OK, &trace),
        Some(trace) => {
            let json_link = format!("api/trace/{}", trace.trace_id);
            html(
                StatusCode::OK,
                html::trace(links, pages.service.as_deref(), &trace, &json_link),
            )
        }
        None => failure(
            pages,
            api,
            StatusCode::NOT_FOUND,
            "No sample of this trace is kept (samples are replaced as newer ones come).",
        ),
    }
}

/// A change of rates, from the form or the JSON API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateChange {
    base_rate: Option<f64>,
    high_value_rate: Option<f64>,
    #[serde(default)]
    rules: BTreeMap<String, f64>,
}

impl RateChange {
    fn from_form(pairs: &[(String, String)]) -> Result<Self, String> {
        let number = |name: &str, text: &str| {
            text.trim()
                .parse::<f64>()
                .map_err(|_| format!("{name}: {text:?} is not a number"))
        };
        let mut change = RateChange::default();
        for (key, value) in pairs {
            if key == "token" || value.trim().is_empty() {
                continue;
            }
            match key.as_str() {
                "base_rate" => change.base_rate = Some(number(key, value)?),
                "high_value_rate" => change.high_value_rate = Some(number(key, value)?),
                other => match other.strip_prefix("rule.") {
                    Some(rule) => {
                        change.rules.insert(rule.to_owned(), number(key, value)?);
                    }
                    None => return Err(format!("unknown field {other:?}")),
                },
            }
        }
        Ok(change)
    }

    /// The configuration in force with these rates, for `SamplerHandle::update`.
    fn apply(&self, current: &crate::SamplingConfig) -> Result<crate::SamplingConfig, Error> {
        let mut config = current.clone();
        if let Some(rate) = self.base_rate {
            config.base_rate = rate;
        }
        if let Some(rate) = self.high_value_rate {
            config.high_value_rate = rate;
        }
        for (name, rate) in &self.rules {
            match config.rules.iter_mut().find(|r| r.name == *name) {
                Some(rule) => rule.rate = *rate,
                None => {
                    return Err(Error::config(
                        "sampling.rules",
                        name,
                        "no rule has this name; only the rates of existing rules can be changed here",
                    ));
                }
            }
        }
        Ok(config)
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.base_rate {
            parts.push(format!("base rate {r}"));
        }
        if let Some(r) = self.high_value_rate {
            parts.push(format!("high-value rate {r}"));
        }
        for (name, r) in &self.rules {
            parts.push(format!("rule {name} {r}"));
        }
        if parts.is_empty() {
            "nothing to change".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

#[derive(Serialize)]
struct Changed<'a> {
    applied: bool,
    message: &'a str,
}

/// POST `sampler` (form) or `api/sampler` (JSON): checks the token, then applies the rates
/// through `SamplerHandle::update` (validation and an atomic swap, as `reload`).
async fn change(
    pages: &Pages,
    store: &Store,
    api: bool,
    headers: &http::HeaderMap,
    body: Body,
) -> Response<Body> {
    let links = Links { base: &pages.path };
    let service = pages.service.as_deref();
    let refuse = |status: StatusCode, text: &str| -> Response<Body> {
        if api {
            json(
                status,
                &Changed {
                    applied: false,
                    message: text,
                },
            )
        } else {
            let sampler = view::sampler(pages, Some(store));
            html(
                status,
                html::sampler(&links, service, &sampler, Notice::Refused(text)),
            )
        }
    };
    let (Some(token), Some(handle)) = (&pages.tokens.change, &pages.sampler) else {
        let text = if pages.sampler.is_none() {
            "Changing rates is disabled: these pages know no sampler."
        } else {
            "Changing rates is disabled: no token is configured (TracePagesBuilder::token)."
        };
        return refuse(StatusCode::FORBIDDEN, text);
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The request body is too large.",
        );
    };
    let (given, change) = if api {
        let change = match serde_json::from_slice::<RateChange>(&bytes) {
            Ok(change) => Ok(change),
            Err(e) => Err(format!("the body is not a rate change: {e}")),
        };
        (auth::presented(headers), change)
    } else {
        let text = String::from_utf8_lossy(&bytes);
        let pairs = parse_pairs(&text);
        let given = field(&pairs, "token")
            .filter(|t| !t.is_empty())
            .map(|t| t.as_bytes().to_vec())
            .or_else(|| auth::presented(headers));
        (given, RateChange::from_form(&pairs))
    };
    let Some(given) = given else {
        let mut response = refuse(
            StatusCode::UNAUTHORIZED,
            "Changing rates needs the token (the form's token field, or Authorization: Bearer).",
        );
        if api {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"meshtrace trace pages\""),
            );
        }
        return response;
    };
    if !Token::matches(token, &given) {
        return refuse(
            StatusCode::FORBIDDEN,
            "The token is not the pages' token; nothing changed.",
        );
    }
    let change = match change {
        Ok(change) => change,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("Nothing changed: {e}.")),
    };
    match handle.update(|current| change.apply(current)) {
        Ok(()) => {
            let text = format!("Applied: {}.", change.describe());
            if api {
                json(
                    StatusCode::OK,
                    &Changed {
                        applied: true,
                        message: &text,
                    },
                )
            } else {
                let sampler = view::sampler(pages, Some(store));
                html(
                    StatusCode::OK,
                    html::sampler(&links, service, &sampler, Notice::Done(&text)),
                )
            }
        }
        Err(e) => refuse(StatusCode::BAD_REQUEST, &format!("Nothing changed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_queries() {
        let pairs = parse_pairs("name=GET+%2Fusers%2F%7Bid%7D&bucket=3&&flag&x=%3Cb%3E");
        assert_eq!(field(&pairs, "name"), Some("GET /users/{id}"));
        assert_eq!(field(&pairs, "bucket"), Some("3"));
        assert_eq!(field(&pairs, "flag"), Some(""));
        assert_eq!(field(&pairs, "x"), Some("<b>"));
        assert_eq!(parse_pairs(&"a=1&".repeat(10_000)).len(), MAX_FIELDS);
        let change = RateChange::from_form(&parse_pairs(
            "token=t&base_rate=0.25&high_value_rate=&rule.health=0",
        ))
        .unwrap();
        assert_eq!(change.base_rate, Some(0.25));
        assert_eq!(change.high_value_rate, None);
        assert_eq!(change.rules.get("health"), Some(&0.0));
        assert!(RateChange::from_form(&parse_pairs("base_rate=lots")).is_err());
        assert!(RateChange::from_form(&parse_pairs("other=1")).is_err());
    }
}
