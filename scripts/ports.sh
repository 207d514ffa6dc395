# shellcheck shell=bash
# Sourced by the scripts that start servers (cluster.sh, guard-e2e.sh, rolling-deploy.sh,
# storm.sh): whether a loopback port is taken, so that a script refuses to start instead of
# silently testing someone else's server.

# in_use PORT: true when something listens on 127.0.0.1:PORT (ss when present, else a connect).
in_use() {
  if command -v ss >/dev/null; then
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]] && return 0
  fi
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}
