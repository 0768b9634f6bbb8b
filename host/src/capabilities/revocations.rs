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

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cronium_rules::keys::REVOKED_JOB_PREFIX;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, RedisError, Value};
use tokio::sync::mpsc;

use super::valkey::connection_info;
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

/// What the watch knows, shared with the requests.
#[derive(Default)]
struct Known {
    /// Synchronised and listening: `revoked` is complete.
    live: AtomicBool,
    /// The job ids with a revocation key.
    revoked: RwLock<HashSet<String>>,
}

/// The revocation list of the region's Valkey, kept current by push.
#[derive(Clone)]
pub struct RevocationWatch {
    known: Arc<Known>,
}

impl RevocationWatch {
    /// Starts watching the Valkey of `config` (in the background, on the
    /// current Tokio runtime; reconnecting for as long as the host runs).
    pub fn start(config: &ValkeyConfig) -> Result<RevocationWatch, RedisError> {
        let info = connection_info(config)?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let known = Arc::new(Known::default());
        let watch = RevocationWatch {
            known: known.clone(),
        };
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let outcome = follow(&client, &known).await;
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
        let revoked = self.known.revoked.read().unwrap_or_else(|p| p.into_inner());
        Some(revoked.contains(job_id))
    }

    /// Whether the watch is synchronised and listening.
    pub fn is_live(&self) -> bool {
        self.known.live.load(Ordering::SeqCst)
    }
}

/// One connection's life: tracking on, full load, then invalidations
/// until the connection fails. Returns `Ok` when Valkey closed it.
async fn follow(client: &redis::Client, known: &Known) -> Result<(), RedisError> {
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
    reload(&mut connection, known).await?;
    known.live.store(true, Ordering::SeqCst);
    tracing::info!("revocation watch live");

    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = received.recv() => match push {
                None => return Ok(()),
                Some(PushInfo { kind: PushKind::Disconnection, .. }) => return Ok(()),
                Some(PushInfo { kind: PushKind::Invalidate, data }) => {
                    match invalidated_keys(&data) {
                        Some(keys) => refresh(&mut connection, known, &keys).await?,
                        // Valkey flushed its tracking table: start over.
                        None => reload(&mut connection, known).await?,
                    }
                }
                Some(_) => {}
            },
            _ = heartbeat.tick() => {
                redis::cmd("PING").query_async::<()>(&mut connection).await?;
            }
        }
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
    known: &Known,
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
        let mut revoked = known.revoked.write().unwrap_or_else(|p| p.into_inner());
        if exists {
            revoked.insert(job_id.to_owned());
        } else {
            revoked.remove(job_id);
        }
    }
    Ok(())
}

/// Loads every revocation key (`SCAN`), replacing the list.
async fn reload(connection: &mut MultiplexedConnection, known: &Known) -> Result<(), RedisError> {
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
    *known.revoked.write().unwrap_or_else(|p| p.into_inner()) = found;
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
