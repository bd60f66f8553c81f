//! The provider controller: reconciles every DNSEndpoint against the DNS backends of the
//! DNSProviders and ClusterDNSProviders that serve it, and writes truthful status back.
//!
//! It is level-based and event-driven: any watch event marks the world dirty, events are
//! coalesced over a short window, and one pass plans every provider against a cached copy of
//! its records. The cache is refreshed only every `resyncInterval` and after failures, so a
//! steady state makes no backend calls. Statuses are written with server-side apply only when
//! they change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use rand::Rng;
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::backend::{self, Backend, BackendError};
use super::{selector, Error, FINALIZER, PROVIDER_MANAGER};
use crate::crd::dnsprovider::{Policy as SpecPolicy, ProviderSpec};
use crate::crd::{
    ClusterDNSProvider, DNSEndpoint, DNSProvider, DnsEndpointStatus, DnsProviderStatus, ProviderRefKind, RecordStatus,
};
use crate::dns::endpoint::{self, label, Endpoint, ProviderSpecificProperty, RecordKey, RecordType};
use crate::dns::filter::DomainFilter;
use crate::dns::plan::{self, Claimant, DesiredRecord, Outcome, Policy};
use crate::dns::provider::zone_for;
use crate::dns::registry::{RegistryView, TxtRegistry, TxtRegistryConfig};
use crate::dns::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};
use crate::metrics::Metrics;
use crate::status::{self, state};

pub const DEFAULT_TTL: u32 = 300;
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(3600);
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often changes a backend is still propagating are polled (Route53 GetChange).
const PROPAGATION_POLL: Duration = Duration::from_secs(5);

/// Settings of the provider controller, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace the operator runs in: ClusterDNSProviders read their Secrets there.
    pub operator_namespace: String,
    /// Events arriving within this window are handled in one pass.
    pub coalesce: Duration,
    /// Concurrent status writes.
    pub status_concurrency: usize,
    /// Whether this replica is the elected writer (always, without leader election).
    pub leader: super::leader::Leadership,
}

/// Identity of a provider object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId {
    pub kind: ProviderRefKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "DNSProvider/{ns}/{}", self.name),
            None => write!(f, "ClusterDNSProvider/{}", self.name),
        }
    }
}

/// A provider object as the router sees it.
struct ProviderInfo {
    id: ProviderId,
    spec: ProviderSpec,
    generation: Option<i64>,
    status: Option<DnsProviderStatus>,
    uid: Option<String>,
    finalizers: Vec<String>,
    resource_version: Option<String>,
    deleting: bool,
}

/// The provider's view of the backend, refreshed every resync.
struct Cache {
    zones: Vec<Zone>,
    /// Raw records per zone id, as the backend holds them (TXT ownership records included).
    raw: BTreeMap<String, BTreeMap<RecordKey, Endpoint>>,
    fetched: Instant,
    fetched_at: Time,
}

struct Retry {
    attempts: u32,
    next: Instant,
}

enum Ownership {
    Txt(Box<TxtRegistry>),
    Unregistered,
}

/// Live state of one provider object.
struct Worker {
    fingerprint: String,
    /// The backend's state lives in this process (embedded, inMemory): every replica keeps
    /// it, leader or not.
    local: bool,
    backend: Result<Backend, BackendError>,
    ownership: Result<Ownership, String>,
    domains: DomainFilter,
    zone_filter: DomainFilter,
    policy: Policy,
    managed: Vec<RecordType>,
    default_ttl: u32,
    resync: Duration,
    cache: Option<Cache>,
    retry: Option<Retry>,
    /// The last backend error, reported until a pass succeeds.
    last_error: Option<ProviderError>,
    /// Records owned by us after the last pass, for the provider status.
    managed_records: i64,
    /// Changes the backend accepted but has not made live yet, by change id, with the
    /// records they carry; those records are `Propagating` until the backend says otherwise.
    propagating: BTreeMap<String, BTreeSet<RecordKey>>,
    /// When to ask the backend about `propagating` changes next.
    next_poll: Instant,
}

/// One desired record routed to one provider.
struct Routed {
    ep: usize,
    rec: usize,
    desired: DesiredRecord,
}

/// What became of one routed record at its provider.
#[derive(Clone, Debug)]
struct RecordResult {
    state: String,
    zone: Option<String>,
    message: String,
}

/// A DNSEndpoint's records after validation, with per-record status slots.
struct EndpointWork {
    obj: Arc<DNSEndpoint>,
    deleting: bool,
    /// Status entries per spec endpoint index (a record can have several providers).
    records: BTreeMap<usize, Vec<RecordStatus>>,
    /// For an object being deleted: the providers that may hold its records.
    serving: BTreeSet<ProviderId>,
}

/// DNSEndpoint statuses waiting to be written. Writing thousands of statuses takes a while
/// on the apiserver; a separate task does it so that the next pass (new records) never waits
/// for it. The latest status of an object replaces one still pending.
#[derive(Default)]
struct StatusQueue {
    pending: std::sync::Mutex<BTreeMap<String, (Arc<DNSEndpoint>, serde_json::Value)>>,
    /// Hash of the last status written per object (key includes the uid).
    written: std::sync::Mutex<HashMap<String, u64>>,
    wake: Notify,
}

fn status_hash(v: &serde_json::Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

fn endpoint_key(obj: &DNSEndpoint) -> String {
    format!("{}/{}@{}", obj.namespace().unwrap_or_default(), obj.name_any(), obj.meta().uid.clone().unwrap_or_default())
}

impl StatusQueue {
    fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn already_written(&self, key: &str, v: &serde_json::Value) -> bool {
        Self::lock(&self.written).get(key) == Some(&status_hash(v))
    }

    fn push(&self, obj: Arc<DNSEndpoint>, v: serde_json::Value) {
        Self::lock(&self.pending).insert(endpoint_key(&obj), (obj, v));
        self.wake.notify_one();
    }

    /// Writes whatever is pending, for ever. A failed write asks for another pass, which
    /// recomputes the status and queues it again.
    async fn run(self: Arc<Self>, client: Client, metrics: Arc<Metrics>, concurrency: usize, repass: Arc<Notify>) {
        loop {
            self.wake.notified().await;
            loop {
                let batch: Vec<(String, (Arc<DNSEndpoint>, serde_json::Value))> =
                    std::mem::take(&mut *Self::lock(&self.pending)).into_iter().collect();
                if batch.is_empty() {
                    break;
                }
                let results: Vec<bool> = stream::iter(batch)
                    .map(|(key, (obj, status))| {
                        let (client, metrics, queue) = (client.clone(), metrics.clone(), self.clone());
                        async move {
                            match write_endpoint_status(&client, &obj, &status).await {
                                Ok(()) => {
                                    metrics
                                        .status_writes
                                        .get_or_create(&crate::metrics::KindLabels { kind: "DNSEndpoint".into() })
                                        .inc();
                                    Self::lock(&queue.written).insert(key, status_hash(&status));
                                    true
                                }
                                Err(e) => {
                                    warn!(error = %e, "status write failed");
                                    false
                                }
                            }
                        }
                    })
                    .buffer_unordered(concurrency.max(1))
                    .collect()
                    .await;
                if results.iter().any(|ok| !ok) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    repass.notify_one();
                }
            }
        }
    }
}

pub struct ProviderController {
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    endpoints: Store<DNSEndpoint>,
    providers: Store<DNSProvider>,
    cluster_providers: Store<ClusterDNSProvider>,
    namespaces: Store<Namespace>,
    workers: HashMap<ProviderId, Worker>,
    /// Provider statuses written in this process, to skip identical rewrites before the watch
    /// catches up.
    written: HashMap<String, serde_json::Value>,
    statuses: Arc<StatusQueue>,
}

/// Starts the watches and runs the controller until the process ends.
pub async fn run(client: Client, settings: Settings, metrics: Arc<Metrics>) {
    let notify = Arc::new(Notify::new());
    let (endpoints, w1) = reflector::store::<DNSEndpoint>();
    let (providers, w2) = reflector::store::<DNSProvider>();
    let (cluster_providers, w3) = reflector::store::<ClusterDNSProvider>();
    let (namespaces, w4) = reflector::store::<Namespace>();
    let cfg = watcher::Config::default();
    // managedFields are never read here and are a large share of each object: keep them out
    // of the caches.
    spawn_watch_filtered(
        reflector::reflector(
            w1,
            watcher(Api::all(client.clone()), cfg.clone())
                .default_backoff()
                .modify(|o: &mut DNSEndpoint| o.managed_fields_mut().clear()),
        ),
        &notify,
        endpoint_change_filter(),
    );
    spawn_watch(reflector::reflector(w2, watcher(Api::all(client.clone()), cfg.clone()).default_backoff()), &notify);
    spawn_watch(reflector::reflector(w3, watcher(Api::all(client.clone()), cfg.clone()).default_backoff()), &notify);
    spawn_watch(reflector::reflector(w4, watcher(Api::all(client.clone()), cfg).default_backoff()), &notify);
    let mut leader = settings.leader.subscribe();
    let n = notify.clone();
    tokio::spawn(async move {
        while leader.changed().await.is_ok() {
            n.notify_one();
        }
    });
    for r in [
        endpoints.wait_until_ready().await,
        providers.wait_until_ready().await,
        cluster_providers.wait_until_ready().await,
    ] {
        if r.is_err() {
            warn!("a watch ended before its first list; the provider controller stops");
            return;
        }
    }
    let _ = namespaces.wait_until_ready().await;
    info!("provider controller caches ready");
    let statuses = Arc::new(StatusQueue::default());
    tokio::spawn(statuses.clone().run(client.clone(), metrics.clone(), settings.status_concurrency, notify.clone()));
    let mut ctl = ProviderController {
        client,
        settings,
        metrics,
        endpoints,
        providers,
        cluster_providers,
        namespaces,
        workers: HashMap::new(),
        written: HashMap::new(),
        statuses: statuses.clone(),
    };
    loop {
        let next = ctl.pass().await;
        let sleep = next.map(|n| n.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
        // Coalesce: whatever else arrives in the window rides along in the next pass.
        tokio::time::sleep(ctl.settings.coalesce).await;
    }
}

fn spawn_watch<S, K>(stream: S, notify: &Arc<Notify>)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K: Resource + Send,
{
    spawn_watch_filtered(stream, notify, |_| true)
}

/// Like `spawn_watch`, but only events for which `relevant` says yes start a pass; the store
/// sees every event either way.
fn spawn_watch_filtered<S, K, F>(stream: S, notify: &Arc<Notify>, mut relevant: F)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K: Resource + Send,
    F: FnMut(&watcher::Event<K>) -> bool + Send + 'static,
{
    let notify = notify.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) if relevant(&ev) => notify.notify_one(),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "watch error; retrying with backoff"),
            }
        }
    });
}

/// A DNSEndpoint event matters when its spec changed (generation), it started being
/// deleted, it appeared or it went. Status-only updates (most of them ours) do not start a
/// pass: at 10,000 objects every status write would otherwise cost a full planning pass.
fn endpoint_change_filter() -> impl FnMut(&watcher::Event<DNSEndpoint>) -> bool + Send + 'static {
    let mut seen: HashMap<String, (Option<i64>, bool)> = HashMap::new();
    move |ev| match ev {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
            let uid = o.meta().uid.clone().unwrap_or_default();
            let now = (o.meta().generation, o.meta().deletion_timestamp.is_some());
            seen.insert(uid, now) != Some(now) && matches!(ev, watcher::Event::Apply(_))
        }
        watcher::Event::Delete(o) => {
            seen.remove(&o.meta().uid.clone().unwrap_or_default());
            true
        }
        watcher::Event::Init => false,
        watcher::Event::InitDone => true,
    }
}

fn backoff(attempts: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempts.min(16)).min(BACKOFF_MAX);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    exp.mul_f64(jitter)
}

fn now_time() -> Time {
    Time(jiff::Timestamp::now())
}

/// The default TXT owner id, external-dns's `--txt-owner-id` default.
pub const DEFAULT_OWNER_ID: &str = "default";

fn to_policy(p: SpecPolicy) -> Policy {
    match p {
        SpecPolicy::Sync => Policy::Sync,
        SpecPolicy::UpsertOnly => Policy::UpsertOnly,
        SpecPolicy::CreateOnly => Policy::CreateOnly,
    }
}

/// Parses "90s", "10m", "1h", or a plain number of seconds.
pub fn parse_duration(field: &str, s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{field}: {s:?} is not a duration like \"90s\", \"10m\" or \"1h\": {e}"))
}

impl Worker {
    async fn new(
        client: &Client,
        info: &ProviderInfo,
        secret_ns: &str,
        fingerprint: String,
        metrics: &Metrics,
    ) -> Worker {
        let spec = &info.spec;
        let default_ttl = spec.default_ttl.unwrap_or(DEFAULT_TTL);
        let ctx = backend::BuildContext { client, secret_ns, default_ttl, name: info.id.to_string(), metrics };
        let backend = backend::build(spec, &ctx).await;
        let ownership = build_ownership(client, spec, secret_ns).await;
        let resync = spec
            .resync_interval
            .as_deref()
            .map(|s| parse_duration("spec.resyncInterval", s))
            .transpose()
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_RESYNC);
        let domains = spec.domains.as_ref().map(|d| DomainFilter::new(&d.include, &d.exclude)).unwrap_or_default();
        let zone_filter = spec.zones.as_ref().map(|d| DomainFilter::new(&d.include, &d.exclude)).unwrap_or_default();
        if let Err(e) = &backend {
            warn!(provider = %info.id, error = %e, "provider cannot be started");
        }
        Worker {
            fingerprint,
            local: spec.embedded.is_some() || spec.in_memory.is_some(),
            backend,
            ownership,
            domains,
            zone_filter,
            policy: to_policy(spec.policy),
            managed: spec
                .managed_record_types
                .clone()
                .unwrap_or_else(|| vec![RecordType::A, RecordType::AAAA, RecordType::CNAME]),
            default_ttl,
            resync,
            cache: None,
            retry: None,
            last_error: None,
            managed_records: 0,
            propagating: BTreeMap::new(),
            next_poll: Instant::now(),
        }
    }

    fn owner_id(&self) -> Option<&str> {
        match &self.ownership {
            Ok(Ownership::Txt(r)) => Some(r.owner_id()),
            _ => None,
        }
    }

    /// Next time this worker needs a pass on its own (retry or resync).
    fn deadline(&self) -> Option<Instant> {
        if let Some(r) = &self.retry {
            return Some(r.next);
        }
        let resync = self.cache.as_ref().map(|c| c.fetched + self.resync);
        let poll = (!self.propagating.is_empty()).then_some(self.next_poll);
        resync.into_iter().chain(poll).min()
    }

    /// Asks the backend which propagating changes are live now, at most every
    /// [`PROPAGATION_POLL`]: events must not turn into a stream of GetChange calls.
    async fn poll_propagation(&mut self, backend: &dyn Provider, id: &ProviderId, metrics: &Metrics) {
        if self.propagating.is_empty() || Instant::now() < self.next_poll {
            return;
        }
        self.next_poll = Instant::now() + PROPAGATION_POLL;
        let pid = id.to_string();
        let ids: Vec<String> = self.propagating.keys().cloned().collect();
        for change in ids {
            let r = backend.in_sync(&change).await;
            metrics.call(&pid, "in_sync", if r.is_ok() { "ok" } else { "error" });
            match r {
                Ok(true) => {
                    self.propagating.remove(&change);
                }
                Ok(false) => {}
                Err(e) if e.is_transient() => {
                    debug!(provider = %id, change, error = %e, "cannot ask whether a change is live yet");
                }
                Err(e) => {
                    // Waiting forever helps nobody: the records were accepted.
                    warn!(provider = %id, change, error = %e, "cannot learn whether a change is live; taking it as live");
                    self.propagating.remove(&change);
                }
            }
        }
    }

    fn is_propagating(&self, key: &RecordKey) -> Option<&str> {
        self.propagating.iter().find(|(_, keys)| keys.contains(key)).map(|(id, _)| id.as_str())
    }

    fn fail(&mut self, err: ProviderError) {
        let attempts = self.retry.as_ref().map(|r| r.attempts + 1).unwrap_or(0);
        self.retry = Some(Retry { attempts, next: Instant::now() + backoff(attempts) });
        // Whatever we believed about the backend may be wrong now: list again next time.
        self.cache = None;
        self.last_error = Some(err);
    }

    async fn refresh(&mut self, id: &ProviderId, metrics: &Metrics) -> Result<(), ProviderError> {
        let backend = match &self.backend {
            Ok(b) => b.provider.clone(),
            Err(e) => return Err(ProviderError::Config(e.to_string())),
        };
        let pid = id.to_string();
        let zones = backend.zones().await;
        metrics.call(&pid, "zones", if zones.is_ok() { "ok" } else { "error" });
        let zones: Vec<Zone> = zones?.into_iter().filter(|z| self.zone_filter.matches(&z.name)).collect();
        let mut raw = BTreeMap::new();
        for z in &zones {
            let recs = backend.records(z).await;
            metrics.call(&pid, "records", if recs.is_ok() { "ok" } else { "error" });
            raw.insert(z.id.clone(), recs?.into_iter().map(|e| (e.key(), e)).collect());
        }
        self.cache = Some(Cache { zones, raw, fetched: Instant::now(), fetched_at: now_time() });
        Ok(())
    }

    /// Plans and applies this provider's records; returns one result per routed record.
    async fn sync(&mut self, id: &ProviderId, routed: &[Routed], metrics: &Metrics) -> Vec<RecordResult> {
        let all = |state: &str, message: String| {
            routed
                .iter()
                .map(|_| RecordResult { state: state.to_string(), zone: None, message: message.clone() })
                .collect::<Vec<_>>()
        };
        let backend = match &self.backend {
            Ok(b) => b.provider.clone(),
            Err(e) => return all("InvalidProvider", format!("provider {id} cannot be used: {e}")),
        };
        if let Err(e) = &self.ownership {
            return all("InvalidProvider", format!("provider {id} cannot be used: {e}"));
        }
        if let Some(r) = &self.retry {
            if Instant::now() < r.next {
                return self.retry_results(id, routed);
            }
        }
        if self.cache.is_none() || self.cache.as_ref().is_some_and(|c| c.fetched.elapsed() >= self.resync) {
            if let Err(e) = self.refresh(id, metrics).await {
                warn!(provider = %id, error = %e, "listing records failed");
                self.fail(e);
                return self.retry_results(id, routed);
            }
        }
        self.poll_propagation(backend.as_ref(), id, metrics).await;
        let owner = self.owner_id().map(str::to_string);
        let Some(mut cache) = self.cache.take() else {
            return all(state::PENDING, format!("provider {id} has not listed its zones yet"));
        };
        let Ok(ownership) = &self.ownership else {
            return all("InvalidProvider", format!("provider {id} cannot be used"));
        };
        let zones = cache.zones.clone();

        // Records without a zone never reach the planner. The others become what the backend
        // will hold for them (a Route53 CNAME to a load balancer: an A and an AAAA alias).
        let mut results: Vec<Option<RecordResult>> = vec![None; routed.len()];
        let mut desired: Vec<(usize, DesiredRecord)> = Vec::new();
        for (i, r) in routed.iter().enumerate() {
            if zone_for(&zones, &r.desired.endpoint.dns_name).is_some() {
                for endpoint in backend.adjust(r.desired.endpoint.clone()) {
                    desired.push((i, DesiredRecord { endpoint, claimant: r.desired.claimant.clone() }));
                }
                continue;
            }
            results[i] = Some(RecordResult {
                state: state::NO_ZONE.into(),
                zone: None,
                message: format!(
                    "{}: provider {id} has no zone for this name (zones: {})",
                    r.desired.endpoint.key(),
                    zones.iter().map(|z| z.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }

        // Plan and apply zone by zone. A name belongs to the zones with the longest name
        // containing it: one, or several when hosted zones share a name (Route53's private and
        // public zones of one domain), and each of them gets the record.
        let belongs = |name: &str, zone: &Zone| zone_for(&zones, name).is_some_and(|z| z.name == zone.name);
        let pid = id.to_string();
        let mut managed_records = 0i64;
        let mut transient: Option<ProviderError> = None;
        let mut rejected = false;
        if self.propagating.is_empty() {
            self.next_poll = Instant::now() + PROPAGATION_POLL;
        }
        for zone in &zones {
            let raw: Vec<Endpoint> = cache.raw.get(&zone.id).map(|r| r.values().cloned().collect()).unwrap_or_default();
            let (view, current): (Option<RegistryView>, Vec<Endpoint>) = match ownership {
                Ownership::Txt(reg) => {
                    let view = reg.view_in_zone(raw, &zone.name);
                    let current = view.endpoints.clone();
                    (Some(view), current)
                }
                Ownership::Unregistered => (None, raw),
            };
            // Leftovers of a name delegated to a longer zone are not this zone's to manage.
            let current: Vec<Endpoint> = current
                .into_iter()
                .filter(|e| self.domains.matches(&e.dns_name) && belongs(&e.dns_name, zone))
                .collect();
            if let Some(o) = &owner {
                managed_records += current.iter().filter(|e| e.labels.get(label::OWNER) == Some(o)).count() as i64;
            }
            let (idx, mine): (Vec<usize>, Vec<DesiredRecord>) =
                desired.iter().filter(|(_, d)| belongs(&d.endpoint.dns_name, zone)).cloned().unzip();

            let current_keys: BTreeSet<RecordKey> = current.iter().map(|e| e.key()).collect();
            let mut orphan_claims: BTreeMap<RecordKey, String> = BTreeMap::new();
            if let (Ownership::Txt(reg), Some(view)) = (ownership, &view) {
                for d in mine.iter().filter(|d| !current_keys.contains(&d.endpoint.key())) {
                    if let Some(o) = reg.claim(view, &d.endpoint).and_then(|l| l.get(label::OWNER)) {
                        orphan_claims.insert(d.endpoint.key(), o.clone());
                    }
                }
            }
            let p = plan::plan(&plan::PlanInput {
                desired: &mine,
                current: &current,
                policy: self.policy,
                owner_id: owner.as_deref(),
                managed_types: &self.managed,
                default_ttl: self.default_ttl,
                orphan_claims: &orphan_claims,
            });

            // Apply, keeping track of which planned change each backend change belongs to.
            let mut change_result: Vec<ChangeResult> = vec![Ok(Applied::Live); p.changes.len()];
            if !p.changes.is_empty() {
                let expanded: Vec<(usize, Change)> = match (ownership, &view) {
                    (Ownership::Txt(reg), Some(view)) => reg.expand(view, &p.changes),
                    _ => p.changes.iter().cloned().enumerate().collect(),
                };
                let changes: Vec<Change> = expanded.iter().map(|(_, c)| c.clone()).collect();
                info!(provider = %id, zone = %zone.name, zone_id = %zone.id, changes = changes.len(), "applying changes");
                let res = backend.apply(zone, &changes).await;
                metrics.call(&pid, "apply", if res.iter().all(|r| r.is_ok()) { "ok" } else { "error" });
                let zone_cache = cache.raw.entry(zone.id.clone()).or_default();
                let missing = Err(ProviderError::Rejected("the backend returned no result for this change".into()));
                for ((pi, change), r) in expanded.iter().zip(res.into_iter().chain(std::iter::repeat(missing))) {
                    metrics.change(&pid, change.verb(), if r.is_ok() { "ok" } else { "error" });
                    match r {
                        Ok(applied) => {
                            apply_to_cache(zone_cache, change);
                            // The record is live once all its changes (ownership TXT too) are.
                            if applied != Applied::Live && change_result[*pi] == Ok(Applied::Live) {
                                change_result[*pi] = Ok(applied);
                            }
                        }
                        Err(e) => {
                            warn!(provider = %id, change = change.verb(), record = %change.endpoint().key(), error = %e, "change failed");
                            if change_result[*pi].is_ok() {
                                change_result[*pi] = Err(e);
                            }
                        }
                    }
                }
            }
            for r in &change_result {
                match r {
                    Err(e) if e.is_transient() => transient = transient.or_else(|| Some(e.clone())),
                    Err(_) => rejected = true,
                    Ok(_) => {}
                }
            }

            for (di, outcome) in p.outcomes.iter().enumerate() {
                let ri = idx[di];
                let asked = routed[ri].desired.endpoint.key();
                let key = mine[di].endpoint.key();
                // "web CNAME is live" alone would hide that Route53 holds an alias of another type.
                let held = if key == asked { key.to_string() } else { format!("{asked} (held as {key} alias)") };
                let just_applied = match outcome {
                    Outcome::Change(ci) => match &change_result[*ci] {
                        Ok(Applied::Propagating(change)) => {
                            self.propagating.entry(change.clone()).or_default().insert(key.clone());
                            Some(change.as_str())
                        }
                        _ => None,
                    },
                    _ => None,
                };
                let failed = match outcome {
                    Outcome::Change(ci) => change_result[*ci].as_ref().err(),
                    _ => None,
                };
                let (st, msg) = match (outcome, failed, just_applied.or_else(|| self.is_propagating(&key))) {
                    (_, Some(e), _) => (e.reason().to_string(), format!("{held}: {e}")),
                    (Outcome::InSync | Outcome::Change(_), None, Some(change)) => (
                        state::PROPAGATING.to_string(),
                        format!("{held} was accepted by {id}, waiting for change {change} to be live"),
                    ),
                    (Outcome::InSync | Outcome::Change(_), None, None) => {
                        (state::READY.to_string(), format!("{held} is live at {id}"))
                    }
                    (other, None, _) => (other.reason().to_string(), other.message(&key)),
                };
                // A record held in several records or zones is as far as its worst part.
                if results[ri].as_ref().is_none_or(|r| r.state == state::READY) {
                    results[ri] = Some(RecordResult { state: st, zone: Some(zone.name.clone()), message: msg });
                }
            }
        }
        self.cache = Some(cache);
        self.managed_records = managed_records;

        // A transient failure means: retry soon, and trust no cache.
        match transient {
            Some(e) => self.fail(e),
            None => {
                self.retry = None;
                self.last_error = None;
                if rejected {
                    // A rejected change may have left the zone other than we think.
                    if let Some(c) = self.cache.as_mut() {
                        c.fetched = Instant::now() - self.resync + Duration::from_secs(30).min(self.resync);
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(RecordResult { state: state::PENDING.into(), zone: None, message: String::new() }))
            .collect()
    }

    fn retry_results(&self, id: &ProviderId, routed: &[Routed]) -> Vec<RecordResult> {
        let (st, msg) = match &self.last_error {
            Some(e) => (e.reason().to_string(), e.to_string()),
            None => (state::PENDING.to_string(), "waiting for the provider".to_string()),
        };
        let when = self.retry.as_ref().map(|r| r.next.saturating_duration_since(Instant::now()).as_secs()).unwrap_or(0);
        routed
            .iter()
            .map(|r| RecordResult {
                state: st.clone(),
                zone: None,
                message: format!("{}: provider {id}: {msg}; retrying in {when}s", r.desired.endpoint.key()),
            })
            .collect()
    }
}

fn apply_to_cache(zone: &mut BTreeMap<RecordKey, Endpoint>, change: &Change) {
    let strip = |e: &Endpoint| {
        let mut e = e.clone();
        e.labels.clear();
        e
    };
    match change {
        Change::Create(e) => {
            zone.insert(e.key(), strip(e));
        }
        Change::Update { old, new } => {
            zone.remove(&old.key());
            zone.insert(new.key(), strip(new));
        }
        Change::Delete(e) => {
            zone.remove(&e.key());
        }
    }
}

async fn build_ownership(client: &Client, spec: &ProviderSpec, secret_ns: &str) -> Result<Ownership, String> {
    let reg = spec.registry.clone().unwrap_or_default();
    if reg.none.is_some() && reg.txt.is_none() {
        return Ok(Ownership::Unregistered);
    }
    if reg.none.is_some() {
        return Err("spec.registry: set either txt or none, not both".into());
    }
    let txt = reg.txt.unwrap_or_default();
    let aes_key = match &txt.encryption {
        Some(enc) => Some(
            backend::read_secret(client, secret_ns, &enc.secret_ref)
                .await
                .map_err(|e| format!("spec.registry.txt.encryption: {e}"))?,
        ),
        None => None,
    };
    TxtRegistry::new(TxtRegistryConfig {
        owner_id: txt.owner_id.unwrap_or_else(|| DEFAULT_OWNER_ID.to_string()),
        prefix: txt.prefix.unwrap_or_default(),
        suffix: txt.suffix.unwrap_or_default(),
        wildcard_replacement: txt.wildcard_replacement.unwrap_or_default(),
        aes_key,
    })
    .map(|r| Ownership::Txt(Box::new(r)))
    .map_err(|e| format!("spec.registry.txt: {e}"))
}

/// The TXT `resource` label external-dns writes for a hand-written DNSEndpoint.
fn default_resource(obj: &DNSEndpoint) -> String {
    format!("crd/{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Validates a DNSEndpoint's spec. Valid records come back as endpoints (by spec index),
/// invalid ones as errors naming the field.
/// Valid records and invalid ones, each with its index in `spec.endpoints`.
pub type Validated = (Vec<(usize, Endpoint)>, Vec<(usize, endpoint::ValidationError)>);

pub fn validate_endpoint_spec(obj: &DNSEndpoint) -> Validated {
    let mut ok: Vec<(usize, Endpoint)> = Vec::new();
    let mut bad: Vec<(usize, endpoint::ValidationError)> = Vec::new();
    for (i, spec) in obj.spec.endpoints.iter().enumerate() {
        let field = |f: &str| format!("spec.endpoints[{i}].{f}");
        let mut errs = Vec::new();
        if let Err(e) = endpoint::validate_name(&field("dnsName"), &spec.dns_name) {
            errs.push(e);
        }
        if spec.targets.is_empty() {
            errs.push(endpoint::ValidationError {
                field: field("targets"),
                message: "at least one target is required".into(),
            });
        }
        // An A or AAAA alias (Route53) points at a name, as external-dns users write it.
        let alias = matches!(spec.record_type, RecordType::A | RecordType::AAAA)
            && spec.provider_specific.iter().flatten().any(|p| p.name == "alias" && p.value.trim() == "true");
        let target_type = if alias { RecordType::CNAME } else { spec.record_type };
        for (j, t) in spec.targets.iter().enumerate() {
            if let Err(e) = endpoint::validate_target(&field(&format!("targets[{j}]")), target_type, t) {
                errs.push(e);
            }
        }
        let ttl = match spec.record_ttl {
            Some(t) => match endpoint::validate_ttl(&field("recordTTL"), t) {
                Ok(v) => Some(v),
                Err(e) => {
                    errs.push(e);
                    None
                }
            },
            None => None,
        };
        if let Some(e) = errs.into_iter().next() {
            bad.push((i, e));
            continue;
        }
        let mut labels = spec.labels.clone().unwrap_or_default();
        labels.entry(label::RESOURCE.to_string()).or_insert_with(|| default_resource(obj));
        // Owner labels come from the registry, never from the user.
        labels.remove(label::OWNER);
        let ep = Endpoint {
            dns_name: spec.dns_name.clone(),
            record_type: spec.record_type,
            targets: spec.targets.clone(),
            ttl,
            set_identifier: spec.set_identifier.clone().unwrap_or_default(),
            labels,
            provider_specific: spec
                .provider_specific
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|p| ProviderSpecificProperty { name: p.name, value: p.value })
                .collect(),
        }
        .normalized();
        ok.push((i, ep));
    }
    let together: Vec<(usize, &Endpoint)> = ok.iter().map(|(i, e)| (*i, e)).collect();
    let cross = endpoint::validate_together(&together);
    for (i, mut e) in cross {
        e.field = format!("spec.{}", e.field);
        bad.push((i, e));
    }
    let bad_idx: BTreeSet<usize> = bad.iter().map(|(i, _)| *i).collect();
    ok.retain(|(i, _)| !bad_idx.contains(i));
    bad.sort_by_key(|(i, _)| *i);
    (ok, bad)
}

impl ProviderController {
    /// Provider objects in play. One being deleted stays while it holds our finalizer, so it
    /// can remove the records of DNSEndpoints deleted together with it (a namespace deletion).
    fn provider_infos(&self) -> Vec<ProviderInfo> {
        fn info<K: Resource<DynamicType = ()>>(
            p: &K,
            id: ProviderId,
            spec: &ProviderSpec,
            status: Option<DnsProviderStatus>,
        ) -> Option<ProviderInfo> {
            let meta = p.meta();
            let finalizers = meta.finalizers.clone().unwrap_or_default();
            let deleting = meta.deletion_timestamp.is_some();
            if deleting && !finalizers.iter().any(|f| f == FINALIZER) {
                return None;
            }
            Some(ProviderInfo {
                id,
                spec: spec.clone(),
                generation: meta.generation,
                status,
                uid: meta.uid.clone(),
                finalizers,
                resource_version: meta.resource_version.clone(),
                deleting,
            })
        }
        let mut out: Vec<ProviderInfo> = self
            .providers
            .state()
            .iter()
            .filter_map(|p| {
                let id =
                    ProviderId { kind: ProviderRefKind::DNSProvider, namespace: p.namespace(), name: p.name_any() };
                info(p.as_ref(), id, &p.spec.spec, p.status.clone())
            })
            .collect();
        out.extend(self.cluster_providers.state().iter().filter_map(|p| {
            let id = ProviderId { kind: ProviderRefKind::ClusterDNSProvider, namespace: None, name: p.name_any() };
            info(p.as_ref(), id, &p.spec.spec, p.status.clone())
        }));
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Adds or removes the provider finalizer with a merge patch guarded by resourceVersion.
    async fn set_provider_finalizer(&self, info: &ProviderInfo, present: bool) {
        let mut finalizers: Vec<String> = info.finalizers.iter().filter(|f| *f != FINALIZER).cloned().collect();
        if present {
            finalizers.push(FINALIZER.to_string());
        }
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": info.resource_version}});
        let pp = PatchParams::default();
        let res = match &info.id.namespace {
            Some(ns) => Api::<DNSProvider>::namespaced(self.client.clone(), ns)
                .patch(&info.id.name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
            None => Api::<ClusterDNSProvider>::all(self.client.clone())
                .patch(&info.id.name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
        };
        match res {
            Ok(()) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                warn!(provider = %info.id, error = %e, "updating the provider's finalizers failed; retrying on the next pass")
            }
        }
    }

    fn admits_namespace(&self, p: &ProviderInfo, ns: &str) -> bool {
        match &p.id.namespace {
            Some(own) => own == ns,
            None => match &p.spec.namespace_selector {
                None => true,
                Some(sel) => {
                    let labels = self
                        .namespaces
                        .get(&reflector::ObjectRef::new(ns))
                        .map(|n| n.labels().clone())
                        .unwrap_or_default();
                    selector::matches(sel, &labels)
                }
            },
        }
    }

    /// One full pass. Returns when the next pass is due without new events.
    async fn pass(&mut self) -> Option<Instant> {
        self.metrics.sync_passes.inc();
        let infos = self.provider_infos();
        let leading = self.settings.leader.is_leader();
        if leading {
            for info in infos.iter().filter(|i| !i.deleting && !i.finalizers.iter().any(|f| f == FINALIZER)) {
                self.set_provider_finalizer(info, true).await;
            }
        }

        // Start, rebuild or drop workers to match the provider objects.
        let live: BTreeSet<ProviderId> = infos.iter().map(|p| p.id.clone()).collect();
        for info in &infos {
            let fingerprint = serde_json::to_string(&info.spec).unwrap_or_default();
            let existing = self.workers.get(&info.id);
            let stale = existing.is_none_or(|w| w.fingerprint != fingerprint);
            // A broken backend, or credentials refused, may be fixed by editing a Secret:
            // rebuilding re-reads it, on the retry schedule so a broken provider is not
            // rebuilt on every event.
            let retry_rebuild = existing.is_some_and(|w| {
                let broken = w.backend.is_err()
                    || w.ownership.is_err()
                    || matches!(w.last_error, Some(ProviderError::AuthFailed(_)) | Some(ProviderError::Config(_)));
                broken && w.retry.as_ref().is_none_or(|r| Instant::now() >= r.next)
            });
            if stale || retry_rebuild {
                let secret_ns = info.id.namespace.clone().unwrap_or_else(|| self.settings.operator_namespace.clone());
                let attempts =
                    self.workers.get(&info.id).filter(|_| !stale).and_then(|w| w.retry.as_ref().map(|r| r.attempts));
                // Stop the old backend first so an embedded server releases its port.
                if let Some(old) = self.workers.remove(&info.id) {
                    if let Ok(b) = old.backend {
                        b.close().await;
                    }
                }
                let mut w = Worker::new(&self.client, info, &secret_ns, fingerprint, &self.metrics).await;
                if w.backend.is_err() || w.ownership.is_err() {
                    let n = attempts.map(|a| a + 1).unwrap_or(0);
                    w.retry = Some(Retry { attempts: n, next: Instant::now() + backoff(n) });
                } else if let Some(a) = attempts {
                    w.retry = Some(Retry { attempts: a + 1, next: Instant::now() });
                }
                self.workers.insert(info.id.clone(), w);
            }
        }
        // Workers of deleted providers stop their servers.
        let gone: Vec<ProviderId> = self.workers.keys().filter(|id| !live.contains(id)).cloned().collect();
        for id in gone {
            if let Some(Ok(b)) = self.workers.remove(&id).map(|w| w.backend) {
                b.close().await;
            }
        }

        // Validate and route every DNSEndpoint.
        let mut work: Vec<EndpointWork> = Vec::new();
        let mut routed: HashMap<ProviderId, Vec<Routed>> = HashMap::new();
        let mut objects = self.endpoints.state();
        objects.sort_by_key(|o| (o.namespace(), o.name_any()));
        let mut desired_total = 0i64;
        // Finalizers go on before records are written, so no record can outlive its object.
        // Thousands of new objects are patched concurrently, not one after another.
        let unfinalized: Vec<Arc<DNSEndpoint>> = objects
            .iter()
            .filter(|o| o.meta().deletion_timestamp.is_none() && !o.finalizers().iter().any(|f| f == FINALIZER))
            .cloned()
            .collect();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        if leading && !unfinalized.is_empty() {
            let this = &*self;
            let results: Vec<(String, Result<(), Error>)> = stream::iter(unfinalized)
                .map(|o| async move { (endpoint_key(&o), this.add_finalizer(&o).await) })
                .buffer_unordered(self.settings.status_concurrency.max(1))
                .collect()
                .await;
            for (key, r) in results {
                if let Err(e) = r {
                    warn!(error = %e, "cannot add finalizer; records of this object are not written until it is in place");
                    failed.insert(key);
                }
            }
        }
        for obj in objects {
            let deleting = obj.meta().deletion_timestamp.is_some();
            let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
            if deleting && !has_finalizer {
                continue;
            }
            if failed.contains(&endpoint_key(&obj)) {
                continue;
            }
            let ns = obj.namespace().unwrap_or_default();
            let ep_idx = work.len();
            let mut w = EndpointWork { obj: obj.clone(), deleting, records: BTreeMap::new(), serving: BTreeSet::new() };
            if deleting {
                // Its records are no longer desired, so the providers that served them delete
                // them in this pass; remember which, to know when they are gone.
                for (_, ep) in validate_endpoint_spec(&obj).0 {
                    w.serving.extend(self.route(&infos, &obj, &ns, &ep).unwrap_or_default());
                }
            } else {
                let (ok, bad) = validate_endpoint_spec(&obj);
                for (i, e) in bad {
                    let spec = &obj.spec.endpoints[i];
                    w.records.entry(i).or_default().push(RecordStatus {
                        dns_name: endpoint::normalize_name(&spec.dns_name),
                        record_type: spec.record_type.to_string(),
                        set_identifier: spec.set_identifier.clone().filter(|s| !s.is_empty()),
                        provider: String::new(),
                        zone: None,
                        state: state::INVALID.into(),
                        message: Some(e.to_string()),
                    });
                }
                let claimant = Claimant {
                    created: obj.meta().creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
                    namespace: ns.clone(),
                    name: obj.name_any(),
                };
                for (i, ep) in ok {
                    desired_total += 1;
                    let targets = self.route(&infos, &obj, &ns, &ep);
                    match targets {
                        Ok(ids) => {
                            for id in ids {
                                routed.entry(id).or_default().push(Routed {
                                    ep: ep_idx,
                                    rec: i,
                                    desired: DesiredRecord { endpoint: ep.clone(), claimant: claimant.clone() },
                                });
                            }
                        }
                        Err(msg) => w.records.entry(i).or_default().push(RecordStatus {
                            dns_name: ep.dns_name.clone(),
                            record_type: ep.record_type.to_string(),
                            set_identifier: Some(ep.set_identifier.clone()).filter(|s| !s.is_empty()),
                            provider: String::new(),
                            zone: None,
                            state: state::NO_PROVIDER.into(),
                            message: Some(msg),
                        }),
                    }
                }
            }
            work.push(w);
        }
        self.metrics.desired_records.set(desired_total);

        // Sync every provider concurrently.
        let metrics = self.metrics.clone();
        let in_use: BTreeSet<ProviderId> =
            routed.iter().filter(|(_, v)| !v.is_empty()).map(|(k, _)| k.clone()).collect();
        let mut workers: Vec<(ProviderId, Worker)> = self.workers.drain().collect();
        let outputs = {
            let jobs: Vec<_> = workers
                .iter_mut()
                .map(|(id, worker)| {
                    let list = routed.remove(id).unwrap_or_default();
                    let metrics = metrics.clone();
                    let id = id.clone();
                    async move {
                        // A follower keeps its own embedded zones current and touches
                        // nothing shared.
                        let results =
                            if leading || worker.local { worker.sync(&id, &list, &metrics).await } else { Vec::new() };
                        (id, list, results)
                    }
                })
                .collect();
            futures::future::join_all(jobs).await
        };
        self.workers = workers.into_iter().collect();

        let mut clean: BTreeMap<ProviderId, bool> = BTreeMap::new();
        for (id, list, results) in outputs {
            let w = &self.workers[&id];
            clean.insert(id.clone(), w.last_error.is_none() && w.backend.is_ok());
            for (r, res) in list.iter().zip(results) {
                let ep = &r.desired.endpoint;
                work[r.ep].records.entry(r.rec).or_default().push(RecordStatus {
                    dns_name: ep.dns_name.clone(),
                    record_type: ep.record_type.to_string(),
                    set_identifier: Some(ep.set_identifier.clone()).filter(|s| !s.is_empty()),
                    provider: id.to_string(),
                    zone: res.zone,
                    state: res.state,
                    message: Some(res.message).filter(|m| !m.is_empty()),
                });
            }
        }

        if !leading {
            return self.workers.values().filter_map(|w| w.deadline()).min();
        }
        // Statuses and finalizers.
        let mut writes = Vec::new();
        let mut deleting_namespaces: BTreeSet<String> = BTreeSet::new();
        for w in work {
            if w.deleting {
                // Every provider that could hold its records has synced without it; a broken
                // provider elsewhere does not hold this object up.
                let released = w.serving.iter().all(|id| clean.get(id).copied().unwrap_or(true));
                if !released {
                    deleting_namespaces.insert(w.obj.namespace().unwrap_or_default());
                }
                if released {
                    if let Err(e) = self.remove_finalizer(&w.obj).await {
                        warn!(error = %e, "cannot remove finalizer");
                    }
                    continue;
                }
            }
            let records: Vec<RecordStatus> = w.records.into_values().flatten().collect();
            if let Some(patch) = self.endpoint_status(&w.obj, records, w.deleting) {
                writes.push((w.obj.clone(), patch));
            }
        }
        for (obj, status) in writes {
            self.statuses.push(obj, status);
        }

        for info in &infos {
            if info.deleting {
                // Released once no DNSEndpoint uses it and none it may have served is still
                // being deleted, so deleting a namespace never orphans records.
                let waiting =
                    in_use.contains(&info.id) || deleting_namespaces.iter().any(|ns| self.admits_namespace(info, ns));
                if !waiting {
                    self.set_provider_finalizer(info, false).await;
                }
                continue;
            }
            self.write_provider_status(info).await;
        }
        self.workers.values().filter_map(|w| w.deadline()).min()
    }

    /// Providers serving a record: the referenced one, or all admitting the namespace with the
    /// longest matching domain.
    fn route(
        &self,
        infos: &[ProviderInfo],
        obj: &DNSEndpoint,
        ns: &str,
        ep: &Endpoint,
    ) -> Result<Vec<ProviderId>, String> {
        if let Some(r) = &obj.spec.provider_ref {
            let id = ProviderId {
                kind: r.kind,
                namespace: (r.kind == ProviderRefKind::DNSProvider).then(|| ns.to_string()),
                name: r.name.clone(),
            };
            let Some(info) = infos.iter().find(|p| p.id == id) else {
                return Err(format!("{}: spec.providerRef names {id}, which does not exist", ep.key()));
            };
            if !self.admits_namespace(info, ns) {
                return Err(format!("{}: {id} does not serve namespace {ns} (namespaceSelector)", ep.key()));
            }
            if !self.workers.get(&id).is_some_and(|w| w.domains.matches(&ep.dns_name)) {
                return Err(format!("{}: {id} does not manage this name (spec.domains)", ep.key()));
            }
            return Ok(vec![id]);
        }
        let mut best: Option<usize> = None;
        let mut ids = Vec::new();
        for info in infos {
            if !self.admits_namespace(info, ns) {
                continue;
            }
            let Some(w) = self.workers.get(&info.id) else { continue };
            let Some(len) = w.domains.match_len(&ep.dns_name) else { continue };
            match best {
                Some(b) if len < b => {}
                Some(b) if len == b => ids.push(info.id.clone()),
                _ => {
                    best = Some(len);
                    ids = vec![info.id.clone()];
                }
            }
        }
        if ids.is_empty() {
            return Err(format!(
                "{}: no DNSProvider in namespace {ns} or ClusterDNSProvider admitting it manages this name",
                ep.key()
            ));
        }
        Ok(ids)
    }

    /// The status to write, or `None` when the object already has it.
    fn endpoint_status(
        &self,
        obj: &DNSEndpoint,
        mut records: Vec<RecordStatus>,
        deleting: bool,
    ) -> Option<serde_json::Value> {
        records.sort();
        let prev = obj.status.clone().unwrap_or_default();
        let generation = obj.meta().generation;
        let now = now_time();
        let (conditions, applied) = status::endpoint_conditions(&records, deleting, generation, &prev.conditions, &now);
        let observed_generation = if applied { generation } else { prev.observed_generation };
        let names: BTreeSet<&str> = obj.spec.endpoints.iter().map(|e| e.dns_name.trim_end_matches('.')).collect();
        let hostnames = summarize_names(&names);
        let status = DnsEndpointStatus {
            observed_generation,
            conditions,
            records,
            hostnames: Some(hostnames).filter(|h| !h.is_empty()),
        };
        let unchanged_on_server = obj.status.as_ref().is_some_and(|s| {
            s.observed_generation == status.observed_generation
                && s.records == status.records
                && s.hostnames == status.hostnames
                && status::same_conditions(&s.conditions, &status.conditions)
        });
        let value = serde_json::to_value(&status).ok()?;
        if unchanged_on_server || self.statuses.already_written(&endpoint_key(obj), &value) {
            return None;
        }
        Some(value)
    }

    async fn add_finalizer(&self, obj: &DNSEndpoint) -> Result<(), Error> {
        let api: Api<DNSEndpoint> = Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        let mut finalizers = obj.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
        api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()).map_err(|source| {
            Error::Finalizer { name: format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()), source }
        })
    }

    async fn remove_finalizer(&self, obj: &DNSEndpoint) -> Result<(), Error> {
        let api: Api<DNSEndpoint> = Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        let finalizers: Vec<String> = obj.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
        debug!(name = %obj.name_any(), "records removed; releasing the object");
        match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Finalizer {
                name: format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
                source,
            }),
        }
    }

    async fn write_provider_status(&mut self, info: &ProviderInfo) {
        let Some(w) = self.workers.get(&info.id) else { return };
        let prev = info.status.clone().unwrap_or_default();
        let now = now_time();
        let (ready, reason, message) = match (&w.backend, &w.ownership, &w.last_error, &w.cache) {
            (Err(e), _, _, _) => (false, "InvalidProvider".to_string(), e.to_string()),
            (_, Err(e), _, _) => (false, "InvalidProvider".to_string(), e.clone()),
            (_, _, Some(e), _) => (false, e.reason().to_string(), e.to_string()),
            (_, _, None, Some(c)) if c.zones.is_empty() => {
                (false, "NoZones".to_string(), "the backend holds no zone admitted by spec.zones".to_string())
            }
            (_, _, None, Some(c)) => (true, "ZonesFound".to_string(), format!("{} zone(s) reachable", c.zones.len())),
            (_, _, None, None) => (false, "Pending".to_string(), "not listed yet".to_string()),
        };
        let cond = status::condition(status::READY, ready, &reason, message, info.generation, &prev.conditions, &now);
        let status = DnsProviderStatus {
            observed_generation: info.generation,
            conditions: vec![cond],
            zones: w
                .cache
                .as_ref()
                .map(|c| c.zones.iter().map(|z| z.name.clone()).collect())
                .unwrap_or(prev.zones.clone()),
            managed_records: Some(w.managed_records),
            last_sync: w.cache.as_ref().map(|c| c.fetched_at.clone()).or(prev.last_sync.clone()),
        };
        if info.status.as_ref().is_some_and(|s| {
            s.observed_generation == status.observed_generation
                && s.zones == status.zones
                && s.managed_records == status.managed_records
                && s.last_sync == status.last_sync
                && status::same_conditions(&s.conditions, &status.conditions)
        }) {
            return;
        }
        let Ok(value) = serde_json::to_value(&status) else { return };
        let key = format!("{}@{}", info.id, info.uid.clone().unwrap_or_default());
        if self.written.get(&key) == Some(&value) {
            return;
        }
        let pp = PatchParams::apply(PROVIDER_MANAGER).force();
        let res = match &info.id.namespace {
            Some(ns) => {
                let patch = json!({"apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "status": value});
                Api::<DNSProvider>::namespaced(self.client.clone(), ns)
                    .patch_status(&info.id.name, &pp, &Patch::Apply(&patch))
                    .await
                    .map(|_| ())
            }
            None => {
                let patch = json!({"apiVersion": "extdns.io/v1alpha1", "kind": "ClusterDNSProvider", "status": value});
                Api::<ClusterDNSProvider>::all(self.client.clone())
                    .patch_status(&info.id.name, &pp, &Patch::Apply(&patch))
                    .await
                    .map(|_| ())
            }
        };
        match res {
            Ok(()) => {
                self.metrics
                    .status_writes
                    .get_or_create(&crate::metrics::KindLabels { kind: "DNSProvider".into() })
                    .inc();
                self.written.insert(key, value);
            }
            Err(e) => warn!(provider = %info.id, error = %e, "provider status write failed"),
        }
    }
}

fn summarize_names(names: &BTreeSet<&str>) -> String {
    let mut it = names.iter();
    match (it.next(), names.len()) {
        (None, _) => String::new(),
        (Some(first), 1) => first.to_string(),
        (Some(first), n) => format!("{first} (+{})", n - 1),
    }
}

async fn write_endpoint_status(client: &Client, obj: &DNSEndpoint, status: &serde_json::Value) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"apiVersion": "extdns.io/v1alpha1", "kind": "DNSEndpoint", "status": status});
    match api.patch_status(&obj.name_any(), &PatchParams::apply(PROVIDER_MANAGER).force(), &Patch::Apply(&patch)).await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => {
            Err(Error::WriteStatus { kind: "DNSEndpoint", name: format!("{ns}/{}", obj.name_any()), source })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DnsEndpointSpec, EndpointSpec};

    fn obj(endpoints: Vec<EndpointSpec>) -> DNSEndpoint {
        let mut o = DNSEndpoint::new("web", DnsEndpointSpec { endpoints, provider_ref: None });
        o.metadata.namespace = Some("team-a".into());
        o
    }

    fn spec(name: &str, rt: RecordType, targets: &[&str]) -> EndpointSpec {
        EndpointSpec {
            dns_name: name.into(),
            targets: targets.iter().map(|s| s.to_string()).collect(),
            record_type: rt,
            record_ttl: None,
            set_identifier: None,
            labels: None,
            provider_specific: None,
        }
    }

    #[test]
    fn validation_names_the_field_and_keeps_valid_records() {
        let mut bad_ttl = spec("ttl.example.com", RecordType::A, &["192.0.2.1"]);
        bad_ttl.record_ttl = Some(0);
        let o = obj(vec![
            spec("ok.example.com.", RecordType::A, &["192.0.2.1"]),
            spec("bad.example.com", RecordType::A, &["not-an-ip"]),
            bad_ttl,
            spec("c.example.com", RecordType::CNAME, &["x.example.net"]),
            spec("c.example.com", RecordType::A, &["192.0.2.1"]),
        ]);
        let (ok, bad) = validate_endpoint_spec(&o);
        assert_eq!(ok.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 4]);
        assert_eq!(ok[0].1.dns_name, "ok.example.com");
        assert_eq!(ok[0].1.labels.get("resource").map(String::as_str), Some("crd/team-a/web"));
        assert_eq!(bad[0].0, 1);
        assert_eq!(
            bad[0].1.to_string(),
            "spec.endpoints[1].targets[0]: \"not-an-ip\" is not an IPv4 address (record type A)"
        );
        assert!(bad[1].1.to_string().starts_with("spec.endpoints[2].recordTTL"));
        assert!(bad[2].1.to_string().starts_with("spec.endpoints[3].recordType: CNAME at c.example.com"));
    }

    #[test]
    fn an_address_alias_points_at_a_name() {
        let mut alias = spec("apex.example.com", RecordType::A, &["lb-1.us-east-1.elb.amazonaws.com"]);
        alias.provider_specific = Some(vec![ProviderSpecificProperty { name: "alias".into(), value: "true".into() }]);
        let not_alias = spec("x.example.com", RecordType::AAAA, &["lb-1.us-east-1.elb.amazonaws.com"]);
        let (ok, bad) = validate_endpoint_spec(&obj(vec![alias, not_alias]));
        assert_eq!(ok.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0]);
        assert!(bad[0].1.to_string().contains("is not an IPv6 address"), "{}", bad[0].1);
    }

    /// Takes changes like the in-memory backend but reports them as Route53 does: accepted
    /// and propagating until `live` is set. Holds a CNAME to `*.lb.test` as an A and an AAAA
    /// record, as Route53 holds a CNAME to a load balancer.
    struct PropagatingBackend {
        inner: crate::dns::providers::inmemory::InMemoryProvider,
        live: std::sync::atomic::AtomicBool,
        polls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Provider for PropagatingBackend {
        async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
            self.inner.zones().await
        }
        async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
            self.inner.records(zone).await
        }
        async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
            let results = self.inner.apply(zone, changes).await;
            results.into_iter().map(|r| r.map(|_| Applied::Propagating("C1".into()))).collect()
        }
        async fn in_sync(&self, change_id: &str) -> Result<bool, ProviderError> {
            assert_eq!(change_id, "C1");
            self.polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.live.load(std::sync::atomic::Ordering::SeqCst))
        }
        fn adjust(&self, endpoint: Endpoint) -> Vec<Endpoint> {
            if endpoint.record_type != RecordType::CNAME || !endpoint.targets[0].ends_with(".lb.test") {
                return vec![endpoint];
            }
            [RecordType::A, RecordType::AAAA]
                .into_iter()
                .map(|t| Endpoint { record_type: t, ..endpoint.clone() })
                .collect()
        }
    }

    fn worker(backend: Arc<dyn Provider>) -> Worker {
        Worker {
            fingerprint: String::new(),
            local: false,
            backend: Ok(Backend { provider: backend, server: None }),
            ownership: Ok(Ownership::Unregistered),
            domains: DomainFilter::default(),
            zone_filter: DomainFilter::default(),
            policy: Policy::Sync,
            managed: vec![RecordType::A, RecordType::AAAA, RecordType::CNAME],
            default_ttl: DEFAULT_TTL,
            resync: DEFAULT_RESYNC,
            cache: None,
            retry: None,
            last_error: None,
            managed_records: 0,
            propagating: BTreeMap::new(),
            next_poll: Instant::now(),
        }
    }

    fn routed(name: &str, rt: RecordType, target: &str) -> Routed {
        Routed {
            ep: 0,
            rec: 0,
            desired: DesiredRecord {
                endpoint: Endpoint::new(name, rt, vec![target.into()]),
                claimant: Claimant { created: String::new(), namespace: "team-a".into(), name: "web".into() },
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn records_are_propagating_until_the_backend_says_live() {
        let backend = Arc::new(PropagatingBackend {
            inner: crate::dns::providers::inmemory::InMemoryProvider::new(["example.com"]),
            live: Default::default(),
            polls: Default::default(),
        });
        let mut w = worker(backend.clone());
        let id =
            ProviderId { kind: ProviderRefKind::DNSProvider, namespace: Some("team-a".into()), name: "r53".into() };
        let metrics = Metrics::default();
        let list = vec![
            routed("app.example.com", RecordType::A, "192.0.2.1"),
            routed("web.example.com", RecordType::CNAME, "k8s-1.lb.test"),
        ];
        let polls = || backend.polls.load(std::sync::atomic::Ordering::SeqCst);

        let first = w.sync(&id, &list, &metrics).await;
        assert_eq!(first.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), vec!["Propagating"; 2]);
        assert!(first[0].message.contains("waiting for change C1"), "{}", first[0].message);
        assert!(first[1].message.contains("web.example.com CNAME (held as web.example.com A alias)"), "{:?}", first[1]);
        let held: Vec<RecordType> =
            backend.inner.records(&Zone::named("example.com")).await.unwrap().iter().map(|e| e.record_type).collect();
        assert_eq!(held, vec![RecordType::A, RecordType::A, RecordType::AAAA], "the CNAME is held as A and AAAA");
        assert_eq!(w.deadline(), Some(Instant::now() + PROPAGATION_POLL), "a pass is due to poll the change");

        // Events before the poll interval do not poll.
        let again = w.sync(&id, &list, &metrics).await;
        assert_eq!((polls(), again[0].state.as_str()), (0, "Propagating"));

        tokio::time::advance(PROPAGATION_POLL).await;
        let still = w.sync(&id, &list, &metrics).await;
        assert_eq!((polls(), still[1].state.as_str()), (1, "Propagating"));

        backend.live.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::advance(PROPAGATION_POLL).await;
        let live = w.sync(&id, &list, &metrics).await;
        assert_eq!(polls(), 2);
        assert_eq!(live.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), vec!["Ready"; 2], "{live:?}");
        assert!(w.propagating.is_empty());
        assert_eq!(w.deadline(), w.cache.as_ref().map(|c| c.fetched + DEFAULT_RESYNC), "only the resync is due");
    }

    /// Two hosted zones with one name, as Route53's private and public zone of a domain.
    #[derive(Default)]
    struct SplitHorizonBackend {
        held: std::sync::Mutex<BTreeMap<String, BTreeMap<RecordKey, Endpoint>>>,
        applied: std::sync::Mutex<Vec<(String, usize)>>,
    }

    #[async_trait::async_trait]
    impl Provider for SplitHorizonBackend {
        async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
            Ok(["ZPRIVATE", "ZPUBLIC"].map(|id| Zone { id: id.into(), name: "example.com".into() }).to_vec())
        }
        async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
            Ok(self.held.lock().unwrap().get(&zone.id).map(|z| z.values().cloned().collect()).unwrap_or_default())
        }
        async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
            self.applied.lock().unwrap().push((zone.id.clone(), changes.len()));
            let mut held = self.held.lock().unwrap();
            let z = held.entry(zone.id.clone()).or_default();
            changes
                .iter()
                .map(|c| {
                    apply_to_cache(z, c);
                    Ok(Applied::Live)
                })
                .collect()
        }
    }

    #[tokio::test]
    async fn zones_sharing_a_name_each_get_the_record() {
        let backend = Arc::new(SplitHorizonBackend::default());
        let mut w = worker(backend.clone());
        let id =
            ProviderId { kind: ProviderRefKind::DNSProvider, namespace: Some("team-a".into()), name: "r53".into() };
        let metrics = Metrics::default();
        let list = vec![routed("app.example.com", RecordType::A, "192.0.2.1")];

        let first = w.sync(&id, &list, &metrics).await;
        assert_eq!(first[0].state, "Ready", "{first:?}");
        assert_eq!(*backend.applied.lock().unwrap(), vec![("ZPRIVATE".to_string(), 1), ("ZPUBLIC".to_string(), 1)]);
        for zone in ["ZPRIVATE", "ZPUBLIC"] {
            let held = backend.held.lock().unwrap();
            let targets: Vec<&Vec<String>> = held[zone].values().map(|e| &e.targets).collect();
            assert_eq!(targets, vec![&vec!["192.0.2.1".to_string()]], "zone {zone}");
        }
        // In sync in both: nothing more is sent.
        let again = w.sync(&id, &list, &metrics).await;
        assert_eq!(again[0].state, "Ready");
        assert_eq!(backend.applied.lock().unwrap().len(), 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) < Duration::from_secs(1));
        assert!(backoff(5) > Duration::from_secs(10));
        assert!(backoff(30) <= BACKOFF_MAX.mul_f64(1.2));
    }

    #[test]
    fn status_only_updates_do_not_start_a_pass() {
        let mut relevant = endpoint_change_filter();
        let mut o = obj(vec![]);
        o.metadata.uid = Some("u1".into());
        o.metadata.generation = Some(1);
        assert!(!relevant(&watcher::Event::InitApply(o.clone())));
        assert!(relevant(&watcher::Event::InitDone));
        o.status = Some(DnsEndpointStatus { hostnames: Some("x".into()), ..Default::default() });
        assert!(!relevant(&watcher::Event::Apply(o.clone())), "status change");
        o.metadata.generation = Some(2);
        assert!(relevant(&watcher::Event::Apply(o.clone())), "spec change");
        o.metadata.deletion_timestamp = Some(now_time());
        assert!(relevant(&watcher::Event::Apply(o.clone())), "deletion");
        assert!(relevant(&watcher::Event::Delete(o.clone())));
        let mut fresh = obj(vec![]);
        fresh.metadata.uid = Some("u2".into());
        fresh.metadata.generation = Some(1);
        assert!(relevant(&watcher::Event::Apply(fresh)), "new object");
    }

    #[test]
    fn names_summary() {
        let names: BTreeSet<&str> = ["b.example.com", "a.example.com"].into();
        assert_eq!(summarize_names(&names), "a.example.com (+1)");
    }
}
