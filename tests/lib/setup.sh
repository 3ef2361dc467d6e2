#!/usr/bin/env bash
# Installs what building and testing lambda_fdw needs, skipping what is
# already there: Debian packages, cargo-pgrx 0.16.1 (+ init for PostgreSQL 15),
# and the ministack Lambda emulator in its own venv.
set -euo pipefail

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
MINISTACK_VERSION=1.5.33
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

if [[ "$(cargo pgrx --version 2>/dev/null || true)" != *"0.16.1"* ]]; then
  log "installing cargo-pgrx 0.16.1 (takes several minutes)"
  cargo install cargo-pgrx --version 0.16.1 --locked
fi

if ! grep -qs '^pg15' "$HOME/.pgrx/config.toml"; then
  log "cargo pgrx init for PostgreSQL 15"
  cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

installed="$("$VENV/bin/pip" show ministack 2>/dev/null || true)"
if [[ ! -x "$VENV/bin/ministack" || "$installed" != *"Version: $MINISTACK_VERSION"* ]]; then
  log "installing ministack $MINISTACK_VERSION into $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "ministack==$MINISTACK_VERSION"
fi
