//! Settings, with the names and defaults of RDS for PostgreSQL's aws_lambda.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use lambda_fdw_core::settings::{DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS};

use super::limits::{
    DEFAULT_MAX_SCAN_INVOCATIONS, MAX_CONCURRENCY_LIMIT, MAX_QUEUE_WORKERS_LIMIT, MAX_TIMEOUT_MS,
};

pub(crate) static CONNECT_TIMEOUT_MS: GucSetting<i32> =
    GucSetting::<i32>::new(DEFAULT_CONNECT_TIMEOUT_MS as i32);
pub(crate) static REQUEST_TIMEOUT_MS: GucSetting<i32> =
    GucSetting::<i32>::new(DEFAULT_REQUEST_TIMEOUT_MS as i32);
pub(crate) static ENDPOINT_OVERRIDE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub(crate) static DEFAULT_REGION: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
/// Retired in 0.6.0 (every database with the extension is served); still
/// defined so that a postgresql.conf that sets it starts.
pub(crate) static DATABASE_NAME: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
/// Default of lambda_fdw.max_queue_workers.
pub(crate) const DEFAULT_MAX_QUEUE_WORKERS: i32 = 4;
pub(crate) static MAX_QUEUE_WORKERS: GucSetting<i32> =
    GucSetting::<i32>::new(DEFAULT_MAX_QUEUE_WORKERS);
pub(crate) static QUEUE_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(32);
pub(crate) static QUEUE_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(86_400);
pub(crate) static MAX_SCAN_INVOCATIONS: GucSetting<i32> =
    GucSetting::<i32>::new(DEFAULT_MAX_SCAN_INVOCATIONS);
/// Default of lambda_fdw.stat_max_entries.
pub(crate) const DEFAULT_STAT_MAX_ENTRIES: i32 = 1000;
pub(crate) static STAT_MAX_ENTRIES: GucSetting<i32> =
    GucSetting::<i32>::new(DEFAULT_STAT_MAX_ENTRIES);

/// Defines the settings; `preloading`: the library is being loaded from
/// shared_preload_libraries, the only time the postmaster settings (the
/// retired `database_name`, the statistics' shared memory) can be defined.
pub(crate) fn register(preloading: bool) {
    GucRegistry::define_int_guc(
        c"aws_lambda.connect_timeout_ms",
        c"Time limit for connecting to Lambda, in milliseconds.",
        c"Applies where a lambda_fdw server does not set connect_timeout_ms.",
        &CONNECT_TIMEOUT_MS,
        1,
        MAX_TIMEOUT_MS as i32,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"aws_lambda.request_timeout_ms",
        c"Time limit for one Lambda invocation attempt, in milliseconds.",
        c"Applies where a lambda_fdw server does not set request_timeout_ms.",
        &REQUEST_TIMEOUT_MS,
        1,
        MAX_TIMEOUT_MS as i32,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"aws_lambda.endpoint_override",
        c"Lambda endpoint URL to use instead of the regional AWS endpoint.",
        c"Applies where a lambda_fdw server does not set endpoint_url. Superuser only.",
        &ENDPOINT_OVERRIDE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"aws_lambda.default_region",
        c"AWS region for aws_lambda.invoke calls that name no region.",
        c"Used when neither a region argument nor a full function ARN gives one.",
        &DEFAULT_REGION,
        GucContext::Userset,
        GucFlags::default(),
    );
    if preloading {
        GucRegistry::define_string_guc(
            c"lambda_fdw.database_name",
            c"Retired: every database with the lambda_fdw extension has its queue sent.",
            c"Ignored since 0.6.0; defined so that configuration files that set it still load.",
            &DATABASE_NAME,
            GucContext::Postmaster,
            GucFlags::default(),
        );
        // Sizes the statistics' shared table (src/stats), which exists only
        // when preloaded.
        GucRegistry::define_int_guc(
            c"lambda_fdw.stat_max_entries",
            c"Most (database, role, server, function) entries lambda_fdw.stat_invocations keeps.",
            c"When it is full, the least recently used 5% are dropped to make room. Read when the server starts.",
            &STAT_MAX_ENTRIES,
            10,
            1_000_000,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    // Read by the launcher only, but defined in every process that loads
    // the library (it is no postmaster setting): a postgresql.conf that sets
    // it gives no "invalid configuration parameter" warning in a session
    // that loads the library without the preload.
    GucRegistry::define_int_guc(
        c"lambda_fdw.max_queue_workers",
        c"Most queue workers, one per database with the lambda_fdw extension.",
        c"A database beyond it waits until a worker exits. Each worker is a background worker: max_worker_processes bounds them too.",
        &MAX_QUEUE_WORKERS,
        1,
        MAX_QUEUE_WORKERS_LIMIT as i32,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"lambda_fdw.queue_concurrency",
        c"Queued invocations the queue worker sends at once.",
        c"",
        &QUEUE_CONCURRENCY,
        1,
        MAX_CONCURRENCY_LIMIT as i32,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"lambda_fdw.queue_retention",
        c"How long finished invocations stay in lambda_fdw.invocations.",
        c"Succeeded and failed rows older than this are deleted by the queue worker.",
        &QUEUE_RETENTION,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    // A limit on what one statement may cost, like statement_timeout or
    // work_mem, not a permission: anyone who may scan a table may scan it
    // again, so every role may raise it for itself (USERSET); a DBA sets the
    // default with ALTER ROLE / ALTER DATABASE ... SET or postgresql.conf.
    GucRegistry::define_int_guc(
        c"lambda_fdw.max_scan_invocations",
        c"Most invocations one scan of a lambda_fdw foreign table may make.",
        c"A scan invokes once per combination of the values its conditions give payload, qualifier, invocation_type, log_type and context; a scan that would make more is refused before any call.",
        &MAX_SCAN_INVOCATIONS,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: called from _PG_init on the backend's main thread with valid C strings.
    unsafe {
        pgrx::pg_sys::MarkGUCPrefixReserved(c"aws_lambda".as_ptr());
        pgrx::pg_sys::MarkGUCPrefixReserved(c"lambda_fdw".as_ptr());
    }
}

fn string_setting(s: &GucSetting<Option<CString>>) -> Option<String> {
    s.get()
        .and_then(|c| c.into_string().ok())
        .filter(|v| !v.is_empty())
}

pub(crate) fn connect_timeout_ms() -> u64 {
    CONNECT_TIMEOUT_MS.get().max(1) as u64
}

pub(crate) fn request_timeout_ms() -> u64 {
    REQUEST_TIMEOUT_MS.get().max(1) as u64
}

pub(crate) fn endpoint_override() -> Option<String> {
    string_setting(&ENDPOINT_OVERRIDE)
}

pub(crate) fn default_region() -> Option<String> {
    string_setting(&DEFAULT_REGION)
}

/// The retired `lambda_fdw.database_name`, if a configuration sets it.
pub(crate) fn retired_database_name() -> Option<String> {
    string_setting(&DATABASE_NAME)
}

/// Most queue workers at once.
pub(crate) fn max_queue_workers() -> usize {
    MAX_QUEUE_WORKERS.get().max(1) as usize
}

pub(crate) fn queue_concurrency() -> usize {
    QUEUE_CONCURRENCY.get().max(1) as usize
}

/// Retention of finished queue rows, in seconds.
pub(crate) fn queue_retention_s() -> i64 {
    QUEUE_RETENTION.get().max(0) as i64
}

/// Most invocations one foreign-table scan may make.
pub(crate) fn max_scan_invocations() -> u64 {
    MAX_SCAN_INVOCATIONS.get().max(1) as u64
}

/// Most entries the statistics' shared table keeps.
pub(crate) fn stat_max_entries() -> i64 {
    i64::from(STAT_MAX_ENTRIES.get().max(1))
}
