//! Azure DNS and Azure Private DNS through the ARM REST API: one implementation, two
//! [`Flavour`]s whose differences (resource type, api-version, property keys, record types)
//! are data.
//!
//! Decisions worth knowing before changing anything here:
//!
//! * **Azure holds record sets** (name + type), like extdns's endpoints: one endpoint is one
//!   record set, written with one PUT (the whole set) or removed with one DELETE.
//! * **Every write is conditional on what was read.** Each apply lists the zone first (pages
//!   of `nextLink`), compares what a change expects with what is held (a stale change is
//!   refused without sending), and sends `If-Match: <etag read>` with an update or delete and
//!   `If-None-Match: *` with a create. A record set changed behind extdns's back between the
//!   listing and the write is refused by Azure (412 PreconditionFailed) and reported
//!   `ProviderRejected`; it is read again on the next pass, never overwritten.
//! * **There is no batch.** Within one apply, deletes go first and then creates and updates,
//!   as external-dns's azure provider orders them. A record and its ownership TXT are two
//!   record sets, made atomic in the sense of [`extdns_core::apply`]: the TXT is written
//!   before its record and removed after it, and taken back when the record is refused.
//! * **Throttling** (429 with `Retry-After`) is waited out and retried up to `max_attempts`;
//!   5xx and connection failures are retried for reads only (a write may have been applied).

mod arm;
pub mod auth;
mod flavour;
mod records;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};

use crate::failure::{Failure, FailureKind};
use crate::ratelimit::{Limiter, RequestLimited};
use arm::{Arm, Condition};
pub use auth::{Credential, DEFAULT_AUTHORITY_HOST, IMDS_TOKEN_URL};
use extdns_core::endpoint::{normalize_name, Endpoint, RecordType};
use extdns_core::provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};
pub use flavour::Flavour;
use records::{endpoint_of, properties_of, relative_name, HeldSet};

/// Azure's public cloud Resource Manager.
pub const DEFAULT_RESOURCE_MANAGER: &str = "https://management.azure.com";
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureConfig {
    pub flavour: Flavour,
    pub subscription_id: String,
    /// Zones of this resource group; all zones of the subscription when `None`.
    pub resource_group: Option<String>,
    /// Only these zones (by name); all listed zones when empty.
    pub zones: Vec<String>,
    pub credential: Credential,
    /// ARM endpoint, without a trailing slash.
    pub resource_manager: String,
    /// Entra ID authority host, without a trailing slash.
    pub authority_host: String,
    /// PEM CA certificates to trust besides the public roots.
    pub ca_bundle: Option<Vec<u8>>,
    pub default_ttl: u32,
    pub max_attempts: u32,
    pub timeout: Duration,
}

impl AzureConfig {
    pub fn new(flavour: Flavour, subscription_id: impl Into<String>, credential: Credential) -> Self {
        AzureConfig {
            flavour,
            subscription_id: subscription_id.into(),
            resource_group: None,
            zones: Vec::new(),
            credential,
            resource_manager: DEFAULT_RESOURCE_MANAGER.into(),
            authority_host: DEFAULT_AUTHORITY_HOST.into(),
            ca_bundle: None,
            default_ttl: 300,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

pub struct AzureProvider {
    config: AzureConfig,
    arm: Arm,
}

impl fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureProvider").field("config", &self.config).finish_non_exhaustive()
    }
}

/// One write of an apply, decided from the listing before anything is sent.
#[derive(Debug)]
struct Write {
    index: usize,
    method: Method,
    url: String,
    condition: Condition,
    body: Option<Value>,
    what: String,
}

type Key = (String, RecordType);

impl AzureProvider {
    pub fn new(config: AzureConfig) -> Result<Self, ProviderError> {
        let bad = |m: String| Err(ProviderError::Config(m));
        if config.subscription_id.trim().is_empty() {
            return bad(format!("{}: subscriptionId is empty", config.flavour.label()));
        }
        if config.max_attempts == 0 {
            return bad(format!("{}: max attempts must be at least 1", config.flavour.label()));
        }
        for (field, url) in
            [("resource manager endpoint", &config.resource_manager), ("authority host", &config.authority_host)]
        {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return bad(format!("{}: {field} {url:?} is not an http(s) URL", config.flavour.label()));
            }
        }
        let http = crate::http::client(config.timeout, config.ca_bundle.as_deref())
            .map_err(|e| ProviderError::Config(format!("{}: {e}", config.flavour.label())))?;
        let base = config.resource_manager.trim_end_matches('/').to_string();
        let tokens = auth::TokenSource::new(config.credential.clone(), &config.authority_host, &base, http.clone());
        let arm = Arm {
            http,
            base,
            tokens,
            limiter: Limiter::default(),
            max_attempts: config.max_attempts,
            label: config.flavour.label(),
        };
        Ok(AzureProvider { config, arm })
    }

    fn api(&self) -> String {
        format!("api-version={}", self.config.flavour.api_version())
    }

    async fn list_zones(&self) -> Result<Vec<Zone>, ProviderError> {
        let c = &self.config;
        let scope = match &c.resource_group {
            Some(rg) => format!(
                "/subscriptions/{}/resourceGroups/{}",
                auth::path_escape(&c.subscription_id),
                auth::path_escape(rg)
            ),
            None => format!("/subscriptions/{}", auth::path_escape(&c.subscription_id)),
        };
        let url = format!(
            "{}{scope}/providers/Microsoft.Network/{}?{}",
            self.arm.base,
            c.flavour.zones_segment(),
            self.api()
        );
        let what = format!("listing the zones of {scope}");
        let items = self.arm.list_all(&what, url).await.map_err(|f| match f.kind {
            FailureKind::ZoneNotFound => ProviderError::ZoneNotFound(f.message),
            _ => f.into_provider_error(),
        })?;
        let mut zones = Vec::new();
        for v in items {
            let (Some(id), Some(name)) = (v.get("id").and_then(Value::as_str), v.get("name").and_then(Value::as_str))
            else {
                tracing::warn!(zone = %v, "skipping a zone without id or name");
                continue;
            };
            if !valid_zone_id(id) {
                return Err(ProviderError::Rejected(format!("{what}: zone id {id:?} is not an ARM resource id")));
            }
            zones.push(Zone { id: id.to_string(), name: normalize_name(name) });
        }
        if !c.zones.is_empty() {
            let wanted: Vec<String> = c.zones.iter().map(|z| normalize_name(z)).collect();
            if let Some(missing) = wanted.iter().find(|w| !zones.iter().any(|z| &z.name == *w)) {
                return Err(ProviderError::ZoneNotFound(format!(
                    "{missing}: {} has no such zone in {scope} that this identity can read",
                    c.flavour.label()
                )));
            }
            zones.retain(|z| wanted.contains(&z.name));
        }
        zones.sort();
        zones.dedup();
        Ok(zones)
    }

    /// Every record set of the zone that extdns manages, by name and type.
    async fn held(&self, zone: &Zone) -> Result<BTreeMap<Key, HeldSet>, ProviderError> {
        if !valid_zone_id(&zone.id) {
            return Err(ProviderError::ZoneNotFound(format!("{}: {:?} is not an ARM zone id", zone.name, zone.id)));
        }
        let url = format!("{}{}/{}?{}", self.arm.base, zone.id, self.config.flavour.list_segment(), self.api());
        let items =
            self.arm.list_all(&format!("listing record sets of zone {}", zone.name), url).await.map_err(|f| match f
                .kind
            {
                FailureKind::ZoneNotFound => ProviderError::ZoneNotFound(format!("{} ({})", zone.name, f.message)),
                _ => f.into_provider_error(),
            })?;
        Ok(items
            .iter()
            .filter_map(|v| endpoint_of(self.config.flavour, zone, v))
            .map(|h| ((h.endpoint.dns_name.clone(), h.endpoint.record_type), h))
            .collect())
    }

    fn record_set_url(&self, zone: &Zone, ep: &Endpoint) -> Result<String, ProviderError> {
        let relative = relative_name(zone, &ep.dns_name).ok_or_else(|| {
            ProviderError::Rejected(format!(
                "{} is not in {} zone {}",
                ep.dns_name,
                self.config.flavour.label(),
                zone.name
            ))
        })?;
        Ok(format!("{}{}/{}/{}?{}", self.arm.base, zone.id, ep.record_type, auth::path_escape(&relative), self.api()))
    }

    /// The write of one change against `view` (updated as if it were applied).
    fn plan(
        &self,
        zone: &Zone,
        view: &mut BTreeMap<Key, Option<HeldSet>>,
        index: usize,
        change: &Change,
    ) -> Result<Option<Write>, ProviderError> {
        self.check(zone, change)?;
        let ep = change.endpoint();
        let key: Key = (normalize_name(&ep.dns_name), ep.record_type);
        let url = self.record_set_url(zone, ep)?;
        let held = view.get(&key);
        let what = format!("{} {} {}", change.verb(), key.0, key.1);
        let expect = |old: &Endpoint| -> Result<String, ProviderError> {
            match held {
                None => Err(ProviderError::Rejected(format!(
                    "{what}: {} holds no such record set",
                    self.config.flavour.label()
                ))),
                Some(None) => Err(ProviderError::Rejected(format!("{what}: changed twice in one apply"))),
                Some(Some(h)) if h.endpoint.targets != old.normalized_targets() => {
                    Err(ProviderError::Rejected(format!(
                        "{what}: {} holds {:?}, not {:?} (changed meanwhile)",
                        self.config.flavour.label(),
                        h.endpoint.targets,
                        old.targets
                    )))
                }
                Some(Some(h)) => Ok(h.etag.clone()),
            }
        };
        let (method, condition, body) = match change {
            Change::Create(new) => {
                if let Some(h) = held {
                    let holds = h
                        .as_ref()
                        .map(|h| format!("{:?}", h.endpoint.targets))
                        .unwrap_or_else(|| "a change of this apply".into());
                    return Err(ProviderError::Rejected(format!("{what}: the record set already exists with {holds}")));
                }
                (Method::PUT, Condition::Absent, Some(self.body(new)?))
            }
            Change::Update { old, new } => (Method::PUT, Condition::Etag(expect(old)?), Some(self.body(new)?)),
            Change::Delete(old) => (Method::DELETE, Condition::Etag(expect(old)?), None),
        };
        view.insert(key, None);
        Ok(Some(Write { index, method, url, condition, body, what }))
    }

    fn body(&self, ep: &Endpoint) -> Result<Value, ProviderError> {
        let ttl = ep.ttl.unwrap_or(self.config.default_ttl);
        Ok(json!({ "properties": properties_of(self.config.flavour, ep, ttl)? }))
    }

    async fn send(&self, w: &Write) -> Result<(), Failure> {
        self.arm.call(&w.what, w.method.clone(), &w.url, Some(&w.condition), w.body.as_ref()).await.map(|_| ())
    }
}

/// An ARM zone id: a path below a subscription, nothing that could leave it.
fn valid_zone_id(id: &str) -> bool {
    id.starts_with("/subscriptions/") && !id.contains(['?', '#', '\\']) && !id.split('/').any(|s| s == ".." || s == ".")
}

trait NormalizedTargets {
    fn normalized_targets(&self) -> Vec<String>;
}

impl NormalizedTargets for Endpoint {
    /// The targets as a listing shows them (a change may carry them unnormalised).
    fn normalized_targets(&self) -> Vec<String> {
        self.clone().normalized().targets
    }
}

#[async_trait]
impl Provider for AzureProvider {
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        self.list_zones().await
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        Ok(self.held(zone).await?.into_values().map(|h| h.endpoint).collect())
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        if changes.is_empty() {
            return Vec::new();
        }
        let mut view: BTreeMap<Key, Option<HeldSet>> = match self.held(zone).await {
            Ok(held) => held.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            Err(e) => return vec![Err(e); changes.len()],
        };
        let mut results: Vec<Option<ChangeResult>> = vec![None; changes.len()];
        let mut writes = Vec::new();
        for (index, change) in changes.iter().enumerate() {
            match self.plan(zone, &mut view, index, change) {
                Ok(Some(w)) => writes.push(w),
                Ok(None) => results[index] = Some(Ok(Applied::Live)),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        // Deletes first, then creates and updates, as external-dns's azure provider does.
        writes.sort_by_key(|w| (w.method != Method::DELETE, w.index));
        let mut fatal: Option<ProviderError> = None;
        for w in &writes {
            if let Some(e) = &fatal {
                results[w.index] = Some(Err(e.clone()));
                continue;
            }
            results[w.index] = Some(match self.send(w).await {
                Ok(()) => Ok(Applied::Live),
                Err(f) if f.kind == FailureKind::Precondition => {
                    let why = match w.condition {
                        // An alias record set (targetResource) is not listed as extdns's.
                        Condition::Absent => "was created meanwhile, or is an alias record set extdns does not manage",
                        Condition::Etag(_) => "changed since extdns read it",
                    };
                    Err(ProviderError::Rejected(format!(
                        "{}; the record set on {} {why}: not overwritten, read again on the next pass",
                        f.message,
                        self.config.flavour.label()
                    )))
                }
                Err(f) if f.kind == FailureKind::Invalid => Err(f.into_provider_error()),
                Err(f) => {
                    let e = match f.kind {
                        FailureKind::ZoneNotFound => {
                            ProviderError::ZoneNotFound(format!("{} ({})", zone.name, f.message))
                        }
                        _ => f.into_provider_error(),
                    };
                    fatal = Some(e.clone());
                    Err(e)
                }
            });
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ProviderError::Rejected("change was not sent".into()))))
            .collect()
    }

    /// Refuses what Azure cannot hold before anything is sent: a name outside the zone, a type
    /// this flavour lacks, a value that does not parse.
    fn check(&self, zone: &Zone, change: &Change) -> Result<(), ProviderError> {
        let ep = change.endpoint();
        if relative_name(zone, &ep.dns_name).is_none() {
            return Err(ProviderError::Rejected(format!(
                "{} is not in {} zone {}",
                ep.dns_name,
                self.config.flavour.label(),
                zone.name
            )));
        }
        if !matches!(change, Change::Delete(_)) {
            properties_of(self.config.flavour, ep, ep.ttl.unwrap_or(self.config.default_ttl))?;
        } else if self.config.flavour.field(ep.record_type).is_none() {
            return Err(ProviderError::Rejected(format!(
                "{} {}: {} has no {} record sets",
                ep.dns_name,
                ep.record_type,
                self.config.flavour.label(),
                ep.record_type
            )));
        }
        Ok(())
    }
}

impl RequestLimited for AzureProvider {
    fn with_rate_limit(mut self, limiter: Limiter) -> Self {
        self.arm.limiter = limiter;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(flavour: Flavour) -> AzureProvider {
        let cred = Credential::ClientSecret { tenant_id: "t".into(), client_id: "c".into(), client_secret: "s".into() };
        let mut cfg = AzureConfig::new(flavour, "sub", cred);
        cfg.resource_manager = "https://127.0.0.1:1".into();
        AzureProvider::new(cfg).unwrap()
    }

    fn zone() -> Zone {
        Zone {
            id: "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/dnszones/example.com".into(),
            name: "example.com".into(),
        }
    }

    fn a(name: &str, targets: &[&str]) -> Endpoint {
        Endpoint::new(name, RecordType::A, targets.iter().map(|t| t.to_string()).collect()).with_ttl(300)
    }

    fn view(held: &[(Endpoint, &str)]) -> BTreeMap<Key, Option<HeldSet>> {
        held.iter()
            .map(|(e, etag)| {
                ((e.dns_name.clone(), e.record_type), Some(HeldSet { endpoint: e.clone(), etag: etag.to_string() }))
            })
            .collect()
    }

    #[test]
    fn writes_carry_the_etag_read_and_creates_if_none_match() {
        let p = provider(Flavour::Public);
        let mut v = view(&[(a("web.example.com", &["192.0.2.1"]), "etag-1")]);
        let upd =
            Change::Update { old: a("web.example.com", &["192.0.2.1"]), new: a("web.example.com", &["192.0.2.2"]) };
        let w = p.plan(&zone(), &mut v, 0, &upd).unwrap().unwrap();
        assert_eq!((w.method.clone(), w.condition.clone()), (Method::PUT, Condition::Etag("etag-1".into())));
        assert_eq!(w.url, "https://127.0.0.1:1/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/dnszones/example.com/A/web?api-version=2018-05-01");
        assert_eq!(w.body, Some(json!({"properties": {"TTL": 300, "ARecords": [{"ipv4Address": "192.0.2.2"}]}})));
        let apex = p.plan(&zone(), &mut v, 1, &Change::Create(a("example.com", &["192.0.2.3"]))).unwrap().unwrap();
        assert_eq!(apex.condition, Condition::Absent);
        assert!(apex.url.contains("/A/@?"), "{}", apex.url);
        let again = Change::Delete(a("web.example.com", &["192.0.2.2"]));
        assert!(matches!(p.plan(&zone(), &mut v, 2, &again), Err(ProviderError::Rejected(m)) if m.contains("twice")));
    }

    #[test]
    fn stale_and_duplicate_changes_are_refused_before_sending() {
        let p = provider(Flavour::Public);
        let mut v = view(&[(a("web.example.com", &["192.0.2.1"]), "e")]);
        let create = Change::Create(a("web.example.com", &["192.0.2.9"]));
        assert!(
            matches!(p.plan(&zone(), &mut v, 0, &create), Err(ProviderError::Rejected(m)) if m.contains("already exists"))
        );
        let stale = Change::Delete(a("web.example.com", &["192.0.2.7"]));
        assert!(
            matches!(p.plan(&zone(), &mut v, 0, &stale), Err(ProviderError::Rejected(m)) if m.contains("changed meanwhile"))
        );
        let gone = Change::Delete(a("gone.example.com", &["192.0.2.7"]));
        assert!(matches!(p.plan(&zone(), &mut v, 0, &gone), Err(ProviderError::Rejected(m)) if m.contains("no such")));
        let outside = Change::Create(a("web.other.test", &["192.0.2.7"]));
        assert!(
            matches!(p.plan(&zone(), &mut v, 0, &outside), Err(ProviderError::Rejected(m)) if m.contains("not in Azure DNS zone"))
        );
    }

    #[test]
    fn private_dns_refuses_ns_and_caa_client_side() {
        let p = provider(Flavour::Private);
        let ns = Endpoint::new("sub.example.com", RecordType::NS, vec!["ns1.example.org".into()]);
        assert!(
            matches!(p.check(&zone(), &Change::Create(ns)), Err(ProviderError::Rejected(m)) if m.contains("Azure Private DNS has no NS"))
        );
        assert!(provider(Flavour::Public)
            .check(
                &zone(),
                &Change::Create(Endpoint::new("sub.example.com", RecordType::NS, vec!["ns1.example.org".into()]))
            )
            .is_ok());
    }

    #[test]
    fn zone_ids_must_stay_below_a_subscription() {
        assert!(valid_zone_id(&zone().id));
        assert!(!valid_zone_id("/subscriptions/s/../../x"));
        assert!(!valid_zone_id("https://evil.example/subscriptions/x"));
        assert!(!valid_zone_id("/subscriptions/s?x=1"));
    }
}
