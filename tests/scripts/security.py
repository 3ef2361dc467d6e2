#!/usr/bin/env python3
"""The security suite of issue 18: one test per row of the issue's table
(what a role did to cross the trust boundary) and per rule 1-7, through
real SQL as the roles involved would run it: roles made with CREATE ROLE,
each on its own connection, against the suite's cluster (library
preloaded, the queue worker working $LAMBDA_FDW_QUEUE_DB) and the wire
stub (127.0.0.1:$LAMBDA_FDW_STUB_PORT).

Each check asserts the exact outcome: SQLSTATE and message, what the stub
received (its `calls` counters, read over HTTP straight from the stub, and
its `whoami` function, which answers the access key id of the request's
SigV4 header), and what the recording trap functions saw.

  row 1   the worker's database's owner sets the database's search_path
          to its own schema, full of operators: the worker and the
          backends run none of them (the planted queue table of each
          window is after_commit.py's)
  row 2   a role granted nothing: no call by any path, nothing queued
  row 3   an ordinary role's server for a region does not catch, nor break,
          anyone's aws_lambda.invoke or enqueue for that region
  row 4   foreign tables: no mapping, an empty mapping, profile / role_arn /
          allow_server_identity set by ordinary roles; keys sign
  row 5   a `\\u0000` answer in backends (json and jsonb)
  row 6   50 MB answers (Content-Length and chunked) to scans and
          aws_lambda.invoke: refused, peak RSS within 20 MB, session goes on
  row 7   operators planted on a superuser's search_path never run for
          enqueue, INSERT, scans, aws_lambda.invoke or the worker
  row 8   the scan invocation cap, and a 300 x 300 product's peak memory
  row 9   a caller's custom.lambda_fdw_invocation_id (and _ids, a batch's)
          refused on every path
  row 10  a view's scan (and INSERT) signs with the view owner's mapping
  rule 1  install and update scripts immune to planted operators; the
          queue table locked to its owner
  rule 4  the RDS surface's identity (own mapping, PUBLIC's, the chain,
          the current user's) on a route server the role has no grant on
          (the RDS guide's grants are tests/regress/sql/rds_guide.sql)

Rules 2, 3, 5 and 7 are covered by the rows above (2: row 2; 3: row 3;
5: rows 4 and 10; 7: rows 6, 8 and 9). Rule 6 (no poison row, attempts
across SIGKILL, the planted queue, the send-time re-check) is
after_commit.py's: here the worker sends what the rows queue, gets row 6's
50 MB answer, and works under row 1's database search_path.

Prints one line per check (`ok - ...` / `FAIL - ...: expected ..., got
...`), cleans up its roles and databases, and exits non-zero if any check
failed.
"""
import json
import os
import sys
import time
import traceback
import urllib.request

import psycopg
from psycopg.rows import tuple_row

from pgcheck import error_of, error_parts, one, peak_rss_kb, wait_until

DB = os.environ.get("LAMBDA_FDW_QUEUE_DB", "lambda_fdw_queue")
INSTALL_DB = "lambda_fdw_security_install"
STUB_PORT = os.environ.get("LAMBDA_FDW_STUB_PORT", "45661")
STUB = f"http://127.0.0.1:{STUB_PORT}"
PG_LOG = os.path.join(os.environ.get("LAMBDA_FDW_WORK", "/tmp/lambda_fdw_work"), "postgres.log")
RUN = f"{int(time.time())}-{os.getpid()}"  # stub counter keys are unique per run

# Every role the suite creates (cluster-wide: dropped before and after).
ROLES = ["sec_dbowner", "sec_nobody", "sec_caller", "sec_mallory", "sec_user4", "sec_user4b",
         "sec_vowner", "sec_reader"]

ENQUEUE = "lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb, regproc, text, timestamptz)"

# PLAN.md's exact messages.
NO_CREDENTIALS_DETAIL = ("Its user mapping, or the server's mapping for PUBLIC, names no access key, "
                         "profile or role, and only a superuser can let a server sign with the server "
                         "process's own AWS identity.")
NO_CREDENTIALS_HINT = ("Create a user mapping with aws_access_key_id and aws_secret_access_key, or ask a "
                       "superuser to set the server option allow_server_identity 'true'.")
RESERVED_KEY = ("22023", "client context must not set custom.lambda_fdw_invocation_id",
                "lambda_fdw sets it on queued invocations only, so that a function can trust it.")
RESERVED_IDS_KEY = ("22023", "client context must not set custom.lambda_fdw_invocation_ids",
                    "lambda_fdw sets it on queued invocations only, so that a function can trust it.")
ENQUEUE_DENIED = ("42501", "permission denied for function enqueue")

# The scan invocation cap (row 8, rule 7): the setting and its error.
SCAN_CAP_SETTING = "lambda_fdw.max_scan_invocations"
SCAN_CAP_DEFAULT = 10000


def too_many(function, invocations, limit, factors):
    return ("54000", f"scan would invoke lambda function {function} {invocations} times, more than "
            f"lambda_fdw.max_scan_invocations ({limit})",
            f"a scan invokes once per combination of the values its conditions give the request columns: {factors}",
            f"SET lambda_fdw.max_scan_invocations to {invocations} or more, or narrow the conditions on the request "
            "columns")


# The 50 MB answer (row 6, rule 7): the core's refusal, on its Content-Length
# or while a chunked body streams.
LIMIT = 6 * 1024 * 1024
TOO_LARGE = ("54000", "lambda function huge returned a response larger than 6 MB (6291456 bytes), "
             "the most Lambda returns")
TOO_LARGE_DETAIL = {
    False: "the response's Content-Length is 52428802 bytes: refused before its body was read",
    True: f"no Content-Length: refused while its body was read, once more than {LIMIT} bytes had arrived",
}
MB = 1024 * 1024

failures = []


def shown(value, limit=600):
    """repr(value), cut short: a failed check may have a 50 MB answer."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check(what, got, want):
    if got == want:
        print(f"ok - {what}", flush=True)
    else:
        print(f"FAIL - {what}: expected {shown(want)}, got {shown(got)}", flush=True)
        failures.append(what)
    return got == want


def check_that(what, ok, got):
    """A check whose expectation is a condition, stated in `what`."""
    if ok:
        print(f"ok - {what}", flush=True)
    else:
        print(f"FAIL - {what}: got {shown(got)}", flush=True)
        failures.append(what)
    return ok


def attempt(conn, sql, args=None):
    """(SQLSTATE, message) of the error `sql` raises, None if it does not;
    run in a transaction rolled back either way, so that a statement
    wrongly accepted changes nothing for the checks after it."""
    try:
        with conn.transaction():
            conn.execute(sql, args)
            raise psycopg.Rollback()
    except psycopg.Error as e:
        return (e.sqlstate, e.diag.message_primary)
    return None


def note(text):
    print(f"# {text}", flush=True)


def connect(db=DB, user=None, retries=50):
    for _ in range(retries):
        try:
            return psycopg.connect(dbname=db, user=user, autocommit=True, row_factory=tuple_row)
        except psycopg.OperationalError:
            time.sleep(0.2)
    return psycopg.connect(dbname=db, user=user, autocommit=True, row_factory=tuple_row)


class Roles:
    """One connection per role, opened when first asked for."""

    def __init__(self):
        self.conns = {}

    def __getitem__(self, role):
        if role not in self.conns or self.conns[role].closed:
            self.conns[role] = connect(user=role)
        return self.conns[role]

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}


admin = None  # the bootstrap superuser, postgres, in DB
roles = Roles()


def stub(function, payload):
    """Calls the stub directly (it checks no signature): its answer."""
    req = urllib.request.Request(f"{STUB}/2015-03-31/functions/{function}/invocations",
                                 data=json.dumps(payload).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def stub_calls(key, of="counted-echo"):
    """How many calls to `of` with `key` the stub received."""
    return stub("calls", {"of": of, "key": key})["calls"]


def key(label):
    return f"{RUN}-{label}"


def copy_error(conn, sql, rows):
    """(SQLSTATE, message, detail, hint) of the error COPY ... FROM STDIN of
    `rows` (one text column each) raises, None if it does not."""
    try:
        with conn.cursor().copy(sql) as copy:
            for row in rows:
                copy.write_row([row])
    except psycopg.Error as e:
        d = e.diag
        return (e.sqlstate, d.message_primary, d.message_detail, d.message_hint)
    return None


def queued_with(key):
    """Rows of the queue (every role's: admin bypasses RLS) whose payload has `key`."""
    return one(admin, "SELECT count(*) FROM lambda_fdw.invocations WHERE payload->>'key' = %s", [key])


def settled(ids, timeout=30.0):
    return wait_until(admin, "SELECT bool_and(state IN ('succeeded', 'failed')) AND count(*) = %s "
                      "FROM lambda_fdw.invocations WHERE id = ANY(%s)", [len(ids), ids], timeout)


def row_of(id, columns="state, attempts, error"):
    return admin.execute(f"SELECT {columns} FROM lambda_fdw.invocations WHERE id = %s", [id]).fetchone()


def unstick(ids):
    """Deletes the rows of `ids` that did not settle (a failed check has
    said so already), so that a row the worker cannot get past does not
    hold up the tests after it."""
    stuck = [r[0] for r in admin.execute("SELECT id FROM lambda_fdw.invocations WHERE id = ANY(%s) "
                                         "AND state NOT IN ('succeeded', 'failed')", [ids])]
    if stuck:
        note(f"deleting unsettled rows {stuck} so that they hold up no later test")
        admin.execute("DELETE FROM lambda_fdw.invocations WHERE id = ANY(%s)", [stuck])


def worker_pid():
    row = admin.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'lambda_fdw queue worker' "
                        "AND datname = %s", [DB]).fetchone()
    return row[0] if row else None


def log_size():
    return os.path.getsize(PG_LOG) if os.path.exists(PG_LOG) else 0


def log_since(offset):
    if not os.path.exists(PG_LOG):
        return ""
    with open(PG_LOG, errors="replace") as f:
        f.seek(offset)
        return f.read()


def no_credentials(role, server):
    return ("28000", f'role "{role}" has no AWS credentials for server "{server}"',
            NO_CREDENTIALS_DETAIL, NO_CREDENTIALS_HINT)


def is_chain_error(err):
    """The server process's own AWS chain, which has no credentials in the
    tests' cluster (started with no AWS environment or files): the call was
    let through to the chain and never left."""
    text = " ".join(x for x in (err or ())[1:] if x)
    return err is not None and err[0] == "28000" and "no credentials found in chain" in text


def whoami(conn, sql, args=None):
    """(access key id, payload received) of a whoami call returning its answer."""
    answer = one(conn, sql, args)
    if isinstance(answer, str):
        answer = json.loads(answer)
    return (answer or {}).get("access_key_id"), (answer or {}).get("payload")


def drop_everything():
    """Removes what this suite creates, so that it can run again."""
    with connect("postgres") as c:
        for db in (DB, INSTALL_DB, INSTALL_DB + "_update"):
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        for role in ROLES:
            if c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                c.execute(f"DROP OWNED BY {role} CASCADE")
                c.execute(f"DROP ROLE {role}")


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---------------------------------------------------------------- setup

def setup():
    global admin
    drop_everything()
    with connect("postgres") as c:
        for role in ROLES:
            c.execute(f"CREATE ROLE {role} LOGIN")
        # Rows 1 and 7's attacker: a non-superuser owner of the worker's
        # database (who owns its schema public).
        c.execute(f"CREATE DATABASE {DB} OWNER sec_dbowner")
    admin = connect()
    for sql in [
        "CREATE EXTENSION lambda_fdw",
        # The region's route, set up by a superuser: us-west-2 -> the stub;
        # a PUBLIC mapping stands for the server's identity.
        f"CREATE SERVER sec_route FOREIGN DATA WRAPPER lambda_fdw "
        f"OPTIONS (region 'us-west-2', endpoint_url '{STUB}', max_attempts '1')",
        "CREATE USER MAPPING FOR PUBLIC SERVER sec_route "
        "OPTIONS (aws_access_key_id 'AKIDROUTE', aws_secret_access_key 'route-secret')",
        "CREATE SCHEMA sec",
        "GRANT USAGE ON SCHEMA sec TO PUBLIC",
    ]:
        admin.execute(sql)
    for name, function, response in [("counted", "counted-echo", "jsonb"), ("whoami", "whoami", "jsonb"),
                                     ("echo", "echo", "jsonb"), ("huge", "huge", "jsonb"),
                                     ("nul", "nul", "jsonb"), ("nul_json", "nul", "json")]:
        admin.execute(f"CREATE FOREIGN TABLE sec.{name} (payload jsonb, context jsonb, status_code int, "
                      f"response {response}) SERVER sec_route OPTIONS (function_name '{function}')")
    for sql in [
        # sec_caller: the RDS guide's grants, enqueue, and the tables.
        "GRANT USAGE ON SCHEMA aws_lambda TO sec_caller",
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA aws_lambda TO sec_caller",
        f"GRANT EXECUTE ON FUNCTION {ENQUEUE} TO sec_caller",
        "GRANT USAGE ON FOREIGN SERVER sec_route TO sec_caller",
        "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA sec TO sec_caller",
        # sec_mallory: an ordinary role that may create lambda_fdw servers.
        "GRANT USAGE ON FOREIGN DATA WRAPPER lambda_fdw TO sec_mallory",
        "CREATE SCHEMA sec_mallory AUTHORIZATION sec_mallory",
        "CREATE SCHEMA sec_caller AUTHORIZATION sec_caller",
        "CREATE SCHEMA sec_user4 AUTHORIZATION sec_user4",
    ]:
        admin.execute(sql)
    check_that("setup: the queue worker runs for the suite's database",
               wait_until(admin, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = "
                          "'lambda_fdw queue worker' AND datname = %s", [DB], timeout=20), None)
    # The worker works the extension's table: an invocation goes out.
    i = one(admin, "SELECT lambda_fdw.enqueue('echo', '{\"setup\": 1}', 'us-west-2')")
    check("setup: the worker sends what enqueue queued", settled([i]) and row_of(i, "state, response, error"),
          ("succeeded", {"setup": 1}, None))


# ---------------------------------------------------------------- rule 1

PLANTED_OPERATORS = [
    # (operator, left type, right type, how the trap computes the answer)
    ("=", "regrole", "regrole", "a::oid OPERATOR(pg_catalog.=) b::oid"),
    ("/", "double precision", "bigint", "a OPERATOR(pg_catalog./) b::double precision"),
    ("=", "oid", "regclass", "a OPERATOR(pg_catalog.=) b::oid"),
    ("=", "regclass", "oid", "a::oid OPERATOR(pg_catalog.=) b"),
    ("=", "oid", "oid", "a OPERATOR(pg_catalog.=) b"),
    ("=", "name", "name", "a OPERATOR(pg_catalog.=) b"),
    ("=", "text", "text", "a OPERATOR(pg_catalog.=) b"),
    ("||", "text", "text", "a OPERATOR(pg_catalog.||) b"),
]


def plant_operators(conn, schema):
    """Creates, in `schema`, operators whose functions record that they ran
    (a row in <schema>.sec_trap_ran and a WARNING in the server log) and
    then answer as the pg_catalog operator would."""
    conn.execute(f"CREATE TABLE {schema}.sec_trap_ran (op text, ran_as name, superuser text, backend text)")
    conn.execute(f"GRANT INSERT ON {schema}.sec_trap_ran TO PUBLIC")
    for n, (op, left, right, body) in enumerate(PLANTED_OPERATORS):
        result = "text" if op == "||" else ("double precision" if op == "/" else "boolean")
        conn.execute(f"""
            CREATE FUNCTION {schema}.sec_trap_{n}(a {left}, b {right}) RETURNS {result}
            LANGUAGE plpgsql SET search_path = pg_catalog AS $$
            BEGIN
              INSERT INTO {schema}.sec_trap_ran VALUES ('{op}({left}, {right})', current_user,
                current_setting('is_superuser'),
                (SELECT backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid()));
              RAISE WARNING 'lambda_fdw security test: planted operator %({left}, {right}) ran as %',
                '{op}', current_user;
              RETURN {body};
            END $$""")
        conn.execute(f"CREATE OPERATOR {schema}.{op} (LEFTARG = {left}, RIGHTARG = {right}, "
                     f"FUNCTION = {schema}.sec_trap_{n})")


def dependents_on_planted(conn, schema):
    """Objects that refer to an operator in `schema` (views' rules,
    policies, index predicates, defaults): those bound at creation to it."""
    return [r[0] for r in conn.execute(
        "SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_catalog.pg_depend d "
        "JOIN pg_catalog.pg_operator o ON d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_operator'::pg_catalog.regclass "
        "AND d.refobjid OPERATOR(pg_catalog.=) o.oid "
        "WHERE o.oprnamespace OPERATOR(pg_catalog.=) %s::pg_catalog.regnamespace ORDER BY 1", [schema])]


@test
def rule1_install_and_update_scripts():
    """Rule 1 (every SQL statement the extension runs itself, the install
    and update scripts included, immune to planted operators): a
    non-superuser database owner plants operators in public, which
    CREATE EXTENSION's script runs with on its search_path (public,
    pg_temp; pg_catalog first). An unqualified `queued_by = current_user::
    regrole` or `total_time_ms / calls` binds to an exact-typed planted
    operator over pg_catalog's coercing one, and that operator then runs
    for every role that reads the view or table, superusers included."""
    with connect("postgres") as c:
        c.execute(f"CREATE DATABASE {INSTALL_DB} OWNER sec_dbowner")
        c.execute(f"CREATE DATABASE {INSTALL_DB}_update OWNER sec_dbowner")
    with connect(INSTALL_DB, "sec_dbowner") as owner:
        plant_operators(owner, "public")
    with connect(INSTALL_DB) as su:
        su.execute("CREATE EXTENSION lambda_fdw")
        check("rule 1: CREATE EXTENSION binds none of its objects to operators planted in public",
              dependents_on_planted(su, "public"), [])
        # Something for the policy and the view's expressions to run on.
        su.execute(f"CREATE SERVER s FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-west-2', endpoint_url '{STUB}')")
        su.execute("CREATE USER MAPPING FOR PUBLIC SERVER s OPTIONS (aws_access_key_id 'AKIDINSTALL', "
                   "aws_secret_access_key 'install-secret')")
        su.execute(f"GRANT EXECUTE ON FUNCTION {ENQUEUE} TO sec_caller")
        su.execute("GRANT USAGE ON SCHEMA aws_lambda TO sec_caller")
        su.execute("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA aws_lambda TO sec_caller")
        with connect(INSTALL_DB, "sec_caller") as caller:
            check("rule 1: a role enqueues there", error_of(
                caller, "SELECT lambda_fdw.enqueue('echo', '{}', 'us-west-2')"), None)
            check("rule 1: ... and invokes", error_of(
                caller, "SELECT status_code FROM aws_lambda.invoke('echo', '{}'::jsonb, 'us-west-2')"), None)
            check("rule 1: ... and reads its queued row and its statistics", (
                one(caller, "SELECT count(*) FROM lambda_fdw.invocations"),
                one(caller, "SELECT count(*) FROM lambda_fdw.stat_invocations "
                    "WHERE database = current_database() AND mean_time_ms >= 0")), (1, 1))
        check("rule 1: a superuser reads the statistics and the queue's status", (
            one(su, "SELECT count(*) FROM lambda_fdw.stat_invocations "
                "WHERE database = current_database() AND mean_time_ms >= 0"),
            # The row counts in one state or another: this database has a
            # queue worker too, which may have sent it already.
            one(su, "SELECT queued + sending + succeeded + failed FROM lambda_fdw.queue_status")), (1, 1))
        check("rule 1: no planted operator ran for the role's calls, nor when it or a superuser read the "
              "extension's table and views",
              su.execute("SELECT DISTINCT op, ran_as, superuser, backend FROM public.sec_trap_ran "
                         "ORDER BY 1, 2, 3, 4").fetchall(), [])
    # Updates: each earlier version, installed clean, updated after the
    # operators are planted.
    versions = []
    with connect(INSTALL_DB) as su:
        versions = [r[0] for r in su.execute(
            "SELECT version FROM pg_available_extension_versions WHERE name = 'lambda_fdw' "
            "AND version <> (SELECT default_version FROM pg_available_extensions WHERE name = 'lambda_fdw') "
            "ORDER BY version")]
    check_that(f"rule 1: there are earlier versions to update from ({versions})", len(versions) > 0, versions)
    for v in versions:
        db = f"{INSTALL_DB}_update"
        with connect(db) as su:
            su.execute("DROP EXTENSION IF EXISTS lambda_fdw CASCADE")
            su.execute("DROP TABLE IF EXISTS public.sec_trap_ran")
            su.execute("DROP FUNCTION IF EXISTS " + ", ".join(
                f"public.sec_trap_{n}" for n in range(len(PLANTED_OPERATORS))) + " CASCADE")
            su.execute(f"CREATE EXTENSION lambda_fdw VERSION '{v}'")
            with connect(db, "sec_dbowner") as owner:
                plant_operators(owner, "public")
            err = error_of(su, "ALTER EXTENSION lambda_fdw UPDATE")
            check(f"rule 1: ALTER EXTENSION UPDATE from {v} with operators planted in public succeeds", err, None)
            check(f"rule 1: the update from {v} binds none of the extension's objects to them",
                  dependents_on_planted(su, "public"), [])
            check(f"rule 1: no planted operator ran during the update from {v}",
                  su.execute("SELECT op, ran_as FROM public.sec_trap_ran").fetchall(), [])


@test
def rule1_queue_table_locked():
    """Rule 1 / 6, the static half: the queue table is the extension's
    member, and a non-superuser, even the database's owner, can attach
    nothing to it (trigger, rule, column) nor add objects to its schema.
    The worker's refusal of a queue table that has triggers or rules, and
    every window of row 1, are after_commit.py's."""
    check("rule 1: lambda_fdw.invocations is a member of the lambda_fdw extension", one(
        admin, "SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid "
        "WHERE d.classid = 'pg_class'::regclass AND d.objid = 'lambda_fdw.invocations'::regclass "
        "AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'lambda_fdw'"), 1)
    owner = roles["sec_dbowner"]
    owner.execute("CREATE FUNCTION public.sec_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$")
    check("rule 1: the database owner cannot add a trigger to the queue table", error_of(
        owner, "CREATE TRIGGER t BEFORE UPDATE ON lambda_fdw.invocations FOR EACH ROW EXECUTE FUNCTION public.sec_noop()"),
        ("42501", "permission denied for table invocations"))
    check("rule 1: nor a rule", error_of(
        owner, "CREATE RULE r AS ON UPDATE TO lambda_fdw.invocations DO ALSO NOTIFY sec"),
        ("42501", "must be owner of table invocations"))
    check("rule 1: nor a column", error_of(owner, "ALTER TABLE lambda_fdw.invocations ADD COLUMN x int"),
          ("42501", "must be owner of table invocations"))
    check("rule 1: nor a table in schema lambda_fdw", error_of(owner, "CREATE TABLE lambda_fdw.x (i int)"),
          ("42501", "permission denied for schema lambda_fdw"))
    check("rule 1: nor a function in schema lambda_fdw", error_of(
        owner, "CREATE FUNCTION lambda_fdw.enqueue(text) RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint'"),
        ("42501", "permission denied for schema lambda_fdw"))
    owner.execute("DROP FUNCTION public.sec_noop()")


# ---------------------------------------------------------------- row 1

@test
def row1_database_owner_settings():
    """Row 1 / rules 1 and 6, the database owner's other lever on the
    worker: ALTER DATABASE ... SET search_path = public, pg_catalog puts
    the owner's schema ahead of pg_catalog for every new session of the
    database, the queue worker's included, and public holds operators that
    unqualified SQL of the worker (or of enqueue and INSERT) would resolve
    to. The worker and the backends pin their own search_path: none of them
    runs, and what is queued is sent as before. (The planted queue table of
    each window, and CREATE EXTENSION's refusal of a planted schema, are
    after_commit.py's test_planted_queue.)"""
    owner = roles["sec_dbowner"]
    plant_operators(owner, "public")
    owner.execute(f"ALTER DATABASE {DB} SET search_path = public, pg_catalog")
    try:
        # The worker reads the database's settings when it connects.
        pid = worker_pid()
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        check_that("row 1: the queue worker starts again, with the database owner's search_path",
                   wait_until(admin, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = "
                              "'lambda_fdw queue worker' AND datname = %s AND pid <> %s", [DB, pid], timeout=20),
                   worker_pid())
        caller = connect(user="sec_caller")
        check("row 1: a new session of the database has it", one(caller, "SHOW search_path"), "public, pg_catalog")
        caller.execute("SELECT count(*) FROM pg_catalog.pg_class WHERE oid = 1259::oid")
        check("row 1: and the planted operators catch that session's own unqualified SQL",
              admin.execute("SELECT DISTINCT op FROM public.sec_trap_ran WHERE ran_as OPERATOR(pg_catalog.=) "
                            "'sec_caller'::pg_catalog.name").fetchall(), [("=(oid, oid)",)])
        admin.execute("TRUNCATE public.sec_trap_ran")
        log_at = log_size()
        with caller.transaction():
            i = one(caller, "SELECT lambda_fdw.enqueue('whoami', '{\"row\": 1}', 'us-west-2')")
            caller.execute("INSERT INTO sec.whoami (payload) VALUES ('{\"row\": 1.1}')")
        # (Qualified: the planted =(regrole, regrole) would catch this too.)
        j = one(admin, "SELECT max(id) FROM lambda_fdw.invocations "
                "WHERE queued_by OPERATOR(pg_catalog.=) 'sec_caller'::pg_catalog.regrole")
        caller.close()
        check("row 1: the worker sends what enqueue and INSERT queued", settled([i, j]) and [
            row_of(x, "state, response->'payload', error") for x in (i, j)],
            [("succeeded", {"row": 1}, None), ("succeeded", {"row": 1.1}, None)])
        check("row 1: no planted operator ran, in the backend or in the worker",
              admin.execute("SELECT DISTINCT op, ran_as, superuser, backend FROM public.sec_trap_ran "
                            "ORDER BY 1, 2, 3, 4").fetchall(), [])
        check("row 1: no planted operator's warning in the server log",
              [line for line in log_since(log_at).splitlines() if "planted operator" in line], [])
    finally:
        owner.execute(f"ALTER DATABASE {DB} RESET search_path")
        owner.execute("DROP TABLE public.sec_trap_ran")
        owner.execute("DROP FUNCTION " + ", ".join(f"public.sec_trap_{n}" for n in range(len(PLANTED_OPERATORS)))
                      + " CASCADE")
        pid = worker_pid()
        if pid is not None:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        wait_until(admin, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = "
                   "'lambda_fdw queue worker' AND datname = %s AND pid <> %s", [DB, pid or 0], timeout=20)


# ---------------------------------------------------------------- row 2

@test
def row2_role_granted_nothing():
    """Row 2 / rule 2: a role granted nothing makes no call by any path,
    queued or not, and queues nothing."""
    nobody = roles["sec_nobody"]
    k = key("row2")
    payload = json.dumps({"key": k})
    check("row 2: enqueue for a region with a route is refused",
          error_of(nobody, "SELECT lambda_fdw.enqueue('counted-echo', %s, 'us-west-2')", [payload]), ENQUEUE_DENIED)
    check("row 2: enqueue for a region without a lambda_fdw server is refused",
          error_of(nobody, "SELECT lambda_fdw.enqueue('counted-echo', %s, 'sa-east-1')", [payload]), ENQUEUE_DENIED)
    check("row 2: enqueue of another account's full ARN is refused", error_of(
        nobody, "SELECT lambda_fdw.enqueue('arn:aws:lambda:eu-west-3:123456789012:function:counted-echo', %s)",
        [payload]), ENQUEUE_DENIED)
    check("row 2: enqueue with named arguments is refused", error_of(
        nobody, "SELECT lambda_fdw.enqueue(function_name => 'counted-echo', payload => %s::jsonb, "
        "region => 'us-west-2', invocation_type => 'Event')", [payload]), ENQUEUE_DENIED)
    denied_schema = ("42501", "permission denied for schema aws_lambda")
    check("row 2: aws_lambda.invoke (text, jsonb) is refused",
          error_of(nobody, "SELECT * FROM aws_lambda.invoke('counted-echo', %s::jsonb, 'us-west-2')", [payload]),
          denied_schema)
    check("row 2: aws_lambda.invoke (function ARN composite, json) is refused", error_of(
        nobody, "SELECT * FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('counted-echo', 'us-west-2'), "
        "%s::json)", [payload]), denied_schema)
    check("row 2: a scan of a foreign table is refused",
          error_of(nobody, "SELECT * FROM sec.counted WHERE payload = %s::jsonb", [payload]),
          ("42501", "permission denied for foreign table counted"))
    check("row 2: INSERT into a foreign table is refused",
          error_of(nobody, "INSERT INTO sec.counted (payload) VALUES (%s::jsonb)", [payload]),
          ("42501", "permission denied for foreign table counted"))
    check("row 2: writing the queue table itself is refused", error_of(
        nobody, "INSERT INTO lambda_fdw.invocations (queued_by, function_name, region, invocation_type, payload, "
        "max_attempts) VALUES ('sec_nobody', 'counted-echo', 'us-west-2', 'RequestResponse', %s, 1)", [payload]),
        ("42501", "permission denied for table invocations"))
    check("row 2: creating a lambda_fdw server is refused", error_of(
        nobody, f"CREATE SERVER nobody_s FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-west-2', endpoint_url '{STUB}')"),
        ("42501", "permission denied for foreign-data wrapper lambda_fdw"))
    check("row 2: a user mapping for itself on the route is refused", error_of(
        nobody, "CREATE USER MAPPING FOR CURRENT_USER SERVER sec_route "
        "OPTIONS (aws_access_key_id 'AKIDNOBODY', aws_secret_access_key 'nobody-secret')"),
        ("42501", "permission denied for foreign server sec_route"))
    check("row 2: IMPORT FOREIGN SCHEMA (ListFunctions) through the route is refused",
          error_of(nobody, "IMPORT FOREIGN SCHEMA lambda FROM SERVER sec_route INTO sec"),
          ("42501", "permission denied for foreign server sec_route"))
    check("row 2: nothing was queued", queued_with(k), 0)
    check("row 2: the stub received nothing", stub_calls(k), 0)


# ---------------------------------------------------------------- row 3

@test
def row3_ordinary_role_server_is_no_route():
    """Row 3 / rule 3: an ordinary role's servers for a region, granted to
    PUBLIC, neither receive nor break anyone else's aws_lambda.invoke and
    enqueue for that region; they still serve the role's own tables."""
    region = "eu-north-1"
    mallory, caller = roles["sec_mallory"], roles["sec_caller"]
    for sql in [
        f"CREATE SERVER sec_mal FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region '{region}', endpoint_url '{STUB}', max_attempts '1')",
        "CREATE USER MAPPING FOR PUBLIC SERVER sec_mal OPTIONS (aws_access_key_id 'AKIDMALLORY', aws_secret_access_key 'mallory-secret')",
        "GRANT USAGE ON FOREIGN SERVER sec_mal TO PUBLIC",
        f"CREATE SERVER sec_mal2 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region '{region}', endpoint_url '{STUB}')",
        "GRANT USAGE ON FOREIGN SERVER sec_mal2 TO PUBLIC",
        "CREATE FOREIGN TABLE sec_mallory.whoami (payload jsonb, response jsonb) SERVER sec_mal OPTIONS (function_name 'whoami')",
    ]:
        mallory.execute(sql)
    # No superuser's server for the region: the settings and the server
    # process's chain (no credentials here), never mallory's endpoint.
    k1, k2, k3 = key("row3-invoke"), key("row3-enqueue"), key("row3-moved")
    err = error_parts(caller, "SELECT * FROM aws_lambda.invoke('counted-echo', %s::jsonb, %s)",
                      [json.dumps({"key": k1}), region])
    check_that("row 3: without a superuser's server, aws_lambda.invoke takes the settings' route "
               "(the server process's chain: no credentials here), not mallory's servers", is_chain_error(err), err)
    i = one(caller, "SELECT lambda_fdw.enqueue('counted-echo', %s, %s)", [json.dumps({"key": k2}), region])
    check("row 3: enqueue records no server for the region", row_of(i, "server, user_mapping"), (None, None))
    check_that("row 3: the worker sends it through the chain (no credentials), not mallory's servers",
               settled([i]) and row_of(i)[0] == "failed" and "no credentials found in chain" in (row_of(i)[2] or ""),
               row_of(i))
    check("row 3: mallory's endpoint received neither", (stub_calls(k1), stub_calls(k2)), (0, 0))
    # With a superuser's route server: it, not mallory's, and no 42710.
    admin.execute(f"CREATE SERVER sec_route_eun1 FOREIGN DATA WRAPPER lambda_fdw "
                  f"OPTIONS (region '{region}', endpoint_url '{STUB}', max_attempts '1')")
    admin.execute("CREATE USER MAPPING FOR PUBLIC SERVER sec_route_eun1 "
                  "OPTIONS (aws_access_key_id 'AKIDROUTE3', aws_secret_access_key 'route3-secret')")
    check("row 3: aws_lambda.invoke goes through the superuser's server, signed with its mapping",
          whoami(caller, "SELECT payload FROM aws_lambda.invoke('whoami', '{\"n\": 1}'::jsonb, %s)", [region]),
          ("AKIDROUTE3", {"n": 1}))
    check("row 3: so does a superuser's own aws_lambda.invoke",
          whoami(admin, "SELECT payload FROM aws_lambda.invoke('whoami', '{\"n\": 2}'::jsonb, %s)", [region]),
          ("AKIDROUTE3", {"n": 2}))
    i = one(caller, "SELECT lambda_fdw.enqueue('whoami', '{\"n\": 3}', %s)", [region])
    check("row 3: enqueue records the superuser's server",
          row_of(i, "(SELECT srvname FROM pg_foreign_server WHERE oid = server)")[0], "sec_route_eun1")
    check("row 3: the worker sends it there, signed with its mapping",
          settled([i]) and row_of(i, "state, response, error"),
          ("succeeded", {"access_key_id": "AKIDROUTE3", "payload": {"n": 3}}, None))
    check("row 3: mallory's own foreign table still works, with her mapping",
          whoami(mallory, "SELECT response FROM sec_mallory.whoami WHERE payload = '{\"n\": 4}'"),
          ("AKIDMALLORY", {"n": 4}))
    # A server moved to an ordinary owner is no route any more.
    admin.execute("ALTER SERVER sec_route_eun1 OWNER TO sec_mallory")
    err = error_parts(caller, "SELECT * FROM aws_lambda.invoke('counted-echo', %s::jsonb, %s)",
                      [json.dumps({"key": k3}), region])
    check_that("row 3: a route server given to an ordinary owner stops being the route", is_chain_error(err), err)
    check("row 3: ... and receives nothing", stub_calls(k3), 0)
    admin.execute("DROP SERVER sec_route_eun1 CASCADE")
    mallory.execute("DROP SERVER sec_mal, sec_mal2 CASCADE")


# ---------------------------------------------------------------- row 4

@test
def row4_foreign_table_credentials():
    """Row 4 / rule 5: a foreign table's checking user needs credentials of
    its own in its mapping (or PUBLIC's), unless it is a superuser or a
    superuser set allow_server_identity; profile, a bare role_arn and
    allow_server_identity are superuser-only; keys sign with themselves."""
    server, region = "sec_s4", "ap-northeast-1"
    for sql in [
        f"CREATE SERVER {server} FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region '{region}', endpoint_url '{STUB}', max_attempts '1')",
        f"GRANT USAGE ON FOREIGN SERVER {server} TO sec_user4, sec_user4b",
        f"CREATE FOREIGN TABLE sec.s4_counted (payload jsonb, response jsonb) SERVER {server} OPTIONS (function_name 'counted-echo')",
        f"CREATE FOREIGN TABLE sec.s4_whoami (payload jsonb, response jsonb) SERVER {server} OPTIONS (function_name 'whoami')",
        "GRANT SELECT, INSERT ON sec.s4_counted, sec.s4_whoami TO sec_user4, sec_user4b",
    ]:
        admin.execute(sql)
    u4, u4b, mallory = roles["sec_user4"], roles["sec_user4b"], roles["sec_mallory"]
    k = key("row4")
    scan = "SELECT response FROM sec.s4_counted WHERE payload = %s::jsonb"
    insert = "INSERT INTO sec.s4_counted (payload) VALUES (%s::jsonb)"
    p = json.dumps({"key": k})
    check("row 4: no mapping at all: a scan is refused, naming the role and the server",
          error_parts(u4, scan, [p]), no_credentials("sec_user4", server))
    check("row 4: no mapping at all: INSERT is refused the same way",
          error_parts(u4, insert, [p]), no_credentials("sec_user4", server))
    u4.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER {server}")
    check("row 4: an empty mapping the role made for itself is not enough (scan)",
          error_parts(u4, scan, [p]), no_credentials("sec_user4", server))
    check("row 4: ... nor for INSERT", error_parts(u4, insert, [p]), no_credentials("sec_user4", server))
    check("row 4: ... nor for COPY FROM", copy_error(u4, "COPY sec.s4_counted (payload) FROM STDIN", [p]),
          no_credentials("sec_user4", server))
    admin.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {server}")
    check("row 4: an empty mapping for PUBLIC is not enough either",
          error_parts(u4b, scan, [p]), no_credentials("sec_user4b", server))
    check("row 4: profile on its own mapping is refused to an ordinary role", attempt(
        u4, f"ALTER USER MAPPING FOR CURRENT_USER SERVER {server} OPTIONS (ADD profile 'default')"),
        ("42501", 'only a superuser can set option "profile"'))
    check("row 4: ... and in a new mapping", attempt(
        u4b, f"CREATE USER MAPPING FOR CURRENT_USER SERVER {server} OPTIONS (profile 'default')"),
        ("42501", 'only a superuser can set option "profile"'))
    check("row 4: a bare role_arn is refused to an ordinary role", attempt(
        u4, f"ALTER USER MAPPING FOR CURRENT_USER SERVER {server} "
        "OPTIONS (ADD role_arn 'arn:aws:iam::000000000000:role/sec')"),
        ("42501", 'only a superuser can set option "role_arn" without "aws_access_key_id"'))
    check("row 4: ... with external_id too", attempt(
        u4, f"ALTER USER MAPPING FOR CURRENT_USER SERVER {server} "
        "OPTIONS (ADD role_arn 'arn:aws:iam::000000000000:role/sec', ADD external_id 'x')"),
        ("42501", 'only a superuser can set option "role_arn" without "aws_access_key_id"'))
    # A server owner is no superuser either.
    check("row 4: allow_server_identity is refused to the owner of a new server", attempt(
        mallory, "CREATE SERVER sec_mal4 FOREIGN DATA WRAPPER lambda_fdw "
        "OPTIONS (region 'ap-south-2', allow_server_identity 'true')"),
        ("42501", 'only a superuser can set option "allow_server_identity"'))
    mallory.execute("CREATE SERVER sec_mal4 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'ap-south-2')")
    check("row 4: ... and to the owner of an existing one", attempt(
        mallory, "ALTER SERVER sec_mal4 OPTIONS (ADD allow_server_identity 'true')"),
        ("42501", 'only a superuser can set option "allow_server_identity"'))
    check("row 4: a server owner cannot give PUBLIC's mapping a profile", attempt(
        mallory, "CREATE USER MAPPING FOR PUBLIC SERVER sec_mal4 OPTIONS (profile 'default')"),
        ("42501", 'only a superuser can set option "profile"'))
    mallory.execute("DROP SERVER sec_mal4 CASCADE")
    check("row 4: IMPORT FOREIGN SCHEMA (ListFunctions) with the empty mapping is refused the same way",
          error_parts(u4, f"IMPORT FOREIGN SCHEMA lambda LIMIT TO (\"fn-000\") FROM SERVER {server} INTO sec_user4"),
          no_credentials("sec_user4", server))
    check("row 4: nothing was sent or queued by the refused calls", (stub_calls(k), queued_with(k)), (0, 0))
    # A superuser's choice lets the empty mapping through, to the chain.
    admin.execute(f"ALTER SERVER {server} OPTIONS (ADD allow_server_identity 'true')")
    err = error_parts(u4, scan, [p])
    check_that("row 4: with a superuser's allow_server_identity 'true', the empty mapping signs with the "
               "server process's chain (no credentials here)", is_chain_error(err), err)
    admin.execute(f"ALTER SERVER {server} OPTIONS (DROP allow_server_identity)")
    # A superuser checking user needs nothing.
    admin.execute(f"DROP USER MAPPING FOR PUBLIC SERVER {server}")
    err = error_parts(admin, scan, [p])
    check_that("row 4: a superuser without a mapping is let through to the chain", is_chain_error(err), err)
    check("row 4: the chain's calls never left", stub_calls(k), 0)
    # A superuser may set profile and a bare role_arn.
    check("row 4: a superuser may set profile on a role's mapping", error_of(
        admin, f"CREATE USER MAPPING FOR sec_user4b SERVER {server} OPTIONS (profile 'sec')"), None)
    check("row 4: ... and a bare role_arn", error_of(
        admin, f"ALTER USER MAPPING FOR sec_user4b SERVER {server} "
        "OPTIONS (DROP profile, ADD role_arn 'arn:aws:iam::000000000000:role/sec')"), None)
    admin.execute(f"DROP USER MAPPING FOR sec_user4b SERVER {server}")
    # Keys of its own sign with themselves.
    u4.execute(f"ALTER USER MAPPING FOR CURRENT_USER SERVER {server} "
               "OPTIONS (ADD aws_access_key_id 'AKIDUSER4', ADD aws_secret_access_key 'user4-secret')")
    check("row 4: an ordinary role may add role_arn to a mapping with its own keys", error_of(
        u4, f"ALTER USER MAPPING FOR CURRENT_USER SERVER {server} "
        "OPTIONS (ADD role_arn 'arn:aws:iam::000000000000:role/sec')"), None)
    u4.execute(f"ALTER USER MAPPING FOR CURRENT_USER SERVER {server} OPTIONS (DROP role_arn)")
    check("row 4: a scan signs with the mapping's own access key",
          whoami(u4, "SELECT response FROM sec.s4_whoami WHERE payload = '{\"u\": 4}'"), ("AKIDUSER4", {"u": 4}))
    with u4.transaction():
        u4.execute("INSERT INTO sec.s4_whoami (payload) VALUES ('{\"u\": 5}')")
    i = one(admin, "SELECT max(id) FROM lambda_fdw.invocations WHERE queued_by = 'sec_user4'::regrole")
    check("row 4: an INSERT is sent by the worker signed with the mapping's own access key",
          settled([i]) and row_of(i, "state, response, error"),
          ("succeeded", {"access_key_id": "AKIDUSER4", "payload": {"u": 5}}, None))
    with u4.transaction():
        check("row 4: COPY FROM queues with the mapping's keys too",
              copy_error(u4, "COPY sec.s4_whoami (payload) FROM STDIN", ['{"u": 5.5}']), None)
    i = one(admin, "SELECT max(id) FROM lambda_fdw.invocations WHERE queued_by = 'sec_user4'::regrole")
    check("row 4: ... and the worker sends what COPY queued signed with them",
          settled([i]) and row_of(i, "state, response, error"),
          ("succeeded", {"access_key_id": "AKIDUSER4", "payload": {"u": 5.5}}, None))
    admin.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {server} "
                  "OPTIONS (aws_access_key_id 'AKIDPUBLIC4', aws_secret_access_key 'public4-secret')")
    check("row 4: a role without a mapping of its own signs with PUBLIC's keys",
          whoami(u4b, "SELECT response FROM sec.s4_whoami WHERE payload = '{\"u\": 6}'"), ("AKIDPUBLIC4", {"u": 6}))
    admin.execute(f"DROP SERVER {server} CASCADE")


# ---------------------------------------------------------------- row 5

@test
def row5_nul_answer():
    """Row 5, in backends: an answer jsonb cannot hold, {"a": "\\u0000"}, is
    an error where the answer is jsonb, the text as returned where it is
    json, and the session goes on. (Queued, the same answer is
    after_commit.py's test_poison_answer.)"""
    caller = roles["sec_caller"]
    jsonb_error = ("22P05", "unsupported Unicode escape sequence")
    check("row 5: aws_lambda.invoke (jsonb) refuses the answer",
          error_of(caller, "SELECT payload FROM aws_lambda.invoke('nul', '{}'::jsonb, 'us-west-2')"), jsonb_error)
    check("row 5: aws_lambda.invoke (json) returns it as the function did",
          one(caller, "SELECT payload FROM aws_lambda.invoke('nul', '{}'::json, 'us-west-2')"), {"a": "\u0000"})
    check("row 5: a scan with a jsonb response column refuses it",
          error_of(caller, "SELECT response FROM sec.nul WHERE payload = '{}'"), jsonb_error)
    check("row 5: a scan with a json response column returns it",
          one(caller, "SELECT response FROM sec.nul_json WHERE payload = '{}'"), {"a": "\u0000"})
    check("row 5: the session goes on",
          one(caller, "SELECT payload FROM aws_lambda.invoke('echo', '{\"after\": \"nul\"}'::jsonb, 'us-west-2')"),
          {"after": "nul"})


# ---------------------------------------------------------------- row 6

@test
def row6_huge_answers():
    """Row 6 / rule 7: 50 MB answers, with a Content-Length and chunked,
    to a scan and to aws_lambda.invoke: refused while read, the backend's
    peak RSS (VmHWM) stays within 20 MB of its peak before, and the
    session goes on. Queued, the same answer fails its row once."""
    conn = connect(user="sec_caller")
    pid = one(conn, "SELECT pg_backend_pid()")
    # Warm: the library, the client and the stub connection are set up.
    conn.execute("SELECT payload FROM aws_lambda.invoke('echo', '{}'::jsonb, 'us-west-2')")
    conn.execute("SELECT response FROM sec.echo WHERE payload = '{}'")
    before = peak_rss_kb(pid)
    cases = [
        ("aws_lambda.invoke", False, "SELECT payload FROM aws_lambda.invoke('huge', %s::jsonb, 'us-west-2')"),
        ("aws_lambda.invoke", True, "SELECT payload FROM aws_lambda.invoke('huge', %s::jsonb, 'us-west-2')"),
        ("a scan", False, "SELECT response FROM sec.huge WHERE payload = %s::jsonb"),
        ("a scan", True, "SELECT response FROM sec.huge WHERE payload = %s::jsonb"),
    ]
    for n, (surface, chunked, sql) in enumerate(cases):
        how = "chunked" if chunked else "with Content-Length"
        err = error_parts(conn, sql, [json.dumps({"mb": 50, "chunked": chunked})])
        if surface == "a scan":
            want = TOO_LARGE + (TOO_LARGE_DETAIL[chunked], None)
        else:  # worded as RDS words a failed call
            want = (TOO_LARGE[0], "invoke API failed", f"AWS Lambda client returned '{TOO_LARGE[1]}'.", None)
        check(f"row 6: {surface}: a 50 MB answer {how} is refused while read", err, want)
        grown = peak_rss_kb(pid) - before
        check_that(f"row 6: {surface}, {how}: peak RSS within 20 MB of the peak before ({grown / 1024:.1f} MB)",
                   grown <= 20 * 1024, f"{grown} kB")
        check(f"row 6: {surface}, {how}: the session goes on", one(
            conn, "SELECT payload FROM aws_lambda.invoke('echo', %s::jsonb, 'us-west-2')",
            [json.dumps({"after": n})]), {"after": n})
    conn.close()
    wait_until(admin, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'lambda_fdw queue worker' "
               "AND datname = current_database()", timeout=15)
    w = worker_pid()
    i = one(roles["sec_caller"], "SELECT lambda_fdw.enqueue('huge', '{\"mb\": 50, \"chunked\": true}', 'us-west-2')")
    ok = settled([i])
    state = row_of(i, "state, attempts, error, response")
    check_that("row 6: queued, a 50 MB chunked answer fails its row once with the core's error, nothing stored",
               ok and state[:2] == ("failed", 1) and TOO_LARGE[1] in (state[2] or "") and state[3] is None, state)
    check("row 6: the same worker process goes on", worker_pid(), w)
    unstick([i])


# ---------------------------------------------------------------- row 7

@test
def row7_planted_operators_at_call_time():
    """Row 7 / rule 1: operators =(oid, regclass), =(regclass, oid),
    =(oid, oid) (and name, text, ||) planted by the database's owner in
    public, first on a superuser's search_path, ahead of pg_catalog: the
    superuser's enqueue, INSERT into a foreign table, scan,
    aws_lambda.invoke and CREATE FOREIGN TABLE, and the worker's rounds,
    run none of them."""
    owner = roles["sec_dbowner"]
    plant_operators(owner, "public")
    su = connect()
    su.execute("SET search_path = public, pg_catalog")
    # The traps work: the superuser's own unqualified SQL runs them.
    su.execute("SELECT count(*) FROM pg_class WHERE oid = 'pg_class'::regclass AND relnamespace = 11::oid")
    check("row 7: the planted operators do catch the superuser's own unqualified SQL",
          admin.execute("SELECT DISTINCT op, ran_as, superuser FROM public.sec_trap_ran ORDER BY 1").fetchall(),
          [("=(oid, oid)", "postgres", "on"), ("=(oid, regclass)", "postgres", "on")])
    admin.execute("TRUNCATE public.sec_trap_ran")
    log_at = log_size()
    outcomes = []
    with su.transaction():
        i = one(su, "SELECT lambda_fdw.enqueue('whoami', '{\"row\": 7}', 'us-west-2')")
        su.execute("INSERT INTO sec.whoami (payload) VALUES ('{\"row\": 7.1}')")
    outcomes.append(whoami(su, "SELECT response FROM sec.whoami WHERE payload = '{\"row\": 7.2}'"))
    outcomes.append(whoami(su, "SELECT payload FROM aws_lambda.invoke('whoami', '{\"row\": 7.3}'::jsonb, 'us-west-2')"))
    su.execute("CREATE FOREIGN TABLE sec.row7 (payload jsonb, response jsonb) SERVER sec_route OPTIONS (function_name 'echo')")
    su.execute("DROP FOREIGN TABLE sec.row7")
    j = one(su, "SELECT max(id) FROM lambda_fdw.invocations")
    check("row 7: the superuser's calls work as usual", outcomes,
          [("AKIDROUTE", {"row": 7.2}), ("AKIDROUTE", {"row": 7.3})])
    check("row 7: the worker sends both queued rows", settled([i, j]) and [
        row_of(x, "state, response->'payload'") for x in (i, j)],
        [("succeeded", {"row": 7}), ("succeeded", {"row": 7.1})])
    su.close()
    ran = admin.execute("SELECT DISTINCT op, ran_as, superuser, backend FROM public.sec_trap_ran "
                        "ORDER BY 1, 2, 3, 4").fetchall()
    check("row 7: no planted operator ran", ran, [])
    check("row 7: no planted operator's warning in the server log",
          [l for l in log_since(log_at).splitlines() if "planted operator" in l], [])
    owner.execute("DROP TABLE public.sec_trap_ran")
    owner.execute("DROP FUNCTION " + ", ".join(f"public.sec_trap_{n}" for n in range(len(PLANTED_OPERATORS)))
                  + " CASCADE")


# ---------------------------------------------------------------- row 8

def fanout(n, tag, pad=1000):
    return [json.dumps({"i": i, "tag": tag, "pad": "x" * pad}) for i in range(n)]


def contexts(n):
    return [json.dumps({"custom": {"c": j}}) for j in range(n)]


@test
def row8_bounded_plans():
    """Row 8 / rule 7: a scan whose = ANY lists multiply past the cap is
    refused before any call; with the cap raised, a 300 x 300 product
    (held open by a cursor after 3,000 of its rows) grows the backend's
    peak RSS no more than a whole 300-payload scan does, within 8 MB.
    (Before: the 90,000 requests were planned in memory first, +173 MB.)"""
    caller = roles["sec_caller"]
    k = key("row8")
    payloads = [json.dumps({"key": k, "i": i}) for i in range(300)]
    # Without a cap the scan would make its 90,000 calls: the timeout
    # ends it instead (57014), and the check fails.
    caller.execute("SET statement_timeout = '10s'")
    err = error_parts(caller, "SELECT count(*) FROM sec.counted WHERE payload = ANY(%s::jsonb[]) "
                      "AND context = ANY(%s::jsonb[])", [payloads, contexts(300)])
    caller.execute("RESET statement_timeout")
    check("row 8: a 300 x 300 scan is refused at the default cap",
          err, too_many("counted-echo", 90000, SCAN_CAP_DEFAULT, "300 payloads x 300 contexts"))
    check("row 8: ... before any call", stub_calls(k), 0)
    check("row 8: the cap's default", one(caller, f"SHOW {SCAN_CAP_SETTING}"), str(SCAN_CAP_DEFAULT))
    caller.execute(f"SET {SCAN_CAP_SETTING} = 50")
    check("row 8: a scan of exactly the cap (5 x 10 = 50) runs", one(
        caller, "SELECT count(*) FROM sec.counted WHERE payload = ANY(%s::jsonb[]) AND context = ANY(%s::jsonb[])",
        [payloads[:5], contexts(10)]), 50)
    err = error_parts(caller, "SELECT count(*) FROM sec.counted WHERE payload = ANY(%s::jsonb[]) "
                      "AND context = ANY(%s::jsonb[])", [payloads[5:10], contexts(11)])
    check("row 8: one more (5 x 11 = 55) is refused", err, too_many("counted-echo", 55, 50, "5 payloads x 11 contexts"))
    check("row 8: the stub received the 50 calls of the scan that ran, none of the refused ones", stub_calls(k), 50)
    caller.execute(f"RESET {SCAN_CAP_SETTING}")

    def backend():
        c = connect(user="sec_caller")
        c.execute("SELECT count(*) FROM sec.echo WHERE payload = '{\"warm\": 1}'")
        return c, one(c, "SELECT pg_backend_pid()")

    a, pid_a = backend()
    before = peak_rss_kb(pid_a)
    n = one(a, "SELECT count(*) FROM sec.echo WHERE payload = ANY(%s::jsonb[])", [fanout(300, "a")])
    grown_300 = peak_rss_kb(pid_a) - before
    check("row 8: the 300-payload scan answers 300 rows", n, 300)
    a.close()
    b, pid_b = backend()
    b.execute(f"SET {SCAN_CAP_SETTING} = 90000")
    before = peak_rss_kb(pid_b)
    b.execute("BEGIN")
    b.execute("DECLARE product NO SCROLL CURSOR FOR SELECT payload->'i', context->'custom'->'c' FROM sec.echo "
              "WHERE payload = ANY(%s::jsonb[]) AND context = ANY(%s::jsonb[])", [fanout(300, "b"), contexts(300)])
    rows = []
    for _ in range(3):
        rows += b.execute("FETCH FORWARD 1000 FROM product").fetchall()
    grown_product = peak_rss_kb(pid_b) - before
    b.execute("CLOSE product")
    b.execute("COMMIT")
    check("row 8: the open 300 x 300 scan gave 3,000 distinct rows", len(set(rows)), 3000)
    check_that(f"row 8: 300 x 300 grows peak RSS no more than 300 does, within 8 MB "
               f"({grown_product / 1024:.1f} MB vs {grown_300 / 1024:.1f} MB)",
               grown_product <= grown_300 + 8 * 1024, (grown_product, grown_300))
    check("row 8: the session goes on", one(b, "SELECT count(*) FROM sec.echo WHERE payload = '{\"after\": 8}'"), 1)
    b.close()


# ---------------------------------------------------------------- row 9

UNREADABLE_DETAIL = ("lambda_fdw reads a context before it sends it, to keep custom.lambda_fdw_invocation_id "
                     "and custom.lambda_fdw_invocation_ids its own: numbers must fit a double, and nesting stay "
                     "within 128 levels.")


@test
def row9_reserved_invocation_id():
    """Row 9 / rule 7: a caller's context carrying
    custom.lambda_fdw_invocation_id is refused (22023) on every path, in
    every spelling, before anything is sent or queued, and so is
    custom.lambda_fdw_invocation_ids (a batch's ids); other keys pass."""
    caller = roles["sec_caller"]
    k = key("row9")
    p = json.dumps({"key": k})
    forged = one(admin, "SELECT max(id) FROM lambda_fdw.invocations")  # another role's real id
    ctx = json.dumps({"custom": {"lambda_fdw_invocation_id": forged}})
    cases = [
        ("aws_lambda.invoke (text, jsonb)",
         "SELECT * FROM aws_lambda.invoke('counted-echo', %s::jsonb, 'us-west-2', context => %s::jsonb)", [p, ctx]),
        ("aws_lambda.invoke (text, json)",
         "SELECT * FROM aws_lambda.invoke('counted-echo', %s::json, 'us-west-2', context => %s::json)", [p, ctx]),
        ("aws_lambda.invoke (function ARN composite, jsonb)",
         "SELECT * FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('counted-echo', 'us-west-2'), "
         "%s::jsonb, 'RequestResponse', 'None', %s::jsonb)", [p, ctx]),
        ("aws_lambda.invoke (json) with the key in a second \"custom\" member",
         "SELECT * FROM aws_lambda.invoke('counted-echo', %s::json, 'us-west-2', context => "
         "('{\"custom\": {\"app\": 1}, \"custom\": {\"lambda_fdw_invocation_id\": ' || %s || '}}')::json)",
         [p, str(forged)]),
        ("aws_lambda.invoke (json) with the key spelled with a \\u escape",
         "SELECT * FROM aws_lambda.invoke('counted-echo', %s::json, 'us-west-2', context => "
         "'{\"custom\": {\"lambda_fdw_invocation_\\u0069d\": 1}}'::json)", [p]),
        ("aws_lambda.invoke with a null id", "SELECT * FROM aws_lambda.invoke('counted-echo', %s::jsonb, 'us-west-2', "
         "context => '{\"custom\": {\"lambda_fdw_invocation_id\": null}}'::jsonb)", [p]),
        ("a scan with context = ...",
         "SELECT response FROM sec.counted WHERE payload = %s::jsonb AND context = %s::jsonb", [p, ctx]),
        ("a scan with context = ANY(...), one of them forged",
         "SELECT response FROM sec.counted WHERE payload = %s::jsonb AND context = ANY(ARRAY['{}', %s]::jsonb[])",
         [p, ctx]),
        ("INSERT with a context column",
         "INSERT INTO sec.counted (payload, context) VALUES (%s::jsonb, %s::jsonb)", [p, ctx]),
        ("enqueue", "SELECT lambda_fdw.enqueue('counted-echo', %s, 'us-west-2', context => %s::jsonb)", [p, ctx]),
    ]
    for label, sql, args in cases:
        check(f"row 9: {label}: refused", error_parts(caller, sql, args), RESERVED_KEY + (None,))
    # A batch's key, on every path (the cases whose context is their
    # second argument).
    ids_ctx = json.dumps({"custom": {"lambda_fdw_invocation_ids": [forged]}})
    for label, sql, args in cases[:3] + cases[6:]:
        check(f"row 9: {label}, with custom.lambda_fdw_invocation_ids: refused",
              error_parts(caller, sql, [args[0], ids_ctx]), RESERVED_IDS_KEY + (None,))
    # The context as a parameter: a generic plan's PARAM_EXTERN, a join's
    # PARAM_EXEC.
    caller.execute("SET plan_cache_mode = force_generic_plan")
    prepared = []
    for _ in range(2):
        try:
            caller.execute("SELECT response FROM sec.counted WHERE payload = %s::jsonb AND context = %s::jsonb",
                           [p, ctx], prepare=True)
            prepared.append(None)
        except psycopg.Error as e:
            d = e.diag
            prepared.append((e.sqlstate, d.message_primary, d.message_detail, d.message_hint))
    caller.execute("RESET plan_cache_mode")
    check("row 9: a prepared scan's generic plan with the context as a parameter: refused, twice",
          prepared, [RESERVED_KEY + (None,)] * 2)
    check("row 9: a join that passes the context to the scan: refused", error_parts(
        caller, "SELECT t.response FROM (VALUES (%s::jsonb, %s::jsonb)) v(p, c) "
        "JOIN sec.counted t ON t.payload = v.p AND t.context = v.c", [p, ctx]), RESERVED_KEY + (None,))
    # A text the check cannot read is refused, not sent unchecked: a number
    # beyond a double, or nesting past 128 levels, could hide the key from
    # a lax check while the function's own parser reads it.
    deep = '{"custom": {"lambda_fdw_invocation_id": 1}, "x": ' + "[" * 130 + "1" + "]" * 130 + "}"
    for label, text, cast in [
        ("a number beyond a double (json)", '{"custom": {"lambda_fdw_invocation_id": 7}, "x": 1e400}', "json"),
        ("a number beyond a double (jsonb)", '{"custom": {"lambda_fdw_invocation_id": 7}, "x": 1e400}', "jsonb"),
        ("nesting past 128 levels (json)", deep, "json"),
    ]:
        got = error_parts(caller, f"SELECT * FROM aws_lambda.invoke('counted-echo', %s::{cast}, 'us-west-2', "
                          f"context => %s::{cast})", [p, text])
        check_that(f"row 9: the key behind {label}: refused (22023)", got is not None and got[0] == "22023"
                   and got[1].startswith("context is not JSON that lambda_fdw can check: ")
                   and got[2] == UNREADABLE_DETAIL, got)
    check("row 9: nothing was sent", stub_calls(k), 0)
    check("row 9: nothing was queued", queued_with(k), 0)
    allowed = json.dumps({"custom": {"app": "x", "lambda_fdw_invocation": 1},
                          "env": {"lambda_fdw_invocation_id": 2, "lambda_fdw_invocation_ids": [3]}})
    check("row 9: other keys, and the same name outside custom, are sent as given", one(
        caller, "SELECT payload->'client_context' FROM aws_lambda.invoke('inspect', '{}'::jsonb, 'us-west-2', "
        "context => %s::jsonb)", [allowed]), json.loads(allowed))


# ---------------------------------------------------------------- row 10

@test
def row10_view_owner_signs():
    """Row 10 / rule 5: a view's scan of a foreign table uses the view
    owner's mapping (the RTE's checkAsUser), as postgres_fdw does: for a
    reader with no mapping or grant on the server, for one with its own,
    in a join, and for an INSERT through the view (sent by the worker);
    a security_invoker view uses the reader's."""
    server = "sec_s10"
    for sql in [
        f"CREATE SERVER {server} FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'ap-southeast-2', endpoint_url '{STUB}', max_attempts '1')",
        f"GRANT USAGE ON FOREIGN SERVER {server} TO sec_vowner",
        f"CREATE USER MAPPING FOR sec_vowner SERVER {server} OPTIONS (aws_access_key_id 'AKIDVOWNER', aws_secret_access_key 'vowner-secret')",
        f"CREATE FOREIGN TABLE sec.s10_whoami (payload jsonb, response jsonb) SERVER {server} OPTIONS (function_name 'whoami')",
        "GRANT SELECT, INSERT ON sec.s10_whoami TO sec_vowner",
        "CREATE SCHEMA sec_views AUTHORIZATION sec_vowner",
    ]:
        admin.execute(sql)
    vowner, reader = roles["sec_vowner"], roles["sec_reader"]
    for sql in [
        "CREATE VIEW sec_views.v AS SELECT payload, response FROM sec.s10_whoami",
        "CREATE VIEW sec_views.v_invoker WITH (security_invoker = true) AS SELECT payload, response FROM sec.s10_whoami",
        "GRANT USAGE ON SCHEMA sec_views TO sec_reader",
        "GRANT SELECT, INSERT ON sec_views.v, sec_views.v_invoker TO sec_reader",
    ]:
        vowner.execute(sql)
    check("row 10: a reader without a mapping signs, through the view, with the view owner's keys",
          whoami(reader, "SELECT response FROM sec_views.v WHERE payload = '{\"v\": 1}'"), ("AKIDVOWNER", {"v": 1}))
    check("row 10: ... and cannot read the foreign table itself",
          error_of(reader, "SELECT response FROM sec.s10_whoami WHERE payload = '{\"v\": 1}'"),
          ("42501", "permission denied for foreign table s10_whoami"))
    check("row 10: a parameterized scan of the view in a join signs with the view owner's keys", whoami(
        reader, "SELECT w.response FROM (VALUES ('{\"v\": 2}'::jsonb)) x(p) JOIN sec_views.v w ON w.payload = x.p"),
        ("AKIDVOWNER", {"v": 2}))
    with reader.transaction():
        reader.execute("INSERT INTO sec_views.v (payload) VALUES ('{\"v\": 3}')")
    i = one(admin, "SELECT max(id) FROM lambda_fdw.invocations WHERE payload = '{\"v\": 3}'")
    check("row 10: an INSERT through the view is sent by the worker with the view owner's keys",
          settled([i]) and row_of(i, "state, response, error"),
          ("succeeded", {"access_key_id": "AKIDVOWNER", "payload": {"v": 3}}, None))
    # Rows routed to a lambda_fdw partition of a partitioned table, through
    # the view: checked as the root's range table entry is, the view owner
    # (postgres_fdw does the same).
    for sql in [
        "CREATE TABLE sec_views.orders (payload jsonb, invocation_type text, response jsonb) "
        "PARTITION BY LIST (invocation_type)",
        f"CREATE FOREIGN TABLE sec_views.orders_sync PARTITION OF sec_views.orders FOR VALUES IN ('RequestResponse') "
        f"SERVER {server} OPTIONS (function_name 'whoami')",
        "CREATE VIEW sec_views.v_orders AS SELECT payload, invocation_type, response FROM sec_views.orders",
        "GRANT SELECT, INSERT ON sec_views.v_orders TO sec_reader",
    ]:
        vowner.execute(sql)
    err = None
    with reader.transaction():
        err = error_parts(reader, "INSERT INTO sec_views.v_orders (payload, invocation_type) "
                          "VALUES ('{\"v\": 3.5}', 'RequestResponse')")
    check("row 10: a row routed to a lambda_fdw partition through the view is queued as the view owner", err, None)
    i = one(admin, "SELECT max(id) FROM lambda_fdw.invocations WHERE payload = '{\"v\": 3.5}'")
    check("row 10: ... and sent by the worker with the view owner's keys",
          i is not None and settled([i]) and row_of(i, "state, response, error"),
          ("succeeded", {"access_key_id": "AKIDVOWNER", "payload": {"v": 3.5}}, None))
    check("row 10: a scan of the lambda_fdw partition through the view signs with the view owner's keys", whoami(
        reader, "SELECT response FROM sec_views.v_orders WHERE payload = '{\"v\": 3.6}' AND invocation_type = 'RequestResponse'"),
        ("AKIDVOWNER", {"v": 3.6}))
    admin.execute(f"GRANT USAGE ON FOREIGN SERVER {server} TO sec_reader")
    admin.execute("GRANT SELECT ON sec.s10_whoami TO sec_reader")
    check("row 10: a security_invoker view checks the reader, who has no mapping",
          error_parts(reader, "SELECT response FROM sec_views.v_invoker WHERE payload = '{\"v\": 4}'"),
          no_credentials("sec_reader", server))
    admin.execute(f"CREATE USER MAPPING FOR sec_reader SERVER {server} "
                  "OPTIONS (aws_access_key_id 'AKIDREADER', aws_secret_access_key 'reader-secret')")
    check("row 10: with a mapping of its own, the reader still signs with the owner's keys through the view",
          whoami(reader, "SELECT response FROM sec_views.v WHERE payload = '{\"v\": 5}'"), ("AKIDVOWNER", {"v": 5}))
    check("row 10: ... with its own through a security_invoker view",
          whoami(reader, "SELECT response FROM sec_views.v_invoker WHERE payload = '{\"v\": 6}'"),
          ("AKIDREADER", {"v": 6}))
    check("row 10: ... and with its own on the table",
          whoami(reader, "SELECT response FROM sec.s10_whoami WHERE payload = '{\"v\": 7}'"), ("AKIDREADER", {"v": 7}))
    admin.execute(f"DROP SCHEMA sec_views CASCADE")
    admin.execute(f"DROP SERVER {server} CASCADE")


# ---------------------------------------------------------------- rule 4

@test
def rule4_rds_surface_identity():
    """Rules 2-4: on a superuser's route server the role has no grant on,
    aws_lambda.invoke signs with the role's own mapping, else PUBLIC's,
    else the server process's chain, always as the current user; enqueue
    the same. (The worker's check of the route when it sends, a server
    passed to an ordinary owner before COMMIT, is after_commit.py's
    test_recheck.)"""
    server, region = "sec_route_ca", "ca-central-1"
    caller = roles["sec_caller"]
    admin.execute(f"CREATE SERVER {server} FOREIGN DATA WRAPPER lambda_fdw "
                  f"OPTIONS (region '{region}', endpoint_url '{STUB}', max_attempts '1')")
    call = f"SELECT payload FROM aws_lambda.invoke('whoami', %s::jsonb, '{region}')"
    err = error_parts(caller, call, ['{"r": 1}'])
    check_that("rule 4: no mapping on the route: the server process's chain (no credentials here)",
               is_chain_error(err), err)
    admin.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {server} "
                  "OPTIONS (aws_access_key_id 'AKIDPUBLICCA', aws_secret_access_key 'public-ca-secret')")
    check("rule 4: with PUBLIC's mapping: PUBLIC's keys, no USAGE on the server needed",
          whoami(caller, call, ['{"r": 2}']), ("AKIDPUBLICCA", {"r": 2}))
    # A mapping of its own that names nothing does not take it out of
    # PUBLIC's keys (to the server process's identity).
    admin.execute(f"GRANT USAGE ON FOREIGN SERVER {server} TO sec_caller")
    caller.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER {server}")
    check("rule 4: an empty mapping the role made for itself: still PUBLIC's keys",
          whoami(caller, call, ['{"r": 2.5}']), ("AKIDPUBLICCA", {"r": 2.5}))
    i = one(caller, "SELECT lambda_fdw.enqueue('whoami', '{\"r\": 2.6}', %s)", [region])
    check("rule 4: ... and for what it queues", settled([i]) and row_of(i, "state, response, error"),
          ("succeeded", {"access_key_id": "AKIDPUBLICCA", "payload": {"r": 2.6}}, None))
    caller.execute(f"DROP USER MAPPING FOR CURRENT_USER SERVER {server}")
    admin.execute(f"REVOKE USAGE ON FOREIGN SERVER {server} FROM sec_caller")
    admin.execute(f"CREATE USER MAPPING FOR sec_caller SERVER {server} "
                  "OPTIONS (aws_access_key_id 'AKIDCALLERCA', aws_secret_access_key 'caller-ca-secret')")
    check("rule 4: with its own mapping: its own keys", whoami(caller, call, ['{"r": 3}']), ("AKIDCALLERCA", {"r": 3}))
    # One session, three current users: the identity follows the one
    # calling, not what the session signed with before.
    caller.execute(f"CREATE FUNCTION sec_caller.whoami(p jsonb) RETURNS jsonb LANGUAGE sql SECURITY DEFINER "
                   f"SET search_path = pg_catalog AS $$ SELECT payload FROM aws_lambda.invoke('whoami', p, '{region}') $$")
    su = connect()
    seen = [whoami(su, call, ['{"s": 1}']),
            whoami(su, "SELECT sec_caller.whoami('{\"s\": 2}')"),
            whoami(su, call, ['{"s": 3}'])]
    su.execute("SET ROLE sec_caller")
    seen.append(whoami(su, call, ['{"s": 4}']))
    su.execute("RESET ROLE")
    seen.append(whoami(su, call, ['{"s": 5}']))
    su.close()
    check("rule 4: in one session, a superuser, a SECURITY DEFINER function of the role, SET ROLE: each signs "
          "with its current user's mapping", seen,
          [("AKIDPUBLICCA", {"s": 1}), ("AKIDCALLERCA", {"s": 2}), ("AKIDPUBLICCA", {"s": 3}),
           ("AKIDCALLERCA", {"s": 4}), ("AKIDPUBLICCA", {"s": 5})])
    i = one(caller, "SELECT lambda_fdw.enqueue('whoami', '{\"r\": 4}', %s)", [region])
    check("rule 4: enqueue: the worker signs with the same mapping",
          settled([i]) and row_of(i, "state, response, error"),
          ("succeeded", {"access_key_id": "AKIDCALLERCA", "payload": {"r": 4}}, None))
    admin.execute(f"DROP SERVER {server} CASCADE")


# ---------------------------------------------------------------- main

def main():
    try:
        setup()
    except Exception as e:
        traceback.print_exc()
        print(f"FAIL - setup: {type(e).__name__}: {e}", flush=True)
        drop_everything()
        sys.exit(1)
    for fn in TESTS:
        try:
            fn()
        except Exception as e:
            print(f"FAIL - {fn.__name__}: stopped by {type(e).__name__}: {shown(str(e).strip())}", flush=True)
            for frame in traceback.extract_tb(e.__traceback__)[1:]:
                note(f"  at {os.path.basename(frame.filename)}:{frame.lineno}: {frame.line}")
            failures.append(fn.__name__)
        finally:
            roles.close()
            try:
                admin.execute("RESET ALL")
            except psycopg.Error:
                pass
    roles.close()
    admin.close()
    drop_everything()
    if failures:
        print(f"security: {len(failures)} failed", flush=True)
        sys.exit(1)
    print("security: all checks passed", flush=True)


if __name__ == "__main__":
    main()
