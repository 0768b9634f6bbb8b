//! Configuration, read from the environment variables of the Go service
//! (`CONTRACT.md`, "Configuration compatibility") plus a few of our own,
//! all prefixed `CRONIUM_`. An operator can swap one binary for the other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cronium_rules::token::{Algorithm, TokenPolicy};
use cronium_rules::tools::HostPattern;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(name: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            name,
            problem: problem.into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
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

/// Where Valkey is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValkeyConfig {
    /// A `redis://`, `rediss://` or `unix://` URL (`valkey://` is read as `redis://`).
    pub url: String,
    pub password: Option<String>,
    pub db: Option<i64>,
}

/// Where the Cronium backend is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub url: String,
    pub token: String,
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

/// How tool components are found and fenced in.
#[derive(Debug, Clone)]
pub struct ToolsConfig {
    /// `CRONIUM_TOOLS_DIR` (`<CRONIUM_DATA_DIR>/tools`): drop-in `.wasm` tools.
    pub dir: PathBuf,
    /// `CRONIUM_TOOLS_POLL` (1s): how often the directory is rescanned.
    pub poll: Duration,
    /// `CRONIUM_BUILTIN_TOOLS` (true): serve the tools built into the
    /// binary (webhook, slack, discord, email); a file with the same id wins.
    pub builtin: bool,
    /// `CRONIUM_TOOL_TIMEOUT` (30s): the deadline of one tool call.
    pub timeout: Duration,
    /// `CRONIUM_TOOL_MEMORY` (64MiB): a tool instance's memory cap.
    pub memory: usize,
    /// `CRONIUM_TOOL_ALLOWED_HOSTS` (`tool=host,host;tool2=host`): narrows
    /// the hosts a tool declared. Only an exact host named here lets a tool
    /// reach a loopback or private address.
    pub allowed_hosts: HashMap<String, Vec<HostPattern>>,
    /// `CRONIUM_TOOL_EGRESS` (`https://hooks.slack.com=http://127.0.0.1:9001,...`):
    /// sends a tool's traffic for one origin to another (a sandbox, an
    /// egress proxy). Checked against the tool's hosts by the original origin.
    /// Shared with every tool's egress policy.
    pub egress: std::sync::Arc<Vec<(Origin, Origin)>>,
    /// `CRONIUM_TOOL_SETTINGS`: a JSON object of each tool's operator
    /// settings, keyed by tool id (`{"email":{"baseUrl":"..."}}`).
    pub settings: HashMap<String, serde_json::Value>,
}

/// `scheme://host[:port]`, lower-case, with the scheme's port made explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses `http://host[:port]` or `https://host[:port]` (a trailing `/` is allowed).
    pub fn parse(text: &str) -> Option<Origin> {
        let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
        let (scheme, rest) = text.split_once("://")?;
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = cronium_rules::tools::split_port(rest).ok()?;
        let port = port.unwrap_or(default_port);
        Some(Origin {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port`, as a URI authority.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl ToolsConfig {
    fn from_vars(vars: &Vars, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        const ALLOWED: &str = "CRONIUM_TOOL_ALLOWED_HOSTS";
        const EGRESS: &str = "CRONIUM_TOOL_EGRESS";
        const SETTINGS: &str = "CRONIUM_TOOL_SETTINGS";
        let mut allowed_hosts = HashMap::new();
        for entry in vars.get(ALLOWED).unwrap_or("").split(';') {
            if entry.trim().is_empty() {
                continue;
            }
            let (tool, hosts) = entry.split_once('=').ok_or_else(|| {
                ConfigError::new(ALLOWED, format!("{entry:?} is not tool=host,host"))
            })?;
            let patterns = hosts
                .split(',')
                .filter(|h| !h.trim().is_empty())
                .map(|h| {
                    HostPattern::parse(h)
                        .map_err(|e| ConfigError::new(ALLOWED, format!("{h:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            allowed_hosts.insert(tool.trim().to_owned(), patterns);
        }
        let mut egress = Vec::new();
        for entry in vars.get(EGRESS).unwrap_or("").split(',') {
            if entry.trim().is_empty() {
                continue;
            }
            let parsed = entry
                .split_once('=')
                .and_then(|(from, to)| Some((Origin::parse(from)?, Origin::parse(to)?)))
                .ok_or_else(|| {
                    ConfigError::new(EGRESS, format!("{entry:?} is not origin=origin"))
                })?;
            egress.push(parsed);
        }
        let settings = match vars.get(SETTINGS) {
            Some(text) => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(map)) => map
                    .into_iter()
                    .map(|(tool, value)| {
                        if value.is_object() {
                            Ok((tool, value))
                        } else {
                            Err(ConfigError::new(SETTINGS, format!("{tool}: not an object")))
                        }
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(ConfigError::new(
                        SETTINGS,
                        "must be a JSON object keyed by tool id",
                    ));
                }
            },
            None => HashMap::new(),
        };
        Ok(ToolsConfig {
            dir: vars
                .get("CRONIUM_TOOLS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("tools")),
            poll: vars.duration("CRONIUM_TOOLS_POLL", Duration::from_secs(1))?,
            builtin: vars.boolean("CRONIUM_BUILTIN_TOOLS", true)?,
            timeout: vars.duration("CRONIUM_TOOL_TIMEOUT", Duration::from_secs(30))?,
            memory: match vars.get("CRONIUM_TOOL_MEMORY") {
                Some(v) => parse_size(v)
                    .ok_or_else(|| ConfigError::new("CRONIUM_TOOL_MEMORY", "use e.g. 64MiB"))?,
                None => 64 << 20,
            },
            allowed_hosts,
            egress: egress.into(),
            settings,
        })
    }
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
    /// `ENABLE_TLS` (false), `TLS_CERT`, `TLS_KEY`: serve HTTPS.
    pub tls: Option<TlsConfig>,
    /// `LOG_LEVEL` (info) and `LOG_FORMAT` (json).
    pub log_level: String,
    pub log_format: LogFormat,
    /// `CRONIUM_REQUEST_TIMEOUT` (60s): the deadline of one component call.
    pub request_timeout: Duration,
    /// `CRONIUM_INSTANCE_MEMORY` (64 MiB): the memory cap of one instance.
    pub component_memory: usize,
    /// `CRONIUM_MAX_INSTANCES` (1000): component instances alive at once.
    pub max_instances: u32,
    /// `CRONIUM_INSTANCE_REUSE` (1): how many requests one instance may
    /// serve. 1 gives every request a fresh instance; more lets an instance
    /// serve further requests that carry the same `Authorization` header,
    /// and only those (see `components::warm`).
    pub instance_reuse: u32,
    /// `CRONIUM_COMPONENT_EXPORT` (`handler`): the export the host calls;
    /// `wasi-http` calls every component the way Spin does.
    pub component_export: ComponentExport,
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
    /// `CRONIUM_COMPONENT_<GROUP>`: a `.wasm` to serve a group instead of
    /// the embedded one (e.g. `CRONIUM_COMPONENT_EXECUTIONS=/opt/x.wasm`).
    pub component_overrides: HashMap<String, PathBuf>,
    /// Tool components: where they are, their limits and their egress.
    pub tools: ToolsConfig,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars().collect())
    }

    /// Reads the configuration from `vars` (testable without touching the
    /// process environment).
    pub fn from_vars(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        let vars = Vars(vars);
        let get = |name: &str| vars.get(name);

        let port: u16 = match get("PORT") {
            Some(p) => p
                .parse()
                .map_err(|_| ConfigError::new("PORT", format!("not a port number: {p:?}")))?,
            None => 8081,
        };
        let host = get("HOST").unwrap_or("0.0.0.0");
        let listen = format!("{host}:{port}")
            .parse()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .map_err(|_| ConfigError::new("HOST", format!("not an IP address: {host:?}")))?;

        let jwt_secret = [
            "RUNTIME_JWT_SECRET",
            "JWT_SECRET",
            "RUNTIME_AUTH_JWT_SECRET",
        ]
        .iter()
        .find_map(|name| get(name))
        .map(str::to_owned);
        let jwt_algorithm = match get("JWT_ALGORITHM") {
            Some(name) => Algorithm::from_name(name).ok_or_else(|| {
                ConfigError::new(
                    "JWT_ALGORITHM",
                    format!("{name:?}: use HS256, HS384 or HS512"),
                )
            })?,
            None => Algorithm::Hs256,
        };
        let defaults = TokenPolicy::default();
        let token_policy = TokenPolicy {
            leeway: vars.duration("JWT_LEEWAY", defaults.leeway)?,
            max_lifetime: vars.duration("TOKEN_MAX_LIFETIME", defaults.max_lifetime)?,
        };

        let valkey = get("VALKEY_URL")
            .map(|url| -> Result<ValkeyConfig, ConfigError> {
                Ok(ValkeyConfig {
                    url: valkey_url(url)?,
                    password: get("VALKEY_PASSWORD").map(str::to_owned),
                    db: get("VALKEY_DB")
                        .map(|db| {
                            db.parse()
                                .map_err(|_| ConfigError::new("VALKEY_DB", "not an integer"))
                        })
                        .transpose()?,
                })
            })
            .transpose()?;

        let backend = get("BACKEND_URL")
            .map(|url| -> Result<BackendConfig, ConfigError> {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::new(
                        "BACKEND_URL",
                        "use an http:// or https:// URL",
                    ));
                }
                Ok(BackendConfig {
                    url: url.trim_end_matches('/').to_owned(),
                    token: get("BACKEND_TOKEN").unwrap_or_default().to_owned(),
                    timeout: vars.duration("BACKEND_TIMEOUT", Duration::from_secs(30))?,
                })
            })
            .transpose()?;

        let component_export = match get("CRONIUM_COMPONENT_EXPORT")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("handler") => ComponentExport::Handler,
            Some("wasi-http") => ComponentExport::WasiHttp,
            Some(other) => {
                return Err(ConfigError::new(
                    "CRONIUM_COMPONENT_EXPORT",
                    format!("{other:?}: use handler or wasi-http"),
                ));
            }
        };

        let log_format = match get("LOG_FORMAT").map(str::to_ascii_lowercase).as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") | Some("console") | Some("pretty") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("{other:?}: use json or text"),
                ));
            }
        };

        let component_overrides = vars
            .0
            .iter()
            .filter_map(|(name, value)| {
                let group = name.strip_prefix("CRONIUM_COMPONENT_")?;
                (!value.trim().is_empty()).then(|| {
                    (
                        group.to_ascii_lowercase().replace('_', "-"),
                        PathBuf::from(value.trim()),
                    )
                })
            })
            .collect();

        let max_instances: u32 = vars.number("CRONIUM_MAX_INSTANCES", 1000)?;
        let data_dir = PathBuf::from(get("CRONIUM_DATA_DIR").unwrap_or("cronium-data"));
        let tools = ToolsConfig::from_vars(&vars, &data_dir)?;
        Ok(Config {
            listen,
            jwt_secret,
            jwt_algorithm,
            token_policy,
            revocation_fail_closed: vars.boolean("REVOCATION_FAIL_CLOSED", false)?,
            rate_limit_per_min: match vars.get("RATE_LIMIT_PER_MIN") {
                Some(v) => v
                    .parse()
                    .map_err(|_| ConfigError::new("RATE_LIMIT_PER_MIN", "not a whole number"))?,
                None => 1000,
            },
            valkey,
            cache_ttl: vars.duration("CACHE_TTL", Duration::from_secs(300))?,
            backend,
            tls: if vars.boolean("ENABLE_TLS", false)? {
                let path = |name: &'static str| {
                    get(name).map(PathBuf::from).ok_or_else(|| {
                        ConfigError::new(name, "required when ENABLE_TLS is true")
                    })
                };
                Some(TlsConfig {
                    cert: path("TLS_CERT")?,
                    key: path("TLS_KEY")?,
                })
            } else {
                None
            },
            data_dir,
            log_level: get("LOG_LEVEL").unwrap_or("info").to_ascii_lowercase(),
            log_format,
            request_timeout: vars.duration("CRONIUM_REQUEST_TIMEOUT", Duration::from_secs(60))?,
            component_memory: match get("CRONIUM_INSTANCE_MEMORY") {
                Some(v) => parse_size(v)
                    .ok_or_else(|| ConfigError::new("CRONIUM_INSTANCE_MEMORY", "use e.g. 64MiB"))?,
                None => 64 << 20,
            },

            compile_cache: match vars.get("CRONIUM_CACHE_DIR") {
                Some(v) if matches!(v.to_ascii_lowercase().as_str(), "off" | "none" | "false") => {
                    None
                }
                Some(v) => Some(PathBuf::from(v)),
                None => Some(std::env::temp_dir().join("cronium-runtime")),
            },
            cors: if vars.boolean("ENABLE_CORS", true)? {
                Some(
                    vars.get("ALLOWED_ORIGINS")
                        .unwrap_or("*")
                        .split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_owned())
                        .filter(|o| !o.is_empty())
                        .collect(),
                )
            } else {
                None
            },
            max_connections: vars.number("CRONIUM_MAX_CONNECTIONS", 10_000)?,
            max_in_flight: vars.number("CRONIUM_MAX_IN_FLIGHT", max_instances as usize)?,
            body_timeout: vars.duration("CRONIUM_BODY_TIMEOUT", Duration::from_secs(30))?,
            write_timeout: vars.duration("CRONIUM_WRITE_TIMEOUT", Duration::from_secs(30))?,
            max_instances,
            instance_reuse: match vars.number("CRONIUM_INSTANCE_REUSE", 1)? {
                0 => {
                    return Err(ConfigError::new(
                        "CRONIUM_INSTANCE_REUSE",
                        "must be at least 1",
                    ));
                }
                n => n,
            },
            component_export,
            component_overrides,
            tools,
        })
    }
}

/// The environment, with empty values read as unset.
struct Vars(HashMap<String, String>);

impl Vars {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            Some(v) => parse_duration(v).ok_or_else(|| {
                ConfigError::new(
                    name,
                    format!("{v:?} is not a duration (e.g. 30s, 5m, 1h30m)"),
                )
            }),
            None => Ok(default),
        }
    }

    fn number<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError::new(name, format!("{v:?} is not a whole number"))),
            None => Ok(default),
        }
    }

    fn boolean(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError::new(
                name,
                format!("{other:?} is not a boolean"),
            )),
        }
    }
}

/// Parses a Go duration (`300ms`, `30s`, `5m`, `1h30m`); a bare number is
/// seconds. The rule is shared with the Spin adapter.
pub use cronium_rules::duration::parse as parse_duration;

/// Parses `64MiB`, `512KiB`, `1GiB`, `1048576` (bytes).
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: usize = text[..digits].parse().ok()?;
    let scale = match text[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Normalises a `VALKEY_URL` (`valkey://` means `redis://`), with the
/// rule the Spin adapter uses too.
fn valkey_url(url: &str) -> Result<String, ConfigError> {
    cronium_rules::valkey::normalize_url(url).ok_or_else(|| {
        ConfigError::new(
            "VALKEY_URL",
            "use a redis://, rediss://, valkey:// or unix:// URL",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("JWT_SECRET", "old"),
            ("RUNTIME_JWT_SECRET", "new"),
            ("RUNTIME_AUTH_JWT_SECRET", "older"),
        ])
        .unwrap();
        assert_eq!(c.jwt_secret.as_deref(), Some("new"));
        let c = config(&[("RUNTIME_AUTH_JWT_SECRET", "older")]).unwrap();
        assert_eq!(c.jwt_secret.as_deref(), Some("older"));
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
    fn go_durations_parse() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn instances_are_fresh_per_request_unless_reuse_is_asked_for() {
        assert_eq!(config(&[]).unwrap().instance_reuse, 1);
        let c = config(&[("CRONIUM_INSTANCE_REUSE", "64")]).unwrap();
        assert_eq!(c.instance_reuse, 64);
        let error = config(&[("CRONIUM_INSTANCE_REUSE", "0")]).unwrap_err();
        assert_eq!(error.name, "CRONIUM_INSTANCE_REUSE");
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
