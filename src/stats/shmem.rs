//! The statistics' shared table: a dynahash table in shared memory, made by
//! the shared-memory hooks when the library is preloaded, sized by
//! `lambda_fdw.stat_max_entries`; and the locks its readers and writers take.
//!
//! # Lock rules
//!
//! As pg_stat_statements.c states its own:
//!
//! - The table has one LWLock (tranche `lambda_fdw_stats`, in [`Shared`]);
//!   every entry has a spinlock of its own (`Entry::mutex`).
//! - Looking an entry up needs the LWLock; SHARED is enough. Counting calls
//!   into an entry needs no more than that, plus the entry's spinlock.
//! - Creating an entry, evicting entries and resetting the table need the
//!   LWLock EXCLUSIVE. So an entry found under the LWLock stays (and keeps
//!   its key) until that LWLock is released.
//! - An entry's key is written when the entry is made and never changes:
//!   reading it needs the LWLock (either mode) only. Everything else in an
//!   entry (its [`Data`] and its use tick) is read and written under the
//!   entry's spinlock, the LWLock being held in either mode. Under the
//!   EXCLUSIVE LWLock nobody else can reach an entry, so eviction reads use
//!   ticks without spinlocks.
//! - A spinlock is held for a few instructions: copying an entry's data out,
//!   or stamping it and adding one drain's calls of one function. Nothing
//!   done under it allocates, can fail, or takes another lock.
//! - The use clock ([`Shared::tick`]) is an atomic counter, advanced under
//!   the spinlock of the entry it stamps, so an entry's tick only grows.
//! - A drain takes the LWLock once, SHARED. When it meets a key with no
//!   entry it releases it and takes it EXCLUSIVE (then looks the key up
//!   again: another backend may have made the entry in between), and keeps
//!   it so for the rest of the drain. A read of the view takes it SHARED;
//!   a reset, EXCLUSIVE.
//! - Making an entry in a full table first evicts the least recently used
//!   5% of the entries (at least one) in one pass, as pg_stat_statements
//!   evicts 5% of its entries by usage, rather than one per new key.
//! - An error while the LWLock is held (none is expected) unwinds through
//!   the holder's drop, which releases it; PostgreSQL's abort releases any
//!   LWLock still held as well.

use std::ffi::{c_long, c_void, CStr};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use pgrx::pg_guard;
use pgrx::pg_sys::{self, LWLockMode};

use super::entry::{Data, Key};
use crate::settings::guc;

const TRANCHE: &CStr = c"lambda_fdw_stats";

/// The share of the entries one eviction removes, in percent.
const EVICT_PERCENT: usize = 5;

/// One entry of the shared table (dynahash wants the key first).
#[repr(C)]
struct Entry {
    key: Key,
    /// Guards `last_used` and `data` (see the lock rules).
    mutex: pg_sys::slock_t,
    /// The use clock's value when the entry was last counted into: the
    /// least recent go first.
    last_used: u64,
    data: Data,
}

/// The shared header.
#[repr(C)]
struct Shared {
    /// The table's LWLock.
    lock: *mut pg_sys::LWLock,
    /// The use clock. Rust's `AtomicU64` is a native lock-free 64-bit
    /// atomic, so it works between the processes that map it.
    tick: AtomicU64,
}

/// This process's pointers into shared memory, set by the startup hook in
/// the postmaster and inherited by every child; null when not preloaded.
static SHARED: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());
static TABLE: AtomicPtr<pg_sys::HTAB> = AtomicPtr::new(std::ptr::null_mut());

static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;
static mut PREV_SHMEM_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;

/// The shared table, which exists when the library was preloaded.
pub(super) struct Table {
    shared: *mut Shared,
    htab: *mut pg_sys::HTAB,
}

/// The shared table, when the library was preloaded.
pub(super) fn table() -> Option<Table> {
    let (shared, htab) = (
        SHARED.load(Ordering::Relaxed),
        TABLE.load(Ordering::Relaxed),
    );
    (!shared.is_null() && !htab.is_null()).then_some(Table { shared, htab })
}

impl Table {
    /// The LWLock taken SHARED, for counting calls (see [`Locked::update`]).
    pub(super) fn lock_shared(&self) -> Locked<'_> {
        Locked::take(self, false)
    }

    /// Every entry's key and data, each entry read under its spinlock, all
    /// under the SHARED LWLock.
    pub(super) fn snapshot(&self) -> Vec<(Key, Data)> {
        let held = self.lock_shared();
        let mut out = Vec::new();
        // SAFETY: the LWLock is held (by `held`), so no entry is made or
        // removed during the scan; each entry's data is copied under its
        // spinlock, its key without (it never changes).
        unsafe {
            out.reserve(pg_sys::hash_get_num_entries(self.htab).max(0) as usize);
            for_each_entry(self.htab, |e| {
                let mutex = &raw mut (*e).mutex;
                pg_sys::SpinLockAcquire(mutex);
                let data = (*e).data;
                pg_sys::SpinLockRelease(mutex);
                out.push(((*e).key, data));
            });
        }
        drop(held);
        out
    }

    /// Forgets every entry, under the EXCLUSIVE LWLock.
    pub(super) fn reset(&self) {
        let held = Locked::take(self, true);
        // SAFETY: the LWLock is held exclusively (by `held`), so entries may
        // be removed; dynahash allows removing the element a scan returned.
        unsafe { for_each_entry(self.htab, |e| remove(self.htab, &(*e).key)) };
        drop(held);
    }
}

/// The table's LWLock, held while this lives: SHARED until a key with no
/// entry is met, EXCLUSIVE from then on.
pub(super) struct Locked<'t> {
    table: &'t Table,
    exclusive: bool,
}

impl<'t> Locked<'t> {
    /// Takes `table`'s LWLock, EXCLUSIVE or SHARED.
    fn take(table: &'t Table, exclusive: bool) -> Self {
        let mode = if exclusive {
            LWLockMode::LW_EXCLUSIVE
        } else {
            LWLockMode::LW_SHARED
        };
        // SAFETY: the LWLock lives in shared memory as long as the server;
        // the value made once it is held releases it when it drops.
        unsafe { pg_sys::LWLockAcquire((*table.shared).lock, mode) };
        Locked { table, exclusive }
    }

    /// Runs `f` on `key`'s entry under the entry's spinlock, stamping it as
    /// the most recently used; makes the entry first when there is none
    /// (taking the LWLock EXCLUSIVE, and evicting when the table is full).
    /// False, and `f` not run, when shared memory ran out.
    ///
    /// `f` runs under a spinlock: a few instructions that cannot fail,
    /// allocate or lock (see the lock rules).
    pub(super) fn update(&mut self, key: &Key, f: impl FnOnce(&mut Data)) -> bool {
        let mut entry = self.find(key);
        if entry.is_null() {
            self.make_exclusive();
            entry = self.find_or_make(key);
            if entry.is_null() {
                return false;
            }
        }
        // SAFETY: `entry` is in the table and stays there while the LWLock
        // is held; its tick and data are written under its spinlock only.
        unsafe {
            let mutex = &raw mut (*entry).mutex;
            pg_sys::SpinLockAcquire(mutex);
            (*entry).last_used = (*self.table.shared).tick.fetch_add(1, Ordering::Relaxed) + 1;
            f(&mut (*entry).data);
            pg_sys::SpinLockRelease(mutex);
        }
        true
    }

    /// `key`'s entry, null if none.
    fn find(&self, key: &Key) -> *mut Entry {
        // SAFETY: the LWLock is held (either mode allows a lookup); `key` is
        // a whole Key, as the table hashes.
        unsafe {
            pg_sys::hash_search(
                self.table.htab,
                key as *const Key as *const c_void,
                pg_sys::HASHACTION::HASH_FIND,
                std::ptr::null_mut(),
            ) as *mut Entry
        }
    }

    fn make_exclusive(&mut self) {
        if self.exclusive {
            return;
        }
        let lock = {
            // SAFETY: the header lives as long as the server.
            unsafe { (*self.table.shared).lock }
        };
        // SAFETY: the LWLock is held SHARED (taken by `take`): released,
        // then taken EXCLUSIVE; `self` releases it when it drops.
        unsafe {
            pg_sys::LWLockRelease(lock);
            pg_sys::LWLockAcquire(lock, LWLockMode::LW_EXCLUSIVE);
        }
        self.exclusive = true;
    }

    /// `key`'s entry, made (after evicting if the table is full) when
    /// missing; null if shared memory ran out. The LWLock is EXCLUSIVE.
    fn find_or_make(&mut self, key: &Key) -> *mut Entry {
        debug_assert!(self.exclusive);
        let entry = self.find(key);
        if !entry.is_null() {
            return entry;
        }
        let htab = self.table.htab;
        // SAFETY: the LWLock is held exclusively, so entries may be removed
        // and made; a new entry is initialised before the lock is released.
        unsafe {
            if pg_sys::hash_get_num_entries(htab) >= guc::stat_max_entries() {
                evict(htab);
            }
            let mut found = false;
            let entry = pg_sys::hash_search(
                htab,
                key as *const Key as *const c_void,
                pg_sys::HASHACTION::HASH_ENTER_NULL,
                &mut found,
            ) as *mut Entry;
            if !entry.is_null() && !found {
                pg_sys::SpinLockInit(&raw mut (*entry).mutex);
                (*entry).last_used = 0;
                (*entry).data = Data::NEW;
            }
            entry
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: the LWLock was taken by `take` (and possibly retaken
        // EXCLUSIVE by `make_exclusive`); this is its one release.
        unsafe { pg_sys::LWLockRelease((*self.table.shared).lock) };
    }
}

/// How many of `n` entries one eviction removes.
fn victims(n: usize) -> usize {
    (n * EVICT_PERCENT / 100).max(1).min(n)
}

/// Puts the `victims(len)` least recently used of `by_use` (use tick, entry)
/// first, and returns them.
fn least_used<T>(by_use: &mut [(u64, T)]) -> &[(u64, T)] {
    let k = victims(by_use.len());
    if k < by_use.len() {
        by_use.select_nth_unstable_by_key(k, |e| e.0);
    }
    &by_use[..k]
}

/// Removes the least recently used 5% of the entries (at least one), in
/// one pass over the table.
///
/// # Safety
/// The LWLock is held exclusively.
unsafe fn evict(htab: *mut pg_sys::HTAB) {
    let mut by_use: Vec<(u64, *mut Entry)> = Vec::new();
    // SAFETY: per the contract nobody else reaches an entry, so the ticks are
    // read without spinlocks; the entries' addresses hold until the removals,
    // which happen after the scan.
    unsafe {
        let n = pg_sys::hash_get_num_entries(htab).max(0) as usize;
        if by_use.try_reserve_exact(n).is_err() {
            return;
        }
        for_each_entry(htab, |e| by_use.push(((*e).last_used, e)));
        for &(_, e) in least_used(&mut by_use) {
            remove(htab, &(*e).key);
        }
    }
}

/// Calls `f` on every entry, in no order. `f` may remove the entry it is
/// given (dynahash allows removing the element just returned by a scan).
///
/// # Safety
/// The LWLock is held (exclusively if `f` removes or makes entries).
unsafe fn for_each_entry(htab: *mut pg_sys::HTAB, mut f: impl FnMut(*mut Entry)) {
    // SAFETY: per the contract; a full scan, so no hash_seq_term is needed.
    unsafe {
        let mut status: pg_sys::HASH_SEQ_STATUS = std::mem::zeroed();
        pg_sys::hash_seq_init(&mut status, htab);
        loop {
            let e = pg_sys::hash_seq_search(&mut status) as *mut Entry;
            if e.is_null() {
                break;
            }
            f(e);
        }
    }
}

/// # Safety
/// The LWLock is held exclusively.
unsafe fn remove(htab: *mut pg_sys::HTAB, key: &Key) {
    // SAFETY: per the contract; `key` is a whole Key.
    unsafe {
        pg_sys::hash_search(
            htab,
            key as *const Key as *const c_void,
            pg_sys::HASHACTION::HASH_REMOVE,
            std::ptr::null_mut(),
        );
    }
}

fn shared_size() -> usize {
    // SAFETY: a pure size computation.
    let table = unsafe {
        pg_sys::hash_estimate_size(guc::stat_max_entries() as c_long, size_of::<Entry>())
    };
    size_of::<Shared>().next_multiple_of(pg_sys::MAXIMUM_ALIGNOF as usize) + table
}

#[pg_guard]
unsafe extern "C-unwind" fn on_shmem_request() {
    // SAFETY: the hook we replaced, called as PostgreSQL would have; then
    // our requests, made while shared memory is being sized, the time they
    // are for.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST_HOOK {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(shared_size());
        pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_shmem_startup() {
    let max_entries = guc::stat_max_entries() as c_long;
    // SAFETY: the hook we replaced, then PostgreSQL's own shared-memory
    // initialisation, under AddinShmemInitLock as the documentation asks
    // (entry 21 of the main LWLock array in every supported version).
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP_HOOK {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let shared = pg_sys::ShmemInitStruct(
            c"lambda_fdw stats".as_ptr(),
            size_of::<Shared>(),
            &mut found,
        ) as *mut Shared;
        if !found {
            (*shared).lock = &raw mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
            std::ptr::write(&raw mut (*shared).tick, AtomicU64::new(0));
        }
        let mut info: pg_sys::HASHCTL = std::mem::zeroed();
        info.keysize = size_of::<Key>();
        info.entrysize = size_of::<Entry>();
        let htab = pg_sys::ShmemInitHash(
            c"lambda_fdw stats table".as_ptr(),
            max_entries,
            max_entries,
            &mut info,
            (pg_sys::HASH_ELEM | pg_sys::HASH_BLOBS) as i32,
        );
        pg_sys::LWLockRelease(init_lock);
        SHARED.store(shared, Ordering::SeqCst);
        TABLE.store(htab, Ordering::SeqCst);
    }
}

/// From `_PG_init` while preloading (after `settings::guc::register`, which
/// defines `lambda_fdw.stat_max_entries`): asks for the shared memory.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eviction_removes_five_percent_at_least_one() {
        assert_eq!(victims(0), 0);
        assert_eq!(victims(10), 1);
        assert_eq!(victims(39), 1);
        assert_eq!(victims(40), 2);
        assert_eq!(victims(1000), 50);
        assert_eq!(victims(1_000_000), 50_000);
    }

    #[test]
    fn the_least_recently_used_go() {
        // Ticks 1..=100 in a scrambled order, each with its own label.
        let mut by_use: Vec<(u64, u64)> = (0..100u64).map(|i| ((i * 37) % 100 + 1, i)).collect();
        let mut gone: Vec<u64> = least_used(&mut by_use).iter().map(|e| e.0).collect();
        gone.sort_unstable();
        assert_eq!(gone, vec![1, 2, 3, 4, 5]);
        let mut one = vec![(7u64, ())];
        assert_eq!(least_used(&mut one).len(), 1);
    }
}
