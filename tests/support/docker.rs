//! The real Docker Engine for the container tests: the images built
//! FROM scratch by `deploy/build-image.sh` (from the binaries this test
//! build made), and networks, containers and compose projects that are
//! removed when their handle is dropped. The images are kept, tagged
//! `:cargo-test`, so that the next run's builds hit the layer cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Whether the container tests can run. Where Docker is missing they are
/// skipped with a message, except under CI (`CI` set), where that fails.
pub fn available() -> bool {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let version = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
            .map_err(|e| format!("the docker command cannot be run: {e}"))?;
        if !version.status.success() {
            return Err(format!(
                "the Docker daemon does not answer: {}",
                String::from_utf8_lossy(&version.stderr).trim()
            ));
        }
        Ok(())
    });
    match checked {
        Ok(()) => true,
        Err(why) => {
            let in_ci =
                std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !in_ci,
                "the container tests need Docker Engine, and CI has it: {why}"
            );
            eprintln!("skipping: these tests need Docker Engine ({why})");
            false
        }
    }
}

/// Runs `docker` with `args`.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running docker")
}

/// Runs `docker` with `args`, which must succeed; its standard output, trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The images of the tests.
pub struct Images {
    /// The runtime API, from this build's `cronium-runtime`.
    pub runtime: String,
    pub valkey: String,
    pub fake_backend: String,
}

/// The images, built once per test binary by the documented script.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| Images {
        runtime: build_image(
            "runtime",
            "cronium/runtime-api:cargo-test",
            Path::new(env!("CARGO_BIN_EXE_cronium-runtime")),
        ),
        valkey: build_image(
            "valkey",
            "cronium/valkey:cargo-test",
            &super::valkey::binary(),
        ),
        fake_backend: build_image(
            "fake-backend",
            "cronium/fake-backend:cargo-test",
            Path::new(env!("CARGO_BIN_EXE_cronium-fake-backend")),
        ),
    })
}

fn build_image(what: &str, tag: &str, binary: &Path) -> String {
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(repo_root().join("deploy/build-image.sh"))
        .args([what, "--tag", tag, "--binary"])
        .arg(binary)
        .output()
        .expect("running deploy/build-image.sh");
    assert!(
        out.status.success(),
        "deploy/build-image.sh {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{} in {:?}",
        String::from_utf8_lossy(&out.stderr).trim(),
        started.elapsed()
    );
    tag.to_owned()
}

/// A name no other test (or test run at the same time) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bridge network, removed on drop (after the containers on it).
pub struct Network {
    pub name: String,
}

impl Network {
    pub fn create() -> Network {
        let name = unique("cronium-test-net");
        docker_ok(&["network", "create", "--driver", "bridge", &name]);
        Network { name }
    }

    /// The address of the Docker host on this network: what containers
    /// on it reach the host's own servers at.
    pub fn gateway(&self) -> std::net::IpAddr {
        docker_ok(&[
            "network",
            "inspect",
            "--format",
            "{{(index .IPAM.Config 0).Gateway}}",
            &self.name,
        ])
        .parse()
        .expect("the network's gateway is an IP address")
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// A container, removed (forcibly) on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// Creates a container named `name` with `docker create <args>`,
    /// without starting it.
    pub fn create(name: &str, args: &[impl AsRef<str>]) -> Container {
        let mut all = vec!["create", "--name", name];
        all.extend(args.iter().map(AsRef::as_ref));
        docker_ok(&all);
        Container {
            name: name.to_owned(),
        }
    }

    /// `docker run -d --name <name> <args>`.
    pub fn run(name: &str, args: &[impl AsRef<str>]) -> Container {
        let mut all = vec!["run", "-d", "--name", name];
        all.extend(args.iter().map(AsRef::as_ref));
        docker_ok(&all);
        Container {
            name: name.to_owned(),
        }
    }

    /// Its address on `network`.
    pub fn ip(&self, network: &str) -> String {
        docker_ok(&[
            "inspect",
            "--format",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            &self.name,
        ])
    }

    /// `docker inspect --format <format>`.
    pub fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.name])
    }

    /// Its log (standard output and error).
    pub fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// A docker-compose project of `deploy/compose.yaml`, taken down (with its
/// volumes and networks) on drop.
pub struct Compose {
    pub project: String,
    env: Vec<(String, String)>,
}

impl Compose {
    /// `docker-compose up -d` of `deploy/compose.yaml` with `env`.
    pub fn up(env: &[(&str, &str)]) -> Compose {
        let compose = Compose {
            project: unique("cronium-test").replace('-', ""),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        compose.ok(&["up", "-d", "--no-build"]);
        compose
    }

    fn command(&self, args: &[&str]) -> Command {
        // docker-compose (v1, as on these machines), else the v2 plugin.
        static STANDALONE: OnceLock<bool> = OnceLock::new();
        let standalone = *STANDALONE.get_or_init(|| {
            Command::new("docker-compose")
                .arg("version")
                .output()
                .is_ok_and(|out| out.status.success())
        });
        let mut command = if standalone {
            Command::new("docker-compose")
        } else {
            let mut plugin = Command::new("docker");
            plugin.arg("compose");
            plugin
        };
        command
            .arg("--project-name")
            .arg(&self.project)
            .arg("--file")
            .arg(repo_root().join("deploy/compose.yaml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `docker-compose <args>` on the project, which must succeed;
    /// its standard output, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("running docker-compose");
        assert!(
            out.status.success(),
            "docker-compose {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The id of `service`'s container.
    pub fn container(&self, service: &str) -> String {
        self.ok(&["ps", "-q", service])
    }

    /// `127.0.0.1:<port>` where `service`'s `port` is published.
    pub fn published(&self, service: &str, port: u16) -> String {
        self.ok(&["port", service, &port.to_string()])
    }

    /// The project's default network.
    pub fn network(&self) -> String {
        format!("{}_default", self.project)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self
            .command(&["down", "--volumes", "--remove-orphans", "--timeout", "1"])
            .output();
    }
}
