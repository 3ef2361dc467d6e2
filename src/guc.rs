//! Settings, with the names and defaults of RDS for PostgreSQL's aws_lambda.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use crate::core::settings::{
    DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, MAX_TIMEOUT_MS,
};

pub static CONNECT_TIMEOUT_MS: GucSetting<i32> =
    GucSetting::<i32>::new(DEFAULT_CONNECT_TIMEOUT_MS as i32);
pub static REQUEST_TIMEOUT_MS: GucSetting<i32> =
    GucSetting::<i32>::new(DEFAULT_REQUEST_TIMEOUT_MS as i32);
pub static ENDPOINT_OVERRIDE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static DEFAULT_REGION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn register() {
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
    // SAFETY: called from _PG_init on the backend's main thread with a valid C string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"aws_lambda".as_ptr()) };
}

fn string_setting(s: &GucSetting<Option<CString>>) -> Option<String> {
    s.get()
        .and_then(|c| c.into_string().ok())
        .filter(|v| !v.is_empty())
}

pub fn connect_timeout_ms() -> u64 {
    CONNECT_TIMEOUT_MS.get().max(1) as u64
}

pub fn request_timeout_ms() -> u64 {
    REQUEST_TIMEOUT_MS.get().max(1) as u64
}

pub fn endpoint_override() -> Option<String> {
    string_setting(&ENDPOINT_OVERRIDE)
}

pub fn default_region() -> Option<String> {
    string_setting(&DEFAULT_REGION)
}
