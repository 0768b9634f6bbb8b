//! The Cronium app as the backend (`docs/cronium.md`,
//! `docs/api.md` "Variables"): what it really stores and answers, and what scripts see.
//!
//! Each behaviour runs against every backend a deployment may use: the fake
//! of the contract's backend, the fake in the Cronium app's profile (a
//! `text` column with node-postgres' conversions, no `DELETE`, no tools
//! routes, `details` in audit events, no `startTime`), and the embedded
//! store, all with a real Valkey in front.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::backend::Profile;
use support::{
    Answer, Area, FakeBackend, HostConfig, Reply, StandIn, World, call, claims, eventually, token,
    token_for,
};

/// Which backend a world runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Contract,
    CroniumApp,
    Embedded,
}

const EVERY_BACKEND: [Kind; 3] = [Kind::Contract, Kind::CroniumApp, Kind::Embedded];

/// This file's area of the shared [`World`] ([`Area`]).
enum AppArea {}
type AppWorld = Area<AppArea>;

impl AppWorld {
    async fn start(kind: Kind) -> Self {
        Self::start_with(kind, |c| c).await
    }

    async fn start_with(kind: Kind, configure: impl FnOnce(HostConfig) -> HostConfig) -> Self {
        let profile = match kind {
            Kind::CroniumApp => Profile::CroniumApp,
            _ => Profile::Contract,
        };
        let prepare = |backend: &FakeBackend| {
            backend.add_execution("exec-1", "user-1", Some(json!({"n": 1})))
        };
        // The embedded store: no backend for the host.
        let embedded = kind == Kind::Embedded;
        let configure = |mut config: HostConfig| {
            if embedded {
                config.backend_url = None;
            }
            configure(config)
        };
        let world = Self::new(World::serving_as(profile, prepare, configure).await);
        if embedded {
            let host = &world.host;
            let created = host.command(&[
                "execution",
                "create",
                "--id",
                "exec-1",
                "--user",
                "user-1",
                "--job",
                "job-exec-1",
                "--input",
                r#"{"n":1}"#,
            ]);
            assert!(created.status.success(), "{created:?}");
        }
        world
    }

    async fn put(&self, raw_key: &str, value: &Value) -> Reply {
        self.send(
            "PUT",
            &format!("/executions/exec-1/variables/{raw_key}"),
            Some(json!({ "value": value })),
        )
        .await
    }

    async fn get(&self, raw_key: &str) -> Reply {
        self.send(
            "GET",
            &format!("/executions/exec-1/variables/{raw_key}"),
            None,
        )
        .await
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {}", token("exec-1"));
        let body = body.map(|b| b.to_string());
        call(
            method,
            &self.host.url(path),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_deref().map(str::as_bytes),
        )
        .await
    }

    /// Empties the cache: the next read comes from the backend.
    fn empty_the_cache(&self) {
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut self.valkey.connection())
            .unwrap();
    }

    /// Requests the fake received for variables.
    fn variable_calls(&self) -> usize {
        self.backend
            .state()
            .requests
            .iter()
            .filter(|r| r.path.starts_with("/api/internal/variables/"))
            .count()
    }
}

/// Values of every JSON type, and strings that look like other types.
fn every_kind_of_value() -> Vec<Value> {
    vec![
        json!("hello world"),
        json!(""),
        json!("42"),
        json!("true"),
        json!("null"),
        json!("{\"a\":1}"),
        json!("\"quoted\""),
        json!("007"),
        json!(42),
        json!(-1.5),
        json!(1e300),
        json!(true),
        json!(false),
        json!([1, "x", null, [2]]),
        json!([]),
        json!({"a": {"b": [null, 1.25, "c"]}}),
        json!({}),
    ]
}

#[tokio::test]
async fn every_json_type_reads_back_identical_from_the_cache_and_after_it_is_emptied() {
    for kind in EVERY_BACKEND {
        let w = AppWorld::start(kind).await;
        let values = every_kind_of_value();
        for (i, value) in values.iter().enumerate() {
            let reply = w.put(&format!("v{i}"), value).await;
            assert_eq!(reply.status, 200, "{kind:?} PUT {value}: {reply:?}");
        }
        for (i, value) in values.iter().enumerate() {
            let reply = w.get(&format!("v{i}")).await;
            assert_eq!(reply.status, 200, "{kind:?}: {reply:?}");
            assert_eq!(&reply.json["data"]["value"], value, "{kind:?}, cached");
        }
        w.empty_the_cache();
        for (i, value) in values.iter().enumerate() {
            let reply = w.get(&format!("v{i}")).await;
            assert_eq!(reply.status, 200, "{kind:?}: {reply:?}");
            assert_eq!(
                &reply.json["data"]["value"], value,
                "{kind:?}, from the backend"
            );
        }
    }
}

#[tokio::test]
async fn the_app_keeps_plain_strings_as_typed_and_every_other_value_as_its_json_text() {
    let w = AppWorld::start(Kind::CroniumApp).await;
    for (value, stored) in [
        (json!("hello world"), "hello world"),
        (json!("a,b"), "a,b"),
        (json!("42"), "\"42\""),
        (json!("true"), "\"true\""),
        (json!("{\"a\":1}"), "\"{\\\"a\\\":1}\""),
        (json!(42), "42"),
        (json!(true), "true"),
        (json!([1, "x"]), "[1,\"x\"]"),
        (json!({"a": 1}), "{\"a\":1}"),
    ] {
        assert_eq!(w.put("k", &value).await.status, 200);
        assert_eq!(
            w.backend.stored("user-1", "k"),
            Some(json!(stored)),
            "{value} as the app keeps it"
        );
    }
}

#[tokio::test]
async fn values_typed_in_the_apps_ui_read_back_as_that_text() {
    let w = AppWorld::start(Kind::CroniumApp).await;
    for (typed, read) in [
        ("hello world", json!("hello world")),
        ("007", json!("007")),
        ("a,b", json!("a,b")),
        ("{not json", json!("{not json")),
        // Text that is JSON is that value.
        ("42", json!(42)),
        ("{\"a\":1}", json!({"a": 1})),
    ] {
        w.backend
            .state()
            .variables
            .insert(("user-1".into(), "typed".into()), json!(typed));
        w.empty_the_cache();
        let reply = w.get("typed").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json["data"]["value"], read, "typed {typed:?}");
    }
}

#[tokio::test]
async fn null_round_trips_as_a_variable_without_a_value_and_never_answers_5xx() {
    for kind in EVERY_BACKEND {
        let w = AppWorld::start(kind).await;
        assert_eq!(w.put("k", &json!(1)).await.status, 200);
        let reply = w.put("k", &Value::Null).await;
        assert_eq!(reply.status, 200, "{kind:?}: {reply:?}");
        for emptied in [false, true] {
            if emptied {
                w.empty_the_cache();
            }
            let reply = w.get("k").await;
            assert_eq!(reply.status, 200, "{kind:?}: {reply:?}");
            assert_eq!(reply.json["data"]["value"], Value::Null, "{kind:?}");
            let strict = w
                .send("GET", "/executions/exec-1/variables/k?strict=true", None)
                .await;
            assert_eq!(strict.status, 404, "{kind:?}: {strict:?}");
        }
        if kind == Kind::CroniumApp {
            assert_eq!(w.backend.stored("user-1", "k"), Some(json!("null")));
        }
    }
}

#[tokio::test]
async fn delete_leaves_the_cache_and_the_backend_agreeing_even_without_a_delete_route() {
    for kind in EVERY_BACKEND {
        let w = AppWorld::start(kind).await;
        assert_eq!(w.put("gone", &json!({"a": 1})).await.status, 200);
        let reply = w
            .send("DELETE", "/executions/exec-1/variables/gone", None)
            .await;
        assert_eq!(reply.status, 204, "{kind:?}: {reply:?}");
        assert_eq!(w.get("gone").await.json["data"]["value"], Value::Null);
        w.empty_the_cache();
        assert_eq!(
            w.get("gone").await.json["data"]["value"],
            Value::Null,
            "{kind:?}: the backend agrees"
        );
        if kind != Kind::Embedded {
            assert_eq!(
                w.backend.variable("user-1", "gone").unwrap_or_default(),
                Value::Null
            );
        }
    }
}

#[tokio::test]
async fn a_key_longer_than_the_backend_keeps_is_a_400_before_any_backend_call() {
    for kind in EVERY_BACKEND {
        let w = AppWorld::start(kind).await;
        // Loaded once, so that only variable calls could follow.
        assert_eq!(
            w.send("GET", "/executions/exec-1/input", None).await.status,
            200
        );
        let before = w.variable_calls();
        let long = "é".repeat(256);
        for reply in [
            w.put(&long, &json!(1)).await,
            w.get(&long).await,
            w.send(
                "DELETE",
                &format!("/executions/exec-1/variables/{long}"),
                None,
            )
            .await,
        ] {
            assert_eq!(reply.status, 400, "{kind:?}: {reply:?}");
            assert!(
                reply.error_message().contains("255 characters"),
                "{kind:?}: {reply:?}"
            );
        }
        assert_eq!(w.variable_calls(), before, "{kind:?}: no backend call");
        let longest = "é".repeat(255);
        assert_eq!(w.put(&longest, &json!(1)).await.status, 200, "{kind:?}");
        assert_eq!(w.get(&longest).await.json["data"]["value"], json!(1));
    }
}

#[tokio::test]
async fn the_key_limit_is_the_operators_setting() {
    let w =
        AppWorld::start_with(Kind::CroniumApp, |c| c.env("CRONIUM_VARIABLE_KEY_MAX", "8")).await;
    assert_eq!(w.put("12345678", &json!(1)).await.status, 200);
    let reply = w.put("123456789", &json!(1)).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.error_message().contains("8 characters"), "{reply:?}");
}

#[tokio::test]
async fn audit_events_carry_details_as_well_as_metadata() {
    for kind in [Kind::Contract, Kind::CroniumApp] {
        let w = AppWorld::start(kind).await;
        assert_eq!(w.put("audited", &json!("secret value")).await.status, 200);
        assert!(
            eventually(Duration::from_secs(10), || !w
                .backend
                .audit_events("set_variable")
                .is_empty())
            .await,
            "{kind:?}: no audit event"
        );
        let event = &w.backend.audit_events("set_variable")[0];
        assert_eq!(event["details"], event["metadata"], "{kind:?}: {event}");
        assert_eq!(event["details"]["key"], "audited");
        assert_eq!(event["details"]["userId"], "user-1");
        assert!(!event.to_string().contains("secret value"), "{event}");
    }
}

#[tokio::test]
async fn context_without_a_start_time_starts_when_the_token_was_issued() {
    for kind in [Kind::CroniumApp, Kind::Contract] {
        let w = AppWorld::start(kind).await;
        let claims = claims("exec-1");
        let issued = cronium_rules::wire::rfc3339_utc(claims.issued_at);
        let auth = format!("Bearer {}", token_for(&claims));
        let reply = call(
            "GET",
            &w.host.url("/executions/exec-1/context"),
            &[("authorization", &auth)],
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{kind:?}: {reply:?}");
        let data = &reply.json["data"];
        assert_eq!(data["startTime"], issued.as_str(), "{kind:?}: {data}");
        assert!(
            issued.starts_with("20") && issued.ends_with('Z'),
            "{issued}"
        );
        assert_eq!(data["eventName"], "Nightly report");
        assert_eq!(data["userId"], "user-1");
    }
}

#[tokio::test]
async fn a_tool_neither_installed_nor_run_by_the_app_is_a_501_naming_it() {
    for kind in EVERY_BACKEND {
        let w = AppWorld::start(kind).await;
        let reply = w
            .send(
                "POST",
                "/tool-actions/execute",
                Some(json!({"tool": "jira", "action": "create_issue", "config": {}})),
            )
            .await;
        // The app has no tools route; the contract's backend has one and
        // does not know the tool; the embedded store runs none.
        let expected = if kind == Kind::CroniumApp { 501 } else { 404 };
        assert_eq!(reply.status, expected, "{kind:?}: {reply:?}");
        assert!(reply.error_message().contains("\"jira\""), "{reply:?}");
        assert!(
            !String::from_utf8_lossy(&reply.body).contains("API endpoint"),
            "{kind:?}: the app's own 404 text is not passed on: {reply:?}"
        );
    }
}

#[tokio::test]
async fn built_in_tools_take_credentials_from_the_operators_files_against_the_app() {
    let slack = StandIn::start(Answer::text(200, "ok")).await;
    let rule = format!("https://hooks.slack.com={}", slack.url());
    let w = AppWorld::start_with(Kind::CroniumApp, |c| c.env("CRONIUM_TOOL_EGRESS", rule)).await;
    let send = json!({"tool": "slack", "action": "send_message", "config": {"text": "done"}});

    let missing = w
        .send("POST", "/tool-actions/execute", Some(send.clone()))
        .await;
    assert_eq!(missing.status, 400, "{missing:?}");
    assert!(
        missing
            .error_message()
            .contains("CRONIUM_TOOL_CREDENTIALS_DIR")
            && missing.error_message().contains("user-1/slack.json"),
        "the error says where credentials go: {missing:?}"
    );

    let dir = w.host.data_dir().join("credentials/user-1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("slack.json"),
        json!({"webhookUrl": "https://hooks.slack.com/services/T0/B0/s3cr3t"}).to_string(),
    )
    .unwrap();
    let reply = w.send("POST", "/tool-actions/execute", Some(send)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let received = slack.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].target, "/services/T0/B0/s3cr3t");
    assert!(
        !String::from_utf8_lossy(&reply.body).contains("s3cr3t"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_backend_refusing_the_runtimes_token_is_a_502_for_scripts_and_not_ready() {
    for kind in [Kind::Contract, Kind::CroniumApp] {
        let w = AppWorld::start_with(kind, |c| c.env("BACKEND_TOKEN", "not-the-internal-api-key"))
            .await;
        for reply in [
            w.send("GET", "/executions/exec-1/input", None).await,
            w.put("k", &json!(1)).await,
        ] {
            assert_eq!(reply.status, 502, "{kind:?}: {reply:?}");
            assert!(
                reply
                    .error_message()
                    .contains("refused the runtime's credentials"),
                "{kind:?}: {reply:?}"
            );
        }
        let ready = call("GET", &w.host.url("/ready"), &[], None).await;
        assert_eq!(ready.status, 503, "{kind:?}: {ready:?}");
        assert!(
            ready.json["checks"]["backend"]
                .as_str()
                .unwrap_or_default()
                .contains("credentials refused"),
            "{kind:?}: {ready:?}"
        );
        assert!(
            w.host.log().contains("check BACKEND_TOKEN"),
            "{}",
            w.host.log()
        );
    }
}

#[tokio::test]
async fn a_backend_url_without_a_token_is_a_warning_at_start() {
    let w = AppWorld::start_with(Kind::CroniumApp, |c| c.env("BACKEND_TOKEN", "")).await;
    assert!(
        w.host
            .log()
            .contains("BACKEND_URL is set without BACKEND_TOKEN"),
        "{}",
        w.host.log()
    );
    let ready = call("GET", &w.host.url("/ready"), &[], None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
}

#[tokio::test]
async fn a_cache_ttl_without_a_unit_is_seconds_as_the_upstream_compose_file_writes_it() {
    let w = AppWorld::start_with(Kind::CroniumApp, |c| {
        c.env("CACHE_TTL", "300").env("BACKEND_TIMEOUT", "30")
    })
    .await;
    assert_eq!(w.put("k", &json!(1)).await.status, 200);
    let ttl: i64 = redis::cmd("TTL")
        .arg(cronium_rules::keys::in_space(
            "variables",
            cronium_rules::keys::Scope::User("user-1"),
            &cronium_rules::keys::variable("k"),
        ))
        .query(&mut w.valkey.connection())
        .unwrap();
    assert!(
        (250..=300).contains(&ttl),
        "a cached variable lives 300 s: {ttl}"
    );
}
