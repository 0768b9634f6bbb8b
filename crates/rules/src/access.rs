//! The access decision for a verified token, as a machine
//! ([`crate::protocol`]): the job's revocation and the execution's rate
//! limit, in one Valkey round trip when they share a slot, and what the
//! answer means: pass, revoked, or rate limited with `Retry-After`. When
//! Valkey cannot answer, [`unchecked`] says whether to let the request
//! through.

use crate::keys;
use crate::protocol::{Machine, Now, Step, ValkeyReply, ValkeyRequest, ValkeyValue};
use crate::rate_limit::{self, Quota};
use crate::valkey::{self as commands, AccessAnswer};

/// What the access check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The request may pass; `record` is the execution record fetched in
    /// the same round trip, when asked for and kept.
    Pass {
        /// The cached execution record as stored (JSON), when
        /// [`Check::peek_record`] asked for it and Valkey held one.
        record: Option<Vec<u8>>,
    },
    /// The job's tokens are revoked.
    Revoked,
    /// Over the execution's rate limit: retry after this many seconds.
    RateLimited {
        /// Whole seconds for `Retry-After`, at least 1.
        retry_after_secs: u32,
    },
    /// Valkey could not answer, and why: see [`unchecked`].
    Unchecked {
        /// Valkey's failure, or the answer it could not read, for the log.
        why: String,
    },
}

/// How one access check is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The token's `jobId`: whose revocation key is checked.
    pub job_id: String,
    /// The token's `executionId`: whose rate limiter is charged, and whose
    /// record is fetched with [`Check::peek_record`].
    pub execution_id: String,
    /// The rate limit (none: only the revocation is checked).
    pub quota: Option<Quota>,
    /// Fetch the execution record in the same round trip.
    pub peek_record: bool,
    /// The revocation and limiter keys cannot be read by one script (a
    /// Valkey Cluster, and keys in different slots): ask twice, the
    /// revocation first (a revoked job spends no budget).
    pub split: bool,
}

impl Check {
    /// Whether a cluster client must split this check (see [`Check::split`]).
    pub fn needs_split_on_cluster(job_id: &str, execution_id: &str) -> bool {
        !keys::same_slot(
            &keys::revoked_job(job_id),
            &keys::rate_limit_execution(job_id, execution_id),
        )
    }
}

/// The access check of one verified request.
#[derive(Debug, Clone)]
pub struct CheckAccess {
    check: Check,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// Sent the one script (or `EXISTS` without a quota).
    Asked,
    /// Split: sent `EXISTS` of the revocation.
    AskedRevoked,
    /// Split: sent the limiter script alone.
    AskedLimit,
    Done,
}

impl CheckAccess {
    /// A check of `check`, not yet sent: its first step asks Valkey.
    pub fn new(check: Check) -> Self {
        CheckAccess {
            check,
            state: State::Start,
        }
    }

    fn revoked_key(&self) -> String {
        keys::revoked_job(&self.check.job_id)
    }

    fn limiter_key(&self) -> String {
        keys::rate_limit_execution(&self.check.job_id, &self.check.execution_id)
    }

    fn done(&mut self, verdict: Verdict) -> Step<ValkeyRequest, Verdict> {
        self.state = State::Done;
        Step::Done(verdict)
    }
}

/// The verdict of an access answer.
fn verdict(access: AccessAnswer, record: Option<Vec<u8>>) -> Verdict {
    if access.revoked {
        Verdict::Revoked
    } else if access.retry_after_us > 0 {
        Verdict::RateLimited {
            retry_after_secs: rate_limit::retry_after_secs(access.retry_after_us),
        }
    } else {
        Verdict::Pass { record }
    }
}

impl Machine for CheckAccess {
    type Request = ValkeyRequest;
    type Reply = ValkeyReply;
    type Output = Verdict;

    fn next(&mut self, reply: Option<ValkeyReply>, _now: Now) -> Step<ValkeyRequest, Verdict> {
        let state = self.state;
        if state == State::Start {
            let exists = ValkeyRequest::Command(vec!["EXISTS".to_owned(), self.revoked_key()]);
            let Some(quota) = self.check.quota else {
                self.state = State::Asked;
                return Step::Send(exists);
            };
            if self.check.split {
                self.state = State::AskedRevoked;
                return Step::Send(exists);
            }
            self.state = State::Asked;
            let (revoked, limiter) = (self.revoked_key(), self.limiter_key());
            return Step::Send(ValkeyRequest::Script(if self.check.peek_record {
                commands::check_access_and_peek(
                    &revoked,
                    &limiter,
                    quota,
                    &keys::execution(&self.check.execution_id),
                )
            } else {
                commands::check_access(&revoked, &limiter, quota)
            }));
        }
        if state == State::Done {
            panic!("a finished access check was stepped again");
        }
        let reply = match reply.expect("an access check is stepped with its reply") {
            Ok(reply) => reply,
            Err(failure) => {
                let why = match failure {
                    crate::protocol::ValkeyError::Unavailable(why)
                    | crate::protocol::ValkeyError::Invalid(why) => why,
                };
                return self.done(Verdict::Unchecked { why });
            }
        };
        let unreadable = |reply: &ValkeyValue| Verdict::Unchecked {
            why: format!("the access check answered {reply:?}"),
        };
        match (state, self.check.quota) {
            (State::Asked | State::AskedRevoked, None) | (State::AskedRevoked, Some(_)) => {
                let Ok(n) = reply.int() else {
                    return self.done(unreadable(&reply));
                };
                if n > 0 {
                    return self.done(Verdict::Revoked);
                }
                match (state, self.check.quota) {
                    (State::AskedRevoked, Some(quota)) => {
                        self.state = State::AskedLimit;
                        Step::Send(ValkeyRequest::Script(commands::limit(
                            &self.limiter_key(),
                            quota,
                        )))
                    }
                    _ => self.done(Verdict::Pass { record: None }),
                }
            }
            (State::AskedLimit, _) => match reply.int() {
                Ok(wait) => self.done(verdict(AccessAnswer::from_reply(wait.max(0)), None)),
                Err(_) => self.done(unreadable(&reply)),
            },
            (State::Asked, Some(_)) => {
                let (access, record) = match &reply {
                    ValkeyValue::Int(n) => (*n, None),
                    ValkeyValue::Array(items) => match items.as_slice() {
                        [ValkeyValue::Int(n)] | [ValkeyValue::Int(n), ValkeyValue::Nil] => {
                            (*n, None)
                        }
                        [ValkeyValue::Int(n), ValkeyValue::Bytes(record)] => {
                            (*n, Some(record.clone()))
                        }
                        _ => return self.done(unreadable(&reply)),
                    },
                    _ => return self.done(unreadable(&reply)),
                };
                self.done(verdict(AccessAnswer::from_reply(access), record))
            }
            (State::Start | State::Done, _) => unreachable!("handled above"),
        }
    }
}

/// What to do with a request whose access could not be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchecked {
    /// Let it through (counted, and logged by the caller).
    LetThrough,
    /// Refuse it: this host saw the job revoked recently.
    Revoked,
    /// Refuse it (503): `revocation_fail_closed`, and the last good check
    /// is older than the grace window.
    Refuse,
}

/// The rule for an unchecked request: a job seen revoked stays revoked;
/// otherwise it passes, unless the operator asked to fail closed and no
/// check succeeded within the grace window (`within_grace`; a host
/// without memory between requests, as under Spin, passes false).
pub fn unchecked(fail_closed: bool, within_grace: bool, seen_revoked: bool) -> Unchecked {
    if seen_revoked {
        Unchecked::Revoked
    } else if fail_closed && !within_grace {
        Unchecked::Refuse
    } else {
        Unchecked::LetThrough
    }
}
