//! Warm instances: an instance that answered a request cleanly may serve
//! further requests of the same group that carry the very same
//! `Authorization` header, up to `CRONIUM_INSTANCE_REUSE` requests in all.
//!
//! Why it is safe: whatever an instance keeps in its memory came from
//! requests made with one credential, and goes only to requests made with
//! that credential, whose holder can read the same data through the API
//! anyway. Executions never share an instance, and requests without a
//! credential never reuse one. Why it pays: creating and tearing down an
//! instance (pool slot, memory reset, the TLB flush that comes with it)
//! is about 30 % of the CPU a cached read costs (`bench/load.rs`).
//!
//! An instance is dropped when it has served its count, when it failed in
//! any way (trap, deadline, out of memory), when its memory grew past a
//! quarter of the instance cap (`components::call`), when it has idled for
//! [`IDLE`] (a sweeper thread looks every second), or when
//! [`WarmPool::cap`] warm instances are already kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Group;

/// How long a warm instance is kept without a request.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// How often idle instances are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Which requests an instance may serve: one group, one credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct WarmKey {
    group: Group,
    credential: Box<[u8]>,
}

impl WarmKey {
    /// The key of a request to `group` with this `Authorization` value;
    /// `None` (never reused) without one.
    pub(crate) fn of(group: Group, authorization: Option<&[u8]>) -> Option<WarmKey> {
        let credential = authorization.filter(|c| !c.is_empty())?;
        Some(WarmKey {
            group,
            credential: credential.into(),
        })
    }
}

/// Warm instances (of type `T`, a store and its bindings in the host),
/// bounded in number, uses and idle time.
pub(crate) struct WarmPool<T> {
    /// Requests one instance may serve (at least 2, or there is no pool).
    reuse: u32,
    /// Warm instances kept at most.
    cap: usize,
    /// How long an instance may wait for its next request.
    idle: Duration,
    state: Mutex<PoolState<T>>,
}

struct PoolState<T> {
    waiting: HashMap<WarmKey, Vec<Waiting<T>>>,
    count: usize,
}

struct Waiting<T> {
    instance: T,
    served: u32,
    since: Instant,
}

impl<T> WarmPool<T> {
    /// A pool for instances that serve up to `reuse` requests, keeping at
    /// most `cap` for at most `idle`; `None` when `reuse` is 1 (a fresh
    /// instance each time).
    pub(crate) fn new(reuse: u32, cap: usize, idle: Duration) -> Option<WarmPool<T>> {
        (reuse > 1 && cap > 0).then(|| WarmPool {
            reuse,
            cap,
            idle,
            state: Mutex::new(PoolState {
                waiting: HashMap::new(),
                count: 0,
            }),
        })
    }

    /// Warm instances kept at most.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// A warm instance for `key` and the requests it has served, if one
    /// is waiting.
    pub(crate) fn take(&self, key: &WarmKey) -> Option<(T, u32)> {
        let mut state = self.lock();
        let waiting = state.waiting.get_mut(key)?;
        let found = waiting.pop();
        if waiting.is_empty() {
            state.waiting.remove(key);
        }
        let found = found?;
        state.count -= 1;
        Some((found.instance, found.served))
    }

    /// Keeps `instance`, which has served `served` requests and answered
    /// the last one cleanly, for the next request with `key`. It is
    /// dropped instead when it has served its count or the pool is full.
    pub(crate) fn put(&self, key: WarmKey, instance: T, served: u32) {
        if served >= self.reuse {
            return;
        }
        let mut state = self.lock();
        if state.count >= self.cap {
            return;
        }
        state.waiting.entry(key).or_default().push(Waiting {
            instance,
            served,
            since: Instant::now(),
        });
        state.count += 1;
    }

    /// Warm instances kept now.
    pub(crate) fn len(&self) -> usize {
        self.lock().count
    }

    /// Drops the instances that waited longer than the pool's idle time,
    /// outside the lock (dropping an instance resets its memory); returns
    /// how many.
    pub(crate) fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut state = self.lock();
            state.waiting.retain(|_, waiting| {
                let (stale, fresh): (Vec<_>, Vec<_>) = std::mem::take(waiting)
                    .into_iter()
                    .partition(|w| now.duration_since(w.since) >= self.idle);
                expired.extend(stale);
                *waiting = fresh;
                !waiting.is_empty()
            });
            state.count -= expired.len();
        }
        expired.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Send + 'static> WarmPool<T> {
    /// Sweeps `pool` every [`SWEEP_EVERY`] on a thread of its own, for as
    /// long as the pool lives, so that an idle host lets go of its warm
    /// instances too.
    pub(crate) fn start_sweeper(pool: &Arc<WarmPool<T>>) -> std::io::Result<()> {
        let pool = Arc::downgrade(pool);
        std::thread::Builder::new()
            .name("warm-sweeper".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(SWEEP_EVERY);
                    let Some(pool) = pool.upgrade() else { return };
                    pool.sweep();
                }
            })
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_without_a_credential_are_never_keyed() {
        assert_eq!(WarmKey::of(Group::Executions, None), None);
        assert_eq!(WarmKey::of(Group::Executions, Some(b"")), None);
    }

    #[test]
    fn a_key_is_one_group_and_one_exact_credential() {
        let a = WarmKey::of(Group::Executions, Some(b"Bearer a"));
        assert!(a.is_some());
        assert_eq!(a, WarmKey::of(Group::Executions, Some(b"Bearer a")));
        for other in [
            WarmKey::of(Group::Variables, Some(b"Bearer a")),
            WarmKey::of(Group::Executions, Some(b"Bearer b")),
            WarmKey::of(Group::Executions, Some(b"bearer a")),
        ] {
            assert_ne!(a, other);
        }
    }

    fn key(credential: &[u8]) -> WarmKey {
        WarmKey::of(Group::Executions, Some(credential)).unwrap()
    }

    #[test]
    fn one_request_per_instance_means_no_pool() {
        assert!(WarmPool::<u32>::new(1, 100, IDLE).is_none());
        assert!(WarmPool::<u32>::new(2, 0, IDLE).is_none());
        assert!(WarmPool::<u32>::new(2, 1, IDLE).is_some());
    }

    #[test]
    fn an_instance_comes_back_only_for_its_key() {
        let pool = WarmPool::new(10, 10, IDLE).unwrap();
        pool.put(key(b"a"), "a's", 1);
        assert_eq!(pool.take(&key(b"b")), None);
        assert_eq!(pool.take(&key(b"a")), Some(("a's", 1)));
        assert_eq!(pool.take(&key(b"a")), None);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn an_instance_that_served_its_count_is_not_kept() {
        let pool = WarmPool::new(3, 10, IDLE).unwrap();
        pool.put(key(b"a"), 1, 2);
        pool.put(key(b"a"), 2, 3);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take(&key(b"a")), Some((1, 2)));
    }

    #[test]
    fn a_full_pool_keeps_no_more() {
        let pool = WarmPool::new(10, 2, IDLE).unwrap();
        for (i, credential) in [b"a", b"b", b"c"].into_iter().enumerate() {
            pool.put(key(credential), i, 1);
        }
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.take(&key(b"c")), None);
    }

    #[test]
    fn instances_idle_past_the_limit_are_swept_and_the_rest_kept() {
        let pool = WarmPool::new(10, 10, Duration::from_millis(50)).unwrap();
        pool.put(key(b"old"), 1, 1);
        std::thread::sleep(Duration::from_millis(80));
        pool.put(key(b"new"), 2, 1);
        assert_eq!(pool.sweep(), 1);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take(&key(b"old")), None);
        assert_eq!(pool.take(&key(b"new")), Some((2, 1)));
    }

    #[test]
    fn the_sweeper_empties_an_idle_pool() {
        let pool = Arc::new(WarmPool::new(10, 10, Duration::from_millis(10)).unwrap());
        pool.put(key(b"a"), 1, 1);
        WarmPool::start_sweeper(&pool).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.len() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.len(), 0);
    }
}
