//! The caller's execution record.

use cronium_rules::wire::Execution;
use serde_json::json;

use crate::ApiError;
use crate::audit;
use crate::bindings::auth::Caller;
use crate::bindings::{backend, types};

/// The caller's execution. The `backend` capability keeps the record (it
/// does not change while the execution runs); a read that reached the
/// backend is audited as `action`, and so is a failed one.
pub fn load(caller: &Caller, action: &str) -> Result<Execution, ApiError> {
    let read = backend::get_execution(caller).map_err(ApiError::from);
    let from_backend = read.as_ref().map_or(true, |r| r.from_backend);
    let result = read.and_then(|r| from_wit(r.execution).ok_or_else(unreadable));
    if from_backend {
        audit::record(caller, action, &result, json!({}));
    }
    result
}

fn from_wit(e: types::Execution) -> Option<Execution> {
    Some(Execution {
        execution_id: e.execution_id,
        job_id: e.job_id,
        event_id: e.event_id,
        event_name: e.event_name,
        event_type: e.event_type,
        user_id: e.user_id,
        start_time: e.start_time,
        metadata: serde_json::value::RawValue::from_string(e.metadata).ok()?,
    })
}

fn unreadable() -> ApiError {
    ApiError::bad_gateway("the Cronium backend returned an unreadable execution")
}
