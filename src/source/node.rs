//! Records for Nodes, after external-dns's `source/node.go`: a node's own name (the hostname
//! annotation when set, an extdns addition, else the node's name) unless `--fqdn-template` is
//! set, then the template's names instead (or beside it with `--combine-fqdn-annotation`), all
//! pointing at its ExternalIPs, else its InternalIPs; unschedulable nodes are left out with
//! `--exclude-unschedulable`.

use k8s_openapi::api::core::v1::Node;

use super::annotations::ExternalDnsAnnotations;
use super::{Records, SourceConfig, SourceError};

/// external-dns's `nodeAddresses`: every ExternalIP (plus the InternalIP IPv6 addresses with
/// `--expose-internal-ipv6`, since IPv6 addresses are routable though Kubernetes labels them
/// internal); without any ExternalIP, every InternalIP.
pub(super) fn node_targets(node: &Node, expose_internal_ipv6: bool) -> Vec<String> {
    let addrs = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    let of = |t: &str| -> Vec<String> {
        addrs.into_iter().flatten().filter(|a| a.type_ == t).map(|a| a.address.clone()).collect()
    };
    let external = of("ExternalIP");
    let internal = of("InternalIP");
    if !external.is_empty() {
        let v6 = internal.into_iter().filter(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        return if expose_internal_ipv6 { external.into_iter().chain(v6).collect() } else { external };
    }
    internal
}

/// The node's records; empty for an unschedulable node under `--exclude-unschedulable`. A
/// node with neither an address nor a target annotation is an error, as in external-dns.
pub(super) fn node_records(
    node: &Node,
    cfg: &SourceConfig,
    ann: &ExternalDnsAnnotations<'_>,
    json: impl FnOnce() -> Result<serde_json::Value, SourceError>,
) -> Result<Records, SourceError> {
    let mut recs = Records::default();
    let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    if unschedulable && cfg.args.exclude_unschedulable {
        return Ok(recs);
    }
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let mut targets = ann.targets();
    if targets.is_empty() {
        targets = node_targets(node, cfg.args.expose_internal_ipv6);
    }
    if targets.is_empty() {
        return Err(SourceError::NodeWithoutAddress { node: name.to_string() });
    }
    // external-dns: the template's names replace the node's own name unless combined.
    let mut names = Vec::new();
    if cfg.fqdn_template.is_none() || cfg.args.combine_fqdn_annotation {
        let annotated = if cfg.args.ignore_hostname_annotation { Vec::new() } else { ann.hostnames() };
        if annotated.is_empty() {
            names.push(name.to_string());
        } else {
            names.extend(annotated);
        }
    }
    if let Some(tmpl) = &cfg.fqdn_template {
        let object = format!("Node {name}");
        names.extend(tmpl.hostnames(&json()?).map_err(|source| SourceError::Template { object, source })?);
    }
    for n in names.iter().filter(|n| !n.is_empty()) {
        recs.add_for_hostname(n.trim_end_matches('.'), &targets);
    }
    Ok(recs)
}

#[cfg(test)]
mod tests {
    //! Cases after external-dns's `node_test.go` (`testNodeSourceEndpoints`).
    use super::super::testutil::*;
    use super::super::{desired_dnsendpoint, DesiredObject, SourceArgs, SourceKind, SourceObject};
    use super::*;

    fn node(body: &str) -> Node {
        yaml(&format!("apiVersion: v1\nkind: Node\n{body}"))
    }

    fn run(n: &Node, f: impl FnOnce(&mut SourceArgs)) -> Option<DesiredObject> {
        let c = cfg(|a| {
            a.source = vec![SourceKind::Node];
            a.exclude_unschedulable = true;
            f(a)
        });
        desired_dnsendpoint(SourceObject::Node(n), &Fixture::default(), &c).unwrap()
    }

    const ADDRS: &str = "status: {addresses: [{type: ExternalIP, address: 1.2.3.4}, {type: InternalIP, address: 10.0.0.1}, {type: InternalIP, address: \"2001:db8::1\"}]}";

    #[test]
    fn external_ip_first_then_internal() {
        let n = node(&format!("metadata: {{name: node1, uid: u1}}\n{ADDRS}"));
        let d = run(&n, |_| {}).unwrap();
        assert_eq!(summary(&d), vec!["node1 A 1.2.3.4"]);
        assert_eq!(d.name, "node1-node");
        assert_eq!(d.namespace, "extdns");
        assert_eq!(d.spec.endpoints[0].labels.as_ref().unwrap()["resource"], "node/node1");
        // --expose-internal-ipv6 adds the internal IPv6 address.
        let d = run(&n, |a| a.expose_internal_ipv6 = true).unwrap();
        assert_eq!(summary(&d), vec!["node1 A 1.2.3.4", "node1 AAAA 2001:db8::1"]);
        // Without an ExternalIP: every InternalIP.
        let internal = node(
            "metadata: {name: node1}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.1}, {type: InternalIP, address: \"2001:db8::1\"}, {type: Hostname, address: node1}]}",
        );
        assert_eq!(summary(&run(&internal, |_| {}).unwrap()), vec!["node1 A 10.0.0.1", "node1 AAAA 2001:db8::1"]);
        // No address at all: an error, as external-dns's "could not find node address"; the
        // controller leaves the node's records as they are and says so in an Event.
        let bare = node("metadata: {name: node1}\nstatus: {addresses: [{type: Hostname, address: node1}]}");
        let c = cfg(|a| a.source = vec![SourceKind::Node]);
        let e = desired_dnsendpoint(SourceObject::Node(&bare), &Fixture::default(), &c).unwrap_err();
        assert_eq!(e.reason(), "NodeWithoutAddress");
        assert_eq!(
            e.to_string(),
            "Node node1: no ExternalIP or InternalIP address in status.addresses and no target annotation; its records are left as they are"
        );
        // A target annotation needs no address; a cordoned node is left out before.
        let targeted = node(
            "metadata: {name: node1, annotations: {external-dns.alpha.kubernetes.io/target: 203.0.113.9}}\nstatus: {}",
        );
        assert_eq!(summary(&run(&targeted, |_| {}).unwrap()), vec!["node1 A 203.0.113.9"]);
        let cordoned = node("metadata: {name: node1}\nspec: {unschedulable: true}\nstatus: {}");
        assert!(run(&cordoned, |_| {}).is_none());
    }

    /// Rows of external-dns's `TestNodeSourceFqdnTemplatingExamples` (`node_fqdn_test.go`),
    /// run as there with `--exclude-unschedulable` and `--expose-internal-ipv6`. Two rows use
    /// `{{ break }}`, which extdns's template language refuses at start-up; they are left out.
    #[test]
    fn external_dns_fqdn_template_examples() {
        let run_all = |nodes: &[&str], template: &str, combine: bool| -> Vec<String> {
            let mut out: Vec<String> = nodes
                .iter()
                .flat_map(|body| {
                    let n = node(body);
                    run(&n, |a| {
                        a.fqdn_template = template.into();
                        a.combine_fqdn_annotation = combine;
                        a.expose_internal_ipv6 = true;
                    })
                    .map(|d| summary(&d))
                    .unwrap_or_default()
                })
                .collect();
            out.sort();
            out
        };
        assert_eq!(
            run_all(
                &["metadata: {name: ip-10-1-176-5.internal}\nstatus: {addresses: [{type: InternalIP, address: 10.1.176.1}, {type: InternalIP, address: \"fc00:f853:ccd:e793::1\"}]}"],
                "{{.Name}}.domainA.com,{{.Name}}.domainB.com",
                false
            ),
            [
                "ip-10-1-176-5.internal.domaina.com A 10.1.176.1",
                "ip-10-1-176-5.internal.domaina.com AAAA fc00:f853:ccd:e793::1",
                "ip-10-1-176-5.internal.domainb.com A 10.1.176.1",
                "ip-10-1-176-5.internal.domainb.com AAAA fc00:f853:ccd:e793::1",
            ]
        );
        // "templating with hostname annotation": the template replaces the node's own name,
        // the annotation's included.
        assert_eq!(
            run_all(
                &["metadata: {name: ip-10-1-176-1, annotations: {external-dns.kubernetes.io/hostname: ip-10-1-176-1.internal.domain.com}}\nstatus: {addresses: [{type: ExternalIP, address: 243.186.136.160}, {type: InternalIP, address: \"fc00:f853:ccd:e793::1\"}]}"],
                "{{.Name}}.example.com",
                false
            ),
            ["ip-10-1-176-1.example.com A 243.186.136.160", "ip-10-1-176-1.example.com AAAA fc00:f853:ccd:e793::1"]
        );
        // "templating when target annotation and no external IP": the target wins.
        assert_eq!(
            run_all(
                &["metadata: {name: node-name, annotations: {external-dns.kubernetes.io/target: 203.2.45.22}}\nstatus: {addresses: [{type: ExternalIP, address: 243.186.136.160}, {type: InternalIP, address: \"fc00:f853:ccd:e793::1\"}]}"],
                "{{.Name}}.example.com",
                false
            ),
            ["node-name.example.com A 203.2.45.22"]
        );
        assert_eq!(
            run_all(
                &["metadata: {name: node-name, annotations: {workload: cluster-resources}}\nstatus: {addresses: [{type: ExternalIP, address: 243.186.136.160}]}"],
                "{{ .Name }}.{{ .Annotations.workload }}.domain.tld",
                false
            ),
            ["node-name.cluster-resources.domain.tld A 243.186.136.160"]
        );
        assert_eq!(
            run_all(
                &["metadata: {name: node-name, labels: {topology.kubernetes.io/region: eu-west-1}}\nstatus: {addresses: [{type: ExternalIP, address: 243.186.136.160}]}"],
                "{{ .Name }}.{{ index .ObjectMeta.Labels \"topology.kubernetes.io/region\" }}.domain.tld",
                false
            ),
            ["node-name.eu-west-1.domain.tld A 243.186.136.160"]
        );
        // "shared all domain": every node publishes the shared name; the DNSEndpoints of both
        // nodes together hold both addresses.
        let two = [
            "metadata: {name: node-name-1}\nstatus: {addresses: [{type: ExternalIP, address: 243.186.136.160}]}",
            "metadata: {name: node-name-2}\nstatus: {addresses: [{type: ExternalIP, address: 243.186.136.178}]}",
        ];
        let shared = ["all.example.com A 243.186.136.160", "all.example.com A 243.186.136.178"];
        let mut want: Vec<&str> = shared.to_vec();
        want.extend(["node-name-1.domain.tld A 243.186.136.160", "node-name-2.domain.tld A 243.186.136.178"]);
        want.sort();
        assert_eq!(run_all(&two, "{{ .Name }}.domain.tld,all.example.com", false), want);
        // "... and fqdn combination annotation": the node names too.
        want.extend(["node-name-1 A 243.186.136.160", "node-name-2 A 243.186.136.178"]);
        want.sort();
        assert_eq!(run_all(&two, "{{ .Name }}.domain.tld,all.example.com", true), want);
        // "templating with kind-based FQDNs".
        let arch = [
            "metadata: {name: node-name-1}\nstatus: {addresses: [{type: ExternalIP, address: 10.0.0.1}], nodeInfo: {architecture: arm64, bootID: '', containerRuntimeVersion: '', kernelVersion: '', kubeProxyVersion: '', kubeletVersion: '', machineID: '', operatingSystem: '', osImage: '', systemUUID: ''}}",
            "metadata: {name: node-name-2}\nstatus: {addresses: [{type: ExternalIP, address: 10.0.0.2}], nodeInfo: {architecture: x86_64, bootID: '', containerRuntimeVersion: '', kernelVersion: '', kubeProxyVersion: '', kubeletVersion: '', machineID: '', operatingSystem: '', osImage: '', systemUUID: ''}}",
        ];
        assert_eq!(
            run_all(
                &arch,
                "{{ if eq .Kind \"Pod\" }}{{.Name}}.pod.tld{{ end }}\n{{ if eq .Kind \"Node\" }}{{.Name}}.{{.Status.NodeInfo.Architecture}}.node.tld{{ end }}",
                false
            ),
            ["node-name-1.arm64.node.tld A 10.0.0.1", "node-name-2.x86_64.node.tld A 10.0.0.2"]
        );
    }

    /// Where the template meets the hostname annotation (an extdns addition for Nodes, which
    /// external-dns does not read there): the annotation stands in for the node's name, so
    /// the template replaces it unless `--combine-fqdn-annotation`, and
    /// `--ignore-hostname-annotation` brings the node's name back.
    #[test]
    fn template_and_hostname_annotation() {
        let n = node(&format!(
            "metadata: {{name: node1, annotations: {{external-dns.alpha.kubernetes.io/hostname: n1.example.org}}}}\n{ADDRS}"
        ));
        let t = "{{.Name}}.nodes.example.org";
        assert_eq!(summary(&run(&n, |_| {}).unwrap()), vec!["n1.example.org A 1.2.3.4"]);
        assert_eq!(
            summary(&run(&n, |a| a.fqdn_template = t.into()).unwrap()),
            vec!["node1.nodes.example.org A 1.2.3.4"]
        );
        let combined = run(&n, |a| {
            a.fqdn_template = t.into();
            a.combine_fqdn_annotation = true;
        });
        assert_eq!(summary(&combined.unwrap()), vec!["n1.example.org A 1.2.3.4", "node1.nodes.example.org A 1.2.3.4"]);
        let ignored = run(&n, |a| {
            a.fqdn_template = t.into();
            a.combine_fqdn_annotation = true;
            a.ignore_hostname_annotation = true;
        });
        assert_eq!(summary(&ignored.unwrap()), vec!["node1 A 1.2.3.4", "node1.nodes.example.org A 1.2.3.4"]);
    }

    #[test]
    fn fqdn_template_annotations_and_ttl() {
        let n = node(&format!(
            "metadata: {{name: node1, labels: {{zone: a}}, annotations: {{external-dns.alpha.kubernetes.io/ttl: \"10\"}}}}\n{ADDRS}"
        ));
        let d =
            run(&n, |a| a.fqdn_template = "{{.Name}}.example.org,{{.Labels.zone}}.nodes.example.org".into()).unwrap();
        assert_eq!(summary(&d), vec!["a.nodes.example.org A 1.2.3.4", "node1.example.org A 1.2.3.4"]);
        assert_eq!(d.spec.endpoints[0].record_ttl, Some(10));
        let annotated = node(&format!(
            "metadata: {{name: node1, annotations: {{external-dns.alpha.kubernetes.io/hostname: n1.example.org, external-dns.alpha.kubernetes.io/target: 203.0.113.1}}}}\n{ADDRS}"
        ));
        assert_eq!(summary(&run(&annotated, |_| {}).unwrap()), vec!["n1.example.org A 203.0.113.1"]);
        assert_eq!(
            summary(
                &run(&annotated, |a| {
                    a.ignore_hostname_annotation = true;
                    a.fqdn_template = "{{.Name}}.nodes.example.org".into();
                })
                .unwrap()
            ),
            vec!["node1.nodes.example.org A 203.0.113.1"]
        );
    }

    #[test]
    fn unschedulable_controller_and_filters() {
        let cordoned = node(&format!("metadata: {{name: node1}}\nspec: {{unschedulable: true}}\n{ADDRS}"));
        assert!(run(&cordoned, |_| {}).is_none());
        assert!(run(&cordoned, |a| a.exclude_unschedulable = false).is_some());
        let other = node(&format!(
            "metadata: {{name: node1, annotations: {{external-dns.alpha.kubernetes.io/controller: other}}}}\n{ADDRS}"
        ));
        assert!(run(&other, |_| {}).is_none());
        let labelled = node(&format!("metadata: {{name: node1, labels: {{role: edge}}}}\n{ADDRS}"));
        assert!(run(&labelled, |a| a.label_filter = "role=edge".into()).is_some());
        assert!(run(&labelled, |a| a.label_filter = "role=worker".into()).is_none());
        // --namespace does not apply to cluster-scoped nodes.
        assert!(run(&labelled, |a| a.namespace = "shop".into()).is_some());
        assert!(run(&labelled, |a| a.source = vec![SourceKind::Service]).is_none());
    }
}
