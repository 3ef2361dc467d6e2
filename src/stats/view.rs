//! The SQL-callable functions of sql/stats.sql:
//! `lambda_fdw.stat_invocations_internal()` (behind the view
//! `lambda_fdw.stat_invocations`) and `lambda_fdw.stat_invocations_reset()`.

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use super::entry::{read_str, Data, Key};
use super::shmem;
use crate::error::{raise, LambdaFdwError};

fn not_preloaded() -> ! {
    raise(LambdaFdwError::StatsNotPreloaded)
}

fn timestamp(t: pg_sys::TimestampTz) -> Option<Datum> {
    (t != 0).then_some(Datum::from(t))
}

/// The columns of one entry, in `lambda_fdw.stat_invocations_internal`'s
/// order. Columns are only ever added at the end, so that a library newer
/// than the extension's SQL fills the columns that SQL declares: the first
/// 22 before 0.5.0 (`rows` came then).
const COLUMNS: usize = 23;

fn row(key: &Key, data: &Data) -> [Option<Datum>; COLUMNS] {
    let c = &data.counters;
    let has_server = key.serverid != pg_sys::InvalidOid;
    let server = has_server.then(|| read_str(&data.server));
    let last_error = Some(read_str(&data.last_error)).filter(|s| !s.is_empty());
    [
        key.dbid.into_datum(),
        key.userid.into_datum(),
        has_server.then_some(key.serverid).into_datum(),
        server.into_datum(),
        read_str(&key.function).into_datum(),
        c.calls.into_datum(),
        c.succeeded.into_datum(),
        c.function_errors.into_datum(),
        c.throttled.into_datum(),
        c.client_errors.into_datum(),
        c.service_errors.into_datum(),
        c.timeouts.into_datum(),
        c.connect_errors.into_datum(),
        c.retries.into_datum(),
        c.total_ms.into_datum(),
        (c.calls > 0).then_some(c.min_ms).into_datum(),
        (c.calls > 0).then_some(c.max_ms).into_datum(),
        c.bytes_sent.into_datum(),
        c.bytes_received.into_datum(),
        last_error.into_datum(),
        timestamp(c.last_error_at),
        timestamp(c.last_call_at),
        c.rows.into_datum(),
    ]
}

static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

#[no_mangle]
pub extern "C" fn pg_finfo_lambda_fdw_stat_invocations() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// `lambda_fdw.stat_invocations_internal()`: the entries the current role
/// may see (its own and its roles', or all with `pg_read_all_stats`).
///
/// # Safety
/// Called by PostgreSQL through the function manager only.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn lambda_fdw_stat_invocations(
    fcinfo: pg_sys::FunctionCallInfo,
) -> Datum {
    let Some(table) = shmem::table() else {
        not_preloaded()
    };
    let entries = table.snapshot();
    // SAFETY: a set-returning function declared with the OUT columns of the
    // types `row` makes, all of them or (SQL older than the library) the
    // first ones; InitMaterializedSRF sets up the tuplestore and descriptor
    // in the caller's memory, and tuplestore_putvalues copies the
    // descriptor's number of values from arrays at least that long.
    unsafe {
        let user = pg_sys::GetUserId();
        let sees_all = pg_sys::superuser()
            || pg_sys::has_privs_of_role(user, Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS));
        pg_sys::InitMaterializedSRF(fcinfo, 0);
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        if (*(*rsinfo).setDesc).natts as usize > COLUMNS {
            raise(LambdaFdwError::Internal(
                "stat_invocations_internal declares more columns than this library fills",
            ));
        }
        for (key, data) in &entries {
            if !sees_all && !pg_sys::has_privs_of_role(user, key.userid) {
                continue;
            }
            let values = row(key, data);
            let mut datums = values.map(|v| v.unwrap_or(Datum::from(0)));
            let mut nulls = values.map(|v| v.is_none());
            pg_sys::tuplestore_putvalues(
                (*rsinfo).setResult,
                (*rsinfo).setDesc,
                datums.as_mut_ptr(),
                nulls.as_mut_ptr(),
            );
        }
    }
    Datum::from(0)
}

#[no_mangle]
pub extern "C" fn pg_finfo_lambda_fdw_stat_invocations_reset() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// `lambda_fdw.stat_invocations_reset()`: forgets every entry.
///
/// # Safety
/// Called by PostgreSQL through the function manager only.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn lambda_fdw_stat_invocations_reset(
    _fcinfo: pg_sys::FunctionCallInfo,
) -> Datum {
    let Some(table) = shmem::table() else {
        not_preloaded()
    };
    table.reset();
    Datum::from(0)
}
