//! Bounds on what a Lambda response may bring into a backend or the queue
//! worker: a body no larger than Lambda ever returns, and the headers whose
//! values lambda_fdw keeps no longer than Lambda ever sends them.
//!
//! [`ResponseLimits`] is an SDK interceptor on every [`LambdaClient`]
//! (`crate::client`), so it covers every caller: foreign-table scans
//! and INSERTs, `aws_lambda.invoke`, IMPORT's ListFunctions, and the queue
//! worker. It runs after the response head has arrived and before the SDK
//! reads the body (`modify_before_deserialization`):
//!
//! - a `Content-Length` above [`MAX_RESPONSE_BYTES`] is refused at once; the
//!   body is never read, and dropping it closes the connection;
//! - every other body is wrapped in [`LimitedBody`], which counts bytes as
//!   they stream (chunked answers have no Content-Length) and fails as soon
//!   as the count passes the limit, dropping the rest unread;
//! - the headers in [`BOUNDED_HEADERS`] are checked against their limits.
//!
//! The refusal reaches [`crate::invoke`] as an [`Exceeded`] in the
//! SDK error's source chain (see [`find`]), which turns it into
//! `CoreError::ResponseTooLarge` or `CoreError::HeaderTooLong`. Neither is
//! retried: the function ran, and running it again would repeat its side
//! effects to get the same answer.
//!
//! hyper bounds the response head already: at most 100 headers, and on
//! HTTP/1.1 a head of at most 8192 + 4096 * 100 = 417,792 bytes (its
//! read buffer; 16 KiB of header list on HTTP/2). Each header is therefore
//! bounded before this module sees it; the limits here are the tighter
//! ones of what lambda_fdw stores in rows, statistics and the queue table.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Headers;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::error::CoreError;

/// The largest response body accepted: 6 MB, the most a synchronous
/// (RequestResponse) Invoke returns. Event and DryRun answers have no body.
pub const MAX_RESPONSE_BYTES: u64 = 6 * 1024 * 1024;

/// The longest `X-Amz-Log-Result` accepted. Lambda sends the last 4 KB of
/// the log, base64-encoded: 4096 bytes make 5,464 characters. 8 KiB leaves
/// room for a looser "4 KB" and still keeps the value small.
pub const MAX_LOG_RESULT_BYTES: usize = 8 * 1024;

/// The longest value accepted for the other headers lambda_fdw keeps:
/// `X-Amz-Executed-Version` (`$LATEST` or a version number; the API allows
/// at most 1,024 characters for a version), `X-Amz-Function-Error`
/// (`Handled` or `Unhandled`) and the request id (a UUID, 36 characters).
pub const MAX_SHORT_HEADER_BYTES: usize = 1024;

/// The headers whose values lambda_fdw keeps, with their limits; names as
/// messages spell them (lookups ignore case).
pub const BOUNDED_HEADERS: &[(&str, usize)] = &[
    ("X-Amz-Log-Result", MAX_LOG_RESULT_BYTES),
    ("X-Amz-Executed-Version", MAX_SHORT_HEADER_BYTES),
    ("X-Amz-Function-Error", MAX_SHORT_HEADER_BYTES),
    ("X-Amzn-RequestId", MAX_SHORT_HEADER_BYTES),
    ("X-Amz-Request-Id", MAX_SHORT_HEADER_BYTES),
];

/// What in a response went past its limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exceeded {
    /// The body is larger than `limit` bytes: its declared Content-Length,
    /// or `None` when the count of the bytes streamed passed the limit.
    Body {
        limit: u64,
        content_length: Option<u64>,
    },
    /// Header `name` has a value of `size` bytes, more than `limit`.
    Header {
        name: &'static str,
        size: usize,
        limit: usize,
    },
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Body {
                limit,
                content_length: Some(n),
            } => write!(f, "response body of {n} bytes is larger than {limit} bytes"),
            Exceeded::Body {
                limit,
                content_length: None,
            } => write!(f, "response body is larger than {limit} bytes"),
            Exceeded::Header { name, size, limit } => {
                write!(
                    f,
                    "{name} header of {size} bytes is longer than {limit} bytes"
                )
            }
        }
    }
}

impl StdError for Exceeded {}

impl Exceeded {
    /// The error of a call to `function` (as messages name it) that ended so.
    pub fn into_core(self, function: &str) -> CoreError {
        let function = function.to_string();
        match self {
            Exceeded::Body {
                limit,
                content_length,
            } => CoreError::ResponseTooLarge {
                function,
                limit,
                content_length,
            },
            Exceeded::Header { name, size, limit } => CoreError::HeaderTooLong {
                function,
                header: name,
                size,
                limit,
            },
        }
    }
}

/// The [`Exceeded`] somewhere in `e`'s source chain (an SDK error carries
/// it as its source, or as an interceptor error's source).
pub fn find<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a Exceeded> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<Exceeded>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

/// Checks a response head: its Content-Length against `max_body`, and the
/// values of [`BOUNDED_HEADERS`] (every value, when one is repeated).
pub fn check_head(headers: &Headers, max_body: u64) -> Result<(), Exceeded> {
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if n > max_body {
            return Err(Exceeded::Body {
                limit: max_body,
                content_length: Some(n),
            });
        }
    }
    for &(name, limit) in BOUNDED_HEADERS {
        if let Some(size) = headers.get_all_bytes(name).map(<[u8]>::len).max() {
            if size > limit {
                return Err(Exceeded::Header { name, size, limit });
            }
        }
    }
    Ok(())
}

/// A body that yields `inner`'s frames while their data adds up to at most
/// `limit` bytes, and fails with [`Exceeded::Body`] at the frame that
/// passes it, dropping `inner` (and with it the connection's unread rest).
pub struct LimitedBody {
    inner: SdkBody,
    limit: u64,
    seen: u64,
    failed: bool,
}

impl LimitedBody {
    pub fn new(inner: SdkBody, limit: u64) -> Self {
        Self {
            inner,
            limit,
            seen: 0,
            failed: false,
        }
    }

    /// `body`, limited to `limit` bytes, as an SdkBody.
    pub fn wrap(body: SdkBody, limit: u64) -> SdkBody {
        SdkBody::from_body_1_x(Self::new(body, limit))
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            let n = f.data_ref().map_or(0, |d| d.len() as u64);
            this.seen = this.seen.saturating_add(n);
            if this.seen > this.limit {
                this.failed = true;
                // Nothing more is read: the connection goes with the body.
                this.inner = SdkBody::empty();
                return Poll::Ready(Some(Err(Box::new(Exceeded::Body {
                    limit: this.limit,
                    content_length: None,
                }))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.failed || Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed {
            SizeHint::with_exact(0)
        } else {
            Body::size_hint(&self.inner)
        }
    }
}

/// The interceptor that applies [`MAX_RESPONSE_BYTES`] and
/// [`BOUNDED_HEADERS`] to every response of a Lambda client.
#[derive(Debug, Default)]
pub struct ResponseLimits;

impl Intercept for ResponseLimits {
    fn name(&self) -> &'static str {
        "lambda_fdw::ResponseLimits"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        check_head(response.headers(), MAX_RESPONSE_BYTES)?;
        let body = response.take_body();
        *response.body_mut() = LimitedBody::wrap(body, MAX_RESPONSE_BYTES);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::retry;

    /// A streamed body of the given chunks (as a chunked answer arrives),
    /// counting how many of them were pulled.
    struct Chunks {
        left: VecDeque<Bytes>,
        pulled: Arc<AtomicUsize>,
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            let this = self.get_mut();
            Poll::Ready(this.left.pop_front().map(|c| {
                this.pulled.fetch_add(1, Ordering::SeqCst);
                Ok(Frame::data(c))
            }))
        }
    }

    fn streamed(sizes: &[usize]) -> (SdkBody, Arc<AtomicUsize>) {
        let pulled = Arc::new(AtomicUsize::new(0));
        let body = Chunks {
            left: sizes.iter().map(|&n| Bytes::from(vec![b'x'; n])).collect(),
            pulled: pulled.clone(),
        };
        (SdkBody::from_body_1_x(body), pulled)
    }

    /// Reads `body` to its end or first error: the bytes read, or the error.
    fn read(body: SdkBody) -> Result<usize, BoxError> {
        let mut body = std::pin::pin!(body);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut total = 0;
        loop {
            match body.as_mut().poll_frame(&mut cx) {
                Poll::Ready(None) => return Ok(total),
                Poll::Ready(Some(Ok(frame))) => total += frame.data_ref().map_or(0, Bytes::len),
                Poll::Ready(Some(Err(e))) => return Err(e),
                Poll::Pending => panic!("test bodies are always ready"),
            }
        }
    }

    fn counted_out(limit: u64) -> Exceeded {
        Exceeded::Body {
            limit,
            content_length: None,
        }
    }

    #[test]
    fn a_body_up_to_the_limit_passes_whole() {
        let (body, _) = streamed(&[4, 4, 2]);
        assert_eq!(read(LimitedBody::wrap(body, 10)).unwrap(), 10);
        let (body, _) = streamed(&[]);
        assert_eq!(read(LimitedBody::wrap(body, 10)).unwrap(), 0);
        assert_eq!(
            read(LimitedBody::wrap(SdkBody::from("0123456789"), 10)).unwrap(),
            10
        );
    }

    #[test]
    fn one_byte_over_fails() {
        let (body, _) = streamed(&[4, 4, 3]);
        let e = read(LimitedBody::wrap(body, 10)).unwrap_err();
        assert_eq!(find(e.as_ref()), Some(&counted_out(10)));
        let e = read(LimitedBody::wrap(SdkBody::from("0123456789a"), 10)).unwrap_err();
        assert_eq!(find(e.as_ref()), Some(&counted_out(10)));
    }

    #[test]
    fn fails_at_the_chunk_that_passes_the_limit_and_reads_no_further() {
        let (body, pulled) = streamed(&[6, 6, 6, 6, 6]);
        let e = read(LimitedBody::wrap(body, 10)).unwrap_err();
        assert_eq!(e.to_string(), "response body is larger than 10 bytes");
        assert_eq!(pulled.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn after_failing_it_ends() {
        let (body, pulled) = streamed(&[11, 1]);
        let mut limited = LimitedBody::new(body, 10);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            Pin::new(&mut limited).poll_frame(&mut cx),
            Poll::Ready(Some(Err(_)))
        ));
        assert!(limited.is_end_stream());
        assert!(matches!(
            Pin::new(&mut limited).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
        assert_eq!(pulled.load(Ordering::SeqCst), 1);
    }

    fn headers(pairs: &[(&str, String)]) -> Headers {
        let mut h = Headers::new();
        for (k, v) in pairs {
            h.append(k.to_string(), v.clone());
        }
        h
    }

    #[test]
    fn content_length_over_the_limit_is_refused_at_once() {
        let max = MAX_RESPONSE_BYTES;
        assert_eq!(max, 6_291_456);
        assert_eq!(
            check_head(&headers(&[("Content-Length", (max + 1).to_string())]), max),
            Err(Exceeded::Body {
                limit: max,
                content_length: Some(max + 1)
            })
        );
        assert_eq!(
            check_head(&headers(&[("content-length", "52428800".into())]), max),
            Err(Exceeded::Body {
                limit: max,
                content_length: Some(52_428_800)
            })
        );
    }

    #[test]
    fn content_length_up_to_the_limit_or_absent_passes() {
        let max = MAX_RESPONSE_BYTES;
        for h in [
            headers(&[("Content-Length", max.to_string())]),
            headers(&[("Content-Length", "0".into())]),
            headers(&[("Transfer-Encoding", "chunked".into())]),
            headers(&[]),
        ] {
            assert_eq!(check_head(&h, max), Ok(()));
        }
    }

    #[test]
    fn stored_headers_are_bounded() {
        let max = MAX_RESPONSE_BYTES;
        let tail = "A".repeat(5464);
        let ok = headers(&[
            ("X-Amz-Log-Result", tail),
            ("X-Amz-Executed-Version", "$LATEST".into()),
            ("X-Amz-Function-Error", "Unhandled".into()),
            (
                "x-amzn-RequestId",
                "f81d4fae-7dec-11d0-a765-00a0c91e6bf6".into(),
            ),
        ]);
        assert_eq!(check_head(&ok, max), Ok(()));
        let at_limit = headers(&[("x-amz-log-result", "A".repeat(MAX_LOG_RESULT_BYTES))]);
        assert_eq!(check_head(&at_limit, max), Ok(()));
        assert_eq!(
            check_head(
                &headers(&[("x-amz-log-result", "A".repeat(MAX_LOG_RESULT_BYTES + 1))]),
                max
            ),
            Err(Exceeded::Header {
                name: "X-Amz-Log-Result",
                size: MAX_LOG_RESULT_BYTES + 1,
                limit: MAX_LOG_RESULT_BYTES
            })
        );
        for name in [
            "X-Amz-Executed-Version",
            "X-Amz-Function-Error",
            "X-Amzn-RequestId",
        ] {
            let long = headers(&[(name, "1".repeat(2000))]);
            assert_eq!(
                check_head(&long, max),
                Err(Exceeded::Header {
                    name,
                    size: 2000,
                    limit: MAX_SHORT_HEADER_BYTES
                }),
                "{name}"
            );
        }
        // A repeated header is checked in every value.
        let repeated = headers(&[
            ("X-Amz-Function-Error", "Handled".into()),
            ("X-Amz-Function-Error", "x".repeat(1025)),
        ]);
        assert!(check_head(&repeated, max).is_err());
    }

    #[test]
    fn the_errors_say_what_and_which_function_and_are_not_retried() {
        let e = Exceeded::Body {
            limit: MAX_RESPONSE_BYTES,
            content_length: None,
        }
        .into_core("echo");
        assert_eq!(
            e.to_string(),
            "lambda function echo returned a response larger than 6 MB (6291456 bytes), the most Lambda returns"
        );
        assert!(!retry::is_retryable(&e));
        let e = Exceeded::Body {
            limit: MAX_RESPONSE_BYTES,
            content_length: Some(8_388_610),
        }
        .into_core("echo:v1");
        assert_eq!(
            e.to_string(),
            "lambda function echo:v1 returned a response larger than 6 MB (6291456 bytes), the most Lambda returns"
        );
        assert!(!retry::is_retryable(&e));
        let e = Exceeded::Header {
            name: "X-Amz-Log-Result",
            size: 9000,
            limit: MAX_LOG_RESULT_BYTES,
        }
        .into_core("echo");
        assert_eq!(
            e.to_string(),
            "lambda function echo returned an X-Amz-Log-Result header of 9000 bytes, more than the 8192 bytes lambda_fdw accepts"
        );
        assert!(!retry::is_retryable(&e));
    }

    /// Through a real client: a local HTTP server answers each request with
    /// what `answer` writes, and counts the requests.
    mod through_the_sdk {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::net::{TcpListener, TcpStream};

        use super::*;
        use crate::client::client_for;
        use crate::measure::CallLog;
        use crate::name::parse_function_name;
        use crate::request::{InvocationType, InvokeRequest, LogType};
        use crate::runtime::{block_on, Interrupts};
        use crate::settings::{ClientSettings, CredentialSource};
        use crate::{CoreResult, InvokeOutcome};

        /// Reads one request (head and Content-Length body); false at EOF.
        fn read_request(reader: &mut BufReader<TcpStream>) -> bool {
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return false;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).is_ok()
        }

        /// Serves every connection on its own thread; returns the endpoint
        /// and the count of requests seen.
        fn serve(answer: fn(&mut TcpStream)) -> (String, Arc<AtomicUsize>) {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            let requests = Arc::new(AtomicUsize::new(0));
            let seen = requests.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let seen = seen.clone();
                    std::thread::spawn(move || {
                        let mut reader = BufReader::new(stream);
                        while read_request(&mut reader) {
                            seen.fetch_add(1, Ordering::SeqCst);
                            answer(reader.get_mut());
                        }
                    });
                }
            });
            (endpoint, requests)
        }

        fn invoke(endpoint: &str) -> CoreResult<InvokeOutcome> {
            let mut s = ClientSettings::new("us-east-1");
            s.endpoint_url = Some(endpoint.to_string());
            s.credentials = CredentialSource::Static {
                access_key_id: "AKIDTEST".into(),
                secret_access_key: "test-secret-key".into(),
                session_token: None,
            };
            // Retries allowed: a refused answer must still be sent once only.
            s.max_attempts = 3;
            s.request_timeout_ms = 5000;
            let client = client_for(&s, &Interrupts::NONE).unwrap();
            let target = parse_function_name("echo")
                .unwrap()
                .resolve(Some("us-east-1"), None, None)
                .unwrap();
            let req = InvokeRequest::new(
                target,
                InvocationType::RequestResponse,
                LogType::None,
                None,
                Bytes::from_static(b"{}"),
            )
            .unwrap();
            block_on(client.invoke(req, &CallLog::default()), &Interrupts::NONE).unwrap()
        }

        fn head(extra: &str) -> String {
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Amz-Executed-Version: $LATEST\r\n{extra}\r\n")
        }

        /// Sends a chunked body of `total` bytes in 64 KiB chunks (a JSON
        /// string: quotes and x's), or without end when `total` is `None`,
        /// until the client goes away.
        fn chunked(stream: &mut TcpStream, total: Option<usize>) {
            let _ = stream.write_all(head("Transfer-Encoding: chunked\r\n").as_bytes());
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = total.unwrap_or(usize::MAX);
            let mut first = true;
            while left > 0 {
                let n = left.min(chunk.len());
                left -= n;
                let mut out = format!("{n:x}\r\n").into_bytes();
                let start = out.len();
                out.extend_from_slice(&chunk[..n]);
                if first {
                    out[start] = b'"';
                    first = false;
                }
                if left == 0 {
                    *out.last_mut().unwrap() = b'"';
                }
                out.extend_from_slice(b"\r\n");
                if stream.write_all(&out).is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        }

        fn is_too_large(r: CoreResult<InvokeOutcome>, content_length: Option<u64>) {
            match r {
                Err(CoreError::ResponseTooLarge {
                    function,
                    limit,
                    content_length: got,
                }) => {
                    assert_eq!(function, "echo");
                    assert_eq!(limit, MAX_RESPONSE_BYTES);
                    assert_eq!(got, content_length);
                }
                other => panic!("expected ResponseTooLarge, got {other:?}"),
            }
        }

        #[test]
        fn a_content_length_over_6_mb_is_refused_before_the_body_comes() {
            // The body never comes: reading it would end in a timeout.
            let (endpoint, requests) = serve(|s| {
                let _ = s.write_all(head("Content-Length: 52428800\r\n").as_bytes());
                std::thread::sleep(std::time::Duration::from_secs(10));
            });
            let started = std::time::Instant::now();
            is_too_large(invoke(&endpoint), Some(52_428_800));
            assert!(started.elapsed() < std::time::Duration::from_secs(4));
            assert_eq!(requests.load(Ordering::SeqCst), 1);
        }

        #[test]
        fn an_endless_chunked_body_is_refused_once_past_6_mb() {
            let (endpoint, requests) = serve(|s| chunked(s, None));
            is_too_large(invoke(&endpoint), None);
            assert_eq!(requests.load(Ordering::SeqCst), 1);
        }

        #[test]
        fn a_chunked_body_of_7_mb_is_refused() {
            let (endpoint, requests) = serve(|s| chunked(s, Some(7 * 1024 * 1024)));
            is_too_large(invoke(&endpoint), None);
            assert_eq!(requests.load(Ordering::SeqCst), 1);
        }

        #[test]
        fn a_body_of_exactly_6_mb_is_read() {
            let (endpoint, _) = serve(|s| chunked(s, Some(MAX_RESPONSE_BYTES as usize)));
            let out = invoke(&endpoint).unwrap();
            assert_eq!(
                out.payload.map(|p| p.len() as u64),
                Some(MAX_RESPONSE_BYTES)
            );
            let (endpoint, _) = serve(|s| {
                let body = format!("\"{}\"", "x".repeat(MAX_RESPONSE_BYTES as usize - 2));
                let h = head(&format!("Content-Length: {}\r\n", body.len()));
                let _ = s.write_all(h.as_bytes());
                let _ = s.write_all(body.as_bytes());
            });
            let out = invoke(&endpoint).unwrap();
            assert_eq!(
                out.payload.map(|p| p.len() as u64),
                Some(MAX_RESPONSE_BYTES)
            );
        }

        #[test]
        fn a_log_result_over_its_limit_is_refused() {
            let (endpoint, requests) = serve(|s| {
                let h = head(&format!(
                    "X-Amz-Log-Result: {}\r\nContent-Length: 2\r\n",
                    "A".repeat(9000)
                ));
                let _ = s.write_all(h.as_bytes());
                let _ = s.write_all(b"{}");
            });
            match invoke(&endpoint) {
                Err(CoreError::HeaderTooLong {
                    function,
                    header,
                    size,
                    limit,
                }) => {
                    assert_eq!(
                        (function.as_str(), header, size, limit),
                        ("echo", "X-Amz-Log-Result", 9000, MAX_LOG_RESULT_BYTES)
                    )
                }
                other => panic!("expected HeaderTooLong, got {other:?}"),
            }
            assert_eq!(requests.load(Ordering::SeqCst), 1);
        }
    }
}
