//! A test-only tool (`echo`) that answers with what it was given, so tests
//! can see what reached a tool: the parameters, who the call is for,
//! whether credentials came along (never their content), and the operator's
//! settings. Used to test hot-loading and the registry plumbing.

use cronium_tool::{Action, Manifest, Tool, ToolError, ToolRequest};
use serde_json::{Value, json};

/// The `echo` tool.
struct Echo;

impl Tool for Echo {
    fn describe() -> Manifest {
        Manifest::new(
            "echo",
            env!("CARGO_PKG_VERSION"),
            "Test tool: answers with the parameters, invocation and settings it was given.",
        )
        .action(
            Action::new("echo", "Answers with what the call carried.")
                .aliases(&["repeat"])
                // Any object: the tests send whatever they like.
                .parameters(json!({ "type": "object" })),
        )
    }

    fn execute(request: ToolRequest) -> Result<Value, ToolError> {
        let invocation = serde_json::to_value(&request.invocation).unwrap_or(Value::Null);
        Ok(json!({
            "parameters": request.parameters,
            "invocation": invocation,
            "hasCredentials": request.credentials.is_some(),
            "settings": request.settings,
        }))
    }
}

cronium_tool::export_tool!(Echo);
