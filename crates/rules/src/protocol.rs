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
    /// What the machine asks its driver to send ([`HttpRequest`] or [`ValkeyRequest`]).
    type Request;
    /// What the driver hands back for one request ([`HttpReply`] or [`ValkeyReply`]).
    type Reply;
    /// What the protocol ends with, in [`Step::Done`].
    type Output;

    /// The next step, given the reply to the last [`Step::Send`] (`None`
    /// at the first step and after a [`Step::Wait`]). Stepping a machine
    /// again after [`Step::Done`] is a driver's bug (it may panic).
    fn next(&mut self, reply: Option<Self::Reply>, now: Now) -> Step<Self::Request, Self::Output>;
}

/// The methods the backend's internal API is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`: a read, the only method retried ([`Method::idempotent_retries`]).
    Get,
    /// `POST`: output, condition, audit events and relayed tool actions.
    Post,
    /// `PUT`: a variable's write.
    Put,
    /// `DELETE`: a variable's removal (a 405 falls back to a `PUT` of `null`).
    Delete,
}

impl Method {
    /// Whether a call with it may be repeated (only `GET` is retried).
    pub fn idempotent_retries(self) -> bool {
        self == Method::Get
    }

    /// The method's name as sent on the wire (`GET`, ...).
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
/// and must give up after `timeout` ([`TransportError::TimedOut`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// How the backend is called; only a `GET` is sent more than once.
    pub method: Method,
    /// The path under the backend's base URL (`/api/internal/...`), its
    /// segments already percent-encoded.
    pub path: String,
    /// Lower-case names: `authorization`, the caller's, and others.
    pub headers: Vec<(String, String)>,
    /// The JSON body, if the call has one.
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
    /// HTTP status of the answer.
    pub status: u16,
    /// The whole body, at most [`MAX_RESPONSE`](crate::backend::MAX_RESPONSE)
    /// bytes (a larger one is [`TransportError::Unreadable`]).
    pub body: Vec<u8>,
}

/// Why no answer came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The request's `timeout` passed first.
    TimedOut,
    /// No answer, and why (without the peer's address).
    Failed(String),
    /// The request could not be made, or its answer not read (too large,
    /// cut off): [`BackendError::InvalidResponse`](crate::backend::BackendError::InvalidResponse)
    /// if no later attempt does better.
    Unreadable(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::TimedOut => f.write_str("no answer in time"),
            TransportError::Failed(why) | TransportError::Unreadable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for TransportError {}

/// What the transport made of one [`HttpRequest`].
pub type HttpReply = Result<HttpResponse, TransportError>;

/// One Valkey round trip: a command's words, or a script call (sent with
/// `EVALSHA`/`EVAL`, as the client likes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValkeyRequest {
    /// A plain command, as its words (`["EXISTS", key]`).
    Command(Vec<String>),
    /// One of the rules' Lua scripts, with its keys and arguments.
    Script(ScriptCall),
}

/// A Valkey reply as plain data. Status replies (`OK`) are [`Bytes`](ValkeyValue::Bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValkeyValue {
    /// A nil reply (no such key).
    Nil,
    /// An integer reply.
    Int(i64),
    /// A bulk or status reply, as its bytes.
    Bytes(Vec<u8>),
    /// A multi-bulk reply, element by element.
    Array(Vec<ValkeyValue>),
}

impl ValkeyValue {
    /// The integer of an integer reply.
    pub fn int(&self) -> Result<i64, ValkeyError> {
        match self {
            ValkeyValue::Int(n) => Ok(*n),
            other => Err(ValkeyError::Invalid(format!(
                "Valkey answered {other:?}, not an integer"
            ))),
        }
    }
}

/// Why a Valkey call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValkeyError {
    /// Valkey cannot be reached (or none is configured).
    Unavailable(String),
    /// Valkey refused the command.
    Invalid(String),
}

impl std::fmt::Display for ValkeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValkeyError::Unavailable(why) => write!(f, "cache unavailable: {why}"),
            ValkeyError::Invalid(why) => write!(f, "cache refused the call: {why}"),
        }
    }
}

impl std::error::Error for ValkeyError {}

/// What the transport made of one [`ValkeyRequest`].
pub type ValkeyReply = Result<ValkeyValue, ValkeyError>;

impl<M: Machine + ?Sized> Machine for Box<M> {
    type Request = M::Request;
    type Reply = M::Reply;
    type Output = M::Output;

    fn next(&mut self, reply: Option<Self::Reply>, now: Now) -> Step<Self::Request, Self::Output> {
        (**self).next(reply, now)
    }
}
