//! Source-controller behaviour that external-dns users rely on: a DNSEndpoint it did not write
//! is never taken over, NodePort SRV records outside `managedRecordTypes` are skipped without
//! stalling, a load balancer's host name is not published beside its address, and the CRD
//! schema refuses what OpenAPI can refuse at apply time.

use extdns::crd::DNSEndpoint;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::harness::*;

/// A hand-written DNSEndpoint named like a Service's generated one stays untouched (no
/// owner reference, so no garbage collection with the Service), and the Service gets a
/// Warning Event naming it. A NodePort Service on the default managedRecordTypes publishes
/// its node addresses and shows its SRV records as Skipped while Ready. A load balancer
/// status with an address and a host name publishes the address, and says so in an Event.
#[tokio::test]
async fn source_never_takes_over_and_skips_unmanaged_types() {
    let env = EmbeddedEnv::start("src", "src.e2e.test").await;
    let (client, ns, port) = (env.client.clone(), &env.ns, env.port);
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);

    // 1. The clash.
    let mine = json!([{"dnsName": "mine.src.e2e.test", "recordType": "A", "targets": ["192.0.2.70"]}]);
    apply(&eps, "web-service", dnsendpoint("web-service", mine.clone())).await;
    wait_condition(&eps, "web-service", "Ready", "True").await;
    apply(
        &svcs,
        "web",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "annotations": {"external-dns.alpha.kubernetes.io/hostname": "web.src.e2e.test"}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}
        }),
    )
    .await;
    svcs.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.71"}]}}})),
    )
    .await
    .expect("patch Service status");
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let taken = wait_for("a DNSEndpointNameTaken Event on Service web", DEADLINE, || {
        let events = events.clone();
        async move {
            events.list(&Default::default()).await.ok()?.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("DNSEndpointNameTaken")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web")
            })
        }
    })
    .await;
    assert_eq!(taken.type_.as_deref(), Some("Warning"));
    let note = taken.note.unwrap_or_default();
    assert!(note.contains(&format!("DNSEndpoint {}/web-service already exists", ns.name)), "{note}");
    let ep = eps.get("web-service").await.expect("hand-written DNSEndpoint");
    assert!(ep.owner_references().is_empty(), "taken over: {:?}", ep.metadata.owner_references);
    assert!(!ep.labels().contains_key("app.kubernetes.io/managed-by"), "{:?}", ep.labels());
    assert_eq!(serde_json::to_value(&ep.spec.endpoints).unwrap(), mine);
    wait_dig(port, "mine.src.e2e.test", "A", &["192.0.2.70"]).await;
    assert!(dig(port, "web.src.e2e.test", "A").is_empty());
    // The Service goes; the hand-written object and its record stay.
    svcs.delete("web", &DeleteParams::foreground()).await.expect("delete Service");
    wait_gone(&svcs, "web").await;
    assert!(eps.get_opt("web-service").await.expect("get").is_some());
    wait_dig(port, "mine.src.e2e.test", "A", &["192.0.2.70"]).await;

    // 2. NodePort on the default managedRecordTypes (A, AAAA, CNAME).
    let nodes: Api<Node> = Api::all(client.clone());
    let node_name = format!("{}-node", ns.name);
    nodes
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": node_name}})).unwrap())
        .await
        .expect("create Node");
    nodes
        .patch_status(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"addresses": [{"type": "ExternalIP", "address": "192.0.2.77"}]}})),
        )
        .await
        .expect("Node addresses");
    apply(
        &svcs,
        "game",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "game", "annotations": {"external-dns.alpha.kubernetes.io/hostname": "game.src.e2e.test"}},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}
        }),
    )
    .await;
    let ep = wait_condition(&eps, "game-service", "Ready", "True").await;
    wait_dig(port, "game.src.e2e.test", "A", &["192.0.2.77"]).await;
    let status = ep.status.expect("status");
    let srv = status.records.iter().find(|r| r.record_type == "SRV").expect("an SRV record status");
    assert_eq!(srv.state, "Skipped", "{srv:?}");
    assert!(srv.message.as_deref().unwrap_or_default().contains("UnmanagedType"), "{srv:?}");
    assert_eq!(condition_status(&status.conditions, "Stalled"), "False");
    assert!(dig(port, "_game._tcp.game.src.e2e.test", "SRV").is_empty());
    nodes.delete(&node_name, &DeleteParams::default()).await.expect("delete Node");

    // 3. A load balancer reporting an address and a host name: the address only, and the
    //    skipped CNAME told as an Event.
    apply(
        &svcs,
        "both",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "both", "annotations": {"external-dns.alpha.kubernetes.io/hostname": "both.src.e2e.test"}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}
        }),
    )
    .await;
    svcs.patch_status(
        "both",
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.72", "hostname": "lb.example.net"}]}}}),
        ),
    )
    .await
    .expect("patch Service status");
    wait_condition(&eps, "both-service", "Ready", "True").await;
    wait_dig(port, "both.src.e2e.test", "A", &["192.0.2.72"]).await;
    wait_for("a CNAMESkipped Event on Service both", DEADLINE, || {
        let events = events.clone();
        async move {
            events.list(&Default::default()).await.ok()?.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("CNAMESkipped")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("both")
            })
        }
    })
    .await;

    ns.cleanup().await;
    env.op.assert_no_forbidden();
}

fn condition_status(conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition], t: &str) -> String {
    conds.iter().find(|c| c.type_ == t).map(|c| c.status.clone()).unwrap_or_default()
}

/// What OpenAPI can say is refused at apply time, with the field named.
#[tokio::test]
async fn crd_schema_refuses_bad_records_at_apply() {
    let client = client().await;
    let ns = TestNs::new(&client, "schema", json!({})).await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let refused = |endpoint: serde_json::Value| {
        let eps = eps.clone();
        async move {
            let obj = dnsendpoint("bad", json!([endpoint]));
            match eps.patch("bad", &PatchParams::apply("e2e-test").force(), &Patch::Apply(&obj)).await {
                Err(kube::Error::Api(e)) if e.code == 422 => e.message,
                other => panic!("{endpoint} was not refused: {other:?}"),
            }
        }
    };
    let a = |extra: serde_json::Value| {
        let mut e = json!({"dnsName": "a.example.com", "recordType": "A", "targets": ["192.0.2.1"]});
        e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        e
    };
    assert!(refused(a(json!({"recordTTL": -1}))).await.contains("recordTTL"));
    assert!(refused(a(json!({"recordTTL": 2147483648_i64}))).await.contains("recordTTL"));
    assert!(refused(a(json!({"dnsName": "a.*.example.com"}))).await.contains("dnsName"));
    assert!(refused(a(json!({"dnsName": format!("{}.example.com", "x".repeat(64))}))).await.contains("dnsName"));
    // 0 is external-dns's "not configured": accepted, the provider's default applies.
    apply(&eps, "zero", dnsendpoint("zero", json!([a(json!({"recordTTL": 0}))]))).await;
    ns.cleanup().await;
}
