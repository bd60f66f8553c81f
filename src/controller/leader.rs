//! Leader election on a coordination.k8s.io/v1 Lease. Every replica serves embedded DNS from
//! its own watch cache; only the leader writes anything elsewhere (DNS backends, statuses,
//! finalizers, generated DNSEndpoints, Events).
//!
//! The rules are client-go's, so that two replicas never both believe they lead:
//! - the leader renews every `retry_period` and holds leadership only while its last
//!   successful renew is younger than `renew_deadline`, measured on the monotonic clock when
//!   [`Leadership::is_leader`] is called (a process frozen by SIGSTOP or a long GC-like stall
//!   sees `false` the moment it runs again, before this loop has had a chance to run);
//! - a follower takes the Lease only after it has seen the same record, unchanged, for a
//!   whole `lease_duration` on its own monotonic clock (no wall-clock comparison across
//!   machines), and with optimistic concurrency (resourceVersion), so of two contenders one
//!   wins;
//! - every Lease request has a timeout shorter than the renew deadline, and an attempt never
//!   outlives the leadership it is renewing.
//!
//! Because `renew_deadline < lease_duration`, the old leader stops at the latest
//! `lease_duration - renew_deadline` before any follower may start.
//!
//! A replica that loses the Lease does not exit: it stops writing, goes on as a follower and
//! may lead again later.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::controller::supervise::{self, Stopped};
use crate::metrics::Metrics;

/// Timing and identity of this replica in the election.
#[derive(Clone, Debug)]
pub struct ElectionSettings {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    /// How long followers wait, after the Lease last changed, before they take it.
    pub lease_duration: Duration,
    /// How long the leader goes on leading without a successful renew.
    pub renew_deadline: Duration,
    /// How often the leader renews and followers look at the Lease.
    pub retry_period: Duration,
}

/// Errors of the election: bad settings, and Lease requests that failed.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("invalid leader election settings: {0}")]
    Settings(String),
    #[error("{op} of Lease {lease} failed: {source}")]
    Request { op: &'static str, lease: String, source: kube::Error },
    #[error("{op} of Lease {lease} conflicted with another writer")]
    Conflict { op: &'static str, lease: String },
    #[error("{op} of Lease {lease} timed out after {after:?}")]
    Timeout { op: &'static str, lease: String, after: Duration },
    #[error("renewing Lease {lease} did not succeed within the renew deadline")]
    DeadlinePassed { lease: String },
}

impl ElectionSettings {
    /// Checks the timing rules that make split brain impossible.
    pub fn validate(&self) -> Result<(), ElectionError> {
        let bad = |m: String| Err(ElectionError::Settings(m));
        if self.identity.is_empty() {
            return bad("the identity is empty".into());
        }
        if self.lease_duration < Duration::from_secs(1) {
            return bad(format!(
                "lease duration {:?} is under 1s (the Lease stores whole seconds)",
                self.lease_duration
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return bad(format!(
                "renew deadline {:?} must be shorter than the lease duration {:?}",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return bad(format!(
                "retry period {:?} must be above zero and shorter than the renew deadline {:?}",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }

    /// Timeout of one Lease request. Half the renew deadline, as client-go, so that a renew
    /// (a read and a write) can still finish inside the deadline.
    pub fn request_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }

    /// The lease duration as the Lease stores it: whole seconds, rounded up so that followers
    /// never wait less than configured.
    fn lease_seconds(&self) -> i32 {
        let ms = self.lease_duration.as_millis().div_ceil(1000);
        i32::try_from(ms).unwrap_or(i32::MAX)
    }
}

/// The part of a Lease the election reads: a follower waits until this has stayed the same
/// for a lease duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Empty when the Lease was released.
    pub holder: String,
    pub lease_duration: Option<Duration>,
    pub renew_time: Option<jiff::Timestamp>,
    pub transitions: i32,
}

impl LeaseRecord {
    pub fn from_spec(spec: Option<&LeaseSpec>) -> LeaseRecord {
        let spec = spec.cloned().unwrap_or_default();
        LeaseRecord {
            holder: spec.holder_identity.unwrap_or_default(),
            lease_duration: spec.lease_duration_seconds.map(|s| Duration::from_secs(s.max(0) as u64)),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// A record and when this replica first saw it as it is (monotonic clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub record: LeaseRecord,
    pub since: Instant,
}

/// Keeps the first sighting of an unchanged record; a changed record starts a new wait.
pub fn observe(previous: Option<Observed>, record: LeaseRecord, now: Instant) -> Observed {
    match previous {
        Some(p) if p.record == record => p,
        _ => Observed { record, since: now },
    }
}

/// What to do with the Lease: the pure decision, tested on its own.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Missing, released or expired: take it.
    Acquire,
    /// Someone else holds a live lease.
    Follow { holder: String },
}

/// Decides on the Lease as last observed (`None`: there is no Lease). `default_duration`
/// applies when the record does not say how long it lasts.
pub fn decide(observed: Option<&Observed>, me: &str, now: Instant, default_duration: Duration) -> Decision {
    let Some(o) = observed else { return Decision::Acquire };
    let r = &o.record;
    if r.holder.is_empty() {
        return Decision::Acquire;
    }
    if r.holder == me {
        return Decision::Renew;
    }
    let duration = r.lease_duration.filter(|d| !d.is_zero()).unwrap_or(default_duration);
    if now.saturating_duration_since(o.since) >= duration {
        Decision::Acquire
    } else {
        Decision::Follow { holder: r.holder.clone() }
    }
}

/// A Lease request failed with a conflict: someone else wrote it first.
#[derive(Debug)]
pub enum StoreError {
    Conflict,
    Other(kube::Error),
}

/// Where the Lease lives: the apiserver, or a fake in tests.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    async fn get(&self) -> Result<Option<Lease>, StoreError>;
    async fn create(&self, lease: &Lease) -> Result<Lease, StoreError>;
    /// Replaces the Lease; fails with `Conflict` when its resourceVersion is not current.
    async fn replace(&self, lease: &Lease) -> Result<Lease, StoreError>;
}

struct KubeLeaseStore {
    api: Api<Lease>,
    name: String,
}

fn store_error(e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(ref s) if s.code == 409 => StoreError::Conflict,
        e => StoreError::Other(e),
    }
}

#[async_trait]
impl LeaseStore for KubeLeaseStore {
    async fn get(&self) -> Result<Option<Lease>, StoreError> {
        self.api.get_opt(&self.name).await.map_err(store_error)
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, StoreError> {
        self.api.create(&PostParams::default(), lease).await.map_err(store_error)
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, StoreError> {
        self.api.replace(&self.name, &PostParams::default(), lease).await.map_err(store_error)
    }
}

/// Whether this replica may write, asked before every write.
///
/// Cheap to clone and to query; every clone sees the same state.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: no election, this process always leads.
    election: Option<Election>,
    tx: watch::Sender<bool>,
    /// Set once the first Lease request answered: whether this replica leads is known.
    known: watch::Sender<bool>,
    /// Set when the election task failed too often to be restarted.
    gave_up: watch::Sender<bool>,
}

struct Election {
    renew_deadline: Duration,
    /// Start of the last successful renew (or acquisition); `None` while following.
    renewed: Mutex<Option<Instant>>,
    /// Set by `step_down`: from then on this replica never leads again.
    stopping: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("elected", &self.inner.election.is_some())
            .field("leading", &self.is_leader())
            .finish()
    }
}

impl Leadership {
    /// No election: this process is the only writer and always leads.
    pub fn always() -> Leadership {
        let (tx, _) = watch::channel(true);
        let (known, _) = watch::channel(true);
        let (gave_up, _) = watch::channel(false);
        Leadership { inner: Arc::new(Inner { election: None, tx, known, gave_up }) }
    }

    fn elected(renew_deadline: Duration) -> Leadership {
        let (tx, _) = watch::channel(false);
        let (stopping, _) = watch::channel(false);
        let election = Election { renew_deadline, renewed: Mutex::new(None), stopping, task: Mutex::new(None) };
        let (known, _) = watch::channel(false);
        let (gave_up, _) = watch::channel(false);
        Leadership { inner: Arc::new(Inner { election: Some(election), tx, known, gave_up }) }
    }

    /// Resolves once this replica knows whether it leads: the first Lease request answered
    /// (at once without election). Readiness waits for it.
    pub async fn known(&self) {
        let mut rx = self.inner.known.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(|k| *k).await;
    }

    /// Resolves if the election task failed too often to be restarted: the process should
    /// exit so that Kubernetes restarts it. Pends for ever otherwise.
    pub async fn gave_up(&self) {
        let mut rx = self.inner.gave_up.subscribe();
        if rx.wait_for(|g| *g).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// True only while the last successful renew is younger than the renew deadline, on the
    /// monotonic clock read now. Call it right before each write (a backend batch, a status,
    /// a finalizer, a DNSEndpoint, an Event), never once per pass: a process that was frozen
    /// gets `false` here as soon as it runs again.
    pub fn is_leader(&self) -> bool {
        let Some(e) = &self.inner.election else { return true };
        if *e.stopping.borrow() {
            return false;
        }
        let renewed = *lock(&e.renewed);
        renewed.is_some_and(|t| Instant::now().saturating_duration_since(t) < e.renew_deadline)
    }

    /// Wakes on changes of leadership, e.g. to start a full pass when this replica starts
    /// leading. The value is a hint published by the election loop; decide writes with
    /// [`Leadership::is_leader`].
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.tx.subscribe()
    }

    /// Stops leading at once and releases the Lease if this replica holds it, so a follower
    /// takes over without waiting a lease duration. For a graceful shutdown.
    pub async fn step_down(&self) {
        let Some(e) = &self.inner.election else { return };
        e.stopping.send_replace(true);
        self.publish();
        let task = lock(&e.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// When leadership ends unless renewed; `None` while not leading.
    fn deadline(&self) -> Option<Instant> {
        let e = self.inner.election.as_ref()?;
        let renewed = *lock(&e.renewed);
        renewed.map(|t| t + e.renew_deadline).filter(|d| *d > Instant::now())
    }

    fn renewed(&self, at: Instant) {
        if let Some(e) = &self.inner.election {
            let mut r = lock(&e.renewed);
            // Attempts may overlap an abandoned one; never move backwards.
            if r.is_none_or(|prev| prev < at) {
                *r = Some(at);
            }
        }
    }

    fn lost(&self) {
        if let Some(e) = &self.inner.election {
            *lock(&e.renewed) = None;
        }
    }

    fn stopping(&self) -> Option<watch::Receiver<bool>> {
        self.inner.election.as_ref().map(|e| e.stopping.subscribe())
    }

    /// Publishes the current state to subscribers; true when it changed.
    fn publish(&self) -> bool {
        let now = self.is_leader();
        self.inner.tx.send_if_modified(|v| {
            let changed = *v != now;
            *v = now;
            changed
        })
    }
}

/// Starts the election in the background and returns the handle the controllers query.
/// The settings must have passed [`ElectionSettings::validate`].
/// The election task is supervised: one that panics starts again with backoff (and carries
/// on renewing a Lease this replica holds); one that cannot be restarted ends leadership and
/// resolves [`Leadership::gave_up`].
pub fn start(client: Client, settings: ElectionSettings, metrics: Arc<Metrics>) -> Leadership {
    let store = KubeLeaseStore { api: Api::namespaced(client, &settings.namespace), name: settings.lease_name.clone() };
    start_with(store, settings, metrics)
}

/// [`start`] on any Lease store.
pub fn start_with<S: LeaseStore>(store: S, settings: ElectionSettings, metrics: Arc<Metrics>) -> Leadership {
    let leadership = Leadership::elected(settings.renew_deadline);
    let (store, l) = (Arc::new(store), leadership.clone());
    let task = tokio::spawn(async move {
        let elect = {
            let l = l.clone();
            move || run(store.clone(), settings.clone(), l.clone())
        };
        if let Err(e) = supervise::supervise("leader-election".into(), metrics, elect).await {
            error!(error = %e, "leader election cannot go on; this replica stops leading");
            l.lost();
            l.publish();
            l.inner.gave_up.send_replace(true);
        }
    });
    if let Some(e) = &leadership.inner.election {
        *lock(&e.task) = Some(task);
    }
    leadership
}

/// The outcome of one successful attempt.
enum Outcome {
    Leading,
    Following { holder: String },
}

/// The election loop; returns `Ok` once this replica steps down.
async fn run<S: LeaseStore>(store: Arc<S>, s: ElectionSettings, leadership: Leadership) -> Result<(), Stopped> {
    let store = store.as_ref();
    let Some(mut stopping) = leadership.stopping() else { return Ok(()) };
    let mut observed: Option<Observed> = None;
    info!(identity = %s.identity, lease = %format!("{}/{}", s.namespace, s.lease_name), "leader election started");
    loop {
        let started = Instant::now();
        // An attempt never outlives the leadership it renews: when the deadline passes
        // mid-request, leadership ends on time and the next attempt starts afresh.
        let attempt = attempt(store, &s, &mut observed);
        let result = tokio::select! {
            r = async {
                match leadership.deadline() {
                    Some(d) => tokio::time::timeout_at(d, attempt)
                        .await
                        .unwrap_or_else(|_| Err(ElectionError::DeadlinePassed { lease: s.lease_name.clone() })),
                    None => attempt.await,
                }
            } => Some(r),
            _ = stopping.wait_for(|s| *s) => None,
        };
        if matches!(result, Some(Ok(_))) {
            leadership.inner.known.send_replace(true);
        }
        match result {
            None => break,
            Some(Ok(Outcome::Leading)) => leadership.renewed(started),
            Some(Ok(Outcome::Following { holder })) => {
                leadership.lost();
                debug!(%holder, "following");
            }
            Some(Err(e)) => warn!(error = %e, identity = %s.identity, "leader election: Lease request failed"),
        }
        if leadership.publish() {
            info!(identity = %s.identity, leading = leadership.is_leader(), "leadership changed");
        }
        let next = (started + s.retry_period).max(Instant::now());
        // Wake at the deadline too, so that subscribers hear of a lost leadership on time.
        let wake = leadership.deadline().map_or(next, |d| d.min(next));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
        if leadership.publish() {
            info!(identity = %s.identity, leading = leadership.is_leader(), "leadership changed: renew deadline passed");
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    let held = observed.is_some_and(|o| o.record.holder == s.identity);
    leadership.lost();
    leadership.publish();
    if held {
        match release(store, &s).await {
            Ok(()) => info!(identity = %s.identity, "released the Lease"),
            Err(e) => warn!(error = %e, "releasing the Lease failed; followers take over after the lease duration"),
        }
    }
    Ok(())
}

async fn timed<T>(
    s: &ElectionSettings,
    op: &'static str,
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<Result<T, StoreError>, ElectionError> {
    let after = s.request_timeout();
    tokio::time::timeout(after, f).await.map_err(|_| ElectionError::Timeout { op, lease: s.lease_name.clone(), after })
}

fn request_failed(s: &ElectionSettings, op: &'static str, e: StoreError) -> ElectionError {
    match e {
        StoreError::Other(source) => ElectionError::Request { op, lease: s.lease_name.clone(), source },
        StoreError::Conflict => ElectionError::Conflict { op, lease: s.lease_name.clone() },
    }
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

async fn attempt<S: LeaseStore>(
    store: &S,
    s: &ElectionSettings,
    observed: &mut Option<Observed>,
) -> Result<Outcome, ElectionError> {
    let current = timed(s, "get", store.get()).await?.map_err(|e| request_failed(s, "get", e))?;
    // Timed when the answer arrived: the record was written no later than that.
    let seen = Instant::now();
    *observed = current.as_ref().map(|l| observe(observed.take(), LeaseRecord::from_spec(l.spec.as_ref()), seen));
    match decide(observed.as_ref(), &s.identity, seen, s.lease_duration) {
        Decision::Follow { holder } => Ok(Outcome::Following { holder }),
        decision => {
            let t = now_micro();
            let written = match current {
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta { name: Some(s.lease_name.clone()), ..Default::default() },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(s.identity.clone()),
                            lease_duration_seconds: Some(s.lease_seconds()),
                            acquire_time: Some(t.clone()),
                            renew_time: Some(t),
                            lease_transitions: Some(0),
                            ..Default::default()
                        }),
                    };
                    timed(s, "create", store.create(&lease)).await?
                }
                Some(mut lease) => {
                    let spec = lease.spec.get_or_insert_with(Default::default);
                    if decision == Decision::Acquire {
                        if spec.holder_identity.as_deref().is_some_and(|h| !h.is_empty()) {
                            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                        }
                        spec.holder_identity = Some(s.identity.clone());
                        spec.acquire_time = Some(t.clone());
                    }
                    spec.lease_duration_seconds = Some(s.lease_seconds());
                    spec.renew_time = Some(t);
                    // The resourceVersion read above rides along: of two writers, one fails.
                    timed(s, "replace", store.replace(&lease)).await?
                }
            };
            match written {
                Ok(lease) => {
                    *observed =
                        Some(observe(observed.take(), LeaseRecord::from_spec(lease.spec.as_ref()), Instant::now()));
                    Ok(Outcome::Leading)
                }
                Err(StoreError::Conflict) => {
                    // Someone else wrote first; the next read shows who.
                    *observed = None;
                    Ok(Outcome::Following { holder: String::new() })
                }
                Err(StoreError::Other(source)) => {
                    Err(ElectionError::Request { op: "write", lease: s.lease_name.clone(), source })
                }
            }
        }
    }
}

/// Empties the holder so followers take over at their next look (client-go's release).
async fn release<S: LeaseStore>(store: &S, s: &ElectionSettings) -> Result<(), ElectionError> {
    let Some(mut lease) = timed(s, "get", store.get()).await?.map_err(|e| request_failed(s, "get", e))? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    match timed(s, "release", store.replace(&lease)).await? {
        Ok(_) | Err(StoreError::Conflict) => Ok(()),
        Err(StoreError::Other(source)) => {
            Err(ElectionError::Request { op: "release", lease: s.lease_name.clone(), source })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    fn record(holder: &str, secs: u64) -> LeaseRecord {
        LeaseRecord {
            holder: holder.into(),
            lease_duration: Some(Duration::from_secs(secs)),
            renew_time: Some("2026-01-01T00:00:00Z".parse().expect("timestamp")),
            transitions: 0,
        }
    }

    fn settings(identity: &str) -> ElectionSettings {
        ElectionSettings {
            namespace: "ns".into(),
            lease_name: "lease".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    #[test]
    fn decisions() {
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        let seen = |r: LeaseRecord| Observed { record: r, since: t0 };
        assert_eq!(decide(None, "me", t0, d), Decision::Acquire);
        assert_eq!(decide(Some(&seen(record("", 15))), "me", t0, d), Decision::Acquire);
        assert_eq!(decide(Some(&seen(record("me", 15))), "me", t0 + Duration::from_secs(99), d), Decision::Renew);
        let other = seen(record("other", 15));
        assert_eq!(
            decide(Some(&other), "me", t0 + Duration::from_secs(14), d),
            Decision::Follow { holder: "other".into() }
        );
        assert_eq!(decide(Some(&other), "me", t0 + Duration::from_secs(15), d), Decision::Acquire);
        // The holder's own duration counts, not ours.
        let long = seen(record("other", 60));
        assert_eq!(
            decide(Some(&long), "me", t0 + Duration::from_secs(30), d),
            Decision::Follow { holder: "other".into() }
        );
        let unset = seen(LeaseRecord { lease_duration: None, ..record("other", 0) });
        assert_eq!(decide(Some(&unset), "me", t0 + Duration::from_secs(15), d), Decision::Acquire);
    }

    #[test]
    fn a_changed_record_restarts_the_wait() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let first = observe(None, record("other", 15), t0);
        assert_eq!(observe(Some(first.clone()), record("other", 15), later).since, t0);
        let mut renewed = record("other", 15);
        renewed.renew_time = Some("2026-01-01T00:00:02Z".parse().expect("timestamp"));
        assert_eq!(observe(Some(first), renewed, later).since, later);
    }

    #[test]
    fn settings_are_validated() {
        assert!(settings("me").validate().is_ok());
        let mut s = settings("me");
        s.renew_deadline = s.lease_duration;
        assert!(s.validate().unwrap_err().to_string().contains("renew deadline"));
        let mut s = settings("me");
        s.retry_period = s.renew_deadline;
        assert!(s.validate().unwrap_err().to_string().contains("retry period"));
        assert!(settings("").validate().is_err());
        let mut s = settings("me");
        s.lease_duration = Duration::from_millis(1500);
        s.renew_deadline = Duration::from_secs(1);
        s.retry_period = Duration::from_millis(200);
        assert_eq!(s.lease_seconds(), 2, "rounded up");
        assert!(settings("me").request_timeout() < settings("me").renew_deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_expires_at_the_renew_deadline_without_the_loop() {
        let l = Leadership::elected(Duration::from_secs(10));
        assert!(!l.is_leader());
        l.renewed(Instant::now());
        assert!(l.is_leader());
        // Nothing runs in between, as in a process resumed after SIGSTOP.
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(l.is_leader());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!l.is_leader());
        assert!(Leadership::always().is_leader());
        assert!(*Leadership::always().subscribe().borrow());
    }

    /// An apiserver in memory: one Lease with resourceVersions, shared by electors, each
    /// reaching it through its own link that a test can cut (requests then hang).
    #[derive(Default)]
    struct Server {
        lease: Mutex<Option<Lease>>,
        version: AtomicU64,
    }

    #[derive(Clone)]
    struct Link {
        server: Arc<Server>,
        cut: Arc<AtomicBool>,
    }

    impl Link {
        fn new(server: &Arc<Server>) -> Link {
            Link { server: server.clone(), cut: Arc::new(AtomicBool::new(false)) }
        }

        async fn through(&self) {
            if self.cut.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            // A request takes a little while, as on a real network.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        fn stored(&self, mut lease: Lease) -> Lease {
            let v = self.server.version.fetch_add(1, Ordering::SeqCst) + 1;
            lease.metadata.resource_version = Some(v.to_string());
            *lock(&self.server.lease) = Some(lease.clone());
            lease
        }
    }

    #[async_trait]
    impl LeaseStore for Link {
        async fn get(&self) -> Result<Option<Lease>, StoreError> {
            self.through().await;
            Ok(lock(&self.server.lease).clone())
        }

        async fn create(&self, lease: &Lease) -> Result<Lease, StoreError> {
            self.through().await;
            if lock(&self.server.lease).is_some() {
                return Err(StoreError::Conflict);
            }
            Ok(self.stored(lease.clone()))
        }

        async fn replace(&self, lease: &Lease) -> Result<Lease, StoreError> {
            self.through().await;
            let current = lock(&self.server.lease).as_ref().and_then(|l| l.metadata.resource_version.clone());
            if current != lease.metadata.resource_version {
                return Err(StoreError::Conflict);
            }
            Ok(self.stored(lease.clone()))
        }
    }

    fn holder(server: &Server) -> Option<String> {
        lock(&server.lease).as_ref()?.spec.as_ref()?.holder_identity.clone()
    }

    /// Steps virtual time by 100 ms until `cond`, asserting at every step that at most one
    /// replica leads; returns the time it took.
    async fn until(what: &str, limit: Duration, replicas: &[&Leadership], cond: impl Fn() -> bool) -> Duration {
        let start = Instant::now();
        while !cond() {
            assert!(replicas.iter().filter(|l| l.is_leader()).count() <= 1, "two leaders while waiting for {what}");
            assert!(start.elapsed() < limit, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        start.elapsed()
    }

    /// Lets `time` pass in 100 ms steps, asserting at every step that at most one replica leads.
    async fn hold(time: Duration, replicas: &[&Leadership]) {
        let start = Instant::now();
        while start.elapsed() < time {
            assert!(replicas.iter().filter(|l| l.is_leader()).count() <= 1, "two leaders");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_leader_and_failover_after_the_lease_duration() {
        let server = Arc::new(Server::default());
        let (la, lb) = (Link::new(&server), Link::new(&server));
        let a = start_with(la.clone(), settings("a"), Default::default());
        until("a to lead", Duration::from_secs(1), &[&a], || a.is_leader()).await;
        assert!(*a.subscribe().borrow());
        let b = start_with(lb, settings("b"), Default::default());
        // b never leads while a renews.
        hold(Duration::from_secs(60), &[&a, &b]).await;
        assert!(a.is_leader() && !b.is_leader());

        // Cut a off, as a frozen process or a partition: a stops at the renew deadline,
        // b starts only once the record stood still for a lease duration.
        la.cut.store(true, Ordering::SeqCst);
        let cut_at = Instant::now();
        until("a to step down", Duration::from_secs(11), &[&a, &b], || !a.is_leader()).await;
        assert!(cut_at.elapsed() <= Duration::from_secs(10));
        let mut rx = a.subscribe();
        // (The Ref that wait_for returns locks the channel: drop it at once.)
        let heard = tokio::time::timeout(Duration::from_millis(1), rx.wait_for(|l| !*l)).await.is_ok();
        assert!(heard, "subscribers hear of it at the deadline");
        until("b to lead", Duration::from_secs(20), &[&a, &b], || b.is_leader()).await;
        // b saw a's last renew at most a retry period before the cut, and waited a lease
        // duration from then.
        assert!(cut_at.elapsed() >= Duration::from_secs(13), "b waited a lease duration: {:?}", cut_at.elapsed());
        assert_eq!(holder(&server).as_deref(), Some("b"));

        // a comes back as a follower and stays one.
        la.cut.store(false, Ordering::SeqCst);
        hold(Duration::from_secs(30), &[&a, &b]).await;
        assert!(!a.is_leader() && b.is_leader());
        let lease = lock(&server.lease).clone().expect("lease");
        assert_eq!(lease.spec.and_then(|s| s.lease_transitions), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_apiserver_ends_leadership_without_exit_and_it_comes_back() {
        let server = Arc::new(Server::default());
        let link = Link::new(&server);
        let a = start_with(link.clone(), settings("a"), Default::default());
        until("a to lead", Duration::from_secs(1), &[&a], || a.is_leader()).await;
        link.cut.store(true, Ordering::SeqCst);
        let took = until("a to step down", Duration::from_secs(11), &[&a], || !a.is_leader()).await;
        assert!(took <= Duration::from_secs(10), "{took:?}");
        // Hanging requests are cut by the request timeout; the loop keeps trying.
        hold(Duration::from_secs(30), &[&a]).await;
        assert!(!a.is_leader());
        link.cut.store(false, Ordering::SeqCst);
        // The Lease still names a: it renews at once, without waiting a lease duration.
        let took = until("a to lead again", Duration::from_secs(10), &[&a], || a.is_leader()).await;
        assert!(took <= Duration::from_secs(6), "{took:?}");
        let mut rx = a.subscribe();
        assert!(*rx.borrow_and_update());
    }

    #[tokio::test(start_paused = true)]
    async fn contenders_for_a_free_lease_elect_one() {
        let server = Arc::new(Server::default());
        let replicas: Vec<Leadership> =
            ["a", "b", "c"].iter().map(|id| start_with(Link::new(&server), settings(id), Default::default())).collect();
        let refs: Vec<&Leadership> = replicas.iter().collect();
        until("a leader", Duration::from_secs(5), &refs, || replicas.iter().any(|l| l.is_leader())).await;
        hold(Duration::from_secs(60), &refs).await;
        assert_eq!(replicas.iter().filter(|l| l.is_leader()).count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn step_down_releases_the_lease_for_a_quick_handover() {
        let server = Arc::new(Server::default());
        let a = start_with(Link::new(&server), settings("a"), Default::default());
        until("a to lead", Duration::from_secs(1), &[&a], || a.is_leader()).await;
        let b = start_with(Link::new(&server), settings("b"), Default::default());
        a.step_down().await;
        assert!(!a.is_leader());
        assert_eq!(holder(&server), None);
        let took = until("b to lead", Duration::from_secs(5), &[&a, &b], || b.is_leader()).await;
        assert!(took <= Duration::from_secs(3), "{took:?}");
    }
}
