#!/usr/bin/env bash
# Start a throwaway control plane (etcd + kube-apiserver) on 127.0.0.1 and
# print the path of its kubeconfig on stdout (everything else goes to stderr),
# so `export KUBECONFIG=$(hack/cluster/up.sh)` works.
#
# Why this shape: it mirrors controller-runtime's envtest. No kubelet, no
# controller-manager, no scheduler: the operator only needs the API machinery
# (CRD schemas, CEL validation, printer columns, watches, RBAC). Certificates
# are made fresh per cluster with openssl: a CA, a serving cert for
# 127.0.0.1/localhost, an admin client cert in group system:masters (RBAC
# grants it everything without any bootstrap), and a service-account signing
# key. Ports are free ports picked at start, so several clusters (a developer's
# plus a pytest session's, each with its own SKYROUTE_CLUSTER_DIR) coexist.
#
# Idempotent: if the cluster in SKYROUTE_CLUSTER_DIR is already up and ready it
# just prints the kubeconfig again; a half-dead one is torn down and restarted.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/cluster/env.sh
. "$HERE/env.sh"

D="$SKYROUTE_CLUSTER_DIR"
KCFG="$D/kubeconfig"
PKI="$D/pki"

alive() { [[ -f "$D/$1.pid" ]] && kill -0 "$(cat "$D/$1.pid")" 2>/dev/null; }
ready() { "$KUBECTL" --kubeconfig "$KCFG" get --raw /readyz 2>/dev/null | grep -qx ok; }

"$HERE/bins.sh" --check || die "binaries missing: run 'make cluster-bins' (or hack/cluster/bins.sh) first"

if [[ -f "$D/.skyroute-cluster" ]]; then
  if alive etcd && alive kube-apiserver && ready; then
    log "already running ($D)"
    echo "$KCFG"
    exit 0
  fi
  log "stale cluster state in $D; restarting"
  "$HERE/down.sh"
fi
if [[ -e "$D" ]] && [[ -n "$(ls -A "$D" 2>/dev/null)" ]]; then
  die "$D exists, is not empty and is not a skyroute cluster dir; set SKYROUTE_CLUSTER_DIR elsewhere"
fi

t0=$(date +%s.%N)
mkdir -p "$PKI" "$D/etcd-data"
chmod 700 "$D"
touch "$D/.skyroute-cluster"
# On any failure from here on, stop what was started but keep logs to read.
trap 'rc=$?; ((rc == 0)) || "$HERE/down.sh" --keep >/dev/null 2>&1 || true' EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
API_PORT=$(free_port)
while [[ $ETCD_PEER_PORT == "$ETCD_PORT" ]]; do ETCD_PEER_PORT=$(free_port); done
while [[ $API_PORT == "$ETCD_PORT" || $API_PORT == "$ETCD_PEER_PORT" ]]; do API_PORT=$(free_port); done

# --- certificates -----------------------------------------------------------
(
  cd "$PKI"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 30 \
    -subj "/CN=skyroute-test-ca" 2>/dev/null
  sign() { # name subject extensions
    openssl req "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out "$1.crt" -days 30 -extfile <(printf '%s\n' "$3") 2>/dev/null
    rm -f "$1.csr"
  }
  sign apiserver "/CN=kube-apiserver" \
    "$(printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost')"
  sign admin "/O=system:masters/CN=skyroute-admin" \
    "$(printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth')"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
  chmod 600 ./*.key
) || die "openssl failed to make the certificates in $PKI"

# --- etcd -------------------------------------------------------------------
# Client traffic is plain http on loopback only, as envtest does.
setsid "$ETCD" --name skyroute --data-dir "$D/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "skyroute=http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster-state new --logger zap --log-level warn \
  </dev/null >"$D/etcd.log" 2>&1 &
echo $! >"$D/etcd.pid"
for _ in $(seq 1 100); do # etcd listens within a second; then start its client
  (exec 3<>"/dev/tcp/127.0.0.1/$ETCD_PORT") 2>/dev/null && break
  alive etcd || { tail -25 "$D/etcd.log" >&2; die "etcd exited during start-up (log: $D/etcd.log)"; }
  sleep 0.1
done

# --- kube-apiserver ------------------------------------------------------------
# Flags follow envtest's defaults (controller-runtime controlplane.APIServer)
# with admission left at the release defaults, plus
# endpoint-reconciler-type=none: the reconciler would keep trying to publish
# 127.0.0.1 as the `kubernetes` Service endpoint, which validation rejects.
# service-cluster-ip-range is only an allocation range for Service objects;
# nothing listens there and no traffic goes there.
setsid "$KUBE_APISERVER" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --cert-dir "$PKI" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --service-account-issuer "https://127.0.0.1:$API_PORT" \
  --service-account-key-file "$PKI/sa.pub" \
  --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 \
  --authorization-mode RBAC \
  --allow-privileged=true \
  --endpoint-reconciler-type none \
  --profiling=false \
  </dev/null >"$D/kube-apiserver.log" 2>&1 &
echo $! >"$D/kube-apiserver.pid"

# --- kubeconfig (certificates embedded, so any client library can read it) ---
b64() { base64 -w0 <"$1"; }
umask 077
cat >"$KCFG" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: skyroute-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: skyroute-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: skyroute-test
  context: {cluster: skyroute-test, user: skyroute-admin, namespace: default}
current-context: skyroute-test
EOF
cat >"$D/env" <<EOF
KUBECONFIG=$KCFG
SKYROUTE_API_SERVER=https://127.0.0.1:$API_PORT
SKYROUTE_ETCD=http://127.0.0.1:$ETCD_PORT
EOF

# --- wait for /readyz ----------------------------------------------------------
log "etcd on 127.0.0.1:$ETCD_PORT, kube-apiserver on 127.0.0.1:$API_PORT; waiting for /readyz"
deadline=$(($(date +%s) + SKYROUTE_CLUSTER_TIMEOUT))
until ready; do
  for p in etcd kube-apiserver; do
    if ! alive "$p"; then
      tail -25 "$D/$p.log" >&2
      die "$p exited during start-up (log: $D/$p.log)"
    fi
  done
  if (($(date +%s) > deadline)); then
    tail -25 "$D/kube-apiserver.log" >&2
    "$KUBECTL" --kubeconfig "$KCFG" get --raw '/readyz?verbose' >&2 || true
    die "kube-apiserver not ready after ${SKYROUTE_CLUSTER_TIMEOUT}s (state: $D)"
  fi
  sleep 0.5
done
log "ready in $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")s; kubeconfig: $KCFG"
echo "$KCFG"
