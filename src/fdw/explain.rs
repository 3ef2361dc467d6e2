//! EXPLAIN for lambda_fdw tables, every line of it: what a scan will call,
//! where, and with which request conditions (ExplainForeignScan), what its
//! calls came to under EXPLAIN ANALYZE, and what an INSERT queues
//! (ExplainForeignModify). Only names, regions, URLs and the query's own
//! expressions: nothing from a user mapping.

use std::ffi::{CStr, CString};
use std::ptr;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use super::calls::Activity;
use super::descriptor;
use super::executor::scan_activity;
use super::product::Compare;
use crate::pg::catalog::{foreign_table_options, server_options};
use crate::settings::options::{ServerOptions, TableOptions};

/// The lines to show for a foreign table (label and value), and whether
/// it batches rows.
fn describe(relid: pg_sys::Oid) -> (Vec<(&'static str, String)>, bool) {
    let Ok((table, server)) = foreign_table_options(relid) else {
        return (Vec::new(), false);
    };
    let Ok(server) = server_options(server) else {
        return (Vec::new(), false);
    };
    let (Ok(table), Ok(server)) = (TableOptions::parse(&table), ServerOptions::parse(&server))
    else {
        return (Vec::new(), false);
    };
    let mut lines = vec![
        ("Lambda Function", table.function_name.clone()),
        ("Lambda Region", server.region.clone()),
    ];
    if let Some(url) = server.endpoint_url {
        lines.push(("Lambda Endpoint", url));
    }
    lines.push((
        "Default Invocation Type",
        table.invocation_type.as_str().to_string(),
    ));
    lines.push(("Default Log Type", table.log_type.as_str().to_string()));
    if let Some(q) = table.qualifier.clone().or(table.function.qualifier.clone()) {
        lines.push(("Default Qualifier", q));
    }
    let batching = table.batching();
    if let Some(format) = batching {
        lines.push(("Lambda Batch Size", table.batch_size.to_string()));
        lines.push(("Lambda Batch Format", format.name().to_string()));
    }
    (lines, batching.is_some())
}

/// ExplainForeignScan: the table's function and defaults, the request
/// conditions, and under ANALYZE what the scan's calls came to.
#[pg_guard]
pub unsafe extern "C-unwind" fn explain_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: EXPLAIN's own node and state.
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let conditions = describe_conditions(plan, es);
        explain_scan(node, es, conditions);
        if (*es).analyze {
            if let Some(activity) = scan_activity(node) {
                explain_activity(es, &activity);
            }
        }
    }
}

/// The request conditions of a plan as SQL text.
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
        let Some(descriptor) = descriptor::decode(plan) else {
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

/// Adds a scan's lambda_fdw lines to EXPLAIN output; `conditions` are the
/// request conditions as SQL text.
///
/// # Safety
/// `node` and `es` are the executor's, as passed to ExplainForeignScan.
unsafe fn explain_scan(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
    conditions: Vec<String>,
) {
    // SAFETY: per the contract; the scan's relation is open while explained.
    let rel = unsafe { (*node).ss.ss_currentRelation };
    if rel.is_null() {
        return;
    }
    // SAFETY: a non-null open relation.
    let relid = unsafe { (*rel).rd_id };
    let (mut lines, _) = describe(relid);
    if !conditions.is_empty() {
        lines.push(("Lambda Requests", conditions.join(" AND ")));
    }
    // SAFETY: EXPLAIN's own state.
    unsafe { add_lines(es, lines) };
}

/// ExplainForeignModify: what an INSERT queues.
#[pg_guard]
pub unsafe extern "C-unwind" fn explain_foreign_modify(
    _mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    _fdw_private: *mut pg_sys::List,
    _subplan_index: std::ffi::c_int,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: the executor's result relation, open while explained.
    let relid = unsafe { (*(*rinfo).ri_RelationDesc).rd_id };
    // A queued invocation keeps no log: the table's log type does not apply.
    let (lines, batched) = describe(relid);
    let mut lines: Vec<_> = lines
        .into_iter()
        .filter(|(label, _)| *label != "Default Log Type")
        .collect();
    lines.push((
        "Lambda Invocations",
        if batched {
            "each row queued, sent after COMMIT in batches"
        } else {
            "one per row, queued, sent after COMMIT"
        }
        .to_string(),
    ));
    // SAFETY: EXPLAIN's own state.
    unsafe { add_lines(es, lines) };
}

/// EXPLAIN ANALYZE: what the scan's calls came to. The wait is a time, so
/// it is left out with TIMING OFF, as PostgreSQL leaves out its own times.
///
/// # Safety
/// `es` is EXPLAIN's state.
unsafe fn explain_activity(es: *mut pg_sys::ExplainState, a: &Activity) {
    let counts = [
        (c"Lambda Invocations", a.calls),
        (c"Lambda Rows Sent", a.rows),
        (c"Lambda Retries", a.retries),
        (c"Lambda Function Errors", a.function_errors),
        (c"Lambda Peak Concurrency", a.peak_in_flight as u64),
    ];
    // SAFETY: EXPLAIN's own state; the labels are static C strings, copied.
    unsafe {
        for (label, value) in counts {
            if !a.batched && label == c"Lambda Rows Sent" {
                // One row per invocation: the count above says it.
                continue;
            }
            pg_sys::ExplainPropertyInteger(
                label.as_ptr(),
                ptr::null(),
                value.min(i64::MAX as u64) as i64,
                es,
            );
        }
        if (*es).timing {
            pg_sys::ExplainPropertyFloat(
                c"Lambda Wait Time".as_ptr(),
                c"ms".as_ptr(),
                a.waited.as_secs_f64() * 1000.0,
                3,
                es,
            );
        }
    }
}

/// # Safety
/// `es` is EXPLAIN's state.
unsafe fn add_lines(es: *mut pg_sys::ExplainState, lines: Vec<(&'static str, String)>) {
    for (label, value) in lines {
        let (Ok(label), Ok(value)) = (CString::new(label), CString::new(value)) else {
            continue;
        };
        // SAFETY: ExplainPropertyText copies both NUL-terminated strings.
        unsafe { pg_sys::ExplainPropertyText(label.as_ptr(), value.as_ptr(), es) };
    }
}
