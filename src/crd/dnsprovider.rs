use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dns::endpoint::RecordType;

/// Default of `spec.embedded.listen`.
pub const DEFAULT_EMBEDDED_LISTEN: &str = "0.0.0.0:5353";

/// Parses "90s", "10m", "1h", or a plain number of seconds.
pub fn parse_duration(field: &str, s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{field}: {s:?} is not a duration like \"90s\", \"10m\" or \"1h\": {e}"))
}

/// `spec.resyncInterval`: hours, minutes and seconds ("1h", "10m", "1h30m", "90s") or plain
/// seconds ("3600"), never below one minute (the operator also refuses more than 24h).
const RESYNC_PATTERN: &str =
    r"^([1-9][0-9]*h([0-9]+m)?([0-9]+s)?|[1-9][0-9]*m([0-9]+s)?|([6-9][0-9]|[1-9][0-9]{2,})s?)$";

/// Where and how records are written. Shared by DNSProvider (serves its own namespace, reads
/// Secrets there) and ClusterDNSProvider (serves namespaces matched by `namespaceSelector`,
/// reads Secrets from the operator's namespace). Set exactly one backend block.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// Backend: records kept in the operator's memory. For tests and trying extdns out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_memory: Option<InMemorySpec>,
    /// Backend: the operator itself answers DNS queries for `zones` on `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedSpec>,
    /// Backend: RFC2136 dynamic updates (BIND, Knot, PowerDNS, Windows DNS) with TSIG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc2136: Option<Rfc2136Spec>,
    /// Backend: Amazon Route53 (or an API-compatible endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53: Option<Route53Spec>,
    /// Backend: Cloudflare DNS through its v4 API, with an API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare: Option<CloudflareSpec>,
    /// Backend: Google Cloud DNS (API v1), the managed zones of one project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google: Option<GoogleSpec>,
    /// Backend: PowerDNS Authoritative through its HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub powerdns: Option<PowerDnsSpec>,
    /// Backend: a provider program speaking external-dns's webhook protocol, usually a
    /// sidecar of the operator on localhost (Hetzner, IONOS, UniFi, Pi-hole, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
    /// Backend: Azure DNS (public zones) through Azure Resource Manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSpec>,
    /// Backend: Azure Private DNS zones through Azure Resource Manager; the same fields as
    /// `azure`.
    #[serde(default, rename = "azurePrivateDns", skip_serializing_if = "Option::is_none")]
    pub azure_private_dns: Option<AzureSpec>,
    /// Names this provider manages (external-dns --domain-filter / --exclude-domains).
    /// An entry "example.com" matches the name and everything below; ".example.com" only
    /// names below it. No include list admits every name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<IncludeExclude>,
    /// Zones this provider may write to, by name (external-dns --zone-id-filter in spirit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<IncludeExclude>,
    /// sync: create, update and delete owned records; upsert-only: never delete;
    /// create-only: only create records that do not exist.
    pub policy: Policy,
    /// How ownership is recorded. Default: TXT records with ownerId "default", as
    /// external-dns does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySpec>,
    /// Record types this provider creates, updates and deletes. Default A, AAAA, CNAME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_record_types: Option<Vec<RecordType>>,
    /// TTL in seconds for records created without a recordTTL. Default 300. 0 is allowed:
    /// external-dns's RFC2136 provider writes TTL 0 when none is set, and a zone migrated
    /// from it can keep doing so. Records that already exist keep their TTL unless their
    /// recordTTL says otherwise, as with external-dns.
    #[serde(default, rename = "defaultTTL", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub default_ttl: Option<u32>,
    /// How often the backend's records are listed again to repair drift, e.g. "1h", "10m".
    /// Between resyncs extdns makes no listing calls. Default "1h"; at least "1m", at most
    /// "24h" (every resync spends the backend's API quota, which tenants may share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = RESYNC_PATTERN))]
    pub resync_interval: Option<String>,
    /// Limits calls to the backend (zone listings, record listings, change batches): a token
    /// bucket of `burst` calls refilled at `qps` per second. Unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// ClusterDNSProvider only: namespaces whose DNSEndpoints it serves. All when absent.
    /// Ignored on a namespaced DNSProvider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// ClusterDNSProvider only: the names each namespace may claim. A DNSEndpoint's record is
    /// served only when its name equals or lies below one of these entries, with
    /// `{namespace}` replaced by the DNSEndpoint's namespace, e.g.
    /// "{namespace}.apps.example.com"; other records get the state NameNotAllowed. Unset
    /// (and no `namespaceDomainsFromAnnotation`): every namespace may claim every name in
    /// `domains`. Ignored on a namespaced DNSProvider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_domains: Option<Vec<String>>,
    /// ClusterDNSProvider only: also let each namespace claim the names listed in its
    /// `extdns.io/allowed-domains` annotation (comma-separated; each entry admits the name and
    /// everything below it). Set it only when tenants cannot edit their Namespace objects.
    /// A namespace without the annotation may then claim only what `namespaceDomains`
    /// admits: nothing, when that is unset. Ignored on a namespaced DNSProvider.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub namespace_domains_from_annotation: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct IncludeExclude {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Policy {
    #[default]
    #[serde(rename = "sync")]
    Sync,
    #[serde(rename = "upsert-only")]
    UpsertOnly,
    #[serde(rename = "create-only")]
    CreateOnly,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InMemorySpec {
    /// Zones to hold, e.g. ["example.com"].
    pub zones: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedSpec {
    /// Zones the operator answers for authoritatively.
    pub zones: Vec<String>,
    /// UDP and TCP address to answer on. Default "0.0.0.0:5353".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Name servers announced in the zones' NS records. Default "ns1.<zone>".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rfc2136Spec {
    /// DNS server host name or IP.
    pub host: String,
    /// DNS server port. Default 53.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Zones to manage on that server.
    pub zones: Vec<String>,
    /// TSIG key for updates and zone transfers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsig: Option<TsigSpec>,
    /// udp (falls back to TCP when an answer is truncated) or tcp. Default udp.
    #[serde(default)]
    pub transport: Transport,
    /// How records are listed. Only "axfr" is supported.
    #[serde(default)]
    pub list_method: ListMethod,
    /// Lowest TTL written; lower TTLs are raised to it.
    #[serde(default, rename = "minTTL", skip_serializing_if = "Option::is_none")]
    pub min_ttl: Option<u32>,
    /// Changes per UPDATE message. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5000))]
    pub batch_size: Option<u32>,
    /// Timeout of one exchange with the server, e.g. "10s". Default "10s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route53Spec {
    /// AWS region of the API client, e.g. "us-east-1".
    pub region: String,
    /// Static credentials. Without it, the default AWS chain is used (environment, web
    /// identity / IRSA, profile, container and instance metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<AwsCredentials>,
    /// Role to assume through STS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_role_arn: Option<String>,
    /// API endpoint override, for tests and compatible APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// public, private or any (default).
    #[serde(default)]
    pub zone_type: Route53ZoneType,
    /// Only hosted zones carrying all these tags (an empty value requires only the key).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub zone_tags: std::collections::BTreeMap<String, String>,
    /// Record values per ChangeResourceRecordSets call. Default 1000 (Route53's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub batch_change_size: Option<u32>,
    /// EvaluateTargetHealth of alias records that do not set aws/evaluate-target-health.
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate_target_health: Option<bool>,
    /// Keep a CNAME to an AWS load balancer a CNAME (external-dns' --aws-prefer-cname). By
    /// default it becomes an A and an AAAA alias record, which resolves faster, works at the
    /// zone apex and costs no queries.
    #[serde(default, rename = "preferCNAME", skip_serializing_if = "std::ops::Not::not")]
    pub prefer_cname: bool,
    /// How long the hosted zone list is reused, e.g. "1m". Default "60s".
    #[serde(default, rename = "zonesCacheTTL", skip_serializing_if = "Option::is_none")]
    pub zones_cache_ttl: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudflareSpec {
    /// Secret key holding the API token (sent as `Authorization: Bearer`). The token needs
    /// Zone:Read and DNS:Edit on the zones it manages.
    pub api_token: CloudflareToken,
    /// Zones to manage, looked up by name. With neither `zones` nor `zoneIDs`, every zone the
    /// token can read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Zones to manage, by Cloudflare zone id.
    #[serde(default, rename = "zoneIDs", skip_serializing_if = "Vec::is_empty")]
    pub zone_ids: Vec<String>,
    /// Proxy A, AAAA and CNAME records through Cloudflare unless a record says otherwise with
    /// the providerSpecific `external-dns.alpha.kubernetes.io/cloudflare-proxied`
    /// (external-dns' `--cloudflare-proxied`). Proxied records have TTL 1 (automatic).
    /// Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxied: bool,
    /// API base URL. Default "https://api.cloudflare.com/client/v4".
    #[serde(default, rename = "baseURL", skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Record operations per batch request. Default 200 (the Free plan's limit; paid plans
    /// allow 3500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3500))]
    pub batch_size: Option<u32>,
    /// Records per page when listing a zone. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 5000))]
    pub per_page: Option<u32>,
    /// Timeout of one API request, e.g. "30s". Default "30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudflareToken {
    /// Secret and key with the token. The key defaults to "api-token".
    pub secret_ref: CloudflareSecretRef,
}

/// The Secret with the Cloudflare API token, and the key in it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudflareSecretRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoogleSpec {
    /// Project whose managed zones are used (external-dns' --google-project). Default: the
    /// `project_id` of the service-account key, else the project of the metadata server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// A Secret holding a service-account JSON key. Without it, the operator's own Google
    /// identity (GKE Workload Identity, the metadata server): on a namespaced DNSProvider that
    /// is refused unless the operator runs with --namespaced-ambient-credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<GoogleCredentials>,
    /// Managed zones to use, by name or numeric id (external-dns' --zone-id-filter). Default:
    /// every managed zone of the project that `zoneVisibility` admits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// public, private or any (default): the visibility of the managed zones used
    /// (external-dns' --google-zone-visibility).
    #[serde(default)]
    pub zone_visibility: GoogleZoneVisibility,
    /// Record sets (additions plus deletions) in one change (external-dns'
    /// --google-batch-change-size). Default 1000. Cloud DNS's per-change limits (1000
    /// additions, 1000 deletions, 100,000 bytes of data, or the project's quota) apply too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2000))]
    pub batch_change_size: Option<u32>,
    /// Pause between two changes of one pass, e.g. "1s" (external-dns'
    /// --google-batch-change-interval). Default "1s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_change_interval: Option<String>,
    /// API root URL. Default "https://dns.googleapis.com". On a namespaced DNSProvider this is
    /// a custom endpoint: refused unless the operator runs with --namespaced-custom-endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// OAuth2 token endpoint the key's signed assertion is sent to, instead of the key's own
    /// `token_uri` (which is only used when it is Google's). A custom endpoint, as `endpoint`.
    #[serde(default, rename = "tokenURI", skip_serializing_if = "Option::is_none")]
    pub token_uri: Option<String>,
    /// Timeout of one API request, e.g. "30s". Default "30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoogleCredentials {
    /// Secret and key with the service-account JSON key (as `gcloud iam service-accounts keys
    /// create` writes it). The key defaults to "credentials.json".
    pub secret_ref: GoogleSecretRef,
}

/// The Secret with the Google service-account key, and the key in it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoogleSecretRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GoogleZoneVisibility {
    Public,
    Private,
    #[default]
    Any,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PowerDnsSpec {
    /// Base URL of the API (the PowerDNS webserver), e.g. "http://pdns.dns.svc:8081". On a
    /// namespaced DNSProvider this is a custom endpoint: refused unless the operator runs with
    /// --namespaced-custom-endpoint.
    pub url: String,
    /// PowerDNS server id. Default "localhost", as on every stock installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// Secret key holding the API key (PowerDNS `api-key`), sent as X-API-Key.
    pub api_key_secret_ref: SecretKeyRef,
    /// Zones to manage, e.g. ["example.com"]. Default: every zone the server holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// TLS settings for an https URL. The built-in public roots are always trusted; there is
    /// deliberately no switch to skip verification, which would hand the API key to whoever
    /// answers: trust a private CA with `caSecretRef` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<HttpTlsSpec>,
    /// Timeout of one API request, e.g. "10s". Default "10s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// Where the webhook listens. Default "http://localhost:8888", a sidecar in the operator's
    /// pod. A sidecar holds the platform's DNS credentials, so on a namespaced DNSProvider a
    /// loopback URL needs the operator flag --namespaced-ambient-credentials and any other URL
    /// --namespaced-custom-endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Zones to manage, e.g. ["example.com"]. Default: the include entries of the domain
    /// filter the webhook announces (required when it announces a regex filter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Timeout of one request to the webhook, e.g. "10s". Default "10s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Azure DNS or Azure Private DNS (`spec.azure`, `spec.azurePrivateDns`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureSpec {
    /// Subscription holding the zones (external-dns' --azure-subscription-id). Required unless
    /// the azure.json of `credentials.azureConfigSecretRef` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// Resource group holding the zones (external-dns' --azure-resource-group). Default: the
    /// one azure.json names, else every zone of the subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// Zones to manage, by name, e.g. ["example.com"]. Default: every zone found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Who extdns is towards Microsoft Entra ID. Without it, the operator's own identity is
    /// used (Azure Workload Identity's federated token from AZURE_FEDERATED_TOKEN_FILE,
    /// AZURE_CLIENT_ID and AZURE_TENANT_ID, else the node's managed identity through IMDS):
    /// on a namespaced DNSProvider only with --namespaced-ambient-credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<AzureCredentials>,
    /// Client id of the user-assigned managed identity to use when `credentials` is not set
    /// (external-dns' --azure-user-assigned-identity-client-id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_assigned_identity_client_id: Option<String>,
    /// Azure Resource Manager endpoint. Default "https://management.azure.com" (another cloud,
    /// e.g. "https://management.usgovcloudapi.net", or a test server). On a namespaced
    /// DNSProvider a custom endpoint: refused unless the operator runs with
    /// --namespaced-custom-endpoint.
    #[serde(default, rename = "resourceManagerURL", skip_serializing_if = "Option::is_none")]
    pub resource_manager_url: Option<String>,
    /// Microsoft Entra ID authority host. Default "https://login.microsoftonline.com". On a
    /// namespaced DNSProvider a custom endpoint, as `resourceManagerURL`.
    #[serde(default, rename = "authorityHostURL", skip_serializing_if = "Option::is_none")]
    pub authority_host_url: Option<String>,
    /// TLS settings: private CA certificates to trust besides the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<HttpTlsSpec>,
    /// Attempts of one request when Azure throttles (429) or a read fails with 5xx
    /// (external-dns' --azure-maxretries-count). Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: Option<u32>,
    /// Timeout of one API request, e.g. "30s". Default "30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Credentials of an app registration (service principal), from the provider's Secret
/// namespace. Set exactly one of `secretRef` and `azureConfigSecretRef`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureCredentials {
    /// Secret holding the client id, client secret and tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<AzureSecretRef>,
    /// Secret key holding external-dns's azure.json (tenantId, subscriptionId, resourceGroup,
    /// aadClientId, aadClientSecret, useManagedIdentityExtension, useWorkloadIdentityExtension,
    /// userAssignedIdentityID), as external-dns users keep it. A file that asks for a managed
    /// or workload identity uses the operator's identity: on a namespaced DNSProvider only
    /// with --namespaced-ambient-credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_config_secret_ref: Option<SecretKeyRef>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureSecretRef {
    pub name: String,
    /// Key holding the client (application) id. Default "client-id".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_key: Option<String>,
    /// Key holding the client secret. Default "client-secret".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_key: Option<String>,
    /// Key holding the tenant (directory) id. Default "tenant-id".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id_key: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpTlsSpec {
    /// Secret key holding PEM CA certificates to trust besides the public roots (the key
    /// "ca.crt" of a cert-manager Certificate's Secret, for instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsCredentials {
    /// Secret with the access key id and secret access key.
    pub secret_ref: AwsSecretRef,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsSecretRef {
    pub name: String,
    /// Key holding the access key id. Default "access-key-id".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_key: Option<String>,
    /// Key holding the secret access key. Default "secret-access-key".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_key: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Route53ZoneType {
    Public,
    Private,
    #[default]
    Any,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TsigSpec {
    /// Key name as configured on the server, e.g. "externaldns-key".
    pub key_name: String,
    /// hmac-sha256 (default), hmac-sha1, hmac-sha224, hmac-sha384 or hmac-sha512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Secret holding the base64 key material.
    pub secret_ref: SecretKeyRef,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListMethod {
    #[default]
    Axfr,
}

/// A key in a Secret. The Secret is read from the DNSProvider's namespace, or from the
/// operator's namespace for a ClusterDNSProvider.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// Ownership in TXT records, compatible with external-dns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txt: Option<TxtRegistrySpec>,
    /// No ownership records. extdns then never deletes records (it cannot tell whose they
    /// are) and may overwrite existing ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub none: Option<Empty>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Empty {}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TxtRegistrySpec {
    /// Owner id written to TXT records (external-dns --txt-owner-id). Use the same value as
    /// your external-dns deployment to take its records over without changes. Default "default".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// external-dns --txt-prefix; may contain %{record_type}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// external-dns --txt-suffix; may contain %{record_type}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// external-dns --txt-wildcard-replacement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard_replacement: Option<String>,
    /// Encrypt TXT contents with AES-256-GCM (external-dns --txt-encrypt-aes-key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<TxtEncryption>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TxtEncryption {
    /// Secret key holding the 32-byte AES key.
    pub secret_ref: SecretKeyRef,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained calls per second.
    pub qps: f64,
    /// Calls allowed at once before qps applies. Default: qps rounded up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// Observed state of a provider.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsProviderStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: backend reachable, credentials accepted, zones found.
    #[serde(default)]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Zones found on the backend and admitted by `zones`.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Records this provider owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_records: Option<i64>,
    /// When records were last listed from the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<Time>,
}

/// A DNS backend serving DNSEndpoints of its own namespace.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "extdns.io",
    version = "v1alpha1",
    kind = "DNSProvider",
    plural = "dnsproviders",
    shortname = "dnsp",
    namespaced,
    status = "DnsProviderStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Records","type":"integer","jsonPath":".status.managedRecords"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct DNSProviderSpec {
    #[serde(flatten)]
    pub spec: ProviderSpec,
}

/// A DNS backend serving DNSEndpoints of every namespace matched by `namespaceSelector`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "extdns.io",
    version = "v1alpha1",
    kind = "ClusterDNSProvider",
    plural = "clusterdnsproviders",
    shortname = "cdnsp",
    status = "DnsProviderStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Records","type":"integer","jsonPath":".status.managedRecords"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct ClusterDNSProviderSpec {
    #[serde(flatten)]
    pub spec: ProviderSpec,
}
