//! Tenants kept in their lane. Pure decisions about provider objects, called by the provider
//! controller:
//!
//! - [`check_provider`]: what a namespaced DNSProvider may use (no ambient AWS identity, no
//!   custom endpoint, no embedded server) unless the operator's [`TenancyFlags`] allow it.
//! - [`assign_listeners`]: which provider gets an embedded listen address when several want
//!   overlapping ones (ClusterDNSProviders first, then the oldest).
//! - [`admit_providers`]: both of the above for every provider object, and [`start_order`],
//!   the order in which backends are (re)built so cluster providers bind first.
//! - [`check_name`]: which names a namespace may claim at a ClusterDNSProvider
//!   (`namespaceDomains`, the `extdns.io/allowed-domains` namespace annotation).
//! - [`public_error`]: what of a backend error may be shown in a namespaced object's status.
//!
//! Which namespace a published name belongs to is decided by the planner
//! (`crate::dns::plan`), which knows the records.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use crate::config::TenancyFlags;
use crate::crd::dnsprovider::AzureSpec;
use crate::crd::dnsprovider::ProviderSpec;
use crate::crd::{BackendRef, ProviderId, ProviderRefKind};
use crate::dns::ProviderError;

/// Provider condition reason: the spec uses something the operator does not let namespaced
/// providers use.
pub const REASON_NOT_PERMITTED: &str = "NotPermitted";
/// Provider condition reason: another provider holds the embedded listen address.
pub const REASON_LISTENER_CONFLICT: &str = "ListenerConflict";
/// Record state: the namespace may not claim this name at this ClusterDNSProvider.
pub const STATE_NAME_NOT_ALLOWED: &str = "NameNotAllowed";
/// Namespace annotation listing the domains the namespace may claim, set by the platform team.
pub const ALLOWED_DOMAINS_ANNOTATION: &str = "extdns.io/allowed-domains";
/// Placeholder in `namespaceDomains` entries.
pub const NAMESPACE_PLACEHOLDER: &str = "{namespace}";

/// The flag that allows each refused capability.
pub const FLAG_AMBIENT: &str = "--namespaced-ambient-credentials";
pub const FLAG_ENDPOINT: &str = "--namespaced-custom-endpoint";
pub const FLAG_EMBEDDED: &str = "--namespaced-embedded";

/// Default of `spec.embedded.listen`, as the backend applies it.
const DEFAULT_LISTEN: &str = crate::crd::dnsprovider::DEFAULT_EMBEDDED_LISTEN;

/// A namespaced provider uses something only the platform team may grant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field}: {what} is not permitted for a namespaced DNSProvider unless the operator runs with {flag}; use a ClusterDNSProvider or ask the platform team"
)]
pub struct Refusal {
    /// The spec field at fault, e.g. `spec.route53.credentials`.
    pub field: &'static str,
    pub what: &'static str,
    /// The operator flag that would allow it.
    pub flag: &'static str,
}

/// Decides whether a provider spec may be turned into a backend. ClusterDNSProviders may use
/// everything; namespaced DNSProviders may not use the operator's ambient AWS identity (a
/// `route53` block without `credentials`, which includes `assumeRoleArn` without
/// `credentials`), a custom `route53.endpoint`, or the `embedded` backend, unless `flags`
/// allow it. The first refused field in that order is reported.
///
/// Controller hook: call before building a provider's backend; a refused provider gets no
/// backend, `Ready=False` with reason [`REASON_NOT_PERMITTED`] and the refusal as message, and
/// its records the same state.
pub fn check_provider(spec: &ProviderSpec, namespaced: bool, flags: &TenancyFlags) -> Result<(), Refusal> {
    if !namespaced {
        return Ok(());
    }
    // Every block is checked, not only "the" backend: a spec with two blocks is invalid, but
    // a refusal tells its author more than the count does.
    spec.backends().into_iter().try_for_each(|b| check_backend(b, flags))
}

fn check_backend(block: BackendRef<'_>, flags: &TenancyFlags) -> Result<(), Refusal> {
    let refuse = |field, what, flag| Err(Refusal { field, what, flag });
    match block {
        BackendRef::InMemory(_) | BackendRef::Rfc2136(_) => Ok(()),
        BackendRef::Embedded(_) if !flags.namespaced_embedded => {
            refuse("spec.embedded", "the embedded DNS server (a listening socket in the operator's pod)", FLAG_EMBEDDED)
        }
        BackendRef::Embedded(_) => Ok(()),
        BackendRef::Route53(r) => {
            if r.credentials.is_none() && !flags.namespaced_ambient_credentials {
                return if r.assume_role_arn.is_some() {
                    refuse(
                        "spec.route53.assumeRoleArn",
                        "assuming a role with the operator's own AWS identity (spec.route53.credentials is not set)",
                        FLAG_AMBIENT,
                    )
                } else {
                    refuse(
                        "spec.route53.credentials",
                        "leaving it unset, which signs requests with the operator's own AWS identity (environment, IRSA web identity, profile, instance metadata)",
                        FLAG_AMBIENT,
                    )
                };
            }
            if r.endpoint.is_some() && !flags.namespaced_custom_endpoint {
                return refuse(
                    "spec.route53.endpoint",
                    "a custom API endpoint (the operator would send requests to any URL a tenant names)",
                    FLAG_ENDPOINT,
                );
            }
            Ok(())
        }
        // The token always comes from the provider's own namespace; only the URL is a grant.
        BackendRef::Cloudflare(c) if c.base_url.is_some() && !flags.namespaced_custom_endpoint => refuse(
            "spec.cloudflare.baseURL",
            "a custom API base URL (the operator would send requests, with the token, to any URL a tenant names)",
            FLAG_ENDPOINT,
        ),
        BackendRef::Cloudflare(_) => Ok(()),
        BackendRef::Google(g) => {
            if g.credentials.is_none() && !flags.namespaced_ambient_credentials {
                return refuse(
                    "spec.google.credentials",
                    "leaving it unset, which acts as the operator's own Google identity (GKE Workload Identity, the metadata server)",
                    FLAG_AMBIENT,
                );
            }
            if !flags.namespaced_custom_endpoint {
                if g.endpoint.is_some() {
                    return refuse(
                        "spec.google.endpoint",
                        "a custom API endpoint (the operator would send requests, with its access token, to any URL a tenant names)",
                        FLAG_ENDPOINT,
                    );
                }
                if g.token_uri.is_some() {
                    return refuse(
                        "spec.google.tokenURI",
                        "a custom token endpoint (the operator would send signed assertions to any URL a tenant names)",
                        FLAG_ENDPOINT,
                    );
                }
            }
            Ok(())
        }
        // PowerDNS has no default endpoint: its URL is always one the tenant names, and an
        // HTTP request to any URL inside the cluster network (with the answer's error text
        // shown in status) is the same grant as a custom Route53 endpoint.
        BackendRef::PowerDns(_) if !flags.namespaced_custom_endpoint => refuse(
            "spec.powerdns.url",
            "an HTTP API URL (the operator would send requests to any URL a tenant names)",
            FLAG_ENDPOINT,
        ),
        BackendRef::PowerDns(_) => Ok(()),
        BackendRef::Azure(a) => check_azure(a, AZURE_FIELDS, flags),
        BackendRef::AzurePrivateDns(a) => check_azure(a, AZURE_PRIVATE_FIELDS, flags),
        BackendRef::Webhook(w) => {
            let url = w.url.as_deref().unwrap_or(crate::dns::providers::webhook::DEFAULT_URL);
            // A webhook on loopback is a sidecar of the operator, holding the platform's DNS
            // credentials: using it is using the operator's identity.
            if is_loopback_url(url) {
                if !flags.namespaced_ambient_credentials {
                    return refuse(
                        "spec.webhook.url",
                        "a webhook on localhost (a sidecar of the operator, acting with the platform's DNS credentials)",
                        FLAG_AMBIENT,
                    );
                }
            } else if !flags.namespaced_custom_endpoint {
                return refuse(
                    "spec.webhook.url",
                    "a webhook URL outside the operator's pod (the operator would send requests to any URL a tenant names)",
                    FLAG_ENDPOINT,
                );
            }
            Ok(())
        }
    }
}

/// The spec fields of one Azure flavour: credentials, resourceManagerURL, authorityHostURL.
type AzureFields = [&'static str; 3];
const AZURE_FIELDS: AzureFields =
    ["spec.azure.credentials", "spec.azure.resourceManagerURL", "spec.azure.authorityHostURL"];
const AZURE_PRIVATE_FIELDS: AzureFields = [
    "spec.azurePrivateDns.credentials",
    "spec.azurePrivateDns.resourceManagerURL",
    "spec.azurePrivateDns.authorityHostURL",
];

/// Azure: no `credentials` is the operator's identity (workload identity or managed
/// identity); a custom ARM endpoint or authority host is a custom endpoint (the token request
/// and the bearer token would go to any URL a tenant names). An azure.json asking for a
/// managed identity is checked when the Secret is read (the spec does not show it).
fn check_azure(a: &AzureSpec, fields: AzureFields, flags: &TenancyFlags) -> Result<(), Refusal> {
    let [credentials, arm, authority] = fields;
    if a.credentials.is_none() && !flags.namespaced_ambient_credentials {
        return Err(Refusal {
            field: credentials,
            what:
                "leaving it unset, which uses the operator's own Azure identity (workload identity, managed identity)",
            flag: FLAG_AMBIENT,
        });
    }
    if !flags.namespaced_custom_endpoint {
        let custom = |url: &Option<String>, field| url.is_some().then_some(field);
        if let Some(field) = custom(&a.resource_manager_url, arm).or(custom(&a.authority_host_url, authority)) {
            return Err(Refusal {
                field,
                what: "a custom Azure endpoint (the operator would send tokens and requests to any URL a tenant names)",
                flag: FLAG_ENDPOINT,
            });
        }
    }
    Ok(())
}

/// True when `url` names this host: `localhost` (and names below it), 127.0.0.0/8 or ::1, or
/// something that does not parse (treated as the stricter case).
fn is_loopback_url(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else { return true };
    let Some(host) = u.host_str() else { return true };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified() || ip.to_canonical().is_loopback(),
        Err(_) => {
            let d = host.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    }
}

/// Why a provider gets no backend, decided before any backend is built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    NotPermitted(#[from] Refusal),
    /// Another provider holds an overlapping embedded listen address; the message names it.
    #[error("{0}")]
    ListenerTaken(String),
}

impl Refused {
    /// Condition reason and record state.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::NotPermitted(_) => REASON_NOT_PERMITTED,
            Refused::ListenerTaken(_) => REASON_LISTENER_CONFLICT,
        }
    }
}

/// One embedded provider that wants to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerCandidate {
    pub id: ProviderId,
    /// Creation time as RFC 3339 UTC, or empty when unknown (sorts first).
    pub created: String,
    pub listen: SocketAddr,
}

/// True when two listen addresses cannot both be bound: same port (UDP and TCP are both
/// used) and the same address, or either is a wildcard. A wildcard of either family counts
/// as overlapping every address: `[::]` also takes IPv4 on dual-stack hosts, and keeping the
/// rule simple keeps it predictable. Port 0 (any free port) never overlaps.
pub fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    let (ia, ib) = (a.ip().to_canonical(), b.ip().to_canonical());
    a.port() == b.port() && a.port() != 0 && (ia == ib || ia.is_unspecified() || ib.is_unspecified())
}

/// Precedence of providers: ClusterDNSProviders first, then by creation time, then by name
/// (namespace included), so the same provider wins on every pass, replica and restart.
fn precedence(id: &ProviderId, created: &str) -> (bool, String, Option<String>, String) {
    (
        id.kind != ProviderRefKind::ClusterDNSProvider,
        created.to_string(),
        id.namespace.as_deref().map(str::to_string),
        id.name.to_string(),
    )
}

/// Decides which embedded providers may bind their address. Candidates are taken in
/// precedence order (ClusterDNSProviders first, then the oldest by creationTimestamp, then by
/// name); one whose address overlaps (see [`overlaps`]) one already granted is refused with a
/// message naming the provider that holds it. A refused candidate blocks nobody.
///
/// Controller hook: call with every embedded provider that passed [`check_provider`], before
/// backends are (re)built; see [`admit_providers`], which does both.
pub fn assign_listeners(candidates: &[ListenerCandidate]) -> BTreeMap<ProviderId, Result<(), String>> {
    let mut order: Vec<&ListenerCandidate> = candidates.iter().collect();
    order.sort_by_key(|c| precedence(&c.id, &c.created));
    let mut granted: Vec<&ListenerCandidate> = Vec::new();
    let mut out = BTreeMap::new();
    for c in order {
        match granted.iter().find(|g| overlaps(g.listen, c.listen)) {
            Some(holder) => {
                out.insert(
                    c.id.clone(),
                    Err(format!(
                        "spec.embedded.listen: {} overlaps {}, which {} holds (ClusterDNSProviders come first, then the oldest provider); choose another address or port",
                        c.listen, holder.listen, holder.id
                    )),
                );
            }
            None => {
                granted.push(c);
                out.insert(c.id.clone(), Ok(()));
            }
        }
    }
    out
}

/// The embedded listen address of a spec, when it has an embedded block with a valid one.
/// An invalid address is left to the backend, which reports it with the field.
pub fn embedded_listen(spec: &ProviderSpec) -> Option<SocketAddr> {
    spec.embedded.as_ref().and_then(|e| e.listen.as_deref().unwrap_or(DEFAULT_LISTEN).parse().ok())
}

/// A provider object as [`admit_providers`] needs it.
pub struct ProviderFacts<'a> {
    pub id: &'a ProviderId,
    /// Creation time as RFC 3339 UTC, or empty when unknown.
    pub created: &'a str,
    pub spec: &'a ProviderSpec,
}

/// For every provider: may its backend be built? Runs [`check_provider`] on each, then
/// [`assign_listeners`] over the embedded ones that passed.
///
/// Controller hook: call once per pass over all provider objects (deleting ones included:
/// they still serve) before workers are (re)built. Make the result part of each worker's
/// fingerprint so that a provider whose verdict changes (a ClusterDNSProvider created on an
/// address a DNSProvider holds) is rebuilt; close every worker to be rebuilt before building
/// any, then build in [`start_order`], so a granted address is free when its holder binds.
pub fn admit_providers(
    providers: &[ProviderFacts<'_>],
    flags: &TenancyFlags,
) -> BTreeMap<ProviderId, Result<(), Refused>> {
    let mut out: BTreeMap<ProviderId, Result<(), Refused>> = BTreeMap::new();
    let mut candidates = Vec::new();
    for p in providers {
        let namespaced = p.id.kind == ProviderRefKind::DNSProvider;
        match check_provider(p.spec, namespaced, flags) {
            Err(r) => {
                out.insert(p.id.clone(), Err(r.into()));
            }
            Ok(()) => {
                out.insert(p.id.clone(), Ok(()));
                if let Some(listen) = embedded_listen(p.spec) {
                    candidates.push(ListenerCandidate { id: p.id.clone(), created: p.created.to_string(), listen });
                }
            }
        }
    }
    for (id, r) in assign_listeners(&candidates) {
        if let Err(m) = r {
            out.insert(id, Err(Refused::ListenerTaken(m)));
        }
    }
    out
}

/// Indices of `providers` in the order their backends must be built: ClusterDNSProviders
/// first, then the oldest, so that after a restart the provider granted an address binds it
/// before anyone else tries.
pub fn start_order(providers: &[ProviderFacts<'_>]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..providers.len()).collect();
    idx.sort_by_key(|&i| precedence(providers[i].id, providers[i].created));
    idx
}

/// A name a namespace may not claim at a ClusterDNSProvider.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct NameRefusal {
    pub name: String,
    pub namespace: String,
    /// The domains the namespace may claim there.
    pub allowed: Vec<String>,
}

impl fmt::Display for NameRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allowed.is_empty() {
            write!(
                f,
                "{}: namespace {} may claim no names at this provider (spec.namespaceDomains admits none and the namespace has no {} annotation)",
                self.name, self.namespace, ALLOWED_DOMAINS_ANNOTATION
            )
        } else {
            write!(
                f,
                "{}: namespace {} may only claim names at or below {} (spec.namespaceDomains, {} annotation)",
                self.name,
                self.namespace,
                self.allowed.join(", "),
                ALLOWED_DOMAINS_ANNOTATION
            )
        }
    }
}

fn normalize_domain(d: &str) -> String {
    d.trim().trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase()
}

/// The domains `namespace` may claim at a provider, or `None` when the provider restricts
/// nothing (no `namespaceDomains`, no `namespaceDomainsFromAnnotation`) or is namespaced.
pub fn allowed_domains(
    spec: &ProviderSpec,
    namespaced: bool,
    namespace: &str,
    annotations: &BTreeMap<String, String>,
) -> Option<Vec<String>> {
    if namespaced || (spec.namespace_domains.is_none() && !spec.namespace_domains_from_annotation) {
        return None;
    }
    let mut out: Vec<String> = spec
        .namespace_domains
        .iter()
        .flatten()
        .map(|p| normalize_domain(&p.replace(NAMESPACE_PLACEHOLDER, namespace)))
        .collect();
    if spec.namespace_domains_from_annotation {
        if let Some(v) = annotations.get(ALLOWED_DOMAINS_ANNOTATION) {
            out.extend(v.split([',', ' ', '\n', '\t']).map(normalize_domain));
        }
    }
    out.retain(|d| !d.is_empty());
    out.sort();
    out.dedup();
    Some(out)
}

/// Whether `namespace` may claim `dns_name` (normalised) at a provider: always at a
/// namespaced DNSProvider or an unrestricted ClusterDNSProvider, else only names equal to or
/// below an entry of [`allowed_domains`]. `annotations` are the Namespace's.
///
/// Controller hook: call when routing each valid record to a ClusterDNSProvider; a refused
/// record is not routed there (so it never counts as a claim) and gets the state
/// [`STATE_NAME_NOT_ALLOWED`] with the refusal as message.
pub fn check_name(
    spec: &ProviderSpec,
    namespaced: bool,
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    dns_name: &str,
) -> Result<(), NameRefusal> {
    let Some(allowed) = allowed_domains(spec, namespaced, namespace, annotations) else { return Ok(()) };
    let name = normalize_domain(dns_name);
    let below = |d: &String| name == *d || (name.len() > d.len() && name.ends_with(&format!(".{d}")));
    if allowed.iter().any(below) {
        return Ok(());
    }
    Err(NameRefusal { name, namespace: namespace.to_string(), allowed })
}

/// What of a backend error may be shown in a provider's and its records' status. A
/// namespaced provider names its own hosts and ports, so the OS error of a failed connection
/// ("connection refused" versus a timeout) would tell a tenant which ports are open inside
/// the cluster network: its status says only that the backend is unreachable. The details
/// stay in the operator log. Cluster providers, written by the platform team, keep them.
///
/// Controller hook: apply to every backend error before it goes into a status message (the
/// provider's `Ready` condition and each record's message); log the original.
pub fn public_error(err: &ProviderError, namespaced: bool) -> ProviderError {
    match err {
        ProviderError::Unreachable(_) if namespaced => ProviderError::Unreachable(
            "no usable answer from the configured server (details in the operator log)".into(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::dnsprovider::{AwsCredentials, AwsSecretRef, EmbeddedSpec, Route53Spec};

    fn ns_id(ns: &str, name: &str) -> ProviderId {
        ProviderId { kind: ProviderRefKind::DNSProvider, namespace: Some(ns.into()), name: name.into() }
    }

    fn cluster_id(name: &str) -> ProviderId {
        ProviderId { kind: ProviderRefKind::ClusterDNSProvider, namespace: None, name: name.into() }
    }

    fn route53(credentials: bool, role: bool, endpoint: bool) -> ProviderSpec {
        ProviderSpec {
            route53: Some(Route53Spec {
                region: "us-east-1".into(),
                credentials: credentials
                    .then(|| AwsCredentials { secret_ref: AwsSecretRef { name: "aws".into(), ..Default::default() } }),
                assume_role_arn: role.then(|| "arn:aws:iam::1:role/dns".into()),
                endpoint: endpoint.then(|| "http://127.0.0.1:5000".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn embedded(listen: Option<&str>) -> ProviderSpec {
        ProviderSpec {
            embedded: Some(EmbeddedSpec {
                zones: vec!["example.com".into()],
                listen: listen.map(str::to_string),
                nameservers: vec![],
            }),
            ..Default::default()
        }
    }

    const NONE: TenancyFlags = TenancyFlags {
        namespaced_ambient_credentials: false,
        namespaced_custom_endpoint: false,
        namespaced_embedded: false,
    };
    const ALL: TenancyFlags = TenancyFlags {
        namespaced_ambient_credentials: true,
        namespaced_custom_endpoint: true,
        namespaced_embedded: true,
    };

    #[test]
    fn namespaced_route53_without_credentials_is_refused_naming_field_and_flag() {
        let e = check_provider(&route53(false, false, false), true, &NONE).unwrap_err();
        assert_eq!((e.field, e.flag), ("spec.route53.credentials", FLAG_AMBIENT));
        let msg = e.to_string();
        assert!(msg.starts_with("spec.route53.credentials:"), "{msg}");
        assert!(msg.contains("--namespaced-ambient-credentials"), "{msg}");
        assert!(check_provider(&route53(false, false, false), true, &ALL).is_ok());
        let only_ambient = TenancyFlags { namespaced_ambient_credentials: true, ..NONE };
        assert!(check_provider(&route53(false, false, false), true, &only_ambient).is_ok());
    }

    #[test]
    fn assume_role_needs_own_credentials_or_the_flag() {
        let e = check_provider(&route53(false, true, false), true, &NONE).unwrap_err();
        assert_eq!((e.field, e.flag), ("spec.route53.assumeRoleArn", FLAG_AMBIENT));
        assert!(check_provider(&route53(true, true, false), true, &NONE).is_ok(), "own Secret, own role: fine");
    }

    #[test]
    fn custom_endpoint_has_its_own_flag() {
        let e = check_provider(&route53(true, false, true), true, &NONE).unwrap_err();
        assert_eq!((e.field, e.flag), ("spec.route53.endpoint", FLAG_ENDPOINT));
        let endpoint = TenancyFlags { namespaced_custom_endpoint: true, ..NONE };
        assert!(check_provider(&route53(true, false, true), true, &endpoint).is_ok());
        // Ambient identity is reported first: it is the bigger grant.
        let e = check_provider(&route53(false, false, true), true, &endpoint).unwrap_err();
        assert_eq!(e.flag, FLAG_AMBIENT);
    }

    #[test]
    fn namespaced_cloudflare_base_url_needs_the_endpoint_flag() {
        use crate::crd::dnsprovider::CloudflareSpec;
        let spec = |base_url: Option<&str>| ProviderSpec {
            cloudflare: Some(CloudflareSpec { base_url: base_url.map(str::to_string), ..Default::default() }),
            ..Default::default()
        };
        assert!(check_provider(&spec(None), true, &NONE).is_ok(), "the token is always the tenant's own");
        let e = check_provider(&spec(Some("http://127.0.0.1:9")), true, &NONE).unwrap_err();
        assert_eq!((e.field, e.flag), ("spec.cloudflare.baseURL", FLAG_ENDPOINT));
        assert!(e.to_string().starts_with("spec.cloudflare.baseURL:"), "{e}");
        let endpoint = TenancyFlags { namespaced_custom_endpoint: true, ..NONE };
        assert!(check_provider(&spec(Some("http://127.0.0.1:9")), true, &endpoint).is_ok());
        assert!(check_provider(&spec(Some("http://127.0.0.1:9")), false, &NONE).is_ok());
    }

    #[test]
    fn namespaced_google_needs_its_own_key_and_google_endpoints() {
        use crate::crd::dnsprovider::{GoogleCredentials, GoogleSecretRef, GoogleSpec};
        let spec = |key: bool, endpoint: bool, token_uri: bool| ProviderSpec {
            google: Some(GoogleSpec {
                credentials: key
                    .then(|| GoogleCredentials { secret_ref: GoogleSecretRef { name: "gcp".into(), key: None } }),
                endpoint: endpoint.then(|| "http://127.0.0.1:9".into()),
                token_uri: token_uri.then(|| "http://127.0.0.1:9/token".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check_provider(&spec(true, false, false), true, &NONE).is_ok(), "a key of the tenant's own");
        let e = check_provider(&spec(false, false, false), true, &NONE).unwrap_err();
        assert_eq!((e.field, e.flag), ("spec.google.credentials", FLAG_AMBIENT));
        assert!(e.to_string().contains("Workload Identity"), "{e}");
        assert!(check_provider(&spec(false, false, false), false, &NONE).is_ok(), "a ClusterDNSProvider may");
        let ambient = TenancyFlags { namespaced_ambient_credentials: true, ..NONE };
        assert!(check_provider(&spec(false, false, false), true, &ambient).is_ok());
        let e = check_provider(&spec(true, true, false), true, &NONE).unwrap_err();
        assert_eq!((e.field, e.flag), ("spec.google.endpoint", FLAG_ENDPOINT));
        let e = check_provider(&spec(true, false, true), true, &NONE).unwrap_err();
        assert_eq!((e.field, e.flag), ("spec.google.tokenURI", FLAG_ENDPOINT));
        let endpoint = TenancyFlags { namespaced_custom_endpoint: true, ..NONE };
        assert!(check_provider(&spec(true, true, true), true, &endpoint).is_ok());
    }

    #[test]
    fn namespaced_embedded_needs_the_flag() {
        let e = check_provider(&embedded(None), true, &NONE).unwrap_err();
        assert_eq!((e.field, e.flag), ("spec.embedded", FLAG_EMBEDDED));
        let flags = TenancyFlags { namespaced_embedded: true, ..NONE };
        assert!(check_provider(&embedded(None), true, &flags).is_ok());
    }

    fn powerdns() -> ProviderSpec {
        ProviderSpec {
            powerdns: Some(crate::crd::dnsprovider::PowerDnsSpec {
                url: "http://10.0.0.5:8081".into(),
                api_key_secret_ref: crate::crd::dnsprovider::SecretKeyRef {
                    name: "pdns".into(),
                    key: "api-key".into(),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn namespaced_powerdns_url_is_a_custom_endpoint() {
        let e = check_provider(&powerdns(), true, &NONE).unwrap_err();
        assert_eq!((e.field, e.flag), ("spec.powerdns.url", FLAG_ENDPOINT));
        let endpoint = TenancyFlags { namespaced_custom_endpoint: true, ..NONE };
        assert!(check_provider(&powerdns(), true, &endpoint).is_ok());
        assert!(check_provider(&powerdns(), false, &NONE).is_ok(), "cluster providers may");
    }

    fn webhook(url: Option<&str>) -> ProviderSpec {
        ProviderSpec {
            webhook: Some(crate::crd::dnsprovider::WebhookSpec { url: url.map(str::to_string), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn namespaced_webhook_on_localhost_is_ambient_elsewhere_a_custom_endpoint() {
        for url in [None, Some("http://localhost:8888"), Some("http://127.0.0.1:8888"), Some("http://[::1]:8888")] {
            let e = check_provider(&webhook(url), true, &NONE).unwrap_err();
            assert_eq!((e.field, e.flag), ("spec.webhook.url", FLAG_AMBIENT), "{url:?}");
            let ambient = TenancyFlags { namespaced_ambient_credentials: true, ..NONE };
            assert!(check_provider(&webhook(url), true, &ambient).is_ok());
        }
        let far = webhook(Some("http://dns-webhook.tenant.svc:8888"));
        let e = check_provider(&far, true, &NONE).unwrap_err();
        assert_eq!(e.flag, FLAG_ENDPOINT);
        let endpoint = TenancyFlags { namespaced_custom_endpoint: true, ..NONE };
        assert!(check_provider(&far, true, &endpoint).is_ok());
        assert!(check_provider(&webhook(None), false, &NONE).is_ok(), "cluster providers may");
    }

    fn azure(private: bool, credentials: bool, arm: bool, authority: bool) -> ProviderSpec {
        let a = crate::crd::dnsprovider::AzureSpec {
            subscription_id: Some("sub".into()),
            credentials: credentials.then(Default::default),
            resource_manager_url: arm.then(|| "https://arm.example".into()),
            authority_host_url: authority.then(|| "https://login.example".into()),
            ..Default::default()
        };
        if private {
            ProviderSpec { azure_private_dns: Some(a), ..Default::default() }
        } else {
            ProviderSpec { azure: Some(a), ..Default::default() }
        }
    }

    #[test]
    fn namespaced_azure_needs_credentials_and_the_default_endpoints() {
        for (private, prefix) in [(false, "spec.azure."), (true, "spec.azurePrivateDns.")] {
            let r = check_provider(&azure(private, false, false, false), true, &NONE).unwrap_err();
            assert_eq!((r.field.to_string(), r.flag), (format!("{prefix}credentials"), FLAG_AMBIENT));
            let ambient = TenancyFlags { namespaced_ambient_credentials: true, ..NONE };
            assert!(check_provider(&azure(private, false, false, false), true, &ambient).is_ok());
            assert!(check_provider(&azure(private, true, false, false), true, &NONE).is_ok());
            let r = check_provider(&azure(private, true, true, false), true, &NONE).unwrap_err();
            assert_eq!((r.field.to_string(), r.flag), (format!("{prefix}resourceManagerURL"), FLAG_ENDPOINT));
            let r = check_provider(&azure(private, true, false, true), true, &NONE).unwrap_err();
            assert_eq!((r.field.to_string(), r.flag), (format!("{prefix}authorityHostURL"), FLAG_ENDPOINT));
            let endpoint = TenancyFlags { namespaced_custom_endpoint: true, ..NONE };
            assert!(check_provider(&azure(private, true, true, true), true, &endpoint).is_ok());
            assert!(check_provider(&azure(private, false, true, true), false, &NONE).is_ok(), "cluster providers");
        }
    }

    #[test]
    fn cluster_providers_may_use_everything() {
        for spec in [route53(false, false, false), route53(false, true, true), embedded(Some("0.0.0.0:53"))] {
            assert!(check_provider(&spec, false, &NONE).is_ok());
        }
    }

    #[test]
    fn overlap_rules() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(a("127.0.0.1:5353"), a("127.0.0.1:5353")));
        assert!(!overlaps(a("127.0.0.1:5353"), a("127.0.0.1:5354")));
        assert!(!overlaps(a("127.0.0.1:5353"), a("127.0.0.2:5353")));
        assert!(overlaps(a("0.0.0.0:5353"), a("127.0.0.2:5353")));
        assert!(overlaps(a("127.0.0.2:5353"), a("0.0.0.0:5353")));
        assert!(overlaps(a("[::]:5353"), a("127.0.0.1:5353")));
        assert!(overlaps(a("[::ffff:127.0.0.1]:5353"), a("127.0.0.1:5353")));
        assert!(!overlaps(a("[::1]:5353"), a("127.0.0.1:5353")));
        assert!(!overlaps(a("127.0.0.1:0"), a("127.0.0.1:0")), "port 0 is any free port");
    }

    fn cand(id: ProviderId, created: &str, listen: &str) -> ListenerCandidate {
        ListenerCandidate { id, created: created.into(), listen: listen.parse().unwrap() }
    }

    #[test]
    fn cluster_provider_wins_an_address_even_when_younger() {
        let tenant = ns_id("alice", "dns");
        let platform = cluster_id("platform");
        let cands = vec![
            cand(tenant.clone(), "2026-01-01T00:00:00Z", "127.0.0.1:5353"),
            cand(platform.clone(), "2026-06-01T00:00:00Z", "127.0.0.1:5353"),
        ];
        let out = assign_listeners(&cands);
        assert_eq!(out[&platform], Ok(()));
        let msg = out[&tenant].clone().unwrap_err();
        assert!(msg.contains("ClusterDNSProvider/platform") && msg.contains("127.0.0.1:5353"), "{msg}");
        // The input order does not matter.
        let reversed: Vec<ListenerCandidate> = cands.into_iter().rev().collect();
        assert_eq!(assign_listeners(&reversed), out);
    }

    #[test]
    fn wildcard_overlaps_specific_and_oldest_wins_among_equals() {
        let old = ns_id("alice", "dns");
        let young = ns_id("bob", "dns");
        let other = ns_id("carol", "dns");
        let out = assign_listeners(&[
            cand(young.clone(), "2026-02-01T00:00:00Z", "0.0.0.0:5353"),
            cand(old.clone(), "2026-01-01T00:00:00Z", "127.0.0.1:5353"),
            cand(other.clone(), "2026-03-01T00:00:00Z", "127.0.0.1:5354"),
        ]);
        assert_eq!(out[&old], Ok(()));
        assert!(out[&young].as_ref().unwrap_err().contains("DNSProvider/alice/dns"));
        assert_eq!(out[&other], Ok(()));
        // Same creation time: the name decides, the same way every time.
        let a = ns_id("a", "dns");
        let b = ns_id("b", "dns");
        let out = assign_listeners(&[
            cand(b.clone(), "2026-01-01T00:00:00Z", "127.0.0.1:5353"),
            cand(a.clone(), "2026-01-01T00:00:00Z", "127.0.0.1:5353"),
        ]);
        assert_eq!(out[&a], Ok(()));
        assert!(out[&b].is_err());
    }

    #[test]
    fn a_refused_candidate_blocks_nobody() {
        let platform = cluster_id("platform");
        let loser = ns_id("alice", "wild");
        let bystander = ns_id("bob", "dns");
        let out = assign_listeners(&[
            cand(platform.clone(), "2026-05-01T00:00:00Z", "127.0.0.1:5353"),
            cand(loser.clone(), "2026-01-01T00:00:00Z", "0.0.0.0:5353"),
            cand(bystander.clone(), "2026-02-01T00:00:00Z", "127.0.0.2:5353"),
        ]);
        assert_eq!(out[&platform], Ok(()));
        assert!(out[&loser].is_err());
        assert_eq!(out[&bystander], Ok(()));
    }

    #[test]
    fn admit_providers_combines_permission_and_listeners() {
        let platform = cluster_id("platform");
        let tenant = ns_id("alice", "dns");
        let r53 = ns_id("alice", "r53");
        let (e1, e2, r) =
            (embedded(Some("127.0.0.1:5353")), embedded(Some("127.0.0.1:5353")), route53(false, false, false));
        let facts = [
            ProviderFacts { id: &tenant, created: "2026-01-01T00:00:00Z", spec: &e1 },
            ProviderFacts { id: &platform, created: "2026-02-01T00:00:00Z", spec: &e2 },
            ProviderFacts { id: &r53, created: "2026-01-01T00:00:00Z", spec: &r },
        ];
        let out = admit_providers(&facts, &NONE);
        assert_eq!(out[&platform], Ok(()));
        assert_eq!(out[&tenant].as_ref().unwrap_err().reason(), REASON_NOT_PERMITTED);
        assert_eq!(out[&r53].as_ref().unwrap_err().reason(), REASON_NOT_PERMITTED);
        let out = admit_providers(&facts, &ALL);
        assert_eq!(out[&platform], Ok(()));
        assert_eq!(out[&tenant].as_ref().unwrap_err().reason(), REASON_LISTENER_CONFLICT);
        assert_eq!(out[&r53], Ok(()));
        // Cluster providers are built first.
        assert_eq!(start_order(&facts), vec![1, 0, 2]);
    }

    #[test]
    fn default_listen_counts_as_wildcard() {
        assert_eq!(embedded_listen(&embedded(None)), Some("0.0.0.0:5353".parse().unwrap()));
        assert_eq!(embedded_listen(&embedded(Some("not an address"))), None);
        assert_eq!(embedded_listen(&route53(true, false, false)), None);
    }

    fn restricted(patterns: Option<&[&str]>, annotation: bool) -> ProviderSpec {
        ProviderSpec {
            namespace_domains: patterns.map(|p| p.iter().map(|s| s.to_string()).collect()),
            namespace_domains_from_annotation: annotation,
            ..Default::default()
        }
    }

    #[test]
    fn namespace_domains_pattern() {
        let spec = restricted(Some(&["{namespace}.apps.example.com."]), false);
        let none = BTreeMap::new();
        assert!(check_name(&spec, false, "alice", &none, "alice.apps.example.com").is_ok());
        assert!(check_name(&spec, false, "alice", &none, "web.alice.apps.example.com").is_ok());
        assert!(check_name(&spec, false, "alice", &none, "*.alice.apps.example.com").is_ok());
        assert!(check_name(&spec, false, "alice", &none, "WEB.Alice.apps.example.com.").is_ok());
        let e = check_name(&spec, false, "bob", &none, "web.alice.apps.example.com").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("bob.apps.example.com") && msg.contains("spec.namespaceDomains"), "{msg}");
        // A suffix match that is not a label boundary is not below.
        assert!(check_name(&spec, false, "alice", &none, "xalice.apps.example.com").is_err());
        assert!(check_name(&spec, false, "alice", &none, "apps.example.com").is_err());
    }

    #[test]
    fn unrestricted_and_namespaced_providers_admit_every_name() {
        let none = BTreeMap::new();
        assert!(check_name(&ProviderSpec::default(), false, "bob", &none, "anything.example.com").is_ok());
        let spec = restricted(Some(&["{namespace}.apps.example.com"]), false);
        assert!(check_name(&spec, true, "bob", &none, "anything.example.com").is_ok(), "ignored when namespaced");
    }

    #[test]
    fn annotation_is_honoured_only_when_the_provider_opts_in() {
        let ann: BTreeMap<String, String> =
            [(ALLOWED_DOMAINS_ANNOTATION.to_string(), "shop.example.com, .pay.example.com".to_string())].into();
        let opted = restricted(None, true);
        assert!(check_name(&opted, false, "alice", &ann, "www.shop.example.com").is_ok());
        assert!(check_name(&opted, false, "alice", &ann, "pay.example.com").is_ok());
        assert!(check_name(&opted, false, "alice", &ann, "other.example.com").is_err());
        // Opted in, no annotation: nothing.
        let e = check_name(&opted, false, "bob", &BTreeMap::new(), "www.shop.example.com").unwrap_err();
        assert!(e.allowed.is_empty() && e.to_string().contains("may claim no names"), "{e}");
        // Patterns only: the annotation is ignored.
        let patterns = restricted(Some(&["{namespace}.apps.example.com"]), false);
        assert!(check_name(&patterns, false, "alice", &ann, "www.shop.example.com").is_err());
        // Both: the union.
        let both = restricted(Some(&["{namespace}.apps.example.com"]), true);
        assert!(check_name(&both, false, "alice", &ann, "www.shop.example.com").is_ok());
        assert!(check_name(&both, false, "alice", &ann, "x.alice.apps.example.com").is_ok());
    }

    #[test]
    fn namespaced_unreachable_errors_are_generic() {
        let raw = ProviderError::Unreachable(
            "UDP exchange with 10.0.0.5:6379 failed: Connection refused (os error 111)".into(),
        );
        let shown = public_error(&raw, true);
        assert_eq!(shown.reason(), "Unreachable");
        assert!(!shown.to_string().contains("refused") && !shown.to_string().contains("6379"), "{shown}");
        assert_eq!(public_error(&raw, false), raw, "cluster providers keep details");
        let auth = ProviderError::AuthFailed("BADSIG".into());
        assert_eq!(public_error(&auth, true), auth);
    }
}
