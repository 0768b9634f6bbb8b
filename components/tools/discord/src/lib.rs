//! The `discord` tool: posts a message through a Discord channel webhook.
//!
//! Action `send_message` (aliases `send`, `post_message`, `message`,
//! `sendMessage`, `execute_webhook`). Credentials: `{"webhookUrl":
//! "https://discord.com/api/webhooks/<id>/<token>"}`. The call is
//! `POST <webhookUrl>?wait=true`, so Discord answers the message it made and
//! the result carries its id: `{"messageId": ".."}`.
//!
//! A 429 whose `retry_after` is at most two seconds is waited out once;
//! posting is not idempotent, so there is no other retry than after a
//! connection that was never made.

use cronium_tool::http::{self, Request, Response};
use cronium_tool::retry::sleep;
use cronium_tool::{Action, Manifest, Tool, ToolError, ToolRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

/// The `discord` tool.
struct Discord;

/// The longest rate-limit pause the tool waits out itself.
const MAX_WAIT: Duration = Duration::from_secs(2);

/// The parameters of `send_message`. All but `thread_id` form the JSON
/// payload Discord takes, so absent ones are left out.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Message {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embeds: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tts: Option<bool>,
    /// A query parameter, not part of the payload.
    #[serde(skip_serializing)]
    thread_id: Option<String>,
}

/// What a user stores for Discord.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    webhook_url: String,
}

impl Tool for Discord {
    fn describe() -> Manifest {
        let text = |max: u32| json!({ "type": "string", "minLength": 1, "maxLength": max });
        let url = json!({ "type": "string", "format": "uri" });
        let embed = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "title": text(256),
                "description": text(4096),
                "url": url,
                "color": { "type": "integer", "minimum": 0, "maximum": 16777215, "description": "0xRRGGBB as a number." },
                "timestamp": { "type": "string", "format": "date-time" },
                "fields": {
                    "type": "array",
                    "maxItems": 25,
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["name", "value"],
                        "properties": {
                            "name": text(256),
                            "value": text(1024),
                            "inline": { "type": "boolean" }
                        }
                    }
                },
                "footer": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["text"],
                    "properties": { "text": text(2048), "icon_url": url }
                },
                "author": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name"],
                    "properties": { "name": text(256), "url": url, "icon_url": url }
                },
                "image": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["url"],
                    "properties": { "url": url }
                },
                "thumbnail": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["url"],
                    "properties": { "url": url }
                }
            }
        });
        Manifest::new(
            "discord",
            env!("CARGO_PKG_VERSION"),
            "Posts messages to a Discord channel through its webhook.",
        )
        .outbound_hosts(&["discord.com", "discordapp.com"])
        .action(
            Action::new("send_message", "Posts a message through the user's Discord webhook.")
                .aliases(&["send", "post_message", "message", "sendMessage", "execute_webhook"])
                .parameters(json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "additionalProperties": false,
                    "anyOf": [{ "required": ["content"] }, { "required": ["embeds"] }],
                    "properties": {
                        "content": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 2000,
                            "description": "The message text (Markdown)."
                        },
                        "embeds": { "type": "array", "minItems": 1, "maxItems": 10, "items": embed },
                        "username": { "type": "string", "minLength": 1, "maxLength": 80, "description": "Name override." },
                        "avatar_url": { "type": "string", "format": "uri", "description": "Avatar override." },
                        "tts": { "type": "boolean", "default": false, "description": "Read the message aloud." },
                        "thread_id": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 20,
                            "description": "Post in this thread of the webhook's channel (a snowflake id)."
                        }
                    }
                })),
        )
    }

    fn execute(request: ToolRequest) -> Result<Value, ToolError> {
        match request.action.as_str() {
            "send_message" => send_message(&request),
            other => Err(ToolError::UnknownAction(format!(
                "discord has no action `{other}`"
            ))),
        }
    }
}

fn send_message(request: &ToolRequest) -> Result<Value, ToolError> {
    let message: Message = request.parameters()?;
    let credentials: Credentials = request.credentials("discord")?;
    let url = target(&credentials.webhook_url, message.thread_id.as_deref())?;
    let outgoing = Request::post(url).json(&message);

    let mut response = http::send_once_more_if_unsent(&outgoing)?;
    if response.status == 429
        && let Some(wait) = retry_after(&response).filter(|w| *w <= MAX_WAIT)
    {
        sleep(wait);
        response = http::send_once_more_if_unsent(&outgoing)?;
    }
    if response.is_success() {
        #[derive(Deserialize)]
        struct Posted {
            id: String,
        }
        // `wait=true` makes Discord answer the message; a 204 (no body)
        // still means it was posted.
        let id = response.json::<Posted>().map(|p| p.id);
        return Ok(json!({ "messageId": id }));
    }
    Err(refusal(&response))
}

/// `<webhookUrl>?wait=true[&thread_id=..]`, after checking the stored URL
/// (without ever quoting it) and the thread id.
fn target(webhook_url: &str, thread_id: Option<&str>) -> Result<String, ToolError> {
    let url = webhook_url.trim();
    if http::check_url(url).is_err() || !url.starts_with("https://") {
        return Err(ToolError::MissingCredentials(
            "the stored discord webhookUrl is not an https:// URL".into(),
        ));
    }
    let mut target = format!(
        "{url}{}wait=true",
        if url.contains('?') { '&' } else { '?' }
    );
    if let Some(thread) = thread_id {
        if !thread.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ToolError::InvalidParameters(
                "`thread_id` must be a Discord id (digits only)".into(),
            ));
        }
        target.push_str("&thread_id=");
        target.push_str(thread);
    }
    Ok(target)
}

/// The pause a 429 asks for: `retry_after` (seconds, fractional) in the
/// body, else the `Retry-After` header.
fn retry_after(response: &Response) -> Option<Duration> {
    let seconds = response
        .json::<Value>()
        .and_then(|body| body.get("retry_after").and_then(Value::as_f64))
        .or_else(|| response.header("retry-after")?.trim().parse().ok())?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// A non-2xx answer: unusable credentials when Discord does not know the
/// webhook, `failed` for 5xx, else `rejected` with Discord's own message.
fn refusal(response: &Response) -> ToolError {
    #[derive(Deserialize)]
    struct Problem {
        message: Option<String>,
        code: Option<u64>,
    }
    let problem = response.json::<Problem>();
    let code = problem.as_ref().and_then(|p| p.code);
    // 10015 Unknown Webhook, 50027 Invalid Webhook Token.
    if matches!(code, Some(10015 | 50027)) || response.status == 401 {
        return ToolError::MissingCredentials(
            "Discord does not accept the stored webhook (deleted, or a wrong token)".into(),
        );
    }
    if response.status == 429 {
        let wait = retry_after(response)
            .map(|d| format!("{:.1} seconds", d.as_secs_f64()))
            .unwrap_or_else(|| "a while".into());
        return ToolError::Rejected(format!(
            "Discord is rate limiting this webhook; retry after {wait}"
        ));
    }
    let detail = problem
        .and_then(|p| p.message)
        .map(|m| http::snippet(&m, 200))
        .unwrap_or_else(|| response.snippet());
    http::status_error("Discord", response.status, &detail)
}

cronium_tool::export_tool!(Discord);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_passes_the_runtime_checks() {
        assert_eq!(
            cronium_tool::wire::check_manifest(&Discord::describe()),
            Ok(())
        );
    }

    #[test]
    fn target_adds_wait_and_thread() {
        let base = "https://discord.com/api/webhooks/1/tok";
        assert_eq!(target(base, None).unwrap(), format!("{base}?wait=true"));
        assert_eq!(
            target(base, Some("42")).unwrap(),
            format!("{base}?wait=true&thread_id=42")
        );
        assert!(matches!(
            target(base, Some("4&x=1")),
            Err(ToolError::InvalidParameters(_))
        ));
        let err = target("http://discord.com/api/webhooks/1/secret-token", None).unwrap_err();
        assert!(matches!(&err, ToolError::MissingCredentials(m) if !m.contains("secret")));
    }

    #[test]
    fn thread_id_stays_out_of_the_payload() {
        let message: Message =
            serde_json::from_value(json!({"content": "hi", "thread_id": "42"})).unwrap();
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({"content": "hi"})
        );
    }
}
