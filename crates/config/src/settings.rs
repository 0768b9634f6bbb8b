//! Every setting the host reads, in one table: its variable, its key in
//! `config.yaml` (the Go service's schema, ours under `cronium:`), its
//! default and what it means. Reading (`sources`), `--help` and
//! `cronium-runtime config` are all driven by this table, so a setting
//! added here is documented and reported everywhere at once.

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The plain variable, as the Go service names it (`RATE_LIMIT_PER_MIN`).
    pub var: &'static str,
    /// The dotted key in `config.yaml` (`security.rateLimitPerMin`).
    pub key: &'static str,
    /// The default, written as a value of the setting would be (`5m`);
    /// `None`: unset, or computed (see `default_note`).
    pub default: Option<&'static str>,
    /// What the default is when it is computed from other settings.
    pub default_note: Option<&'static str>,
    /// Never printed (`cronium-runtime config` shows `<redacted>`).
    pub secret: bool,
    /// One line for `--help`.
    pub help: &'static str,
}

impl Setting {
    const fn new(var: &'static str, key: &'static str, help: &'static str) -> Self {
        Setting {
            var,
            key,
            default: None,
            default_note: None,
            secret: false,
            help,
        }
    }

    const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }

    const fn computed(mut self, note: &'static str) -> Self {
        self.default_note = Some(note);
        self
    }

    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// The `config.yaml` section (`security`).
    pub fn section(&self) -> &'static str {
        self.key
            .split_once('.')
            .map_or(self.key, |(section, _)| section)
    }

    /// `RUNTIME_<NAME>`: the highest-precedence spelling.
    pub fn prefixed_var(&self) -> String {
        format!("RUNTIME_{}", self.var)
    }

    /// `RUNTIME_<SECTION>_<NAME>`: the Go service's envconfig name
    /// (`RUNTIME_SECURITY_RATE_LIMIT_PER_MIN`).
    pub fn sectioned_var(&self) -> String {
        format!(
            "RUNTIME_{}_{}",
            self.section().to_ascii_uppercase(),
            self.var
        )
    }

    /// The default as `--help` and `config` show it.
    pub fn default_text(&self) -> &'static str {
        self.default.or(self.default_note).unwrap_or("unset")
    }
}

/// TCP port the host listens on (default 8081; the runners' SSH tunnel
/// targets 8089).
pub const PORT: Setting = Setting::new("PORT", "server.port", "port to listen on").default("8081");
/// IP address the host listens on, not a name (default `0.0.0.0`: every
/// IPv4 interface); an IPv6 address is written without brackets.
pub const HOST: Setting =
    Setting::new("HOST", "server.host", "address to listen on").default("0.0.0.0");

/// HMAC secret the orchestrator signs execution tokens with, at least 16
/// bytes. No default: the host does not serve without one (`dev` keeps a
/// generated one). Never printed.
pub const JWT_SECRET: Setting = Setting::new(
    "JWT_SECRET",
    "auth.jwtSecret",
    "HMAC secret shared with the orchestrator (required, at least 16 bytes)",
)
.secret();
/// The one algorithm a token may be signed with: `HS256` (default),
/// `HS384` or `HS512`.
pub const JWT_ALGORITHM: Setting = Setting::new(
    "JWT_ALGORITHM",
    "auth.jwtAlgorithm",
    "token signature algorithm: HS256, HS384 or HS512",
)
.default("HS256");
/// Clock skew tolerated on a token's `exp` and `nbf` (default 30s).
pub const JWT_LEEWAY: Setting = Setting::new(
    "JWT_LEEWAY",
    "auth.jwtLeeway",
    "clock skew allowed on exp and nbf",
)
.default("30s");
/// Oldest a token may be, counted from its `iat` whatever its `exp`
/// says (default 2h); an older one is refused (401).
pub const TOKEN_MAX_LIFETIME: Setting = Setting::new(
    "TOKEN_MAX_LIFETIME",
    "auth.tokenMaxLifetime",
    "a token older than this (from iat) is refused",
)
.default("2h");
/// The one execution this host serves, as the orchestrator's per-job
/// sidecar: any other execution's token gets 403. Unset (default): every
/// execution.
pub const EXECUTION_ID: Setting = Setting::new(
    "EXECUTION_ID",
    "auth.executionId",
    "serve this one execution only (a per-job sidecar): any other execution's token gets 403",
);
/// Whether requests are refused (503) once token revocation cannot be
/// checked for over a minute (default false: they are served).
pub const REVOCATION_FAIL_CLOSED: Setting = Setting::new(
    "REVOCATION_FAIL_CLOSED",
    "auth.revocationFailClosed",
    "answer 503 when revocation cannot be checked for over a minute",
)
.default("false");

/// Where Valkey is: a `redis://`, `rediss://`, `unix://` or `valkey://`
/// URL, or the comma-separated seeds of a cluster. Unset (default): an
/// in-process cache that no other host shares.
pub const VALKEY_URL: Setting = Setting::new(
    "VALKEY_URL",
    "cache.url",
    "redis://, rediss://, unix:// or valkey:// URL; unset: in-process cache",
);
/// Valkey's password; when set, it overrides one in [`VALKEY_URL`].
/// Never printed.
pub const VALKEY_PASSWORD: Setting =
    Setting::new("VALKEY_PASSWORD", "cache.password", "Valkey password").secret();
/// Valkey database number; when set, it overrides one in
/// [`VALKEY_URL`] (a cluster has database 0 only).
pub const VALKEY_DB: Setting = Setting::new("VALKEY_DB", "cache.db", "Valkey database number");
/// Default time-to-live of cached entries (default 5m).
pub const CACHE_TTL: Setting =
    Setting::new("CACHE_TTL", "cache.ttl", "default TTL of cached entries").default("5m");

/// Base URL of the Cronium app's internal API (`http://` or `https://`,
/// a trailing `/` dropped). Unset (default): the embedded store in
/// [`DATA_DIR`].
pub const BACKEND_URL: Setting = Setting::new(
    "BACKEND_URL",
    "backend.url",
    "the Cronium internal API (http:// or https://); unset: embedded store",
);
/// Bearer token sent on every backend call: the app's
/// `INTERNAL_API_KEY`. Never printed.
pub const BACKEND_TOKEN: Setting = Setting::new(
    "BACKEND_TOKEN",
    "backend.token",
    "bearer token for the backend",
)
.secret();
/// Deadline of one backend call (default 30s).
pub const BACKEND_TIMEOUT: Setting = Setting::new(
    "BACKEND_TIMEOUT",
    "backend.timeout",
    "deadline of one backend call",
)
.default("30s");

/// Lowest level logged: `error`, `warn`, `info` (default), `debug` or
/// `trace`.
pub const LOG_LEVEL: Setting = Setting::new(
    "LOG_LEVEL",
    "logging.level",
    "error, warn, info, debug or trace",
)
.default("info");
/// How log lines on stderr are written: `json` (default) or `text`
/// (also spelled `console` or `pretty`), for people.
pub const LOG_FORMAT: Setting =
    Setting::new("LOG_FORMAT", "logging.format", "json or text").default("json");

/// Whether the host answers CORS itself, preflights included (default
/// true).
pub const ENABLE_CORS: Setting =
    Setting::new("ENABLE_CORS", "security.enableCors", "answer CORS").default("true");
/// Origins CORS allows: `*` (default) or a comma-separated list (a YAML
/// list in the file).
pub const ALLOWED_ORIGINS: Setting = Setting::new(
    "ALLOWED_ORIGINS",
    "security.allowedOrigins",
    "CORS origins, comma-separated (a list in the file)",
)
.default("*");
/// Requests one execution may make a minute, counted across every host
/// sharing the Valkey (default 1000; 0: no limit). Past it: 429 with
/// `Retry-After`.
pub const RATE_LIMIT_PER_MIN: Setting = Setting::new(
    "RATE_LIMIT_PER_MIN",
    "security.rateLimitPerMin",
    "requests an execution may make a minute, across hosts; 0: off",
)
.default("1000");
/// Whether to serve HTTPS with [`TLS_CERT`] and [`TLS_KEY`] (default
/// false: plain HTTP); both are then required.
pub const ENABLE_TLS: Setting = Setting::new(
    "ENABLE_TLS",
    "security.enableTls",
    "serve HTTPS with TLS_CERT and TLS_KEY",
)
.default("false");
/// PEM file with the certificate chain, leaf first, for [`ENABLE_TLS`];
/// re-read when it changes on disk.
pub const TLS_CERT: Setting = Setting::new(
    "TLS_CERT",
    "security.tlsCert",
    "PEM certificate chain (re-read when it changes)",
);
/// PEM file with the private key (PKCS#8, PKCS#1 or SEC1) for
/// [`ENABLE_TLS`].
pub const TLS_KEY: Setting = Setting::new("TLS_KEY", "security.tlsKey", "PEM private key");

/// Directory of the embedded store, the audit spool and drop-in tools
/// (default `cronium-data`, relative to the working directory).
pub const DATA_DIR: Setting = Setting::new(
    "CRONIUM_DATA_DIR",
    "cronium.dataDir",
    "the embedded store, audit spool and drop-in tools",
)
.default("cronium-data");
/// Directory where compiled components are kept between starts (`off`,
/// `none` or `false`: none). Its default is computed (see `default_note`);
/// one owned by another user or writable by others is not used.
pub const CACHE_DIR: Setting = Setting::new(
    "CRONIUM_CACHE_DIR",
    "cronium.cacheDir",
    "compiled components kept between starts (off: none); must be yours and private",
)
.computed(
    "$XDG_CACHE_HOME/cronium-runtime, ~/.cache/cronium-runtime or <CRONIUM_DATA_DIR>/compile-cache",
);
/// Deadline of one component call (default 60s); past it, 504.
pub const REQUEST_TIMEOUT: Setting = Setting::new(
    "CRONIUM_REQUEST_TIMEOUT",
    "cronium.requestTimeout",
    "deadline of one component call (504 past it)",
)
.default("60s");
/// Memory cap of one component instance, a size such as `64MiB`
/// (default) or a number of bytes.
pub const INSTANCE_MEMORY: Setting = Setting::new(
    "CRONIUM_INSTANCE_MEMORY",
    "cronium.instanceMemory",
    "memory cap of one component instance",
)
.default("64MiB");
/// Component instances alive at once, the pool size (default 1000); also
/// the default of [`MAX_IN_FLIGHT`].
pub const MAX_INSTANCES: Setting = Setting::new(
    "CRONIUM_MAX_INSTANCES",
    "cronium.maxInstances",
    "component instances alive at once (pool size)",
)
.default("1000");
/// Requests one component instance may serve, only ones carrying the
/// same `Authorization` header (default 128; 1: a fresh instance per
/// request; 0 is refused).
pub const INSTANCE_REUSE: Setting = Setting::new(
    "CRONIUM_INSTANCE_REUSE",
    "cronium.instanceReuse",
    "requests one instance may serve, only for the same Authorization; 1: a fresh instance per request",
)
.default("128");
/// The export the host calls: `handler` (default), the direct
/// `cronium:runtime/handler` one, or `wasi-http`, as Spin calls.
pub const COMPONENT_EXPORT: Setting = Setting::new(
    "CRONIUM_COMPONENT_EXPORT",
    "cronium.componentExport",
    "export the host calls: handler or wasi-http",
)
.default("handler");
/// How a component's linear memory sits in the address space:
/// `reserved` (default) reserves 4 GiB and guard pages per memory, so that
/// compiled code needs no bounds checks; `compact` reserves only
/// [`INSTANCE_MEMORY`] and checks bounds in code, for hosts whose address
/// space is limited (`ulimit -v`, valgrind).
pub const ADDRESS_SPACE: Setting = Setting::new(
    "CRONIUM_ADDRESS_SPACE",
    "cronium.addressSpace",
    "linear memory layout: reserved (4 GiB and guards a memory, no bounds checks) or compact (for ulimit -v, valgrind)",
)
.default("reserved");
/// Whether to write `/tmp/perf-<pid>.map`, naming the guests' compiled
/// functions for `perf` and valgrind (default false).
pub const PERF_MAP: Setting = Setting::new(
    "CRONIUM_PERF_MAP",
    "cronium.perfMap",
    "write /tmp/perf-<pid>.map naming the guests' compiled code, for perf and valgrind",
)
.default("false");
/// Open client connections at most (default 10000); further clients
/// wait in the listen backlog.
pub const MAX_CONNECTIONS: Setting = Setting::new(
    "CRONIUM_MAX_CONNECTIONS",
    "cronium.maxConnections",
    "open client connections at most",
)
.default("10000");
/// Component requests answered at once (default: [`MAX_INSTANCES`]);
/// more get 503 with `Retry-After`.
pub const MAX_IN_FLIGHT: Setting = Setting::new(
    "CRONIUM_MAX_IN_FLIGHT",
    "cronium.maxInFlight",
    "component requests at once; more get 503",
)
.computed("CRONIUM_MAX_INSTANCES");
/// Longest a client may take to send a request body (default 30s);
/// past it, 408.
pub const BODY_TIMEOUT: Setting = Setting::new(
    "CRONIUM_BODY_TIMEOUT",
    "cronium.bodyTimeout",
    "longest a request body may take to arrive (408)",
)
.default("30s");
/// Longest a client may leave an answer unread before it is
/// disconnected (default 30s).
pub const WRITE_TIMEOUT: Setting = Setting::new(
    "CRONIUM_WRITE_TIMEOUT",
    "cronium.writeTimeout",
    "longest a client may leave an answer unread",
)
.default("30s");
/// Verified tokens the host remembers, so that a token seen before is
/// not verified again (default 10000, ~1 KiB each; at least 1). Full of
/// live tokens, the memo is cleared.
pub const TOKEN_MEMO: Setting = Setting::new(
    "CRONIUM_TOKEN_MEMO",
    "cronium.tokenMemo",
    "verified tokens remembered (~1 KiB each)",
)
.default("10000");
/// Executions the host keeps rate-limit state for (default 100000, ~150 B
/// each, twice: the shares of the shared budget, and the local counters
/// used while Valkey is down; at least 1). Full, idle shares are dropped.
pub const RATE_EXECUTIONS: Setting = Setting::new(
    "CRONIUM_RATE_EXECUTIONS",
    "cronium.rateExecutions",
    "executions with rate-limit state in memory (~300 B each)",
)
.default("100000");
/// Execution records kept in front of Valkey (default 1024, each at most
/// 64 KiB and 60 s; at least 1).
pub const NEAR_CACHE_ENTRIES: Setting = Setting::new(
    "CRONIUM_NEAR_CACHE_ENTRIES",
    "cronium.nearCacheEntries",
    "execution records kept in memory in front of Valkey (each <= 64 KiB)",
)
.default("1024");
/// Entries of the in-process cache used without `VALKEY_URL` (default
/// 100000, each with its TTL; at least 1).
pub const MEMORY_CACHE_ENTRIES: Setting = Setting::new(
    "CRONIUM_MEMORY_CACHE_ENTRIES",
    "cronium.memoryCacheEntries",
    "entries of the in-process cache (without VALKEY_URL)",
)
.default("100000");
/// Audit events waiting in memory for the courier (default 100000, ~0.8
/// KiB each; at least 1); past it, new events are refused and counted.
pub const AUDIT_QUEUE: Setting = Setting::new(
    "CRONIUM_AUDIT_QUEUE",
    "cronium.auditQueue",
    "audit events waiting in memory (~0.8 KiB each); more are counted as dropped",
)
.default("100000");
/// Longest variable key the backend stores, in characters (default 255,
/// the Cronium app's `varchar(255)`; must be above 0); a longer key is a
/// 400 before any backend call.
pub const VARIABLE_KEY_MAX: Setting = Setting::new(
    "CRONIUM_VARIABLE_KEY_MAX",
    "cronium.variableKeyMax",
    "longest variable key the backend stores, in characters (the Cronium app's varchar(255)); longer: 400",
)
.default("255");
/// Directory of the tool credentials the operator keeps,
/// `<dir>/<user id>/<tool id>.json`, read before the backend's credentials
/// route whatever the backend (default `<CRONIUM_DATA_DIR>/credentials`).
pub const TOOL_CREDENTIALS_DIR: Setting = Setting::new(
    "CRONIUM_TOOL_CREDENTIALS_DIR",
    "cronium.toolCredentialsDir",
    "tool credentials the operator keeps: <dir>/<user id>/<tool id>.json, read before the backend's route",
)
.computed("<CRONIUM_DATA_DIR>/credentials");
/// Longest from a stop signal to the exit (default 15s): open requests
/// get two thirds of it to finish, queued audit events the rest.
pub const STOP_TIMEOUT: Setting = Setting::new(
    "CRONIUM_STOP_TIMEOUT",
    "cronium.stopTimeout",
    "on SIGTERM: open requests get two thirds of this to finish, the audit queue the rest",
)
.default("15s");
/// Directory of drop-in tool components (`.wasm`), default
/// `<CRONIUM_DATA_DIR>/tools`.
pub const TOOLS_DIR: Setting = Setting::new(
    "CRONIUM_TOOLS_DIR",
    "cronium.toolsDir",
    "drop-in tool components",
)
.computed("<CRONIUM_DATA_DIR>/tools");
/// How often [`TOOLS_DIR`] is rescanned for added, replaced or removed
/// files (default 1s).
pub const TOOLS_POLL: Setting = Setting::new(
    "CRONIUM_TOOLS_POLL",
    "cronium.toolsPoll",
    "how often the tools directory is rescanned",
)
.default("1s");
/// Whether to serve the tools built into the binary: webhook, slack,
/// discord and email (default true); a drop-in with the same id wins.
pub const BUILTIN_TOOLS: Setting = Setting::new(
    "CRONIUM_BUILTIN_TOOLS",
    "cronium.builtinTools",
    "serve the built-in webhook, slack, discord and email tools",
)
.default("true");
/// Deadline of one tool call (default 30s); past it, 504.
pub const TOOL_TIMEOUT: Setting = Setting::new(
    "CRONIUM_TOOL_TIMEOUT",
    "cronium.toolTimeout",
    "deadline of one tool call",
)
.default("30s");
/// Memory cap of one tool call's instance (default 64MiB).
pub const TOOL_MEMORY: Setting = Setting::new(
    "CRONIUM_TOOL_MEMORY",
    "cronium.toolMemory",
    "memory cap of one tool call",
)
.default("64MiB");
/// Narrows the hosts each tool declared: `tool=host,host;tool2=host`
/// (unset by default). Naming a host exactly here is the only way to let
/// a tool reach a loopback or private address.
pub const TOOL_ALLOWED_HOSTS: Setting = Setting::new(
    "CRONIUM_TOOL_ALLOWED_HOSTS",
    "cronium.toolAllowedHosts",
    "narrows a tool's hosts: tool=host,host;tool2=host",
);
/// Sends a tool's traffic for one origin to another (a sandbox, an
/// egress proxy): `origin=origin,...` (unset by default).
pub const TOOL_EGRESS: Setting = Setting::new(
    "CRONIUM_TOOL_EGRESS",
    "cronium.toolEgress",
    "send a tool origin's traffic elsewhere: origin=origin,...",
);
/// Operator settings per tool: a JSON object keyed by tool id whose
/// values are objects (a map in the file); default `{}`.
pub const TOOL_SETTINGS: Setting = Setting::new(
    "CRONIUM_TOOL_SETTINGS",
    "cronium.toolSettings",
    "operator settings per tool, a JSON object keyed by tool id (a map in the file)",
)
.default("{}");

/// Every setting, in the order `--help` and `config` list them.
pub const ALL: &[Setting] = &[
    PORT,
    HOST,
    JWT_SECRET,
    JWT_ALGORITHM,
    JWT_LEEWAY,
    TOKEN_MAX_LIFETIME,
    EXECUTION_ID,
    REVOCATION_FAIL_CLOSED,
    VALKEY_URL,
    VALKEY_PASSWORD,
    VALKEY_DB,
    CACHE_TTL,
    BACKEND_URL,
    BACKEND_TOKEN,
    BACKEND_TIMEOUT,
    VARIABLE_KEY_MAX,
    LOG_LEVEL,
    LOG_FORMAT,
    ENABLE_CORS,
    ALLOWED_ORIGINS,
    RATE_LIMIT_PER_MIN,
    ENABLE_TLS,
    TLS_CERT,
    TLS_KEY,
    DATA_DIR,
    CACHE_DIR,
    REQUEST_TIMEOUT,
    INSTANCE_MEMORY,
    MAX_INSTANCES,
    INSTANCE_REUSE,
    COMPONENT_EXPORT,
    ADDRESS_SPACE,
    PERF_MAP,
    MAX_CONNECTIONS,
    MAX_IN_FLIGHT,
    BODY_TIMEOUT,
    WRITE_TIMEOUT,
    TOKEN_MEMO,
    RATE_EXECUTIONS,
    NEAR_CACHE_ENTRIES,
    MEMORY_CACHE_ENTRIES,
    AUDIT_QUEUE,
    TOOL_CREDENTIALS_DIR,
    STOP_TIMEOUT,
    TOOLS_DIR,
    TOOLS_POLL,
    BUILTIN_TOOLS,
    TOOL_TIMEOUT,
    TOOL_MEMORY,
    TOOL_ALLOWED_HOSTS,
    TOOL_EGRESS,
    TOOL_SETTINGS,
];

/// `CRONIUM_COMPONENT_<GROUP>=<path>` (file: `cronium.component.<group>`):
/// a `.wasm` serving a group instead of the embedded one. The one
/// setting whose names are open-ended.
pub const COMPONENT_OVERRIDE_PREFIX: &str = "CRONIUM_COMPONENT_";
/// The file section of component overrides.
pub const COMPONENT_OVERRIDE_KEY: &str = "cronium.component";

/// Names read before the configuration itself.
pub const CONFIG_FILE: &str = "CONFIG_FILE";
/// The file read when `CONFIG_FILE` is not set, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config.yaml";

/// The settings table as `--help` shows it.
pub fn help_text() -> String {
    let mut text = String::from(
        "Settings (environment variable, config.yaml key, default). Each variable is also read as \
         RUNTIME_<NAME> and RUNTIME_<SECTION>_<NAME> (e.g. RUNTIME_SECURITY_RATE_LIMIT_PER_MIN); \
         precedence: RUNTIME_<NAME> > RUNTIME_<SECTION>_<NAME> > <NAME> > config.yaml (or the \
         file CONFIG_FILE names; ${VAR} in its values is taken from the environment) > default. \
         Durations are Go-style (300ms, 30s, 5m, 1h30m); a bare number is seconds (CACHE_TTL=300). `cronium-runtime config` prints the \
         effective configuration and where each value came from.\n\n",
    );
    for setting in ALL {
        text.push_str(&format!(
            "  {:<28} {:<27} [default: {}]\n      {}\n",
            setting.var,
            setting.key,
            setting.default_text(),
            setting.help
        ));
    }
    text.push_str(&format!(
        "  {:<28} {:<27} [default: embedded]\n      a .wasm serving a group instead of the embedded one\n",
        "CRONIUM_COMPONENT_<GROUP>", "cronium.component.<group>"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_one_variable_and_one_key() {
        let mut vars: Vec<_> = ALL.iter().map(|s| s.var).collect();
        let mut keys: Vec<_> = ALL.iter().map(|s| s.key).collect();
        vars.sort_unstable();
        keys.sort_unstable();
        let (n_vars, n_keys) = (vars.len(), keys.len());
        vars.dedup();
        keys.dedup();
        assert_eq!((vars.len(), keys.len()), (n_vars, n_keys));
        for s in ALL {
            assert!(s.key.contains('.'), "{} has no section", s.key);
        }
    }

    #[test]
    fn go_envconfig_names_are_derived_from_section_and_name() {
        assert_eq!(
            RATE_LIMIT_PER_MIN.sectioned_var(),
            "RUNTIME_SECURITY_RATE_LIMIT_PER_MIN"
        );
        assert_eq!(JWT_SECRET.sectioned_var(), "RUNTIME_AUTH_JWT_SECRET");
        assert_eq!(VALKEY_URL.sectioned_var(), "RUNTIME_CACHE_VALKEY_URL");
        assert_eq!(JWT_SECRET.prefixed_var(), "RUNTIME_JWT_SECRET");
    }

    /// The rows of the settings table in `docs/configuration.md`: the
    /// variables of the first cell (aliases included) and the row's text.
    fn documented_rows() -> Vec<(Vec<String>, String)> {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/configuration.md"
        ))
        .expect("docs/configuration.md");
        doc.lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let first = line.split('|').nth(1).unwrap_or_default();
                let vars = first
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect();
                (vars, line.to_owned())
            })
            .collect()
    }

    #[test]
    fn the_configuration_doc_lists_every_setting_with_its_default() {
        let rows = documented_rows();
        for setting in ALL {
            let row = rows
                .iter()
                .find(|(vars, _)| vars.iter().any(|v| v == setting.var))
                .map(|(_, row)| row)
                .unwrap_or_else(|| panic!("{} has no row in docs/configuration.md", setting.var));
            if let Some(default) = setting.default {
                assert!(
                    row.contains(&format!("`{default}`")),
                    "docs/configuration.md gives {} another default than `{default}`: {row}",
                    setting.var
                );
            }
        }
        // Aliases the table names beside a setting's variable.
        let aliases = [
            "RUNTIME_JWT_SECRET",
            "RUNTIME_AUTH_JWT_SECRET",
            "CRONIUM_COMPONENT_<GROUP>",
        ];
        for (vars, row) in &rows {
            for var in vars {
                assert!(
                    ALL.iter().any(|s| s.var == var) || aliases.contains(&var.as_str()),
                    "docs/configuration.md documents {var}, which is no setting: {row}"
                );
            }
        }
    }
}
