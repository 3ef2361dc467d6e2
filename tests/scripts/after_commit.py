#!/usr/bin/env python3
"""The after-commit queue, against the suite's PostgreSQL (library preloaded;
the worker of database $QUEUE_DB), ministack and the stub.

Deliveries are counted by what the functions received: ministack's `record`
function appends each event to /tmp/lambda_fdw_records/<key>; the stub counts
calls per key (`calls`). Crash tests restart the cluster through
tests/harness/services.sh. Exits non-zero on the first failed check.
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import psycopg

from pgcheck import PG_LOG, RECORDS, connect as connect_db, error_of, error_parts, log_count, one, recorded, wait_for, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DB = os.environ.get("LAMBDA_FDW_QUEUE_DB", "lambda_fdw_queue")
MINISTACK = f"http://127.0.0.1:{os.environ.get('LAMBDA_FDW_MINISTACK_PORT', '45660')}"
STUB = f"http://127.0.0.1:{os.environ.get('LAMBDA_FDW_STUB_PORT', '45661')}"
RUN = str(int(time.time()))  # keys are unique per run
# Owns the worker's database, and is no superuser.
MALLORY = "queue_mallory"
# The states a row goes through: the worker's RowState (src/queue/state.rs,
# whose in-database test compares them with a fresh CREATE EXTENSION's).
ROW_STATES = {"queued", "sending", "succeeded", "failed", "cancelled"}


def check(what, ok, detail=""):
    print(f"after_commit: {what}: {'ok' if ok else 'FAILED ' + str(detail)}", flush=True)
    if not ok:
        sys.exit(1)


def connect(db=DB):
    return connect_db(db)


def settled(conn, ids, timeout=30.0):
    """Waits until the invocations `ids` are all succeeded or failed."""
    return wait_until(conn, "SELECT bool_and(state IN ('succeeded', 'failed')) AND count(*) = %s "
                      "FROM lambda_fdw.invocations WHERE id = ANY(%s)", [len(ids), ids], timeout)


def stub_calls(conn, of, key):
    return one(conn, "SELECT (payload->>'calls')::int FROM aws_lambda.invoke('calls', %s::json, 'us-west-2')",
               [json.dumps({"of": of, "key": key})])


def worker_pid(conn):
    row = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'lambda_fdw queue worker' "
                       "AND datname = current_database()").fetchone()
    return row[0] if row else None


def row_states(conn):
    """The states the queue table's CHECK constraint on `state` allows."""
    definition = one(conn, "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
                     "JOIN pg_attribute a ON a.attrelid = c.conrelid AND c.conkey = ARRAY[a.attnum] "
                     "WHERE c.conrelid = 'lambda_fdw.invocations'::regclass AND c.contype = 'c' AND a.attname = 'state'")
    return set(re.findall(r"'([^']*)'", definition or ""))


def services(command):
    subprocess.run(["bash", "-c", f"source tests/harness/services.sh && {command}"], cwd=ROOT, check=True)


def setup():
    with connect("postgres") as c:
        # Databases without the extension have no worker (each was looked
        # at by one that exited at once).
        time.sleep(1.5)
        n = one(c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'lambda_fdw queue worker' "
                "AND datname = 'postgres'")
        check(f"a database without the extension has no queue worker ({n})", n == 0, n)
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        # The database is owned by a role without superuser rights, as a
        # managed service's users own theirs: it may CREATE in it.
        c.execute(f"DROP ROLE IF EXISTS {MALLORY}")
        c.execute(f"CREATE ROLE {MALLORY}")
        c.execute(f"CREATE DATABASE {DB} OWNER {MALLORY}")
    conn = connect()
    test_planted_queue(conn, "before CREATE EXTENSION")
    e = error_of(conn, "CREATE EXTENSION lambda_fdw")
    check("CREATE EXTENSION refuses to adopt a planted lambda_fdw schema", e == (
        "42P06", 'schema "lambda_fdw" already exists'), e)
    conn.execute("DROP SCHEMA lambda_fdw CASCADE")
    for sql in [
        "CREATE EXTENSION lambda_fdw",
        f"CREATE SERVER ms FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', endpoint_url '{MINISTACK}')",
        "CREATE USER MAPPING FOR PUBLIC SERVER ms OPTIONS (aws_access_key_id 'test', aws_secret_access_key 'test')",
        f"CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-west-2', endpoint_url '{STUB}', max_attempts '3')",
        "CREATE USER MAPPING FOR CURRENT_USER SERVER stub OPTIONS (aws_access_key_id 'AKIDQUEUE', aws_secret_access_key 'queue-secret')",
        "CREATE FOREIGN TABLE record (payload jsonb, response jsonb) SERVER ms OPTIONS (function_name 'record')",
        "CREATE FOREIGN TABLE counted (payload jsonb, qualifier text, invocation_type text, context jsonb, status_code int, response jsonb) "
        "SERVER stub OPTIONS (function_name 'counted-echo')",
        "DROP ROLE IF EXISTS queue_alice", "DROP ROLE IF EXISTS queue_bob",
        "CREATE ROLE queue_alice", "CREATE ROLE queue_bob",
        "GRANT USAGE ON FOREIGN SERVER stub TO queue_alice, queue_bob",
        "CREATE USER MAPPING FOR queue_alice SERVER stub OPTIONS (aws_access_key_id 'AKIDALICE', aws_secret_access_key 'alice-secret')",
        "CREATE USER MAPPING FOR queue_bob SERVER stub OPTIONS (aws_access_key_id 'AKIDBOB', aws_secret_access_key 'bob-secret')",
        "GRANT INSERT, SELECT ON counted TO queue_alice, queue_bob",
        "GRANT EXECUTE ON FUNCTION lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb, regproc, text, timestamptz) TO queue_alice, queue_bob",
    ]:
        conn.execute(sql)
    check("the queue worker runs for the new database", wait_until(conn, "SELECT count(*) = 1 FROM pg_stat_activity "
          "WHERE backend_type = 'lambda_fdw queue worker' AND datname = current_database()", timeout=20))
    states = row_states(conn)
    check(f"the queue table's states are the worker's {sorted(states)}", states == ROW_STATES, states)
    return conn


def test_rollback_commit_savepoint(conn):
    k = lambda n: f"{RUN}-{n}"
    with conn.transaction():
        conn.execute("INSERT INTO record (payload) VALUES (%s)", [json.dumps({"key": k("rolled-back")})])
        conn.execute("SELECT lambda_fdw.enqueue('record', %s, 'us-east-1')", [json.dumps({"key": k("rolled-back-2")})])
        raise psycopg.Rollback()
    ids = []
    with conn.transaction():
        conn.execute("INSERT INTO record (payload) VALUES (%s)", [json.dumps({"key": k("committed")})])
        ids.append(one(conn, "SELECT lambda_fdw.enqueue('record', %s, 'us-east-1')", [json.dumps({"key": k("committed-2")})]))
    with conn.transaction():
        conn.execute("INSERT INTO record (payload) VALUES (%s)", [json.dumps({"key": k("kept-1")})])
        try:
            with conn.transaction():
                conn.execute("INSERT INTO record (payload) VALUES (%s)", [json.dumps({"key": k("savepoint")})])
                raise psycopg.Rollback()
        except psycopg.Rollback:
            pass
        conn.execute("INSERT INTO record (payload) VALUES (%s)", [json.dumps({"key": k("kept-2")})])
    rows = conn.execute("SELECT id FROM lambda_fdw.invocations WHERE payload->>'key' LIKE %s", [RUN + "-%"]).fetchall()
    ids = [r[0] for r in rows]
    check("what the committed transactions queued is there, nothing else", len(ids) == 4, ids)
    check("committed invocations succeed", settled(conn, ids) and one(
        conn, "SELECT bool_and(state = 'succeeded') FROM lambda_fdw.invocations WHERE id = ANY(%s)", [ids]))
    time.sleep(0.5)
    counts = {n: recorded(k(n)) for n in ["rolled-back", "rolled-back-2", "committed", "committed-2",
                                          "kept-1", "savepoint", "kept-2"]}
    check("rollback sends nothing, commit sends once, a rolled-back savepoint drops its rows only",
          counts == {"rolled-back": 0, "rolled-back-2": 0, "committed": 1, "committed-2": 1,
                     "kept-1": 1, "savepoint": 0, "kept-2": 1}, counts)


def test_trigger(conn):
    # The RDS probe, the queue's way: an AFTER INSERT trigger queues the row.
    conn.execute("CREATE TABLE orders (key text)")
    conn.execute("""CREATE FUNCTION orders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO record (payload) VALUES (to_jsonb(NEW)); RETURN NEW; END $$""")
    conn.execute("CREATE TRIGGER orders_notify AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_notify()")
    with conn.transaction():
        conn.execute("INSERT INTO orders VALUES (%s)", [f"{RUN}-order-1"])
        raise psycopg.Rollback()
    with conn.transaction():
        conn.execute("INSERT INTO orders VALUES (%s)", [f"{RUN}-order-2"])
    ids = [r[0] for r in conn.execute("SELECT id FROM lambda_fdw.invocations WHERE payload->>'key' LIKE %s",
                                      [f"{RUN}-order-%"])]
    check("a trigger queues the committed order only", len(ids) == 1 and settled(conn, ids), ids)
    time.sleep(0.3)
    counts = (recorded(f"{RUN}-order-1"), recorded(f"{RUN}-order-2"))
    check("the function received the committed order once, the rolled-back one never", counts == (0, 1), counts)


def test_one_per_row(conn):
    keys = [f"{RUN}-row-{i}" for i in range(20)]
    with conn.transaction():
        conn.execute("INSERT INTO record (payload) SELECT jsonb_build_object('key', k) FROM unnest(%s::text[]) k", [keys])
    ids = [r[0] for r in conn.execute("SELECT id FROM lambda_fdw.invocations WHERE payload->>'key' = ANY(%s)", [keys])]
    check("20 rows queue 20 invocations", len(ids) == 20, len(ids))
    check("they all succeed", settled(conn, ids))
    time.sleep(0.3)
    counts = [recorded(k) for k in keys]
    check("each row is delivered exactly once", counts == [1] * 20, counts)
    # COPY FROM queues the same way.
    copied = [f"{RUN}-copy-{i}" for i in range(3)]
    with conn.transaction():
        with conn.cursor().copy("COPY record (payload) FROM STDIN") as copy:
            for k in copied:
                copy.write_row([json.dumps({"key": k})])
    ids = [r[0] for r in conn.execute("SELECT id FROM lambda_fdw.invocations WHERE payload->>'key' = ANY(%s)", [copied])]
    check("COPY FROM queues one invocation per row", len(ids) == 3 and settled(conn, ids), ids)
    time.sleep(0.3)
    counts = [recorded(k) for k in copied]
    check("each copied row is delivered exactly once", counts == [1] * 3, counts)


def test_outcomes(conn):
    # The id travels in the client context, merged with the caller's.
    i = one(conn, "SELECT lambda_fdw.enqueue('inspect', '{\"n\": 1}', 'us-west-2', "
            "context => '{\"custom\": {\"app\": \"queue-test\"}}')")
    check("inspect settles", settled(conn, [i]))
    ctx = one(conn, "SELECT response->'client_context' FROM lambda_fdw.invocations WHERE id = %s", [i])
    check("the invocation id is in the client context", ctx == {"custom": {"app": "queue-test", "lambda_fdw_invocation_id": i}}, ctx)
    # Throttled, then served: retried with the wait in the row.
    key = f"{RUN}-throttle"
    i = one(conn, "SELECT lambda_fdw.enqueue('flaky', %s, 'us-west-2')",
            [json.dumps({"key": key, "fail": 1, "status": 429, "retry_after": "1"})])
    check("a throttled invocation settles", settled(conn, [i]))
    row = conn.execute("SELECT state, attempts, status_code, response->'attempts', error FROM lambda_fdw.invocations WHERE id = %s", [i]).fetchone()
    check("throttling is retried (Retry-After honoured) and delivered", row == ("succeeded", 2, 200, 2, None), row)
    gap = one(conn, "SELECT (response->>'min_gap_ms')::float FROM lambda_fdw.invocations WHERE id = %s", [i])
    check("the retry waited for Retry-After (1 s)", gap >= 950, gap)
    # A function error is final, with the error object.
    i = one(conn, "SELECT lambda_fdw.enqueue('fail', '{\"reason\": \"bad order\"}', 'us-east-1')")
    check("a function error settles", settled(conn, [i]))
    row = conn.execute("SELECT state, attempts, function_error, response->>'errorMessage', error FROM lambda_fdw.invocations WHERE id = %s", [i]).fetchone()
    check("a function error is failed, with the error object", row == (
        "failed", 1, "Unhandled", "payload rejected: bad order",
        "lambda function fail returned error \"Unhandled\": payload rejected: bad order"), row)
    # A 404 is final at once.
    i = one(conn, "SELECT lambda_fdw.enqueue('no-such-function', '{}', 'us-west-2')")
    check("a missing function settles", settled(conn, [i]))
    row = conn.execute("SELECT state, attempts, status_code, error FROM lambda_fdw.invocations WHERE id = %s", [i]).fetchone()
    check("a missing function is failed after one attempt", row == (
        "failed", 1, 404, "lambda returned ResourceNotFoundException for no-such-function: Function not found: no-such-function"), row)


def test_give_up(conn):
    """The queue decides retries with the core's one decision
    (lambda_fdw_core::retry::decide), as the queue words it: a retryable
    failure is sent again up to max_attempts, then failed saying it gave
    up; with max_attempts 1 it is failed after its one attempt with the
    error as it came (its attempts column says 1), where a scan's error
    says it gave up after 1 attempt."""
    key = f"{RUN}-give-up"
    i = one(conn, "SELECT lambda_fdw.enqueue('flaky', %s, 'us-west-2')",
            [json.dumps({"key": key, "fail": 5, "status": 500})])
    check("an invocation that keeps failing settles", settled(conn, [i]))
    row = conn.execute("SELECT state, attempts, status_code, error FROM lambda_fdw.invocations WHERE id = %s", [i]).fetchone()
    check("a 500 is sent max_attempts (3) times, then failed saying it gave up", row == (
        "failed", 3, 500, "lambda returned ServiceException for flaky: stub internal failure (gave up after 3 attempts)"), row)
    check("it reached the function 3 times", stub_calls(conn, "flaky", key) == 3, stub_calls(conn, "flaky", key))
    conn.execute("ALTER SERVER stub OPTIONS (SET max_attempts '1')")
    try:
        key = f"{RUN}-give-up-once"
        i = one(conn, "SELECT lambda_fdw.enqueue('flaky', %s, 'us-west-2')",
                [json.dumps({"key": key, "fail": 5, "status": 500})])
        check("an invocation with max_attempts 1 settles", settled(conn, [i]))
        row = conn.execute("SELECT state, attempts, status_code, error FROM lambda_fdw.invocations WHERE id = %s", [i]).fetchone()
        check("with max_attempts 1 a 500 is failed after one attempt, as it came", row == (
            "failed", 1, 500, "lambda returned ServiceException for flaky: stub internal failure"), row)
        conn.execute("CREATE FOREIGN TABLE give_up_scan (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'flaky')")
        payload = json.dumps({"key": f"{RUN}-give-up-scan", "fail": 5, "status": 500})
        e = error_of(conn, f"SELECT response FROM give_up_scan WHERE payload = '{payload}'")
        check("where a scan with max_attempts 1 says it gave up after 1 attempt", e == (
            "HV000", "lambda returned ServiceException for flaky: stub internal failure (gave up after 1 attempt)"), e)
    finally:
        conn.execute("DROP FOREIGN TABLE IF EXISTS give_up_scan")
        conn.execute("ALTER SERVER stub OPTIONS (SET max_attempts '3')")


def test_statistics(conn):
    """The worker counts what it sends in lambda_fdw.stat_invocations, under
    the role that queued it: one call per invocation, each re-sent attempt
    a retry, and outcomes as the row records them."""
    conn.execute("SELECT lambda_fdw.stat_invocations_reset()")
    ids = [one(conn, "SELECT lambda_fdw.enqueue('echo', %s, 'us-west-2')", [json.dumps({"stat": n})]) for n in range(3)]
    ids.append(one(conn, "SELECT lambda_fdw.enqueue('flaky', %s, 'us-west-2')",
                   [json.dumps({"key": f"{RUN}-stat-throttle", "fail": 1, "status": 429, "retry_after": "0"})]))
    ids.append(one(conn, "SELECT lambda_fdw.enqueue('handled-error', '{}', 'us-west-2')"))
    ids.append(one(conn, "SELECT lambda_fdw.enqueue('no-such-function', '{}', 'us-west-2')"))
    check("the counted invocations settle", settled(conn, ids))
    rows = conn.execute(
        "SELECT function_name, role, server, calls, succeeded, function_errors, throttled, client_errors, retries, "
        "bytes_sent FROM lambda_fdw.stat_invocations WHERE database = current_database() ORDER BY function_name").fetchall()
    check("the worker's calls are counted exactly", rows == [
        ("echo", "postgres", "stub", 3, 3, 0, 0, 0, 0, 33),
        ("flaky", "postgres", "stub", 1, 1, 0, 0, 0, 1, 81),
        ("handled-error", "postgres", "stub", 1, 0, 1, 0, 0, 0, 2),
        ("no-such-function", "postgres", "stub", 1, 0, 0, 0, 1, 0, 2)], rows)


def test_status_view(conn):
    view = conn.execute("SELECT queued, sending, succeeded, failed, sent_last_minute > 0 FROM lambda_fdw.queue_status").fetchone()
    table = conn.execute("SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'sending'), "
                         "count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed'), true "
                         "FROM lambda_fdw.invocations").fetchone()
    check(f"queue_status counts the queue per state {view[:4]}", view == table, (view, table))


def test_dropped_mapping_and_roles(conn):
    key = f"{RUN}-dropped"
    conn.execute("SET ROLE queue_alice")
    with conn.transaction():
        i = one(conn, "SELECT lambda_fdw.enqueue('counted-echo', %s, 'us-west-2')", [json.dumps({"key": key})])
        conn.execute("RESET ROLE")
        conn.execute("DROP USER MAPPING FOR queue_alice SERVER stub")
    check("an invocation whose mapping was dropped settles", settled(conn, [i]))
    row = conn.execute("SELECT state, attempts, error FROM lambda_fdw.invocations WHERE id = %s", [i]).fetchone()
    check("it is failed with a clear error, never sent", row == (
        "failed", 1, "the user mapping this invocation was queued with no longer exists on server stub; "
        "it is not sent with other credentials") and stub_calls(conn, "counted-echo", key) == 0, row)
    conn.execute("CREATE USER MAPPING FOR queue_alice SERVER stub OPTIONS (aws_access_key_id 'AKIDALICE', aws_secret_access_key 'alice-secret')")
    # Row-level security: a role sees its own rows; nobody writes the table.
    conn.execute("SET ROLE queue_alice")
    a = one(conn, "SELECT lambda_fdw.enqueue('counted-echo', %s, 'us-west-2')", [json.dumps({"key": key + "-a"})])
    conn.execute("INSERT INTO counted (payload) VALUES (%s)", [json.dumps({"key": key + "-a2"})])
    mine = one(conn, "SELECT count(*) FROM lambda_fdw.invocations")
    conn.execute("SET ROLE queue_bob")
    theirs = one(conn, "SELECT count(*) FROM lambda_fdw.invocations")
    upd = error_of(conn, "UPDATE lambda_fdw.invocations SET state = 'queued' WHERE id = %s", [a])
    dele = error_of(conn, "DELETE FROM lambda_fdw.invocations")
    ins = error_of(conn, "INSERT INTO lambda_fdw.invocations (queued_by, function_name, region, invocation_type, payload, max_attempts) "
                   "VALUES ('queue_alice', 'x', 'us-west-2', 'Event', '{}', 1)")
    conn.execute("RESET ROLE")
    check("a role sees its own invocations only", (mine, theirs) == (3, 0), (mine, theirs))
    denied = ("42501", "permission denied for table invocations")
    check("nobody but the extension writes the queue", upd == denied and dele == denied and ins == denied, (upd, dele, ins))
    check("alice's invocations were signed and sent", settled(conn, [a]) and
          one(conn, "SELECT state FROM lambda_fdw.invocations WHERE id = %s", [a]) == "succeeded")


def test_recheck(conn):
    """Issue 18, rule 1: a row is checked again before it is sent, as the
    path that queued it resolves a call now; one that no longer checks out
    is failed, never sent, with why."""
    # Queued through the region's route, which stops being one: a server
    # routes a region only while a superuser owns it.
    key = f"{RUN}-rerouted"
    with conn.transaction():
        i = one(conn, "SELECT lambda_fdw.enqueue('counted-echo', %s, 'us-west-2')", [json.dumps({"key": key})])
        conn.execute("ALTER SERVER stub OWNER TO queue_alice")
    settled_ok = settled(conn, [i])
    conn.execute("ALTER SERVER stub OWNER TO postgres")
    row = conn.execute("SELECT state, error FROM lambda_fdw.invocations WHERE id = %s", [i]).fetchone()
    check("a row whose route changed is failed, never sent", settled_ok and row == (
        "failed", 'this invocation was queued through server "stub", which no longer routes region us-west-2 '
        "(only a lambda_fdw server owned by a superuser does); it is not sent") and stub_calls(conn, "counted-echo", key) == 0,
        (row, stub_calls(conn, "counted-echo", key)))
    # Queued by a role that loses the right to queue before it is sent.
    enqueue_fn = "lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb, regproc, text, timestamptz)"
    key, key2 = f"{RUN}-revoked-execute", f"{RUN}-revoked-insert"
    # (Giving the server away and back above took alice's grant with it.)
    conn.execute("GRANT USAGE ON FOREIGN SERVER stub TO queue_alice")
    with conn.transaction():
        conn.execute("SET LOCAL ROLE queue_alice")
        i = one(conn, "SELECT lambda_fdw.enqueue('counted-echo', %s, 'us-west-2')", [json.dumps({"key": key})])
        conn.execute("INSERT INTO counted (payload) VALUES (%s)", [json.dumps({"key": key2})])
        j = one(conn, "SELECT max(id) FROM lambda_fdw.invocations")
        conn.execute("RESET ROLE")
        conn.execute(f"REVOKE EXECUTE ON FUNCTION {enqueue_fn} FROM queue_alice")
        conn.execute("REVOKE INSERT ON counted FROM queue_alice")
    done = settled(conn, [i, j])
    conn.execute(f"GRANT EXECUTE ON FUNCTION {enqueue_fn} TO queue_alice")
    conn.execute("GRANT INSERT ON counted TO queue_alice")
    ft = one(conn, "SELECT 'counted'::regclass::oid")
    rows = conn.execute("SELECT state, error FROM lambda_fdw.invocations WHERE id = ANY(%s) ORDER BY id",
                        [[i, j]]).fetchall()
    check("rows whose role lost EXECUTE on enqueue, or INSERT on the table, are failed, never sent", done and rows == [
        ("failed", 'role "queue_alice" no longer has EXECUTE on lambda_fdw.enqueue; it is not sent'),
        ("failed", f'role "queue_alice" no longer has INSERT on the foreign table this invocation was queued '
                   f"through (OID {ft}); it is not sent")]
        and (stub_calls(conn, "counted-echo", key), stub_calls(conn, "counted-echo", key2)) == (0, 0), rows)
    # Queued by INSERT through a foreign table that is dropped before it is sent.
    key = f"{RUN}-table-dropped"
    conn.execute("CREATE FOREIGN TABLE counted_briefly (payload jsonb) SERVER stub OPTIONS (function_name 'counted-echo')")
    ft = one(conn, "SELECT 'counted_briefly'::regclass::oid")
    with conn.transaction():
        conn.execute("INSERT INTO counted_briefly (payload) VALUES (%s)", [json.dumps({"key": key})])
        i = one(conn, "SELECT max(id) FROM lambda_fdw.invocations")
        conn.execute("DROP FOREIGN TABLE counted_briefly")
    check("a row whose foreign table was dropped is failed, never sent", settled(conn, [i]) and conn.execute(
        "SELECT foreign_table, state, error FROM lambda_fdw.invocations WHERE id = %s", [i]).fetchone() == (
        ft, "failed", f"the foreign table this invocation was queued through (OID {ft}) no longer exists; it is not sent")
        and stub_calls(conn, "counted-echo", key) == 0,
        conn.execute("SELECT foreign_table, state, error FROM lambda_fdw.invocations WHERE id = %s", [i]).fetchone())


def test_bad_input(conn):
    before = one(conn, "SELECT count(*) FROM lambda_fdw.invocations")
    cases = [
        ("'bad name!', '{}'::jsonb, 'us-west-2'", "'bad name!', '{}'::jsonb, 'us-west-2'"),
        ("'echo', '{}'::jsonb, 'us-west-2', 'Sometimes'", "'echo', '{}'::jsonb, 'us-west-2', 'Sometimes'"),
        ("'arn:aws:lambda:eu-west-1:123456789012:function:f', '{}'::jsonb, 'us-west-2'",
         "'arn:aws:lambda:eu-west-1:123456789012:function:f', '{}'::jsonb, 'us-west-2'"),
        ("'echo', NULL::jsonb, 'us-west-2'", "'echo', NULL::jsonb, 'us-west-2'"),
        ("'echo', '{}'::jsonb, 'us-west-2', context => '[1]'", "'echo', '{}'::jsonb, 'us-west-2', context => '[1]'"),
        ("'echo', jsonb_build_object('s', repeat('x', 1100000)), 'us-west-2', 'Event'",
         "'echo', jsonb_build_object('s', repeat('x', 1100000)), 'us-west-2', 'Event'"),
        ("'echo:v1', '{}'::jsonb, 'us-west-2', qualifier => 'v2'", "'echo:v1', '{}'::jsonb, 'us-west-2', qualifier => 'v2'"),
        ("'echo', '{}'::jsonb, 'not a region'", "'echo', '{}'::jsonb, 'not a region'"),
    ]
    for enq, inv in cases:
        e = error_of(conn, f"SELECT lambda_fdw.enqueue({enq})")
        i = error_of(conn, f"SELECT * FROM aws_lambda.invoke({inv})")
        check(f"enqueue({enq[:50]}) fails as aws_lambda.invoke does", e is not None and e == i, (e, i))
    e = error_of(conn, "SELECT lambda_fdw.enqueue('echo', '{}', 'us-west-2', context => '{\"custom\": 5}')")
    check("a context whose custom member is not an object is refused", e == (
        "22023", "the \"custom\" member of context must be a JSON object: a queued invocation adds its id there"), e)
    e = error_of(conn, "UPDATE counted SET payload = '{}'")
    check("UPDATE of a foreign table is refused", e == ("0A000", "cannot update lambda_fdw foreign table \"counted\""), e)
    e = error_of(conn, "DELETE FROM counted")
    check("DELETE from a foreign table is refused", e == ("0A000", "cannot delete from lambda_fdw foreign table \"counted\""), e)
    e = error_of(conn, "INSERT INTO counted (payload, status_code) VALUES ('{}', 200)")
    check("answer columns cannot be inserted", e == ("0A000", "column \"status_code\" cannot be inserted: it is filled from the function's answer"), e)
    e = error_of(conn, "INSERT INTO counted (qualifier) VALUES ('v1')")
    check("an INSERT needs a payload", e == ("23502", "no payload given for the invocation queued by INSERT into counted"), e)
    e = error_of(conn, "INSERT INTO counted (payload, invocation_type) VALUES ('{}', 'Later')")
    check("an INSERT's invocation_type is checked", e == ("22023", "invalid invocation_type \"Later\""), e)
    after = one(conn, "SELECT count(*) FROM lambda_fdw.invocations")
    check("bad input queues nothing", after == before, (before, after))


def queue_batch(conn, label, n=1000, ms=30):
    keys = [f"{RUN}-{label}-{i}" for i in range(n)]
    with conn.transaction():
        conn.execute("SELECT count(lambda_fdw.enqueue('sleep-echo', jsonb_build_object('key', k, 'ms', %s), 'us-west-2')) "
                     "FROM unnest(%s::text[]) k", [ms, keys])
    return keys


def delivered(conn, keys):
    return [r[0] for r in conn.execute(
        "SELECT (r.payload->>'calls')::int FROM unnest(%s::text[]) WITH ORDINALITY AS k(key, n), "
        "LATERAL aws_lambda.invoke('calls', json_build_object('of', 'sleep-echo', 'key', k.key), 'us-west-2') r "
        "ORDER BY k.n", [keys])]


def test_crash(conn, label, crash):
    keys = queue_batch(conn, label)
    # Let the worker get going, so that some invocations are in flight.
    wait_until(conn, "SELECT count(*) > 100 FROM lambda_fdw.invocations WHERE state = 'succeeded' AND payload->>'key' LIKE %s",
               [f"{RUN}-{label}-%"], timeout=20)
    in_flight = crash(conn)
    conn = connect()
    check(f"{label}: all 1,000 invocations succeed after the restart", wait_until(
        conn, "SELECT count(*) = 1000 FROM lambda_fdw.invocations WHERE state = 'succeeded' AND payload->>'key' LIKE %s",
        [f"{RUN}-{label}-%"], timeout=60))
    counts = delivered(conn, keys)
    check(f"{label}: every invocation arrived ({min(counts)} to {max(counts)} deliveries each)", min(counts) >= 1, counts[:20])
    # A row that was `sending` when the worker died is claimed again after
    # the restart: its attempts are 2 (these functions never fail).
    again = {r[0] for r in conn.execute(
        "SELECT payload->>'key' FROM lambda_fdw.invocations WHERE payload->>'key' LIKE %s AND attempts > 1",
        [f"{RUN}-{label}-%"])}
    dupes = {k for k, c in zip(keys, counts) if c > 1}
    check(f"{label}: duplicates only for invocations in flight ({len(dupes)} duplicates, "
          f"{len(again)} rows were in flight, at most {in_flight})",
          dupes <= again and len(again) <= in_flight and max(counts) <= 2, (len(dupes), len(again), in_flight))
    return conn


FORMATS = ["lambda_fdw", "redshift", "bigquery", "snowflake"]


def batch_calls(conn, function):
    """Requests the stub's batch function `function` received."""
    return stub_calls(conn, function, "batch")


def batch_table(conn, name, function, size, fmt=None):
    fmt = fmt or function.split("-")[1]
    conn.execute(f"DROP FOREIGN TABLE IF EXISTS {name}")
    conn.execute(f"CREATE FOREIGN TABLE {name} (payload jsonb, qualifier text, invocation_type text, context jsonb) "
                 f"SERVER stub OPTIONS (function_name '{function}', batch_size '{size}', batch_format '{fmt}')")


def queue_rows(conn, table, payloads, contexts=None):
    """INSERTs one row per payload (and context) in one transaction; returns their ids in order."""
    contexts = contexts or [None] * len(payloads)
    with conn.transaction():
        first = one(conn, "SELECT coalesce(max(id), 0) FROM lambda_fdw.invocations")
        for p, c in zip(payloads, contexts):
            conn.execute(f"INSERT INTO {table} (payload, context) VALUES (%s, %s)",
                         [json.dumps(p), None if c is None else json.dumps(c)])
        ids = [r[0] for r in conn.execute("SELECT id FROM lambda_fdw.invocations WHERE id > %s AND "
                                          "foreign_table = %s::regclass ORDER BY id", [first, table])]
    check(f"{table}: {len(payloads)} rows queued", len(ids) == len(payloads), ids)
    return ids


def outcomes(conn, ids):
    return conn.execute("SELECT state, attempts, status_code, response, function_error, error "
                        "FROM lambda_fdw.invocations WHERE id = ANY(%s) ORDER BY id", [ids]).fetchall()


def test_batches(conn):
    """Issue 21: rows INSERTed into a foreign table that batches are sent
    batch_size to a request, in every format, each row succeeding with its
    own result; a reply that cannot be trusted fails every row of its
    batch; a 413 halves a batch; rows with different contexts never share
    a request; the ids travel in the client context, with the metadata."""
    payloads = [[i, f"k{i}"] if i % 2 == 0 else {"n": i} for i in range(10)]
    for fmt in FORMATS:
        function = f"batch-{fmt}"
        before = batch_calls(conn, function)
        batch_table(conn, f"b_{fmt}", function, 4)
        ids = queue_rows(conn, f"b_{fmt}", payloads)
        check(f"{fmt}: the 10 rows settle", settled(conn, ids))
        want = [("succeeded", 1, 200, p if fmt == "lambda_fdw" or isinstance(p, list) else [p], None, None)
                for p in payloads]
        got = outcomes(conn, ids)
        check(f"{fmt}: each row succeeded with its own result", got == want, got)
        calls = batch_calls(conn, function) - before
        check(f"{fmt}: 10 rows of batch_size 4 went in 3 requests ({calls})", calls == 3, calls)

    # A reply that cannot be trusted, or a batch the function failed: every
    # row of the batch fails, after one attempt, saying why.
    for function, kind, message in [
        ("batch-lambda_fdw-short", "BadBatchReply", "the lambda_fdw reply has 2 results for 3 rows"),
        ("batch-bigquery-bad", "BadBatchReply", 'the bigquery reply has no "replies" array'),
        ("batch-snowflake-renumbered", "BadBatchReply", "the snowflake reply's row 0 has row number 1, not 0"),
        ("batch-redshift-failed", "Handled", "the stub failed this batch"),
    ]:
        before = batch_calls(conn, function)
        batch_table(conn, "b_fault", function, 5)
        ids = queue_rows(conn, "b_fault", [{"n": i} for i in range(3)])
        check(f"{function}: the rows settle", settled(conn, ids))
        error_type = "BatchFailed" if kind == "Handled" else "BadBatchReply"
        want = [("failed", 1, 200, {"errorMessage": message, "errorType": error_type}, kind,
                 f'lambda function {function} returned error "{kind}": {message}')] * 3
        got = outcomes(conn, ids)
        check(f"{function}: every row of the batch failed, saying why", got == want, got)
        calls = batch_calls(conn, function) - before
        check(f"{function}: in one request, not retried ({calls})", calls == 1, calls)
    # Redshift's reply as a JSON string (json.dumps) is taken.
    batch_table(conn, "b_fault", "batch-redshift-string", 5)
    ids = queue_rows(conn, "b_fault", [[1], [2]])
    check("a Redshift reply as a JSON string settles", settled(conn, ids))
    got = outcomes(conn, ids)
    check("a Redshift reply as a JSON string gives each row its result",
          got == [("succeeded", 1, 200, [1], None, None), ("succeeded", 1, 200, [2], None, None)], got)

    # 413 over 2,048 bytes: halved until each part fits; a row too large
    # alone fails alone, the others succeed.
    function = "batch-lambda_fdw-small"
    before = batch_calls(conn, function)
    batch_table(conn, "b_small", function, 8)
    small = [{"n": i, "pad": "x" * 400} for i in range(4)]
    big = {"n": 4, "pad": "y" * 3000}
    ids = queue_rows(conn, "b_small", small + [big])
    check("413: the rows settle", settled(conn, ids))
    got = outcomes(conn, ids)
    too_large = ("lambda returned RequestTooLargeException for batch-lambda_fdw-small: "
                 "Request must be smaller than 6291456 bytes for the InvokeFunction operation")
    check("413: the batch is halved until its parts fit; the row too large alone fails alone",
          got == [("succeeded", 1, 200, p, None, None) for p in small] + [("failed", 1, 413, None, None, too_large)], got)
    calls = batch_calls(conn, function) - before
    # [0, 5) 413; [0, 2) ok; [2, 5) 413; [2, 3) ok; [3, 5) 413; [3, 4) ok; [4, 5) 413.
    check(f"413: 7 requests ({calls})", calls == 7, calls)

    # What the rows of one request share: rows of two contexts go apart,
    # in id order; the ids of each request's rows are in its client
    # context, and the metadata says where they come from.
    function = "batch-redshift-inspect"
    before = batch_calls(conn, function)
    batch_table(conn, "b_meta", function, 3)
    a, b = {"custom": {"app": "a"}}, {"env": {"b": 1}}
    ctxs = [a, b, a, a, b, a]
    ids = queue_rows(conn, "b_meta", [[i] for i in range(6)], ctxs)
    check("the inspected rows settle", settled(conn, ids))
    calls = batch_calls(conn, function) - before
    check(f"rows of two contexts, batch_size 3: 2 requests for the 4 of one, 1 for the 2 of the other ({calls})",
          calls == 3, calls)
    cluster = one(conn, "SELECT coalesce(nullif(current_setting('cluster_name'), ''), "
                  "(SELECT system_identifier::text FROM pg_control_system()))")
    of_a = [i for i, c in zip(ids, ctxs) if c is a]
    of_b = [i for i, c in zip(ids, ctxs) if c is b]
    batches = [of_a[:3], of_a[3:], of_b]

    def expected(n, i):
        batch = next(bt for bt in batches if i in bt)
        ctx = json.loads(json.dumps(ctxs[n]))
        ctx.setdefault("custom", {})["lambda_fdw_invocation_ids"] = batch
        return ("succeeded", 1, 200, {"args": [n], "client_context": ctx, "request": {
            "request_id": f"q{batch[0]}-1", "cluster": cluster, "user": "postgres", "database": DB,
            "external_function": "public.b_meta", "query_id": str(batch[0]), "num_records": len(batch)}}, None, None)

    got = outcomes(conn, ids)
    want = [expected(n, i) for n, i in enumerate(ids)]
    check("each row's batch: its ids in custom.lambda_fdw_invocation_ids, in row order, and the metadata",
          got == want, (got, want))
    # Statistics: one call per request.
    n = one(conn, "SELECT calls FROM lambda_fdw.stat_invocations WHERE database = current_database() "
            "AND function_name = %s", [function])
    check(f"the statistics count each batch as one call ({n})", n == calls, (n, calls))
    # A failed request fails or retries its rows together: a 500 to every
    # attempt, max_attempts 3: three requests of the three rows, one call
    # and two retries in the statistics, each row failed after 3 attempts.
    batch_table(conn, "b_500", "server-error", 5, "lambda_fdw")
    ids = queue_rows(conn, "b_500", [{"n": i} for i in range(3)])
    check("rows of a batch answered 500 settle", settled(conn, ids))
    got = outcomes(conn, ids)
    check("they are retried together, then failed together, each after its 3 attempts", got == [
        ("failed", 3, 500, None, None, "lambda returned ServiceException for server-error: stub internal failure "
         "(gave up after 3 attempts)")] * 3, got)
    stats = conn.execute("SELECT calls, service_errors, retries FROM lambda_fdw.stat_invocations "
                         "WHERE database = current_database() AND function_name = 'server-error'").fetchone()
    check(f"they travelled together each time: 1 call, 1 service error, 2 retries {stats}", stats == (1, 1, 2), stats)
    # A table that no longer batches sends its rows one by one again.
    conn.execute("ALTER FOREIGN TABLE b_meta OPTIONS (DROP batch_size, DROP batch_format, SET function_name 'inspect')")
    ids = queue_rows(conn, "b_meta", [{"n": 1}, {"n": 2}])
    check("rows of a table that no longer batches settle", settled(conn, ids))
    got = [r[0] for r in conn.execute("SELECT response->'client_context' FROM lambda_fdw.invocations "
                                      "WHERE id = ANY(%s) ORDER BY id", [ids])]
    check("they are sent one by one, each with its own id", got == [
        {"custom": {"lambda_fdw_invocation_id": i}} for i in ids], got)
    for t in ["b_meta", "b_small", "b_fault", "b_500"] + [f"b_{f}" for f in FORMATS]:
        conn.execute(f"DROP FOREIGN TABLE {t}")


def batch_row_deliveries(conn, keys):
    return [r[0] for r in conn.execute(
        "SELECT (r.payload->>'calls')::int FROM unnest(%s::text[]) WITH ORDINALITY AS k(key, n), "
        "LATERAL aws_lambda.invoke('calls', json_build_object('of', 'batch-row', 'key', k.key), 'us-west-2') r "
        "ORDER BY k.n", [keys])]


def test_batch_crash(conn):
    """Batches across a SIGKILL of the worker: 1,000 rows in batches of 10
    on a function that takes 30 ms a batch; every row arrives, and none
    more than max_attempts (3) times: a row is sent again only if it was in
    flight (its attempts show it)."""
    label = "batch-sigkill"
    batch_table(conn, "b_crash", "batch-lambda_fdw-30ms", 10)
    keys = [f"{RUN}-{label}-{i}" for i in range(1000)]
    with conn.transaction():
        conn.execute("INSERT INTO b_crash (payload) SELECT jsonb_build_object('key', k) FROM unnest(%s::text[]) k", [keys])
    wait_until(conn, "SELECT count(*) > 100 FROM lambda_fdw.invocations WHERE state = 'succeeded' AND payload->>'key' LIKE %s",
               [f"{RUN}-{label}-%"], timeout=20)
    kill_worker(conn)
    conn = connect()
    check(f"{label}: all 1,000 rows succeed after the restart", wait_until(
        conn, "SELECT count(*) = 1000 FROM lambda_fdw.invocations WHERE state = 'succeeded' AND payload->>'key' LIKE %s",
        [f"{RUN}-{label}-%"], timeout=60))
    counts = batch_row_deliveries(conn, keys)
    attempts = dict(conn.execute("SELECT payload->>'key', attempts FROM lambda_fdw.invocations WHERE payload->>'key' LIKE %s",
                                 [f"{RUN}-{label}-%"]).fetchall())
    dupes = [k for k, c in zip(keys, counts) if c > 1]
    again = [k for k in keys if attempts[k] > 1]
    check(f"{label}: every row arrived, none more than max_attempts (3) times ({min(counts)} to {max(counts)} "
          f"deliveries each, {len(dupes)} rows twice)", min(counts) >= 1 and max(counts) <= 3, counts[:20])
    check(f"{label}: rows claimed again after the kill ({len(again)}): at most the requests claimed ahead "
          f"(twice lambda_fdw.queue_concurrency) of 10 rows each", len(again) <= 2 * 32 * 10, len(again))
    check(f"{label}: a row arrived more than once only if it was in flight (its attempts show it)",
          all(attempts[k] >= c for k, c in zip(keys, counts)), [(k, c, attempts[k]) for k, c in zip(keys, counts)
                                                               if attempts[k] < c][:10])
    conn.execute("DROP FOREIGN TABLE b_crash")
    return conn


# The columns of lambda_fdw.invocations (sql/queue.sql), for a planted copy.
QUEUE_COLUMNS = """
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, queued_by regrole NOT NULL,
  queued_at timestamptz NOT NULL DEFAULT clock_timestamp(), function_name text NOT NULL,
  region text NOT NULL, qualifier text, invocation_type text NOT NULL, payload jsonb NOT NULL,
  context jsonb, server oid, user_mapping oid, state text NOT NULL DEFAULT 'queued',
  attempts integer NOT NULL DEFAULT 0, max_attempts integer NOT NULL,
  next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(), status_code integer,
  response jsonb, executed_version text, function_error text, error text, request_id text,
  finished_at timestamptz, foreign_table oid"""

# What a planted trigger would see if it ran: who ran it, and with what rights.
SPY = """CREATE FUNCTION {schema}.spy() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO {schema}.spied VALUES (current_user, current_setting('is_superuser'), TG_OP, TG_LEVEL);
      RETURN COALESCE(NEW, OLD);
    END $$"""


def spy_on(conn, table, schema):
    conn.execute(f"CREATE TABLE {schema}.spied (who text, superuser text, op text, level text)")
    conn.execute(f"GRANT ALL ON {schema}.spied TO PUBLIC")
    conn.execute(SPY.format(schema=schema))
    conn.execute(f"CREATE TRIGGER spy_rows BEFORE INSERT OR UPDATE OR DELETE ON {table} "
                 f"FOR EACH ROW EXECUTE FUNCTION {schema}.spy()")
    conn.execute(f"CREATE TRIGGER spy_statements BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                 f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.spy()")


IGNORED = "queue worker: ignoring lambda_fdw.invocations (OID "


def test_planted_queue(conn, window):
    """Issue 18, row 1: a role that may CREATE in the worker's database (here
    its owner, no superuser) plants schema lambda_fdw and a table
    lambda_fdw.invocations, with triggers and a forged row attributed to
    postgres, while the extension's own queue does not exist. The worker
    never works it: the triggers never run, the row is never sent, and the
    server log says so once."""
    key = f"{RUN}-forged-{window.replace(' ', '-')}"
    before = log_count(IGNORED)
    conn.execute(f"SET ROLE {MALLORY}")
    conn.execute("CREATE SCHEMA lambda_fdw")
    conn.execute(f"CREATE TABLE lambda_fdw.invocations ({QUEUE_COLUMNS})")
    conn.execute("INSERT INTO lambda_fdw.invocations (queued_by, function_name, region, invocation_type, payload, max_attempts) "
                 "VALUES ('postgres', 'record', 'us-east-1', 'RequestResponse', %s, 3)", [json.dumps({"key": key})])
    spy_on(conn, "lambda_fdw.invocations", "lambda_fdw")
    conn.execute("RESET ROLE")
    said = wait_for(lambda: log_count(IGNORED) > before, timeout=15)
    time.sleep(2.5)  # rounds go on: a poll a second
    lines = log_count(IGNORED) - before
    check(f"{window}: the worker says once that it ignores the planted table ({lines} line)", said and lines == 1, lines)
    spied = conn.execute("SELECT who, superuser, op, level FROM lambda_fdw.spied").fetchall()
    check(f"{window}: the planted triggers never ran", spied == [], spied)
    row = conn.execute("SELECT state, attempts, response FROM lambda_fdw.invocations").fetchall()
    check(f"{window}: the forged row is untouched and not sent", row == [("queued", 0, None)] and recorded(key) == 0,
          (row, recorded(key)))


def test_code_attached(conn):
    """A trigger on the extension's own queue table (a superuser added it):
    the worker runs no code attached to its queue, says so once, and sends
    nothing until it is dropped; then the row is sent, once."""
    key = f"{RUN}-with-trigger"
    line = "queue worker: not working lambda_fdw.invocations: it has triggers"
    before = log_count(line)
    conn.execute("CREATE SCHEMA spying")
    with conn.transaction():
        i = one(conn, "SELECT lambda_fdw.enqueue('record', %s, 'us-east-1')", [json.dumps({"key": key})])
        spy_on(conn, "lambda_fdw.invocations", "spying")
    said = wait_for(lambda: log_count(line) > before, timeout=15)
    time.sleep(2.5)
    lines = log_count(line) - before
    check(f"a queue table with triggers is refused, said once ({lines} line)", said and lines == 1, lines)
    row = conn.execute("SELECT state, attempts FROM lambda_fdw.invocations WHERE id = %s", [i]).fetchone()
    spied = conn.execute("SELECT who, superuser, op, level FROM spying.spied").fetchall()
    check("nothing is sent from it and its triggers never run",
          row == ("queued", 0) and recorded(key) == 0 and spied == [], (row, recorded(key), spied))
    # Queueing writes the table as its owner: it refuses while code is attached.
    refused = error_parts(conn, "SELECT lambda_fdw.enqueue('record', '{}', 'us-east-1')")
    check("enqueue refuses a queue table with triggers", refused == (
        "55000", "lambda_fdw's queue table lambda_fdw.invocations has triggers or rules attached",
        "the extension attaches none; queueing writes the table as its owner, and the queue worker sends "
        "nothing from it while they exist", "a superuser should drop them"), refused)
    ran = one(conn, "SELECT count(*) FROM spying.spied")
    check("and nothing ran", ran == 0, ran)
    conn.execute("DROP TRIGGER spy_rows ON lambda_fdw.invocations")
    conn.execute("DROP TRIGGER spy_statements ON lambda_fdw.invocations")
    conn.execute("DROP SCHEMA spying CASCADE")
    check("once the triggers are dropped the row is sent", settled(conn, [i]) and
          one(conn, "SELECT state FROM lambda_fdw.invocations WHERE id = %s", [i]) == "succeeded")
    time.sleep(0.3)
    check("and delivered once", recorded(key) == 1, recorded(key))


NUL_ERROR = ("the function's response could not be stored: unsupported Unicode escape sequence "
             "(\\u0000 cannot be converted to text)")


def test_poison_answer(conn):
    """Issue 18, row 5: an answer that is valid JSON but that jsonb refuses
    (the stub's nul: {"a": "\\u0000"}) fails its row, with why, after one
    attempt; a healthy row claimed in the same round is recorded and
    delivered once; the worker does not exit."""
    pid = worker_pid(conn)
    good_key = f"{RUN}-beside-nul"
    with conn.transaction():
        bad = one(conn, "SELECT lambda_fdw.enqueue('nul', '{}', 'us-west-2')")
        good = one(conn, "SELECT lambda_fdw.enqueue('record', %s, 'us-east-1')", [json.dumps({"key": good_key})])
    check("the \\u0000 answer and its neighbour settle", settled(conn, [bad, good]))
    row = conn.execute("SELECT state, attempts, status_code, response, error FROM lambda_fdw.invocations WHERE id = %s",
                       [bad]).fetchone()
    check("the \\u0000 answer fails its row, with why", row == ("failed", 1, 200, None, NUL_ERROR), row)
    row = conn.execute("SELECT state, attempts, response, error FROM lambda_fdw.invocations WHERE id = %s", [good]).fetchone()
    check("the healthy row of the same round succeeds", row == ("succeeded", 1, {"recorded": good_key}, None), row)
    time.sleep(3)  # a restarted worker would send 'sending' rows again within this
    again = conn.execute("SELECT attempts FROM lambda_fdw.invocations WHERE id = ANY(%s) ORDER BY id", [[bad, good]]).fetchall()
    check(f"neither was sent again (the healthy one delivered {recorded(good_key)} time)",
          again == [(1,), (1,)] and recorded(good_key) == 1, (again, recorded(good_key)))
    check("the worker did not exit", worker_pid(conn) == pid, (pid, worker_pid(conn)))


def test_round_error(conn):
    """An error in a round that is no row's (here: the worker's wait for the
    queue's lock is cancelled) is logged, and the same worker goes on."""
    pid = worker_pid(conn)
    line = "queue worker: could not work the queue: canceling statement due to user request; trying again"
    before = log_count(line)
    locker = connect()
    with locker.transaction():
        locker.execute("LOCK TABLE lambda_fdw.invocations IN ACCESS EXCLUSIVE MODE")
        waiting = wait_until(conn, "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                             [pid], timeout=10)
        one(conn, "SELECT pg_cancel_backend(%s)", [pid])
        said = wait_for(lambda: log_count(line) > before, timeout=10)
    locker.close()
    check("a cancelled round is logged", waiting and said, (waiting, said))
    key = f"{RUN}-after-cancel"
    i = one(conn, "SELECT lambda_fdw.enqueue('record', %s, 'us-east-1')", [json.dumps({"key": key})])
    check("the same worker goes on", settled(conn, [i]) and worker_pid(conn) == pid and
          one(conn, "SELECT state FROM lambda_fdw.invocations WHERE id = %s", [i]) == "succeeded", (pid, worker_pid(conn)))
    time.sleep(0.3)
    check("and delivers once", recorded(key) == 1, recorded(key))


HUGE_ERROR = "lambda function huge returned a response larger than 6 MB (6291456 bytes), the most Lambda returns"


def test_huge_answer(conn):
    """Issue 18, row 6: a 7 MB answer (Lambda never answers more than 6 MB)
    fails its row with the invocation core's error, sent once, nothing of it
    stored; the worker goes on."""
    pid = worker_pid(conn)
    key = f"{RUN}-huge"
    i = one(conn, "SELECT lambda_fdw.enqueue('huge', %s, 'us-west-2')", [json.dumps({"mb": 7, "key": key})])
    check("the 7 MB answer settles", settled(conn, [i]))
    row = conn.execute("SELECT state, attempts, response IS NULL, error FROM lambda_fdw.invocations WHERE id = %s",
                       [i]).fetchone()
    check("a 7 MB answer fails its row with the core's error", row == ("failed", 1, True, HUGE_ERROR), row)
    time.sleep(1)
    check("it was sent once", stub_calls(conn, "huge", key) == 1, stub_calls(conn, "huge", key))
    check("the worker did not exit", worker_pid(conn) == pid, (pid, worker_pid(conn)))


MAY_HAVE_BEEN = ("the queue worker stopped while attempt 5 of 5 was in flight; "
                 "the invocation may have been delivered, and it is not sent again")


def test_kills_while_in_flight(conn):
    """Issue 18, rule 6: the worker is killed (SIGKILL, so the server
    restarts) five times while the same slow row is in flight (the stub's
    sleep-echo counts a call when it arrives, then sleeps 90 s). That row is
    sent at most max_attempts (5) times in all and then failed, saying it
    may have been delivered; every other row (queued before the kills and
    between them, finished before each) is delivered exactly once."""
    conn.execute("ALTER SERVER stub OPTIONS (SET max_attempts '5')")
    slow_key = f"{RUN}-slow-in-flight"
    sent = lambda c: stub_calls(c, "sleep-echo", slow_key)
    others = [f"{RUN}-before-kills-{n}" for n in range(5)]
    with conn.transaction():
        slow = one(conn, "SELECT lambda_fdw.enqueue('sleep-echo', %s, 'us-west-2')",
                   [json.dumps({"key": slow_key, "ms": 90000})])
        ids = [one(conn, "SELECT lambda_fdw.enqueue('record', %s, 'us-east-1')", [json.dumps({"key": k})])
               for k in others]
    check("the rows queued before the kills succeed", settled(conn, ids))
    for kill in range(1, 6):
        arrived = wait_for(lambda: sent(conn) >= kill, timeout=40)
        row = conn.execute("SELECT state, attempts FROM lambda_fdw.invocations WHERE id = %s", [slow]).fetchone()
        check(f"kill {kill}: the slow row is in flight, attempt {kill}", arrived and row == ("sending", kill),
              (sent(conn), row))
        key = f"{RUN}-between-kills-{kill}"
        i = one(conn, "SELECT lambda_fdw.enqueue('record', %s, 'us-east-1')", [json.dumps({"key": key})])
        check(f"kill {kill}: a row queued now succeeds before the kill", settled(conn, [i]))
        others.append(key)
        kill_worker(conn)
        conn = connect()
    check("after the fifth kill the slow row settles", settled(conn, [slow], timeout=60))
    row = conn.execute("SELECT state, attempts, error FROM lambda_fdw.invocations WHERE id = %s", [slow]).fetchone()
    check("it is failed, saying it may have been delivered", row == ("failed", 5, MAY_HAVE_BEEN), row)
    time.sleep(3)
    check(f"the slow row was delivered {sent(conn)} times, max_attempts 5", sent(conn) == 5, sent(conn))
    counts = [recorded(k) for k in others]
    check(f"every other row was delivered exactly once ({len(counts)} rows)", counts == [1] * len(others), counts)
    conn.execute("ALTER SERVER stub OPTIONS (SET max_attempts '3')")
    return conn


def test_stop_with_rows_claimed_ahead(conn):
    """A clean stop (SIGTERM) while a row claimed ahead waits for a slot:
    its request never left, so it keeps its attempt and is sent once by the
    next worker, even with max_attempts 1; the row that was in flight is
    failed, saying it may have been delivered."""
    conn.execute("ALTER SYSTEM SET lambda_fdw.queue_concurrency = 1")
    conn.execute("SELECT pg_reload_conf()")
    conn.execute("ALTER SERVER stub OPTIONS (SET max_attempts '1')")
    time.sleep(1.5)  # a round or two: the worker follows the setting
    slow_key, waiting_key = f"{RUN}-ahead-slow", f"{RUN}-ahead-waiting"
    with conn.transaction():
        slow = one(conn, "SELECT lambda_fdw.enqueue('sleep-echo', %s, 'us-west-2')",
                   [json.dumps({"key": slow_key, "ms": 2500})])
        waiting = one(conn, "SELECT lambda_fdw.enqueue('sleep-echo', %s, 'us-west-2')",
                      [json.dumps({"key": waiting_key, "ms": 0})])
    ahead = wait_for(lambda: stub_calls(conn, "sleep-echo", slow_key) == 1 and conn.execute(
        "SELECT state, attempts FROM lambda_fdw.invocations WHERE id = %s", [waiting]).fetchone() == ("sending", 1),
        timeout=10)
    check("one row in flight, the other claimed ahead and waiting for the slot", ahead and
          stub_calls(conn, "sleep-echo", waiting_key) == 0)
    one(conn, "SELECT pg_terminate_backend(%s)", [worker_pid(conn)])
    check("after the restart both settle", settled(conn, [slow, waiting], timeout=30))
    rows = conn.execute("SELECT id, state, attempts, error FROM lambda_fdw.invocations WHERE id = ANY(%s) "
                        "ORDER BY id", [[slow, waiting]]).fetchall()
    check("the row in flight is failed (it may have been delivered); the one waiting is sent, its attempt given back",
          rows == [(slow, "failed", 1, "the queue worker stopped while attempt 1 of 1 was in flight; "
                    "the invocation may have been delivered, and it is not sent again"),
                   (waiting, "succeeded", 1, None)], rows)
    check("each was delivered once", (stub_calls(conn, "sleep-echo", slow_key),
                                      stub_calls(conn, "sleep-echo", waiting_key)) == (1, 1))
    conn.execute("ALTER SERVER stub OPTIONS (SET max_attempts '3')")
    conn.execute("ALTER SYSTEM RESET lambda_fdw.queue_concurrency")
    conn.execute("SELECT pg_reload_conf()")


def test_old_extension(conn):
    """Issue 18, row 1, third window: the database's extension is still at
    0.1.0 (no queue) under the new library; a planted queue is not worked.
    Then the update creates the extension's own, which is."""
    conn.execute("DROP EXTENSION lambda_fdw CASCADE")
    conn.execute("CREATE EXTENSION lambda_fdw VERSION '0.1.0'")
    test_planted_queue(conn, "extension at 0.1.0")
    with conn.transaction():
        conn.execute("DROP SCHEMA lambda_fdw CASCADE")
        conn.execute("ALTER EXTENSION lambda_fdw UPDATE")
    states = row_states(conn)
    check(f"after ALTER EXTENSION UPDATE from 0.1.0 the queue table's states are the worker's {sorted(states)}",
          states == ROW_STATES, states)
    conn.execute(f"CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-west-2', endpoint_url '{STUB}')")
    conn.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER stub OPTIONS (aws_access_key_id 'AKIDQUEUE', aws_secret_access_key 'queue-secret')")
    i = one(conn, "SELECT lambda_fdw.enqueue('echo', '{\"after\": \"update\"}', 'us-west-2')")
    check("after ALTER EXTENSION UPDATE the extension's own queue is worked", settled(conn, [i], timeout=15) and
          one(conn, "SELECT state FROM lambda_fdw.invocations WHERE id = %s", [i]) == "succeeded")


def immediate_shutdown(conn):
    conn.close()
    services("restart_postgres immediate")
    return 2 * 32  # claimed at most: twice lambda_fdw.queue_concurrency


def kill_worker(conn):
    pid = worker_pid(conn)
    conn.close()
    os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    return 2 * 32


def test_sigterm_and_extension_cycle(conn):
    # Retention: a worker deletes finished rows older than queue_retention
    # when it starts (and every minute); the setting is read on reload.
    conn.execute("ALTER SYSTEM SET lambda_fdw.queue_retention = '1s'")
    conn.execute("SELECT pg_reload_conf()")
    time.sleep(1.2)
    old = one(conn, "SELECT count(*) FROM lambda_fdw.invocations WHERE finished_at < clock_timestamp() - interval '1 second'")
    pid = worker_pid(conn)
    t0 = time.time()
    one(conn, "SELECT pg_terminate_backend(%s)", [pid])
    gone = wait_until(conn, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s", [pid], timeout=5)
    took = time.time() - t0
    check(f"SIGTERM stops the queue worker within 1 s ({took * 1000:.0f} ms)", gone and took < 1.0, took)
    check("the launcher starts it again", wait_until(conn, "SELECT count(*) = 1 FROM pg_stat_activity "
          "WHERE backend_type = 'lambda_fdw queue worker' AND datname = current_database()", timeout=15))
    check(f"finished rows past lambda_fdw.queue_retention are deleted ({old} of them)", old > 0 and wait_until(
        conn, "SELECT count(*) = 0 FROM lambda_fdw.invocations WHERE state IN ('succeeded', 'failed') "
        "AND finished_at < clock_timestamp() - interval '2 seconds'", timeout=10))
    conn.execute("ALTER SYSTEM RESET lambda_fdw.queue_retention")
    conn.execute("SELECT pg_reload_conf()")
    with open(PG_LOG) as f:
        before = f.read().count("does not exist in this database")
    conn.execute("DROP EXTENSION lambda_fdw CASCADE")
    time.sleep(3)
    test_planted_queue(conn, "between DROP and CREATE EXTENSION")
    with conn.transaction():
        conn.execute("DROP SCHEMA lambda_fdw CASCADE")
        conn.execute("CREATE EXTENSION lambda_fdw")
    conn.execute(f"CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-west-2', endpoint_url '{STUB}')")
    conn.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER stub OPTIONS (aws_access_key_id 'AKIDQUEUE', aws_secret_access_key 'queue-secret')")
    i = one(conn, "SELECT lambda_fdw.enqueue('echo', '{\"after\": \"recreate\"}', 'us-west-2')")
    check("after DROP and CREATE EXTENSION the queue is picked up again", settled(conn, [i], timeout=15) and
          one(conn, "SELECT state FROM lambda_fdw.invocations WHERE id = %s", [i]) == "succeeded")
    with open(PG_LOG) as f:
        said = f.read().count("does not exist in this database") - before
    check("the worker said once that it waits for the extension", said == 1, said)


def main():
    os.makedirs(RECORDS, exist_ok=True)
    for f in glob.glob(os.path.join(RECORDS, RUN + "-*")):
        os.remove(f)
    conn = setup()
    test_rollback_commit_savepoint(conn)
    test_trigger(conn)
    test_one_per_row(conn)
    test_outcomes(conn)
    test_give_up(conn)
    test_statistics(conn)
    test_status_view(conn)
    test_dropped_mapping_and_roles(conn)
    test_recheck(conn)
    test_bad_input(conn)
    test_code_attached(conn)
    test_poison_answer(conn)
    test_huge_answer(conn)
    test_round_error(conn)
    test_batches(conn)
    conn = test_batch_crash(conn)
    conn = test_crash(conn, "immediate", immediate_shutdown)
    conn = test_crash(conn, "sigkill", kill_worker)
    conn = test_kills_while_in_flight(conn)
    test_stop_with_rows_claimed_ahead(conn)
    test_sigterm_and_extension_cycle(conn)
    test_old_extension(conn)
    print("after_commit: all checks passed")


if __name__ == "__main__":
    main()
