//! Paths and costs of a scan: how many rows it returns (one per
//! invocation, as far as planning can tell), what an invocation costs, the
//! plain path, and one parameterized path per set of outer relations a join
//! condition on `payload` can take its values from. A scan with no payload
//! would fail if run: it is costed as unusable, so that any other plan wins.
//! Offers [`estimate_size`] (GetForeignRelSize's estimate) and
//! [`add_paths`] (GetForeignPaths' paths).

use std::ffi::{c_int, c_void};
use std::ptr;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use super::columns::RequestColumn;
use super::product::Compare;
use super::quals::{request_qual, request_quals, request_var, RequestQual};

/// Planner cost of one invocation (a network round trip), in the units of
/// `seq_page_cost`: ten page reads. Higher figures would be truer to the
/// time a call takes, but PostgreSQL compiles with JIT (loading LLVM, about
/// 80 MB and tens of milliseconds) any query costed above `jit_above_cost`
/// (100,000), which would then be any join of a few hundred rows; JIT does
/// nothing for time spent waiting on Lambda.
const INVOCATION_COST: f64 = 10.0;
/// Rows assumed for `payload = ANY(<array known only at run time>)`.
const RUNTIME_ARRAY_ROWS: f64 = 100.0;
/// Cost of a scan that has no payload and would fail if run: high enough that
/// any other plan wins, as `disable_cost` does.
const UNUSABLE_COST: f64 = 1.0e10;
/// Row width estimate for the planner.
const ROW_WIDTH: i32 = 256;

/// How many invocations a condition on `payload` allows, as far as planning
/// can tell.
fn estimated_values(q: &RequestQual) -> f64 {
    if q.compare == Compare::Eq {
        return 1.0;
    }
    // SAFETY: the value is a planner expression; a Const there is of an
    // array type (the right side of `= ANY`).
    unsafe {
        if !pgrx::is_a(q.value as *mut pg_sys::Node, pg_sys::NodeTag::T_Const) {
            // Known only at run time.
            return RUNTIME_ARRAY_ROWS;
        }
        let c = q.value as *mut pg_sys::Const;
        if (*c).constisnull {
            return 0.0;
        }
        let array =
            pg_sys::pg_detoast_datum((*c).constvalue.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let dims = std::slice::from_raw_parts(
            (array as *mut u8).add(std::mem::size_of::<pg_sys::ArrayType>()) as *const c_int,
            (*array).ndim as usize,
        );
        pg_sys::ArrayGetNItems((*array).ndim, dims.as_ptr()) as f64
    }
}

/// Rows of a scan with these conditions: the fewest payloads any condition
/// on `payload` allows; `None` when no condition gives a payload.
fn estimated_rows<'a>(quals: impl IntoIterator<Item = &'a RequestQual>) -> Option<f64> {
    quals
        .into_iter()
        .filter(|q| q.column == RequestColumn::Payload)
        .map(estimated_values)
        .reduce(f64::min)
}

/// The rows and width of the relation's scan, from its request conditions.
///
/// # Safety
/// The planner's arguments to GetForeignRelSize.
pub(crate) unsafe fn estimate_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
) {
    // SAFETY: the planner's own arguments, set as GetForeignRelSize must.
    unsafe {
        let quals = request_quals(root, (*baserel).relid, (*baserel).baserestrictinfo);
        (*baserel).rows = estimated_rows(&quals).unwrap_or(1.0).max(1.0);
        (*(*baserel).reltarget).width = ROW_WIDTH;
    }
}

/// The ForeignPath of a scan invoking `rows` times (`None`: a scan with no
/// payload, which would fail if run).
///
/// # Safety
/// Planner arguments; `required_outer` is the planner's.
unsafe fn add_scan_path(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    rows: Option<f64>,
    required_outer: *mut pg_sys::Bitmapset,
) {
    let (rows, total) = match rows {
        Some(rows) => (rows.max(1.0), rows.max(1.0) * INVOCATION_COST),
        None => (1.0, UNUSABLE_COST),
    };
    // SAFETY: create_foreignscan_path and add_path with the planner's objects.
    unsafe {
        let path = pg_sys::create_foreignscan_path(
            root,
            baserel,
            ptr::null_mut(),
            rows,
            #[cfg(feature = "pg18")]
            0,
            0.0,
            total,
            ptr::null_mut(),
            required_outer,
            ptr::null_mut(),
            #[cfg(feature = "pg18")]
            ptr::null_mut(),
            ptr::null_mut(),
        );
        pg_sys::add_path(baserel, path as *mut pg_sys::Path);
    }
}

/// Matches the equivalence-class member that is this relation's `payload`.
#[pg_guard]
unsafe extern "C-unwind" fn is_payload_member(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    _ec: *mut pg_sys::EquivalenceClass,
    em: *mut pg_sys::EquivalenceMember,
    _arg: *mut c_void,
) -> bool {
    // SAFETY: called by generate_implied_equalities_for_column with live nodes.
    unsafe {
        matches!(
            request_var(root, (*rel).relid, (*em).em_expr as *mut pg_sys::Node),
            Some((RequestColumn::Payload, _))
        )
    }
}

/// The plain scan, costed per invocation (or as unusable without a
/// payload), and one parameterized scan per set of outer relations a join
/// condition on `payload` can take its values from.
///
/// # Safety
/// The planner's arguments to GetForeignPaths.
pub(crate) unsafe fn add_paths(root: *mut pg_sys::PlannerInfo, baserel: *mut pg_sys::RelOptInfo) {
    // SAFETY: the planner's own arguments, used as GetForeignPaths may.
    unsafe {
        let relid = (*baserel).relid;
        let own = request_quals(root, relid, (*baserel).baserestrictinfo);
        add_scan_path(root, baserel, estimated_rows(&own), ptr::null_mut());

        // Join conditions on payload: plain ones, and those implied by
        // equivalence classes (`e.payload = d.doc` is one of those).
        let mut candidates: Vec<*mut pg_sys::RestrictInfo> =
            PgList::<pg_sys::RestrictInfo>::from_pg((*baserel).joininfo)
                .iter_ptr()
                .collect();
        if (*baserel).has_eclass_joins {
            let implied = pg_sys::generate_implied_equalities_for_column(
                root,
                baserel,
                Some(is_payload_member),
                ptr::null_mut(),
                (*baserel).lateral_referencers,
            );
            candidates.extend(PgList::<pg_sys::RestrictInfo>::from_pg(implied).iter_ptr());
        }
        let mut seen: Vec<*mut pg_sys::ParamPathInfo> = Vec::new();
        for ri in candidates {
            let Some(q) = request_qual(root, relid, (*ri).clause) else {
                continue;
            };
            if q.column != RequestColumn::Payload || !pg_sys::join_clause_is_movable_to(ri, baserel)
            {
                continue;
            }
            let mut outer = pg_sys::bms_union((*ri).clause_relids, (*baserel).lateral_relids);
            outer = pg_sys::bms_del_member(outer, relid as c_int);
            if pg_sys::bms_num_members(outer) == 0 {
                continue;
            }
            let info = pg_sys::get_baserel_parampathinfo(root, baserel, outer);
            if info.is_null() || seen.contains(&info) {
                continue;
            }
            seen.push(info);
            // Its invocations: the fewest payloads of its own conditions and
            // of the join conditions moved into it, per outer row.
            let moved = request_quals(root, relid, (*info).ppi_clauses);
            add_scan_path(
                root,
                baserel,
                estimated_rows(moved.iter().chain(own.iter())),
                outer,
            );
        }
    }
}
