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
    let user = unsafe { pg_sys::GetUserId() };
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
