#!/usr/bin/env bash
# Builds the test bed's binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kubelet, kube-proxy, kwok, kwokctl; containerd, ctr and the runc shim; CoreDNS) from the
# Go module proxy into a cache outside the repository, keyed by version.
# A second run with the same versions finds them and returns at once.
# Prints the directory that holds the binaries on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${STACKBLAZE_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stackblaze/testbed}
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
bin="$cache_root/$key/bin"
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy kwok kwokctl
  containerd ctr containerd-shim-runc-v2 coredns)

have_all() {
  for b in "${want[@]}"; do [ -x "$bin/$b" ] || return 1; done
  # containerd and CoreDNS are linked from directories of their own versions.
  [ -x "$cache_root/containerd-$CONTAINERD_VERSION/bin/containerd" ] && [ -x "$cache_root/coredns-$COREDNS_VERSION/bin/coredns" ]
}
if have_all; then
  echo "$bin"
  exit 0
fi

log() { echo "testbed-build: $*" >&2; }
work="$cache_root/$key/src"
mkdir -p "$bin" "$work"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOWORK=off
export CGO_ENABLED=0

# Kubernetes: a small module that requires k8s.io/kubernetes and points each staging module
# (the "=> ./staging/..." replaces of its go.mod) at the published module of the same version.
k8s_minor=${KUBERNETES_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
staging_version="v0.${KUBERNETES_VERSION#v1.}"
if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ] || [ ! -x "$bin/kube-scheduler" ] || [ ! -x "$bin/kubectl" ] || [ ! -x "$bin/kubelet" ] || [ ! -x "$bin/kube-proxy" ]; then
  log "building Kubernetes $KUBERNETES_VERSION control plane (about 15 minutes the first time on 2 cores)"
  d="$work/kubernetes"; mkdir -p "$d"; cd "$d"
  kmod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  {
    echo "module stackblaze.local/testbed/kubernetes"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    grep -E '^[[:space:]]*k8s\.io/[^ ]+ => \./staging/' "$kmod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > go.mod
  [ -f main.go ] || printf 'package main\n\nfunc main() {}\n' > main.go
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor -X k8s.io/component-base/version.gitTreeState=clean"
  go mod download k8s.io/kubernetes >/dev/null
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    [ -x "$bin/$c" ] && continue
    log "  $c"
    go build -trimpath -ldflags "$ldflags" -o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$bin/$c.tmp" "$bin/$c"
  done
fi

if [ ! -x "$bin/etcd" ]; then
  log "building etcd $ETCD_VERSION"
  d="$work/etcd"; mkdir -p "$d"; cd "$d"
  printf 'module stackblaze.local/testbed/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
  [ -f main.go ] || printf 'package main\n\nfunc main() {}\n' > main.go
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$bin/etcd.tmp" "$bin/etcd"
fi

if [ ! -x "$bin/kwok" ] || [ ! -x "$bin/kwokctl" ]; then
  log "building kwok $KWOK_VERSION"
  d="$work/kwok"; mkdir -p "$d"; cd "$d"
  printf 'module stackblaze.local/testbed/kwok\n\ngo 1.26\n\nrequire sigs.k8s.io/kwok %s\n' "$KWOK_VERSION" > go.mod
  [ -f main.go ] || printf 'package main\n\nfunc main() {}\n' > main.go
  for c in kwok kwokctl; do
    go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" -o "$bin/$c.tmp" "sigs.k8s.io/kwok/cmd/$c"
    mv "$bin/$c.tmp" "$bin/$c"
  done
fi

# containerd, keyed by its own version: the node's container runtime (CGO off: a static build
# without the btrfs and devmapper snapshotters, which need C libraries).
ctrd="$cache_root/containerd-$CONTAINERD_VERSION"
if [ ! -x "$ctrd/bin/containerd" ] || [ ! -x "$ctrd/bin/ctr" ] || [ ! -x "$ctrd/bin/containerd-shim-runc-v2" ]; then
  log "building containerd $CONTAINERD_VERSION (about 7 minutes the first time on 2 cores)"
  d="$ctrd/src"; mkdir -p "$d" "$ctrd/bin"; cd "$d"
  printf 'module stackblaze.local/testbed/containerd\n\ngo 1.26\n\nrequire github.com/containerd/containerd/v2 %s\n' "$CONTAINERD_VERSION" > go.mod
  [ -f main.go ] || printf 'package main\n\nfunc main() {}\n' > main.go
  go mod download github.com/containerd/containerd/v2 >/dev/null
  for c in containerd ctr containerd-shim-runc-v2; do
    [ -x "$ctrd/bin/$c" ] && continue
    log "  $c"
    go build -trimpath -tags "no_btrfs no_devmapper no_zfs" \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
      -o "$ctrd/bin/$c.tmp" "github.com/containerd/containerd/v2/cmd/$c"
    mv "$ctrd/bin/$c.tmp" "$ctrd/bin/$c"
  done
fi

# CoreDNS with the plugins the cluster DNS needs and nothing that forwards a query off the machine.
cdns="$cache_root/coredns-$COREDNS_VERSION"
if [ ! -x "$cdns/bin/coredns" ]; then
  log "building CoreDNS $COREDNS_VERSION"
  d="$cdns/src"; mkdir -p "$d" "$cdns/bin"; cd "$d"
  printf 'module stackblaze.local/testbed/coredns\n\ngo 1.26\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" > go.mod
  cat > main.go <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	"github.com/coredns/coredns/coremain"
)

func init() {
	dnsserver.Directives = []string{"bind", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
  go mod tidy >/dev/null 2>&1 || go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$cdns/bin/coredns.tmp" .
  mv "$cdns/bin/coredns.tmp" "$cdns/bin/coredns"
fi
for c in containerd ctr containerd-shim-runc-v2; do ln -sf "$ctrd/bin/$c" "$bin/$c"; done
ln -sf "$cdns/bin/coredns" "$bin/coredns"

have_all || { log "some binaries are missing from $bin"; exit 1; }
echo "$bin"
