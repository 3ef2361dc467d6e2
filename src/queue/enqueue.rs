//! Queueing invocations inside the caller's transaction: a row of
//! `lambda_fdw.invocations`, visible to the worker only once the transaction
//! commits, and gone with it if it rolls back.

use std::cell::Cell;

use bytes::Bytes;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use crate::compat::{self, args::InvokeArgs};
use crate::error::{raise, LambdaFdwError, Result};
use crate::settings::limits::MAX_ORDERING_KEY_BYTES;
use crate::settings::route::{self, Signed};
use lambda_fdw_core::request::{context_with_invocation_ids, encode_client_context};
use lambda_fdw_core::{CoreError, InvocationType, InvokeRequest};

use super::{callback, table, wake};

/// One invocation to queue, checked.
pub(crate) struct Queued {
    /// The role whose call it is: signed as this role when sent.
    pub queued_by: Oid,
    /// The function as the caller named it (name, partial or full ARN).
    pub function_name: String,
    pub region: String,
    pub qualifier: Option<String>,
    pub invocation_type: InvocationType,
    pub payload: Bytes,
    pub context: Option<String>,
    /// The server and user mapping that sign it, and its settings.
    pub signed: Signed,
    /// The foreign table an INSERT queued it through; `None` for enqueue.
    pub foreign_table: Option<Oid>,
    /// Invocations with the same key are sent one at a time, in order.
    pub ordering_key: Option<String>,
    /// The function called with the finished invocation, checked.
    pub on_complete: Option<Oid>,
    /// Not sent before this time.
    pub not_before: Option<TimestampWithTimeZone>,
}

impl Queued {
    /// What the row asks for that a queue table older than 0.6.0 cannot
    /// hold, if anything.
    fn needs_0_6(&self) -> Option<&'static str> {
        if self.on_complete.is_some() {
            Some("on_complete")
        } else if self.ordering_key.is_some() {
            Some("ordering_key")
        } else if self.not_before.is_some() {
            Some("not_before")
        } else {
            None
        }
    }
}

/// Checks that queued invocation `request`'s context and payload will fit
/// once the worker adds its id (the longest one).
fn check_alone(request: &InvokeRequest, context: Option<&str>, payload: &Bytes) -> Result<()> {
    InvokeRequest::queued(
        request.target.clone(),
        request.invocation_type,
        context,
        i64::MAX,
        payload.clone(),
    )?;
    Ok(())
}

/// Checks what [`check_alone`] checks for an INSERT into a foreign table,
/// and that the context will also fit with the id as a batch carries it
/// (`custom.lambda_fdw_invocation_ids`, the longest one): the table may
/// batch when the row is sent.
pub(crate) fn check_queued(
    request: &InvokeRequest,
    context: Option<&str>,
    payload: &Bytes,
) -> Result<()> {
    check_alone(request, context, payload)?;
    let with_ids = context_with_invocation_ids(context, &[i64::MAX])?;
    encode_client_context(&with_ids)?;
    Ok(())
}

thread_local! {
    static WARNED_NO_WORKER: Cell<bool> = const { Cell::new(false) };
}

fn warn_once_without_worker() {
    if wake::preloaded() || WARNED_NO_WORKER.with(|w| w.replace(true)) {
        return;
    }
    pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_WARNING,
        "lambda_fdw's queue worker is not running: queued invocations wait in lambda_fdw.invocations",
        "lambda_fdw",
    )
    .set_hint("add lambda_fdw to shared_preload_libraries and restart PostgreSQL; a worker then serves every database with the extension")
    .report(PgLogLevel::WARNING);
}

/// Every name schema-qualified; run with the search_path pinned, as the
/// queue table's owner.
const INSERT: &str = "INSERT INTO lambda_fdw.invocations \
     (queued_by, function_name, region, qualifier, invocation_type, payload, context, \
      server, user_mapping, max_attempts, foreign_table) \
     VALUES ($1::pg_catalog.oid::pg_catalog.regrole, $2, $3, $4, $5, $6::pg_catalog.jsonb, \
             $7::pg_catalog.jsonb, $8, $9, $10, $11) \
     RETURNING id";

/// [`INSERT`] with 0.6.0's columns; `next_attempt_at` is `not_before` when
/// given (a time in the past sends at once).
const INSERT_0_6: &str = "INSERT INTO lambda_fdw.invocations \
     (queued_by, function_name, region, qualifier, invocation_type, payload, context, \
      server, user_mapping, max_attempts, foreign_table, ordering_key, on_complete, \
      next_attempt_at) \
     VALUES ($1::pg_catalog.oid::pg_catalog.regrole, $2, $3, $4, $5, $6::pg_catalog.jsonb, \
             $7::pg_catalog.jsonb, $8, $9, $10, $11, $12, \
             $13::pg_catalog.oid::pg_catalog.regprocedure, \
             COALESCE($14, pg_catalog.clock_timestamp())) \
     RETURNING id";

/// The advisory lock class of ordering keys (`pg_advisory_xact_lock(int4,
/// int4)`'s first key; the second is the key's hash): "lfdw".
const ORDERING_LOCK_CLASS: i32 = 0x6c66_6477;

/// Holds, until this transaction ends, the lock of ordering key `key`: a
/// transaction that queues a key waits for one that queued it before to
/// commit or abort, so the ids of one key are in commit order.
const LOCK_ORDERING_KEY: &str =
    "SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))";

/// The extension's queue table, locked for writing, as SQL run as its
/// owner may write it: found through the extension, not by name, with no
/// code attached. It is missing while the extension's SQL is still at
/// 0.1.0 (a new library before ALTER EXTENSION UPDATE).
pub(super) fn writable_queue() -> Result<table::QueueTable> {
    let found = table::queue_table().ok_or(LambdaFdwError::QueueMissing)?;
    // SAFETY: the lock the INSERT below takes, taken first so that the table
    // looked at next is the one written, with the triggers and rules it has.
    unsafe { pg_sys::LockRelationOid(found.relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE) };
    let queue = table::queue_table()
        .filter(|t| t.relid == found.relid)
        .ok_or(LambdaFdwError::QueueMissing)?;
    if !queue.has_foreign_table_column {
        return Err(LambdaFdwError::QueueOutdated);
    }
    // It is written as the table's owner: no code attached to it may run.
    if queue.has_code_attached {
        return Err(LambdaFdwError::QueueHasCode);
    }
    Ok(queue)
}

/// Queues one invocation; returns its id. The queue table is the
/// extension's own (found through the extension, not by name); it is
/// missing while the extension's SQL is still at 0.1.0 (a new library
/// before ALTER EXTENSION UPDATE).
pub(crate) fn queue(q: Queued) -> Result<i64> {
    let queue = writable_queue()?;
    if !queue.since_0_6 {
        if let Some(what) = q.needs_0_6() {
            return Err(LambdaFdwError::QueueBefore06 { what });
        }
    }
    let owner = queue.owner;
    if let Some(function) = q.on_complete {
        // As the owner (pg_proc is readable by all; the privilege asked is
        // the queuing role's), with the search_path pinned.
        table::as_owner_pinned(owner, || callback::check(function, q.queued_by, &queue))?;
    }
    let payload = String::from_utf8_lossy(&q.payload).into_owned();
    let server = q.signed.server.as_ref().map(|s| s.oid);
    let mut args: Vec<pgrx::datum::DatumWithOid> = vec![
        q.queued_by.into(),
        q.function_name.into(),
        q.region.into(),
        q.qualifier.into(),
        q.invocation_type.as_str().into(),
        payload.into(),
        q.context.into(),
        server.into(),
        q.signed.mapping.into(),
        (q.signed.settings.max_attempts as i32).into(),
        q.foreign_table.into(),
    ];
    let insert = if queue.since_0_6 {
        args.push(q.ordering_key.clone().into());
        args.push(q.on_complete.into());
        args.push(q.not_before.into());
        INSERT_0_6
    } else {
        INSERT
    };
    let id = table::as_owner_pinned(owner, || {
        if let Some(key) = &q.ordering_key {
            Spi::run_with_args(
                LOCK_ORDERING_KEY,
                &[ORDERING_LOCK_CLASS.into(), key.as_str().into()],
            )?;
        }
        Spi::get_one_with_args::<i64>(insert, &args)
    })
    .map_err(|e| LambdaFdwError::QueueWrite(Some(e.to_string())))?
    .ok_or(LambdaFdwError::QueueWrite(None))?;
    wake::wake_on_commit();
    warn_once_without_worker();
    Ok(id)
}

/// What `lambda_fdw.enqueue` takes beyond `aws_lambda.invoke`'s arguments
/// (0.6.0).
#[derive(Default)]
struct Extras {
    on_complete: Option<Oid>,
    ordering_key: Option<String>,
    not_before: Option<TimestampWithTimeZone>,
}

/// `lambda_fdw.enqueue`: checks as `aws_lambda.invoke` does, routes the
/// region as it does (see `route::region_route`), and queues.
fn enqueue(args: InvokeArgs, payload: Bytes, extras: Extras) -> Result<i64> {
    if let Some(key) = &extras.ordering_key {
        if key.len() > MAX_ORDERING_KEY_BYTES {
            return Err(LambdaFdwError::OrderingKeyTooLong {
                bytes: key.len(),
                limit: MAX_ORDERING_KEY_BYTES,
            });
        }
    }
    // Names, enums, sizes and the caller's context, as aws_lambda.invoke
    // checks them; then that they still fit with the id the worker adds.
    let request = compat::prepare(&args, payload.clone())?;
    check_alone(&request, args.context.as_deref(), &payload)?;
    // SAFETY: GetUserId has no preconditions inside a transaction.
    let user = unsafe { pg_sys::GetUserId() };
    let signed = route::region_route(&request.target.region, user)?;
    queue(Queued {
        queued_by: user,
        function_name: args.function_name,
        region: request.target.region,
        qualifier: args.qualifier,
        invocation_type: request.invocation_type,
        payload,
        context: args.context,
        signed,
        foreign_table: None,
        ordering_key: extras.ordering_key,
        on_complete: extras.on_complete,
        not_before: extras.not_before,
    })
}
static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

#[no_mangle]
pub extern "C" fn pg_finfo_lambda_fdw_enqueue() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// # Safety
/// Called by PostgreSQL through the function manager only, for the
/// declaration in sql/queue.sql.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn lambda_fdw_enqueue(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    let required = |name: &'static str, v: Option<String>| {
        v.unwrap_or_else(|| raise(LambdaFdwError::Core(CoreError::NullArgument(name))))
    };
    // SAFETY: argument positions and types follow sql/queue.sql: (text,
    // jsonb, text, text, text, jsonb, regproc, text, timestamptz); a
    // database whose SQL predates 0.6.0 declares the first six only.
    let (args, payload, extras) = unsafe {
        let args = InvokeArgs {
            function_name: required("function_name", compat::text_arg(fcinfo, 0)),
            region: compat::text_arg(fcinfo, 2),
            invocation_type: required("invocation_type", compat::text_arg(fcinfo, 3)),
            log_type: "None".into(),
            context: compat::json_arg(fcinfo, 5, true),
            qualifier: compat::text_arg(fcinfo, 4),
        };
        let extras = if (*fcinfo).nargs >= 9 {
            Extras {
                on_complete: pgrx::fcinfo::pg_getarg::<Oid>(fcinfo, 6)
                    .filter(|o| *o != Oid::INVALID),
                ordering_key: compat::text_arg(fcinfo, 7),
                not_before: pgrx::fcinfo::pg_getarg::<TimestampWithTimeZone>(fcinfo, 8),
            }
        } else {
            Extras::default()
        };
        (
            args,
            required("payload", compat::json_arg(fcinfo, 1, true)),
            extras,
        )
    };
    match enqueue(args, Bytes::from(payload), extras) {
        Ok(id) => id.into_datum().unwrap_or(Datum::from(0)),
        Err(e) => raise(e),
    }
}
