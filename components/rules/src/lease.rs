//! Leases: exclusive ownership of a key, with an owner token and a fence.
//!
//! A lease is a cache entry `lease(key) = owner` written with `NX` and a
//! TTL, so a holder that dies blocks the key for at most the TTL. Release
//! deletes the entry only if it still names the same owner (compare and
//! delete), so a holder whose lease expired cannot release its successor's.
//! The scripts below are the only implementation used against Valkey, by
//! the host and by the Spin cache adapter alike.

use std::time::Duration;

/// Takes the lease. `KEYS[1]` lease key, `KEYS[2]` fence counter;
/// `ARGV[1]` owner token, `ARGV[2]` TTL in milliseconds, `ARGV[3]` fence
/// counter TTL in milliseconds.
///
/// Returns the new fence (> 0) when taken, or `-pttl` (<= 0) of the
/// current holder's lease when not, so that a waiter need not sleep longer
/// than the lease can live.
pub const ACQUIRE_SCRIPT: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return fence
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 then pttl = 0 end
return -pttl
"#;

/// Releases the lease if `KEYS[1]` still holds `ARGV[1]`. Returns 1 when
/// released, 0 when the lease had expired or passed to another owner.
pub const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// How long the fence counter of a key outlives its last acquisition.
/// Fences only need to order holders whose leases could overlap, which is
/// bounded by the lease TTL; a day is far beyond that.
pub const FENCE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest lease a caller may ask for: a holder that dies blocks the
/// key for no longer than this.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(30);

/// The longest a caller may wait for a lease.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The first backoff step and the cap of the exponential backoff.
const BACKOFF_BASE: Duration = Duration::from_millis(2);
const BACKOFF_CAP: Duration = Duration::from_millis(100);

/// The pause before attempt `attempt` (0-based) to take a lease:
/// exponential from 2 ms to a 100 ms cap with "full jitter" (a uniform
/// draw below the step, `jitter` in `[0, 1)`), never longer than the
/// current holder's remaining TTL (`holder_ttl`) plus one millisecond.
pub fn backoff(attempt: u32, jitter: f64, holder_ttl: Option<Duration>) -> Duration {
    let step = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    let jitter = jitter.clamp(0.0, 1.0);
    // At least 1 ms so that a zero draw does not spin.
    let delay = step.mul_f64(jitter).max(Duration::from_millis(1));
    match holder_ttl {
        Some(ttl) => delay.min(ttl + Duration::from_millis(1)),
        None => delay,
    }
}

/// Clamps a caller's requested lease TTL and wait to the limits above.
pub fn clamp_request(ttl: Duration, wait: Duration) -> (Duration, Duration) {
    (
        ttl.clamp(Duration::from_millis(1), MAX_LEASE_TTL),
        wait.min(MAX_WAIT),
    )
}

/// A fresh owner token: 128 random bits, hex encoded. The caller supplies
/// the randomness so that this crate stays free of I/O.
pub fn owner_token(random: u128) -> String {
    format!("{random:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_stays_under_the_cap() {
        let near_one = 0.999_999;
        assert!(backoff(0, near_one, None) <= Duration::from_millis(2));
        assert!(backoff(3, near_one, None) > backoff(1, near_one, None));
        for attempt in 0..64 {
            assert!(backoff(attempt, near_one, None) <= BACKOFF_CAP);
        }
    }

    #[test]
    fn backoff_never_sleeps_past_the_holders_lease() {
        let d = backoff(10, 0.9, Some(Duration::from_millis(3)));
        assert!(d <= Duration::from_millis(4), "{d:?}");
    }

    #[test]
    fn backoff_is_never_zero() {
        assert!(backoff(0, 0.0, None) >= Duration::from_millis(1));
    }

    #[test]
    fn requested_ttl_and_wait_are_clamped() {
        let (ttl, wait) = clamp_request(Duration::from_secs(3600), Duration::from_secs(3600));
        assert_eq!(ttl, MAX_LEASE_TTL);
        assert_eq!(wait, MAX_WAIT);
    }

    #[test]
    fn owner_tokens_are_fixed_width_hex() {
        assert_eq!(owner_token(1).len(), 32);
        assert_eq!(owner_token(u128::MAX), "f".repeat(32));
    }
}
