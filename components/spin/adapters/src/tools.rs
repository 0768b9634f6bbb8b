//! `cronium:runtime/tools`, the tool registry, on Spin's
//! service chaining. Each tool is a component of the app with a private
//! route; the registry reaches tool `id` at `http://<id>.spin.internal/`,
//! through the HTTP face the tool SDK gives every tool (`GET /`: the
//! manifest; `POST /`: a tool request), with the SDK's own wire types.
//! Adding a tool under Spin is one `[component]` block, its id in the
//! `tools` variable, and its `http://<id>.spin.internal` in the
//! tool-actions component's `allowed_outbound_hosts`.
//!
//! Manifests are checked with the host's rules (`cronium-rules`) and must
//! name the component they came from. Each tool runs in an instance of its
//! own, under its own `allowed_outbound_hosts`.
//!
//! Settings (Spin variables of the tool-actions component): `tools`
//! (comma-separated component ids, default `webhook,slack,discord,email`),
//! `tool_settings` (a JSON object of the operator's settings keyed by
//! tool id, as `CRONIUM_TOOL_SETTINGS`).

use cronium_rules::tools::{ActionDecl, check_manifest};
use std::time::Duration;

use cronium_spin_support::http::{self, Deadline, TransportError};
use cronium_spin_support::settings;
use cronium_tool::wire;
use serde_json::Value;
use spin_sdk::http::Method;

use crate::auth::VerifiedCaller;
use crate::exports::cronium::runtime::auth::CallerBorrow;
use crate::exports::cronium::runtime::tool_types::{Action, Manifest, ToolError};
use crate::exports::cronium::runtime::tools::{Guest, ToolCall, ToolsError};

/// The largest answer read from a tool.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

impl Guest for crate::Adapters {
    fn installed() -> Vec<Manifest> {
        let mut manifests: Vec<Manifest> = ids()
            .iter()
            .filter_map(|id| match describe(id) {
                Ok(manifest) => Some(manifest),
                Err(why) => {
                    eprintln!("tool {id} left out of the catalogue: {why}");
                    None
                }
            })
            .collect();
        manifests.sort_by(|a, b| a.id.cmp(&b.id));
        manifests
    }

    fn find(id: String) -> Option<Manifest> {
        if !ids().contains(&id) {
            return None;
        }
        describe(&id)
            .map_err(|why| eprintln!("tool {id} is not usable: {why}"))
            .ok()
    }

    fn execute(caller: CallerBorrow<'_>, id: String, call: ToolCall) -> Result<String, ToolsError> {
        if !ids().contains(&id) {
            return Err(ToolsError::NotInstalled);
        }
        let caller = caller.get::<VerifiedCaller>();
        let body = serde_json::to_vec(&wire_request(&id, caller, call)?)
            .map_err(|e| ToolsError::Unavailable(e.to_string()))?;
        let deadline = Deadline::after(tool_timeout());
        let answer = match http::send(
            Method::Post,
            &url(&id),
            &[],
            Some(body),
            MAX_ANSWER,
            deadline,
        ) {
            Ok(answer) => answer,
            Err(TransportError::TimedOut) => return Err(ToolsError::TimedOut),
            Err(TransportError::Failed(why) | TransportError::Unreadable(why)) => {
                return Err(ToolsError::Unavailable(format!("tool {id}: {why}")));
            }
        };
        match wire::decode_reply(&answer.body) {
            Ok(Ok(data)) => Ok(data.to_string()),
            Ok(Err(error)) => Err(ToolsError::Tool(tool_error(error))),
            // Not the tool's HTTP face: Spin's own answer for a tool that
            // trapped (500) or could not be run.
            Err(_) => Err(ToolsError::Crashed(format!(
                "tool {id} answered {} without a result",
                answer.status
            ))),
        }
    }
}

/// The tool ids the operator lists in `tools`.
fn ids() -> Vec<String> {
    settings::get("tools")
        .unwrap_or_else(|| "webhook,slack,discord,email".into())
        .split(',')
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .collect()
}

/// The deadline of one tool call, `tool_timeout` (`CRONIUM_TOOL_TIMEOUT`
/// for the custom host), 30 s by default.
fn tool_timeout() -> Duration {
    settings::duration("tool_timeout", Duration::from_secs(30)).unwrap_or_else(|why| {
        eprintln!("{why}; using 30s");
        Duration::from_secs(30)
    })
}

/// Where service chaining reaches tool `id`.
fn url(id: &str) -> String {
    format!("http://{id}.spin.internal/")
}

/// Fetches and checks tool `id`'s manifest.
fn describe(id: &str) -> Result<Manifest, String> {
    let deadline = Deadline::after(tool_timeout());
    let answer = http::send(Method::Get, &url(id), &[], None, MAX_ANSWER, deadline)
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("its manifest request answered {}", answer.status));
    }
    let manifest: wire::Manifest =
        serde_json::from_slice(&answer.body).map_err(|e| format!("unreadable manifest: {e}"))?;
    if manifest.id != id {
        return Err(format!(
            "its manifest names tool {:?}, not the component {id:?}",
            manifest.id
        ));
    }
    let schemas: Vec<String> = manifest
        .actions
        .iter()
        .map(|a| a.parameters.to_string())
        .collect();
    check_manifest(
        &manifest.id,
        manifest
            .actions
            .iter()
            .zip(&schemas)
            .map(|(a, schema)| ActionDecl {
                name: &a.name,
                aliases: &a.aliases,
                parameters: schema,
            }),
        &manifest.outbound_hosts,
    )
    .map_err(|e| e.to_string())?;
    Ok(Manifest {
        actions: manifest
            .actions
            .into_iter()
            .zip(schemas)
            .map(|(a, parameters)| Action {
                name: a.name,
                aliases: a.aliases,
                description: a.description,
                parameters,
            })
            .collect(),
        id: manifest.id,
        version: manifest.version,
        description: manifest.description,
        outbound_hosts: manifest.outbound_hosts,
    })
}

/// The request on the wire, with the operator's settings for tool `id` and
/// the invocation of `caller` (the registry's to fill in, as in the custom
/// host).
fn wire_request(
    id: &str,
    caller: &VerifiedCaller,
    request: ToolCall,
) -> Result<wire::ToolRequest, ToolsError> {
    let user_id = crate::backend::records::user_of(caller)
        .map_err(|e| ToolsError::Unavailable(format!("the caller's user is unknown: {e:?}")))?;
    let json = |text: &str| {
        serde_json::from_str::<Value>(text)
            .map_err(|e| ToolsError::Unavailable(format!("a request field is not JSON: {e}")))
    };
    Ok(wire::ToolRequest {
        action: request.action,
        parameters: json(&request.parameters)?,
        credentials: request.credentials.as_deref().map(json).transpose()?,
        settings: operator_settings(id)?,
        invocation: wire::Invocation {
            execution_id: caller.claims.execution_id.clone(),
            job_id: caller.claims.job_id.clone(),
            user_id,
            idempotency_key: request.idempotency_key,
        },
    })
}

/// `tool_settings[id]`, or `{}`.
fn operator_settings(id: &str) -> Result<Value, ToolsError> {
    let all = settings::get("tool_settings").unwrap_or_else(|| "{}".into());
    let all: Value = serde_json::from_str(&all)
        .map_err(|_| ToolsError::Unavailable("tool_settings is not a JSON object".into()))?;
    match all.get(id) {
        None => Ok(Value::Object(Default::default())),
        Some(settings @ Value::Object(_)) => Ok(settings.clone()),
        Some(_) => Err(ToolsError::Unavailable(format!(
            "tool_settings.{id} is not a JSON object"
        ))),
    }
}

fn tool_error(error: wire::ToolError) -> ToolError {
    match error {
        wire::ToolError::InvalidParameters(m) => ToolError::InvalidParameters(m),
        wire::ToolError::UnknownAction(m) => ToolError::UnknownAction(m),
        wire::ToolError::MissingCredentials(m) => ToolError::MissingCredentials(m),
        wire::ToolError::Rejected(m) => ToolError::Rejected(m),
        wire::ToolError::Failed(m) => ToolError::Failed(m),
    }
}
