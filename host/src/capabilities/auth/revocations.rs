//! Revocations pushed from Valkey, so that a warm request needs no query.
//!
//! One connection per host speaks RESP3 and turns on server-assisted
//! client-side caching in broadcast mode for the revocation keys (`CLIENT
//! TRACKING ON BCAST PREFIX cronium:exec-revoked:`): Valkey then pushes an
//! invalidation for every write, delete or expiry of such a key. The watch
//! loads every revoked job once (`SCAN`) after tracking is on, so nothing
//! written meanwhile slips through, and re-reads a key whenever Valkey says
//! it changed. A `PING` every [`HEARTBEAT`] proves the connection alive.
//!
//! While the connection is down, not yet synchronised, or silent past its
//! heartbeat, [`RevocationWatch::is_revoked`] answers `None` and callers
//! check Valkey on every request as before: a lost invalidation can never
//! mean a missed revocation, only a slower request.
//!
//! On a Valkey Cluster each primary tracks only its own keys, so the watch
//! holds one such connection per primary (found with `CLUSTER NODES`), and
//! is live only while all of them are. Its heartbeat asks each node its
//! `ROLE`, and every few seconds the cluster its primaries: a failover or a
//! new primary starts the watch over, with per-request checks meanwhile.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cronium_rules::keys::REVOKED_JOB_PREFIX;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, RedisError, Value};
use tokio::sync::mpsc;

use crate::capabilities::cache::valkey::{
    cluster_client, connection_info, connection_infos, probe,
};
use crate::config::ValkeyConfig;

/// How often the watch proves its connection alive; a revocation reaches
/// this host within about this long even if Valkey's push is lost on a
/// connection that died without a word.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a heartbeat or a command of the watch may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// The pause before reconnecting after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// The name the watch's connection carries in `CLIENT LIST`.
pub const CLIENT_NAME: &str = "cronium-revocation-watch";

/// How often a watch on a cluster asks whether its primaries changed.
const TOPOLOGY_CHECK: Duration = Duration::from_secs(2);

/// What the watch knows, shared with the requests.
#[derive(Default)]
struct Known {
    /// Synchronised and listening on every node: `revoked` is complete.
    live: AtomicBool,
    /// The job ids with a revocation key, one set per watched node.
    revoked: RwLock<Vec<Arc<NodeSet>>>,
}

/// The revoked job ids kept on one node.
type NodeSet = RwLock<HashSet<String>>;

/// The revocation list of the region's Valkey, kept current by push.
#[derive(Clone)]
pub struct RevocationWatch {
    known: Arc<Known>,
}

impl RevocationWatch {
    /// Starts watching the Valkey of `config` (in the background, on the
    /// current Tokio runtime; reconnecting for as long as the host runs).
    pub fn start(config: &ValkeyConfig) -> Result<RevocationWatch, RedisError> {
        // The URLs are checked now, so that a bad one stops the start.
        connection_infos(config)?;
        let config = config.clone();
        let known = Arc::new(Known::default());
        let watch = RevocationWatch {
            known: known.clone(),
        };
        tokio::spawn(async move {
            let mut failures = 0u32;
            let mut topology = Topology::default();
            loop {
                let outcome = watch_all(&config, &mut topology, &known).await;
                known.live.store(false, Ordering::SeqCst);
                if let Err(error) = outcome {
                    // Logged once per outage, not on every retry.
                    if failures == 0 {
                        tracing::warn!(%error, "revocation watch down; checking Valkey per request");
                    }
                    failures = failures.saturating_add(1);
                } else {
                    failures = 0;
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        });
        Ok(watch)
    }

    /// Whether `job_id` is revoked, or `None` while the watch cannot vouch
    /// for its list (then the caller must ask Valkey).
    pub fn is_revoked(&self, job_id: &str) -> Option<bool> {
        if !self.known.live.load(Ordering::SeqCst) {
            return None;
        }
        let nodes = self.known.revoked.read().unwrap_or_else(|p| p.into_inner());
        Some(nodes.iter().any(|node| {
            node.read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(job_id)
        }))
    }

    /// Whether the watch is synchronised and listening.
    pub fn is_live(&self) -> bool {
        self.known.live.load(Ordering::SeqCst)
    }
}

/// What the watch learned of the region's Valkey, kept across restarts.
#[derive(Default)]
struct Topology {
    /// Whether it is a cluster, once a seed has said.
    cluster: Option<bool>,
    /// The node that answered (one node), or every node of the cluster
    /// seen last: asked first next time, since the configured seeds may be
    /// the very nodes that failed.
    nodes: Vec<redis::ConnectionInfo>,
}

/// One life of the watch: every node followed until one fails, or (on a
/// cluster) until the primaries change. Returns `Ok` when it should start
/// over at once.
async fn watch_all(
    config: &ValkeyConfig,
    topology: &mut Topology,
    known: &Known,
) -> Result<(), RedisError> {
    let mut seeds = topology.nodes.clone();
    seeds.extend(connection_infos(config)?);
    if topology.cluster.is_none() {
        let (answered, cluster) = probe(&seeds).await?;
        topology.cluster = Some(cluster);
        if !cluster {
            topology.nodes = vec![answered];
        }
    }
    // One cluster connection per life, for the primaries now and at each
    // later check; it follows the cluster's changes by itself.
    let mut cluster = match topology.cluster {
        Some(true) => Some(cluster_client(&seeds)?.get_async_connection().await?),
        _ => None,
    };
    let nodes = match cluster.as_mut() {
        Some(connection) => {
            let (primaries, all) = primaries(config, connection).await?;
            topology.nodes = all;
            primaries
        }
        None => topology.nodes.clone(),
    };
    let is_cluster = cluster.is_some();
    let sets: Vec<Arc<NodeSet>> = nodes.iter().map(|_| Arc::default()).collect();
    *known.revoked.write().unwrap_or_else(|p| p.into_inner()) = sets.clone();
    let (ready, mut readied) = mpsc::unbounded_channel::<()>();
    let mut follows = tokio::task::JoinSet::new();
    for (info, set) in nodes.iter().cloned().zip(sets) {
        let ready = ready.clone();
        follows.spawn(async move { follow(info, &set, ready, is_cluster).await });
    }
    drop(ready);
    let expected: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
    let mut synchronised = 0;
    let mut check = tokio::time::interval(TOPOLOGY_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    loop {
        tokio::select! {
            Some(()) = readied.recv() => {
                synchronised += 1;
                if synchronised == nodes.len() {
                    known.live.store(true, Ordering::SeqCst);
                    tracing::info!(nodes = nodes.len(), "revocation watch live");
                }
            }
            ended = follows.join_next() => {
                // One node's watch ended: the list is no longer complete.
                return match ended {
                    Some(Ok(outcome)) => outcome,
                    Some(Err(_)) | None => Ok(()),
                };
            }
            _ = check.tick(), if is_cluster => {
                let Some(connection) = cluster.as_mut() else { continue };
                let (primaries, all) = primaries(config, connection).await?;
                topology.nodes = all;
                let now: Vec<String> = primaries.iter().map(|n| n.addr().to_string()).collect();
                if now != expected {
                    tracing::info!("the cluster's primaries changed; watching them anew");
                    return Ok(());
                }
            }
        }
    }
}

/// The primaries of the cluster of `connection`, in address order, and
/// all its live nodes; each with the configured credentials.
async fn primaries(
    config: &ValkeyConfig,
    connection: &mut ClusterConnection,
) -> Result<(Vec<redis::ConnectionInfo>, Vec<redis::ConnectionInfo>), RedisError> {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(connection)
        .await?;
    let template = connection_info(config)?;
    let nodes = cronium_rules::valkey::cluster_nodes(&nodes);
    let info = |node: &cronium_rules::valkey::ClusterNode| {
        template
            .clone()
            .set_addr(redis::ConnectionAddr::Tcp(node.host.clone(), node.port))
    };
    let mut found: Vec<redis::ConnectionInfo> =
        nodes.iter().filter(|n| n.primary).map(info).collect();
    found.sort_by_key(|info| info.addr().to_string());
    Ok((found, nodes.iter().map(info).collect()))
}

/// One node's connection: tracking on, full load, then invalidations
/// until the connection fails (or, on a cluster, the node stops being a
/// primary). `ready` hears once when the node's list is loaded.
async fn follow(
    info: redis::ConnectionInfo,
    set: &NodeSet,
    ready: mpsc::UnboundedSender<()>,
    cluster: bool,
) -> Result<(), RedisError> {
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let (pushes, mut received) = mpsc::unbounded_channel::<PushInfo>();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_push_sender(pushes);
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(CLIENT_NAME)
        .query_async::<()>(&mut connection)
        .await?;
    // Tracking first, then the load: a key written in between is both
    // loaded and announced, never neither.
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(REVOKED_JOB_PREFIX)
        .query_async::<()>(&mut connection)
        .await?;
    if cluster {
        still_primary(&mut connection).await?;
    }
    reload(&mut connection, set).await?;
    let _ = ready.send(());

    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = received.recv() => match push {
                None => return Ok(()),
                Some(PushInfo { kind: PushKind::Disconnection, .. }) => return Ok(()),
                Some(PushInfo { kind: PushKind::Invalidate, data }) => {
                    match invalidated_keys(&data) {
                        Some(keys) => refresh(&mut connection, set, &keys).await?,
                        // Valkey flushed its tracking table: start over.
                        None => reload(&mut connection, set).await?,
                    }
                }
                Some(_) => {}
            },
            _ = heartbeat.tick() => {
                if cluster {
                    // A demoted primary stays connected but no longer
                    // sees the writes: that ends this watch.
                    still_primary(&mut connection).await?;
                } else {
                    redis::cmd("PING").query_async::<()>(&mut connection).await?;
                }
            }
        }
    }
}

/// `Err` unless the node of `connection` is a primary (`ROLE`).
async fn still_primary(connection: &mut MultiplexedConnection) -> Result<(), RedisError> {
    let role: Vec<Value> = redis::cmd("ROLE").query_async(connection).await?;
    match role.first() {
        Some(Value::BulkString(role)) if role == b"master" => Ok(()),
        Some(Value::SimpleString(role)) if role == "master" => Ok(()),
        _ => Err(RedisError::from((
            redis::ErrorKind::Io,
            "the watched node is no longer a primary",
        ))),
    }
}

/// The keys of an invalidation push; `None` for "everything" (a flush).
fn invalidated_keys(data: &[Value]) -> Option<Vec<String>> {
    match data.first() {
        Some(Value::Array(keys)) => Some(
            keys.iter()
                .filter_map(|key| match key {
                    Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                    Value::SimpleString(text) => Some(text.clone()),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Reads each changed key again and updates the list.
async fn refresh(
    connection: &mut MultiplexedConnection,
    set: &NodeSet,
    keys: &[String],
) -> Result<(), RedisError> {
    for key in keys {
        let Some(job_id) = key.strip_prefix(REVOKED_JOB_PREFIX) else {
            continue;
        };
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(connection)
            .await?;
        let mut revoked = set.write().unwrap_or_else(|p| p.into_inner());
        if exists {
            revoked.insert(job_id.to_owned());
        } else {
            revoked.remove(job_id);
        }
    }
    Ok(())
}

/// Loads every revocation key (`SCAN`), replacing the list.
async fn reload(connection: &mut MultiplexedConnection, set: &NodeSet) -> Result<(), RedisError> {
    let pattern = format!("{REVOKED_JOB_PREFIX}*");
    let mut cursor: u64 = 0;
    let mut found = HashSet::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(connection)
            .await?;
        found.extend(
            keys.iter()
                .filter_map(|key| key.strip_prefix(REVOKED_JOB_PREFIX))
                .map(str::to_owned),
        );
        if next == 0 {
            break;
        }
        cursor = next;
    }
    *set.write().unwrap_or_else(|p| p.into_inner()) = found;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalidation_names_keys_or_everything() {
        let keys = Value::Array(vec![Value::BulkString(b"cronium:exec-revoked:j1".to_vec())]);
        assert_eq!(
            invalidated_keys(&[keys]).unwrap(),
            ["cronium:exec-revoked:j1"]
        );
        assert_eq!(invalidated_keys(&[Value::Nil]), None);
    }
}
