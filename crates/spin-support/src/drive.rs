//! The blocking driver of the `cronium-rules` protocol machines: it steps
//! a machine, sends its requests on Spin's APIs (outbound HTTP for the
//! backend, Spin's Redis interface for Valkey) and sleeps its pauses on
//! the thread. The adapters build machines and call [`backend`] or
//! [`valkey`]; they write no call sequence of their own.

use std::time::{Duration, Instant};

use cronium_rules::protocol::{
    HttpReply, HttpRequest, HttpResponse, Machine, Method, Now, Step, ValkeyReply, ValkeyRequest,
    ValkeyValue,
};
use spin_sdk::redis::RedisResult;

use crate::http::{self, Deadline};
use crate::valkey as store;

/// What a driver needs from the world: a transport, a clock to sleep on,
/// and randomness.
pub trait Io<Request, Reply> {
    /// Sends one of the machine's requests and blocks for what came of it;
    /// a failure to get an answer is part of the reply, for the machine.
    fn send(&mut self, request: Request) -> Reply;
    /// Blocks for `pause`, a [`Step::Wait`] of the machine (a retry's
    /// backoff, say).
    fn sleep(&mut self, pause: Duration);
    /// The clock and randomness for the machine's next step: time since
    /// the drive started, and a fresh jitter draw.
    fn now(&mut self) -> Now;
}

/// Steps `machine` to its outcome on `io`.
pub fn drive<M: Machine>(mut machine: M, io: &mut impl Io<M::Request, M::Reply>) -> M::Output {
    let mut reply = None;
    loop {
        let now = io.now();
        match machine.next(reply.take(), now) {
            Step::Send(request) => reply = Some(io.send(request)),
            Step::Wait(pause) => io.sleep(pause),
            Step::Done(outcome) => return outcome,
        }
    }
}

/// The wall clock, with `wasi:random` jitter.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: Instant,
}

impl Clock {
    /// A clock whose elapsed time starts now, at the start of a drive.
    pub fn start() -> Self {
        Clock {
            started: Instant::now(),
        }
    }

    fn now(&self) -> Now {
        Now {
            elapsed: self.started.elapsed(),
            jitter: crate::random_unit(),
        }
    }
}

/// The backend at `base` (`http://` or `https://`), over Spin's outbound
/// HTTP.
pub struct Backend<'a> {
    /// The backend's base URL; a request's path is appended to it (a
    /// trailing `/` is dropped first).
    pub base: &'a str,
    /// Started with the drive: the [`Now::elapsed`] the machine sees counts
    /// from it.
    pub clock: Clock,
}

impl Io<HttpRequest, HttpReply> for Backend<'_> {
    fn send(&mut self, request: HttpRequest) -> HttpReply {
        let url = format!("{}{}", self.base.trim_end_matches('/'), request.path);
        let headers: Vec<(&str, String)> = request
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        http::send(
            method(request.method),
            &url,
            &headers,
            request.body,
            cronium_rules::backend::MAX_RESPONSE,
            Deadline::after(request.timeout),
        )
        .map(|answer| HttpResponse {
            status: answer.status,
            body: answer.body,
        })
    }

    fn sleep(&mut self, pause: Duration) {
        std::thread::sleep(pause);
    }

    fn now(&mut self) -> Now {
        self.clock.now()
    }
}

/// Drives a backend machine against the backend at `base`.
pub fn backend<M: Machine<Request = HttpRequest, Reply = HttpReply>>(
    base: &str,
    machine: M,
) -> M::Output {
    drive(
        machine,
        &mut Backend {
            base,
            clock: Clock::start(),
        },
    )
}

/// Valkey over this instance's connection ([`crate::valkey`]).
pub struct Valkey {
    /// Started with the drive: the [`Now::elapsed`] the machine sees counts
    /// from it.
    pub clock: Clock,
}

impl Io<ValkeyRequest, ValkeyReply> for Valkey {
    fn send(&mut self, request: ValkeyRequest) -> ValkeyReply {
        let reply = match &request {
            ValkeyRequest::Command(words) => store::command(words),
            ValkeyRequest::Script(call) => store::run_script(call),
        };
        reply.map(value)
    }

    fn sleep(&mut self, pause: Duration) {
        std::thread::sleep(pause);
    }

    fn now(&mut self) -> Now {
        self.clock.now()
    }
}

/// Drives a Valkey machine on this instance's connection.
pub fn valkey<M: Machine<Request = ValkeyRequest, Reply = ValkeyReply>>(machine: M) -> M::Output {
    drive(
        machine,
        &mut Valkey {
            clock: Clock::start(),
        },
    )
}

/// Spin's reply (a list of values) as one plain value: the value itself
/// when there is one, else the list.
pub fn value(mut reply: Vec<RedisResult>) -> ValkeyValue {
    if reply.len() == 1 {
        return one(reply.remove(0));
    }
    ValkeyValue::Array(reply.into_iter().map(one).collect())
}

fn one(result: RedisResult) -> ValkeyValue {
    match result {
        RedisResult::Nil => ValkeyValue::Nil,
        RedisResult::Int64(n) => ValkeyValue::Int(n),
        RedisResult::Binary(bytes) => ValkeyValue::Bytes(bytes),
        RedisResult::Status(text) => ValkeyValue::Bytes(text.into_bytes()),
    }
}

fn method(method: Method) -> spin_sdk::http::Method {
    match method {
        Method::Get => spin_sdk::http::Method::Get,
        Method::Post => spin_sdk::http::Method::Post,
        Method::Put => spin_sdk::http::Method::Put,
        Method::Delete => spin_sdk::http::Method::Delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_replies_read_as_one_value_or_a_list() {
        assert_eq!(value(vec![RedisResult::Int64(3)]), ValkeyValue::Int(3));
        assert_eq!(
            value(vec![RedisResult::Int64(0), RedisResult::Nil]),
            ValkeyValue::Array(vec![ValkeyValue::Int(0), ValkeyValue::Nil])
        );
        assert_eq!(
            value(vec![RedisResult::Status("OK".into())]),
            ValkeyValue::Bytes(b"OK".to_vec())
        );
    }
}
