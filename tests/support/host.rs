//! The real `cronium-runtime` binary, started as a child process on a
//! free loopback port with the environment a test gives it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BACKEND_TOKEN, SECRET, free_port};

/// The environment of a test host, beyond port, secret and data dir.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// The program to run; `cronium-runtime` when `None`.
    pub binary: Option<PathBuf>,
    pub valkey_url: Option<String>,
    pub backend_url: Option<String>,
    pub env: Vec<(String, String)>,
    /// The port, when the test chose it (e.g. in a configuration file).
    pub port: Option<u16>,
    /// Only what a test cannot do without (loopback address, data and
    /// compile cache directories) plus `env`: no port, secret, backend token
    /// or log settings, so that a configuration file can supply them.
    pub bare: bool,
    /// A program and its arguments that run the binary (e.g. valgrind);
    /// the process id is then the wrapper's.
    pub wrapper: Vec<String>,
    /// How long to wait for `/health` (60 s when `None`).
    pub ready_within: Option<Duration>,
}

impl HostConfig {
    /// A host on `valkey` and `backend`.
    pub fn with(valkey_url: &str, backend_url: &str) -> Self {
        HostConfig {
            binary: None,
            valkey_url: Some(valkey_url.into()),
            backend_url: Some(backend_url.into()),
            ..HostConfig::default()
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
}

pub struct Host {
    port: u16,
    config: HostConfig,
    data_dir: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
}

impl Host {
    /// Starts the host and waits until `/health` answers.
    pub async fn start(config: HostConfig) -> Host {
        let data_dir = tempfile::tempdir().unwrap();
        let log = data_dir.path().join("host.log");
        let mut host = Host {
            port: config.port.unwrap_or_else(free_port),
            config,
            data_dir,
            log,
            child: None,
        };
        host.spawn().await;
        host
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `<base><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    /// The host's data directory (the embedded store).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// What the host has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the host with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Stops the host and starts it again with the same port, data
    /// directory and environment.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Runs `cronium-runtime <args>` with this host's environment.
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cronium-runtime"));
        cmd.args(args).current_dir(self.data_dir.path());
        for (k, v) in self.environment() {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn environment(&self) -> HashMap<String, String> {
        let mut env = HashMap::from([
            ("HOST".to_owned(), "127.0.0.1".to_owned()),
            ("PORT".to_owned(), self.port.to_string()),
            ("RUNTIME_JWT_SECRET".to_owned(), SECRET.to_owned()),
            ("BACKEND_TOKEN".to_owned(), BACKEND_TOKEN.to_owned()),
            ("LOG_FORMAT".to_owned(), "json".to_owned()),
            ("LOG_LEVEL".to_owned(), "info".to_owned()),
            (
                "CRONIUM_DATA_DIR".to_owned(),
                self.data_dir.path().display().to_string(),
            ),
            // Backtraces on a hot error path are slow and say nothing to a test.
            ("RUST_BACKTRACE".to_owned(), "0".to_owned()),
            // One compile cache for every test host of the run (the host
            // creates it private), instead of a cold compile per host.
            (
                "CRONIUM_CACHE_DIR".to_owned(),
                concat!(env!("CARGO_TARGET_TMPDIR"), "/compile-cache").to_owned(),
            ),
        ]);
        if self.config.bare {
            env.retain(|name, _| {
                matches!(
                    name.as_str(),
                    "HOST" | "CRONIUM_DATA_DIR" | "CRONIUM_CACHE_DIR" | "RUST_BACKTRACE"
                )
            });
        }
        if let Some(url) = &self.config.valkey_url {
            env.insert("VALKEY_URL".into(), url.clone());
        }
        if let Some(url) = &self.config.backend_url {
            env.insert("BACKEND_URL".into(), url.clone());
        }
        for (k, v) in &self.config.env {
            env.insert(k.clone(), v.clone());
        }
        env
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let binary = self
            .config
            .binary
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cronium-runtime")));
        let mut cmd = match self.config.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        // In its data directory, so that no config.yaml of the caller's
        // working directory is read.
        cmd.env_clear()
            .current_dir(self.data_dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in self.environment() {
            cmd.env(k, v);
        }
        // An HTTPS host is taken as ready once it accepts connections (the
        // plain-HTTP check below cannot talk to it): it binds before it
        // loads its components, and a handshake waits for it to serve.
        let tls = self
            .environment()
            .get("ENABLE_TLS")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        self.child = Some(cmd.spawn().expect("starting cronium-runtime"));
        let deadline = Instant::now() + self.config.ready_within.unwrap_or(Duration::from_secs(60));
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("cronium-runtime exited with {status}:\n{}", self.log());
            }
            if std::net::TcpStream::connect(self.addr()).is_ok() {
                if tls {
                    return;
                }
                let health = self.url("/health");
                let reply =
                    super::client::try_call("GET", &health, &[], None, Duration::from_secs(30))
                        .await;
                if reply.is_ok_and(|r| r.status == 200) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("cronium-runtime did not become healthy:\n{}", self.log());
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
