//! What names this PostgreSQL instance and its database in a batch
//! request's metadata (Redshift's `cluster` and `database`, BigQuery's
//! `caller`): one rule for the scan and the queue.

use std::ffi::CStr;

use pgrx::pg_sys;

/// The instance's label: the `cluster_name` setting if it is set, else the
/// system identifier (`pg_control_system()`'s, which a physical replica
/// shares with its primary) in decimal.
pub(crate) fn cluster_label() -> String {
    // SAFETY: cluster_name is a string GUC's variable: NULL or a
    // NUL-terminated string that PostgreSQL owns and only changes between
    // statements.
    let name = unsafe {
        let p = pg_sys::cluster_name;
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    };
    match name {
        Some(name) if !name.is_empty() => name,
        // SAFETY: reads the control file's copy in shared memory, set at
        // startup and never changed.
        _ => unsafe { pg_sys::GetSystemIdentifier() }.to_string(),
    }
}

/// The name of the database this process is connected to (empty before
/// it is connected to one).
pub(crate) fn database_name() -> String {
    // SAFETY: a syscache lookup of this process's database OID; NULL if it
    // is gone, else a palloc'd NUL-terminated name.
    unsafe {
        let name = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if name.is_null() {
            String::new()
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}
