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
//! costs more than the rest of a cached read together (`bench/load.rs`).
//!
//! An instance is dropped when it has served its count, when it failed in
//! any way, when it has idled for [`IDLE`], or when [`WarmPool::cap`] warm
//! instances are already kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::{Group, RequestState};

/// How long a warm instance is kept without a request.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

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

/// An instance between two requests.
pub(crate) struct WarmInstance {
    pub(crate) store: Store<RequestState>,
    pub(crate) proxy: Proxy,
    /// Requests it has answered.
    pub(crate) served: u32,
    idle_since: Instant,
}

impl WarmInstance {
    /// An instance that has answered `served` requests so far.
    pub(crate) fn new(store: Store<RequestState>, proxy: Proxy, served: u32) -> Self {
        WarmInstance {
            store,
            proxy,
            served,
            idle_since: Instant::now(),
        }
    }
}

/// The warm instances of every group, bounded in number and in age.
pub(crate) struct WarmPool {
    /// Requests one instance may serve (at least 2, or there is no pool).
    reuse: u32,
    /// Warm instances kept at most.
    cap: usize,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    idle: HashMap<WarmKey, Vec<WarmInstance>>,
    count: usize,
    last_sweep: Option<Instant>,
}

impl WarmPool {
    /// A pool for instances that serve up to `reuse` requests, keeping at
    /// most `cap`; `None` when `reuse` is 1 (a fresh instance each time).
    pub(crate) fn new(reuse: u32, cap: usize) -> Option<WarmPool> {
        (reuse > 1 && cap > 0).then(|| WarmPool {
            reuse,
            cap,
            state: Mutex::new(PoolState::default()),
        })
    }

    /// Warm instances kept at most.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// A warm instance for `key`, if one is idle.
    pub(crate) fn take(&self, key: &WarmKey) -> Option<WarmInstance> {
        let mut state = self.lock();
        self.sweep(&mut state);
        let instances = state.idle.get_mut(key)?;
        let instance = instances.pop();
        if instances.is_empty() {
            state.idle.remove(key);
        }
        if instance.is_some() {
            state.count -= 1;
        }
        instance
    }

    /// Keeps `instance`, which has just answered a request cleanly, for the
    /// next request with `key`; drops it when it has served its count or
    /// the pool is full.
    pub(crate) fn put(&self, key: WarmKey, mut instance: WarmInstance) {
        if instance.served >= self.reuse {
            return;
        }
        let mut state = self.lock();
        self.sweep(&mut state);
        if state.count >= self.cap {
            return;
        }
        instance.idle_since = Instant::now();
        state.idle.entry(key).or_default().push(instance);
        state.count += 1;
    }

    /// Warm instances kept now.
    pub(crate) fn len(&self) -> usize {
        self.lock().count
    }

    /// Drops instances idle for longer than [`IDLE`], at most once a second.
    fn sweep(&self, state: &mut PoolState) {
        let now = Instant::now();
        if state
            .last_sweep
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        state.last_sweep = Some(now);
        let mut count = 0;
        state.idle.retain(|_, instances| {
            instances.retain(|i| now.duration_since(i.idle_since) < IDLE);
            count += instances.len();
            !instances.is_empty()
        });
        state.count = count;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        let a = WarmKey::of(Group::Executions, Some(b"Bearer a")).unwrap();
        assert_eq!(
            Some(&a),
            WarmKey::of(Group::Executions, Some(b"Bearer a")).as_ref()
        );
        assert_ne!(
            Some(&a),
            WarmKey::of(Group::Variables, Some(b"Bearer a")).as_ref()
        );
        assert_ne!(
            Some(&a),
            WarmKey::of(Group::Executions, Some(b"Bearer b")).as_ref()
        );
        assert_ne!(
            Some(&a),
            WarmKey::of(Group::Executions, Some(b"bearer a")).as_ref()
        );
    }

    #[test]
    fn one_request_per_instance_means_no_pool() {
        assert!(WarmPool::new(1, 100).is_none());
        assert!(WarmPool::new(2, 0).is_none());
        assert!(WarmPool::new(2, 1).is_some());
    }
}
