//! An incoming request, read once with the body cap of its route.

use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, Method};
use wasi::io::streams::StreamError;

use crate::ApiError;
use crate::bindings::exports::cronium::runtime::handler;

/// The parts of a request that handlers look at.
#[derive(Debug, Clone)]
pub struct Request {
    /// The HTTP method (a name `wasi:http` does not know is `Other`).
    pub method: Method,
    /// The raw (still percent-encoded) path.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    headers: Vec<(String, Vec<u8>)>,
    /// The whole body, at most the cap of the path's route
    /// (`cronium_rules::limits::body_max_for_path`); empty when none came.
    pub body: Vec<u8>,
}

impl Request {
    /// Reads `incoming`, refusing (413) a body over the cap of its path
    /// without reading the rest.
    pub fn read(incoming: &IncomingRequest) -> Result<Self, ApiError> {
        let method = incoming.method();
        let (path, query) = split_query(incoming.path_with_query().unwrap_or_else(|| "/".into()));
        let headers = incoming.headers().entries();
        let limit = cronium_rules::limits::body_max_for_path(&path);
        let unreadable = || ApiError::bad_request("could not read the request body");
        let incoming_body = incoming.consume().map_err(|()| unreadable())?;
        let stream = incoming_body.stream().map_err(|()| unreadable())?;
        let mut body = Vec::new();
        loop {
            // Ask for one byte past the cap, so that a body over it shows.
            let wanted = (limit - body.len()) as u64 + 1;
            match stream.blocking_read(wanted) {
                Ok(chunk) => {
                    if body.len() + chunk.len() > limit {
                        return Err(ApiError::payload_too_large(limit));
                    }
                    body.extend_from_slice(&chunk);
                }
                Err(StreamError::Closed) => break,
                Err(_) => return Err(unreadable()),
            }
        }
        Ok(Request {
            method,
            path,
            query,
            headers,
            body,
        })
    }

    /// Takes a request that came through the `handler` export (`handler.wit`),
    /// with the same body cap as [`Request::read`].
    pub fn from_direct(request: handler::Request) -> Result<Self, ApiError> {
        let (path, query) = split_query(request.path_with_query);
        let limit = cronium_rules::limits::body_max_for_path(&path);
        if request.body.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        Ok(Request {
            method: method(request.method),
            path,
            query,
            headers: request.headers,
            body: request.body,
        })
    }

    /// A request built in memory (for tests).
    pub fn new(method: Method, path: &str, headers: Vec<(String, Vec<u8>)>, body: Vec<u8>) -> Self {
        Request {
            method,
            path: path.to_owned(),
            query: String::new(),
            headers,
            body,
        }
    }

    /// The first value of header `name` (case-insensitive) as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body as a JSON value of type `T`; 400 when empty, not JSON or
    /// not of that shape (a missing field, say), with serde's explanation.
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "request body is empty; expected a JSON object",
            ));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
    }
}

/// The path and the query (without `?`) of `path_with_query`.
fn split_query(path_with_query: String) -> (String, String) {
    match path_with_query.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (path_with_query, String::new()),
    }
}

/// The method named `name`, as `wasi:http` would have handed it over.
fn method(name: String) -> Method {
    match name.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronium_rules::limits::{BODY_MAX, OUTPUT_BODY_MAX};

    fn direct(method: &str, path_with_query: &str, body: usize) -> handler::Request {
        handler::Request {
            method: method.into(),
            path_with_query: path_with_query.into(),
            headers: vec![("authorization".into(), b"Bearer t".to_vec())],
            body: vec![b' '; body],
        }
    }

    #[test]
    fn a_direct_request_is_split_into_path_query_method_and_headers() {
        let request = Request::from_direct(direct("PUT", "/a/b%2Fc?x=1&y", 2)).unwrap();
        assert_eq!(request.method, Method::Put);
        assert_eq!(
            (request.path.as_str(), request.query.as_str()),
            ("/a/b%2Fc", "x=1&y")
        );
        assert_eq!(request.header("Authorization"), Some("Bearer t"));
        assert_eq!(request.body.len(), 2);
        let other = Request::from_direct(direct("PURGE", "/", 0)).unwrap();
        assert_eq!(other.method, Method::Other("PURGE".into()));
    }

    #[test]
    fn a_direct_request_over_its_routes_cap_is_413_like_a_streamed_one() {
        let at_cap = direct("POST", "/executions/e/output", OUTPUT_BODY_MAX);
        assert!(Request::from_direct(at_cap).is_ok());
        let over = direct("POST", "/executions/e/output", OUTPUT_BODY_MAX + 1);
        assert_eq!(Request::from_direct(over).unwrap_err().status, 413);
        let over = direct("PUT", "/executions/e/variables/k", BODY_MAX + 1);
        assert_eq!(Request::from_direct(over).unwrap_err().status, 413);
    }
}
