//! Gateway API routes as a source, on the suite's Gateway API CRDs
//! (e2e/gateway-api/crds.yaml, installed by `make e2e`). The test plays the gateway
//! controller: it writes the Gateway's addresses and the route's Accepted condition itself.

use extdns::crd::DNSEndpoint;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::harness::*;

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind), plural)
}

async fn set_gateway_address(api: &Api<DynamicObject>, ip: &str) {
    let status = json!({"status": {"addresses": [{"type": "IPAddress", "value": ip}]}});
    api.patch_status("gw", &PatchParams::default(), &Patch::Merge(&status)).await.expect("patch Gateway status");
}

/// Writes `status.parents` as a gateway controller does once it accepted the route's
/// current generation.
async fn accept_route(api: &Api<DynamicObject>, name: &str, gateway_ns: &str) {
    let generation = api.get(name).await.expect("get route").metadata.generation.expect("generation");
    let status = json!({"status": {"parents": [{
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": gateway_ns},
        "controllerName": "example.com/gateway-controller",
        "conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
            "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:00Z"
        }]
    }]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("patch route status");
}

fn http_route(name: &str, gateway_ns: &str, hostnames: &[&str]) -> serde_json::Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gw", "namespace": gateway_ns}],
            "hostnames": hostnames,
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]
        }
    })
}

fn names(ep: &DNSEndpoint) -> Vec<String> {
    ep.spec.endpoints.iter().map(|e| format!("{} {} {}", e.dns_name, e.record_type, e.targets.join(","))).collect()
}

/// A Gateway with an address and two listeners; an HTTPRoute it accepted is published and
/// follows its hostnames, the Gateway's address and its own deletion; a route in a namespace
/// the listeners do not admit is not, until the namespace gets the label they select.
#[tokio::test]
async fn gateway_httproute_lifecycle() {
    let client = client().await;
    let infra = TestNs::new(&client, "gw-infra", json!({})).await;
    let apps = TestNs::new(&client, "gw-apps", json!({"gw-e2e": "allowed"})).await;
    let denied = TestNs::new(&client, "gw-denied", json!({})).await;
    let port = port();
    // Every route kind the CRDs serve: their watches run under config/rbac too.
    let mut op = Operator::start_with(
        "gateway",
        &["--source=service,gateway-httproute,gateway-grpcroute,gateway-tlsroute,gateway-tcproute,gateway-udproute"],
    );
    apply(
        &Api::<extdns::crd::DNSProvider>::namespaced(client.clone(), &apps.name),
        "dns",
        embedded_provider("dns", "gw.e2e.test", port),
    )
    .await;

    let gateways: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &infra.name, &resource("Gateway", "gateways"));
    apply(
        &gateways,
        "gw",
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw"},
            "spec": {
                "gatewayClassName": "example",
                "listeners": [
                    // Routes from namespaces labelled gw-e2e=allowed, below *.gw.e2e.test.
                    {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.gw.e2e.test",
                     "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"gw-e2e": "allowed"}}}}},
                    // Routes from the Gateway's own namespace only.
                    {"name": "internal", "port": 443, "protocol": "HTTPS", "hostname": "internal.gw.e2e.test"}
                ]
            }
        }),
    )
    .await;
    set_gateway_address(&gateways, "192.0.2.101").await;

    let route_ar = resource("HTTPRoute", "httproutes");
    let denied_routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), &denied.name, &route_ar);
    apply(&denied_routes, "web", http_route("web", &infra.name, &["denied.gw.e2e.test"])).await;
    accept_route(&denied_routes, "web", &infra.name).await;

    let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), &apps.name, &route_ar);
    // internal.gw.e2e.test is below the web listener's wildcard, other.example.org matches
    // no listener.
    let route = apply(&routes, "web", http_route("web", &infra.name, &["www.gw.e2e.test", "other.example.org"])).await;
    accept_route(&routes, "web", &infra.name).await;

    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &apps.name);
    let ep = wait_condition(&eps, "web-httproute", "Ready", "True").await;
    assert_eq!(names(&ep), vec!["www.gw.e2e.test A 192.0.2.101"]);
    let owner = &ep.owner_references()[0];
    assert_eq!(
        (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str(), Some(&owner.uid)),
        ("gateway.networking.k8s.io/v1", "HTTPRoute", "web", route.metadata.uid.as_ref())
    );
    wait_dig(port, "www.gw.e2e.test", "A", &["192.0.2.101"]).await;

    // The denied namespace's route was reconciled as long ago as the admitted one: it has no
    // DNSEndpoint. Labelling its namespace alone (no route change) publishes it.
    let denied_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &denied.name);
    assert!(denied_eps.get_opt("web-httproute").await.expect("get").is_none(), "a route the listeners do not admit");
    Api::<Namespace>::all(client.clone())
        .patch(
            &denied.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"gw-e2e": "allowed"}}})),
        )
        .await
        .expect("label namespace");
    let ep = wait_for("the admitted namespace's route to get a DNSEndpoint", DEADLINE, || {
        let api = denied_eps.clone();
        async move { api.get_opt("web-httproute").await.ok()? }
    })
    .await;
    assert_eq!(names(&ep), vec!["denied.gw.e2e.test A 192.0.2.101"]);

    // A new hostname is a new generation: published once the Gateway accepted it. Until then
    // the route's DNSEndpoint stays as it was (not deleted and created again: its records
    // would go away on every edit of the route).
    let uid = eps.get("web-httproute").await.expect("get DNSEndpoint").metadata.uid;
    routes
        .patch("web", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"hostnames": ["www2.gw.e2e.test"]}})))
        .await
        .expect("change hostnames");
    accept_route(&routes, "web", &infra.name).await;
    wait_dig(port, "www2.gw.e2e.test", "A", &["192.0.2.101"]).await;
    wait_dig(port, "www.gw.e2e.test", "A", &[]).await;
    assert_eq!(
        eps.get("web-httproute").await.expect("get DNSEndpoint").metadata.uid,
        uid,
        "the DNSEndpoint was replaced"
    );

    // The Gateway's address moves: the records follow, with no change to the route.
    set_gateway_address(&gateways, "192.0.2.102").await;
    wait_dig(port, "www2.gw.e2e.test", "A", &["192.0.2.102"]).await;

    // A restart renders the route again only once the Gateway and Namespace caches are
    // listed: a route rendered against empty caches would yield nothing and its DNSEndpoint
    // (and records) would be deleted. The next move proves the route was rendered since.
    op.restart();
    set_gateway_address(&gateways, "192.0.2.103").await;
    wait_dig(port, "www2.gw.e2e.test", "A", &["192.0.2.103"]).await;
    assert_eq!(
        eps.get("web-httproute").await.expect("get DNSEndpoint").metadata.uid,
        uid,
        "the restart replaced the DNSEndpoint:\n{}",
        op.log_tail()
    );

    // The route goes: its DNSEndpoint (owner GC) and its record go.
    routes.delete("web", &DeleteParams::foreground()).await.expect("delete route");
    wait_gone(&eps, "web-httproute").await;
    wait_dig(port, "www2.gw.e2e.test", "A", &[]).await;

    for ns in [apps, denied, infra] {
        ns.cleanup().await;
    }
    op.stop();
}
