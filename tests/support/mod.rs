//! What the end-to-end tests stand on: a real Valkey server, a fake of
//! the Cronium backend's internal API, the real `cronium-runtime` binary,
//! each on a free loopback port, and a small HTTP client. Everything is
//! stopped when its handle is dropped.

// Shared by every test file and the benchmark; none uses all of it.
#![allow(dead_code, unused_imports)]

pub mod api;
pub mod backend;
pub mod batch;
pub mod client;
pub mod cluster;
pub mod docker;
pub mod host;
pub mod parity;
pub mod relay;
pub mod serve;
pub mod spin;
pub mod ssh;
pub mod stand_in;
pub mod tls;
pub mod valkey;
pub mod world;

pub use backend::{BACKEND_TOKEN, FakeBackend};
pub use client::{Reply, call, try_call};
pub use cluster::ValkeyCluster;
pub use host::{Host, HostConfig};
pub use serve::{serve_loopback, serve_on};
pub use spin::{SpinApp, spin_cli};
pub use stand_in::{Answer, StandIn};
pub use valkey::Valkey;
pub use world::{Area, World};

use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cronium_rules::token::{Algorithm, Claims, TokenPolicy, TokenVerifier};

/// The secret every test host is configured with.
pub const SECRET: &str = "end-to-end-test-secret-0123456789";

/// A free loopback port, never the same one twice in this process.
///
/// The port is bound and released, so another process could still take
/// it; but the kernel picks `bind(0)` ports at random, so two calls in
/// one test binary (a cluster takes twelve) can draw the same port, and
/// two servers of parallel tests would then answer on one port.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// The value of the first line of a Prometheus exposition `text` that
/// starts with `prefix` (a metric's name, with its labels or a space).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The number of a field of `/proc/<pid>/status` (`VmRSS:` in kB,
/// `Threads:`).
pub fn proc_status(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a valid token for `execution_id` (job `job-<id>`, user `user-1`).
pub fn claims(execution_id: &str) -> Claims {
    Claims {
        execution_id: execution_id.into(),
        job_id: format!("job-{execution_id}"),
        user_id: Some("user-1".into()),
        event_id: Some("event-1".into()),
        capability_token: None,
        issued_at: now() - 5,
        expires_at: Some(now() + 600),
    }
}

/// Signs tokens with `secret` and `algorithm` (the default policy).
pub fn signer(secret: &[u8], algorithm: Algorithm) -> TokenVerifier {
    TokenVerifier::new(secret, algorithm, TokenPolicy::default()).unwrap()
}

/// A signed token for `claims` with the tests' secret.
pub fn token_for(claims: &Claims) -> String {
    signer(SECRET.as_bytes(), Algorithm::Hs256).mint(claims)
}

/// A valid token for `execution_id`.
pub fn token(execution_id: &str) -> String {
    token_for(&claims(execution_id))
}

/// A `PYTHONPATH` under which `module` imports: `target/<folder>`, where
/// `package` is installed with pip on first use. Test binaries running at
/// once install into their own staging folder and the first rename wins.
pub fn pip_target(folder: &str, package: &str, module: &str) -> Option<std::path::PathBuf> {
    use std::process::Command;
    let target = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(folder);
    let importable = |dir: &std::path::Path| {
        dir.is_dir()
            && Command::new("python3")
                .args(["-c", &format!("import {module}")])
                .env("PYTHONPATH", dir)
                .output()
                .is_ok_and(|o| o.status.success())
    };
    if importable(&target) {
        return Some(target);
    }
    let staging = target.with_extension(format!("tmp-{}", std::process::id()));
    let installed = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&staging)
        .arg(package)
        .status()
        .ok()?;
    if !installed.success() {
        return None;
    }
    if std::fs::rename(&staging, &target).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    importable(&target).then_some(target)
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}
