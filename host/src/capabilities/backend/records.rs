//! Execution records as the `backend` capability keeps them.
//!
//! A record does not change while its execution runs, so the first read
//! from the backend is kept: in Valkey under [`keys::execution`], shared
//! by every host (and by the Spin adapter), and in process by the cache's
//! near copy of immutable values ([`keys::is_immutable`]). The same record
//! names the caller's *user*, whose variables, tool credentials and
//! user-scoped cache keys a component reaches: the host resolves it here,
//! from the record, as the variables component always did, never from a
//! value a component hands over. One copy serves every endpoint group,
//! where a copy in each group's cache space would be three.

use cronium_rules::keys;
use cronium_rules::token::Claims;
use cronium_rules::wire::Execution;

use super::BackendError;
use crate::capabilities::Capabilities;

/// The execution record of `claims`' execution, and whether this read
/// reached the backend (a kept copy otherwise).
pub async fn execution(
    caps: &Capabilities,
    claims: &Claims,
) -> Result<(Execution, bool), BackendError> {
    let key = keys::execution(&claims.execution_id);
    let metrics = &caps.metrics;
    match caps.cache.get(&key).await {
        Ok(Some(text)) => {
            // A kept record that does not parse (another version wrote it)
            // is a miss, and gets overwritten.
            if let Ok(execution) = serde_json::from_str::<Execution>(&text) {
                metrics.cache_hits.inc();
                return Ok((execution, false));
            }
            metrics.cache_misses.inc();
        }
        Ok(None) => {
            metrics.cache_misses.inc();
        }
        Err(_) => {
            metrics.cache_errors.inc();
        }
    }
    let execution = caps.backend.get_execution(claims).await?;
    if let Ok(text) = serde_json::to_string(&execution) {
        // A cache that cannot be written is not an error: the next read
        // goes to the backend again.
        let _ = caps.cache.set(&key, &text, None).await;
    }
    Ok((execution, true))
}
