#!/usr/bin/env bash
# Bounded loopback load test of the axum layer (issue 5). Every run stops by itself.
#
#   scripts/bench-load.sh [SECONDS_PER_RUN] [ROUNDS]      (defaults: 5 and 3)
#
# The server is pinned to core 1 and the generator to core 0 with `taskset -c`; both run at
# `nice -n -10` when allowed so a neighbour's compile disturbs them less. Only 127.0.0.1.
# Throughput: closed loop, 32 keep-alive connections, apps alternated round by round (bare,
# layer, extract-only, extract), median of the rounds. Latency: open loop at a fixed rate, the `extract` app,
# no bundle vs a 20-entry bundle in the State-Recovery header vs in the JSON body.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-5}
ROUNDS=${2:-3}
RATE=${RATE:-2000}
PORT=${PORT:-3901}
OUT=${OUT:-target/bench-load}
PHASES=${PHASES:-"throughput latency"} # either or both
mkdir -p "$OUT"

cargo build --release -p state-recovery-bench --example loadgen
BIN=target/release/examples/loadgen
NICE="nice -n -10"
$NICE true 2>/dev/null || NICE=""

run() { # app, then client args...
  local app=$1; shift
  taskset -c 1 $NICE "$BIN" server --app "$app" --port "$PORT" --seconds $((SECS + 2)) &
  local spid=$!
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  taskset -c 0 $NICE "$BIN" client --port "$PORT" --seconds "$SECS" "$@" | sed "s/^/app=$app /"
  wait "$spid" # it stops by itself and prints its CPU time per request
}

: >"$OUT/throughput.txt"
[[ $PHASES == *throughput* ]] && for round in $(seq "$ROUNDS"); do
  for app in bare layer extract-only extract; do
    run "$app" --connections 32 | tee -a "$OUT/throughput.txt"
  done
done

: >"$OUT/latency.txt"
[[ $PHASES == *latency* ]] && for round in $(seq "$ROUNDS"); do
  run bare --connections 16 --rate "$RATE" | tee -a "$OUT/latency.txt"
  for bundle in none header body; do
    run extract --connections 16 --rate "$RATE" --bundle "$bundle" --entries 20 |
      tee -a "$OUT/latency.txt"
  done
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { grep -o "$1=[^ ]*" | cut -d= -f2; }

if [[ $PHASES == *throughput* ]]; then
echo
echo "== throughput (closed loop, 32 connections, ${SECS} s × ${ROUNDS} rounds; median rps)"
BARE=$(grep "^app=bare " "$OUT/throughput.txt" | field rps | median)
BARE_CPU=$(grep "^server app=bare " "$OUT/throughput.txt" | field cpu_us_per_req | median)
for app in bare layer extract-only extract; do
  RPS=$(grep "^app=$app " "$OUT/throughput.txt" | field rps | median)
  CPU=$(grep "^server app=$app " "$OUT/throughput.txt" | field cpu_us_per_req | median)
  awk -v a="$app" -v r="$RPS" -v b="$BARE" -v c="$CPU" -v bc="$BARE_CPU" 'BEGIN {
    printf "%-12s %8.0f rps  %.3f of bare | server CPU %.2f us/request  %.3f of bare\n", a, r, r / b, c, c / bc }'
done

fi

if [[ $PHASES == *latency* ]]; then
echo
echo "== latency (open loop, ${RATE} req/s, ${SECS} s × ${ROUNDS} rounds; medians of the runs)"
for sel in "app=bare bundle=none" "app=extract bundle=none" "app=extract bundle=header" "app=extract bundle=body"; do
  LINES=$(grep "^$sel " "$OUT/latency.txt")
  printf "%-28s p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  errors %s\n" "$sel" \
    "$(field p50_ms <<<"$LINES" | median)" "$(field p99_ms <<<"$LINES" | median)" \
    "$(field p999_ms <<<"$LINES" | median)" "$(field errors <<<"$LINES" | paste -sd+ | bc)"
done
fi
