//! The in-process parts of the Valkey cache: the near copy of values that
//! never change (bounded in entries, value size and time), and the
//! releases of leases this process made, which wake its own waiters
//! ([`LocalReleases`]) without a round trip.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// The largest value the near cache copies: larger ones stay in Valkey
/// only, which bounds the near cache to `CRONIUM_NEAR_CACHE_ENTRIES` x this
/// (64 MiB with the default 1024 entries, a quarter of a 256 MB sidecar,
/// whatever the records hold: `docs/deploying.md`, "Memory bounds").
pub(super) const NEAR_VALUE_MAX: usize = 64 * 1024;
/// How long a near copy is served at most.
pub(super) const NEAR_TTL: Duration = Duration::from_secs(60);

/// Counts, per guarded key, the leases this process released, so that its
/// waiters for the key can tell how many turns passed without asking
/// Valkey. Only keys with a waiter listening have an entry.
#[derive(Default)]
pub struct LocalReleases {
    keys: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl LocalReleases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        // Every update is one insert, send or remove.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts listening for releases of `key`'s lease: the receiver's
    /// value counts them.
    pub(super) fn listen(&self, key: &str) -> watch::Receiver<u64> {
        let mut keys = self.lock();
        if let Some(sender) = keys.get(key) {
            return sender.subscribe();
        }
        // Keys nobody listens to any more go when a new key comes.
        keys.retain(|_, sender| sender.receiver_count() > 0);
        let (sender, receiver) = watch::channel(0);
        keys.insert(key.to_owned(), sender);
        receiver
    }

    /// Announces a release of `key`'s lease to this process's waiters.
    pub(super) fn announce(&self, key: &str) {
        let mut keys = self.lock();
        if let Some(sender) = keys.get(key) {
            if sender.receiver_count() == 0 {
                keys.remove(key);
            } else {
                sender.send_modify(|released| *released += 1);
            }
        }
    }
}

/// Sleeps for `pause`, or less: until `releases` counts `turn` (when, had
/// every release ahead of the waiter been this process's, its turn came).
pub(super) async fn until_turn_or(pause: Duration, releases: &mut watch::Receiver<u64>, turn: u64) {
    let slept = tokio::time::sleep(pause);
    tokio::pin!(slept);
    loop {
        tokio::select! {
            () = &mut slept => return,
            changed = releases.changed() => {
                if changed.is_err() || *releases.borrow_and_update() >= turn {
                    return;
                }
            }
        }
    }
}
