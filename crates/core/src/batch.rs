//! Many rows per invocation: how rows are cut into batches, the request body
//! each batch format sends, and the check of each format's reply. It knows
//! nothing of SQL: a row is its payload's JSON text, and a reply is bytes.
//!
//! What it offers:
//! - [`BatchFormat`]: `lambda_fdw`, `redshift`, `bigquery`, `snowflake`;
//! - [`arguments`]: the one rule that turns a payload into a format's
//!   argument list (a JSON array is the list; any other value is one
//!   argument);
//! - [`cut`]: batches of at most `batch_size` rows whose encoded request
//!   stays within a byte limit, a row too large on its own alone;
//! - [`encode`]: a batch's request body, with its [`BatchMeta`];
//! - [`decode`]: a reply's results, one per row in the request's order, or
//!   why the reply cannot be trusted ([`ReplyError`]); never a shift of
//!   results between rows.

use std::fmt::Write as _;
use std::ops::Range;

use bytes::Bytes;
use serde_json::Value;

use crate::error::CoreError;
use crate::outcome::InvokeOutcome;

/// The batch formats: lambda_fdw's own, and those of the warehouses whose
/// Lambda functions can serve PostgreSQL as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchFormat {
    /// A JSON array of payloads in, a JSON array of results out.
    LambdaFdw,
    /// Amazon Redshift's Lambda UDFs: `arguments` in, `results` out.
    Redshift,
    /// Google BigQuery's remote functions: `calls` in, `replies` out.
    BigQuery,
    /// Snowflake's external functions: numbered `data` rows in and out.
    Snowflake,
}

impl BatchFormat {
    /// Every format, in the order the docs list them.
    pub const ALL: [BatchFormat; 4] = [
        BatchFormat::LambdaFdw,
        BatchFormat::Redshift,
        BatchFormat::BigQuery,
        BatchFormat::Snowflake,
    ];

    /// The format named `name` (the table option's value), if any.
    pub fn parse(name: &str) -> Option<BatchFormat> {
        BatchFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The option value that names it.
    pub fn name(self) -> &'static str {
        match self {
            BatchFormat::LambdaFdw => "lambda_fdw",
            BatchFormat::Redshift => "redshift",
            BatchFormat::BigQuery => "bigquery",
            BatchFormat::Snowflake => "snowflake",
        }
    }

    /// The reply's field that holds the results (lambda_fdw's reply is the
    /// array itself).
    fn results_field(self) -> Option<&'static str> {
        match self {
            BatchFormat::LambdaFdw => None,
            BatchFormat::Redshift => Some("results"),
            BatchFormat::BigQuery => Some("replies"),
            BatchFormat::Snowflake => Some("data"),
        }
    }
}

/// What a batch's request says about where it comes from, for the formats
/// that carry it: PostgreSQL's counterparts of the warehouses' fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchMeta {
    /// Unique per batch (Redshift's `request_id`, BigQuery's `requestId`).
    pub request_id: String,
    /// The database (Redshift's `database`).
    pub database: String,
    /// The role the call is made for (Redshift's `user`, BigQuery's
    /// `sessionUser`).
    pub user: String,
    /// The foreign table (Redshift's `external_function`, in BigQuery's
    /// `caller`).
    pub function: String,
    /// The statement's id (Redshift's `query_id`).
    pub query_id: String,
    /// The PostgreSQL instance (Redshift's `cluster`, in BigQuery's
    /// `caller`).
    pub cluster: String,
}

/// The argument list of a row: its payload's text if the payload is a
/// JSON array, else an array of that one value. `payload IN ('[1, "a"]')`
/// gives a two-argument function its two arguments; `payload = '42'` gives
/// a one-argument function 42; a one-argument function that takes an array
/// is written `'[[1, 2]]'`.
pub fn arguments(payload: &str) -> std::borrow::Cow<'_, str> {
    if payload.trim_start().starts_with('[') {
        std::borrow::Cow::Borrowed(payload)
    } else {
        std::borrow::Cow::Owned(format!("[{payload}]"))
    }
}

/// Appends the row at position `index` of a batch of `format`: the
/// payload itself (lambda_fdw), its argument list (Redshift, BigQuery), or
/// its argument list with the row number first (Snowflake).
fn push_row(out: &mut String, format: BatchFormat, index: usize, payload: &str) {
    match format {
        BatchFormat::LambdaFdw => out.push_str(payload),
        BatchFormat::Redshift | BatchFormat::BigQuery => out.push_str(&arguments(payload)),
        BatchFormat::Snowflake => {
            let args = arguments(payload);
            let args = args.trim();
            let inner = &args[1..args.len() - 1];
            let _ = write!(out, "[{index}");
            if !inner.trim().is_empty() {
                out.push(',');
                out.push_str(inner);
            }
            out.push(']');
        }
    }
}

/// The bytes a row adds to a batch of `format` at position `index`,
/// separator included.
fn row_bytes(format: BatchFormat, index: usize, payload: &str) -> usize {
    match format {
        BatchFormat::LambdaFdw => 1 + payload.len(),
        BatchFormat::Redshift | BatchFormat::BigQuery => 1 + arguments(payload).len(),
        BatchFormat::Snowflake => {
            let mut row = String::new();
            push_row(&mut row, format, index, payload);
            1 + row.len()
        }
    }
}

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// A batch as [`cut`] makes it: rows that travel together, or one row that
/// is too large for any request on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// These rows (positions in the caller's list) in one request.
    Rows(Range<usize>),
    /// This row alone exceeds the limit: its request is `bytes` long.
    TooLarge { row: usize, bytes: usize },
}

/// How batches are cut, row by row: at most `batch_size` rows, and a
/// request body of at most `limit` bytes. Lazy: a scan cuts each batch when
/// its call is about to start, so a `LIMIT` cuts only what it sends.
#[derive(Debug, Clone)]
pub struct Cutter {
    format: BatchFormat,
    batch_size: usize,
    limit: usize,
    /// The body without rows, with room for the largest row count.
    overhead: usize,
}

impl Cutter {
    /// Cuts batches of `format` whose metadata is at most as long as
    /// `meta`'s (give the longest request id the batches will carry).
    pub fn new(format: BatchFormat, meta: &BatchMeta, batch_size: usize, limit: usize) -> Self {
        Self {
            format,
            batch_size: batch_size.max(1),
            limit,
            overhead: encode(format, meta, &[] as &[&str]).len() + decimal_len(usize::MAX),
        }
    }

    /// The size of the request that carries `payload` alone: a row whose
    /// one-row batch is over the limit can never be sent.
    pub fn alone(&self, payload: &str) -> usize {
        self.overhead + row_bytes(self.format, 0, payload)
    }

    /// The batch that starts at row `start` of rows `start..end`, given
    /// each row's payload by `payload(row)`.
    pub fn next<'a>(&self, start: usize, end: usize, payload: impl Fn(usize) -> &'a str) -> Cut {
        let alone = self.alone(payload(start));
        if alone > self.limit {
            return Cut::TooLarge {
                row: start,
                bytes: alone,
            };
        }
        let mut bytes = alone;
        let mut row = start + 1;
        while row < end && row - start < self.batch_size {
            let added = row_bytes(self.format, row - start, payload(row));
            if bytes + added > self.limit {
                break;
            }
            bytes += added;
            row += 1;
        }
        Cut::Rows(start..row)
    }
}

/// Cuts `payloads` into batches of at most `batch_size` rows whose request
/// body of `format`, with `meta`, is at most `limit` bytes, in order.
pub fn cut(
    format: BatchFormat,
    meta: &BatchMeta,
    payloads: &[&str],
    batch_size: usize,
    limit: usize,
) -> Vec<Cut> {
    let cutter = Cutter::new(format, meta, batch_size, limit);
    let mut cuts = Vec::new();
    let mut start = 0;
    while start < payloads.len() {
        let cut = cutter.next(start, payloads.len(), |i| payloads[i]);
        start = match &cut {
            Cut::Rows(rows) => rows.end,
            Cut::TooLarge { row, .. } => row + 1,
        };
        cuts.push(cut);
    }
    cuts
}

/// A JSON string literal of `s`.
fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The request body of a batch of `payloads` (each a JSON text) in
/// `format`.
pub fn encode<P: AsRef<str>>(format: BatchFormat, meta: &BatchMeta, payloads: &[P]) -> String {
    let mut body =
        String::with_capacity(256 + payloads.iter().map(|p| p.as_ref().len() + 8).sum::<usize>());
    let rows = |body: &mut String| {
        body.push('[');
        for (i, payload) in payloads.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            push_row(body, format, i, payload.as_ref());
        }
        body.push(']');
    };
    match format {
        BatchFormat::LambdaFdw => rows(&mut body),
        BatchFormat::Redshift => {
            let _ = write!(
                body,
                "{{\"request_id\":{},\"cluster\":{},\"user\":{},\"database\":{},\
                 \"external_function\":{},\"query_id\":{},\"num_records\":{},\"arguments\":",
                quoted(&meta.request_id),
                quoted(&meta.cluster),
                quoted(&meta.user),
                quoted(&meta.database),
                quoted(&meta.function),
                quoted(&meta.query_id),
                payloads.len()
            );
            rows(&mut body);
            body.push('}');
        }
        BatchFormat::BigQuery => {
            let caller = format!("//{}/{}/{}", meta.cluster, meta.database, meta.function);
            let _ = write!(
                body,
                "{{\"requestId\":{},\"caller\":{},\"sessionUser\":{},\"userDefinedContext\":{{}},\"calls\":",
                quoted(&meta.request_id),
                quoted(&caller),
                quoted(&meta.user)
            );
            rows(&mut body);
            body.push('}');
        }
        BatchFormat::Snowflake => {
            body.push_str("{\"data\":");
            rows(&mut body);
            body.push('}');
        }
    }
    body
}

/// Why a batch's reply cannot be taken as its rows' results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("the {format} reply is not JSON")]
    NotJson { format: &'static str },
    #[error("the {format} reply is not an array")]
    NotAnArray { format: &'static str },
    #[error("the {format} reply has no \"{field}\" array")]
    NoResults {
        format: &'static str,
        field: &'static str,
    },
    #[error("the {format} reply has {} for {}", counted(*.got, "result"), counted(*.sent, "row"))]
    WrongCount {
        format: &'static str,
        sent: usize,
        got: usize,
    },
    #[error("the {format} reply says num_records {got} for {}", counted(*.sent, "row"))]
    WrongNumRecords {
        format: &'static str,
        sent: usize,
        got: String,
    },
    #[error("the {format} reply's row {index} is not [row_number, value]")]
    BadRow { format: &'static str, index: usize },
    #[error("the {format} reply's row {index} has row number {got}, not {index}")]
    WrongRowNumber {
        format: &'static str,
        index: usize,
        got: String,
    },
    #[error("the function failed the batch: {message}")]
    Failed {
        format: &'static str,
        message: String,
    },
}

/// "1 row", "2 rows".
fn counted(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The `function_error` of the rows of a batch whose reply cannot be
/// their results (a wrong count, a missing array, a wrong row number):
/// their response is `{"errorMessage": ..., "errorType": "BadBatchReply"}`.
pub const BAD_REPLY: &str = "BadBatchReply";

/// The `errorType` of the rows of a batch the function said failed
/// (Redshift's `success: false`, BigQuery's `errorMessage`); their
/// `function_error` is `Handled`, as for a function that returned an error.
pub const BATCH_FAILED: &str = "BatchFailed";

/// Each row's outcome from its batch's: the one rule for the scan and the
/// queue. A function error (or an answer with no body, as `Event` and
/// `DryRun` get) is every row's; a reply that decodes gives each row its
/// result; a reply that says the batch failed, or that cannot be trusted,
/// makes every row a function error saying why (see [`BAD_REPLY`] and
/// [`BATCH_FAILED`]), so `function_errors` decides whether it is raised.
pub fn split(format: BatchFormat, outcome: InvokeOutcome, sent: usize) -> Vec<InvokeOutcome> {
    if outcome.status_code != 200 {
        // Event (202) and DryRun (204): Lambda answers no results.
        let answer = InvokeOutcome {
            payload: None,
            ..outcome
        };
        return vec![answer; sent];
    }
    let body = match &outcome.payload {
        Some(body) if outcome.function_error.is_none() => body,
        _ => return vec![outcome; sent],
    };
    let row = |payload: Option<Bytes>, function_error: Option<String>| InvokeOutcome {
        status_code: outcome.status_code,
        payload,
        executed_version: outcome.executed_version.clone(),
        log_result: outcome.log_result.clone(),
        function_error,
        request_id: outcome.request_id.clone(),
    };
    match decode(format, body, sent) {
        Ok(results) => results
            .into_iter()
            .map(|r| row(Some(Bytes::from(r.to_string())), None))
            .collect(),
        Err(e) => {
            let (kind, error_type, message) = match e {
                ReplyError::Failed { message, .. } => ("Handled", BATCH_FAILED, message),
                other => (BAD_REPLY, BAD_REPLY, other.to_string()),
            };
            let payload = serde_json::json!({"errorMessage": message, "errorType": error_type});
            let failed = row(
                Some(Bytes::from(payload.to_string())),
                Some(kind.to_owned()),
            );
            vec![failed; sent]
        }
    }
}

/// Whether Lambda refused a request as too large (413
/// `RequestTooLargeException`): a batch of more than one row is then sent
/// again as two halves.
pub fn too_large(error: &CoreError) -> bool {
    let error = match error {
        CoreError::GaveUp { last, .. } => last,
        other => other,
    };
    matches!(error, CoreError::Service { status: 413, .. })
}

/// Sends `rows` as one batch with `send(rows, part)`, and each half of a
/// batch Lambda refuses as too large ([`too_large`]) again, in order,
/// until a refused batch is one row (that row's error, and the batch's).
/// `part` numbers the requests sent (0 for the first), for request ids.
/// Not recursive, so the future is `Send` when `send`'s is.
pub async fn send_halving<E, F, Fut>(
    rows: Range<usize>,
    mut send: F,
    too_large: impl Fn(&E) -> bool,
) -> Result<Vec<InvokeOutcome>, E>
where
    F: FnMut(Range<usize>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<InvokeOutcome>, E>>,
{
    let mut answered = Vec::with_capacity(rows.len());
    // The ranges still to send, the next one last.
    let mut left = vec![rows];
    let mut part = 0;
    while let Some(range) = left.pop() {
        match send(range.clone(), part).await {
            Ok(outcomes) => answered.extend(outcomes),
            Err(e) if range.len() > 1 && too_large(&e) => {
                let middle = range.start + range.len() / 2;
                left.push(middle..range.end);
                left.push(range.start..middle);
            }
            Err(e) => return Err(e),
        }
        part += 1;
    }
    Ok(answered)
}

/// The request id of part `part` of a batch whose first request has `id`.
pub fn part_id(id: &str, part: usize) -> String {
    if part == 0 {
        id.to_owned()
    } else {
        format!("{id}.{part}")
    }
}

/// The results of a batch of `sent` rows from its reply `body`, one per row
/// in the request's order (`Value::Null` where the function answered null).
pub fn decode(format: BatchFormat, body: &[u8], sent: usize) -> Result<Vec<Value>, ReplyError> {
    let name = format.name();
    let mut reply: Value =
        serde_json::from_slice(body).map_err(|_| ReplyError::NotJson { format: name })?;
    // Redshift's own examples return json.dumps(...): the object, as a
    // JSON string. Redshift takes both, and so do we.
    if format == BatchFormat::Redshift {
        if let Value::String(text) = &reply {
            reply = serde_json::from_str(text).map_err(|_| ReplyError::NotJson { format: name })?;
        }
    }
    let no_results = || match format.results_field() {
        Some(field) => ReplyError::NoResults {
            format: name,
            field,
        },
        None => ReplyError::NotAnArray { format: name },
    };
    let results = match format {
        BatchFormat::LambdaFdw => match reply {
            Value::Array(rows) => rows,
            _ => return Err(no_results()),
        },
        BatchFormat::Redshift => {
            let mut object = match reply {
                Value::Object(o) => o,
                _ => return Err(no_results()),
            };
            if object.get("success") == Some(&Value::Bool(false)) {
                let message = match object.get("error_msg") {
                    Some(Value::String(m)) => m.clone(),
                    Some(other) => other.to_string(),
                    None => "success is false, with no error_msg".to_owned(),
                };
                return Err(ReplyError::Failed {
                    format: name,
                    message,
                });
            }
            if let Some(n) = object.get("num_records") {
                if n.as_u64() != Some(sent as u64) {
                    return Err(ReplyError::WrongNumRecords {
                        format: name,
                        sent,
                        got: n.to_string(),
                    });
                }
            }
            match object.remove("results") {
                Some(Value::Array(rows)) => rows,
                _ => return Err(no_results()),
            }
        }
        BatchFormat::BigQuery => {
            let mut object = match reply {
                Value::Object(o) => o,
                _ => return Err(no_results()),
            };
            if let Some(message) = object.get("errorMessage") {
                return Err(ReplyError::Failed {
                    format: name,
                    message: message
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| message.to_string()),
                });
            }
            match object.remove("replies") {
                Some(Value::Array(rows)) => rows,
                _ => return Err(no_results()),
            }
        }
        BatchFormat::Snowflake => {
            let rows = match reply {
                Value::Object(mut o) => match o.remove("data") {
                    Some(Value::Array(rows)) => rows,
                    _ => return Err(no_results()),
                },
                _ => return Err(no_results()),
            };
            let mut values = Vec::with_capacity(rows.len());
            for (index, row) in rows.into_iter().enumerate() {
                let mut pair = match row {
                    Value::Array(pair) if pair.len() == 2 => pair,
                    _ => {
                        return Err(ReplyError::BadRow {
                            format: name,
                            index,
                        })
                    }
                };
                let value = pair.pop().unwrap_or(Value::Null);
                let number = pair.pop().unwrap_or(Value::Null);
                if number.as_u64() != Some(index as u64) {
                    return Err(ReplyError::WrongRowNumber {
                        format: name,
                        index,
                        got: number.to_string(),
                    });
                }
                values.push(value);
            }
            values
        }
    };
    if results.len() != sent {
        return Err(ReplyError::WrongCount {
            format: name,
            sent,
            got: results.len(),
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> BatchMeta {
        BatchMeta {
            request_id: "r-1".into(),
            database: "app".into(),
            user: "alice".into(),
            function: "public.score".into(),
            query_id: "42".into(),
            cluster: "db1".into(),
        }
    }

    fn parsed(format: BatchFormat, payloads: &[&str]) -> Value {
        serde_json::from_str(&encode(format, &meta(), payloads)).expect("valid JSON")
    }

    #[test]
    fn every_format_is_named_and_parsed_back() {
        for f in BatchFormat::ALL {
            assert_eq!(BatchFormat::parse(f.name()), Some(f));
        }
        assert_eq!(BatchFormat::parse("Redshift"), None);
        assert_eq!(BatchFormat::parse(""), None);
    }

    #[test]
    fn an_array_payload_is_the_argument_list_and_anything_else_one_argument() {
        assert_eq!(arguments("[1, \"a\"]"), "[1, \"a\"]");
        assert_eq!(arguments("42"), "[42]");
        assert_eq!(arguments("{\"k\": 1}"), "[{\"k\": 1}]");
        assert_eq!(arguments("[[1, 2]]"), "[[1, 2]]");
        assert_eq!(arguments("null"), "[null]");
    }

    #[test]
    fn requests_in_each_format() {
        let rows = ["[1, \"a\"]", "{\"k\": 2}", "[]"];
        assert_eq!(
            parsed(BatchFormat::LambdaFdw, &rows),
            json!([[1, "a"], {"k": 2}, []])
        );
        assert_eq!(
            parsed(BatchFormat::Redshift, &rows),
            json!({"request_id": "r-1", "cluster": "db1", "user": "alice", "database": "app",
                   "external_function": "public.score", "query_id": "42", "num_records": 3,
                   "arguments": [[1, "a"], [{"k": 2}], []]})
        );
        assert_eq!(
            parsed(BatchFormat::BigQuery, &rows),
            json!({"requestId": "r-1", "caller": "//db1/app/public.score", "sessionUser": "alice",
                   "userDefinedContext": {}, "calls": [[1, "a"], [{"k": 2}], []]})
        );
        assert_eq!(
            parsed(BatchFormat::Snowflake, &rows),
            json!({"data": [[0, 1, "a"], [1, {"k": 2}], [2]]})
        );
    }

    #[test]
    fn metadata_is_escaped() {
        let mut m = meta();
        m.user = "a\"b\\c".into();
        let v: Value = serde_json::from_str(&encode(BatchFormat::Redshift, &m, &["1"])).unwrap();
        assert_eq!(v["user"], json!("a\"b\\c"));
    }

    #[test]
    fn the_byte_count_of_a_row_is_what_encoding_adds() {
        let rows = ["[1, \"a\"]", "{\"k\": 2}", "7", "[]", "\"x\""];
        for f in BatchFormat::ALL {
            for n in 0..rows.len() {
                let before = encode(f, &meta(), &rows[..n]).len();
                let after = encode(f, &meta(), &rows[..=n]).len();
                // The first row has no separator; the count includes one.
                let separator = usize::from(n == 0);
                assert_eq!(
                    after - before + separator,
                    row_bytes(f, n, rows[n]),
                    "{} row {n}",
                    f.name()
                );
            }
        }
    }

    #[test]
    fn cuts_by_rows_then_by_bytes_and_a_huge_row_alone() {
        let big = format!("\"{}\"", "x".repeat(200));
        let rows: Vec<&str> = vec!["1", "2", "3", "4", "5"];
        assert_eq!(
            cut(BatchFormat::LambdaFdw, &meta(), &rows, 2, 1 << 20),
            vec![Cut::Rows(0..2), Cut::Rows(2..4), Cut::Rows(4..5)]
        );
        let rows: Vec<&str> = vec!["1", &big, "2", "3"];
        let cuts = cut(BatchFormat::LambdaFdw, &meta(), &rows, 10, 100);
        assert_eq!(cuts[0], Cut::Rows(0..1));
        assert!(matches!(cuts[1], Cut::TooLarge { row: 1, .. }));
        assert_eq!(cuts[2], Cut::Rows(2..4));
        // Every batch that is cut by bytes fits.
        let many: Vec<String> = (0..1000).map(|i| format!("{{\"n\": {i}}}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        for f in BatchFormat::ALL {
            let cuts = cut(f, &meta(), &refs, 500, 2000);
            let mut next = 0;
            for c in &cuts {
                let Cut::Rows(r) = c else {
                    panic!("no row is too large")
                };
                assert_eq!(r.start, next);
                next = r.end;
                assert!(
                    encode(f, &meta(), &refs[r.clone()]).len() <= 2000,
                    "{}",
                    f.name()
                );
            }
            assert_eq!(next, 1000);
            assert!(cuts.len() > 2, "{} cut by bytes", f.name());
        }
    }

    #[test]
    fn replies_in_each_format() {
        assert_eq!(
            decode(BatchFormat::LambdaFdw, b"[1, null, {\"a\": 2}]", 3),
            Ok(vec![json!(1), Value::Null, json!({"a": 2})])
        );
        assert_eq!(
            decode(
                BatchFormat::Redshift,
                br#"{"success": true, "num_records": 2, "results": [1, 2]}"#,
                2
            ),
            Ok(vec![json!(1), json!(2)])
        );
        // As AWS's Python example answers: json.dumps of the object.
        assert_eq!(
            decode(
                BatchFormat::Redshift,
                br#""{\"success\": true, \"num_records\": 1, \"results\": [\"x\"]}""#,
                1
            ),
            Ok(vec![json!("x")])
        );
        assert_eq!(
            decode(BatchFormat::BigQuery, br#"{"replies": ["a", "b"]}"#, 2),
            Ok(vec![json!("a"), json!("b")])
        );
        assert_eq!(
            decode(
                BatchFormat::Snowflake,
                br#"{"data": [[0, "a"], [1, null]]}"#,
                2
            ),
            Ok(vec![json!("a"), Value::Null])
        );
    }

    #[test]
    fn malformed_replies_are_refused_with_what_is_wrong() {
        let err = |f, body: &str, sent| decode(f, body.as_bytes(), sent).unwrap_err().to_string();
        assert_eq!(
            err(BatchFormat::LambdaFdw, "[1", 1),
            "the lambda_fdw reply is not JSON"
        );
        assert_eq!(
            err(BatchFormat::LambdaFdw, "{\"a\": 1}", 1),
            "the lambda_fdw reply is not an array"
        );
        assert_eq!(
            err(BatchFormat::LambdaFdw, "[1, 2]", 3),
            "the lambda_fdw reply has 2 results for 3 rows"
        );
        assert_eq!(
            err(
                BatchFormat::Redshift,
                r#"{"success": false, "error_msg": "bad input"}"#,
                1
            ),
            "the function failed the batch: bad input"
        );
        assert_eq!(
            err(
                BatchFormat::Redshift,
                r#"{"success": true, "num_records": 1, "results": [1]}"#,
                2
            ),
            "the redshift reply says num_records 1 for 2 rows"
        );
        assert_eq!(
            err(
                BatchFormat::Redshift,
                r#"{"success": true, "results": "x"}"#,
                1
            ),
            "the redshift reply has no \"results\" array"
        );
        assert_eq!(
            err(BatchFormat::BigQuery, r#"{"errorMessage": "quota"}"#, 1),
            "the function failed the batch: quota"
        );
        assert_eq!(
            err(BatchFormat::BigQuery, r#"{"replies": [1]}"#, 2),
            "the bigquery reply has 1 result for 2 rows"
        );
        assert_eq!(
            err(
                BatchFormat::Snowflake,
                r#"{"data": [[1, "a"], [0, "b"]]}"#,
                2
            ),
            "the snowflake reply's row 0 has row number 1, not 0"
        );
        assert_eq!(
            err(
                BatchFormat::Snowflake,
                r#"{"data": [[0, "a", "extra"]]}"#,
                1
            ),
            "the snowflake reply's row 0 is not [row_number, value]"
        );
        assert_eq!(
            err(BatchFormat::Snowflake, r#"{"data": [[0, "a"]]}"#, 2),
            "the snowflake reply has 1 result for 2 rows"
        );
    }

    #[test]
    fn a_batch_outcome_becomes_each_rows() {
        use crate::outcome::answered;
        let rows = split(
            BatchFormat::BigQuery,
            answered(None, r#"{"replies": [1, "b"]}"#),
            2,
        );
        let payloads: Vec<_> = rows.iter().map(|r| r.payload.clone().unwrap()).collect();
        assert_eq!(payloads, vec![Bytes::from("1"), Bytes::from("\"b\"")]);
        assert!(rows
            .iter()
            .all(|r| r.function_error.is_none() && r.request_id.as_deref() == Some("req-1")));
        let failed = split(
            BatchFormat::BigQuery,
            answered(None, r#"{"errorMessage": "quota"}"#),
            2,
        );
        assert_eq!(failed.len(), 2);
        let e = failed[1]
            .clone()
            .raise_function_error("f")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "lambda function f returned error \"Handled\": quota");
        let short = split(BatchFormat::LambdaFdw, answered(None, "[1]"), 3);
        let e = short[0]
            .clone()
            .raise_function_error("f")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "lambda function f returned error \"BadBatchReply\": the lambda_fdw reply has 1 result for 3 rows");
        let raised = split(BatchFormat::Redshift, answered(Some("Unhandled"), "{}"), 2);
        assert!(raised
            .iter()
            .all(|r| r.function_error.as_deref() == Some("Unhandled")));
        let mut event = answered(None, "");
        event.status_code = 202;
        event.payload = None;
        assert_eq!(
            split(BatchFormat::Snowflake, event.clone(), 2),
            vec![event.clone(), event]
        );
    }

    #[test]
    fn a_cutter_cuts_lazily_what_cut_cuts() {
        let many: Vec<String> = (0..300)
            .map(|i| format!("[{i}, \"{}\"]", "y".repeat(i % 17)))
            .collect();
        for f in BatchFormat::ALL {
            let c = Cutter::new(f, &meta(), 50, 900);
            let refs: Vec<&str> = many.iter().map(String::as_str).collect();
            let all = cut(f, &meta(), &refs, 50, 900);
            let mut start = 0;
            for want in all {
                let got = c.next(start, refs.len(), |i| refs[i]);
                assert_eq!(got, want);
                start = match got {
                    Cut::Rows(r) => r.end,
                    Cut::TooLarge { row, .. } => row + 1,
                };
            }
            assert!(c.alone("1") >= encode(f, &meta(), &["1"]).len());
        }
    }
}
