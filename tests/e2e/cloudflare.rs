//! End-to-end test of the Cloudflare provider against the local fake of Cloudflare's v4 API
//! (`e2e/cloudflare/fake.py`): a Service's record lands in the fake with its ownership TXT,
//! follows the Service, is removed with it, a record somebody else holds is never touched,
//! and a 429 is waited out as its Retry-After says.

use std::time::Duration;

use extdns::crd::{DNSEndpoint, DNSProvider};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use crate::harness::*;

#[path = "../support/cloudflare_fake.rs"]
mod cloudflare_fake;

use cloudflare_fake::FakeCloudflare;

const TOKEN: &str = "e2e-cloudflare-token";

/// The fake's records named `name` of type `rtype`, as (content, ttl, proxied).
async fn held(fake: &FakeCloudflare, zone: &str, name: &str, rtype: &str) -> Vec<(String, u64, bool)> {
    let mut v: Vec<(String, u64, bool)> = fake
        .records(zone)
        .await
        .into_iter()
        .filter(|r| r["name"] == json!(name) && r["type"] == json!(rtype))
        .map(|r| {
            (
                r["content"].as_str().unwrap_or_default().to_string(),
                r["ttl"].as_u64().unwrap_or_default(),
                r["proxied"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn cloudflare_records_in_the_fake_api() {
    let client = client().await;
    let ns = TestNs::new(&client, "cf", json!({})).await;
    let zone = "cf.e2e.test";
    let fake = FakeCloudflare::start(port(), TOKEN, &[zone]).await.unwrap_or_else(|e| panic!("fake Cloudflare: {e}"));
    let foreign = fake
        .seed(zone, json!({"type": "A", "name": format!("foreign.{zone}"), "content": "192.0.2.99", "ttl": 120}))
        .await;

    let mut op = Operator::start("cloudflare");
    apply(
        &Api::<Secret>::namespaced(client.clone(), &ns.name),
        "cloudflare",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cloudflare"},
               "stringData": {"api-token": TOKEN}}),
    )
    .await;
    apply(
        &Api::<DNSProvider>::namespaced(client.clone(), &ns.name),
        "cf",
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "cf"},
            "spec": {
                "cloudflare": {"apiToken": {"secretRef": {"name": "cloudflare"}}, "zones": [zone],
                               "baseURL": fake.base_url()},
                "domains": {"include": [zone]},
                "policy": "sync",
                "registry": {"txt": {"ownerId": "e2e"}}
            }
        }),
    )
    .await;

    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &svcs,
        "web",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "annotations": {
                   "external-dns.alpha.kubernetes.io/hostname": format!("web.{zone}"),
                   "external-dns.alpha.kubernetes.io/cloudflare-proxied": "true"}},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}}),
    )
    .await;
    let set_ip = |ip: &'static str| {
        let svcs = svcs.clone();
        async move {
            svcs.patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
            )
            .await
            .expect("Service status");
        }
    };
    set_ip("192.0.2.240").await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    wait_condition(&eps, "web-service", "Ready", "True").await;
    let web = format!("web.{zone}");
    assert_eq!(
        held(&fake, zone, &web, "A").await,
        vec![("192.0.2.240".to_string(), 1, true)],
        "proxied, TTL automatic"
    );
    let ownership =
        format!("heritage=external-dns,external-dns/owner=e2e,external-dns/resource=service/{}/web", ns.name);
    let txt = held(&fake, zone, &format!("a-web.{zone}"), "TXT").await;
    // Quoted, as external-dns writes it and Cloudflare's schema asks for TXT content.
    assert_eq!(txt.iter().map(|t| t.0.clone()).collect::<Vec<_>>(), vec![format!("\"{ownership}\"")]);

    // Steady state: a fresh listing and full plan (an operator restart; resyncs are at least
    // a minute apart) finds the proxied record (TTL 1, as Cloudflare holds it) in sync, so
    // nothing is written. The provider's lastSync moves once that pass is over.
    let providers: Api<DNSProvider> = Api::namespaced(client.clone(), &ns.name);
    let last_sync = || async { providers.get("cf").await.ok().and_then(|p| p.status?.last_sync) };
    let before = last_sync().await;
    // lastSync has whole seconds: the restarted operator's listing must fall in a later
    // second than the last one for the change to show.
    let listed_at = before.as_ref().map(|t| t.0.as_second()).unwrap_or_default();
    wait_for("the clock to pass the second of the last listing", Duration::from_secs(5), || async move {
        (jiff::Timestamp::now().as_second() > listed_at).then_some(())
    })
    .await;
    fake.clear_requests().await;
    op.restart();
    wait_for("a listing after the restart", Duration::from_secs(30), || {
        let fake = &fake;
        async move {
            let listings = fake
                .requests()
                .await
                .iter()
                .filter(|r| {
                    r["method"] == json!("GET") && r["path"].as_str().unwrap_or_default().ends_with("/dns_records")
                })
                .count();
            (listings >= 1).then_some(())
        }
    })
    .await;
    wait_for("the pass after that listing to finish", Duration::from_secs(30), || {
        let before = before.clone();
        async move { (last_sync().await != before).then_some(()) }
    })
    .await;
    let writes: Vec<Value> = fake.requests().await.into_iter().filter(|r| r["method"] != json!("GET")).collect();
    assert!(writes.is_empty(), "resyncs of an unchanged zone wrote: {writes:?}");

    // The Service moves; Cloudflare throttles the first batch and the operator waits it out.
    fake.clear_requests().await;
    fake.fail(429, 1, "dns_records/batch", Some(1)).await;
    set_ip("192.0.2.241").await;
    wait_for("the A record to follow the Service", Duration::from_secs(60), || {
        let fake = &fake;
        let web = web.clone();
        async move { (held(fake, zone, &web, "A").await == vec![("192.0.2.241".to_string(), 1, true)]).then_some(()) }
    })
    .await;
    let reqs = fake.requests().await;
    assert!(reqs.iter().all(|r| r["authorization"] == json!(format!("Bearer {TOKEN}"))), "{reqs:?}");
    let batches: Vec<&Value> =
        reqs.iter().filter(|r| r["path"].as_str().unwrap_or_default().ends_with("/dns_records/batch")).collect();
    let first_429 = batches.iter().position(|r| r["status"] == json!(429)).expect("the injected 429 was hit");
    let retry = batches.get(first_429 + 1).expect("a batch after the 429");
    let waited = retry["time"].as_f64().unwrap_or(0.0) - batches[first_429]["time"].as_f64().unwrap_or(0.0);
    assert!(waited >= 0.99, "the next batch came {waited:.3} s after a 429 with Retry-After: 1");
    wait_condition(&eps, "web-service", "Ready", "True").await;

    // The Service goes, and so do its record and ownership TXT; the foreign record stays.
    svcs.delete("web", &DeleteParams::foreground()).await.expect("delete Service");
    wait_gone(&eps, "web-service").await;
    wait_for("the record and its TXT to be removed", Duration::from_secs(60), || {
        let fake = &fake;
        let web = web.clone();
        async move {
            let gone = held(fake, zone, &web, "A").await.is_empty()
                && held(fake, zone, &format!("a-web.{zone}"), "TXT").await.is_empty();
            gone.then_some(())
        }
    })
    .await;
    let records = fake.records(zone).await;
    assert_eq!(records.len(), 1, "only the foreign record is left: {records:?}");
    for field in ["id", "name", "content", "ttl", "modified_on"] {
        assert_eq!(records[0][field], foreign[field], "the foreign record's {field} changed");
    }
    let touched =
        fake.requests().await.iter().any(|r| r["body"].to_string().contains(foreign["id"].as_str().unwrap_or("?")));
    assert!(!touched, "a request named the foreign record's id");
    ns.cleanup().await;
}
