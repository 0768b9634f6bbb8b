//! The warm path: a request whose execution this host has seen makes no
//! round trip to Valkey. Revocations are pushed to every host (and checked
//! per request again while the push channel is cut); the rate limit is
//! spent from local shares and still holds across hosts.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::api::{input_status as get_input, until_refused, watch_is};
use support::{FakeBackend, Host, HostConfig, Valkey, call, token};

/// Calls of each command Valkey served so far (`INFO commandstats`; the
/// commands a script runs count apart from the script).
fn command_calls(valkey: &Valkey) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut valkey.connection())
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split("calls=").nth(1)?.split(',').next()?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Commands Valkey served, minus the watch's own housekeeping (heartbeat,
/// tracking setup, its initial scan) and the test's `INFO` calls.
fn commands_served(valkey: &Valkey) -> u64 {
    command_calls(valkey)
        .into_iter()
        .filter(|(name, _)| {
            !["ping", "info", "hello", "scan"].contains(&name.as_str())
                && !["client|", "acl|", "config|"]
                    .iter()
                    .any(|group| name.starts_with(group))
        })
        .map(|(_, calls)| calls)
        .sum()
}

/// Scripts Valkey ran (each one round trip).
fn scripts_run(valkey: &Valkey) -> u64 {
    command_calls(valkey)
        .into_iter()
        .filter(|(name, _)| name == "evalsha" || name == "eval")
        .map(|(_, calls)| calls)
        .sum()
}

/// Waits (10 s at most) until `host` says revocations are pushed to it
/// (`live`) or that they are not; how long that took.
async fn wait_for_watch_state(host: &Host, live: bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if watch_is(host, live).await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the revocation watch never said live={live}:\n{}",
        host.log()
    );
}

async fn wait_for_watch(host: &Host) {
    wait_for_watch_state(host, true).await;
}

async fn two_hosts(valkey: &Valkey, backend: &FakeBackend, env: &[(&str, &str)]) -> [Host; 2] {
    let config = env.iter().fold(
        HostConfig::with(&valkey.url(), &backend.url()),
        |config, (name, value)| config.env(name, *value),
    );
    [Host::start(config.clone()).await, Host::start(config).await]
}

#[tokio::test]
async fn a_warm_read_makes_no_round_trip_and_a_revocation_reaches_every_host_within_a_second() {
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"rows": 3})));
    // The rate limit off: this test counts the revocation checks alone.
    let hosts = two_hosts(&valkey, &backend, &[("RATE_LIMIT_PER_MIN", "0")]).await;
    for host in &hosts {
        wait_for_watch(host).await;
        assert_eq!(get_input(host, "exec-1").await, 200, "warming up");
    }
    let before = commands_served(&valkey);
    for _ in 0..50 {
        for host in &hosts {
            assert_eq!(get_input(host, "exec-1").await, 200);
        }
    }
    assert_eq!(
        commands_served(&valkey) - before,
        0,
        "100 warm reads asked Valkey nothing"
    );

    let _: () = redis::cmd("SET")
        .arg("cronium:exec-revoked:job-exec-1")
        .arg("1")
        .query(&mut valkey.connection())
        .unwrap();
    for host in &hosts {
        let took = until_refused(host, "exec-1", Duration::from_secs(1)).await;
        eprintln!("revocation seen after {took:?}");
    }
}

#[tokio::test]
async fn a_revocation_is_checked_per_request_while_the_push_channel_is_cut() {
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"rows": 3})));
    let host =
        Host::start(HostConfig::with(&valkey.url(), &backend.url()).env("RATE_LIMIT_PER_MIN", "0"))
            .await;
    wait_for_watch(&host).await;
    assert_eq!(get_input(&host, "exec-1").await, 200);

    // Cut the channel and keep it cut: tracking is refused from now on,
    // and the watch's connection is closed.
    let mut admin = valkey.connection();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-client|tracking")
        .query(&mut admin)
        .unwrap();
    let _: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("SKIPME")
        .arg("yes")
        .arg("TYPE")
        .arg("normal")
        .query(&mut admin)
        .unwrap();
    let noticed = wait_for_watch_state(&host, false).await;
    assert!(
        noticed < Duration::from_millis(1500),
        "the cut was noticed after {noticed:?}: a revocation could go unseen that long"
    );
    // The first request may find the cache's own connection cut too.
    assert_eq!(get_input(&host, "exec-1").await, 200);
    let before = commands_served(&valkey);
    assert_eq!(get_input(&host, "exec-1").await, 200);
    assert!(
        commands_served(&valkey) > before,
        "without the watch, a request asks Valkey"
    );
    let _: () = redis::cmd("SET")
        .arg("cronium:exec-revoked:job-exec-1")
        .arg("1")
        .query(&mut admin)
        .unwrap();
    assert_eq!(
        get_input(&host, "exec-1").await,
        403,
        "refused at once, with no push to learn it from"
    );

    // The channel back: the watch reconnects, loads the list, and the
    // revocation holds without a query.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("+client|tracking")
        .query(&mut admin)
        .unwrap();
    wait_for_watch(&host).await;
    let before = commands_served(&valkey);
    assert_eq!(get_input(&host, "exec-1").await, 403);
    assert_eq!(commands_served(&valkey) - before, 0);
}

/// Sends `total` requests of `exec-1`, alternating between `hosts`, eight
/// at a time; how many passed.
async fn flood(hosts: &[Host], total: usize) -> usize {
    let auth = format!("Bearer {}", token("exec-1"));
    let urls: Vec<String> = hosts
        .iter()
        .map(|h| h.url("/executions/exec-1/input"))
        .collect();
    let mut passed = 0;
    for chunk in (0..total).collect::<Vec<_>>().chunks(8) {
        let mut calls = tokio::task::JoinSet::new();
        for i in chunk {
            let url = urls[i % urls.len()].clone();
            let auth = auth.clone();
            calls.spawn(async move { call("GET", &url, &[("authorization", &auth)], None).await });
        }
        for reply in calls.join_all().await {
            match reply.status {
                200 => passed += 1,
                429 => assert!(reply.header("retry-after").is_some()),
                other => panic!("unexpected {other}: {reply:?}"),
            }
        }
    }
    passed
}

#[tokio::test]
async fn a_low_limit_shared_by_two_hosts_cuts_off_at_the_limit() {
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"rows": 3})));
    let hosts = two_hosts(&valkey, &backend, &[("RATE_LIMIT_PER_MIN", "60")]).await;
    for host in &hosts {
        wait_for_watch(host).await;
    }
    let started = Instant::now();
    let passed = flood(&hosts, 120).await;
    // One request's budget comes back every second; shares are 1 here.
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!(
        (60..=60 + refilled).contains(&passed),
        "{passed} passed of a limit of 60 in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_high_limit_shared_by_two_hosts_holds_within_one_share_per_host() {
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"rows": 3})));
    let hosts = two_hosts(&valkey, &backend, &[("RATE_LIMIT_PER_MIN", "1000")]).await;
    for host in &hosts {
        wait_for_watch(host).await;
    }
    let before = scripts_run(&valkey);
    let started = Instant::now();
    let passed = flood(&hosts, 1300).await;
    let elapsed = started.elapsed();
    let asked = scripts_run(&valkey) - before;
    // Shares are 1000 / 50 = 20 requests; the budget refills at 1000 a
    // minute while the flood runs.
    let share = 20;
    let refilled = (elapsed.as_secs_f64() * 1000.0 / 60.0).ceil() as usize;
    assert!(
        passed + 2 * share >= 1000 && passed <= 1000 + 2 * share + refilled,
        "{passed} passed of a limit of 1000 in {elapsed:?}"
    );
    assert!(
        asked < 1300 / 10,
        "{asked} scripts run for 1300 requests: shares should cut them"
    );
    eprintln!("{passed} passed, {asked} scripts run for 1300 requests in {elapsed:?}");
}

#[tokio::test]
async fn with_fail_closed_a_host_fed_by_pushed_revocations_keeps_its_grace_minute_when_valkey_stops()
 {
    let mut valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"rows": 3})));
    let config = HostConfig::with(&valkey.url(), &backend.url())
        .env("REVOCATION_FAIL_CLOSED", "true")
        .env("RATE_LIMIT_PER_MIN", "0");
    let host = Host::start(config).await;
    wait_for_watch(&host).await;
    // Served from the pushed list: no query, yet a check all the same.
    assert_eq!(get_input(&host, "exec-1").await, 200);
    valkey.kill();
    wait_for_watch_state(&host, false).await;
    // The last check was a moment ago: within the grace minute, served.
    assert_eq!(get_input(&host, "exec-1").await, 200, "{}", host.log());
}
