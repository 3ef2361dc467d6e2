//! Transactions and subtransactions that report instead of ending the
//! worker: [`in_transaction`] and [`in_subtransaction`] catch what `f`
//! raises (a PostgreSQL ERROR, or a panic) as a [`WorkerError`] and leave
//! the worker between transactions, or in the caller's, as before; and
//! [`log_unexpected`], which says such an error without repeating it every
//! round.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use pgrx::pg_sys::{self, panic::CaughtError};
use pgrx::prelude::*;

use super::error::WorkerError;

/// An error caught from PostgreSQL or from Rust: its message and detail.
fn caught(e: &CaughtError) -> WorkerError {
    let report = match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    WorkerError::Caught {
        message: report.message().to_string(),
        detail: report.detail().map(str::to_string),
    }
}

/// Runs `f` in a transaction of its own and commits it. If `f` or the
/// commit raises an error (or panics), the transaction is aborted and the
/// error returned: nothing `f` did is kept, and the worker goes on.
pub(crate) fn in_transaction<R>(f: impl FnOnce() -> R) -> Result<R, WorkerError> {
    // SAFETY: between transactions in a background worker connected to its
    // database: starts one, with a snapshot for the statements to come.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let result = PgTryBuilder::new(AssertUnwindSafe(|| {
        let r = f();
        // SAFETY: pops the snapshot pushed above and commits.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(r)
    }))
    .catch_others(|e| Err(caught(&e)))
    .execute();
    if result.is_err() {
        // SAFETY: the error state was flushed (PgTryBuilder does it after a
        // catch); aborting releases locks, buffers, snapshots, memory, GUC
        // nest levels and the user identity, as PostgreSQL's own error
        // recovery does, and leaves no transaction open.
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    result
}

/// Runs `f` in an internal subtransaction, as PL/Python's subtransactions
/// do: released if `f` returns, rolled back if it raises an error (or
/// panics), which is then returned. Memory context and resource owner are
/// the caller's again either way.
pub(crate) fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, WorkerError> {
    // SAFETY: inside a transaction; BeginInternalSubTransaction switches
    // memory context and resource owner to the subtransaction's, and the
    // work runs in the caller's memory context, as in PL/Python.
    let (context, owner) = unsafe {
        let saved = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(saved.0);
        saved
    };
    let result = PgTryBuilder::new(AssertUnwindSafe(|| Ok(f())))
        .catch_others(|e| Err(caught(&e)))
        .execute();
    // SAFETY: closes the subtransaction begun above (the error state is
    // flushed when it failed), then restores what it switched.
    unsafe {
        if result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
    result
}

/// The message of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_string()
    }
}

thread_local! {
    /// What `log_unexpected` last said, per kind, and when.
    static LAST_SAID: RefCell<HashMap<&'static str, (String, Instant)>> =
        RefCell::new(HashMap::new());
}

/// Logs an unexpected error of kind `what` (none a row can cause): each new
/// one, and the same one again at most once a minute, since the worker
/// tries again every round.
pub(crate) fn log_unexpected(what: &'static str, e: &WorkerError) {
    let e = e.to_string();
    let repeat = LAST_SAID.with(|l| {
        let mut l = l.borrow_mut();
        let repeat = l
            .get(what)
            .is_some_and(|(last, at)| *last == e && at.elapsed() < Duration::from_secs(60));
        if !repeat {
            l.insert(what, (e.clone(), Instant::now()));
        }
        repeat
    });
    if !repeat {
        log!("lambda_fdw queue worker: could not {what}: {e}; trying again");
    }
}

/// Waits until each transaction in `xids` (the writers of rows just
/// claimed) has finished committing, then takes the catalog changes that
/// committed meanwhile. A transaction's rows are visible from the moment it
/// is marked committed, but it sends its catalog invalidations only later in
/// its commit, and it wakes the worker in between (wake.rs): a role's
/// privilege revoked in the transaction that queued the row could still be
/// read from this backend's caches. Each transaction holds the lock on its
/// own id until after its invalidations are sent, so taking that lock
/// (XactLockTableWait) waits for exactly that; for a transaction long
/// finished it returns at once. Our own transaction's id (a row put back in
/// this round) and the frozen and bootstrap ids are skipped.
pub(crate) fn after_writers(mut xids: Vec<u32>) {
    xids.sort_unstable();
    xids.dedup();
    let mut waited = false;
    for xid in xids {
        let xid = pg_sys::TransactionId::from(xid);
        if xid < pg_sys::FirstNormalTransactionId {
            continue;
        }
        // SAFETY: inside a transaction; a transaction id is a plain value.
        if unsafe { pg_sys::TransactionIdIsCurrentTransactionId(xid) } {
            continue;
        }
        // SAFETY: inside a transaction; no relation or tuple is named, so
        // no error context is pushed (XLTW_None). The transaction is
        // committed (its row was visible), so the wait is at most the end of
        // its commit.
        unsafe {
            pg_sys::XactLockTableWait(
                xid,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                pg_sys::XLTW_Oper::XLTW_None,
            )
        };
        waited = true;
    }
    if waited {
        // SAFETY: inside a transaction: reads the invalidation messages
        // sent so far and drops the cache entries they name.
        unsafe { pg_sys::AcceptInvalidationMessages() };
    }
}
