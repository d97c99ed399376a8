//! The pages as HTML: plain markup, one stylesheet served by the pages themselves
//! (`style.css`), no script. Every value that did not come from this file is escaped
//! ([`esc`]); bars are SVG rectangles, so the Content-Security-Policy needs no inline style.

use std::fmt::Write as _;

use super::store::BUCKETS;
use super::view::{self, BUCKET_LABELS, Export, Sampler, Samples, SpanView, Summary, Trace};

/// The stylesheet.
pub(crate) const STYLE: &str = include_str!("style.css");

/// The icon: three bars of a trace.
pub(crate) const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#1d232a\"/>\
<rect x=\"2\" y=\"3\" width=\"12\" height=\"2.5\" fill=\"#6ea8fe\"/>\
<rect x=\"4\" y=\"7\" width=\"7\" height=\"2.5\" fill=\"#6ea8fe\"/>\
<rect x=\"6\" y=\"11\" width=\"3\" height=\"2.5\" fill=\"#b3261e\"/></svg>";

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, for element content and quoted attribute
/// values alike.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A component of a URL query (`name=...`), percent-encoded.
pub(crate) fn query_value(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A duration in seconds, short and readable: `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
pub(crate) fn duration(seconds: f64) -> String {
    let (value, unit) = if seconds < 1e-6 {
        (seconds * 1e9, "ns")
    } else if seconds < 1e-3 {
        (seconds * 1e6, "µs")
    } else if seconds < 1.0 {
        (seconds * 1e3, "ms")
    } else {
        (seconds, "s")
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// A size: `512 B`, `5.5 KiB`, `8 MiB`.
fn bytes(n: usize) -> String {
    let n = n as f64;
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    }
}

/// A period: `10 min`, `1 h`, or a [`duration`].
fn period(seconds: f64) -> String {
    let whole = seconds.fract() == 0.0;
    if whole && seconds >= 3600.0 && seconds % 3600.0 == 0.0 {
        format!("{} h", seconds / 3600.0)
    } else if whole && seconds >= 60.0 && seconds % 60.0 == 0.0 {
        format!("{} min", seconds / 60.0)
    } else {
        duration(seconds)
    }
}

/// Links between the pages, from the path they are served at.
pub(crate) struct Links<'a> {
    pub(crate) base: &'a str,
}

impl Links<'_> {
    /// The path of sub-page `sub` (`""`: the summary).
    pub(crate) fn to(&self, sub: &str) -> String {
        match (self.base, sub) {
            (base, "") => base.to_owned(),
            ("/", sub) => format!("/{sub}"),
            (base, sub) => format!("{base}/{sub}"),
        }
    }
}

/// Which page is open, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Summary,
    Sampler,
    Export,
}

fn page(
    links: &Links<'_>,
    service: Option<&str>,
    tab: Option<Tab>,
    title: &str,
    json: &str,
    body: &str,
) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · meshtrace</title><link rel=\"stylesheet\" href=\"{}\">\
         <link rel=\"icon\" href=\"{}\"></head><body>\
         <header><a class=\"brand\" href=\"{}\">meshtrace</a>",
        esc(title),
        esc(&links.to("style.css")),
        // Served by the pages: a browser asks the site's root for `/favicon.ico` otherwise,
        // a request the app would trace.
        esc(&links.to("favicon.svg")),
        esc(&links.to("")),
    );
    if let Some(service) = service {
        let _ = write!(out, "<span class=\"service\">{}</span>", esc(service));
    }
    out.push_str("<nav>");
    for (t, label, sub) in [
        (Tab::Summary, "Trace summary", ""),
        (Tab::Sampler, "Sampler", "sampler"),
        (Tab::Export, "Export", "export"),
    ] {
        let class = if tab == Some(t) { " class=\"on\"" } else { "" };
        let _ = write!(
            out,
            "<a{class} href=\"{}\">{label}</a>",
            esc(&links.to(sub))
        );
    }
    let _ = write!(
        out,
        "<a class=\"json\" href=\"{}\">JSON</a></nav></header><main>",
        esc(&links.to(json))
    );
    out.push_str(body);
    out.push_str(
        "</main><footer>In-process trace pages of meshtrace. They never appear in the \
         traces or metrics they show.</footer></body></html>\n",
    );
    out
}

/// The heat level (0..=5) of `count` in a table whose largest count is `max`.
fn heat(count: u64, max: u64) -> u8 {
    if count == 0 || max == 0 {
        return 0;
    }
    let level = 1.0 + 4.0 * ((count as f64).ln_1p() / (max as f64).ln_1p());
    (level.floor() as u8).clamp(1, 5)
}

pub(crate) fn summary(links: &Links<'_>, summary: &Summary) -> String {
    let mut b = String::new();
    let window = period(summary.window_seconds);
    let _ = write!(
        b,
        "<h1>Trace summary</h1><p class=\"note\">Server spans by name, sampled or not: running \
         now; completed in the last {window} by latency (the heat) and failed (red); totals \
         since the pages were mounted. The counts and durations are those of \
         <code>http.server.request.duration</code>. A count links to sample spans when some \
         are kept.</p>"
    );
    if summary.rows.is_empty() {
        b.push_str("<p class=\"empty\">No request yet.</p>");
        return page(
            links,
            summary.service.as_deref(),
            Some(Tab::Summary),
            "Trace summary",
            "api/summary",
            &b,
        );
    }
    let max = summary
        .rows
        .iter()
        .flat_map(|r| r.window.buckets)
        .max()
        .unwrap_or(0);
    b.push_str(
        "<table class=\"summary\"><thead><tr><th rowspan=\"2\">Span name</th>\
         <th rowspan=\"2\">Running</th>",
    );
    let _ = write!(
        b,
        "<th colspan=\"{BUCKETS}\">Latency, last {window}</th><th rowspan=\"2\">Errors, last \
         {window}</th><th colspan=\"2\">Since start</th></tr><tr>"
    );
    for label in BUCKET_LABELS {
        let _ = write!(b, "<th class=\"bucket\">{}</th>", esc(label));
    }
    b.push_str("<th>Count</th><th>Errors</th></tr></thead><tbody>");
    for row in &summary.rows {
        let name_q = query_value(&row.name);
        let class = if row.overflow {
            " class=\"overflow\""
        } else {
            ""
        };
        let _ = write!(
            b,
            "<tr{class}><th scope=\"row\" class=\"name\">{}</th><td class=\"num\">{}</td>",
            esc(&row.name),
            row.running
        );
        for (i, count) in row.window.buckets.iter().enumerate() {
            let level = heat(*count, max);
            let samples = row.samples.latency[i];
            let _ = write!(b, "<td class=\"num h{level}\">");
            if samples > 0 {
                let href = links.to(&format!("samples?name={name_q}&bucket={i}"));
                let _ = write!(
                    b,
                    "<a href=\"{}\" title=\"{samples} sample(s)\">{count}</a>",
                    esc(&href)
                );
            } else {
                let _ = write!(b, "{count}");
            }
            b.push_str("</td>");
        }
        let err = if row.window.errors > 0 { " err" } else { "" };
        let _ = write!(b, "<td class=\"num{err}\">{}", row.window.errors);
        if !row.samples.errors.is_empty() {
            b.push_str("<div class=\"classes\">");
            for (class, n) in &row.samples.errors {
                let href = links.to(&format!(
                    "samples?name={name_q}&error={}",
                    query_value(class)
                ));
                let _ = write!(
                    b,
                    "<a href=\"{}\" title=\"{n} sample(s)\">{}</a> ",
                    esc(&href),
                    esc(class)
                );
            }
            b.push_str("</div>");
        }
        b.push_str("</td>");
        let err = if row.total.errors > 0 { " err" } else { "" };
        let _ = write!(
            b,
            "<td class=\"num\">{}</td><td class=\"num{err}\">{}</td></tr>",
            row.total.count, row.total.errors
        );
    }
    b.push_str("</tbody></table>");
    store_section(&mut b, &summary.store);
    page(
        links,
        summary.service.as_deref(),
        Some(Tab::Summary),
        "Trace summary",
        "api/summary",
        &b,
    )
}

fn store_section(b: &mut String, s: &view::StoreView) {
    let interval = if s.sample_interval_seconds == 0.0 {
        "any number per interval".to_owned()
    } else {
        format!("at most one every {}", duration(s.sample_interval_seconds))
    };
    let _ = write!(
        b,
        "<p class=\"note\">Store: {} of at most {} span names{}; {} samples \
         ({} of at most {}; {} per bucket, {interval}); {} traces being \
         captured.</p>",
        s.span_names,
        s.max_span_names,
        if s.overflowed_exchanges > 0 {
            format!(
                " ({} requests of further names counted as one row)",
                s.overflowed_exchanges
            )
        } else {
            String::new()
        },
        s.samples,
        bytes(s.sample_bytes),
        bytes(s.max_sample_bytes),
        s.samples_per_bucket,
        s.captures_in_flight,
    );
}

fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn attributes_table(
    b: &mut String,
    attributes: &std::collections::BTreeMap<String, serde_json::Value>,
) {
    if attributes.is_empty() {
        return;
    }
    b.push_str("<table class=\"attrs\">");
    for (key, value) in attributes {
        let _ = write!(
            b,
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(key),
            esc(&value_text(value))
        );
    }
    b.push_str("</table>");
}

fn span_details(b: &mut String, span: &SpanView) {
    let status_class = if span.status == "error" { "err" } else { "" };
    let parent = match (&span.parent_span_id, span.parent_is_remote) {
        (None, _) => "none (a new trace)".to_owned(),
        (Some(id), true) => format!("{id} (remote)"),
        (Some(id), false) => id.clone(),
    };
    let _ = write!(
        b,
        "<dl><dt>Kind</dt><dd>{}</dd><dt>Span id</dt><dd><code>{}</code></dd><dt>Parent</dt>\
         <dd><code>{}</code></dd><dt>Start</dt><dd>{}</dd><dt>Duration</dt><dd>{}</dd>\
         <dt>Status</dt><dd class=\"{status_class}\">{}{}</dd><dt>Export</dt><dd>{}</dd></dl>",
        esc(span.kind),
        esc(&span.span_id),
        esc(&parent),
        esc(&span.start),
        duration(span.duration_seconds),
        esc(span.status),
        if span.status_description.is_empty() {
            String::new()
        } else {
            format!(": {}", esc(&span.status_description))
        },
        if span.sampled {
            "sampled"
        } else {
            "recorded for deferred capture (exported only if its trace is kept)"
        },
    );
    attributes_table(b, &span.attributes);
    if span.dropped_attributes > 0 {
        let _ = write!(
            b,
            "<p class=\"note\">{} attributes dropped.</p>",
            span.dropped_attributes
        );
    }
    if !span.events.is_empty() {
        b.push_str("<table class=\"events\"><tr><th>At</th><th>Event</th><th>Attributes</th></tr>");
        for event in &span.events {
            let _ = write!(
                b,
                "<tr><td class=\"num\">+{}</td><td>{}</td><td>",
                duration(event.offset_seconds),
                esc(&event.name)
            );
            attributes_table(b, &event.attributes);
            b.push_str("</td></tr>");
        }
        b.push_str("</table>");
    }
    if span.dropped_events > 0 {
        let _ = write!(
            b,
            "<p class=\"note\">{} events dropped.</p>",
            span.dropped_events
        );
    }
}

pub(crate) fn samples(
    links: &Links<'_>,
    service: Option<&str>,
    samples: &Samples,
    json: &str,
) -> String {
    let mut b = String::new();
    let which = match (&samples.bucket_label, &samples.error) {
        (Some(label), _) => format!("latency {label}"),
        (None, Some(class)) => format!("error.type {class}"),
        (None, None) => String::new(),
    };
    let _ = write!(
        b,
        "<h1>{} <span class=\"sub\">{}</span></h1>",
        esc(&samples.name),
        esc(&which)
    );
    if samples.samples.is_empty() {
        b.push_str("<p class=\"empty\">No sample kept for this bucket.</p>");
    }
    for sample in &samples.samples {
        let span = &sample.span;
        let tree = links.to(&format!("trace/{}", span.trace_id));
        let _ = write!(
            b,
            "<section class=\"sample\"><h2><a href=\"{}\">trace {}</a> <span class=\"sub\">{} \
             · {} local span{} kept</span></h2>",
            esc(&tree),
            esc(&span.trace_id),
            duration(span.duration_seconds),
            sample.children + 1,
            if sample.children == 0 { "" } else { "s" },
        );
        if !sample.captured {
            b.push_str(
                "<p class=\"note\">Only this span is known: its trace was not captured from \
                 its start (one trace per name per interval is).</p>",
            );
        }
        span_details(&mut b, span);
        b.push_str("</section>");
    }
    let title = format!("{} {which}", samples.name);
    page(links, service, Some(Tab::Summary), &title, json, &b)
}

pub(crate) fn trace(links: &Links<'_>, service: Option<&str>, trace: &Trace, json: &str) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Trace <code>{}</code></h1><p class=\"note\">{} local spans from {}, over {}.{}</p>",
        esc(&trace.trace_id),
        trace.spans.len(),
        esc(&trace.start),
        duration(trace.duration_seconds),
        if trace.complete {
            ""
        } else {
            " Only part of the trace was captured."
        }
    );
    b.push_str(
        "<table class=\"tree\"><thead><tr><th>Span</th><th>Duration</th>\
         <th class=\"timeline\">Timeline</th></tr></thead><tbody>",
    );
    let total = trace.duration_seconds.max(1e-9);
    for node in &trace.spans {
        let span = &node.span;
        let x = (node.offset_seconds / total * 1000.0).clamp(0.0, 1000.0);
        let width = (span.duration_seconds / total * 1000.0).clamp(2.0, 1000.0 - x.min(998.0));
        let class = if span.status == "error" { "err" } else { "ok" };
        let _ = write!(
            b,
            "<tr class=\"span\"><td class=\"name d{}\"><details><summary>{} \
             <span class=\"kind\">{}</span></summary>",
            node.depth.min(15),
            esc(&span.name),
            esc(span.kind)
        );
        span_details(&mut b, span);
        let _ = write!(
            b,
            "</details></td><td class=\"num\">{}</td><td class=\"timeline\">\
             <svg class=\"bar\" viewBox=\"0 0 1000 12\" preserveAspectRatio=\"none\" \
             role=\"img\" aria-label=\"{}\"><rect class=\"{class}\" x=\"{x:.1}\" y=\"1\" \
             width=\"{width:.1}\" height=\"10\"/></svg></td></tr>",
            duration(span.duration_seconds),
            esc(&format!("starts at +{}", duration(node.offset_seconds))),
        );
    }
    b.push_str("</tbody></table>");
    page(
        links,
        service,
        Some(Tab::Summary),
        &format!("Trace {}", trace.trace_id),
        json,
        &b,
    )
}

/// The outcome of a change, shown above the sampler page.
pub(crate) enum Notice<'a> {
    None,
    Done(&'a str),
    Refused(&'a str),
}

fn rate_input(b: &mut String, name: &str, value: f64, enabled: bool) {
    if enabled {
        let _ = write!(
            b,
            "<input type=\"number\" name=\"{}\" value=\"{value}\" min=\"0\" max=\"1\" \
             step=\"any\" aria-label=\"{}\">",
            esc(name),
            esc(name)
        );
    } else {
        let _ = write!(b, "{value}");
    }
}

pub(crate) fn sampler(
    links: &Links<'_>,
    service: Option<&str>,
    s: &Sampler,
    notice: Notice<'_>,
) -> String {
    let mut b = String::from("<h1>Sampler</h1>");
    match notice {
        Notice::None => {}
        Notice::Done(text) => {
            let _ = write!(b, "<p class=\"notice ok\">{}</p>", esc(text));
        }
        Notice::Refused(text) => {
            let _ = write!(b, "<p class=\"notice err\">{}</p>", esc(text));
        }
    }
    if !s.available {
        b.push_str(
            "<p class=\"empty\">These pages know no sampler (hand-built: \
                    <code>TracePagesBuilder::sampler</code>).</p>",
        );
        return page(
            links,
            service,
            Some(Tab::Sampler),
            "Sampler",
            "api/sampler",
            &b,
        );
    }
    let enabled = s.changes.enabled;
    let _ = write!(
        b,
        "<form method=\"post\" action=\"{}\"><h2>Rates in force</h2>",
        esc(&links.to("sampler"))
    );
    b.push_str("<table class=\"kv\"><tr><th>Base rate</th><td>");
    rate_input(&mut b, "base_rate", s.base_rate.unwrap_or(0.0), enabled);
    b.push_str("</td></tr><tr><th>High-value rate</th><td>");
    rate_input(
        &mut b,
        "high_value_rate",
        s.high_value_rate.unwrap_or(0.0),
        enabled,
    );
    b.push_str("</td></tr></table>");
    if !s.rules.is_empty() {
        b.push_str(
            "<h3>Rules</h3><table class=\"list\"><tr><th>Name</th><th>Route</th><th>Method</th>\
             <th>Kind</th><th>Attributes</th><th>Priority</th><th>Rate</th></tr>",
        );
        for rule in &s.rules {
            let _ = write!(
                b,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td>",
                esc(&rule.name),
                esc(rule.route.as_deref().unwrap_or("*")),
                esc(rule.method.as_deref().unwrap_or("*")),
                esc(rule.kind.as_deref().unwrap_or("*")),
                esc(&rule.attributes),
                rule.priority
            );
            rate_input(&mut b, &format!("rule.{}", rule.name), rule.rate, enabled);
            b.push_str("</td></tr>");
        }
        b.push_str("</table>");
    }
    if enabled {
        b.push_str(
            "<p class=\"change\"><label>Token <input type=\"password\" name=\"token\" \
             autocomplete=\"off\" required></label> <button type=\"submit\">Apply</button></p>\
             <p class=\"note\">Changing rates needs the pages' token (compared in constant \
             time, never shown). The new rates go through the same validation and atomic \
             swap as <code>SamplerHandle::reload</code>: all apply, or none.</p>",
        );
    } else {
        let _ = write!(
            b,
            "<p class=\"note\">Changing rates is {}.</p>",
            esc(s.changes.how)
        );
    }
    b.push_str("</form>");
    if !s.high_value.is_empty() {
        b.push_str("<h3>High-value operations</h3><table class=\"list\"><tr><th>Route</th><th>Method</th></tr>");
        for op in &s.high_value {
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                esc(&op.route),
                esc(op.method.as_deref().unwrap_or("*"))
            );
        }
        b.push_str("</table>");
    }
    if let Some(d) = &s.decisions {
        b.push_str("<h2>Decisions</h2><table class=\"kv\">");
        for (label, n) in [
            ("sampled (probability or sampled parent)", d.sampled),
            ("dropped (probability or unsampled parent)", d.dropped),
            ("rate limited", d.rate_limited),
            ("kept by a key's lower bound", d.lower_bound),
            ("kept by a debug token", d.debug),
            ("of the dropped: recorded for deferred capture", d.deferred),
            ("all decisions", d.total),
        ] {
            let _ = write!(b, "<tr><th>{label}</th><td class=\"num\">{n}</td></tr>");
        }
        if let Some(p) = d.global_probability {
            let _ = write!(
                b,
                "<tr><th>global limit's probability</th><td class=\"num\">{p:.4}</td></tr>"
            );
        }
        if let Some(r) = d.global_rate {
            let _ = write!(
                b,
                "<tr><th>global rate seen (per second)</th><td class=\"num\">{r:.2}</td></tr>"
            );
        }
        b.push_str("</table>");
    }
    if !s.kept_by_reason.is_empty() {
        b.push_str(
            "<h3>Kept root spans by <code>sampling.reason</code> (while the pages are \
             mounted)</h3><table class=\"kv\">",
        );
        count_rows(&mut b, &s.kept_by_reason);
        b.push_str("</table>");
    }
    if !s.keys.is_empty() {
        b.push_str(
            "<h3>Rate-limit keys</h3><table class=\"list\"><tr><th>Key</th><th>Arrivals</th>\
             <th>Sampled</th><th>Dropped</th><th>Rate limited</th><th>Lower bound</th>\
             <th>Probability</th><th>Rate/s</th></tr>",
        );
        for k in &s.keys {
            let _ = write!(
                b,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{:.4}</td><td class=\"num\">{:.2}</td></tr>",
                esc(&k.key),
                k.arrivals,
                k.sampled,
                k.dropped,
                k.rate_limited,
                k.lower_bound,
                k.probability,
                k.arrival_rate
            );
        }
        b.push_str("</table>");
    }
    if let Some(strategy) = &s.strategy {
        let _ = write!(
            b,
            "<h3>Central strategy in force</h3><pre>{}</pre>",
            esc(strategy)
        );
    }
    let config = serde_json::to_string_pretty(&s.config).unwrap_or_default();
    let _ = write!(
        b,
        "<h2>Configuration in force</h2><p class=\"note\">Debug tokens and the HMAC secret are \
         redacted.</p><pre>{}</pre>",
        esc(&config)
    );
    page(
        links,
        service,
        Some(Tab::Sampler),
        "Sampler",
        "api/sampler",
        &b,
    )
}

pub(crate) fn export(links: &Links<'_>, service: Option<&str>, e: &Export) -> String {
    let mut b = String::from("<h1>Export</h1>");
    if !e.available {
        b.push_str(
            "<p class=\"empty\">These pages know no export pipeline (hand-built: \
             <code>TracePagesBuilder::export_stats</code>).</p>",
        );
    } else {
        b.push_str("<table class=\"kv\">");
        let queued = match (e.queued, e.queue_capacity) {
            (Some(q), Some(c)) => format!("{q} of {c}"),
            (Some(q), None) => q.to_string(),
            _ => "-".into(),
        };
        let _ = write!(
            b,
            "<tr><th>queued now</th><td class=\"num\">{queued}</td></tr>"
        );
        for (label, n, bad) in [
            ("exported", e.exported, false),
            ("dropped: queue full", e.dropped_queue_full, true),
            ("dropped: export failed", e.dropped_export_failed, true),
        ] {
            let n = n.unwrap_or(0);
            let class = if bad && n > 0 { " err" } else { "" };
            let _ = write!(
                b,
                "<tr><th>{label}</th><td class=\"num{class}\">{n}</td></tr>"
            );
        }
        match &e.last_error {
            Some(error) => {
                let _ = write!(
                    b,
                    "<tr><th>last error</th><td class=\"err\">{}</td></tr>",
                    esc(error)
                );
            }
            None => b.push_str("<tr><th>last error</th><td>none</td></tr>"),
        }
        b.push_str("</table>");
        if e.deferred.values().any(|n| *n > 0) {
            b.push_str("<h2>Deferred capture</h2><table class=\"kv\">");
            count_rows(&mut b, &e.deferred);
            b.push_str("</table>");
        }
        if !e.filter.is_empty() {
            b.push_str("<h2>Export filter</h2><table class=\"kv\">");
            count_rows(&mut b, e.filter.iter().map(|(name, n)| (name, n)));
            let _ = write!(
                b,
                "<tr><th>kept (they have children)</th><td class=\"num\">{}</td></tr></table>",
                e.filter_kept_with_children
            );
        }
    }
    store_section(&mut b, &e.store);
    page(
        links,
        service,
        Some(Tab::Export),
        "Export",
        "api/export",
        &b,
    )
}

/// A page that says what went wrong (404, 401, ...).
pub(crate) fn message(links: &Links<'_>, title: &str, text: &str) -> String {
    let body = format!("<h1>{}</h1><p>{}</p>", esc(title), esc(text));
    page(links, None, None, title, "api/summary", &body)
}

/// One `<tr>` per (name, count): the name escaped, the count right-aligned.
fn count_rows<'a>(b: &mut String, rows: impl IntoIterator<Item = (impl AsRef<str>, &'a u64)>) {
    for (name, n) in rows {
        let _ = write!(
            b,
            "<tr><th>{}</th><td class=\"num\">{n}</td></tr>",
            esc(name.as_ref())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_reads() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert_eq!(esc("GET /users/{id} é"), "GET /users/{id} é");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(0.0), "0.00 ns");
        assert_eq!(duration(8.5e-7), "850 ns");
        assert_eq!(duration(1.234e-5), "12.3 µs");
        assert_eq!(duration(0.004_56), "4.56 ms");
        assert_eq!(duration(1.2), "1.20 s");
        assert_eq!(duration(600.0), "600 s");
    }

    #[test]
    fn links_from_the_root_are_not_protocol_relative() {
        assert_eq!(Links { base: "/" }.to("sampler"), "/sampler");
        assert_eq!(Links { base: "/" }.to(""), "/");
        assert_eq!(
            Links {
                base: "/debug/tracez"
            }
            .to("sampler"),
            "/debug/tracez/sampler"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(5619), "5.5 KiB");
        assert_eq!(bytes(8 << 20), "8.0 MiB");
    }

    #[test]
    fn heat_levels() {
        assert_eq!(heat(0, 100), 0);
        assert_eq!(heat(1, 1), 5);
        assert_eq!(heat(100, 100), 5);
        assert!(heat(1, 100) < heat(50, 100));
    }
}
