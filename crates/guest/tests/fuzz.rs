//! Property-based fuzzing of what every component parses from requests:
//! percent-encoded path segments and JSON bodies.

use cronium_guest::{Request, path};
use proptest::prelude::*;
use spin_sdk::http::Method;

/// Percent-encodes every byte outside the unreserved set.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

proptest! {
    #[test]
    fn decoding_an_encoded_key_gives_the_key_back(key in "\\PC{0,200}") {
        prop_assert_eq!(path::decode(&encode(&key)).unwrap(), key);
    }

    #[test]
    fn arbitrary_paths_decode_or_fail_with_400(raw in "[ -~]{0,300}") {
        if let Err(error) = path::decode(&raw) {
            prop_assert_eq!(error.status, 400);
        }
        let _ = path::segments(&raw);
    }

    #[test]
    fn arbitrary_bodies_parse_or_fail_with_400(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let request = Request::new(Method::Post, "/executions/e/output", Vec::new(), body);
        if let Err(error) = request.json::<serde_json::Value>() {
            prop_assert_eq!(error.status, 400);
        }
    }

    #[test]
    fn deeply_nested_json_is_refused_not_a_stack_overflow(depth in 1usize..100_000) {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        let request = Request::new(Method::Post, "/executions/e/output", Vec::new(), body);
        let parsed = request.json::<serde_json::Value>();
        prop_assert!(parsed.is_ok() || parsed.unwrap_err().status == 400);
    }
}
