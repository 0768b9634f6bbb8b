//! The backend calls as machines ([`crate::protocol`]): which request each
//! call sends, with the bearer token and the caller's headers; the retries
//! of idempotent calls (`GET`: [`IDEMPOTENT_ATTEMPTS`], pausing
//! [`retry_pause`], all within the call's budget); how an answer reads
//! (404 or a value that reads as `null` is none; a `DELETE` answered 405
//! is retried as a `PUT` of `null`); variable values travel as the text
//! the backend keeps ([`crate::variables::text`]).
//!
//! The host and the Spin adapter build these and drive them; neither
//! writes a call sequence of its own.

use std::time::Duration;

use serde_json::Value;
use serde_json::value::RawValue;

use super::{
    AUDIT_PATH, BackendError, IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_ATTEMPTS, TOOLS_EXECUTE_PATH,
    authorization, caller_headers, check_answer, execution_path, retry_pause, retryable,
    route_missing, status_failure, tool_credentials_path, variable_path,
};
use crate::protocol::{
    HttpReply, HttpRequest, HttpResponse, Machine, Method, Now, Step, TransportError,
};
use crate::variables::text;
use crate::wire::{self, BackendContext, Execution, TokenFacts};

/// How the backend is called: its token and the budget of one call (its
/// retries and their pauses included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `BACKEND_TOKEN`, sent as `Authorization: Bearer <token>`; empty: no
    /// `Authorization` header.
    pub token: String,
    /// The budget of one call, its retries and pauses included
    /// (`BACKEND_TIMEOUT`).
    pub timeout: Duration,
}

/// Who a call is made for: the verified caller's execution and the
/// capability its token carried, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The verified token's `executionId`, sent as `X-Execution-ID`.
    pub execution_id: String,
    /// The token's `capabilityToken`, sent as `X-Job-Capability` when present.
    pub capability: Option<String>,
}

/// A user's variable as the backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The key as the backend names it (else the one asked for).
    pub key: String,
    /// JSON text, never `null`.
    pub value: String,
    /// The backend's `updatedAt` as text, when it sent one.
    pub updated_at: Option<String>,
}

/// One request, sent again (idempotent calls only) after a gateway error
/// or no answer, within the client's budget.
#[derive(Debug, Clone)]
struct Exchange {
    request: HttpRequest,
    budget: Duration,
    attempts: u32,
    attempt: u32,
    last: BackendError,
    /// When the exchange began, on the driver's clock.
    started: Option<Duration>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Sent,
    Paused,
    Done,
}

impl Exchange {
    fn new(
        client: &Client,
        method: Method,
        path: String,
        caller: Option<&Caller>,
        body: Option<Vec<u8>>,
    ) -> Self {
        let mut headers = Vec::new();
        if let Some(bearer) = authorization(&client.token) {
            headers.push(("authorization".to_owned(), bearer));
        }
        if let Some(caller) = caller {
            headers.extend(
                caller_headers(&caller.execution_id, caller.capability.as_deref())
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value)),
            );
        }
        Exchange {
            request: HttpRequest {
                method,
                path,
                headers,
                body,
                timeout: client.timeout,
            },
            budget: client.timeout,
            attempts: if method.idempotent_retries() {
                IDEMPOTENT_ATTEMPTS
            } else {
                1
            },
            attempt: 0,
            last: BackendError::Timeout,
            started: None,
            state: State::Start,
        }
    }

    fn next(
        &mut self,
        reply: Option<HttpReply>,
        now: Now,
    ) -> Step<HttpRequest, Result<HttpResponse, BackendError>> {
        let started = *self.started.get_or_insert(now.elapsed);
        let spent = now.elapsed.saturating_sub(started);
        match (self.state, reply) {
            (State::Start | State::Paused, _) => {
                let left = self.budget.saturating_sub(spent);
                if left.is_zero() {
                    return self.done(Err(BackendError::Timeout));
                }
                self.state = State::Sent;
                let mut request = self.request.clone();
                request.timeout = left;
                Step::Send(request)
            }
            (State::Sent, Some(reply)) => {
                match reply {
                    Ok(answer) if retryable(answer.status) && self.attempt + 1 < self.attempts => {
                        self.last = status_failure(answer.status, &answer.body);
                    }
                    Ok(answer) => return self.done(Ok(answer)),
                    Err(TransportError::TimedOut) => return self.done(Err(BackendError::Timeout)),
                    Err(TransportError::Failed(why)) => self.last = BackendError::Unavailable(why),
                    Err(TransportError::Unreadable(why)) => {
                        self.last = BackendError::InvalidResponse(why)
                    }
                }
                self.attempt += 1;
                if self.attempt >= self.attempts {
                    let last = self.last.clone();
                    return self.done(Err(last));
                }
                let pause = retry_pause(self.attempt);
                if spent + pause >= self.budget {
                    let last = self.last.clone();
                    return self.done(Err(last));
                }
                self.state = State::Paused;
                Step::Wait(pause)
            }
            (State::Sent, None) => {
                panic!("a backend call was stepped without the reply it waits for")
            }
            (State::Done, _) => panic!("a finished backend call was stepped again"),
        }
    }

    fn done(
        &mut self,
        outcome: Result<HttpResponse, BackendError>,
    ) -> Step<HttpRequest, Result<HttpResponse, BackendError>> {
        self.state = State::Done;
        Step::Done(outcome)
    }
}

/// How a call's final answer is read.
type Read<T> = Box<dyn FnOnce(HttpResponse) -> Result<T, BackendError> + Send>;

/// A backend call: one exchange with the backend (its attempts) and the
/// reading of its answer.
pub struct Call<T> {
    exchange: Exchange,
    /// Set until the call is done; `Err` when it fails before sending.
    read: Option<Result<Read<T>, BackendError>>,
}

impl<T> std::fmt::Debug for Call<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

impl<T> Call<T> {
    fn new(
        exchange: Exchange,
        read: impl FnOnce(HttpResponse) -> Result<T, BackendError> + Send + 'static,
    ) -> Self {
        Call {
            exchange,
            read: Some(Ok(Box::new(read))),
        }
    }

    /// The request this call sends (as its first attempt would).
    pub fn request(&self) -> &HttpRequest {
        &self.exchange.request
    }
}

impl<T> Machine for Call<T> {
    type Request = HttpRequest;
    type Reply = HttpReply;
    type Output = Result<T, BackendError>;

    fn next(
        &mut self,
        reply: Option<HttpReply>,
        now: Now,
    ) -> Step<HttpRequest, Result<T, BackendError>> {
        if let Some(Err(refused)) = &self.read {
            let refused = refused.clone();
            self.read = None;
            return Step::Done(Err(refused));
        }
        match self.exchange.next(reply, now) {
            Step::Send(request) => Step::Send(request),
            Step::Wait(pause) => Step::Wait(pause),
            Step::Done(outcome) => {
                let Some(Ok(read)) = self.read.take() else {
                    panic!("a finished backend call was stepped again");
                };
                Step::Done(outcome.and_then(read))
            }
        }
    }
}

/// Passes a 2xx answer; anything else is the rules' failure.
fn success(answer: HttpResponse) -> Result<HttpResponse, BackendError> {
    check_answer(answer.status, &answer.body).map(|()| answer)
}

fn invalid(error: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidResponse(error.to_string())
}

/// Checks that a component's value is JSON before it is relayed.
pub fn raw_json(text: String) -> Result<Box<RawValue>, BackendError> {
    RawValue::from_string(text).map_err(|_| not_json())
}

fn not_json() -> BackendError {
    BackendError::Rejected {
        status: 400,
        message: "the value is not valid JSON".into(),
    }
}

/// `GET .../executions/{id}/context`: the caller's execution record (what
/// the backend leaves out, its user and start time, falls back to the
/// token's, `token`).
pub fn get_execution(client: &Client, caller: &Caller, token: TokenFacts) -> Call<Execution> {
    let execution_id = caller.execution_id.clone();
    let path = execution_path(&execution_id, "context");
    Call::new(
        Exchange::new(client, Method::Get, path, Some(caller), None),
        move |answer| {
            BackendContext::parse(&success(answer)?.body)
                .and_then(|c| c.into_execution(&execution_id, &token))
                .map_err(invalid)
        },
    )
}

/// `POST .../executions/{id}/output` of `output` (JSON) at `timestamp`.
pub fn set_output(
    client: &Client,
    caller: &Caller,
    output: &RawValue,
    timestamp: &str,
) -> Call<()> {
    let body = serde_json::to_vec(&wire::OutputRequest { output, timestamp })
        .expect("output requests serialize");
    let path = execution_path(&caller.execution_id, "output");
    Call::new(
        Exchange::new(client, Method::Post, path, Some(caller), Some(body)),
        |answer| success(answer).map(drop),
    )
}

/// `POST .../executions/{id}/condition`.
pub fn set_condition(
    client: &Client,
    caller: &Caller,
    condition: bool,
    timestamp: &str,
) -> Call<()> {
    let body = serde_json::to_vec(&wire::ConditionRequest {
        condition,
        timestamp,
    })
    .expect("condition requests serialize");
    let path = execution_path(&caller.execution_id, "condition");
    Call::new(
        Exchange::new(client, Method::Post, path, Some(caller), Some(body)),
        |answer| success(answer).map(drop),
    )
}

/// `GET .../variables/{user}/{key}`: none for 404 or a value that reads
/// as `null`. The backend keeps text ([`crate::variables::text`]): the
/// value is decoded here, so every reader sees the value that was written.
pub fn get_variable(
    client: &Client,
    caller: &Caller,
    user_id: &str,
    key: &str,
) -> Call<Option<Variable>> {
    let key = key.to_owned();
    Call::new(
        Exchange::new(
            client,
            Method::Get,
            variable_path(user_id, &key),
            Some(caller),
            None,
        ),
        move |answer| {
            if answer.status == 404 {
                return Ok(None);
            }
            let variable = wire::BackendVariable::parse(&success(answer)?.body).map_err(invalid)?;
            let updated_at = variable.updated_at_text();
            let value = text::from_backend(variable.value);
            if value.is_null() {
                return Ok(None);
            }
            Ok(Some(Variable {
                updated_at,
                value: value.to_string(),
                key: variable.key.unwrap_or(key),
            }))
        },
    )
}

/// `PUT .../variables/{user}/{key}` of `value` (JSON), sent as the text
/// the backend keeps ([`crate::variables::text::encode`]): a `text NOT
/// NULL` column takes every value, `null` included (as the text `null`).
pub fn set_variable(
    client: &Client,
    caller: &Caller,
    user_id: &str,
    key: &str,
    value: &RawValue,
) -> Call<()> {
    let exchange = |body| {
        Exchange::new(
            client,
            Method::Put,
            variable_path(user_id, key),
            Some(caller),
            Some(body),
        )
    };
    let value: Value = match serde_json::from_str(value.get()) {
        Ok(value) => value,
        Err(_) => {
            let mut call = Call::new(exchange(Vec::new()), |_| Ok(()));
            call.read = Some(Err(not_json()));
            return call;
        }
    };
    let body = serde_json::to_vec(&wire::VariablePut {
        value: &text::encode(&value),
    })
    .expect("variable writes serialize");
    Call::new(exchange(body), |answer| success(answer).map(drop))
}

/// `GET .../tools/credentials/{user}/{tool}`: none for 404.
pub fn get_tool_credentials(
    client: &Client,
    caller: &Caller,
    user_id: &str,
    tool: &str,
) -> Call<Option<Value>> {
    Call::new(
        Exchange::new(
            client,
            Method::Get,
            tool_credentials_path(user_id, tool),
            Some(caller),
            None,
        ),
        |answer| {
            if answer.status == 404 {
                return Ok(None);
            }
            wire::ToolCredentials::parse(&success(answer)?.body).map_err(invalid)
        },
    )
}

/// `POST /api/internal/tools/execute`, with the caller's
/// `Idempotency-Key` if any (refused with 400 when it is no valid header
/// value); the answer's `data`. A backend without the route (the Cronium
/// app's catch-all 404) is a 501 naming the tool; any other 404 is
/// `NotFound` (the backend does not know the tool).
#[allow(clippy::too_many_arguments)]
pub fn execute_tool(
    client: &Client,
    caller: &Caller,
    user_id: &str,
    tool: &str,
    action: &str,
    params: &RawValue,
    idempotency_key: Option<&str>,
) -> Call<Value> {
    let body = serde_json::to_vec(&wire::ToolExecuteRequest {
        execution_id: &caller.execution_id,
        user_id,
        tool,
        action,
        params,
    })
    .expect("tool requests serialize");
    let mut exchange = Exchange::new(
        client,
        Method::Post,
        TOOLS_EXECUTE_PATH.to_owned(),
        Some(caller),
        Some(body),
    );
    let tool_name = tool.to_owned();
    let mut call = Call::new(exchange.clone(), move |answer| {
        if route_missing(answer.status, &answer.body) {
            return Err(BackendError::Rejected {
                status: 501,
                message: format!(
                    "no tool component \"{tool_name}\" is installed in this runtime, and the \
                     Cronium backend cannot run tools (it has no tools route)"
                ),
            });
        }
        serde_json::from_slice::<wire::ToolExecuteAnswer>(&success(answer)?.body)
            .map(|a| a.data)
            .map_err(invalid)
    });
    if let Some(key) = idempotency_key {
        if !valid_header_value(key) {
            call.read = Some(Err(BackendError::Rejected {
                status: 400,
                message: "the Idempotency-Key is not a valid header value".into(),
            }));
            return call;
        }
        exchange
            .request
            .headers
            .push((IDEMPOTENCY_KEY_HEADER.to_owned(), key.to_owned()));
        call.exchange = exchange;
    }
    call
}

/// `POST /api/internal/audit` of one event's JSON (no caller headers: the
/// event names its execution).
pub fn record_audit(client: &Client, event_json: Vec<u8>) -> Call<()> {
    Call::new(
        Exchange::new(
            client,
            Method::Post,
            AUDIT_PATH.to_owned(),
            None,
            Some(event_json),
        ),
        |answer| success(answer).map(drop),
    )
}

/// Whether `value` may be sent as a header value (visible ASCII, spaces,
/// tabs and non-ASCII bytes; no control characters), as `http` accepts.
pub fn valid_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// `DELETE .../variables/{user}/{key}`: whether it existed (404: no). A
/// backend without `DELETE` (405) gets a `PUT` of `null`, which is how
/// helpers delete, in a call of its own.
pub struct DeleteVariable {
    delete: Call<Deleted>,
    put_null: Option<Call<()>>,
}

/// What the `DELETE` of a variable found.
enum Deleted {
    Existed(bool),
    NotAllowed,
}

impl std::fmt::Debug for DeleteVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeleteVariable").finish_non_exhaustive()
    }
}

impl DeleteVariable {
    /// The deletion of variable `key` of user `user_id`, made for `caller`.
    pub fn new(client: &Client, caller: &Caller, user_id: &str, key: &str) -> Self {
        let null = RawValue::from_string("null".into()).expect("null is JSON");
        DeleteVariable {
            delete: Call::new(
                Exchange::new(
                    client,
                    Method::Delete,
                    variable_path(user_id, key),
                    Some(caller),
                    None,
                ),
                |answer| match answer.status {
                    404 => Ok(Deleted::Existed(false)),
                    405 => Ok(Deleted::NotAllowed),
                    _ => success(answer).map(|_| Deleted::Existed(true)),
                },
            ),
            put_null: Some(set_variable(client, caller, user_id, key, &null)),
        }
    }
}

impl Machine for DeleteVariable {
    type Request = HttpRequest;
    type Reply = HttpReply;
    type Output = Result<bool, BackendError>;

    fn next(
        &mut self,
        reply: Option<HttpReply>,
        now: Now,
    ) -> Step<HttpRequest, Result<bool, BackendError>> {
        let in_put = self
            .put_null
            .as_ref()
            .is_some_and(|p| p.exchange.state != State::Start);
        if in_put {
            let put = self.put_null.as_mut().expect("checked");
            return match put.next(reply, now) {
                Step::Done(outcome) => Step::Done(outcome.map(|()| true)),
                Step::Send(request) => Step::Send(request),
                Step::Wait(pause) => Step::Wait(pause),
            };
        }
        match self.delete.next(reply, now) {
            Step::Send(request) => Step::Send(request),
            Step::Wait(pause) => Step::Wait(pause),
            Step::Done(Err(failure)) => Step::Done(Err(failure)),
            Step::Done(Ok(Deleted::Existed(existed))) => Step::Done(Ok(existed)),
            Step::Done(Ok(Deleted::NotAllowed)) => {
                let put = self.put_null.as_mut().expect("one fallback");
                match put.next(None, now) {
                    Step::Done(outcome) => Step::Done(outcome.map(|()| true)),
                    Step::Send(request) => Step::Send(request),
                    Step::Wait(pause) => Step::Wait(pause),
                }
            }
        }
    }
}
