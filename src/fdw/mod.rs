//! The foreign data wrapper: SQL scans in, invocations out, rows back.
//!
//! supabase-wrappers provides the handler and the validator's entry point;
//! every scan callback is lambda_fdw's own, and so are the INSERT and IMPORT
//! callbacks, installed in [`ForeignDataWrapper::fdw_routine_hook`]. The
//! modules, each private, in the order a query meets them:
//!
//! - `columns`: the column model (request columns, column kinds, a
//!   relation's columns by slot) and the check of a whole table.
//! - `planner`: GetForeignRelSize, GetForeignPaths, GetForeignPlan.
//! - `quals`: recognising the conditions that give request columns values.
//! - `paths`: row estimates, costs, the plain and parameterized paths.
//! - `descriptor`: the plan's private data (`fdw_exprs`, `fdw_private`),
//!   its layout, its one encode and one decode.
//! - `executor`: BeginForeignScan, IterateForeignScan, ReScanForeignScan,
//!   EndForeignScan.
//! - `product`: the invocations evaluated conditions allow, a lazy product
//!   of the request values, and the limit on their number.
//! - `calls`: one scan's invocations: checked requests, calls in flight,
//!   answers.
//! - `explain`: every EXPLAIN line, ExplainForeignScan and
//!   ExplainForeignModify.
//! - `modify`: INSERT (one queued invocation per row).
//! - `import`: IMPORT FOREIGN SCHEMA.
//! - `state`: Rust state hung on executor nodes, freed with the query.
//!
//! Within the scan, imports point one way: `planner` -> `paths` -> `quals`;
//! `planner` -> `descriptor` <- `executor`; `explain` -> `descriptor` and
//! `executor`; `executor` -> `calls` -> `product`.

mod calls;
mod columns;
mod descriptor;
mod executor;
mod explain;
mod import;
mod modify;
mod paths;
mod planner;
mod product;
mod quals;
mod state;

use std::collections::HashMap;

use pgrx::pg_sys::{self, Oid};
use supabase_wrappers::prelude::*;

use crate::error::{raise, LambdaFdwError, Result};
use crate::settings::options::{self, OptionsFor};
use columns::check_table;

#[wrappers_fdw(
    version = "0.6.0",
    author = "lambda_fdw developers",
    website = "https://github.com/lambda-fdw/lambda_fdw",
    error_type = "LambdaFdwError"
)]
pub(crate) struct LambdaFdw;

/// Checks a lambda_fdw foreign table as a whole: every column, and its
/// function name against its server's region. The event trigger in
/// sql/lambda_fdw.sql calls it after CREATE and ALTER FOREIGN TABLE, so a
/// mistake is refused when it is written, not when the table is first queried.
#[pgrx::pg_extern]
fn lambda_fdw_check_columns(relid: Oid) {
    if let Err(e) = check_table(relid) {
        raise(e);
    }
}

/// supabase-wrappers' scan callbacks, which would call the trait's scan
/// methods, are replaced in `fdw_routine_hook`; the methods exist because
/// the trait requires them.
const SCANS_ARE_OWN: &str = "lambda_fdw scans do not run through supabase-wrappers";

impl ForeignDataWrapper<LambdaFdwError> for LambdaFdw {
    fn new(_server: ForeignServer) -> Result<Self> {
        Ok(Self)
    }

    fn begin_scan(
        &mut self,
        _quals: &[Qual],
        _columns: &[Column],
        _sorts: &[Sort],
        _limit: &Option<Limit>,
        _options: &HashMap<String, String>,
    ) -> Result<()> {
        Err(LambdaFdwError::Internal(SCANS_ARE_OWN))
    }

    fn iter_scan(&mut self, _row: &mut Row) -> Result<Option<()>> {
        Err(LambdaFdwError::Internal(SCANS_ARE_OWN))
    }

    fn end_scan(&mut self) -> Result<()> {
        Err(LambdaFdwError::Internal(SCANS_ARE_OWN))
    }

    fn fdw_routine_hook(routine: &mut supabase_wrappers::FdwRoutine<pgrx::AllocatedByRust>) {
        routine.GetForeignRelSize = Some(planner::get_foreign_rel_size);
        routine.GetForeignPaths = Some(planner::get_foreign_paths);
        routine.GetForeignPlan = Some(planner::get_foreign_plan);
        routine.ExplainForeignScan = Some(explain::explain_foreign_scan);
        routine.BeginForeignScan = Some(executor::begin_foreign_scan);
        routine.IterateForeignScan = Some(executor::iterate_foreign_scan);
        routine.ReScanForeignScan = Some(executor::rescan_foreign_scan);
        routine.EndForeignScan = Some(executor::end_foreign_scan);
        // Aggregates are never pushed down to a Lambda function.
        routine.GetForeignUpperPaths = None;
        // INSERT queues invocations; UPDATE and DELETE are refused.
        routine.IsForeignRelUpdatable = Some(modify::is_foreign_rel_updatable);
        routine.AddForeignUpdateTargets = None;
        routine.PlanForeignModify = Some(modify::plan_foreign_modify);
        routine.BeginForeignModify = Some(modify::begin_foreign_modify);
        routine.ExecForeignInsert = Some(modify::exec_foreign_insert);
        routine.ExecForeignUpdate = None;
        routine.ExecForeignDelete = None;
        routine.EndForeignModify = Some(modify::end_foreign_modify);
        routine.BeginForeignInsert = Some(modify::begin_foreign_insert);
        routine.ExplainForeignModify = Some(explain::explain_foreign_modify);
        routine.EndForeignInsert = Some(modify::end_foreign_modify);
        // A foreign table per function of the region.
        routine.ImportForeignSchema = Some(import::import_foreign_schema);
    }

    fn validator(options: Vec<Option<String>>, catalog: Option<Oid>) -> Result<()> {
        let catalog = match catalog {
            Some(FOREIGN_DATA_WRAPPER_RELATION_ID) => OptionsFor::Wrapper,
            Some(FOREIGN_SERVER_RELATION_ID) => OptionsFor::Server,
            Some(pg_sys::UserMappingRelationId) => OptionsFor::UserMapping,
            Some(FOREIGN_TABLE_RELATION_ID) => OptionsFor::Table,
            _ => return Ok(()),
        };
        let options: Vec<String> = options.into_iter().flatten().collect();
        // SAFETY: superuser() reads the current user's role; no preconditions.
        options::validate(catalog, &options, unsafe { pg_sys::superuser() })?;
        Ok(())
    }
}
