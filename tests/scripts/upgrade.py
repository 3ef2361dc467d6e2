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
     privileges and comments) equals that of a fresh CREATE EXTENSION in
     another database, line for line;
  5. the user's objects are as they were, the foreign table still invokes
     (as the granted role too), and what the new version added works: the
     worker sends an INSERT queued after the update, statistics count.

Needs the suite's cluster (library preloaded) and ministack.
Exits non-zero after printing every failed check.
"""
import difflib
import glob
import json
import os
import sys
import time

import psycopg
from psycopg.rows import tuple_row

from pgcheck import one, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UPGRADED = os.environ.get("LAMBDA_FDW_QUEUE_DB", "lambda_fdw_queue")
FRESH = "lambda_fdw_upgrade_fresh"
MINISTACK = f"http://127.0.0.1:{os.environ.get('LAMBDA_FDW_MINISTACK_PORT', '45660')}"
ROLE = "upgrade_reader"

failures = []


def check(what, got, want):
    ok = got == want
    print(f"upgrade: {what}: {'ok' if ok else f'FAILED: got {got!r}, want {want!r}'}", flush=True)
    if not ok:
        failures.append(what)


def connect(db):
    return psycopg.connect(dbname=db, autocommit=True, row_factory=tuple_row)


# Every object of the extension, one line each, in a form that does not
# depend on OIDs: what it is, its definition, its ACL and initial privileges,
# its comment. Objects that belong to a member without being members
# themselves (columns, identity sequences, constraints, indexes, policies,
# triggers, composite attributes) are part of their owner's line.
MEMBERS = r"""
WITH m AS (
  SELECT d.classid, d.objid, d.objsubid
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
   WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
     AND d.deptype = 'e' AND e.extname = 'lambda_fdw'
)
SELECT pg_catalog.pg_describe_object(m.classid, m.objid, m.objsubid) AS object,
       CASE m.classid
       WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN
         (SELECT pg_catalog.pg_get_functiondef(p.oid) || ' owner=' || p.proowner::regrole
                 || ' acl=' || coalesce(p.proacl::text, 'default')
            FROM pg_catalog.pg_proc p WHERE p.oid = m.objid)
       WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN
         (SELECT 'relkind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
                 || ' owner=' || c.relowner::regrole
                 || ' acl=' || coalesce(c.relacl::text, 'default')
                 || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity
                 || ' options=' || coalesce(c.reloptions::text, '{}')
                 || E'\n  columns: ' || coalesce((
                      SELECT string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
                               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                               || coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
                               || CASE a.attidentity WHEN '' THEN '' ELSE ' identity ' || a.attidentity::text || (
                                    SELECT ' sequence(' || concat_ws(' ', s.seqtypid::regtype, s.seqstart, s.seqincrement,
                                                                     s.seqmax, s.seqmin, s.seqcache, s.seqcycle) || ')'
                                      FROM pg_catalog.pg_sequence s
                                     WHERE s.seqrelid = pg_catalog.pg_get_serial_sequence(
                                             c.oid::regclass::text, a.attname)::regclass) END
                               || coalesce(' acl=' || a.attacl::text, '')
                               || coalesce(' comment=' || pg_catalog.col_description(a.attrelid, a.attnum), ''),
                             ', ' ORDER BY a.attnum)
                        FROM pg_catalog.pg_attribute a
                        LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
                 || E'\n  constraints: ' || coalesce((
                      SELECT string_agg(co.conname || ' ' || pg_catalog.pg_get_constraintdef(co.oid), ', ' ORDER BY co.conname)
                        FROM pg_catalog.pg_constraint co WHERE co.conrelid = c.oid), '')
                 || E'\n  indexes: ' || coalesce((
                      SELECT string_agg(pg_catalog.pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1)
                        FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid), '')
                 || E'\n  policies: ' || coalesce((
                      SELECT string_agg(po.polname || ' cmd=' || po.polcmd::text || ' permissive=' || po.polpermissive
                               || ' roles=' || po.polroles::regrole[]::text
                               || ' using=' || coalesce(pg_catalog.pg_get_expr(po.polqual, po.polrelid), '')
                               || ' check=' || coalesce(pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid), ''),
                             ', ' ORDER BY po.polname)
                        FROM pg_catalog.pg_policy po WHERE po.polrelid = c.oid), '')
                 || E'\n  triggers: ' || coalesce((
                      SELECT string_agg(pg_catalog.pg_get_triggerdef(t.oid), ', ' ORDER BY t.tgname)
                        FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '')
                 || CASE WHEN c.relkind = 'v' THEN E'\n  view: ' || pg_catalog.pg_get_viewdef(c.oid, true) ELSE '' END
                 || CASE WHEN c.relkind = 'S' THEN (
                      SELECT E'\n  sequence: ' || concat_ws(' ', s.seqtypid::regtype, s.seqstart, s.seqincrement,
                                                            s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
                        FROM pg_catalog.pg_sequence s WHERE s.seqrelid = c.oid) ELSE '' END
            FROM pg_catalog.pg_class c WHERE c.oid = m.objid)
       WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN
         (SELECT 'typtype=' || t.typtype::text || ' owner=' || t.typowner::regrole
                 || ' acl=' || coalesce(t.typacl::text, 'default')
                 || ' attributes: ' || coalesce((
                      SELECT string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                        FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '')
            FROM pg_catalog.pg_type t WHERE t.oid = m.objid)
       WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN
         (SELECT 'owner=' || n.nspowner::regrole || ' acl=' || coalesce(n.nspacl::text, 'default')
            FROM pg_catalog.pg_namespace n WHERE n.oid = m.objid)
       WHEN 'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass THEN
         (SELECT 'handler=' || w.fdwhandler::regprocedure || ' validator=' || w.fdwvalidator::regprocedure
                 || ' owner=' || w.fdwowner::regrole
                 || ' acl=' || coalesce(w.fdwacl::text, 'default') || ' options=' || coalesce(w.fdwoptions::text, '{}')
            FROM pg_catalog.pg_foreign_data_wrapper w WHERE w.oid = m.objid)
       WHEN 'pg_catalog.pg_event_trigger'::pg_catalog.regclass THEN
         (SELECT 'event=' || et.evtevent || ' function=' || et.evtfoid::regprocedure
                 || ' enabled=' || et.evtenabled::text || ' tags=' || coalesce(et.evttags::text, '{}')
                 || ' owner=' || et.evtowner::regrole
            FROM pg_catalog.pg_event_trigger et WHERE et.oid = m.objid)
       ELSE 'no details for catalog ' || m.classid::regclass::text
       END AS definition,
       (SELECT i.privtype::text || ' ' || i.initprivs::text FROM pg_catalog.pg_init_privs i
         WHERE i.objoid = m.objid AND i.classoid = m.classid AND i.objsubid = m.objsubid) AS init_privs,
       pg_catalog.obj_description(m.objid, (SELECT relname FROM pg_catalog.pg_class WHERE oid = m.classid)) AS comment
  FROM m
 ORDER BY 1
"""

# The extension's own row, config tables by name.
EXTENSION = """
SELECT e.extversion, e.extrelocatable, e.extnamespace::regnamespace::text,
       (SELECT array_agg(c::regclass::text ORDER BY c::regclass::text) FROM unnest(e.extconfig) c),
       e.extcondition
  FROM pg_catalog.pg_extension e WHERE e.extname = 'lambda_fdw'
"""

# The user's objects that depend on the extension, as they should survive
# an update.
USER_OBJECTS = """
SELECT s.srvname, s.srvoptions::text, s.srvacl::text, pg_catalog.obj_description(s.oid, 'pg_foreign_server'),
       (SELECT array_agg(um.usename || ' ' || um.umoptions::text ORDER BY um.usename)
          FROM pg_catalog.pg_user_mappings um WHERE um.srvid = s.oid),
       (SELECT array_agg(c.oid::regclass || ' ' || ft.ftoptions::text || ' ' || coalesce(c.relacl::text, '')
                         || ' ' || coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '')
                         ORDER BY c.relname)
          FROM pg_catalog.pg_foreign_table ft JOIN pg_catalog.pg_class c ON c.oid = ft.ftrelid
         WHERE ft.ftserver = s.oid)
  FROM pg_catalog.pg_foreign_server s ORDER BY s.srvname
"""


def snapshot(conn, sql):
    return [" | ".join("NULL" if v is None else str(v) for v in row) for row in conn.execute(sql).fetchall()]


def same_lines(what, got, want):
    if got == want:
        check(what, True, True)
        return
    diff = "\n".join(difflib.unified_diff("\n".join(want).splitlines(), "\n".join(got).splitlines(),
                                         "fresh install", "after update", lineterm=""))
    print(diff, flush=True)
    check(what, f"{len(diff.splitlines())} lines of difference (above)", "no difference")


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


def upgrade_from(admin, version, fresh_members, fresh_extension):
    recreate(admin, UPGRADED)
    conn = connect(UPGRADED)
    in_use(conn, version)
    check(f"{version}: installed", one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'lambda_fdw'"), version)
    users_before = snapshot(conn, USER_OBJECTS)

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

    conn.execute("ALTER EXTENSION lambda_fdw UPDATE")
    check(f"{version}: updated to the default version",
          one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'lambda_fdw'"),
          one(conn, "SELECT default_version FROM pg_available_extensions WHERE name = 'lambda_fdw'"))
    same_lines(f"{version} updated: the extension's objects equal a fresh install",
               snapshot(conn, MEMBERS), fresh_members)
    same_lines(f"{version} updated: the extension's row equals a fresh install",
               snapshot(conn, EXTENSION), fresh_extension)
    same_lines(f"{version} updated: the server, mappings, table, grants and comments are unchanged",
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
          conn.execute("SELECT role, server, calls, succeeded FROM lambda_fdw.stat_invocations "
                       "WHERE database = current_database() AND function_name = 'echo' AND role = 'postgres' "
                       "AND server = 'ms'").fetchall(),
          [("postgres", "ms", 5, 5)])

    conn.execute("DROP EXTENSION lambda_fdw CASCADE")
    check(f"{version} updated: DROP EXTENSION leaves none of its schemas",
          one(conn, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('lambda_fdw', 'aws_lambda', 'aws_commons')"), 0)
    conn.close()


def main():
    admin = connect("postgres")
    admin.execute(f"DROP ROLE IF EXISTS {ROLE}")
    admin.execute(f"CREATE ROLE {ROLE}")

    versions = earlier_versions()
    check("earlier versions kept in sql/", versions, ["0.1.0", "0.2.0", "0.3.0"])
    available = [r[0] for r in admin.execute(
        "SELECT version FROM pg_available_extension_versions WHERE name = 'lambda_fdw' ORDER BY version")]
    default = one(admin, "SELECT default_version FROM pg_available_extensions WHERE name = 'lambda_fdw'")
    check("installed versions: the earlier ones and the default", available, versions + [default])
    for v in versions:
        check(f"an update path from {v} to {default}",
              one(admin, "SELECT path FROM pg_extension_update_paths('lambda_fdw') WHERE source = %s AND target = %s",
                  [v, default]) is not None, True)

    recreate(admin, FRESH)
    with connect(FRESH) as fresh:
        fresh.execute("CREATE EXTENSION lambda_fdw")
        fresh_members = snapshot(fresh, MEMBERS)
        fresh_extension = snapshot(fresh, EXTENSION)
    check("the catalog query describes every member of a fresh install",
          [line for line in fresh_members if "no details for catalog" in line], [])
    print(f"upgrade: a fresh install has {len(fresh_members)} member objects", flush=True)

    for v in versions:
        upgrade_from(admin, v, fresh_members, fresh_extension)

    admin.execute(f"DROP DATABASE {FRESH} WITH (FORCE)")
    admin.execute(f"DROP ROLE {ROLE}")
    if failures:
        print(f"upgrade: {len(failures)} failed: {failures}", flush=True)
        sys.exit(1)
    print("upgrade: all checks passed", flush=True)


if __name__ == "__main__":
    main()
