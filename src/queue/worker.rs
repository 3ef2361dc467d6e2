//! The background workers that send queued invocations after COMMIT.
//!
//! - The launcher (static, started with the server when the library is
//!   preloaded) is connected to no database. It waits for the database named
//!   by `lambda_fdw.database_name` to exist, then starts the queue worker for
//!   it, and starts it again if it stops.
//! - The queue worker works the extension's queue table only (see
//!   `table::find`: the relation `lambda_fdw.invocations` that, with its
//!   schema, is a member of extension `lambda_fdw`); a relation of that name
//!   the extension did not create is never read, written or sent from, and
//!   neither is the extension's table while it has triggers or rules (one
//!   log line says so). Each round is one transaction: put back what a
//!   previous worker left `sending` (once per table; rows with no attempts
//!   left are failed, as they may have been delivered), record outcomes,
//!   claim due rows with attempts left (`FOR UPDATE SKIP LOCKED`, up to
//!   twice `lambda_fdw.queue_concurrency`, the attempt counted and
//!   committed before the request leaves), and check each claimed row's
//!   role, route and mapping again (`route::region_route` for what
//!   `enqueue` queued, `route::table_signing` for what INSERT queued): a row
//!   that no longer checks out is failed, never sent. The calls run on a
//!   runtime of their own; retryable failures are rescheduled in the row (no
//!   sleeping). It sleeps on its latch, which a committing transaction that
//!   queued sets (see `wake`).
//! - No row can stop it: outcomes are recorded in one statement, and if
//!   that fails each in a subtransaction of its own, a row whose answer
//!   cannot be stored (jsonb refuses it, say) being failed with why; a row
//!   that cannot be read or signed is failed alone; a panic in a call fails
//!   its row. Any other error aborts the round, which keeps nothing of it:
//!   it is logged and the next round tries again (a round's outcomes are
//!   written back then; nothing it claimed was sent).
//!
//! Which role it runs as: it connects as the bootstrap superuser, as
//! PostgreSQL's own background workers do (a role is needed to connect,
//! before anything in the database can be looked at), and as that only
//! reads the catalogs in C. Every SQL statement of a round runs as the
//! queue table's owner (the superuser who ran CREATE EXTENSION, unless a
//! superuser gave the table away), in a security-restricted operation,
//! with `search_path` pinned to `pg_catalog, pg_temp` and every name
//! schema-qualified, operators included: the least privilege that works,
//! since the owner holds every right the rounds use on the table and
//! nothing is granted to anyone for the worker. The calls are signed as the
//! role that queued them would sign them now, never with more.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
    SignalWakeFlags,
};
use pgrx::pg_sys::{self, panic::CaughtError, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Semaphore};

use crate::pg::catalog;
use crate::pg::convert;
use crate::settings::guc;
use crate::settings::route;
use crate::stats;
use lambda_fdw_core::{
    block_on_until, client_for, parse_function_name, retry, sending_runtime, CallStats,
    ClientSettings, CoreError, Interrupts, InvocationType, InvokeOutcome, InvokeRequest,
    LambdaClient,
};

use super::{table, wake};

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
pub(crate) fn register_launcher() {
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
// Transactions and subtransactions that report instead of ending the worker.

/// An error caught from PostgreSQL or from Rust, as one line: the message,
/// and the detail if there is one.
fn describe(e: &CaughtError) -> String {
    let report = match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    match report.detail() {
        Some(detail) if !detail.is_empty() => {
            format!("{} ({})", report.message(), detail.trim_end_matches('.'))
        }
        _ => report.message().to_string(),
    }
}

/// Runs `f` in a transaction of its own and commits it. If `f` or the
/// commit raises an error (or panics), the transaction is aborted and the
/// error returned: nothing `f` did is kept, and the worker goes on.
fn in_transaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    // SAFETY: between transactions in a background worker connected to its
    // database: starts one, with a snapshot for the statements to come.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let result = PgTryBuilder::new(AssertUnwindSafe(|| {
        let r = f();
        // SAFETY: pops the snapshot pushed above and commits.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(r)
    }))
    .catch_others(|e| Err(describe(&e)))
    .execute();
    if result.is_err() {
        // SAFETY: the error state was flushed (PgTryBuilder does it after a
        // catch); aborting releases locks, buffers, snapshots, memory, GUC
        // nest levels and the user identity, as PostgreSQL's own error
        // recovery does, and leaves no transaction open.
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    result
}

/// Runs `f` in an internal subtransaction, as PL/Python's subtransactions
/// do: released if `f` returns, rolled back if it raises an error (or
/// panics), which is then returned. Memory context and resource owner are
/// the caller's again either way.
fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    // SAFETY: inside a transaction; BeginInternalSubTransaction switches
    // memory context and resource owner to the subtransaction's, and the
    // work runs in the caller's memory context, as in PL/Python.
    let (context, owner) = unsafe {
        let saved = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(saved.0);
        saved
    };
    let result = PgTryBuilder::new(AssertUnwindSafe(|| Ok(f())))
        .catch_others(|e| Err(describe(&e)))
        .execute();
    // SAFETY: closes the subtransaction begun above (the error state is
    // flushed when it failed), then restores what it switched.
    unsafe {
        if result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
    result
}

/// The message of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_string()
    }
}

thread_local! {
    /// What `log_unexpected` last said, per kind, and when.
    static LAST_SAID: std::cell::RefCell<HashMap<&'static str, (String, Instant)>> =
        std::cell::RefCell::new(HashMap::new());
}

/// Logs an unexpected error of kind `what` (none a row can cause): each new
/// one, and the same one again at most once a minute, since the worker
/// tries again every round.
fn log_unexpected(what: &'static str, e: &str) {
    let repeat = LAST_SAID.with(|l| {
        let mut l = l.borrow_mut();
        let repeat = l
            .get(what)
            .is_some_and(|(last, at)| last == e && at.elapsed() < Duration::from_secs(60));
        if !repeat {
            l.insert(what, (e.to_string(), Instant::now()));
        }
        repeat
    });
    if !repeat {
        log!("lambda_fdw queue worker: could not {what}: {e}; trying again");
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
    foreign_table: Option<Oid>,
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

    /// This outcome, failed because it could not be stored as it is
    /// (`why`): without the response, which is what a row usually cannot
    /// store, with what the call said kept.
    fn unstorable(&self, why: &str) -> Self {
        let error = match &self.error {
            Some(e) => format!("{e}; the function's response could not be stored: {why}"),
            None => format!("the function's response could not be stored: {why}"),
        };
        Self {
            id: self.id,
            state: "failed",
            status_code: self.status_code,
            executed_version: self.executed_version.clone(),
            function_error: self.function_error.clone(),
            request_id: self.request_id.clone(),
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

/// What signs a row: the settings, and its server (OID, name).
#[derive(Clone)]
struct Signing {
    settings: ClientSettings,
    server: Option<(Oid, String)>,
}

fn exists(cache: pg_sys::SysCacheIdentifier::Type, oid: Oid) -> bool {
    // SAFETY: a syscache existence probe with one OID key.
    unsafe {
        pg_sys::SearchSysCacheExists(
            cache as i32,
            oid.into(),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        )
    }
}

/// How a server is named in errors: its name, or its OID once it is gone.
fn server_label(server: Option<Oid>) -> String {
    match server {
        None => "no server".to_string(),
        Some(oid) => match catalog::server_if_exists(oid) {
            Ok(Some((s, _))) => format!("server \"{}\"", s.name),
            _ => format!("server OID {}", oid.to_u32()),
        },
    }
}

/// What signs a claimed row now, resolved again as the path that queued it
/// resolves a call (`route::region_route` for `lambda_fdw.enqueue`,
/// `route::table_signing` for INSERT into a foreign table), as the role
/// that queued it; or why it is not sent: the role, route, server or
/// mapping no longer checks out, or differs from what the row recorded.
/// Whether `role` may execute the extension's `lambda_fdw.enqueue` (the
/// name, argument types and privilege function all schema-qualified; run
/// with the round's pinned search_path).
fn may_enqueue(role: Oid) -> Result<bool, String> {
    Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.has_function_privilege($1::pg_catalog.oid, \
           'lambda_fdw.enqueue(pg_catalog.text, pg_catalog.jsonb, pg_catalog.text, \
            pg_catalog.text, pg_catalog.text, pg_catalog.jsonb)'::pg_catalog.regprocedure, 'EXECUTE')",
        &[role.into()],
    )
    .map(|v| v.unwrap_or(false))
    .map_err(spi_error)
}

fn signing_of(c: &Claimed) -> Result<Signing, String> {
    if !exists(pg_sys::SysCacheIdentifier::AUTHOID, c.queued_by) {
        return Err(format!(
            "the role that queued this invocation (OID {}) no longer exists; it is not sent",
            c.queued_by.to_u32()
        ));
    }
    if let Some(server) = c.server {
        if !exists(pg_sys::SysCacheIdentifier::FOREIGNSERVEROID, server) {
            return Err(format!(
                "the foreign server this invocation was queued through (OID {}) no longer exists; it is not sent",
                server.to_u32()
            ));
        }
    }
    let signed = match c.foreign_table {
        None => {
            // Who may call: EXECUTE on enqueue, still (revoked from PUBLIC
            // since 0.3.0; rows that 0.2.0 let anyone queue end here too).
            if !may_enqueue(c.queued_by)? {
                return Err(format!(
                    "role \"{}\" no longer has EXECUTE on lambda_fdw.enqueue; it is not sent",
                    catalog::role_name(c.queued_by)
                ));
            }
            route::region_route(&c.region, c.queued_by).map_err(|e| e.to_string())?
        }
        Some(table) => {
            let Some(server) = c.server else {
                return Err(format!(
                    "this invocation was queued through foreign table OID {} but names no server; it is not sent",
                    table.to_u32()
                ));
            };
            if !exists(pg_sys::SysCacheIdentifier::FOREIGNTABLEREL, table) {
                return Err(format!(
                    "the foreign table this invocation was queued through (OID {}) no longer exists; it is not sent",
                    table.to_u32()
                ));
            }
            // Who may call: INSERT on the foreign table, still.
            if !catalog::has_table_insert(table, c.queued_by) {
                return Err(format!(
                    "role \"{}\" no longer has INSERT on the foreign table this invocation was queued through (OID {}); it is not sent",
                    catalog::role_name(c.queued_by),
                    table.to_u32()
                ));
            }
            let table_route = route::table_route(table).map_err(|e| e.to_string())?;
            if table_route.server.oid != server {
                return Err(format!(
                    "the foreign table this invocation was queued through is no longer on {}; it is not sent",
                    server_label(Some(server))
                ));
            }
            route::table_signing(
                &table_route.server,
                &table_route.server_options,
                c.queued_by,
            )
            .map_err(|e| e.to_string())?
        }
    };
    let now = signed.server.as_ref().map(|s| s.oid);
    if now != c.server {
        return Err(match (c.server, &signed.server) {
            (Some(_), None) => format!(
                "this invocation was queued through {}, which no longer routes region {} (only a lambda_fdw server owned by a superuser does); it is not sent",
                server_label(c.server),
                c.region
            ),
            (_, Some(s)) => format!(
                "this invocation was queued through {}, but region {} routes through server \"{}\" now; it is not sent",
                server_label(c.server),
                c.region,
                s.name
            ),
            (None, None) => unreachable!("the servers differ"),
        });
    }
    if signed.mapping != c.user_mapping {
        let server = signed
            .server
            .as_ref()
            .map_or_else(String::new, |s| s.name.clone());
        return Err(match c.user_mapping {
            Some(umid) if !exists(pg_sys::SysCacheIdentifier::USERMAPPINGOID, umid) => format!(
                "the user mapping this invocation was queued with no longer exists on server {server}; it is not sent with other credentials"
            ),
            Some(_) => format!(
                "the user mapping this invocation was queued with no longer applies to role {} on server {server}; it is not sent with other credentials",
                catalog::role_name(c.queued_by)
            ),
            None => format!(
                "this invocation was queued without a user mapping on server {server}, and one applies to role {} now; it is not sent with other credentials",
                catalog::role_name(c.queued_by)
            ),
        });
    }
    let mut settings = signed.settings;
    // The queue schedules its own retries, in the row.
    settings.max_attempts = 1;
    Ok(Signing {
        settings,
        server: signed.server.map(|s| (s.oid, s.name)),
    })
}

// Every statement names its objects with their schema, operators included,
// and runs with search_path pinned to pg_catalog, pg_temp, as the queue
// table's owner in a security-restricted operation.

/// Rows a previous worker left `sending` (it stopped, was killed, or the
/// server crashed, while they were in flight): sent again while they have
/// attempts left, else failed, since each may have been delivered. Also
/// fails `queued` rows with no attempts left (0.2.0 could leave them).
const RECOVER: &str = "UPDATE lambda_fdw.invocations SET \
       state = CASE WHEN attempts OPERATOR(pg_catalog.<) max_attempts \
                    THEN 'queued' ELSE 'failed' END, \
       error = pg_catalog.format( \
         CASE WHEN state OPERATOR(pg_catalog.=) 'sending' \
           THEN 'the queue worker stopped while attempt %s of %s was in flight; the invocation may have been delivered, and it is %s' \
           ELSE '%s attempts of %s were made already; the invocation may have been delivered, and it is %s' END, \
         attempts, max_attempts, \
         CASE WHEN attempts OPERATOR(pg_catalog.<) max_attempts \
              THEN 'sent again' ELSE 'not sent again' END), \
       finished_at = CASE WHEN attempts OPERATOR(pg_catalog.<) max_attempts \
                          THEN NULL ELSE pg_catalog.clock_timestamp() END \
     WHERE state OPERATOR(pg_catalog.=) 'sending' \
        OR (state OPERATOR(pg_catalog.=) 'queued' \
            AND attempts OPERATOR(pg_catalog.>=) max_attempts) \
     RETURNING state";

/// Rows claimed and never started (the worker stopped first): queued again
/// with the attempt their claim counted given back, as no request left.
const UNSTARTED: &str = "UPDATE lambda_fdw.invocations SET state = 'queued', \
       attempts = attempts OPERATOR(pg_catalog.-) 1 \
     WHERE id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int8[]) \
       AND state OPERATOR(pg_catalog.=) 'sending'";

/// Claims due rows with attempts left, counting the attempt: committed
/// before any of them is sent. `{foreign_table}` is the column, or NULL
/// for a table whose SQL predates it (0.2.0, before ALTER EXTENSION UPDATE).
const CLAIM: &str = "WITH due AS ( \
       SELECT id FROM lambda_fdw.invocations \
        WHERE state OPERATOR(pg_catalog.=) 'queued' \
          AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() \
          AND attempts OPERATOR(pg_catalog.<) max_attempts \
        ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) \
     UPDATE lambda_fdw.invocations AS i \
        SET state = 'sending', attempts = i.attempts OPERATOR(pg_catalog.+) 1 \
       FROM due WHERE i.id OPERATOR(pg_catalog.=) due.id \
     RETURNING i.id, i.queued_by::pg_catalog.oid, i.function_name, i.region, i.qualifier, \
               i.invocation_type, i.payload::pg_catalog.text, i.context::pg_catalog.text, \
               i.server, i.user_mapping, i.attempts, i.max_attempts, {foreign_table}";

/// Writes outcomes back, to rows still `sending` only: a row recorded once
/// is never recorded (or sent) again.
const RECORD: &str = "UPDATE lambda_fdw.invocations AS i SET \
       state = o.state, status_code = o.status_code, response = o.response::pg_catalog.jsonb, \
       executed_version = o.executed_version, function_error = o.function_error, \
       error = o.error, request_id = o.request_id, \
       next_attempt_at = CASE WHEN o.state OPERATOR(pg_catalog.=) 'queued' \
         THEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) \
              (o.retry_in_ms OPERATOR(pg_catalog.*) '1 millisecond'::pg_catalog.interval) \
         ELSE i.next_attempt_at END, \
       finished_at = CASE WHEN o.state OPERATOR(pg_catalog.=) 'queued' \
         THEN NULL ELSE pg_catalog.clock_timestamp() END \
     FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), \
            pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.int4[]), \
            pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[]), \
            pg_catalog.unnest($6::pg_catalog.text[]), pg_catalog.unnest($7::pg_catalog.text[]), \
            pg_catalog.unnest($8::pg_catalog.text[]), pg_catalog.unnest($9::pg_catalog.float8[])) \
          AS o(id, state, status_code, response, executed_version, function_error, error, \
               request_id, retry_in_ms) \
     WHERE i.id OPERATOR(pg_catalog.=) o.id AND i.state OPERATOR(pg_catalog.=) 'sending'";

const NEXT_DUE: &str = "SELECT EXTRACT(epoch FROM (pg_catalog.min(next_attempt_at) \
       OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()))::pg_catalog.float8 \
     FROM lambda_fdw.invocations \
     WHERE state OPERATOR(pg_catalog.=) 'queued' \
       AND attempts OPERATOR(pg_catalog.<) max_attempts";

const PURGE: &str = "DELETE FROM lambda_fdw.invocations \
     WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed']::pg_catalog.text[]) \
       AND finished_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() \
           OPERATOR(pg_catalog.-) ($1 OPERATOR(pg_catalog.*) '1 second'::pg_catalog.interval))";

fn spi_error(e: pgrx::spi::SpiError) -> String {
    e.to_string()
}

/// A claimed row, or (its id and) why it could not even be read.
type ClaimedRow = Result<Claimed, (i64, String)>;

fn claim(limit: usize, foreign_table_column: bool) -> Result<Vec<ClaimedRow>, String> {
    let sql = CLAIM.replace(
        "{foreign_table}",
        if foreign_table_column {
            "i.foreign_table"
        } else {
            "NULL::pg_catalog.oid"
        },
    );
    Spi::connect_mut(|client| {
        let rows = client
            .update(&sql, None, &[(limit as i64).into()])
            .map_err(spi_error)?;
        let mut out = Vec::new();
        for row in rows {
            let id = row.get::<i64>(1).map_err(spi_error)?.unwrap_or_default();
            // A value Rust cannot take (text that is not UTF-8 in a database
            // of another encoding panics in pgrx) fails this row only.
            let read = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<Claimed, String> {
                let text = |n: usize| row.get::<String>(n).map_err(spi_error);
                let oid = |n: usize| row.get::<Oid>(n).map_err(spi_error);
                Ok(Claimed {
                    id,
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
                    foreign_table: oid(13)?,
                })
            }));
            out.push(match read {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err((id, format!("the queued invocation could not be read: {e}"))),
                // A PostgreSQL ERROR is not the row's: it leaves its error
                // data on PostgreSQL's stack, which only the round's
                // (sub)transaction abort clears.
                Err(panic) if panic.downcast_ref::<CaughtError>().is_some() => {
                    std::panic::resume_unwind(panic)
                }
                Err(panic) => Err((
                    id,
                    format!(
                        "the queued invocation could not be read: {}",
                        panic_message(&*panic)
                    ),
                )),
            });
        }
        out.sort_by_key(|c| match c {
            Ok(c) => c.id,
            Err((id, _)) => *id,
        });
        Ok(out)
    })
}

/// One RECORD statement for `outcomes`.
fn record_batch(outcomes: &[&Outcome]) -> Result<(), String> {
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

/// Writes `outcomes` back: in one statement; if that fails (an answer that
/// jsonb refuses, say), each in a subtransaction of its own, and one that
/// still cannot be stored is failed with why, without its response (and,
/// if even that fails, with nothing but the error). No outcome can keep the
/// others from being recorded, or fail the round.
fn record(outcomes: &[Outcome]) {
    if outcomes.is_empty() {
        return;
    }
    let all: Vec<&Outcome> = outcomes.iter().collect();
    if matches!(in_subtransaction(|| record_batch(&all)), Ok(Ok(()))) {
        return;
    }
    for o in outcomes {
        let why = match in_subtransaction(|| record_batch(&[o])) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) | Err(e) => e,
        };
        let failed = o.unstorable(&why);
        let why = match in_subtransaction(|| record_batch(&[&failed])) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) | Err(e) => e,
        };
        let bare = Outcome::failed(o.id, failed.error.clone().unwrap_or_default());
        if let Ok(Ok(())) = in_subtransaction(|| record_batch(&[&bare])) {
            continue;
        }
        log!(
            "lambda_fdw queue worker: could not record the outcome of invocation {}: {why}; it stays 'sending' until the worker restarts",
            o.id
        );
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

/// Who signs a row: role, server, mapping, region, foreign table.
type SigningKey = (Oid, Option<Oid>, Option<Oid>, String, Option<Oid>);

fn claim_ready(limit: usize, foreign_table_column: bool) -> Result<Vec<Ready>, String> {
    // Rows of one role, route and mapping share their signing: checked once
    // a round, in a subtransaction, so that a catalog error fails those
    // rows, not the round.
    let mut signings: HashMap<SigningKey, Result<Signing, String>> = HashMap::new();
    Ok(claim(limit, foreign_table_column)?
        .into_iter()
        .map(|c| {
            let c = match c {
                Ok(c) => c,
                Err((id, e)) => {
                    return Ready {
                        id,
                        attempts: 0,
                        max_attempts: 0,
                        prepared: Err(e),
                    }
                }
            };
            let key = (
                c.queued_by,
                c.server,
                c.user_mapping,
                c.region.clone(),
                c.foreign_table,
            );
            let signed = signings
                .entry(key)
                .or_insert_with(|| in_subtransaction(|| signing_of(&c)).and_then(|r| r))
                .clone();
            Ready {
                id: c.id,
                attempts: c.attempts,
                max_attempts: c.max_attempts,
                prepared: request_of(&c).and_then(|r| {
                    signed.map(|s| {
                        let owner = Owner {
                            role: c.queued_by,
                            server: s.server,
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
    /// Their ids.
    handed: HashSet<i64>,
    starts: Arc<Mutex<Starts>>,
}

/// Which handed-over rows the dispatcher has started (their request may
/// have left), and whether it may start more: a row claimed ahead that
/// never started is given its attempt back when the worker stops.
#[derive(Default)]
struct Starts {
    stopped: bool,
    started: HashSet<i64>,
}

fn lock_starts(starts: &Mutex<Starts>) -> std::sync::MutexGuard<'_, Starts> {
    starts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sender {
    fn new(slots: usize) -> Result<Self, String> {
        let runtime = sending_runtime(SENDING_THREADS).map_err(|e| e.to_string())?;
        let (jobs, mut incoming) = mpsc::unbounded_channel::<ToSend>();
        let (answers, outcomes) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(slots));
        let available = permits.clone();
        let starts = Arc::new(Mutex::new(Starts::default()));
        let starting = starts.clone();
        runtime.spawn(async move {
            while let Some(job) = incoming.recv().await {
                let Ok(permit) = available.clone().acquire_owned().await else {
                    break;
                };
                {
                    let mut s = lock_starts(&starting);
                    if s.stopped {
                        // Stopping: nothing more starts; the row goes back.
                        continue;
                    }
                    s.started.insert(job.id);
                }
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
                    // Every row handed over gets an outcome, even if the call
                    // panics (then it may have been sent: it is not retried).
                    let outcome =
                        AssertUnwindSafe(call)
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|panic| {
                                Outcome::failed(
                                    id,
                                    format!(
                                        "the call failed inside lambda_fdw: {}",
                                        panic_message(&*panic)
                                    ),
                                )
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
            handed: HashSet::new(),
            starts,
        })
    }

    /// Stops starting calls; returns the rows handed over that never
    /// started (no request of theirs left).
    fn stop(&mut self) -> Vec<i64> {
        let mut s = lock_starts(&self.starts);
        s.stopped = true;
        let mut unstarted: Vec<i64> = self
            .handed
            .iter()
            .filter(|id| !s.started.contains(id))
            .copied()
            .collect();
        unstarted.sort_unstable();
        unstarted
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
        let id = job.id;
        if self.jobs.send(job).is_ok() {
            self.outstanding += 1;
            self.handed.insert(id);
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
            self.handed.remove(&outcome.id);
            lock_starts(&self.starts).started.remove(&outcome.id);
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

/// Why the worker does not work the queue now (said once per change).
#[derive(Clone, Debug, PartialEq)]
enum Idle {
    /// No relation `lambda_fdw.invocations`.
    Missing,
    /// A relation of that name the extension did not create.
    NotTheExtensions { relid: Oid, owner: String },
    /// The extension's table, with triggers or rules attached.
    CodeAttached { what: &'static str },
}

impl Idle {
    fn say(&self) {
        match self {
            Idle::Missing => log!(
                "lambda_fdw queue worker: lambda_fdw.invocations does not exist in this database; waiting for CREATE EXTENSION lambda_fdw (or its update)"
            ),
            Idle::NotTheExtensions { relid, owner } => log!(
                "lambda_fdw queue worker: ignoring lambda_fdw.invocations (OID {}, owner \"{owner}\"): it is not a member of extension lambda_fdw, so nothing in it is sent and nothing is written to it; the queue is worked once the extension's own table exists (CREATE EXTENSION lambda_fdw, or ALTER EXTENSION lambda_fdw UPDATE, after dropping this one)",
                relid.to_u32()
            ),
            Idle::CodeAttached { what } => log!(
                "lambda_fdw queue worker: not working lambda_fdw.invocations: it has {what}, which the extension does not create, and the worker runs no code attached to its queue; nothing is sent until they are dropped"
            ),
        }
    }
}

/// What a round found and did.
enum Round {
    /// The queue was not worked (nothing was read, written or sent).
    Idle(Idle),
    Worked {
        /// The queue table worked.
        table: Oid,
        ready: Vec<Ready>,
        /// Seconds until the next row is due, when nothing is in flight.
        due: Option<f64>,
        /// What the recovery of rows left `sending` did: (requeued, failed).
        recovered: Option<(usize, usize)>,
    },
}

/// What a round is asked to do.
struct Plan<'a> {
    /// The table the outcomes and the rows in flight belong to.
    known: Option<Oid>,
    finished: &'a [Outcome],
    /// Rows claimed whose request never left (the worker is stopping):
    /// put back with their attempt returned.
    unstarted: &'a [i64],
    /// Rows that may be claimed.
    free: usize,
    purge: bool,
    /// Whether to look for the next due time (nothing in flight).
    idle: bool,
}

/// A transaction's commit is what makes an attempt count before its
/// request leaves: with `synchronous_commit = off` a crash right after the
/// claim could lose it, so the worker's transactions flush at commit.
fn flush_at_commit() {
    // SAFETY: reads the GUC's variable; sets it for this transaction only
    // (a valid value of a PGC_USERSET setting).
    unsafe {
        if pg_sys::synchronous_commit == pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_OFF as i32 {
            pg_sys::set_config_option(
                c"synchronous_commit".as_ptr(),
                c"local".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_LOCAL,
                true,
                pg_sys::elog::PgLogLevel::ERROR as i32,
                false,
            );
        }
    }
}

/// One round, inside its transaction: find the extension's queue table and
/// lock it, put back what a previous worker left in flight (once per
/// table), record what finished, delete old rows, claim what there is room
/// for. Errors that reach here are not a row's (each row's work is in a
/// subtransaction of its own); they abort the round, which changes nothing.
fn work_round(plan: &Plan) -> Result<Round, String> {
    let idle = |lookup: table::Lookup| match lookup {
        table::Lookup::Missing | table::Lookup::Found(_) => Idle::Missing,
        table::Lookup::NotTheExtensions { relid, owner } => Idle::NotTheExtensions {
            relid,
            owner: catalog::role_name(owner),
        },
    };
    let found = match table::find() {
        table::Lookup::Found(t) => t,
        other => return Ok(Round::Idle(idle(other))),
    };
    // SAFETY: locks a relation OID for this transaction (the lock a DML
    // statement takes, so a DROP EXTENSION waits for the round to end);
    // taking it processes pending invalidations, so the look after it sees
    // a DROP, a new trigger or a new owner that committed before.
    unsafe { pg_sys::LockRelationOid(found.relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE) };
    let queue = match table::find() {
        table::Lookup::Found(t) if t.relid == found.relid => t,
        other => return Ok(Round::Idle(idle(other))),
    };
    if queue.has_code_attached {
        let what = match (queue.has_triggers, queue.has_rules) {
            (true, true) => "triggers and rules",
            (true, false) => "triggers",
            _ => "rules",
        };
        return Ok(Round::Idle(Idle::CodeAttached { what }));
    }
    // A table seen for the first time (the worker started, or the
    // extension was dropped and created again): rows left in flight are
    // dealt with, and outcomes of another table's rows are not written.
    let first = plan.known != Some(queue.relid);
    let finished = if first { &[][..] } else { plan.finished };
    let foreign_table_column = queue.has_foreign_table_column;
    flush_at_commit();
    table::with_pinned_search_path(|| {
        table::as_owner(queue.owner, || {
            let recovered = if first {
                let states = Spi::connect_mut(|client| {
                    client
                        .update(RECOVER, None, &[])
                        .map_err(spi_error)?
                        .map(|row| row.get::<String>(1).map_err(spi_error))
                        .collect::<Result<Vec<_>, String>>()
                })?;
                let requeued = states
                    .iter()
                    .filter(|s| s.as_deref() == Some("queued"))
                    .count();
                Some((requeued, states.len() - requeued))
            } else {
                None
            };
            record(finished);
            if !plan.unstarted.is_empty() && !first {
                if let Err(e) = in_subtransaction(|| {
                    Spi::run_with_args(UNSTARTED, &[plan.unstarted.to_vec().into()])
                        .map_err(spi_error)
                })
                .and_then(|r| r)
                {
                    log_unexpected("put back invocations never sent", &e);
                }
            }
            if plan.purge {
                let retention = guc::queue_retention_s() as f64;
                if let Err(e) = in_subtransaction(|| {
                    Spi::run_with_args(PURGE, &[retention.into()]).map_err(spi_error)
                })
                .and_then(|r| r)
                {
                    log_unexpected("delete finished invocations", &e);
                }
            }
            let ready = if plan.free > 0 {
                match in_subtransaction(|| claim_ready(plan.free, foreign_table_column))
                    .and_then(|r| r)
                {
                    Ok(ready) => ready,
                    Err(e) => {
                        log_unexpected("claim invocations", &e);
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            let due = if plan.idle && ready.is_empty() {
                Spi::get_one::<f64>(NEXT_DUE).map_err(spi_error)?
            } else {
                None
            };
            Ok(Round::Worked {
                table: queue.relid,
                ready,
                due,
                recovered,
            })
        })
    })
}

struct QueueWorker {
    sender: Sender,
    /// Outcomes not yet written back.
    finished: Vec<Outcome>,
    /// The queue table the rows in flight and `finished` belong to.
    table: Option<Oid>,
    /// What the worker last said about the queue (`None`: working it).
    said: Option<Idle>,
    last_purge: Option<Instant>,
}

impl QueueWorker {
    /// Queues claimed rows for sending; rows that cannot be sent are failed.
    fn start(&mut self, ready: Vec<Ready>) {
        // Clients are keyed by settings: rows of one server and mapping share one.
        let mut clients: HashMap<ClientSettings, LambdaClient> = HashMap::new();
        for r in ready {
            let (request, settings, owner) = match r.prepared {
                Ok(v) => v,
                Err(e) => {
                    self.finished.push(Outcome::failed(r.id, e));
                    continue;
                }
            };
            let client = match clients.get(&settings) {
                Some(client) => client.clone(),
                None => {
                    let made = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        client_for(&settings, &Interrupts::NONE).map_err(|e| e.to_string())
                    }))
                    .unwrap_or_else(|panic| {
                        Err(format!(
                            "the call could not be prepared inside lambda_fdw: {}",
                            panic_message(&*panic)
                        ))
                    });
                    match made {
                        Ok(client) => clients.entry(settings).or_insert(client).clone(),
                        Err(e) => {
                            self.finished.push(Outcome::failed(r.id, e));
                            continue;
                        }
                    }
                }
            };
            self.sender.submit(ToSend {
                id: r.id,
                attempts: r.attempts,
                max_attempts: r.max_attempts,
                request,
                client,
                owner,
            });
        }
    }

    fn step(&mut self) {
        // SAFETY: MyLatch is this process's latch; reset before looking at
        // the queue, so a commit after the look sets it again.
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        self.sender.resize(guc::queue_concurrency());
        let purge = self.last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY);
        let plan = Plan {
            known: self.table,
            finished: &self.finished,
            unstarted: &[],
            // Claimed ahead: up to twice the concurrency, in flight or waiting.
            free: (2 * self.sender.slots).saturating_sub(self.sender.outstanding),
            purge,
            idle: self.sender.outstanding == 0,
        };
        let round = match in_transaction(|| work_round(&plan)).and_then(|r| r) {
            Ok(round) => round,
            Err(e) => {
                // Nothing of the round was kept: its outcomes are written
                // next time, and nothing it claimed is sent.
                log_unexpected("work the queue", &e);
                BackgroundWorker::wait_latch(Some(POLL));
                return;
            }
        };
        let (table, ready, due, recovered) = match round {
            Round::Idle(idle) => {
                if self.said.as_ref() != Some(&idle) {
                    idle.say();
                    self.said = Some(idle);
                }
                BackgroundWorker::wait_latch(Some(POLL));
                return;
            }
            Round::Worked {
                table,
                ready,
                due,
                recovered,
            } => (table, ready, due, recovered),
        };
        if self.said.take().is_some() {
            log!("lambda_fdw queue worker: found lambda_fdw.invocations; sending");
        }
        if self.table != Some(table) {
            // Outcomes and calls of another table's rows are dropped.
            self.finished.clear();
            if self.sender.outstanding > 0 {
                match Sender::new(self.sender.slots) {
                    Ok(sender) => self.sender = sender,
                    Err(e) => log!("lambda_fdw queue worker: {e}"),
                }
            }
            self.table = Some(table);
        } else {
            // Written back in the round's transaction, which committed.
            self.finished.clear();
        }
        if let Some((requeued, failed)) = recovered {
            if requeued + failed > 0 {
                log!(
                    "lambda_fdw queue worker: found {} invocation(s) left in flight by the previous worker: {requeued} sent again, {failed} failed with no attempts left (they may have been delivered)",
                    requeued + failed
                );
            }
        }
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

    /// On shutdown: writes back what finished, so that those rows are not
    /// sent again by the next worker, and puts back, with their attempt
    /// returned, the rows claimed ahead whose call never started. Calls
    /// still in flight stay `sending`.
    fn flush(&mut self) {
        let unstarted = self.sender.stop();
        if (self.finished.is_empty() && unstarted.is_empty()) || self.table.is_none() {
            return;
        }
        let plan = Plan {
            known: self.table,
            finished: &self.finished,
            unstarted: &unstarted,
            free: 0,
            purge: false,
            idle: false,
        };
        if let Err(e) = in_transaction(|| work_round(&plan)).and_then(|r| r) {
            log!("lambda_fdw queue worker: could not record the last outcomes before exiting: {e}");
        }
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
    // As the bootstrap superuser, as PostgreSQL's own workers connect; the
    // rounds run as the queue table's owner (see the module's header).
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);
    // SAFETY: MyProcPid is this process's pid; on_proc_exit registers a
    // static function to run when the process exits, however it exits.
    let me = unsafe { pg_sys::MyProcPid };
    if !wake::claim_worker_slot(me) {
        log!("lambda_fdw queue worker: another queue worker is running; exiting");
        return;
    }
    // SAFETY: registers a callback PostgreSQL calls once at this process's exit.
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
        table: None,
        said: None,
        last_purge: None,
    };
    while !shutdown_requested() {
        reload_config_if_asked();
        worker.step();
    }
    worker.flush();
}

#[cfg(test)]
mod unit {
    use super::*;

    /// A 200 from `$LATEST` with `payload`.
    fn ok(function_error: Option<&str>, payload: &str) -> InvokeOutcome {
        InvokeOutcome {
            status_code: 200,
            payload: Some(Bytes::copy_from_slice(payload.as_bytes())),
            executed_version: Some("$LATEST".into()),
            log_result: None,
            function_error: function_error.map(str::to_string),
            request_id: Some("req-1".into()),
        }
    }

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

/// In-database tests (`cargo pgrx test`) of what only a backend shows:
/// recording outcomes in subtransactions, recovery, the claim's limits,
/// the queue table's lookup and the pinned search_path. Each runs in a
/// transaction that is rolled back.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::*;

    /// A row of the extension's queue table in `state`; returns its id.
    fn row(state: &str, attempts: i32, max_attempts: i32) -> i64 {
        Spi::get_one::<i64>(&format!(
            "INSERT INTO lambda_fdw.invocations (queued_by, function_name, region, invocation_type, \
               payload, max_attempts, state, attempts) \
             VALUES (current_user::regrole, 'echo', 'us-east-1', 'RequestResponse', '{{}}', \
               {max_attempts}, '{state}', {attempts}) RETURNING id"
        ))
        .unwrap()
        .unwrap()
    }

    type Stored = (
        Option<String>,
        Option<i32>,
        Option<pgrx::JsonB>,
        Option<String>,
    );

    fn stored(id: i64) -> (String, Option<i32>, Option<String>, Option<String>) {
        let (state, code, response, error): Stored = Spi::connect(|c| {
            let t = c
                .select(
                    "SELECT state, status_code, response, error FROM lambda_fdw.invocations WHERE id = $1",
                    None,
                    &[id.into()],
                )?
                .first();
            Ok::<_, pgrx::spi::SpiError>((t.get(1)?, t.get(2)?, t.get(3)?, t.get(4)?))
        })
        .unwrap();
        (
            state.unwrap(),
            code,
            response.map(|j| j.0.to_string()),
            error,
        )
    }

    fn answered(id: i64, response: &str) -> Outcome {
        Outcome {
            id,
            state: "succeeded",
            status_code: Some(200),
            response: Some(response.into()),
            ..Outcome::default()
        }
    }

    #[pg_test]
    fn an_answer_jsonb_refuses_fails_its_row_only() {
        let ids = [
            row("sending", 1, 3),
            row("sending", 1, 3),
            row("sending", 1, 3),
        ];
        let outcomes = [
            answered(ids[0], r#"{"n": 1}"#),
            answered(ids[1], r#"{"a": "\u0000"}"#),
            answered(ids[2], r#"{"n": 3}"#),
        ];
        let queue = table::queue_table().expect("the extension's queue table");
        table::with_pinned_search_path(|| table::as_owner(queue.owner, || record(&outcomes)));
        assert_eq!(
            stored(ids[0]),
            (
                "succeeded".into(),
                Some(200),
                Some(r#"{"n":1}"#.into()),
                None
            )
        );
        assert_eq!(
            stored(ids[1]),
            (
                "failed".into(),
                Some(200),
                None,
                Some(
                    "the function's response could not be stored: unsupported Unicode escape \
                     sequence (\\u0000 cannot be converted to text)"
                        .into()
                )
            )
        );
        assert_eq!(
            stored(ids[2]),
            (
                "succeeded".into(),
                Some(200),
                Some(r#"{"n":3}"#.into()),
                None
            )
        );
        // A row recorded once is not recorded again.
        record(&[answered(ids[1], r#"{"n": 2}"#)]);
        assert_eq!(stored(ids[1]).0, "failed");
        // The transaction goes on.
        assert_eq!(Spi::get_one::<i32>("SELECT 1").unwrap(), Some(1));
    }

    #[pg_test]
    fn recovery_requeues_or_fails_and_claim_skips_spent_rows() {
        let left = row("sending", 1, 3);
        let spent = row("sending", 3, 3);
        let stale = row("queued", 4, 3);
        let done = row("succeeded", 1, 3);
        let states = Spi::connect_mut(|c| {
            c.update(RECOVER, None, &[])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(states.len(), 3);
        assert_eq!(
            stored(left),
            (
                "queued".into(),
                None,
                None,
                Some("the queue worker stopped while attempt 1 of 3 was in flight; the invocation may have been delivered, and it is sent again".into())
            )
        );
        assert_eq!(
            stored(spent),
            (
                "failed".into(),
                None,
                None,
                Some("the queue worker stopped while attempt 3 of 3 was in flight; the invocation may have been delivered, and it is not sent again".into())
            )
        );
        assert_eq!(
            stored(stale),
            (
                "failed".into(),
                None,
                None,
                Some("4 attempts of 3 were made already; the invocation may have been delivered, and it is not sent again".into())
            )
        );
        assert_eq!(stored(done).0, "succeeded");
        // A queued row with no attempts left is never claimed.
        let spent_queued = row("queued", 2, 2);
        let claimed: Vec<i64> = claim(100, true)
            .unwrap()
            .into_iter()
            .map(|c| c.map(|c| c.id).unwrap_or_else(|(id, _)| id))
            .collect();
        assert_eq!(claimed, vec![left]);
        assert_eq!(stored(spent_queued).0, "queued");
    }

    #[pg_test]
    fn the_queue_table_is_the_extensions_own() {
        let queue = table::queue_table().expect("the extension's queue table");
        assert!(!queue.has_code_attached);
        assert!(catalog::is_superuser(queue.owner));
        Spi::run(
            "CREATE FUNCTION public.nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        )
        .unwrap();
        Spi::run(
            "CREATE TRIGGER t AFTER UPDATE ON lambda_fdw.invocations FOR EACH STATEMENT EXECUTE FUNCTION public.nothing()",
        )
        .unwrap();
        let queue = table::queue_table().unwrap();
        assert!(queue.has_triggers && !queue.has_rules && queue.has_code_attached);
        Spi::run("DROP TRIGGER t ON lambda_fdw.invocations").unwrap();
        assert!(!table::queue_table().unwrap().has_code_attached);
        // The same name outside the extension is not it.
        Spi::run("ALTER TABLE lambda_fdw.invocations RENAME TO invocations_real").unwrap();
        Spi::run("CREATE TABLE lambda_fdw.invocations (id bigint)").unwrap();
        assert!(matches!(
            table::find(),
            table::Lookup::NotTheExtensions { .. }
        ));
        Spi::run("DROP TABLE lambda_fdw.invocations").unwrap();
        assert_eq!(table::find(), table::Lookup::Missing);
    }

    #[pg_test]
    fn the_search_path_is_pinned_and_restored() {
        let path = || {
            Spi::get_one::<String>("SELECT pg_catalog.current_setting('search_path')")
                .unwrap()
                .unwrap()
        };
        Spi::run("SET search_path = public").unwrap();
        assert_eq!(table::with_pinned_search_path(path), "pg_catalog, pg_temp");
        assert_eq!(path(), "public");
        // An error inside: the rolled-back subtransaction restores it.
        let failed = in_subtransaction(|| {
            table::with_pinned_search_path(|| Spi::run("SELECT 1/0").unwrap())
        });
        assert_eq!(failed, Err("division by zero".into()));
        assert_eq!(path(), "public");
        // A panic caught inside the same transaction: the guard restores it.
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            table::with_pinned_search_path(|| panic!("inside"))
        }));
        assert!(caught.is_err());
        assert_eq!(path(), "public");
        // As the owner, in a security-restricted operation.
        let owner = table::queue_table().unwrap().owner;
        // SAFETY: reads the backend's security context flags.
        let restricted = || unsafe { pg_sys::InSecurityRestrictedOperation() };
        assert!(table::as_owner(owner, restricted));
        assert!(!restricted());
    }
}
