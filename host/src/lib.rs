//! The Cronium runtime host: serves the runtime API by running the
//! endpoint-group components on wasmtime, and gives them their
//! capabilities natively.
//!
//! The modules, from the bottom of the dependency graph up (each uses
//! only modules listed before it):
//!
//! * [`config`]: the environment (the Go service's variables and ours);
//! * [`error`]: the JSON errors the host answers itself;
//! * [`metrics`]: the Prometheus metrics of `/metrics`;
//! * [`compile_cache`]: compiled components kept on disk between starts;
//! * [`routing`]: which group (or the host itself) serves a path;
//! * [`drive`]: steps the protocol machines of `cronium-rules` (backend
//!   calls, lease waits, the access check) over the host's async I/O;
//! * [`bindings`]: the generated bindings of both WIT worlds (the one
//!   exception to the order: it names the two resource types it maps,
//!   `capabilities::auth::caller` and `capabilities::cache::lease`, both
//!   leaves that import nothing of the host);
//! * [`capabilities`]: `auth`, `cache` (Valkey or in-process), `backend`
//!   (the Cronium API or the embedded store), `audit` and `tools`, one
//!   module each with its host functions and `add_to_linker`;
//! * [`sandbox`]: the store every guest runs in (memory cap, epoch
//!   deadline) and what its failures become;
//! * [`tools`]: the tool registry (drop-in tool components, hot reload,
//!   per-call sandbox and egress policy);
//! * [`components`]: the engine, one pre-instantiated component per group,
//!   a fresh bounded store per request;
//! * [`server`]: HTTP (HTTPS with `ENABLE_TLS`), native `/health`, body
//!   caps, request log;
//! * [`native`]: what the benchmark's native baseline uses.

pub mod bindings;
pub mod capabilities;
pub mod compile_cache;
pub mod components;
pub use cronium_config as config;
pub mod drive;
pub mod error;
pub mod metrics;
pub mod routing;
pub mod sandbox;
pub mod server;
pub mod tools;

/// The host's capabilities as a plain Rust API, for the benchmark's native
/// baseline (`bench/native_baseline.rs`): the same work as the components
/// do, without wasm in between. Everything it needs, and nothing else.
pub mod native {
    pub use crate::bindings::tool_types::{Invocation, ToolRequest};
    pub use crate::capabilities::Capabilities;
    pub use crate::capabilities::backend::records::execution;
    pub use crate::capabilities::backend::{AuditRecord, now_rfc3339};
    pub use crate::config::Config;
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cronium_rules::rate_limit::Quota;
use cronium_rules::token::{TokenVerifier, WeakSecretError};
use tokio::net::TcpListener;

use crate::capabilities::Capabilities;
use crate::capabilities::audit::{AuditSink, AuditWorker};
use crate::capabilities::auth::Auth;
use crate::capabilities::auth::revocations::RevocationWatch;
use crate::capabilities::backend::credentials::CredentialFiles;
use crate::capabilities::backend::embedded::{EmbeddedStore, StoreError};
use crate::capabilities::backend::{Backend, HttpBackend, Store};
use crate::capabilities::cache::Cache;
use crate::capabilities::cache::memory::MemoryCache;
use crate::capabilities::cache::valkey::ValkeyCache;
use crate::components::{Components, LoadError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::tools::ToolRegistry;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "no JWT secret: set RUNTIME_JWT_SECRET (or JWT_SECRET), or run `cronium-runtime dev` to try it out"
    )]
    NoSecret,
    #[error(transparent)]
    WeakSecretError(#[from] WeakSecretError),
    #[error("VALKEY_URL: {0}")]
    Valkey(#[from] redis::RedisError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("built-in tool: {0}")]
    Tools(#[from] crate::tools::ToolLoadError),
    /// `TLS_CERT` or `TLS_KEY` cannot be served.
    #[error(transparent)]
    Tls(#[from] server::tls::TlsError),
    /// The client of an `https://` backend could not be set up.
    #[error("BACKEND_URL: {0}")]
    BackendTls(#[from] crate::capabilities::backend::BackendSetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Capabilities {
    /// The capabilities `config` selects (tools loaded), and the audit
    /// delivery task (which must run inside a Tokio runtime).
    pub async fn from_config(config: &Config) -> Result<(Capabilities, AuditWorker), StartError> {
        let secret = config.jwt_secret.as_deref().ok_or(StartError::NoSecret)?;
        let verifier =
            TokenVerifier::new(secret.as_bytes(), config.jwt_algorithm, config.token_policy)?;
        let mut auth = Auth::new(
            verifier,
            config.revocation_fail_closed,
            config.token_policy.max_lifetime,
            (config.rate_limit_per_min > 0).then(|| Quota::per_minute(config.rate_limit_per_min)),
            &config.bounds,
        );
        if let Some(execution_id) = &config.execution_id {
            auth = auth.for_execution(execution_id.clone());
        }
        if let Some(valkey) = &config.valkey {
            auth = auth.with_watch(RevocationWatch::start(valkey)?);
        }
        let cache = match &config.valkey {
            Some(valkey) => Cache::valkey(
                ValkeyCache::new(valkey, config.cache_ttl)?,
                config.cache_ttl,
                config.bounds.near_cache_entries,
            ),
            None => Cache::Memory(MemoryCache::new(
                config.cache_ttl,
                config.bounds.memory_cache_entries,
            )),
        };
        let store = match &config.backend {
            Some(backend) => {
                if backend.token.is_empty() {
                    tracing::warn!(
                        "BACKEND_URL is set without BACKEND_TOKEN: the Cronium app refuses \
                         every call without it (set BACKEND_TOKEN to the app's INTERNAL_API_KEY)"
                    );
                }
                Store::Http(HttpBackend::new(backend)?)
            }
            None => Store::Embedded(EmbeddedStore::open(&config.data_dir)?),
        };
        let backend = Arc::new(Backend::new(
            store,
            CredentialFiles::new(&config.tool_credentials_dir),
            config.variable_key_max,
        ));
        let (audit, audit_worker) = AuditSink::start(
            backend.clone(),
            config.data_dir.join("audit-spool"),
            cache.shared_valkey(),
            config.bounds.audit_queue,
        );
        let tools = ToolRegistry::load(config).await?;
        let capabilities = Capabilities {
            auth,
            cache,
            backend,
            audit,
            tools,
            metrics: Arc::new(Metrics::default()),
        };
        Ok((capabilities, audit_worker))
    }
}

pub use server::App;

/// A started host: components loaded, capabilities up, socket bound.
pub struct Runtime {
    app: Arc<App>,
    audit: AuditWorker,
    listener: TcpListener,
    /// `Some` when the listener serves HTTPS.
    tls: Option<server::tls::TlsAcceptor>,
    /// `CRONIUM_STOP_TIMEOUT`: from the shutdown signal to the end of
    /// [`Runtime::serve`], at most.
    stop_timeout: Duration,
}

impl Runtime {
    /// Builds the capabilities and components of `config` and binds its
    /// address. Valkey is connected lazily: it may come up later.
    pub async fn start(config: &Config) -> Result<Runtime, StartError> {
        // First, so that a bad certificate or key fails the start at once.
        let tls = config
            .tls
            .as_ref()
            .map(server::tls::TlsAcceptor::new)
            .transpose()?;
        // Bound before the components load, so that a client (a health
        // check right after the container starts) waits in the listen
        // backlog for its answer instead of being refused.
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let (capabilities, audit_worker) = Capabilities::from_config(config).await?;
        capabilities.tools.clone().watch();
        let capabilities = Arc::new(capabilities);
        let components = Components::load(config, capabilities.clone())?;
        tracing::info!(
            addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            cache = if config.valkey.is_some() { "valkey" } else { "in-process" },
            backend = if config.backend.is_some() { "http" } else { "embedded" },
            scheme = if tls.is_some() { "https" } else { "http" },
            "cronium runtime listening"
        );
        if let Some(tls) = &tls {
            tls.watch();
        }
        Ok(Runtime {
            app: Arc::new(App {
                components,
                capabilities,
                front: server::Front::from_config(config),
            }),
            audit: audit_worker,
            listener,
            tls,
            stop_timeout: config.stop_timeout,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, drains open requests, then
    /// delivers the queued audit events: within `CRONIUM_STOP_TIMEOUT`,
    /// two thirds of it for the requests and the rest for the audit.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let drain = self.stop_timeout * 2 / 3;
        let audit_flush = self.stop_timeout.saturating_sub(drain);
        server::serve(self.listener, self.tls, self.app.clone(), shutdown, drain).await;
        // Dropping the last handle on the capabilities closes the audit queue.
        drop(self.app);
        self.audit.finish(audit_flush).await;
    }
}
