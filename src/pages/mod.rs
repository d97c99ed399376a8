//! In-process trace pages (zPages, feature `pages`): what meshtrace sees, without a backend,
//! as an axum [`Router`](axum::Router) you mount or serve on an admin listener. Off unless
//! mounted: until [`TracePages::router`] is called, nothing is recorded for them.
//!
//! | page | path (under [`DEFAULT_PATH`]) | JSON |
//! |---|---|---|
//! | **Trace summary**: per server span name (route templates, never raw paths), the running requests, the completed ones in the zPages latency buckets (0, 10 µs, 100 µs, 1 ms, 10 ms, 100 ms, 1 s, 10 s, 100 s) over a sliding window and since the start, the errors (red); a heat table | `/debug/tracez` | `api/summary` |
//! | **Samples** of a bucket or an error class: recent spans with their attributes, events, trace id and parent | `samples?name=..&bucket=3`, `samples?name=..&error=503` | `api/samples?..` |
//! | **Trace tree** of a sample: the local spans of its trace, bars proportional to duration | `trace/<trace-id>` | `api/trace/<trace-id>` |
//! | **Sampler**: the configuration in force (rules, rates, limits), the decision counters, and a form to change rates (needs the token) | `sampler` | `api/sampler` (POST: change) |
//! | **Export**: the queue, exported and dropped counts, the last export error | `export` | `api/export` |
//!
//! ```
//! use axum::{Router, routing::get};
//! use meshtrace::TracingManager;
//!
//! # fn main() -> Result<(), meshtrace::Error> {
//! let (telemetry, _layers) = TracingManager::builder()
//!     .span_exporter(opentelemetry_sdk::trace::InMemorySpanExporter::default())
//!     .build()?;
//! let pages = telemetry
//!     .pages()                                       // knows the sampler and the export queue
//!     .token("change-me-to-32-random-hex-digits")    // needed to change rates; none: read-only
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/orders/{id}", get(|| async { "order" }))
//!     .merge(pages.router())                         // /debug/tracez, never traced itself
//!     .layer(telemetry.server_layer());
//! # drop(app);
//! # Ok(()) }
//! ```
//!
//! Or on an admin listener of its own: `axum::serve(admin_listener, pages.router())`.
//!
//! # Where the numbers come from
//!
//! The **counts** come from the end of each server exchange, where its span ends and
//! `http.server.request.duration` is recorded, with the same two clock readings: sampled and
//! unsampled requests alike, the same duration, the same `error.type`. The summary's totals
//! are the histogram's counts (summed over status codes) and its sum; a request counts as an
//! error when its metric has `error.type` (5xx, an error of the inner service, a panic, a
//! client gone before the end). Layers that feed the pages: the manager's
//! (`server_layer()`, and `TracingLayer::new()` after `install()`), or any layer given the
//! pages with [`TracingLayer::pages`](crate::server::TracingLayer::pages).
//!
//! The **samples** come from the spans that record when they end: sampled spans, and
//! deferred spans (recorded without being sampled, see deferred capture in
//! [`crate::sampler`]; marked as such). An unsampled request is counted but has no sample:
//! nothing was recorded. The manager's export gate feeds them (no second span processor, so
//! no copy of every span); a hand-built provider adds [`TracePages::span_processor`]. A
//! local root server span is a sample of its row's latency bucket, or of its error class
//! (`error.type`) when it failed; its trace tree holds the local spans of the trace that
//! ended before it, when the trace was captured from its start (see
//! [`TracePagesBuilder::sample_interval`]). Client and internal spans appear in trees, not
//! as rows.
//!
//! # Safe by default
//!
//! * Changing the sampler's rates needs the token ([`TracePagesBuilder::token`]); without
//!   one, the pages are read-only and say so. Reading can need a token of its own
//!   ([`TracePagesBuilder::read_token`]; the change token reads too). Tokens are compared in
//!   constant time (`subtle`), lengths included, and are never shown. A browser is asked
//!   for the read token with HTTP Basic authentication (any user name); scripts send
//!   `Authorization: Bearer <token>`.
//! * Every value shown is what an exported span carries: redacted where it was recorded
//!   (sensitive query values, never-recorded headers), cut to `max_attribute_value_length`
//!   (the manager's own, as its export gate cuts; hand-built pages: the process-wide bound,
//!   the last built manager's), meshtrace's internal marks removed; debug tokens and the
//!   HMAC secret of the sampler's configuration are redacted. Everything a client chose is
//!   HTML-escaped; pages are served with a Content-Security-Policy that allows no script.
//! * The store is bounded in spans and bytes and never grows with cardinality: at most
//!   `max_span_names` rows (further names share one overflow row), fixed rings per row, at
//!   most [`MAX_SPANS_PER_SAMPLE`] spans per sample, `max_sample_bytes` for all samples,
//!   [`MAX_CAPTURES`] traces captured at once within [`MAX_CAPTURE_BYTES`]. Rows and
//!   captures are sharded, each behind its own lock; no lock is shared by every request.
//! * **The pages never appear in the traces or metrics they show**: every route of the
//!   pages' Router has a template that marks it (its catch-all parameter is named
//!   `meshtrace_pages`; the index's template is registered when the Router is built), and
//!   [`TracingLayer`](crate::server::TracingLayer) skips such requests before anything is
//!   extracted, sampled or measured, as it skips `skip_if` requests. This holds when the
//!   pages are merged into a Router that has the layer (axum gives the layer the matched
//!   template). A `TracingLayer` outside the Router (no templates) cannot tell: serve the
//!   pages beside it, or on their own listener. The index's template has no parameter, so
//!   it is recognised by its end, which also holds when the pages are nested
//!   (`Router::nest("/admin", pages.router())`): an app route whose template ends with the
//!   pages' path (`/x/debug/tracez` beside pages at `/debug/tracez`) is skipped too. Give
//!   the pages a [`path`](TracePagesBuilder::path) no app route ends with.
//!
//! # Cost
//!
//! Not mounted: one atomic load per request and per ended span, nothing else.
//! Mounted: a row lookup and two short per-row lock holds per request, and a sample copied at
//! most once per ring per `sample_interval`; the README's performance section has the
//! figures.

mod auth;
mod html;
mod record;
mod router;
mod store;
mod view;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

pub use auth::{MAX_TOKEN_LEN, MIN_TOKEN_LEN};
pub(crate) use store::Exchange;
use store::{Limits, Store};
pub use store::{MAX_CAPTURE_BYTES, MAX_CAPTURES, MAX_ERROR_CLASSES, MAX_SPANS_PER_SAMPLE};

use crate::Error;
use crate::export::ExportStats;
use crate::sampler::SamplerHandle;

/// Where the pages are served by default.
pub const DEFAULT_PATH: &str = "/debug/tracez";
/// The lower bounds of the zPages latency buckets: 0, 10 µs, 100 µs, 1 ms, 10 ms, 100 ms,
/// 1 s, 10 s, 100 s (a bucket holds durations from its bound, inclusive, to the next one).
pub const LATENCY_BUCKETS: [Duration; 9] = [
    Duration::ZERO,
    Duration::from_micros(10),
    Duration::from_micros(100),
    Duration::from_millis(1),
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(10),
    Duration::from_secs(100),
];
/// The default sliding window of the summary's counts.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);
/// The default bound on rows (span names); further names share one overflow row.
pub const DEFAULT_MAX_SPAN_NAMES: usize = 256;
/// The default number of samples kept per latency bucket and per error class of a row.
pub const DEFAULT_SAMPLES_PER_BUCKET: usize = 4;
/// The default bound on the bytes (estimated) of all samples together: 8 MiB.
pub const DEFAULT_MAX_SAMPLE_BYTES: usize = 8 << 20;
/// The default shortest time between two samples of one ring.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// The catch-all parameter that marks the pages' routes.
pub(crate) const MARKER: &str = "{*meshtrace_pages}";

/// Set once a pages Router is built in this process: until then, layers look nothing up.
static ANY_MOUNTED: AtomicBool = AtomicBool::new(false);
/// The index routes of the pages Routers built in this process (their templates carry no
/// parameter to mark them); few, leaked once each.
static INDEXES: RwLock<Vec<&'static str>> = RwLock::new(Vec::new());
/// Most index templates remembered.
const MAX_INDEXES: usize = 16;
/// The installed manager's slot, for layers built with `TracingLayer::new()`.
static INSTALLED: ArcSwapOption<Slot> = ArcSwapOption::const_empty();

/// Whether a request is one of the pages' own: its matched route template is one of the
/// pages' (see the [module docs](self#safe-by-default)). One atomic load when no pages
/// Router was built.
#[inline]
pub(crate) fn is_pages_request(parts: &http::request::Parts) -> bool {
    if !ANY_MOUNTED.load(Ordering::Relaxed) {
        return false;
    }
    is_pages_route(parts)
}

#[cold]
fn is_pages_route(parts: &http::request::Parts) -> bool {
    let Some(route) = crate::http::attributes::route(parts) else {
        return false;
    };
    route.ends_with(MARKER)
        || INDEXES
            .read()
            .is_ok_and(|indexes| indexes.iter().any(|index| route.ends_with(index)))
}

fn register_index(path: &str) {
    // `/` would mark every app's root route: the pages' index there is not registered
    // (served at the root, the pages have a listener of their own).
    if path == "/" {
        return;
    }
    if let Ok(mut indexes) = INDEXES.write()
        && !indexes.contains(&path)
        && indexes.len() < MAX_INDEXES
    {
        indexes.push(Box::leak(path.into()));
    }
}

/// Where the layers and the export gate find the pages' store, once mounted.
#[derive(Debug, Default)]
pub(crate) struct Slot(OnceLock<Arc<Store>>);

impl Slot {
    /// The mounted store, if any: one atomic load.
    #[inline]
    pub(crate) fn store(&self) -> Option<&Arc<Store>> {
        self.0.get()
    }

    /// A span that recorded ended (called by the export gate).
    #[inline]
    pub(crate) fn on_end(&self, span: &SpanData) {
        if let Some(store) = self.store() {
            store.on_end(span);
        }
    }
}

/// Which pages a server layer feeds.
#[derive(Clone, Debug, Default)]
pub(crate) enum Source {
    /// The installed manager's, once mounted.
    #[default]
    Installed,
    /// These (a manager's layer, or `TracingLayer::pages`).
    Given(Arc<Slot>),
}

/// A mounted store a request reports to.
pub(crate) type Mounted = Arc<Store>;

impl Source {
    /// The pages of this slot.
    pub(crate) fn given(slot: &Arc<Slot>) -> Self {
        Source::Given(Arc::clone(slot))
    }

    /// The store this request reports to, if the pages are mounted.
    #[inline]
    pub(crate) fn mounted(&self) -> Option<Mounted> {
        match self {
            Source::Given(slot) => slot.store().cloned(),
            Source::Installed => {
                if !ANY_MOUNTED.load(Ordering::Relaxed) {
                    return None;
                }
                INSTALLED
                    .load()
                    .as_ref()
                    .and_then(|slot| slot.store().cloned())
            }
        }
    }
}

/// Starts an exchange on a mounted store (see `store::Store::begin`).
pub(crate) fn begin(
    store: &Mounted,
    name: &str,
    start: SystemTime,
    cx: &Context,
    recording: bool,
) -> Exchange {
    store.begin(name, start, cx, recording)
}

/// Registers (or, with `None`, clears) the installed manager's slot.
pub(crate) fn set_installed(slot: Option<&Arc<Slot>>) {
    INSTALLED.store(slot.cloned());
}

/// The export counters the pages show.
#[derive(Clone)]
pub(crate) struct ExportSource {
    pub(crate) stats: Arc<dyn Fn() -> ExportStats + Send + Sync>,
    pub(crate) queue_capacity: Option<usize>,
}

/// The tokens.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tokens {
    pub(crate) change: Option<auth::Token>,
    pub(crate) read: Option<auth::Token>,
}

/// Everything the handler needs.
pub(crate) struct Pages {
    slot: Arc<Slot>,
    /// The store made with this builder's limits, put in the slot when mounted (a slot
    /// mounted by other pages keeps theirs).
    own: Arc<Store>,
    pub(crate) path: String,
    pub(crate) tokens: Tokens,
    pub(crate) sampler: Option<SamplerHandle>,
    pub(crate) export: Option<ExportSource>,
    pub(crate) service: Option<String>,
}

impl Pages {
    /// The store the pages show, once mounted.
    pub(crate) fn store(&self) -> Option<&Store> {
        self.slot.store().map(|s| &**s)
    }
}

/// Configures [`TracePages`]; from [`TracePages::builder`] (hand-built setups) or
/// [`TracingManager::pages`](crate::TracingManager::pages) (which knows the sampler and the
/// export counters).
#[must_use]
pub struct TracePagesBuilder {
    path: String,
    token: Option<String>,
    read_token: Option<String>,
    window: Duration,
    max_span_names: usize,
    samples_per_bucket: usize,
    max_sample_bytes: usize,
    sample_interval: Duration,
    sampler: Option<SamplerHandle>,
    export: Option<ExportSource>,
    service: Option<String>,
    slot: Option<Arc<Slot>>,
    /// The manager's `max_attribute_value_length`; `None`: the process-wide bound.
    max_value_len: Option<usize>,
}

impl std::fmt::Debug for TracePagesBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracePagesBuilder")
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "read_token",
                &self.read_token.as_ref().map(|_| "<redacted>"),
            )
            .field("window", &self.window)
            .field("max_span_names", &self.max_span_names)
            .field("samples_per_bucket", &self.samples_per_bucket)
            .field("max_sample_bytes", &self.max_sample_bytes)
            .field("sample_interval", &self.sample_interval)
            .field("sampler", &self.sampler.is_some())
            .field("export", &self.export.is_some())
            .field("service", &self.service)
            .finish()
    }
}

impl Default for TracePagesBuilder {
    fn default() -> Self {
        TracePagesBuilder {
            path: DEFAULT_PATH.to_owned(),
            token: None,
            read_token: None,
            window: DEFAULT_WINDOW,
            max_span_names: DEFAULT_MAX_SPAN_NAMES,
            samples_per_bucket: DEFAULT_SAMPLES_PER_BUCKET,
            max_sample_bytes: DEFAULT_MAX_SAMPLE_BYTES,
            sample_interval: DEFAULT_SAMPLE_INTERVAL,
            sampler: None,
            export: None,
            service: None,
            slot: None,
            max_value_len: None,
        }
    }
}

impl TracePagesBuilder {
    /// For the manager: its slot, sampler, export counters, service name and the bound on
    /// strings its export gate applies.
    pub(crate) fn for_manager(
        slot: Arc<Slot>,
        sampler: SamplerHandle,
        export: ExportSource,
        service: String,
        max_value_len: usize,
    ) -> Self {
        TracePagesBuilder {
            slot: Some(slot),
            sampler: Some(sampler),
            export: Some(export),
            service: Some(service),
            max_value_len: Some(max_value_len),
            ..Self::default()
        }
    }

    /// Where the pages are served (default [`DEFAULT_PATH`], `/debug/tracez`): an absolute
    /// path without a trailing `/` (`/` itself serves them at the root, for a listener of
    /// their own). Links between the pages use it, so merge the Router as it is.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The token that allows changing the sampler's rates ([`MIN_TOKEN_LEN`] to
    /// [`MAX_TOKEN_LEN`] visible ASCII characters, e.g. 32 random hex digits). Without it
    /// nothing can be changed. It also allows reading when a read token is set.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// A token that every page needs (default: none, the pages can be read by whoever
    /// reaches them; serve them on an admin listener, or set this).
    pub fn read_token(mut self, token: impl Into<String>) -> Self {
        self.read_token = Some(token.into());
        self
    }

    /// The sliding window of the summary's counts (default 10 min, `1 s..=24 h`); it moves a
    /// tenth at a time.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Most rows (span names; default 256, `1..=10000`); exchanges of further names count
    /// in one overflow row.
    pub fn max_span_names(mut self, n: usize) -> Self {
        self.max_span_names = n;
        self
    }

    /// Samples kept per latency bucket and per error class of a row (default 4, `1..=64`).
    pub fn samples_per_bucket(mut self, n: usize) -> Self {
        self.samples_per_bucket = n;
        self
    }

    /// Bound on the bytes (estimated) of all samples together (default 8 MiB,
    /// `64 KiB..=1 GiB`); a sample that does not fit is not kept (counted).
    pub fn max_sample_bytes(mut self, bytes: usize) -> Self {
        self.max_sample_bytes = bytes;
        self
    }

    /// The shortest time between two samples of one ring (default 100 ms, at most 1 h;
    /// zero: every recorded span is a candidate). A trace is captured from its start (its
    /// child spans copied as they end) at most once per span name per an eighth of it, so
    /// the copying never grows with the traffic.
    pub fn sample_interval(mut self, interval: Duration) -> Self {
        self.sample_interval = interval;
        self
    }

    /// The sampler whose configuration and counters the sampler page shows, and whose
    /// rates the form changes (the manager's pages know it).
    pub fn sampler(mut self, handle: SamplerHandle) -> Self {
        self.sampler = Some(handle);
        self
    }

    /// Where the export page's counts come from (the manager's pages know it).
    pub fn export_stats<F>(mut self, stats: F) -> Self
    where
        F: Fn() -> ExportStats + Send + Sync + 'static,
    {
        self.export = Some(ExportSource {
            stats: Arc::new(stats),
            queue_capacity: None,
        });
        self
    }

    /// The service name shown in the pages' header.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<TracePages, Error> {
        validate_path(&self.path)?;
        let tokens = Tokens {
            change: self
                .token
                .as_deref()
                .map(|t| auth::Token::new("pages.token", t))
                .transpose()?,
            read: self
                .read_token
                .as_deref()
                .map(|t| auth::Token::new("pages.read_token", t))
                .transpose()?,
        };
        let range = |field: &str, value: String, ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::config(field, value, format!("it must be {what}")))
            }
        };
        range(
            "pages.window",
            format!("{:?}", self.window),
            (Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&self.window),
            "between 1 s and 24 h",
        )?;
        range(
            "pages.max_span_names",
            self.max_span_names.to_string(),
            (1..=10_000).contains(&self.max_span_names),
            "1 to 10000",
        )?;
        range(
            "pages.samples_per_bucket",
            self.samples_per_bucket.to_string(),
            (1..=64).contains(&self.samples_per_bucket),
            "1 to 64",
        )?;
        range(
            "pages.max_sample_bytes",
            self.max_sample_bytes.to_string(),
            (64 << 10..=1 << 30).contains(&self.max_sample_bytes),
            "64 KiB to 1 GiB",
        )?;
        range(
            "pages.sample_interval",
            format!("{:?}", self.sample_interval),
            self.sample_interval <= Duration::from_secs(3600),
            "at most 1 h",
        )?;
        let limits = Limits {
            window: self.window,
            max_span_names: self.max_span_names,
            samples_per_bucket: self.samples_per_bucket,
            max_sample_bytes: self.max_sample_bytes,
            sample_interval: self.sample_interval,
            max_value_len: self.max_value_len,
        };
        Ok(TracePages {
            inner: Arc::new(Pages {
                slot: self.slot.unwrap_or_default(),
                own: Arc::new(Store::new(limits)),
                path: self.path,
                tokens,
                sampler: self.sampler,
                export: self.export,
                service: self.service,
            }),
        })
    }

    /// [`build`](Self::build), then [`TracePages::router`].
    pub fn router(self) -> Result<axum::Router, Error> {
        Ok(self.build()?.router())
    }
}

fn validate_path(path: &str) -> Result<(), Error> {
    let valid = path == "/"
        || (path.starts_with('/')
            && !path.ends_with('/')
            && !path.contains("//")
            && path.len() <= 256
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b)));
    if valid {
        Ok(())
    } else {
        Err(Error::config(
            "pages.path",
            path,
            "it must be `/` or an absolute path without a trailing `/`, of letters, digits and \
             `-._~` (no route parameters)",
        ))
    }
}

/// The trace pages: see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct TracePages {
    inner: Arc<Pages>,
}

impl std::fmt::Debug for TracePages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracePages")
            .field("path", &self.inner.path)
            .field("mounted", &self.inner.slot.store().is_some())
            .finish_non_exhaustive()
    }
}

/// The pages' own counts (see [`TracePages::stats`]): how full the store is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PagesStats {
    /// Rows (span names) held, at most `max_span_names`.
    pub span_names: usize,
    /// Exchanges counted in the overflow row (their name found no room).
    pub overflowed_exchanges: u64,
    /// Samples held.
    pub samples: usize,
    /// Their estimated bytes, at most `max_sample_bytes`.
    pub sample_bytes: usize,
    /// Samples taken since the pages were mounted.
    pub samples_taken: u64,
    /// Samples not kept because the byte bound was reached.
    pub samples_refused_bytes: u64,
    /// Traces being captured now, at most [`MAX_CAPTURES`].
    pub captures_in_flight: usize,
    /// Their estimated bytes, at most [`MAX_CAPTURE_BYTES`].
    pub capture_bytes: usize,
}

impl TracePages {
    /// A builder with the defaults, for a setup without the manager (with the manager, use
    /// [`TracingManager::pages`](crate::TracingManager::pages)).
    pub fn builder() -> TracePagesBuilder {
        TracePagesBuilder::default()
    }

    /// The pages as an axum Router, serving under [`path`](TracePagesBuilder::path). From
    /// this call on, the layers and the span processor that know these pages feed them.
    /// Merge it into your app (`app.merge(pages.router())`, before or after
    /// `.layer(TracingLayer)`: the layer skips the pages' requests), or serve it on a
    /// listener of its own.
    pub fn router(&self) -> axum::Router {
        let _ = self.inner.slot.0.set(Arc::clone(&self.inner.own));
        register_index(&self.inner.path);
        ANY_MOUNTED.store(true, Ordering::Relaxed);
        router::router(Arc::clone(&self.inner))
    }

    /// Where the pages are served.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// For a provider built by hand: the span processor that hands the spans which record to
    /// the pages (the manager's pipeline needs none). The SDK (0.33) copies every span for
    /// each processor beyond the first, so add it only where the pages are wanted.
    pub fn span_processor(&self) -> PagesSpanProcessor {
        PagesSpanProcessor {
            slot: Arc::clone(&self.inner.slot),
        }
    }

    /// How full the store is (zero until mounted).
    pub fn stats(&self) -> PagesStats {
        let Some(store) = self.inner.store() else {
            return PagesStats::default();
        };
        let s = store.stats();
        PagesStats {
            span_names: s.span_names,
            overflowed_exchanges: s.overflowed_exchanges,
            samples: s.samples,
            sample_bytes: s.sample_bytes,
            samples_taken: s.samples_taken,
            samples_refused_bytes: s.samples_refused_bytes,
            captures_in_flight: s.captures_in_flight,
            capture_bytes: s.capture_bytes,
        }
    }

    /// For `TracingLayer::pages`.
    pub(crate) fn slot(&self) -> Arc<Slot> {
        Arc::clone(&self.inner.slot)
    }
}

/// A [`SpanProcessor`] that hands spans which record to [`TracePages`] (see
/// [`TracePages::span_processor`]); does nothing until the pages are mounted.
#[derive(Debug)]
pub struct PagesSpanProcessor {
    slot: Arc<Slot>,
}

impl PagesSpanProcessor {
    /// For the manager without an export pipeline: the pages still get the spans.
    pub(crate) fn for_slot(slot: Arc<Slot>) -> Self {
        PagesSpanProcessor { slot }
    }
}

impl SpanProcessor for PagesSpanProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.slot.on_end(&span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
