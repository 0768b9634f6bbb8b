//! The tool registry: tool components loaded from the tools directory (and
//! the ones built into the binary), reloaded while the host runs.
//!
//! * Loading: every `*.wasm` in `CRONIUM_TOOLS_DIR` is compiled (through
//!   the precompiled cache), pre-instantiated and asked to `describe`
//!   itself; its manifest is checked with `cronium-rules` (id, unique action
//!   names, parameter schemas, host patterns). A file that fails is logged
//!   and skipped until it changes.
//! * Reloading: the directory is rescanned every `CRONIUM_TOOLS_POLL`; an
//!   added, replaced or removed file changes the catalogue atomically.
//!   A call holds its tool's `Arc`, so in-flight calls finish on the
//!   version they started with.
//! * Calling: each call gets a fresh store with its own deadline, memory
//!   cap and [`egress`] policy; a trap, a timeout or an exhausted memory
//!   ends that call with a typed error and touches nothing else.

pub mod egress;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use cronium_rules::tools::{ActionDecl, HostPattern, check_manifest};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use self::egress::{EgressPolicy, ToolEgress};
use crate::bindings::ToolActionPre;
use crate::bindings::tool_types::{Manifest, ToolRequest};
use crate::capabilities::tools::{ToolCall, ToolRunner, outcome_name};
use crate::compile_cache::CompileCache;
use crate::config::{Config, ToolsConfig};
use crate::sandbox::{self, MemoryLimit, Sandboxed};

pub use crate::capabilities::tools::ToolCallError;

/// The tools built into the binary (`CRONIUM_BUILTIN_TOOLS`).
const BUILTIN: &[(&str, &[u8])] = &[
    ("webhook", include_bytes!(env!("CRONIUM_TOOL_WEBHOOK_WASM"))),
    ("slack", include_bytes!(env!("CRONIUM_TOOL_SLACK_WASM"))),
    ("discord", include_bytes!(env!("CRONIUM_TOOL_DISCORD_WASM"))),
    ("email", include_bytes!(env!("CRONIUM_TOOL_EMAIL_WASM"))),
];

/// The compile cache's name for the tool `name`.
fn cache_name(name: &str) -> String {
    format!("tool-{name}")
}

/// How long a tool may take to describe itself.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a tool could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ToolLoadError {
    #[error("engine: {0:#}")]
    Engine(wasmtime::Error),
    #[error("reading the file: {0}")]
    Read(std::io::Error),
    #[error("compiling: {0:#}")]
    Compile(wasmtime::Error),
    #[error(
        "not a tool component (it must export cronium:runtime/tool and import only WASI): {0:#}"
    )]
    Link(wasmtime::Error),
    #[error("describe: {0}")]
    Describe(ToolCallError),
    #[error("manifest: {0}")]
    Manifest(cronium_rules::tools::ManifestError),
}

/// A loaded tool: its manifest and its pre-instantiated component.
pub struct LoadedTool {
    pub manifest: Manifest,
    pre: ToolActionPre<ToolState>,
    egress: Arc<EgressPolicy>,
    id: Arc<str>,
}

/// The store data of one tool call.
pub struct ToolState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: ToolEgress,
    limits: MemoryLimit,
}

impl Sandboxed for ToolState {
    fn memory_limit(&mut self) -> &mut MemoryLimit {
        &mut self.limits
    }
}

impl WasiView for ToolState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ToolState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// What the last scan saw of a file: changes are noticed by size and
/// modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

/// The tools served now. Replaced as a whole on every change.
#[derive(Default)]
struct Catalogue {
    tools: BTreeMap<String, Arc<LoadedTool>>,
    /// Every `.wasm` seen in the directory, and the tool it held (`None`
    /// when it could not be loaded).
    files: BTreeMap<PathBuf, (Stamp, Option<Arc<LoadedTool>>)>,
    builtins: Vec<Arc<LoadedTool>>,
}

/// The tool registry. Cheap to share (`Arc`).
pub struct ToolRegistry {
    engine: Engine,
    linker: Linker<ToolState>,
    compile_cache: CompileCache,
    config: ToolsConfig,
    catalogue: RwLock<Arc<Catalogue>>,
}

impl ToolRegistry {
    /// Loads the built-in tools and every tool in the tools directory.
    /// `host` is the host's configuration: its `tools`, and the engine
    /// and compile cache settings tools share with the components.
    pub async fn load(host: &Config) -> Result<Arc<Self>, ToolLoadError> {
        let config = &host.tools;
        let compile_cache = host.compile_cache.clone();
        let engine = Engine::new(&sandbox::engine_config(host, config.memory))
            .map_err(ToolLoadError::Engine)?;
        sandbox::start_epoch_clock(&engine).map_err(|e| ToolLoadError::Engine(e.into()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(ToolLoadError::Engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(ToolLoadError::Engine)?;

        let registry = Arc::new(ToolRegistry {
            engine,
            linker,
            compile_cache: CompileCache::new(compile_cache),
            config: config.clone(),
            catalogue: RwLock::default(),
        });
        let mut builtins = Vec::new();
        if config.builtin {
            for (name, wasm) in BUILTIN {
                // A built-in that does not load is a broken build, not an
                // operator's mistake: refuse to start.
                let tool = registry.load_tool(name, wasm.to_vec()).await?;
                builtins.push(Arc::new(tool));
            }
        }
        registry.publish(BTreeMap::new(), builtins);
        if let Err(error) = std::fs::create_dir_all(&config.dir) {
            tracing::warn!(dir = %config.dir.display(), %error, "cannot create the tools directory");
        }
        registry.rescan().await;
        Ok(registry)
    }

    /// Compiles the built-in tools with the engine [`ToolRegistry::load`]
    /// uses into `compile_cache`, for a later start to load
    /// (`cronium-runtime precompile`).
    pub fn precompile_builtins(config: &Config) -> Result<(), ToolLoadError> {
        let engine = Engine::new(&sandbox::engine_config(config, config.tools.memory))
            .map_err(ToolLoadError::Engine)?;
        let cache = CompileCache::new(config.compile_cache.clone());
        for (name, wasm) in BUILTIN {
            cache
                .component(&engine, &cache_name(name), wasm)
                .map_err(ToolLoadError::Compile)?;
        }
        Ok(())
    }

    /// Rescans the tools directory every `CRONIUM_TOOLS_POLL`, for as long
    /// as the registry lives.
    pub fn watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let poll = self.config.poll.max(Duration::from_millis(50));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(poll).await;
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                registry.rescan().await;
            }
        });
    }

    /// Every installed tool, ordered by id.
    pub fn installed(&self) -> Vec<Arc<LoadedTool>> {
        self.current().tools.values().cloned().collect()
    }

    /// The installed tool `id`.
    pub fn find(&self, id: &str) -> Option<Arc<LoadedTool>> {
        self.current().tools.get(id).cloned()
    }

    /// Runs `request` on tool `id` with the operator's settings for it.
    pub async fn execute(
        &self,
        id: &str,
        mut request: ToolRequest,
    ) -> Result<String, ToolCallError> {
        let tool = self.find(id).ok_or(ToolCallError::NotInstalled)?;
        request.settings = self
            .config
            .settings
            .get(id)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "{}".into());
        let started = std::time::Instant::now();
        let timeout = self.config.timeout;
        let (mut store, memory_hit) = self.new_store(&tool, timeout);
        let call = async {
            let instance = tool.pre.instantiate_async(&mut store).await?;
            instance
                .cronium_runtime_tool()
                .call_execute(&mut store, &request)
                .await
        };
        let outcome = match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(ToolCallError::TimedOut),
            Ok(Err(error)) => Err(sandbox::tool_failure(error, &memory_hit, id)),
            Ok(Ok(answer)) => answer.map_err(ToolCallError::Tool),
        };
        tracing::info!(
            tool = id,
            outcome = outcome_name(&outcome),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tool call"
        );
        outcome
    }

    fn current(&self) -> Arc<Catalogue> {
        self.catalogue
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A fresh store for one call of `tool`: its deadline, memory cap and
    /// egress policy, and the flag telling whether the cap was hit.
    fn new_store(
        &self,
        tool: &LoadedTool,
        timeout: Duration,
    ) -> (Store<ToolState>, Arc<AtomicBool>) {
        let (limits, memory_hit) = MemoryLimit::new(self.config.memory);
        let mut store = Store::new(
            &self.engine,
            ToolState {
                wasi: WasiCtx::builder().inherit_stderr().build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                hooks: ToolEgress {
                    tool: tool.id.clone(),
                    policy: tool.egress.clone(),
                },
                limits,
            },
        );
        sandbox::confine(&mut store, timeout);
        (store, memory_hit)
    }

    /// Compiles `wasm`, asks it to describe itself and checks the manifest.
    async fn load_tool(&self, name: &str, wasm: Vec<u8>) -> Result<LoadedTool, ToolLoadError> {
        let component = {
            let engine = self.engine.clone();
            let cache_name = cache_name(name);
            let cache = self.compile_cache.clone();
            tokio::task::spawn_blocking(move || cache.component(&engine, &cache_name, &wasm))
                .await
                .map_err(|e| ToolLoadError::Compile(e.into()))?
                .map_err(ToolLoadError::Compile)?
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(ToolActionPre::new)
            .map_err(ToolLoadError::Link)?;
        let mut loaded = LoadedTool {
            manifest: Manifest {
                id: name.to_owned(),
                version: String::new(),
                description: String::new(),
                actions: Vec::new(),
                outbound_hosts: Vec::new(),
            },
            pre,
            egress: Arc::new(EgressPolicy::deny_all()),
            id: Arc::from(name),
        };
        let (mut store, memory_hit) = self.new_store(&loaded, DESCRIBE_TIMEOUT);
        let describe = async {
            let instance = loaded.pre.instantiate_async(&mut store).await?;
            instance
                .cronium_runtime_tool()
                .call_describe(&mut store)
                .await
        };
        let manifest = match tokio::time::timeout(DESCRIBE_TIMEOUT, describe).await {
            Err(_) => Err(ToolCallError::TimedOut),
            Ok(result) => result.map_err(|e| sandbox::tool_failure(e, &memory_hit, name)),
        }
        .map_err(ToolLoadError::Describe)?;
        check_manifest(
            &manifest.id,
            manifest.actions.iter().map(|a| ActionDecl {
                name: &a.name,
                aliases: &a.aliases,
                parameters: &a.parameters,
            }),
            &manifest.outbound_hosts,
        )
        .map_err(ToolLoadError::Manifest)?;
        let declared = manifest
            .outbound_hosts
            .iter()
            .filter_map(|h| HostPattern::parse(h).ok())
            .collect();
        loaded.egress = Arc::new(EgressPolicy::new(
            declared,
            self.config.allowed_hosts.get(&manifest.id).cloned(),
            self.config.egress.clone(),
        ));
        loaded.id = Arc::from(manifest.id.as_str());
        loaded.manifest = manifest;
        Ok(loaded)
    }

    /// Looks at the tools directory and loads what changed.
    async fn rescan(&self) {
        let dir = self.config.dir.clone();
        let seen = match tokio::task::spawn_blocking(move || scan(&dir)).await {
            Ok(Ok(seen)) => seen,
            Ok(Err(error)) => {
                tracing::warn!(dir = %self.config.dir.display(), %error, "cannot read the tools directory");
                return;
            }
            Err(_) => return,
        };
        let previous = self.current();
        let unchanged = seen.len() == previous.files.len()
            && seen
                .iter()
                .all(|(path, stamp)| previous.files.get(path).is_some_and(|(s, _)| s == stamp));
        if unchanged {
            return;
        }
        let mut files = BTreeMap::new();
        for (path, stamp) in seen {
            if let Some((old_stamp, old)) = previous.files.get(&path)
                && *old_stamp == stamp
            {
                files.insert(path, (stamp, old.clone()));
                continue;
            }
            let loaded = match tokio::fs::read(&path).await {
                Ok(wasm) => {
                    let name = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    self.load_tool(&name, wasm).await
                }
                Err(error) => Err(ToolLoadError::Read(error)),
            };
            match loaded {
                Ok(tool) => {
                    tracing::info!(
                        tool = %tool.manifest.id,
                        version = %tool.manifest.version,
                        file = %path.display(),
                        "tool loaded"
                    );
                    files.insert(path, (stamp, Some(Arc::new(tool))));
                }
                Err(error) => {
                    tracing::error!(file = %path.display(), %error, "tool not loaded");
                    files.insert(path, (stamp, None));
                }
            }
        }
        for path in previous.files.keys().filter(|p| !files.contains_key(*p)) {
            tracing::info!(file = %path.display(), "tool file removed");
        }
        self.publish(files, previous.builtins.clone());
    }

    /// Builds the catalogue from the files and built-ins, and makes it current.
    fn publish(
        &self,
        files: BTreeMap<PathBuf, (Stamp, Option<Arc<LoadedTool>>)>,
        builtins: Vec<Arc<LoadedTool>>,
    ) {
        let mut tools: BTreeMap<String, Arc<LoadedTool>> = builtins
            .iter()
            .map(|t| (t.manifest.id.clone(), t.clone()))
            .collect();
        let mut from_files: HashMap<String, &Path> = HashMap::new();
        for (path, (_, tool)) in &files {
            let Some(tool) = tool else { continue };
            let id = &tool.manifest.id;
            // Two files with one id: the first by name wins, the other is
            // reported (each rescan that changes anything says it again).
            if let Some(first) = from_files.get(id.as_str()) {
                tracing::error!(tool = %id, file = %path.display(), kept = %first.display(), "two tool files declare the same id; ignoring this one");
                continue;
            }
            from_files.insert(id.clone(), path);
            tools.insert(id.clone(), tool.clone());
        }
        let catalogue = Arc::new(Catalogue {
            tools,
            files,
            builtins,
        });
        *self
            .catalogue
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = catalogue;
    }
}

/// The `.wasm` files in `dir` and their stamps. A missing directory holds
/// no tools.
fn scan(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, Stamp>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut seen = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_file() {
            seen.insert(
                path,
                Stamp {
                    len: metadata.len(),
                    modified: metadata.modified().ok(),
                },
            );
        }
    }
    Ok(seen)
}

impl ToolRunner for ToolRegistry {
    fn installed(&self) -> Vec<Manifest> {
        ToolRegistry::installed(self)
            .iter()
            .map(|t| t.manifest.clone())
            .collect()
    }

    fn find(&self, id: &str) -> Option<Manifest> {
        ToolRegistry::find(self, id).map(|t| t.manifest.clone())
    }

    fn execute<'a>(&'a self, id: &'a str, request: ToolRequest) -> ToolCall<'a> {
        Box::pin(ToolRegistry::execute(self, id, request))
    }

    fn watch(self: Arc<Self>) {
        ToolRegistry::watch(&self);
    }
}
