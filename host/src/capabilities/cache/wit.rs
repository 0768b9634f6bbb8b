//! The WIT `cache` interface's host functions, for every store whose state
//! is a [`CapabilitiesView`]: a component's key is resolved into its
//! group's space from the caller ([`keys::in_space`]), and a failure is
//! logged and answered as the component's `cache-error`.

use std::time::Duration;

use cronium_rules::keys;
use wasmtime::component::{Linker, Resource};

use super::ValkeyError;
use super::lease::Lease;
use crate::bindings::auth::Caller;
use crate::bindings::cache as wit_cache;
use crate::capabilities::{CapabilitiesCtxView, CapabilitiesView, HasCapabilities};

/// Adds the WIT `cache` interface (and its `lease` resource) to `linker`.
pub fn add_to_linker<T: CapabilitiesView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit_cache::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)
}

impl wit_cache::HostLease for CapabilitiesCtxView<'_> {
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

impl wit_cache::Host for CapabilitiesCtxView<'_> {
    async fn get(
        &mut self,
        caller: Resource<Caller>,
        scope: wit_cache::Scope,
        key: String,
    ) -> CacheAnswer<Option<String>> {
        let key = or_answer!(self.cache_key(&caller, scope, &key).await?);
        let result = self.ctx.capabilities.cache.get(&key).await;
        let metrics = &self.ctx.capabilities.metrics;
        match &result {
            Ok(Some(_)) => metrics.cache_hits.inc(),
            Ok(None) => metrics.cache_misses.inc(),
            Err(_) => metrics.cache_errors.inc(),
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
        Ok(logged(
            self.ctx.capabilities.cache.set(&key, &value, ttl).await,
        ))
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
        Ok(logged(
            self.ctx.capabilities.cache.add(&key, &value, ttl).await,
        ))
    }

    async fn delete(
        &mut self,
        caller: Resource<Caller>,
        scope: wit_cache::Scope,
        key: String,
    ) -> CacheAnswer<bool> {
        let key = or_answer!(self.cache_key(&caller, scope, &key).await?);
        Ok(logged(self.ctx.capabilities.cache.delete(&key).await))
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
            self.ctx
                .capabilities
                .cache
                .increment(&key, delta, ttl)
                .await,
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
            .ctx
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
        Ok(logged(self.ctx.capabilities.cache.release(&lease).await))
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
            self.ctx.capabilities.cache.await_release(&key, wait).await,
        ))
    }
}

impl CapabilitiesCtxView<'_> {
    /// The real key of the component's `key` in `scope` of its group's
    /// space, resolved from the caller (`cronium_rules::keys::in_space`).
    async fn cache_key(
        &mut self,
        handle: &Resource<Caller>,
        scope: wit_cache::Scope,
        key: &str,
    ) -> wasmtime::Result<Result<String, wit_cache::CacheError>> {
        let group = self.ctx.group.name();
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
}

/// Converts a cache result, logging failures: a component carries on
/// without the cache, but the operator should know.
fn logged<T>(result: Result<T, ValkeyError>) -> Result<T, wit_cache::CacheError> {
    result.map_err(|error| {
        tracing::warn!(%error, "cache call failed");
        match error {
            ValkeyError::Unavailable(why) => wit_cache::CacheError::Unavailable(why),
            ValkeyError::Invalid(why) => wit_cache::CacheError::Invalid(why),
        }
    })
}
