//! JSON shapes of the Cronium backend's internal API (`docs/api.md`, "The
//! backend we call") and of the execution record the runtime serves and caches.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// An execution as the runtime serves it (`GET /executions/{id}/context`
/// answers exactly this object) and caches it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// The execution's id (the token's `executionId`).
    pub execution_id: String,
    /// The job the execution runs.
    pub job_id: String,
    /// The Cronium event (the script) the execution runs, if known.
    pub event_id: Option<String>,
    /// That event's name, if the backend gave one.
    pub event_name: Option<String>,
    /// That event's type as the backend names it (`BASH`, ...).
    pub event_type: Option<String>,
    /// The user who owns the execution, and whose variables it reaches.
    pub user_id: String,
    /// When the execution started, as the backend wrote it, else the token's
    /// `iat` in RFC 3339 ([`TokenFacts::start_time`]).
    pub start_time: Option<String>,
    /// A JSON object, kept as written; `metadata.input` is the script's
    /// input. As text, a record is read from the cache and served without
    /// building a tree of the input, however large.
    pub metadata: Box<RawValue>,
}

impl Execution {
    /// The script's input, `metadata.input` as written, unless absent or
    /// null.
    pub fn input(&self) -> Option<&RawValue> {
        #[derive(Deserialize)]
        struct Metadata<'a> {
            #[serde(borrow)]
            input: Option<&'a RawValue>,
        }
        let metadata = self.metadata.get();
        // Only an object has fields (serde would also read `[x]` as one).
        if !metadata.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str::<Metadata>(metadata).ok()?.input
    }
}

/// The contract's success envelope, `{"success":true,"data":<data>}`.
/// `data` is serialized as it is: a [`RawValue`] goes out as written.
#[derive(Debug, Serialize)]
pub struct Success<T> {
    success: bool,
    data: T,
}

impl<T: Serialize> Success<T> {
    /// The envelope of `data`.
    pub fn new(data: T) -> Self {
        Success {
            success: true,
            data,
        }
    }
}

/// The backend's answer to `GET /api/internal/executions/{id}/context`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendContext {
    /// The execution the record is of; when present, it must be the one
    /// asked for.
    #[serde(default, deserialize_with = "id")]
    pub execution_id: Option<String>,
    /// The job; a record without one is unusable.
    #[serde(default, deserialize_with = "id")]
    pub job_id: Option<String>,
    /// The event's id, when given at the top level (else `event.id`).
    #[serde(default, deserialize_with = "id")]
    pub event_id: Option<String>,
    /// The owner, when given at the top level (else `user.id`).
    #[serde(default, deserialize_with = "id")]
    pub user_id: Option<String>,
    /// The execution's metadata: an object, or `null` for none.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// The event the execution runs: its name and type.
    #[serde(default)]
    pub event: Option<BackendEvent>,
    /// The owning user, for its id.
    #[serde(default)]
    pub user: Option<BackendUser>,
    /// `startTime` (or `startedAt`), a string or a number; the Cronium app
    /// sends none.
    #[serde(default, alias = "startedAt")]
    pub start_time: Option<Value>,
}

/// The `event` object of [`BackendContext`].
#[derive(Debug, Clone, Deserialize)]
pub struct BackendEvent {
    /// The event's id (a string or an integer).
    #[serde(default, deserialize_with = "id")]
    pub id: Option<String>,
    /// The event's name, served as `eventName`.
    #[serde(default)]
    pub name: Option<String>,
    /// The event's `type` (`BASH`, ...), served as `eventType`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// The `user` object of [`BackendContext`].
#[derive(Debug, Clone, Deserialize)]
pub struct BackendUser {
    /// The user's id (a string or an integer).
    #[serde(default, deserialize_with = "id")]
    pub id: Option<String>,
}

/// Why a backend answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend answer is unusable: {0}")]
pub struct ContextError(pub String);

/// Parses a backend answer, accepting a `{"success":true,"data":{..}}`
/// envelope around it as well as the bare object (recognised by `field`).
fn parse_enveloped<T: serde::de::DeserializeOwned>(
    body: &[u8],
    field: &str,
) -> Result<T, ContextError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ContextError(e.to_string()))?;
    let inner = match value.get("data") {
        Some(data) if data.is_object() && value.get(field).is_none() => data.clone(),
        _ => value,
    };
    // serde reads a struct from an array too, field by field: an answer
    // `[1, 2]` is no record (found by fuzz/fuzz_targets/backend_answers.rs).
    if !inner.is_object() {
        return Err(ContextError("expected a JSON object".into()));
    }
    serde_json::from_value(inner).map_err(|e| ContextError(e.to_string()))
}

impl BackendContext {
    /// Parses the backend's JSON, enveloped or bare.
    pub fn parse(body: &[u8]) -> Result<Self, ContextError> {
        parse_enveloped(body, "executionId")
    }

    /// The runtime's execution record. The execution id falls back to the
    /// one asked for, the user to `user.id` and then to the token's user,
    /// the start time (the Cronium app sends none) to the token's `iat`.
    /// A record of another execution than the one asked for is refused:
    /// it is kept for the caller and names the user whose variables the
    /// caller reaches.
    pub fn into_execution(
        self,
        requested_id: &str,
        token: &TokenFacts,
    ) -> Result<Execution, ContextError> {
        if let Some(answered) = &self.execution_id
            && answered != requested_id
        {
            return Err(ContextError(format!(
                "the record is of execution {answered:?}, not {requested_id:?}"
            )));
        }
        let user_id = self
            .user_id
            .or(self.user.and_then(|u| u.id))
            .or(token.user_id.clone())
            .ok_or_else(|| ContextError("no userId".into()))?;
        let job_id = self.job_id.ok_or_else(|| ContextError("no jobId".into()))?;
        let (event_name, event_type, event_from_event) = match self.event {
            Some(e) => (e.name, e.kind, e.id),
            None => (None, None, None),
        };
        let metadata = match self.metadata {
            Some(m) if m.is_object() => m,
            Some(Value::Null) | None => Value::Object(Default::default()),
            Some(_) => return Err(ContextError("metadata is not an object".into())),
        };
        let start_time = match self.start_time {
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => metadata
                .get("startTime")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| token.start_time()),
        };
        let metadata =
            serde_json::value::to_raw_value(&metadata).map_err(|e| ContextError(e.to_string()))?;
        Ok(Execution {
            execution_id: self.execution_id.unwrap_or_else(|| requested_id.to_owned()),
            job_id,
            event_id: self.event_id.or(event_from_event),
            event_name,
            event_type,
            user_id,
            start_time,
            metadata,
        })
    }
}

/// What the caller's token says of its execution, for what the backend's
/// record leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFacts {
    /// `userId`, when the token has one.
    pub user_id: Option<String>,
    /// `iat`, seconds since the Unix epoch (0: none).
    pub issued_at: u64,
}

impl TokenFacts {
    /// The start time of an execution whose backend gives none: when its
    /// token was issued (never the zero time: none without an `iat`).
    pub fn start_time(&self) -> Option<String> {
        (self.issued_at > 0).then(|| rfc3339_utc(self.issued_at))
    }
}

/// `secs` since the Unix epoch as RFC 3339 in UTC (`2026-12-07T13:20:00Z`).
pub fn rfc3339_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Days to a civil date (proleptic Gregorian), eras of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// The backend's answer to `GET /api/internal/variables/{userId}/{key}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendVariable {
    /// The key, as the backend names it.
    #[serde(default)]
    pub key: Option<String>,
    /// Absent and `null` alike mean the variable holds no value.
    #[serde(default)]
    pub value: Value,
    /// `updatedAt`, a string or a number (see
    /// [`BackendVariable::updated_at_text`]).
    #[serde(default)]
    pub updated_at: Option<Value>,
}

impl BackendVariable {
    /// Parses the backend's JSON, enveloped or bare.
    pub fn parse(body: &[u8]) -> Result<Self, ContextError> {
        parse_enveloped(body, "value")
    }

    /// `updatedAt` as text, whatever type the backend used.
    pub fn updated_at_text(&self) -> Option<String> {
        match &self.updated_at {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Body of `PUT /api/internal/variables/{userId}/{key}`: the value as the
/// text the backend keeps ([`crate::variables::text`]).
#[derive(Debug, Serialize)]
pub struct VariablePut<'a> {
    /// The value's text ([`crate::variables::text::encode`]).
    pub value: &'a str,
}

/// Body of `POST /api/internal/executions/{id}/output`.
#[derive(Debug, Serialize)]
pub struct OutputRequest<'a> {
    /// The script's output, JSON as written.
    pub output: &'a serde_json::value::RawValue,
    /// When the output was set, RFC 3339 in UTC.
    pub timestamp: &'a str,
}

/// Body of `POST /api/internal/executions/{id}/condition`.
#[derive(Debug, Serialize)]
pub struct ConditionRequest<'a> {
    /// The condition the script set.
    pub condition: bool,
    /// When the condition was set, RFC 3339 in UTC.
    pub timestamp: &'a str,
}

/// Body of `POST /api/internal/audit`. The Cronium app reads `details`,
/// the contract names it `metadata`: both carry the same object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRequest<'a> {
    /// The execution the event is about.
    pub execution_id: &'a str,
    /// What was done (`get_input`, `set_variable`, ...).
    pub action: &'a str,
    /// The action's fields plus `userId`, `jobId` and `outcome`
    /// ([`crate::backend::audit_metadata`]).
    pub metadata: &'a Value,
    /// The same object as `metadata`, under the name the Cronium app reads.
    pub details: &'a Value,
    /// When the event was recorded, RFC 3339 in UTC.
    pub timestamp: &'a str,
}

/// Body of `POST /api/internal/tools/execute`: a tool action the runtime
/// relays because the tool is not installed here (as the Go service did).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolExecuteRequest<'a> {
    /// The calling execution.
    pub execution_id: &'a str,
    /// The execution's user, whose credentials the tool runs with.
    pub user_id: &'a str,
    /// The tool's id (`slack`, ...).
    pub tool: &'a str,
    /// The action's name as the caller gave it.
    pub action: &'a str,
    /// The action's parameters, JSON as the caller sent them.
    pub params: &'a serde_json::value::RawValue,
}

/// The backend's answer to a relayed tool action: `{success, data,
/// error?}`. A `success: false` answer is turned into a refusal before
/// this is read, so only `data` matters here.
#[derive(Debug, Deserialize)]
pub struct ToolExecuteAnswer {
    /// The tool's result (`null` when absent).
    #[serde(default)]
    pub data: Value,
}

/// The backend's answer to `GET /api/internal/tools/credentials/{userId}/{tool}`:
/// `{"credentials": {...}}` (or that object in a `data` envelope).
#[derive(Debug, Deserialize)]
pub struct ToolCredentials {
    /// The user's credentials for the tool: an object, or `null` for none.
    #[serde(default)]
    pub credentials: Value,
}

impl ToolCredentials {
    /// Parses the backend's JSON; the credentials must be an object (a
    /// `null` means none).
    pub fn parse(body: &[u8]) -> Result<Option<Value>, ContextError> {
        let answer: ToolCredentials = parse_enveloped(body, "credentials")?;
        match answer.credentials {
            Value::Null => Ok(None),
            Value::Object(map) => Ok(Some(Value::Object(map))),
            _ => Err(ContextError("credentials are not an object".into())),
        }
    }
}

/// The message of a backend error body: `message`, else `error`, else
/// nothing. Bodies that are not JSON give nothing: raw backend text may
/// hold internal details and is not passed on.
pub fn error_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    ["message", "error"]
        .iter()
        .find_map(|k| value.get(*k).and_then(Value::as_str))
        .map(|s| s.chars().take(500).collect())
}

/// Reads an id that may be sent as a string or an integer (Cronium's own
/// ids are integers in some places); an empty string counts as absent.
pub(crate) fn id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(match Option::<Id>::deserialize(d)? {
        None => None,
        Some(Id::Text(s)) if s.is_empty() => None,
        Some(Id::Text(s)) => Some(s),
        Some(Id::Number(n)) => Some(n.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn context_takes_event_name_and_type_from_the_nested_event() {
        let body = json!({
            "executionId": "e1", "jobId": 42, "eventId": "ev", "userId": "u1",
            "metadata": {"input": {"a": 1}},
            "event": {"id": "ev", "name": "Nightly", "type": "BASH"},
            "user": {"id": "u1", "email": "x@example.com", "name": "X"}
        });
        let exec = BackendContext::parse(body.to_string().as_bytes())
            .unwrap()
            .into_execution("e1", &TokenFacts::default())
            .unwrap();
        assert_eq!(exec.job_id, "42");
        assert_eq!(exec.event_name.as_deref(), Some("Nightly"));
        assert_eq!(exec.event_type.as_deref(), Some("BASH"));
        assert_eq!(exec.input().map(RawValue::get), Some(r#"{"a":1}"#));
    }

    #[test]
    fn an_answer_that_is_not_an_object_is_no_record() {
        // Found by the backend_answers fuzz target: serde reads a struct
        // from an array, field by field.
        for body in ["[5550000055555555555, 0.05]", "[]", "\"e1\"", "7"] {
            assert!(BackendContext::parse(body.as_bytes()).is_err(), "{body}");
            assert!(BackendVariable::parse(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn a_record_of_another_execution_is_refused() {
        let body = json!({"executionId": "e2", "jobId": "j", "userId": "u"});
        let refused = BackendContext::parse(body.to_string().as_bytes())
            .unwrap()
            .into_execution("e1", &TokenFacts::default())
            .unwrap_err();
        assert!(refused.0.contains("e2"), "{refused}");
        let numeric = json!({"executionId": 17, "jobId": "j", "userId": "u"});
        let record = BackendContext::parse(numeric.to_string().as_bytes())
            .unwrap()
            .into_execution("17", &TokenFacts::default())
            .unwrap();
        assert_eq!(record.execution_id, "17");
    }

    #[test]
    fn context_accepts_a_success_envelope_and_a_null_event() {
        let body = json!({"success": true, "data": {
            "executionId": "e1", "jobId": "j", "userId": "u", "metadata": null, "event": null
        }});
        let exec = BackendContext::parse(body.to_string().as_bytes())
            .unwrap()
            .into_execution("e1", &TokenFacts::default())
            .unwrap();
        assert_eq!(exec.event_name, None);
        assert_eq!(exec.metadata.get(), "{}");
        assert!(exec.input().is_none());
    }

    fn with_metadata(metadata: &str) -> Execution {
        Execution {
            execution_id: "e".into(),
            job_id: "j".into(),
            event_id: None,
            event_name: None,
            event_type: None,
            user_id: "u".into(),
            start_time: None,
            metadata: RawValue::from_string(metadata.into()).unwrap(),
        }
    }

    #[test]
    fn input_is_metadata_input_as_written_and_none_when_absent_or_null() {
        let exec = with_metadata(r#"{"x": {"input": 5}, "input": [1, "a b"]}"#);
        assert_eq!(exec.input().map(RawValue::get), Some(r#"[1, "a b"]"#));
        for metadata in [r#"{"input": null}"#, "{}", r#"{"x": {"input": 5}}"#, "[1]"] {
            assert!(with_metadata(metadata).input().is_none(), "{metadata}");
        }
    }

    #[test]
    fn the_success_envelope_carries_raw_data_as_written() {
        let exec = with_metadata(r#"{"input": {"b": 1, "a": [ 2 ]}}"#);
        let body = serde_json::to_vec(&Success::new(exec.input())).unwrap();
        assert_eq!(body, br#"{"success":true,"data":{"b": 1, "a": [ 2 ]}}"#);
        let none = serde_json::to_vec(&Success::new(with_metadata("{}").input())).unwrap();
        assert_eq!(none, br#"{"success":true,"data":null}"#);
    }

    #[test]
    fn context_without_a_user_is_unusable_unless_the_token_names_one() {
        let body = br#"{"executionId":"e1","jobId":"j"}"#;
        assert!(
            BackendContext::parse(body)
                .unwrap()
                .into_execution("e1", &TokenFacts::default())
                .is_err()
        );
        let exec = BackendContext::parse(body)
            .unwrap()
            .into_execution(
                "e1",
                &TokenFacts {
                    user_id: Some("u9".into()),
                    issued_at: 0,
                },
            )
            .unwrap();
        assert_eq!(exec.user_id, "u9");
    }

    #[test]
    fn context_without_a_start_time_starts_at_the_tokens_iat_never_at_zero() {
        // The Cronium app's context has no startTime.
        let body = br#"{"executionId":"e1","jobId":"j","userId":"u","metadata":{}}"#;
        let token = TokenFacts {
            user_id: None,
            issued_at: 1_796_601_600,
        };
        let exec = BackendContext::parse(body)
            .unwrap()
            .into_execution("e1", &token)
            .unwrap();
        assert_eq!(exec.start_time.as_deref(), Some("2026-12-07T00:00:00Z"));
        let none = BackendContext::parse(body)
            .unwrap()
            .into_execution("e1", &TokenFacts::default())
            .unwrap();
        assert_eq!(none.start_time, None);
        let given = br#"{"jobId":"j","userId":"u","startTime":"2026-01-01T00:00:00Z"}"#;
        let exec = BackendContext::parse(given)
            .unwrap()
            .into_execution("e1", &token)
            .unwrap();
        assert_eq!(exec.start_time.as_deref(), Some("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn unix_seconds_format_as_rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_709_164_799), "2024-02-28T23:59:59Z");
        assert_eq!(rfc3339_utc(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn served_context_has_the_contract_field_names() {
        let exec = Execution {
            execution_id: "e".into(),
            job_id: "j".into(),
            event_id: None,
            event_name: Some("n".into()),
            event_type: None,
            user_id: "u".into(),
            start_time: None,
            metadata: RawValue::from_string("{}".into()).unwrap(),
        };
        let v = serde_json::to_value(&exec).unwrap();
        for field in [
            "executionId",
            "jobId",
            "eventId",
            "eventName",
            "eventType",
            "userId",
            "startTime",
            "metadata",
        ] {
            assert!(v.get(field).is_some(), "{field} missing from {v}");
        }
    }

    #[test]
    fn variable_answers_parse_bare_or_enveloped() {
        let bare =
            BackendVariable::parse(br#"{"key":"k","value":{"a":1},"updatedAt":"t"}"#).unwrap();
        assert_eq!(bare.value, json!({"a": 1}));
        assert_eq!(bare.updated_at_text().as_deref(), Some("t"));
        let wrapped =
            BackendVariable::parse(br#"{"success":true,"data":{"key":"k","value":[1]}}"#).unwrap();
        assert_eq!(wrapped.value, json!([1]));
        let null = BackendVariable::parse(br#"{"key":"k","value":null}"#).unwrap();
        assert!(null.value.is_null());
    }

    #[test]
    fn tool_credentials_are_an_object_or_none() {
        assert_eq!(
            ToolCredentials::parse(br#"{"credentials":{"botToken":"x"}}"#).unwrap(),
            Some(json!({"botToken": "x"}))
        );
        assert_eq!(
            ToolCredentials::parse(br#"{"success":true,"data":{"credentials":{"a":1}}}"#).unwrap(),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            ToolCredentials::parse(br#"{"credentials":null}"#).unwrap(),
            None
        );
        assert!(ToolCredentials::parse(br#"{"credentials":"x"}"#).is_err());
    }

    #[test]
    fn error_message_prefers_message_and_ignores_non_json() {
        assert_eq!(
            error_message(br#"{"error":"Bad Request","message":"no such tool"}"#).as_deref(),
            Some("no such tool")
        );
        assert_eq!(
            error_message(br#"{"error":"nope"}"#).as_deref(),
            Some("nope")
        );
        assert_eq!(error_message(b"<html>internal host db-7</html>"), None);
    }
}
