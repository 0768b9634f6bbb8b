//! Sending a tool's request to the addresses the egress policy checked.
//!
//! `wasmtime-wasi-http`'s default sender resolves the host name again when
//! it connects, so a DNS answer that changes between the check and the
//! connection (rebinding) could reach a private address. This sender
//! connects only to the checked addresses, in order, and verifies HTTPS
//! against the host's name (SNI and certificate), with the same trust as
//! the backend client: the system roots plus `SSL_CERT_FILE`/`SSL_CERT_DIR`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http_body_util::BodyExt;
use hyper::Request;
use hyper::http::uri::Scheme;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::SendResult;
use crate::capabilities::backend::trust::roots_from_env;

/// The TLS settings of every tool request, built on first use.
fn tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots_from_env())
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Sends `request` over a connection to the first of `addresses` that
/// answers, within the connect and first-byte timeouts of `options`.
pub(super) async fn send(
    mut request: Request<WasiBody>,
    addresses: &[SocketAddr],
    options: RequestOptions,
) -> SendResult {
    let connect_timeout = options.connect_timeout.unwrap_or(super::CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .first_byte_timeout
        .unwrap_or(super::FIRST_BYTE_TIMEOUT);
    let uri = request.uri().clone();
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let stream = tokio::time::timeout(connect_timeout, connect(addresses))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let _ = stream.set_nodelay(true);

    // The request line names only the path: the authority is in `Host`.
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;

    let builder = hyper::client::conn::http1::Builder::new();
    let (mut sender, io): (_, std::pin::Pin<Box<dyn Future<Output = _> + Send>>) =
        if uri.scheme() == Some(&Scheme::HTTPS) {
            let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|_| Error::HttpRequestUriInvalid)?
                .to_owned();
            let tls = tokio_rustls::TlsConnector::from(tls())
                .connect(name, stream)
                .await
                .map_err(Error::Tls)?;
            let (sender, conn) = builder
                .handshake(TokioIo::new(tls))
                .await
                .map_err(Error::from)?;
            (sender, Box::pin(conn))
        } else {
            let (sender, conn) = builder
                .handshake(TokioIo::new(stream))
                .await
                .map_err(Error::from)?;
            (sender, Box::pin(conn))
        };
    // The connection is driven on its own task; its end (a request body
    // that could not be sent, say) is what the returned future reports.
    let (done, outcome) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = done.send(io.await);
    });
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    let io = async move {
        match outcome.await {
            Ok(Err(error)) if error.is_timeout() => Err(Error::HttpResponseTimeout),
            Ok(Err(error)) => Err(Error::from(error)),
            _ => Ok(()),
        }
    };
    Ok((
        response.map(|body| body.map_err(Error::from).boxed_unsync()),
        Box::new(io) as Box<dyn Future<Output = _> + Send>,
    ))
}

/// A connection to the first of `addresses` that accepts one.
async fn connect(addresses: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to");
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = error,
        }
    }
    Err(last)
}
