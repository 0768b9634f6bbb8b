//! A real OpenSSH "remote server" for the tests and the benchmark: `sshd`
//! in a network namespace of its own, joined to the root namespace by a
//! veth pair on a link-local /30 that nothing else uses, with keys and
//! `known_hosts` generated in a temporary directory (nothing read from or
//! written to `~/.ssh`). [`RemoteServer::tunnel`] opens the orchestrator's
//! remote forward to it (`ssh -N -R 127.0.0.1:9090:<host>:<port>`), and
//! [`RemoteServer::command`] runs a program on the "remote server", inside
//! the namespace, where `127.0.0.1:9090` is the tunnel's end and the host
//! itself cannot be reached any other way.
//!
//! The namespace (and with it the veth pair), `sshd` and every `ssh`
//! client are removed when their handles are dropped, also when a test
//! fails.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The port the orchestrator's remote forward listens on, on the remote
/// server's loopback.
pub const REMOTE_PORT: u16 = 9090;

/// How to install what the tunnel needs.
pub const INSTALL_HINT: &str =
    "install OpenSSH: apt-get install -y openssh-server openssh-client (.ci/run does this in CI)";

/// The absolute path of `sshd` (it refuses to run from a relative one).
fn sshd_binary() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/sbin/sshd")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("sshd")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_absolute() && p.is_file())
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Whether this process may create network namespaces: `None` if it may,
/// else why not (the only reason the SSH tests skip). Probed once.
pub fn namespaces_unavailable() -> Option<String> {
    static PROBED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PROBED.get_or_init(probe_namespaces).clone()
}

fn probe_namespaces() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root: network namespaces cannot be created".into());
    }
    let name = format!("crprobe{}", std::process::id());
    let added = Command::new("ip")
        .args(["netns", "add", &name])
        .stderr(Stdio::piped())
        .output();
    match added {
        Ok(out) if out.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
            None
        }
        Ok(out) => Some(format!(
            "`ip netns add` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(error) => Some(format!("`ip` could not be run: {error}")),
    }
}

/// Fails (in CI and elsewhere) when OpenSSH is missing, saying how to
/// install it.
pub fn require_openssh() -> PathBuf {
    let sshd = sshd_binary();
    let missing: Vec<&str> = [
        ("sshd", sshd.is_some()),
        ("ssh", on_path("ssh")),
        (
            "ssh-keygen",
            Command::new("ssh-keygen").arg("-?").output().is_ok(),
        ),
        (
            "curl",
            Command::new("curl").arg("--version").output().is_ok(),
        ),
    ]
    .into_iter()
    .filter(|(_, found)| !found)
    .map(|(name, _)| name)
    .collect();
    assert!(
        missing.is_empty(),
        "the SSH tunnel tests need {missing:?}: {INSTALL_HINT} (and curl)"
    );
    sshd.unwrap()
}

/// A link-local /30 no interface of the root namespace has an address in:
/// (ours, the remote server's).
fn free_subnet() -> (Ipv4Addr, Ipv4Addr) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    for _ in 0..512 {
        let n = (std::process::id().wrapping_mul(61) + NEXT.fetch_add(1, Ordering::Relaxed))
            % (200 * 64);
        let (third, fourth) = (10 + n / 64, (n % 64) * 4);
        if third == 169 {
            continue;
        }
        let net = format!("169.254.{third}.{fourth}/30");
        let taken = Command::new("ip")
            .args(["-o", "-4", "addr", "show", "to", &net])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(true);
        if !taken {
            let (third, fourth) = (third as u8, fourth as u8);
            return (
                Ipv4Addr::new(169, 254, third, fourth + 1),
                Ipv4Addr::new(169, 254, third, fourth + 2),
            );
        }
    }
    panic!("no free link-local /30 for the test's veth pair");
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "cronium-test", "-f"])
        .arg(path)
        .output()
        .expect("running ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

/// Every descendant of `pid`, deepest last (bounded: a test's sshd has a
/// handful).
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        if found.len() > 256 {
            break;
        }
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            found.push(child);
            queue.push(child);
        }
    }
    found
}

fn kill(pid: u32) {
    // SAFETY: kill(2) on a process this test started (or its descendant).
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// sshd in its own network namespace: the "remote server".
pub struct RemoteServer {
    namespace: String,
    dir: tempfile::TempDir,
    /// The address `sshd` listens on (the remote end of the veth pair).
    pub address: Ipv4Addr,
    /// Our end's address, and the interfaces of both ends.
    our_address: Ipv4Addr,
    our_if: String,
    their_if: String,
    sshd_binary: PathBuf,
    sshd: Option<Child>,
}

impl RemoteServer {
    /// Creates the namespace and its veth pair and starts `sshd` in it.
    /// `None` (after printing why) only where namespaces cannot be
    /// created, outside CI (`CI=true` fails instead); a missing OpenSSH
    /// fails.
    pub fn start() -> Option<RemoteServer> {
        if let Some(why) = namespaces_unavailable() {
            // In CI these tests must run, never skip quietly.
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !in_ci,
                "CI=true, but the SSH tunnel tests cannot run: {why}"
            );
            println!("skipped: {why}");
            return None;
        }
        let sshd_binary = require_openssh();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let namespace = format!("cronium-ssh-{pid}-{n}");
        // Interface names are at most 15 bytes.
        let (ours, theirs) = (format!("crs{pid}o{n}"), format!("crs{pid}r{n}"));
        let (our_addr, their_addr) = free_subnet();
        let dir = tempfile::tempdir().unwrap();
        let server = RemoteServer {
            namespace: namespace.clone(),
            dir,
            address: their_addr,
            our_address: our_addr,
            our_if: ours.clone(),
            their_if: theirs.clone(),
            sshd_binary,
            sshd: None,
        };
        // From here on, Drop removes the namespace (and the veth with it).
        ip(&["netns", "add", &namespace]);
        ip(&[
            "link", "add", &ours, "type", "veth", "peer", "name", &theirs, "netns", &namespace,
        ]);
        ip(&["addr", "add", &format!("{our_addr}/30"), "dev", &ours]);
        ip(&["link", "set", &ours, "up"]);
        let in_ns = |args: &[&str]| ip(&[&["-n", namespace.as_str()][..], args].concat());
        in_ns(&["link", "set", "lo", "up"]);
        in_ns(&["addr", "add", &format!("{their_addr}/30"), "dev", &theirs]);
        in_ns(&["link", "set", &theirs, "up"]);
        let mut server = server;
        server.configure();
        server.start_sshd();
        Some(server)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Host and client keys, `authorized_keys` and `sshd_config`:
    /// key-only authentication, forwarding allowed.
    fn configure(&self) {
        keygen(&self.path("host_key"));
        keygen(&self.path("client_key"));
        std::fs::copy(self.path("client_key.pub"), self.path("authorized_keys")).unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let config = format!(
            "ListenAddress {address}:22\n\
             HostKey {host_key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {keys}\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             StrictModes no\n\
             UsePAM no\n\
             AllowTcpForwarding yes\n\
             GatewayPorts no\n\
             LogLevel VERBOSE\n",
            address = self.address,
            host_key = self.path("host_key").display(),
            pid = self.path("sshd.pid").display(),
            keys = self.path("authorized_keys").display(),
        );
        std::fs::write(self.path("sshd_config"), config).unwrap();
    }

    fn start_sshd(&mut self) {
        let log = std::fs::File::create(self.path("sshd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(&self.sshd_binary)
            .args(["-D", "-e", "-f"])
            .arg(self.path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sshd");
        self.sshd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.sshd_log().contains("Server listening") {
                return;
            }
            if let Some(Ok(Some(status))) = self.sshd.as_mut().map(Child::try_wait) {
                panic!("sshd exited with {status}:\n{}", self.sshd_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sshd did not start listening:\n{}", self.sshd_log());
    }

    /// Turns delayed ACKs off (`quickack 1`) on the veth pair's route in
    /// our namespace (`ours`) and the remote server's (`theirs`), or back on.
    pub fn quickack(&self, ours: bool, theirs: bool) {
        let octets = self.address.octets();
        let subnet = format!(
            "{}/30",
            Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3] & !3)
        );
        for (namespace, interface, source, on) in [
            (None, &self.our_if, self.our_address, ours),
            (Some(&self.namespace), &self.their_if, self.address, theirs),
        ] {
            let mut args: Vec<&str> = Vec::new();
            if let Some(namespace) = namespace {
                args.extend(["-n", namespace.as_str()]);
            }
            let source = source.to_string();
            args.extend([
                "route",
                "replace",
                subnet.as_str(),
                "dev",
                interface.as_str(),
            ]);
            args.extend(["proto", "kernel", "scope", "link", "src", source.as_str()]);
            if on {
                args.extend(["quickack", "1"]);
            }
            ip(&args);
        }
    }

    /// What sshd logged.
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    /// Kills sshd and every session it forked (SIGKILL): the remote server
    /// drops the tunnel at once, as when it reboots or its sshd dies.
    pub fn kill_sshd(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            let family = descendants(child.id());
            let _ = child.kill();
            for pid in family {
                kill(pid);
            }
            let _ = child.wait();
        }
    }

    /// The orchestrator's remote forward to `target` (`host:port`, as the
    /// ssh client resolves it), `ssh -N -R 127.0.0.1:9090:<target>`; once
    /// this returns, `127.0.0.1:9090` in the namespace answers `/health`.
    pub fn tunnel(&self, target: &str) -> Tunnel {
        self.tunnel_with(target, TunnelOptions::default())
    }

    /// [`Self::tunnel`] with `options`.
    pub fn tunnel_with(&self, target: &str, options: TunnelOptions) -> Tunnel {
        let (host, port) = match options.via {
            Some(via) => (via.ip().to_string(), via.port()),
            None => (self.address.to_string(), 22),
        };
        let mut cmd = Command::new("ssh");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // ssh may still look under $HOME: keep that in the temp dir too.
            .env("HOME", self.dir.path())
            .args(["-F", "/dev/null", "-i"])
            .arg(self.path("client_key"))
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.path("known_hosts").display()
            ))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "ConnectTimeout=10",
                "-p",
                &port.to_string(),
                "-R",
                &format!("127.0.0.1:{REMOTE_PORT}:{target}"),
            ]);
        match options.session {
            Session::None => {
                cmd.arg("-N");
            }
            Session::Command => {
                cmd.arg("-T");
            }
            Session::Tty => {
                cmd.arg("-tt");
            }
        }
        cmd.arg(format!("root@{host}"));
        if options.session != Session::None {
            // A command that runs until the session's input ends, which is
            // when the tunnel is dropped (or sshd dies).
            cmd.arg("cat");
        }
        let log = self.path(&format!("ssh-{}.log", next_log_number()));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("starting ssh");
        let mut tunnel = Tunnel {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = tunnel.child.as_mut().map(Child::try_wait) {
                panic!(
                    "ssh exited with {status}:\n{}\nsshd:\n{}",
                    tunnel.log(),
                    self.sshd_log()
                );
            }
            let health = self.curl(&[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-m",
                "2",
                &format!("http://127.0.0.1:{REMOTE_PORT}/health"),
            ]);
            if String::from_utf8_lossy(&health.stdout) == "200" {
                return tunnel;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the tunnel did not answer /health:\n{}\nsshd:\n{}",
            tunnel.log(),
            self.sshd_log()
        );
    }

    /// `program` on the remote server (inside the namespace) with only
    /// `PATH` and `env` in its environment, as a job's script runs.
    pub fn command(&self, program: &str, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace, program])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `script` with bash on the remote server, with `env`.
    pub fn run_script(&self, script: &str, env: &[(&str, &str)]) -> Output {
        self.command("bash", env)
            .args(["-c", script])
            .output()
            .expect("running a script in the namespace")
    }

    /// curl with `args` on the remote server.
    pub fn curl(&self, args: &[&str]) -> Output {
        self.command("curl", &[])
            .args(args)
            .output()
            .expect("running curl in the namespace")
    }
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        self.kill_sshd();
        // Whatever still runs in the namespace (a script of a failed test)
        // was started by us, and would keep the namespace alive.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.namespace])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
            {
                kill(pid);
            }
        }
        // Deleting the namespace deletes its end of the veth pair, and the
        // pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
    }
}

/// What the ssh connection of a tunnel carries besides the forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Session {
    /// `-N`: the forward alone.
    #[default]
    None,
    /// A command on a channel without a terminal (`-T <command>`), as the
    /// orchestrator runs a job's script.
    Command,
    /// A command with a terminal forced (`-tt <command>`).
    Tty,
}

/// How [`RemoteServer::tunnel_with`] connects.
#[derive(Debug, Clone, Copy, Default)]
pub struct TunnelOptions {
    /// Connect through this address (a relay) instead of straight to sshd.
    pub via: Option<std::net::SocketAddr>,
    pub session: Session,
}

fn next_log_number() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A running `ssh -R` client; killed when dropped.
pub struct Tunnel {
    child: Option<Child>,
    log: PathBuf,
}

impl Tunnel {
    /// What ssh wrote on stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `within` for ssh to exit; its status, if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
