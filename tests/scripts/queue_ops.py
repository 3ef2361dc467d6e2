#!/usr/bin/env python3
"""The queue's ordering keys and operations (0.6.0), against the suite's
PostgreSQL (library preloaded; the queue database $QUEUE_DB, which
after_commit.py set up), ministack and the stub.

- ordering keys: 1,000 invocations over 10 keys to ministack's `timeline`
  fixture, which records when each call starts and ends: per key, the calls
  arrive in queue order and never overlap; across keys they do;
- not_before: a delayed invocation waits; one in the past goes at once;
- retry, retry_failed and cancel: what each does, and that each is refused
  (42501) to a role that did not queue the invocation;
- queue_status and queue_status_by_function.
Every check asserts what a user sees; exits non-zero on the first failure.
"""
import collections
import json
import os
import sys
import time

import psycopg
from psycopg.rows import tuple_row

from pgcheck import error_of, error_parts, one, wait_until

DB = os.environ.get("LAMBDA_FDW_QUEUE_DB", "lambda_fdw_queue")
MINISTACK = f"http://127.0.0.1:{os.environ.get('LAMBDA_FDW_MINISTACK_PORT', '45660')}"
STUB = f"http://127.0.0.1:{os.environ.get('LAMBDA_FDW_STUB_PORT', '45661')}"
RECORDS = "/tmp/lambda_fdw_records"
RUN = f"ops{int(time.time())}"
ENQUEUE = "lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb, regproc, text, timestamptz)"
FINAL = ("succeeded", "failed", "cancelled")
START = None  # when the script began, in the database's clock


def check(what, ok, detail=""):
    print(f"queue_ops: {what}: {'ok' if ok else 'FAILED ' + str(detail)}", flush=True)
    if not ok:
        sys.exit(1)


def connect(user=None):
    return psycopg.connect(dbname=DB, user=user, autocommit=True, row_factory=tuple_row)


def settled(conn, ids, timeout=60.0):
    return wait_until(conn, "SELECT bool_and(state = ANY(%s)) AND count(*) = %s "
                      "FROM lambda_fdw.invocations WHERE id = ANY(%s)", [list(FINAL), len(ids), ids], timeout)


def setup(conn):
    for sql in [
        # The region's one route: after_commit.py's servers may be left.
        "DROP SERVER IF EXISTS ops_ms CASCADE", "DROP SERVER IF EXISTS ms CASCADE",
        f"CREATE SERVER ops_ms FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', endpoint_url '{MINISTACK}', max_concurrency '50')",
        "CREATE USER MAPPING FOR PUBLIC SERVER ops_ms OPTIONS (aws_access_key_id 'test', aws_secret_access_key 'test')",
        "DROP ROLE IF EXISTS ops_carol", "DROP ROLE IF EXISTS ops_dave",
        "CREATE ROLE ops_carol LOGIN", "CREATE ROLE ops_dave LOGIN",
        f"GRANT EXECUTE ON FUNCTION {ENQUEUE} TO ops_carol, ops_dave",
        "GRANT EXECUTE ON FUNCTION lambda_fdw.retry(bigint), lambda_fdw.cancel(bigint), "
        "lambda_fdw.retry_failed(text, timestamptz, timestamptz) TO ops_carol, ops_dave",
        "CREATE FOREIGN TABLE ops_ordered (payload jsonb) SERVER ops_ms "
        "OPTIONS (function_name 'timeline', ordering_key 'one-at-a-time')",
    ]:
        conn.execute(sql)


def timeline(run):
    path = os.path.join(RECORDS, f"timeline-{run}")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_ordering(conn):
    run = f"{RUN}-order"
    # 1,000 invocations over 10 keys, queued by 4 transactions whose rows
    # interleave the keys.
    rows = [(f"k{n % 10}", n) for n in range(1000)]
    updated = "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'lambda_fdw.invocations'::regclass"
    updates_before = one(conn, updated)
    for part in range(4):
        with conn.transaction():
            conn.execute(
                "SELECT lambda_fdw.enqueue('timeline', jsonb_build_object('run', %s::text, 'key', k, 'seq', s, 'ms', 20), "
                "'us-east-1', ordering_key => k) FROM unnest(%s::text[], %s::int[]) AS t(k, s) ORDER BY s",
                [run, [k for k, _ in rows[part::4]], [s for _, s in rows[part::4]]])
    ids = [r[0] for r in conn.execute("SELECT id FROM lambda_fdw.invocations WHERE payload->>'run' = %s", [run])]
    check("1,000 keyed invocations are queued", len(ids) == 1000, len(ids))
    t0 = time.time()
    check("they all succeed", settled(conn, ids, timeout=240) and one(
        conn, "SELECT bool_and(state = 'succeeded') FROM lambda_fdw.invocations WHERE id = ANY(%s)", [ids]))
    print(f"queue_ops: (1,000 keyed invocations, 20 ms each, settled in {time.time() - t0:.1f} s)", flush=True)
    # The worker updates each row at least twice (claimed, then finished).
    # Its statistics reach pg_stat_user_tables while it runs, so autovacuum
    # sees the queue table's dead rows.
    check("the worker's updates of the queue table are in pg_stat_user_tables while it runs", wait_until(
        conn, f"SELECT ({updated}) >= %s", [updates_before + 2000], timeout=15),
        (updates_before, one(conn, updated)))
    queued = collections.defaultdict(list)
    for key, seq in conn.execute("SELECT ordering_key, (payload->>'seq')::int FROM lambda_fdw.invocations "
                                 "WHERE payload->>'run' = %s ORDER BY id", [run]):
        queued[key].append(seq)
    events = timeline(run)
    starts = collections.defaultdict(list)
    for e in events:
        if e["at"] == "start":
            starts[e["key"]].append(e["seq"])
    check("each key's calls arrive in queue order", all(starts[k] == queued[k] for k in queued),
          {k: (starts[k][:5], queued[k][:5]) for k in queued if starts[k] != queued[k]})
    # Per key: a call starts only after the one before it ended (the
    # records are appended by the calls themselves, start then end).
    by_key = collections.defaultdict(list)
    for e in events:
        by_key[e["key"]].append(e)
    overlap_within = 0
    for key, es in by_key.items():
        es = sorted(es, key=lambda e: e["t"])
        open_calls = 0
        for e in es:
            open_calls += 1 if e["at"] == "start" else -1
            if open_calls > 1:
                overlap_within += 1
    check("no two calls of one key overlap", overlap_within == 0, overlap_within)
    # Across keys they do: at some moment several keys' calls were open.
    most, open_calls = 0, 0
    for e in sorted(events, key=lambda e: (e["t"], e["at"] == "start")):
        open_calls += 1 if e["at"] == "start" else -1
        most = max(most, open_calls)
    check(f"calls of different keys overlap (at most {most} at once)", most >= 3, most)
    check("each invocation was delivered once", len(events) == 2000, len(events))


def test_ordered_table(conn):
    run = f"{RUN}-table"
    with conn.transaction():
        conn.execute("INSERT INTO ops_ordered (payload) SELECT jsonb_build_object('run', %s::text, 'key', 't', 'seq', s, 'ms', 5) "
                     "FROM generate_series(1, 30) s", [run])
    ids = [r[0] for r in conn.execute("SELECT id FROM lambda_fdw.invocations WHERE payload->>'run' = %s", [run])]
    keys = {r[0] for r in conn.execute("SELECT ordering_key FROM lambda_fdw.invocations WHERE id = ANY(%s)", [ids])}
    check("INSERT into a table with ordering_key queues its rows with that key", keys == {"one-at-a-time"}, keys)
    check("they succeed", settled(conn, ids))
    starts = [e["seq"] for e in timeline(run) if e["at"] == "start"]
    check("in the order they were inserted", starts == list(range(1, 31)), starts)
    e = error_of(conn, "ALTER FOREIGN TABLE ops_ordered OPTIONS (SET ordering_key %s)" % (
        "'" + "x" * 1025 + "'"))
    check("an ordering_key option over 1,024 bytes is refused", e is not None and e[0] == "22023", e)
    e = error_of(conn, "SELECT lambda_fdw.enqueue('timeline', '{}', 'us-east-1', ordering_key => repeat('x', 1025))")
    check("an ordering_key over 1,024 bytes is refused", e == ("54000", "ordering_key is 1025 bytes, more than 1024 bytes"), e)


def test_not_before(conn):
    run = f"{RUN}-later"
    with conn.transaction():
        later = one(conn, "SELECT lambda_fdw.enqueue('timeline', %s, 'us-east-1', not_before => clock_timestamp() + interval '3 seconds')",
                    [json.dumps({"run": run, "key": "later", "seq": 1, "ms": 1})])
        now = one(conn, "SELECT lambda_fdw.enqueue('timeline', %s, 'us-east-1', not_before => now() - interval '1 hour')",
                  [json.dumps({"run": run, "key": "now", "seq": 2, "ms": 1})])
    check("not_before in the past sends at once", settled(conn, [now], timeout=10))
    state = one(conn, "SELECT state FROM lambda_fdw.invocations WHERE id = %s", [later])
    check("a delayed invocation waits for its time", state == "queued", state)
    check("then it is sent", settled(conn, [later], timeout=15))
    gap = one(conn, "SELECT finished_at >= queued_at + interval '3 seconds' FROM lambda_fdw.invocations WHERE id = %s", [later])
    check("not before the time it named", gap is True, gap)


def test_operations(conn):
    carol, dave = connect("ops_carol"), connect("ops_dave")
    # A failed invocation (the function does not exist), queued by carol.
    failed = one(carol, "SELECT lambda_fdw.enqueue('no-such-function', '{}', 'us-east-1')")
    check("an invocation of a missing function fails", settled(conn, [failed], timeout=20) and one(
        conn, "SELECT state FROM lambda_fdw.invocations WHERE id = %s", [failed]) == "failed")
    e = error_parts(dave, "SELECT lambda_fdw.retry(%s)", [failed])
    check("another role may not retry it (42501)", e == (
        "42501", f"permission denied to retry invocation {failed}",
        "only the role that queued an invocation, and superusers, may retry or cancel it", None), e)
    e = error_of(dave, "SELECT lambda_fdw.cancel(%s)", [failed])
    check("nor cancel it", e == ("42501", f"permission denied to cancel invocation {failed}"), e)
    e = error_parts(carol, "SELECT lambda_fdw.cancel(%s)", [failed])
    check("a failed invocation cannot be cancelled", e == (
        "55000", f"invocation {failed} cannot be cancelled: it is failed", None,
        "only queued invocations can be cancelled; one being sent may already have been delivered"), e)
    with carol.transaction():
        carol.execute("SELECT lambda_fdw.retry(%s)", [failed])
        row = one(carol, "SELECT array[state, attempts::text, coalesce(error, '-'), coalesce(finished_at::text, '-')] "
                  "FROM lambda_fdw.invocations WHERE id = %s", [failed])
    check("retry queues it again, attempts from zero, the last outcome cleared", row == ["queued", "0", "-", "-"], row)
    check("and it is tried again", settled(conn, [failed], timeout=20) and one(
        conn, "SELECT attempts FROM lambda_fdw.invocations WHERE id = %s", [failed]) == 1)
    e = error_parts(carol, "SELECT lambda_fdw.retry(%s)", [failed + 1000000])
    check("retry of an unknown id", e == ("42704", f"invocation {failed + 1000000} does not exist", None, None), e)
    ok = one(carol, "SELECT lambda_fdw.enqueue('timeline', %s, 'us-east-1')",
             [json.dumps({"run": f"{RUN}-ok", "key": "ok", "seq": 1, "ms": 1})])
    check("a succeeded one", settled(conn, [ok]))
    e = error_parts(carol, "SELECT lambda_fdw.retry(%s)", [ok])
    check("cannot be retried", e == ("55000", f"invocation {ok} cannot be retried: it is succeeded", None,
                                     "only failed or cancelled invocations can be retried"), e)
    # Cancel: a delayed invocation, cancelled before its time, is never sent.
    run = f"{RUN}-cancel"
    delayed = one(carol, "SELECT lambda_fdw.enqueue('timeline', %s, 'us-east-1', not_before => clock_timestamp() + interval '2 seconds')",
                  [json.dumps({"run": run, "key": "c", "seq": 1, "ms": 1})])
    e = error_of(dave, "SELECT lambda_fdw.cancel(%s)", [delayed])
    check("another role may not cancel a queued one", e == ("42501", f"permission denied to cancel invocation {delayed}"), e)
    carol.execute("SELECT lambda_fdw.cancel(%s)", [delayed])
    row = one(conn, "SELECT array[state, error] FROM lambda_fdw.invocations WHERE id = %s", [delayed])
    check("cancel marks it cancelled, by whom", row == ["cancelled", "cancelled by ops_carol"], row)
    time.sleep(3)
    check("a cancelled invocation is never sent", timeline(run) == [], timeline(run))
    # A superuser may cancel anybody's; retry_failed takes only the caller's.
    other = one(dave, "SELECT lambda_fdw.enqueue('no-such-function-3', '{}', 'us-east-1')")
    mine = one(carol, "SELECT lambda_fdw.enqueue('no-such-function-2', '{}', 'us-east-1')")
    check("two more failures", settled(conn, [other, mine], timeout=20))
    n = one(carol, "SELECT lambda_fdw.retry_failed('no-such-function-2')")
    check("retry_failed queues again the caller's failed invocations of that function only", n == 1, n)
    n = one(carol, "SELECT lambda_fdw.retry_failed('no-such-function-3')")
    check("and not another role's", n == 0, n)
    check("they settle", settled(conn, [mine], timeout=20))
    n = one(conn, "SELECT lambda_fdw.retry_failed(failed_after => %s, failed_before => now() + interval '1 hour')", [START])
    check("a superuser's retry_failed takes every role's failed invocations in the times given", n == 3, n)
    n2 = one(conn, "SELECT lambda_fdw.retry_failed(failed_before => '2000-01-01')")
    check("failed_before before any failure takes none", n2 == 0, n2)
    e = error_of(connect("ops_dave"), "SELECT lambda_fdw.retry_failed()")
    check("retry_failed for a role with none of its own is 0, no error", e is None, e)
    revoked = connect()
    revoked.execute("REVOKE EXECUTE ON FUNCTION lambda_fdw.retry(bigint) FROM ops_dave")
    e = error_of(dave, "SELECT lambda_fdw.retry(%s)", [other])
    check("retry is not granted to PUBLIC", e == ("42501", "permission denied for function retry"), e)
    for c in (carol, dave, revoked):
        c.close()


def test_callbacks(conn):
    """Completion callbacks: a trigger queues an order's invocation, whose
    callback writes the function's answer into the order row, in the
    transaction that records the outcome, as the role that queued it."""
    for sql in [
        "DROP TABLE IF EXISTS public.cb_orders",
        "CREATE TABLE public.cb_orders (id int PRIMARY KEY, answer jsonb, by_role text, xid bigint)",
        "GRANT SELECT, INSERT, UPDATE ON public.cb_orders TO ops_carol",
        """CREATE OR REPLACE FUNCTION public.cb_done(i lambda_fdw.invocations) RETURNS void LANGUAGE plpgsql AS $$
           BEGIN
             UPDATE public.cb_orders SET answer = i.response, by_role = current_user,
                    xid = pg_catalog.txid_current() % 4294967296
              WHERE id = (i.payload->>'seq')::int;
           END $$""",
        "CREATE OR REPLACE FUNCTION public.cb_boom(i lambda_fdw.invocations) RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom %', i.payload->>'seq'; END $$",
        "CREATE OR REPLACE FUNCTION public.cb_escalate(i lambda_fdw.invocations) RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET ROLE postgres; END $$",
        "CREATE OR REPLACE FUNCTION public.cb_two(i lambda_fdw.invocations, n int) RETURNS void LANGUAGE sql AS $$ SELECT $$",
        "CREATE OR REPLACE PROCEDURE public.cb_proc(i lambda_fdw.invocations) LANGUAGE sql AS $$ SELECT $$",
        "CREATE OR REPLACE FUNCTION public.cb_set(i lambda_fdw.invocations) RETURNS SETOF int LANGUAGE sql AS $$ SELECT 1 $$",
        "DROP TABLE IF EXISTS public.cb_notes",
        "CREATE TABLE public.cb_notes (seq int, note text)",
        "GRANT INSERT ON public.cb_notes TO ops_carol",
        # A SQL function whose result is NULL: what a callback returns is ignored.
        """CREATE OR REPLACE FUNCTION public.cb_null(i lambda_fdw.invocations) RETURNS int LANGUAGE sql AS $$
           INSERT INTO public.cb_notes VALUES ((i.payload->>'seq')::int, i.state || ' as ' || current_user)
           RETURNING NULL::int $$""",
        "REVOKE EXECUTE ON FUNCTION public.cb_done, public.cb_boom, public.cb_escalate, public.cb_two, public.cb_null"
        " FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION public.cb_done, public.cb_boom, public.cb_escalate, public.cb_two, public.cb_null"
        " TO ops_carol",
        """CREATE OR REPLACE FUNCTION public.cb_orders_queue() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             PERFORM lambda_fdw.enqueue('timeline', jsonb_build_object('run', TG_ARGV[0], 'key', 'cb', 'seq', NEW.id, 'ms', 1),
                                        'us-east-1', on_complete => 'public.cb_done'::regproc);
             RETURN NEW;
           END $$""",
        f"CREATE TRIGGER cb_orders_queue AFTER INSERT ON public.cb_orders FOR EACH ROW EXECUTE FUNCTION public.cb_orders_queue('{RUN}-cb')",
        "DROP FOREIGN TABLE IF EXISTS ops_with_callback",
        "CREATE FOREIGN TABLE ops_with_callback (payload jsonb) SERVER ops_ms "
        "OPTIONS (function_name 'timeline', on_complete 'public.cb_done')",
        "GRANT INSERT ON ops_with_callback TO ops_carol",
        "GRANT USAGE ON FOREIGN SERVER ops_ms TO ops_carol",
    ]:
        conn.execute(sql)
    carol = connect("ops_carol")
    carol.execute("INSERT INTO public.cb_orders (id) VALUES (1)")
    order = wait_until(conn, "SELECT answer IS NOT NULL FROM public.cb_orders WHERE id = 1", timeout=20)
    # The callback saved its top-level transaction id; the outcome was
    # written by a subtransaction of the recording round, whose id is
    # larger than its parent's. A callback run by any later transaction
    # would have an id larger than the outcome's.
    row = conn.execute("SELECT o.answer, o.by_role, o.xid < i.xmin::text::bigint, i.state, i.callback_error "
                       "FROM public.cb_orders o, lambda_fdw.invocations i "
                       "WHERE o.id = 1 AND i.payload->>'run' = %s AND (i.payload->>'seq')::int = 1",
                       [f"{RUN}-cb"]).fetchone()
    check("a trigger's invocation: its callback writes the answer into the order row, as the role that queued it, "
          "in the transaction that recorded the outcome",
          order and row == ({"key": "cb", "seq": 1}, "ops_carol", True, "succeeded", None), row)
    # Through a foreign table's on_complete option.
    carol.execute("INSERT INTO public.cb_orders (id) VALUES (2)")
    carol.execute("INSERT INTO ops_with_callback (payload) VALUES (%s)",
                  [json.dumps({"run": f"{RUN}-cbt", "key": "cbt", "seq": 2, "ms": 1})])
    check("a foreign table's on_complete is called too", wait_until(
        conn, "SELECT answer = '{\"key\": \"cbt\", \"seq\": 2}' FROM public.cb_orders WHERE id = 2", timeout=20))

    def finished(payload, fn, user=carol, **extra):
        extra_sql = "".join(f", {k} => {v}" for k, v in extra.items())
        i = one(user, f"SELECT lambda_fdw.enqueue('timeline', %s, 'us-east-1', on_complete => %s::regproc{extra_sql})",
                [json.dumps(payload), fn])
        return i

    run = f"{RUN}-boom"
    boom = finished({"run": run, "key": "b", "seq": 7, "ms": 1}, "public.cb_boom")
    check("a failing callback's invocation settles", settled(conn, [boom]))
    time.sleep(0.5)
    row = conn.execute("SELECT state, response, callback_error, attempts FROM lambda_fdw.invocations WHERE id = %s",
                       [boom]).fetchone()
    check("a callback that raises: the outcome is kept, callback_error says why, one attempt",
          row == ("succeeded", {"key": "b", "seq": 7}, "boom 7", 1), row)
    check("and the invocation was not sent again", len([e for e in timeline(run) if e["at"] == "start"]) == 1,
          timeline(run))
    later = finished({"run": f"{RUN}-more", "key": "m", "seq": 8, "ms": 1}, "public.cb_done")
    check("the worker goes on with the next rows", settled(conn, [later]))
    esc = finished({"run": f"{RUN}-esc", "key": "e", "seq": 9, "ms": 1}, "public.cb_escalate")
    check("a callback that tries SET ROLE settles", settled(conn, [esc]))
    time.sleep(0.5)
    err = one(conn, "SELECT callback_error FROM lambda_fdw.invocations WHERE id = %s", [esc])
    check("a callback runs security-restricted: it cannot SET ROLE",
          err == 'cannot set parameter "role" within security-definer function', err)
    # The call is by the function's OID, with the row the worker read: the
    # queuing role needs no SELECT on the queue table, and a NULL result is
    # no error.
    # With track_functions, the worker's call counts as a trigger's does.
    conn.execute("REVOKE SELECT ON lambda_fdw.invocations FROM PUBLIC")
    conn.execute("ALTER SYSTEM SET track_functions = 'all'")
    conn.execute("SELECT pg_reload_conf()")
    time.sleep(1.5)  # the worker reloads at its next loop, within a second
    try:
        noted = finished({"run": f"{RUN}-null", "key": "n", "seq": 11, "ms": 1}, "public.cb_null")
        check("with SELECT on the queue table revoked from PUBLIC, a callback's invocation settles",
              settled(conn, [noted]))
    finally:
        conn.execute("GRANT SELECT ON lambda_fdw.invocations TO PUBLIC")
        conn.execute("ALTER SYSTEM RESET track_functions")
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    row = (one(conn, "SELECT callback_error FROM lambda_fdw.invocations WHERE id = %s", [noted]),
           conn.execute("SELECT seq, note FROM public.cb_notes").fetchall())
    check("its SQL callback, which returns NULL, ran once as the queuing role", row == (None, [(11, "succeeded as ops_carol")]),
          row)
    check("the call is counted in pg_stat_user_functions", wait_until(
        conn, "SELECT coalesce(sum(calls), 0) = 1 FROM pg_stat_user_functions WHERE funcid = 'public.cb_null'::regproc",
        timeout=10), one(conn, "SELECT sum(calls) FROM pg_stat_user_functions WHERE funcid = 'public.cb_null'::regproc"))
    # EXECUTE revoked between the enqueue and the call.
    lost = finished({"run": f"{RUN}-lost", "key": "l", "seq": 10, "ms": 1}, "public.cb_done",
                    not_before="clock_timestamp() + interval '2 seconds'")
    conn.execute("REVOKE EXECUTE ON FUNCTION public.cb_done FROM ops_carol")
    check("an invocation whose role lost EXECUTE on its callback settles", settled(conn, [lost], timeout=20))
    time.sleep(0.5)
    row = conn.execute("SELECT state, callback_error FROM lambda_fdw.invocations WHERE id = %s", [lost]).fetchone()
    check("the callback is not called, and callback_error says why",
          row == ("succeeded", "permission denied for function public.cb_done(lambda_fdw.invocations)"), row)
    e = error_parts(carol, "SELECT lambda_fdw.enqueue('timeline', '{}', 'us-east-1', on_complete => 'public.cb_done'::regproc)")
    check("enqueue refuses a callback the role may not execute (42501)", e == (
        "42501", "permission denied for function public.cb_done(lambda_fdw.invocations)", None, None), e)
    e = error_parts(carol, "SELECT lambda_fdw.enqueue('timeline', '{}', 'us-east-1', on_complete => 'public.cb_two'::regproc)")
    check("enqueue refuses a callback of another signature (42883)", e == (
        "42883", "on_complete function public.cb_two(lambda_fdw.invocations,integer) must take one argument, "
        "of type lambda_fdw.invocations", None, "CREATE FUNCTION ... (i lambda_fdw.invocations) RETURNS void ..."), e)
    e = error_of(conn, "SELECT lambda_fdw.enqueue('timeline', '{}', 'us-east-1', on_complete => 'public.cb_proc'::regproc)")
    check("enqueue refuses a procedure (42809)", e == (
        "42809", "on_complete public.cb_proc(lambda_fdw.invocations) is not a function"), e)
    e = error_parts(conn, "SELECT lambda_fdw.enqueue('timeline', '{}', 'us-east-1', on_complete => 'public.cb_set'::regproc)")
    check("enqueue refuses a set-returning function (42809)", e == (
        "42809", "on_complete function public.cb_set(lambda_fdw.invocations) returns a set", None,
        "a callback is called once per invocation: declare it RETURNS void, or any single value"), e)
    # A superuser's invocation calls only what superusers own: a table's
    # owner must not make a superuser's INSERT run the owner's code later.
    conn.execute("CREATE OR REPLACE FUNCTION public.cb_daves(i lambda_fdw.invocations) RETURNS void LANGUAGE sql AS $$ SELECT $$")
    conn.execute("ALTER FUNCTION public.cb_daves(lambda_fdw.invocations) OWNER TO ops_dave")
    e = error_parts(conn, "SELECT lambda_fdw.enqueue('timeline', '{}', 'us-east-1', on_complete => 'public.cb_daves'::regproc)")
    check("a superuser's invocation refuses a callback a non-superuser owns (42501)", e == (
        "42501", "on_complete function public.cb_daves(lambda_fdw.invocations) is not owned by a superuser",
        "a superuser's invocation calls only functions that superusers own: the queue worker would run it later, "
        "as that superuser", None), e)
    conn.execute("ALTER FOREIGN TABLE ops_with_callback OPTIONS (SET on_complete 'public.cb_daves')")
    e = error_of(conn, "INSERT INTO ops_with_callback (payload) VALUES ('{}')")
    check("and so does a superuser's INSERT through a table that names one", e == (
        "42501", "on_complete function public.cb_daves(lambda_fdw.invocations) is not owned by a superuser"), e)
    conn.execute("ALTER FOREIGN TABLE ops_with_callback OPTIONS (SET on_complete 'public.no_such_function')")
    e = error_of(conn, "INSERT INTO ops_with_callback (payload) VALUES ('{}')")
    check("INSERT through a table whose on_complete names no function", e == (
        "42883", 'on_complete function "public.no_such_function" does not exist'), e)
    carol.close()


def test_status(conn):
    view = conn.execute("SELECT database, cancelled >= 1 FROM lambda_fdw.queue_status").fetchone()
    check("queue_status names its database and counts the cancelled", view == (DB, True), view)
    row = conn.execute("SELECT queued + sending, succeeded >= 1000, failed, cancelled FROM lambda_fdw.queue_status_by_function "
                       "WHERE function_name = 'timeline' AND region = 'us-east-1'").fetchone()
    check("queue_status_by_function counts per function", row is not None and row[1] is True and row[3] == 1, row)


def main():
    global START
    conn = connect()
    START = one(conn, "SELECT now()")
    setup(conn)
    test_ordering(conn)
    test_ordered_table(conn)
    test_not_before(conn)
    test_operations(conn)
    test_callbacks(conn)
    test_status(conn)
    conn.close()
    print("queue_ops: all checks passed")


if __name__ == "__main__":
    main()
