//! The launcher: a static background worker, registered from `_PG_init`
//! when the library is preloaded ([`register_launcher`]) and connected to
//! no database. It waits for the database named by
//! `lambda_fdw.database_name` to exist, then starts the queue worker for
//! it (see `worker`), and starts it again if it stops.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
    SignalWakeFlags,
};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use crate::settings::guc;

use super::signals::{reload_config_if_asked, shutdown_requested, POLL};
use super::wake;

/// How long the launcher waits before starting a queue worker again.
const RESTART_DELAY: Duration = Duration::from_secs(5);

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

/// Starts the queue worker (`lambda_fdw_queue_main`) for database `db`,
/// telling this process when it stops.
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
