#!/usr/bin/env python3
"""Measures lambda_fdw against the stub (see bench/run, which sets it all up).

Environment: PGHOST/PGPORT/PGUSER of the benchmark's PostgreSQL,
LAMBDA_FDW_STUB_PORT, BENCH_N (calls per sequential measure, default 5000).
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

N = int(os.environ.get("BENCH_N", "5000"))
STUB = f"http://127.0.0.1:{os.environ.get('LAMBDA_FDW_STUB_PORT', '45661')}"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DB = "lambda_fdw_bench"
FANOUT_PAYLOADS, FANOUT_CONCURRENCY, FANOUT_DELAY_MS = 200, 20, 20
PAYLOAD_MB = 5
DATA_ROWS, DATA_CONCURRENCY, DATA_DELAY_MS = 2000, 50, 20
QUEUE_ROWS, QUEUE_CONCURRENCY, QUEUE_DELAY_MS, QUEUE_PROBES = 5000, 50, 20, 200
STATS_PAIRS, STATS_CALLS = 200, 200
# The second server of the statistics measure (not preloaded).
NOT_PRELOADED = {"LAMBDA_FDW_WORK": "/tmp/lambda_fdw_bench_nopreload", "LAMBDA_FDW_PGPORT": "54317",
                 "PGHOST": "/tmp/lambda_fdw_bench_nopreload/socket", "PGPORT": "54317"}


class Session:
    """One psql process kept open: one backend, timed from outside."""

    def __init__(self, env=None):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", DB],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env)
        self.pid = int(self.run("SELECT pg_backend_pid();")[0])

    def run(self, sql):
        self.p.stdin.write(sql + "\n\\echo __DONE__\n")
        self.p.stdin.flush()
        lines = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                sys.exit("psql ended: " + "".join(lines))
            line = line.rstrip("\n")
            if line == "__DONE__":
                return lines
            if line.startswith(("ERROR", "psql:")):
                sys.exit("benchmark query failed: " + line)
            lines.append(line)

    def timed(self, sql):
        t0 = time.perf_counter()
        out = self.run(sql)
        return time.perf_counter() - t0, out

    def cpu_s(self):
        """The backend's CPU time so far, in seconds (ns precision)."""
        with open(f"/proc/{self.pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9

    def timed_cpu(self, sql):
        """Wall time and the backend's CPU time of `sql`, in seconds."""
        c0 = self.cpu_s()
        secs, _ = self.timed(sql)
        return secs, self.cpu_s() - c0

    def status(self, field):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # MB
        raise RuntimeError(field)

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def psql(sql, db=DB, env=None):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql], check=True,
                   env={**(env or os.environ), "PGOPTIONS": "-c client_min_messages=warning"})


def setup():
    psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres")
    psql(f"CREATE DATABASE {DB}", db="postgres")
    for sql in SETUP:
        psql(sql)


SETUP = [
    "CREATE EXTENSION lambda_fdw",
    f"CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-west-2', endpoint_url '{STUB}', max_attempts '1')",
    "CREATE USER MAPPING FOR CURRENT_USER SERVER stub OPTIONS (aws_access_key_id 'AKIDBENCH', aws_secret_access_key 'bench-secret')",
    "CREATE EXTENSION plpython3u",
    "CREATE FOREIGN TABLE echo (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'echo')",
    f"CREATE FOREIGN TABLE delayed (payload jsonb, response jsonb) SERVER stub "
    f"OPTIONS (function_name 'slow-headers', max_concurrency '{FANOUT_CONCURRENCY}')",
    f"CREATE FOREIGN TABLE delayed_data (payload jsonb, response jsonb) SERVER stub "
    f"OPTIONS (function_name 'slow-headers', max_concurrency '{DATA_CONCURRENCY}')",
    f"CREATE TABLE fan_docs AS SELECT jsonb_build_object('ms', {DATA_DELAY_MS}, 'i', i) AS doc "
    f"FROM generate_series(1, {DATA_ROWS}) i",
    # The DIY shim people write: boto3 from plpython3u, the client kept in GD.
    f"""CREATE FUNCTION py_invoke(payload text) RETURNS text LANGUAGE plpython3u AS $py$
if 'lambda' not in GD:
    import boto3, botocore.config
    GD['lambda'] = boto3.client('lambda', region_name='us-west-2', endpoint_url='{STUB}',
    aws_access_key_id='AKIDBENCH', aws_secret_access_key='bench-secret',
    config=botocore.config.Config(retries={{'max_attempts': 1, 'mode': 'standard'}}))
r = GD['lambda'].invoke(FunctionName='echo', Payload=payload)
return r['Payload'].read().decode()
$py$""",
]


def invoke_loop(n):
    return (f"SELECT count(*) FROM generate_series(1, {n}) i, "
            f"LATERAL aws_lambda.invoke('echo', json_build_object('i', i), 'us-west-2') r "
            f"WHERE r.status_code = 200;")


def main():
    setup()
    results = {}
    s = Session()

    # 1. Per-call overhead: aws_lambda.invoke, N calls in one statement.
    s.run(invoke_loop(200))
    secs, out = s.timed(invoke_loop(N))
    assert out == [str(N)], out
    results["per_call_us"] = secs * 1e6 / N

    # ... and a foreign table, one payload per query.
    queries = "\n".join(f"SELECT count(*) FROM echo WHERE payload = '{{\"i\": {i}}}';" for i in range(N))
    s.run("\n".join(f"SELECT count(*) FROM echo WHERE payload = '{{\"i\": {i}}}';" for i in range(200)))
    secs, out = s.timed(queries)
    assert out == ["1"] * N, out[:3]
    results["fdw_per_query_us"] = secs * 1e6 / N

    # The same N calls from a standalone program with aws-sdk-lambda.
    sdk = subprocess.run([os.path.join(ROOT, "target/release/bench_sdk"), STUB, str(N)],
                         capture_output=True, text=True, check=True).stdout.split()
    results["sdk_per_call_us"] = float(sdk[1])

    # 2. The DIY alternative: plpython3u + boto3.
    py = ("SELECT count(*) FROM generate_series(1, {n}) i, "
          "LATERAL py_invoke(json_build_object('i', i)::text) r WHERE r::json->>'i' = i::text;")
    s.run(py.format(n=100))
    secs, out = s.timed(py.format(n=N))
    assert out == [str(N)], out
    results["plpython_per_call_us"] = secs * 1e6 / N

    # 3. Fan-out: 200 payloads, 20 ms each, 20 at a time.
    payloads = ", ".join(f"'{{\"ms\": {FANOUT_DELAY_MS}, \"i\": {i}}}'" for i in range(FANOUT_PAYLOADS))
    fan = f"SELECT count(*) FROM delayed WHERE payload IN ({payloads});"
    results.update(fan_out(s, "fanout", fan, FANOUT_PAYLOADS, FANOUT_CONCURRENCY, FANOUT_DELAY_MS, 5))

    # 3b. Fan-out over a table's rows: payload = ANY(ARRAY(SELECT ...)).
    data = "SELECT count(*) FROM delayed_data WHERE payload = ANY(ARRAY(SELECT doc FROM fan_docs));"
    results.update(fan_out(s, "data_fanout", data, DATA_ROWS, DATA_CONCURRENCY, DATA_DELAY_MS, 3))
    s.close()

    # ... and its peak memory above the idle backend.
    d = Session()
    d.run("SELECT count(*) FROM delayed_data WHERE payload = '{\"ms\": 0}';")
    idle = d.status("VmRSS")
    with open(f"/proc/{d.pid}/clear_refs", "w") as f:
        f.write("5")
    assert d.run(data) == [str(DATA_ROWS)]
    results["data_fanout_peak_rss_mb"] = d.status("VmHWM") - idle
    d.close()

    # 3c. Prepared statements from an application (psycopg 3, server-side
    # prepared, round trips included): a one-payload foreign-table query and
    # an aws_lambda.invoke call, N executions each.
    results.update(prepared())

    # 4. Memory: a fresh backend; RSS after 100 and after 1,100 calls.
    m = Session()
    m.run(invoke_loop(100))
    rss_100 = m.status("VmRSS")
    m.run(invoke_loop(1000))
    rss_1100 = m.status("VmRSS")
    results["rss_after_100_mb"] = rss_100
    results["rss_after_1100_mb"] = rss_1100
    results["rss_growth_mb_1000_calls"] = rss_1100 - rss_100
    m.close()

    # Peak for one 5 MB payload round trip, above the idle backend. The
    # payload is stored in a table (compressed: it is one repeated letter), so
    # the statement costs PostgreSQL one detoasted copy; the result is
    # measured, not sent back.
    chars = PAYLOAD_MB * 1024 * 1024 - 9
    psql(f"CREATE TABLE big AS SELECT ('{{\"k\": \"' || repeat('x', {chars}) || '\"}}')::json AS doc")
    p = Session()
    p.run(invoke_loop(1))
    p.run("SELECT count(*) FROM big;")
    idle = p.status("VmRSS")
    with open(f"/proc/{p.pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    out = p.run("SELECT length(r.payload::text) FROM big, LATERAL aws_lambda.invoke('echo', big.doc, 'us-west-2') r;")
    assert out == [str(chars + 9)], out
    peak = p.status("VmHWM")
    results["payload_mb"] = (chars + 9) / 1024 / 1024
    results["idle_rss_mb"] = idle
    results["peak_rss_mb_5mb_payload"] = peak - idle
    p.close()

    # 5. The after-commit queue.
    results.update(queue())

    # 6. What counting every call in lambda_fdw.stat_invocations costs.
    results.update(stats_overhead())

    results["per_call_vs_sdk"] = results["per_call_us"] / results["sdk_per_call_us"]
    results["plpython_vs_per_call"] = results["plpython_per_call_us"] / results["per_call_us"]
    report(results)


def fan_out(s, name, sql, calls, concurrency, delay_ms, runs):
    """Median time of a fan-out query against its ideal, calls / concurrency x delay."""
    s.run(sql)
    times = []
    for _ in range(runs):
        secs, out = s.timed(sql)
        assert out == [str(calls)], out
        times.append(secs)
    ideal = calls / concurrency * delay_ms / 1000.0
    median = statistics.median(times)
    return {f"{name}_ms": median * 1000, f"{name}_ideal_ms": ideal * 1000,
            f"{name}_efficiency": ideal / median}


def prepared(rounds=10):
    """Per-call time of prepared statements from an application: psycopg 3,
    server-side prepared, round trips included. The two statements run in
    alternating rounds of N / rounds executions, so that drift in the
    machine's speed hits both alike; the figures are the medians of the rounds."""
    import psycopg
    from psycopg.types.json import Json, Jsonb
    statements = {
        "fdw_prepared_per_call_us": ("SELECT response FROM echo WHERE payload = %s", Jsonb),
        "invoke_prepared_per_call_us":
            ("SELECT payload FROM aws_lambda.invoke('echo', %s::json, 'us-west-2')", Json),
    }
    per_round = {k: [] for k in statements}
    n = max(N // rounds, 1)
    with psycopg.connect(dbname=DB, autocommit=True) as conn:
        for sql, wrap in statements.values():
            for i in range(200):
                conn.execute(sql, [wrap({"i": i})], prepare=True).fetchone()
        for r in range(rounds):
            order = list(statements.items())
            if r % 2:
                order.reverse()
            for key, (sql, wrap) in order:
                t0 = time.perf_counter()
                for i in range(n):
                    row = conn.execute(sql, [wrap({"i": i})], prepare=True).fetchone()
                    assert row[0] == {"i": i}, row
                per_round[key].append((time.perf_counter() - t0) * 1e6 / n)
    out = {k: statistics.median(v) for k, v in per_round.items()}
    out["fdw_vs_invoke_prepared"] = out["fdw_prepared_per_call_us"] / out["invoke_prepared_per_call_us"]
    return out


def stub_calls(of, key):
    """Calls the stub has seen for (function, key), and how long ago the last
    one arrived, asked over HTTP directly (the stub checks no signature)."""
    import urllib.request
    body = json.dumps({"of": of, "key": key}).encode()
    req = urllib.request.Request(f"{STUB}/2015-03-31/functions/calls/invocations", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        out = json.loads(resp.read())
    return out["calls"], out["last_ms_ago"]


def queue():
    """The after-commit queue: throughput of one transaction's 5,000
    invocations (each answered after 20 ms, 50 at a time), and the time from
    COMMIT returning to the stub receiving a single queued invocation."""
    import psycopg
    psql(f"ALTER SYSTEM SET lambda_fdw.queue_concurrency = {QUEUE_CONCURRENCY}")
    psql("SELECT pg_reload_conf()")
    out = {}
    with psycopg.connect(dbname=DB, autocommit=True) as conn:
        def scalar(sql, args=None):
            return conn.execute(sql, args).fetchone()[0]
        deadline = time.time() + 30
        while scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'lambda_fdw queue worker'") == 0:
            if time.time() > deadline:
                sys.exit("benchmark: the queue worker did not start (is lambda_fdw preloaded?)")
            time.sleep(0.1)
        time.sleep(1.5)  # the worker reads the new queue_concurrency at its next loop
        with conn.transaction():
            conn.execute("SELECT count(lambda_fdw.enqueue('sleep-echo', jsonb_build_object('ms', %s, 'key', 'q' || i), "
                         "'us-west-2')) FROM generate_series(1, %s) i", [QUEUE_DELAY_MS, QUEUE_ROWS])
        t0 = time.perf_counter()
        while scalar("SELECT count(*) FROM lambda_fdw.invocations WHERE state = 'succeeded'") < QUEUE_ROWS:
            if time.perf_counter() - t0 > 120:
                sys.exit("benchmark: the queue did not drain")
            time.sleep(0.025)  # each look scans the queue: not too often
        secs = time.perf_counter() - t0
        ideal = QUEUE_CONCURRENCY * 1000.0 / QUEUE_DELAY_MS
        out["queue_throughput_per_s"] = QUEUE_ROWS / secs
        out["queue_ideal_per_s"] = ideal
        out["queue_efficiency"] = QUEUE_ROWS / secs / ideal
        waits = []
        for i in range(QUEUE_PROBES):
            key = f"c2s-{i}"
            with conn.transaction():
                conn.execute("SELECT lambda_fdw.enqueue('counted-echo', %s, 'us-west-2')", [json.dumps({"key": key})])
            committed = time.perf_counter()
            while True:
                calls, ago = stub_calls("counted-echo", key)
                asked = time.perf_counter()
                if calls:
                    waits.append((asked - ago / 1000.0 - committed) * 1000.0)
                    break
                if asked - committed > 5:
                    sys.exit("benchmark: a queued invocation was not sent within 5 s")
                time.sleep(0.001)
        out["queue_commit_to_send_ms"] = statistics.median(waits)
    return out


def other_cluster(command):
    """Starts or stops a second server, like the benchmark's but without
    lambda_fdw preloaded (services.sh, LAMBDA_FDW_PRELOAD=0)."""
    env = {**os.environ, **NOT_PRELOADED, "LAMBDA_FDW_PRELOAD": "0"}
    subprocess.run(["bash", "-c", f"source '{ROOT}/tests/harness/services.sh' && {command}"], env=env, check=True)


def stats_overhead(pairs=STATS_PAIRS, n=STATS_CALLS):
    """What counting costs a call: aws_lambda.invoke on the benchmark's
    server (lambda_fdw preloaded: every call counted in shared memory) and
    on a second server that does not preload it (nothing counted), same stub
    and settings. The two alternate in blocks of `n` calls, `pairs` times,
    so that the machine's drift hits both alike. Counting is CPU work in the
    backend, so it is measured as the backend's CPU time (schedstat, ns),
    which the stub's and the scheduler's jitter do not reach: the overhead is
    the median paired difference in CPU per call, as a share of a call's
    wall time without counting."""
    other_cluster("start_postgres")
    try:
        other = {**os.environ, **NOT_PRELOADED}
        psql(f"CREATE DATABASE {DB}", db="postgres", env=other)
        for sql in SETUP[:3]:  # the extension, the server, the mapping
            psql(sql, env=other)
        on, off = Session(), Session(env=other)
        for s in (on, off):
            s.run(invoke_loop(200))
        wall = {"on": [], "off": []}
        cpu = {"on": [], "off": []}
        for i in range(pairs):
            for name, s in (("on", on), ("off", off)) if i % 2 == 0 else (("off", off), ("on", on)):
                secs, cpu_secs = s.timed_cpu(invoke_loop(n))
                wall[name].append(secs * 1e6 / n)
                cpu[name].append(cpu_secs * 1e6 / n)
        counted = on.run("SELECT sum(calls) FROM lambda_fdw.stat_invocations WHERE function_name = 'echo';")
        assert int(counted[0]) >= 200 + pairs * n, counted
        on.close()
        off.close()
    finally:
        other_cluster("STARTED_PG=1 stop_postgres")
    added_cpu_us = statistics.median(a - b for a, b in zip(cpu["on"], cpu["off"]))
    call_us = statistics.median(wall["off"])
    return {"stats_on_per_call_us": statistics.median(wall["on"]),
            "stats_off_per_call_us": call_us,
            "stats_on_cpu_per_call_us": statistics.median(cpu["on"]),
            "stats_off_cpu_per_call_us": statistics.median(cpu["off"]),
            "stats_added_cpu_per_call_us": added_cpu_us,
            "stats_overhead_pct": added_cpu_us / call_us * 100}


def report(r):
    targets = [
        ("aws_lambda.invoke, per call", f"{r['per_call_us']:.1f} us", ""),
        ("foreign table, per query (one payload)", f"{r['fdw_per_query_us']:.1f} us", ""),
        ("aws-sdk-lambda from Rust, per call", f"{r['sdk_per_call_us']:.1f} us", ""),
        ("plpython3u + boto3, per call", f"{r['plpython_per_call_us']:.1f} us", ""),
        ("invoke / SDK", f"{r['per_call_vs_sdk']:.2f}", "<= 1.3"),
        ("plpython / invoke", f"{r['plpython_vs_per_call']:.1f}", ">= 5"),
        (f"fan-out {FANOUT_PAYLOADS} x {FANOUT_DELAY_MS} ms at {FANOUT_CONCURRENCY}",
         f"{r['fanout_ms']:.0f} ms (ideal {r['fanout_ideal_ms']:.0f})", ""),
        ("fan-out efficiency", f"{r['fanout_efficiency']:.2f}", ">= 0.85"),
        (f"fan-out over {DATA_ROWS} rows x {DATA_DELAY_MS} ms at {DATA_CONCURRENCY}",
         f"{r['data_fanout_ms']:.0f} ms (ideal {r['data_fanout_ideal_ms']:.0f})", ""),
        ("data fan-out efficiency", f"{r['data_fanout_efficiency']:.2f}", ">= 0.85"),
        ("data fan-out peak RSS above idle", f"{r['data_fanout_peak_rss_mb']:.1f} MB", "< 50 MB"),
        ("foreign table, prepared, per call", f"{r['fdw_prepared_per_call_us']:.1f} us", ""),
        ("aws_lambda.invoke, prepared, per call", f"{r['invoke_prepared_per_call_us']:.1f} us", ""),
        ("prepared foreign table / invoke", f"{r['fdw_vs_invoke_prepared']:.2f}", "<= 1.15"),
        ("RSS growth per 1,000 calls", f"{r['rss_growth_mb_1000_calls']:.2f} MB", "<= 5 MB"),
        (f"peak RSS above idle, {r['payload_mb']:.0f} MB payload", f"{r['peak_rss_mb_5mb_payload']:.1f} MB",
         f"<= {4 * r['payload_mb']:.0f} MB"),
        (f"queue: {QUEUE_ROWS} x {QUEUE_DELAY_MS} ms at {QUEUE_CONCURRENCY}",
         f"{r['queue_throughput_per_s']:.0f}/s (ideal {r['queue_ideal_per_s']:.0f})", ""),
        ("queue efficiency", f"{r['queue_efficiency']:.2f}", ">= 0.8"),
        ("queue: COMMIT to request sent, median", f"{r['queue_commit_to_send_ms']:.1f} ms", "<= 20 ms"),
        ("aws_lambda.invoke, counted / not preloaded",
         f"{r['stats_on_per_call_us']:.1f} / {r['stats_off_per_call_us']:.1f} us", ""),
        ("  backend CPU per call, counted / not",
         f"{r['stats_on_cpu_per_call_us']:.1f} / {r['stats_off_cpu_per_call_us']:.1f} us", ""),
        ("  CPU added by counting, per call", f"{r['stats_added_cpu_per_call_us']:+.2f} us", ""),
        ("statistics overhead, share of a call", f"{r['stats_overhead_pct']:+.2f} %", "<= 3 %"),
    ]
    print(f"lambda_fdw benchmark: N = {N}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.platform()}")
    print(f"{'measure':45} {'value':>26}  target")
    for name, value, target in targets:
        print(f"{name:45} {value:>26}  {target}")
    keys = ["per_call_us", "fdw_per_query_us", "sdk_per_call_us", "plpython_per_call_us",
            "fanout_efficiency", "rss_growth_mb_1000_calls", "peak_rss_mb_5mb_payload",
            "data_fanout_efficiency", "data_fanout_peak_rss_mb", "fdw_prepared_per_call_us",
            "invoke_prepared_per_call_us", "queue_throughput_per_s", "queue_commit_to_send_ms",
            "stats_overhead_pct"]
    print(json.dumps({k: round(r[k], 3) for k in keys}))


if __name__ == "__main__":
    main()
