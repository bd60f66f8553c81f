//! The zone pipeline: what a provider should send to one zone, decided without I/O.
//!
//! [`plan_zone`] takes what the backend holds at the names being planned and the records
//! wanted there, and runs the steps a provider's worker relies on, in order:
//! 1. the registry's view of the zone (ownership TXTs read, owner labels attached);
//! 2. the domain filter and the zone split (leftovers of a name delegated to a longer zone,
//!    and names outside the provider's domains, are not this zone's to manage);
//! 3. the orphan claims (ownership TXTs of another owner at a name with no data);
//! 4. the plan (changes and one outcome per wanted record);
//! 5. the grace hold (a new provider leaves owned records no one wants yet alone);
//! 6. the registry upkeep (new-format TXTs for old-format records, orphaned TXTs of ours);
//! 7. the expansion into the changes the backend gets (each record with its ownership TXTs).
//!
//! The caller (the operator's worker) keeps the rest: which records are wanted, the subtree
//! refusals of shared providers, leadership, the backend call and its timeout, caches and
//! scheduling.

use std::collections::{BTreeMap, BTreeSet};

use crate::endpoint::{label, Endpoint, RecordKey, RecordType};
use crate::filter::DomainFilter;
use crate::plan::{self, DesiredRecord, Outcome, Plan, Policy};
use crate::provider::{zone_for, Change, Zone};
use crate::registry::{Expanded, Role, TxtRegistry};

/// What [`plan_zone`] plans from.
pub struct ZoneInput<'a> {
    /// The zone planned.
    pub zone: &'a Zone,
    /// Every zone of the provider: a name belongs to the zones with the longest name
    /// containing it.
    pub zones: &'a [Zone],
    /// What the backend holds at the names planned, ownership TXTs included.
    pub raw: Vec<Endpoint>,
    /// The TXT ownership registry, or `None` when ownership is not recorded.
    pub registry: Option<&'a TxtRegistry>,
    /// The provider's `spec.domains`.
    pub domains: &'a DomainFilter,
    /// The records wanted in this zone, as the backend will hold them.
    pub desired: &'a [DesiredRecord],
    pub policy: Policy,
    pub managed_types: &'a [RecordType],
    pub default_ttl: u32,
    /// True while a new provider's grace lasts: deletions of records nobody wants are held.
    pub in_grace: bool,
    /// Names whose deletions go even in the grace: their DNSEndpoint was deleted and waits
    /// (by its finalizer) for them to go.
    pub released: &'a dyn Fn(&str) -> bool,
}

/// What [`plan_zone`] decided.
#[derive(Debug)]
pub struct ZonePlan {
    /// The planned changes and one outcome per wanted record (same order as `desired`).
    pub plan: Plan,
    /// What to send, each reported against a planned change (`index`); registry upkeep
    /// belongs to none and has an index past the plan's changes. Empty: nothing to send.
    pub expanded: Vec<Expanded>,
    /// Deletions held back by the grace.
    pub held: usize,
}

/// Plans one zone; see the [module](self) for the steps.
pub fn plan_zone(input: &ZoneInput<'_>) -> ZonePlan {
    let zone = input.zone;
    let belongs = |name: &str| zone_for(input.zones, name).is_some_and(|z| z.name == zone.name);
    let managed_name = |name: &str| belongs(name) && input.domains.matches(name);

    // 1, 2: what the zone holds that this provider manages.
    let view = input.registry.map(|reg| reg.view_in_zone(input.raw.clone(), &zone.name));
    let current: Vec<Endpoint> = match &view {
        Some(view) => view.endpoints.clone(),
        None => input.raw.clone(),
    };
    let current: Vec<Endpoint> = current.into_iter().filter(|e| managed_name(&e.dns_name)).collect();

    // 3: a create at a name whose only record is another owner's TXT would steal the name.
    let current_keys: BTreeSet<RecordKey> = current.iter().map(|e| e.key()).collect();
    let mut orphan_claims: BTreeMap<RecordKey, String> = BTreeMap::new();
    if let (Some(reg), Some(view)) = (input.registry, &view) {
        for d in input.desired.iter().filter(|d| !current_keys.contains(&d.endpoint.key())) {
            if let Some(owner) = reg.claim(view, &d.endpoint).and_then(|l| l.get(label::OWNER)) {
                orphan_claims.insert(d.endpoint.key(), owner.clone());
            }
        }
    }

    // 4
    let mut plan = plan::plan(&plan::PlanInput {
        desired: input.desired,
        current: &current,
        policy: input.policy,
        owner_id: input.registry.map(TxtRegistry::owner_id),
        managed_types: input.managed_types,
        default_ttl: input.default_ttl,
        orphan_claims: &orphan_claims,
    });

    // 5
    let wanted: BTreeSet<&str> = input.desired.iter().map(|d| d.endpoint.dns_name.as_str()).collect();
    let delete_now = |name: &str| !input.in_grace || wanted.contains(name) || (input.released)(name);
    let held = if input.in_grace { hold_orphan_deletions(&mut plan, delete_now) } else { 0 };

    // 6: old-format-only records of ours get their new-format TXT, as external-dns adds it
    // on its first pass (their data is not touched); ownership TXTs of ours left behind by a
    // record that went without them are removed.
    let upkeep: Vec<Change> = match (input.registry, &view) {
        (Some(reg), Some(view)) => {
            let upgrades = reg
                .missing_new_format(view)
                .into_iter()
                .filter(|c| input.domains.matches(&reg.group_name(c.endpoint())));
            let orphans = if input.policy == Policy::Sync {
                let wanted: BTreeSet<RecordKey> = input.desired.iter().map(|d| d.endpoint.key()).collect();
                reg.orphaned_ownership(view, &wanted, input.managed_types, |name| {
                    managed_name(name) && delete_now(name)
                })
            } else {
                Vec::new()
            };
            upgrades.chain(orphans).collect()
        }
        _ => Vec::new(),
    };

    // 7
    if plan.changes.is_empty() && upkeep.is_empty() {
        return ZonePlan { plan, expanded: Vec::new(), held };
    }
    let mut expanded = match (input.registry, &view) {
        (Some(reg), Some(view)) => reg.expand(view, &plan.changes),
        _ => Expanded::data_only(&plan.changes),
    };
    // A planned update writes the same TXT itself.
    let written: BTreeSet<RecordKey> = expanded.iter().map(|e| e.change.endpoint().key()).collect();
    let past_plan = plan.changes.len();
    expanded.extend(upkeep.into_iter().filter(|c| !written.contains(&c.endpoint().key())).map(|change| Expanded {
        index: past_plan,
        role: Role::Ownership { backs: Vec::new() },
        change,
    }));
    ZonePlan { plan, expanded, held }
}

/// Drops from `p` the deletions of records at names `delete_now` does not name (keeping the
/// indices its outcomes hold right); returns how many it dropped.
pub fn hold_orphan_deletions(p: &mut Plan, delete_now: impl Fn(&str) -> bool) -> usize {
    let mut new_index = Vec::with_capacity(p.changes.len());
    let mut kept = Vec::with_capacity(p.changes.len());
    for c in std::mem::take(&mut p.changes) {
        let orphan = matches!(&c, Change::Delete(e) if !delete_now(&e.dns_name));
        new_index.push(kept.len());
        if !orphan {
            kept.push(c);
        }
    }
    let dropped = new_index.len() - kept.len();
    p.changes = kept;
    for o in &mut p.outcomes {
        if let Outcome::Change(i) = o {
            *i = new_index[*i];
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::plan::Claimant;
    use crate::registry::TxtRegistryConfig;

    const OWNER: &str = "extdns";

    fn registry() -> TxtRegistry {
        TxtRegistry::new(TxtRegistryConfig { owner_id: OWNER.into(), ..Default::default() }).expect("valid config")
    }

    fn a(name: &str, ip: &str) -> Endpoint {
        Endpoint::new(name, RecordType::A, vec![ip.into()]).with_ttl(300)
    }

    fn want(name: &str, ip: &str) -> DesiredRecord {
        DesiredRecord {
            endpoint: Arc::new(a(name, ip)),
            claimant: Arc::new(Claimant { created: String::new(), namespace: "ns".into(), name: "ep".into() }),
        }
    }

    /// `ep` as the zone holds it when it is ours: the record and its ownership TXTs.
    fn held_as_ours(reg: &TxtRegistry, ep: Endpoint) -> Vec<Endpoint> {
        let zone = Zone::named("example.com");
        let view = reg.view_in_zone(Vec::new(), &zone.name);
        let mut ep = ep;
        ep.labels.insert(label::RESOURCE.into(), "crd/ns/ep".into());
        reg.expand(&view, &[Change::Create(ep)]).into_iter().map(|e| e.change.endpoint().clone()).collect()
    }

    fn run(
        raw: Vec<Endpoint>,
        desired: &[DesiredRecord],
        reg: Option<&TxtRegistry>,
        in_grace: bool,
        released: &dyn Fn(&str) -> bool,
    ) -> ZonePlan {
        let zones = [Zone::named("example.com"), Zone::named("sub.example.com")];
        let domains = DomainFilter::default();
        plan_zone(&ZoneInput {
            zone: &zones[0],
            zones: &zones,
            raw,
            registry: reg,
            domains: &domains,
            desired,
            policy: Policy::Sync,
            managed_types: &[RecordType::A, RecordType::AAAA, RecordType::CNAME],
            default_ttl: 300,
            in_grace,
            released,
        })
    }

    fn nothing_released(_: &str) -> bool {
        false
    }

    #[test]
    fn a_create_is_sent_with_its_ownership_records_and_reported_against_its_change() {
        let reg = registry();
        let desired = [want("web.example.com", "192.0.2.1")];
        let out = run(Vec::new(), &desired, Some(&reg), false, &nothing_released);
        assert_eq!(out.plan.outcomes, vec![Outcome::Change(0)]);
        assert!(matches!(&out.plan.changes[..], [Change::Create(e)] if e.dns_name == "web.example.com"));
        assert!(out.expanded.len() > 1, "the record and its TXT: {:?}", out.expanded);
        assert!(out.expanded.iter().all(|e| e.index == 0));
        assert!(out.expanded.iter().any(|e| e.role == Role::Data && e.change.endpoint().record_type == RecordType::A));
        assert!(out.expanded.iter().any(|e| e.change.endpoint().record_type == RecordType::TXT));
    }

    #[test]
    fn what_is_already_there_sends_nothing() {
        let reg = registry();
        let desired = [want("web.example.com", "192.0.2.1")];
        let raw = held_as_ours(&reg, a("web.example.com", "192.0.2.1"));
        let out = run(raw, &desired, Some(&reg), false, &nothing_released);
        assert!(out.expanded.is_empty(), "{:?}", out.expanded);
        assert_eq!(out.plan.outcomes.len(), 1);
        assert!(!matches!(out.plan.outcomes[0], Outcome::Change(_)), "{:?}", out.plan.outcomes);
    }

    #[test]
    fn the_grace_holds_deletions_except_of_released_names() {
        let reg = registry();
        let mut raw = held_as_ours(&reg, a("old.example.com", "192.0.2.9"));
        raw.extend(held_as_ours(&reg, a("gone.example.com", "192.0.2.8")));
        let released = |n: &str| n == "gone.example.com";
        let out = run(raw.clone(), &[], Some(&reg), true, &released);
        assert_eq!(out.held, 1);
        let deleted: Vec<&str> = out
            .plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Delete(e) => Some(e.dns_name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["gone.example.com"]);
        assert!(
            out.expanded.iter().all(|e| !e.change.endpoint().dns_name.contains("old")),
            "neither old's record nor its TXT goes: {:?}",
            out.expanded
        );
        // Once the grace is over both go.
        let out = run(raw, &[], Some(&reg), false, &nothing_released);
        assert_eq!(out.held, 0);
        assert_eq!(out.plan.changes.len(), 2);
    }

    #[test]
    fn names_of_a_longer_zone_are_left_to_it() {
        let reg = registry();
        let raw = held_as_ours(&reg, a("web.sub.example.com", "192.0.2.1"));
        let out = run(raw, &[], Some(&reg), false, &nothing_released);
        assert!(out.plan.changes.is_empty() && out.expanded.is_empty(), "{:?}", out.expanded);
    }

    #[test]
    fn an_ownership_record_left_alone_is_removed() {
        let reg = registry();
        let raw: Vec<Endpoint> = held_as_ours(&reg, a("web.example.com", "192.0.2.1"))
            .into_iter()
            .filter(|e| e.record_type == RecordType::TXT)
            .collect();
        assert!(!raw.is_empty());
        let out = run(raw.clone(), &[], Some(&reg), false, &nothing_released);
        assert!(out.plan.changes.is_empty());
        assert_eq!(out.expanded.len(), raw.len(), "{:?}", out.expanded);
        assert!(out.expanded.iter().all(|e| matches!(e.change, Change::Delete(_)) && e.index == 0));
    }

    #[test]
    fn without_a_registry_nothing_is_deleted_and_nothing_but_data_is_sent() {
        let desired = [want("web.example.com", "192.0.2.1")];
        let out = run(vec![a("other.example.com", "192.0.2.7")], &desired, None, false, &nothing_released);
        assert!(matches!(&out.plan.changes[..], [Change::Create(_)]));
        assert!(matches!(&out.expanded[..], [Expanded { index: 0, role: Role::Data, .. }]));
    }

    #[test]
    fn held_deletions_keep_the_outcomes_pointing_at_their_changes() {
        let mut p = Plan {
            changes: vec![
                Change::Create(a("web.example.com", "192.0.2.1")),
                Change::Delete(a("gone.example.com", "192.0.2.1")),
                Change::Delete(a("api.example.com", "192.0.2.1")),
            ],
            outcomes: vec![Outcome::Change(0), Outcome::Change(2)],
        };
        let wanted: BTreeSet<&str> = ["web.example.com", "api.example.com"].into();
        assert_eq!(hold_orphan_deletions(&mut p, |n| wanted.contains(n)), 1);
        assert_eq!(p.changes.len(), 2);
        assert!(matches!(&p.outcomes[..], [Outcome::Change(0), Outcome::Change(1)]));
        assert!(matches!(&p.changes[1], Change::Delete(e) if e.dns_name == "api.example.com"));
    }
}
