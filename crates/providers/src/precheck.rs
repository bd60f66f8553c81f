//! Compare-before-write for HTTP APIs that overwrite blindly. PowerDNS's `REPLACE` and a
//! webhook's `POST /records` take a change as an order, not as "if the record still looks like
//! this": a create would overwrite an RRset somebody else wrote, a stale update would clobber a
//! newer value. RFC 2136 has prerequisites and Route53 checks the old values itself; for these
//! backends the provider reads the zone right before writing and checks each change against it
//! here. What the server changes between that read and the write is not caught: the window is
//! one request long.

use std::collections::{BTreeMap, BTreeSet};

use extdns_core::endpoint::{Endpoint, RecordKey};
use extdns_core::provider::Change;

/// Checks `changes` in order against `held` (the zone as just listed, names normalised), each
/// change seeing the effect of the earlier accepted ones. Returns one verdict per change: `Ok`
/// or the reason it must be refused. Names are compared in lower case, TTLs only where the
/// change states one (`None` means the provider default, whatever it is).
pub fn check_changes(held: &[Endpoint], changes: &[Change], default_ttl: u32) -> Vec<Result<(), String>> {
    let mut state: BTreeMap<RecordKey, Endpoint> = held.iter().map(|e| (key_of(e), e.clone())).collect();
    changes
        .iter()
        .map(|c| {
            let verdict = check_one(&state, c, default_ttl);
            if verdict.is_ok() {
                match c {
                    Change::Create(e) => {
                        state.insert(key_of(e), e.clone());
                    }
                    Change::Update { old, new } => {
                        state.remove(&key_of(old));
                        state.insert(key_of(new), new.clone());
                    }
                    Change::Delete(e) => {
                        state.remove(&key_of(e));
                    }
                }
            }
            verdict
        })
        .collect()
}

fn key_of(e: &Endpoint) -> RecordKey {
    let mut k = e.key();
    k.dns_name = extdns_core::endpoint::normalize_name(&k.dns_name);
    k
}

fn check_one(state: &BTreeMap<RecordKey, Endpoint>, change: &Change, default_ttl: u32) -> Result<(), String> {
    match change {
        Change::Create(e) => match state.get(&key_of(e)) {
            Some(h) => Err(format!("{}: the RRset exists already, holding {:?}", key_of(e), h.targets)),
            None => Ok(()),
        },
        Change::Update { old, new } => {
            held_as(state, old, default_ttl, "update")?;
            if key_of(old) != key_of(new) {
                if let Some(h) = state.get(&key_of(new)) {
                    return Err(format!("{}: the RRset exists already, holding {:?}", key_of(new), h.targets));
                }
            }
            Ok(())
        }
        Change::Delete(e) => held_as(state, e, default_ttl, "delete"),
    }
}

/// The RRset is held with exactly the values (and TTL, when stated) the change assumes.
fn held_as(state: &BTreeMap<RecordKey, Endpoint>, e: &Endpoint, default_ttl: u32, verb: &str) -> Result<(), String> {
    let Some(h) = state.get(&key_of(e)) else {
        return Err(format!("{}: cannot {verb}, the RRset does not exist", key_of(e)));
    };
    let mut want = e.targets.clone();
    want.sort();
    let mut have = h.targets.clone();
    have.sort();
    if want != have {
        return Err(format!(
            "{}: cannot {verb}, the RRset holds {have:?}, not {want:?} (changed meanwhile)",
            key_of(e)
        ));
    }
    if e.ttl.is_some() && e.ttl.unwrap_or(default_ttl) != h.ttl.unwrap_or(default_ttl) {
        return Err(format!(
            "{}: cannot {verb}, the RRset has TTL {}, not {} (changed meanwhile)",
            key_of(e),
            h.ttl.unwrap_or(default_ttl),
            e.ttl.unwrap_or(default_ttl)
        ));
    }
    Ok(())
}

/// Cuts `items` into consecutive batches in order, starting a new batch when an item has a key
/// an earlier item of the current batch has: two changes of one RRset (or name) in one request
/// would be applied in an order the API does not promise.
pub fn batches_without_repeats<T, K: Ord>(
    items: impl IntoIterator<Item = T>,
    keys: impl Fn(&T) -> Vec<K>,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut seen: BTreeSet<K> = BTreeSet::new();
    for item in items {
        let k = keys(&item);
        if out.is_empty() || k.iter().any(|x| seen.contains(x)) {
            out.push(Vec::new());
            seen.clear();
        }
        seen.extend(k);
        if let Some(last) = out.last_mut() {
            last.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use extdns_core::RecordType;

    fn a(name: &str, ip: &str) -> Endpoint {
        Endpoint::new(name, RecordType::A, vec![ip.into()]).with_ttl(300)
    }

    #[test]
    fn creates_updates_and_deletes_are_checked_in_order() {
        let held = vec![a("x.example.org", "192.0.2.1")];
        let changes = vec![
            Change::Create(a("X.example.org", "192.0.2.9")),
            Change::Update { old: a("x.example.org", "192.0.2.7"), new: a("x.example.org", "192.0.2.8") },
            Change::Delete(a("x.example.org", "192.0.2.1")),
            // Sees the delete above.
            Change::Create(a("x.example.org", "192.0.2.2")),
            Change::Delete(a("gone.example.org", "192.0.2.3")),
            Change::Update { old: a("x.example.org", "192.0.2.2"), new: a("x.example.org", "192.0.2.4") },
        ];
        let v = check_changes(&held, &changes, 300);
        assert!(v[0].as_ref().unwrap_err().contains("exists already"), "{v:?}");
        assert!(v[1].as_ref().unwrap_err().contains("changed meanwhile"), "{v:?}");
        assert_eq!(v[2], Ok(()));
        assert_eq!(v[3], Ok(()));
        assert!(v[4].as_ref().unwrap_err().contains("does not exist"), "{v:?}");
        assert_eq!(v[5], Ok(()));
    }

    #[test]
    fn a_stated_ttl_must_match_and_an_unstated_one_means_the_default() {
        let held = vec![a("x.example.org", "192.0.2.1")];
        let stale = Change::Delete(a("x.example.org", "192.0.2.1").with_ttl(60));
        assert!(check_changes(&held, &[stale], 300)[0].is_err());
        let mut unstated = a("x.example.org", "192.0.2.1");
        unstated.ttl = None;
        assert_eq!(check_changes(&held, &[Change::Delete(unstated)], 300)[0], Ok(()));
    }
}
