//! The rate limit without a round trip per request: this host takes a
//! share of an execution's budget from Valkey at once
//! (`cronium_rules::rate_limit::TAKE_SCRIPT`) and spends it locally.
//!
//! The budget stays shared by every host: a request is only ever let
//! through on budget that Valkey already counted as spent. A share lives
//! [`SHARE_LIFE`]; what is left of it then goes back to Valkey with the
//! next take, so an idle execution does not lose budget to a share it
//! never used. The overshoot this allows is budget counted in one minute
//! and spent in the next second: at most one share per host
//! ([`rate_limit::max_share`], a fiftieth of the limit, 1 for limits under
//! 100 a minute, at most 64).
//!
//! A refusal is remembered until its `Retry-After` passes, so a flood
//! past the limit is refused here without asking Valkey each time.
//!
//! Shares grow only while they are used up within their life (1, 2, 4, ...
//! up to the maximum), so an execution making one request now and then
//! takes one request's budget at a time, and concurrent requests of one
//! execution never hold more than one share between them: while a share
//! is being taken, the others wait for it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cronium_rules::rate_limit::{self, Quota};

use tokio::sync::watch;

use crate::capabilities::cache::{Cache, ValkeyError};

/// How long a share may be spent before what is left goes back.
pub const SHARE_LIFE: Duration = Duration::from_secs(1);

/// One execution's share on this host.
#[derive(Debug)]
struct Share {
    /// Requests still covered.
    remaining: u32,
    /// The size of the last take.
    size: u32,
    taken_at: Instant,
    /// A take for this execution is in flight.
    taking: bool,
    /// Valkey refused the last take: no budget comes free before this.
    refused_until: Option<Instant>,
    /// Counts finished takes, for the requests waiting on one.
    takes: watch::Sender<u64>,
}

/// Every execution's share on this host.
pub struct RateShares {
    shares: Mutex<HashMap<String, Share>>,
    /// Executions with a share at most (`CRONIUM_RATE_EXECUTIONS`); past
    /// this, expired shares are dropped.
    max_executions: usize,
}

impl RateShares {
    /// No shares yet; at most `max_executions` executions' shares kept.
    pub fn new(max_executions: usize) -> Self {
        RateShares {
            shares: Mutex::new(HashMap::new()),
            max_executions,
        }
    }
}

/// Ends a take, finished or abandoned half way (its future dropped): the
/// share is no longer being taken, and its waiters look again.
struct TakeGuard<'a> {
    shares: &'a RateShares,
    key: &'a str,
}

impl Drop for TakeGuard<'_> {
    fn drop(&mut self) {
        let mut shares = self.shares.lock();
        if let Some(share) = shares.get_mut(self.key) {
            share.taking = false;
            share.takes.send_modify(|n| *n += 1);
        }
    }
}

/// What to ask Valkey for.
struct Ask {
    returned: u32,
    wanted: u32,
}

/// What one look at the local share decided.
enum Step {
    /// Answered locally: microseconds to wait (0: passes).
    Done(u64),
    /// Another request is taking a share: wait for it, then look again.
    Wait(watch::Receiver<u64>),
    /// This request takes the share.
    Take(Ask),
}

impl RateShares {
    /// Counts one request of `limiter_key` against `quota`: microseconds to
    /// wait (0: it passes), asking Valkey only when the local share is
    /// spent or stale.
    pub async fn spend(
        &self,
        limiter_key: &str,
        quota: Quota,
        cache: &Cache,
    ) -> Result<u64, ValkeyError> {
        let ask = loop {
            match self.look(limiter_key, quota) {
                Step::Done(wait) => return Ok(wait),
                Step::Take(ask) => break ask,
                Step::Wait(mut taken) => {
                    // The taker's Valkey call ends within its timeout; a
                    // dropped sender (the entry evicted) also wakes us.
                    let _ = taken.changed().await;
                }
            }
        };
        // The guard ends the take however this future ends: finished, or
        // dropped half way (its client hung up), so that the share is never
        // left marked as being taken.
        let guard = TakeGuard {
            shares: self,
            key: limiter_key,
        };
        let outcome = cache
            .take_share(limiter_key, quota, ask.returned, ask.wanted)
            .await;
        if let Some(share) = self.lock().get_mut(limiter_key) {
            share.taken_at = Instant::now();
            share.size = ask.wanted;
            share.remaining = match &outcome {
                Ok(grant) if grant.taken > 0 => grant.taken - 1,
                _ => 0,
            };
            share.refused_until = match &outcome {
                Ok(grant) if grant.taken == 0 => {
                    Some(Instant::now() + Duration::from_micros(grant.retry_after_us))
                }
                _ => None,
            };
        }
        drop(guard);
        outcome.map(|grant| grant.retry_after_us)
    }

    /// Spends from the local share if it can, else says who asks Valkey.
    fn look(&self, limiter_key: &str, quota: Quota) -> Step {
        let mut shares = self.lock();
        let now = Instant::now();
        let Some(share) = shares.get_mut(limiter_key) else {
            if shares.len() >= self.max_executions {
                shares.retain(|_, s| s.taking || now - s.taken_at < SHARE_LIFE);
            }
            shares.insert(
                limiter_key.to_owned(),
                Share {
                    remaining: 0,
                    size: 1,
                    taken_at: now,
                    taking: true,
                    refused_until: None,
                    takes: watch::Sender::new(0),
                },
            );
            return Step::Take(Ask {
                returned: 0,
                wanted: 1,
            });
        };
        if let Some(until) = share.refused_until.filter(|until| *until > now) {
            // Refused here until then, as Valkey would.
            return Step::Done((until - now).as_micros().max(1) as u64);
        }
        let stale = now - share.taken_at >= SHARE_LIFE;
        if share.remaining > 0 && !stale {
            share.remaining -= 1;
            return Step::Done(0);
        }
        if share.taking {
            return Step::Wait(share.takes.subscribe());
        }
        let ask = Ask {
            returned: if stale { share.remaining } else { 0 },
            // Used up within its life: the execution is busy, take more.
            wanted: if stale {
                1
            } else {
                (share.size * 2).min(rate_limit::max_share(quota))
            },
        };
        share.remaining = 0;
        share.taking = true;
        Step::Take(ask)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Share>> {
        self.shares.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::cache::valkey::ValkeyCache;
    use crate::config::ValkeyConfig;

    #[tokio::test]
    async fn a_take_abandoned_half_way_does_not_hold_up_the_next_request() {
        // A "Valkey" that accepts connections and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = ValkeyConfig {
            url: format!("redis://{}", silent.local_addr().unwrap()),
            password: None,
            db: None,
        };
        let ttl = Duration::from_secs(60);
        let cache = Cache::valkey(ValkeyCache::new(&config, ttl).unwrap(), ttl, 16);
        let shares = RateShares::new(100);
        let quota = Quota::per_minute(1000);
        let abandoned = shares.spend("cronium:rl:exec:e", quota, &cache);
        // Its client hangs up while it waits for Valkey.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), abandoned)
                .await
                .is_err()
        );
        assert!(
            matches!(shares.look("cronium:rl:exec:e", quota), Step::Take(_)),
            "the next request takes a share itself rather than wait for one that never comes"
        );
    }
}
