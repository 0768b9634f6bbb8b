//! Rate limits (`docs/api.md`, "Limits"): within any
//! minute the first `RATE_LIMIT_PER_MIN` requests of an execution pass,
//! the rest get 429 with `Retry-After`. Counted per execution for valid
//! tokens, and per client address for requests whose token fails.
//!
//! The algorithm is GCRA (the "generic cell rate algorithm"): one stored
//! number per key, the theoretical arrival time `tat`, in microseconds
//! (so that limits far above one request a millisecond stay exact). A
//! request at `now` passes when `max(tat, now) + interval - period <= now`
//! and moves `tat` on by one `interval` (`period / limit`). A flood gets
//! a burst of `limit` requests, then one per `interval`: `limit` per
//! `period` sustained; a quiet spell never buys more than the burst.
//! [`gcra`] is the rule; [`LIMIT_SCRIPT`] applies the same rule inside
//! Valkey in one round trip, on Valkey's clock, so every host of a region
//! shares the count.

use std::time::Duration;

/// A rate: `limit` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests per `period`, and the largest burst; at least 1.
    pub limit: u32,
    /// The window `limit` is counted over (a minute for [`Quota::per_minute`]).
    pub period: Duration,
}

impl Quota {
    /// `per_minute` requests a minute.
    pub fn per_minute(per_minute: u32) -> Self {
        Quota {
            limit: per_minute.max(1),
            period: Duration::from_secs(60),
        }
    }

    /// Microseconds between two requests at the sustained rate.
    pub fn interval_us(&self) -> u64 {
        (self.period.as_micros() as u64 / u64::from(self.limit)).max(1)
    }

    /// Microseconds of the period.
    pub fn period_us(&self) -> u64 {
        self.period.as_micros() as u64
    }
}

/// The outcome of one request against a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Microseconds until a request would pass; 0 when this one passed.
    pub retry_after_us: u64,
    /// The new `tat` to store (unchanged when refused).
    pub tat: u64,
}

/// Applies GCRA to a request at `now_us` given the stored `tat`.
pub fn gcra(stored_tat: Option<u64>, now_us: u64, quota: Quota) -> Decision {
    let tat = stored_tat.unwrap_or(now_us).max(now_us);
    let new_tat = tat + quota.interval_us();
    let allow_at = new_tat.saturating_sub(quota.period_us());
    if allow_at <= now_us {
        Decision {
            retry_after_us: 0,
            tat: new_tat,
        }
    } else {
        Decision {
            retry_after_us: allow_at - now_us,
            tat,
        }
    }
}

/// Seconds for `Retry-After` (at least 1).
pub fn retry_after_secs(retry_after_us: u64) -> u32 {
    retry_after_us
        .div_ceil(1_000_000)
        .clamp(1, u64::from(u32::MAX)) as u32
}

/// GCRA in Valkey, in microseconds, on Valkey's clock. With one key,
/// `KEYS[1]` is the limiter; with two or three, `KEYS[1]` is a job's
/// revocation key (checked first, so that a request's access check is one
/// round trip) and `KEYS[2]` the limiter. `ARGV[1]` interval, `ARGV[2]`
/// period. Returns -1 when revoked, else the microseconds to wait (0:
/// passed). With a third key, the reply is `{that, value of KEYS[3]}`: a
/// client that will read `KEYS[3]` next (the Spin adapter, for the
/// execution record) gets it in the same round trip.
pub const LIMIT_SCRIPT: &str = r#"
local function answer(n)
  if #KEYS == 3 then return {n, redis.call('GET', KEYS[3])} end
  return n
end
local limiter = KEYS[1]
if #KEYS >= 2 then
  if redis.call('EXISTS', KEYS[1]) == 1 then return answer(-1) end
  limiter = KEYS[2]
end
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', limiter) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if allow_at <= now then
  redis.call('SET', limiter, new_tat, 'PX', math.ceil(period / 1000))
  return answer(0)
end
return answer(allow_at - now)
"#;

/// The outcome of taking a share of a quota's budget at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Requests granted (0 to the number wanted).
    pub taken: u32,
    /// Microseconds until one request would pass; 0 when some were taken.
    pub retry_after_us: u64,
    /// The new `tat` to store.
    pub tat: u64,
}

/// GCRA for a batch: first gives back `returned` requests granted earlier
/// but never made (never moving `tat` before `now`), then takes as many of
/// `wanted` as pass now, each as [`gcra`] would one after the other.
pub fn gcra_take(
    stored_tat: Option<u64>,
    now_us: u64,
    quota: Quota,
    returned: u32,
    wanted: u32,
) -> Grant {
    let interval = quota.interval_us();
    let stored = stored_tat
        .unwrap_or(now_us)
        .saturating_sub(u64::from(returned) * interval);
    let tat = stored.max(now_us);
    // Requests k pass while tat + k * interval - period <= now.
    let room = (now_us + quota.period_us()).saturating_sub(tat) / interval;
    let taken = room.min(u64::from(wanted)) as u32;
    if taken > 0 {
        Grant {
            taken,
            retry_after_us: 0,
            tat: tat + u64::from(taken) * interval,
        }
    } else {
        Grant {
            taken: 0,
            retry_after_us: (tat + interval - quota.period_us())
                .saturating_sub(now_us)
                .max(1),
            tat,
        }
    }
}

/// How many requests one host takes from an execution's shared budget at
/// a time, at most: a fiftieth of the quota (1 for limits up to 99 a
/// minute, so low limits stay exact), never more than 64. Every host may
/// thus let through at most this many requests beyond the shared count.
pub fn max_share(quota: Quota) -> u32 {
    (quota.limit / 50).clamp(1, 64)
}

/// [`gcra_take`] in Valkey, on Valkey's clock. `KEYS[1]` the limiter;
/// `ARGV[1]` interval, `ARGV[2]` period (microseconds), `ARGV[3]` requests
/// given back, `ARGV[4]` requests wanted. Returns the number taken (> 0),
/// or minus the microseconds to wait when none could be.
pub const TAKE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local returned = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local stored = tonumber(redis.call('GET', KEYS[1]) or now) - returned * interval
local tat = stored
if tat < now then tat = now end
local room = math.floor((now + period - tat) / interval)
local taken = math.min(room, wanted)
if taken > 0 then
  redis.call('SET', KEYS[1], tat + taken * interval, 'PX', math.ceil(period / 1000))
  return taken
end
if returned > 0 then
  redis.call('SET', KEYS[1], tat, 'PX', math.ceil(period / 1000))
end
local wait = tat + interval - period - now
if wait < 1 then wait = 1 end
return -wait
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_a_share_grants_what_single_requests_would() {
        let quota = Quota::per_minute(10);
        let one_by_one = {
            let mut tat = None;
            burst(&mut tat, 1_000_000_000, 4, quota)
        };
        let grant = gcra_take(None, 1_000_000_000, quota, 0, 4);
        assert_eq!((grant.taken, one_by_one), (4, 4));
        let rest = gcra_take(Some(grant.tat), 1_000_000_000, quota, 0, 50);
        assert_eq!(rest.taken, 6, "the burst is 10 in all");
        let none = gcra_take(Some(rest.tat), 1_000_000_000, quota, 0, 5);
        assert_eq!((none.taken, none.retry_after_us), (0, 6_000_000));
    }

    #[test]
    fn requests_given_back_can_be_taken_again_but_never_from_the_past() {
        let quota = Quota::per_minute(10);
        let all = gcra_take(None, 0, quota, 0, 10);
        assert_eq!(all.taken, 10);
        let again = gcra_take(Some(all.tat), 0, quota, 3, 5);
        assert_eq!(again.taken, 3, "three came back");
        // Giving back more than was ever taken buys nothing beyond the burst.
        let idle = gcra_take(None, 0, quota, 100, 50);
        assert_eq!(idle.taken, 10);
    }

    #[test]
    fn a_share_is_a_fiftieth_of_the_quota_within_one_and_sixty_four() {
        assert_eq!(max_share(Quota::per_minute(60)), 1);
        assert_eq!(max_share(Quota::per_minute(1000)), 20);
        assert_eq!(max_share(Quota::per_minute(1_000_000)), 64);
    }

    /// Runs `n` requests at `now` through the rule.
    fn burst(tat: &mut Option<u64>, now: u64, n: u32, quota: Quota) -> u32 {
        let mut passed = 0;
        for _ in 0..n {
            let d = gcra(*tat, now, quota);
            if d.retry_after_us == 0 {
                passed += 1;
                *tat = Some(d.tat);
            }
        }
        passed
    }

    #[test]
    fn the_first_limit_requests_of_a_minute_pass_and_the_rest_wait() {
        let quota = Quota::per_minute(10);
        let mut tat = None;
        assert_eq!(burst(&mut tat, 1_000_000_000, 25, quota), 10);
        let refused = gcra(tat, 1_000_000_000, quota);
        assert_eq!(
            refused.retry_after_us, 6_000_000,
            "one slot frees every 6 s"
        );
        assert_eq!(retry_after_secs(refused.retry_after_us), 6);
    }

    #[test]
    fn a_steady_flood_gets_the_burst_then_the_sustained_rate() {
        let quota = Quota::per_minute(10);
        let mut tat = None;
        let mut passed = 0;
        for now in (0..180_000_000u64).step_by(100_000) {
            let d = gcra(tat, now, quota);
            if d.retry_after_us == 0 {
                tat = Some(d.tat);
                passed += 1;
            }
        }
        // A burst of 10, then one every 6 s for three minutes.
        assert_eq!(passed, 10 + 180 / 6 - 1);
    }

    #[test]
    fn limits_far_above_one_a_millisecond_stay_exact() {
        let quota = Quota::per_minute(1_000_000_000);
        assert_eq!(
            quota.interval_us(),
            1,
            "60e6 us / 1e9 rounds up to the 1 us floor"
        );
        let mut tat = None;
        assert_eq!(burst(&mut tat, 0, 1000, quota), 1000);
    }

    #[test]
    fn an_idle_key_gets_its_whole_burst_back() {
        let quota = Quota::per_minute(5);
        let mut tat = None;
        assert_eq!(burst(&mut tat, 0, 5, quota), 5);
        assert_eq!(burst(&mut tat, 60_000_000, 10, quota), 5);
    }
}
