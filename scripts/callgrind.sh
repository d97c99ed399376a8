#!/usr/bin/env bash
# Instructions per request of every server case, counted by valgrind's callgrind, stable on
# a noisy shared machine (not run in CI).
#
# For each case of benches/common (the same Router, requests and exporter as
# benches/server.rs), the `instructions` bench binary serves N requests under
# `valgrind --tool=callgrind` (all threads, the batch processor's included), for
# N = SMALL and N = LARGE. Instructions per request are
#
#   ((Ir(LARGE) - Ir(SMALL)) - (Ir_build(LARGE) - Ir_build(SMALL))) / (LARGE - SMALL)
#
# where Ir_build is a run that only builds (and drops) the same requests: set-up, warm-up
# and request construction cancel out. Prints ONE markdown table (case, instructions per
# request, ratio to the bare Router with the same headers, spans exported per request),
# then the targets of issue 10 (met / not met), then where the instructions of the
# recommended setup's sampled, unsampled and root requests go (inclusive cost per request
# of the functions below the layer, from `callgrind_annotate --inclusive=yes`, also a
# difference of the two runs).
#
#   scripts/callgrind.sh                       # every case, SMALL=20000 LARGE=40000
#   scripts/callgrind.sh 'bare|otel_tower'     # cases whose name matches the regex
#   SMALL=2000 LARGE=4000 JOBS=2 scripts/callgrind.sh
#
# Release build with line tables (CARGO_PROFILE_BENCH_DEBUG), default features. Raw
# callgrind files and annotations stay in OUT (default: a fresh temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL="${SMALL:-20000}"
LARGE="${LARGE:-40000}"
JOBS="${JOBS:-1}"
FILTER="${1:-}"
OUT="${OUT:-$(mktemp -d -t meshtrace-callgrind.XXXXXX)}"
mkdir -p "$OUT"
BREAKDOWN="${BREAKDOWN:-meshtrace/text/sampled meshtrace/text/unsampled meshtrace/text/root_100pct meshtrace/text/root_1pct meshtrace/text/unsampled/no_baggage meshtrace/text/sampled/log_line meshtrace/json/sampled/log_line otel_tower/sampled bare/axum_layer}"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
export CARGO_PROFILE_BENCH_DEBUG="${CARGO_PROFILE_BENCH_DEBUG:-line-tables-only}"

bin=$(cargo bench --no-run --bench instructions --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "instructions":
        print(m["executable"])')
[ -x "$bin" ] || { echo "could not build the instructions bench" >&2; exit 1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $(valgrind --version)" >&2
echo "runs: $SMALL and $LARGE requests per case; output in $OUT" >&2

python3 - "$bin" "$OUT" "$SMALL" "$LARGE" "$JOBS" "$FILTER" "$BREAKDOWN" <<'PY'
import concurrent.futures as cf
import os, re, subprocess, sys

bin_, out, small, large, jobs, flt, breakdown = sys.argv[1:]
small, large, jobs = int(small), int(large), int(jobs)
breakdown = breakdown.split()
listing = subprocess.run([bin_, "list"], check=True, capture_output=True, text=True).stdout
cases = [tuple(l.split("\t")) for l in listing.splitlines() if l]
# The baselines and the cases the targets compare against are always measured.
needed = {"bare", "bare/unsampled", "bare/root", "otel_tower/sampled", "otel_axum/root",
          "extract/sdk/unsampled", "extract/sdk/root"}
if flt:
    cases = [c for c in cases if re.search(flt, c[0]) or c[0] in needed]
labels = sorted({label for _, label in cases})

def safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)

def callgrind(tag, argv):
    path = os.path.join(out, f"{safe(tag)}.out")
    run = subprocess.run(
        # --fair-sched: without it the batch processor's thread is starved under valgrind,
        # its queue fills and spans are dropped instead of exported.
        ["valgrind", "--tool=callgrind", "--fair-sched=yes", f"--callgrind-out-file={path}",
         bin_, *argv],
        capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{tag}: valgrind failed\n{run.stderr[-3000:]}")
    total = None
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    exported = re.search(r"exported=(\d+)", run.stdout)
    dropped = re.search(r"dropped=(\d+)", run.stdout)
    return path, total, exported and int(exported.group(1)), dropped and int(dropped.group(1))

jobs_list = []
for label in labels:
    for n in (small, large):
        jobs_list.append((f"requests/{label}/{n}", ["requests", label, str(n)]))
for name, _ in cases:
    for n in (small, large):
        jobs_list.append((f"{name}/{n}", ["case", name, str(n)]))

results = {}
with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
    futures = {pool.submit(callgrind, tag, argv): tag for tag, argv in jobs_list}
    for done, future in enumerate(cf.as_completed(futures), 1):
        tag = futures[future]
        results[tag] = future.result()
        print(f"[{done}/{len(jobs_list)}] {tag}: {results[tag][1]} Ir", file=sys.stderr)

span = large - small
build = {l: (results[f"requests/{l}/{large}"][1] - results[f"requests/{l}/{small}"][1]) / span
         for l in labels}
per = {}
exported = {}
for name, label in cases:
    a, b = results[f"{name}/{small}"], results[f"{name}/{large}"]
    per[name] = (b[1] - a[1]) / span - build[label]
    if a[2] is not None:
        # Spans exported per request, and dropped (queue full) if the manager counted.
        exported[name] = ((b[2] - a[2]) / span, None if b[3] is None else b[3] - a[3])
label_of = dict(cases)

def baseline(name):
    label = label_of[name]
    if label.endswith("+baggage"):
        return "bare"
    return "bare/root" if label == "root" else "bare/unsampled"

def k(x):
    return f"{x / 1000:.1f}k"

print(f"Instructions per request (callgrind, ({large // 1000}k-request run - {small // 1000}k-request run) / {span // 1000}k, request construction subtracted)\n")
print("| case | headers | instructions / request | vs bare | over bare | spans exported / request |")
print("|---|---|---:|---:|---:|---:|")
for name, label in cases:
    base = baseline(name)
    ratio = f"{per[name] / per[base]:.2f}x" if not name.startswith("extract/") else "-"
    over = k(per[name] - per[base]) if not name.startswith("extract/") else "-"
    spans = "-"
    if name in exported:
        e, d = exported[name]
        spans = f"{e:.3f}" + (f" ({results[f'{name}/{large}'][3]} dropped in the {large // 1000}k run)"
                                if results[f"{name}/{large}"][3] else "")
    print(f"| {name} | {label} | {k(per[name])} | {ratio} | {over} | {spans} |")
print(f"\n(`vs bare`: against the bare Router with the same headers: `bare` for requests with baggage,"
      " `bare/unsampled` for a traceparent without baggage, `bare/root` for no header.)\n")

def verdict(ok):
    return "met" if ok else "not met"

rows = []
tower, axum_root = per["otel_tower/sampled"], per["otel_axum/root"]
for fmt in ("text", "json"):
    pre = f"meshtrace/{fmt}/"
    def have(*names):
        return all(pre + n in per for n in names)
    if have("sampled"):
        v = per[pre + "sampled"]
        rows.append((f"{fmt}: sampled <= otel_tower sampled ({k(tower)})", f"{k(v)} = {v / tower:.2f}x", verdict(v <= tower)))
        rows.append((f"{fmt}: sampled <= 0.8x otel_tower sampled (stretch, {k(0.8 * tower)})", f"{v / tower:.2f}x", verdict(v <= 0.8 * tower)))
    if have("root_100pct"):
        v = per[pre + "root_100pct"]
        rows.append((f"{fmt}: root at 1.0 <= 0.8x OtelAxumLayer root ({k(0.8 * axum_root)})", f"{k(v)} = {v / axum_root:.2f}x", verdict(v <= 0.8 * axum_root)))
    for case, extract in (("unsampled", "extract/sdk/unsampled"), ("root_1pct", "extract/sdk/root")):
        if have(case):
            over = per[pre + case] - per["bare"]
            budget = per[extract] + 2000
            rows.append((f"{fmt}: {case}, baggage: over bare <= SDK extract ({k(per[extract])}) + 2k = {k(budget)}", f"{k(over)} over bare", verdict(over <= budget)))
    for case, base in (("unsampled/no_baggage", "bare/unsampled"), ("root_1pct/no_baggage", "bare/root")):
        if have(case):
            v, b = per[pre + case], per[base]
            rows.append((f"{fmt}: {case} <= 1.5x bare ({k(1.5 * b)})", f"{k(v)} = {v / b:.2f}x", verdict(v <= 1.5 * b)))
if rows:
    print("Targets (issue 10), meshtrace as the README recommends:\n")
    print("| target | measured | |")
    print("|---|---:|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    print()

# Where the instructions go: inclusive cost per request of each function, as the
# difference of the two runs, for the functions below the layer.
def inclusive(path):
    """Inclusive Ir per function. callgrind_annotate also lists the parts of a function
    whose debug lines point into inlined code of other files (no `[object]` suffix); the
    entry with the object suffix is the function's whole inclusive cost."""
    run = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                          "--auto=no", path], capture_output=True, text=True)
    costs = {}
    for line in run.stdout.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+[^:]*:(.*) \[[^\]]*\]$", line)
        if m:
            fn = m.group(2)
            costs[fn] = max(costs.get(fn, 0), int(m.group(1).replace(",", "")))
    return costs

# Components of the layer's cost: (label, regex on the function name). The value is the
# largest inclusive cost per request among the matching functions; nested rows are
# indented (they are part of the row above them), and release inlining folds small
# functions into their callers.
COMPONENTS = [
    ("TracingService::call (the layer's call; includes the inner Router call)", r"^<meshtrace::server::service::TracingService<S> as tower_service::Service"),
    ("  W3C extract + request Context (context::extract_request)", r"^meshtrace::context::extract_request$"),
    ("    baggage header -> Baggage (context::baggage::parse_baggage)", r"^meshtrace::context::baggage::parse_baggage$"),
    ("      opentelemetry Baggage::insert_with_metadata", r"^opentelemetry::baggage::Baggage::insert_with_metadata$"),
    ("    traceparent (TraceParent::parse)", r"^meshtrace::context::traceparent::TraceParent::parse$"),
    ("    Context::with_value (each value copies the map)", r"^opentelemetry::context::Context::with_value$"),
    ("  correlation id (CorrelationId::from_headers)", r"^meshtrace::context::correlation::CorrelationId::from_headers$"),
    ("    new UUID (CorrelationId::generate)", r"^meshtrace::context::correlation::CorrelationId::generate$"),
    ("  span name + start attributes (RequestFacts::builder)", r"^meshtrace::server::span::RequestFacts::builder$"),
    ("  span start (http::tracer::SpanSource::start)", r"^meshtrace::http::tracer::SpanSource::start$"),
    ("    SDK SdkTracer::build_with_context", r"^<opentelemetry_sdk::trace::tracer::SdkTracer as opentelemetry::trace::tracer::Tracer>::build_with_context$"),
    ("      sampler (CustomSampler::should_sample)", r"^<meshtrace::sampler::CustomSampler as opentelemetry_sdk::trace::sampler::ShouldSample>::should_sample$"),
    ("      SDK build_recording_span", r"^opentelemetry_sdk::trace::tracer::SdkTracer::build_recording_span$"),
    ("    late attributes + Context::with_span (http::tracer::finish)", r"^meshtrace::http::tracer::finish$"),
    ("      RequestFacts::late (url.path, correlation.id, ...)", r"^meshtrace::server::span::RequestFacts::late$"),
    ("      Span::set_attributes", r"^opentelemetry::trace::span::Span::set_attributes$"),
    ("  request extensions (Extensions::insert, all callers)", r"^http::extensions::Extensions::insert$"),
    ("  Context::attach (all polls)", r"^opentelemetry::context::Context::attach$"),
    ("  ContextGuard drop (detach, all polls)", r"^<opentelemetry::context::ContextGuard as core::ops::drop::Drop>::drop$"),
    ("response: record status (OpenSpan::record_status)", r"^meshtrace::http::outcome::OpenSpan::record_status$"),
    ("span end and metric (drop OpenSpan: end, processor, metric)", r"^core::ptr::drop_in_place<meshtrace::http::outcome::OpenSpan>$"),
    ("  metric: attribute set + histogram record (ExchangeMetric::record)", r"^meshtrace::metrics::http::ExchangeMetric::record$"),
    ("    SDK histogram measure (ValueMap::measure)", r"^opentelemetry_sdk::metrics::internal::ValueMap<A>::measure$"),
    ("  SDK Span::ensure_ended_and_exported", r"^opentelemetry_sdk::trace::span::Span::ensure_ended_and_exported$"),
    ("    ExportGate::on_end", r"^<meshtrace::export::gate::ExportGate as opentelemetry_sdk::trace::span_processor::SpanProcessor>::on_end$"),
    ("    BatchSpanProcessor::on_end (channel send)", r"^<opentelemetry_sdk::trace::span_processor::BatchSpanProcessor as opentelemetry_sdk::trace::span_processor::SpanProcessor>::on_end$"),
    ("batch processor thread (get_spans_and_export)", r"^opentelemetry_sdk::trace::span_processor::BatchSpanProcessor::get_spans_and_export$"),
    ("  drop SpanData (after export)", r"^core::ptr::drop_in_place<opentelemetry_sdk::trace::export::SpanData>$"),
    ("drop the request Context's baggage (BaggageContextValue)", r"^core::ptr::drop_in_place<opentelemetry::baggage::BaggageContextValue>$"),
    ("response body (MapErr<TracedBody>::poll_frame; at its end: the span end below)", r"^<http_body_util::combinators::map_err::MapErr<B,F> as http_body::Body>::poll_frame$"),
    ("log layer: LogLayer::on_event (one line)", r"LogLayer.*on_event"),
    ("  tracing event dispatch (Event::dispatch)", r"^tracing_core::event::Event::dispatch$"),
    ("opentelemetry-instrumentation-tower: call", r"^<opentelemetry_instrumentation_tower::http::server::Service"),
    ("  SDK histogram and counter measures (ValueMap::measure, all callers)", r"^opentelemetry_sdk::metrics::internal::ValueMap<A>::measure$"),
    ("  SDK propagator extract (TextMapCompositePropagator::extract_with_context)", r"TextMapCompositePropagator as opentelemetry::propagation::text_map_propagator::TextMapPropagator>::extract_with_context$"),
    ("  SDK build_with_context (BoxedTracer)", r"^<opentelemetry::global::trace::BoxedTracer as opentelemetry::trace::tracer::Tracer>::build_with_context$"),
]

# The frames every request runs under (the program, the runtime, the test loop).
OUTER = (r"^(main|\(below main\)|0x[0-9a-f]+|__libc_start_main.*|std::rt::.*|std::sys::.*|"
         r"instructions::.*|tracing_core::dispatcher::with_default|tokio::runtime::.*|"
         r"std::thread::local::LocalKey<T>::with|<tower::util::oneshot::Oneshot<S,Req> as .*|"
         r"core::ops::function::FnOnce::call_once.*|start_thread|clone3?|std::thread::.*)$")

def per_request(name):
    a = inclusive(results[f"{name}/{small}"][0])
    b = inclusive(results[f"{name}/{large}"][0])
    return {fn: (b.get(fn, 0) - a.get(fn, 0)) / span for fn in b}

bare_fns = {}
for name in breakdown:
    if name not in per:
        continue
    diff = per_request(name)
    base = baseline(name)
    if base not in bare_fns:
        bare_fns[base] = per_request(base)
    bare = bare_fns[base]
    path = os.path.join(out, f"breakdown-{safe(name)}.txt")
    with open(path, "w") as f:
        f.write("inclusive/request  minus-bare  function\n")
        for fn, v in sorted(diff.items(), key=lambda kv: -kv[1]):
            if v >= 20:
                f.write(f"{v:10.0f}  {v - bare.get(fn, 0):10.0f}  {fn}\n")
    print(f"### Where the instructions go: {name}\n")
    print(f"{k(per[name])} per request, {k(per[name] - per[base])} over `{base}` ({k(per[base])}). "
          f"Inclusive instructions per request of the functions below the layer "
          f"(callgrind_annotate --inclusive=yes, the difference of the two runs):\n")
    print("| component | instructions / request | in bare |")
    print("|---|---:|---:|")
    for label, rx in COMPONENTS:
        hits = [v for fn, v in diff.items() if re.search(rx, fn)]
        if hits and max(hits) >= 20:
            fn_bare = max([v for fn, v in bare.items() if re.search(rx, fn)] or [0])
            print(f"| {label.replace('  ', '&nbsp;&nbsp;')} | {max(hits):.0f} | {fn_bare:.0f} |")
    print(f"\nFunctions that cost the most more than in `{base}` (inclusive per request minus bare's; "
          f"all in {path}):\n")
    print("| over bare | inclusive | function |")
    print("|---:|---:|---|")
    deltas = sorted(((v - bare.get(fn, 0), v, fn) for fn, v in diff.items()
                     if not re.search(OUTER, fn)), reverse=True)
    for d, v, fn in deltas[:40]:
        if d < 150:
            break
        print(f"| {d:.0f} | {v:.0f} | `{fn[:140]}` |")
    print()
PY
