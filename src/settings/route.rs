//! Who may call, through which server, signed with whose identity: the one
//! permission model, for every path (docs/security.md, "The permission model").
//!
//! - [`region_route`]: the RDS surface (`aws_lambda.invoke`,
//!   `lambda_fdw.enqueue`, and the worker sending what enqueue queued). A
//!   region routes through the lambda_fdw server for it that a superuser
//!   owns, so no other role can redirect or break someone else's calls;
//!   the caller's mapping on it, else PUBLIC's, else the server process's
//!   chain. EXECUTE on the function is the gate, as on RDS.
//! - [`table_signing`]: foreign tables (scans, INSERT, IMPORT, and the
//!   worker sending what INSERT queued). USAGE on the server; the role's
//!   mapping, else PUBLIC's, must name credentials unless the role is a
//!   superuser or a superuser set `allow_server_identity` on the server.
//!
//! Resolving reads the catalogs and parses mappings, which costs more than
//! the rest of a call's own work and changes rarely, so the answer is kept
//! per (region or server, user, settings) and dropped whenever a foreign
//! table, server, user mapping, wrapper or role changes (a syscache
//! invalidation callback). USAGE on a table's server is checked on every
//! call.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_int;
use std::rc::Rc;

use pgrx::pg_sys::{self, Datum, Oid};

use crate::error::{LambdaFdwError, Result};
use crate::pg::catalog::{
    self, check_server_usage, is_superuser, superuser_servers_for_region, ServerRef,
};
use crate::settings::client::client_settings;
use crate::settings::guc;
use crate::settings::options::{ServerOptions, TableOptions, UserMappingOptions};
use lambda_fdw_core::ClientSettings;

#[derive(Clone, PartialEq, Eq, Hash)]
enum Target {
    Region(String),
    Server(Oid),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct RouteKey {
    target: Target,
    user: Oid,
    connect_timeout_ms: u64,
    request_timeout_ms: u64,
    endpoint_override: Option<String>,
}

/// What signs a call: the client settings, the server they come from
/// (`None`: no route server, so the settings and the server process's AWS
/// chain), and the user mapping whose options were used, if any.
#[derive(Clone)]
pub(crate) struct Signed {
    pub settings: ClientSettings,
    pub server: Option<ServerRef>,
    pub mapping: Option<Oid>,
}

/// A resolved route: signed, or why a call through it is refused.
#[derive(Clone)]
enum Route {
    Signed(Signed),
    /// Several superuser-owned servers claim the region.
    Ambiguous(String),
    /// A foreign table's server gives this role no credentials of its own.
    NoCredentials {
        role: String,
        server: String,
    },
}

/// A foreign table's options, and its server's.
pub(crate) struct TableRoute {
    pub table: TableOptions,
    pub server: ServerRef,
    pub server_options: ServerOptions,
}

thread_local! {
    static ROUTES: RefCell<HashMap<RouteKey, Route>> = RefCell::new(HashMap::new());
    static TABLES: RefCell<HashMap<Oid, Rc<TableRoute>>> = RefCell::new(HashMap::new());
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// Bumped by every invalidation: an answer resolved while one arrived
    /// (resolving reads catalogs, which accepts invalidations) may be stale,
    /// and is used once but not cached.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

type SyscacheCallback = unsafe extern "C-unwind" fn(arg: Datum, cacheid: c_int, hashvalue: u32);

// inval.h is not in pgrx's bindings; called through pg_guard_ffi_boundary.
unsafe extern "C-unwind" {
    fn CacheRegisterSyscacheCallback(cacheid: c_int, func: SyscacheCallback, arg: Datum);
}

// No pg_guard: it only clears a map; PostgreSQL calls it during cache
// invalidation, where raising an error is not allowed.
unsafe extern "C-unwind" fn forget_routes(_arg: Datum, _cacheid: c_int, _hash: u32) {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    ROUTES.with(|r| {
        if let Ok(mut map) = r.try_borrow_mut() {
            map.clear();
        }
    });
    TABLES.with(|t| {
        if let Ok(mut map) = t.try_borrow_mut() {
            map.clear();
        }
    });
}

/// Registers the invalidation callbacks, once per backend.
fn register_callbacks() {
    if CALLBACKS_REGISTERED.with(Cell::get) {
        return;
    }
    for cache in [
        pg_sys::SysCacheIdentifier::FOREIGNTABLEREL,
        pg_sys::SysCacheIdentifier::FOREIGNSERVEROID,
        pg_sys::SysCacheIdentifier::USERMAPPINGOID,
        pg_sys::SysCacheIdentifier::FOREIGNDATAWRAPPEROID,
        // A role that gains or loses superuser changes which servers route
        // and who may sign with the server process's identity.
        pg_sys::SysCacheIdentifier::AUTHOID,
    ] {
        // SAFETY: registers a plain function for a valid syscache id; the
        // callback lives as long as the backend (it is a static function).
        unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| {
                CacheRegisterSyscacheCallback(cache as c_int, forget_routes, Datum::from(0))
            })
        };
    }
    CALLBACKS_REGISTERED.with(|c| c.set(true));
}

/// A mapping's OID and parsed options.
type Mapping = Option<(Oid, UserMappingOptions)>;

fn parsed_mapping(user: Oid, server: Oid) -> Result<Mapping> {
    Ok(match catalog::user_mapping(user, server)? {
        Some((id, map)) => Some((id, UserMappingOptions::parse(&map)?)),
        None => None,
    })
}

/// The route of the RDS surface through a region's server: the user's
/// mapping on it, else PUBLIC's, else (no credentials named) the server
/// process's chain, which a superuser chose by owning the route. A mapping
/// of the user's own that names no credentials does not hide PUBLIC's (a
/// role could otherwise make one to leave the keys PUBLIC's gives it).
fn region_server_route(server: &ServerRef, user: Oid) -> Result<Route> {
    let options = ServerOptions::parse(&catalog::server_options(server.oid)?)?;
    let mut mapping = parsed_mapping(user, server.oid)?;
    let names_none = mapping
        .as_ref()
        .is_some_and(|(_, m)| !m.names_credentials());
    if names_none && !is_superuser(user) {
        if let Some(public) = parsed_mapping(Oid::INVALID, server.oid)? {
            mapping = Some(public);
        }
    }
    let (mapping, parsed) = match mapping {
        Some((id, m)) => (Some(id), Some(m)),
        None => (None, None),
    };
    Ok(Route::Signed(Signed {
        settings: client_settings(&options.region, Some(&options), parsed.as_ref()),
        server: Some(server.clone()),
        mapping,
    }))
}

fn resolve_region(region: &str, user: Oid) -> Result<Route> {
    let servers = superuser_servers_for_region(region)?;
    match servers.as_slice() {
        [] => Ok(Route::Signed(Signed {
            settings: client_settings(region, None, None),
            server: None,
            mapping: None,
        })),
        [server] => region_server_route(server, user),
        many => Ok(Route::Ambiguous(
            many.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// A foreign table's route through `server`: the user's mapping, else
/// PUBLIC's, must name credentials, unless the user is a superuser or a
/// superuser set `allow_server_identity` on the server (postgres_fdw's
/// password rule).
fn resolve_table(server: &ServerRef, options: &ServerOptions, user: Oid) -> Result<Route> {
    let mapping = catalog::user_mapping(user, server.oid)?;
    let parsed = match &mapping {
        Some((_, map)) => Some(UserMappingOptions::parse(map)?),
        None => None,
    };
    let named = parsed
        .as_ref()
        .is_some_and(UserMappingOptions::names_credentials);
    if !named && !options.allow_server_identity && !is_superuser(user) {
        return Ok(Route::NoCredentials {
            role: catalog::role_name(user),
            server: server.name.clone(),
        });
    }
    Ok(Route::Signed(Signed {
        settings: client_settings(&options.region, Some(options), parsed.as_ref()),
        server: Some(server.clone()),
        mapping: mapping.map(|(id, _)| id),
    }))
}

fn key(target: Target, user: Oid) -> RouteKey {
    RouteKey {
        target,
        user,
        connect_timeout_ms: guc::connect_timeout_ms(),
        request_timeout_ms: guc::request_timeout_ms(),
        endpoint_override: guc::endpoint_override(),
    }
}

/// The cached route for `key`, or the one `resolve` finds (then cached).
fn cached(key: RouteKey, resolve: impl FnOnce() -> Result<Route>) -> Result<Route> {
    register_callbacks();
    if let Some(route) = ROUTES.with(|r| r.borrow().get(&key).cloned()) {
        return Ok(route);
    }
    let before = GENERATION.with(Cell::get);
    let route = resolve()?;
    if GENERATION.with(Cell::get) == before {
        ROUTES.with(|r| r.borrow_mut().insert(key, route.clone()));
    }
    Ok(route)
}

fn signed(route: Route, region: &str) -> Result<Signed> {
    match route {
        Route::Signed(s) => Ok(s),
        Route::Ambiguous(servers) => Err(LambdaFdwError::AmbiguousRegion {
            region: region.to_string(),
            servers,
        }),
        Route::NoCredentials { role, server } => {
            Err(LambdaFdwError::NoCredentials { role, server })
        }
    }
}

/// The RDS surface's route for `region` as `user`: `aws_lambda.invoke`,
/// `lambda_fdw.enqueue`, and the queue worker for what enqueue queued.
/// Only servers a superuser owns route; EXECUTE on the function is the
/// gate, as on RDS, so no USAGE on the server is needed.
pub(crate) fn region_route(region: &str, user: Oid) -> Result<Signed> {
    let route = cached(key(Target::Region(region.to_string()), user), || {
        resolve_region(region, user)
    })?;
    signed(route, region)
}

/// A foreign table's signing through `server` (whose parsed options are
/// `options`) as `user`: scans, INSERT, IMPORT FOREIGN SCHEMA and the queue
/// worker for what INSERT queued. Checks USAGE on the server on every call.
pub(crate) fn table_signing(
    server: &ServerRef,
    options: &ServerOptions,
    user: Oid,
) -> Result<Signed> {
    check_server_usage(server, user)?;
    let route = cached(key(Target::Server(server.oid), user), || {
        resolve_table(server, options, user)
    })?;
    signed(route, &options.region)
}

/// The options of foreign table `relid` and of its server, parsed.
pub(crate) fn table_route(relid: Oid) -> Result<Rc<TableRoute>> {
    register_callbacks();
    if let Some(route) = TABLES.with(|t| t.borrow().get(&relid).cloned()) {
        return Ok(route);
    }
    let before = GENERATION.with(Cell::get);
    let (table, server) = catalog::foreign_table_options(relid)?;
    let table = TableOptions::parse(&table)?;
    let (server, options) = catalog::server(server)?;
    let route = Rc::new(TableRoute {
        table,
        server,
        server_options: ServerOptions::parse(&options)?,
    });
    if GENERATION.with(Cell::get) == before {
        TABLES.with(|t| t.borrow_mut().insert(relid, route.clone()));
    }
    Ok(route)
}
