//! Waiting for a lease in Valkey as machines ([`crate::protocol`]):
//! [`Acquire`] attempts ([`crate::valkey::acquire`]), pauses as [`Wait`]
//! says between attempts, and gives up (leaving the line) when the line
//! stood still for the caller's patience; [`AwaitRelease`] waits for the
//! lease to be free, without taking it.

use std::time::Duration;

use super::{Wait, clamp_request};
use crate::keys;
use crate::protocol::{Machine, Now, Step, ValkeyError, ValkeyReply, ValkeyRequest};
use crate::valkey::{self as commands, AcquireAnswer};

/// Takes the lease on `key` for `owner`, waiting in line up to the
/// caller's patience. The outcome: the fence when taken, none when the
/// caller gave up. A waiter that gives up, or meets an error, leaves the
/// line first (else it would hold it up until its place expires).
#[derive(Debug, Clone)]
pub struct Acquire {
    key: String,
    owner: String,
    ttl: Duration,
    wait: Wait,
    state: AcquireState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AcquireState {
    Attempt,
    Attempted,
    /// Leaving the line; then done with this outcome.
    Leaving(Result<Option<u64>, ValkeyError>),
    Done,
}

impl Acquire {
    /// `ttl` and `patience` as the caller asked; they are clamped to the
    /// rules' limits ([`clamp_request`]).
    pub fn new(key: &str, owner: &str, ttl: Duration, patience: Duration) -> Self {
        let (ttl, patience) = clamp_request(ttl, patience);
        Acquire {
            key: key.to_owned(),
            owner: owner.to_owned(),
            ttl,
            wait: Wait::new(patience),
            state: AcquireState::Attempt,
        }
    }

    fn leave_then(
        &mut self,
        outcome: Result<Option<u64>, ValkeyError>,
    ) -> Step<ValkeyRequest, Result<Option<u64>, ValkeyError>> {
        if !self.wait.joins_line() {
            self.state = AcquireState::Done;
            return Step::Done(outcome);
        }
        self.state = AcquireState::Leaving(outcome);
        Step::Send(ValkeyRequest::Script(commands::leave(
            &self.key,
            &self.owner,
        )))
    }
}

impl Machine for Acquire {
    type Request = ValkeyRequest;
    type Reply = ValkeyReply;
    type Output = Result<Option<u64>, ValkeyError>;

    fn next(&mut self, reply: Option<ValkeyReply>, now: Now) -> Step<ValkeyRequest, Self::Output> {
        match std::mem::replace(&mut self.state, AcquireState::Done) {
            AcquireState::Attempt => {
                self.state = AcquireState::Attempted;
                Step::Send(ValkeyRequest::Script(commands::acquire(
                    &self.key,
                    &self.owner,
                    self.ttl,
                    self.wait.joins_line(),
                )))
            }
            AcquireState::Attempted => {
                let reply = reply.expect("an attempt is stepped with its reply");
                let ahead = match reply.and_then(|value| value.int()) {
                    Err(failure) => return self.leave_then(Err(failure)),
                    Ok(n) => match AcquireAnswer::from_reply(n) {
                        AcquireAnswer::Taken(fence) => return Step::Done(Ok(Some(fence))),
                        AcquireAnswer::Later { ahead } => ahead,
                    },
                };
                match self.wait.next_pause(ahead, now.elapsed, now.jitter) {
                    Some(pause) => {
                        self.state = AcquireState::Attempt;
                        Step::Wait(pause)
                    }
                    None => self.leave_then(Ok(None)),
                }
            }
            // Leaving is best effort: its own failure changes nothing.
            AcquireState::Leaving(outcome) => Step::Done(outcome),
            AcquireState::Done => panic!("a finished lease wait was stepped again"),
        }
    }
}

/// Waits until nobody holds the lease on `key` (true), or until the
/// caller's patience ran out with the holder still there (false). Paced
/// as a waiter next in line ([`Wait`] with one release ahead).
#[derive(Debug, Clone)]
pub struct AwaitRelease {
    lease_key: String,
    wait: Wait,
    asked: bool,
    done: bool,
}

impl AwaitRelease {
    /// Waits for the lease guarding `key` (the guarded key, not the lease's
    /// own) up to `patience`, clamped to [`MAX_WAIT`](crate::lease::MAX_WAIT).
    pub fn new(key: &str, patience: Duration) -> Self {
        let (_, patience) = clamp_request(Duration::ZERO, patience);
        AwaitRelease {
            lease_key: keys::lease(key),
            wait: Wait::new(patience),
            asked: false,
            done: false,
        }
    }
}

impl Machine for AwaitRelease {
    type Request = ValkeyRequest;
    type Reply = ValkeyReply;
    type Output = Result<bool, ValkeyError>;

    fn next(&mut self, reply: Option<ValkeyReply>, now: Now) -> Step<ValkeyRequest, Self::Output> {
        assert!(!self.done, "a finished release wait was stepped again");
        if !self.asked {
            self.asked = true;
            return Step::Send(ValkeyRequest::Command(vec![
                "EXISTS".to_owned(),
                self.lease_key.clone(),
            ]));
        }
        self.asked = false;
        let reply = reply.expect("EXISTS is stepped with its reply");
        let held = match reply.and_then(|value| value.int()) {
            Ok(n) => n > 0,
            Err(failure) => {
                self.done = true;
                return Step::Done(Err(failure));
            }
        };
        if !held {
            self.done = true;
            return Step::Done(Ok(true));
        }
        match self.wait.next_pause(1, now.elapsed, now.jitter) {
            Some(pause) => Step::Wait(pause),
            None => {
                self.done = true;
                Step::Done(Ok(false))
            }
        }
    }
}
