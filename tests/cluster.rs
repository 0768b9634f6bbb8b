//! Hosts on a Valkey Cluster: a real three-primary, three-replica cluster
//! on loopback, and two or three hosts on it, one given a single node, the
//! others a list of seeds. What one host writes the others read at once;
//! compare-and-set increments, conditional writes (their leases in the
//! value's slot), the rate limit and revocations hold across
//! hosts; a manual failover under a write load loses no acknowledged write
//! and answers no 500.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::api::{
    bearer, get_variable as get, input_status, put_variable as put, until_refused, watch_is,
};
use support::{FakeBackend, Host, HostConfig, ValkeyCluster, call};

/// The cluster, the fake backend with executions `exec-0` .. `exec-<n-1>`
/// of `user-1`, and `hosts` hosts: the first given node 0 alone (it must
/// find the rest), the others two seeds each.
async fn hosts_on_a_cluster(
    executions: usize,
    hosts: usize,
    env: &[(&str, &str)],
) -> (ValkeyCluster, FakeBackend, Arc<Vec<Host>>) {
    let cluster = ValkeyCluster::start();
    let backend = FakeBackend::start().await;
    for i in 0..executions {
        backend.add_execution(&format!("exec-{i}"), "user-1", Some(json!({"n": i})));
    }
    let mut started = Vec::new();
    for h in 0..hosts {
        let seeds = if h == 0 {
            cluster.url(0)
        } else {
            format!("{},{}", cluster.url(h % 6), cluster.url((h + 3) % 6))
        };
        let config = env.iter().fold(
            HostConfig::with(&seeds, &backend.url()),
            |config, (name, value)| config.env(name, *value),
        );
        started.push(Host::start(config).await);
    }
    (cluster, backend, Arc::new(started))
}

/// Writer `w`'s `n`th write: value `n` to one of its five keys. True when
/// acknowledged (200, noted in `acknowledged`), false when refused with a
/// 503 that says when to come back; anything else fails the test.
async fn write_next(
    host: &Host,
    execution: &str,
    w: usize,
    n: u64,
    acknowledged: &mut BTreeMap<String, u64>,
) -> bool {
    let key = format!("w{w}-k{}", n % 5);
    let reply = put(host, execution, &key, &json!(n), &[]).await;
    match reply.status {
        200 => {
            acknowledged.insert(key, n);
            true
        }
        503 => {
            assert!(reply.header("retry-after").is_some(), "{reply:?}");
            false
        }
        other => panic!("a write while the cluster changed answered {other}: {reply:?}"),
    }
}

/// Waits (15 s at most) until every host's revocation watch is live on
/// every primary.
async fn wait_for_watches(hosts: &[Host]) {
    let started = Instant::now();
    for host in hosts {
        while !watch_is(host, true).await {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the revocation watch never went live on the cluster:\n{}",
                host.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Writes `execution`'s job's revocation key through the cluster, and
/// waits until every host refuses the job, failing the test if any still
/// serves it 1.5 s after the write; how long that took.
async fn revoke_and_wait_until_refused(
    cluster: &ValkeyCluster,
    hosts: &[Host],
    execution: &str,
) -> Duration {
    let _: () = redis::cmd("SET")
        .arg(format!("cronium:exec-revoked:job-{execution}"))
        .arg("1")
        .query(&mut cluster.client())
        .unwrap();
    let written = Instant::now();
    let within = Duration::from_millis(1500);
    for host in hosts {
        until_refused(host, execution, within.saturating_sub(written.elapsed())).await;
    }
    written.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_given_one_node_finds_the_cluster_and_every_host_reads_a_write_at_once() {
    let (_cluster, _backend, hosts) = hosts_on_a_cluster(1, 3, &[]).await;

    let written = put(&hosts[0], "exec-0", "greeting", &json!({"hi": 1}), &[]).await;
    assert_eq!(written.status, 200, "{written:?}");
    for host in hosts.iter() {
        let read = get(host, "exec-0", "greeting").await;
        assert_eq!(read.json["data"]["value"], json!({"hi": 1}), "{read:?}");
    }
    let rewritten = put(&hosts[2], "exec-0", "greeting", &json!({"hi": 2}), &[]).await;
    assert_eq!(rewritten.status, 200, "{rewritten:?}");
    for host in hosts.iter() {
        let read = get(host, "exec-0", "greeting").await;
        assert_eq!(read.json["data"]["value"], json!({"hi": 2}), "{read:?}");
    }
    assert!(
        hosts[0].log().contains("cache on a Valkey Cluster"),
        "{}",
        hosts[0].log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_variable_only_the_backend_has_is_read_through_every_host_then_from_the_cache() {
    let (_cluster, backend, hosts) = hosts_on_a_cluster(1, 2, &[]).await;
    backend.state().variables.insert(
        ("user-1".to_owned(), "seeded".to_owned()),
        json!({"threshold": 0.75}),
    );
    // Its first reads come all at once, from both hosts: one fills the
    // cache, the others wait for it or read the backend themselves.
    let burst: Vec<_> = (0..32)
        .map(|i| {
            let hosts = hosts.clone();
            tokio::spawn(async move { get(&hosts[i % 2], "exec-0", "seeded").await })
        })
        .collect();
    for read in burst {
        let read = read.await.unwrap();
        assert_eq!(read.status, 200, "{read:?}");
    }
    for _ in 0..3 {
        for host in hosts.iter() {
            let read = get(host, "exec-0", "seeded").await;
            assert_eq!(read.status, 200, "{read:?}\n{}", host.log());
            assert_eq!(read.json["data"]["value"], json!({"threshold": 0.75}));
        }
    }
    assert!(
        backend.count("GET", "/api/internal/variables/user-1/seeded") <= 32,
        "read from the cache once filled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_written_to_the_cluster_reaches_every_host_and_the_rate_limit_is_shared() {
    let (cluster, _backend, hosts) =
        hosts_on_a_cluster(2, 2, &[("RATE_LIMIT_PER_MIN", "60")]).await;
    wait_for_watches(&hosts).await;

    // The limit: 60 a minute for exec-1, shared by both hosts.
    let mut passed = 0;
    for i in 0..120 {
        let reply = call(
            "GET",
            &hosts[i % 2].url("/executions/exec-1/input"),
            &[("authorization", &bearer("exec-1"))],
            None,
        )
        .await;
        match reply.status {
            200 => passed += 1,
            429 => assert!(reply.header("retry-after").is_some()),
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    assert!(
        (60..=63).contains(&passed),
        "{passed} of 120 passed a limit of 60"
    );

    // The revocation: written once, to whichever primary holds its slot.
    for host in hosts.iter() {
        assert_eq!(input_status(host, "exec-0").await, 200);
    }
    let took = revoke_and_wait_until_refused(&cluster, &hosts, "exec-0").await;
    eprintln!("revocation seen by both hosts after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manual_failover_during_writes_loses_no_acknowledged_write_and_answers_no_500() {
    let (cluster, backend, hosts) = hosts_on_a_cluster(8, 2, &[]).await;
    wait_for_watches(&hosts).await;

    // Eight writers, each its own keys, each value one more than the last;
    // every answer must be a 200, or a 503 that says when to come back.
    let stop = Instant::now() + Duration::from_secs(4);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let hosts = hosts.clone();
            tokio::spawn(async move {
                let execution = format!("exec-{w}");
                let mut acknowledged: BTreeMap<String, u64> = BTreeMap::new();
                let mut refused = 0;
                let mut n = 0u64;
                while Instant::now() < stop {
                    n += 1;
                    if !write_next(&hosts[w % 2], &execution, w, n, &mut acknowledged).await {
                        refused += 1;
                    }
                }
                (execution, acknowledged, refused)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let replica = cluster.replica_of(0);
    let started = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.failover(replica);
        cluster
    })
    .await
    .unwrap();
    eprintln!("node {replica} promoted in {:?}", started.elapsed());

    let mut refused_total = 0;
    let mut checked = 0;
    for writer in writers {
        let (execution, acknowledged, refused) = writer.await.unwrap();
        refused_total += refused;
        for (key, n) in acknowledged {
            // The backend holds the last acknowledged value (or a later
            // one, from a write whose answer was a 503), and both hosts
            // read what the backend holds.
            let held = backend.variable("user-1", &key).unwrap();
            assert!(
                held.as_u64().unwrap() >= n,
                "{key}: acknowledged {n}, held {held}"
            );
            for host in hosts.iter() {
                let read = get(host, &execution, &key).await;
                assert_eq!(read.json["data"]["value"], held, "{key} on {}", host.base());
            }
            checked += 1;
        }
    }
    eprintln!(
        "{checked} keys checked, {refused_total} writes refused with 503 during the failover"
    );

    // A revocation written to the promoted primary still reaches both hosts.
    let execution = (0..8)
        .map(|i| format!("exec-{i}"))
        .find(|e| cluster.primary_of(&format!("cronium:exec-revoked:job-{e}")) == replica)
        .expect("some execution's revocation key lives on the promoted primary");
    revoke_and_wait_until_refused(&cluster, &hosts, &execution).await;
    // Each host noticed that a watched node stopped being a primary, and
    // watches the new primaries now.
    wait_for_watches(&hosts).await;
    for host in hosts.iter() {
        let log = host.log();
        let lives = log.matches("revocation watch live").count();
        assert!(
            // Whichever noticed first: the node's `ROLE` heartbeat or the
            // cluster's list of primaries.
            (log.contains("no longer a primary") || log.contains("primaries changed"))
                && lives >= 2,
            "the watch did not follow the failover:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_killed_under_writes_is_replaced_and_no_write_answers_a_500() {
    let (mut cluster, backend, hosts) = hosts_on_a_cluster(4, 2, &[]).await;
    wait_for_watches(&hosts).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (hosts, stop) = (hosts.clone(), stop.clone());
            tokio::spawn(async move {
                let execution = format!("exec-{w}");
                let (mut written, mut refused, mut n) = (0, 0, 0u64);
                let mut last_acknowledged = BTreeMap::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    if write_next(&hosts[w % 2], &execution, w, n, &mut last_acknowledged).await {
                        written += 1;
                    } else {
                        refused += 1;
                    }
                }
                (written, refused, last_acknowledged)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.kill_and_wait_for_promotion(0);
        cluster
    })
    .await
    .unwrap();
    let promoted = started.elapsed();
    // The hosts serve writes again on their own, within seconds.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut written, mut refused) = (0, 0);
    for writer in writers {
        let (w, r, acknowledged) = writer.await.unwrap();
        written += w;
        refused += r;
        for (key, n) in acknowledged {
            let held = backend.variable("user-1", &key).unwrap();
            assert!(
                held.as_u64().unwrap() >= n,
                "{key}: acknowledged {n}, held {held}"
            );
        }
    }
    let after = put(&hosts[0], "exec-0", "after", &json!(1), &[]).await;
    assert_eq!(after.status, 200, "{after:?}");
    wait_for_watches(&hosts).await;
    drop(cluster);
    eprintln!(
        "replica promoted {promoted:?} after the kill; {written} writes served, {refused} refused with 503"
    );
}

/// A variable's cache key carries a hash tag that its lease, fence, line,
/// waiters and tickets keys share (`keys::in_space`), so the lease scripts
/// run on a cluster, and conditional writes, which need the lease, work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_writes_take_their_lease_on_a_cluster_from_any_host() {
    let (_cluster, _backend, hosts) = hosts_on_a_cluster(1, 2, &[]).await;

    let created = put(
        &hosts[0],
        "exec-0",
        "once",
        &json!(1),
        &[("if-none-match", "*")],
    )
    .await;
    assert_eq!(created.status, 200, "{created:?}");
    let etag = created.header("etag").unwrap().to_owned();
    let again = put(
        &hosts[1],
        "exec-0",
        "once",
        &json!(2),
        &[("if-none-match", "*")],
    )
    .await;
    assert_eq!(again.status, 412, "{again:?}");
    let updated = put(
        &hosts[1],
        "exec-0",
        "once",
        &json!(3),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(updated.status, 200, "{updated:?}");
    let stale = put(
        &hosts[0],
        "exec-0",
        "once",
        &json!(4),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(stale.status, 412, "{stale:?}");
    for host in hosts.iter() {
        assert_eq!(
            get(host, "exec-0", "once").await.json["data"]["value"],
            json!(3)
        );
    }
}
