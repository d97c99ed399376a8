#!/usr/bin/env bash
# End-to-end load test over real sockets on 127.0.0.1 only (not run in CI).
#
# Builds examples/load_server.rs, then for each handler (trivial; 50 µs of CPU work) and
# each configuration (bare; opentelemetry-instrumentation-tower, OtelAxumLayer and
# meshtrace as the README recommends, each sampling 100% and 1% of root requests) starts
# the server, drives it with wrk (Debian package `wrk`) for DURATION seconds, stops it,
# and prints one table: throughput, its ratio to bare with the same handler, p50/p99
# latency, spans exported. Every request carries the same baggage header and no
# traceparent (roots: the sampling rate decides).
#
#   DURATION=10 CONNECTIONS=32 scripts/load.sh
#   MODES="bare meshtrace" HANDLERS=trivial scripts/load.sh
#   ROUNDS=3 scripts/load.sh      # every configuration ROUNDS times, interleaved; medians
#
# With ROUNDS > 1 the configurations run round-robin (bare, peers, meshtrace, then again),
# so a slow drift of the shared machine touches each of them alike, and the table shows
# the median of the rounds (latencies: the median of the per-round percentiles).
#
# Every server and every wrk run is bounded in time (the server stops by itself
# DURATION+5 s after it starts).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
MODES="${MODES:-bare otel_tower otel_axum meshtrace}"
HANDLERS="${HANDLERS:-trivial work}"
ROUNDS="${ROUNDS:-1}"
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }

cargo build --release --example load_server >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/load_server"

run() { # mode rate handler
  local mode=$1 rate=$2 handler=$3
  local out log port pid
  log=$(mktemp)
  "$bin" "$mode" "$rate" $((DURATION + 5)) "$handler" >"$log" &
  pid=$!
  for _ in $(seq 200); do grep -q 'listening on' "$log" && break; sleep 0.05; done
  port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
  out=$(timeout $((DURATION + 10)) wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
    -H 'baggage: userId=alice,tenant=acme' "http://127.0.0.1:$port/users/42")
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local rps p50 p99 spans
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  spans=$(sed -n 's/.*: \([0-9]*\) spans exported.*/\1/p' "$log")
  rm -f "$log"
  echo "$handler $mode $rate $rps $p50 $p99 ${spans:--}"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" >&2
echo "wrk: 1 thread, $CONNECTIONS connections, ${DURATION}s per configuration; server: 1 worker thread" >&2
runs=()
for round in $(seq "$ROUNDS"); do
  for handler in $HANDLERS; do
    for mode in $MODES; do
      if [ "$mode" = bare ]; then rates=1.0; else rates="1.0 0.01"; fi
      for rate in $rates; do
        line=$(run "$mode" "$rate" "$handler")
        echo "round $round: $line" >&2
        runs+=("$line")
      done
    done
  done
done

# One line per configuration: the median of its rounds (wrk prints latencies with units;
# they are compared in microseconds).
mapfile -t results < <(printf '%s\n' "${runs[@]}" | python3 -c '
import sys, statistics
def us(v):
    for unit, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(unit) and v[:-len(unit)].replace(".", "").isdigit():
            return float(v[:-len(unit)]) * f
    return float("nan")
def fmt(u):
    return f"{u / 1e3:.2f}ms" if u >= 1e3 else f"{u:.2f}us"
order, by = [], {}
for line in sys.stdin:
    h, m, r, rps, p50, p99, spans = line.split()
    key = (h, m, r)
    if key not in by:
        order.append(key)
        by[key] = []
    by[key].append((float(rps), us(p50), us(p99), spans))
for key in order:
    rows = by[key]
    rps = statistics.median(x[0] for x in rows)
    p50 = statistics.median(x[1] for x in rows)
    p99 = statistics.median(x[2] for x in rows)
    print(*key, f"{rps:.2f}", fmt(p50), fmt(p99), rows[len(rows) // 2][3])
')

echo "| handler | configuration | sampling | requests/s | vs bare | p50 | p99 | spans exported |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for r in "${results[@]}"; do
  read -r handler mode rate rps p50 p99 spans <<<"$r"
  bare_rps=$(printf '%s\n' "${results[@]}" | awk -v h="$handler" '$1==h && $2=="bare" {print $4}')
  ratio=$(awk -v a="$rps" -v b="$bare_rps" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else print "-" }')
  if [ "$mode" = bare ]; then sampling=-; else sampling=$(awk -v r="$rate" 'BEGIN { printf "%g%%", 100 * r }'); fi
  echo "| $handler | $mode | $sampling | $rps | $ratio | $p50 | $p99 | $spans |"
done
