//! `cronium:runtime/backend` on outbound HTTP to the Cronium
//! backend's internal API. Paths, headers (`Authorization`,
//! `X-Execution-ID`, `X-Job-Capability`, a relayed tool call's
//! `Idempotency-Key`), retries of idempotent calls, the
//! reading of answers (a `{"success":false}` body is a refusal) and every
//! wire shape come from `cronium-rules`, as for the custom host.
//!
//! Every call is made for the verified caller behind the `caller` handle
//! (`auth`). Its user, whose variables and tool credentials these are, is
//! the owner its execution record names; the record is kept in Valkey
//! under the key the custom host keeps it under, so either host's first
//! read serves the other's.
//!
//! Settings (Spin variables of the endpoint component): `backend_url`
//! (required; `http://` or `https://`), `backend_token`, `backend_timeout`
//! (`30s`: one call, retries included, answers `timeout` after it).

use cronium_rules::backend::{self as rules, Failure};
use cronium_rules::wire::{self, BackendContext};
use std::time::Duration;

use cronium_spin_support::http::{self, Answer, Deadline, TransportError};
use cronium_spin_support::{now_rfc3339, settings};
use serde_json::value::RawValue;
use spin_sdk::http::Method;

use cronium_rules::keys;
use cronium_rules::token::Claims;
use cronium_rules::wire::Execution as Record;
use cronium_spin_support::valkey;

use crate::auth::VerifiedCaller;
use crate::exports::cronium::runtime::auth::CallerBorrow;
use crate::exports::cronium::runtime::backend::{
    BackendError, ExecutionRead, Guest, Rejection, Variable,
};
use crate::exports::cronium::runtime::types::Execution;

impl Guest for crate::Adapters {
    fn get_execution(caller: CallerBorrow<'_>) -> Result<ExecutionRead, BackendError> {
        let caller = caller.get::<VerifiedCaller>();
        let (execution, from_backend) = record(&caller.claims)?;
        *caller.user.borrow_mut() = Some(execution.user_id.clone());
        Ok(ExecutionRead {
            execution: Execution {
                execution_id: execution.execution_id,
                job_id: execution.job_id,
                user_id: execution.user_id,
                event_id: execution.event_id,
                event_name: execution.event_name,
                event_type: execution.event_type,
                start_time: execution.start_time,
                metadata: execution.metadata.to_string(),
            },
            from_backend,
        })
    }

    fn set_output(caller: CallerBorrow<'_>, output: String) -> Result<(), BackendError> {
        let claims = &caller.get::<VerifiedCaller>().claims;
        let output = raw_json(output)?;
        let body = serde_json::to_vec(&wire::OutputRequest {
            output: &output,
            timestamp: &now_rfc3339(),
        })
        .expect("output requests serialize");
        let path = rules::execution_path(&claims.execution_id, "output");
        checked(call(Method::Post, &path, Some(claims), Some(body))?).map(drop)
    }

    fn set_condition(caller: CallerBorrow<'_>, condition: bool) -> Result<(), BackendError> {
        let claims = &caller.get::<VerifiedCaller>().claims;
        let body = serde_json::to_vec(&wire::ConditionRequest {
            condition,
            timestamp: &now_rfc3339(),
        })
        .expect("condition requests serialize");
        let path = rules::execution_path(&claims.execution_id, "condition");
        checked(call(Method::Post, &path, Some(claims), Some(body))?).map(drop)
    }

    fn get_variable(
        caller: CallerBorrow<'_>,
        key: String,
    ) -> Result<Option<Variable>, BackendError> {
        let caller = caller.get::<VerifiedCaller>();
        let path = rules::variable_path(&user_of(caller)?, &key);
        let answer = call(Method::Get, &path, Some(&caller.claims), None)?;
        if answer.status == 404 {
            return Ok(None);
        }
        let answer = checked(answer)?;
        let variable = wire::BackendVariable::parse(&answer.body)
            .map_err(|e| BackendError::InvalidResponse(e.to_string()))?;
        if variable.value.is_null() {
            return Ok(None);
        }
        Ok(Some(Variable {
            updated_at: variable.updated_at_text(),
            value: variable.value.to_string(),
            key: variable.key.unwrap_or(key),
        }))
    }

    fn set_variable(
        caller: CallerBorrow<'_>,
        key: String,
        value: String,
    ) -> Result<(), BackendError> {
        let caller = caller.get::<VerifiedCaller>();
        put_variable(&caller.claims, &user_of(caller)?, &key, &raw_json(value)?)
    }

    fn delete_variable(caller: CallerBorrow<'_>, key: String) -> Result<bool, BackendError> {
        let caller = caller.get::<VerifiedCaller>();
        let user_id = user_of(caller)?;
        let claims = &caller.claims;
        let path = rules::variable_path(&user_id, &key);
        let answer = call(Method::Delete, &path, Some(claims), None)?;
        match answer.status {
            404 => Ok(false),
            // A backend without DELETE: a null value is how helpers delete.
            405 => {
                let null = raw_json("null".into())?;
                put_variable(claims, &user_id, &key, &null).map(|()| true)
            }
            _ => checked(answer).map(|_| true),
        }
    }

    fn get_tool_credentials(
        caller: CallerBorrow<'_>,
        tool: String,
    ) -> Result<Option<String>, BackendError> {
        let caller = caller.get::<VerifiedCaller>();
        let path = rules::tool_credentials_path(&user_of(caller)?, &tool);
        let answer = call(Method::Get, &path, Some(&caller.claims), None)?;
        if answer.status == 404 {
            return Ok(None);
        }
        let answer = checked(answer)?;
        wire::ToolCredentials::parse(&answer.body)
            .map(|credentials| credentials.map(|c| c.to_string()))
            .map_err(|e| BackendError::InvalidResponse(e.to_string()))
    }

    fn execute_tool(
        caller: CallerBorrow<'_>,
        tool: String,
        action: String,
        parameters: String,
        idempotency_key: Option<String>,
    ) -> Result<String, BackendError> {
        let caller = caller.get::<VerifiedCaller>();
        let user_id = user_of(caller)?;
        let claims = &caller.claims;
        let params = raw_json(parameters)?;
        let body = serde_json::to_vec(&wire::ToolExecuteRequest {
            execution_id: &claims.execution_id,
            user_id: &user_id,
            tool: &tool,
            action: &action,
            params: &params,
        })
        .expect("tool requests serialize");
        let extra: Vec<(&'static str, String)> = idempotency_key
            .map(|key| (rules::IDEMPOTENCY_KEY_HEADER, key))
            .into_iter()
            .collect();
        let answer = checked(call_with(
            Method::Post,
            rules::TOOLS_EXECUTE_PATH,
            Some(claims),
            Some(body),
            &extra,
        )?)?;
        serde_json::from_slice::<wire::ToolExecuteAnswer>(&answer.body)
            .map(|a| a.data.to_string())
            .map_err(|e| BackendError::InvalidResponse(e.to_string()))
    }
}

/// The execution record of `claims`' execution, and whether this read
/// reached the backend: kept in Valkey under `keys::execution`, as the
/// custom host keeps it (the same entry, shared with it), since it does not
/// change while the execution runs. The auth check may have fetched it
/// already, in its own round trip.
fn record(claims: &Claims) -> Result<(Record, bool), BackendError> {
    let key = keys::execution(&claims.execution_id);
    // A kept record that does not parse (another version wrote it) is a
    // miss, and gets overwritten; a Valkey that is away is one too.
    if let Ok(Some(bytes)) = valkey::get(&key)
        && let Ok(execution) = serde_json::from_slice::<Record>(&bytes)
    {
        return Ok((execution, false));
    }
    let path = rules::execution_path(&claims.execution_id, "context");
    let answer = checked(call(Method::Get, &path, Some(claims), None)?)?;
    let execution = BackendContext::parse(&answer.body)
        .and_then(|c| c.into_execution(&claims.execution_id, claims.user_id.as_deref()))
        .map_err(|e| BackendError::InvalidResponse(e.to_string()))?;
    if let (Ok(text), Ok(ttl)) = (serde_json::to_string(&execution), crate::cache::ttl(None)) {
        // Not kept is not an error: the next read asks the backend again.
        let _ = valkey::command(&cronium_rules::valkey::set(&key, &text, ttl));
    }
    Ok((execution, true))
}

/// The user who owns `caller`'s execution, from its record (read once per
/// caller): whose variables and tool credentials the caller reaches.
pub(crate) fn user_of(caller: &VerifiedCaller) -> Result<String, BackendError> {
    if let Some(user) = caller.user.borrow().as_ref() {
        return Ok(user.clone());
    }
    let (execution, _) = record(&caller.claims)?;
    *caller.user.borrow_mut() = Some(execution.user_id.clone());
    Ok(execution.user_id)
}

fn put_variable(
    caller: &Claims,
    user_id: &str,
    key: &str,
    value: &RawValue,
) -> Result<(), BackendError> {
    let body = serde_json::to_vec(&wire::VariablePut { value }).expect("variable writes serialize");
    let path = rules::variable_path(user_id, key);
    checked(call(Method::Put, &path, Some(caller), Some(body))?).map(drop)
}

/// One call, retried (with the rules' pauses) when it is a `GET` that met
/// a gateway error or no answer at all.
fn call(
    method: Method,
    path: &str,
    caller: Option<&Claims>,
    body: Option<Vec<u8>>,
) -> Result<Answer, BackendError> {
    call_with(method, path, caller, body, &[])
}

/// [`call`], with `extra` headers.
fn call_with(
    method: Method,
    path: &str,
    caller: Option<&Claims>,
    body: Option<Vec<u8>>,
    extra: &[(&'static str, String)],
) -> Result<Answer, BackendError> {
    let base = settings::get("backend_url")
        .ok_or_else(|| BackendError::Unavailable("no backend_url is configured".into()))?;
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut headers = Vec::new();
    if let Some(auth) = rules::authorization(&settings::get("backend_token").unwrap_or_default()) {
        headers.push(("authorization", auth));
    }
    if let Some(caller) = caller {
        headers.extend(rules::caller_headers(
            &caller.execution_id,
            caller.capability_token.as_deref(),
        ));
    }
    headers.extend(extra.iter().cloned());
    let attempts = if method == Method::Get {
        rules::IDEMPOTENT_ATTEMPTS
    } else {
        1
    };
    // Every attempt and pause within one `backend_timeout`, as the custom
    // host does.
    let deadline = Deadline::after(timeout());
    let mut last = BackendError::Timeout;
    for attempt in 0..attempts {
        if attempt > 0 {
            let pause = rules::retry_pause(attempt);
            if pause >= deadline.remaining() {
                break;
            }
            std::thread::sleep(pause);
        }
        match http::send(
            method.clone(),
            &url,
            &headers,
            body.clone(),
            rules::MAX_RESPONSE,
            deadline,
        ) {
            Ok(answer) if rules::retryable(answer.status) && attempt + 1 < attempts => {
                last = error(rules::status_failure(answer.status, &answer.body));
            }
            Ok(answer) => return Ok(answer),
            Err(TransportError::TimedOut) => return Err(BackendError::Timeout),
            Err(TransportError::Failed(why)) => last = BackendError::Unavailable(why),
        }
    }
    Err(last)
}

/// The deadline of one backend call with its retries, `backend_timeout`
/// (`BACKEND_TIMEOUT` for the custom host), 30 s by default. An unreadable
/// value falls back to the default and says so in the app's log.
pub(crate) fn timeout() -> Duration {
    settings::duration("backend_timeout", DEFAULT_TIMEOUT).unwrap_or_else(|why| {
        eprintln!("{why}; using 30s");
        DEFAULT_TIMEOUT
    })
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Passes a successful answer; anything else becomes the rules' error.
fn checked(answer: Answer) -> Result<Answer, BackendError> {
    rules::check_answer(answer.status, &answer.body)
        .map(|()| answer)
        .map_err(error)
}

fn error(failure: Failure) -> BackendError {
    match failure {
        Failure::NotFound => BackendError::NotFound,
        Failure::Rejected { status, message } => {
            BackendError::Rejected(Rejection { status, message })
        }
        Failure::Unavailable(why) => BackendError::Unavailable(why),
        Failure::Timeout => BackendError::Timeout,
        Failure::InvalidResponse(why) => BackendError::InvalidResponse(why),
    }
}

/// Checks that a component's value is JSON before it is relayed.
fn raw_json(text: String) -> Result<Box<RawValue>, BackendError> {
    RawValue::from_string(text).map_err(|_| {
        BackendError::Rejected(Rejection {
            status: 400,
            message: "the value is not valid JSON".into(),
        })
    })
}
