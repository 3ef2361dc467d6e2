//! Sending invocations and reading their outcomes: one call, or many with
//! bounded concurrency, and mapping SDK errors to [`CoreError`].

use std::cell::RefCell;
use std::error::Error as StdError;
use std::future::Future;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType as SdkInvocationType, LogType as SdkLogType};
use bytes::Bytes;
use futures::stream::{LocalBoxStream, StreamExt};
use futures::TryFutureExt;

use crate::batch::{self, BatchFormat, BatchMeta};
use crate::client::LambdaClient;
use crate::error::{CoreError, CoreResult};
use crate::fanout;
use crate::limits;
use crate::measure::{CallLog, CallStats};
pub use crate::outcome::InvokeOutcome;
use crate::request::{InvocationType, InvokeRequest, LogType};
use crate::retry::{self, Decision, Retrier};
use crate::throttle;

fn sdk_invocation_type(t: InvocationType) -> SdkInvocationType {
    match t {
        InvocationType::RequestResponse => SdkInvocationType::RequestResponse,
        InvocationType::Event => SdkInvocationType::Event,
        InvocationType::DryRun => SdkInvocationType::DryRun,
    }
}

fn sdk_log_type(t: LogType) -> SdkLogType {
    match t {
        LogType::None => SdkLogType::None,
        LogType::Tail => SdkLogType::Tail,
    }
}

/// The innermost cause of an error, which is the part a person can act on
/// ("Connection refused (os error 111)").
fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Whether the SDK failed while getting credentials (the default chain, a
/// profile, or assuming `role_arn`) rather than while talking to Lambda.
fn is_identity_failure(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if text.contains("credential") || text.contains("identity") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Functions asked for per ListFunctions page (the service's largest).
const LIST_PAGE_SIZE: i32 = 50;
/// How messages name a ListFunctions call, where they name a function.
const LIST_FUNCTIONS: &str = "ListFunctions";

/// The error, and the server's Retry-After if it sent one; `function` is
/// what the call was about, for messages.
fn map_sdk_error<E>(
    err: SdkError<E>,
    client: &LambdaClient,
    function: &str,
) -> (CoreError, Option<std::time::Duration>)
where
    E: ProvideErrorMetadata + RequestId + StdError + Send + Sync + 'static,
{
    let retry_after = match &err {
        SdkError::ServiceError(ctx) => ctx
            .raw()
            .headers()
            .get("retry-after")
            .and_then(retry::parse_retry_after),
        _ => None,
    };
    // A response refused by crate::limits, whichever way the SDK
    // wraps the refusal (an interceptor error, or the body's read error).
    if let Some(exceeded) = limits::find(&err) {
        return (exceeded.clone().into_core(function), None);
    }
    let error = match &err {
        SdkError::TimeoutError(_) => CoreError::RequestTimeout {
            function: function.to_string(),
            limit_ms: client.request_timeout_ms,
        },
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                CoreError::ConnectTimeout {
                    limit_ms: client.connect_timeout_ms,
                }
            } else if is_identity_failure(&err) {
                CoreError::Credentials(root_cause(&err))
            } else {
                CoreError::Connect(root_cause(&err))
            }
        }
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            CoreError::Service {
                function: function.to_string(),
                code: e.code().unwrap_or("UnknownError").to_string(),
                message: e
                    .message()
                    .unwrap_or("the response body is not an AWS error")
                    .to_string(),
                status: ctx.raw().status().as_u16(),
                request_id: e.request_id().map(str::to_string),
            }
        }
        SdkError::ResponseError(_) => CoreError::Response {
            function: function.to_string(),
            message: root_cause(&err),
        },
        _ => {
            let cause = root_cause(&err);
            if is_identity_failure(&err) {
                CoreError::Credentials(cause)
            } else {
                CoreError::Other {
                    function: function.to_string(),
                    message: cause,
                }
            }
        }
    };
    (error, retry_after)
}

impl LambdaClient {
    /// Sends one invocation, trying again as `retry` allows, up to
    /// `max_attempts` attempts in all, and leaves its statistics in `log`
    /// (a call dropped before it ends leaves none).
    ///
    /// The request is consumed: the last attempt hands the payload to the
    /// SDK, so a large payload is freed once sent rather than held while the
    /// response comes back.
    pub async fn invoke(&self, req: InvokeRequest, log: &CallLog) -> CoreResult<InvokeOutcome> {
        self.invoke_rows(req, 1, log).await
    }

    /// [`LambdaClient::invoke`] of a request that carries `rows` rows.
    async fn invoke_rows(
        &self,
        req: InvokeRequest,
        rows: u64,
        log: &CallLog,
    ) -> CoreResult<InvokeOutcome> {
        let _running = log.start();
        let started = std::time::Instant::now();
        let bytes_sent = req.payload.len() as u64;
        let display = req.target.display.clone();
        let (result, attempts) = self.invoke_with_retries(req).await;
        log.finish(
            CallStats::of(
                result.as_ref(),
                display,
                attempts,
                started.elapsed(),
                bytes_sent,
            )
            .with_rows(rows),
        );
        result
    }

    /// Sends `rows` (each a payload's JSON text) as batches of `format`,
    /// each request otherwise `shared` (its payload unused), and gives
    /// each row its outcome (see [`batch::split`]). A batch Lambda refuses
    /// as too large is sent again as two halves (see
    /// [`batch::send_halving`]); each request carries `meta`, with a
    /// request id of its own.
    pub async fn invoke_batch(
        &self,
        format: BatchFormat,
        meta: &BatchMeta,
        shared: &InvokeRequest,
        rows: &[Bytes],
        log: &CallLog,
    ) -> CoreResult<Vec<InvokeOutcome>> {
        let texts = rows
            .iter()
            .map(|r| std::str::from_utf8(r))
            .collect::<Result<Vec<&str>, _>>()
            .map_err(|_| CoreError::Other {
                function: shared.target.display.clone(),
                message: "a payload is not UTF-8".into(),
            })?;
        let send = |range: Range<usize>, part: usize| {
            let meta = BatchMeta {
                request_id: batch::part_id(&meta.request_id, part),
                ..meta.clone()
            };
            let body = batch::encode(format, &meta, &texts[range.clone()]);
            let req = InvokeRequest {
                payload: Bytes::from(body),
                ..shared.clone()
            };
            async move {
                let outcome = self.invoke_rows(req, range.len() as u64, log).await?;
                Ok(batch::split(format, outcome, range.len()))
            }
        };
        batch::send_halving(0..rows.len(), send, batch::too_large).await
    }

    /// The result, and the number of attempts made.
    async fn invoke_with_retries(
        &self,
        mut req: InvokeRequest,
    ) -> (CoreResult<InvokeOutcome>, u32) {
        let payload = RefCell::new(std::mem::take(&mut req.payload));
        let req = &req;
        self.retrying(|attempt| {
            let payload = if attempt >= self.max_attempts {
                payload.take()
            } else {
                payload.borrow().clone()
            };
            self.invoke_once(req, payload)
        })
        .await
    }

    /// Runs `once(attempt)` for attempts 1, 2, ... as [`retry::decide`]
    /// allows, up to `max_attempts`, sleeping between them; returns the
    /// result and the attempts made. An error after a retry, or a retryable
    /// one, says it gave up ([`Retrier::InProcess`]).
    async fn retrying<T, F, Fut>(&self, mut once: F) -> (CoreResult<T>, u32)
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, (CoreError, Option<Duration>)>>,
    {
        let mut attempt = 1;
        loop {
            match once(attempt).await {
                Ok(value) => return (Ok(value), attempt),
                Err((error, retry_after)) => match retry::decide(
                    error,
                    retry_after,
                    attempt,
                    self.max_attempts,
                    Retrier::InProcess,
                ) {
                    Decision::Retry { after, .. } => {
                        attempt += 1;
                        tokio::time::sleep(after).await;
                    }
                    Decision::GiveUp(error) => return (Err(error), attempt),
                },
            }
        }
    }

    /// The names of every function of the region, from ListFunctions (all
    /// pages, each retried as an invocation is), sorted.
    pub async fn list_function_names(&self) -> CoreResult<Vec<String>> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .retrying(|_| {
                    self.inner
                        .list_functions()
                        .set_marker(marker.clone())
                        .max_items(LIST_PAGE_SIZE)
                        .send()
                        .map_err(|e| map_sdk_error(e, self, LIST_FUNCTIONS))
                })
                .await
                .0?;
            names.extend(
                page.functions()
                    .iter()
                    .filter_map(|f| f.function_name().map(str::to_string)),
            );
            match page.next_marker() {
                Some(next) if !next.is_empty() && marker.as_deref() != Some(next) => {
                    marker = Some(next.to_string())
                }
                _ => break,
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Sends one invocation once, with no retry: the error comes with the
    /// server's Retry-After, for a caller that schedules its own retries
    /// (the after-commit queue, deciding with [`retry::decide`] and
    /// [`Retrier::Queue`]).
    pub async fn send_once(
        &self,
        req: &InvokeRequest,
    ) -> Result<InvokeOutcome, (CoreError, Option<std::time::Duration>)> {
        self.invoke_once(req, req.payload.clone()).await
    }

    /// Records a hold on the function after a 429 or a Retry-After, for
    /// every caller that shares the table ([`throttle`]).
    fn hold_if_throttled(&self, key: u64, error: &CoreError, retry_after: Option<Duration>) {
        let throttled = matches!(error, CoreError::Service { status, code, .. }
            if *status == 429 || code == "TooManyRequestsException");
        if throttled || retry_after.is_some() {
            let length =
                throttle::hold_length(retry_after, Duration::from_millis(self.request_timeout_ms));
            let now = throttle::now_ms();
            throttle::table().hold(key, now + length.as_millis() as u64, now);
            throttle::note_throttled(key);
        }
    }

    async fn invoke_once(
        &self,
        req: &InvokeRequest,
        payload: Bytes,
    ) -> Result<InvokeOutcome, (CoreError, Option<std::time::Duration>)> {
        let hold_key = throttle::key(&self.region, &req.target.function_name);
        throttle::wait_while_held(hold_key).await;
        let out = self
            .inner
            .invoke()
            .function_name(req.target.function_name.clone())
            .set_qualifier(req.target.qualifier.clone())
            .invocation_type(sdk_invocation_type(req.invocation_type))
            .log_type(sdk_log_type(req.log_type))
            .set_client_context(req.client_context.clone())
            .payload(Blob::from_maybe_shared(payload))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, self, &req.target.display))
            .map_err(|(error, retry_after)| {
                self.hold_if_throttled(hold_key, &error, retry_after);
                (error, retry_after)
            })?;
        throttle::note_answered(hold_key);
        let request_id = out.request_id().map(str::to_string);
        let payload = out.payload.map(Blob::into_bytes).filter(|p| !p.is_empty());
        Ok(InvokeOutcome {
            request_id,
            status_code: out.status_code,
            payload,
            executed_version: out.executed_version,
            log_result: out.log_result,
            function_error: out.function_error,
        })
    }

    /// Sends every request, at most `concurrency` at a time, yielding outcomes
    /// in request order (see `fanout`). Nothing is sent until the stream is
    /// polled, and a request is only started when a slot frees up and fewer
    /// than `fanout::WINDOW_FACTOR * concurrency` requests are ahead of the
    /// outcome awaited, so a consumer that stops early (LIMIT) leaves the
    /// rest unsent. Each finished call leaves its statistics in `log`.
    /// Requests are taken from `requests` as their calls start, so a lazy
    /// iterator builds each only then. A function not known to answer
    /// starts slowly (two calls, one more per finished call, see
    /// [`fanout::Ordered::slow_start`] and [`LambdaClient::starts_slowly`]).
    pub fn invoke_all<I>(
        &self,
        requests: I,
        concurrency: usize,
        log: Rc<CallLog>,
    ) -> LocalBoxStream<'static, CoreResult<InvokeOutcome>>
    where
        I: IntoIterator<Item = InvokeRequest>,
        I::IntoIter: Unpin + 'static,
    {
        let client = self.clone();
        let mut requests = requests.into_iter().peekable();
        let slowly = requests
            .peek()
            .is_some_and(|r| self.starts_slowly(&r.target.function_name));
        let fan_out = fanout::ordered(requests, concurrency, move |req| {
            let (client, log) = (client.clone(), log.clone());
            async move { client.invoke(req, &log).await }
        });
        if slowly {
            fan_out.slow_start().boxed_local()
        } else {
            fan_out.boxed_local()
        }
    }

    /// Whether a fan-out to `function_name` starts slowly: until this
    /// process has had an answer from it, again after a 429, and while it
    /// is held ([`throttle::start_slowly`]).
    pub fn starts_slowly(&self, function_name: &str) -> bool {
        throttle::start_slowly(throttle::key(&self.region, function_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::answered as outcome;

    #[test]
    fn function_error_takes_error_message() {
        let e = outcome(
            Some("Unhandled"),
            r#"{"errorMessage":"boom","errorType":"Exception"}"#,
        )
        .raise_function_error("f")
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "lambda function f returned error \"Unhandled\": boom"
        );
        match e {
            CoreError::FunctionError { payload, .. } => {
                assert_eq!(
                    payload,
                    r#"{"errorMessage":"boom","errorType":"Exception"}"#
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn function_error_without_json_keeps_the_body() {
        let e = outcome(Some("Handled"), "plain text")
            .raise_function_error("f")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "lambda function f returned error \"Handled\": plain text"
        );
    }

    #[test]
    fn success_passes_through() {
        let o = outcome(None, "{}");
        assert_eq!(o.clone().raise_function_error("f").unwrap(), o);
    }
}
