#!/usr/bin/env bash
# Builds the test bed's container images without a container engine or a registry, into the
# cache (keyed by the recipe, so a second run returns at once), and prints the archive paths:
#
#   images.sh postgres MAJOR   the database image stackblaze/postgres:MAJOR: a Debian root
#                              filesystem made with mmdebstrap from the distribution's packages
#                              (15 from bookworm, 17 from trixie) and images/postgres/install.sh,
#                              with images/postgres/entrypoint.sh, as the release's Dockerfile does
#   images.sh pause            the pod sandbox image (hack/testbed/pause, a static binary)
#   images.sh stackblaze BIN   the stackblaze image (images/stackblaze: the binary alone), from BIN
#
# Each archive is an OCI image layout that `ctr images import` reads (hack/testbed/ociimage).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

cache="$CACHE_ROOT/images"
mkdir -p "$cache"
ociimage() {
  local tool="$cache/bin/ociimage"
  if [ ! -x "$tool" ] || [ "$root/hack/testbed/ociimage/main.go" -nt "$tool" ]; then
    (cd "$root" && CGO_ENABLED=0 go build -o "$tool" ./hack/testbed/ociimage)
  fi
  "$tool" "$@"
}

# debian_mirror prints the Debian archive this machine's apt uses (the test bed reaches no other).
debian_mirror() {
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -E '/debian/?$' | head -n 1)
  [ -n "$m" ] || m=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '{for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { print $i; exit }}' | grep -E '/debian/?$' | head -n 1)
  [ -n "$m" ] || { log "no Debian archive in /etc/apt/sources.list*: cannot build the database images"; exit 1; }
  echo "${m%/}"
}

suite_for() {
  case "$1" in
    15) echo bookworm ;;
    17) echo trixie ;;
    *) log "PostgreSQL $1 is in no Debian suite the test bed can reach (15: bookworm, 17: trixie)"; exit 2 ;;
  esac
}

postgres_image() {
  local major=$1 suite key out rootfs
  suite=$(suite_for "$major")
  key=$(cat "$root/images/postgres/install.sh" "$root/images/postgres/entrypoint.sh" "$root/hack/testbed/images.sh" \
    "$root/hack/testbed/ociimage/main.go" | sha256sum | cut -c1-16)
  out="$cache/postgres-$major-$suite-$key.oci.tar"
  if [ -f "$out" ]; then echo "$out"; return; fi
  command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing: run 'make deps'"; exit 1; }
  rootfs="$cache/postgres-$major-rootfs.tar"
  log "building the database image stackblaze/postgres:$major from Debian $suite (a few minutes, once)"
  local lib=/usr/local/lib/stackblaze
  mmdebstrap --mode=root --variant=minbase --quiet --skip=cleanup/run \
    --include="$(sh "$root/images/postgres/install.sh" packages "$major" | tr ' ' ',')" \
    --essential-hook="mkdir -p \"\$1$lib\"" \
    --essential-hook="copy-in $root/images/postgres/install.sh $root/images/postgres/entrypoint.sh $lib" \
    --essential-hook="chroot \"\$1\" sh $lib/install.sh prepare" \
    --customize-hook="chroot \"\$1\" sh $lib/install.sh finish $major" \
    --customize-hook="chmod 755 \"\$1$lib/install.sh\" \"\$1$lib/entrypoint.sh\"" \
    "$suite" "$rootfs" "deb $(debian_mirror) $suite main" >&2
  ociimage -name "stackblaze/postgres:$major" -out "$out" -layer "$rootfs" \
    -entrypoint "$lib/entrypoint.sh" -cmd postgres -user 999:999 -workdir /var/lib/postgresql -stop-signal SIGINT \
    -env "PATH=/usr/lib/postgresql/current/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    -env PGDATA=/var/lib/postgresql/data/pgdata -env PGHOST=/var/run/postgresql -env LANG=C.UTF-8
  rm -f "$rootfs"
  # Older builds of the same major are of no use any more.
  find "$cache" -maxdepth 1 -name "postgres-$major-*.oci.tar" ! -path "$out" -delete
  echo "$out"
}

# binary_image makes a one-layer image of a static binary at /usr/local/bin/NAME.
binary_image() {
  local name=$1 bin=$2 out=$3 user=$4 dir layer
  dir=$(mktemp -d)
  install -D -m 755 "$bin" "$dir/root/usr/local/bin/$name"
  layer="$dir/layer.tar"
  tar -C "$dir/root" --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -cf "$layer" .
  ociimage -name "$5" -out "$out" -layer "$layer" -entrypoint "/usr/local/bin/$name" -user "$user"
  rm -rf "$dir"
}

case "${1:-}" in
  postgres) postgres_image "${2:?usage: images.sh postgres MAJOR}" ;;
  pause)
    out="$cache/pause.oci.tar"
    if [ ! -f "$out" ] || [ "$root/hack/testbed/pause/main.go" -nt "$out" ]; then
      tmp=$(mktemp -d)
      (cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/pause" ./hack/testbed/pause)
      binary_image pause "$tmp/pause" "$out" 65535:65535 "$PAUSE_IMAGE"
      rm -rf "$tmp"
    fi
    echo "$out"
    ;;
  stackblaze)
    bin=${2:?usage: images.sh stackblaze BINARY}
    out="$cache/stackblaze-$(sha256sum "$bin" | cut -c1-16).oci.tar"
    [ -f "$out" ] || binary_image stackblaze "$bin" "$out" 65532:65532 "$STACKBLAZE_IMAGE"
    find "$cache" -maxdepth 1 -name 'stackblaze-*.oci.tar' ! -path "$out" -mmin +60 -delete
    echo "$out"
    ;;
  *) echo "usage: images.sh postgres MAJOR | pause | stackblaze BINARY" >&2; exit 2 ;;
esac
