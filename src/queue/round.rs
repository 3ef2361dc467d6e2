//! One round of the queue worker, inside its transaction ([`work_round`]):
//! find the extension's queue table and lock it, put back what a previous
//! worker left in flight (once per table), record what finished, put back
//! rows never started, delete old rows, claim what there is room for. A
//! round that does not work the queue says why ([`Idle`]).

use std::rc::Rc;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use crate::pg::{catalog, origin};
use crate::settings::guc;

use super::batch::{self, Job};
use super::callback;
use super::error::WorkerError;
use super::outcome::Outcome;
use super::signing::{claim_ready, Ready};
use super::sql;
use super::state::RowState;
use super::table;
use super::transaction::{in_subtransaction, log_unexpected, panic_message};

/// Why the worker does not work the queue now (said once per change).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Idle {
    /// No relation `lambda_fdw.invocations`.
    Missing,
    /// A relation of that name the extension did not create.
    NotTheExtensions { relid: Oid, owner: String },
    /// The extension's table, with triggers or rules attached.
    CodeAttached { what: &'static str },
}

impl Idle {
    pub(crate) fn say(&self) {
        match self {
            Idle::Missing => log!(
                "lambda_fdw queue worker: lambda_fdw.invocations does not exist in this database; waiting for CREATE EXTENSION lambda_fdw (or its update)"
            ),
            Idle::NotTheExtensions { relid, owner } => log!(
                "lambda_fdw queue worker: ignoring lambda_fdw.invocations (OID {}, owner \"{owner}\"): it is not a member of extension lambda_fdw, so nothing in it is sent and nothing is written to it; the queue is worked once the extension's own table exists (CREATE EXTENSION lambda_fdw, or ALTER EXTENSION lambda_fdw UPDATE, after dropping this one)",
                relid.to_u32()
            ),
            Idle::CodeAttached { what } => log!(
                "lambda_fdw queue worker: not working lambda_fdw.invocations: it has {what}, which the extension does not create, and the worker runs no code attached to its queue; nothing is sent until they are dropped"
            ),
        }
    }
}

/// What a round found and did.
pub(crate) enum Round {
    /// The queue was not worked (nothing was read, written or sent).
    Idle(Idle),
    Worked {
        /// The queue table worked.
        table: Oid,
        /// The requests to send (a row alone, or a batch).
        jobs: Vec<Job>,
        /// The largest batch size among the rows claimed (1 if none
        /// batches): how many rows a request may carry next time.
        widest: usize,
        /// Seconds until the next row is due, when nothing is in flight.
        due: Option<f64>,
        /// What the recovery of rows left `sending` did: (requeued, failed).
        recovered: Option<(usize, usize)>,
    },
}

/// What a round is asked to do.
pub(crate) struct Plan<'a> {
    /// The table the outcomes and the rows in flight belong to.
    pub(crate) known: Option<Oid>,
    pub(crate) finished: &'a [Outcome],
    /// Rows claimed whose request never left (the worker is stopping):
    /// put back with their attempt returned.
    pub(crate) unstarted: &'a [i64],
    /// Rows that may be claimed.
    pub(crate) free: usize,
    /// Requests there is room for: the claimed rows beyond are put back.
    pub(crate) requests: usize,
    pub(crate) purge: bool,
    /// Whether to look for the next due time (nothing in flight).
    pub(crate) idle: bool,
}

/// A transaction's commit is what makes an attempt count before its
/// request leaves: with `synchronous_commit = off` a crash right after the
/// claim could lose it, so the worker's transactions flush at commit.
fn flush_at_commit() {
    // SAFETY: reads the GUC's variable; sets it for this transaction only
    // (a valid value of a PGC_USERSET setting).
    unsafe {
        if pg_sys::synchronous_commit == pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_OFF as i32 {
            pg_sys::set_config_option(
                c"synchronous_commit".as_ptr(),
                c"local".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_LOCAL,
                true,
                pg_sys::elog::PgLogLevel::ERROR as i32,
                false,
            );
        }
    }
}

/// One round, inside its transaction: find the extension's queue table and
/// lock it, put back what a previous worker left in flight (once per
/// table), record what finished, delete old rows, claim what there is room
/// for. Errors that reach here are not a row's (each row's work is in a
/// subtransaction of its own); they abort the round, which changes nothing.
pub(crate) fn work_round(plan: &Plan) -> Result<Round, WorkerError> {
    let idle = |lookup: table::Lookup| match lookup {
        table::Lookup::Missing | table::Lookup::Found(_) => Idle::Missing,
        table::Lookup::NotTheExtensions { relid, owner } => Idle::NotTheExtensions {
            relid,
            owner: catalog::role_name(owner),
        },
    };
    let found = match table::find() {
        table::Lookup::Found(t) => t,
        other => return Ok(Round::Idle(idle(other))),
    };
    // SAFETY: locks a relation OID for this transaction (the lock a DML
    // statement takes, so a DROP EXTENSION waits for the round to end);
    // taking it processes pending invalidations, so the look after it sees
    // a DROP, a new trigger or a new owner that committed before.
    unsafe { pg_sys::LockRelationOid(found.relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE) };
    let queue = match table::find() {
        table::Lookup::Found(t) if t.relid == found.relid => t,
        other => return Ok(Round::Idle(idle(other))),
    };
    if queue.has_code_attached {
        let what = match (queue.has_triggers, queue.has_rules) {
            (true, true) => "triggers and rules",
            (true, false) => "triggers",
            _ => "rules",
        };
        return Ok(Round::Idle(Idle::CodeAttached { what }));
    }
    // A table seen for the first time (the worker started, or the
    // extension was dropped and created again): rows left in flight are
    // dealt with, and outcomes of another table's rows are not written.
    let first = plan.known != Some(queue.relid);
    let finished = if first { &[][..] } else { plan.finished };
    let foreign_table_column = queue.has_foreign_table_column;
    let ordered = queue.since_0_6;
    flush_at_commit();
    table::as_owner_pinned(queue.owner, || {
        let recovered = if first { Some(sql::recover()?) } else { None };
        sql::record(finished);
        // Callbacks, in this transaction: of what finished now, and of
        // what recovery failed for good.
        let mut done: Vec<i64> = finished
            .iter()
            .filter(|o| matches!(o.state, RowState::Succeeded | RowState::Failed))
            .map(|o| o.id)
            .collect();
        if let Some((_, failed)) = &recovered {
            done.extend(failed);
        }
        callback::run(&done, &queue);
        let recovered = recovered.map(|(requeued, failed)| (requeued, failed.len()));
        if !plan.unstarted.is_empty() && !first {
            if let Err(e) = in_subtransaction(|| sql::put_back(plan.unstarted)).and_then(|r| r) {
                log_unexpected("put back invocations never sent", &e);
            }
        }
        if plan.purge {
            let retention = guc::queue_retention_s() as f64;
            if let Err(e) = in_subtransaction(|| sql::purge(retention)).and_then(|r| r) {
                log_unexpected("delete finished invocations", &e);
            }
        }
        let ready = if plan.free > 0 {
            match in_subtransaction(|| claim_ready(plan.free, foreign_table_column, ordered))
                .and_then(|r| r)
            {
                Ok(ready) => ready,
                Err(e) => {
                    log_unexpected("claim invocations", &e);
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let widest = batch::widest(&ready);
        let claimed: Vec<(i64, i32, i32)> = ready
            .iter()
            .map(|r| (r.id, r.attempts, r.max_attempts))
            .collect();
        let grouped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch::jobs(ready, plan.requests, || {
                (origin::cluster_label(), origin::database_name())
            })
        }));
        let (mut jobs, beyond) = match grouped {
            Ok(grouped) => grouped,
            // Not expected; the claimed rows fail rather than come
            // back to fail every round.
            Err(panic) if panic.downcast_ref::<CaughtError>().is_some() => {
                std::panic::resume_unwind(panic)
            }
            Err(panic) => {
                let error = Rc::new(WorkerError::PreparePanicked(panic_message(&*panic)));
                let failed = claimed
                    .into_iter()
                    .map(|(id, attempts, max_attempts)| {
                        Job::One(Ready {
                            id,
                            attempts,
                            max_attempts,
                            prepared: Err(error.clone()),
                            batch: None,
                        })
                    })
                    .collect();
                (failed, Vec::new())
            }
        };
        if !beyond.is_empty() {
            // Claimed for rows of batches that turned out smaller (or
            // not batched): given back unsent, with their attempt; if
            // that fails they are sent now.
            let ids = batch::ids_of(&beyond);
            if let Err(e) = in_subtransaction(|| sql::put_back(&ids)).and_then(|r| r) {
                log_unexpected("put back invocations claimed ahead", &e);
                jobs.extend(beyond);
            }
        }
        let due = if plan.idle && jobs.is_empty() {
            sql::next_due(ordered)?
        } else {
            None
        };
        Ok(Round::Worked {
            table: queue.relid,
            jobs,
            widest,
            due,
            recovered,
        })
    })
}
