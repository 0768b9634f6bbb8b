//! `cronium:runtime/cache` on Spin's Redis interface, so an
//! endpoint component gets the same cache under `spin up` as in the custom
//! host, on the same Valkey: the same key formats, TTLs, increments and
//! lease scripts (all from `cronium-rules`).
//!
//! Settings (Spin variables of the endpoint component): `valkey_url`
//! (empty: no cache, every call answers `unavailable` and components go
//! to the backend), `cache_ttl` (Go duration, default `5m`).

use std::time::{Duration, Instant};

use cronium_rules::lease;
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
        let (ttl, wait) = lease::clamp_request(
            Duration::from_millis(ttl_ms),
            Duration::from_millis(wait_ms),
        );
        let owner = lease::owner_token((u128::from(random_u64()) << 64) | u128::from(random_u64()));
        let deadline = Instant::now() + wait;
        for attempt in 0.. {
            let reply = valkey::eval(&commands::acquire(&key, &owner, ttl)).map_err(error)?;
            let holder_ttl = match AcquireAnswer::from_reply(reply) {
                AcquireAnswer::Taken(fence) => {
                    return Ok(Some(Lease { key, owner, fence }));
                }
                AcquireAnswer::Held(remaining) => remaining,
            };
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let pause =
                lease::backoff(attempt, random_unit(), Some(holder_ttl)).min(deadline - now);
            std::thread::sleep(pause);
        }
        Ok(None)
    }

    fn release(lease: Lease) -> Result<bool, CacheError> {
        valkey::eval(&commands::release(&lease.key, &lease.owner))
            .map(|released| released == 1)
            .map_err(error)
    }
}
