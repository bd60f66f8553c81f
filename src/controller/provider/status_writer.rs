//! Writes DNSEndpoint statuses by server-side apply, off the router's path, by a fixed pool
//! of writers each pulling the oldest due object: one slow write holds up one writer, never
//! the statuses behind it. A write that fails is retried for that object alone, with
//! backoff; a newer status of the object replaces one still waiting, and one object is never
//! written by two writers at once. Only the leader writes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

use super::{backoff, is_leader, EpKey, Leader};
use crate::controller::supervise::Stopped;
use crate::controller::{Error, PROVIDER_MANAGER};
use crate::crd::{DNSEndpoint, DnsEndpointStatus};
use crate::metrics::Metrics;

#[derive(Clone)]
struct Job {
    namespace: String,
    name: String,
    /// Serialized: a backlog of thousands of statuses (a restart, a bulk creation) held as
    /// `serde_json::Value` trees costs several times their text.
    value: Box<RawValue>,
    hash: u64,
    attempts: u32,
    not_before: Instant,
    /// Order among jobs due at the same instant.
    seq: u64,
}

#[derive(Default)]
struct Queue {
    pending: HashMap<EpKey, Job>,
    /// Pending jobs by when they are due, oldest first.
    due: BTreeSet<(Instant, u64, EpKey)>,
    /// Jobs being written, with the writer writing each (its job comes back if it dies).
    busy: HashMap<EpKey, (usize, Job)>,
    seq: u64,
}

impl Queue {
    fn insert(&mut self, key: EpKey, mut job: Job) {
        self.remove(&key);
        self.seq += 1;
        job.seq = self.seq;
        self.due.insert((job.not_before, job.seq, key.clone()));
        self.pending.insert(key, job);
    }

    fn remove(&mut self, key: &EpKey) -> Option<Job> {
        let old = self.pending.remove(key)?;
        self.due.remove(&(old.not_before, old.seq, key.clone()));
        Some(old)
    }

    /// The oldest due job no writer is writing, now marked as `writer`'s; else when the next
    /// one is due.
    fn take(&mut self, writer: usize, now: Instant) -> Result<(EpKey, Job), Option<Instant>> {
        let mut found = None;
        for (at, _, key) in &self.due {
            if self.busy.contains_key(key) {
                continue;
            }
            if *at > now {
                return Err(Some(*at));
            }
            found = Some(key.clone());
            break;
        }
        let key = found.ok_or(None)?;
        let job = self.remove(&key).ok_or(None)?;
        self.busy.insert(key.clone(), (writer, job.clone()));
        Ok((key, job))
    }

    /// Gives back what `writer` was writing when it stopped, unless a newer status waits.
    fn recover(&mut self, writer: usize) {
        let lost: Vec<EpKey> = self.busy.iter().filter(|(_, (w, _))| *w == writer).map(|(k, _)| k.clone()).collect();
        for key in lost {
            if let Some((_, job)) = self.busy.remove(&key) {
                if !self.pending.contains_key(&key) {
                    self.insert(key, job);
                }
            }
        }
    }
}

#[derive(Default)]
pub(super) struct StatusWriter {
    queue: Mutex<Queue>,
    /// Hash of the last status written per object, pruned when the object goes.
    written: Mutex<HashMap<EpKey, u64>>,
    wake: Notify,
}

/// A status serialized as it is written; the server's copy and a computed one serialize
/// alike (same type, same field order), so equal statuses hash alike.
pub(super) fn serialize_status(status: &DnsEndpointStatus) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(status).ok()
}

pub(super) fn status_hash(v: &RawValue) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.get().hash(&mut h);
    h.finish()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StatusWriter {
    pub(super) fn already_written(&self, key: &EpKey, hash: u64) -> bool {
        if lock(&self.written).get(key) == Some(&hash) {
            return true;
        }
        let q = lock(&self.queue);
        let fresh = |j: &Job| j.hash == hash && j.attempts == 0;
        q.pending.get(key).is_some_and(fresh) || q.busy.get(key).is_some_and(|(_, j)| fresh(j))
    }

    pub(super) fn push(&self, key: EpKey, namespace: String, name: String, value: Box<RawValue>) {
        let hash = status_hash(&value);
        let mut q = lock(&self.queue);
        // A newer status keeps the place of the one it replaces, unless that one waits out a
        // backoff: a fresh status is due now.
        let not_before =
            q.pending.get(&key).filter(|j| j.attempts == 0).map(|j| j.not_before).unwrap_or_else(Instant::now);
        q.insert(key, Job { namespace, name, value, hash, attempts: 0, not_before, seq: 0 });
        drop(q);
        self.wake.notify_waiters();
    }

    /// The object is gone: nothing more to write or remember.
    pub(super) fn forget(&self, key: &EpKey) {
        lock(&self.queue).remove(key);
        lock(&self.written).remove(key);
    }

    #[cfg(test)]
    pub(super) fn pending_len(&self) -> usize {
        let q = lock(&self.queue);
        q.pending.len() + q.busy.len()
    }

    /// The status waiting to be written for `key`, if any (for tests).
    #[cfg(test)]
    pub(super) fn pending_status(&self, key: &EpKey) -> Option<DnsEndpointStatus> {
        let q = lock(&self.queue);
        let job = q.pending.get(key).or_else(|| q.busy.get(key).map(|(_, j)| j))?;
        serde_json::from_str(job.value.get()).ok()
    }

    /// Writer number `index` of the pool: takes the oldest due status, writes it, and so on,
    /// until the process ends. A restarted writer first gives back what it was writing when
    /// it stopped.
    pub(super) async fn run_writer(
        self: Arc<Self>,
        index: usize,
        client: Client,
        metrics: Arc<Metrics>,
        leader: Leader,
    ) -> Result<(), Stopped> {
        lock(&self.queue).recover(index);
        loop {
            // Registered before the queue is looked at, so that no push in between is missed.
            let notified = self.wake.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let taken = lock(&self.queue).take(index, Instant::now());
            let (key, job) = match taken {
                Ok(t) => t,
                Err(next) => {
                    match next {
                        Some(t) => {
                            tokio::select! {
                                _ = notified => {}
                                _ = tokio::time::sleep_until(t) => {}
                            }
                        }
                        None => notified.await,
                    }
                    continue;
                }
            };
            // A follower writes nothing; the router recomputes every status when this replica
            // leads again.
            let leading = is_leader(&leader);
            let ok = if leading {
                let r = write(&client, &job.namespace, &job.name, &job.value).await;
                if let Err(e) = &r {
                    warn!(error = %e, attempt = job.attempts + 1, "status write failed; retrying this object");
                }
                r.is_ok()
            } else {
                true
            };
            self.finish(key, ok, leading && is_leader(&leader), &metrics);
        }
    }

    fn finish(&self, key: EpKey, ok: bool, count: bool, metrics: &Metrics) {
        let mut q = lock(&self.queue);
        let Some((_, mut job)) = q.busy.remove(&key) else { return };
        if ok {
            drop(q);
            if count {
                metrics.status_writes.get_or_create(&crate::metrics::KindLabels { kind: "DNSEndpoint".into() }).inc();
                lock(&self.written).insert(key, job.hash);
            }
        } else if !q.pending.contains_key(&key) {
            // A newer status pushed meanwhile wins over the retry.
            job.attempts += 1;
            job.not_before = Instant::now() + backoff(job.attempts);
            q.insert(key, job);
            drop(q);
        }
        // The object may have a newer status waiting that only this writer held back.
        self.wake.notify_waiters();
    }
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: &'a RawValue,
}

async fn write(client: &Client, ns: &str, name: &str, status: &RawValue) -> Result<(), Error> {
    let api: Api<DNSEndpoint> = Api::namespaced(client.clone(), ns);
    let patch = StatusPatch { api_version: "extdns.io/v1alpha1", kind: "DNSEndpoint", status };
    match api.patch_status(name, &PatchParams::apply(PROVIDER_MANAGER).force(), &Patch::Apply(&patch)).await {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(Error::WriteStatus { kind: "DNSEndpoint", name: format!("{ns}/{name}"), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use std::time::Duration;

    fn respond(status: u16, body: serde_json::Value) -> Response<Body> {
        Response::builder().status(status).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
    }

    /// A write the apiserver refuses is retried for that object, after a backoff, without
    /// anything else being recomputed; once written it is remembered.
    #[tokio::test(start_paused = true)]
    async fn a_failed_write_is_retried_for_that_object_alone() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let writer = Arc::new(StatusWriter::default());
        let leader = crate::controller::leader::Leadership::always();
        tokio::spawn(writer.clone().run_writer(0, client, Arc::new(Metrics::default()), leader));
        let key: EpKey = "ns/a@1".into();
        let status =
            serialize_status(&DnsEndpointStatus { hostnames: Some("a.example.com".into()), ..Default::default() })
                .expect("serialize");
        writer.push(key.clone(), "ns".into(), "a".into(), status.clone());

        let path = "/apis/extdns.io/v1alpha1/namespaces/ns/dnsendpoints/a/status";
        let (req, send) = handle.next_request().await.expect("a first write");
        assert_eq!((req.method(), req.uri().path()), (&Method::PATCH, path));
        let started = Instant::now();
        send.send_response(respond(
            500,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcdserver: timeout", "reason": "InternalError", "code": 500}),
        ));
        // Back in the queue, waiting out its backoff: not written.
        for _ in 0..100 {
            if !writer.already_written(&key, status_hash(&status)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!writer.already_written(&key, status_hash(&status)));
        assert_eq!(writer.pending_len(), 1);

        let (req, send) = handle.next_request().await.expect("a retry");
        assert_eq!(req.uri().path(), path);
        assert!(started.elapsed() >= Duration::from_millis(400), "retried after a backoff, not at once");
        send.send_response(respond(
            200,
            json!({"apiVersion": "extdns.io/v1alpha1", "kind": "DNSEndpoint", "metadata": {"name": "a", "namespace": "ns"}, "spec": {"endpoints": []}}),
        ));
        for _ in 0..100 {
            if writer.already_written(&key, status_hash(&status)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(writer.already_written(&key, status_hash(&status)));
        assert_eq!(writer.pending_len(), 0);
        writer.forget(&key);
        assert!(!writer.already_written(&key, status_hash(&status)), "pruned with the object");
    }

    /// With two writers, a write that hangs delays no other object; a newer status of the
    /// hanging object waits for it rather than racing it on the other writer.
    #[tokio::test]
    async fn one_slow_write_delays_no_other_object() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let writer = Arc::new(StatusWriter::default());
        let metrics = Arc::new(Metrics::default());
        for index in 0..2 {
            let leader = crate::controller::leader::Leadership::always();
            tokio::spawn(writer.clone().run_writer(index, client.clone(), metrics.clone(), leader));
        }
        let status = |h: &str| {
            serialize_status(&DnsEndpointStatus { hostnames: Some(h.into()), ..Default::default() }).expect("serialize")
        };
        let ok = |name: &str| {
            respond(
                200,
                json!({"apiVersion": "extdns.io/v1alpha1", "kind": "DNSEndpoint", "metadata": {"name": name, "namespace": "ns"}, "spec": {"endpoints": []}}),
            )
        };
        let (a, b): (EpKey, EpKey) = ("ns/a@1".into(), "ns/b@1".into());
        writer.push(a.clone(), "ns".into(), "a".into(), status("a.example.com"));
        let (req, slow) = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await.unwrap().unwrap();
        assert!(req.uri().path().ends_with("/dnsendpoints/a/status"));
        // A newer status of a, then b: b goes out while a's first write hangs.
        writer.push(a.clone(), "ns".into(), "a".into(), status("a2.example.com"));
        writer.push(b.clone(), "ns".into(), "b".into(), status("b.example.com"));
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await.unwrap().unwrap();
        assert!(req.uri().path().ends_with("/dnsendpoints/b/status"), "{}", req.uri());
        send.send_response(ok("b"));
        for _ in 0..100 {
            if writer.already_written(&b, status_hash(&status("b.example.com"))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(writer.already_written(&b, status_hash(&status("b.example.com"))));
        // a's newer status waits for the write in flight.
        assert!(tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await.is_err());
        slow.send_response(ok("a"));
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await.unwrap().unwrap();
        assert!(req.uri().path().ends_with("/dnsendpoints/a/status"));
        send.send_response(ok("a"));
        for _ in 0..100 {
            if writer.pending_len() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(writer.already_written(&a, status_hash(&status("a2.example.com"))), "the newer status last");
    }
}
