//! lambda_fdw owns the conditions that give request columns their values.
//!
//! Why this seam exists: supabase-wrappers 0.2.4 evaluates parameters of
//! pushed-down conditions inside BeginForeignScan, before PostgreSQL has set
//! up the node's initplans or a nested loop has an outer row. A condition such
//! as `payload = (SELECT ...)` then reads garbage and crashes the backend; it
//! also drops `= ANY(<non-constant array>)` and offers no parameterized paths,
//! so a join on `payload` can never reach the scan. So, the way postgres_fdw
//! does it:
//!
//! - planning: supabase-wrappers never sees a WHERE condition (it gets the
//!   columns they use, so the rows still carry them). The conditions of the
//!   form `<request column> = <expr>`, `= ANY(<array expr>)` and
//!   `= ALL(<array expr>)`, where `<expr>` does not read the foreign table
//!   itself and is not volatile, are carried in the plan's `fdw_exprs`, with
//!   a descriptor (which column, which comparison) in `fdw_private`. Every
//!   condition also stays in the scan's filter, which the echoed request
//!   columns satisfy. A join on `payload` gets a parameterized path (one
//!   invocation per outer value); a scan with no payload at all is costed as
//!   unusable, so such a path wins wherever one exists.
//! - execution: the expressions are initialized when the scan begins,
//!   evaluated when the first row is fetched and again after a rescan that
//!   changed parameters; the values reach `LambdaFdw::iter_scan` through a
//!   hand-off slot (see [`take_request_values`]), and only changed values
//!   invoke again.
//! - abort: PostgreSQL does not call EndForeignScan when a query fails or is
//!   cancelled, and supabase-wrappers keeps the scan's state (ours included:
//!   requests, calls in flight, buffered outcomes) in Rust memory it frees only
//!   there. A reset callback on the query's memory context ends the scan when
//!   that context goes away, whichever way the query ended.
//!
//! The same wrapping puts lambda_fdw's lines in EXPLAIN (see `explain`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::{FromDatum, IntoDatum, JsonB, PgList};

use super::columns::RequestColumn;
use super::explain;
use super::plan::{Allowed, Arg, Compare};

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
/// Marks lambda_fdw's descriptor at the end of `fdw_private`.
const DESCRIPTOR_PREFIX: &str = "lambda_fdw:";

struct Originals {
    get_rel_size: pg_sys::GetForeignRelSize_function,
    get_plan: pg_sys::GetForeignPlan_function,
    begin: pg_sys::BeginForeignScan_function,
    iterate: pg_sys::IterateForeignScan_function,
    rescan: pg_sys::ReScanForeignScan_function,
    end: pg_sys::EndForeignScan_function,
}

static ORIGINALS: OnceLock<Originals> = OnceLock::new();

/// Wraps the scan callbacks of supabase-wrappers' routine.
pub fn install(routine: &mut pg_sys::FdwRoutine) {
    let _ = ORIGINALS.set(Originals {
        get_rel_size: routine.GetForeignRelSize,
        get_plan: routine.GetForeignPlan,
        begin: routine.BeginForeignScan,
        iterate: routine.IterateForeignScan,
        rescan: routine.ReScanForeignScan,
        end: routine.EndForeignScan,
    });
    routine.GetForeignRelSize = Some(get_foreign_rel_size);
    routine.GetForeignPaths = Some(get_foreign_paths);
    routine.GetForeignPlan = Some(get_foreign_plan);
    routine.ExplainForeignScan = Some(explain_foreign_scan);
    routine.BeginForeignScan = Some(begin_foreign_scan);
    routine.IterateForeignScan = Some(iterate_foreign_scan);
    routine.ReScanForeignScan = Some(rescan_foreign_scan);
    routine.EndForeignScan = Some(end_foreign_scan);
    // Aggregates are never pushed down to a Lambda function.
    routine.GetForeignUpperPaths = None;
}

fn originals() -> &'static Originals {
    match ORIGINALS.get() {
        Some(o) => o,
        None => error!("lambda_fdw: scan callbacks are not initialised"),
    }
}

// ---------------------------------------------------------------------------
// The descriptor: which request column and comparison each fdw_expr is for.

fn compare_code(c: Compare) -> char {
    match c {
        Compare::Eq => '=',
        Compare::Any => '~',
        Compare::All => '&',
    }
}

const REQUEST_COLUMNS: [RequestColumn; 5] = [
    RequestColumn::Payload,
    RequestColumn::Qualifier,
    RequestColumn::InvocationType,
    RequestColumn::LogType,
    RequestColumn::Context,
];

fn request_column(name: &str) -> Option<RequestColumn> {
    REQUEST_COLUMNS.into_iter().find(|c| c.name() == name)
}

/// `lambda_fdw:payload=,qualifier~`: one entry per fdw_expr, in order.
fn encode_descriptor(conditions: &[(RequestColumn, Compare)]) -> String {
    let entries: Vec<String> = conditions
        .iter()
        .map(|(col, cmp)| format!("{}{}", col.name(), compare_code(*cmp)))
        .collect();
    format!("{DESCRIPTOR_PREFIX}{}", entries.join(","))
}

fn decode_descriptor(text: &str) -> Option<Vec<(RequestColumn, Compare)>> {
    let body = text.strip_prefix(DESCRIPTOR_PREFIX)?;
    if body.is_empty() {
        return Some(Vec::new());
    }
    body.split(',')
        .map(|entry| {
            let code = entry.chars().last()?;
            let column = request_column(&entry[..entry.len() - code.len_utf8()])?;
            let compare = [Compare::Eq, Compare::Any, Compare::All]
                .into_iter()
                .find(|c| compare_code(*c) == code)?;
            Some((column, compare))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Planning.

/// A condition that gives a request column its value(s).
struct RequestQual {
    column: RequestColumn,
    compare: Compare,
    /// The side of the condition that is not the column.
    value: *mut pg_sys::Expr,
}

/// The column a Var of the scanned relation names, if it is a request column.
///
/// # Safety
/// `node` is a planner node; `root` and `relid` are the planner's.
unsafe fn request_var(
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
        let column = request_column(CStr::from_ptr(name).to_str().ok()?)?;
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
        #[cfg(not(feature = "pg13"))]
        let varnos = pg_sys::pull_varnos(root, value);
        #[cfg(feature = "pg13")]
        let varnos = {
            let _ = root;
            pg_sys::pull_varnos(value)
        };
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
unsafe fn request_qual(
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
unsafe fn request_quals(
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
fn estimated_rows(quals: &[RequestQual]) -> Option<f64> {
    quals
        .iter()
        .filter(|q| q.column == RequestColumn::Payload)
        .map(estimated_values)
        .reduce(f64::min)
}

/// GetForeignRelSize: supabase-wrappers plans the scan without seeing any
/// condition (see the module's comment); the row estimate is lambda_fdw's.
#[pg_guard]
unsafe extern "C-unwind" fn get_foreign_rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: Oid,
) {
    let Some(original) = originals().get_rel_size else {
        return;
    };
    // SAFETY: the planner's own arguments. The relation's conditions and
    // target are swapped for the duration of the call and put back after it;
    // the stand-in target is a copy, made in the planner's memory context,
    // with the columns the filter's conditions use added, so the scan still
    // returns them.
    unsafe {
        let conditions = (*baserel).baserestrictinfo;
        let target = (*baserel).reltarget;
        let stand_in = pg_sys::copy_pathtarget(target);
        let relid = (*baserel).relid;
        let mut quals = Vec::new();
        for ri in PgList::<pg_sys::RestrictInfo>::from_pg(conditions).iter_ptr() {
            // The request conditions are the scan's own (see get_foreign_plan),
            // not its filter's: their columns are needed only if selected.
            if let Some(q) = request_qual(root, relid, (*ri).clause) {
                quals.push(q);
                continue;
            }
            let vars = pg_sys::pull_var_clause(
                (*ri).clause as *mut pg_sys::Node,
                (pg_sys::PVC_RECURSE_AGGREGATES
                    | pg_sys::PVC_RECURSE_WINDOWFUNCS
                    | pg_sys::PVC_RECURSE_PLACEHOLDERS) as c_int,
            );
            pg_sys::add_new_columns_to_pathtarget(stand_in, vars);
        }
        (*baserel).baserestrictinfo = ptr::null_mut();
        (*baserel).reltarget = stand_in;
        // An error raised inside ends planning; nothing then reads the relation.
        pg_sys::ffi::pg_guard_ffi_boundary(|| original(root, baserel, foreigntableid));
        (*baserel).baserestrictinfo = conditions;
        (*baserel).reltarget = target;
        (*target).width = (*stand_in).width;
        (*baserel).rows = estimated_rows(&quals).unwrap_or(1.0).max(1.0);
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
            #[cfg(any(feature = "pg17", feature = "pg18"))]
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

/// GetForeignPaths: the plain scan, costed per invocation (or as unusable
/// without a payload), and one parameterized scan per set of outer relations
/// a join condition on `payload` can take its values from.
#[pg_guard]
unsafe extern "C-unwind" fn get_foreign_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _foreigntableid: Oid,
) {
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
            let rows = moved
                .iter()
                .chain(own.iter())
                .filter(|q| q.column == RequestColumn::Payload)
                .map(estimated_values)
                .reduce(f64::min);
            add_scan_path(root, baserel, rows, outer);
        }
    }
}

/// GetForeignPlan: supabase-wrappers' plan, plus the request conditions'
/// values in `fdw_exprs` and their descriptor at the end of `fdw_private`.
#[pg_guard]
unsafe extern "C-unwind" fn get_foreign_plan(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: Oid,
    best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    let Some(original) = originals().get_plan else {
        error!("lambda_fdw: GetForeignPlan is not initialised");
    };
    // SAFETY: the planner's own arguments; supabase-wrappers builds the node
    // and makes the clauses it is given the scan's filter.
    unsafe {
        // The request conditions are enforced by the scan itself: every row
        // it returns answers one of the requests they allow, and echoes it.
        // They are not rechecked in the filter, where `payload = ANY(<array
        // known at run time>)` would compare every row with every element
        // (PostgreSQL hashes only constant arrays): quadratic in the fan-out.
        let relid = (*baserel).relid;
        let mut quals = Vec::new();
        let mut filter = PgList::<pg_sys::RestrictInfo>::new();
        for ri in PgList::<pg_sys::RestrictInfo>::from_pg(scan_clauses).iter_ptr() {
            match request_qual(root, relid, (*ri).clause) {
                Some(q) => quals.push(q),
                None => filter.push(ri),
            }
        }
        let filter = filter.into_pg();
        let scan = pg_sys::ffi::pg_guard_ffi_boundary(|| {
            original(
                root,
                baserel,
                foreigntableid,
                best_path,
                tlist,
                filter,
                outer_plan,
            )
        });
        let mut exprs = PgList::<pg_sys::Expr>::new();
        for q in &quals {
            exprs.push(pg_sys::copyObjectImpl(q.value as *const c_void) as *mut pg_sys::Expr);
        }
        let descriptor: Vec<(RequestColumn, Compare)> =
            quals.iter().map(|q| (q.column, q.compare)).collect();
        (*scan).fdw_exprs = exprs.into_pg();
        let text = encode_descriptor(&descriptor).into_datum();
        let tag = pg_sys::makeConst(
            pg_sys::TEXTOID,
            -1,
            pg_sys::DEFAULT_COLLATION_OID,
            -1,
            text.unwrap_or(Datum::from(0)),
            text.is_none(),
            false,
        );
        (*scan).fdw_private = pg_sys::lappend((*scan).fdw_private, tag as *mut c_void);
        scan
    }
}

/// The descriptor a plan carries, if it is one lambda_fdw made.
///
/// # Safety
/// `plan` is a ForeignScan made by [`get_foreign_plan`] (or a copy of one).
unsafe fn plan_descriptor(plan: *mut pg_sys::ForeignScan) -> Option<Vec<(RequestColumn, Compare)>> {
    // SAFETY: fdw_private is a List of Consts; the last one is ours.
    unsafe {
        let list = PgList::<pg_sys::Node>::from_pg((*plan).fdw_private);
        let last = list.get_ptr(list.len().checked_sub(1)?)?;
        if !pgrx::is_a(last, pg_sys::NodeTag::T_Const) {
            return None;
        }
        let c = last as *mut pg_sys::Const;
        if (*c).consttype != pg_sys::TEXTOID || (*c).constisnull {
            return None;
        }
        decode_descriptor(&String::from_datum((*c).constvalue, false)?)
    }
}

// ---------------------------------------------------------------------------
// Execution.

/// lambda_fdw's side of one running scan node.
struct ScanParams {
    /// Per condition: column, comparison, initialized expression.
    conditions: Vec<(RequestColumn, Compare, *mut pg_sys::ExprState)>,
    /// The values must be (re)computed before the next row.
    pending: bool,
    /// The values the scan's invocations were made for.
    last: Option<Vec<Allowed>>,
}

thread_local! {
    /// Running scans of this backend, by node address.
    static SCANS: RefCell<HashMap<usize, ScanParams>> = RefCell::new(HashMap::new());
    /// Values on their way from IterateForeignScan to `LambdaFdw::iter_scan`.
    static HANDOFF: RefCell<Option<Vec<Allowed>>> = const { RefCell::new(None) };
}

/// New request values for the scan whose row is being fetched, if they
/// changed since its invocations were made (always, for the first row).
pub fn take_request_values() -> Option<Vec<Allowed>> {
    HANDOFF.with(|h| h.borrow_mut().take())
}

/// Clears the hand-off slot when dropped, so values meant for one scan can
/// never reach another, even if fetching the row fails.
struct HandoffGuard;

impl Drop for HandoffGuard {
    fn drop(&mut self) {
        HANDOFF.with(|h| h.borrow_mut().take());
    }
}

/// Called when the query's memory context is reset or deleted: after a
/// normal end (nothing left to do) or an abort (ends the scan, freeing
/// supabase-wrappers' state and ours).
#[pg_guard]
unsafe extern "C-unwind" fn release_scan(arg: *mut c_void) {
    let node = arg as *mut pg_sys::ForeignScanState;
    SCANS.with(|s| s.borrow_mut().remove(&(node as usize)));
    // SAFETY: the node lives in the context whose callbacks are running, and
    // its memory is freed only after them. A scan that ended normally has no
    // state left (EndForeignScan cleared it).
    unsafe {
        if !(*node).fdw_state.is_null() {
            if let Some(end) = originals().end {
                pg_sys::ffi::pg_guard_ffi_boundary(|| end(node));
            }
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn begin_foreign_scan(node: *mut pg_sys::ForeignScanState, eflags: c_int) {
    let Some(original) = originals().begin else {
        error!("lambda_fdw: BeginForeignScan is not initialised");
    };
    // SAFETY: the executor's node, whose plan is a ForeignScan of this
    // wrapper; its estate and query context are live. The callback and the
    // expression states are allocated in the query context, as ExecInitNode
    // allocates everything of the node.
    unsafe {
        let estate = (*node).ss.ps.state;
        let callback = pg_sys::MemoryContextAllocZero(
            (*estate).es_query_cxt,
            std::mem::size_of::<pg_sys::MemoryContextCallback>(),
        ) as *mut pg_sys::MemoryContextCallback;
        (*callback).func = Some(release_scan);
        (*callback).arg = node as *mut c_void;
        pg_sys::MemoryContextRegisterResetCallback((*estate).es_query_cxt, callback);

        pg_sys::ffi::pg_guard_ffi_boundary(|| original(node, eflags));

        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as c_int != 0 {
            return;
        }
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let descriptor = plan_descriptor(plan).unwrap_or_default();
        let states = PgList::<pg_sys::ExprState>::from_pg(pg_sys::ExecInitExprList(
            (*plan).fdw_exprs,
            node as *mut pg_sys::PlanState,
        ));
        let conditions = descriptor
            .into_iter()
            .zip(states.iter_ptr())
            .map(|((column, compare), state)| (column, compare, state))
            .collect();
        SCANS.with(|s| {
            s.borrow_mut().insert(
                node as usize,
                ScanParams {
                    conditions,
                    pending: true,
                    last: None,
                },
            )
        });
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
                JsonB::from_datum(d, false).map(|j| Arg::Json(j.0))
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
        let old = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
        let out = conditions
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
            .collect();
        pg_sys::MemoryContextSwitchTo(old);
        pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
        out
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn iterate_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    let Some(original) = originals().iterate else {
        error!("lambda_fdw: IterateForeignScan is not initialised");
    };
    let key = node as usize;
    let due = SCANS.with(|s| {
        s.borrow()
            .get(&key)
            .filter(|p| p.pending)
            .map(|p| p.conditions.clone())
    });
    let _guard = HandoffGuard;
    if let Some(conditions) = due {
        // SAFETY: this scan's node and the states made for it at its beginning.
        let values = unsafe { evaluate(node, &conditions) };
        SCANS.with(|s| {
            if let Some(p) = s.borrow_mut().get_mut(&key) {
                p.pending = false;
                if p.last.as_ref() != Some(&values) {
                    HANDOFF.with(|h| *h.borrow_mut() = Some(values.clone()));
                    p.last = Some(values);
                }
            }
        });
    }
    // SAFETY: the executor's node, passed through.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| original(node)) }
}

#[pg_guard]
unsafe extern "C-unwind" fn rescan_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: chgParam is the executor's set of parameters changed since the
    // last scan of this node.
    let changed = unsafe { !(*node).ss.ps.chgParam.is_null() };
    if changed {
        SCANS.with(|s| {
            if let Some(p) = s.borrow_mut().get_mut(&(node as usize)) {
                p.pending = true;
            }
        });
    }
    if let Some(original) = originals().rescan {
        // SAFETY: the executor's node, passed through.
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| original(node)) }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn end_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    SCANS.with(|s| s.borrow_mut().remove(&(node as usize)));
    if let Some(original) = originals().end {
        // SAFETY: the executor's node, passed through.
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| original(node)) }
    }
}

/// ExplainForeignScan: lambda_fdw's lines only; supabase-wrappers' own lines
/// (debug dumps of conditions it no longer sees) would say nothing true.
#[pg_guard]
unsafe extern "C-unwind" fn explain_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: EXPLAIN's own node and state.
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let conditions = describe_conditions(plan, es);
        explain::explain(node, es, conditions);
    }
}

/// The request conditions of a plan as SQL text, for EXPLAIN.
///
/// # Safety
/// EXPLAIN's node plan and state. The deparse context is pointed at this
/// plan without its ancestors (ExplainForeignScan is not given them): the
/// expressions hold no Vars (other relations' columns became parameters),
/// and a parameter set by a nested loop or an initplan prints as `$n`.
unsafe fn describe_conditions(
    plan: *mut pg_sys::ForeignScan,
    es: *mut pg_sys::ExplainState,
) -> Vec<String> {
    // SAFETY: per the contract.
    unsafe {
        let Some(descriptor) = plan_descriptor(plan) else {
            return Vec::new();
        };
        if descriptor.is_empty() || (*es).deparse_cxt.is_null() {
            return Vec::new();
        }
        let context = pg_sys::set_deparse_context_plan(
            (*es).deparse_cxt,
            plan as *mut pg_sys::Plan,
            ptr::null_mut(),
        );
        let exprs = PgList::<pg_sys::Node>::from_pg((*plan).fdw_exprs);
        descriptor
            .iter()
            .zip(exprs.iter_ptr())
            .map(|((column, compare), expr)| {
                let text = pg_sys::deparse_expression(expr, context, false, false);
                let text = CStr::from_ptr(text).to_string_lossy().into_owned();
                match compare {
                    Compare::Eq => format!("{} = {text}", column.name()),
                    Compare::Any => format!("{} = ANY ({text})", column.name()),
                    Compare::All => format!("{} = ALL ({text})", column.name()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_round_trip() {
        let d = vec![
            (RequestColumn::Payload, Compare::Any),
            (RequestColumn::Qualifier, Compare::Eq),
            (RequestColumn::InvocationType, Compare::All),
            (RequestColumn::LogType, Compare::Eq),
            (RequestColumn::Context, Compare::Eq),
        ];
        let text = encode_descriptor(&d);
        assert_eq!(
            text,
            "lambda_fdw:payload~,qualifier=,invocation_type&,log_type=,context="
        );
        assert_eq!(decode_descriptor(&text), Some(d));
        assert_eq!(decode_descriptor("lambda_fdw:"), Some(vec![]));
    }

    #[test]
    fn foreign_descriptors_are_refused() {
        assert_eq!(decode_descriptor("payload="), None);
        assert_eq!(decode_descriptor("lambda_fdw:status_code="), None);
        assert_eq!(decode_descriptor("lambda_fdw:payload?"), None);
        assert_eq!(decode_descriptor("lambda_fdw:payload"), None);
    }
}
