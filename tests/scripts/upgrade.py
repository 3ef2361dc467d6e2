#!/usr/bin/env python3
"""ALTER EXTENSION lambda_fdw UPDATE, from every earlier version, the way a
user runs it: the new library is installed while a database still has the
old version's SQL objects, in use.

For each earlier version (sql/lambda_fdw--<v>.sql, kept as released), in the
queue worker's database ($LAMBDA_FDW_QUEUE_DB):
  1. CREATE EXTENSION lambda_fdw VERSION '<v>', then a server, user mappings,
     a foreign table, grants and comments on them, as a user would have;
  2. with the new library and the old SQL: scans and aws_lambda.invoke work,
     and what needs the new SQL fails with a clear error;
  3. ALTER EXTENSION lambda_fdw UPDATE;
  4. the catalog of the extension's objects (pg_describe_object of every
     pg_depend member, with definitions, signatures, grants, initial
     privileges and comments; catalog.py) equals that of a fresh
     CREATE EXTENSION lambda_fdw in another database, line for line;
  5. CREATE EXTENSION aws_lambda CASCADE adds the RDS names, and the three
     extensions' catalog equals that of a fresh CREATE EXTENSION aws_lambda
     CASCADE in a third database (the other way of installing);
  6. the user's objects are as they were, the foreign table still invokes
     (as the granted role too), and what the new version added works: the
     worker sends an INSERT queued after the update, statistics count.
A fresh install through the names has exactly lambda_fdw's objects, and the
names own none.

Needs the suite's cluster (library preloaded) and ministack.
Exits non-zero after printing every failed check.
"""
import glob
import json
import os
import time

import psycopg
from psycopg.rows import tuple_row

from catalog import EXTENSION, MEMBERS, USER_OBJECTS, same_lines, snapshot
from pgcheck import Checks, one, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UPGRADED = os.environ.get("LAMBDA_FDW_QUEUE_DB", "lambda_fdw_queue")
FRESH = "lambda_fdw_upgrade_fresh"
FRESH_NAMES = "lambda_fdw_upgrade_fresh_names"
OURS = ["lambda_fdw"]
ALL = ["lambda_fdw", "aws_commons", "aws_lambda"]
MINISTACK = f"http://127.0.0.1:{os.environ.get('LAMBDA_FDW_MINISTACK_PORT', '45660')}"
ROLE = "upgrade_reader"

checks = Checks("upgrade")
check = checks.check


def connect(db):
    return psycopg.connect(dbname=db, autocommit=True, row_factory=tuple_row)


def earlier_versions():
    names = glob.glob(os.path.join(ROOT, "sql", "lambda_fdw--*.sql"))
    return sorted(os.path.basename(n)[len("lambda_fdw--"):-len(".sql")]
                  for n in names if n.count("--") == 1)


def recreate(admin, db):
    admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {db}")


def in_use(conn, version):
    """A database with `version` installed and used as a user would."""
    for sql in [
        f"CREATE EXTENSION lambda_fdw VERSION '{version}'",
        f"CREATE SERVER ms FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', endpoint_url '{MINISTACK}')",
        "COMMENT ON SERVER ms IS 'ministack, us-east-1'",
        "CREATE USER MAPPING FOR CURRENT_USER SERVER ms OPTIONS (aws_access_key_id 'test', aws_secret_access_key 'test')",
        f"CREATE USER MAPPING FOR {ROLE} SERVER ms OPTIONS (aws_access_key_id 'reader', aws_secret_access_key 'reader')",
        f"GRANT USAGE ON FOREIGN SERVER ms TO {ROLE}",
        "CREATE FOREIGN TABLE echo (payload jsonb, status_code int, response jsonb) SERVER ms OPTIONS (function_name 'echo')",
        "COMMENT ON FOREIGN TABLE echo IS 'the echo function'",
        f"GRANT SELECT ON echo TO {ROLE}",
    ]:
        conn.execute(sql)


def invokes(conn, label):
    """The foreign table and aws_lambda.invoke answer, as owner and reader."""
    p = {"upgrade": label}
    check(f"{label}: the foreign table invokes",
          conn.execute("SELECT status_code, response FROM echo WHERE payload = %s", [json.dumps(p)]).fetchall(),
          [(200, p)])
    check(f"{label}: aws_lambda.invoke invokes",
          one(conn, "SELECT payload FROM aws_lambda.invoke('echo', %s::json, 'us-east-1')", [json.dumps(p)]), p)
    conn.execute(f"SET ROLE {ROLE}")
    try:
        check(f"{label}: {ROLE} reads the foreign table with its grants",
              one(conn, "SELECT response FROM echo WHERE payload = %s", [json.dumps(p)]), p)
    finally:
        conn.execute("RESET ROLE")


def upgrade_from(admin, version, fresh):
    recreate(admin, UPGRADED)
    conn = connect(UPGRADED)
    in_use(conn, version)
    check(f"{version}: installed", one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'lambda_fdw'"), version)
    users_before = snapshot(conn, USER_OBJECTS)
    check(f"{version}: the RDS names are not installed",
          one(conn, "SELECT count(*) FROM pg_extension WHERE extname IN ('aws_commons', 'aws_lambda')"), 0)

    invokes(conn, f"{version} SQL, new library")
    if version == "0.1.0":
        # The queue came with 0.2.0: INSERT says what to do.
        try:
            conn.execute("INSERT INTO echo (payload) VALUES ('{}')")
            got = None
        except psycopg.Error as e:
            got = (e.sqlstate, e.diag.message_primary, e.diag.message_hint)
        check("0.1.0 SQL, new library: INSERT asks for the update", got,
              ("55000", "lambda_fdw's queue table lambda_fdw.invocations does not exist in this database",
               "run ALTER EXTENSION lambda_fdw UPDATE"))
    if version == "0.2.0":
        # 0.3.0 records which path queued a row: until the update adds the
        # column, queueing says what to do (nothing is queued half-known).
        for sql in ("INSERT INTO echo (payload) VALUES ('{}')",
                    "SELECT lambda_fdw.enqueue('echo', '{}', 'us-east-1')"):
            try:
                conn.execute(sql)
                got = None
            except psycopg.Error as e:
                got = (e.sqlstate, e.diag.message_primary, e.diag.message_hint)
            check(f"0.2.0 SQL, new library: {sql.split()[0]} asks for the update", got,
                  ("55000", "lambda_fdw's queue table lambda_fdw.invocations predates version 0.3.0 of the extension",
                   "run ALTER EXTENSION lambda_fdw UPDATE"))

    if version != "0.1.0":
        # Statistics came with 0.2.0; the new library fills the columns the
        # old SQL declares (rows, a 0.5.0 column, is not among them).
        check(f"{version} SQL, new library: statistics count the calls so far",
              conn.execute("SELECT calls, succeeded FROM lambda_fdw.stat_invocations "
                           "WHERE database = current_database() AND function_name = 'echo' "
                           "AND role = 'postgres'").fetchall(), [(2, 2)])
    if version == "0.5.0":
        # The new library serves a queue table whose SQL predates 0.6.0
        # (no ordering keys, no callbacks) until the update.
        queued = one(conn, "SELECT lambda_fdw.enqueue('echo', '{\"old\": true}', 'us-east-1')")
        check("0.5.0 SQL, new library: enqueue queues, and the worker sends it", wait_until(
            conn, "SELECT state = 'succeeded' FROM lambda_fdw.invocations WHERE id = %s", [queued]), True)
    if version == "0.4.0":
        # 0.5.0 makes stat_invocations again (a column in the middle): a
        # view of the user's over it stops the update, as docs/upgrading.md says.
        conn.execute("CREATE VIEW my_stats AS SELECT function_name, calls FROM lambda_fdw.stat_invocations")
        try:
            conn.execute("ALTER EXTENSION lambda_fdw UPDATE")
            got = None
        except psycopg.Error as e:
            got = (e.sqlstate, e.diag.message_primary, e.diag.message_detail)
        check("0.4.0: a view over stat_invocations stops the update", got,
              ("2BP01", "cannot drop view lambda_fdw.stat_invocations because other objects depend on it",
               "view my_stats depends on view lambda_fdw.stat_invocations"))
        check("0.4.0: the stopped update left the version", one(
            conn, "SELECT extversion FROM pg_extension WHERE extname = 'lambda_fdw'"), "0.4.0")
        conn.execute("DROP VIEW my_stats")

    conn.execute("ALTER EXTENSION lambda_fdw UPDATE")
    check(f"{version}: updated to the default version",
          one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'lambda_fdw'"),
          one(conn, "SELECT default_version FROM pg_available_extensions WHERE name = 'lambda_fdw'"))
    same_lines(check, f"{version} updated: the extension's objects equal a fresh install",
               snapshot(conn, MEMBERS, [OURS]), fresh["members"])
    same_lines(check, f"{version} updated: the extension's row equals a fresh install",
               snapshot(conn, EXTENSION, [OURS]), fresh["extension"])
    conn.execute("CREATE EXTENSION aws_lambda CASCADE")
    same_lines(check, f"{version} updated, then the RDS names: the objects equal a fresh CREATE EXTENSION aws_lambda CASCADE",
               snapshot(conn, MEMBERS, [ALL]), fresh["names_members"], ("fresh install by the names", "after update"))
    same_lines(check, f"{version} updated, then the RDS names: the extensions' rows equal a fresh install by the names",
               snapshot(conn, EXTENSION, [ALL]), fresh["names_extension"], ("fresh install by the names", "after update"))
    same_lines(check, f"{version} updated: the server, mappings, table, grants and comments are unchanged",
               snapshot(conn, USER_OBJECTS), users_before)

    invokes(conn, f"{version} updated")
    check(f"{version} updated: lambda_fdw_meta() reports the installed version",
          one(conn, "SELECT version FROM lambda_fdw_meta()"),
          one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'lambda_fdw'"))

    # The queue created by the update is the worker's: it sends what is
    # queued from now on.
    key = f"upgrade-{version}-{time.time_ns()}"
    conn.execute("INSERT INTO echo (payload) VALUES (%s)", [json.dumps({"key": key})])
    sent = wait_until(conn, "SELECT count(*) = 1 FROM lambda_fdw.invocations "
                      "WHERE payload->>'key' = %s AND state = 'succeeded'", [key])
    check(f"{version} updated: the worker sends an invocation queued after the update", sent, True)
    check(f"{version} updated: its response",
          one(conn, "SELECT response FROM lambda_fdw.invocations WHERE payload->>'key' = %s", [key]), {"key": key})
    # Statistics are per database (a new one for each version): two scans
    # and two aws_lambda.invoke calls as postgres, and the worker's call,
    # counted as the role that queued it.
    check(f"{version} updated: statistics count this database's calls of echo as postgres",
          conn.execute("SELECT role, server, calls, rows, succeeded FROM lambda_fdw.stat_invocations "
                       "WHERE database = current_database() AND function_name = 'echo' AND role = 'postgres' "
                       "AND server = 'ms'").fetchall(),
          # 0.5.0's check above queued one more, by enqueue.
          [("postgres", "ms", 6, 6, 6) if version == "0.5.0" else ("postgres", "ms", 5, 5, 5)])

    conn.execute("DROP EXTENSION lambda_fdw CASCADE")
    check(f"{version} updated: DROP EXTENSION lambda_fdw CASCADE leaves none of its schemas",
          one(conn, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('lambda_fdw', 'aws_lambda', 'aws_commons')"), 0)
    check(f"{version} updated: DROP EXTENSION lambda_fdw CASCADE drops the RDS names too",
          one(conn, "SELECT count(*) FROM pg_extension WHERE extname IN ('lambda_fdw', 'aws_commons', 'aws_lambda')"), 0)
    conn.close()


def enqueue_grants_survive(admin):
    """0.6.0 makes enqueue again (it gains parameters): a role granted the
    old one may call the new one, and a role that was not may not. In a
    database of its own: grants an update script makes are the extension's
    initial privileges (docs/upgrading.md), which a fresh install's catalog
    has not."""
    db = "lambda_fdw_upgrade_grants"
    recreate(admin, db)
    with connect(db) as conn:
        conn.execute("CREATE EXTENSION lambda_fdw VERSION '0.5.0'")
        conn.execute(f"GRANT EXECUTE ON FUNCTION lambda_fdw.enqueue TO {ROLE}")
        conn.execute("ALTER EXTENSION lambda_fdw UPDATE")
        sig = "lambda_fdw.enqueue(text, jsonb, text, text, text, jsonb, regproc, text, timestamptz)"
        check("0.5.0 updated: a role granted enqueue may call the new one", one(
            conn, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", [ROLE, sig]), True)
        check("0.5.0 updated: PUBLIC may not", one(
            conn, "SELECT has_function_privilege('public', %s, 'EXECUTE')", [sig]), False)
        conn.execute("DROP EXTENSION lambda_fdw CASCADE")
    admin.execute(f"DROP DATABASE {db} WITH (FORCE)")


def main():
    admin = connect("postgres")
    admin.execute(f"DROP ROLE IF EXISTS {ROLE}")
    admin.execute(f"CREATE ROLE {ROLE}")

    versions = earlier_versions()
    check("earlier versions kept in sql/", versions, ["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"])
    available = [r[0] for r in admin.execute(
        "SELECT version FROM pg_available_extension_versions WHERE name = 'lambda_fdw' ORDER BY version")]
    default = one(admin, "SELECT default_version FROM pg_available_extensions WHERE name = 'lambda_fdw'")
    check("installed versions: the earlier ones and the default", available, versions + [default])
    for v in versions:
        check(f"an update path from {v} to {default}",
              one(admin, "SELECT path FROM pg_extension_update_paths('lambda_fdw') WHERE source = %s AND target = %s",
                  [v, default]) is not None, True)

    # Both ways of installing the new version, each in a new database.
    fresh = {}
    recreate(admin, FRESH)
    with connect(FRESH) as conn:
        conn.execute("CREATE EXTENSION lambda_fdw")
        fresh["members"] = snapshot(conn, MEMBERS, [OURS])
        fresh["extension"] = snapshot(conn, EXTENSION, [OURS])
    recreate(admin, FRESH_NAMES)
    with connect(FRESH_NAMES) as conn:
        conn.execute("CREATE EXTENSION aws_lambda CASCADE")
        fresh["names_members"] = snapshot(conn, MEMBERS, [ALL])
        fresh["names_extension"] = snapshot(conn, EXTENSION, [ALL])
        same_lines(check, "a fresh install by the names has exactly lambda_fdw's objects, all lambda_fdw's",
                   snapshot(conn, MEMBERS, [ALL]), snapshot(conn, MEMBERS, [OURS]),
                   ("lambda_fdw's members", "every member of the three"))
        same_lines(check, "a fresh install by the names has lambda_fdw's objects of a fresh CREATE EXTENSION lambda_fdw",
                   snapshot(conn, MEMBERS, [OURS]), fresh["members"],
                   ("CREATE EXTENSION lambda_fdw", "CREATE EXTENSION aws_lambda CASCADE"))
    check("the catalog query describes every member of a fresh install",
          [line for line in fresh["members"] if "no details for catalog" in line], [])
    print(f"upgrade: a fresh install has {len(fresh['members'])} member objects", flush=True)

    for v in versions:
        upgrade_from(admin, v, fresh)
    enqueue_grants_survive(admin)

    admin.execute(f"DROP DATABASE {FRESH} WITH (FORCE)")
    admin.execute(f"DROP DATABASE {FRESH_NAMES} WITH (FORCE)")
    admin.execute(f"DROP ROLE {ROLE}")
    checks.finish()


if __name__ == "__main__":
    main()
