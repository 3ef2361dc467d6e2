//! Why the worker could not do something: [`WorkerError`], and
//! [`NotSent`], why a claimed row is failed unsent. Their texts are what the
//! log and a row's `error` column say.

use pgrx::pg_sys::Oid;
use pgrx::spi::SpiError;

use crate::error::LambdaFdwError;
use lambda_fdw_core::CoreError;

/// What went wrong in the worker: a round, a row, or a call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkerError {
    /// An SPI call failed.
    #[error(transparent)]
    Spi(#[from] SpiError),
    /// A PostgreSQL ERROR (or a Rust panic) caught by a transaction or
    /// subtransaction: its message, and its detail if it has one.
    #[error("{}", caught_line(.message, .detail.as_deref()))]
    Caught {
        message: String,
        detail: Option<String>,
    },
    /// The core refused a row's request or its client, or could not start
    /// the runtime.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Resolving a row's route or signing failed.
    #[error(transparent)]
    Route(#[from] LambdaFdwError),
    /// A row no longer checks out.
    #[error(transparent)]
    NotSent(#[from] NotSent),
    /// A claimed row's columns could not be read.
    #[error("the queued invocation could not be read: {0}")]
    Unreadable(Box<WorkerError>),
    /// A panic, by its message.
    #[error("{0}")]
    Panic(String),
    /// A panic while making a row's client.
    #[error("the call could not be prepared inside lambda_fdw: {0}")]
    PreparePanicked(String),
    /// A row of a foreign table that batches whose request, the row alone
    /// in its batch format, is over Lambda's limit.
    #[error("this invocation's batch request is {bytes} bytes with the row alone, more than the {limit} bytes Lambda accepts for {invocation_type} invocations; it is not sent")]
    BatchRowTooLarge {
        bytes: usize,
        limit: usize,
        invocation_type: &'static str,
    },
    /// A batch gave a row no outcome (never expected).
    #[error(
        "the batch this invocation was sent in gave it no outcome; it may have been delivered"
    )]
    NoOutcome,
    /// A panic during a call (it may have been sent).
    #[error("the call failed inside lambda_fdw: {0}")]
    CallPanicked(String),
}

/// An error as one line: the message, and the detail if there is one
/// (without its final period).
fn caught_line(message: &str, detail: Option<&str>) -> String {
    match detail {
        Some(detail) if !detail.is_empty() => {
            format!("{message} ({})", detail.trim_end_matches('.'))
        }
        _ => message.to_string(),
    }
}

/// Why a claimed row is failed unsent: its role, route, server or mapping
/// no longer checks out, or differs from what the row recorded. Names are
/// the catalogs' when the row was checked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotSent {
    #[error("the role that queued this invocation (OID {}) no longer exists; it is not sent", .role.to_u32())]
    RoleGone { role: Oid },
    #[error("the foreign server this invocation was queued through (OID {}) no longer exists; it is not sent", .server.to_u32())]
    ServerGone { server: Oid },
    #[error("role \"{role}\" no longer has EXECUTE on lambda_fdw.enqueue; it is not sent")]
    NoExecute { role: String },
    #[error("this invocation was queued through foreign table OID {} but names no server; it is not sent", .table.to_u32())]
    TableWithoutServer { table: Oid },
    #[error("the foreign table this invocation was queued through (OID {}) no longer exists; it is not sent", .table.to_u32())]
    TableGone { table: Oid },
    #[error("role \"{role}\" no longer has INSERT on the foreign table this invocation was queued through (OID {}); it is not sent", .table.to_u32())]
    NoInsert { role: String, table: Oid },
    /// `server` as `signing::server_label` names it.
    #[error("the foreign table this invocation was queued through is no longer on {server}; it is not sent")]
    TableMoved { server: String },
    #[error("this invocation was queued through {server}, which no longer routes region {region} (only a lambda_fdw server owned by a superuser does); it is not sent")]
    Unrouted { server: String, region: String },
    #[error("this invocation was queued through {server}, but region {region} routes through server \"{now}\" now; it is not sent")]
    Rerouted {
        server: String,
        region: String,
        now: String,
    },
    #[error("the user mapping this invocation was queued with no longer exists on server {server}; it is not sent with other credentials")]
    MappingGone { server: String },
    #[error("the user mapping this invocation was queued with no longer applies to role {role} on server {server}; it is not sent with other credentials")]
    MappingNoLongerApplies { role: String, server: String },
    #[error("this invocation was queued without a user mapping on server {server}, and one applies to role {role} now; it is not sent with other credentials")]
    MappingNowApplies { role: String, server: String },
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn a_caught_error_is_one_line() {
        let caught = |message: &str, detail: Option<&str>| WorkerError::Caught {
            message: message.into(),
            detail: detail.map(str::to_string),
        };
        assert_eq!(
            caught("division by zero", None).to_string(),
            "division by zero"
        );
        assert_eq!(caught("m", Some("")).to_string(), "m");
        assert_eq!(
            caught("m", Some("Key (id)=(1) exists.")).to_string(),
            "m (Key (id)=(1) exists)"
        );
        assert_eq!(
            WorkerError::Unreadable(Box::new(WorkerError::Panic("bad".into()))).to_string(),
            "the queued invocation could not be read: bad"
        );
    }
}
