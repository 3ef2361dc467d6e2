//! EXPLAIN for lambda_fdw scans: what will be called, and where, before
//! supabase-wrappers' own lines about the pushed-down conditions. Only names,
//! regions and URLs: nothing from a user mapping.

use std::ffi::CString;

use pgrx::pg_sys;

use super::options::{ServerOptions, TableOptions};
use crate::catalog::{foreign_table_options, server_options};

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

/// Adds the lambda_fdw lines to EXPLAIN output.
///
/// # Safety
/// `node` and `es` are the executor's, as passed to ExplainForeignScan.
pub unsafe fn explain(node: *mut pg_sys::ForeignScanState, es: *mut pg_sys::ExplainState) {
    // SAFETY: per the contract; the scan's relation is open while explained.
    let rel = unsafe { (*node).ss.ss_currentRelation };
    if rel.is_null() {
        return;
    }
    // SAFETY: a non-null open relation.
    let relid = unsafe { (*rel).rd_id };
    for (label, value) in describe(relid) {
        let (Ok(label), Ok(value)) = (CString::new(label), CString::new(value)) else {
            continue;
        };
        // SAFETY: ExplainPropertyText copies both NUL-terminated strings.
        unsafe { pg_sys::ExplainPropertyText(label.as_ptr(), value.as_ptr(), es) };
    }
}
