//! What operators rely on: metrics, readiness, CORS, load shedding and
//! timeouts, durable audit, graceful shutdown.

use crate::support;

use std::time::{Duration, Instant};

use cronium_rules::keys;
use redis::Commands;
use serde_json::{Value, json};
use support::{FakeBackend, Host, HostConfig, Valkey, call, eventually, metric, token};

const MISBEHAVE: &str = env!("CRONIUM_TEST_MISBEHAVE_WASM");

async fn world() -> (Valkey, FakeBackend, HostConfig) {
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"n": 1})));
    let config = HostConfig::with(&valkey.url(), &backend.url());
    (valkey, backend, config)
}

fn auth(execution: &str) -> String {
    format!("Bearer {}", token(execution))
}

/// `GET /executions/exec-1/input` with a valid token.
async fn get_input(host: &Host) -> support::Reply {
    let url = host.url("/executions/exec-1/input");
    call("GET", &url, &[("authorization", &auth("exec-1"))], None).await
}

#[tokio::test]
async fn metrics_count_the_requests_a_test_made_by_route_and_status() {
    let (_valkey, _backend, config) = world().await;
    let host = Host::start(config).await;
    for _ in 0..3 {
        assert_eq!(get_input(&host).await.status, 200);
    }
    call("GET", &host.url("/nope"), &[], None).await;
    let reply = call("GET", &host.url("/metrics"), &[], None).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(
        metric(
            &text,
            "cronium_requests_total{route=\"executions\",status=\"200\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "cronium_requests_total{route=\"unknown\",status=\"404\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "cronium_cache_lookups_total{result=\"hit\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "cronium_cache_lookups_total{result=\"miss\"}"),
        Some(1.0)
    );
    // Each request ran on a new instance or one reused for its token.
    let instantiated = metric(&text, "cronium_component_instantiation_seconds_count");
    let reused = metric(&text, "cronium_component_instances_reused_total");
    assert_eq!(
        instantiated.zip(reused).map(|(n, r)| n + r),
        Some(3.0),
        "{text}"
    );
    assert!(instantiated >= Some(1.0));
    assert_eq!(
        metric(&text, "cronium_backend_request_duration_seconds_count"),
        Some(1.0)
    );
    assert!(text.contains("# TYPE cronium_audit_backlog gauge"));
}

#[tokio::test]
async fn every_request_is_logged_once_with_its_request_id() {
    let (_valkey, _backend, config) = world().await;
    let host = Host::start(config).await;
    call(
        "GET",
        &host.url("/executions/exec-1/context"),
        &[
            ("authorization", &auth("exec-1")),
            ("x-request-id", "trace-me-42"),
        ],
        None,
    )
    .await;
    let found = eventually(Duration::from_secs(5), || {
        host.log().contains("trace-me-42")
    })
    .await;
    assert!(found);
    let line = host
        .log()
        .lines()
        .find(|l| l.contains("trace-me-42"))
        .unwrap()
        .to_owned();
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["path"], "/executions/exec-1/context");
    assert_eq!(entry["status"], 200);
    assert!(!line.contains(&token("exec-1")), "no token in the log");
}

#[tokio::test]
async fn ready_reflects_the_backend_and_the_cache_while_health_stays_live() {
    let (mut valkey, backend, config) = world().await;
    let host = Host::start(config).await;
    let reply = call("GET", &host.url("/ready"), &[], None).await;
    assert_eq!(
        (reply.status, reply.json["checks"].clone()),
        (200, json!({"backend": "ok", "cache": "ok"}))
    );

    valkey.kill();
    let reply = call("GET", &host.url("/ready"), &[], None).await;
    assert_eq!(
        (reply.status, reply.json["checks"]["cache"].clone()),
        (200, json!("degraded"))
    );

    backend.state().down = true;
    let reply = call("GET", &host.url("/ready"), &[], None).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json["checks"]["backend"], "unreachable");
    assert!(reply.header("retry-after").is_some());
    assert_eq!(
        call("GET", &host.url("/health"), &[], None).await.status,
        200
    );
}

#[tokio::test]
async fn cors_preflights_are_answered_by_the_host_for_allowed_origins_only() {
    let (_valkey, _backend, config) = world().await;
    let host = Host::start(config.env("ALLOWED_ORIGINS", "https://app.example.com")).await;
    let url = host.url("/executions/exec-1/variables/k");
    let preflight = |origin: &'static str| {
        let url = url.clone();
        async move {
            call(
                "OPTIONS",
                &url,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "PUT"),
                    ("access-control-request-headers", "if-match"),
                ],
                None,
            )
            .await
        }
    };
    let allowed = preflight("https://app.example.com").await;
    assert_eq!(allowed.status, 204);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        allowed
            .header("access-control-allow-methods")
            .unwrap()
            .contains("PUT")
    );
    assert!(
        allowed
            .header("access-control-allow-headers")
            .unwrap()
            .contains("If-Match")
    );
    let refused = preflight("https://evil.example.com").await;
    assert!(refused.header("access-control-allow-origin").is_none());

    let reply = call(
        "GET",
        &host.url("/executions/exec-1/input"),
        &[
            ("authorization", &auth("exec-1")),
            ("origin", "https://app.example.com"),
        ],
        None,
    )
    .await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        reply
            .header("access-control-expose-headers")
            .unwrap()
            .contains("ETag")
    );
}

#[tokio::test]
async fn over_the_in_flight_cap_requests_get_503_with_retry_after() {
    let (_valkey, _backend, config) = world().await;
    let host = Host::start(
        config
            .env("CRONIUM_COMPONENT_EXECUTIONS", MISBEHAVE)
            .env("CRONIUM_MAX_IN_FLIGHT", "1"),
    )
    .await;
    let slow_url = host.url("/executions/slow/input");
    let slow = tokio::spawn(async move { call("GET", &slow_url, &[], None).await.status });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shed = call("GET", &host.url("/executions/ok/input"), &[], None).await;
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("retry-after"), Some("1"));
    shed.error_message();
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(
        call("GET", &host.url("/executions/ok/input"), &[], None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    use std::io::{Read, Write};
    let (_valkey, _backend, config) = world().await;
    let host = Host::start(config.env("CRONIUM_BODY_TIMEOUT", "1s")).await;
    let addr = host.addr();
    let head = format!(
        "POST /executions/exec-1/output HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 100\r\n\r\n{{\"data\":",
        auth("exec-1")
    );
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn audit_events_survive_a_backend_outage_and_arrive_in_order() {
    let (_valkey, backend, config) = world().await;
    let host = Host::start(config).await;
    // Warm the cache so that writes are the only backend traffic.
    get_input(&host).await;
    assert!(
        eventually(Duration::from_secs(5), || backend
            .audit_events("get_input")
            .len()
            == 1)
        .await
    );

    backend.state().down = true;
    for n in 0..10 {
        let body = json!({ "condition": n % 2 == 0 }).to_string();
        let reply = call(
            "POST",
            &host.url("/executions/exec-1/condition"),
            &[("authorization", &auth("exec-1"))],
            Some(body.as_bytes()),
        )
        .await;
        assert_eq!(
            reply.status, 503,
            "the write itself fails while the backend is down"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics =
        String::from_utf8_lossy(&call("GET", &host.url("/metrics"), &[], None).await.body)
            .into_owned();
    assert_eq!(
        metric(&metrics, "cronium_audit_backlog"),
        Some(10.0),
        "{metrics}"
    );

    backend.state().down = false;
    assert!(
        eventually(Duration::from_secs(10), || backend
            .audit_events("set_condition")
            .len()
            == 10)
        .await
    );
    let conditions: Vec<bool> = backend
        .audit_events("set_condition")
        .iter()
        .map(|e| e["metadata"]["condition"].as_bool().unwrap())
        .collect();
    assert_eq!(
        conditions,
        (0..10).map(|n| n % 2 == 0).collect::<Vec<_>>(),
        "in order"
    );
    assert!(
        backend
            .audit_events("set_condition")
            .iter()
            .all(|e| e["metadata"]["outcome"] == "unavailable")
    );
}

#[tokio::test]
async fn without_valkey_spooled_audit_events_stay_on_disk_and_are_delivered_after_a_restart() {
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"n": 1})));
    let config = HostConfig {
        backend_url: Some(backend.url()),
        ..HostConfig::default()
    };
    let mut host = Host::start(config).await;
    backend.state().audit_down = true;
    post_output(&host, "exec-1").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(host.stop().unwrap().success());
    assert_eq!(spool_file_lines(&host), 1, "{}", host.log());
    backend.state().audit_down = false;
    host.restart().await;
    assert!(
        eventually(Duration::from_secs(10), || backend
            .audit_events("set_output")
            .len()
            == 1)
        .await
    );
}

#[tokio::test]
async fn audit_events_the_backend_cannot_take_at_a_stop_go_to_valkey_and_another_host_delivers_them()
 {
    let (valkey, backend, config) = world().await;
    let mut stopping = Host::start(config.clone()).await;
    backend.state().audit_down = true;
    post_output(&stopping, "exec-1").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(stopping.stop().unwrap().success());

    let spooled = shared_spool(&valkey);
    assert_eq!(spooled.len(), 1, "{}", stopping.log());
    assert_eq!(spooled[0]["action"], "set_output");
    assert_eq!(spooled[0]["executionId"], "exec-1");
    assert_eq!(
        spool_file_lines(&stopping),
        0,
        "handed over, not kept twice"
    );

    backend.state().audit_down = false;
    let _other = Host::start(config).await;
    assert!(
        eventually(Duration::from_secs(10), || backend
            .audit_events("set_output")
            .len()
            == 1)
        .await,
        "the other host drained the shared spool"
    );
    assert!(eventually(Duration::from_secs(5), || shared_spool(&valkey).is_empty()).await);
}

#[tokio::test]
async fn a_stop_cuts_short_deliveries_a_silent_backend_holds_and_hands_their_events_over_in_order()
{
    let (valkey, backend, config) = world().await;
    let mut stopping = Host::start(config.clone().env("CRONIUM_STOP_TIMEOUT", "3s")).await;
    // The backend takes audit events and does not answer (its timeout is
    // 30 s): the deliveries are still under way when the stop comes.
    backend.state().audit_delay = Some(Duration::from_secs(600));
    let auth = auth("exec-1");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for (route, body) in [
        ("output", &br#"{"data":1}"#[..]),
        ("condition", br#"{"condition":true}"#),
        ("output", br#"{"data":2}"#),
    ] {
        let url = stopping.url(&format!("/executions/exec-1/{route}"));
        assert_eq!(call("POST", &url, &headers, Some(body)).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(stopping.stop().unwrap().success());

    let actions: Vec<Value> = shared_spool(&valkey)
        .iter()
        .map(|event| event["action"].clone())
        .collect();
    assert_eq!(
        actions,
        [
            json!("set_output"),
            json!("set_condition"),
            json!("set_output")
        ],
        "{}",
        stopping.log()
    );

    backend.state().audit_delay = None;
    let _other = Host::start(config).await;
    // At least once: the backend may also answer the cut-short deliveries.
    for (action, count) in [("set_output", 2), ("set_condition", 1)] {
        assert!(
            eventually(Duration::from_secs(10), || backend
                .audit_events(action)
                .len()
                >= count)
            .await,
            "{action} delivered from the shared spool"
        );
    }
}

async fn post_output(host: &Host, execution: &str) {
    let reply = call(
        "POST",
        &host.url(&format!("/executions/{execution}/output")),
        &[("authorization", &auth(execution))],
        Some(br#"{"data":1}"#),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// The events in the shared audit spool in Valkey, oldest first.
fn shared_spool(valkey: &Valkey) -> Vec<Value> {
    let bodies: Vec<String> = valkey
        .connection()
        .lrange(keys::audit_spool(), 0, -1)
        .unwrap();
    bodies
        .iter()
        .map(|body| serde_json::from_str(body).unwrap())
        .collect()
}

/// The events in `host`'s own spool file.
fn spool_file_lines(host: &Host) -> usize {
    let path = host.data_dir().join("audit-spool/audit-spool.jsonl");
    std::fs::read_to_string(path)
        .map(|text| text.lines().filter(|l| !l.is_empty()).count())
        .unwrap_or(0)
}

#[tokio::test]
async fn sigterm_during_a_slow_request_lets_it_finish_then_exits_cleanly() {
    let (_valkey, _backend, config) = world().await;
    let mut host = Host::start(config.env("CRONIUM_COMPONENT_EXECUTIONS", MISBEHAVE)).await;
    let url = host.url("/executions/slow/input");
    let slow = tokio::spawn(async move { call("GET", &url, &[], None).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = host.stop();
        (status, host)
    })
    .await
    .unwrap();
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["data"], "slow but fine");
    assert!(status.0.unwrap().success());
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "waited for the request"
    );
}

#[tokio::test]
async fn every_documented_operation_answers_only_documented_statuses() {
    let (_valkey, _backend, config) = world().await;
    let host = Host::start(config).await;
    let doc = call("GET", &host.url("/openapi.json"), &[], None)
        .await
        .json;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let path = template
                .replace("{id}", "exec-1")
                .replace("{key}", "a%2Fkey");
            let body: Option<&[u8]> = match (method.as_str(), template.rsplit('/').next()) {
                ("post", Some("output")) => Some(br#"{"data":{"x":1}}"#),
                ("post", Some("condition")) => Some(br#"{"condition":true}"#),
                ("post", Some("batch")) => Some(
                    br#"{"requests":[{"id":"1","method":"GET","url":"input"},{"id":"2","method":"POST","url":"condition","body":{"condition":true}}]}"#,
                ),
                // Loopback is not an address the webhook tool may reach: 502.
                ("post", Some("execute")) => Some(
                    br#"{"tool":"webhook","action":"send","config":{"url":"http://127.0.0.1:9/"}}"#,
                ),
                ("put", _) => Some(br#"{"value":[1,2]}"#),
                _ => None,
            };
            let secured = operation.get("security").is_none();
            let documented = |status: u16| operation["responses"].get(status.to_string()).is_some();
            let token = auth("exec-1");
            let mut attempts = vec![(
                vec![("authorization", token.as_str())],
                body,
                "as documented",
            )];
            if secured {
                attempts.push((vec![], body, "without a token"));
                attempts.push((
                    vec![("authorization", "Bearer x.y.z")],
                    body,
                    "with a bad token",
                ));
                if body.is_some() {
                    attempts.push((
                        vec![("authorization", token.as_str())],
                        Some(&b"{not json"[..]),
                        "with a bad body",
                    ));
                }
            }
            for (headers, body, how) in attempts {
                let reply = call(&method.to_uppercase(), &host.url(&path), &headers, body).await;
                assert!(
                    documented(reply.status),
                    "{} {template} {how}: {} is not documented",
                    method.to_uppercase(),
                    reply.status
                );
                if reply.status >= 400 {
                    reply.error_message();
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 32, "checked {checked} calls");
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_a_json_431() {
    let (_valkey, _backend, config) = world().await;
    let host = Host::start(config).await;
    let names: Vec<String> = (0..150).map(|i| format!("x-extra-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let reply = call("GET", &host.url("/health"), &many, None).await;
    assert_eq!(reply.status, 431);
    reply.error_message();
    let big = "x".repeat(40 * 1024);
    let reply = call("GET", &host.url("/health"), &[("x-big", &big)], None).await;
    assert_eq!(reply.status, 431);
    reply.error_message();
}

#[tokio::test]
async fn a_minute_long_backend_outage_loses_no_audit_event() {
    let (_valkey, backend, config) = world().await;
    let host = Host::start(config).await;
    get_input(&host).await;
    backend.state().down = true;
    let outage = Instant::now();
    let mut written = 0;
    while outage.elapsed() < Duration::from_secs(60) {
        let reply = call(
            "POST",
            &host.url("/executions/exec-1/output"),
            &[("authorization", &auth("exec-1"))],
            Some(br#"{"data":"x"}"#),
        )
        .await;
        assert_eq!(reply.status, 503);
        written += 1;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    backend.state().down = false;
    assert!(
        eventually(Duration::from_secs(15), || backend
            .audit_events("set_output")
            .len()
            == written)
        .await
    );
    let metrics =
        String::from_utf8_lossy(&call("GET", &host.url("/metrics"), &[], None).await.body)
            .into_owned();
    assert_eq!(metric(&metrics, "cronium_audit_lost_total"), Some(0.0));
    assert_eq!(metric(&metrics, "cronium_audit_backlog"), Some(0.0));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    use std::io::{Read, Write};
    let (_valkey, _backend, config) = world().await;
    let host = Host::start(config.env("CRONIUM_WRITE_TIMEOUT", "1s")).await;
    let big = json!({ "value": "x".repeat(1_000_000) }).to_string();
    let reply = call(
        "PUT",
        &host.url("/executions/exec-1/variables/big"),
        &[("authorization", &auth("exec-1"))],
        Some(big.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 200);
    let addr = host.addr();
    let request = format!(
        "GET /executions/exec-1/variables/big HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
        auth("exec-1")
    );
    let received = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        for _ in 0..30 {
            if stream.write_all(request.as_bytes()).is_err() {
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(4));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    })
    .await
    .unwrap();
    assert!(
        received < 30 * 1_000_000,
        "the connection was cut ({received} bytes read)"
    );
    let reply = call("GET", &host.url("/health"), &[], None).await;
    assert_eq!(reply.status, 200);
}

/// The local address of the TCP socket listening on `port`, from
/// `/proc/net/tcp` (Linux): e.g. `0100007F` for 127.0.0.1.
fn listening_address(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (address, hex_port) = fields.get(1)?.split_once(':')?;
        (fields.get(3) == Some(&"0A") && u16::from_str_radix(hex_port, 16).ok()? == port)
            .then(|| address.to_owned())
    })
}

/// Runs `cronium-runtime dev <args>` until it prints its token; the
/// address it listens on, then stops it.
fn dev_listening_on(args: &[&str]) -> String {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cronium-runtime"))
        .args(["dev", "--port", &port.to_string(), "--data-dir"])
        .arg(data.path())
        .args(args)
        .current_dir(data.path())
        .env_remove("HOST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    for line in stdout.lines().map_while(Result::ok) {
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("export CRONIUM_API_TOKEN=") {
            break;
        }
    }
    let address = listening_address(port);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        printed.contains(&format!("on http://127.0.0.1:{port},")),
        "{printed}"
    );
    address.unwrap_or_else(|| panic!("nothing listens on {port}:\n{printed}"))
}

#[test]
fn dev_listens_on_loopback_only_unless_told_otherwise() {
    if !std::path::Path::new("/proc/net/tcp").exists() {
        eprintln!("skipping: no /proc/net/tcp to read listening sockets from");
        return;
    }
    assert_eq!(dev_listening_on(&[]), "0100007F", "127.0.0.1");
    assert_eq!(dev_listening_on(&["--host", "0.0.0.0"]), "00000000");
}
