//! Applies expanded changes so that a record and its ownership TXT succeed or fail together.
//!
//! A record without its ownership TXT is one extdns later calls somebody else's
//! (`RecordExists`); an ownership TXT without its record is a claim nobody ever cleans up,
//! since the planner only sees records. Backends apply a batch change by change (or bisect
//! it), so sending a record and its TXT side by side lets one succeed while the other is
//! refused. Instead the batch goes out in three phases, each one provider call:
//!
//! 1. the ownership TXT creates and updates of records being created or updated;
//! 2. the data changes: creates and updates only where phase 1 accepted their TXT, and all
//!    deletes;
//! 3. the ownership TXT removals of records whose delete succeeded, and the rollback of every
//!    phase-1 TXT change whose records were all refused in phase 2 (a created TXT is deleted,
//!    an updated one gets its old value back).

use std::collections::BTreeMap;

use tracing::warn;

use super::provider::{Change, ChangeResult, Provider, ProviderError, Zone};
use super::registry::{Expanded, Role};

/// Applies `expanded` (from [`crate::dns::registry::TxtRegistry::expand`], or
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
/// - A rollback the backend refuses leaves the TXT in place (logged); its result stays `Ok`,
///   because the TXT is on the backend, and the record reports its own error.
pub async fn apply_with_ownership(provider: &dyn Provider, zone: &Zone, expanded: &[Expanded]) -> Vec<ChangeResult> {
    let mut results: Vec<Option<ChangeResult>> = vec![None; expanded.len()];
    let data_at: BTreeMap<usize, usize> = expanded
        .iter()
        .enumerate()
        .filter(|(_, e)| e.role == Role::Data)
        .map(|(pos, e)| (e.index, pos))
        .collect();
    let is_delete = |index: usize| {
        data_at.get(&index).is_some_and(|&pos| matches!(expanded[pos].change, Change::Delete(_)))
    };
    let backs = |e: &Expanded| -> Vec<usize> {
        match &e.role {
            Role::Ownership { backs } => backs.clone(),
            Role::Data => Vec::new(),
        }
    };
    // Ownership changes that go ahead of their records (the records are created or updated).
    let ahead: Vec<usize> = expanded
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.role, Role::Ownership { .. }) && !is_delete(e.index))
        .map(|(pos, _)| pos)
        .collect();

    // Phase 1: ownership TXTs first.
    let sent = apply_batch(provider, zone, &ahead, expanded).await;
    for (&pos, r) in ahead.iter().zip(sent) {
        results[pos] = Some(r);
    }

    // Phase 2: data changes whose TXT is in place.
    let mut blocked: BTreeMap<usize, ProviderError> = BTreeMap::new();
    for &pos in &ahead {
        if let Some(Err(e)) = &results[pos] {
            for index in backs(&expanded[pos]) {
                blocked.entry(index).or_insert_with(|| e.clone());
            }
        }
    }
    let mut data: Vec<usize> = Vec::new();
    for (&index, &pos) in &data_at {
        match blocked.get(&index) {
            Some(e) => results[pos] = Some(Err(e.clone())),
            None => data.push(pos),
        }
    }
    data.sort_unstable();
    let sent = apply_batch(provider, zone, &data, expanded).await;
    for (&pos, r) in data.iter().zip(sent) {
        results[pos] = Some(r);
    }
    let data_errors: BTreeMap<usize, ProviderError> = data_at
        .iter()
        .filter_map(|(&index, &pos)| Some((index, results[pos].as_ref()?.as_ref().err()?.clone())))
        .collect();

    // Phase 3: removals after their deletes, rollbacks after refused records.
    let mut last: Vec<(usize, Change)> = Vec::new();
    let mut rolled_back: BTreeMap<usize, ProviderError> = BTreeMap::new();
    for (pos, e) in expanded.iter().enumerate() {
        if e.role == Role::Data {
            continue;
        }
        let errors: Vec<ProviderError> = backs(e).iter().filter_map(|i| data_errors.get(i).cloned()).collect();
        if is_delete(e.index) {
            match errors.into_iter().next() {
                Some(err) => results[pos] = Some(Err(err)),
                None => last.push((pos, e.change.clone())),
            }
            continue;
        }
        let accepted = matches!(results[pos], Some(Ok(_)));
        let all_refused = errors.len() == backs(e).len();
        if accepted && all_refused {
            if let Some(err) = errors.into_iter().next() {
                rolled_back.insert(pos, err);
                last.push((pos, undo(&e.change)));
            }
        }
    }
    let changes: Vec<Change> = last.iter().map(|(_, c)| c.clone()).collect();
    let sent = apply_changes(provider, zone, &changes).await;
    for ((pos, change), r) in last.iter().zip(sent) {
        match rolled_back.remove(pos) {
            None => results[*pos] = Some(r),
            Some(data_err) => match r {
                Ok(_) => results[*pos] = Some(Err(data_err)),
                Err(e) => warn!(
                    zone = %zone.name,
                    record = %change.endpoint().key(),
                    error = %e,
                    "taking back an ownership TXT after its record was refused failed; the TXT stays"
                ),
            },
        }
    }

    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ProviderError::Rejected("the change was never sent".into()))))
        .collect()
}

/// The change that undoes an accepted `change`.
fn undo(change: &Change) -> Change {
    match change {
        Change::Create(e) => Change::Delete(e.clone()),
        Change::Update { old, new } => Change::Update { old: new.clone(), new: old.clone() },
        Change::Delete(e) => Change::Create(e.clone()),
    }
}

async fn apply_batch(provider: &dyn Provider, zone: &Zone, positions: &[usize], expanded: &[Expanded]) -> Vec<ChangeResult> {
    let changes: Vec<Change> = positions.iter().map(|&pos| expanded[pos].change.clone()).collect();
    apply_changes(provider, zone, &changes).await
}

/// One provider call (none for nothing), exactly one result per change.
async fn apply_changes(provider: &dyn Provider, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
    if changes.is_empty() {
        return Vec::new();
    }
    let mut results = provider.apply(zone, changes).await;
    results.truncate(changes.len());
    results.resize_with(changes.len(), || {
        Err(ProviderError::Rejected("the backend returned no result for this change".into()))
    });
    results
}
