//! Writes DNSEndpoint statuses by server-side apply, concurrently, off the router's path. A
//! write that fails is retried for that object alone, with backoff; a newer status of the
//! object replaces one still waiting. Only the leader writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::{stream, StreamExt};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

use super::{backoff, is_leader, EpKey, Leader};
use crate::controller::{Error, PROVIDER_MANAGER};
use crate::crd::{DNSEndpoint, DnsEndpointStatus};
use crate::metrics::Metrics;

struct Job {
    namespace: String,
    name: String,
    /// Serialized: a backlog of thousands of statuses (a restart, a bulk creation) held as
    /// `serde_json::Value` trees costs several times their text.
    value: Box<RawValue>,
    hash: u64,
    attempts: u32,
    not_before: Instant,
}

#[derive(Default)]
pub(super) struct StatusWriter {
    pending: Mutex<BTreeMap<EpKey, Job>>,
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
        lock(&self.written).get(key) == Some(&hash)
            || lock(&self.pending).get(key).is_some_and(|j| j.hash == hash && j.attempts == 0)
    }

    pub(super) fn push(&self, key: EpKey, namespace: String, name: String, value: Box<RawValue>) {
        let hash = status_hash(&value);
        let job = Job { namespace, name, value, hash, attempts: 0, not_before: Instant::now() };
        lock(&self.pending).insert(key, job);
        self.wake.notify_one();
    }

    /// The object is gone: nothing more to write or remember.
    pub(super) fn forget(&self, key: &EpKey) {
        lock(&self.pending).remove(key);
        lock(&self.written).remove(key);
    }

    #[cfg(test)]
    pub(super) fn pending_len(&self) -> usize {
        lock(&self.pending).len()
    }

    fn take_due(&self) -> (Vec<(EpKey, Job)>, Option<Instant>) {
        let now = Instant::now();
        let mut pending = lock(&self.pending);
        let due: Vec<EpKey> = pending.iter().filter(|(_, j)| j.not_before <= now).map(|(k, _)| k.clone()).collect();
        let jobs = due.into_iter().filter_map(|k| pending.remove(&k).map(|j| (k, j))).collect();
        let next = pending.values().map(|j| j.not_before).min();
        (jobs, next)
    }

    pub(super) async fn run(
        self: Arc<Self>,
        client: Client,
        metrics: Arc<Metrics>,
        concurrency: usize,
        leader: Leader,
    ) {
        loop {
            let (jobs, next) = self.take_due();
            if jobs.is_empty() {
                match next {
                    Some(t) => {
                        tokio::select! {
                            _ = self.wake.notified() => {}
                            _ = tokio::time::sleep_until(t) => {}
                        }
                    }
                    None => self.wake.notified().await,
                }
                continue;
            }
            let results: Vec<(EpKey, Job, bool)> = stream::iter(jobs)
                .map(|(key, job)| {
                    let (client, leader) = (client.clone(), leader.clone());
                    async move {
                        // A follower writes nothing; the router recomputes every status when
                        // this replica leads again.
                        if !is_leader(&leader) {
                            return (key, job, true);
                        }
                        let r = write(&client, &job.namespace, &job.name, &job.value).await;
                        if let Err(e) = &r {
                            warn!(error = %e, attempt = job.attempts + 1, "status write failed; retrying this object");
                        }
                        (key, job, r.is_ok())
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
            for (key, mut job, ok) in results {
                if ok {
                    if is_leader(&leader) {
                        metrics
                            .status_writes
                            .get_or_create(&crate::metrics::KindLabels { kind: "DNSEndpoint".into() })
                            .inc();
                        lock(&self.written).insert(key, job.hash);
                    }
                    continue;
                }
                job.attempts += 1;
                job.not_before = Instant::now() + backoff(job.attempts);
                // A newer status pushed meanwhile wins over the retry.
                lock(&self.pending).entry(key).or_insert(job);
            }
        }
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
        tokio::spawn(writer.clone().run(client, Arc::new(Metrics::default()), 4, leader));
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
        assert!(!writer.already_written(&key, status_hash(&status)));

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
}
