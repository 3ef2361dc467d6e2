//! The launcher: a static background worker, registered from `_PG_init`
//! when the library is preloaded ([`register_launcher`]) and connected to
//! no database. It serves every database: it lists them (`database::list`)
//! when it starts, every [`RESCAN_EVERY`], and at once when a commit that
//! queued in a database without a worker sets its latch (see `wake`). For
//! each database without a worker it starts a queue worker (see `worker`),
//! one at a time: the worker stays where the extension's queue table
//! exists, and otherwise exits at once, saying why (`wake::Probe`). A
//! database found without the table is looked at again at the next
//! listing; one found while `lambda_fdw.max_queue_workers` workers run
//! waits for a place (said once); one being dropped is left alone for
//! [`RESTART_DELAY`].
//!
//! Lock rules: the listing holds AccessShareLock on pg_database for its
//! scan, in a transaction of its own; the rest is the atomics of `wake`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
    SignalWakeFlags,
};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use crate::settings::guc;

use super::database::{self, Database};
use super::signals::{reload_config_if_asked, shutdown_requested, POLL};
use super::wake::{self, Probe};

/// How long the launcher waits before starting a database's queue worker
/// again after it stopped.
const RESTART_DELAY: Duration = Duration::from_secs(5);

/// How often the launcher lists the databases and looks again at those
/// without a worker.
const RESCAN_EVERY: Duration = Duration::from_secs(10);

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

/// Starts a queue worker (`lambda_fdw_queue_main`) for database `db`,
/// telling this process when it starts and stops.
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

/// What the launcher knows of a database without a worker.
#[derive(Default)]
struct Known {
    /// Not looked at again before then.
    not_before: Option<Instant>,
    /// Looked at, without the extension's queue table: looked at again at
    /// the next listing.
    absent: bool,
    /// It waits for a place (said once).
    waiting: bool,
    /// It had a worker at the last look.
    served: bool,
}

struct Launcher {
    databases: Vec<Database>,
    known: HashMap<Oid, Known>,
    /// The worker started last and not yet settled: its database and it.
    starting: Option<(Oid, DynamicBackgroundWorker)>,
    next_scan: Instant,
    /// The places were full at the last look, and the launcher said so.
    said_full: bool,
}

impl Launcher {
    fn scan(&mut self) {
        self.databases = BackgroundWorker::transaction(database::list);
        self.known
            .retain(|oid, _| self.databases.iter().any(|d| d.oid == *oid));
        for k in self.known.values_mut() {
            k.absent = false;
        }
        self.next_scan = Instant::now() + RESCAN_EVERY;
    }

    fn name_of(&self, db: Oid) -> &str {
        self.databases
            .iter()
            .find(|d| d.oid == db)
            .map_or("?", |d| d.name.as_str())
    }

    /// Settles the worker started last: it holds a place, or it exited
    /// and said why. True while it is still starting.
    fn settle(&mut self) -> bool {
        let Some((db, handle)) = self.starting.as_ref() else {
            return false;
        };
        let db = *db;
        if wake::worker_of(db).is_some() {
            let name = self.name_of(db).to_string();
            let k = self.known.entry(db).or_default();
            if k.waiting {
                log!("lambda_fdw launcher: database \"{name}\" has its queue worker now");
            }
            *k = Known {
                served: true,
                ..Known::default()
            };
            self.starting = None;
            return false;
        }
        let stopped = matches!(handle.pid(), Err(BackgroundWorkerStatus::Stopped));
        if !stopped {
            return true;
        }
        let probe = wake::take_probe(db);
        let limit = guc::max_queue_workers();
        let name = self.name_of(db).to_string();
        let k = self.known.entry(db).or_default();
        match probe {
            Some(Probe::Absent) => {
                k.absent = true;
                k.waiting = false;
            }
            Some(Probe::Full) => {
                if !k.waiting {
                    log!("lambda_fdw launcher: database \"{name}\" waits for a queue worker: lambda_fdw.max_queue_workers ({limit}) are running");
                    k.waiting = true;
                }
            }
            // Being dropped, renamed or copied; or the worker failed.
            Some(Probe::Busy) | None => {
                k.not_before = Some(Instant::now() + RESTART_DELAY);
            }
        }
        self.starting = None;
        false
    }

    /// The next database to start a worker for, if any.
    fn next_database(&mut self) -> Option<Oid> {
        let now = Instant::now();
        let full = wake::workers_running() >= guc::max_queue_workers();
        let mut next = None;
        for d in &self.databases {
            let served = wake::worker_of(d.oid).is_some();
            let k = self.known.entry(d.oid).or_default();
            if served {
                k.served = true;
                continue;
            }
            if k.served {
                // Its worker stopped: not started again at once.
                k.served = false;
                k.not_before = Some(now + RESTART_DELAY);
            }
            if k.absent || k.not_before.is_some_and(|t| now < t) || (k.waiting && full) {
                continue;
            }
            if next.is_none() {
                next = Some(d.oid);
            }
        }
        next
    }

    fn step(&mut self) {
        if wake::take_rescan() || Instant::now() >= self.next_scan {
            self.scan();
        }
        if self.settle() {
            return;
        }
        if let Some(db) = self.next_database() {
            match start_queue_worker(db) {
                Some(handle) => {
                    self.said_full = false;
                    self.starting = Some((db, handle));
                }
                None => {
                    if !self.said_full {
                        log!("lambda_fdw launcher: could not start a queue worker (max_worker_processes reached?); trying again");
                        self.said_full = true;
                    }
                    self.known.entry(db).or_default().not_before =
                        Some(Instant::now() + RESTART_DELAY);
                }
            }
        }
    }
}

/// The launcher's main function.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn lambda_fdw_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    // SAFETY: MyProcPid is this process's pid.
    wake::set_launcher(unsafe { pg_sys::MyProcPid });
    if let Some(name) = guc::retired_database_name() {
        log!("lambda_fdw launcher: lambda_fdw.database_name (\"{name}\") is ignored: every database with the lambda_fdw extension has its queue sent");
    }
    let mut launcher = Launcher {
        databases: Vec::new(),
        known: HashMap::new(),
        starting: None,
        next_scan: Instant::now(),
        said_full: false,
    };
    while !shutdown_requested() {
        reload_config_if_asked();
        launcher.step();
        // Short while a worker is starting: it settles within milliseconds.
        let wait = if launcher.starting.is_some() {
            Duration::from_millis(20)
        } else {
            POLL
        };
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
    }
    wake::set_launcher(0);
}
