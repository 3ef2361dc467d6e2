//! The background workers that send queued invocations after COMMIT.
//!
//! - The launcher (static, started with the server when the library is
//!   preloaded) is connected to no database. It waits for the database named
//!   by `lambda_fdw.database_name` to exist, then starts the queue worker for
//!   it, and starts it again if it stops.
//! - The queue worker waits for the extension's queue table, puts back rows
//!   a previous worker left `sending` (at least once), then loops: claim due
//!   rows with `FOR UPDATE SKIP LOCKED` up to `lambda_fdw.queue_concurrency`
//!   in flight, send them through the invocation core, record outcomes, and
//!   reschedule retryable failures in the row (no sleeping). It sleeps on its
//!   latch, which a committing transaction that queued sets (see `wake`).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
    SignalWakeFlags,
};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Semaphore};

use crate::catalog;
use crate::config::client_settings;
use crate::convert;
use crate::core::{
    block_on_until, client_for, parse_function_name, retry, sending_runtime, CallStats,
    ClientSettings, CoreError, Interrupts, InvocationType, InvokeOutcome, InvokeRequest,
    LambdaClient,
};
use crate::fdw::options::{ServerOptions, UserMappingOptions};
use crate::guc;
use crate::stats;

use super::wake;

/// How long the launcher waits before starting a queue worker again.
const RESTART_DELAY: Duration = Duration::from_secs(5);
/// Longest sleep between two looks at the queue.
const POLL: Duration = Duration::from_secs(1);
/// Threads that run the calls (SigV4 signing and HTTP), beside the worker's
/// main thread, which does the SQL.
const SENDING_THREADS: usize = 2;
/// How often finished rows past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);

fn shutdown_requested() -> bool {
    // SAFETY: a sig_atomic_t flag that the SIGTERM handler sets.
    unsafe { std::ptr::read_volatile(&raw const pg_sys::ShutdownRequestPending) != 0 }
}

fn latch_set() -> bool {
    // SAFETY: MyLatch is this process's own latch; is_set is a sig_atomic_t.
    unsafe { std::ptr::read_volatile(&raw const (*pg_sys::MyLatch).is_set) != 0 }
}

fn reload_config_if_asked() {
    // SAFETY: the SIGHUP handler sets ConfigReloadPending; reloading the
    // configuration file between transactions is what it asks for.
    unsafe {
        if std::ptr::read_volatile(&raw const pg_sys::ConfigReloadPending) != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}

/// Registers the launcher; from `_PG_init` while preloading.
pub fn register_launcher() {
    BackgroundWorkerBuilder::new("lambda_fdw launcher")
        .set_type("lambda_fdw launcher")
        .set_function("lambda_fdw_launcher_main")
        .set_library("lambda_fdw")
        .enable_spi_access()
        .set_restart_time(Some(RESTART_DELAY))
        .load();
}

/// The OID of database `name`, read with a plain scan of pg_database (a
/// process connected to no database cannot use the catalog's indexes).
fn database_oid(name: &str) -> Option<Oid> {
    // SAFETY: inside the caller's transaction, a catalog scan of the shared
    // relation pg_database, opened, scanned and closed here; each tuple is
    // a pg_database row while the scan is on it.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, lock);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        let mut found = None;
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if pgrx::name_data_to_str(&(*form).datname) == name {
                found = Some((*form).oid);
                break;
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, lock);
        found
    }
}

fn start_queue_worker(db: Oid) -> Option<DynamicBackgroundWorker> {
    // SAFETY: MyProcPid is this process's pid.
    let me = unsafe { pg_sys::MyProcPid };
    BackgroundWorkerBuilder::new("lambda_fdw queue worker")
        .set_type("lambda_fdw queue worker")
        .set_function("lambda_fdw_queue_main")
        .set_library("lambda_fdw")
        .set_argument(db.into_datum())
        .enable_spi_access()
        .set_restart_time(None)
        .set_notify_pid(me)
        .load_dynamic()
        .ok()
}

/// The launcher's main function.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn lambda_fdw_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    let name = guc::queue_database();
    let mut worker: Option<DynamicBackgroundWorker> = None;
    let mut said_missing = false;
    let mut next_start = Instant::now();
    while !shutdown_requested() {
        reload_config_if_asked();
        let running = wake::worker_running()
            || worker.as_ref().is_some_and(|w| {
                matches!(w.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted))
            });
        if !running && Instant::now() >= next_start {
            match BackgroundWorker::transaction(|| database_oid(&name)) {
                None => {
                    if !said_missing {
                        log!("lambda_fdw: database \"{name}\" (lambda_fdw.database_name) does not exist; the queue worker starts when it is created");
                        said_missing = true;
                    }
                }
                Some(db) => {
                    said_missing = false;
                    worker = start_queue_worker(db);
                    next_start = Instant::now() + RESTART_DELAY;
                }
            }
        }
        if !BackgroundWorker::wait_latch(Some(POLL)) {
            break;
        }
    }
}

// ---------------------------------------------------------------------------
// The queue worker.

/// A row claimed for sending.
struct Claimed {
    id: i64,
    queued_by: Oid,
    function_name: String,
    region: String,
    qualifier: Option<String>,
    invocation_type: String,
    payload: String,
    context: Option<String>,
    server: Option<Oid>,
    user_mapping: Option<Oid>,
    attempts: i32,
    max_attempts: i32,
}

/// What happened to a claimed row, ready to be written back.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    id: i64,
    /// `succeeded`, `failed`, or `queued` (to be tried again).
    state: &'static str,
    status_code: Option<i32>,
    response: Option<String>,
    executed_version: Option<String>,
    function_error: Option<String>,
    error: Option<String>,
    request_id: Option<String>,
    /// For `queued`: the wait before the next attempt.
    retry_in_ms: Option<f64>,
    /// For a row that was sent: whose call it was, and its statistics.
    measured: Option<(Owner, CallStats)>,
}

/// Whose a queued invocation is, for the statistics: the role that queued
/// it, and the server (OID, name) it goes through.
#[derive(Clone, Debug, PartialEq)]
struct Owner {
    role: Oid,
    server: Option<(Oid, String)>,
}

impl Outcome {
    fn failed(id: i64, error: String) -> Self {
        Self {
            id,
            state: "failed",
            error: Some(error),
            ..Self::default()
        }
    }
}

/// The outcome of one attempt of row `id` (its `attempts`-th of `max`).
fn classify(
    id: i64,
    attempts: i32,
    max: i32,
    display: &str,
    result: Result<InvokeOutcome, (CoreError, Option<Duration>)>,
) -> Outcome {
    match result {
        Ok(out) => {
            let response = out
                .payload
                .as_ref()
                .filter(|p| convert::validate_json(p).is_ok())
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let not_json = out.payload.is_some() && response.is_none();
            let mut o = Outcome {
                id,
                state: "succeeded",
                status_code: Some(out.status_code),
                response,
                executed_version: out.executed_version.clone(),
                function_error: out.function_error.clone(),
                request_id: out.request_id.clone(),
                ..Outcome::default()
            };
            if out.function_error.is_some() {
                o.state = "failed";
                o.error = out
                    .raise_function_error(display)
                    .err()
                    .map(|e| e.to_string());
            } else if not_json {
                o.error = Some(format!(
                    "lambda function {display} returned a response that is not valid JSON"
                ));
            }
            o
        }
        Err((error, retry_after)) => {
            let (status_code, request_id) = match &error {
                CoreError::Service {
                    status, request_id, ..
                } => (Some(*status as i32), request_id.clone()),
                _ => (None, None),
            };
            let retryable = retry::is_retryable(&error);
            if retryable && attempts < max {
                let wait = retry::delay_before(attempts as u32 + 1, retry_after);
                return Outcome {
                    id,
                    state: "queued",
                    status_code,
                    error: Some(error.to_string()),
                    request_id,
                    retry_in_ms: Some(wait.as_secs_f64() * 1000.0),
                    ..Outcome::default()
                };
            }
            let error = if attempts > 1 {
                CoreError::GaveUp {
                    attempts: attempts as u32,
                    last: Box::new(error),
                }
            } else {
                error
            };
            Outcome {
                id,
                state: "failed",
                status_code,
                error: Some(error.to_string()),
                request_id,
                ..Outcome::default()
            }
        }
    }
}

/// The request of a claimed row, as it will be sent, or why it cannot be.
fn request_of(c: &Claimed) -> Result<InvokeRequest, String> {
    let target = parse_function_name(&c.function_name)
        .and_then(|f| f.resolve(Some(&c.region), c.qualifier.as_deref(), None))
        .map_err(|e| e.to_string())?;
    let invocation_type = InvocationType::parse(&c.invocation_type).map_err(|e| e.to_string())?;
    InvokeRequest::queued(
        target,
        invocation_type,
        c.context.as_deref(),
        c.id,
        Bytes::from(c.payload.clone()),
    )
    .map_err(|e| e.to_string())
}

/// The client settings that sign a claimed row: its server's, with the
/// mapping it was queued with, looked up now; or why it cannot be sent.
fn settings_of(c: &Claimed) -> Result<Signing, String> {
    let mut server_name = None;
    let mut settings = match c.server {
        None => client_settings(&c.region, None, None),
        Some(server) => {
            let Some((server_ref, options)) =
                catalog::server_if_exists(server).map_err(|e| e.to_string())?
            else {
                return Err(format!(
                    "the foreign server this invocation was queued through (OID {}) no longer exists",
                    server.to_u32()
                ));
            };
            if !catalog::has_server_usage(server, c.queued_by) {
                return Err(format!(
                    "permission denied for foreign server {}: the role that queued this invocation no longer has USAGE on it",
                    server_ref.name
                ));
            }
            let options = ServerOptions::parse(&options).map_err(|e| e.to_string())?;
            server_name = Some(server_ref.name.clone());
            let mapping = match c.user_mapping {
                None => None,
                Some(umid) => {
                    if catalog::user_mapping_id(c.queued_by, server) != Some(umid) {
                        return Err(format!(
                            "the user mapping this invocation was queued with no longer exists on server {}; it is not sent with other credentials",
                            server_ref.name
                        ));
                    }
                    let map = catalog::user_mapping_options_of(c.queued_by, server)
                        .map_err(|e| e.to_string())?;
                    Some(UserMappingOptions::parse(&map).map_err(|e| e.to_string())?)
                }
            };
            client_settings(&c.region, Some(&options), mapping.as_ref())
        }
    };
    // The queue schedules its own retries, in the row.
    settings.max_attempts = 1;
    Ok(Signing {
        settings,
        server_name,
    })
}

/// What signs a row: the settings, and the name of their server.
#[derive(Clone)]
struct Signing {
    settings: ClientSettings,
    server_name: Option<String>,
}

const QUEUE_OID: &str = "SELECT pg_catalog.to_regclass('lambda_fdw.invocations')::pg_catalog.oid";

/// Whether the queue table exists, locked for this transaction if it does:
/// a DROP EXTENSION then waits for the round to end instead of removing
/// the table between two of its statements.
fn lock_queue() -> Result<bool, String> {
    let Some(oid) = Spi::get_one::<Oid>(QUEUE_OID).map_err(spi_error)? else {
        return Ok(false);
    };
    // SAFETY: locks a relation OID for the current transaction (the lock a
    // DML statement takes); taking the lock processes pending invalidations,
    // so the syscache lookup after it sees a DROP that committed before.
    unsafe {
        pg_sys::LockRelationOid(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        Ok(pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            oid.into(),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        ))
    }
}

const REQUEUE_SENDING: &str =
    "UPDATE lambda_fdw.invocations SET state = 'queued' WHERE state = 'sending'";

const CLAIM: &str = "UPDATE lambda_fdw.invocations SET state = 'sending', attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM lambda_fdw.invocations \
                   WHERE state = 'queued' AND next_attempt_at <= pg_catalog.clock_timestamp() \
                   ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) \
     RETURNING id, queued_by::pg_catalog.oid, function_name, region, qualifier, invocation_type, \
               payload::pg_catalog.text, context::pg_catalog.text, server, user_mapping, \
               attempts, max_attempts";

const RECORD: &str = "UPDATE lambda_fdw.invocations i SET \
       state = o.state, status_code = o.status_code, response = o.response::pg_catalog.jsonb, \
       executed_version = o.executed_version, function_error = o.function_error, \
       error = o.error, request_id = o.request_id, \
       next_attempt_at = CASE WHEN o.state = 'queued' \
         THEN pg_catalog.clock_timestamp() + o.retry_in_ms * interval '1 millisecond' \
         ELSE i.next_attempt_at END, \
       finished_at = CASE WHEN o.state = 'queued' THEN NULL ELSE pg_catalog.clock_timestamp() END \
     FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), \
            pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.int4[]), \
            pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[]), \
            pg_catalog.unnest($6::pg_catalog.text[]), pg_catalog.unnest($7::pg_catalog.text[]), \
            pg_catalog.unnest($8::pg_catalog.text[]), pg_catalog.unnest($9::pg_catalog.float8[])) \
          AS o(id, state, status_code, response, executed_version, function_error, error, \
               request_id, retry_in_ms) \
     WHERE i.id = o.id AND i.state = 'sending'";

const NEXT_DUE: &str = "SELECT EXTRACT(epoch FROM pg_catalog.min(next_attempt_at) \
       - pg_catalog.clock_timestamp())::pg_catalog.float8 \
     FROM lambda_fdw.invocations WHERE state = 'queued'";

const PURGE: &str = "DELETE FROM lambda_fdw.invocations \
     WHERE state IN ('succeeded', 'failed') \
       AND finished_at < pg_catalog.clock_timestamp() - $1 * interval '1 second'";

fn spi_error(e: pgrx::spi::SpiError) -> String {
    e.to_string()
}

fn claim(limit: usize) -> Result<Vec<Claimed>, String> {
    Spi::connect_mut(|client| {
        let rows = client
            .update(CLAIM, None, &[(limit as i64).into()])
            .map_err(spi_error)?;
        let mut out = Vec::new();
        for row in rows {
            let text = |n: usize| row.get::<String>(n).map_err(spi_error);
            let oid = |n: usize| row.get::<Oid>(n).map_err(spi_error);
            out.push(Claimed {
                id: row.get::<i64>(1).map_err(spi_error)?.unwrap_or_default(),
                queued_by: oid(2)?.unwrap_or(Oid::INVALID),
                function_name: text(3)?.unwrap_or_default(),
                region: text(4)?.unwrap_or_default(),
                qualifier: text(5)?,
                invocation_type: text(6)?.unwrap_or_default(),
                payload: text(7)?.unwrap_or_default(),
                context: text(8)?,
                server: oid(9)?,
                user_mapping: oid(10)?,
                attempts: row.get::<i32>(11).map_err(spi_error)?.unwrap_or(1),
                max_attempts: row.get::<i32>(12).map_err(spi_error)?.unwrap_or(1),
            });
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    })
}

fn record(outcomes: &[Outcome]) -> Result<(), String> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = outcomes.iter().map(|o| o.id).collect();
    let states: Vec<String> = outcomes.iter().map(|o| o.state.to_string()).collect();
    let codes: Vec<Option<i32>> = outcomes.iter().map(|o| o.status_code).collect();
    let text = |f: fn(&Outcome) -> &Option<String>| -> Vec<Option<String>> {
        outcomes.iter().map(|o| f(o).clone()).collect()
    };
    let waits: Vec<Option<f64>> = outcomes.iter().map(|o| o.retry_in_ms).collect();
    Spi::run_with_args(
        RECORD,
        &[
            ids.into(),
            states.into(),
            codes.into(),
            text(|o| &o.response).into(),
            text(|o| &o.executed_version).into(),
            text(|o| &o.function_error).into(),
            text(|o| &o.error).into(),
            text(|o| &o.request_id).into(),
            waits.into(),
        ],
    )
    .map_err(spi_error)
}

struct QueueWorker {
    sender: Sender,
    /// Outcomes not yet written back.
    finished: Vec<Outcome>,
    recovered: bool,
    said_waiting: bool,
    last_purge: Option<Instant>,
}

/// Runs `f` in its own transaction; an SQL error inside is logged and
/// ends the worker (the launcher starts a new one).
fn in_transaction<R>(
    what: &str,
    f: impl FnOnce() -> Result<R, String> + std::panic::UnwindSafe + std::panic::RefUnwindSafe,
) -> R {
    match BackgroundWorker::transaction(f) {
        Ok(r) => r,
        Err(e) => {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_FDW_ERROR,
                format!("lambda_fdw queue worker: could not {what}: {e}")
            );
            unreachable!("an ERROR does not return")
        }
    }
}

/// A claimed row made ready to send (inside the claim's transaction, since
/// it reads the catalogs), or why it cannot be sent.
struct Ready {
    id: i64,
    attempts: i32,
    max_attempts: i32,
    prepared: Result<(InvokeRequest, ClientSettings, Owner), String>,
}

/// Who signs a row: role, server, mapping, region.
type SigningKey = (Oid, Option<Oid>, Option<Oid>, String);

fn claim_ready(limit: usize) -> Result<Vec<Ready>, String> {
    // Rows of one role, server and mapping share their settings: looked up
    // once a round.
    let mut settings: HashMap<SigningKey, Result<Signing, String>> = HashMap::new();
    Ok(claim(limit)?
        .into_iter()
        .map(|c| {
            let key = (c.queued_by, c.server, c.user_mapping, c.region.clone());
            let signed = settings
                .entry(key)
                .or_insert_with(|| settings_of(&c))
                .clone();
            Ready {
                id: c.id,
                attempts: c.attempts,
                max_attempts: c.max_attempts,
                prepared: request_of(&c).and_then(|r| {
                    signed.map(|s| {
                        let owner = Owner {
                            role: c.queued_by,
                            server: c.server.zip(s.server_name),
                        };
                        (r, s.settings, owner)
                    })
                }),
            }
        })
        .collect())
}

/// A claimed row with its request and client, waiting for a free slot.
struct ToSend {
    id: i64,
    attempts: i32,
    max_attempts: i32,
    request: InvokeRequest,
    client: LambdaClient,
    owner: Owner,
}

/// The calls in flight, on a runtime of their own: a dispatcher task starts
/// handed-over rows as slots free up, so a slot is refilled the moment its
/// call ends, whatever the worker's main thread is doing (its SQL).
struct Sender {
    runtime: Runtime,
    jobs: mpsc::UnboundedSender<ToSend>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    permits: Arc<Semaphore>,
    slots: usize,
    /// Rows handed over and not yet answered.
    outstanding: usize,
}

impl Sender {
    fn new(slots: usize) -> Result<Self, String> {
        let runtime = sending_runtime(SENDING_THREADS).map_err(|e| e.to_string())?;
        let (jobs, mut incoming) = mpsc::unbounded_channel::<ToSend>();
        let (answers, outcomes) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(slots));
        let available = permits.clone();
        runtime.spawn(async move {
            while let Some(job) = incoming.recv().await {
                let Ok(permit) = available.clone().acquire_owned().await else {
                    break;
                };
                let answers = answers.clone();
                tokio::spawn(async move {
                    let id = job.id;
                    let call = async move {
                        let display = &job.request.target.display;
                        let started = Instant::now();
                        let result = job.client.send_once(&job.request).await;
                        let stats = CallStats::of(
                            result.as_ref().map_err(|(e, _)| e),
                            display.clone(),
                            1,
                            started.elapsed(),
                            job.request.payload.len() as u64,
                        );
                        let mut outcome =
                            classify(job.id, job.attempts, job.max_attempts, display, result);
                        // Each attempt is one send; earlier ones were counted as retries.
                        let stats = if outcome.state == "queued" {
                            stats.to_be_retried()
                        } else {
                            CallStats {
                                retries: 0,
                                ..stats
                            }
                        };
                        outcome.measured = Some((job.owner, stats));
                        outcome
                    };
                    // Every row handed over gets an outcome, even if the call panics.
                    let outcome =
                        AssertUnwindSafe(call)
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|_| {
                                Outcome::failed(id, "the call failed inside lambda_fdw".into())
                            });
                    let _ = answers.send(outcome);
                    drop(permit);
                });
            }
        });
        Ok(Self {
            runtime,
            jobs,
            outcomes,
            permits,
            slots,
            outstanding: 0,
        })
    }

    /// Follows a change of `lambda_fdw.queue_concurrency`.
    fn resize(&mut self, slots: usize) {
        if slots > self.slots {
            self.permits.add_permits(slots - self.slots);
        } else if slots < self.slots {
            let surplus = (self.slots - slots) as u32;
            let permits = self.permits.clone();
            // Taken as calls end, and never given back.
            self.runtime.spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
        }
        self.slots = slots;
    }

    fn submit(&mut self, job: ToSend) {
        if self.jobs.send(job).is_ok() {
            self.outstanding += 1;
        }
    }

    /// Waits for outcomes until the rows handed over run low (time to claim
    /// more), a round's worth has finished, new work is signalled, shutdown
    /// is asked for, or a second passes. Outcomes go straight into
    /// `finished`, so none is lost when the wait is cut short.
    fn wait(&mut self, finished: &mut Vec<Outcome>) {
        let low = self.slots + self.slots / 2;
        let slots = self.slots;
        let seen = finished.len();
        let (outcomes, outstanding) = (&mut self.outcomes, &mut self.outstanding);
        let sink = &mut *finished;
        let work = async move {
            let deadline = tokio::time::Instant::now() + POLL;
            let mut got = 0;
            while *outstanding > 0 {
                match tokio::time::timeout_at(deadline, outcomes.recv()).await {
                    Ok(Some(outcome)) => {
                        sink.push(outcome);
                        *outstanding -= 1;
                        got += 1;
                    }
                    Ok(None) | Err(_) => break,
                }
                while let Ok(outcome) = outcomes.try_recv() {
                    sink.push(outcome);
                    *outstanding -= 1;
                    got += 1;
                }
                if *outstanding < low || got >= slots {
                    break;
                }
            }
        };
        let _ = block_on_until(work, || latch_set() || shutdown_requested());
        for outcome in &mut finished[seen..] {
            if let Some((owner, stats)) = outcome.measured.take() {
                let server = owner
                    .server
                    .as_ref()
                    .map(|(oid, name)| (*oid, name.as_str()));
                stats::record(
                    &stats::Caller {
                        role: owner.role,
                        server,
                    },
                    std::slice::from_ref(&stats),
                );
            }
        }
    }
}

impl QueueWorker {
    /// Queues claimed rows for sending; rows that cannot be sent are failed.
    fn start(&mut self, ready: Vec<Ready>) {
        // Clients are keyed by settings: rows of one server and mapping share one.
        let mut clients = HashMap::new();
        for r in ready {
            let (request, settings, owner) = match r.prepared {
                Ok(v) => v,
                Err(e) => {
                    self.finished.push(Outcome::failed(r.id, e));
                    continue;
                }
            };
            let client = match clients.get(&settings) {
                Some(client) => client,
                None => match client_for(&settings, &Interrupts::NONE) {
                    Ok(client) => clients.entry(settings).or_insert(client),
                    Err(e) => {
                        self.finished.push(Outcome::failed(r.id, e.to_string()));
                        continue;
                    }
                },
            };
            self.sender.submit(ToSend {
                id: r.id,
                attempts: r.attempts,
                max_attempts: r.max_attempts,
                request,
                client: client.clone(),
                owner,
            });
        }
    }

    fn step(&mut self) {
        // SAFETY: MyLatch is this process's latch; reset before looking at
        // the queue, so a commit after the look sets it again.
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        // One transaction a round: record what finished, put back what a
        // previous worker left in flight (first round), delete old rows
        // (once a minute), claim what there is room for.
        let finished = std::mem::take(&mut self.finished);
        self.sender.resize(guc::queue_concurrency());
        // Claimed ahead: up to twice the concurrency, in flight or waiting.
        let free = (2 * self.sender.slots).saturating_sub(self.sender.outstanding);
        let recover = !self.recovered;
        let purge = self.last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY);
        let idle = self.sender.outstanding == 0;
        let round = in_transaction("work the queue", || {
            if !lock_queue()? {
                return Ok(None);
            }
            if recover {
                // At least once: rows a previous worker left in flight are sent again.
                Spi::run(REQUEUE_SENDING).map_err(spi_error)?;
            }
            record(&finished)?;
            if purge {
                let retention = guc::queue_retention_s() as f64;
                Spi::run_with_args(PURGE, &[retention.into()]).map_err(spi_error)?;
            }
            let ready = if free > 0 {
                claim_ready(free)?
            } else {
                Vec::new()
            };
            let due = if idle && ready.is_empty() {
                Spi::get_one::<f64>(NEXT_DUE).map_err(spi_error)?
            } else {
                None
            };
            Ok(Some((ready, due)))
        });
        let Some((ready, due)) = round else {
            if !self.said_waiting {
                log!("lambda_fdw queue worker: lambda_fdw.invocations does not exist in this database; waiting for CREATE EXTENSION lambda_fdw (or its update)");
                self.said_waiting = true;
            }
            self.recovered = false;
            // Calls of a queue that is gone are dropped with their runtime.
            if self.sender.outstanding > 0 {
                match Sender::new(self.sender.slots) {
                    Ok(sender) => self.sender = sender,
                    Err(e) => log!("lambda_fdw queue worker: {e}"),
                }
            }
            BackgroundWorker::wait_latch(Some(POLL));
            return;
        };
        if self.said_waiting {
            log!("lambda_fdw queue worker: found lambda_fdw.invocations; sending");
            self.said_waiting = false;
        }
        self.recovered = true;
        if purge {
            self.last_purge = Some(Instant::now());
        }
        self.start(ready);
        if !self.finished.is_empty() && self.sender.outstanding == 0 {
            // Rows that could not be sent: recorded at once, next round.
            return;
        }
        if self.sender.outstanding == 0 {
            let wait = due
                .map(|s| Duration::from_secs_f64(s.clamp(0.0, POLL.as_secs_f64())))
                .unwrap_or(POLL);
            if !wait.is_zero() {
                BackgroundWorker::wait_latch(Some(wait));
            }
            return;
        }
        self.sender.wait(&mut self.finished);
    }
}

unsafe extern "C-unwind" fn leave_worker_slot(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: MyProcPid is this process's pid.
    wake::release_worker_slot(unsafe { pg_sys::MyProcPid });
}

/// The queue worker's main function; its argument is the database's OID.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn lambda_fdw_queue_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);
    // SAFETY: MyProcPid is this process's pid; on_proc_exit registers a
    // static function to run when the process exits, however it exits.
    let me = unsafe { pg_sys::MyProcPid };
    if !wake::claim_worker_slot(me) {
        log!("lambda_fdw queue worker: another queue worker is running; exiting");
        return;
    }
    unsafe { pg_sys::on_proc_exit(Some(leave_worker_slot), pg_sys::Datum::from(0)) };
    let sender = match Sender::new(guc::queue_concurrency()) {
        Ok(sender) => sender,
        Err(e) => {
            log!("lambda_fdw queue worker: {e}; exiting");
            return;
        }
    };
    let mut worker = QueueWorker {
        sender,
        finished: Vec::new(),
        recovered: false,
        said_waiting: false,
        last_purge: None,
    };
    while !shutdown_requested() {
        reload_config_if_asked();
        worker.step();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::invoke::answered as ok;

    fn throttled() -> CoreError {
        CoreError::Service {
            function: "f".into(),
            code: "TooManyRequestsException".into(),
            message: "Rate exceeded".into(),
            status: 429,
            request_id: Some("req-2".into()),
        }
    }

    #[test]
    fn success_is_recorded_with_its_response() {
        let o = classify(1, 1, 3, "f", Ok(ok(None, r#"{"a":1}"#)));
        assert_eq!(o.state, "succeeded");
        assert_eq!(o.response.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(o.status_code, Some(200));
        assert_eq!(o.request_id.as_deref(), Some("req-1"));
        assert_eq!(o.error, None);
    }

    #[test]
    fn a_function_error_is_final() {
        let o = classify(
            2,
            1,
            3,
            "f",
            Ok(ok(Some("Unhandled"), r#"{"errorMessage":"boom"}"#)),
        );
        assert_eq!(o.state, "failed");
        assert_eq!(o.function_error.as_deref(), Some("Unhandled"));
        assert_eq!(o.response.as_deref(), Some(r#"{"errorMessage":"boom"}"#));
        assert_eq!(
            o.error.as_deref(),
            Some("lambda function f returned error \"Unhandled\": boom")
        );
    }

    #[test]
    fn throttling_is_retried_then_final() {
        let o = classify(
            3,
            1,
            3,
            "f",
            Err((throttled(), Some(Duration::from_secs(2)))),
        );
        assert_eq!(o.state, "queued");
        assert_eq!(o.retry_in_ms, Some(2000.0));
        assert_eq!(o.status_code, Some(429));
        let o = classify(3, 3, 3, "f", Err((throttled(), None)));
        assert_eq!(o.state, "failed");
        assert_eq!(
            o.error.as_deref(),
            Some("lambda returned TooManyRequestsException for f: Rate exceeded (gave up after 3 attempts)")
        );
    }

    #[test]
    fn client_errors_are_final_at_once() {
        let e = CoreError::Service {
            function: "f".into(),
            code: "ResourceNotFoundException".into(),
            message: "Function not found".into(),
            status: 404,
            request_id: None,
        };
        let o = classify(4, 1, 3, "f", Err((e, None)));
        assert_eq!(o.state, "failed");
        assert_eq!(o.retry_in_ms, None);
        assert_eq!(
            o.error.as_deref(),
            Some("lambda returned ResourceNotFoundException for f: Function not found")
        );
    }
}
