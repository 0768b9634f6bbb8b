//! Property-based fuzzing of what the rules crate parses from the outside
//! world: tokens, backend answers, precondition headers, paths, batches. Each property runs
//! a few hundred generated cases in every `cargo test`; set
//! `PROPTEST_CASES` for a longer run.

use cronium_rules::batch::{self, Answer};
use cronium_rules::routes::{RouteGroup, group_for_path};
use cronium_rules::token::{Algorithm, Claims, TokenPolicy, TokenVerifier, bearer_token};
use cronium_rules::variables::{Precondition, validate_key};
use cronium_rules::wire::{BackendContext, BackendVariable, TokenFacts, error_message};
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
            let token = TokenFacts { user_id: Some("u".into()), issued_at: 1 };
            let _ = context.into_execution("e", &token);
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
            let _ = context.into_execution("e", &TokenFacts::default());
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

    #[test]
    fn arbitrary_paths_route_without_panicking(path in "/?[ -~]{0,200}") {
        let _ = group_for_path(&path);
    }

    #[test]
    fn arbitrary_batch_bodies_are_parsed_or_refused_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = batch::parse(&body, "exec");
    }

    #[test]
    fn batch_shaped_bodies_resolve_inside_this_api_or_are_refused(
        id in "\\PC{0,8}",
        method in prop_oneof![Just("GET"), Just("post"), Just("FETCH"), Just("")],
        url in prop_oneof!["[ -~]{0,40}", "/[a-z/%0-9?=]{0,40}", "\\PC{0,20}"],
        header in "[ -~]{0,12}",
    ) {
        let body = serde_json::json!({"requests": [
            {"id": id, "method": method, "url": url, "headers": {header: "v"}, "body": {"value": 1}},
        ]});
        if let Ok(requests) = batch::parse(body.to_string().as_bytes(), "exec") {
            let request = &requests[0];
            // Only paths of this API, never a full URL or another host.
            prop_assert!(request.path_with_query.starts_with('/'));
            prop_assert!(!request.path_with_query.starts_with("//"));
            prop_assert!(request.path_with_query.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert!(request.headers.iter().all(|(name, _)| name != "authorization" && name != "host"));
            let path = request.path_with_query.split('?').next().unwrap_or_default();
            prop_assert_ne!(group_for_path(path), Some(RouteGroup::Batch));
        }
    }

    #[test]
    fn a_batch_answer_is_json_whatever_the_routes_answered(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..8),
        header in "[ -~]{0,20}",
    ) {
        let mut answer = Answer::new();
        for (i, body) in bodies.into_iter().enumerate() {
            answer.push(&i.to_string(), 200, &[("x-h".into(), header.clone().into_bytes())], Some(body));
        }
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&answer.finish()).is_ok());
    }
}
