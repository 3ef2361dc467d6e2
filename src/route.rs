//! Which client settings a call uses, cached per backend, for both surfaces:
//! an `aws_lambda.invoke` call by region, a foreign-table scan by its server
//! (and the table's own options with it).
//!
//! Resolving a region to its lambda_fdw server reads the catalogs (a query
//! over pg_foreign_server), and both surfaces read and parse the caller's
//! user mapping. That costs more than the rest of a call's own work, and
//! changes rarely, so the answer is kept per (region or server, user,
//! settings) and dropped whenever a foreign table, foreign server, user
//! mapping or wrapper changes (a syscache invalidation callback). USAGE on
//! the server is checked on every call.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_int;
use std::rc::Rc;

use pgrx::pg_sys::{self, Datum, Oid};

use crate::catalog::{
    self, check_server_usage, lambda_servers_for_region, server_options, user_mapping_options,
    ServerRef,
};
use crate::config::client_settings;
use crate::core::ClientSettings;
use crate::error::{LambdaFdwError, Result};
use crate::fdw::options::{ServerOptions, TableOptions, UserMappingOptions};
use crate::guc;

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

#[derive(Clone)]
enum Route {
    /// No server for the region: settings and the default chain.
    Direct(ClientSettings),
    /// The region's server and the caller's mapping on it.
    Server(ServerRef, ClientSettings),
    /// Several servers claim the region.
    Ambiguous(String),
}

/// A foreign table's options, and its server's.
pub struct TableRoute {
    pub table: TableOptions,
    pub server: ServerRef,
    pub server_options: ServerOptions,
}

thread_local! {
    static ROUTES: RefCell<HashMap<RouteKey, Route>> = RefCell::new(HashMap::new());
    static TABLES: RefCell<HashMap<Oid, Rc<TableRoute>>> = RefCell::new(HashMap::new());
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

type SyscacheCallback = unsafe extern "C-unwind" fn(arg: Datum, cacheid: c_int, hashvalue: u32);

// inval.h is not in pgrx's bindings; called through pg_guard_ffi_boundary.
unsafe extern "C-unwind" {
    fn CacheRegisterSyscacheCallback(cacheid: c_int, func: SyscacheCallback, arg: Datum);
}

// No pg_guard: it only clears a map; PostgreSQL calls it during cache
// invalidation, where raising an error is not allowed.
unsafe extern "C-unwind" fn forget_routes(_arg: Datum, _cacheid: c_int, _hash: u32) {
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

/// The route through `server` (whose parsed options are `options`), with
/// the current user's mapping on it.
fn server_route(server: &ServerRef, options: &ServerOptions) -> Result<Route> {
    let mapping = UserMappingOptions::parse(&user_mapping_options(server.oid)?)?;
    Ok(Route::Server(
        server.clone(),
        client_settings(&options.region, Some(options), Some(&mapping)),
    ))
}

fn resolve(region: &str) -> Result<Route> {
    let servers = lambda_servers_for_region(region)?;
    Ok(match servers.as_slice() {
        [] => Route::Direct(client_settings(region, None, None)),
        [server] => server_route(server, &ServerOptions::parse(&server_options(server.oid)?)?)?,
        many => Route::Ambiguous(
            many.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
    })
}

fn key(target: Target) -> RouteKey {
    RouteKey {
        target,
        // SAFETY: GetUserId has no preconditions inside a transaction.
        user: unsafe { pg_sys::GetUserId() },
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
    let route = resolve()?;
    ROUTES.with(|r| r.borrow_mut().insert(key, route.clone()));
    Ok(route)
}

fn settings_of(route: Route, region: &str) -> Result<ClientSettings> {
    match route {
        Route::Direct(settings) => Ok(settings),
        Route::Server(server, settings) => {
            check_server_usage(&server)?;
            Ok(settings)
        }
        Route::Ambiguous(servers) => Err(LambdaFdwError::AmbiguousRegion {
            region: region.to_string(),
            servers,
        }),
    }
}

/// The lambda_fdw server a call to `region` by the current user goes
/// through (`None`: no server has the region, so the default chain), and
/// the call's settings; checks USAGE on the server.
pub fn server_for_region(region: &str) -> Result<(Option<ServerRef>, ClientSettings)> {
    let route = cached(key(Target::Region(region.to_string())), || resolve(region))?;
    let server = match &route {
        Route::Server(server, _) => Some(server.clone()),
        _ => None,
    };
    Ok((server, settings_of(route, region)?))
}

/// The client settings of a scan through `server` (whose parsed options are
/// `options`) by the current user; checks USAGE on the server on every call.
pub fn settings_for_server(server: &ServerRef, options: &ServerOptions) -> Result<ClientSettings> {
    let route = cached(key(Target::Server(server.oid)), || {
        server_route(server, options)
    })?;
    settings_of(route, &options.region)
}

/// The options of foreign table `relid` and of its server, parsed.
pub fn table_route(relid: Oid) -> Result<Rc<TableRoute>> {
    register_callbacks();
    if let Some(route) = TABLES.with(|t| t.borrow().get(&relid).cloned()) {
        return Ok(route);
    }
    let (table, server) = catalog::foreign_table_options(relid)?;
    let table = TableOptions::parse(&table)?;
    let (server, options) = catalog::server(server)?;
    let route = Rc::new(TableRoute {
        table,
        server,
        server_options: ServerOptions::parse(&options)?,
    });
    TABLES.with(|t| t.borrow_mut().insert(relid, route.clone()));
    Ok(route)
}
