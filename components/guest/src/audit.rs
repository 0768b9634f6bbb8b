//! Audit events, one per action (`CONTRACT.md`, "Audit").

use serde_json::Value;

use crate::ApiError;
use crate::bindings::audit::{self, AuditEvent};
use crate::bindings::types::Claims;

/// Audits `action` of `caller` with the outcome of `result` (`ok` or the
/// error's kind) and the action's own `details` (a JSON object that must
/// never hold a secret or a variable's value).
pub fn record<T>(caller: &Claims, action: &str, result: &Result<T, ApiError>, details: Value) {
    audit::emit(&AuditEvent {
        execution_id: caller.execution_id.clone(),
        action: action.to_owned(),
        user_id: caller.user_id.clone(),
        job_id: Some(caller.job_id.clone()),
        outcome: match result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.kind().to_owned(),
        },
        details: details.to_string(),
    });
}
