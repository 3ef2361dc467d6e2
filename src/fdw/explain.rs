//! EXPLAIN for lambda_fdw scans: what will be called, where, and with which
//! request conditions. Only names, regions, URLs and the query's own
//! expressions: nothing from a user mapping.

use std::ffi::CString;

use pgrx::pg_sys;

use super::batch::Activity;
use crate::pg::catalog::{foreign_table_options, server_options};
use crate::settings::options::{ServerOptions, TableOptions};

/// The lines to show for a foreign table: label and value.
fn describe(relid: pg_sys::Oid) -> Vec<(&'static str, String)> {
    let Ok((table, server)) = foreign_table_options(relid) else {
        return Vec::new();
    };
    let Ok(server) = server_options(server) else {
        return Vec::new();
    };
    let (Ok(table), Ok(server)) = (TableOptions::parse(&table), ServerOptions::parse(&server))
    else {
        return Vec::new();
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
    if let Some(q) = table.qualifier.or(table.function.qualifier) {
        lines.push(("Default Qualifier", q));
    }
    lines
}

/// Adds the lambda_fdw lines to EXPLAIN output; `conditions` are the request
/// conditions as SQL text.
///
/// # Safety
/// `node` and `es` are the executor's, as passed to ExplainForeignScan.
pub(crate) unsafe fn explain(
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
    let mut lines = describe(relid);
    if !conditions.is_empty() {
        lines.push(("Lambda Requests", conditions.join(" AND ")));
    }
    // SAFETY: EXPLAIN's own state.
    unsafe { add_lines(es, lines) };
}

/// ExplainForeignModify: what an INSERT queues.
#[pgrx::pg_guard]
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
    let mut lines: Vec<_> = describe(relid)
        .into_iter()
        .filter(|(label, _)| *label != "Default Log Type")
        .collect();
    lines.push((
        "Lambda Invocations",
        "one per row, queued, sent after COMMIT".to_string(),
    ));
    // SAFETY: EXPLAIN's own state.
    unsafe { add_lines(es, lines) };
}

/// EXPLAIN ANALYZE: what the scan's calls came to. The wait is a time, so
/// it is left out with TIMING OFF, as PostgreSQL leaves out its own times.
///
/// # Safety
/// `es` is EXPLAIN's state.
pub(crate) unsafe fn explain_activity(es: *mut pg_sys::ExplainState, a: &Activity) {
    let counts = [
        (c"Lambda Invocations", a.calls),
        (c"Lambda Retries", a.retries),
        (c"Lambda Function Errors", a.function_errors),
        (c"Lambda Peak Concurrency", a.peak_in_flight as u64),
    ];
    // SAFETY: EXPLAIN's own state; the labels are static C strings, copied.
    unsafe {
        for (label, value) in counts {
            pg_sys::ExplainPropertyInteger(
                label.as_ptr(),
                std::ptr::null(),
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
