//! What a role may do to the invocations it queued (0.6.0):
//! `lambda_fdw.retry(id)` and `lambda_fdw.retry_failed(...)` queue failed
//! (or cancelled) invocations again, `lambda_fdw.cancel(id)` cancels a
//! queued one. Each is allowed to the role that queued the invocation and
//! to superusers; others get 42501. The statements run as the queue
//! table's owner, search_path pinned, as enqueue's INSERT does; the row is
//! locked (`FOR UPDATE`) before its state is looked at, so the worker's
//! claim (`SKIP LOCKED`) and a cancel or retry never both win.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use crate::compat;
use crate::error::{raise, LambdaFdwError, Result};

use super::enqueue::writable_queue;
use super::state::RowState;
use super::{table, wake};

/// The row's role and state, locked.
const LOOK: &str = "SELECT queued_by::pg_catalog.oid, state FROM lambda_fdw.invocations \
     WHERE id OPERATOR(pg_catalog.=) $1 FOR UPDATE";

/// What a retried invocation's row is set to: queued, due now, its
/// attempts counted from zero, the last outcome cleared.
const AGAIN: &str = "state = 'queued', attempts = 0, \
     next_attempt_at = pg_catalog.clock_timestamp(), status_code = NULL, response = NULL, \
     executed_version = NULL, function_error = NULL, error = NULL, request_id = NULL, \
     finished_at = NULL, callback_error = NULL";

const RETRY: &str = "UPDATE lambda_fdw.invocations SET {again} WHERE id OPERATOR(pg_catalog.=) $1";

/// The failed invocations of role `$2` (every role's if `$1`), of function
/// `$3` if given, that failed at or after `$4` and before `$5` if given.
const RETRY_FAILED: &str = "WITH again AS ( \
       UPDATE lambda_fdw.invocations SET {again} \
        WHERE state OPERATOR(pg_catalog.=) 'failed' \
          AND ($1 OR queued_by OPERATOR(pg_catalog.=) $2::pg_catalog.oid::pg_catalog.regrole) \
          AND ($3::pg_catalog.text IS NULL OR function_name OPERATOR(pg_catalog.=) $3) \
          AND ($4::pg_catalog.timestamptz IS NULL OR finished_at OPERATOR(pg_catalog.>=) $4) \
          AND ($5::pg_catalog.timestamptz IS NULL OR finished_at OPERATOR(pg_catalog.<) $5) \
        RETURNING 1) \
     SELECT pg_catalog.count(*) FROM again";

const CANCEL: &str = "UPDATE lambda_fdw.invocations SET state = 'cancelled', \
       finished_at = pg_catalog.clock_timestamp(), \
       error = pg_catalog.format('cancelled by %s', $2::pg_catalog.oid::pg_catalog.regrole) \
     WHERE id OPERATOR(pg_catalog.=) $1";

/// What an operation is, for its messages.
#[derive(Clone, Copy)]
enum Operation {
    Retry,
    Cancel,
}

impl Operation {
    const fn verb(self) -> &'static str {
        match self {
            Operation::Retry => "retry",
            Operation::Cancel => "cancel",
        }
    }

    /// Whether a row in `state` may undergo it.
    fn allows(self, state: RowState) -> bool {
        match self {
            Operation::Retry => matches!(state, RowState::Failed | RowState::Cancelled),
            Operation::Cancel => state == RowState::Queued,
        }
    }

    fn refused(self, id: i64, state: RowState) -> LambdaFdwError {
        let (done, allowed) = match self {
            Operation::Retry => (
                "retried",
                "only failed or cancelled invocations can be retried",
            ),
            Operation::Cancel => (
                "cancelled",
                "only queued invocations can be cancelled; one being sent may already have been delivered",
            ),
        };
        let state = match state {
            RowState::Sending => "being sent",
            other => other.as_str(),
        };
        LambdaFdwError::InvocationState {
            id,
            done,
            state,
            allowed,
        }
    }
}

/// The queue table for an operation, which needs 0.6.0's SQL.
fn queue_for(operation: &'static str) -> Result<table::QueueTable> {
    let queue = writable_queue()?;
    if !queue.since_0_6 {
        return Err(LambdaFdwError::QueueBefore06 { what: operation });
    }
    Ok(queue)
}

fn spi_error(e: pgrx::spi::SpiError) -> LambdaFdwError {
    LambdaFdwError::QueueWrite(Some(e.to_string()))
}

/// Retries or cancels invocation `id`, checked.
fn one(operation: Operation, id: i64) -> Result<()> {
    let queue = queue_for(operation.verb())?;
    // SAFETY: GetUserId has no preconditions inside a transaction.
    let user = unsafe { pg_sys::GetUserId() };
    table::as_owner_pinned(queue.owner, || {
        // Read-write: FOR UPDATE is refused in a read-only SPI call.
        let found = Spi::connect_mut(|c| {
            let rows = c.update(LOOK, Some(1), &[id.into()])?;
            match rows.into_iter().next() {
                None => Ok(None),
                Some(row) => Ok(Some((row.get::<Oid>(1)?, row.get::<String>(2)?))),
            }
        })
        .map_err(spi_error)?;
        let Some((queued_by, state)) = found else {
            return Err(LambdaFdwError::NoSuchInvocation { id });
        };
        // SAFETY: superuser_arg reads the role's catalog row.
        let allowed = queued_by == Some(user) || unsafe { pg_sys::superuser_arg(user) };
        if !allowed {
            return Err(LambdaFdwError::NotYourInvocation {
                id,
                action: operation.verb(),
            });
        }
        let state = state
            .as_deref()
            .and_then(RowState::parse)
            .unwrap_or(RowState::Sending);
        if !operation.allows(state) {
            return Err(operation.refused(id, state));
        }
        match operation {
            Operation::Retry => Spi::run_with_args(&RETRY.replace("{again}", AGAIN), &[id.into()]),
            Operation::Cancel => Spi::run_with_args(CANCEL, &[id.into(), user.into()]),
        }
        .map_err(spi_error)
    })?;
    if let Operation::Retry = operation {
        wake::wake_on_commit();
    }
    Ok(())
}

/// `lambda_fdw.retry_failed`: how many invocations it queued again.
fn retry_failed(
    function_name: Option<String>,
    after: Option<TimestampWithTimeZone>,
    before: Option<TimestampWithTimeZone>,
) -> Result<i64> {
    let queue = queue_for("retry_failed")?;
    // SAFETY: GetUserId has no preconditions inside a transaction;
    // superuser_arg reads the role's catalog row.
    let (user, superuser) = unsafe {
        let user = pg_sys::GetUserId();
        (user, pg_sys::superuser_arg(user))
    };
    let count = table::as_owner_pinned(queue.owner, || {
        Spi::get_one_with_args::<i64>(
            &RETRY_FAILED.replace("{again}", AGAIN),
            &[
                superuser.into(),
                user.into(),
                function_name.into(),
                after.into(),
                before.into(),
            ],
        )
        .map_err(spi_error)
    })?
    .unwrap_or(0);
    if count > 0 {
        wake::wake_on_commit();
    }
    Ok(count)
}

static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

#[no_mangle]
pub extern "C" fn pg_finfo_lambda_fdw_retry() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

#[no_mangle]
pub extern "C" fn pg_finfo_lambda_fdw_retry_failed() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

#[no_mangle]
pub extern "C" fn pg_finfo_lambda_fdw_cancel() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// The id argument of a STRICT function.
///
/// # Safety
/// `fcinfo` is a live call's, whose first argument is a bigint.
unsafe fn id_arg(fcinfo: pg_sys::FunctionCallInfo) -> i64 {
    // SAFETY: per the contract; STRICT, so it is not NULL.
    unsafe { pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 0).unwrap_or_default() }
}

/// # Safety
/// Called by PostgreSQL through the function manager only, for the
/// declaration in sql/queue.sql: `lambda_fdw.retry(bigint)`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn lambda_fdw_retry(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    // SAFETY: per sql/queue.sql's declaration.
    let id = unsafe { id_arg(fcinfo) };
    match one(Operation::Retry, id) {
        Ok(()) => Datum::from(0),
        Err(e) => raise(e),
    }
}

/// # Safety
/// Called by PostgreSQL through the function manager only, for the
/// declaration in sql/queue.sql: `lambda_fdw.cancel(bigint)`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn lambda_fdw_cancel(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    // SAFETY: per sql/queue.sql's declaration.
    let id = unsafe { id_arg(fcinfo) };
    match one(Operation::Cancel, id) {
        Ok(()) => Datum::from(0),
        Err(e) => raise(e),
    }
}

/// # Safety
/// Called by PostgreSQL through the function manager only, for the
/// declaration in sql/queue.sql:
/// `lambda_fdw.retry_failed(text, timestamptz, timestamptz)`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn lambda_fdw_retry_failed(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    // SAFETY: argument positions and types follow the declaration.
    let (function_name, after, before) = unsafe {
        (
            compat::text_arg(fcinfo, 0),
            pgrx::fcinfo::pg_getarg::<TimestampWithTimeZone>(fcinfo, 1),
            pgrx::fcinfo::pg_getarg::<TimestampWithTimeZone>(fcinfo, 2),
        )
    };
    match retry_failed(function_name, after, before) {
        Ok(n) => n.into_datum().unwrap_or(Datum::from(0)),
        Err(e) => raise(e),
    }
}
