//! The HTTP backend: the Cronium backend's internal API at `BACKEND_URL`
//! (`http://`, or `https://` verified against the roots of
//! [`super::trust`]), through one pooled keep-alive client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cronium_rules::backend as rules;
use cronium_rules::token::Claims;
use cronium_rules::wire::{self, BackendContext, Execution};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{AuditRecord, BackendError, StoredVariable, now_rfc3339, trust};
use crate::config::BackendConfig;

/// Why the backend client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BackendSetupError {
    /// rustls refused the client configuration.
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A client of the Cronium backend's internal API: pooled keep-alive
/// connections, a deadline per call, retries only for idempotent calls.
/// Every call (audit delivery and `/ready`'s ping too) goes through its one
/// client, which speaks `http://` and verified `https://`.
pub struct HttpBackend {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

/// An answer from the backend.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl HttpBackend {
    /// A client of the backend at `config.url`. For an `https://` URL the
    /// trusted roots are read here (the system's, `SSL_CERT_FILE`,
    /// `SSL_CERT_DIR`); server verification cannot be turned off.
    pub fn new(config: &BackendConfig) -> Result<Self, BackendSetupError> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeout.min(Duration::from_secs(5))));
        connector.enforce_http(false);
        let roots = if config.url.starts_with("https://") {
            trust::roots_from_env()
        } else {
            rustls::RootCertStore::empty()
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let authorization = (!config.token.is_empty())
            .then(|| HeaderValue::try_from(format!("Bearer {}", config.token)).ok())
            .flatten()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Ok(HttpBackend {
            client,
            base: config.url.clone(),
            authorization,
            timeout: config.timeout,
        })
    }

    pub(super) async fn ping(&self) -> bool {
        let Ok(request) = self.request(&Method::GET, "/", None, None) else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.send(request)).await,
            Ok(Ok(answer)) if !answer.status.is_server_error()
        )
    }

    pub(super) async fn get_execution(&self, caller: &Claims) -> Result<Execution, BackendError> {
        let path = execution_path(caller, "context");
        let answer = self.call(Method::GET, &path, Some(caller), None).await?;
        let answer = expect_success(answer)?;
        BackendContext::parse(&answer.body)
            .and_then(|c| c.into_execution(&caller.execution_id, caller.user_id.as_deref()))
            .map_err(|e| BackendError::InvalidResponse(e.to_string()))
    }

    pub(super) async fn set_output(
        &self,
        caller: &Claims,
        output: &serde_json::value::RawValue,
    ) -> Result<(), BackendError> {
        let timestamp = now_rfc3339();
        let body = serde_json::to_vec(&wire::OutputRequest {
            output,
            timestamp: &timestamp,
        })
        .expect("output requests serialize");
        let path = execution_path(caller, "output");
        expect_success(
            self.call(Method::POST, &path, Some(caller), Some(body))
                .await?,
        )
        .map(drop)
    }

    pub(super) async fn set_condition(
        &self,
        caller: &Claims,
        condition: bool,
    ) -> Result<(), BackendError> {
        let timestamp = now_rfc3339();
        let body = serde_json::to_vec(&wire::ConditionRequest {
            condition,
            timestamp: &timestamp,
        })
        .expect("condition requests serialize");
        let path = execution_path(caller, "condition");
        expect_success(
            self.call(Method::POST, &path, Some(caller), Some(body))
                .await?,
        )
        .map(drop)
    }

    pub(super) async fn get_variable(
        &self,
        caller: &Claims,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredVariable>, BackendError> {
        let answer = match self
            .call(
                Method::GET,
                &variable_path(user_id, key),
                Some(caller),
                None,
            )
            .await
        {
            Ok(answer) if answer.status == StatusCode::NOT_FOUND => return Ok(None),
            other => expect_success(other?)?,
        };
        let variable = wire::BackendVariable::parse(&answer.body)
            .map_err(|e| BackendError::InvalidResponse(e.to_string()))?;
        if variable.value.is_null() {
            return Ok(None);
        }
        Ok(Some(StoredVariable {
            key: variable.key.clone().unwrap_or_else(|| key.to_owned()),
            value: variable.value.to_string(),
            updated_at: variable.updated_at_text(),
        }))
    }

    pub(super) async fn set_variable(
        &self,
        caller: &Claims,
        user_id: &str,
        key: &str,
        value: &serde_json::value::RawValue,
    ) -> Result<(), BackendError> {
        let body =
            serde_json::to_vec(&wire::VariablePut { value }).expect("variable writes serialize");
        let path = variable_path(user_id, key);
        expect_success(
            self.call(Method::PUT, &path, Some(caller), Some(body))
                .await?,
        )
        .map(drop)
    }

    pub(super) async fn delete_variable(
        &self,
        caller: &Claims,
        user_id: &str,
        key: &str,
    ) -> Result<bool, BackendError> {
        let path = variable_path(user_id, key);
        let answer = self.call(Method::DELETE, &path, Some(caller), None).await?;
        match answer.status {
            StatusCode::NOT_FOUND => Ok(false),
            // A backend without DELETE: a null value is how helpers delete.
            StatusCode::METHOD_NOT_ALLOWED => {
                let null =
                    serde_json::value::RawValue::from_string("null".into()).expect("null is JSON");
                self.set_variable(caller, user_id, key, &null)
                    .await
                    .map(|()| true)
            }
            _ => expect_success(answer).map(|_| true),
        }
    }

    pub(super) async fn get_tool_credentials(
        &self,
        caller: &Claims,
        user_id: &str,
        tool: &str,
    ) -> Result<Option<Value>, BackendError> {
        let path = rules::tool_credentials_path(user_id, tool);
        let answer = match self.call(Method::GET, &path, Some(caller), None).await {
            Ok(answer) if answer.status == StatusCode::NOT_FOUND => return Ok(None),
            other => expect_success(other?)?,
        };
        wire::ToolCredentials::parse(&answer.body)
            .map_err(|e| BackendError::InvalidResponse(e.to_string()))
    }

    pub(super) async fn execute_tool(
        &self,
        caller: &Claims,
        user_id: &str,
        tool: &str,
        action: &str,
        params: &serde_json::value::RawValue,
        idempotency_key: Option<&str>,
    ) -> Result<Value, BackendError> {
        let body = serde_json::to_vec(&wire::ToolExecuteRequest {
            execution_id: &caller.execution_id,
            user_id,
            tool,
            action,
            params,
        })
        .expect("tool requests serialize");
        let mut request = self.request(
            &Method::POST,
            rules::TOOLS_EXECUTE_PATH,
            Some(caller),
            Some(Bytes::from(body)),
        )?;
        if let Some(key) = idempotency_key {
            let value = HeaderValue::from_str(key).map_err(|_| BackendError::Rejected {
                status: 400,
                message: "the Idempotency-Key is not a valid header value".into(),
            })?;
            request
                .headers_mut()
                .insert(rules::IDEMPOTENCY_KEY_HEADER, value);
        }
        // One attempt, as `call` makes of every POST.
        let answer = tokio::time::timeout(self.timeout, self.send(request))
            .await
            .map_err(|_| BackendError::Timeout)??;
        let answer = expect_success(answer)?;
        serde_json::from_slice::<wire::ToolExecuteAnswer>(&answer.body)
            .map(|a| a.data)
            .map_err(|e| BackendError::InvalidResponse(e.to_string()))
    }

    pub(super) async fn record_audit(&self, event: &AuditRecord) -> Result<(), BackendError> {
        let body = event.to_json().into_bytes();
        expect_success(
            self.call(Method::POST, rules::AUDIT_PATH, None, Some(body))
                .await?,
        )
        .map(drop)
    }

    /// One call, with retries when it is idempotent (`GET`, `PUT`,
    /// `DELETE`), all within
    /// the configured timeout.
    async fn call(
        &self,
        method: Method,
        path: &str,
        caller: Option<&Claims>,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, BackendError> {
        let attempts = if method == Method::GET {
            rules::IDEMPOTENT_ATTEMPTS
        } else {
            1
        };
        let body = body.map(Bytes::from);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut last = BackendError::Timeout;
        for attempt in 0..attempts {
            if attempt > 0 {
                let pause = rules::retry_pause(attempt);
                if tokio::time::Instant::now() + pause >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let request = self.request(&method, path, caller, body.clone())?;
            let outcome = tokio::time::timeout_at(deadline, self.send(request)).await;
            match outcome {
                Err(_) => return Err(BackendError::Timeout),
                Ok(Ok(answer))
                    if rules::retryable(answer.status.as_u16()) && attempt + 1 < attempts =>
                {
                    last = status_error(&answer);
                }
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(error)) => last = error,
            }
        }
        Err(last)
    }

    fn request(
        &self,
        method: &Method,
        path: &str,
        caller: Option<&Claims>,
        body: Option<Bytes>,
    ) -> Result<Request<Full<Bytes>>, BackendError> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("{}{}", self.base, path))
            .header("accept", "application/json");
        if let Some(auth) = &self.authorization {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        if let Some(caller) = caller {
            let headers =
                rules::caller_headers(&caller.execution_id, caller.capability_token.as_deref());
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
        }
        builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|_| {
                BackendError::InvalidResponse("could not build the backend request".into())
            })
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Answer, BackendError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| BackendError::Unavailable(connect_error(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), rules::MAX_RESPONSE)
            .collect()
            .await
            .map_err(|_| {
                BackendError::InvalidResponse("could not read the backend's answer".into())
            })?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

/// Passes a 2xx answer; anything else (a `{"success":false}` body too)
/// becomes the rules' error.
fn expect_success(answer: Answer) -> Result<Answer, BackendError> {
    rules::check_answer(answer.status.as_u16(), &answer.body).map(|()| answer)
}

fn status_error(answer: &Answer) -> BackendError {
    rules::status_failure(answer.status.as_u16(), &answer.body)
}

/// A connection failure, described without the backend's address. A TLS
/// failure (an unverifiable certificate, most often) is also logged.
fn connect_error(error: &hyper_util::client::legacy::Error) -> String {
    if let Some(tls) = tls_cause(error) {
        tracing::warn!(error = %tls, "TLS with the backend failed");
        return "cannot connect to the backend securely".into();
    }
    if error.is_connect() {
        "cannot connect to the backend".into()
    } else {
        "the connection to the backend failed".into()
    }
}

/// The rustls error somewhere in `error`'s chain. tokio-rustls and
/// hyper-rustls pass it on inside (nested) `io::Error`s, whose `source`
/// skips the error they wrap, so those are looked into.
fn tls_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// `/api/internal/executions/{id}/{operation}` for the caller's execution.
fn execution_path(caller: &Claims, operation: &str) -> String {
    rules::execution_path(&caller.execution_id, operation)
}

fn variable_path(user_id: &str, key: &str) -> String {
    rules::variable_path(user_id, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::backend::encode_segment;

    #[test]
    fn a_tls_error_is_found_inside_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::other(std::io::Error::other(tls.clone()));
        assert_eq!(tls_cause(&wrapped), Some(&tls));
        assert_eq!(tls_cause(&std::io::Error::other("refused")), None);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("exec-1_x.y~"), "exec-1_x.y~");
    }

    #[test]
    fn a_success_false_body_is_a_refusal_with_the_backends_error() {
        let answer = Answer {
            status: StatusCode::OK,
            body: Bytes::from_static(br#"{"success":false,"error":"slack said no"}"#),
        };
        assert_eq!(
            expect_success(answer).err(),
            Some(BackendError::Rejected {
                status: 502,
                message: "slack said no".into()
            })
        );
    }

    #[test]
    fn statuses_map_to_errors() {
        let answer = |status: u16| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: Bytes::new(),
        };
        assert_eq!(status_error(&answer(404)), BackendError::NotFound);
        assert!(matches!(
            status_error(&answer(503)),
            BackendError::Unavailable(_)
        ));
        assert!(matches!(
            status_error(&answer(403)),
            BackendError::Rejected { status: 403, .. }
        ));
    }
}
