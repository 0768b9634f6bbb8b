//! The `slack` tool: posts a message to Slack.
//!
//! Action `send_message` (aliases `send`, `post_message`, `message`,
//! `sendMessage`, `chat.postMessage`). Two ways in, chosen by the user's
//! credentials:
//!
//! * `{"botToken": "xoxb-..", "defaultChannel"?: "C0.."}` and a channel
//!   (the parameter, else `defaultChannel`): `chat.postMessage`, which
//!   answers the message's `channel` and `ts` (for threads);
//! * `{"webhookUrl": "https://hooks.slack.com/services/.."}`: the incoming
//!   webhook, whose channel is fixed when the webhook is made.
//!
//! Posting a message is not idempotent, so the only retry is after a
//! connection that was never made.

use cronium_tool::http::{self, Request, Response};
use cronium_tool::{Action, Manifest, Tool, ToolError, ToolRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The `slack` tool.
struct Slack;

/// Slack's Web API method that posts a message.
const POST_MESSAGE_URL: &str = "https://slack.com/api/chat.postMessage";

/// The parameters of `send_message`; they are also the JSON payload Slack
/// takes, so absent ones are left out.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Message {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocks: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon_emoji: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon_url: Option<String>,
}

/// What a user stores for Slack: a webhook URL, a bot token, or both.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    webhook_url: Option<String>,
    bot_token: Option<String>,
    default_channel: Option<String>,
}

impl Tool for Slack {
    fn describe() -> Manifest {
        let text = |description: &str| json!({ "type": "string", "minLength": 1, "description": description });
        Manifest::new(
            "slack",
            env!("CARGO_PKG_VERSION"),
            "Posts messages to Slack through an incoming webhook or a bot token.",
        )
        .outbound_hosts(&["hooks.slack.com", "slack.com"])
        .action(
            Action::new("send_message", "Posts a message to a Slack channel.")
                .aliases(&["send", "post_message", "message", "sendMessage", "chat.postMessage"])
                .parameters(json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "additionalProperties": false,
                    "anyOf": [{ "required": ["text"] }, { "required": ["blocks"] }],
                    "properties": {
                        "text": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 40000,
                            "description": "The message (mrkdwn); with blocks, the notification fallback."
                        },
                        "blocks": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 50,
                            "items": { "type": "object" },
                            "description": "Block Kit blocks."
                        },
                        "attachments": {
                            "type": "array",
                            "maxItems": 100,
                            "items": { "type": "object" },
                            "description": "Legacy attachments."
                        },
                        "channel": text("Channel id or name; needed with a bot token unless a defaultChannel is stored."),
                        "thread_ts": text("Reply in the thread of this message timestamp."),
                        "username": text("Display name override."),
                        "icon_emoji": text("Icon override, e.g. :robot_face:."),
                        "icon_url": {
                            "type": "string",
                            "format": "uri",
                            "description": "Icon override, as an image URL."
                        }
                    }
                })),
        )
    }

    fn execute(request: ToolRequest) -> Result<Value, ToolError> {
        match request.action.as_str() {
            "send_message" => send_message(&request),
            other => Err(ToolError::UnknownAction(format!(
                "slack has no action `{other}`"
            ))),
        }
    }
}

fn send_message(request: &ToolRequest) -> Result<Value, ToolError> {
    let mut message: Message = request.parameters()?;
    let credentials: Credentials = request.credentials("slack")?;
    let bot_token = credentials.bot_token.filter(|t| !t.trim().is_empty());
    let webhook_url = credentials.webhook_url.filter(|u| !u.trim().is_empty());
    if message.channel.is_none() {
        message.channel = credentials.default_channel.filter(|c| !c.is_empty());
    }

    match (bot_token, &message.channel, webhook_url) {
        (Some(token), Some(_), _) => post_message(&token, &message),
        (_, _, Some(url)) => post_webhook(&url, &message),
        (Some(_), None, None) => Err(ToolError::InvalidParameters(
            "posting with a bot token needs a `channel` (or a stored defaultChannel)".into(),
        )),
        (None, _, None) => Err(ToolError::MissingCredentials(
            "the stored slack credentials have neither a webhookUrl nor a botToken".into(),
        )),
    }
}

/// `chat.postMessage` with the bot token. Slack answers 200 for most
/// refusals, with `{"ok": false, "error": "<code>"}`.
fn post_message(token: &str, message: &Message) -> Result<Value, ToolError> {
    let request = Request::post(POST_MESSAGE_URL)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json; charset=utf-8")
        .json(message);
    let response = http::send_once_more_if_unsent(&request)?;
    if response.status >= 500 {
        return Err(http::status_error(
            "Slack",
            response.status,
            &response.snippet(),
        ));
    }
    #[derive(Deserialize)]
    struct Answer {
        ok: bool,
        error: Option<String>,
        channel: Option<String>,
        ts: Option<String>,
    }
    let Some(answer) = response.json::<Answer>() else {
        return Err(http::status_error(
            "Slack",
            response.status,
            &response.snippet(),
        ));
    };
    if answer.ok {
        return Ok(
            json!({ "via": "chat.postMessage", "channel": answer.channel, "ts": answer.ts }),
        );
    }
    let code = answer
        .error
        .unwrap_or_else(|| format!("HTTP {}", response.status));
    Err(refusal(&code, &response))
}

/// The incoming webhook. Slack answers `ok` (200), or a short code such as
/// `invalid_payload`, `no_text`, `channel_not_found` with a 4xx.
fn post_webhook(url: &str, message: &Message) -> Result<Value, ToolError> {
    http::check_url(url).map_err(|_| {
        ToolError::MissingCredentials(
            "the stored slack webhookUrl is not a valid http(s) URL".into(),
        )
    })?;
    let response = http::send_once_more_if_unsent(&Request::post(url).json(message))?;
    if response.is_success() {
        return Ok(json!({ "via": "webhook" }));
    }
    if response.status >= 500 {
        return Err(http::status_error(
            "Slack",
            response.status,
            &response.snippet(),
        ));
    }
    Err(refusal(&response.snippet(), &response))
}

/// A refusal by Slack: unusable credentials when the code says so,
/// otherwise `rejected` with Slack's code.
fn refusal(code: &str, response: &Response) -> ToolError {
    const CREDENTIAL_CODES: &[&str] = &[
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_service",
        "invalid_token",
    ];
    if CREDENTIAL_CODES.contains(&code) {
        ToolError::MissingCredentials(format!(
            "Slack did not accept the stored credentials ({code})"
        ))
    } else if response.status == 429 || code == "ratelimited" {
        let wait = response.header("retry-after").unwrap_or("a few");
        ToolError::Rejected(format!(
            "Slack is rate limiting; retry after {wait} seconds"
        ))
    } else {
        ToolError::Rejected(format!("Slack refused the message: {code}"))
    }
}

cronium_tool::export_tool!(Slack);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_passes_the_runtime_checks() {
        assert_eq!(
            cronium_tool::wire::check_manifest(&Slack::describe()),
            Ok(())
        );
    }

    #[test]
    fn payload_leaves_absent_fields_out() {
        let message: Message =
            serde_json::from_value(json!({"text": "hi", "channel": "C1"})).unwrap();
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({"text": "hi", "channel": "C1"})
        );
    }
}
