//! A test-only tool (`misbehaving`) that misbehaves on request, to show
//! that the host contains a tool the way it contains an endpoint component:
//!
//! * `ok`: answers `{"echo": <parameters>}`;
//! * `trap`: panics (a trap, since components abort on panic);
//! * `spin`: loops forever (stopped by the tool deadline);
//! * `allocate`: allocates 1 MiB chunks, touching each, until the memory
//!   cap stops it;
//! * `sleep`: answers `{"slept": <ms>}` after `ms` milliseconds, to keep a
//!   call in flight (hot reload, deadlines);
//! * `call`: `GET <url>` and answers `{"status": <code>}`. It declares only
//!   `declared.example.invalid`, so any other host shows a refused call
//!   coming back as a `failed` error from inside the tool.

use cronium_tool::http::Request;
use cronium_tool::retry::sleep;
use cronium_tool::{Action, Manifest, Tool, ToolError, ToolRequest};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// The `misbehaving` tool.
struct Misbehaving;

impl Tool for Misbehaving {
    fn describe() -> Manifest {
        let nothing = json!({ "type": "object", "additionalProperties": false });
        Manifest::new(
            "misbehaving",
            env!("CARGO_PKG_VERSION"),
            "Test tool that traps, spins, exhausts memory or calls out on request.",
        )
        .outbound_hosts(&["declared.example.invalid"])
        .action(
            Action::new("ok", "Answers with its parameters.")
                .parameters(json!({ "type": "object" })),
        )
        .action(Action::new("trap", "Panics.").parameters(nothing.clone()))
        .action(Action::new("spin", "Loops forever.").parameters(nothing.clone()))
        .action(Action::new("allocate", "Allocates without bound.").parameters(nothing))
        .action(
            Action::new("sleep", "Answers after a pause.").parameters(json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["ms"],
                "properties": { "ms": { "type": "integer", "minimum": 0, "maximum": 600000 } }
            })),
        )
        .action(
            Action::new("call", "GETs a URL and answers the status.").parameters(json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["url"],
                "properties": { "url": { "type": "string", "minLength": 1 } }
            })),
        )
    }

    fn execute(request: ToolRequest) -> Result<Value, ToolError> {
        match request.action.as_str() {
            "ok" => Ok(json!({ "echo": request.parameters })),
            "trap" => panic!("asked to trap"),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "allocate" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // `vec![1; n]` writes every byte, so the pages are real.
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "sleep" => {
                #[derive(Deserialize)]
                struct Params {
                    ms: u64,
                }
                let params: Params = request.parameters()?;
                sleep(Duration::from_millis(params.ms));
                Ok(json!({ "slept": params.ms }))
            }
            "call" => {
                #[derive(Deserialize)]
                struct Params {
                    url: String,
                }
                let params: Params = request.parameters()?;
                let response = Request::get(params.url).send()?;
                Ok(json!({ "status": response.status }))
            }
            other => Err(ToolError::UnknownAction(format!(
                "misbehaving has no action `{other}`"
            ))),
        }
    }
}

cronium_tool::export_tool!(Misbehaving);
