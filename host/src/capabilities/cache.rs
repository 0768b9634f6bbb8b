//! The `cache` capability: Valkey when `VALKEY_URL` is set, an in-process
//! map otherwise. Both keep the same rules: TTLs, integer increments, and
//! leases with an owner token, a fence, compare-and-delete release and a
//! first-come-first-served line of waiters ([`cronium_rules::lease`]).
//!
//! In front of Valkey sits a small in-process copy of the values that never
//! change ([`keys::is_immutable`]: execution records), bounded in entries,
//! value size and time, so the hottest reads skip a round trip.
//!
//! A waiter for a lease polls (the rules' [`Wait`]), but a lease released
//! by this process also wakes this process's waiters for it
//! ([`LocalReleases`]): the one whose turn it is asks at once, so the lease
//! does not idle until its next poll. Waiters on other hosts learn at their
//! next poll.
//!
//! * [`memory`]: the in-process cache; [`valkey`]: Valkey (standalone or
//!   cluster); [`near`]: the in-process parts in front of Valkey;
//!   [`lease`]: the `lease` resource.
//! * The WIT `cache` interface's host functions, for every store whose
//!   state is a [`CapabilitiesView`], and [`add_to_linker`].

pub mod lease;
pub mod memory;
pub mod near;
pub mod valkey;

use std::sync::Arc;
use std::time::Duration;

use cronium_rules::access::{Check, CheckAccess, Verdict};
use cronium_rules::keys;
use cronium_rules::lease::protocol::{Acquire, AwaitRelease};
use cronium_rules::lease::{self as lease_rules, Wait};
use cronium_rules::protocol::{Now, ValkeyFailure, ValkeyReply, ValkeyRequest, ValkeyValue};
use cronium_rules::rate_limit::{self, Quota};
use cronium_rules::valkey::AcquireAnswer;
use wasmtime::component::{Linker, Resource};

use self::lease::Lease;
use self::memory::MemoryCache;
use self::near::{LocalReleases, NEAR_ENTRIES, NEAR_TTL, until_turn_or};
use self::valkey::ValkeyCache;
use super::{CapabilitiesCtxView, CapabilitiesView, HasCapabilities};
use crate::bindings::auth::Caller;
use crate::bindings::cache as wit_cache;
use crate::drive::{Clock, Io, drive};

/// Why a cache call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The cache cannot be reached; callers carry on without it.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The cache refused the call.
    #[error("cache refused the call: {0}")]
    Invalid(String),
}

/// The configured cache.
pub enum Cache {
    Valkey {
        /// Shared with the audit courier, which keeps its spool there.
        remote: Arc<ValkeyCache>,
        /// In-process copies of immutable values.
        near: Box<MemoryCache>,
        /// Leases this process released, for its own waiters.
        releases: LocalReleases,
    },
    Memory(MemoryCache),
}

impl Cache {
    /// Valkey, with a near cache whose entries live at most `ttl` (and
    /// never longer than a minute).
    pub fn valkey(remote: ValkeyCache, ttl: Duration) -> Cache {
        Cache::Valkey {
            remote: Arc::new(remote),
            near: Box::new(MemoryCache::new(ttl.min(NEAR_TTL), NEAR_ENTRIES)),
            releases: LocalReleases::default(),
        }
    }

    /// The region's Valkey, when the cache is there: state that must
    /// outlive this process (the audit backlog at a stop) goes there, never
    /// to the in-process cache.
    pub fn shared_valkey(&self) -> Option<Arc<ValkeyCache>> {
        match self {
            Cache::Valkey { remote, .. } => Some(remote.clone()),
            Cache::Memory(_) => None,
        }
    }

    fn local_releases(&self) -> &LocalReleases {
        match self {
            Cache::Valkey { releases, .. } => releases,
            Cache::Memory(c) => &c.releases,
        }
    }

    /// The value under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        match self {
            Cache::Valkey { remote, near, .. } => {
                let immutable = keys::is_immutable(key);
                if immutable && let Some(value) = near.get(key) {
                    return Ok(Some(value));
                }
                let value = remote.get(key).await?;
                if immutable && let Some(value) = &value {
                    near.remember(key, value);
                }
                Ok(value)
            }
            Cache::Memory(c) => Ok(c.get(key)),
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        match self {
            Cache::Valkey { remote: c, .. } => c.exists(key).await,
            Cache::Memory(c) => Ok(c.get(key).is_some()),
        }
    }

    /// The access check of one verified request (the job's revocation
    /// and, when a `quota` applies, the execution's rate limit): the
    /// rules' [`CheckAccess`] machine, driven by [`crate::drive`], one
    /// round trip to Valkey (two on a cluster whose slots split the keys).
    pub async fn check_access(
        &self,
        job_id: &str,
        execution_id: &str,
        quota: Option<Quota>,
    ) -> Verdict {
        let split = match self {
            Cache::Valkey { remote, .. } if quota.is_some() => match remote.clustered().await {
                Ok(clustered) => clustered && Check::needs_split_on_cluster(job_id, execution_id),
                Err(error) => {
                    return Verdict::Unchecked {
                        why: error.to_string(),
                    };
                }
            },
            _ => false,
        };
        let machine = CheckAccess::new(Check {
            job_id: job_id.to_owned(),
            execution_id: execution_id.to_owned(),
            quota,
            peek_record: false,
            split,
        });
        let mut io = AccessIo {
            cache: self,
            quota,
            clock: Clock::start(),
        };
        drive(machine, &mut io).await
    }

    /// One request against `limiter_key`'s `quota`: microseconds to wait
    /// (0: it passed).
    pub async fn limit(&self, limiter_key: &str, quota: Quota) -> Result<u64, CacheError> {
        match self {
            Cache::Valkey { remote: c, .. } => c.limit(limiter_key, quota).await,
            Cache::Memory(c) => Ok(c.limit(limiter_key, quota)),
        }
    }

    /// Gives back `returned` requests of an earlier share of `limiter_key`'s
    /// budget and takes up to `wanted` more (see `rate_shares`). The
    /// in-process cache grants one request at a time.
    pub async fn take_share(
        &self,
        limiter_key: &str,
        quota: Quota,
        returned: u32,
        wanted: u32,
    ) -> Result<rate_limit::Grant, CacheError> {
        match self {
            Cache::Valkey { remote: c, .. } => {
                c.take_share(limiter_key, quota, returned, wanted).await
            }
            Cache::Memory(c) => {
                let wait = c.limit(limiter_key, quota);
                Ok(rate_limit::Grant {
                    taken: u32::from(wait == 0),
                    retry_after_us: wait,
                    tat: 0,
                })
            }
        }
    }

    /// Stores `value` under `key` for `ttl` (the default TTL when `None`).
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        match self {
            Cache::Valkey { remote, near, .. } => {
                // Kept near even when Valkey is away: while it is, this
                // host serves its hot records without asking the backend.
                if keys::is_immutable(key) {
                    near.remember(key, value);
                }
                remote.set(key, value, ttl).await
            }
            Cache::Memory(c) => {
                c.set(key, value, Some(ttl.unwrap_or(c.default_ttl)));
                Ok(())
            }
        }
    }

    /// Stores `value` under `key` only if `key` holds nothing; whether it
    /// was stored.
    pub async fn add(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        match self {
            Cache::Valkey { remote: c, .. } => c.add(key, value, ttl).await,
            Cache::Memory(c) => Ok(c.add(key, value, Some(ttl.unwrap_or(c.default_ttl)))),
        }
    }

    /// Removes `key`; whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        match self {
            Cache::Valkey { remote, near, .. } => {
                near.delete(key);
                remote.delete(key).await
            }
            Cache::Memory(c) => Ok(c.delete(key)),
        }
    }

    /// Adds `delta` to the integer under `key`; the TTL applies when the
    /// key is created.
    pub async fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        match self {
            Cache::Valkey { remote: c, .. } => c.increment(key, delta, ttl).await,
            Cache::Memory(c) => c.increment(key, delta, Some(ttl.unwrap_or(c.default_ttl))),
        }
    }

    /// Takes the lease on `key` for `ttl`, in turn: waiting in line until
    /// the line ahead has stood still for `wait` ([`lease_rules::Wait`]); with a
    /// zero `wait`, one attempt that fails while the lease is held or
    /// others wait for it. `None` when the wait ran out. The rules'
    /// [`Acquire`] machine, driven by [`crate::drive`].
    pub async fn acquire(
        &self,
        key: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>, CacheError> {
        let owner = lease_rules::owner_token(rand::random());
        let machine = Acquire::new(key, &owner, ttl, wait);
        let (ttl, patience) = lease_rules::clamp_request(ttl, wait);
        let joins = Wait::new(patience).joins_line();
        let mut io = LeaseIo {
            cache: self,
            key,
            owner: &owner,
            ttl,
            joins,
            releases: joins.then(|| self.local_releases().listen(key)),
            heard_before: None,
            ahead: 1,
            clock: Clock::start(),
        };
        let fence = drive(machine, &mut io).await.map_err(cache_error)?;
        Ok(fence.map(|fence| Lease {
            key: key.to_owned(),
            owner,
            fence,
        }))
    }

    /// Waits until nobody holds `key`'s lease (true), for at most `wait`
    /// (false: still held), asking as a waiter next in line would, and at
    /// once when this process releases it. The rules' [`AwaitRelease`]
    /// machine, driven by [`crate::drive`].
    pub async fn await_release(&self, key: &str, wait: Duration) -> Result<bool, CacheError> {
        let mut io = LeaseIo {
            cache: self,
            key,
            owner: "",
            ttl: Duration::ZERO,
            joins: false,
            releases: Some(self.local_releases().listen(key)),
            heard_before: None,
            ahead: 1,
            clock: Clock::start(),
        };
        drive(AwaitRelease::new(key, wait), &mut io)
            .await
            .map_err(cache_error)
    }

    /// Releases `lease` if its owner still holds it, and tells this
    /// process's waiters for it.
    pub async fn release(&self, lease: &Lease) -> Result<bool, CacheError> {
        let released = match self {
            Cache::Valkey { remote: c, .. } => c.release(lease).await,
            Cache::Memory(c) => Ok(c.release(lease)),
        };
        if matches!(released, Ok(true)) {
            self.local_releases().announce(&lease.key);
        }
        released
    }
}

/// The lease machines' transport: Valkey, or the in-process cache
/// answering the same requests. Its pauses end early when this process
/// releases the lease often enough for the waiter's turn to have come
/// ([`until_turn_or`]).
struct LeaseIo<'a> {
    cache: &'a Cache,
    key: &'a str,
    owner: &'a str,
    ttl: Duration,
    joins: bool,
    /// This process's releases of the lease, when listened to.
    releases: Option<tokio::sync::watch::Receiver<u64>>,
    /// The releases heard before the last attempt.
    heard_before: Option<u64>,
    /// Holders ahead of the waiter at the last attempt.
    ahead: u64,
    clock: Clock,
}

impl LeaseIo<'_> {
    async fn answer(&mut self, request: ValkeyRequest) -> Result<i64, CacheError> {
        let acquire = matches!(&request, ValkeyRequest::Script(call) if call.script == lease_rules::ACQUIRE_SCRIPT);
        if !matches!(&request, ValkeyRequest::Script(call) if call.script == lease_rules::LEAVE_SCRIPT)
        {
            // Releases heard from here on count towards this waiter's turn.
            self.heard_before = self.releases.as_mut().map(|r| *r.borrow_and_update());
        }
        let reply = match (self.cache, request) {
            (Cache::Valkey { remote, .. }, ValkeyRequest::Script(call)) => {
                remote.script(call).await?
            }
            (Cache::Valkey { remote, .. }, ValkeyRequest::Command(words)) => {
                i64::from(remote.exists(exists_key(&words)?).await?)
            }
            (Cache::Memory(c), ValkeyRequest::Script(_)) if acquire => {
                match c.try_acquire(self.key, self.owner, self.ttl, self.joins) {
                    AcquireAnswer::Taken(fence) => fence as i64,
                    AcquireAnswer::Later { ahead } => -(ahead as i64),
                }
            }
            (Cache::Memory(c), ValkeyRequest::Script(call))
                if call.script == lease_rules::LEAVE_SCRIPT =>
            {
                c.leave(self.key, self.owner);
                0
            }
            (Cache::Memory(_), ValkeyRequest::Script(call)) => {
                return Err(CacheError::Invalid(format!(
                    "the in-process cache runs no script like {:.40}",
                    call.script
                )));
            }
            (Cache::Memory(c), ValkeyRequest::Command(words)) => {
                i64::from(c.get(exists_key(&words)?).is_some())
            }
        };
        self.ahead = if acquire {
            match AcquireAnswer::from_reply(reply) {
                AcquireAnswer::Later { ahead } => ahead,
                AcquireAnswer::Taken(_) => 1,
            }
        } else {
            1
        };
        Ok(reply)
    }
}

/// The key of an `EXISTS key` command (the only command the lease
/// machines send).
fn exists_key(words: &[String]) -> Result<&str, CacheError> {
    match words {
        [command, key] if command.eq_ignore_ascii_case("EXISTS") => Ok(key),
        _ => Err(CacheError::Invalid(format!(
            "the lease transport sends no {:?}",
            words.first()
        ))),
    }
}

impl Io<ValkeyRequest, ValkeyReply> for LeaseIo<'_> {
    async fn send(&mut self, request: ValkeyRequest) -> ValkeyReply {
        self.answer(request)
            .await
            .map(ValkeyValue::Int)
            .map_err(|error| match error {
                CacheError::Unavailable(why) => ValkeyFailure::Unavailable(why),
                CacheError::Invalid(why) => ValkeyFailure::Invalid(why),
            })
    }

    async fn sleep(&mut self, pause: Duration) {
        match (self.releases.as_mut(), self.heard_before) {
            (Some(releases), Some(before)) => {
                until_turn_or(pause, releases, before + self.ahead).await;
            }
            _ => tokio::time::sleep(pause).await,
        }
    }

    fn now(&mut self) -> Now {
        self.clock.now()
    }
}

/// The access machine's transport: Valkey, or the in-process cache
/// answering the same requests.
struct AccessIo<'a> {
    cache: &'a Cache,
    quota: Option<Quota>,
    clock: Clock,
}

impl AccessIo<'_> {
    async fn answer(&self, request: ValkeyRequest) -> Result<i64, CacheError> {
        match (self.cache, request) {
            (_, ValkeyRequest::Command(words)) => {
                Ok(i64::from(self.cache.exists(exists_key(&words)?).await?))
            }
            (Cache::Valkey { remote, .. }, ValkeyRequest::Script(call)) => {
                remote.script(call).await
            }
            (Cache::Memory(c), ValkeyRequest::Script(call))
                if call.script == rate_limit::LIMIT_SCRIPT =>
            {
                let quota = self
                    .quota
                    .ok_or_else(|| CacheError::Invalid("a limit without a quota".into()))?;
                match call.keys.as_slice() {
                    // The access script's reply: negative when revoked,
                    // else the wait (the budget is spent either way).
                    [revoked, limiter] => {
                        let wait = c.limit(limiter, quota);
                        Ok(if c.get(revoked).is_some() {
                            -1
                        } else {
                            wait as i64
                        })
                    }
                    [limiter] => Ok(c.limit(limiter, quota) as i64),
                    _ => Err(CacheError::Invalid("a limit of no known shape".into())),
                }
            }
            (Cache::Memory(_), ValkeyRequest::Script(call)) => Err(CacheError::Invalid(format!(
                "the in-process cache runs no script like {:.40}",
                call.script
            ))),
        }
    }
}

impl Io<ValkeyRequest, ValkeyReply> for AccessIo<'_> {
    async fn send(&mut self, request: ValkeyRequest) -> ValkeyReply {
        // The whole error, as the decision logs it.
        self.answer(request)
            .await
            .map(ValkeyValue::Int)
            .map_err(|error| ValkeyFailure::Unavailable(error.to_string()))
    }

    async fn sleep(&mut self, pause: Duration) {
        tokio::time::sleep(pause).await;
    }

    fn now(&mut self) -> Now {
        self.clock.now()
    }
}

fn cache_error(failure: ValkeyFailure) -> CacheError {
    match failure {
        ValkeyFailure::Unavailable(why) => CacheError::Unavailable(why),
        ValkeyFailure::Invalid(why) => CacheError::Invalid(why),
    }
}

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
fn logged<T>(result: Result<T, CacheError>) -> Result<T, wit_cache::CacheError> {
    result.map_err(|error| {
        tracing::warn!(%error, "cache call failed");
        match error {
            CacheError::Unavailable(why) => wit_cache::CacheError::Unavailable(why),
            CacheError::Invalid(why) => wit_cache::CacheError::Invalid(why),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn memory() -> Cache {
        Cache::Memory(MemoryCache::new(Duration::from_secs(60), 100))
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let cache = memory();
        cache
            .set("k", "v", Some(Duration::from_millis(20)))
            .await
            .unwrap();
        assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("v"));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(cache.get("k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn increment_counts_from_zero_and_refuses_non_integers() {
        let cache = memory();
        assert_eq!(cache.increment("n", 2, None).await.unwrap(), 2);
        assert_eq!(cache.increment("n", -5, None).await.unwrap(), -3);
        cache.set("s", "text", None).await.unwrap();
        assert!(matches!(
            cache.increment("s", 1, None).await,
            Err(CacheError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn a_lease_excludes_others_until_released_and_fences_grow() {
        let cache = memory();
        let first = cache
            .acquire("k", Duration::from_secs(5), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert!(
            cache
                .acquire("k", Duration::from_secs(5), Duration::ZERO)
                .await
                .unwrap()
                .is_none()
        );
        assert!(cache.release(&first).await.unwrap());
        let second = cache
            .acquire("k", Duration::from_secs(5), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert!(second.fence > first.fence);
        assert!(
            !cache.release(&first).await.unwrap(),
            "a stale owner cannot release"
        );
    }

    #[tokio::test]
    async fn waiters_get_the_lease_in_the_order_they_came_and_one_attempt_cannot_cut_in() {
        let cache = std::sync::Arc::new(memory());
        let (ttl, patience) = (Duration::from_secs(5), Duration::from_secs(5));
        let holder = cache
            .acquire("k", ttl, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let served = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..5 {
            let (cache, served) = (cache.clone(), served.clone());
            waiters.push(tokio::spawn(async move {
                let lease = cache.acquire("k", ttl, patience).await.unwrap().unwrap();
                served.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(2)).await;
                cache.release(&lease).await.unwrap();
            }));
            // Each joins the line before the next one comes.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cache.release(&holder).await.unwrap();
        assert!(
            cache
                .acquire("k", ttl, Duration::ZERO)
                .await
                .unwrap()
                .is_none(),
            "the lease is free, but others wait for it"
        );
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(*served.lock().unwrap(), [0, 1, 2, 3, 4]);
        assert!(
            cache
                .acquire("k", ttl, Duration::ZERO)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_in_this_process_wakes_the_waiter_whose_turn_it_is_at_once() {
        let cache = std::sync::Arc::new(memory());
        let ttl = Duration::from_secs(5);
        let holder = cache
            .acquire("k", ttl, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let lease = cache.acquire("k", ttl, ttl).await.unwrap().unwrap();
                (tokio::time::Instant::now(), lease)
            })
        };
        // Long enough for the waiter's polls to be far apart.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let released_at = tokio::time::Instant::now();
        cache.release(&holder).await.unwrap();
        let (taken_at, lease) = waiter.await.unwrap();
        assert_eq!(taken_at, released_at, "taken without waiting for a poll");
        assert!(lease.fence > holder.fence);
    }

    #[tokio::test(start_paused = true)]
    async fn await_release_returns_when_the_holder_releases_or_the_wait_runs_out() {
        let cache = std::sync::Arc::new(memory());
        let ttl = Duration::from_secs(5);
        assert_eq!(cache.await_release("k", Duration::ZERO).await, Ok(true));
        let holder = cache
            .acquire("k", ttl, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            cache.await_release("k", Duration::from_millis(300)).await,
            Ok(false)
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        let observer = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let free = cache.await_release("k", ttl).await;
                (tokio::time::Instant::now(), free)
            })
        };
        tokio::time::sleep(Duration::from_millis(800)).await;
        let released_at = tokio::time::Instant::now();
        cache.release(&holder).await.unwrap();
        assert_eq!(observer.await.unwrap(), (released_at, Ok(true)));
        assert!(
            cache
                .acquire("k", ttl, Duration::ZERO)
                .await
                .unwrap()
                .is_some(),
            "the observer did not take the lease"
        );
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_the_line() {
        let cache = memory();
        let ttl = Duration::from_secs(5);
        let holder = cache
            .acquire("k", ttl, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let gave_up = cache.acquire("k", ttl, Duration::from_millis(20)).await;
        assert_eq!(gave_up, Ok(None));
        cache.release(&holder).await.unwrap();
        assert!(
            cache
                .acquire("k", ttl, Duration::ZERO)
                .await
                .unwrap()
                .is_some(),
            "nobody is left waiting"
        );
    }

    #[tokio::test]
    async fn an_abandoned_lease_frees_the_key_after_its_ttl() {
        let cache = memory();
        let _dead = cache
            .acquire("k", Duration::from_millis(30), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let waited = cache
            .acquire("k", Duration::from_secs(1), Duration::from_secs(2))
            .await
            .unwrap();
        assert!(waited.is_some());
    }

    #[tokio::test]
    async fn add_never_overwrites_a_live_entry() {
        let cache = memory();
        assert!(cache.add("k", "first", None).await.unwrap());
        assert!(!cache.add("k", "second", None).await.unwrap());
        assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("first"));
    }

    #[tokio::test]
    async fn a_full_cache_evicts_instead_of_growing() {
        let cache = MemoryCache::new(Duration::from_secs(60), 10);
        for i in 0..100 {
            cache.set(&format!("k{i}"), "v", None);
        }
        assert!(cache.lock().len() <= 10);
    }
}
