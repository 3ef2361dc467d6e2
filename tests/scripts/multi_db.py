#!/usr/bin/env python3
"""The queue served in every database (issue 22), against the suite's
PostgreSQL (library preloaded, no lambda_fdw setting of the queue's) and
ministack: databases made with CREATE EXTENSION get their rows sent with no
setting, DROP EXTENSION and a plain DROP DATABASE end their worker (the drop
succeeds), lambda_fdw.max_queue_workers makes a database wait (said once in
the log) until a place frees, and lambda_fdw.database_name is retired (said
at start).

Deliveries are counted by what ministack's `record` function received
(/tmp/lambda_fdw_records/<key>). Exits non-zero on the first failed check.
"""
import json
import os
import subprocess
import sys
import time

import psycopg

from pgcheck import RECORDS, connect, log_count, one, recorded, wait_for, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MINISTACK = f"http://127.0.0.1:{os.environ.get('LAMBDA_FDW_MINISTACK_PORT', '45660')}"
RUN = str(int(time.time()))
DBS = ["lambda_fdw_md_a", "lambda_fdw_md_b", "lambda_fdw_md_c"]
WAITER = "lambda_fdw_md_d"
ROOM = 16
WORKERS = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'lambda_fdw queue worker'"


def check(what, ok, detail=""):
    print(f"multi_db: {what}: {'ok' if ok else 'FAILED ' + str(detail)}", flush=True)
    if not ok:
        sys.exit(1)


def served(admin, db):
    return one(admin, WORKERS + " AND datname = %s", [db])


def make(admin, db):
    """Makes database `db` with the extension, a server and a mapping; returns
    the connection and the server's clock just after CREATE EXTENSION
    committed."""
    admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {db}")
    c = connect(db)
    c.execute("CREATE EXTENSION lambda_fdw")
    created = one(c, "SELECT clock_timestamp()")
    for sql in [
        f"CREATE SERVER ms FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', endpoint_url '{MINISTACK}')",
        "CREATE USER MAPPING FOR PUBLIC SERVER ms OPTIONS (aws_access_key_id 'test', aws_secret_access_key 'test')",
    ]:
        c.execute(sql)
    return c, created


def enqueue(c, key):
    return one(c, "SELECT lambda_fdw.enqueue('record', %s, 'us-east-1', 'Event')", [json.dumps({"key": key})])


def test_every_database(admin):
    conns, created = {}, {}
    t0 = time.time()
    for db in DBS:
        conns[db], created[db] = make(admin, db)
    ok = wait_until(admin, f"SELECT ({WORKERS} AND datname = ANY(%s)) = 3", [DBS], timeout=15)
    took = time.time() - t0
    check(f"three databases made with CREATE EXTENSION get a queue worker each, with no setting ({took:.1f} s)", ok,
          one(admin, WORKERS + " AND datname = ANY(%s)", [DBS]))
    # No row queued yet: the commit of CREATE EXTENSION wakes the launcher,
    # whose own listing is only every 10 s. Each worker starting within 3 s
    # of its CREATE EXTENSION would happen by chance without the wake for
    # all three databases less than once in a hundred runs.
    after = {db: float(one(admin, "SELECT extract(epoch FROM backend_start - %s) FROM pg_stat_activity"
                                  " WHERE backend_type = 'lambda_fdw queue worker' AND datname = %s",
                           [created[db], db])) for db in DBS}
    check("each worker started within 3 s of its database's CREATE EXTENSION ("
          + ", ".join(f"{after[db]:.2f} s" for db in DBS) + ")", all(a < 3 for a in after.values()), after)
    keys = {db: f"{RUN}-md-{db}" for db in DBS}
    t0 = time.time()
    for db in DBS:
        enqueue(conns[db], keys[db])
    ok = wait_for(lambda: all(recorded(k) == 1 for k in keys.values()), timeout=10)
    check(f"each database's row is delivered once ({time.time() - t0:.2f} s)", ok,
          {db: recorded(k) for db, k in keys.items()})
    return conns


def test_first_enqueue_wakes(admin):
    """A database whose extension appears is served at its first commit
    that queues, before the launcher's next look."""
    db = DBS[2]
    c = connect(db)
    c.execute("DROP EXTENSION lambda_fdw CASCADE")
    gone = wait_until(admin, f"SELECT ({WORKERS} AND datname = %s) = 0", [db], timeout=5)
    check("DROP EXTENSION ends that database's queue worker", gone, served(admin, db))
    check("the other databases keep theirs", one(admin, WORKERS + " AND datname = ANY(%s)", [DBS[:2]]) == 2)
    time.sleep(5.5)  # past the launcher's restart delay
    c.execute("CREATE EXTENSION lambda_fdw")
    c.execute(f"CREATE SERVER ms FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', endpoint_url '{MINISTACK}')")
    c.execute("CREATE USER MAPPING FOR PUBLIC SERVER ms OPTIONS (aws_access_key_id 'test', aws_secret_access_key 'test')")
    key = f"{RUN}-md-wake"
    t0 = time.time()
    enqueue(c, key)
    ok = wait_for(lambda: recorded(key) == 1, timeout=12)
    check(f"after CREATE EXTENSION again, the first enqueue's row is delivered ({time.time() - t0:.2f} s)", ok,
          recorded(key))
    c.close()


def test_drop_database(admin, conns):
    db = DBS[1]
    conns.pop(db).close()
    check("the database to drop has its worker", served(admin, db) == 1)
    t0 = time.time()
    try:
        admin.execute(f"DROP DATABASE {db}")
        err = None
    except psycopg.Error as e:
        err = str(e)
    check(f"a plain DROP DATABASE of a served database succeeds ({time.time() - t0:.2f} s)", err is None, err)
    check("its worker is gone", served(admin, db) == 0)
    check("the others keep theirs", one(admin, WORKERS + " AND datname = ANY(%s)", [[DBS[0], DBS[2]]]) == 2)


def test_max_queue_workers(admin, conns):
    running = one(admin, WORKERS)
    set_max_queue_workers(admin, running)
    waits = f'database "{WAITER}" waits for a queue worker: lambda_fdw.max_queue_workers ({running}) are running'
    c, _ = make(admin, WAITER)
    key = f"{RUN}-md-waiter"
    enqueue(c, key)
    said = wait_for(lambda: log_count(waits) >= 1, timeout=15)
    check(f"with lambda_fdw.max_queue_workers = {running} (all taken) the launcher says the new database waits", said)
    time.sleep(2.5)
    check("it says so once", log_count(waits) == 1, log_count(waits))
    check("its row waits, unsent", recorded(key) == 0 and served(admin, WAITER) == 0, recorded(key))
    db = DBS[0]
    conns.pop(db).close()
    t0 = time.time()
    admin.execute(f"DROP DATABASE {db}")
    ok = wait_for(lambda: recorded(key) == 1, timeout=10)
    check(f"once a served database is dropped, the waiting one's row is sent ({time.time() - t0:.2f} s after DROP)", ok and
          served(admin, WAITER) == 1, recorded(key))
    set_max_queue_workers(admin, ROOM)
    c.close()


def test_rename_and_template(admin):
    """ALTER DATABASE ... RENAME and CREATE DATABASE ... TEMPLATE of a served
    database succeed (the worker leaves), and the worker comes back."""
    db, renamed, copy = DBS[2], DBS[2] + "_renamed", DBS[2] + "_copy"
    check("the database to rename has its worker", served(admin, db) == 1)
    for what, sql in [("ALTER DATABASE ... RENAME", f"ALTER DATABASE {db} RENAME TO {renamed}"),
                      ("CREATE DATABASE ... TEMPLATE", f"CREATE DATABASE {copy} TEMPLATE {renamed}")]:
        if what.startswith("CREATE"):
            back = wait_until(admin, f"SELECT ({WORKERS} AND datname = %s) = 1", [renamed], timeout=25)
            check("the renamed database has its worker again", back)
        t0 = time.time()
        try:
            admin.execute(sql)
            err = None
        except psycopg.Error as e:
            err = str(e)
        check(f"{what} of a served database succeeds ({time.time() - t0:.2f} s)", err is None, err)
    ok = wait_until(admin, f"SELECT ({WORKERS} AND datname = ANY(%s)) = 2", [[renamed, copy]], timeout=30)
    check("the renamed database and its copy each have a worker", ok,
          one(admin, WORKERS + " AND datname = ANY(%s)", [[renamed, copy]]))
    admin.execute(f"DROP DATABASE {copy}")
    admin.execute(f"ALTER DATABASE {renamed} RENAME TO {db}")


def test_database_name_retired(admin):
    line = 'lambda_fdw.database_name ("old_queue_db") is ignored: every database with the lambda_fdw extension has its queue sent'
    admin.execute("ALTER SYSTEM SET lambda_fdw.database_name = 'old_queue_db'")
    admin.close()
    subprocess.run(["bash", "-c", "source tests/harness/services.sh && restart_postgres"], cwd=ROOT, check=True)
    admin = connect("postgres")
    said = wait_for(lambda: log_count(line) == 1, timeout=5)
    check("a postgresql.conf that sets lambda_fdw.database_name starts, and the launcher says once it is ignored",
          said, log_count(line))
    db = DBS[2]
    ok = wait_until(admin, f"SELECT ({WORKERS} AND datname = %s) = 1", [db], timeout=15)
    check("after the restart the databases with the extension are served again", ok)
    admin.execute("ALTER SYSTEM RESET lambda_fdw.database_name")
    admin.execute("ALTER SYSTEM RESET lambda_fdw.max_queue_workers")
    admin.execute("SELECT pg_reload_conf()")
    return admin


def set_max_queue_workers(admin, n):
    admin.execute(f"ALTER SYSTEM SET lambda_fdw.max_queue_workers = {n}")
    admin.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)


def main():
    os.makedirs(RECORDS, exist_ok=True)
    admin = connect("postgres")
    # Room for this test's databases beside those the suites before it made.
    set_max_queue_workers(admin, ROOM)
    conns = test_every_database(admin)
    test_first_enqueue_wakes(admin)
    test_drop_database(admin, conns)
    test_max_queue_workers(admin, conns)
    for c in conns.values():
        c.close()
    test_rename_and_template(admin)
    admin = test_database_name_retired(admin)
    for db in [DBS[2], WAITER]:
        admin.execute(f"DROP DATABASE IF EXISTS {db}")
    print("multi_db: all checks passed")


if __name__ == "__main__":
    main()
