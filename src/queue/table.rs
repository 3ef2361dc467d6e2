//! The queue table as the extension made it, and how the extension's own SQL
//! runs on it.
//!
//! - [`queue_table`] finds `lambda_fdw.invocations` through the extension:
//!   the relation of that name is used only if it, and its schema, are
//!   members of the `lambda_fdw` extension (pg_depend), so a table a role
//!   planted under the same name (before `CREATE EXTENSION`, between `DROP`
//!   and `CREATE`, or beside an extension still at 0.1.0, which had no
//!   queue) is never used. It reads the catalogs in C, without SQL, so no
//!   name resolves through anybody's search_path.
//! - [`with_pinned_search_path`] runs the extension's SQL with `search_path`
//!   set to `pg_catalog, pg_temp`, as PostgreSQL runs a function that has a
//!   `SET search_path` clause.
//! - [`as_owner`] runs it as the queue table's owner, in a
//!   security-restricted operation (as PostgreSQL's own maintenance
//!   commands run a table owner's code).

use pgrx::pg_sys::{self, Oid};

/// `lambda_fdw.invocations`, a member of the `lambda_fdw` extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueTable {
    pub relid: Oid,
    pub owner: Oid,
    /// Triggers are attached to it (the extension attaches none).
    pub has_triggers: bool,
    /// Rules are attached to it (the extension attaches none).
    pub has_rules: bool,
    /// `has_triggers || has_rules`.
    pub has_code_attached: bool,
    /// It has the `foreign_table` column (0.3.0's SQL; a table whose SQL is
    /// still 0.2.0's, before ALTER EXTENSION UPDATE, has not).
    pub has_foreign_table_column: bool,
    /// It has 0.6.0's columns (`ordering_key`, `on_complete`,
    /// `callback_error`) and state `cancelled`; a table whose SQL is older,
    /// before ALTER EXTENSION UPDATE, has not.
    pub since_0_6: bool,
}

/// What the name `lambda_fdw.invocations` is in this database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// No such relation (the extension is not installed, or its SQL is
    /// still at 0.1.0, which had no queue).
    Missing,
    /// A relation of that name that the extension did not create (it, or
    /// its schema, is not a member of `lambda_fdw`; or it is not a table).
    NotTheExtensions { relid: Oid, owner: Oid },
    /// The extension's queue table.
    Found(QueueTable),
}

/// Triggers, rules, owner and kind of relation `relid`, from the relation
/// cache (what the executor would run), or `None` if it no longer exists.
///
/// # Safety
/// Inside a transaction.
unsafe fn relation_facts(relid: Oid) -> Option<(Oid, u8, bool, bool)> {
    // SAFETY: RelationIdGetRelation returns NULL for a missing relation and
    // otherwise a relcache entry whose reference count it raised, dropped
    // by RelationClose; the fields are read in between. trigdesc is NULL
    // when pg_trigger has no row for the relation, rd_rules when
    // pg_rewrite has none (relhastriggers/relhasrules may stay set after
    // the last one is dropped, until VACUUM).
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return None;
        }
        let form = (*rel).rd_rel;
        let facts = (
            (*form).relowner,
            (*form).relkind as u8,
            !(*rel).trigdesc.is_null(),
            !(*rel).rd_rules.is_null(),
        );
        pg_sys::RelationClose(rel);
        Some(facts)
    }
}

/// The owner of relation `relid` (a syscache lookup; no relcache entry is
/// built for a relation that may not be ours).
///
/// # Safety
/// Inside a transaction.
unsafe fn relation_owner(relid: Oid) -> Oid {
    // SAFETY: a syscache lookup of a pg_class row, released at once.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as _,
            pg_sys::Datum::from(relid),
        );
        if tuple.is_null() {
            return Oid::INVALID;
        }
        let owner = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple)).relowner;
        pg_sys::ReleaseSysCache(tuple);
        owner
    }
}

/// What `lambda_fdw.invocations` is in this database; see [`Lookup`].
/// Catalog lookups only (syscache, pg_depend, relcache), inside the
/// caller's transaction.
pub(crate) fn find() -> Lookup {
    // SAFETY: name lookups with missing_ok (they return InvalidOid), pg_depend
    // scans, a syscache lookup and relation_facts, all inside the caller's
    // transaction.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"lambda_fdw".as_ptr(), true);
        if schema == Oid::INVALID {
            return Lookup::Missing;
        }
        let relid = pg_sys::get_relname_relid(c"invocations".as_ptr(), schema);
        if relid == Oid::INVALID {
            return Lookup::Missing;
        }
        let extension = pg_sys::get_extension_oid(c"lambda_fdw".as_ptr(), true);
        let members = extension != Oid::INVALID
            && pg_sys::getExtensionOfObject(pg_sys::NamespaceRelationId, schema) == extension
            && pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, relid) == extension;
        if !members {
            return Lookup::NotTheExtensions {
                relid,
                owner: relation_owner(relid),
            };
        }
        let Some((owner, relkind, has_triggers, has_rules)) = relation_facts(relid) else {
            return Lookup::Missing;
        };
        if relkind != pg_sys::RELKIND_RELATION {
            return Lookup::NotTheExtensions { relid, owner };
        }
        Lookup::Found(QueueTable {
            relid,
            owner,
            has_triggers,
            has_rules,
            has_code_attached: has_triggers || has_rules,
            // InvalidAttrNumber (0) for a column that does not exist.
            has_foreign_table_column: pg_sys::get_attnum(relid, c"foreign_table".as_ptr()) > 0,
            since_0_6: pg_sys::get_attnum(relid, c"callback_error".as_ptr()) > 0,
        })
    }
}

/// The extension's queue table in this database; `None` when the extension
/// is not installed, its SQL predates the queue (0.1.0), or the relation
/// named `lambda_fdw.invocations` is not the extension's.
pub(crate) fn queue_table() -> Option<QueueTable> {
    match find() {
        Lookup::Found(table) => Some(table),
        _ => None,
    }
}

/// Runs `f` with `search_path` set to `pg_catalog, pg_temp` at a new GUC
/// nest level, as PostgreSQL runs a function that has a `SET search_path`
/// clause (fmgr_security_definer), and restores the caller's afterwards.
///
/// If `f` raises, the aborting (sub)transaction restores it:
/// AbortSubTransaction calls `AtEOXact_GUC(false, s->gucNestLevel)` and
/// AbortTransaction `AtEOXact_GUC(false, 1)`, which undo every nest level
/// at or above theirs, ours included. For a panic caught inside the same
/// (sub)transaction, a guard closes our level while unwinding.
pub(crate) fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    struct Level(i32);
    impl Drop for Level {
        fn drop(&mut self) {
            // SAFETY: closes the nest level opened below: on success keeping
            // nothing of it (a SAVE setting is always undone), and while
            // unwinding as an abort would. A (sub)transaction abort after
            // this only undoes levels below ours.
            unsafe { pg_sys::AtEOXact_GUC(!std::thread::panicking(), self.0) };
        }
    }
    // SAFETY: a new GUC nest level and a GUC_ACTION_SAVE setting inside the
    // caller's transaction; search_path is PGC_USERSET, so any role may set
    // it (an invalid value is impossible here; ERROR if it were).
    let _level = unsafe {
        let level = Level(pg_sys::NewGUCNestLevel());
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            pg_sys::elog::PgLogLevel::ERROR as i32,
            false,
        );
        level
    };
    f()
}

/// Runs `f` as role `owner` (the queue table's owner) in a
/// security-restricted operation, restoring the caller's identity
/// afterwards, also when `f` fails (a guard restores it while unwinding; an
/// aborting (sub)transaction restores it as well).
pub(crate) fn as_owner<R>(owner: Oid, f: impl FnOnce() -> R) -> R {
    struct Restore(Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores the identity saved below.
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
    let mut user = Oid::INVALID;
    let mut context = 0;
    // SAFETY: saves and switches the current user the way PostgreSQL's own
    // maintenance commands do (a local change, restricted operations).
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let _restore = Restore(user, context);
    f()
}

/// Runs `f` as role `owner` (see [`as_owner`]) with the search_path pinned
/// (see [`with_pinned_search_path`]): how every statement on the queue
/// table runs.
pub(crate) fn as_owner_pinned<R>(owner: Oid, f: impl FnOnce() -> R) -> R {
    as_owner(owner, || with_pinned_search_path(f))
}

/// In-database tests (`cargo pgrx test`) of the queue table's lookup, the
/// pinned search_path and the owner's identity. Each runs in a transaction
/// that is rolled back.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use std::panic::AssertUnwindSafe;

    use pgrx::prelude::*;

    use super::super::transaction::in_subtransaction;
    use super::*;
    use crate::pg::catalog;

    #[pg_test]
    fn the_queue_table_is_the_extensions_own() {
        let queue = queue_table().expect("the extension's queue table");
        assert!(!queue.has_code_attached);
        assert!(catalog::is_superuser(queue.owner));
        Spi::run(
            "CREATE FUNCTION public.nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        )
        .unwrap();
        Spi::run(
            "CREATE TRIGGER t AFTER UPDATE ON lambda_fdw.invocations FOR EACH STATEMENT EXECUTE FUNCTION public.nothing()",
        )
        .unwrap();
        let queue = queue_table().unwrap();
        assert!(queue.has_triggers && !queue.has_rules && queue.has_code_attached);
        Spi::run("DROP TRIGGER t ON lambda_fdw.invocations").unwrap();
        assert!(!queue_table().unwrap().has_code_attached);
        // The same name outside the extension is not it.
        Spi::run("ALTER TABLE lambda_fdw.invocations RENAME TO invocations_real").unwrap();
        Spi::run("CREATE TABLE lambda_fdw.invocations (id bigint)").unwrap();
        assert!(matches!(find(), Lookup::NotTheExtensions { .. }));
        Spi::run("DROP TABLE lambda_fdw.invocations").unwrap();
        assert_eq!(find(), Lookup::Missing);
    }

    #[pg_test]
    fn the_search_path_is_pinned_and_restored() {
        let path = || {
            Spi::get_one::<String>("SELECT pg_catalog.current_setting('search_path')")
                .unwrap()
                .unwrap()
        };
        Spi::run("SET search_path = public").unwrap();
        assert_eq!(with_pinned_search_path(path), "pg_catalog, pg_temp");
        assert_eq!(path(), "public");
        // An error inside: the rolled-back subtransaction restores it.
        let failed =
            in_subtransaction(|| with_pinned_search_path(|| Spi::run("SELECT 1/0").unwrap()));
        assert_eq!(
            failed.map_err(|e| e.to_string()),
            Err("division by zero".into())
        );
        assert_eq!(path(), "public");
        // A panic caught inside the same transaction: the guard restores it.
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            with_pinned_search_path(|| panic!("inside"))
        }));
        assert!(caught.is_err());
        assert_eq!(path(), "public");
        // As the owner, in a security-restricted operation.
        let owner = queue_table().unwrap().owner;
        // SAFETY: reads the backend's security context flags.
        let restricted = || unsafe { pg_sys::InSecurityRestrictedOperation() };
        assert!(as_owner(owner, restricted));
        assert!(!restricted());
    }
}
