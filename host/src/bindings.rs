//! The generated bindings of both WIT worlds the host serves, and nothing
//! else: `cronium:runtime/endpoint` (what endpoint components import and
//! export) and `cronium:runtime/tool-action` (what a tool exports).
//!
//! A leaf of the host's module graph: the only host types it names are the
//! two resource types it maps with `with:`, themselves leaves
//! ([`Caller`], [`Lease`]).

#[cfg(doc)]
use crate::capabilities::{auth::caller::Caller, cache::lease::Lease};

/// Generated bindings of the `cronium:runtime/endpoint` world.
///
/// Imports are trappable: a component that lends a caller handle past the
/// request it was verified for is stopped (see [`Caller`]).
pub mod endpoint {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cronium:runtime/endpoint",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cronium:runtime/auth.caller": crate::capabilities::auth::caller::Caller,
            "cronium:runtime/cache.lease": crate::capabilities::cache::lease::Lease,
        },
    });
}

/// Generated bindings of the `cronium:runtime/tool-action` world.
/// The tool-call types are the ones of the endpoint bindings, so a
/// request passes from an endpoint component to a tool unconverted.
pub mod tool {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cronium:runtime/tool-action",
        exports: { default: async },
        with: {
            "cronium:runtime/types": crate::bindings::endpoint::cronium::runtime::types,
            "cronium:runtime/tool-types": crate::bindings::endpoint::cronium::runtime::tool_types,
        },
    });
}

pub use endpoint::cronium::runtime::*;
pub use endpoint::exports::cronium::runtime::handler;
pub use endpoint::{Endpoint, EndpointPre};
pub use tool::{ToolAction, ToolActionPre};
