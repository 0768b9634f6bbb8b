//! The HTTP backend: the Cronium backend's internal API at `BACKEND_URL`
//! (`http://`, or `https://` verified against the roots of
//! [`super::trust`]), through one pooled keep-alive client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cronium_rules::backend as rules;
use cronium_rules::backend::protocol as machines;
use cronium_rules::protocol::{
    self, HttpReply, HttpRequest, HttpResponse, Machine, Now, TransportError,
};
use cronium_rules::token::Claims;
use cronium_rules::wire::{Execution, TokenFacts};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{AuditRecord, BackendError, BackendHealth, StoredVariable, now_rfc3339, trust};

/// The execution `/ready` asks the backend for: none has this id, so the
/// answer is 404 from a backend that takes our token.
const READY_PROBE_EXECUTION: &str = "cronium-ready-probe";
use crate::config::BackendConfig;
use crate::drive::{self, Clock, Io};

/// Why the backend client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BackendSetupError {
    /// rustls refused the client configuration.
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A client of the Cronium backend's internal API: pooled keep-alive
/// connections, each call a machine of `cronium_rules::backend::protocol`
/// (its requests, retries of idempotent calls, the reading of answers)
/// driven by [`crate::drive`].
/// Every call (audit delivery and `/ready`'s ping too) goes through its one
/// client, which speaks `http://` and verified `https://`.
pub struct HttpBackend {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    /// The bearer token and the budget of one call, as the machines of
    /// [`machines`] read them.
    rules: machines::Client,
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
        Ok(HttpBackend {
            client,
            base: config.url.clone(),
            rules: machines::Client {
                token: config.token.clone(),
                timeout: config.timeout,
            },
        })
    }

    /// Whether the backend answers, and takes the runtime's token: a read
    /// of an execution that does not exist, which the Cronium app (like
    /// the contract's backend) answers 401 without the right token and 404
    /// with it. A refusal is logged with the setting to check.
    pub(super) async fn health(&self) -> BackendHealth {
        let request = HttpRequest {
            method: protocol::Method::Get,
            path: rules::execution_path(READY_PROBE_EXECUTION, "context"),
            headers: rules::authorization(&self.rules.token)
                .map(|bearer| ("authorization".to_owned(), bearer))
                .into_iter()
                .collect(),
            body: None,
            timeout: Duration::from_secs(2),
        };
        match self.send(request).await {
            Ok(answer) if matches!(answer.status, 401 | 403) => {
                tracing::warn!(
                    status = answer.status,
                    "{}",
                    BackendError::CredentialsRefused(answer.status)
                );
                BackendHealth::CredentialsRefused
            }
            Ok(answer) if answer.status < 500 => BackendHealth::Ok,
            _ => BackendHealth::Unreachable,
        }
    }

    /// Drives `machine` (one of [`machines`]) on this client.
    async fn drive<M: Machine<Request = HttpRequest, Reply = HttpReply>>(
        &self,
        machine: M,
    ) -> M::Output {
        drive::drive(
            machine,
            &mut Transport {
                backend: self,
                clock: Clock::start(),
            },
        )
        .await
    }

    pub(super) async fn get_execution(
        &self,
        caller: &Claims,
        token: TokenFacts,
    ) -> Result<Execution, BackendError> {
        self.drive(machines::get_execution(
            &self.rules,
            &machine_caller(caller),
            token,
        ))
        .await
    }

    pub(super) async fn set_output(
        &self,
        caller: &Claims,
        output: &serde_json::value::RawValue,
    ) -> Result<(), BackendError> {
        self.drive(machines::set_output(
            &self.rules,
            &machine_caller(caller),
            output,
            &now_rfc3339(),
        ))
        .await
    }

    pub(super) async fn set_condition(
        &self,
        caller: &Claims,
        condition: bool,
    ) -> Result<(), BackendError> {
        self.drive(machines::set_condition(
            &self.rules,
            &machine_caller(caller),
            condition,
            &now_rfc3339(),
        ))
        .await
    }

    pub(super) async fn get_variable(
        &self,
        caller: &Claims,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredVariable>, BackendError> {
        let variable = self
            .drive(machines::get_variable(
                &self.rules,
                &machine_caller(caller),
                user_id,
                key,
            ))
            .await?;
        Ok(variable.map(|v| StoredVariable {
            key: v.key,
            value: v.value,
            updated_at: v.updated_at,
        }))
    }

    pub(super) async fn set_variable(
        &self,
        caller: &Claims,
        user_id: &str,
        key: &str,
        value: &serde_json::value::RawValue,
    ) -> Result<(), BackendError> {
        self.drive(machines::set_variable(
            &self.rules,
            &machine_caller(caller),
            user_id,
            key,
            value,
        ))
        .await
    }

    pub(super) async fn delete_variable(
        &self,
        caller: &Claims,
        user_id: &str,
        key: &str,
    ) -> Result<bool, BackendError> {
        self.drive(machines::DeleteVariable::new(
            &self.rules,
            &machine_caller(caller),
            user_id,
            key,
        ))
        .await
    }

    pub(super) async fn get_tool_credentials(
        &self,
        caller: &Claims,
        user_id: &str,
        tool: &str,
    ) -> Result<Option<Value>, BackendError> {
        self.drive(machines::get_tool_credentials(
            &self.rules,
            &machine_caller(caller),
            user_id,
            tool,
        ))
        .await
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
        self.drive(machines::execute_tool(
            &self.rules,
            &machine_caller(caller),
            user_id,
            tool,
            action,
            params,
            idempotency_key,
        ))
        .await
    }

    pub(super) async fn record_audit(&self, event: &AuditRecord) -> Result<(), BackendError> {
        self.drive(machines::record_audit(
            &self.rules,
            event.to_json().into_bytes(),
        ))
        .await
    }

    /// One attempt of `request` on the pooled client, within its timeout.
    async fn send(&self, request: HttpRequest) -> HttpReply {
        let timeout = request.timeout;
        let request = self.request(request)?;
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .map_err(|_| TransportError::TimedOut)?
    }

    /// `request` as hyper sends it: the backend's base URL before its
    /// path, JSON `accept` (and `content-type` with a body), the bearer
    /// token marked sensitive.
    fn request(&self, request: HttpRequest) -> Result<Request<Full<Bytes>>, TransportError> {
        let unbuildable =
            || TransportError::Unreadable("could not build the backend request".into());
        let method = match request.method {
            protocol::Method::Get => Method::GET,
            protocol::Method::Post => Method::POST,
            protocol::Method::Put => Method::PUT,
            protocol::Method::Delete => Method::DELETE,
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, request.path))
            .header("accept", "application/json");
        if request.body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in &request.headers {
            let mut value = HeaderValue::from_str(value).map_err(|_| unbuildable())?;
            if name.eq_ignore_ascii_case(AUTHORIZATION.as_str()) {
                value.set_sensitive(true);
            }
            builder = builder.header(name.as_str(), value);
        }
        builder
            .body(Full::new(request.body.map(Bytes::from).unwrap_or_default()))
            .map_err(|_| unbuildable())
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> HttpReply {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| TransportError::Failed(connect_error(&e)))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), rules::MAX_RESPONSE)
            .collect()
            .await
            .map_err(|_| TransportError::Unreadable("could not read the backend's answer".into()))?
            .to_bytes();
        Ok(HttpResponse {
            status,
            body: body.to_vec(),
        })
    }
}

/// The pooled client as the transport of the backend machines, on
/// tokio's clock.
struct Transport<'a> {
    backend: &'a HttpBackend,
    clock: Clock,
}

impl Io<HttpRequest, HttpReply> for Transport<'_> {
    fn send(&mut self, request: HttpRequest) -> impl Future<Output = HttpReply> + Send {
        self.backend.send(request)
    }

    fn sleep(&mut self, pause: Duration) -> impl Future<Output = ()> + Send {
        let clock = self.clock;
        async move { clock.sleep(pause).await }
    }

    fn now(&mut self) -> Now {
        self.clock.now()
    }
}

/// The verified caller as the machines name it.
fn machine_caller(caller: &Claims) -> machines::Caller {
    machines::Caller {
        execution_id: caller.execution_id.clone(),
        capability: caller.capability_token.clone(),
    }
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
        assert_eq!(
            rules::check_answer(200, br#"{"success":false,"error":"slack said no"}"#).err(),
            Some(BackendError::Rejected {
                status: 502,
                message: "slack said no".into()
            })
        );
    }

    #[test]
    fn statuses_map_to_errors() {
        assert_eq!(rules::status_failure(404, b""), BackendError::NotFound);
        assert!(matches!(
            rules::status_failure(503, b""),
            BackendError::Unavailable(_)
        ));
        assert_eq!(
            rules::status_failure(403, b""),
            BackendError::CredentialsRefused(403)
        );
        assert!(matches!(
            rules::status_failure(409, b""),
            BackendError::Rejected { status: 409, .. }
        ));
    }
}
