//! Queueing invocations inside the caller's transaction: a row of
//! `lambda_fdw.invocations`, visible to the worker only once the transaction
//! commits, and gone with it if it rolls back.

use std::cell::Cell;

use bytes::Bytes;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use crate::compat::{self, args::InvokeArgs};
use crate::error::{raise, LambdaFdwError, Result};
use crate::settings::route::{self, Signed};
use lambda_fdw_core::request::{context_with_invocation_ids, encode_client_context};
use lambda_fdw_core::{CoreError, InvocationType, InvokeRequest};

use super::{table, wake};

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

/// Queues one invocation; returns its id. The queue table is the
/// extension's own (found through the extension, not by name); it is
/// missing while the extension's SQL is still at 0.1.0 (a new library
/// before ALTER EXTENSION UPDATE).
pub(crate) fn queue(q: Queued) -> Result<i64> {
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
    // The INSERT runs as the table's owner: no code attached to it may run.
    if queue.has_code_attached {
        return Err(LambdaFdwError::QueueHasCode);
    }
    let owner = queue.owner;
    let payload = String::from_utf8_lossy(&q.payload).into_owned();
    let server = q.signed.server.as_ref().map(|s| s.oid);
    let id = table::as_owner(owner, || {
        table::with_pinned_search_path(|| {
            Spi::get_one_with_args::<i64>(
                INSERT,
                &[
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
                ],
            )
        })
    })
    .map_err(|e| LambdaFdwError::QueueWrite(Some(e.to_string())))?
    .ok_or(LambdaFdwError::QueueWrite(None))?;
    wake::wake_on_commit();
    warn_once_without_worker();
    Ok(id)
}

/// `lambda_fdw.enqueue`: checks as `aws_lambda.invoke` does, routes the
/// region as it does (see `route::region_route`), and queues.
fn enqueue(args: InvokeArgs, payload: Bytes) -> Result<i64> {
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
    // jsonb, text, text, text, jsonb).
    let (args, payload) = unsafe {
        let args = InvokeArgs {
            function_name: required("function_name", compat::text_arg(fcinfo, 0)),
            region: compat::text_arg(fcinfo, 2),
            invocation_type: required("invocation_type", compat::text_arg(fcinfo, 3)),
            log_type: "None".into(),
            context: compat::json_arg(fcinfo, 5, true),
            qualifier: compat::text_arg(fcinfo, 4),
        };
        (args, required("payload", compat::json_arg(fcinfo, 1, true)))
    };
    match enqueue(args, Bytes::from(payload)) {
        Ok(id) => id.into_datum().unwrap_or(Datum::from(0)),
        Err(e) => raise(e),
    }
}
