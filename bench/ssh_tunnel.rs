//! The SSH tunnel benchmark (issue #27):
//! `cargo bench -p cronium-host --bench ssh_tunnel` (as root: it creates a
//! network namespace, and needs OpenSSH and curl; `-- --scripts N` sets
//! how many seven-call scripts make each row, 40 by default).
//!
//! A real `sshd` runs as the remote server in a namespace of its own
//! (`tests/support/ssh.rs`), the host with a real Valkey and the fake
//! backend here. The seven-call script (read the input, the context and
//! three variables, write the output and a condition) is sent with curl,
//! `-w %{time_total}` timing each call, with 0, 10 and 25 ms added one way
//! by a relay on the SSH connection's path (`tests/support/relay.rs`;
//! `tc netem` is not available), side by side:
//!
//! * direct: curl to the host through the same relay, each call a new
//!   connection;
//! * tunnel: curl on the remote server to `127.0.0.1:9090`, through
//!   `ssh -N -R`, each call a new connection (as helper processes call);
//! * tunnel, keep-alive: the same calls on one reused connection;
//! * tunnel, batch: the seven calls as one `POST /executions/{id}/batch`,
//!   each batch a new connection.
//!
//! Then, with no delay added, how the SSH session the tunnel rides on
//! changes a new connection's cost: `-N` (the forward alone), a command
//! without a terminal (`-T`, as the orchestrator runs a job's script), a
//! forced terminal (`-tt`); and with delayed ACKs turned off on the route
//! between ssh and sshd (`ip route ... quickack 1`), on the remote
//! server's side, ours, or both; and the `-N` row call by call.
//!
//! Each table gives p50 and p99, the share of calls that stalled (slower
//! than their row's p50 by over 20 ms: a delayed ACK costs 40 ms), and a
//! script's seven calls (seven times the p50; a batch's own p50).

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use support::batch::{Call, batch_body, seven_call_script};
use support::relay::DelayRelay;
use support::ssh::{REMOTE_PORT, RemoteServer, Session, TunnelOptions};
use support::{FakeBackend, Host, HostConfig, Valkey, token};

const EXECUTION: &str = "bench-1";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scripts: usize = args
        .iter()
        .position(|a| a == "--scripts")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(40);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(scripts));
}

/// Per-call (or per-batch) latencies of one row, in milliseconds.
struct Row {
    label: String,
    millis: Vec<f64>,
}

impl Row {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.millis.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

async fn run(scripts: usize) {
    let Some(remote) = RemoteServer::start() else {
        println!("ssh_tunnel bench: skipped (network namespaces are needed: run as root)");
        return;
    };
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.state().quiet = true;
    backend.add_execution(EXECUTION, "bench-user", Some(json!({"rows": 3})));
    for key in ["region", "retries", "a/b"] {
        backend
            .state()
            .variables
            .insert(("bench-user".into(), key.into()), json!("eu-west"));
    }
    let host = Host::start(
        HostConfig::with(&valkey.url(), &backend.url())
            .env("LOG_LEVEL", "warn")
            .env("RATE_LIMIT_PER_MIN", "1000000000"),
    )
    .await;
    let token = token(EXECUTION);
    let calls = seven_call_script();
    let sshd: SocketAddr = (remote.address, 22).into();
    let host_addr: SocketAddr = host.addr().parse().unwrap();

    let mut table = Vec::new();
    for delay_ms in [0u64, 10, 25] {
        let delay = Duration::from_millis(delay_ms);
        // With no delay, no relay at all.
        let relays = if delay_ms == 0 {
            None
        } else {
            Some((
                DelayRelay::start(host_addr, delay).await,
                DelayRelay::start(sshd, delay).await,
            ))
        };
        let direct_to = relays.as_ref().map_or(host_addr, |(h, _)| h.addr());
        let via = relays.as_ref().map(|(_, s)| s.addr());
        let base = format!("http://{direct_to}");
        let direct = measure(
            Command::new("curl"),
            &base,
            &token,
            &calls,
            scripts,
            Mode::EachCall,
        );
        let tunnel = remote.tunnel_with(
            &host.addr(),
            TunnelOptions {
                via,
                session: Session::None,
            },
        );
        let through = format!("http://127.0.0.1:{REMOTE_PORT}");
        let remote_curl = || remote.command("curl", &[]);
        let each = measure(
            remote_curl(),
            &through,
            &token,
            &calls,
            scripts,
            Mode::EachCall,
        );
        let kept = measure(
            remote_curl(),
            &through,
            &token,
            &calls,
            scripts,
            Mode::KeepAlive,
        );
        let batch = measure(
            remote_curl(),
            &through,
            &token,
            &calls,
            scripts,
            Mode::Batch,
        );
        drop(tunnel);
        let name = |what: &str| format!("+{delay_ms} ms one way: {what}");
        table.push(Row {
            label: name("direct, a new connection per call"),
            millis: direct,
        });
        table.push(Row {
            label: name("tunnel, a new connection per call"),
            millis: each,
        });
        table.push(Row {
            label: name("tunnel, one keep-alive connection"),
            millis: kept,
        });
        table.push(Row {
            label: name("tunnel, the seven calls as one batch"),
            millis: batch,
        });
    }
    print_table(
        &format!("Per call (batch: per batch of 7), {scripts} seven-call scripts a row"),
        &table,
        &calls,
    );

    // What the session and the route do to a new connection's cost.
    let through = format!("http://127.0.0.1:{REMOTE_PORT}");
    let mut sessions = Vec::new();
    for (label, session) in [
        ("ssh -N -R (the forward alone)", Session::None),
        (
            "ssh -T -R <command> (a script's channel, no terminal)",
            Session::Command,
        ),
        ("ssh -tt -R <command> (a forced terminal)", Session::Tty),
    ] {
        let tunnel = remote.tunnel_with(&host.addr(), TunnelOptions { via: None, session });
        let millis = measure(
            remote.command("curl", &[]),
            &through,
            &token,
            &calls,
            scripts,
            Mode::EachCall,
        );
        drop(tunnel);
        sessions.push(Row {
            label: label.into(),
            millis,
        });
    }
    for (label, ours, theirs) in [
        (
            "ssh -N -R, quickack on the remote server's route",
            false,
            true,
        ),
        ("ssh -N -R, quickack on our route", true, false),
        ("ssh -N -R, quickack on both routes", true, true),
    ] {
        remote.quickack(ours, theirs);
        let tunnel = remote.tunnel(&host.addr());
        let millis = measure(
            remote.command("curl", &[]),
            &through,
            &token,
            &calls,
            scripts,
            Mode::EachCall,
        );
        drop(tunnel);
        remote.quickack(false, false);
        sessions.push(Row {
            label: label.into(),
            millis,
        });
    }
    print_table(
        "No delay added: a new connection per call, by the SSH session and route",
        &sessions,
        &calls,
    );
    // Which calls pay the stalls: the first row, call by call.
    let by_call: Vec<Row> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| Row {
            label: format!("ssh -N -R, {} {}", c.method, c.url),
            millis: sessions[0]
                .millis
                .iter()
                .skip(i)
                .step_by(calls.len())
                .copied()
                .collect(),
        })
        .collect();
    print_table("No delay added, ssh -N -R: call by call", &by_call, &calls);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Each call on a new connection (`Connection: close`).
    EachCall,
    /// Every call on one connection.
    KeepAlive,
    /// The seven calls as one batch, each batch a new connection.
    Batch,
}

/// Runs the seven-call script `scripts` times with one curl invocation
/// (`--next` between requests), and answers each request's `time_total`
/// in milliseconds. Every request must answer 200.
fn measure(
    mut curl: Command,
    base: &str,
    token: &str,
    calls: &[Call],
    scripts: usize,
    mode: Mode,
) -> Vec<f64> {
    let auth = format!("Authorization: Bearer {token}");
    let batch = batch_body(calls).to_string();
    let mut args: Vec<String> = Vec::new();
    let mut request = |method: &str, path: &str, body: Option<&str>| {
        if !args.is_empty() {
            args.push("--next".into());
        }
        for arg in [
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total}\\n",
            "-H",
        ] {
            args.push(arg.into());
        }
        args.push(auth.clone());
        args.extend(["-H".into(), "Content-Type: application/json".into()]);
        if mode != Mode::KeepAlive {
            args.extend(["-H".into(), "Connection: close".into()]);
        }
        args.extend(["-X".into(), method.into()]);
        if let Some(body) = body {
            args.extend(["--data".into(), body.into()]);
        }
        args.push(format!("{base}{path}"));
    };
    for _ in 0..scripts {
        if mode == Mode::Batch {
            request(
                "POST",
                &format!("/executions/{EXECUTION}/batch"),
                Some(&batch),
            );
        } else {
            for c in calls {
                let body = c.body.as_ref().map(|b| b.to_string());
                request(
                    c.method,
                    &support::batch::absolute(EXECUTION, &c.url),
                    body.as_deref(),
                );
            }
        }
    }
    let output: Output = curl.args(&args).output().expect("running curl");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut millis = Vec::new();
    for line in text.lines() {
        let (status, seconds) = line.split_once(' ').expect("status and time");
        assert_eq!(
            status,
            "200",
            "a call failed: {text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        millis.push(seconds.parse::<f64>().unwrap() * 1000.0);
    }
    let expected = if mode == Mode::Batch {
        scripts
    } else {
        scripts * calls.len()
    };
    assert_eq!(millis.len(), expected, "{text}");
    millis
}

fn print_table(title: &str, rows: &[Row], calls: &[Call]) {
    println!("\n{title}\n");
    println!("| path | p50 ms | p99 ms | stalled (> p50 + 20 ms) | seven calls, p50 ms |");
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        let p50 = row.percentile(50.0);
        let script = if row.label.contains("batch") {
            p50
        } else {
            p50 * calls.len() as f64
        };
        let stalled = row.millis.iter().filter(|&&m| m > p50 + 20.0).count();
        println!(
            "| {} | {:.1} | {:.1} | {:.1} % | {:.1} |",
            row.label,
            p50,
            row.percentile(99.0),
            100.0 * stalled as f64 / row.millis.len() as f64,
            script
        );
    }
}
