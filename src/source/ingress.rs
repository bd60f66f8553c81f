//! Records for Ingresses, after external-dns's `source/ingress.go` (`endpointsFromIngress`,
//! `targetsFromIngressStatus`, `filterByIngressClass`).

use k8s_openapi::api::networking::v1::Ingress;

use super::annotations::{ExternalDnsAnnotations, ANNOTATION_ONLY, DEFINED_HOSTS_ONLY, INGRESS_CLASS_ANNOTATION};
use super::{Records, SourceConfig};

/// `--ingress-class`: `spec.ingressClassName` when set, else the legacy
/// `kubernetes.io/ingress.class` annotation, must be one of the classes.
pub(super) fn class_matches(ing: &Ingress, classes: &[String]) -> bool {
    if classes.is_empty() {
        return true;
    }
    let class =
        ing.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()).filter(|c| !c.is_empty()).or_else(|| {
            ing.metadata.annotations.as_ref().and_then(|a| a.get(INGRESS_CLASS_ANNOTATION)).map(String::as_str)
        });
    class.is_some_and(|c| classes.iter().any(|want| want == c))
}

/// Targets: the target annotation, else every ip and hostname of the load balancer status.
fn targets(ing: &Ingress, ann: &ExternalDnsAnnotations<'_>) -> Vec<String> {
    let from_annotation = ann.targets();
    if !from_annotation.is_empty() {
        return from_annotation;
    }
    let ingress = ing.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress
        .into_iter()
        .flatten()
        .flat_map(|lb| [lb.ip.clone(), lb.hostname.clone()])
        .flatten()
        .filter(|t| !t.is_empty())
        .collect()
}

/// Records for the hosts of `spec.rules` and `spec.tls` and the hostname annotation, chosen
/// by the `ingress-hostname-source` annotation.
pub(super) fn defined_records(ing: &Ingress, cfg: &SourceConfig, ann: &ExternalDnsAnnotations<'_>) -> Records {
    let spec = ing.spec.as_ref();
    let mut defined: Vec<String> = Vec::new();
    if !cfg.args.ignore_ingress_rules_spec {
        defined.extend(spec.and_then(|s| s.rules.as_ref()).into_iter().flatten().filter_map(|r| r.host.clone()));
    }
    if !cfg.args.ignore_ingress_tls_spec {
        defined.extend(
            spec.and_then(|s| s.tls.as_ref()).into_iter().flatten().flat_map(|t| t.hosts.clone().unwrap_or_default()),
        );
    }
    let from_annotation = if cfg.args.ignore_hostname_annotation { Vec::new() } else { ann.hostnames() };

    let mut recs = Records::default();
    let hosts: Vec<String> = match ann.ingress_hostname_source().map(str::to_ascii_lowercase) {
        None => defined.into_iter().chain(from_annotation).collect(),
        Some(s) if s == DEFINED_HOSTS_ONLY => defined,
        Some(s) if s == ANNOTATION_ONLY => from_annotation,
        Some(other) => {
            // external-dns silently publishes nothing here; say why.
            recs.warn(format!(
                "annotation ingress-hostname-source: unknown value {other:?}, expected {DEFINED_HOSTS_ONLY} or {ANNOTATION_ONLY}; publishing no host names"
            ));
            Vec::new()
        }
    };
    recs.merge(records_for_hostnames(ing, ann, &hosts));
    recs
}

/// Records for the given host names, all pointing at the Ingress's targets.
pub(super) fn records_for_hostnames(ing: &Ingress, ann: &ExternalDnsAnnotations<'_>, hostnames: &[String]) -> Records {
    let targets = targets(ing, ann);
    let mut recs = Records::default();
    for h in hostnames.iter().filter(|h| !h.is_empty()) {
        recs.add_for_hostname(h.trim_end_matches('.'), &targets);
    }
    recs
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{desired_dnsendpoint, DesiredObject, SourceArgs, SourceObject};
    use super::*;

    fn ingress(annotations: &str, class: &str) -> Ingress {
        yaml(&format!(
            r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: shop, namespace: web, annotations: {annotations}}}
spec:
  {class}
  rules:
  - host: shop.example.com
    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: shop, port: {{number: 80}}}}}}}}]}}
  - host: api.example.com
  - {{}}
  tls:
  - hosts: [shop.example.com, secure.example.com]
    secretName: tls
status:
  loadBalancer:
    ingress: [{{ip: 192.0.2.5}}, {{hostname: lb.example.net}}]
"#
        ))
    }

    fn run(ing: &Ingress, f: impl FnOnce(&mut SourceArgs)) -> Option<DesiredObject> {
        desired_dnsendpoint(SourceObject::Ingress(ing), &Fixture::default(), &cfg(f)).unwrap()
    }

    #[test]
    fn rules_tls_and_status() {
        let d = run(&ingress("{}", ""), |_| {}).unwrap();
        assert_eq!(d.name, "shop-ingress");
        assert_eq!(
            summary(&d),
            vec!["api.example.com A 192.0.2.5", "secure.example.com A 192.0.2.5", "shop.example.com A 192.0.2.5",]
        );
        // A status with both an address and a host name: the addresses only, visibly.
        assert_eq!(d.warnings.len(), 3, "{:?}", d.warnings);
        assert!(d.warnings[0]
            .starts_with("skipping CNAME api.example.com -> lb.example.net: a CNAME cannot share its name"));
        assert_eq!(d.spec.endpoints[0].labels.as_ref().unwrap()["resource"], "ingress/web/shop");
        let only_rules = run(&ingress("{}", ""), |a| a.ignore_ingress_tls_spec = true).unwrap();
        assert_eq!(summary(&only_rules).len(), 2);
        let only_tls = run(&ingress("{}", ""), |a| a.ignore_ingress_rules_spec = true).unwrap();
        assert_eq!(summary(&only_tls).len(), 2);
    }

    #[test]
    fn hostname_annotation_and_source() {
        let a = r#"{external-dns.alpha.kubernetes.io/hostname: "extra.example.com", external-dns.alpha.kubernetes.io/target: 198.51.100.1}"#;
        let d = run(&ingress(a, ""), |_| {}).unwrap();
        assert_eq!(
            summary(&d),
            vec![
                "api.example.com A 198.51.100.1",
                "extra.example.com A 198.51.100.1",
                "secure.example.com A 198.51.100.1",
                "shop.example.com A 198.51.100.1",
            ]
        );
        let only_annotation = format!(
            "{}, external-dns.alpha.kubernetes.io/ingress-hostname-source: Annotation-Only}}",
            &a[..a.len() - 1]
        );
        assert_eq!(
            summary(&run(&ingress(&only_annotation, ""), |_| {}).unwrap()),
            vec!["extra.example.com A 198.51.100.1"]
        );
        let defined_only = format!(
            "{}, external-dns.alpha.kubernetes.io/ingress-hostname-source: defined-hosts-only}}",
            &a[..a.len() - 1]
        );
        assert_eq!(summary(&run(&ingress(&defined_only, ""), |_| {}).unwrap()).len(), 3);
        assert_eq!(
            summary(
                &run(&ingress(a, ""), |a| {
                    a.ignore_hostname_annotation = true;
                    a.fqdn_template = "{{.Name}}.example.org".into();
                })
                .unwrap()
            )
            .len(),
            3
        );
        let bogus = r#"{external-dns.alpha.kubernetes.io/ingress-hostname-source: everything}"#;
        assert!(run(&ingress(bogus, ""), |_| {}).is_none());
    }

    #[test]
    fn ingress_class_filter() {
        let named = ingress("{}", "ingressClassName: nginx");
        assert!(run(&named, |a| a.ingress_class = vec!["nginx".into()]).is_some());
        assert!(run(&named, |a| a.ingress_class = vec!["traefik".into()]).is_none());
        let legacy = ingress(r#"{kubernetes.io/ingress.class: traefik}"#, "");
        assert!(run(&legacy, |a| a.ingress_class = vec!["nginx".into(), "traefik".into()]).is_some());
        assert!(run(&legacy, |a| a.ingress_class = vec!["nginx".into()]).is_none());
        // spec.ingressClassName wins over the annotation.
        let both = ingress(r#"{kubernetes.io/ingress.class: traefik}"#, "ingressClassName: nginx");
        assert!(run(&both, |a| a.ingress_class = vec!["traefik".into()]).is_none());
        assert!(run(&ingress("{}", ""), |a| a.ingress_class = vec!["nginx".into()]).is_none());
        assert!(run(&ingress("{}", ""), |_| {}).is_some());
    }

    #[test]
    fn template_for_hostless_ingress() {
        let ing: Ingress = yaml(
            r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: blog, namespace: web}
spec: {defaultBackend: {service: {name: blog, port: {number: 80}}}}
status: {loadBalancer: {ingress: [{ip: 192.0.2.9}]}}
"#,
        );
        assert!(run(&ing, |_| {}).is_none());
        let d = run(&ing, |a| a.fqdn_template = "{{ .Name }}.{{ .Namespace }}.example.com".into()).unwrap();
        assert_eq!(summary(&d), vec!["blog.web.example.com A 192.0.2.9"]);
    }
}
