//! Leases: exclusive ownership of a key, with an owner token and a fence,
//! handed out first come, first served.
//!
//! A lease is a cache entry `lease(key) = owner` written with `NX` and a
//! TTL, so a holder that dies blocks the key for at most the TTL. Release
//! deletes the entry only if it still names the same owner (compare and
//! delete), so a holder whose lease expired cannot release its successor's.
//!
//! Callers that wait for a lease stand in a line, one per key: a free lease
//! goes to the caller at the front. A caller that only tries once (a
//! conditional write, which would rather answer 412 than wait its turn)
//! gets the lease only when it is free and nobody waits for it, so it never
//! jumps the line.
//! A waiter keeps its place by asking again (at least every [`MAX_POLL`]);
//! one that has not asked for [`WAITER_TTL`] is dropped when it reaches the
//! front, so a waiter that died holds the line up for no longer than that.
//! Waiting is still polling (a blocking pop would stall the host's shared
//! Valkey connection), but not a race: asking more often does not get a
//! waiter served sooner, so none starves however many there are.
//!
//! [`ACQUIRE_SCRIPT`] keeps the line in Valkey, for the host and the Spin
//! cache adapter alike; [`Line`] is the same line in process, for the
//! host's in-process cache. [`Wait`] paces a waiter's attempts and decides
//! when it gives up.

pub mod protocol;

use std::collections::VecDeque;
use std::time::Duration;

/// One attempt to take the lease, in turn.
///
/// `KEYS[1]` lease, `KEYS[2]` fence counter, `KEYS[3]` the line (a sorted
/// set of owners by ticket), `KEYS[4]` the waiters' deadlines (a hash of
/// owner to milliseconds, Valkey's clock), `KEYS[5]` ticket counter;
/// `ARGV[1]` owner token, `ARGV[2]` lease TTL in milliseconds, `ARGV[3]`
/// counters' TTL in milliseconds, `ARGV[4]` [`WAITER_TTL`] in
/// milliseconds, `ARGV[5]` `1` to wait in line, `0` for one attempt.
///
/// Returns the new fence (> 0) when taken, or `-ahead` (< 0): how many
/// releases of the lease come before the caller's turn (its holder's, if
/// any, and one for each waiter ahead). Mirrors [`Line::attempt`].
pub const ACQUIRE_SCRIPT: &str = r#"
local owner = ARGV[1]
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local waiting = redis.call('ZCARD', KEYS[3])
local place = false
if waiting > 0 then
  -- Waiters that stopped asking leave from the front.
  local now = now_ms()
  while waiting > 0 do
    local front = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
    if not front or front == owner or tonumber(redis.call('HGET', KEYS[4], front) or '0') > now then
      break
    end
    redis.call('ZREM', KEYS[3], front)
    redis.call('HDEL', KEYS[4], front)
    waiting = waiting - 1
  end
  place = redis.call('ZRANK', KEYS[3], owner)
end
local first = place == 0 or (not place and waiting == 0)
if first and redis.call('SET', KEYS[1], owner, 'NX', 'PX', ARGV[2]) then
  if place then
    redis.call('ZREM', KEYS[3], owner)
    redis.call('HDEL', KEYS[4], owner)
  end
  local fence = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return fence
end
local held = redis.call('EXISTS', KEYS[1])
if not place then
  if ARGV[5] ~= '1' then
    return -(waiting + held)
  end
  local ticket = redis.call('INCR', KEYS[5])
  redis.call('PEXPIRE', KEYS[5], ARGV[3])
  redis.call('ZADD', KEYS[3], ticket, owner)
  place = waiting
end
redis.call('HSET', KEYS[4], owner, now_ms() + tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return -(place + held)
"#;

/// Releases the lease if `KEYS[1]` still holds `ARGV[1]`. Returns 1 when
/// released, 0 when the lease had expired or passed to another owner.
pub const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Leaves the line: `KEYS[1]` the line, `KEYS[2]` the waiters' deadlines;
/// `ARGV[1]` owner token. For a waiter that gives up. Returns 0.
pub const LEAVE_SCRIPT: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 0
"#;

/// How long the fence and ticket counters of a key outlive their last use.
/// Fences only need to order holders whose leases could overlap, which is
/// bounded by the lease TTL; a day is far beyond that.
pub const FENCE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest lease a caller may ask for: a holder that dies blocks the
/// key for no longer than this.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(30);

/// The most patience a caller may ask for (see [`Wait`]): a line that has
/// not moved for longer than a lease can live is not going to.
pub const MAX_WAIT: Duration = MAX_LEASE_TTL;

/// How long a waiter keeps its place in line without asking again.
pub const WAITER_TTL: Duration = Duration::from_secs(2);

/// The shortest pause between a waiter's attempts.
pub const MIN_POLL: Duration = Duration::from_millis(1);
/// The longest pause between a waiter's attempts: well within
/// [`WAITER_TTL`], so a live waiter keeps its place.
pub const MAX_POLL: Duration = Duration::from_millis(100);

/// Clamps a caller's requested lease TTL and patience to the limits above.
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

/// Whose turn it is, after one attempt on a [`Line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The caller's: it takes the free lease (and has left the line).
    Now,
    /// Not yet: the lease must be released this many times before it is
    /// the caller's turn (by its holder, if any, and by each waiter ahead).
    Later {
        /// Releases to come before the caller's turn (at least 1).
        ahead: u64,
    },
}

/// The line of callers waiting for one key's lease, kept in process: what
/// [`ACQUIRE_SCRIPT`] keeps in Valkey, with the same rules.
#[derive(Debug, Clone, Default)]
pub struct Line {
    /// Owners in order of arrival, each with the time (milliseconds on the
    /// caller's clock) by which it must ask again to keep its place.
    waiters: VecDeque<(String, u64)>,
}

impl Line {
    /// `owner` asks for the lease at `now_ms`; `lease_free` says whether
    /// anyone holds it. With `joins`, an owner not yet in line joins its
    /// back; without, it only tries once. [`Turn::Now`] means the caller
    /// takes the lease now.
    pub fn attempt(&mut self, owner: &str, joins: bool, lease_free: bool, now_ms: u64) -> Turn {
        while let Some((front, deadline)) = self.waiters.front() {
            if front == owner || *deadline > now_ms {
                break;
            }
            self.waiters.pop_front();
        }
        let place = self.waiters.iter().position(|(o, _)| o == owner);
        let first = place == Some(0) || (place.is_none() && self.waiters.is_empty());
        if first && lease_free {
            if place.is_some() {
                self.waiters.pop_front();
            }
            return Turn::Now;
        }
        let held = u64::from(!lease_free);
        let place = match place {
            Some(place) => place,
            None if !joins => {
                return Turn::Later {
                    ahead: self.waiters.len() as u64 + held,
                };
            }
            None => {
                self.waiters.push_back((owner.to_owned(), 0));
                self.waiters.len() - 1
            }
        };
        self.waiters[place].1 = now_ms + WAITER_TTL.as_millis() as u64;
        Turn::Later {
            ahead: place as u64 + held,
        }
    }

    /// `owner` gives up its place.
    pub fn leave(&mut self, owner: &str) {
        self.waiters.retain(|(o, _)| o != owner);
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }
}

/// One caller's wait for a lease: how long to pause between attempts, and
/// when to give up.
///
/// A caller gives up only when the line ahead of it has not moved for its
/// whole patience, never merely because it has waited long: a line that
/// moves is served, however long it is. It asks again soon when next in
/// line or the one after, and less often the further back it stands, once
/// it has seen how fast the line moves (its pauses aim at half its
/// expected wait until it is next but one). A host may also wake its
/// waiters early when it releases the lease itself (see the host's cache).
#[derive(Debug, Clone)]
pub struct Wait {
    patience: Duration,
    /// The releases ahead at the last attempt.
    ahead: u64,
    /// When the line last moved, from the start of the wait.
    moved_at: Duration,
    /// The first attempt's releases ahead and time, to learn the pace.
    first: Option<(u64, Duration)>,
}

impl Wait {
    /// A wait that gives up after the line stood still for `patience`
    /// (zero: one attempt, without joining the line).
    pub fn new(patience: Duration) -> Wait {
        Wait {
            patience,
            ahead: u64::MAX,
            moved_at: Duration::ZERO,
            first: None,
        }
    }

    /// Whether the caller stands in line at all, or only tries once.
    pub fn joins_line(&self) -> bool {
        !self.patience.is_zero()
    }

    /// After an attempt found `ahead` releases to come before the caller's
    /// turn, `elapsed` after the wait began: the pause before the next
    /// attempt, or `None` to give up. `jitter` (in `[0, 1)`) spreads the
    /// pauses by ±25 %.
    pub fn next_pause(&mut self, ahead: u64, elapsed: Duration, jitter: f64) -> Option<Duration> {
        if ahead < self.ahead {
            self.moved_at = elapsed;
        }
        self.ahead = ahead;
        let (first_ahead, first_at) = *self.first.get_or_insert((ahead, elapsed));
        let still = elapsed.saturating_sub(self.moved_at);
        if still >= self.patience {
            return None;
        }
        let turns_seen = first_ahead.saturating_sub(ahead);
        let pause = if ahead > 2 && turns_seen > 0 {
            // Half the expected wait until it is next but one, at the pace
            // seen so far: a waiter must not sleep through its turn, or the
            // lease idles (and the pace everyone measures slows down).
            let per_turn =
                elapsed.saturating_sub(first_at) / turns_seen.min(u32::MAX as u64) as u32;
            per_turn.saturating_mul((ahead - 2).min(u32::MAX as u64) as u32) / 2
        } else {
            // Next in line or the one after, or the pace is unknown yet:
            // ask again soon, less often the longer the line stands still.
            still / 8
        };
        let pause = pause
            .clamp(MIN_POLL, MAX_POLL)
            .mul_f64(0.75 + jitter.clamp(0.0, 1.0) / 2.0);
        Some(pause.min(self.patience - still))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE_HELD: bool = false;
    const LEASE_FREE: bool = true;

    #[test]
    fn the_lease_goes_to_waiters_first_come_first_served() {
        let mut line = Line::default();
        for (owner, ahead) in [("a", 1), ("b", 2), ("c", 3)] {
            assert_eq!(
                line.attempt(owner, true, LEASE_HELD, 0),
                Turn::Later { ahead }
            );
        }
        // The lease is free: only the front may take it, however often
        // the others ask (each must wait for the releases of those ahead).
        assert_eq!(
            line.attempt("c", true, LEASE_FREE, 1),
            Turn::Later { ahead: 2 }
        );
        assert_eq!(
            line.attempt("b", true, LEASE_FREE, 1),
            Turn::Later { ahead: 1 }
        );
        assert_eq!(line.attempt("a", true, LEASE_FREE, 1), Turn::Now);
        assert_eq!(
            line.attempt("c", true, LEASE_HELD, 2),
            Turn::Later { ahead: 2 }
        );
        assert_eq!(line.attempt("b", true, LEASE_FREE, 3), Turn::Now);
        assert_eq!(line.attempt("c", true, LEASE_FREE, 4), Turn::Now);
        assert!(line.is_empty());
    }

    #[test]
    fn asking_again_keeps_ones_place() {
        let mut line = Line::default();
        line.attempt("a", true, LEASE_HELD, 0);
        line.attempt("b", true, LEASE_HELD, 0);
        for now in 1..5 {
            assert_eq!(
                line.attempt("b", true, LEASE_HELD, now),
                Turn::Later { ahead: 2 }
            );
        }
    }

    #[test]
    fn a_single_attempt_takes_a_free_lease_nobody_waits_for() {
        let mut line = Line::default();
        assert_eq!(line.attempt("once", false, LEASE_FREE, 0), Turn::Now);
        assert_eq!(
            line.attempt("once", false, LEASE_HELD, 0),
            Turn::Later { ahead: 1 }
        );
        assert!(line.is_empty(), "a single attempt never joins the line");
    }

    #[test]
    fn a_single_attempt_never_jumps_the_line() {
        let mut line = Line::default();
        line.attempt("waiter", true, LEASE_HELD, 0);
        // The holder released; the waiter has not asked again yet.
        assert_eq!(
            line.attempt("once", false, LEASE_FREE, 1),
            Turn::Later { ahead: 1 }
        );
        assert_eq!(line.attempt("waiter", true, LEASE_FREE, 2), Turn::Now);
    }

    #[test]
    fn a_waiter_that_stops_asking_is_dropped_when_it_reaches_the_front() {
        let ttl = WAITER_TTL.as_millis() as u64;
        let mut line = Line::default();
        line.attempt("dead", true, LEASE_HELD, 0);
        line.attempt("alive", true, LEASE_HELD, 0);
        assert_eq!(
            line.attempt("alive", true, LEASE_FREE, ttl - 1),
            Turn::Later { ahead: 1 },
            "within its TTL the silent waiter keeps its place"
        );
        assert_eq!(line.attempt("alive", true, LEASE_FREE, ttl), Turn::Now);
        // Back after being dropped: it joins again, at the back.
        line.attempt("other", true, LEASE_HELD, ttl);
        assert_eq!(
            line.attempt("dead", true, LEASE_HELD, ttl),
            Turn::Later { ahead: 2 }
        );
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_the_line() {
        let mut line = Line::default();
        line.attempt("quitter", true, LEASE_HELD, 0);
        line.attempt("b", true, LEASE_HELD, 0);
        line.leave("quitter");
        assert_eq!(line.attempt("b", true, LEASE_FREE, 1), Turn::Now);
    }

    #[test]
    fn zero_patience_is_one_attempt_outside_the_line() {
        let mut wait = Wait::new(Duration::ZERO);
        assert!(!wait.joins_line());
        assert_eq!(wait.next_pause(1, Duration::ZERO, 0.5), None);
    }

    #[test]
    fn a_waiter_gives_up_only_when_the_line_stood_still_for_its_patience() {
        let patience = Duration::from_millis(500);
        let mut wait = Wait::new(patience);
        assert!(wait.joins_line());
        // The line moves every 400 ms for ten seconds: it never gives up.
        let mut elapsed = Duration::ZERO;
        for ahead in (1..=25).rev() {
            elapsed += Duration::from_millis(400);
            assert!(wait.next_pause(ahead, elapsed, 0.5).is_some(), "{ahead}");
        }
        // Then it stands still.
        let stuck = elapsed;
        let mut pauses = 0;
        while let Some(pause) = wait.next_pause(1, elapsed, 0.5) {
            elapsed += pause;
            pauses += 1;
            assert!(pauses < 10_000);
        }
        assert!(pauses > 1);
        assert!(elapsed - stuck >= patience, "{:?}", elapsed - stuck);
        assert!(
            elapsed - stuck <= patience + MAX_POLL,
            "the last attempt comes at the end of the patience: {:?}",
            elapsed - stuck
        );
    }

    #[test]
    fn pauses_stay_short_enough_to_keep_ones_place() {
        assert!(MAX_POLL.mul_f64(1.25) * 4 < WAITER_TTL);
        let mut wait = Wait::new(MAX_WAIT);
        let mut elapsed = Duration::ZERO;
        for (ahead, jitter) in [(50, 0.0), (49, 0.99), (49, 0.5), (1, 0.99)] {
            let pause = wait.next_pause(ahead, elapsed, jitter).unwrap();
            assert!(pause >= MIN_POLL.mul_f64(0.75), "{pause:?}");
            assert!(pause <= MAX_POLL.mul_f64(1.25), "{pause:?}");
            elapsed += Duration::from_secs(3);
        }
    }

    #[test]
    fn once_the_pace_is_known_a_waiter_far_back_asks_less_often_than_the_next() {
        let turn = Duration::from_millis(4);
        let mut far = Wait::new(MAX_WAIT);
        far.next_pause(21, Duration::ZERO, 0.5);
        let far_pause = far.next_pause(20, turn, 0.5).unwrap();
        let mut next = Wait::new(MAX_WAIT);
        next.next_pause(2, Duration::ZERO, 0.5);
        let next_pause = next.next_pause(1, turn, 0.5).unwrap();
        assert!(far_pause > next_pause * 10, "{far_pause:?} {next_pause:?}");
        // Half of the 18 turns of 4 ms until it is next but one.
        assert_eq!(far_pause, Duration::from_millis(36));
        let mut after_next = Wait::new(MAX_WAIT);
        after_next.next_pause(3, Duration::ZERO, 0.5);
        assert_eq!(
            after_next.next_pause(2, turn, 0.5),
            Some(MIN_POLL),
            "the one after the next does not sleep through the next turn"
        );
    }

    #[test]
    fn requested_ttl_and_patience_are_clamped() {
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
