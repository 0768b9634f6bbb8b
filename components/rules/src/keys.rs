//! Cache key formats. Every key the runtime writes starts with `cronium:`,
//! so that one Valkey can be shared with other tenants of the operator.

/// The cached [`Execution`](crate::wire::Execution) record of an execution.
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

/// Set by the orchestrator (key format fixed by `CONTRACT.md`) when a job's
/// tokens must no longer be accepted.
pub fn revoked_job(job_id: &str) -> String {
    format!("{REVOKED_JOB_PREFIX}{job_id}")
}

/// The cached value of user `user_id`'s variable `key`. The user id is
/// length-prefixed so that no (user, key) pair can spell another's key.
pub fn variable(user_id: &str, key: &str) -> String {
    format!("cronium:var:{}:{user_id}:{key}", user_id.len())
}

/// The rate limiter of an execution.
pub fn rate_limit_execution(execution_id: &str) -> String {
    format!("cronium:rl:exec:{execution_id}")
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

/// The remembered result of a tool action sent with an `Idempotency-Key`.
/// Scoped to the execution: two executions may use the same key.
pub fn idempotency(execution_id: &str, idempotency_key: &str) -> String {
    format!(
        "cronium:idem:{}:{execution_id}:{idempotency_key}",
        execution_id.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_key_is_the_one_the_orchestrator_writes() {
        assert_eq!(revoked_job("job-7"), "cronium:exec-revoked:job-7");
    }

    #[test]
    fn variable_keys_of_different_users_never_collide() {
        assert_ne!(variable("a:b", "c"), variable("a", "b:c"));
        assert_ne!(variable("u1", "k"), variable("u2", "k"));
    }

    #[test]
    fn idempotency_keys_of_different_executions_never_collide() {
        assert_ne!(idempotency("e:1", "k"), idempotency("e", "1:k"));
    }

    #[test]
    fn only_execution_records_are_immutable() {
        assert!(is_immutable(&execution("e1")));
        assert!(!is_immutable(&revoked_job("e1")));
        assert!(!is_immutable(&variable("u", "k")));
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
