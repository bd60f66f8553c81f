//! Which Gateway API routes a Gateway or a Namespace change concerns, so that such a change
//! re-renders only those routes rather than every route in the cluster.

use std::collections::{BTreeSet, HashMap, HashSet};

/// `(namespace, name)`.
pub type Key = (String, String);

/// Routes of one kind by the Gateways they name and by namespace. Filled by the route
/// reconciler (before it reads any Gateway, so that a Gateway change it did not see yet is
/// bound to find it here); entries of deleted routes are dropped when a lookup finds them
/// gone.
#[derive(Debug, Default)]
pub struct RouteIndex {
    by_gateway: HashMap<Key, HashSet<Key>>,
    gateways_of: HashMap<Key, BTreeSet<Key>>,
    by_namespace: HashMap<String, HashSet<String>>,
}

impl RouteIndex {
    /// Records that `route` names exactly `gateways`.
    pub fn set(&mut self, route: &Key, gateways: BTreeSet<Key>) {
        if self.gateways_of.get(route) == Some(&gateways) {
            return;
        }
        self.unlink(route);
        for g in &gateways {
            self.by_gateway.entry(g.clone()).or_default().insert(route.clone());
        }
        self.by_namespace.entry(route.0.clone()).or_default().insert(route.1.clone());
        self.gateways_of.insert(route.clone(), gateways);
    }

    pub fn remove(&mut self, route: &Key) {
        self.unlink(route);
        if let Some(names) = self.by_namespace.get_mut(&route.0) {
            names.remove(&route.1);
            if names.is_empty() {
                self.by_namespace.remove(&route.0);
            }
        }
    }

    fn unlink(&mut self, route: &Key) {
        for g in self.gateways_of.remove(route).unwrap_or_default() {
            if let Some(routes) = self.by_gateway.get_mut(&g) {
                routes.remove(route);
                if routes.is_empty() {
                    self.by_gateway.remove(&g);
                }
            }
        }
    }

    /// Routes that name the Gateway `gateway`.
    pub fn routes_of_gateway(&self, gateway: &Key) -> Vec<Key> {
        self.by_gateway.get(gateway).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Routes in the namespace `ns`.
    pub fn routes_in_namespace(&self, ns: &str) -> Vec<Key> {
        self.by_namespace.get(ns).map(|s| s.iter().map(|n| (ns.to_string(), n.clone())).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(ns: &str, n: &str) -> Key {
        (ns.into(), n.into())
    }

    #[test]
    fn finds_routes_by_gateway_and_namespace_and_forgets_old_links() {
        let mut idx = RouteIndex::default();
        idx.set(&k("a", "r1"), [k("infra", "gw1"), k("infra", "gw2")].into());
        idx.set(&k("b", "r2"), [k("infra", "gw1")].into());
        let mut of_gw1 = idx.routes_of_gateway(&k("infra", "gw1"));
        of_gw1.sort();
        assert_eq!(of_gw1, vec![k("a", "r1"), k("b", "r2")]);
        assert_eq!(idx.routes_in_namespace("a"), vec![k("a", "r1")]);

        idx.set(&k("a", "r1"), [k("infra", "gw3")].into());
        assert_eq!(idx.routes_of_gateway(&k("infra", "gw1")), vec![k("b", "r2")]);
        assert!(idx.routes_of_gateway(&k("infra", "gw2")).is_empty());
        assert_eq!(idx.routes_of_gateway(&k("infra", "gw3")), vec![k("a", "r1")]);

        idx.remove(&k("a", "r1"));
        assert!(idx.routes_of_gateway(&k("infra", "gw3")).is_empty());
        assert!(idx.routes_in_namespace("a").is_empty());
        assert!(idx.by_gateway.len() == 1 && idx.gateways_of.len() == 1 && idx.by_namespace.len() == 1);
    }
}
