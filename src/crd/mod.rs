//! Custom resources of the `extdns.io/v1alpha1` API. Doc comments here are what
//! `kubectl explain` shows, so they are written for users.

pub mod backend_ref;
pub mod dnsendpoint;
pub mod dnsprovider;

pub use backend_ref::{BackendCount, BackendRef, BACKEND_FIELDS};
pub use dnsendpoint::{
    DNSEndpoint, DnsEndpointSpec, DnsEndpointStatus, EndpointSpec, ProviderRef, ProviderRefKind, RecordStatus,
};
pub use dnsprovider::{ClusterDNSProvider, DNSProvider, DnsProviderStatus, ProviderSpec};

use std::fmt;
use std::sync::Arc;

use kube::CustomResourceExt;

pub const GROUP: &str = "extdns.io";

/// Identity of a provider object. Cheap to clone (the router keeps one per record and
/// provider): its names are shared, not copied.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId {
    pub kind: ProviderRefKind,
    pub namespace: Option<Arc<str>>,
    pub name: Arc<str>,
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "DNSProvider/{ns}/{}", self.name),
            None => write!(f, "ClusterDNSProvider/{}", self.name),
        }
    }
}

/// All CRDs as one multi-document YAML stream, in a stable order.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let crds = [DNSEndpoint::crd(), DNSProvider::crd(), ClusterDNSProvider::crd()];
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

/// Schema for `conditions`: a list map keyed on `type`, so that server-side apply merges one
/// condition per type instead of replacing the list.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut s = generator.subschema_for::<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>();
    s.insert("x-kubernetes-list-type".into(), "map".into());
    s.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    s
}
