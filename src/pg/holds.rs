//! The throttling holds' table in shared memory ([`lambda_fdw_core::throttle`]):
//! `throttle::SLOTS` slots of two atomics each (16 kB), made by the
//! shared-memory hooks when the library is preloaded and handed to the core,
//! so every backend and the queue worker hold back their calls to a function
//! another one was throttled on. The core reads and writes it with atomics
//! only (no lock, no PostgreSQL call), from any thread.
//!
//! Without preloading there is no shared table and each process keeps its
//! own (the core's fallback): a 429 then holds back that backend's calls
//! only.

use std::mem::size_of;

use lambda_fdw_core::throttle::{self, Holds, Slot};
use pgrx::pg_guard;
use pgrx::pg_sys::{self, LWLockMode};

static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;
static mut PREV_SHMEM_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;

fn size() -> usize {
    throttle::SLOTS * size_of::<Slot>()
}

#[pg_guard]
unsafe extern "C-unwind" fn on_shmem_request() {
    // SAFETY: the hook we replaced, called as PostgreSQL would have; then our
    // request, made while shared memory is being sized.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST_HOOK {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(size());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_shmem_startup() {
    // SAFETY: the hook we replaced, then PostgreSQL's shared-memory
    // initialisation under AddinShmemInitLock (entry 21 of the main LWLock
    // array); a new area is filled with empty slots (two zero atomics each)
    // before any process can read it, and lives as long as the postmaster.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP_HOOK {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let slots =
            pg_sys::ShmemInitStruct(c"lambda_fdw holds".as_ptr(), size(), &mut found) as *mut Slot;
        if !found {
            for i in 0..throttle::SLOTS {
                std::ptr::write(slots.add(i), Slot::new());
            }
        }
        pg_sys::LWLockRelease(init_lock);
        throttle::install(Holds::over(std::slice::from_raw_parts(
            slots,
            throttle::SLOTS,
        )));
    }
}

/// From `_PG_init` while preloading: asks for the holds' shared memory.
pub(crate) fn init_preloaded() {
    // SAFETY: _PG_init runs in the postmaster, single-threaded, before any
    // hook is called; each previous hook is kept and called first.
    unsafe {
        PREV_SHMEM_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(on_shmem_request);
        PREV_SHMEM_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_shmem_startup);
    }
}
