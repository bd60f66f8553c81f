//! End-to-end suite: the extdns binary against the local control plane (`make cluster-up`)
//! and real DNS servers. Run with `make e2e`; tests run one at a time because each starts
//! its own operator, which watches the whole cluster.

mod azure;
mod budget;
mod chart;
mod cloudflare;
mod crd_source;
mod gateway;
mod google;
mod harness;
mod http_backends;
mod identity;
mod install;
#[path = "../kstatus/mod.rs"]
mod kstatus;
mod leader;
mod migration;
mod node_pod;
mod ownership;
mod readiness;
mod rfc2136;
mod route53;
mod source;
mod tenancy;

use extdns::crd::DNSEndpoint;
use harness::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

async fn set_lb_ip(api: &Api<Service>, name: &str, ip: &str) {
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("patch Service status");
}

/// 1. A LoadBalancer Service becomes a DNSEndpoint owned by it and a live record that
///    follows the address, the annotation and the Service's deletion.
#[tokio::test]
async fn service_lifecycle() {
    let mut env = EmbeddedEnv::start("svc", "svc.e2e.test").await;
    let (client, ns, port) = (env.client.clone(), &env.ns, env.port);

    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let svc_json = |annotated: bool| {
        let annotations = if annotated {
            json!({"external-dns.alpha.kubernetes.io/hostname": "web.svc.e2e.test."})
        } else {
            json!({})
        };
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "annotations": annotations},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}
        })
    };
    let svc = apply(&svcs, "web", svc_json(true)).await;
    set_lb_ip(&svcs, "web", "192.0.2.1").await;

    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let ep = wait_condition(&eps, "web-service", "Ready", "True").await;
    let owner = &ep.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), Some(&owner.uid)),
        ("Service", "web", svc.metadata.uid.as_ref())
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(ep.labels().get("app.kubernetes.io/managed-by").map(String::as_str), Some("extdns"));
    wait_dig(port, "web.svc.e2e.test", "A", &["192.0.2.1"]).await;

    set_lb_ip(&svcs, "web", "192.0.2.2").await;
    wait_dig(port, "web.svc.e2e.test", "A", &["192.0.2.2"]).await;

    // Without the annotation the Service yields nothing: its DNSEndpoint and record go.
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {"external-dns.alpha.kubernetes.io/hostname": null}}})),
    )
    .await
    .expect("remove annotation");
    wait_gone(&eps, "web-service").await;
    wait_dig(port, "web.svc.e2e.test", "A", &[]).await;

    // Back again, then deleting the Service removes the DNSEndpoint through owner GC.
    apply(&svcs, "web", svc_json(true)).await;
    wait_condition(&eps, "web-service", "Ready", "True").await;
    wait_dig(port, "web.svc.e2e.test", "A", &["192.0.2.2"]).await;
    svcs.delete("web", &DeleteParams::foreground()).await.expect("delete Service");
    wait_gone(&eps, "web-service").await;
    wait_dig(port, "web.svc.e2e.test", "A", &[]).await;

    ns.cleanup().await;
    env.op.stop();
}

/// 2. An Ingress publishes a record for each rule host and TLS host.
#[tokio::test]
async fn ingress_hosts() {
    let env = EmbeddedEnv::start("ing", "ing.e2e.test").await;
    let (client, ns, port) = (env.client.clone(), &env.ns, env.port);
    let ings: Api<Ingress> = Api::namespaced(client.clone(), &ns.name);
    let backend = json!({"service": {"name": "web", "port": {"number": 80}}});
    apply(
        &ings,
        "shop",
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "shop"},
            "spec": {
                "tls": [{"hosts": ["secure.ing.e2e.test"], "secretName": "x"}],
                "rules": [
                    {"host": "shop.ing.e2e.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}},
                    {"host": "api.ing.e2e.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
                ]
            }
        }),
    )
    .await;
    ings.patch_status(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.30"}]}}})),
    )
    .await
    .expect("patch Ingress status");
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    wait_condition(&eps, "shop-ingress", "Ready", "True").await;
    for host in ["shop.ing.e2e.test", "api.ing.e2e.test", "secure.ing.e2e.test"] {
        wait_dig(port, host, "A", &["192.0.2.30"]).await;
    }
    ns.cleanup().await;
}

/// 4. An invalid record is reported by field while valid ones in the namespace go live.
#[tokio::test]
async fn invalid_dnsendpoint_is_stalled_and_valid_one_ready() {
    let env = EmbeddedEnv::start("invalid", "example.com").await;
    let (client, ns, port) = (env.client.clone(), &env.ns, env.port);
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    // The invalid sample exactly as shipped.
    let sample: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("samples/invalid-dnsendpoint.yaml")).expect("sample"),
    )
    .expect("yaml");
    let mut sample = sample;
    sample["metadata"]["namespace"] = json!(ns.name);
    apply(&eps, "invalid", sample).await;
    apply(
        &eps,
        "valid",
        dnsendpoint("valid", json!([{"dnsName": "ok.example.com", "recordType": "A", "targets": ["192.0.2.40"]}])),
    )
    .await;

    wait_condition(&eps, "valid", "Ready", "True").await;
    wait_condition(&eps, "invalid", "Stalled", "True").await;
    // Stalled as soon as it is routed; its valid record goes live a moment later, and only
    // then is the generation applied (status.observedGeneration), which kstatus waits for.
    let bad = wait_for("the invalid object's generation to be applied", DEADLINE, || {
        let eps = eps.clone();
        async move {
            let ep = eps.get_opt("invalid").await.ok()??;
            (ep.status.as_ref()?.observed_generation == ep.metadata.generation).then_some(ep)
        }
    })
    .await;
    let ready = condition(&bad, "Ready").expect("Ready condition");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "InvalidRecord");
    assert!(ready.message.contains("spec.endpoints[1].targets[0]"), "message names the field: {}", ready.message);
    assert!(ready.message.contains("not-an-ip"), "message names the value: {}", ready.message);
    // Flux and every kstatus reader see the same: Current for the live one, Failed for the
    // Stalled one, with the message naming the field.
    let valid = serde_json::to_value(eps.get("valid").await.expect("get valid")).expect("json");
    assert_eq!(kstatus::compute(&valid).status, kstatus::Status::Current, "valid: {valid}");
    let stalled = kstatus::compute(&serde_json::to_value(&bad).expect("json"));
    assert_eq!(stalled.status, kstatus::Status::Failed);
    assert!(stalled.message.contains("spec.endpoints[1].targets[0]"), "kstatus message: {}", stalled.message);
    // The valid record of the invalid object is still published.
    wait_dig(port, "fine.example.com", "A", &["192.0.2.20"]).await;
    wait_dig(port, "ok.example.com", "A", &["192.0.2.40"]).await;
    assert!(dig(port, "broken.example.com", "A").is_empty());
    ns.cleanup().await;
}

/// 5. Two DNSEndpoints claim one name: the older wins, the younger is told so, and takes
///    over when the winner goes.
#[tokio::test]
async fn conflicting_dnsendpoints() {
    let env = EmbeddedEnv::start("conflict", "conflict.e2e.test").await;
    let (client, ns, port) = (env.client.clone(), &env.ns, env.port);
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &eps,
        "first",
        dnsendpoint("first", json!([{"dnsName": "x.conflict.e2e.test", "recordType": "A", "targets": ["192.0.2.51"]}])),
    )
    .await;
    wait_condition(&eps, "first", "Ready", "True").await;
    // creationTimestamp has one-second resolution: make "second" unambiguously younger.
    let first_created = eps.get("first").await.expect("get").metadata.creation_timestamp.expect("ts");
    wait_for("the clock to pass the first object's creation second", DEADLINE, || {
        let t = first_created.clone();
        async move { (jiff::Timestamp::now().as_second() > t.0.as_second()).then_some(()) }
    })
    .await;
    apply(
        &eps,
        "second",
        dnsendpoint(
            "second",
            json!([{"dnsName": "x.conflict.e2e.test", "recordType": "A", "targets": ["192.0.2.52"]}]),
        ),
    )
    .await;
    let loser = wait_condition(&eps, "second", "Stalled", "True").await;
    let stalled = condition(&loser, "Stalled").expect("Stalled");
    assert_eq!(stalled.reason, "Conflict");
    assert!(stalled.message.contains(&format!("{}/first", ns.name)), "names the winner: {}", stalled.message);
    wait_dig(port, "x.conflict.e2e.test", "A", &["192.0.2.51"]).await;

    eps.delete("first", &DeleteParams::default()).await.expect("delete first");
    wait_gone(&eps, "first").await;
    wait_condition(&eps, "second", "Ready", "True").await;
    wait_dig(port, "x.conflict.e2e.test", "A", &["192.0.2.52"]).await;
    ns.cleanup().await;
}

/// 6. A DNSProvider serves only its namespace; a ClusterDNSProvider only the namespaces its
///    selector matches.
#[tokio::test]
async fn provider_scoping() {
    let client = client().await;
    let home = TestNs::new(&client, "scope-home", json!({})).await;
    let other = TestNs::new(&client, "scope-other", json!({})).await;
    let team = TestNs::new(&client, "scope-team", json!({"team": "dns-e2e"})).await;
    let port_ns = port();
    let port_cluster = port();
    let _op = Operator::start("provider_scoping");
    apply(
        &Api::<extdns::crd::DNSProvider>::namespaced(client.clone(), &home.name),
        "dns",
        embedded_provider("dns", "home.e2e.test", port_ns),
    )
    .await;
    let cluster_api: Api<extdns::crd::ClusterDNSProvider> = Api::all(client.clone());
    let mut cp = embedded_provider("scope-e2e", "team.e2e.test", port_cluster);
    cp["kind"] = json!("ClusterDNSProvider");
    cp["spec"]["namespaceSelector"] = json!({"matchLabels": {"team": "dns-e2e"}});
    apply(&cluster_api, "scope-e2e", cp).await;

    let rec = |n: &str, ip: &str| dnsendpoint("r", json!([{"dnsName": n, "recordType": "A", "targets": [ip]}]));
    let home_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &home.name);
    let other_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &other.name);
    let team_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &team.name);
    apply(&home_eps, "r", rec("a.home.e2e.test", "192.0.2.61")).await;
    apply(&other_eps, "r", rec("b.home.e2e.test", "192.0.2.62")).await;
    apply(&team_eps, "r", rec("c.team.e2e.test", "192.0.2.63")).await;
    let other_team = TestNs::new(&client, "scope-noteam", json!({})).await;
    let noteam_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &other_team.name);
    apply(&noteam_eps, "r", rec("d.team.e2e.test", "192.0.2.64")).await;

    wait_condition(&home_eps, "r", "Ready", "True").await;
    wait_condition(&team_eps, "r", "Ready", "True").await;
    for api in [&other_eps, &noteam_eps] {
        let ep = wait_condition(api, "r", "Stalled", "True").await;
        assert_eq!(condition(&ep, "Stalled").map(|c| c.reason.as_str()), Some("NoProvider"));
    }
    wait_dig(port_ns, "a.home.e2e.test", "A", &["192.0.2.61"]).await;
    wait_dig(port_cluster, "c.team.e2e.test", "A", &["192.0.2.63"]).await;
    assert!(dig(port_ns, "b.home.e2e.test", "A").is_empty());
    assert!(dig(port_cluster, "d.team.e2e.test", "A").is_empty());

    for ns in [home, other, team, other_team] {
        ns.cleanup().await;
    }
    cluster_api.delete("scope-e2e", &DeleteParams::default()).await.expect("delete ClusterDNSProvider");
}

/// 8. `kubectl wait --for=condition=Ready` works on DNSEndpoints.
#[tokio::test]
async fn kubectl_wait_works() {
    let env = EmbeddedEnv::start("wait", "wait.e2e.test").await;
    let (client, ns) = (env.client.clone(), &env.ns);
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &eps,
        "w",
        dnsendpoint("w", json!([{"dnsName": "w.wait.e2e.test", "recordType": "A", "targets": ["192.0.2.70"]}])),
    )
    .await;
    let kubectl = std::env::var("EXTDNS_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let nsname = ns.name.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(kubectl)
            .args(["wait", "--for=condition=Ready", "--timeout=60s", "-n", &nsname, "dnsendpoint/w"])
            .output()
            .expect("kubectl runs")
    })
    .await
    .expect("join");
    assert!(out.status.success(), "kubectl wait failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));
    let get = std::process::Command::new(std::env::var("EXTDNS_KUBECTL").unwrap_or_else(|_| "kubectl".into()))
        .args(["get", "dnsendpoints", "-n", &ns.name])
        .output()
        .expect("kubectl get");
    let table = String::from_utf8_lossy(&get.stdout);
    assert!(
        table.contains("HOSTNAMES") && table.contains("READY") && table.contains("REASON"),
        "printer columns: {table}"
    );
    assert!(
        table.contains("w.wait.e2e.test") && table.contains("True") && table.contains("RecordsLive"),
        "row: {table}"
    );
    ns.cleanup().await;
}

/// A bad annotation is told to the user as an Event on the Service (events.k8s.io), and a
/// repeat of it patches that Event's series: the Event rules of config/rbac at work.
#[tokio::test]
async fn invalid_annotation_is_an_event() {
    use k8s_openapi::api::events::v1::Event;
    let env = EmbeddedEnv::start("event", "event.e2e.test").await;
    let (client, ns, port) = (env.client.clone(), &env.ns, env.port);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &svcs,
        "web",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "annotations": {
                "external-dns.alpha.kubernetes.io/hostname": "web.event.e2e.test",
                "external-dns.alpha.kubernetes.io/ttl": "soon"
            }},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}
        }),
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let invalid_annotation = |events: Api<Event>| async move {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("InvalidAnnotation")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web")
        })
    };
    // Each address change rewrites the DNSEndpoint, and the warning goes out with the write.
    set_lb_ip(&svcs, "web", "192.0.2.91").await;
    wait_dig(port, "web.event.e2e.test", "A", &["192.0.2.91"]).await;
    let first =
        wait_for("an InvalidAnnotation Event on Service web", DEADLINE, || invalid_annotation(events.clone())).await;
    assert!(first.note.as_deref().unwrap_or_default().contains("soon"), "names the value: {:?}", first.note);
    set_lb_ip(&svcs, "web", "192.0.2.92").await;
    wait_dig(port, "web.event.e2e.test", "A", &["192.0.2.92"]).await;
    wait_for("the InvalidAnnotation Event to count a repeat", DEADLINE, || {
        let events = events.clone();
        async move { invalid_annotation(events).await?.series.filter(|s| s.count >= 2).map(|_| ()) }
    })
    .await;
    ns.cleanup().await;
}
