//! The capabilities the host gives components, one module each, and their
//! bindings to the `cronium:runtime` WIT interfaces.
//!
//! Configuration picks each implementation (Valkey or in-process cache,
//! backend API or embedded store); components cannot tell which they got.

pub mod audit;
pub mod auth;
pub mod backend;
pub mod cache;
pub mod embedded;
pub mod rate_shares;
pub mod revocations;
pub mod valkey;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cronium_rules::token;

use self::audit::AuditSink;
use self::auth::{Auth, AuthFailure};
use self::backend::{AuditRecord, Backend, BackendError};
use self::cache::{Cache, CacheError, Lease};
use crate::components::RequestState;
use crate::metrics::Metrics;
use crate::tools::{ToolCallError, ToolRegistry};

/// Generated bindings of the `cronium:runtime/endpoint` world.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cronium:runtime/endpoint",
        imports: { default: async },
        exports: { default: async },
    });
    pub use cronium::runtime::*;
}

use bindings::{
    audit as wit_audit, auth as wit_auth, backend as wit_backend, cache as wit_cache,
    cors as wit_cors, tool_types as wit_tool, tools as wit_tools, types as wit,
};

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
    async fn allowed_origins(&mut self) -> Option<Vec<String>> {
        None
    }
}

impl wit_auth::Host for RequestState {
    async fn verify(
        &mut self,
        authorization: Option<String>,
    ) -> Result<wit::Claims, wit_auth::AuthError> {
        let caps = &self.capabilities;
        let verified = caps
            .auth
            .verify(authorization.as_deref(), self.peer, &caps.cache)
            .await;
        if matches!(verified, Err(AuthFailure::RateLimited(_))) {
            caps.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        let claims = verified.map_err(auth_error)?;
        Ok(wit::Claims {
            execution_id: claims.execution_id,
            job_id: claims.job_id,
            user_id: claims.user_id,
            event_id: claims.event_id,
            capability_token: claims.capability_token,
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
        })
    }
}

impl wit_cache::Host for RequestState {
    async fn get(&mut self, key: String) -> Result<Option<String>, wit_cache::CacheError> {
        let result = self.capabilities.cache.get(&key).await;
        let metrics = &self.capabilities.metrics;
        match &result {
            Ok(Some(_)) => metrics.cache_hits.fetch_add(1, Ordering::Relaxed),
            Ok(None) => metrics.cache_misses.fetch_add(1, Ordering::Relaxed),
            Err(_) => metrics.cache_errors.fetch_add(1, Ordering::Relaxed),
        };
        logged(result)
    }

    async fn set(
        &mut self,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    ) -> Result<(), wit_cache::CacheError> {
        logged(
            self.capabilities
                .cache
                .set(&key, &value, ttl_ms.map(Duration::from_millis))
                .await,
        )
    }

    async fn add(
        &mut self,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    ) -> Result<bool, wit_cache::CacheError> {
        logged(
            self.capabilities
                .cache
                .add(&key, &value, ttl_ms.map(Duration::from_millis))
                .await,
        )
    }

    async fn delete(&mut self, key: String) -> Result<bool, wit_cache::CacheError> {
        logged(self.capabilities.cache.delete(&key).await)
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, wit_cache::CacheError> {
        logged(
            self.capabilities
                .cache
                .increment(&key, delta, ttl_ms.map(Duration::from_millis))
                .await,
        )
    }

    async fn acquire(
        &mut self,
        key: String,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> Result<Option<wit_cache::Lease>, wit_cache::CacheError> {
        let lease = logged(
            self.capabilities
                .cache
                .acquire(
                    &key,
                    Duration::from_millis(ttl_ms),
                    Duration::from_millis(wait_ms),
                )
                .await,
        )?;
        Ok(lease.map(|l| wit_cache::Lease {
            key: l.key,
            owner: l.owner,
            fence: l.fence,
        }))
    }

    async fn release(&mut self, lease: wit_cache::Lease) -> Result<bool, wit_cache::CacheError> {
        let lease = Lease {
            key: lease.key,
            owner: lease.owner,
            fence: lease.fence,
        };
        logged(self.capabilities.cache.release(&lease).await)
    }

    async fn await_release(
        &mut self,
        key: String,
        wait_ms: u64,
    ) -> Result<bool, wit_cache::CacheError> {
        logged(
            self.capabilities
                .cache
                .await_release(&key, Duration::from_millis(wait_ms))
                .await,
        )
    }
}

impl wit_backend::Host for RequestState {
    async fn get_execution(
        &mut self,
        caller: wit::Claims,
    ) -> Result<wit::Execution, wit_backend::BackendError> {
        let started = Instant::now();
        let result = self.backend().get_execution(&claims(caller)).await;
        let e = self.observed(started, result)?;
        Ok(wit::Execution {
            execution_id: e.execution_id,
            job_id: e.job_id,
            user_id: e.user_id,
            event_id: e.event_id,
            event_name: e.event_name,
            event_type: e.event_type,
            start_time: e.start_time,
            metadata: e.metadata.to_string(),
        })
    }

    async fn set_output(
        &mut self,
        caller: wit::Claims,
        output: String,
    ) -> Result<(), wit_backend::BackendError> {
        let started = Instant::now();
        let result = self.backend().set_output(&claims(caller), output).await;
        self.observed(started, result)
    }

    async fn set_condition(
        &mut self,
        caller: wit::Claims,
        condition: bool,
    ) -> Result<(), wit_backend::BackendError> {
        let started = Instant::now();
        let result = self
            .backend()
            .set_condition(&claims(caller), condition)
            .await;
        self.observed(started, result)
    }

    async fn get_variable(
        &mut self,
        caller: wit::Claims,
        user_id: String,
        key: String,
    ) -> Result<Option<wit_backend::Variable>, wit_backend::BackendError> {
        let started = Instant::now();
        let result = self
            .backend()
            .get_variable(&claims(caller), &user_id, &key)
            .await;
        let variable = self.observed(started, result)?;
        Ok(variable.map(|v| wit_backend::Variable {
            key: v.key,
            value: v.value,
            updated_at: v.updated_at,
        }))
    }

    async fn set_variable(
        &mut self,
        caller: wit::Claims,
        user_id: String,
        key: String,
        value: String,
    ) -> Result<(), wit_backend::BackendError> {
        let started = Instant::now();
        let result = self
            .backend()
            .set_variable(&claims(caller), &user_id, &key, value)
            .await;
        self.observed(started, result)
    }

    async fn delete_variable(
        &mut self,
        caller: wit::Claims,
        user_id: String,
        key: String,
    ) -> Result<bool, wit_backend::BackendError> {
        let started = Instant::now();
        let result = self
            .backend()
            .delete_variable(&claims(caller), &user_id, &key)
            .await;
        self.observed(started, result)
    }

    async fn get_tool_credentials(
        &mut self,
        caller: wit::Claims,
        user_id: String,
        tool: String,
    ) -> Result<Option<String>, wit_backend::BackendError> {
        let started = Instant::now();
        let result = self
            .backend()
            .get_tool_credentials(&claims(caller), &user_id, &tool)
            .await;
        Ok(self.observed(started, result)?.map(|c| c.to_string()))
    }

    async fn execute_tool(
        &mut self,
        caller: wit::Claims,
        user_id: String,
        tool: String,
        action: String,
        parameters: String,
        idempotency_key: Option<String>,
    ) -> Result<String, wit_backend::BackendError> {
        let started = Instant::now();
        let result = self
            .backend()
            .execute_tool(
                &claims(caller),
                &user_id,
                &tool,
                &action,
                parameters,
                idempotency_key.as_deref(),
            )
            .await;
        Ok(self.observed(started, result)?.to_string())
    }
}

impl wit_tools::Host for RequestState {
    async fn installed(&mut self) -> Vec<wit_tool::Manifest> {
        self.capabilities
            .tools
            .installed()
            .iter()
            .map(|t| t.manifest.clone())
            .collect()
    }

    async fn find(&mut self, id: String) -> Option<wit_tool::Manifest> {
        self.capabilities
            .tools
            .find(&id)
            .map(|t| t.manifest.clone())
    }

    async fn execute(
        &mut self,
        id: String,
        request: wit_tool::ToolRequest,
    ) -> Result<String, wit_tools::ToolsError> {
        use wit_tools::ToolsError as W;
        let outcome = self.capabilities.tools.execute(&id, request).await;
        self.capabilities.metrics.tool_call(&id, &outcome);
        outcome.map_err(|error| match error {
            ToolCallError::NotInstalled => W::NotInstalled,
            ToolCallError::Tool(e) => W::Tool(e),
            ToolCallError::Crashed(why) => W::Crashed(why),
            ToolCallError::TimedOut => W::TimedOut,
            ToolCallError::OutOfMemory => W::OutOfMemory,
        })
    }
}

impl RequestState {
    fn backend(&self) -> &Backend {
        &self.capabilities.backend
    }

    /// Records a backend call's latency (and error kind), then maps its
    /// error for the component.
    fn observed<T>(
        &self,
        started: Instant,
        result: Result<T, BackendError>,
    ) -> Result<T, wit_backend::BackendError> {
        let metrics = &self.capabilities.metrics;
        metrics.backend_latency.observe(started.elapsed());
        if let Err(error) = &result {
            metrics.backend_error(match error {
                BackendError::NotFound => "not_found",
                BackendError::Rejected { .. } => "rejected",
                BackendError::Unavailable(_) => "unavailable",
                BackendError::Timeout => "timeout",
                BackendError::InvalidResponse(_) => "invalid_response",
            });
        }
        result.map_err(backend_error)
    }
}

impl wit_audit::Host for RequestState {
    async fn emit(&mut self, event: wit_audit::AuditEvent) {
        let metadata = cronium_rules::backend::audit_metadata(
            &event.details,
            event.user_id.as_deref(),
            event.job_id.as_deref(),
            &event.outcome,
        );
        self.capabilities.audit.emit(AuditRecord {
            execution_id: event.execution_id,
            action: event.action,
            metadata,
            timestamp: backend::now_rfc3339(),
        });
    }
}

fn claims(c: wit::Claims) -> token::Claims {
    token::Claims {
        execution_id: c.execution_id,
        job_id: c.job_id,
        user_id: c.user_id,
        event_id: c.event_id,
        capability_token: c.capability_token,
        issued_at: c.issued_at,
        expires_at: c.expires_at,
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
