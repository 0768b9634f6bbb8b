//! The conformance suite of the protocol machines (feature
//! `conformance`), written once and run through every driver: the custom
//! host's async one and the Spin adapters' blocking one.
//!
//! Each [`Case`] is a machine, a [`Script`] (the exact requests expected
//! in order, each with its canned reply and how long it takes, and the
//! exact pauses between them) and the outcome expected. A driver's test
//! steps [`Case::machine`] with [`Script`] as its transport and clock,
//! then hands the outcome to [`Script::finish`], which checks it and that
//! the whole script was played.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::value::RawValue;

use crate::access::{Check, CheckAccess, Verdict};
use crate::backend::BackendError;
use crate::backend::protocol::{self as calls, Caller, Client, DeleteVariable, Variable};
use crate::lease::Wait;
use crate::lease::protocol::{Acquire, AwaitRelease};
use crate::protocol::{
    HttpReply, HttpRequest, HttpResponse, Machine, Method, Now, Step, TransportError, ValkeyError,
    ValkeyReply, ValkeyRequest, ValkeyValue,
};
use crate::rate_limit::Quota;
use crate::{keys, valkey};

/// Any request of any machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A backend call's request.
    Http(HttpRequest),
    /// A Valkey round trip's request.
    Valkey(ValkeyRequest),
}

/// Any reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// What the HTTP transport made of a request.
    Http(HttpReply),
    /// What the Valkey transport made of a request.
    Valkey(ValkeyReply),
}

impl From<HttpRequest> for Request {
    fn from(request: HttpRequest) -> Self {
        Request::Http(request)
    }
}

impl From<ValkeyRequest> for Request {
    fn from(request: ValkeyRequest) -> Self {
        Request::Valkey(request)
    }
}

impl From<Reply> for HttpReply {
    fn from(reply: Reply) -> Self {
        match reply {
            Reply::Http(reply) => reply,
            other => panic!("an HTTP machine got {other:?}"),
        }
    }
}

impl From<Reply> for ValkeyReply {
    fn from(reply: Reply) -> Self {
        match reply {
            Reply::Valkey(reply) => reply,
            other => panic!("a Valkey machine got {other:?}"),
        }
    }
}

/// A machine of any protocol, its outcome as `Debug` text.
pub type AnyMachine = Box<dyn Machine<Request = Request, Reply = Reply, Output = String> + Send>;

struct Erased<M>(M);

impl<M> Machine for Erased<M>
where
    M: Machine,
    M::Request: Into<Request>,
    Reply: Into<M::Reply>,
    M::Output: std::fmt::Debug,
{
    type Request = Request;
    type Reply = Reply;
    type Output = String;

    fn next(&mut self, reply: Option<Reply>, now: Now) -> Step<Request, String> {
        match self.0.next(reply.map(Into::into), now) {
            Step::Send(request) => Step::Send(request.into()),
            Step::Wait(pause) => Step::Wait(pause),
            Step::Done(outcome) => Step::Done(format!("{outcome:?}")),
        }
    }
}

fn erase<M>(machine: M) -> AnyMachine
where
    M: Machine + Send + 'static,
    M::Request: Into<Request>,
    Reply: Into<M::Reply>,
    M::Output: std::fmt::Debug,
{
    Box::new(Erased(machine))
}

/// One expected step of a drive.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// This exact request, answered with `reply` after `takes`.
    Send {
        /// The request the machine must send, compared exactly.
        request: Request,
        /// The canned reply the machine is stepped with.
        reply: Reply,
        /// Virtual time the request takes, added to the clock before the reply.
        takes: Duration,
    },
    /// A pause of exactly this long.
    Wait(Duration),
}

/// One conformance case.
pub struct Case {
    /// The case's name, in every failure message (and test names).
    pub name: &'static str,
    /// The machine under test, not yet stepped.
    pub machine: AnyMachine,
    /// Its transport and clock: the steps expected, and the outcome.
    pub script: Script,
}

/// A scripted transport and clock: it checks each request and pause
/// against the script, answers with the canned reply, and keeps virtual
/// time (requests take their `takes`, pauses their length).
#[derive(Debug)]
pub struct Script {
    name: &'static str,
    expected: VecDeque<Expect>,
    outcome: String,
    elapsed: Duration,
    latency: Duration,
    jitter: f64,
}

impl Script {
    /// The virtual time the requests so far took.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// The reply to `request`, which must be the next one expected.
    pub fn send(&mut self, request: Request) -> Reply {
        match self.expected.pop_front() {
            Some(Expect::Send {
                request: expected,
                reply,
                takes,
            }) => {
                assert_eq!(request, expected, "{}: the request sent", self.name);
                self.elapsed += takes;
                self.latency += takes;
                reply
            }
            other => panic!("{}: sent {request:?}, expected {other:?}", self.name),
        }
    }

    /// A pause, which must be the next step expected.
    pub fn sleep(&mut self, pause: Duration) {
        match self.expected.pop_front() {
            Some(Expect::Wait(expected)) => {
                assert_eq!(pause, expected, "{}: the pause", self.name);
                self.elapsed += pause;
            }
            other => panic!("{}: paused {pause:?}, expected {other:?}", self.name),
        }
    }

    /// The virtual clock.
    pub fn now(&self) -> Now {
        Now {
            elapsed: self.elapsed,
            jitter: self.jitter,
        }
    }

    /// Checks the drive's outcome, and that every step was played.
    pub fn finish(self, outcome: String) {
        assert_eq!(outcome, self.outcome, "{}: the outcome", self.name);
        assert!(
            self.expected.is_empty(),
            "{}: never played: {:?}",
            self.name,
            self.expected
        );
    }
}

// ---------------------------------------------------------------------------
// Building cases.

const TIMEOUT: Duration = Duration::from_secs(30);
const JITTER: f64 = 0.5;

fn client() -> Client {
    Client {
        token: "secret-token".into(),
        timeout: TIMEOUT,
    }
}

fn caller() -> Caller {
    Caller {
        execution_id: "exec-1".into(),
        capability: Some("cap-1".into()),
    }
}

fn headers(caller: bool) -> Vec<(String, String)> {
    let mut headers = vec![("authorization".to_owned(), "Bearer secret-token".to_owned())];
    if caller {
        headers.push(("x-execution-id".into(), "exec-1".into()));
        headers.push(("x-job-capability".into(), "cap-1".into()));
    }
    headers
}

fn http(method: Method, path: &str, body: Option<&str>, timeout: Duration) -> Request {
    Request::Http(HttpRequest {
        method,
        path: path.to_owned(),
        headers: headers(true),
        body: body.map(|b| b.as_bytes().to_vec()),
        timeout,
    })
}

fn answer(status: u16, body: &str) -> Reply {
    Reply::Http(Ok(HttpResponse {
        status,
        body: body.as_bytes().to_vec(),
    }))
}

fn send(request: Request, reply: Reply) -> Expect {
    Expect::Send {
        request,
        reply,
        takes: Duration::ZERO,
    }
}

fn case<O: std::fmt::Debug>(
    name: &'static str,
    machine: AnyMachine,
    expected: Vec<Expect>,
    outcome: O,
) -> Case {
    Case {
        name,
        machine,
        script: Script {
            name,
            expected: expected.into(),
            outcome: format!("{outcome:?}"),
            elapsed: Duration::ZERO,
            latency: Duration::ZERO,
            jitter: JITTER,
        },
    }
}

const VAR_PATH: &str = "/api/internal/variables/user-1/k";

fn get_var() -> AnyMachine {
    erase(calls::get_variable(&client(), &caller(), "user-1", "k"))
}

fn get_var_request(timeout: Duration) -> Request {
    http(Method::Get, VAR_PATH, None, timeout)
}

fn int(n: i64) -> Reply {
    Reply::Valkey(Ok(ValkeyValue::Int(n)))
}

fn script(call: valkey::ScriptCall) -> Request {
    Request::Valkey(ValkeyRequest::Script(call))
}

fn command(words: &[&str]) -> Request {
    Request::Valkey(ValkeyRequest::Command(
        words.iter().map(|w| (*w).to_owned()).collect(),
    ))
}

fn down() -> Reply {
    Reply::Valkey(Err(ValkeyError::Unavailable("connection refused".into())))
}

fn token_user_9() -> crate::wire::TokenFacts {
    crate::wire::TokenFacts {
        user_id: Some("user-9".into()),
        issued_at: 1_796_601_600,
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).unwrap()
}

fn json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.into()).unwrap()
}

fn backend_cases() -> Vec<Case> {
    let ms = Duration::from_millis;
    let some_var = Some(Variable {
        key: "k".into(),
        value: "42".into(),
        updated_at: None,
    });
    vec![
        case(
            "get-variable: a value",
            get_var(),
            vec![send(
                get_var_request(TIMEOUT),
                answer(200, r#"{"key":"k","value":42}"#),
            )],
            Ok::<_, BackendError>(some_var.clone()),
        ),
        case(
            "get-variable: 404 is none",
            get_var(),
            vec![send(get_var_request(TIMEOUT), answer(404, ""))],
            Ok::<Option<Variable>, BackendError>(None),
        ),
        case(
            "get-variable: a JSON null value is none",
            get_var(),
            vec![send(
                get_var_request(TIMEOUT),
                answer(200, r#"{"key":"k","value":null}"#),
            )],
            Ok::<Option<Variable>, BackendError>(None),
        ),
        case(
            "get-variable: the text a backend keeps is decoded",
            get_var(),
            vec![send(
                get_var_request(TIMEOUT),
                answer(200, r#"{"key":"k","value":"42","updatedAt":"t"}"#),
            )],
            Ok::<_, BackendError>(Some(Variable {
                key: "k".into(),
                value: "42".into(),
                updated_at: Some("t".into()),
            })),
        ),
        case(
            "get-variable: text that is no JSON is a string",
            get_var(),
            vec![send(
                get_var_request(TIMEOUT),
                answer(200, r#"{"key":"k","value":"a,b"}"#),
            )],
            Ok::<_, BackendError>(Some(Variable {
                key: "k".into(),
                value: r#""a,b""#.into(),
                updated_at: None,
            })),
        ),
        case(
            "get-variable: the text null is none",
            get_var(),
            vec![send(
                get_var_request(TIMEOUT),
                answer(200, r#"{"key":"k","value":"null"}"#),
            )],
            Ok::<Option<Variable>, BackendError>(None),
        ),
        case(
            "get-variable: 401 is the backend refusing the runtime's credentials",
            get_var(),
            vec![send(
                get_var_request(TIMEOUT),
                answer(401, r#"{"error":"Unauthorized"}"#),
            )],
            Err::<Option<Variable>, _>(BackendError::CredentialsRefused(401)),
        ),
        case(
            "set-variable: a string that reads as a number is sent quoted",
            erase(calls::set_variable(
                &client(),
                &caller(),
                "user-1",
                "k",
                &json(r#""42""#),
            )),
            vec![send(
                http(
                    Method::Put,
                    VAR_PATH,
                    Some(r#"{"value":"\"42\""}"#),
                    TIMEOUT,
                ),
                answer(200, r#"{"success":true}"#),
            )],
            Ok::<(), BackendError>(()),
        ),
        case(
            "set-variable: a plain string is sent as written",
            erase(calls::set_variable(
                &client(),
                &caller(),
                "user-1",
                "k",
                &json(r#""hello world""#),
            )),
            vec![send(
                http(
                    Method::Put,
                    VAR_PATH,
                    Some(r#"{"value":"hello world"}"#),
                    TIMEOUT,
                ),
                answer(200, r#"{"success":true}"#),
            )],
            Ok::<(), BackendError>(()),
        ),
        case(
            "get-variable: gateway errors are retried after 50 ms then 200 ms",
            get_var(),
            vec![
                send(get_var_request(TIMEOUT), answer(503, "")),
                Expect::Wait(ms(50)),
                send(get_var_request(TIMEOUT - ms(50)), answer(502, "")),
                Expect::Wait(ms(200)),
                send(
                    get_var_request(TIMEOUT - ms(250)),
                    answer(200, r#"{"value":42}"#),
                ),
            ],
            Ok::<_, BackendError>(some_var.clone()),
        ),
        case(
            "get-variable: three gateway errors are the backend unavailable",
            get_var(),
            vec![
                send(get_var_request(TIMEOUT), answer(504, "")),
                Expect::Wait(ms(50)),
                send(get_var_request(TIMEOUT - ms(50)), answer(504, "")),
                Expect::Wait(ms(200)),
                send(get_var_request(TIMEOUT - ms(250)), answer(504, "")),
            ],
            Err::<Option<Variable>, _>(BackendError::Unavailable("backend answered 504".into())),
        ),
        case(
            "get-variable: no answer is retried",
            get_var(),
            vec![
                send(
                    get_var_request(TIMEOUT),
                    Reply::Http(Err(TransportError::Failed("cannot connect".into()))),
                ),
                Expect::Wait(ms(50)),
                send(get_var_request(TIMEOUT - ms(50)), answer(404, "")),
            ],
            Ok::<Option<Variable>, BackendError>(None),
        ),
        case(
            "get-variable: a timeout ends the call",
            get_var(),
            vec![send(
                get_var_request(TIMEOUT),
                Reply::Http(Err(TransportError::TimedOut)),
            )],
            Err::<Option<Variable>, _>(BackendError::Timeout),
        ),
        case(
            "get-variable: no retry whose pause would outlast the budget",
            erase(calls::get_variable(
                &Client {
                    token: "secret-token".into(),
                    timeout: ms(100),
                },
                &caller(),
                "user-1",
                "k",
            )),
            vec![Expect::Send {
                request: get_var_request(ms(100)),
                reply: answer(503, ""),
                takes: ms(60),
            }],
            Err::<Option<Variable>, _>(BackendError::Unavailable("backend answered 503".into())),
        ),
        case(
            "get-variable: a refusal carries the backend's message",
            get_var(),
            vec![send(
                get_var_request(TIMEOUT),
                answer(409, r#"{"message":"not yours"}"#),
            )],
            Err::<Option<Variable>, _>(BackendError::Rejected {
                status: 409,
                message: "not yours".into(),
            }),
        ),
        case(
            "set-variable: a PUT is never retried",
            erase(calls::set_variable(
                &client(),
                &caller(),
                "user-1",
                "k",
                &json("[1]"),
            )),
            vec![send(
                http(Method::Put, VAR_PATH, Some(r#"{"value":"[1]"}"#), TIMEOUT),
                answer(502, ""),
            )],
            Err::<(), _>(BackendError::Unavailable("backend answered 502".into())),
        ),
        case(
            "delete-variable: deleted",
            erase(DeleteVariable::new(&client(), &caller(), "user-1", "k")),
            vec![send(
                http(Method::Delete, VAR_PATH, None, TIMEOUT),
                answer(204, ""),
            )],
            Ok::<_, BackendError>(true),
        ),
        case(
            "delete-variable: 404 is false",
            erase(DeleteVariable::new(&client(), &caller(), "user-1", "k")),
            vec![send(
                http(Method::Delete, VAR_PATH, None, TIMEOUT),
                answer(404, ""),
            )],
            Ok::<_, BackendError>(false),
        ),
        case(
            "delete-variable: 405 falls back to a PUT of null",
            erase(DeleteVariable::new(&client(), &caller(), "user-1", "k")),
            vec![
                Expect::Send {
                    request: http(Method::Delete, VAR_PATH, None, TIMEOUT),
                    reply: answer(405, ""),
                    takes: ms(10),
                },
                send(
                    http(Method::Put, VAR_PATH, Some(r#"{"value":"null"}"#), TIMEOUT),
                    answer(200, "{}"),
                ),
            ],
            Ok::<_, BackendError>(true),
        ),
        case(
            "delete-variable: the fallback's failure is the call's",
            erase(DeleteVariable::new(&client(), &caller(), "user-1", "k")),
            vec![
                send(
                    http(Method::Delete, VAR_PATH, None, TIMEOUT),
                    answer(405, ""),
                ),
                send(
                    http(Method::Put, VAR_PATH, Some(r#"{"value":"null"}"#), TIMEOUT),
                    answer(500, ""),
                ),
            ],
            Err::<bool, _>(BackendError::Unavailable("backend answered 500".into())),
        ),
        case(
            "get-tool-credentials: 404 is none",
            erase(calls::get_tool_credentials(
                &client(),
                &caller(),
                "user-1",
                "slack",
            )),
            vec![send(
                http(
                    Method::Get,
                    "/api/internal/tools/credentials/user-1/slack",
                    None,
                    TIMEOUT,
                ),
                answer(404, ""),
            )],
            Ok::<Option<serde_json::Value>, BackendError>(None),
        ),
        case(
            "get-tool-credentials: the credentials object",
            erase(calls::get_tool_credentials(
                &client(),
                &caller(),
                "user-1",
                "slack",
            )),
            vec![send(
                http(
                    Method::Get,
                    "/api/internal/tools/credentials/user-1/slack",
                    None,
                    TIMEOUT,
                ),
                answer(200, r#"{"credentials":{"token":"t"}}"#),
            )],
            Ok::<_, BackendError>(Some(serde_json::json!({"token": "t"}))),
        ),
        case(
            "execute-tool: relayed once, with the idempotency key",
            erase(calls::execute_tool(
                &client(),
                &caller(),
                "user-1",
                "slack",
                "send",
                &json(r#"{"x":1}"#),
                Some("idem-1"),
            )),
            vec![send(
                {
                    let mut request = http(
                        Method::Post,
                        "/api/internal/tools/execute",
                        Some(
                            r#"{"executionId":"exec-1","userId":"user-1","tool":"slack","action":"send","params":{"x":1}}"#,
                        ),
                        TIMEOUT,
                    );
                    if let Request::Http(r) = &mut request {
                        r.headers.push(("idempotency-key".into(), "idem-1".into()));
                    }
                    request
                },
                answer(200, r#"{"success":true,"data":{"ok":1}}"#),
            )],
            Ok::<_, BackendError>(serde_json::json!({"ok": 1})),
        ),
        case(
            "execute-tool: a success:false answer is a refusal",
            erase(calls::execute_tool(
                &client(),
                &caller(),
                "user-1",
                "slack",
                "send",
                &json("{}"),
                None,
            )),
            vec![send(
                http(
                    Method::Post,
                    "/api/internal/tools/execute",
                    Some(
                        r#"{"executionId":"exec-1","userId":"user-1","tool":"slack","action":"send","params":{}}"#,
                    ),
                    TIMEOUT,
                ),
                answer(200, r#"{"success":false,"error":"slack said no"}"#),
            )],
            Err::<serde_json::Value, _>(BackendError::Rejected {
                status: 502,
                message: "slack said no".into(),
            }),
        ),
        case(
            "execute-tool: an idempotency key that is no header value is refused unsent",
            erase(calls::execute_tool(
                &client(),
                &caller(),
                "user-1",
                "slack",
                "send",
                &json("{}"),
                Some("bad\nkey"),
            )),
            vec![],
            Err::<serde_json::Value, _>(BackendError::Rejected {
                status: 400,
                message: "the Idempotency-Key is not a valid header value".into(),
            }),
        ),
        case(
            "set-output: a POST with the output and timestamp",
            erase(calls::set_output(
                &client(),
                &caller(),
                &json(r#"{"a":1}"#),
                "2026-01-01T00:00:00Z",
            )),
            vec![send(
                http(
                    Method::Post,
                    "/api/internal/executions/exec-1/output",
                    Some(r#"{"output":{"a":1},"timestamp":"2026-01-01T00:00:00Z"}"#),
                    TIMEOUT,
                ),
                answer(200, "{}"),
            )],
            Ok::<(), BackendError>(()),
        ),
        case(
            "set-condition: a POST",
            erase(calls::set_condition(&client(), &caller(), true, "t")),
            vec![send(
                http(
                    Method::Post,
                    "/api/internal/executions/exec-1/condition",
                    Some(r#"{"condition":true,"timestamp":"t"}"#),
                    TIMEOUT,
                ),
                answer(204, ""),
            )],
            Ok::<(), BackendError>(()),
        ),
        case(
            "get-execution: the record, the token's user as fallback",
            erase(calls::get_execution(&client(), &caller(), token_user_9())),
            vec![send(
                http(
                    Method::Get,
                    "/api/internal/executions/exec-1/context",
                    None,
                    TIMEOUT,
                ),
                answer(200, r#"{"executionId":"exec-1","jobId":"job-1"}"#),
            )],
            Ok::<_, BackendError>(
                crate::wire::BackendContext::parse(br#"{"executionId":"exec-1","jobId":"job-1"}"#)
                    .unwrap()
                    .into_execution("exec-1", &token_user_9())
                    .unwrap(),
            ),
        ),
        case(
            "record-audit: no caller headers, no retry",
            erase(calls::record_audit(
                &Client {
                    token: String::new(),
                    timeout: TIMEOUT,
                },
                b"{}".to_vec(),
            )),
            vec![send(
                Request::Http(HttpRequest {
                    method: Method::Post,
                    path: "/api/internal/audit".into(),
                    headers: vec![],
                    body: Some(b"{}".to_vec()),
                    timeout: TIMEOUT,
                }),
                answer(503, ""),
            )],
            Err::<(), _>(BackendError::Unavailable("backend answered 503".into())),
        ),
        case(
            "raw-json: a value that is not JSON is refused before any call",
            erase(Refused(calls::raw_json("{nope".into()).map(drop))),
            vec![],
            Err::<(), _>(BackendError::Rejected {
                status: 400,
                message: "the value is not valid JSON".into(),
            }),
        ),
        case(
            "delete-variable: the null written is the text null",
            erase(calls::set_variable(
                &client(),
                &caller(),
                "user-1",
                "k",
                &null(),
            )),
            vec![send(
                http(Method::Put, VAR_PATH, Some(r#"{"value":"null"}"#), TIMEOUT),
                answer(200, ""),
            )],
            Ok::<(), BackendError>(()),
        ),
    ]
}

/// A machine that is done before it starts (for checks made before any
/// call).
struct Refused(Result<(), BackendError>);

impl Machine for Refused {
    type Request = HttpRequest;
    type Reply = HttpReply;
    type Output = Result<(), BackendError>;

    fn next(&mut self, _: Option<HttpReply>, _: Now) -> Step<HttpRequest, Self::Output> {
        Step::Done(self.0.clone())
    }
}

fn lease_cases() -> Vec<Case> {
    let ttl = Duration::from_secs(5);
    let attempt = |joins| script(valkey::acquire("k", "owner", ttl, joins));
    let leave = || script(valkey::leave("k", "owner"));
    let acquire = |patience| erase(Acquire::new("k", "owner", ttl, patience));
    // The pauses the rules' pacing gives a waiter seeing `aheads`, with
    // every attempt answered at once.
    let paced = |patience: Duration, aheads: &[u64]| {
        let mut wait = Wait::new(patience);
        let mut elapsed = Duration::ZERO;
        let mut steps = Vec::new();
        for ahead in aheads {
            steps.push(send(attempt(true), int(-(*ahead as i64))));
            match wait.next_pause(*ahead, elapsed, JITTER) {
                Some(pause) => {
                    steps.push(Expect::Wait(pause));
                    elapsed += pause;
                }
                None => return (steps, true),
            }
        }
        (steps, false)
    };
    let (mut waits, gave_up) = paced(Duration::from_secs(1), &[3, 2, 1]);
    assert!(!gave_up);
    waits.push(send(attempt(true), int(9)));
    let patience = Duration::from_millis(20);
    let mut aheads = vec![1];
    let mut give_up = loop {
        let (steps, gave_up) = paced(patience, &aheads);
        if gave_up {
            break steps;
        }
        aheads.push(1);
        assert!(aheads.len() < 10_000);
    };
    give_up.push(send(leave(), int(0)));
    vec![
        case(
            "acquire: a free lease is taken at once",
            acquire(Duration::from_secs(1)),
            vec![send(attempt(true), int(7))],
            Ok::<_, ValkeyError>(Some(7u64)),
        ),
        case(
            "acquire: without patience, one attempt outside the line",
            acquire(Duration::ZERO),
            vec![send(attempt(false), int(-1))],
            Ok::<Option<u64>, ValkeyError>(None),
        ),
        case(
            "acquire: a waiter pauses as the rules pace it, until its turn",
            acquire(Duration::from_secs(1)),
            waits,
            Ok::<_, ValkeyError>(Some(9u64)),
        ),
        case(
            "acquire: a waiter whose line stood still gives up and leaves it",
            acquire(patience),
            give_up,
            Ok::<Option<u64>, ValkeyError>(None),
        ),
        case(
            "acquire: an error leaves the line and is the outcome",
            acquire(Duration::from_secs(1)),
            vec![send(attempt(true), down()), send(leave(), down())],
            Err::<Option<u64>, _>(ValkeyError::Unavailable("connection refused".into())),
        ),
        case(
            "acquire: the request is clamped to the rules' limits",
            erase(Acquire::new(
                "k",
                "owner",
                Duration::from_secs(3600),
                Duration::ZERO,
            )),
            vec![send(
                script(valkey::acquire(
                    "k",
                    "owner",
                    crate::lease::MAX_LEASE_TTL,
                    false,
                )),
                int(1),
            )],
            Ok::<_, ValkeyError>(Some(1u64)),
        ),
        case(
            "await-release: free once the holder releases",
            erase(AwaitRelease::new("k", Duration::from_secs(1))),
            {
                let mut wait = Wait::new(Duration::from_secs(1));
                let exists = || command(&["EXISTS", &keys::lease("k")]);
                vec![
                    send(exists(), int(1)),
                    Expect::Wait(wait.next_pause(1, Duration::ZERO, JITTER).unwrap()),
                    send(exists(), int(0)),
                ]
            },
            Ok::<_, ValkeyError>(true),
        ),
        case(
            "await-release: no patience, still held",
            erase(AwaitRelease::new("k", Duration::ZERO)),
            vec![send(command(&["EXISTS", &keys::lease("k")]), int(1))],
            Ok::<_, ValkeyError>(false),
        ),
    ]
}

fn access_cases() -> Vec<Case> {
    let quota = Quota::per_minute(1000);
    let check = |quota: Option<Quota>, peek_record: bool, split: bool| {
        erase(CheckAccess::new(Check {
            job_id: "job-1".into(),
            execution_id: "exec-1".into(),
            quota,
            peek_record,
            split,
        }))
    };
    let revoked = keys::revoked_job("job-1");
    let limiter = keys::rate_limit_execution("job-1", "exec-1");
    let record = keys::execution("exec-1");
    let peek = || {
        script(valkey::check_access_and_peek(
            &revoked, &limiter, quota, &record,
        ))
    };
    let plain = || script(valkey::check_access(&revoked, &limiter, quota));
    let exists = || command(&["EXISTS", &revoked]);
    vec![
        case(
            "access: passes, with the record fetched along",
            check(Some(quota), true, false),
            vec![send(
                peek(),
                Reply::Valkey(Ok(ValkeyValue::Array(vec![
                    ValkeyValue::Int(0),
                    ValkeyValue::Bytes(b"{}".to_vec()),
                ]))),
            )],
            Verdict::Pass {
                record: Some(b"{}".to_vec()),
            },
        ),
        case(
            "access: passes, no record kept",
            check(Some(quota), true, false),
            vec![send(
                peek(),
                Reply::Valkey(Ok(ValkeyValue::Array(vec![
                    ValkeyValue::Int(0),
                    ValkeyValue::Nil,
                ]))),
            )],
            Verdict::Pass { record: None },
        ),
        case(
            "access: revoked",
            check(Some(quota), false, false),
            vec![send(plain(), int(-1))],
            Verdict::Revoked,
        ),
        case(
            "access: rate limited, Retry-After in whole seconds",
            check(Some(quota), false, false),
            vec![send(plain(), int(1_500_000))],
            Verdict::RateLimited {
                retry_after_secs: 2,
            },
        ),
        case(
            "access: without a quota only the revocation is asked",
            check(None, true, false),
            vec![send(exists(), int(0))],
            Verdict::Pass { record: None },
        ),
        case(
            "access: without a quota, revoked",
            check(None, false, false),
            vec![send(exists(), int(1))],
            Verdict::Revoked,
        ),
        case(
            "access: split across slots, the revocation first",
            check(Some(quota), false, true),
            vec![
                send(exists(), int(0)),
                send(script(valkey::limit(&limiter, quota)), int(0)),
            ],
            Verdict::Pass { record: None },
        ),
        case(
            "access: split, a revoked job spends no budget",
            check(Some(quota), false, true),
            vec![send(exists(), int(1))],
            Verdict::Revoked,
        ),
        case(
            "access: split, limited",
            check(Some(quota), false, true),
            vec![
                send(exists(), int(0)),
                send(script(valkey::limit(&limiter, quota)), int(10)),
            ],
            Verdict::RateLimited {
                retry_after_secs: 1,
            },
        ),
        case(
            "access: Valkey away leaves the request unchecked",
            check(Some(quota), false, false),
            vec![send(plain(), down())],
            Verdict::Unchecked {
                why: "connection refused".into(),
            },
        ),
    ]
}

/// Every case.
pub fn cases() -> Vec<Case> {
    let mut cases = backend_cases();
    cases.extend(lease_cases());
    cases.extend(access_cases());
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference driver: the loop both hosts' drivers implement.
    fn drive(mut machine: AnyMachine, script: &mut Script) -> String {
        let mut reply = None;
        loop {
            match machine.next(reply.take(), script.now()) {
                Step::Send(request) => reply = Some(script.send(request)),
                Step::Wait(pause) => script.sleep(pause),
                Step::Done(outcome) => return outcome,
            }
        }
    }

    #[test]
    fn every_case_passes_the_reference_driver() {
        let cases = cases();
        assert!(cases.len() >= 40, "{}", cases.len());
        for Case {
            machine,
            mut script,
            ..
        } in cases
        {
            let outcome = drive(machine, &mut script);
            script.finish(outcome);
        }
    }
}
