//! The request model: what one invocation sends, checked before any network call.

use base64::Engine as _;
use bytes::Bytes;

use crate::error::{CoreError, CoreResult};
use crate::name::ResolvedFunction;

/// Largest base64-encoded client context Lambda accepts.
pub const MAX_CLIENT_CONTEXT_BYTES: usize = 3583;
/// Largest payload of a synchronous (RequestResponse, DryRun) invocation.
pub const MAX_SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Largest payload of an asynchronous (Event) invocation.
pub const MAX_EVENT_PAYLOAD_BYTES: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

impl InvocationType {
    pub fn parse(s: &str) -> CoreResult<Self> {
        match s {
            "RequestResponse" => Ok(Self::RequestResponse),
            "Event" => Ok(Self::Event),
            "DryRun" => Ok(Self::DryRun),
            other => Err(CoreError::InvalidInvocationType(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestResponse => "RequestResponse",
            Self::Event => "Event",
            Self::DryRun => "DryRun",
        }
    }

    pub fn max_payload_bytes(self) -> usize {
        match self {
            Self::Event => MAX_EVENT_PAYLOAD_BYTES,
            Self::RequestResponse | Self::DryRun => MAX_SYNC_PAYLOAD_BYTES,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogType {
    None,
    Tail,
}

impl LogType {
    pub fn parse(s: &str) -> CoreResult<Self> {
        match s {
            "None" => Ok(Self::None),
            "Tail" => Ok(Self::Tail),
            other => Err(CoreError::InvalidLogType(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Tail => "Tail",
        }
    }
}

/// Base64-encodes a client context given as JSON text, checking that it is an
/// object and fits Lambda's limit.
pub fn encode_client_context(json_text: &str) -> CoreResult<String> {
    if !json_text.trim_start().starts_with('{') {
        return Err(CoreError::ContextNotObject);
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(json_text.as_bytes());
    if encoded.len() > MAX_CLIENT_CONTEXT_BYTES {
        return Err(CoreError::ContextTooLarge {
            size: encoded.len(),
            limit: MAX_CLIENT_CONTEXT_BYTES,
        });
    }
    Ok(encoded)
}

/// The key under the client context's `custom` object that carries a queued
/// invocation's id, so that a function can recognise a repeated delivery.
pub const INVOCATION_ID_KEY: &str = "lambda_fdw_invocation_id";

/// The key under `custom` that carries the ids of the queued invocations a
/// batch request carries, in the order of its rows.
pub const INVOCATION_IDS_KEY: &str = "lambda_fdw_invocation_ids";

/// The keys under `custom` that only the queue sets.
pub const RESERVED_KEYS: [&str; 2] = [INVOCATION_ID_KEY, INVOCATION_IDS_KEY];

/// The longest client context, as JSON text, whose base64 encoding fits
/// [`MAX_CLIENT_CONTEXT_BYTES`] (2,685 bytes).
const MAX_CLIENT_CONTEXT_JSON_BYTES: usize = MAX_CLIENT_CONTEXT_BYTES / 4 * 3;

/// Refuses a caller's client context that sets a key only queued
/// invocations carry ([`RESERVED_KEYS`]), so that a function can trust it
/// for de-duplication; returns the context as it will be sent: the JSON
/// that was checked, written anew. A text this parser cannot read (a
/// number beyond a double, nesting past its depth limit) is refused rather
/// than sent unchecked, and of duplicate keys the function sees only the
/// one checked.
pub fn check_reserved_keys(context_json: &str) -> CoreResult<String> {
    let value = serde_json::from_str::<serde_json::Value>(context_json)
        .map_err(|e| CoreError::ContextUnreadable(e.to_string()))?;
    if let Some(custom) = value.get("custom") {
        if let Some(key) = RESERVED_KEYS.into_iter().find(|k| custom.get(k).is_some()) {
            return Err(CoreError::ReservedContextKey { key });
        }
    }
    Ok(value.to_string())
}

/// The user's context (a JSON object, or none) with `custom.<key>` set to
/// `value`; a user's context that sets a reserved key is refused.
fn context_with(
    context_json: Option<&str>,
    key: &str,
    value: serde_json::Value,
) -> CoreResult<String> {
    if let Some(text) = context_json {
        check_reserved_keys(text)?;
    }
    let mut context = match context_json {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(CoreError::ContextNotObject),
        },
    };
    let custom = context
        .entry("custom")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    let Some(custom) = custom.as_object_mut() else {
        return Err(CoreError::ContextCustomNotObject);
    };
    custom.insert(key.to_string(), value);
    Ok(serde_json::Value::Object(context).to_string())
}

/// The client context of a queued invocation: the user's context (a JSON
/// object, or none) with `custom.lambda_fdw_invocation_id` set to `id`.
/// A user's context that already sets it is refused.
pub fn context_with_invocation_id(context_json: Option<&str>, id: i64) -> CoreResult<String> {
    context_with(context_json, INVOCATION_ID_KEY, id.into())
}

/// The client context of a batch of queued invocations: the user's context
/// with `custom.lambda_fdw_invocation_ids` set to `ids`, in row order.
pub fn context_with_invocation_ids(context_json: Option<&str>, ids: &[i64]) -> CoreResult<String> {
    context_with(context_json, INVOCATION_IDS_KEY, ids.into())
}

/// How many of `ids`, from the first, fit in one batch's client context
/// ([`context_with_invocation_ids`]) within Lambda's limit: 0 when not
/// even the first does.
pub fn invocation_ids_that_fit(context_json: Option<&str>, ids: &[i64]) -> CoreResult<usize> {
    let mut length = context_with_invocation_ids(context_json, &[])?.len();
    let mut fit = 0;
    for (i, id) in ids.iter().enumerate() {
        length += id.to_string().len() + usize::from(i > 0);
        if length > MAX_CLIENT_CONTEXT_JSON_BYTES {
            break;
        }
        fit += 1;
    }
    Ok(fit)
}

/// One invocation, ready to send.
#[derive(Clone, Debug)]
pub struct InvokeRequest {
    pub target: ResolvedFunction,
    pub invocation_type: InvocationType,
    pub log_type: LogType,
    /// Base64 client context, already checked.
    pub client_context: Option<String>,
    /// JSON text of the payload; shared, not copied, by every attempt.
    pub payload: Bytes,
}

impl InvokeRequest {
    /// Builds a caller's request, checking the payload size for the
    /// invocation type and encoding the client context, which must not set
    /// the queue's invocation id.
    pub fn new(
        target: ResolvedFunction,
        invocation_type: InvocationType,
        log_type: LogType,
        context_json: Option<&str>,
        payload: impl Into<Bytes>,
    ) -> CoreResult<Self> {
        let checked = context_json.map(check_reserved_keys).transpose()?;
        Self::build(
            target,
            invocation_type,
            log_type,
            checked.as_deref(),
            payload.into(),
        )
    }

    /// Builds the request of queued invocation `id`: the user's context
    /// (checked as [`InvokeRequest::new`] checks it) with the id added.
    /// With `i64::MAX`, checks at queueing time that the request will fit
    /// whatever its id.
    pub fn queued(
        target: ResolvedFunction,
        invocation_type: InvocationType,
        context_json: Option<&str>,
        id: i64,
        payload: impl Into<Bytes>,
    ) -> CoreResult<Self> {
        let context = context_with_invocation_id(context_json, id)?;
        Self::build(
            target,
            invocation_type,
            LogType::None,
            Some(&context),
            payload.into(),
        )
    }

    /// Builds the request of a batch of queued invocations `ids` (in row
    /// order) whose body is `payload`: the user's context with the ids
    /// added.
    pub fn queued_batch(
        target: ResolvedFunction,
        invocation_type: InvocationType,
        context_json: Option<&str>,
        ids: &[i64],
        payload: impl Into<Bytes>,
    ) -> CoreResult<Self> {
        let context = context_with_invocation_ids(context_json, ids)?;
        Self::build(
            target,
            invocation_type,
            LogType::None,
            Some(&context),
            payload.into(),
        )
    }

    fn build(
        target: ResolvedFunction,
        invocation_type: InvocationType,
        log_type: LogType,
        context_json: Option<&str>,
        payload: Bytes,
    ) -> CoreResult<Self> {
        let limit = invocation_type.max_payload_bytes();
        if payload.len() > limit {
            return Err(CoreError::PayloadTooLarge {
                size: payload.len(),
                limit,
                invocation_type: invocation_type.as_str(),
            });
        }
        let client_context = context_json.map(encode_client_context).transpose()?;
        Ok(Self {
            target,
            invocation_type,
            log_type,
            client_context,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::parse_function_name;

    #[test]
    fn invocation_id_is_merged_into_the_context() {
        assert_eq!(
            context_with_invocation_id(None, 7).unwrap(),
            r#"{"custom":{"lambda_fdw_invocation_id":7}}"#
        );
        assert_eq!(
            context_with_invocation_id(Some(r#"{"env":{"a":"b"}}"#), 8).unwrap(),
            r#"{"custom":{"lambda_fdw_invocation_id":8},"env":{"a":"b"}}"#
        );
        assert_eq!(
            context_with_invocation_id(Some(r#"{"custom":{"k":"v"}}"#), 9).unwrap(),
            r#"{"custom":{"k":"v","lambda_fdw_invocation_id":9}}"#
        );
        // The id is the queue's alone: a user's context cannot carry one.
        assert!(matches!(
            context_with_invocation_id(Some(r#"{"custom":{"lambda_fdw_invocation_id":1}}"#), 2),
            Err(CoreError::ReservedContextKey {
                key: INVOCATION_ID_KEY
            })
        ));
    }

    #[test]
    fn a_callers_context_cannot_set_the_invocation_id() {
        let target = parse_function_name("f")
            .unwrap()
            .resolve(Some("us-east-1"), None, None)
            .unwrap();
        let forged = r#"{"custom":{"lambda_fdw_invocation_id":42}}"#;
        let e = InvokeRequest::new(
            target.clone(),
            InvocationType::RequestResponse,
            LogType::None,
            Some(forged),
            "{}",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "client context must not set custom.lambda_fdw_invocation_id"
        );
        assert!(matches!(
            InvokeRequest::queued(target.clone(), InvocationType::Event, Some(forged), 1, "{}"),
            Err(CoreError::ReservedContextKey { .. })
        ));
        // What this parser cannot read is refused, not sent unchecked.
        let deep = format!(
            r#"{{"custom":{{"lambda_fdw_invocation_id":1}},"x":{}1{}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        );
        for unreadable in [
            r#"{"custom":{"lambda_fdw_invocation_id":42},"x":1e400}"#,
            deep.as_str(),
        ] {
            assert!(matches!(
                InvokeRequest::new(
                    target.clone(),
                    InvocationType::RequestResponse,
                    LogType::None,
                    Some(unreadable),
                    "{}",
                ),
                Err(CoreError::ContextUnreadable(_))
            ));
        }
        // Of duplicate keys, the one checked is the one sent.
        let dup = InvokeRequest::new(
            target.clone(),
            InvocationType::RequestResponse,
            LogType::None,
            Some(r#"{"custom":{"lambda_fdw_invocation_id":1},"custom":{"k":2}}"#),
            "{}",
        )
        .unwrap();
        assert_eq!(
            dup.client_context.as_deref(),
            Some(
                encode_client_context(r#"{"custom":{"k":2}}"#)
                    .unwrap()
                    .as_str()
            )
        );
        // Elsewhere in the context, or under another key, it is the user's.
        for ok in [
            r#"{"lambda_fdw_invocation_id":1}"#,
            r#"{"custom":{"other":1}}"#,
            r#"{"env":{"custom":{"lambda_fdw_invocation_id":1}}}"#,
        ] {
            InvokeRequest::new(
                target.clone(),
                InvocationType::RequestResponse,
                LogType::None,
                Some(ok),
                "{}",
            )
            .unwrap();
        }
        let q = InvokeRequest::queued(target, InvocationType::Event, None, 5, "{}").unwrap();
        assert_eq!(q.log_type, LogType::None);
        assert_eq!(
            q.client_context.as_deref(),
            Some(
                encode_client_context(r#"{"custom":{"lambda_fdw_invocation_id":5}}"#)
                    .unwrap()
                    .as_str()
            )
        );
    }

    #[test]
    fn a_batch_carries_its_ids_and_a_caller_cannot_set_them() {
        assert_eq!(
            context_with_invocation_ids(Some(r#"{"custom":{"k":"v"}}"#), &[3, 4, 9]).unwrap(),
            r#"{"custom":{"k":"v","lambda_fdw_invocation_ids":[3,4,9]}}"#
        );
        assert_eq!(
            context_with_invocation_ids(None, &[12]).unwrap(),
            r#"{"custom":{"lambda_fdw_invocation_ids":[12]}}"#
        );
        let target = target();
        for (forged, key) in [
            (
                r#"{"custom":{"lambda_fdw_invocation_ids":[1,2]}}"#,
                "lambda_fdw_invocation_ids",
            ),
            (
                r#"{"custom":{"lambda_fdw_invocation_ids":null}}"#,
                "lambda_fdw_invocation_ids",
            ),
            (
                r#"{"custom":{"lambda_fdw_invocation_id":1,"lambda_fdw_invocation_ids":[1]}}"#,
                "lambda_fdw_invocation_id",
            ),
        ] {
            let e = InvokeRequest::new(
                target.clone(),
                InvocationType::RequestResponse,
                LogType::None,
                Some(forged),
                "{}",
            )
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("client context must not set custom.{key}")
            );
            for refused in [
                InvokeRequest::queued(target.clone(), InvocationType::Event, Some(forged), 1, "{}"),
                InvokeRequest::queued_batch(
                    target.clone(),
                    InvocationType::Event,
                    Some(forged),
                    &[1, 2],
                    "[]",
                ),
            ] {
                assert!(matches!(
                    refused,
                    Err(CoreError::ReservedContextKey { key: k }) if k == key
                ));
            }
        }
        let q = InvokeRequest::queued_batch(target, InvocationType::Event, None, &[5, 6], "[]")
            .unwrap();
        assert_eq!(
            q.client_context.as_deref(),
            Some(
                encode_client_context(r#"{"custom":{"lambda_fdw_invocation_ids":[5,6]}}"#)
                    .unwrap()
                    .as_str()
            )
        );
    }

    #[test]
    fn the_ids_that_fit_are_the_most_the_context_limit_takes() {
        let user = format!(r#"{{"custom":{{"app":"{}"}}}}"#, "a".repeat(1000));
        for context in [None, Some(r#"{"env":{"a":"b"}}"#), Some(user.as_str())] {
            for first in [1_i64, 1_000_000, i64::MAX - 5000] {
                let ids: Vec<i64> = (first..first + 5000).collect();
                let fit = invocation_ids_that_fit(context, &ids).unwrap();
                assert!(fit > 0 && fit < ids.len());
                let fits = context_with_invocation_ids(context, &ids[..fit]).unwrap();
                assert!(encode_client_context(&fits).is_ok());
                let over = context_with_invocation_ids(context, &ids[..=fit]).unwrap();
                assert!(matches!(
                    encode_client_context(&over),
                    Err(CoreError::ContextTooLarge { .. })
                ));
            }
        }
        // With no context of its own: ids of up to 7 digits, and the largest.
        let small: Vec<i64> = (1_000_000..1_001_000).collect();
        assert_eq!(invocation_ids_that_fit(None, &small).unwrap(), 330);
        let large: Vec<i64> = vec![i64::MAX; 1000];
        assert_eq!(invocation_ids_that_fit(None, &large).unwrap(), 132);
        let huge = format!(r#"{{"k":"{}"}}"#, "x".repeat(2700));
        assert_eq!(invocation_ids_that_fit(Some(&huge), &[1]).unwrap(), 0);
        assert!(matches!(
            invocation_ids_that_fit(Some(r#"{"custom":1}"#), &[1]),
            Err(CoreError::ContextCustomNotObject)
        ));
    }

    #[test]
    fn invocation_id_needs_objects() {
        assert!(matches!(
            context_with_invocation_id(Some("[1]"), 1),
            Err(CoreError::ContextNotObject)
        ));
        assert!(matches!(
            context_with_invocation_id(Some("not json"), 1),
            Err(CoreError::ContextUnreadable(_))
        ));
        assert!(matches!(
            context_with_invocation_id(Some(r#"{"custom":"x"}"#), 1),
            Err(CoreError::ContextCustomNotObject)
        ));
    }

    fn target() -> ResolvedFunction {
        parse_function_name("f")
            .unwrap()
            .resolve(Some("us-east-1"), None, None)
            .unwrap()
    }

    #[test]
    fn enums_are_case_sensitive() {
        assert_eq!(
            InvocationType::parse("Event").unwrap(),
            InvocationType::Event
        );
        assert_eq!(
            InvocationType::parse("DryRun").unwrap(),
            InvocationType::DryRun
        );
        assert_eq!(
            InvocationType::parse("RequestResponse").unwrap(),
            InvocationType::RequestResponse
        );
        for bad in ["event", "EVENT", "requestresponse", "", "Event "] {
            assert!(matches!(
                InvocationType::parse(bad),
                Err(CoreError::InvalidInvocationType(v)) if v == bad
            ));
        }
        assert_eq!(LogType::parse("Tail").unwrap(), LogType::Tail);
        assert_eq!(LogType::parse("None").unwrap(), LogType::None);
        for bad in ["tail", "none", "NULL", ""] {
            assert!(matches!(
                LogType::parse(bad),
                Err(CoreError::InvalidLogType(_))
            ));
        }
    }

    #[test]
    fn client_context_is_base64_of_the_json() {
        assert_eq!(
            encode_client_context(r#"{"custom":{"a":1}}"#).unwrap(),
            "eyJjdXN0b20iOnsiYSI6MX19"
        );
        assert!(matches!(
            encode_client_context("[1]"),
            Err(CoreError::ContextNotObject)
        ));
        assert!(matches!(
            encode_client_context("\"x\""),
            Err(CoreError::ContextNotObject)
        ));
    }

    #[test]
    fn client_context_limit() {
        // 2,685 bytes of JSON encode to 3,580 base64 bytes: accepted.
        let fits = format!(r#"{{"k":"{}"}}"#, "x".repeat(2685 - 8));
        assert_eq!(fits.len(), 2685);
        assert!(encode_client_context(&fits).is_ok());
        let too_big = format!(r#"{{"k":"{}"}}"#, "x".repeat(2700));
        match encode_client_context(&too_big) {
            Err(CoreError::ContextTooLarge { size, limit }) => {
                assert_eq!(limit, 3583);
                assert!(size > 3583);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn payload_limits_depend_on_invocation_type() {
        let six_mb = vec![b' '; MAX_SYNC_PAYLOAD_BYTES];
        assert!(InvokeRequest::new(
            target(),
            InvocationType::RequestResponse,
            LogType::None,
            None,
            six_mb.clone()
        )
        .is_ok());
        let err = InvokeRequest::new(target(), InvocationType::Event, LogType::None, None, six_mb)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload is 6291456 bytes, more than the 1048576 bytes Lambda accepts for Event invocations"
        );
        let over = vec![b' '; MAX_SYNC_PAYLOAD_BYTES + 1];
        assert!(matches!(
            InvokeRequest::new(target(), InvocationType::DryRun, LogType::None, None, over),
            Err(CoreError::PayloadTooLarge {
                limit: MAX_SYNC_PAYLOAD_BYTES,
                ..
            })
        ));
    }
}
