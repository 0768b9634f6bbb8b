//! `cronium:runtime/cache` on Spin's Redis interface, so an
//! endpoint component gets the same cache under `spin up` as in the custom
//! host, on the same Valkey: the same key formats, TTLs, increments,
//! lease scripts and line of waiters (all from `cronium-rules`).
//!
//! A component names keys in its own space: the real key comes from
//! `cronium_rules::keys::in_space`, as in the custom host, with the
//! component's endpoint group (the `group` variable spin.toml gives each
//! endpoint component) and the owner of the scope, from the caller (its
//! execution, or the user its execution record names).
//!
//! Settings (Spin variables of the endpoint component): `group`,
//! `valkey_url` (empty: no cache, every call answers `unavailable` and
//! components go to the backend), `cache_ttl` (Go duration, default `5m`).

use std::time::Duration;

use cronium_rules::keys;
use cronium_rules::lease::{self, protocol::Acquire, protocol::AwaitRelease};
use cronium_rules::protocol::ValkeyError;
use cronium_rules::valkey as commands;
use cronium_spin_support::valkey;
use cronium_spin_support::{drive, random_u64, settings};
use spin_sdk::redis::RedisResult;

use crate::auth::VerifiedCaller;
use crate::exports::cronium::runtime::auth::CallerBorrow;
use crate::exports::cronium::runtime::cache::{CacheError, Guest, GuestLease, Lease, Scope};

/// The operator's default TTL, as `CACHE_TTL` for the custom host.
pub(crate) fn ttl(requested: Option<u64>) -> Result<Duration, CacheError> {
    match requested {
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => settings::cache_ttl(settings::get("cache_ttl")).map_err(CacheError::Invalid),
    }
}

fn error(e: ValkeyError) -> CacheError {
    match e {
        ValkeyError::Unavailable(why) => CacheError::Unavailable(why),
        ValkeyError::Invalid(why) => CacheError::Invalid(why),
    }
}

/// The real key of the component's `name` in `scope`, resolved from
/// `caller`.
fn real_key(caller: CallerBorrow<'_>, scope: Scope, name: &str) -> Result<String, CacheError> {
    let group = settings::get("group").ok_or_else(|| {
        CacheError::Unavailable("no group is configured for this component".into())
    })?;
    let caller = caller.get::<VerifiedCaller>();
    Ok(match scope {
        Scope::Group => keys::in_space(&group, keys::Scope::Group, name),
        Scope::Execution => keys::in_space(
            &group,
            keys::Scope::Execution(&caller.claims.execution_id),
            name,
        ),
        Scope::User => {
            let user = crate::backend::records::user_of(caller).map_err(|e| {
                CacheError::Unavailable(format!("the caller's user is unknown: {e:?}"))
            })?;
            keys::in_space(&group, keys::Scope::User(&user), name)
        }
    })
}

/// A held lease: the real key it guards and its owner token stay here.
pub struct HeldLease {
    key: String,
    owner: String,
    fence: u64,
}

impl GuestLease for HeldLease {
    fn fence(&self) -> u64 {
        self.fence
    }
}

impl Guest for crate::Adapters {
    type Lease = HeldLease;

    fn get(
        caller: CallerBorrow<'_>,
        scope: Scope,
        key: String,
    ) -> Result<Option<String>, CacheError> {
        let key = real_key(caller, scope, &key)?;
        match valkey::get(&key).map_err(error)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| CacheError::Invalid("the cached value is not UTF-8".into())),
        }
    }

    fn set(
        caller: CallerBorrow<'_>,
        scope: Scope,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    ) -> Result<(), CacheError> {
        let key = real_key(caller, scope, &key)?;
        valkey::command(&commands::set(&key, &value, ttl(ttl_ms)?))
            .map(drop)
            .map_err(error)
    }

    fn add(
        caller: CallerBorrow<'_>,
        scope: Scope,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    ) -> Result<bool, CacheError> {
        let key = real_key(caller, scope, &key)?;
        let reply = valkey::command(&commands::add(&key, &value, ttl(ttl_ms)?)).map_err(error)?;
        // `OK` when stored, nil when the key already held something.
        Ok(!matches!(reply.as_slice(), [] | [RedisResult::Nil]))
    }

    fn delete(caller: CallerBorrow<'_>, scope: Scope, key: String) -> Result<bool, CacheError> {
        let key = real_key(caller, scope, &key)?;
        valkey::delete(&key).map_err(error)
    }

    fn increment(
        caller: CallerBorrow<'_>,
        scope: Scope,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, CacheError> {
        let key = real_key(caller, scope, &key)?;
        valkey::eval(&commands::increment(&key, delta, ttl(ttl_ms)?)).map_err(error)
    }

    fn acquire(
        caller: CallerBorrow<'_>,
        scope: Scope,
        key: String,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> Result<Option<Lease>, CacheError> {
        let key = real_key(caller, scope, &key)?;
        let owner = lease::owner_token((u128::from(random_u64()) << 64) | u128::from(random_u64()));
        let acquire = Acquire::new(
            &key,
            &owner,
            Duration::from_millis(ttl_ms),
            Duration::from_millis(wait_ms),
        );
        Ok(drive::valkey(acquire)
            .map_err(error)?
            .map(|fence| Lease::new(HeldLease { key, owner, fence })))
    }

    fn await_release(
        caller: CallerBorrow<'_>,
        scope: Scope,
        key: String,
        wait_ms: u64,
    ) -> Result<bool, CacheError> {
        let key = real_key(caller, scope, &key)?;
        drive::valkey(AwaitRelease::new(&key, Duration::from_millis(wait_ms))).map_err(error)
    }

    fn release(lease: Lease) -> Result<bool, CacheError> {
        let lease = lease.into_inner::<HeldLease>();
        valkey::eval(&commands::release(&lease.key, &lease.owner))
            .map(|released| released == 1)
            .map_err(error)
    }
}
