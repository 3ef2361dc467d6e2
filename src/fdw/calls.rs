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
//! A table that batches (`batch_size`, `batch_format`; see docs/batching.md)
//! sends its payloads many to a call: the fan-out runs over batches, each
//! cut when its call starts (a range of payloads, with one combination of
//! the other request values), and each batch's outcome becomes its rows'
//! (the core's `invoke_batch`), given back in the order they would come
//! unbatched.
//!
//! Offers [`Scan`] (open, start the invocations for new request values,
//! take the next [`Answer`], rewind), and [`Activity`], what its calls came
//! to.

use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::FutureExt;
use futures::stream::{LocalBoxStream, StreamExt};
use pgrx::pg_sys::Oid;

use crate::error::{LambdaFdwError, Result};
use crate::pg::{origin, PG_INTERRUPTS};
use crate::settings::guc;
use crate::settings::route::{self, TableRoute};
use crate::stats;
use lambda_fdw_core::batch::{BatchFormat, BatchMeta, Cut, Cutter};
use lambda_fdw_core::request::{check_reserved_keys, encode_client_context};
use lambda_fdw_core::settings::DEFAULT_MAX_CONCURRENCY;
use lambda_fdw_core::{
    block_on, client_for, fanout, CallClass, CallLog, ClientSettings, CoreError, CoreResult,
    InvokeOutcome, InvokeRequest, ResolvedFunction,
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
    /// Whether batches ramp up (see [`Scan::fast_start`]).
    ramp: bool,
    /// How the table batches rows, if it does.
    batching: Option<Rc<Batching>>,
    /// The invocations for the current values of the request conditions;
    /// `None` until the first row is asked for.
    calls: Option<Calls>,
    /// The calls' statistics, drained after every wait.
    log: Rc<CallLog>,
    activity: Activity,
}

/// What a scan's calls came to, for EXPLAIN ANALYZE: calls finished,
/// attempts made again, function errors, and the time spent waiting.
#[derive(Clone, Copy, Default)]
pub(crate) struct Activity {
    pub calls: u64,
    /// The rows the calls carried (as many as the calls, unbatched).
    pub rows: u64,
    /// Whether the table batches rows.
    pub batched: bool,
    pub retries: u64,
    pub function_errors: u64,
    pub waited: Duration,
    pub peak_in_flight: usize,
}

/// How a table batches rows (options `batch_size` and `batch_format`):
/// the format, the rows per request, and what every batch's metadata says
/// (its request id is each batch's own).
struct Batching {
    format: BatchFormat,
    size: usize,
    meta: BatchMeta,
}

/// The longest request id a batch carries (see `origin::next_request_id`
/// and `batch::part_id`), so that cutting by bytes leaves room for it.
const LONGEST_REQUEST_ID: usize = 80;

impl Batching {
    /// The table's batching, if it batches, with the metadata of calls
    /// made for `user` through foreign table `relid`.
    fn of(table: &TableOptions, relid: Oid, user: Oid) -> Option<Self> {
        let format = table.batching()?;
        Some(Self {
            format,
            size: table.batch_size,
            meta: BatchMeta {
                request_id: String::new(),
                database: origin::database_name(),
                user: crate::pg::catalog::role_name(user),
                function: origin::qualified_name(relid),
                query_id: origin::statement_id(),
                cluster: origin::cluster_label(),
            },
        })
    }

    /// How batches are cut for requests of at most `limit` bytes.
    fn cutter(&self, limit: usize) -> Cutter {
        let longest = BatchMeta {
            request_id: "x".repeat(LONGEST_REQUEST_ID),
            ..self.meta.clone()
        };
        Cutter::new(self.format, &longest, self.size, limit)
    }
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
    /// How the rows are batched, if they are.
    batching: Option<Rc<Batching>>,
}

impl Requests {
    /// Checks every value the invocations use, as every request was checked
    /// before the first call when they were all built up front, and fails
    /// with the error the first bad request in order would have given. A
    /// product with no invocation (a NULL, contradictory conditions) checks
    /// nothing, as then.
    fn prepare(
        product: Product,
        count: usize,
        table: &TableOptions,
        region: &str,
        batching: Option<Rc<Batching>>,
    ) -> Result<Self> {
        if count == 0 {
            return Ok(Self {
                product,
                count,
                payloads: Vec::new(),
                targets: Vec::new(),
                contexts: Vec::new(),
                batching,
            });
        }
        let mut targets: Vec<CoreResult<ResolvedFunction>> = product
            .qualifiers
            .iter()
            .map(|q| table.function.resolve(Some(region), q.as_deref(), None))
            .collect();
        let mut payloads: Vec<Result<Bytes>> = product
            .payloads
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p.as_str().as_bytes())))
            .collect();
        let mut contexts: Vec<CoreResult<Option<String>>> = product
            .contexts
            .iter()
            .map(|c| {
                c.as_ref()
                    .map(|c| {
                        // A caller's context may not set the queue's id.
                        encode_client_context(&check_reserved_keys(c.as_str())?)
                    })
                    .transpose()
            })
            .collect();
        // Batched, a payload is too large if its batch of one is.
        let sizer = batching.as_ref().map(|b| b.cutter(usize::MAX));
        let too_large = |payload: usize, invocation_type: usize| -> Option<CoreError> {
            let size = match &sizer {
                Some(cutter) => cutter.alone(product.payloads[payload].as_str()),
                None => payloads[payload].as_ref().ok()?.len(),
            };
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
            batching,
        })
    }

    /// How many invocations share each payload: the product of the other
    /// lists' lengths. Invocation `payload * combos() + combo` sends
    /// payload `payload` with the others' combination `combo`.
    fn combos(&self) -> usize {
        (self.count / self.product.payloads.len().max(1)).max(1)
    }

    /// The batches, in the order their rows come: for each range of
    /// payloads cut (lazily, when the fan-out starts its first batch), one
    /// batch per combination of the other request values.
    fn batches(self: &Rc<Self>, batching: &Batching) -> impl Iterator<Item = BatchOf> + Unpin {
        let limit = self
            .product
            .invocation_types
            .iter()
            .map(|t| t.max_payload_bytes())
            .min()
            .unwrap_or(usize::MAX);
        let cutter = batching.cutter(limit);
        let (requests, combos) = (self.clone(), self.combos());
        let (mut next, mut rows, mut combo) = (0, 0..0, combos);
        std::iter::from_fn(move || {
            if combo == combos {
                let payloads = &requests.product.payloads;
                if next >= payloads.len() {
                    return None;
                }
                rows = match cutter.next(next, payloads.len(), |i| payloads[i].as_str()) {
                    Cut::Rows(rows) => rows,
                    // Checked by prepare: cannot happen; sent alone, Lambda
                    // refuses it as too large.
                    Cut::TooLarge { row, .. } => row..row + 1,
                };
                next = rows.end;
                combo = 0;
            }
            combo += 1;
            Some(BatchOf {
                payloads: rows.clone(),
                combo: combo - 1,
            })
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

/// One batch: a range of payloads, sent with one combination of the other
/// request values (see [`Requests::combos`]).
struct BatchOf {
    payloads: Range<usize>,
    combo: usize,
}

/// The calls in flight: one invocation per row, or batches of rows.
enum Stream {
    Rows(LocalBoxStream<'static, CoreResult<InvokeOutcome>>),
    Batches(LocalBoxStream<'static, CoreResult<Vec<InvokeOutcome>>>),
}

/// The invocations for one set of request values, and what came back.
struct Calls {
    requests: Rc<Requests>,
    /// The calls, started when the first row is asked for.
    stream: Option<Stream>,
    /// Whether every outcome is kept, for a rescan to replay.
    keep: bool,
    /// The outcomes kept: every one received when `keep`, else the last
    /// ones received (the current row's, and the rest of its batches').
    outcomes: Vec<InvokeOutcome>,
    /// The invocation of `outcomes[0]`.
    base: usize,
    /// How many outcomes the calls have given.
    received: usize,
    /// The next row's invocation.
    cursor: usize,
}

impl Calls {
    /// The outcome of invocation `index`, the current row's or a kept one.
    fn outcome(&self, index: usize) -> &InvokeOutcome {
        &self.outcomes[index - self.base]
    }

    /// Takes in the next outcomes received, which begin at `received`.
    fn take(&mut self, outcomes: impl IntoIterator<Item = InvokeOutcome>) {
        if !self.keep {
            self.outcomes.clear();
            self.base = self.received;
        }
        let before = self.outcomes.len();
        self.outcomes.extend(outcomes);
        self.received += self.outcomes.len() - before;
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
        let batching = Batching::of(&route.table, relid, user).map(Rc::new);
        Ok(Self {
            batching,
            concurrency: route
                .table
                .max_concurrency
                .or(route.server_options.max_concurrency)
                .unwrap_or(DEFAULT_MAX_CONCURRENCY),
            route,
            settings,
            keep: true,
            ramp: false,
            calls: None,
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

    /// Whether the query may read only its first rows (the plan's
    /// `fast_start`: a LIMIT, a cursor, EXISTS). Then a batched scan starts
    /// one batch and doubles how many run ahead at each batch it takes (see
    /// `fanout::Ordered::ramped`), so that `LIMIT 10` sends one batch; else
    /// it starts `max_concurrency` at once, as an unbatched scan does.
    pub(crate) fn fast_start(&mut self, ramp: bool) {
        self.ramp = ramp;
    }

    /// The scan's calls so far.
    pub(crate) fn activity(&self) -> Activity {
        Activity {
            peak_in_flight: self.log.peak(),
            batched: self.batching.is_some(),
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
            self.activity.rows += if c.class.is_some() { c.rows } else { 0 };
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
    pub(crate) fn start_values(&mut self, conditions: &[Allowed]) -> Result<()> {
        self.calls = None;
        let (table, region) = (&self.route.table, &self.route.server_options.region);
        let product =
            plan_invocations(conditions, table)?.ok_or_else(|| LambdaFdwError::NoPayload {
                function: table.function_name.clone(),
            })?;
        let batch_size = self.batching.as_ref().map_or(1, |b| b.size);
        let count = check_count(
            &product,
            guc::max_scan_invocations(),
            &table.function_name,
            batch_size,
        )?;
        let requests = Requests::prepare(product, count, table, region, self.batching.clone())?;
        self.calls = Some(Calls {
            requests: Rc::new(requests),
            stream: None,
            keep: self.keep,
            outcomes: Vec::new(),
            base: 0,
            received: 0,
            cursor: 0,
        });
        Ok(())
    }

    /// Starts the rows again from the first: kept outcomes are replayed;
    /// without them the invocations are made again.
    pub(crate) fn rewind(&mut self) {
        let Some(calls) = self.calls.as_mut() else {
            return;
        };
        calls.cursor = 0;
        if !calls.keep && calls.received > 0 {
            calls.stream = None;
            calls.outcomes.clear();
            calls.base = 0;
            calls.received = 0;
        }
    }

    /// The next row's request and outcome, waiting for it if need be;
    /// `None` after the last. A function error is raised here when the
    /// table's `function_errors` option says so.
    pub(crate) fn next_answer(&mut self) -> Result<Option<Answer<'_>>> {
        let Some(index) = self.next_outcome()? else {
            return Ok(None);
        };
        let Some(calls) = self.calls.as_ref() else {
            return Ok(None);
        };
        let answer = Answer {
            planned: calls.requests.product.get(index),
            outcome: calls.outcome(index),
            display: calls.requests.display(index),
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
        let Some(calls) = self.calls.as_mut() else {
            // The request values never arrived: nothing may be invoked.
            return Err(LambdaFdwError::NoPayload {
                function: self.route.table.function_name.clone(),
            });
        };
        if calls.cursor < calls.received {
            // A rescan replaying kept outcomes, or the rest of a batch.
            calls.cursor += 1;
            return Ok(Some(calls.cursor - 1));
        }
        if calls.received == calls.requests.count {
            // Every call has answered: no need to wait on the stream's end.
            return Ok(None);
        }
        if calls.stream.is_none() {
            let client = client_for(&self.settings, &PG_INTERRUPTS)?;
            let (requests, log) = (calls.requests.clone(), self.log.clone());
            calls.stream = Some(match &requests.batching {
                Some(batching) => {
                    let batches = requests.batches(batching);
                    let (format, batching) = (batching.format, batching.clone());
                    let slowly = client.starts_slowly(&requests.request(0).target.function_name);
                    let start = move |batch: BatchOf| {
                        let (client, log, requests) =
                            (client.clone(), log.clone(), requests.clone());
                        let shared = requests
                            .request(batch.payloads.start * requests.combos() + batch.combo);
                        let meta = BatchMeta {
                            request_id: origin::next_request_id(),
                            ..batching.meta.clone()
                        };
                        async move {
                            let rows = &requests.payloads[batch.payloads];
                            client
                                .invoke_batch(format, &meta, &shared, rows, &log)
                                .await
                        }
                        .boxed_local()
                    };
                    let fan_out = fanout::ordered(batches, self.concurrency, start);
                    let fan_out = if slowly {
                        fan_out.slow_start()
                    } else {
                        fan_out
                    };
                    Stream::Batches(if self.ramp {
                        fan_out.ramped().boxed_local()
                    } else {
                        fan_out.boxed_local()
                    })
                }
                None if requests.count == 1 => {
                    // One call is awaited where it stands, as aws_lambda.invoke
                    // does: the fan-out would move the SDK's large future to the
                    // heap and poll it through its own machinery (measured for a
                    // prepared one-payload query: 242 us of backend CPU a call
                    // instead of 165).
                    let outcome = block_on(
                        client.invoke(requests.request(0), &self.log),
                        &PG_INTERRUPTS,
                    )??;
                    calls.take([outcome]);
                    calls.cursor += 1;
                    return Ok(Some(calls.cursor - 1));
                }
                None => {
                    // Each request is built when the fan-out starts its call.
                    let lazy = (0..requests.count).map(move |index| requests.request(index));
                    Stream::Rows(client.invoke_all(lazy, self.concurrency, log))
                }
            });
        }
        let received = calls.received;
        match calls.stream.as_mut() {
            None => return Ok(None),
            Some(Stream::Rows(stream)) => {
                if let Some(outcome) = block_on(stream.next(), &PG_INTERRUPTS)? {
                    calls.take([outcome?]);
                }
            }
            Some(Stream::Batches(stream)) => {
                // The batches of one range of payloads, one per combination
                // of the other values: their rows interleave.
                let mut group = Vec::with_capacity(calls.requests.combos());
                for _ in 0..calls.requests.combos() {
                    match block_on(stream.next(), &PG_INTERRUPTS)? {
                        Some(outcomes) => group.push(outcomes?.into_iter()),
                        None => break,
                    }
                }
                let rows = group.first().map_or(0, |g| g.len());
                let mut outcomes = Vec::with_capacity(rows * group.len());
                for _ in 0..rows {
                    outcomes.extend(group.iter_mut().filter_map(Iterator::next));
                }
                calls.take(outcomes);
            }
        }
        if calls.received == received {
            return Ok(None);
        }
        calls.cursor += 1;
        Ok(Some(calls.cursor - 1))
    }
}
