//! Reads from PostgreSQL's catalogs that wrappers does not do for us: user
//! mappings, servers, privileges, a foreign table's options and columns.
//! No SQL: every read is a catalog scan or a syscache lookup, so nothing
//! here resolves a name through the caller's search_path.

use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::pg_sys::{self, Oid};
use pgrx::{PgList, PgRelation};

use crate::error::{LambdaFdwError, Result};

/// Reads a list of DefElem options into a map.
///
/// # Safety
/// `list` must be NULL or a valid List of DefElem, as catalog option lists are.
pub(crate) unsafe fn options_map(list: *mut pg_sys::List) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    // SAFETY: per the contract, `list` is a List of DefElem pointers.
    let elems = unsafe { PgList::<pg_sys::DefElem>::from_pg(list) };
    for def in elems.iter_ptr() {
        // SAFETY: catalog DefElems have a NUL-terminated name and a string value.
        let (name, value) = unsafe {
            (
                CStr::from_ptr((*def).defname),
                CStr::from_ptr(pg_sys::defGetString(def)),
            )
        };
        let name = name
            .to_str()
            .map_err(|_| LambdaFdwError::OptionNotUtf8(None))?;
        let value = value
            .to_str()
            .map_err(|_| LambdaFdwError::OptionNotUtf8(Some(name.to_string())))?;
        out.insert(name.to_string(), value.to_string());
    }
    Ok(out)
}

fn mapping_exists(user: Oid, server: Oid) -> bool {
    // SAFETY: a syscache lookup with two OID keys; the tuple is released at once.
    unsafe {
        let tuple = pg_sys::SearchSysCache2(
            pg_sys::SysCacheIdentifier::USERMAPPINGUSERSERVER as _,
            user.into(),
            server.into(),
        );
        if tuple.is_null() {
            false
        } else {
            pg_sys::ReleaseSysCache(tuple);
            true
        }
    }
}

/// The user mapping that applies to `user` on `server` (theirs, else the
/// PUBLIC one): its OID and options; `None` when there is neither.
pub(crate) fn user_mapping(
    user: Oid,
    server: Oid,
) -> Result<Option<(Oid, HashMap<String, String>)>> {
    if !mapping_exists(user, server) && !mapping_exists(Oid::INVALID, server) {
        return Ok(None);
    }
    // SAFETY: a mapping exists (checked above), so GetUserMapping returns a
    // valid palloc'd struct whose options list we read before returning.
    unsafe {
        let um = pg_sys::GetUserMapping(user, server);
        Ok(Some(((*um).umid, options_map((*um).options)?)))
    }
}

/// Name and type of every live column of a relation, in order.
pub(crate) fn relation_columns(relid: Oid) -> Vec<(String, Oid)> {
    // SAFETY: the planner holds at least AccessShareLock on a relation it plans
    // a scan of; taking it again is cheap and makes the open safe regardless.
    let rel = unsafe { PgRelation::with_lock(relid, pg_sys::AccessShareLock as _) };
    let columns = rel
        .tuple_desc()
        .iter()
        .filter(|a| !a.is_dropped())
        .map(|a| (a.name().to_string(), a.type_oid().value()))
        .collect();
    columns
}

/// A lambda_fdw foreign server.
#[derive(Clone, Debug)]
pub(crate) struct ServerRef {
    pub oid: Oid,
    pub name: String,
}

/// The lambda_fdw servers whose `region` option is `region` and whose owner
/// is a superuser, by name: the servers `aws_lambda.invoke` and
/// `lambda_fdw.enqueue` may route through. Read with a plain scan of
/// pg_foreign_server and syscache lookups, no SQL, so nothing resolves
/// through the caller's search_path (operators included).
pub(crate) fn superuser_servers_for_region(region: &str) -> Result<Vec<ServerRef>> {
    // SAFETY: a name lookup with missing_ok; no wrapper yet gives InvalidOid.
    let fdw = unsafe { pg_sys::get_foreign_data_wrapper_oid(c"lambda_fdw".as_ptr(), true) };
    if fdw == Oid::INVALID {
        return Ok(Vec::new());
    }
    let mut candidates = Vec::new();
    // SAFETY: inside the caller's transaction, a scan of the catalog
    // pg_foreign_server, opened, scanned and closed here; each tuple is a
    // pg_foreign_server row while the scan is on it, and its fixed-size
    // fields are read before the next one.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(pg_sys::ForeignServerRelationId, lock);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_foreign_server>(tuple);
            if (*form).srvfdw == fdw && pg_sys::superuser_arg((*form).srvowner) {
                candidates.push((*form).oid);
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, lock);
    }
    let mut out = Vec::new();
    for oid in candidates {
        let (server, options) = server(oid)?;
        if options.get("region").map(String::as_str) == Some(region) {
            out.push(server);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether the catalog row `oid` exists in syscache `cache` (a role, a
/// server, a foreign table, a user mapping).
pub(crate) fn exists(cache: pg_sys::SysCacheIdentifier::Type, oid: Oid) -> bool {
    // SAFETY: a syscache existence probe with one OID key.
    unsafe {
        pg_sys::SearchSysCacheExists(
            cache as i32,
            oid.into(),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        )
    }
}

/// Whether `role` is a superuser (an OID of no role is not).
pub(crate) fn is_superuser(role: Oid) -> bool {
    // SAFETY: a syscache lookup of the role; a missing role is false.
    unsafe { pg_sys::superuser_arg(role) }
}

/// Whether `role` has USAGE on the server.
pub(crate) fn has_server_usage(server: Oid, role: Oid) -> bool {
    // SAFETY: an ACL lookup for a server OID and a role OID.
    #[cfg(feature = "pg15")]
    let result =
        unsafe { pg_sys::pg_foreign_server_aclcheck(server, role, pg_sys::ACL_USAGE as _) };
    // PostgreSQL 16 folded the per-catalog ACL checks into object_aclcheck.
    // SAFETY: as above, with the server's catalog named.
    #[cfg(not(feature = "pg15"))]
    let result = unsafe {
        pg_sys::object_aclcheck(
            pg_sys::ForeignServerRelationId,
            server,
            role,
            pg_sys::ACL_USAGE as _,
        )
    };
    result == pg_sys::AclResult::ACLCHECK_OK
}

/// Whether `role` has INSERT on relation `relid`.
pub(crate) fn has_table_insert(relid: Oid, role: Oid) -> bool {
    // SAFETY: an ACL lookup for a relation OID and a role OID.
    let result = unsafe { pg_sys::pg_class_aclcheck(relid, role, pg_sys::ACL_INSERT as _) };
    result == pg_sys::AclResult::ACLCHECK_OK
}

/// Fails unless `user` has USAGE on the server.
pub(crate) fn check_server_usage(server: &ServerRef, user: Oid) -> Result<()> {
    if has_server_usage(server.oid, user) {
        Ok(())
    } else {
        Err(LambdaFdwError::ServerPermission(server.name.clone()))
    }
}

/// Options of a foreign table, and the OID of its server.
pub(crate) fn foreign_table_options(relid: Oid) -> Result<(HashMap<String, String>, Oid)> {
    // SAFETY: GetForeignTable errors out (it does not return NULL) for a
    // relation that is not a foreign table; the options list is read before
    // returning.
    unsafe {
        let ft = pg_sys::GetForeignTable(relid);
        Ok((options_map((*ft).options)?, (*ft).serverid))
    }
}

/// Name and options of a foreign server.
pub(crate) fn server(oid: Oid) -> Result<(ServerRef, HashMap<String, String>)> {
    // SAFETY: GetForeignServer errors out (it does not return NULL) for a
    // missing server; its name and options are read before returning.
    unsafe {
        let s = pg_sys::GetForeignServer(oid);
        let name = CStr::from_ptr((*s).servername)
            .to_string_lossy()
            .into_owned();
        Ok((ServerRef { oid, name }, options_map((*s).options)?))
    }
}

/// Name and options of a foreign server, `None` if it no longer exists.
pub(crate) fn server_if_exists(oid: Oid) -> Result<Option<(ServerRef, HashMap<String, String>)>> {
    // SAFETY: with FSV_MISSING_OK, GetForeignServerExtended returns NULL for
    // a missing server instead of raising an error.
    let exists =
        unsafe { !pg_sys::GetForeignServerExtended(oid, pg_sys::FSV_MISSING_OK as _).is_null() };
    if exists {
        server(oid).map(Some)
    } else {
        Ok(None)
    }
}

/// Options of a foreign server.
pub(crate) fn server_options(oid: Oid) -> Result<HashMap<String, String>> {
    server(oid).map(|(_, options)| options)
}

/// The name of role `role`, or `OID n` for a role that no longer exists.
pub(crate) fn role_name(role: Oid) -> String {
    // SAFETY: a syscache lookup of a role OID; NULL (noerr) for a dropped
    // role, else a NUL-terminated palloc'd name.
    unsafe {
        let name = pg_sys::GetUserNameFromId(role, true);
        if name.is_null() {
            format!("OID {}", role.to_u32())
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}
