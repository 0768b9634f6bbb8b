//! Where a tool's outgoing HTTP requests may go.
//!
//! A request leaves the machine only if its host matches one the tool
//! declared *and* (when the operator narrowed the tool with
//! `CRONIUM_TOOL_ALLOWED_HOSTS`) one the operator allowed. Loopback,
//! private and link-local addresses are refused unless the operator named
//! that exact host, so a tool declaring `*` cannot reach Valkey, the
//! backend or a cloud metadata service. An operator's egress rule
//! (`CRONIUM_TOOL_EGRESS`) then sends the request elsewhere (a sandbox, a
//! proxy). Anything refused fails inside the tool with `HTTP-request-denied`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cronium_rules::tools::HostPattern;
use http_body_util::BodyExt;
use hyper::Uri;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::Origin;

mod pinned;

/// How long a tool's request may take to connect, and to start answering,
/// when the tool sets no limit of its own (the call's deadline bounds both).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request was refused (logged; the tool only sees "denied").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("only http and https are allowed")]
    Scheme,
    #[error("{0} is not among the hosts the tool declared")]
    Undeclared(String),
    #[error("{0} is not among the hosts the operator allows this tool")]
    NotAllowed(String),
    #[error("{0} is a loopback or private address the operator did not allow")]
    Private(String),
    #[error("{0} could not be resolved")]
    Unresolved(String),
}

/// The outbound rules of one tool.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    declared: Vec<HostPattern>,
    operator: Option<Vec<HostPattern>>,
    redirects: Arc<Vec<(Origin, Origin)>>,
}

/// Where an allowed request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To the host asked for, at one of the addresses that were checked
    /// (tried in order), never at a second DNS answer, which could differ
    /// from the first (DNS rebinding). HTTPS is verified against the
    /// host's name (SNI), whatever address it reached.
    Direct { pinned: Vec<SocketAddr> },
    /// To the operator's replacement origin.
    Redirect(Origin),
}

impl EgressPolicy {
    /// Rules for a tool that declared `declared`, narrowed by the
    /// operator's `operator` list when there is one.
    pub fn new(
        declared: Vec<HostPattern>,
        operator: Option<Vec<HostPattern>>,
        redirects: Arc<Vec<(Origin, Origin)>>,
    ) -> Self {
        EgressPolicy {
            declared,
            operator,
            redirects,
        }
    }

    /// Refuses everything (a tool describing itself needs no network).
    pub fn deny_all() -> Self {
        EgressPolicy::new(Vec::new(), None, Arc::default())
    }

    /// Decides where a request to `uri` goes, if anywhere.
    pub async fn route(&self, uri: &Uri) -> Result<Route, Denied> {
        let (scheme, default_port) = match uri.scheme_str() {
            Some("http") => ("http", 80),
            Some("https") => ("https", 443),
            _ => return Err(Denied::Scheme),
        };
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(default_port);
        let origin = format!("{scheme}://{host}:{port}");
        if !self.declared.iter().any(|p| p.matches(&host, port)) {
            return Err(Denied::Undeclared(origin));
        }
        if let Some(allowed) = &self.operator
            && !allowed.iter().any(|p| p.matches(&host, port))
        {
            return Err(Denied::NotAllowed(origin));
        }
        if let Some((_, to)) = self
            .redirects
            .iter()
            .find(|(from, _)| from.scheme == scheme && from.host == host && from.port == port)
        {
            return Ok(Route::Redirect(to.clone()));
        }
        let named_by_operator = self
            .operator
            .iter()
            .flatten()
            .any(|p| p.is_exact() && p.matches(&host, port));
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let lookup = tokio::net::lookup_host((literal, port));
                match tokio::time::timeout(CONNECT_TIMEOUT, lookup).await {
                    Ok(Ok(found)) => found.collect(),
                    _ => return Err(Denied::Unresolved(origin)),
                }
            }
        };
        if addresses.is_empty() {
            return Err(Denied::Unresolved(origin));
        }
        if !named_by_operator && addresses.iter().any(|a| !is_public(a.ip())) {
            return Err(Denied::Private(origin));
        }
        Ok(Route::Direct { pinned: addresses })
    }
}

/// Whether `ip` is an ordinary Internet address (not loopback, private,
/// link-local, shared, unspecified, multicast or broadcast).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // 100.64.0.0/10, carrier-grade NAT.
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The `wasi:http` hooks of a tool's store: every outgoing request goes
/// through its [`EgressPolicy`].
pub struct ToolEgress {
    /// The tool's id, for the log.
    pub tool: Arc<str>,
    pub policy: Arc<EgressPolicy>,
}

type SendResult = wasmtime_wasi_http::Result<(
    hyper::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

impl WasiHttpHooks for ToolEgress {
    fn send_request(
        &mut self,
        mut request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let policy = self.policy.clone();
        let tool = self.tool.clone();
        Box::new(async move {
            let route = match policy.route(request.uri()).await {
                Ok(route) => route,
                Err(denied) => {
                    // The origin only: paths and queries may hold secrets
                    // (a Slack webhook URL is one).
                    tracing::warn!(tool = %tool, reason = %denied, "tool request refused");
                    return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
                }
            };
            if let Route::Redirect(to) = &route {
                let path = request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
                    .to_owned();
                *request.uri_mut() = Uri::builder()
                    .scheme(to.scheme.as_str())
                    .authority(to.authority())
                    .path_and_query(path)
                    .build()
                    .map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?;
            }
            let mut options = options.unwrap_or_default();
            options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
            options.first_byte_timeout.get_or_insert(FIRST_BYTE_TIMEOUT);
            match route {
                Route::Direct { pinned } => pinned::send(request, &pinned, options).await,
                // The operator's own destination: resolved as configured.
                Route::Redirect(_) => {
                    let (response, io) =
                        wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                    Ok((
                        response.map(BodyExt::boxed_unsync),
                        Box::new(io) as Box<dyn Future<Output = _> + Send>,
                    ))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<HostPattern> {
        list.iter()
            .map(|p| HostPattern::parse(p).unwrap())
            .collect()
    }

    fn policy(declared: &[&str], operator: Option<&[&str]>) -> EgressPolicy {
        EgressPolicy::new(patterns(declared), operator.map(patterns), Arc::default())
    }

    async fn route(policy: &EgressPolicy, uri: &str) -> Result<Route, Denied> {
        policy.route(&uri.parse().unwrap()).await
    }

    #[tokio::test]
    async fn a_tool_reaches_only_the_hosts_it_declared() {
        let slack = policy(&["hooks.slack.com"], None);
        assert!(matches!(
            route(&slack, "https://example.com/x").await,
            Err(Denied::Undeclared(_))
        ));
        assert!(matches!(
            route(&slack, "ftp://hooks.slack.com/").await,
            Err(Denied::Scheme)
        ));
    }

    #[tokio::test]
    async fn the_operator_narrows_and_only_names_open_private_addresses() {
        let open = policy(&["*"], None);
        for private in [
            "http://127.0.0.1:6379/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(
                matches!(route(&open, private).await, Err(Denied::Private(_))),
                "{private}"
            );
        }
        let narrowed = policy(&["*"], Some(&["127.0.0.1:8080"]));
        assert_eq!(
            route(&narrowed, "http://127.0.0.1:8080/hook").await,
            Ok(Route::Direct {
                pinned: vec!["127.0.0.1:8080".parse().unwrap()]
            })
        );
        assert!(matches!(
            route(&narrowed, "http://127.0.0.1:6379/").await,
            Err(Denied::NotAllowed(_))
        ));
        let wildcard = policy(&["*"], Some(&["*"]));
        assert!(matches!(
            route(&wildcard, "http://127.0.0.1/").await,
            Err(Denied::Private(_))
        ));
    }

    #[tokio::test]
    async fn egress_rules_redirect_declared_origins() {
        let to = Origin::parse("http://127.0.0.1:9001").unwrap();
        let redirects = Arc::new(vec![(
            Origin::parse("https://hooks.slack.com").unwrap(),
            to.clone(),
        )]);
        let slack = EgressPolicy::new(patterns(&["hooks.slack.com"]), None, redirects);
        assert_eq!(
            route(&slack, "https://hooks.slack.com/services/T/B/secret").await,
            Ok(Route::Redirect(to))
        );
    }

    #[test]
    fn public_addresses_are_told_from_internal_ones() {
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for internal in [
            "0.0.0.0",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
    }
}
