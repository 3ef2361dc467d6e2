//! The databases, as the launcher and the queue workers see them: the list
//! of databases a worker may connect to ([`list`]), read with a plain scan
//! of pg_database, and whether a DROP DATABASE, ALTER DATABASE ... RENAME
//! or CREATE DATABASE ... TEMPLATE of this database is waiting for its
//! users to leave ([`being_changed`]).
//!
//! Lock rules: [`list`] holds AccessShareLock on pg_database for its scan;
//! [`being_changed`] asks for RowExclusiveLock on this database's object,
//! without waiting, and gives it back at once. Both run inside the
//! caller's transaction.

use pgrx::pg_sys::{self, Oid};

/// A database a queue worker may connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Database {
    pub oid: Oid,
    pub name: String,
}

/// `datconnlimit` of a database that an interrupted DROP DATABASE left
/// behind (PostgreSQL 15.4, 16 and later).
const DATCONNLIMIT_INVALID_DB: i32 = -2;

/// The databases that accept connections and are no templates, in OID
/// order (a process connected to no database cannot use the catalog's
/// indexes: a plain scan).
pub(crate) fn list() -> Vec<Database> {
    let mut found = Vec::new();
    // SAFETY: inside the caller's transaction, a catalog scan of the shared
    // relation pg_database, opened, scanned and closed here; each tuple is
    // a pg_database row while the scan is on it.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, lock);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let form = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if form.datallowconn
                && !form.datistemplate
                && form.datconnlimit != DATCONNLIMIT_INVALID_DB
            {
                found.push(Database {
                    oid: form.oid,
                    name: pgrx::name_data_to_str(&form.datname).to_string(),
                });
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, lock);
    }
    found.sort_by_key(|d| d.oid.to_u32());
    found
}

/// Whether a command that needs this database to itself is waiting for
/// its users to leave: DROP DATABASE and ALTER DATABASE ... RENAME hold
/// AccessExclusiveLock on the database's object while they wait, CREATE
/// DATABASE ... TEMPLATE ShareLock; either refuses RowExclusiveLock, the
/// lock every new connection takes on it.
pub(crate) fn being_changed() -> bool {
    // SAFETY: MyDatabaseId is this process's database. The lock tag is the
    // one LockSharedObject builds for a database; asked for without
    // waiting, and released at once when granted, inside the caller's
    // transaction (whose resource owner it would otherwise join).
    unsafe {
        let tag = pg_sys::LOCKTAG {
            locktag_field1: 0,
            locktag_field2: pg_sys::DatabaseRelationId.to_u32(),
            locktag_field3: pg_sys::MyDatabaseId.to_u32(),
            locktag_field4: 0,
            locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
            locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
        };
        let mode = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
        let got = pg_sys::LockAcquire(&tag, mode, false, true);
        if got == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
            return true;
        }
        pg_sys::LockRelease(&tag, mode, false);
        false
    }
}
