//! The scan at run time: BeginForeignScan, IterateForeignScan,
//! ReScanForeignScan and EndForeignScan are lambda_fdw's own, the way
//! postgres_fdw's are; supabase-wrappers' are not used.
//!
//! Why: supabase-wrappers rebuilds its scan state at every execution (option
//! maps, a memory context, the wrapper instance) and passes every row through
//! its cells; for a prepared one-payload query that was most of what the
//! foreign table cost above `aws_lambda.invoke`. Here:
//!
//! - begin: the request conditions' expressions (see `descriptor`) are
//!   initialized; the table's options and the caller's client settings are
//!   read; nothing is invoked.
//! - first row, and the first row after a rescan that changed parameters:
//!   the conditions are evaluated, and only values that differ from the last
//!   ones start new invocations (see `calls`); equal ones replay its rows.
//!   Rows are kept for replaying only where PostgreSQL may scan the node
//!   again ([`may_rescan`]); elsewhere (a top-level fan-out, the common case)
//!   each row is forgotten once returned, so a scan holds its window of calls
//!   in flight, not its whole result.
//! - rows are stored straight into the scan slot, in the per-tuple memory
//!   PostgreSQL resets before each row; only the columns the plan reads are
//!   computed.
//! - abort: PostgreSQL does not call EndForeignScan when a query fails or is
//!   cancelled. The scan's state (requests, calls in flight, buffered
//!   outcomes) is Rust memory, freed with the query's memory context however
//!   the query ended (see `state`).
//!
//! Offers the four callbacks, and [`scan_activity`] for EXPLAIN ANALYZE.

use std::ffi::{c_int, c_void};
use std::ptr;

use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;
use pgrx::{FromDatum, IntoDatum, JsonB, PgList, PgMemoryContexts};

use super::calls::{Activity, Answer, Scan};
use super::columns::{slot_columns, ColumnKind, RequestColumn};
use super::descriptor;
use super::product::{Allowed, Arg, Compare, JsonText};
use super::state;
use crate::error::{raise, Result};
use crate::pg::convert;

/// lambda_fdw's state of one running scan node, at `fdw_state`.
struct ScanNode {
    /// Per request condition: column, comparison, initialized expression.
    conditions: Vec<(RequestColumn, Compare, *mut pg_sys::ExprState)>,
    /// The values must be (re)computed before the next row.
    pending: bool,
    /// The values the scan's invocations were made for.
    last: Option<Vec<Allowed>>,
    /// The slot positions the plan reads, and what each holds.
    columns: Vec<(usize, ColumnKind)>,
    scan: Scan,
}

/// The field that holds a node's [`ScanNode`] (see `state`).
///
/// # Safety
/// `node` is a live scan node.
unsafe fn state_field(node: *mut pg_sys::ForeignScanState) -> *mut *mut c_void {
    // SAFETY: per the contract.
    unsafe { &raw mut (*node).fdw_state }
}

/// What the scan's calls came to so far, for EXPLAIN ANALYZE; `None` before
/// it began.
///
/// # Safety
/// `node` is a live scan node.
pub(crate) unsafe fn scan_activity(node: *mut pg_sys::ForeignScanState) -> Option<Activity> {
    // SAFETY: per the contract; the state is read and not kept.
    unsafe { state::get::<ScanNode>(state_field(node)).map(|s| s.scan.activity()) }
}

/// The role whose privileges and user mapping a scan uses: the owner of the
/// view it is read through (the range table entry's checkAsUser), else the
/// current user, as postgres_fdw does.
///
/// # Safety
/// `plan` is the node's ForeignScan and `estate` its executor state.
unsafe fn checking_user(
    plan: *mut pg_sys::ForeignScan,
    estate: *mut pg_sys::EState,
) -> pg_sys::Oid {
    // PostgreSQL 16 moved checkAsUser from the range table entry to the plan.
    // SAFETY: per the contract, the plan's scan relation is in the range table.
    #[cfg(feature = "pg15")]
    let user = unsafe { (*pg_sys::exec_rt_fetch((*plan).scan.scanrelid, estate)).checkAsUser };
    #[cfg(not(feature = "pg15"))]
    let user = {
        let _ = estate;
        // SAFETY: per the contract.
        unsafe { (*plan).checkAsUser }
    };
    if user == pg_sys::Oid::INVALID {
        // SAFETY: GetUserId has no preconditions inside a transaction.
        unsafe { pg_sys::GetUserId() }
    } else {
        user
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    eflags: c_int,
) {
    // SAFETY: the executor's node, whose plan is a ForeignScan made by
    // `planner`; its estate, query context and relation are live. The
    // expression states are allocated in the query context, as ExecInitNode
    // allocates everything of the node, and the node lives there too.
    unsafe {
        (*node).fdw_state = ptr::null_mut();
        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as c_int != 0 {
            return;
        }
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let Some(descriptor) = descriptor::decode(plan) else {
            error!("lambda_fdw: the plan of this foreign scan was not made by lambda_fdw");
        };
        let rel = (*node).ss.ss_currentRelation;
        let columns = slot_columns((*rel).rd_att, |n| descriptor.columns.includes(n))
            .unwrap_or_else(|e| raise(e));
        let user = checking_user(plan, (*node).ss.ps.state);
        let mut scan = Scan::open((*rel).rd_id, user).unwrap_or_else(|e| raise(e));
        scan.keep_outcomes(may_rescan(eflags, (*(*node).ss.ps.state).es_plannedstmt));
        scan.fast_start(descriptor.fast_start);
        let states = PgList::<pg_sys::ExprState>::from_pg(pg_sys::ExecInitExprList(
            (*plan).fdw_exprs,
            node as *mut pg_sys::PlanState,
        ));
        let conditions = descriptor
            .conditions
            .into_iter()
            .zip(states.iter_ptr())
            .map(|((column, compare), state)| (column, compare, state))
            .collect();
        let scan = ScanNode {
            conditions,
            pending: true,
            last: None,
            columns,
            scan,
        };
        state::install((*(*node).ss.ps.state).es_query_cxt, state_field(node), scan);
    }
}

/// Whether PostgreSQL may scan the node again, so that its outcomes must be
/// kept for a rescan with unchanged request values to replay.
///
/// A node is rescanned by a parent that asked for it (EXEC_FLAG_REWIND: the
/// inner side of a nested loop without parameters, an uncorrelated subplan;
/// BACKWARD and MARK: scrollable cursors, merge joins), or because
/// parameters changed: the inner side of a nested loop with parameters
/// (where ExecInitNestLoop takes REWIND away from the whole inner side, parts
/// that do not read the parameters included), a correlated subplan, the
/// recursive term of WITH RECURSIVE, Memoize. Every one of those sets a
/// PARAM_EXEC parameter, so a statement whose PARAM_EXEC parameters never
/// change while it runs rescans only nodes that were told.
///
/// # Safety
/// `stmt` is the running statement's plan.
unsafe fn may_rescan(eflags: c_int, stmt: *mut pg_sys::PlannedStmt) -> bool {
    let told =
        (pg_sys::EXEC_FLAG_REWIND | pg_sys::EXEC_FLAG_BACKWARD | pg_sys::EXEC_FLAG_MARK) as c_int;
    // SAFETY: per the contract.
    eflags & told != 0 || stmt.is_null() || unsafe { params_can_change(stmt) }
}

/// Whether any PARAM_EXEC parameter of a statement can take a new value
/// while it runs. The ones that cannot: an initplan's output when the
/// initplan depends on no parameter (it runs at most once: `= ANY(ARRAY(SELECT
/// ...))`, a scalar subquery, a CTE), and the parameters only EvalPlanQual's
/// own copy of the plan (ModifyTable's and LockRows' epqParam) or a Gather
/// being rescanned (its rescan_param) changes. Anything else, or a plan node
/// this walk does not know the children of, counts as changing.
///
/// # Safety
/// `stmt` is a valid PlannedStmt.
unsafe fn params_can_change(stmt: *mut pg_sys::PlannedStmt) -> bool {
    // SAFETY: the plan trees of a valid PlannedStmt; each node is cast only
    // after its tag is checked, and lists are read as the types they hold.
    unsafe {
        let count = PgList::<c_void>::from_pg((*stmt).paramExecTypes).len();
        if count == 0 {
            return false;
        }
        let mut fixed = vec![false; count];
        let mut fix = |param: c_int| {
            if let Some(f) = usize::try_from(param).ok().and_then(|p| fixed.get_mut(p)) {
                *f = true;
            }
        };
        let mut plans: Vec<*mut pg_sys::Plan> = vec![(*stmt).planTree];
        plans.extend(PgList::<pg_sys::Plan>::from_pg((*stmt).subplans).iter_ptr());
        let plan_list = |list: *mut pg_sys::List| {
            PgList::<pg_sys::Plan>::from_pg(list)
                .iter_ptr()
                .collect::<Vec<_>>()
        };
        while let Some(plan) = plans.pop() {
            if plan.is_null() {
                continue;
            }
            for init in PgList::<pg_sys::SubPlan>::from_pg((*plan).initPlan).iter_ptr() {
                if (*init).parParam.is_null() {
                    PgList::<c_int>::from_pg((*init).setParam)
                        .iter_int()
                        .for_each(&mut fix);
                }
            }
            plans.push((*plan).lefttree);
            plans.push((*plan).righttree);
            let node = plan as *mut pg_sys::Node;
            use pg_sys::NodeTag::*;
            match (*node).type_ {
                T_Append => plans.extend(plan_list((*(plan as *mut pg_sys::Append)).appendplans)),
                T_MergeAppend => {
                    plans.extend(plan_list((*(plan as *mut pg_sys::MergeAppend)).mergeplans))
                }
                T_BitmapAnd => {
                    plans.extend(plan_list((*(plan as *mut pg_sys::BitmapAnd)).bitmapplans))
                }
                T_BitmapOr => {
                    plans.extend(plan_list((*(plan as *mut pg_sys::BitmapOr)).bitmapplans))
                }
                T_SubqueryScan => plans.push((*(plan as *mut pg_sys::SubqueryScan)).subplan),
                T_CustomScan => {
                    plans.extend(plan_list((*(plan as *mut pg_sys::CustomScan)).custom_plans))
                }
                T_ModifyTable => fix((*(plan as *mut pg_sys::ModifyTable)).epqParam),
                T_LockRows => fix((*(plan as *mut pg_sys::LockRows)).epqParam),
                T_Gather => fix((*(plan as *mut pg_sys::Gather)).rescan_param),
                T_GatherMerge => fix((*(plan as *mut pg_sys::GatherMerge)).rescan_param),
                _ => {}
            }
        }
        fixed.contains(&false)
    }
}

/// The value(s) of one evaluated condition.
///
/// # Safety
/// `datum` is a value of the condition's type (an array for ANY/ALL).
unsafe fn values_of(
    column: RequestColumn,
    compare: Compare,
    datum: Datum,
    isnull: bool,
) -> Vec<Option<Arg>> {
    let json = matches!(column, RequestColumn::Payload | RequestColumn::Context);
    let one = |d: Datum| -> Option<Arg> {
        // SAFETY: d is a non-NULL value of the column's type.
        unsafe {
            if json {
                JsonB::from_datum(d, false).map(|j| Arg::Json(j.0.into()))
            } else {
                String::from_datum(d, false).map(Arg::Text)
            }
        }
    };
    if isnull {
        return vec![None];
    }
    match compare {
        Compare::Eq => vec![one(datum)],
        Compare::Any | Compare::All => {
            // SAFETY: deconstructing a valid array datum of a known element type.
            unsafe { array_elements(datum) }
                .into_iter()
                .map(|e| e.and_then(one))
                .collect()
        }
    }
}

/// The elements of an array datum, NULLs included, in order.
///
/// # Safety
/// `datum` is a non-NULL array.
unsafe fn array_elements(datum: Datum) -> Vec<Option<Datum>> {
    // SAFETY: deconstruct_array on a detoasted array with its own element
    // type's storage parameters; the outputs are palloc'd in the current
    // (per-tuple) memory context.
    unsafe {
        let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let elemtype = (*array).elemtype;
        let mut typlen: i16 = 0;
        let mut typbyval = false;
        let mut typalign: std::ffi::c_char = 0;
        pg_sys::get_typlenbyvalalign(elemtype, &mut typlen, &mut typbyval, &mut typalign);
        let mut values: *mut Datum = ptr::null_mut();
        let mut nulls: *mut bool = ptr::null_mut();
        let mut n: c_int = 0;
        pg_sys::deconstruct_array(
            array,
            elemtype,
            typlen as c_int,
            typbyval,
            typalign,
            &mut values,
            &mut nulls,
            &mut n,
        );
        (0..n as usize)
            .map(|i| (!*nulls.add(i)).then(|| *values.add(i)))
            .collect()
    }
}

/// Evaluates a scan's conditions in the node's per-tuple memory.
///
/// # Safety
/// `node` is the running scan the expression states were initialized for.
unsafe fn evaluate(
    node: *mut pg_sys::ForeignScanState,
    conditions: &[(RequestColumn, Compare, *mut pg_sys::ExprState)],
) -> Vec<Allowed> {
    // SAFETY: ExecEvalExpr's body (evalfunc) on states made by ExecInitExprList
    // for this node, in its expression context; results are converted to Rust
    // values before the per-tuple memory is reset.
    unsafe {
        let econtext = (*node).ss.ps.ps_ExprContext;
        let out = PgMemoryContexts::For((*econtext).ecxt_per_tuple_memory).switch_to(|_| {
            conditions
                .iter()
                .map(|&(column, compare, state)| {
                    let mut isnull = false;
                    let datum = match (*state).evalfunc {
                        // An error raised while evaluating (a failing subquery)
                        // must unwind through Rust frames as a panic, not a longjmp.
                        Some(f) => {
                            pg_sys::ffi::pg_guard_ffi_boundary(|| f(state, econtext, &mut isnull))
                        }
                        None => {
                            isnull = true;
                            Datum::from(0)
                        }
                    };
                    Allowed::new(column, compare, values_of(column, compare, datum, isnull))
                })
                .collect()
        });
        pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
        out
    }
}

fn text_datum(text: Option<&str>) -> Option<Datum> {
    text.and_then(IntoDatum::into_datum)
}

/// The value of one column of an answer's row, in the current memory context.
fn column_datum(kind: ColumnKind, answer: &Answer<'_>) -> Result<Option<Datum>> {
    let Answer {
        planned,
        outcome,
        display,
    } = answer;
    let json = |value: &JsonText| -> Result<Datum> {
        Ok(convert::jsonb_from_text(value.as_str().as_bytes()))
    };
    Ok(match kind {
        ColumnKind::Request(RequestColumn::Payload) => Some(json(planned.payload)?),
        ColumnKind::Request(RequestColumn::Context) => planned.context.map(json).transpose()?,
        ColumnKind::Request(RequestColumn::Qualifier) => text_datum(planned.qualifier),
        ColumnKind::Request(RequestColumn::InvocationType) => {
            text_datum(Some(planned.invocation_type.as_str()))
        }
        ColumnKind::Request(RequestColumn::LogType) => text_datum(Some(planned.log_type.as_str())),
        ColumnKind::StatusCode => outcome.status_code.into_datum(),
        ColumnKind::Response { json_text } => {
            convert::response_datum(outcome.payload.clone(), display, !json_text)?
        }
        ColumnKind::ExecutedVersion => text_datum(outcome.executed_version.as_deref()),
        ColumnKind::LogResult => text_datum(outcome.log_result.as_deref()),
        ColumnKind::FunctionError => text_datum(outcome.function_error.as_deref()),
    })
}

/// Stores an answer's row in the scan slot.
///
/// # Safety
/// `slot` is the node's cleared virtual scan slot; `columns` are positions in
/// its descriptor.
unsafe fn store_row(
    slot: *mut pg_sys::TupleTableSlot,
    columns: &[(usize, ColumnKind)],
    answer: &Answer<'_>,
) -> Result<()> {
    // SAFETY: a virtual slot's values and nulls arrays have natts entries.
    unsafe {
        let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
        let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
        nulls.fill(true);
        for &(i, kind) in columns {
            if let Some(datum) = column_datum(kind, answer)? {
                values[i] = datum;
                nulls[i] = false;
            }
        }
        pg_sys::ExecStoreVirtualTuple(slot);
    }
    Ok(())
}

#[pg_guard]
pub unsafe extern "C-unwind" fn iterate_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: the executor's node; a non-NULL fdw_state is the ScanNode made
    // by begin_foreign_scan, used by this call only. The row's values are
    // made in the node's per-tuple memory, which ExecScan resets before it
    // asks for the next row.
    unsafe {
        let slot = (*node).ss.ss_ScanTupleSlot;
        // ExecClearTuple, an inline function in PostgreSQL's headers.
        if let Some(clear) = (*(*slot).tts_ops).clear {
            clear(slot);
        }
        let Some(state) = state::get::<ScanNode>(state_field(node)) else {
            return slot;
        };
        if state.pending {
            let values = evaluate(node, &state.conditions);
            state.pending = false;
            if state.last.as_ref() != Some(&values) {
                state.last = None;
                state
                    .scan
                    .start_values(&values)
                    .unwrap_or_else(|e| raise(e));
                state.last = Some(values);
            }
        }
        let memory = (*(*node).ss.ps.ps_ExprContext).ecxt_per_tuple_memory;
        let stored = match state.scan.next_answer() {
            Err(e) => Err(e),
            Ok(None) => Ok(()),
            Ok(Some(answer)) => PgMemoryContexts::For(memory)
                .switch_to(|_| store_row(slot, &state.columns, &answer)),
        };
        stored.unwrap_or_else(|e| raise(e));
        slot
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn rescan_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: the executor's node; chgParam is its set of parameters changed
    // since the last scan.
    unsafe {
        let Some(state) = state::get::<ScanNode>(state_field(node)) else {
            return;
        };
        // The rows start again; new request values, if the rescan changed
        // them, are evaluated with the next row and invoke again only if
        // they differ.
        state.scan.rewind();
        if !(*node).ss.ps.chgParam.is_null() {
            state.pending = true;
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: the executor's node. Dropping the state drops any call still
    // in flight and its connection.
    unsafe { state::release::<ScanNode>(state_field(node)) }
}
