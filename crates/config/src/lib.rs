//! The custom host's configuration, read as the Go service reads it
//! (`docs/configuration.md`): its variables and `config.yaml`
//! schema, each variable also as `RUNTIME_<NAME>` and
//! `RUNTIME_<SECTION>_<NAME>`, plus our own `CRONIUM_*` settings (in the
//! file under `cronium:`). An operator can swap one binary for the other.
//!
//! * [`settings`]: the table of every setting (variable, file key, default);
//! * `sources`: the layers and where each value came from;
//! * `values`: the layers read as typed values;
//! * `tools`: the tool settings ([`ToolsConfig`], [`Origin`]);
//! * `effective`: the configuration as `cronium-runtime config` prints it;
//! * this module: the typed [`Config`] built from them.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cronium_rules::token::{Algorithm, TokenPolicy};

mod effective;
pub mod settings;
mod sources;
mod tools;
mod values;

pub use effective::{Effective, effective};
use settings::{self as s, Setting};
pub use sources::{Env, Found, Origin as SourceOrigin, Sources};
pub use tools::{Origin, ToolsConfig};
pub use values::parse_duration;
use values::{Values, normalize_seeds};

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    /// The setting's variable (`CACHE_TTL`), or `CONFIG_FILE` when the
    /// file itself cannot be read.
    pub name: &'static str,
    /// What is wrong, for the operator; for a bad value, also the value
    /// (unless it is a secret) and where it came from.
    pub problem: String,
}

impl ConfigError {
    /// `name`'s value cannot be used, for `problem`.
    pub fn new(name: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            name,
            problem: problem.into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object a line, for log collectors (`LOG_FORMAT=json`, the
    /// default).
    Json,
    /// Plain text for people (`text`, also spelled `console` or `pretty`).
    Text,
}

/// Which export of an endpoint component the host calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentExport {
    /// `cronium:runtime/handler` when the component has it (ours all do),
    /// else `wasi:http/incoming-handler`.
    Handler,
    /// Always `wasi:http/incoming-handler`, the export Spin calls.
    WasiHttp,
}

/// How a guest's linear memory sits in the address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSpace {
    /// 4 GiB and guard pages reserved per memory: the compiled code needs
    /// no bounds checks. Costs virtual address space only, but much of it:
    /// ~4 GiB per pooled memory.
    Reserved,
    /// Only the memory cap reserved; the compiled code checks its bounds.
    /// For hosts whose address space is limited (`ulimit -v`, valgrind).
    Compact,
}

/// Where Valkey is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValkeyConfig {
    /// A `redis://`, `rediss://` or `unix://` URL (`valkey://` is read as
    /// `redis://`), or several, comma-separated: the seed nodes of a Valkey
    /// Cluster. One node of a cluster is enough; the host finds the rest.
    pub url: String,
    /// `VALKEY_PASSWORD`: overrides a password in the URL; `None`: the
    /// URL's, if any.
    pub password: Option<String>,
    /// `VALKEY_DB`: overrides a database in the URL; `None`: the URL's,
    /// else 0. A cluster has database 0 only.
    pub db: Option<i64>,
}

impl ValkeyConfig {
    /// The URLs of [`url`](Self::url), one per seed node.
    pub fn seeds(&self) -> impl Iterator<Item = &str> {
        self.url.split(',')
    }
}

/// Where the Cronium backend is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// `BACKEND_URL`: the base of the Cronium app's internal API, an
    /// `http://` or `https://` URL without a trailing `/`.
    pub url: String,
    /// `BACKEND_TOKEN`: the bearer token sent on every call (the app's
    /// `INTERNAL_API_KEY`); empty when unset, and then no `Authorization`
    /// header is sent. A secret: never log it.
    pub token: String,
    /// `BACKEND_TIMEOUT` (30s): the deadline of one backend call.
    pub timeout: Duration,
}

/// `ENABLE_TLS` with `TLS_CERT` and `TLS_KEY`: serve HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// A PEM file with the certificate chain, leaf first. Re-read when it
    /// changes on disk, so a renewed certificate needs no restart.
    pub cert: PathBuf,
    /// A PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The host's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST` (0.0.0.0) and `PORT` (8081).
    pub listen: SocketAddr,
    /// `RUNTIME_JWT_SECRET`, else `JWT_SECRET`, else `RUNTIME_AUTH_JWT_SECRET`.
    pub jwt_secret: Option<String>,
    /// `JWT_ALGORITHM` (HS256).
    pub jwt_algorithm: Algorithm,
    /// `JWT_LEEWAY` (30s) and `TOKEN_MAX_LIFETIME` (2h).
    pub token_policy: TokenPolicy,
    /// `EXECUTION_ID` (unset): the one execution this host serves, as the
    /// orchestrator's per-job sidecar; tokens of any other execution are
    /// refused (403). Unset: every execution.
    pub execution_id: Option<String>,
    /// `REVOCATION_FAIL_CLOSED` (false): refuse requests (503) when
    /// revocation cannot be checked for longer than the grace window.
    pub revocation_fail_closed: bool,
    /// `RATE_LIMIT_PER_MIN` (1000; 0 disables): requests an execution may
    /// make a minute, across every host sharing the Valkey.
    pub rate_limit_per_min: u32,
    /// `VALKEY_URL`, `VALKEY_PASSWORD`, `VALKEY_DB`; none: in-process cache.
    pub valkey: Option<ValkeyConfig>,
    /// `CACHE_TTL` (5m): the default TTL of cached entries.
    pub cache_ttl: Duration,
    /// `BACKEND_URL`, `BACKEND_TOKEN`, `BACKEND_TIMEOUT` (30s); none: the
    /// embedded store in `data_dir`.
    pub backend: Option<BackendConfig>,
    /// `CRONIUM_DATA_DIR` (`./cronium-data`): the embedded store.
    pub data_dir: PathBuf,
    /// `CRONIUM_VARIABLE_KEY_MAX` (255): the longest variable key the
    /// backend stores, in characters; a longer one is a 400 before any call.
    pub variable_key_max: u32,
    /// `CRONIUM_TOOL_CREDENTIALS_DIR` (`<data dir>/credentials`): tool
    /// credentials the operator keeps, whatever the backend.
    pub tool_credentials_dir: PathBuf,
    /// `ENABLE_TLS` (false), `TLS_CERT`, `TLS_KEY`: serve HTTPS.
    pub tls: Option<TlsConfig>,
    /// `LOG_LEVEL` (info): the lowest level of the host's own log lines
    /// (`error`, `warn`, `info`, `debug` or `trace`), lower-cased but not
    /// checked here.
    pub log_level: String,
    /// `LOG_FORMAT` (json): how log lines are written.
    pub log_format: LogFormat,
    /// `CRONIUM_REQUEST_TIMEOUT` (60s): the deadline of one component call.
    pub request_timeout: Duration,
    /// `CRONIUM_INSTANCE_MEMORY` (64 MiB): the memory cap of one instance.
    pub component_memory: usize,
    /// `CRONIUM_MAX_INSTANCES` (1000): component instances alive at once.
    pub max_instances: u32,
    /// `CRONIUM_INSTANCE_REUSE` (128): how many requests one instance may
    /// serve. More than 1 lets an instance serve further requests that
    /// carry the same `Authorization` header, and only those (see
    /// `components::warm`); 1 gives every request a fresh instance.
    pub instance_reuse: u32,
    /// `CRONIUM_COMPONENT_EXPORT` (`handler`): the export the host calls;
    /// `wasi-http` calls every component the way Spin does.
    pub component_export: ComponentExport,
    /// `CRONIUM_ADDRESS_SPACE` (`reserved`): how guests' linear memories
    /// sit in the address space (components and tools alike).
    pub address_space: AddressSpace,
    /// `CRONIUM_PERF_MAP` (false): write `/tmp/perf-<pid>.map`, so that
    /// `perf` and valgrind name the guests' compiled functions.
    pub perf_map: bool,
    /// `CRONIUM_CACHE_DIR` (`<temp dir>/cronium-runtime`, `off` to disable):
    /// where compiled components are kept between starts.
    pub compile_cache: Option<PathBuf>,
    /// `ENABLE_CORS` (true) and `ALLOWED_ORIGINS` (`*`, or a comma list).
    pub cors: Option<Vec<String>>,
    /// `CRONIUM_MAX_CONNECTIONS` (10000): open client connections at most;
    /// further clients wait in the listen backlog.
    pub max_connections: usize,
    /// `CRONIUM_MAX_IN_FLIGHT` (`CRONIUM_MAX_INSTANCES`): component
    /// requests answered at once; more get 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// `CRONIUM_BODY_TIMEOUT` (30s): the longest a client may take to send
    /// a request body (408 past it).
    pub body_timeout: Duration,
    /// `CRONIUM_WRITE_TIMEOUT` (30s): the longest a client may leave an
    /// answer unread before it is disconnected.
    pub write_timeout: Duration,
    /// `CRONIUM_STOP_TIMEOUT` (15s): from a stop signal to the exit, at
    /// most: open requests get two thirds of it, queued audit events the
    /// rest. A container stopped with `docker stop` (SIGKILL 10 s after
    /// SIGTERM, the orchestrator's sidecar after 5 s) needs less than that.
    pub stop_timeout: Duration,
    /// `CRONIUM_COMPONENT_<GROUP>`: a `.wasm` to serve a group instead of
    /// the embedded one (e.g. `CRONIUM_COMPONENT_EXECUTIONS=/opt/x.wasm`).
    pub component_overrides: HashMap<String, PathBuf>,
    /// Tool components: where they are, their limits and their egress.
    pub tools: ToolsConfig,
    /// How much the host keeps in memory at most (`docs/deploying.md`,
    /// "Memory bounds").
    pub bounds: MemoryBounds,
}

/// The bounds of what the host keeps in memory besides its instances:
/// each structure holds at most this many entries. Every one is at least
/// 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBounds {
    /// `CRONIUM_TOKEN_MEMO` (10000): verified tokens remembered.
    pub token_memo: usize,
    /// `CRONIUM_RATE_EXECUTIONS` (100000): executions with rate-limit
    /// shares, and with local counters while Valkey is down.
    pub rate_executions: usize,
    /// `CRONIUM_NEAR_CACHE_ENTRIES` (1024): execution records kept in
    /// front of Valkey.
    pub near_cache_entries: usize,
    /// `CRONIUM_MEMORY_CACHE_ENTRIES` (100000): entries of the in-process
    /// cache (no `VALKEY_URL`).
    pub memory_cache_entries: usize,
    /// `CRONIUM_AUDIT_QUEUE` (100000): audit events waiting for the
    /// courier.
    pub audit_queue: usize,
}

impl Default for MemoryBounds {
    /// The settings' defaults, read from the settings table.
    fn default() -> Self {
        let default = |setting: &Setting| {
            setting
                .default
                .and_then(|text| text.parse().ok())
                .expect("a memory bound's default is a number")
        };
        MemoryBounds {
            token_memo: default(&s::TOKEN_MEMO),
            rate_executions: default(&s::RATE_EXECUTIONS),
            near_cache_entries: default(&s::NEAR_CACHE_ENTRIES),
            memory_cache_entries: default(&s::MEMORY_CACHE_ENTRIES),
            audit_queue: default(&s::AUDIT_QUEUE),
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment and the
    /// configuration file (`CONFIG_FILE`, else `./config.yaml`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Self::load(&process_env(), &dir)
    }

    /// Reads the configuration from `env` alone (no file unless
    /// `CONFIG_FILE` names one): testable without touching the process.
    pub fn from_vars(env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let nowhere = std::env::temp_dir().join("cronium-runtime-no-config-dir");
        Self::load(&env, &nowhere)
    }

    /// Reads the configuration from `env` and the configuration file
    /// (`CONFIG_FILE`, relative to `dir`, else `dir/config.yaml` when it
    /// exists).
    pub fn load(env: &Env, dir: &std::path::Path) -> Result<Self, ConfigError> {
        let values = Values {
            sources: Sources::load(env, dir)?,
            env: env.clone(),
        };
        Self::read(&values)
    }

    fn read(values: &Values) -> Result<Self, ConfigError> {
        let port: u16 = values.number(&s::PORT)?;
        let host = values.text(&s::HOST).unwrap_or_default();
        let listen = format!("{host}:{port}")
            .parse()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .map_err(|_| values.invalid_text(&s::HOST, "is not an IP address"))?;

        let jwt_algorithm = values.parsed(
            &s::JWT_ALGORITHM,
            Algorithm::from_name,
            "use HS256, HS384 or HS512",
        )?;
        let token_policy = TokenPolicy {
            leeway: values.duration(&s::JWT_LEEWAY)?,
            max_lifetime: values.duration(&s::TOKEN_MAX_LIFETIME)?,
        };

        let valkey = match values.find(&s::VALKEY_URL) {
            None => None,
            Some(found) => Some(ValkeyConfig {
                url: normalize_seeds(&found.text).ok_or_else(|| {
                    values.invalid(
                        &s::VALKEY_URL,
                        &found,
                        "use a redis://, rediss://, valkey:// or unix:// URL, \
                         or a comma-separated list of them (the seeds of a cluster)",
                    )
                })?,
                password: values.text(&s::VALKEY_PASSWORD),
                db: values.optional_number(&s::VALKEY_DB)?,
            }),
        };

        let backend = match values.find(&s::BACKEND_URL) {
            None => None,
            Some(found) => {
                if !(found.text.starts_with("http://") || found.text.starts_with("https://")) {
                    return Err(values.invalid(
                        &s::BACKEND_URL,
                        &found,
                        "use an http:// or https:// URL",
                    ));
                }
                Some(BackendConfig {
                    url: found.text.trim_end_matches('/').to_owned(),
                    token: values.text(&s::BACKEND_TOKEN).unwrap_or_default(),
                    timeout: values.duration(&s::BACKEND_TIMEOUT)?,
                })
            }
        };

        let component_export = values.parsed(
            &s::COMPONENT_EXPORT,
            |v| match v.to_ascii_lowercase().as_str() {
                "handler" => Some(ComponentExport::Handler),
                "wasi-http" => Some(ComponentExport::WasiHttp),
                _ => None,
            },
            "use handler or wasi-http",
        )?;
        let address_space = values.parsed(
            &s::ADDRESS_SPACE,
            |v| match v.to_ascii_lowercase().as_str() {
                "reserved" => Some(AddressSpace::Reserved),
                "compact" => Some(AddressSpace::Compact),
                _ => None,
            },
            "use reserved or compact",
        )?;
        let log_format = values.parsed(
            &s::LOG_FORMAT,
            |v| match v.to_ascii_lowercase().as_str() {
                "json" => Some(LogFormat::Json),
                "text" | "console" | "pretty" => Some(LogFormat::Text),
                _ => None,
            },
            "use json or text",
        )?;

        let component_overrides = values
            .sources
            .component_overrides()
            .into_iter()
            .map(|(group, found)| (group, PathBuf::from(found.text)))
            .collect();

        let tls = if values.boolean(&s::ENABLE_TLS)? {
            let path = |setting: &Setting| {
                values.text(setting).map(PathBuf::from).ok_or_else(|| {
                    ConfigError::new(setting.var, "required when ENABLE_TLS is true")
                })
            };
            Some(TlsConfig {
                cert: path(&s::TLS_CERT)?,
                key: path(&s::TLS_KEY)?,
            })
        } else {
            None
        };

        let max_instances: u32 = values.number(&s::MAX_INSTANCES)?;
        let data_dir = PathBuf::from(values.text(&s::DATA_DIR).unwrap_or_default());
        let compile_cache = match values.find(&s::CACHE_DIR) {
            Some(found)
                if matches!(
                    found.text.to_ascii_lowercase().as_str(),
                    "off" | "none" | "false"
                ) =>
            {
                None
            }
            Some(found) => Some(PathBuf::from(found.text)),
            None => Some(default_compile_cache(&values.env, &data_dir)),
        };
        let tools = ToolsConfig::read(values, &data_dir)?;
        let tool_credentials_dir = values
            .text(&s::TOOL_CREDENTIALS_DIR)
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("credentials"));
        Ok(Config {
            variable_key_max: values.parsed(
                &s::VARIABLE_KEY_MAX,
                |v| v.parse::<u32>().ok().filter(|max| *max > 0),
                "is not a whole number above 0",
            )?,
            tool_credentials_dir,
            listen,
            jwt_secret: values.text(&s::JWT_SECRET),
            jwt_algorithm,
            token_policy,
            execution_id: values.text(&s::EXECUTION_ID),
            revocation_fail_closed: values.boolean(&s::REVOCATION_FAIL_CLOSED)?,
            rate_limit_per_min: values.number(&s::RATE_LIMIT_PER_MIN)?,
            valkey,
            cache_ttl: values.duration(&s::CACHE_TTL)?,
            backend,
            tls,
            data_dir,
            log_level: values
                .text(&s::LOG_LEVEL)
                .unwrap_or_default()
                .to_ascii_lowercase(),
            log_format,
            request_timeout: values.duration(&s::REQUEST_TIMEOUT)?,
            component_memory: values.size(&s::INSTANCE_MEMORY)?,
            compile_cache,
            cors: if values.boolean(&s::ENABLE_CORS)? {
                Some(cronium_rules::cors::parse_origins(
                    &values.text(&s::ALLOWED_ORIGINS).unwrap_or_default(),
                ))
            } else {
                None
            },
            max_connections: values.number(&s::MAX_CONNECTIONS)?,
            max_in_flight: values
                .optional_number(&s::MAX_IN_FLIGHT)?
                .unwrap_or(max_instances as usize),
            body_timeout: values.duration(&s::BODY_TIMEOUT)?,
            write_timeout: values.duration(&s::WRITE_TIMEOUT)?,
            stop_timeout: values.duration(&s::STOP_TIMEOUT)?,
            max_instances,
            instance_reuse: match values.number(&s::INSTANCE_REUSE)? {
                0 => {
                    return Err(ConfigError::new(
                        s::INSTANCE_REUSE.var,
                        "must be at least 1",
                    ));
                }
                n => n,
            },
            component_export,
            address_space,
            perf_map: values.boolean(&s::PERF_MAP)?,
            component_overrides,
            tools,
            bounds: MemoryBounds {
                token_memo: at_least_one(values, &s::TOKEN_MEMO)?,
                rate_executions: at_least_one(values, &s::RATE_EXECUTIONS)?,
                near_cache_entries: at_least_one(values, &s::NEAR_CACHE_ENTRIES)?,
                memory_cache_entries: at_least_one(values, &s::MEMORY_CACHE_ENTRIES)?,
                audit_queue: at_least_one(values, &s::AUDIT_QUEUE)?,
            },
        })
    }
}

/// A count that must be at least 1 (a bound of 0 would refuse everything).
fn at_least_one(values: &Values, setting: &Setting) -> Result<usize, ConfigError> {
    match values.number(setting)? {
        0 => Err(ConfigError::new(setting.var, "must be at least 1")),
        n => Ok(n),
    }
}

/// The process environment; variables that are not UTF-8 are left out
/// (none of ours can be).
pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The compile cache when none is configured: the user's own cache
/// directory (`$XDG_CACHE_HOME`, else `~/.cache`), else one under the
/// data directory. Never a shared place such as `/tmp`, where another
/// user could create it first.
fn default_compile_cache(env: &Env, data_dir: &std::path::Path) -> PathBuf {
    let absolute = |name: &str| env.get(name).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute("XDG_CACHE_HOME") {
        xdg.join("cronium-runtime")
    } else if let Some(home) = absolute("HOME") {
        home.join(".cache").join("cronium-runtime")
    } else {
        data_dir.join("compile-cache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effective::redact_url;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_match_the_go_service() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.port(), 8081);
        assert_eq!(c.cache_ttl, Duration::from_secs(300));
        assert!(c.valkey.is_none() && c.backend.is_none() && c.jwt_secret.is_none());
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn runtime_jwt_secret_wins_over_the_older_names() {
        let c = config(&[
            ("JWT_SECRET", "plain"),
            ("RUNTIME_JWT_SECRET", "prefixed"),
            ("RUNTIME_AUTH_JWT_SECRET", "sectioned"),
        ])
        .unwrap();
        assert_eq!(c.jwt_secret.as_deref(), Some("prefixed"));
        let c = config(&[
            ("JWT_SECRET", "plain"),
            ("RUNTIME_AUTH_JWT_SECRET", "sectioned"),
        ])
        .unwrap();
        assert_eq!(c.jwt_secret.as_deref(), Some("sectioned"));
        let c = config(&[("JWT_SECRET", "plain")]).unwrap();
        assert_eq!(c.jwt_secret.as_deref(), Some("plain"));
    }

    /// A directory holding `config.yaml` with `text`.
    fn dir_with_config(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), text).unwrap();
        dir
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The Go service's schema, every section, keys we ignore included.
    const GO_CONFIG: &str = r#"
version: "1.0.0"
server:
  port: 9123
  readTimeout: 30s
  writeTimeout: 30s
  idleTimeout: 120s
cache:
  url: valkey://cache.internal:6379
  db: 2
  poolSize: 10
  ttl: 10m
backend:
  url: https://cronium.internal/
  token: backend-token
  timeout: 12s
  maxRetries: 3
auth:
  jwtSecret: ${JWT_SECRET}
  tokenExpiration: 1h
logging:
  level: debug
  format: text
security:
  enableCors: true
  allowedOrigins:
    - "https://a.example"
    - "https://b.example"
  allowedMethods: [GET, POST]
  rateLimitPerMin: 250
  enableTls: false
"#;

    #[test]
    fn valkey_url_may_list_the_seeds_of_a_cluster_and_each_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(
            &env(&[
                ("JWT_SECRET", "s"),
                ("VALKEY_URL", "valkey://u:pw1@a:7000, redis://u:pw2@b:7001"),
            ]),
            dir.path(),
        )
        .unwrap();
        let valkey = c.valkey.unwrap();
        assert_eq!(
            valkey.seeds().collect::<Vec<_>>(),
            ["redis://u:pw1@a:7000", "redis://u:pw2@b:7001"]
        );
        let shown = redact_url(&valkey.url);
        assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
        let refused = Config::load(
            &env(&[("JWT_SECRET", "s"), ("VALKEY_URL", "redis://a:1,http://b")]),
            dir.path(),
        );
        assert!(refused.is_err());
    }

    #[test]
    fn durations_without_a_unit_are_seconds_in_the_environment_and_the_file() {
        // The upstream compose file sets `CACHE_TTL: 300`.
        let c = config(&[
            ("JWT_SECRET", "s"),
            ("CACHE_TTL", "300"),
            ("BACKEND_URL", "http://app:3000"),
            ("BACKEND_TIMEOUT", "30"),
        ])
        .unwrap();
        assert_eq!(c.cache_ttl, Duration::from_secs(300));
        assert_eq!(c.backend.unwrap().timeout, Duration::from_secs(30));
        let dir = dir_with_config(
            "cache:\n  ttl: 300\nbackend:\n  url: http://app:3000\n  timeout: 45\n",
        );
        let c = Config::load(&env(&[("JWT_SECRET", "s")]), dir.path()).unwrap();
        assert_eq!(c.cache_ttl, Duration::from_secs(300));
        assert_eq!(c.backend.unwrap().timeout, Duration::from_secs(45));
    }

    #[test]
    fn the_variable_key_limit_defaults_to_the_apps_255_and_must_be_positive() {
        assert_eq!(config(&[]).unwrap().variable_key_max, 255);
        let c = config(&[("CRONIUM_VARIABLE_KEY_MAX", "1024")]).unwrap();
        assert_eq!(c.variable_key_max, 1024);
        assert!(config(&[("CRONIUM_VARIABLE_KEY_MAX", "0")]).is_err());
    }

    #[test]
    fn the_go_services_config_file_is_read_with_unknown_keys_ignored() {
        let dir = dir_with_config(GO_CONFIG);
        let c = Config::load(&env(&[("JWT_SECRET", "from-the-environment")]), dir.path()).unwrap();
        assert_eq!(c.listen.port(), 9123);
        let valkey = c.valkey.unwrap();
        assert_eq!(
            (valkey.url.as_str(), valkey.db),
            ("redis://cache.internal:6379", Some(2))
        );
        assert_eq!(c.cache_ttl, Duration::from_secs(600));
        let backend = c.backend.unwrap();
        assert_eq!(backend.url, "https://cronium.internal");
        assert_eq!(backend.token, "backend-token");
        assert_eq!(backend.timeout, Duration::from_secs(12));
        assert_eq!(c.jwt_secret.as_deref(), Some("from-the-environment"));
        assert_eq!(
            (c.log_level.as_str(), c.log_format),
            ("debug", LogFormat::Text)
        );
        assert_eq!(
            c.cors.unwrap(),
            vec![
                "https://a.example".to_owned(),
                "https://b.example".to_owned()
            ]
        );
        assert_eq!(c.rate_limit_per_min, 250);
        assert!(c.tls.is_none());
    }

    #[test]
    fn variables_win_over_the_file_in_the_contracts_order() {
        let dir = dir_with_config(GO_CONFIG);
        let load = |pairs: &[(&str, &str)]| {
            Config::load(&env(pairs), dir.path())
                .unwrap()
                .rate_limit_per_min
        };
        assert_eq!(load(&[]), 250);
        assert_eq!(load(&[("RATE_LIMIT_PER_MIN", "10")]), 10);
        assert_eq!(
            load(&[
                ("RATE_LIMIT_PER_MIN", "10"),
                ("RUNTIME_SECURITY_RATE_LIMIT_PER_MIN", "20")
            ]),
            20
        );
        assert_eq!(
            load(&[
                ("RATE_LIMIT_PER_MIN", "10"),
                ("RUNTIME_SECURITY_RATE_LIMIT_PER_MIN", "20"),
                ("RUNTIME_RATE_LIMIT_PER_MIN", "30"),
            ]),
            30
        );
        // An empty variable is unset: the file decides.
        assert_eq!(load(&[("RATE_LIMIT_PER_MIN", " ")]), 250);
    }

    #[test]
    fn config_file_names_another_file_and_a_missing_one_is_an_error() {
        let dir = dir_with_config("server:\n  port: 1\n");
        std::fs::write(dir.path().join("other.yaml"), "server:\n  port: 2\n").unwrap();
        let c = Config::load(&env(&[("CONFIG_FILE", "other.yaml")]), dir.path()).unwrap();
        assert_eq!(c.listen.port(), 2);
        let error = Config::load(&env(&[("CONFIG_FILE", "missing.yaml")]), dir.path()).unwrap_err();
        assert_eq!(error.name, "CONFIG_FILE");
        let bad = dir_with_config("server: [unclosed");
        assert_eq!(
            Config::load(&env(&[]), bad.path()).unwrap_err().name,
            "CONFIG_FILE"
        );
        let list = dir_with_config("- 1\n- 2\n");
        assert_eq!(
            Config::load(&env(&[]), list.path()).unwrap_err().name,
            "CONFIG_FILE"
        );
    }

    #[test]
    fn our_own_settings_live_under_cronium_in_the_file() {
        let dir = dir_with_config(
            "cronium:\n  instanceReuse: 8\n  toolSettings:\n    email:\n      baseUrl: http://mail\n  component:\n    executions: /opt/x.wasm\n",
        );
        let c = Config::load(&env(&[]), dir.path()).unwrap();
        assert_eq!(c.instance_reuse, 8);
        assert_eq!(c.tools.settings["email"]["baseUrl"], "http://mail");
        assert_eq!(
            c.component_overrides["executions"],
            PathBuf::from("/opt/x.wasm")
        );
        let c = Config::load(&env(&[("RUNTIME_CRONIUM_INSTANCE_REUSE", "3")]), dir.path()).unwrap();
        assert_eq!(c.instance_reuse, 3);
    }

    #[test]
    fn a_placeholder_naming_an_unset_variable_leaves_the_setting_unset() {
        let dir = dir_with_config(GO_CONFIG);
        let c = Config::load(&env(&[]), dir.path()).unwrap();
        assert_eq!(c.jwt_secret, None);
    }

    #[test]
    fn tls_needs_its_certificate_and_key() {
        let error = config(&[("ENABLE_TLS", "true"), ("TLS_KEY", "/k.pem")]).unwrap_err();
        assert_eq!(error.name, "TLS_CERT");
        let c = config(&[
            ("RUNTIME_SECURITY_ENABLE_TLS", "true"),
            ("TLS_CERT", "/c.pem"),
            ("TLS_KEY", "/k.pem"),
        ])
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!((tls.cert, tls.key), ("/c.pem".into(), "/k.pem".into()));
    }

    #[test]
    fn the_effective_configuration_says_where_each_value_came_from_and_hides_secrets() {
        let dir = dir_with_config(GO_CONFIG);
        let (file, settings) = effective(
            &env(&[
                ("JWT_SECRET", "super-secret-value"),
                ("RUNTIME_VALKEY_URL", "redis://user:hunter2@cache:6379"),
                ("HOME", "/home/op"),
            ]),
            dir.path(),
        )
        .unwrap();
        assert!(file.unwrap().ends_with("config.yaml"));
        let get = |name: &str| settings.iter().find(|e| e.name == name).unwrap().clone();
        let secret = get("JWT_SECRET");
        assert_eq!(secret.value.as_deref(), Some("<redacted>"));
        assert_eq!(secret.origin, Some(SourceOrigin::Env("JWT_SECRET".into())));
        let url = get("VALKEY_URL");
        assert_eq!(url.value.as_deref(), Some("redis://<redacted>@cache:6379"));
        assert_eq!(
            url.origin,
            Some(SourceOrigin::Env("RUNTIME_VALKEY_URL".into()))
        );
        assert_eq!(get("BACKEND_TOKEN").value.as_deref(), Some("<redacted>"));
        assert!(matches!(
            get("RATE_LIMIT_PER_MIN").origin,
            Some(SourceOrigin::File { ref key, .. }) if key == "security.rateLimitPerMin"
        ));
        assert_eq!(
            get("CRONIUM_BODY_TIMEOUT").origin,
            Some(SourceOrigin::Default)
        );
        assert_eq!(
            get("CRONIUM_CACHE_DIR").value.as_deref(),
            Some("/home/op/.cache/cronium-runtime")
        );
        let everything = format!("{settings:?}");
        assert!(!everything.contains("super-secret-value") && !everything.contains("hunter2"));
        assert!(!everything.contains("backend-token"));
    }

    #[test]
    fn a_bad_value_names_the_variable_and_where_it_was_set() {
        let dir = dir_with_config("cache:\n  ttl: soon\n");
        let error = Config::load(&env(&[]), dir.path()).unwrap_err();
        assert_eq!(error.name, "CACHE_TTL");
        assert!(error.problem.contains("cache.ttl"), "{error}");
        let error = config(&[("RUNTIME_CACHE_CACHE_TTL", "soon")]).unwrap_err();
        assert!(
            error.problem.contains("$RUNTIME_CACHE_CACHE_TTL"),
            "{error}"
        );
    }

    #[test]
    fn every_default_in_the_table_is_accepted() {
        // Defaults are written as values and parsed like them.
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.port(), 8081);
        assert_eq!(c.max_in_flight, c.max_instances as usize);
    }

    #[test]
    fn the_compile_cache_defaults_to_a_per_user_directory() {
        let c = config(&[("XDG_CACHE_HOME", "/x/cache"), ("HOME", "/home/u")]).unwrap();
        assert_eq!(
            c.compile_cache,
            Some(PathBuf::from("/x/cache/cronium-runtime"))
        );
        let c = config(&[("HOME", "/home/u")]).unwrap();
        assert_eq!(
            c.compile_cache,
            Some(PathBuf::from("/home/u/.cache/cronium-runtime"))
        );
        let c = config(&[("CRONIUM_DATA_DIR", "/srv/data")]).unwrap();
        assert_eq!(
            c.compile_cache,
            Some(PathBuf::from("/srv/data/compile-cache"))
        );
        assert_eq!(
            config(&[("CRONIUM_CACHE_DIR", "off")])
                .unwrap()
                .compile_cache,
            None
        );
    }

    #[test]
    fn valkey_scheme_means_redis() {
        let c = config(&[("VALKEY_URL", "valkey://cache:6379/0")]).unwrap();
        assert_eq!(c.valkey.unwrap().url, "redis://cache:6379/0");
        assert!(config(&[("VALKEY_URL", "http://cache")]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_durations_parse_or_are_refused(text in "\\PC{0,40}") {
            let _ = parse_duration(&text);
        }
    }

    #[test]
    fn instances_are_reused_by_credential_unless_turned_off() {
        assert_eq!(config(&[]).unwrap().instance_reuse, 128);
        let c = config(&[("CRONIUM_INSTANCE_REUSE", "1")]).unwrap();
        assert_eq!(c.instance_reuse, 1);
        let error = config(&[("CRONIUM_INSTANCE_REUSE", "0")]).unwrap_err();
        assert_eq!(error.name, "CRONIUM_INSTANCE_REUSE");
    }

    #[test]
    fn every_memory_bound_is_a_setting_that_refuses_zero() {
        assert_eq!(config(&[]).unwrap().bounds, MemoryBounds::default());
        assert_eq!(
            MemoryBounds::default(),
            MemoryBounds {
                token_memo: 10_000,
                rate_executions: 100_000,
                near_cache_entries: 1024,
                memory_cache_entries: 100_000,
                audit_queue: 100_000,
            }
        );
        let c = config(&[
            ("CRONIUM_TOKEN_MEMO", "16"),
            ("CRONIUM_RATE_EXECUTIONS", "17"),
            ("CRONIUM_NEAR_CACHE_ENTRIES", "18"),
            ("CRONIUM_MEMORY_CACHE_ENTRIES", "19"),
            ("CRONIUM_AUDIT_QUEUE", "20"),
        ])
        .unwrap();
        assert_eq!(
            c.bounds,
            MemoryBounds {
                token_memo: 16,
                rate_executions: 17,
                near_cache_entries: 18,
                memory_cache_entries: 19,
                audit_queue: 20,
            }
        );
        for name in [
            "CRONIUM_TOKEN_MEMO",
            "CRONIUM_RATE_EXECUTIONS",
            "CRONIUM_NEAR_CACHE_ENTRIES",
            "CRONIUM_MEMORY_CACHE_ENTRIES",
            "CRONIUM_AUDIT_QUEUE",
        ] {
            assert_eq!(config(&[(name, "0")]).unwrap_err().name, name);
            assert_eq!(config(&[(name, "many")]).unwrap_err().name, name);
        }
    }

    #[test]
    fn memories_are_reserved_in_full_unless_compact_is_asked_for() {
        assert_eq!(config(&[]).unwrap().address_space, AddressSpace::Reserved);
        let c = config(&[("CRONIUM_ADDRESS_SPACE", "Compact")]).unwrap();
        assert_eq!(c.address_space, AddressSpace::Compact);
        let error = config(&[("CRONIUM_ADDRESS_SPACE", "small")]).unwrap_err();
        assert_eq!(error.name, "CRONIUM_ADDRESS_SPACE");
    }

    #[test]
    fn the_handler_export_is_called_unless_wasi_http_is_asked_for() {
        assert_eq!(
            config(&[]).unwrap().component_export,
            ComponentExport::Handler
        );
        let c = config(&[("CRONIUM_COMPONENT_EXPORT", "WASI-HTTP")]).unwrap();
        assert_eq!(c.component_export, ComponentExport::WasiHttp);
        let error = config(&[("CRONIUM_COMPONENT_EXPORT", "http")]).unwrap_err();
        assert_eq!(error.name, "CRONIUM_COMPONENT_EXPORT");
    }

    #[test]
    fn component_overrides_are_read_by_group() {
        let c = config(&[
            ("CRONIUM_COMPONENT_EXECUTIONS", "/x.wasm"),
            ("CRONIUM_INSTANCE_MEMORY", "32MiB"),
        ])
        .unwrap();
        assert_eq!(
            c.component_overrides.get("executions"),
            Some(&PathBuf::from("/x.wasm"))
        );
        assert_eq!(c.component_overrides.len(), 1);
        assert_eq!(c.component_memory, 32 << 20);
    }

    #[test]
    fn tool_settings_hosts_and_egress_are_read() {
        let c = config(&[
            ("CRONIUM_DATA_DIR", "/srv/cronium"),
            (
                "CRONIUM_TOOL_ALLOWED_HOSTS",
                "webhook=127.0.0.1:8080, *.corp.example ; email=mail.example.com",
            ),
            (
                "CRONIUM_TOOL_EGRESS",
                "https://hooks.slack.com=http://127.0.0.1:9001/",
            ),
            (
                "CRONIUM_TOOL_SETTINGS",
                r#"{"email":{"baseUrl":"http://x"}}"#,
            ),
        ])
        .unwrap();
        assert_eq!(c.tools.dir, PathBuf::from("/srv/cronium/tools"));
        assert_eq!(c.tools.allowed_hosts["webhook"].len(), 2);
        assert!(c.tools.allowed_hosts["webhook"][0].matches("127.0.0.1", 8080));
        assert!(c.tools.allowed_hosts["email"][0].matches("mail.example.com", 443));
        let (from, to) = &c.tools.egress[0];
        assert_eq!((from.host.as_str(), from.port), ("hooks.slack.com", 443));
        assert_eq!(
            (to.scheme.as_str(), to.authority()),
            ("http", "127.0.0.1:9001".into())
        );
        assert_eq!(c.tools.settings["email"]["baseUrl"], "http://x");
        assert!(c.tools.builtin);
    }

    #[test]
    fn bad_tool_settings_name_the_variable() {
        for (name, value) in [
            ("CRONIUM_TOOL_ALLOWED_HOSTS", "webhook"),
            ("CRONIUM_TOOL_ALLOWED_HOSTS", "webhook=a b"),
            ("CRONIUM_TOOL_EGRESS", "https://a=ftp://b"),
            ("CRONIUM_TOOL_SETTINGS", "[1]"),
            ("CRONIUM_TOOL_SETTINGS", r#"{"email":1}"#),
        ] {
            assert_eq!(config(&[(name, value)]).unwrap_err().name, name, "{value}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = config(&[("PORT", "eighty")]).unwrap_err();
        assert_eq!(e.name, "PORT");
        let e = config(&[("CACHE_TTL", "soon")]).unwrap_err();
        assert_eq!(e.name, "CACHE_TTL");
    }
}
