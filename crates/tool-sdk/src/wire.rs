//! The JSON shapes of a tool, shared by tool authors, the HTTP face and the
//! Spin adapter that calls tools through service chaining.
//!
//! They mirror the WIT records of `cronium:runtime/tool` field for field,
//! with JSON values in place of JSON text and camelCase names:
//!
//! | exchange | body |
//! |---|---|
//! | `GET /` → 200 | [`Manifest`]: `{"id","version","description","actions":[{"name","aliases","description","parameters":<schema>}],"outboundHosts":[..]}` |
//! | `POST /` | [`ToolRequest`]: `{"action","parameters":{..},"credentials":{..}\|null,"settings":{..},"invocation":{"executionId","jobId","userId","idempotencyKey"}}` |
//! | → 200 | [`DataBody`]: `{"data":<result>}` |
//! | → 400 / 502 | [`ErrorBody`]: `{"error":{"kind":"invalid-parameters\|unknown-action\|missing-credentials\|rejected\|failed","message":".."}}` |
//!
//! [`ToolError::status`] gives the status of an error (400 for the first
//! three kinds, 502 for the last two); [`decode_reply`] turns an answer
//! back into the tool's result or error.
//!
//! This module is plain serde: it builds natively and on wasm, with or
//! without the crate's `guest` feature.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// What a tool is and what it needs (WIT `manifest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The tool's id, as scripts name it: lower-case ASCII letters, digits,
    /// `-` and `_`, 1 to 64 bytes.
    pub id: String,
    /// Semantic version of the tool.
    pub version: String,
    /// One sentence for the catalogue.
    pub description: String,
    /// The tool's actions.
    pub actions: Vec<Action>,
    /// The hosts the tool may call (`hooks.slack.com`, `*.slack.com`,
    /// `api.example.com:8443`, or `*`). Calls elsewhere fail in the tool.
    pub outbound_hosts: Vec<String>,
}

impl Manifest {
    /// A manifest with no actions and no outbound hosts yet.
    pub fn new(id: &str, version: &str, description: &str) -> Self {
        Self {
            id: id.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            actions: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }

    /// Adds an action.
    pub fn action(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }

    /// Sets the hosts the tool may call.
    pub fn outbound_hosts(mut self, hosts: &[&str]) -> Self {
        self.outbound_hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        self
    }

    /// The action called `name`, by its canonical name or one of its
    /// aliases, ignoring ASCII case: the host's rule
    /// (`cronium_rules::tools::resolve_action`), so both faces agree with it.
    pub fn find_action(&self, name: &str) -> Option<&Action> {
        cronium_rules::tools::resolve_action(&self.actions, name, |a| {
            (a.name.as_str(), a.aliases.as_slice())
        })
    }

    /// The canonical action names, comma-separated, for error messages.
    pub fn action_names(&self) -> String {
        let names: Vec<&str> = self.actions.iter().map(|a| a.name.as_str()).collect();
        names.join(", ")
    }
}

/// One action of a tool (WIT `action`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The canonical name, e.g. `send_message`.
    pub name: String,
    /// Other names callers may use for it.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// One sentence for the catalogue.
    pub description: String,
    /// JSON Schema of the parameters, in the keyword subset the runtime
    /// checks (see `docs/writing-a-tool.md`).
    pub parameters: Value,
}

impl Action {
    /// An action without aliases whose parameters are an empty object.
    pub fn new(name: &str, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            aliases: Vec::new(),
            description: description.to_owned(),
            parameters: serde_json::json!({
                "type": "object",
                "additionalProperties": false
            }),
        }
    }

    /// Sets the other names callers may use.
    pub fn aliases(mut self, aliases: &[&str]) -> Self {
        self.aliases = aliases.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// Sets the JSON Schema of the parameters.
    pub fn parameters(mut self, schema: Value) -> Self {
        self.parameters = schema;
        self
    }
}

/// Who a call is made for (WIT `invocation`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Invocation {
    /// The execution whose script asked for the action.
    pub execution_id: String,
    /// That execution's job.
    pub job_id: String,
    /// The user the job belongs to (whose credentials the call carries).
    pub user_id: String,
    /// The caller's `Idempotency-Key`, if it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// One call of one action (WIT `tool-request`).
///
/// `Debug` leaves the credentials out, so a request can be logged.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRequest {
    /// The action's canonical name (the SDK resolves aliases before
    /// `execute` runs).
    pub action: String,
    /// The parameters, a JSON object valid against the action's schema.
    #[serde(default = "empty_object")]
    pub parameters: Value,
    /// The user's credentials for this tool, if any. Never shown to scripts:
    /// keep them out of results and error messages.
    #[serde(default)]
    pub credentials: Option<Value>,
    /// The operator's settings for this tool (`{}` when none).
    #[serde(default = "empty_object")]
    pub settings: Value,
    /// Who the call is made for.
    #[serde(default)]
    pub invocation: Invocation,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl fmt::Debug for ToolRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolRequest")
            .field("action", &self.action)
            .field("parameters", &self.parameters)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .field("settings", &"<redacted>")
            .field("invocation", &self.invocation)
            .finish()
    }
}

impl ToolRequest {
    /// The parameters as `T`; `invalid-parameters` when they do not fit.
    pub fn parameters<T: serde::de::DeserializeOwned>(&self) -> Result<T, ToolError> {
        T::deserialize(&self.parameters)
            .map_err(|e| ToolError::InvalidParameters(format!("invalid parameters: {e}")))
    }

    /// The user's credentials as `T`; `missing-credentials` when there are
    /// none or they do not fit. The message names a missing or unknown
    /// field, never a value.
    pub fn credentials<T: serde::de::DeserializeOwned>(&self, tool: &str) -> Result<T, ToolError> {
        let Some(credentials) = self.credentials.as_ref().filter(|c| !c.is_null()) else {
            return Err(ToolError::MissingCredentials(format!(
                "no {tool} credentials are stored for this user"
            )));
        };
        T::deserialize(credentials).map_err(|e| {
            ToolError::MissingCredentials(format!(
                "the stored {tool} credentials are unusable: {}",
                redacted(&e)
            ))
        })
    }

    /// The operator's settings as `T`; `failed` when they do not fit (the
    /// user cannot fix them). Use `#[serde(default)]` on `T` for settings
    /// that may be absent.
    pub fn settings<T: serde::de::DeserializeOwned>(&self, tool: &str) -> Result<T, ToolError> {
        let settings = if self.settings.is_null() {
            empty_object()
        } else {
            self.settings.clone()
        };
        T::deserialize(settings).map_err(|e| {
            ToolError::Failed(format!(
                "the operator's settings for {tool} are invalid: {}",
                redacted(&e)
            ))
        })
    }
}

/// A serde error's text when it names only fields (`missing field`,
/// `unknown field`); otherwise a generic phrase, since serde's other
/// messages quote the offending value, which may be a secret.
fn redacted(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = text.split(" at line ").next().unwrap_or_default();
    if text.starts_with("missing field") || text.starts_with("unknown field") {
        text.to_owned()
    } else {
        "a field has the wrong type or value".to_owned()
    }
}

/// Why an action did not happen (WIT `tool-error`).
///
/// On the wire it is `{"kind":"<kebab-case case>","message":".."}`.
/// Messages are for people, and never carry a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum ToolError {
    /// The parameters are unusable in a way the schema cannot say (400).
    InvalidParameters(String),
    /// The tool has no such action (400).
    UnknownAction(String),
    /// The user has no (usable) credentials for this tool (400).
    MissingCredentials(String),
    /// The remote service refused the request, e.g. answered 4xx (502).
    Rejected(String),
    /// The remote service failed or could not be reached, or the call was
    /// not allowed (502).
    Failed(String),
}

impl ToolError {
    /// The HTTP status of the error on the HTTP face: 400 for what the
    /// caller can fix, 502 for what the remote side did.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidParameters(_) | Self::UnknownAction(_) | Self::MissingCredentials(_) => {
                400
            }
            Self::Rejected(_) | Self::Failed(_) => 502,
        }
    }

    /// The WIT case name: `invalid-parameters`, `rejected`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidParameters(_) => "invalid-parameters",
            Self::UnknownAction(_) => "unknown-action",
            Self::MissingCredentials(_) => "missing-credentials",
            Self::Rejected(_) => "rejected",
            Self::Failed(_) => "failed",
        }
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidParameters(m)
            | Self::UnknownAction(m)
            | Self::MissingCredentials(m)
            | Self::Rejected(m)
            | Self::Failed(m) => m,
        }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for ToolError {}

/// A successful answer of the HTTP face: `{"data": <result>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataBody {
    /// The action's result.
    pub data: Value,
}

/// A failed answer of the HTTP face: `{"error": {"kind", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Why the action did not happen.
    pub error: ToolError,
}

/// Decodes an answer of the HTTP face (`{"data"}` or `{"error"}`, whatever
/// the status) into the action's outcome; `Err` when the body is neither.
pub fn decode_reply(body: &[u8]) -> Result<Result<Value, ToolError>, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Reply {
        Error(ErrorBody),
        Data(DataBody),
    }
    Ok(match serde_json::from_slice::<Reply>(body)? {
        Reply::Error(e) => Err(e.error),
        Reply::Data(d) => Ok(d.data),
    })
}

/// Checks a manifest the way the host does when it loads a tool (the rules
/// of `cronium_rules::tools::check_manifest`: id, unique action names and
/// aliases, parameter schemas in the supported keyword subset, outbound host
/// patterns), and also that every action's parameters are a closed object
/// (`"type": "object"`, `"additionalProperties": false`), so a misspelt
/// parameter is refused instead of ignored. For a tool's unit tests:
///
/// ```ignore
/// assert_eq!(cronium_tool::wire::check_manifest(&Slack::describe()), Ok(()));
/// ```
pub fn check_manifest(manifest: &Manifest) -> Result<(), String> {
    let texts: Vec<String> = manifest
        .actions
        .iter()
        .map(|a| a.parameters.to_string())
        .collect();
    let decls =
        manifest
            .actions
            .iter()
            .zip(&texts)
            .map(|(a, text)| cronium_rules::tools::ActionDecl {
                name: &a.name,
                aliases: &a.aliases,
                parameters: text,
            });
    cronium_rules::tools::check_manifest(&manifest.id, decls, &manifest.outbound_hosts)
        .map_err(|e| e.to_string())?;
    for action in &manifest.actions {
        let schema = &action.parameters;
        if schema.get("type") != Some(&Value::from("object"))
            || schema.get("additionalProperties") != Some(&Value::Bool(false))
        {
            return Err(format!(
                "action {:?}: parameters are not a closed object schema \
                 (\"type\": \"object\", \"additionalProperties\": false)",
                action.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn check_finds_unsupported_keywords_and_open_schemas() {
        let keyword =
            Manifest::new("t", "1", "d").action(Action::new("a", "x").parameters(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {"p": {"type": "string", "pattern": "^a"}}
            })));
        assert!(check_manifest(&keyword).is_err());
        let open = Manifest::new("t", "1", "d")
            .action(Action::new("a", "x").parameters(json!({"type": "object"})));
        assert!(check_manifest(&open).unwrap_err().contains("closed object"));
        let twice = Manifest::new("t", "1", "d")
            .action(Action::new("a", "x"))
            .action(Action::new("b", "y").aliases(&["A"]));
        assert!(check_manifest(&twice).is_err());
        let good = Manifest::new("ok", "1", "d").action(Action::new("a", "x"));
        assert_eq!(check_manifest(&good), Ok(()));
    }

    #[test]
    fn request_round_trips_with_defaults() {
        let request: ToolRequest = serde_json::from_value(json!({
            "action": "send",
            "parameters": {"a": 1},
            "credentials": null,
            "invocation": {"executionId": "e", "jobId": "j", "userId": "u"}
        }))
        .unwrap();
        assert_eq!(request.credentials, None);
        assert_eq!(request.settings, json!({}));
        assert_eq!(request.invocation.idempotency_key, None);
        let text = serde_json::to_value(&request).unwrap();
        assert_eq!(text["invocation"]["executionId"], "e");
    }

    #[test]
    fn errors_have_the_wire_shape_and_status() {
        let body = ErrorBody {
            error: ToolError::MissingCredentials("none".into()),
        };
        let text = serde_json::to_value(&body).unwrap();
        assert_eq!(
            text,
            json!({"error": {"kind": "missing-credentials", "message": "none"}})
        );
        assert_eq!(body.error.status(), 400);
        assert_eq!(ToolError::Failed(String::new()).status(), 502);
        let decoded = decode_reply(text.to_string().as_bytes()).unwrap();
        assert_eq!(decoded, Err(body.error));
        let ok = decode_reply(br#"{"data":{"x":1}}"#).unwrap();
        assert_eq!(ok, Ok(json!({"x": 1})));
        assert!(decode_reply(b"{}").is_err());
    }

    #[test]
    fn credential_errors_do_not_echo_values() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Creds {
            token: u32,
        }
        let request = ToolRequest {
            action: "a".into(),
            parameters: json!({}),
            credentials: Some(json!({"token": "xoxb-secret"})),
            settings: json!({}),
            invocation: Invocation::default(),
        };
        let err = request.credentials::<Creds>("slack").unwrap_err();
        assert!(!err.message().contains("xoxb"), "{err}");
        assert!(!format!("{request:?}").contains("xoxb"));
        let request = ToolRequest {
            credentials: Some(json!({})),
            ..request
        };
        let err = request.credentials::<Creds>("slack").unwrap_err();
        assert!(err.message().contains("missing field `token`"), "{err}");
    }

    #[test]
    fn manifest_uses_camel_case_and_finds_aliases() {
        let manifest = Manifest::new("t", "1.0.0", "d")
            .outbound_hosts(&["example.com"])
            .action(Action::new("send", "s").aliases(&["post"]));
        let text = serde_json::to_value(&manifest).unwrap();
        assert_eq!(text["outboundHosts"], json!(["example.com"]));
        assert_eq!(manifest.find_action("post").unwrap().name, "send");
        assert!(manifest.find_action("nope").is_none());
    }
}
