//! Reads from PostgreSQL's catalogs that wrappers does not do for us: the
//! current user's mapping, and a foreign table's columns.

use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::pg_sys::{self, Oid};
use pgrx::{PgList, PgRelation};

use crate::error::{LambdaFdwError, Result};

/// Reads a list of DefElem options into a map.
///
/// # Safety
/// `list` must be NULL or a valid List of DefElem, as catalog option lists are.
pub unsafe fn options_map(list: *mut pg_sys::List) -> Result<HashMap<String, String>> {
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
            .map_err(|_| LambdaFdwError::Catalog("option name is not valid UTF-8".into()))?;
        let value = value.to_str().map_err(|_| {
            LambdaFdwError::Catalog(format!("value of option \"{name}\" is not valid UTF-8"))
        })?;
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

/// Options of the current user's mapping for `server` (or the PUBLIC one);
/// empty when there is none, so that the default AWS chain applies.
pub fn user_mapping_options(server: Oid) -> Result<HashMap<String, String>> {
    // SAFETY: GetUserId has no preconditions inside a transaction.
    user_mapping_options_of(unsafe { pg_sys::GetUserId() }, server)
}

/// Options of `user`'s mapping for `server` (or the PUBLIC one); empty when
/// there is none.
pub fn user_mapping_options_of(user: Oid, server: Oid) -> Result<HashMap<String, String>> {
    if !mapping_exists(user, server) && !mapping_exists(Oid::INVALID, server) {
        return Ok(HashMap::new());
    }
    // SAFETY: a mapping exists (checked above), so GetUserMapping returns a
    // valid palloc'd struct whose options list we read before returning.
    unsafe {
        let um = pg_sys::GetUserMapping(user, server);
        options_map((*um).options)
    }
}

/// The OID of the mapping that applies to `user` on `server` (theirs, or
/// the PUBLIC one), if any.
pub fn user_mapping_id(user: Oid, server: Oid) -> Option<Oid> {
    if !mapping_exists(user, server) && !mapping_exists(Oid::INVALID, server) {
        return None;
    }
    // SAFETY: a mapping exists (checked above); GetUserMapping returns it.
    Some(unsafe { (*pg_sys::GetUserMapping(user, server)).umid })
}

/// Name and type of every live column of a relation, in order.
pub fn relation_columns(relid: Oid) -> Vec<(String, Oid)> {
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
pub struct ServerRef {
    pub oid: Oid,
    pub name: String,
}

/// The lambda_fdw servers whose `region` option is `region`, by name.
pub fn lambda_servers_for_region(region: &str) -> Result<Vec<ServerRef>> {
    let spi_err = |e: pgrx::spi::SpiError| {
        LambdaFdwError::Catalog(format!("could not look up lambda_fdw servers: {e}"))
    };
    pgrx::Spi::connect(|client| {
        let rows = client
            .select(
                "SELECT s.oid, s.srvname::text FROM pg_catalog.pg_foreign_server s \
                 JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw \
                 WHERE w.fdwname = 'lambda_fdw' AND ('region=' || $1) = ANY (s.srvoptions) \
                 ORDER BY s.srvname",
                None,
                &[region.into()],
            )
            .map_err(spi_err)?;
        let mut out = Vec::new();
        for row in rows {
            let oid: Option<Oid> = row.get(1).map_err(spi_err)?;
            let name: Option<String> = row.get(2).map_err(spi_err)?;
            if let (Some(oid), Some(name)) = (oid, name) {
                out.push(ServerRef { oid, name });
            }
        }
        Ok(out)
    })
}

/// Whether `role` has USAGE on the server.
pub fn has_server_usage(server: Oid, role: Oid) -> bool {
    // SAFETY: an ACL lookup for a server OID and a role OID.
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    let result =
        unsafe { pg_sys::pg_foreign_server_aclcheck(server, role, pg_sys::ACL_USAGE as _) };
    // PostgreSQL 16 folded the per-catalog ACL checks into object_aclcheck.
    // SAFETY: as above, with the server's catalog named.
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
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

/// Fails unless the current user has USAGE on the server.
pub fn check_server_usage(server: &ServerRef) -> Result<()> {
    // SAFETY: GetUserId has no preconditions inside a transaction.
    if has_server_usage(server.oid, unsafe { pg_sys::GetUserId() }) {
        Ok(())
    } else {
        Err(LambdaFdwError::ServerPermission(server.name.clone()))
    }
}

/// Options of a foreign table, and the OID of its server.
pub fn foreign_table_options(relid: Oid) -> Result<(HashMap<String, String>, Oid)> {
    // SAFETY: GetForeignTable errors out (it does not return NULL) for a
    // relation that is not a foreign table; the options list is read before
    // returning.
    unsafe {
        let ft = pg_sys::GetForeignTable(relid);
        Ok((options_map((*ft).options)?, (*ft).serverid))
    }
}

/// Name and options of a foreign server.
pub fn server(oid: Oid) -> Result<(ServerRef, HashMap<String, String>)> {
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
pub fn server_if_exists(oid: Oid) -> Result<Option<(ServerRef, HashMap<String, String>)>> {
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
pub fn server_options(oid: Oid) -> Result<HashMap<String, String>> {
    server(oid).map(|(_, options)| options)
}
