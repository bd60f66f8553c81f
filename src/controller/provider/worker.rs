//! One worker per provider object: its own task, queue, backoff, rate limit and deadline.
//! The router hands it the records each DNSEndpoint wants of it; it marks the names they
//! touch dirty and plans only those names against its cache of the backend, indexed by name.
//! A full plan happens at start and at every resync. A worker that is slow, down or
//! throttled delays nobody else: each one awaits only its own backend.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::pace::Pace;
use super::{backoff, now_time, EpKey, Leader, ProviderObject, RecordResult, DEFAULT_TTL};
use crate::controller::backend::{self, Backend, BackendError, DEFAULT_RESYNC};
use crate::controller::{tenancy, PROVIDER_MANAGER};
use crate::crd::dnsprovider::{Policy as SpecPolicy, ProviderSpec};
use crate::crd::{BackendRef, ClusterDNSProvider, DNSProvider, DnsProviderStatus, ProviderId};
use crate::dns::apply::apply_with_ownership;
use crate::dns::endpoint::{label, Endpoint, RecordKey, RecordType};
use crate::dns::filter::DomainFilter;
use crate::dns::plan::{self, DesiredRecord, Outcome, Policy};
use crate::dns::provider::{zone_for, WriteGate};
use crate::dns::registry::{Expanded, Role, TxtRegistry, TxtRegistryConfig};
use crate::dns::subtree;
use crate::dns::zone::{plan_zone, ZoneInput, ZonePlan};
use crate::dns::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};
use crate::metrics::Metrics;
use crate::status::{self, state};
use extdns_core::vec_map::VecMap;

/// How often changes a backend is still propagating are polled (Route53 GetChange).
pub(super) const PROPAGATION_POLL: Duration = Duration::from_secs(5);
/// After a change the backend refused, the zone may differ from what we think: list again
/// this soon (at the latest).
const RELIST_AFTER_REJECT: Duration = Duration::from_secs(30);
/// How long after the `n`-th refused change since the last resync the zone is listed again:
/// doubling from [`RELIST_AFTER_REJECT`], never past the resync interval.
fn relist_after_reject(n: u32, resync: Duration) -> Duration {
    RELIST_AFTER_REJECT.saturating_mul(1u32 << n.min(16)).min(resync)
}

/// Names planned and applied together; see [`Worker::plan_in_chunks`].
const PLAN_CHUNK: usize = 1000;
/// How long after its creation a provider leaves records it owns but nobody wants (see
/// [`deletion_grace_until`]).
pub(super) const NEW_PROVIDER_GRACE: Duration = Duration::from_secs(60);

/// Until when a provider created at `created` holds back deleting owned records no
/// DNSEndpoint wants: `None` once that time has passed. A provider applied together with its
/// DNSEndpoints (one GitOps sync, a migration) may plan before the DNSEndpoints reach it; its
/// first plan would delete the records they are about to claim, and create them again a
/// moment later.
pub(super) fn deletion_grace_until(created: &str, now: jiff::Timestamp) -> Option<Duration> {
    let created: jiff::Timestamp = created.parse().ok()?;
    let age = now.duration_since(created);
    let grace = jiff::SignedDuration::try_from(NEW_PROVIDER_GRACE).ok()?;
    (age < grace).then(|| (grace - age).unsigned_abs())
}

/// How often a provider's status is written when only `managedRecords` or `lastSync`
/// changed. A pass changes them whenever it writes records: writing them each time would cost
/// the apiserver a write per pass in a burst, and hold up the pass after it.
const COUNTS_INTERVAL: Duration = Duration::from_secs(10);

/// The default TXT owner id, external-dns's `--txt-owner-id` default.
pub const DEFAULT_OWNER_ID: &str = "default";

/// What the router tells a worker.
pub(super) enum WorkerMsg {
    /// The records DNSEndpoint `ep` wants of this provider now (empty: none any more), by
    /// their index in `spec.endpoints`.
    Desired { ep: EpKey, records: Vec<(usize, DesiredRecord)> },
    /// `ep` is being deleted: plan the names its records had without them and report
    /// [`WorkerReport::Released`] once they are gone from the backend.
    Release { ep: EpKey, names: Vec<String> },
    /// The provider object changed; a changed spec rebuilds the backend.
    Object(Box<ProviderObject>),
    /// A Secret the provider reads changed: rebuild the backend with the new key.
    SecretChanged,
    /// The router has sent every record routed to this provider so far: planning may start
    /// (a full plan on a partial desired set would delete records of objects not yet seen).
    Start,
    /// Makes the worker panic, as a bug would: for the router's supervision tests.
    #[cfg(test)]
    Panic,
}

/// What a worker tells the router.
pub(super) enum WorkerReport {
    /// New results for records of DNSEndpoints.
    Results(Vec<(EpKey, usize, RecordResult)>),
    /// The records of a deleted DNSEndpoint are gone from this provider.
    Released(EpKey),
}

/// What every worker shares.
#[derive(Clone)]
pub(super) struct WorkerCtx {
    pub client: Option<Client>,
    pub metrics: Arc<Metrics>,
    pub leader: Leader,
    pub coalesce: Duration,
    pub backend_timeout: Duration,
    pub operator_namespace: String,
    /// Whether namespaced providers may use the operator's identity
    /// (--namespaced-ambient-credentials).
    pub namespaced_ambient: bool,
}

struct Retry {
    attempts: u32,
    next: Instant,
}

#[derive(Clone)]
enum Ownership {
    Txt(Arc<TxtRegistry>),
    Unregistered,
}

impl Ownership {
    fn registry(&self) -> Option<&TxtRegistry> {
        match self {
            Ownership::Txt(reg) => Some(reg),
            Ownership::Unregistered => None,
        }
    }

    /// The cache group of a record: with a registry, its name and its ownership TXT's name
    /// share one.
    fn group_name(&self, e: &Endpoint) -> String {
        self.registry().map_or_else(|| e.dns_name.clone(), |reg| reg.group_name(e))
    }

    /// The cache group of a DNS name.
    fn name_group(&self, dns_name: &str) -> String {
        self.registry().map_or_else(|| dns_name.to_string(), |reg| reg.name_group(dns_name))
    }
}

/// What the zones of one pass of [`Worker::plan_and_apply`] share.
struct ZoneSync<'a> {
    backend: &'a dyn Provider,
    ownership: &'a Ownership,
    zones: &'a [Zone],
    zone: &'a Zone,
    /// The planned groups whose names are in `zone`.
    zone_groups: &'a [&'a String],
}

/// The planned groups and the desired records of a pass, by the name of their zone (found
/// once, not once per zone and name).
#[allow(clippy::type_complexity)]
fn by_zone<'g>(
    zones: &'g [Zone],
    groups: &'g BTreeSet<String>,
    desired: Vec<(Slot, DesiredRecord)>,
) -> (HashMap<&'g str, Vec<&'g String>>, HashMap<&'g str, Vec<(Slot, DesiredRecord)>>) {
    let mut groups_by_zone: HashMap<&str, Vec<&String>> = HashMap::new();
    for g in groups {
        if let Some(z) = zone_for(zones, g) {
            groups_by_zone.entry(z.name.as_str()).or_default().push(g);
        }
    }
    let mut desired_by_zone: HashMap<&str, Vec<(Slot, DesiredRecord)>> = HashMap::new();
    for (slot, d) in desired {
        if let Some(z) = zone_for(zones, &d.endpoint.dns_name) {
            desired_by_zone.entry(z.name.as_str()).or_default().push((slot, d));
        }
    }
    (groups_by_zone, desired_by_zone)
}

/// The provider's view of the backend: raw records per zone, filed by
/// [`TxtRegistry::group_name`] so that one name's records (and their ownership TXT) are found
/// without a walk of the zone.
///
/// The records are shared: a backend that keeps its records in this process (embedded,
/// inMemory) hands out its own (`records_shared`, `held`), so the cache of its zones is no
/// second copy of them.
struct Cache {
    zones: Vec<Zone>,
    raw: BTreeMap<String, HashMap<String, Vec<Arc<Endpoint>>>>,
    fetched: Instant,
    fetched_at: Time,
}

pub(super) struct Worker {
    id: ProviderId,
    ctx: WorkerCtx,
    object: ProviderObject,
    fingerprint: String,
    /// The backend's state lives in this process (embedded, inMemory): every replica keeps
    /// it, leader or not.
    local: bool,
    backend: Result<Backend, BackendError>,
    ownership: Result<Ownership, String>,
    zone_filter: DomainFilter,
    /// `spec.domains`: the names this provider manages. Records outside it are never planned,
    /// counted or deleted, whoever owns them: two providers with one owner id and disjoint
    /// domains share a zone without touching each other's records (external-dns applies its
    /// domain filter to current records too).
    domains: DomainFilter,
    policy: Policy,
    managed: Vec<RecordType>,
    default_ttl: u32,
    resync: Duration,
    cache: Option<Cache>,
    retry: Option<Retry>,
    last_error: Option<ProviderError>,
    managed_records: i64,
    propagating: BTreeMap<String, BTreeSet<RecordKey>>,
    next_poll: Instant,
    relist_at: Option<Instant>,
    /// Re-listings since the last resync that a refused change asked for: each waits twice
    /// as long as the one before, so a tenant re-creating a refused change does not turn
    /// into a listing of a shared zone every 30 s.
    reject_relists: u32,
    /// Orphaned owned records were left alone during the new provider's grace: plan every
    /// name again at this time.
    grace_replan_at: Option<Instant>,
    /// Desired records by group name, then by (object, index in its spec).
    desired: HashMap<String, VecMap<(EpKey, usize), DesiredRecord>>,
    /// Groups each object has records in, to replace them: sorted and unique, in a slice
    /// (a `BTreeSet` allocates a node of eleven slots for the usual one group).
    ep_groups: HashMap<EpKey, Box<[String]>>,
    /// Groups to plan on the next sync.
    dirty: BTreeSet<String>,
    /// [`subtree::tree_key`] of every desired group, for a shared provider: the claims
    /// below a name are a range of it.
    tree: BTreeSet<String>,
    /// Plan every group on the next sync.
    full: bool,
    /// Deleted objects waiting for their groups to be planned without them.
    releases: HashMap<EpKey, BTreeSet<String>>,
    /// Groups whose last plan had a change fail (refused or lost): what the backend holds
    /// there is not known until a listing, so no release waits on them is finished yet.
    unsettled: BTreeSet<String>,
    /// A hash of the result last sent to the router per record, so only changes are sent
    /// (the router keeps the result itself).
    sent: HashMap<(EpKey, usize), u64>,
    written_status: Option<serde_json::Value>,
    /// When this worker last wrote the provider's status.
    status_written_at: Option<Instant>,
    /// A status that only updates counts waits until then ([`COUNTS_INTERVAL`]).
    status_due: Option<Instant>,
    started: bool,
    /// While this worker's embedded server holds its address, nobody else binds it.
    listener: Option<tokio::sync::OwnedMutexGuard<()>>,
    reports: mpsc::UnboundedSender<(ProviderId, WorkerReport)>,
}

fn to_policy(p: SpecPolicy) -> Policy {
    match p {
        SpecPolicy::Sync => Policy::Sync,
        SpecPolicy::UpsertOnly => Policy::UpsertOnly,
        SpecPolicy::CreateOnly => Policy::CreateOnly,
    }
}

impl Worker {
    /// A worker for `object`, its backend not built yet ([`Self::run`] builds it).
    pub(super) fn new(
        object: ProviderObject,
        ctx: WorkerCtx,
        reports: mpsc::UnboundedSender<(ProviderId, WorkerReport)>,
    ) -> Worker {
        let mut w = Worker {
            id: object.id.clone(),
            ctx,
            fingerprint: String::new(),
            local: false,
            backend: Err(BackendError::Start("not started yet".into())),
            ownership: Err("not started yet".into()),
            zone_filter: DomainFilter::default(),
            domains: DomainFilter::default(),
            policy: Policy::Sync,
            managed: Vec::new(),
            default_ttl: DEFAULT_TTL,
            resync: DEFAULT_RESYNC,
            cache: None,
            retry: None,
            last_error: None,
            managed_records: 0,
            propagating: BTreeMap::new(),
            next_poll: Instant::now(),
            relist_at: None,
            reject_relists: 0,
            grace_replan_at: None,
            desired: HashMap::new(),
            ep_groups: HashMap::new(),
            dirty: BTreeSet::new(),
            tree: BTreeSet::new(),
            full: true,
            releases: HashMap::new(),
            unsettled: BTreeSet::new(),
            sent: HashMap::new(),
            written_status: None,
            status_written_at: None,
            status_due: None,
            started: false,
            listener: None,
            reports,
            object,
        };
        w.configure();
        w
    }

    /// Settings that come from the spec alone.
    fn configure(&mut self) {
        let spec = &self.object.spec;
        self.fingerprint = serde_json::to_string(spec).unwrap_or_default();
        self.local = spec.backend().is_ok_and(|b| b.is_local());
        self.zone_filter = spec.zones.as_ref().map(|d| DomainFilter::new(&d.include, &d.exclude)).unwrap_or_default();
        self.domains = spec.domains.as_ref().map(|d| DomainFilter::new(&d.include, &d.exclude)).unwrap_or_default();
        self.policy = to_policy(spec.policy);
        self.managed = spec
            .managed_record_types
            .clone()
            .unwrap_or_else(|| vec![RecordType::A, RecordType::AAAA, RecordType::CNAME]);
        self.default_ttl = spec.default_ttl.unwrap_or(DEFAULT_TTL);
        // An invalid interval fails the backend's build (the provider shows why): nothing is
        // listed on its account meanwhile.
        self.resync = backend::resync_interval(spec).unwrap_or(DEFAULT_RESYNC);
    }

    fn secret_ns(&self) -> String {
        self.id.namespace.as_deref().map_or_else(|| self.ctx.operator_namespace.clone(), str::to_string)
    }

    /// (Re)builds the backend and registry from the spec and the Secrets it names. The
    /// cache goes with the old backend: a new backend may be another server.
    async fn rebuild(&mut self) {
        // Without a client (unit tests) the backend is given, not built.
        let Some(client) = self.ctx.client.clone() else { return };
        if let Ok(old) = std::mem::replace(&mut self.backend, Err(BackendError::Start("restarting".into()))) {
            // An embedded server must release its port before a new one binds it.
            old.close().await;
        }
        self.listener = None;
        self.configure();
        self.cache = None;
        self.full = true;
        // A provider refused by the tenancy rules gets no backend at all: no Secret read, no
        // socket, no request; only a change of its spec or verdict rebuilds it.
        if let Err(r) = &self.object.verdict {
            self.backend = Err(BackendError::Refused(r.clone()));
            self.retry = None;
            return;
        }
        // The provider that held this address before (now refused, its worker another task)
        // closes its server before this one binds.
        if let Some(addr) = tenancy::embedded_listen(&self.object.spec) {
            self.listener = Some(listener_lock(addr).lock_owned().await);
        }
        let secret_ns = self.secret_ns();
        let ctx = backend::BuildContext {
            client: &client,
            secret_ns: &secret_ns,
            default_ttl: self.default_ttl,
            name: self.id.to_string(),
            metrics: &self.ctx.metrics,
            ambient_allowed: self.id.namespace.is_none() || self.ctx.namespaced_ambient,
        };
        self.backend = backend::build(&self.object.spec, &ctx).await;
        // The provider that held this embedded address before (now refused) may still be
        // closing its server in its own task: give it a moment rather than a backoff.
        if matches!(self.object.spec.backend(), Ok(BackendRef::Embedded(_))) {
            for _ in 0..20 {
                if !matches!(&self.backend, Err(BackendError::Start(m)) if m.contains("address in use")) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.backend = backend::build(&self.object.spec, &ctx).await;
            }
        }
        self.ownership = build_ownership(&client, &self.object.spec, &secret_ns).await;
        if let Err(e) = &self.backend {
            warn!(provider = %self.id, error = %e, "provider cannot be started");
        }
        if self.backend.is_err() || self.ownership.is_err() {
            self.schedule_retry();
        }
        if self.backend.is_err() {
            self.listener = None;
        }
    }

    fn schedule_retry(&mut self) {
        let attempts = self.retry.as_ref().map(|r| r.attempts + 1).unwrap_or(0);
        self.retry = Some(Retry { attempts, next: Instant::now() + backoff(attempts) });
    }

    fn leading(&self) -> bool {
        super::is_leader(&self.ctx.leader)
    }

    /// Whether this replica may act on the backend now.
    fn may_write(&self) -> bool {
        self.local || self.leading()
    }

    fn group_of(&self, e: &Endpoint) -> String {
        self.ownership.as_ref().map_or_else(|_| e.dns_name.clone(), |o| o.group_name(e))
    }

    fn name_group(&self, dns_name: &str) -> String {
        self.ownership.as_ref().map_or_else(|_| dns_name.to_string(), |o| o.name_group(dns_name))
    }

    /// The worker's task: runs until the router drops its sender.
    pub(super) async fn run(mut self, mut rx: super::inbox::Inbox) {
        self.rebuild().await;
        let mut leader = Some(self.ctx.leader.subscribe());
        // A change that finds the worker idle goes out at once; while changes outrun the
        // passes they ride together, at most one pass per coalescing window.
        let mut pace = Pace::new(self.ctx.coalesce);
        loop {
            let deadline = self.deadline();
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    let mut rebuild = self.handle(msg);
                    if let Some(until) = pace.hold_until(Instant::now()) {
                        while let Ok(Some(msg)) = tokio::time::timeout_at(until, rx.recv()).await {
                            rebuild |= self.handle(msg);
                        }
                    }
                    while let Ok(msg) = rx.try_recv() {
                        rebuild |= self.handle(msg);
                    }
                    if rebuild {
                        self.rebuild().await;
                    }
                }
                Some(leading) = super::leader_changed(&mut leader) => {
                    if leading {
                        self.full = true;
                    }
                }
                _ = sleep_until(deadline) => {
                    if self.broken() && self.retry.as_ref().is_some_and(|r| Instant::now() >= r.next) {
                        self.rebuild().await;
                    }
                }
            }
            self.sync().await;
            pace.passed(Instant::now(), rx.pending());
        }
        if let Ok(b) = std::mem::replace(&mut self.backend, Err(BackendError::Start("stopped".into()))) {
            b.close().await;
        }
        self.listener = None;
        debug!(provider = %self.id, "worker stopped");
    }

    /// A backend that a rebuild may fix; a refused provider waits for a change instead.
    fn broken(&self) -> bool {
        let refused = matches!(self.backend, Err(BackendError::Refused(_)));
        (!refused && (self.backend.is_err() || self.ownership.is_err())) || self.needs_rebuild()
    }

    /// Refused credentials may be fixed by editing a Secret: rebuilding re-reads it, on the
    /// retry schedule so that a broken provider is not rebuilt on every event.
    fn needs_rebuild(&self) -> bool {
        matches!(self.last_error, Some(ProviderError::AuthFailed(_)) | Some(ProviderError::Config(_)))
    }

    /// Applies one message; true when the backend must be rebuilt.
    fn handle(&mut self, msg: WorkerMsg) -> bool {
        match msg {
            WorkerMsg::Desired { ep, records } => {
                self.set_desired(ep, records);
                false
            }
            WorkerMsg::Release { ep, names } => {
                let mut groups: BTreeSet<String> = self.ep_groups.get(&ep).into_iter().flatten().cloned().collect();
                self.set_desired(ep.clone(), Vec::new());
                groups.extend(names.iter().map(|n| self.name_group(n)));
                self.dirty.extend(groups.iter().cloned());
                self.releases.insert(ep, groups);
                false
            }
            WorkerMsg::Object(obj) => {
                let changed = obj.spec != self.object.spec || obj.verdict != self.object.verdict;
                self.object = *obj;
                changed
            }
            WorkerMsg::SecretChanged => true,
            WorkerMsg::Start => {
                self.started = true;
                false
            }
            #[cfg(test)]
            WorkerMsg::Panic => panic!("worker of {} told to panic", self.id),
        }
    }

    /// Replaces the records `ep` wants; the groups they leave or enter become dirty.
    pub(super) fn set_desired(&mut self, ep: EpKey, records: Vec<(usize, DesiredRecord)>) {
        let old = self.ep_groups.remove(&ep).unwrap_or_default();
        for g in old.iter() {
            if let Some(m) = self.desired.get_mut(g) {
                m.retain(|slot, _| {
                    let theirs = slot.0 != ep;
                    if !theirs {
                        self.sent.remove(slot);
                    }
                    theirs
                });
                if m.is_empty() {
                    self.desired.remove(g);
                }
            }
            self.dirty.insert(g.clone());
        }
        let mut groups = BTreeSet::new();
        for (i, d) in records {
            let g = self.name_group(&d.endpoint.dns_name);
            self.desired.entry(g.clone()).or_default().insert((ep.clone(), i), d);
            self.dirty.insert(g.clone());
            groups.insert(g);
        }
        if self.shared() {
            // Claims above, below and beside these names may win or lose by this change.
            for g in old.iter().chain(&groups) {
                if self.desired.contains_key(g) {
                    self.tree.insert(subtree::tree_key(g));
                } else {
                    self.tree.remove(&subtree::tree_key(g));
                }
                let related = self.related_groups(g, None);
                self.dirty.extend(related);
            }
        }
        if !groups.is_empty() {
            self.ep_groups.insert(ep, groups.into_iter().collect());
        }
    }

    /// A ClusterDNSProvider serves several namespaces: their claims compete across the name
    /// tree ([`subtree`]), not only name by name.
    fn shared(&self) -> bool {
        self.id.namespace.is_none()
    }

    /// Desired groups whose claims compete with claims at `group`: those above it (below
    /// `apex` when known), below it, and those an ownership-TXT name links to it.
    fn related_groups(&self, group: &str, apex: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut above = group;
        while let Some((_, parent)) = above.split_once('.') {
            if apex.is_some_and(|a| parent.len() <= a.len()) {
                break;
            }
            if self.desired.contains_key(parent) {
                out.push(parent.to_string());
            }
            above = parent;
        }
        // A zone apex holds nothing below it (every tenant's name is below it): its claims
        // compete with none there, and a change at it re-plans no other name.
        let is_apex =
            apex == Some(group) || self.cache.as_ref().is_some_and(|c| c.zones.iter().any(|z| z.name == group));
        let key = subtree::tree_key(group);
        let below = self.tree.range(key.clone()..).take_while(|k| k.starts_with(&key)).filter(|k| **k != key);
        for below in below.filter(|_| !is_apex) {
            let name: Vec<&str> = below.trim_end_matches('.').rsplit('.').collect();
            out.push(name.join("."));
        }
        if let Ok(Ownership::Txt(reg)) = &self.ownership {
            let linked = reg.backed_name(group).filter(|b| b != group).into_iter();
            let linked = linked.chain(reg.ownership_names(group));
            out.extend(linked.filter(|n| n != group && self.desired.contains_key(n)));
        }
        out
    }

    /// Takes out of `mine` the claims a ClusterDNSProvider must refuse whatever the zone
    /// holds, with their results: NS and MX at the zone apex, and claims that another
    /// namespace's claim holds over across the name tree ([`subtree`]).
    fn refuse_overreach(
        &self,
        zone: &Zone,
        zone_cache: &HashMap<String, Vec<Arc<Endpoint>>>,
        claims: Vec<(Slot, DesiredRecord)>,
        results: &mut RecordResults,
    ) -> Vec<(Slot, DesiredRecord)> {
        let Ok(Ownership::Txt(reg)) = &self.ownership else { return claims };
        // Namespaces whose records of ours the zone holds at a group, read when needed.
        let published = |group: &str| -> BTreeSet<String> {
            let raw = zone_cache.get(group).map_or_else(Vec::new, |g| own_copies(g));
            reg.view_in_zone(raw, &zone.name)
                .endpoints
                .iter()
                .filter(|e| e.labels.get(label::OWNER).map(String::as_str) == Some(reg.owner_id()))
                .filter_map(|e| plan::resource_namespace(e.labels.get(label::RESOURCE)?).map(str::to_string))
                .collect()
        };
        // The oldest claimant of each namespace at a group.
        let claims_at = |group: &str| -> BTreeMap<String, plan::Claimant> {
            let mut per_ns: BTreeMap<String, plan::Claimant> = BTreeMap::new();
            for (_, d) in self.desired.get(group).into_iter().flatten() {
                let c = &d.claimant;
                match per_ns.get(&c.namespace) {
                    Some(old) if old <= c => {}
                    _ => {
                        per_ns.insert(c.namespace.clone(), plan::Claimant::clone(c));
                    }
                }
            }
            per_ns
        };
        let mut kept = Vec::with_capacity(claims.len());
        for (slot, d) in claims {
            let key = d.endpoint.key();
            let refusal = if d.endpoint.dns_name == zone.name && subtree::apex_reserved(key.record_type) {
                Some((
                    tenancy::STATE_NAME_NOT_ALLOWED.to_string(),
                    format!(
                        "{key}: the apex of zone {} carries the platform's NS and MX records; ClusterDNSProvider {} publishes none for a namespace",
                        zone.name, self.id
                    ),
                ))
            } else {
                let group = self.name_group(&d.endpoint.dns_name);
                let ns = &d.claimant.namespace;
                let related: Vec<subtree::NameClaim> = self
                    .related_groups(&group, Some(&zone.name))
                    .into_iter()
                    .flat_map(|g| {
                        let foreign: Vec<(String, plan::Claimant)> =
                            claims_at(&g).into_iter().filter(|(other, _)| other != ns).collect();
                        let live = if foreign.is_empty() { BTreeSet::new() } else { published(&g) };
                        foreign.into_iter().map(move |(other, claimant)| subtree::NameClaim {
                            name: g.clone(),
                            published: live.contains(&other),
                            claimant,
                        })
                    })
                    .collect();
                let own = subtree::NameClaim {
                    name: group.clone(),
                    claimant: claims_at(&group).remove(ns).unwrap_or_else(|| plan::Claimant::clone(&d.claimant)),
                    published: !related.is_empty() && published(&group).contains(ns),
                };
                subtree::held_over(&own, &related).map(|h| {
                    let held = Outcome::NameHeld {
                        namespace: h.claimant.namespace.clone(),
                        by: format!("DNSEndpoint {} claims {}", h.claimant, h.name),
                    };
                    (held.reason().to_string(), held.message(&key))
                })
            };
            match refusal {
                Some((state, message)) => {
                    let result = RecordResult { state, zone: Some(zone.name.clone()), message };
                    results.insert(slot.0.clone(), result);
                }
                None => kept.push((slot, d)),
            }
        }
        kept
    }
}

/// The lock of one embedded listen address, shared by all workers of the process.
fn listener_lock(addr: std::net::SocketAddr) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<std::sync::Mutex<HashMap<std::net::SocketAddr, Arc<tokio::sync::Mutex<()>>>>> =
        std::sync::LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks.entry(addr).or_default().clone()
}

/// A backend call bounded by the worker's deadline; a call that overruns it counts as the
/// backend being unreachable, and is retried with backoff.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    call: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(ProviderError::Unreachable(format!("{what} took longer than {limit:?}"))))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Worker {
    /// When this worker needs to run without a message: retry, resync, propagation poll,
    /// the relisting after a refused change.
    fn deadline(&self) -> Option<Instant> {
        if !self.started {
            return None;
        }
        let broken = self.broken();
        if let Some(r) = self.retry.as_ref().filter(|_| broken || self.may_write()) {
            return Some(r.next);
        }
        // A follower does nothing on a timer with a backend it does not own: a deadline in
        // the past would spin.
        if !self.may_write() {
            return None;
        }
        let resync = self.cache.as_ref().map(|c| c.fetched + self.resync);
        let poll = (!self.propagating.is_empty()).then_some(self.next_poll);
        let status = self.status_due.filter(|_| self.leading());
        resync.into_iter().chain(poll).chain(self.relist_at).chain(self.grace_replan_at).chain(status).min()
    }

    fn in_backoff(&self) -> bool {
        self.retry.as_ref().is_some_and(|r| Instant::now() < r.next)
    }

    fn fail(&mut self, err: ProviderError) {
        self.schedule_retry();
        if let Some(r) = &self.retry {
            let retry_in = r.next.saturating_duration_since(Instant::now());
            info!(provider = %self.id, attempt = r.attempts + 1, ?retry_in, "backend call failed; retrying");
        }
        self.last_error = Some(tenancy::public_error(&err, self.id.namespace.is_some()));
    }

    /// Plans and applies the dirty groups (all of them at start and resync), reports what
    /// became of their records, releases deleted objects and writes the provider status.
    pub(super) async fn sync(&mut self) {
        let startup = match (&self.backend, &self.ownership) {
            (Err(e), _) => Some((e.reason(), format!("provider {} cannot be used: {e}", self.id))),
            (_, Err(e)) => Some(("InvalidProvider", format!("provider {} cannot be used: {e}", self.id))),
            _ => None,
        };
        if !self.started {
            return;
        }
        if let Some((reason, message)) = startup {
            let groups = std::mem::take(&mut self.dirty);
            self.report_all(&groups, reason, &message);
            // A refused provider can write nothing: waiting for it would keep its
            // DNSEndpoints (and their namespace) from ever being deleted.
            if matches!(self.backend, Err(BackendError::Refused(_))) {
                for ep in std::mem::take(&mut self.releases).into_keys() {
                    let _ = self.reports.send((self.id.clone(), WorkerReport::Released(ep)));
                }
            }
            self.write_status().await;
            return;
        }
        if !self.may_write() || self.in_backoff() {
            return;
        }
        if self.grace_replan_at.is_some_and(|t| Instant::now() >= t) {
            self.grace_replan_at = None;
            self.full = true;
        }
        let resync_due = self.cache.as_ref().is_none_or(|c| c.fetched.elapsed() >= self.resync);
        let due = resync_due || self.relist_at.is_some_and(|t| Instant::now() >= t);
        if resync_due {
            self.reject_relists = 0;
        }
        if due {
            self.relist_at = None;
            if let Err(e) = self.refresh().await {
                warn!(provider = %self.id, error = %e, "listing records failed");
                self.fail(e);
                let groups: BTreeSet<String> = self.desired.keys().cloned().collect();
                self.report_retry(&groups);
                self.write_status().await;
                return;
            }
            self.full = true;
        }
        self.ctx.metrics.sync_passes.inc();
        // Propagating records report again when their change is live.
        let pending: BTreeSet<String> =
            self.propagating.values().flatten().map(|k| self.name_group(&k.dns_name)).collect();
        if let Ok(b) = &self.backend {
            let backend = b.provider.clone();
            self.poll_propagation(backend.as_ref()).await;
        }
        let full = std::mem::take(&mut self.full);
        let groups: BTreeSet<String> = if full {
            self.dirty.clear();
            let cached = self.cache.iter().flat_map(|c| c.raw.values()).flat_map(|z| z.keys());
            let cached = cached.filter(|g| self.domains.matches(g)).cloned();
            self.desired.keys().cloned().chain(cached).collect()
        } else {
            std::mem::take(&mut self.dirty)
        };
        let groups: BTreeSet<String> = groups.into_iter().chain(pending).collect();
        if groups.is_empty() {
            self.write_status().await;
            return;
        }
        self.unsettled.retain(|g| !groups.contains(g));
        let outcome = self.plan_in_chunks(groups, full).await;
        self.unsettled.extend(outcome.unsettled.iter().cloned());
        match outcome.transient {
            Some(e) => {
                // Keep what is known: the cache stays, the failed names are retried. An
                // unanswered change may have been applied all the same: the retry plans
                // against a fresh listing, so that a record that went without its TXT still
                // gets the TXT removed.
                if matches!(e, ProviderError::Unreachable(_)) {
                    self.relist_at = Some(Instant::now());
                }
                self.dirty.extend(outcome.failed_groups);
                self.fail(e);
            }
            None => {
                self.retry = None;
                self.last_error = None;
                if outcome.rejected && self.relist_at.is_none() {
                    self.relist_at = Some(Instant::now() + relist_after_reject(self.reject_relists, self.resync));
                    self.reject_relists = self.reject_relists.saturating_add(1);
                }
            }
        }
        self.report(outcome.results);
        self.release_done();
        self.write_status().await;
    }

    /// Lists zones and records.
    async fn refresh(&mut self) -> Result<(), ProviderError> {
        let backend = match &self.backend {
            Ok(b) => b.provider.clone(),
            Err(e) => return Err(ProviderError::Config(e.to_string())),
        };
        let pid = self.id.to_string();
        let metrics = self.ctx.metrics.clone();
        let limit = self.ctx.backend_timeout;
        let zones = bounded(limit, "listing zones", backend.zones()).await;
        metrics.call(&pid, "zones", if zones.is_ok() { "ok" } else { "error" });
        let zones: Vec<Zone> = zones?.into_iter().filter(|z| self.zone_filter.matches(&z.name)).collect();
        let mut raw = BTreeMap::new();
        for z in &zones {
            let recs = bounded(limit, "listing records", backend.records_shared(z)).await;
            metrics.call(&pid, "records", if recs.is_ok() { "ok" } else { "error" });
            let mut by_group: HashMap<String, Vec<Arc<Endpoint>>> = HashMap::new();
            for e in recs? {
                by_group.entry(self.group_of(&e)).or_default().push(e);
            }
            // A group is a record and its ownership TXT: without this each one keeps room
            // for four (a Vec's first growth), twice the records' size.
            by_group.values_mut().for_each(Vec::shrink_to_fit);
            raw.insert(z.id.clone(), by_group);
        }
        self.cache = Some(Cache { zones, raw, fetched: Instant::now(), fetched_at: now_time() });
        Ok(())
    }

    /// Asks the backend which propagating changes are live now, at most every
    /// [`PROPAGATION_POLL`]: events must not turn into a stream of GetChange calls.
    async fn poll_propagation(&mut self, backend: &dyn Provider) {
        if self.propagating.is_empty() || Instant::now() < self.next_poll {
            return;
        }
        self.next_poll = Instant::now() + PROPAGATION_POLL;
        let pid = self.id.to_string();
        let ids: Vec<String> = self.propagating.keys().cloned().collect();
        for change in ids {
            let r =
                bounded(self.ctx.backend_timeout, "asking whether a change is live", backend.in_sync(&change)).await;
            self.ctx.metrics.call(&pid, "in_sync", if r.is_ok() { "ok" } else { "error" });
            match r {
                Ok(true) => {
                    self.propagating.remove(&change);
                }
                Ok(false) => {}
                Err(e) if e.is_transient() => {
                    debug!(provider = %self.id, change, error = %e, "cannot ask whether a change is live yet");
                }
                Err(e) => {
                    // Waiting forever helps nobody: the records were accepted.
                    warn!(provider = %self.id, change, error = %e, "cannot learn whether a change is live; taking it as live");
                    self.propagating.remove(&change);
                }
            }
        }
    }

    fn is_propagating(&self, key: &RecordKey) -> Option<&str> {
        self.propagating.iter().find(|(_, keys)| keys.contains(key)).map(|(id, _)| id.as_str())
    }

    /// Desired records of `groups`.
    fn desired_in<'a>(
        &'a self,
        groups: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = (&'a (EpKey, usize), &'a DesiredRecord)> + 'a {
        groups.iter().filter_map(|g| self.desired.get(g)).flatten()
    }

    /// Plans and applies `groups` [`PLAN_CHUNK`] names at a time. A full plan of every name
    /// at once builds the plan, the registry's expansion and the batches for all of them
    /// together: at 10,000 names that was 30 MiB of the restart's peak. The owned-record
    /// count is recounted with the last chunk of a full plan. A transient error stops the
    /// plan; the names not planned yet are retried with the failed ones.
    async fn plan_in_chunks(&mut self, groups: BTreeSet<String>, full: bool) -> SyncOutcome {
        let mut out = SyncOutcome::default();
        let mut chunks = Vec::new();
        let mut rest = groups;
        while rest.len() > PLAN_CHUNK {
            let Some(split) = rest.iter().nth(PLAN_CHUNK).cloned() else { break };
            let tail = rest.split_off(&split);
            chunks.push(std::mem::replace(&mut rest, tail));
        }
        chunks.push(rest);
        let last = chunks.len() - 1;
        let mut chunks = chunks.into_iter().enumerate();
        for (i, chunk) in chunks.by_ref() {
            let o = self.plan_and_apply(&chunk, full && i == last).await;
            out.results.extend(o.results);
            out.rejected |= o.rejected;
            out.failed_groups.extend(o.failed_groups);
            out.unsettled.extend(o.unsettled);
            if o.transient.is_some() {
                out.transient = o.transient;
                break;
            }
        }
        for (_, chunk) in chunks {
            out.failed_groups.extend(chunk);
        }
        out
    }

    /// Plans `groups` (every group when `full`) and applies the changes. The owned-record
    /// count is recounted on full plans; incremental ones adjust it by their creates and
    /// deletes.
    async fn plan_and_apply(&mut self, groups: &BTreeSet<String>, full: bool) -> SyncOutcome {
        let mut out = SyncOutcome::default();
        let (Ok(b), Ok(ownership)) = (&self.backend, &self.ownership) else { return out };
        let (backend, ownership) = (b.provider.clone(), ownership.clone());
        let Some(mut cache) = self.cache.take() else { return out };
        let zones = cache.zones.clone();
        // 1. Records without a zone (or forging ownership) never reach the planner.
        let (mut partial, in_zone) = self.sort_desired(groups, &zones);
        // 2. The others become what the backend will hold for them (a Route53 CNAME to a load
        //    balancer: an A and an AAAA alias), in one call: a webhook answers it over HTTP.
        let adjusted = backend.adjust_all(in_zone.iter().map(|(_, d)| Endpoint::clone(&d.endpoint)).collect()).await;
        let mut desired: Vec<(Slot, DesiredRecord)> = Vec::new();
        for ((slot, d), endpoints) in in_zone.into_iter().zip(adjusted) {
            let asked = d.endpoint.key();
            for endpoint in endpoints {
                // Most backends hand the record back as it was: keep sharing the router's.
                let endpoint = if endpoint == *d.endpoint { d.endpoint.clone() } else { Arc::new(endpoint) };
                desired.push(((slot.clone(), asked.clone()), DesiredRecord { endpoint, claimant: d.claimant.clone() }));
            }
        }
        // 3. Zone by zone. A name belongs to the zones with the longest name containing it:
        //    one, or several when hosted zones share a name (Route53's private and public
        //    zones of one domain), and each of them gets the record.
        let (groups_by_zone, desired_by_zone) = by_zone(&zones, groups, desired);
        if self.propagating.is_empty() {
            self.next_poll = Instant::now() + PROPAGATION_POLL;
        }
        for zone in &zones {
            let Some(zone_groups) = groups_by_zone.get(zone.name.as_str()) else { continue };
            let desired = desired_by_zone.get(zone.name.as_str()).cloned().unwrap_or_default();
            let zone_cache = cache.raw.entry(zone.id.clone()).or_default();
            let sync = ZoneSync { backend: backend.as_ref(), ownership: &ownership, zones: &zones, zone, zone_groups };
            self.sync_zone(&sync, zone_cache, desired, &mut partial, &mut out).await;
        }
        if full {
            let owner = ownership.registry().map(|r| r.owner_id().to_string());
            self.managed_records = count_owned(&cache, &ownership, owner.as_deref(), &self.domains);
        }
        self.cache = Some(cache);
        // Desired records the planner did not see (no zone matched) stay pending.
        for (slot, _) in self.desired_in(groups) {
            partial.entry(slot.clone()).or_insert_with(|| RecordResult {
                state: state::PENDING.into(),
                zone: None,
                message: format!("waiting for provider {}", self.id),
            });
        }
        out.results = partial.into_iter().collect();
        out
    }

    /// Step 1 of [`Self::plan_and_apply`]: the results of the desired records of `groups`
    /// that cannot be planned (a forged ownership value, no zone for the name), and the
    /// others.
    fn sort_desired<'a>(&'a self, groups: &'a BTreeSet<String>, zones: &[Zone]) -> (RecordResults, Plannable<'a>) {
        let mut partial = BTreeMap::new();
        let mut in_zone = Vec::new();
        for (slot, d) in self.desired_in(groups) {
            if let Some(message) = forged_ownership(&self.ownership, &d.endpoint) {
                partial.insert(slot.clone(), RecordResult { state: state::INVALID.into(), zone: None, message });
            } else if zone_for(zones, &d.endpoint.dns_name).is_some() {
                in_zone.push((slot, d));
            } else {
                let names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
                let message = format!(
                    "{}: provider {} has no zone for this name (zones: {})",
                    d.endpoint.key(),
                    self.id,
                    names.join(", ")
                );
                partial.insert(slot.clone(), RecordResult { state: state::NO_ZONE.into(), zone: None, message });
            }
        }
        (partial, in_zone)
    }

    /// Plans one zone, applies its changes and files the results of its records.
    async fn sync_zone(
        &mut self,
        z: &ZoneSync<'_>,
        zone_cache: &mut HashMap<String, Vec<Arc<Endpoint>>>,
        desired: Vec<(Slot, DesiredRecord)>,
        partial: &mut RecordResults,
        out: &mut SyncOutcome,
    ) {
        let zone = z.zone;
        let raw: Vec<Endpoint> =
            z.zone_groups.iter().filter_map(|g| zone_cache.get(*g)).flatten().map(|e| Endpoint::clone(e)).collect();
        let desired = if self.shared() { self.refuse_overreach(zone, zone_cache, desired, partial) } else { desired };
        let (slots, mine): (Vec<Slot>, Vec<DesiredRecord>) = desired.into_iter().unzip();
        let grace = deletion_grace_until(&self.object.created, jiff::Timestamp::now());
        // Records of a deleted DNSEndpoint go at once, grace or not: its finalizer waits.
        let released: BTreeSet<&String> = self.releases.values().flatten().collect();
        let released = |name: &str| released.contains(&self.name_group(name));
        let ZonePlan { plan: p, expanded, held } = plan_zone(&ZoneInput {
            zone,
            zones: z.zones,
            raw,
            registry: z.ownership.registry(),
            domains: &self.domains,
            desired: &mine,
            policy: self.policy,
            managed_types: &self.managed,
            default_ttl: self.default_ttl,
            in_grace: grace.is_some(),
            released: &released,
        });
        if let Some(left) = grace {
            // Held deletions and TXT leftovers are planned again once the grace is over.
            let at = Instant::now() + left;
            self.grace_replan_at = Some(self.grace_replan_at.map_or(at, |t| t.max(at)));
            if held > 0 {
                info!(provider = %self.id, zone = %zone.name, "new provider: owned records no DNSEndpoint wants yet are left alone for {left:?}");
            }
        }
        let change_result = if expanded.is_empty() {
            vec![Ok(Applied::Live); p.changes.len()]
        } else if !self.local && !super::is_leader(&self.ctx.leader) {
            // The lease may have moved while we planned: a replica that no longer leads
            // sends nothing.
            out.failed_groups.extend(z.zone_groups.iter().map(|g| (*g).clone()));
            out.transient = Some(ProviderError::Unreachable("this replica no longer leads".into()));
            return;
        } else {
            self.apply_zone(z, zone_cache, &expanded, p.changes.len(), out).await
        };
        for (change, r) in p.changes.iter().zip(&change_result) {
            match r {
                Err(e) if e.is_transient() => {
                    out.transient = out.transient.take().or_else(|| Some(e.clone()));
                    out.failed_groups.insert(z.ownership.name_group(&change.endpoint().dns_name));
                }
                Err(_) => out.rejected = true,
                Ok(_) => {}
            }
        }
        for (di, outcome) in p.outcomes.iter().enumerate() {
            let (slot, asked) = &slots[di];
            let result = self.record_result(zone, outcome, asked, &mine[di].endpoint.key(), &change_result);
            // A record held in several records or zones is as far as its worst part.
            if partial.get(slot).is_none_or(|r| r.state == state::READY) {
                partial.insert(slot.clone(), result);
            }
        }
    }

    /// Sends the expanded changes of one zone; updates the cache and the owned-record count
    /// by what was applied. Returns the result of each planned change (the first
    /// `planned` of `expanded`'s indexes): live once all its parts (ownership TXT too) are.
    async fn apply_zone(
        &mut self,
        z: &ZoneSync<'_>,
        zone_cache: &mut HashMap<String, Vec<Arc<Endpoint>>>,
        expanded: &[Expanded],
        planned: usize,
        out: &mut SyncOutcome,
    ) -> Vec<ChangeResult> {
        let (zone, pid) = (z.zone, self.id.to_string());
        info!(provider = %self.id, zone = %zone.name, zone_id = %zone.id, changes = expanded.len(), "applying changes");
        // Records and their ownership TXTs succeed or fail together (see dns::apply).
        let timeout = self.ctx.backend_timeout;
        let gate = {
            let (local, leader) = (self.local, self.ctx.leader.clone());
            WriteGate::new(move || local || super::is_leader(&leader))
        };
        let apply = gate.scope(apply_with_ownership(z.backend, zone, expanded));
        let res = match tokio::time::timeout(timeout, apply).await {
            Ok(res) => res,
            Err(_) => {
                // Some of the batch may have been applied: trust no cache for it.
                self.relist_at = Some(Instant::now());
                let e = ProviderError::Unreachable(format!("applying changes took longer than {timeout:?}"));
                expanded.iter().map(|_| Err(e.clone())).collect()
            }
        };
        self.ctx.metrics.call(&pid, "apply", if res.iter().all(|r| r.is_ok()) { "ok" } else { "error" });
        let mut change_result: Vec<ChangeResult> = vec![Ok(Applied::Live); planned];
        let missing = Err(ProviderError::Rejected("the backend returned no result for this change".into()));
        for (Expanded { index: pi, role, change }, r) in
            expanded.iter().zip(res.into_iter().chain(std::iter::repeat(missing)))
        {
            self.ctx.metrics.change(&pid, change.verb(), if r.is_ok() { "ok" } else { "error" });
            let group = z.ownership.group_name(change.endpoint());
            match r {
                Ok(applied) => {
                    // A deletion files nothing: no need to ask what the backend holds.
                    let held = match change {
                        Change::Delete(_) => None,
                        Change::Create(e) | Change::Update { new: e, .. } => z.backend.held(zone, &e.key()),
                    };
                    apply_to_cache(zone_cache.entry(group).or_default(), change, held);
                    if *role == Role::Data {
                        match change {
                            Change::Create(_) => self.managed_records += 1,
                            Change::Delete(_) => self.managed_records -= 1,
                            Change::Update { .. } => {}
                        }
                    }
                    if let Some(r) = change_result.get_mut(*pi).filter(|r| **r == Ok(Applied::Live)) {
                        *r = Ok(applied);
                    }
                }
                Err(e) => {
                    warn!(provider = %self.id, change = change.verb(), record = %change.endpoint().key(), error = %e, "change failed");
                    // A TXT change of no planned change (an upgrade, an orphan's removal)
                    // fails for no record: it is retried or re-listed here.
                    if *pi >= planned {
                        if e.is_transient() {
                            out.transient = out.transient.take().or_else(|| Some(e.clone()));
                            out.failed_groups.insert(group.clone());
                        } else {
                            out.rejected = true;
                        }
                    }
                    out.unsettled.insert(group);
                    if let Some(r) = change_result.get_mut(*pi).filter(|r| r.is_ok()) {
                        *r = Err(e);
                    }
                }
            }
        }
        change_result
    }

    /// The state of one desired record after its zone's pass: `asked` is the record the
    /// DNSEndpoint asked for, `key` what the backend holds for it.
    fn record_result(
        &mut self,
        zone: &Zone,
        outcome: &Outcome,
        asked: &RecordKey,
        key: &RecordKey,
        change_result: &[ChangeResult],
    ) -> RecordResult {
        let id = &self.id;
        // "web CNAME is live" alone would hide that Route53 holds an alias of another type.
        let held = if key == asked { key.to_string() } else { format!("{asked} (held as {key} alias)") };
        let (just_applied, failed) = match outcome {
            Outcome::Change(ci) => match &change_result[*ci] {
                Ok(Applied::Propagating(change)) => (Some(change.clone()), None),
                Ok(Applied::Live) => (None, None),
                Err(e) => (None, Some(e)),
            },
            _ => (None, None),
        };
        if let Some(change) = &just_applied {
            self.propagating.entry(change.clone()).or_default().insert(key.clone());
        }
        let propagating = just_applied.or_else(|| self.is_propagating(key).map(str::to_string));
        let (state, message) = match (outcome, failed, propagating) {
            (_, Some(e), _) => {
                let shown = tenancy::public_error(e, id.namespace.is_some());
                (e.reason().to_string(), format!("{held}: {shown}"))
            }
            (Outcome::InSync | Outcome::Change(_), None, Some(change)) => (
                state::PROPAGATING.to_string(),
                format!("{held} was accepted by {id}, waiting for change {change} to be live"),
            ),
            (Outcome::InSync | Outcome::Change(_), None, None) => {
                (state::READY.to_string(), format!("{held} is live at {id}"))
            }
            // Skipped, not stalled: external-dns ignores types its provider does not manage,
            // and NodePort SRV records are outside the default set.
            (Outcome::UnmanagedType, None, _) => (state::SKIPPED.to_string(), unmanaged_message(key, id)),
            (other, None, _) => (other.reason().to_string(), other.message(key)),
        };
        RecordResult { state, zone: Some(zone.name.clone()), message }
    }

    /// Results for every desired record of `groups` in one state (the provider is unusable).
    fn report_all(&mut self, groups: &BTreeSet<String>, st: &str, message: &str) {
        let all: BTreeSet<String> =
            if groups.is_empty() { self.desired.keys().cloned().collect() } else { groups.clone() };
        let results: Vec<((EpKey, usize), RecordResult)> = self
            .desired_in(&all)
            .map(|(slot, _)| {
                (slot.clone(), RecordResult { state: st.to_string(), zone: None, message: message.to_string() })
            })
            .collect();
        self.report(results);
    }

    fn report_retry(&mut self, groups: &BTreeSet<String>) {
        let (st, msg) = match &self.last_error {
            Some(e) => (e.reason().to_string(), e.to_string()),
            None => (state::PENDING.to_string(), "waiting for the provider".to_string()),
        };
        let id = self.id.clone();
        // No time of the next attempt here (the log has it): a message that changed with
        // every attempt would rewrite the status of every object a broken provider serves
        // at every retry, loading the apiserver that every other provider's objects share.
        let results: Vec<((EpKey, usize), RecordResult)> = self
            .desired_in(groups)
            .map(|(slot, d)| {
                let message = format!("{}: provider {id}: {msg}; retrying with backoff", d.endpoint.key());
                (slot.clone(), RecordResult { state: st.clone(), zone: None, message })
            })
            .collect();
        self.report(results);
    }

    /// Sends the results that differ from what the router already has.
    fn report(&mut self, results: Vec<((EpKey, usize), RecordResult)>) {
        let mut changed: Vec<(EpKey, usize, RecordResult)> = Vec::new();
        for (slot, r) in results {
            let hash = result_hash(&r);
            if self.sent.get(&slot) != Some(&hash) {
                self.sent.insert(slot.clone(), hash);
                changed.push((slot.0, slot.1, r));
            }
        }
        if !changed.is_empty() {
            let _ = self.reports.send((self.id.clone(), WorkerReport::Results(changed)));
        }
    }

    /// Deleted objects whose names were all planned without failure are released.
    fn release_done(&mut self) {
        let done: Vec<EpKey> = self
            .releases
            .iter()
            .filter(|(_, groups)| groups.iter().all(|g| !self.dirty.contains(g) && !self.unsettled.contains(g)))
            .map(|(ep, _)| ep.clone())
            .collect();
        for ep in done {
            self.releases.remove(&ep);
            let _ = self.reports.send((self.id.clone(), WorkerReport::Released(ep)));
        }
    }

    /// Writes the provider's status when it changed. Only the leader writes.
    async fn write_status(&mut self) {
        // Whatever is due is decided again below.
        self.status_due = None;
        if !self.leading() || self.object.deleting {
            return;
        }
        let Some(client) = self.ctx.client.clone() else { return };
        let prev = self.object.status.clone().unwrap_or_default();
        let now = now_time();
        let (ready, reason, message) = match (&self.backend, &self.ownership, &self.last_error, &self.cache) {
            (Err(e), _, _, _) => (false, e.reason().to_string(), e.to_string()),
            (_, Err(e), _, _) => (false, "InvalidProvider".to_string(), e.clone()),
            (_, _, Some(e), _) => (false, e.reason().to_string(), e.to_string()),
            (_, _, None, Some(c)) if c.zones.is_empty() => {
                (false, "NoZones".to_string(), "the backend holds no zone admitted by spec.zones".to_string())
            }
            (_, _, None, Some(c)) => (true, "ZonesFound".to_string(), format!("{} zone(s) reachable", c.zones.len())),
            (_, _, None, None) => (false, "Pending".to_string(), "not listed yet".to_string()),
        };
        let generation = self.object.generation;
        let conditions = status::provider_conditions(ready, &reason, message, generation, &prev.conditions, &now);
        let status = DnsProviderStatus {
            observed_generation: generation,
            conditions,
            zones: self
                .cache
                .as_ref()
                .map(|c| c.zones.iter().map(|z| z.name.clone()).collect())
                .unwrap_or(prev.zones.clone()),
            managed_records: Some(self.managed_records),
            last_sync: self.cache.as_ref().map(|c| c.fetched_at.clone()).or(prev.last_sync.clone()),
        };
        if self.object.status.as_ref().is_some_and(|s| {
            s.observed_generation == status.observed_generation
                && s.zones == status.zones
                && s.managed_records == status.managed_records
                && s.last_sync == status.last_sync
                && status::same_conditions(&s.conditions, &status.conditions)
        }) {
            return;
        }
        let Ok(value) = serde_json::to_value(&status) else { return };
        if self.written_status.as_ref() == Some(&value) {
            return;
        }
        let counts_only = self.object.status.as_ref().is_some_and(|s| {
            s.observed_generation == status.observed_generation
                && s.zones == status.zones
                && status::same_conditions(&s.conditions, &status.conditions)
        });
        let due = self.status_written_at.map(|t| t + COUNTS_INTERVAL).filter(|at| *at > Instant::now());
        if let (true, Some(due)) = (counts_only, due) {
            self.status_due = Some(due);
            return;
        }
        let pp = PatchParams::apply(PROVIDER_MANAGER).force();
        let res = match &self.id.namespace {
            Some(ns) => {
                let patch = json!({"apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "status": value});
                Api::<DNSProvider>::namespaced(client, ns)
                    .patch_status(&self.id.name, &pp, &Patch::Apply(&patch))
                    .await
                    .map(|_| ())
            }
            None => {
                let patch = json!({"apiVersion": "extdns.io/v1alpha1", "kind": "ClusterDNSProvider", "status": value});
                Api::<ClusterDNSProvider>::all(client)
                    .patch_status(&self.id.name, &pp, &Patch::Apply(&patch))
                    .await
                    .map(|_| ())
            }
        };
        match res {
            Ok(()) => {
                self.ctx
                    .metrics
                    .status_writes
                    .get_or_create(&crate::metrics::KindLabels { kind: "DNSProvider".into() })
                    .inc();
                self.written_status = Some(value);
                self.status_written_at = Some(Instant::now());
            }
            Err(e) => warn!(provider = %self.id, error = %e, "provider status write failed"),
        }
    }
}

/// A desired record's place (object, index in its spec) and the record it asked for, before
/// the backend adjusted it.
type Slot = ((EpKey, usize), RecordKey);

/// The results of a pass, by the desired record they are for.
type RecordResults = BTreeMap<(EpKey, usize), RecordResult>;

/// Desired records that have a zone, by their slot.
type Plannable<'a> = Vec<(&'a (EpKey, usize), &'a DesiredRecord)>;

#[derive(Default)]
struct SyncOutcome {
    results: Vec<((EpKey, usize), RecordResult)>,
    transient: Option<ProviderError>,
    failed_groups: BTreeSet<String>,
    /// Groups where any change (a record's or a TXT's) failed, refused or not.
    unsettled: BTreeSet<String>,
    rejected: bool,
}

/// Why `ep` may not be published: a TXT data value the registry would read as an ownership
/// record. Plain ones are refused when the DNSEndpoint is validated; this catches a copy of
/// an encrypted ownership value, which only the registry's key can recognise.
fn forged_ownership(ownership: &Result<Ownership, String>, ep: &Endpoint) -> Option<String> {
    let Ok(Ownership::Txt(reg)) = ownership else { return None };
    if ep.record_type != RecordType::TXT {
        return None;
    }
    ep.targets.iter().any(|t| reg.reads_as_ownership(t)).then(|| {
        format!(
            "{}: a TXT value that reads as an ownership record of this provider's registry is written only by the registry, never published as data",
            ep.key()
        )
    })
}

/// Why a record of a type the provider does not manage is left out, and how to publish it.
fn unmanaged_message(key: &RecordKey, provider: &ProviderId) -> String {
    let t = key.record_type;
    format!(
        "{key}: skipped (UnmanagedType): provider {provider} does not manage {t} records; add {t} to its spec.managedRecordTypes to publish them"
    )
}

fn count_owned(cache: &Cache, ownership: &Ownership, owner: Option<&str>, domains: &DomainFilter) -> i64 {
    let (Ownership::Txt(reg), Some(owner)) = (ownership, owner) else { return 0 };
    let mut n = 0i64;
    for zone in &cache.zones {
        let Some(groups) = cache.raw.get(&zone.id) else { continue };
        // Group by group: a group holds a name's records and their ownership TXT records, so
        // each one reads the same on its own. A view of the whole zone at once copied it, at
        // the end of every full plan: 1.4 KB a record, the operator's peak at 10,000.
        for records in groups.values() {
            let view = reg.view_in_zone(own_copies(records), &zone.name);
            n += view
                .endpoints
                .iter()
                .filter(|e| {
                    e.labels.get(label::OWNER).map(String::as_str) == Some(owner) && domains.matches(&e.dns_name)
                })
                .count() as i64;
        }
    }
    n
}

fn result_hash(r: &RecordResult) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    r.hash(&mut h);
    h.finish()
}

/// Copies of shared records, for the planner and the registry, which take them by value.
fn own_copies(records: &[Arc<Endpoint>]) -> Vec<Endpoint> {
    records.iter().map(|e| Endpoint::clone(e)).collect()
}

/// Files an applied change in a group of the cache. `held` is the record as the backend
/// holds it now, when it keeps its records in this process: the cache shares it.
pub(super) fn apply_to_cache(records: &mut Vec<Arc<Endpoint>>, change: &Change, held: Option<Arc<Endpoint>>) {
    // Room for exactly one more: a group holds a record or two (and its ownership TXT), and
    // a Vec's first growth makes room for four.
    records.reserve_exact(1);
    let strip = |e: &Endpoint| {
        if let Some(held) = held.as_ref().filter(|h| h.key() == e.key()) {
            return held.clone();
        }
        let mut e = e.clone();
        e.labels.clear();
        Arc::new(e)
    };
    match change {
        Change::Create(e) => {
            records.retain(|r| r.key() != e.key());
            records.push(strip(e));
        }
        Change::Update { old, new } => {
            records.retain(|r| r.key() != old.key() && r.key() != new.key());
            records.push(strip(new));
        }
        Change::Delete(e) => records.retain(|r| r.key() != e.key()),
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
    .map(|r| Ownership::Txt(Arc::new(r)))
    .map_err(|e| format!("spec.registry.txt: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ProviderRefKind;
    use crate::dns::plan::Claimant;
    use crate::dns::providers::inmemory::InMemoryProvider;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    fn id(name: &str) -> ProviderId {
        ProviderId { kind: ProviderRefKind::DNSProvider, namespace: Some("team-a".into()), name: name.into() }
    }

    type Reports = mpsc::UnboundedReceiver<(ProviderId, WorkerReport)>;

    /// A started worker around `backend`, as the router would have it.
    fn worker(name: &str, backend: Arc<dyn Provider>) -> (Worker, Reports) {
        let (tx, rx) = mpsc::unbounded_channel();
        let object = ProviderObject {
            id: id(name),
            spec: ProviderSpec::default(),
            created: String::new(),
            verdict: Ok(()),
            generation: Some(1),
            finalizers: Vec::new(),
            resource_version: None,
            deleting: false,
            status: None,
        };
        let leader = crate::controller::leader::Leadership::always();
        let ctx = WorkerCtx {
            client: None,
            metrics: Arc::new(Metrics::default()),
            leader,
            coalesce: Duration::from_millis(10),
            backend_timeout: Duration::from_secs(2),
            operator_namespace: "extdns".into(),
            namespaced_ambient: false,
        };
        let mut w = Worker::new(object, ctx, tx);
        w.backend = Ok(Backend { provider: backend, server: None });
        let registry = TxtRegistry::new(TxtRegistryConfig {
            owner_id: "e2e".into(),
            prefix: String::new(),
            suffix: String::new(),
            wildcard_replacement: String::new(),
            aes_key: None,
        });
        w.ownership = Ok(Ownership::Txt(Arc::new(registry.unwrap())));
        w.started = true;
        (w, rx)
    }

    fn desired(name: &str, rt: RecordType, target: &str) -> DesiredRecord {
        DesiredRecord {
            endpoint: Arc::new(Endpoint::new(name, rt, vec![target.into()])),
            claimant: Arc::new(Claimant { created: String::new(), namespace: "team-a".into(), name: "web".into() }),
        }
    }

    fn ep(name: &str) -> EpKey {
        format!("team-a/{name}@uid").into()
    }

    /// Every result reported so far, latest per slot.
    fn results(rx: &mut Reports) -> BTreeMap<(String, usize), RecordResult> {
        let mut out = BTreeMap::new();
        while let Ok((_, r)) = rx.try_recv() {
            if let WorkerReport::Results(rs) = r {
                for (k, i, r) in rs {
                    out.insert((k.to_string(), i), r);
                }
            }
        }
        out
    }

    /// Takes changes like the in-memory backend but reports them as Route53 does: accepted
    /// and propagating until `live` is set. Holds a CNAME to `*.lb.test` as an A and an AAAA
    /// record, as Route53 holds a CNAME to a load balancer.
    struct PropagatingBackend {
        inner: InMemoryProvider,
        live: AtomicBool,
        polls: AtomicUsize,
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
            self.polls.fetch_add(1, Ordering::SeqCst);
            Ok(self.live.load(Ordering::SeqCst))
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

    #[tokio::test(start_paused = true)]
    async fn records_are_propagating_until_the_backend_says_live() {
        let backend = Arc::new(PropagatingBackend {
            inner: InMemoryProvider::new(["example.com"]),
            live: Default::default(),
            polls: Default::default(),
        });
        let (mut w, mut rx) = worker("r53", backend.clone());
        w.set_desired(
            ep("web"),
            vec![
                (0, desired("app.example.com", RecordType::A, "192.0.2.1")),
                (1, desired("web.example.com", RecordType::CNAME, "k8s-1.lb.test")),
            ],
        );
        let polls = || backend.polls.load(Ordering::SeqCst);
        let state =
            |r: &BTreeMap<(String, usize), RecordResult>, i: usize| r[&("team-a/web@uid".to_string(), i)].state.clone();

        w.sync().await;
        let first = results(&mut rx);
        assert_eq!((state(&first, 0), state(&first, 1)), ("Propagating".into(), "Propagating".into()));
        let msg = &first[&("team-a/web@uid".to_string(), 1)].message;
        assert!(msg.contains("web.example.com CNAME (held as web.example.com A alias)"), "{msg}");
        assert!(msg.contains("waiting for change C1"), "{msg}");
        let held: Vec<RecordType> = backend
            .inner
            .records(&Zone::named("example.com"))
            .await
            .unwrap()
            .iter()
            .map(|e| e.record_type)
            .filter(|t| *t != RecordType::TXT)
            .collect();
        assert_eq!(held, vec![RecordType::A, RecordType::A, RecordType::AAAA], "the CNAME is held as A and AAAA");
        assert_eq!(w.deadline(), Some(Instant::now() + PROPAGATION_POLL), "a run is due to poll the change");

        // Runs before the poll interval do not poll.
        w.sync().await;
        assert_eq!(polls(), 0);
        tokio::time::advance(PROPAGATION_POLL).await;
        w.sync().await;
        assert_eq!(polls(), 1);
        assert!(results(&mut rx).is_empty(), "still propagating: nothing new to report");

        backend.live.store(true, Ordering::SeqCst);
        tokio::time::advance(PROPAGATION_POLL).await;
        w.sync().await;
        assert_eq!(polls(), 2);
        let live = results(&mut rx);
        assert_eq!((state(&live, 0), state(&live, 1)), ("Ready".into(), "Ready".into()), "{live:?}");
        assert!(w.propagating.is_empty());
        assert_eq!(w.deadline(), w.cache.as_ref().map(|c| c.fetched + DEFAULT_RESYNC), "only the resync is due");
    }

    #[tokio::test(start_paused = true)]
    async fn unmanaged_types_are_skipped_not_stalled() {
        let backend = Arc::new(InMemoryProvider::new(["example.com"]));
        let (mut w, mut rx) = worker("p", backend.clone());
        w.set_desired(
            ep("game"),
            vec![
                (0, desired("game.example.com", RecordType::A, "192.0.2.1")),
                (1, desired("_game._tcp.game.example.com", RecordType::SRV, "0 50 30080 game.example.com")),
            ],
        );
        w.sync().await;
        let r = results(&mut rx);
        let get = |i: usize| &r[&("team-a/game@uid".to_string(), i)];
        assert_eq!(get(0).state, "Ready");
        assert_eq!(get(1).state, "Skipped");
        assert_eq!(
            get(1).message,
            "_game._tcp.game.example.com SRV: skipped (UnmanagedType): provider DNSProvider/team-a/p does not manage SRV records; add SRV to its spec.managedRecordTypes to publish them"
        );
        let held = backend.records(&Zone::named("example.com")).await.unwrap();
        assert!(held.iter().all(|e| e.record_type != RecordType::SRV), "{held:?}");
    }

    /// A backend in this process shares its records with the worker's cache, both those it
    /// listed and those a pass then wrote: the cache is no second copy of the zone.
    #[tokio::test(start_paused = true)]
    async fn the_cache_of_an_in_process_backend_shares_its_records() {
        let backend = Arc::new(InMemoryProvider::new(["example.com"]));
        backend.seed(Endpoint::new("old.example.com", RecordType::A, vec!["192.0.2.9".into()])).unwrap();
        let (mut w, mut rx) = worker("p", backend.clone());
        w.set_desired(ep("web"), vec![(0, desired("web.example.com", RecordType::A, "192.0.2.1"))]);
        w.sync().await;
        assert_eq!(results(&mut rx)[&("team-a/web@uid".to_string(), 0)].state, "Ready");
        let store = backend.records_shared(&Zone::named("example.com")).await.unwrap();
        let cached: Vec<Arc<Endpoint>> =
            w.cache.as_ref().expect("listed").raw.values().flat_map(|z| z.values()).flatten().cloned().collect();
        // The seeded record, the new one and its ownership TXT.
        assert_eq!(store.len(), 3, "{store:?}");
        assert_eq!(cached.len(), 3, "{cached:?}");
        for e in &cached {
            assert!(store.iter().any(|s| Arc::ptr_eq(s, e)), "{} is a copy", e.key());
        }
    }

    /// Two hosted zones with one name, as Route53's private and public zone of a domain.
    /// Counts listings and records every batch it is sent.
    #[derive(Default)]
    struct RecordingBackend {
        zones: Vec<Zone>,
        held: std::sync::Mutex<BTreeMap<String, Vec<Arc<Endpoint>>>>,
        applied: std::sync::Mutex<Vec<(String, Vec<Change>)>>,
        listings: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Provider for RecordingBackend {
        async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
            Ok(self.zones.clone())
        }
        async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
            self.listings.fetch_add(1, Ordering::SeqCst);
            Ok(self.held.lock().unwrap().get(&zone.id).map_or_else(Vec::new, |z| own_copies(z)))
        }
        async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
            self.applied.lock().unwrap().push((zone.id.clone(), changes.to_vec()));
            let mut held = self.held.lock().unwrap();
            let z = held.entry(zone.id.clone()).or_default();
            changes
                .iter()
                .map(|c| {
                    apply_to_cache(z, c, None);
                    Ok(Applied::Live)
                })
                .collect()
        }
    }

    #[tokio::test]
    async fn zones_sharing_a_name_each_get_the_record() {
        let zones = ["ZPRIVATE", "ZPUBLIC"].map(|id| Zone { id: id.into(), name: "example.com".into() }).to_vec();
        let backend = Arc::new(RecordingBackend { zones, ..Default::default() });
        let (mut w, mut rx) = worker("r53", backend.clone());
        w.set_desired(ep("web"), vec![(0, desired("app.example.com", RecordType::A, "192.0.2.1"))]);
        w.sync().await;
        assert_eq!(results(&mut rx)[&("team-a/web@uid".to_string(), 0)].state, "Ready");
        let applied: Vec<(String, usize)> =
            backend.applied.lock().unwrap().iter().map(|(z, c)| (z.clone(), c.len())).collect();
        let one = |z: &str| (z.to_string(), 1);
        assert_eq!(
            applied,
            vec![one("ZPRIVATE"), one("ZPRIVATE"), one("ZPUBLIC"), one("ZPUBLIC")],
            "the TXT, then the A, in each"
        );
        // In sync in both: nothing more is sent.
        w.full = true;
        w.sync().await;
        assert_eq!(backend.applied.lock().unwrap().len(), 4);
    }

    /// One changed record costs one planned name and one change: no listing, no other name
    /// planned or reported, whatever else the zone holds.
    #[tokio::test]
    async fn a_change_plans_only_its_name() {
        let backend = Arc::new(RecordingBackend { zones: vec![Zone::named("example.com")], ..Default::default() });
        let (mut w, mut rx) = worker("dns", backend.clone());
        for i in 0..200 {
            let name = format!("app{i}");
            w.set_desired(ep(&name), vec![(0, desired(&format!("{name}.example.com"), RecordType::A, "192.0.2.1"))]);
        }
        w.sync().await;
        assert_eq!(results(&mut rx).len(), 200);
        assert_eq!(backend.listings.load(Ordering::SeqCst), 1);

        w.set_desired(ep("app7"), vec![(0, desired("app7.example.com", RecordType::A, "192.0.2.7"))]);
        assert_eq!(w.dirty, BTreeSet::from(["app7.example.com".to_string()]));
        w.sync().await;
        assert_eq!(backend.listings.load(Ordering::SeqCst), 1, "no listing between resyncs");
        let last = backend.applied.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last.1.len(), 1, "one change, the ownership TXT unchanged: {last:?}");
        assert!(matches!(&last.1[0], Change::Update { new, .. } if new.targets == vec!["192.0.2.7".to_string()]));
        let reported = results(&mut rx);
        assert_eq!(reported.len(), 1, "only the changed record reports: {reported:?}");

        // Gone from the object: its record is deleted, nothing else is touched.
        w.set_desired(ep("app7"), Vec::new());
        w.sync().await;
        let applied = backend.applied.lock().unwrap().clone();
        let deleted: Vec<&str> = applied[applied.len() - 2..]
            .iter()
            .flat_map(|(_, changes)| changes)
            .filter_map(|c| match c {
                Change::Delete(e) => Some(e.dns_name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec!["app7.example.com", "a-app7.example.com"], "the A, then its TXT: {applied:?}");
    }

    /// A full plan of more names than [`PLAN_CHUNK`] goes out chunk by chunk, every name
    /// planned once, and the owned records are counted over all of them.
    #[tokio::test]
    async fn a_full_plan_goes_out_in_chunks() {
        let backend = Arc::new(RecordingBackend { zones: vec![Zone::named("example.com")], ..Default::default() });
        let (mut w, mut rx) = worker("dns", backend.clone());
        let n = PLAN_CHUNK * 2 + 5;
        for i in 0..n {
            let name = format!("app{i}");
            w.set_desired(ep(&name), vec![(0, desired(&format!("{name}.example.com"), RecordType::A, "192.0.2.1"))]);
        }
        w.sync().await;
        assert_eq!(results(&mut rx).len(), n);
        let applied = backend.applied.lock().unwrap().clone();
        assert_eq!(applied.len(), 6, "per chunk, the TXTs then their records");
        let created: BTreeSet<String> = applied
            .iter()
            .flat_map(|(_, changes)| changes)
            .filter_map(|c| match c {
                Change::Create(e) if e.record_type == RecordType::A => Some(e.dns_name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), n, "every name once");
        assert_eq!(backend.listings.load(Ordering::SeqCst), 1);
        assert_eq!(w.managed_records, n as i64, "owned records, counted over all chunks");
    }

    /// Two providers with one owner id and disjoint `spec.domains` in one zone: each plans,
    /// counts and deletes only the names of its own domains, whatever its full plans see.
    #[tokio::test]
    async fn a_provider_never_touches_records_outside_its_domains() {
        use crate::crd::dnsprovider::IncludeExclude;
        let backend = Arc::new(InMemoryProvider::new(["example.com"]));
        let domains = |d: &str| Some(IncludeExclude { include: vec![d.into()], exclude: Vec::new() });
        let (mut a, mut rx_a) = worker("a", backend.clone());
        a.object.spec.domains = domains("a.example.com");
        a.configure();
        let (mut b, mut rx_b) = worker("b", backend.clone());
        b.object.spec.domains = domains("b.example.com");
        b.configure();
        a.set_desired(ep("web-a"), vec![(0, desired("web.a.example.com", RecordType::A, "192.0.2.1"))]);
        b.set_desired(ep("web-b"), vec![(0, desired("web.b.example.com", RecordType::A, "192.0.2.2"))]);
        a.sync().await;
        b.sync().await;
        assert_eq!(results(&mut rx_a)[&("team-a/web-a@uid".to_string(), 0)].state, "Ready");
        assert_eq!(results(&mut rx_b)[&("team-a/web-b@uid".to_string(), 0)].state, "Ready");
        let before = backend.all_records();
        assert_eq!(before.len(), 4, "two records and their TXTs: {before:?}");

        // Full plans of both, after a fresh listing: each sees the other's record, owned by
        // the same owner id and wanted by none of its DNSEndpoints.
        for w in [&mut a, &mut b] {
            w.cache = None;
            w.full = true;
            w.sync().await;
        }
        assert_eq!(backend.all_records(), before, "no provider deleted the other's record");
        assert_eq!((a.managed_records, b.managed_records), (1, 1), "each counts its own domains only");

        // Its own unwanted record still goes.
        a.set_desired(ep("web-a"), Vec::new());
        a.sync().await;
        let left: Vec<String> = backend.all_records().iter().map(|e| e.dns_name.clone()).collect();
        assert_eq!(left, vec!["a-web.b.example.com".to_string(), "web.b.example.com".to_string()]);
    }

    /// At a ClusterDNSProvider a namespace's name holds the names below it and the names of
    /// its ownership TXTs; the zone apex keeps the platform's NS and MX.
    #[tokio::test]
    async fn a_shared_provider_keeps_a_namespace_out_of_another_namespace_name_tree() {
        let backend = Arc::new(InMemoryProvider::new(["example.com"]));
        let (mut w, mut rx) = worker("shared", backend.clone());
        w.id = ProviderId { kind: ProviderRefKind::ClusterDNSProvider, namespace: None, name: "shared".into() };
        w.managed = RecordType::ALL.to_vec();
        let claim = |ns: &str, created: &str, name: &str, rt: RecordType, target: &str| {
            let mut endpoint = Endpoint::new(name, rt, vec![target.into()]);
            endpoint.labels.insert(label::RESOURCE.into(), format!("crd/{ns}/obj"));
            DesiredRecord {
                endpoint: Arc::new(endpoint),
                claimant: Arc::new(Claimant { created: created.into(), namespace: ns.into(), name: "obj".into() }),
            }
        };
        let key = |ns: &str, obj: &str| EpKey::from(format!("{ns}/{obj}@uid"));
        let bob = |name: &str, rt, t: &str| claim("bob", "2026-01-02T00:00:00Z", name, rt, t);
        let alice = |name: &str, rt, t: &str| claim("alice", "2026-01-01T00:00:00Z", name, rt, t);
        w.set_desired(key("bob", "web"), vec![(0, bob("web.example.com", RecordType::A, "192.0.2.1"))]);
        w.sync().await;
        assert_eq!(results(&mut rx)[&("bob/web@uid".to_string(), 0)].state, "Ready");

        // alice is older, but bob's records are live: the names below his and the name of
        // his ownership TXT are his; so is the apex's mail, for nobody.
        w.set_desired(
            key("alice", "grab"),
            vec![
                (0, alice("_acme-challenge.web.example.com", RecordType::TXT, "token")),
                (1, alice("a-web.example.com", RecordType::CNAME, "elsewhere.example.net")),
                (2, alice("example.com", RecordType::MX, "10 mail.example.net")),
                (3, alice("other.example.com", RecordType::A, "192.0.2.9")),
            ],
        );
        w.sync().await;
        let r = results(&mut rx);
        let state = |i: usize| r[&("alice/grab@uid".to_string(), i)].state.clone();
        assert_eq!(
            (state(0), state(1), state(2), state(3)),
            ("Conflict".into(), "Conflict".into(), "NameNotAllowed".into(), "Ready".into())
        );
        let msg = &r[&("alice/grab@uid".to_string(), 0)].message;
        assert!(msg.contains("namespace bob") && msg.contains("web.example.com"), "{msg}");
        let names: BTreeSet<String> = backend.all_records().iter().map(|e| e.dns_name.clone()).collect();
        assert!(!names.contains("_acme-challenge.web.example.com") && !names.contains("example.com"), "{names:?}");

        // A claim at the apex holds nothing below it, and nothing below holds it: it re-plans
        // only itself.
        let apex_claim = claim("carol", "2026-01-03T00:00:00Z", "example.com", RecordType::A, "192.0.2.7");
        w.set_desired(key("carol", "apex"), vec![(0, apex_claim)]);
        assert_eq!(w.dirty, BTreeSet::from(["example.com".to_string()]));
        w.sync().await;
        let r = results(&mut rx);
        assert_eq!(r[&("carol/apex@uid".to_string(), 0)].state, "Ready", "{r:?}");

        // Once bob's name goes, alice's claim below it is served.
        w.set_desired(key("bob", "web"), Vec::new());
        w.sync().await;
        let r = results(&mut rx);
        assert_eq!(r[&("alice/grab@uid".to_string(), 0)].state, "Ready", "{r:?}");
    }

    #[test]
    fn refused_changes_relist_with_backoff_up_to_the_resync() {
        let hour = Duration::from_secs(3600);
        let waits: Vec<u64> = (0..9).map(|n| relist_after_reject(n, hour).as_secs()).collect();
        assert_eq!(waits, vec![30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(relist_after_reject(0, Duration::from_secs(10)), Duration::from_secs(10));
    }

    #[test]
    fn a_new_provider_has_a_grace_for_deletions() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        assert_eq!(deletion_grace_until("2026-01-01T00:00:50Z", now), Some(Duration::from_secs(50)));
        assert_eq!(deletion_grace_until("2026-01-01T00:00:00Z", now), None, "exactly its age");
        assert_eq!(deletion_grace_until("2025-12-31T00:00:00Z", now), None);
        assert_eq!(deletion_grace_until("", now), None, "no creation time: no grace");
    }

    /// During the grace, a new provider's first plan deletes no owned record that nobody
    /// wants yet (its DNSEndpoint may be a moment behind); records at wanted names still
    /// change; once the grace is over a plan of every name deletes the orphan.
    #[tokio::test]
    async fn a_new_provider_leaves_owned_orphans_during_its_grace() {
        let zone = Zone::named("example.com");
        let owned =
            |r: &str| format!("heritage=external-dns,external-dns/owner=e2e,external-dns/resource=crd/team-a/{r}");
        let held = vec![
            Endpoint::new("late.example.com", RecordType::A, vec!["192.0.2.9".into()]).with_ttl(300),
            Endpoint::new("a-late.example.com", RecordType::TXT, vec![owned("late")]).with_ttl(300),
        ];
        let backend = Arc::new(RecordingBackend { zones: vec![zone.clone()], ..Default::default() });
        backend.held.lock().unwrap().insert(zone.id.clone(), held.into_iter().map(Arc::new).collect());
        let (mut w, mut rx) = worker("dns", backend.clone());
        w.object.created = jiff::Timestamp::now().to_string();
        w.set_desired(ep("web"), vec![(0, desired("web.example.com", RecordType::A, "192.0.2.1"))]);
        w.sync().await;
        assert_eq!(results(&mut rx).len(), 1);
        let sent: Vec<Change> = backend.applied.lock().unwrap().iter().flat_map(|(_, c)| c.clone()).collect();
        assert!(sent.iter().all(|c| matches!(c, Change::Create(_))), "only the wanted record's creation: {sent:#?}");
        assert!(w.grace_replan_at.is_some(), "a plan of every name is due when the grace ends");

        // A deleted DNSEndpoint's records go at once, grace or not: its finalizer waits.
        let before = backend.applied.lock().unwrap().len();
        w.handle(WorkerMsg::Release { ep: ep("web"), names: vec!["web.example.com".into()] });
        w.sync().await;
        let since: Vec<Change> =
            backend.applied.lock().unwrap()[before..].iter().flat_map(|(_, c)| c.clone()).collect();
        assert!(
            since.iter().any(|c| matches!(c, Change::Delete(e) if e.dns_name == "web.example.com")),
            "the released record is deleted: {since:?}"
        );
        assert!(w.releases.is_empty(), "released");

        // The grace is over (as if the provider were older): the orphan goes.
        w.object.created = "2020-01-01T00:00:00Z".into();
        w.grace_replan_at = Some(Instant::now());
        w.sync().await;
        let deleted: Vec<String> = backend
            .applied
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, c)| c.clone())
            .filter_map(|c| match c {
                Change::Delete(e) => Some(e.dns_name),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["web.example.com", "a-web.example.com", "late.example.com", "a-late.example.com"]);
        // (The first two are the release above; the orphan's pair is the grace's end.)
        assert_eq!(w.grace_replan_at, None);
    }

    /// A record owned through an old-format TXT alone gets its new-format TXT on the first
    /// pass, and nothing else is sent, then or later.
    #[tokio::test]
    async fn old_format_only_records_get_their_new_format_txt_once() {
        let zone = Zone::named("example.com");
        let owned = "heritage=external-dns,external-dns/owner=e2e,external-dns/resource=crd/team-a/web";
        let held = vec![
            Endpoint::new("web.example.com", RecordType::A, vec!["192.0.2.1".into()]).with_ttl(0),
            Endpoint::new("web.example.com", RecordType::TXT, vec![owned.into()]).with_ttl(0),
        ];
        let backend = Arc::new(RecordingBackend { zones: vec![zone.clone()], ..Default::default() });
        backend.held.lock().unwrap().insert(zone.id.clone(), held.into_iter().map(Arc::new).collect());
        let (mut w, mut rx) = worker("dns", backend.clone());
        let mut web = desired("web.example.com", RecordType::A, "192.0.2.1");
        Arc::make_mut(&mut web.endpoint).labels.insert(label::RESOURCE.into(), "crd/team-a/web".into());
        w.set_desired(ep("web"), vec![(0, web)]);
        w.sync().await;
        assert_eq!(results(&mut rx)[&("team-a/web@uid".to_string(), 0)].state, "Ready");
        let applied = backend.applied.lock().unwrap().clone();
        let sent: Vec<&Change> = applied.iter().flat_map(|(_, c)| c).collect();
        assert!(
            matches!(&sent[..], [Change::Create(t)] if t.dns_name == "a-web.example.com" && t.targets == [owned] && t.ttl == Some(0)),
            "{sent:#?}"
        );
        w.full = true;
        w.sync().await;
        assert_eq!(backend.applied.lock().unwrap().len(), 1, "nothing more");
    }

    /// Start-up as the router drives it: the records, Start, then the provider object again
    /// (finalizer and status writes come back as events) and more records: one listing.
    #[tokio::test]
    async fn start_up_lists_the_zone_once() {
        let backend = Arc::new(RecordingBackend { zones: vec![Zone::named("example.com")], ..Default::default() });
        let (mut w, mut reports) = worker("r53", backend.clone());
        w.started = false;
        let object = w.object.clone();
        let (tx, rx) = super::super::inbox::channel();
        tokio::spawn(w.run(rx));
        let rec = |n: &str| vec![(0, desired(&format!("{n}.example.com"), RecordType::A, "192.0.2.1"))];
        tx.send(WorkerMsg::Desired { ep: ep("a"), records: rec("a") }).unwrap();
        tx.send(WorkerMsg::Start).unwrap();
        tx.send(WorkerMsg::Object(Box::new(object.clone()))).unwrap();
        tx.send(WorkerMsg::Desired { ep: ep("b"), records: rec("b") }).unwrap();
        let mut ready = BTreeSet::new();
        while ready.len() < 2 {
            let got = tokio::time::timeout(Duration::from_secs(5), reports.recv()).await;
            let Ok(Some((_, WorkerReport::Results(rs)))) = got else { panic!("no report") };
            ready.extend(rs.into_iter().filter(|r| r.2.state == "Ready").map(|r| r.0.to_string()));
        }
        tx.send(WorkerMsg::Object(Box::new(object))).unwrap();
        tx.send(WorkerMsg::Desired { ep: ep("c"), records: rec("c") }).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), reports.recv()).await;
        assert!(matches!(got, Ok(Some((_, WorkerReport::Results(_))))), "no report");
        assert_eq!(backend.listings.load(Ordering::SeqCst), 1, "one listing at start-up");
    }

    /// A backend that never answers.
    /// Applies every change, but the answer to the first data delete is lost: the backend
    /// did it, the caller hears "unreachable".
    struct LostDeleteAnswer {
        inner: InMemoryProvider,
        lost: AtomicBool,
    }

    #[async_trait::async_trait]
    impl Provider for LostDeleteAnswer {
        async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
            self.inner.zones().await
        }
        async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
            self.inner.records(zone).await
        }
        async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
            let mut results = self.inner.apply(zone, changes).await;
            for (c, r) in changes.iter().zip(results.iter_mut()) {
                let data_delete = matches!(c, Change::Delete(e) if e.record_type != RecordType::TXT);
                if data_delete && r.is_ok() && !self.lost.swap(true, Ordering::SeqCst) {
                    *r = Err(ProviderError::Unreachable("the answer was lost".into()));
                }
            }
            results
        }
    }

    /// A deleted object whose record went but whose delete was never answered is released
    /// only once a fresh listing shows the record gone and its TXT has been removed too.
    #[tokio::test]
    async fn a_record_and_its_txt_leave_together_when_an_answer_is_lost() {
        let backend =
            Arc::new(LostDeleteAnswer { inner: InMemoryProvider::new(["example.com"]), lost: AtomicBool::new(false) });
        let (mut w, mut rx) = worker("dns", backend.clone());
        w.set_desired(ep("web"), vec![(0, desired("web.example.com", RecordType::A, "192.0.2.1"))]);
        w.sync().await;
        assert_eq!(backend.inner.all_records().len(), 2);
        w.handle(WorkerMsg::Release { ep: ep("web"), names: vec!["web.example.com".into()] });
        w.sync().await;
        let released = |rx: &mut Reports| {
            std::iter::from_fn(|| rx.try_recv().ok())
                .any(|(_, r)| matches!(r, WorkerReport::Released(k) if k == ep("web")))
        };
        assert!(!released(&mut rx), "not released while the delete is unanswered");
        let left: Vec<String> = backend.inner.all_records().iter().map(|e| e.dns_name.clone()).collect();
        assert_eq!(left, vec!["a-web.example.com".to_string()], "the record went, its TXT was not sent");

        // The retry (backoff skipped) lists the zone again and removes the TXT.
        w.retry = None;
        w.sync().await;
        assert!(backend.inner.all_records().is_empty(), "{:?}", backend.inner.all_records());
        assert!(released(&mut rx));
    }

    struct HangingBackend;

    #[async_trait::async_trait]
    impl Provider for HangingBackend {
        async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
            std::future::pending().await
        }
        async fn records(&self, _: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
            std::future::pending().await
        }
        async fn apply(&self, _: &Zone, _: &[Change]) -> Vec<ChangeResult> {
            std::future::pending().await
        }
    }

    /// A provider whose backend hangs delays nobody else: the other provider's record is
    /// Ready as fast as without it.
    #[tokio::test]
    async fn a_hanging_backend_delays_no_other_provider() {
        let (hung, _hung_rx) = worker("hung", Arc::new(HangingBackend));
        let (healthy, mut rx) = worker("healthy", Arc::new(InMemoryProvider::new(["example.com"])));
        let (hung_tx, hung_in) = super::super::inbox::channel();
        let (healthy_tx, healthy_in) = super::super::inbox::channel();
        tokio::spawn(hung.run(hung_in));
        tokio::spawn(healthy.run(healthy_in));
        let rec = || vec![(0, desired("app.example.com", RecordType::A, "192.0.2.1"))];
        hung_tx.send(WorkerMsg::Desired { ep: ep("a"), records: rec() }).unwrap();
        healthy_tx.send(WorkerMsg::Desired { ep: ep("b"), records: rec() }).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        let Ok(Some((from, WorkerReport::Results(r)))) = got else { panic!("the healthy provider reported nothing") };
        assert_eq!((from, r[0].2.state.as_str()), (id("healthy"), "Ready"));
    }

    /// A change that finds its worker idle goes out at once, whatever the coalescing window;
    /// changes queued together go out in one pass.
    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_sends_the_first_change_at_once_and_batches_a_burst() {
        let backend = Arc::new(RecordingBackend { zones: vec![Zone::named("example.com")], ..Default::default() });
        let (mut w, mut rx) = worker("dns", backend.clone());
        w.ctx.coalesce = Duration::from_secs(10);
        let (tx, inbox) = super::super::inbox::channel();
        tokio::spawn(w.run(inbox));
        let rec = |n: &str| vec![(0, desired(&format!("{n}.example.com"), RecordType::A, "192.0.2.1"))];
        // Past the start-up pass's window: the worker is idle.
        tokio::time::sleep(Duration::from_secs(11)).await;
        let start = Instant::now();
        tx.send(WorkerMsg::Desired { ep: ep("a"), records: rec("a") }).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert!(matches!(got, Ok(Some((_, WorkerReport::Results(_))))), "no report within 5 s");
        assert!(start.elapsed() < Duration::from_secs(1), "waited {:?} for the window", start.elapsed());

        // A burst right behind it: one pass for all of them, a window after the last.
        let applied_before = backend.applied.lock().unwrap().len();
        for n in ["b", "c", "d"] {
            tx.send(WorkerMsg::Desired { ep: ep(n), records: rec(n) }).unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
        let Ok(Some((_, WorkerReport::Results(r)))) = got else { panic!("no report for the burst") };
        assert_eq!(r.len(), 3, "the burst went out in one pass: {r:?}");
        assert_eq!(backend.applied.lock().unwrap().len() - applied_before, 2, "one TXT batch, one record batch");
    }

    /// A backend call that never returns is cut off at the deadline and reported as the
    /// backend being unreachable, to be retried.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_call_is_bounded_by_the_deadline() {
        let (mut w, mut rx) = worker("hung", Arc::new(HangingBackend));
        w.set_desired(ep("a"), vec![(0, desired("app.example.com", RecordType::A, "192.0.2.1"))]);
        w.sync().await;
        let r = results(&mut rx);
        let got = &r[&("team-a/a@uid".to_string(), 0)];
        assert_eq!(got.state, "Unreachable", "{got:?}");
        // A namespaced provider's status hides the details; they are in the log.
        assert!(got.message.ends_with("retrying with backoff"), "{}", got.message);
        assert!(w.retry.is_some(), "retried with backoff");
    }

    #[tokio::test]
    async fn a_release_waits_for_the_records_to_go() {
        let backend = Arc::new(RecordingBackend { zones: vec![Zone::named("example.com")], ..Default::default() });
        let (mut w, mut rx) = worker("dns", backend.clone());
        w.set_desired(ep("web"), vec![(0, desired("web.example.com", RecordType::A, "192.0.2.1"))]);
        w.sync().await;
        let _ = results(&mut rx);
        w.handle(WorkerMsg::Release { ep: ep("web"), names: vec!["web.example.com".into()] });
        w.sync().await;
        let applied = backend.applied.lock().unwrap().clone();
        let last_two: Vec<&Change> = applied[applied.len() - 2..].iter().flat_map(|(_, c)| c).collect();
        assert!(
            matches!(&last_two[..], [Change::Delete(a), Change::Delete(t)] if a.record_type == RecordType::A && t.record_type == RecordType::TXT),
            "A deleted, then its TXT: {applied:?}"
        );
        let released = std::iter::from_fn(|| rx.try_recv().ok())
            .any(|(_, r)| matches!(r, WorkerReport::Released(k) if k == ep("web")));
        assert!(released);
    }
}
