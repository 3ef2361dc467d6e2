//! Guards against a supabase-wrappers 0.1.28 crash: its scan state lives in a
//! Rust box whose address the plan carries, and the box is freed when the scan
//! ends. A plan executed a second time (a prepared statement's generic plan,
//! a PL/pgSQL statement, a SQL function called per row) would read freed
//! memory and crash the backend.
//!
//! GetForeignPlan tags the plan with a serial number and records
//! (serial -> state address). BeginForeignScan consumes the record: a plan
//! whose record is gone is refused with an error instead of crashing, and
//! every execution marks the backend's cached plans for re-planning, so the
//! next execution of a prepared or PL/pgSQL statement is planned afresh.
//!
//! The same wrapping serves two smaller purposes: GetForeignRelSize runs with
//! wrappers' planning warnings filtered (see `quiet`), and ExplainForeignScan
//! adds lambda_fdw's own lines (see `explain`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::OnceLock;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::{PgList, PgSqlErrorCode};

struct Originals {
    get_rel_size: pg_sys::GetForeignRelSize_function,
    get_plan: pg_sys::GetForeignPlan_function,
    begin: pg_sys::BeginForeignScan_function,
    explain: pg_sys::ExplainForeignScan_function,
}

static ORIGINALS: OnceLock<Originals> = OnceLock::new();

thread_local! {
    static LIVE: RefCell<HashMap<i64, i64>> = RefCell::new(HashMap::new());
    static SERIAL: Cell<i64> = const { Cell::new(0) };
}

/// Replaces GetForeignRelSize, GetForeignPlan, BeginForeignScan and
/// ExplainForeignScan with the wrapped versions.
pub fn install(routine: &mut pg_sys::FdwRoutine) {
    let _ = ORIGINALS.set(Originals {
        get_rel_size: routine.GetForeignRelSize,
        get_plan: routine.GetForeignPlan,
        begin: routine.BeginForeignScan,
        explain: routine.ExplainForeignScan,
    });
    routine.ExplainForeignScan = Some(explain_foreign_scan);
    routine.GetForeignRelSize = Some(quiet_get_foreign_rel_size);
    routine.GetForeignPlan = Some(guarded_get_foreign_plan);
    routine.BeginForeignScan = Some(guarded_begin_foreign_scan);
}

/// ExplainForeignScan: lambda_fdw's lines, then supabase-wrappers' own.
/// Called by EXPLAIN only, with the executor's node and state.
#[pg_guard]
unsafe extern "C-unwind" fn explain_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: the executor's own arguments, passed through.
    unsafe {
        super::explain::explain(node, es);
        if let Some(original) = ORIGINALS.get().and_then(|o| o.explain) {
            pg_sys::ffi::pg_guard_ffi_boundary(|| original(node, es));
        }
    }
}

/// GetForeignRelSize with wrappers' planning warnings filtered (see quiet).
/// Called by the planner only, with its own valid arguments.
#[pg_guard]
unsafe extern "C-unwind" fn quiet_get_foreign_rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: Oid,
) {
    let Some(original) = ORIGINALS.get().and_then(|o| o.get_rel_size) else {
        error!("lambda_fdw: GetForeignRelSize is not initialised");
    };
    let _quiet = super::quiet::Planning::start();
    // SAFETY: the planner's own arguments, passed through; a PostgreSQL error
    // inside comes back as a Rust panic, so `_quiet` is dropped on every path.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| original(root, baserel, foreigntableid));
    }
}

/// The int8 Const at `index` of a plan's fdw_private list.
///
/// # Safety
/// `list` must be NULL or a List of Node pointers.
unsafe fn int8_at(list: *mut pg_sys::List, index: usize) -> Option<i64> {
    // SAFETY: per the contract, `list` is NULL or a pointer List.
    let items = unsafe { PgList::<pg_sys::Node>::from_pg(list) };
    let node = items.get_ptr(index)?;
    // SAFETY: the node is a live planner node; we check its tag before the cast.
    unsafe {
        if !pgrx::is_a(node, pg_sys::NodeTag::T_Const) {
            return None;
        }
        let c = node as *mut pg_sys::Const;
        if (*c).consttype != pg_sys::INT8OID || (*c).constisnull {
            return None;
        }
        i64::from_datum((*c).constvalue, false)
    }
}

/// Called by the planner only, with its own valid arguments.
#[pg_guard]
unsafe extern "C-unwind" fn guarded_get_foreign_plan(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: Oid,
    best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    let Some(original) = ORIGINALS.get().and_then(|o| o.get_plan) else {
        error!("lambda_fdw: GetForeignPlan is not initialised");
    };
    // SAFETY: we pass the planner's own arguments through unchanged.
    let scan = unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            original(
                root,
                baserel,
                foreigntableid,
                best_path,
                tlist,
                scan_clauses,
                outer_plan,
            )
        })
    };
    // SAFETY: `scan` is the ForeignScan node just made; its fdw_private is the
    // one-element list wrappers built, and lappend/makeConst allocate in the
    // planner's current memory context as any planner code does.
    unsafe {
        if let Some(state) = int8_at((*scan).fdw_private, 0) {
            let serial = SERIAL.with(|s| {
                s.set(s.get() + 1);
                s.get()
            });
            LIVE.with(|m| m.borrow_mut().insert(serial, state));
            let tag = pg_sys::makeConst(
                pg_sys::INT8OID,
                -1,
                pg_sys::InvalidOid,
                8,
                Datum::from(serial),
                false,
                true,
            );
            (*scan).fdw_private = pg_sys::lappend((*scan).fdw_private, tag.cast());
        }
    }
    scan
}

/// Called by the executor only, with a node of a plan made by this wrapper.
#[pg_guard]
unsafe extern "C-unwind" fn guarded_begin_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    eflags: c_int,
) {
    let Some(original) = ORIGINALS.get().and_then(|o| o.begin) else {
        error!("lambda_fdw: BeginForeignScan is not initialised");
    };
    // SAFETY: the executor hands us a ForeignScanState whose plan is a
    // ForeignScan made by guarded_get_foreign_plan (or copied from one).
    let (state, serial) = unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let list = (*plan).fdw_private;
        (int8_at(list, 0), int8_at(list, 1))
    };
    let fresh = match (state, serial) {
        (Some(state), Some(serial)) => LIVE.with(|m| m.borrow_mut().remove(&serial)) == Some(state),
        _ => false,
    };
    if !fresh {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "this plan of a lambda_fdw scan has already been executed",
            "a plan that scans a lambda_fdw table runs once; the next statement is planned again. Within one SQL function call, call the function per row with aws_lambda.invoke instead."
        );
    }
    // Mark every cached plan of this backend for re-planning, at once and
    // whatever happens to this transaction, so the next execution of this
    // statement gets a fresh scan state.
    // SAFETY: ResetPlanCache only flags plan cache entries; the plan running
    // now is reference-counted and stays valid.
    unsafe { pg_sys::ResetPlanCache() };
    // SAFETY: the state this plan carries is alive (checked above).
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| original(node, eflags)) }
}
