//! One request of a batch, sent to the endpoint group that serves it as an
//! outgoing `wasi:http` request to `http://<group>.spin.internal`, and its
//! whole answer read back (headers and body).
//!
//! The calls are the blocking `wasi:io` ones: a batch runs its requests one
//! after the other and has nothing else to do while one is served. No
//! deadline of its own: the route answering it has its own deadlines, and
//! the host bounds the batch as a whole.

use cronium_rules::batch::SubRequest;
use cronium_rules::routes::RouteGroup;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasi::io::streams::{OutputStream, StreamError};

/// A route's answer to one request of a batch.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body; `None` when it is over the room the batch's answer
    /// has left (then it was not read further).
    pub body: Option<Vec<u8>>,
}

/// Sends `request` to `group` with the batch's `authorization` and reads
/// the answer, its body up to `room` bytes.
pub fn send(
    group: RouteGroup,
    request: &SubRequest<'_>,
    authorization: &str,
    room: usize,
) -> Result<Response, String> {
    let mut fields: Vec<(String, Vec<u8>)> =
        vec![("authorization".into(), authorization.as_bytes().to_vec())];
    fields.extend(
        request
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone().into_bytes())),
    );
    if request.body.is_some() && !request.headers.iter().any(|(n, _)| n == "content-type") {
        fields.push(("content-type".into(), b"application/json".to_vec()));
    }
    let fields = Fields::from_list(&fields).map_err(|e| format!("a header was refused: {e:?}"))?;
    let outgoing = OutgoingRequest::new(fields);
    let invalid = |what: &str| format!("the request's {what} was refused");
    outgoing
        .set_method(&method(request.method))
        .map_err(|()| invalid("method"))?;
    outgoing
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(&group.chaining_authority()))
        .map_err(|()| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(&request.path_with_query))
        .map_err(|()| invalid("path"))?;
    let body = outgoing.body().map_err(|()| "no request body".to_owned())?;
    let pending = outgoing_handler::handle(outgoing, None).map_err(|e| describe(&e))?;
    if let Some(text) = request.body {
        // A route may answer (413, say) without reading all of it; its
        // answer is what counts, so a failed write is not an error here.
        if let Ok(stream) = body.write() {
            let _ = write_all(&stream, text.as_bytes());
        }
    }
    let _ = OutgoingBody::finish(body, None);

    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or_else(|| "no answer".to_owned())?
        .map_err(|()| "the answer was taken twice".to_owned())?
        .map_err(|e| describe(&e))?;
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| "no answer body".to_owned())?;
    let body = read_up_to(&incoming, room)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Writes all of `bytes` to `stream` and flushes them, as fast as the
/// stream takes them.
fn write_all(stream: &OutputStream, bytes: &[u8]) -> Result<(), StreamError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let permitted = stream.check_write()?;
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let (now, later) = rest.split_at(rest.len().min(permitted as usize));
        stream.write(now)?;
        rest = later;
    }
    stream.blocking_flush()
}

/// The whole body, or `None` once it is known to be over `room` bytes.
fn read_up_to(incoming: &IncomingBody, room: usize) -> Result<Option<Vec<u8>>, String> {
    let stream = incoming
        .stream()
        .map_err(|()| "no answer body stream".to_owned())?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if body.len() + chunk.len() > room {
                    return Ok(None);
                }
                body.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => {
                // Kept until the answer is written: without the slack.
                body.shrink_to_fit();
                return Ok(Some(body));
            }
            Err(StreamError::LastOperationFailed(_)) => {
                return Err("the answer was cut off".to_owned());
            }
        }
    }
}

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    }
}

/// Why an outgoing request failed, for the log.
fn describe(error: &ErrorCode) -> String {
    match error {
        ErrorCode::HttpRequestDenied => {
            "the host refused it (under Spin: is http://<group>.spin.internal among the \
             batch component's allowed_outbound_hosts?)"
                .to_owned()
        }
        other => format!("{other:?}"),
    }
}
