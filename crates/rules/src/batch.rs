//! The batch route (`docs/batch.md`): `POST /executions/{id}/batch` with
//! `{"requests":[{"id","method","url","headers"?,"body"?},...]}`, in the
//! shape of Microsoft Graph's JSON batching, answered with
//! `{"responses":[{"id","status","headers","body"?},...]}` in request order.
//!
//! This module holds the rules, without I/O: [`parse`] checks a whole batch
//! before any of it runs (so that a 400 for the batch has no effects) and
//! resolves each request's URL and route; [`Answer`] writes the answer,
//! keeping only the headers a route sets and the bodies as the routes wrote
//! them. The batch component (`components/batch`) runs the requests in
//! between, each on the route that serves it.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::value::RawValue;

use crate::limits::body_max_for_path;
use crate::routes::{RouteGroup, group_for_path};

/// The most requests one batch may carry.
pub const MAX_REQUESTS: usize = 50;

/// The most bytes of response bodies one batch answer holds (16 MiB); a body
/// that would take it past this is left out ([`Answer::room`]).
pub const ANSWER_BODIES_MAX: usize = 16 * 1024 * 1024;

/// The methods a request of a batch may have. Any other is a 400 for the
/// whole batch; one of these that its route does not take is that
/// request's own 405.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The most headers of one request of a batch (the custom host's own
/// limit for a request).
pub const MAX_HEADERS: usize = 100;

/// The most header bytes (names plus values) of one request of a batch.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Headers a request of a batch may not set: the batch's own credentials
/// apply to all of its requests, the transport is the batch's, and CORS
/// belongs to the batch as a whole.
const REFUSED_HEADERS: [&str; 15] = [
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "http2-settings",
    "proxy-authorization",
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
];

/// Why a batch is refused as a whole: the message of its 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError(pub String);

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One request of a batch, checked, with its URL resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRequest<'a> {
    /// The caller's id of the request, echoed in its answer.
    pub id: String,
    /// Upper case, one of [`METHODS`].
    pub method: &'static str,
    /// The absolute path, still percent-encoded, with its query if any.
    pub path_with_query: String,
    /// Who answers it.
    pub target: Target,
    /// Lower-case names, in the order given.
    pub headers: Vec<(String, String)>,
    /// The JSON body as the caller wrote it; `None` without one (`body`
    /// absent or `null`).
    pub body: Option<&'a str>,
}

/// Who answers a request of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The group's component, as if the request had come on its own.
    Group(RouteGroup),
    /// No component serves the path: the batch answers the JSON 404 that
    /// the host answers for it.
    NoRoute,
    /// The body is over the route's cap (the value): the batch answers
    /// the 413 the route would answer, without sending the body anywhere.
    TooLarge(usize),
}

/// Checks a whole batch and resolves each request; `execution` is the
/// `{id}` segment of the batch's own path, as sent (still percent-encoded),
/// which relative URLs hang off.
pub fn parse<'a>(body: &'a [u8], execution: &str) -> Result<Vec<SubRequest<'a>>, BatchError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BatchError(
            "request body is empty; expected a JSON object".into(),
        ));
    }
    let envelope: HashMap<String, &'a RawValue> = serde_json::from_slice(body)
        .map_err(|e| BatchError(format!("invalid request body: {e}")))?;
    if let Some(other) = envelope.keys().find(|k| k.as_str() != "requests") {
        return Err(BatchError(format!(
            "unknown field \"{other}\"; a batch is {{\"requests\":[...]}}"
        )));
    }
    let requests: Vec<&'a RawValue> = envelope
        .get("requests")
        .ok_or_else(|| BatchError("missing field \"requests\"".into()))
        .and_then(|raw| {
            serde_json::from_str(raw.get())
                .map_err(|_| BatchError("\"requests\" must be an array of requests".into()))
        })?;
    if requests.len() > MAX_REQUESTS {
        return Err(BatchError(format!(
            "a batch holds at most {MAX_REQUESTS} requests; this one has {}",
            requests.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut parsed = Vec::with_capacity(requests.len());
    for (index, raw) in requests.into_iter().enumerate() {
        let request = sub_request(index, raw, execution)?;
        if !seen.insert(request.id.clone()) {
            return Err(BatchError(format!(
                "requests[{index}]: the id {} is used twice; ids must be unique",
                quoted(&request.id)
            )));
        }
        parsed.push(request);
    }
    Ok(parsed)
}

/// One request, `index` in the batch.
fn sub_request<'a>(
    index: usize,
    raw: &'a RawValue,
    execution: &str,
) -> Result<SubRequest<'a>, BatchError> {
    let fields: HashMap<String, &'a RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| BatchError(format!("requests[{index}] is not a JSON object")))?;
    let id = match fields
        .get("id")
        .map(|raw| serde_json::from_str::<String>(raw.get()))
    {
        Some(Ok(id)) if !id.is_empty() => id,
        _ => {
            return Err(BatchError(format!(
                "requests[{index}]: \"id\" must be a non-empty string"
            )));
        }
    };
    let named = format!("requests[{index}] (id {})", quoted(&id));
    let refuse = |why: String| BatchError(format!("{named}: {why}"));
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "id" | "method" | "url" | "headers" | "body"))
    {
        return Err(refuse(format!(
            "unknown field \"{other}\"; a request has id, method, url, headers and body"
        )));
    }
    let string = |field: &str| {
        fields
            .get(field)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .ok_or_else(|| refuse(format!("\"{field}\" must be a string")))
    };
    let method = string("method")?;
    let method = METHODS
        .into_iter()
        .find(|m| m.eq_ignore_ascii_case(&method))
        .ok_or_else(|| {
            refuse(format!(
                "method {} is not one a batch can carry ({})",
                quoted(&method),
                METHODS.join(", ")
            ))
        })?;
    let path_with_query = resolve(&string("url")?, execution).map_err(refuse)?;
    let headers = match fields.get("headers") {
        None => Vec::new(),
        Some(raw) => headers(raw).map_err(refuse)?,
    };
    let body = fields
        .get("body")
        .map(|raw| raw.get())
        .filter(|text| *text != "null");
    let path = path_with_query
        .split_once('?')
        .map_or(path_with_query.as_str(), |(path, _)| path);
    let target = match group_for_path(path) {
        None => Target::NoRoute,
        Some(RouteGroup::Batch) => return Err(refuse("a batch cannot contain a batch".into())),
        Some(group) => {
            let limit = body_max_for_path(path);
            if body.is_some_and(|b| b.len() > limit) {
                Target::TooLarge(limit)
            } else {
                Target::Group(group)
            }
        }
    };
    Ok(SubRequest {
        id,
        method,
        path_with_query,
        target,
        headers,
        body,
    })
}

/// The absolute path (with query) of `url`: an absolute path of this API
/// as it is, anything else relative to `/executions/{execution}/`. Only
/// paths: a URL with a scheme or an authority is refused, as is anything
/// a request line could not carry.
pub fn resolve(url: &str, execution: &str) -> Result<String, String> {
    if url.is_empty() {
        return Err("\"url\" is empty".into());
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) || url.contains('#') {
        return Err(format!(
            "url {} is not a path a request can carry (percent-encode spaces, \
             non-ASCII and '#')",
            quoted(url)
        ));
    }
    let path = url.split_once('?').map_or(url, |(path, _)| path);
    if path.starts_with("//") || path.contains("://") {
        return Err(format!(
            "url {} must be a path of this API (like \"input\" or \"/tool-actions/execute\"), \
             not a full URL",
            quoted(url)
        ));
    }
    Ok(if url.starts_with('/') {
        url.to_owned()
    } else {
        format!("/executions/{execution}/{url}")
    })
}

/// A request's `headers`: an object of string values with valid names,
/// none of them [`REFUSED_HEADERS`], within [`MAX_HEADERS`] and
/// [`MAX_HEADER_BYTES`].
fn headers(raw: &RawValue) -> Result<Vec<(String, String)>, String> {
    let given: Vec<(String, serde_json::Value)> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get())
            .map_err(|_| "\"headers\" must be an object of strings".to_owned())?
            .into_iter()
            .collect();
    if given.len() > MAX_HEADERS {
        return Err(format!("more than {MAX_HEADERS} headers"));
    }
    let mut bytes = 0;
    let mut headers = Vec::with_capacity(given.len());
    for (name, value) in given {
        let serde_json::Value::String(value) = value else {
            return Err(format!("header {} must be a string", quoted(&name)));
        };
        let valid_name = !name.is_empty() && name.bytes().all(is_token_byte);
        if !valid_name {
            return Err(format!("{} is not a header name", quoted(&name)));
        }
        let name = name.to_ascii_lowercase();
        if REFUSED_HEADERS.contains(&name.as_str()) || name.starts_with("proxy-") {
            return Err(format!(
                "header {name} cannot be set on a request of a batch (the batch's own applies)"
            ));
        }
        if !value
            .bytes()
            .all(|b| b == b'\t' || b == b' ' || b.is_ascii_graphic())
        {
            return Err(format!("the value of header {name} is not valid"));
        }
        bytes += name.len() + value.len();
        if bytes > MAX_HEADER_BYTES {
            return Err(format!("headers over {MAX_HEADER_BYTES} bytes"));
        }
        headers.push((name, value));
    }
    Ok(headers)
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `text` as a JSON string, for messages.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// Whether a response header of a route belongs in the batch's answer:
/// everything the route set (`content-type`, `etag`, `retry-after`,
/// `allow`, `idempotent-replayed`, ...), not what the transport or the
/// host in front added (length, framing, date, request id, CORS).
pub fn answer_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !matches!(
        name.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "upgrade"
            | "date"
            | "server"
            | "vary"
            | "x-request-id"
    ) && !name.starts_with("access-control-")
}

/// The answer of a batch, written as its requests are answered:
/// `{"responses":[{"id","status","headers","body"},...]}`.
///
/// Large bodies are kept as they came, in pieces of their own, and copied
/// once, into an answer of the exact size, by [`Answer::finish`]: a batch's
/// memory holds its answer about twice at most, never the many copies a
/// growing buffer would make.
#[derive(Debug)]
pub struct Answer {
    /// The answer's text in order; JSON punctuation and small bodies go
    /// into the last piece.
    pieces: Vec<Vec<u8>>,
    answered: usize,
    bodies: usize,
}

/// Bodies up to this size are copied into the answer's current piece.
const INLINE_BODY: usize = 4096;

impl Default for Answer {
    fn default() -> Self {
        Self::new()
    }
}

impl Answer {
    /// An answer with no responses yet.
    pub fn new() -> Self {
        let mut first = Vec::with_capacity(4096);
        first.extend_from_slice(b"{\"responses\":[");
        Answer {
            pieces: vec![first],
            answered: 0,
            bodies: 0,
        }
    }

    /// Bytes of response bodies the answer may still take.
    pub fn room(&self) -> usize {
        ANSWER_BODIES_MAX - self.bodies
    }

    /// The piece small text is appended to.
    fn tail(&mut self) -> &mut Vec<u8> {
        if self.pieces.is_empty() {
            self.pieces.push(Vec::new());
        }
        let last = self.pieces.len() - 1;
        &mut self.pieces[last]
    }

    /// Adds the response to request `id`: its status, the headers that
    /// [`answer_header`] keeps (lower-case names, repeated ones joined with
    /// `, `), and its body: JSON as the route wrote it, other text as a
    /// JSON string, none when empty. A body over [`Answer::room`] (or
    /// `None`, when the caller stopped reading it there) is left out and
    /// the response says `"bodyOmitted":true`; the status and headers stay
    /// the route's.
    pub fn push(
        &mut self,
        id: &str,
        status: u16,
        headers: &[(String, Vec<u8>)],
        body: Option<Vec<u8>>,
    ) {
        let mut kept: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers.iter().filter(|(name, _)| answer_header(name)) {
            let value = String::from_utf8_lossy(value);
            kept.entry(name.to_ascii_lowercase())
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let first = self.answered == 0;
        self.answered += 1;
        let room = self.room();
        let out = self.tail();
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(quoted(id).as_bytes());
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(status.to_string().as_bytes());
        out.extend_from_slice(b",\"headers\":");
        // A map of strings always serializes.
        let _ = serde_json::to_writer(&mut *out, &kept);
        match body {
            Some(body) if body.len() > room => out.extend_from_slice(OMITTED),
            None => out.extend_from_slice(OMITTED),
            Some(body) if body.is_empty() => {}
            Some(body) => {
                out.extend_from_slice(b",\"body\":");
                self.bodies += body.len();
                let text = as_json(body);
                if text.len() <= INLINE_BODY {
                    self.tail().extend_from_slice(&text);
                } else {
                    self.pieces.push(text);
                    self.pieces.push(Vec::new());
                }
            }
        }
        self.tail().push(b'}');
    }

    /// The whole answer, as JSON.
    pub fn finish(mut self) -> Vec<u8> {
        self.tail().extend_from_slice(b"]}");
        let total = self.pieces.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(total);
        for piece in self.pieces {
            out.extend_from_slice(&piece);
        }
        out
    }
}

/// What a response says of a body left out.
const OMITTED: &[u8] = b",\"bodyOmitted\":true";

/// `body` as a JSON value: itself when it is JSON (without surrounding
/// whitespace), else a JSON string of its text.
fn as_json(body: Vec<u8>) -> Vec<u8> {
    // JSON only as a client's parser reads it whole: a number out of range
    // (`1e999999`) passes a syntax check, but not serde_json's (nor Go's)
    // reading of the answer (found by fuzz/fuzz_targets/batch.rs).
    let readable = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
    let trimmed = match serde_json::from_slice::<&RawValue>(&body) {
        Ok(raw) if readable && raw.get().len() == body.len() => None,
        Ok(raw) if readable => Some(raw.get().as_bytes().to_vec()),
        _ => Some(quoted(&String::from_utf8_lossy(&body)).into_bytes()),
    };
    trimmed.unwrap_or(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parsed(body: &Value) -> Result<Vec<SubRequest<'static>>, String> {
        let bytes: &'static [u8] = Box::leak(body.to_string().into_bytes().into_boxed_slice());
        parse(bytes, "exec-1").map_err(|e| e.0)
    }

    fn refusal(body: Value) -> String {
        parsed(&body).expect_err("refused")
    }

    #[test]
    fn a_route_body_with_a_number_no_parser_can_hold_is_answered_as_text() {
        // Found by the batch fuzz target: valid JSON syntax, but a number
        // out of range, which the client's parser refuses.
        let body = br#"{"value": [2E000222222]}"#.to_vec();
        let mut answer = Answer::new();
        answer.push("1", 200, &[], Some(body));
        let parsed: Value = serde_json::from_slice(&answer.finish()).expect("the answer is JSON");
        assert_eq!(
            parsed["responses"][0]["body"],
            r#"{"value": [2E000222222]}"#
        );
    }

    #[test]
    fn relative_urls_hang_off_the_execution_and_absolute_paths_stay() {
        let requests = parsed(&json!({"requests": [
            {"id": "1", "method": "GET", "url": "input"},
            {"id": "2", "method": "put", "url": "variables/a%2Fb?x=1", "headers": {"If-Match": "\"e1\""}, "body": {"value": 3}},
            {"id": "3", "method": "POST", "url": "/tool-actions/execute", "body": {"tool": "slack"}},
            {"id": "4", "method": "GET", "url": "/executions/other/input"},
        ]}))
        .unwrap();
        let paths: Vec<&str> = requests
            .iter()
            .map(|r| r.path_with_query.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "/executions/exec-1/input",
                "/executions/exec-1/variables/a%2Fb?x=1",
                "/tool-actions/execute",
                "/executions/other/input",
            ]
        );
        assert_eq!(requests[1].method, "PUT");
        assert_eq!(
            requests[1].headers,
            [("if-match".to_owned(), "\"e1\"".to_owned())]
        );
        assert_eq!(requests[1].body, Some(r#"{"value":3}"#));
        assert_eq!(requests[0].body, None);
        let targets: Vec<Target> = requests.iter().map(|r| r.target).collect();
        assert_eq!(
            targets,
            [
                Target::Group(RouteGroup::Executions),
                Target::Group(RouteGroup::Variables),
                Target::Group(RouteGroup::ToolActions),
                // Another execution's route: its own component answers 403.
                Target::Group(RouteGroup::Executions),
            ]
        );
    }

    #[test]
    fn a_body_of_null_is_no_body_and_keeps_its_bytes_otherwise() {
        let body = br#"{"requests":[{"id":"a","method":"POST","url":"output","body":null},
                       {"id":"b","method":"POST","url":"output","body": {"data" : [1, 2]}}]}"#;
        let requests = parse(body, "e").unwrap();
        assert_eq!(requests[0].body, None);
        assert_eq!(requests[1].body, Some(r#"{"data" : [1, 2]}"#));
    }

    #[test]
    fn unknown_paths_answer_404_and_bodies_over_their_route_s_cap_413() {
        let big = "x".repeat(crate::limits::BODY_MAX);
        let requests = parsed(&json!({"requests": [
            {"id": "1", "method": "GET", "url": "nothing"},
            {"id": "2", "method": "GET", "url": "/health"},
            {"id": "3", "method": "PUT", "url": "variables/k", "body": {"value": big}},
            {"id": "4", "method": "POST", "url": "output", "body": {"data": big}},
        ]}))
        .unwrap();
        let targets: Vec<Target> = requests.iter().map(|r| r.target).collect();
        assert_eq!(
            targets,
            [
                Target::NoRoute,
                Target::NoRoute,
                Target::TooLarge(crate::limits::BODY_MAX),
                Target::Group(RouteGroup::Executions),
            ]
        );
    }

    #[test]
    fn the_whole_batch_is_refused_naming_the_offending_request() {
        let cases = [
            (
                json!({"requests": [{"id": "1", "method": "FETCH", "url": "input"}]}),
                "requests[0] (id \"1\"): method \"FETCH\"",
            ),
            (
                json!({"requests": [{"id": "", "method": "GET", "url": "input"}]}),
                "requests[0]: \"id\" must be a non-empty string",
            ),
            (
                json!({"requests": [{"id": 7, "method": "GET", "url": "input"}]}),
                "requests[0]: \"id\" must be a non-empty string",
            ),
            (
                json!({"requests": [{"id": "a", "method": "GET", "url": "input"}, {"id": "a", "method": "GET", "url": "context"}]}),
                "requests[1]: the id \"a\" is used twice",
            ),
            (
                json!({"requests": [{"id": "n", "method": "POST", "url": "batch"}]}),
                "requests[0] (id \"n\"): a batch cannot contain a batch",
            ),
            (
                json!({"requests": [{"id": "n", "method": "POST", "url": "/executions/x/batch?y"}]}),
                "requests[0] (id \"n\"): a batch cannot contain a batch",
            ),
            (
                json!({"requests": [{"id": "u", "method": "GET", "url": "http://evil/executions/exec-1/input"}]}),
                "requests[0] (id \"u\"): url \"http://evil",
            ),
            (
                json!({"requests": [{"id": "u", "method": "GET", "url": "//evil/x"}]}),
                "not a full URL",
            ),
            (
                json!({"requests": [{"id": "u", "method": "GET", "url": "variables/a b"}]}),
                "is not a path a request can carry",
            ),
            (
                json!({"requests": [{"id": "u", "method": "GET", "url": ""}]}),
                "\"url\" is empty",
            ),
            (
                json!({"requests": [{"id": "u", "method": "GET"}]}),
                "requests[0] (id \"u\"): \"url\" must be a string",
            ),
            (
                json!({"requests": [{"id": "h", "method": "GET", "url": "input", "headers": {"Authorization": "Bearer x"}}]}),
                "header authorization cannot be set",
            ),
            (
                json!({"requests": [{"id": "h", "method": "GET", "url": "input", "headers": {"X-N": 1}}]}),
                "header \"X-N\" must be a string",
            ),
            (
                json!({"requests": [{"id": "h", "method": "GET", "url": "input", "headers": {"bad name": "1"}}]}),
                "\"bad name\" is not a header name",
            ),
            (
                json!({"requests": [{"id": "h", "method": "GET", "url": "input", "headers": ["x"]}]}),
                "\"headers\" must be an object",
            ),
            (
                json!({"requests": [{"id": "d", "method": "GET", "url": "input", "dependsOn": ["c"]}]}),
                "unknown field \"dependsOn\"",
            ),
            (
                json!({"requests": ["GET input"]}),
                "requests[0] is not a JSON object",
            ),
            (
                json!({"requests": {"id": "1"}}),
                "\"requests\" must be an array",
            ),
            (json!({"calls": []}), "unknown field \"calls\""),
            (json!({}), "missing field \"requests\""),
            (json!([1]), "invalid request body"),
        ];
        for (body, expected) in cases {
            let message = refusal(body.clone());
            assert!(message.contains(expected), "{body}: {message}");
        }
        assert!(parse(b"  ", "e").unwrap_err().0.contains("empty"));
        assert!(
            parse(b"{nope", "e")
                .unwrap_err()
                .0
                .contains("invalid request body")
        );
    }

    #[test]
    fn at_most_fifty_requests() {
        let requests = |n: usize| json!({"requests": (0..n).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "input"})).collect::<Vec<_>>()});
        assert_eq!(parsed(&requests(MAX_REQUESTS)).unwrap().len(), MAX_REQUESTS);
        assert_eq!(parsed(&requests(0)).unwrap().len(), 0);
        assert!(
            refusal(requests(MAX_REQUESTS + 1)).contains("at most 50 requests; this one has 51")
        );
    }

    #[test]
    fn the_answer_keeps_the_route_s_headers_and_body_bytes() {
        let mut answer = Answer::new();
        answer.push(
            "1",
            200,
            &[
                ("content-type".into(), b"application/json".to_vec()),
                ("ETag".into(), b"\"e1\"".to_vec()),
                ("content-length".into(), b"27".to_vec()),
                ("x-request-id".into(), b"abc".to_vec()),
                ("access-control-allow-origin".into(), b"*".to_vec()),
                ("x-note".into(), b"a".to_vec()),
                ("X-Note".into(), b"b".to_vec()),
            ],
            Some(br#"{"success":true,"data":{"b":1,"a":2}}"#.to_vec()),
        );
        answer.push("two \"quoted\"", 204, &[], Some(Vec::new()));
        answer.push("3", 502, &[], Some(b"not json".to_vec()));
        answer.push("4", 200, &[], Some(b" [1, 2] \n".to_vec()));
        let text = String::from_utf8(answer.finish()).unwrap();
        assert_eq!(
            text,
            r#"{"responses":[{"id":"1","status":200,"headers":{"content-type":"application/json","etag":"\"e1\"","x-note":"a, b"},"body":{"success":true,"data":{"b":1,"a":2}}},{"id":"two \"quoted\"","status":204,"headers":{}},{"id":"3","status":502,"headers":{},"body":"not json"},{"id":"4","status":200,"headers":{},"body":[1, 2]}]}"#
        );
        let _: Value = serde_json::from_str(&text).unwrap();
    }

    #[test]
    fn bodies_past_the_answer_s_room_are_left_out_with_their_status_kept() {
        let mut answer = Answer::new();
        let big = format!("\"{}\"", "x".repeat(ANSWER_BODIES_MAX - 12));
        answer.push("1", 200, &[], Some(big.clone().into_bytes()));
        assert_eq!(answer.room(), 10);
        answer.push("2", 200, &[], Some(b"12345678901".to_vec()));
        answer.push("3", 200, &[], None);
        answer.push("4", 200, &[], Some(b"[1]".to_vec()));
        let text = answer.finish();
        assert_eq!(text.capacity(), text.len(), "one exact copy");
        let json: Value = serde_json::from_slice(&text).unwrap();
        let responses = json["responses"].as_array().unwrap();
        assert_eq!(responses[0]["body"].as_str().unwrap().len(), big.len() - 2);
        assert_eq!(
            responses[1],
            json!({"id": "2", "status": 200, "headers": {}, "bodyOmitted": true})
        );
        assert_eq!(responses[2]["bodyOmitted"], true);
        assert_eq!(responses[3]["body"], json!([1]));
    }

    #[test]
    fn an_empty_answer_is_valid_json() {
        assert_eq!(Answer::new().finish(), br#"{"responses":[]}"#);
    }
}
