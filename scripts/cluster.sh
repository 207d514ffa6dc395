#!/usr/bin/env bash
# Starts N demo workers behind nginx (round-robin, WebSocket proxying) sharing one key ring.
#
#   scripts/cluster.sh 3          # http://127.0.0.1:3000, workers w1..w3 on 3101..3103
#
# Environment:
#   STATE_RECOVERY_KEYS  the shared ring; when unset one is generated into a temp file
#   PORT                 nginx's port (default 3000); workers listen on WORKER_BASE_PORT+i
#   WORKER_BASE_PORT     default 3100 (so the first worker is on 3101)
#   RESPAWN=1            restart a worker that dies (after RESPAWN_DELAY seconds, default 0.2)
#   CLUSTER_DIR          working directory (config, logs, w<i>.pid); default: a new mktemp -d
#   DEMO_BIN             the demo binary (default: built with `cargo build --example demo`)
#   DEMO_ALLOW_KILL      1: every worker's "kill this worker" button and POST /kill (same origin
#                        only) make it exit; default 0 (the button is hidden; SIGKILL a worker,
#                        its pid is in $CLUSTER_DIR/w<i>.pid). scripts/e2e.sh sets it.
#   DEMO_IDLE_TIMEOUT_SECS, DEMO_HEADER_TIMEOUT_SECS  passed on to the workers (see
#                        examples/demo/main.rs)
#   NGINX_WORKER_CONNECTIONS  nginx's worker_connections (default 1024). Every proxied
#                        WebSocket holds two (the client's and the upstream's): 1024 carries
#                        ~500 sockets. scripts/storm.sh sizes it from its N.
#   NGINX_RLIMIT_NOFILE  nginx's worker_rlimit_nofile (default: not set, the inherited limit);
#                        at most the hard `ulimit -Hn` unless nginx runs as root with
#                        CAP_SYS_RESOURCE.
#   NGINX_READ_TIMEOUT   nginx's proxy_read_timeout (default 1h): a proxied WebSocket on which
#                        the worker sends nothing for that long is closed (an idle-timeout proxy;
#                        scripts/e2e-dioxus.sh sets a short one). An nginx time: 5s, 500ms, 2m.
#   NGINX_BACKLOG        the listen backlog of nginx's port (default: not set, nginx's 511; the
#                        kernel caps it at net.core.somaxconn). A reconnect storm of more tabs
#                        than that within a few ms overflows it (SYNs dropped, retried after 1 s).
# Refuses to start when nginx's port or a worker's is in use. Ctrl-C (or any exit) stops everything
# this script started.
#
# Per-worker settings (for rolling deploys): each time worker i is (re)started, if
# $CLUSTER_DIR/w<i>.env exists, its KEY=VALUE lines are passed to that worker on top of the
# environment this script was started with. Only DEMO_SCHEMA (1 or 2), DEMO_SEAL_AS (0 or 1)
# and RUST_LOG are allowed; blank lines and lines starting with # are skipped; values are taken
# literally (no quotes, no expansion). Anything else is an error: the worker is not started, the
# error goes to stderr and w<i>.log, and the whole cluster stops (exit status 2). So, with
# RESPAWN=1, a new release is rolled out worker by worker by writing w<i>.env (write a temp file
# and rename it) and then sending the worker SIGTERM; deleting the file brings back the defaults.
set -euo pipefail

n=${1:-3}
[[ $n =~ ^[1-9][0-9]?$ ]] || { echo "usage: $0 N  (1..99 workers)" >&2; exit 2; }
port=${PORT:-3000}
base=${WORKER_BASE_PORT:-3100}
worker_connections=${NGINX_WORKER_CONNECTIONS:-1024}
[[ $worker_connections =~ ^[1-9][0-9]{0,6}$ ]] ||
  { echo "NGINX_WORKER_CONNECTIONS must be a positive number, not '$worker_connections'" >&2; exit 2; }
rlimit_nofile=
if [[ -n ${NGINX_RLIMIT_NOFILE:-} ]]; then
  [[ $NGINX_RLIMIT_NOFILE =~ ^[1-9][0-9]{0,6}$ ]] ||
    { echo "NGINX_RLIMIT_NOFILE must be a positive number, not '$NGINX_RLIMIT_NOFILE'" >&2; exit 2; }
  rlimit_nofile="worker_rlimit_nofile $NGINX_RLIMIT_NOFILE;"
fi
read_timeout=${NGINX_READ_TIMEOUT:-1h}
[[ $read_timeout =~ ^[1-9][0-9]{0,6}(ms|s|m|h)?$ ]] ||
  { echo "NGINX_READ_TIMEOUT must be an nginx time such as 5s or 500ms, not '$read_timeout'" >&2; exit 2; }
backlog=
if [[ -n ${NGINX_BACKLOG:-} ]]; then
  [[ $NGINX_BACKLOG =~ ^[1-9][0-9]{0,6}$ ]] ||
    { echo "NGINX_BACKLOG must be a positive number, not '$NGINX_BACKLOG'" >&2; exit 2; }
  backlog=" backlog=$NGINX_BACKLOG"
fi
root=$(cd "$(dirname "$0")/.." && pwd)

if [[ -n ${CLUSTER_DIR:-} ]]; then
  dir=$CLUSTER_DIR; mkdir -p "$dir"; own_dir=0
else
  dir=$(mktemp -d /tmp/state-recovery-cluster.XXXXXX); own_dir=1
fi

pids=()       # nginx and the worker supervisors
cleanup() {
  trap - EXIT INT TERM
  local all=("${pids[@]}")
  # Supervisors first (so none restarts its worker), then the workers they started.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$dir"/w*.pid; do
    [[ -f $f ]] && { all+=("$(cat "$f")"); kill "$(cat "$f")" 2>/dev/null || true; }
  done
  # Bounded wait, then SIGKILL whatever is left.
  for ((t = 0; t < 50; t++)); do
    local alive=0
    for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for p in "${all[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -f "$dir/keys" "$dir/ready"
  if [[ $own_dir == 1 ]]; then rm -rf "$dir"; fi
  echo "cluster stopped" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Our ports must be free: a busy one would let the health checks below (and whatever drives
# this cluster) talk to someone else's server.
# shellcheck source=ports.sh
source "$root/scripts/ports.sh"
cluster_ports cluster "$port" "$base" "$n" || exit $?

# nginx (the Debian package), installed when missing.
if ! command -v nginx >/dev/null; then
  echo "installing nginx..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
fi

# The demo binary.
bin=${DEMO_BIN:-}
if [[ -z $bin ]]; then
  (cd "$root" && cargo build --quiet --example demo)
  bin=${CARGO_TARGET_DIR:-$root/target}/debug/examples/demo
fi
[[ -x $bin ]] || { echo "no demo binary at $bin" >&2; exit 1; }

# One key ring for every worker.
if [[ -z ${STATE_RECOVERY_KEYS:-} ]]; then
  (umask 077; printf 'cluster:%s\n' "$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')" > "$dir/keys")
  STATE_RECOVERY_KEYS=$(cat "$dir/keys")
  echo "generated a key ring for this cluster in $dir/keys (removed on exit)" >&2
fi
export STATE_RECOVERY_KEYS

# The settings in w<i>.env (see the header) as NAME=VALUE words, one per line on stdout.
worker_settings() {
  local file=$1 line n=0 key value
  [[ -f $file ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    n=$((n + 1))
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
    if [[ ! $line =~ ^([A-Z_]+)=(.*)$ ]]; then
      echo "$file:$n: not a KEY=VALUE line: $line" >&2; return 1
    fi
    key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
    case $key in
      DEMO_SCHEMA) [[ $value =~ ^[12]$ ]] || { echo "$file:$n: DEMO_SCHEMA must be 1 or 2, not '$value'" >&2; return 1; } ;;
      DEMO_SEAL_AS) [[ $value =~ ^[01]?$ ]] || { echo "$file:$n: DEMO_SEAL_AS must be 0 or 1, not '$value'" >&2; return 1; } ;;
      RUST_LOG) [[ $value =~ ^[[:print:]]*$ ]] || { echo "$file:$n: RUST_LOG has control characters" >&2; return 1; } ;;
      *) echo "$file:$n: $key is not allowed (only DEMO_SCHEMA, DEMO_SEAL_AS, RUST_LOG)" >&2; return 1 ;;
    esac
    printf '%s=%s\n' "$key" "$value"
  done <"$file"
}

# Workers, each under a small supervisor loop when RESPAWN=1.
main_pid=$$
trap 'echo "cluster: stopping: invalid per-worker settings (see above)" >&2; exit 2' USR1
run_worker() {
  local i=$1 wport=$((base + $1)) settings
  while :; do
    local extra=()
    if ! settings=$(worker_settings "$dir/w$i.env" 2>&1); then
      echo "w$i not started: $settings" | tee -a "$dir/w$i.log" >&2
      kill -USR1 "$main_pid" 2>/dev/null || true
      exit 2
    fi
    [[ -n $settings ]] && mapfile -t extra <<<"$settings"
    env DEMO_ALLOW_KILL="${DEMO_ALLOW_KILL:-0}" ${extra[@]+"${extra[@]}"} WORKER_ID="w$i" PORT=$wport BIND=127.0.0.1 "$bin" >>"$dir/w$i.log" 2>&1 &
    local wpid=$!
    echo "$wpid" >"$dir/w$i.pid"
    wait "$wpid" || true
    [[ ${RESPAWN:-0} == 1 ]] || break
    echo "w$i exited; restarting" >>"$dir/w$i.log"
    sleep "${RESPAWN_DELAY:-0.2}"
  done
}
upstream=""
for ((i = 1; i <= n; i++)); do
  run_worker "$i" &
  pids+=($!)
  upstream+="    server 127.0.0.1:$((base + i)) max_fails=1 fail_timeout=1s;"$'\n'
done

# Wait until every worker answers (bounded).
for ((i = 1; i <= n; i++)); do
  ok=0
  for ((t = 0; t < 300; t++)); do
    if curl -fsS -m 1 "http://127.0.0.1:$((base + i))/healthz" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [[ $ok == 1 ]] || { echo "worker w$i did not start; see $dir/w$i.log" >&2; tail -5 "$dir/w$i.log" >&2; exit 1; }
done

# nginx with its own prefix and config, not the system one.
mkdir -p "$dir/nginx/tmp" "$dir/nginx/logs"
cat >"$dir/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/logs/error.log warn;
$rlimit_nofile
events { worker_connections $worker_connections; }
http {
  access_log $dir/nginx/logs/access.log;
  client_body_temp_path $dir/nginx/tmp/body;
  proxy_temp_path $dir/nginx/tmp/proxy;
  fastcgi_temp_path $dir/nginx/tmp/fastcgi;
  uwsgi_temp_path $dir/nginx/tmp/uwsgi;
  scgi_temp_path $dir/nginx/tmp/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream demo {
$upstream  }
  server {
    listen 127.0.0.1:$port$backlog;
    location / {
      proxy_pass http://demo;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      # The client's Host as sent, port included: the layer compares it with the Origin of
      # every WebSocket upgrade (\$host would drop the port, and every browser upgrade would
      # be refused with 403).
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_connect_timeout 2s;
      proxy_read_timeout $read_timeout;
      proxy_next_upstream error timeout http_502;
    }
  }
}
EOF
nginx -p "$dir/nginx" -e "$dir/nginx/logs/error.log" -c "$dir/nginx/nginx.conf" &
nginx_pid=$!
pids+=("$nginx_pid")
ok=0
for ((t = 0; t < 100; t++)); do
  if curl -fsS -m 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then ok=1; break; fi
  kill -0 "$nginx_pid" 2>/dev/null || break
  sleep 0.1
done
[[ $ok == 1 ]] || { echo "nginx did not start; see $dir/nginx/logs/error.log" >&2; cat "$dir/nginx/logs/error.log" >&2 || true; exit 1; }

echo "cluster of $n workers on http://127.0.0.1:$port (workers on $((base + 1))..$((base + n)); dir $dir)" >&2
echo "ready" >"$dir/ready"
wait "$nginx_pid"
