//! The one error type of the endpoint components and its JSON shape:
//! `{"error":"<reason phrase>","message":"<for a person>"}`.

use crate::bindings::auth::AuthError;
use crate::bindings::backend::BackendError;

/// An error answer: a status, a message for a person, and any headers the
/// status calls for (`Retry-After`, `Allow`, `ETag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status answered (4xx or 5xx); it also picks the `error`
    /// reason phrase of the body and the audit outcome ([`Self::kind`]).
    pub status: u16,
    /// The body's `message`: what went wrong, for a person. It goes to
    /// the client as it is, so it must hold no secret.
    pub message: String,
    /// Extra response headers (`retry-after`, `allow`, `etag`), in the
    /// order added.
    pub headers: Vec<(String, String)>,
}

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 2;

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// 400: the request is not what the route takes.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }

    /// 403: valid credentials that do not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 405: the route exists but not with this method.
    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(
            405,
            format!("method not allowed; this route accepts {allowed}"),
        )
        .with_header("allow", allowed)
    }

    /// 413: the body is over the route's cap.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(413, format!("request body is larger than {limit} bytes"))
    }

    /// 502: the backend failed in a way the caller cannot fix.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, message)
    }

    /// 503: a dependency is down; try again shortly.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message).with_header("retry-after", RETRY_AFTER_SECS.to_string())
    }

    /// 504: a dependency did not answer in time.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(504, message)
    }

    /// A short name of the error's kind, used as the audit `outcome`.
    pub fn kind(&self) -> &'static str {
        match self.status {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            412 => "precondition_failed",
            413 => "payload_too_large",
            422 => "unprocessable",
            501 => "not_implemented",
            429 => "rate_limited",
            502 => "bad_gateway",
            503 => "unavailable",
            504 => "timeout",
            _ => "error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        cronium_rules::error_body::json(self.status, &self.message)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::MissingCredentials => Self::unauthorized("missing Authorization header"),
            AuthError::Malformed(why) => Self::unauthorized(format!("invalid token: {why}")),
            AuthError::InvalidSignature => Self::unauthorized("invalid token signature"),
            AuthError::UnsupportedAlgorithm(alg) => {
                Self::unauthorized(format!("token algorithm {alg} is not accepted"))
            }
            AuthError::Expired => Self::unauthorized("token has expired"),
            AuthError::NotYetValid => Self::unauthorized("token is not valid yet"),
            AuthError::TooOld => Self::unauthorized("token is older than its maximum lifetime"),
            AuthError::MissingClaim(claim) => {
                Self::unauthorized(format!("token has no {claim} claim"))
            }
            AuthError::Revoked => Self::forbidden("this job's tokens have been revoked"),
            AuthError::OtherExecution => {
                Self::forbidden("this runtime serves another execution; the token is not for it")
            }
            AuthError::Unavailable(_) => {
                Self::unavailable("token revocation cannot be checked right now")
            }
            AuthError::RateLimited(seconds) => Self::new(429, "rate limit exceeded; slow down")
                .with_header("retry-after", seconds.to_string()),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        match error {
            BackendError::NotFound => Self::not_found("execution not found"),
            BackendError::Rejected(r) => match r.status {
                // The caller's own problem, passed on as such.
                403 | 404 | 409 | 412 | 413 => Self::new(r.status, r.message),
                // Answers the backend should not give to a well-formed call.
                _ => Self::bad_gateway(format!("backend refused the call: {}", r.message)),
            },
            // Never the script's own 401: its token was fine.
            BackendError::CredentialsRefused => Self::bad_gateway(
                "the Cronium backend refused the runtime's credentials; \
                 the operator must check the runtime's BACKEND_TOKEN",
            ),
            BackendError::Unavailable(_) => Self::unavailable("the Cronium backend is unavailable"),
            BackendError::Timeout => {
                Self::gateway_timeout("the Cronium backend did not answer in time")
            }
            BackendError::InvalidResponse(_) => {
                Self::bad_gateway("the Cronium backend answered something unreadable")
            }
        }
    }
}
