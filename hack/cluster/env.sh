# shellcheck shell=bash
# Shared settings for the local test cluster (sourced by bins.sh, up.sh, down.sh).
#
# Why a pinned, self-built API server: the operator's tests must talk to a real
# kube-apiserver (CRD schema validation, CEL rules, printer columns, watches),
# the way controller-runtime's envtest does, but this workplace can only reach
# the Go module proxy and Debian. So etcd comes from Debian's etcd-server and
# kube-apiserver/kubectl are compiled from the k8s.io/kubernetes Go module at
# one pinned release into a cache dir outside the repo; nothing is committed.
#
# Every value can be overridden from the environment.

# Kubernetes release to build. v1.36.x: its go.mod says `go 1.26.0`, which the
# installed Go 1.26 toolchain builds without downloading another toolchain.
: "${SKYROUTE_K8S_VERSION:=v1.36.3}"
# Throwaway Go module + binaries, per version, outside the repository.
: "${SKYROUTE_K8S_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/skyroute/k8s-${SKYROUTE_K8S_VERSION}}"
# Where a running cluster keeps its certificates, etcd data, logs and pids.
: "${SKYROUTE_CLUSTER_DIR:=/tmp/skyroute-cluster}"
# Seconds to wait for /readyz.
: "${SKYROUTE_CLUSTER_TIMEOUT:=120}"

# Helm for the chart in deploy/helm (lint, template), built from its Go module
# (a normal module, so a plain `go install` of cmd/helm at this version).
: "${SKYROUTE_HELM_VERSION:=v4.3.2}"
: "${SKYROUTE_HELM_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/skyroute/helm-${SKYROUTE_HELM_VERSION}}"

SKYROUTE_K8S_BIN="$SKYROUTE_K8S_CACHE/bin"
KUBE_APISERVER="$SKYROUTE_K8S_BIN/kube-apiserver"
KUBECTL="$SKYROUTE_K8S_BIN/kubectl"
HELM="$SKYROUTE_HELM_CACHE/bin/helm"
: "${ETCD:=$(command -v etcd || echo /usr/bin/etcd)}"

export SKYROUTE_K8S_VERSION SKYROUTE_K8S_CACHE SKYROUTE_CLUSTER_DIR SKYROUTE_CLUSTER_TIMEOUT
export SKYROUTE_HELM_VERSION SKYROUTE_HELM_CACHE
export SKYROUTE_K8S_BIN KUBE_APISERVER KUBECTL HELM ETCD

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }
