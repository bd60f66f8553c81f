//! Prometheus metrics and the health/metrics HTTP endpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::{extract::State, http::StatusCode, routing::get, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::dns::providers::route53::Route53Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub provider: String,
    pub operation: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: String,
}

/// What `/readyz` waits for: named gates, each opened once by its owner (a controller whose
/// caches hold their first listing, the election once it knows who leads). Ready once every
/// registered gate is open; gates are registered before the endpoint is served.
#[derive(Default)]
pub struct Readiness {
    gates: Mutex<BTreeMap<String, bool>>,
}

/// One condition of readiness; see [`Readiness::gate`].
pub struct Gate {
    metrics: Arc<Metrics>,
    name: String,
}

impl Gate {
    /// The condition holds from now on.
    pub fn open(&self) {
        let mut gates = self.metrics.readiness.gates.lock().unwrap_or_else(|e| e.into_inner());
        if gates.insert(self.name.clone(), true) != Some(true) {
            tracing::info!(gate = %self.name, "readiness condition met");
        }
    }
}

impl Readiness {
    /// Names of the gates still closed.
    pub fn waiting_for(&self) -> Vec<String> {
        let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.iter().filter(|(_, open)| !**open).map(|(n, _)| n.clone()).collect()
    }
}

pub struct Metrics {
    registry: Registry,
    pub provider_calls: Family<CallLabels, Counter>,
    pub provider_changes: Family<CallLabels, Counter>,
    pub status_writes: Family<KindLabels, Counter>,
    pub source_writes: Family<KindLabels, Counter>,
    pub sync_passes: Counter,
    /// Watch events the provider controller handled, by kind.
    pub watch_events: Family<KindLabels, Counter>,
    pub desired_records: Gauge,
    /// 1 while this replica leads (always 1 without leader election).
    pub leader: Gauge,
    /// Route53 API calls, throttles and batch sizes of all Route53 providers.
    pub route53: Route53Metrics,
    /// Restarts of supervised tasks (watches, workers, writers, the election) that panicked
    /// or ended, by task.
    pub task_restarts: Family<TaskLabels, Counter>,
    /// 1 once the crd source reads its kind; 0 while the kind is not served (its CRD not
    /// installed) or the crd source is off.
    pub crd_source_served: Gauge,
    /// What `/readyz` waits for.
    pub readiness: Readiness,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("extdns");
        let provider_calls = Family::<CallLabels, Counter>::default();
        let provider_changes = Family::<CallLabels, Counter>::default();
        let status_writes = Family::<KindLabels, Counter>::default();
        let source_writes = Family::<KindLabels, Counter>::default();
        let sync_passes = Counter::default();
        let watch_events = Family::<KindLabels, Counter>::default();
        let desired_records = Gauge::default();
        let leader = Gauge::default();
        let crd_source_served = Gauge::default();
        let task_restarts = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_restarts",
            "Restarts of supervised tasks that panicked or ended, by task",
            task_restarts.clone(),
        );
        registry.register("provider_calls", "Calls to DNS backends by operation and outcome", provider_calls.clone());
        registry.register(
            "provider_changes",
            "Record changes sent to DNS backends by kind and outcome",
            provider_changes.clone(),
        );
        registry.register("status_writes", "Status subresource writes by kind", status_writes.clone());
        registry.register("source_writes", "DNSEndpoint writes by the source controller", source_writes.clone());
        registry.register("sync_passes", "Planning runs of the provider workers", sync_passes.clone());
        registry.register(
            "watch_events",
            "Watch events handled by the provider controller, by kind",
            watch_events.clone(),
        );
        registry.register("desired_records", "Records requested by all DNSEndpoints", desired_records.clone());
        registry.register("leader", "1 while this replica is the elected writer", leader.clone());
        registry.register(
            "crd_source_served",
            "1 once the crd source reads its kind; 0 while its CRD is not installed or the source is off",
            crd_source_served.clone(),
        );
        let route53 = Route53Metrics::default();
        route53.register(&mut registry);
        Metrics {
            registry,
            provider_calls,
            provider_changes,
            status_writes,
            source_writes,
            sync_passes,
            watch_events,
            desired_records,
            leader,
            route53,
            task_restarts,
            crd_source_served,
            readiness: Readiness::default(),
        }
    }
}

impl Metrics {
    /// Registers a closed readiness condition named `name`: `/readyz` answers 503 until it
    /// is opened.
    pub fn gate(self: &Arc<Self>, name: &str) -> Gate {
        let mut gates = self.readiness.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.entry(name.to_string()).or_insert(false);
        Gate { metrics: self.clone(), name: name.to_string() }
    }

    pub fn call(&self, provider: &str, operation: &str, outcome: &str) {
        self.provider_calls
            .get_or_create(&CallLabels {
                provider: provider.into(),
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn change(&self, provider: &str, change: &str, outcome: &str) {
        self.provider_changes
            .get_or_create(&CallLabels { provider: provider.into(), operation: change.into(), outcome: outcome.into() })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Sum of a provider-call counter over all labels matching `operation` (for tests/bench).
    pub fn calls_total(&self, operation: &str) -> u64 {
        let text = self.encode();
        text.lines()
            .filter(|l| {
                l.starts_with("extdns_provider_calls_total{") && l.contains(&format!("operation=\"{operation}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> (StatusCode, [(axum::http::HeaderName, &'static str); 1], String) {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        m.encode(),
    )
}

async fn readyz(State(m): State<Arc<Metrics>>) -> (StatusCode, String) {
    let waiting = m.readiness.waiting_for();
    if waiting.is_empty() {
        (StatusCode::OK, "ok\n".into())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("waiting for: {}\n", waiting.join(", ")))
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process ends.
pub async fn serve(addr: SocketAddr, m: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(m);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_every_gate_is_open() {
        let m = Arc::new(Metrics::default());
        let caches = m.gate("provider caches");
        let leader = m.gate("leader election");
        assert_eq!(m.readiness.waiting_for(), ["leader election", "provider caches"]);
        caches.open();
        assert_eq!(m.readiness.waiting_for(), ["leader election"]);
        leader.open();
        assert!(m.readiness.waiting_for().is_empty());
    }
}
