//! The provider controller: reconciles DNSEndpoints against the DNS backends of the
//! DNSProviders and ClusterDNSProviders that serve them, and writes truthful status back.
//!
//! Work is proportional to what changed:
//! - watch tasks turn each object into a small projection (validated records, the metadata
//!   we read) and hand it to the [`router`], which keeps an index of which provider serves
//!   which record and re-routes only the object that changed (every object only when a
//!   provider or a namespace's labels change);
//! - each provider object has a [`worker`] task with its own queue, coalescing, backoff,
//!   rate limit and deadline; it plans only the names whose desired state changed against
//!   its cache of the backend, indexed by name, and a full plan only at resync;
//! - a DNSEndpoint's status is recomputed when one of its records changes state and written
//!   by the [`status_writer`], which retries that object alone with backoff.

pub mod budget;
mod inbox;
mod pace;
mod router;
mod status_writer;
pub mod validate;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tracing::warn;

use crate::controller::supervise::{GaveUp, Stopped, Supervisor};
use crate::crd::dnsprovider::ProviderSpec;
use crate::crd::{ClusterDNSProvider, DNSEndpoint, DNSProvider, DnsProviderStatus, ProviderId, ProviderRefKind};
use crate::metrics::{Gate, Metrics};

pub use validate::{validate_endpoint_spec, Validated};
pub use worker::DEFAULT_OWNER_ID;

pub const DEFAULT_TTL: u32 = 300;
/// DNSEndpoints per page of the initial listing: the apiserver stores objects of up to 1.5 MiB,
/// and a page is held whole, as text and then as objects, while it is projected. Pages of 500
/// (the watcher's default) made a restart with one namespace's 40 MB of objects hold them all
/// at once.
const ENDPOINT_PAGE_SIZE: u32 = 16;
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Whether this replica may write (always, without leader election).
pub type Leader = crate::controller::leader::Leadership;

/// Checked right before every write: a replica whose lease ran out (say, it was frozen) sees
/// false at once, before its election loop runs.
fn is_leader(leader: &Leader) -> bool {
    leader.is_leader()
}

/// The new leadership state once it changes. Without a sender (no election) the state
/// never changes: this then pends for ever.
async fn leader_changed(leader: &mut Option<tokio::sync::watch::Receiver<bool>>) -> Option<bool> {
    let Some(l) = leader.as_mut() else { return std::future::pending().await };
    match l.changed().await {
        Ok(()) => Some(*l.borrow_and_update()),
        Err(_) => {
            *leader = None;
            std::future::pending().await
        }
    }
}

/// Settings of the provider controller, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace the operator runs in: ClusterDNSProviders read their Secrets there.
    pub operator_namespace: String,
    /// While changes outrun a provider's worker, it makes at most one pass per window
    /// ([`pace`]).
    pub coalesce: Duration,
    /// Longest one backend call may take.
    pub backend_timeout: Duration,
    /// Concurrent status and finalizer writes.
    pub status_concurrency: usize,
    /// True while this replica is the elected writer (always, without leader election).
    pub leader: Leader,
    /// What namespaced DNSProviders may use (see [`crate::controller::tenancy`]).
    pub tenancy: crate::config::TenancyFlags,
    /// Records the DNSEndpoints of one namespace may have served (see [`budget`]).
    pub budget: budget::Limits,
}

/// A DNSEndpoint's identity: "namespace/name@uid", so a re-created object is another one.
pub type EpKey = Arc<str>;

fn ep_key(namespace: &str, name: &str, uid: &str) -> EpKey {
    format!("{namespace}/{name}@{uid}").into()
}

/// What became of one record at one provider.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordResult {
    pub state: String,
    pub zone: Option<String>,
    pub message: String,
}

/// The fields of a DNSProvider or ClusterDNSProvider the controller reads.
#[derive(Clone, Debug)]
pub struct ProviderObject {
    pub id: ProviderId,
    pub spec: ProviderSpec,
    /// creationTimestamp as RFC 3339, for "oldest wins" between providers.
    pub created: String,
    /// Whether the tenancy rules let it have a backend, decided by the router over all
    /// providers (see [`crate::controller::tenancy::admit_providers`]).
    pub verdict: Result<(), crate::controller::tenancy::Refused>,
    pub generation: Option<i64>,
    pub finalizers: Vec<String>,
    pub resource_version: Option<String>,
    pub deleting: bool,
    pub status: Option<DnsProviderStatus>,
}

impl ProviderObject {
    fn from_namespaced(p: &DNSProvider) -> ProviderObject {
        let id = ProviderId {
            kind: ProviderRefKind::DNSProvider,
            namespace: p.namespace().map(Into::into),
            name: p.name_any().into(),
        };
        Self::project(p, id, &p.spec.spec, p.status.clone())
    }

    fn from_cluster(p: &ClusterDNSProvider) -> ProviderObject {
        let id = ProviderId { kind: ProviderRefKind::ClusterDNSProvider, namespace: None, name: p.name_any().into() };
        Self::project(p, id, &p.spec.spec, p.status.clone())
    }

    fn project<K: Resource>(
        p: &K,
        id: ProviderId,
        spec: &ProviderSpec,
        status: Option<DnsProviderStatus>,
    ) -> ProviderObject {
        let meta = p.meta();
        ProviderObject {
            id,
            spec: spec.clone(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            verdict: Ok(()),
            generation: meta.generation,
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone(),
            deleting: meta.deletion_timestamp.is_some(),
            status,
        }
    }
}

/// Delay before retry number `attempts` (from 0) of a backend call or a write.
fn backoff(attempts: u32) -> Duration {
    extdns_core::backoff::delay(BACKOFF_BASE, BACKOFF_MAX, attempts)
}

fn now_time() -> Time {
    Time(jiff::Timestamp::now())
}

/// Starts the watches, the router and the status writers, each supervised; runs until one
/// of them cannot be restarted (the process then exits so that Kubernetes restarts it).
/// `ready` opens once every watch has listed its kind.
pub async fn run(client: Client, settings: Settings, metrics: Arc<Metrics>, ready: Gate) -> Result<(), GaveUp> {
    let (tx, rx) = mpsc::unbounded_channel::<router::RouterMsg>();
    let cfg = watcher::Config::default();
    let mut tasks = Supervisor::new(metrics.clone());
    use router::{Item, Kind};
    // A DNSEndpoint may be over a megabyte: list them a page at a time, each object dropped
    // once projected.
    let endpoints_cfg = cfg.clone().page_size(ENDPOINT_PAGE_SIZE);
    watch(&mut tasks, Api::<DNSEndpoint>::all(client.clone()), &endpoints_cfg, Kind::Endpoints, &tx, |o| {
        Item::Endpoint(Box::new(router::EndpointSnapshot::of(&o)))
    });
    watch(&mut tasks, Api::<DNSProvider>::all(client.clone()), &cfg, Kind::Providers, &tx, |o| {
        Item::Provider(Box::new(ProviderObject::from_namespaced(&o)))
    });
    watch(&mut tasks, Api::<ClusterDNSProvider>::all(client.clone()), &cfg, Kind::ClusterProviders, &tx, |o| {
        Item::Provider(Box::new(ProviderObject::from_cluster(&o)))
    });
    // Only labels (and one annotation) of namespaces and versions of Secrets are read:
    // metadata is enough.
    watch(&mut tasks, Api::<PartialObjectMeta<Namespace>>::all(client.clone()), &cfg, Kind::Namespaces, &tx, |o| {
        let allowed = o.annotations().get(crate::controller::tenancy::ALLOWED_DOMAINS_ANNOTATION).cloned();
        Item::Namespace(
            o.name_any(),
            NamespaceMeta { labels: o.metadata.labels.clone().unwrap_or_default(), allowed_domains: allowed },
        )
    });
    watch(&mut tasks, Api::<PartialObjectMeta<Secret>>::all(client.clone()), &cfg, Kind::Secrets, &tx, |o| {
        Item::Secret(router::SecretMeta {
            namespace: o.namespace().unwrap_or_default(),
            name: o.name_any(),
            version: o.resource_version().unwrap_or_default(),
        })
    });
    let writer = Arc::new(status_writer::StatusWriter::default());
    for index in 0..settings.status_concurrency.max(1) {
        let (writer, client, metrics, leader) =
            (writer.clone(), client.clone(), metrics.clone(), settings.leader.clone());
        tasks.spawn("status-writer", move || {
            writer.clone().run_writer(index, client.clone(), metrics.clone(), leader.clone())
        });
    }
    let router = router::Router::new(Some(client), settings, metrics, writer, tx).with_ready(ready);
    tokio::select! {
        r = router.run(rx) => r,
        gave_up = tasks.gave_up() => Err(gave_up),
    }
}

/// Forwards a watch of `api` as deltas to the router, under supervision: a watch that
/// panics or ends starts again, and lists its kind again (the router drops what that
/// listing no longer holds). The objects themselves are dropped here, so nothing but
/// projections is kept.
fn watch<K, F>(
    tasks: &mut Supervisor,
    api: Api<K>,
    cfg: &watcher::Config,
    kind: router::Kind,
    tx: &mpsc::UnboundedSender<router::RouterMsg>,
    convert: F,
) where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(K) -> router::Item + Clone + Send + Sync + 'static,
{
    let (tx, cfg) = (tx.clone(), cfg.clone());
    tasks.spawn(format!("watch/{kind:?}"), move || {
        let (api, cfg, tx, convert) = (api.clone(), cfg.clone(), tx.clone(), convert.clone());
        async move {
            let mut stream = std::pin::pin!(watcher(api, cfg).default_backoff());
            while let Some(ev) = stream.next().await {
                let msg = match ev {
                    Ok(watcher::Event::Init) => router::RouterMsg::Restart(kind),
                    Ok(watcher::Event::InitApply(o)) | Ok(watcher::Event::Apply(o)) => {
                        router::RouterMsg::Upsert(convert(o))
                    }
                    Ok(watcher::Event::Delete(o)) => router::RouterMsg::Remove(convert(o)),
                    Ok(watcher::Event::InitDone) => router::RouterMsg::Listed(kind),
                    Err(e) => {
                        warn!(?kind, error = %e, "watch error; retrying with backoff");
                        continue;
                    }
                };
                // The router is gone: the controller is stopping.
                if tx.send(msg).is_err() {
                    return Ok(());
                }
            }
            Err(Stopped::Ended(format!("the watch of {kind:?} ended")))
        }
    });
}

/// What the controller reads of a Namespace: its labels (namespaceSelector) and the
/// platform team's allowed-domains annotation (namespaceDomainsFromAnnotation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceMeta {
    pub labels: BTreeMap<String, String>,
    pub allowed_domains: Option<String>,
}

impl NamespaceMeta {
    fn annotations(&self) -> BTreeMap<String, String> {
        self.allowed_domains
            .iter()
            .map(|v| (crate::controller::tenancy::ALLOWED_DOMAINS_ANNOTATION.to_string(), v.clone()))
            .collect()
    }
}

/// Namespaces by name.
type Namespaces = BTreeMap<String, NamespaceMeta>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) < Duration::from_secs(1));
        assert!(backoff(5) > Duration::from_secs(10));
        assert!(backoff(30) <= BACKOFF_MAX * 2, "at most the cap and its jitter");
    }
}
