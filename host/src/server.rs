//! The HTTP front: hyper, one task per connection. `/health`, `/ready`,
//! `/metrics` and CORS preflights are answered here; every other route
//! goes to the component that owns it, after the connection and
//! in-flight caps, the body cap of its route and the body deadline. One
//! log line and one metrics sample per request, with a request id. With
//! `ENABLE_TLS`, every connection is HTTPS ([`tls`]), and otherwise served
//! the same way.

mod cors;
mod timed_io;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cronium_rules::limits;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST, HeaderValue, ORIGIN, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::capabilities::Capabilities;
use crate::capabilities::backend::{BackendHealth, now_rfc3339};
use crate::capabilities::cache::Cache;
use crate::components::Components;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Gauges;
use crate::routing::{Group, Native, Target};

/// The most of a refused body read (and discarded) before answering 413.
const DRAIN_MAX: u64 = 16 * 1024 * 1024;
/// How long draining a refused body may take.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// What every request handler shares.
pub struct App {
    pub(crate) components: Components,
    /// Every capability.
    pub capabilities: Arc<Capabilities>,
    pub(crate) front: Front,
}

/// The front's limits and policies, from the configuration.
pub struct Front {
    pub(crate) cors: Option<Vec<String>>,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) max_in_flight: usize,
    pub(crate) max_connections: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) write_timeout: Duration,
}

impl Front {
    /// The front `config` asks for.
    pub fn from_config(config: &Config) -> Self {
        let max_in_flight = config.max_in_flight.max(1);
        Front {
            cors: config.cors.clone(),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            max_connections: config.max_connections,
            body_timeout: config.body_timeout,
            write_timeout: config.write_timeout,
        }
    }
}

/// Request headers answered with a JSON 431 beyond these. hyper itself
/// refuses (with a plain 431) beyond `HYPER_MAX_HEADERS` headers or its
/// read buffer, so ours are the smaller limits.
const MAX_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 32 * 1024;
const HYPER_MAX_HEADERS: usize = 200;

/// How long a client may take to send its request headers (and, over
/// TLS, to complete its handshake).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` (HTTPS through `tls` when given) until `shutdown`
/// resolves, then lets open requests, and writes whose clients hung up,
/// finish for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tls::TlsAcceptor>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let (stop, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(Semaphore::new(app.front.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        // At the connection cap, further clients wait in the listen backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause, go on.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (app, mut stopped, tls) = (app.clone(), stopped.clone(), tls.clone());
                connections.spawn(async move {
                    // The handshake holds the connection's slot, within
                    // the header deadline, and gives way to a shutdown.
                    match tls {
                        None => connection(stream, peer, app, stopped).await,
                        Some(tls) => {
                            let handshake = tokio::select! {
                                stream = tls.handshake(stream, peer, HEADER_READ_TIMEOUT) => stream,
                                _ = stopped.wait_for(|stop| *stop) => None,
                            };
                            if let Some(stream) = handshake {
                                connection(stream, peer, app, stopped).await;
                            }
                        }
                    }
                    drop(slot);
                });
                while connections.try_join_next().is_some() {}
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let in_flight = &app.front.in_flight;
    let every_permit = u32::try_from(app.front.max_in_flight).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
        // A write whose client hung up runs on in a task of its own
        // (`route`), holding its in-flight permit until it is done.
        let _all_done = in_flight.acquire_many(every_permit).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            calls = app.front.max_in_flight - in_flight.available_permits(),
            "connections or component calls still open after the drain deadline"
        );
        connections.abort_all();
    }
}

/// Serves HTTP/1.1 on one connection, plain TCP or TLS.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Arc<App>,
    mut stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let write_timeout = app.front.write_timeout;
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handle(&app, request, peer).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(HYPER_MAX_HEADERS)
        .keep_alive(true);
    let io = TokioIo::new(timed_io::TimedIo::new(stream, write_timeout));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

async fn handle(
    app: &Arc<App>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let request_id = request_id(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let origin = request.headers().get(ORIGIN).cloned();
    let target = Target::of(&path);
    // A preflight's answer carries its own CORS headers; every other
    // answer gets those of its origin.
    let mut response = match cors::preflight(app.front.cors.as_deref(), &request) {
        Some(preflight) => preflight,
        None => {
            let mut response = route(app, request, target, peer)
                .await
                .unwrap_or_else(ApiError::into_response);
            cors::decorate(
                app.front.cors.as_deref(),
                origin.as_ref(),
                response.headers_mut(),
            );
            response
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    app.capabilities
        .metrics
        .request(target.name(), status, elapsed);
    tracing::info!(
        request_id,
        %method,
        path,
        status,
        duration_us = elapsed.as_micros() as u64,
        peer = %peer.ip(),
        "request"
    );
    response
}

async fn route(
    app: &Arc<App>,
    request: Request<Incoming>,
    target: Target,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, ApiError> {
    check_headers(request.headers())?;
    let group = match target {
        Target::Component(group) => group,
        Target::Unknown => return Err(ApiError::no_route()),
        Target::Native(native) => {
            if !matches!(*request.method(), Method::GET | Method::HEAD) {
                return Err(ApiError::method_not_allowed());
            }
            return Ok(match native {
                Native::Health => health(),
                Native::Ready => ready(app).await,
                Native::Metrics => metrics(app),
                Native::OpenApi => {
                    json_body(StatusCode::OK, Bytes::from_static(OPENAPI.as_bytes()))
                }
            });
        }
    };
    // Past the in-flight cap, shed load at once rather than queue it. A
    // batch holds two places: its own instance and that of the one request
    // of it being served, so that the cap still bounds the instances in use.
    let places = if group == Group::Batch && app.front.max_in_flight > 1 {
        2
    } else {
        1
    };
    let Ok(in_flight) = app.front.in_flight.clone().try_acquire_many_owned(places) else {
        app.capabilities.metrics.rejected_overload.inc();
        return Err(ApiError::unavailable(
            "the runtime is at capacity; try again",
            1,
        ));
    };
    let limit = limits::body_max_for_path(request.uri().path());
    let request = tokio::time::timeout(app.front.body_timeout, read_body(request, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            )
        })??;
    let read_only = matches!(*request.method(), Method::GET | Method::HEAD);
    let app = app.clone();
    let call = async move {
        let _in_flight = in_flight;
        app.components.call(group, request, Some(peer.ip())).await
    };
    if read_only {
        return call.await;
    }
    // A write runs to its end even if its client hangs up meanwhile: it
    // must not stop halfway through the backend, nor leave its key's
    // lease to run out. It still counts as in flight until it is done.
    tokio::spawn(call).await.unwrap_or_else(|error| {
        tracing::error!(%error, "a component call ended abnormally");
        Err(ApiError::internal("the request could not be completed"))
    })
}

/// The OpenAPI 3.1 document of the public API (`host/api/openapi.json`),
/// kept true by `tests/operations.rs`.
const OPENAPI: &str = include_str!("../api/openapi.json");

/// Reads the body up to `limit`: 413 as soon as it is known to be larger
/// (from `Content-Length`, before reading, or while reading), so that an
/// over-long body is never held in memory.
async fn read_body(
    request: Request<Incoming>,
    limit: usize,
) -> Result<Request<Full<Bytes>>, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = request
        .headers()
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (mut parts, body) = request.into_parts();
    if declared.is_some_and(|len| len > limit as u64) {
        // A client waiting for `100 Continue` never sends the body; others
        // are already sending it, and get a readable 413 if we drain it.
        if !expects_continue {
            drain(body, declared.unwrap_or_default()).await;
        }
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = body;
    let mut collected = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(ApiError::bad_request("could not read the request body"));
        };
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                drain(body, 0).await;
                return Err(ApiError::payload_too_large(limit));
            }
            collected.extend_from_slice(&data);
        }
    }
    // wasi:http needs an authority; HTTP/1.0 clients may send no Host.
    if parts.uri.authority().is_none() && !parts.headers.contains_key(HOST) {
        parts
            .headers
            .insert(HOST, HeaderValue::from_static("localhost"));
    }
    Ok(Request::from_parts(
        parts,
        Full::new(Bytes::from(collected)),
    ))
}

/// Reads and discards what is left of a refused body, so that the client
/// can read our 413 instead of a reset connection; bounded in bytes and
/// time, after which the connection is simply closed.
async fn drain(mut body: Incoming, declared: u64) {
    if declared > DRAIN_MAX {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut drained = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, |d| d.len() as u64);
            if drained > DRAIN_MAX {
                break;
            }
        }
    })
    .await;
}

fn health() -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "status": "healthy", "time": now_rfc3339() }),
    )
}

/// 431 for too many or too large request headers.
fn check_headers(headers: &hyper::HeaderMap) -> Result<(), ApiError> {
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers exceed {MAX_HEADERS} fields or {MAX_HEADER_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Readiness: the backend must be reachable; a cache that is down only
/// degrades (requests still succeed through the backend).
async fn ready(app: &App) -> Response<Full<Bytes>> {
    let caps = &app.capabilities;
    let (backend, cache) = tokio::join!(caps.backend.health(), async {
        match &caps.cache {
            Cache::Valkey { remote: valkey, .. } => match valkey.ping().await {
                Ok(()) => "ok",
                Err(_) => "degraded",
            },
            Cache::Memory(_) => "in-process",
        }
    });
    let backend_ok = backend == BackendHealth::Ok;
    let body = serde_json::json!({
        "status": if backend_ok { "ready" } else { "not ready" },
        "checks": {
            "backend": match backend {
                BackendHealth::Ok => "ok",
                BackendHealth::Unreachable => "unreachable",
                BackendHealth::CredentialsRefused => "credentials refused (check BACKEND_TOKEN)",
            },
            "cache": cache,
        },
    });
    let mut response = json_response(
        if backend_ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    );
    if !backend_ok {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

fn metrics(app: &App) -> Response<Full<Bytes>> {
    let caps = &app.capabilities;
    let stats = caps.audit.stats();
    let text = caps.metrics.render(&Gauges {
        audit_backlog: caps.audit.backlog(),
        audit_delivered: stats.delivered.load(Ordering::Relaxed),
        audit_spooled: stats.spooled.load(Ordering::Relaxed),
        audit_handed_over: stats.handed_over.load(Ordering::Relaxed),
        audit_lost: stats.lost.load(Ordering::Relaxed),
        revocation_unchecked: caps.auth.unchecked.load(Ordering::Relaxed),
        revocation_watch_live: u64::from(caps.auth.watch_live()),
        in_flight: (app.front.max_in_flight - app.front.in_flight.available_permits()) as u64,
        warm_instances: app.components.warm_instances() as u64,
    });
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    json_body(status, Bytes::from(body.to_string()))
}

fn json_body(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The client's `X-Request-ID` when it is a sane token, else a new one.
fn request_id(request: &Request<Incoming>) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()))
}
