//! The labels of a record (owner, resource, nonce): a handful of pairs. Every record is held
//! and cloned several times (router, worker, zone cache, plans), so they are a
//! [`VecMap`](crate::vec_map::VecMap), not a `BTreeMap` (see there why).

/// Sorted by key, keys unique; compares, hashes and serializes like the map it stands for.
pub type Labels = crate::vec_map::VecMap<String, String>;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
