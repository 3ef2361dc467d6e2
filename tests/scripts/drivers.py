#!/usr/bin/env python3
"""Foreign-table scans the way applications run them: through asyncpg (every
query is a prepared statement) and psycopg 3 (server-side prepare from the
5th execution on), so PostgreSQL's plan cache moves to generic plans and
`payload = $1` / `payload = ANY($1)` arrive as parameters. Each form runs 20
times per driver under the default plan_cache_mode and under
force_generic_plan, and every execution must return exactly its rows.

Usage: drivers.py (PGHOST/PGPORT/PGUSER from the environment; the stub on
127.0.0.1:$LAMBDA_FDW_STUB_PORT, default 45661). Runs with the test venv's
python, which has asyncpg and psycopg.
"""
import asyncio
import json
import os
import sys

import asyncpg
import psycopg

STUB_PORT = os.environ.get("LAMBDA_FDW_STUB_PORT", "45661")
DB = "lambda_fdw_drivers"
EXECUTIONS = 20
HOST = os.environ["PGHOST"]
PORT = int(os.environ["PGPORT"])
USER = os.environ.get("PGUSER", "postgres")

SETUP = f"""
CREATE EXTENSION lambda_fdw;
CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:{STUB_PORT}', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER stub
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE echo (payload jsonb, status_code int, response jsonb)
  SERVER stub OPTIONS (function_name 'echo');
"""
ONE = "SELECT response FROM echo WHERE payload = $1"
MANY = "SELECT response FROM echo WHERE payload = ANY($1::jsonb[])"

failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")


def expected(n, mode, k):
    return [{"driver": n, "mode": mode, "i": k, "j": j} for j in range(3)]


async def with_asyncpg(mode):
    conn = await asyncpg.connect(host=HOST, port=PORT, user=USER, database=DB)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.execute(f"SET plan_cache_mode = {mode}")
    one = await conn.prepare(ONE)
    many = await conn.prepare(MANY)
    for k in range(EXECUTIONS):
        p = {"driver": "asyncpg", "mode": mode, "i": k}
        check(f"asyncpg {mode} one #{k + 1}", await one.fetchval(p), p)
        ps = expected("asyncpg", mode, k)
        rows = await many.fetch(ps)
        check(f"asyncpg {mode} many #{k + 1}", [r["response"] for r in rows], ps)
    await conn.close()


def with_psycopg(mode):
    from psycopg.types.json import Jsonb
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname=DB, autocommit=True) as conn:
        conn.execute(f"SET plan_cache_mode = {mode}")
        for k in range(EXECUTIONS):
            p = {"driver": "psycopg", "mode": mode, "i": k}
            got = conn.execute(ONE.replace("$1", "%s"), [Jsonb(p)]).fetchone()
            check(f"psycopg {mode} one #{k + 1}", got and got[0], p)
            ps = expected("psycopg", mode, k)
            rows = conn.execute(MANY.replace("$1", "%s"), [[Jsonb(x) for x in ps]]).fetchall()
            check(f"psycopg {mode} many #{k + 1}", [r[0] for r in rows], ps)
        # psycopg prepared both statements on the server (after 5 executions).
        n = conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%FROM echo%'").fetchone()[0]
        check(f"psycopg {mode} server-side prepared statements", n, 2)


def main():
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname="postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB}")
        c.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname=DB, autocommit=True) as c:
        c.execute(SETUP)
    for mode in ("auto", "force_generic_plan"):
        asyncio.run(with_asyncpg(mode))
        with_psycopg(mode)
    for f in failures:
        print("FAIL", f)
    runs = 2 * 2 * 2 * EXECUTIONS
    print(f"drivers: {runs - len(failures)} of {runs} executions returned exactly their rows")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
