//! Idempotent tool calls: with an `Idempotency-Key`, a retried call runs
//! once. The same protocol holds for tools installed in the runtime and
//! for tools relayed to the backend, under either host:
//!
//! 1. A result remembered under the key ([`crate::keys::idempotency`], a
//!    name in the store's space, which the host scopes to the caller's
//!    execution) is answered again, if the retry is the same
//!    call ([`fingerprint`]); a different call with the key is refused.
//! 2. Otherwise the caller takes the key's lease, waiting in line (up to
//!    [`WAIT_MS`] without the line moving) while a first call runs; a call
//!    that outlasts the wait leaves the retry "still running".
//! 3. With the lease, it looks again: the first call may have finished
//!    while it waited.
//! 4. Else it runs the call and keeps a success for [`RESULT_TTL_MS`]
//!    (failures are not kept: a retry runs again), then releases the lease.
//!
//! [`run_once`] is that protocol over a [`Store`], which the caller
//! implements on the `cache` capability.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::keys;

/// How long the result of a call sent with an `Idempotency-Key` is kept:
/// a retry within this time gets the first result back.
pub const RESULT_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// The longest `Idempotency-Key` accepted, in bytes.
pub const KEY_MAX: usize = 255;

/// How long one call may hold the key's lease: longer than a tool may run,
/// so that a retry arriving meanwhile waits instead of running the action a
/// second time (clamped to [`crate::lease::MAX_LEASE_TTL`]).
pub const LEASE_TTL_MS: u64 = 120_000;

/// How long a retry waits for a first call that is still running (the
/// patience of its wait for the lease: see [`crate::lease::Wait`]).
pub const WAIT_MS: u64 = 10_000;

/// Checks an `Idempotency-Key` header value: 1 to [`KEY_MAX`] visible
/// ASCII bytes.
pub fn check_key(key: &str) -> Result<(), String> {
    if (1..=KEY_MAX).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(format!(
            "Idempotency-Key must be 1-{KEY_MAX} visible ASCII characters"
        ))
    }
}

/// A fingerprint of a tool call (tool, action, parameters), to tell a
/// retry from a different call reusing an `Idempotency-Key`.
pub fn fingerprint(tool: &str, action: &str, parameters: &Value) -> String {
    let mut hash = Sha256::new();
    for part in [tool, action] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    // serde_json's maps are sorted, so equal values serialise equally.
    hash.update(parameters.to_string().as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What an idempotent call leaves behind: the answer to give a retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remembered {
    /// [`fingerprint`] of the first call: a retry must be the same call.
    pub fingerprint: String,
    /// The call's result, which the first call answered as `data`.
    pub data: Value,
}

/// The cache cannot be reached (or refused the call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUnavailable;

/// The cache calls the protocol needs, as the `cache` capability offers them:
/// keys are names in the caller's execution's space.
pub trait Store {
    /// A held lease.
    type Lease;
    /// The value under `key`.
    fn get(&mut self, key: &str) -> Result<Option<String>, CacheUnavailable>;
    /// Stores `value` under `key` for `ttl_ms`.
    fn set(&mut self, key: &str, value: &str, ttl_ms: u64) -> Result<(), CacheUnavailable>;
    /// Takes `key`'s lease for `ttl_ms`, waiting in line with a patience of
    /// `wait_ms`; `None` when the wait ran out.
    fn acquire(
        &mut self,
        key: &str,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> Result<Option<Self::Lease>, CacheUnavailable>;
    /// Releases `lease` (an expired one is let go by its TTL anyway).
    fn release(&mut self, lease: Self::Lease);
}

/// How an idempotent call was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The call ran, with this result; `kept` is false when the cache
    /// could not store it (a retry would run the call again).
    Ran {
        /// The call's result.
        data: Value,
        /// Whether the cache stored the result for a retry to replay.
        kept: bool,
    },
    /// An earlier call's result, answered again (`Idempotent-Replayed`).
    Replayed(Value),
}

/// Why an idempotent call got no result.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal<E> {
    /// The call ran and failed with this error (not remembered).
    Failed(E),
    /// The key was used for a different call (422).
    KeyReused,
    /// A call with the key is still running after the wait (409).
    StillRunning,
    /// The cache is unavailable, so the call cannot be made idempotent
    /// and does not run (503).
    CacheUnavailable,
}

/// Runs `call` at most once per `idempotency_key` in `store`'s space (the
/// caller's execution's; the protocol of the module documentation).
/// `fingerprint` names the call.
pub fn run_once<S: Store, E>(
    store: &mut S,
    idempotency_key: &str,
    fingerprint: &str,
    call: impl FnOnce() -> Result<Value, E>,
) -> Result<Outcome, Refusal<E>> {
    let key = keys::idempotency(idempotency_key);
    if let Some(data) = remembered(store, &key, fingerprint)? {
        return Ok(Outcome::Replayed(data));
    }
    let lease = match store.acquire(&key, LEASE_TTL_MS, WAIT_MS) {
        Ok(Some(lease)) => lease,
        Ok(None) => return Err(Refusal::StillRunning),
        Err(CacheUnavailable) => return Err(Refusal::CacheUnavailable),
    };
    let outcome = match remembered(store, &key, fingerprint) {
        Ok(Some(data)) => Ok(Outcome::Replayed(data)),
        Ok(None) => match call() {
            Ok(data) => {
                let record = Remembered {
                    fingerprint: fingerprint.to_owned(),
                    data,
                };
                let kept = serde_json::to_string(&record)
                    .is_ok_and(|text| store.set(&key, &text, RESULT_TTL_MS).is_ok());
                Ok(Outcome::Ran {
                    data: record.data,
                    kept,
                })
            }
            Err(error) => Err(Refusal::Failed(error)),
        },
        Err(refusal) => Err(refusal),
    };
    store.release(lease);
    outcome
}

/// The result remembered under `key`, if the same call left one.
fn remembered<S: Store, E>(
    store: &mut S,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Value>, Refusal<E>> {
    let stored = match store.get(key) {
        Ok(Some(stored)) => stored,
        Ok(None) => return Ok(None),
        Err(CacheUnavailable) => return Err(Refusal::CacheUnavailable),
    };
    // Something unreadable is no result: the call runs (and overwrites it).
    let Ok(record) = serde_json::from_str::<Remembered>(&stored) else {
        return Ok(None);
    };
    if record.fingerprint != fingerprint {
        return Err(Refusal::KeyReused);
    }
    Ok(Some(record.data))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    /// What happens to the cache while a caller waits for a held lease:
    /// the first call finishing (true) or not (false).
    type FirstCall = Box<dyn FnMut(&mut HashMap<String, String>) -> bool>;

    /// A cache in a map. `while_waiting` runs when a caller would wait
    /// for a held lease; without it, the wait runs out.
    #[derive(Default)]
    struct FakeStore {
        values: HashMap<String, String>,
        leased: bool,
        while_waiting: Option<FirstCall>,
        down: bool,
        refuses_writes: bool,
        released: usize,
    }

    impl Store for FakeStore {
        type Lease = ();

        fn get(&mut self, key: &str) -> Result<Option<String>, CacheUnavailable> {
            if self.down {
                return Err(CacheUnavailable);
            }
            Ok(self.values.get(key).cloned())
        }

        fn set(&mut self, key: &str, value: &str, ttl_ms: u64) -> Result<(), CacheUnavailable> {
            assert_eq!(ttl_ms, RESULT_TTL_MS);
            if self.down || self.refuses_writes {
                return Err(CacheUnavailable);
            }
            self.values.insert(key.to_owned(), value.to_owned());
            Ok(())
        }

        fn acquire(
            &mut self,
            _: &str,
            _: u64,
            wait_ms: u64,
        ) -> Result<Option<()>, CacheUnavailable> {
            assert_eq!(wait_ms, WAIT_MS);
            if self.down {
                return Err(CacheUnavailable);
            }
            if self.leased {
                let finished = match &mut self.while_waiting {
                    Some(first_call) => first_call(&mut self.values),
                    None => false,
                };
                if !finished {
                    return Ok(None);
                }
            }
            self.leased = true;
            Ok(Some(()))
        }

        fn release(&mut self, (): ()) {
            self.leased = false;
            self.released += 1;
        }
    }

    fn once(
        store: &mut FakeStore,
        key: &str,
        fingerprint: &str,
        runs: &mut u32,
        answer: Result<Value, &'static str>,
    ) -> Result<Outcome, Refusal<&'static str>> {
        run_once(store, key, fingerprint, || {
            *runs += 1;
            answer
        })
    }

    #[test]
    fn a_retry_gets_the_first_result_back_without_running_again() {
        let mut store = FakeStore::default();
        let mut runs = 0;
        let first = once(&mut store, "k", "call", &mut runs, Ok(json!({"run": 1})));
        assert_eq!(
            first,
            Ok(Outcome::Ran {
                data: json!({"run": 1}),
                kept: true
            })
        );
        let retry = once(&mut store, "k", "call", &mut runs, Ok(json!({"run": 2})));
        assert_eq!(retry, Ok(Outcome::Replayed(json!({"run": 1}))));
        assert_eq!(runs, 1);
        assert_eq!(store.released, 1, "a replay from the cache takes no lease");
    }

    #[test]
    fn the_key_reused_for_another_call_is_refused_without_running_it() {
        let mut store = FakeStore::default();
        let mut runs = 0;
        once(&mut store, "k", "call-a", &mut runs, Ok(json!(1))).unwrap();
        let reused = once(&mut store, "k", "call-b", &mut runs, Ok(json!(2)));
        assert_eq!(reused, Err(Refusal::KeyReused));
        assert_eq!(runs, 1);
    }

    #[test]
    fn a_failure_is_not_remembered_so_a_retry_runs_again() {
        let mut store = FakeStore::default();
        let mut runs = 0;
        let failed = once(&mut store, "k", "call", &mut runs, Err("refused"));
        assert_eq!(failed, Err(Refusal::Failed("refused")));
        assert!(!store.leased, "the lease is released after a failure");
        let retry = once(&mut store, "k", "call", &mut runs, Ok(json!("ok")));
        assert!(matches!(retry, Ok(Outcome::Ran { .. })));
        assert_eq!(runs, 2);
    }

    #[test]
    fn a_retry_that_waited_for_the_first_call_replays_its_result() {
        let mut store = FakeStore {
            leased: true,
            ..FakeStore::default()
        };
        let key = keys::idempotency("k");
        let first = serde_json::to_string(&Remembered {
            fingerprint: "call".into(),
            data: json!({"run": 1}),
        })
        .unwrap();
        store.while_waiting = Some(Box::new(move |values| {
            values.insert(key.clone(), first.clone());
            true
        }));
        let mut runs = 0;
        let retry = once(&mut store, "k", "call", &mut runs, Ok(json!({"run": 2})));
        assert_eq!(retry, Ok(Outcome::Replayed(json!({"run": 1}))));
        assert_eq!(runs, 0);
        assert_eq!(store.released, 1);
    }

    #[test]
    fn a_first_call_that_outlasts_the_wait_leaves_the_retry_still_running() {
        let mut store = FakeStore {
            leased: true,
            ..FakeStore::default()
        };
        let mut runs = 0;
        let retry = once(&mut store, "k", "call", &mut runs, Ok(json!(1)));
        assert_eq!(retry, Err(Refusal::StillRunning));
        assert_eq!(runs, 0);
    }

    #[test]
    fn without_the_cache_the_call_is_refused_and_does_not_run() {
        let mut store = FakeStore {
            down: true,
            ..FakeStore::default()
        };
        let mut runs = 0;
        let refused = once(&mut store, "k", "call", &mut runs, Ok(json!(1)));
        assert_eq!(refused, Err(Refusal::CacheUnavailable));
        assert_eq!(runs, 0);
    }

    #[test]
    fn a_result_the_cache_cannot_keep_is_still_answered() {
        let mut store = FakeStore {
            refuses_writes: true,
            ..FakeStore::default()
        };
        let mut runs = 0;
        let answered = once(&mut store, "k", "call", &mut runs, Ok(json!(1)));
        assert_eq!(
            answered,
            Ok(Outcome::Ran {
                data: json!(1),
                kept: false
            })
        );
        assert_eq!(store.released, 1);
    }

    #[test]
    fn fingerprints_tell_calls_apart_and_ignore_key_order() {
        let a = fingerprint(
            "slack",
            "send_message",
            &json!({"text": "hi", "channel": "c"}),
        );
        let b = fingerprint(
            "slack",
            "send_message",
            &json!({"channel": "c", "text": "hi"}),
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            fingerprint("slack", "send_message", &json!({"text": "ho"}))
        );
        assert_ne!(
            fingerprint("ab", "c", &json!({})),
            fingerprint("a", "bc", &json!({}))
        );
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_of_bounded_length() {
        assert!(check_key("retry-7f3a").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("has space").is_err());
        assert!(check_key(&"k".repeat(256)).is_err());
    }
}
