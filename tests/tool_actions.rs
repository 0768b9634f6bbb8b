//! Tool actions end to end: each built-in tool through the host against a
//! loopback stand-in for its service, parameter checks, credentials from
//! the backend, idempotent retries, relaying unknown tools to the backend,
//! hot-loaded tool files, and misbehaving tools kept in their box.

use crate::support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    Answer, Area, FakeBackend, HostConfig, Reply, StandIn, World, call, eventually, token,
};

/// Valkey, the fake backend with execution `exec-1` of `user-1`, and a
/// host configured by `configure`.
/// This file's area of the shared [`World`] ([`Area`]).
enum ToolsArea {}
type ToolsWorld = Area<ToolsArea>;

impl ToolsWorld {
    async fn start(configure: impl FnOnce(HostConfig) -> HostConfig) -> Self {
        let prepare = |backend: &FakeBackend| backend.add_execution("exec-1", "user-1", None);
        Self::new(World::serving(prepare, configure).await)
    }

    /// Stores `user-1`'s credentials for `tool` in the backend.
    fn credentials(&self, tool: &str, credentials: Value) {
        self.backend
            .state()
            .tool_credentials
            .insert(("user-1".into(), tool.into()), credentials);
    }

    async fn execute(&self, body: Value) -> Reply {
        self.execute_with(body, &[]).await
    }

    async fn execute_with(&self, body: Value, extra: &[(&str, &str)]) -> Reply {
        let auth = format!("Bearer {}", token("exec-1"));
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        let body = body.to_string();
        call(
            "POST",
            &self.host.url("/tool-actions/execute"),
            &headers,
            Some(body.as_bytes()),
        )
        .await
    }

    async fn catalogue(&self) -> Reply {
        let auth = format!("Bearer {}", token("exec-1"));
        call(
            "GET",
            &self.host.url("/tool-actions"),
            &[("authorization", &auth)],
            None,
        )
        .await
    }

    /// Polls the catalogue for up to ten seconds until tool `id` is listed
    /// (`listed`) or not; whether it got there.
    async fn listed_within(&self, id: &str, listed: bool) -> bool {
        for _ in 0..100 {
            if self.tool_ids().await.iter().any(|t| t == id) == listed {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn tool_ids(&self) -> Vec<String> {
        let reply = self.catalogue().await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.json["data"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A host whose tools directory is `dir`.
fn tools_dir(config: HostConfig, dir: &Path) -> HostConfig {
    config
        .env("CRONIUM_TOOLS_DIR", dir.display().to_string())
        .env("CRONIUM_TOOLS_POLL", "100ms")
}

/// Lets the webhook tool reach `receiver`: a loopback address needs the
/// operator to name it.
fn webhook_may_reach(receiver: &StandIn) -> impl FnOnce(HostConfig) -> HostConfig {
    let allowed = format!("webhook={}", receiver.authority());
    move |c| c.env("CRONIUM_TOOL_ALLOWED_HOSTS", allowed)
}

/// Sends the tools' traffic for `origin` (e.g. `https://hooks.slack.com`)
/// to `stand_in`.
fn egress(origin: &str, stand_in: &StandIn) -> impl FnOnce(HostConfig) -> HostConfig {
    let rule = format!("{origin}={}", stand_in.url());
    move |c| c.env("CRONIUM_TOOL_EGRESS", rule)
}

/// Drops `wasm` into `dir` as `name` the way operators are told to: write
/// elsewhere, then rename.
fn drop_tool(dir: &Path, name: &str, wasm: &str) {
    let staging = dir.join(format!(".{name}.partial"));
    std::fs::copy(wasm, &staging).unwrap();
    std::fs::rename(&staging, dir.join(name)).unwrap();
}

#[tokio::test]
async fn webhook_sends_the_request_it_is_given_and_answers_the_status() {
    let receiver = StandIn::start(Answer::json(201, json!({"id": 7}))).await;
    let world = ToolsWorld::start(webhook_may_reach(&receiver)).await;
    let reply = world
        .execute(json!({
            "tool": "webhook",
            "action": "send",
            "config": {
                "url": format!("{}/hooks/deploy?env=prod", receiver.url()),
                "method": "PUT",
                "headers": {"X-Team": "ops"},
                "body": {"status": "done", "n": 3}
            }
        }))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["success"], true);
    assert_eq!(reply.json["data"]["status"], 201);
    assert_eq!(reply.json["data"]["body"], json!({"id": 7}));
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "PUT");
    assert_eq!(received[0].target, "/hooks/deploy?env=prod");
    assert_eq!(received[0].header("x-team"), Some("ops"));
    assert!(
        received[0]
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(received[0].json(), json!({"status": "done", "n": 3}));
}

#[tokio::test]
async fn an_https_tool_request_reaches_the_checked_address_verified_against_the_host_name() {
    let ca = support::tls::Ca::new();
    let receiver = StandIn::start(Answer::json(200, json!({"ok": true}))).await;
    // `localhost` resolves (and is checked) here; the request goes to that
    // very address, and TLS is verified against the name.
    let good = support::tls::TlsProxy::start(&ca.leaf(&["localhost"], 11), &receiver.url()).await;
    let wrong =
        support::tls::TlsProxy::start(&ca.leaf(&["other.example"], 12), &receiver.url()).await;
    let port = |proxy: &support::tls::TlsProxy| proxy.url().rsplit(':').next().unwrap().to_owned();
    let (good_port, wrong_port) = (port(&good), port(&wrong));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.write_pem(&ca_file);
    let allowed = format!("webhook=localhost:{good_port},localhost:{wrong_port}");
    let world = ToolsWorld::start(|c| {
        c.env("CRONIUM_TOOL_ALLOWED_HOSTS", allowed)
            .env("SSL_CERT_FILE", ca_file.display().to_string())
    })
    .await;
    let send = |port: &str| {
        json!({"tool": "webhook", "action": "send", "config": {
            "url": format!("https://localhost:{port}/hook"), "body": {"n": 1}, "retries": 0
        }})
    };
    let reply = world.execute(send(&good_port)).await;
    assert_eq!(reply.status, 200, "{reply:?}\n{}", world.host.log());
    assert_eq!(reply.json["data"]["status"], 200);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].target, "/hook");
    assert_eq!(
        received[0].header("host"),
        Some(format!("localhost:{good_port}").as_str())
    );

    let refused = world.execute(send(&wrong_port)).await;
    assert_eq!(
        refused.status, 502,
        "a certificate for another name: {refused:?}"
    );
    assert_eq!(receiver.received().len(), 1, "nothing got through");
}

#[tokio::test]
async fn webhook_retries_a_failing_receiver_and_never_a_refusing_one() {
    let receiver = StandIn::start(Answer::json(200, json!({"ok": true}))).await;
    let world = ToolsWorld::start(webhook_may_reach(&receiver)).await;
    let url = format!("{}/hook", receiver.url());

    receiver.script([Answer::text(503, "busy"), Answer::text(502, "still busy")]);
    let reply = world
        .execute(json!({"tool": "webhook", "action": "send", "config": {"url": url}}))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["data"]["attempts"], 3);
    assert_eq!(receiver.received().len(), 3);

    receiver.script([Answer::text(404, "no such hook")]);
    let reply = world
        .execute(json!({"tool": "webhook", "action": "send", "config": {"url": url}}))
        .await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(reply.error_message().contains("404"), "{reply:?}");
    assert_eq!(receiver.received().len(), 4, "a 4xx is not retried");
}

#[tokio::test]
async fn a_tool_cannot_reach_loopback_unless_the_operator_names_it() {
    let receiver = StandIn::start(Answer::json(200, json!({}))).await;
    let world = ToolsWorld::start(|c| c).await;
    let reply = world
        .execute(json!({
            "tool": "webhook",
            "action": "send",
            "config": {"url": format!("{}/hook", receiver.url()), "retries": 0}
        }))
        .await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(receiver.received().is_empty(), "the request left the tool");
    assert!(world.host.log().contains("tool request refused"));
}

#[tokio::test]
async fn slack_posts_to_the_users_incoming_webhook() {
    let slack = StandIn::start(Answer::text(200, "ok")).await;
    let world = ToolsWorld::start(egress("https://hooks.slack.com", &slack)).await;
    world.credentials(
        "slack",
        json!({"webhookUrl": "https://hooks.slack.com/services/T000/B000/s3cr3t"}),
    );
    // `send` is an alias of `send_message`, as older helpers spell it.
    let reply = world
        .execute(json!({
            "tool": "slack",
            "action": "send",
            "config": {"text": "Nightly report done", "username": "cronium"}
        }))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["data"]["via"], "webhook");
    let received = slack.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].target, "/services/T000/B000/s3cr3t");
    assert_eq!(received[0].header("host"), Some("hooks.slack.com"));
    assert_eq!(received[0].json()["text"], "Nightly report done");
    assert_eq!(received[0].json()["username"], "cronium");
    assert!(
        !reply.body.windows(6).any(|w| w == b"s3cr3t"),
        "the webhook URL is a secret"
    );
}

#[tokio::test]
async fn slack_uses_chat_post_message_with_a_bot_token_and_passes_on_its_errors() {
    let slack = StandIn::start(Answer::json(
        200,
        json!({"ok": true, "channel": "C123", "ts": "1700000000.000100"}),
    ))
    .await;
    let world = ToolsWorld::start(egress("https://slack.com", &slack)).await;
    world.credentials("slack", json!({"botToken": "xoxb-test-token"}));
    let reply = world
        .execute(json!({
            "tool": "slack",
            "action": "send_message",
            "params": {"channel": "#ops", "text": "deployed", "thread_ts": "1.2"}
        }))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["data"]["via"], "chat.postMessage");
    assert_eq!(reply.json["data"]["ts"], "1700000000.000100");
    let received = slack.received();
    assert_eq!(received[0].target, "/api/chat.postMessage");
    assert_eq!(received[0].header("host"), Some("slack.com"));
    assert_eq!(
        received[0].header("authorization"),
        Some("Bearer xoxb-test-token")
    );
    assert_eq!(received[0].json()["channel"], "#ops");
    assert_eq!(received[0].json()["text"], "deployed");
    assert_eq!(received[0].json()["thread_ts"], "1.2");

    slack.script([Answer::json(
        200,
        json!({"ok": false, "error": "channel_not_found"}),
    )]);
    let reply = world
        .execute(json!({
            "tool": "slack", "action": "send_message",
            "config": {"channel": "#nope", "text": "x"}
        }))
        .await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(reply.error_message().contains("channel_not_found"));
    assert!(!reply.body.windows(4).any(|w| w == b"xoxb"));
}

#[tokio::test]
async fn discord_executes_the_webhook_with_embeds_and_waits_for_the_message() {
    let discord = StandIn::start(Answer::json(
        200,
        json!({"id": "112233", "channel_id": "9"}),
    ))
    .await;
    let world = ToolsWorld::start(egress("https://discord.com", &discord)).await;
    world.credentials(
        "discord",
        json!({"webhookUrl": "https://discord.com/api/webhooks/42/tok-en"}),
    );
    let embed = json!({
        "title": "Backup finished",
        "description": "3 databases",
        "color": 3066993,
        "fields": [{"name": "size", "value": "12 GB", "inline": true}]
    });
    let reply = world
        .execute(json!({
            "tool": "discord",
            "action": "send_message",
            "config": {"content": "Backup report", "embeds": [embed], "username": "cronium"}
        }))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["data"]["messageId"], "112233");
    let received = discord.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].target, "/api/webhooks/42/tok-en?wait=true");
    assert_eq!(received[0].header("host"), Some("discord.com"));
    let body = received[0].json();
    assert_eq!(body["content"], "Backup report");
    assert_eq!(body["username"], "cronium");
    assert_eq!(body["embeds"][0], embed);
}

#[tokio::test]
async fn email_goes_through_the_configured_mail_api() {
    let mail = StandIn::start(Answer::text(202, "").header("x-message-id", "msg-77")).await;
    let world = ToolsWorld::start(|c| {
        c.env(
            "CRONIUM_TOOL_SETTINGS",
            json!({"email": {"baseUrl": mail.url()}}).to_string(),
        )
        .env(
            "CRONIUM_TOOL_ALLOWED_HOSTS",
            format!("email={}", mail.authority()),
        )
    })
    .await;
    world.credentials(
        "email",
        json!({"apiKey": "SG.key", "from": "jobs@example.com"}),
    );
    let reply = world
        .execute(json!({
            "tool": "email",
            "action": "send_email",
            "config": {
                "to": ["ops@example.com", "cto@example.com"],
                "subject": "Job failed",
                "text": "See the logs."
            }
        }))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json["data"],
        json!({"accepted": true, "messageId": "msg-77"})
    );
    let received = mail.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].target, "/v3/mail/send");
    assert_eq!(received[0].header("authorization"), Some("Bearer SG.key"));
    let body = received[0].json();
    assert_eq!(
        body["personalizations"][0]["to"],
        json!([{"email": "ops@example.com"}, {"email": "cto@example.com"}])
    );
    assert_eq!(body["from"]["email"], "jobs@example.com");
    assert_eq!(body["subject"], "Job failed");
    assert_eq!(
        body["content"],
        json!([{"type": "text/plain", "value": "See the logs."}])
    );
}

#[tokio::test]
async fn parameters_are_checked_against_the_schema_before_the_tool_runs() {
    let slack = StandIn::start(Answer::text(200, "ok")).await;
    let world = ToolsWorld::start(egress("https://hooks.slack.com", &slack)).await;
    world.credentials(
        "slack",
        json!({"webhookUrl": "https://hooks.slack.com/services/T/B/C"}),
    );
    for (config, expected) in [
        (json!({"text": 5}), "/text: must be string"),
        (json!({"txt": "typo"}), "/txt: is not a known property"),
        (
            json!({"username": "x"}),
            "matches none of the allowed forms",
        ),
    ] {
        let reply = world
            .execute(json!({"tool": "slack", "action": "send_message", "config": config}))
            .await;
        assert_eq!(reply.status, 400, "{reply:?}");
        let message = reply.error_message();
        assert!(
            message.contains("invalid parameters for slack.send_message"),
            "{message}"
        );
        assert!(message.contains(expected), "{message}");
    }
    let reply = world
        .execute(json!({"tool": "slack", "action": "upload_file", "config": {}}))
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().contains("send_message"));
    assert!(slack.received().is_empty(), "no invalid call reached Slack");
}

#[tokio::test]
async fn malformed_requests_are_refused_with_json_errors() {
    let world = ToolsWorld::start(|c| c).await;
    for (body, expected) in [
        (json!({"action": "send"}), "\"tool\" is required"),
        (json!({"tool": "slack"}), "\"action\" is required"),
        (
            json!({"tool": "slack", "action": "send", "config": [1]}),
            "must be a JSON object",
        ),
    ] {
        let reply = world.execute(body).await;
        assert_eq!(reply.status, 400, "{reply:?}");
        assert!(reply.error_message().contains(expected), "{reply:?}");
    }
    let reply = world
        .execute_with(
            json!({"tool": "webhook", "action": "send", "config": {"url": "http://x"}}),
            &[("idempotency-key", "has spaces in it")],
        )
        .await;
    assert_eq!(reply.status, 400);
    let auth = format!("Bearer {}", token("exec-1"));
    let reply = call(
        "GET",
        &world.host.url("/tool-actions/execute"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(reply.status, 405);
    let reply = call("GET", &world.host.url("/tool-actions"), &[], None).await;
    assert_eq!(reply.status, 401);
    let reply = call(
        "POST",
        &world.host.url("/tool-actions/execute"),
        &[],
        Some(b"{}"),
    )
    .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn a_user_without_credentials_gets_a_clear_400() {
    let world = ToolsWorld::start(|c| c).await;
    let reply = world
        .execute(json!({"tool": "discord", "action": "send_message", "config": {"content": "x"}}))
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.error_message().starts_with("discord: "), "{reply:?}");
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_first_result_without_running_again() {
    let receiver = StandIn::start(Answer::json(200, json!({"run": 1}))).await;
    let world = ToolsWorld::start(webhook_may_reach(&receiver)).await;
    let body = json!({
        "tool": "webhook", "action": "send",
        "config": {"url": format!("{}/once", receiver.url()), "body": {"n": 1}}
    });
    let key = [("idempotency-key", "notify-7f3a")];
    let first = world.execute_with(body.clone(), &key).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("idempotent-replayed"), None);
    receiver.script([Answer::json(200, json!({"run": 2}))]);
    let retry = world.execute_with(body.clone(), &key).await;
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json["data"], first.json["data"]);
    assert_eq!(receiver.received().len(), 1, "the action ran once");

    let mut different = body.clone();
    different["config"]["body"]["n"] = json!(2);
    let reused = world.execute_with(different, &key).await;
    assert_eq!(reused.status, 422, "{reused:?}");
    // Without the header, every call runs.
    world.execute(body).await;
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_run_the_action_once() {
    let receiver = StandIn::start(Answer::json(200, json!({}))).await;
    let world = ToolsWorld::start(webhook_may_reach(&receiver)).await;
    let body = json!({
        "tool": "webhook", "action": "send",
        "config": {"url": format!("{}/race", receiver.url())}
    });
    let world = std::sync::Arc::new(world);
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let world = world.clone();
            let body = body.clone();
            tokio::spawn(async move {
                world
                    .execute_with(body, &[("idempotency-key", "race-1")])
                    .await
                    .status
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_tool_not_installed_here_is_relayed_to_the_backend_intact() {
    let world = ToolsWorld::start(|c| c).await;
    world.backend.state().relayed_tools.insert(
        "jira".into(),
        json!({"success": true, "data": {"issue": "OPS-12"}}),
    );
    world.backend.state().relayed_tools.insert(
        "pagerduty".into(),
        json!({"success": false, "error": "integration key revoked"}),
    );
    let params = json!({"project": "OPS", "summary": "Nightly failed", "labels": ["a", "b"]});
    let reply = world
        .execute(json!({"tool": "jira", "action": "create_issue", "config": params}))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["data"], json!({"issue": "OPS-12"}));
    let relayed: Vec<_> = world
        .backend
        .state()
        .requests
        .iter()
        .filter(|r| r.path == "/api/internal/tools/execute")
        .cloned()
        .collect();
    assert_eq!(relayed.len(), 1);
    assert_eq!(
        relayed[0].body,
        json!({
            "executionId": "exec-1", "userId": "user-1",
            "tool": "jira", "action": "create_issue", "params": params
        })
    );
    assert_eq!(relayed[0].headers["x-execution-id"], "exec-1");

    let reply = world
        .execute(json!({"tool": "pagerduty", "action": "trigger", "config": {}}))
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.error_message(), "integration key revoked");

    let reply = world
        .execute(json!({"tool": "nothing", "action": "x", "config": {}}))
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(reply.error_message().contains("\"nothing\""), "{reply:?}");
}

/// A world whose backend runs the relayed tool `jira` and numbers its
/// answers (`data.call`), so that a second run would show.
async fn with_a_relayed_tool() -> ToolsWorld {
    let world = ToolsWorld::start(|c| c).await;
    {
        let mut state = world.backend.state();
        state.relayed_tools.insert(
            "jira".into(),
            json!({"success": true, "data": {"issue": "OPS-12"}}),
        );
        state.number_relayed_answers = true;
    }
    world
}

/// The relayed tool calls the backend received.
fn relayed_calls(world: &World) -> Vec<support::backend::Recorded> {
    world
        .backend
        .state()
        .requests
        .iter()
        .filter(|r| r.path == "/api/internal/tools/execute")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_relayed_tool_called_twice_with_one_key_reaches_the_backend_once_with_the_key() {
    let world = with_a_relayed_tool().await;
    let body =
        json!({"tool": "jira", "action": "create_issue", "config": {"summary": "Nightly failed"}});
    let key = [("idempotency-key", "relay-7f3a")];
    let first = world.execute_with(body.clone(), &key).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.json["data"], json!({"issue": "OPS-12", "call": 1}));
    assert_eq!(first.header("idempotent-replayed"), None);
    let retry = world.execute_with(body.clone(), &key).await;
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json["data"], first.json["data"]);
    let relayed = relayed_calls(&world);
    assert_eq!(relayed.len(), 1, "the retry was not relayed");
    assert_eq!(
        relayed[0]
            .headers
            .get("idempotency-key")
            .map(String::as_str),
        Some("relay-7f3a"),
        "the backend gets the key"
    );

    let mut other = body.clone();
    other["config"]["summary"] = json!("Something else");
    let reused = world.execute_with(other, &key).await;
    assert_eq!(reused.status, 422, "{reused:?}");
    assert_eq!(relayed_calls(&world).len(), 1);
    // Without the header, every call is relayed, without a key.
    let plain = world.execute(body).await;
    assert_eq!(plain.json["data"]["call"], 2, "{plain:?}");
    assert!(
        !relayed_calls(&world)[1]
            .headers
            .contains_key("idempotency-key")
    );
}

#[tokio::test]
async fn six_concurrent_calls_of_a_relayed_tool_with_one_key_reach_the_backend_once_and_get_one_answer()
 {
    let world = std::sync::Arc::new(with_a_relayed_tool().await);
    // The first call is still at the backend when the others arrive.
    world.backend.state().relay_delay = Some(Duration::from_millis(300));
    let body = json!({"tool": "jira", "action": "create_issue", "config": {"summary": "Race"}});
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let world = world.clone();
            let body = body.clone();
            tokio::spawn(async move {
                world
                    .execute_with(body, &[("idempotency-key", "relay-race")])
                    .await
            })
        })
        .collect();
    let mut replayed = 0;
    for call in calls {
        let reply = call.await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json["data"], json!({"issue": "OPS-12", "call": 1}));
        if reply.header("idempotent-replayed") == Some("true") {
            replayed += 1;
        }
    }
    assert_eq!(replayed, 5);
    assert_eq!(world.backend.state().relayed_calls, 1);
}

#[tokio::test]
async fn the_catalogue_lists_installed_tools_actions_and_schemas() {
    let world = ToolsWorld::start(|c| c).await;
    let reply = world.catalogue().await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let tools = reply.json["data"]["tools"].as_array().unwrap();
    let ids: Vec<&str> = tools.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["discord", "email", "slack", "webhook"]);
    let slack = &tools[2];
    assert!(slack["version"].is_string());
    assert_eq!(slack["actions"][0]["name"], "send_message");
    assert!(
        slack["actions"][0]["aliases"]
            .as_array()
            .unwrap()
            .contains(&json!("send"))
    );
    assert_eq!(slack["actions"][0]["parameters"]["type"], "object");
    assert!(
        slack["outboundHosts"]
            .as_array()
            .unwrap()
            .contains(&json!("hooks.slack.com"))
    );
}

#[tokio::test]
async fn a_dropped_tool_file_becomes_callable_and_a_removed_one_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let world = ToolsWorld::start(|c| tools_dir(c, dir.path())).await;
    assert!(!world.tool_ids().await.contains(&"echo".to_owned()));

    drop_tool(dir.path(), "echo.wasm", env!("CRONIUM_TEST_ECHO_TOOL_WASM"));
    assert!(
        world.listed_within("echo", true).await,
        "echo never appeared:\n{}",
        world.host.log()
    );
    world.credentials("echo", json!({"token": "t0p-s3cret"}));
    let reply = world
        .execute_with(
            json!({"tool": "echo", "action": "echo", "config": {"hello": "world"}}),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let data = &reply.json["data"];
    assert_eq!(data["parameters"], json!({"hello": "world"}));
    assert_eq!(data["invocation"]["executionId"], "exec-1");
    assert_eq!(data["invocation"]["userId"], "user-1");
    assert_eq!(data["invocation"]["idempotencyKey"], "k-1");
    assert_eq!(data["hasCredentials"], true);

    std::fs::remove_file(dir.path().join("echo.wasm")).unwrap();
    assert!(
        world.listed_within("echo", false).await,
        "echo is still listed"
    );
    let reply = world
        .execute(json!({"tool": "echo", "action": "echo", "config": {}}))
        .await;
    assert_eq!(reply.status, 404, "relayed to a backend that has no echo");
}

#[tokio::test]
async fn a_call_in_flight_finishes_on_the_version_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    drop_tool(
        dir.path(),
        "misbehaving.wasm",
        env!("CRONIUM_TEST_MISBEHAVING_TOOL_WASM"),
    );
    let world = std::sync::Arc::new(ToolsWorld::start(|c| tools_dir(c, dir.path())).await);
    let slow = {
        let world = world.clone();
        tokio::spawn(async move {
            world
                .execute(json!({"tool": "misbehaving", "action": "sleep", "config": {"ms": 1500}}))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::remove_file(dir.path().join("misbehaving.wasm")).unwrap();
    assert!(
        world.listed_within("misbehaving", false).await,
        "the removed tool is still listed"
    );
    assert!(
        !slow.is_finished(),
        "the call ended before its tool was removed"
    );
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["data"], json!({"slept": 1500}));
}

#[tokio::test]
async fn a_misbehaving_tool_is_contained_and_the_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    drop_tool(
        dir.path(),
        "misbehaving.wasm",
        env!("CRONIUM_TEST_MISBEHAVING_TOOL_WASM"),
    );
    let bystander = StandIn::start(Answer::json(200, json!({}))).await;
    let world = ToolsWorld::start(|c| {
        tools_dir(c, dir.path())
            .env("CRONIUM_TOOL_TIMEOUT", "2s")
            .env("CRONIUM_TOOL_MEMORY", "32MiB")
            .env(
                "CRONIUM_TOOL_ALLOWED_HOSTS",
                format!("webhook={}", bystander.authority()),
            )
    })
    .await;
    assert!(world.tool_ids().await.contains(&"misbehaving".to_owned()));
    let run = |action: &str| json!({"tool": "misbehaving", "action": action, "config": {}});

    let reply = world.execute(run("trap")).await;
    assert_eq!(reply.status, 500, "{reply:?}");
    assert_eq!(reply.error_message(), "tool \"misbehaving\" failed");

    let started = std::time::Instant::now();
    let reply = world.execute(run("spin")).await;
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(15));

    let reply = world.execute(run("allocate")).await;
    assert_eq!(reply.status, 500, "{reply:?}");
    assert!(reply.error_message().contains("out of memory"), "{reply:?}");

    let reply = world
        .execute(json!({
            "tool": "misbehaving", "action": "call",
            "config": {"url": format!("{}/leak", bystander.url())}
        }))
        .await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(
        bystander.received().is_empty(),
        "the undeclared call left the tool"
    );

    let reply = world.execute(run("ok")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = world
        .execute(json!({
            "tool": "webhook", "action": "send",
            "config": {"url": format!("{}/still-fine", bystander.url())}
        }))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn every_execution_is_audited_without_credentials() {
    let slack = StandIn::start(Answer::text(200, "ok")).await;
    let world = ToolsWorld::start(egress("https://hooks.slack.com", &slack)).await;
    world.credentials(
        "slack",
        json!({"webhookUrl": "https://hooks.slack.com/services/T/B/hush-hush"}),
    );
    world
        .execute(json!({"tool": "slack", "action": "send", "config": {"text": "hi"}}))
        .await;
    world
        .execute(json!({"tool": "slack", "action": "send", "config": {"text": 1}}))
        .await;
    assert!(
        eventually(Duration::from_secs(10), || world
            .backend
            .audit_events("execute_tool_action")
            .len()
            == 2)
        .await
    );
    // Events are delivered concurrently: their order at the backend is not the calls' order.
    let events = world.backend.audit_events("execute_tool_action");
    let outcome = |wanted: &str| {
        events
            .iter()
            .map(|e| &e["metadata"])
            .find(|m| m["outcome"] == wanted)
            .unwrap_or_else(|| panic!("no {wanted} event in {events:?}"))
    };
    let ok = outcome("ok");
    assert_eq!(ok["tool"], "slack");
    assert_eq!(ok["action"], "send");
    assert_eq!(ok["userId"], "user-1");
    assert!(ok["durationMs"].is_u64());
    assert_eq!(outcome("bad_request")["tool"], "slack");
    let everything = serde_json::to_string(&events).unwrap() + &world.host.log();
    assert!(!everything.contains("hush-hush"), "a credential leaked");
}
