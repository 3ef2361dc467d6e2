#!/usr/bin/env bash
# Installs what building and testing lambda_fdw needs, skipping what is
# already there: Debian packages, supabase-wrappers' patched copy, cargo-pgrx
# 0.19.2 built with the toolchain of rust-toolchain.toml (+ init for
# PostgreSQL 15), and a venv with the ministack Lambda emulator and the
# PostgreSQL drivers the tests use (asyncpg, psycopg 3).
set -euo pipefail

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
MINISTACK_VERSION=1.5.33
ASYNCPG_VERSION=0.30.0
PSYCOPG_VERSION=3.2.10
VENV="${LAMBDA_FDW_VENV:-$HOME/.cache/lambda_fdw/ministack-venv}"

log() { printf '==> %s\n' "$*" >&2; }

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

if ! grep -qs '^pg15' "$HOME/.pgrx/config.toml"; then
  log "cargo pgrx init for PostgreSQL 15"
  (cd "$ROOT" && cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null)
fi

want=("ministack==$MINISTACK_VERSION" "asyncpg==$ASYNCPG_VERSION" "psycopg[binary]==$PSYCOPG_VERSION")
if [[ ! -x "$VENV/bin/ministack" || "$(cat "$VENV/.lambda_fdw-packages" 2>/dev/null)" != "${want[*]}" ]]; then
  log "installing ${want[*]} into $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${want[@]}"
  echo "${want[*]}" >"$VENV/.lambda_fdw-packages"
fi
