//! The capabilities the host gives components, laid out as wasmtime's
//! `wasi-http` is: one module per WIT interface (`auth`, `cache`,
//! `backend`, `audit`, `tools`), each with its implementations as child
//! modules, its host functions and its `add_to_linker`.
//!
//! Configuration picks each implementation (Valkey or in-process cache,
//! backend API or embedded store); components cannot tell which they got.
//!
//! The host functions run on a [`CapabilitiesCtxView`]: the per-request
//! [`CapabilitiesCtx`] and the store's resource table, which any store
//! state hands out by implementing [`CapabilitiesView`]; [`add_to_linker`]
//! adds every interface of the `cronium:runtime/endpoint` world.

/// The value of a capability's inner `Ok`, else its error (mapped by the
/// optional second argument) answered to the component from the host
/// function this is used in: the trap level stays the outer `Result`.
macro_rules! or_answer {
    ($result:expr) => {
        or_answer!($result, ::std::convert::identity)
    };
    ($result:expr, $map:expr) => {
        match $result {
            Ok(value) => value,
            Err(error) => return Ok(Err($map(error))),
        }
    };
}

pub mod audit;
pub mod auth;
pub mod backend;
pub mod cache;
pub mod tools;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use cronium_rules::routes::RouteGroup;
use cronium_rules::token;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use self::audit::AuditSink;
use self::auth::Auth;
use self::backend::{Backend, BackendError};
use self::cache::Cache;
use self::tools::ToolRunner;
use crate::bindings::auth::Caller;
use crate::bindings::{cors as wit_cors, tool_types as wit_tool, types as wit};
use crate::metrics::Metrics;

/// Every capability, shared by all requests.
pub struct Capabilities {
    /// Token verification, revocations and rate limits.
    pub auth: Auth,
    /// Valkey or the in-process cache.
    pub cache: Cache,
    /// The Cronium backend or the embedded store.
    pub backend: Arc<Backend>,
    /// Audit events, delivered in the background.
    pub audit: AuditSink,
    /// The installed tools.
    pub tools: Arc<dyn ToolRunner>,
    /// The metrics of `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// What the capabilities know of one request (of a store that may serve
/// several, one after the other).
pub struct CapabilitiesCtx {
    /// Every capability.
    pub capabilities: Arc<Capabilities>,
    /// The client's address (rate limits of failing tokens).
    pub peer: Option<IpAddr>,
    /// The group it serves: its components' cache space.
    pub group: RouteGroup,
    /// Which of its store's requests it serves (callers are valid for one).
    pub request: u64,
}

impl CapabilitiesCtx {
    /// The first request of a new store, serving `group` for `peer`.
    pub fn new(capabilities: Arc<Capabilities>, group: RouteGroup, peer: Option<IpAddr>) -> Self {
        CapabilitiesCtx {
            capabilities,
            peer,
            group,
            request: 0,
        }
    }

    /// Moves on to the store's next request, from `peer`: the callers of
    /// the previous one are no longer valid.
    pub fn next_request(&mut self, peer: Option<IpAddr>) {
        self.peer = peer;
        self.request += 1;
    }
}

/// The host functions' view of a store's state: its request's context and
/// its resource table (where callers and leases live).
pub struct CapabilitiesCtxView<'a> {
    /// The request's context.
    pub ctx: &'a mut CapabilitiesCtx,
    /// The store's resource table.
    pub table: &'a mut ResourceTable,
}

/// A store state that serves the capabilities' host functions.
pub trait CapabilitiesView: Send {
    /// The capabilities' view of this state.
    fn capabilities(&mut self) -> CapabilitiesCtxView<'_>;
}

/// The [`HasData`] of the capabilities' host functions: they run on a
/// [`CapabilitiesCtxView`].
pub struct HasCapabilities;

impl HasData for HasCapabilities {
    type Data<'a> = CapabilitiesCtxView<'a>;
}

/// Adds every interface of the `cronium:runtime/endpoint` world to
/// `linker`: the shared types, `cors`, and each capability.
pub fn add_to_linker<T: CapabilitiesView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    wit_tool::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    wit_cors::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)?;
    auth::add_to_linker(linker)?;
    cache::add_to_linker(linker)?;
    backend::add_to_linker(linker)?;
    audit::add_to_linker(linker)?;
    tools::add_to_linker(linker)?;
    Ok(())
}

impl wit::Host for CapabilitiesCtxView<'_> {}

impl wit_tool::Host for CapabilitiesCtxView<'_> {}

/// The host answers CORS itself, in front of every component
/// (`server::cors`), so components add nothing.
impl wit_cors::Host for CapabilitiesCtxView<'_> {
    async fn allowed_origins(&mut self) -> wasmtime::Result<Option<Vec<String>>> {
        Ok(None)
    }
}

impl CapabilitiesCtxView<'_> {
    /// The caller behind `handle`, if it was verified for the request
    /// being served; a trap otherwise.
    fn caller(&self, handle: &Resource<Caller>) -> wasmtime::Result<&Caller> {
        let caller = self.table.get(handle)?;
        caller.check(self.ctx.request)?;
        Ok(caller)
    }

    /// The verified claims behind `handle` (see [`Self::caller`]).
    fn claims(&self, handle: &Resource<Caller>) -> wasmtime::Result<Arc<token::Claims>> {
        Ok(self.caller(handle)?.claims().clone())
    }

    /// The claims behind `handle` and the user who owns their execution
    /// (from its record, read once per caller); the error is the backend's
    /// when the record cannot be read.
    async fn user(
        &mut self,
        handle: &Resource<Caller>,
    ) -> wasmtime::Result<Result<(Arc<token::Claims>, Arc<str>), BackendError>> {
        let caller = self.caller(handle)?;
        let claims = caller.claims().clone();
        if let Some(user) = caller.user() {
            return Ok(Ok((claims, user)));
        }
        let (execution, _) = or_answer!(self.record(&claims).await);
        let user = self.table.get_mut(handle)?.know_user(&execution.user_id);
        Ok(Ok((claims, user)))
    }

    /// The execution record of `claims` ([`backend::records::execution`]),
    /// the latency of a read that reached the backend recorded. (`&mut`:
    /// the store's state is `Send` but not `Sync`, and this awaits.)
    async fn record(
        &mut self,
        claims: &token::Claims,
    ) -> Result<(cronium_rules::wire::Execution, bool), BackendError> {
        let started = Instant::now();
        let read = backend::records::execution(&self.ctx.capabilities, claims).await;
        if !matches!(read, Ok((_, false))) {
            // Only reads that reached the backend say anything about it.
            self.observe(started, &read);
        }
        read
    }

    /// Records a backend call's latency (and error kind).
    fn observe<T>(&self, started: Instant, result: &Result<T, BackendError>) {
        let metrics = &self.ctx.capabilities.metrics;
        metrics.backend_latency.observe(started.elapsed());
        if let Err(error) = result {
            metrics.backend_error(match error {
                BackendError::NotFound => "not_found",
                BackendError::Rejected { .. } => "rejected",
                BackendError::Unavailable(_) => "unavailable",
                BackendError::Timeout => "timeout",
                BackendError::InvalidResponse(_) => "invalid_response",
                BackendError::CredentialsRefused(_) => "credentials_refused",
            });
        }
    }
}
