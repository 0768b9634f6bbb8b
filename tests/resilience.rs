//! What the host survives: misbehaving components, Valkey going away and
//! coming back, restarts on the embedded defaults, shutdown signals.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{FakeBackend, Host, HostConfig, Valkey, call, token};

const MISBEHAVE: &str = env!("CRONIUM_TEST_MISBEHAVE_WASM");

/// `CRONIUM_COMPONENT_EXPORT`s: misbehaviour is contained through either.
const EXPORTS: [&str; 2] = ["handler", "wasi-http"];

/// A misbehaving host calling `export`.
async fn misbehaving_host_on(export: &str) -> (Valkey, FakeBackend, Host) {
    misbehaving_host_with(|c| c.env("CRONIUM_COMPONENT_EXPORT", export)).await
}

async fn get(host: &Host, path: &str, token: &str) -> support::Reply {
    let auth = format!("Bearer {token}");
    call("GET", &host.url(path), &[("authorization", &auth)], None).await
}

/// A host serving the misbehaving test component as its executions group.
async fn misbehaving_host() -> (Valkey, FakeBackend, Host) {
    misbehaving_host_with(|config| config).await
}

/// The same, with more settings.
async fn misbehaving_host_with(
    configure: impl FnOnce(HostConfig) -> HostConfig,
) -> (Valkey, FakeBackend, Host) {
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    let host = Host::start(configure(
        HostConfig::with(&valkey.url(), &backend.url())
            .env("CRONIUM_COMPONENT_EXECUTIONS", MISBEHAVE)
            .env("CRONIUM_REQUEST_TIMEOUT", "1s")
            .env("CRONIUM_INSTANCE_MEMORY", "32MiB"),
    ))
    .await;
    (valkey, backend, host)
}

#[tokio::test]
async fn a_trapping_component_answers_json_500_and_the_next_request_succeeds() {
    for export in EXPORTS {
        let (_valkey, _backend, host) = misbehaving_host_on(export).await;
        let reply = get(&host, "/executions/trap/input", "x").await;
        assert_eq!(reply.status, 500, "{export}");
        assert_eq!(reply.error_message(), "the component failed");
        let reply = get(&host, "/executions/ok/input", "x").await;
        assert_eq!(
            (reply.status, reply.json["data"].as_str()),
            (200, Some("fine")),
            "{export}"
        );
    }
}

/// How many requests the instance that answered had served, itself included.
async fn served_by_instance(host: &Host, authorization: Option<&str>) -> u64 {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    let reply = call("GET", &host.url("/executions/count/input"), &headers, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json["data"].as_u64().unwrap()
}

#[tokio::test]
async fn by_default_an_instance_serves_later_requests_of_its_credential() {
    let (_valkey, _backend, host) = misbehaving_host().await;
    for expected in [1, 2, 3] {
        assert_eq!(served_by_instance(&host, Some("Bearer a")).await, expected);
    }
    assert_eq!(served_by_instance(&host, Some("Bearer b")).await, 1);
}

#[tokio::test]
async fn with_reuse_turned_off_every_request_gets_a_fresh_instance() {
    let (_valkey, _backend, host) =
        misbehaving_host_with(|c| c.env("CRONIUM_INSTANCE_REUSE", "1")).await;
    for _ in 0..3 {
        assert_eq!(served_by_instance(&host, Some("Bearer a")).await, 1);
    }
}

#[tokio::test]
async fn an_instance_whose_memory_grew_past_a_quarter_of_its_cap_is_not_kept() {
    let (_valkey, _backend, host) = misbehaving_host().await;
    let auth = [("authorization", "Bearer g")];
    // 24 MiB of a 32 MiB cap: answered, then dropped.
    let grown = call("GET", &host.url("/executions/grow/input"), &auth, None).await;
    assert_eq!((grown.status, grown.json["data"].as_u64()), (200, Some(1)));
    assert_eq!(served_by_instance(&host, Some("Bearer g")).await, 1);
    assert_eq!(served_by_instance(&host, Some("Bearer g")).await, 2);
}

#[tokio::test]
async fn a_reused_instance_serves_only_its_credential_and_only_its_count() {
    for export in EXPORTS {
        let (_valkey, _backend, host) = misbehaving_host_with(|c| {
            c.env("CRONIUM_INSTANCE_REUSE", "3")
                .env("CRONIUM_COMPONENT_EXPORT", export)
        })
        .await;
        // One credential: three requests on one instance, then a fresh one.
        for expected in [1, 2, 3, 1] {
            assert_eq!(served_by_instance(&host, Some("Bearer a")).await, expected);
        }
        // Another credential, or the same in another case, never gets it.
        assert_eq!(served_by_instance(&host, Some("Bearer b")).await, 1);
        assert_eq!(served_by_instance(&host, Some("bearer a")).await, 1);
        assert_eq!(served_by_instance(&host, Some("Bearer b")).await, 2);
        // Requests without a credential never share an instance.
        for _ in 0..2 {
            assert_eq!(served_by_instance(&host, None).await, 1);
        }
        // An instance that failed is not kept.
        assert_eq!(served_by_instance(&host, Some("Bearer c")).await, 1);
        let auth = [("authorization", "Bearer c")];
        let trapped = call("GET", &host.url("/executions/trap/input"), &auth, None).await;
        assert_eq!(trapped.status, 500);
        assert_eq!(served_by_instance(&host, Some("Bearer c")).await, 1);

        let metrics = call("GET", &host.url("/metrics"), &[], None).await;
        let metrics = String::from_utf8_lossy(&metrics.body);
        // Reused: a's 2nd, 3rd; b's 2nd; c's trap request.
        assert!(
            metrics.contains("\ncronium_component_instances_reused_total 4\n"),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_deadline_with_json_504() {
    for export in EXPORTS {
        let (_valkey, _backend, host) = misbehaving_host_on(export).await;
        let started = Instant::now();
        let reply = get(&host, "/executions/loop/input", "x").await;
        assert_eq!(reply.status, 504, "{export}");
        reply.error_message();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stopped near its 1 s deadline ({export})"
        );
        assert_eq!(get(&host, "/executions/ok/input", "x").await.status, 200);
    }
}

#[tokio::test]
async fn a_memory_blowup_hits_the_cap_and_answers_json_500() {
    for export in EXPORTS {
        let (_valkey, _backend, host) = misbehaving_host_on(export).await;
        let reply = get(&host, "/executions/oom/input", "x").await;
        assert_eq!(reply.status, 500, "{export}");
        assert_eq!(reply.error_message(), "the component ran out of memory");
        assert_eq!(get(&host, "/executions/ok/input", "x").await.status, 200);
    }
}

#[tokio::test]
async fn misbehaving_requests_in_parallel_do_not_disturb_good_ones() {
    let (_valkey, _backend, host) = misbehaving_host().await;
    let bad = ["trap", "loop", "oom", "trap"].map(|kind| {
        let url = host.url(&format!("/executions/{kind}/input"));
        tokio::spawn(async move { call("GET", &url, &[], None).await.status })
    });
    for _ in 0..20 {
        assert_eq!(get(&host, "/executions/ok/input", "x").await.status, 200);
    }
    for task in bad {
        assert!(matches!(task.await.unwrap(), 500 | 504));
    }
}

#[tokio::test]
async fn with_valkey_killed_requests_go_to_the_backend_and_caching_resumes_when_it_returns() {
    let mut valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"k": "v"})));
    backend.add_execution("exec-2", "user-1", Some(json!({"k": 2})));
    let host = Host::start(HostConfig::with(&valkey.url(), &backend.url())).await;
    let context = |id: &str| format!("/api/internal/executions/{id}/context");
    let (t1, t2) = (token("exec-1"), token("exec-2"));

    assert_eq!(
        get(&host, "/executions/exec-1/input", &t1).await.status,
        200
    );
    assert_eq!(
        get(&host, "/executions/exec-1/input", &t1).await.status,
        200
    );
    assert_eq!(
        backend.count("GET", &context("exec-1")),
        1,
        "second read was a cache hit"
    );

    valkey.kill();
    for _ in 0..5 {
        // Read before: the host keeps its own copy of the immutable record.
        let reply = get(&host, "/executions/exec-1/input", &t1).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json["data"], json!({"k": "v"}));
        // Never read: the backend answers, and the host keeps a copy.
        let reply = get(&host, "/executions/exec-2/input", &t2).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json["data"], json!({"k": 2}));
    }
    assert_eq!(backend.count("GET", &context("exec-1")), 1);
    assert_eq!(
        backend.count("GET", &context("exec-2")),
        1,
        "only the first read went to the backend"
    );
    let output = call(
        "POST",
        &host.url("/executions/exec-2/output"),
        &[("authorization", &format!("Bearer {t2}"))],
        Some(br#"{"data":"written while valkey was down"}"#),
    )
    .await;
    assert_eq!(output.status, 200);
    assert_eq!(backend.state().outputs.len(), 1);

    valkey.restart();
    // A record first read after the restart is written to Valkey again
    // (the connection may need a request or two to come back, so each try
    // reads a record this host has not seen).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut cached: Option<String> = None;
    for attempt in 0.. {
        if cached.is_some() || Instant::now() >= deadline {
            break;
        }
        let id = format!("exec-after-{attempt}");
        backend.add_execution(&id, "user-1", Some(json!({"k": attempt})));
        let reply = get(&host, &format!("/executions/{id}/input"), &token(&id)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        cached = redis::cmd("GET")
            .arg(format!("cronium:exec:{id}"))
            .query(&mut valkey.connection())
            .ok()
            .flatten();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cached.is_some(),
        "caching resumed without restarting the host"
    );
}

#[tokio::test]
async fn the_host_starts_while_valkey_is_down_and_serves_through_the_backend() {
    let mut valkey = Valkey::start();
    let url = valkey.url();
    valkey.kill();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!(1)));
    let host = Host::start(HostConfig::with(&url, &backend.url())).await;
    let reply = get(&host, "/executions/exec-1/input", &token("exec-1")).await;
    assert_eq!((reply.status, reply.json["data"].clone()), (200, json!(1)));
}

#[tokio::test]
async fn embedded_defaults_keep_executions_and_outputs_across_a_restart() {
    let mut host = Host::start(HostConfig::default()).await;
    let created = host.command(&[
        "execution",
        "create",
        "--id",
        "local-1",
        "--user",
        "me",
        "--job",
        "j1",
        "--input",
        r#"{"x":1}"#,
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let t = printed["token"].as_str().unwrap().to_owned();

    let reply = get(&host, "/executions/local-1/input", &t).await;
    assert_eq!(reply.json, json!({"success": true, "data": {"x": 1}}));
    let auth = format!("Bearer {t}");
    let reply = call(
        "POST",
        &host.url("/executions/local-1/output"),
        &[("authorization", &auth)],
        Some(br#"{"data":{"done":true}}"#),
    )
    .await;
    assert_eq!(reply.status, 200);

    host.restart().await;
    let reply = get(&host, "/executions/local-1/context", &t).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["data"]["userId"], "me");
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(host.data_dir().join("outputs/local-1.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stored["output"], json!({"done": true}));
    let audit = std::fs::read_to_string(host.data_dir().join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"set_output\"")),
        "{audit}"
    );
}

#[tokio::test]
async fn sigterm_exits_cleanly() {
    let mut host = Host::start(HostConfig::default()).await;
    let status = host.stop().unwrap();
    assert!(status.success(), "{status:?}\n{}", host.log());
}

#[tokio::test]
async fn the_host_refuses_to_start_without_a_secret_and_says_why() {
    let host = Host::start(HostConfig::default()).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cronium-runtime"))
        .env_clear()
        .env("PORT", support::free_port().to_string())
        .env("CRONIUM_DATA_DIR", host.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RUNTIME_JWT_SECRET"));
}

#[tokio::test]
async fn compiled_components_are_cached_and_a_corrupt_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let config = HostConfig::default().env("CRONIUM_CACHE_DIR", cache.path().display().to_string());
    let mut host = Host::start(config).await;
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(
        entries.len(),
        8,
        "one per endpoint group (batch included) and built-in tool: {entries:?}"
    );
    for entry in &entries {
        std::fs::write(entry, b"not a compiled component").unwrap();
    }
    host.restart().await;
    let out = host.command(&[
        "execution",
        "create",
        "--id",
        "c1",
        "--user",
        "u",
        "--job",
        "j",
    ]);
    assert!(out.status.success());
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reply = get(&host, "/executions/c1/input", t["token"].as_str().unwrap()).await;
    assert_eq!(reply.status, 200);
    for entry in &entries {
        assert!(
            std::fs::metadata(entry).unwrap().len() > 1000,
            "rewritten: {}",
            entry.display()
        );
    }
}
