//! Invocation statistics across backends: a bounded hash table in shared
//! memory (like pg_stat_statements), one entry per database, role, server
//! and function, read through `lambda_fdw.stat_invocations`.
//!
//! It exists only when the library is in `shared_preload_libraries`; without
//! it nothing is counted, invocations work as ever, and reading the view is
//! an error that says so. Every path that invokes (foreign-table scans,
//! `aws_lambda.invoke`, the queue worker) drains its [`CallLog`] here, on
//! the process's main thread, one lock per drain.

use std::ffi::{c_long, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, IntoDatum};

use crate::error::{raise, LambdaFdwError};
use lambda_fdw_core::{CallClass, CallLog, CallStats};

/// Largest function name kept (a full ARN with a qualifier fits).
const NAME_BYTES: usize = 320;
/// A server name (NAMEDATALEN).
const SERVER_BYTES: usize = 64;
/// The start of the last error message kept.
const ERROR_BYTES: usize = 256;

const TRANCHE: &std::ffi::CStr = c"lambda_fdw_stats";

pub(crate) static MAX_ENTRIES: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// What an entry counts: one row of the view.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    dbid: Oid,
    userid: Oid,
    /// `InvalidOid`: no server (the default chain).
    serverid: Oid,
    /// The function with its qualifier, NUL-padded: the key is hashed and
    /// compared as bytes.
    function: [u8; NAME_BYTES],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Counters {
    calls: i64,
    succeeded: i64,
    function_errors: i64,
    throttled: i64,
    client_errors: i64,
    service_errors: i64,
    timeouts: i64,
    connect_errors: i64,
    retries: i64,
    bytes_sent: i64,
    bytes_received: i64,
    total_ms: f64,
    min_ms: f64,
    max_ms: f64,
    /// 0: never.
    last_error_at: pg_sys::TimestampTz,
    last_call_at: pg_sys::TimestampTz,
}

impl Counters {
    const ZERO: Counters = Counters {
        calls: 0,
        succeeded: 0,
        function_errors: 0,
        throttled: 0,
        client_errors: 0,
        service_errors: 0,
        timeouts: 0,
        connect_errors: 0,
        retries: 0,
        bytes_sent: 0,
        bytes_received: 0,
        total_ms: 0.0,
        min_ms: f64::INFINITY,
        max_ms: 0.0,
        last_error_at: 0,
        last_call_at: 0,
    };

    /// Adds one call (or retried attempt) that ended at `now`.
    fn add(&mut self, s: &CallStats, now: pg_sys::TimestampTz) {
        self.retries += i64::from(s.retries);
        self.bytes_sent += s.bytes_sent as i64;
        self.bytes_received += s.bytes_received as i64;
        self.last_call_at = now;
        if s.error.is_some() {
            self.last_error_at = now;
        }
        let Some(class) = s.class else {
            return;
        };
        self.calls += 1;
        let ms = s.elapsed.as_secs_f64() * 1000.0;
        self.total_ms += ms;
        self.min_ms = self.min_ms.min(ms);
        self.max_ms = self.max_ms.max(ms);
        *match class {
            CallClass::Succeeded => &mut self.succeeded,
            CallClass::FunctionError => &mut self.function_errors,
            CallClass::Throttled => &mut self.throttled,
            CallClass::ClientError => &mut self.client_errors,
            CallClass::ServiceError => &mut self.service_errors,
            CallClass::Timeout => &mut self.timeouts,
            CallClass::ConnectError => &mut self.connect_errors,
        } += 1;
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    key: Key,
    server: [u8; SERVER_BYTES],
    counters: Counters,
    last_error: [u8; ERROR_BYTES],
    /// The shared tick of the entry's last update: the least recent goes first.
    last_used: u64,
}

/// The shared header: the lock over the table, and the use clock.
#[repr(C)]
struct Shared {
    lock: *mut pg_sys::LWLock,
    tick: u64,
}

/// This process's pointers into shared memory, set by the startup hook in
/// the postmaster and inherited by every child; null when not preloaded.
static SHARED: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());
static TABLE: AtomicPtr<pg_sys::HTAB> = AtomicPtr::new(std::ptr::null_mut());

static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;
static mut PREV_SHMEM_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;

/// The shared header and table, when the library was preloaded.
fn shared_table() -> Option<(*mut Shared, *mut pg_sys::HTAB)> {
    let (shared, table) = (
        SHARED.load(Ordering::Relaxed),
        TABLE.load(Ordering::Relaxed),
    );
    (!shared.is_null() && !table.is_null()).then_some((shared, table))
}

/// Calls `f` on every entry, in no order. `f` may remove the entry it is
/// given (dynahash allows removing the element just returned by a scan).
///
/// # Safety
/// The stats lock is held (exclusively if `f` writes).
unsafe fn for_each_entry(table: *mut pg_sys::HTAB, mut f: impl FnMut(*mut Entry)) {
    // SAFETY: per the contract; a full scan, so no hash_seq_term is needed.
    unsafe {
        let mut status: pg_sys::HASH_SEQ_STATUS = std::mem::zeroed();
        pg_sys::hash_seq_init(&mut status, table);
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
/// The stats lock is held exclusively.
unsafe fn remove(table: *mut pg_sys::HTAB, key: &Key) {
    // SAFETY: per the contract; `key` is a whole Key.
    unsafe {
        pg_sys::hash_search(
            table,
            key as *const Key as *const c_void,
            pg_sys::HASHACTION::HASH_REMOVE,
            std::ptr::null_mut(),
        );
    }
}

fn max_entries() -> i64 {
    i64::from(MAX_ENTRIES.get().max(1))
}

fn shared_size() -> usize {
    // SAFETY: a pure size computation.
    let table = unsafe { pg_sys::hash_estimate_size(max_entries() as c_long, size_of::<Entry>()) };
    size_of::<Shared>().next_multiple_of(pg_sys::MAXIMUM_ALIGNOF as usize) + table
}

fn request_shmem() {
    // SAFETY: called while shared memory is being sized (shmem_request_hook), the time these requests are for.
    unsafe {
        pg_sys::RequestAddinShmemSpace(shared_size());
        pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_shmem_request() {
    // SAFETY: the hook we replaced, called as PostgreSQL would have.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST_HOOK {
            prev();
        }
    }
    request_shmem();
}

#[pg_guard]
unsafe extern "C-unwind" fn on_shmem_startup() {
    // SAFETY: the hook we replaced, then PostgreSQL's own shared-memory
    // initialisation, under AddinShmemInitLock as the documentation asks
    // (entry 21 of the main LWLock array in every supported version).
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP_HOOK {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let shared = pg_sys::ShmemInitStruct(
            c"lambda_fdw stats".as_ptr(),
            size_of::<Shared>(),
            &mut found,
        ) as *mut Shared;
        if !found {
            (*shared).lock = &raw mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
            (*shared).tick = 0;
        }
        let mut info: pg_sys::HASHCTL = std::mem::zeroed();
        info.keysize = size_of::<Key>();
        info.entrysize = size_of::<Entry>();
        let table = pg_sys::ShmemInitHash(
            c"lambda_fdw stats table".as_ptr(),
            max_entries() as c_long,
            max_entries() as c_long,
            &mut info,
            (pg_sys::HASH_ELEM | pg_sys::HASH_BLOBS) as i32,
        );
        pg_sys::LWLockRelease(init_lock);
        SHARED.store(shared, Ordering::SeqCst);
        TABLE.store(table, Ordering::SeqCst);
    }
}

/// From `_PG_init` while preloading: defines `lambda_fdw.stat_max_entries`
/// and asks for the shared memory.
pub(crate) fn init_preloaded() {
    GucRegistry::define_int_guc(
        c"lambda_fdw.stat_max_entries",
        c"Most (database, role, server, function) entries lambda_fdw.stat_invocations keeps.",
        c"The least recently used entry is dropped to make room. Read when the server starts.",
        &MAX_ENTRIES,
        10,
        1_000_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    // SAFETY: _PG_init runs in the postmaster, single-threaded, before any
    // hook is called; each previous hook is kept and called first.
    unsafe {
        {
            PREV_SHMEM_REQUEST_HOOK = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(on_shmem_request);
        }
        PREV_SHMEM_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_shmem_startup);
    }
}

fn copy_str<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    // Cut at a character boundary, leaving room for the NUL.
    let mut end = s.len().min(N - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&s.as_bytes()[..end]);
    out
}

fn read_str(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).unwrap_or("")
}

/// Who made the calls: the database is the current one.
pub(crate) struct Caller<'a> {
    pub role: Oid,
    /// The server's OID and name; `None` for the default chain.
    pub server: Option<(Oid, &'a str)>,
}

impl Caller<'_> {
    /// The current user, through `server`.
    pub(crate) fn current(server: Option<(Oid, &str)>) -> Caller<'_> {
        Caller {
            // SAFETY: reads the backend's current user id.
            role: unsafe { pg_sys::GetUserId() },
            server,
        }
    }
}

/// Counts the calls finished in `log` since its last drain.
pub(crate) fn record_log(caller: &Caller, log: &CallLog) {
    let calls = log.drain();
    if !calls.is_empty() {
        record(caller, &calls);
    }
}

/// Counts `calls`; does nothing when the library is not preloaded.
pub(crate) fn record(caller: &Caller, calls: &[CallStats]) {
    let Some((shared, table)) = shared_table() else {
        return;
    };
    if calls.is_empty() {
        return;
    }
    let server = caller
        .server
        .map(|(_, name)| copy_str::<SERVER_BYTES>(name));
    // SAFETY: the shared header and table were set up by the startup hook
    // and live as long as the server; the table is only touched under its
    // lock, held exclusively here and released before returning (an error
    // in between is cleaned up by LWLockReleaseAll at abort).
    unsafe {
        let now = pg_sys::GetCurrentTimestamp();
        let mut key = Key {
            dbid: pg_sys::MyDatabaseId,
            userid: caller.role,
            serverid: caller.server.map_or(pg_sys::InvalidOid, |(oid, _)| oid),
            function: [0; NAME_BYTES],
        };
        pg_sys::LWLockAcquire((*shared).lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut entry: *mut Entry = std::ptr::null_mut();
        for s in calls {
            let function = copy_str::<NAME_BYTES>(&s.function);
            if entry.is_null() || function != key.function {
                key.function = function;
                entry = find_or_make(table, &key);
                if entry.is_null() {
                    continue;
                }
            }
            (*shared).tick += 1;
            (*entry).last_used = (*shared).tick;
            if let Some(name) = server {
                (*entry).server = name;
            }
            if let Some(error) = &s.error {
                (*entry).last_error = copy_str::<ERROR_BYTES>(error);
            }
            (*entry).counters.add(s, now);
        }
        pg_sys::LWLockRelease((*shared).lock);
    }
}

/// The entry for `key`, made (evicting the least recently used entry if
/// the table is full) when missing; null if shared memory ran out.
///
/// # Safety
/// The stats lock is held exclusively.
unsafe fn find_or_make(table: *mut pg_sys::HTAB, key: &Key) -> *mut Entry {
    // SAFETY: per the contract; `key` is a whole Key, as the table hashes.
    unsafe {
        let key_ptr = key as *const Key as *const c_void;
        let mut found = false;
        let entry = pg_sys::hash_search(table, key_ptr, pg_sys::HASHACTION::HASH_FIND, &mut found)
            as *mut Entry;
        if !entry.is_null() {
            return entry;
        }
        if pg_sys::hash_get_num_entries(table) >= max_entries() {
            evict_least_recent(table);
        }
        let entry = pg_sys::hash_search(
            table,
            key_ptr,
            pg_sys::HASHACTION::HASH_ENTER_NULL,
            &mut found,
        ) as *mut Entry;
        if !entry.is_null() && !found {
            (*entry).server = [0; SERVER_BYTES];
            (*entry).counters = Counters::ZERO;
            (*entry).last_error = [0; ERROR_BYTES];
            (*entry).last_used = 0;
        }
        entry
    }
}

/// # Safety
/// The stats lock is held exclusively.
unsafe fn evict_least_recent(table: *mut pg_sys::HTAB) {
    let mut oldest: Option<(u64, Key)> = None;
    // SAFETY: per the contract; entries are read during the scan, and the
    // oldest removed after it.
    unsafe {
        for_each_entry(table, |e| {
            if oldest.is_none_or(|(used, _)| (*e).last_used < used) {
                oldest = Some(((*e).last_used, (*e).key));
            }
        });
        if let Some((_, key)) = oldest {
            remove(table, &key);
        }
    }
}

fn not_preloaded() -> ! {
    raise(LambdaFdwError::StatsNotPreloaded)
}

/// Every entry, copied out under the shared lock.
fn snapshot() -> Vec<Entry> {
    let Some((shared, table)) = shared_table() else {
        not_preloaded()
    };
    let mut entries = Vec::new();
    // SAFETY: as in `record`; a full scan under the shared lock.
    unsafe {
        pg_sys::LWLockAcquire((*shared).lock, pg_sys::LWLockMode::LW_SHARED);
        for_each_entry(table, |e| entries.push(*e));
        pg_sys::LWLockRelease((*shared).lock);
    }
    entries
}

fn timestamp(t: pg_sys::TimestampTz) -> Option<Datum> {
    (t != 0).then_some(Datum::from(t))
}

/// The columns of one entry, in `lambda_fdw.stat_invocations_internal`'s order.
fn row(e: &Entry) -> [Option<Datum>; 22] {
    let c = &e.counters;
    let server = (e.key.serverid != pg_sys::InvalidOid).then(|| read_str(&e.server));
    let last_error = Some(read_str(&e.last_error)).filter(|s| !s.is_empty());
    [
        e.key.dbid.into_datum(),
        e.key.userid.into_datum(),
        (e.key.serverid != pg_sys::InvalidOid)
            .then_some(e.key.serverid)
            .into_datum(),
        server.into_datum(),
        read_str(&e.key.function).into_datum(),
        c.calls.into_datum(),
        c.succeeded.into_datum(),
        c.function_errors.into_datum(),
        c.throttled.into_datum(),
        c.client_errors.into_datum(),
        c.service_errors.into_datum(),
        c.timeouts.into_datum(),
        c.connect_errors.into_datum(),
        c.retries.into_datum(),
        c.total_ms.into_datum(),
        (c.calls > 0).then_some(c.min_ms).into_datum(),
        (c.calls > 0).then_some(c.max_ms).into_datum(),
        c.bytes_sent.into_datum(),
        c.bytes_received.into_datum(),
        last_error.into_datum(),
        timestamp(c.last_error_at),
        timestamp(c.last_call_at),
    ]
}

static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

#[no_mangle]
pub extern "C" fn pg_finfo_lambda_fdw_stat_invocations() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// `lambda_fdw.stat_invocations_internal()`: the entries the current role
/// may see (its own and its roles', or all with `pg_read_all_stats`).
///
/// # Safety
/// Called by PostgreSQL through the function manager only.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn lambda_fdw_stat_invocations(
    fcinfo: pg_sys::FunctionCallInfo,
) -> Datum {
    let entries = snapshot();
    // SAFETY: a set-returning function declared with 22 OUT columns of the
    // types `row` makes; InitMaterializedSRF sets up the tuplestore and
    // descriptor in the caller's memory, and the values are copied into it.
    unsafe {
        let user = pg_sys::GetUserId();
        let sees_all = pg_sys::superuser()
            || pg_sys::has_privs_of_role(user, Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS));
        pg_sys::InitMaterializedSRF(fcinfo, 0);
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        for e in &entries {
            if !sees_all && !pg_sys::has_privs_of_role(user, e.key.userid) {
                continue;
            }
            let values = row(e);
            let mut datums = values.map(|v| v.unwrap_or(Datum::from(0)));
            let mut nulls = values.map(|v| v.is_none());
            pg_sys::tuplestore_putvalues(
                (*rsinfo).setResult,
                (*rsinfo).setDesc,
                datums.as_mut_ptr(),
                nulls.as_mut_ptr(),
            );
        }
    }
    Datum::from(0)
}

#[no_mangle]
pub extern "C" fn pg_finfo_lambda_fdw_stat_invocations_reset() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// `lambda_fdw.stat_invocations_reset()`: forgets every entry.
///
/// # Safety
/// Called by PostgreSQL through the function manager only.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn lambda_fdw_stat_invocations_reset(
    _fcinfo: pg_sys::FunctionCallInfo,
) -> Datum {
    let Some((shared, table)) = shared_table() else {
        not_preloaded()
    };
    // SAFETY: as in `record`, under the exclusive lock.
    unsafe {
        pg_sys::LWLockAcquire((*shared).lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        for_each_entry(table, |e| remove(table, &(*e).key));
        pg_sys::LWLockRelease((*shared).lock);
    }
    Datum::from(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stats(class: Option<CallClass>, ms: u64, error: Option<&str>) -> CallStats {
        CallStats {
            function: "f".into(),
            class,
            retries: 1,
            elapsed: Duration::from_millis(ms),
            bytes_sent: 10,
            bytes_received: 4,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn counters_add_calls_and_retries() {
        let mut c = Counters::ZERO;
        c.add(&stats(Some(CallClass::Succeeded), 5, None), 100);
        c.add(&stats(Some(CallClass::Throttled), 15, Some("slow")), 200);
        c.add(&stats(None, 0, Some("again")), 300);
        assert_eq!((c.calls, c.succeeded, c.throttled, c.retries), (2, 1, 1, 3));
        assert_eq!((c.bytes_sent, c.bytes_received), (30, 12));
        assert_eq!((c.total_ms, c.min_ms, c.max_ms), (20.0, 5.0, 15.0));
        assert_eq!((c.last_call_at, c.last_error_at), (300, 300));
    }

    #[test]
    fn strings_are_cut_at_a_character_boundary() {
        let s: [u8; 4] = copy_str("aé€");
        assert_eq!(read_str(&s), "aé");
        let s: [u8; 8] = copy_str("abc");
        assert_eq!(read_str(&s), "abc");
    }
}
