//! One tenant's DNSEndpoints cannot spend the memory every tenant shares (issue 19, scenario
//! 5): a namespace fills itself with objects as large as the schema and the apiserver allow,
//! for an inMemory provider of its own; the operator serves the oldest up to the namespace's
//! record limit, Stalls the rest with reason RecordLimit, and its peak RSS stays under the
//! Deployment's memory limit, also across a restart that lists them all again. Half the
//! objects carry the label of the source controller's objects, so its caches see them too.

use std::time::Duration;

use extdns::crd::dnsendpoint::MAX_ENDPOINTS;
use extdns::crd::{DNSEndpoint, DNSProvider};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::harness::*;

/// `resources.limits.memory` of config/manager/deployment.yaml.
const DEPLOYMENT_LIMIT_KIB: u64 = 256 * 1024;
/// Characters of each TXT value: with 1000 of them an object is about 1.3 MB, close to the
/// largest the apiserver stores (etcd's 1.5 MiB request limit, status included).
const TXT_LENGTH: usize = 1250;
/// About 42 MB of DNSEndpoints in one namespace.
const OBJECTS: usize = 32;
/// What the default `--max-records-per-namespace` (10,000) lets through: the ten oldest.
const SERVED: usize = 10;

/// The operator's peak resident memory so far (VmHWM), in KiB.
fn peak_rss_kib(op: &Operator) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", op.pid())).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn object(i: usize, zone: &str) -> DNSEndpoint {
    let endpoints: Vec<serde_json::Value> = (0..MAX_ENDPOINTS)
        .map(|j| {
            let value = format!("{i:02}-{j:04}-{}", "x".repeat(TXT_LENGTH - 8));
            json!({"dnsName": format!("r{j}.o{i:02}.{zone}"), "recordType": "TXT", "targets": [value]})
        })
        .collect();
    let mut obj = dnsendpoint(&format!("o{i:02}"), json!(endpoints));
    // Every other object carries the source controller's label, which a tenant may set too:
    // the source controller's caches see those.
    if i % 2 == 1 {
        obj["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "extdns"});
    }
    serde_json::from_value(obj).expect("DNSEndpoint")
}

/// How many of the namespace's objects are Ready for their generation, and how many Stalled
/// with reason RecordLimit.
async fn states(api: &Api<DNSEndpoint>) -> Option<(Vec<String>, Vec<String>)> {
    // A page at a time: each object is over a megabyte.
    let (mut ready, mut limited, mut token) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let mut lp = ListParams::default().limit(4);
        if let Some(t) = token.take() {
            lp = lp.continue_token(&t);
        }
        let page = api.list(&lp).await.ok()?;
        for ep in &page.items {
            let name = ep.metadata.name.clone().unwrap_or_default();
            let current = |t: &str| condition(ep, t).filter(|c| c.observed_generation == ep.metadata.generation);
            match current("Ready") {
                Some(c) if c.status == "True" => ready.push(name),
                Some(c) if c.reason == "RecordLimit" => {
                    let stalled = current("Stalled").is_some_and(|s| s.status == "True" && s.reason == "RecordLimit");
                    if stalled && c.message.contains("--max-records-per-namespace=10000") {
                        limited.push(name);
                    }
                }
                _ => {}
            }
        }
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Some((ready, limited)),
        }
    }
}

async fn wait_states(api: &Api<DNSEndpoint>, want_ready: &[String], want_limited: &[String]) {
    let what = format!("{} DNSEndpoints Ready and {} Stalled RecordLimit", want_ready.len(), want_limited.len());
    wait_for(&what, Duration::from_secs(300), || async move {
        let (ready, limited) = states(api).await?;
        (ready == want_ready && limited == want_limited).then_some(())
    })
    .await;
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("o{i:02}")).collect()
}

#[tokio::test]
async fn a_tenant_at_the_schema_bounds_cannot_exhaust_the_operators_memory() {
    let client = client().await;
    let ns = TestNs::new(&client, "budget", json!({})).await;
    let zone = "budget.e2e.test";
    // The shipped tenancy defaults and record limits.
    let mut op = Operator::start_strict("budget", &[], &[]);
    let providers: Api<DNSProvider> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &providers,
        "dns",
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "dns"},
            "spec": {"inMemory": {"zones": [zone]}, "domains": {"include": [zone]}, "policy": "sync",
                     "managedRecordTypes": ["TXT"]}
        }),
    )
    .await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let baseline = peak_rss_kib(&op);
    for i in 0..OBJECTS {
        eps.create(&PostParams::default(), &object(i, zone)).await.unwrap_or_else(|e| panic!("create o{i:02}: {e}"));
    }
    // Oldest first; objects created within one second go by name.
    wait_states(&eps, &names(0..SERVED), &names(SERVED..OBJECTS)).await;
    let served = peak_rss_kib(&op);

    // A restart lists them all again.
    op.restart();
    op.metrics().await;
    wait_for("the restarted operator to serve the records again", Duration::from_secs(300), || async {
        let m = op.metrics().await;
        let desired = m.lines().find_map(|l| l.strip_prefix("extdns_desired_records "))?.trim().parse::<u64>().ok()?;
        let p = providers.get_opt("dns").await.ok()??;
        let managed = p.status?.managed_records?;
        (desired == (SERVED * MAX_ENDPOINTS) as u64 && managed >= desired as i64).then_some(())
    })
    .await;
    wait_states(&eps, &names(0..SERVED), &names(SERVED..OBJECTS)).await;
    let restarted = peak_rss_kib(&op);

    // Room made in the namespace goes to the oldest object that fits.
    eps.delete("o00", &DeleteParams::default()).await.expect("delete o00");
    wait_states(&eps, &names(1..SERVED + 1), &names(SERVED + 1..OBJECTS)).await;
    let after_delete = peak_rss_kib(&op);

    eprintln!(
        "peak RSS (VmHWM): idle {} MiB, {OBJECTS} objects of {MAX_ENDPOINTS} TXT x {TXT_LENGTH} characters ({SERVED} served) {} MiB, \
         after a restart {} MiB, after a deletion {} MiB; limit {} MiB",
        baseline / 1024,
        served / 1024,
        restarted / 1024,
        after_delete / 1024,
        DEPLOYMENT_LIMIT_KIB / 1024
    );
    assert!(served < DEPLOYMENT_LIMIT_KIB, "peak RSS {served} KiB while serving, over the Deployment's limit");
    assert!(after_delete < DEPLOYMENT_LIMIT_KIB, "peak RSS {after_delete} KiB after a restart, over the limit");
    // The operator releases the finalizers of the namespace's objects.
    ns.cleanup().await;
    op.stop();
}
