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
//! * this module: the front end, [`Cache`], whichever store is behind it;
//! * [`memory`]: the in-process cache; [`valkey`]: Valkey (standalone or
//!   cluster); [`near`]: the in-process parts in front of Valkey;
//!   [`lease`]: the `lease` resource;
//! * `transport`: Valkey or the in-process cache answering the rules'
//!   protocol machines;
//! * `wit`: the WIT `cache` interface's host functions, and
//!   [`add_to_linker`].

pub mod lease;
pub mod memory;
pub mod near;
mod transport;
pub mod valkey;
mod wit;

pub use self::wit::add_to_linker;

use std::sync::Arc;
use std::time::Duration;

use cronium_rules::access::{Check, CheckAccess, Verdict};
use cronium_rules::keys;
use cronium_rules::lease::protocol::{Acquire, AwaitRelease};
use cronium_rules::lease::{self as lease_rules, Wait};
use cronium_rules::rate_limit::{self, Quota};

use self::lease::Lease;
use self::memory::MemoryCache;
use self::near::{LocalReleases, NEAR_TTL};
use self::transport::{AccessIo, LeaseIo};
use self::valkey::ValkeyCache;

use crate::drive::{Clock, drive};

/// Why a cache call failed: the rules' Valkey failure, whichever store
/// answered. `Unavailable`: the cache cannot be reached, and callers
/// carry on without it; `Invalid`: the cache refused the call.
pub use cronium_rules::protocol::ValkeyError;

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
    /// Valkey, with a near cache of at most `near_entries` entries, each
    /// living at most `ttl` (and never longer than a minute).
    pub fn valkey(remote: ValkeyCache, ttl: Duration, near_entries: usize) -> Cache {
        Cache::Valkey {
            remote: Arc::new(remote),
            near: Box::new(MemoryCache::new(ttl.min(NEAR_TTL), near_entries)),
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
    pub async fn get(&self, key: &str) -> Result<Option<String>, ValkeyError> {
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
    pub async fn exists(&self, key: &str) -> Result<bool, ValkeyError> {
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
    pub async fn limit(&self, limiter_key: &str, quota: Quota) -> Result<u64, ValkeyError> {
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
    ) -> Result<rate_limit::Grant, ValkeyError> {
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
    ) -> Result<(), ValkeyError> {
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
    ) -> Result<bool, ValkeyError> {
        match self {
            Cache::Valkey { remote: c, .. } => c.add(key, value, ttl).await,
            Cache::Memory(c) => Ok(c.add(key, value, Some(ttl.unwrap_or(c.default_ttl)))),
        }
    }

    /// Removes `key`; whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, ValkeyError> {
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
    ) -> Result<i64, ValkeyError> {
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
    ) -> Result<Option<Lease>, ValkeyError> {
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
        let fence = drive(machine, &mut io).await?;
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
    pub async fn await_release(&self, key: &str, wait: Duration) -> Result<bool, ValkeyError> {
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
        drive(AwaitRelease::new(key, wait), &mut io).await
    }

    /// Releases `lease` if its owner still holds it, and tells this
    /// process's waiters for it.
    pub async fn release(&self, lease: &Lease) -> Result<bool, ValkeyError> {
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
            Err(ValkeyError::Invalid(_))
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
