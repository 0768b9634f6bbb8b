//! Outbound HTTP on Spin's `wasi:http` client, with a deadline. Spin lets a
//! request through only to the hosts the endpoint component's
//! `allowed_outbound_hosts` names (the adapters inherit them), including
//! `*.spin.internal` for service chaining.
//!
//! The request is made on the `wasi:http` interfaces directly rather than
//! through `spin-sdk`'s `send`, because a call must end at its deadline:
//! every wait (for the answer, for each piece of its body) polls the
//! answer together with a monotonic-clock timer, and dropping the pending
//! answer at the deadline cancels the request in the host.

use std::time::Duration;

use spin_sdk::http::Method;
use wasi::clocks::monotonic_clock;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme,
};
use wasi::io::poll::{Pollable, poll};
use wasi::io::streams::StreamError;

/// An answer: its status and whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status, whatever it is: [`send`] judges none of them.
    pub status: u16,
    /// The whole body, at most the `max_body` bytes [`send`] was given.
    pub body: Vec<u8>,
}

/// Why no answer came back: the rules' transport error, so that the
/// protocol machines take it as it is.
pub use cronium_rules::protocol::TransportError;

/// A point on the monotonic clock after which a call gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(u64);

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        let nanos = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX);
        Deadline(monotonic_clock::now().saturating_add(nanos))
    }

    /// What is left of it.
    pub fn remaining(self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(monotonic_clock::now()))
    }

    fn timer(self) -> Pollable {
        monotonic_clock::subscribe_instant(self.0)
    }
}

/// Sends one request and waits, until `deadline` at the latest, for the
/// whole answer, refusing bodies over `max_body` bytes.
pub fn send(
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
    max_body: usize,
    deadline: Deadline,
) -> Result<Answer, TransportError> {
    let (scheme, authority, path) = split_url(url)
        .ok_or_else(|| TransportError::Failed("the URL is not scheme://host/path".into()))?;
    let mut fields: Vec<(String, Vec<u8>)> = vec![("accept".into(), b"application/json".to_vec())];
    fields.extend(
        headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec())),
    );
    if body.is_some() {
        fields.push(("content-type".into(), b"application/json".to_vec()));
    }
    let fields = Fields::from_list(&fields)
        .map_err(|_| TransportError::Failed("a header is not valid".into()))?;
    let request = OutgoingRequest::new(fields);
    let invalid = |_| TransportError::Failed("the request could not be built".into());
    request.set_method(&wasi_method(method)).map_err(invalid)?;
    request.set_scheme(Some(&scheme)).map_err(invalid)?;
    request.set_authority(Some(authority)).map_err(invalid)?;
    request.set_path_with_query(Some(path)).map_err(invalid)?;
    let outgoing = request
        .body()
        .map_err(|()| TransportError::Failed("no request body".into()))?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| failed(&e))?;
    if let Some(bytes) = body {
        write_body(&outgoing, &bytes)?;
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| failed(&e))?;

    let timer = deadline.timer();
    let response = loop {
        if let Some(outcome) = pending.get() {
            break outcome
                .map_err(|()| TransportError::Failed("the answer was taken twice".into()))?
                .map_err(|e| failed(&e))?;
        }
        if wait(&pending.subscribe(), &timer) {
            return Err(TransportError::TimedOut);
        }
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| TransportError::Failed("no answer body".into()))?;
    let body = read_body(&incoming, max_body, &timer)?;
    Ok(Answer { status, body })
}

/// Blocks until `ready` or `timer` fires; true if the timer fired first.
fn wait(ready: &Pollable, timer: &Pollable) -> bool {
    let fired = poll(&[ready, timer]);
    !fired.contains(&0) && fired.contains(&1)
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), TransportError> {
    let stream = body
        .write()
        .map_err(|()| TransportError::Failed("no request body stream".into()))?;
    for chunk in bytes.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|_| TransportError::Failed("the request body could not be sent".into()))?;
    }
    Ok(())
}

fn read_body(
    incoming: &IncomingBody,
    max_body: usize,
    timer: &Pollable,
) -> Result<Vec<u8>, TransportError> {
    let stream = incoming
        .stream()
        .map_err(|()| TransportError::Failed("no answer body stream".into()))?;
    let mut body = Vec::new();
    loop {
        if wait(&stream.subscribe(), timer) {
            return Err(TransportError::TimedOut);
        }
        match stream.read(64 * 1024) {
            Ok(chunk) => {
                if body.len() + chunk.len() > max_body {
                    return Err(TransportError::Failed(format!(
                        "the answer is larger than {max_body} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(_)) => {
                return Err(TransportError::Failed("the answer was cut off".into()));
            }
        }
    }
}

/// `scheme`, authority and path (with query) of an absolute URL.
fn split_url(url: &str) -> Option<(Scheme, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    (!authority.is_empty()).then_some((scheme, authority, path))
}

fn wasi_method(method: Method) -> WasiMethod {
    match method {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
        Method::Connect => WasiMethod::Connect,
        Method::Options => WasiMethod::Options,
        Method::Trace => WasiMethod::Trace,
        Method::Patch => WasiMethod::Patch,
        Method::Other(name) => WasiMethod::Other(name),
    }
}

/// A send failure, described without the peer's address: whether a
/// connection was made, or whether Spin refused the destination.
fn failed(error: &ErrorCode) -> TransportError {
    TransportError::Failed(
        match error {
            ErrorCode::DnsTimeout | ErrorCode::DnsError(_) => "cannot resolve the host",
            ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::ConnectionLimitReached
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::DestinationNotFound => "cannot connect",
            ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => {
                "cannot connect in time"
            }
            ErrorCode::HttpRequestDenied => "the destination is not in allowed_outbound_hosts",
            ErrorCode::TlsCertificateError | ErrorCode::TlsAlertReceived(_) => {
                "the TLS handshake failed"
            }
            _ => "the request failed",
        }
        .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_splits_into_scheme_authority_and_path() {
        let (scheme, authority, path) = split_url("http://127.0.0.1:8080/api/x?y=1").unwrap();
        assert!(matches!(scheme, Scheme::Http));
        assert_eq!((authority, path), ("127.0.0.1:8080", "/api/x?y=1"));
        let (_, authority, path) = split_url("https://backend.internal").unwrap();
        assert_eq!((authority, path), ("backend.internal", "/"));
        assert!(split_url("backend.internal/x").is_none());
        assert!(split_url("http:///x").is_none());
    }
}
