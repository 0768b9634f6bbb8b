//! What every endpoint component shares, and nothing with I/O of its own:
//!
//! * [`bindings`]: the capability imports of the `endpoint` world;
//! * [`endpoint!`]: a component's two exports, `wasi:http` ([`serve`]: reads
//!   the request, body capped, and writes the answer) and the direct
//!   `handler` export the custom host calls ([`answer`]); both run the
//!   component's route and answer its [`Reply`] or [`ApiError`] as JSON;
//! * [`Request`], [`path`]: request parsing and path decoding; CORS when
//!   no host stands in front (Spin);
//! * [`authorize`]: token verification plus the execution-id guard; it
//!   answers the `caller` handle every capability acting for someone takes;
//! * [`execution::load`], [`audit::record`]: the caller's execution record
//!   (kept by the `backend` capability), and audit events;
//! * [`ApiError`]: the one error type, with the contract's JSON shape and
//!   the mapping from every capability error to an HTTP status.
//!
//! A component built on this crate runs unchanged in the custom host and
//! under Spin: it reaches the world only through [`bindings`].

pub mod bindings {
    //! Generated bindings of the `cronium:runtime/endpoint` world.
    wit_bindgen::generate!({
        path: "../../wit",
        world: "cronium:runtime/endpoint",
        runtime_path: "::spin_sdk::wit_bindgen::rt",
        // Components export `handler` with `endpoint!`, which names these
        // bindings from outside this crate.
        pub_export_macro: true,
        default_bindings_module: "::cronium_guest::bindings",
    });
    pub use cronium::runtime::*;
}

pub mod audit;
mod auth;
mod cors;
pub mod error;
pub mod execution;
pub mod path;
mod reply;
mod request;

pub use auth::authorize;
pub use error::ApiError;
pub use reply::Reply;
pub use request::Request;

use bindings::exports::cronium::runtime::handler;
use cors::CrossOrigin;
use spin_sdk::http::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

/// Gives a component its two exports onto one route function
/// (`fn(Request) -> Result<Reply, ApiError>`): the `wasi:http` export,
/// which Spin calls, and the `handler` export, which the custom host
/// calls. Both answer the same request the same way.
///
/// ```ignore
/// cronium_guest::endpoint!(route);
/// ```
#[macro_export]
macro_rules! endpoint {
    ($route:path) => {
        #[::spin_sdk::http_component]
        fn handle(
            request: ::spin_sdk::http::IncomingRequest,
            out: ::spin_sdk::http::ResponseOutparam,
        ) {
            $crate::serve(request, out, $route)
        }

        /// The direct export (`cronium:runtime/handler`).
        struct HandlerExport;

        impl $crate::bindings::exports::cronium::runtime::handler::Guest for HandlerExport {
            fn handle(
                request: $crate::bindings::exports::cronium::runtime::handler::Request,
            ) -> $crate::bindings::exports::cronium::runtime::handler::Response {
                $crate::answer(request, $route)
            }
        }

        $crate::bindings::export!(HandlerExport);
    };
}

/// Serves one request of the `handler` export: the same as [`serve`], with
/// the request already read and the answer returned whole.
pub fn answer(
    request: handler::Request,
    route: impl FnOnce(Request) -> Result<Reply, ApiError>,
) -> handler::Response {
    let cross_origin = CrossOrigin::of(&request.method, &request.headers);
    let reply = respond(&cross_origin, || Request::from_direct(request), route);
    let (status, headers, body) = reply.into_parts();
    handler::Response {
        status,
        headers: headers
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect(),
        body,
    }
}

/// Serves one request of the `wasi:http` export: reads it with the body cap
/// of its path, runs `route`, and writes the reply (or the error) as JSON.
///
/// Reading and writing use the blocking `wasi:io` calls directly rather
/// than an async executor: a handler has nothing to do while it waits, and
/// each avoided poll is a host call saved on every request.
pub fn serve(
    incoming: IncomingRequest,
    out: ResponseOutparam,
    route: impl FnOnce(Request) -> Result<Reply, ApiError>,
) {
    let cross_origin = CrossOrigin::of(
        &incoming.method().to_string(),
        &incoming.headers().entries(),
    );
    let reply = respond(&cross_origin, || Request::read(&incoming), route);
    write(out, reply);
}

/// Answers a preflight, or reads the request and runs `route`; either way
/// with the CORS headers the request's origin gets.
fn respond(
    cross_origin: &CrossOrigin,
    read: impl FnOnce() -> Result<Request, ApiError>,
    route: impl FnOnce(Request) -> Result<Reply, ApiError>,
) -> Reply {
    if let Some(preflight) = cross_origin.preflight() {
        return preflight;
    }
    let reply = read().and_then(route).unwrap_or_else(Reply::from);
    cross_origin.decorate(reply)
}

/// The most `blocking-write-and-flush` takes in one call.
const WRITE_CHUNK: usize = 4096;

fn write(out: ResponseOutparam, reply: Reply) {
    let (status, headers, body) = reply.into_parts();
    let headers: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    // Header names and values are ours and valid; should that ever change,
    // an empty header list still lets the status and body through.
    let fields = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        eprintln!("could not take the response body");
        return;
    };
    out.set(response);
    if let Err(e) = write_body(&outgoing, &body) {
        eprintln!("could not write the response body: {e}");
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Writes `bytes` to `body` and flushes them.
fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let stream = body.write().map_err(|()| "no body stream".to_owned())?;
    if bytes.len() <= WRITE_CHUNK {
        // The common case: one call.
        return stream
            .blocking_write_and_flush(bytes)
            .map_err(|e| e.to_string());
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        let permitted = stream.check_write().map_err(|e| e.to_string())?;
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let (now, later) = rest.split_at(rest.len().min(permitted as usize));
        stream.write(now).map_err(|e| e.to_string())?;
        rest = later;
    }
    stream.blocking_flush().map_err(|e| e.to_string())
}
