//! A batch body (`POST /executions/{id}/batch`): [`batch::parse`], then the
//! answer built from the routes' responses ([`batch::Answer`]).
//!
//! Must hold: an accepted batch has at most `MAX_REQUESTS` requests with
//! unique ids, each resolved to an absolute path a request line can carry;
//! and the answer is JSON whatever bytes the routes answered, with one
//! response per request, in order, each body the route's JSON or its text.

#![no_main]

use cronium_rules::batch::{self, Answer, MAX_REQUESTS};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(requests) = batch::parse(data, "exec-1") else {
        return;
    };
    assert!(requests.len() <= MAX_REQUESTS);
    let mut ids = std::collections::HashSet::new();
    for request in &requests {
        assert!(ids.insert(request.id.as_str()), "{} twice", request.id);
        assert!(request.path_with_query.starts_with('/'));
        assert!(
            request
                .path_with_query
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'#'),
            "{}",
            request.path_with_query
        );
    }
    // Each route answers with bytes of the fuzzer's (its request's body,
    // cut at an arbitrary point: not always JSON, not always UTF-8).
    let mut answer = Answer::new();
    let mut bodies = Vec::new();
    for (n, request) in requests.iter().enumerate() {
        let body = request.body.map(|b| {
            let bytes = b.as_bytes();
            bytes[..bytes.len() * (n % 3 + 1) / 3].to_vec()
        });
        let headers = vec![("Content-Type".to_owned(), b"application/json".to_vec())];
        answer.push(&request.id, 200, &headers, body.clone());
        bodies.push(body);
    }
    let text = answer.finish();
    let parsed: Value = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "the answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&text)
        )
    });
    let responses = parsed["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), requests.len());
    for ((response, request), body) in responses.iter().zip(&requests).zip(&bodies) {
        assert_eq!(response["id"], request.id.as_str());
        match body {
            Some(body) if !body.is_empty() => {
                let expected = serde_json::from_slice::<Value>(body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
                assert_eq!(response["body"], expected);
            }
            _ => {}
        }
    }
});
