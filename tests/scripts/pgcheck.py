"""Query helpers shared by the scripted tests (after_commit.py, upgrade.py,
names.py), and Checks, the check-and-report of upgrade.py and names.py."""
import sys
import time

import psycopg


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
