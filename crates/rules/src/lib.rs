//! Rules and wire formats shared by every implementation of the Cronium
//! capabilities: the custom host compiles this crate natively, the Spin
//! adapters compile it to wasm. Each rule lives here once:
//!
//! * [`protocol`]: the machines' shared shapes (steps, requests, replies);
//! * [`access`]: the access decision for a verified token, as a machine;
//! * [`settings`]: the defaults, and the one Valkey connection resolution;
//! * [`token`]: what makes an execution token valid;
//! * [`audit_spool`]: the audit spool in Valkey of hosts without a disk;
//! * [`batch`]: the batch route's shape, limits and answer;
//! * [`backend`]: how the backend's internal API is called and its answers read;
//! * [`cors`]: which origins get CORS headers, and the preflight answer;
//! * [`duration`]: Go-style durations (`30s`, `5m`) of the configuration;
//! * [`error_body`]: the one JSON error body of every answer;
//! * [`idempotency`]: how a tool call with an `Idempotency-Key` runs once;
//! * [`keys`]: the cache key formats;
//! * [`lease`]: the lease scripts, the line of waiters, and how they wait;
//! * [`limits`]: request body caps;
//! * [`rate_limit`]: the GCRA rate limit and its Valkey scripts;
//! * [`routes`]: which endpoint group serves a path;
//! * [`schema`]: the JSON Schema subset tool parameters are checked against;
//! * [`tools`]: tool manifests, action names, outbound hosts;
//! * [`valkey`]: the Valkey commands behind the cache and auth capabilities;
//! * [`variables`]: variable keys, values and ETags;
//! * [`wire`]: the JSON shapes of the Cronium backend's internal API.
//!
//! Nothing here does I/O or reads a clock: callers pass the time in. The
//! protocols (backend calls, lease waits, the access check) are state
//! machines ([`protocol::Machine`]) their drivers step.

#![warn(missing_docs)]

pub mod access;
pub mod audit_spool;
pub mod backend;
pub mod batch;
pub mod cors;
pub mod duration;
pub mod error_body;
pub mod idempotency;
pub mod keys;
pub mod lease;
pub mod limits;
pub mod protocol;
pub mod rate_limit;
pub mod routes;
pub mod schema;
pub mod settings;
#[cfg(feature = "token")]
pub mod token;
pub mod tools;
pub mod valkey;
pub mod variables;
pub mod wire;

#[cfg(feature = "conformance")]
pub mod conformance;
