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
        // No address at all: nothing, and the user is told.
        let bare = node("metadata: {name: node1}\nstatus: {addresses: [{type: Hostname, address: node1}]}");
        let c = cfg(|a| a.source = vec![SourceKind::Node]);
        let recs =
            node_records(&bare, &c, &ExternalDnsAnnotations::new(&Default::default()), || unreachable!()).unwrap();
        assert!(recs.is_empty() && recs.warnings[0].contains("no ExternalIP or InternalIP"));
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
