//! The Spin adapter component: every `cronium:runtime` capability an
//! endpoint component imports, implemented on Spin's own APIs, so the
//! very component the custom host runs also runs under `spin up`.
//!
//! * [`auth`]: token rules from Spin variables, revocation and rate limit
//!   in Valkey;
//! * [`cache`]: Spin's Redis interface on Valkey, with the host's scripts;
//! * [`backend`]: outbound HTTP to the Cronium backend's internal API;
//! * [`audit`]: outbound HTTP to the backend's audit endpoint;
//! * [`tools`]: the tool registry on Spin's service chaining;
//! * [`cors`]: the CORS origins from Spin variables (nothing stands in
//!   front of a Spin component to answer CORS for it).
//!
//! Why one component and not one per capability: Spin 4 registers each
//! `[component.<id>.dependencies]` entry in its composition graph under the
//! dependency's WIT *package* name, so two dependencies from the package
//! `cronium:runtime` (say `cronium:runtime/auth` and `cronium:runtime/cache`)
//! fail with "package `cronium:runtime` has already been registered". One
//! dependency keyed by the package, `"cronium:runtime" = { path = ... }`,
//! satisfies every import of the package, including the type-only
//! interfaces `types` and `tool-types`, which this component therefore
//! exports too. And Spin satisfies a dependency's own imports from the host
//! only: no capability here calls another through WIT (auth speaks to
//! Valkey itself).
//!
//! The rules (claims, key formats, scripts, backend wire shapes) all come
//! from `cronium-rules`, as in the custom host.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "cronium:runtime/spin-adapters",
    runtime_path: "::spin_sdk::wit_bindgen::rt",
});

mod audit;
mod auth;
mod backend;
mod cache;
mod cors;
mod tools;

/// The component's exports.
struct Adapters;

export!(Adapters);
