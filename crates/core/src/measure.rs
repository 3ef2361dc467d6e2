//! What each invocation cost and how it ended, for statistics and EXPLAIN
//! ANALYZE: every finished call leaves a [`CallStats`] in a [`CallLog`],
//! which the SQL layer drains on the backend's main thread.
//!
//! Every call ends in exactly one [`CallClass`], so the classes of a set of
//! calls add up to its number of calls; retries are counted apart.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::error::CoreError;
use crate::outcome::InvokeOutcome;

/// How a call ended, after any retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallClass {
    /// The function ran and returned (or, for Event and DryRun, was accepted).
    Succeeded,
    /// The function ran and failed (`X-Amz-Function-Error`).
    FunctionError,
    /// The service answered 429 (TooManyRequestsException) to the last attempt.
    Throttled,
    /// Another 4xx, or a failure on our side before a request went out
    /// (no credentials, a request the SDK could not build).
    ClientError,
    /// A 5xx from the service.
    ServiceError,
    /// No response within `request_timeout_ms`.
    Timeout,
    /// Could not connect (refused, unreachable, connect timeout), or the
    /// connection failed before the response was read.
    ConnectError,
}

/// The class of a failed call; a call given up after retries is classed by
/// its last attempt.
pub fn error_class(e: &CoreError) -> CallClass {
    match e {
        CoreError::GaveUp { last, .. } => error_class(last),
        CoreError::Service { status, code, .. } => {
            if *status == 429 || code == "TooManyRequestsException" {
                CallClass::Throttled
            } else if *status >= 500 {
                CallClass::ServiceError
            } else {
                CallClass::ClientError
            }
        }
        CoreError::RequestTimeout { .. } => CallClass::Timeout,
        CoreError::Connect(_) | CoreError::ConnectTimeout { .. } | CoreError::Response { .. } => {
            CallClass::ConnectError
        }
        // The function ran and answered what lambda_fdw cannot take.
        CoreError::ResponseTooLarge { .. } | CoreError::HeaderTooLong { .. } => {
            CallClass::ServiceError
        }
        _ => CallClass::ClientError,
    }
}

/// One finished call, or one attempt that will be tried again later.
#[derive(Clone, Debug, PartialEq)]
pub struct CallStats {
    /// The function as resolved, with its qualifier (`ResolvedFunction::display`).
    pub function: String,
    /// How the call ended; `None` for an attempt the after-commit queue
    /// will make again (it counts as a retry only).
    pub class: Option<CallClass>,
    /// Attempts made again within this call.
    pub retries: u32,
    /// From the first attempt's start to the outcome, backoff included.
    pub elapsed: Duration,
    /// The request payload's size (once per call, however many attempts).
    pub bytes_sent: u64,
    /// The response payload's size.
    pub bytes_received: u64,
    /// The rows the call carried: 1, or a batch's rows.
    pub rows: u64,
    /// Why it failed, as the error message says it (no secrets: messages
    /// never carry any).
    pub error: Option<String>,
}

impl CallStats {
    /// The statistics of a call to `function` (as resolved, with its
    /// qualifier) that ended with `result` after `attempts` attempts.
    pub fn of(
        result: Result<&InvokeOutcome, &CoreError>,
        function: String,
        attempts: u32,
        elapsed: Duration,
        bytes_sent: u64,
    ) -> Self {
        let (class, bytes_received, error) = match result {
            Ok(out) => {
                let received = out.payload.as_ref().map_or(0, |p| p.len() as u64);
                match out.function_error {
                    None => (CallClass::Succeeded, received, None),
                    Some(_) => (
                        CallClass::FunctionError,
                        received,
                        out.clone()
                            .raise_function_error(&function)
                            .err()
                            .map(|e| e.to_string()),
                    ),
                }
            }
            Err(e) => (error_class(e), 0, Some(e.to_string())),
        };
        Self {
            function,
            class: Some(class),
            retries: attempts.saturating_sub(1),
            elapsed,
            bytes_sent,
            bytes_received,
            rows: 1,
            error,
        }
    }

    /// The statistics of a call that carried `rows` rows (a batch).
    pub fn with_rows(self, rows: u64) -> Self {
        Self { rows, ..self }
    }

    /// This attempt, made again later by its caller (the after-commit
    /// queue): a retry, not a call; its error is kept.
    pub fn to_be_retried(self) -> Self {
        Self {
            class: None,
            retries: 1,
            elapsed: Duration::ZERO,
            bytes_sent: 0,
            bytes_received: 0,
            ..self
        }
    }
}

/// The calls of one statement or scan: the finished ones waiting to be
/// counted, and how many run at once. Single-threaded, as the backend's
/// runtime is.
#[derive(Default)]
pub struct CallLog {
    finished: RefCell<Vec<CallStats>>,
    running: Cell<usize>,
    peak: Cell<usize>,
}

/// A call in flight; dropping it (the call finished, or was dropped by a
/// cancel) takes it off the running count.
pub struct Running<'a> {
    log: &'a CallLog,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.log
            .running
            .set(self.log.running.get().saturating_sub(1));
    }
}

impl CallLog {
    /// Marks a call as started.
    pub fn start(&self) -> Running<'_> {
        let running = self.running.get() + 1;
        self.running.set(running);
        self.peak.set(self.peak.get().max(running));
        Running { log: self }
    }

    pub fn finish(&self, stats: CallStats) {
        self.finished.borrow_mut().push(stats);
    }

    /// The calls finished since the last drain.
    pub fn drain(&self) -> Vec<CallStats> {
        std::mem::take(&mut *self.finished.borrow_mut())
    }

    /// The most calls that ran at once.
    pub fn peak(&self) -> usize {
        self.peak.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::service_error as service;
    use crate::outcome::answered as ok;

    #[test]
    fn every_error_has_one_class() {
        use CallClass::*;
        let cases = [
            (service(429, "TooManyRequestsException"), Throttled),
            (service(400, "TooManyRequestsException"), Throttled),
            (service(404, "ResourceNotFoundException"), ClientError),
            (service(413, "RequestTooLargeException"), ClientError),
            (service(403, "AccessDeniedException"), ClientError),
            (service(500, "ServiceException"), ServiceError),
            (service(502, "KMSAccessDeniedException"), ServiceError),
            (
                CoreError::RequestTimeout {
                    function: "f".into(),
                    limit_ms: 10,
                },
                Timeout,
            ),
            (CoreError::ConnectTimeout { limit_ms: 10 }, ConnectError),
            (CoreError::Connect("refused".into()), ConnectError),
            (
                CoreError::Response {
                    function: "f".into(),
                    message: "closed".into(),
                },
                ConnectError,
            ),
            (CoreError::Credentials("none".into()), ClientError),
            (
                CoreError::Other {
                    function: "f".into(),
                    message: "m".into(),
                },
                ClientError,
            ),
        ];
        for (e, class) in cases {
            assert_eq!(error_class(&e), class, "{e}");
        }
        let gave_up = CoreError::GaveUp {
            attempts: 3,
            last: Box::new(service(429, "TooManyRequestsException")),
        };
        assert_eq!(error_class(&gave_up), Throttled);
    }

    #[test]
    fn stats_of_outcomes() {
        let s = CallStats::of(
            Ok(&ok(None, r#"{"a":1}"#)),
            "f".into(),
            2,
            Duration::from_millis(5),
            9,
        );
        assert_eq!(s.class, Some(CallClass::Succeeded));
        assert_eq!((s.retries, s.bytes_sent, s.bytes_received), (1, 9, 7));
        assert_eq!(s.error, None);
        assert_eq!(s.function, "f");

        let s = CallStats::of(
            Ok(&ok(Some("Unhandled"), r#"{"errorMessage":"boom"}"#)),
            "f".into(),
            1,
            Duration::ZERO,
            2,
        );
        assert_eq!(s.class, Some(CallClass::FunctionError));
        assert_eq!(s.retries, 0);
        assert_eq!(
            s.error.as_deref(),
            Some("lambda function f returned error \"Unhandled\": boom")
        );

        let e = CoreError::Connect("Connection refused (os error 111)".into());
        let s = CallStats::of(Err(&e), "f".into(), 1, Duration::ZERO, 2);
        assert_eq!(s.class, Some(CallClass::ConnectError));
        assert_eq!(s.bytes_received, 0);
        assert_eq!(s.error, Some(e.to_string()));

        let r = s.to_be_retried();
        assert_eq!((r.class, r.retries, r.bytes_sent), (None, 1, 0));
        assert_eq!(r.error, Some(e.to_string()));
    }

    #[test]
    fn log_counts_the_peak_and_drains() {
        let log = CallLog::default();
        {
            let _a = log.start();
            let _b = log.start();
            {
                let _c = log.start();
            }
            let _d = log.start();
        }
        let _e = log.start();
        assert_eq!(log.peak(), 3);
        log.finish(CallStats::of(
            Err(&CoreError::NoRegion),
            "f".into(),
            1,
            Duration::ZERO,
            0,
        ));
        assert_eq!(log.drain().len(), 1);
        assert!(log.drain().is_empty());
    }
}
