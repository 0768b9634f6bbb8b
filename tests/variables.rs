//! Shared variables end to end: user scope, keys, values, compare-and-set,
//! leases and their line of waiters, caching, and no lost update (nor a
//! 5xx) when many writers on two host processes race for one key.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::api::{get_variable as get, put_variable as put, variable_path as var_path};
use support::{Area, FakeBackend, Host, HostConfig, Reply, Valkey, World, call, eventually, token};

/// Valkey, the fake backend with executions `exec-1`, `exec-2` (user-1)
/// and `exec-3` (user-2), and one host.
/// This file's area of the shared [`World`] ([`Area`]).
enum VariablesArea {}
type VariablesWorld = Area<VariablesArea>;

impl VariablesWorld {
    async fn start() -> Self {
        let prepare = |backend: &FakeBackend| {
            backend.add_execution("exec-1", "user-1", None);
            backend.add_execution("exec-2", "user-1", None);
            backend.add_execution("exec-3", "user-2", None);
        };
        Self::new(World::serving(prepare, |c| c).await)
    }
}

/// The real cache key of `user`'s variable `key`, as the host builds it for
/// the variables component.
fn variable_key(user: &str, key: &str) -> String {
    use cronium_rules::keys;
    keys::in_space("variables", keys::Scope::User(user), &keys::variable(key))
}

async fn delete(host: &Host, execution: &str, raw_key: &str, extra: &[(&str, &str)]) -> Reply {
    let auth = format!("Bearer {}", token(execution));
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    call(
        "DELETE",
        &host.url(&var_path(execution, raw_key)),
        &headers,
        None,
    )
    .await
}

// ---- scope ----

#[tokio::test]
async fn executions_of_one_user_share_variables_at_once() {
    let w = VariablesWorld::start().await;
    assert_eq!(
        put(&w.host, "exec-1", "shared", &json!("from exec-1"), &[])
            .await
            .status,
        200
    );
    let reply = get(&w.host, "exec-2", "shared").await;
    assert_eq!(
        reply.json,
        json!({"success": true, "data": {"key": "shared", "value": "from exec-1"}})
    );
    assert_eq!(
        w.backend.variable("user-1", "shared"),
        Some(json!("from exec-1"))
    );
}

#[tokio::test]
async fn another_user_never_sees_them_whatever_key_they_guess() {
    let w = VariablesWorld::start().await;
    put(&w.host, "exec-1", "secret-ish", &json!(42), &[]).await;
    for key in [
        "secret-ish",
        "user-1:secret-ish",
        "..%2Fuser-1%2Fsecret-ish",
        "*",
    ] {
        let reply = get(&w.host, "exec-3", key).await;
        assert_eq!(reply.status, 200, "{key}");
        assert_eq!(reply.json["data"]["value"], Value::Null, "{key}");
    }
    put(&w.host, "exec-3", "secret-ish", &json!("user-2's own"), &[]).await;
    assert_eq!(
        get(&w.host, "exec-1", "secret-ish").await.json["data"]["value"],
        42
    );
    assert_eq!(
        w.backend.variable("user-2", "secret-ish"),
        Some(json!("user-2's own"))
    );
}

#[tokio::test]
async fn a_token_for_another_execution_cannot_touch_its_variables() {
    let w = VariablesWorld::start().await;
    let auth = format!("Bearer {}", token("exec-3"));
    let reply = call(
        "GET",
        &w.host.url(&var_path("exec-1", "k")),
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(reply.status, 403);
}

// ---- keys and values ----

#[tokio::test]
async fn slashes_as_segments_or_encoded_spaces_and_unicode_are_keys() {
    let w = VariablesWorld::start().await;
    put(&w.host, "exec-1", "a/b/c", &json!(1), &[]).await;
    let reply = get(&w.host, "exec-1", "a%2Fb%2Fc").await;
    assert_eq!(reply.json["data"], json!({"key": "a/b/c", "value": 1}));
    put(
        &w.host,
        "exec-1",
        "with%20space%20caf%C3%A9%20%E2%9C%93",
        &json!("ok"),
        &[],
    )
    .await;
    // The same key, encoded with lower-case escapes.
    let reply = get(&w.host, "exec-1", "with%20space%20caf%c3%a9%20%e2%9c%93").await;
    assert_eq!(
        reply.json["data"],
        json!({"key": "with space café ✓", "value": "ok"})
    );
    assert_eq!(
        w.backend.variable("user-1", "with space café ✓"),
        Some(json!("ok"))
    );
}

#[tokio::test]
async fn empty_oversized_and_badly_encoded_keys_are_400() {
    let w = VariablesWorld::start().await;
    let long = "k".repeat(513);
    for key in ["", long.as_str(), "%zz", "%FF%FE", "line%0Abreak"] {
        let reply = get(&w.host, "exec-1", key).await;
        assert_eq!(reply.status, 400, "{key:?}");
        reply.error_message();
    }
    // The longest key: 255 characters (the backend's column) of 510 bytes.
    assert_eq!(
        put(&w.host, "exec-1", &"é".repeat(255), &json!(1), &[])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_key_of_one_or_two_dots_is_400_and_never_reaches_the_backend() {
    let w = VariablesWorld::start().await;
    for key in ["%2E", "%2E%2E", "%2e"] {
        let reply = put(&w.host, "exec-1", key, &json!(1), &[]).await;
        assert_eq!(reply.status, 400, "PUT {key:?}: {reply:?}");
        assert_eq!(reply.error_message(), "variable key may not be `.` or `..`");
        assert_eq!(get(&w.host, "exec-1", key).await.status, 400, "GET {key:?}");
    }
    let reached = w
        .backend
        .state()
        .requests
        .iter()
        .filter(|r| r.path.starts_with("/api/internal/variables/"))
        .count();
    assert_eq!(reached, 0);
    // Dots inside a key are an ordinary key.
    assert_eq!(
        put(&w.host, "exec-1", "..%2Fx", &json!(1), &[])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn every_json_type_round_trips_exactly() {
    let w = VariablesWorld::start().await;
    let values = [
        json!("text with \"quotes\" and ünïcode"),
        json!(0),
        json!(-17),
        json!(3.25),
        json!(u64::MAX),
        json!(true),
        json!(false),
        json!({"nested": {"list": [1, {"deep": null}], "empty": {}}}),
        json!([]),
        json!([1, "two", [3]]),
    ];
    for (i, value) in values.iter().enumerate() {
        let key = format!("type-{i}");
        assert_eq!(put(&w.host, "exec-1", &key, value, &[]).await.status, 200);
        // Once from the cache (rewritten by the write), once from the backend.
        assert_eq!(
            &get(&w.host, "exec-1", &key).await.json["data"]["value"],
            value
        );
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut w.valkey.connection())
            .unwrap();
        assert_eq!(
            &get(&w.host, "exec-2", &key).await.json["data"]["value"],
            value
        );
    }
}

#[tokio::test]
async fn a_missing_variable_is_null_or_404_when_asked_for_strictness() {
    let w = VariablesWorld::start().await;
    let reply = get(&w.host, "exec-1", "nothing-here").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json,
        json!({"success": true, "data": {"key": "nothing-here", "value": null}})
    );
    assert!(reply.header("etag").is_none());
    let reply = get(&w.host, "exec-1", "nothing-here?strict=true").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_message(), "variable not found");
}

#[tokio::test]
async fn a_value_over_the_cap_is_413_and_a_body_without_value_is_400() {
    let w = VariablesWorld::start().await;
    let reply = put(
        &w.host,
        "exec-1",
        "big",
        &json!("x".repeat(1024 * 1024)),
        &[],
    )
    .await;
    assert_eq!(reply.status, 413);
    let auth = format!("Bearer {}", token("exec-1"));
    for body in [&b"{}"[..], b"not json", b""] {
        let reply = call(
            "PUT",
            &w.host.url(&var_path("exec-1", "k")),
            &[("authorization", &auth)],
            Some(body),
        )
        .await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(body));
    }
    assert!(w.backend.variable("user-1", "big").is_none());
}

#[tokio::test]
async fn other_methods_are_405() {
    let w = VariablesWorld::start().await;
    let auth = format!("Bearer {}", token("exec-1"));
    let reply = call(
        "POST",
        &w.host.url(&var_path("exec-1", "k")),
        &[("authorization", &auth)],
        Some(b"{}"),
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, PUT, DELETE"));
}

// ---- delete ----

#[tokio::test]
async fn delete_answers_204_and_writing_null_deletes_too() {
    let w = VariablesWorld::start().await;
    put(&w.host, "exec-1", "gone", &json!(1), &[]).await;
    let reply = delete(&w.host, "exec-1", "gone", &[]).await;
    assert_eq!(reply.status, 204);
    assert!(reply.body.is_empty());
    assert_eq!(
        get(&w.host, "exec-2", "gone").await.json["data"]["value"],
        Value::Null
    );
    assert!(w.backend.variable("user-1", "gone").is_none());

    put(&w.host, "exec-1", "nulled", &json!({"a": 1}), &[]).await;
    assert_eq!(
        put(&w.host, "exec-1", "nulled", &Value::Null, &[])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&w.host, "exec-2", "nulled").await.json["data"]["value"],
        Value::Null
    );
    assert_eq!(get(&w.host, "exec-2", "nulled?strict").await.status, 404);
}

#[tokio::test]
async fn a_backend_without_delete_gets_a_null_write_instead() {
    let w = VariablesWorld::start().await;
    w.backend.state().no_variable_delete = true;
    put(&w.host, "exec-1", "old", &json!(1), &[]).await;
    assert_eq!(delete(&w.host, "exec-1", "old", &[]).await.status, 204);
    assert_eq!(w.backend.variable("user-1", "old"), Some(Value::Null));
    assert_eq!(
        get(&w.host, "exec-1", "old").await.json["data"]["value"],
        Value::Null
    );
}

// ---- compare-and-set ----

#[tokio::test]
async fn if_match_succeeds_on_the_current_etag_and_412s_on_a_stale_one() {
    let w = VariablesWorld::start().await;
    let first = put(&w.host, "exec-1", "cas", &json!(1), &[]).await;
    let read = get(&w.host, "exec-1", "cas").await;
    let etag = read.header("etag").unwrap().to_owned();
    assert_eq!(first.header("etag"), Some(etag.as_str()));

    let won = put(&w.host, "exec-2", "cas", &json!(2), &[("if-match", &etag)]).await;
    assert_eq!(won.status, 200);
    let new_etag = won.header("etag").unwrap().to_owned();
    assert_ne!(new_etag, etag);

    let lost = put(&w.host, "exec-1", "cas", &json!(3), &[("if-match", &etag)]).await;
    assert_eq!(lost.status, 412);
    lost.error_message();
    assert_eq!(
        lost.header("etag"),
        Some(new_etag.as_str()),
        "412 carries the current ETag"
    );
    assert_eq!(w.backend.variable("user-1", "cas"), Some(json!(2)));
}

#[tokio::test]
async fn if_none_match_star_creates_only_once() {
    let w = VariablesWorld::start().await;
    let created = put(
        &w.host,
        "exec-1",
        "once",
        &json!("first"),
        &[("if-none-match", "*")],
    )
    .await;
    assert_eq!(created.status, 200);
    let again = put(
        &w.host,
        "exec-2",
        "once",
        &json!("second"),
        &[("if-none-match", "*")],
    )
    .await;
    assert_eq!(again.status, 412);
    assert_eq!(w.backend.variable("user-1", "once"), Some(json!("first")));
}

#[tokio::test]
async fn if_match_on_a_missing_variable_is_412_and_plain_puts_stay_last_writer_wins() {
    let w = VariablesWorld::start().await;
    let reply = put(
        &w.host,
        "exec-1",
        "absent",
        &json!(1),
        &[("if-match", "\"abc\"")],
    )
    .await;
    assert_eq!(reply.status, 412);
    assert!(w.backend.variable("user-1", "absent").is_none());
    put(&w.host, "exec-1", "lww", &json!(1), &[]).await;
    put(&w.host, "exec-2", "lww", &json!(2), &[]).await;
    assert_eq!(get(&w.host, "exec-1", "lww").await.json["data"]["value"], 2);
}

#[tokio::test]
async fn conditional_delete_honours_if_match() {
    let w = VariablesWorld::start().await;
    let etag = put(&w.host, "exec-1", "d", &json!(1), &[])
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    assert_eq!(
        delete(&w.host, "exec-1", "d", &[("if-match", "\"stale\"")])
            .await
            .status,
        412
    );
    assert_eq!(
        delete(&w.host, "exec-1", "d", &[("if-match", &etag)])
            .await
            .status,
        204
    );
    assert!(w.backend.variable("user-1", "d").is_none());
}

// ---- concurrency ----

/// Reads the counter and writes it plus one with `If-Match` (or
/// `If-None-Match: *` when it does not exist yet), until a write wins; the
/// attempts it took. Contention is no outage: any status but 200 and 412
/// fails the test.
async fn increment(host: &Host, execution: &str) -> u32 {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let read = get(host, execution, "counter").await;
        assert_eq!(read.status, 200, "{read:?}");
        let current = read.json["data"]["value"].as_u64();
        let reply = match (current, read.header("etag")) {
            (Some(n), Some(etag)) => {
                put(
                    host,
                    execution,
                    "counter",
                    &json!(n + 1),
                    &[("if-match", etag)],
                )
                .await
            }
            _ => {
                put(
                    host,
                    execution,
                    "counter",
                    &json!(1),
                    &[("if-none-match", "*")],
                )
                .await
            }
        };
        match reply.status {
            200 => return attempts,
            412 => continue,
            other => panic!("contention answered {other}: {reply:?}"),
        }
    }
}

/// Valkey, the fake backend with executions `exec-0` .. `exec-<n-1>` of
/// `user-1`, and two hosts on them.
async fn two_hosts(executions: usize) -> (Valkey, FakeBackend, Arc<[Host; 2]>) {
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    for i in 0..executions {
        backend.add_execution(&format!("exec-{i}"), "user-1", None);
    }
    let config = HostConfig::with(&valkey.url(), &backend.url()).env("LOG_LEVEL", "warn");
    let hosts = Arc::new([Host::start(config.clone()).await, Host::start(config).await]);
    (valkey, backend, hosts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_clients_on_each_of_two_hosts_racing_if_match_increments_lose_no_update_and_see_only_200_or_412()
 {
    let (_valkey, backend, hosts) = two_hosts(20).await;
    let started = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let hosts = hosts.clone();
            tokio::spawn(async move {
                let mut attempts = 0;
                for _ in 0..10 {
                    attempts += increment(&hosts[i % 2], &format!("exec-{i}")).await;
                }
                attempts
            })
        })
        .collect();
    let mut attempts = 0;
    for client in clients {
        attempts += client.await.unwrap();
    }
    assert_eq!(backend.variable("user-1", "counter"), Some(json!(200)));
    for host in hosts.iter() {
        assert_eq!(
            get(host, "exec-0", "counter").await.json["data"]["value"],
            200
        );
    }
    eprintln!(
        "200 increments in {:?} with {attempts} attempts",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_plain_writers_on_each_of_two_hosts_of_one_key_are_all_served_without_a_5xx() {
    let (_valkey, backend, hosts) = two_hosts(32).await;
    let started = Instant::now();
    let writers: Vec<_> = (0..32)
        .map(|i| {
            let hosts = hosts.clone();
            tokio::spawn(async move {
                for n in 0..10 {
                    let value = json!({"writer": i, "n": n});
                    let reply = put(&hosts[i % 2], &format!("exec-{i}"), "hot", &value, &[]).await;
                    assert_eq!(reply.status, 200, "{reply:?}");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    // Last writer wins, and both hosts read what the backend holds.
    let last = backend.variable("user-1", "hot").unwrap();
    assert_eq!(last["n"], 9);
    for host in hosts.iter() {
        assert_eq!(get(host, "exec-0", "hot").await.json["data"]["value"], last);
    }
    eprintln!("320 contended writes in {:?}", started.elapsed());
}

#[tokio::test]
async fn a_write_on_one_host_is_read_at_once_on_another() {
    let w = VariablesWorld::start().await;
    let other = Host::start(HostConfig::with(&w.valkey.url(), &w.backend.url())).await;
    for n in 0..10 {
        // Both hosts have the variable cached before each write.
        get(&w.host, "exec-1", "fresh").await;
        get(&other, "exec-2", "fresh").await;
        assert_eq!(
            put(&w.host, "exec-1", "fresh", &json!(n), &[]).await.status,
            200
        );
        assert_eq!(
            get(&other, "exec-2", "fresh").await.json["data"]["value"],
            n
        );
    }
}

// ---- leases and failures ----

#[tokio::test]
async fn a_dead_holders_lease_blocks_the_key_no_longer_than_its_ttl() {
    let w = VariablesWorld::start().await;
    put(&w.host, "exec-1", "leased", &json!(0), &[]).await;
    let lease_key = format!("cronium:lease:{}", variable_key("user-1", "leased"));
    // A holder that took the lease for 1.5 s and died.
    let _: () = redis::cmd("SET")
        .arg(&lease_key)
        .arg("dead-owner")
        .arg("PX")
        .arg(1500)
        .query(&mut w.valkey.connection())
        .unwrap();
    let started = Instant::now();
    let reply = put(&w.host, "exec-1", "leased", &json!(1), &[]).await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        waited >= Duration::from_millis(1300),
        "waited for the stale lease: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(4000),
        "not much longer than its TTL: {waited:?}"
    );
    assert_eq!(w.backend.variable("user-1", "leased"), Some(json!(1)));
}

#[tokio::test]
async fn a_conditional_write_that_finds_the_lease_held_is_412_with_the_etag_its_holder_wrote() {
    let w = VariablesWorld::start().await;
    let etag = put(&w.host, "exec-1", "busy", &json!(1), &[])
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let cache_key = variable_key("user-1", "busy");
    let lease_key = cronium_rules::keys::lease(&cache_key);
    let take_lease = |valkey: &mut redis::Connection| {
        let _: () = redis::cmd("SET")
            .arg(&lease_key)
            .arg("another-writer")
            .arg("PX")
            .arg(30_000)
            .query(valkey)
            .unwrap();
    };
    let mut valkey = w.valkey.connection();

    // Another write holds the lease and stores 7 while the PUT waits.
    take_lease(&mut valkey);
    let started = Instant::now();
    let (value, if_match) = (json!(2), [("if-match", etag.as_str())]);
    let racing = put(&w.host, "exec-1", "busy", &value, &if_match);
    let holder = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        w.backend
            .state()
            .variables
            .insert(("user-1".into(), "busy".into()), json!(7));
        let mut valkey = w.valkey.connection();
        let _: () = redis::cmd("SET")
            .arg(&cache_key)
            .arg(json!({"value": "7"}).to_string())
            .query(&mut valkey)
            .unwrap();
        let _: () = redis::cmd("DEL")
            .arg(&lease_key)
            .query(&mut valkey)
            .unwrap();
    };
    let (reply, ()) = tokio::join!(racing, holder);
    let waited = started.elapsed();
    assert_eq!(reply.status, 412, "{reply:?}");
    let written = cronium_rules::variables::etag("7");
    assert_eq!(reply.header("etag"), Some(written.as_str()));
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(900),
        "answered once the holder was done: {waited:?}"
    );

    // A holder that does not finish holds the answer up for a second at most.
    take_lease(&mut valkey);
    let started = Instant::now();
    let reply = put(
        &w.host,
        "exec-1",
        "busy",
        &json!(8),
        &[("if-match", &written)],
    )
    .await;
    assert_eq!(reply.status, 412, "{reply:?}");
    assert_eq!(reply.header("etag"), Some(written.as_str()));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(w.backend.variable("user-1", "busy"), Some(json!(7)));
}

#[tokio::test]
async fn a_writer_that_died_waiting_in_line_holds_it_up_no_longer_than_its_place_lasts() {
    let w = VariablesWorld::start().await;
    let etag = put(&w.host, "exec-1", "queued", &json!(0), &[])
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let guarded = variable_key("user-1", "queued");
    // A writer joined the line first (tickets start at 1) and died; its
    // place lasts one more second.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut valkey = w.valkey.connection();
    let _: () = redis::cmd("ZADD")
        .arg(cronium_rules::keys::lease_line(&guarded))
        .arg(0)
        .arg("dead-waiter")
        .query(&mut valkey)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(cronium_rules::keys::lease_waiters(&guarded))
        .arg("dead-waiter")
        .arg(now_ms + 1000)
        .query(&mut valkey)
        .unwrap();

    let conditional = put(
        &w.host,
        "exec-1",
        "queued",
        &json!(1),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(
        conditional.status, 412,
        "a conditional write does not jump the line: {conditional:?}"
    );
    let started = Instant::now();
    let plain = put(&w.host, "exec-1", "queued", &json!(2), &[]).await;
    let waited = started.elapsed();
    assert_eq!(plain.status, 200, "{plain:?}");
    assert!(
        waited >= Duration::from_millis(700),
        "waited for the dead waiter's place: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "not much longer than its place lasted: {waited:?}"
    );
    assert_eq!(w.backend.variable("user-1", "queued"), Some(json!(2)));
}

#[tokio::test]
async fn with_valkey_stopped_reads_and_plain_writes_reach_the_backend_and_conditional_writes_503() {
    let mut w = VariablesWorld::start().await;
    put(&w.host, "exec-1", "k", &json!("before"), &[]).await;
    let etag = get(&w.host, "exec-1", "k")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    w.valkey.kill();

    let reply = put(&w.host, "exec-1", "k", &json!("during"), &[]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(w.backend.variable("user-1", "k"), Some(json!("during")));
    assert_eq!(
        get(&w.host, "exec-2", "k").await.json["data"]["value"],
        "during"
    );

    let reply = put(
        &w.host,
        "exec-1",
        "k",
        &json!("cas"),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(reply.status, 503);
    assert!(reply.header("retry-after").is_some());
    assert_eq!(w.backend.variable("user-1", "k"), Some(json!("during")));

    w.valkey.restart();
    let fresh = get(&w.host, "exec-1", "k").await;
    assert_eq!(fresh.json["data"]["value"], "during");
}

// ---- audit ----

#[tokio::test]
async fn variable_reads_that_reach_the_backend_and_every_write_are_audited_without_values() {
    let w = VariablesWorld::start().await;
    put(
        &w.host,
        "exec-1",
        "audited",
        &json!("the value itself"),
        &[],
    )
    .await;
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut w.valkey.connection())
        .unwrap();
    get(&w.host, "exec-1", "audited").await;
    get(&w.host, "exec-1", "audited").await;
    delete(&w.host, "exec-1", "audited", &[]).await;
    assert!(
        eventually(Duration::from_secs(5), || {
            w.backend.audit_events("delete_variable").len() == 1
                && w.backend.audit_events("get_variable").len() == 1
        })
        .await
    );
    let set = &w.backend.audit_events("set_variable")[0];
    assert_eq!(set["metadata"]["key"], "audited");
    assert_eq!(set["metadata"]["userId"], "user-1");
    assert_eq!(set["metadata"]["outcome"], "ok");
    let all = w
        .backend
        .state()
        .audit
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    assert!(!all.contains("the value itself"));
}

// ---- embedded defaults ----

#[tokio::test]
async fn the_embedded_store_supports_variables_and_keeps_them_across_a_restart() {
    let mut host = Host::start(HostConfig::default()).await;
    for (id, user) in [("e1", "u1"), ("e2", "u1"), ("e3", "u2")] {
        let out = host.command(&[
            "execution",
            "create",
            "--id",
            id,
            "--user",
            user,
            "--job",
            "j",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let etag = put(&host, "e1", "a%2Fb", &json!({"n": 1}), &[])
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    assert_eq!(
        put(&host, "e2", "a/b", &json!({"n": 2}), &[("if-match", &etag)])
            .await
            .status,
        200
    );
    assert_eq!(
        put(&host, "e2", "a/b", &json!({"n": 3}), &[("if-match", &etag)])
            .await
            .status,
        412
    );
    assert_eq!(
        get(&host, "e3", "a/b").await.json["data"]["value"],
        Value::Null
    );

    host.restart().await;
    assert_eq!(
        get(&host, "e1", "a/b").await.json["data"]["value"],
        json!({"n": 2})
    );
    assert_eq!(delete(&host, "e1", "a/b", &[]).await.status, 204);
    assert_eq!(get(&host, "e2", "a/b?strict").await.status, 404);
}

/// PUTs `value` under `key` as exec-1 and hangs up as soon as the backend
/// has received the write (and is still taking it: set a write delay).
async fn hang_up_once_the_backend_has_the_write(w: &World, key: &str, value: &Value) {
    tokio::select! {
        reply = put(&w.host, "exec-1", key, value, &[]) => {
            panic!("answered while the backend was meant to be busy: {reply:?}")
        }
        received = eventually(Duration::from_secs(10), || w.backend.state().writes_received > 0) => {
            assert!(received, "the write never reached the backend");
        }
    }
}

#[tokio::test]
async fn a_write_whose_client_hangs_up_still_lands_and_frees_its_key() {
    let w = VariablesWorld::start().await;
    w.backend.state().write_delay = Some(Duration::from_millis(600));
    hang_up_once_the_backend_has_the_write(&w, "k", &json!(1)).await;
    assert!(
        eventually(Duration::from_secs(5), || w.backend.variable("user-1", "k")
            == Some(json!(1)))
        .await,
        "the write was abandoned with its client"
    );
    // Its lease was released: the next write to the key does not wait one out.
    w.backend.state().write_delay = None;
    let reply = put(&w.host, "exec-1", "k", &json!(2), &[]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(w.backend.variable("user-1", "k"), Some(json!(2)));
}

// `Host::stop` blocks while it waits for the exit; the fake backend
// answers from the runtime's worker threads meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_client_hung_up_still_lands_when_the_host_is_stopped() {
    let mut w = VariablesWorld::start().await;
    // Longer than the 5 s the host gives its audit queue at shutdown (which
    // used to keep such a write alive, by accident), within the 10 s drain.
    w.backend.state().write_delay = Some(Duration::from_secs(6));
    hang_up_once_the_backend_has_the_write(&w, "k", &json!(1)).await;
    // SIGTERM while the backend still has the write: no connection is
    // open any more, but the host waits for the write before it exits.
    let exit = w.host.stop().expect("the host exits");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        w.backend.variable("user-1", "k"),
        Some(json!(1)),
        "the write was dropped at shutdown"
    );
}
