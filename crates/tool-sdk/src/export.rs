//! The [`Tool`] trait and its bridge to the generated `tool` export.

use crate::bindings::cronium::runtime::tool_types as wit;
use crate::bindings::exports::cronium::runtime::tool::Guest;
use crate::wire::{Invocation, Manifest, ToolError, ToolRequest};
use serde_json::Value;

/// A tool: its manifest and its actions. Export it with
/// [`export_tool!`](crate::export_tool).
pub trait Tool: 'static {
    /// The manifest: id, version, actions with their parameter schemas,
    /// outbound hosts. Called when the tool is loaded and on every call (to
    /// resolve aliases), so keep it a plain constructor.
    fn describe() -> Manifest;

    /// Runs one action. `request.action` is already the canonical name of
    /// one of the manifest's actions, and the parameters are valid against
    /// its schema (the host checks them; under Spin, the adapter does).
    fn execute(request: ToolRequest) -> Result<Value, ToolError>;
}

/// Resolves the action's name (alias or canonical) and runs it: the one
/// path both faces take, so they answer alike.
pub(crate) fn run<T: Tool>(mut request: ToolRequest) -> Result<Value, ToolError> {
    let manifest = T::describe();
    let Some(action) = manifest.find_action(&request.action) else {
        return Err(ToolError::UnknownAction(format!(
            "{} has no action `{}`; its actions are: {}",
            manifest.id,
            request.action,
            manifest.action_names()
        )));
    };
    request.action = action.name.clone();
    T::execute(request)
}

impl<T: Tool> Guest for T {
    fn describe() -> wit::Manifest {
        let m = T::describe();
        wit::Manifest {
            id: m.id,
            version: m.version,
            description: m.description,
            actions: m
                .actions
                .into_iter()
                .map(|a| wit::Action {
                    name: a.name,
                    aliases: a.aliases,
                    description: a.description,
                    parameters: a.parameters.to_string(),
                })
                .collect(),
            outbound_hosts: m.outbound_hosts,
        }
    }

    fn execute(request: wit::ToolRequest) -> Result<String, wit::ToolError> {
        let request = from_wit(request).map_err(to_wit_error)?;
        run::<T>(request)
            .map(|value| value.to_string())
            .map_err(to_wit_error)
    }
}

/// The WIT request, its JSON text parsed. The host hands over valid JSON;
/// should it not, the caller learns which part was broken (never its text).
fn from_wit(request: wit::ToolRequest) -> Result<ToolRequest, ToolError> {
    let parse = |text: &str, what: &str| -> Result<Value, ToolError> {
        if text.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(text)
            .map_err(|_| ToolError::InvalidParameters(format!("the {what} are not valid JSON")))
    };
    Ok(ToolRequest {
        action: request.action,
        parameters: parse(&request.parameters, "parameters")?,
        credentials: request
            .credentials
            .as_deref()
            .map(|c| parse(c, "credentials"))
            .transpose()?,
        settings: parse(&request.settings, "settings")?,
        invocation: Invocation {
            execution_id: request.invocation.execution_id,
            job_id: request.invocation.job_id,
            user_id: request.invocation.user_id,
            idempotency_key: request.invocation.idempotency_key,
        },
    })
}

fn to_wit_error(error: ToolError) -> wit::ToolError {
    match error {
        ToolError::InvalidParameters(m) => wit::ToolError::InvalidParameters(m),
        ToolError::UnknownAction(m) => wit::ToolError::UnknownAction(m),
        ToolError::MissingCredentials(m) => wit::ToolError::MissingCredentials(m),
        ToolError::Rejected(m) => wit::ToolError::Rejected(m),
        ToolError::Failed(m) => wit::ToolError::Failed(m),
    }
}
