//! Waking the queue worker when a transaction that queued commits.
//!
//! With `lambda_fdw` in `shared_preload_libraries`, a little shared memory
//! holds the queue worker's pid. A backend that queued marks its
//! transaction; a permanent transaction callback sets the worker's latch
//! when that transaction commits (and forgets the mark when it aborts), so
//! the worker claims the rows within milliseconds instead of at its next
//! poll.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use pgrx::pg_sys;
use pgrx::{pg_guard, pg_shmem_init, PgAtomic};

/// The running queue worker's pid, 0 when none runs.
// SAFETY: pg_shmem_init! below places it in shared memory before any use.
static WORKER_PID: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"lambda_fdw_queue_worker_pid") };

/// Set in the postmaster's `_PG_init` when the library is preloaded; forked
/// backends and workers inherit it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This backend's transaction queued invocations.
    static QUEUED_IN_XACT: Cell<bool> = const { Cell::new(false) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// From `_PG_init` while shared_preload_libraries are loaded: asks for the
/// shared memory.
pub(crate) fn init_preloaded() {
    PRELOADED.store(true, Ordering::SeqCst);
    pg_shmem_init!(WORKER_PID);
}

pub(crate) fn preloaded() -> bool {
    PRELOADED.load(Ordering::SeqCst)
}

/// Claims the worker's place; false if another worker holds it.
pub(crate) fn claim_worker_slot(pid: i32) -> bool {
    WORKER_PID
        .get()
        .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

/// Gives the worker's place up (the worker is exiting).
pub(crate) fn release_worker_slot(pid: i32) {
    let _ = WORKER_PID
        .get()
        .compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
}

/// Whether a queue worker runs now.
pub(crate) fn worker_running() -> bool {
    preloaded() && WORKER_PID.get().load(Ordering::SeqCst) != 0
}

fn wake_worker() {
    if !preloaded() {
        return;
    }
    let pid = WORKER_PID.get().load(Ordering::SeqCst);
    if pid == 0 {
        return;
    }
    // SAFETY: BackendPidGetProc takes ProcArrayLock and returns the PGPROC
    // in shared memory of a live process, or NULL; setting its latch is what
    // latches are for, from any process.
    unsafe {
        let proc_ = pg_sys::BackendPidGetProc(pid);
        if !proc_.is_null() {
            pg_sys::SetLatch(&mut (*proc_).procLatch);
        }
    }
}

// No pg_guard: it only reads a flag and sets a latch, neither of which can
// raise an error, and it runs inside transaction commit and abort.
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            if QUEUED_IN_XACT.with(|q| q.replace(false)) {
                wake_worker();
            }
        }
        // A prepared transaction commits later, maybe in another session:
        // the worker's next look (at most a second away) finds its rows.
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            QUEUED_IN_XACT.with(|q| q.set(false));
        }
        _ => {}
    }
}

/// Marks the current transaction as having queued: its commit wakes the worker.
pub(crate) fn wake_on_commit() {
    if !CALLBACK_REGISTERED.with(Cell::get) {
        // SAFETY: registers a static function, once per backend; it stays
        // registered for the backend's life.
        unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
        CALLBACK_REGISTERED.with(|c| c.set(true));
    }
    QUEUED_IN_XACT.with(|q| q.set(true));
}
