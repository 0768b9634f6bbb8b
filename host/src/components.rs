//! The component engine: each endpoint group is compiled once and
//! pre-instantiated once; a request is served by an instance that served
//! its very credential before ([`warm`]; `CRONIUM_INSTANCE_REUSE`, 128 by
//! default), else by a new one in a fresh store from the pooling
//! allocator, always with an epoch deadline and a memory cap. A trap, a
//! deadline or an exhausted memory ends that request with a JSON error,
//! drops the instance and touches nothing else.
//!
//! A request enters a component through its `cronium:runtime/handler`
//! export, one call with the request read whole (`wit/handler.wit`), or,
//! for a component without it or with `CRONIUM_COMPONENT_EXPORT=wasi-http`,
//! through `wasi:http/incoming-handler`, as under Spin.
//!
//! Endpoint components reach the world through their capabilities only:
//! their outgoing `wasi:http` requests are refused. The one exception is
//! the batch group's component, whose requests to a sibling group
//! (`http://<group>.spin.internal/<that group's route>`, Spin's service
//! chaining address) are served here in process ([`Outgoing`]), by that
//! group's component, exactly as if they had come from the network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod siblings;
mod warm;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::handler;
use crate::bindings::{Endpoint, EndpointPre};
use crate::capabilities::{Capabilities, CapabilitiesCtx, CapabilitiesCtxView, CapabilitiesView};
use crate::compile_cache::CompileCache;
use crate::config::{ComponentExport, Config};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::sandbox::{self, EPOCH_TICK, MemoryLimit, Sandboxed};
use siblings::Outgoing;
use warm::{WarmKey, WarmPool};

pub use crate::routing::Group;

/// The component of `group` built into the binary.
fn embedded(group: Group) -> &'static [u8] {
    match group {
        Group::Executions => include_bytes!(env!("CRONIUM_EXECUTIONS_WASM")),
        Group::Variables => include_bytes!(env!("CRONIUM_VARIABLES_WASM")),
        Group::ToolActions => include_bytes!(env!("CRONIUM_TOOL_ACTIONS_WASM")),
        Group::Batch => include_bytes!(env!("CRONIUM_BATCH_WASM")),
    }
}

/// Why the components could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("component for {group}: {source:#}")]
    Component {
        group: &'static str,
        source: wasmtime::Error,
    },
    #[error("engine: {0:#}")]
    Engine(wasmtime::Error),
}

/// The store data of one request.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    /// Where its outgoing `wasi:http` requests go (nowhere, but for the
    /// batch group's).
    hooks: Outgoing,
    limits: MemoryLimit,
    /// What the capabilities know of the request being served.
    capabilities: CapabilitiesCtx,
}

impl CapabilitiesView for RequestState {
    fn capabilities(&mut self) -> CapabilitiesCtxView<'_> {
        CapabilitiesCtxView {
            ctx: &mut self.capabilities,
            table: &mut self.table,
        }
    }
}

impl Sandboxed for RequestState {
    fn memory_limit(&mut self) -> &mut MemoryLimit {
        &mut self.limits
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// A group's pre-instantiated component, by the export the host calls.
enum Entry {
    /// `cronium:runtime/handler`.
    Handler(EndpointPre<RequestState>),
    /// `wasi:http/incoming-handler`.
    WasiHttp(ProxyPre<RequestState>),
}

/// An instance's bindings, by the export the host calls.
enum Exports {
    Handler(Endpoint),
    WasiHttp(Proxy),
}

/// The loaded components.
pub struct Components {
    inner: Arc<Inner>,
}

/// What serving a request needs, shared with the batch component's
/// in-process requests to its sibling groups ([`Outgoing`]).
pub(crate) struct Inner {
    engine: Engine,
    groups: HashMap<Group, Entry>,
    capabilities: Arc<Capabilities>,
    timeout: Duration,
    memory: usize,
    /// Instances kept for further requests with the same credential
    /// (`CRONIUM_INSTANCE_REUSE` above 1).
    warm: Option<Arc<WarmPool<WarmInstance>>>,
}

/// An instance between two requests: its store and its bindings.
struct WarmInstance {
    store: Store<RequestState>,
    exports: Exports,
}

impl Components {
    /// Compiles and pre-instantiates every group, from the binary or from
    /// the operator's overrides, and starts the epoch clock.
    pub fn load(config: &Config, capabilities: Arc<Capabilities>) -> Result<Self, LoadError> {
        let (engine, warm) = serving_engine(config)?;
        let warm = warm.map(Arc::new);
        let mut linker: Linker<RequestState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(LoadError::Engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(LoadError::Engine)?;
        crate::capabilities::add_to_linker(&mut linker).map_err(LoadError::Engine)?;

        let cache = CompileCache::new(config.compile_cache.clone());
        let mut groups = HashMap::new();
        for group in Group::ALL {
            let component = compile(config, &cache, &engine, group)?;
            let entry = linker
                .instantiate_pre(&component)
                .and_then(|pre| entry(pre, config.component_export))
                .map_err(|source| LoadError::Component {
                    group: group.name(),
                    source,
                })?;
            groups.insert(group, entry);
        }

        sandbox::start_epoch_clock(&engine).map_err(|e| LoadError::Engine(e.into()))?;
        if let Some(pool) = &warm {
            WarmPool::start_sweeper(pool).map_err(|e| LoadError::Engine(e.into()))?;
        }

        Ok(Components {
            inner: Arc::new(Inner {
                engine,
                groups,
                capabilities,
                timeout: config.request_timeout,
                memory: config.component_memory,
                warm,
            }),
        })
    }

    /// Compiles every group's component (embedded, or the operator's
    /// override) with the very engine [`Components::load`] builds for
    /// `config`, into `config`'s compile cache: a host started later on
    /// this machine with the same settings loads them instead of
    /// compiling (`cronium-runtime precompile`, run when a container
    /// image is built).
    pub fn precompile(config: &Config) -> Result<(), LoadError> {
        let (engine, _) = serving_engine(config)?;
        let cache = CompileCache::new(config.compile_cache.clone());
        for group in Group::ALL {
            compile(config, &cache, &engine, group)?;
        }
        Ok(())
    }

    /// Warm instances kept now.
    pub fn warm_instances(&self) -> usize {
        self.inner.warm.as_deref().map_or(0, WarmPool::len)
    }

    /// Serves `request` with `group`'s component, within the request
    /// deadline (`CRONIUM_REQUEST_TIMEOUT`).
    pub async fn call(
        &self,
        group: Group,
        request: Request<Full<Bytes>>,
        peer: Option<IpAddr>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let timeout = self.inner.timeout;
        self.inner.call(group, request, peer, timeout).await
    }
}

impl Inner {
    /// A warm instance for `key`, ready for its next request from `peer`;
    /// else a new store, to be instantiated. Either way with a deadline of
    /// `timeout`, and the outgoing requests `group` may make.
    fn store_for(
        self: &Arc<Self>,
        group: Group,
        key: Option<&WarmKey>,
        peer: Option<IpAddr>,
        limits: MemoryLimit,
        timeout: Duration,
    ) -> (Store<RequestState>, Option<(Exports, u32)>) {
        let hooks = Outgoing::for_group(group, self, peer, timeout);
        let warm = self.warm.as_ref().zip(key).and_then(|(w, k)| w.take(k));
        let (mut store, exports) = match warm {
            Some((WarmInstance { mut store, exports }, served)) => {
                let state = store.data_mut();
                state.capabilities.next_request(peer);
                state.limits = limits;
                state.hooks = hooks;
                self.capabilities.metrics.instances_reused.inc();
                (store, Some((exports, served)))
            }
            None => {
                let store = Store::new(
                    &self.engine,
                    RequestState {
                        wasi: WasiCtx::builder().inherit_stderr().build(),
                        http: WasiHttpCtx::new(),
                        table: ResourceTable::new(),
                        hooks,
                        limits,
                        capabilities: CapabilitiesCtx::new(self.capabilities.clone(), group, peer),
                    },
                );
                (store, None)
            }
        };
        sandbox::confine(&mut store, timeout);
        (store, exports)
    }

    /// Serves `request` with `group`'s component within `timeout`.
    pub(crate) async fn call(
        self: &Arc<Self>,
        group: Group,
        request: Request<Full<Bytes>>,
        peer: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let entry = &self.groups[&group];
        let (limits, memory_hit) = MemoryLimit::new(self.memory);
        let key = self.warm.as_ref().and_then(|_| {
            WarmKey::of(
                group,
                request
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            )
        });
        let (store, warm) = self.store_for(group, key.as_ref(), peer, limits, timeout);
        let mut call = Call {
            store,
            warm,
            metrics: &self.capabilities.metrics,
        };

        // The deadline covers the whole call, host calls included; the
        // epoch deadline stops a guest that spins without calling out.
        let outcome = tokio::time::timeout(timeout + EPOCH_TICK * 10, async {
            let answered = match call.exports(entry).await {
                Ok((Exports::Handler(endpoint), served)) => {
                    call.handle(endpoint, served, request).await
                }
                Ok((Exports::WasiHttp(proxy), served)) => {
                    call.handle_wasi_http(proxy, served, request).await
                }
                Err(error) => Err(CallError::Guest(error)),
            };
            match answered {
                Ok((response, instance, served)) => {
                    // Only an instance that answered cleanly, and did not
                    // grow past a quarter of its cap, is kept.
                    let small = instance.store.data().limits.grown() <= self.memory / 4;
                    if let (Some(pool), Some(key), true) = (&self.warm, key, small) {
                        pool.put(key, instance, served);
                    }
                    Ok(response)
                }
                Err(CallError::Guest(error)) => Err(sandbox::component_failure(error, &memory_hit)),
                Err(CallError::Answer(error)) => Err(error),
            }
        })
        .await;

        outcome.unwrap_or_else(|_| {
            tracing::warn!(group = group.name(), "component call ran past its deadline");
            Err(ApiError::deadline_exceeded())
        })
    }
}

/// One request about to be served: a new store (`warm` is `None`), or a
/// warm instance's store with its bindings and the requests it served.
struct Call<'a> {
    store: Store<RequestState>,
    warm: Option<(Exports, u32)>,
    metrics: &'a Metrics,
}

/// What a served request gives back: the response, and the instance with
/// the requests it has now served.
type Served = (Response<Full<Bytes>>, WarmInstance, u32);

/// Why a call gave no response.
enum CallError {
    /// The guest trapped, ran out of memory or failed a host call.
    Guest(wasmtime::Error),
    /// The guest returned without a usable answer.
    Answer(ApiError),
}

impl From<wasmtime::Error> for CallError {
    fn from(error: wasmtime::Error) -> Self {
        CallError::Guest(error)
    }
}

impl Call<'_> {
    /// The warm instance's bindings and the requests it has served, else
    /// a new instance of `entry`'s (timed) and 0. A group keeps its
    /// export for the host's lifetime, so warm bindings are `entry`'s.
    async fn exports(&mut self, entry: &Entry) -> wasmtime::Result<(Exports, u32)> {
        if let Some(warm) = self.warm.take() {
            return Ok(warm);
        }
        let started = std::time::Instant::now();
        let exports = match entry {
            Entry::Handler(pre) => Exports::Handler(pre.instantiate_async(&mut self.store).await?),
            Entry::WasiHttp(pre) => {
                Exports::WasiHttp(pre.instantiate_async(&mut self.store).await?)
            }
        };
        self.metrics.instantiation.observe(started.elapsed());
        Ok((exports, 0))
    }

    /// Serves `request` through the `handler` export: one call.
    async fn handle(
        mut self,
        endpoint: Endpoint,
        served: u32,
        request: Request<Full<Bytes>>,
    ) -> Result<Served, CallError> {
        let request = handler_request(request).await;
        let answer = endpoint
            .cronium_runtime_handler()
            .call_handle(&mut self.store, &request)
            .await?;
        let response = handler_response(answer).map_err(CallError::Answer)?;
        let instance = WarmInstance {
            store: self.store,
            exports: Exports::Handler(endpoint),
        };
        Ok((response, instance, served + 1))
    }

    /// Serves `request` through `wasi:http/incoming-handler`, reading the
    /// answer, body included, while the guest writes it.
    async fn handle_wasi_http(
        mut self,
        proxy: Proxy,
        served: u32,
        request: Request<Full<Bytes>>,
    ) -> Result<Served, CallError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (incoming, outparam) = {
            let mut http = self.store.data_mut().http();
            let incoming = http.new_incoming_request(Scheme::Http, request);
            let outparam = http.new_response_outparam(sender);
            match (incoming, outparam) {
                (Ok(i), Ok(o)) => (i, o),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "could not hand the request to the component");
                    return Err(CallError::Answer(ApiError::internal(
                        "the request could not be handed to its component",
                    )));
                }
            }
        };

        // The guest runs in this task (no spawn, no cross-thread wake-up);
        // its store is dropped as soon as it returns, which also settles
        // the response channel if it never answered.
        let guest = async move {
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut self.store, incoming, outparam)
                .await?;
            let instance = WarmInstance {
                store: self.store,
                exports: Exports::WasiHttp(proxy),
            };
            Ok::<_, wasmtime::Error>((instance, served + 1))
        };
        let answer = async move {
            let response = match receiver.await {
                Ok(Ok(response)) => response,
                Ok(Err(code)) => {
                    tracing::warn!(code = ?code, "component answered with an error code");
                    return Err(ApiError::internal("the component failed"));
                }
                Err(_) => return Err(no_answer()),
            };
            let (parts, body) = response.into_parts();
            match body.collect().await {
                Ok(collected) => Ok(Response::from_parts(parts, Full::new(collected.to_bytes()))),
                Err(_) => Err(no_answer()),
            }
        };

        tokio::pin!(guest, answer);
        let (ended, answered) = tokio::select! {
            ended = &mut guest => (ended, answer.await),
            answered = &mut answer => (guest.await, answered),
        };
        // A trap counts even after the body: the client has seen nothing yet.
        let (instance, served) = ended?;
        let response = answered.map_err(CallError::Answer)?;
        Ok((response, instance, served))
    }
}

/// The `handler` export's view of `request`.
async fn handler_request(request: Request<Full<Bytes>>) -> handler::Request {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    handler::Request {
        method: parts.method.as_str().to_owned(),
        path_with_query: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        // Takes over the buffer, without a copy, when nothing else shares it.
        body: Vec::from(body),
    }
}

/// The response of a `handler` answer; a status or header that HTTP does
/// not allow is the component's failure.
fn handler_response(answer: handler::Response) -> Result<Response<Full<Bytes>>, ApiError> {
    let invalid = |what: &str| {
        tracing::error!(what, "component answered with an invalid response");
        ApiError::internal("the component failed")
    };
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(answer.status).map_err(|_| invalid("status"))?;
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("header name"))?;
        let value =
            hyper::header::HeaderValue::from_bytes(&value).map_err(|_| invalid("header value"))?;
        headers.append(name, value);
    }
    Ok(response)
}

/// The error of a component that returned without answering.
fn no_answer() -> ApiError {
    tracing::error!("component returned without a response");
    ApiError::internal("the component did not answer")
}

/// `pre` by the export the host calls: `handler` if asked for and
/// exported, else `wasi:http/incoming-handler`.
fn entry(
    pre: wasmtime::component::InstancePre<RequestState>,
    export: ComponentExport,
) -> wasmtime::Result<Entry> {
    if export == ComponentExport::Handler
        && let Ok(handler) = EndpointPre::new(pre.clone())
    {
        return Ok(Entry::Handler(handler));
    }
    ProxyPre::new(pre).map(Entry::WasiHttp)
}

/// The engine `config` serves with, and its pool of warm instances (none
/// when instances are not reused): the engine's size depends on the pool's.
fn serving_engine(config: &Config) -> Result<(Engine, Option<WarmPool<WarmInstance>>), LoadError> {
    let warm = WarmPool::new(
        config.instance_reuse,
        warm_cap(config.max_instances),
        warm::IDLE,
    );
    let engine =
        engine(config, warm.as_ref().map_or(0, WarmPool::cap)).map_err(LoadError::Engine)?;
    Ok((engine, warm))
}

/// `group`'s component for `engine`: the operator's override or the
/// embedded one, from `cache` or compiled.
fn compile(
    config: &Config,
    cache: &CompileCache,
    engine: &Engine,
    group: Group,
) -> Result<wasmtime::component::Component, LoadError> {
    match config.component_overrides.get(group.name()) {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
            tracing::info!(group = group.name(), path = %path.display(), "serving an override component");
            cache.component(engine, group.name(), &bytes)
        }
        None => cache.component(engine, group.name(), embedded(group)),
    }
    .map_err(|source| LoadError::Component {
        group: group.name(),
        source,
    })
}

/// Warm instances kept at most: a quarter of the pool's size.
fn warm_cap(max_instances: u32) -> usize {
    (max_instances / 4) as usize
}

/// The wasmtime engine: pooling allocator sized for `max_instances`
/// plus `warm` kept instances,
/// memories capped, epoch interruption on.
fn engine(config: &Config, warm: usize) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    // Warm instances hold their slots: the pool has room for them on top.
    let instances = config.max_instances.max(1) + warm as u32;
    pool.total_component_instances(instances);
    pool.total_core_instances(instances * 4);
    pool.total_memories(instances * 2);
    pool.total_tables(instances * 4);
    pool.max_memories_per_component(2);
    pool.max_memory_size(config.component_memory);
    // Keeping a little memory resident avoids a madvise (and the TLB
    // shootdowns it causes) on every request: measured before this project
    // began, ~4.4k req/s on the default pooling allocator against ~9.9k
    // with 2 MiB kept resident (and concurrency support off).
    pool.linear_memory_keep_resident(2 << 20);
    pool.table_keep_resident(2 << 20);
    // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the pages
    // a request dirtied instead of memsetting the whole resident prefix.
    pool.pagemap_scan(wasmtime::Enabled::Auto);

    let mut wasm = sandbox::engine_config(config, config.component_memory);
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm)
}
