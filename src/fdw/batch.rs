//! The invocations of one foreign-table scan: which requests its conditions
//! allow, the calls in flight, and the outcomes received, kept so that a
//! rescan with the same values replays them instead of invoking again.
//! Nothing here touches a plan node; `executor` does that.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::stream::{LocalBoxStream, StreamExt};
use pgrx::pg_sys::Oid;

use crate::config::PG_INTERRUPTS;
use crate::core::settings::DEFAULT_MAX_CONCURRENCY;
use crate::core::{
    block_on, client_for, CallClass, CallLog, ClientSettings, CoreResult, InvokeOutcome,
    InvokeRequest,
};
use crate::error::{LambdaFdwError, Result};
use crate::route::{self, TableRoute};
use crate::stats;

use super::options::FunctionErrors;
use super::plan::{plan_invocations, Allowed, PlannedInvocation};

/// What one scan of a foreign table invokes, and with which settings.
pub struct Scan {
    route: Rc<TableRoute>,
    settings: ClientSettings,
    concurrency: usize,
    /// The invocations for the current values of the request conditions;
    /// `None` until the first row is asked for.
    batch: Option<Batch>,
    /// The calls' statistics, drained after every wait.
    log: Rc<CallLog>,
    activity: Activity,
}

/// What a scan's calls came to, for EXPLAIN ANALYZE: calls finished,
/// attempts made again, function errors, and the time spent waiting.
#[derive(Clone, Copy, Default)]
pub struct Activity {
    pub calls: u64,
    pub retries: u64,
    pub function_errors: u64,
    pub waited: Duration,
    pub peak_in_flight: usize,
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

/// One row's worth: the request and what it got back.
pub struct Answer<'a> {
    pub planned: &'a PlannedInvocation,
    pub outcome: &'a InvokeOutcome,
    /// The function as messages name it.
    pub display: &'a str,
}

impl Scan {
    /// The scan of foreign table `relid` checked as `user` (the view owner
    /// for a scan through a view, else the current user): its options, its
    /// server's, and the client settings of the user's mapping; USAGE on the
    /// server and the credentials rule are checked on every execution (see
    /// `route::table_signing`).
    pub fn open(relid: Oid, user: Oid) -> Result<Self> {
        let route = route::table_route(relid)?;
        let settings = route::table_signing(&route.server, &route.server_options, user)?.settings;
        Ok(Self {
            concurrency: route
                .table
                .max_concurrency
                .or(route.server_options.max_concurrency)
                .unwrap_or(DEFAULT_MAX_CONCURRENCY),
            route,
            settings,
            batch: None,
            log: Rc::default(),
            activity: Activity::default(),
        })
    }

    /// The scan's calls so far.
    pub fn activity(&self) -> Activity {
        Activity {
            peak_in_flight: self.log.peak(),
            ..self.activity
        }
    }

    /// Counts the calls finished during a wait that began at `since`: in
    /// the scan's activity and in the shared statistics.
    fn account(&mut self, since: Instant) {
        self.activity.waited += since.elapsed();
        let calls = self.log.drain();
        for c in &calls {
            self.activity.calls += u64::from(c.class.is_some());
            self.activity.retries += u64::from(c.retries);
            self.activity.function_errors += u64::from(c.class == Some(CallClass::FunctionError));
        }
        let server = &self.route.server;
        stats::record(
            &stats::Caller::current(Some((server.oid, server.name.as_str()))),
            &calls,
        );
    }

    /// Builds the invocations for new request values, dropping the previous
    /// ones (and any call of theirs still in flight).
    pub fn start_batch(&mut self, conditions: &[Allowed]) -> Result<()> {
        self.batch = None;
        let (table, region) = (&self.route.table, &self.route.server_options.region);
        let planned =
            plan_invocations(conditions, table)?.ok_or_else(|| LambdaFdwError::NoPayload {
                function: table.function_name.clone(),
            })?;
        let mut requests = Vec::with_capacity(planned.len());
        let mut displays = Vec::with_capacity(planned.len());
        for p in &planned {
            let target = table
                .function
                .resolve(Some(region), p.qualifier.as_deref(), None)?;
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

    /// Starts the rows again from the first; the outcomes are kept.
    pub fn rewind(&mut self) {
        if let Some(batch) = self.batch.as_mut() {
            batch.cursor = 0;
        }
    }

    /// The next row's request and outcome, waiting for it if need be;
    /// `None` after the last. A function error is raised here when the
    /// table's `function_errors` option says so.
    pub fn next_answer(&mut self) -> Result<Option<Answer<'_>>> {
        let Some(index) = self.next_outcome()? else {
            return Ok(None);
        };
        let Some(batch) = self.batch.as_ref() else {
            return Ok(None);
        };
        let answer = Answer {
            planned: &batch.planned[index],
            outcome: &batch.outcomes[index],
            display: &batch.displays[index],
        };
        if answer.outcome.function_error.is_some()
            && self.route.table.function_errors == FunctionErrors::Raise
        {
            answer
                .outcome
                .clone()
                .raise_function_error(answer.display)?;
        }
        Ok(Some(answer))
    }

    fn next_outcome(&mut self) -> Result<Option<usize>> {
        let since = Instant::now();
        let next = self.wait_next();
        self.account(since);
        next
    }

    fn wait_next(&mut self) -> Result<Option<usize>> {
        let Some(batch) = self.batch.as_mut() else {
            // The request values never arrived: nothing may be invoked.
            return Err(LambdaFdwError::NoPayload {
                function: self.route.table.function_name.clone(),
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
                    Some(request) => {
                        Some(block_on(client.invoke(request, &self.log), &PG_INTERRUPTS)?)
                    }
                    None => None,
                }
            } else {
                let stream = batch.stream.insert(client.invoke_all(
                    requests,
                    self.concurrency,
                    self.log.clone(),
                ));
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
}
