//! The tool SDK: what every tool component shares.
//!
//! A tool is a wasm component exporting `cronium:runtime/tool` (world
//! `tool-action`, see `wit/tool.wit`). With this crate a tool is a type
//! implementing [`Tool`] plus one line:
//!
//! ```ignore
//! use cronium_tool::{Action, Manifest, Tool, ToolError, ToolRequest};
//! use serde_json::{Value, json};
//!
//! struct Hello;
//!
//! impl Tool for Hello {
//!     fn describe() -> Manifest {
//!         Manifest::new("hello", env!("CARGO_PKG_VERSION"), "Says hello.").action(
//!             Action::new("greet", "Greets someone.").parameters(json!({
//!                 "type": "object",
//!                 "additionalProperties": false,
//!                 "required": ["name"],
//!                 "properties": { "name": { "type": "string" } }
//!             })),
//!         )
//!     }
//!
//!     fn execute(request: ToolRequest) -> Result<Value, ToolError> {
//!         #[derive(serde::Deserialize)]
//!         struct Params { name: String }
//!         let params: Params = request.parameters()?;
//!         Ok(json!({ "greeting": format!("hello, {}", params.name) }))
//!     }
//! }
//!
//! cronium_tool::export_tool!(Hello);
//! ```
//!
//! [`export_tool!`] exports both faces of the tool:
//!
//! * the `tool` interface, which the custom host calls directly;
//! * `wasi:http/incoming-handler` (through `spin-sdk`'s `#[http_component]`),
//!   the HTTP face Spin reaches through service chaining: `GET /` answers
//!   the manifest, `POST /` runs a [`ToolRequest`]. The wire shapes are the
//!   serde types of [`wire`], re-exported at the root.
//!
//! Before `execute` runs, the SDK resolves an alias to its action's
//! canonical name and answers an unknown action with
//! [`ToolError::UnknownAction`] naming the actions, so a tool only matches
//! canonical names.
//!
//! Helpers for the body of `execute`:
//!
//! * [`ToolRequest::parameters`], [`ToolRequest::credentials`],
//!   [`ToolRequest::settings`]: JSON into serde types, with
//!   `invalid-parameters` / `missing-credentials` errors that never echo a
//!   credential;
//! * [`http`]: blocking outbound HTTP over `wasi:http` (no executor needed
//!   from the synchronous `execute`), status mapping to `rejected` (4xx) and
//!   `failed` (5xx, unreachable, or refused by the host);
//! * [`retry`]: retries with exponential backoff, within a time budget
//!   that stays under the host's per-call deadline.
//!
//! The crate's `guest` feature (on by default) carries everything that needs
//! a wasm guest; with `default-features = false` only [`wire`] is left, for
//! the Spin adapter or the host to reuse natively.

#![warn(missing_docs)]

pub mod wire;

pub use wire::{Action, Invocation, Manifest, ToolError, ToolRequest};

#[cfg(feature = "guest")]
#[allow(missing_docs)] // generated; the WIT carries the documentation
pub mod bindings {
    //! Generated bindings of the `cronium:runtime/tool-action` world.
    //!
    //! Tool authors need not touch these: [`export_tool!`](crate::export_tool)
    //! wires a [`Tool`](crate::Tool) to them.
    wit_bindgen::generate!({
        path: "../../wit",
        world: "cronium:runtime/tool-action",
        runtime_path: "::spin_sdk::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_tool_bindings",
        default_bindings_module: "::cronium_tool::bindings",
    });
}

#[cfg(feature = "guest")]
mod export;
#[cfg(feature = "guest")]
pub mod http;
#[cfg(feature = "guest")]
pub mod retry;
#[cfg(feature = "guest")]
pub mod service;

#[cfg(feature = "guest")]
pub use export::Tool;

/// Exports a [`Tool`] as this component's tool, on both of its faces: the
/// `cronium:runtime/tool` interface (custom host) and the
/// `wasi:http/incoming-handler` HTTP face (Spin service chaining, see
/// [`service`]).
///
/// Use it once, at the crate root of a `cdylib` that depends on
/// `cronium-tool` **and** `spin-sdk` (the HTTP face is `spin-sdk`'s
/// `#[http_component]`, whose expansion names `::spin_sdk`):
///
/// ```ignore
/// cronium_tool::export_tool!(Slack);
/// ```
#[cfg(feature = "guest")]
#[macro_export]
macro_rules! export_tool {
    ($tool:ident) => {
        $crate::bindings::export_tool_bindings!($tool with_types_in $crate::bindings);

        /// The HTTP face of the tool, for Spin service chaining.
        #[::spin_sdk::http_component]
        fn __cronium_tool_http(request: ::spin_sdk::http::Request) -> ::spin_sdk::http::Response {
            $crate::service::serve::<$tool>(request)
        }
    };
}
