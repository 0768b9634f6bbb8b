//! The `webhook` tool: one HTTP(S) call to a URL the script names.
//!
//! Action `send` (aliases `request`, `call`, `post`, `trigger`,
//! `send_webhook`, `execute`). The body is sent as JSON, unless it is a
//! string and a `content-type` header is given: then it goes as it is.
//! Retries follow 5xx answers and connection failures (200 ms, 400 ms, ...),
//! never 4xx ones; the result is `{"status","attempts","headers","body"}`.
//!
//! Credentials are optional: `{"headers": {..}}` adds secret headers (say an
//! `Authorization` per user) over the script's own. Since the script picks
//! the URL, a user can bind them to hosts with `"hosts": ["api.example.com",
//! "*.example.org"]`; without `hosts` they go to every URL.
//!
//! The tool declares `*` as its outbound hosts: the operator narrows that
//! with `CRONIUM_TOOL_ALLOWED_HOSTS=webhook=...`.

use cronium_tool::http::{self, Method, Request};
use cronium_tool::retry::Backoff;
use cronium_tool::{Action, Manifest, Tool, ToolError, ToolRequest};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The `webhook` tool.
struct Webhook;

/// The parameters of `send`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    url: String,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default = "default_retries")]
    retries: u32,
}

fn default_method() -> String {
    "POST".into()
}

fn default_retries() -> u32 {
    2
}

/// The optional credentials: secret headers, and the hosts they may go to.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    hosts: Option<Vec<String>>,
}

impl Tool for Webhook {
    fn describe() -> Manifest {
        Manifest::new(
            "webhook",
            env!("CARGO_PKG_VERSION"),
            "Calls an HTTP(S) URL, with retries on server errors.",
        )
        .outbound_hosts(&["*"])
        .action(
            Action::new(
                "send",
                "Sends one HTTP request to a URL and returns the answer.",
            )
            .aliases(&[
                "request",
                "call",
                "post",
                "trigger",
                "send_webhook",
                "execute",
            ])
            .parameters(json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "additionalProperties": false,
                "required": ["url"],
                "properties": {
                    "url": {
                        "type": "string",
                        "format": "uri",
                        "minLength": 8,
                        "maxLength": 4096,
                        "description": "The http:// or https:// URL to call.",
                        "examples": ["https://example.com/hooks/deploy"]
                    },
                    "method": {
                        "type": "string",
                        "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
                        "default": "POST"
                    },
                    "headers": {
                        "type": "object",
                        "additionalProperties": { "type": "string" },
                        "description": "Request headers."
                    },
                    "body": {
                        "description": "Any JSON, sent as JSON; a string with a content-type header is sent as it is."
                    },
                    "retries": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": 5,
                        "default": 2,
                        "description": "Retries after a 5xx answer or a connection failure."
                    }
                }
            })),
        )
    }

    fn execute(request: ToolRequest) -> Result<Value, ToolError> {
        match request.action.as_str() {
            "send" => send(&request),
            other => Err(ToolError::UnknownAction(format!(
                "webhook has no action `{other}`"
            ))),
        }
    }
}

fn send(request: &ToolRequest) -> Result<Value, ToolError> {
    let params: Params = request.parameters()?;
    let credentials: Credentials = match request.credentials {
        Some(_) => request.credentials("webhook")?,
        None => Credentials::default(),
    };
    let outgoing = build(
        &params,
        &credentials,
        request.invocation.idempotency_key.as_deref(),
    )?;

    let (outcome, attempts) =
        http::send_with_retries(&outgoing, &Backoff::new(params.retries.min(5)));
    let after = if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    };
    let with_attempts = |mut error: ToolError| {
        if let ToolError::Failed(message) = &mut error {
            message.push_str(&after);
        }
        error
    };
    let response = outcome.map_err(|e| with_attempts(e.into()))?;
    if response.status >= 400 {
        let error = http::status_error("webhook", response.status, &response.snippet());
        return Err(with_attempts(error));
    }

    let headers: Map<String, Value> =
        response
            .headers
            .iter()
            .fold(Map::new(), |mut all, (name, value)| {
                // Repeated headers are joined, as HTTP allows.
                let joined = match all.get(name).and_then(Value::as_str) {
                    Some(before) => format!("{before}, {value}"),
                    None => value.clone(),
                };
                all.insert(name.clone(), Value::String(joined));
                all
            });
    let mut result = json!({
        "status": response.status,
        "attempts": attempts,
        "headers": headers,
        "body": response.body_value(),
    });
    if response.truncated {
        result["truncated"] = Value::Bool(true);
    }
    Ok(result)
}

/// The request the parameters and credentials describe.
fn build(
    params: &Params,
    credentials: &Credentials,
    idempotency_key: Option<&str>,
) -> Result<Request, ToolError> {
    let method = Method::parse(&params.method).ok_or_else(|| {
        ToolError::InvalidParameters(format!(
            "`{}` is not a method this tool sends",
            params.method
        ))
    })?;
    http::check_url(&params.url)
        .map_err(|e| ToolError::InvalidParameters(format!("`url`: {e}")))?;
    let body = params.body.as_ref().filter(|b| !b.is_null());
    if body.is_some() && matches!(method, Method::Get | Method::Head) {
        return Err(ToolError::InvalidParameters(format!(
            "a {} request carries no body: use POST, PUT or PATCH",
            method.as_str()
        )));
    }

    let mut outgoing = Request::new(method, params.url.clone());
    for (name, value) in &params.headers {
        outgoing = outgoing.header(name, value);
    }
    if credentials_apply(credentials, &outgoing.host()) {
        for (name, value) in &credentials.headers {
            outgoing = outgoing.header(name, value);
        }
    }
    if let Some(key) = idempotency_key
        && !outgoing.has_header("idempotency-key")
    {
        outgoing = outgoing.header("idempotency-key", key);
    }
    Ok(match body {
        Some(Value::String(raw)) if outgoing.has_header("content-type") => {
            outgoing.body(raw.as_bytes())
        }
        Some(value) => outgoing.json(value),
        None => outgoing,
    })
}

/// Whether the stored headers may go to `host` (`name` or `name:port`).
fn credentials_apply(credentials: &Credentials, host: &str) -> bool {
    let Some(hosts) = &credentials.hosts else {
        return true;
    };
    let name = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    hosts.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) => name.ends_with(&format!(".{suffix}")),
            None => pattern == name || pattern == host.to_ascii_lowercase(),
        }
    })
}

cronium_tool::export_tool!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;

    fn params(value: Value) -> Params {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn manifest_passes_the_runtime_checks() {
        assert_eq!(
            cronium_tool::wire::check_manifest(&Webhook::describe()),
            Ok(())
        );
    }

    #[test]
    fn bodies_are_json_unless_a_string_with_a_content_type() {
        let none = Credentials::default();
        let r = build(
            &params(json!({"url": "https://a.example/x", "body": {"k": 1}})),
            &none,
            None,
        )
        .unwrap();
        assert_eq!(r.body, br#"{"k":1}"#);
        assert!(
            r.headers
                .contains(&("content-type".into(), "application/json".into()))
        );

        let r = build(
            &params(json!({"url": "https://a.example/x", "body": "a=1", "headers": {"Content-Type": "text/plain"}})),
            &none,
            Some("key-1"),
        )
        .unwrap();
        assert_eq!(r.body, b"a=1");
        assert!(r.has_header("idempotency-key"));

        let r = build(
            &params(json!({"url": "https://a.example/x", "body": "a=1"})),
            &none,
            None,
        )
        .unwrap();
        assert_eq!(r.body, br#""a=1""#);
    }

    #[test]
    fn bad_requests_are_invalid_parameters() {
        let none = Credentials::default();
        for p in [
            json!({"url": "ftp://a.example/x"}),
            json!({"url": "https://a.example/x", "method": "GET", "body": {}}),
            json!({"url": "https://a.example/x", "method": "TRACE"}),
        ] {
            assert!(matches!(
                build(&params(p), &none, None),
                Err(ToolError::InvalidParameters(_))
            ));
        }
    }

    #[test]
    fn credential_headers_go_only_to_their_hosts() {
        let creds = Credentials {
            headers: BTreeMap::from([("Authorization".into(), "Bearer s".into())]),
            hosts: Some(vec!["api.example.com".into(), "*.example.org".into()]),
        };
        let to = |url: &str| build(&params(json!({ "url": url })), &creds, None).unwrap();
        assert!(to("https://api.example.com/x").has_header("authorization"));
        assert!(to("https://a.b.example.org/x").has_header("authorization"));
        assert!(!to("https://evil.example/x").has_header("authorization"));
        assert!(!to("https://example.org/x").has_header("authorization"));
    }
}
