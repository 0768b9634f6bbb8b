//! Batches (`POST /executions/{id}/batch`) for the tests and the benchmark:
//! a list of calls sent one by one or as one batch, and what of each answer
//! must match between the two.

use serde_json::{Value, json};

use super::{Reply, call};

/// One helper call: relative to `/executions/{id}/` unless it starts with
/// `/`, as in a batch.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

/// A call without headers.
pub fn call_of(method: &'static str, url: &str, body: Option<Value>) -> Call {
    Call {
        method,
        url: url.to_owned(),
        headers: Vec::new(),
        body,
    }
}

/// The script of the issue: read the input, the context and three
/// variables, then write the output and a condition.
pub fn seven_call_script() -> Vec<Call> {
    vec![
        call_of("GET", "input", None),
        call_of("GET", "context", None),
        call_of("GET", "variables/region", None),
        call_of("GET", "variables/retries", None),
        call_of("GET", "variables/a%2Fb", None),
        call_of(
            "POST",
            "output",
            Some(json!({"data": {"rows": 3, "ok": true}})),
        ),
        call_of("POST", "condition", Some(json!({"condition": true}))),
    ]
}

/// The body of a batch of `calls`, with ids `"1"`, `"2"`, ...
pub fn batch_body(calls: &[Call]) -> Value {
    let requests: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut request = json!({"id": (i + 1).to_string(), "method": c.method, "url": c.url});
            if !c.headers.is_empty() {
                let headers: serde_json::Map<String, Value> = c
                    .headers
                    .iter()
                    .map(|(n, v)| (n.clone(), Value::String(v.clone())))
                    .collect();
                request["headers"] = Value::Object(headers);
            }
            if let Some(body) = &c.body {
                request["body"] = body.clone();
            }
            request
        })
        .collect();
    json!({ "requests": requests })
}

/// The path `url` names for `execution`.
pub fn absolute(execution: &str, url: &str) -> String {
    if url.starts_with('/') {
        url.to_owned()
    } else {
        format!("/executions/{execution}/{url}")
    }
}

/// Sends `calls` one by one to the server at `base` with `token`.
pub async fn one_by_one(base: &str, execution: &str, token: &str, calls: &[Call]) -> Vec<Reply> {
    let auth = format!("Bearer {token}");
    let mut replies = Vec::new();
    for c in calls {
        let mut headers: Vec<(&str, &str)> = vec![
            ("authorization", &auth),
            ("content-type", "application/json"),
        ];
        headers.extend(c.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let body = c.body.as_ref().map(Value::to_string);
        let url = format!("{base}{}", absolute(execution, &c.url));
        replies.push(call(c.method, &url, &headers, body.as_deref().map(str::as_bytes)).await);
    }
    replies
}

/// Sends `body` as the batch of `execution` with `token`.
pub async fn send(base: &str, execution: &str, token: &str, body: &Value) -> Reply {
    let auth = format!("Bearer {token}");
    call(
        "POST",
        &format!("{base}/executions/{execution}/batch"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    )
    .await
}

/// The answers of a batch's 200, in order.
pub fn responses(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "the batch was answered: {reply:?}");
    reply.json["responses"]
        .as_array()
        .unwrap_or_else(|| panic!("no responses: {reply:?}"))
        .clone()
}

/// What of one answer inside a batch must match the same call made on its
/// own ([`super::parity::essence`]): status, the headers a route sets, and
/// the body.
pub fn essence(response: &Value) -> (u16, [Option<String>; 5], Value) {
    let header = |name: &str| response["headers"][name].as_str().map(str::to_owned);
    (
        response["status"].as_u64().expect("a status") as u16,
        [
            header("content-type"),
            header("allow"),
            header("retry-after"),
            header("idempotent-replayed"),
            header("etag"),
        ],
        response.get("body").cloned().unwrap_or(Value::Null),
    )
}
