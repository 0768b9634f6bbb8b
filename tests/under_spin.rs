//! The API under a real Spin CLI (`spin up` on `spin.toml`, `docs/spin.md`'s
//! commands), against the same Valkey and fake backend as the custom host:
//! every route answers alike, and so do CORS, unknown routes, a backend
//! that does not answer, and a `valkey://` URL. Audit events survive a
//! backend outage in Valkey's spool. A batch, its requests served by
//! service chaining, answers the same bytes as in the custom host.
//!
//! Each test needs a Spin 4.0.x CLI (`spin` on the PATH or
//! `CRONIUM_SPIN_BIN`); without one it says on the terminal that it did
//! not run, and why.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::json;
use support::batch;
use support::parity::{self, HostWorld, essence};
use support::{FakeBackend, Host, HostConfig, Reply, SpinApp, Valkey, call, spin_cli, token};

/// The custom host on the route table's world, with `env` added.
async fn host_world(env: &[(&str, &str)]) -> HostWorld {
    HostWorld::start(|config| {
        env.iter()
            .fold(config, |config, (name, value)| config.env(name, *value))
    })
    .await
}

/// The same, served by `spin up`.
struct SpinWorld {
    valkey: Valkey,
    backend: FakeBackend,
    app: SpinApp,
}

impl SpinWorld {
    async fn start(cli: &std::path::Path, variables: &[(&str, &str)]) -> SpinWorld {
        let valkey = Valkey::start();
        let backend = FakeBackend::start().await;
        parity::add_executions(&backend);
        let app = SpinApp::start(cli, &valkey.url(), &backend.url(), variables).await;
        SpinWorld {
            valkey,
            backend,
            app,
        }
    }
}

fn bearer(execution: &str) -> String {
    format!("Bearer {}", token(execution))
}

#[tokio::test]
async fn every_route_answers_under_spin_as_in_the_custom_host() {
    let Some(cli) = spin_cli("every_route_answers_under_spin_as_in_the_custom_host") else {
        return;
    };
    let host = host_world(&[]).await;
    let spin = SpinWorld::start(cli, &[]).await;
    for case in &parity::route_table() {
        let expected = essence(&parity::ask(&host.host.base(), case).await);
        let reply = parity::ask(&spin.app.url(""), case).await;
        assert_eq!(
            essence(&reply),
            expected,
            "{} {}: Spin, then the custom host\n{}",
            case.method,
            case.path,
            spin.app.log()
        );
    }
}

/// The CORS headers of an answer, in a fixed order.
fn cors_headers(reply: &Reply) -> Vec<Option<String>> {
    [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-max-age",
        "access-control-expose-headers",
        "vary",
    ]
    .iter()
    .map(|name| reply.header(name).map(str::to_owned))
    .collect()
}

#[tokio::test]
async fn cors_is_answered_under_spin_as_in_the_custom_host() {
    let Some(cli) = spin_cli("cors_is_answered_under_spin_as_in_the_custom_host") else {
        return;
    };
    let origin = "https://app.example.com";
    let host = host_world(&[("ALLOWED_ORIGINS", origin)]).await;
    let spin = SpinWorld::start(cli, &[("allowed_origins", origin)]).await;
    let auth = bearer("exec-1");
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let requests: [(&str, &str, Headers); 5] = [
        (
            "OPTIONS",
            "/executions/exec-1/input",
            vec![("origin", origin), ("access-control-request-method", "GET")],
        ),
        (
            "OPTIONS",
            "/executions/exec-1/variables/k",
            vec![
                ("origin", "https://evil.example.com"),
                ("access-control-request-method", "PUT"),
            ],
        ),
        (
            "GET",
            "/executions/exec-1/input",
            vec![("origin", origin), ("authorization", &auth)],
        ),
        (
            "GET",
            "/executions/exec-1/input",
            vec![
                ("origin", "https://evil.example.com"),
                ("authorization", &auth),
            ],
        ),
        ("GET", "/no/such/route", vec![("origin", origin)]),
    ];
    for (method, path, headers) in &requests {
        let expected = call(method, &host.host.url(path), headers, None).await;
        let reply = call(method, &spin.app.url(path), headers, None).await;
        assert_eq!(
            (reply.status, cors_headers(&reply)),
            (expected.status, cors_headers(&expected)),
            "{method} {path} {headers:?}: Spin, then the custom host"
        );
    }
    let preflight = call(
        "OPTIONS",
        &spin.app.url("/executions/exec-1/input"),
        &requests[0].2,
        None,
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(origin)
    );
}

#[tokio::test]
async fn cors_turned_off_under_spin_adds_nothing() {
    let Some(cli) = spin_cli("cors_turned_off_under_spin_adds_nothing") else {
        return;
    };
    let spin = SpinWorld::start(cli, &[("enable_cors", "false")]).await;
    let url = spin.app.url("/executions/exec-1/input");
    let headers = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "GET"),
    ];
    let reply = call("OPTIONS", &url, &headers, None).await;
    assert_eq!(reply.status, 405, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn unknown_routes_get_the_json_404_under_spin() {
    let Some(cli) = spin_cli("unknown_routes_get_the_json_404_under_spin") else {
        return;
    };
    let spin = SpinWorld::start(cli, &[]).await;
    for path in [
        "/",
        "/nope",
        "/executions",
        "/executions/exec-1",
        "/api/internal/audit",
    ] {
        let reply = call("GET", &spin.app.url(path), &[], None).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        assert_eq!(reply.error_message(), "no such route", "{path}");
    }
}

/// A backend that accepts connections and never answers.
fn silent_backend() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

#[tokio::test]
async fn a_backend_that_does_not_answer_is_a_json_504_after_backend_timeout_under_spin() {
    let Some(cli) =
        spin_cli("a_backend_that_does_not_answer_is_a_json_504_after_backend_timeout_under_spin")
    else {
        return;
    };
    // The listener's backlog takes the connections; nobody ever reads them.
    let (_silent, silent_url) = silent_backend();
    let valkey = Valkey::start();
    let host =
        Host::start(HostConfig::with(&valkey.url(), &silent_url).env("BACKEND_TIMEOUT", "1s"))
            .await;
    let app = SpinApp::start(
        cli,
        &valkey.url(),
        &silent_url,
        &[("backend_timeout", "1s")],
    )
    .await;
    let auth = bearer("exec-1");
    let headers = [("authorization", auth.as_str())];
    let expected = call("GET", &host.url("/executions/exec-1/input"), &headers, None).await;
    let started = Instant::now();
    let reply = call("GET", &app.url("/executions/exec-1/input"), &headers, None).await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 504, "{reply:?}\n{}", app.log());
    assert_eq!(
        (reply.status, &reply.json),
        (expected.status, &expected.json)
    );
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
}

#[tokio::test]
async fn audit_events_wait_in_valkey_while_the_backend_refuses_them_and_arrive_in_order_once_under_spin()
 {
    let Some(cli) = spin_cli(
        "audit_events_wait_in_valkey_while_the_backend_refuses_them_and_arrive_in_order_once_under_spin",
    ) else {
        return;
    };
    let spin = SpinWorld::start(cli, &[]).await;
    let auth = bearer("exec-1");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let put = |key: &'static str| {
        let url = spin.app.url(&format!("/executions/exec-1/variables/{key}"));
        async move {
            let reply = call("PUT", &url, &headers, Some(br#"{"value":1}"#)).await;
            assert_eq!(reply.status, 200, "PUT {key}: {reply:?}");
        }
    };
    // The first write also loads (and audits reading) the execution.
    put("k0").await;
    spin.backend.state().audit_down = true;
    for key in ["k1", "k2", "k3"] {
        put(key).await;
    }
    let mut valkey = spin.valkey.connection();
    let waiting: i64 = redis::cmd("LLEN")
        .arg("cronium:{audit}:spool")
        .query(&mut valkey)
        .unwrap();
    assert_eq!(waiting, 3, "every event waits in the spool");
    assert_eq!(
        spin.backend.audit_events("set_variable").len(),
        1,
        "only k0's"
    );

    spin.backend.state().audit_down = false;
    put("k4").await;
    let keys: Vec<String> = spin
        .backend
        .audit_events("set_variable")
        .iter()
        .map(|event| {
            event["metadata"]["key"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        keys,
        ["k0", "k1", "k2", "k3", "k4"],
        "in order, each once\n{}",
        spin.app.log()
    );
    let waiting: i64 = redis::cmd("LLEN")
        .arg("cronium:{audit}:spool")
        .query(&mut valkey)
        .unwrap();
    assert_eq!(waiting, 0);
}

#[tokio::test]
async fn a_valkey_url_means_a_redis_url_under_spin() {
    let Some(cli) = spin_cli("a_valkey_url_means_a_redis_url_under_spin") else {
        return;
    };
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    parity::add_executions(&backend);
    let valkey_url = valkey.url().replace("redis://", "valkey://");
    let app = SpinApp::start(cli, &valkey_url, &backend.url(), &[]).await;
    let auth = bearer("exec-1");
    let reply = call(
        "GET",
        &app.url("/executions/exec-1/input"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}\n{}", app.log());
    let cached: Option<String> = redis::cmd("GET")
        .arg(cronium_rules::keys::execution("exec-1"))
        .query(&mut valkey.connection())
        .unwrap();
    assert!(cached.is_some(), "the execution was cached in Valkey");
}

#[tokio::test]
async fn a_batch_answers_the_same_bytes_under_spin_as_in_the_custom_host() {
    let Some(cli) = spin_cli("a_batch_answers_the_same_bytes_under_spin_as_in_the_custom_host")
    else {
        return;
    };
    let host = host_world(&[]).await;
    let spin = SpinWorld::start(cli, &[]).await;
    let mut calls = batch::seven_call_script();
    calls.extend([
        batch::call_of("PUT", "variables/greeting", Some(json!({"value": "hi"}))),
        batch::call_of("GET", "variables/greeting", None),
        batch::call_of("GET", "variables/missing?strict=true", None),
        batch::call_of("GET", "/executions/exec-2/input", None),
        batch::call_of("GET", "nothing", None),
        batch::call_of("PUT", "input", None),
        batch::call_of("POST", "condition", Some(json!({"condition": "yes"}))),
        batch::call_of("GET", "/tool-actions", None),
    ]);
    let body = batch::batch_body(&calls);
    let token = token("exec-1");
    let expected = batch::send(&host.host.base(), "exec-1", &token, &body).await;
    let reply = batch::send(&spin.app.url(""), "exec-1", &token, &body).await;
    assert_eq!(expected.status, 200, "{expected:?}");
    assert_eq!(
        (reply.status, String::from_utf8_lossy(&reply.body)),
        (expected.status, String::from_utf8_lossy(&expected.body)),
        "the batch under Spin, then in the custom host\n{}",
        spin.app.log()
    );
    // And a limit refuses the whole batch alike.
    let nested = json!({"requests": [{"id": "n", "method": "POST", "url": "batch"}]});
    let expected = batch::send(&host.host.base(), "exec-1", &token, &nested).await;
    let reply = batch::send(&spin.app.url(""), "exec-1", &token, &nested).await;
    assert_eq!(expected.status, 400);
    assert_eq!(
        (reply.status, &reply.json),
        (expected.status, &expected.json)
    );
}

#[tokio::test]
async fn a_batch_runs_out_of_rate_budget_under_spin_as_in_the_custom_host() {
    let Some(cli) = spin_cli("a_batch_runs_out_of_rate_budget_under_spin_as_in_the_custom_host")
    else {
        return;
    };
    let host = host_world(&[("RATE_LIMIT_PER_MIN", "5")]).await;
    let spin = SpinWorld::start(cli, &[("rate_limit_per_min", "5")]).await;
    let calls: Vec<batch::Call> = (0..7)
        .map(|_| batch::call_of("GET", "input", None))
        .collect();
    let body = batch::batch_body(&calls);
    let token = token("exec-1");
    let statuses = |reply: &Reply| -> Vec<u64> {
        batch::responses(reply)
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect()
    };
    let expected = batch::send(&host.host.base(), "exec-1", &token, &body).await;
    let reply = batch::send(&spin.app.url(""), "exec-1", &token, &body).await;
    // The batch is one request of the budget, each of its requests one more.
    assert_eq!(statuses(&expected), [200, 200, 200, 200, 429, 429, 429]);
    assert_eq!(statuses(&reply), statuses(&expected), "{}", spin.app.log());
    let again = batch::send(&spin.app.url(""), "exec-1", &token, &body).await;
    assert_eq!(again.status, 429, "{again:?}");
}

#[tokio::test]
async fn a_revoked_job_and_an_exhausted_rate_limit_are_refused_under_spin() {
    let Some(cli) = spin_cli("a_revoked_job_and_an_exhausted_rate_limit_are_refused_under_spin")
    else {
        return;
    };
    let spin = SpinWorld::start(cli, &[("rate_limit_per_min", "3")]).await;
    let url = spin.app.url("/executions/exec-1/input");
    let auth = bearer("exec-1");
    let headers = [("authorization", auth.as_str())];
    for _ in 0..3 {
        let reply = call("GET", &url, &headers, None).await;
        assert_eq!(reply.status, 200, "{reply:?}\n{}", spin.app.log());
    }
    let limited = call("GET", &url, &headers, None).await;
    assert_eq!(limited.status, 429, "{limited:?}\n{}", spin.app.log());
    assert!(limited.header("retry-after").is_some());

    let auth = bearer("exec-2");
    let headers = [("authorization", auth.as_str())];
    let url = spin.app.url("/executions/exec-2/input");
    assert_eq!(call("GET", &url, &headers, None).await.status, 200);
    let _: () = redis::cmd("SET")
        .arg(cronium_rules::keys::revoked_job("job-exec-2"))
        .arg("1")
        .query(&mut spin.valkey.connection())
        .unwrap();
    let revoked = call("GET", &url, &headers, None).await;
    assert_eq!(revoked.status, 403, "{revoked:?}\n{}", spin.app.log());
}
