//! A minimal HTTP/1 server for the fakes (the backend, the stand-ins):
//! every request is answered by one function, until the task is aborted.
//! Shared with the fake backend's own program (`tests/support/bin/`).

use std::net::SocketAddr;

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
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let reply = answer(req);
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}
