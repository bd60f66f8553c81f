//! Records for Pods, after external-dns's `source/pod.go`: the `internal-hostname` annotation
//! points at the pod IP, the `hostname` annotation at the addresses of the pod's node
//! (ExternalIPs and IPv6 InternalIPs), `--pod-source-domain` names `<pod>.<domain>` after the
//! pod IP, and the `target` annotation overrides all three; these are read on hostNetwork pods
//! only unless `--ignore-non-host-network-pods=false`. `--fqdn-template` names point at the
//! pod IPs of every pod, hostNetwork or not, when the others yield nothing or with
//! `--combine-fqdn-annotation`.

use k8s_openapi::api::core::v1::Pod;

use super::annotations::ExternalDnsAnnotations;
use super::{Records, SourceConfig, SourceError, SourceInputs};

fn pod_ips(pod: &Pod) -> Vec<String> {
    let status = pod.status.as_ref();
    let ips: Vec<String> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()).into_iter().collect()
}

pub(super) fn pod_records(
    pod: &Pod,
    inputs: &dyn SourceInputs,
    cfg: &SourceConfig,
    ann: &ExternalDnsAnnotations<'_>,
    json: impl FnOnce() -> Result<serde_json::Value, SourceError>,
) -> Result<Records, SourceError> {
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let mut recs = if cfg.args.ignore_non_host_network_pods && !host_network {
        Records::default()
    } else {
        annotation_records(pod, inputs, cfg, ann)
    };
    // external-dns applies the template to every pod: the hostNetwork gate is on the
    // annotations and --pod-source-domain only.
    if let Some(tmpl) = &cfg.fqdn_template {
        if recs.is_empty() || cfg.args.combine_fqdn_annotation {
            let object = format!(
                "Pod {}/{}",
                pod.metadata.namespace.as_deref().unwrap_or("default"),
                pod.metadata.name.as_deref().unwrap_or_default()
            );
            let names = tmpl.hostnames(&json()?).map_err(|source| SourceError::Template { object, source })?;
            let ips = pod_ips(pod);
            for n in names.iter().filter(|n| !n.is_empty()) {
                recs.add_for_hostname(n.trim_end_matches('.'), &ips);
            }
        }
    }
    Ok(recs)
}

/// The records of the annotations and `--pod-source-domain`.
fn annotation_records(
    pod: &Pod,
    inputs: &dyn SourceInputs,
    cfg: &SourceConfig,
    ann: &ExternalDnsAnnotations<'_>,
) -> Records {
    let mut recs = Records::default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let targets = ann.targets();
    let pod_ip: Vec<String> =
        pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()).into_iter().collect();
    let own_or_pod_ip = if targets.is_empty() { &pod_ip } else { &targets };
    for host in ann.internal_hostnames() {
        recs.add_for_hostname(&host, own_or_pod_ip);
    }
    let hostnames = if cfg.args.ignore_hostname_annotation { Vec::new() } else { ann.hostnames() };
    if !hostnames.is_empty() {
        let node_targets = if !targets.is_empty() {
            targets.clone()
        } else {
            let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default();
            match inputs.node(node_name) {
                // IPv6 InternalIPs are routable although Kubernetes labels them internal.
                Some(node) => node
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .into_iter()
                    .flatten()
                    .filter(|a| {
                        a.type_ == "ExternalIP"
                            || (a.type_ == "InternalIP" && a.address.parse::<std::net::Ipv6Addr>().is_ok())
                    })
                    .map(|a| a.address.clone())
                    .collect(),
                None => {
                    recs.warn(format!(
                        "pod {ns}/{name}: node {node_name:?} not found; the hostname annotation yields no records"
                    ));
                    Vec::new()
                }
            }
        };
        for host in &hostnames {
            recs.add_for_hostname(host, &node_targets);
        }
    }
    let domain = cfg.args.pod_source_domain.trim().trim_matches('.');
    if !domain.is_empty() {
        recs.add_for_hostname(&format!("{name}.{domain}"), own_or_pod_ip);
    }
    recs
}

#[cfg(test)]
mod tests {
    //! Cases after external-dns's `pod_test.go` table.
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Node;

    use super::super::testutil::*;
    use super::super::{desired_dnsendpoint, DesiredObject, SourceArgs, SourceKind, SourceObject};
    use super::*;

    fn fixture() -> Fixture {
        let n = |name: &str, addrs: &str| -> Arc<Node> {
            Arc::new(yaml(&format!("metadata: {{name: {name}}}\nstatus: {{addresses: {addrs}}}")))
        };
        Fixture {
            nodes: vec![
                n("my-node1", "[{type: ExternalIP, address: 54.10.11.1}, {type: InternalIP, address: 10.0.1.1}]"),
                n(
                    "my-node2",
                    "[{type: ExternalIP, address: 54.10.11.2}, {type: InternalIP, address: 10.0.1.2}, {type: InternalIP, address: \"2001:db8::2\"}]",
                ),
            ],
            ..Default::default()
        }
    }

    fn pod(name: &str, node: &str, host_network: bool, annotations: &str) -> Pod {
        yaml(&format!(
            r#"
metadata: {{name: {name}, namespace: kube-system, uid: u-{name}, annotations: {annotations}}}
spec: {{nodeName: {node}, hostNetwork: {host_network}, containers: []}}
status: {{podIP: 10.0.1.9, podIPs: [{{ip: 10.0.1.9}}, {{ip: "2001:db8::9"}}]}}
"#
        ))
    }

    fn run(p: &Pod, f: impl FnOnce(&mut SourceArgs)) -> Option<DesiredObject> {
        let c = cfg(|a| {
            a.source = vec![SourceKind::Pod];
            a.ignore_non_host_network_pods = true;
            f(a)
        });
        desired_dnsendpoint(SourceObject::Pod(p), &fixture(), &c).unwrap()
    }

    #[test]
    fn hostname_points_at_the_node_and_internal_hostname_at_the_pod() {
        let p = pod(
            "my-pod1",
            "my-node2",
            true,
            r#"{external-dns.alpha.kubernetes.io/hostname: a.foo.example.org, external-dns.alpha.kubernetes.io/internal-hostname: internal.a.foo.example.org}"#,
        );
        let d = run(&p, |_| {}).unwrap();
        assert_eq!(
            summary(&d),
            vec![
                "a.foo.example.org A 54.10.11.2",
                "a.foo.example.org AAAA 2001:db8::2",
                "internal.a.foo.example.org A 10.0.1.9",
            ]
        );
        assert_eq!((d.name.as_str(), d.namespace.as_str()), ("my-pod1-pod", "kube-system"));
        assert_eq!(d.spec.endpoints[0].labels.as_ref().unwrap()["resource"], "pod/kube-system/my-pod1");
    }

    #[test]
    fn target_annotation_overrides_and_host_network_gate() {
        let p = pod(
            "my-pod1",
            "my-node1",
            true,
            r#"{external-dns.alpha.kubernetes.io/hostname: a.foo.example.org, external-dns.alpha.kubernetes.io/internal-hostname: i.foo.example.org, external-dns.alpha.kubernetes.io/target: 208.1.2.1}"#,
        );
        assert_eq!(
            summary(&run(&p, |_| {}).unwrap()),
            vec!["a.foo.example.org A 208.1.2.1", "i.foo.example.org A 208.1.2.1"]
        );
        let pod_network = pod(
            "my-pod2",
            "my-node1",
            false,
            r#"{external-dns.alpha.kubernetes.io/internal-hostname: i.foo.example.org}"#,
        );
        assert!(run(&pod_network, |_| {}).is_none());
        assert_eq!(
            summary(&run(&pod_network, |a| a.ignore_non_host_network_pods = false).unwrap()),
            vec!["i.foo.example.org A 10.0.1.9"]
        );
    }

    #[test]
    fn missing_node_is_a_warning_and_template_uses_pod_ips() {
        let p = pod("my-pod1", "gone", true, r#"{external-dns.alpha.kubernetes.io/hostname: a.foo.example.org}"#);
        let c = cfg(|a| {
            a.source = vec![SourceKind::Pod];
            a.ignore_non_host_network_pods = true;
        });
        let empty = std::collections::BTreeMap::new();
        let all = p.metadata.annotations.as_ref().unwrap_or(&empty);
        let recs = pod_records(&p, &fixture(), &c, &ExternalDnsAnnotations::new(all), || unreachable!()).unwrap();
        assert!(recs.is_empty());
        assert!(recs.warnings[0].contains("node \"gone\" not found"), "{:?}", recs.warnings);

        let plain = pod("my-pod1", "my-node1", true, "{}");
        let d = run(&plain, |a| a.fqdn_template = "{{.Name}}.pods.example.org".into()).unwrap();
        assert_eq!(
            summary(&d),
            vec!["my-pod1.pods.example.org A 10.0.1.9", "my-pod1.pods.example.org AAAA 2001:db8::9"]
        );
        assert!(run(&plain, |_| {}).is_none());
    }
}
