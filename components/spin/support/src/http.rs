//! Outbound HTTP on Spin's `wasi:http` client. Spin lets a request through
//! only to the hosts the endpoint component's `allowed_outbound_hosts`
//! names (the adapters inherit them), including `*.spin.internal` for
//! service chaining.

use spin_sdk::http::{Method, Request, Response};

/// An answer: its status and whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why no answer came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError(pub String);

/// Sends one request and waits for the whole answer, refusing bodies over
/// `max_body` bytes.
pub fn send(
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
    max_body: usize,
) -> Result<Answer, TransportError> {
    let mut builder = Request::builder();
    builder
        .method(method)
        .uri(url)
        .header("accept", "application/json");
    for (name, value) in headers {
        builder.header(*name, value.as_str());
    }
    if let Some(body) = body {
        builder
            .header("content-type", "application/json")
            .body(body);
    }
    let request = builder.build();
    let response: Response = spin_sdk::http::run(spin_sdk::http::send(request))
        .map_err(|e| TransportError(describe(&e)))?;
    let status = *response.status();
    let body = response.into_body();
    if body.len() > max_body {
        return Err(TransportError(format!(
            "the answer is larger than {max_body} bytes"
        )));
    }
    Ok(Answer { status, body })
}

/// A send failure, described without the peer's address (it may be an
/// internal one): only whether a connection was made.
fn describe(error: &spin_sdk::http::SendError) -> String {
    let text = error.to_string();
    if text.contains("DNS") || text.contains("Connection") || text.contains("connection") {
        "cannot connect".into()
    } else if text.contains("not allowed") || text.contains("HttpRequestDenied") {
        "the destination is not in allowed_outbound_hosts".into()
    } else {
        "the request failed".into()
    }
}
