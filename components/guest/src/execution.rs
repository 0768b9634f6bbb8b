//! The caller's execution record, read through the cache.

use cronium_rules::keys;
use cronium_rules::wire::Execution;
use serde_json::json;

use crate::ApiError;
use crate::audit;
use crate::bindings::types::{self, Claims};
use crate::bindings::{backend, cache};

/// The caller's execution: from the cache, else from the backend (then
/// cached, and the read audited as `action`). The record does not change
/// while the execution runs, so a cached copy is never stale.
pub fn load(caller: &Claims, action: &str) -> Result<Execution, ApiError> {
    let key = keys::execution(&caller.execution_id);
    if let Ok(Some(cached)) = cache::get(&key) {
        // A cached record that does not parse (another version wrote it)
        // is a miss and gets overwritten.
        if let Ok(execution) = serde_json::from_str::<Execution>(&cached) {
            return Ok(execution);
        }
    }
    let result = backend::get_execution(caller)
        .map_err(ApiError::from)
        .and_then(|e| from_wit(e).ok_or_else(unreadable));
    audit::record(caller, action, &result, json!({}));
    let execution = result?;
    if let Ok(text) = serde_json::to_string(&execution) {
        // A cache that cannot be written is not an error: the next read
        // goes to the backend again.
        let _ = cache::set(&key, &text, None);
    }
    Ok(execution)
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
