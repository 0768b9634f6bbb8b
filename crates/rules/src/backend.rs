//! How the Cronium backend's internal API is called (`docs/api.md`, "The
//! backend we call"): the paths, the headers that name the caller, which answers
//! count as success, and how every other answer maps to an error. The
//! host's HTTP client and the Spin backend adapter both follow these
//! rules; only the transport differs.

pub mod protocol;

use std::time::Duration;

use serde_json::Value;

use crate::wire;

/// The header naming the calling execution (sent on every call made for
/// a verified caller).
pub const EXECUTION_ID_HEADER: &str = "x-execution-id";

/// The header carrying the token's capability, when it had one.
pub const CAPABILITY_HEADER: &str = "x-job-capability";

/// Where audit events are delivered.
pub const AUDIT_PATH: &str = "/api/internal/audit";

/// Where tool actions not installed in the runtime are relayed.
pub const TOOLS_EXECUTE_PATH: &str = "/api/internal/tools/execute";

/// The header a relayed tool action carries its caller's
/// `Idempotency-Key` in, so that a backend that understands it can
/// deduplicate its own retries.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The largest backend answer read; anything larger is a broken backend.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Attempts of an idempotent (`GET`) call: the first plus retries.
pub const IDEMPOTENT_ATTEMPTS: u32 = 3;

/// Why a backend call failed, before it is put in the caller's own error
/// type (the host's `BackendError`, the WIT `backend-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// 404: the backend has no such execution, variable or tool.
    #[error("not found")]
    NotFound,
    /// The backend refused the call: any other 4xx, or a 2xx body of
    /// `{"success":false}` (status 502).
    #[error("backend refused the call ({status}): {message}")]
    Rejected {
        /// HTTP status to answer the caller with: the backend's, or one
        /// the rules chose (502, or 400/501 for calls refused here).
        status: u16,
        /// The backend's `message` or `error`, else the reason phrase;
        /// never its raw body.
        message: String,
    },
    /// No answer (the connection failed), or a 5xx; and why, without the
    /// peer's address.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The call's budget ran out before an answer came.
    #[error("backend timed out")]
    Timeout,
    /// The answer could not be read or is not the JSON expected (too large,
    /// cut off, malformed); and why.
    #[error("backend answered something unreadable: {0}")]
    InvalidResponse(String),
    /// The backend refused the runtime's own credentials (401 or 403 to
    /// every call): `BACKEND_TOKEN` is not the app's `INTERNAL_API_KEY`.
    /// Never the script's fault, so never shown to it as its own 401.
    #[error(
        "the Cronium backend refused the runtime's credentials ({0}): check BACKEND_TOKEN \
         (the Cronium app's INTERNAL_API_KEY)"
    )]
    CredentialsRefused(u16),
}

/// Passes a 2xx answer; maps everything else to a [`BackendError`]. A 2xx body
/// of `{"success":false,...}` is a refusal too (status 502, the backend's
/// `message` or `error` as the message).
pub fn check_answer(status: u16, body: &[u8]) -> Result<(), BackendError> {
    if !(200..300).contains(&status) {
        return Err(status_failure(status, body));
    }
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body)
        && map.get("success") == Some(&Value::Bool(false))
    {
        return Err(BackendError::Rejected {
            status: 502,
            message: wire::error_message(body)
                .unwrap_or_else(|| "the backend reported a failure".into()),
        });
    }
    Ok(())
}

/// The failure a non-2xx answer means: 404 is `NotFound`, 401 and 403 the
/// backend refusing the runtime's credentials, 5xx the backend being
/// unavailable, any other status a refusal whose message is the backend's
/// (never its raw body, which may hold internal details).
pub fn status_failure(status: u16, body: &[u8]) -> BackendError {
    match status {
        404 => BackendError::NotFound,
        401 | 403 => BackendError::CredentialsRefused(status),
        500..=599 => BackendError::Unavailable(format!("backend answered {status}")),
        _ => BackendError::Rejected {
            status,
            message: wire::error_message(body)
                .unwrap_or_else(|| crate::error_body::reason_phrase(status).to_owned()),
        },
    }
}

/// Whether a 404 is the Cronium app's catch-all for a route it does not
/// have (`{"error":"Not Found","message":"API endpoint '<path>' does not
/// exist","statusCode":404,...}`): the backend cannot do what was asked at
/// all, which is not the same as not finding the thing asked for.
pub fn route_missing(status: u16, body: &[u8]) -> bool {
    status == 404
        && wire::error_message(body)
            .is_some_and(|m| m.starts_with("API endpoint '") && m.ends_with("' does not exist"))
}

/// Whether an idempotent call answered with `status` is worth retrying.
pub fn retryable(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// The pause before retry `attempt` (1-based) of an idempotent call:
/// 50 ms, then 200 ms.
pub fn retry_pause(attempt: u32) -> Duration {
    Duration::from_millis(50 << (2 * attempt.saturating_sub(1).min(8)))
}

/// `/api/internal/executions/{id}/{operation}`.
pub fn execution_path(execution_id: &str, operation: &str) -> String {
    format!(
        "/api/internal/executions/{}/{operation}",
        encode_segment(execution_id)
    )
}

/// `/api/internal/variables/{userId}/{key}`, each one segment.
pub fn variable_path(user_id: &str, key: &str) -> String {
    format!(
        "/api/internal/variables/{}/{}",
        encode_segment(user_id),
        encode_segment(key)
    )
}

/// `/api/internal/tools/credentials/{userId}/{tool}`.
pub fn tool_credentials_path(user_id: &str, tool: &str) -> String {
    format!(
        "/api/internal/tools/credentials/{}/{}",
        encode_segment(user_id),
        encode_segment(tool)
    )
}

/// The headers naming a verified caller: its execution, and its
/// capability when the token carried one.
pub fn caller_headers(
    execution_id: &str,
    capability_token: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![(EXECUTION_ID_HEADER, execution_id.to_owned())];
    if let Some(capability) = capability_token {
        headers.push((CAPABILITY_HEADER, capability.to_owned()));
    }
    headers
}

/// The `Authorization` value for the configured backend token; none for
/// an empty token.
pub fn authorization(token: &str) -> Option<String> {
    (!token.is_empty()).then(|| format!("Bearer {token}"))
}

/// The `metadata` of an audit event as the backend stores it: the
/// action's own fields (`details`, a JSON object; anything else counts as
/// none) plus `userId`, `jobId` and `outcome`.
pub fn audit_metadata(
    details: &str,
    user_id: Option<&str>,
    job_id: Option<&str>,
    outcome: &str,
) -> Value {
    let mut metadata = match serde_json::from_str::<Value>(details) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    metadata.insert("userId".into(), user_id.into());
    metadata.insert("jobId".into(), job_id.into());
    metadata.insert("outcome".into(), outcome.into());
    Value::Object(metadata)
}

/// Percent-encodes one path segment (ids and keys are opaque to us).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("exec-1_x.y~"), "exec-1_x.y~");
        assert_eq!(
            variable_path("u/1", "a/b"),
            "/api/internal/variables/u%2F1/a%2Fb"
        );
        assert_eq!(
            execution_path("e 1", "context"),
            "/api/internal/executions/e%201/context"
        );
    }

    #[test]
    fn a_success_false_body_is_a_refusal_with_the_backends_error() {
        assert_eq!(
            check_answer(200, br#"{"success":false,"error":"slack said no"}"#),
            Err(BackendError::Rejected {
                status: 502,
                message: "slack said no".into()
            })
        );
        assert_eq!(check_answer(200, br#"{"success":true}"#), Ok(()));
        assert_eq!(check_answer(204, b""), Ok(()));
    }

    #[test]
    fn statuses_map_to_failures() {
        assert_eq!(status_failure(404, b""), BackendError::NotFound);
        assert!(matches!(
            status_failure(503, b""),
            BackendError::Unavailable(_)
        ));
        assert_eq!(
            status_failure(401, b""),
            BackendError::CredentialsRefused(401)
        );
        assert_eq!(
            status_failure(403, b""),
            BackendError::CredentialsRefused(403)
        );
        assert_eq!(
            status_failure(409, b""),
            BackendError::Rejected {
                status: 409,
                message: "Conflict".into()
            }
        );
        assert_eq!(
            status_failure(400, br#"{"message":"bad key"}"#),
            BackendError::Rejected {
                status: 400,
                message: "bad key".into()
            }
        );
    }

    #[test]
    fn the_apps_catch_all_404_is_a_missing_route() {
        let catch_all = br#"{"error":"Not Found","message":"API endpoint '/api/internal/tools/execute' does not exist","statusCode":404}"#;
        assert!(route_missing(404, catch_all));
        assert!(!route_missing(
            404,
            br#"{"error":"Not Found","message":"no such tool"}"#
        ));
        assert!(!route_missing(404, b""));
        assert!(!route_missing(500, catch_all));
    }

    #[test]
    fn only_gateway_errors_are_retried_and_pauses_grow() {
        assert!(retryable(502) && retryable(503) && retryable(504));
        assert!(!retryable(500) && !retryable(404));
        assert_eq!(retry_pause(1), Duration::from_millis(50));
        assert_eq!(retry_pause(2), Duration::from_millis(200));
    }

    #[test]
    fn audit_metadata_adds_who_and_how_to_the_actions_fields() {
        let metadata = audit_metadata(r#"{"key":"k"}"#, Some("u1"), None, "ok");
        assert_eq!(
            metadata,
            serde_json::json!({"key": "k", "userId": "u1", "jobId": null, "outcome": "ok"})
        );
        assert_eq!(
            audit_metadata("[1]", None, Some("j"), "not_found")["jobId"],
            "j",
            "details that are not an object are dropped"
        );
    }

    #[test]
    fn the_caller_is_named_by_its_execution_and_capability() {
        assert_eq!(
            caller_headers("e1", Some("cap")),
            vec![
                (EXECUTION_ID_HEADER, "e1".to_owned()),
                (CAPABILITY_HEADER, "cap".to_owned())
            ]
        );
        assert_eq!(caller_headers("e1", None).len(), 1);
        assert_eq!(authorization(""), None);
        assert_eq!(authorization("t").as_deref(), Some("Bearer t"));
    }
}
