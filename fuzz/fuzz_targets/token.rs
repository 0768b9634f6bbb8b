//! `Authorization` header to claims: [`TokenVerifier::verify_header`].
//!
//! The first byte picks what the rest is:
//! * even: the header itself, as a script could send it;
//! * odd: a JWT payload (the claims' JSON), signed here with the
//!   verifier's own secret, so that the fuzzer reaches the claim checks
//!   behind the signature.
//!
//! Whatever it accepts must hold: a lifetime within the policy's, an `exp`
//! not passed, and a token minted from the claims that verifies to the
//! same claims.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cronium_rules::token::{Algorithm, TokenPolicy, TokenVerifier};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const SECRET: &[u8] = b"a fuzzing secret, thirty-two bytes";
/// The verifier's clock: 2027-01-15.
const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let policy = TokenPolicy::default();
    let verifier = TokenVerifier::new(SECRET, Algorithm::Hs256, policy).unwrap();
    let header = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        format!("Bearer {}", signed(rest))
    };
    let Ok(claims) = verifier.verify_header(Some(&header), NOW) else {
        return;
    };
    assert!(
        NOW.saturating_sub(claims.issued_at) <= policy.max_lifetime.as_secs(),
        "accepted past its lifetime: {claims:?}"
    );
    if let Some(exp) = claims.expires_at {
        assert!(
            exp + policy.leeway.as_secs() >= NOW,
            "accepted after its exp: {claims:?}"
        );
    }
    let until = verifier.valid_until(&claims);
    assert!(
        until >= NOW,
        "remembered as valid until {until}: {claims:?}"
    );
    // Minting is how tests and the `token` command make tokens: what it
    // makes from accepted claims verifies to them (with the exp it gives).
    if claims.issued_at <= NOW {
        let minted = verifier.mint(&claims);
        let again = verifier
            .verify(&minted, NOW)
            .unwrap_or_else(|e| panic!("minted from {claims:?}, refused: {e}"));
        let mut expected = claims.clone();
        expected.expires_at = Some(
            claims
                .expires_at
                .unwrap_or(claims.issued_at + policy.max_lifetime.as_secs()),
        );
        assert_eq!(again, expected);
    }
});

/// A compact HS256 JWT of `payload`, signed with [`SECRET`].
fn signed(payload: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let mac = hmac_sha256(SECRET, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac))
}

/// HMAC-SHA256 (RFC 2104), written out: the harness signs with a code path
/// of its own, not the verifier's.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}
