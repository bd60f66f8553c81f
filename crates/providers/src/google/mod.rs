//! Google Cloud DNS through its REST API v1 (`https://dns.googleapis.com/dns/v1`): managed
//! zones of one project are zones, resource record sets are endpoints.
//!
//! Decisions worth knowing before changing anything here:
//!
//! * **Every apply is one `changes.create`** holding additions and deletions together; Cloud
//!   DNS applies a change atomically (deletions first, then additions) or not at all. An update
//!   is the deletion of the old rrset and the addition of the new one in the same change, never
//!   split. A change larger than the API's per-change limits (`projects.get` quota:
//!   `rrsetAdditionsPerChange`, `rrsetDeletionsPerChange`, `totalRrdataSizePerChange`; and
//!   `batchChangeSize` rrsets, external-dns' `--google-batch-change-size`) goes out as several
//!   changes, `batchChangeInterval` apart.
//! * **A deletion must match the held rrset exactly** (TTL and every rrdata, as Cloud DNS spells
//!   them). Listing keeps each zone's rrsets as Cloud DNS spelled them, and a deletion of an
//!   endpoint that the listing showed sends that spelling, so a record written by someone else
//!   in another spelling (`"a" "b"` for a TXT, upper case) is still deleted.
//! * **Someone changed the zone** shows as 409 `alreadyExists` (an addition of an rrset that
//!   exists), 412 `conditionNotMet` (a deletion that no longer matches) or 404 `notFound` (a
//!   deletion of an rrset that is gone). Since the change is atomic, nothing of it was applied:
//!   the change the error names (`entity.change.additions[i]`) is refused as `ProviderRejected`
//!   (the worker re-lists the zone and plans again; it is not retried as it was) and the others
//!   are sent again without it; so is a 400 that names its entry (a CNAME beside other data).
//!   A refusal that names no entry is bisected until the refused change is isolated, as for
//!   Route53 ([`crate::failure::send_isolating`]).
//! * **A change answers `pending`** until Cloud DNS has pushed it to its name servers: it is
//!   reported as [`Applied::Propagating`] with the id `<managed zone>/<change id>`, and
//!   [`Provider::in_sync`] asks `changes.get` until it says `done`.
//! * **Errors** come in Google's JSON error shape: 401 is retried once with a new token, then
//!   `AuthFailed`, as is 403 (a missing permission); 429 and the rate-limit reasons are retried
//!   with backoff (`Retry-After` when sent), then `Throttled`; 5xx and connection failures are
//!   `Unreachable` (reads are retried, a change is not: it may have been applied).
//! * **Listing drops the SOA and the apex NS rrset** (they belong to the managed zone), types
//!   extdns does not model, and routing-policy rrsets.
//! * **Every API request takes a `rateLimit` token**, retries and pages included; token
//!   requests do not (another service).

pub mod auth;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::failure::{collect_results, send_isolating, BatchUnit, Failure, FailureKind};
use crate::http::{self, Attempt};
use crate::ratelimit::{Limiter, RequestLimited};
pub use auth::Credentials;
use auth::TokenSource;
use extdns_core::endpoint::{normalize_name, Endpoint, RecordType};
use extdns_core::provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};
use wire::RrSet;

pub const DEFAULT_ENDPOINT: &str = "https://dns.googleapis.com";
/// external-dns' `--google-batch-change-size` default; also Cloud DNS's documented limit of
/// additions (and of deletions) per change.
pub const DEFAULT_BATCH_CHANGE_SIZE: usize = 1000;
/// external-dns' `--google-batch-change-interval` default.
pub const DEFAULT_BATCH_CHANGE_INTERVAL: Duration = Duration::from_secs(1);
/// external-dns' TTL for records without one.
pub const DEFAULT_TTL: u32 = 300;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Cloud DNS's documented per-change limits, used when the project's quota cannot be read.
pub const DEFAULT_LIMITS: Limits =
    Limits { additions: 1000, deletions: 1000, rrdata_bytes: 100_000, records_per_rrset: 100 };

/// Which managed zones the provider considers, external-dns' `--google-zone-visibility`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Private,
    #[default]
    Any,
}

/// Per-change limits of a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub additions: usize,
    pub deletions: usize,
    pub rrdata_bytes: usize,
    pub records_per_rrset: usize,
}

#[derive(Clone, PartialEq, Eq)]
pub struct GoogleConfig {
    /// The project whose managed zones are used; `None`: the key's `project_id`, else the
    /// metadata server's project.
    pub project: Option<String>,
    pub credentials: Credentials,
    /// API root, without `/dns/v1`.
    pub endpoint: String,
    /// Managed zones to use, by name or numeric id (external-dns' `--zone-id-filter`); empty:
    /// every zone of the project that `visibility` admits.
    pub zones: Vec<String>,
    pub visibility: Visibility,
    /// Most rrsets (additions plus deletions) in one change.
    pub batch_change_size: usize,
    /// Pause between two changes of one apply.
    pub batch_change_interval: Duration,
    /// TTL of records whose endpoint has none.
    pub default_ttl: u32,
    /// `maxResults` of a listing page; `None`: Cloud DNS's default.
    pub page_size: Option<u32>,
    /// Attempts of one request when Cloud DNS throttles (or a read fails with 5xx).
    pub max_attempts: u32,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl GoogleConfig {
    pub fn new(project: Option<String>, credentials: Credentials) -> Self {
        GoogleConfig {
            project,
            credentials,
            endpoint: DEFAULT_ENDPOINT.into(),
            zones: Vec::new(),
            visibility: Visibility::Any,
            batch_change_size: DEFAULT_BATCH_CHANGE_SIZE,
            batch_change_interval: DEFAULT_BATCH_CHANGE_INTERVAL,
            default_ttl: DEFAULT_TTL,
            page_size: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for GoogleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleConfig")
            .field("project", &self.project)
            .field("credentials", &self.credentials)
            .field("endpoint", &self.endpoint)
            .field("zones", &self.zones)
            .field("visibility", &self.visibility)
            .field("batch_change_size", &self.batch_change_size)
            .field("batch_change_interval", &self.batch_change_interval)
            .field("default_ttl", &self.default_ttl)
            .field("page_size", &self.page_size)
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Whether a 404 names an entry of the change sent (a deletion of a record set that is gone),
/// not the zone or the project.
fn names_a_change_entry(message: &str) -> bool {
    message.contains("entity.change.")
}

#[derive(Debug, Default, Deserialize)]
struct GoogleError {
    #[serde(default)]
    error: GoogleErrorBody,
}

#[derive(Debug, Default, Deserialize)]
struct GoogleErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    errors: Vec<GoogleErrorItem>,
}

#[derive(Debug, Default, Deserialize)]
struct GoogleErrorItem {
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedZone {
    name: String,
    dns_name: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    visibility: String,
}

/// The record sets of one change and the change of ours each came from.
#[derive(Clone, Debug, Default)]
struct Unit {
    index: usize,
    additions: Vec<RrSet>,
    deletions: Vec<RrSet>,
}

impl BatchUnit for Unit {
    fn index(&self) -> usize {
        self.index
    }
}

impl Unit {
    fn bytes(&self) -> usize {
        self.additions.iter().chain(&self.deletions).map(RrSet::rrdata_size).sum()
    }

    fn keys(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.additions.iter().chain(&self.deletions).map(|s| (normalize_name(&s.name), s.rtype.clone()))
    }
}

/// Listed rrsets of a zone as Cloud DNS spells them, by name and type.
type Held = HashMap<(String, RecordType), RrSet>;

pub struct GoogleProvider {
    http: reqwest::Client,
    config: GoogleConfig,
    tokens: TokenSource,
    project: tokio::sync::OnceCell<String>,
    limits: tokio::sync::OnceCell<Limits>,
    held: StdMutex<HashMap<String, Held>>,
    limiter: Limiter,
}

impl fmt::Debug for GoogleProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleProvider").field("config", &self.config).finish_non_exhaustive()
    }
}

impl GoogleProvider {
    pub fn new(config: GoogleConfig) -> Result<Self, ProviderError> {
        if config.batch_change_size == 0 {
            return Err(ProviderError::Config("Google batch change size must be at least 1".into()));
        }
        if config.max_attempts == 0 {
            return Err(ProviderError::Config("Google max attempts must be at least 1".into()));
        }
        let endpoint = config.endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(ProviderError::Config(format!("Google API endpoint {endpoint:?} is not an http(s) URL")));
        }
        if config.project.as_deref().is_some_and(|p| p.trim().is_empty() || p.contains('/')) {
            return Err(ProviderError::Config(format!("Google project {:?} is not a project id", config.project)));
        }
        let http = http::client(config.timeout, None).map_err(|e| ProviderError::Config(format!("Google: {e}")))?;
        let tokens = TokenSource::new(&config.credentials, http.clone())?;
        let mut config = config;
        config.endpoint = endpoint;
        Ok(GoogleProvider {
            http,
            config,
            tokens,
            project: tokio::sync::OnceCell::new(),
            limits: tokio::sync::OnceCell::new(),
            held: StdMutex::new(HashMap::new()),
            limiter: Limiter::default(),
        })
    }

    /// The identity the provider acts as (for logs and status).
    pub fn identity(&self) -> String {
        self.tokens.identity()
    }

    /// The project: configured, the key's, or the metadata server's.
    async fn project(&self) -> Result<&str, ProviderError> {
        self.project
            .get_or_try_init(|| async {
                if let Some(p) = self.config.project.clone().or_else(|| self.tokens.key_project()) {
                    return Ok(p);
                }
                let Credentials::Metadata { url } = &self.config.credentials else {
                    return Err(ProviderError::Config(
                        "no Google project: set spec.google.project (the key names none)".into(),
                    ));
                };
                let what = format!("asking the metadata server {url} for the project id");
                let resp = self
                    .http
                    .get(format!("{}{}", url.trim_end_matches('/'), auth::METADATA_PROJECT_PATH))
                    .header("Metadata-Flavor", "Google")
                    .send()
                    .await
                    .map_err(|e| ProviderError::Unreachable(format!("{what}: {}", http::error_chain(&e))))?;
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if !status.is_success() || text.trim().is_empty() {
                    return Err(ProviderError::Config(format!(
                        "{what}: HTTP {}; set spec.google.project",
                        status.as_u16()
                    )));
                }
                Ok(text.trim().to_string())
            })
            .await
            .map(String::as_str)
    }

    fn url(&self, project: &str, rest: &str) -> String {
        format!("{}/dns/v1/projects/{}{rest}", self.config.endpoint, segment(project))
    }

    /// One API request, retried as [`http::retrying`] says, and once after a 401 with a new
    /// token (it may have been revoked or expired early).
    async fn call(
        &self,
        what: &str,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let idempotent = method == Method::GET;
        let reauthenticated = AtomicBool::new(false);
        http::retrying("Cloud DNS", what, idempotent, self.config.max_attempts, || async {
            if let Err(e) = self.limiter.admit(what).await {
                return Attempt::Failed(e.into(), None);
            }
            let token = match self.tokens.token().await {
                Ok(t) => t,
                Err(e) => {
                    let f = Failure::from(e);
                    // A token endpoint refusing the key is a credentials problem, whatever it said.
                    let kind = match f.kind {
                        FailureKind::Unreachable | FailureKind::Throttled => f.kind,
                        _ => FailureKind::Auth,
                    };
                    return Attempt::Failed(Failure::new(kind, format!("{what}: {}", f.message)), None);
                }
            };
            let mut req = self.http.request(method.clone(), url).bearer_auth(&token).query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let (status, retry_after, text) = match http::exchange(req, what).await {
                Ok(a) => (a.status, a.retry_after, a.text),
                Err(f) => return Attempt::Failed(f, None),
            };
            if status.is_success() {
                return match serde_json::from_str(&text) {
                    Ok(v) => Attempt::Done(v),
                    Err(e) => Attempt::Failed(
                        Failure::new(
                            FailureKind::Unreachable,
                            format!("{what}: HTTP {} but the answer is not JSON ({e})", status.as_u16()),
                        ),
                        None,
                    ),
                };
            }
            if status == StatusCode::UNAUTHORIZED && !reauthenticated.swap(true, Ordering::SeqCst) {
                self.tokens.invalidate().await;
                return Attempt::Renewed;
            }
            Attempt::Failed(classify(what, status, &text), retry_after)
        })
        .await
    }

    /// Every page of a listing, the `items` arrays concatenated.
    async fn list_all(
        &self,
        what: &str,
        url: &str,
        items: &str,
        page_size: Option<u32>,
    ) -> Result<Vec<Value>, Failure> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(n) = page_size {
                query.push(("maxResults", n.to_string()));
            }
            if let Some(t) = &token {
                query.push(("pageToken", t.clone()));
            }
            let page = self.call(what, Method::GET, url, &query, None).await?;
            if let Some(Value::Array(v)) = page.get(items) {
                out.extend(v.iter().cloned());
            }
            match page.get("nextPageToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn list_zones(&self) -> Result<Vec<Zone>, ProviderError> {
        let project = self.project().await?.to_string();
        let what = format!("listing the managed zones of project {project}");
        let items = self
            .list_all(&what, &self.url(&project, "/managedZones"), "managedZones", None)
            .await
            .map_err(|f| f.in_zone(&format!("project {project}")))?;
        let mut zones = Vec::new();
        let mut matched: HashSet<&str> = HashSet::new();
        for v in items {
            let z: ManagedZone = match serde_json::from_value(v) {
                Ok(z) => z,
                Err(e) => {
                    tracing::warn!(project, error = %e, "skipping a managed zone we cannot read");
                    continue;
                }
            };
            let visible = match self.config.visibility {
                Visibility::Any => true,
                Visibility::Public => z.visibility.is_empty() || z.visibility == "public",
                Visibility::Private => z.visibility == "private",
            };
            let wanted = self.config.zones.is_empty()
                || self.config.zones.iter().any(|w| {
                    let hit = *w == z.name || (!z.id.is_empty() && *w == z.id);
                    if hit {
                        matched.insert(w.as_str());
                    }
                    hit
                });
            if visible && wanted {
                zones.push(Zone { id: z.name, name: normalize_name(&z.dns_name) });
            }
        }
        if let Some(missing) = self.config.zones.iter().find(|w| !matched.contains(w.as_str())) {
            return Err(ProviderError::ZoneNotFound(format!(
                "{missing}: project {project} has no managed zone of that name or id that {} can list",
                self.tokens.identity()
            )));
        }
        zones.sort();
        zones.dedup();
        Ok(zones)
    }

    /// The zone's rrsets as Cloud DNS spells them; remembered for deletions.
    async fn list_rrsets(&self, zone: &Zone) -> Result<Vec<RrSet>, ProviderError> {
        let project = self.project().await?.to_string();
        let url = self.url(&project, &format!("/managedZones/{}/rrsets", segment(&zone.id)));
        let items = self
            .list_all(&format!("listing record sets of zone {}", zone.name), &url, "rrsets", self.config.page_size)
            .await
            .map_err(|f| f.in_zone(&zone.name))?;
        let mut out = Vec::with_capacity(items.len());
        for v in items {
            match serde_json::from_value::<RrSet>(v) {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!(zone = %zone.name, error = %e, "skipping a record set we cannot read"),
            }
        }
        let held: Held = out.iter().filter_map(|s| Some((s.key()?, s.clone()))).collect();
        self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(zone.id.clone(), held);
        Ok(out)
    }

    /// The project's per-change limits (`projects.get`), read once; Google's documented
    /// defaults when they cannot be read (a custom role without `dns.projects.get`).
    async fn limits(&self) -> Limits {
        let read = self
            .limits
            .get_or_try_init(|| async {
                let project = self.project().await.map_err(|e| e.to_string())?.to_string();
                let what = format!("reading the quota of project {project}");
                match self.call(&what, Method::GET, &self.url(&project, ""), &[], None).await {
                    Ok(v) => {
                        let q = |k: &str, d: usize| {
                            v.pointer(&format!("/quota/{k}"))
                                .and_then(|n| n.as_u64().or_else(|| n.as_str().and_then(|s| s.parse().ok())))
                                .map(|n| n as usize)
                                .filter(|n| *n > 0)
                                .unwrap_or(d)
                        };
                        Ok(Limits {
                            additions: q("rrsetAdditionsPerChange", DEFAULT_LIMITS.additions),
                            deletions: q("rrsetDeletionsPerChange", DEFAULT_LIMITS.deletions),
                            rrdata_bytes: q("totalRrdataSizePerChange", DEFAULT_LIMITS.rrdata_bytes),
                            records_per_rrset: q("resourceRecordsPerRrset", DEFAULT_LIMITS.records_per_rrset),
                        })
                    }
                    // Not allowed to read it (a custom role without dns.projects.get): the
                    // documented limits, for good.
                    Err(f) if f.kind == FailureKind::Auth => {
                        tracing::debug!(project, error = %f.message, "reading the Cloud DNS quota was refused; using the documented limits");
                        Ok(DEFAULT_LIMITS)
                    }
                    Err(f) => Err(f.message),
                }
            })
            .await;
        match read {
            Ok(l) => *l,
            Err(e) => {
                tracing::debug!(error = %e, "reading the Cloud DNS quota failed; using the documented limits this time");
                DEFAULT_LIMITS
            }
        }
    }

    /// The rrset to delete for `old`: as listed when the listing showed exactly `old`,
    /// else as we would write it.
    fn deletion(&self, zone: &Zone, old: &Endpoint) -> Result<RrSet, String> {
        let key = (normalize_name(&old.dns_name), old.record_type);
        let listed =
            self.held.lock().unwrap_or_else(|e| e.into_inner()).get(&zone.id).and_then(|h| h.get(&key).cloned());
        if let Some(set) = listed {
            let shown = wire::endpoint_of(zone, &set);
            let want = old.clone().normalized();
            if shown.is_some_and(|s| {
                s.targets == want.targets && s.ttl == Some(want.ttl.unwrap_or(self.config.default_ttl))
            }) {
                return Ok(set);
            }
        }
        wire::rrset_of(old, self.config.default_ttl)
    }

    /// The rrsets of one change, or why it cannot be sent.
    fn translate(&self, zone: &Zone, change: &Change, limits: &Limits) -> Result<Unit, ProviderError> {
        let ep = change.endpoint();
        let name = normalize_name(&ep.dns_name);
        let refuse = |why: String| ProviderError::Rejected(format!("{name} {}: {why}", ep.record_type));
        if !zone.contains(&name) {
            return Err(ProviderError::Rejected(format!(
                "{name} is not in Cloud DNS zone {} ({})",
                zone.name, zone.id
            )));
        }
        let addition = |e: &Endpoint| -> Result<RrSet, ProviderError> {
            if e.targets.is_empty() {
                return Err(refuse("has no targets".into()));
            }
            if e.targets.len() > limits.records_per_rrset {
                return Err(refuse(format!(
                    "{} values; Cloud DNS holds at most {} in one record set",
                    e.targets.len(),
                    limits.records_per_rrset
                )));
            }
            wire::rrset_of(e, self.config.default_ttl).map_err(refuse)
        };
        let mut unit = Unit::default();
        match change {
            Change::Create(new) => unit.additions.push(addition(new)?),
            Change::Delete(old) => unit.deletions.push(self.deletion(zone, old).map_err(refuse)?),
            Change::Update { old, new } => {
                unit.deletions.push(self.deletion(zone, old).map_err(refuse)?);
                unit.additions.push(addition(new)?);
            }
        }
        Ok(unit)
    }

    /// Sends one change; `Applied` of its answer.
    async fn send_change(&self, zone: &Zone, units: &[Unit]) -> Result<Applied, Failure> {
        let project = self.project().await?.to_string();
        let additions: Vec<&RrSet> = units.iter().flat_map(|u| u.additions.iter()).collect();
        let deletions: Vec<&RrSet> = units.iter().flat_map(|u| u.deletions.iter()).collect();
        let mut body = json!({"kind": "dns#change"});
        if !additions.is_empty() {
            body["additions"] = serde_json::to_value(&additions).unwrap_or_default();
        }
        if !deletions.is_empty() {
            body["deletions"] = serde_json::to_value(&deletions).unwrap_or_default();
        }
        let url = self.url(&project, &format!("/managedZones/{}/changes", segment(&zone.id)));
        let answer = self
            .call(&format!("changing record sets of zone {}", zone.name), Method::POST, &url, &[], Some(&body))
            .await?;
        // What Cloud DNS holds now, for the deletions of later applies.
        if let Some(held) = self.held.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&zone.id) {
            for d in &deletions {
                if let Some(k) = d.key() {
                    held.remove(&k);
                }
            }
            for a in &additions {
                if let Some(k) = a.key() {
                    held.insert(k, (*a).clone());
                }
            }
        }
        let id = answer.get("id").and_then(Value::as_str).unwrap_or_default();
        Ok(match answer.get("status").and_then(Value::as_str) {
            Some("pending") if !id.is_empty() => Applied::Propagating(format!("{}/{id}", zone.id)),
            _ => Applied::Live,
        })
    }
}

/// Path segments (project ids and zone names are `[a-z0-9-]`): anything else is escaped.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sorts a failed answer into our reasons, keeping Google's status, reason and message.
fn classify(what: &str, status: StatusCode, text: &str) -> Failure {
    let parsed: Option<GoogleError> = serde_json::from_str(text).ok();
    let body = parsed.map(|e| e.error).unwrap_or_default();
    let reasons: Vec<&str> = body.errors.iter().map(|e| e.reason.as_str()).filter(|r| !r.is_empty()).collect();
    let detail = if body.message.is_empty() {
        let snippet: String = text.chars().take(200).collect();
        snippet.trim().to_string()
    } else {
        body.message.clone()
    };
    let label = if reasons.is_empty() { body.status.clone() } else { reasons.join(",") };
    let message = if label.is_empty() {
        format!("{what}: Cloud DNS said HTTP {}: {detail}", status.as_u16())
    } else {
        format!("{what}: Cloud DNS said HTTP {} {label}: {detail}", status.as_u16())
    };
    let rate = reasons.iter().any(|r| matches!(*r, "rateLimitExceeded" | "userRateLimitExceeded"));
    // The zone is not what was listed: nothing of the change was applied, and the worker
    // lists the zone again before it plans that record anew.
    let changed =
        matches!(status.as_u16(), 409 | 412) || (status == StatusCode::NOT_FOUND && names_a_change_entry(&message));
    match status.as_u16() {
        403 if rate => Failure::new(FailureKind::Throttled, message),
        _ if changed => Failure::new(
            FailureKind::Invalid,
            format!("{message} (the zone changed since it was listed; it is listed again before the next plan)"),
        ),
        s => Failure::new(FailureKind::of_http_status(s), message),
    }
}

/// The position of the change entry an error names: `entity.change.additions[3]` is
/// `(true, 3)`, `entity.change.deletions[0]` is `(false, 0)`.
fn named_entry(message: &str) -> Option<(bool, usize)> {
    for (field, addition) in [("entity.change.additions[", true), ("entity.change.deletions[", false)] {
        if let Some(at) = message.find(field) {
            let rest = &message[at + field.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if rest[digits.len()..].starts_with(']') {
                return digits.parse().ok().map(|i| (addition, i));
            }
        }
    }
    None
}

/// The unit of `part` holding the addition (or deletion) at `pos` of the change sent.
fn unit_of_entry(part: &[Unit], addition: bool, pos: usize) -> Option<usize> {
    let mut seen = 0;
    for (i, u) in part.iter().enumerate() {
        let n = if addition { u.additions.len() } else { u.deletions.len() };
        if pos < seen + n {
            return Some(i);
        }
        seen += n;
    }
    None
}

/// Cuts `units` into changes within the limits: at most `size` rrsets (additions plus
/// deletions, external-dns' batch change size), the project's additions, deletions and rrdata
/// bytes per change, and one change per name and type. A unit larger than a limit goes alone
/// (and Cloud DNS will say why it is refused).
fn pack(units: Vec<Unit>, size: usize, limits: &Limits) -> Vec<Vec<Unit>> {
    let mut batches: Vec<Vec<Unit>> = Vec::new();
    let (mut adds, mut dels, mut bytes) = (0, 0, 0);
    let mut keys: HashSet<(String, String)> = HashSet::new();
    for u in units {
        let (a, d, b) = (u.additions.len(), u.deletions.len(), u.bytes());
        let fits = batches.last().is_some_and(|batch| {
            !batch.is_empty()
                && adds + a + dels + d <= size
                && adds + a <= limits.additions
                && dels + d <= limits.deletions
                && bytes + b <= limits.rrdata_bytes
                && u.keys().all(|k| !keys.contains(&k))
        });
        if !fits {
            batches.push(Vec::new());
            (adds, dels, bytes) = (0, 0, 0);
            keys.clear();
        }
        (adds, dels, bytes) = (adds + a, dels + d, bytes + b);
        keys.extend(u.keys());
        batches.last_mut().expect("a batch was just pushed").push(u);
    }
    batches
}

#[async_trait]
impl Provider for GoogleProvider {
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        self.list_zones().await
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        let sets = self.list_rrsets(zone).await?;
        Ok(sets.iter().filter_map(|s| wire::endpoint_of(zone, s)).collect())
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        if changes.is_empty() {
            return Vec::new();
        }
        let limits = self.limits().await;
        let mut results: Vec<Option<ChangeResult>> = vec![None; changes.len()];
        let mut units = Vec::new();
        for (index, change) in changes.iter().enumerate() {
            match self.translate(zone, change, &limits) {
                Ok(mut unit) => {
                    unit.index = index;
                    units.push(unit);
                }
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let batches = pack(units, self.config.batch_change_size, &limits);
        let interval = self.config.batch_change_interval;
        let mut sent_one = false;
        // Cloud DNS names the entry it refuses (`entity.change.additions[2]`): that change is
        // refused, the rest goes out again without it.
        let locate = |f: &Failure, part: &[Unit]| {
            named_entry(&f.message).and_then(|(addition, pos)| unit_of_entry(part, addition, pos))
        };
        send_isolating("Google", &zone.name, batches, &mut results, locate, |part: &[Unit]| {
            let units = part.to_vec();
            let pause = std::mem::replace(&mut sent_one, true) && !interval.is_zero();
            async move {
                if pause {
                    tokio::time::sleep(interval).await;
                }
                self.send_change(zone, &units).await
            }
        })
        .await;
        collect_results(results)
    }

    fn check(&self, zone: &Zone, change: &Change) -> Result<(), ProviderError> {
        let limits = self.limits.get().copied().unwrap_or(DEFAULT_LIMITS);
        self.translate(zone, change, &limits).map(|_| ())
    }

    async fn in_sync(&self, change_id: &str) -> Result<bool, ProviderError> {
        let Some((zone, id)) = change_id.rsplit_once('/') else { return Ok(true) };
        let project = self.project().await?.to_string();
        let url = self.url(&project, &format!("/managedZones/{}/changes/{}", segment(zone), segment(id)));
        match self
            .call(&format!("asking whether change {id} of zone {zone} is done"), Method::GET, &url, &[], None)
            .await
        {
            Ok(v) => Ok(v.get("status").and_then(Value::as_str) != Some("pending")),
            // A change Cloud DNS no longer knows (its zone was deleted) is not waited for.
            Err(f) if f.kind == FailureKind::ZoneNotFound => Ok(true),
            Err(f) => Err(f.into_provider_error()),
        }
    }
}

impl RequestLimited for GoogleProvider {
    fn with_rate_limit(mut self, limiter: Limiter) -> Self {
        self.limiter = limiter;
        self
    }
}

/// The endpoints of listed rrsets, grouped as the planner wants them (test helper).
#[cfg(test)]
fn shown(zone: &Zone, sets: &[RrSet]) -> std::collections::BTreeMap<(String, RecordType), Vec<String>> {
    sets.iter()
        .filter_map(|s| wire::endpoint_of(zone, s))
        .map(|e| ((e.dns_name.clone(), e.record_type), e.targets))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> GoogleProvider {
        let creds = Credentials::ServiceAccountKey {
            json: auth::tests::test_key_json("http://127.0.0.1:1/token"),
            token_uri: None,
        };
        let mut cfg = GoogleConfig::new(Some("test-project".into()), creds);
        cfg.endpoint = "http://127.0.0.1:1".into();
        GoogleProvider::new(cfg).unwrap()
    }

    fn zone() -> Zone {
        Zone { id: "example-test".into(), name: "example.test".into() }
    }

    fn a(name: &str, targets: &[&str]) -> Endpoint {
        Endpoint::new(name, RecordType::A, targets.iter().map(|t| t.to_string()).collect())
    }

    fn set(name: &str, rtype: &str, ttl: u32, rrdatas: &[&str]) -> RrSet {
        RrSet {
            name: name.into(),
            rtype: rtype.into(),
            ttl,
            rrdatas: rrdatas.iter().map(|s| s.to_string()).collect(),
            routing_policy: None,
        }
    }

    #[test]
    fn an_update_is_a_deletion_and_an_addition_of_one_change() {
        let p = provider();
        let old = a("web.example.test", &["192.0.2.1"]).with_ttl(300);
        let new = a("web.example.test", &["192.0.2.2"]);
        let unit = p.translate(&zone(), &Change::Update { old, new }, &DEFAULT_LIMITS).unwrap();
        assert_eq!(unit.deletions, vec![set("web.example.test.", "A", 300, &["192.0.2.1"])]);
        assert_eq!(unit.additions, vec![set("web.example.test.", "A", 300, &["192.0.2.2"])]);
        let e =
            p.translate(&zone(), &Change::Create(a("web.other.test", &["192.0.2.1"])), &DEFAULT_LIMITS).unwrap_err();
        assert!(matches!(&e, ProviderError::Rejected(m) if m.contains("not in Cloud DNS zone")), "{e:?}");
        let many: Vec<String> = (0..101).map(|i| format!("192.0.2.{i}")).collect();
        let e = p.check(&zone(), &Change::Create(Endpoint::new("big.example.test", RecordType::A, many))).unwrap_err();
        assert!(matches!(&e, ProviderError::Rejected(m) if m.contains("at most 100")), "{e:?}");
    }

    #[test]
    fn a_deletion_sends_the_rrset_as_cloud_dns_spelled_it() {
        let p = provider();
        // Written by hand: split strings, upper case, in another order.
        let listed = vec![
            set("T.example.test.", "TXT", 120, &["\"v=spf1 \" \"-all\""]),
            set("m.example.test.", "MX", 300, &["20 b.example.org.", "10 a.example.org."]),
        ];
        let held: Held = listed.iter().map(|s| (s.key().unwrap(), s.clone())).collect();
        p.held.lock().unwrap().insert(zone().id, held);
        let eps = shown(&zone(), &listed);
        assert_eq!(eps[&("t.example.test".to_string(), RecordType::TXT)], vec!["v=spf1 -all"]);
        let txt = Endpoint::new("t.example.test", RecordType::TXT, vec!["v=spf1 -all".into()]).with_ttl(120);
        assert_eq!(p.deletion(&zone(), &txt).unwrap(), listed[0]);
        let mx =
            Endpoint::new("m.example.test", RecordType::MX, vec!["10 a.example.org".into(), "20 b.example.org".into()])
                .with_ttl(300);
        assert_eq!(p.deletion(&zone(), &mx).unwrap(), listed[1]);
        // What the listing did not show exactly is sent as we would write it (and Cloud DNS
        // refuses it if it does not match).
        let stale = txt.clone().with_ttl(60);
        assert_eq!(p.deletion(&zone(), &stale).unwrap(), set("t.example.test.", "TXT", 60, &["\"v=spf1 -all\""]));
    }

    #[test]
    fn errors_map_to_reasons_and_name_the_entry() {
        let body = |code: u16, reason: &str, message: &str| {
            json!({"error": {"code": code, "message": message, "errors": [{"domain": "global", "reason": reason, "message": message}]}}).to_string()
        };
        let kind = |status: u16, text: &str| classify("x", StatusCode::from_u16(status).unwrap(), text).kind;
        assert_eq!(kind(429, &body(429, "rateLimitExceeded", "slow down")), FailureKind::Throttled);
        assert_eq!(kind(403, &body(403, "userRateLimitExceeded", "slow down")), FailureKind::Throttled);
        assert_eq!(kind(403, &body(403, "forbidden", "no")), FailureKind::Auth);
        assert_eq!(kind(401, ""), FailureKind::Auth);
        assert_eq!(kind(503, "<html>"), FailureKind::Unreachable);
        assert_eq!(
            kind(412, &body(412, "conditionNotMet", "Precondition not met for 'entity.change.deletions[3]'")),
            FailureKind::Invalid
        );
        assert_eq!(kind(409, &body(409, "alreadyExists", "x")), FailureKind::Invalid);
        assert_eq!(
            kind(
                404,
                &body(404, "notFound", "The 'entity.change.deletions[0]' resource named 'x. (A)' does not exist.")
            ),
            FailureKind::Invalid,
            "a deletion of a record set that is gone is a refusal of that change, not of the zone"
        );
        assert_eq!(kind(400, &body(400, "invalid", "x")), FailureKind::Invalid);
        let f = classify(
            "changing record sets of zone example.test",
            StatusCode::CONFLICT,
            &body(
                409,
                "alreadyExists",
                "The resource 'entity.change.additions[2]' named 'w.example.test. (A)' already exists",
            ),
        );
        assert_eq!(
            f.message,
            "changing record sets of zone example.test: Cloud DNS said HTTP 409 alreadyExists: The resource 'entity.change.additions[2]' named 'w.example.test. (A)' already exists (the zone changed since it was listed; it is listed again before the next plan)"
        );
        assert_eq!(named_entry(&f.message), Some((true, 2)));
        assert_eq!(named_entry("Precondition not met for 'entity.change.deletions[76]'"), Some((false, 76)));
        assert_eq!(named_entry("The 'parameters.managedZone' resource named 'x' does not exist."), None);
        let not_found = classify(
            "x",
            StatusCode::NOT_FOUND,
            &body(404, "notFound", "The 'parameters.managedZone' resource named 'x' does not exist."),
        );
        assert_eq!(not_found.kind, FailureKind::ZoneNotFound);
        // Entries are counted per list, in the order the units were sent.
        let unit = |adds: usize, dels: usize| Unit {
            index: 0,
            additions: vec![set("a.", "A", 1, &["192.0.2.1"]); adds],
            deletions: vec![set("a.", "A", 1, &["192.0.2.1"]); dels],
        };
        let part = vec![unit(1, 1), unit(0, 1), unit(2, 0)];
        assert_eq!(unit_of_entry(&part, true, 0), Some(0));
        assert_eq!(unit_of_entry(&part, true, 2), Some(2));
        assert_eq!(unit_of_entry(&part, false, 1), Some(1));
        assert_eq!(unit_of_entry(&part, false, 2), None);
    }

    #[test]
    fn changes_are_split_at_the_limits_and_an_update_is_never_split() {
        let unit = |index: usize, name: &str, adds: usize, dels: usize, bytes: usize| Unit {
            index,
            additions: (0..adds)
                .map(|i| set(&format!("{name}{i}.example.test."), "TXT", 300, &[&"x".repeat(bytes)]))
                .collect(),
            deletions: (0..dels).map(|i| set(&format!("{name}{i}.example.test."), "TXT", 300, &["y"])).collect(),
        };
        let limits = Limits { additions: 3, deletions: 2, rrdata_bytes: 100, records_per_rrset: 100 };
        let idx =
            |b: &Vec<Vec<Unit>>| b.iter().map(|c| c.iter().map(|u| u.index).collect::<Vec<_>>()).collect::<Vec<_>>();
        let batches = pack(
            vec![unit(0, "a", 1, 1, 1), unit(1, "b", 1, 1, 1), unit(2, "c", 1, 1, 1), unit(3, "d", 1, 0, 1)],
            1000,
            &limits,
        );
        assert_eq!(idx(&batches), vec![vec![0, 1], vec![2, 3]], "at most 2 deletions per change");
        let batches = pack(vec![unit(0, "a", 1, 0, 60), unit(1, "b", 1, 0, 60)], 1000, &limits);
        assert_eq!(idx(&batches), vec![vec![0], vec![1]], "rrdata bytes");
        let batches =
            pack(vec![unit(0, "a", 1, 1, 1), unit(1, "b", 1, 0, 1), unit(2, "c", 1, 0, 1)], 3, &DEFAULT_LIMITS);
        assert_eq!(idx(&batches), vec![vec![0, 1], vec![2]], "batch change size counts additions and deletions");
        // The same rrset twice in one apply goes into two changes, in order.
        let batches = pack(vec![unit(0, "a", 1, 0, 1), unit(1, "a", 0, 1, 1)], 1000, &DEFAULT_LIMITS);
        assert_eq!(idx(&batches), vec![vec![0], vec![1]]);
    }

    #[test]
    fn config_debug_hides_the_key() {
        let p = provider();
        assert!(!format!("{p:?}").contains("PRIVATE KEY"));
        let mut cfg = p.config.clone();
        cfg.batch_change_size = 0;
        assert!(GoogleProvider::new(cfg).is_err());
    }
}
