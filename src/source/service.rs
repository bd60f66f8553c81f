//! Records for Services, after external-dns's `source/service.go` (`endpoints`,
//! `generateEndpoints`, `extractLoadBalancerTargets`, `extractNodePortTargets`,
//! `extractNodePortEndpoints`, `extractHeadlessEndpoints`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Service};

use super::annotations::{ExternalDnsAnnotations, ENDPOINTS_TYPE_HOST_IP, ENDPOINTS_TYPE_NODE_EXTERNAL_IP};
use super::selector::Selector;
use super::{suitable_type, Records, SourceConfig, SourceInputs};
use crate::dns::endpoint::RecordType;

/// The Service type; the API server defaults an unset type to ClusterIP, so do we (this
/// matters for hand-written manifests given to `render`).
pub(super) fn service_type(svc: &Service) -> &str {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()).filter(|t| !t.is_empty()).unwrap_or("ClusterIP")
}

fn cluster_ip(svc: &Service) -> Option<&str> {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref())
}

fn is_headless(svc: &Service) -> bool {
    cluster_ip(svc) == Some("None")
}

fn name_ns(svc: &Service) -> (&str, &str) {
    let ns = svc.metadata.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default");
    (svc.metadata.name.as_deref().unwrap_or_default(), ns)
}

/// Records from the hostname and internal-hostname annotations (`serviceSource.endpoints`).
pub(super) fn annotation_records(
    svc: &Service,
    inputs: &dyn SourceInputs,
    cfg: &SourceConfig,
    ann: &ExternalDnsAnnotations<'_>,
) -> Records {
    let mut recs = Records::default();
    if cfg.args.ignore_hostname_annotation {
        return recs;
    }
    for h in ann.hostnames() {
        generate(svc, inputs, cfg, ann, &h, false, &mut recs);
    }
    for h in ann.internal_hostnames() {
        generate(svc, inputs, cfg, ann, &h, true, &mut recs);
    }
    recs
}

/// Records for host names from `--fqdn-template`.
pub(super) fn records_for_hostnames(
    svc: &Service,
    inputs: &dyn SourceInputs,
    cfg: &SourceConfig,
    ann: &ExternalDnsAnnotations<'_>,
    hostnames: &[String],
) -> Records {
    let mut recs = Records::default();
    for h in hostnames {
        generate(svc, inputs, cfg, ann, h, false, &mut recs);
    }
    recs
}

/// external-dns's `generateEndpoints`: the target annotation wins; otherwise the targets
/// depend on the Service type. `internal` is set for internal-hostname names, which point
/// at the cluster IP.
fn generate(
    svc: &Service,
    inputs: &dyn SourceInputs,
    cfg: &SourceConfig,
    ann: &ExternalDnsAnnotations<'_>,
    hostname: &str,
    internal: bool,
    recs: &mut Records,
) {
    let hostname = hostname.trim_end_matches('.');
    let mut targets = ann.targets();
    if targets.is_empty() {
        match service_type(svc) {
            "LoadBalancer" if internal => targets = cluster_ip_targets(svc),
            "LoadBalancer" => targets = load_balancer_targets(svc),
            "ClusterIP" if is_headless(svc) => headless_records(svc, inputs, cfg, ann, hostname, recs),
            "ClusterIP" if internal || cfg.args.publish_internal_services => targets = cluster_ip_targets(svc),
            "NodePort" => {
                targets = node_port_targets(svc, inputs, cfg, ann);
                node_port_srv_records(svc, hostname, recs);
            }
            "ExternalName" => targets = external_name_targets(svc),
            _ => {}
        }
    }
    recs.add_for_hostname(hostname, &targets);
}

fn cluster_ip_targets(svc: &Service) -> Vec<String> {
    match cluster_ip(svc) {
        Some("None") | None => Vec::new(),
        Some(ip) => vec![ip.to_string()],
    }
}

fn external_ips(svc: &Service) -> Vec<String> {
    svc.spec.as_ref().and_then(|s| s.external_ips.clone()).unwrap_or_default()
}

/// `spec.externalIPs` when set, else every ip and hostname of the load balancer status.
fn load_balancer_targets(svc: &Service) -> Vec<String> {
    let external = external_ips(svc);
    if !external.is_empty() {
        return external;
    }
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress
        .into_iter()
        .flatten()
        .flat_map(|lb| [lb.ip.clone(), lb.hostname.clone()])
        .flatten()
        .filter(|t| !t.is_empty())
        .collect()
}

/// `spec.externalIPs` when set, else `spec.externalName` (an IP there yields an A record).
fn external_name_targets(svc: &Service) -> Vec<String> {
    let external = external_ips(svc);
    if !external.is_empty() {
        return external;
    }
    svc.spec.as_ref().and_then(|s| s.external_name.clone()).into_iter().collect()
}

/// Pods selected by the Service's selector; an absent selector selects every pod, as
/// `labels.Set(nil).AsSelector()` does in external-dns.
fn selected_pods(svc: &Service, inputs: &dyn SourceInputs) -> Vec<Arc<Pod>> {
    let (_, ns) = name_ns(svc);
    let empty = BTreeMap::new();
    let selector = Selector::from_map(svc.spec.as_ref().and_then(|s| s.selector.as_ref()).unwrap_or(&empty));
    inputs.pods(ns).into_iter().filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty))).collect()
}

fn node_named(nodes: &[Arc<Node>], name: &str) -> Option<Arc<Node>> {
    nodes.iter().find(|n| n.metadata.name.as_deref() == Some(name)).cloned()
}

fn node_addresses(node: &Node) -> impl Iterator<Item = (&str, &str)> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .map(|a| (a.type_.as_str(), a.address.as_str()))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Nodes that run pods of a Service with `externalTrafficPolicy: Local`, preferring nodes
/// with ready, non-terminating pods, then ready ones, then any running one
/// (`nodesExternalTrafficPolicyTypeLocal`).
fn local_traffic_nodes(svc: &Service, inputs: &dyn SourceInputs) -> Vec<Arc<Node>> {
    let all = inputs.nodes();
    let mut serving: Vec<Arc<Node>> = Vec::new();
    let mut ready: Vec<Arc<Node>> = Vec::new();
    let mut running: Vec<Arc<Node>> = Vec::new();
    let mut seen: [std::collections::BTreeSet<String>; 3] = Default::default();
    for pod in selected_pods(svc, inputs) {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default();
        if phase != Some("Running") {
            continue;
        }
        let Some(node) = node_named(&all, node_name) else {
            continue;
        };
        // Each tier de-duplicates on its own: a node whose first pod is not ready but whose
        // second one is serves traffic and belongs in the better tier.
        let mut add = |tier: &mut Vec<Arc<Node>>, n: usize| {
            if seen[n].insert(node_name.to_string()) {
                tier.push(node.clone());
            }
        };
        add(&mut running, 0);
        if pod_ready(&pod) {
            add(&mut ready, 1);
            if pod.metadata.deletion_timestamp.is_none() {
                add(&mut serving, 2);
            }
        }
    }
    if !serving.is_empty() {
        serving
    } else if !ready.is_empty() {
        ready
    } else {
        running
    }
}

/// Node addresses for a NodePort Service (`extractNodePortTargets`): ExternalIPs when any
/// node has one or `access: public`; InternalIPs when `access: private` or no node has an
/// ExternalIP. Internal IPv6 addresses join the ExternalIPs only with
/// `--expose-internal-ipv6` (external-dns's default is off since v0.19). Unschedulable
/// nodes are left out with `--exclude-unschedulable` (the default).
fn node_port_targets(
    svc: &Service,
    inputs: &dyn SourceInputs,
    cfg: &SourceConfig,
    ann: &ExternalDnsAnnotations<'_>,
) -> Vec<String> {
    let local = svc.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
    let nodes = if local { local_traffic_nodes(svc, inputs) } else { inputs.nodes() };
    let (mut external, mut internal, mut internal_v6) = (Vec::new(), Vec::new(), Vec::new());
    for node in nodes.iter().filter(|n| !(cfg.args.exclude_unschedulable && unschedulable(n))) {
        for (kind, addr) in node_addresses(node) {
            match kind {
                "ExternalIP" => external.push(addr.to_string()),
                "InternalIP" => {
                    internal.push(addr.to_string());
                    if cfg.args.expose_internal_ipv6 && suitable_type(addr) == RecordType::AAAA {
                        internal_v6.push(addr.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    match ann.access() {
        Some("public") => external.into_iter().chain(internal_v6).collect(),
        Some("private") => internal,
        _ if !external.is_empty() => external.into_iter().chain(internal_v6).collect(),
        _ => internal,
    }
}

/// `spec.unschedulable`: a cordoned node.
pub(super) fn unschedulable(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
}

/// One SRV record per node port (`extractNodePortEndpoints`):
/// `_<service name>._<protocol>.<hostname>` → `0 50 <nodePort> <hostname>`. external-dns
/// names the record after the Service, not the port.
fn node_port_srv_records(svc: &Service, hostname: &str, recs: &mut Records) {
    let (name, _) = name_ns(svc);
    for port in svc.spec.as_ref().and_then(|s| s.ports.as_ref()).into_iter().flatten() {
        let Some(node_port) = port.node_port.filter(|p| *p > 0) else {
            continue;
        };
        let protocol = port.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP").to_ascii_lowercase();
        recs.add(&format!("_{name}._{protocol}.{hostname}"), RecordType::SRV, &format!("0 50 {node_port} {hostname}"));
    }
}

/// A and AAAA records for the pods behind a headless Service, under the Service's name and
/// under `<pod hostname>.<name>` for pods with `spec.hostname` (`extractHeadlessEndpoints`).
fn headless_records(
    svc: &Service,
    inputs: &dyn SourceInputs,
    cfg: &SourceConfig,
    ann: &ExternalDnsAnnotations<'_>,
    hostname: &str,
    recs: &mut Records,
) {
    let (name, ns) = name_ns(svc);
    let endpoints_type = ann.endpoints_type();
    let use_pod_ips = endpoints_type != Some(ENDPOINTS_TYPE_NODE_EXTERNAL_IP)
        && endpoints_type != Some(ENDPOINTS_TYPE_HOST_IP)
        && !cfg.args.publish_host_ip;
    let publish_not_ready = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
        || cfg.args.always_publish_not_ready_addresses;
    let pods = selected_pods(svc, inputs);
    let nodes = if endpoints_type == Some(ENDPOINTS_TYPE_NODE_EXTERNAL_IP) { inputs.nodes() } else { Vec::new() };

    // Collected apart and committed at the end: external-dns drops all of this Service's
    // headless records when a pod's node is missing.
    let mut found = Records::default();
    for slice in inputs.endpoint_slices(ns, name) {
        let slice_name = slice.metadata.name.as_deref().unwrap_or_default();
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready && !publish_not_ready {
                continue;
            }
            if use_pod_ips && slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                continue;
            }
            // external-dns wants `apiVersion` empty, as the EndpointSlice controller leaves
            // it; "v1" names the same kind, so hand-written slices are accepted too.
            let Some(target_ref) = ep.target_ref.as_ref().filter(|r| {
                r.kind.as_deref() == Some("Pod") && matches!(r.api_version.as_deref(), None | Some("") | Some("v1"))
            }) else {
                continue;
            };
            let pod_name = target_ref.name.as_deref().unwrap_or_default();
            let Some(pod) = pods.iter().find(|p| p.metadata.name.as_deref() == Some(pod_name)) else {
                recs.warn(format!(
                    "headless service: pod {ns}/{pod_name} of EndpointSlice {slice_name} not found among the pods the service selects"
                ));
                continue;
            };
            let pod_spec = pod.spec.as_ref();
            let mut domains = vec![hostname.to_string()];
            if let Some(h) = pod_spec.and_then(|s| s.hostname.as_deref()).filter(|h| !h.is_empty()) {
                domains.push(format!("{h}.{hostname}"));
            }
            let pod_annotations = pod.metadata.annotations.clone().unwrap_or_default();
            let mut targets = ExternalDnsAnnotations::new(&pod_annotations).targets();
            if targets.is_empty() {
                if endpoints_type == Some(ENDPOINTS_TYPE_NODE_EXTERNAL_IP) {
                    let node_name = pod_spec.and_then(|s| s.node_name.as_deref()).unwrap_or_default();
                    let Some(node) = node_named(&nodes, node_name) else {
                        recs.warn(format!(
                            "headless service: node {node_name:?} of pod {ns}/{pod_name} not found; publishing no NodeExternalIP records"
                        ));
                        return;
                    };
                    for (kind, addr) in node_addresses(&node) {
                        let v6_internal = cfg.args.expose_internal_ipv6
                            && kind == "InternalIP"
                            && suitable_type(addr) == RecordType::AAAA;
                        if kind == "ExternalIP" || v6_internal {
                            targets.push(addr.to_string());
                        }
                    }
                } else if endpoints_type == Some(ENDPOINTS_TYPE_HOST_IP) || cfg.args.publish_host_ip {
                    targets.extend(pod.status.as_ref().and_then(|s| s.host_ip.clone()));
                } else if let Some(first) = ep.addresses.first() {
                    // Further addresses of one endpoint have no defined meaning.
                    targets.push(first.clone());
                } else {
                    recs.warn(format!(
                        "headless service: EndpointSlice {slice_name} has an endpoint without addresses"
                    ));
                    continue;
                }
            }
            for domain in &domains {
                found.add_for_hostname(domain, &targets);
            }
        }
    }
    recs.merge(found);
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{desired_dnsendpoint, SourceObject};
    use super::*;

    fn svc(yaml_body: &str) -> Service {
        yaml(yaml_body)
    }

    fn nodes() -> Vec<Arc<Node>> {
        let n = |name: &str, addrs: &[(&str, &str)]| {
            let addrs: Vec<String> = addrs.iter().map(|(t, a)| format!("{{type: {t}, address: \"{a}\"}}")).collect();
            Arc::new(yaml::<Node>(&format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nstatus: {{addresses: [{}]}}",
                addrs.join(", ")
            )))
        };
        vec![
            n(
                "node-a",
                &[
                    ("InternalIP", "10.1.0.1"),
                    ("ExternalIP", "203.0.113.1"),
                    ("InternalIP", "fd00::1"),
                    ("Hostname", "node-a"),
                ],
            ),
            n("node-b", &[("InternalIP", "10.1.0.2"), ("ExternalIP", "203.0.113.2")]),
        ]
    }

    fn run(svc: &Service, fx: &Fixture, c: &SourceConfig) -> Option<super::super::DesiredObject> {
        desired_dnsendpoint(SourceObject::Service(svc), fx, c).unwrap()
    }

    #[test]
    fn load_balancer_ip_and_hostname() {
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, annotations: {external-dns.alpha.kubernetes.io/hostname: web.example.com}}
spec: {type: LoadBalancer, clusterIP: 10.0.0.1}
status: {loadBalancer: {ingress: [{ip: 192.0.2.1}, {ip: "2001:db8::1"}, {ip: 192.0.2.2}]}}
"#);
        let d = run(&s, &Fixture::default(), &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["web.example.com A 192.0.2.1,192.0.2.2", "web.example.com AAAA 2001:db8::1"]);

        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, annotations: {external-dns.alpha.kubernetes.io/hostname: web.example.com}}
spec: {type: LoadBalancer}
status: {loadBalancer: {ingress: [{hostname: ABC.elb.Amazonaws.com.}]}}
"#);
        let d = run(&s, &Fixture::default(), &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["web.example.com CNAME abc.elb.amazonaws.com"]);
    }

    #[test]
    fn load_balancer_with_addresses_and_host_names_publishes_the_addresses() {
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, annotations: {external-dns.alpha.kubernetes.io/hostname: web.example.com}}
spec: {type: LoadBalancer}
status: {loadBalancer: {ingress: [{ip: 192.0.2.1, hostname: lb.example.net}, {hostname: lb2.example.net}]}}
"#);
        let d = run(&s, &Fixture::default(), &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["web.example.com A 192.0.2.1"]);
        assert_eq!(super::super::warning_reason(&d.warnings[0]), "CNAMESkipped");
        assert_eq!(
            d.warnings,
            vec!["skipping CNAME web.example.com -> lb.example.net,lb2.example.net: a CNAME cannot share its name with the A/AAAA records there; publishing the addresses only"]
        );
    }

    #[test]
    fn more_records_than_fit_are_cut_in_order_with_a_warning() {
        let names: Vec<String> = (0..1005).map(|i| format!("h{i:04}.example.com")).collect();
        let s = svc(&format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default, annotations: {{external-dns.alpha.kubernetes.io/hostname: "{}"}}}}
spec: {{type: LoadBalancer}}
status: {{loadBalancer: {{ingress: [{{ip: 192.0.2.1}}]}}}}
"#,
            names.join(",")
        ));
        let d = run(&s, &Fixture::default(), &cfg(|_| {})).unwrap();
        assert_eq!(d.spec.endpoints.len(), super::super::MAX_ENDPOINTS);
        assert_eq!(d.spec.endpoints[0].dns_name, "h0000.example.com");
        assert_eq!(d.spec.endpoints[999].dns_name, "h0999.example.com");
        assert_eq!(super::super::warning_reason(&d.warnings[0]), "TooManyRecords");
        assert_eq!(
            d.warnings,
            vec!["yields 1005 records; a DNSEndpoint holds at most 1000: publishing the first 1000 in name order and skipping 5 (from h1000.example.com A to h1004.example.com A)"]
        );
    }

    #[test]
    fn pending_load_balancer_yields_nothing() {
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, annotations: {external-dns.alpha.kubernetes.io/hostname: web.example.com}}
spec: {type: LoadBalancer}
"#);
        assert!(run(&s, &Fixture::default(), &cfg(|_| {})).is_none());
    }

    #[test]
    fn external_ips_take_precedence() {
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, annotations: {external-dns.alpha.kubernetes.io/hostname: web.example.com}}
spec: {type: LoadBalancer, externalIPs: [198.51.100.7]}
status: {loadBalancer: {ingress: [{ip: 192.0.2.1}]}}
"#);
        let d = run(&s, &Fixture::default(), &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["web.example.com A 198.51.100.7"]);
    }

    #[test]
    fn target_annotation_overrides() {
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, annotations: {external-dns.kubernetes.io/hostname: web.example.com, external-dns.kubernetes.io/target: "edge.example.net., 192.0.2.99"}}
spec: {type: LoadBalancer}
status: {loadBalancer: {ingress: [{ip: 192.0.2.1}]}}
"#);
        let d = run(&s, &Fixture::default(), &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["web.example.com A 192.0.2.99"]);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    }

    #[test]
    fn internal_hostname_uses_cluster_ip() {
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations:
    external-dns.alpha.kubernetes.io/hostname: web.example.com
    external-dns.alpha.kubernetes.io/internal-hostname: web.internal.example.com
spec: {type: LoadBalancer, clusterIP: 10.0.0.1}
status: {loadBalancer: {ingress: [{ip: 192.0.2.1}]}}
"#);
        let d = run(&s, &Fixture::default(), &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["web.example.com A 192.0.2.1", "web.internal.example.com A 10.0.0.1"]);
    }

    #[test]
    fn cluster_ip_needs_internal_hostname_or_flag() {
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default, annotations: {external-dns.alpha.kubernetes.io/hostname: api.example.com}}
spec: {clusterIP: 10.0.0.9}
"#);
        assert!(run(&s, &Fixture::default(), &cfg(|_| {})).is_none());
        let d = run(&s, &Fixture::default(), &cfg(|a| a.publish_internal_services = true)).unwrap();
        assert_eq!(summary(&d), vec!["api.example.com A 10.0.0.9"]);

        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default, annotations: {external-dns.alpha.kubernetes.io/internal-hostname: api.internal.example.com}}
spec: {type: ClusterIP, clusterIP: 10.0.0.9}
"#);
        let d = run(&s, &Fixture::default(), &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["api.internal.example.com A 10.0.0.9"]);
    }

    fn node_port(access: &str) -> Service {
        svc(&format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: game, namespace: default, annotations: {{external-dns.alpha.kubernetes.io/hostname: game.example.com{access}}}}}
spec:
  type: NodePort
  ports:
  - {{name: http, port: 80, nodePort: 30080}}
  - {{name: voice, port: 9000, nodePort: 30900, protocol: UDP}}
  - {{name: unallocated, port: 81}}
"#
        ))
    }

    #[test]
    fn node_port_public_with_srv() {
        let fx = Fixture { nodes: nodes(), ..Default::default() };
        let d = run(&node_port(""), &fx, &cfg(|_| {})).unwrap();
        assert_eq!(
            summary(&d),
            vec![
                "_game._tcp.game.example.com SRV 0 50 30080 game.example.com",
                "_game._udp.game.example.com SRV 0 50 30900 game.example.com",
                "game.example.com A 203.0.113.1,203.0.113.2",
            ]
        );
        assert_eq!(d.spec.endpoints[0].labels.as_ref().unwrap()["resource"], "service/default/game");
        // Internal IPv6 addresses only with --expose-internal-ipv6 (external-dns v0.19+).
        let d = run(&node_port(""), &fx, &cfg(|a| a.expose_internal_ipv6 = true)).unwrap();
        assert_eq!(summary(&d)[3], "game.example.com AAAA fd00::1");
        let d = run(&node_port(", external-dns.alpha.kubernetes.io/access: public"), &fx, &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d)[2..], ["game.example.com A 203.0.113.1,203.0.113.2".to_string()]);
    }

    #[test]
    fn node_port_leaves_out_unschedulable_nodes_by_default() {
        let mut fx = Fixture { nodes: nodes(), ..Default::default() };
        let mut cordoned = (*fx.nodes[1]).clone();
        cordoned.spec = Some(k8s_openapi::api::core::v1::NodeSpec { unschedulable: Some(true), ..Default::default() });
        fx.nodes[1] = Arc::new(cordoned);
        let d = run(&node_port(""), &fx, &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d)[2..], ["game.example.com A 203.0.113.1".to_string()]);
        let d = run(&node_port(""), &fx, &cfg(|a| a.exclude_unschedulable = false)).unwrap();
        assert_eq!(summary(&d)[2..], ["game.example.com A 203.0.113.1,203.0.113.2".to_string()]);
    }

    #[test]
    fn node_port_private_and_internal_fallback() {
        let fx = Fixture { nodes: nodes(), ..Default::default() };
        let d = run(&node_port(", external-dns.alpha.kubernetes.io/access: private"), &fx, &cfg(|_| {})).unwrap();
        assert_eq!(
            summary(&d)[2..],
            ["game.example.com A 10.1.0.1,10.1.0.2".to_string(), "game.example.com AAAA fd00::1".to_string()]
        );
        let internal_only = Fixture {
            nodes: vec![Arc::new(yaml(
                "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {addresses: [{type: InternalIP, address: 10.9.9.9}]}",
            ))],
            ..Default::default()
        };
        let d = run(&node_port(""), &internal_only, &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d)[2], "game.example.com A 10.9.9.9");
    }

    #[test]
    fn node_port_local_traffic_policy_uses_pod_nodes() {
        let mut s = node_port("");
        let spec = s.spec.as_mut().unwrap();
        spec.external_traffic_policy = Some("Local".into());
        spec.selector = Some([("app".to_string(), "game".to_string())].into());
        let pod = |name: &str, node: &str, app: &str, ready: &str| {
            Arc::new(yaml::<Pod>(&format!(
                r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default, labels: {{app: {app}}}}}
spec: {{nodeName: {node}, containers: []}}
status: {{phase: Running, conditions: [{{type: Ready, status: "{ready}"}}]}}
"#
            )))
        };
        let fx = Fixture {
            nodes: nodes(),
            pods: vec![pod("g1", "node-b", "game", "True"), pod("other", "node-a", "db", "True")],
            ..Default::default()
        };
        let d = run(&s, &fx, &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d)[2..], ["game.example.com A 203.0.113.2".to_string()]);

        // node-a runs a not-ready pod first and a ready one second: it serves traffic.
        let fx = Fixture {
            nodes: nodes(),
            pods: vec![
                pod("g0", "node-a", "game", "False"),
                pod("g1", "node-a", "game", "True"),
                pod("g2", "node-b", "game", "True"),
            ],
            ..Default::default()
        };
        let d = run(&s, &fx, &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d)[2..], ["game.example.com A 203.0.113.1,203.0.113.2".to_string()]);
    }

    fn headless_fixture() -> (Service, Fixture) {
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: kafka, namespace: data, annotations: {external-dns.alpha.kubernetes.io/hostname: kafka.example.com}}
spec: {clusterIP: None, selector: {app: kafka}}
"#);
        let pod = |name: &str, hostname: &str, node: &str, host_ip: &str| {
            Arc::new(yaml::<Pod>(&format!(
                r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: data, labels: {{app: kafka}}}}
spec: {{hostname: "{hostname}", nodeName: {node}, containers: []}}
status: {{hostIP: {host_ip}}}
"#
            )))
        };
        let slice = yaml(
            r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: kafka-abc, namespace: data, labels: {kubernetes.io/service-name: kafka}}
addressType: IPv4
endpoints:
- {addresses: [10.2.0.1], conditions: {ready: true}, targetRef: {kind: Pod, name: kafka-0, namespace: data}}
- {addresses: [10.2.0.2], targetRef: {kind: Pod, name: kafka-1, namespace: data}}
- {addresses: [10.2.0.3], conditions: {ready: false}, targetRef: {kind: Pod, name: kafka-2, namespace: data}}
"#,
        );
        let other_service = yaml(
            r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: zk-abc, namespace: data, labels: {kubernetes.io/service-name: zk}}
addressType: IPv4
endpoints:
- {addresses: [10.3.0.1], targetRef: {kind: Pod, name: zk-0, namespace: data}}
"#,
        );
        let fx = Fixture {
            nodes: nodes(),
            slices: vec![Arc::new(slice), Arc::new(other_service)],
            pods: vec![
                pod("kafka-0", "kafka-0", "node-a", "10.1.0.1"),
                pod("kafka-1", "", "node-b", "10.1.0.2"),
                pod("kafka-2", "kafka-2", "node-b", "10.1.0.2"),
            ],
            ..Default::default()
        };
        (s, fx)
    }

    #[test]
    fn headless_pod_ips_and_hostnames() {
        let (s, fx) = headless_fixture();
        let d = run(&s, &fx, &cfg(|_| {})).unwrap();
        assert_eq!(d.name, "kafka-service");
        assert_eq!(summary(&d), vec!["kafka-0.kafka.example.com A 10.2.0.1", "kafka.example.com A 10.2.0.1,10.2.0.2"]);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn headless_not_ready_addresses() {
        let (mut s, fx) = headless_fixture();
        let want = vec![
            "kafka-0.kafka.example.com A 10.2.0.1",
            "kafka-2.kafka.example.com A 10.2.0.3",
            "kafka.example.com A 10.2.0.1,10.2.0.2,10.2.0.3",
        ];
        assert_eq!(summary(&run(&s, &fx, &cfg(|a| a.always_publish_not_ready_addresses = true)).unwrap()), want);
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        assert_eq!(summary(&run(&s, &fx, &cfg(|_| {})).unwrap()), want);
    }

    #[test]
    fn headless_host_ip_and_node_external_ip() {
        let (s, fx) = headless_fixture();
        let d = run(&s, &fx, &cfg(|a| a.publish_host_ip = true)).unwrap();
        assert_eq!(summary(&d), vec!["kafka-0.kafka.example.com A 10.1.0.1", "kafka.example.com A 10.1.0.1,10.1.0.2"]);

        let (mut s, fx) = headless_fixture();
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("external-dns.alpha.kubernetes.io/endpoints-type".into(), "NodeExternalIP".into());
        let d = run(&s, &fx, &cfg(|_| {})).unwrap();
        assert_eq!(
            summary(&d),
            vec!["kafka-0.kafka.example.com A 203.0.113.1", "kafka.example.com A 203.0.113.1,203.0.113.2"]
        );
        let d = run(&s, &fx, &cfg(|a| a.expose_internal_ipv6 = true)).unwrap();
        assert!(summary(&d).contains(&"kafka.example.com AAAA fd00::1".to_string()));
    }

    #[test]
    fn headless_missing_pod_is_a_warning() {
        let (s, mut fx) = headless_fixture();
        fx.pods.remove(1);
        let d = run(&s, &fx, &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["kafka-0.kafka.example.com A 10.2.0.1", "kafka.example.com A 10.2.0.1"]);
        assert_eq!(
            d.warnings,
            vec!["headless service: pod data/kafka-1 of EndpointSlice kafka-abc not found among the pods the service selects"]
        );
    }

    #[test]
    fn external_name() {
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default, annotations: {external-dns.alpha.kubernetes.io/hostname: ext.example.com}}
spec: {type: ExternalName, externalName: backend.example.net}
"#);
        let d = run(&s, &Fixture::default(), &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["ext.example.com CNAME backend.example.net"]);
        let s = svc(r#"
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default, annotations: {external-dns.alpha.kubernetes.io/hostname: ext.example.com}}
spec: {type: ExternalName, externalName: 192.0.2.44}
"#);
        let d = run(&s, &Fixture::default(), &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["ext.example.com A 192.0.2.44"]);
    }
}
