#!/usr/bin/env python3
"""The RDS extension names, aws_commons and aws_lambda, as RDS scripts and
PostgreSQL users use them (docs/rds.md, "The extension names"):

- pg_available_extensions and pg_available_extension_versions list them,
  with what each requires;
- CREATE EXTENSION aws_lambda CASCADE, IF NOT EXISTS, in every order, with
  and without CASCADE: PostgreSQL's own notices and errors, and the same
  catalog whichever way the three were installed;
- an extension that declares requires = 'aws_lambda'
  (tests/fixtures/extensions/) installs with CASCADE and calls
  aws_lambda.invoke;
- DROP EXTENSION of each: what it refuses, what it drops, what it leaves;
- pg_dump and pg_restore of a database that used the names, with the RDS
  guide's grants: the restored catalog equals the dumped one, and the
  granted role invokes in the restored database.

Needs the suite's cluster, ministack, the fixture extension installed
(tests/harness/services.sh's install_test_scripts), and pg_dump/pg_restore
on PATH. Exits non-zero after printing every failed check.
"""
import json
import re
import os
import subprocess
import tempfile

import psycopg
from psycopg.rows import tuple_row

from catalog import EXTENSION, MEMBERS, USER_OBJECTS, same_lines, snapshot
from pgcheck import Checks, error_parts, one

MINISTACK = f"http://127.0.0.1:{os.environ.get('LAMBDA_FDW_MINISTACK_PORT', '45660')}"
ALL = ["lambda_fdw", "aws_commons", "aws_lambda"]
ROLE = "names_invoker"
DATABASES = ["names_cascade", "names_in_order", "names_commons_first", "names_client",
             "names_dumped", "names_restored"]
CASCADE_HINT = "Use CREATE EXTENSION ... CASCADE to install required extensions too."
DROP_HINT = "Use DROP ... CASCADE to drop the dependent objects too."
INVOKE = ["aws_lambda.invoke(text, json, text, text, text, json, varchar)",
          "aws_lambda.invoke(aws_commons._lambda_function_arn_1, json, text, text, json, varchar)",
          "aws_lambda.invoke(text, jsonb, text, text, text, jsonb, varchar)",
          "aws_lambda.invoke(aws_commons._lambda_function_arn_1, jsonb, text, text, jsonb, varchar)"]

checks = Checks("names")
check = checks.check


class Session:
    """A connection to `db` that keeps the notices of each statement."""

    def __init__(self, db):
        self.conn = psycopg.connect(dbname=db, autocommit=True, row_factory=tuple_row)
        self.notices = []
        self.conn.add_notice_handler(self._notice)

    def _notice(self, diag):
        self.notices.append(diag.message_primary)

    def run(self, sql, args=None):
        """Runs `sql`; returns its notices."""
        self.notices = []
        self.conn.execute(sql, args)
        return self.notices

    def error(self, sql):
        """(SQLSTATE, message, detail, hint) of the error `sql` raises."""
        return error_parts(self.conn, sql)

    def close(self):
        self.conn.close()


def extensions(s):
    return s.conn.execute("SELECT extname, extversion FROM pg_extension "
                          "WHERE extname = ANY(%s) ORDER BY extname", [ALL]).fetchall()


def invokes(s, label, role=None):
    """aws_lambda.invoke answers through a server for us-east-1."""
    p = {"names": label}
    if role:
        s.run(f"SET ROLE {role}")
    try:
        got = one(s.conn, "SELECT payload FROM aws_lambda.invoke('echo', %s::json, 'us-east-1')", [json.dumps(p)])
    except psycopg.Error as e:
        got = (e.sqlstate, e.diag.message_primary)
    finally:
        if role:
            s.run("RESET ROLE")
    check(f"{label}: aws_lambda.invoke invokes{' as ' + role if role else ''}", got, p)


def route(s):
    """The region's route, as a superuser sets it up (docs/rds.md)."""
    s.run(f"CREATE SERVER lambda_us_east_1 FOREIGN DATA WRAPPER lambda_fdw "
          f"OPTIONS (region 'us-east-1', endpoint_url '{MINISTACK}')")
    s.run("CREATE USER MAPPING FOR PUBLIC SERVER lambda_us_east_1 "
          "OPTIONS (aws_access_key_id 'names', aws_secret_access_key 'names')")


def availability(admin, default):
    check("pg_available_extensions lists the names and lambda_fdw",
          admin.conn.execute("SELECT name, default_version, installed_version, comment FROM pg_available_extensions "
                             "WHERE name = ANY(%s) ORDER BY name", [ALL]).fetchall(),
          [("aws_commons", "1.0", None,
            "RDS name: aws_commons.create_lambda_function_arn and its type, provided by lambda_fdw"),
           ("aws_lambda", "1.0", None, "RDS name: aws_lambda.invoke, provided by lambda_fdw"),
           ("lambda_fdw", default, None,
            "Invoke AWS Lambda functions from SQL: foreign tables and the RDS aws_lambda API")])
    check("what each name requires, and that only a superuser installs it",
          admin.conn.execute("SELECT name, version, superuser, trusted, relocatable, requires "
                             "FROM pg_available_extension_versions WHERE name IN ('aws_commons', 'aws_lambda') "
                             "ORDER BY name").fetchall(),
          [("aws_commons", "1.0", True, False, False, ["lambda_fdw"]),
           ("aws_lambda", "1.0", True, False, False, ["aws_commons"])])


def cascade(default):
    """RDS's first line, in a database without lambda_fdw."""
    s = Session("names_cascade")
    check("without lambda_fdw, CREATE EXTENSION aws_commons names what it requires",
          s.error("CREATE EXTENSION aws_commons"),
          ("42704", 'required extension "lambda_fdw" is not installed', None, CASCADE_HINT))
    check("without aws_commons, CREATE EXTENSION aws_lambda names what it requires, as on RDS",
          s.error("CREATE EXTENSION aws_lambda"),
          ("42704", 'required extension "aws_commons" is not installed', None, CASCADE_HINT))
    check("the session is usable after both", one(s.conn, "SELECT count(*) FROM pg_extension WHERE extname = ANY(%s)",
                                                   [ALL]), 0)
    check("CREATE EXTENSION IF NOT EXISTS aws_lambda CASCADE installs what it requires, saying so",
          s.run("CREATE EXTENSION IF NOT EXISTS aws_lambda CASCADE"),
          ['installing required extension "aws_commons"', 'installing required extension "lambda_fdw"'])
    check("pg_extension lists the three", extensions(s),
          [("aws_commons", "1.0"), ("aws_lambda", "1.0"), ("lambda_fdw", default)])
    check("again, IF NOT EXISTS skips", s.run("CREATE EXTENSION IF NOT EXISTS aws_lambda CASCADE"),
          ['extension "aws_lambda" already exists, skipping'])
    check("CREATE EXTENSION IF NOT EXISTS lambda_fdw afterwards skips",
          s.run("CREATE EXTENSION IF NOT EXISTS lambda_fdw"), ['extension "lambda_fdw" already exists, skipping'])
    check("the names own no objects",
          one(s.conn, "SELECT count(*) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid "
                      "WHERE d.deptype = 'e' AND e.extname IN ('aws_commons', 'aws_lambda')"), 0)
    route(s)
    invokes(s, "installed by CREATE EXTENSION aws_lambda CASCADE")
    check("aws_commons.create_lambda_function_arn answers",
          one(s.conn, "SELECT aws_commons.create_lambda_function_arn('echo', 'us-east-1')::text"), "(echo,us-east-1)")
    return s


def other_orders(first):
    """lambda_fdw then each name without CASCADE; aws_commons CASCADE then
    aws_lambda: the same three extensions, the same objects."""
    want_members = snapshot(first.conn, MEMBERS, [ALL])
    want_rows = snapshot(first.conn, EXTENSION, [ALL])
    for db, steps in [("names_in_order", ["CREATE EXTENSION lambda_fdw", "CREATE EXTENSION aws_commons",
                                          "CREATE EXTENSION aws_lambda"]),
                      ("names_commons_first", ["CREATE EXTENSION aws_commons CASCADE",
                                               "CREATE EXTENSION aws_lambda"])]:
        s = Session(db)
        notices = [n for step in steps for n in s.run(step)]
        want_notices = ['installing required extension "lambda_fdw"'] if "CASCADE" in steps[0] else []
        check(f"{'; '.join(steps)}: notices", notices, want_notices)
        same_lines(check, f"{'; '.join(steps)}: the same objects as CREATE EXTENSION aws_lambda CASCADE",
                   snapshot(s.conn, MEMBERS, [ALL]), want_members, ("aws_lambda CASCADE", db))
        same_lines(check, f"{'; '.join(steps)}: the same extension rows",
                   snapshot(s.conn, EXTENSION, [ALL]), want_rows, ("aws_lambda CASCADE", db))
        s.close()


def requiring_extension():
    """An extension written for RDS: requires = 'aws_lambda'."""
    s = Session("names_client")
    check("an extension that requires aws_lambda installs with CASCADE",
          s.run("CREATE EXTENSION lambda_fdw_rds_client CASCADE"),
          ['installing required extension "aws_lambda"', 'installing required extension "aws_commons"',
           'installing required extension "lambda_fdw"'])
    route(s)
    check("its function calls aws_lambda.invoke",
          one(s.conn, "SELECT rds_client_echo('{\"client\": 1}'::json)"), {"client": 1})
    check("DROP EXTENSION aws_lambda refuses while that extension requires it",
          s.error("DROP EXTENSION aws_lambda"),
          ("2BP01", "cannot drop extension aws_lambda because other objects depend on it",
           "extension lambda_fdw_rds_client depends on extension aws_lambda", DROP_HINT))
    s.close()


def drops(s, default):
    """DROP EXTENSION of each, in the database installed by CASCADE."""
    check("DROP EXTENSION aws_commons refuses while aws_lambda requires it",
          s.error("DROP EXTENSION aws_commons"),
          ("2BP01", "cannot drop extension aws_commons because other objects depend on it",
           "extension aws_lambda depends on extension aws_commons", DROP_HINT))
    check("DROP EXTENSION lambda_fdw refuses while the names require it",
          s.error("DROP EXTENSION lambda_fdw"),
          ("2BP01", "cannot drop extension lambda_fdw because other objects depend on it",
           "server lambda_us_east_1 depends on foreign-data wrapper lambda_fdw\n"
           "user mapping for public on server lambda_us_east_1 depends on server lambda_us_east_1\n"
           "extension aws_commons depends on extension lambda_fdw\n"
           "extension aws_lambda depends on extension aws_commons", DROP_HINT))
    check("DROP EXTENSION aws_lambda drops the name", s.run("DROP EXTENSION aws_lambda"), [])
    check("... and leaves lambda_fdw and aws_commons", extensions(s), [("aws_commons", "1.0"), ("lambda_fdw", default)])
    check("... and aws_lambda.invoke, which is lambda_fdw's",
          [one(s.conn, "SELECT to_regprocedure(%s) IS NOT NULL", [f]) for f in INVOKE], [True] * 4)
    invokes(s, "after DROP EXTENSION aws_lambda")
    check("CREATE EXTENSION aws_lambda again, without CASCADE", s.run("CREATE EXTENSION aws_lambda"), [])
    check("DROP EXTENSION aws_lambda, aws_commons drops both names",
          s.run("DROP EXTENSION aws_lambda, aws_commons"), [])
    check("... and lambda_fdw keeps every object of the RDS API",
          [one(s.conn, "SELECT to_regprocedure(%s) IS NOT NULL", [f]) for f in INVOKE]
          + [one(s.conn, "SELECT to_regtype('aws_commons._lambda_function_arn_1') IS NOT NULL")], [True] * 5)
    s.run("CREATE EXTENSION aws_lambda CASCADE")
    # The server, its user mapping and the two names.
    check("DROP EXTENSION lambda_fdw CASCADE drops the names with it",
          s.run("DROP EXTENSION lambda_fdw CASCADE"), ["drop cascades to 4 other objects"])
    check("... and leaves none of the three", extensions(s), [])
    check("... and none of their schemas",
          one(s.conn, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('lambda_fdw', 'aws_lambda', 'aws_commons')"),
          0)


def dump_and_restore(admin):
    """pg_dump of a database set up as the RDS guide says, restored into a
    new database."""
    s = Session("names_dumped")
    s.run("CREATE EXTENSION IF NOT EXISTS aws_lambda CASCADE")
    route(s)
    s.run("COMMENT ON SERVER lambda_us_east_1 IS 'the region''s route'")
    s.run(f"CREATE FOREIGN TABLE echo (payload jsonb, status_code int, response jsonb) "
          f"SERVER lambda_us_east_1 OPTIONS (function_name 'echo')")
    # The RDS guide's grants (its step 6).
    s.run(f"GRANT USAGE ON SCHEMA aws_lambda TO {ROLE}")
    s.run(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA aws_lambda TO {ROLE}")
    invokes(s, "before pg_dump", ROLE)
    s.run("INSERT INTO echo (payload) VALUES ('{\"queued\": 1}')")
    dumped = {
        "members": snapshot(s.conn, MEMBERS, [ALL]),
        "extensions": snapshot(s.conn, EXTENSION, [ALL]),
        "user objects": snapshot(s.conn, USER_OBJECTS),
    }
    # Its state is the worker's business (the worker starts when CREATE
    # EXTENSION commits): queued, sending or succeeded, the row is there.
    check("the dumped database has a queued invocation",
          snapshot(s.conn, "SELECT function_name, payload FROM lambda_fdw.invocations"),
          ["echo | {'queued': 1}"])
    s.close()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "names.dump")
        os.chmod(tmp, 0o755)
        dump = subprocess.run(["pg_dump", "-U", "postgres", "-Fc", "-f", path, "names_dumped"],
                              capture_output=True, text=True)
        check("pg_dump of a database that used the RDS names", (dump.returncode, dump.stderr), (0, ""))
        listing = subprocess.run(["pg_restore", "-l", path], capture_output=True, text=True).stdout
        check("the dump creates the three extensions, lambda_fdw first",
              re.findall(r" EXTENSION - (\S+)", listing),
              ["lambda_fdw", "aws_commons", "aws_lambda"])
        restore = subprocess.run(["pg_restore", "-U", "postgres", "--exit-on-error", "-d", "names_restored", path],
                                 capture_output=True, text=True)
        check("pg_restore into a new database", (restore.returncode, restore.stderr), (0, ""))
    s = Session("names_restored")
    restored = {
        "members": snapshot(s.conn, MEMBERS, [ALL]),
        "extensions": snapshot(s.conn, EXTENSION, [ALL]),
        "user objects": snapshot(s.conn, USER_OBJECTS),
    }
    # docs/limits.md: the queue's rows belong to the extension and are not
    # dumped (a restored copy must not send them a second time).
    check("restored: the queue is empty, as docs/limits.md says",
          snapshot(s.conn, "SELECT function_name, payload, state FROM lambda_fdw.invocations"), [])
    for what in dumped:
        same_lines(check, f"restored: {what} as dumped", restored[what], dumped[what], ("dumped", "restored"))
    check("restored: the guide's grants are there",
          [one(s.conn, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", [ROLE, f]) for f in INVOKE]
          + [one(s.conn, "SELECT has_schema_privilege(%s, 'aws_lambda', 'USAGE')", [ROLE])], [True] * 5)
    invokes(s, "restored", ROLE)
    s.close()


def main():
    admin = Session("postgres")
    default = one(admin.conn, "SELECT default_version FROM pg_available_extensions WHERE name = 'lambda_fdw'")
    for db in DATABASES:
        admin.run(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.run(f"CREATE DATABASE {db}")
    admin.run(f"DROP ROLE IF EXISTS {ROLE}")
    admin.run(f"CREATE ROLE {ROLE}")

    availability(admin, default)
    first = cascade(default)
    other_orders(first)
    requiring_extension()
    drops(first, default)
    first.close()
    dump_and_restore(admin)

    for db in DATABASES:
        admin.run(f"DROP DATABASE {db} WITH (FORCE)")
    admin.run(f"DROP ROLE {ROLE}")
    admin.close()
    checks.finish()


if __name__ == "__main__":
    main()
