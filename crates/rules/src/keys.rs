//! Cache key formats. Every key the runtime writes starts with `cronium:`,
//! so that one Valkey can be shared with other tenants of the operator.
//!
//! Two kinds: the runtime's own keys (revocations, rate limits, execution
//! records, leases' storage, the audit spool), which only the hosts'
//! capabilities use, and the keys components name in their own space,
//! which the hosts build with [`in_space`] from the component's group, a
//! [`Scope`] resolved from the caller, and the component's name.

/// The cached [`Execution`](crate::wire::Execution) record of an execution,
/// kept by the `backend` capability (never a component's key: see
/// [`in_space`]).
pub fn execution(execution_id: &str) -> String {
    format!("cronium:exec:{execution_id}")
}

/// Whether the value under `key` never changes once written, so that a
/// host may keep a copy in process: execution records (see
/// [`execution`]) are fixed while the execution runs. The key names the
/// execution, so a copy is only ever served for that execution.
pub fn is_immutable(key: &str) -> bool {
    key.starts_with("cronium:exec:")
}

/// What every revocation key starts with, for watching them all.
pub const REVOKED_JOB_PREFIX: &str = "cronium:exec-revoked:";

/// Set by the orchestrator (key format fixed by `docs/api.md`, "Tokens") when a job's
/// tokens must no longer be accepted.
pub fn revoked_job(job_id: &str) -> String {
    format!("{REVOKED_JOB_PREFIX}{job_id}")
}

/// The rate limiter of execution `execution_id` of job `job_id`.
///
/// Its hash tag is the slot-deciding part of the job's revocation key
/// ([`hash_tag`]), so on a Valkey Cluster the two live in one slot and the
/// access script can read both in one call. A job id whose revocation key
/// cannot be wrapped in a tag (it holds a `}`) gets a key that [`same_slot`]
/// tells apart, and callers then ask in two calls.
pub fn rate_limit_execution(job_id: &str, execution_id: &str) -> String {
    let revoked = revoked_job(job_id);
    format!(
        "cronium:rl:{{{}}}:exec:{}:{execution_id}",
        hash_tag(&revoked),
        execution_id.len()
    )
}

/// The part of `key` that Valkey Cluster hashes to pick its slot: the
/// text between the first `{` and the next `}` when that is not empty,
/// else the whole key.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// Whether `a` and `b` live in one slot of a Valkey Cluster (the same
/// [`hash_tag`]), so that one script may touch both.
pub fn same_slot(a: &str, b: &str) -> bool {
    hash_tag(a) == hash_tag(b)
}

/// The rate limiter of a client address whose requests fail to authenticate.
pub fn rate_limit_address(address: &str) -> String {
    format!("cronium:rl:addr:{address}")
}

/// Where the lease guarding `key` is stored.
pub fn lease(key: &str) -> String {
    format!("cronium:lease:{key}")
}

/// The counter that hands out fences for the lease guarding `key`.
pub fn lease_fence(key: &str) -> String {
    format!("cronium:lease-fence:{key}")
}

/// The line of callers waiting for the lease guarding `key` (a sorted
/// set of owner tokens by ticket).
pub fn lease_line(key: &str) -> String {
    format!("cronium:lease-line:{key}")
}

/// When each waiter in the line for `key`'s lease must ask again by (a
/// hash of owner token to milliseconds).
pub fn lease_waiters(key: &str) -> String {
    format!("cronium:lease-waiters:{key}")
}

/// The counter that hands out tickets (places) in the line for `key`'s lease.
pub fn lease_tickets(key: &str) -> String {
    format!("cronium:lease-tickets:{key}")
}

/// The audit spool of hosts without a disk (the Spin adapters): a list of
/// audit bodies, oldest first. Its drain lease ([`audit_spool_drain`])
/// shares its hash tag, so the scripts that touch both stay in one slot.
pub fn audit_spool() -> String {
    "cronium:{audit}:spool".to_owned()
}

/// The lease of whoever drains the [`audit_spool`].
pub fn audit_spool_drain() -> String {
    "cronium:{audit}:drain".to_owned()
}

/// Whose data a component's key holds (the WIT `cache.scope`), with the
/// owner the host resolved from the caller: never a value the component
/// chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The caller's execution (its id, from the verified token).
    Execution(&'a str),
    /// The user who owns the caller's execution (from its record).
    User(&'a str),
    /// The component's endpoint group as a whole.
    Group,
}

/// The real key of the key `name` a component of endpoint group `group`
/// (`RouteGroup::name`) names in `scope`: the only way a component's name
/// becomes a key, for the host's cache capability and the Spin adapter's
/// alike.
///
/// `cronium:{<group>:e:<len>:<execution>:<name>}`,
/// `cronium:{<group>:u:<len>:<user>:<name>}` or `cronium:{<group>:g:<name>}`:
/// owners are length-prefixed, so that no (owner, name) pair spells
/// another's key, and the group comes first, so no group reaches another's
/// space. Every such key starts `cronium:{` and a group name, which none of
/// the runtime's own keys does (revocations, rate limits, execution
/// records, leases' storage, the audit spool): a component cannot name
/// those.
///
/// The braces are a Valkey Cluster hash tag around the whole identity:
/// the lease keys of a component's key ([`lease`], [`lease_fence`],
/// [`lease_line`], [`lease_waiters`], [`lease_tickets`]) put the key after
/// a prefix without braces, so they carry the very same tag and land in
/// its slot (whatever the name holds, the tag ends at the same `}` in
/// each), which the multi-key lease scripts need.
pub fn in_space(group: &str, scope: Scope<'_>, name: &str) -> String {
    match scope {
        Scope::Execution(execution_id) => format!(
            "cronium:{{{group}:e:{}:{execution_id}:{name}}}",
            execution_id.len()
        ),
        Scope::User(user_id) => {
            format!("cronium:{{{group}:u:{}:{user_id}:{name}}}", user_id.len())
        }
        Scope::Group => format!("cronium:{{{group}:g:{name}}}"),
    }
}

/// The variables component's name for the cached value of variable `key`
/// (in its user scope).
pub fn variable(key: &str) -> String {
    format!("var:{key}")
}

/// The tool-actions component's name for the remembered result of a tool
/// action sent with `Idempotency-Key: idempotency_key` (in its execution
/// scope, so two executions may use the same key).
pub fn idempotency(idempotency_key: &str) -> String {
    format!("idem:{idempotency_key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_key_is_the_one_the_orchestrator_writes() {
        assert_eq!(revoked_job("job-7"), "cronium:exec-revoked:job-7");
    }

    #[test]
    fn spaces_of_different_groups_scopes_and_owners_never_collide() {
        let keys = [
            in_space("variables", Scope::User("a:b"), "c"),
            in_space("variables", Scope::User("a"), "b:c"),
            in_space("variables", Scope::User("u2"), "c"),
            in_space("variables", Scope::Execution("a:b"), "c"),
            in_space("variables", Scope::Group, "c"),
            in_space("executions", Scope::User("a:b"), "c"),
            in_space("tool-actions", Scope::Execution("e:1"), "k"),
            in_space("tool-actions", Scope::Execution("e"), "1:k"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn no_name_reaches_the_runtimes_own_keys() {
        let own = [
            revoked_job("job-1"),
            execution("exec-1"),
            rate_limit_execution("job-1", "exec-1"),
            rate_limit_address("127.0.0.1"),
            audit_spool(),
            audit_spool_drain(),
        ];
        for group in ["executions", "variables", "tool-actions", "batch"] {
            for name in ["", "x", "}", "{audit}:spool", ":exec-revoked:job-1"] {
                for scope in [Scope::Group, Scope::User("u"), Scope::Execution("e")] {
                    let key = in_space(group, scope, name);
                    assert!(key.starts_with(&format!("cronium:{{{group}:")));
                    assert!(!own.contains(&key), "{key}");
                    assert!(!own.iter().any(|k| lease(k) == key));
                }
            }
        }
    }

    #[test]
    fn a_key_and_its_lease_keys_share_one_hash_tag_whatever_the_name() {
        for name in ["k", "a}b", "{x}", "}", "a{b}c", ""] {
            let key = in_space("variables", Scope::User("u}1"), name);
            let tag = hash_tag(&key);
            assert!(tag.starts_with("variables:"), "{key}: {tag}");
            for aux in [
                lease(&key),
                lease_fence(&key),
                lease_line(&key),
                lease_waiters(&key),
                lease_tickets(&key),
            ] {
                assert_eq!(hash_tag(&aux), tag, "{aux}");
            }
        }
    }

    #[test]
    fn an_executions_limiter_shares_the_slot_of_its_jobs_revocation_key() {
        for job in ["job-7", "a{b}c", "550e8400-e29b-41d4-a716-446655440000"] {
            let limiter = rate_limit_execution(job, "e1");
            assert!(same_slot(&limiter, &revoked_job(job)), "{job}: {limiter}");
        }
        assert_eq!(hash_tag(&revoked_job("a{b}c")), "b");
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("x{}y"), "x{}y");
    }

    #[test]
    fn a_job_id_with_a_closing_brace_is_told_apart_as_another_slot() {
        let limiter = rate_limit_execution("a}b", "e1");
        assert!(!same_slot(&limiter, &revoked_job("a}b")));
    }

    #[test]
    fn limiters_of_different_executions_never_collide() {
        assert_ne!(
            rate_limit_execution("j", "e:1"),
            rate_limit_execution("j", "e")
        );
        assert_ne!(
            rate_limit_execution("j1", "e"),
            rate_limit_execution("j2", "e")
        );
    }

    #[test]
    fn only_execution_records_are_immutable() {
        assert!(is_immutable(&execution("e1")));
        assert!(!is_immutable(&revoked_job("e1")));
        assert!(!is_immutable(&in_space(
            "variables",
            Scope::User("u"),
            &variable("k")
        )));
        assert!(!is_immutable(&lease(&execution("e1"))));
    }

    #[test]
    fn lease_fence_and_line_keys_differ_from_each_other_and_the_guarded_key() {
        let key = execution("e1");
        let all = [
            key.clone(),
            lease(&key),
            lease_fence(&key),
            lease_line(&key),
            lease_waiters(&key),
            lease_tickets(&key),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
