//! Audit events, one per action (`docs/api.md`, "Audit").

use serde_json::Value;

use crate::ApiError;
use crate::bindings::audit::{self, AuditEvent};
use crate::bindings::auth::Caller;

/// Audits `action` of `caller` with the outcome of `result` (`ok` or the
/// error's kind) and the action's own `details` (a JSON object that must
/// never hold a secret or a variable's value). Who acted is the host's to
/// say, from the caller.
pub fn record<T>(caller: &Caller, action: &str, result: &Result<T, ApiError>, details: Value) {
    audit::emit(
        caller,
        &AuditEvent {
            action: action.to_owned(),
            outcome: match result {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.kind().to_owned(),
            },
            details: details.to_string(),
        },
    );
}
