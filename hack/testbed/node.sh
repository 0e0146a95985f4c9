# The test bed's real node: containerd with runc and the CNI bridge, a kubelet, kube-proxy, CoreDNS
# and the volume provisioner, on this machine. Sourced by up.sh and down.sh (after lib.sh).
#
# What it changes on the machine, and down puts back: processes (their pids in $NODE/pids), the
# bridge $BRIDGE, the iptables chain $CHAIN (and kube-proxy's KUBE-* chains: iptables is restored
# to what it was before up), the cgroup $CGROUP_ROOT under each controller, the sysctls in
# $NODE_SYSCTLS, mounts under $TB and $RUNDIR, and the directories outside them that the kubelet
# or the CNI plugins create when missing ($HOST_DIRS).

NODE_NAME=testbed-node
BRIDGE=sbtb0
POD_CIDR=10.89.0.0/24
NODE_IP=10.89.0.1
SERVICE_CIDR=10.96.0.0/12
API_SERVICE_IP=10.96.0.1
CLUSTER_DOMAIN=cluster.local
CHAIN=STACKBLAZE-TESTBED
CGROUP_ROOT=stackblaze-testbed
NODE="$TB/node"
# Sockets need short paths: runtime state lives under /run, in a directory of this test bed's own.
RUNDIR="/run/stackblaze-testbed-$(printf '%s' "$TB" | sha256sum | cut -c1-12)"
CONTAINERD_SOCK="$RUNDIR/containerd.sock"
# Which test bed owns the node's machine-wide names (removed by down).
OWNER=/run/stackblaze-testbed.owner
NODE_SYSCTLS="net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max"
# The kubelet keeps its device-plugin socket under /var/lib/kubelet whatever its root directory.
HOST_DIRS="/var/lib/cni /var/log/containers /run/containerd /var/run/netns /etc/cni /var/lib/kubelet /usr/libexec/kubernetes"

# ctr_ runs ctr against the node's containerd (without its cgroup v1 deprecation notice).
ctr_() { "$TB/bin/ctr" --address "$CONTAINERD_SOCK" -n k8s.io "$@" 2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2); }

# node_pid NAME prints the pid of the node's component NAME when that process is alive and is
# still ours (its command line names the component: a pid reused after a reboot is not).
node_pid() {
  local pid
  [ -f "$NODE/pids/$1" ] || return 1
  pid=$(cat "$NODE/pids/$1")
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$1" || return 1
  echo "$pid"
}

node_pid_alive() { node_pid "$1" >/dev/null; }

# start NAME LOGFILE CMD...: runs CMD in its own session, its pid in $NODE/pids/NAME.
node_start() {
  local name=$1 logf=$2; shift 2
  node_pid_alive "$name" && return 0
  setsid "$@" </dev/null >>"$logf" 2>&1 &
  echo $! >"$NODE/pids/$name"
}

node_wait() { # node_wait SECONDS DESCRIPTION CMD...
  local n=$(( $1 * 10 )) what=$2; shift 2
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "$what did not come up; see $NODE/logs"
  return 1
}

# node_record_machine saves what up changes, before it changes anything, once.
node_record_machine() {
  local before="$NODE/before"
  [ -d "$before" ] && return 0
  mkdir -p "$before.tmp"
  for k in $NODE_SYSCTLS; do
    v=$(sysctl -n "$k" 2>/dev/null) && printf '%s=%s\n' "$k" "$v"
  done >"$before.tmp/sysctls"
  iptables-save -c >"$before.tmp/iptables"
  ip6tables-save -c >"$before.tmp/ip6tables" 2>/dev/null || true
  for d in $HOST_DIRS; do [ -e "$d" ] && echo "$d"; done >"$before.tmp/host-dirs"
  [ -d /proc/sys/net/bridge ] && echo loaded >"$before.tmp/br_netfilter"
  mv "$before.tmp" "$before"
}

# node_network: the bridge with the node's address, forwarding on, and the rule that keeps
# everything a pod sends on this machine: from the bridge, only the node's address and the pods
# are reached (Services are translated to those before the rule sees the packet); anything else
# is dropped and counted. It sits in the mangle table, which runs before the filter table's rules
# (kube-proxy's included) on the same hooks, so nothing that accepts a packet earlier can bypass it.
node_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  fi
  # Pin the bridge's MAC address. One the kernel picked (addr_assign_type 1) follows the lowest
  # MAC of the bridge's ports, so it changes whenever a pod's veth comes or goes; the pods keep
  # the old one for the node's address 10.89.0.1 in their ARP caches (up to ~50 s), and all they
  # send to it meanwhile (DNS queries to CoreDNS, Service traffic) is lost: lookups fail with
  # EAI_AGAIN ("Temporary failure in name resolution"). An address that was set (type 3) stays.
  [ "$(cat "/sys/class/net/$BRIDGE/addr_assign_type")" = 3 ] ||
    ip link set "$BRIDGE" address "$(cat "/sys/class/net/$BRIDGE/address")"
  ip link set "$BRIDGE" up
  # Service traffic between pods of the bridge must pass iptables (kube-proxy's translations).
  [ -d /proc/sys/net/bridge ] || modprobe br_netfilter
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 >/dev/null
  if ! iptables -t mangle -nL "$CHAIN" >/dev/null 2>&1; then
    iptables -t mangle -N "$CHAIN"
    iptables -t mangle -A "$CHAIN" -d "$POD_CIDR" -j RETURN
    iptables -t mangle -A "$CHAIN" -d "$NODE_IP" -j RETURN
    iptables -t mangle -A "$CHAIN" -m comment --comment "stackblaze test bed: pods reach only this node, its pods and its Services" -j DROP
    for hook in INPUT FORWARD; do iptables -t mangle -I "$hook" 1 -i "$BRIDGE" -j "$CHAIN"; done
    if command -v ip6tables >/dev/null; then
      ip6tables -t mangle -N "$CHAIN" 2>/dev/null || true
      ip6tables -t mangle -A "$CHAIN" -j DROP
      ip6tables -t mangle -I INPUT 1 -i "$BRIDGE" -j "$CHAIN"
      ip6tables -t mangle -I FORWARD 1 -i "$BRIDGE" -j "$CHAIN"
    fi
  fi
}

node_cgroups() {
  local c
  for c in /sys/fs/cgroup/*/; do
    [ -L "${c%/}" ] && continue
    mkdir -p "$c$CGROUP_ROOT"
  done
  # cpuset children start empty: give the test bed's root the machine's cpus and memory nodes.
  if [ -d "/sys/fs/cgroup/cpuset/$CGROUP_ROOT" ]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$CGROUP_ROOT/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$CGROUP_ROOT/cpuset.mems"
  fi
}

node_certs() {
  local pki="$KWOK_WORKDIR/clusters/$CLUSTER/pki" d="$NODE/pki"
  [ -f "$d/node.crt" ] && return 0
  mkdir -p "$d"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$d/node.key" -subj "/O=system:nodes/CN=system:node:$NODE_NAME" \
    -out "$d/node.csr" 2>/dev/null
  openssl x509 -req -in "$d/node.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 3650 \
    -extfile <(printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n') \
    -out "$d/node.crt" 2>/dev/null
  local server
  server=$("$TB/bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  cat >"$NODE/kubelet.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster: {certificate-authority: $pki/ca.crt, server: "$server"}
users:
- name: node
  user: {client-certificate: $d/node.crt, client-key: $d/node.key}
contexts:
- name: node
  context: {cluster: testbed, user: node}
current-context: node
KC
}

node_containerd() {
  local cni="$NODE/cni"
  mkdir -p "$NODE/containerd" "$cni/net.d" "$cni/ipam" "$RUNDIR"
  cat >"$cni/net.d/10-testbed.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "testbed",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
CNI
  # containerd keeps everything under $NODE and $RUNDIR: shim sockets, runc state and network
  # namespaces included; the plugins that would write elsewhere on the host are off.
  cat >"$NODE/containerd/config.toml" <<TOML
version = 3
root = "$NODE/containerd/root"
state = "$RUNDIR/containerd"
disabled_plugins = [
  "io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri", "io.containerd.image-verifier.v1.bindir",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.monitor.container.v1.restart", "io.containerd.http.v1.pprof",
]

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins]
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = "$RUNDIR/s"
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
  [plugins.'io.containerd.cri.v1.runtime']
    # Root here lacks CAP_SYS_RESOURCE: a sandbox asking for a negative OOM score would fail.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    disable_apparmor = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        runtime_path = '$TB/bin/containerd-shim-runc-v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$(command -v runc)'
          Root = '$RUNDIR/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '$cni/net.d'
      max_conf_num = 1
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '$NODE/containerd/registries'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$PAUSE_IMAGE'
TOML
  # The node pulls nothing: every registry is this closed local port, so an image that was not
  # imported fails at once (ErrImagePull), without a name lookup or a packet leaving the machine.
  mkdir -p "$NODE/containerd/registries/_default"
  cat >"$NODE/containerd/registries/_default/hosts.toml" <<TOML
server = "https://127.0.0.1:9"
[host."https://127.0.0.1:9"]
  capabilities = ["pull", "resolve"]
TOML
  PATH="$TB/bin:$PATH" node_start containerd "$NODE/logs/containerd.log" "$TB/bin/containerd" --config "$NODE/containerd/config.toml"
  node_wait 30 containerd ctr_ version
}

node_images() {
  local img archive
  for img in pause $(printf "postgres:%s " $PG_MAJORS); do
    img=${img/:/ }
    # shellcheck disable=SC2086
    archive=$(bash "$here/images.sh" $img | tail -n 1)
    ctr_ images import --no-unpack=false --snapshotter overlayfs "$archive" >/dev/null
  done
  ( cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$NODE/stackblaze" ./cmd/stackblaze )
  ctr_ images import --snapshotter overlayfs "$(bash "$here/images.sh" stackblaze "$NODE/stackblaze" | tail -n 1)" >/dev/null
}

node_kubelet() {
  : >"$NODE/resolv.conf"
  cat >"$NODE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
failSwapOn: false
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $KWOK_WORKDIR/clusters/$CLUSTER/pki/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$NODE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $NODE/resolv.conf
podLogsDir: $NODE/pod-logs
volumePluginDir: $NODE/volume-plugins
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
maxPods: 200
protectKernelDefaults: false
makeIPTablesUtilChains: false
localStorageCapacityIsolation: true
fileCheckFrequency: 1s
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
YAML
  node_start kubelet "$NODE/logs/kubelet.log" "$TB/bin/kubelet" --config "$NODE/kubelet.yaml" \
    --kubeconfig "$NODE/kubelet.kubeconfig" --root-dir "$NODE/kubelet" --cert-dir "$NODE/kubelet/pki" \
    --hostname-override "$NODE_NAME" \
    --node-ip "$NODE_IP" --node-labels "stackblaze.io/testbed=real"
}

node_proxy() {
  cat >"$NODE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $KUBECONFIG_PATH}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {localhostNodePorts: false, masqueradeAll: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
nodePortAddresses: [$NODE_IP/32]
YAML
  node_start kube-proxy "$NODE/logs/kube-proxy.log" "$TB/bin/kube-proxy" --config "$NODE/kube-proxy.yaml"
}

node_dns() {
  cat >"$NODE/Corefile" <<CORE
.:53 {
    bind $NODE_IP
    errors
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_PATH
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
CORE
  node_start coredns "$NODE/logs/coredns.log" "$TB/bin/coredns" -conf "$NODE/Corefile"
}

node_provisioner() {
  mkdir -p "$NODE/volumes"
  ( cd "$root" && go build -o "$NODE/provisioner" ./hack/testbed/provisioner )
  node_start provisioner "$NODE/logs/provisioner.log" "$NODE/provisioner" --kubeconfig "$KUBECONFIG_PATH" \
    --node "$NODE_NAME" --volumes "$NODE/volumes"
}

# node_prepare records the machine and sets up the pod network and its drop rule: before the
# control plane, so that no pod can ever start without the rule.
node_prepare() {
  # The node's names (bridge, chain, cgroup, ports) are the machine's: one test bed at a time.
  if [ -f "$OWNER" ] && [ "$(cat "$OWNER")" != "$TB" ] && ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "another test bed is up on this machine ($(cat "$OWNER")): run make testbed-down there first"
    exit 1
  fi
  echo "$TB" >"$OWNER"
  mkdir -p "$NODE/pids" "$NODE/logs"
  node_record_machine
  node_network
}

# node_up starts the node's components (once the control plane is up: the node needs its CA).
node_up() {
  node_cgroups
  node_certs
  node_containerd
  node_images
  node_kubelet
  node_proxy
  node_dns
  node_provisioner
}

# node_down stops the node and puts the machine back as node_record_machine found it.
node_down() {
  [ -d "$NODE" ] || return 0
  local p
  for p in provisioner coredns kube-proxy kubelet; do node_stop "$p"; done
  # Every container process lives in the test bed's cgroup: kill them all, then the shims.
  node_stop containerd
  local shims id
  # The shims name containerd's socket (their own path is the resolved binary's).
  shims=$(pgrep -f -- "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true)
  if [ -d "$RUNDIR/runc/k8s.io" ]; then
    for id in $(runc --root "$RUNDIR/runc/k8s.io" list -q 2>/dev/null); do
      runc --root "$RUNDIR/runc/k8s.io" delete --force "$id" >/dev/null 2>&1 || true
    done
  fi
  node_kill_cgroup
  # shellcheck disable=SC2086
  [ -z "$shims" ] || kill -KILL $shims 2>/dev/null || true
  # Mounts: containers' root filesystems, sandboxes' /dev/shm, network namespaces, volumes.
  local m
  for m in $(awk -v a="$TB/" -v b="$RUNDIR/" 'index($5, a) == 1 || index($5, b) == 1 || $5 == substr(b, 1, length(b) - 1) {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  # The volumes' loop devices (hack/testbed/provisioner): an unmount frees them, a lazy one once
  # the last user is gone; any left are detached here.
  local dev file
  while read -r dev file; do
    case "$file" in "$TB"/*) losetup -d "$dev" 2>/dev/null || true ;; esac
  done < <(losetup -n -l -O NAME,BACK-FILE 2>/dev/null || true)
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  local before="$NODE/before"
  if [ -f "$before/iptables" ]; then
    "$TB/bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
    iptables-restore -c <"$before/iptables"
    [ ! -s "$before/ip6tables" ] || ip6tables-restore -c <"$before/ip6tables"
  fi
  node_rm_cgroups
  if [ -f "$before/sysctls" ]; then
    while IFS= read -r kv; do sysctl -qw "$kv" >/dev/null 2>&1 || true; done <"$before/sysctls"
  fi
  if [ -d "$before" ] && [ ! -f "$before/br_netfilter" ]; then modprobe -r br_netfilter 2>/dev/null || true; fi
  rm -rf "$RUNDIR"
  if [ "$(cat "$OWNER" 2>/dev/null)" = "$TB" ]; then rm -f "$OWNER"; fi
}

# node_remove_host_dirs removes the directories outside the test bed that were not there before
# up (the kubelet, containerd's CNI and the controller manager make some when missing). down.sh
# calls it last, once nothing of the test bed runs that could make them again.
node_remove_host_dirs() {
  local d before="$NODE/before"
  [ -f "$before/host-dirs" ] || return 0
  for d in $HOST_DIRS; do
    if [ -e "$d" ] && ! grep -qxF "$d" "$before/host-dirs"; then rm -rf "$d" || log "could not remove $d"; fi
  done
}

node_stop() {
  local name=$1 pid
  if pid=$(node_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$NODE/pids/$name"
}

node_kill_cgroup() {
  local pids
  for _ in $(seq 1 50); do
    pids=$({ find "/sys/fs/cgroup/pids/$CGROUP_ROOT" "/sys/fs/cgroup/memory/$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null || true; } | sort -u)
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  log "processes are still running in the cgroup $CGROUP_ROOT: $pids"
}

node_rm_cgroups() {
  local c
  for c in /sys/fs/cgroup/*/; do
    [ -d "$c$CGROUP_ROOT" ] || continue
    find "$c$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}
