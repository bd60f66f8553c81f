//! The labels of a record (owner, resource, nonce): a handful of pairs, kept in a sorted
//! `Vec`. A `BTreeMap` allocates a node of eleven slots (544 bytes) for the first pair; every
//! record is held and cloned several times (router, worker, zone cache, plans), and at 10,000
//! records those nodes were the largest part of the operator's heap.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Sorted by key, keys unique; compares, hashes and serializes like the map it stands for.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key`, returning the value it replaced.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0.iter().cloned().collect()
    }
}

impl Extend<(String, String)> for Labels {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut l = Labels::new();
        l.extend(iter);
        l.0.shrink_to_fit();
        l
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(m: BTreeMap<String, String>) -> Self {
        // Already sorted and unique.
        Labels(m.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (String, String)>, fn(&'a (String, String)) -> Self::Item>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = String;
    fn index(&self, key: &str) -> &String {
        self.get(key).unwrap_or_else(|| panic!("no label {key:?}"))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(d).map(Labels::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_the_sorted_map_it_replaces() {
        let mut l = Labels::new();
        assert_eq!(l.insert("resource".into(), "service/a/b".into()), None);
        assert_eq!(l.insert("owner".into(), "x".into()), None);
        assert_eq!(l.insert("owner".into(), "y".into()).as_deref(), Some("x"));
        assert_eq!(l.keys().map(String::as_str).collect::<Vec<_>>(), ["owner", "resource"]);
        assert_eq!(l.get("owner").map(String::as_str), Some("y"));
        assert_eq!(&l["resource"], "service/a/b");
        assert!(l.contains_key("resource") && !l.contains_key("nonce"));
        let map: BTreeMap<String, String> =
            [("owner".into(), "y".into()), ("resource".into(), "service/a/b".into())].into();
        assert_eq!(l, Labels::from(map.clone()));
        assert_eq!(l.to_map(), map);
        assert_eq!(serde_json::to_string(&l).unwrap(), serde_json::to_string(&map).unwrap());
        assert_eq!(serde_json::from_str::<Labels>(r#"{"resource":"service/a/b","owner":"y"}"#).unwrap(), l);
        assert_eq!(format!("{l:?}"), format!("{map:?}"));
        let collected: Labels =
            [("b".to_string(), "1".to_string()), ("a".into(), "2".into()), ("b".into(), "3".into())]
                .into_iter()
                .collect();
        assert_eq!(collected.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(), ["a=2", "b=3"]);
        assert_eq!(l.remove("owner").as_deref(), Some("y"));
        assert_eq!(l.len(), 1);
        l.clear();
        assert!(l.is_empty());
    }
}
