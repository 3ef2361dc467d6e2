//! Errors of the invocation core. Messages are short, lower-case, and name the
//! value at fault; they never contain credentials.

use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum CoreError {
    #[error("invalid function name \"{value}\": {reason}")]
    InvalidFunctionName { value: String, reason: String },

    #[error("invalid qualifier \"{value}\": {reason}")]
    InvalidQualifier { value: String, reason: String },

    #[error("invalid region \"{0}\"")]
    InvalidRegion(String),

    #[error("region \"{given}\" conflicts with region \"{in_arn}\" in the function ARN")]
    RegionConflict { given: String, in_arn: String },

    #[error("qualifier \"{given}\" conflicts with qualifier \"{in_name}\" in the function name")]
    QualifierConflict { given: String, in_name: String },

    #[error("{0} must not be NULL")]
    NullArgument(&'static str),

    #[error("no AWS region for the lambda function")]
    NoRegion,

    #[error("invalid invocation_type \"{0}\"")]
    InvalidInvocationType(String),

    #[error("invalid log_type \"{0}\"")]
    InvalidLogType(String),

    #[error("context must be a JSON object")]
    ContextNotObject,

    #[error("the \"custom\" member of context must be a JSON object: a queued invocation adds its id there")]
    ContextCustomNotObject,

    #[error(
        "context is {size} bytes once base64-encoded, more than the {limit} bytes Lambda accepts"
    )]
    ContextTooLarge { size: usize, limit: usize },

    #[error("payload is {size} bytes, more than the {limit} bytes Lambda accepts for {invocation_type} invocations")]
    PayloadTooLarge {
        size: usize,
        limit: usize,
        invocation_type: &'static str,
    },

    #[error("lambda function {function} returned error \"{kind}\": {message}")]
    FunctionError {
        function: String,
        kind: String,
        message: String,
        payload: String,
    },

    #[error("connection to lambda endpoint timed out after {limit_ms} ms")]
    ConnectTimeout { limit_ms: u64 },

    #[error("lambda call to {function} timed out after {limit_ms} ms")]
    RequestTimeout { function: String, limit_ms: u64 },

    #[error("could not connect to lambda endpoint: {0}")]
    Connect(String),

    #[error("could not get AWS credentials: {0}")]
    Credentials(String),

    #[error("lambda returned {code} for {function}: {message}")]
    Service {
        function: String,
        code: String,
        message: String,
        status: u16,
        request_id: Option<String>,
    },

    #[error("{last} (gave up after {})", crate::error::attempts(*.attempts))]
    GaveUp { attempts: u32, last: Box<CoreError> },

    #[error("invalid response from lambda for {function}: {message}")]
    Response { function: String, message: String },

    #[error("could not start the async runtime: {0}")]
    Runtime(String),

    #[error("lambda call to {function} failed: {message}")]
    Other { function: String, message: String },

    /// A caller's context sets `custom.<key>`, a key only the queue sets
    /// (`crate::request::RESERVED_KEYS`).
    #[error("client context must not set custom.{key}")]
    ReservedContextKey { key: &'static str },

    #[error("context is not JSON that lambda_fdw can check: {0}")]
    ContextUnreadable(String),
    /// The response body passed `limit` (6 MB, see `crate::limits`):
    /// refused on its Content-Length (`content_length`) or, without one,
    /// while it streamed. The function ran: never retried.
    #[error(
        "lambda function {function} returned a response larger than {} MB ({limit} bytes), the most Lambda returns",
        limit / (1024 * 1024)
    )]
    ResponseTooLarge {
        function: String,
        limit: u64,
        content_length: Option<u64>,
    },

    /// A header whose value lambda_fdw keeps is longer than its limit
    /// (`crate::limits::BOUNDED_HEADERS`). Never retried.
    #[error("lambda function {function} returned an {header} header of {size} bytes, more than the {limit} bytes lambda_fdw accepts")]
    HeaderTooLong {
        function: String,
        header: &'static str,
        size: usize,
        limit: usize,
    },
}

pub type CoreResult<T> = Result<T, CoreError>;

/// A service error with `status` and `code`, for unit tests.
#[cfg(test)]
pub fn service_error(status: u16, code: &str) -> CoreError {
    CoreError::Service {
        function: "f".into(),
        code: code.into(),
        message: "m".into(),
        status,
        request_id: None,
    }
}

/// "1 attempt", "3 attempts": the one wording of an attempt count.
pub fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_string()
    } else {
        format!("{n} attempts")
    }
}
