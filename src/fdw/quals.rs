//! Recognising the conditions that give request columns their values:
//! `<request column> = <expr>` (either way round), `= ANY(<array expr>)` and
//! `= ALL(<array expr>)`, with the column's own equality operator, where
//! `<expr>` does not read the foreign table itself and is not volatile.
//! Offers [`RequestQual`], [`request_qual`] (one clause), [`request_quals`]
//! (a RestrictInfo list) and [`request_var`] (is a node a request column).

use std::ffi::{c_int, CStr};

use pgrx::pg_sys::{self, Oid};
use pgrx::PgList;

use super::columns::RequestColumn;
use super::product::Compare;

/// A condition that gives a request column its value(s).
pub(crate) struct RequestQual {
    pub column: RequestColumn,
    pub compare: Compare,
    /// The side of the condition that is not the column.
    pub value: *mut pg_sys::Expr,
}

/// The column a Var of the scanned relation names, if it is a request column.
///
/// # Safety
/// `node` is a planner node; `root` and `relid` are the planner's.
pub(crate) unsafe fn request_var(
    root: *mut pg_sys::PlannerInfo,
    relid: pg_sys::Index,
    node: *mut pg_sys::Node,
) -> Option<(RequestColumn, Oid)> {
    // SAFETY: tags are checked before each cast; the range table entry of a
    // relation being planned is valid.
    unsafe {
        let mut node = node;
        while !node.is_null() && pgrx::is_a(node, pg_sys::NodeTag::T_RelabelType) {
            node = (*(node as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node;
        }
        if node.is_null() || !pgrx::is_a(node, pg_sys::NodeTag::T_Var) {
            return None;
        }
        let var = node as *mut pg_sys::Var;
        if (*var).varno as pg_sys::Index != relid || (*var).varlevelsup != 0 || (*var).varattno <= 0
        {
            return None;
        }
        let rte = *(*root).simple_rte_array.add(relid as usize);
        let name = pg_sys::get_attname((*rte).relid, (*var).varattno, true);
        if name.is_null() {
            return None;
        }
        let column = RequestColumn::named(CStr::from_ptr(name).to_str().ok()?)?;
        Some((column, (*var).vartype))
    }
}

/// Whether `value` can give the column its value: it does not read the
/// scanned relation and is not volatile.
///
/// # Safety
/// Planner arguments.
unsafe fn usable_value(
    root: *mut pg_sys::PlannerInfo,
    relid: pg_sys::Index,
    value: *mut pg_sys::Node,
) -> bool {
    // SAFETY: planner functions on the planner's own expression.
    unsafe {
        let varnos = pg_sys::pull_varnos(root, value);
        !pg_sys::bms_is_member(relid as c_int, varnos) && !pg_sys::contain_volatile_functions(value)
    }
}

/// The equality operator of a type.
fn equality_operator(type_oid: Oid) -> Oid {
    // SAFETY: the type cache entry of an existing type; eq_opr is a plain field.
    unsafe {
        let entry = pg_sys::lookup_type_cache(type_oid, pg_sys::TYPECACHE_EQ_OPR as c_int);
        if entry.is_null() {
            Oid::INVALID
        } else {
            (*entry).eq_opr
        }
    }
}

/// Recognizes `<request column> = value`, `value = <request column>`,
/// `<request column> = ANY(value)` and `<request column> = ALL(value)`.
///
/// # Safety
/// `clause` is a planner expression of the relation `relid` of `root`.
pub(crate) unsafe fn request_qual(
    root: *mut pg_sys::PlannerInfo,
    relid: pg_sys::Index,
    clause: *mut pg_sys::Expr,
) -> Option<RequestQual> {
    // SAFETY: tags are checked before each cast; list cells of an OpExpr's or
    // ScalarArrayOpExpr's args are expressions.
    unsafe {
        let node = clause as *mut pg_sys::Node;
        let (opno, args, compare) = if pgrx::is_a(node, pg_sys::NodeTag::T_OpExpr) {
            let op = node as *mut pg_sys::OpExpr;
            ((*op).opno, (*op).args, Compare::Eq)
        } else if pgrx::is_a(node, pg_sys::NodeTag::T_ScalarArrayOpExpr) {
            let op = node as *mut pg_sys::ScalarArrayOpExpr;
            let compare = if (*op).useOr {
                Compare::Any
            } else {
                Compare::All
            };
            ((*op).opno, (*op).args, compare)
        } else {
            return None;
        };
        let args = PgList::<pg_sys::Node>::from_pg(args);
        if args.len() != 2 {
            return None;
        }
        let (left, right) = (args.get_ptr(0)?, args.get_ptr(1)?);
        let (column, type_oid, value) = match request_var(root, relid, left) {
            Some((c, t)) => (c, t, right),
            // Only `=` may be written the other way round.
            None if compare == Compare::Eq => {
                let (c, t) = request_var(root, relid, right)?;
                (c, t, left)
            }
            None => return None,
        };
        if opno != equality_operator(type_oid) || !usable_value(root, relid, value) {
            return None;
        }
        Some(RequestQual {
            column,
            compare,
            value: value as *mut pg_sys::Expr,
        })
    }
}

/// The request conditions among a list of RestrictInfos.
///
/// # Safety
/// Planner arguments; `rinfos` is a List of RestrictInfo.
pub(crate) unsafe fn request_quals(
    root: *mut pg_sys::PlannerInfo,
    relid: pg_sys::Index,
    rinfos: *mut pg_sys::List,
) -> Vec<RequestQual> {
    // SAFETY: a RestrictInfo list from the planner.
    unsafe {
        PgList::<pg_sys::RestrictInfo>::from_pg(rinfos)
            .iter_ptr()
            .filter_map(|ri| request_qual(root, relid, (*ri).clause))
            .collect()
    }
}
