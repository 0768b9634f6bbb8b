//! A component cannot speak for someone else: identity is a `caller` the
//! host holds, and cache keys are built by the host inside the component's
//! own space. A hostile component (`tests/components/hostile`), served in
//! place of the variables group as an operator's override would be, tries
//! to read and overwrite another user's variable, forge an identity, lift a
//! revocation, touch the runtime's own keys, audit as someone else and act
//! with a caller kept from an earlier request. Every try is refused or
//! lands in its own space, while its legitimate requests work.
//!
//! Each test runs through both exports of the custom host (`handler` and
//! `wasi:http`) and, when a Spin CLI is present, under `spin up` with the
//! same `.wasm` and the Spin adapter (else it says "NOT RUN under Spin").

use crate::support;

use std::time::Duration;

use cronium_rules::keys::{self, Scope};
use redis::Commands;
use serde_json::{Value, json};
use support::{FakeBackend, Host, HostConfig, Reply, SpinApp, Valkey, call, eventually, token};

/// The hostile component's `.wasm` (built by `host/build.rs`).
const HOSTILE: &str = env!("CRONIUM_TEST_HOSTILE_WASM");

/// The victim's variable and its value.
const SECRET: &str = "victim-secret";

/// Where the hostile component serves.
struct World {
    valkey: Valkey,
    backend: FakeBackend,
    base: String,
    name: String,
    _host: Option<Host>,
    _spin: Option<SpinApp>,
}

impl World {
    /// The custom host, calling components through `export`.
    async fn host(export: &str) -> World {
        let (valkey, backend) = stores().await;
        let host = Host::start(
            HostConfig::with(&valkey.url(), &backend.url())
                .env("CRONIUM_COMPONENT_VARIABLES", HOSTILE)
                .env("CRONIUM_COMPONENT_EXPORT", export),
        )
        .await;
        World {
            base: host.base(),
            name: format!("the custom host through {export}"),
            valkey,
            backend,
            _host: Some(host),
            _spin: None,
        }
    }

    /// `spin up` on `spin.toml` with the variables component replaced by
    /// the hostile one (the adapter composed in as for every component).
    async fn spin(cli: &std::path::Path) -> World {
        let (valkey, backend) = stores().await;
        let root = support::spin::root();
        let manifest = std::fs::read_to_string(root.join("spin.toml"))
            .unwrap()
            .replace(
                "target/components/wasm32-wasip2/component/cronium_variables.wasm",
                HOSTILE,
            )
            .replace(
                "\"target/components/",
                &format!("\"{}/target/components/", root.display()),
            );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spin.toml");
        std::fs::write(&path, manifest).unwrap();
        let (valkey_url, backend_url) = (valkey.url(), backend.url());
        let variables = [
            ("jwt_secret", support::SECRET),
            ("backend_token", support::BACKEND_TOKEN),
            ("backend_url", backend_url.as_str()),
            ("valkey_url", valkey_url.as_str()),
        ];
        let app = SpinApp::start_manifest(cli, &path, &variables, "/health").await;
        // Spin has read the manifest by now.
        drop(dir);
        World {
            base: app.url(""),
            name: "spin up".into(),
            valkey,
            backend,
            _host: None,
            _spin: Some(app),
        }
    }

    /// Asks the hostile component for `attempt` with `execution`'s token.
    async fn attempt(&self, execution: &str, attempt: &str) -> Reply {
        let reply = call(
            "GET",
            &format!("{}/executions/{execution}/variables/{attempt}", self.base),
            &[("authorization", &format!("Bearer {}", token(execution)))],
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{}: {attempt}: {reply:?}", self.name);
        reply
    }

    fn redis(&self) -> redis::Connection {
        self.valkey.connection()
    }
}

/// Valkey and the backend, with the caller's executions (`exec-1` and
/// `exec-2` of `user-1`) and the victim's (`exec-3` of `user-2`), whose
/// variable `secret` is in the backend and cached as the variables
/// component caches it.
async fn stores() -> (Valkey, FakeBackend) {
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", None);
    backend.add_execution("exec-2", "user-1", None);
    backend.add_execution("exec-3", "user-2", None);
    backend
        .state()
        .variables
        .insert(("user-2".into(), "secret".into()), json!(SECRET));
    let _: () = valkey
        .connection()
        .set(victim_key(), victim_entry())
        .unwrap();
    (valkey, backend)
}

/// The real cache key of the victim's variable.
fn victim_key() -> String {
    keys::in_space(
        "variables",
        Scope::User("user-2"),
        &keys::variable("secret"),
    )
}

/// What the variables component caches for the victim's variable.
fn victim_entry() -> String {
    json!({ "value": json!(SECRET).to_string() }).to_string()
}

/// The worlds every test runs in: both exports of the custom host, then
/// Spin when there is a CLI.
async fn worlds(test: &str) -> Vec<World> {
    let mut worlds = vec![World::host("handler").await, World::host("wasi-http").await];
    if let Some(cli) = support::spin_cli(test) {
        worlds.push(World::spin(cli).await);
    }
    worlds
}

fn all_keys(world: &World) -> Vec<String> {
    let mut keys: Vec<String> = world.redis().keys("*").unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn its_own_requests_work_and_land_in_its_own_space_only() {
    for w in worlds("its_own_requests_work_and_land_in_its_own_space_only").await {
        let data = w.attempt("exec-1", "own").await.json["data"].clone();
        assert_eq!(data["executionId"], "exec-1", "{}", w.name);
        assert_eq!(data["user"], json!({"ok": "user-1"}), "{}", w.name);
        for scope in ["execution", "user", "group"] {
            assert_eq!(
                data["cache"][scope]["set"],
                json!({"ok": true}),
                "{}",
                w.name
            );
            assert_eq!(
                data["cache"][scope]["get"],
                json!({"ok": format!("{scope}-mine")}),
                "{}",
                w.name
            );
        }
        assert!(
            data["lease"]["fence"].as_u64() > Some(0),
            "{}: {data}",
            w.name
        );
        assert_eq!(data["lease"]["released"], json!({"ok": true}), "{}", w.name);
        assert_eq!(data["variable"]["set"], json!({"ok": true}), "{}", w.name);
        assert_eq!(
            data["variable"]["get"],
            json!({"ok": "\"mine\""}),
            "{}",
            w.name
        );

        // The host put each key in the space the scope names.
        let mut redis = w.redis();
        for (scope, value) in [
            (Scope::Execution("exec-1"), "execution-mine"),
            (Scope::User("user-1"), "user-mine"),
            (Scope::Group, "group-mine"),
        ] {
            let key = keys::in_space("variables", scope, "note");
            let stored: Option<String> = redis.get(&key).unwrap();
            assert_eq!(stored.as_deref(), Some(value), "{}: {key}", w.name);
        }
        assert_eq!(
            w.backend.variable("user-1", "hostile-own"),
            Some(json!("mine"))
        );
        // Everything it wrote is in its group's space; the rest is the
        // runtime's own (the execution record, the rate limit).
        for key in all_keys(&w) {
            assert!(
                key.starts_with("cronium:{variables:")
                    || key.contains("cronium:{variables:")
                    || key == victim_key()
                    || key == keys::execution("exec-1")
                    || key.starts_with("cronium:rl:"),
                "{}: unexpected key {key}",
                w.name
            );
        }
    }
}

#[tokio::test]
async fn another_users_variable_cannot_be_read_or_overwritten_by_any_name() {
    for w in worlds("another_users_variable_cannot_be_read_or_overwritten_by_any_name").await {
        let reply = w.attempt("exec-1", "other-user").await;
        let text = String::from_utf8_lossy(&reply.body);
        assert!(!text.contains(SECRET), "{}: {text}", w.name);
        // Every write was made, and landed with the caller's own user.
        let tries = reply.json["data"].as_array().unwrap();
        assert!(
            tries
                .iter()
                .filter(|t| t.get("write").is_some())
                .all(|t| t["write"] == json!({"ok": true})),
            "{}: {tries:?}",
            w.name
        );
        assert_eq!(
            w.backend.variable("user-1", "../user-2/secret"),
            Some(json!("overwritten"))
        );
        assert_eq!(
            w.backend.variable("user-1", "secret"),
            Some(json!("overwritten"))
        );
        // The victim's variable is untouched, in the backend and the cache.
        let victims: Vec<(String, Value)> = w
            .backend
            .state()
            .variables
            .iter()
            .filter(|((user, _), _)| user == "user-2")
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect();
        assert_eq!(
            victims,
            [("secret".to_owned(), json!(SECRET))],
            "{}",
            w.name
        );
        let cached: Option<String> = w.redis().get(victim_key()).unwrap();
        assert_eq!(cached, Some(victim_entry()), "{}", w.name);
    }
}

#[tokio::test]
async fn forged_tokens_are_refused_and_the_caller_stays_the_tokens() {
    for w in worlds("forged_tokens_are_refused_and_the_caller_stays_the_tokens").await {
        let data = w.attempt("exec-1", "forge").await.json["data"].clone();
        assert_eq!(data["executionId"], "exec-1", "{}", w.name);
        let forgeries = data["forgeries"].as_array().unwrap();
        assert_eq!(forgeries.len(), 3);
        for verdict in forgeries {
            let refused = verdict["refused"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a forged token was accepted: {verdict}", w.name));
            assert!(
                refused.contains("InvalidSignature") || refused.contains("UnsupportedAlgorithm"),
                "{}: {refused}",
                w.name
            );
        }
    }
}

#[tokio::test]
async fn a_revocation_and_the_runtimes_own_keys_are_out_of_its_reach() {
    for w in worlds("a_revocation_and_the_runtimes_own_keys_are_out_of_its_reach").await {
        let revoked = keys::revoked_job("job-exec-2");
        let spool = keys::audit_spool();
        let mut redis = w.redis();
        let _: () = redis.set(&revoked, "1").unwrap();
        // A drainer elsewhere holds the spool's lease, so that it stays as
        // it is while the test looks (the host drains it in the background).
        let _: () = redis
            .set_ex(keys::audit_spool_drain(), "a drainer elsewhere", 60)
            .unwrap();
        let _: () = redis.rpush(&spool, "an event").unwrap();
        // Its own record, read once, is kept by the host.
        w.attempt("exec-1", "own").await;
        let record: Option<String> = redis.get(keys::execution("exec-1")).unwrap();
        assert!(record.is_some(), "{}", w.name);
        let before = all_keys(&w);

        let data = w.attempt("exec-1", "escape").await.json["data"].clone();
        for attempt in data.as_array().unwrap() {
            // None of the runtime's keys was in its space to delete.
            assert_eq!(
                attempt["delete"],
                json!({"ok": false}),
                "{}: {attempt}",
                w.name
            );
        }

        let still: Option<String> = redis.get(&revoked).unwrap();
        assert_eq!(
            still.as_deref(),
            Some("1"),
            "{}: the revocation was lifted",
            w.name
        );
        let spooled: Vec<String> = redis.lrange(&spool, 0, -1).unwrap();
        assert_eq!(spooled, ["an event"], "{}", w.name);
        let kept: Option<String> = redis.get(keys::execution("exec-1")).unwrap();
        assert_eq!(kept, record, "{}", w.name);
        for key in all_keys(&w) {
            assert!(
                before.contains(&key) || key.starts_with("cronium:{variables:"),
                "{}: it wrote {key} outside its space",
                w.name
            );
        }
        // What it wrote under the revocation's name is its own key.
        let own = keys::in_space("variables", Scope::Group, &revoked);
        let written: Option<String> = redis.get(&own).unwrap();
        assert_eq!(written.as_deref(), Some("hostile"), "{}", w.name);
        // And the revoked job's token is still refused by the real groups.
        let refused = call(
            "GET",
            &format!("{}/executions/exec-2/input", w.base),
            &[("authorization", &format!("Bearer {}", token("exec-2")))],
            None,
        )
        .await;
        assert_eq!(refused.status, 403, "{}: {refused:?}", w.name);
    }
}

#[tokio::test]
async fn its_audit_events_name_the_caller_whatever_their_details_say() {
    for w in worlds("its_audit_events_name_the_caller_whatever_their_details_say").await {
        w.attempt("exec-1", "audit-as").await;
        assert!(
            eventually(Duration::from_secs(10), || {
                !w.backend.audit_events("hostile_audit").is_empty()
            })
            .await,
            "{}: no audit event arrived",
            w.name
        );
        let event = &w.backend.audit_events("hostile_audit")[0];
        assert_eq!(event["executionId"], "exec-1", "{}", w.name);
        assert_eq!(event["metadata"]["userId"], "user-1", "{}", w.name);
        assert_eq!(event["metadata"]["jobId"], "job-exec-1", "{}", w.name);
    }
}

/// Under Spin every request gets a fresh instance: nothing outlives it.
#[tokio::test]
async fn a_caller_kept_from_an_earlier_request_is_refused_even_after_its_job_is_revoked() {
    for export in ["handler", "wasi-http"] {
        let w = World::host(export).await;
        // Served cleanly, so its instance is kept for the same token.
        let stashed = w.attempt("exec-1", "stash").await;
        assert_eq!(stashed.json["data"]["stashed"], true);
        let _: () = w.redis().set(keys::revoked_job("job-exec-1"), "1").unwrap();

        let replay = call(
            "GET",
            &format!("{}/executions/exec-1/variables/replay", w.base),
            &[("authorization", &format!("Bearer {}", token("exec-1")))],
            None,
        )
        .await;
        assert_eq!(replay.status, 500, "{}: {replay:?}", w.name);
        assert_eq!(replay.error_message(), "the component failed");
        assert_eq!(w.backend.variable("user-1", "replayed"), None, "{}", w.name);
        // A request that verifies its token is refused, once the host
        // hears of the revocation.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let reply = call(
                "GET",
                &format!("{}/executions/exec-1/variables/own", w.base),
                &[("authorization", &format!("Bearer {}", token("exec-1")))],
                None,
            )
            .await;
            if reply.status == 403 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: {reply:?}",
                w.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
