//! End-to-end tests of the Google Cloud DNS provider against the local fake of Cloud DNS API
//! v1 (`e2e/google/fake.py`, checked against Google's Python SDK in the conformance tests): a
//! zone written by external-dns is taken over without a change, a Service's record lands with
//! its ownership TXT and follows the Service (also when somebody changed it meanwhile: Cloud
//! DNS refuses the stale deletion, the zone is listed again and planned anew), goes with it,
//! a record somebody else holds is never touched, and tokens come from the token endpoint as
//! the Secret's service account. A namespaced provider without a Secret would act as the
//! operator's own identity: refused unless the operator allows it, then tokens come from the
//! metadata server.

use std::time::Duration;

use extdns::crd::{DNSEndpoint, DNSProvider};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use crate::harness::*;
use crate::tenancy::{record_messages, wait_provider, wait_record_state};

#[path = "../support/google_fake.rs"]
mod google_fake;

use google_fake::FakeGoogle;

const PROJECT: &str = "e2e-project";

/// The fake's rrset `name` of type `rtype`, as (ttl, rrdatas).
async fn held(fake: &FakeGoogle, zone: &str, name: &str, rtype: &str) -> Option<(u64, Vec<String>)> {
    fake.rrsets(PROJECT, zone).await.into_iter().find(|r| r["name"] == json!(name) && r["type"] == json!(rtype)).map(
        |r| {
            let mut datas: Vec<String> =
                r["rrdatas"].as_array().into_iter().flatten().filter_map(|d| d.as_str().map(str::to_string)).collect();
            datas.sort();
            (r["ttl"].as_u64().unwrap_or_default(), datas)
        },
    )
}

fn google_provider_spec(fake: &FakeGoogle, zone: &str, credentials: Option<&str>) -> Value {
    let mut google = json!({
        "project": PROJECT,
        "endpoint": fake.endpoint(),
        "batchChangeInterval": "0s",
    });
    if let Some(secret) = credentials {
        google["credentials"] = json!({"secretRef": {"name": secret}});
        google["tokenURI"] = json!(fake.token_uri());
    }
    json!({
        "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "gcp"},
        "spec": {
            "google": google,
            "domains": {"include": [zone]},
            "policy": "sync",
            "registry": {"txt": {"ownerId": "e2e"}}
        }
    })
}

async fn posts_to_changes(fake: &FakeGoogle) -> Vec<Value> {
    fake.requests_to("/changes").await.into_iter().filter(|r| r["method"] == json!("POST")).collect()
}

#[tokio::test]
async fn google_records_in_the_fake_api() {
    let client = client().await;
    let ns = TestNs::new(&client, "gcp", json!({})).await;
    let zone = "gcp.e2e.test";
    let mz = "gcp-e2e";
    let fake = FakeGoogle::start(port(), &["--project", PROJECT, "--zone", &format!("{PROJECT}/{mz}={zone}.")])
        .await
        .unwrap_or_else(|e| panic!("fake Cloud DNS: {e}"));
    let foreign = fake
        .seed(
            PROJECT,
            mz,
            json!({"name": format!("foreign.{zone}."), "type": "A", "ttl": 120, "rrdatas": ["192.0.2.99"]}),
        )
        .await;
    // A zone as external-dns's google provider writes it: one rrset per name and type, names
    // absolute, TTL 300, the ownership TXT quoted in its own rrset (new-format name `a-`).
    let old_owner = format!("heritage=external-dns,external-dns/owner=e2e,external-dns/resource=crd/{}/old", ns.name);
    fake.seed(PROJECT, mz, json!({"name": format!("old.{zone}."), "type": "A", "ttl": 300, "rrdatas": ["192.0.2.50"]}))
        .await;
    fake.seed(
        PROJECT,
        mz,
        json!({"name": format!("alias.{zone}."), "type": "CNAME", "ttl": 300, "rrdatas": [format!("old.{zone}.")]}),
    )
    .await;
    fake.seed(
        PROJECT,
        mz,
        json!({"name": format!("a-old.{zone}."), "type": "TXT", "ttl": 300, "rrdatas": [format!("\"{old_owner}\"")]}),
    )
    .await;
    fake.seed(
        PROJECT,
        mz,
        json!({"name": format!("cname-alias.{zone}."), "type": "TXT", "ttl": 300, "rrdatas": [format!("\"{old_owner}\"")]}),
    )
    .await;

    let email = format!("extdns-e2e@{PROJECT}.iam.gserviceaccount.com");
    let key = fake.key(&email, PROJECT).await;
    apply(
        &Api::<Secret>::namespaced(client.clone(), &ns.name),
        "gcp",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gcp"},
               "stringData": {"credentials.json": key}}),
    )
    .await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &eps,
        "old",
        dnsendpoint(
            "old",
            json!([{"dnsName": format!("old.{zone}"), "recordType": "A", "targets": ["192.0.2.50"]},
                   {"dnsName": format!("alias.{zone}"), "recordType": "CNAME", "targets": [format!("old.{zone}")]}]),
        ),
    )
    .await;
    let providers: Api<DNSProvider> = Api::namespaced(client.clone(), &ns.name);
    apply(&providers, "gcp", google_provider_spec(&fake, zone, Some("gcp"))).await;

    let op = Operator::start("google");
    wait_provider(&providers, "gcp", "True", "ZonesFound").await;
    wait_condition(&eps, "old", "Ready", "True").await;
    assert!(posts_to_changes(&fake).await.is_empty(), "the takeover sent changes:\n{}", op.log_tail());

    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &svcs,
        "web",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "annotations": {
                   "external-dns.alpha.kubernetes.io/hostname": format!("web.{zone}")}},
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
    wait_condition(&eps, "web-service", "Ready", "True").await;
    let web = format!("web.{zone}.");
    assert_eq!(held(&fake, mz, &web, "A").await, Some((300, vec!["192.0.2.240".to_string()])));
    let ownership =
        format!("heritage=external-dns,external-dns/owner=e2e,external-dns/resource=service/{}/web", ns.name);
    assert_eq!(
        held(&fake, mz, &format!("a-web.{zone}."), "TXT").await,
        Some((300, vec![format!("\"{ownership}\"")])),
        "the ownership TXT, quoted as external-dns writes it"
    );
    let creates = posts_to_changes(&fake).await;
    assert_eq!(creates.len(), 2, "the TXT, then its record: {creates:?}");

    // Somebody changes the record behind our back, then the Service moves: the change's
    // deletion no longer matches, Cloud DNS refuses it (412), and the next listing plans the
    // update from what is held.
    fake.seed(PROJECT, mz, json!({"name": web.clone(), "type": "A", "ttl": 60, "rrdatas": ["192.0.2.77"]})).await;
    fake.clear_requests().await;
    set_ip("192.0.2.241").await;
    wait_for("the A record to follow the Service after a re-listing", Duration::from_secs(120), || {
        let fake = &fake;
        let web = web.clone();
        async move {
            let now = held(fake, mz, &web, "A").await;
            (now.map(|(_, datas)| datas) == Some(vec!["192.0.2.241".to_string()])).then_some(())
        }
    })
    .await;
    let statuses: Vec<u64> =
        posts_to_changes(&fake).await.iter().map(|r| r["status"].as_u64().unwrap_or_default()).collect();
    assert_eq!(statuses.first(), Some(&412), "the stale deletion was refused: {statuses:?}");
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    wait_condition(&eps, "web-service", "Ready", "True").await;

    // Every token came from the token endpoint, as the Secret's service account, by the
    // JWT-bearer grant; every API request carried one.
    let tokens = fake.tokens().await;
    assert!(!tokens.is_empty());
    assert!(tokens.iter().all(|t| t["email"] == json!(email) && t["via"] == json!("jwt-bearer")), "tokens: {tokens:?}");
    let reqs = fake.requests().await;
    assert!(
        reqs.iter()
            .filter(|r| r["path"].as_str().unwrap_or_default().starts_with("/dns/v1/"))
            .all(|r| r["authorization"].as_str().is_some_and(|a| a.starts_with("Bearer ya29.fake-"))),
        "{reqs:?}"
    );

    // The Service goes, and so do its record and ownership TXT; the foreign record stays.
    svcs.delete("web", &DeleteParams::foreground()).await.expect("delete Service");
    wait_gone(&eps, "web-service").await;
    wait_for("the record and its TXT to be removed", Duration::from_secs(120), || {
        let fake = &fake;
        let web = web.clone();
        async move {
            let gone = held(fake, mz, &web, "A").await.is_none()
                && held(fake, mz, &format!("a-web.{zone}."), "TXT").await.is_none();
            gone.then_some(())
        }
    })
    .await;
    let all = fake.rrsets(PROJECT, mz).await;
    let left = all.iter().find(|r| r["name"] == json!(format!("foreign.{zone}."))).expect("the foreign rrset");
    assert_eq!(left, &foreign, "the foreign rrset changed");
    let touched = fake.requests().await.iter().any(|r| r["body"].to_string().contains("foreign."));
    assert!(!touched, "a request named the foreign record");
    assert!(held(&fake, mz, &format!("old.{zone}."), "A").await.is_some(), "the taken-over record stays");
    ns.cleanup().await;
}

/// A namespaced google DNSProvider without a Secret would act as the operator's own Google
/// identity: refused by default, nothing reaches Google; with the flags, tokens come from the
/// metadata server (GKE Workload Identity) as the operator's identity.
#[tokio::test]
async fn google_namespaced_provider_without_a_secret_is_refused() {
    let client = client().await;
    let ns = TestNs::new(&client, "gcp-ambient", json!({})).await;
    let zone = "gcp-ambient.e2e.test";
    let mz = "gcp-ambient";
    let fake = FakeGoogle::start(
        port(),
        &[
            "--project",
            PROJECT,
            "--zone",
            &format!("{PROJECT}/{mz}={zone}."),
            "--metadata-email",
            "operator@e2e-project.iam.gserviceaccount.com",
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("fake Cloud DNS: {e}"));
    // The operator's identity may use the project.
    fake.grant("operator@e2e-project.iam.gserviceaccount.com", PROJECT).await;
    let metadata_host = format!("127.0.0.1:{}", fake.port);
    let env = [("GCE_METADATA_HOST", metadata_host.as_str())];

    let mut op = Operator::start_strict("google-ambient", &[], &env);
    let providers: Api<DNSProvider> = Api::namespaced(client.clone(), &ns.name);
    apply(&providers, "gcp", google_provider_spec(&fake, zone, None)).await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let name = format!("app.{zone}");
    apply(&eps, "app", dnsendpoint("app", json!([{"dnsName": name, "recordType": "A", "targets": ["192.0.2.7"]}])))
        .await;
    let c = wait_provider(&providers, "gcp", "False", "NotPermitted").await;
    assert!(
        c.message.contains("spec.google.credentials") && c.message.contains("--namespaced-ambient-credentials"),
        "{}",
        c.message
    );
    let ep = wait_record_state(&eps, "app", "NotPermitted").await;
    assert!(record_messages(&ep).contains("--namespaced-ambient-credentials"), "{}", record_messages(&ep));
    assert!(fake.requests().await.is_empty(), "a refused provider sends nothing, not even for a token");

    // The platform team allows it (the fake's endpoint is a custom one too).
    op.stop();
    let _op = Operator::start_strict(
        "google-ambient",
        &["--namespaced-ambient-credentials", "--namespaced-custom-endpoint"],
        &env,
    );
    wait_provider(&providers, "gcp", "True", "ZonesFound").await;
    wait_condition(&eps, "app", "Ready", "True").await;
    assert_eq!(held(&fake, mz, &format!("{name}."), "A").await, Some((300, vec!["192.0.2.7".to_string()])));
    let tokens = fake.tokens().await;
    assert!(
        !tokens.is_empty()
            && tokens.iter().all(|t| t["via"] == json!("metadata")
                && t["email"] == json!("operator@e2e-project.iam.gserviceaccount.com")),
        "tokens from the metadata server as the operator: {tokens:?}"
    );
    ns.cleanup().await;
}
