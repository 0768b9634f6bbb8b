//! Outbound HTTP for tools, over `wasi:http/outgoing-handler` 0.2.
//!
//! `execute` is synchronous, so this client blocks on WASI pollables
//! instead of running an async executor: no nesting with the executor that
//! `spin-sdk`'s HTTP face already runs. The same calls work in the custom
//! host (which links `wasi:http`) and under Spin.
//!
//! Outcomes map onto [`ToolError`] the same way in every tool:
//!
//! * [`Response::error_for_status`]: 4xx (and other non-2xx below 500) is
//!   `rejected`, 5xx is `failed`;
//! * [`HttpError`] (no answer at all) is `failed`, including a call the host
//!   refused because the tool may not reach that host
//!   (`HTTP-request-denied`), and `invalid-parameters` for a URL or header
//!   that cannot be sent.
//!
//! Messages name the remote host, never a URL's path or query (webhook URLs
//! carry secrets there) and never a header value.

use crate::retry::{Backoff, Step, retry};
use crate::wire::ToolError;
use std::fmt;
use std::time::Duration;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingResponse, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::streams::StreamError;

/// How long a call may take to connect, and then to start answering, by
/// default: a retry or two must still fit in the host's per-call deadline
/// (30 s by default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an answer's body is read by default; the rest is dropped
/// ([`Response::truncated`]), so a huge answer cannot exhaust the tool's
/// memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The HTTP methods a tool may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method named `name` (upper case, as in HTTP).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            _ => return None,
        })
    }

    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    fn to_wasi(self) -> wasi::http::types::Method {
        use wasi::http::types::Method as M;
        match self {
            Self::Get => M::Get,
            Self::Head => M::Head,
            Self::Post => M::Post,
            Self::Put => M::Put,
            Self::Patch => M::Patch,
            Self::Delete => M::Delete,
        }
    }
}

/// An outgoing request, built with chained setters:
///
/// ```ignore
/// let response = Request::post(url)
///     .header("authorization", format!("Bearer {token}"))
///     .json(&payload)
///     .send()?;
/// ```
///
/// Its `Debug` shows the method and host only.
#[derive(Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Header names and values, sent in this order.
    pub headers: Vec<(String, String)>,
    /// The body; empty sends none.
    pub body: Vec<u8>,
    /// The connect timeout, and the longest wait for the first byte of the
    /// answer and between two of its chunks.
    pub timeout: Duration,
    /// How much of the answer's body is read.
    pub max_response_bytes: usize,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("host", &host_of(&self.url))
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// Sets header `name`, replacing any header of that name (names compare
    /// case-insensitively).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Whether a header called `name` is set.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Sets the body as it is.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON, and `content-type:
    /// application/json` unless a content type is already set.
    pub fn json(mut self, value: &impl serde::Serialize) -> Self {
        // Serialising a `serde_json::Value` or a plain derived struct
        // cannot fail; an empty body would be the visible result if it did.
        self.body = serde_json::to_vec(value).unwrap_or_default();
        if !self.has_header("content-type") {
            self = self.header("content-type", "application/json");
        }
        self
    }

    /// Sets the connect and answer timeouts.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the request once. See [`send`].
    pub fn send(&self) -> Result<Response, HttpError> {
        send(self)
    }

    /// The host (and port, if any) the request goes to, for messages.
    pub fn host(&self) -> String {
        host_of(&self.url)
    }
}

/// A received answer: status, headers and (up to the request's limit) body.
#[derive(Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values (lossy UTF-8), in order.
    pub headers: Vec<(String, String)>,
    /// The body, at most the request's `max_response_bytes`.
    pub body: Vec<u8>,
    /// Whether the body was longer than what was read.
    pub truncated: bool,
    host: String,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("host", &self.host)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON into `T`, if it is that.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body for a person: JSON if it parses, else the text, `null` when
    /// empty.
    pub fn body_value(&self) -> serde_json::Value {
        if self.body.is_empty() {
            return serde_json::Value::Null;
        }
        self.json()
            .unwrap_or_else(|| serde_json::Value::String(self.text()))
    }

    /// The start of the body on one line (at most 200 characters), for an
    /// error message.
    pub fn snippet(&self) -> String {
        snippet(&self.text(), 200)
    }

    /// The host that answered (and its port, if the URL gave one).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `Ok` for a 2xx answer; otherwise the error [`status_error`] gives,
    /// with the start of the body as detail.
    pub fn error_for_status(self, service: &str) -> Result<Self, ToolError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(status_error(service, self.status, &self.snippet()))
        }
    }
}

/// The error for a non-2xx answer of `service`: `failed` for 5xx (the
/// service's trouble), `rejected` for the rest (it refused this request).
/// `detail` (what the service said) is appended when not empty.
pub fn status_error(service: &str, status: u16, detail: &str) -> ToolError {
    let mut message = format!("{service} answered {status}");
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if status >= 500 {
        ToolError::Failed(message)
    } else {
        ToolError::Rejected(message)
    }
}

/// `text` on one line, cut to `max` characters (with `…` when cut).
pub fn snippet(text: &str, max: usize) -> String {
    let one_line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max + 1)
        .collect();
    if one_line.chars().count() > max {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The URL is not an absolute `http://` or `https://` URL.
    InvalidUrl,
    /// A header name or value cannot be sent (the name is given), or the
    /// runtime forbids setting it.
    InvalidHeader(String),
    /// The host refused the call: the tool may not reach this host.
    Denied,
    /// The name did not resolve, or the destination cannot be reached.
    Unreachable,
    /// The destination refused the connection.
    Refused,
    /// Connecting took too long.
    ConnectTimeout,
    /// The answer took too long to start or to continue.
    AnswerTimeout,
    /// TLS failed (certificate, protocol).
    Tls,
    /// The connection broke, or the answer was not valid HTTP.
    Broken,
    /// Anything else the runtime reported, by its WASI name.
    Other(String),
}

/// A request that got no answer, and the host it was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// What happened.
    pub kind: ErrorKind,
    /// The host (and port) the request was for.
    pub host: String,
}

impl HttpError {
    fn new(kind: ErrorKind, host: &str) -> Self {
        Self {
            kind,
            host: host.to_owned(),
        }
    }

    /// Whether trying again may help: the destination was unreachable or
    /// slow or the connection broke, but not a refusal by the host, a bad
    /// URL or header, or a TLS failure.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unreachable
                | ErrorKind::Refused
                | ErrorKind::ConnectTimeout
                | ErrorKind::AnswerTimeout
                | ErrorKind::Broken
                | ErrorKind::Other(_)
        )
    }

    /// Whether the request certainly never reached the remote service, so
    /// that sending it again cannot do the action twice.
    pub fn was_not_sent(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::InvalidUrl
                | ErrorKind::InvalidHeader(_)
                | ErrorKind::Denied
                | ErrorKind::Unreachable
                | ErrorKind::Refused
                | ErrorKind::ConnectTimeout
                | ErrorKind::Tls
        )
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = &self.host;
        match &self.kind {
            ErrorKind::InvalidUrl => {
                write!(f, "the URL is not an absolute http:// or https:// URL")
            }
            ErrorKind::InvalidHeader(name) => write!(f, "the header `{name}` cannot be sent"),
            ErrorKind::Denied => write!(
                f,
                "the runtime does not allow this tool to call {host}: it is not among the tool's allowed outbound hosts"
            ),
            ErrorKind::Unreachable => write!(f, "{host} could not be reached (name or route)"),
            ErrorKind::Refused => write!(f, "{host} refused the connection"),
            ErrorKind::ConnectTimeout => write!(f, "connecting to {host} timed out"),
            ErrorKind::AnswerTimeout => write!(f, "{host} did not answer in time"),
            ErrorKind::Tls => write!(f, "TLS with {host} failed"),
            ErrorKind::Broken => write!(f, "the connection to {host} broke off"),
            ErrorKind::Other(what) => write!(f, "the call to {host} failed ({what})"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for ToolError {
    fn from(error: HttpError) -> Self {
        match error.kind {
            ErrorKind::InvalidUrl | ErrorKind::InvalidHeader(_) => {
                ToolError::InvalidParameters(error.to_string())
            }
            _ => ToolError::Failed(error.to_string()),
        }
    }
}

/// The host and port of `url` (without user info), or `the remote host`
/// when it has none; never the path or query.
fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|uri| {
            let authority = uri.authority()?;
            Some(match authority.port() {
                Some(port) => format!("{}:{port}", authority.host()),
                None => authority.host().to_owned(),
            })
        })
        .unwrap_or_else(|| "the remote host".to_owned())
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a
/// host (and no user info, which `wasi:http` cannot carry).
pub fn check_url(url: &str) -> Result<(), HttpError> {
    parse_url(url).map(|_| ())
}

struct Target {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
    host: String,
}

fn parse_url(url: &str) -> Result<Target, HttpError> {
    let invalid = || HttpError::new(ErrorKind::InvalidUrl, &host_of(url));
    let uri: http::Uri = url.parse().map_err(|_| invalid())?;
    let scheme = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
        Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
        _ => return Err(invalid()),
    };
    let authority = uri.authority().ok_or_else(invalid)?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(invalid());
    }
    Ok(Target {
        scheme,
        authority: authority.as_str().to_owned(),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_owned(),
        host: host_of(url),
    })
}

/// Sends `request` once and reads the answer (its body up to the request's
/// limit). Blocks until done; the timeouts bound the wait.
pub fn send(request: &Request) -> Result<Response, HttpError> {
    let target = parse_url(&request.url)?;
    let host = target.host.as_str();

    let fields = Fields::new();
    for (name, value) in &request.headers {
        if name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        fields
            .append(&name.to_ascii_lowercase(), &value.as_bytes().to_vec())
            .map_err(|_| HttpError::new(ErrorKind::InvalidHeader(name.clone()), host))?;
    }
    // The whole body is known: say its length rather than stream it
    // chunked, which some receivers (and some proxies) do not take.
    let has_body = !request.body.is_empty()
        || matches!(request.method, Method::Post | Method::Put | Method::Patch);
    if has_body {
        let length = request.body.len().to_string().into_bytes();
        fields
            .append(&"content-length".to_owned(), &length)
            .map_err(|_| HttpError::new(ErrorKind::InvalidHeader("content-length".into()), host))?;
    }
    let outgoing = OutgoingRequest::new(fields);
    let invalid = || HttpError::new(ErrorKind::InvalidUrl, host);
    outgoing
        .set_method(&request.method.to_wasi())
        .map_err(|_| invalid())?;
    outgoing
        .set_scheme(Some(&target.scheme))
        .map_err(|_| invalid())?;
    outgoing
        .set_authority(Some(&target.authority))
        .map_err(|_| invalid())?;
    outgoing
        .set_path_with_query(Some(&target.path_and_query))
        .map_err(|_| invalid())?;

    let options = RequestOptions::new();
    let nanos = u64::try_from(request.timeout.as_nanos()).unwrap_or(u64::MAX);
    // A runtime that does not support a timeout keeps its own default.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));

    let body = outgoing
        .body()
        .map_err(|_| HttpError::new(ErrorKind::Other("body".into()), host))?;
    // Hand the request over first, then stream the body: a runtime may only
    // drain the body once the request is on its way.
    let future = outgoing_handler::handle(outgoing, Some(options))
        .map_err(|code| HttpError::new(kind_of(&code), host))?;
    write_body(body, &request.body);

    let answer = {
        let pollable = future.subscribe();
        pollable.block();
        future.get()
    };
    drop(future);
    let response = match answer {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(HttpError::new(kind_of(&code), host)),
        Some(Err(())) | None => {
            return Err(HttpError::new(ErrorKind::Other("no answer".into()), host));
        }
    };
    read_response(response, request, host)
}

/// Writes the body and finishes it. A failure here shows up as the
/// request's own error code, which the caller reads from the answer.
fn write_body(body: OutgoingBody, bytes: &[u8]) {
    if let Ok(stream) = body.write() {
        // `blocking_write_and_flush` takes at most 4096 bytes at a time.
        for chunk in bytes.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(body, None);
}

fn read_response(
    response: IncomingResponse,
    request: &Request,
    host: &str,
) -> Result<Response, HttpError> {
    let status = response.status();
    let headers = {
        let fields = response.headers();
        let entries = fields.entries();
        drop(fields);
        entries
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    String::from_utf8_lossy(&value).into_owned(),
                )
            })
            .collect()
    };
    let mut body = Vec::new();
    let mut truncated = false;
    if request.method != Method::Head {
        let incoming = response
            .consume()
            .map_err(|_| HttpError::new(ErrorKind::Broken, host))?;
        let stream = incoming
            .stream()
            .map_err(|_| HttpError::new(ErrorKind::Broken, host))?;
        let limit = request.max_response_bytes;
        loop {
            let want = (limit + 1).saturating_sub(body.len()).clamp(1, 64 * 1024);
            match stream.blocking_read(want as u64) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(error)) => {
                    let kind = wasi::http::types::http_error_code(&error)
                        .map(|code| kind_of(&code))
                        .unwrap_or(ErrorKind::Broken);
                    return Err(HttpError::new(kind, host));
                }
            }
            if body.len() > limit {
                body.truncate(limit);
                truncated = true;
                break;
            }
        }
        drop(stream);
        drop(incoming);
    }
    drop(response);
    Ok(Response {
        status,
        headers,
        body,
        truncated,
        host: host.to_owned(),
    })
}

/// Sends `request` up to `1 + backoff.retries` times: again after a 5xx
/// answer or a [transient](HttpError::is_transient) failure, never after a
/// 4xx. Returns the last outcome and the number of attempts made.
///
/// Only for requests that are safe to repeat (idempotent, or deduplicated
/// by the remote side): a 5xx or a broken connection may come after the
/// action was done.
pub fn send_with_retries(
    request: &Request,
    backoff: &Backoff,
) -> (Result<Response, HttpError>, u32) {
    retry(backoff, |_| match send(request) {
        Ok(response) if response.status >= 500 => Step::Retry(Ok(response)),
        Err(error) if error.is_transient() => Step::Retry(Err(error)),
        outcome => Step::Done(outcome),
    })
}

/// Sends `request`, and once more after a short pause if it certainly
/// never reached the service ([`HttpError::was_not_sent`], not counting a
/// refusal by the host): the retry for requests that must not run twice,
/// such as posting a message.
pub fn send_once_more_if_unsent(request: &Request) -> Result<Response, HttpError> {
    retry(&Backoff::new(1), |_| match send(request) {
        Err(error) if error.was_not_sent() && error.is_transient() => Step::Retry(Err(error)),
        outcome => Step::Done(outcome),
    })
    .0
}

/// The [`ErrorKind`] of a `wasi:http` error code.
fn kind_of(code: &ErrorCode) -> ErrorKind {
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => ErrorKind::Denied,
        ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable => ErrorKind::Unreachable,
        ErrorCode::ConnectionRefused => ErrorKind::Refused,
        ErrorCode::ConnectionTimeout => ErrorKind::ConnectTimeout,
        ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => ErrorKind::AnswerTimeout,
        ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => ErrorKind::Tls,
        ErrorCode::ConnectionTerminated
        | ErrorCode::HttpResponseIncomplete
        | ErrorCode::HttpProtocolError => ErrorKind::Broken,
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestUriTooLong => {
            ErrorKind::InvalidUrl
        }
        other => {
            // The case name only: payloads (e.g. `internal-error`'s text)
            // may quote the request.
            let name = format!("{other:?}");
            let name = name.split('(').next().unwrap_or_default();
            ErrorKind::Other(name.trim_start_matches("ErrorCode::").to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_never_include_paths_or_user_info() {
        assert_eq!(
            host_of("https://hooks.slack.com/services/T/B/secret"),
            "hooks.slack.com"
        );
        assert_eq!(host_of("http://u:p@127.0.0.1:9001/x?y"), "127.0.0.1:9001");
        assert_eq!(host_of("not a url"), "the remote host");
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(check_url("https://example.com").is_ok());
        assert!(check_url("http://example.com:8080/a?b=c").is_ok());
        for bad in [
            "ftp://example.com/",
            "/relative",
            "example.com",
            "https://u:p@example.com/",
            "",
        ] {
            assert_eq!(
                check_url(bad).unwrap_err().kind,
                ErrorKind::InvalidUrl,
                "{bad}"
            );
        }
    }

    #[test]
    fn statuses_map_to_rejected_and_failed() {
        assert!(
            matches!(status_error("x", 404, ""), ToolError::Rejected(m) if m == "x answered 404")
        );
        assert!(
            matches!(status_error("x", 503, "busy"), ToolError::Failed(m) if m == "x answered 503: busy")
        );
    }

    #[test]
    fn denied_calls_say_the_host_is_not_allowed() {
        let error = HttpError::new(kind_of(&ErrorCode::HttpRequestDenied), "evil.example");
        assert!(!error.is_transient());
        let message = ToolError::from(error).to_string();
        assert!(message.starts_with("failed: "), "{message}");
        assert!(message.contains("does not allow"), "{message}");
        assert!(message.contains("evil.example"), "{message}");
    }

    #[test]
    fn snippets_are_short_and_on_one_line() {
        assert_eq!(snippet("a\n  b", 10), "a b");
        assert_eq!(snippet("abcdef", 3), "abc…");
    }
}
