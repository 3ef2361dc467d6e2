//! Completion callbacks (0.6.0): `enqueue(..., on_complete => f)` and the
//! foreign-table option `on_complete` name a function that the worker calls
//! with the finished invocation's row (type `lambda_fdw.invocations`).
//!
//! The rules, each in one place here:
//! - [`check`]: the function exists, is a plain function (no procedure,
//!   aggregate or window function), takes exactly one argument, of the
//!   queue table's row type, returns no set, and the queuing role may
//!   EXECUTE it. Checked
//!   when the invocation is queued (as the role that queues it) and again
//!   before each call. A superuser's invocation calls only a function a
//!   superuser owns: the worker runs it later, as that superuser, and a
//!   table owner's `on_complete` must not become a superuser's code.
//! - [`run`]: after the round has recorded outcomes, in the same
//!   transaction, for each invocation that finished (`succeeded` or
//!   `failed`, not one queued again for a retry) and has a callback: the
//!   check again, then the call, as the role that queued the invocation
//!   (never the owner or the bootstrap superuser), in a security-restricted
//!   operation, with the round's pinned search_path (`pg_catalog, pg_temp`)
//!   unless the function sets its own; each in a subtransaction of its own.
//!   A callback that raises, or one that may no longer be called, leaves
//!   `callback_error`; the outcome stays recorded and the invocation is not
//!   sent again. Nothing here can fail the round.
//! - The call goes through the function manager by the function's OID (as
//!   PostgreSQL calls a trigger function), with the row read as the
//!   owner: no name is resolved, so no function another role made can be
//!   picked instead, and the queuing role needs no privilege on the queue
//!   table. The function's own SET clauses and SECURITY DEFINER apply as
//!   for any call; what it returns (NULL or not) is ignored.

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use crate::error::{LambdaFdwError, Result};
use crate::pg::catalog;

use super::error::WorkerError;
use super::table::{self, QueueTable};
use super::transaction::{in_subtransaction, log_unexpected};

/// What pg_proc says of function `$1` for role `$3`, with `$2` the queue
/// table's row type: its name for messages, whether it is a plain
/// function, whether it takes exactly that one argument, whether it
/// returns a set, whether the role may execute it, and whether a superuser
/// owns it where the role is one.
const LOOK: &str = "SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text, \
       p.prokind OPERATOR(pg_catalog.=) 'f', \
       p.pronargs OPERATOR(pg_catalog.=) 1 \
         AND p.proargtypes[0] OPERATOR(pg_catalog.=) $2::pg_catalog.oid, \
       p.proretset, \
       pg_catalog.has_function_privilege($3::pg_catalog.oid, p.oid, 'EXECUTE'), \
       NOT COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r \
                      WHERE r.oid OPERATOR(pg_catalog.=) $3::pg_catalog.oid), false) \
         OR COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r \
                       WHERE r.oid OPERATOR(pg_catalog.=) p.proowner), false) \
     FROM pg_catalog.pg_proc p \
     WHERE p.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid";

/// The finished invocation `$1`'s row, the callback's argument.
const ROW: &str = "SELECT i FROM lambda_fdw.invocations AS i WHERE i.id OPERATOR(pg_catalog.=) $1";

/// Finished invocations among `$1` that have a callback: id, role, function.
const DUE: &str = "SELECT id, queued_by::pg_catalog.oid, on_complete::pg_catalog.oid \
     FROM lambda_fdw.invocations \
     WHERE id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int8[]) \
       AND on_complete IS NOT NULL \
       AND state OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed']::pg_catalog.text[]) \
     ORDER BY id";

const CALLBACK_ERROR: &str = "UPDATE lambda_fdw.invocations SET callback_error = $2 \
     WHERE id OPERATOR(pg_catalog.=) $1";

/// The queue table's row type, the callbacks' one argument.
fn row_type(queue: &QueueTable) -> Oid {
    // SAFETY: a syscache lookup of an existing relation's pg_class row.
    unsafe { pg_sys::get_rel_type_id(queue.relid) }
}

/// Checks that `role` may have function `function` called with its
/// finished invocations (see the module's header). Run with the
/// search_path pinned.
pub(crate) fn check(function: Oid, role: Oid, queue: &QueueTable) -> Result<()> {
    let looked = Spi::connect(|c| {
        let rows = c.select(
            LOOK,
            Some(1),
            &[function.into(), row_type(queue).into(), role.into()],
        )?;
        Ok::<_, pgrx::spi::SpiError>(match rows.into_iter().next() {
            None => None,
            Some(r) => Some((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<bool>(2)?.unwrap_or(false),
                r.get::<bool>(3)?.unwrap_or(false),
                r.get::<bool>(4)?.unwrap_or(true),
                r.get::<bool>(5)?.unwrap_or(false),
                r.get::<bool>(6)?.unwrap_or(false),
            )),
        })
    })
    .map_err(|e| LambdaFdwError::QueueWrite(Some(e.to_string())))?;
    let Some((name, plain, one_row, returns_set, may_execute, trusted)) = looked else {
        return Err(LambdaFdwError::CallbackMissing {
            oid: function.to_u32(),
        });
    };
    if !plain {
        return Err(LambdaFdwError::CallbackNotAFunction { function: name });
    }
    if !one_row {
        return Err(LambdaFdwError::CallbackSignature { function: name });
    }
    if returns_set {
        return Err(LambdaFdwError::CallbackReturnsSet { function: name });
    }
    if !may_execute {
        return Err(LambdaFdwError::CallbackNoExecute { function: name });
    }
    if !trusted {
        return Err(LambdaFdwError::CallbackUntrusted { function: name });
    }
    Ok(())
}

/// The function a foreign table's `on_complete` option names (resolved
/// with the search_path pinned: write it schema-qualified).
pub(crate) fn resolve(name: &str) -> Result<Oid> {
    let sql = if name.contains('(') {
        "SELECT pg_catalog.to_regprocedure($1)::pg_catalog.oid"
    } else {
        "SELECT pg_catalog.to_regproc($1)::pg_catalog.oid"
    };
    table::with_pinned_search_path(|| Spi::get_one_with_args::<Oid>(sql, &[name.into()]))
        .ok()
        .flatten()
        .ok_or_else(|| LambdaFdwError::CallbackNotFound {
            name: name.to_string(),
        })
}

/// Calls the callback of invocation `id`, checked again, as `role`.
fn call_one(
    id: i64,
    role: Oid,
    function: Oid,
    queue: &QueueTable,
) -> std::result::Result<(), String> {
    if !catalog::exists(pg_sys::SysCacheIdentifier::AUTHOID, role) {
        return Err(format!(
            "role with OID {} no longer exists; the callback was not called",
            role.to_u32()
        ));
    }
    // The check and the call in one subtransaction: an error in either is
    // this callback's only.
    let called = in_subtransaction(|| {
        check(function, role, queue).map_err(|e| e.to_string())?;
        // Read-write, as in `run`: the row as just recorded.
        Spi::connect_mut(|c| {
            let rows = c.update(ROW, Some(1), &[id.into()])?;
            if rows.is_empty() {
                return Ok::<_, pgrx::spi::SpiError>(None);
            }
            let row = rows.first().get_datum_by_ordinal(1)?;
            // The row stays in SPI's memory until the connection ends,
            // after the call.
            Ok(row.map(|row| table::as_owner(role, || call_function(function, row))))
        })
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!("invocation {id} is no longer in the queue; the callback was not called")
        })
    });
    match called {
        Ok(result) => result,
        Err(e) => Err(e.to_string()),
    }
}

/// Calls plain function `function` (checked) with its one argument `arg`,
/// not NULL, through the function manager, ignoring what it returns. It
/// counts in `pg_stat_user_functions` (with `track_functions`) as a
/// trigger function's call does.
fn call_function(function: Oid, arg: pg_sys::Datum) {
    // SAFETY: fmgr_info fills `flinfo` for an existing function (just
    // checked, in this transaction; it raises an error otherwise). The call
    // information is zeroed with room for exactly one argument, filled as
    // PostgreSQL's InitFunctionCallInfoData does, and lives across the
    // call, as does the statistics' usage record (plain data, filled by
    // pgstat_init_function_usage); the call crosses the FFI guard, so an
    // error the function raises unwinds to the caller's subtransaction.
    unsafe {
        let mut flinfo = pg_sys::FmgrInfo::default();
        pg_sys::fmgr_info(function, &mut flinfo);
        let Some(addr) = flinfo.fn_addr else {
            return;
        };
        let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()
            + std::mem::size_of::<pg_sys::NullableDatum>();
        let fcinfo = pg_sys::palloc0(size).cast::<pg_sys::FunctionCallInfoBaseData>();
        (*fcinfo).flinfo = &mut flinfo;
        (*fcinfo).fncollation = Oid::INVALID;
        (*fcinfo).nargs = 1;
        (*fcinfo).args.as_mut_slice(1)[0] = pg_sys::NullableDatum {
            value: arg,
            isnull: false,
        };
        let mut usage: pg_sys::PgStat_FunctionCallUsage = std::mem::zeroed();
        pg_sys::pgstat_init_function_usage(fcinfo, &mut usage);
        pg_sys::ffi::pg_guard_ffi_boundary(|| addr(fcinfo));
        pg_sys::pgstat_end_function_usage(&mut usage, true);
        pg_sys::pfree(fcinfo.cast());
    }
}

/// Runs the callbacks of the invocations among `ids` that finished (see the
/// module's header); inside the round that recorded them, as the queue
/// table's owner, search_path pinned.
pub(crate) fn run(ids: &[i64], queue: &QueueTable) {
    if ids.is_empty() || !queue.since_0_6 {
        return;
    }
    let due = in_subtransaction(
        || -> std::result::Result<Vec<(i64, Oid, Oid)>, WorkerError> {
            // Read-write: a read-only call uses the round's first snapshot,
            // which does not see the outcomes just recorded.
            Ok(Spi::connect_mut(|c| {
                c.update(DUE, None, &[ids.to_vec().into()])?
                    .map(|r| {
                        Ok((
                            r.get::<i64>(1)?.unwrap_or_default(),
                            r.get::<Oid>(2)?.unwrap_or(Oid::INVALID),
                            r.get::<Oid>(3)?.unwrap_or(Oid::INVALID),
                        ))
                    })
                    .collect::<std::result::Result<Vec<_>, pgrx::spi::SpiError>>()
            })?)
        },
    );
    let due = match due {
        Ok(Ok(due)) => due,
        Ok(Err(e)) | Err(e) => {
            log_unexpected("find the callbacks to run", &e);
            return;
        }
    };
    for (id, role, function) in due {
        let Err(why) = call_one(id, role, function, queue) else {
            continue;
        };
        let stored = in_subtransaction(|| {
            Spi::run_with_args(CALLBACK_ERROR, &[id.into(), why.as_str().into()])
        });
        if !matches!(stored, Ok(Ok(()))) {
            log!(
                "lambda_fdw queue worker: the callback of invocation {id} failed and that could not be recorded: {why}"
            );
        }
    }
}
