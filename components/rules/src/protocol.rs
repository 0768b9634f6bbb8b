//! What every protocol machine of this crate shares (sans-I/O, in the
//! style of `h11` or `quinn-proto`): a [`Machine`] never sends, sleeps or
//! reads a clock. Its driver (the host's async one, the Spin adapters'
//! blocking one) steps it: each [`Machine::next`] gets the reply to the
//! last [`Step::Send`] (none at the start and after a [`Step::Wait`]) and
//! the time passed since the driver started, and answers what to do next.
//!
//! ```text
//! let mut reply = None;
//! loop {
//!     match machine.next(reply.take(), now()) {
//!         Step::Send(request) => reply = Some(transport(request)),
//!         Step::Wait(pause) => sleep(pause),
//!         Step::Done(outcome) => break outcome,
//!     }
//! }
//! ```
//!
//! Requests and replies are plain data: [`HttpRequest`]/[`HttpReply`] for
//! the backend, [`ValkeyRequest`]/[`ValkeyReply`] for Valkey.

use std::time::Duration;

use crate::valkey::ScriptCall;

/// What a machine asks its driver to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<Request, Output> {
    /// Send this, and step the machine again with the reply.
    Send(Request),
    /// Pause this long, and step the machine again with no reply.
    Wait(Duration),
    /// The protocol is over.
    Done(Output),
}

/// The driver's clock and randomness at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Now {
    /// Time passed since the driver started stepping the machine.
    pub elapsed: Duration,
    /// A uniform draw in `[0, 1)`, to spread pauses (jitter).
    pub jitter: f64,
}

impl Now {
    /// The start of a drive, with middling jitter (for tests).
    pub const START: Now = Now {
        elapsed: Duration::ZERO,
        jitter: 0.5,
    };
}

/// A protocol as a state machine its driver steps.
pub trait Machine {
    type Request;
    type Reply;
    type Output;

    /// The next step, given the reply to the last [`Step::Send`] (`None`
    /// at the first step and after a [`Step::Wait`]). Stepping a machine
    /// again after [`Step::Done`] is a driver's bug (it may panic).
    fn next(&mut self, reply: Option<Self::Reply>, now: Now) -> Step<Self::Request, Self::Output>;
}

/// The methods the backend's internal API is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    /// Whether a call with it may be repeated (only `GET` is retried).
    pub fn idempotent_retries(self) -> bool {
        self == Method::Get
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// One request to the backend. The transport prefixes `path` with the
/// backend's base URL, adds `accept`/`content-type: application/json`,
/// and must give up after `timeout` ([`TransportFailure::TimedOut`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    /// Lower-case names: `authorization`, the caller's, and others.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// What is left of the call's budget for this attempt.
    pub timeout: Duration,
}

impl HttpRequest {
    /// The value of header `name`, if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A whole answer of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why no answer came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportFailure {
    /// The request's `timeout` passed first.
    TimedOut,
    /// No answer, and why (without the peer's address).
    Failed(String),
    /// The request could not be made, or its answer not read (too large,
    /// cut off): [`Failure::InvalidResponse`](crate::backend::Failure::InvalidResponse)
    /// if no later attempt does better.
    Unreadable(String),
}

/// What the transport made of one [`HttpRequest`].
pub type HttpReply = Result<HttpResponse, TransportFailure>;

/// One Valkey round trip: a command's words, or a script call (sent with
/// `EVALSHA`/`EVAL`, as the client likes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValkeyRequest {
    Command(Vec<String>),
    Script(ScriptCall),
}

/// A Valkey reply as plain data. Status replies (`OK`) are [`Bytes`](ValkeyValue::Bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValkeyValue {
    Nil,
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<ValkeyValue>),
}

impl ValkeyValue {
    /// The integer of an integer reply.
    pub fn int(&self) -> Result<i64, ValkeyFailure> {
        match self {
            ValkeyValue::Int(n) => Ok(*n),
            other => Err(ValkeyFailure::Invalid(format!(
                "Valkey answered {other:?}, not an integer"
            ))),
        }
    }
}

/// Why a Valkey call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValkeyFailure {
    /// Valkey cannot be reached (or none is configured).
    Unavailable(String),
    /// Valkey refused the command.
    Invalid(String),
}

impl std::fmt::Display for ValkeyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValkeyFailure::Unavailable(why) => write!(f, "cache unavailable: {why}"),
            ValkeyFailure::Invalid(why) => write!(f, "cache refused the call: {why}"),
        }
    }
}

impl std::error::Error for ValkeyFailure {}

/// What the transport made of one [`ValkeyRequest`].
pub type ValkeyReply = Result<ValkeyValue, ValkeyFailure>;

impl<M: Machine + ?Sized> Machine for Box<M> {
    type Request = M::Request;
    type Reply = M::Reply;
    type Output = M::Output;

    fn next(&mut self, reply: Option<Self::Reply>, now: Now) -> Step<Self::Request, Self::Output> {
        (**self).next(reply, now)
    }
}
