//! Which namespace holds a part of the name tree at a shared provider.
//!
//! A name is more than its spelling. Whoever publishes at `web.example.com` is answered for
//! the names below it too: a TXT at `_acme-challenge.web.example.com` gets a DNS-01
//! certificate for `web.example.com`, an NS there delegates everything below, and a CNAME at
//! `a-web.example.com` (the ownership TXT's name of `web`'s A record) keeps that TXT from
//! being written. So at a provider several namespaces share, a namespace's claim at a name
//! competes with other namespaces' claims at the names above and below it (strictly below
//! the zone apex, which the platform holds) and at the ownership-TXT names that stand for
//! it. Of two related claims of different namespaces, the one whose records the zone holds
//! wins, else the older claim; the other is refused naming the holder.

use crate::endpoint::RecordType;
use crate::plan::Claimant;

/// A namespace's claim at one name: its oldest claimant there, and whether the zone holds
/// records of ours published for that namespace at the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameClaim {
    pub name: String,
    pub claimant: Claimant,
    pub published: bool,
}

/// Whether `a` holds over `b`: published records first (a redeploy or a restore, which
/// change creation times, keeps a name), then the older claim.
fn beats(a: &NameClaim, b: &NameClaim) -> bool {
    match (a.published, b.published) {
        (true, false) => true,
        (false, true) => false,
        _ => a.claimant < b.claimant,
    }
}

/// The claim of another namespace, among the claims at names related to `claim`'s, that
/// holds over it: the strongest such, if any.
pub fn held_over<'a>(claim: &NameClaim, related: &'a [NameClaim]) -> Option<&'a NameClaim> {
    related.iter().filter(|r| r.claimant.namespace != claim.claimant.namespace && beats(r, claim)).fold(
        None,
        |best: Option<&NameClaim>, r| match best {
            Some(b) if !beats(r, b) => Some(b),
            _ => Some(r),
        },
    )
}

/// The names strictly above `name` and strictly below `apex`, nearest first. Empty when
/// `name` is not below `apex`.
pub fn ancestors_below<'a>(name: &'a str, apex: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let below_apex = name.len() > apex.len() && name.ends_with(apex) && name[..name.len() - apex.len()].ends_with('.');
    let mut rest = if below_apex { Some(name) } else { None };
    std::iter::from_fn(move || {
        let current = rest?;
        let parent = current.split_once('.').map(|(_, p)| p)?;
        if parent.len() <= apex.len() {
            rest = None;
            return None;
        }
        rest = Some(parent);
        Some(parent)
    })
}

/// `name` with its labels reversed and a final dot ("web.example.com" →
/// "com.example.web."): the names below a name are then the keys starting with its key.
pub fn tree_key(name: &str) -> String {
    let mut key: String = name.rsplit('.').flat_map(|l| [l, "."]).collect();
    if name.is_empty() {
        key.clear();
    }
    key
}

/// Types a ClusterDNSProvider publishes nowhere at a zone apex: the apex's NS records are
/// the zone's delegation and its MX the domain's mail, both the platform's, never one
/// tenant's.
pub fn apex_reserved(record_type: RecordType) -> bool {
    matches!(record_type, RecordType::NS | RecordType::MX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, ns: &str, created: &str, published: bool) -> NameClaim {
        NameClaim {
            name: name.into(),
            claimant: Claimant { created: created.into(), namespace: ns.into(), name: "obj".into() },
            published,
        }
    }

    #[test]
    fn ancestors_stop_above_the_apex() {
        let a: Vec<&str> = ancestors_below("_acme-challenge.web.apps.example.com", "example.com").collect();
        assert_eq!(a, vec!["web.apps.example.com", "apps.example.com"]);
        assert_eq!(ancestors_below("web.example.com", "example.com").count(), 0);
        assert_eq!(ancestors_below("example.com", "example.com").count(), 0);
        assert_eq!(ancestors_below("x.badexample.com", "example.com").count(), 0, "a label boundary");
    }

    #[test]
    fn tree_keys_put_names_below_a_name_in_its_range() {
        assert_eq!(tree_key("web.example.com"), "com.example.web.");
        assert!(tree_key("_acme-challenge.web.example.com").starts_with(&tree_key("web.example.com")));
        assert!(!tree_key("webx.example.com").starts_with(&tree_key("web.example.com")));
    }

    /// Published beats claimed, then the oldest wins; a namespace never holds over itself.
    #[test]
    fn the_published_or_oldest_claim_holds() {
        let bob = claim("web.example.com", "bob", "2026-01-02T00:00:00Z", true);
        let alice = claim("_acme-challenge.web.example.com", "alice", "2026-01-01T00:00:00Z", false);
        assert_eq!(held_over(&alice, std::slice::from_ref(&bob)), Some(&bob), "bob's records are live");
        assert_eq!(held_over(&bob, std::slice::from_ref(&alice)), None);

        let bob_new = claim("web.example.com", "bob", "2026-01-02T00:00:00Z", false);
        assert_eq!(held_over(&bob_new, std::slice::from_ref(&alice)), Some(&alice), "alice was first");
        let own = claim("x.web.example.com", "bob", "2020-01-01T00:00:00Z", false);
        assert_eq!(held_over(&bob_new, &[own]), None);
    }
}
