//! Planning a scan of a lambda_fdw foreign table: GetForeignRelSize,
//! GetForeignPaths and GetForeignPlan are lambda_fdw's own (supabase-wrappers'
//! would evaluate parameters before PostgreSQL has set them, drop
//! `= ANY(<non-constant array>)`, and offer no parameterized paths).
//!
//! - GetForeignRelSize checks the table, then estimates its rows from the
//!   request conditions (`quals` recognises them, `paths` estimates).
//! - GetForeignPaths adds the plain path and the parameterized ones (`paths`).
//! - GetForeignPlan makes the plan: the request conditions' expressions go
//!   into `fdw_exprs` and their descriptor (which column, which comparison,
//!   which columns the scan must fill) into `fdw_private`, laid out as
//!   `descriptor` declares; `executor` evaluates them at run time. Every
//!   other condition is the scan's filter.

use std::ffi::c_void;
use std::ptr;

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::PgList;

use super::columns::check_table;
use super::descriptor::{self, Columns, Descriptor};
use super::paths;
use super::quals::request_qual;
use crate::error::raise;

/// GetForeignRelSize: checks the table (every column, and the function
/// name against the server's region) before anything is planned, and
/// estimates the rows from the request conditions.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: Oid,
) {
    if let Err(e) = check_table(foreigntableid) {
        raise(e);
    }
    // SAFETY: the planner's own arguments.
    unsafe { paths::estimate_size(root, baserel) }
}

/// GetForeignPaths: the plain scan, costed per invocation (or as unusable
/// without a payload), and one parameterized scan per set of outer relations
/// a join condition on `payload` can take its values from.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _foreigntableid: Oid,
) {
    // SAFETY: the planner's own arguments.
    unsafe { paths::add_paths(root, baserel) }
}

/// The attribute numbers of `relid`'s columns that `node` reads, added to
/// `columns`; `None` once a whole-row reference means all of them.
///
/// # Safety
/// `node` is a planner expression or list of them.
unsafe fn add_columns(
    node: *mut pg_sys::Node,
    relid: pg_sys::Index,
    columns: Option<Vec<i16>>,
) -> Option<Vec<i16>> {
    let mut columns = columns?;
    let mut attrs: *mut pg_sys::Bitmapset = ptr::null_mut();
    // SAFETY: pull_varattnos walks the expression; bms_next_member reads the
    // set it built. Members are offset by FirstLowInvalidHeapAttributeNumber.
    unsafe {
        pg_sys::pull_varattnos(node, relid, &mut attrs);
        let mut member = -1;
        loop {
            member = pg_sys::bms_next_member(attrs, member);
            if member < 0 {
                break;
            }
            let attnum = member + pg_sys::FirstLowInvalidHeapAttributeNumber;
            if attnum == 0 {
                return None;
            }
            // System columns are the executor's to fill.
            if attnum > 0 && !columns.contains(&(attnum as i16)) {
                columns.push(attnum as i16);
            }
        }
    }
    Some(columns)
}

/// GetForeignPlan: the request conditions' values go into `fdw_exprs`, their
/// descriptor into `fdw_private`; every other condition is the filter.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_plan(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _foreigntableid: Oid,
    _best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    // SAFETY: the planner's own arguments; the node is made by PostgreSQL's
    // make_foreignscan from lists built in the planner's memory context.
    unsafe {
        // The request conditions are enforced by the scan itself: every row
        // it returns answers one of the requests they allow, and echoes it.
        // They are not rechecked in the filter, where `payload = ANY(<array
        // known at run time>)` would compare every row with every element
        // (PostgreSQL hashes only constant arrays): quadratic in the fan-out.
        let relid = (*baserel).relid;
        let mut quals = Vec::new();
        let mut filter = PgList::<pg_sys::Expr>::new();
        for ri in PgList::<pg_sys::RestrictInfo>::from_pg(scan_clauses).iter_ptr() {
            // Pseudo-constant conditions are checked by a Result node above.
            if (*ri).pseudoconstant {
                continue;
            }
            match request_qual(root, relid, (*ri).clause) {
                Some(q) => quals.push(q),
                None => filter.push((*ri).clause),
            }
        }
        let filter = filter.into_pg();
        // The columns the scan fills: those the query reads above the scan,
        // and those its filter reads.
        let columns = add_columns(
            (*(*baserel).reltarget).exprs as *mut pg_sys::Node,
            relid,
            Some(Vec::new()),
        );
        let columns = add_columns(filter as *mut pg_sys::Node, relid, columns);
        let descriptor = Descriptor {
            conditions: quals.iter().map(|q| (q.column, q.compare)).collect(),
            columns: columns.map_or(Columns::All, |mut c| {
                c.sort_unstable();
                Columns::Only(c)
            }),
            fast_start: (*root).tuple_fraction > 0.0,
        };
        // One expression per condition, in the descriptor's order.
        let mut exprs = PgList::<pg_sys::Expr>::new();
        for q in &quals {
            exprs.push(pg_sys::copyObjectImpl(q.value as *const c_void) as *mut pg_sys::Expr);
        }
        pg_sys::make_foreignscan(
            tlist,
            filter,
            relid,
            exprs.into_pg(),
            descriptor::encode(&descriptor),
            ptr::null_mut(),
            ptr::null_mut(),
            outer_plan,
        )
    }
}
