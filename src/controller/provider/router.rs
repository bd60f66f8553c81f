//! The router: keeps the index of which provider serves which record of which DNSEndpoint,
//! updated from watch deltas; hands each provider's worker the records that changed; turns
//! the workers' results into DNSEndpoint statuses; adds and removes finalizers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::budget::{self, Claim, Cost, OverBudget};
use super::inbox::{self, InboxSender};
use super::status_writer::{serialize_status, status_hash, StatusWriter};
use super::worker::{Worker, WorkerCtx, WorkerMsg, WorkerReport};
use super::{
    backoff, ep_key, is_leader, now_time, validate_endpoint_spec, EpKey, NamespaceMeta, Namespaces, ProviderObject,
    RecordResult, Settings,
};
use crate::controller::supervise::{self, count_restart, GaveUp, Restarts, Stopped};
use crate::controller::{selector, tenancy, FINALIZER};
use crate::crd::{
    ClusterDNSProvider, DNSEndpoint, DNSProvider, DnsEndpointStatus, ProviderId, ProviderRef, ProviderRefKind,
    RecordStatus,
};
use crate::dns::endpoint::{self, Endpoint};
use crate::dns::filter::DomainFilter;
use crate::dns::plan::{Claimant, DesiredRecord};
use crate::metrics::{Gate, Metrics};
use crate::status::{self, state};
use extdns_core::vec_map::VecMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Endpoints,
    Providers,
    ClusterProviders,
    Namespaces,
    Secrets,
}

/// Trimmed objects read again at once.
const REFETCH_CONCURRENCY: usize = 2;

/// How long a status waits for the providers' first report on records just sent to them.
/// Written at once, it would say Pending and be written again a moment later with the
/// outcome: two writes for every new object and every change, in a burst most of the
/// apiserver's work. A provider that takes longer is shown Pending after this.
const REPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

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
    Namespace(String, NamespaceMeta),
    Secret(SecretMeta),
}

/// What a queued finalizer patch does to the object's finalizers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FinalizerOp {
    Add,
    Remove,
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
    /// Removing a finalizer failed; try again.
    RetryRelease(EpKey),
    /// Adding or removing a provider's finalizer failed; try again.
    RetryProviderFinalizer(ProviderId),
    /// Makes a provider's worker panic, as a bug would (supervision tests).
    #[cfg(test)]
    PanicWorker(ProviderId),
    /// An object trimmed for its namespace's record limit fits again: what a fresh read of
    /// it found (nothing when it is gone or was re-created).
    Refetched(EpKey, Option<Box<EndpointSnapshot>>),
    /// Reading a trimmed object failed; try again.
    RetryRefetch(EpKey),
}

/// The fields of a DNSEndpoint the controller reads, its spec already validated.
#[derive(Clone, Debug)]
pub(super) struct EndpointSnapshot {
    /// `namespace/name@uid`: the namespace and the name are read from it, not kept twice.
    pub key: EpKey,
    pub generation: Option<i64>,
    pub resource_version: Option<String>,
    pub created: String,
    pub deleting: bool,
    pub finalizers: Vec<String>,
    pub provider_ref: Option<ProviderRef>,
    /// Shared with the workers it is routed to (see [`DesiredRecord`]).
    pub valid: Vec<(usize, Arc<Endpoint>)>,
    pub invalid: Vec<RecordStatus>,
    pub hostnames: Option<String>,
    pub spec_hash: u64,
    /// What is read of the conditions the server holds (see [`PriorCondition`]).
    pub conditions: Box<[PriorCondition]>,
    pub observed_generation: Option<i64>,
    /// Hash of the status as the server holds it.
    pub status_hash: Option<u64>,
    /// What the object asks of its namespace's record budget.
    pub cost: Cost,
    /// Its records were dropped (`valid` and `invalid` are empty) because its namespace is
    /// over its record limit; `cost` still says what they were.
    pub trimmed: bool,
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
        let status = obj.status.clone();
        EndpointSnapshot {
            key: ep_key(&namespace, &name, &uid),
            created: obj.meta().creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            generation: obj.meta().generation,
            resource_version: obj.meta().resource_version.clone(),
            deleting: obj.meta().deletion_timestamp.is_some(),
            finalizers: obj.finalizers().to_vec(),
            provider_ref: obj.spec.provider_ref.clone(),
            valid: exact(valid.into_iter().map(|(i, e)| (i, Arc::new(e))).collect()),
            invalid,
            hostnames: Some(summarize_names(&names)).filter(|h| !h.is_empty()),
            spec_hash: obj.spec.digest(),
            cost: spec_cost(&obj.spec.endpoints),
            trimmed: false,
            status_hash: status.as_ref().and_then(serialize_status).map(|v| status_hash(&v)),
            conditions: status
                .as_ref()
                .map(|s| s.conditions.iter().map(PriorCondition::of).collect())
                .unwrap_or_default(),
            observed_generation: status.and_then(|s| s.observed_generation),
        }
    }

    pub(super) fn namespace(&self) -> &str {
        self.key.split_once('/').map_or("", |(ns, _)| ns)
    }

    pub(super) fn name(&self) -> &str {
        let rest = self.key.split_once('/').map_or(&*self.key, |(_, rest)| rest);
        rest.rsplit_once('@').map_or(rest, |(name, _)| name)
    }

    fn finalized(&self) -> bool {
        self.finalizers.iter().any(|f| f == FINALIZER)
    }

    /// Takes the key of `old` (the version this one replaces, filed under an equal key), and
    /// its records when they are the same records: the workers and the router's tables hold
    /// those, and a version that changed only metadata or status (the finalizer, every status
    /// write) would otherwise keep a second copy of each.
    fn share_records(&mut self, old: &EndpointSnapshot) {
        self.key.clone_from(&old.key);
        let same = self.spec_hash == old.spec_hash
            && !self.trimmed
            && !old.trimmed
            && self.valid.len() == old.valid.len()
            && self.valid.iter().zip(&old.valid).all(|((i, a), (j, b))| i == j && a == b);
        if same {
            self.valid.clone_from(&old.valid);
        }
    }

    /// Drops the records (the object's namespace is over its record limit); what they cost
    /// is kept, to know when they fit again.
    fn trim(&mut self) {
        self.valid = Vec::new();
        self.invalid = Vec::new();
        self.trimmed = true;
    }

    /// What it counts against its namespace's budget: an object being deleted whose records
    /// were already dropped holds none.
    fn budget_cost(&self) -> Cost {
        if self.deleting && self.trimmed {
            Cost::default()
        } else {
            self.cost
        }
    }
}

/// What the records of a spec cost: their number, and the characters of the fields the
/// operator copies per record.
fn spec_cost(endpoints: &[crate::crd::EndpointSpec]) -> Cost {
    let bytes = endpoints
        .iter()
        .map(|e| {
            e.dns_name.len()
                + e.targets.iter().map(String::len).sum::<usize>()
                + e.set_identifier.as_ref().map_or(0, String::len)
                + e.labels.iter().flatten().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                + e.provider_specific.iter().flatten().map(|p| p.name.len() + p.value.len()).sum::<usize>()
        })
        .sum();
    Cost { records: endpoints.len(), bytes }
}

struct EpEntry {
    snap: EndpointSnapshot,
    /// Providers per valid record (by spec index), or why none serves it.
    routes: VecMap<usize, Result<Vec<ProviderId>, String>>,
    /// Per provider, a hash of the records last sent to its worker.
    sent: VecMap<ProviderId, u64>,
    results: VecMap<(usize, ProviderId), RecordResult>,
    /// Deleting: providers that have not yet removed its records.
    waiting: BTreeSet<ProviderId>,
    releasing: bool,
    finalizer_attempts: u32,
    /// Records a provider serves but the namespace may not claim there, with why.
    refused: Vec<(usize, ProviderId, String)>,
    /// Why none of its records is served: its namespace's record limit.
    /// Boxed: rare, and as large as a tenth of the entry.
    over_budget: Option<Box<OverBudget>>,
    /// When records of it were last sent to a provider.
    routed_at: Option<Instant>,
}

impl EpEntry {
    /// Some routed record has no report since it was sent.
    fn unreported(&self) -> bool {
        self.routes
            .iter()
            .any(|(i, r)| matches!(r, Ok(ids) if ids.iter().any(|id| !self.results.contains_key(&(*i, id.clone())))))
    }

    /// Until when its status waits for the first report on records just sent
    /// ([`REPORT_GRACE`]).
    fn report_due(&self, now: Instant) -> Option<Instant> {
        let until = self.routed_at? + REPORT_GRACE;
        (!self.snap.deleting && until > now && self.unreported()).then_some(until)
    }

    /// Whether the status can wait for the providers: some routed record has no report
    /// since it was sent, while the status the server holds already describes this
    /// generation. After a restart or a change of leader that is every record of every
    /// object; writing them Pending would flip every object to not Ready and back (two
    /// writes each, and GitOps tools showing everything progressing) for nothing.
    fn status_can_wait(&self) -> bool {
        let unreported = self.unreported();
        let described = self.snap.conditions.iter().any(|c| {
            &*c.type_ == status::READY
                && c.observed_generation.is_some()
                && c.observed_generation == self.snap.generation
        });
        !self.snap.deleting && unreported && described
    }
}

struct ProviderEntry {
    obj: ProviderObject,
    domains: DomainFilter,
    /// Its worker's inbox; `None` before the worker starts and while a worker that died
    /// waits for its restart (which sends the whole state again).
    tx: Option<InboxSender>,
    /// The worker's task, to tell its end from that of a worker it replaced.
    task: Option<tokio::task::Id>,
    restarts: Restarts,
    /// When a worker that died starts again.
    restart_at: Option<Instant>,
    /// Secrets (namespace, name) its backend reads.
    secrets: BTreeSet<(String, String)>,
    finalizer_patched: bool,
    finalizer_attempts: u32,
}

/// Hands `msg` to `id`'s worker. A closed inbox means the worker died: it is noted in `dead`
/// and restarted, and the restart sends it its whole state again, so nothing is lost.
fn send(
    providers: &BTreeMap<ProviderId, ProviderEntry>,
    dead: &mut BTreeSet<ProviderId>,
    id: &ProviderId,
    msg: WorkerMsg,
) {
    let Some(tx) = providers.get(id).and_then(|p| p.tx.as_ref()) else { return };
    if tx.send(msg).is_err() {
        dead.insert(id.clone());
    }
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
    /// Boxed: an entry is several hundred bytes, and a table sized for growth holds up to
    /// twice as many slots as entries.
    endpoints: HashMap<EpKey, Box<EpEntry>>,
    providers: BTreeMap<ProviderId, ProviderEntry>,
    namespaces: Namespaces,
    /// Provider verdicts must be recomputed (a provider came, went or changed).
    readmit: bool,
    secrets: HashMap<(String, String), String>,
    listed: HashSet<Kind>,
    /// Keys seen since a watch restarted its listing, per kind.
    relisting: HashMap<Kind, HashSet<String>>,
    ready: bool,
    leading: bool,
    reroute_all: bool,
    reroute_ns: BTreeSet<String>,
    status_dirty: BTreeSet<EpKey>,
    finalizer_writes: Arc<Semaphore>,
    adding_finalizer: HashSet<EpKey>,
    removing_finalizer: HashSet<EpKey>,
    /// Finalizer patches waiting for a write permit, oldest first, as keys: the patch is built
    /// when it is sent, from the object's version then. Thousands wait when objects arrive in
    /// bulk; a spawned task each (its request, client and channel clones) made 7.6 MB of the
    /// peak at 10,000 objects.
    finalizer_queue: VecDeque<EpKey>,
    finalizer_ops: HashMap<EpKey, FinalizerOp>,
    /// Workers that get their Start after the records of the next re-route.
    starting: BTreeSet<ProviderId>,
    /// The workers' tasks: a worker that panics is seen here and restarted.
    workers: JoinSet<Result<(), Stopped>>,
    worker_ids: HashMap<tokio::task::Id, ProviderId>,
    /// Workers whose inbox was found closed.
    dead: BTreeSet<ProviderId>,
    /// Finalizer writes in flight and their retry timers (aborted with the router); a write
    /// that failed returns the retry to send after its backoff.
    writes: JoinSet<Option<(Duration, RouterMsg)>>,
    /// A worker that cannot be restarted: the controller stops.
    gave_up: Option<GaveUp>,
    /// Opened once every watch has listed its kind.
    ready_gate: Option<Gate>,
    /// Record budgets per namespace.
    budgets: HashMap<String, NamespaceBudget>,
    /// Namespaces whose objects may not all fit their budget: decided before routing.
    budget_dirty: BTreeSet<String>,
    /// Objects to route once the budgets are decided.
    deferred_routes: BTreeSet<EpKey>,
    /// Trimmed objects that fit again and must be read again, and those being read.
    refetch: BTreeSet<EpKey>,
    refetching: HashSet<EpKey>,
    refetch_permits: Arc<Semaphore>,
    /// Statuses waiting for their providers' first report, by when they are written anyway.
    status_timers: BTreeSet<(Instant, EpKey)>,
}

/// The objects of one namespace and what they cost together.
#[derive(Default)]
struct NamespaceBudget {
    keys: HashSet<EpKey>,
    total: Cost,
    /// How many of them are refused.
    over: usize,
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
        let ctx = WorkerCtx {
            client: client.clone(),
            metrics: metrics.clone(),
            leader: settings.leader.clone(),
            coalesce: settings.coalesce,
            backend_timeout: settings.backend_timeout,
            operator_namespace: settings.operator_namespace.clone(),
            namespaced_ambient: settings.tenancy.namespaced_ambient_credentials,
        };
        Router {
            client,
            finalizer_writes: Arc::new(Semaphore::new(settings.status_concurrency.max(1))),
            leading: is_leader(&settings.leader),
            settings,
            metrics,
            writer,
            tx,
            ctx,
            reports_tx,
            reports_rx: Some(reports_rx),
            endpoints: HashMap::new(),
            providers: BTreeMap::new(),
            namespaces: Namespaces::new(),
            readmit: false,
            secrets: HashMap::new(),
            listed: HashSet::new(),
            relisting: HashMap::new(),
            ready: false,
            reroute_all: false,
            reroute_ns: BTreeSet::new(),
            status_dirty: BTreeSet::new(),
            adding_finalizer: HashSet::new(),
            removing_finalizer: HashSet::new(),
            finalizer_queue: VecDeque::new(),
            finalizer_ops: HashMap::new(),
            starting: BTreeSet::new(),
            workers: JoinSet::new(),
            worker_ids: HashMap::new(),
            dead: BTreeSet::new(),
            writes: JoinSet::new(),
            gave_up: None,
            ready_gate: None,
            budgets: HashMap::new(),
            budget_dirty: BTreeSet::new(),
            deferred_routes: BTreeSet::new(),
            refetch: BTreeSet::new(),
            refetching: HashSet::new(),
            // Each read holds one whole object (up to the apiserver's size limit) for a moment.
            refetch_permits: Arc::new(Semaphore::new(REFETCH_CONCURRENCY)),
            status_timers: BTreeSet::new(),
        }
    }

    /// `gate` opens once every watch has listed its kind.
    pub(super) fn with_ready(mut self, gate: Gate) -> Router {
        self.ready_gate = Some(gate);
        self
    }

    /// Runs until the watches are gone, or a worker cannot be restarted.
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<RouterMsg>) -> Result<(), GaveUp> {
        let Some(mut reports) = self.reports_rx.take() else { return Ok(()) };
        let mut leader = Some(self.settings.leader.subscribe());
        loop {
            let restart_at = self.providers.values().filter_map(|p| p.restart_at).min();
            let status_at = self.status_timers.first().map(|(at, _)| *at);
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { return Ok(()) };
                    self.handle(msg);
                }
                Some((id, report)) = reports.recv() => self.handle_report(id, report),
                Some(leading) = super::leader_changed(&mut leader) => self.leadership_changed(leading),
                Some(done) = self.workers.join_next_with_id() => self.worker_ended(done),
                Some(done) = self.writes.join_next() => match done {
                    Ok(None) => {}
                    Ok(Some((delay, retry))) => {
                        let tx = self.tx.clone();
                        self.writes.spawn(async move {
                            tokio::time::sleep(delay).await;
                            // The router is gone only when the controller stops.
                            if tx.send(retry).is_err() {
                                debug!("not retrying a finalizer update: the controller is stopping");
                            }
                            None
                        });
                    }
                    Err(e) => {
                        let why = supervise::stopped::<()>(Err(e)).err();
                        count_restart(&self.metrics, "finalizer-write");
                        error!(reason = ?why, "a finalizer write stopped; it is retried on the object's next event");
                    }
                },
                _ = sleep_until(restart_at) => self.restart_due(),
                _ = sleep_until(status_at) => self.statuses_due(),
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
            if let Some(gave_up) = self.gave_up.take() {
                return Err(gave_up);
            }
        }
    }

    /// A worker's task ended. One that its provider still uses panicked (or returned
    /// without being told to): it is restarted with backoff.
    fn worker_ended(&mut self, done: Result<(tokio::task::Id, Result<(), Stopped>), tokio::task::JoinError>) {
        let (task, r) = match done {
            Ok((task, r)) => (task, r),
            Err(e) => (e.id(), supervise::stopped::<()>(Err(e))),
        };
        let Some(id) = self.worker_ids.remove(&task) else { return };
        // Replaced, removed, or already found dead: it ended on purpose or is handled.
        if self.providers.get(&id).is_none_or(|p| p.task != Some(task)) {
            return;
        }
        let why = r.err().unwrap_or_else(|| Stopped::Ended("returned while its provider still exists".into()));
        self.worker_died(&id, why);
    }

    /// Schedules the restart of `id`'s worker, counts it, and shows it on the statuses of
    /// the objects it serves; gives up after too many quick failures.
    fn worker_died(&mut self, id: &ProviderId, why: Stopped) {
        let Some(p) = self.providers.get_mut(id) else { return };
        p.tx = None;
        p.task = None;
        count_restart(&self.metrics, "provider-worker");
        let Some(delay) = p.restarts.failed() else {
            let gave_up = GaveUp { task: format!("worker of {id}"), failures: p.restarts.failures(), last: why };
            error!(error = %gave_up, "a provider's worker cannot be restarted; stopping the controller");
            self.gave_up = Some(gave_up);
            return;
        };
        error!(provider = %id, reason = %why, restart_in = ?delay, "a provider's worker stopped; restarting it");
        p.restart_at = Some(Instant::now() + delay);
        // The reason stays in the log: a namespaced provider's status is read by its tenant.
        let message = format!(
            "the worker of provider {id} stopped unexpectedly; restarting it in {}s (see the operator's log)",
            delay.as_secs().max(1)
        );
        for (key, e) in self.endpoints.iter_mut() {
            let mut touched = false;
            for (i, route) in e.routes.iter() {
                if !matches!(route, Ok(ids) if ids.contains(id)) {
                    continue;
                }
                let record = e.snap.valid.iter().find(|(j, _)| j == i).map(|(_, ep)| ep.key());
                let message = match record {
                    Some(r) => format!("{r}: {message}"),
                    None => message.clone(),
                };
                e.results.insert((*i, id.clone()), RecordResult { state: state::PENDING.into(), zone: None, message });
                touched = true;
            }
            if touched {
                self.status_dirty.insert(key.clone());
            }
        }
    }

    /// Statuses that waited out [`REPORT_GRACE`] are written, Pending or not.
    fn statuses_due(&mut self) {
        let now = Instant::now();
        while let Some((at, key)) = self.status_timers.first().cloned() {
            if at > now {
                break;
            }
            self.status_timers.remove(&(at, key.clone()));
            self.status_dirty.insert(key);
        }
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        let due: Vec<ProviderId> = self
            .providers
            .iter()
            .filter(|(_, p)| p.restart_at.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.restart_worker(&id);
        }
    }

    /// Starts a new worker for `id` and sends it everything the old one had been sent: the
    /// records routed to it and the releases waiting on it.
    fn restart_worker(&mut self, id: &ProviderId) {
        let Some(p) = self.providers.get_mut(id) else { return };
        p.restart_at = None;
        info!(provider = %id, "restarting the provider's worker");
        let routed: Vec<EpKey> =
            self.endpoints.iter().filter(|(_, e)| e.sent.contains_key(id)).map(|(k, _)| k.clone()).collect();
        let waiting: Vec<(EpKey, Vec<String>)> = self
            .endpoints
            .iter()
            .filter(|(_, e)| e.waiting.contains(id))
            .map(|(k, e)| (k.clone(), e.snap.valid.iter().map(|(_, ep)| ep.dns_name.clone()).collect()))
            .collect();
        self.start_worker(id);
        for k in &routed {
            self.route(k);
        }
        for (ep, names) in waiting {
            send(&self.providers, &mut self.dead, id, WorkerMsg::Release { ep, names });
        }
    }

    fn handle(&mut self, msg: RouterMsg) {
        match msg {
            RouterMsg::Restart(kind) => {
                self.relisting.insert(kind, HashSet::new());
            }
            RouterMsg::Listed(kind) => self.listed(kind),
            RouterMsg::Upsert(item) => {
                self.count(&item);
                self.mark_seen(&item);
                match item {
                    Item::Endpoint(s) => self.upsert_endpoint(*s),
                    Item::Provider(p) => self.upsert_provider(*p),
                    Item::Namespace(name, meta) => {
                        if self.namespaces.get(&name) != Some(&meta) {
                            self.reroute_ns.insert(name.clone());
                            self.namespaces.insert(name, meta);
                        }
                    }
                    Item::Secret(s) => self.upsert_secret(s),
                }
            }
            RouterMsg::Remove(item) => {
                self.count(&item);
                self.remove(item);
            }
            RouterMsg::RetryRelease(key) => {
                self.removing_finalizer.remove(&key);
                self.finish_release(&key);
            }
            RouterMsg::Refetched(key, snap) => self.refetched(key, snap),
            RouterMsg::RetryRefetch(key) => {
                self.refetching.remove(&key);
                self.refetch.insert(key);
            }
            RouterMsg::RetryFinalizer(key) => {
                self.adding_finalizer.remove(&key);
                if self.endpoints.get(&key).is_some_and(|e| !e.snap.finalized() && !e.snap.deleting) {
                    self.add_finalizer(&key);
                }
            }
            #[cfg(test)]
            RouterMsg::PanicWorker(id) => send(&self.providers, &mut self.dead, &id, WorkerMsg::Panic),
            RouterMsg::RetryProviderFinalizer(id) => {
                // Released again by the next settle, or its finalizer added again, as due.
                if let Some(p) = self.providers.get_mut(&id) {
                    p.finalizer_patched = false;
                }
                if self.leading {
                    self.ensure_provider_finalizer(&id);
                }
            }
        }
    }

    fn remove(&mut self, item: Item) {
        match item {
            Item::Endpoint(s) => self.remove_endpoint(&s.key),
            Item::Provider(p) => self.remove_provider(&p.id),
            Item::Namespace(name, _) => {
                self.namespaces.remove(&name);
                self.reroute_ns.insert(name);
            }
            // A deleted Secret does not rebuild anything: the running backend holds the
            // key, and it may still have records to remove (a namespace being deleted
            // takes its Secrets first).
            Item::Secret(s) => {
                self.secrets.remove(&(s.namespace, s.name));
            }
        }
    }

    fn count(&self, item: &Item) {
        let kind = match item {
            Item::Endpoint(_) => "DNSEndpoint",
            Item::Provider(p) if p.id.namespace.is_some() => "DNSProvider",
            Item::Provider(_) => "ClusterDNSProvider",
            Item::Namespace(..) => "Namespace",
            Item::Secret(_) => "Secret",
        };
        self.metrics.watch_events.get_or_create(&crate::metrics::KindLabels { kind: kind.into() }).inc();
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
        if self.listed.contains(&Kind::Secrets) && NEEDED.iter().all(|k| self.listed.contains(k)) {
            if let Some(gate) = &self.ready_gate {
                gate.open();
            }
        }
        if !self.ready && NEEDED.iter().all(|k| self.listed.contains(k)) {
            self.ready = true;
            info!(
                endpoints = self.endpoints.len(),
                providers = self.providers.len(),
                "provider controller caches ready"
            );
            self.leadership_changed(self.leading);
            self.admit();
            // Cluster providers and the oldest first: the provider granted an embedded
            // address binds it before anyone else could try.
            let objs: Vec<ProviderObject> = self.providers.values().map(|p| p.obj.clone()).collect();
            let facts: Vec<tenancy::ProviderFacts<'_>> =
                objs.iter().map(|o| tenancy::ProviderFacts { id: &o.id, created: &o.created, spec: &o.spec }).collect();
            for i in tenancy::start_order(&facts) {
                self.start_worker(&objs[i].id);
            }
            self.reroute_all = true;
        }
    }

    fn upsert_endpoint(&mut self, mut snap: EndpointSnapshot) {
        if let Some(e) = self.endpoints.get(&snap.key) {
            // Before the key is cloned into the tables and the workers' messages.
            snap.share_records(&e.snap);
        }
        let key = snap.key.clone();
        let namespace = snap.namespace().to_string();
        let cost = snap.budget_cost();
        self.metrics.desired_records.inc_by(snap.valid.len() as i64);
        let (reroute, old_cost) = match self.endpoints.get_mut(&key) {
            Some(e) => {
                self.metrics.desired_records.dec_by(e.snap.valid.len() as i64);
                let reroute = e.snap.spec_hash != snap.spec_hash
                    || e.snap.deleting != snap.deleting
                    || e.snap.trimmed != snap.trimmed;
                let old_cost = e.snap.budget_cost();
                e.snap = snap;
                (reroute, Some(old_cost))
            }
            None => {
                self.endpoints.insert(
                    key.clone(),
                    Box::new(EpEntry {
                        snap,
                        routes: VecMap::new(),
                        sent: VecMap::new(),
                        results: VecMap::new(),
                        waiting: BTreeSet::new(),
                        releasing: false,
                        finalizer_attempts: 0,
                        refused: Vec::new(),
                        over_budget: None,
                        routed_at: None,
                    }),
                );
                (true, None)
            }
        };
        self.account(&namespace, &key, old_cost, Some(cost));
        // A new version: an earlier finalizer patch either landed or lost a conflict.
        self.adding_finalizer.remove(&key);
        self.removing_finalizer.remove(&key);
        if !self.ready {
            return;
        }
        if reroute {
            // Records of a namespace that may be over its limit are not routed (copied to
            // the workers) before the budget is decided.
            if self.budget_dirty.contains(&namespace) {
                self.deferred_routes.insert(key.clone());
            } else {
                self.route(&key);
            }
        }
        self.finish_release(&key);
        // Our own status writes come back as events: a status that differs from what we
        // want (edited, or lost) is written again.
        self.status_dirty.insert(key.clone());
        if self.leading {
            self.ensure_finalizer(&key);
        }
    }

    fn remove_endpoint(&mut self, key: &EpKey) {
        let Some(e) = self.endpoints.remove(key) else { return };
        self.metrics.desired_records.dec_by(e.snap.valid.len() as i64);
        if e.over_budget.is_some() {
            if let Some(b) = self.budgets.get_mut(e.snap.namespace()) {
                b.over = b.over.saturating_sub(1);
            }
        }
        self.account(e.snap.namespace(), key, Some(e.snap.budget_cost()), None);
        self.refetch.remove(key);
        for id in e.sent.keys() {
            send(&self.providers, &mut self.dead, id, WorkerMsg::Desired { ep: key.clone(), records: Vec::new() });
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
                // A new version: an earlier finalizer patch either landed or lost a conflict.
                p.finalizer_patched = false;
                p.finalizer_attempts = 0;
                if p.obj.spec != obj.spec {
                    // A namespaced provider serves its own namespace alone.
                    match &id.namespace {
                        Some(ns) => {
                            self.reroute_ns.insert(ns.to_string());
                        }
                        None => self.reroute_all = true,
                    }
                    self.readmit = true;
                }
                p.domains = domains;
                p.secrets = secrets;
                let verdict = p.obj.verdict.clone();
                p.obj = ProviderObject { verdict, ..obj };
                let msg = WorkerMsg::Object(Box::new(p.obj.clone()));
                send(&self.providers, &mut self.dead, &id, msg);
            }
            None => {
                let entry = ProviderEntry {
                    obj,
                    domains,
                    tx: None,
                    task: None,
                    restarts: Restarts::default(),
                    restart_at: None,
                    secrets,
                    finalizer_patched: false,
                    finalizer_attempts: 0,
                };
                self.providers.insert(id.clone(), entry);
                self.readmit = true;
                if self.ready {
                    self.admit();
                    self.start_worker(&id);
                    match &id.namespace {
                        Some(ns) => {
                            self.reroute_ns.insert(ns.to_string());
                        }
                        None => self.reroute_all = true,
                    }
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
        let (tx, rx) = inbox::channel();
        let worker = Worker::new(p.obj.clone(), self.ctx.clone(), self.reports_tx.clone());
        // A worker returns once its inbox's sender is dropped (provider gone or replaced).
        let task = self.workers.spawn(async move {
            worker.run(rx).await;
            Ok(())
        });
        self.worker_ids.insert(task.id(), id.clone());
        p.task = Some(task.id());
        p.tx = Some(tx);
        p.restart_at = None;
        p.restarts.started();
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
        match &id.namespace {
            Some(ns) => {
                self.reroute_ns.insert(ns.to_string());
            }
            None => self.reroute_all = true,
        }
        self.readmit = true;
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
        let ids: Vec<ProviderId> =
            self.providers.iter().filter(|(_, p)| p.secrets.contains(key)).map(|(id, _)| id.clone()).collect();
        for id in ids {
            info!(provider = %id, secret = %format!("{}/{}", key.0, key.1), "a Secret the provider reads changed; rebuilding its backend");
            send(&self.providers, &mut self.dead, &id, WorkerMsg::SecretChanged);
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
        self.finish_release(key);
    }

    /// Removes the finalizer of a deleted object whose records are all gone.
    fn finish_release(&mut self, key: &EpKey) {
        let done = self.endpoints.get(key).is_some_and(|e| e.releasing && e.waiting.is_empty());
        if done && self.leading {
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
            self.finish_release(k);
        }
        self.status_dirty.extend(keys);
        let ids: Vec<ProviderId> = self.providers.keys().cloned().collect();
        for id in ids {
            self.ensure_provider_finalizer(&id);
        }
    }

    /// Work caused by the messages just handled: re-routing, provider finalizers, statuses.
    fn settle(&mut self) {
        self.start_finalizer_writes();
        self.apply_budgets();
        self.start_refetches();
        if !self.ready {
            // Everything is routed once the caches are listed.
            self.deferred_routes.clear();
            return;
        }
        if self.readmit {
            self.admit();
        }
        let keys: Vec<EpKey> = if std::mem::take(&mut self.reroute_all) {
            self.reroute_ns.clear();
            self.endpoints.keys().cloned().collect()
        } else if !self.reroute_ns.is_empty() {
            let ns = std::mem::take(&mut self.reroute_ns);
            self.endpoints.iter().filter(|(_, e)| ns.contains(e.snap.namespace())).map(|(k, _)| k.clone()).collect()
        } else {
            Vec::new()
        };
        let mut keys = keys;
        let deferred = std::mem::take(&mut self.deferred_routes);
        if !deferred.is_empty() {
            let known: HashSet<EpKey> = keys.iter().cloned().collect();
            keys.extend(deferred.into_iter().filter(|k| !known.contains(k)));
        }
        for k in &keys {
            self.route(k);
        }
        for id in std::mem::take(&mut self.starting) {
            send(&self.providers, &mut self.dead, &id, WorkerMsg::Start);
        }
        for id in std::mem::take(&mut self.dead) {
            self.worker_died(&id, Stopped::Ended("its inbox is closed".into()));
        }
        self.release_deleted_providers();
        let dirty = std::mem::take(&mut self.status_dirty);
        if self.leading {
            for k in dirty {
                self.write_status(&k);
            }
        }
    }

    /// Keeps a namespace's total cost as an object comes (`new`), changes or goes (`old`),
    /// and marks the namespace for a budget decision when its objects may not all fit.
    fn account(&mut self, namespace: &str, key: &EpKey, old: Option<Cost>, new: Option<Cost>) {
        let b = self.budgets.entry(namespace.to_string()).or_default();
        if let Some(old) = old {
            b.total = b.total.minus(old);
        }
        match new {
            Some(new) => {
                b.total = b.total.plus(new);
                b.keys.insert(key.clone());
            }
            None => {
                b.keys.remove(key);
            }
        }
        if b.keys.is_empty() {
            self.budgets.remove(namespace);
            self.budget_dirty.remove(namespace);
        } else if b.over > 0 || !self.settings.budget.fits(b.total) {
            self.budget_dirty.insert(namespace.to_string());
        }
    }

    /// Decides which objects of the namespaces marked fit their budget: the records of those
    /// that do not are dropped (and leave the workers at their next route); those that fit
    /// again after being dropped are read again.
    fn apply_budgets(&mut self) {
        for namespace in std::mem::take(&mut self.budget_dirty) {
            let Some(b) = self.budgets.get(&namespace) else { continue };
            let verdicts = {
                let claims: Vec<Claim<'_, EpKey>> = b
                    .keys
                    .iter()
                    .filter_map(|k| self.endpoints.get(k))
                    .map(|e| Claim {
                        key: e.snap.key.clone(),
                        created: &e.snap.created,
                        name: e.snap.name(),
                        cost: e.snap.budget_cost(),
                        pinned: e.snap.deleting && !e.snap.trimmed,
                    })
                    .collect();
                budget::admit(&namespace, &claims, self.settings.budget)
            };
            let mut over = 0;
            for (key, verdict) in verdicts {
                let Some(e) = self.endpoints.get_mut(&key) else { continue };
                let refusal = verdict.err().map(Box::new);
                match &refusal {
                    Some(r) => {
                        over += 1;
                        if !e.snap.trimmed {
                            info!(object = %format!("{}/{}", e.snap.namespace(), e.snap.name()), "records not served: {r}");
                            self.metrics.desired_records.dec_by(e.snap.valid.len() as i64);
                            e.snap.trim();
                            self.deferred_routes.insert(key.clone());
                        }
                    }
                    None if e.snap.trimmed && !e.snap.deleting => {
                        self.refetch.insert(key.clone());
                    }
                    None => {}
                }
                if e.over_budget != refusal {
                    e.over_budget = refusal;
                    self.status_dirty.insert(key);
                }
            }
            if let Some(b) = self.budgets.get_mut(&namespace) {
                b.over = over;
            }
        }
    }

    /// Reads again, a few at a time, the trimmed objects that fit their budget again.
    fn start_refetches(&mut self) {
        let Some(client) = self.client.clone() else { return };
        for key in std::mem::take(&mut self.refetch) {
            let Some(e) = self.endpoints.get(&key) else { continue };
            let wanted = e.snap.trimmed && e.over_budget.is_none() && !e.snap.deleting;
            if !wanted || !self.refetching.insert(key.clone()) {
                continue;
            }
            let (ns, name) = (e.snap.namespace().to_string(), e.snap.name().to_string());
            let (tx, permits, client) = (self.tx.clone(), self.refetch_permits.clone(), client.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire().await;
                let api: Api<DNSEndpoint> = Api::namespaced(client, &ns);
                let msg = match api.get_opt(&name).await {
                    Ok(obj) => {
                        let snap = obj.map(|o| EndpointSnapshot::of(&o)).filter(|s| s.key == key);
                        RouterMsg::Refetched(key, snap.map(Box::new))
                    }
                    Err(e) => {
                        warn!(object = %format!("{ns}/{name}"), error = %e, "cannot read a DNSEndpoint that fits its namespace's record limit again; retrying");
                        tokio::time::sleep(backoff(3)).await;
                        RouterMsg::RetryRefetch(key)
                    }
                };
                if tx.send(msg).is_err() {
                    debug!("the router has stopped; dropping a re-read DNSEndpoint");
                }
            });
        }
    }

    /// A trimmed object was read again: its records replace the trimmed snapshot unless the
    /// watch brought a newer version meanwhile.
    fn refetched(&mut self, key: EpKey, snap: Option<Box<EndpointSnapshot>>) {
        self.refetching.remove(&key);
        let Some(e) = self.endpoints.get(&key) else { return };
        if !e.snap.trimmed || e.over_budget.is_some() || e.snap.deleting {
            return;
        }
        match snap {
            Some(snap) if !older(snap.resource_version.as_deref(), e.snap.resource_version.as_deref()) => {
                self.upsert_endpoint(*snap)
            }
            // Older than what the watch brought: read again. Gone: the watch says so.
            Some(_) => {
                self.refetch.insert(key);
            }
            None => {}
        }
    }

    /// Decides, over all providers, which may have a backend (tenancy rules, embedded
    /// addresses) and tells the workers whose verdict changed.
    fn admit(&mut self) {
        self.readmit = false;
        let verdicts = {
            let facts: Vec<tenancy::ProviderFacts<'_>> = self
                .providers
                .values()
                .map(|p| tenancy::ProviderFacts { id: &p.obj.id, created: &p.obj.created, spec: &p.obj.spec })
                .collect();
            tenancy::admit_providers(&facts, &self.settings.tenancy)
        };
        for (id, verdict) in verdicts {
            let Some(p) = self.providers.get_mut(&id) else { continue };
            if p.obj.verdict != verdict {
                if let Err(r) = &verdict {
                    info!(provider = %id, reason = r.reason(), "provider refused: {r}");
                }
                p.obj.verdict = verdict;
                let msg = WorkerMsg::Object(Box::new(p.obj.clone()));
                send(&self.providers, &mut self.dead, &id, msg);
            }
        }
    }

    /// Why namespace `ns` may not claim `ep`'s name at provider `id` (a ClusterDNSProvider's
    /// `namespaceDomains` or `namespaceDomainsFromAnnotation`), if it may not.
    fn name_refusal(&self, id: &ProviderId, ns: &str, ep: &Endpoint) -> Option<String> {
        let p = self.providers.get(id)?;
        let annotations = self.namespaces.get(ns).map(NamespaceMeta::annotations).unwrap_or_default();
        tenancy::check_name(&p.obj.spec, id.namespace.is_some(), ns, &annotations, &ep.dns_name)
            .err()
            .map(|e| e.to_string())
    }

    /// Routes one object's records and sends each provider's worker what changed.
    fn route(&mut self, key: &EpKey) {
        let Some(e) = self.endpoints.get(key) else { return };
        let snap = &e.snap;
        if snap.deleting {
            // Also without our finalizer (another one holds the object): records published
            // before ours landed go with it.
            self.start_release(key);
            return;
        }
        // Records go out before the finalizer lands: waiting for it would cost every new
        // object an apiserver round trip (and, in a burst, a place in the apiserver's queue
        // behind the creations). A deletion that races the finalizer still removes them: the
        // watch's delete event sends the object's providers an empty desired set
        // (`remove_endpoint`), and a deletion missed while no replica led is swept up by the
        // next full plan, which deletes owned records no object wants.
        let claimant = Arc::new(Claimant {
            created: snap.created.clone(),
            namespace: snap.namespace().to_string(),
            name: snap.name().to_string(),
        });
        let mut routes = VecMap::new();
        let mut refused: Vec<(usize, ProviderId, String)> = Vec::new();
        let mut per_provider: BTreeMap<ProviderId, Vec<(usize, DesiredRecord)>> = BTreeMap::new();
        for (i, ep) in &snap.valid {
            let mut r = self.providers_for(snap, ep);
            // Names a namespace may not claim there never become claims.
            if let Ok(ids) = &mut r {
                let refusals: Vec<(ProviderId, String)> = ids
                    .iter()
                    .filter_map(|id| self.name_refusal(id, snap.namespace(), ep).map(|m| (id.clone(), m)))
                    .collect();
                ids.retain(|id| !refusals.iter().any(|(r, _)| r == id));
                for (id, message) in refusals {
                    refused.push((*i, id, message));
                }
            }
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
        let Some(e) = self.endpoints.get_mut(key) else { return };
        let targets: BTreeSet<ProviderId> = e.sent.keys().chain(per_provider.keys()).cloned().collect();
        for id in targets {
            let records = per_provider.remove(&id).unwrap_or_default();
            let hash = records_hash(&records);
            if e.sent.get(&id) == Some(&hash) {
                continue;
            }
            send(
                &self.providers,
                &mut self.dead,
                &id,
                WorkerMsg::Desired { ep: key.clone(), records: records.clone() },
            );
            // What the provider said about the old records says nothing about the new ones:
            // until it reports again they are pending (and observedGeneration lags).
            e.results.retain(|(_, p), _| p != &id);
            e.routed_at = Some(Instant::now());
            if records.is_empty() {
                e.sent.remove(&id);
            } else {
                e.sent.insert(id, hash);
            }
        }
        e.results.retain(|(i, id), _| matches!(routes.get(i), Some(Ok(ids)) if ids.contains(id)));
        e.routes = routes;
        e.refused = refused;
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
            send(&self.providers, &mut self.dead, id, WorkerMsg::Release { ep: key.clone(), names: names.clone() });
        }
        let Some(e) = self.endpoints.get_mut(key) else { return };
        e.sent.clear();
        e.waiting = holders.into_iter().filter(|id| self.providers.contains_key(id)).collect();
        e.releasing = true;
        self.status_dirty.insert(key.clone());
        self.finish_release(key);
    }

    fn admits_namespace(&self, p: &ProviderObject, ns: &str) -> bool {
        match &p.id.namespace {
            Some(own) => **own == *ns,
            None => match &p.spec.namespace_selector {
                None => true,
                Some(sel) => {
                    let empty = BTreeMap::new();
                    selector::matches(sel, self.namespaces.get(ns).map(|n| &n.labels).unwrap_or(&empty))
                }
            },
        }
    }

    /// Providers serving a record: the referenced one, or all admitting the namespace with
    /// the longest matching domain.
    fn providers_for(&self, snap: &EndpointSnapshot, ep: &Endpoint) -> Result<Vec<ProviderId>, String> {
        let ns = snap.namespace();
        if let Some(r) = &snap.provider_ref {
            let id = ProviderId {
                kind: r.kind,
                namespace: (r.kind == ProviderRefKind::DNSProvider).then(|| ns.into()),
                name: r.name.as_str().into(),
            };
            // The table's own id: its names are shared by every record routed to it.
            let Some((id, p)) = self.providers.get_key_value(&id) else {
                return Err(format!("{}: spec.providerRef names {id}, which does not exist", ep.key()));
            };
            if !self.admits_namespace(&p.obj, ns) {
                return Err(format!("{}: {id} does not serve namespace {ns} (namespaceSelector)", ep.key()));
            }
            if !p.domains.matches(&ep.dns_name) {
                return Err(format!("{}: {id} does not manage this name (spec.domains)", ep.key()));
            }
            return Ok(vec![id.clone()]);
        }
        let mut best: Option<usize> = None;
        let mut ids = Vec::new();
        // Only the namespace's own providers and cluster providers can serve it.
        let own = self
            .providers
            .range(ProviderId { kind: ProviderRefKind::DNSProvider, namespace: Some(ns.into()), name: "".into() }..);
        let own =
            own.take_while(|(id, _)| id.kind == ProviderRefKind::DNSProvider && id.namespace.as_deref() == Some(ns));
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
            // Written once the finalizer is on: a status write first would move the
            // resourceVersion that guards the finalizer patch, and make it conflict.
            return;
        }
        if e.status_can_wait() {
            return;
        }
        if let Some(until) = e.report_due(Instant::now()) {
            self.status_timers.insert((until, key.clone()));
            return;
        }
        if let (Some(over), false) = (&e.over_budget, snap.deleting) {
            // No entry per record: the object may have a thousand, and they all say this.
            let conditions = status::refused_conditions(
                status::reason::RECORD_LIMIT,
                over.to_string(),
                snap.generation,
                &PriorCondition::expand(&snap.conditions),
                &now_time(),
            );
            let status = DnsEndpointStatus {
                observed_generation: snap.generation,
                conditions,
                records: Vec::new(),
                hostnames: snap.hostnames.clone(),
            };
            self.queue_status(key, status);
            return;
        }
        let mut records: Vec<RecordStatus> = snap.invalid.clone();
        if !snap.deleting {
            let valid: BTreeMap<usize, &Endpoint> = snap.valid.iter().map(|(i, ep)| (*i, &**ep)).collect();
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
        if !snap.deleting {
            let valid: BTreeMap<usize, &Endpoint> = snap.valid.iter().map(|(i, ep)| (*i, &**ep)).collect();
            for (i, id, message) in &e.refused {
                let Some(ep) = valid.get(i) else { continue };
                records.push(RecordStatus {
                    dns_name: ep.dns_name.clone(),
                    record_type: ep.record_type.to_string(),
                    set_identifier: Some(ep.set_identifier.clone()).filter(|s| !s.is_empty()),
                    provider: id.to_string(),
                    zone: None,
                    state: tenancy::STATE_NAME_NOT_ALLOWED.into(),
                    message: Some(message.clone()),
                });
            }
        }
        records.sort();
        let (conditions, applied) = status::endpoint_conditions(
            &records,
            snap.deleting,
            snap.generation,
            &PriorCondition::expand(&snap.conditions),
            &now_time(),
        );
        let status = DnsEndpointStatus {
            observed_generation: if applied { snap.generation } else { snap.observed_generation },
            conditions,
            records,
            hostnames: snap.hostnames.clone(),
        };
        self.queue_status(key, status);
    }

    /// Queues a status for writing when it differs from the server's and from the last one
    /// written.
    fn queue_status(&mut self, key: &EpKey, status: DnsEndpointStatus) {
        let Some(e) = self.endpoints.get(key) else { return };
        let snap = &e.snap;
        let Some(value) = serialize_status(&status) else { return };
        let hash = status_hash(&value);
        // Conditions keep their transition times, so an unchanged status hashes the same as
        // the server's copy.
        if snap.status_hash == Some(hash) || self.writer.already_written(key, hash) {
            return;
        }
        self.writer.push(key.clone(), snap.namespace().to_string(), snap.name().to_string(), value);
    }

    fn ensure_finalizer(&mut self, key: &EpKey) {
        if self.endpoints.get(key).is_some_and(|e| !e.snap.deleting && !e.snap.finalized()) {
            self.add_finalizer(key);
        }
    }

    fn add_finalizer(&mut self, key: &EpKey) {
        if self.endpoints.contains_key(key) && self.adding_finalizer.insert(key.clone()) {
            self.queue_finalizer(key, FinalizerOp::Add);
        }
    }

    fn remove_finalizer(&mut self, key: &EpKey) {
        let Some(e) = self.endpoints.get(key) else { return };
        if !e.snap.finalized() || !self.removing_finalizer.insert(key.clone()) {
            return;
        }
        debug!(object = %format!("{}/{}", e.snap.namespace(), e.snap.name()), "records removed; releasing the object");
        self.queue_finalizer(key, FinalizerOp::Remove);
    }

    fn queue_finalizer(&mut self, key: &EpKey, op: FinalizerOp) {
        if self.finalizer_ops.insert(key.clone(), op).is_none() {
            self.finalizer_queue.push_back(key.clone());
        }
        self.start_finalizer_writes();
    }

    /// Sends queued finalizer patches while write permits are free (settle calls it again
    /// after every message, and a finished write wakes the router).
    fn start_finalizer_writes(&mut self) {
        while !self.finalizer_queue.is_empty() {
            let Ok(permit) = self.finalizer_writes.clone().try_acquire_owned() else { return };
            let Some(key) = self.finalizer_queue.pop_front() else { return };
            let Some(op) = self.finalizer_ops.remove(&key) else { continue };
            let Some(e) = self.endpoints.get(&key) else { continue };
            // What the object needs now: a version that arrived while the patch waited may
            // already carry it (or be deleting, which no finalizer is added to).
            let finalizers: Vec<String> = match op {
                FinalizerOp::Add if e.snap.finalized() || e.snap.deleting => continue,
                FinalizerOp::Add => e.snap.finalizers.iter().cloned().chain([FINALIZER.to_string()]).collect(),
                FinalizerOp::Remove if !e.snap.finalized() => continue,
                FinalizerOp::Remove => e.snap.finalizers.iter().filter(|f| *f != FINALIZER).cloned().collect(),
            };
            let retry = match op {
                FinalizerOp::Add => RouterMsg::RetryFinalizer(key.clone()),
                FinalizerOp::Remove => RouterMsg::RetryRelease(key.clone()),
            };
            self.patch_finalizers(&key, finalizers, retry, permit);
        }
    }

    /// Sets a DNSEndpoint's finalizers by a merge patch guarded by its resourceVersion, in a
    /// task of its own (leader only, bounded by --status-concurrency); a failure sends
    /// `retry` back after a backoff. A conflict means a newer version is on its way.
    fn patch_finalizers(
        &mut self,
        key: &EpKey,
        finalizers: Vec<String>,
        retry: RouterMsg,
        permit: OwnedSemaphorePermit,
    ) {
        let Some(client) = self.client.clone() else { return };
        let Some(e) = self.endpoints.get_mut(key) else { return };
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": e.snap.resource_version}});
        let (ns, name) = (e.snap.namespace().to_string(), e.snap.name().to_string());
        e.finalizer_attempts += 1;
        let delay = backoff(e.finalizer_attempts);
        let leader = self.settings.leader.clone();
        self.writes.spawn(async move {
            // The permit bounds concurrent writes, not backoffs: it is held for the write alone,
            // and the backoff runs in a timer task of the router's.
            let _permit = permit;
            if !is_leader(&leader) {
                return None;
            }
            let api: Api<DNSEndpoint> = Api::namespaced(client, &ns);
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => None,
                Err(kube::Error::Api(e)) if e.code == 404 => None,
                Err(e) => {
                    warn!(object = %format!("{ns}/{name}"), error = %e, "cannot update finalizers; retrying with backoff");
                    Some((delay, retry))
                }
            }
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

    /// Sets a provider's finalizers, guarded by its resourceVersion, in a task of its own; a
    /// failure other than a conflict (a newer version is on its way, and with it another
    /// try) is retried after a backoff, so a deleted provider never stays Terminating.
    fn patch_provider_finalizers(&mut self, id: ProviderId, finalizers: Vec<String>, rv: Option<String>) {
        let Some(client) = self.client.clone() else { return };
        let Some(p) = self.providers.get_mut(&id) else { return };
        let delay = backoff(p.finalizer_attempts);
        p.finalizer_attempts += 1;
        let leader = self.settings.leader.clone();
        self.writes.spawn(async move {
            if !is_leader(&leader) {
                return None;
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
                Ok(()) => None,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => None,
                Err(e) => {
                    warn!(provider = %id, error = %e, retry_in = ?delay, "updating the provider's finalizers failed; retrying");
                    Some((delay, RouterMsg::RetryProviderFinalizer(id)))
                }
            }
        });
    }
}

/// Secrets a provider's backend and registry read, as (namespace, name).
fn secret_refs(p: &ProviderObject, operator_namespace: &str) -> BTreeSet<(String, String)> {
    let ns = p.id.namespace.as_deref().unwrap_or(operator_namespace).to_string();
    let spec = &p.spec;
    let registry = spec
        .registry
        .as_ref()
        .and_then(|r| r.txt.as_ref())
        .and_then(|t| t.encryption.as_ref())
        .map(|e| e.secret_ref.name.as_str());
    let backends = spec.backends().into_iter().flat_map(|b| b.secret_names());
    backends.chain(registry).map(|n| (ns.clone(), n.to_string())).collect()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Whether resourceVersion `a` is older than `b`. They are opaque to clients; the apiserver
/// hands out etcd revisions, so numbers are compared, and anything else counts as not older.
fn older(a: Option<&str>, b: Option<&str>) -> bool {
    match (a.and_then(|a| a.parse::<u64>().ok()), b.and_then(|b| b.parse::<u64>().ok())) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

fn records_hash(records: &[(usize, DesiredRecord)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{records:?}").hash(&mut h);
    h.finish()
}

/// What the router keeps of a condition the server holds: the fields it reads (which
/// condition, its status and since when, for `lastTransitionTime`; its generation, for
/// [`EpEntry::status_can_wait`]). Reason and message are rewritten from the records on every
/// status; a whole `Condition` was the largest part of an object's snapshot.
#[derive(Clone, Debug)]
pub(super) struct PriorCondition {
    type_: Box<str>,
    status: Box<str>,
    last_transition_time: Time,
    observed_generation: Option<i64>,
}

impl PriorCondition {
    fn of(c: &Condition) -> PriorCondition {
        PriorCondition {
            type_: c.type_.as_str().into(),
            status: c.status.as_str().into(),
            last_transition_time: c.last_transition_time.clone(),
            observed_generation: c.observed_generation,
        }
    }

    /// As the status functions take them: reason and message empty (they never read them).
    fn expand(prior: &[PriorCondition]) -> Vec<Condition> {
        prior
            .iter()
            .map(|c| Condition {
                type_: c.type_.to_string(),
                status: c.status.to_string(),
                last_transition_time: c.last_transition_time.clone(),
                observed_generation: c.observed_generation,
                reason: String::new(),
                message: String::new(),
            })
            .collect()
    }
}

/// `v` without room to spare: what a snapshot holds is kept until the object changes.
fn exact<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
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

    fn entry(status: &str) -> EpEntry {
        let obj: DNSEndpoint = serde_yaml::from_str(&format!(
            r#"
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata: {{name: web, namespace: shop, uid: u-1, generation: 2, finalizers: [extdns.io/records]}}
spec:
  endpoints: [{{dnsName: web.example.com, recordType: A, targets: [192.0.2.1]}}]
status: {status}
"#
        ))
        .expect("DNSEndpoint");
        let id = ProviderId { kind: ProviderRefKind::DNSProvider, namespace: Some("shop".into()), name: "dns".into() };
        EpEntry {
            snap: EndpointSnapshot::of(&obj),
            routes: [(0, Ok(vec![id]))].into(),
            sent: VecMap::new(),
            results: VecMap::new(),
            waiting: BTreeSet::new(),
            releasing: false,
            finalizer_attempts: 0,
            refused: Vec::new(),
            over_budget: None,
            routed_at: None,
        }
    }

    #[test]
    fn a_status_of_this_generation_waits_for_the_providers_reports() {
        let ready = |g: i64| {
            format!(
                "{{observedGeneration: {g}, conditions: [{{type: Ready, status: \"True\", reason: Ready, message: ok, observedGeneration: {g}, lastTransitionTime: \"2026-01-01T00:00:00Z\"}}]}}"
            )
        };
        // After a restart: the server's status describes generation 2, no report yet.
        let mut e = entry(&ready(2));
        assert!(e.status_can_wait());
        // Once the provider reported, the status is computed (and written if it differs).
        let id = e.routes.get(&0).and_then(|r| r.as_ref().ok()).expect("routed")[0].clone();
        e.results.insert((0, id), RecordResult { state: "Ready".into(), zone: None, message: String::new() });
        assert!(!e.status_can_wait());
        // A new generation shows Pending at once: the user changed something.
        assert!(!entry(&ready(1)).status_can_wait());
        // An object without a status gets one at once.
        assert!(!entry("null").status_can_wait());
        // A deleted object's status says its records are going.
        let mut e = entry(&ready(2));
        e.snap.deleting = true;
        assert!(!e.status_can_wait());
    }

    /// Record states of the status waiting to be written for `key`.
    fn states(writer: &StatusWriter, key: &EpKey) -> Vec<(String, Option<String>)> {
        let status = writer.pending_status(key).unwrap_or_default();
        status.records.into_iter().map(|r| (r.state, r.message)).collect()
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !f() {
            assert!(start.elapsed() < std::time::Duration::from_secs(20), "timed out waiting for {what}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A worker that panics is seen, counted, shown on the statuses of the objects it
    /// serves, and restarted with its whole state: its records are Ready again.
    #[tokio::test]
    async fn a_panicking_worker_is_restarted_and_its_records_converge() {
        use http::{Request, Response};
        use kube::client::Body;
        // An apiserver that knows nothing: the provider's own status writes fail, and are
        // only logged.
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((_, send)) = handle.next_request().await {
                let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
                let resp = Response::builder().status(404).body(Body::from(serde_json::to_vec(&body).unwrap()));
                send.send_response(resp.unwrap());
            }
        });
        let client = Client::new(svc, "default");
        let metrics = Arc::new(Metrics::default());
        let settings = settings(budget::Limits::UNLIMITED);
        let writer = Arc::new(StatusWriter::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let router = Router::new(Some(client), settings, metrics.clone(), writer.clone(), tx.clone());
        let id = ProviderId { kind: ProviderRefKind::ClusterDNSProvider, namespace: None, name: "mem".into() };
        let provider = in_memory_provider(&id);
        let e = entry("null");
        let key = e.snap.key.clone();
        let kinds = [Kind::Endpoints, Kind::Providers, Kind::ClusterProviders, Kind::Namespaces, Kind::Secrets];
        for k in kinds {
            tx.send(RouterMsg::Restart(k)).unwrap();
        }
        tx.send(RouterMsg::Upsert(Item::Provider(Box::new(provider)))).unwrap();
        tx.send(RouterMsg::Upsert(Item::Endpoint(Box::new(e.snap)))).unwrap();
        for k in kinds {
            tx.send(RouterMsg::Listed(k)).unwrap();
        }
        let running = tokio::spawn(router.run(rx));
        let ready = |w: &StatusWriter| {
            let s = states(w, &key);
            !s.is_empty() && s.iter().all(|(state, _)| state == state::READY)
        };
        until("the record to be Ready", || ready(&writer)).await;

        tx.send(RouterMsg::PanicWorker(id.clone())).unwrap();
        until("the status to show the stopped worker", || {
            states(&writer, &key).iter().any(|(_, m)| m.as_deref().is_some_and(|m| m.contains("stopped unexpectedly")))
        })
        .await;
        until("the restarted worker to make the record Ready again", || ready(&writer)).await;
        assert!(
            metrics.encode().contains("extdns_task_restarts_total{task=\"provider-worker\"} 1"),
            "{}",
            metrics.encode()
        );
        assert!(!running.is_finished(), "the router goes on");
    }

    /// Finalizer patches beyond the write permits wait as keys, and each is built when it is
    /// sent, from the version of the object then: one that meanwhile got the finalizer is not
    /// patched again, and the others carry their current resourceVersion.
    type MockApi = tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

    /// The next request to the mock apiserver: its path, its JSON body, and its responder.
    async fn next_patch(
        handle: &mut MockApi,
    ) -> (String, serde_json::Value, tower_test::mock::SendResponse<http::Response<kube::client::Body>>) {
        let (req, send) = tokio::time::timeout(std::time::Duration::from_secs(10), handle.next_request())
            .await
            .expect("a finalizer patch in time")
            .expect("the router's client");
        let path = req.uri().path().to_string();
        let body = req.into_body().collect_bytes().await.expect("patch body");
        (path, serde_json::from_slice(&body).expect("JSON patch"), send)
    }

    #[tokio::test]
    async fn finalizer_patches_wait_as_keys_and_are_built_when_sent() {
        use http::{Request, Response};
        use kube::client::Body;
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let settings = settings(budget::Limits::UNLIMITED);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Arc::new(StatusWriter::default());
        let router = Router::new(Some(client), settings, Arc::new(Metrics::default()), writer, tx.clone());
        let kinds = [Kind::Endpoints, Kind::Providers, Kind::ClusterProviders, Kind::Namespaces, Kind::Secrets];
        for k in kinds {
            tx.send(RouterMsg::Restart(k)).unwrap();
            tx.send(RouterMsg::Listed(k)).unwrap();
        }
        let unfinalized = |name: &str, rv: u32| {
            let mut s = snapshot(name, 1, 1, rv);
            s.finalizers.clear();
            s
        };
        for name in ["a", "b", "c"] {
            tx.send(upsert(unfinalized(name, 10))).unwrap();
        }
        let running = tokio::spawn(router.run(rx));
        let (path, body, send) = next_patch(&mut handle).await;
        assert!(path.ends_with("/dnsendpoints/a"), "{path}");
        assert_eq!(body["metadata"]["resourceVersion"], "10");
        // One permit: nothing else is sent while the first patch is in flight.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(tokio::time::timeout(std::time::Duration::ZERO, handle.next_request()).await.is_err());
        // Meanwhile b got our finalizer and c a new version.
        tx.send(upsert(snapshot("b", 1, 1, 11))).unwrap();
        tx.send(upsert(unfinalized("c", 12))).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let obj = serde_json::to_vec(&json!({"apiVersion": "extdns.io/v1alpha1", "kind": "DNSEndpoint",
            "metadata": {"name": "a", "namespace": "t"}, "spec": {"endpoints": []}}))
        .unwrap();
        send.send_response(Response::builder().status(200).body(Body::from(obj)).unwrap());
        let (path, body, _send) = next_patch(&mut handle).await;
        assert!(path.ends_with("/dnsendpoints/c"), "b already has the finalizer: {path}");
        assert_eq!(body["metadata"]["resourceVersion"], "12", "built from the current version");
        assert_eq!(body["metadata"]["finalizers"], json!([FINALIZER]));
        running.abort();
    }

    #[test]
    fn a_new_version_with_the_same_records_shares_them_with_the_old_one() {
        let mut r = router(budget::Limits::UNLIMITED);
        step(&mut r, vec![upsert(snapshot("a", 1, 2, 10))]);
        let held = |r: &Router| r.endpoints.values().next().expect("object known").snap.valid.clone();
        let first = held(&r);
        // A status write or a finalizer patch: a new resourceVersion, the same spec.
        step(&mut r, vec![upsert(snapshot("a", 1, 2, 11))]);
        let second = held(&r);
        assert_eq!(first.len(), 2);
        assert!(first.iter().zip(&second).all(|((_, a), (_, b))| Arc::ptr_eq(a, b)), "one copy of each record");
        let (filed, e) = r.endpoints.iter().next().expect("object known");
        assert!(Arc::ptr_eq(filed, &e.snap.key), "one copy of the key");
        // A changed spec brings its own records.
        step(&mut r, vec![upsert(snapshot("a", 1, 3, 12))]);
        let third = held(&r);
        assert_eq!(third.len(), 3);
        assert!(!Arc::ptr_eq(&second[0].1, &third[0].1));
    }

    #[test]
    fn names_summary() {
        let names: BTreeSet<&str> = ["b.example.com", "a.example.com"].into();
        assert_eq!(summarize_names(&names), "a.example.com (+1)");
    }

    /// A leader's settings with one status (and finalizer) write at a time.
    fn settings(limits: budget::Limits) -> Settings {
        Settings {
            operator_namespace: "extdns".into(),
            coalesce: std::time::Duration::from_millis(10),
            backend_timeout: std::time::Duration::from_secs(2),
            status_concurrency: 1,
            leader: crate::controller::leader::Leadership::always(),
            tenancy: Default::default(),
            budget: limits,
        }
    }

    fn router(limits: budget::Limits) -> Router {
        let (tx, _rx) = mpsc::unbounded_channel();
        Router::new(None, settings(limits), Arc::new(Metrics::default()), Arc::new(StatusWriter::default()), tx)
    }

    /// A finalized DNSEndpoint of namespace `t` with `n` TXT records of 100 characters.
    fn snapshot(name: &str, day: u32, n: usize, rv: u32) -> EndpointSnapshot {
        let endpoints: Vec<serde_json::Value> = (0..n)
            .map(|i| json!({"dnsName": format!("r{i}.{name}.example.com"), "recordType": "TXT", "targets": ["x".repeat(100)]}))
            .collect();
        let obj: DNSEndpoint = serde_json::from_value(json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSEndpoint",
            "metadata": {"name": name, "namespace": "t", "uid": format!("u-{name}"), "generation": 1,
                "resourceVersion": rv.to_string(),
                "creationTimestamp": format!("2026-01-{day:02}T00:00:00Z"), "finalizers": [FINALIZER]},
            "spec": {"endpoints": endpoints},
        }))
        .expect("DNSEndpoint");
        EndpointSnapshot::of(&obj)
    }

    fn step(r: &mut Router, msgs: Vec<RouterMsg>) {
        for m in msgs {
            r.handle(m);
        }
        r.settle();
    }

    fn upsert(s: EndpointSnapshot) -> RouterMsg {
        RouterMsg::Upsert(Item::Endpoint(Box::new(s)))
    }

    fn held(r: &Router, name: &str) -> (usize, usize, bool) {
        let e = r.endpoints.values().find(|e| e.snap.name() == name).expect("object known");
        (e.snap.valid.len(), e.routes.iter().count(), e.over_budget.is_some())
    }

    #[test]
    fn objects_past_their_namespace_budget_hold_no_records_until_they_fit() {
        let mut r = router(budget::Limits { records: 3, bytes: 0 });
        // Listed in name order, not in creation order; the routes come once all is listed.
        step(
            &mut r,
            vec![upsert(snapshot("a", 1, 2, 10)), upsert(snapshot("b", 2, 2, 11)), upsert(snapshot("c", 3, 1, 12))],
        );
        // Trimmed as soon as the batch is handled, before anything is routed.
        assert_eq!(held(&r, "b"), (0, 0, true));
        assert_eq!(held(&r, "a").0, 2);
        step(&mut r, NEEDED.iter().map(|k| RouterMsg::Listed(*k)).collect());
        // a (2) and c (1) make 3; b (2) would make 5.
        assert_eq!(held(&r, "a"), (2, 2, false));
        assert_eq!(held(&r, "b"), (0, 0, true));
        assert_eq!(held(&r, "c"), (1, 1, false));
        assert_eq!(r.metrics.desired_records.get(), 3);
        let over = r.endpoints.values().find(|e| e.snap.name() == "b").and_then(|e| e.over_budget.clone());
        assert!(over.expect("b refused").to_string().contains("--max-records-per-namespace=3"));

        // A new version of b from the watch is trimmed before it is routed.
        step(&mut r, vec![upsert(snapshot("b", 2, 2, 20))]);
        assert_eq!(held(&r, "b"), (0, 0, true));

        // a goes: b fits again, and is read again (the trimmed snapshot has no records).
        let a = r.endpoints.values().find(|e| e.snap.name() == "a").expect("a").snap.key.clone();
        step(&mut r, vec![RouterMsg::Remove(Item::Endpoint(Box::new(snapshot("a", 1, 2, 21))))]);
        assert!(!r.endpoints.contains_key(&a));
        let b = r.endpoints.values().find(|e| e.snap.name() == "b").expect("b").snap.key.clone();
        assert_eq!(held(&r, "b"), (0, 0, false));
        assert!(r.refetch.contains(&b), "b is read again");
        // A read older than what the watch brought is not taken.
        step(&mut r, vec![RouterMsg::Refetched(b.clone(), Some(Box::new(snapshot("b", 2, 2, 19))))]);
        assert_eq!(held(&r, "b"), (0, 0, false));
        assert!(r.refetch.contains(&b));
        step(&mut r, vec![RouterMsg::Refetched(b.clone(), Some(Box::new(snapshot("b", 2, 2, 20))))]);
        assert_eq!(held(&r, "b"), (2, 2, false));
        assert_eq!(r.metrics.desired_records.get(), 3);

        // An older object growing pushes the youngest out.
        step(&mut r, vec![upsert(snapshot("b", 2, 3, 22))]);
        assert_eq!(held(&r, "b"), (3, 3, false));
        assert_eq!(held(&r, "c"), (0, 0, true));
    }

    #[test]
    fn a_namespace_within_its_budget_is_routed_at_once() {
        let mut r = router(budget::Limits { records: 10, bytes: 1 << 20 });
        step(&mut r, NEEDED.iter().map(|k| RouterMsg::Listed(*k)).collect());
        r.handle(upsert(snapshot("a", 1, 2, 10)));
        // Routed while the message is handled: no budget decision was needed.
        assert_eq!(held(&r, "a"), (2, 2, false));
        assert!(r.budget_dirty.is_empty());
        let b = r.budgets.get("t").expect("namespace counted");
        assert_eq!(b.total, Cost { records: 2, bytes: 2 * ("r0.a.example.com".len() + 100) });
    }

    /// The records of `ep` a worker's inbox holds, if it holds any message.
    fn desired_in(inbox: &mut inbox::Inbox) -> Option<(EpKey, usize)> {
        match inbox.try_recv() {
            Ok(WorkerMsg::Desired { ep, records }) => Some((ep, records.len())),
            Ok(_) => panic!("expected records"),
            Err(_) => None,
        }
    }

    /// A finalized inMemory provider for example.com.
    fn in_memory_provider(id: &ProviderId) -> ProviderObject {
        ProviderObject {
            id: id.clone(),
            spec: crate::crd::dnsprovider::ProviderSpec {
                in_memory: Some(crate::crd::dnsprovider::InMemorySpec { zones: vec!["example.com".into()] }),
                ..Default::default()
            },
            created: "2020-01-01T00:00:00Z".into(),
            verdict: Ok(()),
            generation: Some(1),
            finalizers: vec![FINALIZER.into()],
            resource_version: Some("1".into()),
            deleting: false,
            status: None,
        }
    }

    /// A leading router with one inMemory DNSProvider in namespace `t`, and that provider's
    /// inbox, read by the test instead of by a worker.
    fn router_with_provider() -> (Router, ProviderId, inbox::Inbox) {
        let mut r = router(budget::Limits::UNLIMITED);
        r.leading = true;
        let id = ProviderId { kind: ProviderRefKind::DNSProvider, namespace: Some("t".into()), name: "dns".into() };
        let provider = in_memory_provider(&id);
        step(&mut r, vec![RouterMsg::Upsert(Item::Provider(Box::new(provider)))]);
        step(&mut r, NEEDED.iter().map(|k| RouterMsg::Listed(*k)).collect());
        // The worker's inbox, read here instead of by the worker.
        let (tx, mut inbox) = inbox::channel();
        r.providers.get_mut(&id).expect("provider known").tx = Some(tx);
        while inbox.try_recv().is_ok() {}
        (r, id, inbox)
    }

    #[tokio::test]
    async fn records_go_out_before_the_finalizer_and_leave_with_a_deletion_that_races_it() {
        let (mut r, _, mut inbox) = router_with_provider();
        let mut fresh = snapshot("a", 1, 1, 10);
        fresh.finalizers.clear();
        let key = fresh.key.clone();
        step(&mut r, vec![upsert(fresh.clone())]);
        assert_eq!(desired_in(&mut inbox), Some((key.clone(), 1)), "routed before the finalizer landed");
        assert!(r.adding_finalizer.contains(&key), "the finalizer is being added meanwhile");
        assert!(r.writer.pending_status(&key).is_none(), "no status before the finalizer");

        // The finalizer lands: nothing is sent again.
        step(&mut r, vec![upsert(snapshot("a", 1, 1, 11))]);
        assert_eq!(desired_in(&mut inbox), None);

        // Deleted before its finalizer landed (or while another finalizer holds it): its
        // records leave with it.
        let mut b = snapshot("b", 2, 1, 12);
        b.finalizers.clear();
        let b_key = b.key.clone();
        step(&mut r, vec![upsert(b.clone())]);
        assert_eq!(desired_in(&mut inbox), Some((b_key.clone(), 1)));
        step(&mut r, vec![RouterMsg::Remove(Item::Endpoint(Box::new(b.clone())))]);
        assert_eq!(desired_in(&mut inbox), Some((b_key.clone(), 0)), "a removed object's records are withdrawn");

        let mut c = snapshot("c", 3, 1, 13);
        c.finalizers = vec!["other.example/hold".into()];
        let c_key = c.key.clone();
        step(&mut r, vec![upsert(c.clone())]);
        assert_eq!(desired_in(&mut inbox), Some((c_key.clone(), 1)));
        c.deleting = true;
        c.resource_version = Some("14".into());
        step(&mut r, vec![upsert(c)]);
        match inbox.try_recv() {
            Ok(WorkerMsg::Release { ep, names }) => {
                assert_eq!((ep, names), (c_key, vec!["r0.c.example.com".to_string()]));
            }
            _ => panic!("a deleting object without our finalizer releases its records"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_status_waits_briefly_for_the_first_report_and_is_written_once() {
        let (mut r, id, _inbox) = router_with_provider();
        let a = snapshot("a", 1, 1, 10);
        let key = a.key.clone();
        step(&mut r, vec![upsert(a)]);
        assert!(r.writer.pending_status(&key).is_none(), "no Pending status while the provider works");
        let ready =
            RecordResult { state: state::READY.into(), zone: Some("example.com".into()), message: String::new() };
        r.handle_report(id.clone(), WorkerReport::Results(vec![(key.clone(), 0, ready)]));
        r.settle();
        let status = r.writer.pending_status(&key).expect("status queued once reported");
        assert_eq!(status.records.iter().map(|x| x.state.as_str()).collect::<Vec<_>>(), [state::READY]);

        // A provider that does not report within the grace: Pending is shown after it.
        let b = snapshot("b", 2, 1, 11);
        let b_key = b.key.clone();
        step(&mut r, vec![upsert(b)]);
        assert!(r.writer.pending_status(&b_key).is_none());
        tokio::time::advance(REPORT_GRACE).await;
        r.statuses_due();
        r.settle();
        let status = r.writer.pending_status(&b_key).expect("status queued after the grace");
        assert_eq!(status.records.iter().map(|x| x.state.as_str()).collect::<Vec<_>>(), [state::PENDING]);
    }

    #[test]
    fn resource_versions_compare_as_numbers() {
        assert!(older(Some("9"), Some("10")));
        assert!(!older(Some("10"), Some("10")));
        assert!(!older(Some("x"), Some("10")));
        assert!(!older(None, Some("10")));
    }
}
