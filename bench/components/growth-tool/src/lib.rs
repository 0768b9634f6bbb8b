//! A benchmark-only tool. The benchmark installs 1, 10 and 50 copies of it
//! to measure how startup time and memory grow with the tools directory;
//! each copy gets its own id by rewriting the digits of [`ID`] in the
//! binary (same length, so the component stays valid), which also makes
//! every copy a distinct component to compile.

use cronium_tool::{Action, Manifest, Tool, ToolError, ToolRequest};
use serde_json::{Value, json};

/// The marker the benchmark rewrites: it must occur once in the binary.
const ID: &str = "growth-bench-000000";

struct Growth;

impl Tool for Growth {
    fn describe() -> Manifest {
        Manifest::new(ID, env!("CARGO_PKG_VERSION"), "Benchmark tool.")
            .action(Action::new("ping", "Answers pong.").parameters(json!({ "type": "object" })))
    }

    fn execute(_request: ToolRequest) -> Result<Value, ToolError> {
        Ok(json!({ "pong": true }))
    }
}

cronium_tool::export_tool!(Growth);
