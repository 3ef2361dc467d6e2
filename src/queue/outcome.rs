//! What happened to a claimed row, ready to be written back: [`Outcome`],
//! and [`classify`], which makes one from an attempt's result (the retry
//! decision is the core's, [`retry::decide`] with [`Retrier::Queue`]).

use std::time::Duration;

use pgrx::pg_sys::Oid;

use crate::pg::convert;
use lambda_fdw_core::retry::{self, Decision, Retrier};
use lambda_fdw_core::{CallStats, CoreError, InvokeOutcome};

use super::error::WorkerError;
use super::state::RowState;

/// Whose a queued invocation is, for the statistics: the role that queued
/// it, and the server (OID, name) it goes through.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Owner {
    pub(crate) role: Oid,
    pub(crate) server: Option<(Oid, String)>,
}

/// What happened to a claimed row, ready to be written back.
#[derive(Debug, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) id: i64,
    /// `Succeeded`, `Failed`, or `Queued` (to be tried again).
    pub(crate) state: RowState,
    pub(crate) status_code: Option<i32>,
    pub(crate) response: Option<String>,
    pub(crate) executed_version: Option<String>,
    pub(crate) function_error: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) request_id: Option<String>,
    /// For `Queued`: the wait before the next attempt.
    pub(crate) retry_in_ms: Option<f64>,
    /// For a row that was sent: whose call it was, and its statistics
    /// (one per request; a batch's are on its first row only).
    pub(crate) measured: Option<(Owner, Vec<CallStats>)>,
}

impl Outcome {
    /// Row `id` in `state`, with nothing else said.
    pub(crate) fn new(id: i64, state: RowState) -> Self {
        Self {
            id,
            state,
            status_code: None,
            response: None,
            executed_version: None,
            function_error: None,
            error: None,
            request_id: None,
            retry_in_ms: None,
            measured: None,
        }
    }

    pub(crate) fn failed(id: i64, error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::new(id, RowState::Failed)
        }
    }

    /// This outcome, failed because it could not be stored as it is
    /// (`why`): without the response, which is what a row usually cannot
    /// store, with what the call said kept.
    pub(crate) fn unstorable(&self, why: &WorkerError) -> Self {
        let error = match &self.error {
            Some(e) => format!("{e}; the function's response could not be stored: {why}"),
            None => format!("the function's response could not be stored: {why}"),
        };
        Self {
            status_code: self.status_code,
            executed_version: self.executed_version.clone(),
            function_error: self.function_error.clone(),
            request_id: self.request_id.clone(),
            error: Some(error),
            ..Self::new(self.id, RowState::Failed)
        }
    }
}

/// The outcome of one attempt of row `id` (its `attempts`-th of `max`).
pub(crate) fn classify(
    id: i64,
    attempts: i32,
    max: i32,
    display: &str,
    result: Result<InvokeOutcome, (CoreError, Option<Duration>)>,
) -> Outcome {
    match result {
        Ok(out) => {
            let response = out
                .payload
                .as_ref()
                .filter(|p| convert::validate_json(p).is_ok())
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let not_json = out.payload.is_some() && response.is_none();
            let mut o = Outcome {
                status_code: Some(out.status_code),
                response,
                executed_version: out.executed_version.clone(),
                function_error: out.function_error.clone(),
                request_id: out.request_id.clone(),
                ..Outcome::new(id, RowState::Succeeded)
            };
            if out.function_error.is_some() {
                o.state = RowState::Failed;
                o.error = out
                    .raise_function_error(display)
                    .err()
                    .map(|e| e.to_string());
            } else if not_json {
                o.error = Some(format!(
                    "lambda function {display} returned a response that is not valid JSON"
                ));
            }
            o
        }
        Err((error, retry_after)) => {
            let (status_code, request_id) = match &error {
                CoreError::Service {
                    status, request_id, ..
                } => (Some(*status as i32), request_id.clone()),
                _ => (None, None),
            };
            // A claimed row's attempts (counted by the claim) and
            // max_attempts are at least 1 as the extension writes them.
            let count = |n: i32| u32::try_from(n).unwrap_or(0);
            match retry::decide(
                error,
                retry_after,
                count(attempts),
                count(max),
                Retrier::Queue,
            ) {
                Decision::Retry { after, error } => Outcome {
                    status_code,
                    error: Some(error.to_string()),
                    request_id,
                    retry_in_ms: Some(after.as_secs_f64() * 1000.0),
                    ..Outcome::new(id, RowState::Queued)
                },
                Decision::GiveUp(error) => Outcome {
                    status_code,
                    error: Some(error.to_string()),
                    request_id,
                    ..Outcome::new(id, RowState::Failed)
                },
            }
        }
    }
}

#[cfg(test)]
mod unit {
    use lambda_fdw_core::outcome::answered as ok;

    use super::*;

    fn throttled() -> CoreError {
        CoreError::Service {
            function: "f".into(),
            code: "TooManyRequestsException".into(),
            message: "Rate exceeded".into(),
            status: 429,
            request_id: Some("req-2".into()),
        }
    }

    #[test]
    fn success_is_recorded_with_its_response() {
        let o = classify(1, 1, 3, "f", Ok(ok(None, r#"{"a":1}"#)));
        assert_eq!(o.state, RowState::Succeeded);
        assert_eq!(o.response.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(o.status_code, Some(200));
        assert_eq!(o.request_id.as_deref(), Some("req-1"));
        assert_eq!(o.error, None);
    }

    #[test]
    fn a_function_error_is_final() {
        let o = classify(
            2,
            1,
            3,
            "f",
            Ok(ok(Some("Unhandled"), r#"{"errorMessage":"boom"}"#)),
        );
        assert_eq!(o.state, RowState::Failed);
        assert_eq!(o.function_error.as_deref(), Some("Unhandled"));
        assert_eq!(o.response.as_deref(), Some(r#"{"errorMessage":"boom"}"#));
        assert_eq!(
            o.error.as_deref(),
            Some("lambda function f returned error \"Unhandled\": boom")
        );
    }

    #[test]
    fn throttling_is_retried_then_final() {
        let o = classify(
            3,
            1,
            3,
            "f",
            Err((throttled(), Some(Duration::from_secs(2)))),
        );
        assert_eq!(o.state, RowState::Queued);
        assert_eq!(o.retry_in_ms, Some(2000.0));
        assert_eq!(o.status_code, Some(429));
        assert_eq!(
            o.error.as_deref(),
            Some("lambda returned TooManyRequestsException for f: Rate exceeded")
        );
        let o = classify(3, 3, 3, "f", Err((throttled(), None)));
        assert_eq!(o.state, RowState::Failed);
        assert_eq!(
            o.error.as_deref(),
            Some("lambda returned TooManyRequestsException for f: Rate exceeded (gave up after 3 attempts)")
        );
    }

    #[test]
    fn a_retryable_error_of_a_single_attempt_does_not_say_it_gave_up() {
        let o = classify(5, 1, 1, "f", Err((throttled(), None)));
        assert_eq!(o.state, RowState::Failed);
        assert_eq!(o.retry_in_ms, None);
        assert_eq!(
            o.error.as_deref(),
            Some("lambda returned TooManyRequestsException for f: Rate exceeded")
        );
    }

    #[test]
    fn client_errors_are_final_at_once() {
        let e = CoreError::Service {
            function: "f".into(),
            code: "ResourceNotFoundException".into(),
            message: "Function not found".into(),
            status: 404,
            request_id: None,
        };
        let o = classify(4, 1, 3, "f", Err((e, None)));
        assert_eq!(o.state, RowState::Failed);
        assert_eq!(o.retry_in_ms, None);
        assert_eq!(
            o.error.as_deref(),
            Some("lambda returned ResourceNotFoundException for f: Function not found")
        );
    }
}
