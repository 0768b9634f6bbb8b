//! The `cache` capability on Valkey, through the `redis` crate's
//! multiplexed [`ConnectionManager`], which reconnects by itself. The
//! connection is made lazily, so the host starts (and serves through the
//! backend) while Valkey is down, and picks Valkey up when it appears.

use std::time::Duration;

use cronium_rules::lease;
use cronium_rules::rate_limit::{self, Quota};
use cronium_rules::valkey::{self as commands, AccessAnswer, AcquireAnswer, ScriptCall};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisError, Script};

use super::cache::{Access, CacheError, Lease};
use crate::config::ValkeyConfig;

/// How long one Valkey call may take before it counts as unavailable:
/// the cache must never be slower than going to the backend.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Valkey as the cache.
pub struct ValkeyCache {
    connection: ConnectionManager,
    default_ttl: Duration,
    acquire: Script,
    release: Script,
    leave: Script,
    limit: Script,
    take: Script,
    increment: Script,
}

impl ValkeyCache {
    /// A cache on the Valkey of `config`. Does not connect yet.
    pub fn new(config: &ValkeyConfig, default_ttl: Duration) -> Result<Self, RedisError> {
        let client = redis::Client::open(connection_info(config)?)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // Fail fast while Valkey is down: the request carries on with
            // the backend, and the next request tries again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(ValkeyCache {
            connection,
            default_ttl,
            acquire: Script::new(lease::ACQUIRE_SCRIPT),
            release: Script::new(lease::RELEASE_SCRIPT),
            leave: Script::new(lease::LEAVE_SCRIPT),
            limit: Script::new(rate_limit::LIMIT_SCRIPT),
            take: Script::new(rate_limit::TAKE_SCRIPT),
            increment: Script::new(commands::INCREMENT_SCRIPT),
        })
    }

    fn conn(&self) -> ConnectionManager {
        self.connection.clone()
    }

    fn ttl(&self, ttl: Option<Duration>) -> Duration {
        ttl.unwrap_or(self.default_ttl)
    }

    /// Runs `call` with `script` (the cached copy of `call.script`).
    async fn run(&self, script: &Script, call: ScriptCall) -> Result<i64, CacheError> {
        let mut invocation = script.prepare_invoke();
        for key in &call.keys {
            invocation.key(key);
        }
        for arg in &call.args {
            invocation.arg(arg);
        }
        invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(cache_error)
    }

    /// Whether Valkey answers a `PING`.
    pub async fn ping(&self) -> Result<(), CacheError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await
            .map(drop)
            .map_err(cache_error)
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        self.conn().get(key).await.map_err(cache_error)
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        self.conn().exists(key).await.map_err(cache_error)
    }

    pub(crate) async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        redis::cmd("SET")
            .arg(&commands::set(key, value, self.ttl(ttl))[1..])
            .query_async(&mut self.conn())
            .await
            .map_err(cache_error)
    }

    pub(crate) async fn add(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        let stored: Option<String> = redis::cmd("SET")
            .arg(&commands::add(key, value, self.ttl(ttl))[1..])
            .query_async(&mut self.conn())
            .await
            .map_err(cache_error)?;
        Ok(stored.is_some())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let removed: u64 = self.conn().del(key).await.map_err(cache_error)?;
        Ok(removed > 0)
    }

    pub(crate) async fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        let call = commands::increment(key, delta, self.ttl(ttl));
        self.run(&self.increment, call).await
    }

    /// One attempt to take `key`'s lease, in turn ([`lease::ACQUIRE_SCRIPT`]).
    pub(crate) async fn try_acquire(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        joins_line: bool,
    ) -> Result<AcquireAnswer, CacheError> {
        let reply = self
            .run(
                &self.acquire,
                commands::acquire(key, owner, ttl, joins_line),
            )
            .await?;
        Ok(AcquireAnswer::from_reply(reply))
    }

    /// Takes `owner` out of the line for `key`'s lease.
    pub(crate) async fn leave(&self, key: &str, owner: &str) -> Result<(), CacheError> {
        self.run(&self.leave, commands::leave(key, owner))
            .await
            .map(drop)
    }

    pub(crate) async fn check_access(
        &self,
        revoked_key: &str,
        limiter_key: &str,
        quota: Quota,
    ) -> Result<Access, CacheError> {
        let call = commands::check_access(revoked_key, limiter_key, quota);
        let answer = AccessAnswer::from_reply(self.run(&self.limit, call).await?);
        Ok(Access {
            revoked: answer.revoked,
            retry_after_us: answer.retry_after_us,
        })
    }

    pub(crate) async fn limit(&self, limiter_key: &str, quota: Quota) -> Result<u64, CacheError> {
        let reply = self
            .run(&self.limit, commands::limit(limiter_key, quota))
            .await?;
        Ok(reply.max(0) as u64)
    }

    /// Gives back `returned` and takes up to `wanted` requests of
    /// `limiter_key`'s budget ([`rate_limit::TAKE_SCRIPT`]).
    pub(crate) async fn take_share(
        &self,
        limiter_key: &str,
        quota: Quota,
        returned: u32,
        wanted: u32,
    ) -> Result<rate_limit::Grant, CacheError> {
        let call = commands::take_share(limiter_key, quota, returned, wanted);
        Ok(commands::share_answer(self.run(&self.take, call).await?))
    }

    pub(crate) async fn release(&self, lease: &Lease) -> Result<bool, CacheError> {
        let released = self
            .run(&self.release, commands::release(&lease.key, &lease.owner))
            .await?;
        Ok(released == 1)
    }
}

/// Where and how to connect: the URL, with `VALKEY_PASSWORD` and
/// `VALKEY_DB` applied over it.
pub(crate) fn connection_info(config: &ValkeyConfig) -> Result<redis::ConnectionInfo, RedisError> {
    let info: redis::ConnectionInfo = config.url.as_str().parse()?;
    let mut redis_settings = info.redis_settings().clone();
    if let Some(password) = &config.password {
        redis_settings = redis_settings.set_password(password.clone());
    }
    if let Some(db) = config.db {
        redis_settings = redis_settings.set_db(db);
    }
    Ok(info.set_redis_settings(redis_settings))
}

fn cache_error(error: RedisError) -> CacheError {
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
    {
        CacheError::Unavailable(error.to_string())
    } else {
        CacheError::Invalid(error.to_string())
    }
}
