//! The queue worker's lifecycle: its entry point ([`lambda_fdw_queue_main`],
//! started by the launcher for one database) and its loop, which sends
//! queued invocations after COMMIT.
//!
//! - It stays only where there is a queue to look after: it exits at once,
//!   telling the launcher why (`wake::Probe`), when the database has no
//!   `lambda_fdw.invocations`, when another worker serves the database,
//!   when `lambda_fdw.max_queue_workers` workers run, or when a DROP
//!   DATABASE, a RENAME or a copy of the database waits for its users to
//!   leave (`database::being_changed`). It exits later, between rounds,
//!   when the table is gone (DROP EXTENSION) or such a command waits.
//!
//! - It works the extension's queue table only (see `table::find`: the
//!   relation `lambda_fdw.invocations` that, with its schema, is a member
//!   of extension `lambda_fdw`); a relation of that name the extension did
//!   not create is never read, written or sent from, and neither is the
//!   extension's table while it has triggers or rules (one log line says
//!   so). Each round is one transaction (`round`): put back what a
//!   previous worker left `sending` (once per table; rows with no attempts
//!   left are failed, as they may have been delivered), record outcomes,
//!   claim due rows with attempts left (`FOR UPDATE SKIP LOCKED`, up to
//!   twice `lambda_fdw.queue_concurrency` requests, a batch being one
//!   request (see `batch`), the attempt counted and
//!   committed before the request leaves), and check each claimed row's
//!   role, route and mapping again (`signing`): a row that no longer
//!   checks out is failed, never sent. The calls run on a runtime of their
//!   own (`send`); retryable failures are rescheduled in the row (no
//!   sleeping; `outcome`). It sleeps on its latch, which a committing
//!   transaction that queued sets (see `wake`). Between rounds it flushes
//!   its statistics, so autovacuum sees the queue table's dead rows.
//! - No row can stop it: outcomes are recorded in one statement, and if
//!   that fails each in a subtransaction of its own, a row whose answer
//!   cannot be stored (jsonb refuses it, say) being failed with why; a row
//!   that cannot be read or signed is failed alone; a panic in a call fails
//!   its row. Any other error aborts the round, which keeps nothing of it:
//!   it is logged and the next round tries again (a round's outcomes are
//!   written back then; nothing it claimed was sent).
//!
//! Which role it runs as: it connects as the bootstrap superuser, as
//! PostgreSQL's own background workers do (a role is needed to connect,
//! before anything in the database can be looked at), and as that only
//! reads the catalogs in C. Every SQL statement of a round runs as the
//! queue table's owner (the superuser who ran CREATE EXTENSION, unless a
//! superuser gave the table away), in a security-restricted operation,
//! with `search_path` pinned to `pg_catalog, pg_temp` and every name
//! schema-qualified, operators included: the least privilege that works,
//! since the owner holds every right the rounds use on the table and
//! nothing is granted to anyone for the worker. The calls are signed as the
//! role that queued them would sign them now, never with more.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use crate::settings::guc;

use super::database;
use super::outcome::Outcome;
use super::round::{work_round, Idle, Plan, Round};
use super::send::Sender;
use super::signals::{reload_config_if_asked, shutdown_requested, POLL};
use super::table;
use super::transaction::{in_transaction, log_unexpected};
use super::wake::{self, Claim, Probe};

/// How often finished rows past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// How often the worker looks for a DROP DATABASE waiting for it.
const DATABASE_CHECK_EVERY: Duration = Duration::from_millis(250);

/// The most rows a round claims when batches make a request carry many
/// (without batches a round claims up to twice the concurrency).
const MAX_CLAIM_ROWS: usize = 10_000;

struct QueueWorker {
    sender: Sender,
    /// Outcomes not yet written back.
    finished: Vec<Outcome>,
    /// The queue table the rows in flight and `finished` belong to.
    table: Option<Oid>,
    /// What the worker last said about the queue (`None`: working it).
    said: Option<Idle>,
    last_purge: Option<Instant>,
    /// The most rows one request carried in the last claim (its largest
    /// batch size, 1 without batches): a claim takes this many rows per
    /// request there is room for.
    rows_per_request: usize,
    last_database_check: Instant,
}

/// Whether the worker goes on after a step.
#[derive(PartialEq)]
enum Next {
    Continue,
    Exit,
}

impl QueueWorker {
    fn step(&mut self) -> Next {
        if self.last_database_check.elapsed() >= DATABASE_CHECK_EVERY {
            self.last_database_check = Instant::now();
            if in_transaction(database::being_changed).unwrap_or(false) {
                log!("lambda_fdw queue worker: the database is being dropped, renamed or copied; exiting");
                return Next::Exit;
            }
        }
        // SAFETY: MyLatch is this process's latch; reset before looking at
        // the queue, so a commit after the look sets it again.
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        self.sender.resize(guc::queue_concurrency());
        let purge = self.last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY);
        // Claimed ahead: up to twice the concurrency in requests, in
        // flight or waiting.
        let requests = (2 * self.sender.slots).saturating_sub(self.sender.requests);
        let free = requests
            .saturating_mul(self.rows_per_request)
            .min(MAX_CLAIM_ROWS.max(requests));
        let plan = Plan {
            known: self.table,
            finished: &self.finished,
            unstarted: &[],
            free,
            requests,
            purge,
            idle: self.sender.outstanding == 0,
        };
        let round = match in_transaction(|| work_round(&plan)).and_then(|r| r) {
            Ok(round) => round,
            Err(e) => {
                // Nothing of the round was kept: its outcomes are written
                // next time, and nothing it claimed is sent.
                log_unexpected("work the queue", &e);
                BackgroundWorker::wait_latch(Some(POLL));
                return Next::Continue;
            }
        };
        let (table, jobs, widest, due, recovered) = match round {
            Round::Idle(Idle::Missing) => {
                // DROP EXTENSION: the launcher starts a worker again once
                // the table is back.
                log!("lambda_fdw queue worker: lambda_fdw.invocations does not exist in this database; exiting until CREATE EXTENSION lambda_fdw");
                return Next::Exit;
            }
            Round::Idle(idle) => {
                if self.said.as_ref() != Some(&idle) {
                    idle.say();
                    self.said = Some(idle);
                }
                BackgroundWorker::wait_latch(Some(POLL));
                return Next::Continue;
            }
            Round::Worked {
                table,
                jobs,
                widest,
                due,
                recovered,
            } => (table, jobs, widest, due, recovered),
        };
        if self.said.take().is_some() {
            log!("lambda_fdw queue worker: found lambda_fdw.invocations; sending");
        }
        if self.table != Some(table) {
            // Outcomes and calls of another table's rows are dropped.
            self.finished.clear();
            if self.sender.outstanding > 0 {
                match Sender::new(self.sender.slots) {
                    Ok(sender) => self.sender = sender,
                    Err(e) => log!("lambda_fdw queue worker: {e}"),
                }
            }
            self.table = Some(table);
        } else {
            // Written back in the round's transaction, which committed.
            self.finished.clear();
        }
        if let Some((requeued, failed)) = recovered {
            if requeued + failed > 0 {
                log!(
                    "lambda_fdw queue worker: found {} invocation(s) left in flight by the previous worker: {requeued} sent again, {failed} failed with no attempts left (they may have been delivered)",
                    requeued + failed
                );
            }
        }
        if purge {
            self.last_purge = Some(Instant::now());
        }
        if free > 0 {
            self.rows_per_request = widest;
        }
        self.sender.start(jobs, &mut self.finished);
        if !self.finished.is_empty() && self.sender.outstanding == 0 {
            // Rows that could not be sent: recorded at once, next round.
            return Next::Continue;
        }
        if self.sender.outstanding == 0 {
            let wait = due
                .map(|s| Duration::from_secs_f64(s.clamp(0.0, POLL.as_secs_f64())))
                .unwrap_or(POLL);
            if !wait.is_zero() {
                BackgroundWorker::wait_latch(Some(wait));
            }
            return Next::Continue;
        }
        self.sender.wait(&mut self.finished);
        Next::Continue
    }

    /// On shutdown: writes back what finished, so that those rows are not
    /// sent again by the next worker, and puts back, with their attempt
    /// returned, the rows claimed ahead whose call never started. Calls
    /// still in flight stay `sending`.
    fn flush(&mut self) {
        let unstarted = self.sender.stop();
        if (self.finished.is_empty() && unstarted.is_empty()) || self.table.is_none() {
            return;
        }
        let plan = Plan {
            known: self.table,
            finished: &self.finished,
            unstarted: &unstarted,
            free: 0,
            requests: 0,
            purge: false,
            idle: false,
        };
        if let Err(e) = in_transaction(|| work_round(&plan)).and_then(|r| r) {
            log!("lambda_fdw queue worker: could not record the last outcomes before exiting: {e}");
        }
    }
}

unsafe extern "C-unwind" fn leave_worker_slot(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: MyProcPid is this process's pid.
    wake::release_worker_slot(unsafe { pg_sys::MyProcPid });
}

/// Flushes this process's pending statistics, between transactions (at
/// most once a second; what is left waits for the next call, at most a
/// poll away). A background worker has no PostgreSQL main loop to do it:
/// without this, the rows its rounds update and delete (and what callbacks
/// write) would not count in `pg_stat_user_tables`, nor towards autovacuum
/// of the queue table, until the worker exits.
fn report_statistics() {
    // SAFETY: called between transactions of this connected worker, as
    // PostgreSQL's own main loop calls it when idle.
    let _ = unsafe { pg_sys::pgstat_report_stat(false) };
}

/// The queue worker's main function; its argument is the database's OID.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn lambda_fdw_queue_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = Oid::from(arg.value() as u32);
    // As the bootstrap superuser, as PostgreSQL's own workers connect; the
    // rounds run as the queue table's owner (see the module's header).
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);
    // What the database holds, and whether it is being dropped: a worker
    // that does not stay says why to the launcher, and nothing in the log
    // but for a worker too many.
    let look = in_transaction(|| {
        if database::being_changed() {
            Some(Probe::Busy)
        } else if table::find() == table::Lookup::Missing {
            Some(Probe::Absent)
        } else {
            None
        }
    });
    match look {
        Ok(None) => {}
        Ok(Some(probe)) => {
            wake::set_probe(db, probe);
            return;
        }
        Err(e) => {
            log_unexpected("look for lambda_fdw.invocations", &e);
            return;
        }
    }
    // SAFETY: MyProcPid is this process's pid.
    let me = unsafe { pg_sys::MyProcPid };
    match wake::claim_worker_slot(db, me, guc::max_queue_workers()) {
        Claim::Claimed => {}
        Claim::Taken => {
            log!("lambda_fdw queue worker: another queue worker serves this database; exiting");
            return;
        }
        Claim::Full => {
            wake::set_probe(db, Probe::Full);
            return;
        }
    }
    // SAFETY: registers a callback PostgreSQL calls once at this process's exit.
    unsafe { pg_sys::on_proc_exit(Some(leave_worker_slot), pg_sys::Datum::from(0)) };
    let sender = match Sender::new(guc::queue_concurrency()) {
        Ok(sender) => sender,
        Err(e) => {
            log!("lambda_fdw queue worker: {e}; exiting");
            return;
        }
    };
    let mut worker = QueueWorker {
        sender,
        finished: Vec::new(),
        table: None,
        said: None,
        last_purge: None,
        rows_per_request: 1,
        last_database_check: Instant::now(),
    };
    while !shutdown_requested() {
        reload_config_if_asked();
        report_statistics();
        if worker.step() == Next::Exit {
            break;
        }
    }
    worker.flush();
}
