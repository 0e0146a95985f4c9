#!/usr/bin/env bash
# Installs the real migration tools that the end-to-end tests of `db migrate` run, from the Go
# module proxy and the npm registry, into a cache outside the repository (keyed by version):
# goose, node-pg-migrate, and the Prisma example's packages (examples/prisma, keyed by its lock
# file: installed once in prisma-<hash>/, which leaves them in npm's cache, so that a copy of the
# example installs offline in seconds). Prints the directory whose bin/ holds them.
set -euo pipefail
GOOSE_VERSION=v3.29.0
NODE_PG_MIGRATE_VERSION=9.0.0
PG_VERSION=8.23.1
cache=${STACKBLAZE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stackblaze/tools}/goose-${GOOSE_VERSION}_npm-${NODE_PG_MIGRATE_VERSION}
mkdir -p "$cache/bin"
if [ ! -x "$cache/bin/goose" ]; then
  echo "e2e-tools: building goose $GOOSE_VERSION" >&2
  # Only the PostgreSQL driver: the other drivers' tags keep the build small.
  GOBIN="$cache/bin" GOFLAGS= CGO_ENABLED=0 go install \
    -tags 'no_clickhouse no_libsql no_mssql no_mysql no_sqlite3 no_vertica no_ydb no_duckdb no_turso no_spanner no_starrocks' \
    "github.com/pressly/goose/v3/cmd/goose@$GOOSE_VERSION"
fi
if [ ! -x "$cache/node/node_modules/.bin/node-pg-migrate" ]; then
  command -v npm >/dev/null || { echo "e2e-tools: npm is missing (install nodejs and npm)" >&2; exit 1; }
  echo "e2e-tools: installing node-pg-migrate $NODE_PG_MIGRATE_VERSION" >&2
  mkdir -p "$cache/node"
  (cd "$cache/node" && [ -f package.json ] || echo '{"name":"stackblaze-e2e-tools","private":true}' > package.json)
  (cd "$cache/node" && npm install --no-audit --no-fund --loglevel=error "node-pg-migrate@$NODE_PG_MIGRATE_VERSION" "pg@$PG_VERSION" >&2)
  ln -sf "$cache/node/node_modules/.bin/node-pg-migrate" "$cache/bin/node-pg-migrate"
fi
root=$(cd "$(dirname "$0")/.." && pwd)
prisma="$cache/prisma-$(cat "$root/examples/prisma/package.json" "$root/examples/prisma/package-lock.json" | sha256sum | cut -c1-12)"
if [ ! -x "$prisma/node_modules/.bin/prisma" ]; then
  echo "e2e-tools: installing the Prisma example's packages" >&2
  rm -rf "$prisma" && mkdir -p "$prisma"
  cp "$root/examples/prisma/package.json" "$root/examples/prisma/package-lock.json" "$prisma/"
  # Without install scripts: Prisma's only try engine downloads that the example does not use (it
  # runs the Wasm schema engine, engine 'js').
  (cd "$prisma" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
fi
echo "$cache"
