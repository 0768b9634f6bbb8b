//! TLS both ways: the host serving HTTPS (`ENABLE_TLS`, `TLS_CERT`,
//! `TLS_KEY`, a renewed certificate picked up without a restart), and
//! the host reaching an `https://` backend, verified against the roots
//! of `SSL_CERT_FILE` or `SSL_CERT_DIR` and refused without them. Every
//! certificate comes from a throwaway CA made by the test.

use crate::support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use support::tls::{Ca, Leaf, TlsProxy, https_call, presented_certificate};
use support::{FakeBackend, Host, HostConfig, call, token};

/// The certificate and key files of a test host, in their own folder.
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new(leaf: &Leaf) -> TlsFiles {
        let files = TlsFiles {
            dir: tempfile::tempdir().unwrap(),
        };
        leaf.write(&files.cert(), &files.key());
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// `config` serving HTTPS with these files.
    fn enable(&self, config: HostConfig) -> HostConfig {
        config
            .env("ENABLE_TLS", "true")
            .env("TLS_CERT", self.cert().display().to_string())
            .env("TLS_KEY", self.key().display().to_string())
    }

    /// Replaces both files the way certificate tools do: write aside,
    /// then rename over the originals.
    fn replace_with(&self, leaf: &Leaf) {
        let (cert, key) = (
            self.dir.path().join("cert.new"),
            self.dir.path().join("key.new"),
        );
        leaf.write(&cert, &key);
        std::fs::rename(&key, self.key()).unwrap();
        std::fs::rename(&cert, self.cert()).unwrap();
    }
}

fn auth(execution: &str) -> String {
    format!("Bearer {}", token(execution))
}

/// `https://localhost:<port><path>` of `host`.
fn https_url(host: &Host, path: &str) -> String {
    let port = host.addr().rsplit(':').next().unwrap().to_owned();
    format!("https://localhost:{port}{path}")
}

/// A fake backend with execution `exec-1`, and the same behind TLS with
/// a certificate of `ca` for 127.0.0.1.
async fn https_backend(ca: &Ca) -> (FakeBackend, TlsProxy) {
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"n": 1})));
    let proxy = TlsProxy::start(&ca.leaf(&["127.0.0.1", "localhost"], 7), &backend.url()).await;
    (backend, proxy)
}

/// Runs the host binary with `env` until it exits (at most 60 s).
fn run_to_exit(data_dir: &Path, env: &[(&str, String)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cronium-runtime"));
    command
        .env_clear()
        .current_dir(data_dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", support::free_port().to_string())
        .env("RUNTIME_JWT_SECRET", support::SECRET)
        .env("CRONIUM_DATA_DIR", data_dir)
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("the host did not exit: {:?}", child.wait_with_output());
}

#[tokio::test]
async fn the_host_serves_https_when_enable_tls_is_set() {
    let ca = Ca::new();
    let files = TlsFiles::new(&ca.leaf(&["localhost", "127.0.0.1"], 1));
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"n": 1})));
    let config = HostConfig {
        backend_url: Some(backend.url()),
        ..HostConfig::default()
    };
    let host = Host::start(files.enable(config)).await;

    let health = https_call(&ca, "GET", &https_url(&host, "/health"), &[], None)
        .await
        .unwrap();
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json["status"], "healthy");

    let input = https_call(
        &ca,
        "GET",
        &https_url(&host, "/executions/exec-1/input"),
        &[("authorization", &auth("exec-1"))],
        None,
    )
    .await
    .unwrap();
    assert_eq!(input.status, 200, "{input:?}");
    assert_eq!(input.json["data"], json!({"n": 1}), "{input:?}");

    // Plain HTTP to the TLS port gets no API answer, and harms nothing.
    let mut plain = std::net::TcpStream::connect(host.addr()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("healthy"),
        "{answer:?}"
    );
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    let again = https_call(&ca, "GET", &https_url(&host, "/health"), &[], None)
        .await
        .unwrap();
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_served_to_new_connections_without_a_restart() {
    let ca = Ca::new();
    let first = ca.leaf(&["localhost", "127.0.0.1"], 1);
    let files = TlsFiles::new(&first);
    let host = Host::start(files.enable(HostConfig::default())).await;
    let pid = host.pid();
    let presented = presented_certificate(&ca, &host.addr(), "localhost")
        .await
        .unwrap();
    assert_eq!(presented, first.der);

    let renewed = ca.leaf(&["localhost", "127.0.0.1", "renewed.localhost"], 2);
    files.replace_with(&renewed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let presented = presented_certificate(&ca, &host.addr(), "localhost")
            .await
            .unwrap();
        if presented == renewed.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(host.pid(), pid);
    let health = https_call(&ca, "GET", &https_url(&host, "/health"), &[], None)
        .await
        .unwrap();
    assert_eq!(health.status, 200);

    // A broken pair later on is logged; the renewed certificate stays.
    let warnings = || host.log().matches("serving the previous one").count();
    let before = warnings();
    std::fs::write(files.cert(), "not a certificate").unwrap();
    let logged = support::eventually(Duration::from_secs(10), || warnings() > before).await;
    assert!(logged, "{}", host.log());
    let presented = presented_certificate(&ca, &host.addr(), "localhost")
        .await
        .unwrap();
    assert_eq!(presented, renewed.der);
}

#[tokio::test]
async fn a_missing_or_garbage_tls_cert_stops_the_host_at_start_naming_the_file() {
    let ca = Ca::new();
    let files = TlsFiles::new(&ca.leaf(&["localhost"], 1));
    let data = tempfile::tempdir().unwrap();
    let missing = files.dir.path().join("missing-cert.pem");
    let garbage = files.dir.path().join("garbage-cert.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    for cert in [&missing, &garbage] {
        let out = run_to_exit(
            data.path(),
            &[
                ("ENABLE_TLS", "true".into()),
                ("TLS_CERT", cert.display().to_string()),
                ("TLS_KEY", files.key().display().to_string()),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("TLS_CERT") && stderr.contains(&cert.display().to_string()),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn an_https_backend_is_reached_verified_through_ssl_cert_file() {
    let ca = Ca::new();
    let (backend, proxy) = https_backend(&ca).await;
    let trust = tempfile::tempdir().unwrap();
    let ca_file = trust.path().join("ca.pem");
    ca.write_pem(&ca_file);
    let config = HostConfig {
        backend_url: Some(proxy.url()),
        ..HostConfig::default()
    }
    .env("SSL_CERT_FILE", ca_file.display().to_string());
    let host = Host::start(config).await;

    let url = host.url("/executions/exec-1/input");
    let input = call("GET", &url, &[("authorization", &auth("exec-1"))], None).await;
    assert_eq!(input.status, 200, "{input:?}\n{}", host.log());
    assert_eq!(input.json["data"], json!({"n": 1}));

    let url = host.url("/executions/exec-1/output");
    let headers = [
        ("authorization", auth("exec-1")),
        ("content-type", "application/json".into()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = call("POST", &url, &headers, Some(br#"{"data":{"ok":true}}"#)).await;
    assert_eq!(output.status, 200, "{output:?}");
    assert_eq!(backend.state().outputs.len(), 1);

    let ready = call("GET", &host.url("/ready"), &[], None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.json["checks"]["backend"], "ok");
}

#[tokio::test]
async fn an_https_backend_is_refused_without_its_ca_so_verification_is_on() {
    let ca = Ca::new();
    let (backend, proxy) = https_backend(&ca).await;
    let config = HostConfig {
        backend_url: Some(proxy.url()),
        ..HostConfig::default()
    };
    let host = Host::start(config).await;

    let url = host.url("/executions/exec-1/input");
    let input = call("GET", &url, &[("authorization", &auth("exec-1"))], None).await;
    assert!(input.status >= 500, "{input:?}");
    assert!(!input.error_message().is_empty());
    assert_eq!(
        backend.count("GET", "/api/internal/executions/exec-1/context"),
        0
    );

    let ready = call("GET", &host.url("/ready"), &[], None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.json["checks"]["backend"], "unreachable");
    assert_eq!(
        call("GET", &host.url("/health"), &[], None).await.status,
        200
    );
    assert!(
        host.log().contains("invalid peer certificate"),
        "{}",
        host.log()
    );
}

#[tokio::test]
async fn ssl_cert_dir_is_trusted_too() {
    let ca = Ca::new();
    let (_backend, proxy) = https_backend(&ca).await;
    let trust = tempfile::tempdir().unwrap();
    ca.write_pem(&trust.path().join("throwaway-ca.pem"));
    std::fs::write(trust.path().join("README"), "not a certificate").unwrap();
    let config = HostConfig {
        backend_url: Some(proxy.url()),
        ..HostConfig::default()
    }
    .env("SSL_CERT_DIR", trust.path().display().to_string());
    let host = Host::start(config).await;

    let url = host.url("/executions/exec-1/input");
    let input = call("GET", &url, &[("authorization", &auth("exec-1"))], None).await;
    assert_eq!(input.status, 200, "{input:?}\n{}", host.log());
    let ready = call("GET", &host.url("/ready"), &[], None).await;
    assert_eq!(ready.json["checks"]["backend"], "ok", "{ready:?}");
}
