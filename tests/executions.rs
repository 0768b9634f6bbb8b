//! The executions API end to end: the real host binary, a real Valkey, a
//! fake Cronium backend. Each test states one behaviour of `docs/api.md`.

use crate::support;

use std::time::Duration;

use cronium_rules::token::{Algorithm, Claims};
use serde_json::{Value, json};
use support::client::{call_chunked, expect_continue};
use support::{
    Area, FakeBackend, HostConfig, World, call, claims, eventually, now, token, token_for,
};

/// A host on a fresh Valkey and fake backend, with execution `exec-1`.
/// This file's area of the shared [`World`] ([`Area`]).
enum ExecutionsArea {}
type ExecutionsWorld = Area<ExecutionsArea>;

impl ExecutionsWorld {
    async fn start() -> Self {
        Self::start_with(|c| c).await
    }

    async fn start_with(configure: impl FnOnce(HostConfig) -> HostConfig) -> Self {
        let prepare = |backend: &FakeBackend| {
            backend.add_execution(
                "exec-1",
                "user-1",
                Some(json!({"greeting": "hello", "n": [1, 2]})),
            )
        };
        Self::new(World::serving(prepare, configure).await)
    }

    async fn get(&self, path: &str, token: &str) -> support::Reply {
        let auth = format!("Bearer {token}");
        call(
            "GET",
            &self.host.url(path),
            &[("authorization", &auth)],
            None,
        )
        .await
    }

    async fn post(&self, path: &str, token: &str, body: &[u8]) -> support::Reply {
        let auth = format!("Bearer {token}");
        call(
            "POST",
            &self.host.url(path),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body),
        )
        .await
    }
}

const CONTEXT: &str = "/api/internal/executions/exec-1/context";

// ---- health and routing ----

#[tokio::test]
async fn health_answers_without_a_token() {
    let w = ExecutionsWorld::start().await;
    let reply = call("GET", &w.host.url("/health"), &[], None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["status"], "healthy");
    let time = reply.json["time"].as_str().unwrap();
    assert!(time.len() >= 20 && time.contains('T'), "RFC 3339: {time}");
}

#[tokio::test]
async fn unknown_routes_are_a_json_404() {
    let w = ExecutionsWorld::start().await;
    for path in [
        "/",
        "/nope",
        "/executions/exec-1",
        "/executions/exec-1/other",
        "/executions/exec-1/input/x",
    ] {
        let reply = w.get(path, &token("exec-1")).await;
        assert_eq!(reply.status, 404, "{path}");
        reply.error_message();
    }
}

#[tokio::test]
async fn a_known_route_with_the_wrong_method_is_a_json_405() {
    let w = ExecutionsWorld::start().await;
    let reply = w
        .post("/executions/exec-1/input", &token("exec-1"), b"{}")
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
    reply.error_message();
    let reply = w.get("/executions/exec-1/output", &token("exec-1")).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_callers() {
    let w = ExecutionsWorld::start().await;
    let reply = call(
        "GET",
        &w.host.url("/health"),
        &[("x-request-id", "abc-123")],
        None,
    )
    .await;
    assert_eq!(reply.header("x-request-id"), Some("abc-123"));
    let reply = call("GET", &w.host.url("/nope"), &[], None).await;
    assert_eq!(reply.header("x-request-id").map(str::len), Some(32));
}

// ---- input and context ----

#[tokio::test]
async fn input_is_the_executions_metadata_input() {
    let w = ExecutionsWorld::start().await;
    let reply = w.get("/executions/exec-1/input", &token("exec-1")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json,
        json!({"success": true, "data": {"greeting": "hello", "n": [1, 2]}})
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn an_execution_without_input_answers_null_data() {
    let w = ExecutionsWorld::start().await;
    w.backend.add_execution("exec-2", "user-1", None);
    let reply = w.get("/executions/exec-2/input", &token("exec-2")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json, json!({"success": true, "data": null}));
}

#[tokio::test]
async fn an_input_far_larger_than_one_write_comes_back_whole() {
    let w = ExecutionsWorld::start().await;
    // ~600 KiB of varied rows: the answer takes many writes of the body.
    let rows: Vec<_> = (0..20_000)
        .map(|i| json!({"row": i, "name": format!("item-{i}")}))
        .collect();
    w.backend
        .add_execution("exec-big", "user-1", Some(json!({ "rows": rows })));
    for _ in 0..2 {
        // From the backend, then from the cache.
        let reply = w
            .get("/executions/exec-big/input", &token("exec-big"))
            .await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.len() > 500 * 1024, "{}", reply.body.len());
        assert_eq!(
            reply.json["data"]["rows"].as_array().map(Vec::len),
            Some(20_000)
        );
        assert_eq!(reply.json["data"]["rows"][19_999]["name"], "item-19999");
    }
}

#[tokio::test]
async fn input_is_read_from_the_backend_once_then_from_the_cache() {
    let w = ExecutionsWorld::start().await;
    for _ in 0..3 {
        assert_eq!(
            w.get("/executions/exec-1/input", &token("exec-1"))
                .await
                .status,
            200
        );
    }
    assert_eq!(
        w.get("/executions/exec-1/context", &token("exec-1"))
            .await
            .status,
        200
    );
    assert_eq!(w.backend.count("GET", CONTEXT), 1);
    let cached: Option<String> = redis::cmd("GET")
        .arg("cronium:exec:exec-1")
        .query(&mut w.valkey.connection())
        .unwrap();
    assert!(cached.unwrap().contains("\"userId\":\"user-1\""));
}

#[tokio::test]
async fn execution_records_are_also_kept_in_process_and_only_for_their_own_execution() {
    let w = ExecutionsWorld::start().await;
    w.backend
        .add_execution("exec-2", "user-2", Some(json!({"other": true})));
    let first = w.get("/executions/exec-1/input", &token("exec-1")).await;
    assert_eq!(
        first.json["data"],
        json!({"greeting": "hello", "n": [1, 2]})
    );
    // Gone from Valkey and from the backend: the host still has its copy.
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut w.valkey.connection())
        .unwrap();
    w.backend.state().executions.remove("exec-1");
    let again = w.get("/executions/exec-1/input", &token("exec-1")).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json["data"], first.json["data"]);
    let other = w.get("/executions/exec-2/input", &token("exec-2")).await;
    assert_eq!(other.json["data"], json!({"other": true}));
    assert_eq!(w.backend.count("GET", CONTEXT), 1);
}

#[tokio::test]
async fn context_has_the_contract_fields_with_event_name_and_type_from_the_nested_event() {
    let w = ExecutionsWorld::start().await;
    let reply = w.get("/executions/exec-1/context", &token("exec-1")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["success"], true);
    let data = &reply.json["data"];
    assert_eq!(data["executionId"], "exec-1");
    assert_eq!(data["jobId"], "job-exec-1");
    assert_eq!(data["eventId"], "event-1");
    assert_eq!(data["eventName"], "Nightly report");
    assert_eq!(data["eventType"], "PYTHON");
    assert_eq!(data["userId"], "user-1");
    assert_eq!(data["metadata"]["input"]["greeting"], "hello");
    assert!(data.as_object().unwrap().contains_key("startTime"));
}

#[tokio::test]
async fn backend_reads_send_the_backend_token_the_execution_id_and_the_capability() {
    let w = ExecutionsWorld::start().await;
    let token = token_for(&Claims {
        capability_token: Some("cap-xyz".into()),
        ..claims("exec-1")
    });
    assert_eq!(
        w.get("/executions/exec-1/context", &token).await.status,
        200
    );
    let state = w.backend.state();
    let sent = state.requests.iter().find(|r| r.path == CONTEXT).unwrap();
    assert_eq!(
        sent.headers["authorization"],
        format!("Bearer {}", support::BACKEND_TOKEN)
    );
    assert_eq!(sent.headers["x-execution-id"], "exec-1");
    assert_eq!(sent.headers["x-job-capability"], "cap-xyz");
}

#[tokio::test]
async fn an_unknown_execution_is_a_404() {
    let w = ExecutionsWorld::start().await;
    let reply = w.get("/executions/ghost/input", &token("ghost")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_message(), "execution not found");
}

#[tokio::test]
async fn reads_that_reach_the_backend_are_audited_and_cache_hits_are_not() {
    let w = ExecutionsWorld::start().await;
    w.get("/executions/exec-1/input", &token("exec-1")).await;
    w.get("/executions/exec-1/input", &token("exec-1")).await;
    assert!(
        eventually(Duration::from_secs(5), || !w
            .backend
            .audit_events("get_input")
            .is_empty())
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = w.backend.audit_events("get_input");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["executionId"], "exec-1");
    assert_eq!(events[0]["metadata"]["userId"], "user-1");
    assert_eq!(events[0]["metadata"]["jobId"], "job-exec-1");
    assert_eq!(events[0]["metadata"]["outcome"], "ok");
    assert!(events[0]["timestamp"].is_string());
}

#[tokio::test]
async fn a_backend_that_is_down_gives_503_with_retry_after_on_an_uncached_read() {
    let w = ExecutionsWorld::start().await;
    w.backend.state().down = true;
    let reply = w.get("/executions/exec-1/input", &token("exec-1")).await;
    assert_eq!(reply.status, 503);
    assert!(reply.header("retry-after").is_some());
    let message = reply.error_message().to_owned();
    assert!(
        !message.contains("127.0.0.1"),
        "no internal address in {message}"
    );
    // The read was retried (idempotent) before giving up.
    assert!(w.backend.count("GET", CONTEXT) >= 2);
}

// ---- output ----

#[tokio::test]
async fn output_of_any_json_is_written_to_the_backend_with_a_timestamp() {
    let w = ExecutionsWorld::start().await;
    let values = [
        json!({"rows": 3, "ok": true}),
        json!([1, "two", null]),
        json!("text"),
        json!(42),
        json!(null),
    ];
    for value in &values {
        let body = json!({ "data": value }).to_string();
        let reply = w
            .post(
                "/executions/exec-1/output",
                &token("exec-1"),
                body.as_bytes(),
            )
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json, json!({"success": true}));
    }
    let state = w.backend.state();
    let written: Vec<&Value> = state
        .outputs
        .iter()
        .map(|(_, body)| &body["output"])
        .collect();
    assert_eq!(written, values.iter().collect::<Vec<_>>());
    assert!(
        state
            .outputs
            .iter()
            .all(|(id, body)| id == "exec-1" && body["timestamp"].is_string())
    );
}

#[tokio::test]
async fn output_is_audited_with_its_size_but_not_its_content() {
    let w = ExecutionsWorld::start().await;
    let body = json!({"data": {"secret-ish": "do not log me"}}).to_string();
    w.post(
        "/executions/exec-1/output",
        &token("exec-1"),
        body.as_bytes(),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || !w
            .backend
            .audit_events("set_output")
            .is_empty())
        .await
    );
    let event = &w.backend.audit_events("set_output")[0];
    assert_eq!(event["metadata"]["outcome"], "ok");
    assert!(event["metadata"]["bytes"].as_u64().unwrap() > 0);
    assert!(!event.to_string().contains("do not log me"));
}

#[tokio::test]
async fn output_bodies_that_are_not_the_contract_are_400() {
    let w = ExecutionsWorld::start().await;
    for body in [
        &b""[..],
        b"   ",
        b"not json",
        b"{\"data\":",
        b"{\"other\":1}",
        b"[1,2]",
        b"\"data\"",
    ] {
        let reply = w
            .post("/executions/exec-1/output", &token("exec-1"), body)
            .await;
        assert_eq!(reply.status, 400, "{:?}", String::from_utf8_lossy(body));
        reply.error_message();
    }
    assert!(w.backend.state().outputs.is_empty());
}

#[tokio::test]
async fn output_up_to_five_mebibytes_is_accepted_and_over_it_is_413() {
    let w = ExecutionsWorld::start().await;
    let fits = format!("{{\"data\":\"{}\"}}", "x".repeat(5 * 1024 * 1024 - 11));
    assert_eq!(fits.len(), 5 * 1024 * 1024);
    let reply = w
        .post(
            "/executions/exec-1/output",
            &token("exec-1"),
            fits.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");

    let over = format!("{{\"data\":\"{}\"}}", "x".repeat(5 * 1024 * 1024 - 10));
    let reply = w
        .post(
            "/executions/exec-1/output",
            &token("exec-1"),
            over.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 413);
    reply.error_message();
    assert_eq!(w.backend.state().outputs.len(), 1);
}

#[tokio::test]
async fn an_oversized_chunked_body_is_413_too() {
    let w = ExecutionsWorld::start().await;
    let auth = format!("Bearer {}", token("exec-1"));
    let chunks = vec![vec![b' '; 1024 * 1024]; 6];
    let reply = call_chunked(
        &w.host.url("/executions/exec-1/output"),
        &[("authorization", &auth)],
        chunks,
    )
    .await;
    assert_eq!(reply.status, 413);
}

#[tokio::test]
async fn other_routes_cap_bodies_at_one_mebibyte() {
    let w = ExecutionsWorld::start().await;
    let over = format!(
        "{{\"condition\":true,\"pad\":\"{}\"}}",
        "x".repeat(1024 * 1024)
    );
    let reply = w
        .post(
            "/executions/exec-1/condition",
            &token("exec-1"),
            over.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 413);
}

#[tokio::test]
async fn chunked_bodies_as_the_node_sdk_sends_them_work() {
    let w = ExecutionsWorld::start().await;
    let auth = format!("Bearer {}", token("exec-1"));
    let chunks = vec![
        b"{\"da".to_vec(),
        b"ta\":{\"from\":".to_vec(),
        b"\"node\"}}".to_vec(),
    ];
    let reply = call_chunked(
        &w.host.url("/executions/exec-1/output"),
        &[("authorization", &auth)],
        chunks,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        w.backend.state().outputs[0].1["output"],
        json!({"from": "node"})
    );
}

#[tokio::test]
async fn expect_100_continue_as_curl_sends_it_works() {
    let w = ExecutionsWorld::start().await;
    let body = br#"{"data":{"from":"curl"}}"#;
    let head = format!(
        "POST /executions/exec-1/output HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        token("exec-1"),
        body.len()
    );
    let addr = w.host.addr();
    let (interim, rest) = tokio::task::spawn_blocking(move || expect_continue(&addr, &head, body))
        .await
        .unwrap();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert_eq!(
        w.backend.state().outputs[0].1["output"],
        json!({"from": "curl"})
    );
}

#[tokio::test]
async fn a_backend_success_false_becomes_a_502_with_its_error_as_message() {
    let w = ExecutionsWorld::start().await;
    w.backend.state().output_answer = Some((
        200,
        json!({"success": false, "error": "output store is full"}),
    ));
    let reply = w
        .post(
            "/executions/exec-1/output",
            &token("exec-1"),
            br#"{"data":1}"#,
        )
        .await;
    assert_eq!(reply.status, 502);
    assert!(
        reply.error_message().contains("output store is full"),
        "{reply:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || !w
            .backend
            .audit_events("set_output")
            .is_empty())
        .await
    );
    assert_eq!(
        w.backend.audit_events("set_output")[0]["metadata"]["outcome"],
        "bad_gateway"
    );
}

// ---- condition ----

#[tokio::test]
async fn condition_true_and_false_are_written_to_the_backend() {
    let w = ExecutionsWorld::start().await;
    for condition in [true, false] {
        let body = json!({ "condition": condition }).to_string();
        let reply = w
            .post(
                "/executions/exec-1/condition",
                &token("exec-1"),
                body.as_bytes(),
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json, json!({"success": true}));
    }
    let written: Vec<Value> = w
        .backend
        .state()
        .conditions
        .iter()
        .map(|(_, b)| b["condition"].clone())
        .collect();
    assert_eq!(written, [json!(true), json!(false)]);
    assert!(
        eventually(Duration::from_secs(5), || w
            .backend
            .audit_events("set_condition")
            .len()
            == 2)
        .await
    );
    assert_eq!(
        w.backend.audit_events("set_condition")[0]["metadata"]["condition"],
        true
    );
}

#[tokio::test]
async fn a_condition_that_is_not_a_boolean_is_400() {
    let w = ExecutionsWorld::start().await;
    for body in [
        &br#"{"condition":"true"}"#[..],
        br#"{"condition":1}"#,
        br#"{"condition":null}"#,
        b"{}",
        b"",
    ] {
        let reply = w
            .post("/executions/exec-1/condition", &token("exec-1"), body)
            .await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(body));
        reply.error_message();
    }
    assert!(w.backend.state().conditions.is_empty());
}

// ---- tokens: every 401 and 403 of the contract ----

async fn status_with_header(w: &World, header: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = header
        .map(|h| vec![("authorization", h)])
        .unwrap_or_default();
    let reply = call(
        "GET",
        &w.host.url("/executions/exec-1/input"),
        &headers,
        None,
    )
    .await;
    let message = reply.error_message().to_owned();
    (reply.status, message)
}

#[tokio::test]
async fn a_request_without_authorization_is_401() {
    let w = ExecutionsWorld::start().await;
    assert_eq!(status_with_header(&w, None).await.0, 401);
}

#[tokio::test]
async fn authorization_that_is_not_a_bearer_token_is_401() {
    let w = ExecutionsWorld::start().await;
    let token = token("exec-1");
    for header in [
        format!("Basic {token}"),
        token.clone(),
        "Bearer".into(),
        "Bearer ".into(),
        "Bearer not.a.jwt".into(),
    ] {
        assert_eq!(
            status_with_header(&w, Some(&header)).await.0,
            401,
            "{header}"
        );
    }
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_401() {
    let w = ExecutionsWorld::start().await;
    let other = support::signer(b"some-other-secret-entirely", Algorithm::Hs256);
    let (status, message) = status_with_header(
        &w,
        Some(&format!("Bearer {}", other.mint(&claims("exec-1")))),
    )
    .await;
    assert_eq!((status, message.as_str()), (401, "invalid token signature"));
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let w = ExecutionsWorld::start().await;
    let expired = token_for(&Claims {
        expires_at: Some(now() - 120),
        issued_at: now() - 600,
        ..claims("exec-1")
    });
    let (status, message) = status_with_header(&w, Some(&format!("Bearer {expired}"))).await;
    assert_eq!((status, message.as_str()), (401, "token has expired"));
}

#[tokio::test]
async fn a_token_not_yet_valid_is_401() {
    let w = ExecutionsWorld::start().await;
    let future = token_for(&Claims {
        issued_at: now() + 600,
        expires_at: Some(now() + 1200),
        ..claims("exec-1")
    });
    let (status, message) = status_with_header(&w, Some(&format!("Bearer {future}"))).await;
    assert_eq!((status, message.as_str()), (401, "token is not valid yet"));
}

#[tokio::test]
async fn a_token_past_its_absolute_lifetime_is_401_even_before_exp() {
    let w = ExecutionsWorld::start().await;
    let old = token_for(&Claims {
        issued_at: now() - 3 * 3600,
        expires_at: Some(now() + 3600),
        ..claims("exec-1")
    });
    let (status, _) = status_with_header(&w, Some(&format!("Bearer {old}"))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_token_with_another_algorithm_is_401() {
    let w = ExecutionsWorld::start().await;
    let hs512 = support::signer(support::SECRET.as_bytes(), Algorithm::Hs512);
    let (status, message) = status_with_header(
        &w,
        Some(&format!("Bearer {}", hs512.mint(&claims("exec-1")))),
    )
    .await;
    assert_eq!(
        (status, message.as_str()),
        (401, "token algorithm HS512 is not accepted")
    );
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_401() {
    let w = ExecutionsWorld::start().await;
    let signed = token("exec-1");
    let mut parts = signed.split('.');
    let _header = parts.next();
    let payload = parts.next().unwrap();
    // {"alg":"none","typ":"JWT"}, base64url.
    let forged = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let (status, _) = status_with_header(&w, Some(&format!("Bearer {forged}"))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn tokens_without_execution_id_or_job_id_are_401() {
    let w = ExecutionsWorld::start().await;
    let verifier = support::signer(support::SECRET.as_bytes(), Algorithm::Hs256);
    let no_job = verifier.mint(&Claims {
        job_id: String::new(),
        ..claims("exec-1")
    });
    let (status, message) = status_with_header(&w, Some(&format!("Bearer {no_job}"))).await;
    assert_eq!(
        (status, message.as_str()),
        (401, "token has no jobId claim")
    );
    let no_execution = verifier.mint(&Claims {
        execution_id: String::new(),
        ..claims("exec-1")
    });
    let (status, message) = status_with_header(&w, Some(&format!("Bearer {no_execution}"))).await;
    assert_eq!(
        (status, message.as_str()),
        (401, "token has no executionId claim")
    );
}

#[tokio::test]
async fn a_token_for_another_execution_is_403() {
    let w = ExecutionsWorld::start().await;
    w.backend
        .add_execution("exec-2", "user-1", Some(json!("theirs")));
    let reply = w.get("/executions/exec-2/input", &token("exec-1")).await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.error_message(),
        "token is not valid for this execution"
    );
    assert_eq!(
        w.backend
            .count("GET", "/api/internal/executions/exec-2/context"),
        0
    );
}

#[tokio::test]
async fn a_revoked_jobs_token_is_403_on_every_route() {
    let w = ExecutionsWorld::start().await;
    let _: () = redis::cmd("SET")
        .arg("cronium:exec-revoked:job-exec-1")
        .arg("1")
        .query(&mut w.valkey.connection())
        .unwrap();
    // Pushed to the host (CLIENT TRACKING) within about a second, not at
    // once: wait for it, then every route must refuse.
    support::api::until_refused(&w.host, "exec-1", Duration::from_millis(1500)).await;
    let auth = format!("Bearer {}", token("exec-1"));
    let body = br#"{"data":1,"condition":true,"value":1}"#;
    for (method, path) in [
        ("GET", "/executions/exec-1/input"),
        ("GET", "/executions/exec-1/context"),
        ("POST", "/executions/exec-1/output"),
        ("POST", "/executions/exec-1/condition"),
        ("GET", "/executions/exec-1/variables/k"),
        ("PUT", "/executions/exec-1/variables/k"),
        ("DELETE", "/executions/exec-1/variables/k"),
    ] {
        let reply = call(
            method,
            &w.host.url(path),
            &[("authorization", &auth)],
            Some(body),
        )
        .await;
        assert_eq!(reply.status, 403, "{method} {path}");
        assert_eq!(reply.error_message(), "this job's tokens have been revoked");
    }
    assert!(w.backend.state().outputs.is_empty());
}

#[tokio::test]
async fn container_tokens_with_snake_case_job_id_are_accepted() {
    let w = ExecutionsWorld::start().await;
    let payload = json!({
        "executionId": "exec-1", "job_id": "job-exec-1", "scope": "execution",
        "iat": now(), "exp": now() + 300,
    });
    let token = sign_json(&payload);
    assert_eq!(w.get("/executions/exec-1/input", &token).await.status, 200);
}

/// Signs arbitrary claims as the orchestrator's container code would.
fn sign_json(payload: &Value) -> String {
    use jwt_simple::prelude::*;
    let key = HS256Key::from_bytes(support::SECRET.as_bytes());
    let custom: serde_json::Map<String, Value> = payload
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "iat" | "exp"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut claims =
        jwt_simple::claims::Claims::with_custom_claims(custom, Duration::from_secs(300));
    claims.issued_at = payload["iat"].as_u64().map(UnixTimeStamp::from_secs);
    claims.expires_at = payload["exp"].as_u64().map(UnixTimeStamp::from_secs);
    key.authenticate(claims).unwrap()
}

#[tokio::test]
async fn errors_never_leak_the_backend_address() {
    let w = ExecutionsWorld::start().await;
    w.backend.state().down = true;
    let reply = w
        .post(
            "/executions/exec-1/output",
            &token("exec-1"),
            br#"{"data":1}"#,
        )
        .await;
    assert_eq!(reply.status, 503);
    assert!(!String::from_utf8_lossy(&reply.body).contains(&w.backend.url()));
}
