//! INSERT into a lambda_fdw foreign table: one queued invocation per row,
//! sent after COMMIT (see `queue`). The row gives the request columns
//! (`payload`, and optionally `qualifier`, `invocation_type`, `context`);
//! the table gives the function and the defaults. UPDATE and DELETE are
//! refused while planning. lambda_fdw's own callbacks replace
//! supabase-wrappers' modify path, which needs a `rowid_column` option that
//! means nothing for a Lambda function.
//!
//! Offers the callbacks IsForeignRelUpdatable, PlanForeignModify,
//! BeginForeignModify, BeginForeignInsert, ExecForeignInsert and
//! EndForeignModify (EXPLAIN's lines are `explain`'s).

use std::ffi::{c_int, c_void};
use std::rc::Rc;

use bytes::Bytes;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::FromDatum;

use super::columns::{slot_columns, ColumnKind, RequestColumn};
use super::state;
use crate::error::{raise, LambdaFdwError, Result};
use crate::pg::convert;
use crate::queue::{check_queued, queue, resolve_callback, Queued};
use crate::settings::route::{self, TableRoute};
use lambda_fdw_core::{InvocationType, InvokeRequest, LogType};

/// An INSERT's view of its table: function and defaults, and every column's
/// slot position and kind.
struct InsertNode {
    route: Rc<TableRoute>,
    columns: Vec<(usize, ColumnKind)>,
    relation: String,
    relid: pg_sys::Oid,
    /// The role the rows are queued as: the view's owner for an INSERT
    /// through a view, else the current user (see `checking_user`).
    user: pg_sys::Oid,
}

/// The role whose privileges and user mapping an INSERT uses: the owner of
/// the view it goes through (checkAsUser), else the current user, as
/// postgres_fdw does.
///
/// # Safety
/// `estate` and `rinfo` are the executor's.
unsafe fn checking_user(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
) -> pg_sys::Oid {
    // SAFETY: per the contract; a partition a row is routed to has no range
    // table entry of its own (index 0): its root's applies, as in
    // postgres_fdw; COPY's relation may have none at all.
    #[cfg(feature = "pg15")]
    let user = unsafe {
        let mut index = (*rinfo).ri_RangeTableIndex;
        let root = (*rinfo).ri_RootResultRelInfo;
        if index == 0 && !root.is_null() {
            index = (*root).ri_RangeTableIndex;
        }
        if index == 0 {
            pg_sys::Oid::INVALID
        } else {
            (*pg_sys::exec_rt_fetch(index, estate)).checkAsUser
        }
    };
    // SAFETY: per the contract; PostgreSQL 16 finds the entry of routed
    // partitions through their root.
    #[cfg(not(feature = "pg15"))]
    let user = unsafe { pg_sys::ExecGetResultRelCheckAsUser(rinfo, estate) };
    if user == pg_sys::Oid::INVALID {
        // SAFETY: GetUserId has no preconditions inside a transaction.
        unsafe { pg_sys::GetUserId() }
    } else {
        user
    }
}

/// IsForeignRelUpdatable: INSERT only.
#[pg_guard]
pub unsafe extern "C-unwind" fn is_foreign_rel_updatable(_rel: pg_sys::Relation) -> c_int {
    1 << pg_sys::CmdType::CMD_INSERT as c_int
}

/// PlanForeignModify: nothing to plan for INSERT; UPDATE and DELETE are refused.
#[pg_guard]
pub unsafe extern "C-unwind" fn plan_foreign_modify(
    root: *mut pg_sys::PlannerInfo,
    plan: *mut pg_sys::ModifyTable,
    result_relation: pg_sys::Index,
    _subplan_index: c_int,
) -> *mut pg_sys::List {
    // SAFETY: the planner's own arguments; the range table entry of the
    // result relation is valid while planning.
    unsafe {
        if (*plan).operation != pg_sys::CmdType::CMD_INSERT {
            let rte = pg_sys::planner_rt_fetch(result_relation, root);
            let name = pg_sys::get_rel_name((*rte).relid);
            let name = if name.is_null() {
                "?".to_string()
            } else {
                std::ffi::CStr::from_ptr(name)
                    .to_string_lossy()
                    .into_owned()
            };
            let verb = if (*plan).operation == pg_sys::CmdType::CMD_UPDATE {
                "update"
            } else {
                "delete from"
            };
            pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cannot {verb} lambda_fdw foreign table \"{name}\""),
                "lambda_fdw",
            )
            .set_hint("an INSERT into a lambda_fdw foreign table queues one invocation per row, sent after COMMIT; queued invocations are in lambda_fdw.invocations")
            .report(PgLogLevel::ERROR);
        }
    }
    std::ptr::null_mut()
}

/// The field that holds a result relation's [`InsertNode`].
///
/// # Safety
/// `rinfo` is a live ResultRelInfo.
unsafe fn state_field(rinfo: *mut pg_sys::ResultRelInfo) -> *mut *mut c_void {
    // SAFETY: per the contract.
    unsafe { &raw mut (*rinfo).ri_FdwState }
}

/// # Safety
/// `estate` and `rinfo` are the executor's, for a lambda_fdw foreign table.
unsafe fn begin(estate: *mut pg_sys::EState, rinfo: *mut pg_sys::ResultRelInfo) {
    // SAFETY: per the contract; the relation is open and its descriptor
    // has natts attributes.
    unsafe {
        let rel = (*rinfo).ri_RelationDesc;
        let columns = slot_columns((*rel).rd_att, |_| true).unwrap_or_else(|e| raise(e));
        let route = route::table_route((*rel).rd_id).unwrap_or_else(|e| raise(e));
        let relation = pgrx::name_data_to_str(&(*(*rel).rd_rel).relname).to_string();
        let user = checking_user(estate, rinfo);
        state::install(
            (*estate).es_query_cxt,
            state_field(rinfo),
            InsertNode {
                route,
                columns,
                relation,
                relid: (*rel).rd_id,
                user,
            },
        );
    }
}

/// BeginForeignModify: reads the table's column model and options.
#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_modify(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    _fdw_private: *mut pg_sys::List,
    _subplan_index: c_int,
    eflags: c_int,
) {
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as c_int != 0 {
        return;
    }
    // SAFETY: the executor's own arguments.
    unsafe { begin((*mtstate).ps.state, rinfo) }
}

/// BeginForeignInsert: the same, for COPY FROM and rows routed to a
/// partition that is a lambda_fdw table.
#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_insert(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
) {
    // SAFETY: the executor's own arguments.
    unsafe { begin((*mtstate).ps.state, rinfo) }
}

/// The row's request values: (payload, qualifier, invocation_type, context).
type RowValues = (
    Option<Bytes>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Reads the request columns of a row, refusing answer columns.
///
/// # Safety
/// `slot` holds a row of the relation `node` was made for, all attributes
/// deformed.
unsafe fn read_row(node: &InsertNode, slot: *mut pg_sys::TupleTableSlot) -> Result<RowValues> {
    let mut values: RowValues = (None, None, None, None);
    for &(i, kind) in &node.columns {
        // SAFETY: per the contract, position i < natts is deformed.
        let (datum, isnull) = unsafe { (*(*slot).tts_values.add(i), *(*slot).tts_isnull.add(i)) };
        if isnull {
            continue;
        }
        let text = || -> Option<String> {
            // SAFETY: a non-NULL text datum (column_kind checked the type).
            unsafe { String::from_datum(datum, false) }
        };
        // SAFETY: a non-NULL jsonb datum (column_kind checked the type).
        let json = || unsafe { convert::jsonb_text(datum) };
        match kind {
            ColumnKind::Request(RequestColumn::Payload) => values.0 = Some(Bytes::from(json())),
            ColumnKind::Request(RequestColumn::Qualifier) => values.1 = text(),
            ColumnKind::Request(RequestColumn::InvocationType) => values.2 = text(),
            ColumnKind::Request(RequestColumn::Context) => values.3 = Some(json()),
            ColumnKind::Request(RequestColumn::LogType) => {
                return Err(LambdaFdwError::NotInsertable {
                    column: "log_type",
                    why: "a queued invocation keeps no log",
                })
            }
            _ => {
                return Err(LambdaFdwError::NotInsertable {
                    column: kind.name(),
                    why: "it is filled from the function's answer",
                })
            }
        }
    }
    Ok(values)
}

/// Queues the invocation a row asks for; returns its id.
fn queue_row(node: &InsertNode, row: RowValues) -> Result<i64> {
    let (payload, qualifier, invocation_type, context) = row;
    let table = &node.route.table;
    let payload = payload.ok_or_else(|| LambdaFdwError::NoPayloadToQueue {
        table: node.relation.clone(),
    })?;
    let qualifier = qualifier.or_else(|| table.qualifier.clone());
    let invocation_type = match invocation_type {
        Some(t) => InvocationType::parse(&t)?,
        None => table.invocation_type,
    };
    let region = &node.route.server_options.region;
    let target = table
        .function
        .resolve(Some(region), qualifier.as_deref(), None)?;
    // Sizes and the caller's context, then with the id it will carry.
    let request = InvokeRequest::new(
        target,
        invocation_type,
        LogType::None,
        context.as_deref(),
        payload.clone(),
    )?;
    check_queued(&request, context.as_deref(), &payload)?;
    // The gate of a scan: USAGE on the server and the credentials rule.
    let signed = route::table_signing(&node.route.server, &node.route.server_options, node.user)?;
    queue(Queued {
        queued_by: node.user,
        function_name: table.function_name.clone(),
        region: region.clone(),
        qualifier,
        invocation_type,
        payload,
        context,
        signed,
        foreign_table: Some(node.relid),
        ordering_key: table.ordering_key.clone(),
        on_complete: table
            .on_complete
            .as_deref()
            .map(resolve_callback)
            .transpose()?,
        not_before: None,
    })
}

/// ExecForeignInsert: queues the row's invocation; the row is returned as
/// given (for RETURNING, the answer columns are NULL).
#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_insert(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    _plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: the executor's own arguments; begin set the state up. The
    // slot is deformed in full (slot_getallattrs) before it is read.
    unsafe {
        let Some(node) = state::get::<InsertNode>(state_field(rinfo)) else {
            error!("lambda_fdw: INSERT without BeginForeignModify");
        };
        let natts = (*(*slot).tts_tupleDescriptor).natts;
        if ((*slot).tts_nvalid as c_int) < natts {
            pg_sys::slot_getsomeattrs_int(slot, natts);
        }
        if let Err(e) = read_row(node, slot).and_then(|row| queue_row(node, row)) {
            raise(e);
        }
        slot
    }
}

/// EndForeignModify and EndForeignInsert.
#[pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_modify(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
) {
    // SAFETY: the executor's own ResultRelInfo.
    unsafe { state::release::<InsertNode>(state_field(rinfo)) }
}
