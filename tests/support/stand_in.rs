//! A loopback HTTP server standing in for a third-party service (Slack,
//! Discord, a mail API, a webhook receiver): it records every request it
//! gets and answers from a script, so tests can assert the exact requests
//! a tool sent.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::Value;

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Received {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// An answer: status, extra headers, body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    /// `status` with a plain-text body.
    pub fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Keep no record (long benchmark runs).
    forget: bool,
    /// Answers used in order; when empty, `fallback`.
    script: VecDeque<Answer>,
    fallback: Option<Answer>,
}

/// The stand-in server; stops when dropped.
pub struct StandIn {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Starts on a free loopback port, answering `fallback` to everything.
    pub async fn start(fallback: Answer) -> StandIn {
        let state = Arc::new(Mutex::new(State {
            fallback: Some(fallback),
            ..State::default()
        }));
        let shared = state.clone();
        let (addr, task) = super::serve_loopback(move |req| {
            let state = shared.clone();
            async move { answer(&state, req).await }
        })
        .await;
        StandIn { addr, state, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Answers the next requests with `answers`, in order, then the fallback.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// Stops recording requests (for benchmark runs).
    pub fn forget_requests(&self) {
        self.state.lock().unwrap().forget = true;
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    state: &Mutex<State>,
    request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers = super::serve::header_pairs(request.headers()).collect();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let answer = {
        let mut state = state.lock().unwrap();
        if !state.forget {
            state.received.push(Received {
                method,
                target,
                headers,
                body,
            });
        }
        state
            .script
            .pop_front()
            .or_else(|| state.fallback.clone())
            .unwrap()
    };
    let mut response = Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        response = response.header(name, value);
    }
    response.body(Full::new(Bytes::from(answer.body))).unwrap()
}
