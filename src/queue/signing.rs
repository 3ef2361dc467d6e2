//! The per-row re-check: what each claimed row is sent as and signed with,
//! resolved again inside the claim's transaction, as the role that queued
//! it, as the path that queued it resolves a call (`route::region_route`
//! for `lambda_fdw.enqueue`, `route::table_signing` for INSERT into a
//! foreign table). A row whose role, route, server or mapping no longer
//! checks out, or differs from what the row recorded, is failed unsent
//! ([`NotSent`]). [`claim_ready`] claims rows and makes each [`Ready`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use crate::pg::{catalog, origin};
use crate::settings::options::ServerOptions;
use crate::settings::route;
use lambda_fdw_core::batch::BatchFormat;
use lambda_fdw_core::settings::DEFAULT_MAX_CONCURRENCY;
use lambda_fdw_core::throttle;
use lambda_fdw_core::{parse_function_name, ClientSettings, InvocationType, InvokeRequest};

use super::error::{NotSent, WorkerError};
use super::outcome::Owner;
use super::sql::{self, Claimed};
use super::transaction::in_subtransaction;

/// What signs a row: the settings, and its server (OID, name); and, for
/// a row queued through a foreign table that batches, how.
#[derive(Clone)]
struct Signing {
    settings: ClientSettings,
    /// The calls to its function the worker may have in flight: the
    /// foreign table's `max_concurrency`, else its server's, else the
    /// default (see [`function_limit`]).
    max_concurrency: usize,
    server: Option<(Oid, String)>,
    batching: Option<Rc<Batching>>,
}

/// How the rows of a foreign table that batches (its `batch_size` and
/// `batch_format`, as its options say when the rows are sent) go.
#[derive(Clone, Debug)]
pub(crate) struct Batching {
    pub(crate) size: usize,
    pub(crate) format: BatchFormat,
    /// The foreign table's schema-qualified name (the batch's `function`).
    pub(crate) table: String,
    /// The role that queued the rows (the batch's `user`).
    pub(crate) user: String,
}

/// How a server is named in errors: its name, or its OID once it is gone.
fn server_label(server: Option<Oid>) -> String {
    match server {
        None => "no server".to_string(),
        Some(oid) => match catalog::server_if_exists(oid) {
            Ok(Some((s, _))) => format!("server \"{}\"", s.name),
            _ => format!("server OID {}", oid.to_u32()),
        },
    }
}

/// Whether `role` may execute the extension's `lambda_fdw.enqueue`: 0.6.0's,
/// or the one before it in a database whose SQL predates 0.6.0 (the names,
/// argument types and privilege function all schema-qualified; run with the
/// round's pinned search_path; schema lambda_fdw is the extension's, where
/// no other role may create).
fn may_enqueue(role: Oid) -> Result<bool, WorkerError> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.has_function_privilege($1::pg_catalog.oid, COALESCE( \
           pg_catalog.to_regprocedure('lambda_fdw.enqueue(pg_catalog.text, pg_catalog.jsonb, \
             pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.jsonb, \
             pg_catalog.regproc, pg_catalog.text, pg_catalog.timestamptz)'), \
           pg_catalog.to_regprocedure('lambda_fdw.enqueue(pg_catalog.text, pg_catalog.jsonb, \
             pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.jsonb)'))::pg_catalog.oid, \
           'EXECUTE')",
        &[role.into()],
    )?
    .unwrap_or(false))
}

/// What signs a claimed row now, resolved again as the path that queued it
/// resolves a call, as the role that queued it; or why it is not sent.
fn signing_of(c: &Claimed) -> Result<Signing, WorkerError> {
    if !catalog::exists(pg_sys::SysCacheIdentifier::AUTHOID, c.queued_by) {
        return Err(NotSent::RoleGone { role: c.queued_by }.into());
    }
    if let Some(server) = c.server {
        if !catalog::exists(pg_sys::SysCacheIdentifier::FOREIGNSERVEROID, server) {
            return Err(NotSent::ServerGone { server }.into());
        }
    }
    let mut batching = None;
    let mut table_limit = None;
    let signed = match c.foreign_table {
        None => {
            // Who may call: EXECUTE on enqueue, still (revoked from PUBLIC
            // since 0.3.0; rows that 0.2.0 let anyone queue end here too).
            if !may_enqueue(c.queued_by)? {
                return Err(NotSent::NoExecute {
                    role: catalog::role_name(c.queued_by),
                }
                .into());
            }
            route::region_route(&c.region, c.queued_by)?
        }
        Some(table) => {
            let Some(server) = c.server else {
                return Err(NotSent::TableWithoutServer { table }.into());
            };
            if !catalog::exists(pg_sys::SysCacheIdentifier::FOREIGNTABLEREL, table) {
                return Err(NotSent::TableGone { table }.into());
            }
            // Who may call: INSERT on the foreign table, still.
            if !catalog::has_table_insert(table, c.queued_by) {
                return Err(NotSent::NoInsert {
                    role: catalog::role_name(c.queued_by),
                    table,
                }
                .into());
            }
            let table_route = route::table_route(table)?;
            table_limit = table_route.table.max_concurrency;
            batching = table_route.table.batching().map(|format| {
                Rc::new(Batching {
                    size: table_route.table.batch_size,
                    format,
                    table: origin::qualified_name(table),
                    user: catalog::role_name(c.queued_by),
                })
            });
            if table_route.server.oid != server {
                return Err(NotSent::TableMoved {
                    server: server_label(Some(server)),
                }
                .into());
            }
            route::table_signing(
                &table_route.server,
                &table_route.server_options,
                c.queued_by,
            )?
        }
    };
    let now = signed.server.as_ref().map(|s| s.oid);
    if now != c.server {
        return Err(match (c.server, &signed.server) {
            (Some(_), None) => NotSent::Unrouted {
                server: server_label(c.server),
                region: c.region.clone(),
            },
            (_, Some(s)) => NotSent::Rerouted {
                server: server_label(c.server),
                region: c.region.clone(),
                now: s.name.clone(),
            },
            (None, None) => unreachable!("the servers differ"),
        }
        .into());
    }
    if signed.mapping != c.user_mapping {
        let server = signed
            .server
            .as_ref()
            .map_or_else(String::new, |s| s.name.clone());
        return Err(match c.user_mapping {
            Some(umid) if !catalog::exists(pg_sys::SysCacheIdentifier::USERMAPPINGOID, umid) => {
                NotSent::MappingGone { server }
            }
            Some(_) => NotSent::MappingNoLongerApplies {
                role: catalog::role_name(c.queued_by),
                server,
            },
            None => NotSent::MappingNowApplies {
                role: catalog::role_name(c.queued_by),
                server,
            },
        }
        .into());
    }
    let mut settings = signed.settings;
    // The queue schedules its own retries, in the row.
    settings.max_attempts = 1;
    let server_limit = match &signed.server {
        // The route just parsed the same options.
        Some(s) => ServerOptions::parse(&catalog::server_options(s.oid)?)
            .ok()
            .and_then(|o| o.max_concurrency),
        None => None,
    };
    Ok(Signing {
        settings,
        max_concurrency: table_limit
            .or(server_limit)
            .unwrap_or(DEFAULT_MAX_CONCURRENCY),
        server: signed.server.map(|s| (s.oid, s.name)),
        batching,
    })
}

thread_local! {
    /// Each function's limit, as the last round's signings found it, keyed
    /// by `throttle::key` (region and function name).
    static LIMITS: RefCell<HashMap<u64, usize>> = RefCell::new(HashMap::new());
}

fn remember_limit(region: &str, function_name: &str, limit: usize) {
    LIMITS.with(|l| {
        let mut l = l.borrow_mut();
        let kept = l
            .entry(throttle::key(region, function_name))
            .or_insert(limit);
        *kept = (*kept).min(limit);
    });
}

/// How many calls to `function_name` in `region` the worker may have in
/// flight, as the signings of the rows claimed for it said (the lowest of
/// them when they differ); `None` for a function of no claimed row.
pub(crate) fn function_limit(region: &str, function_name: &str) -> Option<usize> {
    LIMITS.with(|l| {
        l.borrow()
            .get(&throttle::key(region, function_name))
            .copied()
    })
}

/// The request of a claimed row, as it will be sent, or why it cannot be.
fn request_of(c: &Claimed) -> Result<InvokeRequest, WorkerError> {
    let target = parse_function_name(&c.function_name)
        .and_then(|f| f.resolve(Some(&c.region), c.qualifier.as_deref(), None))?;
    let invocation_type = InvocationType::parse(&c.invocation_type)?;
    Ok(InvokeRequest::queued(
        target,
        invocation_type,
        c.context.as_deref(),
        c.id,
        Bytes::from(c.payload.clone()),
    )?)
}

/// A claimed row made ready to send (inside the claim's transaction, since
/// it reads the catalogs), or why it cannot be sent.
pub(crate) struct Ready {
    pub(crate) id: i64,
    pub(crate) attempts: i32,
    pub(crate) max_attempts: i32,
    /// Shared by the rows of one signing that failed its check.
    pub(crate) prepared: Result<(InvokeRequest, ClientSettings, Owner), Rc<WorkerError>>,
    /// For a row of a foreign table that batches: how, and what the rows
    /// of one request share.
    pub(crate) batch: Option<Batchable>,
}

/// A row that may go in a batch request.
pub(crate) struct Batchable {
    pub(crate) batching: Rc<Batching>,
    /// What the rows of one request share: the foreign table, role,
    /// server, mapping, region, function name, qualifier, invocation type
    /// and context.
    pub(crate) key: BatchKey,
}

/// See [`Batchable::key`].
pub(crate) type BatchKey = (
    Option<Oid>,
    Oid,
    Option<Oid>,
    Option<Oid>,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
);

impl Batchable {
    /// The user's context the rows share (without the ids).
    pub(crate) fn context(&self) -> Option<&str> {
        self.key.8.as_deref()
    }
}

/// Who signs a row: role, server, mapping, region, foreign table.
type SigningKey = (Oid, Option<Oid>, Option<Oid>, String, Option<Oid>);

/// Claims up to `limit` due rows (see `sql::claim`) and makes each ready.
pub(crate) fn claim_ready(
    limit: usize,
    foreign_table_column: bool,
    ordered: bool,
) -> Result<Vec<Ready>, WorkerError> {
    // Rows of one role, route and mapping share their signing: checked once
    // a round, in a subtransaction, so that a catalog error fails those
    // rows, not the round.
    let mut signings: HashMap<SigningKey, Result<Signing, Rc<WorkerError>>> = HashMap::new();
    LIMITS.with(|l| l.borrow_mut().clear());
    Ok(sql::claim(limit, foreign_table_column, ordered)?
        .into_iter()
        .map(|c| {
            let c = match c {
                Ok(c) => c,
                Err((id, e)) => {
                    return Ready {
                        id,
                        attempts: 0,
                        max_attempts: 0,
                        prepared: Err(Rc::new(e)),
                        batch: None,
                    }
                }
            };
            let key = (
                c.queued_by,
                c.server,
                c.user_mapping,
                c.region.clone(),
                c.foreign_table,
            );
            let signed = signings
                .entry(key)
                .or_insert_with(|| {
                    in_subtransaction(|| signing_of(&c))
                        .and_then(|r| r)
                        .map_err(Rc::new)
                })
                .clone();
            let batch = signed
                .as_ref()
                .ok()
                .and_then(|s| s.batching.clone())
                .map(|batching| Batchable {
                    batching,
                    key: (
                        c.foreign_table,
                        c.queued_by,
                        c.server,
                        c.user_mapping,
                        c.region.clone(),
                        c.function_name.clone(),
                        c.qualifier.clone(),
                        c.invocation_type.clone(),
                        c.context.clone(),
                    ),
                });
            Ready {
                id: c.id,
                attempts: c.attempts,
                max_attempts: c.max_attempts,
                batch,
                prepared: request_of(&c).map_err(Rc::new).and_then(|r| {
                    signed.map(|s| {
                        remember_limit(
                            &s.settings.region,
                            &r.target.function_name,
                            s.max_concurrency,
                        );
                        let owner = Owner {
                            role: c.queued_by,
                            server: s.server,
                        };
                        (r, s.settings, owner)
                    })
                }),
            }
        })
        .collect())
}
