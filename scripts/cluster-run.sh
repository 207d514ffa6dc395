# shellcheck shell=bash disable=SC2317  # cleanup runs from the EXIT trap
# Sourced by scripts that run a load against a scripts/cluster.sh cluster (rolling-deploy.sh,
# storm.sh, inflight.sh, soak.sh, e2e-dioxus.sh): the cleanup they share. Before sourcing, set
#   run_name     the script's name, for its PASS/FAIL line
#   work         its working directory (the cluster's is $work/cluster, its log $work/cluster.log)
# and, as they start, cluster_pid (cluster.sh) and driver_pid (the load: node or the tool).
# Then `trap cleanup EXIT`. KEEP=1 keeps $work on success; on failure it is always kept and the
# tails of the logs are printed.
cluster_pid=
driver_pid=

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $driver_pid ]]; then
    kill "$driver_pid" 2>/dev/null || true # `timeout` passes it on to the driver
    wait "$driver_pid" 2>/dev/null || true
  fi
  if [[ -n $cluster_pid ]]; then
    # cluster.sh stops its supervisors, workers and nginx on SIGTERM.
    kill "$cluster_pid" 2>/dev/null || true
    for ((t = 0; t < 100; t++)); do kill -0 "$cluster_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$cluster_pid" 2>/dev/null || true
    # If it had to be SIGKILLed, whatever it started is still around: the pids it recorded.
    for f in "$work"/cluster/w*.pid "$work"/cluster/nginx/nginx.pid; do
      if [[ -f $f ]]; then kill "$(cat "$f")" 2>/dev/null || true; fi
    done
  fi
  if [[ $rc != 0 ]]; then
    {
      echo "--- logs (kept in $work)"
      tail -n 5 "$work/cluster.log" "$work"/cluster/w*.log "$work"/cluster/nginx/logs/error.log 2>/dev/null || true
    } >&2
    echo "$run_name: FAIL ($rc)" >&2
  elif [[ ${KEEP:-0} == 1 ]]; then
    echo "$run_name: PASS (logs kept in $work)" >&2
  else
    rm -rf "$work"
    echo "$run_name: PASS" >&2
  fi
  exit "$rc"
}
