#!/usr/bin/env bash
# Stop the test cluster started by up.sh and remove its state directory.
#
# Only the processes whose pids up.sh recorded are signalled, and only after
# checking that the pid still runs the binary we started (a recycled pid must
# never be killed). The directory is removed only if it carries up.sh's marker
# file, so a mistyped SKYROUTE_CLUSTER_DIR cannot delete anything else.
# Usage: hack/cluster/down.sh [--keep]   (--keep: stop processes, keep logs)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/cluster/env.sh
. "$HERE/env.sh"

D="$SKYROUTE_CLUSTER_DIR"
if [[ ! -e "$D" ]]; then
  log "nothing to stop ($D does not exist)"
  exit 0
fi
[[ -f "$D/.skyroute-cluster" ]] || die "$D is not a skyroute cluster dir (no .skyroute-cluster); not touching it"

ours() { # pid name: is pid alive and running the binary called name?
  [[ -r "/proc/$1/cmdline" ]] && tr '\0' '\n' <"/proc/$1/cmdline" | head -1 | grep -q "/$2\$"
}

# API server first (it is etcd's client), then etcd.
for name in kube-apiserver etcd; do
  pidf="$D/$name.pid"
  [[ -f "$pidf" ]] || continue
  pid=$(cat "$pidf")
  if ours "$pid" "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do ours "$pid" "$name" || break; sleep 0.1; done
    if ours "$pid" "$name"; then
      log "$name ($pid) ignored SIGTERM for 10s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name ($pid)"
  fi
  rm -f "$pidf"
done

if [[ "${1:-}" == "--keep" ]]; then
  log "processes stopped; state kept in $D"
else
  rm -rf "$D"
  log "removed $D"
fi
