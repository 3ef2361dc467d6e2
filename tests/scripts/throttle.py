#!/usr/bin/env python3
"""One throttle for the whole cluster (library preloaded): 8 sessions fan out
at once to a stub function that answers 429 with `Retry-After: 1` for its
first second (`throttle-*`). The stub must see at most 2 x 8 requests in
that second (each fan-out starts two calls, and the first 429 holds the
function for every backend), every session then gets its rows, and a second
function called meanwhile is served in full. Then the queue worker: rows for
a throttled function are held while another function's rows are sent.

Prints `throttle_wasted_requests=<n> backends=<b>` for bench.py.

Usage: throttle.py [--scans-only]  (PGHOST/PGPORT/PGUSER from the environment; the stub on
127.0.0.1:$LAMBDA_FDW_STUB_PORT; the queue worker's database
$LAMBDA_FDW_QUEUE_DB)
"""
import json
import os
import sys
import threading
import time
import uuid

import psycopg

from pgcheck import one, wait_until

SESSIONS = 8
PAYLOADS = 20
MAX_CONCURRENCY = 10
STUB_PORT = os.environ.get("LAMBDA_FDW_STUB_PORT", "45661")
STUB = f"http://127.0.0.1:{STUB_PORT}"
DB = "lambda_fdw_throttle"
QUEUE_DB = os.environ.get("LAMBDA_FDW_QUEUE_DB", "lambda_fdw_queue")
failures = []


def check(what, ok, detail=""):
    print(f"throttle: {what}: {'ok' if ok else 'FAILED ' + str(detail)}", flush=True)
    if not ok:
        failures.append(what)


def connect(db):
    return psycopg.connect(dbname=db, autocommit=True)


def stub_window(conn, of, key):
    """(calls, calls within the first second) the stub saw for `of`/`key`."""
    row = conn.execute("SELECT (payload->>'calls')::int, (payload->>'within_window')::int "
                       "FROM aws_lambda.invoke('calls', %s::json, 'us-west-2')",
                       [json.dumps({"of": of, "key": key, "window_ms": 1000})]).fetchone()
    return row[0], row[1]


def setup(conn, concurrency=MAX_CONCURRENCY):
    conn.execute("CREATE EXTENSION IF NOT EXISTS lambda_fdw")
    conn.execute("DROP SERVER IF EXISTS thr CASCADE")
    conn.execute(f"CREATE SERVER thr FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-west-2', "
                 f"endpoint_url '{STUB}', max_attempts '5', max_concurrency '{concurrency}')")
    conn.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER thr "
                 "OPTIONS (aws_access_key_id 'AKIDTHR', aws_secret_access_key 'thr-secret')")


def test_scans():
    with connect("postgres") as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB}")
        admin.execute(f"CREATE DATABASE {DB}")
    conn = connect(DB)
    setup(conn)
    throttled = f"throttle-scan-{uuid.uuid4().hex[:8]}"
    conn.execute("CREATE FOREIGN TABLE held (payload jsonb, status_code int, response jsonb) "
                 f"SERVER thr OPTIONS (function_name '{throttled}')")
    conn.execute("CREATE FOREIGN TABLE other (payload jsonb, status_code int, response jsonb) "
                 "SERVER thr OPTIONS (function_name 'counted-echo')")
    other_key = f"other-{uuid.uuid4().hex[:8]}"
    results = [None] * SESSIONS
    others = [None] * SESSIONS
    start = threading.Barrier(SESSIONS)

    def session(s):
        with connect(DB) as c:
            payloads = [json.dumps({"s": s, "i": i}) for i in range(PAYLOADS)]
            start.wait()
            results[s] = c.execute(
                "SELECT count(*) FILTER (WHERE status_code = 200 AND response = payload), count(*) "
                "FROM held WHERE payload = ANY(%s::jsonb[])", [payloads]).fetchone()
            # The other function, while the throttled one may still be held.
            ps = [json.dumps({"key": other_key, "s": s, "i": i}) for i in range(PAYLOADS)]
            others[s] = c.execute(
                "SELECT count(*) FILTER (WHERE status_code = 200 AND response = payload) "
                "FROM other WHERE payload = ANY(%s::jsonb[])", [ps]).fetchone()[0]

    threads = [threading.Thread(target=session, args=(s,)) for s in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls, within = stub_window(conn, throttled, "throttle")
    check(f"the stub saw at most {2 * SESSIONS} requests in the throttle window", within <= 2 * SESSIONS,
          f"{within} of {calls}")
    check("every session got its rows, answered", results == [(PAYLOADS, PAYLOADS)] * SESSIONS, results)
    check("the other function served every call", others == [PAYLOADS] * SESSIONS, others)
    ocalls, _ = stub_window(conn, "counted-echo", other_key)
    check("the other function was called once per payload", ocalls == SESSIONS * PAYLOADS, ocalls)
    print(f"throttle_wasted_requests={within} backends={SESSIONS}", flush=True)
    conn.close()


def test_queue():
    # What this test makes in the worker's database it removes at the end,
    # so the suites after it find the database as they would without it.
    made_db = made_ext = made_server = False
    with connect("postgres") as admin:
        if one(admin, "SELECT count(*) FROM pg_database WHERE datname = %s", [QUEUE_DB]) == 0:
            admin.execute(f"CREATE DATABASE {QUEUE_DB}")
            made_db = True
    conn = connect(QUEUE_DB)
    if one(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'lambda_fdw'") == 0:
        conn.execute("CREATE EXTENSION lambda_fdw")
        made_ext = True
    # Every database with the extension has a worker: this database's.
    check("the queue worker runs", wait_until(conn, "SELECT count(*) = 1 FROM pg_stat_activity "
          "WHERE backend_type = 'lambda_fdw queue worker' AND datname = current_database()", timeout=20))
    if one(conn, "SELECT count(*) FROM pg_foreign_server WHERE srvoptions @> ARRAY['region=us-west-2']") == 0:
        setup(conn, 2)
        made_server = True
    throttled = f"throttle-queue-{uuid.uuid4().hex[:8]}"
    other_key = f"qother-{uuid.uuid4().hex[:8]}"
    ids = []
    with conn.transaction():
        for i in range(10):
            ids.append(one(conn, "SELECT lambda_fdw.enqueue(%s, %s, 'us-west-2')",
                           [throttled, json.dumps({"i": i})]))
        for i in range(10):
            ids.append(one(conn, "SELECT lambda_fdw.enqueue('counted-echo', %s, 'us-west-2')",
                           [json.dumps({"key": other_key, "i": i})]))
    done = wait_until(conn, "SELECT bool_and(state = 'succeeded') AND count(*) = %s "
                      "FROM lambda_fdw.invocations WHERE id = ANY(%s)", [len(ids), ids], 60)
    check("every queued row is delivered", done,
          conn.execute("SELECT state, count(*) FROM lambda_fdw.invocations WHERE id = ANY(%s) GROUP BY 1",
                       [ids]).fetchall())
    calls, within = stub_window(conn, throttled, "throttle")
    limit = one(conn, "SELECT coalesce((SELECT substr(o, 17)::int FROM pg_foreign_server, unnest(srvoptions) o "
                "WHERE srvoptions @> ARRAY['region=us-west-2'] AND o LIKE 'max_concurrency=%%'), 10)")
    check(f"the worker sent the throttled function at most its limit ({limit}) in the window",
          within <= limit, f"{within} of {calls}")
    ocalls, _ = stub_window(conn, "counted-echo", other_key)
    check("the other function's rows were each sent once", ocalls == 10, ocalls)
    if made_server:
        conn.execute("DROP SERVER thr CASCADE")
    if made_ext:
        conn.execute("DROP EXTENSION lambda_fdw CASCADE")
    conn.close()
    if made_db:
        with connect("postgres") as admin:
            admin.execute(f"DROP DATABASE {QUEUE_DB} WITH (FORCE)")


def main():
    os.environ["PGOPTIONS"] = "-c client_min_messages=warning"
    test_scans()
    if "--scans-only" not in sys.argv:  # bench.py's throttle_wasted_requests
        test_queue()
    if failures:
        sys.exit(f"throttle: {len(failures)} failed: {failures}")
    print("throttle: all passed")


if __name__ == "__main__":
    main()
