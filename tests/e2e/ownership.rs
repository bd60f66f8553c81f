//! Issue 19, replayed as a hostile tenant would: ownership nobody can forge or overreach.
//! The tenants act through clients impersonating ServiceAccounts that hold only a namespaced
//! Role (DNSEndpoints, DNSProviders, Services, Ingresses, Secrets); the operator runs under
//! the shipped RBAC; the records live in a real BIND.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use extdns::crd::{ClusterDNSProvider, DNSEndpoint, DNSProvider};
use extdns::dns::{Provider, RecordType, Zone};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::DeleteParams;
use kube::{Api, Client};
use serde_json::json;

use crate::harness::*;
use crate::identity::OPERATOR_NS;
use crate::rfc2136::{reader, Bind, TSIG_NAME, TSIG_SECRET};

/// A client acting as ServiceAccount `name` of `ns`, whose only rights are a tenant's Role
/// in `ns`.
async fn tenant_client(admin: &Client, ns: &str, name: &str) -> Client {
    apply(
        &Api::<ServiceAccount>::namespaced(admin.clone(), ns),
        name,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    )
    .await;
    apply(
        &Api::<Role>::namespaced(admin.clone(), ns),
        "tenant",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "tenant"},
            "rules": [
                {"apiGroups": ["extdns.io"], "resources": ["dnsendpoints", "dnsproviders"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["services", "secrets"], "verbs": ["*"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["*"]}
            ]
        }),
    )
    .await;
    apply(
        &Api::<RoleBinding>::namespaced(admin.clone(), ns),
        &format!("tenant-{name}"),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("tenant-{name}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
        }),
    )
    .await;
    let mut config = kube::Config::infer().await.expect("kubeconfig of the local control plane");
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:{name}"));
    Client::try_from(config).expect("tenant client")
}

/// A ClusterDNSProvider of the platform on the test's BIND, its TSIG key in the operator's
/// namespace, serving the namespaces labelled `selector`.
async fn bind_cluster_provider(client: &Client, name: &str, zone: &str, port: u16, selector: serde_json::Value) {
    apply(
        &Api::<Secret>::namespaced(client.clone(), OPERATOR_NS),
        name,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"secret": TSIG_SECRET}}),
    )
    .await;
    apply(
        &Api::<ClusterDNSProvider>::all(client.clone()),
        name,
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "ClusterDNSProvider",
            "metadata": {"name": name},
            "spec": {
                "rfc2136": {
                    "host": "127.0.0.1", "port": port, "zones": [zone], "timeout": "1s",
                    "tsig": {"keyName": TSIG_NAME, "secretRef": {"name": name, "key": "secret"}}
                },
                "namespaceSelector": {"matchLabels": selector},
                "managedRecordTypes": ["A", "AAAA", "CNAME", "TXT", "MX"],
                "policy": "sync",
                "registry": {"txt": {"ownerId": "redteam"}},
                "defaultTTL": 60
            }
        }),
    )
    .await;
}

/// Waits until every record of the DNSEndpoint has left Pending; returns each record's
/// (state, message) by "name type".
async fn settled_states(api: &Api<DNSEndpoint>, name: &str, count: usize) -> BTreeMap<String, (String, String)> {
    wait_for(&format!("DNSEndpoint {name}: {count} records with a final state"), DEADLINE, || {
        let api = api.clone();
        async move {
            let records = api.get_opt(name).await.ok()??.status?.records;
            let done = records.len() == count
                && records.iter().all(|r| !["Pending", "Unreachable"].contains(&r.state.as_str()));
            done.then(|| {
                records
                    .into_iter()
                    .map(|r| {
                        (
                            format!("{} {}", r.dns_name.trim_end_matches('.'), r.record_type),
                            (r.state, r.message.unwrap_or_default()),
                        )
                    })
                    .collect()
            })
        }
    })
    .await
}

fn forged(owner: &str, resource: &str) -> String {
    format!("heritage=external-dns,external-dns/owner={owner},external-dns/resource={resource}")
}

/// Scenarios 1, 2, 3, 6 and item 9: forged ownership values, injected labels, claims below
/// another namespace's name, on its ownership TXT's name and at the zone apex are refused;
/// the platform's hand-written records and bob's records are untouched; an unbounded
/// resyncInterval is refused by the API server.
#[tokio::test]
async fn a_tenant_cannot_forge_inject_or_reach_into_another_namespace() {
    let admin = client().await;
    let label = json!({"ownership-e2e": "forge"});
    let a = TestNs::new(&admin, "forge-a", label.clone()).await;
    let b = TestNs::new(&admin, "forge-b", label.clone()).await;
    let zone = "forge.e2e.test";
    let bind = Bind::start("ownership_forge", zone);
    bind.nsupdate(
        zone,
        &[format!("update add legacy.{zone} 300 A 192.0.2.77"), format!("update add legacy2.{zone} 300 A 192.0.2.78")],
    );
    let _op = Operator::start("ownership_forge");
    let provider = format!("forge-{}", std::process::id());
    bind_cluster_provider(&admin, &provider, zone, bind.port, label).await;

    let alice = tenant_client(&admin, &a.name, "alice").await;
    let bob = tenant_client(&admin, &b.name, "bob").await;
    let alice_eps: Api<DNSEndpoint> = Api::namespaced(alice.clone(), &a.name);
    let bob_eps: Api<DNSEndpoint> = Api::namespaced(bob.clone(), &b.name);

    // bob's name, first.
    apply(
        &bob_eps,
        "web",
        dnsendpoint("web", json!([{"dnsName": format!("web.{zone}"), "recordType": "A", "targets": ["192.0.2.10"]}])),
    )
    .await;
    wait_condition(&bob_eps, "web", "Ready", "True").await;
    wait_dig(bind.port, &format!("web.{zone}"), "A", &["192.0.2.10"]).await;

    // Scenario 1 and 2: TXT values that read as ownership, then a claim of the platform's record.
    let hijack = json!([
        {"dnsName": format!("a-legacy.{zone}"), "recordType": "TXT", "targets": [forged("redteam", &format!("crd/{}/hijack", a.name))]},
        {"dnsName": format!("a-legacy2.{zone}"), "recordType": "TXT", "targets": [forged("redteam", &format!("crd/{}/hijack", a.name))]},
        {"dnsName": format!("aaaa-web.{zone}"), "recordType": "TXT", "targets": [format!("\"{}\"", forged("squatter", "crd/x/y"))]},
        {"dnsName": format!("legacy.{zone}"), "recordType": "A", "targets": ["203.0.113.66"]}
    ]);
    apply(&alice_eps, "hijack", dnsendpoint("hijack", hijack)).await;
    let states = settled_states(&alice_eps, "hijack", 4).await;
    for (i, name) in ["a-legacy", "a-legacy2", "aaaa-web"].iter().enumerate() {
        let (state, message) = &states[&format!("{name}.{zone} TXT")];
        assert_eq!(state, "Invalid", "{name}: {message}");
        assert!(message.contains(&format!("spec.endpoints[{i}].targets[0]")), "{message}");
    }
    let (state, message) = &states[&format!("legacy.{zone} A")];
    assert_eq!(state, "RecordExists", "{message}");
    assert_eq!(
        condition(&alice_eps.get("hijack").await.unwrap(), "Ready").map(|c| c.status.clone()),
        Some("False".into())
    );

    // Scenario 3: a label that would inject an owner into the ownership TXT.
    let mut leak = dnsendpoint(
        "leak",
        json!([{"dnsName": format!("leak.{zone}"), "recordType": "A", "targets": ["192.0.2.20"],
                "labels": {"resource": format!("crd/{}/leak,external-dns/owner=nobody", a.name)}}]),
    );
    leak["metadata"]["name"] = json!("leak");
    let refused = alice_eps
        .patch("leak", &kube::api::PatchParams::apply("e2e-test").force(), &kube::api::Patch::Apply(&leak))
        .await;
    match refused {
        // The CRD schema refuses it at apply time...
        Err(kube::Error::Api(e)) => assert!(e.message.contains("labels"), "{}", e.message),
        // ...or, where a schema cannot say it, the operator does.
        Ok(_) => {
            let states = settled_states(&alice_eps, "leak", 1).await;
            let (state, message) = &states[&format!("leak.{zone} A")];
            assert_eq!(state, "Invalid", "{message}");
            assert!(message.contains("labels.resource"), "{message}");
        }
        Err(e) => panic!("applying the injected label: {e}"),
    }

    // Item 5 and 9: below bob's name, on his ownership TXT's name, at the apex.
    let overreach = json!([
        {"dnsName": format!("_acme-challenge.web.{zone}"), "recordType": "TXT", "targets": ["dns-01-token"]},
        {"dnsName": format!("a-web.{zone}"), "recordType": "CNAME", "targets": ["elsewhere.example.net"]},
        {"dnsName": zone, "recordType": "MX", "targets": ["10 mail.example.net"]},
        {"dnsName": format!("own.{zone}"), "recordType": "A", "targets": ["192.0.2.30"]}
    ]);
    apply(&alice_eps, "overreach", dnsendpoint("overreach", overreach)).await;
    let states = settled_states(&alice_eps, "overreach", 4).await;
    let state = |key: String| states[&key].0.clone();
    let got = [
        state(format!("_acme-challenge.web.{zone} TXT")),
        state(format!("a-web.{zone} CNAME")),
        state(format!("{zone} MX")),
        state(format!("own.{zone} A")),
    ];
    assert_eq!(got, ["Conflict", "Conflict", "NameNotAllowed", "Ready"], "{states:?}");
    let acme = &states[&format!("_acme-challenge.web.{zone} TXT")].1;
    assert!(acme.contains(&format!("namespace {}", b.name)), "{acme}");

    // Scenario 2: bob's AAAA at his own name is published (no forged claim stands in its way).
    apply(
        &bob_eps,
        "web",
        dnsendpoint(
            "web",
            json!([
                {"dnsName": format!("web.{zone}"), "recordType": "A", "targets": ["192.0.2.10"]},
                {"dnsName": format!("web.{zone}"), "recordType": "AAAA", "targets": ["2001:db8::10"]}
            ]),
        ),
    )
    .await;
    wait_dig(bind.port, &format!("web.{zone}"), "AAAA", &["2001:db8::10"]).await;

    // Item 6: a resync interval that would list a shared account nonstop never gets in.
    let providers: Api<DNSProvider> = Api::namespaced(alice.clone(), &a.name);
    let spin = json!({"apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "spin"},
                      "spec": {"inMemory": {"zones": ["spin.e2e.test"]}, "resyncInterval": "0"}});
    match providers.patch("spin", &kube::api::PatchParams::apply("e2e-test"), &kube::api::Patch::Apply(&spin)).await {
        Err(kube::Error::Api(e)) => assert!(e.message.contains("resyncInterval"), "{}", e.message),
        other => panic!("resyncInterval \"0\" must be refused by the API server: {other:?}"),
    }

    // Whatever alice wrote, the platform's records and bob's stand, and nothing of hers
    // that was refused reached the zone.
    assert_eq!(dig(bind.port, &format!("legacy.{zone}"), "A"), ["192.0.2.77"]);
    assert_eq!(dig(bind.port, &format!("legacy2.{zone}"), "A"), ["192.0.2.78"]);
    for (name, rtype) in [("a-legacy", "TXT"), ("_acme-challenge.web", "TXT"), ("a-web", "CNAME"), ("leak", "A")] {
        assert!(dig(bind.port, &format!("{name}.{zone}"), rtype).is_empty(), "{name} {rtype} was published");
    }
    assert!(dig(bind.port, zone, "MX").is_empty());
    assert_eq!(dig(bind.port, &format!("web.{zone}"), "A"), ["192.0.2.10"]);
    wait_dig(bind.port, &format!("own.{zone}"), "A", &["192.0.2.30"]).await;

    for ns in [a, b] {
        ns.cleanup().await;
    }
    let cluster: Api<ClusterDNSProvider> = Api::all(admin.clone());
    cluster.delete(&provider, &DeleteParams::default()).await.expect("delete ClusterDNSProvider");
    wait_gone(&cluster, &provider).await;
    assert_eq!(
        dig(bind.port, &format!("legacy2.{zone}"), "A"),
        ["192.0.2.78"],
        "the platform's record outlived everything"
    );
}

/// An rfc2136 DNSProvider in `ns` on the test's BIND, for names in `domains` only.
fn split_provider(name: &str, zone: &str, port: u16, domain: &str) -> serde_json::Value {
    json!({
        "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": name},
        "spec": {
            "rfc2136": {"host": "127.0.0.1", "port": port, "zones": [zone], "timeout": "1s",
                        "tsig": {"keyName": TSIG_NAME, "secretRef": {"name": "tsig", "key": "secret"}}},
            "domains": {"include": [domain]},
            "policy": "sync",
            "registry": {"txt": {"ownerId": "one-owner"}},
            "defaultTTL": 60
        }
    })
}

/// Scenario 9: two providers with one owner id and disjoint `spec.domains` in one zone leave
/// each other's records alone, also after their new-provider grace, when each plans every
/// name it lists.
#[tokio::test]
async fn providers_with_one_owner_and_disjoint_domains_leave_each_other_alone() {
    let admin = client().await;
    let ns = TestNs::new(&admin, "split", json!({})).await;
    let zone = "split.e2e.test";
    let bind = Bind::start("ownership_split", zone);
    let _op = Operator::start("ownership_split");
    apply(
        &Api::<Secret>::namespaced(admin.clone(), &ns.name),
        "tsig",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tsig"}, "stringData": {"secret": TSIG_SECRET}}),
    )
    .await;
    let providers: Api<DNSProvider> = Api::namespaced(admin.clone(), &ns.name);
    let eps: Api<DNSEndpoint> = Api::namespaced(admin.clone(), &ns.name);
    let started = Instant::now();
    for side in ["left", "right"] {
        apply(&providers, side, split_provider(side, zone, bind.port, &format!("{side}.{zone}"))).await;
        let mut ep = dnsendpoint(
            side,
            json!([{"dnsName": format!("web.{side}.{zone}"), "recordType": "A", "targets": ["192.0.2.40"]}]),
        );
        ep["spec"]["providerRef"] = json!({"kind": "DNSProvider", "name": side});
        apply(&eps, side, ep).await;
    }
    for side in ["left", "right"] {
        wait_condition(&eps, side, "Ready", "True").await;
        wait_dig(bind.port, &format!("web.{side}.{zone}"), "A", &["192.0.2.40"]).await;
    }
    // Past the 60-s grace each provider plans every name it lists again; both records must
    // stay through it and after.
    let grace_over = Duration::from_secs(60 + 15);
    while started.elapsed() < grace_over {
        for side in ["left", "right"] {
            assert_eq!(
                dig(bind.port, &format!("web.{side}.{zone}"), "A"),
                ["192.0.2.40"],
                "{side}'s record was deleted"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for side in ["left", "right"] {
        let managed = providers.get(side).await.expect("provider").status.and_then(|s| s.managed_records);
        assert_eq!(managed, Some(1), "{side} counts only the records of its own domains");
    }
    ns.cleanup().await;
    for side in ["left", "right"] {
        wait_dig(bind.port, &format!("web.{side}.{zone}"), "A", &[]).await;
    }
}

/// Scenario 4: a namespace deleted while its provider's BIND hangs leaves nothing behind:
/// once BIND is back, the records and their ownership TXTs go before the finalizers do.
#[tokio::test]
async fn records_leave_with_their_namespace_during_a_backend_hang() {
    let admin = client().await;
    let ns = TestNs::new(&admin, "hang", json!({})).await;
    let zone = "hang.e2e.test";
    let bind = Bind::start("ownership_hang", zone);
    let op = Operator::start("ownership_hang");
    crate::rfc2136::rfc2136_provider(&admin, &ns.name, zone, bind.port, "hang").await;
    let eps: Api<DNSEndpoint> = Api::namespaced(admin.clone(), &ns.name);
    let names: Vec<String> = (0..5).map(|i| format!("r{i}.{zone}")).collect();
    let records: Vec<serde_json::Value> =
        names.iter().map(|n| json!({"dnsName": n, "recordType": "A", "targets": ["192.0.2.50"]})).collect();
    apply(&eps, "many", dnsendpoint("many", json!(records))).await;
    wait_condition(&eps, "many", "Ready", "True").await;
    let reader = reader(bind.port, zone);
    let held = reader.records(&Zone::named(zone)).await.expect("read the zone");
    assert_eq!(held.iter().filter(|e| e.record_type == RecordType::TXT).count(), 5, "{held:?}");

    bind.pause();
    Api::<Namespace>::all(admin.clone()).delete(&ns.name, &DeleteParams::default()).await.expect("delete namespace");
    // The operator's deletes go unanswered while BIND hangs.
    wait_for("an apply that found BIND unreachable", DEADLINE, || {
        let op = &op;
        async move {
            (op.counter("extdns_provider_calls_total", &["operation=\"apply\"", "outcome=\"error\""]).await > 0)
                .then_some(())
        }
    })
    .await;
    bind.resume();
    ns.cleanup().await;
    let left: Vec<String> = reader
        .records(&Zone::named(zone))
        .await
        .expect("read the zone")
        .into_iter()
        // The zone file's own records (SOA, NS and its glue) stay.
        .filter(|e| names.iter().any(|n| e.dns_name == *n || e.dns_name == format!("a-{n}")))
        .map(|e| format!("{} {}", e.dns_name, e.record_type))
        .collect();
    assert!(left.is_empty(), "records outlived their namespace: {left:?}");
}
