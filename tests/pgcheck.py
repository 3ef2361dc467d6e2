"""Query helpers shared by the scripted tests (after_commit.py, upgrade.py)."""
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


def wait_until(conn, sql, args=None, timeout=30.0):
    """Whether `sql` returns true within `timeout` seconds (polled)."""
    end = time.time() + timeout
    while time.time() < end:
        if one(conn, sql, args):
            return True
        time.sleep(0.05)
    return False
