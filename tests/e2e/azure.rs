//! End-to-end tests of the azure and azurePrivateDns providers against the local fake of
//! Azure Resource Manager and Entra ID (`e2e/azure/fake.py`, over TLS with a throwaway CA):
//! a zone external-dns wrote is taken over without one write, a Service's record follows it
//! and goes with it, a record somebody else holds is never touched, the token endpoint sees
//! the Secret's identity only, and a namespaced provider without a Secret is refused.

use std::time::Duration;

use extdns::crd::{DNSEndpoint, DNSProvider};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use crate::harness::*;

#[path = "../support/azure_fake.rs"]
mod azure_fake;

use azure_fake::FakeAzure;

/// One flavour of the test: the spec field, the fake's zone kind and the A record key.
struct Flavour {
    field: &'static str,
    private: bool,
    a_key: &'static str,
    txt_key: &'static str,
    ttl_key: &'static str,
}

const PUBLIC: Flavour =
    Flavour { field: "azure", private: false, a_key: "ARecords", txt_key: "TXTRecords", ttl_key: "TTL" };
const PRIVATE: Flavour =
    Flavour { field: "azurePrivateDns", private: true, a_key: "aRecords", txt_key: "txtRecords", ttl_key: "ttl" };

/// The record set `name` of type `rtype` as the fake holds it.
async fn held(fake: &FakeAzure, f: &Flavour, zone: &str, rtype: &str, name: &str) -> Option<Value> {
    fake.record_sets(f.private, zone)
        .await
        .into_iter()
        .find(|s| s["name"] == json!(name) && s["type"].as_str().unwrap_or_default().ends_with(&format!("/{rtype}")))
}

fn a_targets(set: &Option<Value>, f: &Flavour) -> Vec<String> {
    set.iter()
        .flat_map(|s| s["properties"][f.a_key].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["ipv4Address"].as_str().map(str::to_string))
        .collect()
}

fn provider(f: &Flavour, name: &str, zone: &str, fake: &FakeAzure, credentials: Option<Value>) -> Value {
    let mut block = json!({
        "subscriptionId": azure_fake::SUBSCRIPTION, "resourceGroup": azure_fake::RESOURCE_GROUP, "zones": [zone],
        "resourceManagerURL": fake.base_url(), "authorityHostURL": fake.base_url(),
        "tls": {"caSecretRef": {"name": "azure-ca", "key": "ca.crt"}}
    });
    if let Some(c) = credentials {
        block["credentials"] = c;
    }
    json!({
        "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": name},
        "spec": {
            f.field: block,
            "domains": {"include": [zone]},
            "policy": "sync",
            "registry": {"txt": {"ownerId": "e2e"}}
        }
    })
}

async fn scenario(f: Flavour, label: &str) {
    let client = client().await;
    let ns = TestNs::new(&client, label, json!({})).await;
    let zone = format!("{label}.e2e.test");
    let (public, private): (Vec<&str>, Vec<&str>) =
        if f.private { (vec![], vec![zone.as_str()]) } else { (vec![zone.as_str()], vec![]) };
    let fake = FakeAzure::start(port(), &public, &private, 100).await.unwrap_or_else(|e| panic!("fake Azure: {e}"));
    // Somebody else's record, and the Service's record as external-dns wrote it (owner e2e,
    // the value's quotes inside the TXT data, TTL 300).
    let foreign = fake
        .seed(f.private, &zone, "A", "foreign", json!({f.ttl_key: 120, f.a_key: [{"ipv4Address": "192.0.2.99"}]}))
        .await;
    let ownership =
        format!("heritage=external-dns,external-dns/owner=e2e,external-dns/resource=service/{}/web", ns.name);
    let seeded_a = fake
        .seed(f.private, &zone, "A", "web", json!({f.ttl_key: 300, f.a_key: [{"ipv4Address": "192.0.2.240"}]}))
        .await;
    fake.seed(
        f.private,
        &zone,
        "TXT",
        "a-web",
        json!({f.ttl_key: 300, f.txt_key: [{"value": [format!("\"{ownership}\"")]}]}),
    )
    .await;

    // Tenancy as shipped, but custom endpoints allowed (the fake is one).
    let _op = Operator::start_strict(label, &["--namespaced-custom-endpoint"], &[]);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let ca = String::from_utf8_lossy(&fake.ca_pem).to_string();
    apply(
        &secrets,
        "azure-ca",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "azure-ca"}, "stringData": {"ca.crt": ca}}),
    )
    .await;
    apply(
        &secrets,
        "azure-sp",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "azure-sp"},
               "stringData": {"client-id": azure_fake::CLIENT_ID, "client-secret": azure_fake::CLIENT_SECRET,
                              "tenant-id": azure_fake::TENANT}}),
    )
    .await;
    let providers: Api<DNSProvider> = Api::namespaced(client.clone(), &ns.name);
    let creds = json!({"secretRef": {"name": "azure-sp"}});
    apply(&providers, "az", provider(&f, "az", &zone, &fake, Some(creds))).await;

    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let service = |target: &str| {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "annotations": {
                   "external-dns.alpha.kubernetes.io/hostname": format!("web.{zone}"),
                   "external-dns.alpha.kubernetes.io/target": target}},
               "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}})
    };
    apply(&svcs, "web", service("192.0.2.240")).await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    wait_condition(&eps, "web-service", "Ready", "True").await;
    let writes = fake.writes().await;
    assert!(writes.is_empty(), "{}: taking over external-dns's records wrote: {writes:?}", f.field);
    assert_eq!(held(&fake, &f, &zone, "A", "web").await.map(|s| s["etag"].clone()), Some(seeded_a["etag"].clone()));

    // The Service's target moves: one PUT on the etag read.
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"metadata": {"annotations": {"external-dns.alpha.kubernetes.io/target": "192.0.2.241"}}}),
        ),
    )
    .await
    .expect("patch Service");
    wait_for("the A record set to follow the Service", Duration::from_secs(60), || {
        let (fake, f, zone) = (&fake, &f, &zone);
        async move { (a_targets(&held(fake, f, zone, "A", "web").await, f) == ["192.0.2.241"]).then_some(()) }
    })
    .await;
    let puts: Vec<Value> = fake.writes().await;
    assert_eq!(puts.len(), 1, "one PUT for the moved record, its TXT unchanged: {puts:?}");
    assert_eq!(puts[0]["if_match"], seeded_a["etag"], "the write carries the etag read");

    // The token endpoint saw the Secret's identity, and only it.
    let tokens = fake.token_requests().await;
    assert!(!tokens.is_empty());
    for t in &tokens {
        assert_eq!(
            (t["tenant"].as_str(), t["client_id"].as_str()),
            (Some(azure_fake::TENANT), Some(azure_fake::CLIENT_ID))
        );
        assert_eq!((t["grant_type"].as_str(), t["status"].as_u64()), (Some("client_credentials"), Some(200)));
        assert_eq!(t["scope"], json!(format!("{}/.default", fake.base_url())));
    }

    // A tenant's provider without credentials would use the operator's own identity.
    apply(&providers, "ambient", provider(&f, "ambient", &format!("other.{zone}"), &fake, None)).await;
    let refused = wait_for("the provider without credentials to be refused", DEADLINE, || {
        let providers = providers.clone();
        async move {
            let p = providers.get_opt("ambient").await.ok()??;
            let c = p.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
            (c.status == "False" && c.reason == "NotPermitted").then_some(c.message)
        }
    })
    .await;
    assert!(
        refused.contains(&format!("spec.{}.credentials", f.field))
            && refused.contains("--namespaced-ambient-credentials"),
        "{refused}"
    );
    assert_eq!(fake.token_requests().await.len(), tokens.len(), "the refused provider asked for no token");

    // The Service goes, and so do its record set and ownership TXT; the foreign one stays.
    svcs.delete("web", &DeleteParams::foreground()).await.expect("delete Service");
    wait_gone(&eps, "web-service").await;
    wait_for("the record set and its TXT to be removed", Duration::from_secs(60), || {
        let (fake, f, zone) = (&fake, &f, &zone);
        async move {
            let gone =
                held(fake, f, zone, "A", "web").await.is_none() && held(fake, f, zone, "TXT", "a-web").await.is_none();
            gone.then_some(())
        }
    })
    .await;
    let left = held(&fake, &f, &zone, "A", "foreign").await.expect("the foreign record set is still there");
    assert_eq!(
        (left["etag"].clone(), left["properties"].clone()),
        (foreign["etag"].clone(), foreign["properties"].clone())
    );
    let touched = fake.writes().await.iter().any(|r| r["path"].as_str().unwrap_or_default().ends_with("/foreign"));
    assert!(!touched, "a request wrote the foreign record set");
    ns.cleanup().await;
}

#[tokio::test]
async fn azure_dns_records_in_the_fake_api() {
    scenario(PUBLIC, "azure").await;
}

#[tokio::test]
async fn azure_private_dns_records_in_the_fake_api() {
    scenario(PRIVATE, "azpriv").await;
}
