//! Records for Gateway API routes (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute), after
//! external-dns's `source/gateway.go`: a route's host names are its `spec.hostnames` (plus the
//! hostname annotation, or the `--fqdn-template` names) narrowed to the hostnames of the
//! listeners of every parent Gateway that accepted it and whose `allowedRoutes` admit it; the
//! targets are those Gateways' target annotation, else their `status.addresses`.
//!
//! Objects are typed by the projections below rather than the `gateway-api` crate: its
//! releases are built against kube 4 / k8s-openapi 0.28 and would pull a second copy of both
//! next to ours (kube 5 / k8s-openapi 0.29). Only the fields read here are declared; serde
//! skips the rest, which also keeps the controller's caches small.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};

use super::annotations::{ExternalDnsAnnotations, ANNOTATION_ONLY, DEFINED_HOSTS_ONLY};
use super::selector::Selector;
use super::{Records, SourceConfig, SourceError, SourceInputs};

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const GATEWAY_KIND: &str = "Gateway";

/// A route of any of the five kinds: they share `spec.parentRefs`, `spec.hostnames` (absent
/// on TCP and UDP routes) and `status.parents`.
pub type Route = kube::core::Object<RouteSpec, RouteStatus>;
/// A Gateway: its listeners and its addresses.
pub type Gateway = kube::core::Object<GatewaySpec, GatewayStatus>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RouteCondition>,
}

/// The part of a `metav1.Condition` read here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Listener>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub port: i32,
    #[serde(default)]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RouteGroupKind>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayAddress>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    pub value: String,
}

/// The route kinds, with the API versions they are read in, most preferred first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    Http,
    Grpc,
    Tls,
    Tcp,
    Udp,
}

impl RouteKind {
    pub const ALL: [RouteKind; 5] = [RouteKind::Http, RouteKind::Grpc, RouteKind::Tls, RouteKind::Tcp, RouteKind::Udp];

    /// The Kubernetes kind, e.g. "HTTPRoute".
    pub fn kind(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
            RouteKind::Tls => "TLSRoute",
            RouteKind::Tcp => "TCPRoute",
            RouteKind::Udp => "UDPRoute",
        }
    }

    /// The resource (plural) name, e.g. "httproutes".
    pub fn plural(self) -> &'static str {
        match self {
            RouteKind::Http => "httproutes",
            RouteKind::Grpc => "grpcroutes",
            RouteKind::Tls => "tlsroutes",
            RouteKind::Tcp => "tcproutes",
            RouteKind::Udp => "udproutes",
        }
    }

    /// Versions of `gateway.networking.k8s.io` the kind is read in, preferred first: the
    /// first one the apiserver serves is used. TLS, TCP and UDP routes exist only in the
    /// experimental channel's alpha versions (TLSRoute also in v1alpha3 since Gateway API 1.3).
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            RouteKind::Http => &["v1", "v1beta1"],
            RouteKind::Grpc => &["v1", "v1alpha2"],
            RouteKind::Tls => &["v1", "v1alpha3", "v1alpha2"],
            RouteKind::Tcp | RouteKind::Udp => &["v1", "v1alpha2"],
        }
    }

    pub fn from_kind(kind: &str) -> Option<RouteKind> {
        RouteKind::ALL.into_iter().find(|k| k.kind() == kind)
    }

    /// The listener protocol the kind attaches to, as external-dns's `gwProtocolMatches`
    /// compares them: HTTPS counts as HTTP, and a TCPRoute also attaches to a TLS listener.
    fn protocol_matches(self, listener_protocol: &str) -> bool {
        match self {
            RouteKind::Http | RouteKind::Grpc => matches!(listener_protocol, "HTTP" | "HTTPS"),
            RouteKind::Tls => listener_protocol == "TLS",
            RouteKind::Tcp => matches!(listener_protocol, "TCP" | "TLS"),
            RouteKind::Udp => listener_protocol == "UDP",
        }
    }
}

/// Gateway versions, preferred first.
pub const GATEWAY_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// `(namespace, name)` of the Gateway a parent reference points at, or `None` when it points
/// at something other than a Gateway.
pub fn parent_gateway(route_namespace: &str, r: &ParentRef) -> Option<(String, String)> {
    let group = r.group.as_deref().filter(|g| !g.is_empty()).unwrap_or(GATEWAY_GROUP);
    let kind = r.kind.as_deref().filter(|k| !k.is_empty()).unwrap_or(GATEWAY_KIND);
    if group != GATEWAY_GROUP || kind != GATEWAY_KIND {
        return None;
    }
    let ns = r.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(route_namespace);
    Some((ns.to_string(), r.name.clone()))
}

/// Every Gateway a route names, in its spec or its status: what its records depend on.
pub fn referenced_gateways(route: &Route) -> BTreeSet<(String, String)> {
    let ns = route.metadata.namespace.as_deref().unwrap_or("default");
    let status = route.status.iter().flat_map(|s| s.parents.iter().map(|p| &p.parent_ref));
    route.spec.parent_refs.iter().chain(status).filter_map(|r| parent_gateway(ns, r)).collect()
}

/// Whether the Gateway passes `--gateway-name`, `--gateway-namespace` and
/// `--gateway-label-filter`.
fn gateway_selected(gw: &Gateway, cfg: &SourceConfig) -> bool {
    let args = &cfg.args;
    let empty = BTreeMap::new();
    (args.gateway_name.is_empty() || gw.metadata.name.as_deref() == Some(args.gateway_name.as_str()))
        && (args.gateway_namespace.is_empty()
            || gw.metadata.namespace.as_deref() == Some(args.gateway_namespace.as_str()))
        && cfg.gateway_label_filter.matches(gw.metadata.labels.as_ref().unwrap_or(&empty))
}

/// A status parent reference must be one of the route's `spec.parentRefs` (group, kind,
/// namespace and name; external-dns ignores sectionName and port here).
fn has_parent_ref(route_ns: &str, spec_refs: &[ParentRef], r: &ParentRef) -> bool {
    let Some(target) = parent_gateway(route_ns, r) else {
        return false;
    };
    spec_refs.iter().any(|s| parent_gateway(route_ns, s).as_ref() == Some(&target))
}

/// Whether a gateway controller has yet to report on the route's current generation: a
/// parent the route still names carries an Accepted condition for an older one. Every spec
/// edit passes through that state until the controller catches up (usually milliseconds);
/// external-dns's periodic loop rarely lands in it, but an event-driven source would delete
/// the route's records on every edit and publish them again. The source keeps what it
/// published until the controller reports on the new generation.
pub fn awaiting_acceptance(route: &Route) -> bool {
    if route.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let ns = route.metadata.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default");
    let generation = route.metadata.generation.unwrap_or(0);
    route.status.iter().flat_map(|s| s.parents.iter()).any(|p| {
        has_parent_ref(ns, &route.spec.parent_refs, &p.parent_ref)
            && p.conditions
                .iter()
                .find(|c| c.type_ == "Accepted")
                .and_then(|c| c.observed_generation)
                .is_some_and(|g| g > 0 && g < generation)
    })
}

/// Accepted=True for the route's current generation (the first Accepted condition decides).
fn accepted(conditions: &[RouteCondition], generation: i64) -> bool {
    conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .is_some_and(|c| c.status == "True" && c.observed_generation.unwrap_or(0) == generation)
}

/// external-dns's `routeIsAllowed`: the listener's `allowedRoutes.namespaces` (Same by
/// default, All, or a Selector on the route's namespace labels) and `allowedRoutes.kinds`.
fn route_allowed(
    gw: &Gateway,
    lis: &Listener,
    route_ns: &str,
    kind: RouteKind,
    inputs: &dyn SourceInputs,
    recs: &mut Records,
) -> bool {
    let allow = lis.allowed_routes.as_ref();
    let namespaces = allow.and_then(|a| a.namespaces.as_ref());
    let from = namespaces.and_then(|n| n.from.as_deref()).unwrap_or("Same");
    let gw_ns = gw.metadata.namespace.as_deref().unwrap_or("default");
    let ns_ok = match from {
        "All" => true,
        "Same" => gw_ns == route_ns,
        "Selector" => {
            let sel = namespaces.and_then(|n| n.selector.as_ref()).cloned().unwrap_or_default();
            match Selector::from_label_selector(&sel) {
                Ok(sel) => inputs.namespace_labels(route_ns).is_some_and(|labels| sel.matches(&labels)),
                Err(e) => {
                    recs.warn(format!(
                        "Gateway {gw_ns}/{}: listener {:?}: allowedRoutes.namespaces.selector: {e}",
                        gw.metadata.name.as_deref().unwrap_or_default(),
                        lis.name
                    ));
                    false
                }
            }
        }
        _ => false,
    };
    if !ns_ok {
        return false;
    }
    let kinds = allow.map(|a| a.kinds.as_slice()).unwrap_or_default();
    kinds.is_empty()
        || kinds.iter().any(|gk| {
            gk.group.as_deref().filter(|g| !g.is_empty()).unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
                && gk.kind == kind.kind()
        })
}

/// external-dns's `gwHost`: "" stays "" (matches anything); IP addresses and names that are
/// not RFC 1123 domains (after an optional leading "*.") are invalid; valid ones lower-cased.
fn canonical_host(host: &str) -> Option<String> {
    if host.is_empty() {
        return Some(String::new());
    }
    if host.parse::<std::net::IpAddr>().is_ok() || !is_dns1123_domain(host.strip_prefix("*.").unwrap_or(host)) {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

fn is_dns1123_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// external-dns's `gwMatchingHost`: the more specific of two overlapping host names, where
/// "*.example.com" matches any name below example.com (not example.com itself) and "" matches
/// anything.
pub fn matching_host(a: &str, b: &str) -> Option<String> {
    let mut a = canonical_host(a)?;
    let mut b = canonical_host(b)?;
    if a.is_empty() {
        return Some(b);
    }
    if b.is_empty() || a == b {
        return Some(a);
    }
    if b.len() < a.len() || (a.len() == b.len() && b.starts_with("*.")) {
        std::mem::swap(&mut a, &mut b);
    }
    (a.starts_with("*.") && b.ends_with(&a[1..])).then_some(b)
}

/// The route's host names before narrowing, as external-dns's `gatewayRouteResolver.hosts`:
/// `spec.hostnames` plus the `--fqdn-template` names (when the spec names none, or with
/// `--combine-fqdn-annotation`), then by the `gateway-hostname-source` annotation:
/// `annotation-only` keeps only the hostname annotation's names, `defined-hosts-only` only
/// the spec and template names, and without it (or with an unknown value, which is warned
/// about) the hostname annotation's names are added, and "" (any listener hostname) when the
/// spec names none.
fn route_hosts(
    route: &Route,
    cfg: &SourceConfig,
    ann: &ExternalDnsAnnotations<'_>,
    recs: &mut Records,
) -> Result<Vec<String>, SourceError> {
    let mut hosts = route.spec.hostnames.clone();
    if let Some(tmpl) = &cfg.fqdn_template {
        if hosts.is_empty() || cfg.args.combine_fqdn_annotation {
            let object = describe(route);
            let json = serde_json::to_value(route)
                .map_err(|e| SourceError::InvalidObject { object: object.clone(), message: e.to_string() })?;
            hosts.extend(tmpl.hostnames(&json).map_err(|source| SourceError::Template { object, source })?);
        }
    }
    let from_annotation = || if cfg.args.ignore_hostname_annotation { Vec::new() } else { ann.hostnames() };
    match ann.gateway_hostname_source().map(|s| s.trim().to_ascii_lowercase()) {
        Some(s) if s == ANNOTATION_ONLY => return Ok(from_annotation()),
        Some(s) if s == DEFINED_HOSTS_ONLY => return Ok(hosts),
        Some(other) => recs.warn(format!(
            "annotation gateway-hostname-source: unknown value {other:?}, expected {DEFINED_HOSTS_ONLY} or {ANNOTATION_ONLY}; using the route's host names and the hostname annotation"
        )),
        None => {}
    }
    if route.spec.hostnames.is_empty() {
        hosts.push(String::new());
    }
    hosts.extend(from_annotation());
    Ok(hosts)
}

fn describe(route: &Route) -> String {
    let kind = route.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("Route");
    format!(
        "{kind} {}/{}",
        route.metadata.namespace.as_deref().unwrap_or("default"),
        route.metadata.name.as_deref().unwrap_or_default()
    )
}

fn gateway_targets(gw: &Gateway) -> Vec<String> {
    let empty = BTreeMap::new();
    let from_annotation = ExternalDnsAnnotations::new(gw.metadata.annotations.as_ref().unwrap_or(&empty)).targets();
    if !from_annotation.is_empty() {
        return from_annotation;
    }
    gw.status.iter().flat_map(|s| s.addresses.iter().map(|a| a.value.clone())).collect()
}

/// The records of a route: for every status parent that is a selected Gateway which accepted
/// the route, every listener of the parent's section whose protocol, port and
/// `allowedRoutes` admit the route contributes the overlap of its hostname with each route
/// host name, pointing at the Gateway's targets.
pub(super) fn route_records(
    route: &Route,
    kind: RouteKind,
    inputs: &dyn SourceInputs,
    cfg: &SourceConfig,
    ann: &ExternalDnsAnnotations<'_>,
) -> Result<Records, SourceError> {
    let mut recs = Records::default();
    let hosts = route_hosts(route, cfg, ann, &mut recs)?;
    for h in &hosts {
        if canonical_host(h).is_none() {
            recs.warn(format!("skipping host name {h:?}: not a valid DNS name (RFC 1123, optionally \"*.\" first)"));
        }
    }
    if route.spec.parent_refs.is_empty() {
        return Ok(recs);
    }
    let ns = route.metadata.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default");
    let generation = route.metadata.generation.unwrap_or(0);
    let mut host_targets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for parent in route.status.iter().flat_map(|s| s.parents.iter()) {
        let r = &parent.parent_ref;
        if !has_parent_ref(ns, &route.spec.parent_refs, r) {
            continue;
        }
        let Some((gw_ns, gw_name)) = parent_gateway(ns, r) else {
            continue;
        };
        let Some(gw) = inputs.gateway(&gw_ns, &gw_name) else {
            continue;
        };
        if !gateway_selected(&gw, cfg) || !accepted(&parent.conditions, generation) {
            continue;
        }
        let section = r.section_name.as_deref().unwrap_or_default();
        let targets = gateway_targets(&gw);
        for lis in gw.spec.listeners.iter().filter(|l| section.is_empty() || l.name == section) {
            if !kind.protocol_matches(&lis.protocol)
                || r.port.is_some_and(|p| p != lis.port)
                || !route_allowed(&gw, lis, ns, kind, inputs, &mut recs)
            {
                continue;
            }
            let gw_host = lis.hostname.as_deref().unwrap_or_default();
            for rt_host in &hosts {
                if gw_host.is_empty() && rt_host.is_empty() {
                    continue;
                }
                if let Some(host) = matching_host(gw_host, rt_host) {
                    host_targets.entry(host).or_default().extend(targets.iter().cloned());
                }
            }
        }
    }
    for (host, targets) in host_targets {
        recs.add_for_hostname(&host, &targets.into_iter().collect::<Vec<_>>());
    }
    Ok(recs)
}

#[cfg(test)]
mod tests {
    //! Cases after external-dns's `gateway_test.go` (`TestGatewayMatchingHost`) and
    //! `gateway_httproute_test.go` / `gateway_tcproute_test.go` tables.
    use std::sync::Arc;

    use super::super::testutil::*;
    use super::super::{desired_dnsendpoint, DesiredObject, SourceArgs, SourceObject, StaticInputs};
    use super::*;

    #[test]
    fn matching_host_table() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("", "", Some("")),
            ("example.net", "", Some("example.net")),
            ("", "example.net", Some("example.net")),
            ("Example.NET", "example.net", Some("example.net")),
            ("*.example.net", "foo.example.net", Some("foo.example.net")),
            ("foo.example.net", "*.example.net", Some("foo.example.net")),
            ("*.example.net", "a.b.example.net", Some("a.b.example.net")),
            ("*.example.net", "example.net", None),
            ("*.example.net", "*.example.net", Some("*.example.net")),
            ("*.example.net", "*.foo.example.net", Some("*.foo.example.net")),
            ("*.foo.example.net", "*.bar.example.net", None),
            ("foo.example.net", "bar.example.net", None),
            ("1.2.3.4", "", None),
            ("", "::1", None),
            ("foo_bar.example.net", "", None),
            ("*", "foo.example.net", None),
            ("-bad.example.net", "", None),
        ];
        for (a, b, want) in cases {
            assert_eq!(matching_host(a, b).as_deref(), *want, "matching_host({a:?}, {b:?})");
        }
    }

    fn gateway(yaml_body: &str) -> Arc<Gateway> {
        Arc::new(yaml(yaml_body))
    }

    /// A Gateway "infra/gw" with address 192.0.2.1 and one HTTP listener per argument
    /// ("name|hostname|allowedRoutes-yaml").
    fn gw(listeners: &str, annotations: &str) -> Arc<Gateway> {
        gateway(&format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra, labels: {{team: net}}, annotations: {annotations}}}
spec:
  gatewayClassName: c
  listeners: {listeners}
status:
  addresses: [{{type: IPAddress, value: 192.0.2.1}}, {{type: Hostname, value: lb.example.net}}, {{value: 192.0.2.1}}]
"#
        ))
    }

    const ALL_NS: &str = r#"[{name: web, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]"#;

    fn route(kind: &str, ns: &str, spec: &str, status_parents: &str, annotations: &str) -> Route {
        yaml(&format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata: {{name: rt, namespace: {ns}, generation: 2, uid: u-1, labels: {{app: web}}, annotations: {annotations}}}
spec: {spec}
status:
  parents: {status_parents}
"#
        ))
    }

    fn accepted_by(gw: &str, extra: &str) -> String {
        format!(
            r#"[{{parentRef: {{name: {gw}, namespace: infra{extra}}}, controllerName: x.io/gw, conditions: [{{type: Accepted, status: "True", observedGeneration: 2}}]}}]"#
        )
    }

    fn http_route(ns: &str, hostnames: &str) -> Route {
        route(
            "HTTPRoute",
            ns,
            &format!("{{parentRefs: [{{name: gw, namespace: infra}}], hostnames: {hostnames}}}"),
            &accepted_by("gw", ""),
            "{}",
        )
    }

    fn inputs(gws: Vec<Arc<Gateway>>) -> StaticInputs {
        StaticInputs {
            gateways: gws,
            namespaces: [
                ("apps".to_string(), [("gateway".to_string(), "yes".to_string())].into()),
                ("other".to_string(), BTreeMap::new()),
            ]
            .into(),
            ..Default::default()
        }
    }

    fn run_with(
        route: &Route,
        kind: RouteKind,
        inp: &StaticInputs,
        f: impl FnOnce(&mut SourceArgs),
    ) -> Option<DesiredObject> {
        let c = cfg(|a| {
            a.source = vec![SourceKind::for_route(kind)];
            f(a)
        });
        desired_dnsendpoint(SourceObject::Route(kind, route), inp, &c).unwrap()
    }

    use super::super::SourceKind;

    fn records(route: &Route, gws: Vec<Arc<Gateway>>) -> Vec<String> {
        run_with(route, RouteKind::Http, &inputs(gws), |_| {}).map(|d| summary(&d)).unwrap_or_default()
    }

    #[test]
    fn hostnames_get_the_gateway_addresses() {
        let rt = http_route("apps", "[test.example.internal, Other.Example.Internal]");
        let d = run_with(&rt, RouteKind::Http, &inputs(vec![gw(ALL_NS, "{}")]), |_| {}).unwrap();
        assert_eq!(summary(&d), vec!["other.example.internal A 192.0.2.1", "test.example.internal A 192.0.2.1",]);
        assert_eq!(d.name, "rt-httproute");
        assert_eq!(d.spec.endpoints[0].labels.as_ref().unwrap()["resource"], "httproute/apps/rt");
        let owner = SourceObject::Route(RouteKind::Http, &rt).owner_info().unwrap();
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str()),
            ("gateway.networking.k8s.io/v1", "HTTPRoute", "rt")
        );
    }

    #[test]
    fn listener_hostnames_narrow_and_fill_in() {
        let listeners = r#"[{name: a, port: 80, protocol: HTTP, hostname: "*.example.com", allowedRoutes: {namespaces: {from: All}}},
                             {name: b, port: 443, protocol: HTTPS, hostname: api.example.org, allowedRoutes: {namespaces: {from: All}}}]"#;
        let g = || vec![gw(listeners, "{}")];
        // Route host within a's wildcard; b's name does not overlap.
        assert_eq!(
            records(&http_route("apps", "[web.example.com, web.example.net]"), g()),
            vec!["web.example.com A 192.0.2.1"]
        );
        // A wildcard route host narrowed to b's name.
        assert_eq!(records(&http_route("apps", "[\"*.example.org\"]"), g()), vec!["api.example.org A 192.0.2.1"]);
        // No route hostnames: each listener's hostname.
        assert_eq!(
            records(&http_route("apps", "[]"), g()),
            vec!["*.example.com A 192.0.2.1", "api.example.org A 192.0.2.1",]
        );
        // Neither route nor listener names a host: nothing.
        assert!(records(&http_route("apps", "[]"), vec![gw(ALL_NS, "{}")]).is_empty());
    }

    #[test]
    fn section_name_and_port_pick_listeners() {
        let listeners = r#"[{name: a, port: 80, protocol: HTTP, hostname: a.example.com, allowedRoutes: {namespaces: {from: All}}},
                             {name: b, port: 8080, protocol: HTTP, hostname: b.example.com, allowedRoutes: {namespaces: {from: All}}}]"#;
        let mk = |extra: &str| {
            route(
                "HTTPRoute",
                "apps",
                &format!("{{parentRefs: [{{name: gw, namespace: infra{extra}}}]}}"),
                &accepted_by("gw", extra),
                "{}",
            )
        };
        let names = |r: Route| -> Vec<String> {
            records(&r, vec![gw(listeners, "{}")]).into_iter().filter(|s| s.contains(" A ")).collect()
        };
        assert_eq!(names(mk(", sectionName: b")), vec!["b.example.com A 192.0.2.1"]);
        assert_eq!(names(mk(", port: 80")), vec!["a.example.com A 192.0.2.1"]);
        assert!(names(mk(", sectionName: a, port: 8080")).is_empty());
        assert!(names(mk(", sectionName: missing")).is_empty());
        assert_eq!(names(mk("")).len(), 2);
    }

    #[test]
    fn allowed_routes_namespaces_and_kinds() {
        let l = |allowed: &str| {
            format!(r#"[{{name: web, port: 80, protocol: HTTP, hostname: web.example.com, allowedRoutes: {allowed}}}]"#)
        };
        let published =
            |ns: &str, allowed: &str| !records(&http_route(ns, "[]"), vec![gw(&l(allowed), "{}")]).is_empty();
        // Same (the default): only routes in the Gateway's namespace.
        assert!(published("infra", "{}"));
        assert!(!published("apps", "{}"));
        assert!(!published("apps", "{namespaces: {from: Same}}"));
        assert!(published("apps", "{namespaces: {from: All}}"));
        // Selector on namespace labels; an unknown namespace is not admitted.
        let sel = "{namespaces: {from: Selector, selector: {matchLabels: {gateway: \"yes\"}}}}";
        assert!(published("apps", sel));
        assert!(!published("other", sel));
        assert!(!published("unknown", sel));
        let expr = "{namespaces: {from: Selector, selector: {matchExpressions: [{key: gateway, operator: Exists}]}}}";
        assert!(published("apps", expr) && !published("other", expr));
        assert!(!published("apps", "{namespaces: {from: Elsewhere}}"));
        // Kinds.
        assert!(published("apps", "{namespaces: {from: All}, kinds: [{kind: HTTPRoute}]}"));
        assert!(!published("apps", "{namespaces: {from: All}, kinds: [{kind: GRPCRoute}]}"));
        assert!(!published("apps", "{namespaces: {from: All}, kinds: [{group: example.io, kind: HTTPRoute}]}"));
    }

    #[test]
    fn invalid_namespace_selector_is_a_warning() {
        let l = r#"[{name: web, port: 80, protocol: HTTP, hostname: web.example.com,
                     allowedRoutes: {namespaces: {from: Selector, selector: {matchExpressions: [{key: a, operator: In}]}}}}]"#;
        let rt = http_route("apps", "[]");
        let recs = route_records(&rt, RouteKind::Http, &inputs(vec![gw(l, "{}")]), &cfg(|_| {}), &ann_of(&rt)).unwrap();
        assert!(recs.is_empty());
        assert_eq!(recs.warnings.len(), 1);
        assert!(recs.warnings[0].starts_with("Gateway infra/gw: listener \"web\": allowedRoutes.namespaces.selector: "));
    }

    fn ann_of(r: &Route) -> ExternalDnsAnnotations<'_> {
        ExternalDnsAnnotations::new(r.metadata.annotations.as_ref().unwrap())
    }

    #[test]
    fn only_accepted_parents_of_the_current_generation_count() {
        let g = || vec![gw(ALL_NS, "{}")];
        let with_status = |parents: &str| {
            route(
                "HTTPRoute",
                "apps",
                "{parentRefs: [{name: gw, namespace: infra}], hostnames: [web.example.com]}",
                parents,
                "{}",
            )
        };
        let cond = |c: &str| format!("[{{parentRef: {{name: gw, namespace: infra}}, conditions: {c}}}]");
        assert!(!records(&with_status(&cond(r#"[{type: Accepted, status: "True", observedGeneration: 2}]"#)), g())
            .is_empty());
        assert!(records(&with_status(&cond(r#"[{type: Accepted, status: "False", observedGeneration: 2}]"#)), g())
            .is_empty());
        assert!(records(&with_status(&cond(r#"[{type: Accepted, status: "True", observedGeneration: 1}]"#)), g())
            .is_empty());
        assert!(records(&with_status(&cond(r#"[{type: ResolvedRefs, status: "True", observedGeneration: 2}]"#)), g())
            .is_empty());
        assert!(records(&with_status("[]"), g()).is_empty());
        // A status parent the spec does not name is ignored.
        let stray = route(
            "HTTPRoute",
            "apps",
            "{parentRefs: [{name: other, namespace: infra}], hostnames: [web.example.com]}",
            &accepted_by("gw", ""),
            "{}",
        );
        assert!(records(&stray, g()).is_empty());
        // A parent that is not a Gateway.
        let svc_parent = route(
            "HTTPRoute",
            "apps",
            "{parentRefs: [{name: gw, namespace: infra, kind: Service, group: \"\"}], hostnames: [web.example.com]}",
            r#"[{parentRef: {name: gw, namespace: infra, kind: Service, group: ""}, conditions: [{type: Accepted, status: "True", observedGeneration: 2}]}]"#,
            "{}",
        );
        assert!(records(&svc_parent, g()).is_empty());
        // A Gateway that does not exist.
        assert!(records(&http_route("apps", "[web.example.com]"), vec![]).is_empty());
    }

    #[test]
    fn a_route_whose_controller_has_not_caught_up_is_awaiting_acceptance() {
        let with_status = |refs: &str, parents: &str| {
            route("HTTPRoute", "apps", &format!("{{parentRefs: {refs}, hostnames: [web.example.com]}}"), parents, "{}")
        };
        let gw_ref = "[{name: gw, namespace: infra}]";
        let cond = |c: &str| format!("[{{parentRef: {{name: gw, namespace: infra}}, conditions: {c}}}]");
        // generation 2 (the fixture): a report on generation 1, whatever its status, is stale.
        for status in ["True", "False"] {
            let c = cond(&format!("[{{type: Accepted, status: \"{status}\", observedGeneration: 1}}]"));
            assert!(awaiting_acceptance(&with_status(gw_ref, &c)), "{status}");
        }
        // Reported on the current generation, never reported, or without a generation.
        assert!(!awaiting_acceptance(&with_status(
            gw_ref,
            &cond(r#"[{type: Accepted, status: "True", observedGeneration: 2}]"#)
        )));
        assert!(!awaiting_acceptance(&with_status(
            gw_ref,
            &cond(r#"[{type: Accepted, status: "False", observedGeneration: 2}]"#)
        )));
        assert!(!awaiting_acceptance(&with_status(gw_ref, "[]")));
        assert!(!awaiting_acceptance(&with_status(gw_ref, &cond(r#"[{type: Accepted, status: "True"}]"#))));
        // A stale parent the spec no longer names does not hold the route back.
        let c = cond(r#"[{type: Accepted, status: "True", observedGeneration: 1}]"#);
        assert!(!awaiting_acceptance(&with_status("[{name: other, namespace: infra}]", &c)));
        // A route being deleted is not waited for.
        let mut deleting = with_status(gw_ref, &c);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
        assert!(!awaiting_acceptance(&deleting));
    }

    #[test]
    fn gateway_filters() {
        let rt = http_route("apps", "[web.example.com]");
        let inp = inputs(vec![gw(ALL_NS, "{}")]);
        let some = |f: fn(&mut SourceArgs)| run_with(&rt, RouteKind::Http, &inp, f).is_some();
        assert!(some(|a| a.gateway_name = "gw".into()));
        assert!(!some(|a| a.gateway_name = "other".into()));
        assert!(some(|a| a.gateway_namespace = "infra".into()));
        assert!(!some(|a| a.gateway_namespace = "apps".into()));
        assert!(some(|a| a.gateway_label_filter = "team=net".into()));
        assert!(!some(|a| a.gateway_label_filter = "team=app".into()));
        // Route filters as for every source.
        assert!(!some(|a| a.label_filter = "app=other".into()));
        assert!(!some(|a| a.namespace = "infra".into()));
        assert!(run_with(&rt, RouteKind::Http, &inp, |a| a.source = vec![SourceKind::Service]).is_none());
    }

    #[test]
    fn gateway_target_annotation_overrides_addresses() {
        let rt = http_route("apps", "[web.example.com]");
        let g = gw(ALL_NS, r#"{external-dns.alpha.kubernetes.io/target: "203.0.113.7, 2001:db8::7"}"#);
        assert_eq!(records(&rt, vec![g]), vec!["web.example.com A 203.0.113.7", "web.example.com AAAA 2001:db8::7"]);
    }

    #[test]
    fn targets_of_several_parents_are_combined() {
        let other: Arc<Gateway> = gateway(
            r#"
metadata: {name: gw2, namespace: infra}
spec: {listeners: [{name: web, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]}
status: {addresses: [{value: 192.0.2.2}, {value: 192.0.2.1}]}
"#,
        );
        let rt = route(
            "HTTPRoute",
            "apps",
            "{parentRefs: [{name: gw, namespace: infra}, {name: gw2, namespace: infra}], hostnames: [web.example.com]}",
            r#"[{parentRef: {name: gw, namespace: infra}, conditions: [{type: Accepted, status: "True", observedGeneration: 2}]},
                {parentRef: {name: gw2, namespace: infra}, conditions: [{type: Accepted, status: "True", observedGeneration: 2}]}]"#,
            "{}",
        );
        assert_eq!(records(&rt, vec![gw(ALL_NS, "{}"), other]), vec!["web.example.com A 192.0.2.1,192.0.2.2"]);
    }

    #[test]
    fn hostname_annotation_ttl_and_provider_specific() {
        let rt = route(
            "HTTPRoute",
            "apps",
            "{parentRefs: [{name: gw, namespace: infra}], hostnames: [web.example.com]}",
            &accepted_by("gw", ""),
            r#"{external-dns.alpha.kubernetes.io/hostname: "extra.example.com, bad_host!", external-dns.alpha.kubernetes.io/ttl: "90",
                external-dns.alpha.kubernetes.io/aws-weight: "5", external-dns.alpha.kubernetes.io/set-identifier: eu}"#,
        );
        let d = run_with(&rt, RouteKind::Http, &inputs(vec![gw(ALL_NS, "{}")]), |_| {}).unwrap();
        let names: BTreeSet<&str> = d.spec.endpoints.iter().map(|e| e.dns_name.as_str()).collect();
        assert_eq!(names, ["extra.example.com", "web.example.com"].into());
        let ep = &d.spec.endpoints[0];
        assert_eq!(ep.record_ttl, Some(90));
        assert_eq!(ep.set_identifier.as_deref(), Some("eu"));
        assert_eq!(ep.provider_specific.as_ref().unwrap()[0].name, "aws/weight");
        assert!(d.warnings.iter().any(|w| w.starts_with("skipping host name \"bad_host!\"")), "{:?}", d.warnings);
        // --ignore-hostname-annotation.
        let d = run_with(&rt, RouteKind::Http, &inputs(vec![gw(ALL_NS, "{}")]), |a| {
            // external-dns (and extdns) refuse the flag without a template at start-up;
            // the template only applies to routes without host names.
            a.ignore_hostname_annotation = true;
            a.fqdn_template = "{{.Name}}.fallback.example.com".into();
        })
        .unwrap();
        assert!(d.spec.endpoints.iter().all(|e| e.dns_name == "web.example.com"));
        // A bad TTL is a warning, as for Services.
        let bad_ttl = route(
            "HTTPRoute",
            "apps",
            "{parentRefs: [{name: gw, namespace: infra}], hostnames: [web.example.com]}",
            &accepted_by("gw", ""),
            r#"{external-dns.alpha.kubernetes.io/ttl: "soon"}"#,
        );
        let d = run_with(&bad_ttl, RouteKind::Http, &inputs(vec![gw(ALL_NS, "{}")]), |_| {}).unwrap();
        assert!(d.warnings.iter().any(|w| w.contains("\"soon\" is not a valid TTL")));
    }

    /// The `gateway-hostname-source` annotation, as external-dns's `gatewayRouteResolver.hosts`
    /// reads it (its HTTPRoute test rows for `annotation-only` and `defined-hosts-only`).
    #[test]
    fn gateway_hostname_source_annotation() {
        let with = |spec_hosts: &str, annotations: &str| {
            route(
                "HTTPRoute",
                "apps",
                &format!("{{parentRefs: [{{name: gw, namespace: infra}}]{spec_hosts}}}"),
                &accepted_by("gw", ""),
                annotations,
            )
        };
        let wildcard = r#"[{name: web, port: 80, protocol: HTTP, hostname: "*.example.internal", allowedRoutes: {namespaces: {from: All}}}]"#;
        let names = |rt: &Route, f: fn(&mut SourceArgs)| -> Vec<String> {
            run_with(rt, RouteKind::Http, &inputs(vec![gw(wildcard, "{}")]), f)
                .map(|d| d.spec.endpoints.iter().map(|e| e.dns_name.clone()).collect())
                .unwrap_or_default()
        };
        let ann = |source: &str| {
            format!(
                "{{external-dns.alpha.kubernetes.io/hostname: annotation.example.internal{}}}",
                if source.is_empty() {
                    String::new()
                } else {
                    format!(", external-dns.alpha.kubernetes.io/gateway-hostname-source: {source}")
                }
            )
        };
        let spec = ", hostnames: [test.example.internal]";
        // Without the annotation: spec and hostname annotation.
        assert_eq!(names(&with(spec, &ann("")), |_| {}), ["annotation.example.internal", "test.example.internal"]);
        assert_eq!(names(&with(spec, &ann("annotation-only")), |_| {}), ["annotation.example.internal"]);
        assert_eq!(names(&with(spec, &ann("Defined-Hosts-Only")), |_| {}), ["test.example.internal"]);
        // annotation-only with --ignore-hostname-annotation leaves no names at all.
        let ignoring: fn(&mut SourceArgs) = |a| {
            a.ignore_hostname_annotation = true;
            a.fqdn_template = "{{.Name}}.example.internal".into();
        };
        assert!(names(&with(spec, &ann("annotation-only")), ignoring).is_empty());
        // Without spec host names the route takes its listeners' names, except with
        // defined-hosts-only (nothing is defined) and annotation-only.
        assert_eq!(names(&with("", "{}"), |_| {}), ["*.example.internal"]);
        assert!(names(
            &with("", "{external-dns.alpha.kubernetes.io/gateway-hostname-source: defined-hosts-only}"),
            |_| {}
        )
        .is_empty());
        assert_eq!(names(&with("", &ann("annotation-only")), |_| {}), ["annotation.example.internal"]);
        // defined-hosts-only counts the --fqdn-template names as defined.
        let templated: fn(&mut SourceArgs) = |a| a.fqdn_template = "{{.Name}}.example.internal".into();
        assert_eq!(
            names(
                &with("", "{external-dns.alpha.kubernetes.io/gateway-hostname-source: defined-hosts-only}"),
                templated
            ),
            ["rt.example.internal"]
        );
        // external-dns applies the template when the spec names no host, whatever the
        // annotation adds.
        assert_eq!(
            names(&with("", &ann("")), templated),
            ["*.example.internal", "annotation.example.internal", "rt.example.internal"]
        );
        // An unknown value is warned about and read as no annotation.
        let d =
            run_with(&with(spec, &ann("both")), RouteKind::Http, &inputs(vec![gw(wildcard, "{}")]), |_| {}).unwrap();
        assert_eq!(d.spec.endpoints.len(), 2);
        assert!(d.warnings.iter().any(|w| w.starts_with("annotation gateway-hostname-source: unknown value \"both\"")));
    }

    #[test]
    fn fqdn_template_is_narrowed_by_listeners() {
        let l = r#"[{name: web, port: 80, protocol: HTTP, hostname: "*.example.com", allowedRoutes: {namespaces: {from: All}}}]"#;
        let rt =
            route("HTTPRoute", "apps", "{parentRefs: [{name: gw, namespace: infra}]}", &accepted_by("gw", ""), "{}");
        let d = run_with(&rt, RouteKind::Http, &inputs(vec![gw(l, "{}")]), |a| {
            a.fqdn_template = "{{.Name}}.{{.Namespace}}.example.com,{{.Name}}.example.org".into()
        })
        .unwrap();
        let names: BTreeSet<&str> = d.spec.endpoints.iter().map(|e| e.dns_name.as_str()).collect();
        // rt.example.org is outside the listener's wildcard; "" (no spec hostnames) adds the
        // listener's own name.
        assert_eq!(names, ["*.example.com", "rt.apps.example.com"].into());
    }

    #[test]
    fn l4_routes_use_the_annotation_and_listener_protocols() {
        let listeners = r#"[{name: tcp, port: 5432, protocol: TCP, allowedRoutes: {namespaces: {from: All}}},
                             {name: tls, port: 443, protocol: TLS, hostname: db.example.com, allowedRoutes: {namespaces: {from: All}}},
                             {name: udp, port: 53, protocol: UDP, allowedRoutes: {namespaces: {from: All}}}]"#;
        let inp = inputs(vec![gw(listeners, "{}")]);
        let l4 = |kind: &str, section: &str| {
            route(
                kind,
                "apps",
                &format!("{{parentRefs: [{{name: gw, namespace: infra, sectionName: {section}}}]}}"),
                &accepted_by("gw", &format!(", sectionName: {section}")),
                "{external-dns.alpha.kubernetes.io/hostname: db.example.com}",
            )
        };
        let a_names = |d: Option<DesiredObject>| -> Vec<String> {
            d.map(|d| summary(&d)).unwrap_or_default().into_iter().filter(|s| s.contains(" A ")).collect()
        };
        assert_eq!(
            a_names(run_with(&l4("TCPRoute", "tcp"), RouteKind::Tcp, &inp, |_| {})),
            vec!["db.example.com A 192.0.2.1"]
        );
        // A TCPRoute attaches to a TLS listener too.
        assert_eq!(
            a_names(run_with(&l4("TCPRoute", "tls"), RouteKind::Tcp, &inp, |_| {})),
            vec!["db.example.com A 192.0.2.1"]
        );
        assert_eq!(
            a_names(run_with(&l4("UDPRoute", "udp"), RouteKind::Udp, &inp, |_| {})),
            vec!["db.example.com A 192.0.2.1"]
        );
        assert!(a_names(run_with(&l4("UDPRoute", "tcp"), RouteKind::Udp, &inp, |_| {})).is_empty());
        let d = run_with(&l4("TLSRoute", "tls"), RouteKind::Tls, &inp, |_| {}).unwrap();
        assert_eq!(d.name, "rt-tlsroute");
        assert_eq!(d.spec.endpoints[0].labels.as_ref().unwrap()["resource"], "tlsroute/apps/rt");
        // An HTTPRoute does not attach to L4 listeners.
        assert!(a_names(run_with(&l4("HTTPRoute", "tcp"), RouteKind::Http, &inp, |_| {})).is_empty());
    }

    #[test]
    fn referenced_gateways_from_spec_and_status() {
        let rt = route(
            "HTTPRoute",
            "apps",
            "{parentRefs: [{name: a}, {name: b, namespace: infra}, {name: svc, kind: Service, group: \"\"}]}",
            r#"[{parentRef: {name: c, namespace: x}, conditions: []}]"#,
            "{}",
        );
        let want: BTreeSet<(String, String)> = [("apps", "a"), ("infra", "b"), ("x", "c")]
            .into_iter()
            .map(|(n, m)| (n.to_string(), m.to_string()))
            .collect();
        assert_eq!(referenced_gateways(&rt), want);
    }

    #[test]
    fn projections_drop_unread_fields() {
        let rt: Route = yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: rt}
spec:
  parentRefs: [{name: gw}]
  hostnames: [a.example.com]
  rules: [{backendRefs: [{name: svc, port: 80}]}]
"#,
        );
        let v = serde_json::to_value(&rt).unwrap();
        assert_eq!(v["spec"], serde_json::json!({"parentRefs": [{"name": "gw"}], "hostnames": ["a.example.com"]}));
        assert_eq!(v["kind"], "HTTPRoute");
    }
}
