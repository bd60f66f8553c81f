//! A provider that keeps zones in memory. Used by tests, by `render --plan`, and as the store
//! behind the embedded DNS server. Behaves like a strict DNS API: creating an existing RRset or
//! deleting/updating one whose current data differs is rejected, so planner bugs show up here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::endpoint::{normalize_name, Endpoint, RecordKey, RecordType};
use crate::provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};

#[derive(Default, Debug)]
struct State {
    /// Each record behind an `Arc`: an observer (the embedded server) takes the records of
    /// the names that changed without copying them, and a burst of changes no longer holds
    /// the zone twice while the observer catches up.
    zones: BTreeMap<String, BTreeMap<RecordKey, Arc<Endpoint>>>,
    /// Bumped on every successful change; lets observers (the embedded server) cache answers.
    generation: u64,
    /// The names changed at each generation, oldest first: an observer updates what changed
    /// since the generation it has instead of reloading every zone (at 50,000 records a reload
    /// per change cost half a second).
    log: VecDeque<(u64, String)>,
    /// Changes up to this generation may be missing from `log` (trimmed, or the zone set
    /// changed): an observer older than it reloads everything.
    log_floor: u64,
}

/// Changes kept for observers; one that falls further behind reloads everything.
const MAX_CHANGE_LOG: usize = 1 << 16;

/// What changed in a store since a generation, from [`InMemoryProvider::changes_since`].
#[derive(Debug)]
pub struct StoreChanges {
    pub generation: u64,
    /// The names changed since, with all records now at each of them (empty: none left);
    /// `None` when the observer must reload everything. The records are the store's own.
    pub names: Option<Vec<(String, Vec<Arc<Endpoint>>)>>,
}

impl State {
    /// Records that `names` changed at a new generation.
    fn bump<I: IntoIterator<Item = String>>(&mut self, names: I) {
        self.generation += 1;
        let generation = self.generation;
        self.log.extend(names.into_iter().map(|n| (generation, n)));
        while self.log.len() > MAX_CHANGE_LOG {
            if let Some((g, _)) = self.log.pop_front() {
                self.log_floor = self.log_floor.max(g);
            }
        }
    }

    /// The zone set changed: observers reload everything.
    fn bump_zones(&mut self) {
        self.generation += 1;
        self.log.clear();
        self.log_floor = self.generation;
    }
}

/// The records at exactly `name`: keys order by name first, so they are one range of the map
/// and a lookup costs O(log n), not a walk of the zone (that walk, once per created record,
/// made loading 100,000 records quadratic).
fn at_name<'a>(
    records: &'a BTreeMap<RecordKey, Arc<Endpoint>>,
    name: &'a str,
) -> impl Iterator<Item = &'a Arc<Endpoint>> + 'a {
    let from = RecordKey { dns_name: name.to_string(), set_identifier: String::new(), record_type: RecordType::A };
    records.range(from..).take_while(move |(k, _)| k.dns_name == name).map(|(_, e)| e)
}

/// Cheap to clone: clones share the same zones.
#[derive(Clone, Default, Debug)]
pub struct InMemoryProvider {
    state: Arc<RwLock<State>>,
}

impl InMemoryProvider {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(zones: I) -> Self {
        let p = InMemoryProvider::default();
        for z in zones {
            p.add_zone(z.as_ref());
        }
        p
    }

    pub fn add_zone(&self, name: &str) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let name = normalize_name(name);
        if let std::collections::btree_map::Entry::Vacant(slot) = st.zones.entry(name) {
            slot.insert(BTreeMap::new());
            st.bump_zones();
        }
    }

    /// Removes zones not in `names` and adds the missing ones.
    pub fn set_zones<I: IntoIterator<Item = S>, S: AsRef<str>>(&self, names: I) {
        let wanted: Vec<String> = names.into_iter().map(|n| normalize_name(n.as_ref())).collect();
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let before = st.zones.len();
        st.zones.retain(|z, _| wanted.contains(z));
        let mut changed = st.zones.len() != before;
        for w in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = st.zones.entry(w) {
                slot.insert(BTreeMap::new());
                changed = true;
            }
        }
        if changed {
            st.bump_zones();
        }
    }

    pub fn zone_names(&self) -> Vec<String> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).zones.keys().cloned().collect()
    }

    /// All RRsets at `name` (normalised) in the zone that holds it, with the zone name.
    pub fn lookup(&self, name: &str) -> Option<(String, Vec<Endpoint>)> {
        let name = normalize_name(name);
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let zone = st.zones.keys().filter(|z| Zone::named(z).contains(&name)).max_by_key(|z| z.len())?.clone();
        let recs = at_name(&st.zones[&zone], &name).map(|e| Endpoint::clone(e)).collect();
        Some((zone, recs))
    }

    /// True when some record exists at or below `name` in its zone (for NXDOMAIN vs NODATA).
    pub fn name_exists(&self, zone: &str, name: &str) -> bool {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let suffix = format!(".{name}");
        st.zones.get(zone).is_some_and(|z| z.values().any(|e| e.dns_name == name || e.dns_name.ends_with(&suffix)))
    }

    pub fn generation(&self) -> u64 {
        self.state.read().unwrap_or_else(|e| e.into_inner()).generation
    }

    /// The names changed after `generation`, each with the records it holds now, read under
    /// one lock so that the answer is one consistent state.
    pub fn changes_since(&self, generation: u64) -> StoreChanges {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        if generation < st.log_floor || generation > st.generation {
            return StoreChanges { generation: st.generation, names: None };
        }
        // The log is in generation order: the changes after `generation` are its tail.
        let start = st.log.partition_point(|(g, _)| *g <= generation);
        let mut names: Vec<&str> = st.log.range(start..).map(|(_, n)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let names = names
            .into_iter()
            .map(|name| {
                let records = zone_of(&st, name)
                    .ok()
                    .and_then(|zone| st.zones.get(&zone))
                    .map(|records| at_name(records, name).cloned().collect())
                    .unwrap_or_default();
                (name.to_string(), records)
            })
            .collect();
        StoreChanges { generation: st.generation, names: Some(names) }
    }

    /// Inserts a record directly, bypassing ownership: used to pre-seed zones in tests.
    pub fn seed(&self, ep: Endpoint) -> Result<(), ProviderError> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let zone = zone_of(&st, &ep.dns_name)?;
        let name = ep.dns_name.clone();
        st.zones.entry(zone).or_default().insert(ep.key(), Arc::new(strip(ep)));
        st.bump([name]);
        Ok(())
    }

    /// Every record, shared with the store (no copy of the zone).
    pub fn all_records(&self) -> Vec<Arc<Endpoint>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.zones.values().flat_map(|z| z.values().cloned()).collect()
    }

    fn apply_one(st: &mut State, zone: &str, change: &Change) -> Result<(), ProviderError> {
        let records = st.zones.get_mut(zone).ok_or_else(|| ProviderError::ZoneNotFound(zone.to_string()))?;
        let in_zone = |e: &Endpoint| {
            if Zone::named(zone).contains(&e.dns_name) {
                Ok(())
            } else {
                Err(ProviderError::Rejected(format!("{} is not in zone {zone}", e.dns_name)))
            }
        };
        match change {
            Change::Create(e) => {
                in_zone(e)?;
                if records.contains_key(&e.key()) {
                    return Err(ProviderError::Rejected(format!("{} already exists", e.key())));
                }
                let cname_clash = at_name(records, &e.dns_name).any(|r| {
                    r.set_identifier == e.set_identifier
                        && (r.record_type == RecordType::CNAME) != (e.record_type == RecordType::CNAME)
                });
                if cname_clash {
                    return Err(ProviderError::Rejected(format!(
                        "{}: a CNAME cannot coexist with other data",
                        e.key()
                    )));
                }
                records.insert(e.key(), Arc::new(strip(e.clone())));
            }
            Change::Update { old, new } => {
                in_zone(new)?;
                match records.get(&old.key()) {
                    Some(cur) if cur.targets == old.targets => {}
                    Some(_) => {
                        return Err(ProviderError::Rejected(format!(
                            "{}: current values differ from the update's old values",
                            old.key()
                        )))
                    }
                    None => return Err(ProviderError::Rejected(format!("{} does not exist", old.key()))),
                }
                records.remove(&old.key());
                records.insert(new.key(), Arc::new(strip(new.clone())));
            }
            Change::Delete(e) => {
                if records.remove(&e.key()).is_none() {
                    return Err(ProviderError::Rejected(format!("{} does not exist", e.key())));
                }
            }
        }
        Ok(())
    }
}

/// Providers store data, not our bookkeeping labels.
fn strip(mut e: Endpoint) -> Endpoint {
    e.labels.clear();
    e
}

fn zone_of(st: &State, name: &str) -> Result<String, ProviderError> {
    st.zones
        .keys()
        .filter(|z| Zone::named(z).contains(name))
        .max_by_key(|z| z.len())
        .cloned()
        .ok_or_else(|| ProviderError::ZoneNotFound(format!("no zone holds {name}")))
}

#[async_trait]
impl Provider for InMemoryProvider {
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        Ok(self.zone_names().iter().map(|z| Zone::named(z)).collect())
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.zones
            .get(&zone.name)
            .map(|z| z.values().map(|e| Endpoint::clone(e)).collect())
            .ok_or_else(|| ProviderError::ZoneNotFound(zone.name.clone()))
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let results: Vec<ChangeResult> =
            changes.iter().map(|c| Self::apply_one(&mut st, &zone.name, c).map(|()| Applied::Live)).collect();
        let changed: Vec<String> = changes
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .flat_map(|(c, _)| match c {
                Change::Create(e) | Change::Delete(e) => vec![e.dns_name.clone()],
                Change::Update { old, new } => vec![old.dns_name.clone(), new.dns_name.clone()],
            })
            .collect();
        if !changed.is_empty() {
            st.bump(changed);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str) -> Endpoint {
        Endpoint::new(name, RecordType::A, vec!["192.0.2.1".into()])
    }

    fn cname(name: &str) -> Endpoint {
        Endpoint::new(name, RecordType::CNAME, vec!["target.example.org".into()])
    }

    #[tokio::test]
    async fn cname_clash_is_found_among_neighbouring_names_only() {
        let p = InMemoryProvider::new(["example.com"]);
        let zone = Zone::named("example.com");
        // Names that sort right before and after "www": none of them clashes with its CNAME.
        for n in ["ww.example.com", "www-0.example.com", "www0.example.com", "wwx.example.com", "a.www.example.com"] {
            p.seed(a(n)).expect("seed");
        }
        let mut with_id = a("www.example.com");
        with_id.set_identifier = "eu".into();
        p.seed(with_id).expect("seed");
        let r = p.apply(&zone, &[Change::Create(cname("www.example.com"))]).await;
        assert!(r[0].is_ok(), "{r:?}");
        // An A at the same name and set identifier does clash.
        let r = p.apply(&zone, &[Change::Create(a("www.example.com"))]).await;
        assert!(matches!(&r[0], Err(ProviderError::Rejected(m)) if m.contains("CNAME")), "{r:?}");
        let (z, recs) = p.lookup("www.example.com").expect("zone");
        assert_eq!(z, "example.com");
        let mut types: Vec<(RecordType, String)> =
            recs.iter().map(|e| (e.record_type, e.set_identifier.clone())).collect();
        types.sort();
        assert_eq!(types, [(RecordType::A, "eu".to_string()), (RecordType::CNAME, String::new())]);
    }
}
