//! The `email` tool: sends mail through a SendGrid-v3-compatible HTTP API.
//!
//! Action `send_email` (aliases `send`, `send_mail`, `email`, `sendEmail`):
//! `POST <baseUrl>/v3/mail/send` with `Authorization: Bearer <apiKey>`.
//! Success is any 2xx (SendGrid answers 202); the result is
//! `{"accepted": true, "messageId": <X-Message-Id or null>}`.
//!
//! Where things come from:
//!
//! * `baseUrl`: the operator's settings (`settings.baseUrl`), default
//!   `https://api.sendgrid.com`. Since the operator picks it, the tool
//!   declares `*` as its outbound hosts; narrow it with
//!   `CRONIUM_TOOL_ALLOWED_HOSTS=email=api.sendgrid.com`.
//! * `apiKey`: the user's credentials `{"apiKey", "from"?, "fromName"?}`.
//! * the sender: `parameters.from`, else `credentials.from`, else
//!   `settings.from`; its display name comes with the stored address
//!   (`fromName` next to it).
//!
//! Sending is not idempotent, so the only retry is after a connection that
//! was never made.

use cronium_tool::http::{self, Request, Response};
use cronium_tool::{Action, Manifest, Tool, ToolError, ToolRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The `email` tool.
struct Email;

/// The mail API used when the operator names none.
const DEFAULT_BASE_URL: &str = "https://api.sendgrid.com";

/// One address or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(a) => vec![a],
            Self::Many(all) => all,
        }
    }
}

/// The parameters of `send_email`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    to: Addresses,
    cc: Option<Addresses>,
    bcc: Option<Addresses>,
    subject: String,
    text: Option<String>,
    html: Option<String>,
    from: Option<String>,
    reply_to: Option<String>,
}

/// What a user stores: the API key, and optionally their sender.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    api_key: String,
    from: Option<String>,
    from_name: Option<String>,
}

/// What the operator sets for the tool.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Settings {
    base_url: Option<String>,
    from: Option<String>,
    from_name: Option<String>,
}

/// A mailbox in the API's shape.
#[derive(Serialize, Debug, PartialEq)]
struct Mailbox {
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl Mailbox {
    fn new(email: String) -> Self {
        Self { email, name: None }
    }
}

impl Tool for Email {
    fn describe() -> Manifest {
        let address =
            json!({ "type": "string", "format": "email", "minLength": 3, "maxLength": 254 });
        let addresses = |description: &str| {
            json!({
                "description": description,
                "anyOf": [
                    address.clone(),
                    { "type": "array", "minItems": 1, "maxItems": 1000, "items": address.clone() }
                ]
            })
        };
        Manifest::new(
            "email",
            env!("CARGO_PKG_VERSION"),
            "Sends email through a SendGrid-compatible mail API.",
        )
        .outbound_hosts(&["*"])
        .action(
            Action::new("send_email", "Sends one email to one or more recipients.")
                .aliases(&["send", "send_mail", "email", "sendEmail"])
                .parameters(json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["to", "subject"],
                    "anyOf": [{ "required": ["text"] }, { "required": ["html"] }],
                    "properties": {
                        "to": addresses("Recipient address, or a list of them."),
                        "cc": addresses("Copy recipients."),
                        "bcc": addresses("Blind copy recipients."),
                        "subject": { "type": "string", "minLength": 1, "maxLength": 998 },
                        "text": { "type": "string", "minLength": 1, "description": "Plain-text body." },
                        "html": { "type": "string", "minLength": 1, "description": "HTML body." },
                        "from": {
                            "type": "string", "format": "email", "minLength": 3, "maxLength": 254,
                            "description": "Sender address; by default the one stored with the credentials or set by the operator."
                        },
                        "reply_to": { "type": "string", "format": "email", "minLength": 3, "maxLength": 254 }
                    }
                })),
        )
    }

    fn execute(request: ToolRequest) -> Result<Value, ToolError> {
        match request.action.as_str() {
            "send_email" => send_email(&request),
            other => Err(ToolError::UnknownAction(format!(
                "email has no action `{other}`"
            ))),
        }
    }
}

fn send_email(request: &ToolRequest) -> Result<Value, ToolError> {
    let params: Params = request.parameters()?;
    let credentials: Credentials = request.credentials("email")?;
    if credentials.api_key.trim().is_empty() {
        return Err(ToolError::MissingCredentials(
            "the stored email credentials have an empty apiKey".into(),
        ));
    }
    let settings: Settings = request.settings("email")?;
    let base_url = settings
        .base_url
        .clone()
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    let url = format!("{}/v3/mail/send", base_url.trim_end_matches('/'));
    http::check_url(&url).map_err(|_| {
        ToolError::Failed("the operator's baseUrl for email is not an http(s) URL".into())
    })?;

    let payload = payload(params, &credentials, &settings)?;
    let outgoing = Request::post(url)
        .header(
            "authorization",
            format!("Bearer {}", credentials.api_key.trim()),
        )
        .json(&payload);
    let response = http::send_once_more_if_unsent(&outgoing)?;
    if response.is_success() {
        return Ok(json!({
            "accepted": true,
            "messageId": response.header("x-message-id"),
        }));
    }
    Err(refusal(&response))
}

/// The API's JSON body.
fn payload(
    params: Params,
    credentials: &Credentials,
    settings: &Settings,
) -> Result<Value, ToolError> {
    let from = match (params.from, &credentials.from, &settings.from) {
        (Some(address), _, _) => Mailbox::new(address),
        (None, Some(address), _) => Mailbox {
            email: address.clone(),
            name: credentials.from_name.clone(),
        },
        (None, None, Some(address)) => Mailbox {
            email: address.clone(),
            name: settings.from_name.clone(),
        },
        (None, None, None) => {
            return Err(ToolError::InvalidParameters(
                "no sender: pass `from`, or store one with the email credentials".into(),
            ));
        }
    };
    check_address("from", &from.email)?;

    // The API refuses an address listed twice across to, cc and bcc: keep
    // its first place.
    let mut seen = std::collections::HashSet::new();
    let mut list = |field: &str, addresses: Option<Addresses>| -> Result<Vec<Mailbox>, ToolError> {
        let mut out = Vec::new();
        for address in addresses.map(Addresses::into_vec).unwrap_or_default() {
            let address = address.trim().to_owned();
            check_address(field, &address)?;
            if seen.insert(address.to_ascii_lowercase()) {
                out.push(Mailbox::new(address));
            }
        }
        Ok(out)
    };
    let to = list("to", Some(params.to))?;
    let cc = list("cc", params.cc)?;
    let bcc = list("bcc", params.bcc)?;
    if to.is_empty() {
        return Err(ToolError::InvalidParameters(
            "`to` names no recipient".into(),
        ));
    }

    let mut personalization = json!({ "to": to });
    if !cc.is_empty() {
        personalization["cc"] = json!(cc);
    }
    if !bcc.is_empty() {
        personalization["bcc"] = json!(bcc);
    }
    // The API wants text/plain before text/html.
    let mut content = Vec::new();
    if let Some(text) = params.text {
        content.push(json!({ "type": "text/plain", "value": text }));
    }
    if let Some(html) = params.html {
        content.push(json!({ "type": "text/html", "value": html }));
    }
    if content.is_empty() {
        return Err(ToolError::InvalidParameters(
            "give a `text` or an `html` body".into(),
        ));
    }
    let mut body = json!({
        "personalizations": [personalization],
        "from": from,
        "subject": params.subject,
        "content": content,
    });
    if let Some(reply_to) = params.reply_to {
        check_address("reply_to", &reply_to)?;
        body["reply_to"] = json!(Mailbox::new(reply_to));
    }
    Ok(body)
}

/// A plain sanity check (one `@`, something on both sides, no spaces):
/// the mail API does the real validation.
fn check_address(field: &str, address: &str) -> Result<(), ToolError> {
    let ok = match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && address.len() <= 254
                && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ToolError::InvalidParameters(format!(
            "`{field}`: `{}` is not an email address",
            http::snippet(address, 80)
        )))
    }
}

/// A non-2xx answer: a refused key means unusable credentials; otherwise
/// the API's own messages (`{"errors": [{"message", "field"}]}`).
fn refusal(response: &Response) -> ToolError {
    if response.status == 401 {
        return ToolError::MissingCredentials(
            "the mail API did not accept the stored apiKey".into(),
        );
    }
    #[derive(Deserialize)]
    struct Problems {
        errors: Vec<Problem>,
    }
    #[derive(Deserialize)]
    struct Problem {
        message: Option<String>,
        field: Option<String>,
    }
    let detail = match response.json::<Problems>() {
        Some(problems) if !problems.errors.is_empty() => {
            let parts: Vec<String> = problems
                .errors
                .into_iter()
                .map(|p| match (p.field, p.message) {
                    (Some(field), Some(message)) => format!("{field}: {message}"),
                    (None, Some(message)) => message,
                    (Some(field), None) => field,
                    (None, None) => "unspecified".to_owned(),
                })
                .collect();
            http::snippet(&parts.join("; "), 300)
        }
        _ => response.snippet(),
    };
    http::status_error("the mail API", response.status, &detail)
}

cronium_tool::export_tool!(Email);

#[cfg(test)]
mod tests {
    use super::*;

    fn params(value: Value) -> Params {
        serde_json::from_value(value).unwrap()
    }

    fn credentials(from: Option<&str>) -> Credentials {
        Credentials {
            api_key: "SG.key".into(),
            from: from.map(str::to_owned),
            from_name: Some("Alerts".into()),
        }
    }

    #[test]
    fn manifest_passes_the_runtime_checks() {
        assert_eq!(
            cronium_tool::wire::check_manifest(&Email::describe()),
            Ok(())
        );
    }

    #[test]
    fn payload_has_the_api_shape() {
        let body = payload(
            params(json!({
                "to": "a@x.org", "cc": ["b@x.org", "A@x.org"], "subject": "s",
                "text": "t", "html": "<p>t</p>", "reply_to": "r@x.org"
            })),
            &credentials(Some("me@x.org")),
            &Settings::default(),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({
                "personalizations": [{"to": [{"email": "a@x.org"}], "cc": [{"email": "b@x.org"}]}],
                "from": {"email": "me@x.org", "name": "Alerts"},
                "subject": "s",
                "content": [{"type": "text/plain", "value": "t"}, {"type": "text/html", "value": "<p>t</p>"}],
                "reply_to": {"email": "r@x.org"}
            })
        );
    }

    #[test]
    fn sender_comes_from_params_then_credentials_then_settings() {
        let settings = Settings {
            from: Some("ops@x.org".into()),
            ..Settings::default()
        };
        let p = || params(json!({"to": ["a@x.org"], "subject": "s", "text": "t"}));
        let body = payload(p(), &credentials(None), &settings).unwrap();
        assert_eq!(body["from"], json!({"email": "ops@x.org"}));
        let body = payload(
            params(json!({"to": "a@x.org", "subject": "s", "text": "t", "from": "me@y.org"})),
            &credentials(Some("c@x.org")),
            &settings,
        )
        .unwrap();
        assert_eq!(body["from"], json!({"email": "me@y.org"}));
        assert!(matches!(
            payload(p(), &credentials(None), &Settings::default()),
            Err(ToolError::InvalidParameters(_))
        ));
    }

    #[test]
    fn addresses_are_checked() {
        let bad = params(json!({"to": "not an address", "subject": "s", "text": "t"}));
        assert!(matches!(
            payload(bad, &credentials(Some("me@x.org")), &Settings::default()),
            Err(ToolError::InvalidParameters(_))
        ));
    }
}
