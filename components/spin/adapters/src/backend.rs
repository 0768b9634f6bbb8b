//! `cronium:runtime/backend` on outbound HTTP to the Cronium
//! backend's internal API. Every call is a machine of
//! `cronium_rules::backend::protocol` (paths, headers, retries of
//! idempotent calls, the reading of answers, the `DELETE`→405→`PUT null`
//! fallback), the custom host's too, driven by the support crate's
//! blocking driver (`cronium_spin_support::drive`).
//!
//! Every call is made for the verified caller behind the `caller` handle
//! (`auth`). Its user, whose variables and tool credentials these are, is
//! the owner its execution record names; the record is kept in Valkey
//! under the key the custom host keeps it under, so either host's first
//! read serves the other's.
//!
//! Settings (Spin variables of the endpoint component): `backend_url`
//! (required; `http://` or `https://`), `backend_token`, `backend_timeout`
//! (`30s`: one call, retries included, answers `timeout` after it),
//! `variable_key_max` (255: longer variable keys are refused before any
//! call). Spin has no disk: tool credentials come from the backend's
//! route only.

use cronium_rules::backend as rules;
use cronium_rules::backend::protocol::{self as calls, Caller, Client, DeleteVariable};
use std::time::Duration;

use cronium_spin_support::drive;
use cronium_spin_support::{now_rfc3339, settings};
use serde_json::value::RawValue;

use cronium_rules::token::Claims;
use cronium_rules::variables;

pub(crate) mod records;

use self::records::{record, user_of};
use crate::auth::VerifiedCaller;
use crate::exports::cronium::runtime::auth::CallerBorrow;
use crate::exports::cronium::runtime::backend::{
    BackendError, ExecutionRead, Guest, Rejection, Variable,
};
use crate::exports::cronium::runtime::types::Execution;

impl Guest for crate::Adapters {
    fn variable_key_limit() -> u32 {
        variable_key_max()
    }

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
        let (base, client) = client()?;
        let call = calls::set_output(&client, &as_caller(claims), &output, &now_rfc3339());
        drive::backend(&base, call).map_err(error)
    }

    fn set_condition(caller: CallerBorrow<'_>, condition: bool) -> Result<(), BackendError> {
        let claims = &caller.get::<VerifiedCaller>().claims;
        let (base, client) = client()?;
        let call = calls::set_condition(&client, &as_caller(claims), condition, &now_rfc3339());
        drive::backend(&base, call).map_err(error)
    }

    fn get_variable(
        caller: CallerBorrow<'_>,
        key: String,
    ) -> Result<Option<Variable>, BackendError> {
        let caller = caller.get::<VerifiedCaller>();
        check_key(&key)?;
        let user_id = user_of(caller)?;
        let (base, client) = client()?;
        let call = calls::get_variable(&client, &as_caller(&caller.claims), &user_id, &key);
        drive::backend(&base, call)
            .map(|variable| {
                variable.map(|v| Variable {
                    key: v.key,
                    value: v.value,
                    updated_at: v.updated_at,
                })
            })
            .map_err(error)
    }

    fn set_variable(
        caller: CallerBorrow<'_>,
        key: String,
        value: String,
    ) -> Result<(), BackendError> {
        let caller = caller.get::<VerifiedCaller>();
        check_key(&key)?;
        let user_id = user_of(caller)?;
        let value = raw_json(value)?;
        let (base, client) = client()?;
        let call = calls::set_variable(&client, &as_caller(&caller.claims), &user_id, &key, &value);
        drive::backend(&base, call).map_err(error)
    }

    fn delete_variable(caller: CallerBorrow<'_>, key: String) -> Result<bool, BackendError> {
        let caller = caller.get::<VerifiedCaller>();
        check_key(&key)?;
        let user_id = user_of(caller)?;
        let (base, client) = client()?;
        let call = DeleteVariable::new(&client, &as_caller(&caller.claims), &user_id, &key);
        drive::backend(&base, call).map_err(error)
    }

    fn get_tool_credentials(
        caller: CallerBorrow<'_>,
        tool: String,
    ) -> Result<Option<String>, BackendError> {
        let caller = caller.get::<VerifiedCaller>();
        let user_id = user_of(caller)?;
        let (base, client) = client()?;
        let call =
            calls::get_tool_credentials(&client, &as_caller(&caller.claims), &user_id, &tool);
        drive::backend(&base, call)
            .map(|credentials| credentials.map(|c| c.to_string()))
            .map_err(error)
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
        let params = raw_json(parameters)?;
        let (base, client) = client()?;
        let call = calls::execute_tool(
            &client,
            &as_caller(&caller.claims),
            &user_id,
            &tool,
            &action,
            &params,
            idempotency_key.as_deref(),
        );
        drive::backend(&base, call)
            .map(|data| data.to_string())
            .map_err(error)
    }
}

/// The backend's base URL (`backend_url`), and how it is called: its
/// token (`backend_token`) and the budget of one call (`backend_timeout`).
pub(crate) fn client() -> Result<(String, Client), BackendError> {
    let base = settings::get("backend_url")
        .ok_or_else(|| BackendError::Unavailable("no backend_url is configured".into()))?;
    let client = Client {
        token: settings::get("backend_token").unwrap_or_default(),
        timeout: timeout(),
    };
    Ok((base, client))
}

/// Who the backend is called for.
fn as_caller(claims: &Claims) -> Caller {
    Caller {
        execution_id: claims.execution_id.clone(),
        capability: claims.capability_token.clone(),
    }
}

/// The deadline of one backend call with its retries, `backend_timeout`
/// (`BACKEND_TIMEOUT` for the custom host), 30 s by default. An unreadable
/// value falls back to the default and says so in the app's log.
pub(crate) fn timeout() -> Duration {
    settings::backend_timeout(settings::get("backend_timeout")).unwrap_or_else(|why| {
        eprintln!("{why}; using 30s");
        cronium_rules::settings::BACKEND_TIMEOUT
    })
}

fn error(failure: rules::BackendError) -> BackendError {
    match failure {
        rules::BackendError::NotFound => BackendError::NotFound,
        rules::BackendError::Rejected { status, message } => {
            BackendError::Rejected(Rejection { status, message })
        }
        rules::BackendError::Unavailable(why) => BackendError::Unavailable(why),
        rules::BackendError::Timeout => BackendError::Timeout,
        rules::BackendError::InvalidResponse(why) => BackendError::InvalidResponse(why),
        rules::BackendError::CredentialsRefused(status) => {
            eprintln!("{}", rules::BackendError::CredentialsRefused(status));
            BackendError::CredentialsRefused
        }
    }
}

/// `variable_key_max`: the longest variable key the backend keeps (255,
/// the Cronium app's column). An unreadable value falls back to it and
/// says so in the app's log.
fn variable_key_max() -> u32 {
    settings::variable_key_max(settings::get("variable_key_max")).unwrap_or_else(|why| {
        eprintln!("{why}; using {}", variables::BACKEND_KEY_MAX_CHARS);
        variables::BACKEND_KEY_MAX_CHARS
    })
}

/// Refuses a key the backend would not keep, before any call (the
/// component checks it too; this holds for any component).
fn check_key(key: &str) -> Result<(), BackendError> {
    variables::check_backend_key(key, variable_key_max()).map_err(|e| {
        BackendError::Rejected(Rejection {
            status: 400,
            message: e.to_string(),
        })
    })
}

/// Checks that a component's value is JSON before it is relayed.
fn raw_json(text: String) -> Result<Box<RawValue>, BackendError> {
    calls::raw_json(text).map_err(error)
}
