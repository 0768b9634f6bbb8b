//! The batch route end to end (`docs/batch.md`): the real host binary, a real Valkey, the fake backend.
//! A batch answers each of its requests as its own route does, with the
//! same effects on the backend and the audit trail; its limits refuse a
//! batch before any of it runs.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::batch::{self, Call, call_of};
use support::{Area, FakeBackend, HostConfig, World, call, parity, token};

const MISBEHAVE: &str = env!("CRONIUM_TEST_MISBEHAVE_WASM");

/// Valkey, the fake backend (executions `exec-1` of `user-1`, with input,
/// and `exec-2` of `user-1`, without), and a host configured by
/// `configure`.
/// This file's area of the shared [`World`] ([`Area`]).
enum BatchArea {}
type BatchWorld = Area<BatchArea>;

impl BatchWorld {
    async fn start(configure: impl FnOnce(HostConfig) -> HostConfig) -> Self {
        let prepare = |backend: &FakeBackend| {
            parity::add_executions(backend);
            backend.state().relayed_tools.insert(
                "jira".into(),
                json!({"success": true, "data": {"issue": "OPS-12"}}),
            );
        };
        Self::new(World::serving(prepare, configure).await)
    }

    /// Sends `body` as `exec-1`'s batch with `exec-1`'s token.
    async fn batch(&self, body: &Value) -> support::Reply {
        batch::send(&self.host.base(), "exec-1", caller(), body).await
    }

    /// The backend calls other than audit: method, path and body, without
    /// the timestamps the host adds.
    fn traffic(&self) -> Vec<(String, String, Value)> {
        self.backend
            .state()
            .requests
            .iter()
            .filter(|r| r.path != "/api/internal/audit")
            .map(|r| (r.method.clone(), r.path.clone(), without_times(&r.body)))
            .collect()
    }

    /// The audit events received so far, without timestamps and durations.
    fn audit(&self) -> Vec<Value> {
        self.backend
            .state()
            .audit
            .iter()
            .map(without_times)
            .collect()
    }

    /// The audit events, once no more have arrived for a second and a half
    /// (they are delivered in the background), in a stable order: the host
    /// delivers several at once, so the backend's order of arrival is not
    /// the order of the calls.
    async fn settled_audit(&self) -> Vec<Value> {
        let mut seen = self.audit().len();
        let mut quiet_since = std::time::Instant::now();
        let give_up = quiet_since + Duration::from_secs(15);
        while quiet_since.elapsed() < Duration::from_millis(1500)
            && std::time::Instant::now() < give_up
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.audit().len();
            if now != seen {
                seen = now;
                quiet_since = std::time::Instant::now();
            }
        }
        let mut events = self.audit();
        events.sort_by_key(|event| event.to_string());
        events
    }
}

/// The one token of `exec-1` the comparisons use: a context without a
/// start time reports its token's `iat`, which two tokens minted a second
/// apart would not share.
fn caller() -> &'static str {
    static CALLER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CALLER.get_or_init(|| token("exec-1"))
}

/// `value` without its `timestamp` and `durationMs` fields, at any depth.
fn without_times(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "timestamp" | "durationMs"))
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn with_headers(mut c: Call, headers: &[(&str, &str)]) -> Call {
    c.headers = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    c
}

/// Calls of every kind, successes and failures of every route: reads,
/// writes, compare-and-set (a 412 with its `ETag`), a strict 404, the path
/// guard (another execution's input, 403), unknown routes, a wrong method,
/// bad bodies, a relayed tool, an unknown tool.
fn mixed_calls() -> Vec<Call> {
    let mut calls = batch::seven_call_script();
    calls.extend([
        call_of("PUT", "variables/greeting", Some(json!({"value": "hi"}))),
        call_of("GET", "variables/greeting", None),
        with_headers(
            call_of("PUT", "variables/greeting", Some(json!({"value": "lost"}))),
            &[("If-Match", "\"not-the-etag\"")],
        ),
        with_headers(
            call_of("PUT", "variables/fresh", Some(json!({"value": 1}))),
            &[("If-None-Match", "*")],
        ),
        call_of("GET", "variables/missing?strict=true", None),
        call_of("DELETE", "variables/greeting", None),
        call_of("GET", "/executions/exec-2/input", None),
        call_of("GET", "nothing", None),
        call_of("GET", "/no/such/route", None),
        call_of("PUT", "input", None),
        call_of("POST", "condition", Some(json!({"condition": "yes"}))),
        call_of("POST", "output", Some(json!({"nodata": 1}))),
        call_of("GET", "/tool-actions", None),
        call_of(
            "POST",
            "/tool-actions/execute",
            Some(json!({"tool": "jira", "action": "create_issue", "config": {"p": "OPS"}})),
        ),
        call_of(
            "POST",
            "/tool-actions/execute",
            Some(json!({"tool": "nope", "action": "send", "config": {}})),
        ),
    ]);
    calls
}

#[tokio::test]
async fn a_batch_answers_as_the_same_calls_made_one_by_one_with_the_same_backend_and_audit_traffic()
{
    let calls = mixed_calls();
    let (alone, batched) = tokio::join!(BatchWorld::start(|c| c), BatchWorld::start(|c| c));
    let replies = batch::one_by_one(&alone.host.base(), "exec-1", caller(), &calls).await;
    let answer = batched.batch(&batch::batch_body(&calls)).await;
    let responses = batch::responses(&answer);
    assert_eq!(responses.len(), calls.len());
    for (i, ((c, reply), response)) in calls.iter().zip(&replies).zip(&responses).enumerate() {
        assert_eq!(response["id"], (i + 1).to_string());
        assert_eq!(
            batch::essence(response),
            parity::essence(reply),
            "{} {}: in the batch, then on its own",
            c.method,
            c.url
        );
    }
    // Every status of the mix shows up, so the comparison covered them.
    let statuses: Vec<u64> = responses
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    for status in [200, 400, 403, 404, 405, 412] {
        assert!(statuses.contains(&status), "{status} in {statuses:?}");
    }

    assert_eq!(batched.traffic(), alone.traffic(), "backend calls");
    assert!(!alone.traffic().is_empty());
    let (expected, seen) = (alone.settled_audit().await, batched.settled_audit().await);
    assert!(expected.len() >= 8, "{expected:?}");
    assert_eq!(seen, expected, "audit events");
}

#[tokio::test]
async fn a_failing_request_in_the_middle_does_not_stop_the_rest() {
    let w = BatchWorld::start(|c| c).await;
    w.backend.state().output_answer = Some((
        400,
        json!({"error": "Bad Request", "message": "output refused"}),
    ));
    let answer = w
        .batch(&json!({"requests": [
            {"id": "first", "method": "PUT", "url": "variables/a", "body": {"value": 1}},
            {"id": "bad body", "method": "POST", "url": "condition", "body": {"condition": "yes"}},
            {"id": "backend fails", "method": "POST", "url": "output", "body": {"data": 1}},
            {"id": "stale", "method": "PUT", "url": "variables/a", "headers": {"If-Match": "\"x\""}, "body": {"value": 2}},
            {"id": "last", "method": "GET", "url": "variables/a"},
        ]}))
        .await;
    let responses = batch::responses(&answer);
    let summary: Vec<(&str, u64)> = responses
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("first", 200),
            ("bad body", 400),
            ("backend fails", 502),
            ("stale", 412),
            ("last", 200)
        ]
    );
    assert_eq!(
        responses[2]["body"]["message"],
        "backend refused the call: output refused"
    );
    assert_eq!(
        responses[4]["body"]["data"],
        json!({"key": "a", "value": 1})
    );
    assert_eq!(
        responses[3]["headers"]["etag"], responses[4]["headers"]["etag"],
        "the 412 carries the current ETag"
    );
    assert_eq!(w.backend.variable("user-1", "a"), Some(json!(1)));
}

#[tokio::test]
async fn the_answer_has_the_contract_s_shape_and_keeps_each_route_s_bytes() {
    let w = BatchWorld::start(|c| c).await;
    let answer = w
        .batch(&json!({"requests": [
            {"id": "1", "method": "GET", "url": "input"},
            {"id": "2", "method": "put", "url": "variables/a%2Fb", "body": {"value": [1, 2]}},
            {"id": "3", "method": "GET", "url": "variables/a/b"},
        ]}))
        .await;
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(answer.header("x-request-id").is_some());
    let text = std::str::from_utf8(&answer.body).unwrap();
    assert!(
        text.starts_with(
            r#"{"responses":[{"id":"1","status":200,"headers":{"content-type":"application/json"},"body":{"success":true,"data":{"rows":3}}}"#
        ),
        "{text}"
    );
    let responses = batch::responses(&answer);
    let etag = responses[1]["headers"]["etag"].as_str().unwrap();
    assert_eq!(responses[2]["headers"]["etag"], etag);
    assert_eq!(
        responses[2]["body"],
        json!({"success": true, "data": {"key": "a/b", "value": [1, 2]}})
    );
    assert!(responses.iter().all(|r| r.get("bodyOmitted").is_none()));
}

#[tokio::test]
async fn the_batch_itself_is_refused_as_a_whole_for_its_token_and_method() {
    let w = BatchWorld::start(|c| c).await;
    let body = batch::batch_body(&batch::seven_call_script());
    let url = w.host.url("/executions/exec-1/batch");
    let text = body.to_string();
    let no_token = call("POST", &url, &[], Some(text.as_bytes())).await;
    assert_eq!(no_token.status, 401);
    no_token.error_message();
    let other = batch::send(&w.host.base(), "exec-1", &token("exec-2"), &body).await;
    assert_eq!(other.status, 403);
    assert_eq!(
        other.error_message(),
        "token is not valid for this execution"
    );
    let auth = format!("Bearer {}", token("exec-1"));
    let get = call("GET", &url, &[("authorization", &auth)], None).await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    // None of them ran anything.
    assert!(w.traffic().is_empty(), "{:?}", w.traffic());
}

#[tokio::test]
async fn every_limit_refuses_the_whole_batch_naming_the_request_and_runs_none_of_it() {
    let w = BatchWorld::start(|c| c).await;
    let write = json!({"id": "w", "method": "POST", "url": "output", "body": {"data": 1}});
    let get = |id: &str| json!({"id": id, "method": "GET", "url": "input"});
    let many: Vec<Value> = (0..51).map(|i| get(&i.to_string())).collect();
    let cases = [
        (
            json!({"requests": many}),
            "at most 50 requests; this one has 51",
        ),
        (
            json!({"requests": [write, get("a"), get("a")]}),
            "requests[2]: the id \"a\" is used twice",
        ),
        (
            json!({"requests": [write, {"id": "", "method": "GET", "url": "input"}]}),
            "requests[1]: \"id\" must be a non-empty string",
        ),
        (
            json!({"requests": [write, {"id": "n", "method": "POST", "url": "batch", "body": {"requests": []}}]}),
            "requests[1] (id \"n\"): a batch cannot contain a batch",
        ),
        (
            json!({"requests": [write, {"id": "m", "method": "FETCH", "url": "input"}]}),
            "requests[1] (id \"m\"): method \"FETCH\" is not one a batch can carry",
        ),
        (
            json!({"requests": [write, {"id": "u", "method": "GET", "url": "http://elsewhere/executions/exec-1/input"}]}),
            "requests[1] (id \"u\"): url \"http://elsewhere",
        ),
        (
            json!({"requests": [write, {"id": "h", "method": "GET", "url": "input", "headers": {"Authorization": "Bearer other"}}]}),
            "requests[1] (id \"h\"): header authorization cannot be set",
        ),
        (
            json!({"requests": [write, {"id": "x", "method": "GET", "url": "input", "after": "w"}]}),
            "requests[1] (id \"x\"): unknown field \"after\"",
        ),
        (
            json!({"requests": [write, "GET input"]}),
            "requests[1] is not a JSON object",
        ),
        (json!({"calls": [write]}), "unknown field \"calls\""),
    ];
    for (body, expected) in cases {
        let reply = w.batch(&body).await;
        assert_eq!(reply.status, 400, "{expected}: {reply:?}");
        let message = reply.error_message();
        assert!(message.contains(expected), "{message} lacks {expected}");
    }
    let auth = format!("Bearer {}", token("exec-1"));
    let url = w.host.url("/executions/exec-1/batch");
    for body in [&b"{not json"[..], b""] {
        let reply = call("POST", &url, &[("authorization", &auth)], Some(body)).await;
        assert_eq!(reply.status, 400, "{reply:?}");
    }
    // 5 MiB for the whole batch, as for the output route.
    let huge = json!({"requests": [{"id": "1", "method": "POST", "url": "output",
        "body": {"data": "x".repeat(5 * 1024 * 1024)}}]});
    let reply = w.batch(&huge).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(
        reply.error_message(),
        "request body is larger than 5242880 bytes"
    );
    assert!(w.backend.state().outputs.is_empty(), "nothing ran");
    assert!(w.traffic().is_empty(), "{:?}", w.traffic());
}

#[tokio::test]
async fn a_request_over_its_own_route_s_cap_gets_that_route_s_413_and_the_rest_run() {
    let w = BatchWorld::start(|c| c).await;
    let big = "x".repeat(1024 * 1024);
    let body = json!({"value": big});
    let answer = w
        .batch(&json!({"requests": [
            {"id": "big", "method": "PUT", "url": "variables/big", "body": body},
            // The output route takes more than a MiB.
            {"id": "output", "method": "POST", "url": "output", "body": {"data": big}},
            {"id": "small", "method": "PUT", "url": "variables/small", "body": {"value": 1}},
        ]}))
        .await;
    let responses = batch::responses(&answer);
    let alone = call(
        "PUT",
        &w.host.url("/executions/exec-1/variables/big"),
        &[("authorization", &format!("Bearer {}", token("exec-1")))],
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(alone.status, 413);
    assert_eq!(batch::essence(&responses[0]), parity::essence(&alone));
    assert_eq!(responses[1]["status"], 200);
    assert_eq!(responses[2]["status"], 200);
    assert_eq!(w.backend.variable("user-1", "big"), None);
    assert_eq!(w.backend.variable("user-1", "small"), Some(json!(1)));
}

#[tokio::test]
async fn another_execution_s_routes_are_refused_inside_the_answer() {
    let w = BatchWorld::start(|c| c).await;
    let answer = w
        .batch(&json!({"requests": [
            {"id": "1", "method": "GET", "url": "/executions/exec-2/input"},
            {"id": "2", "method": "PUT", "url": "/executions/exec-2/variables/k", "body": {"value": 1}},
            {"id": "3", "method": "GET", "url": "/executions/exec-1/input"},
        ]}))
        .await;
    let responses = batch::responses(&answer);
    for response in &responses[..2] {
        assert_eq!(response["status"], 403, "{response}");
        assert_eq!(
            response["body"]["message"],
            "token is not valid for this execution"
        );
    }
    assert_eq!(responses[2]["status"], 200);
    assert_eq!(w.backend.variable("user-1", "k"), None);
}

#[tokio::test]
async fn the_rate_budget_running_out_mid_batch_refuses_the_rest_inside_the_answer() {
    let w = BatchWorld::start(|c| c.env("RATE_LIMIT_PER_MIN", "5")).await;
    let calls: Vec<Call> = (0..7).map(|_| call_of("GET", "input", None)).collect();
    let body = batch::batch_body(&calls);
    // The batch itself is one request of the budget, each of its requests one more.
    let answer = w.batch(&body).await;
    let statuses: Vec<u64> = batch::responses(&answer)
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429]);
    let refused = &batch::responses(&answer)[4];
    let wait: u32 = refused["headers"]["retry-after"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(refused["body"]["message"], "rate limit exceeded; slow down");
    // Spent: the next batch is refused as a whole.
    let again = w.batch(&body).await;
    assert_eq!(again.status, 429, "{again:?}");
    assert!(again.header("retry-after").is_some());
}

#[tokio::test]
async fn a_batch_answers_the_same_bytes_through_either_export_and_with_reuse_on_or_off() {
    let calls = mixed_calls();
    let body = batch::batch_body(&calls);
    let worlds = [
        BatchWorld::start(|c| c).await,
        BatchWorld::start(|c| c.env("CRONIUM_COMPONENT_EXPORT", "wasi-http")).await,
        BatchWorld::start(|c| c.env("CRONIUM_INSTANCE_REUSE", "1")).await,
    ];
    let mut answers = Vec::new();
    for world in &worlds {
        let answer = world.batch(&body).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answers.push(answer.body);
    }
    assert_eq!(answers[0], answers[1], "handler, then wasi:http");
    assert_eq!(answers[0], answers[2], "reused instances, then fresh ones");
}

#[tokio::test]
async fn a_component_that_traps_or_stalls_fails_only_its_own_request() {
    // The misbehaving component serves the executions routes; its
    // `{id}` picks what it does.
    let w = BatchWorld::start(|c| {
        c.env("CRONIUM_COMPONENT_EXECUTIONS", MISBEHAVE)
            .env("CRONIUM_REQUEST_TIMEOUT", "3s")
    })
    .await;
    let started = std::time::Instant::now();
    let answer = w
        .batch(&json!({"requests": [
            {"id": "trap", "method": "GET", "url": "/executions/trap/input"},
            {"id": "fine", "method": "PUT", "url": "variables/k", "body": {"value": 1}},
            {"id": "loop", "method": "GET", "url": "/executions/loop/input"},
            {"id": "after", "method": "GET", "url": "variables/k"},
        ]}))
        .await;
    let responses = batch::responses(&answer);
    let statuses: Vec<u64> = responses
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    // The loop runs into what is left of the batch's deadline, less the
    // margin kept for the answer: its own 504, and nothing after it has
    // time left.
    assert_eq!(statuses[..3], [500, 200, 504], "{responses:?}");
    assert_eq!(responses[0]["body"]["message"], "the component failed");
    assert_eq!(responses[2]["body"]["error"], "Gateway Timeout");
    assert!(matches!(statuses[3], 200 | 504), "{statuses:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(w.backend.variable("user-1", "k"), Some(json!(1)));
}

#[tokio::test]
async fn bodies_past_the_answer_s_sixteen_mebibytes_are_left_out_with_their_status() {
    let w = BatchWorld::start(|c| c).await;
    let value = "v".repeat(1_000_000);
    let reply = call(
        "PUT",
        &w.host.url("/executions/exec-1/variables/large"),
        &[("authorization", &format!("Bearer {}", token("exec-1")))],
        Some(json!({"value": value}).to_string().as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 200);
    let calls: Vec<Call> = (0..20)
        .map(|_| call_of("GET", "variables/large", None))
        .collect();
    let answer = w.batch(&batch::batch_body(&calls)).await;
    let responses = batch::responses(&answer);
    let kept = responses.iter().filter(|r| r.get("body").is_some()).count();
    // 16 MiB holds 16 answers of a million-byte value and its envelope.
    assert_eq!(kept, 16);
    for response in &responses[kept..] {
        assert_eq!(response["status"], 200);
        assert_eq!(response["bodyOmitted"], true);
        assert!(response["headers"]["etag"].is_string());
    }
    assert_eq!(responses[0]["body"]["data"]["value"], value);
}

#[tokio::test]
async fn batched_requests_are_counted_by_route_in_the_metrics() {
    let w = BatchWorld::start(|c| c).await;
    let answer = w
        .batch(&batch::batch_body(&batch::seven_call_script()))
        .await;
    assert_eq!(answer.status, 200);
    let metrics = call("GET", &w.host.url("/metrics"), &[], None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        "cronium_requests_total{route=\"batch\",status=\"200\"} 1",
        "cronium_batched_requests_total{route=\"executions\",status=\"200\"} 4",
        "cronium_batched_requests_total{route=\"variables\",status=\"200\"} 3",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

/// The code block of `docs/batch.md` fenced as `lang`.
fn snippet(lang: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/batch.md"))
        .expect("docs/batch.md");
    let fence = format!("```{lang}\n");
    let start = doc
        .find(&fence)
        .unwrap_or_else(|| panic!("no {lang} block"))
        + fence.len();
    let end = start + doc[start..].find("```").expect("the block ends");
    doc[start..end].to_owned()
}

#[tokio::test]
async fn the_helper_snippets_of_the_docs_run_against_the_host() {
    let w = BatchWorld::start(|c| c).await;
    w.backend
        .add_execution("snippets", "user-1", Some(json!([1, 2, 3])));
    let dir = tempfile::tempdir().unwrap();
    let token = token("snippets");
    let mut ran = 0;
    // Python and Node with the runner helpers' environment, bash with the
    // container SDKs'.
    for (lang, program, file, container) in [
        ("python", "python3", "helper.py", false),
        ("js", "node", "helper.js", false),
        ("bash", "bash", "helper.sh", true),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, snippet(lang)).unwrap();
        let mut command = std::process::Command::new(program);
        command.arg(&path).env("CRONIUM_EXECUTION_ID", "snippets");
        if container {
            command
                .env("CRONIUM_RUNTIME_API", w.host.base())
                .env("CRONIUM_EXECUTION_TOKEN", &token);
        } else {
            command
                .env("CRONIUM_API_ENDPOINT", w.host.base())
                .env("CRONIUM_API_TOKEN", &token);
        }
        let output = match tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
        {
            Ok(output) => output,
            Err(error) => {
                eprintln!("the {lang} snippet NOT RUN: {program}: {error}");
                continue;
            }
        };
        assert!(
            output.status.success(),
            "the {lang} snippet failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "wrote output for 3 rows",
            "{lang}"
        );
        ran += 1;
    }
    assert!(ran > 0, "no snippet could run");
    let state = w.backend.state();
    assert_eq!(state.outputs.len(), ran);
    for (execution, body) in &state.outputs {
        assert_eq!(execution, "snippets");
        assert_eq!(body["output"], json!({"rows": 3, "job": "job-snippets"}));
    }
    assert_eq!(state.conditions.len(), ran);
    assert!(
        state
            .conditions
            .iter()
            .all(|(_, body)| body["condition"] == true)
    );
}

#[tokio::test]
async fn a_batch_takes_two_places_of_the_in_flight_cap() {
    let w = BatchWorld::start(|c| {
        c.env("CRONIUM_COMPONENT_EXECUTIONS", MISBEHAVE)
            .env("CRONIUM_MAX_IN_FLIGHT", "2")
    })
    .await;
    let body = json!({"requests": [{"id": "1", "method": "GET", "url": "variables/k"}]});
    // A slow request holds one of the two places for two seconds.
    let slow_url = w.host.url("/executions/slow/input");
    let slow = tokio::spawn(async move { call("GET", &slow_url, &[], None).await.status });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = w.batch(&body).await;
    assert_eq!(busy.status, 503, "{busy:?}");
    assert!(busy.header("retry-after").is_some());
    // A single request still fits beside it.
    let auth = format!("Bearer {}", token("exec-1"));
    let single = call(
        "GET",
        &w.host.url("/executions/exec-1/variables/k"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(single.status, 200, "{single:?}");
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(w.batch(&body).await.status, 200);
}

#[tokio::test]
async fn the_requests_of_a_batch_share_a_warm_instance_of_their_group_unless_reuse_is_off() {
    let body = json!({"requests": [
        {"id": "1", "method": "GET", "url": "/executions/count/input"},
        {"id": "2", "method": "GET", "url": "/executions/count/input"},
        {"id": "3", "method": "GET", "url": "/executions/count/input"},
    ]});
    for (reuse, expected) in [(None, [1, 2, 3]), (Some("1"), [1, 1, 1])] {
        let w = BatchWorld::start(|c| {
            let c = c.env("CRONIUM_COMPONENT_EXECUTIONS", MISBEHAVE);
            match reuse {
                Some(reuse) => c.env("CRONIUM_INSTANCE_REUSE", reuse),
                None => c,
            }
        })
        .await;
        let served: Vec<u64> = batch::responses(&w.batch(&body).await)
            .iter()
            .map(|r| r["body"]["data"].as_u64().unwrap())
            .collect();
        assert_eq!(served, expected, "CRONIUM_INSTANCE_REUSE={reuse:?}");
    }
}
