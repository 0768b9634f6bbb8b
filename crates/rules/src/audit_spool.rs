//! The audit spool in Valkey, for hosts that have no disk of their own to
//! spool to (the Spin adapters; the custom host spools to a file).
//!
//! An event the backend cannot take now is appended to one list. While the
//! list holds anything, new events join it behind the others, so the
//! backend receives events in the order they entered. Whoever emits an
//! event next takes the drain lease (one drainer at a time, across every
//! instance and host), delivers the oldest event, and removes it only after
//! the backend took it and only while it still holds the lease. So an event
//! is never lost and never delivered twice by two drainers; it is delivered
//! again only if its drainer dies between the backend's answer and the
//! removal, or outlives its lease.
//!
//! The custom host keeps its own spool in a file, and uses this one twice:
//! a host that stops with events it could not deliver hands them over
//! here (its file may not outlive it: a sidecar's `/tmp`), and every host
//! on Valkey drains this spool in the background, so that what a stopped
//! host or a Spin instance left is delivered even when no Spin request
//! comes.
//!
//! This module has the plain commands and the decisions; the two script
//! calls of a drain, [`crate::valkey::audit_pop`] and
//! [`crate::valkey::audit_release`], sit with the other script calls (so
//! that the scripts' identities need nothing from here). The Spin adapter
//! runs them on Spin's Redis interface, the host on its Valkey client.

use std::time::Duration;

use crate::keys;

/// How long a drainer holds the lease without renewing it: each delivered
/// event renews it.
pub const DRAIN_LEASE: Duration = Duration::from_secs(10);

/// The most events one drain delivers, so that a long backlog is worked off
/// across many requests rather than holding one up.
pub const DRAIN_BATCH: usize = 50;

/// Removes the spool's oldest event if `owner` still holds the drain lease,
/// and renews the lease. `KEYS[1]` the lease, `KEYS[2]` the spool;
/// `ARGV[1]` owner, `ARGV[2]` lease in milliseconds. Returns 1 when
/// removed, 0 when the lease is lost (and nothing is removed).
pub const POP_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('LPOP', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

/// `LLEN`: how many events wait. Replies an integer.
pub fn length() -> Vec<String> {
    vec!["LLEN".into(), keys::audit_spool()]
}

/// `RPUSH`: appends an event's body behind the others.
pub fn push(body: &str) -> Vec<String> {
    push_all([body])
}

/// `RPUSH`: appends events' bodies behind the others, in their order, at
/// once (a host handing over its backlog as it stops).
pub fn push_all<'a>(bodies: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut command = vec!["RPUSH".into(), keys::audit_spool()];
    command.extend(bodies.into_iter().map(str::to_owned));
    command
}

/// `LINDEX 0`: the oldest event, or nil.
pub fn oldest() -> Vec<String> {
    vec!["LINDEX".into(), keys::audit_spool(), "0".into()]
}

/// `SET NX PX`: takes the drain lease for `owner` if nobody holds it.
/// Replies `OK` when taken, nil when held by another.
pub fn take_drain(owner: &str) -> Vec<String> {
    vec![
        "SET".into(),
        keys::audit_spool_drain(),
        owner.to_owned(),
        "NX".into(),
        "PX".into(),
        DRAIN_LEASE.as_millis().to_string(),
    ]
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The backend took the event.
    Taken,
    /// The backend refused the event for good (a 4xx other than 404):
    /// sending it again cannot help.
    Refused,
    /// The backend failed, timed out or could not be reached.
    Failed,
}

/// What to do with a fresh event, given the spool's length (`None` when
/// Valkey cannot be asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The spool is empty: deliver now, and spool the event if that fails.
    DeliverNow,
    /// Events wait: join them, then help drain.
    JoinSpool,
}

/// Whether a fresh event may go straight to the backend: only when nothing
/// waits before it, or when the spool cannot be read (then delivering now
/// is the one chance the event has).
pub fn admit(spool_length: Option<i64>) -> Admission {
    match spool_length {
        Some(n) if n > 0 => Admission::JoinSpool,
        _ => Admission::DeliverNow,
    }
}

/// Whether a spooled event leaves the spool after `delivery`: taken or
/// refused events leave; a failure stops the drain, keeping the event
/// first in line.
pub fn leaves_spool(delivery: Delivery) -> bool {
    matches!(delivery, Delivery::Taken | Delivery::Refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_event_goes_straight_out_only_when_nothing_waits() {
        assert_eq!(admit(Some(0)), Admission::DeliverNow);
        assert_eq!(admit(None), Admission::DeliverNow);
        assert_eq!(admit(Some(3)), Admission::JoinSpool);
    }

    #[test]
    fn a_failed_delivery_keeps_the_event_first_in_line() {
        assert!(leaves_spool(Delivery::Taken));
        assert!(leaves_spool(Delivery::Refused));
        assert!(!leaves_spool(Delivery::Failed));
    }

    #[test]
    fn a_handed_over_backlog_joins_the_spool_in_its_order() {
        assert_eq!(
            push_all(["first", "second"]),
            ["RPUSH", &keys::audit_spool(), "first", "second"]
        );
        assert_eq!(push("one"), ["RPUSH", &keys::audit_spool(), "one"]);
    }

    #[test]
    fn the_spool_and_its_lease_share_one_hash_slot() {
        let tag = |key: String| {
            let open = key.find('{').unwrap();
            let close = key[open..].find('}').unwrap() + open;
            key[open + 1..close].to_owned()
        };
        assert_eq!(tag(keys::audit_spool()), tag(keys::audit_spool_drain()));
        let pop = crate::valkey::audit_pop("me");
        assert_eq!(pop.keys, [keys::audit_spool_drain(), keys::audit_spool()]);
    }

    #[test]
    fn the_drain_lease_is_given_back_on_the_key_it_was_taken_on() {
        // take_drain's SET is `SET <drain key> <owner> NX PX ..`: the
        // release must compare-and-delete that very key, or the lease only
        // ends with its TTL and every drain waits for it.
        let taken = take_drain("me");
        let release = crate::valkey::audit_release("me");
        assert_eq!(release.keys, [taken[1].clone()]);
        assert_eq!(release.args, ["me"]);
    }
}
