//! The source side of extdns: which DNSEndpoint the source controller writes for a Service
//! or an Ingress. Pure functions over the objects and a read-only view of the cluster
//! ([`SourceInputs`]); the controller backs that view with reflector stores, `render` with
//! parsed YAML.
//!
//! Behaviour follows external-dns's `source/service.go`, `source/ingress.go`,
//! `source/annotations` and `source/fqdn`, so that the records, and the `resource` label
//! written into TXT ownership records, are the ones external-dns would produce.

pub mod annotations;
pub mod crd;
pub mod gateway;
mod ingress;
mod node;
mod pod;
pub mod render;
pub mod selector;
mod service;
pub mod template;
mod template_check;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::DynamicObject;

use crate::crd::{DNSEndpoint, DnsEndpointSpec, EndpointSpec};
use crate::dns::endpoint::{self as model, label, RecordType, MAX_TTL};

use self::annotations::{ExternalDnsAnnotations, PROVIDER_ANNOTATION};
use self::gateway::{Gateway, Route, RouteKind};
use self::selector::Selector;
use self::template::{Template, TemplateError};

/// Label on every DNSEndpoint the source controller writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "extdns";
/// Label Kubernetes puts on EndpointSlices to name their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// A DNSEndpoint holds at most this many endpoints (its schema says so).
pub const MAX_ENDPOINTS: usize = 1000;

/// Kinds of objects the source controller turns into DNSEndpoints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    Service,
    Ingress,
    #[value(name = "gateway-httproute")]
    GatewayHttpRoute,
    #[value(name = "gateway-grpcroute")]
    GatewayGrpcRoute,
    #[value(name = "gateway-tlsroute")]
    GatewayTlsRoute,
    #[value(name = "gateway-tcproute")]
    GatewayTcpRoute,
    #[value(name = "gateway-udproute")]
    GatewayUdpRoute,
    Node,
    Pod,
    /// external-dns's own DNSEndpoints (`--crd-source-apiversion`, `--crd-source-kind`).
    Crd,
}

impl SourceKind {
    /// Lower-case kind, as used in DNSEndpoint names and `resource` labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Service => "service",
            SourceKind::Ingress => "ingress",
            SourceKind::GatewayHttpRoute => "httproute",
            SourceKind::GatewayGrpcRoute => "grpcroute",
            SourceKind::GatewayTlsRoute => "tlsroute",
            SourceKind::GatewayTcpRoute => "tcproute",
            SourceKind::GatewayUdpRoute => "udproute",
            SourceKind::Node => "node",
            SourceKind::Pod => "pod",
            SourceKind::Crd => "crd",
        }
    }

    /// The Gateway API route kind this source reads, if it is one.
    pub fn route_kind(self) -> Option<RouteKind> {
        match self {
            SourceKind::GatewayHttpRoute => Some(RouteKind::Http),
            SourceKind::GatewayGrpcRoute => Some(RouteKind::Grpc),
            SourceKind::GatewayTlsRoute => Some(RouteKind::Tls),
            SourceKind::GatewayTcpRoute => Some(RouteKind::Tcp),
            SourceKind::GatewayUdpRoute => Some(RouteKind::Udp),
            SourceKind::Service | SourceKind::Ingress | SourceKind::Node | SourceKind::Pod | SourceKind::Crd => None,
        }
    }

    pub fn for_route(kind: RouteKind) -> SourceKind {
        match kind {
            RouteKind::Http => SourceKind::GatewayHttpRoute,
            RouteKind::Grpc => SourceKind::GatewayGrpcRoute,
            RouteKind::Tls => SourceKind::GatewayTlsRoute,
            RouteKind::Tcp => SourceKind::GatewayTcpRoute,
            RouteKind::Udp => SourceKind::GatewayUdpRoute,
        }
    }
}

/// Flags of the source controller. Names follow external-dns where it has the flag.
#[derive(clap::Args, Clone, Debug)]
pub struct SourceArgs {
    /// Limit the Services and Ingresses read to this namespace (default: all namespaces).
    #[arg(long, env = "EXTDNS_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Only read objects whose labels match this label selector, e.g. "app=web,env in (prod)"
    /// (default: all objects).
    #[arg(long, env = "EXTDNS_LABEL_FILTER", default_value = "")]
    pub label_filter: String,
    /// Only read objects whose annotations match this selector, written with label-selector
    /// syntax, e.g. "external-dns.alpha.kubernetes.io/hostname" (default: all objects).
    #[arg(long, env = "EXTDNS_ANNOTATION_FILTER", default_value = "")]
    pub annotation_filter: String,
    /// Go template for DNS names of objects without a hostname annotation or Ingress host,
    /// e.g. "{{.Name}}.{{.Namespace}}.example.com". The output is split on commas, so one
    /// template can yield several names.
    #[arg(long, env = "EXTDNS_FQDN_TEMPLATE", default_value = "")]
    pub fqdn_template: String,
    /// Add the --fqdn-template names to the annotation and Ingress host names instead of
    /// using the template only when those yield nothing.
    #[arg(long, env = "EXTDNS_COMBINE_FQDN_ANNOTATION")]
    pub combine_fqdn_annotation: bool,
    /// Ignore the hostname (and, on Services, internal-hostname) annotations; use with
    /// --fqdn-template.
    #[arg(long, env = "EXTDNS_IGNORE_HOSTNAME_ANNOTATION")]
    pub ignore_hostname_annotation: bool,
    /// Ignore `spec.tls` of Ingresses when collecting host names.
    #[arg(long, env = "EXTDNS_IGNORE_INGRESS_TLS_SPEC")]
    pub ignore_ingress_tls_spec: bool,
    /// Ignore `spec.rules` of Ingresses when collecting host names.
    #[arg(long, env = "EXTDNS_IGNORE_INGRESS_RULES_SPEC")]
    pub ignore_ingress_rules_spec: bool,
    /// Publish the cluster IP of ClusterIP Services that carry a hostname annotation.
    #[arg(long, env = "EXTDNS_PUBLISH_INTERNAL_SERVICES")]
    pub publish_internal_services: bool,
    /// Publish the host IP of each pod behind a headless Service instead of the pod IP.
    #[arg(long, env = "EXTDNS_PUBLISH_HOST_IP")]
    pub publish_host_ip: bool,
    /// Publish the addresses of not-ready pods behind headless Services, as if every such
    /// Service set `publishNotReadyAddresses`.
    #[arg(long, env = "EXTDNS_ALWAYS_PUBLISH_NOT_READY_ADDRESSES")]
    pub always_publish_not_ready_addresses: bool,
    /// With `endpoints-type: NodeExternalIP` on a headless Service, also publish the nodes'
    /// internal IPv6 addresses.
    #[arg(long, env = "EXTDNS_EXPOSE_INTERNAL_IPV6")]
    pub expose_internal_ipv6: bool,
    /// Leave out nodes marked unschedulable (`spec.unschedulable`) wherever node addresses are
    /// published (node source, NodePort Services), as external-dns does by default;
    /// `--exclude-unschedulable=false` publishes them too.
    #[arg(long, env = "EXTDNS_EXCLUDE_UNSCHEDULABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub exclude_unschedulable: bool,
    /// TTL for records whose object has no valid ttl annotation, in seconds or as a duration
    /// ("300", "5m"). Unset: the provider's default TTL.
    #[arg(long, env = "EXTDNS_DEFAULT_TTL", value_parser = parse_default_ttl)]
    pub default_ttl: Option<i64>,
    /// Only read Ingresses of this class (spec.ingressClassName, or the
    /// kubernetes.io/ingress.class annotation when that is unset). Repeat or separate with
    /// commas for several classes (default: every class).
    #[arg(long, env = "EXTDNS_INGRESS_CLASS", value_delimiter = ',')]
    pub ingress_class: Vec<String>,
    /// Only read Services of these types: ClusterIP, NodePort, LoadBalancer, ExternalName.
    /// Repeat or separate with commas (default: every type).
    #[arg(long, env = "EXTDNS_SERVICE_TYPE_FILTER", value_delimiter = ',')]
    pub service_type_filter: Vec<String>,
    /// Only use Gateways of this name as parents of routes (gateway-* sources; default: any).
    #[arg(long, env = "EXTDNS_GATEWAY_NAME", default_value = "")]
    pub gateway_name: String,
    /// Only use Gateways in this namespace as parents of routes (gateway-* sources; default:
    /// all namespaces).
    #[arg(long, env = "EXTDNS_GATEWAY_NAMESPACE", default_value = "")]
    pub gateway_namespace: String,
    /// Only use Gateways whose labels match this label selector as parents of routes
    /// (gateway-* sources; default: any).
    #[arg(long, env = "EXTDNS_GATEWAY_LABEL_FILTER", default_value = "")]
    pub gateway_label_filter: String,
    /// Pod source: only publish pods with `spec.hostNetwork: true`, as external-dns does by
    /// default; `--ignore-non-host-network-pods=false` publishes every pod.
    #[arg(long, env = "EXTDNS_IGNORE_NON_HOST_NETWORK_PODS", default_value_t = true, action = clap::ArgAction::Set)]
    pub ignore_non_host_network_pods: bool,
    /// Pod source: also publish `<pod name>.<this domain>` for every pod read (hostNetwork
    /// pods only, unless `--ignore-non-host-network-pods=false`), pointing at the pod IP or
    /// the `target` annotation, e.g. "pods.example.com" (default: none).
    #[arg(long, env = "EXTDNS_POD_SOURCE_DOMAIN", default_value = "")]
    pub pod_source_domain: String,
    /// Kinds of objects to publish records for. Repeat or separate with commas. An empty
    /// list (as in `SourceArgs::default()`) means both.
    #[arg(long, env = "EXTDNS_SOURCE", value_enum, value_delimiter = ',', default_values_t = [SourceKind::Service, SourceKind::Ingress])]
    pub source: Vec<SourceKind>,
    /// crd source: the API version of the DNSEndpoint-shaped objects to read.
    #[arg(long, env = "EXTDNS_CRD_SOURCE_APIVERSION", default_value = crd::DEFAULT_API_VERSION)]
    pub crd_source_apiversion: String,
    /// crd source: the kind of the DNSEndpoint-shaped objects to read.
    #[arg(long, env = "EXTDNS_CRD_SOURCE_KIND", default_value = crd::DEFAULT_KIND)]
    pub crd_source_kind: String,
}

/// The CLI defaults, so that code and tests building `SourceArgs` by hand get what an
/// operator started without flags gets (`exclude_unschedulable` is the one default that is
/// not the type's zero value).
impl Default for SourceArgs {
    fn default() -> Self {
        SourceArgs {
            namespace: String::new(),
            label_filter: String::new(),
            annotation_filter: String::new(),
            fqdn_template: String::new(),
            combine_fqdn_annotation: false,
            ignore_hostname_annotation: false,
            ignore_ingress_tls_spec: false,
            ignore_ingress_rules_spec: false,
            publish_internal_services: false,
            publish_host_ip: false,
            always_publish_not_ready_addresses: false,
            expose_internal_ipv6: false,
            exclude_unschedulable: true,
            default_ttl: None,
            ingress_class: Vec::new(),
            service_type_filter: Vec::new(),
            gateway_name: String::new(),
            gateway_namespace: String::new(),
            gateway_label_filter: String::new(),
            ignore_non_host_network_pods: true,
            pod_source_domain: String::new(),
            source: Vec::new(),
            crd_source_apiversion: crd::DEFAULT_API_VERSION.into(),
            crd_source_kind: crd::DEFAULT_KIND.into(),
        }
    }
}

fn parse_default_ttl(s: &str) -> Result<i64, String> {
    let secs = annotations::parse_ttl(s)?;
    if secs < 1 || secs as u64 > MAX_TTL {
        return Err(format!("TTL {secs} is out of range 1..{MAX_TTL}"));
    }
    Ok(secs)
}

/// `--operator-namespace`'s default: where Node DNSEndpoints go unless told otherwise.
pub const DEFAULT_NODE_NAMESPACE: &str = "extdns";

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

/// [`SourceArgs`] checked and compiled once: selectors parsed, template parsed.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub args: SourceArgs,
    /// What the crd source reads (`--crd-source-apiversion`, `--crd-source-kind`); `None`
    /// only when those flags are invalid and the crd source is off.
    pub crd_resource: Option<crd::CrdResource>,
    label_filter: Selector,
    annotation_filter: Selector,
    gateway_label_filter: Selector,
    fqdn_template: Option<Template>,
    sources: BTreeSet<SourceKind>,
    service_types: BTreeSet<String>,
    /// Where the DNSEndpoints of (cluster-scoped) Nodes are written: the operator's namespace.
    pub node_namespace: String,
}

impl SourceConfig {
    pub fn new(args: &SourceArgs) -> Result<SourceConfig, SourceError> {
        let flag = |flag: &'static str| move |e: String| SourceError::InvalidFlag { flag, message: e };
        let label_filter = Selector::parse(&args.label_filter).map_err(|e| flag("label-filter")(e.message))?;
        let annotation_filter =
            Selector::parse(&args.annotation_filter).map_err(|e| flag("annotation-filter")(e.message))?;
        let gateway_label_filter =
            Selector::parse(&args.gateway_label_filter).map_err(|e| flag("gateway-label-filter")(e.message))?;
        let fqdn_template = if args.fqdn_template.trim().is_empty() {
            None
        } else {
            Some(Template::parse(&args.fqdn_template).map_err(|e| flag("fqdn-template")(e.0))?)
        };
        if !args.ingress_class.is_empty() && annotation_filter.mentions(annotations::INGRESS_CLASS_ANNOTATION) {
            return Err(flag("ingress-class")(format!(
                "cannot be combined with an --annotation-filter on {}",
                annotations::INGRESS_CLASS_ANNOTATION
            )));
        }
        let mut service_types = BTreeSet::new();
        // external-dns disables the filter when any entry is empty.
        if !args.service_type_filter.iter().any(|t| t.is_empty()) {
            for t in &args.service_type_filter {
                if !SERVICE_TYPES.contains(&t.as_str()) {
                    return Err(flag("service-type-filter")(format!(
                        "unsupported service type {t:?}, expected one of {}",
                        SERVICE_TYPES.join(", ")
                    )));
                }
                service_types.insert(t.clone());
            }
        }
        let mut sources: BTreeSet<SourceKind> = args.source.iter().copied().collect();
        if sources.is_empty() {
            sources = [SourceKind::Service, SourceKind::Ingress].into();
        }
        // external-dns refuses both at start-up: without a template nothing would be
        // published, and a misspelt field yields no names for every object.
        if args.ignore_hostname_annotation && fqdn_template.is_none() {
            return Err(flag("ignore-hostname-annotation")(
                "requires --fqdn-template: without it no object yields a name".into(),
            ));
        }
        // The crd source takes its names from the objects, never from the template.
        let templated: Vec<SourceKind> = sources.iter().copied().filter(|k| *k != SourceKind::Crd).collect();
        if let (Some(t), false) = (&fqdn_template, templated.is_empty()) {
            if let Some(e) = template_check::unknown_field(t, &templated) {
                return Err(flag("fqdn-template")(e));
            }
        }
        let crd_resource = crd::CrdResource::parse(&args.crd_source_apiversion, &args.crd_source_kind);
        let crd_resource = match (crd_resource, sources.contains(&SourceKind::Crd)) {
            (Ok(r), _) => Some(r),
            (Err(e), true) => return Err(flag(e.flag)(e.message)),
            (Err(_), false) => None,
        };
        Ok(SourceConfig {
            args: args.clone(),
            crd_resource,
            label_filter,
            annotation_filter,
            gateway_label_filter,
            fqdn_template,
            sources,
            service_types,
            node_namespace: DEFAULT_NODE_NAMESPACE.to_string(),
        })
    }

    /// True when objects of this kind are published (`--source`).
    pub fn enabled(&self, kind: SourceKind) -> bool {
        self.sources.contains(&kind)
    }

    /// `--namespace`, or `None` for all namespaces.
    pub fn namespace(&self) -> Option<&str> {
        Some(self.args.namespace.as_str()).filter(|n| !n.is_empty())
    }
}

/// A Service or an Ingress to compute records for.
#[derive(Clone, Copy, Debug)]
pub enum SourceObject<'a> {
    Service(&'a Service),
    Ingress(&'a Ingress),
    Route(RouteKind, &'a Route),
    Node(&'a Node),
    Pod(&'a Pod),
    /// An object of `--crd-source-kind` (external-dns's DNSEndpoint).
    Crd(&'a DynamicObject),
}

impl SourceObject<'_> {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceObject::Service(_) => SourceKind::Service,
            SourceObject::Ingress(_) => SourceKind::Ingress,
            SourceObject::Route(k, _) => SourceKind::for_route(*k),
            SourceObject::Node(_) => SourceKind::Node,
            SourceObject::Pod(_) => SourceKind::Pod,
            SourceObject::Crd(_) => SourceKind::Crd,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            SourceObject::Service(s) => &s.metadata,
            SourceObject::Ingress(i) => &i.metadata,
            SourceObject::Route(_, r) => &r.metadata,
            SourceObject::Node(n) => &n.metadata,
            SourceObject::Pod(p) => &p.metadata,
            SourceObject::Crd(o) => &o.metadata,
        }
    }

    fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default")
    }

    fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// "Service default/web", for messages.
    pub fn describe(&self) -> String {
        let kind = match self {
            SourceObject::Service(_) => "Service",
            SourceObject::Ingress(_) => "Ingress",
            SourceObject::Route(k, _) => k.kind(),
            SourceObject::Node(_) => return format!("Node {}", self.name()),
            SourceObject::Pod(_) => "Pod",
            SourceObject::Crd(o) => return format!("{} {}/{}", crd::kind_of(o), self.namespace(), self.name()),
        };
        format!("{kind} {}/{}", self.namespace(), self.name())
    }

    /// The owner reference target, or `None` when the object has no uid (not from a cluster).
    pub fn owner_info(&self) -> Option<OwnerInfo> {
        let uid = self.metadata().uid.clone().filter(|u| !u.is_empty())?;
        let (api_version, kind) = match self {
            SourceObject::Service(_) => ("v1".to_string(), "Service"),
            SourceObject::Ingress(_) => ("networking.k8s.io/v1".to_string(), "Ingress"),
            SourceObject::Route(k, r) => (
                r.types
                    .as_ref()
                    .map(|t| t.api_version.clone())
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| format!("{}/{}", gateway::GATEWAY_GROUP, k.versions()[0])),
                k.kind(),
            ),
            SourceObject::Node(_) => ("v1".to_string(), "Node"),
            SourceObject::Pod(_) => ("v1".to_string(), "Pod"),
            SourceObject::Crd(o) => {
                let t = o.types.as_ref()?;
                return Some(OwnerInfo {
                    api_version: t.api_version.clone(),
                    kind: t.kind.clone(),
                    name: self.name().into(),
                    uid,
                });
            }
        };
        Some(OwnerInfo { api_version, kind: kind.into(), name: self.name().into(), uid })
    }

    fn to_json(self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            SourceObject::Service(s) => serde_json::to_value(s),
            SourceObject::Ingress(i) => serde_json::to_value(i),
            SourceObject::Route(_, r) => serde_json::to_value(r),
            SourceObject::Node(n) => serde_json::to_value(n),
            SourceObject::Pod(p) => serde_json::to_value(p),
            SourceObject::Crd(o) => serde_json::to_value(o),
        }
    }
}

/// Read-only view of the cluster objects a Service's records depend on.
pub trait SourceInputs {
    fn nodes(&self) -> Vec<Arc<Node>>;
    /// EndpointSlices labelled `kubernetes.io/service-name: <service_name>` in `namespace`.
    fn endpoint_slices(&self, namespace: &str, service_name: &str) -> Vec<Arc<EndpointSlice>>;
    fn pods(&self, namespace: &str) -> Vec<Arc<Pod>>;
    /// The Node `name`, for pods' hostname annotation.
    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes().into_iter().find(|n| n.metadata.name.as_deref() == Some(name))
    }
    /// The Gateway `namespace/name`, for routes.
    fn gateway(&self, _namespace: &str, _name: &str) -> Option<Arc<Gateway>> {
        None
    }
    /// Labels of the namespace `name`, for Gateway listeners that admit routes by namespace
    /// selector; `None` when the namespace is not known.
    fn namespace_labels(&self, _name: &str) -> Option<BTreeMap<String, String>> {
        None
    }
}

/// Inputs held as plain lists: what `render` reads from files, and what tests build.
#[derive(Default, Debug)]
pub struct StaticInputs {
    pub nodes: Vec<Arc<Node>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    pub pods: Vec<Arc<Pod>>,
    pub gateways: Vec<Arc<Gateway>>,
    /// Namespace name → labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl SourceInputs for StaticInputs {
    fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.clone()
    }

    fn endpoint_slices(&self, namespace: &str, service_name: &str) -> Vec<Arc<EndpointSlice>> {
        self.slices
            .iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(namespace)
                    && s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).map(String::as_str)
                        == Some(service_name)
            })
            .cloned()
            .collect()
    }

    fn pods(&self, namespace: &str) -> Vec<Arc<Pod>> {
        self.pods.iter().filter(|p| p.metadata.namespace.as_deref() == Some(namespace)).cloned().collect()
    }

    fn gateway(&self, namespace: &str, name: &str) -> Option<Arc<Gateway>> {
        self.gateways
            .iter()
            .find(|g| {
                g.metadata.namespace.as_deref().unwrap_or("default") == namespace
                    && g.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    }

    fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces.get(name).cloned()
    }
}

/// The object a DNSEndpoint is owned by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerInfo {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// What the source controller wants to exist for one object.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    /// DNSEndpoint name: `<object name>-<kind>`, shortened with a hash when too long.
    pub name: String,
    pub namespace: String,
    pub spec: DnsEndpointSpec,
    /// Problems the user should see as Events on the source object (bad ttl annotation,
    /// invalid host names, pods that could not be found, ...).
    pub warnings: Vec<String>,
}

/// Why no DNSEndpoint could be computed. Every variant is permanent: retrying without a change
/// to the flags or the object gives the same result.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--{flag}: {message}")]
    InvalidFlag { flag: &'static str, message: String },
    #[error("{object}: annotation {annotation}: {message}")]
    InvalidAnnotation { object: String, annotation: String, message: String },
    #[error("{object}: --fqdn-template: {source}")]
    Template {
        object: String,
        #[source]
        source: TemplateError,
    },
    #[error("{object}: {message}")]
    InvalidObject { object: String, message: String },
    /// external-dns fails its whole pass here; extdns leaves this node's records as they are
    /// and says so on the Node.
    #[error("Node {node}: no ExternalIP or InternalIP address in status.addresses and no target annotation; its records are left as they are")]
    NodeWithoutAddress { node: String },
}

impl SourceError {
    /// The Event reason on the source object.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::InvalidFlag { .. } => "InvalidFlag",
            SourceError::InvalidAnnotation { .. } => "InvalidAnnotation",
            SourceError::Template { .. } => "InvalidTemplate",
            SourceError::InvalidObject { .. } => "InvalidObject",
            SourceError::NodeWithoutAddress { .. } => "NodeWithoutAddress",
        }
    }
}

/// Records of one object before metadata is attached: (name, type) → targets.
#[derive(Debug, Default)]
struct Records {
    by_key: BTreeMap<(String, RecordType), BTreeSet<String>>,
    warnings: Vec<String>,
}

impl Records {
    fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn add(&mut self, name: &str, rtype: RecordType, target: &str) {
        let (name, target) = (model::normalize_name(name), target.trim());
        if name.is_empty() || target.is_empty() {
            return;
        }
        self.by_key.entry((name, rtype)).or_default().insert(target.to_string());
    }

    /// external-dns's `EndpointsForHostname`: targets split into A, AAAA and CNAME by shape.
    fn add_for_hostname(&mut self, hostname: &str, targets: &[String]) {
        for t in targets {
            self.add(hostname, suitable_type(t), t);
        }
    }

    fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }

    fn merge(&mut self, other: Records) {
        for (k, v) in other.by_key {
            self.by_key.entry(k).or_default().extend(v);
        }
        for w in other.warnings {
            self.warn(w);
        }
    }
}

fn json_of(obj: SourceObject<'_>) -> Result<serde_json::Value, SourceError> {
    obj.to_json().map_err(|e| SourceError::InvalidObject { object: obj.describe(), message: e.to_string() })
}

/// external-dns's `suitableType`: A for IPv4, AAAA for IPv6 (IPv4-mapped included), CNAME
/// for anything else.
pub fn suitable_type(target: &str) -> RecordType {
    match target.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => RecordType::A,
        Ok(IpAddr::V6(_)) => RecordType::AAAA,
        Err(_) => RecordType::CNAME,
    }
}

/// True when `obj` is one this instance publishes: its kind is enabled and it passes
/// `--namespace`, `--label-filter`, `--annotation-filter` and (except for the crd source,
/// which external-dns does not check it on) the controller annotation.
pub fn selected(obj: SourceObject<'_>, cfg: &SourceConfig) -> bool {
    let meta = obj.metadata();
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let all_annotations = meta.annotations.as_ref().unwrap_or(&empty);
    let cluster_scoped = matches!(obj, SourceObject::Node(_));
    cfg.enabled(obj.kind())
        && (cluster_scoped || cfg.namespace().is_none_or(|ns| ns == obj.namespace()))
        && cfg.label_filter.matches(labels)
        && cfg.annotation_filter.matches(all_annotations)
        && (matches!(obj, SourceObject::Crd(_)) || !ExternalDnsAnnotations::new(all_annotations).controlled_elsewhere())
}

/// The DNSEndpoint the source controller wants for `obj`, or `None` when the object is
/// filtered out, handed to another controller, or yields no records.
pub fn desired_dnsendpoint(
    obj: SourceObject<'_>,
    inputs: &dyn SourceInputs,
    cfg: &SourceConfig,
) -> Result<Option<DesiredObject>, SourceError> {
    let meta = obj.metadata();
    if meta.name.as_deref().unwrap_or_default().is_empty() {
        return Err(SourceError::InvalidObject { object: obj.describe(), message: "metadata.name is empty".into() });
    }
    if !selected(obj, cfg) {
        return Ok(None);
    }
    let empty = BTreeMap::new();
    let all_annotations = meta.annotations.as_ref().unwrap_or(&empty);
    let provider_ref = match all_annotations.get(PROVIDER_ANNOTATION) {
        None => None,
        Some(raw) => Some(annotations::parse_provider_ref(raw).map_err(|message| SourceError::InvalidAnnotation {
            object: obj.describe(),
            annotation: PROVIDER_ANNOTATION.into(),
            message,
        })?),
    };
    if let SourceObject::Crd(o) = obj {
        return crd::desired(o, &obj.describe(), provider_ref);
    }
    let ann = ExternalDnsAnnotations::new(all_annotations);
    let cluster_scoped = matches!(obj, SourceObject::Node(_));
    let mut records = match obj {
        SourceObject::Service(svc) => {
            if !cfg.service_types.is_empty() && !cfg.service_types.contains(service::service_type(svc)) {
                return Ok(None);
            }
            service::annotation_records(svc, inputs, cfg, &ann)
        }
        SourceObject::Ingress(ing) => {
            if !ingress::class_matches(ing, &cfg.args.ingress_class) {
                return Ok(None);
            }
            ingress::defined_records(ing, cfg, &ann)
        }
        // Routes apply --fqdn-template themselves: its names are narrowed by the listeners.
        SourceObject::Route(kind, route) => gateway::route_records(route, kind, inputs, cfg, &ann)?,
        // Nodes and pods apply --fqdn-template themselves: it replaces the node name, and
        // points at pod IPs.
        SourceObject::Node(n) => node::node_records(n, cfg, &ann, || json_of(obj))?,
        SourceObject::Pod(p) => pod::pod_records(p, inputs, cfg, &ann, || json_of(obj))?,
        SourceObject::Crd(_) => Records::default(),
    };
    let own_template = matches!(obj, SourceObject::Route(..) | SourceObject::Node(_) | SourceObject::Pod(_));
    if let (Some(tmpl), false) = (&cfg.fqdn_template, own_template) {
        if cfg.args.combine_fqdn_annotation || records.is_empty() {
            let json = obj
                .to_json()
                .map_err(|e| SourceError::InvalidObject { object: obj.describe(), message: e.to_string() })?;
            let hostnames =
                tmpl.hostnames(&json).map_err(|source| SourceError::Template { object: obj.describe(), source })?;
            let templated = match obj {
                SourceObject::Service(svc) => service::records_for_hostnames(svc, inputs, cfg, &ann, &hostnames),
                SourceObject::Ingress(ing) => ingress::records_for_hostnames(ing, &ann, &hostnames),
                SourceObject::Route(..) | SourceObject::Node(_) | SourceObject::Pod(_) | SourceObject::Crd(_) => {
                    Records::default()
                }
            };
            records.merge(templated);
        }
    }

    let mut warnings = std::mem::take(&mut records.warnings);
    let ttl = match ann.ttl() {
        Ok(Some(t)) => Some(t),
        Ok(None) => cfg.args.default_ttl,
        Err(w) => {
            warnings.push(match cfg.args.default_ttl {
                Some(d) => format!("{w}; using the default TTL of {d}s"),
                None => format!("{w}; leaving the TTL to the provider"),
            });
            cfg.args.default_ttl
        }
    };
    let set_identifier = ann.set_identifier();
    let provider_specific = Some(ann.provider_specific()).filter(|p| !p.is_empty());
    let resource = if cluster_scoped {
        format!("{}/{}", obj.kind().as_str(), obj.name())
    } else {
        format!("{}/{}/{}", obj.kind().as_str(), obj.namespace(), obj.name())
    };

    let mut endpoints = Vec::new();
    for ((name, rtype), targets) in records.by_key {
        if let Err(e) = model::validate_name("dnsName", &name) {
            warnings.push(format!("skipping {name:?} ({rtype}): {}", e.message));
            continue;
        }
        let mut valid = Vec::new();
        for t in targets {
            match model::validate_target("target", rtype, &t) {
                Ok(()) => valid.push(t),
                Err(e) => warnings.push(format!("skipping target {t:?} of {name} ({rtype}): {}", e.message)),
            }
        }
        if valid.is_empty() {
            continue;
        }
        let normalized = model::Endpoint::new(name.clone(), rtype, valid);
        endpoints.push(EndpointSpec {
            dns_name: normalized.dns_name,
            targets: normalized.targets,
            record_type: rtype,
            record_ttl: ttl,
            set_identifier: set_identifier.clone(),
            labels: Some([(label::RESOURCE.to_string(), resource.clone())].into()),
            provider_specific: provider_specific.clone(),
        });
    }
    drop_cnames_beside_addresses(&mut endpoints, &mut warnings);
    if endpoints.is_empty() {
        return Ok(None);
    }
    endpoints.sort_by(|a, b| {
        (&a.dns_name, a.record_type.as_str(), &a.set_identifier).cmp(&(
            &b.dns_name,
            b.record_type.as_str(),
            &b.set_identifier,
        ))
    });
    // Publish what fits rather than nothing; the cut follows the sort, so the same records
    // are kept on every pass.
    if endpoints.len() > MAX_ENDPOINTS {
        let dropped: Vec<String> =
            endpoints.drain(MAX_ENDPOINTS..).map(|e| format!("{} {}", e.dns_name, e.record_type)).collect();
        warnings.push(format!(
            "{TOO_MANY_PREFIX}{} records; a DNSEndpoint holds at most {MAX_ENDPOINTS}: publishing the first {MAX_ENDPOINTS} in name order and skipping {} (from {} to {})",
            MAX_ENDPOINTS + dropped.len(),
            dropped.len(),
            dropped[0],
            dropped[dropped.len() - 1],
        ));
    }
    Ok(Some(DesiredObject {
        name: dnsendpoint_name(obj.name(), obj.kind()),
        namespace: if cluster_scoped { cfg.node_namespace.clone() } else { obj.namespace().to_string() },
        spec: DnsEndpointSpec { endpoints, provider_ref },
        warnings,
    }))
}

/// Start of the warning for an object that yields more records than a DNSEndpoint holds.
const TOO_MANY_PREFIX: &str = "yields ";
/// Start of the warning for a CNAME left out beside addresses.
const CNAME_SKIPPED_PREFIX: &str = "skipping CNAME ";

/// The Event reason for one of [`DesiredObject::warnings`].
pub fn warning_reason(warning: &str) -> &'static str {
    if warning.starts_with(TOO_MANY_PREFIX) {
        "TooManyRecords"
    } else if warning.starts_with(CNAME_SKIPPED_PREFIX) {
        "CNAMESkipped"
    } else if warning.starts_with(crd::SKIPPED_PREFIX) {
        "InvalidEndpoint"
    } else {
        "InvalidAnnotation"
    }
}

/// A CNAME cannot share its name with other records: where an object yields addresses and
/// host names for one name (a load balancer reporting both, a target annotation mixing
/// them), publish the addresses only, as external-dns's planner does.
fn drop_cnames_beside_addresses(endpoints: &mut Vec<EndpointSpec>, warnings: &mut Vec<String>) {
    let with_addresses: BTreeSet<String> = endpoints
        .iter()
        .filter(|e| matches!(e.record_type, RecordType::A | RecordType::AAAA))
        .map(|e| e.dns_name.clone())
        .collect();
    endpoints.retain(|e| {
        let drop = e.record_type == RecordType::CNAME && with_addresses.contains(&e.dns_name);
        if drop {
            warnings.push(format!(
                "{CNAME_SKIPPED_PREFIX}{} -> {}: a CNAME cannot share its name with the A/AAAA records there; publishing the addresses only",
                e.dns_name,
                e.targets.join(",")
            ));
        }
        !drop
    });
}

/// `<object name>-<kind>`; names that would exceed 253 characters are cut and given a hash
/// of the full name, so distinct objects keep distinct DNSEndpoints.
pub fn dnsendpoint_name(object_name: &str, kind: SourceKind) -> String {
    const MAX: usize = 253;
    let suffix = format!("-{}", kind.as_str());
    if object_name.len() + suffix.len() <= MAX {
        return format!("{object_name}{suffix}");
    }
    let hash = format!("{:016x}", fnv1a64(object_name.as_bytes()));
    let keep = MAX - suffix.len() - 1 - hash.len();
    // Object names are ASCII, but never slice inside a character whatever comes in.
    let mut cut = keep.min(object_name.len());
    while !object_name.is_char_boundary(cut) {
        cut -= 1;
    }
    // A DNS subdomain name must not have '-' or '.' next to the '-' we append.
    let head = object_name[..cut].trim_end_matches(['-', '.']);
    format!("{head}-{hash}{suffix}")
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The complete DNSEndpoint for `desired`, owned by the source object.
pub fn dnsendpoint_object(desired: &DesiredObject, owner: &OwnerInfo) -> DNSEndpoint {
    build_dnsendpoint(desired, Some(owner))
}

fn build_dnsendpoint(desired: &DesiredObject, owner: Option<&OwnerInfo>) -> DNSEndpoint {
    let mut obj = DNSEndpoint::new(&desired.name, desired.spec.clone());
    obj.metadata.namespace = Some(desired.namespace.clone());
    obj.metadata.labels = Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into());
    obj.metadata.owner_references = owner.map(|o| {
        vec![OwnerReference {
            api_version: o.api_version.clone(),
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    obj
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// In-memory [`SourceInputs`].
    pub use super::StaticInputs as Fixture;

    pub fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_yaml::from_str(s).unwrap_or_else(|e| panic!("bad fixture: {e}\n{s}"))
    }

    pub fn cfg(f: impl FnOnce(&mut SourceArgs)) -> SourceConfig {
        let mut a = SourceArgs::default();
        f(&mut a);
        SourceConfig::new(&a).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Compact view of the endpoints: "name TYPE target,target".
    pub fn summary(d: &DesiredObject) -> Vec<String> {
        d.spec.endpoints.iter().map(|e| format!("{} {} {}", e.dns_name, e.record_type, e.targets.join(","))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        source: SourceArgs,
    }

    fn lb_service(annotations: &str) -> Service {
        yaml(&format!(
            r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  uid: 1234-5678
  labels: {{app: web, env: prod}}
  annotations: {annotations}
spec:
  type: LoadBalancer
  clusterIP: 10.0.0.7
status:
  loadBalancer:
    ingress: [{{ip: 192.0.2.10}}]
"#
        ))
    }

    fn desired(svc: &Service, c: &SourceConfig) -> Option<DesiredObject> {
        desired_dnsendpoint(SourceObject::Service(svc), &Fixture::default(), c).unwrap()
    }

    #[test]
    fn parses_flags() {
        let cli = Cli::try_parse_from([
            "x",
            "--namespace=shop",
            "--label-filter=app=web",
            "--fqdn-template={{.Name}}.example.com",
            "--combine-fqdn-annotation",
            "--default-ttl=5m",
            "--ingress-class=nginx",
            "--ingress-class=traefik,haproxy",
            "--source=ingress",
        ])
        .unwrap();
        let a = cli.source;
        assert_eq!(a.namespace, "shop");
        assert_eq!(a.default_ttl, Some(300));
        assert_eq!(a.ingress_class, vec!["nginx", "traefik", "haproxy"]);
        assert_eq!(a.source, vec![SourceKind::Ingress]);
        assert!(a.combine_fqdn_annotation && !a.publish_internal_services);
        let defaults = Cli::try_parse_from(["x"]).unwrap().source;
        assert_eq!(defaults.source, vec![SourceKind::Service, SourceKind::Ingress]);
        // `Default` is the CLI's defaults (an empty `source` list means every kind).
        let by_hand = SourceArgs { source: defaults.source.clone(), ..SourceArgs::default() };
        assert_eq!(format!("{by_hand:?}"), format!("{defaults:?}"));
        assert!(defaults.exclude_unschedulable);
        assert_eq!(defaults.default_ttl, None);
        assert!(Cli::try_parse_from(["x", "--default-ttl=0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--source=nope"]).is_err());
        let kinds = Cli::try_parse_from(["x", "--source=gateway-httproute,gateway-udproute,node,pod"]).unwrap().source;
        assert_eq!(
            kinds.source,
            vec![SourceKind::GatewayHttpRoute, SourceKind::GatewayUdpRoute, SourceKind::Node, SourceKind::Pod]
        );
        let gw =
            Cli::try_parse_from(["x", "--gateway-name=gw", "--gateway-namespace=infra", "--gateway-label-filter=a=b"])
                .unwrap()
                .source;
        assert_eq!((gw.gateway_name.as_str(), gw.gateway_namespace.as_str()), ("gw", "infra"));
        assert!(defaults.ignore_non_host_network_pods);
        assert!(SourceConfig::new(&SourceArgs { gateway_label_filter: "a in (".into(), ..Default::default() })
            .unwrap_err()
            .to_string()
            .starts_with("--gateway-label-filter: "));
    }

    #[test]
    fn config_rejects_bad_flags() {
        let bad = |f: fn(&mut SourceArgs)| {
            let mut a = SourceArgs::default();
            f(&mut a);
            SourceConfig::new(&a).unwrap_err().to_string()
        };
        assert!(bad(|a| a.label_filter = "app in (".into()).starts_with("--label-filter: "));
        assert!(bad(|a| a.annotation_filter = "=x".into()).starts_with("--annotation-filter: "));
        assert!(bad(|a| a.fqdn_template = "{{ .Name ".into()).starts_with("--fqdn-template: "));
        assert!(bad(|a| a.service_type_filter = vec!["Headless".into()]).contains("unsupported service type"));
        assert!(bad(|a| {
            a.ingress_class = vec!["nginx".into()];
            a.annotation_filter = "kubernetes.io/ingress.class=nginx".into();
        })
        .starts_with("--ingress-class: "));
        assert_eq!(
            bad(|a| a.ignore_hostname_annotation = true),
            "--ignore-hostname-annotation: requires --fqdn-template: without it no object yields a name"
        );
        assert_eq!(
            bad(|a| a.fqdn_template = "{{.Name}}.{{.Spec.Hostname}}.example.com".into()),
            "--fqdn-template: .Spec.Hostname is not a field of Service or Ingress"
        );
        assert!(SourceConfig::new(&SourceArgs::default()).unwrap().enabled(SourceKind::Ingress));
    }

    #[test]
    fn builds_endpoints_with_metadata() {
        let svc = lb_service(
            r#"{external-dns.alpha.kubernetes.io/hostname: "Web.Example.com., api.example.com",
                external-dns.alpha.kubernetes.io/ttl: "1m",
                external-dns.alpha.kubernetes.io/set-identifier: eu,
                external-dns.alpha.kubernetes.io/aws-weight: "10",
                extdns.io/provider: ClusterDNSProvider/route53}"#,
        );
        let d = desired(&svc, &cfg(|_| {})).unwrap();
        assert_eq!(d.name, "web-service");
        assert_eq!(d.namespace, "shop");
        assert!(d.warnings.is_empty());
        assert_eq!(summary(&d), vec!["api.example.com A 192.0.2.10", "web.example.com A 192.0.2.10"]);
        let ep = &d.spec.endpoints[0];
        assert_eq!(ep.record_ttl, Some(60));
        assert_eq!(ep.set_identifier.as_deref(), Some("eu"));
        assert_eq!(ep.labels.as_ref().unwrap().get("resource").map(String::as_str), Some("service/shop/web"));
        let ps = ep.provider_specific.as_ref().unwrap();
        assert_eq!((ps[0].name.as_str(), ps[0].value.as_str()), ("aws/weight", "10"));
        let pr = d.spec.provider_ref.as_ref().unwrap();
        assert_eq!((pr.kind, pr.name.as_str()), (crate::crd::ProviderRefKind::ClusterDNSProvider, "route53"));
    }

    #[test]
    fn ttl_defaults_and_warnings() {
        let svc = lb_service(
            r#"{external-dns.kubernetes.io/hostname: web.example.com, external-dns.kubernetes.io/ttl: "later"}"#,
        );
        let d = desired(&svc, &cfg(|_| {})).unwrap();
        assert_eq!(d.spec.endpoints[0].record_ttl, None);
        assert_eq!(d.warnings.len(), 1);
        assert!(
            d.warnings[0].contains("\"later\" is not a valid TTL")
                && d.warnings[0].ends_with("leaving the TTL to the provider")
        );
        let d = desired(&svc, &cfg(|a| a.default_ttl = Some(300))).unwrap();
        assert_eq!(d.spec.endpoints[0].record_ttl, Some(300));
        assert!(d.warnings[0].ends_with("using the default TTL of 300s"));
        let plain = lb_service(r#"{external-dns.kubernetes.io/hostname: web.example.com}"#);
        assert_eq!(
            desired(&plain, &cfg(|a| a.default_ttl = Some(120))).unwrap().spec.endpoints[0].record_ttl,
            Some(120)
        );
    }

    #[test]
    fn controller_annotation_hands_object_away() {
        let svc = lb_service(
            r#"{external-dns.alpha.kubernetes.io/hostname: web.example.com, external-dns.alpha.kubernetes.io/controller: other}"#,
        );
        assert!(desired(&svc, &cfg(|_| {})).is_none());
        let ours = lb_service(
            r#"{external-dns.alpha.kubernetes.io/hostname: web.example.com, external-dns.alpha.kubernetes.io/controller: dns-controller}"#,
        );
        assert!(desired(&ours, &cfg(|_| {})).is_some());
    }

    #[test]
    fn filters() {
        let svc = lb_service(r#"{external-dns.alpha.kubernetes.io/hostname: web.example.com, team: blue}"#);
        assert!(desired(&svc, &cfg(|a| a.label_filter = "env in (prod,staging)".into())).is_some());
        assert!(desired(&svc, &cfg(|a| a.label_filter = "env=dev".into())).is_none());
        assert!(desired(&svc, &cfg(|a| a.label_filter = "!env".into())).is_none());
        assert!(desired(&svc, &cfg(|a| a.annotation_filter = "team=blue".into())).is_some());
        assert!(desired(&svc, &cfg(|a| a.annotation_filter = "team notin (blue)".into())).is_none());
        assert!(desired(&svc, &cfg(|a| a.namespace = "shop".into())).is_some());
        assert!(desired(&svc, &cfg(|a| a.namespace = "other".into())).is_none());
        assert!(desired(&svc, &cfg(|a| a.source = vec![SourceKind::Ingress])).is_none());
        assert!(desired(&svc, &cfg(|a| a.service_type_filter = vec!["LoadBalancer".into()])).is_some());
        assert!(desired(&svc, &cfg(|a| a.service_type_filter = vec!["NodePort".into()])).is_none());
    }

    #[test]
    fn fqdn_template_and_combine() {
        let plain = lb_service("{}");
        assert!(desired(&plain, &cfg(|_| {})).is_none());
        let t = |a: &mut SourceArgs| {
            a.fqdn_template = "{{.Name}}.{{.Namespace}}.example.com,{{.Labels.env}}.example.org".into()
        };
        let d = desired(&plain, &cfg(t)).unwrap();
        assert_eq!(summary(&d), vec!["prod.example.org A 192.0.2.10", "web.shop.example.com A 192.0.2.10"]);

        let annotated = lb_service(r#"{external-dns.alpha.kubernetes.io/hostname: web.example.com}"#);
        assert_eq!(summary(&desired(&annotated, &cfg(t)).unwrap()), vec!["web.example.com A 192.0.2.10"]);
        let combined = desired(
            &annotated,
            &cfg(|a| {
                t(a);
                a.combine_fqdn_annotation = true;
            }),
        )
        .unwrap();
        assert_eq!(summary(&combined).len(), 3);
        let ignored = desired(
            &annotated,
            &cfg(|a| {
                t(a);
                a.ignore_hostname_annotation = true;
            }),
        )
        .unwrap();
        assert_eq!(summary(&ignored), vec!["prod.example.org A 192.0.2.10", "web.shop.example.com A 192.0.2.10"]);
    }

    #[test]
    fn template_errors_name_the_object() {
        let c = cfg(|a| a.fqdn_template = "{{ .Name.Oops }}".into());
        let e = desired_dnsendpoint(SourceObject::Service(&lb_service("{}")), &Fixture::default(), &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Service shop/web: --fqdn-template: template: can't evaluate field Oops in type string"
        );
    }

    #[test]
    fn invalid_provider_annotation_is_an_error() {
        let svc = lb_service(
            r#"{external-dns.alpha.kubernetes.io/hostname: web.example.com, extdns.io/provider: "Route53/x"}"#,
        );
        let e = desired_dnsendpoint(SourceObject::Service(&svc), &Fixture::default(), &cfg(|_| {})).unwrap_err();
        assert!(
            e.to_string().starts_with("Service shop/web: annotation extdns.io/provider: unknown provider kind"),
            "{e}"
        );
    }

    #[test]
    fn invalid_names_and_targets_become_warnings() {
        let svc = lb_service(
            r#"{external-dns.alpha.kubernetes.io/hostname: "ok.example.com,bad_name!.example.com",
                external-dns.alpha.kubernetes.io/target: "192.0.2.1,bad!host"}"#,
        );
        let d = desired(&svc, &cfg(|_| {})).unwrap();
        assert_eq!(summary(&d), vec!["ok.example.com A 192.0.2.1"]);
        assert_eq!(d.warnings.len(), 3, "{:?}", d.warnings);
        assert!(d.warnings.iter().any(|w| w.starts_with("skipping \"bad_name!.example.com\" (A): ")));
        assert!(d.warnings.iter().any(|w| w.starts_with("skipping target \"bad!host\" of ok.example.com (CNAME): ")));
        let svc = lb_service(r#"{external-dns.alpha.kubernetes.io/hostname: "bad_name!.example.com"}"#);
        assert!(desired(&svc, &cfg(|_| {})).is_none());
    }

    #[test]
    fn names_fit_kubernetes_limits() {
        assert_eq!(dnsendpoint_name("nginx", SourceKind::Service), "nginx-service");
        assert_eq!(dnsendpoint_name("nginx", SourceKind::Ingress), "nginx-ingress");
        let long = format!("{}.{}", "a".repeat(200), "b".repeat(52));
        let n = dnsendpoint_name(&long, SourceKind::Service);
        assert_eq!(n.len(), 253);
        assert!(n.ends_with("-service"));
        let other = dnsendpoint_name(&format!("{long}x"), SourceKind::Service);
        assert_ne!(n, other);
        let dotted = dnsendpoint_name(&format!("{}.{}", "a".repeat(227), "b".repeat(40)), SourceKind::Service);
        assert!(!dotted.contains(".-") && dotted.len() <= 253, "{dotted}");
    }

    #[test]
    fn builds_owned_object() {
        let svc = lb_service(r#"{external-dns.alpha.kubernetes.io/hostname: web.example.com}"#);
        let obj = SourceObject::Service(&svc);
        let d = desired(&svc, &cfg(|_| {})).unwrap();
        let owner = obj.owner_info().unwrap();
        let ep = dnsendpoint_object(&d, &owner);
        assert_eq!(ep.metadata.name.as_deref(), Some("web-service"));
        assert_eq!(ep.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(ep.metadata.labels.as_ref().unwrap().get(MANAGED_BY_LABEL).map(String::as_str), Some("extdns"));
        let refs = ep.metadata.owner_references.unwrap();
        assert_eq!(refs.len(), 1);
        let r = &refs[0];
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str(), r.name.as_str(), r.uid.as_str()),
            ("v1", "Service", "web", "1234-5678")
        );
        assert_eq!((r.controller, r.block_owner_deletion), (Some(true), Some(true)));
        assert_eq!(ep.spec, d.spec);
    }
}
