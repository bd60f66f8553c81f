//! Applies expanded changes so that a record and its ownership TXT succeed or fail together.
//!
//! A record without its ownership TXT is one extdns later calls somebody else's
//! (`RecordExists`); an ownership TXT without its record is a claim nobody ever cleans up,
//! since the planner only sees records. Backends apply a batch change by change (or bisect
//! it), so sending a record and its TXT side by side lets one succeed while the other is
//! refused. Instead the batch goes out in three phases, each one provider call:
//!
//! 0. (no call) every change is checked as the backend would check it client-side; a record
//!    or TXT refused there is refused together with its partner, and neither is sent;
//! 1. the ownership TXT creates and updates of records being created or updated;
//! 2. the data changes: creates and updates only where phase 1 accepted their TXT, and all
//!    deletes;
//! 3. the ownership TXT removals of records whose delete succeeded, and the rollback of every
//!    phase-1 TXT change whose records were all refused in phase 2 (a created TXT is deleted,
//!    an updated one gets its old value back).
//!
//! A refused TXT is never retried in another form. The zone is read only when the backend
//! refuses a change: one whose effect already shows was applied by an earlier call whose
//! answer was lost, and is done (see [`apply_changes`]).

use std::collections::BTreeMap;

use tracing::{debug, warn};

use crate::endpoint::Endpoint;
use crate::provider::{not_sent, Applied, Change, ChangeResult, Provider, ProviderError, Zone};
use crate::registry::{Expanded, Role};

/// Applies `expanded` (from [`crate::registry::TxtRegistry::expand`], or
/// [`Expanded::data_only`] without a registry) to `zone`, keeping each record and its ownership
/// TXT together; returns one result per expanded change, in order.
///
/// The controller calls this where it used to call `Provider::apply` with the expanded changes.
///
/// - A data create or update is sent only once its ownership TXT change was accepted; when
///   the TXT change is refused the data change is not sent and reports the TXT's error.
/// - A data change refused by the backend takes back the TXT change made for it (unless
///   another record of the batch that shares the TXT got through); that TXT change then
///   reports the data change's error, so a caller updating its cache from the results sees
///   the TXT as it is on the backend.
/// - An ownership TXT is removed only after the delete of every record of the batch leaning on
///   it succeeded; otherwise the removal is not sent and reports the delete's error.
/// - A data change that failed transiently (timeout, throttling) may still have been applied,
///   so its TXT change is kept, reported `Ok`; the retry finds the TXT in place.
/// - A rollback the backend refuses leaves the TXT in place (logged); its result stays `Ok`,
///   because the TXT is on the backend, and the record reports its own error.
pub async fn apply_with_ownership(provider: &dyn Provider, zone: &Zone, expanded: &[Expanded]) -> Vec<ChangeResult> {
    let mut batch = OwnedBatch {
        provider,
        zone,
        expanded,
        data_at: expanded
            .iter()
            .enumerate()
            .filter(|(_, e)| e.role == Role::Data)
            .map(|(pos, e)| (e.index, pos))
            .collect(),
        results: vec![None; expanded.len()],
    };
    batch.refuse_unsendable();
    let ahead = batch.ownership_ahead();
    batch.send(&ahead).await;
    batch.send_data(&ahead).await;
    batch.finish_ownership().await;
    batch.results.into_iter().map(|r| r.unwrap_or_else(|| Err(not_sent("no phase of the batch took it")))).collect()
}

/// One [`apply_with_ownership`]: the expanded changes and their results so far.
struct OwnedBatch<'a> {
    provider: &'a dyn Provider,
    zone: &'a Zone,
    expanded: &'a [Expanded],
    /// Position in `expanded` of the data change of each planned change (by its index).
    data_at: BTreeMap<usize, usize>,
    results: Vec<Option<ChangeResult>>,
}

/// The planned changes an ownership change stands for.
fn backs(e: &Expanded) -> &[usize] {
    match &e.role {
        Role::Ownership { backs } => backs,
        Role::Data => &[],
    }
}

impl OwnedBatch<'_> {
    fn is_delete(&self, index: usize) -> bool {
        self.data_at.get(&index).is_some_and(|&pos| matches!(self.expanded[pos].change, Change::Delete(_)))
    }

    /// Phase 0: what the backend would refuse client-side is refused here, for the record and
    /// its ownership TXT together, before anything of the batch is sent: a TXT written for a
    /// record the backend then refuses (or the other way round) would be churn at best.
    fn refuse_unsendable(&mut self) {
        let mut refused: BTreeMap<usize, ProviderError> = BTreeMap::new();
        for e in self.expanded {
            if let Err(err) = self.provider.check(self.zone, &e.change) {
                for &index in std::iter::once(&e.index).chain(backs(e)) {
                    refused.entry(index).or_insert_with(|| err.clone());
                }
            }
        }
        for (pos, e) in self.expanded.iter().enumerate() {
            let err = match &e.role {
                Role::Data => refused.get(&e.index).cloned(),
                // A TXT shared by several records (the apex A and AAAA) still goes out for the
                // ones that can be written.
                Role::Ownership { backs } => match backs.iter().all(|i| refused.contains_key(i)) {
                    true => backs.first().and_then(|i| refused.get(i)).cloned(),
                    false => None,
                },
            };
            if let Some(err) = err {
                self.results[pos] = Some(Err(err));
            }
        }
    }

    /// Ownership changes that go ahead of their records (the records are created or
    /// updated), by position.
    fn ownership_ahead(&self) -> Vec<usize> {
        let pending = |(pos, e): &(usize, &Expanded)| {
            matches!(e.role, Role::Ownership { .. }) && !self.is_delete(e.index) && self.results[*pos].is_none()
        };
        self.expanded.iter().enumerate().filter(pending).map(|(pos, _)| pos).collect()
    }

    /// Sends the changes at `positions` in one provider call and files their results.
    async fn send(&mut self, positions: &[usize]) {
        let changes: Vec<Change> = positions.iter().map(|&pos| self.expanded[pos].change.clone()).collect();
        let sent = apply_changes(self.provider, self.zone, &changes).await;
        for (&pos, r) in positions.iter().zip(sent) {
            self.results[pos] = Some(r);
        }
    }

    /// Phase 2: the data changes whose TXT is in place (`ahead` went out in phase 1), and
    /// every delete.
    async fn send_data(&mut self, ahead: &[usize]) {
        let mut blocked: BTreeMap<usize, ProviderError> = BTreeMap::new();
        for &pos in ahead {
            if let Some(Err(e)) = &self.results[pos] {
                for &index in backs(&self.expanded[pos]) {
                    blocked.entry(index).or_insert_with(|| e.clone());
                }
            }
        }
        let mut data: Vec<usize> = Vec::new();
        for (&index, &pos) in &self.data_at {
            if self.results[pos].is_some() {
                continue;
            }
            match blocked.get(&index) {
                Some(e) => self.results[pos] = Some(Err(e.clone())),
                None => data.push(pos),
            }
        }
        data.sort_unstable();
        self.send(&data).await;
    }

    /// Phase 3: ownership removals after their deletes, rollbacks after refused records.
    async fn finish_ownership(&mut self) {
        let data_errors: BTreeMap<usize, ProviderError> = self
            .data_at
            .iter()
            .filter_map(|(&index, &pos)| Some((index, self.results[pos].as_ref()?.as_ref().err()?.clone())))
            .collect();
        let mut last: Vec<(usize, Change)> = Vec::new();
        let mut rolled_back: BTreeMap<usize, ProviderError> = BTreeMap::new();
        for (pos, e) in self.expanded.iter().enumerate() {
            if e.role == Role::Data || (self.is_delete(e.index) && self.results[pos].is_some()) {
                continue;
            }
            let errors: Vec<ProviderError> = backs(e).iter().filter_map(|i| data_errors.get(i).cloned()).collect();
            if self.is_delete(e.index) {
                match errors.into_iter().next() {
                    Some(err) => self.results[pos] = Some(Err(err)),
                    None => last.push((pos, e.change.clone())),
                }
                continue;
            }
            let accepted = matches!(self.results[pos], Some(Ok(_)));
            // A timeout may hide a record the backend did write: keeping its TXT errs on the
            // side of a claim without a record, which the retry fills, never on a record
            // nobody owns.
            let all_refused = errors.len() == backs(e).len() && errors.iter().all(|e| !e.is_transient());
            if let (true, true, Some(err)) = (accepted, all_refused, errors.into_iter().next()) {
                rolled_back.insert(pos, err);
                last.push((pos, undo(&e.change)));
            }
        }
        let changes: Vec<Change> = last.iter().map(|(_, c)| c.clone()).collect();
        let sent = apply_changes(self.provider, self.zone, &changes).await;
        for ((pos, change), r) in last.iter().zip(sent) {
            match (rolled_back.remove(pos), r) {
                (None, r) => self.results[*pos] = Some(r),
                (Some(data_err), Ok(_)) => self.results[*pos] = Some(Err(data_err)),
                (Some(_), Err(e)) => warn!(
                    zone = %self.zone.name,
                    record = %change.endpoint().key(),
                    error = %e,
                    "taking back an ownership TXT after its record was refused failed; the TXT stays"
                ),
            }
        }
    }
}

/// The change that undoes an accepted `change`.
fn undo(change: &Change) -> Change {
    match change {
        Change::Create(e) => Change::Delete(e.clone()),
        Change::Update { old, new } => Change::Update { old: new.clone(), new: old.clone() },
        Change::Delete(e) => Change::Create(e.clone()),
    }
}

/// One provider call (none for nothing), exactly one result per change.
///
/// A change the backend refuses although the zone already shows its effect was applied by an
/// earlier call whose answer was lost (Cloudflare answering 502 after committing a batch, a
/// webhook 500 after writing): the retry finds the ownership TXT it was about to write (same
/// value, so same owner and resource) or the record it wanted, and the backend refuses it as
/// "already exists". Such a change is done, not refused; one listing of the zone says so.
async fn apply_changes(provider: &dyn Provider, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
    if changes.is_empty() {
        return Vec::new();
    }
    let mut results = provider.apply(zone, changes).await;
    results.truncate(changes.len());
    results.resize_with(changes.len(), || {
        Err(ProviderError::Rejected("the backend returned no result for this change".into()))
    });
    let refused: Vec<usize> =
        (0..changes.len()).filter(|&i| matches!(results[i], Err(ProviderError::Rejected(_)))).collect();
    if refused.is_empty() {
        return results;
    }
    match provider.records(zone).await {
        Ok(held) => {
            for i in refused {
                if already_applied(&held, &changes[i]) {
                    debug!(zone = %zone.name, change = changes[i].verb(), record = %changes[i].endpoint().key(),
                        "the backend refused a change whose effect it already shows (an earlier answer was lost): done");
                    results[i] = Ok(Applied::Live);
                }
            }
        }
        Err(e) => debug!(zone = %zone.name, error = %e, "listing the zone to look for changes already applied failed"),
    }
    results
}

/// Whether `held` (the zone as listed) already shows `change`'s effect: the RRset it writes
/// holds exactly its values (an update's old RRset gone unless it is the same one), or the
/// RRset it deletes is gone. TTLs and provider-specific settings are not compared: where they
/// differ, the next plan against a listing updates them like any drift.
fn already_applied(held: &[Endpoint], change: &Change) -> bool {
    let key = |e: &Endpoint| e.clone().normalized().key();
    let find = |e: &Endpoint| held.iter().find(|h| key(h) == key(e));
    let holds =
        |e: &Endpoint| find(e).is_some_and(|h| h.clone().normalized().targets == e.clone().normalized().targets);
    match change {
        Change::Create(e) => holds(e),
        Change::Update { old, new } => holds(new) && (key(old) == key(new) || find(old).is_none()),
        Change::Delete(e) => find(e).is_none(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;
    use crate::endpoint::{label, Endpoint, RecordType};
    use crate::inmemory::InMemoryProvider;
    use crate::plan::{self, Claimant, DesiredRecord, Outcome, Policy};
    use crate::registry::{RegistryView, TxtRegistry, TxtRegistryConfig};
    use crate::Applied;

    const ZONE: &str = "example.org";
    const OWNER: &str = "default";
    const SPF: &str = "v=spf1 include:_spf.example.net ~all";
    const VERIFICATION: &str = "google-site-verification=abc123";

    /// The in-memory provider, refusing the changes `refuse` picks, recording every call.
    struct Refusing {
        zone: InMemoryProvider,
        refuse: Box<dyn Fn(&Change) -> bool + Send + Sync>,
        calls: Mutex<Vec<Vec<Change>>>,
    }

    impl Refusing {
        fn new(refuse: impl Fn(&Change) -> bool + Send + Sync + 'static) -> Self {
            Refusing { zone: InMemoryProvider::new([ZONE]), refuse: Box::new(refuse), calls: Mutex::new(Vec::new()) }
        }

        fn calls(&self) -> Vec<Vec<(&'static str, String, RecordType)>> {
            let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls
                .iter()
                .map(|batch| {
                    batch.iter().map(|c| (c.verb(), c.endpoint().dns_name.clone(), c.endpoint().record_type)).collect()
                })
                .collect()
        }

        fn held(&self) -> Vec<(String, RecordType, Vec<String>)> {
            let mut v: Vec<_> = self
                .zone
                .all_records()
                .iter()
                .map(|e| (e.dns_name.clone(), e.record_type, e.targets.clone()))
                .collect();
            v.sort();
            v
        }
    }

    #[async_trait]
    impl Provider for Refusing {
        async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
            self.zone.zones().await
        }

        async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
            self.zone.records(zone).await
        }

        async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
            self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(changes.to_vec());
            let mut out = Vec::with_capacity(changes.len());
            for c in changes {
                if (self.refuse)(c) {
                    out.push(Err(ProviderError::Rejected(format!("refused {} {}", c.verb(), c.endpoint().key()))));
                } else {
                    out.extend(self.zone.apply(zone, std::slice::from_ref(c)).await);
                }
            }
            out
        }
    }

    /// Refuses client-side (in `check`) what `refuse` picks, otherwise the in-memory zone.
    struct CheckRefusing(Refusing);

    #[async_trait]
    impl Provider for CheckRefusing {
        async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
            self.0.zones().await
        }

        async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
            self.0.records(zone).await
        }

        async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
            self.0.apply(zone, changes).await
        }

        fn check(&self, _: &Zone, change: &Change) -> Result<(), ProviderError> {
            if (self.0.refuse)(change) {
                return Err(ProviderError::Rejected(format!("{}: not a valid name", change.endpoint().dns_name)));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_change_refused_client_side_sends_neither_the_record_nor_its_txt() {
        let bad_txt = |c: &Change| c.endpoint().dns_name == "a-bad.example.org";
        let bad_data = |c: &Change| c.endpoint().dns_name == "worse.example.org";
        let p = CheckRefusing(Refusing::new(move |c| bad_txt(c) || bad_data(c)));
        let bad = ours("bad.example.org", RecordType::A, &["192.0.2.1"], "crd/ns/bad");
        let worse = ours("worse.example.org", RecordType::A, &["192.0.2.2"], "crd/ns/worse");
        let fine = ours("fine.example.org", RecordType::A, &["192.0.2.3"], "crd/ns/fine");
        let changes = [Change::Create(bad), Change::Create(worse), Change::Create(fine)];
        let expanded = registry().expand(&view(&p.0).await, &changes);
        let results = apply_with_ownership(&p, &Zone::named(ZONE), &expanded).await;
        for (e, r) in expanded.iter().zip(&results) {
            let name = &changes[e.index].endpoint().dns_name;
            if name == "fine.example.org" {
                assert!(r.is_ok(), "{e:?}: {r:?}");
                continue;
            }
            let Err(err @ ProviderError::Rejected(m)) = r else { panic!("{e:?} must be refused: {r:?}") };
            assert_eq!(err.reason(), "ProviderRejected");
            let culprit = if name == "bad.example.org" { "a-bad.example.org" } else { "worse.example.org" };
            assert!(m.contains(culprit), "the refusal names {culprit}: {m}");
        }
        // Neither the refused TXT's record nor the refused record's TXT was ever sent: no
        // create-then-rollback.
        let sent: Vec<String> = p.0.calls().into_iter().flatten().map(|(_, n, _)| n).collect();
        assert_eq!(sent, vec!["a-fine.example.org".to_string(), "fine.example.org".to_string()]);
        let held: Vec<String> = p.0.held().into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(held, vec!["a-fine.example.org".to_string(), "fine.example.org".to_string()]);
    }

    fn registry() -> TxtRegistry {
        TxtRegistry::new(TxtRegistryConfig { owner_id: OWNER.into(), ..Default::default() }).expect("valid config")
    }

    fn ours(name: &str, rt: RecordType, targets: &[&str], resource: &str) -> Endpoint {
        let mut e = Endpoint::new(name, rt, targets.iter().map(|t| t.to_string()).collect()).with_ttl(300);
        e.labels.insert(label::OWNER.into(), OWNER.into());
        e.labels.insert(label::RESOURCE.into(), resource.into());
        e
    }

    fn txt(name: &str, values: &[&str]) -> Endpoint {
        Endpoint::new(name, RecordType::TXT, values.iter().map(|v| v.to_string()).collect()).with_ttl(3600)
    }

    fn ownership_text(resource: &str) -> String {
        format!("heritage=external-dns,external-dns/owner={OWNER},external-dns/resource={resource}")
    }

    async fn view(p: &Refusing) -> RegistryView {
        let raw = p.records(&Zone::named(ZONE)).await.expect("listing the in-memory zone");
        registry().view_in_zone(raw, ZONE)
    }

    /// Expands `changes` against the provider's zone and applies them.
    async fn run(p: &Refusing, changes: &[Change]) -> (Vec<Expanded>, Vec<ChangeResult>) {
        let expanded = registry().expand(&view(p).await, changes);
        p.calls.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let results = apply_with_ownership(p, &Zone::named(ZONE), &expanded).await;
        assert_eq!(results.len(), expanded.len(), "one result per expanded change");
        (expanded, results)
    }

    fn sorted(values: &[String]) -> Vec<String> {
        let mut v = values.to_vec();
        v.sort();
        v
    }

    fn is_data_of(c: &Change, name: &str, rt: RecordType) -> bool {
        c.endpoint().dns_name == name && c.endpoint().record_type == rt
    }

    #[tokio::test]
    async fn create_writes_the_txt_first_and_the_record_only_after_it() {
        let p = Refusing::new(|_| false);
        let web = ours("web.example.org", RecordType::A, &["192.0.2.1"], "crd/ns/web");
        let (_, results) = run(&p, &[Change::Create(web)]).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(
            p.calls(),
            vec![
                vec![("create", "a-web.example.org".into(), RecordType::TXT)],
                vec![("create", "web.example.org".into(), RecordType::A)],
            ]
        );
        assert_eq!(p.held().len(), 2);
    }

    #[tokio::test]
    async fn a_refused_txt_create_keeps_its_record_from_being_written() {
        let p = Refusing::new(|c| c.endpoint().record_type == RecordType::TXT);
        let web = ours("web.example.org", RecordType::A, &["192.0.2.1"], "crd/ns/web");
        let (expanded, results) = run(&p, &[Change::Create(web)]).await;
        assert_eq!(expanded[0].role, Role::Data);
        let Err(e) = &results[0] else { panic!("the record must fail with its TXT: {results:?}") };
        assert!(e.to_string().contains("a-web.example.org"), "the TXT's error is reported: {e}");
        assert!(results[1].is_err());
        assert_eq!(p.calls().len(), 1, "the record was never sent: {:?}", p.calls());
        assert_eq!(p.held(), vec![]);
    }

    #[tokio::test]
    async fn a_refused_record_create_takes_its_new_txt_back() {
        let p = Refusing::new(|c| matches!(c, Change::Create(e) if e.targets.len() > 400));
        let many: Vec<String> = (0..500).map(|i| format!("10.0.{}.{}", i / 250, i % 250)).collect();
        let big =
            ours("big.example.org", RecordType::A, &many.iter().map(String::as_str).collect::<Vec<_>>(), "crd/ns/big");
        let fine = ours("fine.example.org", RecordType::A, &["192.0.2.2"], "crd/ns/fine");
        let (expanded, results) = run(&p, &[Change::Create(big), Change::Create(fine.clone())]).await;
        assert!(results[0].is_err(), "{results:?}");
        for (e, r) in expanded.iter().zip(&results) {
            assert_eq!(r.is_ok(), e.index == 1, "{:?} {} -> {r:?}", e.role, e.change.endpoint().key());
        }
        assert_eq!(
            p.calls(),
            vec![
                vec![
                    ("create", "a-big.example.org".into(), RecordType::TXT),
                    ("create", "a-fine.example.org".into(), RecordType::TXT)
                ],
                vec![
                    ("create", "big.example.org".into(), RecordType::A),
                    ("create", "fine.example.org".into(), RecordType::A)
                ],
                vec![("delete", "a-big.example.org".into(), RecordType::TXT)],
            ],
            "three calls, whatever the batch size"
        );
        assert_eq!(
            p.held(),
            vec![
                ("a-fine.example.org".into(), RecordType::TXT, vec![ownership_text("crd/ns/fine")]),
                ("fine.example.org".into(), RecordType::A, vec!["192.0.2.2".into()]),
            ],
            "no ownership TXT is left for the refused record"
        );
    }

    #[tokio::test]
    async fn a_refused_record_update_restores_the_txt_it_changed() {
        let p = Refusing::new(|c| matches!(c, Change::Update { new, .. } if new.record_type == RecordType::A));
        let web = ours("web.example.org", RecordType::A, &["192.0.2.1"], "crd/ns/web");
        let (_, results) = run(&p, &[Change::Create(web)]).await;
        assert!(results.iter().all(|r| r.is_ok()));
        let current = view(&p).await.endpoints[0].clone();
        let moved = ours("web.example.org", RecordType::A, &["192.0.2.9"], "crd/other/web");
        let (expanded, results) = run(&p, &[Change::Update { old: current, new: moved }]).await;
        assert!(matches!(expanded[1].change, Change::Update { .. }), "the resource label changed: {expanded:?}");
        assert!(results.iter().all(|r| r.is_err()), "{results:?}");
        assert_eq!(p.calls().len(), 3, "{:?}", p.calls());
        assert_eq!(
            p.held(),
            vec![
                ("a-web.example.org".into(), RecordType::TXT, vec![ownership_text("crd/ns/web")]),
                ("web.example.org".into(), RecordType::A, vec!["192.0.2.1".into()]),
            ],
            "record and TXT as before the refused update"
        );
    }

    #[tokio::test]
    async fn delete_removes_the_record_first_and_the_txt_only_after_it() {
        let p = Refusing::new(|c| matches!(c, Change::Delete(e) if e.dns_name == "stuck.example.org"));
        let web = ours("web.example.org", RecordType::A, &["192.0.2.1"], "crd/ns/web");
        let stuck = ours("stuck.example.org", RecordType::A, &["192.0.2.3"], "crd/ns/stuck");
        run(&p, &[Change::Create(web), Change::Create(stuck)]).await;
        let current = view(&p).await.endpoints;
        let deletes: Vec<Change> = current.into_iter().map(Change::Delete).collect();
        let (expanded, results) = run(&p, &deletes).await;
        let calls = p.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls[0].iter().all(|c| c.2 == RecordType::A), "records first: {calls:?}");
        assert_eq!(calls[1], vec![("delete", "a-web.example.org".into(), RecordType::TXT)], "TXT last");
        for (e, r) in expanded.iter().zip(&results) {
            let stuck = e.change.endpoint().dns_name.contains("stuck");
            assert_eq!(r.is_err(), stuck, "{} -> {r:?}", e.change.endpoint().key());
        }
        assert_eq!(
            p.held(),
            vec![
                ("a-stuck.example.org".into(), RecordType::TXT, vec![ownership_text("crd/ns/stuck")]),
                ("stuck.example.org".into(), RecordType::A, vec!["192.0.2.3".into()]),
            ],
            "a record that could not be deleted keeps its owner"
        );
    }

    #[tokio::test]
    async fn a_shared_apex_txt_stays_while_one_of_its_records_got_through() {
        let p = Refusing::new(|c| matches!(c, Change::Create(e) if e.record_type == RecordType::AAAA));
        let a = ours(ZONE, RecordType::A, &["192.0.2.1"], "crd/ns/apex");
        let aaaa = ours(ZONE, RecordType::AAAA, &["2001:db8::1"], "crd/ns/apex");
        let (expanded, results) = run(&p, &[Change::Create(a), Change::Create(aaaa.clone())]).await;
        let backs: Vec<&Role> = expanded.iter().map(|e| &e.role).filter(|r| **r != Role::Data).collect();
        assert_eq!(backs, vec![&Role::Ownership { backs: vec![0, 1] }]);
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1, "only the AAAA: {results:?}");
        assert_eq!(p.held().len(), 2, "A and its apex TXT: {:?}", p.held());

        // Both refused: the TXT goes too.
        let p = Refusing::new(|c| matches!(c, Change::Create(e) if e.record_type != RecordType::TXT));
        let a = ours(ZONE, RecordType::A, &["192.0.2.1"], "crd/ns/apex");
        run(&p, &[Change::Create(a), Change::Create(aaaa)]).await;
        assert_eq!(p.held(), vec![]);
    }

    #[tokio::test]
    async fn a_refused_rollback_leaves_the_txt_reported_as_held() {
        let p = Refusing::new(|c| match c {
            Change::Create(e) => e.record_type == RecordType::A,
            Change::Delete(e) => e.record_type == RecordType::TXT,
            Change::Update { .. } => false,
        });
        let web = ours("web.example.org", RecordType::A, &["192.0.2.1"], "crd/ns/web");
        let (_, results) = run(&p, &[Change::Create(web)]).await;
        assert!(results[0].is_err());
        assert!(results[1].is_ok(), "the TXT is on the backend and must be cached as such: {results:?}");
        assert_eq!(p.held().len(), 1);
    }

    /// A backend that timed out on the record may have written it: its TXT stays.
    #[tokio::test]
    async fn a_record_that_timed_out_keeps_its_txt() {
        struct TimesOutOnA(Refusing);
        #[async_trait]
        impl Provider for TimesOutOnA {
            async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
                self.0.zones().await
            }
            async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
                self.0.records(zone).await
            }
            async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
                let results = self.0.apply(zone, changes).await;
                changes
                    .iter()
                    .zip(results)
                    .map(|(c, r)| match c.endpoint().record_type {
                        RecordType::A => Err(ProviderError::Unreachable("timed out after sending".into())),
                        _ => r,
                    })
                    .collect()
            }
        }
        let p = TimesOutOnA(Refusing::new(|_| false));
        let web = ours("web.example.org", RecordType::A, &["192.0.2.1"], "crd/ns/web");
        let expanded = registry().expand(&view(&p.0).await, &[Change::Create(web)]);
        let results = apply_with_ownership(&p, &Zone::named(ZONE), &expanded).await;
        assert!(matches!(results[0], Err(ProviderError::Unreachable(_))), "{results:?}");
        assert_eq!(results[1], Ok(Applied::Live), "the TXT is held and reported so");
        assert_eq!(p.0.held().len(), 2, "record (written despite the timeout) and TXT: {:?}", p.0.held());
        assert_eq!(p.0.calls().len(), 2, "no rollback: {:?}", p.0.calls());
    }

    /// At the apex the ownership value of a TXT record would share its RRset: the create is
    /// refused and leaves nothing behind.
    #[tokio::test]
    async fn a_txt_record_at_the_apex_is_refused_whole() {
        let p = Refusing::new(|_| false);
        let spf = ours(ZONE, RecordType::TXT, &[SPF], "crd/ns/spf");
        let (_, results) = run(&p, &[Change::Create(spf)]).await;
        assert!(results[0].is_err(), "{results:?}");
        assert_eq!(p.held(), vec![]);
    }

    #[tokio::test]
    async fn without_a_registry_changes_go_out_in_one_call() {
        let p = Refusing::new(|_| false);
        let changes = [Change::Create(Endpoint::new("x.example.org", RecordType::A, vec!["192.0.2.1".into()]))];
        let results = apply_with_ownership(&p, &Zone::named(ZONE), &Expanded::data_only(&changes)).await;
        assert_eq!(results, vec![Ok(Applied::Live)]);
        assert_eq!(p.calls().len(), 1);
    }

    /// The apex holds SPF and verification values; the ownership value of our apex A joins
    /// that RRset and leaves it again, and the planner never treats the others as ours.
    #[tokio::test]
    async fn ownership_joins_and_leaves_an_apex_txt_rrset_without_touching_the_others() {
        let p = Refusing::new(|_| false);
        p.zone.seed(txt(ZONE, &[SPF, VERIFICATION])).expect("seed");
        let a = ours(ZONE, RecordType::A, &["192.0.2.1"], "crd/ns/apex");
        let (expanded, results) = run(&p, &[Change::Create(a.clone())]).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        let Change::Update { old, new } = &expanded[1].change else { panic!("an update of the RRset: {expanded:?}") };
        assert_eq!(old, &txt(ZONE, &[SPF, VERIFICATION]), "exactly as stored");
        assert_eq!(sorted(&new.targets), sorted(&[SPF.into(), VERIFICATION.into(), ownership_text("crd/ns/apex")]));
        assert_eq!(new.ttl, Some(3600), "the RRset keeps its TTL");

        let v = view(&p).await;
        let spf = v.endpoints.iter().find(|e| e.record_type == RecordType::TXT).expect("the SPF stays data");
        assert_eq!(sorted(&spf.targets), sorted(&[SPF.into(), VERIFICATION.into()]));
        assert!(spf.labels.is_empty(), "nobody owns the SPF value: {spf:?}");
        let held_a = v.endpoints.iter().find(|e| e.record_type == RecordType::A).expect("our A");
        assert_eq!(held_a.labels.get(label::OWNER).map(String::as_str), Some(OWNER));

        // Even with TXT managed, the planner leaves the SPF alone and sees our A in sync.
        let desired = vec![DesiredRecord {
            endpoint: Arc::new(a.clone()),
            claimant: Arc::new(Claimant { created: String::new(), namespace: "ns".into(), name: "apex".into() }),
        }];
        let p2 = plan::plan(&plan::PlanInput {
            desired: &desired,
            current: &v.endpoints,
            policy: Policy::Sync,
            owner_id: Some(OWNER),
            managed_types: &RecordType::ALL,
            default_ttl: 300,
            orphan_claims: &Default::default(),
        });
        assert_eq!(p2.outcomes, vec![Outcome::InSync]);
        assert!(p2.changes.is_empty(), "{:?}", p2.changes);

        // Changing our labels rewrites only our value.
        let moved = ours(ZONE, RecordType::A, &["192.0.2.1"], "crd/ns/apex2");
        let (expanded, _) = run(&p, &[Change::Update { old: held_a.clone(), new: moved }]).await;
        let Change::Update { new, .. } = &expanded[1].change else { panic!("{expanded:?}") };
        assert_eq!(sorted(&new.targets), sorted(&[SPF.into(), VERIFICATION.into(), ownership_text("crd/ns/apex2")]));

        // Deleting our A removes only our value.
        let v = view(&p).await;
        let held_a = v.endpoints.iter().find(|e| e.record_type == RecordType::A).expect("our A").clone();
        let (expanded, results) = run(&p, &[Change::Delete(held_a)]).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert!(matches!(expanded[1].change, Change::Update { .. }), "{expanded:?}");
        assert_eq!(p.held(), vec![(ZONE.into(), RecordType::TXT, sorted(&[SPF.into(), VERIFICATION.into()]))]);
    }

    /// The planner with TXT among its managed types and no desired TXT deletes only TXT
    /// records it owns: the SPF next to an old-format ownership value is not one of them.
    #[tokio::test]
    async fn the_planner_never_deletes_values_sharing_our_apex_rrset() {
        let p = Refusing::new(|_| false);
        p.zone.seed(ours(ZONE, RecordType::A, &["192.0.2.1"], "crd/ns/apex")).expect("seed A");
        p.zone.seed(txt(ZONE, &[SPF, &ownership_text("crd/ns/apex")])).expect("seed TXT");
        let v = view(&p).await;
        let p2 = plan::plan(&plan::PlanInput {
            desired: &[],
            current: &v.endpoints,
            policy: Policy::Sync,
            owner_id: Some(OWNER),
            managed_types: &RecordType::ALL,
            default_ttl: 300,
            orphan_claims: &Default::default(),
        });
        assert_eq!(p2.changes.len(), 1, "{:?}", p2.changes);
        assert!(is_data_of(&p2.changes[0], ZONE, RecordType::A));
        let (_, results) = run(&p, &p2.changes).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(p.held(), vec![(ZONE.into(), RecordType::TXT, vec![SPF.to_string()])]);
    }

    /// Applies every call, but loses the answers of the calls whose number (from 0) `lose`
    /// holds: the backend did the work, extdns hears `Unreachable`.
    struct LosesAnswers {
        inner: Refusing,
        lose: Vec<usize>,
        call: Mutex<usize>,
    }

    #[async_trait]
    impl Provider for LosesAnswers {
        async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
            self.inner.zones().await
        }
        async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
            self.inner.records(zone).await
        }
        async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
            let results = self.inner.apply(zone, changes).await;
            let n = {
                let mut call = self.call.lock().unwrap_or_else(|e| e.into_inner());
                *call += 1;
                *call - 1
            };
            if !self.lose.contains(&n) {
                return results;
            }
            results.iter().map(|_| Err(ProviderError::Unreachable("HTTP 502 Bad Gateway".into()))).collect()
        }
    }

    fn losing(lose: &[usize]) -> LosesAnswers {
        LosesAnswers { inner: Refusing::new(|_| false), lose: lose.to_vec(), call: Mutex::new(0) }
    }

    /// The retry of a change applied with its answer lost sends the same changes against the
    /// same (stale) view, as the worker does, whose cache took nothing of the lost call.
    async fn retry(p: &LosesAnswers, stale: &RegistryView, changes: &[Change]) -> Vec<ChangeResult> {
        let expanded = registry().expand(stale, changes);
        apply_with_ownership(&p.inner, &Zone::named(ZONE), &expanded).await
    }

    #[tokio::test]
    async fn a_create_applied_with_its_answer_lost_is_done_on_the_retry() {
        let web = ours("web.example.org", RecordType::A, &["192.0.2.1"], "crd/ns/web");
        let create = [Change::Create(web)];
        // Lost: the TXT create (phase 1; the record was then not sent), or the record create.
        for lose in [0, 1] {
            let p = losing(&[lose]);
            let stale = view(&p.inner).await;
            let expanded = registry().expand(&stale, &create);
            let first = apply_with_ownership(&p, &Zone::named(ZONE), &expanded).await;
            assert!(first.iter().any(|r| matches!(r, Err(e) if e.is_transient())), "lost {lose}: {first:?}");
            // The retry finds its own TXT (and record): done, not "already exists".
            let stale = if lose == 0 { stale } else { view(&p.inner).await };
            let mut stale = stale;
            if lose == 1 {
                // The worker's cache took the TXT (answered) but not the record (lost).
                stale.endpoints.retain(|e| e.dns_name != "web.example.org");
            }
            let results = retry(&p, &stale, &create).await;
            assert!(results.iter().all(|r| r == &Ok(Applied::Live)), "lost {lose}: {results:?}");
            let held = p.inner.held();
            assert_eq!(held.len(), 2, "lost {lose}: {held:?}");
            assert_eq!(held[0].2, vec![ownership_text("crd/ns/web")], "lost {lose}: one TXT, ours");
        }
    }

    #[tokio::test]
    async fn an_update_or_delete_applied_with_its_answer_lost_is_done_on_the_retry() {
        let p = losing(&[2, 3]);
        let web = ours("web.example.org", RecordType::A, &["192.0.2.1"], "crd/ns/web");
        let (_, results) = run(&p.inner, &[Change::Create(web.clone())]).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        *p.call.lock().unwrap() = 2;
        let stale = view(&p.inner).await;
        let held_web = stale.endpoints.iter().find(|e| e.dns_name == "web.example.org").cloned().unwrap();
        let moved = ours("web.example.org", RecordType::A, &["192.0.2.2"], "crd/ns/web");
        let update = [Change::Update { old: held_web.clone(), new: moved }];
        let expanded = registry().expand(&stale, &update);
        let first = apply_with_ownership(&p, &Zone::named(ZONE), &expanded).await;
        assert!(first.iter().all(|r| matches!(r, Err(e) if e.is_transient())), "{first:?}");
        assert!(retry(&p, &stale, &update).await.iter().all(|r| r == &Ok(Applied::Live)));
        assert!(p.inner.held().iter().any(|(_, _, t)| t == &vec!["192.0.2.2".to_string()]), "{:?}", p.inner.held());

        // The record delete is applied and its answer lost: the TXT removal waits for the retry.
        let stale = view(&p.inner).await;
        let held_web = stale.endpoints.iter().find(|e| e.dns_name == "web.example.org").cloned().unwrap();
        let delete = [Change::Delete(held_web)];
        let expanded = registry().expand(&stale, &delete);
        let first = apply_with_ownership(&p, &Zone::named(ZONE), &expanded).await;
        assert!(first.iter().all(|r| matches!(r, Err(e) if e.is_transient())), "{first:?}");
        assert_eq!(p.inner.held().len(), 1, "the TXT stays until its record is known gone");
        assert!(retry(&p, &stale, &delete).await.iter().all(|r| r == &Ok(Applied::Live)));
        assert_eq!(p.inner.held(), vec![], "record and TXT gone");
    }

    /// Only the very effect counts: a create refused because the RRset holds other values
    /// (somebody else's TXT, another address) stays refused.
    #[tokio::test]
    async fn a_refused_create_of_an_rrset_holding_other_values_stays_refused() {
        let p = Refusing::new(|_| false);
        let theirs = Endpoint::new("a-web.example.org", RecordType::TXT, vec![ownership_text("crd/ns/other")]);
        let direct = p.apply(&Zone::named(ZONE), &[Change::Create(theirs)]).await;
        assert!(direct[0].is_ok());
        let web = ours("web.example.org", RecordType::A, &["192.0.2.1"], "crd/ns/web");
        let empty = registry().view_in_zone(Vec::new(), ZONE);
        let expanded = registry().expand(&empty, &[Change::Create(web)]);
        let results = apply_with_ownership(&p, &Zone::named(ZONE), &expanded).await;
        assert!(results.iter().all(|r| matches!(r, Err(ProviderError::Rejected(_)))), "{results:?}");
        assert_eq!(p.held().len(), 1, "only their TXT: {:?}", p.held());
    }
}
