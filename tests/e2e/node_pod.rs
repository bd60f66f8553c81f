//! Node and pod sources. The suite's control plane runs no kubelet: the test creates a Node
//! object and writes its addresses itself, and a Pod bound to it stays Pending, which the pod
//! source does not look at.

use std::time::Duration;

use extdns::crd::DNSEndpoint;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::harness::*;
use crate::identity::OPERATOR_NS;

async fn set_node_ip(api: &Api<Node>, name: &str, ip: &str) {
    let status = json!({"status": {"addresses": [{"type": "ExternalIP", "address": ip}, {"type": "InternalIP", "address": "10.9.0.1"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("patch Node status");
}

fn targets(ep: &DNSEndpoint) -> Vec<String> {
    ep.spec.endpoints.iter().map(|e| format!("{} {} {}", e.dns_name, e.record_type, e.targets.join(","))).collect()
}

async fn wait_targets(api: &Api<DNSEndpoint>, name: &str, want: &[&str]) -> DNSEndpoint {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    wait_for(&format!("DNSEndpoint {name} to hold {want:?}"), DEADLINE, || {
        let (api, want) = (api.clone(), want.clone());
        async move {
            let ep = api.get_opt(name).await.ok()??;
            (targets(&ep) == want).then_some(ep)
        }
    })
    .await
}

/// A Node publishes its hostname annotation at its ExternalIP from a DNSEndpoint in the
/// operator's namespace, follows its address, and is dropped when cordoned; a hostNetwork
/// Pod's hostname annotation publishes its node's address and follows it.
#[tokio::test]
async fn node_and_host_network_pod() {
    let client = client().await;
    let ns = TestNs::new(&client, "nodepod", json!({})).await;
    let node_name = format!("e2e-node-{}", std::process::id() % 100000);
    let port = port();
    // Only this test's objects: other tests' Nodes and Pods are not published.
    let mut op = Operator::start_with("node_pod", &["--source=node,pod", "--label-filter=extdns-e2e=node-pod"]);
    let providers: Api<extdns::crd::DNSProvider> = Api::namespaced(client.clone(), OPERATOR_NS);
    apply(&providers, "nodes", embedded_provider("nodes", "node.e2e.test", port)).await;

    let nodes: Api<Node> = Api::all(client.clone());
    let _ = nodes.delete(&node_name, &DeleteParams::default()).await;
    wait_gone(&nodes, &node_name).await;
    let node = apply(
        &nodes,
        &node_name,
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node_name, "labels": {"extdns-e2e": "node-pod"},
                         "annotations": {"external-dns.alpha.kubernetes.io/hostname": "n1.node.e2e.test"}}
        }),
    )
    .await;
    set_node_ip(&nodes, &node_name, "192.0.2.151").await;

    let op_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), OPERATOR_NS);
    let ep_name = format!("{node_name}-node");
    let ep = wait_condition(&op_eps, &ep_name, "Ready", "True").await;
    let owner = &ep.owner_references()[0];
    assert_eq!((owner.kind.as_str(), Some(&owner.uid)), ("Node", node.metadata.uid.as_ref()));
    wait_dig(port, "n1.node.e2e.test", "A", &["192.0.2.151"]).await;

    // A hostNetwork Pod on that node. The namespace's default ServiceAccount is created by the
    // controller manager shortly after the namespace: retry until admission finds it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "agent", "labels": {"extdns-e2e": "node-pod"},
                     "annotations": {"external-dns.alpha.kubernetes.io/hostname": "agent.node.e2e.test"}},
        "spec": {"nodeName": node_name, "hostNetwork": true, "automountServiceAccountToken": false,
                 "containers": [{"name": "agent", "image": "example.invalid/agent"}]}
    }))
    .expect("pod");
    wait_for("the Pod to be created", Duration::from_secs(60), || {
        let (pods, pod) = (pods.clone(), pod.clone());
        async move { pods.create(&PostParams::default(), &pod).await.ok().map(|_| ()) }
    })
    .await;
    let pod_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    wait_targets(&pod_eps, "agent-pod", &["agent.node.e2e.test A 192.0.2.151"]).await;

    // The node's address moves: its record and the pod's follow (no change to the Pod).
    set_node_ip(&nodes, &node_name, "192.0.2.152").await;
    wait_dig(port, "n1.node.e2e.test", "A", &["192.0.2.152"]).await;
    wait_targets(&pod_eps, "agent-pod", &["agent.node.e2e.test A 192.0.2.152"]).await;

    // Cordoned (--exclude-unschedulable, on by default): the node's DNSEndpoint and record go.
    nodes
        .patch(&node_name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"unschedulable": true}})))
        .await
        .expect("cordon");
    wait_gone(&op_eps, &ep_name).await;
    wait_dig(port, "n1.node.e2e.test", "A", &[]).await;

    pods.delete("agent", &DeleteParams::default().grace_period(0)).await.expect("delete pod");
    wait_gone(&pod_eps, "agent-pod").await;
    nodes.delete(&node_name, &DeleteParams::default()).await.expect("delete node");
    providers.delete("nodes", &DeleteParams::default()).await.expect("delete provider");
    wait_gone(&providers, "nodes").await;
    ns.cleanup().await;
    op.stop();
}
