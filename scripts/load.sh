#!/usr/bin/env bash
# End-to-end load test over real sockets on 127.0.0.1 (not run in CI).
#
# Builds examples/load_server.rs, then for each configuration starts it, drives it with
# wrk (Debian package `wrk`) for DURATION seconds, stops it, and prints one table:
# throughput, its ratio to the bare service, and p50/p99 latency.
#
#   DURATION=10 CONNECTIONS=32 scripts/load.sh
#
# Configurations: the bare Router; TracingLayer sampling every root (100%); sampling 1%
# of roots; and requests whose caller did not sample them (`traceparent ...-00`), which
# the layer drops before building a span. Every request carries the same baggage header.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }

cargo build --release --all-features --example load_server >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/load_server"
unsampled='traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00'

run() { # name mode rate [extra header]
  local name=$1 mode=$2 rate=$3 header=${4:-}
  local out log port
  log=$(mktemp)
  "$bin" "$mode" "$rate" $((DURATION + 5)) >"$log" &
  local pid=$!
  for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.05; done
  port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
  local args=(-t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H 'baggage: userId=alice,tenant=acme')
  if [ -n "$header" ]; then args+=(-H "$header"); fi
  out=$(wrk "${args[@]}" "http://127.0.0.1:$port/users/42")
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$name $rps $p50 $p99 $(grep -o '[0-9]* spans exported' "$log" || echo '-')"
  rm -f "$log"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" >&2
echo "wrk: 1 thread, $CONNECTIONS connections, ${DURATION}s per configuration; server: 1 worker thread" >&2
results=(
  "$(run bare bare 1.0)"
  "$(run layer_sample_100% layer 1.0)"
  "$(run layer_sample_1% layer 0.01)"
  "$(run layer_unsampled_parent layer 1.0 "$unsampled")"
)
bare_rps=$(awk '{print $2}' <<<"${results[0]}")
echo "| configuration | requests/s | vs bare | p50 | p99 | spans exported |"
echo "|---|---:|---:|---:|---:|---:|"
for r in "${results[@]}"; do
  read -r name rps p50 p99 spans <<<"$r"
  ratio=$(awk -v a="$rps" -v b="$bare_rps" 'BEGIN { printf "%.1f%%", 100 * a / b }')
  echo "| $name | $rps | $ratio | $p50 | $p99 | ${spans% spans exported} |"
done
