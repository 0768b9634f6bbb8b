//! `cronium:runtime/auth`. Verifies execution tokens with the
//! claim rules of `cronium-rules` (the custom host's own), then checks the
//! job's revocation and counts the request against the execution's rate
//! limit in Valkey, with the host's script, in one round trip.
//!
//! The verified claims stay here, in a [`VerifiedCaller`] behind the
//! `caller` resource: the endpoint component holds only the handle, and
//! the other capabilities of this adapter read the identity from it. Spin
//! makes an adapter instance per request, so a handle cannot outlive its
//! request here.
//!
//! Spin satisfies a dependency's imports from the host only, never from
//! another dependency, so this adapter talks to Valkey itself (through
//! Spin's Redis interface) rather than importing `cache`.
//!
//! Settings (Spin variables of the endpoint component), named and
//! defaulted as the custom host's environment: `jwt_secret` (required, at
//! least 16 bytes), `jwt_algorithm` (`HS256`), `jwt_leeway` (`30s`),
//! `token_max_lifetime` (`2h`), `valkey_url`, `rate_limit_per_min`
//! (`1000`, `0` turns it off), `revocation_fail_closed` (`false`).
//!
//! Differences from the custom host, because Spin makes a fresh instance
//! per request and does not tell a dependency the client's address:
//! while Valkey is down there is no memory of recently seen revocations
//! nor a local rate count (requests pass, or get 503 when
//! `revocation_fail_closed` is set), and failing tokens are not limited
//! per client address.

use cronium_rules::keys;
use cronium_rules::rate_limit::{self, Quota};
use cronium_rules::token::{
    Algorithm, Claims as TokenClaims, TokenError, TokenPolicy, TokenVerifier,
};
use cronium_rules::valkey::{self as commands, AccessAnswer};
use cronium_spin_support::valkey::{self, ValkeyError};
use cronium_spin_support::{now_secs, settings};
use spin_sdk::redis::RedisResult;

use std::cell::RefCell;

use crate::exports::cronium::runtime::auth::{AuthError, Caller, Guest, GuestCaller};

impl Guest for crate::Adapters {
    type Caller = VerifiedCaller;

    fn verify(authorization: Option<String>) -> Result<Caller, AuthError> {
        let settings = Settings::read().map_err(AuthError::Unavailable)?;
        let claims = settings
            .verifier
            .verify_header(authorization.as_deref(), now_secs())
            .map_err(token_error)?;
        check_access(&claims, &settings)?;
        Ok(Caller::new(VerifiedCaller {
            claims,
            user: RefCell::new(None),
        }))
    }
}

/// A verified caller: the token's claims, and the user who owns its
/// execution once the record was read (`backend::user_of`).
pub struct VerifiedCaller {
    pub claims: TokenClaims,
    pub user: RefCell<Option<String>>,
}

impl GuestCaller for VerifiedCaller {
    fn execution_id(&self) -> String {
        self.claims.execution_id.clone()
    }
}

/// What this request is checked against.
struct Settings {
    verifier: TokenVerifier,
    quota: Option<Quota>,
    fail_closed: bool,
}

impl Settings {
    /// Reads the Spin variables. A missing or weak secret is the
    /// operator's mistake: it answers 503, never lets a token through.
    fn read() -> Result<Self, String> {
        let secret = settings::get("jwt_secret").ok_or("no jwt_secret is configured")?;
        let algorithm = match settings::get("jwt_algorithm") {
            None => Algorithm::Hs256,
            Some(name) => Algorithm::from_name(&name)
                .ok_or_else(|| format!("jwt_algorithm {name:?}: use HS256, HS384 or HS512"))?,
        };
        let defaults = TokenPolicy::default();
        let policy = TokenPolicy {
            leeway: settings::duration("jwt_leeway", defaults.leeway)?,
            max_lifetime: settings::duration("token_max_lifetime", defaults.max_lifetime)?,
        };
        let verifier =
            TokenVerifier::new(secret.as_bytes(), algorithm, policy).map_err(|e| e.to_string())?;
        let per_minute: u32 = settings::number("rate_limit_per_min", 1000)?;
        Ok(Settings {
            verifier,
            quota: (per_minute > 0).then(|| Quota::per_minute(per_minute)),
            fail_closed: settings::boolean("revocation_fail_closed", false)?,
        })
    }
}

/// Revocation and the rate limit, in one script call (the host's).
fn check_access(claims: &TokenClaims, settings: &Settings) -> Result<(), AuthError> {
    let revoked_key = keys::revoked_job(&claims.job_id);
    let outcome = match settings.quota {
        Some(quota) => {
            let limiter_key = keys::rate_limit_execution(&claims.job_id, &claims.execution_id);
            // The execution record (immutable while it runs) comes along:
            // the endpoint reads it next, and this saves that round trip.
            let record_key = keys::execution(&claims.execution_id);
            let call =
                commands::check_access_and_peek(&revoked_key, &limiter_key, quota, &record_key);
            valkey::run_script(&call).and_then(|reply| match reply.as_slice() {
                [RedisResult::Int64(access), rest @ ..] => {
                    if let [RedisResult::Binary(record)] = rest {
                        valkey::prefetched(record_key, record.clone());
                    }
                    Ok(AccessAnswer::from_reply(*access))
                }
                other => Err(ValkeyError::Invalid(format!(
                    "the access script answered {other:?}"
                ))),
            })
        }
        None => valkey::command(&["EXISTS".to_owned(), revoked_key]).map(|reply| AccessAnswer {
            revoked: matches!(reply.as_slice(), [RedisResult::Int64(n)] if *n > 0),
            retry_after_us: 0,
        }),
    };
    match outcome {
        Ok(access) if access.revoked => Err(AuthError::Revoked),
        Ok(access) if access.retry_after_us > 0 => Err(AuthError::RateLimited(
            rate_limit::retry_after_secs(access.retry_after_us),
        )),
        Ok(_) => Ok(()),
        Err(ValkeyError::Unavailable(why) | ValkeyError::Invalid(why)) => {
            if settings.fail_closed {
                eprintln!("revocation unchecked ({why}); refusing (revocation_fail_closed)");
                Err(AuthError::Unavailable(why))
            } else {
                eprintln!("revocation unchecked ({why}); letting through");
                Ok(())
            }
        }
    }
}

fn token_error(error: TokenError) -> AuthError {
    match error {
        TokenError::MissingCredentials => AuthError::MissingCredentials,
        TokenError::Malformed(why) => AuthError::Malformed(why),
        TokenError::InvalidSignature => AuthError::InvalidSignature,
        TokenError::UnsupportedAlgorithm(alg) => AuthError::UnsupportedAlgorithm(alg),
        TokenError::Expired => AuthError::Expired,
        TokenError::NotYetValid => AuthError::NotYetValid,
        TokenError::TooOld => AuthError::TooOld,
        TokenError::MissingClaim(claim) => AuthError::MissingClaim(claim),
    }
}
