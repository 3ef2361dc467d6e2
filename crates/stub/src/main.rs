//! A small HTTP server that answers like the Lambda Invoke API, for the wire
//! cases the emulator cannot produce and for benchmarks.
//!
//! Usage: lambda_stub 127.0.0.1:PORT [127.0.0.1:BLACKHOLE_PORT]
//! (delay for `echo`: STUB_DELAY_MS)
//!
//! The function name in the request path picks the behaviour; `key` in the
//! payload names a counter, so tests do not see each other's calls:
//! - `echo`: returns the payload (after STUB_DELAY_MS, default 0).
//! - `counted-echo`: returns the payload, counting calls per key (see `calls`).
//! - `sleep-echo`: returns the payload after `ms` milliseconds, counting
//!   calls per key.
//! - `inspect`: returns what was sent: decoded client context, invocation
//!   type, log type, qualifier, payload.
//! - `handled-error`: a `Handled` function error.
//! - `not-json`: a 200 whose body is not JSON.
//! - `server-error`: 500 with an AWS error body.
//! - `html-502`: 502 with an HTML body, as a load balancer sends.
//! - `flaky`: the first `fail` calls per key answer `status` (429 with
//!   `retry_after`, 500, 502 HTML, 503), then 200 with the attempt count and
//!   the shortest gap between attempts.
//! - `reset`: the first `fail` calls per key reset the connection unanswered.
//! - `counted-404`: 404, counting calls per key.
//! - `calls`: the count of calls to function `of` (default `flaky`) with
//!   `key`, how many milliseconds ago the last one arrived, and how many
//!   arrived within `window_ms` (default 1000) of the first.
//! - `throttle-<anything>`: for one second after its first request, 429
//!   TooManyRequestsException with `Retry-After: 1` and Lambda's body
//!   (`retryAfterSeconds`), then the payload echoed; every request is
//!   counted under key `throttle` (read them with `calls`).
//! - `truncated`: a 200 whose body stops before its Content-Length.
//! - `reset-mid-body`: headers and half a body, then a reset.
//! - `silence`: reads the request and never answers.
//! - `slow-headers`: answers after `ms` milliseconds.
//! - `huge`: a 200 with a JSON string of `mb` megabytes (default 1), or a
//!   body of exactly `bytes` bytes (a JSON string) when given; sent with a
//!   Content-Length, or with `"chunked": true` as `Transfer-Encoding:
//!   chunked` (64 KiB chunks) and no Content-Length. Counts calls per key.
//! - `long-header`: a 200 `{}` whose `header` (X-Amz-Log-Result, the
//!   default, X-Amz-Executed-Version or X-Amz-Function-Error) is `bytes`
//!   bytes long (default 9000); it replaces the usual one.
//! - `nul`: a 200 with the body `{"a": "\u0000"}` (a backslash-u-0000
//!   escape: valid JSON that PostgreSQL's jsonb rejects).
//! - `whoami`: a 200 `{"access_key_id": ..., "payload": ...}`: the access
//!   key id of the request's SigV4 `Authorization` header
//!   (`Credential=AKID/...`), null when it is unsigned, and the payload.
//! - `batch-<format>` (lambda_fdw, redshift, bigquery, snowflake), and
//!   its fault variants: a function of that batch format echoing each row's
//!   arguments (after STUB_DELAY_MS), counting calls per name (key `batch`)
//!   and each row that is (or whose arguments hold) an object with a `key`
//!   (function `batch-row`, that key); see batch.rs.
//! - anything else: 404 ResourceNotFoundException.
//!
//! `GET /health` answers 200. The optional second address is a listener
//! whose accept queue is kept full, so connecting to it times out.

mod batch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// How to misbehave instead of (or while) answering.
    fault: Fault,
    /// Request id to send: the function's name, so test output is stable.
    request_id: String,
    /// Send the body with `Transfer-Encoding: chunked`, no Content-Length.
    chunked: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Close with a reset, sending nothing.
    Reset,
    /// Send headers and half the body, then reset.
    ResetMidBody,
    /// Send headers and part of the body, then close cleanly.
    Truncate,
    /// Never answer.
    Silence,
}

/// How long a `throttle-*` function answers 429 after its first request.
const THROTTLE_WINDOW: Duration = Duration::from_secs(1);

/// The size of the chunks of a chunked answer.
const CHUNK_BYTES: usize = 64 * 1024;

/// Calls seen per key: count and times.
type Counters = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

impl Response {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.to_string().into_bytes(),
            fault: Fault::None,
            request_id: String::new(),
            chunked: false,
        }
    }

    fn aws_error(status: u16, error_type: &str, message: &str) -> Self {
        let mut r = Response::json(status, json!({"Type": "Service", "message": message}));
        r.headers.push(("x-amzn-ErrorType", error_type.to_string()));
        r
    }

    fn html_502() -> Self {
        Self {
            status: 502,
            headers: vec![("Content-Type", "text/html".into())],
            body: b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
            fault: Fault::None,
            request_id: String::new(),
            chunked: false,
        }
    }
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    // Take buffered bytes until the blank line that ends the head.
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(None);
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(buf);
        let n = buf.len();
        if let Some(pos) = head[searched_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let end = searched_from + pos + 4;
            // Give back what belongs to the body.
            let consumed = n - (head.len() - end);
            reader.consume(consumed);
            head.truncate(end);
            break;
        }
        reader.consume(n);
        if head.len() > 64 * 1024 {
            return Ok(None);
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
        body,
    }))
}

fn function_name(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/2015-03-31/functions/")?;
    let name = rest.strip_suffix("/invocations")?;
    let decoded = name.replace("%3A", ":").replace("%3a", ":");
    // A full ARN names the function in its seventh field.
    Some(match decoded.split(':').nth(6) {
        Some(n) if decoded.starts_with("arn:") => n.to_string(),
        _ => decoded,
    })
}

fn qualifier(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("Qualifier="))
        .map(|q| q.replace("%24", "$"))
}

/// The stub's functions as ListFunctions lists them: three whose names need
/// quoting as SQL identifiers, then `fn-000` to `fn-119`; 123 in all, more
/// than two pages of 50.
fn listed_functions() -> Vec<String> {
    let mut names = vec![
        "Resize-Image".to_string(),
        "select".to_string(),
        "UPPER_case".to_string(),
    ];
    names.extend((0..120).map(|i| format!("fn-{i:03}")));
    names
}

/// ListFunctions, paged by Marker (an index) and MaxItems (default 50).
/// Signed with access key AKIDDENIED: 403 AccessDeniedException. Pages
/// served are counted under `list-functions/pages`.
fn list_functions(req: &Request, counters: &Counters) -> Response {
    let signed_by = req.header("Authorization").unwrap_or_default();
    if signed_by.contains("Credential=AKIDDENIED/") {
        return Response::aws_error(
            403,
            "AccessDeniedException",
            "User: arn:aws:iam::000000000000:user/denied is not authorized to perform: lambda:ListFunctions",
        );
    }
    drop(count(counters, "list-functions", "pages"));
    let param = |name: &str| {
        req.query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let start = param("Marker").unwrap_or(0);
    let size = param("MaxItems").unwrap_or(50).max(1);
    let all = listed_functions();
    let end = (start + size).min(all.len());
    let page: Vec<Value> = all[start.min(end)..end]
        .iter()
        .map(|n| {
            json!({
                "FunctionName": n,
                "FunctionArn": format!("arn:aws:lambda:us-west-2:000000000000:function:{n}"),
                "Runtime": "python3.11",
                "Version": "$LATEST",
            })
        })
        .collect();
    let mut body = json!({ "Functions": page });
    if end < all.len() {
        body["NextMarker"] = json!(end.to_string());
    }
    Response::json(200, body)
}

/// Records a call for `key` and returns all call times so far.
fn count(counters: &Counters, name: &str, key: &str) -> Vec<Instant> {
    let mut map = counters.lock().unwrap_or_else(|p| p.into_inner());
    let calls = map.entry(format!("{name}/{key}")).or_default();
    calls.push(Instant::now());
    calls.clone()
}

fn min_gap_ms(calls: &[Instant]) -> Option<u128> {
    calls
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_millis())
        .min()
}

/// The request's client context, decoded (`None` without one).
fn client_context(req: &Request) -> Option<Value> {
    req.header("X-Amz-Client-Context").map(|c| {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(c)
            .unwrap_or_default();
        serde_json::from_slice::<Value>(&raw).unwrap_or(Value::Null)
    })
}

async fn answer(req: &Request, delay: Duration, counters: &Counters) -> Response {
    if req.method == "GET" && req.path == "/health" {
        return Response::json(200, json!({"ok": true}));
    }
    if req.method == "GET" && req.path.trim_end_matches('/') == "/2015-03-31/functions" {
        return list_functions(req, counters);
    }
    let Some(name) = function_name(&req.path) else {
        return Response::json(404, json!({"message": "no such route"}));
    };
    // The functions ListFunctions lists answer as echo does.
    let name = if listed_functions().contains(&name) {
        "echo".to_string()
    } else {
        name
    };
    let invocation_type = req
        .header("X-Amz-Invocation-Type")
        .unwrap_or("RequestResponse")
        .to_string();
    let status = match invocation_type.as_str() {
        "Event" => 202,
        "DryRun" => 204,
        _ => 200,
    };
    let payload = serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
    let key = payload
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let num = |field: &str, default: u64| {
        payload
            .get(field)
            .and_then(Value::as_u64)
            .unwrap_or(default)
    };
    // A header `long-header` sends in place of the usual one.
    let mut long_header: Option<(&'static str, String)> = None;
    let mut resp = match name.as_str() {
        "echo" | "counted-echo" | "sleep-echo" => {
            match name.as_str() {
                "counted-echo" => drop(count(counters, &name, &key)),
                "sleep-echo" => {
                    drop(count(counters, &name, &key));
                    tokio::time::sleep(Duration::from_millis(num("ms", 0))).await
                }
                _ if !delay.is_zero() => tokio::time::sleep(delay).await,
                _ => {}
            }
            Response {
                status,
                headers: vec![("Content-Type", "application/json".into())],
                body: req.body.clone(),
                fault: Fault::None,
                request_id: String::new(),
                chunked: false,
            }
        }
        "inspect" => {
            let context = client_context(req);
            let payload = serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
            Response::json(
                status,
                json!({
                    "client_context": context,
                    "invocation_type": invocation_type,
                    "log_type": req.header("X-Amz-Log-Type"),
                    "qualifier": qualifier(&req.query),
                    "payload": payload,
                }),
            )
        }
        "handled-error" => {
            let mut r = Response::json(
                200,
                json!({"errorMessage": "handled failure", "errorType": "CustomError"}),
            );
            r.headers.push(("X-Amz-Function-Error", "Handled".into()));
            r
        }
        "not-json" => Response {
            status: 200,
            headers: vec![("Content-Type", "application/json".into())],
            body: b"this is not json".to_vec(),
            fault: Fault::None,
            request_id: String::new(),
            chunked: false,
        },
        "server-error" => Response::aws_error(500, "ServiceException", "stub internal failure"),
        "html-502" => Response::html_502(),
        "flaky" => {
            let calls = count(counters, &name, &key);
            if (calls.len() as u64) <= num("fail", 1) {
                match num("status", 429) {
                    429 => {
                        let mut r =
                            Response::aws_error(429, "TooManyRequestsException", "Rate Exceeded.");
                        if let Some(ra) = payload.get("retry_after").and_then(Value::as_str) {
                            r.headers.push(("Retry-After", ra.to_string()));
                        }
                        r
                    }
                    502 => Response::html_502(),
                    503 => Response::aws_error(503, "ServiceException", "stub unavailable"),
                    _ => Response::aws_error(500, "ServiceException", "stub internal failure"),
                }
            } else {
                Response::json(
                    200,
                    json!({"attempts": calls.len(), "min_gap_ms": min_gap_ms(&calls)}),
                )
            }
        }
        "reset" => {
            let calls = count(counters, &name, &key);
            if (calls.len() as u64) <= num("fail", 1) {
                let mut r = Response::json(200, json!({}));
                r.fault = Fault::Reset;
                r
            } else {
                Response::json(200, json!({"attempts": calls.len()}))
            }
        }
        "counted-404" => {
            count(counters, &name, &key);
            Response::aws_error(
                404,
                "ResourceNotFoundException",
                "Function not found: counted-404",
            )
        }
        "calls" => {
            let map = counters.lock().unwrap_or_else(|p| p.into_inner());
            let of = payload.get("of").and_then(Value::as_str).unwrap_or("flaky");
            let seen = map.get(&format!("{of}/{key}"));
            let n = seen.map_or(0, Vec::len);
            // How long ago the last call arrived, so that a client can time it.
            let last_ms_ago = seen
                .and_then(|times| times.last())
                .map(|t| t.elapsed().as_secs_f64() * 1000.0);
            // How many arrived within `window_ms` of the first.
            let window = Duration::from_millis(num("window_ms", 1000));
            let within = seen.map_or(0, |times| {
                times
                    .iter()
                    .filter(|t| t.duration_since(times[0]) < window)
                    .count()
            });
            Response::json(
                200,
                json!({"calls": n, "last_ms_ago": last_ms_ago, "within_window": within}),
            )
        }
        n if n.starts_with("throttle-") => {
            // Every request is counted under the name (key `throttle`); for
            // THROTTLE_WINDOW after the first, 429 as Lambda throttles.
            let calls = count(counters, n, "throttle");
            if calls[calls.len() - 1].duration_since(calls[0]) < THROTTLE_WINDOW {
                let mut r = Response::json(
                    429,
                    json!({
                        "message": "Rate Exceeded.",
                        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                        "Type": "User",
                        "retryAfterSeconds": "1"
                    }),
                );
                r.headers
                    .push(("x-amzn-ErrorType", "TooManyRequestsException".into()));
                r.headers.push(("Retry-After", "1".into()));
                r
            } else {
                Response {
                    status,
                    headers: vec![("Content-Type", "application/json".into())],
                    body: req.body.clone(),
                    fault: Fault::None,
                    request_id: String::new(),
                    chunked: false,
                }
            }
        }
        "truncated" => {
            let mut r = Response::json(200, json!({"data": "x".repeat(1000)}));
            r.fault = Fault::Truncate;
            r
        }
        "reset-mid-body" => {
            let mut r = Response::json(200, json!({"data": "x".repeat(100_000)}));
            r.fault = Fault::ResetMidBody;
            r
        }
        "silence" => {
            let mut r = Response::json(200, json!({}));
            r.fault = Fault::Silence;
            r
        }
        "slow-headers" => {
            tokio::time::sleep(Duration::from_millis(num("ms", 100))).await;
            Response::json(200, json!({"waited_ms": num("ms", 100)}))
        }
        "huge" => {
            drop(count(counters, &name, &key));
            let mb = num("mb", 1) as usize;
            let chars = match payload.get("bytes").and_then(Value::as_u64) {
                Some(bytes) => (bytes as usize).saturating_sub(2),
                None => mb * 1024 * 1024,
            };
            Response {
                status: 200,
                headers: vec![("Content-Type", "application/json".into())],
                body: format!("\"{}\"", "x".repeat(chars)).into_bytes(),
                fault: Fault::None,
                request_id: String::new(),
                chunked: payload.get("chunked").and_then(Value::as_bool) == Some(true),
            }
        }
        "long-header" => {
            let name = match payload.get("header").and_then(Value::as_str) {
                Some("X-Amz-Executed-Version") => "X-Amz-Executed-Version",
                Some("X-Amz-Function-Error") => "X-Amz-Function-Error",
                _ => "X-Amz-Log-Result",
            };
            long_header = Some((name, "A".repeat(num("bytes", 9000) as usize)));
            Response::json(200, json!({}))
        }
        "nul" => Response {
            status: 200,
            headers: vec![("Content-Type", "application/json".into())],
            body: br#"{"a": "\u0000"}"#.to_vec(),
            fault: Fault::None,
            request_id: String::new(),
            chunked: false,
        },
        "whoami" => {
            let access_key_id = req
                .header("Authorization")
                .and_then(|a| a.split_once("Credential="))
                .and_then(|(_, rest)| rest.split_once('/'))
                .map(|(id, _)| id.to_string());
            Response::json(
                200,
                json!({"access_key_id": access_key_id, "payload": payload}),
            )
        }
        other => match batch::answer(other, &req.body, client_context(req)) {
            Some(answer) => {
                drop(count(counters, other, "batch"));
                for row in batch::row_keys(&req.body) {
                    drop(count(counters, "batch-row", &row));
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                match answer {
                    batch::Answer::Json(body, wait) => {
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                        Response::json(status, body)
                    }
                    batch::Answer::TooLarge => Response::aws_error(
                        413,
                        "RequestTooLargeException",
                        "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
                    ),
                }
            }
            None => Response::aws_error(
                404,
                "ResourceNotFoundException",
                &format!("Function not found: {other}"),
            ),
        },
    };
    if (status == 202 || status == 204) && (name == "echo" || name == "inspect") {
        resp.body.clear();
    }
    resp.headers
        .push(("X-Amz-Executed-Version", "$LATEST".into()));
    if req.header("X-Amz-Log-Type") == Some("Tail") {
        resp.headers.push((
            "X-Amz-Log-Result",
            base64::engine::general_purpose::STANDARD.encode(format!("stub log for {name}\n")),
        ));
    }
    if let Some((header, value)) = long_header {
        resp.headers.retain(|(k, _)| *k != header);
        resp.headers.push((header, value));
    }
    resp
}

async fn serve(stream: TcpStream, delay: Duration, counters: Counters) -> std::io::Result<()> {
    // Answers go out at once: no Nagle delay waiting on the client's ACK.
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader).await? {
        let resp = answer(&req, delay, &counters).await;
        let stream = reader.get_mut();
        match resp.fault {
            Fault::Reset => {
                reset(stream)?;
                return Ok(());
            }
            Fault::Silence => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Ok(());
            }
            _ => {}
        }
        let mut out = format!("HTTP/1.1 {} Stub\r\n", resp.status);
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("x-amzn-RequestId: stub-{}\r\n", resp.request_id));
        if resp.chunked {
            out.push_str("Transfer-Encoding: chunked\r\n\r\n");
            stream.write_all(out.as_bytes()).await?;
            for chunk in resp.body.chunks(CHUNK_BYTES) {
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(chunk);
                framed.extend_from_slice(b"\r\n");
                stream.write_all(&framed).await?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
            stream.flush().await?;
            continue;
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
        let mut out = out.into_bytes();
        if resp.fault == Fault::None {
            // One write for head and body: one segment for small answers.
            out.extend_from_slice(&resp.body);
            stream.write_all(&out).await?;
            stream.flush().await?;
            continue;
        }
        stream.write_all(&out).await?;
        match resp.fault {
            Fault::Truncate => {
                stream.write_all(&resp.body[..resp.body.len() / 10]).await?;
                stream.flush().await?;
                return Ok(());
            }
            Fault::ResetMidBody => {
                stream.write_all(&resp.body[..resp.body.len() / 2]).await?;
                stream.flush().await?;
                reset(stream)?;
                return Ok(());
            }
            _ => {}
        }
        stream.write_all(&resp.body).await?;
        stream.flush().await?;
    }
    Ok(())
}

/// Makes the coming close a reset (RST) instead of an orderly FIN.
// A zero linger never blocks on close, which is what the deprecation warns of.
#[allow(deprecated)]
fn reset(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_linger(Some(Duration::ZERO))
}

/// A listener whose accept queue is full: new connections never complete.
fn blackhole(addr: &str) -> std::io::Result<Vec<std::net::TcpStream>> {
    let addr: std::net::SocketAddrV4 = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: plain socket calls on a descriptor we own; the sockaddr_in is
    // fully initialised before bind.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = addr.port().to_be();
        sa.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
        if libc::bind(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
            || libc::listen(fd, 0) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    // Fill the accept queue (backlog 0 admits one); nobody ever accepts.
    let mut held = Vec::new();
    for _ in 0..2 {
        if let Ok(s) =
            std::net::TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200))
        {
            held.push(s);
        }
    }
    Ok(held)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:45661".to_string());
    let delay = Duration::from_millis(
        std::env::var("STUB_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let _held = match std::env::args().nth(2) {
        Some(hole) => blackhole(&hole)?,
        None => Vec::new(),
    };
    let counters: Counters = Arc::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("lambda_stub listening on {addr}");
        loop {
            let (stream, _) = listener.accept().await?;
            let counters = counters.clone();
            tokio::spawn(async move {
                let _ = serve(stream, delay, counters).await;
            });
        }
    })
}
