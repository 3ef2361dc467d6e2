//! Planning a scan of a lambda_fdw foreign table: GetForeignRelSize,
//! GetForeignPaths and GetForeignPlan are lambda_fdw's own (supabase-wrappers'
//! would evaluate parameters before PostgreSQL has set them, drop
//! `= ANY(<non-constant array>)`, and offer no parameterized paths).
//!
//! - The conditions of the form `<request column> = <expr>`,
//!   `= ANY(<array expr>)` and `= ALL(<array expr>)`, where `<expr>` does not
//!   read the foreign table itself and is not volatile, are the scan's own:
//!   their expressions go into the plan's `fdw_exprs`, with a descriptor
//!   (which column, which comparison, which columns the scan must fill) in
//!   `fdw_private`, and `executor` evaluates them at run time. Every other
//!   condition is the scan's filter.
//! - A join on `payload` gets a parameterized path (one invocation per outer
//!   value); a scan with no payload at all is costed as unusable, so such a
//!   path wins wherever one exists.
//! - EXPLAIN deparses the request conditions (see [`describe_conditions`]).

use std::ffi::{c_int, c_void, CStr};
use std::ptr;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::{FromDatum, IntoDatum, PgList};

use super::columns::RequestColumn;
use super::explain;
use super::plan::Compare;

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
/// Marks lambda_fdw's descriptor, the one element of `fdw_private`.
const DESCRIPTOR_PREFIX: &str = "lambda_fdw:";
/// Row width estimate for the planner.
const ROW_WIDTH: i32 = 256;

// ---------------------------------------------------------------------------
// The descriptor: which request column and comparison each fdw_expr is for,
// and which columns the scan fills.

/// The columns a scan must fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Columns {
    /// Every column (the query uses a whole-row reference).
    All,
    /// These attribute numbers.
    Only(Vec<i16>),
}

impl Columns {
    pub(crate) fn includes(&self, attnum: i16) -> bool {
        match self {
            Columns::All => true,
            Columns::Only(attnums) => attnums.contains(&attnum),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// One entry per fdw_expr, in order.
    pub conditions: Vec<(RequestColumn, Compare)>,
    pub columns: Columns,
}

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

/// `lambda_fdw:payload=,qualifier~;1,3`: the conditions, then the columns
/// (`*` for all of them).
fn encode_descriptor(d: &Descriptor) -> String {
    let conditions: Vec<String> = d
        .conditions
        .iter()
        .map(|(col, cmp)| format!("{}{}", col.name(), compare_code(*cmp)))
        .collect();
    let columns = match &d.columns {
        Columns::All => "*".to_string(),
        Columns::Only(attnums) => attnums
            .iter()
            .map(i16::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    format!("{DESCRIPTOR_PREFIX}{};{columns}", conditions.join(","))
}

fn decode_descriptor(text: &str) -> Option<Descriptor> {
    let (conditions, columns) = text.strip_prefix(DESCRIPTOR_PREFIX)?.split_once(';')?;
    let conditions = if conditions.is_empty() {
        Vec::new()
    } else {
        conditions
            .split(',')
            .map(|entry| {
                let code = entry.chars().last()?;
                let column = request_column(&entry[..entry.len() - code.len_utf8()])?;
                let compare = [Compare::Eq, Compare::Any, Compare::All]
                    .into_iter()
                    .find(|c| compare_code(*c) == code)?;
                Some((column, compare))
            })
            .collect::<Option<Vec<_>>>()?
    };
    let columns = match columns {
        "*" => Columns::All,
        "" => Columns::Only(Vec::new()),
        list => Columns::Only(
            list.split(',')
                .map(|n| n.parse().ok().filter(|&n: &i16| n > 0))
                .collect::<Option<Vec<_>>>()?,
        ),
    };
    Some(Descriptor {
        conditions,
        columns,
    })
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

/// GetForeignRelSize: checks the table (every column, and the function
/// name against the server's region) before anything is planned, and
/// estimates the rows from the request conditions.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: Oid,
) {
    if let Err(e) = super::check_table(foreigntableid) {
        crate::error::raise(e);
    }
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
pub unsafe extern "C-unwind" fn get_foreign_paths(
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
        };
        let mut exprs = PgList::<pg_sys::Expr>::new();
        for q in &quals {
            exprs.push(pg_sys::copyObjectImpl(q.value as *const c_void) as *mut pg_sys::Expr);
        }
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
        let private = pg_sys::lappend(ptr::null_mut(), tag as *mut c_void);
        pg_sys::make_foreignscan(
            tlist,
            filter,
            relid,
            exprs.into_pg(),
            private,
            ptr::null_mut(),
            ptr::null_mut(),
            outer_plan,
        )
    }
}

/// The descriptor a plan carries, if it is one lambda_fdw made.
///
/// # Safety
/// `plan` is a ForeignScan of a lambda_fdw table (or a copy of one).
pub(crate) unsafe fn plan_descriptor(plan: *mut pg_sys::ForeignScan) -> Option<Descriptor> {
    // SAFETY: fdw_private is a List whose one element is a text Const.
    unsafe {
        let list = PgList::<pg_sys::Node>::from_pg((*plan).fdw_private);
        let first = list.get_ptr(0)?;
        if !pgrx::is_a(first, pg_sys::NodeTag::T_Const) {
            return None;
        }
        let c = first as *mut pg_sys::Const;
        if (*c).consttype != pg_sys::TEXTOID || (*c).constisnull {
            return None;
        }
        decode_descriptor(&String::from_datum((*c).constvalue, false)?)
    }
}

/// ExplainForeignScan: the table's function and defaults, and the request
/// conditions.
#[pg_guard]
pub unsafe extern "C-unwind" fn explain_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: EXPLAIN's own node and state.
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let conditions = describe_conditions(plan, es);
        explain::explain(node, es, conditions);
        if (*es).analyze {
            if let Some(activity) = super::executor::scan_activity(node) {
                explain::explain_activity(es, &activity);
            }
        }
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
        if descriptor.conditions.is_empty() || (*es).deparse_cxt.is_null() {
            return Vec::new();
        }
        let context = pg_sys::set_deparse_context_plan(
            (*es).deparse_cxt,
            plan as *mut pg_sys::Plan,
            ptr::null_mut(),
        );
        let exprs = PgList::<pg_sys::Node>::from_pg((*plan).fdw_exprs);
        descriptor
            .conditions
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
        let d = Descriptor {
            conditions: vec![
                (RequestColumn::Payload, Compare::Any),
                (RequestColumn::Qualifier, Compare::Eq),
                (RequestColumn::InvocationType, Compare::All),
                (RequestColumn::LogType, Compare::Eq),
                (RequestColumn::Context, Compare::Eq),
            ],
            columns: Columns::Only(vec![1, 7, 10]),
        };
        let text = encode_descriptor(&d);
        assert_eq!(
            text,
            "lambda_fdw:payload~,qualifier=,invocation_type&,log_type=,context=;1,7,10"
        );
        assert_eq!(decode_descriptor(&text), Some(d));
        let none = Descriptor {
            conditions: vec![],
            columns: Columns::Only(vec![]),
        };
        assert_eq!(encode_descriptor(&none), "lambda_fdw:;");
        assert_eq!(decode_descriptor("lambda_fdw:;"), Some(none));
        let all = Descriptor {
            conditions: vec![(RequestColumn::Payload, Compare::Eq)],
            columns: Columns::All,
        };
        assert_eq!(encode_descriptor(&all), "lambda_fdw:payload=;*");
        assert_eq!(decode_descriptor("lambda_fdw:payload=;*"), Some(all));
    }

    #[test]
    fn columns_included() {
        assert!(Columns::All.includes(3));
        assert!(Columns::Only(vec![1, 3]).includes(3));
        assert!(!Columns::Only(vec![1, 3]).includes(2));
        assert!(!Columns::Only(vec![]).includes(1));
    }

    #[test]
    fn foreign_descriptors_are_refused() {
        assert_eq!(decode_descriptor("payload=;"), None);
        assert_eq!(decode_descriptor("lambda_fdw:payload="), None);
        assert_eq!(decode_descriptor("lambda_fdw:status_code=;"), None);
        assert_eq!(decode_descriptor("lambda_fdw:payload?;"), None);
        assert_eq!(decode_descriptor("lambda_fdw:payload;"), None);
        assert_eq!(decode_descriptor("lambda_fdw:payload=;0"), None);
        assert_eq!(decode_descriptor("lambda_fdw:payload=;1,x"), None);
    }
}
