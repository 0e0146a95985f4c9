#!/usr/bin/env bash
# Brings up the local test bed: a real etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler, a KWOK controller with one fake node, and the pod runner that gives database
# pods real PostgreSQL servers. Idempotent: when the test bed is already up it says so and returns.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if apiserver_ready && runner_alive; then
  log "already up; export KUBECONFIG=$KUBECONFIG_PATH"
  exit 0
fi

bin=$(bash "$here/build.sh" | tail -n 1)
pgbin=$(pg_bindir) || { log "no PostgreSQL server found: run 'make deps'"; exit 1; }
mkdir -p "$TB/bin"
data=$(data_root)
mkdir -p "$data/volumes" "$data/pods"
chmod 755 "$data" "$data/volumes" "$data/pods"
ln -sf "$bin/kubectl" "$TB/bin/kubectl"
ln -sf "$bin/kwokctl" "$TB/bin/kwokctl" # for down.sh
kubectl=("$TB/bin/kubectl" --kubeconfig "$KUBECONFIG_PATH")

if ! apiserver_ready; then
  # A half-started or stale cluster from an earlier run: start over.
  if [ -d "$KWOK_WORKDIR/clusters/$CLUSTER" ]; then
    log "removing a stale cluster"
    "$bin/kwokctl" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_PATH" >/dev/null 2>&1 || true
  fi
  rm -f "$KUBECONFIG_PATH"
  log "starting the control plane (Kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
  KWOK_KUBECTL_BINARY="$bin/kubectl" "$bin/kwokctl" create cluster \
    --name "$CLUSTER" \
    --runtime binary \
    --kubeconfig "$KUBECONFIG_PATH" \
    --etcd-binary "$bin/etcd" \
    --kube-apiserver-binary "$bin/kube-apiserver" \
    --kube-controller-manager-binary "$bin/kube-controller-manager" \
    --kube-scheduler-binary "$bin/kube-scheduler" \
    --kwok-controller-binary "$bin/kwok" \
    --enable-crds=Stage,PortForward,ClusterPortForward,Exec,ClusterExec,Logs,ClusterLogs \
    --wait 2m >"$TB/kwokctl.log" 2>&1 || { log "kwokctl failed; see $TB/kwokctl.log"; tail -n 20 "$TB/kwokctl.log" >&2; exit 1; }
fi

sed "s#@VOLUMES@#$data/volumes#g" "$here/stages/volume.yaml" > "$TB/volume-stages.yaml"
"${kubectl[@]}" apply --server-side --force-conflicts -f "$here/stages/node.yaml" -f "$here/stages/pod.yaml" -f "$TB/volume-stages.yaml" >/dev/null
"${kubectl[@]}" apply --server-side --force-conflicts -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
NODE
"${kubectl[@]}" wait --for=condition=Ready node/kwok-node-0 --timeout=60s >/dev/null

if ! runner_alive; then
  log "starting the pod runner (PostgreSQL from $pgbin)"
  go build -o "$TB/bin/podrunner" "$root/hack/testbed/podrunner"
  setsid "$TB/bin/podrunner" --kubeconfig "$KUBECONFIG_PATH" --state-dir "$data/pods" --pg-bin "$pgbin" \
    </dev/null >>"$TB/podrunner.log" 2>&1 &
  echo $! > "$TB/podrunner.pid"
fi
# The default ServiceAccount must exist before pods can be created in "default".
"${kubectl[@]}" wait --for=create serviceaccount/default -n default --timeout=30s >/dev/null
runner_alive || { log "the pod runner exited; see $TB/podrunner.log"; exit 1; }

cat >&2 <<MSG
testbed: up. Kubernetes $KUBERNETES_VERSION with one KWOK node; database pods run real PostgreSQL.
  export KUBECONFIG=$KUBECONFIG_PATH
  kubectl get nodes        # kubectl $("$bin/kubectl" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -n1) is at $TB/bin/kubectl
  make testbed-down        # stops everything
MSG
