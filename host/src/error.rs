//! The host's own error answers, in the contract's JSON shape
//! (`{"error":"<reason phrase>","message":"..."}`), for what is decided
//! before or around a component: unknown routes, body caps, traps,
//! deadlines.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

/// An error the host answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Headers the status calls for (`Retry-After`, `Allow`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for a path no component serves.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "no such route")
    }

    /// 405 for a native route, which take `GET` and `HEAD`.
    pub fn method_not_allowed() -> Self {
        let mut error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed; this route accepts GET, HEAD",
        );
        error
            .headers
            .push((ALLOW, HeaderValue::from_static("GET, HEAD")));
        error
    }

    /// 413 for a body over `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// 500: something failed that the caller cannot fix. The message is
    /// generic on purpose; the details go to the log.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after: u32) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, message);
        error
            .headers
            .push((RETRY_AFTER, HeaderValue::from(retry_after)));
        error
    }

    /// 504: the component ran past its deadline.
    pub fn deadline_exceeded() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "the request ran past its deadline",
        )
    }

    /// The response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = cronium_rules::error_body::text(self.status.as_u16(), &self.message);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
