//! The provider conformance battery: what every [`Provider`] must do, written once and run
//! against the in-memory provider (unit test below) and against every real backend
//! (`tests/conformance.rs`).
//!
//! Shape: [`run_all`] runs the data cases that any provider must pass; each case is also a
//! `pub async fn case_*` so a failing one can be run alone. Cases that only make sense for a
//! provider talking to a server over the network take a provider built for the purpose and are
//! not part of `run_all`: [`case_auth_failure`] (a wrongly keyed provider), [`case_unreachable`]
//! (a provider pointing where nothing listens) and [`case_names_in_any_case`] (names handed to
//! the provider in mixed case, which the planner never does but a DNS server must tolerate).
//!
//! Every case works below its own label in the zone (`<case>.<zone>`; the apex case at the apex,
//! on A and TXT only), starts by checking that nothing is there, removes what it created, and
//! checks that nothing is left, so cases can run in any order on a zone that holds only its SOA,
//! NS and glue. Cases return `Err(String)` saying what was expected and what was found.
//!
//! The in-memory provider does not normalise names it is handed, so `case_names_in_any_case`
//! is not part of `run_all`: the planner only ever hands over names built by `Endpoint::new`.

use std::time::{Duration, Instant};

use extdns_core::apply::apply_with_ownership;
use extdns_core::endpoint::{label, Endpoint, RecordType};
use extdns_core::provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};
use extdns_core::registry::{Expanded, RegistryView, TxtRegistry, TxtRegistryConfig};

/// TTL of every record the battery creates; a value servers accept and keep as is.
const TTL: u32 = 300;
/// Size of the bulk case.
pub const BULK_RECORDS: usize = 2000;

/// What a run of the battery measured, for the test log.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Case name and how long it took.
    pub timings: Vec<(&'static str, Duration)>,
    pub bulk_create: Duration,
    pub bulk_delete: Duration,
    /// How the provider worded each rejection of the mixed batch: shows what the backend said.
    pub rejections: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, d) in &self.timings {
            writeln!(f, "  {name:<28} {:>8.1} ms", d.as_secs_f64() * 1000.0)?;
        }
        for r in &self.rejections {
            writeln!(f, "  rejected: {r}")?;
        }
        write!(
            f,
            "  {BULK_RECORDS} creates in one apply: {:.1} ms, {BULK_RECORDS} deletes: {:.1} ms",
            self.bulk_create.as_secs_f64() * 1000.0,
            self.bulk_delete.as_secs_f64() * 1000.0
        )
    }
}

/// Runs every data case in order; stops at the first failure, naming the case.
pub async fn run_all<P: Provider>(p: &P, zone: &Zone) -> Result<Report, String> {
    run_all_except(p, zone, &[]).await
}

/// [`run_all`] without the cases named in `skip`: for a backend that documents why it cannot
/// pass them (its test then checks what it does instead).
pub async fn run_all_except<P: Provider>(p: &P, zone: &Zone, skip: &[&str]) -> Result<Report, String> {
    let mut report = Report::default();
    macro_rules! case {
        ($name:literal, $call:expr) => {{
            let start = Instant::now();
            let out = if skip.contains(&$name) {
                Default::default()
            } else {
                $call.await.map_err(|e| format!("{}: {e}", $name))?
            };
            report.timings.push(($name, start.elapsed()));
            out
        }};
    }
    case!("zone_is_listed", case_zone_is_listed(p, zone));
    case!("each_type_lifecycle", case_each_type_lifecycle(p, zone));
    case!("txt_values", case_txt_values(p, zone));
    case!("multi_target_rrsets", case_multi_target_rrsets(p, zone));
    case!("ttl_change", case_ttl_change(p, zone));
    case!("wildcard_names", case_wildcard_names(p, zone));
    case!("apex_records", case_apex_records(p, zone));
    case!("names_differ_in_case", case_names_differ_in_case(p, zone));
    report.rejections = case!("bad_change_in_batch", case_bad_change_in_batch(p, zone));
    case!("stale_update_and_delete", case_stale_update_and_delete(p, zone));
    case!("refused_record_no_ownership", case_refused_record_leaves_no_ownership(p, zone, &[cname_beside_data(zone)]));
    case!("refused_update_keeps_ownership", case_refused_update_keeps_ownership(p, zone));
    case!("ownership_beside_apex_txt", case_ownership_beside_apex_txt(p, zone));
    case!("wildcard_ownership", case_wildcard_ownership(p, zone));
    case!("applied_answer_lost", case_applied_answer_lost(p, zone));
    let (create, delete) = case!("bulk", case_bulk(p, zone, BULK_RECORDS));
    report.bulk_create = create;
    report.bulk_delete = delete;
    Ok(report)
}

fn ep(name: &str, rt: RecordType, targets: &[&str]) -> Endpoint {
    Endpoint::new(name, rt, targets.iter().map(|t| t.to_string()).collect()).with_ttl(TTL)
}

fn sub(label: &str, zone: &Zone) -> String {
    format!("{label}.{}", zone.name)
}

/// True when `name` is `base` or below it.
fn under(name: &str, base: &str) -> bool {
    name == base || name.ends_with(&format!(".{base}"))
}

async fn list<P: Provider>(p: &P, zone: &Zone) -> Result<Vec<Endpoint>, String> {
    p.records(zone).await.map_err(|e| format!("listing zone {} failed: {e}", zone.name))
}

/// The RRsets at or below `base`, sorted, as (name, type, targets, ttl).
async fn rrsets_under<P: Provider>(p: &P, zone: &Zone, base: &str) -> Result<Vec<Endpoint>, String> {
    let mut v: Vec<Endpoint> = list(p, zone).await?.into_iter().filter(|e| under(&e.dns_name, base)).collect();
    v.sort_by(|a, b| (&a.dns_name, a.record_type).cmp(&(&b.dns_name, b.record_type)));
    Ok(v)
}

fn show(eps: &[Endpoint]) -> String {
    if eps.is_empty() {
        return "nothing".into();
    }
    eps.iter()
        .map(|e| format!("{} {} {:?} ttl {:?}", e.dns_name, e.record_type, e.targets, e.ttl))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks that exactly `expected` (names, types, targets, TTLs) is held at or below `base`.
async fn expect_exactly<P: Provider>(
    p: &P,
    zone: &Zone,
    base: &str,
    expected: &[Endpoint],
    when: &str,
) -> Result<(), String> {
    let got = rrsets_under(p, zone, base).await?;
    let mut want: Vec<Endpoint> = expected.to_vec();
    want.sort_by(|a, b| (&a.dns_name, a.record_type).cmp(&(&b.dns_name, b.record_type)));
    let same = got.len() == want.len()
        && got.iter().zip(&want).all(|(g, w)| {
            g.dns_name == w.dns_name
                && g.record_type == w.record_type
                && g.targets == w.targets
                && (w.ttl.is_none() || g.ttl == w.ttl)
        });
    if same {
        Ok(())
    } else {
        Err(format!("{when}: expected under {base}: {}; found: {}", show(&want), show(&got)))
    }
}

async fn expect_empty<P: Provider>(p: &P, zone: &Zone, base: &str, when: &str) -> Result<(), String> {
    expect_exactly(p, zone, base, &[], when).await
}

/// Applies changes that must all succeed.
async fn apply_ok<P: Provider>(p: &P, zone: &Zone, changes: &[Change], what: &str) -> Result<(), String> {
    let results = p.apply(zone, changes).await;
    check_result_count(&results, changes, what)?;
    let failed: Vec<String> = changes
        .iter()
        .zip(&results)
        .filter_map(|(c, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("{} {} {}: {e}", c.verb(), c.endpoint().dns_name, c.endpoint().record_type))
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: {} of {} changes failed: {}", failed.len(), changes.len(), failed.join("; ")))
    }
}

fn check_result_count(results: &[ChangeResult], changes: &[Change], what: &str) -> Result<(), String> {
    if results.len() != changes.len() {
        return Err(format!("{what}: apply returned {} results for {} changes", results.len(), changes.len()));
    }
    Ok(())
}

fn expect_rejected(r: &ChangeResult, what: &str) -> Result<(), String> {
    match r {
        Err(ProviderError::Rejected(_)) => Ok(()),
        other => Err(format!("{what}: expected Err(Rejected), got {other:?}")),
    }
}

/// The zone under test is among the provider's zones, and lists without error.
pub async fn case_zone_is_listed<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let zones = p.zones().await.map_err(|e| format!("zones() failed: {e}"))?;
    if !zones.iter().any(|z| z.name == zone.name) {
        return Err(format!("zone {} is not among {:?}", zone.name, zones.iter().map(|z| &z.name).collect::<Vec<_>>()));
    }
    list(p, zone).await.map(|_| ())
}

/// Create, update and delete of one RRset of every common type.
pub async fn case_each_type_lifecycle<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("types", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let n = |label: &str| format!("{label}.{base}");
    let cases: Vec<(Endpoint, Endpoint)> = vec![
        (ep(&n("a"), RecordType::A, &["192.0.2.1"]), ep(&n("a"), RecordType::A, &["192.0.2.2"])),
        (ep(&n("aaaa"), RecordType::AAAA, &["2001:db8::1"]), ep(&n("aaaa"), RecordType::AAAA, &["2001:db8::2"])),
        (ep(&n("cname"), RecordType::CNAME, &[&n("a")]), ep(&n("cname"), RecordType::CNAME, &[&n("aaaa")])),
        (
            ep(&n("txt"), RecordType::TXT, &["heritage=external-dns,external-dns/owner=default"]),
            ep(&n("txt"), RecordType::TXT, &["v=2"]),
        ),
        (
            ep(&format!("_sip._tcp.{base}"), RecordType::SRV, &[&format!("0 5 5060 {}", n("a"))]),
            ep(&format!("_sip._tcp.{base}"), RecordType::SRV, &[&format!("10 20 5061 {}", n("a"))]),
        ),
        (
            ep(&n("mx"), RecordType::MX, &[&format!("10 {}", n("a"))]),
            ep(&n("mx"), RecordType::MX, &[&format!("20 {}", n("aaaa"))]),
        ),
        (ep(&n("ptr"), RecordType::PTR, &["host.example.org"]), ep(&n("ptr"), RecordType::PTR, &["other.example.org"])),
        (
            ep(&n("caa"), RecordType::CAA, &["0 issue \"letsencrypt.org\""]),
            ep(&n("caa"), RecordType::CAA, &["0 issuewild \"pki.example.org\""]),
        ),
        (ep(&n("ns"), RecordType::NS, &["ns1.example.org"]), ep(&n("ns"), RecordType::NS, &["ns2.example.org"])),
    ];
    let olds: Vec<Endpoint> = cases.iter().map(|(o, _)| o.clone()).collect();
    let news: Vec<Endpoint> = cases.iter().map(|(_, n)| n.clone()).collect();

    apply_ok(p, zone, &olds.iter().cloned().map(Change::Create).collect::<Vec<_>>(), "create one RRset per type")
        .await?;
    expect_exactly(p, zone, &base, &olds, "after create").await?;
    let updates: Vec<Change> = cases.iter().map(|(o, n)| Change::Update { old: o.clone(), new: n.clone() }).collect();
    apply_ok(p, zone, &updates, "update one RRset per type").await?;
    expect_exactly(p, zone, &base, &news, "after update").await?;
    apply_ok(p, zone, &news.iter().cloned().map(Change::Delete).collect::<Vec<_>>(), "delete one RRset per type")
        .await?;
    expect_empty(p, zone, &base, "after delete").await
}

/// TXT values with spaces, quotes, and over 255 bytes (several character-strings on the wire)
/// come back as the one value that was written.
pub async fn case_txt_values<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("txt", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let long: String = (0..300).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let spaced = "heritage=external-dns,external-dns/owner=default,external-dns/resource=service/ns/my svc";
    let records = vec![
        ep(&format!("spaces.{base}"), RecordType::TXT, &[spaced]),
        ep(&format!("long.{base}"), RecordType::TXT, &[&long]),
        ep(&format!("quotes.{base}"), RecordType::TXT, &["say \"hi\"; a\\b"]),
        ep(&format!("two.{base}"), RecordType::TXT, &["first value", "second value"]),
    ];
    apply_ok(p, zone, &records.iter().cloned().map(Change::Create).collect::<Vec<_>>(), "create TXT records").await?;
    expect_exactly(p, zone, &base, &records, "after creating TXT records").await?;
    let longer = format!("{long}{long}");
    let updated = ep(&format!("long.{base}"), RecordType::TXT, &[&longer]);
    apply_ok(p, zone, &[Change::Update { old: records[1].clone(), new: updated.clone() }], "update the long TXT")
        .await?;
    let mut now = records.clone();
    now[1] = updated;
    expect_exactly(p, zone, &base, &now, "after updating the long TXT").await?;
    apply_ok(p, zone, &now.iter().cloned().map(Change::Delete).collect::<Vec<_>>(), "delete TXT records").await?;
    expect_empty(p, zone, &base, "after delete").await
}

/// RRsets with several values: create, update to an overlapping set, shrink, delete.
pub async fn case_multi_target_rrsets<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("multi", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let name = format!("web.{base}");
    let v1 = ep(&name, RecordType::A, &["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    let v2 = ep(&name, RecordType::A, &["192.0.2.3", "192.0.2.4"]);
    let v3 = ep(&name, RecordType::A, &["192.0.2.4"]);
    // Out-of-zone hosts: BIND refuses MX targets in the zone that have no address records.
    let mx = ep(&name, RecordType::MX, &["10 mx1.example.org", "20 mx2.example.org"]);
    apply_ok(p, zone, &[Change::Create(v1.clone()), Change::Create(mx.clone())], "create multi-value RRsets").await?;
    expect_exactly(p, zone, &base, &[v1.clone(), mx.clone()], "after create").await?;
    apply_ok(p, zone, &[Change::Update { old: v1, new: v2.clone() }], "update to an overlapping set").await?;
    expect_exactly(p, zone, &base, &[v2.clone(), mx.clone()], "after the overlapping update").await?;
    apply_ok(p, zone, &[Change::Update { old: v2, new: v3.clone() }], "shrink to one value").await?;
    expect_exactly(p, zone, &base, &[v3.clone(), mx.clone()], "after shrinking").await?;
    apply_ok(p, zone, &[Change::Delete(v3), Change::Delete(mx)], "delete").await?;
    expect_empty(p, zone, &base, "after delete").await
}

/// A TTL-only update changes the TTL and keeps the values.
pub async fn case_ttl_change<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("ttl", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let before = ep(&format!("app.{base}"), RecordType::A, &["192.0.2.10", "192.0.2.11"]);
    let after = before.clone().with_ttl(60);
    apply_ok(p, zone, &[Change::Create(before.clone())], "create").await?;
    expect_exactly(p, zone, &base, std::slice::from_ref(&before), "after create").await?;
    apply_ok(p, zone, &[Change::Update { old: before, new: after.clone() }], "change TTL 300 -> 60").await?;
    expect_exactly(p, zone, &base, std::slice::from_ref(&after), "after the TTL change").await?;
    apply_ok(p, zone, &[Change::Delete(after)], "delete").await?;
    expect_empty(p, zone, &base, "after delete").await
}

/// `*.x` names are ordinary RRsets to the provider.
pub async fn case_wildcard_names<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("wild", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let a = ep(&format!("*.{base}"), RecordType::A, &["192.0.2.20"]);
    let txt = ep(&format!("*.{base}"), RecordType::TXT, &["wildcard owner"]);
    let a2 = ep(&format!("*.{base}"), RecordType::A, &["192.0.2.21"]);
    apply_ok(p, zone, &[Change::Create(a.clone()), Change::Create(txt.clone())], "create wildcard records").await?;
    expect_exactly(p, zone, &base, &[a.clone(), txt.clone()], "after create").await?;
    apply_ok(p, zone, &[Change::Update { old: a, new: a2.clone() }], "update the wildcard A").await?;
    expect_exactly(p, zone, &base, &[a2.clone(), txt.clone()], "after update").await?;
    apply_ok(p, zone, &[Change::Delete(a2), Change::Delete(txt)], "delete").await?;
    expect_empty(p, zone, &base, "after delete").await
}

/// Records at the zone apex, next to the SOA and NS the provider does not list as ours.
pub async fn case_apex_records<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let apex = zone.name.clone();
    let at_apex = |eps: Vec<Endpoint>| -> Vec<Endpoint> {
        eps.into_iter()
            .filter(|e| e.dns_name == apex && matches!(e.record_type, RecordType::A | RecordType::TXT))
            .collect()
    };
    let before = at_apex(list(p, zone).await?);
    if !before.is_empty() {
        return Err(format!("before the case: the apex already holds {}", show(&before)));
    }
    let a = ep(&apex, RecordType::A, &["192.0.2.30"]);
    let txt = ep(&apex, RecordType::TXT, &["v=spf1 -all"]);
    let a2 = ep(&apex, RecordType::A, &["192.0.2.31", "192.0.2.32"]);
    apply_ok(p, zone, &[Change::Create(a.clone()), Change::Create(txt.clone())], "create apex A and TXT").await?;
    let got = at_apex(list(p, zone).await?);
    if got.len() != 2 || got.iter().all(|e| e.targets != a.targets) {
        return Err(format!("after create: expected apex A {:?} and TXT, found {}", a.targets, show(&got)));
    }
    apply_ok(p, zone, &[Change::Update { old: a, new: a2.clone() }], "update apex A").await?;
    let got = at_apex(list(p, zone).await?);
    if !got.iter().any(|e| e.record_type == RecordType::A && e.targets == a2.targets) {
        return Err(format!("after update: expected apex A {:?}, found {}", a2.targets, show(&got)));
    }
    apply_ok(p, zone, &[Change::Delete(a2), Change::Delete(txt)], "delete apex A and TXT").await?;
    let got = at_apex(list(p, zone).await?);
    if !got.is_empty() {
        return Err(format!("after delete: the apex still holds {}", show(&got)));
    }
    let soa_or_ns_listed: Vec<Endpoint> =
        list(p, zone).await?.into_iter().filter(|e| e.dns_name == apex && e.record_type == RecordType::NS).collect();
    if !soa_or_ns_listed.is_empty() {
        return Err(format!("the apex NS RRset is not extdns' to manage but was listed: {}", show(&soa_or_ns_listed)));
    }
    Ok(())
}

/// Names are case-insensitive: spellings that differ only in case are one RRset, listed in
/// lower case. Endpoints here are built by `Endpoint::new`, as the planner builds them.
pub async fn case_names_differ_in_case<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("case", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let upper = format!("MiXeD.{}", base.to_uppercase());
    let mixed = ep(&upper, RecordType::A, &["192.0.2.40"]);
    apply_ok(p, zone, &[Change::Create(mixed)], "create MiXeD name").await?;
    let lower = ep(&format!("mixed.{base}"), RecordType::A, &["192.0.2.40"]);
    expect_exactly(p, zone, &base, &[lower], "after create").await?;
    let again = [Change::Create(ep(&format!("mixed.{base}"), RecordType::A, &["192.0.2.41"]))];
    let results = p.apply(zone, &again).await;
    check_result_count(&results, &again, "create the same name in lower case")?;
    expect_rejected(&results[0], "create of an RRset that exists under another spelling")?;
    apply_ok(
        p,
        zone,
        &[Change::Delete(ep(&upper.to_uppercase(), RecordType::A, &["192.0.2.40"]))],
        "delete by UPPER CASE name",
    )
    .await?;
    expect_empty(p, zone, &base, "after delete").await
}

/// One apply with good changes around bad ones: the good ones are applied, each bad one fails
/// alone with `Rejected`, and results come back in order. Returns the rejection messages.
pub async fn case_bad_change_in_batch<P: Provider>(p: &P, zone: &Zone) -> Result<Vec<String>, String> {
    let base = sub("badbatch", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let taken = ep(&format!("taken.{base}"), RecordType::A, &["192.0.2.50"]);
    apply_ok(p, zone, &[Change::Create(taken.clone())], "seed").await?;
    let good: Vec<Endpoint> =
        (1..=5).map(|i| ep(&format!("good{i}.{base}"), RecordType::A, &[&format!("192.0.2.{}", 50 + i)])).collect();
    let changes = vec![
        Change::Create(good[0].clone()),
        // A CNAME cannot join the A at this name.
        Change::Create(ep(&format!("taken.{base}"), RecordType::CNAME, &[&format!("good1.{base}")])),
        Change::Create(good[1].clone()),
        Change::Create(good[2].clone()),
        // The RRset exists already, with other values.
        Change::Create(ep(&format!("taken.{base}"), RecordType::A, &["192.0.2.99"])),
        Change::Create(good[3].clone()),
        // Outside the zone.
        Change::Create(ep("stray.invalid", RecordType::A, &["192.0.2.98"])),
        Change::Create(good[4].clone()),
    ];
    let results = p.apply(zone, &changes).await;
    check_result_count(&results, &changes, "mixed batch")?;
    let mut rejections = Vec::new();
    for (i, r) in results.iter().enumerate() {
        match i {
            1 | 4 | 6 => {
                expect_rejected(r, &format!("change {i} ({} {})", changes[i].verb(), changes[i].endpoint().dns_name))?;
                if let Err(e) = r {
                    rejections.push(e.to_string());
                }
            }
            _ => {
                if let Err(e) = r {
                    return Err(format!(
                        "change {i} (create {}) should have been applied but failed: {e}",
                        changes[i].endpoint().dns_name
                    ));
                }
            }
        }
    }
    let mut expected = good.clone();
    expected.push(taken.clone());
    expect_exactly(p, zone, &base, &expected, "after the mixed batch").await?;
    let mut cleanup: Vec<Change> = good.into_iter().map(Change::Delete).collect();
    cleanup.push(Change::Delete(taken));
    apply_ok(p, zone, &cleanup, "cleanup").await?;
    expect_empty(p, zone, &base, "after cleanup").await?;
    Ok(rejections)
}

/// An update whose old values the provider does not hold (someone changed the record
/// meanwhile), and an update or delete of an RRset that is gone, are rejected and change nothing.
pub async fn case_stale_update_and_delete<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("stale", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let held = ep(&format!("app.{base}"), RecordType::A, &["192.0.2.60"]);
    apply_ok(p, zone, &[Change::Create(held.clone())], "seed").await?;
    let believed = ep(&format!("app.{base}"), RecordType::A, &["192.0.2.61"]);
    let wanted = ep(&format!("app.{base}"), RecordType::A, &["192.0.2.62"]);
    let missing = ep(&format!("missing.{base}"), RecordType::A, &["192.0.2.63"]);
    let changes = vec![
        Change::Update { old: believed, new: wanted.clone() },
        Change::Delete(missing.clone()),
        Change::Update { old: missing, new: wanted },
    ];
    let results = p.apply(zone, &changes).await;
    check_result_count(&results, &changes, "stale changes")?;
    for (i, r) in results.iter().enumerate() {
        expect_rejected(r, &format!("stale change {i} ({} {})", changes[i].verb(), changes[i].endpoint().dns_name))?;
    }
    expect_exactly(p, zone, &base, std::slice::from_ref(&held), "after the stale changes").await?;
    apply_ok(p, zone, &[Change::Delete(held)], "cleanup").await?;
    expect_empty(p, zone, &base, "after cleanup").await
}

/// `n` creates in one apply, then `n` deletes in one apply; returns how long each took.
pub async fn case_bulk<P: Provider>(p: &P, zone: &Zone, n: usize) -> Result<(Duration, Duration), String> {
    let base = sub("bulk", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let records: Vec<Endpoint> = (0..n)
        .map(|i| {
            ep(
                &format!("r{i}.{base}"),
                RecordType::A,
                &[&format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)],
            )
        })
        .collect();
    let start = Instant::now();
    apply_ok(p, zone, &records.iter().cloned().map(Change::Create).collect::<Vec<_>>(), "bulk create").await?;
    let created = start.elapsed();
    let listed = rrsets_under(p, zone, &base).await?;
    if listed.len() != n || listed.iter().any(|e| e.targets.len() != 1) {
        return Err(format!(
            "after bulk create: expected {n} single-value A RRsets under {base}, found {}",
            listed.len()
        ));
    }
    let start = Instant::now();
    apply_ok(p, zone, &records.into_iter().map(Change::Delete).collect::<Vec<_>>(), "bulk delete").await?;
    let deleted = start.elapsed();
    expect_empty(p, zone, &base, "after bulk delete").await?;
    Ok((created, deleted))
}

/// Network providers only: names handed to the provider in mixed case (not normalised) still
/// address one RRset, because the server compares names case-insensitively.
pub async fn case_names_in_any_case<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("rawcase", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let raw = |name: String, target: &str| {
        let mut e = ep("placeholder", RecordType::A, &[target]);
        e.dns_name = name;
        e
    };
    let stored = raw(format!("MiXeD.{}", base.to_uppercase()), "192.0.2.70");
    apply_ok(p, zone, &[Change::Create(stored.clone())], "create with a MiXeD name").await?;
    expect_exactly(p, zone, &base, &[ep(&format!("mixed.{base}"), RecordType::A, &["192.0.2.70"])], "after create")
        .await?;
    let results = p.apply(zone, &[Change::Create(raw(format!("mixed.{base}"), "192.0.2.71"))]).await;
    expect_rejected(
        results.first().unwrap_or(&Ok(Applied::Live)),
        "create under another spelling of an existing RRset",
    )?;
    let old = raw(format!("MIXED.{base}"), "192.0.2.70");
    let new = raw(format!("mixed.{base}"), "192.0.2.72");
    apply_ok(p, zone, &[Change::Update { old, new: new.clone() }], "update by another spelling").await?;
    expect_exactly(p, zone, &base, &[ep(&format!("mixed.{base}"), RecordType::A, &["192.0.2.72"])], "after update")
        .await?;
    apply_ok(p, zone, &[Change::Delete(raw(format!("mIxEd.{base}"), "192.0.2.72"))], "delete by a third spelling")
        .await?;
    expect_empty(p, zone, &base, "after delete").await
}

/// Network providers only: `p` is keyed wrongly. Every change fails with `AuthFailed` and
/// listing fails with `AuthFailed`. Returns the two error messages, change first.
pub async fn case_auth_failure<P: Provider>(p: &P, zone: &Zone) -> Result<(String, String), String> {
    let base = sub("auth", zone);
    let changes: Vec<Change> = (0..3)
        .map(|i| Change::Create(ep(&format!("r{i}.{base}"), RecordType::A, &[&format!("192.0.2.{}", 80 + i)])))
        .collect();
    let results = p.apply(zone, &changes).await;
    check_result_count(&results, &changes, "apply with a wrong key")?;
    for (i, r) in results.iter().enumerate() {
        if !matches!(r, Err(ProviderError::AuthFailed(_))) {
            return Err(format!("change {i} with a wrong key: expected Err(AuthFailed), got {r:?}"));
        }
    }
    let change_error = results.first().and_then(|r| r.as_ref().err()).map(|e| e.to_string()).unwrap_or_default();
    match p.records(zone).await {
        Err(e @ ProviderError::AuthFailed(_)) => Ok((change_error, e.to_string())),
        Ok(eps) => Err(format!("listing with a wrong key: expected Err(AuthFailed), got {} records", eps.len())),
        Err(e) => Err(format!("listing with a wrong key: expected Err(AuthFailed), got Err({e:?})")),
    }
}

/// Network providers only: `p` points where nothing listens. Listing and every change fail
/// with `Unreachable` within `within`.
pub async fn case_unreachable<P: Provider>(p: &P, zone: &Zone, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    match p.records(zone).await {
        Err(ProviderError::Unreachable(_)) => {}
        other => return Err(format!("listing with the server down: expected Err(Unreachable), got {other:?}")),
    }
    let base = sub("down", zone);
    let changes: Vec<Change> = (0..3)
        .map(|i| Change::Create(ep(&format!("r{i}.{base}"), RecordType::A, &[&format!("192.0.2.{}", 90 + i)])))
        .collect();
    let results = p.apply(zone, &changes).await;
    check_result_count(&results, &changes, "apply with the server down")?;
    for (i, r) in results.iter().enumerate() {
        match r {
            Err(e @ ProviderError::Unreachable(_)) if e.is_transient() => {}
            other => return Err(format!("change {i} with the server down: expected Err(Unreachable), got {other:?}")),
        }
    }
    let took = start.elapsed();
    if took > within {
        return Err(format!("failing against a stopped server took {took:?}, more than {within:?}"));
    }
    Ok(took)
}

/// Owner id of the records the ownership cases write.
const OWNER: &str = "conformance";

fn ownership_registry() -> TxtRegistry {
    TxtRegistry::new(TxtRegistryConfig { owner_id: OWNER.into(), ..Default::default() })
        .expect("the conformance registry config is valid")
}

/// A record of ours, as the planner hands it over: owner and resource labels set.
fn owned(name: &str, rt: RecordType, targets: &[&str], resource: &str) -> Endpoint {
    let mut e = ep(name, rt, targets);
    e.labels.insert(label::OWNER.into(), OWNER.into());
    e.labels.insert(label::RESOURCE.into(), resource.into());
    e
}

async fn ownership_view<P: Provider>(p: &P, zone: &Zone) -> Result<RegistryView, String> {
    Ok(ownership_registry().view_in_zone(list(p, zone).await?, &zone.name))
}

/// Expands `changes` against what the zone holds now and applies them as the controller does.
async fn apply_owned<P: Provider>(
    p: &P,
    zone: &Zone,
    changes: &[Change],
) -> Result<(Vec<Expanded>, Vec<ChangeResult>), String> {
    let expanded = ownership_registry().expand(&ownership_view(p, zone).await?, changes);
    let results = apply_with_ownership(p, zone, &expanded).await;
    if results.len() != expanded.len() {
        return Err(format!("{} results for {} expanded changes", results.len(), expanded.len()));
    }
    Ok((expanded, results))
}

/// Fails unless every expanded change succeeded.
fn all_ok(expanded: &[Expanded], results: &[ChangeResult], what: &str) -> Result<(), String> {
    let failed: Vec<String> = expanded
        .iter()
        .zip(results)
        .filter_map(|(e, r)| {
            r.as_ref().err().map(|err| format!("{} {}: {err}", e.change.verb(), e.change.endpoint().key()))
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: {}", failed.join("; ")))
    }
}

/// Names of the ownership TXT records of ours in the zone.
async fn our_ownership_names<P: Provider>(p: &P, zone: &Zone) -> Result<Vec<String>, String> {
    let view = ownership_view(p, zone).await?;
    let mut names: Vec<String> = view
        .ownership_records()
        .filter(|t| t.targets.iter().any(|v| v.contains(&format!("external-dns/owner={OWNER}"))))
        .map(|t| t.dns_name.clone())
        .collect();
    names.sort();
    Ok(names)
}

fn sorted(values: &[String]) -> Vec<String> {
    let mut v = values.to_vec();
    v.sort();
    v
}

/// A wildcard record and its ownership TXT at `a-*.<rest>`, as external-dns writes it without
/// a wildcard replacement: the backend takes the name, lists it back as written, and the
/// registry owns the record through it; deleting removes both.
pub async fn case_wildcard_ownership<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("wildown", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let a = owned(&format!("*.{base}"), RecordType::A, &["192.0.2.30"], "crd/conformance/wild");
    let (expanded, results) = apply_owned(p, zone, &[Change::Create(a.clone())]).await?;
    all_ok(&expanded, &results, "create the wildcard and its TXT")?;
    let txt_name = format!("a-*.{base}");
    if our_ownership_names(p, zone).await?.iter().filter(|n| under(n, &base)).ne([&txt_name]) {
        return Err(format!(
            "the wildcard's TXT is not listed as {txt_name}: {:?}",
            our_ownership_names(p, zone).await?
        ));
    }
    let view = ownership_view(p, zone).await?;
    let held = view
        .endpoints
        .iter()
        .find(|e| e.dns_name == a.dns_name && e.record_type == RecordType::A)
        .ok_or_else(|| format!("{} A is not listed", a.dns_name))?;
    if held.labels.get(label::OWNER).map(String::as_str) != Some(OWNER) {
        return Err(format!("{} A is not owned through {txt_name}: {:?}", a.dns_name, held.labels));
    }
    let (expanded, results) = apply_owned(p, zone, &[Change::Delete(held.clone())]).await?;
    all_ok(&expanded, &results, "delete the wildcard and its TXT")?;
    expect_empty(p, zone, &base, "after delete").await
}

/// A provider whose calls go through to `inner` but whose answers are lost for the calls
/// (numbered from 0) in `lose`: the backend applied the changes, extdns hears `Unreachable`,
/// as when Cloudflare answers 502 after committing a batch or a webhook 500 after writing.
pub struct LosesAnswers<'a, P> {
    inner: &'a P,
    lose: Vec<usize>,
    calls: std::sync::Mutex<usize>,
}

impl<'a, P: Provider> LosesAnswers<'a, P> {
    pub fn new(inner: &'a P, lose: &[usize]) -> Self {
        LosesAnswers { inner, lose: lose.to_vec(), calls: std::sync::Mutex::new(0) }
    }
}

#[async_trait::async_trait]
impl<P: Provider> Provider for LosesAnswers<'_, P> {
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        self.inner.zones().await
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        self.inner.records(zone).await
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        let results = self.inner.apply(zone, changes).await;
        let call = {
            let mut n = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            *n - 1
        };
        if !self.lose.contains(&call) {
            return results;
        }
        results
            .into_iter()
            .map(|_| Err(ProviderError::Unreachable("the answer was lost after the backend applied the change".into())))
            .collect()
    }

    fn check(&self, zone: &Zone, change: &Change) -> Result<(), ProviderError> {
        self.inner.check(zone, change)
    }
}

/// "Applied, answer lost": a change the backend applied but whose answer was lost is retried
/// as the controller retries it (the same changes, expanded against the view from before,
/// which took nothing of the lost call), and the retry, finding its own ownership TXT and
/// record, reports success instead of "already exists". For a lost ownership TXT create (the
/// record then not sent), a lost record create, update and delete.
pub async fn case_applied_answer_lost<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("lost", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let registry = ownership_registry();
    let first_fails = |expanded: &[Expanded], results: &[ChangeResult], what: &str| -> Result<(), String> {
        if results.len() != expanded.len() || !results.iter().any(|r| matches!(r, Err(e) if e.is_transient())) {
            return Err(format!("{what}: the first attempt should report a lost answer, got {results:?}"));
        }
        Ok(())
    };
    let resource = "crd/conformance/lost";
    let txt_lost = owned(&format!("txt.{base}"), RecordType::A, &["192.0.2.40"], resource);
    let data_lost = owned(&format!("data.{base}"), RecordType::A, &["192.0.2.41"], resource);
    // TTL not compared: a webhook gets ownership TXTs without one, as external-dns sends them.
    let txt_of = |e: &Endpoint| Endpoint { ttl: None, ..ownership_registry().ownership_record(e) };

    // Lost: the ownership TXT create (call 0); its record was then not sent.
    let stale = ownership_view(p, zone).await?;
    let create = [Change::Create(txt_lost.clone())];
    let expanded = registry.expand(&stale, &create);
    let results = apply_with_ownership(&LosesAnswers::new(p, &[0]), zone, &expanded).await;
    first_fails(&expanded, &results, "lost TXT create")?;
    let expanded = registry.expand(&stale, &create);
    let results = apply_with_ownership(p, zone, &expanded).await;
    all_ok(&expanded, &results, "retry of a create whose TXT answer was lost")?;

    // Lost: the record create (call 1), its TXT answered.
    let stale = ownership_view(p, zone).await?;
    let create = [Change::Create(data_lost.clone())];
    let expanded = registry.expand(&stale, &create);
    let results = apply_with_ownership(&LosesAnswers::new(p, &[1]), zone, &expanded).await;
    first_fails(&expanded, &results, "lost record create")?;
    let mut cached = ownership_view(p, zone).await?;
    cached.endpoints.retain(|e| e.dns_name != data_lost.dns_name);
    let expanded = registry.expand(&cached, &create);
    let results = apply_with_ownership(p, zone, &expanded).await;
    all_ok(&expanded, &results, "retry of a create whose record answer was lost")?;
    let both = [txt_lost.clone(), txt_of(&txt_lost), data_lost.clone(), txt_of(&data_lost)];
    expect_exactly(p, zone, &base, &both, "after the lost creates").await?;

    // Lost: the record update (call 0: its TXT needs no change).
    let stale = ownership_view(p, zone).await?;
    let held = stale
        .endpoints
        .iter()
        .find(|e| e.dns_name == data_lost.dns_name)
        .cloned()
        .ok_or_else(|| format!("{} is not listed", data_lost.dns_name))?;
    let moved = owned(&data_lost.dns_name, RecordType::A, &["192.0.2.42"], resource);
    let update = [Change::Update { old: held.clone(), new: moved.clone() }];
    let expanded = registry.expand(&stale, &update);
    let results = apply_with_ownership(&LosesAnswers::new(p, &[0]), zone, &expanded).await;
    first_fails(&expanded, &results, "lost update")?;
    let results = apply_with_ownership(p, zone, &registry.expand(&stale, &update)).await;
    all_ok(&expanded, &results, "retry of an update whose answer was lost")?;
    let both = [txt_lost.clone(), txt_of(&txt_lost), moved.clone(), txt_of(&data_lost)];
    expect_exactly(p, zone, &base, &both, "after the lost update").await?;

    // Lost: the record deletes (call 0); their TXT removals wait for the retry.
    let stale = ownership_view(p, zone).await?;
    let deletes: Vec<Change> =
        stale.endpoints.iter().filter(|e| under(&e.dns_name, &base)).cloned().map(Change::Delete).collect();
    let expanded = registry.expand(&stale, &deletes);
    let results = apply_with_ownership(&LosesAnswers::new(p, &[0]), zone, &expanded).await;
    first_fails(&expanded, &results, "lost deletes")?;
    let expanded = registry.expand(&stale, &deletes);
    let results = apply_with_ownership(p, zone, &expanded).await;
    all_ok(&expanded, &results, "retry of deletes whose answer was lost")?;
    expect_empty(p, zone, &base, "after the lost deletes").await
}

/// A wildcard record whose ownership TXT goes to `a-*.<rest>` (external-dns's naming without a
/// wildcard replacement), for backends that cannot hold that name and must refuse both.
pub fn wildcard_with_default_txt(zone: &Zone) -> Endpoint {
    owned(&format!("*.{}", sub("wildref", zone)), RecordType::A, &["192.0.2.31"], "crd/conformance/wildref")
}

/// A CNAME at a name that holds an A record already: refused by every DNS server and by the
/// in-memory provider. The case seeds that A (`taken.refused.<zone>`) itself.
pub fn cname_beside_data(zone: &Zone) -> Endpoint {
    owned(&format!("taken.{}", sub("refused", zone)), RecordType::CNAME, &[&zone.name], "crd/conformance/beside")
}

/// A CNAME at the zone apex, next to its SOA and NS: refused by DNS servers (the RFC 2136
/// provider requires the name to be unused), accepted by the in-memory provider and by moto.
pub fn cname_at_apex(zone: &Zone) -> Endpoint {
    owned(&zone.name, RecordType::CNAME, &[&format!("target.{}", sub("refused", zone))], "crd/conformance/apex")
}

/// A record the backend refuses leaves no ownership TXT behind; records of the same batch
/// that the backend takes keep theirs.
///
/// `refused` are records this backend refuses to create (see [`cname_beside_data`],
/// [`cname_at_apex`]); they go out in one batch with a record it accepts. Ownership is
/// written as the controller writes it: through [`TxtRegistry::expand`] and
/// [`apply_with_ownership`].
pub async fn case_refused_record_leaves_no_ownership<P: Provider>(
    p: &P,
    zone: &Zone,
    refused: &[Endpoint],
) -> Result<(), String> {
    let base = sub("refused", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let before = our_ownership_names(p, zone).await?;
    if !before.is_empty() {
        return Err(format!("before the case: ownership TXT records of {OWNER} exist: {before:?}"));
    }
    let taken = ep(&format!("taken.{base}"), RecordType::A, &["192.0.2.70"]);
    apply_ok(p, zone, &[Change::Create(taken.clone())], "seed").await?;

    let fine = owned(&format!("fine.{base}"), RecordType::A, &["192.0.2.71"], "crd/conformance/fine");
    let mut changes: Vec<Change> = refused.iter().cloned().map(Change::Create).collect();
    changes.push(Change::Create(fine.clone()));
    let (expanded, results) = apply_owned(p, zone, &changes).await?;
    for (e, r) in expanded.iter().zip(&results) {
        let of_fine = e.index == changes.len() - 1;
        match (of_fine, r) {
            (true, Err(err)) => {
                return Err(format!(
                    "{} {} (for the accepted record) failed: {err}",
                    e.change.verb(),
                    e.change.endpoint().key()
                ))
            }
            (false, Ok(_)) => {
                return Err(format!(
                    "{} {} succeeded, but the backend was expected to refuse {}",
                    e.change.verb(),
                    e.change.endpoint().key(),
                    changes[e.index].endpoint().key()
                ))
            }
            _ => {}
        }
    }
    let fine_txt = ownership_registry().txt_name(&fine.dns_name, RecordType::A);
    let names = our_ownership_names(p, zone).await?;
    if names != vec![fine_txt.clone()] {
        return Err(format!("after the refused creates: expected only the ownership TXT {fine_txt}, found {names:?}"));
    }
    let at_apex: Vec<Endpoint> = list(p, zone).await?.into_iter().filter(|e| e.dns_name == zone.name).collect();
    if at_apex.iter().any(|e| matches!(e.record_type, RecordType::CNAME | RecordType::TXT)) {
        return Err(format!("after the refused creates: the apex holds {}", show(&at_apex)));
    }

    let held = ownership_view(p, zone).await?;
    let ours: Vec<Change> = held
        .endpoints
        .iter()
        .filter(|e| e.dns_name.ends_with(&base) && e.labels.get(label::OWNER).map(String::as_str) == Some(OWNER))
        .cloned()
        .map(Change::Delete)
        .collect();
    let (expanded, results) = apply_owned(p, zone, &ours).await?;
    all_ok(&expanded, &results, "cleanup of our records")?;
    apply_ok(p, zone, &[Change::Delete(taken)], "cleanup of the seed").await?;
    expect_empty(p, zone, &base, "after cleanup").await?;
    let left = our_ownership_names(p, zone).await?;
    if !left.is_empty() {
        return Err(format!("after cleanup: ownership TXT records left: {left:?}"));
    }
    Ok(())
}

/// A refused update (its old values are stale: somebody changed the record meanwhile) that
/// would also have changed the ownership TXT (a new `resource`) leaves the TXT as it was.
pub async fn case_refused_update_keeps_ownership<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let base = sub("refusedupdate", zone);
    expect_empty(p, zone, &base, "before the case").await?;
    let fine = owned(&format!("fine.{base}"), RecordType::A, &["192.0.2.71"], "crd/conformance/fine");
    let (expanded, results) = apply_owned(p, zone, &[Change::Create(fine.clone())]).await?;
    all_ok(&expanded, &results, "create our record")?;
    let fine_txt = ownership_registry().txt_name(&fine.dns_name, RecordType::A);
    let stored_txt = |view: &RegistryView| view.ownership_records().find(|t| t.dns_name == fine_txt).cloned();
    let txt_before = stored_txt(&ownership_view(p, zone).await?);
    let mut stale = fine.clone();
    stale.targets = vec!["192.0.2.79".into()];
    let moved = owned(&fine.dns_name, RecordType::A, &["192.0.2.72"], "crd/conformance/moved");
    let (expanded, results) = apply_owned(p, zone, &[Change::Update { old: stale, new: moved }]).await?;
    if expanded.len() != 2 || results.iter().any(|r| r.is_ok()) {
        return Err(format!("stale update with a new owner label: expected both the record and its TXT change to fail, got {expanded:?} -> {results:?}"));
    }
    let txt_after = stored_txt(&ownership_view(p, zone).await?);
    if txt_after.as_ref().map(|t| sorted(&t.targets)) != txt_before.as_ref().map(|t| sorted(&t.targets)) {
        return Err(format!("after the refused update: ownership TXT was {txt_before:?}, is {txt_after:?}"));
    }

    if txt_before.is_none() {
        return Err(format!("our ownership TXT {fine_txt} was never written"));
    }
    let held = ownership_view(p, zone).await?;
    let ours: Vec<Change> =
        held.endpoints.iter().filter(|e| e.dns_name.ends_with(&base)).cloned().map(Change::Delete).collect();
    let (expanded, results) = apply_owned(p, zone, &ours).await?;
    all_ok(&expanded, &results, "cleanup")?;
    expect_empty(p, zone, &base, "after cleanup").await
}

/// At an apex whose TXT RRset holds an SPF value, the ownership value of our apex A joins that
/// RRset with the SPF value intact, the SPF value stays nobody's data, and deleting our A
/// removes only our value.
pub async fn case_ownership_beside_apex_txt<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let before = at_apex(list(p, zone).await?, zone);
    if !before.is_empty() {
        return Err(format!("before the case: the apex already holds {}", show(&before)));
    }
    apply_ok(p, zone, &[Change::Create(apex_spf(zone))], "seed the apex SPF").await?;
    case_ownership_beside_seeded_apex_txt(p, zone).await
}

/// The TXT RRset [`case_ownership_beside_apex_txt`] expects at the apex: one SPF value.
pub fn apex_spf(zone: &Zone) -> Endpoint {
    ep(&zone.name, RecordType::TXT, &["v=spf1 ip4:192.0.2.0/24 -all"])
}

/// The A and TXT RRsets at the apex.
fn at_apex(eps: Vec<Endpoint>, zone: &Zone) -> Vec<Endpoint> {
    eps.into_iter()
        .filter(|e| e.dns_name == zone.name && matches!(e.record_type, RecordType::A | RecordType::TXT))
        .collect()
}

/// [`case_ownership_beside_apex_txt`] for an apex seeded with [`apex_spf`] by the caller, for
/// backends where the seed must not go through `apply`; removes the seed at the end.
pub async fn case_ownership_beside_seeded_apex_txt<P: Provider>(p: &P, zone: &Zone) -> Result<(), String> {
    let apex = zone.name.clone();
    let apex_rrsets = |eps: Vec<Endpoint>| at_apex(eps, zone);
    let spf = apex_spf(zone).targets[0].clone();
    let before = apex_rrsets(list(p, zone).await?);
    if before.len() != 1 || before[0].targets != vec![spf.clone()] {
        return Err(format!("before the case: expected only the SPF TXT at the apex, found {}", show(&before)));
    }

    let a = owned(&apex, RecordType::A, &["192.0.2.80"], "crd/conformance/apex");
    let (expanded, results) = apply_owned(p, zone, &[Change::Create(a.clone())]).await?;
    all_ok(&expanded, &results, "create our apex A")?;
    let ownership_value = ownership_registry().ownership_record(&a).targets[0].clone();
    let held = apex_rrsets(list(p, zone).await?);
    let txt = held.iter().find(|e| e.record_type == RecordType::TXT);
    if txt.map(|t| sorted(&t.targets)) != Some(sorted(&[spf.clone(), ownership_value.clone()])) {
        return Err(format!(
            "after creating our apex A: expected the apex TXT to hold the SPF and our value, found {}",
            show(&held)
        ));
    }
    if !held.iter().any(|e| e.record_type == RecordType::A && e.targets == a.targets) {
        return Err(format!("after creating our apex A: A missing, found {}", show(&held)));
    }
    let view = ownership_view(p, zone).await?;
    let owner_of = |rt: RecordType| {
        view.endpoints
            .iter()
            .find(|e| e.dns_name == apex && e.record_type == rt)
            .map(|e| (e.targets.clone(), e.labels.get(label::OWNER).cloned()))
    };
    if owner_of(RecordType::A).and_then(|(_, o)| o).as_deref() != Some(OWNER) {
        return Err(format!("read back, our apex A is not ours: {:?}", owner_of(RecordType::A)));
    }
    if owner_of(RecordType::TXT) != Some((vec![spf.clone()], None)) {
        return Err(format!("read back, the SPF must be data of nobody's: {:?}", owner_of(RecordType::TXT)));
    }

    let held_a = view.endpoints.iter().find(|e| e.dns_name == apex && e.record_type == RecordType::A).cloned();
    let (expanded, results) = apply_owned(p, zone, &held_a.into_iter().map(Change::Delete).collect::<Vec<_>>()).await?;
    all_ok(&expanded, &results, "delete our apex A")?;
    let held = apex_rrsets(list(p, zone).await?);
    if held.len() != 1 || held[0].record_type != RecordType::TXT || held[0].targets != vec![spf.clone()] {
        return Err(format!("after deleting our apex A: expected only the SPF TXT, found {}", show(&held)));
    }
    apply_ok(p, zone, &[Change::Delete(held[0].clone())], "cleanup of the SPF").await?;
    let left = apex_rrsets(list(p, zone).await?);
    if !left.is_empty() {
        return Err(format!("after cleanup: the apex still holds {}", show(&left)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inmemory::InMemoryProvider;

    #[tokio::test]
    async fn in_memory_provider_passes_the_battery() {
        let zone = Zone::named("conformance.test");
        let p = InMemoryProvider::new([zone.name.as_str()]);
        let report = run_all(&p, &zone).await.unwrap_or_else(|e| panic!("in-memory provider: {e}"));
        println!("in-memory provider:\n{report}");
        assert!(p.all_records().is_empty(), "the battery left records behind: {:?}", p.all_records());
    }
}
