//! Prometheus metrics, served at `/metrics` in the Prometheus text format
//! (version 0.0.4) by the `prometheus-client` crate: requests by route and
//! status, latency histograms, component instantiation time, cache hit
//! ratio, backend latency and errors, the audit backlog, rate-limit and
//! revocation decisions.
//!
//! Counters and histograms are the crate's atomics; the values kept
//! elsewhere (audit statistics, in-flight requests, ...) are read when
//! rendering ([`Gauges`]). A leaf: it knows labels, not the modules that
//! count.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram (seconds, [`BUCKETS`]).
#[derive(Clone, Debug)]
pub struct Histogram(prometheus_client::metrics::histogram::Histogram);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(buckets())
    }
}

/// A histogram with the latency [`BUCKETS`].
fn buckets() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(BUCKETS)
}

/// A family of latency histograms.
type Histograms<S> = Family<
    S,
    prometheus_client::metrics::histogram::Histogram,
    fn() -> prometheus_client::metrics::histogram::Histogram,
>;

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        self.0.observe(elapsed.as_secs_f64());
    }
}

/// The routes requests are counted under.
pub const ROUTES: [&str; 9] = [
    "health",
    "ready",
    "metrics",
    "openapi",
    "executions",
    "variables",
    "tool-actions",
    "batch",
    "unknown",
];

/// The labels of a request count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

/// The label of a request latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: &'static str,
}

/// The label of a cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Lookup {
    result: &'static str,
}

/// The label of a failed backend call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorKind {
    kind: &'static str,
}

/// The labels of a tool call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolOutcome {
    tool: String,
    outcome: &'static str,
}

/// Every metric of one host.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    /// Requests served inside batches, by route and status.
    batched: Family<RouteStatus, Counter>,
    latency: Histograms<Route>,
    /// Time to instantiate a component for a request.
    pub instantiation: Histogram,
    /// Requests served by a warm instance instead of a new one.
    pub instances_reused: Counter,
    /// Cache reads by components that found a value.
    pub cache_hits: Counter,
    /// Cache reads by components that found nothing.
    pub cache_misses: Counter,
    /// Cache reads by components that failed.
    pub cache_errors: Counter,
    /// Time of calls to the Cronium backend.
    pub backend_latency: Histogram,
    backend_errors: Family<ErrorKind, Counter>,
    /// Requests refused by a rate limit.
    pub rate_limited: Counter,
    /// Requests refused because too many were in flight.
    pub rejected_overload: Counter,
    /// (tool id, outcome) -> calls.
    tool_calls: Family<ToolOutcome, Counter>,
    /// The values read from elsewhere, as of the rendering under way.
    gauges: Arc<GaugeCollector>,
    /// Held while rendering: one rendering at a time, so that each shows
    /// its own gauges.
    rendering: Mutex<()>,
}

/// Values kept elsewhere, read when rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Audit events waiting for delivery (queue and spool).
    pub audit_backlog: u64,
    /// Audit events delivered (a counter).
    pub audit_delivered: u64,
    /// Audit events spooled (a counter).
    pub audit_spooled: u64,
    /// Audit events handed over to the shared spool in Valkey at a stop
    /// (a counter).
    pub audit_handed_over: u64,
    /// Audit events lost (a counter).
    pub audit_lost: u64,
    /// Requests let through without a revocation check (a counter).
    pub revocation_unchecked: u64,
    /// 1 while revocations are pushed to this host (no query per request).
    pub revocation_watch_live: u64,
    /// Requests being answered now.
    pub in_flight: u64,
    /// Instances kept for further requests with the same credential.
    pub warm_instances: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "cronium_requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        let batched = Family::<RouteStatus, Counter>::default();
        registry.register(
            "cronium_batched_requests",
            "Requests served inside batches (each batch also counts once as a request), by route and status",
            batched.clone(),
        );
        let latency: Histograms<Route> = Family::new_with_constructor(buckets);
        // Every route is shown, requested or not.
        for route in ROUTES {
            drop(latency.get_or_create(&Route { route }));
        }
        registry.register(
            "cronium_request_duration_seconds",
            "Time to answer a request, by route",
            latency.clone(),
        );
        let instantiation = Histogram::default();
        registry.register(
            "cronium_component_instantiation_seconds",
            "Time to instantiate a component for a request",
            instantiation.0.clone(),
        );
        let instances_reused = Counter::default();
        registry.register(
            "cronium_component_instances_reused",
            "Requests served by a warm instance (CRONIUM_INSTANCE_REUSE)",
            instances_reused.clone(),
        );
        let lookups = Family::<Lookup, Counter>::default();
        let [cache_hits, cache_misses, cache_errors] =
            ["hit", "miss", "error"].map(|result| lookups.get_or_create_owned(&Lookup { result }));
        registry.register(
            "cronium_cache_lookups",
            "Cache reads by components, by result",
            lookups,
        );
        let backend_latency = Histogram::default();
        registry.register(
            "cronium_backend_request_duration_seconds",
            "Time of calls to the Cronium backend",
            backend_latency.0.clone(),
        );
        let backend_errors = Family::<ErrorKind, Counter>::default();
        registry.register(
            "cronium_backend_errors",
            "Failed calls to the Cronium backend, by kind",
            backend_errors.clone(),
        );
        let tool_calls = Family::<ToolOutcome, Counter>::default();
        registry.register(
            "cronium_tool_calls",
            "Tool calls run in this host, by tool and outcome",
            tool_calls.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "cronium_rate_limited",
            "Requests refused by a rate limit",
            rate_limited.clone(),
        );
        let rejected_overload = Counter::default();
        registry.register(
            "cronium_overload_rejected",
            "Requests refused because too many were in flight",
            rejected_overload.clone(),
        );
        let gauges = Arc::new(GaugeCollector::default());
        registry.register_collector(Box::new(gauges.clone()));
        Metrics {
            registry,
            requests,
            batched,
            latency,
            instantiation,
            instances_reused,
            cache_hits,
            cache_misses,
            cache_errors,
            backend_latency,
            backend_errors,
            rate_limited,
            rejected_overload,
            tool_calls,
            gauges,
            rendering: Mutex::new(()),
        }
    }
}

impl Metrics {
    /// Counts a request to `route` answered with `status` after `elapsed`.
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        let route = ROUTES
            .iter()
            .find(|r| **r == route)
            .unwrap_or(&ROUTES[ROUTES.len() - 1]);
        self.latency
            .get_or_create(&Route { route })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
    }

    /// Counts a request of a batch to `route`, answered with `status`.
    pub fn batched(&self, route: &'static str, status: u16) {
        self.batched
            .get_or_create(&RouteStatus { route, status })
            .inc();
    }

    /// Counts a failed backend call of `kind`.
    pub fn backend_error(&self, kind: &'static str) {
        self.backend_errors.get_or_create(&ErrorKind { kind }).inc();
    }

    /// Counts a tool call and how it ended (`outcome`, a label such as
    /// `ok` or `timed_out`).
    pub fn tool_call(&self, tool: &str, outcome: &'static str) {
        self.tool_calls
            .get_or_create(&ToolOutcome {
                tool: tool.to_owned(),
                outcome,
            })
            .inc();
    }

    /// The text exposition of every metric, `gauges` included.
    pub fn render(&self, gauges: &Gauges) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        *self.gauges.lock() = *gauges;
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The values of [`Gauges`], as metrics: set for the rendering under
/// way, read by the registry while it encodes.
#[derive(Debug, Default)]
struct GaugeCollector(Mutex<Gauges>);

impl GaugeCollector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Gauges> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Collector for GaugeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = *self.lock();
        let counters = [
            (
                "cronium_audit_delivered",
                "Audit events delivered to the backend.",
                gauges.audit_delivered,
            ),
            (
                "cronium_audit_spooled",
                "Audit events written to the local spool while the backend was unreachable.",
                gauges.audit_spooled,
            ),
            (
                "cronium_audit_handed_over",
                "Audit events handed over to the shared spool in Valkey when the host stopped.",
                gauges.audit_handed_over,
            ),
            (
                "cronium_audit_lost",
                "Audit events that could not be kept.",
                gauges.audit_lost,
            ),
            (
                "cronium_revocation_unchecked",
                "Requests let through without a revocation check (Valkey down).",
                gauges.revocation_unchecked,
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        let gauges = [
            (
                "cronium_audit_backlog",
                "Audit events waiting for delivery (queue and spool).",
                gauges.audit_backlog,
            ),
            (
                "cronium_revocation_watch_live",
                "Whether Valkey pushes revocations to this host (1), so that warm requests make no round trip.",
                gauges.revocation_watch_live,
            ),
            (
                "cronium_requests_in_flight",
                "Requests being answered now.",
                gauges.in_flight,
            ),
            (
                "cronium_component_instances_warm",
                "Instances kept for further requests with the same credential.",
                gauges.warm_instances,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counted() {
        let m = Metrics::default();
        m.request("executions", 200, Duration::from_micros(300));
        m.request("executions", 200, Duration::from_millis(30));
        m.request("nope", 404, Duration::from_micros(10));
        m.batched("variables", 412);
        let text = m.render(&Gauges::default());
        assert!(text.contains("cronium_requests_total{route=\"executions\",status=\"200\"} 2"));
        assert!(text.contains("cronium_requests_total{route=\"unknown\",status=\"404\"} 1"));
        assert!(
            text.contains("cronium_batched_requests_total{route=\"variables\",status=\"412\"} 1")
        );
        assert!(text.contains(
            "cronium_request_duration_seconds_bucket{route=\"executions\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "cronium_request_duration_seconds_bucket{route=\"executions\",le=\"0.05\"} 2"
        ));
        assert!(text.contains("cronium_request_duration_seconds_count{route=\"executions\"} 2"));
    }

    #[test]
    fn every_metric_keeps_its_name_type_and_help() {
        let m = Metrics::default();
        m.request("health", 200, Duration::from_micros(5));
        m.instances_reused.inc();
        m.rate_limited.inc();
        m.backend_error("timeout");
        m.tool_call("slack", "ok");
        let text = m.render(&Gauges {
            audit_backlog: 3,
            audit_lost: 2,
            ..Gauges::default()
        });
        for line in [
            "# HELP cronium_requests_total Requests answered, by route and status.",
            "# TYPE cronium_requests_total counter",
            "# TYPE cronium_request_duration_seconds histogram",
            "cronium_request_duration_seconds_count{route=\"health\"} 1",
            "cronium_request_duration_seconds_count{route=\"batch\"} 0",
            "cronium_component_instantiation_seconds_count 0",
            "\ncronium_component_instances_reused_total 1\n",
            "cronium_cache_lookups_total{result=\"hit\"} 0",
            "cronium_cache_lookups_total{result=\"miss\"} 0",
            "cronium_cache_lookups_total{result=\"error\"} 0",
            "cronium_backend_request_duration_seconds_count 0",
            "cronium_backend_errors_total{kind=\"timeout\"} 1",
            "cronium_tool_calls_total{tool=\"slack\",outcome=\"ok\"} 1",
            "\ncronium_rate_limited_total 1\n",
            "\ncronium_overload_rejected_total 0\n",
            "# TYPE cronium_audit_lost_total counter",
            "\ncronium_audit_lost_total 2\n",
            "\ncronium_audit_delivered_total 0\n",
            "\ncronium_audit_spooled_total 0\n",
            "\ncronium_revocation_unchecked_total 0\n",
            "# HELP cronium_audit_backlog Audit events waiting for delivery (queue and spool).",
            "# TYPE cronium_audit_backlog gauge",
            "\ncronium_audit_backlog 3\n",
            "\ncronium_revocation_watch_live 0\n",
            "\ncronium_requests_in_flight 0\n",
            "\ncronium_component_instances_warm 0\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }
}
