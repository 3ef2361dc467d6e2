//! The queue workers' places in shared memory, and waking the worker of
//! this database when a transaction that queued commits.
//!
//! With `lambda_fdw` in `shared_preload_libraries`, a little shared memory
//! holds one place per queue worker ([`MAX_SLOTS`]; the launcher starts at
//! most `lambda_fdw.max_queue_workers`), each the database's OID and the
//! worker's pid packed in one atomic word, the launcher's pid, and what the
//! last short-lived worker found. A backend that queued marks its
//! transaction; a permanent transaction callback sets the latch of its
//! database's worker when that transaction commits (and forgets the mark
//! when it aborts), so the worker claims the rows within milliseconds
//! instead of at its next poll. A database with no worker yet has the
//! launcher's latch set instead, and the launcher looks at once.
//!
//! `CREATE EXTENSION` and `ALTER EXTENSION` mark their transaction the same
//! way (an `object_access_hook` sees the pg_extension row made or changed),
//! so a database whose queue table appears gets its worker when that
//! commits, not at the launcher's next listing. The hook does not look at
//! which extension it is (a new row is not visible yet), so any such
//! command in a database without a worker costs one listing and one
//! short-lived worker.
//!
//! Lock rules: none. Every word is an atomic read and written with
//! sequentially consistent operations; a place is claimed by a
//! compare-and-swap from 0 and given up by one back to 0, by its own
//! worker only (also when it exits, from `on_proc_exit`). Two workers of
//! one database that both claim a place see each other: the later place
//! gives itself up.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use pgrx::pg_sys::{self, Oid};
use pgrx::{pg_guard, pg_shmem_init, PgAtomic};

/// The most queue workers there can be (the bound of
/// `lambda_fdw.max_queue_workers`).
pub(crate) const MAX_SLOTS: usize = crate::settings::limits::MAX_QUEUE_WORKERS_LIMIT;

/// Each worker's place: the database's OID in the high 32 bits and the
/// pid in the low ones; 0 when free.
// SAFETY: pg_shmem_init! below places it in shared memory before any use.
static SLOTS: PgAtomic<[AtomicU64; MAX_SLOTS]> =
    unsafe { PgAtomic::new(c"lambda_fdw_queue_worker_slots") };

/// The launcher's pid, 0 while none runs.
// SAFETY: as SLOTS.
static LAUNCHER_PID: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"lambda_fdw_launcher_pid") };

/// A committed transaction queued in a database that has no worker: the
/// launcher looks at the databases again.
// SAFETY: as SLOTS.
static RESCAN: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"lambda_fdw_launcher_rescan") };

/// What the last worker that did not stay found: the database's OID in the
/// high 32 bits, a [`Probe`] in the low ones.
// SAFETY: as SLOTS.
static PROBE: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"lambda_fdw_queue_probe") };

/// Set in the postmaster's `_PG_init` when the library is preloaded; forked
/// backends and workers inherit it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This backend's transaction queued invocations.
    static QUEUED_IN_XACT: Cell<bool> = const { Cell::new(false) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Why a queue worker did not stay, as it tells the launcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The database has no `lambda_fdw.invocations`.
    Absent = 1,
    /// Every place is taken (`lambda_fdw.max_queue_workers`).
    Full = 2,
    /// The database is being dropped, renamed or copied.
    Busy = 3,
}

fn pack(db: Oid, low: u32) -> u64 {
    (u64::from(db.to_u32()) << 32) | u64::from(low)
}

fn db_of(word: u64) -> u32 {
    (word >> 32) as u32
}

static mut PREV_OBJECT_ACCESS_HOOK: pg_sys::object_access_hook_type = None;

/// From `_PG_init` while shared_preload_libraries are loaded: asks for the
/// shared memory and watches for `CREATE EXTENSION` and `ALTER EXTENSION`.
pub(crate) fn init_preloaded() {
    PRELOADED.store(true, Ordering::SeqCst);
    pg_shmem_init!(SLOTS = [const { AtomicU64::new(0) }; MAX_SLOTS]);
    pg_shmem_init!(LAUNCHER_PID);
    pg_shmem_init!(RESCAN);
    pg_shmem_init!(PROBE);
    // SAFETY: _PG_init runs in the postmaster, single-threaded, before any
    // hook is called; the previous hook is kept and called first.
    unsafe {
        PREV_OBJECT_ACCESS_HOOK = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(on_object_access);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: Oid,
    object_id: Oid,
    sub_id: std::ffi::c_int,
    arg: *mut c_void,
) {
    // SAFETY: the hook we replaced, called as PostgreSQL would have; an
    // error it raises crosses this frame through the FFI guard.
    unsafe {
        if let Some(prev) = PREV_OBJECT_ACCESS_HOOK {
            pg_sys::ffi::pg_guard_ffi_boundary(|| prev(access, class_id, object_id, sub_id, arg));
        }
    }
    let made_or_changed = access == pg_sys::ObjectAccessType::OAT_POST_CREATE
        || access == pg_sys::ObjectAccessType::OAT_POST_ALTER;
    if made_or_changed && class_id == pg_sys::ExtensionRelationId {
        wake_on_commit();
    }
}

pub(crate) fn preloaded() -> bool {
    PRELOADED.load(Ordering::SeqCst)
}

/// What claiming a place found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    Claimed,
    /// Another worker serves this database.
    Taken,
    /// `limit` places are in use.
    Full,
}

/// Claims a place for the worker `pid` of database `db`, if fewer than
/// `limit` are in use and no other worker serves `db`.
pub(crate) fn claim_worker_slot(db: Oid, pid: i32, limit: usize) -> Claim {
    let slots = SLOTS.get();
    if slots
        .iter()
        .any(|s| db_of(s.load(Ordering::SeqCst)) == db.to_u32())
    {
        return Claim::Taken;
    }
    if workers_running() >= limit.min(MAX_SLOTS) {
        return Claim::Full;
    }
    let mine = pack(db, pid as u32);
    let Some(index) = slots.iter().position(|s| {
        s.compare_exchange(0, mine, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }) else {
        return Claim::Full;
    };
    // A worker of the same database that claimed a place before ours at
    // the same time: the earlier place stays.
    let earlier = slots[..index]
        .iter()
        .any(|s| db_of(s.load(Ordering::SeqCst)) == db.to_u32());
    if earlier {
        let _ = slots[index].compare_exchange(mine, 0, Ordering::SeqCst, Ordering::SeqCst);
        return Claim::Taken;
    }
    Claim::Claimed
}

/// Gives the place of worker `pid` up (the worker is exiting).
pub(crate) fn release_worker_slot(pid: i32) {
    for s in SLOTS.get() {
        let word = s.load(Ordering::SeqCst);
        if word != 0 && word as u32 == pid as u32 {
            let _ = s.compare_exchange(word, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

/// The pid of database `db`'s queue worker, if one runs.
pub(crate) fn worker_of(db: Oid) -> Option<i32> {
    if !preloaded() {
        return None;
    }
    SLOTS.get().iter().find_map(|s| {
        let word = s.load(Ordering::SeqCst);
        (word != 0 && db_of(word) == db.to_u32()).then_some(word as u32 as i32)
    })
}

/// How many queue workers hold a place.
pub(crate) fn workers_running() -> usize {
    SLOTS
        .get()
        .iter()
        .filter(|s| s.load(Ordering::SeqCst) != 0)
        .count()
}

/// The launcher says where it is (`pid`), or that it exits (0).
pub(crate) fn set_launcher(pid: i32) {
    LAUNCHER_PID.get().store(pid, Ordering::SeqCst);
}

/// Whether a backend asked the launcher to look again (and forgets it).
pub(crate) fn take_rescan() -> bool {
    RESCAN.get().swap(false, Ordering::SeqCst)
}

/// A worker of database `db` tells the launcher why it did not stay.
pub(crate) fn set_probe(db: Oid, probe: Probe) {
    PROBE.get().store(pack(db, probe as u32), Ordering::SeqCst);
}

/// Why the last worker of database `db` did not stay, if it said so (and
/// forgets it).
pub(crate) fn take_probe(db: Oid) -> Option<Probe> {
    let word = PROBE.get().load(Ordering::SeqCst);
    if word == 0 || db_of(word) != db.to_u32() {
        return None;
    }
    let _ = PROBE
        .get()
        .compare_exchange(word, 0, Ordering::SeqCst, Ordering::SeqCst);
    match word as u32 {
        1 => Some(Probe::Absent),
        2 => Some(Probe::Full),
        3 => Some(Probe::Busy),
        _ => None,
    }
}

/// Sets the latch of process `pid`, if it is alive.
fn set_latch_of(pid: i32) {
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

/// Wakes this database's worker, or, if it has none, the launcher.
fn wake_worker() {
    if !preloaded() {
        return;
    }
    // SAFETY: MyDatabaseId is this backend's database, set at connection.
    let db = unsafe { pg_sys::MyDatabaseId };
    if let Some(pid) = worker_of(db) {
        set_latch_of(pid);
        return;
    }
    RESCAN.get().store(true, Ordering::SeqCst);
    let launcher = LAUNCHER_PID.get().load(Ordering::SeqCst);
    if launcher != 0 {
        set_latch_of(launcher);
    }
}

// No pg_guard: it only reads flags and sets latches, none of which can
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

/// Marks the current transaction as having queued (or created an
/// extension): its commit wakes the worker, or the launcher.
pub(crate) fn wake_on_commit() {
    if !CALLBACK_REGISTERED.with(Cell::get) {
        // SAFETY: registers a static function, once per backend; it stays
        // registered for the backend's life.
        unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
        CALLBACK_REGISTERED.with(|c| c.set(true));
    }
    QUEUED_IN_XACT.with(|q| q.set(true));
}
