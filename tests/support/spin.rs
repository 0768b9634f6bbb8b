//! A real Spin CLI serving `spin.toml`, as `docs/spin.md`
//! says: `spin build` (once per test run), then `spin up --listen
//! 127.0.0.1:<port> --variable ...` in the repository's root, stopped when
//! its handle is dropped.
//!
//! The CLI is `$CRONIUM_SPIN_BIN`, else `spin` on the `PATH`. Without one,
//! [`spin_cli`] says so on the terminal (past the test harness's capture)
//! and the calling test returns: a test under Spin never passes silently.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{BACKEND_TOKEN, SECRET, free_port};

/// Environment variables of the cargo running the tests, which must not
/// leak into the cargo that `spin build` runs (they would point its build
/// at this test's target and profile).
const CARGO_VARS: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_MAKEFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_PKG_NAME",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// The Spin CLI, built (`spin build`) once per test run; `None` after
/// telling the terminal that `test` did not run and why.
pub fn spin_cli(test: &str) -> Option<&'static Path> {
    static CLI: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let cli = CLI.get_or_init(|| {
        let cli = find().ok_or_else(|| {
            "no Spin CLI: put `spin` (4.0.x) on the PATH or set CRONIUM_SPIN_BIN".to_owned()
        })?;
        build(&cli)?;
        Ok(cli)
    });
    match cli {
        Ok(cli) => Some(cli),
        Err(why) => {
            let line = format!("test {test} NOT RUN under Spin: {why}\n");
            // Straight to the terminal: the harness captures only `print!`.
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
    }
}

fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CRONIUM_SPIN_BIN") {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("spin"))
        .find(|path| path.is_file())
}

/// The repository's root, where `spin.toml` is.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn build(cli: &Path) -> Result<(), String> {
    let mut command = Command::new(cli);
    command.arg("build").current_dir(root());
    for var in CARGO_VARS {
        command.env_remove(var);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cli.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        // A Spin CLI that is present but cannot build is a failure, not a
        // reason to skip.
        panic!(
            "`spin build` failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

/// `spin up` on `spin.toml`.
pub struct SpinApp {
    port: u16,
    child: Child,
    state: tempfile::TempDir,
}

impl SpinApp {
    /// Serves the app on a free loopback port with the tests' secret and
    /// backend token, Valkey and backend at the URLs given, plus
    /// `variables`; waits until `/health` answers.
    pub async fn start(
        cli: &Path,
        valkey_url: &str,
        backend_url: &str,
        variables: &[(&str, &str)],
    ) -> SpinApp {
        let defaults = [
            ("jwt_secret", SECRET),
            ("backend_token", BACKEND_TOKEN),
            ("backend_url", backend_url),
            ("valkey_url", valkey_url),
        ];
        let all: Vec<(&str, &str)> = defaults.iter().chain(variables).copied().collect();
        SpinApp::start_manifest(cli, &root().join("spin.toml"), &all, "/health").await
    }

    /// Serves another manifest (e.g. the benchmark's hello component) with
    /// exactly `variables`; waits until `ready_path` answers 200.
    pub async fn start_manifest(
        cli: &Path,
        manifest: &Path,
        variables: &[(&str, &str)],
        ready_path: &str,
    ) -> SpinApp {
        let port = free_port();
        let state = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(state.path().join("spin.log")).unwrap();
        let mut command = Command::new(cli);
        command
            .current_dir(root())
            .arg("up")
            .arg("--from")
            .arg(manifest)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--state-dir")
            .arg(state.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so that drop stops Spin and its children.
            .process_group(0);
        for (name, value) in variables {
            command.arg("--variable").arg(format!("{name}={value}"));
        }
        let child = command.spawn().expect("spin up starts");
        let app = SpinApp { port, child, state };
        app.wait_ready(ready_path).await;
        app
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What Spin and the app have logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("spin.log")).unwrap_or_default()
    }

    /// The id of the process that serves: `spin up` runs the trigger
    /// (`spin trigger http`) as its child, so that one when there is one.
    pub fn pid(&self) -> u32 {
        let up = self.child.id();
        std::fs::read_to_string(format!("/proc/{up}/task/{up}/children"))
            .ok()
            .and_then(|children| children.split_whitespace().next()?.parse().ok())
            .unwrap_or(up)
    }

    async fn wait_ready(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let listening = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if listening
                && super::call("GET", &self.url("/health"), &[], None)
                    .await
                    .status
                    == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("spin up did not serve {path} in 60 s:\n{}", self.log());
    }
}

impl Drop for SpinApp {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of a child we own.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
