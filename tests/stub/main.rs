//! A small HTTP server that answers like the Lambda Invoke API, for the wire
//! cases the emulator cannot produce and for benchmarks.
//!
//! Usage: lambda_stub 127.0.0.1:PORT   (delay for `echo`: STUB_DELAY_MS)
//!
//! The function name in the request path picks the behaviour:
//! - `echo`: returns the payload (after STUB_DELAY_MS, default 0).
//! - `inspect`: returns what was sent: decoded client context, invocation
//!   type, log type, qualifier, payload.
//! - `handled-error`: a `Handled` function error.
//! - `not-json`: a 200 whose body is not JSON.
//! - `server-error`: 500 with an AWS error body.
//! - anything else: 404 ResourceNotFoundException.
//!
//! `GET /health` answers 200.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
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
}

impl Response {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        if reader.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
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

async fn answer(req: &Request, delay: Duration) -> Response {
    if req.method == "GET" && req.path == "/health" {
        return Response::json(200, json!({"ok": true}));
    }
    let Some(name) = function_name(&req.path) else {
        return Response::json(404, json!({"message": "no such route"}));
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
    let mut resp = match name.as_str() {
        "echo" => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Response {
                status,
                headers: vec![("Content-Type", "application/json".into())],
                body: req.body.clone(),
            }
        }
        "inspect" => {
            let context = req.header("X-Amz-Client-Context").map(|c| {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(c)
                    .unwrap_or_default();
                serde_json::from_slice::<Value>(&raw).unwrap_or(Value::Null)
            });
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
        },
        "server-error" => {
            let mut r = Response::json(
                500,
                json!({"Type": "Service", "message": "stub internal failure"}),
            );
            r.headers
                .push(("x-amzn-ErrorType", "ServiceException".into()));
            r
        }
        other => {
            let mut r = Response::json(
                404,
                json!({"Type": "User", "message": format!("Function not found: {other}")}),
            );
            r.headers
                .push(("x-amzn-ErrorType", "ResourceNotFoundException".into()));
            r
        }
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
    resp
}

async fn serve(stream: TcpStream, delay: Duration) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut counter = 0u64;
    while let Some(req) = read_request(&mut reader).await? {
        counter += 1;
        let resp = answer(&req, delay).await;
        let mut out = format!("HTTP/1.1 {} Stub\r\n", resp.status);
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("x-amzn-RequestId: stub-{counter}\r\n"));
        out.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
        let stream = reader.get_mut();
        stream.write_all(out.as_bytes()).await?;
        stream.write_all(&resp.body).await?;
        stream.flush().await?;
    }
    Ok(())
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("lambda_stub listening on {addr}");
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = serve(stream, delay).await;
            });
        }
    })
}
