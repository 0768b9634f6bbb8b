//! The capabilities the host gives components, one module each, and their
//! bindings to the `cronium:runtime` WIT interfaces.
//!
//! Configuration picks each implementation (Valkey or in-process cache,
//! backend API or embedded store); components cannot tell which they got.

pub mod audit;
pub mod auth;
pub mod backend;
pub mod cache;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cronium_rules::keys;
use cronium_rules::token;
use wasmtime::component::Resource;

use self::audit::AuditSink;
use self::auth::{Auth, AuthFailure};
use self::backend::{AuditRecord, Backend, BackendError};
use self::cache::{Cache, CacheError, Lease};
use self::auth::caller::Caller;
use crate::components::RequestState;
use crate::metrics::Metrics;
use crate::tools::{ToolCallError, ToolRegistry};

/// Generated bindings of the `cronium:runtime/endpoint` world.
///
/// Imports are trappable: a component that lends a caller handle past the
/// request it was verified for is stopped (see [`auth::caller`]).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cronium:runtime/endpoint",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cronium:runtime/auth.caller": crate::capabilities::auth::caller::Caller,
            "cronium:runtime/cache.lease": crate::capabilities::cache::Lease,
        },
    });
    pub use cronium::runtime::*;
}

use bindings::{
    audit as wit_audit, auth as wit_auth, backend as wit_backend, cache as wit_cache,
    cors as wit_cors, tool_types as wit_tool, tools as wit_tools, types as wit,
};

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

/// Every capability, shared by all requests.
pub struct Capabilities {
    pub auth: Auth,
    pub cache: Cache,
    pub backend: Arc<Backend>,
    pub audit: AuditSink,
    pub tools: Arc<ToolRegistry>,
    pub metrics: Arc<Metrics>,
}

impl wit::Host for RequestState {}

impl wit_tool::Host for RequestState {}

/// The host answers CORS itself, in front of every component
/// (`server::cors`), so components add nothing.
impl wit_cors::Host for RequestState {
    async fn allowed_origins(&mut self) -> wasmtime::Result<Option<Vec<String>>> {
        Ok(None)
    }
}

impl wit_auth::Host for RequestState {
    async fn verify(
        &mut self,
        authorization: Option<String>,
    ) -> wasmtime::Result<Result<Resource<Caller>, wit_auth::AuthError>> {
        let caps = &self.capabilities;
        let verified = caps
            .auth
            .verify(authorization.as_deref(), self.peer, &caps.cache)
            .await;
        if matches!(verified, Err(AuthFailure::RateLimited(_))) {
            caps.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        match verified {
            Ok(claims) => {
                let caller = Caller::new(claims, self.request);
                Ok(Ok(self.table.push(caller)?))
            }
            Err(failure) => Ok(Err(auth_error(failure))),
        }
    }
}

impl wit_auth::HostCaller for RequestState {
    async fn execution_id(&mut self, caller: Resource<Caller>) -> wasmtime::Result<String> {
        Ok(self.caller(&caller)?.claims().execution_id.clone())
    }

    async fn drop(&mut self, caller: Resource<Caller>) -> wasmtime::Result<()> {
        self.table.delete(caller)?;
        Ok(())
    }
}

impl wit_cache::HostLease for RequestState {
    async fn fence(&mut self, lease: Resource<Lease>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&lease)?.fence)
    }

    async fn drop(&mut self, lease: Resource<Lease>) -> wasmtime::Result<()> {
        // Dropping a lease does not release it: its TTL does, as for a
        // holder that died.
        self.table.delete(lease)?;
        Ok(())
    }
}

/// A cache answer for the component, or a trap.
type CacheAnswer<T> = wasmtime::Result<Result<T, wit_cache::CacheError>>;

impl wit_cache::Host for RequestState {
    async fn get(
        &mut self,
        caller: Resource<Caller>,
        scope: wit_cache::Scope,
        key: String,
    ) -> CacheAnswer<Option<String>> {
        let key = or_answer!(self.cache_key(&caller, scope, &key).await?);
        let result = self.capabilities.cache.get(&key).await;
        let metrics = &self.capabilities.metrics;
        match &result {
            Ok(Some(_)) => metrics.cache_hits.fetch_add(1, Ordering::Relaxed),
            Ok(None) => metrics.cache_misses.fetch_add(1, Ordering::Relaxed),
            Err(_) => metrics.cache_errors.fetch_add(1, Ordering::Relaxed),
        };
        Ok(logged(result))
    }

    async fn set(
        &mut self,
        caller: Resource<Caller>,
        scope: wit_cache::Scope,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    ) -> CacheAnswer<()> {
        let key = or_answer!(self.cache_key(&caller, scope, &key).await?);
        let ttl = ttl_ms.map(Duration::from_millis);
        Ok(logged(self.capabilities.cache.set(&key, &value, ttl).await))
    }

    async fn add(
        &mut self,
        caller: Resource<Caller>,
        scope: wit_cache::Scope,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    ) -> CacheAnswer<bool> {
        let key = or_answer!(self.cache_key(&caller, scope, &key).await?);
        let ttl = ttl_ms.map(Duration::from_millis);
        Ok(logged(self.capabilities.cache.add(&key, &value, ttl).await))
    }

    async fn delete(
        &mut self,
        caller: Resource<Caller>,
        scope: wit_cache::Scope,
        key: String,
    ) -> CacheAnswer<bool> {
        let key = or_answer!(self.cache_key(&caller, scope, &key).await?);
        Ok(logged(self.capabilities.cache.delete(&key).await))
    }

    async fn increment(
        &mut self,
        caller: Resource<Caller>,
        scope: wit_cache::Scope,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> CacheAnswer<i64> {
        let key = or_answer!(self.cache_key(&caller, scope, &key).await?);
        let ttl = ttl_ms.map(Duration::from_millis);
        Ok(logged(
            self.capabilities.cache.increment(&key, delta, ttl).await,
        ))
    }

    async fn acquire(
        &mut self,
        caller: Resource<Caller>,
        scope: wit_cache::Scope,
        key: String,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> CacheAnswer<Option<Resource<Lease>>> {
        let key = or_answer!(self.cache_key(&caller, scope, &key).await?);
        let acquired = self
            .capabilities
            .cache
            .acquire(
                &key,
                Duration::from_millis(ttl_ms),
                Duration::from_millis(wait_ms),
            )
            .await;
        match logged(acquired) {
            Ok(Some(lease)) => Ok(Ok(Some(self.table.push(lease)?))),
            Ok(None) => Ok(Ok(None)),
            Err(error) => Ok(Err(error)),
        }
    }

    async fn release(&mut self, lease: Resource<Lease>) -> CacheAnswer<bool> {
        let lease = self.table.delete(lease)?;
        Ok(logged(self.capabilities.cache.release(&lease).await))
    }

    async fn await_release(
        &mut self,
        caller: Resource<Caller>,
        scope: wit_cache::Scope,
        key: String,
        wait_ms: u64,
    ) -> CacheAnswer<bool> {
        let key = or_answer!(self.cache_key(&caller, scope, &key).await?);
        let wait = Duration::from_millis(wait_ms);
        Ok(logged(
            self.capabilities.cache.await_release(&key, wait).await,
        ))
    }
}

/// A backend answer for the component, or a trap.
type BackendAnswer<T> = wasmtime::Result<Result<T, wit_backend::BackendError>>;

impl wit_backend::Host for RequestState {
    async fn get_execution(
        &mut self,
        caller: Resource<Caller>,
    ) -> BackendAnswer<wit_backend::ExecutionRead> {
        let claims = self.claims(&caller)?;
        let (e, from_backend) = or_answer!(self.record(&claims).await, backend_error);
        self.table.get_mut(&caller)?.know_user(&e.user_id);
        Ok(Ok(wit_backend::ExecutionRead {
            execution: wit::Execution {
                execution_id: e.execution_id,
                job_id: e.job_id,
                user_id: e.user_id,
                event_id: e.event_id,
                event_name: e.event_name,
                event_type: e.event_type,
                start_time: e.start_time,
                metadata: e.metadata.to_string(),
            },
            from_backend,
        }))
    }

    async fn set_output(&mut self, caller: Resource<Caller>, output: String) -> BackendAnswer<()> {
        let claims = self.claims(&caller)?;
        let started = Instant::now();
        let result = self.backend().set_output(&claims, output).await;
        Ok(self.observed(started, result))
    }

    async fn set_condition(
        &mut self,
        caller: Resource<Caller>,
        condition: bool,
    ) -> BackendAnswer<()> {
        let claims = self.claims(&caller)?;
        let started = Instant::now();
        let result = self.backend().set_condition(&claims, condition).await;
        Ok(self.observed(started, result))
    }

    async fn get_variable(
        &mut self,
        caller: Resource<Caller>,
        key: String,
    ) -> BackendAnswer<Option<wit_backend::Variable>> {
        let (claims, user) = or_answer!(self.user(&caller).await?, backend_error);
        let started = Instant::now();
        let result = self.backend().get_variable(&claims, &user, &key).await;
        Ok(self.observed(started, result).map(|variable| {
            variable.map(|v| wit_backend::Variable {
                key: v.key,
                value: v.value,
                updated_at: v.updated_at,
            })
        }))
    }

    async fn set_variable(
        &mut self,
        caller: Resource<Caller>,
        key: String,
        value: String,
    ) -> BackendAnswer<()> {
        let (claims, user) = or_answer!(self.user(&caller).await?, backend_error);
        let started = Instant::now();
        let result = self
            .backend()
            .set_variable(&claims, &user, &key, value)
            .await;
        Ok(self.observed(started, result))
    }

    async fn delete_variable(
        &mut self,
        caller: Resource<Caller>,
        key: String,
    ) -> BackendAnswer<bool> {
        let (claims, user) = or_answer!(self.user(&caller).await?, backend_error);
        let started = Instant::now();
        let result = self.backend().delete_variable(&claims, &user, &key).await;
        Ok(self.observed(started, result))
    }

    async fn get_tool_credentials(
        &mut self,
        caller: Resource<Caller>,
        tool: String,
    ) -> BackendAnswer<Option<String>> {
        let (claims, user) = or_answer!(self.user(&caller).await?, backend_error);
        let started = Instant::now();
        let result = self
            .backend()
            .get_tool_credentials(&claims, &user, &tool)
            .await;
        Ok(self
            .observed(started, result)
            .map(|c| c.map(|c| c.to_string())))
    }

    async fn execute_tool(
        &mut self,
        caller: Resource<Caller>,
        tool: String,
        action: String,
        parameters: String,
        idempotency_key: Option<String>,
    ) -> BackendAnswer<String> {
        let (claims, user) = or_answer!(self.user(&caller).await?, backend_error);
        let started = Instant::now();
        let result = self
            .backend()
            .execute_tool(
                &claims,
                &user,
                &tool,
                &action,
                parameters,
                idempotency_key.as_deref(),
            )
            .await;
        Ok(self.observed(started, result).map(|data| data.to_string()))
    }
}

impl wit_tools::Host for RequestState {
    async fn installed(&mut self) -> wasmtime::Result<Vec<wit_tool::Manifest>> {
        Ok(self
            .capabilities
            .tools
            .installed()
            .iter()
            .map(|t| t.manifest.clone())
            .collect())
    }

    async fn find(&mut self, id: String) -> wasmtime::Result<Option<wit_tool::Manifest>> {
        Ok(self
            .capabilities
            .tools
            .find(&id)
            .map(|t| t.manifest.clone()))
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
        let request = wit_tool::ToolRequest {
            action: call.action,
            parameters: call.parameters,
            credentials: call.credentials,
            // The registry's to fill in: the operator's settings.
            settings: "{}".into(),
            invocation: wit_tool::Invocation {
                execution_id: claims.execution_id.clone(),
                job_id: claims.job_id.clone(),
                user_id: user.to_string(),
                idempotency_key: call.idempotency_key,
            },
        };
        let outcome = self.capabilities.tools.execute(&id, request).await;
        self.capabilities.metrics.tool_call(&id, &outcome);
        Ok(outcome.map_err(|error| match error {
            ToolCallError::NotInstalled => W::NotInstalled,
            ToolCallError::Tool(e) => W::Tool(e),
            ToolCallError::Crashed(why) => W::Crashed(why),
            ToolCallError::TimedOut => W::TimedOut,
            ToolCallError::OutOfMemory => W::OutOfMemory,
        }))
    }
}

impl RequestState {
    fn backend(&self) -> &Backend {
        &self.capabilities.backend
    }

    /// The caller behind `handle`, if it was verified for the request
    /// being served; a trap otherwise.
    fn caller(&self, handle: &Resource<Caller>) -> wasmtime::Result<&Caller> {
        let caller = self.table.get(handle)?;
        caller.check(self.request)?;
        Ok(caller)
    }

    /// The verified claims behind `handle` (see [`RequestState::caller`]).
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

    /// The execution record of `claims` ([`backend::records::execution`]), the
    /// latency of a read that reached the backend recorded. (`&mut`: the
    /// store's state is `Send` but not `Sync`, and this awaits.)
    async fn record(
        &mut self,
        claims: &token::Claims,
    ) -> Result<(cronium_rules::wire::Execution, bool), BackendError> {
        let started = Instant::now();
        let read = backend::records::execution(&self.capabilities, claims).await;
        if !matches!(read, Ok((_, false))) {
            // Only reads that reached the backend say anything about it.
            self.observe(started, &read);
        }
        read
    }

    /// The real key of the component's `key` in `scope` of its group's
    /// space, resolved from the caller (`cronium_rules::keys::in_space`).
    async fn cache_key(
        &mut self,
        handle: &Resource<Caller>,
        scope: wit_cache::Scope,
        key: &str,
    ) -> wasmtime::Result<Result<String, wit_cache::CacheError>> {
        let group = self.group.name();
        let claims = self.claims(handle)?;
        Ok(Ok(match scope {
            wit_cache::Scope::Group => keys::in_space(group, keys::Scope::Group, key),
            wit_cache::Scope::Execution => {
                keys::in_space(group, keys::Scope::Execution(&claims.execution_id), key)
            }
            wit_cache::Scope::User => {
                let (_, user) = or_answer!(self.user(handle).await?, |error| {
                    wit_cache::CacheError::Unavailable(format!(
                        "the caller's user is unknown: {error}"
                    ))
                });
                keys::in_space(group, keys::Scope::User(&user), key)
            }
        }))
    }

    /// Records a backend call's latency (and error kind).
    fn observe<T>(&self, started: Instant, result: &Result<T, BackendError>) {
        let metrics = &self.capabilities.metrics;
        metrics.backend_latency.observe(started.elapsed());
        if let Err(error) = result {
            metrics.backend_error(match error {
                BackendError::NotFound => "not_found",
                BackendError::Rejected { .. } => "rejected",
                BackendError::Unavailable(_) => "unavailable",
                BackendError::Timeout => "timeout",
                BackendError::InvalidResponse(_) => "invalid_response",
            });
        }
    }

    /// Records a backend call's latency (and error kind), then maps its
    /// error for the component.
    fn observed<T>(
        &self,
        started: Instant,
        result: Result<T, BackendError>,
    ) -> Result<T, wit_backend::BackendError> {
        self.observe(started, &result);
        result.map_err(backend_error)
    }
}

impl wit_audit::Host for RequestState {
    async fn emit(
        &mut self,
        caller: Resource<Caller>,
        event: wit_audit::AuditEvent,
    ) -> wasmtime::Result<()> {
        let claims = self.claims(&caller)?;
        let metadata = cronium_rules::backend::audit_metadata(
            &event.details,
            claims.user_id.as_deref(),
            Some(&claims.job_id),
            &event.outcome,
        );
        self.capabilities.audit.emit(AuditRecord {
            execution_id: claims.execution_id.clone(),
            action: event.action,
            metadata,
            timestamp: backend::now_rfc3339(),
        });
        Ok(())
    }
}

fn auth_error(failure: AuthFailure) -> wit_auth::AuthError {
    use token::TokenError as T;
    use wit_auth::AuthError as W;
    match failure {
        AuthFailure::Token(T::MissingCredentials) => W::MissingCredentials,
        AuthFailure::Token(T::Malformed(why)) => W::Malformed(why),
        AuthFailure::Token(T::InvalidSignature) => W::InvalidSignature,
        AuthFailure::Token(T::UnsupportedAlgorithm(alg)) => W::UnsupportedAlgorithm(alg),
        AuthFailure::Token(T::Expired) => W::Expired,
        AuthFailure::Token(T::NotYetValid) => W::NotYetValid,
        AuthFailure::Token(T::TooOld) => W::TooOld,
        AuthFailure::Token(T::MissingClaim(claim)) => W::MissingClaim(claim),
        AuthFailure::Revoked => W::Revoked,
        AuthFailure::Unavailable(why) => W::Unavailable(why),
        AuthFailure::RateLimited(seconds) => W::RateLimited(seconds),
    }
}

fn backend_error(error: BackendError) -> wit_backend::BackendError {
    use wit_backend::BackendError as W;
    if !matches!(
        error,
        BackendError::NotFound | BackendError::Rejected { .. }
    ) {
        tracing::warn!(%error, "backend call failed");
    }
    match error {
        BackendError::NotFound => W::NotFound,
        BackendError::Rejected { status, message } => {
            W::Rejected(wit_backend::Rejection { status, message })
        }
        BackendError::Unavailable(why) => W::Unavailable(why),
        BackendError::Timeout => W::Timeout,
        BackendError::InvalidResponse(why) => W::InvalidResponse(why),
    }
}

/// Converts a cache result, logging failures: a component carries on
/// without the cache, but the operator should know.
fn logged<T>(result: Result<T, CacheError>) -> Result<T, wit_cache::CacheError> {
    result.map_err(|error| {
        tracing::warn!(%error, "cache call failed");
        match error {
            CacheError::Unavailable(why) => wit_cache::CacheError::Unavailable(why),
            CacheError::Invalid(why) => wit_cache::CacheError::Invalid(why),
        }
    })
}
