//! Prometheus metrics, served at `/metrics` in the text exposition
//! format: requests by route and status, latency histograms, component
//! instantiation time, cache hit ratio, backend latency and errors, the
//! audit backlog, rate-limit and revocation decisions.
//!
//! Plain atomics and one small map; recording never allocates on the hot
//! path except for a first-seen (route, status) pair.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
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

/// Every metric of one host.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Requests served inside batches, by route and status.
    batched: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: [Histogram; ROUTES.len()],
    pub instantiation: Histogram,
    /// Requests served by a warm instance instead of a new one.
    pub instances_reused: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_errors: AtomicU64,
    pub backend_latency: Histogram,
    backend_errors: Mutex<BTreeMap<&'static str, u64>>,
    pub rate_limited: AtomicU64,
    pub rejected_overload: AtomicU64,
    /// (tool id, outcome) -> calls.
    tool_calls: Mutex<BTreeMap<(String, &'static str), u64>>,
}

/// Gauges read from elsewhere when rendering.
pub struct Gauges {
    pub audit_backlog: u64,
    pub audit_delivered: u64,
    pub audit_spooled: u64,
    pub audit_lost: u64,
    pub revocation_unchecked: u64,
    /// 1 while revocations are pushed to this host (no query per request).
    pub revocation_watch_live: u64,
    pub in_flight: u64,
    pub warm_instances: u64,
}

impl Metrics {
    /// Counts a request to `route` answered with `status` after `elapsed`.
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        let index = ROUTES
            .iter()
            .position(|r| *r == route)
            .unwrap_or(ROUTES.len() - 1);
        self.latency[index].observe(elapsed);
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((ROUTES[index], status)).or_default() += 1;
    }

    /// Counts a request of a batch to `route`, answered with `status`.
    pub fn batched(&self, route: &'static str, status: u16) {
        let mut batched = self.batched.lock().unwrap_or_else(|p| p.into_inner());
        *batched.entry((route, status)).or_default() += 1;
    }

    /// Counts a failed backend call of `kind`.
    pub fn backend_error(&self, kind: &'static str) {
        let mut errors = self
            .backend_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *errors.entry(kind).or_default() += 1;
    }

    /// Counts a tool call and how it ended (`outcome`, a label such as
    /// `ok` or `timed_out`).
    pub fn tool_call(&self, tool: &str, outcome: &'static str) {
        let mut calls = self.tool_calls.lock().unwrap_or_else(|p| p.into_inner());
        match calls.get_mut(&(tool.to_owned(), outcome)) {
            Some(n) => *n += 1,
            None => {
                calls.insert((tool.to_owned(), outcome), 1);
            }
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        describe(
            &mut out,
            "cronium_requests_total",
            "counter",
            "Requests answered, by route and status.",
        );
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "cronium_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        describe(
            &mut out,
            "cronium_batched_requests_total",
            "counter",
            "Requests served inside batches (each batch also counts once as a request), by route and status.",
        );
        for ((route, status), n) in self
            .batched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "cronium_batched_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        describe(
            &mut out,
            "cronium_request_duration_seconds",
            "histogram",
            "Time to answer a request, by route.",
        );
        for (route, histogram) in ROUTES.iter().zip(&self.latency) {
            histogram.render(
                &mut out,
                "cronium_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        describe(
            &mut out,
            "cronium_component_instantiation_seconds",
            "histogram",
            "Time to instantiate a component for a request.",
        );
        self.instantiation
            .render(&mut out, "cronium_component_instantiation_seconds", "");
        describe(
            &mut out,
            "cronium_component_instances_reused_total",
            "counter",
            "Requests served by a warm instance (CRONIUM_INSTANCE_REUSE).",
        );
        let _ = writeln!(
            out,
            "cronium_component_instances_reused_total {}",
            self.instances_reused.load(Ordering::Relaxed)
        );
        describe(
            &mut out,
            "cronium_cache_lookups_total",
            "counter",
            "Cache reads by components, by result.",
        );
        for (result, n) in [
            ("hit", &self.cache_hits),
            ("miss", &self.cache_misses),
            ("error", &self.cache_errors),
        ] {
            let _ = writeln!(
                out,
                "cronium_cache_lookups_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        describe(
            &mut out,
            "cronium_backend_request_duration_seconds",
            "histogram",
            "Time of calls to the Cronium backend.",
        );
        self.backend_latency
            .render(&mut out, "cronium_backend_request_duration_seconds", "");
        describe(
            &mut out,
            "cronium_backend_errors_total",
            "counter",
            "Failed calls to the Cronium backend, by kind.",
        );
        for (kind, n) in self
            .backend_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "cronium_backend_errors_total{{kind=\"{kind}\"}} {n}");
        }
        describe(
            &mut out,
            "cronium_tool_calls_total",
            "counter",
            "Tool calls run in this host, by tool and outcome.",
        );
        for ((tool, outcome), n) in self
            .tool_calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "cronium_tool_calls_total{{tool=\"{tool}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let counters = [
            (
                "cronium_rate_limited_total",
                "Requests refused by a rate limit.",
                self.rate_limited.load(Ordering::Relaxed),
            ),
            (
                "cronium_overload_rejected_total",
                "Requests refused because too many were in flight.",
                self.rejected_overload.load(Ordering::Relaxed),
            ),
            (
                "cronium_audit_delivered_total",
                "Audit events delivered to the backend.",
                gauges.audit_delivered,
            ),
            (
                "cronium_audit_spooled_total",
                "Audit events written to the local spool while the backend was unreachable.",
                gauges.audit_spooled,
            ),
            (
                "cronium_audit_lost_total",
                "Audit events that could not be kept.",
                gauges.audit_lost,
            ),
            (
                "cronium_revocation_unchecked_total",
                "Requests let through without a revocation check (Valkey down).",
                gauges.revocation_unchecked,
            ),
        ];
        for (name, help, value) in counters {
            describe(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
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
            describe(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn describe(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
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
        let text = m.render(&Gauges {
            audit_backlog: 0,
            audit_delivered: 0,
            audit_spooled: 0,
            audit_lost: 0,
            revocation_unchecked: 0,
            revocation_watch_live: 0,
            in_flight: 0,
            warm_instances: 0,
        });
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
}
