//! Retries with exponential backoff, and sleeping on the WASI clock.
//!
//! The host stops a tool call after its deadline (`CRONIUM_TOOL_TIMEOUT`,
//! 30 s by default), so retries also stop once their time budget is spent:
//! better a `failed` error the tool words itself than a timed-out call.

use std::time::Duration;
use wasi::clocks::monotonic_clock;

/// How often and how patiently to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// Retries after the first attempt (so `1 + retries` attempts at most).
    pub retries: u32,
    /// The pause before the first retry; each further pause doubles.
    pub first_delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
    /// No retry starts after this much time since the first attempt.
    pub budget: Duration,
}

impl Backoff {
    /// `retries` retries after 200 ms, 400 ms, 800 ms, ... (at most 2 s
    /// each), within 20 s.
    pub fn new(retries: u32) -> Self {
        Self {
            retries,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            budget: Duration::from_secs(20),
        }
    }

    /// The pause before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// What one attempt asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    /// Stop here with this outcome.
    Done(T),
    /// Try again if the backoff allows; else this is the outcome.
    Retry(T),
}

/// Runs `attempt` (given the attempt number, from 1) until it answers
/// [`Step::Done`] or the retries or the time budget run out, pausing as
/// `backoff` says between attempts. Returns the last outcome and the number
/// of attempts made.
pub fn retry<T>(backoff: &Backoff, mut attempt: impl FnMut(u32) -> Step<T>) -> (T, u32) {
    let started = monotonic_clock::now();
    let mut number = 1;
    loop {
        let outcome = match attempt(number) {
            Step::Done(outcome) => return (outcome, number),
            Step::Retry(outcome) => outcome,
        };
        if number > backoff.retries {
            return (outcome, number);
        }
        let delay = backoff.delay(number);
        let elapsed = Duration::from_nanos(monotonic_clock::now().saturating_sub(started));
        if elapsed + delay > backoff.budget {
            return (outcome, number);
        }
        sleep(delay);
        number += 1;
    }
}

/// Blocks for `duration` on the WASI monotonic clock.
pub fn sleep(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    monotonic_clock::subscribe_duration(nanos).block();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let backoff = Backoff::new(5);
        let delays: Vec<u64> = (1..=6)
            .map(|n| backoff.delay(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff.delay(40), Duration::from_secs(2));
    }
}
