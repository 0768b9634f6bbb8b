//! A small HTTP client for the tests, on hyper.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A response, with its body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
    pub body: Bytes,
}

impl Reply {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the contract's error shape and returns the message.
    pub fn error_message(&self) -> &str {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert!(self.json["error"].is_string(), "no error field: {self:?}");
        self.json["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {self:?}"))
    }
}

/// Sends one request with a fixed-length body.
pub async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    let body = Full::new(Bytes::copy_from_slice(body.unwrap_or_default()));
    send(method, url, headers, body).await
}

/// Sends one request with a fixed-length body; an error when no answer
/// came (connection refused or reset, or no answer within `timeout`).
pub async fn try_call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Reply, String> {
    let body = Full::new(Bytes::copy_from_slice(body.unwrap_or_default()));
    let client = Client::builder(TokioExecutor::new()).build_http();
    exchange(&client, method, url, headers, body, timeout).await
}

/// Sends one request with a chunked body (`Transfer-Encoding: chunked`,
/// as the Node SDK sends them).
pub async fn call_chunked(url: &str, headers: &[(&str, &str)], chunks: Vec<Vec<u8>>) -> Reply {
    let body = ChunkedBody(chunks.into_iter().map(Bytes::from).collect());
    send("POST", url, headers, body).await
}

/// A body of unknown length, so hyper sends it chunked.
struct ChunkedBody(VecDeque<Bytes>);

impl hyper::body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

async fn send<B>(method: &str, url: &str, headers: &[(&str, &str)], body: B) -> Reply
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let client = Client::builder(TokioExecutor::new()).build_http();
    exchange(&client, method, url, headers, body, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Sends one request on `client` (plain HTTP or HTTPS) and reads its whole
/// answer, for at most `timeout`.
pub async fn exchange<C, B>(
    client: &Client<C, B>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: B,
    timeout: Duration,
) -> Result<Reply, String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answered = tokio::time::timeout(timeout, async {
        let response = client
            .request(request.body(body).unwrap())
            .await
            .map_err(|e| format!("the request did not reach the host: {e:?}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("the answer broke off: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, headers, body))
    })
    .await
    .map_err(|_| format!("no answer within {timeout:?}"))?;
    let (status, headers, body) = answered?;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        headers,
        json,
        body,
    })
}

/// Writes `head` (request line and headers, ending in a blank line) to
/// `addr`, waits for the interim `100 Continue` as curl does for
/// `Expect: 100-continue`, then sends `body` and returns the final
/// response's text.
pub fn expect_continue(addr: &str, head: &str, body: &[u8]) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let interim = read_until(&mut stream, b"\r\n\r\n");
    if interim.starts_with("HTTP/1.1 100") {
        stream.write_all(body).unwrap();
    }
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    (interim, String::from_utf8_lossy(&rest).into_owned())
}

fn read_until(stream: &mut TcpStream, end: &[u8]) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(end) {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
