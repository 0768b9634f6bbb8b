//! The `cache` capability on Valkey, through the `redis` crate's
//! multiplexed [`ConnectionManager`], which reconnects by itself. The
//! connection is made lazily, so the host starts (and serves through the
//! backend) while Valkey is down, and picks Valkey up when it appears.

use std::time::Duration;

use cronium_rules::rate_limit::{self, Quota};
use cronium_rules::{keys, lease};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisError, Script};

use super::cache::{Access, Attempt, CacheError, Lease};
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
    limit: Script,
}

impl ValkeyCache {
    /// A cache on the Valkey of `config`. Does not connect yet.
    pub fn new(config: &ValkeyConfig, default_ttl: Duration) -> Result<Self, RedisError> {
        let mut info: redis::ConnectionInfo = config.url.as_str().parse()?;
        let mut redis_settings = info.redis_settings().clone();
        if let Some(password) = &config.password {
            redis_settings = redis_settings.set_password(password.clone());
        }
        if let Some(db) = config.db {
            redis_settings = redis_settings.set_db(db);
        }
        info = info.set_redis_settings(redis_settings);
        let client = redis::Client::open(info)?;
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
            limit: Script::new(rate_limit::LIMIT_SCRIPT),
        })
    }

    fn conn(&self) -> ConnectionManager {
        self.connection.clone()
    }

    fn ttl_ms(&self, ttl: Option<Duration>) -> u64 {
        (ttl.unwrap_or(self.default_ttl).as_millis() as u64).max(1)
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
        self.conn()
            .pset_ex(key, value, self.ttl_ms(ttl))
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
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(self.ttl_ms(ttl))
            .arg("NX")
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
        // INCRBY and a PEXPIRE that only applies to a key without a TTL,
        // in one round trip.
        let (value, _): (i64, i64) = redis::pipe()
            .atomic()
            .incr(key, delta)
            .cmd("PEXPIRE")
            .arg(key)
            .arg(self.ttl_ms(ttl))
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .map_err(cache_error)?;
        Ok(value)
    }

    pub(crate) async fn try_acquire(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Attempt, CacheError> {
        let answer: i64 = self
            .acquire
            .key(keys::lease(key))
            .key(keys::lease_fence(key))
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .arg(lease::FENCE_TTL.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(cache_error)?;
        Ok(if answer > 0 {
            Attempt::Taken(answer as u64)
        } else {
            Attempt::Held(Duration::from_millis(answer.unsigned_abs()))
        })
    }

    pub(crate) async fn check_access(
        &self,
        revoked_key: &str,
        limiter_key: &str,
        quota: Quota,
    ) -> Result<Access, CacheError> {
        let answer = self.run_limit(&[revoked_key, limiter_key], quota).await?;
        Ok(Access {
            revoked: answer < 0,
            retry_after_us: answer.max(0) as u64,
        })
    }

    pub(crate) async fn limit(&self, limiter_key: &str, quota: Quota) -> Result<u64, CacheError> {
        Ok(self.run_limit(&[limiter_key], quota).await?.max(0) as u64)
    }

    /// [`rate_limit::LIMIT_SCRIPT`] on `keys` (see there).
    async fn run_limit(&self, keys: &[&str], quota: Quota) -> Result<i64, CacheError> {
        let mut invocation = self.limit.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        invocation
            .arg(quota.interval_us())
            .arg(quota.period_us())
            .invoke_async(&mut self.conn())
            .await
            .map_err(cache_error)
    }

    pub(crate) async fn release(&self, lease: &Lease) -> Result<bool, CacheError> {
        let released: i64 = self
            .release
            .key(keys::lease(&lease.key))
            .arg(&lease.owner)
            .invoke_async(&mut self.conn())
            .await
            .map_err(cache_error)?;
        Ok(released == 1)
    }
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
