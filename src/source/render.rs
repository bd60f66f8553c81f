//! `extdns render`: the DNSEndpoints the source controller would write for objects given as
//! YAML files, without a cluster.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;

use super::crd::CrdResource;
use super::gateway::{Gateway, Route, RouteKind, GATEWAY_GROUP, GATEWAY_VERSIONS};
use super::{
    build_dnsendpoint, desired_dnsendpoint, DesiredObject, OwnerInfo, SourceArgs, SourceConfig, SourceError,
    SourceKind, SourceObject, StaticInputs,
};

/// Where in the input a problem is: file, 1-based document index, and the object when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocLocation {
    pub file: String,
    pub document: usize,
    /// e.g. "Service default/web" or "items[2]: Pod default/web-0".
    pub object: Option<String>,
}

impl fmt::Display for DocLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.document)?;
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A document that is not valid YAML or not a valid object of a kind extdns reads.
    #[error("{location}: {message}")]
    Document { location: DocLocation, message: String },
    #[error(transparent)]
    Config(SourceError),
    /// The object was read but its records could not be computed.
    #[error("{location}: {source}")]
    Source {
        location: DocLocation,
        #[source]
        source: Box<SourceError>,
    },
    #[error("DNSEndpoint {namespace}/{name}: {source}")]
    Output {
        namespace: String,
        name: String,
        #[source]
        source: serde_yaml::Error,
    },
}

/// Reads files, the `*.yaml`/`*.yml` files of directories (not recursive, sorted by name),
/// and `-` as standard input. Returns (name, contents) pairs in argument order.
pub fn read_inputs(paths: &[PathBuf]) -> Result<Vec<(String, String)>, RenderError> {
    let io = |p: &std::path::Path| {
        let path = p.display().to_string();
        move |source| RenderError::Io { path, source }
    };
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(io(path))?;
            out.push(("-".to_string(), s));
        } else if path.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io(path))? {
                let p = entry.map_err(io(path))?.path();
                let yaml = p.extension().and_then(|e| e.to_str()).is_some_and(|e| e == "yaml" || e == "yml");
                if yaml && p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
            for f in files {
                let s = std::fs::read_to_string(&f).map_err(io(&f))?;
                out.push((f.display().to_string(), s));
            }
        } else {
            let s = std::fs::read_to_string(path).map_err(io(path))?;
            out.push((path.display().to_string(), s));
        }
    }
    Ok(out)
}

/// Objects read from the input, which also serve as the cluster view for headless and
/// NodePort Services.
#[derive(Default)]
struct Objects {
    services: Vec<(DocLocation, Service)>,
    ingresses: Vec<(DocLocation, Ingress)>,
    routes: Vec<(DocLocation, RouteKind, Route)>,
    /// Where each of `cluster.nodes` and `cluster.pods` came from, in the same order.
    node_locations: Vec<DocLocation>,
    pod_locations: Vec<DocLocation>,
    cluster: StaticInputs,
    /// Objects of the crd source's kind (`--source=crd`): external-dns's DNSEndpoints.
    crds: Vec<(DocLocation, DynamicObject)>,
    /// The kind the crd source reads, when it is on.
    crd_resource: Option<CrdResource>,
    /// (kind, namespace, name) → where it was first seen.
    seen: BTreeMap<(String, String, String), DocLocation>,
}

/// The kinds extdns reads, with the apiVersion it reads them in and whether they are
/// namespaced.
const KINDS: [(&str, &str, bool); 6] = [
    ("Service", "v1", true),
    ("Ingress", "networking.k8s.io/v1", true),
    ("EndpointSlice", "discovery.k8s.io/v1", true),
    ("Pod", "v1", true),
    ("Node", "v1", false),
    ("Namespace", "v1", false),
];

/// The Gateway API kinds extdns reads and the versions of gateway.networking.k8s.io it reads
/// them in; every one is namespaced.
fn gateway_kind_versions(kind: &str) -> Option<&'static [&'static str]> {
    if kind == "Gateway" {
        return Some(&GATEWAY_VERSIONS);
    }
    RouteKind::from_kind(kind).map(RouteKind::versions)
}

/// Typed form of one document: deserialized from the original text when we have it (errors
/// then carry the field path and the line in the file), from the value otherwise.
enum Source<'a> {
    Text(serde_yaml::Deserializer<'a>),
    Value(&'a Value),
}

fn typed<T: DeserializeOwned>(src: Source<'_>) -> Result<T, String> {
    match src {
        Source::Text(de) => T::deserialize(de).map_err(|e| e.to_string()),
        Source::Value(v) => {
            // Through text, so that serde_yaml reports the field path; its line numbers would
            // refer to that text, so they are dropped.
            let text = serde_yaml::to_string(v).map_err(|e| e.to_string())?;
            serde_yaml::from_str(&text).map_err(|e| {
                let msg = e.to_string();
                match e.location() {
                    Some(l) => {
                        msg.trim_end_matches(&format!(" at line {} column {}", l.line(), l.column())).to_string()
                    }
                    None => msg,
                }
            })
        }
    }
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str)
}

impl Objects {
    fn add_document(&mut self, file: &str, document: usize, value: &Value, src: Source<'_>) -> Result<(), RenderError> {
        self.add_object(file, document, None, value, src)
    }

    fn add_object(
        &mut self,
        file: &str,
        document: usize,
        item: Option<usize>,
        value: &Value,
        src: Source<'_>,
    ) -> Result<(), RenderError> {
        let item_prefix = item.map(|i| format!("items[{i}]")).unwrap_or_default();
        let location = |object: Option<String>| DocLocation { file: file.to_string(), document, object };
        let fail =
            |object: Option<String>, message: String| RenderError::Document { location: location(object), message };
        let bare = (!item_prefix.is_empty()).then(|| item_prefix.clone());
        if !value.is_mapping() {
            return Err(fail(bare, "expected a Kubernetes object (a mapping with apiVersion and kind)".into()));
        }
        let api_version =
            str_at(value, &["apiVersion"]).ok_or_else(|| fail(bare.clone(), "apiVersion: missing".into()))?;
        let kind = str_at(value, &["kind"]).ok_or_else(|| fail(bare.clone(), "kind: missing".into()))?;

        if kind == "List" && api_version == "v1" && item.is_none() {
            let items = match value.get("items") {
                None | Some(Value::Null) => return Ok(()),
                Some(Value::Sequence(items)) => items,
                Some(_) => return Err(fail(Some("List".into()), "items: expected a list".into())),
            };
            for (i, it) in items.iter().enumerate() {
                self.add_object(file, document, Some(i), it, Source::Value(it))?;
            }
            return Ok(());
        }
        if self.crd_resource.as_ref().is_some_and(|r| r.kind == kind && r.api_version() == api_version) {
            let (namespace, name) = (
                str_at(value, &["metadata", "namespace"]).filter(|n| !n.is_empty()).unwrap_or("default"),
                str_at(value, &["metadata", "name"]).unwrap_or_default(),
            );
            let described = format!("{kind} {namespace}/{name}");
            let object = Some(if item_prefix.is_empty() { described } else { format!("{item_prefix}: {described}") });
            let mut o: DynamicObject = typed(src).map_err(|m| fail(object.clone(), m))?;
            o.metadata.namespace = Some(namespace.to_string());
            self.crds.push((location(object), o));
            return Ok(());
        }
        let gateway_versions = gateway_kind_versions(kind);
        let Some((want_version, namespaced)) = KINDS
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|&(_, v, n)| (v.to_string(), n))
            .or_else(|| gateway_versions.map(|v| (format!("{GATEWAY_GROUP}/{}", v.join(" or ")), true)))
        else {
            return Ok(());
        };
        let name = str_at(value, &["metadata", "name"]).unwrap_or_default();
        let namespace = if namespaced {
            str_at(value, &["metadata", "namespace"]).filter(|n| !n.is_empty()).unwrap_or("default")
        } else {
            ""
        };
        let described = if namespaced { format!("{kind} {namespace}/{name}") } else { format!("{kind} {name}") };
        let object = Some(if item_prefix.is_empty() { described } else { format!("{item_prefix}: {described}") });
        let version_ok = match gateway_versions {
            Some(vs) => api_version
                .strip_prefix(GATEWAY_GROUP)
                .and_then(|v| v.strip_prefix('/'))
                .is_some_and(|v| vs.contains(&v)),
            None => api_version == want_version,
        };
        if !version_ok {
            return Err(fail(object, format!("apiVersion {api_version} is not read by extdns; use {want_version}")));
        }
        if name.is_empty() {
            return Err(fail(object, "metadata.name: missing".into()));
        }
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        if let Some(first) = self.seen.get(&key) {
            return Err(fail(object, format!("duplicates {first}")));
        }
        self.seen.insert(key, location(object.clone()));

        let fix_ns = |meta: &mut ObjectMeta| {
            if namespaced {
                meta.namespace = Some(namespace.to_string());
            }
        };
        let loc = location(object.clone());
        match kind {
            "Service" => {
                let mut o: Service = typed(src).map_err(|m| fail(object, m))?;
                fix_ns(&mut o.metadata);
                self.services.push((loc, o));
            }
            "Ingress" => {
                let mut o: Ingress = typed(src).map_err(|m| fail(object, m))?;
                fix_ns(&mut o.metadata);
                self.ingresses.push((loc, o));
            }
            "EndpointSlice" => {
                let mut o: EndpointSlice = typed(src).map_err(|m| fail(object, m))?;
                fix_ns(&mut o.metadata);
                self.cluster.slices.push(Arc::new(o));
            }
            "Pod" => {
                let mut o: Pod = typed(src).map_err(|m| fail(object, m))?;
                fix_ns(&mut o.metadata);
                self.cluster.pods.push(Arc::new(o));
                self.pod_locations.push(loc);
            }
            "Node" => {
                let o: Node = typed(src).map_err(|m| fail(object, m))?;
                self.cluster.nodes.push(Arc::new(o));
                self.node_locations.push(loc);
            }
            "Namespace" => {
                let o: Namespace = typed(src).map_err(|m| fail(object, m))?;
                self.cluster.namespaces.insert(name.to_string(), o.metadata.labels.unwrap_or_default());
            }
            "Gateway" => {
                let mut o: Gateway = typed(src).map_err(|m| fail(object, m))?;
                fix_ns(&mut o.metadata);
                self.cluster.gateways.push(Arc::new(o));
            }
            _ => {
                let Some(route_kind) = RouteKind::from_kind(kind) else {
                    return Ok(());
                };
                let mut o: Route = typed(src).map_err(|m| fail(object, m))?;
                fix_ns(&mut o.metadata);
                self.routes.push((loc, route_kind, o));
            }
        }
        Ok(())
    }
}

fn parse_inputs(inputs: &[(String, String)], crd_resource: Option<CrdResource>) -> Result<Objects, RenderError> {
    let mut objects = Objects { crd_resource, ..Objects::default() };
    for (file, contents) in inputs {
        // Two passes over the same text in step: the first finds the kind, the second
        // deserializes the typed object so that errors name the field and line.
        let values = serde_yaml::Deserializer::from_str(contents);
        let texts = serde_yaml::Deserializer::from_str(contents);
        for (i, (as_value, as_text)) in values.zip(texts).enumerate() {
            let document = i + 1;
            let value = Value::deserialize(as_value).map_err(|e| RenderError::Document {
                location: DocLocation { file: file.clone(), document, object: None },
                message: e.to_string(),
            })?;
            if value.is_null() {
                continue;
            }
            objects.add_document(file, document, &value, Source::Text(as_text))?;
        }
    }
    Ok(objects)
}

/// The DNSEndpoints the source controller would write for the Services, Ingresses, routes,
/// Nodes, Pods and (with `--source=crd`) external-dns DNSEndpoints in `inputs`, as a YAML stream ordered by namespace and name. Nodes, Pods and EndpointSlices
/// in the input stand in for the cluster; other kinds are skipped. Owner references are set
/// only for objects that carry a uid. Warnings are written as comments above their
/// DNSEndpoint.
pub fn render(inputs: &[(String, String)], args: &SourceArgs) -> Result<String, RenderError> {
    let cfg = SourceConfig::new(args).map_err(RenderError::Config)?;
    let crd_resource = cfg.crd_resource.clone().filter(|_| cfg.enabled(SourceKind::Crd));
    let objects = parse_inputs(inputs, crd_resource)?;

    let mut desired: Vec<(DesiredObject, Option<OwnerInfo>)> = Vec::new();
    let mut compute = |location: &DocLocation, obj: SourceObject<'_>| -> Result<(), RenderError> {
        let without_object = DocLocation { object: None, ..location.clone() };
        let result = desired_dnsendpoint(obj, &objects.cluster, &cfg)
            .map_err(|e| RenderError::Source { location: without_object, source: Box::new(e) })?;
        if let Some(d) = result {
            desired.push((d, obj.owner_info()));
        }
        Ok(())
    };
    for (loc, svc) in &objects.services {
        compute(loc, SourceObject::Service(svc))?;
    }
    for (loc, ing) in &objects.ingresses {
        compute(loc, SourceObject::Ingress(ing))?;
    }
    for (loc, kind, route) in &objects.routes {
        compute(loc, SourceObject::Route(*kind, route))?;
    }
    for (loc, node) in objects.node_locations.iter().zip(&objects.cluster.nodes) {
        compute(loc, SourceObject::Node(node))?;
    }
    for (loc, pod) in objects.pod_locations.iter().zip(&objects.cluster.pods) {
        compute(loc, SourceObject::Pod(pod))?;
    }
    for (loc, o) in &objects.crds {
        compute(loc, SourceObject::Crd(o))?;
    }
    desired.sort_by(|(a, _), (b, _)| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut out = String::new();
    for (d, owner) in &desired {
        out.push_str("---\n");
        for w in &d.warnings {
            for line in w.lines() {
                out.push_str("# warning: ");
                out.push_str(line);
                out.push('\n');
            }
        }
        let obj = build_dnsendpoint(d, owner.as_ref());
        let yaml = serde_yaml::to_string(&obj).map_err(|source| RenderError::Output {
            namespace: d.namespace.clone(),
            name: d.name.clone(),
            source,
        })?;
        out.push_str(&yaml);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# a comment-only document first
---
apiVersion: v1
kind: Service
metadata:
  name: web
  uid: 0b7e7d52-aaaa-bbbb-cccc-000000000001
  annotations:
    external-dns.alpha.kubernetes.io/hostname: web.example.com
    external-dns.alpha.kubernetes.io/ttl: "5m"
spec:
  type: LoadBalancer
  ports: [{port: 80}]
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.10}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
---
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata:
    name: shop
    namespace: store
    annotations: {external-dns.alpha.kubernetes.io/ttl: "soon"}
  spec:
    rules: [{host: shop.example.com}]
  status:
    loadBalancer: {ingress: [{hostname: lb.example.net}]}
"#;

    const HEADLESS: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: store
  annotations: {external-dns.alpha.kubernetes.io/hostname: db.example.com}
spec: {clusterIP: None, selector: {app: db}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-x1, namespace: store, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints:
- addresses: [10.4.0.1]
  targetRef: {kind: Pod, name: db-0, namespace: store}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: store, labels: {app: db}}
spec: {hostname: db-0, containers: [{name: db, image: db}]}
"#;

    fn inputs(files: &[(&str, &str)]) -> Vec<(String, String)> {
        files.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect()
    }

    #[test]
    fn renders_multi_document_yaml() {
        let out = render(&inputs(&[("a.yaml", SAMPLE), ("b.yaml", HEADLESS)]), &SourceArgs::default()).unwrap();
        let want = r#"---
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata:
  labels:
    app.kubernetes.io/managed-by: extdns
  name: web-service
  namespace: default
  ownerReferences:
  - apiVersion: v1
    blockOwnerDeletion: true
    controller: true
    kind: Service
    name: web
    uid: 0b7e7d52-aaaa-bbbb-cccc-000000000001
spec:
  endpoints:
  - dnsName: web.example.com
    targets:
    - 192.0.2.10
    recordType: A
    recordTTL: 300
    labels:
      resource: service/default/web
---
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata:
  labels:
    app.kubernetes.io/managed-by: extdns
  name: db-service
  namespace: store
spec:
  endpoints:
  - dnsName: db-0.db.example.com
    targets:
    - 10.4.0.1
    recordType: A
    labels:
      resource: service/store/db
  - dnsName: db.example.com
    targets:
    - 10.4.0.1
    recordType: A
    labels:
      resource: service/store/db
---
# warning: annotation external-dns.alpha.kubernetes.io/ttl: "soon" is not a valid TTL: invalid duration "soon"; leaving the TTL to the provider
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata:
  labels:
    app.kubernetes.io/managed-by: extdns
  name: shop-ingress
  namespace: store
spec:
  endpoints:
  - dnsName: shop.example.com
    targets:
    - lb.example.net
    recordType: CNAME
    labels:
      resource: ingress/store/shop
"#;
        assert_eq!(out, want);
        // Same input, same bytes.
        assert_eq!(render(&inputs(&[("b.yaml", HEADLESS), ("a.yaml", SAMPLE)]), &SourceArgs::default()).unwrap(), want);
    }

    #[test]
    fn flags_apply() {
        let args = SourceArgs { source: vec![super::super::SourceKind::Ingress], ..Default::default() };
        let out = render(&inputs(&[("a.yaml", SAMPLE)]), &args).unwrap();
        assert!(out.contains("name: shop-ingress") && !out.contains("web-service"));
        let bad = SourceArgs { label_filter: "a in (".into(), ..Default::default() };
        assert!(render(&inputs(&[("a.yaml", SAMPLE)]), &bad).unwrap_err().to_string().starts_with("--label-filter: "));
        assert_eq!(render(&[], &SourceArgs::default()).unwrap(), "");
    }

    #[test]
    fn crd_source_renders_external_dns_dnsendpoints() {
        let doc = r#"
apiVersion: externaldns.k8s.io/v1alpha1
kind: DNSEndpoint
metadata: {name: examplednsrecord, namespace: shop, uid: u-9}
spec:
  endpoints:
  - {dnsName: foo.bar.com, recordTTL: 180, recordType: A, targets: [192.168.99.216]}
---
apiVersion: extdns.io/v1alpha1
kind: DNSEndpoint
metadata: {name: ours}
spec: {endpoints: []}
"#;
        let args = SourceArgs { source: vec![SourceKind::Crd], ..Default::default() };
        let out = render(&inputs(&[("a.yaml", doc)]), &args).unwrap();
        assert!(out.contains("name: examplednsrecord-crd") && out.contains("namespace: shop"), "{out}");
        assert!(
            out.contains("resource: crd/shop/examplednsrecord")
                && out.contains("apiVersion: externaldns.k8s.io/v1alpha1"),
            "{out}"
        );
        assert_eq!(out.matches("kind: DNSEndpoint").count(), 2, "the DNSEndpoint and its owner reference: {out}");
        // Without --source=crd they are not read.
        assert_eq!(render(&inputs(&[("a.yaml", doc)]), &SourceArgs::default()).unwrap(), "");
        let bad = doc.replace("recordTTL: 180", "recordTTL: soon");
        let e = render(&inputs(&[("a.yaml", &bad)]), &args).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "a.yaml: document 1: DNSEndpoint.externaldns.k8s.io shop/examplednsrecord: no valid endpoint"
            ) && e.contains("spec.endpoints[0]"),
            "{e}"
        );
    }

    fn render_err(doc: &str) -> String {
        render(&inputs(&[("samples/svc.yaml", doc)]), &SourceArgs::default()).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_document_and_field() {
        let doc = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: x\n";
        assert_eq!(
            render_err(doc),
            "samples/svc.yaml: document 2 (Service default/web): spec.ports[0].port: invalid type: string \"x\", expected i32 at line 11 column 11"
        );
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: n}\n  spec: {ports: [{port: 1, nodePort: big}]}\n";
        assert_eq!(
            render_err(list),
            "samples/svc.yaml: document 1 (items[0]: Service n/a): spec.ports[0].nodePort: invalid type: string \"big\", expected i32"
        );
        assert_eq!(render_err("a: [1, 2\n"), "samples/svc.yaml: document 1: did not find expected ',' or ']' at line 2 column 1, while parsing a flow sequence at line 1 column 4");
        assert_eq!(
            render_err("kind: Service\nmetadata: {name: x}\n"),
            "samples/svc.yaml: document 1: apiVersion: missing"
        );
        assert_eq!(
            render_err("- a\n- b\n"),
            "samples/svc.yaml: document 1: expected a Kubernetes object (a mapping with apiVersion and kind)"
        );
        assert_eq!(
            render_err("apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n"),
            "samples/svc.yaml: document 1 (Service x/): metadata.name: missing"
        );
        assert_eq!(
            render_err("apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: i}\n"),
            "samples/svc.yaml: document 1 (Ingress default/i): apiVersion extensions/v1beta1 is not read by extdns; use networking.k8s.io/v1"
        );
        assert_eq!(
            render_err("apiVersion: v1\nkind: Node\nmetadata: {name: n}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n}\n"),
            "samples/svc.yaml: document 2 (Node n): duplicates samples/svc.yaml: document 1 (Node n)"
        );
        let tmpl = SourceArgs { fqdn_template: "{{ .Name.X }}".into(), ..Default::default() };
        let e =
            render(&inputs(&[("s.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: w}\n")]), &tmpl).unwrap_err();
        assert_eq!(
            e.to_string(),
            "s.yaml: document 1: Service default/w: --fqdn-template: template: can't evaluate field X in type string"
        );
    }

    #[test]
    fn reads_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), "b").unwrap();
        std::fs::write(dir.path().join("a.yml"), "a").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let single = dir.path().join("notes.txt");
        let got = read_inputs(&[dir.path().to_path_buf(), single.clone()]).unwrap();
        let names: Vec<String> =
            got.iter().map(|(n, _)| n.rsplit('/').next().unwrap_or_default().to_string()).collect();
        assert_eq!(names, vec!["a.yml", "b.yaml", "notes.txt"]);
        assert_eq!(got[0].1, "a");
        let missing = dir.path().join("missing.yaml");
        let e = read_inputs(std::slice::from_ref(&missing)).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{}: ", missing.display())));
    }
}
