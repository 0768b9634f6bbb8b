//! The HTTP face of a tool, for Spin's service chaining.
//!
//! Under Spin, the registry adapter reaches a tool as
//! `http://<component-id>.spin.internal/` (the tool's route is private).
//! [`export_tool!`](crate::export_tool) mounts [`serve`] as the
//! component's `wasi:http/incoming-handler`; the path is not looked at:
//!
//! * `GET` → 200 with the [`Manifest`](crate::Manifest) as JSON;
//! * `POST` with a [`ToolRequest`] as JSON → 200 `{"data": <result>}`, or
//!   `{"error": {"kind", "message"}}` with 400 (invalid-parameters,
//!   unknown-action, missing-credentials) or 502 (rejected, failed);
//! * anything else → 405 with an `invalid-parameters` error body.
//!
//! The shapes are those of [`crate::wire`]. Aliases are resolved here too,
//! exactly as on the `tool` export.

use crate::export::{Tool, run};
use crate::wire::{DataBody, ErrorBody, ToolError, ToolRequest};
use spin_sdk::http::{Method, Request, Response};

/// Answers one request of the HTTP face for tool `T`.
pub fn serve<T: Tool>(request: Request) -> Response {
    match request.method() {
        Method::Get => json(200, &T::describe()),
        Method::Post => match serde_json::from_slice::<ToolRequest>(request.body()) {
            Ok(tool_request) => match run::<T>(tool_request) {
                Ok(data) => json(200, &DataBody { data }),
                Err(error) => failure(error),
            },
            // Serde's message would quote the offending value, which may be
            // a credential: say only where the body went wrong.
            Err(e) => failure(ToolError::InvalidParameters(format!(
                "the body is not a JSON tool request ({} error at line {}, column {})",
                match e.classify() {
                    serde_json::error::Category::Data => "shape",
                    serde_json::error::Category::Eof => "truncated",
                    _ => "syntax",
                },
                e.line(),
                e.column()
            ))),
        },
        _ => {
            let error = ToolError::InvalidParameters(
                "use GET for the manifest, or POST a tool request".into(),
            );
            let mut response = json(405, &ErrorBody { error });
            response.set_header("allow", "GET, POST");
            response
        }
    }
}

fn failure(error: ToolError) -> Response {
    json(error.status(), &ErrorBody { error })
}

fn json(status: u16, body: &impl serde::Serialize) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .build()
}
