//! Issue 23 item 3: external-dns's own DNSEndpoints (`externaldns.k8s.io/v1alpha1`, CRD from
//! e2e/crds) applied unchanged, read by the operator run with `--source=crd` under the
//! shipped RBAC: their records are published with external-dns's ownership
//! (`crd/<namespace>/<name>`), `status.observedGeneration` follows `metadata.generation` as
//! external-dns writes it, `--label-filter` selects them, tenancy rules apply, and a zone
//! external-dns wrote from them is taken over without one change.

use extdns::crd::{ClusterDNSProvider, DNSEndpoint};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::harness::*;
use crate::rfc2136::{rfc2136_provider, Bind};
use crate::tenancy::{embedded_cluster_provider, record_messages, wait_record_state};

fn external_dns_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint"),
        "dnsendpoints",
    )
}

/// An external-dns DNSEndpoint as its docs write one: no extdns field anywhere.
fn external_dns_object(name: &str, labels: serde_json::Value, endpoints: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {"name": name, "labels": labels},
        "spec": {"endpoints": endpoints}
    })
}

/// Waits until external-dns's object reports its current generation processed (what Argo
/// CD's health check for it and external-dns's users read), and returns that generation.
async fn wait_observed(api: &Api<DynamicObject>, name: &str) -> i64 {
    wait_for(&format!("{name}'s status.observedGeneration to reach its generation"), DEADLINE, || {
        let api = api.clone();
        async move {
            let o = api.get_opt(name).await.ok()??;
            let observed = o.data.get("status")?.get("observedGeneration")?.as_i64()?;
            (Some(observed) == o.metadata.generation).then_some(observed)
        }
    })
    .await
}

/// Publish, update, label filter, tenancy refusal and delete, on an embedded
/// ClusterDNSProvider that gives each namespace `<namespace>.crd.e2e.test`.
#[tokio::test]
async fn external_dns_dnsendpoints_are_published_as_they_are() {
    let client = client().await;
    let selector = json!({"crd-source-e2e": "yes"});
    let ns = TestNs::new(&client, "crdsrc", selector.clone()).await;
    let port = port();
    let mut op = Operator::start_with("crd-source", &["--source=crd", "--label-filter=dns=public"]);
    let cluster: Api<ClusterDNSProvider> = Api::all(client.clone());
    let provider = format!("crd-source-{}", std::process::id());
    let mut cp = embedded_cluster_provider(&provider, "crd.e2e.test", port, selector);
    cp["spec"]["namespaceDomains"] = json!(["{namespace}.crd.e2e.test"]);
    apply(&cluster, &provider, cp).await;

    let theirs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &external_dns_resource());
    let ours: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let name = format!("web.{}.crd.e2e.test", ns.name);
    let public = json!({"dns": "public"});
    let record = |ip: &str| json!([{"dnsName": name, "recordTTL": 180, "recordType": "A", "targets": [ip]}]);
    let created = apply(&theirs, "web", external_dns_object("web", public.clone(), record("192.0.2.81"))).await;

    wait_dig(port, &name, "A", &["192.0.2.81"]).await;
    assert_eq!(wait_observed(&theirs, "web").await, 1);
    let rendered = wait_condition(&ours, "web-crd", "Ready", "True").await;
    let owner = &rendered.owner_references()[0];
    assert_eq!(
        (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str(), Some(&owner.uid)),
        ("externaldns.k8s.io/v1alpha1", "DNSEndpoint", "web", created.metadata.uid.as_ref())
    );
    let resource = format!("crd/{}/web", ns.name);
    let labels = rendered.spec.endpoints[0].labels.clone().unwrap_or_default();
    assert_eq!(labels.get("resource"), Some(&resource));
    // The ownership TXT says what external-dns's would: a rollback finds its records its own.
    wait_dig(
        port,
        &format!("a-{name}"),
        "TXT",
        &[&format!("\"heritage=external-dns,external-dns/owner=e2e,external-dns/resource={resource}\"")],
    )
    .await;

    // An edit is a new generation: the record follows and so does observedGeneration.
    apply(&theirs, "web", external_dns_object("web", public.clone(), record("192.0.2.82"))).await;
    wait_dig(port, &name, "A", &["192.0.2.82"]).await;
    assert_eq!(wait_observed(&theirs, "web").await, 2);

    // An invalid endpoint is left out, named in a Warning Event on the object; the rest is
    // published and the object reported processed, as external-dns skips such endpoints.
    let mixed = format!("mixed.{}.crd.e2e.test", ns.name);
    apply(
        &theirs,
        "mixed",
        external_dns_object(
            "mixed",
            public.clone(),
            json!([
                {"dnsName": mixed, "recordType": "A", "targets": ["192.0.2.86"]},
                {"dnsName": format!("bad.{}.crd.e2e.test", ns.name), "recordType": "A", "targets": ["not-an-ip"]}
            ]),
        ),
    )
    .await;
    wait_dig(port, &mixed, "A", &["192.0.2.86"]).await;
    wait_observed(&theirs, "mixed").await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let event = wait_for("an InvalidEndpoint Event on external-dns's object", DEADLINE, || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("InvalidEndpoint")
                    && e.regarding.as_ref().is_some_and(|r| {
                        r.name.as_deref() == Some("mixed")
                            && r.api_version.as_deref() == Some("externaldns.k8s.io/v1alpha1")
                    })
            })
        }
    })
    .await;
    let note = event.note.unwrap_or_default();
    assert!(note.contains("spec.endpoints[1].targets[0]") && note.contains("not-an-ip"), "{note}");

    // A name in another namespace's domain is refused as for an extdns DNSEndpoint there.
    let foreign = "web.someone-else.crd.e2e.test";
    apply(
        &theirs,
        "outside",
        external_dns_object(
            "outside",
            public,
            json!([{"dnsName": foreign, "recordType": "A", "targets": ["192.0.2.83"]}]),
        ),
    )
    .await;
    let refused = wait_record_state(&ours, "outside-crd", "NameNotAllowed").await;
    assert!(record_messages(&refused).contains("spec.namespaceDomains"), "{}", record_messages(&refused));
    assert!(dig(port, foreign, "A").is_empty());

    // --label-filter: an object without the label is not read at all (no DNSEndpoint, no
    // status), while one applied after it with the label is.
    let other = format!("other.{}.crd.e2e.test", ns.name);
    apply(
        &theirs,
        "unlabelled",
        external_dns_object(
            "unlabelled",
            json!({}),
            json!([{"dnsName": other, "recordType": "A", "targets": ["192.0.2.84"]}]),
        ),
    )
    .await;
    let late = format!("late.{}.crd.e2e.test", ns.name);
    apply(
        &theirs,
        "late",
        external_dns_object(
            "late",
            json!({"dns": "public"}),
            json!([{"dnsName": late, "recordType": "A", "targets": ["192.0.2.85"]}]),
        ),
    )
    .await;
    wait_dig(port, &late, "A", &["192.0.2.85"]).await;
    wait_observed(&theirs, "late").await;
    assert!(ours.get_opt("unlabelled-crd").await.expect("get").is_none());
    let unlabelled = theirs.get("unlabelled").await.expect("get unlabelled");
    assert!(unlabelled.data.get("status").and_then(|s| s.get("observedGeneration")).is_none(), "{unlabelled:?}");
    assert!(dig(port, &other, "A").is_empty());

    // Deleting external-dns's object removes ours (owner GC) and the record.
    theirs.delete("web", &DeleteParams::foreground()).await.expect("delete web");
    wait_gone(&ours, "web-crd").await;
    wait_dig(port, &name, "A", &[]).await;
    wait_dig(port, &format!("a-{name}"), "TXT", &[]).await;

    ns.cleanup().await;
    cluster.delete(&provider, &DeleteParams::default()).await.expect("delete ClusterDNSProvider");
    wait_gone(&cluster, &provider).await;
    op.stop();
}

/// A BIND zone external-dns (`--source=crd`, owner id `ext-crd`) published from a DNSEndpoint:
/// extdns reads the same object, unchanged, and takes the zone over without one UPDATE.
#[tokio::test]
async fn takeover_of_records_external_dns_published_from_dnsendpoints_sends_nothing() {
    const OWNER: &str = "ext-crd";
    let client = client().await;
    let ns = TestNs::new(&client, "crdsrc-mig", json!({})).await;
    let zone = "crdmig.e2e.test";
    let bind = Bind::start("crd-source-mig", zone);
    let txt =
        format!("\"heritage=external-dns,external-dns/owner={OWNER},external-dns/resource=crd/{}/site\"", ns.name);
    bind.nsupdate(
        zone,
        &[
            format!("update add www.{zone}. 300 A 192.0.2.91"),
            format!("update add www.{zone}. 300 TXT {txt}"),
            format!("update add a-www.{zone}. 300 TXT {txt}"),
            format!("update add api.{zone}. 300 CNAME www.{zone}."),
            format!("update add api.{zone}. 300 TXT {txt}"),
            format!("update add cname-api.{zone}. 300 TXT {txt}"),
        ],
    );
    let theirs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &external_dns_resource());
    apply(
        &theirs,
        "site",
        external_dns_object(
            "site",
            json!({}),
            json!([
                {"dnsName": format!("www.{zone}"), "recordTTL": 300, "recordType": "A", "targets": ["192.0.2.91"]},
                {"dnsName": format!("api.{zone}"), "recordTTL": 300, "recordType": "CNAME", "targets": [format!("www.{zone}")]}
            ]),
        ),
    )
    .await;
    rfc2136_provider(&client, &ns.name, zone, bind.port, OWNER).await;

    let mut op = Operator::start_with("crd-source-mig", &["--source=crd"]);
    let ours: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    wait_condition(&ours, "site-crd", "Ready", "True").await;
    wait_observed(&theirs, "site").await;
    assert_eq!(op.counter("extdns_provider_changes_total", &[]).await, 0, "takeover sent changes:\n{}", op.log_tail());
    assert_eq!(op.counter("extdns_provider_calls_total", &["operation=\"apply\""]).await, 0);
    assert_eq!(dig(bind.port, &format!("www.{zone}"), "A"), ["192.0.2.91"]);
    ns.cleanup().await;
    op.stop();
}

/// external-dns's CRD installed after the operator started: the operator starts and becomes
/// ready anyway, says the kind is not served (log, `extdns_crd_source_served` 0), and reads
/// the objects once the CRD is there, without a restart. The CRD is put back as
/// e2e/crds has it whatever happens before.
#[tokio::test]
async fn crd_installed_after_start_is_read_without_a_restart() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    const CRD: &str = "dnsendpoints.externaldns.k8s.io";
    let client = client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let manifest: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("e2e/crds/externaldns.k8s.io.yaml")).expect("e2e/crds"),
    )
    .expect("CRD yaml");
    /// Installs the CRD again when the test ends, passed or failed.
    struct Restore(serde_json::Value);
    impl Drop for Restore {
        fn drop(&mut self) {
            let manifest = self.0.clone();
            // Drop blocks the test's runtime, which drives the test's client: apply from a
            // thread with a runtime and a client of its own.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Runtime::new().expect("runtime").block_on(async move {
                    let api: Api<CustomResourceDefinition> = Api::all(crate::harness::client().await);
                    let params = kube::api::PatchParams::apply("e2e-test").force();
                    let _ = api.patch(CRD, &params, &kube::api::Patch::Apply(&manifest)).await;
                })
            })
            .join();
        }
    }
    let _restore = Restore(manifest.clone());
    let _ = crds.delete(CRD, &DeleteParams::default()).await;
    wait_gone(&crds, CRD).await;

    let ns = TestNs::new(&client, "crdsrc-late", json!({})).await;
    let port = port();
    let mut op = Operator::start_with("crd-source-late", &["--source=crd"]);
    let providers: Api<extdns::crd::DNSProvider> = Api::namespaced(client.clone(), &ns.name);
    apply(&providers, "dns", embedded_provider("dns", "late.crd.e2e.test", port)).await;
    let metrics_port = op.metrics_port;
    wait_for("/readyz to answer 200 without the CRD", DEADLINE, || async move {
        crate::readiness::get(metrics_port, "/readyz").filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!(op.counter("extdns_crd_source_served", &[]).await, 0);
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(log.contains("the crd source's kind is not served"), "{}", op.log_tail());

    apply(&crds, CRD, manifest).await;
    wait_for("the CRD to be established", DEADLINE, || {
        let crds = crds.clone();
        async move {
            let crd = crds.get_opt(CRD).await.ok()??;
            let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
    let theirs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &external_dns_resource());
    let name = "app.late.crd.e2e.test";
    apply(
        &theirs,
        "app",
        external_dns_object("app", json!({}), json!([{"dnsName": name, "recordType": "A", "targets": ["192.0.2.95"]}])),
    )
    .await;
    // The operator asks again every 30 s.
    wait_for(&format!("{name} to be published"), DEADLINE + DEADLINE, || async move {
        (dig(port, name, "A") == ["192.0.2.95"]).then_some(())
    })
    .await;
    wait_observed(&theirs, "app").await;
    assert_eq!(op.counter("extdns_crd_source_served", &[]).await, 1);
    ns.cleanup().await;
    op.stop();
}
