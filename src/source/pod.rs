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

    fn pod_yaml(name: &str, ns: &str, extra_meta: &str, spec: &str, status: &str) -> Pod {
        yaml(&format!("metadata: {{name: {name}, namespace: {ns}{extra_meta}}}\nspec: {spec}\nstatus: {status}"))
    }

    fn records_of(pods: &[Pod], f: impl Fn(&mut SourceArgs)) -> Vec<String> {
        let c = cfg(|a| {
            a.source = vec![SourceKind::Pod];
            f(a)
        });
        let mut out: Vec<String> = pods
            .iter()
            .flat_map(|p| desired_dnsendpoint(SourceObject::Pod(p), &fixture(), &c).unwrap().map(|d| summary(&d)))
            .flatten()
            .collect();
        out.sort();
        out
    }

    /// Rows of external-dns's `TestPodSource` (`pod_test.go`) with `--pod-source-domain`.
    #[test]
    fn external_dns_pod_source_domain_rows() {
        // "create IPv4 records for non-host network pods".
        let pods = [
            pod_yaml(
                "my-pod1",
                "kube-system",
                "",
                "{hostNetwork: false, nodeName: my-node1, containers: []}",
                "{podIP: 192.168.1.1}",
            ),
            pod_yaml(
                "my-pod2",
                "kube-system",
                "",
                "{hostNetwork: false, nodeName: my-node2, containers: []}",
                "{podIP: 192.168.1.2}",
            ),
        ];
        let domain = |ignore: bool| {
            move |a: &mut SourceArgs| {
                a.ignore_non_host_network_pods = ignore;
                a.pod_source_domain = "example.org".into();
            }
        };
        assert_eq!(
            records_of(&pods, domain(false)),
            ["my-pod1.example.org A 192.168.1.1", "my-pod2.example.org A 192.168.1.2"]
        );
        // Like the annotations, --pod-source-domain reads hostNetwork pods only by default.
        assert!(records_of(&pods, domain(true)).is_empty());
        // "create records based on pod's target annotation with pod source domain".
        let ann = |t: &str| {
            format!(", annotations: {{external-dns.alpha.kubernetes.io/internal-hostname: internal.a.foo.example.org, external-dns.alpha.kubernetes.io/hostname: a.foo.example.org, external-dns.alpha.kubernetes.io/target: {t}}}")
        };
        let targeted = [
            pod_yaml(
                "my-pod1",
                "kube-system",
                &ann("208.1.2.1"),
                "{hostNetwork: true, nodeName: my-node1, containers: []}",
                "{podIP: 10.0.1.1}",
            ),
            pod_yaml(
                "my-pod2",
                "kube-system",
                &ann("208.1.2.2"),
                "{hostNetwork: true, nodeName: my-node2, containers: []}",
                "{podIP: 10.0.1.2}",
            ),
        ];
        assert_eq!(
            records_of(&targeted, domain(true)),
            [
                "a.foo.example.org A 208.1.2.1",
                "a.foo.example.org A 208.1.2.2",
                "internal.a.foo.example.org A 208.1.2.1",
                "internal.a.foo.example.org A 208.1.2.2",
                "my-pod1.example.org A 208.1.2.1",
                "my-pod2.example.org A 208.1.2.2",
            ]
        );
    }

    /// Rows of external-dns's `TestPodSourceFqdnTemplatingExamples` (`pod_fqdn_test.go`). The
    /// template applies to every pod with an IP, hostNetwork or not, so each row gives the
    /// same records with `--ignore-non-host-network-pods` on (the default) and off.
    #[test]
    fn external_dns_fqdn_template_examples() {
        let status = |ips: &[&str]| {
            let list: Vec<String> = ips.iter().map(|ip| format!("{{ip: \"{ip}\"}}")).collect();
            format!("{{podIP: \"{}\", podIPs: [{}]}}", ips[0], list.join(", "))
        };
        let plain =
            |name: &str, ns: &str, meta: &str, ips: &[&str]| pod_yaml(name, ns, meta, "{containers: []}", &status(ips));
        let both = |pods: &[Pod], template: &str, f: &dyn Fn(&mut SourceArgs)| -> Vec<String> {
            let on = records_of(pods, |a| {
                a.fqdn_template = template.into();
                f(a)
            });
            let off = records_of(pods, |a| {
                a.fqdn_template = template.into();
                a.ignore_non_host_network_pods = false;
                f(a)
            });
            assert_eq!(on, off, "{template}");
            on
        };
        let none = |_: &mut SourceArgs| {};
        let one = [plain("my-pod-1", "default", "", &["100.67.94.101"])];
        assert_eq!(
            both(&one, "{{ .Name }}.domainA.com,{{ .Name }}.domainB.com", &none),
            ["my-pod-1.domaina.com A 100.67.94.101", "my-pod-1.domainb.com A 100.67.94.101"]
        );
        // "... with multiple domains and fqdn combine and pod source domain" (ignore off there).
        let on_node = [pod_yaml(
            "my-pod-1",
            "default",
            "",
            "{nodeName: node-1.internal, containers: []}",
            &status(&["100.67.94.101"]),
        )];
        assert_eq!(
            records_of(&on_node, |a| {
                a.fqdn_template = "{{ .Name }}.domainA.com,{{ .Name }}.domainB.com".into();
                a.combine_fqdn_annotation = true;
                a.pod_source_domain = "example.org".into();
                a.ignore_non_host_network_pods = false;
            }),
            [
                "my-pod-1.domaina.com A 100.67.94.101",
                "my-pod-1.domainb.com A 100.67.94.101",
                "my-pod-1.example.org A 100.67.94.101",
            ]
        );
        let per_ns =
            [plain("pod-1", "default", "", &["100.67.94.101"]), plain("pod-2", "kube-system", "", &["100.67.94.102"])];
        assert_eq!(
            both(&per_ns, "{{ .Name }}.{{ .Namespace }}.example.org", &none),
            ["pod-1.default.example.org A 100.67.94.101", "pod-2.kube-system.example.org A 100.67.94.102"]
        );
        let dual = [plain("pod-1", "default", "", &["100.67.94.101", "2041:0000:140F::875B:131B"])];
        assert_eq!(
            both(&dual, "{{ .Name }}.example.org", &none),
            ["pod-1.example.org A 100.67.94.101", "pod-1.example.org AAAA 2041:0:140f::875b:131b"]
        );
        // "... target annotation that is currently not overriding target IPs".
        let target = [plain(
            "pod-1",
            "default",
            ", annotations: {external-dns.alpha.kubernetes.io/target: 203.2.45.22}",
            &["100.67.94.101"],
        )];
        assert_eq!(both(&target, "{{ .Name }}.example.org", &none), ["pod-1.example.org A 100.67.94.101"]);
        // "... host annotation that is currently not overriding hostname" (no node: nothing).
        let host = [plain(
            "pod-1",
            "default",
            ", annotations: {external-dns.alpha.kubernetes.io/hostname: ip-10-1-176-1.internal.domain.com}",
            &["100.67.94.101"],
        )];
        assert_eq!(both(&host, "{{ .Name }}.example.org", &none), ["pod-1.example.org A 100.67.94.101"]);
        let annotated = [
            plain("pod-1", "kube-system", ", annotations: {workload: cluster-resources}", &["100.67.94.101"]),
            plain("pod-2", "workloads", ", annotations: {workload: workloads}", &["100.67.94.102"]),
        ];
        assert_eq!(
            both(&annotated, "{{ .Name }}.{{ .Annotations.workload }}.domain.tld", &none),
            ["pod-1.cluster-resources.domain.tld A 100.67.94.101", "pod-2.workloads.domain.tld A 100.67.94.102"]
        );
        let labelled = [
            plain("pod-1", "kube-system", ", labels: {topology.kubernetes.io/region: eu-west-1a}", &["100.67.94.101"]),
            plain("pod-2", "workloads", ", labels: {topology.kubernetes.io/region: eu-west-1b}", &["100.67.94.102"]),
        ];
        assert_eq!(
            both(
                &labelled,
                "{{ .Name }}.{{ index .ObjectMeta.Labels \"topology.kubernetes.io/region\" }}.domain.tld",
                &none
            ),
            ["pod-1.eu-west-1a.domain.tld A 100.67.94.101", "pod-2.eu-west-1b.domain.tld A 100.67.94.102"]
        );
        let many = [plain(
            "pod-1",
            "kube-system",
            "",
            &["100.67.94.101", "100.67.94.102", "100.67.94.103", "2041:0000:140F::875B:131B", "::11.22.33.44"],
        )];
        assert_eq!(
            both(&many, "pods-all.domain.tld", &none),
            [
                "pods-all.domain.tld A 100.67.94.101,100.67.94.102,100.67.94.103",
                "pods-all.domain.tld AAAA 2041:0:140f::875b:131b,::b16:212c",
            ]
        );
        // "... IP not set as pod failed": a pod without an IP yields nothing.
        let failed = [
            plain("pod-1", "kube-system", "", &["100.67.94.101"]),
            pod_yaml("pod-2", "kube-system", "", "{containers: []}", "{phase: Failed}"),
        ];
        assert_eq!(both(&failed, "{{ .Name }}.domain.tld", &none), ["pod-1.domain.tld A 100.67.94.101"]);
    }
}
