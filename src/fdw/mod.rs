//! The foreign data wrapper: SQL scans in, invocations out, rows back.

pub mod columns;
mod explain;
pub mod options;
mod params;
pub mod plan;

use std::collections::HashMap;

use futures::stream::{LocalBoxStream, StreamExt};
use pgrx::pg_sys::{self, Oid};
use pgrx::JsonB;
use supabase_wrappers::prelude::*;

use crate::catalog;
use crate::config::PG_INTERRUPTS;
use crate::core::settings::DEFAULT_MAX_CONCURRENCY;
use crate::core::{block_on, client_for, ClientSettings, CoreResult, InvokeOutcome, InvokeRequest};
use crate::error::{LambdaFdwError, Result};
use crate::route;
use columns::{classify, ColumnKind, RequestColumn};
use options::{Catalog, FunctionErrors, ServerOptions, TableOptions};
use plan::{plan_invocations, Allowed, PlannedInvocation};

/// Row width estimate for the planner.
const ROW_WIDTH: i32 = 256;

#[wrappers_fdw(
    version = "0.1.0",
    author = "lambda_fdw developers",
    website = "https://github.com/lambda-fdw/lambda_fdw",
    error_type = "LambdaFdwError"
)]
pub struct LambdaFdw {
    server: catalog::ServerRef,
    options: ServerOptions,
    scan: Option<Scan>,
}

/// State of one scan between begin_scan and end_scan.
struct Scan {
    /// Target columns, in the order the row must carry them.
    columns: Vec<(String, ColumnKind)>,
    table: TableOptions,
    region: String,
    settings: ClientSettings,
    concurrency: usize,
    function_errors: FunctionErrors,
    /// The invocations for the current values of the request conditions;
    /// `None` until the first row is asked for.
    batch: Option<Batch>,
}

/// The invocations for one set of request values, and what came back.
struct Batch {
    planned: Vec<PlannedInvocation>,
    /// The function as messages name it, per invocation.
    displays: Vec<String>,
    /// Checked requests, taken when the first call is started.
    requests: Option<Vec<InvokeRequest>>,
    stream: Option<LocalBoxStream<'static, CoreResult<InvokeOutcome>>>,
    /// Outcomes received so far, replayed by a rescan instead of invoking again.
    outcomes: Vec<InvokeOutcome>,
    cursor: usize,
}

/// Checks a lambda_fdw foreign table as a whole: every column, and its
/// function name against its server's region. The event trigger in
/// sql/lambda_fdw.sql calls it after CREATE and ALTER FOREIGN TABLE, so a
/// mistake is refused when it is written, not when the table is first queried.
#[pgrx::pg_extern]
fn lambda_fdw_check_columns(relid: Oid) {
    if let Err(e) = check_table(relid) {
        pgrx::pg_sys::panic::ErrorReport::from(e).report(pgrx::PgLogLevel::ERROR);
    }
}

fn check_table(relid: Oid) -> Result<()> {
    for (name, type_oid) in catalog::relation_columns(relid) {
        classify(&name, type_oid)?;
    }
    let (table, server) = catalog::foreign_table_options(relid)?;
    let table = TableOptions::parse(&table)?;
    let server = ServerOptions::parse(&catalog::server_options(server)?)?;
    table.check_region(&server.region)?;
    Ok(())
}

fn response_cell(function: &str, payload: &[u8], json_text: bool) -> Result<Cell> {
    let not_json = |e: serde_json::Error| LambdaFdwError::ResponseNotJson {
        function: function.to_string(),
        reason: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(not_json)?;
    if json_text {
        // json keeps the text as the function returned it; it parsed, so it is UTF-8.
        Ok(Cell::String(String::from_utf8_lossy(payload).into_owned()))
    } else {
        Ok(Cell::Json(JsonB(value)))
    }
}

impl Scan {
    /// Builds the invocations for new request values, dropping the previous
    /// ones (and any call of theirs still in flight).
    fn start_batch(&mut self, conditions: &[Allowed]) -> Result<()> {
        self.batch = None;
        let planned = plan_invocations(conditions, &self.table)?.ok_or_else(|| {
            LambdaFdwError::NoPayload {
                function: self.table.function_name.clone(),
            }
        })?;
        let mut requests = Vec::with_capacity(planned.len());
        let mut displays = Vec::with_capacity(planned.len());
        for p in &planned {
            let target =
                self.table
                    .function
                    .resolve(Some(&self.region), p.qualifier.as_deref(), None)?;
            let context = p.context.as_ref().map(|c| c.to_string());
            let payload = serde_json::to_vec(&p.payload)
                .map_err(|e| LambdaFdwError::Catalog(format!("could not encode payload: {e}")))?;
            displays.push(target.display.clone());
            requests.push(InvokeRequest::new(
                target,
                p.invocation_type,
                p.log_type,
                context.as_deref(),
                payload,
            )?);
        }
        self.batch = Some(Batch {
            planned,
            displays,
            requests: Some(requests),
            stream: None,
            outcomes: Vec::new(),
            cursor: 0,
        });
        Ok(())
    }

    fn next_outcome(&mut self) -> Result<Option<usize>> {
        let Some(batch) = self.batch.as_mut() else {
            // The request values never arrived: nothing may be invoked.
            return Err(LambdaFdwError::NoPayload {
                function: self.table.function_name.clone(),
            });
        };
        if batch.cursor < batch.outcomes.len() {
            batch.cursor += 1;
            return Ok(Some(batch.cursor - 1));
        }
        if batch.outcomes.len() == batch.planned.len() {
            // Every call has answered: no need to wait on the stream's end.
            return Ok(None);
        }
        let next = if let Some(stream) = batch.stream.as_mut() {
            block_on(stream.next(), &PG_INTERRUPTS)?
        } else {
            let mut requests = batch.requests.take().unwrap_or_default();
            let client = client_for(&self.settings, &PG_INTERRUPTS)?;
            if requests.len() == 1 {
                // One call is awaited where it stands, as aws_lambda.invoke
                // does: the fan-out would move the SDK's large future to the
                // heap and poll it through its own machinery (measured for a
                // prepared one-payload query: 242 us of backend CPU a call
                // instead of 165).
                match requests.pop() {
                    Some(request) => Some(block_on(client.invoke(request), &PG_INTERRUPTS)?),
                    None => None,
                }
            } else {
                let stream = batch
                    .stream
                    .insert(client.invoke_all(requests, self.concurrency));
                block_on(stream.next(), &PG_INTERRUPTS)?
            }
        };
        match next {
            None => Ok(None),
            Some(outcome) => {
                batch.outcomes.push(outcome?);
                batch.cursor += 1;
                Ok(Some(batch.cursor - 1))
            }
        }
    }

    fn fill_row(&self, index: usize, row: &mut Row) -> Result<()> {
        let Some(batch) = self.batch.as_ref() else {
            return Ok(());
        };
        let planned = &batch.planned[index];
        let outcome = &batch.outcomes[index];
        let display = &batch.displays[index];
        if outcome.function_error.is_some() && self.function_errors == FunctionErrors::Raise {
            outcome.clone().raise_function_error(display)?;
        }
        for (name, kind) in &self.columns {
            let cell = match kind {
                ColumnKind::Request(RequestColumn::Payload) => {
                    Some(Cell::Json(JsonB(planned.payload.clone())))
                }
                ColumnKind::Request(RequestColumn::Qualifier) => {
                    planned.qualifier.clone().map(Cell::String)
                }
                ColumnKind::Request(RequestColumn::InvocationType) => {
                    Some(Cell::String(planned.invocation_type.as_str().to_string()))
                }
                ColumnKind::Request(RequestColumn::LogType) => {
                    Some(Cell::String(planned.log_type.as_str().to_string()))
                }
                ColumnKind::Request(RequestColumn::Context) => {
                    planned.context.clone().map(|c| Cell::Json(JsonB(c)))
                }
                ColumnKind::StatusCode => Some(Cell::I32(outcome.status_code)),
                ColumnKind::Response { json_text } => match &outcome.payload {
                    None => None,
                    Some(p) => Some(response_cell(display, p, *json_text)?),
                },
                ColumnKind::ExecutedVersion => outcome.executed_version.clone().map(Cell::String),
                ColumnKind::LogResult => outcome.log_result.clone().map(Cell::String),
                ColumnKind::FunctionError => outcome.function_error.clone().map(Cell::String),
            };
            row.push(name, cell);
        }
        Ok(())
    }
}

impl ForeignDataWrapper<LambdaFdwError> for LambdaFdw {
    fn new(server: ForeignServer) -> Result<Self> {
        // Plan time: parse options only; clients are built on the first row.
        Ok(Self {
            options: ServerOptions::parse(&server.options)?,
            server: catalog::ServerRef {
                oid: server.server_oid,
                name: server.server_name,
            },
            scan: None,
        })
    }

    fn get_rel_size(
        _quals: &[Qual],
        _columns: &[Column],
        _sorts: &[Sort],
        _limit: &Option<Limit>,
        options: &HashMap<String, String>,
    ) -> Result<(i64, i32)> {
        // Every column, and the function name against the server's region,
        // are checked before anything is planned; the row estimate is made
        // in `params` from the request conditions.
        if let Some(relid) = options
            .get("wrappers.ftable_oid")
            .and_then(|s| s.parse::<u32>().ok())
        {
            check_table(Oid::from(relid))?;
        }
        Ok((1, ROW_WIDTH))
    }

    fn begin_scan(
        &mut self,
        _quals: &[Qual],
        columns: &[Column],
        _sorts: &[Sort],
        _limit: &Option<Limit>,
        options: &HashMap<String, String>,
    ) -> Result<()> {
        // Executor start: the request values come with the first row (see
        // `params`); nothing is invoked here.
        let table = TableOptions::parse(options)?;
        // The scan signs requests with this server's user mapping: like
        // aws_lambda.invoke, it needs USAGE on the server (checked here).
        let settings = route::settings_for_server(&self.server, &self.options)?;
        let columns = columns
            .iter()
            .map(|c| Ok((c.name.clone(), classify(&c.name, c.type_oid)?)))
            .collect::<Result<Vec<_>>>()?;
        let region = self.options.region.clone();
        self.scan = Some(Scan {
            columns,
            settings,
            concurrency: table
                .max_concurrency
                .or(self.options.max_concurrency)
                .unwrap_or(DEFAULT_MAX_CONCURRENCY),
            function_errors: table.function_errors,
            table,
            region,
            batch: None,
        });
        Ok(())
    }

    fn iter_scan(&mut self, row: &mut Row) -> Result<Option<()>> {
        let Some(scan) = self.scan.as_mut() else {
            return Ok(None);
        };
        if let Some(conditions) = params::take_request_values() {
            scan.start_batch(&conditions)?;
        }
        match scan.next_outcome()? {
            None => Ok(None),
            Some(index) => {
                scan.fill_row(index, row)?;
                Ok(Some(()))
            }
        }
    }

    fn re_scan(&mut self) -> Result<()> {
        // Replays the outcomes already received; new request values, if the
        // rescan changed them, arrive with the next row.
        if let Some(batch) = self.scan.as_mut().and_then(|s| s.batch.as_mut()) {
            batch.cursor = 0;
        }
        Ok(())
    }

    fn end_scan(&mut self) -> Result<()> {
        // Dropping the stream drops any call still in flight and its connection.
        self.scan = None;
        Ok(())
    }

    fn fdw_routine_hook(routine: &mut supabase_wrappers::FdwRoutine<pgrx::AllocatedByRust>) {
        params::install(routine);
    }

    fn validator(options: Vec<Option<String>>, catalog: Option<Oid>) -> Result<()> {
        let catalog = match catalog {
            Some(FOREIGN_DATA_WRAPPER_RELATION_ID) => Catalog::Wrapper,
            Some(FOREIGN_SERVER_RELATION_ID) => Catalog::Server,
            Some(pg_sys::UserMappingRelationId) => Catalog::UserMapping,
            Some(FOREIGN_TABLE_RELATION_ID) => Catalog::Table,
            _ => return Ok(()),
        };
        let options: Vec<String> = options.into_iter().flatten().collect();
        options::validate(catalog, &options)?;
        Ok(())
    }
}
