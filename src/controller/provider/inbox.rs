//! A worker's inbox. While a backend call hangs, the router may send the same DNSEndpoint's
//! records many times over; the inbox keeps only the latest records per object (and drops
//! them when the object is released), so what waits is bounded by the number of objects,
//! not by the number of events. Other messages keep their order. Records sent before a
//! message are delivered before it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::worker::WorkerMsg;
use super::EpKey;
use crate::dns::plan::DesiredRecord;

#[derive(Default)]
struct State {
    /// Latest records per object, not yet delivered.
    desired: HashMap<EpKey, Vec<(usize, DesiredRecord)>>,
    others: VecDeque<WorkerMsg>,
    sender_gone: bool,
    receiver_gone: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The worker is gone (it panicked or stopped): its inbox takes nothing more.
#[derive(Debug, thiserror::Error)]
#[error("sending to a provider's worker: its inbox is closed")]
pub(super) struct Closed;

/// The router's end.
pub(super) struct InboxSender(Arc<Shared>);

/// The worker's end.
pub(super) struct Inbox(Arc<Shared>);

pub(super) fn channel() -> (InboxSender, Inbox) {
    let shared = Arc::new(Shared::default());
    (InboxSender(shared.clone()), Inbox(shared))
}

impl InboxSender {
    pub(super) fn send(&self, msg: WorkerMsg) -> Result<(), Closed> {
        let mut s = self.0.lock();
        if s.receiver_gone {
            return Err(Closed);
        }
        match msg {
            WorkerMsg::Desired { ep, records } => {
                s.desired.insert(ep, records);
            }
            WorkerMsg::Release { ep, names } => {
                // Releasing plans the object's names without it: records it wanted before
                // are moot.
                s.desired.remove(&ep);
                s.others.push_back(WorkerMsg::Release { ep, names });
            }
            other => s.others.push_back(other),
        }
        drop(s);
        self.0.wake.notify_one();
        Ok(())
    }

    /// Messages waiting (records count once per object).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        let s = self.0.lock();
        s.desired.len() + s.others.len()
    }
}

impl Drop for InboxSender {
    fn drop(&mut self) {
        self.0.lock().sender_gone = true;
        self.0.wake.notify_one();
    }
}

impl Inbox {
    /// The next message, if one waits; records come first, so those sent before a message
    /// arrive before it.
    pub(super) fn try_recv(&mut self) -> Result<WorkerMsg, Closed> {
        let mut s = self.0.lock();
        let ep = s.desired.keys().next().cloned();
        if let Some(ep) = ep {
            if let Some(records) = s.desired.remove(&ep) {
                return Ok(WorkerMsg::Desired { ep, records });
            }
        }
        s.others.pop_front().ok_or(Closed)
    }

    /// Whether a message waits.
    pub(super) fn pending(&self) -> bool {
        let s = self.0.lock();
        !s.desired.is_empty() || !s.others.is_empty()
    }

    /// The next message; `None` once the router dropped its end and nothing is left.
    pub(super) async fn recv(&mut self) -> Option<WorkerMsg> {
        loop {
            if let Ok(msg) = self.try_recv() {
                return Some(msg);
            }
            if self.0.lock().sender_gone {
                return None;
            }
            self.0.wake.notified().await;
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.receiver_gone = true;
        // What waits would never be read.
        s.desired.clear();
        s.others.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::endpoint::{Endpoint, RecordType};
    use crate::dns::plan::Claimant;

    fn records(target: &str) -> Vec<(usize, DesiredRecord)> {
        let endpoint = Endpoint::new("web.example.com", RecordType::A, vec![target.into()]);
        vec![(
            0,
            DesiredRecord {
                endpoint: Arc::new(endpoint),
                claimant: Arc::new(Claimant { created: String::new(), namespace: "ns".into(), name: "a".into() }),
            },
        )]
    }

    #[tokio::test]
    async fn only_the_latest_records_per_object_wait() {
        let (tx, mut rx) = channel();
        for i in 0..1000 {
            tx.send(WorkerMsg::Desired { ep: "ns/a@1".into(), records: records(&format!("192.0.2.{}", i % 250)) })
                .unwrap();
        }
        tx.send(WorkerMsg::Desired { ep: "ns/b@1".into(), records: records("192.0.2.7") }).unwrap();
        tx.send(WorkerMsg::Start).unwrap();
        assert_eq!(tx.queued(), 3, "two objects' latest records and Start");
        let mut got = Vec::new();
        while let Ok(m) = rx.try_recv() {
            got.push(m);
        }
        assert!(matches!(got.last(), Some(WorkerMsg::Start)), "records sent before Start come before it");
        let a = got.iter().find_map(|m| match m {
            WorkerMsg::Desired { ep, records } if ep.as_ref() == "ns/a@1" => {
                Some(records[0].1.endpoint.targets.clone())
            }
            _ => None,
        });
        assert_eq!(a, Some(vec!["192.0.2.249".to_string()]), "the latest");
    }

    #[tokio::test]
    async fn a_release_supersedes_waiting_records_and_a_dropped_worker_closes_the_inbox() {
        let (tx, mut rx) = channel();
        tx.send(WorkerMsg::Desired { ep: "ns/a@1".into(), records: records("192.0.2.1") }).unwrap();
        tx.send(WorkerMsg::Release { ep: "ns/a@1".into(), names: vec!["web.example.com".into()] }).unwrap();
        assert!(matches!(rx.recv().await, Some(WorkerMsg::Release { .. })));
        assert!(rx.try_recv().is_err());
        drop(rx);
        assert!(tx.send(WorkerMsg::Start).is_err(), "a send to a dead worker fails");
        let (tx, mut rx) = channel();
        drop(tx);
        assert!(rx.recv().await.is_none(), "the router dropped its end");
    }
}
