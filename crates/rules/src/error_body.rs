//! The one JSON error body of this API,
//! `{"error":"<reason phrase>","message":"<for a person>"}` (`docs/api.md`,
//! "Errors"): built here for the host's own answers, the endpoint
//! components' and the messages of the backend's refusals alike.

use serde_json::{Value, json};

/// The reason phrase of a status this API answers with (or relays from
/// the backend); `Error` for any other.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// The error body of `status` with `message`.
pub fn json(status: u16, message: &str) -> Value {
    json!({ "error": reason_phrase(status), "message": message })
}

/// [`json()`] as text, ready to send.
pub fn text(status: u16, message: &str) -> String {
    json(status, message).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_the_status_and_says_why() {
        assert_eq!(
            text(503, "the Cronium backend is unavailable"),
            r#"{"error":"Service Unavailable","message":"the Cronium backend is unavailable"}"#
        );
        assert_eq!(json(418, "x")["error"], "Error");
    }
}
