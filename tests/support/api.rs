//! The runtime API as the end-to-end tests call it: a variable read and
//! write, an input read, and waiting on what a host reports (a revocation
//! taking effect, its revocation watch going live or down).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Host, Reply, call, token};

/// `Bearer <a valid token for execution>`.
pub fn bearer(execution: &str) -> String {
    format!("Bearer {}", token(execution))
}

/// The path of variable `raw_key` (still percent-encoded) of `execution`.
pub fn variable_path(execution: &str, raw_key: &str) -> String {
    format!("/executions/{execution}/variables/{raw_key}")
}

/// `GET` of variable `raw_key` with `execution`'s token.
pub async fn get_variable(host: &Host, execution: &str, raw_key: &str) -> Reply {
    call(
        "GET",
        &host.url(&variable_path(execution, raw_key)),
        &[("authorization", &bearer(execution))],
        None,
    )
    .await
}

/// `PUT` of `{"value": value}` to variable `raw_key` with `execution`'s
/// token and the `extra` headers.
pub async fn put_variable(
    host: &Host,
    execution: &str,
    raw_key: &str,
    value: &Value,
    extra: &[(&str, &str)],
) -> Reply {
    let auth = bearer(execution);
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    let body = json!({ "value": value }).to_string();
    call(
        "PUT",
        &host.url(&variable_path(execution, raw_key)),
        &headers,
        Some(body.as_bytes()),
    )
    .await
}

/// The status of `GET /executions/{execution}/input` with its token.
pub async fn input_status(host: &Host, execution: &str) -> u16 {
    call(
        "GET",
        &host.url(&format!("/executions/{execution}/input")),
        &[("authorization", &bearer(execution))],
        None,
    )
    .await
    .status
}

/// Polls `host` until `execution`'s requests are refused (403), failing
/// the test if any is served (200) after `within`; how long that took.
pub async fn until_refused(host: &Host, execution: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = input_status(host, execution).await;
        if status == 403 {
            return started.elapsed();
        }
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < within,
            "still served after {within:?}:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `host`'s `/metrics` says its revocation watch is `live` (or
/// not).
pub async fn watch_is(host: &Host, live: bool) -> bool {
    let line = format!("cronium_revocation_watch_live {}", u8::from(live));
    let metrics = call("GET", &host.url("/metrics"), &[], None).await;
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .any(|l| l == line)
}
