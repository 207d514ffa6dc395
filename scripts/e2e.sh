#!/usr/bin/env bash
# End to end in a real browser: a 3-worker cluster behind nginx, headless Chromium driven over
# WebDriver (chromedriver). Builds state in every component, SIGKILLs the worker serving the
# page, checks the page comes back on another worker with everything intact; presses "kill this
# worker" (the workers run with DEMO_ALLOW_KILL=1) and checks the same again; reloads the tab;
# opens a second tab (fresh state). Screenshots go to a new temp dir (printed at the end).
#
#   scripts/e2e.sh          # exits non-zero on any failure
#
# Environment: PORT (nginx, default 3000), WORKER_BASE_PORT (default 3100),
# DRIVER_PORT (chromedriver, default 9615). Every wait is bounded; the browser part has 150 s.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-3000}
driver_port=${DRIVER_PORT:-9615}
work=$(mktemp -d /tmp/state-recovery-e2e.XXXXXX)
shots=$(mktemp -d /tmp/state-recovery-e2e-shots.XXXXXX)
pids=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for ((t = 0; t < 50; t++)); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [[ $rc != 0 ]]; then
    echo "--- cluster logs" >&2
    tail -n 5 "$work"/cluster/w*.log "$work"/cluster/nginx/logs/error.log 2>/dev/null >&2 || true
    tail -n 20 "$work/chromedriver.log" 2>/dev/null >&2 || true
  fi
  rm -rf "$work"
  echo "screenshots: $shots" >&2
  [[ $rc == 0 ]] && echo "e2e: PASS" >&2 || echo "e2e: FAIL ($rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v nginx >/dev/null || missing+=(nginx)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v node >/dev/null || { echo "node is required" >&2; exit 1; }

(cd "$root" && cargo build --quiet --example demo)

# The cluster (it cleans up after itself when killed).
mkdir -p "$work/cluster" "$work/profile"
CLUSTER_DIR="$work/cluster" PORT=$port DEMO_ALLOW_KILL=1 DEMO_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/examples/demo" \
  "$root/scripts/cluster.sh" 3 >"$work/cluster.log" 2>&1 &
pids+=($!)
for ((t = 0; t < 300; t++)); do
  [[ -f $work/cluster/ready ]] && break
  kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/cluster.log" >&2; exit 1; }
  sleep 0.1
done
[[ -f $work/cluster/ready ]] || { echo "cluster did not start" >&2; cat "$work/cluster.log" >&2; exit 1; }

chromedriver --port="$driver_port" --allowed-ips=127.0.0.1 --log-path="$work/chromedriver.log" >/dev/null 2>&1 &
pids+=($!)
for ((t = 0; t < 100; t++)); do
  curl -fsS -m 1 "http://127.0.0.1:$driver_port/status" >/dev/null 2>&1 && break
  sleep 0.1
done

DRIVER_URL="http://127.0.0.1:$driver_port" APP_URL="http://127.0.0.1:$port/" \
  CLUSTER_DIR="$work/cluster" SHOTS="$shots" PROFILE_DIR="$work/profile" \
  timeout 150 node "$root/scripts/e2e.mjs"
