//! Execution tokens: HMAC-signed JWTs shared with the orchestrator.
//!
//! The rules (`docs/api.md`, "Tokens"): the signature verifies with the
//! configured secret and algorithm (any other `alg`, `none` included, is
//! refused); `exp` and `nbf` hold within a small leeway; the token is no
//! older than its absolute lifetime counted from `iat`, which is required;
//! `executionId` and `jobId` are present (`job_id` is read when `jobId` is
//! absent, as container tokens carry it). Ids may be strings or integers.
//! Revocation and the path's execution id are checked by the callers.

use std::time::Duration;

use jwt_simple::JWTError;
use jwt_simple::algorithms::{HS256Key, HS384Key, HS512Key, MACLike};
use jwt_simple::claims::JWTClaims;
use jwt_simple::common::VerificationOptions;
use jwt_simple::prelude::UnixTimeStamp;
use jwt_simple::token::Token;
use serde::{Deserialize, Serialize};

use crate::wire::id;

/// The shortest secret accepted. `jwt-simple` refuses HMAC keys shorter
/// than 12 bytes; we ask for a little more and say so at start-up.
pub const MIN_SECRET_LEN: usize = 16;

/// The HMAC algorithms a deployment can choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC with SHA-256 (`HS256`), the default.
    Hs256,
    /// HMAC with SHA-384 (`HS384`).
    Hs384,
    /// HMAC with SHA-512 (`HS512`).
    Hs512,
}

impl Algorithm {
    /// The JOSE name (`HS256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
        }
    }

    /// Parses a JOSE name, case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "HS256" => Some(Algorithm::Hs256),
            "HS384" => Some(Algorithm::Hs384),
            "HS512" => Some(Algorithm::Hs512),
            _ => None,
        }
    }
}

/// The time rules a deployment configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// The longest a token is accepted after its `iat`, whatever its `exp`.
    pub max_lifetime: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            leeway: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(2 * 60 * 60),
        }
    }
}

/// The claims of a verified token, as the runtime uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `executionId`: the one execution the token is for.
    pub execution_id: String,
    /// `jobId` (or `job_id`): the job whose revocation ends the token.
    pub job_id: String,
    /// `userId`, when the token has one.
    pub user_id: Option<String>,
    /// `eventId`, when the token has one.
    pub event_id: Option<String>,
    /// `capabilityToken`, passed on to the backend as `X-Job-Capability`.
    pub capability_token: Option<String>,
    /// `iat`, seconds since the Unix epoch.
    pub issued_at: u64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: Option<u64>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization` header.
    #[error("missing Authorization header")]
    MissingCredentials,
    /// Not `Bearer <token>`, not a JWT, or claims that do not read; and why
    /// (safe to show the caller).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not verify with the configured secret.
    #[error("invalid token signature")]
    InvalidSignature,
    /// The token's `alg` (at most 16 characters) is not the configured one
    /// (`none` included).
    #[error("token algorithm {0} is not accepted")]
    UnsupportedAlgorithm(String),
    /// Past `exp`, beyond the leeway.
    #[error("token has expired")]
    Expired,
    /// Before `nbf` (or issued in the future), beyond the leeway.
    #[error("token is not valid yet")]
    NotYetValid,
    /// Issued longer ago than [`TokenPolicy::max_lifetime`].
    #[error("token is older than its maximum lifetime")]
    TooOld,
    /// A required claim is absent (`iat`, `executionId`, `jobId`); its name.
    #[error("token has no {0} claim")]
    MissingClaim(String),
}

/// Why a secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the JWT secret must be at least {MIN_SECRET_LEN} bytes long (it is {0})")]
pub struct WeakSecretError(pub usize);

/// The custom claims of an execution token (JSON names of the orchestrator).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ExecutionClaims {
    #[serde(
        rename = "executionId",
        default,
        deserialize_with = "id",
        skip_serializing_if = "Option::is_none"
    )]
    execution_id: Option<String>,
    #[serde(
        rename = "jobId",
        default,
        deserialize_with = "id",
        skip_serializing_if = "Option::is_none"
    )]
    job_id: Option<String>,
    /// Container tokens are minted with `job_id` and `scope: "execution"`.
    #[serde(
        rename = "job_id",
        default,
        deserialize_with = "id",
        skip_serializing_if = "Option::is_none"
    )]
    job_id_snake: Option<String>,
    #[serde(
        rename = "userId",
        default,
        deserialize_with = "id",
        skip_serializing_if = "Option::is_none"
    )]
    user_id: Option<String>,
    #[serde(
        rename = "eventId",
        default,
        deserialize_with = "id",
        skip_serializing_if = "Option::is_none"
    )]
    event_id: Option<String>,
    #[serde(
        rename = "capabilityToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    capability_token: Option<String>,
}

/// The key of one of the HMAC algorithms.
enum Key {
    Hs256(HS256Key),
    Hs384(HS384Key),
    Hs512(HS512Key),
}

/// Verifies (and, for the `token` command and tests, mints) execution tokens.
pub struct TokenVerifier {
    key: Key,
    algorithm: Algorithm,
    policy: TokenPolicy,
}

impl TokenVerifier {
    /// A verifier for `secret` used with `algorithm`.
    pub fn new(
        secret: &[u8],
        algorithm: Algorithm,
        policy: TokenPolicy,
    ) -> Result<Self, WeakSecretError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(WeakSecretError(secret.len()));
        }
        let key = match algorithm {
            Algorithm::Hs256 => Key::Hs256(HS256Key::from_bytes(secret)),
            Algorithm::Hs384 => Key::Hs384(HS384Key::from_bytes(secret)),
            Algorithm::Hs512 => Key::Hs512(HS512Key::from_bytes(secret)),
        };
        Ok(TokenVerifier {
            key,
            algorithm,
            policy,
        })
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Verifies the value of an `Authorization` header at `now` (seconds
    /// since the Unix epoch).
    pub fn verify_header(
        &self,
        authorization: Option<&str>,
        now: u64,
    ) -> Result<Claims, TokenError> {
        let header = authorization.ok_or(TokenError::MissingCredentials)?;
        let token = bearer_token(header)?;
        self.verify(token, now)
    }

    /// Verifies a compact JWT at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let metadata =
            Token::decode_metadata(token).map_err(|_| TokenError::Malformed("not a JWT".into()))?;
        if metadata.algorithm() != self.algorithm.name() {
            return Err(TokenError::UnsupportedAlgorithm(
                metadata.algorithm().chars().take(16).collect(),
            ));
        }
        let options = VerificationOptions {
            time_tolerance: Some(self.policy.leeway.into()),
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            ..Default::default()
        };
        let claims: JWTClaims<ExecutionClaims> = match &self.key {
            Key::Hs256(k) => k.verify_token(token, Some(options)),
            Key::Hs384(k) => k.verify_token(token, Some(options)),
            Key::Hs512(k) => k.verify_token(token, Some(options)),
        }
        .map_err(token_error)?;
        let issued_at = claims
            .issued_at
            .ok_or_else(|| TokenError::MissingClaim("iat".into()))?
            .as_secs();
        // The absolute lifetime is ours to check (jwt-simple cannot tell a
        // missing `iat` from an old one).
        if now.saturating_sub(issued_at) > self.policy.max_lifetime.as_secs() {
            return Err(TokenError::TooOld);
        }
        let custom = claims.custom;
        let execution_id = custom
            .execution_id
            .ok_or_else(|| TokenError::MissingClaim("executionId".into()))?;
        let job_id = custom
            .job_id
            .or(custom.job_id_snake)
            .ok_or_else(|| TokenError::MissingClaim("jobId".into()))?;
        Ok(Claims {
            execution_id,
            job_id,
            user_id: custom.user_id,
            event_id: custom.event_id,
            capability_token: custom.capability_token,
            issued_at,
            expires_at: claims.expires_at.map(|t| t.as_secs()),
        })
    }

    /// The last second (since the Unix epoch) at which [`verify`] still
    /// accepts a token it accepted with these `claims`: its `exp` plus the
    /// leeway, and never past its absolute lifetime. A caller may remember
    /// a verified token until then instead of verifying it again.
    ///
    /// [`verify`]: TokenVerifier::verify
    pub fn valid_until(&self, claims: &Claims) -> u64 {
        let lifetime_end = claims
            .issued_at
            .saturating_add(self.policy.max_lifetime.as_secs());
        match claims.expires_at {
            Some(exp) => exp
                .saturating_add(self.policy.leeway.as_secs())
                .min(lifetime_end),
            None => lifetime_end,
        }
    }

    /// Mints a token for `claims`, valid from `claims.issued_at` until
    /// `claims.expires_at` (or for the maximum lifetime when it is `None`).
    pub fn mint(&self, claims: &Claims) -> String {
        let custom = ExecutionClaims {
            execution_id: Some(claims.execution_id.clone()),
            job_id: Some(claims.job_id.clone()),
            user_id: claims.user_id.clone(),
            event_id: claims.event_id.clone(),
            capability_token: claims.capability_token.clone(),
            ..Default::default()
        };
        let expires_at = claims
            .expires_at
            .unwrap_or(claims.issued_at + self.policy.max_lifetime.as_secs());
        let mut jwt = jwt_simple::claims::Claims::with_custom_claims(
            custom,
            jwt_simple::prelude::Duration::from_secs(0),
        );
        jwt.issued_at = Some(UnixTimeStamp::from_secs(claims.issued_at));
        jwt.invalid_before = Some(UnixTimeStamp::from_secs(claims.issued_at));
        jwt.expires_at = Some(UnixTimeStamp::from_secs(expires_at));
        let minted = match &self.key {
            Key::Hs256(k) => k.authenticate(jwt),
            Key::Hs384(k) => k.authenticate(jwt),
            Key::Hs512(k) => k.authenticate(jwt),
        };
        // Signing only fails for keys shorter than 12 bytes, which `new` refuses.
        minted.expect("HMAC signing with a validated key")
    }
}

/// Takes the token out of `Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Result<&str, TokenError> {
    let header = header.trim();
    let (scheme, token) = header
        .split_once(' ')
        .ok_or_else(|| TokenError::Malformed("expected 'Bearer <token>'".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Malformed("expected 'Bearer <token>'".into()));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Malformed("empty bearer token".into()));
    }
    Ok(token)
}

/// Maps `jwt-simple`'s errors onto ours without leaking its internals.
fn token_error(error: jwt_simple::Error) -> TokenError {
    match error.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag) => {
            TokenError::InvalidSignature
        }
        Some(JWTError::AlgorithmMismatch) => TokenError::UnsupportedAlgorithm("mismatch".into()),
        Some(JWTError::TokenHasExpired) => TokenError::Expired,
        Some(JWTError::TokenNotValidYet | JWTError::ClockDrift) => TokenError::NotYetValid,
        Some(JWTError::TokenIsTooOld) => TokenError::TooOld,
        Some(JWTError::TokenTooLong) => TokenError::Malformed("token is too long".into()),
        Some(JWTError::HeaderTooLarge) => TokenError::Malformed("token header is too large".into()),
        Some(_) => TokenError::Malformed("not a valid JWT".into()),
        // Claims that do not deserialize (e.g. an object where an id belongs).
        None => TokenError::Malformed("token claims are not valid".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::algorithms::HS256Key;
    use serde_json::json;

    const SECRET: &[u8] = b"a-test-secret-of-enough-length";
    const NOW: u64 = 1_800_000_000;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(SECRET, Algorithm::Hs256, TokenPolicy::default()).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            execution_id: "exec-1".into(),
            job_id: "job-1".into(),
            user_id: Some("user-1".into()),
            event_id: Some("ev-1".into()),
            capability_token: None,
            issued_at: NOW - 10,
            expires_at: Some(NOW + 600),
        }
    }

    /// Signs arbitrary JSON claims, as another issuer might.
    fn sign_raw(custom: serde_json::Value, iat: Option<u64>, exp: Option<u64>) -> String {
        let mut jwt = jwt_simple::claims::Claims::with_custom_claims(
            custom,
            jwt_simple::prelude::Duration::from_secs(0),
        );
        jwt.issued_at = iat.map(UnixTimeStamp::from_secs);
        jwt.invalid_before = None;
        jwt.expires_at = exp.map(UnixTimeStamp::from_secs);
        HS256Key::from_bytes(SECRET).authenticate(jwt).unwrap()
    }

    #[test]
    fn a_minted_token_verifies_to_the_same_claims() {
        let v = verifier();
        let token = v.mint(&claims());
        assert_eq!(v.verify(&token, NOW).unwrap(), claims());
    }

    #[test]
    fn bearer_scheme_is_required_but_case_insensitive() {
        let v = verifier();
        let token = v.mint(&claims());
        assert!(
            v.verify_header(Some(&format!("bearer {token}")), NOW)
                .is_ok()
        );
        assert!(matches!(
            v.verify_header(Some(&format!("Basic {token}")), NOW),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            v.verify_header(Some(&token), NOW),
            Err(TokenError::Malformed(_))
        ));
        assert_eq!(
            v.verify_header(None, NOW),
            Err(TokenError::MissingCredentials)
        );
    }

    #[test]
    fn a_verified_token_stays_valid_exactly_until_valid_until() {
        let v = verifier();
        for expires_at in [Some(NOW + 60), None] {
            let claims = Claims {
                expires_at,
                ..claims()
            };
            let token = v.mint(&claims);
            let verified = v.verify(&token, NOW).unwrap();
            let until = v.valid_until(&verified);
            assert!(
                v.verify(&token, until).is_ok(),
                "{expires_at:?}: at {until}"
            );
            assert!(
                v.verify(&token, until + 1).is_err(),
                "{expires_at:?}: after"
            );
        }
    }

    #[test]
    fn expiry_is_checked_with_the_leeway() {
        let v = verifier();
        let token = v.mint(&Claims {
            expires_at: Some(NOW - 10),
            ..claims()
        });
        assert!(v.verify(&token, NOW).is_ok(), "within the 30 s leeway");
        let token = v.mint(&Claims {
            expires_at: Some(NOW - 31),
            ..claims()
        });
        assert_eq!(v.verify(&token, NOW), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_from_the_future_is_not_valid_yet() {
        let v = verifier();
        let token = v.mint(&Claims {
            issued_at: NOW + 120,
            expires_at: Some(NOW + 600),
            ..claims()
        });
        assert_eq!(v.verify(&token, NOW), Err(TokenError::NotYetValid));
    }

    #[test]
    fn a_token_older_than_its_absolute_lifetime_is_refused_whatever_its_exp() {
        let v = verifier();
        let token = v.mint(&Claims {
            issued_at: NOW - 2 * 3600 - 1,
            expires_at: Some(NOW + 3600),
            ..claims()
        });
        assert_eq!(v.verify(&token, NOW), Err(TokenError::TooOld));
    }

    #[test]
    fn another_secret_fails_the_signature() {
        let other = TokenVerifier::new(
            b"another-secret-entirely",
            Algorithm::Hs256,
            TokenPolicy::default(),
        )
        .unwrap();
        let token = other.mint(&claims());
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(TokenError::InvalidSignature)
        );
    }

    #[test]
    fn another_algorithm_is_refused_even_with_the_right_secret() {
        let hs512 = TokenVerifier::new(SECRET, Algorithm::Hs512, TokenPolicy::default()).unwrap();
        let token = hs512.mint(&claims());
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(TokenError::UnsupportedAlgorithm("HS512".into()))
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let token = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(json!({"executionId":"exec-1","jobId":"j","iat":NOW})
                .to_string()
                .as_bytes())
        );
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
    }

    #[test]
    fn execution_id_job_id_and_iat_are_required() {
        let v = verifier();
        let t = sign_raw(json!({"jobId": "j"}), Some(NOW), Some(NOW + 60));
        assert_eq!(
            v.verify(&t, NOW),
            Err(TokenError::MissingClaim("executionId".into()))
        );
        let t = sign_raw(json!({"executionId": "e"}), Some(NOW), Some(NOW + 60));
        assert_eq!(
            v.verify(&t, NOW),
            Err(TokenError::MissingClaim("jobId".into()))
        );
        let t = sign_raw(
            json!({"executionId": "e", "jobId": "j"}),
            None,
            Some(NOW + 60),
        );
        assert_eq!(
            v.verify(&t, NOW),
            Err(TokenError::MissingClaim("iat".into()))
        );
    }

    #[test]
    fn container_tokens_with_snake_case_job_id_are_accepted() {
        let t = sign_raw(
            json!({"executionId": "e", "job_id": "j-snake", "scope": "execution"}),
            Some(NOW),
            Some(NOW + 60),
        );
        assert_eq!(verifier().verify(&t, NOW).unwrap().job_id, "j-snake");
    }

    #[test]
    fn integer_ids_are_read_as_text() {
        let t = sign_raw(
            json!({"executionId": 17, "jobId": 4, "userId": 9}),
            Some(NOW),
            None,
        );
        let c = verifier().verify(&t, NOW).unwrap();
        assert_eq!((c.execution_id.as_str(), c.job_id.as_str()), ("17", "4"));
        assert_eq!(c.user_id.as_deref(), Some("9"));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let v = verifier();
        for junk in ["", ".", "..", "a.b.c", "x".repeat(10_000).as_str(), "é.ü.ß"] {
            assert!(v.verify(junk, NOW).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn short_secrets_are_refused_at_construction() {
        assert!(TokenVerifier::new(b"short", Algorithm::Hs256, TokenPolicy::default()).is_err());
    }

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}
