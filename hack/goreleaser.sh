#!/usr/bin/env bash
# Builds goreleaser from the Go module proxy once into the user cache (keyed by version) and
# runs it with the given arguments. `make release-check` uses it.
set -euo pipefail
GORELEASER_VERSION=v2.15.1
cache=${STACKBLAZE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stackblaze/tools}/goreleaser-$GORELEASER_VERSION
if [ ! -x "$cache/goreleaser" ]; then
  echo "goreleaser: building $GORELEASER_VERSION (about 6 minutes the first time)" >&2
  mkdir -p "$cache"
  GOBIN="$cache" GOFLAGS= go install "github.com/goreleaser/goreleaser/v2@$GORELEASER_VERSION"
fi
exec "$cache/goreleaser" "$@"
