use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dns::endpoint::{ProviderSpecificProperty, RecordType};

/// DNS records wanted by one object. Field names follow external-dns's DNSEndpoint, so a
/// manifest migrates by changing its apiVersion to extdns.io/v1alpha1.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "extdns.io",
    version = "v1alpha1",
    kind = "DNSEndpoint",
    plural = "dnsendpoints",
    shortname = "dnsep",
    namespaced,
    status = "DnsEndpointStatus",
    printcolumn = r#"{"name":"Hostnames","type":"string","jsonPath":".status.hostnames"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DnsEndpointSpec {
    /// The records to publish. At most 1000 per object.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub endpoints: Vec<EndpointSpec>,
    /// Pins these records to one provider. Without it, every provider that admits this
    /// namespace and has the longest matching `domains.include` entry serves them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<ProviderRef>,
}

/// One DNS record set: a name, a type and its values.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    /// Fully qualified name, e.g. "api.example.com". A trailing dot is accepted and ignored;
    /// "*.example.com" is a wildcard.
    #[schemars(length(min = 1, max = 254))]
    pub dns_name: String,
    /// Values of the record: IPv4 addresses for A, IPv6 for AAAA, a host name for CNAME,
    /// "<priority> <weight> <port> <host>" for SRV, "<preference> <host>" for MX,
    /// "<flags> <tag> <value>" for CAA, free text for TXT.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Record type: A, AAAA, CNAME, TXT, SRV, MX, NS, PTR or CAA.
    pub record_type: RecordType,
    /// TTL in seconds (1 to 2147483647). Unset means the provider's defaultTTL.
    #[serde(rename = "recordTTL", default, skip_serializing_if = "Option::is_none")]
    pub record_ttl: Option<i64>,
    /// Distinguishes records of the same name and type under a routing policy (Route53
    /// weighted, latency, failover, geolocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    /// Free-form labels; `resource` is written to the TXT ownership record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Provider-specific settings such as `aws/weight` or `alias`, as in external-dns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_specific: Option<Vec<ProviderSpecificProperty>>,
}

/// Which provider serves a DNSEndpoint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    /// DNSProvider (same namespace as the DNSEndpoint) or ClusterDNSProvider.
    #[serde(default)]
    pub kind: ProviderRefKind,
    /// Name of the provider object.
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum ProviderRefKind {
    #[default]
    DNSProvider,
    ClusterDNSProvider,
}

/// Observed state, written by the provider controller.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsEndpointStatus {
    /// The spec generation whose records have all been applied (or found impossible to
    /// apply). Lags `metadata.generation` while changes are in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, following kstatus: Ready=True when every record
    /// is live; Reconciling=True while changes are pending or retried; Stalled=True when a
    /// human must act (invalid record, conflict, record owned by someone else, no provider).
    #[serde(default)]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// One entry per record and provider.
    #[serde(default)]
    pub records: Vec<RecordStatus>,
    /// Summary of the names for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostnames: Option<String>,
}

/// State of one record at one provider.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordStatus {
    pub dns_name: String,
    pub record_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    /// `DNSProvider/<namespace>/<name>` or `ClusterDNSProvider/<name>`; absent when none matched.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Live: Ready. In progress (retried automatically): Pending, Propagating, Unreachable,
    /// Throttled.
    /// Needs a human: Invalid, Conflict, OwnedByOther, RecordExists, NoProvider, ZoneNotFound,
    /// ProviderRejected, AuthFailed, InvalidProvider, PolicyForbids, UnmanagedType,
    /// NotPermitted, ListenerConflict, NameNotAllowed.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
