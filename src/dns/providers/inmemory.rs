//! A provider that keeps zones in memory. Used by tests, by `render --plan`, and as the store
//! behind the embedded DNS server. Behaves like a strict DNS API: creating an existing RRset or
//! deleting/updating one whose current data differs is rejected, so planner bugs show up here.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::dns::endpoint::{normalize_name, Endpoint, RecordKey, RecordType};
use crate::dns::provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};

#[derive(Default, Debug)]
struct State {
    zones: BTreeMap<String, BTreeMap<RecordKey, Endpoint>>,
    /// Bumped on every successful change; lets observers (the embedded server) cache answers.
    generation: u64,
}

/// The records at exactly `name`: keys order by name first, so they are one range of the map
/// and a lookup costs O(log n), not a walk of the zone (that walk, once per created record,
/// made loading 100,000 records quadratic).
fn at_name<'a>(records: &'a BTreeMap<RecordKey, Endpoint>, name: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
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
        st.zones.entry(normalize_name(name)).or_default();
    }

    /// Removes zones not in `names` and adds the missing ones.
    pub fn set_zones<I: IntoIterator<Item = S>, S: AsRef<str>>(&self, names: I) {
        let wanted: Vec<String> = names.into_iter().map(|n| normalize_name(n.as_ref())).collect();
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.zones.retain(|z, _| wanted.contains(z));
        for w in wanted {
            st.zones.entry(w).or_default();
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
        let recs = at_name(&st.zones[&zone], &name).cloned().collect();
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

    /// Inserts a record directly, bypassing ownership: used to pre-seed zones in tests.
    pub fn seed(&self, ep: Endpoint) -> Result<(), ProviderError> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let zone = zone_of(&st, &ep.dns_name)?;
        st.zones.entry(zone).or_default().insert(ep.key(), strip(ep));
        st.generation += 1;
        Ok(())
    }

    pub fn all_records(&self) -> Vec<Endpoint> {
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
                records.insert(e.key(), strip(e.clone()));
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
                records.insert(new.key(), strip(new.clone()));
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
            .map(|z| z.values().cloned().collect())
            .ok_or_else(|| ProviderError::ZoneNotFound(zone.name.clone()))
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let results: Vec<ChangeResult> =
            changes.iter().map(|c| Self::apply_one(&mut st, &zone.name, c).map(|()| Applied::Live)).collect();
        if results.iter().any(|r| r.is_ok()) {
            st.generation += 1;
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
