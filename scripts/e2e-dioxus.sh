#!/usr/bin/env bash
# The Dioxus LiveView adapter end to end in a real browser: three workers of its todo example
# (integrations/dioxus-liveview/examples/todo.rs, RESPAWN=1) behind nginx with a short
# proxy_read_timeout, headless Chromium over WebDriver (chromedriver). Builds state in every
# component (counter, todo list, the new todo's text, a draft), then: SIGKILLs the worker
# serving the page, presses "kill this worker" (DEMO_ALLOW_KILL=1), lets nginx drop the idle
# socket, SIGTERMs the serving worker (drain), reloads the tab, opens a second tab; after each
# the page must be back with every component intact. Screenshots go to a new temp dir.
#
#   scripts/e2e-dioxus.sh     # exits non-zero on any failure; prints the figures
#
# Environment: PORT (nginx, default 3200), WORKER_BASE_PORT (default 3200: workers on
# 3201..3203), DRIVER_PORT (chromedriver, default 9616), IDLE (nginx's proxy_read_timeout in
# seconds, default 3), KILLS (SIGKILLs of the serving worker, default 5; the figures give their
# median and maximum). Every wait is bounded; the browser part has 120 s.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-3200}
base=${WORKER_BASE_PORT:-3200}
driver_port=${DRIVER_PORT:-9616}
idle=${IDLE:-3}
[[ $idle =~ ^[1-9][0-9]?$ ]] || { echo "IDLE must be 1..99 seconds" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-$root/target}

# shellcheck source=ports.sh
source "$root/scripts/ports.sh"
if in_use "$driver_port"; then
  echo "e2e-dioxus: port $driver_port (chromedriver) is in use; choose another DRIVER_PORT" >&2
  exit 2
fi

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v nginx >/dev/null || missing+=(nginx)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  echo "e2e-dioxus: installing ${missing[*]}..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v node >/dev/null || { echo "node is required" >&2; exit 1; }

echo "e2e-dioxus: building the todo example..." >&2
(cd "$root" && cargo build --quiet -p state-recovery-dioxus --example todo)

work=$(mktemp -d /tmp/state-recovery-e2e-dioxus.XXXXXX)
shots=$(mktemp -d /tmp/state-recovery-e2e-dioxus-shots.XXXXXX)
run_name=e2e-dioxus
chromedriver_pid=
# shellcheck source=cluster-run.sh
source "$root/scripts/cluster-run.sh"
stop_all() {
  local rc=$?
  [[ -n $chromedriver_pid ]] && kill "$chromedriver_pid" 2>/dev/null
  echo "screenshots: $shots" >&2
  (exit "$rc")
  cleanup
}
trap stop_all EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/cluster" "$work/profile"
RESPAWN=1 CLUSTER_DIR="$work/cluster" PORT="$port" WORKER_BASE_PORT="$base" DEMO_ALLOW_KILL=1 \
  NGINX_READ_TIMEOUT="${idle}s" DEMO_BIN="$target/debug/examples/todo" \
  "$root/scripts/cluster.sh" 3 >"$work/cluster.log" 2>&1 &
cluster_pid=$!
for ((t = 0; t < 600; t++)); do
  [[ -f $work/cluster/ready ]] && break
  kill -0 "$cluster_pid" 2>/dev/null || { cat "$work/cluster.log" >&2; exit 1; }
  sleep 0.1
done
[[ -f $work/cluster/ready ]] || { echo "e2e-dioxus: the cluster did not start" >&2; exit 1; }

chromedriver --port="$driver_port" --allowed-ips=127.0.0.1 --log-path="$work/chromedriver.log" >/dev/null 2>&1 &
chromedriver_pid=$!
for ((t = 0; t < 100; t++)); do
  curl -fsS -m 1 "http://127.0.0.1:$driver_port/status" >/dev/null 2>&1 && break
  sleep 0.1
done

DRIVER_URL="http://127.0.0.1:$driver_port" APP_URL="http://127.0.0.1:$port/" \
  CLUSTER_DIR="$work/cluster" SHOTS="$shots" PROFILE_DIR="$work/profile" IDLE_MS=$((idle * 1000)) WORKER_BASE_PORT="$base" \
  KILLS="${KILLS:-5}" timeout 120 node "$root/scripts/e2e-dioxus.mjs" &
driver_pid=$!
wait "$driver_pid"
driver_pid=
