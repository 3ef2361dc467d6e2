//! What one invocation returned: a leaf type, shared by sending
//! (`crate::invoke`) and measuring (`crate::measure`).

use bytes::Bytes;

use crate::error::{CoreError, CoreResult};

/// What one invocation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvokeOutcome {
    pub status_code: i32,
    /// The response payload (JSON text); `None` when the service sent none.
    pub payload: Option<Bytes>,
    pub executed_version: Option<String>,
    /// Base64 tail of the log, with `LogType::Tail`.
    pub log_result: Option<String>,
    /// `Handled` or `Unhandled` when the function failed.
    pub function_error: Option<String>,
    /// The service's request id, when it sent one.
    pub request_id: Option<String>,
}

impl InvokeOutcome {
    /// Turns a function error into [`CoreError::FunctionError`]; other
    /// outcomes pass through.
    pub fn raise_function_error(self, display: &str) -> CoreResult<Self> {
        match &self.function_error {
            None => Ok(self),
            Some(kind) => {
                let payload = self
                    .payload
                    .as_deref()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&payload)
                    .ok()
                    .and_then(|v| {
                        v.get("errorMessage")
                            .and_then(|m| m.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| payload.clone());
                Err(CoreError::FunctionError {
                    function: display.to_string(),
                    kind: kind.clone(),
                    message,
                    payload,
                })
            }
        }
    }
}

/// A 200 from `$LATEST` with `payload` and request id `req-1`, for unit
/// tests: this crate's, and the extension's (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub fn answered(function_error: Option<&str>, payload: &str) -> InvokeOutcome {
    InvokeOutcome {
        status_code: 200,
        payload: Some(Bytes::copy_from_slice(payload.as_bytes())),
        executed_version: Some("$LATEST".into()),
        log_result: None,
        function_error: function_error.map(str::to_string),
        request_id: Some("req-1".into()),
    }
}
