//! A real Valkey Cluster on loopback: three primaries, each with one
//! replica, the slots split evenly, formed with the cluster commands
//! themselves (no `valkey-cli` needed). Everything stops when dropped.

use std::time::{Duration, Instant};

use super::valkey::Valkey;

/// The cluster's nodes; the first three start as primaries.
pub struct ValkeyCluster {
    nodes: Vec<Valkey>,
    _dir: tempfile::TempDir,
}

const PRIMARIES: usize = 3;
const SLOTS: u16 = 16384;
/// The node timeout once the cluster is formed.
const FAILOVER_TIMEOUT_MS: u32 = 1000;

impl ValkeyCluster {
    /// Starts six nodes and forms the cluster; returns once every node
    /// says `cluster_state:ok` and every replica has synchronised.
    pub fn start() -> ValkeyCluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Valkey> = (0..PRIMARIES * 2)
            .map(|_| {
                let port = super::free_port();
                let bus = super::free_port();
                let conf = dir.path().join(format!("nodes-{port}.conf"));
                Valkey::start_with(
                    port,
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        conf.to_str().unwrap(),
                        // A replica's first sync writes an RDB file: into
                        // the cluster's own directory, not the tests' cwd.
                        "--dir",
                        dir.path().to_str().unwrap(),
                        "--repl-diskless-sync",
                        "yes",
                        "--cluster-port",
                        &bus.to_string(),
                        // Long while the cluster forms: a handshake not
                        // finished within the timeout is dropped for good,
                        // which a loaded machine can make happen.
                        "--cluster-node-timeout",
                        "5000",
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                )
            })
            .collect();
        let cluster = ValkeyCluster { nodes, _dir: dir };
        cluster.form();
        // Then short, so a failed primary is replaced quickly.
        for node in &cluster.nodes {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("cluster-node-timeout")
                .arg(FAILOVER_TIMEOUT_MS)
                .query(&mut node.connection())
                .unwrap();
        }
        cluster
    }

    fn form(&self) {
        let per = SLOTS / PRIMARIES as u16;
        for (i, node) in self.nodes[..PRIMARIES].iter().enumerate() {
            let first = per * i as u16;
            let last = if i == PRIMARIES - 1 {
                SLOTS - 1
            } else {
                first + per - 1
            };
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query(&mut node.connection())
                .unwrap();
        }
        // A handshake that does not finish within the node timeout is
        // dropped for good (a loaded machine makes that happen): meet
        // again, from the first node, whoever it does not know yet.
        let mut first = self.nodes[0].connection();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for node in &self.nodes[1..] {
                let known = nodes_text(&mut first)
                    .lines()
                    .any(|line| line.contains(&format!(":{}@", node.port())));
                if !known {
                    let _: () = redis::cmd("CLUSTER")
                        .arg("MEET")
                        .arg("127.0.0.1")
                        .arg(node.port())
                        .arg(bus_port(node))
                        .query(&mut first)
                        .unwrap();
                }
            }
            let formed = self.nodes.iter().all(|n| {
                let text = nodes_text(&mut n.connection());
                text.lines().count() == PRIMARIES * 2 && !text.contains("handshake")
            });
            if formed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cluster: never reached: every node knows the others"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        for (replica, primary) in self.nodes[PRIMARIES..].iter().zip(&self.nodes[..PRIMARIES]) {
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut primary.connection())
                .unwrap();
            // The replica must know the primary first; it may take a beat.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let done: redis::RedisResult<()> = redis::cmd("CLUSTER")
                    .arg("REPLICATE")
                    .arg(&id)
                    .query(&mut replica.connection());
                match done {
                    Ok(()) => break,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!("CLUSTER REPLICATE: {e}"),
                }
            }
        }
        self.wait_until("the cluster is up with its replicas in sync", |c| {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(c).unwrap();
            let replication: String = redis::cmd("INFO").arg("replication").query(c).unwrap();
            info.contains("cluster_state:ok")
                && (replication.contains("role:master")
                    || replication.contains("master_link_status:up"))
                && nodes_text(c).matches("slave").count() == PRIMARIES
        });
    }

    /// Waits (30 s at most) until `ready` holds on every node.
    fn wait_until(&self, what: &str, ready: impl Fn(&mut redis::Connection) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.nodes.iter().all(|n| ready(&mut n.connection())) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cluster: never reached: {what}");
    }

    /// The `redis://` URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// A cluster client for the test's own commands.
    pub fn client(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.nodes.iter().map(|n| n.url()).collect::<Vec<_>>())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Which node serves `key`'s slot now (its index): the one node that
    /// answers a read of it, where the others redirect (`MOVED`).
    pub fn primary_of(&self, key: &str) -> usize {
        (0..self.nodes.len())
            .find(|&i| {
                let Ok(mut node) =
                    redis::Client::open(self.url(i)).and_then(|c| c.get_connection())
                else {
                    return false; // a killed node
                };
                redis::cmd("EXISTS")
                    .arg(key)
                    .query::<i64>(&mut node)
                    .is_ok()
            })
            .unwrap_or_else(|| panic!("no node serves {key}"))
    }

    /// The index of the replica of node `primary`.
    pub fn replica_of(&self, primary: usize) -> usize {
        let wanted = format!("master_port:{}", self.nodes[primary].port());
        (0..self.nodes.len())
            .find(|&i| {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut self.nodes[i].connection())
                    .unwrap();
                info.contains(&wanted)
            })
            .expect("the primary has a replica")
    }

    /// Kills node `i` (SIGKILL) and returns once its replica has been
    /// promoted by the cluster itself and the cluster is whole again.
    pub fn kill_and_wait_for_promotion(&mut self, i: usize) {
        let replica = self.replica_of(i);
        self.nodes[i].kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let mut replica_connection = self.nodes[replica].connection();
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut replica_connection)
                .unwrap();
            let state: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut replica_connection)
                .unwrap();
            if info.contains("role:master") && state.contains("cluster_state:ok") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node {replica} was not promoted after node {i} died");
    }

    /// Promotes replica `i` with a manual `CLUSTER FAILOVER` (its primary
    /// hands over once the replica has caught up); returns when node `i`
    /// is a primary.
    pub fn failover(&self, i: usize) {
        let _: () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut self.nodes[i].connection())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut self.nodes[i].connection())
                .unwrap();
            if info.contains("role:master") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("node {i} was not promoted");
    }
}

fn nodes_text(connection: &mut redis::Connection) -> String {
    redis::cmd("CLUSTER")
        .arg("NODES")
        .query(connection)
        .unwrap()
}

fn bus_port(node: &Valkey) -> u16 {
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("cluster-port")
        .query(&mut node.connection())
        .unwrap();
    config[1].parse().unwrap()
}
