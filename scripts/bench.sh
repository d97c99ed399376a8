#!/usr/bin/env bash
# Runs meshtrace's benches (the server setups side by side, a unary gRPC call, W3C
# propagation, the sampler's decisions) and prints ONE table: case, median, ratio to its
# baseline (server cases: the bare Router with the same headers; gRPC: the bare tonic
# service; propagation: the SDK composite; sampler: the SDK's TraceIdRatioBased). Extra arguments go to criterion, e.g. a filter: `scripts/bench.sh server`.
#
#   WARMUP=1 MEASURE=3 scripts/bench.sh
#
# Results of this run only are read (CRITERION_HOME is a fresh directory), so stale
# results of other runs never leak into the table. Same build settings as
# scripts/callgrind.sh (default features, release with line tables), so the two share
# their build.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${CRITERION_HOME:-$(mktemp -d -t meshtrace-bench.XXXXXX)}"
export CRITERION_HOME="$out"
export CARGO_PROFILE_BENCH_DEBUG="${CARGO_PROFILE_BENCH_DEBUG:-line-tables-only}"
benches=(--bench server --bench grpc --bench propagation --bench sampler)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" >&2
echo "criterion output: $out" >&2
cargo bench "${benches[@]}" -- \
  --warm-up-time "${WARMUP:-1}" --measurement-time "${MEASURE:-3}" "$@" \
  2>&1 | tee "$out/bench.log" | grep -E '^spans:|^error|panicked' >&2 || true

python3 - "$out" <<'PY'
import json, os, re, sys

root = sys.argv[1]
rows = {}
for dirpath, _, files in os.walk(root):
    if "estimates.json" in files and os.path.basename(dirpath) == "new":
        # The id as written in the bench ("server/meshtrace/text/sampled"); the directory
        # name has its slashes replaced.
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            case = json.load(f)["full_id"]
        with open(os.path.join(dirpath, "estimates.json")) as f:
            rows[case] = json.load(f)["median"]["point_estimate"]

# Table order: the order the benches ran in.
order = {}
with open(os.path.join(root, "bench.log")) as f:
    for line in f:
        m = re.match(r"Benchmarking (\S+)", line)
        if m and m.group(1).rstrip(":") not in order:
            order[m.group(1).rstrip(":")] = len(order)

def baseline(case):
    if case.startswith("server/extract/"):
        return None
    if case.startswith("server/"):
        if case.endswith("/no_baggage"):
            return "server/bare/root" if "/root" in case else "server/bare/unsampled"
        if case in ("server/bare/unsampled", "server/bare/root"):
            return case
        return "server/bare"
    if case.startswith("grpc/"):
        return "grpc/bare"
    if case.startswith("propagation/extract/"):
        return "propagation/extract/sdk"
    if case.startswith("propagation/inject/"):
        return "propagation/inject/sdk"
    # benches/sampler.rs: the SDK's ratio sampler.
    for cand in sorted(rows):
        if "trace_id_ratio" in cand:
            return cand
    return None

def fmt(ns):
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.1f} ns"

print("| case | median | ratio | baseline |")
print("|---|---:|---:|---|")
for case in sorted(rows, key=lambda c: (order.get(c, len(order)), c)):
    base = baseline(case)
    ratio = f"{rows[case] / rows[base]:.2f}x" if base in rows else "-"
    print(f"| {case} | {fmt(rows[case])} | {ratio} | {base or '-'} |")
PY
