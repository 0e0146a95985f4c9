#!/usr/bin/env bash
# Brings up the local test bed: a real etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler (started by kwokctl), and one real node on this machine (node.sh): containerd,
# runc and the CNI bridge, a kubelet, kube-proxy, CoreDNS and the volume provisioner, running our
# own images (hack/testbed/images.sh). Before any pod can start, a rule keeps everything pods send
# on this machine. Idempotent: when the test bed is already up it says so and returns.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$here/node.sh"

up_already() {
  apiserver_ready || return 1
  for p in containerd kubelet kube-proxy coredns provisioner; do node_pid_alive "$p" || return 1; done
}
if up_already; then
  # The images and policies of this checkout, which may have changed since the test bed came up.
  node_images
  "$TB/bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" apply --server-side --force-conflicts \
    -f "$here/storageclass.yaml" -f "$here/policies.yaml" >/dev/null
  log "already up; export KUBECONFIG=$KUBECONFIG_PATH"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { log "the test bed runs a kubelet and containers: run it as root"; exit 1; }

bin=$(bash "$here/build.sh" | tail -n 1)
mkdir -p "$TB/bin"
for b in kubectl kwokctl kubelet kube-proxy containerd ctr containerd-shim-runc-v2 coredns; do
  ln -sf "$bin/$b" "$TB/bin/$b"
done
kubectl=("$TB/bin/kubectl" --kubeconfig "$KUBECONFIG_PATH")

# What up changes is recorded first; the pod network and its drop rule come before any pod.
node_prepare

if ! apiserver_ready; then
  # A half-started or stale cluster from an earlier run: start over.
  if [ -d "$KWOK_WORKDIR/clusters/$CLUSTER" ]; then
    log "removing a stale cluster"
    "$bin/kwokctl" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_PATH" >/dev/null 2>&1 || true
    rm -rf "$NODE/pki"
  fi
  rm -f "$KUBECONFIG_PATH"
  pki="$KWOK_WORKDIR/clusters/$CLUSTER/pki"
  mkdir -p "$KWOK_WORKDIR"
  # The API server: the Service range, its Service IP and the node's address in its certificate
  # (pods reach it at kubernetes.default through kube-proxy), the node's address as the one it
  # advertises, and a client certificate for the kubelet's API (logs, exec, port-forward). The
  # KWOK controller manages only nodes marked fake: the real node is the kubelet's.
  cat >"$KWOK_WORKDIR/kwok.yaml" <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  kubeApiserverCertSANs: [$API_SERVICE_IP, $NODE_IP]
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - {key: service-cluster-ip-range, value: $SERVICE_CIDR}
  - {key: advertise-address, value: $NODE_IP}
  - {key: kubelet-preferred-address-types, value: "InternalIP,Hostname"}
  - {key: kubelet-client-certificate, value: $pki/admin.crt}
  - {key: kubelet-client-key, value: $pki/admin.key}
- name: kwok-controller
  extraArgs:
  - {key: manage-all-nodes, value: "false", override: true}
  - {key: manage-nodes-with-annotation-selector, value: kwok.x-k8s.io/node=fake}
YAML
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
    --wait 2m >"$TB/kwokctl.log" 2>&1 || { log "kwokctl failed; see $TB/kwokctl.log"; tail -n 20 "$TB/kwokctl.log" >&2; exit 1; }
fi
"${kubectl[@]}" apply --server-side --force-conflicts -f "$here/storageclass.yaml" -f "$here/policies.yaml" >/dev/null

log "starting the node $NODE_NAME (containerd $CONTAINERD_VERSION, kubelet $KUBERNETES_VERSION, kube-proxy, CoreDNS $COREDNS_VERSION)"
node_up
"${kubectl[@]}" wait --for=create "node/$NODE_NAME" --timeout=60s >/dev/null
"${kubectl[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=120s >/dev/null ||
  { log "the node did not become Ready; see $NODE/logs/kubelet.log"; tail -n 20 "$NODE/logs/kubelet.log" >&2; exit 1; }
# The default ServiceAccount must exist before pods can be created in "default".
"${kubectl[@]}" wait --for=create serviceaccount/default -n default --timeout=30s >/dev/null

cat >&2 <<MSG
testbed: up. Kubernetes $KUBERNETES_VERSION with one real node ($NODE_NAME): database pods run our images in containers.
  export KUBECONFIG=$KUBECONFIG_PATH
  kubectl get nodes        # kubectl $KUBERNETES_VERSION is at $TB/bin/kubectl
  make testbed-down        # stops everything and puts the machine back as it was
MSG
