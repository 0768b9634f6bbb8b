//! The executions endpoint group: an execution's input, output, context
//! and workflow condition (`docs/api.md`, "Routes").
//!
//! | route                              | what it does                          |
//! |------------------------------------|---------------------------------------|
//! | `GET  /executions/{id}/input`      | `metadata.input` of the execution     |
//! | `POST /executions/{id}/output`     | records `{"data":..}` as the output   |
//! | `GET  /executions/{id}/context`    | the execution record                  |
//! | `POST /executions/{id}/condition`  | records `{"condition":bool}`          |
//! | `GET  /health`                     | liveness (reached only under Spin)    |
//!
//! The execution record is immutable while it runs: it is read from the
//! cache, else from the backend (and then cached). Writes go to the
//! backend, the source of truth. Reads that reached the backend and every
//! write are audited.

use cronium_guest::bindings::auth::Caller;
use cronium_guest::bindings::backend;
use cronium_guest::{ApiError, Reply, Request, audit, authorize, execution, path};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};
use spin_sdk::http::Method;

cronium_guest::endpoint!(route);

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
    if segments.as_slice() == ["health"] {
        return health(&request);
    }
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

/// `GET /health`, unauthenticated, as `docs/api.md` describes it. The
/// custom host answers `/health` itself; Spin routes it here, since a Spin
/// app answers only through its components.
fn health(request: &Request) -> Result<Reply, ApiError> {
    if request.method != Method::Get {
        return Err(ApiError::method_not_allowed("GET"));
    }
    let time = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| internal())?;
    Ok(Reply::json(200, json!({"status": "healthy", "time": time})))
}

/// The input as written (`null` without one), never parsed.
fn get_input(caller: &Caller) -> Result<Reply, ApiError> {
    let execution = execution::load(caller, "get_input")?;
    Ok(Reply::serialized_data(&execution.input()))
}

fn get_context(caller: &Caller) -> Result<Reply, ApiError> {
    let execution = execution::load(caller, "get_context")?;
    Ok(Reply::serialized_data(&execution))
}

/// `{"data":null}` is an output of null; a body without `data` is a 400.
#[derive(Deserialize)]
struct OutputBody<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

fn set_output(caller: &Caller, request: &Request) -> Result<Reply, ApiError> {
    let body: OutputBody = request.json()?;
    let data = body.data.get();
    let result = backend::set_output(caller, data).map_err(ApiError::from);
    audit::record(
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

fn set_condition(caller: &Caller, request: &Request) -> Result<Reply, ApiError> {
    let body: ConditionBody = request.json()?;
    let Value::Bool(condition) = body.condition else {
        return Err(ApiError::bad_request("\"condition\" must be a boolean"));
    };
    let result = backend::set_condition(caller, condition).map_err(ApiError::from);
    audit::record(
        caller,
        "set_condition",
        &result,
        json!({ "condition": condition }),
    );
    result.map(|()| Reply::ok())
}

fn internal() -> ApiError {
    ApiError::new(500, "internal error")
}
