//! A minimal HTTP/1 server for the fakes (the backend, the stand-ins):
//! every request is answered by one function, until the task is aborted,
//! and (for the fake backend's outages) while a switch is on.
//! Shared with the fake backend's own program (`tests/support/bin/`).

use std::net::SocketAddr;

/// A request's headers as (name, value) text pairs, as the fakes record
/// them (a value that is not text reads as empty).
pub fn header_pairs(headers: &hyper::HeaderMap) -> impl Iterator<Item = (String, String)> + '_ {
    headers.iter().map(|(name, value)| {
        (
            name.as_str().to_owned(),
            value.to_str().unwrap_or_default().to_owned(),
        )
    })
}

/// Serves HTTP/1 with `answer` on a free loopback port, until the
/// returned task is aborted (the fake backend and the stand-ins run on it).
pub async fn serve_loopback<F, Fut>(answer: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>> + Send + 'static,
{
    serve_on(SocketAddr::from(([127, 0, 0, 1], 0)), answer).await
}

/// Serves HTTP/1 with `answer` on `addr` (port 0: a free one), until the
/// returned task is aborted.
pub async fn serve_on<F, Fut>(
    addr: SocketAddr,
    answer: F,
) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>> + Send + 'static,
{
    // A switch nobody turns off.
    let (online, _) = tokio::sync::watch::channel(true);
    serve_switchable(addr, online, answer).await
}

/// Serves `answer` on `addr` while `online` holds true: when it turns
/// false the listener is closed (connections are refused) and the open
/// connections are dropped; when it turns true again the same port is
/// bound again. Returns the bound address and the accepting task.
pub async fn serve_switchable<F, Fut>(
    addr: SocketAddr,
    online: tokio::sync::watch::Sender<bool>,
    answer: F,
) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>> + Send + 'static,
{
    let first = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = first.local_addr().unwrap();
    let mut switch = online.subscribe();
    let task = tokio::spawn(async move {
        let mut listener = Some(first);
        loop {
            let Some(open) = &listener else {
                // Off: wait for the switch, then bind the same port again.
                if switch.wait_for(|on| *on).await.is_err() {
                    return;
                }
                listener = tokio::net::TcpListener::bind(addr).await.ok();
                if listener.is_none() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                continue;
            };
            tokio::select! {
                accepted = open.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let answer = answer.clone();
                    let mut cut = online.subscribe();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let reply = answer(req);
                            async move { Ok::<_, std::convert::Infallible>(reply.await) }
                        });
                        let connection = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                        // A switch dropped (the server's task aborted) cuts
                        // nothing: open connections go on, as they always did.
                        tokio::select! {
                            _ = connection => {}
                            Ok(_) = cut.wait_for(|on| !*on) => {}
                        }
                    });
                }
                _ = switch.wait_for(|on| !*on) => listener = None,
            }
        }
    });
    (addr, task)
}
