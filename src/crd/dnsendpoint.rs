use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dns::endpoint::{ProviderSpecificProperty, RecordType};

/// What the schema can say of a DNS name, so `kubectl apply` refuses it: labels of 1..=63
/// letters, digits, '_' and '-' (not at either end of a label), a leading `*` label, an
/// optional trailing dot. The controller checks the rest (253 characters without the dot).
pub const DNS_NAME_PATTERN: &str =
    r"^(\*|[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$";
/// A Kubernetes object name (DNS-1123 subdomain).
pub const OBJECT_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Bounds of one DNSEndpoint, in its schema so that `kubectl apply` refuses an object past
/// them: one tenant's objects are held in the operator's memory, which every tenant shares.
/// Each is far above what external-dns users write (a few hundred endpoints per object, DKIM
/// TXT values of 4096-bit keys of about 800 characters, a target per node or pod).
pub const MAX_ENDPOINTS: usize = 1000;
pub const MAX_TARGETS: usize = 1000;
/// Characters of one target; a TXT value longer than 255 goes out as several strings.
pub const MAX_TARGET_LENGTH: usize = 4096;
pub const MAX_SET_IDENTIFIER_LENGTH: usize = 255;
pub const MAX_LABELS: usize = 16;
pub const MAX_LABEL_VALUE_LENGTH: usize = 512;
pub const MAX_PROVIDER_SPECIFIC: usize = 32;

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
    #[schemars(length(max = MAX_ENDPOINTS))]
    pub endpoints: Vec<EndpointSpec>,
    /// Pins these records to one provider. Without it, every provider that admits this
    /// namespace and has the longest matching `domains.include` entry serves them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<ProviderRef>,
}

impl DnsEndpointSpec {
    /// A digest of the spec, for caches that must tell whether it changed without holding
    /// it (a spec may be over a megabyte). Streamed into the hasher, never built as a string.
    pub fn digest(&self) -> u64 {
        use std::hash::Hasher;
        struct HashWriter(std::collections::hash_map::DefaultHasher);
        impl std::io::Write for HashWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.write(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut h = HashWriter(std::collections::hash_map::DefaultHasher::new());
        // Serializing these types into a writer that never fails cannot fail.
        let _ = serde_json::to_writer(&mut h, self);
        h.0.finish()
    }
}

/// One DNS record set: a name, a type and its values.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    /// Fully qualified name, e.g. "api.example.com". A trailing dot is accepted and ignored;
    /// "*.example.com" is a wildcard (`*` only as the whole first label). Labels are 1 to 63
    /// letters, digits, '-' (not first or last) and '_'; the name at most 253 characters.
    #[schemars(length(min = 1, max = 254), regex(pattern = DNS_NAME_PATTERN))]
    pub dns_name: String,
    /// Values of the record: IPv4 addresses for A, IPv6 for AAAA, a host name for CNAME,
    /// "<priority> <weight> <port> <host>" for SRV, "<preference> <host>" for MX,
    /// "<flags> <tag> <value>" for CAA, free text for TXT. At most 1000 targets of 4096
    /// characters each.
    #[serde(default)]
    #[schemars(length(max = MAX_TARGETS), inner(length(max = MAX_TARGET_LENGTH)))]
    pub targets: Vec<String>,
    /// Record type: A, AAAA, CNAME, TXT, SRV, MX, NS, PTR or CAA.
    pub record_type: RecordType,
    /// TTL in seconds (1 to 2147483647). Unset, or 0 as external-dns reads it, means the
    /// provider's defaultTTL.
    #[serde(rename = "recordTTL", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub record_ttl: Option<i64>,
    /// Distinguishes records of the same name and type under a routing policy (Route53
    /// weighted, latency, failover, geolocation). At most 255 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_SET_IDENTIFIER_LENGTH))]
    pub set_identifier: Option<String>,
    /// Labels written to the TXT ownership record (`resource` defaults to
    /// `crd/<namespace>/<name>`). At most 16; keys of letters, digits, '-', '_' and '.';
    /// values of at most 512 characters without ',', '=', '"', spaces or control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = bound_labels)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Provider-specific settings such as `aws/weight` or `alias`, as in external-dns. At
    /// most 32; names of at most 253 characters, values of at most 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_PROVIDER_SPECIFIC))]
    pub provider_specific: Option<Vec<ProviderSpecificProperty>>,
}

/// At most [`MAX_LABELS`] labels with values of at most [`MAX_LABEL_VALUE_LENGTH`]
/// characters (a structural schema cannot bound the keys' length: the controller checks them).
fn bound_labels(schema: &mut schemars::Schema) {
    schema.insert("maxProperties".into(), MAX_LABELS.into());
    if let Some(values) = schema.get_mut("additionalProperties").and_then(|v| v.as_object_mut()) {
        values.insert("maxLength".into(), MAX_LABEL_VALUE_LENGTH.into());
        // Labels go into the ownership TXT, whose text has no escaping: a ',', '=' or quote
        // in a value would read back as other labels (a forged owner).
        values.insert("pattern".into(), LABEL_VALUE_PATTERN.into());
    }
}

/// Label values: no ',', '=', '"', whitespace or control characters.
const LABEL_VALUE_PATTERN: &str = r#"^[^,="\s\x00-\x1f\x7f]*$"#;

/// Which provider serves a DNSEndpoint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    /// DNSProvider (same namespace as the DNSEndpoint) or ClusterDNSProvider.
    #[serde(default)]
    pub kind: ProviderRefKind,
    /// Name of the provider object.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
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
    /// ProviderRejected, AuthFailed, InvalidProvider, PolicyForbids, NotPermitted,
    /// ListenerConflict, NameNotAllowed.
    /// Left out on purpose, without holding back Ready: Skipped (the provider does not
    /// manage the record type; the message says UnmanagedType and how to change that).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
