//! The `auth` capability: the token rules of `cronium-rules`, then the
//! job revocation list kept in the cache (`cronium:exec-revoked:{jobId}`).
//!
//! When the cache cannot answer (`docs/api.md`, "When Valkey is down"):
//! jobs this host has seen revoked stay refused; within a minute of the
//! last successful check requests pass; past that they pass too unless
//! the operator chose fail-closed (`REVOCATION_FAIL_CLOSED=true`), which
//! answers 503. Every such decision is logged and counted.
//!
//! The same round trip counts the request against the execution's rate
//! limit (`RATE_LIMIT_PER_MIN`, shared by every host through Valkey, or
//! counted by this host alone while Valkey is down); requests whose token
//! fails are counted per client address instead.
//!
//! A warm request makes no round trip at all while the host's
//! [`RevocationWatch`] is live: the revocation list is pushed to the host,
//! and the rate limit is spent from a local share of the execution's
//! budget ([`RateShares`]). Whenever the watch cannot vouch for its list,
//! requests go back to the one-round-trip check above.

pub mod caller;
pub mod rate_shares;
pub mod revocations;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cronium_rules::access::{self, Unchecked, Verdict};
use cronium_rules::keys;
use cronium_rules::rate_limit::{self, Quota};
use cronium_rules::token::{Claims, TokenError, TokenVerifier};
use std::net::IpAddr;
use wasmtime::component::Resource;

use self::rate_shares::RateShares;
use self::revocations::RevocationWatch;
use super::cache::Cache;
use super::cache::memory::MemoryCache;
use super::{CapabilitiesCtxView, CapabilitiesView, HasCapabilities};
use crate::bindings::auth as wit_auth;
use crate::bindings::auth::Caller;
use crate::config::MemoryBounds;

/// How long after the last successful revocation check requests are let
/// through while the cache is down.
pub const REVOCATION_GRACE: Duration = Duration::from_secs(60);

/// Why a request's token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("job revoked")]
    Revoked,
    /// The host serves one execution only (`EXECUTION_ID`) and the token
    /// is another's.
    #[error("token of another execution than the one served")]
    OtherExecution,
    #[error("revocation cannot be checked: {0}")]
    Unavailable(String),
    #[error("rate limited for {0} s")]
    RateLimited(u32),
}

/// Token verification plus revocation.
pub struct Auth {
    verifier: TokenVerifier,
    fail_closed: bool,
    /// Jobs seen revoked, and when; kept for a token's maximum lifetime.
    seen_revoked: Mutex<HashMap<String, Instant>>,
    remember_for: Duration,
    started: Instant,
    /// Milliseconds since `started` of the last successful check (0: never).
    last_check_ok: AtomicU64,
    /// Requests let through without a revocation check.
    pub unchecked: AtomicU64,
    /// `RATE_LIMIT_PER_MIN`, unless disabled.
    quota: Option<Quota>,
    /// `EXECUTION_ID`: the one execution whose tokens are accepted.
    only_execution: Option<String>,
    /// Counts of this host alone, for when Valkey cannot be reached.
    local: MemoryCache,
    /// The revocation list pushed by Valkey, when there is a Valkey.
    watch: Option<RevocationWatch>,
    /// This host's shares of the executions' budgets.
    shares: RateShares,
    /// `Authorization` values this host verified, with their claims and
    /// the last second they stay valid (`TokenVerifier::valid_until`): a
    /// warm request's token is a map lookup instead of base64 and HMAC
    /// again (about 7 % of a warm read's CPU in a profile). Keyed by the
    /// whole header, so only the very bytes that were verified match.
    verified: Mutex<HashMap<String, (Claims, u64)>>,
    /// Verified tokens remembered at most (`CRONIUM_TOKEN_MEMO`).
    token_memo: usize,
}

impl Auth {
    /// Verifies with `verifier`; `remember_for` is how long a seen
    /// revocation is kept locally (the tokens' maximum lifetime). Keeps at
    /// most `bounds.token_memo` verified tokens, and rate-limit state for
    /// at most `bounds.rate_executions` executions.
    pub fn new(
        verifier: TokenVerifier,
        fail_closed: bool,
        remember_for: Duration,
        quota: Option<Quota>,
        bounds: &MemoryBounds,
    ) -> Self {
        Auth {
            verifier,
            fail_closed,
            seen_revoked: Mutex::new(HashMap::new()),
            remember_for,
            started: Instant::now(),
            last_check_ok: AtomicU64::new(0),
            unchecked: AtomicU64::new(0),
            quota,
            only_execution: None,
            local: MemoryCache::new(Duration::from_secs(60), bounds.rate_executions),
            watch: None,
            shares: RateShares::new(bounds.rate_executions),
            verified: Mutex::new(HashMap::new()),
            token_memo: bounds.token_memo,
        }
    }

    /// Takes revocations from `watch` while it is live, and the rate limit
    /// from local shares then.
    pub fn with_watch(mut self, watch: RevocationWatch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Accepts the tokens of `execution_id` only (`EXECUTION_ID`: a
    /// per-job sidecar); any other valid token is refused with
    /// [`AuthError::OtherExecution`].
    pub fn for_execution(mut self, execution_id: String) -> Self {
        self.only_execution = Some(execution_id);
        self
    }

    /// Whether warm requests are served without a round trip now.
    pub fn watch_live(&self) -> bool {
        self.watch.as_ref().is_some_and(RevocationWatch::is_live)
    }

    /// Verifies an `Authorization` header value from `peer`, and counts
    /// the request against its rate limit: the execution's for a valid
    /// token, the client address's for a failing one.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
        cache: &Cache,
    ) -> Result<Claims, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = match self.verify_token(authorization, now) {
            Ok(claims) => claims,
            Err(error) => {
                if let (Some(quota), Some(peer)) = (self.quota, peer) {
                    let key = keys::rate_limit_address(&peer.to_string());
                    let wait = match cache.limit(&key, quota).await {
                        Ok(wait) => wait,
                        Err(_) => self.local.limit(&key, quota),
                    };
                    if wait > 0 {
                        return Err(AuthError::RateLimited(rate_limit::retry_after_secs(wait)));
                    }
                }
                return Err(error.into());
            }
        };
        if self
            .only_execution
            .as_ref()
            .is_some_and(|only| *only != claims.execution_id)
        {
            return Err(AuthError::OtherExecution);
        }
        let limiter_key = keys::rate_limit_execution(&claims.job_id, &claims.execution_id);
        if let Some(revoked) = self
            .watch
            .as_ref()
            .and_then(|w| w.is_revoked(&claims.job_id))
        {
            return self.pushed(claims, revoked, &limiter_key, cache).await;
        }
        match cache
            .check_access(&claims.job_id, &claims.execution_id, self.quota)
            .await
        {
            Verdict::Pass { .. } => {
                self.checked_now();
                Ok(claims)
            }
            Verdict::Revoked => {
                self.checked_now();
                self.remember_revoked(&claims.job_id);
                Err(AuthError::Revoked)
            }
            Verdict::RateLimited { retry_after_secs } => {
                self.checked_now();
                Err(AuthError::RateLimited(retry_after_secs))
            }
            Verdict::Unchecked { why } => {
                // The region's count is out of reach: this host counts alone.
                if let Some(quota) = self.quota {
                    let wait = self.local.limit(&limiter_key, quota);
                    if wait > 0 {
                        return Err(AuthError::RateLimited(rate_limit::retry_after_secs(wait)));
                    }
                }
                self.without_cache(claims, &why)
            }
        }
    }

    /// The token rules, remembering what passed them until it expires.
    fn verify_token(&self, authorization: Option<&str>, now: u64) -> Result<Claims, TokenError> {
        let Some(header) = authorization else {
            return self.verifier.verify_header(None, now);
        };
        let lock = || self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((claims, until)) = lock().get(header)
            && now <= *until
        {
            return Ok(claims.clone());
        }
        let claims = self.verifier.verify_header(Some(header), now)?;
        let until = self.verifier.valid_until(&claims);
        let mut verified = lock();
        if verified.len() >= self.token_memo {
            verified.retain(|_, (_, until)| now <= *until);
            if verified.len() >= self.token_memo {
                verified.clear();
            }
        }
        verified.insert(header.to_owned(), (claims.clone(), until));
        Ok(claims)
    }

    /// The decision with the watch's word on revocation, and the rate
    /// limit from this host's share.
    async fn pushed(
        &self,
        claims: Claims,
        revoked: bool,
        limiter_key: &str,
        cache: &Cache,
    ) -> Result<Claims, AuthError> {
        self.checked_now();
        if revoked {
            self.remember_revoked(&claims.job_id);
            return Err(AuthError::Revoked);
        }
        let Some(quota) = self.quota else {
            return Ok(claims);
        };
        let wait = match self.shares.spend(limiter_key, quota, cache).await {
            Ok(wait) => wait,
            // The region's count is out of reach: this host counts alone.
            Err(_) => self.local.limit(limiter_key, quota),
        };
        if wait > 0 {
            return Err(AuthError::RateLimited(rate_limit::retry_after_secs(wait)));
        }
        Ok(claims)
    }

    /// Notes that revocation was just checked: by a query, or by the
    /// pushed list while it is live. The fail-closed grace counts from here.
    fn checked_now(&self) {
        self.last_check_ok.store(
            self.started.elapsed().as_millis().max(1) as u64,
            Ordering::Relaxed,
        );
    }

    /// The rules' decision ([`access::unchecked`]) on a request whose
    /// revocation could not be checked.
    fn without_cache(&self, claims: Claims, error: &str) -> Result<Claims, AuthError> {
        let last_ok = self.last_check_ok.load(Ordering::Relaxed);
        let within_grace = last_ok > 0
            && self
                .started
                .elapsed()
                .saturating_sub(Duration::from_millis(last_ok))
                <= REVOCATION_GRACE;
        let seen_revoked = self.was_seen_revoked(&claims.job_id);
        match access::unchecked(self.fail_closed, within_grace, seen_revoked) {
            Unchecked::Revoked => Err(AuthError::Revoked),
            Unchecked::Refuse => {
                tracing::warn!(job_id = %claims.job_id, %error, "revocation unchecked; refusing (fail-closed)");
                Err(AuthError::Unavailable(error.to_owned()))
            }
            Unchecked::LetThrough => {
                self.unchecked.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job_id = %claims.job_id, %error, within_grace, "revocation unchecked; letting through");
                Ok(claims)
            }
        }
    }

    fn remember_revoked(&self, job_id: &str) {
        let mut seen = self.seen_revoked.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        seen.retain(|_, at| now.duration_since(*at) < self.remember_for);
        seen.insert(job_id.to_owned(), now);
    }

    fn was_seen_revoked(&self, job_id: &str) -> bool {
        let seen = self.seen_revoked.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(job_id)
            .is_some_and(|at| at.elapsed() < self.remember_for)
    }
}

/// Adds the WIT `auth` interface (and its `caller` resource) to `linker`.
pub fn add_to_linker<T: CapabilitiesView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    wit_auth::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)
}

impl wit_auth::Host for CapabilitiesCtxView<'_> {
    async fn verify(
        &mut self,
        authorization: Option<String>,
    ) -> wasmtime::Result<Result<Resource<Caller>, wit_auth::AuthError>> {
        let caps = &self.ctx.capabilities;
        let verified = caps
            .auth
            .verify(authorization.as_deref(), self.ctx.peer, &caps.cache)
            .await;
        if matches!(verified, Err(AuthError::RateLimited(_))) {
            caps.metrics.rate_limited.inc();
        }
        match verified {
            Ok(claims) => {
                let caller = Caller::new(claims, self.ctx.request);
                Ok(Ok(self.table.push(caller)?))
            }
            Err(failure) => Ok(Err(auth_error(failure))),
        }
    }
}

impl wit_auth::HostCaller for CapabilitiesCtxView<'_> {
    async fn execution_id(&mut self, caller: Resource<Caller>) -> wasmtime::Result<String> {
        Ok(self.caller(&caller)?.claims().execution_id.clone())
    }

    async fn drop(&mut self, caller: Resource<Caller>) -> wasmtime::Result<()> {
        self.table.delete(caller)?;
        Ok(())
    }
}

/// The component's view of an `auth` failure.
fn auth_error(failure: AuthError) -> wit_auth::AuthError {
    use TokenError as T;
    use wit_auth::AuthError as W;
    match failure {
        AuthError::Token(T::MissingCredentials) => W::MissingCredentials,
        AuthError::Token(T::Malformed(why)) => W::Malformed(why),
        AuthError::Token(T::InvalidSignature) => W::InvalidSignature,
        AuthError::Token(T::UnsupportedAlgorithm(alg)) => W::UnsupportedAlgorithm(alg),
        AuthError::Token(T::Expired) => W::Expired,
        AuthError::Token(T::NotYetValid) => W::NotYetValid,
        AuthError::Token(T::TooOld) => W::TooOld,
        AuthError::Token(T::MissingClaim(claim)) => W::MissingClaim(claim),
        AuthError::Revoked => W::Revoked,
        AuthError::OtherExecution => W::OtherExecution,
        AuthError::Unavailable(why) => W::Unavailable(why),
        AuthError::RateLimited(seconds) => W::RateLimited(seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronium_rules::token::{Algorithm, TokenPolicy};

    const NOW: u64 = 1_800_000_000;

    fn auth() -> Auth {
        let verifier = TokenVerifier::new(
            b"a-test-secret-of-enough-length",
            Algorithm::Hs256,
            TokenPolicy::default(),
        )
        .unwrap();
        Auth::new(
            verifier,
            false,
            Duration::from_secs(7200),
            None,
            &MemoryBounds::default(),
        )
    }

    fn header(auth: &Auth, expires_at: u64) -> String {
        let token = auth.verifier.mint(&Claims {
            execution_id: "exec-1".into(),
            job_id: "job-1".into(),
            user_id: None,
            event_id: None,
            capability_token: None,
            issued_at: NOW - 10,
            expires_at: Some(expires_at),
        });
        format!("Bearer {token}")
    }

    #[tokio::test]
    async fn a_one_execution_host_refuses_every_other_executions_token() {
        let cache = Cache::Memory(MemoryCache::new(Duration::from_secs(60), 100));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let sidecar = auth().for_execution("exec-1".into());
        let mint = |execution_id: &str| {
            let token = sidecar.verifier.mint(&Claims {
                execution_id: execution_id.into(),
                job_id: execution_id.into(),
                user_id: None,
                event_id: None,
                capability_token: None,
                issued_at: now - 10,
                expires_at: Some(now + 600),
            });
            format!("Bearer {token}")
        };
        let own = sidecar.verify(Some(&mint("exec-1")), None, &cache).await;
        assert_eq!(own.map(|c| c.execution_id), Ok("exec-1".to_owned()));
        let other = sidecar.verify(Some(&mint("exec-2")), None, &cache).await;
        assert_eq!(other, Err(AuthError::OtherExecution));
        // A host without EXECUTION_ID serves both.
        let shared = auth();
        assert!(
            shared
                .verify(Some(&mint("exec-2")), None, &cache)
                .await
                .is_ok()
        );
    }

    #[test]
    fn a_remembered_token_is_refused_once_it_expires_and_only_its_bytes_match() {
        let auth = auth();
        let header = header(&auth, NOW + 60);
        assert!(auth.verify_token(Some(&header), NOW).is_ok());
        assert!(auth.verify_token(Some(&header), NOW + 90).is_ok(), "leeway");
        assert_eq!(
            auth.verify_token(Some(&header), NOW + 91),
            Err(TokenError::Expired)
        );
        // One byte changed in the signature is verified, and refused.
        let mut forged = header.clone().into_bytes();
        let at = forged.len() - 5;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(auth.verify_token(Some(&forged), NOW).is_err());
    }
}
