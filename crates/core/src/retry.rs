//! When a failed invocation is tried again, and how long to wait first.
//!
//! Retried: throttling (429), server-side failures (5xx) other than ones the
//! service means as final, connections refused, reset or cut short, and
//! connect timeouts. Never retried: request timeouts (the function may still
//! be running), client errors (400, 403, 404, 413, ...), function errors, and
//! anything checked before sending. A retried synchronous call can run the
//! function twice; `max_attempts = 1` turns retries off.
//!
//! [`decide`] is the one decision every caller makes after a failed attempt:
//! the scan and `aws_lambda.invoke` (through [`LambdaClient::invoke`]), IMPORT
//! FOREIGN SCHEMA's ListFunctions, and the after-commit queue's worker. Its
//! [`Retrier`] says who retries, which is the one way the callers differ:
//! how a final error is worded (see there).
//!
//! [`LambdaClient::invoke`]: crate::LambdaClient::invoke

use std::cell::Cell;
use std::time::Duration;

use crate::error::CoreError;

/// First backoff step; doubles per attempt.
pub const BASE_DELAY: Duration = Duration::from_millis(100);
/// Longest computed backoff.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Longest Retry-After we honour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// 5xx error codes that describe a configuration problem, not a passing one.
const FINAL_SERVER_CODES: &[&str] = &[
    "EC2AccessDeniedException",
    "ENILimitReachedException",
    "InvalidSecurityGroupIDException",
    "InvalidSubnetIDException",
    "InvalidZipFileException",
    "InvalidRuntimeException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
    "SubnetIPAddressLimitReachedException",
    "EFSMountFailureException",
    "EFSMountConnectivityException",
    "EFSIOException",
    "EFSMountTimeoutException",
    "SnapStartException",
    "SnapStartNotReadyException",
    "SnapStartTimeoutException",
];

pub fn is_retryable(e: &CoreError) -> bool {
    match e {
        CoreError::Service { status, code, .. } => {
            *status == 429
                || code == "TooManyRequestsException"
                || (*status >= 500 && !FINAL_SERVER_CODES.contains(&code.as_str()))
        }
        CoreError::Connect(_) | CoreError::ConnectTimeout { .. } | CoreError::Response { .. } => {
            true
        }
        _ => false,
    }
}

/// Parses a Retry-After header given in seconds (an HTTP date is ignored:
/// Lambda sends seconds).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if secs.is_finite() && secs >= 0.0 {
        Some(Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER))
    } else {
        None
    }
}

/// Who makes the next attempt, which decides how a final error is worded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retrier {
    /// The call itself, sleeping between attempts, within one statement
    /// (the scan, `aws_lambda.invoke`, ListFunctions): the statement's one
    /// error says "(gave up after N attempts)" once a retry was made, and
    /// for a retryable error also after the first (retries ran out at once,
    /// or `max_attempts = 1` turned them off).
    InProcess,
    /// The queue's worker: each attempt is a round of its own, its count
    /// kept in the row (`attempts`) and the wait written to its
    /// `next_attempt_at`; the error recorded in the row says it gave up
    /// only once a retry was made (a first attempt's error is recorded as
    /// it came, the row's `attempts` saying 1).
    Queue,
}

/// What to do after attempt `attempt` failed.
#[derive(Debug)]
pub enum Decision {
    /// Make attempt `attempt + 1` after waiting `after`; `error` is what
    /// this attempt got.
    Retry { after: Duration, error: CoreError },
    /// No more attempts: the error to report, saying it gave up as the
    /// [`Retrier`] words it.
    GiveUp(CoreError),
}

/// The one retry decision: attempt `attempt` (1, 2, ...) of at most
/// `max_attempts` failed with `error`, the server asking for `retry_after`
/// if it sent one. Retried while [`is_retryable`] and attempts are left,
/// after [`delay_before`] the next one.
pub fn decide(
    error: CoreError,
    retry_after: Option<Duration>,
    attempt: u32,
    max_attempts: u32,
    retrier: Retrier,
) -> Decision {
    let retryable = is_retryable(&error);
    if retryable && attempt < max_attempts {
        return Decision::Retry {
            after: delay_before(attempt + 1, retry_after),
            error,
        };
    }
    let gave_up = attempt > 1 || (retryable && retrier == Retrier::InProcess);
    Decision::GiveUp(if gave_up {
        CoreError::GaveUp {
            attempts: attempt,
            last: Box::new(error),
        }
    } else {
        error
    })
}

thread_local! {
    static JITTER_STATE: Cell<u64> = Cell::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1,
    );
}

/// A number in [0, 1) from a per-thread xorshift generator.
fn jitter_fraction() -> f64 {
    JITTER_STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// The wait before attempt `next_attempt` (2, 3, ...): the server's
/// Retry-After if it sent one, else exponential backoff with jitter
/// (between half and all of `BASE_DELAY * 2^(n-2)`, capped).
pub fn delay_before(next_attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d;
    }
    delay_with_fraction(next_attempt, jitter_fraction())
}

fn delay_with_fraction(next_attempt: u32, fraction: f64) -> Duration {
    let exp = next_attempt.saturating_sub(2).min(16);
    let full = BASE_DELAY.saturating_mul(1u32 << exp).min(MAX_DELAY);
    full.mul_f64(0.5 + fraction / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::service_error as service;

    #[test]
    fn what_is_retried() {
        assert!(is_retryable(&service(429, "TooManyRequestsException")));
        assert!(is_retryable(&service(500, "ServiceException")));
        assert!(is_retryable(&service(502, "ResourceNotReadyException")));
        assert!(is_retryable(&service(503, "UnknownError")));
        assert!(is_retryable(&CoreError::Connect(
            "Connection reset by peer".into()
        )));
        assert!(is_retryable(&CoreError::ConnectTimeout { limit_ms: 10 }));
        assert!(is_retryable(&CoreError::Response {
            function: "f".into(),
            message: "connection closed before message completed".into()
        }));
    }

    #[test]
    fn what_is_final() {
        for (status, code) in [
            (404, "ResourceNotFoundException"),
            (400, "InvalidRequestContentException"),
            (400, "InvalidParameterValueException"),
            (413, "RequestTooLargeException"),
            (403, "AccessDeniedException"),
            (403, "UnrecognizedClientException"),
            (502, "KMSAccessDeniedException"),
            (502, "EC2AccessDeniedException"),
        ] {
            assert!(!is_retryable(&service(status, code)), "{status} {code}");
        }
        assert!(!is_retryable(&CoreError::RequestTimeout {
            function: "f".into(),
            limit_ms: 10
        }));
        assert!(!is_retryable(&CoreError::Credentials("none".into())));
        assert!(!is_retryable(&CoreError::NoRegion));
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("3600"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    fn given_up(d: Decision) -> String {
        match d {
            Decision::GiveUp(e) => e.to_string(),
            Decision::Retry { .. } => panic!("retried"),
        }
    }

    #[test]
    fn a_retryable_error_is_retried_while_attempts_are_left() {
        for retrier in [Retrier::InProcess, Retrier::Queue] {
            let after = Some(Duration::from_secs(2));
            match decide(
                service(429, "TooManyRequestsException"),
                after,
                1,
                3,
                retrier,
            ) {
                Decision::Retry { after, error } => {
                    assert_eq!(after, Duration::from_secs(2));
                    assert_eq!(
                        error.to_string(),
                        "lambda returned TooManyRequestsException for f: m"
                    );
                }
                other => panic!("{other:?}"),
            }
            match decide(service(503, "ServiceException"), None, 2, 3, retrier) {
                Decision::Retry { after, .. } => {
                    assert!(
                        after >= Duration::from_millis(100) && after <= Duration::from_millis(200)
                    )
                }
                other => panic!("{other:?}"),
            }
            let last = decide(service(503, "ServiceException"), None, 3, 3, retrier);
            assert_eq!(
                given_up(last),
                "lambda returned ServiceException for f: m (gave up after 3 attempts)"
            );
        }
    }

    #[test]
    fn the_retriers_word_a_first_attempt_differently() {
        let refused = || CoreError::Connect("Connection refused (os error 111)".into());
        assert_eq!(
            given_up(decide(refused(), None, 1, 1, Retrier::InProcess)),
            "could not connect to lambda endpoint: Connection refused (os error 111) (gave up after 1 attempt)"
        );
        assert_eq!(
            given_up(decide(refused(), None, 1, 1, Retrier::Queue)),
            "could not connect to lambda endpoint: Connection refused (os error 111)"
        );
        // A final error: said as it came on the first attempt, as given up
        // after a retry, by both.
        for retrier in [Retrier::InProcess, Retrier::Queue] {
            let missing = || service(404, "ResourceNotFoundException");
            assert_eq!(
                given_up(decide(missing(), None, 1, 3, retrier)),
                "lambda returned ResourceNotFoundException for f: m"
            );
            assert_eq!(
                given_up(decide(missing(), None, 2, 3, retrier)),
                "lambda returned ResourceNotFoundException for f: m (gave up after 2 attempts)"
            );
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(delay_with_fraction(2, 1.0), Duration::from_millis(100));
        assert_eq!(delay_with_fraction(2, 0.0), Duration::from_millis(50));
        assert_eq!(delay_with_fraction(3, 1.0), Duration::from_millis(200));
        assert_eq!(delay_with_fraction(4, 1.0), Duration::from_millis(400));
        assert_eq!(delay_with_fraction(30, 1.0), MAX_DELAY);
        assert_eq!(
            delay_before(2, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        let d = delay_before(2, None);
        assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
    }
}
