#!/usr/bin/env bash
# Reconnect storms: N simulated tabs (tools/storm: the real protocol, the JS client's stash
# and reconnect schedule) through a 3-worker nginx cluster (scripts/cluster.sh, RESPAWN=1)
# sized for N; then the worker holding the most tabs is SIGKILLed (kill storm), the
# supervisor restarts it, and the busiest worker is SIGTERMed (drain storm: close 1012).
# Per affected tab: the time from the signal to every component restored and checked; for
# the other tabs, event → render round trips before and during the storm; the survivors',
# nginx's and the tool's own CPU share and RSS; worker RSS per idle connection.
#
#   scripts/storm.sh 500              # what .ci/run runs
#   scripts/storm.sh 2000
#   ROUNDS=20 BEFORE=0.5 scripts/storm.sh 1   # one tab: kill and drain medians over 20 rounds
#
# Prints a summary; writes target/storm/storm-n<N>-<debug|release>.json (scripts/storm-cdf.py
# draws the CDFs from those files). Exits 1 if any state was lost, a tab did not come back
# within WAIT (30 s), an event in flight was lost or one was applied twice; 2 on a setup error
# (ports in use, too few file descriptors, ...).
#
# In-flight events: the tabs deliver their events exactly once, as the JS client does (the
# demo announces `applied`): each is numbered ("$seq") and kept until its batch comes back,
# and the ones a dead worker never answered are resent after the next `recovered`. An event
# unacknowledged when its socket closed is "in flight"; it counts as lost only if no batch
# answers it within 10 s of the storm's last restore, and a second batch with effects for one
# `$seq` counts as applied twice. Either fails the run.
#
# Environment: RELEASE=1 (release-built demo workers; default debug: say which with figures),
# DEMO_BIN (a demo binary to run instead of building one; results go to storm-n<N>-custom.json),
# STORM_FIRST_JITTER_MS (an experiment: the tabs' first-retry window instead of RECONNECT's),
# PORT (nginx, default 3700), WORKER_BASE_PORT (default 3700: workers on 3701..3703), RATE
# (events per second per tab, default 0.5), RAMP (connections per second, default 1000),
# BEFORE (seconds measured before each storm, default 3), WAIT (seconds an affected tab has
# to come back, default 30), ROUNDS (kill + drain pairs, default 1), STORMS (default
# kill,drain), THREADS (the tool's runtime threads, default 1: current-thread), KEEP=1 (keep
# the cluster's logs). More arguments after N go to the tool as they are.
#
# Sizing (N tabs): nginx's worker_connections = 3N + 1024: each proxied WebSocket holds a
# client and an upstream connection, and during a storm the reconnecting tabs' new pairs
# overlap the old ones (with 2N + 512, N=5,000 ran out: "worker_connections are not enough,
# reusing connections", and handshakes were reset). worker_rlimit_nofile = 3N + 2048, and this
# shell's `ulimit -n` (inherited by nginx, the workers and the tool) is raised to it; it must
# fit under the hard limit (`ulimit -Hn`), or the script stops with a clear error. nginx's
# listen backlog = min(N, net.core.somaxconn), at least nginx's default 511: a drain storm
# reconnects N/3 tabs within 50 ms (NGINX_BACKLOG overrides it). The workers' own backlog
# (the demo's DEMO_BACKLOG, default 4096; tokio's 1024 overflowed in 5,000-tab drains) is
# max(N, 4096), at most 65535 (DEMO_BACKLOG overrides it); the kernel caps both at somaxconn.
# Loopback only; every wait is bounded and the tool stops itself (--max-secs); everything it
# started is stopped on any exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-}
if [[ ! $n =~ ^[1-9][0-9]*$ ]] || ((n > 9000)); then
  echo "usage: $0 N [tool arguments...]  (N tabs, 1..9000)" >&2
  exit 2
fi
shift
port=${PORT:-3700}
base=${WORKER_BASE_PORT:-3700}
workers=3
profile=debug
[[ ${RELEASE:-0} == 1 ]] && profile=release
rounds=${ROUNDS:-1}
target=${CARGO_TARGET_DIR:-$root/target}
out_dir=$target/storm

# Our ports must be free: this script never talks to a cluster it did not start.
# shellcheck source=ports.sh
source "$root/scripts/ports.sh"
cluster_ports storm "$port" "$base" "$workers" || exit 2

# File descriptors: nginx holds two per tab (three during a storm), a worker and the tool one.
need=$((3 * n + 2048))
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < need)); then
  echo "storm: N=$n needs $need open files per process (nginx: 2 per proxied WebSocket), but the" \
    "hard limit (ulimit -Hn) is $hard: raise it (as root with CAP_SYS_RESOURCE, or LimitNOFILE=" \
    "for a service) or use N <= $(((hard - 2048) / 3))" >&2
  exit 2
fi
if [[ $(ulimit -n) != unlimited ]] && (($(ulimit -n) < need)); then
  ulimit -n "$need" || { echo "storm: cannot raise ulimit -n to $need (hard limit $hard)" >&2; exit 2; }
fi
# Loopback connections take ephemeral ports: the tool's N to nginx, nginx's N to the workers.
read -r lo hi </proc/sys/net/ipv4/ip_local_port_range || { lo=32768; hi=60999; }
if ((2 * n + 2000 > hi - lo)); then
  echo "storm: warning: 2 × $n connections from 127.0.0.1 come close to the ephemeral port range $lo-$hi" >&2
fi

# nginx (cluster.sh installs it when missing) and curl (its health checks).
if ! command -v curl >/dev/null; then
  echo "storm: installing curl..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi

build=(--quiet)
[[ $profile == release ]] && build+=(--release)
if [[ -n ${DEMO_BIN:-} ]]; then
  # Another build of the demo (an experiment): used as it is.
  bin=$DEMO_BIN profile=custom
  [[ -x $bin ]] || { echo "storm: DEMO_BIN=$bin is not an executable" >&2; exit 2; }
  echo "storm: building the tool (release); the demo is $bin..." >&2
  (cd "$root" && cargo build --quiet --release -p state-recovery-storm)
else
  echo "storm: building the demo ($profile) and the tool (release)..." >&2
  (cd "$root" && cargo build "${build[@]}" --example demo && cargo build --quiet --release -p state-recovery-storm)
  bin=$target/$profile/examples/demo
fi
tool=$target/release/storm

out=$out_dir/storm-n$n-$profile.json
work=$(mktemp -d /tmp/state-recovery-storm.XXXXXX)

run_name=storm
# shellcheck source=cluster-run.sh
source "$root/scripts/cluster-run.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

somaxconn=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 4096)
backlog=${NGINX_BACKLOG:-$((n < 511 ? 511 : (n > somaxconn ? somaxconn : n)))}
# The workers' (DEMO_BACKLOG): every tab may land on one survivor at once; at least the demo's
# default 4096 (the kernel caps both at somaxconn).
worker_backlog=${DEMO_BACKLOG:-$((n < 4096 ? 4096 : (n > 65535 ? 65535 : n)))}
mkdir -p "$work/cluster" "$out_dir"
env -u DEMO_SCHEMA -u DEMO_SEAL_AS RESPAWN=1 RESPAWN_DELAY="${RESPAWN_DELAY:-0.2}" \
  CLUSTER_DIR="$work/cluster" PORT="$port" WORKER_BASE_PORT="$base" DEMO_BIN="$bin" \
  NGINX_WORKER_CONNECTIONS=$((3 * n + 1024)) NGINX_RLIMIT_NOFILE="$need" NGINX_BACKLOG="$backlog" \
  DEMO_BACKLOG="$worker_backlog" "$root/scripts/cluster.sh" "$workers" >"$work/cluster.log" 2>&1 &
cluster_pid=$!
# Bounded: 120 s, enough for cluster.sh to install nginx when it is missing.
for ((t = 0; t < 1200; t++)); do
  [[ -f $work/cluster/ready ]] && break
  kill -0 "$cluster_pid" 2>/dev/null || { cat "$work/cluster.log" >&2; exit 2; }
  sleep 0.1
done
[[ -f $work/cluster/ready ]] || { echo "storm: the cluster did not start" >&2; exit 2; }
echo "storm: cluster of $workers $profile workers on 127.0.0.1:$port (workers $((base + 1))..$((base + workers))," \
  "worker_connections $((3 * n + 1024)), worker_rlimit_nofile $need, listen backlog $backlog, workers' backlog $worker_backlog, ulimit -n $(ulimit -n))" >&2

storms=${STORMS:-kill,drain}
kinds=$(tr ',' '\n' <<<"$storms" | grep -c .)
# The tool's own bound: the ramp, then per storm at most 1 + BEFORE + WAIT + 10 (in-flight
# events settle) + 20 (restart) s.
max_secs=$((120 + n / 50 + rounds * kinds * (70 + ${WAIT:-30})))
rc=0
timeout -k 5 $((max_secs + 15)) "$tool" --url "ws://127.0.0.1:$port/ws" --cluster-dir "$work/cluster" \
  --base-port "$base" --workers "$workers" --clients "$n" --rate "${RATE:-0.5}" --ramp "${RAMP:-1000}" \
  --before "${BEFORE:-3}" --wait "${WAIT:-30}" --rounds "$rounds" --storms "$storms" \
  --threads "${THREADS:-1}" --max-secs "$max_secs" --label "$profile workers" --out "$out" \
  "$@" &
driver_pid=$!
wait "$driver_pid" || rc=$?
driver_pid=
((rc == 124 || rc == 137)) && echo "storm: the tool timed out after $((max_secs + 15)) s" >&2
exit "$rc"
