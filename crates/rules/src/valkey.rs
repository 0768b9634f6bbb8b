//! The Valkey commands behind the `cache` and `auth` capabilities, spelled
//! once: the host sends them through the `redis` crate, the Spin adapters
//! through Spin's Redis interface. Each function returns the command's
//! words; each `*Answer` reads the reply back.
//!
//! Scripts are given as a [`ScriptCall`] (script, keys, arguments) so that
//! a client that caches scripts (`EVALSHA`) and one that sends them whole
//! (`EVAL`) pass the same keys and arguments.

use std::time::Duration;

use crate::rate_limit::Quota;
use crate::{keys, lease, rate_limit};

/// `INCRBY` and, only when the key has no TTL yet (it was just created),
/// `PEXPIRE`: the counter expires `ttl` after its first increment, however
/// often it is incremented. `KEYS[1]` counter; `ARGV[1]` delta, `ARGV[2]`
/// TTL in milliseconds. Returns the new value.
pub const INCREMENT_SCRIPT: &str = r#"
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"#;

/// Every Lua script of the rules, by identity: a client that caches
/// scripts (`EVALSHA`) keeps one per identity, and a transport that
/// answers without Lua (the host's in-process cache) knows a script by
/// it, never by its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Script {
    /// [`INCREMENT_SCRIPT`].
    Increment,
    /// [`lease::ACQUIRE_SCRIPT`].
    Acquire,
    /// [`lease::RELEASE_SCRIPT`].
    Release,
    /// [`lease::LEAVE_SCRIPT`].
    Leave,
    /// [`rate_limit::LIMIT_SCRIPT`] (with the revocation key first: the
    /// access check).
    Limit,
    /// [`rate_limit::TAKE_SCRIPT`].
    Take,
    /// [`crate::audit_spool::POP_SCRIPT`].
    AuditPop,
}

impl Script {
    /// Every script, each at the index of its identity (`script as usize`).
    pub const ALL: [Script; 7] = [
        Script::Increment,
        Script::Acquire,
        Script::Release,
        Script::Leave,
        Script::Limit,
        Script::Take,
        Script::AuditPop,
    ];

    /// The script's Lua text.
    pub fn source(self) -> &'static str {
        match self {
            Script::Increment => INCREMENT_SCRIPT,
            Script::Acquire => lease::ACQUIRE_SCRIPT,
            Script::Release => lease::RELEASE_SCRIPT,
            Script::Leave => lease::LEAVE_SCRIPT,
            Script::Limit => rate_limit::LIMIT_SCRIPT,
            Script::Take => rate_limit::TAKE_SCRIPT,
            Script::AuditPop => crate::audit_spool::POP_SCRIPT,
        }
    }
}

/// One call of a Lua script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCall {
    /// Which script to run ([`Script::source`] is its text).
    pub script: Script,
    /// Its `KEYS`, in order (in one slot, on a cluster).
    pub keys: Vec<String>,
    /// Its `ARGV`, in order.
    pub args: Vec<String>,
}

impl ScriptCall {
    /// The words of `EVAL script numkeys key... arg...` after `EVAL`.
    pub fn eval_args(&self) -> Vec<String> {
        let mut words = Vec::with_capacity(2 + self.keys.len() + self.args.len());
        words.push(self.script.source().to_owned());
        words.push(self.keys.len().to_string());
        words.extend(self.keys.iter().cloned());
        words.extend(self.args.iter().cloned());
        words
    }
}

/// `SET key value PX ttl`: store with a TTL.
pub fn set(key: &str, value: &str, ttl: Duration) -> Vec<String> {
    vec![
        "SET".into(),
        key.into(),
        value.into(),
        "PX".into(),
        ttl_ms(ttl).to_string(),
    ]
}

/// `SET key value PX ttl NX`: store only if `key` holds nothing. Replies
/// `OK` when stored, nil when not.
pub fn add(key: &str, value: &str, ttl: Duration) -> Vec<String> {
    let mut words = set(key, value, ttl);
    words.push("NX".into());
    words
}

/// Adds `delta` to the counter under `key` ([`INCREMENT_SCRIPT`]).
pub fn increment(key: &str, delta: i64, ttl: Duration) -> ScriptCall {
    ScriptCall {
        script: Script::Increment,
        keys: vec![key.to_owned()],
        args: vec![delta.to_string(), ttl_ms(ttl).to_string()],
    }
}

/// One attempt to take the lease on `key` for `owner`, in turn
/// ([`lease::ACQUIRE_SCRIPT`]): standing in line when `joins_line`, else
/// only if nobody holds or waits for it. Read the reply with
/// [`AcquireAnswer`].
pub fn acquire(key: &str, owner: &str, ttl: Duration, joins_line: bool) -> ScriptCall {
    ScriptCall {
        script: Script::Acquire,
        keys: vec![
            keys::lease(key),
            keys::lease_fence(key),
            keys::lease_line(key),
            keys::lease_waiters(key),
            keys::lease_tickets(key),
        ],
        args: vec![
            owner.to_owned(),
            ttl_ms(ttl).to_string(),
            ttl_ms(lease::FENCE_TTL).to_string(),
            ttl_ms(lease::WAITER_TTL).to_string(),
            if joins_line { "1" } else { "0" }.to_owned(),
        ],
    }
}

/// Takes `owner` out of the line for `key`'s lease
/// ([`lease::LEAVE_SCRIPT`]), when it gives up waiting.
pub fn leave(key: &str, owner: &str) -> ScriptCall {
    ScriptCall {
        script: Script::Leave,
        keys: vec![keys::lease_line(key), keys::lease_waiters(key)],
        args: vec![owner.to_owned()],
    }
}

/// Releases `owner`'s lease on `key` ([`lease::RELEASE_SCRIPT`]); replies
/// 1 when released.
pub fn release(key: &str, owner: &str) -> ScriptCall {
    release_lease_key(keys::lease(key), owner)
}

/// [`lease::RELEASE_SCRIPT`] on `lease_key` as it is.
fn release_lease_key(lease_key: String, owner: &str) -> ScriptCall {
    ScriptCall {
        script: Script::Release,
        keys: vec![lease_key],
        args: vec![owner.to_owned()],
    }
}

/// Removes the audit spool's oldest event after its delivery, if `owner`
/// still holds the drain lease, and renews the lease
/// ([`audit_spool::POP_SCRIPT`](crate::audit_spool::POP_SCRIPT)). Replies 1
/// when removed, 0 when the lease was lost.
pub fn audit_pop(owner: &str) -> ScriptCall {
    ScriptCall {
        script: Script::AuditPop,
        keys: vec![keys::audit_spool_drain(), keys::audit_spool()],
        args: vec![
            owner.to_owned(),
            crate::audit_spool::DRAIN_LEASE.as_millis().to_string(),
        ],
    }
}

/// Gives the audit spool's drain lease back: the leases' own
/// compare-and-delete ([`lease::RELEASE_SCRIPT`]), on the drain key itself
/// (not a variable lease's key, which [`release`] would make of it).
pub fn audit_release(owner: &str) -> ScriptCall {
    release_lease_key(keys::audit_spool_drain(), owner)
}

/// A request's access check in one round trip: is `revoked_key` set, and
/// may one more request pass `limiter_key`'s `quota`
/// ([`rate_limit::LIMIT_SCRIPT`]); read the reply with [`AccessAnswer`].
pub fn check_access(revoked_key: &str, limiter_key: &str, quota: Quota) -> ScriptCall {
    limit_call(vec![revoked_key.to_owned(), limiter_key.to_owned()], quota)
}

/// [`check_access`], and the value of `peek_key` in the same round trip:
/// the reply is the access answer and, when `peek_key` holds a value, that
/// value.
pub fn check_access_and_peek(
    revoked_key: &str,
    limiter_key: &str,
    quota: Quota,
    peek_key: &str,
) -> ScriptCall {
    limit_call(
        vec![
            revoked_key.to_owned(),
            limiter_key.to_owned(),
            peek_key.to_owned(),
        ],
        quota,
    )
}

/// One request against `limiter_key`'s `quota` alone; the reply is the
/// microseconds to wait (0: it passed).
pub fn limit(limiter_key: &str, quota: Quota) -> ScriptCall {
    limit_call(vec![limiter_key.to_owned()], quota)
}

/// Gives back `returned` requests of an earlier share and takes up to
/// `wanted` more of `limiter_key`'s `quota` ([`rate_limit::TAKE_SCRIPT`]);
/// read the reply with [`share_answer`].
pub fn take_share(limiter_key: &str, quota: Quota, returned: u32, wanted: u32) -> ScriptCall {
    ScriptCall {
        script: Script::Take,
        keys: vec![limiter_key.to_owned()],
        args: vec![
            quota.interval_us().to_string(),
            quota.period_us().to_string(),
            returned.to_string(),
            wanted.to_string(),
        ],
    }
}

/// Reads [`rate_limit::TAKE_SCRIPT`]'s reply: requests taken (at least 1),
/// or none and the microseconds to wait.
pub fn share_answer(reply: i64) -> rate_limit::Grant {
    if reply > 0 {
        rate_limit::Grant {
            taken: u32::try_from(reply).unwrap_or(u32::MAX),
            retry_after_us: 0,
            tat: 0,
        }
    } else {
        rate_limit::Grant {
            taken: 0,
            retry_after_us: reply.unsigned_abs().max(1),
            tat: 0,
        }
    }
}

fn limit_call(keys: Vec<String>, quota: Quota) -> ScriptCall {
    ScriptCall {
        script: Script::Limit,
        keys,
        args: vec![
            quota.interval_us().to_string(),
            quota.period_us().to_string(),
        ],
    }
}

/// What one lease attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireAnswer {
    /// Taken, with this fence.
    Taken(u64),
    /// Not the caller's turn: the lease must be released this many times
    /// first (by its holder, if any, and by each waiter ahead).
    Later {
        /// Releases to come before the caller's turn (at least 1).
        ahead: u64,
    },
}

impl AcquireAnswer {
    /// Reads [`lease::ACQUIRE_SCRIPT`]'s reply.
    pub fn from_reply(reply: i64) -> Self {
        if reply > 0 {
            AcquireAnswer::Taken(reply as u64)
        } else {
            AcquireAnswer::Later {
                ahead: reply.unsigned_abs().max(1),
            }
        }
    }
}

/// What a request's access check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessAnswer {
    /// The job's tokens are revoked.
    pub revoked: bool,
    /// Microseconds until the execution may send again (0: it may now).
    pub retry_after_us: u64,
}

impl AccessAnswer {
    /// Reads [`rate_limit::LIMIT_SCRIPT`]'s reply.
    pub fn from_reply(reply: i64) -> Self {
        AccessAnswer {
            revoked: reply < 0,
            retry_after_us: reply.max(0) as u64,
        }
    }
}

/// A TTL in whole milliseconds, at least one (Valkey refuses `PX 0`).
pub fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

/// Normalises a Valkey URL: `valkey://` means `redis://`, `valkeys://`
/// means `rediss://`. `None` for a scheme no Redis client speaks.
pub fn normalize_url(url: &str) -> Option<String> {
    let url = if let Some(rest) = url.strip_prefix("valkey://") {
        format!("redis://{rest}")
    } else if let Some(rest) = url.strip_prefix("valkeys://") {
        format!("rediss://{rest}")
    } else {
        url.to_owned()
    };
    ["redis://", "rediss://", "unix://", "redis+unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
        .then_some(url)
}

/// One node of a `CLUSTER NODES` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node's address as announced (`ip` of `ip:port@cport`).
    pub host: String,
    /// The node's client port (not the cluster bus port).
    pub port: u16,
    /// Flagged `master`.
    pub primary: bool,
}

/// The nodes in a `CLUSTER NODES` answer that are not failing (nor still
/// joining), in the order listed.
pub fn cluster_nodes(nodes: &str) -> Vec<ClusterNode> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _id = fields.next()?;
            // `ip:port@cport[,hostname]`
            let address = fields.next()?.split(['@', ',']).next()?;
            let flags: Vec<&str> = fields.next()?.split(',').collect();
            if flags
                .iter()
                .any(|f| matches!(*f, "fail" | "fail?" | "handshake" | "noaddr"))
            {
                return None;
            }
            let (host, port) = address.rsplit_once(':')?;
            Some(ClusterNode {
                host: host.to_owned(),
                port: port.parse().ok()?,
                primary: flags.contains(&"master"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_stands_at_the_index_of_its_identity() {
        for (index, script) in Script::ALL.into_iter().enumerate() {
            assert_eq!(script as usize, index, "{script:?}");
        }
    }

    #[test]
    fn a_clusters_nodes_are_its_live_ones_with_their_roles() {
        let nodes = "\
07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@31002,node-b master - 0 1426238316232 2 connected 5461-10922
2928 127.0.0.1:30006@31006 master,fail - 0 1426238316232 6 connected
e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        let node = |port, primary| ClusterNode {
            host: "127.0.0.1".to_owned(),
            port,
            primary,
        };
        assert_eq!(
            cluster_nodes(nodes),
            [node(30004, false), node(30002, true), node(30001, true)]
        );
    }

    #[test]
    fn add_is_set_with_nx() {
        assert_eq!(
            add("k", "v", Duration::from_secs(2)),
            ["SET", "k", "v", "PX", "2000", "NX"]
        );
        assert_eq!(
            set("k", "v", Duration::ZERO),
            ["SET", "k", "v", "PX", "1"],
            "a zero TTL is one millisecond, never PX 0"
        );
    }

    #[test]
    fn eval_words_count_the_keys() {
        let call = release("var", "owner");
        assert_eq!(
            call.eval_args(),
            [lease::RELEASE_SCRIPT, "1", &keys::lease("var"), "owner"]
        );
    }

    #[test]
    fn an_attempt_names_the_lease_its_fence_and_its_line_and_says_whether_to_join() {
        let waiting = acquire("var", "o", Duration::from_secs(1), true);
        assert_eq!(
            waiting.keys,
            [
                keys::lease("var"),
                keys::lease_fence("var"),
                keys::lease_line("var"),
                keys::lease_waiters("var"),
                keys::lease_tickets("var")
            ]
        );
        assert_eq!(waiting.args[0], "o");
        assert_eq!(waiting.args[1], "1000");
        assert_eq!(waiting.args[4], "1");
        assert_eq!(
            acquire("var", "o", Duration::from_secs(1), false).args[4],
            "0"
        );
        assert_eq!(
            leave("var", "o").keys,
            [keys::lease_line("var"), keys::lease_waiters("var")]
        );
    }

    #[test]
    fn lease_replies_are_a_fence_or_the_turns_ahead() {
        assert_eq!(AcquireAnswer::from_reply(7), AcquireAnswer::Taken(7));
        assert_eq!(
            AcquireAnswer::from_reply(-3),
            AcquireAnswer::Later { ahead: 3 }
        );
        assert_eq!(
            AcquireAnswer::from_reply(0),
            AcquireAnswer::Later { ahead: 1 }
        );
    }

    #[test]
    fn access_replies_are_revoked_or_a_wait() {
        assert!(AccessAnswer::from_reply(-1).revoked);
        assert_eq!(AccessAnswer::from_reply(1500).retry_after_us, 1500);
        assert_eq!(
            AccessAnswer::from_reply(0),
            AccessAnswer {
                revoked: false,
                retry_after_us: 0
            }
        );
    }

    #[test]
    fn valkey_schemes_mean_redis() {
        assert_eq!(
            normalize_url("valkey://h:6379").as_deref(),
            Some("redis://h:6379")
        );
        assert_eq!(normalize_url("valkeys://h").as_deref(), Some("rediss://h"));
        assert_eq!(normalize_url("http://h"), None);
    }
}
