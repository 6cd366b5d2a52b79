#!/usr/bin/env bash
# Make the test cluster's binaries available: etcd (Debian's etcd-server),
# kube-apiserver + kubectl compiled from the pinned k8s.io/kubernetes module,
# and helm (for deploy/helm) compiled from the pinned helm.sh/helm module.
#
# k8s.io/kubernetes is not meant to be consumed as a module: its go.mod points
# every k8s.io/* staging module at ./staging/src/... with fake v0.0.0
# requirements. The published staging modules carry the same code tagged
# v0.<minor>.<patch>, so a throwaway module that replaces each one with that
# version builds the real release. The list is read from the release's own
# go.mod `replace` block, never hard-coded, so a version bump keeps working.
#
# Rebuilds only when a binary is missing; a second caller waits on a lock
# instead of starting a second build. Usage: hack/cluster/bins.sh [--check]
#   --check   exit 0 if everything is present, 1 otherwise (never builds)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/cluster/env.sh
. "$HERE/env.sh"

have_bins() {
  [[ -x "$ETCD" && -x "$KUBE_APISERVER" && -x "$KUBECTL" && -x "$HELM" ]] && command -v openssl >/dev/null
}

if [[ "${1:-}" == "--check" ]]; then
  have_bins && exit 0
  log "missing: $( [[ -x "$ETCD" ]] || echo -n 'etcd ' )$( [[ -x "$KUBE_APISERVER" ]] || echo -n 'kube-apiserver ' )$( [[ -x "$KUBECTL" ]] || echo -n 'kubectl ' )$( [[ -x "$HELM" ]] || echo -n 'helm ' )$(command -v openssl >/dev/null || echo -n 'openssl')"
  exit 1
fi

# --- Debian packages: etcd-server, openssl --------------------------------
apt_pkgs=()
[[ -x "$ETCD" ]] || apt_pkgs+=(etcd-server)
command -v openssl >/dev/null || apt_pkgs+=(openssl)
if ((${#apt_pkgs[@]})); then
  [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${apt_pkgs[*]} (or install them yourself)"
  log "apt-get install ${apt_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
  ETCD="$(command -v etcd || echo /usr/bin/etcd)"
  [[ -x "$ETCD" ]] || die "etcd-server installed but no etcd binary found"
fi
log "etcd: $("$ETCD" --version 2>/dev/null | head -1)"

# One build per cache dir: take DIR/.build.lock on fd 9, waiting while another
# caller builds (it then finds the binary and returns). Usage: build_lock DIR WHAT
build_lock() {
  command -v go >/dev/null || die "no Go toolchain on PATH (needed to build $2)"
  mkdir -p "$1"
  exec 9>"$1/.build.lock"
  if ! flock -n 9; then
    log "another build holds $1/.build.lock; waiting"
    flock 9
  fi
}

# --- Go build of helm -----------------------------------------------------
# Unlike k8s.io/kubernetes, helm.sh/helm is an ordinary module: `go install
# cmd/helm@version` builds the release as published (its own go.sum pins
# every dependency). Same cache layout, lock and tmp-then-move as below.
build_helm() {
  if [[ -x "$HELM" ]]; then
    log "helm $SKYROUTE_HELM_VERSION: cached in $SKYROUTE_HELM_CACHE/bin"; return 0
  fi
  build_lock "$SKYROUTE_HELM_CACHE" helm
  if [[ -x "$HELM" ]]; then
    log "helm built by the other caller"; exec 9>&-; return 0
  fi
  local v="$SKYROUTE_HELM_VERSION" start logf="$SKYROUTE_HELM_CACHE/build.log"
  local major="${v%%.*}"                  # v4
  local mod="helm.sh/helm/$major"
  start=$(date +%s)
  log "$(go version); building helm $v (go install $mod/cmd/helm@$v; 2 cores: about 9 min cold)"
  rm -rf "$SKYROUTE_HELM_CACHE/bin.tmp"
  if ! GOBIN="$SKYROUTE_HELM_CACHE/bin.tmp" GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0 \
      go install -trimpath -ldflags "-s -w -X $mod/internal/version.version=$v -X $mod/internal/version.gitTreeState=clean" \
      "$mod/cmd/helm@$v" >"$logf" 2>&1; then
    tail -30 "$logf" >&2
    die "helm build failed (full log: $logf)"
  fi
  mkdir -p "$SKYROUTE_HELM_CACHE/bin"
  mv -f "$SKYROUTE_HELM_CACHE/bin.tmp/helm" "$HELM"
  rmdir "$SKYROUTE_HELM_CACHE/bin.tmp" 2>/dev/null || true
  exec 9>&-
  log "built in $(($(date +%s) - start))s: helm $("$HELM" version --template '{{.Version}}')"
}
build_helm

if [[ -x "$KUBE_APISERVER" && -x "$KUBECTL" ]]; then
  log "kube-apiserver, kubectl $SKYROUTE_K8S_VERSION: cached in $SKYROUTE_K8S_BIN"
  exit 0
fi

# --- Go build of kube-apiserver and kubectl -------------------------------
build_lock "$SKYROUTE_K8S_CACHE" kube-apiserver
if [[ -x "$KUBE_APISERVER" && -x "$KUBECTL" ]]; then
  log "built by the other caller"; exit 0
fi

V="$SKYROUTE_K8S_VERSION"                 # v1.36.3
STAGING_V="v0.${V#v1.}"                   # v0.36.3
SRC="$SKYROUTE_K8S_CACHE/src"
LOGF="$SKYROUTE_K8S_CACHE/build.log"
export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
start=$(date +%s)

log "$(go version); building kube-apiserver and kubectl $V in $SRC"
rm -rf "$SRC" && mkdir -p "$SRC" && cd "$SRC"
go mod init skyroute.local/k8s-build >/dev/null 2>&1

gomod=$(go mod download -json "k8s.io/kubernetes@$V" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[[ -f "$gomod" ]] || die "could not fetch go.mod of k8s.io/kubernetes@$V"
mapfile -t staging < <(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/src/.*|\1|p' "$gomod")
((${#staging[@]})) || die "no staging replace lines in $gomod"
n=0
for m in "${staging[@]}"; do
  if go list -m "$m@$STAGING_V" >/dev/null 2>&1; then
    go mod edit "-replace=$m=$m@$STAGING_V"; n=$((n + 1))
  else
    log "  (no $m@$STAGING_V published; not needed by the binaries, left out)"
  fi
done
log "replaced $n of ${#staging[@]} staging modules with @$STAGING_V"
# Match the release's GODEBUG defaults.
godebug=$(sed -n 's/^godebug \(.*\)/\1/p' "$gomod")
[[ -z "$godebug" ]] || go mod edit "-godebug=$godebug"

pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
log "resolving modules (go get ${pkgs[*]/%/@$V})"
go get "${pkgs[@]/%/@$V}" >"$LOGF" 2>&1 || { tail -20 "$LOGF" >&2; die "go get failed (log: $LOGF)"; }
total=$(go list -deps "${pkgs[@]}" | wc -l)
log "modules ready after $(($(date +%s) - start))s; compiling $total packages (2 cores: expect 10-25 min on a cold cache)"

pkgver=k8s.io/component-base/version
cliver=k8s.io/client-go/pkg/version
minor=${V#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for p in $pkgver $cliver; do
  ldflags+=" -X $p.gitVersion=$V -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  ldflags+=" -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
mkdir -p "$SKYROUTE_K8S_BIN.tmp"
go build -v -trimpath -ldflags "$ldflags" -o "$SKYROUTE_K8S_BIN.tmp/" "${pkgs[@]}" >"$LOGF" 2>&1 &
gopid=$!
trap 'kill "$gopid" 2>/dev/null || true' EXIT INT TERM
while kill -0 "$gopid" 2>/dev/null; do
  sleep 20
  done_n=$(grep -cv -e '^go: ' -e '^#' "$LOGF" || true)
  log "  compiling: ~$done_n/$total packages, $(($(date +%s) - start))s elapsed"
done
if ! wait "$gopid"; then
  trap - EXIT INT TERM
  tail -30 "$LOGF" >&2
  die "go build failed (full log: $LOGF)"
fi
trap - EXIT INT TERM
mkdir -p "$SKYROUTE_K8S_BIN"
mv -f "$SKYROUTE_K8S_BIN.tmp/kube-apiserver" "$SKYROUTE_K8S_BIN.tmp/kubectl" "$SKYROUTE_K8S_BIN/"
rmdir "$SKYROUTE_K8S_BIN.tmp" 2>/dev/null || true
log "built in $(($(date +%s) - start))s: $("$KUBE_APISERVER" --version), kubectl $("$KUBECTL" version --client -o yaml | sed -n 's/^ *gitVersion: //p' | head -1)"
log "binaries: $SKYROUTE_K8S_BIN"
