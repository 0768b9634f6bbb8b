//! A fake of the Cronium backend's internal API, on a loopback port,
//! recording every request it gets so that tests can assert what the host
//! sent. Two profiles ([`Profile`]): the contract's backend (`docs/api.md`,
//! "The backend we call"), and the Cronium app as it is (`docs/cronium.md`,
//! "Checked against"): a `text` column for values with node-postgres'
//! conversions, no `DELETE`, no tools routes, `details` in audit events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

/// The token the hosts use towards the fake backend.
pub const BACKEND_TOKEN: &str = "backend-token-for-tests";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

/// Which backend the fake behaves as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Profile {
    /// The contract's backend: JSON values, every route of its table.
    #[default]
    Contract,
    /// The Cronium app at the commit `docs/cronium.md` names.
    CroniumApp,
}

/// What the fake knows and how it behaves.
#[derive(Debug, Default)]
pub struct BackendState {
    /// Which backend it behaves as.
    pub profile: Profile,
    /// Execution id -> the context object the backend answers with.
    pub executions: HashMap<String, Value>,
    /// (execution id, body) of every output and condition written.
    pub outputs: Vec<(String, Value)>,
    pub conditions: Vec<(String, Value)>,
    /// (user id, key) -> value of every variable.
    pub variables: HashMap<(String, String), Value>,
    /// Answer `DELETE` of a variable with 405, as a backend without it would.
    pub no_variable_delete: bool,
    /// Bodies of `POST /api/internal/audit`.
    pub audit: Vec<Value>,
    pub requests: Vec<Recorded>,
    /// Keep no record of requests (for long benchmark runs).
    pub quiet: bool,
    /// Answer every request with 503.
    pub down: bool,
    /// Answer audit events (only) with 503.
    pub audit_down: bool,
    /// Answer every request with this status (a backend failing with 500s).
    pub error_status: Option<u16>,
    /// Outputs taken, counted even when `quiet`.
    pub outputs_taken: u64,
    /// Audit events taken, by action, counted even when `quiet`.
    pub audit_taken: HashMap<String, u64>,
    /// The `key` of every `set_variable` audit event taken, kept even when
    /// `quiet` (the soak checks each acknowledged write was audited).
    pub audited_variable_keys: std::collections::HashSet<String>,
    /// Wait this long before answering an audit event (a backend that
    /// takes the connection and does not answer).
    pub audit_delay: Option<std::time::Duration>,
    /// Wait this long before answering a variable write (PUT); audit
    /// events and outputs are answered at once.
    pub write_delay: Option<std::time::Duration>,
    /// Variable writes (PUT) received, counted on arrival, before the delay.
    pub writes_received: usize,
    /// Answer output writes with this status and body instead.
    pub output_answer: Option<(u16, Value)>,
    /// (user id, tool id) -> the credentials the backend keeps.
    pub tool_credentials: HashMap<(String, String), Value>,
    /// Tool id -> the answer to a relayed `POST /api/internal/tools/execute`
    /// (tools missing here answer 404).
    pub relayed_tools: HashMap<String, Value>,
    /// Wait this long before answering a relayed tool call.
    pub relay_delay: Option<std::time::Duration>,
    /// Relayed tool calls received, counted on arrival.
    pub relayed_calls: usize,
    /// Number each relayed answer: its `data.call` is 1 for the first
    /// relayed call, 2 for the second, and so on.
    pub number_relayed_answers: bool,
}

pub struct FakeBackend {
    addr: SocketAddr,
    state: Arc<Mutex<BackendState>>,
    task: tokio::task::JoinHandle<()>,
    /// False while the backend is unreachable ([`FakeBackend::cut_off`]).
    online: tokio::sync::watch::Sender<bool>,
}

impl FakeBackend {
    /// Starts the fake of the contract's backend on a free loopback port.
    pub async fn start() -> FakeBackend {
        Self::start_as(Profile::Contract).await
    }

    /// Starts the fake behaving as `profile`.
    pub async fn start_as(profile: Profile) -> FakeBackend {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), profile).await
    }

    /// Starts the fake behaving as `profile` on `addr` (port 0: a free
    /// one), e.g. an address containers reach.
    pub async fn start_on(addr: SocketAddr, profile: Profile) -> FakeBackend {
        let state = Arc::new(Mutex::new(BackendState {
            profile,
            ..BackendState::default()
        }));
        let shared = state.clone();
        let (online, _) = tokio::sync::watch::channel(true);
        let (addr, task) = super::serve::serve_switchable(addr, online.clone(), move |req| {
            let state = shared.clone();
            async move { answer(&state, req).await }
        })
        .await;
        FakeBackend {
            addr,
            state,
            task,
            online,
        }
    }

    /// Makes the backend unreachable: its port refuses connections and the
    /// open ones are closed, until [`FakeBackend::restore`].
    pub fn cut_off(&self) {
        self.online.send_replace(false);
    }

    /// Makes a cut-off backend reachable again, on the same port.
    pub fn restore(&self) {
        self.online.send_replace(true);
    }

    /// The base URL for `BACKEND_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fake's state, to read or change.
    pub fn state(&self) -> MutexGuard<'_, BackendState> {
        self.state.lock().unwrap()
    }

    /// What the benchmarks read: execution `bench-1` of `bench-user` with
    /// input `{"rows":3,"source":"bench"}`, and that user's variable
    /// `read-me`; and no log line per request.
    pub fn seed_bench(&self) {
        self.state().quiet = true;
        self.add_execution(
            "bench-1",
            "bench-user",
            Some(json!({"rows": 3, "source": "bench"})),
        );
        self.state().variables.insert(
            ("bench-user".to_owned(), "read-me".to_owned()),
            json!({"threshold": 0.75, "labels": ["a", "b"]}),
        );
    }

    /// Adds an execution of `user_id` with `input` (none: no input), in
    /// the backend's own shape, with a nested event.
    pub fn add_execution(&self, id: &str, user_id: &str, input: Option<Value>) {
        let mut metadata = json!({});
        if let Some(input) = input {
            metadata["input"] = input;
        }
        let mut state = self.state();
        let context = match state.profile {
            Profile::Contract => json!({
                "executionId": id,
                "jobId": format!("job-{id}"),
                "eventId": "event-1",
                "userId": user_id,
                "metadata": metadata,
                "event": {"id": "event-1", "name": "Nightly report", "type": "PYTHON"},
                "user": {"id": user_id, "email": "someone@example.com", "name": "Someone"},
            }),
            // No startTime; the event as the app's drizzle query selects it.
            Profile::CroniumApp => json!({
                "executionId": id,
                "jobId": format!("job-{id}"),
                "eventId": "event-1",
                "userId": user_id,
                "metadata": metadata,
                "event": {
                    "id": "event-1", "name": "Nightly report", "type": "PYTHON",
                    "content": "print('hi')", "runLocation": "REMOTE", "serverId": 3
                },
                "user": {"id": user_id, "email": "someone@example.com", "name": "Someone"},
            }),
        };
        state.executions.insert(id.to_owned(), context);
    }

    /// How many requests reached `path` with `method`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.state()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    /// The value of `user`'s variable `key`: what the backend holds, read
    /// back as the API reads it (the text a backend keeps decoded).
    pub fn variable(&self, user: &str, key: &str) -> Option<Value> {
        self.stored(user, key)
            .map(cronium_rules::variables::text::from_backend)
    }

    /// What the backend holds for `user`'s variable `key`, as it holds it
    /// (for the Cronium app, always a string: its `text` column).
    pub fn stored(&self, user: &str, key: &str) -> Option<Value> {
        self.state()
            .variables
            .get(&(user.to_owned(), key.to_owned()))
            .cloned()
    }

    /// The audit events recorded for `action`.
    pub fn audit_events(&self, action: &str) -> Vec<Value> {
        self.state()
            .audit
            .iter()
            .filter(|e| e["action"] == action)
            .cloned()
            .collect()
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(state: &Mutex<BackendState>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let headers = super::serve::header_pairs(request.headers()).collect::<HashMap<_, _>>();
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    let parsed = serde_json::from_slice::<Value>(&bytes);
    let body_is_json = parsed.is_ok() || bytes.is_empty();
    let body = parsed.unwrap_or(Value::Null);
    if path == "/api/internal/tools/execute" {
        let delay = {
            let mut state = state.lock().unwrap();
            state.relayed_calls += 1;
            state.relay_delay
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }
    if path == "/api/internal/audit" {
        let delay = state.lock().unwrap().audit_delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }
    if method == "PUT" {
        let delay = {
            let mut state = state.lock().unwrap();
            state.writes_received += 1;
            state.write_delay
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }
    let mut state = state.lock().unwrap();
    if !state.quiet {
        state.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            body: body.clone(),
        });
    }
    if state.down || (state.audit_down && path == "/api/internal/audit") {
        return reply(503, json!({"error": "Service Unavailable"}));
    }
    if let Some(status) = state.error_status {
        return reply(status, json!({"error": "Internal server error"}));
    }
    let profile = state.profile;
    let authorized = headers.get("authorization").map(String::as_str)
        == Some(&format!("Bearer {BACKEND_TOKEN}"));
    if !authorized {
        return match profile {
            Profile::Contract => reply(
                401,
                json!({"error": "Unauthorized", "message": "bad backend token"}),
            ),
            Profile::CroniumApp => reply(401, json!({"error": "Unauthorized"})),
        };
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if profile == Profile::CroniumApp {
        return app_answer(&mut state, &method, &path, &segments, body_is_json, body);
    }
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["api", "internal", "executions", id, "context"]) => {
            match state.executions.get(*id) {
                Some(context) => reply(200, context.clone()),
                None => reply(
                    404,
                    json!({"error": "Not Found", "message": "execution not found"}),
                ),
            }
        }
        ("POST", ["api", "internal", "executions", id, "output"]) => {
            if let Some((status, body)) = state.output_answer.clone() {
                return reply(status, body);
            }
            if !state.executions.contains_key(*id) {
                return reply(404, json!({"error": "Not Found"}));
            }
            state.outputs_taken += 1;
            if !state.quiet {
                state.outputs.push((id.to_string(), body));
            }
            reply(200, json!({"success": true}))
        }
        ("POST", ["api", "internal", "executions", id, "condition"]) => {
            if !state.executions.contains_key(*id) {
                return reply(404, json!({"error": "Not Found"}));
            }
            state.conditions.push((id.to_string(), body));
            reply(200, json!({"success": true}))
        }
        ("GET", ["api", "internal", "variables", user, key]) => variable_answer(
            &state,
            user,
            key,
            json!({"error": "Not Found", "message": "variable not found"}),
        ),
        ("PUT", ["api", "internal", "variables", user, key]) => {
            let Some(value) = body.get("value").cloned() else {
                return reply(400, json!({"error": "Bad Request", "message": "no value"}));
            };
            state.variables.insert((decode(user), decode(key)), value);
            reply(200, json!({"success": true}))
        }
        ("DELETE", ["api", "internal", "variables", user, key]) => {
            if state.no_variable_delete {
                return reply(405, json!({"error": "Method Not Allowed"}));
            }
            match state.variables.remove(&(decode(user), decode(key))) {
                Some(_) => reply(200, json!({"success": true})),
                None => reply(404, json!({"error": "Not Found"})),
            }
        }
        ("GET", ["api", "internal", "tools", "credentials", user, tool]) => {
            match state.tool_credentials.get(&(decode(user), decode(tool))) {
                Some(credentials) => reply(200, json!({"credentials": credentials})),
                None => reply(404, json!({"error": "Not Found"})),
            }
        }
        ("POST", ["api", "internal", "tools", "execute"]) => {
            let tool = body["tool"].as_str().unwrap_or_default();
            match state.relayed_tools.get(tool) {
                Some(answer) if state.number_relayed_answers => {
                    let mut answer = answer.clone();
                    answer["data"]["call"] = json!(state.relayed_calls);
                    reply(200, answer)
                }
                Some(answer) => reply(200, answer.clone()),
                None => reply(
                    404,
                    json!({"error": "Not Found", "message": "no such tool"}),
                ),
            }
        }
        ("POST", ["api", "internal", "audit"]) => {
            let action = body["action"].as_str().unwrap_or_default().to_owned();
            if action == "set_variable"
                && let Some(key) = body["metadata"]["key"].as_str()
            {
                state.audited_variable_keys.insert(key.to_owned());
            }
            *state.audit_taken.entry(action).or_default() += 1;
            if !state.quiet {
                state.audit.push(body);
            }
            reply(200, json!({"success": true}))
        }
        _ => reply(404, json!({"error": "Not Found"})),
    }
}

/// The Cronium app's answer (its `apps/cronium-app/src/app/api/internal/`
/// routes, behind its catch-all).
fn app_answer(
    state: &mut BackendState,
    method: &str,
    path: &str,
    segments: &[&str],
    body_is_json: bool,
    body: Value,
) -> Response<Full<Bytes>> {
    // `await request.json()` throws on a body that is not JSON: the
    // handler's catch answers 500.
    let internal_error = || reply(500, json!({"error": "Internal server error"}));
    match (method, segments) {
        ("GET", ["api", "internal", "executions", id, "context"]) => {
            match state.executions.get(*id) {
                Some(context) => reply(200, context.clone()),
                None => reply(404, json!({"error": "Execution not found"})),
            }
        }
        (
            "POST",
            [
                "api",
                "internal",
                "executions",
                id,
                op @ ("output" | "condition"),
            ],
        ) => {
            if !body_is_json {
                return internal_error();
            }
            if !state.executions.contains_key(*id) {
                return reply(404, json!({"error": "Execution not found"}));
            }
            let written = (id.to_string(), body);
            if *op == "output" {
                state.outputs.push(written);
            } else {
                state.conditions.push(written);
            }
            reply(200, json!({"success": true}))
        }
        ("GET", ["api", "internal", "variables", user, key]) => {
            variable_answer(state, user, key, json!({"error": "Variable not found"}))
        }
        ("PUT", ["api", "internal", "variables", user, key]) => {
            if !body_is_json {
                return internal_error();
            }
            let key = decode(key);
            // varchar(255), counted in characters; NOT NULL.
            let Some(text) = body.get("value").and_then(node_postgres_text) else {
                return internal_error();
            };
            if key.chars().count() > 255 {
                return internal_error();
            }
            state
                .variables
                .insert((decode(user), key), Value::String(text));
            reply(200, json!({"success": true}))
        }
        ("POST", ["api", "internal", "audit"]) => {
            if !body_is_json {
                return internal_error();
            }
            state.audit.push(body);
            reply(200, json!({"success": true}))
        }
        // Only GET and PUT are exported by the variables route file.
        (_, ["api", "internal", "variables", _, _]) => reply(405, json!({})),
        _ => reply(
            404,
            json!({
                "error": "Not Found",
                "message": format!("API endpoint '{path}' does not exist"),
                "statusCode": 404,
                "timestamp": "2026-12-07T00:00:00.000Z",
            }),
        ),
    }
}

/// `GET .../variables/{user}/{key}`: the variable as kept, or 404 with
/// the profile's `not_found` body.
fn variable_answer(
    state: &BackendState,
    user: &str,
    key: &str,
    not_found: Value,
) -> Response<Full<Bytes>> {
    let id = (decode(user), decode(key));
    match state.variables.get(&id) {
        Some(value) => reply(
            200,
            json!({"key": id.1, "value": value, "updatedAt": "2026-11-27T00:00:00.000Z"}),
        ),
        None => reply(404, not_found),
    }
}

/// What node-postgres sends for a parameter, as the text column keeps it;
/// `None` for `null`, which violates `NOT NULL`.
fn node_postgres_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(_) => Some(value.to_string()),
        Value::Array(items) => Some(postgres_array(items)),
    }
}

/// node-postgres' `arrayString`: `[1,"x",null]` is `{"1","x",NULL}`.
fn postgres_array(items: &[Value]) -> String {
    let elements: Vec<String> = items
        .iter()
        .map(|item| match item {
            Value::Null => "NULL".to_owned(),
            Value::Array(inner) => postgres_array(inner),
            other => {
                let text = node_postgres_text(other).unwrap_or_default();
                format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
            }
        })
        .collect();
    format!("{{{}}}", elements.join(","))
}

/// Percent-decodes a path segment.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&segment[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
