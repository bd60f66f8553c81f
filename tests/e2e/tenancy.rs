//! End-to-end tests of the tenant security model: what namespaced DNSProviders may use,
//! who gets an embedded listen address, and which namespace a name belongs to.

use extdns::crd::{ClusterDNSProvider, DNSEndpoint, DNSProvider};
use extdns::dns::{RecordType, Zone};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::DeleteParams;
use kube::Api;
use serde_json::json;

use crate::harness::*;
use crate::route53::{create_zone, records, sdk, Moto};

/// Waits until the DNSProvider's Ready condition has `status` and `reason`, and its Stalled
/// condition says whether that needs a human (GitOps tools read it: Degraded / Failed).
pub(crate) async fn wait_provider(api: &Api<DNSProvider>, name: &str, status: &str, reason: &str) -> Condition {
    let needs_human = status == "False" && !["Pending", "Unreachable", "Throttled"].contains(&reason);
    let stalled = if needs_human { ("True", reason) } else { ("False", "AsExpected") };
    wait_for(
        &format!("DNSProvider {name} Ready={status} reason {reason}, Stalled={} reason {}", stalled.0, stalled.1),
        DEADLINE,
        || {
            let api = api.clone();
            async move {
                let p = api.get_opt(name).await.ok()??;
                let conditions = &p.status.as_ref()?.conditions;
                let c = conditions.iter().find(|c| c.type_ == "Ready")?.clone();
                let s = conditions.iter().find(|c| c.type_ == "Stalled")?;
                (c.status == status && c.reason == reason && (s.status.as_str(), s.reason.as_str()) == stalled)
                    .then_some(c)
            }
        },
    )
    .await
}

/// Waits until the DNSEndpoint's first record has `state`, and returns the object.
pub(crate) async fn wait_record_state(api: &Api<DNSEndpoint>, name: &str, state: &str) -> DNSEndpoint {
    wait_for(&format!("DNSEndpoint {name} record state {state}"), DEADLINE, || {
        let api = api.clone();
        async move {
            let ep = api.get_opt(name).await.ok()??;
            let records = &ep.status.as_ref()?.records;
            (!records.is_empty() && records.iter().all(|r| r.state == state)).then_some(ep)
        }
    })
    .await
}

pub(crate) fn record_messages(ep: &DNSEndpoint) -> String {
    ep.status.iter().flat_map(|s| &s.records).filter_map(|r| r.message.clone()).collect::<Vec<_>>().join("\n")
}

pub(crate) fn embedded_cluster_provider(
    name: &str,
    zone: &str,
    port: u16,
    selector: serde_json::Value,
) -> serde_json::Value {
    let mut p = embedded_provider(name, zone, port);
    p["kind"] = json!("ClusterDNSProvider");
    p["spec"]["namespaceSelector"] = json!({"matchLabels": selector});
    p
}

/// Issue 10 item 2: a tenant's route53 DNSProvider without credentials would sign with the
/// operator's own AWS identity. Refused by default (Ready=False, NotPermitted, the message
/// names the field and the flag; its records say so and nothing reaches the API); allowed
/// once the operator runs with the flags, and then it really uses the operator's identity.
#[tokio::test]
async fn namespaced_ambient_credentials_need_the_flag() {
    let client = client().await;
    let moto = Moto::start().await;
    let aws = sdk(&moto).await;
    let zone_name = format!("amb{}.tenancy.e2e.test", std::process::id());
    let zone: Zone = create_zone(&aws, &zone_name, false).await;
    let ns = TestNs::new(&client, "ambient", json!({})).await;
    let mut op = Operator::start_strict("tenancy-ambient", &[], &[]);

    let providers: Api<DNSProvider> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &providers,
        "r53",
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "r53"},
            "spec": {
                "route53": {"region": "us-east-1", "endpoint": moto.endpoint()},
                "domains": {"include": [zone_name]},
                "policy": "sync",
                "registry": {"txt": {"ownerId": "e2e"}}
            }
        }),
    )
    .await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let name = format!("app.{zone_name}");
    apply(&eps, "app", dnsendpoint("app", json!([{"dnsName": name, "recordType": "A", "targets": ["192.0.2.7"]}])))
        .await;

    let c = wait_provider(&providers, "r53", "False", "NotPermitted").await;
    assert!(
        c.message.contains("spec.route53.credentials") && c.message.contains("--namespaced-ambient-credentials"),
        "{}",
        c.message
    );
    let ep = wait_record_state(&eps, "app", "NotPermitted").await;
    assert_eq!(
        condition(&ep, "Ready").map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("False", "NotPermitted"))
    );
    assert!(record_messages(&ep).contains("--namespaced-ambient-credentials"), "{}", record_messages(&ep));
    assert!(records(&aws, &zone, &name, RecordType::A).await.is_empty(), "a refused provider writes nothing");

    // With the custom endpoint allowed but not ambient credentials, still refused for those.
    op.stop();
    let mut op = Operator::start_strict("tenancy-ambient", &["--namespaced-custom-endpoint"], &[]);
    let c = wait_provider(&providers, "r53", "False", "NotPermitted").await;
    assert!(c.message.contains("--namespaced-ambient-credentials"), "{}", c.message);

    // The platform team allows it: the operator's own (environment) credentials are used.
    op.stop();
    let _op = Operator::start_strict(
        "tenancy-ambient",
        &["--namespaced-ambient-credentials", "--namespaced-custom-endpoint"],
        &[("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")],
    );
    wait_provider(&providers, "r53", "True", "ZonesFound").await;
    wait_condition(&eps, "app", "Ready", "True").await;
    let got = records(&aws, &zone, &name, RecordType::A).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].targets, vec!["192.0.2.7".to_string()]);

    ns.cleanup().await;
}

/// Issue 10 item 2: a tenant's embedded DNSProvider on the address of a ClusterDNSProvider.
/// The tenant's provider is older and held the port first; once the cluster provider exists
/// it takes the address, the tenant's is refused saying who holds it, and an operator
/// restart (which used to start namespaced providers first) changes nothing.
#[tokio::test]
async fn embedded_address_clash_cluster_provider_wins() {
    let client = client().await;
    let tenant = TestNs::new(&client, "clash-tenant", json!({})).await;
    let platform = TestNs::new(&client, "clash-platform", json!({"tenancy-e2e": "clash"})).await;
    let port = port(); // harness: probed free, below the ephemeral port range
    let mut op = Operator::start("tenancy-clash");

    let providers: Api<DNSProvider> = Api::namespaced(client.clone(), &tenant.name);
    apply(&providers, "squat", embedded_provider("squat", "clash.e2e.test", port)).await;
    let tenant_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &tenant.name);
    apply(
        &tenant_eps,
        "www",
        dnsendpoint("www", json!([{"dnsName": "www.clash.e2e.test", "recordType": "A", "targets": ["192.0.2.66"]}])),
    )
    .await;
    wait_dig(port, "www.clash.e2e.test", "A", &["192.0.2.66"]).await;

    let cluster: Api<ClusterDNSProvider> = Api::all(client.clone());
    let cp_name = format!("tenancy-clash-{}", std::process::id());
    apply(
        &cluster,
        &cp_name,
        embedded_cluster_provider(&cp_name, "platform.e2e.test", port, json!({"tenancy-e2e": "clash"})),
    )
    .await;
    let platform_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &platform.name);
    apply(
        &platform_eps,
        "api",
        dnsendpoint("api", json!([{"dnsName": "api.platform.e2e.test", "recordType": "A", "targets": ["192.0.2.10"]}])),
    )
    .await;

    let check = |c: Condition| {
        assert!(c.message.contains(&format!("ClusterDNSProvider/{cp_name}")), "{}", c.message);
        assert!(c.message.contains(&format!("127.0.0.1:{port}")), "{}", c.message);
    };
    check(wait_provider(&providers, "squat", "False", "ListenerConflict").await);
    wait_condition(&platform_eps, "api", "Ready", "True").await;
    wait_dig(port, "api.platform.e2e.test", "A", &["192.0.2.10"]).await;
    assert!(dig(port, "www.clash.e2e.test", "A").is_empty(), "the tenant's server no longer answers there");
    let ep = wait_record_state(&tenant_eps, "www", "ListenerConflict").await;
    assert!(record_messages(&ep).contains(&cp_name), "{}", record_messages(&ep));

    // After a restart the cluster provider binds first, every time.
    op.restart();
    wait_for("the restarted operator to serve the platform's zone", DEADLINE, || async {
        (dig(port, "api.platform.e2e.test", "A") == ["192.0.2.10"]).then_some(())
    })
    .await;
    assert!(dig(port, "www.clash.e2e.test", "A").is_empty());
    check(wait_provider(&providers, "squat", "False", "ListenerConflict").await);
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(!log.contains("embedded DNS server cannot listen"), "no provider raced for the port:\n{}", op.log_tail());

    // A refused provider does not hold up the deletion of its DNSEndpoints.
    tenant_eps.delete("www", &DeleteParams::default()).await.expect("delete the tenant's DNSEndpoint");
    wait_gone(&tenant_eps, "www").await;
    apply(
        &tenant_eps,
        "www",
        dnsendpoint("www", json!([{"dnsName": "www.clash.e2e.test", "recordType": "A", "targets": ["192.0.2.66"]}])),
    )
    .await;

    // The platform's records go, then its provider (its finalizer waits for the records):
    // the tenant's provider gets the address back.
    platform.cleanup().await;
    cluster.delete(&cp_name, &DeleteParams::default()).await.expect("delete ClusterDNSProvider");
    wait_gone(&cluster, &cp_name).await;
    wait_provider(&providers, "squat", "True", "ZonesFound").await;
    wait_dig(port, "www.clash.e2e.test", "A", &["192.0.2.66"]).await;
    tenant.cleanup().await;
}

/// Issue 10 item 3: in a zone shared through a ClusterDNSProvider, a name belongs to the
/// namespace that published it: another namespace can add no AAAA or TXT there. With
/// `namespaceDomains`, a squatter's older claim outside its domain is refused, so the owner's
/// redeploy (delete and create) gets its name back.
#[tokio::test]
async fn names_belong_to_a_namespace() {
    let client = client().await;
    let label = json!({"tenancy-e2e": "names"});
    let a = TestNs::new(&client, "names-a", label.clone()).await;
    let b = TestNs::new(&client, "names-b", label.clone()).await;
    let (shared_port, apps_port) = (port(), port());
    let _op = Operator::start("tenancy-names");
    let cluster: Api<ClusterDNSProvider> = Api::all(client.clone());
    let shared = format!("tenancy-shared-{}", std::process::id());
    let mut cp = embedded_cluster_provider(&shared, "shared.e2e.test", shared_port, label.clone());
    cp["spec"]["managedRecordTypes"] = json!(["A", "AAAA", "CNAME", "TXT"]);
    apply(&cluster, &shared, cp).await;

    let a_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &a.name);
    let b_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &b.name);
    apply(
        &a_eps,
        "web",
        dnsendpoint("web", json!([{"dnsName": "app.shared.e2e.test", "recordType": "A", "targets": ["192.0.2.1"]}])),
    )
    .await;
    wait_condition(&a_eps, "web", "Ready", "True").await;
    wait_dig(shared_port, "app.shared.e2e.test", "A", &["192.0.2.1"]).await;

    apply(
        &b_eps,
        "squat",
        dnsendpoint(
            "squat",
            json!([
                {"dnsName": "app.shared.e2e.test", "recordType": "AAAA", "targets": ["2001:db8::66"]},
                {"dnsName": "app.shared.e2e.test", "recordType": "TXT", "targets": ["site-verification=b"]}
            ]),
        ),
    )
    .await;
    let ep = wait_record_state(&b_eps, "squat", "Conflict").await;
    assert_eq!(condition(&ep, "Stalled").map(|c| c.status.as_str()), Some("True"));
    let msgs = record_messages(&ep);
    assert!(msgs.contains(&format!("namespace {}", a.name)) && msgs.contains(&format!("crd/{}/web", a.name)), "{msgs}");
    assert!(dig(shared_port, "app.shared.e2e.test", "AAAA").is_empty());
    assert!(!dig(shared_port, "app.shared.e2e.test", "TXT").iter().any(|t| t.contains("site-verification=b")));
    assert_eq!(dig(shared_port, "app.shared.e2e.test", "A"), ["192.0.2.1"]);

    // namespaceDomains: each namespace claims only below <namespace>.apps.e2e.test.
    let apps = format!("tenancy-apps-{}", std::process::id());
    let mut cp = embedded_cluster_provider(&apps, "apps.e2e.test", apps_port, label.clone());
    cp["spec"]["namespaceDomains"] = json!(["{namespace}.apps.e2e.test"]);
    apply(&cluster, &apps, cp).await;
    let a_name = format!("web.{}.apps.e2e.test", a.name);
    // The squatter claims a's name first: its claim is the oldest.
    apply(
        &b_eps,
        "early",
        dnsendpoint("early", json!([{"dnsName": a_name, "recordType": "A", "targets": ["192.0.2.66"]}])),
    )
    .await;
    let ep = wait_record_state(&b_eps, "early", "NameNotAllowed").await;
    let msgs = record_messages(&ep);
    assert!(msgs.contains("spec.namespaceDomains") && msgs.contains(&format!("{}.apps.e2e.test", b.name)), "{msgs}");
    // Within its own domain the squatter is served.
    let b_name = format!("web.{}.apps.e2e.test", b.name);
    apply(
        &b_eps,
        "own",
        dnsendpoint("own", json!([{"dnsName": b_name, "recordType": "A", "targets": ["192.0.2.67"]}])),
    )
    .await;
    wait_condition(&b_eps, "own", "Ready", "True").await;

    let a_rec = || dnsendpoint("site", json!([{"dnsName": a_name, "recordType": "A", "targets": ["192.0.2.2"]}]));
    apply(&a_eps, "site", a_rec()).await;
    wait_condition(&a_eps, "site", "Ready", "True").await;
    wait_dig(apps_port, &a_name, "A", &["192.0.2.2"]).await;
    // Redeploy: delete, wait until the record is gone, create again. a wins again.
    a_eps.delete("site", &DeleteParams::default()).await.expect("delete a's DNSEndpoint");
    wait_gone(&a_eps, "site").await;
    wait_dig(apps_port, &a_name, "A", &[]).await;
    apply(&a_eps, "site", a_rec()).await;
    wait_condition(&a_eps, "site", "Ready", "True").await;
    wait_dig(apps_port, &a_name, "A", &["192.0.2.2"]).await;
    wait_record_state(&b_eps, "early", "NameNotAllowed").await;

    for ns in [a, b] {
        ns.cleanup().await;
    }
    for name in [&shared, &apps] {
        cluster.delete(name, &DeleteParams::default()).await.expect("delete ClusterDNSProvider");
        wait_gone(&cluster, name).await;
    }
}

/// Issue 10 item 2: a tenant's rfc2136 DNSProvider pointed at an arbitrary port learns only
/// that it is unreachable: the OS error (refused versus timed out, which maps open ports of
/// the cluster network) stays in the operator log.
#[tokio::test]
async fn namespaced_unreachable_status_hides_network_details() {
    let client = client().await;
    let ns = TestNs::new(&client, "probe", json!({})).await;
    // Nothing listens there: TCP connections are refused at once.
    let closed = port();
    let op = Operator::start_strict("tenancy-probe", &[], &[]);
    let providers: Api<DNSProvider> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &providers,
        "probe",
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "probe"},
            "spec": {
                "rfc2136": {"host": "127.0.0.1", "port": closed, "zones": ["probe.e2e.test"], "transport": "tcp", "timeout": "2s"},
                "domains": {"include": ["probe.e2e.test"]},
                "policy": "sync"
            }
        }),
    )
    .await;
    let c = wait_provider(&providers, "probe", "False", "Unreachable").await;
    for leak in ["refused", "os error", &closed.to_string()] {
        assert!(!c.message.contains(leak), "status leaks {leak:?}: {}", c.message);
    }
    wait_for("the operator log to keep the details", DEADLINE, || async {
        std::fs::read_to_string(&op.log).ok()?.contains("refused").then_some(())
    })
    .await;
    ns.cleanup().await;
}
