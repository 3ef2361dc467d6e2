#!/usr/bin/env python3
"""What an aborted scan leaves behind, measured by the backend's resident
memory (/proc/<pid>/status, VmRSS). One session runs, against the stub's
`sleep-echo` (50 ms a call), with max_concurrency 8:

- 500 fan-outs of 40 payloads cancelled mid-flight by statement_timeout;
- 500 fan-outs of 40 payloads cancelled mid-flight by pg_cancel_backend from
  a second connection;
- 500 joins (a parameterized scan, one call per outer row) cancelled mid-way;
- 500 batched fan-outs (2,000 rows in batches of 50, each batch 50 ms, the
  stub's `batch-lambda_fdw-50ms`) cancelled mid-flight by statement_timeout;
- 300 fan-outs ended by an error (a function error in the middle).

After a warm-up of each kind, RSS may grow by less than 5 MB per kind, and
the session must still answer a query correctly after each kind.

Usage: aborts.py (PGHOST/PGPORT/PGUSER from the environment; the stub on
127.0.0.1:$LAMBDA_FDW_STUB_PORT, default 45661). Runs with the test venv's
python, which has psycopg.
"""
import os
import sys
import threading
import time

import psycopg

from procstat import rss_kb

STUB_PORT = os.environ.get("LAMBDA_FDW_STUB_PORT", "45661")
DB = "lambda_fdw_aborts"
HOST = os.environ["PGHOST"]
PORT = int(os.environ["PGPORT"])
USER = os.environ.get("PGUSER", "postgres")
LIMIT_KB = 5 * 1024
WARMUP = 50

SETUP = f"""
CREATE EXTENSION lambda_fdw;
CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:{STUB_PORT}',
           max_attempts '1', max_concurrency '8');
CREATE USER MAPPING FOR CURRENT_USER SERVER stub
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE sleepy (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'sleep-echo');
CREATE FOREIGN TABLE mixed (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'handled-error');
CREATE FOREIGN TABLE batched (payload jsonb, response jsonb) SERVER stub
  OPTIONS (function_name 'batch-lambda_fdw-50ms', batch_size '50');
CREATE TABLE docs AS SELECT i AS id, jsonb_build_object('ms', 50, 'i', i) AS doc FROM generate_series(1, 40) i;
"""
FANOUT = "SELECT count(*) FROM sleepy WHERE payload = ANY(ARRAY(SELECT doc || jsonb_build_object('r', %s) FROM docs))"
BATCHED = ("SELECT count(*) FROM batched WHERE payload = "
           "ANY(ARRAY(SELECT to_jsonb(i * 1000 + %s) FROM generate_series(1, 2000) i))")
JOIN = "SELECT count(*) FROM docs d JOIN sleepy s ON s.payload = d.doc || jsonb_build_object('r', %s)"


def expect_abort(conn, sql, args, sqlstate):
    try:
        conn.execute(sql, args)
    except psycopg.Error as e:
        if e.sqlstate != sqlstate:
            raise
        return
    raise AssertionError(f"{sql} was not aborted")


def by_timeout(conn, n, sql):
    conn.execute("SET statement_timeout = '120ms'")
    for r in range(n):
        expect_abort(conn, sql, [r], "57014")
    conn.execute("RESET statement_timeout")


def by_cancel(conn, n, sql):
    pid = conn.info.backend_pid
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname=DB, autocommit=True) as other:
        for r in range(n):
            t = threading.Timer(0.08, lambda: other.execute("SELECT pg_cancel_backend(%s)", [pid]))
            t.start()
            expect_abort(conn, sql, [r], "57014")
            t.join()


def by_error(conn, n, _sql):
    # The stub's handled-error function fails every call: the first outcome
    # raises while the other calls are in flight.
    for r in range(n):
        expect_abort(conn, "SELECT count(*) FROM mixed WHERE payload = ANY(ARRAY(SELECT doc || jsonb_build_object('r', %s) FROM docs))", [r], "38000")


def main():
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname="postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB}")
        c.execute(f"CREATE DATABASE {DB}")
    failed = False
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname=DB, autocommit=True) as conn:
        conn.execute(SETUP)
        pid = conn.info.backend_pid
        kinds = [
            ("fan-outs cancelled by statement_timeout", by_timeout, FANOUT, 500),
            ("fan-outs cancelled by pg_cancel_backend", by_cancel, FANOUT, 500),
            ("joins cancelled by statement_timeout", by_timeout, JOIN, 500),
            ("batched fan-outs cancelled by statement_timeout", by_timeout, BATCHED, 500),
            ("fan-outs ended by a function error", by_error, FANOUT, 300),
        ]
        for what, run, sql, n in kinds:
            run(conn, WARMUP, sql)
            before = rss_kb(pid)
            started = time.monotonic()
            run(conn, n, sql)
            grown = rss_kb(pid) - before
            ok_after = conn.execute(
                "SELECT count(*) FROM sleepy WHERE payload IN ('{\"ms\": 1, \"a\": 1}', '{\"ms\": 1, \"a\": 2}')"
            ).fetchone()[0] == 2
            verdict = "ok" if grown < LIMIT_KB and ok_after else "FAIL"
            failed |= verdict != "ok"
            print(f"aborts: {n} {what}: RSS {before} kB -> {before + grown} kB "
                  f"({grown:+d} kB, limit {LIMIT_KB} kB), session usable: {ok_after}, "
                  f"{time.monotonic() - started:.1f} s: {verdict}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
