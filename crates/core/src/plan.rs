//! The planner: desired records (from every DNSEndpoint a provider serves) against current
//! records (from the provider, ownership attached by the registry) gives the changes to make
//! and, for every desired record, what became of it. Pure and deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::endpoint::{label, Endpoint, RecordKey, RecordType};
use crate::provider::Change;

/// external-dns's `--policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Create, update and delete owned records.
    #[default]
    Sync,
    /// Create and update, never delete.
    UpsertOnly,
    /// Only create records that do not exist.
    CreateOnly,
}

/// The object that asked for a record. Ordering is "oldest wins": creation time, then
/// namespace/name, so conflicts resolve the same way on every pass and every replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Claimant {
    /// Creation time as RFC 3339 UTC (sorts chronologically) or empty when unknown.
    pub created: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Claimant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One record an object wants. Both halves are shared, not copied: the router, every worker
/// it is routed to and every planning pass hold the same record, and all records of one
/// object the same claimant (at 10,000 objects each copy cost about half a kilobyte).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRecord {
    pub endpoint: Arc<Endpoint>,
    pub claimant: Arc<Claimant>,
}

/// What the planner decided about one desired record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The provider already holds exactly this.
    InSync,
    /// A change is planned; its index in [`Plan::changes`].
    Change(usize),
    /// Another DNSEndpoint, older, wants different data for this record.
    Conflict { winner: Claimant },
    /// Another DNSEndpoint wants different data for this record and is the one whose records
    /// the zone holds (its `resource` label): it keeps them, whatever the ages.
    ConflictWithOwner { winner: Claimant },
    /// The name belongs to another namespace: its records are published there, or its claim
    /// is the oldest. `by` names what holds it (a `resource` label such as `crd/<ns>/<name>`,
    /// or `DNSEndpoint <ns>/<name>`).
    NameHeld { namespace: String, by: String },
    /// The record exists and a different owner id holds it.
    OwnedByOther { owner: String },
    /// The record exists without any ownership record: someone created it by hand.
    RecordExists,
    /// Another record at the name (`holder`, of another type) belongs to another owner
    /// (`owner`) or to nobody (`None`): as external-dns, no record type is added to a name
    /// this owner does not hold entirely.
    NameTaken { holder: RecordKey, owner: Option<String> },
    /// The policy forbids the change needed.
    PolicyForbids { policy: Policy, change: &'static str },
    /// The provider does not manage this record type.
    UnmanagedType,
}

impl Outcome {
    /// CamelCase reason used in conditions and record states.
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::InSync => "Ready",
            Outcome::Change(_) => "Pending",
            Outcome::Conflict { .. } | Outcome::ConflictWithOwner { .. } | Outcome::NameHeld { .. } => "Conflict",
            Outcome::OwnedByOther { .. } => "OwnedByOther",
            Outcome::RecordExists | Outcome::NameTaken { owner: None, .. } => "RecordExists",
            Outcome::NameTaken { owner: Some(_), .. } => "OwnedByOther",
            Outcome::PolicyForbids { .. } => "PolicyForbids",
            Outcome::UnmanagedType => "UnmanagedType",
        }
    }

    pub fn message(&self, key: &RecordKey) -> String {
        match self {
            Outcome::InSync => format!("{key} is live"),
            Outcome::Change(_) => format!("{key} is being written"),
            Outcome::ConflictWithOwner { winner } => format!(
                "{key} is also requested with different data by DNSEndpoint {winner}, whose record the zone holds (its resource label); the current owner keeps it"
            ),
            Outcome::Conflict { winner } => {
                format!("{key} is also requested with different data by DNSEndpoint {winner}, which is older and wins")
            }
            Outcome::NameHeld { namespace, by } => format!(
                "{key}: the name {} belongs to namespace {namespace} ({by}); records of any type at a name can only come from the namespace that holds it",
                key.dns_name
            ),
            Outcome::OwnedByOther { owner } => format!(
                "{key} already exists and is owned by owner id {owner:?}; extdns never modifies records of other owners"
            ),
            Outcome::RecordExists => format!(
                "{key} (or a record at that name that conflicts with it) already exists without an ownership record; delete it by hand or adopt it by creating its TXT ownership record"
            ),
            Outcome::NameTaken { holder, owner: Some(owner) } => format!(
                "{key}: the name already holds {holder}, owned by owner id {owner:?}; as external-dns, extdns adds no record to a name another owner holds"
            ),
            Outcome::NameTaken { holder, owner: None } => format!(
                "{key}: the name already holds {holder} without an ownership record; as external-dns, extdns adds no record to a name it does not own entirely (delete {holder} or adopt it by creating its TXT ownership record)"
            ),
            Outcome::PolicyForbids { policy, change } => {
                format!("{key} needs a {change}, which policy {policy:?} does not allow")
            }
            Outcome::UnmanagedType => format!("{key}: record type is not in the provider's managedRecordTypes"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// One entry per input desired record, in input order.
    pub outcomes: Vec<Outcome>,
}

pub struct PlanInput<'a> {
    pub desired: &'a [DesiredRecord],
    /// Current data records (registry TXT records removed), with `owner` labels attached.
    pub current: &'a [Endpoint],
    pub policy: Policy,
    /// Our owner id, or `None` when no registry is used (then nothing is ever deleted).
    pub owner_id: Option<&'a str>,
    pub managed_types: &'a [RecordType],
    pub default_ttl: u32,
    /// Owner ids of ownership records found for names that hold no data record (leftovers of
    /// another owner). A create there would steal the name, so it is refused.
    pub orphan_claims: &'a BTreeMap<RecordKey, String>,
}

/// Per record key: the desired record that wins it, and every desired record that shares it
/// (same data), winner included.
type Winners = BTreeMap<RecordKey, (usize, Vec<usize>)>;

/// Per record key of ours in the zone, the `resource` label it carries: which object holds it.
type HeldResources<'a> = BTreeMap<RecordKey, &'a str>;

/// Computes the changes. Deletes come first in `changes`, so a batch that replaces an A by a
/// CNAME at one name never has both at once.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; input.desired.len()];
    for (i, d) in input.desired.iter().enumerate() {
        if !input.managed_types.contains(&d.endpoint.record_type) {
            outcomes[i] = Some(Outcome::UnmanagedType);
        }
    }
    refuse_held_names(input, &mut outcomes);
    // The zone says who owns a record of ours now: its `resource` label. That object keeps it
    // (as external-dns keeps the current owner's record), so that a migration, a restore or a
    // GitOps re-creation, which change creation times, never flips a record; for new records
    // the oldest object wins.
    let held: HeldResources = input
        .current
        .iter()
        .filter(|e| owned_by_us(input, e))
        .filter_map(|e| Some((e.key(), e.labels.get(label::RESOURCE)?.as_str())))
        .collect();
    let mut winners = pick_winners(input, &held, &mut outcomes);
    exclude_cname_neighbours(input, &held, &mut winners, &mut outcomes);
    let (deletes, others) = compare_with_zone(input, &winners, &mut outcomes);
    let mut changes = deletes;
    for (change, followers) in others {
        let idx = changes.len();
        changes.push(change);
        for i in followers {
            outcomes[i] = Some(Outcome::Change(idx));
        }
    }
    Plan { changes, outcomes: outcomes.into_iter().map(|o| o.unwrap_or(Outcome::InSync)).collect() }
}

/// Step 0. A name belongs to one namespace, whatever the record types: claims from any other
/// namespace at it are refused before they can win anything.
fn refuse_held_names(input: &PlanInput<'_>, outcomes: &mut [Option<Outcome>]) {
    let holders = name_holders(input, outcomes);
    for (i, d) in input.desired.iter().enumerate() {
        if outcomes[i].is_some() {
            continue;
        }
        if let Some(h) = holders.get(d.endpoint.dns_name.as_str()).filter(|h| h.namespace != d.claimant.namespace) {
            outcomes[i] = Some(Outcome::NameHeld { namespace: h.namespace.clone(), by: h.by.clone() });
        }
    }
}

/// Whether desired record `i` comes from the object named by the `resource` label `held`. A
/// label counts only for an object of the namespace it names, so that no label written into
/// a spec buys a record.
fn holds(input: &PlanInput<'_>, i: usize, held: &str) -> bool {
    let d = &input.desired[i];
    d.endpoint.labels.get(label::RESOURCE).map(String::as_str) == Some(held)
        && resource_namespace(held) == Some(d.claimant.namespace.as_str())
}

/// Step 1. Per record key, the object holding it (else the oldest claimant) wins; younger
/// ones wanting other data conflict.
fn pick_winners(input: &PlanInput<'_>, held: &HeldResources<'_>, outcomes: &mut [Option<Outcome>]) -> Winners {
    let mut by_key: BTreeMap<RecordKey, Vec<usize>> = BTreeMap::new();
    for (i, d) in input.desired.iter().enumerate() {
        if outcomes[i].is_none() {
            by_key.entry(d.endpoint.key()).or_default().push(i);
        }
    }
    let incumbent = |i: usize, key: &RecordKey| held.get(key).is_some_and(|h| holds(input, i, h));
    let mut winners = Winners::new();
    for (key, mut idx) in by_key {
        idx.sort_by(|a, b| {
            (!incumbent(*a, &key), &input.desired[*a].claimant)
                .cmp(&(!incumbent(*b, &key), &input.desired[*b].claimant))
        });
        let w = idx[0];
        let mut followers = vec![w];
        for &i in &idx[1..] {
            if input.desired[i].endpoint.same_data(&input.desired[w].endpoint, input.default_ttl) {
                followers.push(i);
            } else if incumbent(w, &key) {
                outcomes[i] = Some(Outcome::ConflictWithOwner { winner: Claimant::clone(&input.desired[w].claimant) });
            } else {
                outcomes[i] = Some(Outcome::Conflict { winner: Claimant::clone(&input.desired[w].claimant) });
            }
        }
        winners.insert(key, (w, followers));
    }
    winners
}

/// Step 2. A CNAME excludes other types at its name across objects: the object holding a
/// record at the name keeps it, else the oldest claimant.
fn exclude_cname_neighbours(
    input: &PlanInput<'_>,
    held: &HeldResources<'_>,
    winners: &mut Winners,
    outcomes: &mut [Option<Outcome>],
) {
    let mut at_name: BTreeMap<(String, String), Vec<RecordKey>> = BTreeMap::new();
    for key in winners.keys() {
        at_name.entry((key.dns_name.clone(), key.set_identifier.clone())).or_default().push(key.clone());
    }
    for keys in at_name.values() {
        if keys.len() < 2 || !keys.iter().any(|k| k.record_type == RecordType::CNAME) {
            continue;
        }
        let holds_name = |k: &RecordKey| {
            held.iter()
                .filter(|(hk, _)| hk.dns_name == k.dns_name && hk.set_identifier == k.set_identifier)
                .any(|(_, h)| holds(input, winners[k].0, h))
        };
        let oldest = keys
            .iter()
            .min_by(|a, b| {
                (!holds_name(a), &input.desired[winners[*a].0].claimant)
                    .cmp(&(!holds_name(b), &input.desired[winners[*b].0].claimant))
            })
            .cloned()
            .unwrap_or_else(|| keys[0].clone());
        let oldest_claimant = input.desired[winners[&oldest].0].claimant.clone();
        let keep_cname = oldest.record_type == RecordType::CNAME;
        for k in keys {
            let same_object = input.desired[winners[k].0].claimant == oldest_claimant;
            let loses = if keep_cname { k != &oldest } else { k.record_type == RecordType::CNAME };
            if loses && !same_object {
                if let Some((_, followers)) = winners.remove(k) {
                    for i in followers {
                        outcomes[i] = Some(Outcome::Conflict { winner: Claimant::clone(&oldest_claimant) });
                    }
                }
            }
        }
    }
}

/// Step 3. The winners against the zone's records: deletes of ours no one wants (policy
/// sync), and the creates and updates of the winners with the desired records they serve.
fn compare_with_zone(
    input: &PlanInput<'_>,
    winners: &Winners,
    outcomes: &mut [Option<Outcome>],
) -> (Vec<Change>, Vec<(Change, Vec<usize>)>) {
    let current: BTreeMap<RecordKey, &Endpoint> =
        input.current.iter().filter(|e| input.managed_types.contains(&e.record_type)).map(|e| (e.key(), e)).collect();
    let mut deletes: Vec<Change> = Vec::new();
    let mut deleted_keys: BTreeSet<RecordKey> = BTreeSet::new();
    if input.policy == Policy::Sync && input.owner_id.is_some() {
        for (key, cur) in &current {
            if !winners.contains_key(key) && owned_by_us(input, cur) {
                deletes.push(Change::Delete((*cur).clone()));
                deleted_keys.insert(key.clone());
            }
        }
    }
    let mut others: Vec<(Change, Vec<usize>)> = Vec::new();
    for (key, (w, followers)) in winners {
        let want = &input.desired[*w].endpoint;
        let outcome = match current.get(key) {
            Some(cur) if !owned_by_us(input, cur) => foreign(cur),
            Some(cur) if want.satisfied_by(cur, input.default_ttl) => Outcome::InSync,
            Some(_) if input.policy == Policy::CreateOnly => {
                Outcome::PolicyForbids { policy: input.policy, change: "update" }
            }
            Some(cur) => {
                // A record that configures no TTL keeps the one it has (external-dns's TTL 0
                // included) rather than having the provider's default forced on it.
                let mut new = Endpoint::clone(want);
                new.ttl = want.ttl.or(cur.ttl);
                others.push((Change::Update { old: (*cur).clone(), new }, followers.clone()));
                Outcome::Change(usize::MAX)
            }
            None => match create_blocker(input, &current, &deleted_keys, key) {
                Some(outcome) => outcome,
                None => {
                    others.push((Change::Create(Endpoint::clone(want)), followers.clone()));
                    Outcome::Change(usize::MAX)
                }
            },
        };
        for &i in followers {
            outcomes[i] = Some(outcome.clone());
        }
    }
    (deletes, others)
}

/// The outcome for a record another owner (or nobody) holds.
fn foreign(cur: &Endpoint) -> Outcome {
    match cur.labels.get(label::OWNER) {
        Some(o) => Outcome::OwnedByOther { owner: o.clone() },
        None => Outcome::RecordExists,
    }
}

/// Why a record the zone does not hold cannot be created, if it cannot.
fn create_blocker(
    input: &PlanInput<'_>,
    current: &BTreeMap<RecordKey, &Endpoint>,
    deleted_keys: &BTreeSet<RecordKey>,
    key: &RecordKey,
) -> Option<Outcome> {
    // Leftover ownership of another owner: a create there would steal the name.
    if let Some(owner) = input.orphan_claims.get(key).filter(|o| input.owner_id.is_some_and(|id| id != o.as_str())) {
        return Some(Outcome::OwnedByOther { owner: owner.clone() });
    }
    // A CNAME and other data cannot share a name: the blocking records must be ours and on
    // their way out.
    let blocking = current.iter().find(|(k, _)| {
        k.dns_name == key.dns_name
            && k.set_identifier == key.set_identifier
            && (k.record_type == RecordType::CNAME) != (key.record_type == RecordType::CNAME)
            && !deleted_keys.contains(*k)
    });
    match blocking {
        Some((_, b)) if !owned_by_us(input, b) => return Some(foreign(b)),
        Some(_) => {
            return Some(Outcome::PolicyForbids { policy: input.policy, change: "delete of the conflicting record" })
        }
        None => {}
    }
    // external-dns's planner adds a record type to a name only when every record held there
    // (of the managed types, same set identifier) is its own.
    let start = RecordKey { dns_name: key.dns_name.clone(), set_identifier: String::new(), record_type: RecordType::A };
    let (holder, _) = current
        .range(start..)
        .take_while(|(k, _)| k.dns_name == key.dns_name)
        .find(|(k, e)| k.set_identifier == key.set_identifier && !owned_by_us(input, e))?;
    let owner = current.get(holder).and_then(|e| e.labels.get(label::OWNER)).cloned();
    Some(Outcome::NameTaken { holder: holder.clone(), owner })
}

/// Whether `e` is a record of ours (every record is, without a registry).
fn owned_by_us(input: &PlanInput<'_>, e: &Endpoint) -> bool {
    match input.owner_id {
        Some(id) => e.labels.get(label::OWNER).map(String::as_str) == Some(id),
        None => true,
    }
}

/// The namespace of a `resource` ownership label as external-dns writes it,
/// `<kind>/<namespace>/<name>` (`crd/shop/web`, `service/shop/web`).
pub fn resource_namespace(resource: &str) -> Option<&str> {
    let mut parts = resource.split('/');
    let (_kind, ns, _name) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && !ns.is_empty()).then_some(ns)
}

/// Who holds a name.
struct Holder {
    namespace: String,
    by: String,
}

/// The namespace holding each contested name (one claimed by more than one namespace, or
/// published for a namespace other than a claimant's):
/// - the namespace whose records are published there (our records' `resource` label), as
///   long as they stay: that namespace still claims the name, or the policy keeps records
///   nobody wants. Several such namespaces (records written before this rule): the one with
///   the oldest claim;
/// - else the namespace of the oldest claimant at the name.
///
/// The first rule is what keeps a tenant's name through a redeploy of one of its records;
/// since published records count only while their namespace claims the name, a `resource`
/// label naming another namespace gains its writer nothing.
fn name_holders(input: &PlanInput<'_>, skip: &[Option<Outcome>]) -> BTreeMap<String, Holder> {
    // Oldest claimant per name and namespace.
    let mut claims: BTreeMap<&str, BTreeMap<&str, &Claimant>> = BTreeMap::new();
    for (d, _) in input.desired.iter().zip(skip).filter(|(_, o)| o.is_none()) {
        let oldest =
            claims.entry(d.endpoint.dns_name.as_str()).or_default().entry(&d.claimant.namespace).or_insert(&d.claimant);
        if *d.claimant < **oldest {
            *oldest = &d.claimant;
        }
    }
    let ours = |e: &Endpoint| match input.owner_id {
        Some(id) => e.labels.get(label::OWNER).map(String::as_str) == Some(id),
        None => true,
    };
    let kept_unclaimed = input.policy != Policy::Sync || input.owner_id.is_none();
    let mut published: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for e in input.current.iter().filter(|e| ours(e)) {
        let Some(res) = e.labels.get(label::RESOURCE) else { continue };
        let Some(ns) = resource_namespace(res) else { continue };
        let claimed = claims.get(e.dns_name.as_str()).is_some_and(|c| c.contains_key(ns));
        if claimed || kept_unclaimed {
            published.entry(e.dns_name.as_str()).or_default().entry(ns).or_insert(res.as_str());
        }
    }
    let mut out = BTreeMap::new();
    for (name, per_ns) in &claims {
        let holder = match published.get(name) {
            Some(p) => p
                .iter()
                .min_by_key(|(ns, _)| (per_ns.get(*ns).is_none(), per_ns.get(*ns).copied()))
                .map(|(ns, res)| Holder { namespace: ns.to_string(), by: format!("published for {res}") }),
            None => per_ns
                .values()
                .min()
                .map(|c| Holder { namespace: c.namespace.clone(), by: format!("claimed first by DNSEndpoint {c}") }),
        };
        if let Some(h) = holder.filter(|h| per_ns.keys().any(|ns| *ns != h.namespace)) {
            out.insert(name.to_string(), h);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "extdns";

    fn claimant(created: &str, name: &str) -> Claimant {
        Claimant { created: created.into(), namespace: "ns".into(), name: name.into() }
    }

    fn want(name: &str, rt: RecordType, targets: &[&str], who: &Claimant) -> DesiredRecord {
        DesiredRecord {
            endpoint: Arc::new(Endpoint::new(name, rt, targets.iter().map(|s| s.to_string()).collect())),
            claimant: Arc::new(who.clone()),
        }
    }

    fn have(name: &str, rt: RecordType, targets: &[&str], owner: Option<&str>) -> Endpoint {
        let mut e = Endpoint::new(name, rt, targets.iter().map(|s| s.to_string()).collect());
        if let Some(o) = owner {
            e.labels.insert(label::OWNER.into(), o.into());
        }
        e
    }

    fn run(desired: &[DesiredRecord], current: &[Endpoint], policy: Policy) -> Plan {
        plan(&PlanInput {
            desired,
            current,
            policy,
            owner_id: Some(OWNER),
            managed_types: &[RecordType::A, RecordType::AAAA, RecordType::CNAME],
            default_ttl: 300,
            orphan_claims: &BTreeMap::new(),
        })
    }

    #[test]
    fn creates_updates_and_deletes_owned_records() {
        let a = claimant("2026-01-01T00:00:00Z", "a");
        let desired = vec![
            want("new.example.com", RecordType::A, &["192.0.2.1"], &a),
            want("changed.example.com", RecordType::A, &["192.0.2.2"], &a),
            want("same.example.com", RecordType::A, &["192.0.2.3"], &a),
        ];
        let current = vec![
            have("changed.example.com", RecordType::A, &["192.0.2.9"], Some(OWNER)),
            have("same.example.com", RecordType::A, &["192.0.2.3"], Some(OWNER)),
            have("gone.example.com", RecordType::A, &["192.0.2.4"], Some(OWNER)),
            have("foreign.example.com", RecordType::A, &["192.0.2.5"], Some("other")),
            have("manual.example.com", RecordType::A, &["192.0.2.6"], None),
        ];
        let p = run(&desired, &current, Policy::Sync);
        assert_eq!(p.changes.len(), 3);
        assert_eq!(p.changes[0], Change::Delete(current[2].clone()));
        assert!(p.changes.iter().any(
            |c| matches!(c, Change::Update { old, new } if old.targets == ["192.0.2.9"] && new.targets == ["192.0.2.2"])
        ));
        assert!(matches!(p.outcomes[0], Outcome::Change(i) if matches!(p.changes[i], Change::Create(_))));
        assert!(matches!(p.outcomes[1], Outcome::Change(_)));
        assert_eq!(p.outcomes[2], Outcome::InSync);
    }

    /// external-dns's planner compares TTLs only where one is configured, and its RFC2136
    /// provider writes TTL 0 when none is: such a zone is taken over without an update.
    #[test]
    fn a_ttl_is_compared_only_where_one_is_configured() {
        let a = claimant("2026-01-01T00:00:00Z", "a");
        let mut ttl60 = want("ttl60.example.com", RecordType::A, &["192.0.2.1"], &a);
        Arc::make_mut(&mut ttl60.endpoint).ttl = Some(60);
        let desired = vec![
            want("unset.example.com", RecordType::A, &["192.0.2.1"], &a),
            ttl60,
            want("moved.example.com", RecordType::A, &["192.0.2.2"], &a),
        ];
        let current = vec![
            have("unset.example.com", RecordType::A, &["192.0.2.1"], Some(OWNER)).with_ttl(0),
            have("ttl60.example.com", RecordType::A, &["192.0.2.1"], Some(OWNER)).with_ttl(0),
            have("moved.example.com", RecordType::A, &["192.0.2.9"], Some(OWNER)).with_ttl(0),
        ];
        let p = run(&desired, &current, Policy::Sync);
        assert_eq!(p.outcomes[0], Outcome::InSync, "no configured TTL, no TTL update");
        let Outcome::Change(i) = p.outcomes[1] else { panic!("a configured TTL is enforced: {:?}", p.outcomes[1]) };
        assert!(matches!(&p.changes[i], Change::Update { new, .. } if new.ttl == Some(60)));
        let Outcome::Change(i) = p.outcomes[2] else { panic!("new targets are written: {:?}", p.outcomes[2]) };
        assert!(
            matches!(&p.changes[i], Change::Update { new, .. } if new.ttl == Some(0) && new.targets == ["192.0.2.2"]),
            "the held TTL is kept: {:?}",
            p.changes[i]
        );
    }

    /// external-dns's planner adds no record type to a name where a record of another owner,
    /// or of nobody, is held: an AAAA beside a foreign A would split one name between two owners.
    #[test]
    fn no_record_is_added_to_a_name_another_owner_holds() {
        let a = claimant("2026-01-01T00:00:00Z", "a");
        let desired = vec![
            want("foreign.example.com", RecordType::AAAA, &["2001:db8::1"], &a),
            want("manual.example.com", RecordType::AAAA, &["2001:db8::1"], &a),
            want("mine.example.com", RecordType::AAAA, &["2001:db8::1"], &a),
        ];
        let current = vec![
            have("foreign.example.com", RecordType::A, &["192.0.2.5"], Some("other")),
            have("manual.example.com", RecordType::A, &["192.0.2.6"], None),
            have("mine.example.com", RecordType::A, &["192.0.2.7"], Some(OWNER)),
        ];
        let p = run(&desired, &current, Policy::Sync);
        let a_of =
            |n: &str| RecordKey { dns_name: n.into(), set_identifier: String::new(), record_type: RecordType::A };
        assert_eq!(
            p.outcomes[0],
            Outcome::NameTaken { holder: a_of("foreign.example.com"), owner: Some("other".into()) }
        );
        assert_eq!(p.outcomes[0].reason(), "OwnedByOther");
        assert!(p.outcomes[0]
            .message(&desired[0].endpoint.key())
            .contains("foreign.example.com A, owned by owner id \"other\""));
        assert_eq!(p.outcomes[1], Outcome::NameTaken { holder: a_of("manual.example.com"), owner: None });
        assert_eq!(p.outcomes[1].reason(), "RecordExists");
        // The A of ours is deleted (nobody wants it) and the AAAA created: the name is ours.
        assert!(
            matches!(p.outcomes[2], Outcome::Change(i) if matches!(&p.changes[i], Change::Create(e) if e.record_type == RecordType::AAAA))
        );
        assert_eq!(p.changes.len(), 2);
    }

    /// The object whose record the zone holds keeps it against an older one (a migration or
    /// a GitOps re-creation made the holder younger); with nothing held, the oldest wins.
    #[test]
    fn the_current_owner_keeps_its_record_and_new_names_go_to_the_oldest() {
        let old = claimant("2026-01-01T00:00:00Z", "old");
        let young = claimant("2026-02-01T00:00:00Z", "young");
        let labelled = |mut d: DesiredRecord, res: &str| {
            Arc::make_mut(&mut d.endpoint).labels.insert(label::RESOURCE.into(), res.into());
            d
        };
        let desired = vec![
            labelled(want("web.example.com", RecordType::A, &["192.0.2.1"], &old), "crd/ns/old"),
            labelled(want("web.example.com", RecordType::A, &["192.0.2.2"], &young), "crd/ns/young"),
            labelled(want("new.example.com", RecordType::A, &["192.0.2.1"], &old), "crd/ns/old"),
            labelled(want("new.example.com", RecordType::A, &["192.0.2.2"], &young), "crd/ns/young"),
        ];
        let mut held = have("web.example.com", RecordType::A, &["192.0.2.2"], Some(OWNER));
        held.labels.insert(label::RESOURCE.into(), "crd/ns/young".into());
        let p = run(&desired, &[held.clone()], Policy::Sync);
        assert_eq!(p.outcomes[0], Outcome::ConflictWithOwner { winner: young.clone() });
        assert_eq!(p.outcomes[0].reason(), "Conflict");
        assert_eq!(p.outcomes[1], Outcome::InSync, "no flip, no change");
        assert!(matches!(p.outcomes[2], Outcome::Change(_)));
        assert_eq!(p.outcomes[3], Outcome::Conflict { winner: old.clone() });

        // A resource label naming another namespace buys nothing: the oldest wins.
        let desired = vec![
            labelled(want("web.example.com", RecordType::A, &["192.0.2.1"], &old), "crd/ns/old"),
            labelled(want("web.example.com", RecordType::A, &["192.0.2.2"], &young), "crd/elsewhere/young"),
        ];
        held.labels.insert(label::RESOURCE.into(), "crd/elsewhere/young".into());
        let p = run(&desired, &[held], Policy::Sync);
        assert_eq!(p.outcomes[1], Outcome::Conflict { winner: old });
    }

    #[test]
    fn never_touches_foreign_or_unowned_records() {
        let a = claimant("2026-01-01T00:00:00Z", "a");
        let desired = vec![
            want("foreign.example.com", RecordType::A, &["192.0.2.1"], &a),
            want("manual.example.com", RecordType::A, &["192.0.2.1"], &a),
        ];
        let current = vec![
            have("foreign.example.com", RecordType::A, &["192.0.2.5"], Some("other")),
            have("manual.example.com", RecordType::A, &["192.0.2.6"], None),
        ];
        let p = run(&desired, &current, Policy::Sync);
        assert!(p.changes.is_empty());
        assert_eq!(p.outcomes[0], Outcome::OwnedByOther { owner: "other".into() });
        assert_eq!(p.outcomes[1], Outcome::RecordExists);
    }

    #[test]
    fn policies() {
        let a = claimant("2026-01-01T00:00:00Z", "a");
        let desired = vec![want("changed.example.com", RecordType::A, &["192.0.2.2"], &a)];
        let current = vec![
            have("changed.example.com", RecordType::A, &["192.0.2.9"], Some(OWNER)),
            have("gone.example.com", RecordType::A, &["192.0.2.4"], Some(OWNER)),
        ];
        let upsert = run(&desired, &current, Policy::UpsertOnly);
        assert_eq!(upsert.changes.len(), 1);
        assert!(matches!(upsert.changes[0], Change::Update { .. }));
        let create = run(&desired, &current, Policy::CreateOnly);
        assert!(create.changes.is_empty());
        assert_eq!(create.outcomes[0], Outcome::PolicyForbids { policy: Policy::CreateOnly, change: "update" });
    }

    #[test]
    fn oldest_claimant_wins_conflicts() {
        let old = claimant("2026-01-01T00:00:00Z", "old");
        let young = claimant("2026-02-01T00:00:00Z", "young");
        let twin = claimant("2026-03-01T00:00:00Z", "twin");
        let desired = vec![
            want("x.example.com", RecordType::A, &["192.0.2.2"], &young),
            want("x.example.com", RecordType::A, &["192.0.2.1"], &old),
            want("x.example.com", RecordType::A, &["192.0.2.1"], &twin),
        ];
        let p = run(&desired, &[], Policy::Sync);
        assert_eq!(p.changes, vec![Change::Create(Endpoint::clone(&desired[1].endpoint))]);
        assert_eq!(p.outcomes[0], Outcome::Conflict { winner: old.clone() });
        assert_eq!(p.outcomes[1], Outcome::Change(0));
        assert_eq!(p.outcomes[2], Outcome::Change(0));
        assert!(p.outcomes[0].message(&desired[0].endpoint.key()).contains("ns/old"));
    }

    #[test]
    fn cname_excludes_other_types_across_objects() {
        let old = claimant("2026-01-01T00:00:00Z", "old");
        let young = claimant("2026-02-01T00:00:00Z", "young");
        let desired = vec![
            want("x.example.com", RecordType::CNAME, &["lb.example.net"], &young),
            want("x.example.com", RecordType::A, &["192.0.2.1"], &old),
            want("x.example.com", RecordType::AAAA, &["2001:db8::1"], &old),
        ];
        let p = run(&desired, &[], Policy::Sync);
        assert_eq!(p.changes.len(), 2);
        assert_eq!(p.outcomes[0], Outcome::Conflict { winner: old });
    }

    #[test]
    fn replacing_a_by_cname_deletes_first() {
        let a = claimant("2026-01-01T00:00:00Z", "a");
        let desired = vec![want("x.example.com", RecordType::CNAME, &["lb.example.net"], &a)];
        let current = vec![have("x.example.com", RecordType::A, &["192.0.2.1"], Some(OWNER))];
        let p = run(&desired, &current, Policy::Sync);
        assert_eq!(p.changes[0], Change::Delete(current[0].clone()));
        assert!(matches!(p.changes[1], Change::Create(_)));
        // A foreign A at the name blocks the CNAME.
        let foreign = vec![have("x.example.com", RecordType::A, &["192.0.2.1"], Some("other"))];
        let p = run(&desired, &foreign, Policy::Sync);
        assert!(p.changes.is_empty());
        assert_eq!(p.outcomes[0], Outcome::OwnedByOther { owner: "other".into() });
    }

    #[test]
    fn label_only_and_ttl_default_differences_cause_no_change() {
        let a = claimant("2026-01-01T00:00:00Z", "a");
        let mut d = want("x.example.com", RecordType::A, &["192.0.2.1"], &a);
        Arc::make_mut(&mut d.endpoint).labels.insert(label::RESOURCE.into(), "crd/ns/a".into());
        let mut cur = have("x.example.com", RecordType::A, &["192.0.2.1"], Some(OWNER));
        cur.labels.insert(label::RESOURCE.into(), "service/ns/a".into());
        cur.ttl = Some(300);
        let p = run(&[d], &[cur], Policy::Sync);
        assert!(p.changes.is_empty());
        assert_eq!(p.outcomes[0], Outcome::InSync);
    }

    #[test]
    fn unmanaged_types_are_reported_and_current_ones_ignored() {
        let a = claimant("2026-01-01T00:00:00Z", "a");
        let d = want("x.example.com", RecordType::MX, &["10 mail.example.com"], &a);
        let cur = have("y.example.com", RecordType::MX, &["10 mail.example.com"], Some(OWNER));
        let p = run(&[d], &[cur], Policy::Sync);
        assert!(p.changes.is_empty());
        assert_eq!(p.outcomes[0], Outcome::UnmanagedType);
    }

    #[test]
    fn no_registry_never_deletes() {
        let cur = vec![have("gone.example.com", RecordType::A, &["192.0.2.4"], None)];
        let p = plan(&PlanInput {
            desired: &[],
            current: &cur,
            policy: Policy::Sync,
            owner_id: None,
            managed_types: &[RecordType::A],
            default_ttl: 300,
            orphan_claims: &BTreeMap::new(),
        });
        assert!(p.changes.is_empty());
    }

    #[test]
    fn leftover_foreign_ownership_record_blocks_create() {
        let a = claimant("2026-01-01T00:00:00Z", "a");
        let d = want("x.example.com", RecordType::A, &["192.0.2.1"], &a);
        let claims: BTreeMap<RecordKey, String> = [(d.endpoint.key(), "other".to_string())].into();
        let p = plan(&PlanInput {
            desired: std::slice::from_ref(&d),
            current: &[],
            policy: Policy::Sync,
            owner_id: Some(OWNER),
            managed_types: &[RecordType::A],
            default_ttl: 300,
            orphan_claims: &claims,
        });
        assert!(p.changes.is_empty());
        assert_eq!(p.outcomes[0], Outcome::OwnedByOther { owner: "other".into() });
    }

    fn claimant_in(ns: &str, created: &str, name: &str) -> Claimant {
        Claimant { created: created.into(), namespace: ns.into(), name: name.into() }
    }

    fn published(name: &str, rt: RecordType, targets: &[&str], resource: &str) -> Endpoint {
        let mut e = have(name, rt, targets, Some(OWNER));
        e.labels.insert(label::RESOURCE.into(), resource.into());
        e
    }

    fn run_all_types(desired: &[DesiredRecord], current: &[Endpoint], policy: Policy) -> Plan {
        plan(&PlanInput {
            desired,
            current,
            policy,
            owner_id: Some(OWNER),
            managed_types: &[RecordType::A, RecordType::AAAA, RecordType::CNAME, RecordType::TXT],
            default_ttl: 300,
            orphan_claims: &BTreeMap::new(),
        })
    }

    #[test]
    fn resource_label_namespaces() {
        assert_eq!(resource_namespace("crd/shop/web"), Some("shop"));
        assert_eq!(resource_namespace("service/shop/web"), Some("shop"));
        assert_eq!(resource_namespace("crd/shop"), None);
        assert_eq!(resource_namespace("crd//web"), None);
        assert_eq!(resource_namespace("a/b/c/d"), None);
    }

    #[test]
    fn a_published_name_refuses_other_namespaces_whatever_the_type() {
        let a = claimant_in("a", "2026-02-01T00:00:00Z", "web");
        // b's claim is older, but a's records are live at the name.
        let b = claimant_in("b", "2026-01-01T00:00:00Z", "squat");
        let desired = vec![
            want("x.example.com", RecordType::A, &["192.0.2.1"], &a),
            want("x.example.com", RecordType::AAAA, &["2001:db8::1"], &b),
            want("x.example.com", RecordType::TXT, &["google-site-verification=b"], &b),
        ];
        let current = vec![published("x.example.com", RecordType::A, &["192.0.2.1"], "crd/a/web")];
        let p = run_all_types(&desired, &current, Policy::Sync);
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(p.outcomes[0], Outcome::InSync);
        for o in &p.outcomes[1..] {
            assert_eq!(o, &Outcome::NameHeld { namespace: "a".into(), by: "published for crd/a/web".into() });
            assert_eq!(o.reason(), "Conflict");
        }
        let msg = p.outcomes[1].message(&desired[1].endpoint.key());
        assert!(msg.contains("namespace a") && msg.contains("crd/a/web"), "{msg}");
    }

    #[test]
    fn unpublished_name_goes_to_the_oldest_claimants_namespace() {
        let a = claimant_in("a", "2026-01-01T00:00:00Z", "web");
        let a2 = claimant_in("a", "2026-03-01T00:00:00Z", "web-v6");
        let b = claimant_in("b", "2026-02-01T00:00:00Z", "squat");
        let desired = vec![
            want("x.example.com", RecordType::TXT, &["b"], &b),
            want("x.example.com", RecordType::A, &["192.0.2.1"], &a),
            want("x.example.com", RecordType::AAAA, &["2001:db8::1"], &a2),
        ];
        let p = run_all_types(&desired, &[], Policy::Sync);
        assert_eq!(
            p.outcomes[0],
            Outcome::NameHeld { namespace: "a".into(), by: "claimed first by DNSEndpoint a/web".into() }
        );
        // Other objects of the holding namespace may add types.
        assert!(matches!(p.outcomes[1], Outcome::Change(_)));
        assert!(matches!(p.outcomes[2], Outcome::Change(_)));
        assert_eq!(p.changes.len(), 2);
    }

    #[test]
    fn published_records_hold_only_while_their_namespace_claims_the_name() {
        let b = claimant_in("b", "2026-02-01T00:00:00Z", "next");
        let desired = vec![want("x.example.com", RecordType::A, &["192.0.2.9"], &b)];
        let current = vec![published("x.example.com", RecordType::A, &["192.0.2.1"], "crd/a/web")];
        // a deleted its DNSEndpoint: under sync its record goes and b may take the name.
        let p = run_all_types(&desired, &current, Policy::Sync);
        assert!(matches!(p.outcomes[0], Outcome::Change(_)));
        // Under upsert-only a's record stays, and so does a's hold on the name.
        let p = run_all_types(&desired, &current, Policy::UpsertOnly);
        assert!(p.changes.is_empty());
        assert!(matches!(&p.outcomes[0], Outcome::NameHeld { namespace, .. } if namespace == "a"));
    }

    #[test]
    fn a_forged_resource_label_gains_nothing() {
        // b publishes at a name nobody else claims, labelled as if it were a's.
        let b = claimant_in("b", "2026-01-01T00:00:00Z", "forger");
        let mut d = want("y.example.com", RecordType::A, &["192.0.2.1"], &b);
        Arc::make_mut(&mut d.endpoint).labels.insert(label::RESOURCE.into(), "crd/a/web".into());
        let current = vec![published("y.example.com", RecordType::A, &["192.0.2.1"], "crd/a/web")];
        let p = run_all_types(std::slice::from_ref(&d), &current, Policy::Sync);
        assert_eq!(p.outcomes[0], Outcome::InSync);
        // And a's real records elsewhere are not affected by b's label: at a's name, b is refused.
        let a = claimant_in("a", "2026-02-01T00:00:00Z", "web");
        let desired = vec![
            want("z.example.com", RecordType::A, &["192.0.2.2"], &a),
            want("z.example.com", RecordType::AAAA, &["2001:db8::2"], &b),
        ];
        let current = vec![published("z.example.com", RecordType::A, &["192.0.2.2"], "crd/a/web")];
        let p = run_all_types(&desired, &current, Policy::Sync);
        assert!(matches!(&p.outcomes[1], Outcome::NameHeld { namespace, .. } if namespace == "a"));
    }

    #[test]
    fn names_of_other_owners_are_not_namespace_holds() {
        // A record of another owner id says nothing about our namespaces.
        let b = claimant_in("b", "2026-01-01T00:00:00Z", "web");
        let desired = vec![want("x.example.com", RecordType::AAAA, &["2001:db8::1"], &b)];
        let mut foreign = have("x.example.com", RecordType::A, &["192.0.2.1"], Some("other"));
        foreign.labels.insert(label::RESOURCE.into(), "crd/a/web".into());
        let p = run_all_types(&desired, &[foreign], Policy::Sync);
        // Not a namespace hold; the name is the other owner's, as external-dns has it.
        assert!(
            matches!(&p.outcomes[0], Outcome::NameTaken { owner: Some(o), .. } if o == "other"),
            "{:?}",
            p.outcomes
        );
    }
}
