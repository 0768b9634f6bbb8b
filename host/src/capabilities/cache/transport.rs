//! The protocol machines' transports: the rules' lease and access
//! machines ([`cronium_rules::lease::protocol`], [`cronium_rules::access`])
//! send Valkey requests, answered here by Valkey, or by the in-process
//! cache, which knows each script by its identity
//! ([`cronium_rules::valkey::Script`]) and answers it without Lua.

use std::time::Duration;

use cronium_rules::protocol::{Now, ValkeyError, ValkeyReply, ValkeyRequest, ValkeyValue};
use cronium_rules::rate_limit::Quota;
use cronium_rules::valkey::{AcquireAnswer, Script};

use super::Cache;
use super::near::until_turn_or;
use crate::drive::{Clock, Io};

/// The lease machines' transport: Valkey, or the in-process cache
/// answering the same requests. Its pauses end early when this process
/// releases the lease often enough for the waiter's turn to have come
/// ([`until_turn_or`]).
pub(super) struct LeaseIo<'a> {
    pub(super) cache: &'a Cache,
    pub(super) key: &'a str,
    pub(super) owner: &'a str,
    pub(super) ttl: Duration,
    pub(super) joins: bool,
    /// This process's releases of the lease, when listened to.
    pub(super) releases: Option<tokio::sync::watch::Receiver<u64>>,
    /// The releases heard before the last attempt.
    pub(super) heard_before: Option<u64>,
    /// Holders ahead of the waiter at the last attempt.
    pub(super) ahead: u64,
    pub(super) clock: Clock,
}

impl LeaseIo<'_> {
    async fn answer(&mut self, request: ValkeyRequest) -> Result<i64, ValkeyError> {
        let acquire =
            matches!(&request, ValkeyRequest::Script(call) if call.script == Script::Acquire);
        if !matches!(&request, ValkeyRequest::Script(call) if call.script == Script::Leave) {
            // Releases heard from here on count towards this waiter's turn.
            self.heard_before = self.releases.as_mut().map(|r| *r.borrow_and_update());
        }
        let reply = match (self.cache, request) {
            (Cache::Valkey { remote, .. }, ValkeyRequest::Script(call)) => {
                remote.script(call).await?
            }
            (Cache::Valkey { remote, .. }, ValkeyRequest::Command(words)) => {
                i64::from(remote.exists(exists_key(&words)?).await?)
            }
            (Cache::Memory(c), ValkeyRequest::Script(_)) if acquire => {
                match c.try_acquire(self.key, self.owner, self.ttl, self.joins) {
                    AcquireAnswer::Taken(fence) => fence as i64,
                    AcquireAnswer::Later { ahead } => -(ahead as i64),
                }
            }
            (Cache::Memory(c), ValkeyRequest::Script(call)) if call.script == Script::Leave => {
                c.leave(self.key, self.owner);
                0
            }
            (Cache::Memory(_), ValkeyRequest::Script(call)) => {
                return Err(ValkeyError::Invalid(format!(
                    "the in-process cache does not run {:?} for a lease",
                    call.script
                )));
            }
            (Cache::Memory(c), ValkeyRequest::Command(words)) => {
                i64::from(c.get(exists_key(&words)?).is_some())
            }
        };
        self.ahead = if acquire {
            match AcquireAnswer::from_reply(reply) {
                AcquireAnswer::Later { ahead } => ahead,
                AcquireAnswer::Taken(_) => 1,
            }
        } else {
            1
        };
        Ok(reply)
    }
}

/// The key of an `EXISTS key` command (the only command the lease
/// machines send).
fn exists_key(words: &[String]) -> Result<&str, ValkeyError> {
    match words {
        [command, key] if command.eq_ignore_ascii_case("EXISTS") => Ok(key),
        _ => Err(ValkeyError::Invalid(format!(
            "the lease transport sends no {:?}",
            words.first()
        ))),
    }
}

impl Io<ValkeyRequest, ValkeyReply> for LeaseIo<'_> {
    async fn send(&mut self, request: ValkeyRequest) -> ValkeyReply {
        self.answer(request).await.map(ValkeyValue::Int)
    }

    async fn sleep(&mut self, pause: Duration) {
        match (self.releases.as_mut(), self.heard_before) {
            (Some(releases), Some(before)) => {
                until_turn_or(pause, releases, before + self.ahead).await;
            }
            _ => tokio::time::sleep(pause).await,
        }
    }

    fn now(&mut self) -> Now {
        self.clock.now()
    }
}

/// The access machine's transport: Valkey, or the in-process cache
/// answering the same requests.
pub(super) struct AccessIo<'a> {
    pub(super) cache: &'a Cache,
    pub(super) quota: Option<Quota>,
    pub(super) clock: Clock,
}

impl AccessIo<'_> {
    async fn answer(&self, request: ValkeyRequest) -> Result<i64, ValkeyError> {
        match (self.cache, request) {
            (_, ValkeyRequest::Command(words)) => {
                Ok(i64::from(self.cache.exists(exists_key(&words)?).await?))
            }
            (Cache::Valkey { remote, .. }, ValkeyRequest::Script(call)) => {
                remote.script(call).await
            }
            (Cache::Memory(c), ValkeyRequest::Script(call)) if call.script == Script::Limit => {
                let quota = self
                    .quota
                    .ok_or_else(|| ValkeyError::Invalid("a limit without a quota".into()))?;
                match call.keys.as_slice() {
                    // The access script's reply: negative when revoked,
                    // else the wait (the budget is spent either way).
                    [revoked, limiter] => {
                        let wait = c.limit(limiter, quota);
                        Ok(if c.get(revoked).is_some() {
                            -1
                        } else {
                            wait as i64
                        })
                    }
                    [limiter] => Ok(c.limit(limiter, quota) as i64),
                    _ => Err(ValkeyError::Invalid("a limit of no known shape".into())),
                }
            }
            (Cache::Memory(_), ValkeyRequest::Script(call)) => Err(ValkeyError::Invalid(format!(
                "the in-process cache does not run {:?} for an access check",
                call.script
            ))),
        }
    }
}

impl Io<ValkeyRequest, ValkeyReply> for AccessIo<'_> {
    async fn send(&mut self, request: ValkeyRequest) -> ValkeyReply {
        // The whole error, as the decision logs it.
        self.answer(request)
            .await
            .map(ValkeyValue::Int)
            .map_err(|error| ValkeyError::Unavailable(error.to_string()))
    }

    async fn sleep(&mut self, pause: Duration) {
        tokio::time::sleep(pause).await;
    }

    fn now(&mut self) -> Now {
        self.clock.now()
    }
}
