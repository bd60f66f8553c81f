//! The router: keeps the index of which provider serves which record of which DNSEndpoint,
//! updated from watch deltas; hands each provider's worker the records that changed; turns
//! the workers' results into DNSEndpoint statuses; adds and removes finalizers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::status_writer::{status_hash, StatusWriter};
use super::worker::{Worker, WorkerCtx, WorkerMsg, WorkerReport};
use super::{
    backoff, ep_key, is_leader, now_time, validate_endpoint_spec, EpKey, NamespaceLabels, ProviderId, ProviderObject,
    RecordResult, Settings,
};
use crate::controller::{selector, FINALIZER};
use crate::crd::{
    ClusterDNSProvider, DNSEndpoint, DNSProvider, DnsEndpointStatus, ProviderRef, ProviderRefKind, RecordStatus,
};
use crate::dns::endpoint::{self, Endpoint};
use crate::dns::filter::DomainFilter;
use crate::dns::plan::{Claimant, DesiredRecord};
use crate::metrics::Metrics;
use crate::status::{self, state};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Endpoints,
    Providers,
    ClusterProviders,
    Namespaces,
    Secrets,
}

/// Kinds whose first complete listing the router waits for before any worker plans.
const NEEDED: [Kind; 4] = [Kind::Endpoints, Kind::Providers, Kind::ClusterProviders, Kind::Namespaces];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct SecretMeta {
    pub namespace: String,
    pub name: String,
    pub version: String,
}

pub(super) enum Item {
    Endpoint(Box<EndpointSnapshot>),
    Provider(Box<ProviderObject>),
    Namespace(String, BTreeMap<String, String>),
    Secret(SecretMeta),
}

pub(super) enum RouterMsg {
    /// A watch (re)starts listing its kind: what it does not list again is gone.
    Restart(Kind),
    Upsert(Item),
    Remove(Item),
    /// A watch listed its kind completely.
    Listed(Kind),
    /// Adding a finalizer failed; try again.
    RetryFinalizer(EpKey),
}

/// The fields of a DNSEndpoint the controller reads, its spec already validated.
#[derive(Clone, Debug)]
pub(super) struct EndpointSnapshot {
    pub key: EpKey,
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub resource_version: Option<String>,
    pub created: String,
    pub deleting: bool,
    pub finalizers: Vec<String>,
    pub provider_ref: Option<ProviderRef>,
    pub valid: Vec<(usize, Endpoint)>,
    pub invalid: Vec<RecordStatus>,
    pub hostnames: Option<String>,
    pub spec_hash: u64,
    pub conditions: Vec<Condition>,
    pub observed_generation: Option<i64>,
    /// Hash of the status as the server holds it.
    pub status_hash: Option<u64>,
}

impl EndpointSnapshot {
    pub(super) fn of(obj: &DNSEndpoint) -> EndpointSnapshot {
        let namespace = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let (valid, bad) = validate_endpoint_spec(obj);
        let invalid = bad
            .into_iter()
            .map(|(i, e)| {
                let spec = &obj.spec.endpoints[i];
                RecordStatus {
                    dns_name: endpoint::normalize_name(&spec.dns_name),
                    record_type: spec.record_type.to_string(),
                    set_identifier: spec.set_identifier.clone().filter(|s| !s.is_empty()),
                    provider: String::new(),
                    zone: None,
                    state: state::INVALID.into(),
                    message: Some(e.to_string()),
                }
            })
            .collect();
        let names: BTreeSet<&str> = obj.spec.endpoints.iter().map(|e| e.dns_name.trim_end_matches('.')).collect();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&obj.spec).unwrap_or_default().hash(&mut h);
        let status = obj.status.clone();
        EndpointSnapshot {
            key: ep_key(&namespace, &name, &uid),
            created: obj.meta().creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            generation: obj.meta().generation,
            resource_version: obj.meta().resource_version.clone(),
            deleting: obj.meta().deletion_timestamp.is_some(),
            finalizers: obj.finalizers().to_vec(),
            provider_ref: obj.spec.provider_ref.clone(),
            valid,
            invalid,
            hostnames: Some(summarize_names(&names)).filter(|h| !h.is_empty()),
            spec_hash: h.finish(),
            status_hash: status.as_ref().and_then(|s| serde_json::to_value(s).ok()).map(|v| status_hash(&v)),
            conditions: status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
            observed_generation: status.and_then(|s| s.observed_generation),
            namespace,
            name,
        }
    }

    fn finalized(&self) -> bool {
        self.finalizers.iter().any(|f| f == FINALIZER)
    }
}

struct EpEntry {
    snap: EndpointSnapshot,
    /// Providers per valid record (by spec index), or why none serves it.
    routes: BTreeMap<usize, Result<Vec<ProviderId>, String>>,
    /// Per provider, a hash of the records last sent to its worker.
    sent: BTreeMap<ProviderId, u64>,
    results: BTreeMap<(usize, ProviderId), RecordResult>,
    /// Deleting: providers that have not yet removed its records.
    waiting: BTreeSet<ProviderId>,
    releasing: bool,
    finalizer_attempts: u32,
}

struct ProviderEntry {
    obj: ProviderObject,
    domains: DomainFilter,
    tx: mpsc::UnboundedSender<WorkerMsg>,
    /// Secrets (namespace, name) its backend reads.
    secrets: BTreeSet<(String, String)>,
    finalizer_patched: bool,
}

pub(super) struct Router {
    client: Option<Client>,
    settings: Settings,
    metrics: Arc<Metrics>,
    writer: Arc<StatusWriter>,
    tx: mpsc::UnboundedSender<RouterMsg>,
    ctx: WorkerCtx,
    reports_tx: mpsc::UnboundedSender<(ProviderId, WorkerReport)>,
    reports_rx: Option<mpsc::UnboundedReceiver<(ProviderId, WorkerReport)>>,
    endpoints: HashMap<EpKey, EpEntry>,
    /// Valid records of all `endpoints`, kept as they change: summing them after every
    /// message cost a walk of every object per event (3 ms per change at 10,000 objects).
    desired_records: i64,
    providers: BTreeMap<ProviderId, ProviderEntry>,
    namespaces: NamespaceLabels,
    secrets: HashMap<(String, String), String>,
    listed: HashSet<Kind>,
    /// Keys seen since a watch restarted its listing, per kind.
    relisting: HashMap<Kind, HashSet<String>>,
    ready: bool,
    leading: bool,
    reroute_all: bool,
    reroute_ns: BTreeSet<String>,
    status_dirty: BTreeSet<EpKey>,
    /// Finalizer patches wait here for the fixed pool that sends them (see
    /// [`send_finalizer_patches`]).
    finalizer_queue: mpsc::UnboundedSender<FinalizerPatch>,
    finalizer_rx: Option<mpsc::UnboundedReceiver<FinalizerPatch>>,
    adding_finalizer: HashSet<EpKey>,
    /// Workers that get their Start after the records of the next re-route.
    starting: BTreeSet<ProviderId>,
}

impl Router {
    pub(super) fn new(
        client: Option<Client>,
        settings: Settings,
        metrics: Arc<Metrics>,
        writer: Arc<StatusWriter>,
        tx: mpsc::UnboundedSender<RouterMsg>,
    ) -> Router {
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let (finalizer_queue, finalizer_rx) = mpsc::unbounded_channel();
        let ctx = WorkerCtx {
            client: client.clone(),
            metrics: metrics.clone(),
            leader: settings.leader.clone(),
            coalesce: settings.coalesce,
            operator_namespace: settings.operator_namespace.clone(),
        };
        Router {
            client,
            finalizer_queue,
            finalizer_rx: Some(finalizer_rx),
            leading: is_leader(&settings.leader),
            settings,
            metrics,
            writer,
            tx,
            ctx,
            reports_tx,
            reports_rx: Some(reports_rx),
            endpoints: HashMap::new(),
            desired_records: 0,
            providers: BTreeMap::new(),
            namespaces: NamespaceLabels::new(),
            secrets: HashMap::new(),
            listed: HashSet::new(),
            relisting: HashMap::new(),
            ready: false,
            reroute_all: false,
            reroute_ns: BTreeSet::new(),
            status_dirty: BTreeSet::new(),
            adding_finalizer: HashSet::new(),
            starting: BTreeSet::new(),
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<RouterMsg>) {
        let mut reports = self.reports_rx.take().expect("reports receiver");
        if let (Some(client), Some(jobs)) = (self.client.clone(), self.finalizer_rx.take()) {
            tokio::spawn(send_finalizer_patches(
                client,
                jobs,
                self.settings.status_concurrency,
                self.tx.clone(),
                self.settings.leader.clone(),
            ));
        }
        let mut leader = Some(self.settings.leader.clone());
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    self.handle(msg);
                }
                Some((id, report)) = reports.recv() => self.handle_report(id, report),
                Some(leading) = super::leader_changed(&mut leader) => self.leadership_changed(leading),
            }
            // Everything already queued is handled before the work it causes.
            loop {
                if let Ok(msg) = rx.try_recv() {
                    self.handle(msg);
                } else if let Ok((id, report)) = reports.try_recv() {
                    self.handle_report(id, report);
                } else {
                    break;
                }
            }
            self.settle();
        }
    }

    fn handle(&mut self, msg: RouterMsg) {
        match msg {
            RouterMsg::Restart(kind) => {
                self.relisting.insert(kind, HashSet::new());
            }
            RouterMsg::Listed(kind) => self.listed(kind),
            RouterMsg::Upsert(item) => {
                self.mark_seen(&item);
                match item {
                    Item::Endpoint(s) => self.upsert_endpoint(*s),
                    Item::Provider(p) => self.upsert_provider(*p),
                    Item::Namespace(name, labels) => {
                        if self.namespaces.get(&name) != Some(&labels) {
                            self.reroute_ns.insert(name.clone());
                            self.namespaces.insert(name, labels);
                        }
                    }
                    Item::Secret(s) => self.upsert_secret(s),
                }
            }
            RouterMsg::Remove(item) => match item {
                Item::Endpoint(s) => self.remove_endpoint(&s.key),
                Item::Provider(p) => self.remove_provider(&p.id),
                Item::Namespace(name, _) => {
                    self.namespaces.remove(&name);
                    self.reroute_ns.insert(name);
                }
                Item::Secret(s) => {
                    let key = (s.namespace.clone(), s.name.clone());
                    self.secrets.remove(&key);
                    self.secret_changed(&key);
                }
            },
            RouterMsg::RetryFinalizer(key) => {
                self.adding_finalizer.remove(&key);
                if self.endpoints.get(&key).is_some_and(|e| !e.snap.finalized() && !e.snap.deleting) {
                    self.add_finalizer(&key);
                }
            }
        }
    }

    fn mark_seen(&mut self, item: &Item) {
        let (kind, key) = match item {
            Item::Endpoint(s) => (Kind::Endpoints, s.key.to_string()),
            Item::Provider(p) if p.id.namespace.is_some() => (Kind::Providers, p.id.to_string()),
            Item::Provider(p) => (Kind::ClusterProviders, p.id.to_string()),
            Item::Namespace(n, _) => (Kind::Namespaces, n.clone()),
            Item::Secret(s) => (Kind::Secrets, format!("{}/{}", s.namespace, s.name)),
        };
        if let Some(seen) = self.relisting.get_mut(&kind) {
            seen.insert(key);
        }
    }

    /// A listing completed: whatever it did not list is gone.
    fn listed(&mut self, kind: Kind) {
        if let Some(seen) = self.relisting.remove(&kind) {
            match kind {
                Kind::Endpoints => {
                    let gone: Vec<EpKey> =
                        self.endpoints.keys().filter(|k| !seen.contains(k.as_ref())).cloned().collect();
                    for k in gone {
                        self.remove_endpoint(&k);
                    }
                }
                Kind::Providers | Kind::ClusterProviders => {
                    let namespaced = kind == Kind::Providers;
                    let gone: Vec<ProviderId> = self
                        .providers
                        .keys()
                        .filter(|id| id.namespace.is_some() == namespaced && !seen.contains(&id.to_string()))
                        .cloned()
                        .collect();
                    for id in gone {
                        self.remove_provider(&id);
                    }
                }
                Kind::Namespaces => {
                    let gone: Vec<String> = self.namespaces.keys().filter(|n| !seen.contains(*n)).cloned().collect();
                    for n in gone {
                        self.namespaces.remove(&n);
                        self.reroute_ns.insert(n);
                    }
                }
                Kind::Secrets => {}
            }
        }
        self.listed.insert(kind);
        if !self.ready && NEEDED.iter().all(|k| self.listed.contains(k)) {
            self.ready = true;
            info!(
                endpoints = self.endpoints.len(),
                providers = self.providers.len(),
                "provider controller caches ready"
            );
            self.metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
            self.leadership_changed(self.leading);
            let ids: Vec<ProviderId> = self.providers.keys().cloned().collect();
            for id in &ids {
                self.start_worker(id);
            }
            self.reroute_all = true;
        }
    }

    fn upsert_endpoint(&mut self, snap: EndpointSnapshot) {
        let key = snap.key.clone();
        self.desired_records += snap.valid.len() as i64;
        let reroute = match self.endpoints.get_mut(&key) {
            Some(e) => {
                self.desired_records -= e.snap.valid.len() as i64;
                let reroute = e.snap.spec_hash != snap.spec_hash
                    || e.snap.finalized() != snap.finalized()
                    || e.snap.deleting != snap.deleting;
                e.snap = snap;
                reroute
            }
            None => {
                self.endpoints.insert(
                    key.clone(),
                    EpEntry {
                        snap,
                        routes: BTreeMap::new(),
                        sent: BTreeMap::new(),
                        results: BTreeMap::new(),
                        waiting: BTreeSet::new(),
                        releasing: false,
                        finalizer_attempts: 0,
                    },
                );
                true
            }
        };
        self.metrics.desired_records.set(self.desired_records);
        // A new version: an earlier finalizer patch either landed or lost a conflict.
        self.adding_finalizer.remove(&key);
        if !self.ready {
            return;
        }
        if reroute {
            self.route(&key);
        }
        // Our own status writes come back as events: a status that differs from what we
        // want (edited, or lost) is written again.
        self.status_dirty.insert(key.clone());
        if self.leading {
            self.ensure_finalizer(&key);
        }
    }

    fn remove_endpoint(&mut self, key: &EpKey) {
        let Some(e) = self.endpoints.remove(key) else { return };
        self.desired_records -= e.snap.valid.len() as i64;
        self.metrics.desired_records.set(self.desired_records);
        for id in e.sent.keys() {
            if let Some(p) = self.providers.get(id) {
                let _ = p.tx.send(WorkerMsg::Desired { ep: key.clone(), records: Vec::new() });
            }
        }
        self.writer.forget(key);
        self.status_dirty.remove(key);
        self.adding_finalizer.remove(key);
    }

    fn upsert_provider(&mut self, obj: ProviderObject) {
        let ours = obj.finalizers.iter().any(|f| f == FINALIZER);
        if obj.deleting && !ours {
            self.remove_provider(&obj.id);
            return;
        }
        let id = obj.id.clone();
        let secrets = secret_refs(&obj, &self.settings.operator_namespace);
        let domains = obj.spec.domains.as_ref().map(|d| DomainFilter::new(&d.include, &d.exclude)).unwrap_or_default();
        match self.providers.get_mut(&id) {
            Some(p) => {
                if p.obj.spec != obj.spec {
                    self.reroute_all = true;
                }
                p.domains = domains;
                p.secrets = secrets;
                p.obj = obj.clone();
                let _ = p.tx.send(WorkerMsg::Object(Box::new(obj)));
            }
            None => {
                let (tx, _) = mpsc::unbounded_channel();
                self.providers
                    .insert(id.clone(), ProviderEntry { obj, domains, tx, secrets, finalizer_patched: false });
                if self.ready {
                    self.start_worker(&id);
                    self.reroute_all = true;
                    // Start goes out after the records the re-route sends (see settle).
                }
            }
        }
        if self.leading {
            self.ensure_provider_finalizer(&id);
        }
    }

    fn start_worker(&mut self, id: &ProviderId) {
        let Some(p) = self.providers.get_mut(id) else { return };
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = Worker::new(p.obj.clone(), self.ctx.clone(), self.reports_tx.clone());
        tokio::spawn(worker.run(rx));
        p.tx = tx;
        for e in self.endpoints.values_mut() {
            e.sent.remove(id);
        }
        self.starting.insert(id.clone());
    }

    fn remove_provider(&mut self, id: &ProviderId) {
        // Dropping the sender stops the worker and any server it runs.
        if self.providers.remove(id).is_none() {
            return;
        }
        self.reroute_all = true;
        let keys: Vec<EpKey> =
            self.endpoints.iter().filter(|(_, e)| e.waiting.contains(id)).map(|(k, _)| k.clone()).collect();
        for k in keys {
            self.released(id, &k);
        }
    }

    fn upsert_secret(&mut self, s: SecretMeta) {
        let key = (s.namespace, s.name);
        let previous = self.secrets.insert(key.clone(), s.version.clone());
        if previous.is_some_and(|v| v != s.version) {
            self.secret_changed(&key);
        }
    }

    fn secret_changed(&mut self, key: &(String, String)) {
        for p in self.providers.values().filter(|p| p.secrets.contains(key)) {
            info!(provider = %p.obj.id, secret = %format!("{}/{}", key.0, key.1), "a Secret the provider reads changed; rebuilding its backend");
            let _ = p.tx.send(WorkerMsg::SecretChanged);
        }
    }

    fn handle_report(&mut self, id: ProviderId, report: WorkerReport) {
        match report {
            WorkerReport::Results(results) => {
                for (key, i, r) in results {
                    let Some(e) = self.endpoints.get_mut(&key) else { continue };
                    let routed = matches!(e.routes.get(&i), Some(Ok(ids)) if ids.contains(&id));
                    if routed {
                        e.results.insert((i, id.clone()), r);
                        self.status_dirty.insert(key);
                    }
                }
            }
            WorkerReport::Released(key) => self.released(&id, &key),
        }
    }

    fn released(&mut self, id: &ProviderId, key: &EpKey) {
        let Some(e) = self.endpoints.get_mut(key) else { return };
        e.waiting.remove(id);
        if e.releasing && e.waiting.is_empty() && self.leading {
            self.remove_finalizer(key);
        }
    }

    fn leadership_changed(&mut self, leading: bool) {
        self.leading = leading;
        if !leading || !self.ready {
            return;
        }
        info!("leading: checking finalizers and statuses of every object");
        let keys: Vec<EpKey> = self.endpoints.keys().cloned().collect();
        for k in &keys {
            self.ensure_finalizer(k);
            if let Some(e) = self.endpoints.get(k) {
                if e.releasing && e.waiting.is_empty() {
                    self.remove_finalizer(k);
                }
            }
        }
        self.status_dirty.extend(keys);
        let ids: Vec<ProviderId> = self.providers.keys().cloned().collect();
        for id in ids {
            self.ensure_provider_finalizer(&id);
        }
    }

    /// Work caused by the messages just handled: re-routing, provider finalizers, statuses.
    fn settle(&mut self) {
        if !self.ready {
            return;
        }
        let keys: Vec<EpKey> = if std::mem::take(&mut self.reroute_all) {
            self.reroute_ns.clear();
            self.endpoints.keys().cloned().collect()
        } else if !self.reroute_ns.is_empty() {
            let ns = std::mem::take(&mut self.reroute_ns);
            self.endpoints.iter().filter(|(_, e)| ns.contains(&e.snap.namespace)).map(|(k, _)| k.clone()).collect()
        } else {
            Vec::new()
        };
        for k in &keys {
            self.route(k);
        }
        for id in std::mem::take(&mut self.starting) {
            if let Some(p) = self.providers.get(&id) {
                let _ = p.tx.send(WorkerMsg::Start);
            }
        }
        self.release_deleted_providers();
        let dirty = std::mem::take(&mut self.status_dirty);
        if self.leading {
            for k in dirty {
                self.write_status(&k);
            }
        }
    }

    /// Routes one object's records and sends each provider's worker what changed.
    fn route(&mut self, key: &EpKey) {
        let Some(e) = self.endpoints.get(key) else { return };
        let snap = &e.snap;
        if snap.deleting {
            if snap.finalized() {
                self.start_release(key);
            }
            return;
        }
        // The leader writes records only for objects that carry the finalizer, so no record
        // can outlive its object; followers serve their embedded zones regardless.
        let routable = snap.finalized() || !self.leading;
        let claimant =
            Claimant { created: snap.created.clone(), namespace: snap.namespace.clone(), name: snap.name.clone() };
        let mut routes = BTreeMap::new();
        let mut per_provider: BTreeMap<ProviderId, Vec<(usize, DesiredRecord)>> = BTreeMap::new();
        if routable {
            for (i, ep) in &snap.valid {
                let r = self.providers_for(snap, ep);
                if let Ok(ids) = &r {
                    for id in ids {
                        per_provider
                            .entry(id.clone())
                            .or_default()
                            .push((*i, DesiredRecord { endpoint: ep.clone(), claimant: claimant.clone() }));
                    }
                }
                routes.insert(*i, r);
            }
        }
        let Some(e) = self.endpoints.get_mut(key) else { return };
        let targets: BTreeSet<ProviderId> = e.sent.keys().chain(per_provider.keys()).cloned().collect();
        for id in targets {
            let records = per_provider.remove(&id).unwrap_or_default();
            let hash = records_hash(&records);
            if e.sent.get(&id) == Some(&hash) {
                continue;
            }
            if let Some(p) = self.providers.get(&id) {
                let _ = p.tx.send(WorkerMsg::Desired { ep: key.clone(), records: records.clone() });
            }
            if records.is_empty() {
                e.sent.remove(&id);
            } else {
                e.sent.insert(id, hash);
            }
        }
        e.results.retain(|(i, id), _| matches!(routes.get(i), Some(Ok(ids)) if ids.contains(id)));
        e.routes = routes;
        self.status_dirty.insert(key.clone());
    }

    /// A deleted object's records leave every provider that may hold them; the finalizer
    /// goes once they all say so.
    fn start_release(&mut self, key: &EpKey) {
        let Some(e) = self.endpoints.get(key) else { return };
        if e.releasing {
            return;
        }
        let mut holders: BTreeSet<ProviderId> = e.sent.keys().cloned().collect();
        let snap = e.snap.clone();
        for (_, ep) in &snap.valid {
            if let Ok(ids) = self.providers_for(&snap, ep) {
                holders.extend(ids);
            }
        }
        let names: Vec<String> = snap.valid.iter().map(|(_, ep)| ep.dns_name.clone()).collect();
        for id in &holders {
            if let Some(p) = self.providers.get(id) {
                let _ = p.tx.send(WorkerMsg::Release { ep: key.clone(), names: names.clone() });
            }
        }
        let Some(e) = self.endpoints.get_mut(key) else { return };
        e.sent.clear();
        e.waiting = holders.into_iter().filter(|id| self.providers.contains_key(id)).collect();
        e.releasing = true;
        self.status_dirty.insert(key.clone());
        if e.waiting.is_empty() && self.leading {
            self.remove_finalizer(key);
        }
    }

    fn admits_namespace(&self, p: &ProviderObject, ns: &str) -> bool {
        match &p.id.namespace {
            Some(own) => own == ns,
            None => match &p.spec.namespace_selector {
                None => true,
                Some(sel) => {
                    let empty = BTreeMap::new();
                    selector::matches(sel, self.namespaces.get(ns).unwrap_or(&empty))
                }
            },
        }
    }

    /// Providers serving a record: the referenced one, or all admitting the namespace with
    /// the longest matching domain.
    fn providers_for(&self, snap: &EndpointSnapshot, ep: &Endpoint) -> Result<Vec<ProviderId>, String> {
        let ns = &snap.namespace;
        if let Some(r) = &snap.provider_ref {
            let id = ProviderId {
                kind: r.kind,
                namespace: (r.kind == ProviderRefKind::DNSProvider).then(|| ns.to_string()),
                name: r.name.clone(),
            };
            let Some(p) = self.providers.get(&id) else {
                return Err(format!("{}: spec.providerRef names {id}, which does not exist", ep.key()));
            };
            if !self.admits_namespace(&p.obj, ns) {
                return Err(format!("{}: {id} does not serve namespace {ns} (namespaceSelector)", ep.key()));
            }
            if !p.domains.matches(&ep.dns_name) {
                return Err(format!("{}: {id} does not manage this name (spec.domains)", ep.key()));
            }
            return Ok(vec![id]);
        }
        let mut best: Option<usize> = None;
        let mut ids = Vec::new();
        // Only the namespace's own providers and cluster providers can serve it.
        let own = self.providers.range(
            ProviderId { kind: ProviderRefKind::DNSProvider, namespace: Some(ns.clone()), name: String::new() }..,
        );
        let own =
            own.take_while(|(id, _)| id.kind == ProviderRefKind::DNSProvider && id.namespace.as_ref() == Some(ns));
        let cluster = self.providers.iter().filter(|(id, _)| id.kind == ProviderRefKind::ClusterDNSProvider);
        for (id, p) in own.chain(cluster) {
            if !self.admits_namespace(&p.obj, ns) {
                continue;
            }
            let Some(len) = p.domains.match_len(&ep.dns_name) else { continue };
            match best {
                Some(b) if len < b => {}
                Some(b) if len == b => ids.push(id.clone()),
                _ => {
                    best = Some(len);
                    ids = vec![id.clone()];
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

    /// Computes the object's status and queues it when it differs from the server's.
    fn write_status(&mut self, key: &EpKey) {
        let Some(e) = self.endpoints.get(key) else { return };
        let snap = &e.snap;
        if !snap.deleting && !snap.finalized() {
            // Written once the finalizer is on and records are routed.
            return;
        }
        let mut records: Vec<RecordStatus> = snap.invalid.clone();
        if !snap.deleting {
            let valid: BTreeMap<usize, &Endpoint> = snap.valid.iter().map(|(i, ep)| (*i, ep)).collect();
            for (i, route) in &e.routes {
                let Some(ep) = valid.get(i) else { continue };
                let base = RecordStatus {
                    dns_name: ep.dns_name.clone(),
                    record_type: ep.record_type.to_string(),
                    set_identifier: Some(ep.set_identifier.clone()).filter(|s| !s.is_empty()),
                    provider: String::new(),
                    zone: None,
                    state: state::PENDING.into(),
                    message: None,
                };
                match route {
                    Err(msg) => records.push(RecordStatus {
                        state: state::NO_PROVIDER.into(),
                        message: Some(msg.clone()),
                        ..base
                    }),
                    Ok(ids) => {
                        for id in ids {
                            let r = e.results.get(&(*i, id.clone()));
                            records.push(RecordStatus {
                                provider: id.to_string(),
                                zone: r.and_then(|r| r.zone.clone()),
                                state: r.map(|r| r.state.clone()).unwrap_or_else(|| state::PENDING.into()),
                                message: Some(
                                    r.map(|r| r.message.clone())
                                        .unwrap_or_else(|| format!("{}: waiting for provider {id}", ep.key())),
                                )
                                .filter(|m| !m.is_empty()),
                                ..base.clone()
                            });
                        }
                    }
                }
            }
        }
        records.sort();
        let (conditions, applied) =
            status::endpoint_conditions(&records, snap.deleting, snap.generation, &snap.conditions, &now_time());
        let status = DnsEndpointStatus {
            observed_generation: if applied { snap.generation } else { snap.observed_generation },
            conditions,
            records,
            hostnames: snap.hostnames.clone(),
        };
        let Ok(value) = serde_json::to_value(&status) else { return };
        let hash = status_hash(&value);
        // Conditions keep their transition times, so an unchanged status hashes the same as
        // the server's copy.
        if snap.status_hash == Some(hash) || self.writer.already_written(key, hash) {
            return;
        }
        self.writer.push(key.clone(), snap.namespace.clone(), snap.name.clone(), value);
    }

    fn ensure_finalizer(&mut self, key: &EpKey) {
        if self.endpoints.get(key).is_some_and(|e| !e.snap.deleting && !e.snap.finalized()) {
            self.add_finalizer(key);
        }
    }

    fn add_finalizer(&mut self, key: &EpKey) {
        let Some(e) = self.endpoints.get_mut(key) else { return };
        if !self.adding_finalizer.insert(key.clone()) {
            return;
        }
        let mut finalizers = e.snap.finalizers.clone();
        finalizers.push(FINALIZER.to_string());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": e.snap.resource_version}});
        e.finalizer_attempts += 1;
        let _ = self.finalizer_queue.send(FinalizerPatch {
            key: key.clone(),
            namespace: e.snap.namespace.clone(),
            name: e.snap.name.clone(),
            patch,
            retry_after: Some(backoff(e.finalizer_attempts)),
        });
    }

    fn remove_finalizer(&mut self, key: &EpKey) {
        let Some(e) = self.endpoints.get(key) else { return };
        let finalizers: Vec<String> = e.snap.finalizers.iter().filter(|f| *f != FINALIZER).cloned().collect();
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": e.snap.resource_version}});
        debug!(object = %format!("{}/{}", e.snap.namespace, e.snap.name), "records removed; releasing the object");
        let _ = self.finalizer_queue.send(FinalizerPatch {
            key: key.clone(),
            namespace: e.snap.namespace.clone(),
            name: e.snap.name.clone(),
            patch,
            retry_after: None,
        });
    }

    fn ensure_provider_finalizer(&mut self, id: &ProviderId) {
        let Some(p) = self.providers.get_mut(id) else { return };
        if p.obj.deleting || p.obj.finalizers.iter().any(|f| f == FINALIZER) || p.finalizer_patched {
            return;
        }
        p.finalizer_patched = true;
        let mut finalizers = p.obj.finalizers.clone();
        finalizers.push(FINALIZER.to_string());
        let rv = p.obj.resource_version.clone();
        self.patch_provider_finalizers(id.clone(), finalizers, rv);
    }

    /// Deleting providers are released once no object routes to them or waits on them, so
    /// deleting a namespace never orphans records.
    fn release_deleted_providers(&mut self) {
        if !self.leading {
            return;
        }
        let deleting: Vec<ProviderId> = self
            .providers
            .iter()
            .filter(|(_, p)| p.obj.deleting && !p.finalizer_patched)
            .map(|(id, _)| id.clone())
            .collect();
        for id in deleting {
            let in_use = self.endpoints.values().any(|e| e.sent.contains_key(&id) || e.waiting.contains(&id));
            if in_use {
                continue;
            }
            let Some(p) = self.providers.get_mut(&id) else { continue };
            p.finalizer_patched = true;
            let finalizers: Vec<String> = p.obj.finalizers.iter().filter(|f| *f != FINALIZER).cloned().collect();
            let rv = p.obj.resource_version.clone();
            self.patch_provider_finalizers(id, finalizers, rv);
        }
    }

    fn patch_provider_finalizers(&self, id: ProviderId, finalizers: Vec<String>, rv: Option<String>) {
        let Some(client) = self.client.clone() else { return };
        let leader = self.settings.leader.clone();
        tokio::spawn(async move {
            if !is_leader(&leader) {
                return;
            }
            let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": rv}});
            let pp = PatchParams::default();
            let res = match &id.namespace {
                Some(ns) => Api::<DNSProvider>::namespaced(client, ns)
                    .patch(&id.name, &pp, &Patch::Merge(&patch))
                    .await
                    .map(|_| ()),
                None => {
                    Api::<ClusterDNSProvider>::all(client).patch(&id.name, &pp, &Patch::Merge(&patch)).await.map(|_| ())
                }
            };
            match res {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    warn!(provider = %id, error = %e, "updating the provider's finalizers failed; retried on its next event")
                }
            }
        });
    }
}

/// Secrets a provider's backend and registry read, as (namespace, name).
/// A finalizer patch of one DNSEndpoint, queued for [`send_finalizer_patches`].
struct FinalizerPatch {
    key: EpKey,
    namespace: String,
    name: String,
    patch: serde_json::Value,
    /// Adding: on failure the router is asked to retry after this delay. Removing: retried
    /// on the object's next event.
    retry_after: Option<std::time::Duration>,
}

/// Sends queued finalizer patches, `concurrency` at a time. A queue of small jobs rather than
/// a task per object: a spawned task holds its whole future (the kube request included,
/// kilobytes) from the start, and bulk creation queues one patch per new object faster than
/// the apiserver takes them — at 100,000 new objects that was the largest share of the
/// operator's memory.
async fn send_finalizer_patches(
    client: Client,
    jobs: mpsc::UnboundedReceiver<FinalizerPatch>,
    concurrency: usize,
    tx: mpsc::UnboundedSender<RouterMsg>,
    leader: super::Leader,
) {
    let jobs = futures::stream::unfold(jobs, |mut rx| async move { rx.recv().await.map(|j| (j, rx)) });
    jobs.for_each_concurrent(concurrency.max(1), |job| {
        let (client, tx, leader) = (client.clone(), tx.clone(), leader.clone());
        async move {
            if !is_leader(&leader) {
                return;
            }
            let FinalizerPatch { key, namespace, name, patch, retry_after } = job;
            let api: Api<DNSEndpoint> = Api::namespaced(client, &namespace);
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => match retry_after {
                    // A conflict means a newer version is on its way; anything else is retried.
                    Some(delay) => {
                        warn!(object = %format!("{namespace}/{name}"), error = %e, "cannot add finalizer; records of this object are not written until it is in place");
                        // The wait holds no slot of the pool.
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.send(RouterMsg::RetryFinalizer(key));
                        });
                    }
                    None => {
                        warn!(object = %format!("{namespace}/{name}"), error = %e, "cannot remove finalizer; retried on the object's next event")
                    }
                },
            }
        }
    })
    .await;
}

fn secret_refs(p: &ProviderObject, operator_namespace: &str) -> BTreeSet<(String, String)> {
    let ns = p.id.namespace.clone().unwrap_or_else(|| operator_namespace.to_string());
    let spec = &p.spec;
    let names = [
        spec.rfc2136.as_ref().and_then(|r| r.tsig.as_ref()).map(|t| t.secret_ref.name.clone()),
        spec.route53.as_ref().and_then(|r| r.credentials.as_ref()).map(|c| c.secret_ref.name.clone()),
        spec.registry
            .as_ref()
            .and_then(|r| r.txt.as_ref())
            .and_then(|t| t.encryption.as_ref())
            .map(|e| e.secret_ref.name.clone()),
    ];
    names.into_iter().flatten().map(|n| (ns.clone(), n)).collect()
}

fn records_hash(records: &[(usize, DesiredRecord)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{records:?}").hash(&mut h);
    h.finish()
}

fn summarize_names(names: &BTreeSet<&str>) -> String {
    let mut it = names.iter();
    match (it.next(), names.len()) {
        (None, _) => String::new(),
        (Some(first), 1) => first.to_string(),
        (Some(first), n) => format!("{first} (+{})", n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, names: &[&str]) -> EndpointSnapshot {
        let eps: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"dnsName": n, "recordType": "A", "targets": ["192.0.2.1"]}))
            .collect();
        let obj: DNSEndpoint = serde_json::from_value(serde_json::json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSEndpoint",
            "metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"endpoints": eps}
        }))
        .expect("test DNSEndpoint");
        EndpointSnapshot::of(&obj)
    }

    #[test]
    fn desired_records_gauge_follows_upserts_and_removals() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let (_leader_tx, leader) = tokio::sync::watch::channel(true);
        let settings = Settings {
            operator_namespace: "op".into(),
            coalesce: std::time::Duration::from_millis(10),
            status_concurrency: 1,
            leader,
        };
        let metrics = Arc::new(Metrics::default());
        let mut router = Router::new(None, settings, metrics.clone(), Arc::new(StatusWriter::default()), tx);
        router.upsert_endpoint(endpoint("a", &["a.example.com", "b.example.com"]));
        router.upsert_endpoint(endpoint("b", &["c.example.com"]));
        assert_eq!(metrics.desired_records.get(), 3);
        // A new version of "a" with one record replaces its two.
        router.upsert_endpoint(endpoint("a", &["a.example.com"]));
        assert_eq!(metrics.desired_records.get(), 2);
        let key = endpoint("b", &[]).key;
        router.remove_endpoint(&key);
        router.remove_endpoint(&key);
        assert_eq!(metrics.desired_records.get(), 1);
    }

    #[test]
    fn finalizer_patches_of_new_objects_wait_as_small_jobs_not_tasks() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let (_leader_tx, leader) = tokio::sync::watch::channel(true);
        let settings = Settings {
            operator_namespace: "op".into(),
            coalesce: std::time::Duration::from_millis(10),
            status_concurrency: 4,
            leader,
        };
        let mut router =
            Router::new(None, settings, Arc::new(Metrics::default()), Arc::new(StatusWriter::default()), tx);
        let mut jobs = router.finalizer_rx.take().expect("finalizer queue");
        let n = 10_000;
        for i in 0..n {
            let snap = endpoint(&format!("e{i}"), &["a.example.com"]);
            let key = snap.key.clone();
            router.upsert_endpoint(snap);
            router.add_finalizer(&key);
            // Asked again before the first patch came back: still one patch.
            router.add_finalizer(&key);
        }
        let mut queued = 0;
        while let Ok(job) = jobs.try_recv() {
            assert_eq!(job.patch["metadata"]["finalizers"], json!([FINALIZER]));
            assert!(job.retry_after.is_some());
            queued += 1;
        }
        assert_eq!(queued, n);
        // What waits per object is this job (plus its strings), not a task with a request future.
        assert!(std::mem::size_of::<FinalizerPatch>() < 256, "{}", std::mem::size_of::<FinalizerPatch>());
    }

    #[test]
    fn names_summary() {
        let names: BTreeSet<&str> = ["b.example.com", "a.example.com"].into();
        assert_eq!(summarize_names(&names), "a.example.com (+1)");
    }
}
