//! Property-based fuzzing of what the rules crate parses from the outside
//! world: tokens, backend answers, precondition headers. Each property runs
//! a few hundred generated cases in every `cargo test`; set
//! `PROPTEST_CASES` for a longer run.

use cronium_rules::token::{Algorithm, Claims, TokenPolicy, TokenVerifier, bearer_token};
use cronium_rules::variables::{Precondition, validate_key};
use cronium_rules::wire::{BackendContext, BackendVariable, error_message};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;

fn verifier() -> TokenVerifier {
    TokenVerifier::new(
        b"a-fuzzing-secret-of-some-length",
        Algorithm::Hs256,
        TokenPolicy::default(),
    )
    .unwrap()
}

fn claims() -> Claims {
    Claims {
        execution_id: "exec".into(),
        job_id: "job".into(),
        user_id: Some("user".into()),
        event_id: None,
        capability_token: None,
        issued_at: NOW,
        expires_at: Some(NOW + 60),
    }
}

proptest! {
    #[test]
    fn arbitrary_authorization_headers_never_panic(header in ".{0,600}") {
        let _ = verifier().verify_header(Some(&header), NOW);
        let _ = bearer_token(&header);
    }

    #[test]
    fn arbitrary_three_part_tokens_are_refused(a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,200}", c in "[A-Za-z0-9_-]{0,60}") {
        let token = format!("{a}.{b}.{c}");
        prop_assert!(verifier().verify(&token, NOW).is_err());
    }

    #[test]
    fn a_token_with_any_byte_changed_is_refused(index in 0usize..400, replacement in "[A-Za-z0-9_.-]") {
        let token = verifier().mint(&claims());
        let index = index % token.len();
        let mut bytes = token.into_bytes();
        let new = replacement.as_bytes()[0];
        prop_assume!(bytes[index] != new);
        bytes[index] = new;
        let forged = String::from_utf8(bytes).unwrap();
        // A change that still decodes to the same bytes (base64 padding
        // bits) is the same token; anything else must fail.
        if let Ok(claims_seen) = verifier().verify(&forged, NOW) {
            prop_assert_eq!(claims_seen, claims());
        }
    }

    #[test]
    fn arbitrary_backend_answers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(context) = BackendContext::parse(&body) {
            let _ = context.into_execution("e", Some("u"));
        }
        let _ = BackendVariable::parse(&body);
        let _ = error_message(&body);
    }

    #[test]
    fn json_shaped_backend_answers_never_panic(
        id in prop_oneof![Just("null".to_owned()), "[0-9]{1,20}", "\"[a-z]{0,8}\"", Just("{}".to_owned()), Just("[]".to_owned())],
        meta in prop_oneof![Just("null".to_owned()), Just("{}".to_owned()), Just("[1]".to_owned()), Just("\"x\"".to_owned()), Just("{\"input\":{\"a\":1}}".to_owned())],
    ) {
        let body = format!(r#"{{"executionId":{id},"jobId":{id},"userId":{id},"metadata":{meta},"event":{{"name":{id}}}}}"#);
        if let Ok(context) = BackendContext::parse(body.as_bytes()) {
            let _ = context.into_execution("e", None);
        }
    }

    #[test]
    fn arbitrary_precondition_headers_never_panic(if_match in proptest::option::of(".{0,80}"), if_none in proptest::option::of(".{0,80}"), current in proptest::option::of("\"[a-f0-9]{0,24}\"")) {
        let p = Precondition::from_headers(if_match.as_deref(), if_none.as_deref());
        let _ = p.holds(current.as_deref());
    }

    #[test]
    fn arbitrary_keys_are_accepted_or_refused_without_panicking(key in "\\PC{0,600}") {
        let _ = validate_key(&key);
    }
}
