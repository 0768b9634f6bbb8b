//! The in-process cache of the embedded defaults (no `VALKEY_URL`): a
//! bounded map with TTLs, integer increments, GCRA rate limits and leases
//! with a line of waiters, on the same rules as the Valkey scripts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cronium_rules::keys;
use cronium_rules::lease::{self, Line, Turn};
use cronium_rules::rate_limit::{self, Quota};
use cronium_rules::valkey::AcquireAnswer;

use super::ValkeyError;
use super::lease::Lease;
use super::near::{LocalReleases, NEAR_VALUE_MAX};

/// The in-process cache of the embedded defaults: a bounded map with TTLs.
pub struct MemoryCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// Leases released, for the waiters (all of them in this process).
    pub(super) releases: LocalReleases,
    /// The lines of waiters for leases, by guarded key (only while someone
    /// waits). Locked before `entries` when both are needed.
    lines: Mutex<HashMap<String, Line>>,
    /// The origin of the lines' clock.
    created: Instant,
    pub(super) default_ttl: Duration,
    max_entries: usize,
}

pub(super) struct Entry {
    value: String,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

impl MemoryCache {
    /// A cache of at most `max_entries` entries.
    pub fn new(default_ttl: Duration, max_entries: usize) -> Self {
        MemoryCache {
            entries: Mutex::new(HashMap::new()),
            releases: LocalReleases::default(),
            lines: Mutex::new(HashMap::new()),
            created: Instant::now(),
            default_ttl,
            max_entries: max_entries.max(1),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave an entry half
        // written (every update is one insert or remove), so poisoning is
        // safe to ignore.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, key: &str) -> Option<String> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get(key) {
            Some(e) if e.live(now) => Some(e.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(super) fn set(&self, key: &str, value: &str, ttl: Option<Duration>) {
        let mut entries = self.lock();
        self.insert(&mut entries, key, value, ttl);
    }

    /// Keeps a near copy of `value` for the default TTL, unless it is large.
    pub(super) fn remember(&self, key: &str, value: &str) {
        if value.len() <= NEAR_VALUE_MAX {
            self.set(key, value, Some(self.default_ttl));
        }
    }

    pub(super) fn add(&self, key: &str, value: &str, ttl: Option<Duration>) -> bool {
        let mut entries = self.lock();
        if entries.get(key).is_some_and(|e| e.live(Instant::now())) {
            return false;
        }
        self.insert(&mut entries, key, value, ttl);
        true
    }

    /// Inserts under the caller's lock, evicting when full.
    fn insert(
        &self,
        entries: &mut HashMap<String, Entry>,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) {
        let now = Instant::now();
        if entries.len() >= self.max_entries && !entries.contains_key(key) {
            entries.retain(|_, e| e.live(now));
            if entries.len() >= self.max_entries {
                // Still full of live entries: drop an arbitrary tenth. A
                // cache may forget; the backend has the truth.
                let victims: Vec<String> = entries
                    .keys()
                    .take(self.max_entries / 10 + 1)
                    .cloned()
                    .collect();
                for victim in victims {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(
            key.to_owned(),
            Entry {
                value: value.to_owned(),
                expires: ttl.map(|t| now + t),
            },
        );
    }

    pub(super) fn delete(&self, key: &str) -> bool {
        let now = Instant::now();
        self.lock().remove(key).is_some_and(|e| e.live(now))
    }

    pub(super) fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, ValkeyError> {
        let now = Instant::now();
        let mut entries = self.lock();
        let (current, expires) = match entries.get(key) {
            Some(e) if e.live(now) => (
                e.value
                    .parse::<i64>()
                    .map_err(|_| ValkeyError::Invalid("value is not an integer".into()))?,
                e.expires,
            ),
            _ => (0, ttl.map(|t| now + t)),
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| ValkeyError::Invalid("increment would overflow".into()))?;
        entries.insert(
            key.to_owned(),
            Entry {
                value: next.to_string(),
                expires,
            },
        );
        Ok(next)
    }

    /// GCRA on the in-process map (see [`rate_limit::gcra`]).
    pub(crate) fn limit(&self, key: &str, quota: Quota) -> u64 {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let mut entries = self.lock();
        let stored = entries
            .get(key)
            .filter(|e| e.live(Instant::now()))
            .and_then(|e| e.value.parse().ok());
        let decision = rate_limit::gcra(stored, now_us, quota);
        if decision.retry_after_us == 0 {
            self.insert(
                &mut entries,
                key,
                &decision.tat.to_string(),
                Some(quota.period),
            );
        }
        decision.retry_after_us
    }

    fn lock_lines(&self) -> std::sync::MutexGuard<'_, HashMap<String, Line>> {
        // As for `lock`: every update leaves a line whole.
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One attempt to take `key`'s lease, in turn (the rules of
    /// [`lease::ACQUIRE_SCRIPT`], on [`Line`]).
    pub(super) fn try_acquire(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        joins: bool,
    ) -> AcquireAnswer {
        let now = Instant::now();
        let lease_key = keys::lease(key);
        let mut lines = self.lock_lines();
        let mut entries = self.lock();
        let lease_free = !entries.get(&lease_key).is_some_and(|e| e.live(now));
        let line = lines.entry(key.to_owned()).or_default();
        let clock_ms = now.duration_since(self.created).as_millis() as u64;
        let turn = line.attempt(owner, joins, lease_free, clock_ms);
        if line.is_empty() {
            lines.remove(key);
        }
        if let Turn::Later { ahead } = turn {
            return AcquireAnswer::Later { ahead };
        }
        entries.insert(
            lease_key,
            Entry {
                value: owner.to_owned(),
                expires: Some(now + ttl),
            },
        );
        let fence_key = keys::lease_fence(key);
        let fence = entries
            .get(&fence_key)
            .filter(|e| e.live(now))
            .and_then(|e| e.value.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        entries.insert(
            fence_key,
            Entry {
                value: fence.to_string(),
                expires: Some(now + lease::FENCE_TTL),
            },
        );
        AcquireAnswer::Taken(fence)
    }

    pub(super) fn leave(&self, key: &str, owner: &str) {
        let mut lines = self.lock_lines();
        if let Some(line) = lines.get_mut(key) {
            line.leave(owner);
            if line.is_empty() {
                lines.remove(key);
            }
        }
    }

    pub(super) fn release(&self, lease: &Lease) -> bool {
        let now = Instant::now();
        let lease_key = keys::lease(&lease.key);
        let mut entries = self.lock();
        match entries.get(&lease_key) {
            Some(e) if e.live(now) && e.value == lease.owner => {
                entries.remove(&lease_key);
                true
            }
            _ => false,
        }
    }
}
