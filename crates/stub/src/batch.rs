//! The batch-format functions, written as a function author would write
//! them, independently of the extension's own encoder: each reads its
//! format's request and echoes every row's arguments (lambda_fdw's format:
//! every payload) as that row's result, in order. `batch-<format>` answers
//! correctly; a suffix picks a fault for the tests:
//! - `-short`: one result fewer than rows;
//! - `-bad`: no results array (lambda_fdw's format: an object);
//! - `-failed`: Redshift's `success: false` with `error_msg`, BigQuery's
//!   `errorMessage` (the other formats: as `-bad`);
//! - `-string`: Redshift's reply as a JSON string (as `json.dumps` makes it);
//! - `-renumbered`: Snowflake's row numbers off by one;
//! - `-small`: 413 RequestTooLargeException for a request over 2,048 bytes,
//!   else the correct answer;
//! - `-<N>ms` (e.g. `-20ms`): the correct answer after N ms more (for the
//!   benchmark: a function that takes 20 ms a batch);
//! - `-inspect`: the correct answer, each row's result being
//!   `{"args": <its arguments>, "client_context": <the decoded client
//!   context>, "request": <the request's other fields>}` (what the queue's
//!   tests read the ids and the metadata from).

use serde_json::{json, Value};

/// How a batch function answers: a status and a JSON body, or a 413.
pub(crate) enum Answer {
    /// The reply, after this long.
    Json(Value, std::time::Duration),
    TooLarge,
}

/// The answer of the batch function `name` (`batch-<format>[-<fault>]`) to
/// `body`, or None if `name` is not one.
pub(crate) fn answer(name: &str, body: &[u8], context: Option<Value>) -> Option<Answer> {
    let rest = name.strip_prefix("batch-")?;
    let (format, fault) = match rest.split_once('-') {
        Some((f, fault)) => (f, fault),
        None => (rest, ""),
    };
    if !matches!(format, "lambda_fdw" | "redshift" | "bigquery" | "snowflake") {
        return None;
    }
    if fault == "small" && body.len() > 2048 {
        return Some(Answer::TooLarge);
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut rows: Vec<Value> = match format {
        "lambda_fdw" => request.as_array().cloned().unwrap_or_default(),
        "redshift" => request["arguments"].as_array().cloned().unwrap_or_default(),
        "bigquery" => request["calls"].as_array().cloned().unwrap_or_default(),
        // [row_number, arg, ...]: the arguments after the number.
        _ => request["data"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        Value::Array(r.as_array().map(|a| a[1..].to_vec()).unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    if fault == "short" {
        rows.pop();
    }
    if fault == "inspect" {
        let mut others = request.as_object().cloned().unwrap_or_default();
        for field in ["arguments", "calls", "data"] {
            others.remove(field);
        }
        rows = rows
            .into_iter()
            .map(|args| json!({"args": args, "client_context": context, "request": others}))
            .collect();
    }
    let n = rows.len();
    let reply = match (format, fault) {
        ("redshift", "failed") => {
            json!({"success": false, "error_msg": "the stub failed this batch"})
        }
        ("bigquery", "failed") => json!({"errorMessage": "the stub failed this batch"}),
        ("lambda_fdw", "bad" | "failed") => json!({"results": rows}),
        ("redshift", "bad") => json!({"success": true, "num_records": n}),
        ("bigquery", "bad") => json!({"reply": rows}),
        ("snowflake", "bad" | "failed") => json!({"rows": rows}),
        ("lambda_fdw", _) => Value::Array(rows),
        ("redshift", "string") => {
            Value::String(json!({"success": true, "num_records": n, "results": rows}).to_string())
        }
        ("redshift", _) => json!({"success": true, "num_records": n, "results": rows}),
        ("bigquery", _) => json!({"replies": rows}),
        _ => {
            let offset = usize::from(fault == "renumbered");
            json!({"data": rows.into_iter().enumerate()
                .map(|(i, r)| json!([i + offset, r])).collect::<Vec<_>>()})
        }
    };
    let wait = fault
        .strip_suffix("ms")
        .and_then(|ms| ms.parse().ok())
        .map_or(std::time::Duration::ZERO, std::time::Duration::from_millis);
    Some(Answer::Json(reply, wait))
}

/// The `key` of each row of a batch request that has one: a row (or one
/// of its arguments) that is an object with a string `key`. The stub
/// counts each under `batch-row`, so a test can count deliveries per row.
pub(crate) fn row_keys(body: &[u8]) -> Vec<String> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let rows = match &request {
        Value::Array(rows) => rows.clone(),
        Value::Object(o) => ["arguments", "calls", "data"]
            .iter()
            .find_map(|f| o.get(*f).and_then(Value::as_array).cloned())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let key = |v: &Value| v.get("key").and_then(Value::as_str).map(str::to_owned);
    rows.iter()
        .filter_map(|row| match row {
            Value::Array(args) => args.iter().find_map(key),
            other => key(other),
        })
        .collect()
}
