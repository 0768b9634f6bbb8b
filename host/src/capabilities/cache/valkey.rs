//! The `cache` capability on Valkey: one node, or a Valkey Cluster.
//!
//! `VALKEY_URL` names one node or a comma-separated list of seed nodes.
//! On first use the host asks the first seed that answers whether it is
//! part of a cluster (`INFO cluster`); one seed is enough. A single node is
//! reached through the `redis` crate's multiplexed [`ConnectionManager`],
//! which reconnects by itself; a cluster through its cluster client, which
//! follows `MOVED`/`ASK` redirections and topology changes. Nothing is
//! connected at start, so the host starts (and serves through the backend)
//! while Valkey is down, and picks Valkey up when it appears.
//!
//! Every script keeps its keys in one hash slot: the key formats of
//! `cronium-rules` carry hash tags for that.

use std::time::Duration;

use cronium_rules::rate_limit::{self, Quota};
use cronium_rules::settings;
use cronium_rules::valkey::{self as commands, ScriptCall};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Cmd, Pipeline, RedisError, RedisFuture, Script, Value};
use tokio::sync::OnceCell;

use super::ValkeyError;
use super::lease::Lease;
use crate::config::ValkeyConfig;

/// How long one Valkey call may take before it counts as unavailable:
/// the cache must never be slower than going to the backend.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Valkey as the cache.
pub struct ValkeyCache {
    config: ValkeyConfig,
    /// Set on first use, when the seeds have said what they are.
    connection: OnceCell<Connection>,
    default_ttl: Duration,
    /// Each of the rules' scripts, with its digest for `EVALSHA`, indexed
    /// by its identity ([`commands::Script::ALL`]'s order).
    scripts: [Script; commands::Script::ALL.len()],
}

/// The connection to the region's Valkey, whichever kind it is.
#[derive(Clone)]
enum Connection {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Node(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Node(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// Asks the seeds in turn whether they are part of a cluster (`INFO
/// cluster`): the first seed that answers, and its answer; `Err` when none
/// does.
pub(crate) async fn probe(
    seeds: &[redis::ConnectionInfo],
) -> Result<(redis::ConnectionInfo, bool), RedisError> {
    let mut last = None;
    for seed in seeds {
        let ask = async {
            let client = redis::Client::open(seed.clone())?;
            let settings = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT));
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&settings)
                .await?;
            let info: String = redis::cmd("INFO")
                .arg("cluster")
                .query_async(&mut connection)
                .await?;
            Ok::<_, RedisError>(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
        };
        match ask.await {
            Ok(cluster) => return Ok((seed.clone(), cluster)),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| RedisError::from((redis::ErrorKind::Io, "no Valkey seed"))))
}

/// A cluster client on `seeds` (`VALKEY_DB` does not apply: a cluster has
/// database 0 only).
pub(crate) fn cluster_client(
    seeds: &[redis::ConnectionInfo],
) -> Result<redis::cluster::ClusterClient, RedisError> {
    ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        // Redirections and a failover's brief refusals are retried within
        // about a second; past that the request carries on without the cache.
        .retries(4)
        .min_retry_wait(10)
        .max_retry_wait(300)
        .build()
}

impl ValkeyCache {
    /// A cache on the Valkey of `config`. Does not connect yet.
    pub fn new(config: &ValkeyConfig, default_ttl: Duration) -> Result<Self, RedisError> {
        // The URLs are checked now, so that a bad one stops the start.
        connection_infos(config)?;
        Ok(ValkeyCache {
            config: config.clone(),
            connection: OnceCell::new(),
            default_ttl,
            scripts: commands::Script::ALL.map(|script| Script::new(script.source())),
        })
    }

    /// The connection, made on first use: concurrent first uses wait for
    /// one attempt, and a failed attempt is made again by the next call.
    async fn conn(&self) -> Result<Connection, ValkeyError> {
        self.connection
            .get_or_try_init(|| connect(&self.config))
            .await
            .cloned()
            .map_err(cache_error)
    }

    fn ttl(&self, ttl: Option<Duration>) -> Duration {
        ttl.unwrap_or(self.default_ttl)
    }

    /// Runs `call` with the cached copy of its script.
    async fn run(&self, call: ScriptCall) -> Result<i64, ValkeyError> {
        let mut invocation = self.scripts[call.script as usize].prepare_invoke();
        for key in &call.keys {
            invocation.key(key);
        }
        for arg in &call.args {
            invocation.arg(arg);
        }
        invocation
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(cache_error)
    }

    /// Whether Valkey answers a `PING`.
    pub async fn ping(&self) -> Result<(), ValkeyError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn().await?)
            .await
            .map(drop)
            .map_err(cache_error)
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<String>, ValkeyError> {
        self.conn().await?.get(key).await.map_err(cache_error)
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, ValkeyError> {
        self.conn().await?.exists(key).await.map_err(cache_error)
    }

    pub(crate) async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), ValkeyError> {
        redis::cmd("SET")
            .arg(&commands::set(key, value, self.ttl(ttl))[1..])
            .query_async(&mut self.conn().await?)
            .await
            .map_err(cache_error)
    }

    pub(crate) async fn add(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, ValkeyError> {
        let stored: Option<String> = redis::cmd("SET")
            .arg(&commands::add(key, value, self.ttl(ttl))[1..])
            .query_async(&mut self.conn().await?)
            .await
            .map_err(cache_error)?;
        Ok(stored.is_some())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, ValkeyError> {
        let removed: u64 = self.conn().await?.del(key).await.map_err(cache_error)?;
        Ok(removed > 0)
    }

    pub(crate) async fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, ValkeyError> {
        let call = commands::increment(key, delta, self.ttl(ttl));
        self.run(call).await
    }

    /// Runs one of the rules' scripts (a protocol machine's request).
    pub(crate) async fn script(&self, call: ScriptCall) -> Result<i64, ValkeyError> {
        self.run(call).await
    }

    /// Runs one command of the rules' builders (`cronium_rules::audit_spool`),
    /// `words[0]` its name.
    pub(crate) async fn command<T: redis::FromRedisValue>(
        &self,
        words: &[String],
    ) -> Result<T, ValkeyError> {
        let (name, args) = words
            .split_first()
            .ok_or_else(|| ValkeyError::Invalid("an empty command".into()))?;
        redis::cmd(name)
            .arg(args)
            .query_async(&mut self.conn().await?)
            .await
            .map_err(cache_error)
    }

    /// Removes the audit spool's oldest event while `call`'s owner holds
    /// the drain lease ([`commands::audit_pop`]): whether it did.
    pub(crate) async fn pop_audit_event(&self, call: ScriptCall) -> Result<bool, ValkeyError> {
        Ok(self.run(call).await? == 1)
    }

    /// Whether the connection is to a Valkey Cluster (connecting first).
    pub(crate) async fn clustered(&self) -> Result<bool, ValkeyError> {
        Ok(matches!(self.conn().await?, Connection::Cluster(_)))
    }

    pub(crate) async fn limit(&self, limiter_key: &str, quota: Quota) -> Result<u64, ValkeyError> {
        let reply = self.run(commands::limit(limiter_key, quota)).await?;
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
    ) -> Result<rate_limit::Grant, ValkeyError> {
        let call = commands::take_share(limiter_key, quota, returned, wanted);
        Ok(commands::share_answer(self.run(call).await?))
    }

    pub(crate) async fn release(&self, lease: &Lease) -> Result<bool, ValkeyError> {
        let released = self
            .run(commands::release(&lease.key, &lease.owner))
            .await?;
        Ok(released == 1)
    }
}

/// Connects to the Valkey of `config`, a cluster or one node.
async fn connect(config: &ValkeyConfig) -> Result<Connection, RedisError> {
    let seeds = connection_infos(config)?;
    let (answered, cluster) = probe(&seeds).await?;
    if cluster {
        if config.db.is_some_and(|db| db != 0) {
            tracing::warn!("VALKEY_DB does not apply to a Valkey Cluster (database 0 only)");
        }
        let connection = cluster_client(&seeds)?.get_async_connection().await?;
        tracing::info!("cache on a Valkey Cluster");
        return Ok(Connection::Cluster(connection));
    }
    if seeds.len() > 1 {
        tracing::warn!(
            node = %answered.addr(),
            "VALKEY_URL lists several seeds, but they are not a cluster: using the one that answered"
        );
    }
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        // Fail fast while Valkey is down: the request carries on with
        // the backend, and the next request tries again.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(100));
    let manager =
        ConnectionManager::new_lazy_with_config(redis::Client::open(answered)?, manager_config)?;
    Ok(Connection::Node(manager))
}

/// Where and how to connect to each seed of `config`, as
/// [`settings::valkey_endpoints`] resolves them (the one resolution the
/// host and the Spin adapters share).
pub(crate) fn connection_infos(
    config: &ValkeyConfig,
) -> Result<Vec<redis::ConnectionInfo>, RedisError> {
    settings::valkey_endpoints(&config.url, config.password.as_deref(), config.db)
        .map_err(|why| {
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "VALKEY_URL", why))
        })?
        .iter()
        .map(endpoint_info)
        .collect()
}

/// Where and how to connect to the first seed of `config`.
pub(crate) fn connection_info(config: &ValkeyConfig) -> Result<redis::ConnectionInfo, RedisError> {
    Ok(connection_infos(config)?.remove(0))
}

/// One resolved endpoint as the `redis` crate opens it (`valkey://` read
/// as `redis://`; a socket's credentials and database are set on it).
fn endpoint_info(endpoint: &settings::ValkeyEndpoint) -> Result<redis::ConnectionInfo, RedisError> {
    let url = commands::normalize_url(&endpoint.url).ok_or_else(|| {
        RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "VALKEY_URL",
            endpoint.url.clone(),
        ))
    })?;
    let info: redis::ConnectionInfo = url.parse()?;
    let mut redis_settings = info.redis_settings().clone();
    if let Some(username) = &endpoint.username {
        redis_settings = redis_settings.set_username(username.clone());
    }
    if let Some(password) = &endpoint.password {
        redis_settings = redis_settings.set_password(password.clone());
    }
    if let Some(db) = endpoint.db {
        redis_settings = redis_settings.set_db(db);
    }
    Ok(info.set_redis_settings(redis_settings))
}

fn cache_error(error: RedisError) -> ValkeyError {
    // A cluster mid-failover refuses for a moment (`CLUSTERDOWN`,
    // `TRYAGAIN`, `MASTERDOWN`, `READONLY` from a demoted master): that is
    // the cache being away, not a wrong call.
    let refusing = matches!(
        error.code(),
        Some("CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN" | "READONLY" | "LOADING")
    );
    if refusing
        || error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
    {
        ValkeyError::Unavailable(error.to_string())
    } else {
        ValkeyError::Invalid(error.to_string())
    }
}
