//! The `backend` capability: the Cronium backend's internal API when
//! `BACKEND_URL` is set (`http://`, or `https://` verified against the
//! roots of [`trust`]), the embedded on-disk store otherwise.
//!
//! * [`http`]: the backend's API; [`embedded`]: the on-disk store;
//!   [`credentials`]: the operator's tool credential files, read first
//!   whatever the store; [`records`]: execution records as this
//!   capability keeps them.
//! * Rules every store gets from [`Backend`]: variable keys longer than the
//!   backend keeps are refused before any call; an execution whose record
//!   has no start time started when its token was issued.
//! * The WIT `backend` interface's host functions, for every store whose
//!   state is a [`CapabilitiesView`], and [`add_to_linker`].

pub mod credentials;
pub mod embedded;
pub mod http;
pub mod records;
pub(crate) mod trust;

use std::time::Instant;

use cronium_rules::token::Claims;
use cronium_rules::variables;
use cronium_rules::wire::{self, Execution, TokenFacts};
use serde_json::Value;
use wasmtime::component::{Linker, Resource};

use self::credentials::CredentialFiles;
use self::embedded::EmbeddedStore;
pub use self::http::{BackendSetupError, HttpBackend};
use super::{CapabilitiesCtxView, CapabilitiesView, HasCapabilities};
use crate::bindings::auth::Caller;
use crate::bindings::{backend as wit_backend, types as wit};

/// Why a backend call failed (the rules' failure, shared with the Spin
/// adapter).
pub use cronium_rules::backend::BackendError;
/// Percent-encodes one path segment.
pub use cronium_rules::backend::encode_segment;

/// The configured backend: its store, the operator's credential files and
/// the longest variable key the store keeps.
pub struct Backend {
    store: Store,
    credentials: CredentialFiles,
    variable_key_max: u32,
}

/// Where the backend's data lives.
pub enum Store {
    /// The Cronium backend's internal API.
    Http(HttpBackend),
    /// Files in the data directory (the embedded defaults).
    Embedded(EmbeddedStore),
}

/// What `/ready` learns of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendHealth {
    /// It answers, and takes the runtime's credentials.
    Ok,
    /// It does not answer, or answers 5xx.
    Unreachable,
    /// It answers 401 or 403 to the runtime's `BACKEND_TOKEN`.
    CredentialsRefused,
}

impl Backend {
    /// `store`, with the operator's tool credentials in `credentials` and
    /// variable keys of at most `variable_key_max` characters.
    pub fn new(store: Store, credentials: CredentialFiles, variable_key_max: u32) -> Self {
        Backend {
            store,
            credentials,
            variable_key_max,
        }
    }

    /// The longest variable key the backend keeps, in characters.
    pub fn variable_key_max(&self) -> u32 {
        self.variable_key_max
    }

    /// The caller's execution. Without a start time from the store, it
    /// started when the caller's token was issued.
    pub async fn get_execution(&self, caller: &Claims) -> Result<Execution, BackendError> {
        let token = token_facts(caller);
        let mut execution = match &self.store {
            Store::Http(b) => b.get_execution(caller, token.clone()).await?,
            Store::Embedded(s) => s.get_execution(&caller.execution_id).await?,
        };
        if execution.start_time.is_none() {
            execution.start_time = token.start_time();
        }
        Ok(execution)
    }

    /// Records the caller's output (JSON text).
    pub async fn set_output(&self, caller: &Claims, output: String) -> Result<(), BackendError> {
        let output = raw_json(output)?;
        match &self.store {
            Store::Http(b) => b.set_output(caller, &output).await,
            Store::Embedded(s) => s.set_output(&caller.execution_id, &output).await,
        }
    }

    /// Records the caller's workflow condition.
    pub async fn set_condition(
        &self,
        caller: &Claims,
        condition: bool,
    ) -> Result<(), BackendError> {
        match &self.store {
            Store::Http(b) => b.set_condition(caller, condition).await,
            Store::Embedded(s) => s.set_condition(&caller.execution_id, condition).await,
        }
    }

    /// User `user_id`'s variable `key`; `None` when it has no value.
    pub async fn get_variable(
        &self,
        caller: &Claims,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredVariable>, BackendError> {
        self.check_key(key)?;
        match &self.store {
            Store::Http(b) => b.get_variable(caller, user_id, key).await,
            Store::Embedded(s) => s.get_variable(user_id, key).await,
        }
    }

    /// Writes user `user_id`'s variable `key` (JSON text).
    pub async fn set_variable(
        &self,
        caller: &Claims,
        user_id: &str,
        key: &str,
        value: String,
    ) -> Result<(), BackendError> {
        self.check_key(key)?;
        let value = raw_json(value)?;
        match &self.store {
            Store::Http(b) => b.set_variable(caller, user_id, key, &value).await,
            Store::Embedded(s) => s.set_variable(user_id, key, &value).await,
        }
    }

    /// Deletes user `user_id`'s variable `key`; whether it existed.
    pub async fn delete_variable(
        &self,
        caller: &Claims,
        user_id: &str,
        key: &str,
    ) -> Result<bool, BackendError> {
        self.check_key(key)?;
        match &self.store {
            Store::Http(b) => b.delete_variable(caller, user_id, key).await,
            Store::Embedded(s) => s.delete_variable(user_id, key).await,
        }
    }

    /// The credentials user `user_id` has for `tool` (a JSON object): the
    /// operator's file, else the backend's credentials route (when it has
    /// one: the Cronium app has not, and answers 404).
    pub async fn get_tool_credentials(
        &self,
        caller: &Claims,
        user_id: &str,
        tool: &str,
    ) -> Result<Option<Value>, BackendError> {
        if let Some(credentials) = self.credentials.get(user_id, tool).await? {
            return Ok(Some(credentials));
        }
        let found = match &self.store {
            Store::Http(b) => b.get_tool_credentials(caller, user_id, tool).await?,
            Store::Embedded(_) => None,
        };
        if found.is_none() {
            tracing::info!(
                user = user_id,
                tool,
                file = %self
                    .credentials
                    .path(user_id, tool)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                "no tool credentials: the operator writes them to this file \
                 (CRONIUM_TOOL_CREDENTIALS_DIR)"
            );
        }
        Ok(found)
    }

    /// Relays a tool action to the backend (`POST /api/internal/tools/execute`,
    /// with the caller's `Idempotency-Key` if any) and returns its `data`.
    /// The embedded store runs no tools: `NotFound`.
    pub async fn execute_tool(
        &self,
        caller: &Claims,
        user_id: &str,
        tool: &str,
        action: &str,
        parameters: String,
        idempotency_key: Option<&str>,
    ) -> Result<Value, BackendError> {
        let parameters = raw_json(parameters)?;
        match &self.store {
            Store::Http(b) => {
                b.execute_tool(caller, user_id, tool, action, &parameters, idempotency_key)
                    .await
            }
            Store::Embedded(_) => Err(BackendError::NotFound),
        }
    }

    /// Whether the backend can be reached and takes the runtime's
    /// credentials; the embedded store when its directory is readable.
    pub async fn health(&self) -> BackendHealth {
        match &self.store {
            Store::Http(b) => b.health().await,
            Store::Embedded(s) => {
                if tokio::fs::metadata(s.dir()).await.is_ok_and(|m| m.is_dir()) {
                    BackendHealth::Ok
                } else {
                    BackendHealth::Unreachable
                }
            }
        }
    }

    /// Delivers one audit event (`{"executionId","action","metadata","timestamp"}`).
    pub async fn record_audit(&self, event: &AuditRecord) -> Result<(), BackendError> {
        match &self.store {
            Store::Http(b) => b.record_audit(event).await,
            Store::Embedded(s) => s.record_audit(event).await,
        }
    }

    /// Refuses a key the backend would not keep, before any call.
    fn check_key(&self, key: &str) -> Result<(), BackendError> {
        variables::check_backend_key(key, self.variable_key_max).map_err(|e| {
            BackendError::Rejected {
                status: 400,
                message: e.to_string(),
            }
        })
    }
}

/// What `caller`'s token says of its execution.
fn token_facts(caller: &Claims) -> TokenFacts {
    TokenFacts {
        user_id: caller.user_id.clone(),
        issued_at: caller.issued_at,
    }
}

/// A user's variable as the backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVariable {
    pub key: String,
    /// JSON text, never `null`.
    pub value: String,
    pub updated_at: Option<String>,
}

/// An audit event as the backend stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub execution_id: String,
    pub action: String,
    /// `userId`, `jobId`, `outcome` and the action's own fields.
    pub metadata: Value,
    pub timestamp: String,
}

impl AuditRecord {
    /// Reads back what [`AuditRecord::to_json`] wrote.
    pub fn from_json(line: &str) -> Option<AuditRecord> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Line {
            execution_id: String,
            action: String,
            metadata: Value,
            timestamp: String,
        }
        let line: Line = serde_json::from_str(line).ok()?;
        Some(AuditRecord {
            execution_id: line.execution_id,
            action: line.action,
            metadata: line.metadata,
            timestamp: line.timestamp,
        })
    }

    /// The JSON body of `POST /api/internal/audit`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&wire::AuditRequest {
            execution_id: &self.execution_id,
            action: &self.action,
            metadata: &self.metadata,
            details: &self.metadata,
            timestamp: &self.timestamp,
        })
        .expect("audit records serialize")
    }
}

/// Validates JSON text from a component before it is relayed (without
/// copying it: outputs reach 5 MiB).
fn raw_json(text: String) -> Result<Box<serde_json::value::RawValue>, BackendError> {
    serde_json::value::RawValue::from_string(text).map_err(|_| BackendError::Rejected {
        status: 400,
        message: "the value is not valid JSON".into(),
    })
}

/// The current time, RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("the current time formats as RFC 3339")
}

/// Adds the WIT `backend` interface to `linker`.
pub fn add_to_linker<T: CapabilitiesView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit_backend::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)
}

/// A backend answer for the component, or a trap.
type BackendAnswer<T> = wasmtime::Result<Result<T, wit_backend::BackendError>>;

impl wit_backend::Host for CapabilitiesCtxView<'_> {
    async fn variable_key_limit(&mut self) -> wasmtime::Result<u32> {
        Ok(self.backend().variable_key_max())
    }

    async fn get_execution(
        &mut self,
        caller: Resource<Caller>,
    ) -> BackendAnswer<wit_backend::ExecutionRead> {
        let claims = self.claims(&caller)?;
        let (e, from_backend) = or_answer!(self.record(&claims).await, backend_error);
        self.table.get_mut(&caller)?.know_user(&e.user_id);
        Ok(Ok(wit_backend::ExecutionRead {
            execution: wit::Execution {
                execution_id: e.execution_id,
                job_id: e.job_id,
                user_id: e.user_id,
                event_id: e.event_id,
                event_name: e.event_name,
                event_type: e.event_type,
                start_time: e.start_time,
                metadata: e.metadata.to_string(),
            },
            from_backend,
        }))
    }

    async fn set_output(&mut self, caller: Resource<Caller>, output: String) -> BackendAnswer<()> {
        let claims = self.claims(&caller)?;
        let started = Instant::now();
        let result = self.backend().set_output(&claims, output).await;
        Ok(self.observed(started, result))
    }

    async fn set_condition(
        &mut self,
        caller: Resource<Caller>,
        condition: bool,
    ) -> BackendAnswer<()> {
        let claims = self.claims(&caller)?;
        let started = Instant::now();
        let result = self.backend().set_condition(&claims, condition).await;
        Ok(self.observed(started, result))
    }

    async fn get_variable(
        &mut self,
        caller: Resource<Caller>,
        key: String,
    ) -> BackendAnswer<Option<wit_backend::Variable>> {
        let (claims, user) = or_answer!(self.user(&caller).await?, backend_error);
        let started = Instant::now();
        let result = self.backend().get_variable(&claims, &user, &key).await;
        Ok(self.observed(started, result).map(|variable| {
            variable.map(|v| wit_backend::Variable {
                key: v.key,
                value: v.value,
                updated_at: v.updated_at,
            })
        }))
    }

    async fn set_variable(
        &mut self,
        caller: Resource<Caller>,
        key: String,
        value: String,
    ) -> BackendAnswer<()> {
        let (claims, user) = or_answer!(self.user(&caller).await?, backend_error);
        let started = Instant::now();
        let result = self
            .backend()
            .set_variable(&claims, &user, &key, value)
            .await;
        Ok(self.observed(started, result))
    }

    async fn delete_variable(
        &mut self,
        caller: Resource<Caller>,
        key: String,
    ) -> BackendAnswer<bool> {
        let (claims, user) = or_answer!(self.user(&caller).await?, backend_error);
        let started = Instant::now();
        let result = self.backend().delete_variable(&claims, &user, &key).await;
        Ok(self.observed(started, result))
    }

    async fn get_tool_credentials(
        &mut self,
        caller: Resource<Caller>,
        tool: String,
    ) -> BackendAnswer<Option<String>> {
        let (claims, user) = or_answer!(self.user(&caller).await?, backend_error);
        let started = Instant::now();
        let result = self
            .backend()
            .get_tool_credentials(&claims, &user, &tool)
            .await;
        Ok(self
            .observed(started, result)
            .map(|c| c.map(|c| c.to_string())))
    }

    async fn execute_tool(
        &mut self,
        caller: Resource<Caller>,
        tool: String,
        action: String,
        parameters: String,
        idempotency_key: Option<String>,
    ) -> BackendAnswer<String> {
        let (claims, user) = or_answer!(self.user(&caller).await?, backend_error);
        let started = Instant::now();
        let result = self
            .backend()
            .execute_tool(
                &claims,
                &user,
                &tool,
                &action,
                parameters,
                idempotency_key.as_deref(),
            )
            .await;
        Ok(self.observed(started, result).map(|data| data.to_string()))
    }
}

impl CapabilitiesCtxView<'_> {
    fn backend(&self) -> &Backend {
        &self.ctx.capabilities.backend
    }

    /// Records a backend call's latency (and error kind), then maps its
    /// error for the component.
    fn observed<T>(
        &self,
        started: Instant,
        result: Result<T, BackendError>,
    ) -> Result<T, wit_backend::BackendError> {
        self.observe(started, &result);
        result.map_err(backend_error)
    }
}

/// The component's view of a backend failure (logged unless it is the
/// backend's answer).
fn backend_error(error: BackendError) -> wit_backend::BackendError {
    use wit_backend::BackendError as W;
    if !matches!(
        error,
        BackendError::NotFound | BackendError::Rejected { .. }
    ) {
        tracing::warn!(%error, "backend call failed");
    }
    match error {
        BackendError::NotFound => W::NotFound,
        BackendError::Rejected { status, message } => {
            W::Rejected(wit_backend::Rejection { status, message })
        }
        BackendError::Unavailable(why) => W::Unavailable(why),
        BackendError::Timeout => W::Timeout,
        BackendError::InvalidResponse(why) => W::InvalidResponse(why),
        BackendError::CredentialsRefused(_) => W::CredentialsRefused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn spooled_audit_lines_read_back_or_are_refused(line in "\\PC{0,300}") {
            let _ = AuditRecord::from_json(&line);
        }

        #[test]
        fn audit_records_round_trip_through_the_spool(id in "\\PC{0,40}", action in "[a-z_]{1,20}") {
            let record = AuditRecord {
                execution_id: id,
                action,
                metadata: serde_json::json!({"k": 1}),
                timestamp: now_rfc3339(),
            };
            proptest::prop_assert_eq!(AuditRecord::from_json(&record.to_json()), Some(record));
        }
    }
}
