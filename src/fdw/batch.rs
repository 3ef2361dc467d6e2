//! The invocations of one foreign-table scan: which requests its conditions
//! allow, the calls in flight, and what came back. Nothing here touches a
//! plan node; `executor` does that.
//!
//! What a scan holds grows with its window in flight, not with the number of
//! invocations: the distinct values of each request column (see
//! [`Product`]), checked and encoded once per value before the first call;
//! each request is built when the fan-out starts it, and each outcome is
//! dropped when the next row is asked for. Only a scan that PostgreSQL may
//! scan again (see [`Scan::keep_outcomes`]) keeps its outcomes, so that a
//! rescan with the same values replays them instead of invoking again.
//!
//! Offers [`Scan`] (open, start a batch, take the next [`Answer`], rewind),
//! and [`Activity`], what its calls came to.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{LocalBoxStream, StreamExt};
use pgrx::pg_sys::Oid;
use serde_json::Value as Json;

use crate::error::{LambdaFdwError, Result};
use crate::pg::PG_INTERRUPTS;
use crate::settings::guc;
use crate::settings::route::{self, TableRoute};
use crate::stats;
use lambda_fdw_core::request::{check_reserved_keys, encode_client_context};
use lambda_fdw_core::settings::DEFAULT_MAX_CONCURRENCY;
use lambda_fdw_core::{
    block_on, client_for, CallClass, CallLog, ClientSettings, CoreError, CoreResult, InvokeOutcome,
    InvokeRequest, ResolvedFunction,
};

use super::product::{check_count, plan_invocations, Allowed, Failure, PlannedInvocation, Product};
use crate::settings::options::{FunctionErrors, TableOptions};

/// What one scan of a foreign table invokes, and with which settings.
pub(crate) struct Scan {
    route: Rc<TableRoute>,
    settings: ClientSettings,
    concurrency: usize,
    /// Whether outcomes are kept for a rescan to replay.
    keep: bool,
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
pub(crate) struct Activity {
    pub calls: u64,
    pub retries: u64,
    pub function_errors: u64,
    pub waited: Duration,
    pub peak_in_flight: usize,
}

/// The requests for one set of request values, checked: the product of the
/// values, and what each value sends. Shared with the fan-out, which builds
/// each request from its index when it starts it.
struct Requests {
    product: Product,
    count: usize,
    /// Per payload: its JSON text.
    payloads: Vec<Bytes>,
    /// Per qualifier: the function called.
    targets: Vec<ResolvedFunction>,
    /// Per context: the client context sent (base64).
    contexts: Vec<Option<String>>,
}

impl Requests {
    /// Checks every value the invocations use, as every request was checked
    /// before the first call when they were all built up front, and fails
    /// with the error the first bad request in order would have given. A
    /// product with no invocation (a NULL, contradictory conditions) checks
    /// nothing, as then.
    fn prepare(product: Product, count: usize, table: &TableOptions, region: &str) -> Result<Self> {
        if count == 0 {
            return Ok(Self {
                product,
                count,
                payloads: Vec::new(),
                targets: Vec::new(),
                contexts: Vec::new(),
            });
        }
        let mut targets: Vec<CoreResult<ResolvedFunction>> = product
            .qualifiers
            .iter()
            .map(|q| table.function.resolve(Some(region), q.as_deref(), None))
            .collect();
        let mut payloads: Vec<Result<Bytes>> =
            product.payloads.iter().map(encode_payload).collect();
        let mut contexts: Vec<CoreResult<Option<String>>> = product
            .contexts
            .iter()
            .map(|c| {
                c.as_ref()
                    .map(|c| {
                        // A caller's context may not set the queue's id.
                        encode_client_context(&check_reserved_keys(&c.to_string())?)
                    })
                    .transpose()
            })
            .collect();
        let too_large = |payload: usize, invocation_type: usize| -> Option<CoreError> {
            let size = payloads[payload].as_ref().ok()?.len();
            let invocation_type = product.invocation_types[invocation_type];
            let limit = invocation_type.max_payload_bytes();
            (size > limit).then(|| CoreError::PayloadTooLarge {
                size,
                limit,
                invocation_type: invocation_type.as_str(),
            })
        };
        let failure = product.first_failure(
            |q| targets[q].is_err(),
            |p, t| payloads[p].is_err() || too_large(p, t).is_some(),
            |c| contexts[c].is_err(),
        );
        match failure {
            None => {}
            Some(Failure::Qualifier(q)) => {
                return Err(targets.swap_remove(q).err().map_or(
                    LambdaFdwError::Internal("a qualifier failed and then passed"),
                    LambdaFdwError::from,
                ))
            }
            Some(Failure::Payload {
                payload,
                invocation_type,
            }) => {
                let error = too_large(payload, invocation_type);
                return Err(match payloads.swap_remove(payload) {
                    Err(e) => e,
                    Ok(_) => error.map_or(
                        LambdaFdwError::Internal("a payload failed and then passed"),
                        LambdaFdwError::from,
                    ),
                });
            }
            Some(Failure::Context(c)) => {
                return Err(contexts.swap_remove(c).err().map_or(
                    LambdaFdwError::Internal("a context failed and then passed"),
                    LambdaFdwError::from,
                ))
            }
        }
        // Every value passed: an invocation uses one of each list, and all
        // of them are in some invocation.
        Ok(Self {
            count,
            payloads: payloads.into_iter().collect::<Result<_>>()?,
            targets: targets.into_iter().collect::<CoreResult<_>>()?,
            contexts: contexts.into_iter().collect::<CoreResult<_>>()?,
            product,
        })
    }

    /// The request of invocation `index`, made of values checked already.
    fn request(&self, index: usize) -> InvokeRequest {
        let at = self.product.position(index);
        let planned = self.product.get(index);
        InvokeRequest {
            target: self.targets[at.qualifier].clone(),
            invocation_type: planned.invocation_type,
            log_type: planned.log_type,
            client_context: self.contexts[at.context].clone(),
            payload: self.payloads[at.payload].clone(),
        }
    }

    /// The function invocation `index` calls, as messages name it.
    fn display(&self, index: usize) -> &str {
        &self.targets[self.product.position(index).qualifier].display
    }
}

fn encode_payload(payload: &Json) -> Result<Bytes> {
    serde_json::to_vec(payload)
        .map(Bytes::from)
        .map_err(|e| LambdaFdwError::Encode {
            what: "payload",
            reason: e.to_string(),
        })
}

/// The invocations for one set of request values, and what came back.
struct Batch {
    requests: Rc<Requests>,
    /// The calls, started when the first row is asked for.
    stream: Option<LocalBoxStream<'static, CoreResult<InvokeOutcome>>>,
    /// Whether every outcome is kept, for a rescan to replay.
    keep: bool,
    /// The outcomes kept: every one received when `keep`, else the last
    /// one only (the current row's).
    outcomes: Vec<InvokeOutcome>,
    /// How many outcomes the calls have given.
    received: usize,
    /// The next row's invocation.
    cursor: usize,
}

impl Batch {
    /// The outcome of invocation `index`, the current row's or a kept one.
    fn outcome(&self, index: usize) -> &InvokeOutcome {
        if self.keep {
            &self.outcomes[index]
        } else {
            &self.outcomes[0]
        }
    }
}

/// One row's worth: the request and what it got back.
pub(crate) struct Answer<'a> {
    pub planned: PlannedInvocation<'a>,
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
    pub(crate) fn open(relid: Oid, user: Oid) -> Result<Self> {
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
            keep: true,
            batch: None,
            log: Rc::default(),
            activity: Activity::default(),
        })
    }

    /// Whether the scan keeps its outcomes (the default), so that a rescan
    /// with the same request values replays them. A scan PostgreSQL will
    /// not scan again streams its rows instead and forgets each one; if a
    /// rescan comes all the same, its rows are computed again, by invoking
    /// again, which PostgreSQL allows of a node not told to expect rescans.
    /// Takes effect from the next batch.
    pub(crate) fn keep_outcomes(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// The scan's calls so far.
    pub(crate) fn activity(&self) -> Activity {
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

    /// Plans the invocations for new request values, dropping the previous
    /// ones (and any call of theirs still in flight). Refuses more
    /// invocations than lambda_fdw.max_scan_invocations, and any request
    /// that cannot be sent, before anything is sent.
    pub(crate) fn start_batch(&mut self, conditions: &[Allowed]) -> Result<()> {
        self.batch = None;
        let (table, region) = (&self.route.table, &self.route.server_options.region);
        let product =
            plan_invocations(conditions, table)?.ok_or_else(|| LambdaFdwError::NoPayload {
                function: table.function_name.clone(),
            })?;
        let count = check_count(&product, guc::max_scan_invocations(), &table.function_name)?;
        let requests = Requests::prepare(product, count, table, region)?;
        self.batch = Some(Batch {
            requests: Rc::new(requests),
            stream: None,
            keep: self.keep,
            outcomes: Vec::new(),
            received: 0,
            cursor: 0,
        });
        Ok(())
    }

    /// Starts the rows again from the first: kept outcomes are replayed;
    /// without them the invocations are made again.
    pub(crate) fn rewind(&mut self) {
        let Some(batch) = self.batch.as_mut() else {
            return;
        };
        batch.cursor = 0;
        if !batch.keep && batch.received > 0 {
            batch.stream = None;
            batch.outcomes.clear();
            batch.received = 0;
        }
    }

    /// The next row's request and outcome, waiting for it if need be;
    /// `None` after the last. A function error is raised here when the
    /// table's `function_errors` option says so.
    pub(crate) fn next_answer(&mut self) -> Result<Option<Answer<'_>>> {
        let Some(index) = self.next_outcome()? else {
            return Ok(None);
        };
        let Some(batch) = self.batch.as_ref() else {
            return Ok(None);
        };
        let answer = Answer {
            planned: batch.requests.product.get(index),
            outcome: batch.outcome(index),
            display: batch.requests.display(index),
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
        if batch.cursor < batch.received {
            // A rescan replaying kept outcomes (only kept ones are behind).
            batch.cursor += 1;
            return Ok(Some(batch.cursor - 1));
        }
        if batch.received == batch.requests.count {
            // Every call has answered: no need to wait on the stream's end.
            return Ok(None);
        }
        let next = if let Some(stream) = batch.stream.as_mut() {
            block_on(stream.next(), &PG_INTERRUPTS)?
        } else {
            let client = client_for(&self.settings, &PG_INTERRUPTS)?;
            if batch.requests.count == 1 {
                // One call is awaited where it stands, as aws_lambda.invoke
                // does: the fan-out would move the SDK's large future to the
                // heap and poll it through its own machinery (measured for a
                // prepared one-payload query: 242 us of backend CPU a call
                // instead of 165).
                let request = batch.requests.request(0);
                Some(block_on(client.invoke(request, &self.log), &PG_INTERRUPTS)?)
            } else {
                // Each request is built when the fan-out starts its call.
                let (requests, log) = (batch.requests.clone(), self.log.clone());
                let lazy = (0..requests.count).map(move |index| requests.request(index));
                let stream = batch
                    .stream
                    .insert(client.invoke_all(lazy, self.concurrency, log));
                block_on(stream.next(), &PG_INTERRUPTS)?
            }
        };
        match next {
            None => Ok(None),
            Some(outcome) => {
                let outcome = outcome?;
                if !batch.keep {
                    batch.outcomes.clear();
                }
                batch.outcomes.push(outcome);
                batch.received += 1;
                batch.cursor += 1;
                Ok(Some(batch.cursor - 1))
            }
        }
    }
}
