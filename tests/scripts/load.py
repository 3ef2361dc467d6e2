#!/usr/bin/env python3
"""Load test: 8 concurrent sessions x 300 invocations each, mixing single
aws_lambda.invoke calls and fan-out scans of a foreign table, against the
wire stub. Passes when no call fails, no backend's memory grows between
the end of its first 100 calls and the end of its last, and the shared
invocation statistics (lambda_fdw.stat_invocations; the cluster preloads
lambda_fdw) count exactly the calls made, per function.

Usage: load.py  (PGHOST/PGPORT/PGUSER from the environment; the stub on
127.0.0.1:$LAMBDA_FDW_STUB_PORT, default 45661)
"""
import os
import subprocess
import sys

from procstat import rss_kb

SESSIONS = 8
STUB_PORT = os.environ.get("LAMBDA_FDW_STUB_PORT", "45661")
DB = "lambda_fdw_load"
# Resident memory may move by a few pages between two samples; growth per
# call would show as far more than this over 200 calls.
MAX_GROWTH_KB = 1024


def psql(db, sql):
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"setup failed: {out.stderr}")
    return out.stdout


def batch(session, start):
    """100 invocations: 50 single calls in one statement, then 5 fan-outs of 10."""
    sql = [
        f"SELECT 'single', count(*) FROM generate_series({start}, {start + 49}) i, "
        f"LATERAL aws_lambda.invoke('echo', json_build_object('s', {session}, 'i', i), 'us-west-2') r "
        f"WHERE r.status_code = 200 AND (r.payload->>'i')::int = i;"
    ]
    for k in range(5):
        base = start + 50 + 10 * k
        payloads = ", ".join(f"'{{\"s\": {session}, \"i\": {base + j}}}'" for j in range(10))
        sql.append(f"SELECT 'fanout', count(*) FROM echo_live WHERE payload IN ({payloads}) "
                   f"AND status_code = 200 AND response = payload;")
    return "\n".join(sql) + "\n\\echo BATCH_DONE\n"


def run_batches(procs, start):
    """Sends one batch to every session, then checks every answer."""
    for s, p in enumerate(procs):
        p.stdin.write(batch(s, start))
        p.stdin.flush()
    errors = []
    for s, p in enumerate(procs):
        while True:
            line = p.stdout.readline()
            if not line:
                errors.append(f"session {s}: psql exited")
                break
            line = line.strip()
            if line == "BATCH_DONE":
                break
            kind, _, n = line.partition("|")
            expected = {"single": "50", "fanout": "10"}.get(kind)
            if expected is None or n != expected:
                errors.append(f"session {s}: {line}")
    return errors


def main():
    os.environ["PGOPTIONS"] = "-c client_min_messages=warning"
    subprocess.run(["psql", "-X", "-q", "-c", f"DROP DATABASE IF EXISTS {DB}"], check=True)
    subprocess.run(["psql", "-X", "-q", "-c", f"CREATE DATABASE {DB}"], check=True)
    psql(DB, "CREATE EXTENSION lambda_fdw")
    psql(DB, f"CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw OPTIONS "
             f"(region 'us-west-2', endpoint_url 'http://127.0.0.1:{STUB_PORT}', max_attempts '1')")
    psql(DB, "CREATE USER MAPPING FOR CURRENT_USER SERVER stub "
             "OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key')")
    # The fan-outs name the function with a qualifier: their own row in the statistics.
    psql(DB, "CREATE FOREIGN TABLE echo_live (payload jsonb, status_code int, response jsonb) "
             "SERVER stub OPTIONS (function_name 'echo', qualifier 'live')")
    psql(DB, "SELECT lambda_fdw.stat_invocations_reset()")

    procs = [subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-d", DB], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(SESSIONS)]
    pids = []
    for p in procs:
        p.stdin.write("SELECT pg_backend_pid();\n")
        p.stdin.flush()
        pids.append(int(p.stdout.readline().strip()))

    errors = run_batches(procs, 0)                      # calls 1..100
    after_100 = [rss_kb(pid) for pid in pids]
    errors += run_batches(procs, 100)                   # calls 101..200
    errors += run_batches(procs, 200)                   # calls 201..300
    after_300 = [rss_kb(pid) for pid in pids]

    for p in procs:
        p.stdin.close()
        p.wait()
    counted = psql(DB, "SELECT function_name, server, calls, succeeded, function_errors + throttled "
                       "+ client_errors + service_errors + timeouts + connect_errors, retries, "
                       "bytes_sent = bytes_received AND bytes_sent > 0 "
                       f"FROM lambda_fdw.stat_invocations WHERE database = '{DB}' ORDER BY 1").split()
    subprocess.run(["psql", "-X", "-q", "-c", f"DROP DATABASE {DB}"], check=True)
    per_function = SESSIONS * 150
    expected = [f"echo|stub|{per_function}|{per_function}|0|0|t",
                f"echo:live|stub|{per_function}|{per_function}|0|0|t"]
    print(f"load: lambda_fdw.stat_invocations: {counted}")
    if counted != expected:
        errors.append(f"statistics {counted}, expected {expected}")

    growth = [b - a for a, b in zip(after_100, after_300)]
    print(f"load: {SESSIONS} sessions x 300 invocations (single calls and fan-out scans)")
    print(f"load: backend RSS after 100 calls (kB): {after_100}")
    print(f"load: backend RSS after 300 calls (kB): {after_300}")
    print(f"load: largest growth {max(growth)} kB (limit {MAX_GROWTH_KB} kB), errors {len(errors)}")
    for e in errors[:20]:
        print("load error:", e)
    ok = not errors and max(growth) <= MAX_GROWTH_KB
    print(f"load: {'1 passed, 0 failed' if ok else '0 passed, 1 failed'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
