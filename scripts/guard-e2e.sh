#!/usr/bin/env bash
# The revocation and rollback guard across two demo workers that share one Redis: starts
# redis-server (no persistence) and two demo workers (built with --features redis,
# DEMO_REDIS_URL) on their own loopback ports, then runs scripts/guard-e2e.mjs: state made on
# worker 1, an older revision replayed to worker 2 (rolled-back), a logout on worker 1 and a
# reconnect to worker 2 (revoked), another user untouched, an anonymous salt revoked, Redis
# paused mid-run (fail closed within the timeout) and resumed. Then checks the worker logs
# name the reasons. Exits non-zero on any mismatch; stops everything it started.
#
#   scripts/guard-e2e.sh
#
# Environment: REDIS_PORT (default 3601), WORKER_BASE_PORT (default 3610: workers on 3611 and
# 3612), KEEP=1 (keep the logs even on success; on failure they are always kept). Refuses to
# start if any of its ports is in use. Installs redis-server with apt-get when missing. The
# node part has a hard limit of 60 s.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
redis_port=${REDIS_PORT:-3601}
base=${WORKER_BASE_PORT:-3610}
ports=("$redis_port" $((base + 1)) $((base + 2)))

# shellcheck source=ports.sh
source "$root/scripts/ports.sh"
busy=()
for p in "${ports[@]}"; do in_use "$p" && busy+=("$p"); done
if ((${#busy[@]})); then
  echo "guard-e2e: port(s) ${busy[*]} already in use; stop what listens there or choose others with" \
    "REDIS_PORT (now $redis_port) and WORKER_BASE_PORT (workers on base+1, base+2; now $base)" >&2
  exit 1
fi

if ! command -v redis-server >/dev/null; then
  echo "guard-e2e: installing redis-server..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
fi
command -v node >/dev/null || { echo "guard-e2e: node (>= 20) is required" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
((major >= 20)) || { echo "guard-e2e: node $(node --version) is too old (need 20 or newer)" >&2; exit 1; }

work=$(mktemp -d /tmp/state-recovery-guard-e2e.XXXXXX)
pids=()
node_pid=
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $node_pid ]] && kill "$node_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for ((t = 0; t < 50; t++)); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [[ $rc != 0 ]]; then
    echo "--- logs (kept in $work)" >&2
    tail -n 15 "$work"/w1.log "$work"/w2.log "$work"/redis.log 2>/dev/null >&2 || true
    echo "guard-e2e: FAIL ($rc)" >&2
  elif [[ ${KEEP:-0} == 1 ]]; then
    echo "guard-e2e: PASS (logs kept in $work)" >&2
  else
    rm -rf "$work"
    echo "guard-e2e: PASS" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$root" && cargo build --quiet --example demo --features redis)
bin=${CARGO_TARGET_DIR:-$root/target}/debug/examples/demo

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
  --dir "$work" --logfile "$work/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
# PING over bash's /dev/tcp (redis-cli need not be there).
ping() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "PING\r\n" >&3 &&
    read -r -t 1 reply <&3 && [[ $reply == "+PONG"* ]]' _ "$redis_port" 2>/dev/null
}
ok=0
for ((t = 0; t < 100; t++)); do
  if ping; then ok=1; break; fi
  kill -0 "$redis_pid" 2>/dev/null || break
  sleep 0.1
done
[[ $ok == 1 ]] || { echo "guard-e2e: redis-server did not start" >&2; exit 1; }

keys="e2e:$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
location_key=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
for i in 1 2; do
  env STATE_RECOVERY_KEYS="$keys" STATE_RECOVERY_LOCATION_KEY="$location_key" \
    DEMO_REDIS_URL="redis://127.0.0.1:$redis_port/" DEMO_GUARD_POLICY=closed \
    WORKER_ID="w$i" BIND=127.0.0.1 PORT=$((base + i)) RUST_LOG=info \
    "$bin" >"$work/w$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2; do
  ok=0
  for ((t = 0; t < 300; t++)); do
    if curl -fsS -m 1 "http://127.0.0.1:$((base + i))/healthz" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [[ $ok == 1 ]] || { echo "guard-e2e: worker w$i did not start" >&2; exit 1; }
  [[ $(curl -fsS -m 2 "http://127.0.0.1:$((base + i))/healthz") == "ok w$i" ]] ||
    { echo "guard-e2e: port $((base + i)) does not answer as worker w$i" >&2; exit 1; }
done
echo "guard-e2e: redis on 127.0.0.1:$redis_port, workers w1 and w2 on $((base + 1)) and $((base + 2))" >&2

rc=0
W1=$((base + 1)) W2=$((base + 2)) REDIS_PID=$redis_pid \
  timeout -k 5 60 node --experimental-websocket --no-warnings "$root/scripts/guard-e2e.mjs" &
node_pid=$!
wait "$node_pid" || rc=$?
node_pid=
((rc == 124 || rc == 137)) && echo "guard-e2e: timed out after 60 s" >&2

# What the workers logged: the reasons, never a salt or a token (colours stripped).
for i in 1 2; do sed 's/\x1b\[[0-9;]*m//g' "$work/w$i.log" >"$work/w$i.txt"; done
count() { grep -c -- "$1" "$2" || true; }
w2=$work/w2.txt
printf 'guard-e2e: w2 logged %s rolled-back, %s revoked, %s guard-unavailable entries; w1 logged %s revocations\n' \
  "$(count 'reason="rolled-back"' "$w2")" "$(count 'reason="revoked"' "$w2")" \
  "$(count 'reason="guard-unavailable"' "$w2")" "$(count 'guard: revoked' "$work/w1.txt")" >&2
for want in 'reason="rolled-back"' 'reason="revoked"' 'reason="guard-unavailable"'; do
  grep -q -- "$want" "$w2" || { echo "guard-e2e: worker 2 did not log $want" >&2; rc=1; }
done
grep -q 'guard: revoked' "$work/w1.txt" || { echo "guard-e2e: worker 1 did not log its revocations" >&2; rc=1; }
exit "$rc"
