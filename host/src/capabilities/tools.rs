//! The `tools` capability: the installed tools an endpoint component may
//! list and call (the tool-actions group's). The registry that loads and
//! runs them (`crate::tools`) sits above the capabilities and serves them
//! through [`ToolRunner`], so this module names only what a call is and
//! how it can end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use wasmtime::component::{Linker, Resource};

use super::backend::BackendError;
use super::{CapabilitiesCtxView, CapabilitiesView, HasCapabilities};
use crate::bindings::auth::Caller;
use crate::bindings::tool_types::{Invocation, Manifest, ToolError, ToolRequest};
use crate::bindings::tools as wit_tools;

/// Why a tool call did not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolCallError {
    /// No installed tool has that id.
    #[error("no such tool")]
    NotInstalled,
    /// The tool answered with an error.
    #[error("the tool reported an error: {0:?}")]
    Tool(ToolError),
    /// The tool trapped.
    #[error("the tool failed: {0}")]
    Crashed(String),
    /// The tool ran past its deadline.
    #[error("the tool ran past its deadline")]
    TimedOut,
    /// The tool hit its memory cap.
    #[error("the tool ran out of memory")]
    OutOfMemory,
}

/// The metric and log label of a call's outcome.
pub fn outcome_name<T>(outcome: &Result<T, ToolCallError>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(ToolCallError::NotInstalled) => "not_installed",
        Err(ToolCallError::Tool(ToolError::InvalidParameters(_))) => "invalid_parameters",
        Err(ToolCallError::Tool(ToolError::UnknownAction(_))) => "unknown_action",
        Err(ToolCallError::Tool(ToolError::MissingCredentials(_))) => "missing_credentials",
        Err(ToolCallError::Tool(ToolError::Rejected(_))) => "rejected",
        Err(ToolCallError::Tool(ToolError::Failed(_))) => "failed",
        Err(ToolCallError::Crashed(_)) => "crashed",
        Err(ToolCallError::TimedOut) => "timed_out",
        Err(ToolCallError::OutOfMemory) => "out_of_memory",
    }
}

/// The future of a tool call.
pub type ToolCall<'a> = Pin<Box<dyn Future<Output = Result<String, ToolCallError>> + Send + 'a>>;

/// What runs the installed tools (the registry, `crate::tools::ToolRegistry`).
pub trait ToolRunner: Send + Sync {
    /// The manifest of every installed tool, ordered by id.
    fn installed(&self) -> Vec<Manifest>;

    /// The manifest of the installed tool `id`.
    fn find(&self, id: &str) -> Option<Manifest>;

    /// Runs `request` on tool `id` with the operator's settings for it.
    fn execute<'a>(&'a self, id: &'a str, request: ToolRequest) -> ToolCall<'a>;

    /// Keeps the installed tools current (reloading what changes) for as
    /// long as the runner lives.
    fn watch(self: Arc<Self>);
}

/// Adds the WIT `tools` interface to `linker`.
pub fn add_to_linker<T: CapabilitiesView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit_tools::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)
}

impl wit_tools::Host for CapabilitiesCtxView<'_> {
    async fn installed(&mut self) -> wasmtime::Result<Vec<Manifest>> {
        Ok(self.ctx.capabilities.tools.installed())
    }

    async fn find(&mut self, id: String) -> wasmtime::Result<Option<Manifest>> {
        Ok(self.ctx.capabilities.tools.find(&id))
    }

    async fn execute(
        &mut self,
        caller: Resource<Caller>,
        id: String,
        call: wit_tools::ToolCall,
    ) -> wasmtime::Result<Result<String, wit_tools::ToolsError>> {
        use wit_tools::ToolsError as W;
        let (claims, user) = or_answer!(self.user(&caller).await?, |error: BackendError| {
            W::Unavailable(error.to_string())
        });
        let request = ToolRequest {
            action: call.action,
            parameters: call.parameters,
            credentials: call.credentials,
            // The registry's to fill in: the operator's settings.
            settings: "{}".into(),
            invocation: Invocation {
                execution_id: claims.execution_id.clone(),
                job_id: claims.job_id.clone(),
                user_id: user.to_string(),
                idempotency_key: call.idempotency_key,
            },
        };
        let capabilities = &self.ctx.capabilities;
        let outcome = capabilities.tools.execute(&id, request).await;
        capabilities.metrics.tool_call(&id, outcome_name(&outcome));
        Ok(outcome.map_err(|error| match error {
            ToolCallError::NotInstalled => W::NotInstalled,
            ToolCallError::Tool(e) => W::Tool(e),
            ToolCallError::Crashed(why) => W::Crashed(why),
            ToolCallError::TimedOut => W::TimedOut,
            ToolCallError::OutOfMemory => W::OutOfMemory,
        }))
    }
}
