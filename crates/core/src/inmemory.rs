//! A provider that keeps zones in memory. Used by tests, by `render --plan`, and as the store
//! behind the embedded DNS server. Behaves like a strict DNS API: creating an existing RRset or
//! deleting/updating one whose current data differs is rejected, so planner bugs show up here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use async_trait::async_trait;

use crate::endpoint::{normalize_name, Endpoint, RecordKey, RecordType};
use crate::provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};

#[derive(Default, Debug)]
struct State {
    /// Each record behind an `Arc`: the worker's cache of the zone shares them
    /// (`records_shared`, `held`), and the embedded server reads them in place.
    zones: BTreeMap<String, BTreeMap<RecordKey, Arc<Endpoint>>>,
    /// Bumped on every successful change (the embedded server's SOA serial).
    generation: u64,
    /// Bumped when the zone set changes (the embedded server rebuilds its zone list).
    zones_generation: u64,
    /// Every name strictly between a name holding records and the apex of its zone, with the
    /// number of such names below it: the names that exist without records of their own
    /// (RFC 4592 empty non-terminals), which the embedded server answers NODATA rather than
    /// NXDOMAIN. Kept as records come and go, so a query need not walk the zone; a flat zone
    /// (names one label below the apex) leaves it empty.
    below: HashMap<String, usize>,
}

impl State {
    /// The zone set changed: observers reload it, and the index of names is rebuilt.
    fn bump_zones(&mut self) {
        self.generation += 1;
        self.zones_generation += 1;
        let mut below = HashMap::new();
        for (zone, records) in &self.zones {
            let mut last: Option<&str> = None;
            // Keys order by name first: each name once.
            for key in records.keys() {
                if last != Some(key.dns_name.as_str()) {
                    count_ancestors(&mut below, zone, &key.dns_name, true);
                    last = Some(&key.dns_name);
                }
            }
        }
        self.below = below;
    }

    fn holds(&self, zone: &str, name: &str) -> bool {
        self.zones.get(zone).is_some_and(|records| at_name(records, name).next().is_some())
    }
}

/// Counts `name` in (or out of) every name strictly between it and `zone`'s apex.
fn count_ancestors(below: &mut HashMap<String, usize>, zone: &str, name: &str, added: bool) {
    let Some(inner) = name.strip_suffix(zone).and_then(|n| n.strip_suffix('.')) else { return };
    // Each dot of the part below the apex (one not escaped inside a label) starts an ancestor.
    let bytes = inner.as_bytes();
    for (i, _) in inner.match_indices('.') {
        if i > 0 && bytes[i - 1] == b'\\' {
            continue;
        }
        let ancestor = &name[i + 1..];
        if added {
            *below.entry(ancestor.to_string()).or_default() += 1;
        } else if let Some(count) = below.get_mut(ancestor) {
            *count -= 1;
            if *count == 0 {
                below.remove(ancestor);
            }
        }
    }
}

/// A consistent read of the store, under one lock, for answering DNS queries from it.
pub struct StoreView<'a> {
    st: RwLockReadGuard<'a, State>,
}

impl StoreView<'_> {
    pub fn generation(&self) -> u64 {
        self.st.generation
    }

    pub fn zones_generation(&self) -> u64 {
        self.st.zones_generation
    }

    pub fn zone_names(&self) -> impl Iterator<Item = &str> {
        self.st.zones.keys().map(String::as_str)
    }

    /// The records at exactly `name` (normalised) in `zone`.
    pub fn at<'a>(&'a self, zone: &str, name: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.st.zones.get(zone).into_iter().flat_map(move |records| at_name(records, name)).map(|e| &**e)
    }

    /// True when names below `name` in its zone hold records (whether or not it holds any).
    pub fn has_names_below(&self, name: &str) -> bool {
        self.st.below.contains_key(name)
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

    pub fn generation(&self) -> u64 {
        self.state.read().unwrap_or_else(|e| e.into_inner()).generation
    }

    /// Reads the store under one lock until the view is dropped; writes wait meanwhile.
    pub fn view(&self) -> StoreView<'_> {
        StoreView { st: self.state.read().unwrap_or_else(|e| e.into_inner()) }
    }

    /// Inserts a record directly, bypassing ownership: used to pre-seed zones in tests.
    pub fn seed(&self, ep: Endpoint) -> Result<(), ProviderError> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let zone = zone_of(&st, &ep.dns_name)?;
        let name = ep.dns_name.clone();
        let held = st.holds(&zone, &name);
        st.zones.entry(zone.clone()).or_default().insert(ep.key(), Arc::new(strip(ep)));
        if !held {
            count_ancestors(&mut st.below, &zone, &name, true);
        }
        st.generation += 1;
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

    async fn records_shared(&self, zone: &Zone) -> Result<Vec<Arc<Endpoint>>, ProviderError> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.zones
            .get(&zone.name)
            .map(|z| z.values().cloned().collect())
            .ok_or_else(|| ProviderError::ZoneNotFound(zone.name.clone()))
    }

    fn held(&self, zone: &Zone, key: &RecordKey) -> Option<Arc<Endpoint>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.zones.get(&zone.name)?.get(key).cloned()
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        // The names the batch touches, and whether each held records before it.
        let mut names: Vec<&str> = changes
            .iter()
            .flat_map(|c| match c {
                Change::Create(e) | Change::Delete(e) => [Some(e.dns_name.as_str()), None],
                Change::Update { old, new } => [Some(old.dns_name.as_str()), Some(new.dns_name.as_str())],
            })
            .flatten()
            .collect();
        names.sort_unstable();
        names.dedup();
        let held: Vec<bool> = names.iter().map(|n| st.holds(&zone.name, n)).collect();
        let results: Vec<ChangeResult> =
            changes.iter().map(|c| Self::apply_one(&mut st, &zone.name, c).map(|()| Applied::Live)).collect();
        if results.iter().any(Result::is_ok) {
            st.generation += 1;
            for (name, held) in names.into_iter().zip(held) {
                let holds = st.holds(&zone.name, name);
                if holds != held {
                    count_ancestors(&mut st.below, &zone.name, name, holds);
                }
            }
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

    /// The index of names with records below them follows creations, updates and deletions
    /// batch by batch, stops at each zone's apex, and equals one rebuilt from scratch.
    #[tokio::test]
    async fn names_below_follow_the_records() {
        let p = InMemoryProvider::new(["example.org", "sub.example.org"]);
        let (zone, sub) = (Zone::named("example.org"), Zone::named("sub.example.org"));
        let below = |p: &InMemoryProvider, names: &[&str]| -> Vec<bool> {
            let v = p.view();
            names.iter().map(|n| v.has_names_below(n)).collect()
        };
        let names = [
            "example.org",
            "c.example.org",
            "b.c.example.org",
            "x.b.c.example.org",
            "sub.example.org",
            "r.sub.example.org",
        ];
        let r = p.apply(&zone, &[Change::Create(a("x.b.c.example.org")), Change::Create(a("y.c.example.org"))]).await;
        assert!(r.iter().all(Result::is_ok), "{r:?}");
        // A second record at a name counts it once.
        let r = p
            .apply(
                &zone,
                &[
                    Change::Create(cname("z.y.c.example.org")),
                    Change::Create(Endpoint::new("x.b.c.example.org", RecordType::TXT, vec!["t".into()])),
                ],
            )
            .await;
        assert!(r.iter().all(Result::is_ok), "{r:?}");
        assert!(p.apply(&sub, &[Change::Create(a("q.r.sub.example.org"))]).await[0].is_ok());
        assert_eq!(below(&p, &names), [false, true, true, false, false, true]);
        let rebuilt = |p: &InMemoryProvider| {
            let before = p.state.read().unwrap().below.clone();
            p.add_zone("other.test");
            let after = p.state.read().unwrap().below.clone();
            p.set_zones(["example.org", "sub.example.org"]);
            assert_eq!(before, after, "kept as records change = rebuilt from scratch");
        };
        rebuilt(&p);
        // The TXT leaves, the A stays: x still holds records.
        let txt = Endpoint::new("x.b.c.example.org", RecordType::TXT, vec!["t".into()]);
        assert!(p.apply(&zone, &[Change::Delete(txt)]).await[0].is_ok());
        assert_eq!(below(&p, &names), [false, true, true, false, false, true]);
        // A rejected change counts nothing.
        assert!(p.apply(&zone, &[Change::Delete(a("w.v.example.org"))]).await[0].is_err());
        assert!(!p.view().has_names_below("v.example.org"));
        assert!(p.apply(&zone, &[Change::Delete(a("x.b.c.example.org"))]).await[0].is_ok());
        assert_eq!(below(&p, &names), [false, true, false, false, false, true]);
        rebuilt(&p);
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
