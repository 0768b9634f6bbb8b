//! The tool-actions endpoint group: scripts notify people and systems.
//!
//! | route                        | what it does                                  |
//! |------------------------------|-----------------------------------------------|
//! | `GET  /tool-actions`         | the catalogue: installed tools, actions, schemas |
//! | `POST /tool-actions/execute` | `{"tool","action","config"}` (or `params`) runs one action |
//!
//! An installed tool runs through the `tools` registry: the action name is
//! resolved (aliases included), the parameters are checked against the
//! action's schema, the user's credentials come from the operator's files
//! or the backend (scripts never see them; a missing one is a 400 that
//! says where it goes), and the result is answered as `data`. A tool not
//! installed here is relayed to the backend, as the Go service did: 404
//! when the backend does not know it either, 501 naming the tool when the
//! backend has no tools route (the Cronium app).
//!
//! With an `Idempotency-Key` header, installed and relayed tools alike,
//! the first successful result is kept for [`idempotency::RESULT_TTL_MS`]
//! and a retry gets it back without running the action again; a retry
//! arriving while the first call runs waits for it (the protocol is
//! [`idempotency::run_once`]). A relayed call carries the key to the
//! backend too.

use std::time::Instant;

use cronium_guest::bindings::auth::{self, Caller};
use cronium_guest::bindings::backend;
use cronium_guest::bindings::cache::{self, Scope};
use cronium_guest::bindings::tool_types::{Manifest, ToolError};
use cronium_guest::bindings::tools::{self, ToolCall, ToolsError};
use cronium_guest::{ApiError, Reply, Request, audit, execution};
use cronium_rules::idempotency::{self, CacheUnavailable, Outcome, Refusal};
use cronium_rules::schema::{self, Schema};
use cronium_rules::tools::resolve_action;
use serde::Deserialize;
use serde_json::{Value, json};
use spin_sdk::http::Method;

cronium_guest::endpoint!(route);

fn route(request: Request) -> Result<Reply, ApiError> {
    match (request.path.as_str(), &request.method) {
        ("/tool-actions", Method::Get) => catalogue(&request),
        ("/tool-actions", _) => Err(ApiError::method_not_allowed("GET")),
        ("/tool-actions/execute", Method::Post) => execute(&request),
        ("/tool-actions/execute", _) => Err(ApiError::method_not_allowed("POST")),
        _ => Err(ApiError::not_found("no such route")),
    }
}

/// `GET /tool-actions`: every installed tool with its actions and their
/// parameter schemas.
fn catalogue(request: &Request) -> Result<Reply, ApiError> {
    auth::verify(request.header("authorization"))?;
    let tools: Vec<Value> = tools::installed().iter().map(describe).collect();
    Ok(Reply::data(json!({ "tools": tools })))
}

fn describe(tool: &Manifest) -> Value {
    let actions: Vec<Value> = tool
        .actions
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "aliases": a.aliases,
                "description": a.description,
                "parameters": serde_json::from_str::<Value>(&a.parameters).unwrap_or(Value::Null),
            })
        })
        .collect();
    json!({
        "id": tool.id,
        "version": tool.version,
        "description": tool.description,
        "actions": actions,
        "outboundHosts": tool.outbound_hosts,
    })
}

/// The body of `POST /tool-actions/execute`.
#[derive(Deserialize)]
struct ExecuteBody {
    tool: Option<String>,
    action: Option<String>,
    /// The SDKs send `config`; the runner helpers send `params`.
    #[serde(alias = "params")]
    config: Option<Value>,
}

/// One call, once parsed and checked.
struct Call {
    tool: String,
    action: String,
    parameters: Value,
}

fn execute(request: &Request) -> Result<Reply, ApiError> {
    let caller = auth::verify(request.header("authorization"))?;
    let body: ExecuteBody = request.json()?;
    let tool = non_empty(body.tool, "tool")?;
    let action = non_empty(body.action, "action")?;
    let parameters = match body.config {
        None | Some(Value::Null) => json!({}),
        Some(value @ Value::Object(_)) => value,
        Some(_) => return Err(ApiError::bad_request("\"config\" must be a JSON object")),
    };
    let idempotency_key = request.header("idempotency-key");
    if let Some(key) = idempotency_key {
        idempotency::check_key(key).map_err(ApiError::bad_request)?;
    }
    let call = Call {
        tool,
        action,
        parameters,
    };

    let started = Instant::now();
    let manifest = tools::find(&call.tool);
    let local = manifest.is_some();
    let result = match manifest {
        Some(manifest) => checked_action(&manifest, &call).and_then(|action| {
            once(&caller, &call, &action, idempotency_key, |key| {
                run(&caller, &call, &action, key)
            })
        }),
        // Not installed here: the action's name is the backend's business.
        None => once(&caller, &call, &call.action, idempotency_key, |key| {
            relay(&caller, &call, key)
        }),
    };
    audit::record(
        &caller,
        "execute_tool_action",
        &result,
        json!({
            "tool": call.tool,
            "action": call.action,
            "installed": local,
            "replayed": matches!(result, Ok((_, true))),
            "durationMs": started.elapsed().as_millis() as u64,
        }),
    );
    let (data, replayed) = result?;
    let reply = Reply::data(data);
    Ok(if replayed {
        reply.with_header("idempotent-replayed", "true")
    } else {
        reply
    })
}

/// The canonical name of the action `call` asks of an installed tool,
/// once its parameters are checked against the action's schema.
fn checked_action(manifest: &Manifest, call: &Call) -> Result<String, ApiError> {
    let Some(action) = resolve_action(&manifest.actions, &call.action, |a| {
        (a.name.as_str(), a.aliases.as_slice())
    }) else {
        let names: Vec<&str> = manifest.actions.iter().map(|a| a.name.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "tool \"{}\" has no action \"{}\"; its actions are: {}",
            call.tool,
            call.action,
            names.join(", ")
        )));
    };
    // The registry refuses tools whose schemas do not compile, so this
    // only fails if the tool changed under us.
    let schema = serde_json::from_str::<Value>(&action.parameters)
        .ok()
        .and_then(|s| Schema::compile(&s).ok())
        .ok_or_else(|| ApiError::bad_gateway("the tool's parameter schema is unusable"))?;
    schema.validate(&call.parameters).map_err(|violations| {
        ApiError::bad_request(format!(
            "invalid parameters for {}.{}: {}",
            call.tool,
            action.name,
            schema::describe(&violations)
        ))
    })?;
    Ok(action.name.clone())
}

/// Runs `call` (of `action`, by its canonical name) through `run`, once
/// per `Idempotency-Key` when the caller sent one; `(result, replayed)`.
/// `run` gets the key, to pass on.
fn once(
    caller: &Caller,
    call: &Call,
    action: &str,
    idempotency_key: Option<&str>,
    run: impl FnOnce(Option<&str>) -> Result<Value, ApiError>,
) -> Result<(Value, bool), ApiError> {
    let Some(key) = idempotency_key else {
        return run(None).map(|data| (data, false));
    };
    let fingerprint = idempotency::fingerprint(&call.tool, action, &call.parameters);
    let outcome = idempotency::run_once(&mut CacheStore(caller), key, &fingerprint, || {
        run(Some(key))
    });
    match outcome {
        Ok(Outcome::Replayed(data)) => Ok((data, true)),
        Ok(Outcome::Ran { data, kept }) => {
            if !kept {
                eprintln!("could not remember an idempotent tool result");
            }
            Ok((data, false))
        }
        Err(Refusal::Failed(error)) => Err(error),
        Err(Refusal::KeyReused) => Err(ApiError::new(
            422,
            "this Idempotency-Key was used for a different tool call",
        )),
        Err(Refusal::StillRunning) => Err(ApiError::new(
            409,
            "a request with this Idempotency-Key is still running; retry later",
        )
        .with_header("retry-after", "2")),
        Err(Refusal::CacheUnavailable) => Err(ApiError::unavailable(
            "Idempotency-Key needs the cache, which is unavailable; try again",
        )),
    }
}

/// The `cache` capability as the idempotency protocol's store: the
/// caller's execution's scope, so that two executions may use one key.
struct CacheStore<'a>(&'a Caller);

impl idempotency::Store for CacheStore<'_> {
    type Lease = cache::Lease;

    fn get(&mut self, key: &str) -> Result<Option<String>, CacheUnavailable> {
        cache::get(self.0, Scope::Execution, key).map_err(|_| CacheUnavailable)
    }

    fn set(&mut self, key: &str, value: &str, ttl_ms: u64) -> Result<(), CacheUnavailable> {
        cache::set(self.0, Scope::Execution, key, value, Some(ttl_ms)).map_err(|_| CacheUnavailable)
    }

    fn acquire(
        &mut self,
        key: &str,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> Result<Option<cache::Lease>, CacheUnavailable> {
        cache::acquire(self.0, Scope::Execution, key, ttl_ms, wait_ms).map_err(|_| CacheUnavailable)
    }

    fn release(&mut self, lease: cache::Lease) {
        // An expired lease is let go by its TTL anyway.
        let _ = cache::release(lease);
    }
}

/// Fetches the user's credentials and runs the action on its tool (the
/// registry says for whom, from the caller).
fn run(
    caller: &Caller,
    call: &Call,
    action: &str,
    idempotency_key: Option<&str>,
) -> Result<Value, ApiError> {
    let user = users_record(caller)?;
    let credentials = backend::get_tool_credentials(caller, &call.tool)?;
    let stored = credentials.is_some();
    let request = ToolCall {
        action: action.to_owned(),
        parameters: call.parameters.to_string(),
        credentials,
        idempotency_key: idempotency_key.map(str::to_owned),
    };
    let result = tools::execute(caller, &call.tool, &request).map_err(|e| match e {
        // None stored: say where they go.
        ToolsError::Tool(ToolError::MissingCredentials(why)) if !stored => {
            ApiError::bad_request(format!(
                "{}: {why}; the operator stores them as {user}/{}.json (a JSON object) in \
                 the runtime's tool credentials directory (CRONIUM_TOOL_CREDENTIALS_DIR), or \
                 in a backend that keeps tool credentials",
                call.tool, call.tool
            ))
        }
        other => tool_error(&call.tool, other),
    })?;
    serde_json::from_str(&result)
        .map_err(|_| ApiError::bad_gateway(format!("tool \"{}\" answered invalid JSON", call.tool)))
}

fn relay(caller: &Caller, call: &Call, idempotency_key: Option<&str>) -> Result<Value, ApiError> {
    users_record(caller)?;
    match backend::execute_tool(
        caller,
        &call.tool,
        &call.action,
        &call.parameters.to_string(),
        idempotency_key,
    ) {
        Ok(data) => serde_json::from_str(&data)
            .map_err(|_| ApiError::bad_gateway("the backend answered invalid JSON")),
        Err(backend::BackendError::NotFound) => Err(ApiError::not_found(format!(
            "no tool named \"{}\" is installed",
            call.tool
        ))),
        // A backend without a tools route (the Cronium app): 501, with the
        // backend's message naming the tool.
        Err(backend::BackendError::Rejected(r)) if r.status == 501 => {
            Err(ApiError::new(501, r.message))
        }
        // `{"success":false,"error":...}`: the action failed; its error is
        // the message (`docs/api.md`, "Errors", 502).
        Err(backend::BackendError::Rejected(r)) if r.status == 502 => {
            Err(ApiError::bad_gateway(r.message))
        }
        Err(other) => Err(other.into()),
    }
}

/// Makes sure the caller's execution record, which names the user the
/// call is made for, is known: unknown executions are a 404, and a record
/// read from the backend is audited. The host then finds the user in it;
/// so does this: the user's id.
fn users_record(caller: &Caller) -> Result<String, ApiError> {
    execution::load(caller, "get_context").map(|execution| execution.user_id)
}

/// The caller's error for a failed registry call.
fn tool_error(tool: &str, error: ToolsError) -> ApiError {
    match error {
        ToolsError::NotInstalled => {
            ApiError::not_found(format!("no tool named \"{tool}\" is installed"))
        }
        ToolsError::Tool(ToolError::InvalidParameters(why) | ToolError::UnknownAction(why)) => {
            ApiError::bad_request(format!("{tool}: {why}"))
        }
        ToolsError::Tool(ToolError::MissingCredentials(why)) => {
            ApiError::bad_request(format!("{tool}: {why}"))
        }
        ToolsError::Tool(ToolError::Rejected(why) | ToolError::Failed(why)) => {
            ApiError::bad_gateway(format!("{tool}: {why}"))
        }
        ToolsError::Crashed(_) => ApiError::new(500, format!("tool \"{tool}\" failed")),
        ToolsError::OutOfMemory => ApiError::new(500, format!("tool \"{tool}\" ran out of memory")),
        ToolsError::TimedOut => {
            ApiError::gateway_timeout(format!("tool \"{tool}\" did not finish in time"))
        }
        ToolsError::Unavailable(why) => ApiError::unavailable(format!("{tool}: {why}")),
    }
}

fn non_empty(value: Option<String>, field: &str) -> Result<String, ApiError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ApiError::bad_request(format!("\"{field}\" is required"))),
    }
}
