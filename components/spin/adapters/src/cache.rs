//! `cronium:runtime/cache` on Spin's Redis interface, so an
//! endpoint component gets the same cache under `spin up` as in the custom
//! host, on the same Valkey: the same key formats, TTLs, increments,
//! lease scripts and line of waiters (all from `cronium-rules`).
//!
//! Settings (Spin variables of the endpoint component): `valkey_url`
//! (empty: no cache, every call answers `unavailable` and components go
//! to the backend), `cache_ttl` (Go duration, default `5m`).

use std::time::{Duration, Instant};

use cronium_rules::keys;
use cronium_rules::lease::{self, Wait};
use cronium_rules::valkey::{self as commands, AcquireAnswer};
use cronium_spin_support::valkey::{self, ValkeyError};
use cronium_spin_support::{random_u64, random_unit, settings};
use spin_sdk::redis::RedisResult;

use crate::exports::cronium::runtime::cache::{CacheError, Guest, Lease};

/// The operator's default TTL, as `CACHE_TTL` for the custom host.
fn ttl(requested: Option<u64>) -> Result<Duration, CacheError> {
    match requested {
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => {
            settings::duration("cache_ttl", Duration::from_secs(300)).map_err(CacheError::Invalid)
        }
    }
}

fn error(e: ValkeyError) -> CacheError {
    match e {
        ValkeyError::Unavailable(why) => CacheError::Unavailable(why),
        ValkeyError::Invalid(why) => CacheError::Invalid(why),
    }
}

impl Guest for crate::Adapters {
    fn get(key: String) -> Result<Option<String>, CacheError> {
        match valkey::get(&key).map_err(error)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| CacheError::Invalid("the cached value is not UTF-8".into())),
        }
    }

    fn set(key: String, value: String, ttl_ms: Option<u64>) -> Result<(), CacheError> {
        valkey::command(&commands::set(&key, &value, ttl(ttl_ms)?))
            .map(drop)
            .map_err(error)
    }

    fn add(key: String, value: String, ttl_ms: Option<u64>) -> Result<bool, CacheError> {
        let reply = valkey::command(&commands::add(&key, &value, ttl(ttl_ms)?)).map_err(error)?;
        // `OK` when stored, nil when the key already held something.
        Ok(!matches!(reply.as_slice(), [] | [RedisResult::Nil]))
    }

    fn delete(key: String) -> Result<bool, CacheError> {
        valkey::delete(&key).map_err(error)
    }

    fn increment(key: String, delta: i64, ttl_ms: Option<u64>) -> Result<i64, CacheError> {
        valkey::eval(&commands::increment(&key, delta, ttl(ttl_ms)?)).map_err(error)
    }

    fn acquire(key: String, ttl_ms: u64, wait_ms: u64) -> Result<Option<Lease>, CacheError> {
        let (ttl, patience) = lease::clamp_request(
            Duration::from_millis(ttl_ms),
            Duration::from_millis(wait_ms),
        );
        let owner = lease::owner_token((u128::from(random_u64()) << 64) | u128::from(random_u64()));
        let mut wait = Wait::new(patience);
        let joins = wait.joins_line();
        // A waiter that gives up leaves the line, else it would hold the
        // line up until its place expires.
        let leave = |owner: &str| {
            if joins {
                let _ = valkey::eval(&commands::leave(&key, owner));
            }
        };
        let started = Instant::now();
        loop {
            let reply = match valkey::eval(&commands::acquire(&key, &owner, ttl, joins)) {
                Ok(reply) => reply,
                Err(e) => {
                    leave(&owner);
                    return Err(error(e));
                }
            };
            let ahead = match AcquireAnswer::from_reply(reply) {
                AcquireAnswer::Taken(fence) => {
                    return Ok(Some(Lease { key, owner, fence }));
                }
                AcquireAnswer::Later { ahead } => ahead,
            };
            match wait.next_pause(ahead, started.elapsed(), random_unit()) {
                Some(pause) => std::thread::sleep(pause),
                None => {
                    leave(&owner);
                    return Ok(None);
                }
            }
        }
    }

    fn await_release(key: String, wait_ms: u64) -> Result<bool, CacheError> {
        let (_, patience) = lease::clamp_request(Duration::ZERO, Duration::from_millis(wait_ms));
        let lease_key = keys::lease(&key);
        // Nobody ahead but the holder, for as long as it holds.
        let mut pacing = Wait::new(patience);
        let started = Instant::now();
        loop {
            let held = match valkey::command(&["EXISTS".to_owned(), lease_key.clone()])
                .map_err(error)?
                .as_slice()
            {
                [RedisResult::Int64(n)] => *n > 0,
                other => {
                    return Err(CacheError::Invalid(format!(
                        "EXISTS answered {other:?}, not an integer"
                    )));
                }
            };
            if !held {
                return Ok(true);
            }
            match pacing.next_pause(1, started.elapsed(), random_unit()) {
                Some(pause) => std::thread::sleep(pause),
                None => return Ok(false),
            }
        }
    }

    fn release(lease: Lease) -> Result<bool, CacheError> {
        valkey::eval(&commands::release(&lease.key, &lease.owner))
            .map(|released| released == 1)
            .map_err(error)
    }
}
