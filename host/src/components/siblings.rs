//! Where an endpoint component's outgoing `wasi:http` requests go.
//!
//! Nowhere, for every group but one: endpoint components reach the world
//! through their capabilities. The batch component sends each request of a
//! batch to the group that serves it at `http://<group>.spin.internal`,
//! the address Spin answers by service chaining; here the same request is
//! served in process, without a socket, by that group's component through
//! [`Inner::call`]: the same body cap, a warm instance of the same
//! credential or a new one, the same deadline and failure handling as a
//! request from the network. Anything else the batch component asks for
//! (another host, a path its group does not serve, a batch) is refused.
//!
//! Each request of a batch gets the request deadline, or what is left of
//! the batch's own less a margin for writing the answer, whichever is
//! shorter: a request that would run past the batch's deadline answers 504
//! inside the batch, and the batch still answers.

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cronium_rules::limits::body_max_for_path;
use cronium_rules::routes::group_for_path;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::{Group, Inner};
use crate::error::ApiError;

/// The most of a batch's remaining time kept back for writing its answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// The outgoing `wasi:http` requests of one store.
pub(crate) enum Outgoing {
    /// Refused inside the host (`HTTP-request-denied` in the guest).
    Denied,
    /// The batch component's: to its sibling groups, in process.
    Siblings(Siblings),
}

/// What a batch's requests to its sibling groups are served with.
#[derive(Clone)]
pub(crate) struct Siblings {
    /// Weak: a warm batch instance must not keep the components alive.
    components: Weak<Inner>,
    /// The client's address, as the batch's own request had it.
    peer: Option<IpAddr>,
    /// When the batch's own call runs out of time.
    deadline: Instant,
}

impl Outgoing {
    /// The outgoing requests of a store serving `group` for `peer` within
    /// `timeout`.
    pub(crate) fn for_group(
        group: Group,
        components: &Arc<Inner>,
        peer: Option<IpAddr>,
        timeout: Duration,
    ) -> Outgoing {
        match group {
            Group::Batch => Outgoing::Siblings(Siblings {
                components: Arc::downgrade(components),
                peer,
                deadline: Instant::now() + timeout,
            }),
            _ => Outgoing::Denied,
        }
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    hyper::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

impl WasiHttpHooks for Outgoing {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        match self {
            Outgoing::Denied => {
                Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
            }
            Outgoing::Siblings(siblings) => Box::new(siblings.clone().serve(request)),
        }
    }
}

impl Siblings {
    /// Serves `request` with the sibling group it is addressed to.
    async fn serve(self, request: hyper::Request<WasiBody>) -> SendResult {
        let Some(components) = self.components.upgrade() else {
            return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
        };
        let Some(group) = sibling(request.uri()) else {
            tracing::warn!(
                authority = request.uri().authority().map_or("", |a| a.as_str()),
                "the batch component asked for something other than a sibling group's route"
            );
            return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
        };
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let limit = body_max_for_path(&path);
        let answer = match read_capped(body, limit).await {
            Err(error) => {
                tracing::warn!(%error, "a batch request's body could not be read");
                ApiError::bad_request("could not read the request body").into_response()
            }
            Ok(None) => ApiError::payload_too_large(limit).into_response(),
            Ok(Some(body)) => {
                // Origin-form, as requests from the network arrive.
                parts.uri = parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
                let left = self.deadline.saturating_duration_since(Instant::now());
                let timeout = components
                    .timeout
                    .min(left.saturating_sub(ANSWER_MARGIN.min(components.timeout / 10)));
                if timeout.is_zero() {
                    ApiError::deadline_exceeded().into_response()
                } else {
                    let request = Request::from_parts(parts, Full::new(body));
                    components
                        .call(group, request, self.peer, timeout)
                        .await
                        .unwrap_or_else(ApiError::into_response)
                }
            }
        };
        components
            .capabilities
            .metrics
            .batched(group.name(), answer.status().as_u16());
        tracing::debug!(
            group = group.name(),
            path,
            status = answer.status().as_u16(),
            "batch request"
        );
        Ok((
            answer.map(|body: Full<Bytes>| body.map_err(|never| match never {}).boxed_unsync()),
            Box::new(async { Ok(()) }),
        ))
    }
}

/// The group `uri` addresses, when it is a sibling the batch may reach:
/// `http://<group>.spin.internal` with a path of that very group, never
/// the batch group itself.
fn sibling(uri: &Uri) -> Option<Group> {
    if uri.scheme_str() != Some("http") || uri.port().is_some() {
        return None;
    }
    let name = uri.host()?.strip_suffix(".spin.internal")?;
    let group = Group::named(name).filter(|g| *g != Group::Batch)?;
    (group_for_path(uri.path()) == Some(group)).then_some(group)
}

/// The whole body, or `None` once it is over `limit` bytes.
async fn read_capped(
    mut body: WasiBody,
    limit: usize,
) -> Result<Option<Bytes>, wasmtime_wasi_http::Error> {
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if collected.len() + data.len() > limit {
                return Ok(None);
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(Some(collected.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    #[test]
    fn a_batch_reaches_each_group_at_its_own_routes_only() {
        assert_eq!(
            sibling(&uri("http://executions.spin.internal/executions/e/input")),
            Some(Group::Executions)
        );
        assert_eq!(
            sibling(&uri(
                "http://variables.spin.internal/executions/e/variables/a%2Fb?strict=true"
            )),
            Some(Group::Variables)
        );
        assert_eq!(
            sibling(&uri(
                "http://tool-actions.spin.internal/tool-actions/execute"
            )),
            Some(Group::ToolActions)
        );
        for refused in [
            // Another group's route, a route of none, a batch.
            "http://executions.spin.internal/executions/e/variables/k",
            "http://executions.spin.internal/health",
            "http://batch.spin.internal/executions/e/batch",
            // Anywhere else.
            "https://executions.spin.internal/executions/e/input",
            "http://executions.spin.internal:80/executions/e/input",
            "http://127.0.0.1/executions/e/input",
            "http://executions.example.com/executions/e/input",
            "http://webhook.spin.internal/",
        ] {
            assert_eq!(sibling(&uri(refused)), None, "{refused}");
        }
    }
}
