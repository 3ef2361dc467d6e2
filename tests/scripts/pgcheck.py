"""Query helpers shared by the scripted tests (after_commit.py, upgrade.py,
names.py, multi_db.py, ...), and Checks, the check-and-report of upgrade.py
and names.py."""
import os
import sys
import time

import psycopg
from psycopg.rows import tuple_row

# Where ministack's `record` function appends what it receives, a file per key.
RECORDS = "/tmp/lambda_fdw_records"
# The suite cluster's server log.
PG_LOG = os.path.join(os.environ.get("LAMBDA_FDW_WORK", "/tmp/lambda_fdw_work"), "postgres.log")


def connect(db, retries=100):
    """An autocommit connection to database `db` giving tuples, retried while
    the server is (re)starting."""
    for _ in range(retries):
        try:
            return psycopg.connect(dbname=db, autocommit=True, row_factory=tuple_row)
        except psycopg.OperationalError:
            time.sleep(0.2)
    return psycopg.connect(dbname=db, autocommit=True, row_factory=tuple_row)


def recorded(key):
    """How many times ministack's `record` function received `key`."""
    path = os.path.join(RECORDS, key)
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


def log_count(text):
    """How many times `text` is in the server log."""
    with open(PG_LOG) as f:
        return f.read().count(text)


def wait_for(pred, timeout=30.0):
    """Whether `pred()` becomes true within `timeout` seconds (polled)."""
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def one(conn, sql, args=None):
    """The first column of the first row `sql` returns."""
    return conn.execute(sql, args).fetchone()[0]


def error_of(conn, sql, args=None):
    """(SQLSTATE, message) of the error `sql` raises, None if it does not."""
    try:
        conn.execute(sql, args)
    except psycopg.Error as e:
        return (e.sqlstate, e.diag.message_primary)
    return None


def error_parts(conn, sql, args=None):
    """(SQLSTATE, message, detail, hint) of the error `sql` raises, None if
    it does not."""
    try:
        conn.execute(sql, args)
    except psycopg.Error as e:
        d = e.diag
        return (e.sqlstate, d.message_primary, d.message_detail, d.message_hint)
    return None


def peak_rss_kb(pid):
    """The peak resident set size of process `pid` so far, in kB (VmHWM in
    /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def wait_until(conn, sql, args=None, timeout=30.0):
    """Whether `sql` returns true within `timeout` seconds (polled)."""
    end = time.time() + timeout
    while time.time() < end:
        if one(conn, sql, args):
            return True
        time.sleep(0.05)
    return False


class Checks:
    """Checks that go on after a failure: one line each, `<prefix>: <what>:
    ok` or `FAILED: got ..., want ...`; `finish` says which failed and exits
    non-zero if any did."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.failures = []

    def check(self, what, got, want):
        ok = got == want
        print(f"{self.prefix}: {what}: {'ok' if ok else f'FAILED: got {got!r}, want {want!r}'}", flush=True)
        if not ok:
            self.failures.append(what)

    def finish(self):
        if self.failures:
            print(f"{self.prefix}: {len(self.failures)} failed: {self.failures}", flush=True)
            sys.exit(1)
        print(f"{self.prefix}: all checks passed", flush=True)
