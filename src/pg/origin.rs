//! Where a call comes from, as the batch formats' metadata names it: the
//! instance, the database, a relation's qualified name, the statement, and
//! a request id unique in the instance. Read from the backend's globals and
//! the syscache; no SQL.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys::{self, Oid};

/// The instance: the `cluster_name` setting if set, else the system
/// identifier (as `pg_control_system()` shows it), in decimal.
pub(crate) fn cluster_label() -> String {
    // SAFETY: cluster_name is a GUC string (NULL or NUL-terminated);
    // GetSystemIdentifier reads the control file's copy in shared memory.
    unsafe {
        let name = pg_sys::cluster_name;
        if !name.is_null() && *name != 0 {
            return CStr::from_ptr(name).to_string_lossy().into_owned();
        }
        pg_sys::GetSystemIdentifier().to_string()
    }
}

/// The current database's name.
pub(crate) fn database_name() -> String {
    // SAFETY: MyDatabaseId is set in a backend connected to a database;
    // get_database_name gives a palloc'd name, or NULL if it is gone.
    unsafe {
        let name = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if name.is_null() {
            String::new()
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

/// `schema.relation` of relation `relid`, each part quoted as SQL needs.
pub(crate) fn qualified_name(relid: Oid) -> String {
    // SAFETY: syscache lookups of an OID (NULL for one that is gone); the
    // names are NUL-terminated and quote_qualified_identifier copies them.
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        if name.is_null() || schema.is_null() {
            return format!("OID {}", relid.to_u32());
        }
        CStr::from_ptr(pg_sys::quote_qualified_identifier(schema, name))
            .to_string_lossy()
            .into_owned()
    }
}

/// The running statement: its query identifier when PostgreSQL computes
/// one (`compute_query_id`, as pg_stat_statements shows it), else
/// `<backend pid>.<statement start, microseconds since 2000>`.
pub(crate) fn statement_id() -> String {
    // SAFETY: backend globals, read in the backend that owns them.
    unsafe {
        let id = pg_sys::pgstat_get_my_query_id();
        if id != 0 {
            return (id as i64).to_string();
        }
        let pid = pg_sys::MyProcPid;
        format!("{pid}.{}", pg_sys::GetCurrentStatementStartTimestamp())
    }
}

thread_local! {
    static REQUESTS: Cell<u64> = const { Cell::new(0) };
}

/// A new request id, unique in the instance over its lifetime:
/// `<backend pid>.<backend start, microseconds since 2000>.<n>`, `n`
/// counting this backend's requests from 1.
pub(crate) fn next_request_id() -> String {
    let n = REQUESTS.with(|r| {
        r.set(r.get() + 1);
        r.get()
    });
    // SAFETY: backend globals, read in the backend that owns them.
    let (pid, started) = unsafe { (pg_sys::MyProcPid, pg_sys::MyStartTimestamp) };
    format!("{pid}.{started}.{n}")
}
