//! The two exports of an endpoint component: the host calls the direct
//! `cronium:runtime/handler` export, falls back to `wasi:http` for a
//! component without it, and calls `wasi:http` (as Spin does) when told
//! to. Through either, every route answers the same.

mod support;

use serde_json::{Value, json};
use support::{FakeBackend, Host, HostConfig, Reply, Valkey, call, token};

const MISBEHAVE: &str = env!("CRONIUM_TEST_MISBEHAVE_WASM");
/// A component with only the `wasi:http` export (`bench/components/hello`).
const HELLO: &str = env!("CRONIUM_BENCH_HELLO_WASM");

/// Valkey, the fake backend (executions `exec-1` of `user-1`, with input,
/// and `exec-2` of `user-1`), and a host configured by `configure`.
struct World {
    _valkey: Valkey,
    _backend: FakeBackend,
    host: Host,
}

impl World {
    async fn start(configure: impl FnOnce(HostConfig) -> HostConfig) -> World {
        let valkey = Valkey::start();
        let backend = FakeBackend::start().await;
        backend.add_execution("exec-1", "user-1", Some(json!({"rows": 3})));
        backend.add_execution("exec-2", "user-1", None);
        let host = Host::start(configure(HostConfig::with(&valkey.url(), &backend.url()))).await;
        World {
            _valkey: valkey,
            _backend: backend,
            host,
        }
    }
}

#[tokio::test]
async fn the_handler_export_is_called_unless_wasi_http_is_configured() {
    for (configured, called) in [
        (None, "handler"),
        (Some("handler"), "handler"),
        (Some("wasi-http"), "wasi-http"),
    ] {
        let world = World::start(|c| {
            let c = c.env("CRONIUM_COMPONENT_EXECUTIONS", MISBEHAVE);
            match configured {
                Some(export) => c.env("CRONIUM_COMPONENT_EXPORT", export),
                None => c,
            }
        })
        .await;
        let reply = call(
            "GET",
            &world.host.url("/executions/export/input"),
            &[],
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json["data"], called, "configured {configured:?}");
    }
}

#[tokio::test]
async fn a_handler_answer_that_http_does_not_allow_is_a_json_500() {
    let world = World::start(|c| c.env("CRONIUM_COMPONENT_EXECUTIONS", MISBEHAVE)).await;
    let url = world.host.url("/executions/bad-header/input");
    let reply = call("GET", &url, &[], None).await;
    assert_eq!(reply.status, 500, "{reply:?}");
    assert_eq!(reply.error_message(), "the component failed");
}

#[tokio::test]
async fn a_component_with_only_the_wasi_http_export_is_served_through_it() {
    let world = World::start(|c| c.env("CRONIUM_COMPONENT_EXECUTIONS", HELLO)).await;
    let reply = call("GET", &world.host.url("/executions/x/input"), &[], None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(&reply.body[..], b"hello");
}

/// One request of the parity table.
struct Case {
    method: &'static str,
    path: &'static str,
    /// The execution whose token is sent; `None`: no `Authorization`.
    token_for: Option<&'static str>,
    body: Option<Value>,
}

const fn case(
    method: &'static str,
    path: &'static str,
    token_for: Option<&'static str>,
    body: Option<Value>,
) -> Case {
    Case {
        method,
        path,
        token_for,
        body,
    }
}

/// What must match between the two exports: status, the headers a
/// component sets, and the body.
fn essence(reply: &Reply) -> (u16, [Option<String>; 5], Value) {
    let header = |name: &str| reply.header(name).map(str::to_owned);
    (
        reply.status,
        [
            header("content-type"),
            header("allow"),
            header("retry-after"),
            header("idempotent-replayed"),
            header("etag"),
        ],
        if reply.body.is_empty() {
            Value::Null
        } else {
            reply.json.clone()
        },
    )
}

#[tokio::test]
async fn every_route_answers_the_same_through_either_export_and_with_reuse_on_or_off() {
    let cases = [
        case("GET", "/executions/exec-1/input", Some("exec-1"), None),
        case(
            "GET",
            "/executions/exec-1/input?fresh=1",
            Some("exec-1"),
            None,
        ),
        case("GET", "/executions/exec-2/input", Some("exec-2"), None),
        case("GET", "/executions/exec-1/context", Some("exec-1"), None),
        case(
            "POST",
            "/executions/exec-1/output",
            Some("exec-1"),
            Some(json!({"data": {"n": 1}})),
        ),
        case(
            "POST",
            "/executions/exec-1/output",
            Some("exec-1"),
            Some(json!({"nodata": 1})),
        ),
        case(
            "POST",
            "/executions/exec-1/condition",
            Some("exec-1"),
            Some(json!({"condition": "yes"})),
        ),
        case("PUT", "/executions/exec-1/input", Some("exec-1"), None),
        case("GET", "/executions/exec-1/input", None, None),
        case("GET", "/executions/exec-1/input", Some("exec-2"), None),
        case("GET", "/executions/nope/input", Some("nope"), None),
        case(
            "PUT",
            "/executions/exec-1/variables/greeting",
            Some("exec-1"),
            Some(json!({"value": "hi"})),
        ),
        case(
            "GET",
            "/executions/exec-2/variables/greeting",
            Some("exec-2"),
            None,
        ),
        case(
            "PUT",
            "/executions/exec-1/variables/a%2Fb",
            Some("exec-1"),
            Some(json!({"value": [1, 2]})),
        ),
        case(
            "GET",
            "/executions/exec-1/variables/a%2Fb",
            Some("exec-1"),
            None,
        ),
        case(
            "GET",
            "/executions/exec-1/variables/missing",
            Some("exec-1"),
            None,
        ),
        case(
            "DELETE",
            "/executions/exec-1/variables/greeting",
            Some("exec-1"),
            None,
        ),
        case("GET", "/tool-actions", Some("exec-1"), None),
        case(
            "POST",
            "/tool-actions/execute",
            Some("exec-1"),
            Some(json!({"tool": "nope", "action": "send", "config": {}})),
        ),
    ];
    // The default (handler export, instances reused by credential), then
    // wasi:http as Spin calls it, then a fresh instance per request.
    let worlds = [
        World::start(|c| c).await,
        World::start(|c| c.env("CRONIUM_COMPONENT_EXPORT", "wasi-http")).await,
        World::start(|c| c.env("CRONIUM_INSTANCE_REUSE", "1")).await,
    ];
    for case in &cases {
        let auth = case.token_for.map(|e| format!("Bearer {}", token(e)));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        let body = case.body.as_ref().map(Value::to_string);
        let mut answers = Vec::new();
        for world in &worlds {
            let url = world.host.url(case.path);
            let reply = call(
                case.method,
                &url,
                &headers,
                body.as_deref().map(str::as_bytes),
            )
            .await;
            answers.push(essence(&reply));
        }
        assert_eq!(
            answers[0], answers[1],
            "{} {}: handler, then wasi:http",
            case.method, case.path
        );
        assert_eq!(
            answers[0], answers[2],
            "{} {}: reused instances, then fresh ones",
            case.method, case.path
        );
    }
}
