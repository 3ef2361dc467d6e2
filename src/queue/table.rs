//! The queue table as the extension made it: found through the extension
//! (pg_depend membership), never by name alone, and read without SQL, so
//! a table a role planted under the same name before `CREATE EXTENSION`
//! (or between `DROP` and `CREATE`) is never used, and no name resolves
//! through the caller's search_path. The SQL the extension runs on the
//! table runs with the search_path pinned ([`with_pinned_search_path`]).

use pgrx::pg_sys::{self, Oid};

/// `lambda_fdw.invocations`, a member of the `lambda_fdw` extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueTable {
    pub relid: Oid,
    pub owner: Oid,
    /// Triggers or rules are attached to it (the extension attaches none).
    pub has_code_attached: bool,
}

/// The extension's queue table in this database; `None` when the extension
/// is not installed, its SQL predates the queue (0.1.0), or the table named
/// `lambda_fdw.invocations` is not the extension's.
pub fn queue_table() -> Option<QueueTable> {
    // SAFETY: name lookups with missing_ok, then a syscache lookup of the
    // relation (released before returning) and a pg_depend scan, all inside
    // the caller's transaction.
    unsafe {
        let extension = pg_sys::get_extension_oid(c"lambda_fdw".as_ptr(), true);
        if extension == Oid::INVALID {
            return None;
        }
        let schema = pg_sys::get_namespace_oid(c"lambda_fdw".as_ptr(), true);
        if schema == Oid::INVALID {
            return None;
        }
        let relid = pg_sys::get_relname_relid(c"invocations".as_ptr(), schema);
        if relid == Oid::INVALID
            || pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, relid) != extension
        {
            return None;
        }
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as _,
            pg_sys::Datum::from(relid),
        );
        if tuple.is_null() {
            return None;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple);
        let table = QueueTable {
            relid,
            owner: (*form).relowner,
            has_code_attached: (*form).relhastriggers || (*form).relhasrules,
        };
        pg_sys::ReleaseSysCache(tuple);
        Some(table)
    }
}

/// Runs `f` with `search_path` set to `pg_catalog, pg_temp` at a new GUC
/// nest level, as PostgreSQL runs a function that has a `SET search_path`
/// clause, and restores the caller's afterwards. If `f` raises, the
/// aborting (sub)transaction restores it.
pub fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: a new GUC nest level and a local (GUC_ACTION_SAVE) setting
    // inside the caller's transaction, undone by AtEOXact_GUC below or by
    // the abort of the (sub)transaction.
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    let result = f();
    // SAFETY: closes the nest level opened above, keeping nothing of it.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    result
}
