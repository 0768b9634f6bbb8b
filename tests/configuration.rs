//! What an operator switching from the Go service relies on: its
//! `config.yaml` and its environment start this host unchanged, every
//! setting is listed by `--help` and reported by `config`, and a compile
//! cache that someone else could have written is never loaded.

use crate::support;

use std::path::Path;

use serde_json::json;
use support::{
    BACKEND_TOKEN, FakeBackend, Host, HostConfig, SECRET, Valkey, call, free_port, token,
};

/// A deployment's `config.yaml` in the Go service's schema, with every
/// section and the keys this host does not use (timeouts, pool sizes,
/// allowed methods), as an operator of the Go service has it.
fn go_config_file(port: u16, valkey_url: &str, backend_url: &str) -> String {
    // The Go service wrote its Valkey URLs as valkey://.
    let valkey_url = valkey_url.replacen("redis://", "valkey://", 1);
    format!(
        r#"# Cronium Runtime Service Configuration
version: "1.0.0"

server:
  port: {port}
  readTimeout: 30s
  writeTimeout: 30s
  idleTimeout: 120s

cache:
  url: {valkey_url}
  db: 0
  maxRetries: 3
  dialTimeout: 5s
  poolSize: 10
  minIdleConns: 2
  maxConnAge: 30m
  ttl: 5m

backend:
  url: {backend_url}
  token: {BACKEND_TOKEN}
  timeout: 30s
  maxRetries: 3
  retryDelay: 1s

auth:
  jwtSecret: {SECRET}
  tokenExpiration: 1h
  refreshExpiration: 24h

logging:
  level: info
  format: json

security:
  enableCors: true
  allowedOrigins:
    - "*"
  allowedMethods: [GET, POST, PUT, DELETE, OPTIONS]
  allowedHeaders: ["*"]
  rateLimitPerMin: 1000
  enableTls: false
"#
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn a_go_deployments_config_file_starts_the_host_unchanged() {
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"from": "backend"})));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = write(
        dir.path(),
        "config.yaml",
        &go_config_file(port, &valkey.url(), &backend.url()),
    );
    let host = Host::start(
        HostConfig {
            bare: true,
            port: Some(port),
            ..HostConfig::default()
        }
        .env("CONFIG_FILE", file),
    )
    .await;

    let auth = format!("Bearer {}", token("exec-1"));
    let input = call(
        "GET",
        &host.url("/executions/exec-1/input"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(input.status, 200, "{input:?}");
    assert_eq!(input.json["data"], json!({"from": "backend"}));
    // The backend token came from the file too.
    let seen = backend.state().requests.last().unwrap().headers["authorization"].clone();
    assert_eq!(seen, format!("Bearer {BACKEND_TOKEN}"));
    // And the cache is the file's Valkey (valkey:// read as redis://).
    let ready = call("GET", &host.url("/ready"), &[], None).await;
    assert_eq!(ready.json["checks"]["cache"], "ok", "{ready:?}");
}

#[tokio::test]
async fn the_go_services_prefixed_variables_win_over_its_config_file() {
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", None);
    let dir = tempfile::tempdir().unwrap();
    let file_port = free_port();
    let file = write(
        dir.path(),
        "runtime.yaml",
        &go_config_file(file_port, "redis://127.0.0.1:1", &backend.url())
            .replace(SECRET, "a-secret-only-the-file-knows-0000"),
    );
    let port = free_port();
    let host = Host::start(
        HostConfig {
            bare: true,
            port: Some(port),
            ..HostConfig::default()
        }
        .env("CONFIG_FILE", file)
        // envconfig's names, as the Go binary reads them.
        .env("RUNTIME_SERVER_PORT", port.to_string())
        .env("RUNTIME_AUTH_JWT_SECRET", SECRET)
        // Empty counts as unset: the file's (unreachable) Valkey stays.
        .env("RUNTIME_CACHE_VALKEY_URL", ""),
    )
    .await;
    let auth = format!("Bearer {}", token("exec-1"));
    let reply = call(
        "GET",
        &host.url("/executions/exec-1/context"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    // Signed with the variable's secret, not the file's; the cache is
    // down, so the read went to the backend.
    assert_eq!(reply.status, 200, "{reply:?}");
    let ready = call("GET", &host.url("/ready"), &[], None).await;
    assert_eq!(ready.json["checks"]["cache"], "degraded", "{ready:?}");
}

#[tokio::test]
async fn help_lists_every_setting_with_its_variable_file_key_and_default() {
    let host = Host::start(HostConfig::default()).await;
    let help = host.command(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for (var, key, default) in [
        ("PORT", "server.port", "8081"),
        ("JWT_SECRET", "auth.jwtSecret", "unset"),
        ("RATE_LIMIT_PER_MIN", "security.rateLimitPerMin", "1000"),
        ("TLS_CERT", "security.tlsCert", "unset"),
        ("CACHE_TTL", "cache.ttl", "5m"),
        ("CRONIUM_INSTANCE_REUSE", "cronium.instanceReuse", "128"),
        ("CRONIUM_TOOL_SETTINGS", "cronium.toolSettings", "{}"),
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{var} ")))
            .unwrap_or_else(|| panic!("{var} is not in --help:\n{text}"));
        assert!(
            line.contains(key) && line.contains(&format!("[default: {default}]")),
            "{line}"
        );
    }
}

#[tokio::test]
async fn config_prints_each_value_with_its_origin_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "c.yaml", "cache:\n  ttl: 7m\n");
    let host = Host::start(
        HostConfig::default()
            .env("CONFIG_FILE", file)
            .env("RUNTIME_SECURITY_RATE_LIMIT_PER_MIN", "42")
            .env("BACKEND_URL", "https://user:hunter2@backend.example"),
    )
    .await;
    let out = host.command(&["config"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |var: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{var} ")))
            .unwrap_or_else(|| panic!("{var} missing:\n{text}"))
            .to_owned()
    };
    assert!(line("CACHE_TTL").contains("7m") && line("CACHE_TTL").contains("(cache.ttl)"));
    assert!(line("RATE_LIMIT_PER_MIN").contains("42  # $RUNTIME_SECURITY_RATE_LIMIT_PER_MIN"));
    assert!(line("JWT_SECRET").contains("<redacted>  # $RUNTIME_JWT_SECRET"));
    assert!(line("BACKEND_TOKEN").contains("<redacted>"));
    assert!(line("BACKEND_URL").contains("https://<redacted>@backend.example"));
    assert!(line("CRONIUM_BODY_TIMEOUT").contains("# default"));
    assert!(!text.contains(SECRET) && !text.contains(BACKEND_TOKEN) && !text.contains("hunter2"));
}

#[tokio::test]
async fn config_refuses_an_invalid_value_with_its_variable_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cronium-runtime"))
        .arg("config")
        .env("CACHE_TTL", "9999999999999999999s9999999999999999999s")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CACHE_TTL") && stderr.contains("not a duration"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_compile_cache_others_can_write_is_refused_and_left_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let planted = tempfile::tempdir().unwrap();
    std::fs::set_permissions(planted.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let host = Host::start(
        HostConfig::default().env("CRONIUM_CACHE_DIR", planted.path().display().to_string()),
    )
    .await;
    // The host serves (components compiled without the cache)...
    assert_eq!(
        call("GET", &host.url("/health"), &[], None).await.status,
        200
    );
    assert!(
        host.log()
            .contains("refusing the precompiled component cache"),
        "{}",
        host.log()
    );
    // ...and neither read nor wrote the planted directory.
    assert_eq!(std::fs::read_dir(planted.path()).unwrap().count(), 0);
}
