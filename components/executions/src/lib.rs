//! The executions endpoint group: an execution's input, output, context
//! and workflow condition (`CONTRACT.md`, "Routes").
//!
//! | route                              | what it does                          |
//! |------------------------------------|---------------------------------------|
//! | `GET  /executions/{id}/input`      | `metadata.input` of the execution     |
//! | `POST /executions/{id}/output`     | records `{"data":..}` as the output   |
//! | `GET  /executions/{id}/context`    | the execution record                  |
//! | `POST /executions/{id}/condition`  | records `{"condition":bool}`          |
//!
//! The execution record is immutable while it runs: it is read from the
//! cache, else from the backend (and then cached). Writes go to the
//! backend, the source of truth. Reads that reached the backend and every
//! write are audited.

use cronium_guest::bindings::audit::{self, AuditEvent};
use cronium_guest::bindings::types::Claims;
use cronium_guest::bindings::{backend, cache};
use cronium_guest::{ApiError, Reply, Request, authorize, path};
use cronium_rules::keys;
use cronium_rules::wire::Execution;
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    cronium_guest::serve(request, out, route).await
}

/// One of the group's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Input,
    Output,
    Context,
    Condition,
}

fn route(request: Request) -> Result<Reply, ApiError> {
    let segments = path::segments(&request.path);
    let (raw_id, op) = match segments.as_slice() {
        ["executions", id, op] if !id.is_empty() => (*id, *op),
        _ => return Err(ApiError::not_found("no such route")),
    };
    let (operation, allowed) = match op {
        "input" => (Operation::Input, Method::Get),
        "output" => (Operation::Output, Method::Post),
        "context" => (Operation::Context, Method::Get),
        "condition" => (Operation::Condition, Method::Post),
        _ => return Err(ApiError::not_found("no such route")),
    };
    if request.method != allowed {
        return Err(ApiError::method_not_allowed(&allowed.to_string()));
    }
    let execution_id = path::decode(raw_id)?;
    let caller = authorize(&request, &execution_id)?;
    match operation {
        Operation::Input => get_input(&caller),
        Operation::Context => get_context(&caller),
        Operation::Output => set_output(&caller, &request),
        Operation::Condition => set_condition(&caller, &request),
    }
}

fn get_input(caller: &Claims) -> Result<Reply, ApiError> {
    let execution = load_execution(caller, "get_input")?;
    Ok(Reply::data(
        execution.input().cloned().unwrap_or(Value::Null),
    ))
}

fn get_context(caller: &Claims) -> Result<Reply, ApiError> {
    let execution = load_execution(caller, "get_context")?;
    let data = serde_json::to_value(&execution).map_err(|_| internal())?;
    Ok(Reply::data(data))
}

/// `{"data":null}` is an output of null; a body without `data` is a 400.
#[derive(Deserialize)]
struct OutputBody<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

fn set_output(caller: &Claims, request: &Request) -> Result<Reply, ApiError> {
    let body: OutputBody = request.json()?;
    let data = body.data.get();
    let result = backend::set_output(caller, data).map_err(ApiError::from);
    record(
        caller,
        "set_output",
        &result,
        json!({ "bytes": data.len() }),
    );
    result.map(|()| Reply::ok())
}

#[derive(Deserialize)]
struct ConditionBody {
    condition: Value,
}

fn set_condition(caller: &Claims, request: &Request) -> Result<Reply, ApiError> {
    let body: ConditionBody = request.json()?;
    let Value::Bool(condition) = body.condition else {
        return Err(ApiError::bad_request("\"condition\" must be a boolean"));
    };
    let result = backend::set_condition(caller, condition).map_err(ApiError::from);
    record(
        caller,
        "set_condition",
        &result,
        json!({ "condition": condition }),
    );
    result.map(|()| Reply::ok())
}

/// The caller's execution: from the cache, else from the backend (then
/// cached, and the read audited as `action`).
fn load_execution(caller: &Claims, action: &str) -> Result<Execution, ApiError> {
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
        .and_then(|e| from_wit(e).ok_or_else(bad_record));
    record(caller, action, &result, json!({}));
    let execution = result?;
    if let Ok(text) = serde_json::to_string(&execution) {
        // A cache that cannot be written is not an error: the next read
        // goes to the backend again.
        let _ = cache::set(&key, &text, None);
    }
    Ok(execution)
}

fn from_wit(e: cronium_guest::bindings::types::Execution) -> Option<Execution> {
    Some(Execution {
        execution_id: e.execution_id,
        job_id: e.job_id,
        event_id: e.event_id,
        event_name: e.event_name,
        event_type: e.event_type,
        user_id: e.user_id,
        start_time: e.start_time,
        metadata: serde_json::from_str(&e.metadata).ok()?,
    })
}

/// Audits `action` with its outcome.
fn record<T>(caller: &Claims, action: &str, result: &Result<T, ApiError>, details: Value) {
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

fn bad_record() -> ApiError {
    ApiError::bad_gateway("the Cronium backend returned an unreadable execution")
}

fn internal() -> ApiError {
    ApiError::new(500, "internal error")
}
