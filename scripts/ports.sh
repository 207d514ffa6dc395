# shellcheck shell=bash
# Sourced by the scripts that start servers (cluster.sh, guard-e2e.sh, rolling-deploy.sh,
# storm.sh, e2e-dioxus.sh): whether a loopback port is taken, so that a script refuses to start
# instead of silently testing someone else's server.

# in_use PORT: true when something listens on 127.0.0.1:PORT (ss when present, else a connect).
in_use() {
  if command -v ss >/dev/null; then
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]] && return 0
  fi
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# cluster_ports NAME PORT BASE N: a cluster's ports (nginx on PORT, workers on BASE+1..BASE+N)
# are port numbers and free; else says why, as NAME. Status 2: not a port number; 1: in use.
cluster_ports() {
  local name=$1 port=$2 base=$3 n=$4 p busy=()
  for p in "$port" "$base"; do
    if [[ ! $p =~ ^[1-9][0-9]*$ ]] || ((p + n > 65535)); then
      echo "$name: bad port '$p'" >&2
      return 2
    fi
  done
  for p in "$port" $(seq $((base + 1)) $((base + n))); do in_use "$p" && busy+=("$p"); done
  if ((${#busy[@]})); then
    echo "$name: port(s) ${busy[*]} already in use; stop what listens there or choose others" \
      "with PORT (nginx, now $port) and WORKER_BASE_PORT (workers on base+1..base+$n, now $base)" >&2
    return 1
  fi
}
