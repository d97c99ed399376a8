//! The export filter: rules that drop finished spans before they are queued for export, by
//! name, kind, attribute and duration, without breaking the tree.
//!
//! # Only leaves are dropped
//!
//! A span that matches a rule is dropped only when it is a **leaf**: no recorded span of
//! this process started as its child before it ended, and it is not a client or producer
//! span (whose child may live in another service, which received its id in
//! `traceparent`). A matching span that has children is kept (counted as
//! `kept_with_children`). Children count from their start, not their end, so a child still
//! running when its parent ends (work the parent spawned and did not wait for) keeps the
//! parent too.
//!
//! Why leaves and not re-parenting: children end before their parents, so when a child is
//! queued its parent's fate is unknown (a duration rule needs the parent's end). Re-parenting
//! would mean holding every exported child back until its parent ends, that is buffering all
//! sampled traffic; leaves need only the set of span ids that have started children (one
//! entry per parent, removed when the parent ends). What users want filtered (short internal
//! spans, one noisy library's calls, health checks) is nearly always a leaf.
//!
//! The set is bounded ([`MAX_TRACKED_PARENTS`]): entries older than
//! [`TRACKED_PARENT_MAX_AGE`] are swept when it is full, and if it is still full, nothing is
//! treated as a leaf for that long (spans are kept, never orphaned).
//!
//! One case is not covered: a child that **starts after its parent ended**. It cannot be
//! known when the parent is decided, so the parent may have been dropped, and the child is
//! exported pointing to it. A `tracing` span never ends before its `tracing` children (the
//! registry keeps it open), so this takes an OpenTelemetry parent whose Context outlives
//! it: the server span or a client span, or a Context handed to a task that starts its span
//! later. With tracing-opentelemetry 0.34 a `tracing` span starts when it is first entered
//! (or its Context is read), so `tokio::spawn(work.instrument(span))` starts the span when
//! the task is first polled, which may be after the request's server span ended.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt as _};
use serde::{Deserialize, Serialize};

use crate::sampler::{AttributeMatch, RuleSpanKind};
use crate::{Error, ParseError};
use opentelemetry_sdk::trace::SpanData;

/// Most rules of an export filter.
pub const MAX_FILTER_RULES: usize = 64;
/// Most parents with started children tracked at once (see
/// [the export filter](crate::export#the-export-filter)).
pub const MAX_TRACKED_PARENTS: usize = 1 << 16;
/// How long a parent with started children is tracked at most.
pub const TRACKED_PARENT_MAX_AGE: Duration = Duration::from_secs(300);
/// `MESHTRACE_EXPORT_FILTER`: the export filter as JSON (`{"rules": [...]}` or the array of
/// rules alone).
pub const ENV_EXPORT_FILTER: &str = "MESHTRACE_EXPORT_FILTER";

/// Rules that drop finished spans before export (`[export_filter]` in a configuration
/// file, [`TracingManagerBuilder::export_filter`](crate::TracingManagerBuilder::export_filter),
/// or `MESHTRACE_EXPORT_FILTER`). A span is dropped when it matches any rule and is a leaf
/// (see [the export module](crate::export#the-export-filter)); counts per rule are in
/// [`ExportStats::filter`](super::ExportStats::filter).
///
/// ```
/// use std::time::Duration;
/// use meshtrace::export::{ExportFilterConfig, FilterRule};
/// use meshtrace::sampler::RuleSpanKind;
///
/// let filter = ExportFilterConfig::default()
///     .rule(FilterRule::new("short-internal")
///         .kind(RuleSpanKind::Internal)
///         .shorter_than(Duration::from_millis(1)))
///     .rule(FilterRule::new("cache").span_name("cache.*"))
///     .rule(FilterRule::new("health").attribute("http.route", "/health"));
/// filter.validate()?;
/// # Ok::<(), meshtrace::Error>(())
/// ```
///
/// The same in TOML:
///
/// ```toml
/// [[export_filter.rules]]
/// name = "short-internal"
/// kind = "internal"
/// shorter_than_ms = 1.0
///
/// [[export_filter.rules]]
/// name = "cache"
/// span_name = "cache.*"
///
/// [[export_filter.rules]]
/// name = "health"
/// attributes = { "http.route" = "/health" }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ExportFilterConfig {
    /// The rules; a span matching any of them is dropped (if it is a leaf).
    pub rules: Vec<FilterRule>,
}

/// One filter rule: every condition that is set must hold; a rule needs at least one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FilterRule {
    /// Name, used in the drop counts (1-64 of `A-Za-z0-9_.-`, unique).
    pub name: String,
    /// Glob over the span name (`*` matches any run of characters, `?` one; e.g.
    /// `cache.*`, `SELECT *`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_name: Option<String>,
    /// Span kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RuleSpanKind>,
    /// Attributes the span must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, AttributeMatch>,
    /// The span lasted less than this many milliseconds (e.g. `1.0`, `0.25`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shorter_than_ms: Option<f64>,
}

impl ExportFilterConfig {
    /// Appends a rule.
    #[must_use]
    pub fn rule(mut self, rule: FilterRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Checks every rule; the error names the field (`export_filter.rules[1].span_name`)
    /// and the value.
    pub fn validate(&self) -> Result<(), Error> {
        CompiledRules::new(self).map(|_| ())
    }

    /// Parses the JSON of `MESHTRACE_EXPORT_FILTER`: `{"rules": [...]}` or `[...]`.
    pub(crate) fn from_env_json(text: &str) -> Result<Self, Error> {
        let parsed = if text.trim_start().starts_with('[') {
            serde_json::from_str::<Vec<FilterRule>>(text).map(|rules| ExportFilterConfig { rules })
        } else {
            serde_json::from_str::<ExportFilterConfig>(text)
        };
        parsed.map_err(|e| {
            Error::config_caused_by(
                ENV_EXPORT_FILTER,
                crate::config::validate::truncate(text, 64),
                format!(
                    "it must be JSON: an array of rules or {{\"rules\": [...]}}, e.g. \
                     [{{\"name\":\"short\",\"kind\":\"internal\",\"shorter_than_ms\":1}}] ({})",
                    e.classify_message()
                ),
                ParseError::new(crate::config::file::redact(&e.to_string())),
            )
        })
    }
}

/// A short, value-free description of a JSON error (quoted input may be a secret).
trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    fn classify_message(&self) -> String {
        format!(
            "{:?} error at line {} column {}",
            self.classify(),
            self.line(),
            self.column()
        )
    }
}

impl FilterRule {
    /// A rule named `name` (add at least one condition).
    pub fn new(name: impl Into<String>) -> Self {
        FilterRule {
            name: name.into(),
            span_name: None,
            kind: None,
            attributes: BTreeMap::new(),
            shorter_than_ms: None,
        }
    }

    /// Requires the span name to match `glob`.
    #[must_use]
    pub fn span_name(mut self, glob: impl Into<String>) -> Self {
        self.span_name = Some(glob.into());
        self
    }

    /// Requires the span kind.
    #[must_use]
    pub fn kind(mut self, kind: RuleSpanKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Requires attribute `key` to equal `value`.
    #[must_use]
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<AttributeMatch>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Requires the span to be shorter than `duration`.
    #[must_use]
    pub fn shorter_than(mut self, duration: Duration) -> Self {
        self.shorter_than_ms = Some(duration.as_secs_f64() * 1000.0);
        self
    }
}

/// Spans dropped by one rule (see [`FilterStats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilterRuleStats {
    /// The rule's name.
    pub name: String,
    /// Spans it dropped.
    pub dropped: u64,
}

/// What the export filter did (see [`ExportStats::filter`](super::ExportStats::filter)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilterStats {
    /// Drops per rule, in rule order (a span is counted by the first rule it matches).
    pub rules: Vec<FilterRuleStats>,
    /// Spans that matched a rule but were kept because they have children.
    pub kept_with_children: u64,
}

#[derive(Debug)]
struct CompiledRule {
    name: String,
    span_name: Option<globset::GlobMatcher>,
    kind_bits: u8,
    attributes: Vec<(String, AttributeMatch)>,
    shorter_than: Option<Duration>,
}

#[derive(Debug)]
struct CompiledRules(Vec<CompiledRule>);

impl CompiledRules {
    fn new(config: &ExportFilterConfig) -> Result<Self, Error> {
        if config.rules.len() > MAX_FILTER_RULES {
            return Err(Error::config(
                "export_filter.rules",
                format_args!("<{} rules>", config.rules.len()),
                format!("at most {MAX_FILTER_RULES} rules are accepted"),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let field = |name: &str| format!("export_filter.rules[{i}].{name}");
            crate::sampler::validate_rule_name(&field("name"), &rule.name)?;
            if !names.insert(rule.name.as_str()) {
                return Err(Error::config(
                    field("name"),
                    &rule.name,
                    "another rule has this name; rule names must be unique",
                ));
            }
            if rule.span_name.is_none()
                && rule.kind.is_none()
                && rule.attributes.is_empty()
                && rule.shorter_than_ms.is_none()
            {
                return Err(Error::config(
                    field("name"),
                    &rule.name,
                    "the rule has no condition and would drop every leaf span; give it a \
                     span_name, kind, attributes or shorter_than_ms",
                ));
            }
            let span_name = match &rule.span_name {
                Some(glob) => Some(span_name_glob(&field("span_name"), glob)?),
                None => None,
            };
            for (key, value) in &rule.attributes {
                crate::sampler::validate_attribute(&field("attributes"), key, value)?;
            }
            let shorter_than = match rule.shorter_than_ms {
                Some(ms) if ms.is_finite() && ms > 0.0 && ms <= 3_600_000.0 => {
                    Some(Duration::from_secs_f64(ms / 1000.0))
                }
                Some(ms) => {
                    return Err(Error::config(
                        field("shorter_than_ms"),
                        ms,
                        "it must be a number of milliseconds above 0 and at most 3600000",
                    ));
                }
                None => None,
            };
            rules.push(CompiledRule {
                name: rule.name.clone(),
                span_name,
                kind_bits: rule.kind.map_or(u8::MAX, crate::sampler::rules_kind_bit),
                attributes: rule
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                shorter_than,
            });
        }
        Ok(CompiledRules(rules))
    }

    /// The index of the first rule `span` matches.
    fn first_match(&self, span: &SpanData) -> Option<usize> {
        let kind = crate::sampler::span_kind_bit(&span.span_kind);
        self.0.iter().position(|rule| {
            rule.kind_bits & kind != 0
                && rule
                    .span_name
                    .as_ref()
                    .is_none_or(|glob| glob.is_match(span.name.as_ref()))
                && rule.shorter_than.is_none_or(|max| {
                    span.end_time
                        .duration_since(span.start_time)
                        .unwrap_or_default()
                        < max
                })
                && rule.attributes.iter().all(|(key, expected)| {
                    span.attributes
                        .iter()
                        .any(|kv| kv.key.as_str() == key && expected.matches(&kv.value))
                })
        })
    }
}

fn span_name_glob(field: &str, glob: &str) -> Result<globset::GlobMatcher, Error> {
    if glob.is_empty() || glob.len() > 1024 {
        return Err(Error::config(
            field,
            crate::config::validate::truncate(glob, 64),
            "a span name glob must be 1 to 1024 bytes",
        ));
    }
    globset::GlobBuilder::new(glob)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| {
            Error::config(
                field,
                crate::config::validate::truncate(glob, 64),
                format!("invalid glob: {}", e.kind()),
            )
        })
}

/// The parents that have started children, in shards (see the [module docs](self)).
#[derive(Debug)]
struct Parents {
    shards: Box<[Mutex<HashMap<SpanId, Instant>>]>,
    mask: usize,
    len: std::sync::atomic::AtomicUsize,
    /// Until when nothing counts as a leaf (the set overflowed), as nanoseconds after
    /// `origin`; 0: never overflowed.
    unsure_until: AtomicU64,
    origin: Instant,
}

impl Parents {
    fn new() -> Self {
        let n = 16;
        Parents {
            shards: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
            mask: n - 1,
            len: std::sync::atomic::AtomicUsize::new(0),
            unsure_until: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn shard(&self, id: SpanId) -> std::sync::MutexGuard<'_, HashMap<SpanId, Instant>> {
        let i = (u64::from_be_bytes(id.to_bytes()) as usize) & self.mask;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note_child_of(&self, parent: SpanId) {
        let mut shard = self.shard(parent);
        if shard.contains_key(&parent) {
            return;
        }
        let now = Instant::now();
        if self.len.load(Ordering::Relaxed) >= MAX_TRACKED_PARENTS {
            let before = shard.len();
            shard.retain(|_, seen| now.saturating_duration_since(*seen) < TRACKED_PARENT_MAX_AGE);
            self.len.fetch_sub(before - shard.len(), Ordering::Relaxed);
            if self.len.load(Ordering::Relaxed) >= MAX_TRACKED_PARENTS {
                let until = now + TRACKED_PARENT_MAX_AGE - self.origin;
                self.unsure_until
                    .store(until.as_nanos() as u64, Ordering::Relaxed);
                return;
            }
        }
        shard.insert(parent, now);
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `id` had a child start, forgetting it.
    fn take(&self, id: SpanId) -> bool {
        let had = self.shard(id).remove(&id).is_some();
        if had {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        had
    }

    fn unsure(&self) -> bool {
        let until = self.unsure_until.load(Ordering::Relaxed);
        until != 0 && (self.origin.elapsed().as_nanos() as u64) < until
    }
}

/// The compiled filter, its counts and the leaf tracking.
#[derive(Debug)]
pub(crate) struct ExportFilter {
    rules: CompiledRules,
    dropped: Box<[AtomicU64]>,
    kept_with_children: AtomicU64,
    parents: Parents,
}

impl ExportFilter {
    pub(crate) fn new(config: &ExportFilterConfig) -> Result<Self, Error> {
        let rules = CompiledRules::new(config)?;
        let dropped = rules.0.iter().map(|_| AtomicU64::new(0)).collect();
        Ok(ExportFilter {
            rules,
            dropped,
            kept_with_children: AtomicU64::new(0),
            parents: Parents::new(),
        })
    }

    /// Whether the filter has rules (without rules nothing is tracked).
    pub(crate) fn is_active(&self) -> bool {
        !self.rules.0.is_empty()
    }

    /// Called for every recorded span when it starts, with its parent Context: notes its
    /// local parent as having a child. At the start, not the end: a child that is still
    /// running when its parent ends (work the parent did not wait for) must keep the
    /// parent too.
    pub(crate) fn on_start(&self, cx: &Context) {
        if !self.is_active() {
            return;
        }
        // The SDK (0.33, `SdkTracer::build_with_context`) takes the parent from this
        // Context the same way: its active span, if valid.
        let parent = cx.span();
        let parent = parent.span_context();
        if parent.is_valid() && !parent.is_remote() {
            self.parents.note_child_of(parent.span_id());
        }
    }

    /// Called for every recorded span when it ends (before it is queued or buffered): says
    /// whether it is a leaf (no child of it started before now).
    pub(crate) fn on_end(&self, span: &SpanData) -> bool {
        if !self.is_active() {
            return false;
        }
        let had_children = self.parents.take(span.span_context.span_id());
        !had_children
            && !matches!(span.span_kind, SpanKind::Client | SpanKind::Producer)
            && !self.parents.unsure()
    }

    /// Whether `span` (a leaf or not, as [`on_end`](Self::on_end) said) is dropped; counts.
    pub(crate) fn drops(&self, span: &SpanData, leaf: bool) -> bool {
        let Some(i) = self.rules.first_match(span) else {
            return false;
        };
        if leaf {
            self.dropped[i].fetch_add(1, Ordering::Relaxed);
        } else {
            self.kept_with_children.fetch_add(1, Ordering::Relaxed);
        }
        leaf
    }

    pub(crate) fn stats(&self) -> FilterStats {
        FilterStats {
            rules: self
                .rules
                .0
                .iter()
                .zip(self.dropped.iter())
                .map(|(rule, n)| FilterRuleStats {
                    name: rule.name.clone(),
                    dropped: n.load(Ordering::Relaxed),
                })
                .collect(),
            kept_with_children: self.kept_with_children.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_rules_name_the_field() {
        let cases: Vec<(ExportFilterConfig, &str)> = vec![
            (
                ExportFilterConfig::default().rule(FilterRule::new("empty")),
                "export_filter.rules[0].name = \"empty\" is invalid: the rule has no condition",
            ),
            (
                ExportFilterConfig::default()
                    .rule(FilterRule::new("bad name").kind(RuleSpanKind::Internal)),
                "export_filter.rules[0].name = \"bad name\" is invalid",
            ),
            (
                ExportFilterConfig::default()
                    .rule(FilterRule::new("a").kind(RuleSpanKind::Internal))
                    .rule(FilterRule::new("a").kind(RuleSpanKind::Server)),
                "export_filter.rules[1].name = \"a\" is invalid: another rule",
            ),
            (
                ExportFilterConfig::default().rule(FilterRule::new("g").span_name("a[")),
                "export_filter.rules[0].span_name = \"a[\" is invalid: invalid glob",
            ),
            (
                ExportFilterConfig::default().rule(FilterRule {
                    shorter_than_ms: Some(-1.0),
                    ..FilterRule::new("d")
                }),
                "export_filter.rules[0].shorter_than_ms = \"-1\" is invalid",
            ),
        ];
        for (config, expected) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.starts_with(expected), "{message}");
        }
    }

    #[test]
    fn env_json_accepts_an_array_or_an_object() {
        let a = ExportFilterConfig::from_env_json(
            r#"[{"name":"short","kind":"internal","shorter_than_ms":1}]"#,
        )
        .unwrap();
        let b = ExportFilterConfig::from_env_json(
            r#"{"rules":[{"name":"short","kind":"internal","shorter_than_ms":1}]}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rules[0].kind, Some(RuleSpanKind::Internal));
        let message = ExportFilterConfig::from_env_json(r#"[{"name":"x","secret":"hunter2"}]"#)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("MESHTRACE_EXPORT_FILTER = "),
            "{message}"
        );
    }
}
