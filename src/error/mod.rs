//! The extension's error type and its one conversion to a PostgreSQL error.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;
use thiserror::Error;

use lambda_fdw_core::CoreError;
mod option;

pub(crate) use option::OptionError;

#[derive(Debug, Error)]
pub(crate) enum LambdaFdwError {
    #[error(transparent)]
    Core(#[from] CoreError),

    #[error(transparent)]
    Option(#[from] OptionError),

    #[error("column \"{0}\" is not a lambda_fdw column")]
    UnknownColumn(String),

    #[error("column \"{column}\" must be of type {expected}, not {actual}")]
    ColumnType {
        column: String,
        expected: &'static str,
        actual: String,
    },

    #[error("the value for column \"{0}\" is not of the column's type")]
    QualValue(&'static str),

    #[error("no payload given for lambda function {function}")]
    NoPayload { function: String },

    #[error("lambda function {function} returned a response that is not valid JSON: {reason}")]
    ResponseNotJson { function: String, reason: String },

    #[error("permission denied for foreign server {0}")]
    ServerPermission(String),

    #[error("several lambda_fdw servers have region \"{region}\": {servers}")]
    AmbiguousRegion { region: String, servers: String },

    /// An option's name or value (named) in the catalog is not UTF-8.
    #[error("{}", match .0 { Some(name) => format!("value of option \"{name}\" is not valid UTF-8"), None => "option name is not valid UTF-8".to_string() })]
    OptionNotUtf8(Option<String>),

    /// A field of an `aws_commons._lambda_function_arn_1` argument.
    #[error("could not read {field}: {reason}")]
    ArgumentUnreadable { field: String, reason: String },

    /// The INSERT into the queue table failed (SPI's error) or gave no id.
    #[error("could not queue the invocation{}", match .0 { Some(e) => format!(": {e}"), None => String::new() })]
    QueueWrite(Option<String>),

    #[error("lambda_fdw internal error: {0}")]
    Internal(&'static str),

    #[error("column \"{column}\" cannot be inserted: {why}")]
    NotInsertable {
        column: &'static str,
        why: &'static str,
    },

    #[error("no payload given for the invocation queued by INSERT into {table}")]
    NoPayloadToQueue { table: String },

    #[error("lambda_fdw has no remote schema \"{asked}\"")]
    NoRemoteSchema { asked: String, remote: &'static str },

    #[error("LIMIT TO names the tables to create, and with prefix \"{prefix}\" function \"{name}\" becomes table \"{prefix}{name}\"")]
    ImportLimitToPrefix { name: String, prefix: String },

    #[error("lambda_fdw must be loaded via \"shared_preload_libraries\" to count invocations")]
    StatsNotPreloaded,

    #[error("lambda_fdw's queue table lambda_fdw.invocations does not exist in this database")]
    QueueMissing,

    #[error(
        "lambda_fdw's queue table lambda_fdw.invocations predates version 0.3.0 of the extension"
    )]
    QueueOutdated,

    #[error("lambda_fdw's queue table lambda_fdw.invocations has triggers or rules attached")]
    QueueHasCode,

    #[error("lambda_fdw's queue table lambda_fdw.invocations predates version 0.6.0 of the extension, which added {what}")]
    QueueBefore06 { what: &'static str },

    #[error("ordering_key is {bytes} bytes, more than {limit} bytes")]
    OrderingKeyTooLong { bytes: usize, limit: usize },

    #[error("on_complete function with OID {oid} does not exist")]
    CallbackMissing { oid: u32 },

    #[error("on_complete function \"{name}\" does not exist")]
    CallbackNotFound { name: String },

    #[error("on_complete {function} is not a function")]
    CallbackNotAFunction { function: String },

    #[error(
        "on_complete function {function} must take one argument, of type lambda_fdw.invocations"
    )]
    CallbackSignature { function: String },

    #[error("on_complete function {function} returns a set")]
    CallbackReturnsSet { function: String },

    #[error("permission denied for function {function}")]
    CallbackNoExecute { function: String },

    #[error("on_complete function {function} is not owned by a superuser")]
    CallbackUntrusted { function: String },

    #[error("invocation {id} does not exist")]
    NoSuchInvocation { id: i64 },

    #[error("permission denied to {action} invocation {id}")]
    NotYourInvocation { id: i64, action: &'static str },

    #[error("invocation {id} cannot be {done}: it is {state}")]
    InvocationState {
        id: i64,
        done: &'static str,
        state: &'static str,
        allowed: &'static str,
    },

    #[error("role \"{role}\" has no AWS credentials for server \"{server}\"")]
    NoCredentials { role: String, server: String },
    #[error("scan would invoke lambda function {function} {invocations} times, more than lambda_fdw.max_scan_invocations ({limit})")]
    TooManyInvocations {
        function: String,
        invocations: u64,
        limit: u64,
        /// The lists whose product the count is, e.g. "300 payloads x 300 contexts".
        factors: String,
    },
}

pub(crate) type Result<T> = std::result::Result<T, LambdaFdwError>;

/// Raises `e` as a PostgreSQL ERROR (a Rust panic that pgrx turns into one
/// at the nearest guarded boundary).
pub(crate) fn raise(e: LambdaFdwError) -> ! {
    ErrorReport::from(e).report(pgrx::PgLogLevel::ERROR);
    unreachable!("an ERROR does not return")
}

const ENUM_HINT_INVOCATION: &str =
    "valid values are RequestResponse, Event and DryRun (case-sensitive)";
const ENUM_HINT_LOG: &str = "valid values are None and Tail (case-sensitive)";

fn service_code(code: &str) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    match code {
        "ResourceNotFoundException" => ERRCODE_UNDEFINED_OBJECT,
        "AccessDeniedException" => ERRCODE_INSUFFICIENT_PRIVILEGE,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId" => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        "TooManyRequestsException" => ERRCODE_INSUFFICIENT_RESOURCES,
        "RequestTooLargeException" => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        "InvalidRequestContentException" | "InvalidParameterValueException" => {
            ERRCODE_INVALID_PARAMETER_VALUE
        }
        _ => ERRCODE_FDW_ERROR,
    }
}

/// SQLSTATE, detail and hint of a core error; the message is its Display.
pub(crate) fn core_error_parts(e: &CoreError) -> (PgSqlErrorCode, Option<String>, Option<String>) {
    use PgSqlErrorCode::*;
    match e {
        CoreError::GaveUp { attempts, last } => {
            let (code, detail, hint) = core_error_parts(last);
            let hint = hint.or_else(|| {
                Some(format!(
                    "{} {} made; the server option max_attempts sets how many",
                    lambda_fdw_core::error::attempts(*attempts),
                    if *attempts == 1 { "was" } else { "were" }
                ))
            });
            (code, detail, hint)
        }
        CoreError::InvalidFunctionName { .. }
        | CoreError::InvalidQualifier { .. }
        | CoreError::InvalidRegion(_)
        | CoreError::RegionConflict { .. }
        | CoreError::QualifierConflict { .. }
        | CoreError::ContextNotObject
        | CoreError::ContextCustomNotObject => (ERRCODE_INVALID_PARAMETER_VALUE, None, None),
        CoreError::InvalidInvocationType(_) => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            None,
            Some(ENUM_HINT_INVOCATION.into()),
        ),
        CoreError::InvalidLogType(_) => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            None,
            Some(ENUM_HINT_LOG.into()),
        ),
        CoreError::NullArgument(_) => (ERRCODE_NULL_VALUE_NOT_ALLOWED, None, None),
        CoreError::NoRegion => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            None,
            Some("pass a region, use a full function ARN, or SET aws_lambda.default_region".into()),
        ),
        CoreError::ContextTooLarge { .. } | CoreError::PayloadTooLarge { .. } => {
            (ERRCODE_PROGRAM_LIMIT_EXCEEDED, None, None)
        }
        CoreError::FunctionError { payload, .. } => {
            (ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, Some(payload.clone()), None)
        }
        CoreError::ConnectTimeout { .. } => (
            ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION,
            None,
            Some("raise the server option connect_timeout_ms or the setting aws_lambda.connect_timeout_ms".into()),
        ),
        CoreError::RequestTimeout { .. } => (
            ERRCODE_FDW_ERROR,
            None,
            Some("raise the server option request_timeout_ms or the setting aws_lambda.request_timeout_ms".into()),
        ),
        CoreError::Connect(_) => (ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION, None, None),
        CoreError::Credentials(_) => (
            ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
            None,
            Some("create a user mapping with aws_access_key_id and aws_secret_access_key, profile or role_arn, or give the server process AWS credentials".into()),
        ),
        CoreError::Service {
            code,
            status,
            request_id,
            ..
        } => {
            let detail = match request_id {
                Some(id) => format!("HTTP status {status}, request id {id}"),
                None => format!("HTTP status {status}"),
            };
            (service_code(code), Some(detail), None)
        }
        CoreError::Response { .. } | CoreError::Runtime(_) | CoreError::Other { .. } => {
            (ERRCODE_FDW_ERROR, None, None)
        }
        CoreError::ContextUnreadable(_) => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            Some("lambda_fdw reads a context before it sends it, to keep custom.lambda_fdw_invocation_id and custom.lambda_fdw_invocation_ids its own: numbers must fit a double, and nesting stay within 128 levels.".into()),
            None,
        ),
        CoreError::ReservedContextKey { .. } => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            Some("lambda_fdw sets it on queued invocations only, so that a function can trust it.".into()),
            None,
        ),
        CoreError::ResponseTooLarge {
            limit,
            content_length,
            ..
        } => (
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Some(match content_length {
                Some(n) => {
                    format!("the response's Content-Length is {n} bytes: refused before its body was read")
                }
                None => format!(
                    "no Content-Length: refused while its body was read, once more than {limit} bytes had arrived"
                ),
            }),
            None,
        ),
        CoreError::HeaderTooLong { .. } => (ERRCODE_PROGRAM_LIMIT_EXCEEDED, None, None),
    }
}

/// Builds an ErrorReport from its parts.
pub(crate) fn report(
    code: PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
) -> ErrorReport {
    let mut r = ErrorReport::new(code, message, "lambda_fdw");
    if let Some(d) = detail {
        r = r.set_detail(d);
    }
    if let Some(h) = hint {
        r = r.set_hint(h);
    }
    r
}

impl From<LambdaFdwError> for ErrorReport {
    fn from(e: LambdaFdwError) -> Self {
        use PgSqlErrorCode::*;
        let message = e.to_string();
        match e {
            LambdaFdwError::Core(c) => {
                let (code, detail, hint) = core_error_parts(&c);
                report(code, message, detail, hint)
            }
            LambdaFdwError::Option(o) => {
                let (code, detail, hint) = match &o {
                    OptionError::Unknown { valid, .. } => (
                        ERRCODE_FDW_INVALID_OPTION_NAME,
                        None,
                        Some(if valid.is_empty() {
                            "there are no valid options in this context".to_string()
                        } else {
                            format!("valid options in this context are: {valid}")
                        }),
                    ),
                    OptionError::CredentialOutsideUserMapping(_) => (
                        ERRCODE_FDW_INVALID_OPTION_NAME,
                        None,
                        Some("credentials belong in CREATE USER MAPPING ... OPTIONS (...), which only the mapping's user and superusers can read".into()),
                    ),
                    OptionError::Missing { .. } => (ERRCODE_FDW_OPTION_NAME_NOT_FOUND, None, None),
                    OptionError::InvalidValue { detail, .. } => {
                        (ERRCODE_INVALID_PARAMETER_VALUE, Some(detail.clone()), None)
                    }
                    OptionError::Requires { .. } | OptionError::Exclusive(..) => {
                        (ERRCODE_INVALID_PARAMETER_VALUE, None, None)
                    }
                    OptionError::Malformed(_) => (ERRCODE_SYNTAX_ERROR, None, None),
                    OptionError::SuperuserOnly { detail, .. } => {
                        (ERRCODE_INSUFFICIENT_PRIVILEGE, Some(detail.to_string()), None)
                    }
                };
                report(code, message, detail, hint)
            }
            LambdaFdwError::UnknownColumn(_) => report(
                ERRCODE_FDW_COLUMN_NAME_NOT_FOUND,
                message,
                None,
                Some("lambda_fdw columns are payload, qualifier, invocation_type, log_type, context, status_code, response, executed_version, log_result and function_error".into()),
            ),
            LambdaFdwError::ColumnType { column, .. } => report(
                ERRCODE_FDW_INVALID_DATA_TYPE,
                message,
                if column == "payload" || column == "context" {
                    Some("request columns are compared with =, which json does not have".into())
                } else {
                    None
                },
                None,
            ),
            LambdaFdwError::QualValue(_) => report(ERRCODE_DATATYPE_MISMATCH, message, None, None),
            LambdaFdwError::NoPayload { .. } => report(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                message,
                Some("a scan of a lambda_fdw table invokes the function once per payload, and this query gives none".into()),
                Some("add WHERE payload = '{...}', WHERE payload IN ('{...}', '{...}'), WHERE payload = ANY(ARRAY(SELECT doc FROM t)), or join on payload".into()),
            ),
            LambdaFdwError::ResponseNotJson { .. } => {
                report(ERRCODE_INVALID_TEXT_REPRESENTATION, message, None, None)
            }
            LambdaFdwError::ServerPermission(_) => {
                report(ERRCODE_INSUFFICIENT_PRIVILEGE, message, None, None)
            }
            LambdaFdwError::AmbiguousRegion { .. } => report(
                ERRCODE_DUPLICATE_OBJECT,
                message,
                None,
                Some("keep one superuser-owned lambda_fdw server per region: aws_lambda.invoke and lambda_fdw.enqueue route through it".into()),
            ),
            LambdaFdwError::OptionNotUtf8(_)
            | LambdaFdwError::ArgumentUnreadable { .. }
            | LambdaFdwError::QueueWrite(_) => report(ERRCODE_FDW_ERROR, message, None, None),
            LambdaFdwError::Internal(_) => report(ERRCODE_INTERNAL_ERROR, message, None, None),
            LambdaFdwError::NotInsertable { .. } => report(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                message,
                None,
                Some("an INSERT sets payload, and optionally qualifier, invocation_type and context".into()),
            ),
            LambdaFdwError::NoPayloadToQueue { .. } => report(
                ERRCODE_NOT_NULL_VIOLATION,
                message,
                None,
                Some("INSERT INTO <table> (payload) VALUES ('{...}')".into()),
            ),
            LambdaFdwError::NoRemoteSchema { remote, .. } => report(
                ERRCODE_FDW_SCHEMA_NOT_FOUND,
                message,
                None,
                Some(format!(
                    "the remote schema is \"{remote}\": every function of the server's region"
                )),
            ),
            LambdaFdwError::ImportLimitToPrefix { name, prefix } => report(
                ERRCODE_INVALID_PARAMETER_VALUE,
                message,
                None,
                Some(format!(
                    "write LIMIT TO (\"{}\")",
                    format!("{prefix}{name}").replace('"', "\"\"")
                )),
            ),
            LambdaFdwError::QueueMissing => report(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                message,
                Some("the extension's SQL objects are older than its library: the queue came with version 0.2.0".into()),
                Some("run ALTER EXTENSION lambda_fdw UPDATE".into()),
            ),
            LambdaFdwError::QueueOutdated => report(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                message,
                Some("the library is newer than the extension's SQL objects: 0.3.0 records which path queued an invocation".into()),
                Some("run ALTER EXTENSION lambda_fdw UPDATE".into()),
            ),
            LambdaFdwError::QueueHasCode => report(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                message,
                Some("the extension attaches none; queueing writes the table as its owner, and the queue worker sends nothing from it while they exist".into()),
                Some("a superuser should drop them".into()),
            ),
            LambdaFdwError::QueueBefore06 { .. } => report(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                message,
                Some("the library is newer than the extension's SQL objects".into()),
                Some("run ALTER EXTENSION lambda_fdw UPDATE".into()),
            ),
            LambdaFdwError::OrderingKeyTooLong { .. } => {
                report(ERRCODE_PROGRAM_LIMIT_EXCEEDED, message, None, None)
            }
            LambdaFdwError::CallbackMissing { .. } | LambdaFdwError::CallbackNotFound { .. } => report(
                ERRCODE_UNDEFINED_FUNCTION,
                message,
                None,
                Some("name it schema-qualified, e.g. 'public.order_done'::regproc".into()),
            ),
            LambdaFdwError::CallbackNotAFunction { .. } => report(
                ERRCODE_WRONG_OBJECT_TYPE,
                message,
                Some("procedures, aggregates and window functions cannot be callbacks".into()),
                None,
            ),
            LambdaFdwError::CallbackSignature { .. } => report(
                ERRCODE_UNDEFINED_FUNCTION,
                message,
                None,
                Some("CREATE FUNCTION ... (i lambda_fdw.invocations) RETURNS void ...".into()),
            ),
            LambdaFdwError::CallbackReturnsSet { .. } => report(
                ERRCODE_WRONG_OBJECT_TYPE,
                message,
                None,
                Some("a callback is called once per invocation: declare it RETURNS void, or any single value".into()),
            ),
            LambdaFdwError::CallbackNoExecute { .. } => {
                report(ERRCODE_INSUFFICIENT_PRIVILEGE, message, None, None)
            }
            LambdaFdwError::CallbackUntrusted { .. } => report(
                ERRCODE_INSUFFICIENT_PRIVILEGE,
                message,
                Some("a superuser's invocation calls only functions that superusers own: the queue worker would run it later, as that superuser".into()),
                None,
            ),
            LambdaFdwError::NoSuchInvocation { .. } => {
                report(ERRCODE_UNDEFINED_OBJECT, message, None, None)
            }
            LambdaFdwError::NotYourInvocation { .. } => report(
                ERRCODE_INSUFFICIENT_PRIVILEGE,
                message,
                Some("only the role that queued an invocation, and superusers, may retry or cancel it".into()),
                None,
            ),
            LambdaFdwError::InvocationState { allowed, .. } => report(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                message,
                None,
                Some(allowed.to_string()),
            ),
            LambdaFdwError::NoCredentials { .. } => report(
                ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                message,
                Some("Its user mapping, or the server's mapping for PUBLIC, names no access key, profile or role, and only a superuser can let a server sign with the server process's own AWS identity.".into()),
                Some("Create a user mapping with aws_access_key_id and aws_secret_access_key, or ask a superuser to set the server option allow_server_identity 'true'.".into()),
            ),
            LambdaFdwError::StatsNotPreloaded => report(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                message,
                Some("invocations work without it, but are not counted".into()),
                Some("add lambda_fdw to shared_preload_libraries and restart the server".into()),
            ),
            LambdaFdwError::TooManyInvocations {
                invocations,
                factors,
                ..
            } => report(
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                message,
                Some(format!("a scan invokes once per combination of the values its conditions give the request columns: {factors}")),
                Some(if invocations <= i32::MAX as u64 {
                    format!("SET lambda_fdw.max_scan_invocations to {invocations} or more, or narrow the conditions on the request columns")
                } else {
                    "narrow the conditions on the request columns".into()
                }),
            ),
        }
    }
}
