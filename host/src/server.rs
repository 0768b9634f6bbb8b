//! The HTTP front: hyper, one task per connection. `/health` is answered
//! here; every other route goes to the component that owns it, after the
//! body cap of its route. One log line per request, with a request id.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cronium_rules::limits;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::App;
use crate::capabilities::backend::now_rfc3339;
use crate::components::Group;
use crate::error::ApiError;

/// The most of a refused body read (and discarded) before answering 413.
const DRAIN_MAX: u64 = 16 * 1024 * 1024;
/// How long draining a refused body may take.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` resolves, then lets open requests
/// finish for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let (stop, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
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
                connections.spawn(connection(stream, peer, app.clone(), stopped.clone()));
                while connections.try_join_next().is_some() {}
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the drain deadline"
        );
        connections.abort_all();
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    mut stopped: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handle(&app, request, peer).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

async fn handle(app: &App, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let request_id = request_id(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = route(app, request, peer)
        .await
        .unwrap_or_else(ApiError::into_response);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    tracing::info!(
        request_id,
        %method,
        path,
        status = response.status().as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        peer = %peer.ip(),
        "request"
    );
    response
}

async fn route(
    app: &App,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = request.uri().path();
    if path == "/health" {
        return match *request.method() {
            Method::GET | Method::HEAD => Ok(health()),
            _ => Err(ApiError::method_not_allowed()),
        };
    }
    let group = Group::for_path(path).ok_or_else(ApiError::no_route)?;
    let limit = limits::body_max_for_path(path);
    let request = read_body(request, limit).await?;
    app.components.call(group, request, Some(peer.ip())).await
}

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
    let body = serde_json::json!({ "status": "healthy", "time": now_rfc3339() });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::OK;
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
