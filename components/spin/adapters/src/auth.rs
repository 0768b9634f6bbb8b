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

use cronium_rules::access::{self, Check, CheckAccess, Unchecked, Verdict};
use cronium_rules::keys;
use cronium_rules::rate_limit::Quota;
use cronium_rules::token::{
    Algorithm, Claims as TokenClaims, TokenError, TokenPolicy, TokenVerifier,
};
use cronium_spin_support::valkey;
use cronium_spin_support::{drive, now_secs, settings};

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
        let per_minute = settings::rate_limit_per_min(settings::get("rate_limit_per_min"))?;
        Ok(Settings {
            verifier,
            quota: cronium_rules::settings::quota(per_minute),
            fail_closed: settings::boolean("revocation_fail_closed", false)?,
        })
    }
}

/// Revocation and the rate limit, in one script call: the rules' access
/// check (the custom host's), driven on this instance's Valkey. Spin keeps
/// nothing between requests, so an unchecked request has no grace window
/// and no memory of revocations seen.
fn check_access(claims: &TokenClaims, settings: &Settings) -> Result<(), AuthError> {
    let check = CheckAccess::new(Check {
        job_id: claims.job_id.clone(),
        execution_id: claims.execution_id.clone(),
        quota: settings.quota,
        // The execution record (immutable while it runs) comes along:
        // the endpoint reads it next, and this saves that round trip.
        peek_record: true,
        split: false,
    });
    match drive::valkey(check) {
        Verdict::Pass { record } => {
            if let Some(record) = record {
                valkey::prefetched(keys::execution(&claims.execution_id), record);
            }
            Ok(())
        }
        Verdict::Revoked => Err(AuthError::Revoked),
        Verdict::RateLimited { retry_after_secs } => Err(AuthError::RateLimited(retry_after_secs)),
        Verdict::Unchecked { why } => match access::unchecked(settings.fail_closed, false, false) {
            Unchecked::LetThrough => {
                eprintln!("revocation unchecked ({why}); letting through");
                Ok(())
            }
            Unchecked::Revoked => Err(AuthError::Revoked),
            Unchecked::Refuse => {
                eprintln!("revocation unchecked ({why}); refusing (revocation_fail_closed)");
                Err(AuthError::Unavailable(why))
            }
        },
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
