#!/usr/bin/env python3
"""Measures lambda_fdw against the stub (bench/run sets it all up).

Two modes:

- one build (the default): the whole table (per-call cost against the raw
  SDK and plpython3u + boto3, fan-out, memory, prepared statements, the
  queue, the cost of the statistics);
- OLD vs NEW (bench/run --baseline REV): the main figures (aws_lambda.invoke
  per call, fan-out, queue throughput, statistics overhead) of a baseline
  build and of this tree's build, side by side in alternating rounds of one
  run, with each difference and its noise.

How the sequential figures are taken, and why:

- Every sequential figure comes from ROUNDS alternating rounds: in each
  round every measured kind of call (aws_lambda.invoke on each server, the
  raw SDK program, ...) runs one block of BLOCK calls, in an order rotated
  from round to round. A ratio or a difference is taken round by round
  (paired), so a change in the machine's speed during the run hits both
  sides of it alike.
- Placement is fixed (BENCH_LAYOUT). On a small virtual machine, where the
  caller runs relative to the stub decides what a loopback call costs: on
  this project's 2-vCPU machine a call whose caller shares a vCPU with the
  stub took ~70 us, and ~130 us when they sat on different vCPUs (a wake-up
  across vCPUs costs ~60 us of wall time, ~40 us of it as the caller's own
  CPU time). The scheduler picks the placement per process and keeps it, so
  figures taken by different processes could differ by 2x for the same
  work: that is what made the statistics comparison swing from -26 % to
  +73 %, and a not-preloaded server beat the raw SDK. "same" (the default)
  puts each block's caller (a backend, or the SDK program) and the stub on
  one CPU, the quietest one just before the block (or BENCH_CPU); "split"
  puts the stub on another CPU than the caller; "free" pins nothing.
- Every call is checked: each response must echo its request, the stub
  must have counted exactly the calls sent under each block's key, and all
  servers must give identical result rows; the AWS settings a call uses
  must be the same on every server.
- No figure is printed whose calls ran faster than their physical floor,
  the raw SDK program doing the same call in the same rounds (in wall time
  and in CPU time): a refusal line says so instead, and the run fails.

Environment (bench/run sets the first three): BENCH_SERVERS (JSON:
{"new": {"on": [socket dir, port, data dir, bin dir], "off": [...]},
"old": {...}}: each build's preloaded server and its not-preloaded twin),
BENCH_STUB_PID,
LAMBDA_FDW_STUB_PORT, BENCH_BASELINE (the OLD build's name), BENCH_ROUNDS
(default 60), BENCH_BLOCK (calls per block, default 200), BENCH_ROTATE
(servers restarted and backends replaced every this many rounds, default
10; 0: never), BENCH_N (calls of the other sequential measures, default
5000), BENCH_LAYOUT, BENCH_CPU, BENCH_NOISE_PCT, BENCH_NOISE_POINTS.
"""
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.request

N = int(os.environ.get("BENCH_N", "5000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "60"))
BLOCK = int(os.environ.get("BENCH_BLOCK", "200"))
ROTATE = int(os.environ.get("BENCH_ROTATE", "10"))
LAYOUT = os.environ.get("BENCH_LAYOUT", "same")
STUB = f"http://127.0.0.1:{os.environ.get('LAMBDA_FDW_STUB_PORT', '45661')}"
STUB_PID = int(os.environ.get("BENCH_STUB_PID", "0"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDK_BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release/bench_sdk")
DB = "lambda_fdw_bench"
FANOUT_PAYLOADS, FANOUT_CONCURRENCY, FANOUT_DELAY_MS = 200, 20, 20
PAYLOAD_MB = 5
DATA_ROWS, DATA_CONCURRENCY, DATA_DELAY_MS = 2000, 50, 20
# Batched fan-out: rows from ANY(ARRAY(SELECT ...)), BATCH_SIZE rows a call,
# BATCH_CONCURRENCY calls at once, the stub answering each after 20 ms
# (batch-lambda_fdw-20ms): ideal BATCH_CONCURRENCY x BATCH_SIZE / 20 ms.
BATCH_ROWS, BATCH_SIZE, BATCH_CONCURRENCY, BATCH_DELAY_MS = 100000, 500, 10, 20
QUEUE_ROWS, QUEUE_CONCURRENCY, QUEUE_DELAY_MS, QUEUE_PROBES = 5000, 50, 20, 200
# The queue's batched sends: rows INSERTed through a foreign table with
# batch_size QUEUE_BATCH_SIZE, on the stub's lambda_fdw-format function that
# answers each request after QUEUE_BATCH_DELAY_MS.
QUEUE_BATCH_ROWS, QUEUE_BATCH_SIZE, QUEUE_BATCH_DELAY_MS = 50000, 100, 20
QUEUE_BATCH_FUNCTION = f"batch-lambda_fdw-{QUEUE_BATCH_DELAY_MS}ms"
QUEUE_BATCH_TARGET = 20000  # rows per second
# The queue in several databases at once (0.6.0): QUEUE_DBS databases, each
# with its own worker, each queueing QUEUE_DB_ROWS rows; against one
# database's QUEUE_DB_ROWS in the same run.
QUEUE_DBS, QUEUE_DB_ROWS = 4, 2000
# Completion callbacks (0.6.0): QUEUE_ROWS rows with a trivial on_complete,
# against without, in CALLBACK_ROUNDS paired rounds.
CALLBACK_ROUNDS, CALLBACK_TARGET_PCT = 3, 20.0
FANOUT_ROUNDS, QUEUE_ROUNDS = 6, 6  # OLD vs NEW: paired rounds of each
# OLD vs NEW: differences this small are noise even when the rounds' CI
# excludes 0. Two builds of the same code (A/A runs, bench/run --baseline
# HEAD) differed by up to 2.5 % in time per call and CPU per call (each
# build's code layout and its library's pages stay with it for the whole
# run, which no pairing of rounds removes), and by up to 2.2 points in the
# statistics overhead (before backends were replaced every 10 rounds).
NOISE_PCT = float(os.environ.get("BENCH_NOISE_PCT", "3"))
NOISE_POINTS = float(os.environ.get("BENCH_NOISE_POINTS", "2.5"))
# Settings of the queue workers, not of calls (database_name is retired
# since 0.6.0; an OLD build may still read it).
NOT_A_CALL_SETTING = {"lambda_fdw.database_name", "lambda_fdw.max_queue_workers"}


def fail(msg):
    sys.exit("benchmark: " + msg)


# --- placement ---------------------------------------------------------------

def plan_placement():
    cpus = sorted(os.sched_getaffinity(0))
    if LAYOUT == "free" or len(cpus) < 2:
        return None
    if LAYOUT not in ("same", "split"):
        fail(f"BENCH_LAYOUT must be same, split or free, not {LAYOUT}")
    fixed = os.environ.get("BENCH_CPU")
    if fixed is not None and int(fixed) not in cpus:
        fail(f"BENCH_CPU {fixed} is not one of this process's CPUs {cpus}")
    place = {"cpus": cpus, "fixed": fixed is not None}
    place_on(place, int(fixed) if fixed is not None else cpus[-1])
    return place


def place_on(place, cpu):
    """Callers on `cpu`; the stub there too ("same") or on another ("split")."""
    rest = [c for c in place["cpus"] if c != cpu]
    place["caller"] = cpu
    place["stub"] = cpu if LAYOUT == "same" else rest[0]


def cpu_busy():
    with open("/proc/stat") as f:
        out = {}
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                v = [int(x) for x in v]
                out[int(name[3:])] = (sum(v) - v[3] - v[4], sum(v))
    return out


def quietest_cpu(sample_s=0.025):
    """The CPU least busy (with others' work: ours is idle between blocks)
    over a short sample."""
    a = cpu_busy()
    time.sleep(sample_s)
    b = cpu_busy()
    share = {c: (b[c][0] - a[c][0]) / max(b[c][1] - a[c][1], 1) for c in PLACE["cpus"] if c in a and c in b}
    return min(share, key=lambda c: (share[c], c != PLACE["caller"]))


def place_block(kind):
    """Before each block: unless BENCH_CPU fixes it, the quietest CPU takes
    the block's caller and the stub (another machine's load on one CPU then
    does not sit on our calls), and the placement is the layout's."""
    if PLACE is None:
        return
    if not PLACE["fixed"]:
        place_on(PLACE, quietest_cpu())
    pin(STUB_PID, PLACE["stub"])
    for pid in kind.pids():
        pin(pid, PLACE["caller"])


def pin(pid, cpu):
    """Pins every thread of process `pid` to `cpu` (threads it starts later
    inherit it from their creator)."""
    if PLACE is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except ProcessLookupError:
            pass


def pin_caller_here():
    """For the SDK program: runs in the child before exec."""
    if PLACE is not None:
        os.sched_setaffinity(0, {PLACE["caller"]})


def describe_placement():
    if PLACE is None:
        return "placement: free (nothing pinned)"
    where = (f"CPU {PLACE['caller']} (BENCH_CPU)" if PLACE["fixed"]
             else "the quietest CPU before each block")
    stub = "beside them" if LAYOUT == "same" else "on another CPU"
    return f"placement: {LAYOUT}: each block's caller (a backend or the SDK program) on {where}, the stub {stub}"


# --- servers and sessions ----------------------------------------------------

class Session:
    """One psql process kept open: one backend, timed from outside."""

    def __init__(self, server):
        self.server = server
        self.p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", DB],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=server.env)
        self.pid = int(self.run("SELECT pg_backend_pid();")[0])
        if PLACE is not None:
            pin(self.pid, PLACE["caller"])

    def run(self, sql):
        self.p.stdin.write(sql + "\n\\echo __DONE__\n")
        self.p.stdin.flush()
        lines = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                fail("psql ended: " + "".join(lines))
            line = line.rstrip("\n")
            if line == "__DONE__":
                return lines
            if line.startswith(("ERROR", "psql:")):
                fail(f"query failed on {self.server.name}: {line}")
            lines.append(line)

    def timed(self, sql):
        t0 = time.perf_counter()
        out = self.run(sql)
        return time.perf_counter() - t0, out

    def sched(self):
        """The backend's CPU time and its time waiting for a CPU so far, ns."""
        with open(f"/proc/{self.pid}/schedstat") as f:
            cpu, wait = f.read().split()[:2]
        return int(cpu), int(wait)

    def timed_sched(self, sql):
        """Wall seconds, output, CPU seconds, seconds waiting for a CPU."""
        c0, w0 = self.sched()
        secs, out = self.timed(sql)
        c1, w1 = self.sched()
        return secs, out, (c1 - c0) / 1e9, (w1 - w0) / 1e9

    def status(self, field):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # MB
        raise RuntimeError(field)

    def close(self):
        self.p.stdin.close()
        self.p.wait()


class Backend:
    """A server's measured backend, replaced by a new one every ROTATE
    rounds, after its server restarts: one server's and one process's luck
    (the address layout every backend inherits from the postmaster, the
    pages its library landed in, the CPU caches a process got) then becomes
    part of the rounds' noise instead of a bias of the run. Without the
    restarts two builds of the same code differed by up to 2.8 % in backend
    CPU per call, and by 2.2 points in the statistics overhead, with a
    95 % CI that excluded 0."""

    def __init__(self, server):
        self.server = server
        self.s = Session(server)

    def reopen(self):
        self.s = Session(self.server)

    def close(self):
        self.s.close()


class Server:
    def __init__(self, build, preloaded, host, port, datadir=None, bindir=None):
        self.build, self.preloaded = build, preloaded
        self.datadir, self.bindir = datadir, bindir
        self.name = f"{build}/{'preloaded' if preloaded else 'not preloaded'}"
        self.env = {**os.environ, "PGHOST": host, "PGPORT": str(port), "PGUSER": "postgres"}
        self.conninfo = {"host": host, "port": port, "user": "postgres", "dbname": DB}

    def psql(self, sql, db=DB):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql], check=True,
                       env={**self.env, "PGOPTIONS": "-c client_min_messages=warning"})

    def restart(self):
        """pg_ctl restart, with the options it was started with and the clean
        AWS environment services.sh starts it in."""
        if not self.datadir:
            return
        subprocess.run(["sudo", "-u", "postgres", "env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
                        "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/nonexistent",
                        "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", f"{self.bindir}/pg_ctl", "-D", self.datadir,
                        "-l", os.path.join(os.path.dirname(self.datadir), "postgres.log"),
                        "-m", "fast", "-w", "restart"], check=True, stdout=subprocess.DEVNULL)

    def connect(self):
        import psycopg
        conn = psycopg.connect(**self.conninfo, autocommit=True)
        if PLACE is not None:
            pin(conn.info.backend_pid, PLACE["caller"])
        return conn


def servers_from_env():
    spec = json.loads(os.environ["BENCH_SERVERS"])
    return {build: {kind == "on": Server(build, kind == "on", *where) for kind, where in pair.items()}
            for build, pair in spec.items()}


BASE_SETUP = [
    "CREATE EXTENSION lambda_fdw",
    # max_concurrency: since 0.6.0 the queue worker sends at most that many
    # calls of one function at once (tables set their own for scans).
    f"CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-west-2', endpoint_url '{STUB}', "
    f"max_attempts '1', max_concurrency '{QUEUE_CONCURRENCY}')",
    "CREATE USER MAPPING FOR CURRENT_USER SERVER stub OPTIONS (aws_access_key_id 'AKIDBENCH', aws_secret_access_key 'bench-secret')",
]
TABLES = [
    "CREATE FOREIGN TABLE echo (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'echo')",
    f"CREATE FOREIGN TABLE delayed (payload jsonb, response jsonb) SERVER stub "
    f"OPTIONS (function_name 'slow-headers', max_concurrency '{FANOUT_CONCURRENCY}')",
    f"CREATE FOREIGN TABLE delayed_data (payload jsonb, response jsonb) SERVER stub "
    f"OPTIONS (function_name 'slow-headers', max_concurrency '{DATA_CONCURRENCY}')",
    f"CREATE TABLE fan_docs AS SELECT jsonb_build_object('ms', {DATA_DELAY_MS}, 'i', i) AS doc "
    f"FROM generate_series(1, {DATA_ROWS}) i",
]
# Only in one-build runs: an OLD build may predate batching.
BATCH_TABLES = [
    f"CREATE FOREIGN TABLE queue_batched (payload jsonb) SERVER stub "
    f"OPTIONS (function_name '{QUEUE_BATCH_FUNCTION}', batch_size '{QUEUE_BATCH_SIZE}')",
    f"CREATE FOREIGN TABLE batched (payload jsonb, response jsonb) SERVER stub "
    f"OPTIONS (function_name 'batch-lambda_fdw-{BATCH_DELAY_MS}ms', batch_size '{BATCH_SIZE}', "
    f"max_concurrency '{BATCH_CONCURRENCY}')",
    f"CREATE TABLE batch_docs AS SELECT jsonb_build_object('i', i) AS doc FROM generate_series(1, {BATCH_ROWS}) i",
]
# Only in one-build runs: an OLD build may predate callbacks (0.6.0).
CALLBACK_SETUP = [
    "CREATE FUNCTION public.bench_done(i lambda_fdw.invocations) RETURNS void LANGUAGE plpgsql AS $$BEGIN END$$",
]
PLPYTHON = [
    "CREATE EXTENSION plpython3u",
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


def setup(server, statements):
    server.psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres")
    server.psql(f"CREATE DATABASE {DB}", db="postgres")
    for sql in statements:
        server.psql(sql)


def call_settings(session):
    """The settings of lambda_fdw and aws_lambda a call reads (the library
    loaded first)."""
    rows = session.run("SELECT name || '=' || setting FROM pg_settings "
                       "WHERE name LIKE 'aws\\_lambda.%' OR name LIKE 'lambda\\_fdw.%' ORDER BY 1;")
    return dict(r.split("=", 1) for r in rows)


def check_same_settings(sessions):
    seen = {s.server.name: call_settings(s) for s in sessions}
    names = set.intersection(*(set(v) for v in seen.values())) - NOT_A_CALL_SETTING
    first = next(iter(seen))
    for name in sorted(names):
        values = {srv: v[name] for srv, v in seen.items()}
        if len(set(values.values())) > 1:
            fail(f"servers differ in setting {name}: {values}")
    for srv, v in seen.items():
        extra = sorted(set(v) - names - NOT_A_CALL_SETTING)
        if extra:
            print(f"note: only {srv} has {', '.join(extra)} (defined by the preload)", file=sys.stderr)
    return len(names), first


# --- the stub -----------------------------------------------------------------

def stub_calls(of, key):
    """Calls the stub has seen for (function, key), and how long ago the last
    one arrived, asked over HTTP directly (the stub checks no signature)."""
    body = json.dumps({"of": of, "key": key}).encode()
    req = urllib.request.Request(f"{STUB}/2015-03-31/functions/calls/invocations", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        out = json.loads(resp.read())
    return out["calls"], out["last_ms_ago"]


# --- kinds of calls measured in rounds -----------------------------------------

def invoke_loop(n):
    return (f"SELECT count(*) FROM generate_series(1, {n}) i, "
            f"LATERAL aws_lambda.invoke('echo', json_build_object('i', i), 'us-west-2') r "
            f"WHERE r.status_code = 200;")


def echo_block(n):
    """n calls of aws_lambda.invoke('echo'), the raw SDK program's call;
    counts the answers that echo their request."""
    return (f"SELECT count(*) FROM generate_series(1, {n}) i, "
            f"LATERAL aws_lambda.invoke('echo', json_build_object('i', i), 'us-west-2') r "
            f"WHERE r.status_code = 200 AND r.payload::text = json_build_object('i', i)::text;")


def counted_block(n, key):
    """n calls to the stub's counted-echo under `key`; the row says how many
    echoed their request and what the calls returned besides."""
    return (f"SELECT count(*) || ' ' || count(*) FILTER (WHERE r.payload::text = "
            f"json_build_object('i', i, 'key', '{key}')::text) || ' ' || string_agg(DISTINCT "
            f"concat_ws('/', r.status_code, r.executed_version, r.log_result), ',') "
            f"FROM generate_series(1, {n}) i, "
            f"LATERAL aws_lambda.invoke('counted-echo', json_build_object('i', i, 'key', '{key}'), 'us-west-2') r;")


class Kind:
    """One kind of call measured in the rounds: wall, CPU and CPU-wait per
    call of each block."""

    def __init__(self, name, label):
        self.name, self.label = name, label
        self.wall, self.cpu, self.wait = [], [], []

    b = None  # the Backend measured, if any

    @property
    def s(self):
        return self.b.s

    def pids(self):
        return [self.b.s.pid] if self.b is not None else []

    def drop_last(self):
        for xs in (self.wall, self.cpu, self.wait):
            xs.pop()

    def add(self, secs, cpu, wait, n):
        self.wall.append(secs * 1e6 / n)
        self.cpu.append(None if cpu is None else cpu * 1e6 / n)
        self.wait.append(None if wait is None else wait * 1e6 / n)


class EchoInvoke(Kind):
    def __init__(self, backend):
        super().__init__(f"invoke[{backend.server.build}]",
                         f"aws_lambda.invoke ({backend.server.name})")
        self.b = backend

    def block(self, r, n):
        secs, out, cpu, wait = self.s.timed_sched(echo_block(n))
        if out != [str(n)]:
            fail(f"{self.label}: {out} of {n} calls echoed their request")
        self.add(secs, cpu, wait, n)


class Counted(Kind):
    """aws_lambda.invoke on a server, counted by the stub: the statistics
    comparison's two sides (preloaded, not preloaded)."""
    results = {}

    def __init__(self, backend):
        srv = backend.server
        super().__init__(f"counted[{srv.build},{'on' if srv.preloaded else 'off'}]",
                         f"aws_lambda.invoke, counted by the stub ({srv.name})")
        self.b = backend
        # Keys of one length on every server: the same bytes sent.
        self.prefix = srv.build[0] + ("p" if srv.preloaded else "n")

    def block(self, r, n):
        key = f"{self.prefix}{r:05d}"
        secs, out, cpu, wait = self.s.timed_sched(counted_block(n, key))
        calls, _ = stub_calls("counted-echo", key)
        if calls != n:
            fail(f"{self.label}: the stub saw {calls} calls for {n} sent")
        got = out[0].split(" ", 2) if out else out
        if len(got) != 3 or got[0] != str(n) or got[1] != str(n):
            fail(f"{self.label}: {out}: not every call echoed its request")
        first = Counted.results.setdefault("row", (got[2], self.s.server.name))
        if got[2] != first[0]:
            fail(f"servers answered differently: {self.s.server.name} {got[2]!r}, {first[1]} {first[0]!r}")
        self.add(secs, cpu, wait, n)


class Sdk(Kind):
    """The raw SDK program (target/release/bench_sdk): the physical floor of
    an aws_lambda.invoke('echo') call. Its CPU per call is the process's
    CPU time less that of a run with no measured calls (its start-up and
    50 warm-up calls)."""

    def __init__(self):
        super().__init__("sdk", "aws-sdk-lambda from Rust (raw SDK program)")
        self.fixed = statistics.median(self.run(0)[1] for _ in range(5))

    @staticmethod
    def run(n):
        p = subprocess.Popen([SDK_BIN, STUB, str(n)], stdout=subprocess.PIPE, text=True,
                             preexec_fn=pin_caller_here)
        out = p.stdout.read()
        _, status, use = os.wait4(p.pid, 0)
        if status != 0 or not out.startswith("sdk_per_call_us "):
            fail(f"the SDK program failed ({status}): {out}")
        return float(out.split()[1]), use.ru_utime + use.ru_stime

    def block(self, r, n):
        per_call_us, cpu = self.run(n)
        self.wall.append(per_call_us)
        self.cpu.append(max(cpu - self.fixed, 0.0) * 1e6 / n)
        self.wait.append(None)


class FdwQuery(Kind):
    def __init__(self, backend):
        super().__init__("fdw", "foreign table, one payload a query")
        self.b = backend

    def block(self, r, n):
        q = "\n".join(f"SELECT count(*) FROM echo WHERE payload = '{{\"i\": {i}}}';" for i in range(n))
        secs, out, cpu, wait = self.s.timed_sched(q)
        if out != ["1"] * n:
            fail(f"{self.label}: {out[:3]}")
        self.add(secs, cpu, wait, n)


class Plpython(Kind):
    def __init__(self, backend):
        super().__init__("plpython", "plpython3u + boto3")
        self.b = backend

    def block(self, r, n):
        n = max(n // 2, 1)  # ~5 x slower a call: half as many
        q = (f"SELECT count(*) FROM generate_series(1, {n}) i, "
             f"LATERAL py_invoke(json_build_object('i', i)::text) r WHERE r::json->>'i' = i::text;")
        secs, out, cpu, wait = self.s.timed_sched(q)
        if out != [str(n)]:
            fail(f"{self.label}: {out}")
        self.add(secs, cpu, wait, n)


def rounds(kinds, rounds=ROUNDS, n=BLOCK):
    """Each round runs one block of every kind, in an order rotated from
    round to round and reversed every other one. Every ROTATE rounds the
    servers restart and each measured backend is a new one; each backend's
    first block of every kind only warms up (not counted; its calls have
    their own keys)."""
    backends = list({id(k.b): k.b for k in kinds if k.b is not None}.values())
    warm_ups = 0

    def warm_up():
        nonlocal warm_ups
        warm_ups += 1
        for k in kinds:
            place_block(k)
            k.block(-warm_ups, n)
            k.drop_last()

    warm_up()
    for r in range(rounds):
        if r and ROTATE and r % ROTATE == 0:
            for b in backends:
                b.s.close()
            for srv in {id(b.server): b.server for b in backends}.values():
                srv.restart()
            for b in backends:
                b.reopen()
            warm_up()
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
        if r % 2:
            order.reverse()
        for k in order:
            place_block(k)
            k.block(r, n)


# --- statistics over rounds ----------------------------------------------------

def med(xs):
    return statistics.median(xs)


def median_ci(xs, level=0.95):
    """A distribution-free confidence interval of the median: the k-th
    smallest and k-th largest values, k the largest with
    P(Binomial(n, 1/2) <= k - 1) <= (1 - level) / 2 (the sign test's); the
    whole range when there are too few values for that."""
    s = sorted(xs)
    n = len(s)
    k, below = 0, 0.0  # below = P(B <= k - 1)
    while k < n and below + math.comb(n, k) / 2 ** n <= (1 - level) / 2:
        below += math.comb(n, k) / 2 ** n
        k += 1
    k = max(k, 1)
    return s[k - 1], s[n - k]


def paired(a, b, op):
    return [op(x, y) for x, y in zip(a, b) if x is not None and y is not None]


class Refusals:
    """Figures not printed: their calls beat the raw SDK doing the same call."""

    def __init__(self):
        self.lines = []
        self.names = set()

    def floor(self, figure, sides, sdk):
        """True when every side is at or above the floor, in wall time (the
        median of the paired per-round ratios) and in CPU time."""
        ok = True
        for role, kind in sides:
            ratio = med(paired(kind.wall, sdk.wall, lambda x, y: x / y))
            cpu = [c for c in kind.cpu if c is not None]
            sdk_cpu = med(sdk.cpu)
            slow_cpu = cpu and med(cpu) < sdk_cpu
            if ratio < 1.0 or slow_cpu:
                ok = False
                what = (f"{med(kind.wall):.1f} us a call (backend CPU {med(cpu):.1f} us)" if cpu
                        else f"{med(kind.wall):.1f} us a call")
                self.lines.append(
                    f"REFUSED {figure}: its {role}, {kind.label}, took {what}, faster than its physical "
                    f"floor, the raw SDK doing the same call ({med(sdk.wall):.1f} us, CPU {sdk_cpu:.1f} us; "
                    f"paired ratio {ratio:.2f} over {len(sdk.wall)} rounds): the two sides did not do the "
                    f"same work, so there is no figure")
        if not ok:
            self.names.add(figure)
        return ok

    def bound(self, figure, value, ideal, better_than_ideal):
        """True unless `value` beats its ideal (an impossible figure)."""
        if better_than_ideal(value, ideal):
            self.names.add(figure)
            self.lines.append(f"REFUSED {figure}: {value:.3f} beats its physical bound {ideal:.3f}")
            return False
        return True


def stats_figures(on, off):
    """What counting costs a call: the paired per-round difference in
    backend CPU per call between the preloaded server (every call counted)
    and its not-preloaded twin (nothing counted), as a share of a call's
    wall time without counting."""
    added = paired(on.cpu, off.cpu, lambda a, b: a - b)
    call_us = med(off.wall)
    pct = [a / call_us * 100 for a in added]
    return {"stats_on_per_call_us": med(on.wall), "stats_off_per_call_us": call_us,
            "stats_on_cpu_per_call_us": med(on.cpu), "stats_off_cpu_per_call_us": med(off.cpu),
            "stats_on_cpu_wait_per_call_us": med(on.wait), "stats_off_cpu_wait_per_call_us": med(off.wait),
            "stats_added_cpu_per_call_us": med(added), "stats_overhead_pct": med(pct),
            "_stats_pct_rounds": pct}


# --- one build: the whole table ------------------------------------------------

def main_one(new_on, new_off):
    setup(new_on, BASE_SETUP + TABLES + BATCH_TABLES + CALLBACK_SETUP + PLPYTHON)
    setup(new_off, BASE_SETUP)
    results = {}
    s, off = Backend(new_on), Backend(new_off)

    # 1. Sequential calls, in alternating rounds: aws_lambda.invoke, the raw
    # SDK program, a foreign table, plpython3u + boto3, and the statistics'
    # two sides (counted by the stub).
    invoke = EchoInvoke(s)
    sdk = Sdk()
    on_k, off_k = Counted(s), Counted(off)
    fdw, py = FdwQuery(s), Plpython(s)
    rounds([invoke, sdk, fdw, py, on_k, off_k])
    check_same_settings([s.s, off.s])
    refused = Refusals()
    results["per_call_us"] = med(invoke.wall)
    results["per_call_cpu_us"] = med(invoke.cpu)
    results["sdk_per_call_us"] = med(sdk.wall)
    results["sdk_cpu_per_call_us"] = med(sdk.cpu)
    results["fdw_per_query_us"] = med(fdw.wall)
    results["plpython_per_call_us"] = med(py.wall)
    ratios = paired(invoke.wall, sdk.wall, lambda a, b: a / b)
    results["per_call_vs_sdk"] = med(ratios)
    results["per_call_vs_sdk_ci"] = median_ci(ratios)
    results["per_call_minus_sdk_us"] = med(paired(invoke.wall, sdk.wall, lambda a, b: a - b))
    results["plpython_vs_per_call"] = med(paired(py.wall, invoke.wall, lambda a, b: a / b))
    if not refused.floor("invoke / SDK", [("subject", invoke)], sdk):
        refused.names.add("aws_lambda.invoke, per call")
    results.update(stats_figures(on_k, off_k))
    refused.floor("statistics overhead", [("baseline", off_k), ("subject", on_k)], sdk)
    s.close()
    off.close()

    # 2. Fan-out: 200 payloads, 20 ms each, 20 at a time.
    s = Session(new_on)
    payloads = ", ".join(f"'{{\"ms\": {FANOUT_DELAY_MS}, \"i\": {i}}}'" for i in range(FANOUT_PAYLOADS))
    fan = f"SELECT count(*) FROM delayed WHERE payload IN ({payloads});"
    results.update(fan_out(s, "fanout", fan, FANOUT_PAYLOADS, FANOUT_CONCURRENCY, FANOUT_DELAY_MS, 5))

    # 2b. Fan-out over a table's rows: payload = ANY(ARRAY(SELECT ...)).
    data = "SELECT count(*) FROM delayed_data WHERE payload = ANY(ARRAY(SELECT doc FROM fan_docs));"
    results.update(fan_out(s, "data_fanout", data, DATA_ROWS, DATA_CONCURRENCY, DATA_DELAY_MS, 3))
    s.close()
    for name, ideal_key in (("fanout", "fanout_ideal_ms"), ("data_fanout", "data_fanout_ideal_ms")):
        refused.bound(f"{name} efficiency", results[f"{name}_ms"], results[ideal_key], lambda v, i: v < i)

    # ... and its peak memory above the idle backend.
    d = Session(new_on)
    d.run("SELECT count(*) FROM delayed_data WHERE payload = '{\"ms\": 0}';")
    idle = d.status("VmRSS")
    with open(f"/proc/{d.pid}/clear_refs", "w") as f:
        f.write("5")
    assert d.run(data) == [str(DATA_ROWS)]
    results["data_fanout_peak_rss_mb"] = d.status("VmHWM") - idle
    d.close()

    # 2c. The same over batches: 100,000 rows, BATCH_SIZE a call.
    results.update(batched_fan_out(new_on))
    results["batch_speedup"] = results["batch_rows_per_s"] / (DATA_ROWS / (results["data_fanout_ms"] / 1000.0))
    refused.bound("batch efficiency", results["batch_ms"], results["batch_ideal_ms"], lambda v, i: v < i)

    # 3. Prepared statements from an application (psycopg 3, server-side
    # prepared, round trips included): a one-payload foreign-table query and
    # an aws_lambda.invoke call, N executions each.
    results.update(prepared(new_on))

    # 4. Memory: a fresh backend; RSS after 100 and after 1,100 calls.
    m = Session(new_on)
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
    new_on.psql(f"CREATE TABLE big AS SELECT ('{{\"k\": \"' || repeat('x', {chars}) || '\"}}')::json AS doc")
    p = Session(new_on)
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
    results["queue_throughput_per_s"] = queue_throughput(new_on, "q")
    results["queue_ideal_per_s"] = QUEUE_CONCURRENCY * 1000.0 / QUEUE_DELAY_MS
    results["queue_efficiency"] = results["queue_throughput_per_s"] / results["queue_ideal_per_s"]
    refused.bound("queue efficiency", results["queue_efficiency"], 1.0, lambda v, i: v > i)
    results["queue_commit_to_send_ms"] = commit_to_send(new_on)

    # 5b. The queue's batched sends.
    rows_per_s, cpu_us = queue_batch(new_on)
    results["queue_batch_rows_per_s"] = rows_per_s
    results["queue_batch_worker_cpu_us_per_row"] = cpu_us
    results["queue_batch_ideal_rows_per_s"] = QUEUE_CONCURRENCY * QUEUE_BATCH_SIZE * 1000.0 / QUEUE_BATCH_DELAY_MS
    refused.bound("queue batch throughput", rows_per_s, results["queue_batch_ideal_rows_per_s"],
                  lambda v, i: v > i)

    # 5c. Completion callbacks.
    pct, plain, called = queue_callback_overhead(new_on)
    results["queue_callback_overhead_pct"] = pct
    results["queue_callback_plain_per_s"] = plain
    results["queue_callback_per_s"] = called

    # 5d. The queue in several databases at once.
    multi, single = queue_multi_db(new_on)
    results["queue_multi_db_per_s"] = multi
    results["queue_single_db_per_s"] = single
    results["queue_multi_db_ideal_per_s"] = QUEUE_DBS * QUEUE_CONCURRENCY * 1000.0 / QUEUE_DELAY_MS
    refused.bound("queue multi-database throughput", multi, results["queue_multi_db_ideal_per_s"],
                  lambda v, i: v > i)

    # 6. Throttling: requests sent while a function is held after a 429.
    results.update(throttle_figure(new_on))

    report_one(results, refused)
    return 3 if refused.names else 0


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


def batched_fan_out(server, runs=5):
    """A batched fan-out of BATCH_ROWS rows: median wall time and backend CPU
    per row over `runs` runs (each checked: every row answered, with its own
    payload, and the stub counting exactly one call per batch), and the
    backend's peak RSS above idle in a fresh session."""
    sql = ("SELECT count(*), count(*) FILTER (WHERE response = payload) FROM batched "
           "WHERE payload = ANY(ARRAY(SELECT doc FROM batch_docs));")
    want = [f"{BATCH_ROWS}|{BATCH_ROWS}"]
    calls = -(-BATCH_ROWS // BATCH_SIZE)
    name = f"batch-lambda_fdw-{BATCH_DELAY_MS}ms"
    s = Session(server)
    assert s.run(sql) == want
    times, cpus = [], []
    for _ in range(runs):
        before, _ = stub_calls(name, "batch")
        secs, out, cpu, _wait = s.timed_sched(sql)
        after, _ = stub_calls(name, "batch")
        assert out == want, out
        if after - before != calls:
            fail(f"the batched fan-out sent {after - before} calls, not {calls}")
        times.append(secs)
        cpus.append(cpu)
    s.close()
    d = Session(server)
    d.run("SELECT count(*) FROM batched WHERE payload = '1';")
    idle = d.status("VmRSS")
    with open(f"/proc/{d.pid}/clear_refs", "w") as f:
        f.write("5")
    assert d.run(sql) == want
    peak = d.status("VmHWM") - idle
    d.close()
    median = statistics.median(times)
    ideal = calls / BATCH_CONCURRENCY * BATCH_DELAY_MS / 1000.0
    return {"batch_ms": median * 1000, "batch_ideal_ms": ideal * 1000,
            "batch_rows_per_s": BATCH_ROWS / median,
            "batch_ideal_rows_per_s": BATCH_ROWS / ideal,
            "batch_cpu_us_per_row": statistics.median(cpus) * 1e6 / BATCH_ROWS,
            "batch_peak_rss_mb": peak}


def prepared(server, rounds_=10):
    """Per-call time of prepared statements from an application: psycopg 3,
    server-side prepared, round trips included. The two statements run in
    alternating rounds of N / rounds executions, so that drift in the
    machine's speed hits both alike; the figures are the medians of the rounds."""
    from psycopg.types.json import Json, Jsonb
    statements = {
        "fdw_prepared_per_call_us": ("SELECT response FROM echo WHERE payload = %s", Jsonb),
        "invoke_prepared_per_call_us":
            ("SELECT payload FROM aws_lambda.invoke('echo', %s::json, 'us-west-2')", Json),
    }
    per_round = {k: [] for k in statements}
    n = max(N // rounds_, 1)
    with server.connect() as conn:
        for sql, wrap in statements.values():
            for i in range(200):
                conn.execute(sql, [wrap({"i": i})], prepare=True).fetchone()
        for r in range(rounds_):
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
    out["fdw_vs_invoke_prepared"] = statistics.median(
        paired(per_round["fdw_prepared_per_call_us"], per_round["invoke_prepared_per_call_us"], lambda a, b: a / b))
    return out


def wait_for_worker(conn, server):
    deadline = time.time() + 30
    while conn.execute("SELECT count(*) FROM pg_stat_activity "
                       "WHERE backend_type = 'lambda_fdw queue worker'").fetchone()[0] == 0:
        if time.time() > deadline:
            fail(f"the queue worker of {server.name} did not start (is lambda_fdw preloaded?)")
        time.sleep(0.1)


def prepare_queue(server):
    server.psql(f"ALTER SYSTEM SET lambda_fdw.queue_concurrency = {QUEUE_CONCURRENCY}")
    server.psql("SELECT pg_reload_conf()")
    with server.connect() as conn:
        wait_for_worker(conn, server)
    time.sleep(1.5)  # the worker reads the new queue_concurrency at its next loop


def queue_throughput(server, label, on_complete=None, rows=QUEUE_ROWS):
    """One round of the after-commit queue's throughput: one transaction's
    `rows` invocations (each answered after 20 ms, 50 at a time; with
    `on_complete`, each calling that function when it finishes), timed from
    COMMIT until all have succeeded, in rows per second. The queue table is
    emptied first, so every round starts alike."""
    if not getattr(server, "queue_ready", False):
        prepare_queue(server)
        server.queue_ready = True
    with server.connect() as conn:
        def scalar(sql, args=None):
            return conn.execute(sql, args).fetchone()[0]
        conn.execute("TRUNCATE lambda_fdw.invocations")
        callback = ", on_complete => %s::regproc" if on_complete else ""
        with conn.transaction():
            conn.execute("SELECT count(lambda_fdw.enqueue('sleep-echo', jsonb_build_object('ms', %s, 'key', %s || i), "
                         f"'us-west-2'{callback})) FROM generate_series(1, %s) i",
                         [QUEUE_DELAY_MS, label] + ([on_complete] if on_complete else []) + [rows])
        t0 = time.perf_counter()
        while scalar("SELECT count(*) FROM lambda_fdw.invocations WHERE state = 'succeeded'") < rows:
            if time.perf_counter() - t0 > 120:
                bad = scalar("SELECT string_agg(DISTINCT state, ',') FROM lambda_fdw.invocations")
                fail(f"the queue of {server.name} did not drain ({bad})")
            time.sleep(0.025)  # each look scans the queue: not too often
        secs = time.perf_counter() - t0
        if scalar("SELECT count(*) FROM lambda_fdw.invocations") != rows:
            fail(f"the queue of {server.name} holds other rows")
        if on_complete and scalar("SELECT count(*) FROM lambda_fdw.invocations WHERE callback_error IS NOT NULL"):
            fail(f"callbacks of {server.name} failed: " + scalar(
                "SELECT min(callback_error) FROM lambda_fdw.invocations"))
    return rows / secs


def queue_callback_overhead(server):
    """Completion callbacks' cost: CALLBACK_ROUNDS paired rounds of
    QUEUE_ROWS rows without, then with, a trivial on_complete; the median of
    the rounds' time with over time without, as a percentage added."""
    pcts, plain, called = [], [], []
    for r in range(CALLBACK_ROUNDS):
        a = queue_throughput(server, f"cb-off-{r}-")
        b = queue_throughput(server, f"cb-on-{r}-", on_complete="public.bench_done")
        plain.append(a)
        called.append(b)
        pcts.append((a / b - 1) * 100)
    return med(pcts), med(plain), med(called)


def queue_multi_db(server):
    """The queue in QUEUE_DBS databases at once, each with its own worker:
    each database's QUEUE_DB_ROWS invocations committed together, timed from
    the commits until every database's have succeeded, in total rows per
    second; and one database alone, the same way, in the same run."""
    import psycopg
    names = [f"{DB}_q{n}" for n in range(1, QUEUE_DBS + 1)]
    # The bench's own database has a worker too.
    server.psql(f"ALTER SYSTEM SET lambda_fdw.max_queue_workers = {QUEUE_DBS + 1}")
    server.psql("SELECT pg_reload_conf()")
    for name in names:
        server.psql(f"DROP DATABASE IF EXISTS {name}", db="postgres")
        server.psql(f"CREATE DATABASE {name}", db="postgres")
        for sql in BASE_SETUP:
            server.psql(sql, db=name)
    conns = [psycopg.connect(**{**server.conninfo, "dbname": n}, autocommit=True) for n in names]
    deadline = time.time() + 30
    while conns[0].execute("SELECT count(DISTINCT datname) FROM pg_stat_activity "
                           "WHERE backend_type = 'lambda_fdw queue worker' AND datname = ANY(%s)",
                           [names]).fetchone()[0] < QUEUE_DBS:
        if time.time() > deadline:
            fail(f"{QUEUE_DBS} databases did not all get a queue worker (lambda_fdw.max_queue_workers?)")
        time.sleep(0.1)

    def run(some):
        for c in some:
            c.execute("BEGIN")
            c.execute("SELECT count(lambda_fdw.enqueue('sleep-echo', jsonb_build_object('ms', %s, 'i', i), "
                      "'us-west-2')) FROM generate_series(1, %s) i", [QUEUE_DELAY_MS, QUEUE_DB_ROWS])
        for c in some:
            c.execute("COMMIT")
        t0 = time.perf_counter()
        waiting = list(some)
        while waiting:
            if time.perf_counter() - t0 > 120:
                fail("the queues of several databases did not drain")
            waiting = [c for c in waiting if c.execute(
                "SELECT count(*) FROM lambda_fdw.invocations WHERE state = 'succeeded'").fetchone()[0] < QUEUE_DB_ROWS]
            time.sleep(0.025)
        secs = time.perf_counter() - t0
        for c in some:
            c.execute("TRUNCATE lambda_fdw.invocations")
        return len(some) * QUEUE_DB_ROWS / secs

    single = run(conns[:1])
    multi = run(conns)
    for c in conns:
        c.close()
    for name in names:
        server.psql(f"DROP DATABASE {name} WITH (FORCE)", db="postgres")
    return multi, single


def process_cpu_s(pid):
    """User and system CPU time of process `pid`, all its threads, in seconds
    (/proc/<pid>/stat: utime and stime, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def queue_batch(server):
    """The queue's batched sends: QUEUE_BATCH_ROWS rows INSERTed in one
    transaction through a foreign table with batch_size QUEUE_BATCH_SIZE,
    timed from COMMIT until all have succeeded, in rows per second; and the
    queue worker's CPU time (all its threads, from /proc) per row. Every row
    must echo its payload, in QUEUE_BATCH_ROWS / QUEUE_BATCH_SIZE requests."""
    if not getattr(server, "queue_ready", False):
        prepare_queue(server)
        server.queue_ready = True
    with server.connect() as conn:
        def scalar(sql, args=None):
            return conn.execute(sql, args).fetchone()[0]
        conn.execute("TRUNCATE lambda_fdw.invocations")
        pid = scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'lambda_fdw queue worker'")
        calls_before = stub_calls(QUEUE_BATCH_FUNCTION, "batch")[0]
        cpu0 = process_cpu_s(pid)
        with conn.transaction():
            conn.execute("INSERT INTO queue_batched (payload) SELECT jsonb_build_object('i', i) "
                         "FROM generate_series(1, %s) i", [QUEUE_BATCH_ROWS])
        t0 = time.perf_counter()
        while scalar("SELECT count(*) FROM lambda_fdw.invocations WHERE state = 'succeeded'") < QUEUE_BATCH_ROWS:
            if time.perf_counter() - t0 > 120:
                bad = scalar("SELECT string_agg(DISTINCT state, ',') FROM lambda_fdw.invocations")
                fail(f"the batched queue of {server.name} did not drain ({bad})")
            time.sleep(0.05)  # each look scans the queue: not too often
        secs = time.perf_counter() - t0
        cpu = process_cpu_s(pid) - cpu0
        if scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'lambda_fdw queue worker'") != pid:
            fail("the queue worker restarted during the batched queue's run")
        echoed = scalar("SELECT count(*) FROM lambda_fdw.invocations WHERE response = payload")
        if echoed != QUEUE_BATCH_ROWS:
            fail(f"{echoed} of {QUEUE_BATCH_ROWS} batched rows echo their payload")
        calls = stub_calls(QUEUE_BATCH_FUNCTION, "batch")[0] - calls_before
        if calls != QUEUE_BATCH_ROWS // QUEUE_BATCH_SIZE:
            fail(f"{QUEUE_BATCH_ROWS} batched rows went in {calls} requests, "
                 f"not {QUEUE_BATCH_ROWS // QUEUE_BATCH_SIZE}")
        conn.execute("TRUNCATE lambda_fdw.invocations")
    return QUEUE_BATCH_ROWS / secs, cpu * 1e6 / QUEUE_BATCH_ROWS


def commit_to_send(server):
    """The median time from COMMIT returning to the stub receiving a single
    queued invocation (the stub says how long ago it arrived)."""
    waits = []
    with server.connect() as conn:
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
                    fail("a queued invocation was not sent within 5 s")
                time.sleep(0.001)
    return statistics.median(waits)


def throttle_figure(server):
    """`throttle_wasted_requests`: the requests the stub saw during its 1 s
    Retry-After window when 8 backends fan out at once to a function it
    throttles (tests/scripts/throttle.py's scan part; target <= 2 x the
    backends), and the number of backends."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "scripts", "throttle.py")
    out = subprocess.run([sys.executable, script, "--scans-only"], env=server.env,
                         capture_output=True, text=True)
    m = re.search(r"throttle_wasted_requests=(\d+) backends=(\d+)", out.stdout)
    if out.returncode != 0 or not m:
        fail(f"the throttle test failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")
    return {"throttle_wasted_requests": int(m.group(1)), "throttle_backends": int(m.group(2))}


def fmt_or_refused(refused, figure, text):
    return "REFUSED (see below)" if figure in refused.names else text


def report_one(r, refused):
    ci = r["per_call_vs_sdk_ci"]
    rounds_note = f"{ROUNDS} rounds x {BLOCK}"
    targets = [
        ("aws_lambda.invoke, per call",
         fmt_or_refused(refused, "aws_lambda.invoke, per call", f"{r['per_call_us']:.1f} us"), ""),
        ("  backend CPU per call", f"{r['per_call_cpu_us']:.1f} us", ""),
        ("foreign table, per query (one payload)", f"{r['fdw_per_query_us']:.1f} us", ""),
        ("aws-sdk-lambda from Rust, per call", f"{r['sdk_per_call_us']:.1f} us", ""),
        ("  its CPU per call", f"{r['sdk_cpu_per_call_us']:.1f} us", ""),
        ("plpython3u + boto3, per call", f"{r['plpython_per_call_us']:.1f} us", ""),
        ("invoke / SDK (paired median, 95% CI)",
         fmt_or_refused(refused, "invoke / SDK", f"{r['per_call_vs_sdk']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"), "<= 1.3"),
        ("invoke - SDK, per call", f"{r['per_call_minus_sdk_us']:+.1f} us", ""),
        ("plpython / invoke", f"{r['plpython_vs_per_call']:.1f}", ">= 5"),
        (f"fan-out {FANOUT_PAYLOADS} x {FANOUT_DELAY_MS} ms at {FANOUT_CONCURRENCY}",
         f"{r['fanout_ms']:.0f} ms (ideal {r['fanout_ideal_ms']:.0f})", ""),
        ("fan-out efficiency", fmt_or_refused(refused, "fanout efficiency", f"{r['fanout_efficiency']:.2f}"), ">= 0.85"),
        (f"fan-out over {DATA_ROWS} rows x {DATA_DELAY_MS} ms at {DATA_CONCURRENCY}",
         f"{r['data_fanout_ms']:.0f} ms (ideal {r['data_fanout_ideal_ms']:.0f})", ""),
        ("data fan-out efficiency",
         fmt_or_refused(refused, "data_fanout efficiency", f"{r['data_fanout_efficiency']:.2f}"), ">= 0.85"),
        ("data fan-out peak RSS above idle", f"{r['data_fanout_peak_rss_mb']:.1f} MB", "< 50 MB"),
        (f"batched: {BATCH_ROWS} rows, {BATCH_SIZE} a call x {BATCH_DELAY_MS} ms at {BATCH_CONCURRENCY}",
         fmt_or_refused(refused, "batch efficiency",
                        f"{r['batch_rows_per_s']:.0f} rows/s (ideal {r['batch_ideal_rows_per_s']:.0f})"),
         ">= 100000 rows/s"),
        ("  backend CPU per row", f"{r['batch_cpu_us_per_row']:.2f} us", "<= 5 us"),
        ("  peak RSS above idle", f"{r['batch_peak_rss_mb']:.1f} MB", "<= 64 MB"),
        ("  speedup over the unbatched data fan-out", f"{r['batch_speedup']:.0f}x", ">= 40"),
        ("foreign table, prepared, per call", f"{r['fdw_prepared_per_call_us']:.1f} us", ""),
        ("aws_lambda.invoke, prepared, per call", f"{r['invoke_prepared_per_call_us']:.1f} us", ""),
        ("prepared foreign table / invoke", f"{r['fdw_vs_invoke_prepared']:.2f}", "<= 1.15"),
        ("RSS growth per 1,000 calls", f"{r['rss_growth_mb_1000_calls']:.2f} MB", "<= 5 MB"),
        (f"peak RSS above idle, {r['payload_mb']:.0f} MB payload", f"{r['peak_rss_mb_5mb_payload']:.1f} MB",
         f"<= {4 * r['payload_mb']:.0f} MB"),
        (f"queue: {QUEUE_ROWS} x {QUEUE_DELAY_MS} ms at {QUEUE_CONCURRENCY}",
         f"{r['queue_throughput_per_s']:.0f}/s (ideal {r['queue_ideal_per_s']:.0f})", ""),
        ("queue efficiency", fmt_or_refused(refused, "queue efficiency", f"{r['queue_efficiency']:.2f}"), ">= 0.8"),
        ("queue: COMMIT to request sent, median", f"{r['queue_commit_to_send_ms']:.1f} ms", "<= 20 ms"),
        (f"queue, batched: {QUEUE_BATCH_ROWS} rows, {QUEUE_BATCH_SIZE} a request",
         fmt_or_refused(refused, "queue batch throughput",
                        f"{r['queue_batch_rows_per_s']:.0f} rows/s (ideal {r['queue_batch_ideal_rows_per_s']:.0f})"),
         f">= {QUEUE_BATCH_TARGET} rows/s"),
        ("  queue worker CPU per row, batched", f"{r['queue_batch_worker_cpu_us_per_row']:.1f} us", ""),
        (f"queue with a trivial callback: {QUEUE_ROWS} rows",
         f"{r['queue_callback_per_s']:.0f}/s (without: {r['queue_callback_plain_per_s']:.0f}/s)", ""),
        ("  callback overhead (median of paired rounds)", f"{r['queue_callback_overhead_pct']:+.1f} %",
         f"<= {CALLBACK_TARGET_PCT:.0f} %"),
        (f"queue in {QUEUE_DBS} databases: {QUEUE_DB_ROWS} rows each",
         fmt_or_refused(refused, "queue multi-database throughput",
                        f"{r['queue_multi_db_per_s']:.0f}/s (ideal {r['queue_multi_db_ideal_per_s']:.0f})"), ""),
        (f"  one database: {QUEUE_DB_ROWS} rows", f"{r['queue_single_db_per_s']:.0f}/s", ""),
        ("aws_lambda.invoke, counted / not preloaded",
         f"{r['stats_on_per_call_us']:.1f} / {r['stats_off_per_call_us']:.1f} us", ""),
        ("  backend CPU per call, counted / not",
         f"{r['stats_on_cpu_per_call_us']:.1f} / {r['stats_off_cpu_per_call_us']:.1f} us", ""),
        ("  waiting for a CPU per call, counted / not",
         f"{r['stats_on_cpu_wait_per_call_us']:.1f} / {r['stats_off_cpu_wait_per_call_us']:.1f} us", ""),
        ("  CPU added by counting, per call", f"{r['stats_added_cpu_per_call_us']:+.2f} us", ""),
        ("statistics overhead, share of a call (95% CI)",
         fmt_or_refused(refused, "statistics overhead",
                        "{:+.2f} % [{:+.2f}, {:+.2f}]".format(r["stats_overhead_pct"],
                                                             *median_ci(r["_stats_pct_rounds"]))), "<= 3 %"),
    ]
    targets.append(("throttle: requests in the Retry-After window",
                    f"{r['throttle_wasted_requests']} ({r['throttle_backends']} backends)",
                    f"<= {2 * r['throttle_backends']}"))
    print(f"lambda_fdw benchmark: N = {N}, sequential calls in {rounds_note}, {platform.machine()}, "
          f"{os.cpu_count()} cores, {platform.platform()}")
    print(describe_placement())
    print(f"{'measure':46} {'value':>28}  target")
    for name, value, target in targets:
        print(f"{name:46} {value:>28}  {target}")
    for line in refused.lines:
        print(line)
    keys = ["per_call_us", "fdw_per_query_us", "sdk_per_call_us", "plpython_per_call_us",
            "fanout_efficiency", "rss_growth_mb_1000_calls", "peak_rss_mb_5mb_payload",
            "data_fanout_efficiency", "data_fanout_peak_rss_mb", "fdw_prepared_per_call_us",
            "invoke_prepared_per_call_us", "queue_throughput_per_s", "queue_commit_to_send_ms",
            "stats_overhead_pct", "per_call_cpu_us", "sdk_cpu_per_call_us", "per_call_vs_sdk",
            "stats_on_cpu_per_call_us", "stats_off_cpu_per_call_us",
            "batch_rows_per_s", "batch_cpu_us_per_row", "batch_peak_rss_mb", "batch_speedup",
            "queue_batch_rows_per_s", "queue_batch_worker_cpu_us_per_row",
            "throttle_wasted_requests", "throttle_backends"]
    refused_keys = {"aws_lambda.invoke, per call": ["per_call_us"], "invoke / SDK": ["per_call_vs_sdk"],
                    "statistics overhead": ["stats_overhead_pct"], "fanout efficiency": ["fanout_efficiency"],
                    "data_fanout efficiency": ["data_fanout_efficiency"],
                    "queue efficiency": ["queue_throughput_per_s"],
                    "batch efficiency": ["batch_rows_per_s", "batch_speedup"],
                    "queue batch throughput": ["queue_batch_rows_per_s"]}
    out = {k: round(r[k], 3) for k in keys}
    for name in refused.names:
        for k in refused_keys.get(name, []):
            out[k] = None
    if refused.names:
        out["refused"] = sorted(refused.names)
    print(json.dumps(out))


# --- OLD vs NEW -----------------------------------------------------------------

def main_compare(servers, label):
    old_on, old_off = servers["old"][True], servers["old"][False]
    new_on, new_off = servers["new"][True], servers["new"][False]
    for srv in (old_on, new_on):
        setup(srv, BASE_SETUP + TABLES)
    for srv in (old_off, new_off):
        setup(srv, BASE_SETUP)
    sess = {srv.name: Backend(srv) for srv in (old_on, old_off, new_on, new_off)}
    so, sof, sn, snf = (sess[x.name] for x in (old_on, old_off, new_on, new_off))
    refused = Refusals()
    t_start = time.perf_counter()

    # 1. Sequential calls: each build's aws_lambda.invoke('echo'), each
    # build's statistics sides (counted by the stub), and the raw SDK.
    sdk = Sdk()
    inv = {"old": EchoInvoke(so), "new": EchoInvoke(sn)}
    cnt = {"old": (Counted(so), Counted(sof)), "new": (Counted(sn), Counted(snf))}
    rounds([inv["old"], inv["new"], sdk, *cnt["old"], *cnt["new"]])
    check_same_settings([b.s for b in sess.values()])
    rows = []  # (figure, old series, new series, unit, kind of difference)

    ok_inv = refused.floor("aws_lambda.invoke per call, old vs new",
                           [("baseline", inv["old"]), ("subject", inv["new"])], sdk)
    rows.append(("aws_lambda.invoke, per call (wall)", inv["old"].wall, inv["new"].wall, "us", ok_inv))
    rows.append(("  backend CPU per call", inv["old"].cpu, inv["new"].cpu, "us", ok_inv))
    for b in ("old", "new"):
        refused.floor(f"invoke / SDK ({b})", [("subject", inv[b])], sdk)
    ratio = {b: paired(inv[b].wall, sdk.wall, lambda a, c: a / c) for b in ("old", "new")}
    rows.append(("invoke / SDK (paired per round)", ratio["old"], ratio["new"], "x",
                 "invoke / SDK (old)" not in refused.names and "invoke / SDK (new)" not in refused.names))
    ok_stats = refused.floor("statistics overhead, old vs new",
                             [("baseline", cnt["old"][1]), ("subject", cnt["old"][0]),
                              ("baseline", cnt["new"][1]), ("subject", cnt["new"][0])], sdk)
    st = {b: stats_figures(*cnt[b]) for b in ("old", "new")}
    rows.append(("statistics overhead, share of a call", st["old"]["_stats_pct_rounds"],
                 st["new"]["_stats_pct_rounds"], "%", ok_stats))
    rows.append(("  backend CPU per call, preloaded", cnt["old"][0].cpu, cnt["new"][0].cpu, "us", ok_stats))
    rows.append(("  backend CPU per call, not preloaded", cnt["old"][1].cpu, cnt["new"][1].cpu, "us", ok_stats))
    rows.append(("  wall per call, preloaded", cnt["old"][0].wall, cnt["new"][0].wall, "us", ok_stats))
    rows.append(("  wall per call, not preloaded", cnt["old"][1].wall, cnt["new"][1].wall, "us", ok_stats))
    t_calls = time.perf_counter() - t_start

    # 2. Fan-out, both kinds, in alternating rounds.
    payloads = ", ".join(f"'{{\"ms\": {FANOUT_DELAY_MS}, \"i\": {i}}}'" for i in range(FANOUT_PAYLOADS))
    fan = f"SELECT count(*) FROM delayed WHERE payload IN ({payloads});"
    data = "SELECT count(*) FROM delayed_data WHERE payload = ANY(ARRAY(SELECT doc FROM fan_docs));"
    for sql, calls, name, ideal_ms in (
            (fan, FANOUT_PAYLOADS, f"fan-out {FANOUT_PAYLOADS} x {FANOUT_DELAY_MS} ms at {FANOUT_CONCURRENCY}",
             FANOUT_PAYLOADS / FANOUT_CONCURRENCY * FANOUT_DELAY_MS),
            (data, DATA_ROWS, f"fan-out over {DATA_ROWS} rows x {DATA_DELAY_MS} ms at {DATA_CONCURRENCY}",
             DATA_ROWS / DATA_CONCURRENCY * DATA_DELAY_MS)):
        times = {"old": [], "new": []}
        for b in (so, sn):
            b.s.run(sql)
        for r in range(FANOUT_ROUNDS):
            for b, be in ((("old", so), ("new", sn)) if r % 2 == 0 else (("new", sn), ("old", so))):
                s = be.s
                secs, out = s.timed(sql)
                if out != [str(calls)]:
                    fail(f"{name} on {s.server.name}: {out}")
                times[b].append(secs * 1000)
        ok = all(refused.bound(f"{name} ({b})", med(times[b]), ideal_ms, lambda v, i: v < i) for b in times)
        rows.append((f"{name} (ideal {ideal_ms:.0f} ms)", times["old"], times["new"], "ms", ok))
    t_fan = time.perf_counter() - t_start - t_calls

    # 3. The queue's throughput, in alternating rounds.
    tput = {"old": [], "new": []}
    for r in range(QUEUE_ROUNDS):
        for b, srv in ((("old", old_on), ("new", new_on)) if r % 2 == 0 else (("new", new_on), ("old", old_on))):
            tput[b].append(queue_throughput(srv, f"{b}{r}-"))
    ideal = QUEUE_CONCURRENCY * 1000.0 / QUEUE_DELAY_MS
    ok = all(refused.bound(f"queue throughput ({b})", med(tput[b]), ideal, lambda v, i: v > i) for b in tput)
    rows.append((f"queue: {QUEUE_ROWS} x {QUEUE_DELAY_MS} ms at {QUEUE_CONCURRENCY} (ideal {ideal:.0f}/s)",
                 tput["old"], tput["new"], "/s", ok))
    t_queue = time.perf_counter() - t_start - t_calls - t_fan
    for s in sess.values():
        s.close()

    report_compare(rows, refused, label, sdk, {"calls": t_calls, "fan-out": t_fan, "queue": t_queue})
    return 3 if refused.names else 0


def report_compare(rows, refused, label, sdk, secs):
    print(f"lambda_fdw benchmark, OLD = {label} vs NEW = this tree: {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.platform()}")
    print(describe_placement())
    print(f"sequential calls: {ROUNDS} alternating rounds x {BLOCK} calls; fan-out: {FANOUT_ROUNDS} rounds; "
          f"queue: {QUEUE_ROUNDS} rounds; the raw SDK (floor): {med(sdk.wall):.1f} us a call, CPU "
          f"{med(sdk.cpu):.1f} us")
    print("difference = NEW - OLD, the median of the per-round paired differences, with its 95% CI "
          f"and the per-round min..max; 'within noise' when the CI holds 0 or the difference is under "
          f"{NOISE_PCT:g} % ({NOISE_POINTS:g} points for a share), what two builds of the same code differ by")
    head = f"{'measure':58} {'old':>10} {'new':>10} {'new - old':>11} {'95% CI':>19} {'rounds min..max':>21}"
    print(head)
    out = {}
    for name, old, new, unit, ok in rows:
        if not ok:
            print(f"{name:58} {'REFUSED (see below)':>32}")
            out[name] = None
            continue
        diffs = paired(new, old, lambda a, b: a - b)
        lo, hi = median_ci(diffs)
        d = med(diffs)
        small = abs(d) < NOISE_POINTS if unit == "%" else abs(d) < NOISE_PCT / 100 * abs(med(old))
        if lo <= 0 <= hi:
            verdict = "within noise"
        elif small:
            verdict = "within noise (A/A)"
        else:
            verdict = "HIGHER" if d > 0 else "LOWER"
        rel = f" ({d / med(old) * 100:+.1f} %)" if unit not in ("%",) and med(old) else ""
        print(f"{name:58} {med(old):>10.2f} {med(new):>10.2f} {d:>+11.2f} [{lo:>+8.2f}, {hi:>+8.2f}] "
              f"{min(diffs):>+9.2f}..{max(diffs):<+9.2f} {unit}{rel} {verdict}")
        out[name] = {"old": round(med(old), 3), "new": round(med(new), 3), "diff": round(d, 3), "verdict": verdict,
                     "ci": [round(lo, 3), round(hi, 3)], "min": round(min(diffs), 3), "max": round(max(diffs), 3)}
    for line in refused.lines:
        print(line)
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()))
    if refused.names:
        out["refused"] = sorted(refused.names)
    print(json.dumps(out))


def main():
    global PLACE
    PLACE = plan_placement()
    if PLACE is not None:
        if not STUB_PID:
            fail("BENCH_STUB_PID is needed to place the stub (or BENCH_LAYOUT=free)")
        pin(STUB_PID, PLACE["stub"])
    servers = servers_from_env()
    if os.environ.get("BENCH_ONLY") == "throttle":
        # The throttle figure alone (a few seconds).
        print(json.dumps(throttle_figure(servers["new"][True])))
        return 0
    if os.environ.get("BENCH_ONLY") == "queue":
        # The queue's figures of 0.6.0 alone (a few minutes): callbacks,
        # several databases, and the throttle.
        server = servers["new"][True]
        setup(server, BASE_SETUP + CALLBACK_SETUP)
        out = {"queue_throughput_per_s": queue_throughput(server, "q")}
        pct, plain, called = queue_callback_overhead(server)
        out.update(queue_callback_overhead_pct=pct, queue_callback_plain_per_s=plain, queue_callback_per_s=called)
        multi, single = queue_multi_db(server)
        out.update(queue_multi_db_per_s=multi, queue_single_db_per_s=single,
                   queue_multi_db_ideal_per_s=QUEUE_DBS * QUEUE_CONCURRENCY * 1000.0 / QUEUE_DELAY_MS)
        out.update(throttle_figure(server))
        print(json.dumps(out))
        return 0
    if "old" in servers:
        return main_compare(servers, os.environ.get("BENCH_BASELINE", "baseline"))
    return main_one(servers["new"][True], servers["new"][False])


if __name__ == "__main__":
    sys.exit(main())
