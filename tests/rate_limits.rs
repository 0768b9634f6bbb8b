//! Rate limits: per execution across every host sharing a Valkey, per
//! client address for failing tokens, and on this host alone while Valkey
//! is down. 429 answers are JSON with `Retry-After`.

use crate::support;

use serde_json::json;
use support::{FakeBackend, Host, HostConfig, Reply, Valkey, call, token};

async fn input(host: &Host, execution: &str, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    let path = format!("/executions/{execution}/input");
    call("GET", &host.url(&path), &[("authorization", &auth)], None).await
}

/// (passed, refused) of `n` requests of `execution`, alternating hosts.
async fn flood(hosts: &[&Host], execution: &str, n: usize) -> (usize, usize) {
    let t = token(execution);
    let (mut passed, mut refused) = (0, 0);
    for i in 0..n {
        let reply = input(hosts[i % hosts.len()], execution, &t).await;
        match reply.status {
            200 => passed += 1,
            429 => {
                let wait: u32 = reply.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=60).contains(&wait), "Retry-After {wait}");
                assert_eq!(reply.error_message(), "rate limit exceeded; slow down");
                refused += 1;
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    (passed, refused)
}

async fn world(limit: u32) -> (Valkey, FakeBackend, HostConfig) {
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!(1)));
    backend.add_execution("exec-2", "user-1", Some(json!(2)));
    let config = HostConfig::with(&valkey.url(), &backend.url())
        .env("RATE_LIMIT_PER_MIN", limit.to_string());
    (valkey, backend, config)
}

#[tokio::test]
async fn a_flood_from_one_execution_is_refused_on_every_host_while_another_execution_is_served() {
    let (_valkey, _backend, config) = world(20).await;
    let (a, b) = (Host::start(config.clone()).await, Host::start(config).await);
    let (passed, refused) = flood(&[&a, &b], "exec-1", 30).await;
    // The burst of 20 (one more may pass if the flood spans a 3 s refill).
    assert!((20..=21).contains(&passed), "passed {passed}");
    assert_eq!(passed + refused, 30);
    let t = token("exec-2");
    assert_eq!(input(&a, "exec-2", &t).await.status, 200);
    assert_eq!(input(&b, "exec-2", &t).await.status, 200);
}

#[tokio::test]
async fn failing_tokens_are_limited_per_client_address_without_touching_valid_ones() {
    let (_valkey, _backend, config) = world(5).await;
    let host = Host::start(config).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(input(&host, "exec-1", "not-a-token").await.status);
    }
    assert_eq!(&statuses[..5], &[401; 5]);
    assert_eq!(&statuses[5..], &[429; 3]);
    assert_eq!(input(&host, "exec-1", &token("exec-1")).await.status, 200);
}

#[tokio::test]
async fn with_valkey_down_each_host_counts_alone() {
    let (mut valkey, _backend, config) = world(10).await;
    let host = Host::start(config).await;
    valkey.kill();
    let (passed, refused) = flood(&[&host], "exec-1", 15).await;
    assert!((10..=11).contains(&passed), "passed {passed}");
    assert_eq!(passed + refused, 15);
}

#[tokio::test]
async fn a_limit_of_zero_turns_rate_limiting_off() {
    let (_valkey, _backend, config) = world(0).await;
    let host = Host::start(config).await;
    assert_eq!(flood(&[&host], "exec-1", 50).await, (50, 0));
}

#[test]
fn the_access_script_hands_back_a_third_key_in_the_same_round_trip() {
    use cronium_rules::rate_limit::Quota;
    use redis::Value;

    let valkey = Valkey::start();
    let mut connection = valkey.connection();
    let call = cronium_rules::valkey::check_access_and_peek(
        "cronium:exec-revoked:job-e",
        "cronium:rl:exec:e",
        Quota::per_minute(10),
        "cronium:exec:e",
    );
    let mut run = || -> Vec<Value> {
        redis::cmd("EVAL")
            .arg(call.eval_args())
            .query(&mut connection)
            .unwrap()
    };
    assert_eq!(run(), [Value::Int(0), Value::Nil], "passed, nothing cached");
    let _: () = redis::cmd("SET")
        .arg("cronium:exec:e")
        .arg("record")
        .query(&mut valkey.connection())
        .unwrap();
    assert_eq!(
        run(),
        [Value::Int(0), Value::BulkString(b"record".to_vec())]
    );
    let _: () = redis::cmd("SET")
        .arg("cronium:exec-revoked:job-e")
        .arg("1")
        .query(&mut valkey.connection())
        .unwrap();
    assert_eq!(
        run(),
        [Value::Int(-1), Value::BulkString(b"record".to_vec())],
        "revoked"
    );
}
