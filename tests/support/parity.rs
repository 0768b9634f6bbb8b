//! The route table that every way of serving the API must answer alike:
//! the two exports of an endpoint component, instance reuse on and off,
//! and Spin. Each world is Valkey, the fake backend with executions
//! `exec-1` (of `user-1`, with input) and `exec-2` (of `user-1`, without),
//! and whatever serves them; [`essence`] is what must match.

use serde_json::{Value, json};

use super::{FakeBackend, Host, HostConfig, Reply, Valkey, call, token};

/// One request of the parity table.
pub struct Case {
    pub method: &'static str,
    pub path: &'static str,
    /// The execution whose token is sent; `None`: no `Authorization`.
    pub token_for: Option<&'static str>,
    pub body: Option<Value>,
}

pub const fn case(
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
pub fn essence(reply: &Reply) -> (u16, [Option<String>; 5], Value) {
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

/// The routes, in order: reads, writes, refusals, variables, tools. Later
/// cases see what earlier ones wrote.
pub fn route_table() -> Vec<Case> {
    vec![
        case("GET", "/no/such/route", None, None),
        case("GET", "/executions/exec-1/nothing", Some("exec-1"), None),
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
    ]
}

/// Valkey, the fake backend with the table's executions, and the custom
/// host on them, configured by `configure`.
pub struct HostWorld {
    pub valkey: Valkey,
    pub backend: FakeBackend,
    pub host: Host,
}

impl HostWorld {
    pub async fn start(configure: impl FnOnce(HostConfig) -> HostConfig) -> HostWorld {
        let valkey = Valkey::start();
        let backend = FakeBackend::start().await;
        add_executions(&backend);
        let host = Host::start(configure(HostConfig::with(&valkey.url(), &backend.url()))).await;
        HostWorld {
            valkey,
            backend,
            host,
        }
    }
}

/// The fake backend's executions of the table.
pub fn add_executions(backend: &FakeBackend) {
    backend.add_execution("exec-1", "user-1", Some(json!({"rows": 3})));
    backend.add_execution("exec-2", "user-1", None);
}

/// Sends `case` to the server at `base` (`http://127.0.0.1:<port>`).
pub async fn ask(base: &str, case: &Case) -> Reply {
    let auth = case.token_for.map(|e| format!("Bearer {}", token(e)));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    let body = case.body.as_ref().map(Value::to_string);
    call(
        case.method,
        &format!("{base}{}", case.path),
        &headers,
        body.as_deref().map(str::as_bytes),
    )
    .await
}
