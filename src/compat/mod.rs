//! The Amazon RDS for PostgreSQL API: `aws_lambda.invoke` (four overloads)
//! over the same invocation core as the foreign tables. `sql/rds_api.sql`
//! declares the functions with RDS's exact signatures; the C entry points
//! below read the arguments, invoke, and build the OUT record, and errors
//! are worded as RDS words them.
//!
//! What it offers the other surfaces (the queue's `enqueue` takes the same
//! arguments and refuses what `aws_lambda.invoke` would):
//! - [`prepare`]: the request `aws_lambda.invoke` would send, checked;
//! - [`text_arg`] and [`json_arg`]: reading a call's arguments;
//! - [`args`]: the arguments of each overload ([`args::InvokeArgs`]).

pub(crate) mod args;

use bytes::Bytes;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;
use pgrx::{IntoDatum, PgSqlErrorCode};

use crate::error::{core_error_parts, report, LambdaFdwError, Result};
use crate::pg::convert;
use crate::pg::PG_INTERRUPTS;
use crate::settings::guc;
use crate::stats;
use args::{from_text_overload, InvokeArgs, TextOverloadArgs};
use lambda_fdw_core::client::process_default_region;
use lambda_fdw_core::{
    block_on, client_for, parse_function_name, CallLog, CoreError, InvocationType, InvokeOutcome,
    InvokeRequest, LogType,
};

/// Builds the request `aws_lambda.invoke` would send: region from the
/// argument, the ARN, `aws_lambda.default_region`, then the server process's
/// AWS configuration; names, enums and sizes checked.
pub(crate) fn prepare(args: &InvokeArgs, payload: Bytes) -> Result<InvokeRequest> {
    let function = parse_function_name(&args.function_name)?;
    let invocation_type = InvocationType::parse(&args.invocation_type)?;
    let log_type = LogType::parse(&args.log_type)?;
    let default_region = if args.region.is_none() && function.region.is_none() {
        match guc::default_region() {
            Some(r) => Some(r),
            None => process_default_region(&PG_INTERRUPTS)?,
        }
    } else {
        None
    };
    let target = function.resolve(
        args.region.as_deref(),
        args.qualifier.as_deref(),
        default_region.as_deref(),
    )?;
    Ok(InvokeRequest::new(
        target,
        invocation_type,
        log_type,
        args.context.as_deref(),
        payload,
    )?)
}

/// Invokes a function as `aws_lambda.invoke` does: the request [`prepare`]
/// builds, signed as the region's route says (see `route::region_route`).
fn invoke(args: &InvokeArgs, payload: Bytes) -> Result<(InvokeOutcome, String)> {
    let request = prepare(args, payload)?;
    // SAFETY: GetUserId has no preconditions inside a transaction.
    let user = unsafe { pg_sys::GetUserId() };
    let signed = crate::settings::route::region_route(&request.target.region, user)?;
    let server = signed.server;
    let client = client_for(&signed.settings, &PG_INTERRUPTS)?;
    let display = request.target.display.clone();
    let log = CallLog::default();
    let outcome = block_on(client.invoke(request, &log), &PG_INTERRUPTS)?;
    let caller = stats::Caller::current(server.as_ref().map(|s| (s.oid, s.name.as_str())));
    stats::record_log(&caller, &log);
    Ok((outcome?.raise_function_error(&display)?, display))
}

/// Errors worded as RDS words them: `lambda invocation failed` for a function
/// error, `invoke API failed` for a failed call; the rest as the FDW does.
fn rds_report(e: LambdaFdwError) -> ErrorReport {
    let LambdaFdwError::Core(core) = e else {
        return e.into();
    };
    let (core, attempts) = match core {
        CoreError::GaveUp { attempts, last } => (*last, Some(attempts)),
        other => (other, None),
    };
    let (code, _, hint) = core_error_parts(&core);
    let api_failed_with = |said: String, hint: Option<String>| {
        let tries = attempts
            .map(|n| format!(" Gave up after {}.", lambda_fdw_core::error::attempts(n)))
            .unwrap_or_default();
        report(
            code,
            "invoke API failed".into(),
            Some(format!("AWS Lambda client returned '{said}'.{tries}")),
            hint,
        )
    };
    let api_failed = |said: String| api_failed_with(said, hint.clone());
    match &core {
        CoreError::FunctionError {
            function,
            kind,
            payload,
            ..
        } => report(
            PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
            "lambda invocation failed".into(),
            Some(format!(
                "\"{function}\" returned error \"{kind}\", details: \"{payload}\"."
            )),
            None,
        ),
        CoreError::Connect(cause) => api_failed_with(
            "Unable to connect to endpoint".into(),
            Some(format!("the connection failed with: {cause}")),
        ),
        CoreError::ConnectTimeout { limit_ms } => api_failed_with(
            "Unable to connect to endpoint".into(),
            Some(format!(
                "no connection within {limit_ms} ms; raise the server option connect_timeout_ms or the setting aws_lambda.connect_timeout_ms"
            )),
        ),
        CoreError::RequestTimeout { limit_ms, .. } => {
            api_failed(format!("Request timeout: no response within {limit_ms} ms"))
        }
        CoreError::Service {
            code: aws_code,
            message,
            request_id,
            ..
        } => api_failed(match request_id {
            Some(id) => format!("{aws_code}: {message} (request id {id})"),
            None => format!("{aws_code}: {message}"),
        }),
        CoreError::Credentials(cause) => api_failed(format!("No AWS credentials: {cause}")),
        CoreError::Response { message, .. } | CoreError::Other { message, .. } => {
            api_failed(message.clone())
        }
        CoreError::ResponseTooLarge { .. } | CoreError::HeaderTooLong { .. } => {
            api_failed(core.to_string())
        }
        _ => LambdaFdwError::Core(core).into(),
    }
}

fn raise_as_rds(e: LambdaFdwError) -> ! {
    rds_report(e).report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// Which overload a call came through.
#[derive(Clone, Copy)]
struct Overload {
    composite: bool,
    jsonb: bool,
}

/// Reads a text-like argument (text, varchar, json).
///
/// # Safety
/// `fcinfo` is a live call's, and argument `n` is text-like.
pub(crate) unsafe fn text_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<String> {
    // SAFETY: the caller passes an argument index of a text-like parameter.
    unsafe { pgrx::fcinfo::pg_getarg::<String>(fcinfo, n) }
}

/// Reads a json or jsonb argument as JSON text.
///
/// # Safety
/// `fcinfo` is a live call's, and argument `n` is json (or jsonb with `jsonb`).
pub(crate) unsafe fn json_arg(
    fcinfo: pg_sys::FunctionCallInfo,
    n: usize,
    jsonb: bool,
) -> Option<String> {
    // SAFETY: the caller passes the index of a json (or jsonb) parameter.
    unsafe {
        if jsonb {
            pgrx::fcinfo::pg_getarg_datum(fcinfo, n).map(|d| convert::jsonb_text(d))
        } else {
            text_arg(fcinfo, n)
        }
    }
}

/// Reads the payload argument into Rust memory, freeing the detoasted copy
/// PostgreSQL made for it, so a large payload is held once.
///
/// # Safety
/// `fcinfo` is a live call's, and argument `n` is json (or jsonb with `jsonb`).
unsafe fn payload_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize, jsonb: bool) -> Option<Bytes> {
    // SAFETY: per the contract; a json datum is a text varlena, detoasted
    // here and read within its length; the copy is freed only when it is
    // not the caller's own datum.
    unsafe {
        let datum = pgrx::fcinfo::pg_getarg_datum(fcinfo, n)?;
        if jsonb {
            return Some(Bytes::from(convert::jsonb_text(datum)));
        }
        let original = datum.cast_mut_ptr::<pg_sys::varlena>();
        let plain = pg_sys::pg_detoast_datum_packed(original);
        let bytes = Bytes::copy_from_slice(std::slice::from_raw_parts(
            pgrx::varlena::vardata_any(plain) as *const u8,
            pgrx::varlena::varsize_any_exhdr(plain),
        ));
        if plain != original {
            pg_sys::pfree(plain.cast());
        }
        Some(bytes)
    }
}

/// # Safety
/// `fcinfo` is a live call of the overload `o` describes.
unsafe fn read_args(fcinfo: pg_sys::FunctionCallInfo, o: Overload) -> Result<InvokeArgs> {
    // SAFETY: argument positions follow the declarations in sql/rds_api.sql.
    unsafe {
        if o.composite {
            let (function_name, region) = match pgrx::fcinfo::pg_getarg_datum(fcinfo, 0) {
                None => (None, None),
                Some(datum) => {
                    let tuple = PgHeapTuple::from_composite_datum(datum);
                    let field = |name: &str| {
                        tuple.get_by_name::<String>(name).map_err(|e| {
                            LambdaFdwError::ArgumentUnreadable {
                                field: name.to_string(),
                                reason: e.to_string(),
                            }
                        })
                    };
                    (field("function_name")?, field("region")?)
                }
            };
            let required = |name: &'static str, v: Option<String>| {
                v.ok_or(LambdaFdwError::Core(CoreError::NullArgument(name)))
            };
            Ok(InvokeArgs {
                function_name: required("function_name", function_name)?,
                region,
                invocation_type: required("invocation_type", text_arg(fcinfo, 2))?,
                log_type: required("log_type", text_arg(fcinfo, 3))?,
                context: json_arg(fcinfo, 4, o.jsonb),
                qualifier: text_arg(fcinfo, 5),
            })
        } else {
            Ok(from_text_overload(TextOverloadArgs {
                function_name: text_arg(fcinfo, 0),
                region: text_arg(fcinfo, 2),
                invocation_type: text_arg(fcinfo, 3),
                log_type: text_arg(fcinfo, 4),
                context: json_arg(fcinfo, 5, o.jsonb),
                qualifier: text_arg(fcinfo, 6),
            })?)
        }
    }
}

/// # Safety
/// `fcinfo` is a live call of the overload `o` describes.
unsafe fn invoke_entry(fcinfo: pg_sys::FunctionCallInfo, o: Overload) -> Datum {
    // SAFETY: fcinfo is the call's own; see read_args.
    let args = match unsafe { read_args(fcinfo, o) } {
        Ok(a) => a,
        Err(e) => raise_as_rds(e),
    };
    // SAFETY: argument 1 is the payload in every overload.
    let payload = match unsafe { payload_arg(fcinfo, 1, o.jsonb) } {
        Some(p) => p,
        None => raise_as_rds(LambdaFdwError::Core(CoreError::NullArgument("payload"))),
    };
    let (mut outcome, display) = match invoke(&args, payload) {
        Ok(v) => v,
        Err(e) => raise_as_rds(e),
    };
    let payload = match convert::response_datum(outcome.payload.take(), &display, o.jsonb) {
        Ok(p) => p,
        Err(e) => raise_as_rds(e),
    };
    let values = [
        outcome.status_code.into_datum(),
        payload,
        outcome.executed_version.clone().into_datum(),
        outcome.log_result.clone().into_datum(),
    ];
    // SAFETY: the function is declared with four OUT parameters of these
    // types, so its result type is a composite of four matching columns.
    unsafe {
        let mut tupdesc: pg_sys::TupleDesc = std::ptr::null_mut();
        if pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut tupdesc)
            != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE
        {
            error!("aws_lambda.invoke must be declared with OUT parameters");
        }
        let tupdesc = pg_sys::BlessTupleDesc(tupdesc);
        let mut datums = values.map(|v| v.unwrap_or(Datum::from(0)));
        let mut nulls = values.map(|v| v.is_none());
        let tuple = pg_sys::heap_form_tuple(tupdesc, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
    }
}

static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

macro_rules! entry_point {
    ($finfo:ident, $name:ident, $composite:expr, $jsonb:expr) => {
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            &V1
        }

        /// # Safety
        /// Called by PostgreSQL through the function manager only.
        #[no_mangle]
        #[pg_guard]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
            // SAFETY: PostgreSQL calls this with a valid fcinfo for the
            // declaration in sql/rds_api.sql.
            unsafe {
                invoke_entry(
                    fcinfo,
                    Overload {
                        composite: $composite,
                        jsonb: $jsonb,
                    },
                )
            }
        }
    };
}

entry_point!(
    pg_finfo_lambda_fdw_invoke_text_json,
    lambda_fdw_invoke_text_json,
    false,
    false
);
entry_point!(
    pg_finfo_lambda_fdw_invoke_text_jsonb,
    lambda_fdw_invoke_text_jsonb,
    false,
    true
);
entry_point!(
    pg_finfo_lambda_fdw_invoke_arn_json,
    lambda_fdw_invoke_arn_json,
    true,
    false
);
entry_point!(
    pg_finfo_lambda_fdw_invoke_arn_jsonb,
    lambda_fdw_invoke_arn_jsonb,
    true,
    true
);
