//! Cloudflare through its v4 REST API (`https://api.cloudflare.com/client/v4`): zones are
//! zones, DNS records grouped by name and type are endpoints.
//!
//! Decisions worth knowing before changing anything here:
//!
//! * **Cloudflare holds records, not RRsets.** An endpoint with three targets is three
//!   Cloudflare records with their own ids. A change to one endpoint becomes record operations
//!   (deletes of held targets no longer wanted, patches of kept ones whose TTL, proxied flag or
//!   comment change, posts of new targets), and those operations are never split.
//! * **Every apply lists the zone first.** Record ids are needed for deletes and patches, and
//!   the listing is also what makes a create of an existing name and type, or an update or
//!   delete of values that are not held any more, fail as `ProviderRejected` instead of adding
//!   a record beside somebody else's (Cloudflare itself happily holds two A records of one
//!   name). This costs one listing (pages of `perPage` records) per apply.
//! * **Changes go out through the batch endpoint** (`POST /zones/{id}/dns_records/batch`),
//!   which Cloudflare runs as one database transaction (deletes, then patches, then posts):
//!   all operations of a batch are applied or none. Batches hold at most `batchSize`
//!   operations (Cloudflare's plan limit: 200 on Free, 3,500 on paid plans). A batch refused
//!   for its content is bisected until the refused change(s) are isolated, as Route53 does;
//!   the others are applied and each refused one gets Cloudflare's message. The record and
//!   its ownership TXT are applied in the phases of [`extdns_core::apply`], so a refused record
//!   leaves no ownership behind.
//! * **Proxied records** (`external-dns.alpha.kubernetes.io/cloudflare-proxied`, default
//!   `proxied` of the provider) exist only for A, AAAA and CNAME and always have TTL 1
//!   (Cloudflare's "automatic"), as external-dns writes them; [`Provider::adjust`] says so, so
//!   that planning compares like with like and a proxied record does not churn.
//! * **Errors** come in Cloudflare's envelope (`success`, `errors[{code, message}]`): HTTP 401
//!   and 403 and the authentication codes are `AuthFailed`; 429 is retried after `Retry-After`
//!   and then `Throttled`; 5xx and connection failures are `Unreachable` (reads are retried, a
//!   batch is not: it may have been applied); other refusals are `ProviderRejected` with
//!   Cloudflare's code and message.
//! * **Every HTTP request takes a `rateLimit` token**, retries and pages included.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::failure::{collect_results, send_bisecting, BatchUnit, Failure, FailureKind};
use crate::http::{self, Attempt};
use crate::ratelimit::{Limiter, RequestLimited};
use extdns_core::endpoint::{normalize_name, Endpoint, ProviderSpecificProperty, RecordType};
use extdns_core::provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};

pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";
/// Cloudflare's batch limit on the Free plan; paid plans take 3,500.
pub const DEFAULT_BATCH_SIZE: usize = 200;
/// external-dns' `--cloudflare-dns-records-per-page` default.
pub const DEFAULT_PER_PAGE: u32 = 100;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Cloudflare's TTL value for "automatic", the only TTL a proxied record has.
pub const AUTO_TTL: u32 = 1;
/// Cloudflare's `per_page` limit for zone listings.
const ZONES_PER_PAGE: u32 = 50;

/// Provider-specific property names, as external-dns passes them.
pub mod property {
    pub const PROXIED: &str = "external-dns.alpha.kubernetes.io/cloudflare-proxied";
    pub const RECORD_COMMENT: &str = "external-dns.alpha.kubernetes.io/cloudflare-record-comment";
}

/// Error codes Cloudflare answers when the token is missing, malformed, unknown or lacks
/// permission.
const AUTH_CODES: &[i64] = &[6003, 6111, 9103, 9106, 9107, 9109, 10000, 10001];
/// "Could not route to ..., perhaps your object identifier is invalid?" and "Invalid zone
/// identifier": the zone id is not (or no longer) a zone of this token.
const ZONE_NOT_FOUND_CODES: &[i64] = &[7000, 7003, 1001];

#[derive(Clone, PartialEq, Eq)]
pub struct CloudflareConfig {
    /// API base URL, without a trailing slash.
    pub base_url: String,
    /// API token, sent as `Authorization: Bearer`.
    pub token: String,
    /// Zones looked up by name (`GET /zones?name=`).
    pub zone_names: Vec<String>,
    /// Zones looked up by id (`GET /zones/{id}`).
    pub zone_ids: Vec<String>,
    /// Whether records without the proxied property are proxied.
    pub proxied: bool,
    /// TTL of records whose endpoint has none (and that are not proxied).
    pub default_ttl: u32,
    /// Most record operations in one batch request.
    pub batch_size: usize,
    /// Records per page when listing.
    pub per_page: u32,
    /// Attempts of one request when Cloudflare throttles (or a read fails with 5xx).
    pub max_attempts: u32,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl CloudflareConfig {
    pub fn new(token: impl Into<String>) -> Self {
        CloudflareConfig {
            base_url: DEFAULT_BASE_URL.into(),
            token: token.into(),
            zone_names: Vec::new(),
            zone_ids: Vec::new(),
            proxied: false,
            default_ttl: 300,
            batch_size: DEFAULT_BATCH_SIZE,
            per_page: DEFAULT_PER_PAGE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Keeps the token out of logs and error messages.
impl fmt::Debug for CloudflareConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareConfig")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .field("zone_names", &self.zone_names)
            .field("zone_ids", &self.zone_ids)
            .field("proxied", &self.proxied)
            .field("default_ttl", &self.default_ttl)
            .field("batch_size", &self.batch_size)
            .field("per_page", &self.per_page)
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct CloudflareProvider {
    http: reqwest::Client,
    config: CloudflareConfig,
    limiter: Limiter,
}

impl fmt::Debug for CloudflareProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareProvider").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Cloudflare's response envelope.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Default, Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_chain: Vec<ApiMessage>,
}

#[derive(Debug, Default, Deserialize)]
struct ResultInfo {
    #[serde(default)]
    page: u32,
    #[serde(default)]
    total_pages: u32,
}

/// One Cloudflare DNS record as listed.
#[derive(Clone, Debug, Default, Deserialize)]
struct CfRecord {
    id: String,
    name: String,
    #[serde(rename = "type")]
    record_type: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    ttl: u32,
    #[serde(default)]
    proxied: bool,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct CfZone {
    id: String,
    name: String,
}

/// One record as the planner sees it: the target string of its endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    /// `None` for a record posted earlier in the same apply.
    id: Option<String>,
    target: String,
    ttl: u32,
    proxied: bool,
    comment: Option<String>,
}

type Key = (String, RecordType);

/// The record operations of one [`Change`]; sent together, refused together.
#[derive(Clone, Debug, Default)]
struct Unit {
    index: usize,
    deletes: Vec<Value>,
    patches: Vec<Value>,
    posts: Vec<Value>,
}

impl BatchUnit for Unit {
    fn index(&self) -> usize {
        self.index
    }
}

impl Unit {
    fn ops(&self) -> usize {
        self.deletes.len() + self.patches.len() + self.posts.len()
    }
}

impl CloudflareProvider {
    pub fn new(config: CloudflareConfig) -> Result<Self, ProviderError> {
        if config.token.trim().is_empty() {
            return Err(ProviderError::Config("Cloudflare API token is empty".into()));
        }
        if config.batch_size == 0 {
            return Err(ProviderError::Config("Cloudflare batch size must be at least 1".into()));
        }
        if config.max_attempts == 0 {
            return Err(ProviderError::Config("Cloudflare max attempts must be at least 1".into()));
        }
        let base = config.base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ProviderError::Config(format!("Cloudflare base URL {base:?} is not an http(s) URL")));
        }
        let http = http::client(config.timeout, None).map_err(|e| ProviderError::Config(format!("Cloudflare: {e}")))?;
        let mut config = config;
        config.base_url = base;
        Ok(CloudflareProvider { http, config, limiter: Limiter::default() })
    }

    /// One API request with Cloudflare's envelope, retried as [`http::retrying`] says.
    async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Envelope, Failure> {
        let url = format!("{}{path}", self.config.base_url);
        let idempotent = method == Method::GET;
        http::retrying("Cloudflare", what, idempotent, self.config.max_attempts, || async {
            if let Err(e) = self.limiter.admit(what).await {
                return Attempt::Failed(e.into(), None);
            }
            let mut req = self.http.request(method.clone(), &url).bearer_auth(&self.config.token).query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let a = match http::exchange(req, what).await {
                Ok(a) => a,
                Err(f) => return Attempt::Failed(f, None),
            };
            match serde_json::from_str::<Envelope>(&a.text).ok() {
                Some(env) if a.status.is_success() && env.success => Attempt::Done(env),
                env => Attempt::Failed(classify(what, a.status, env.as_ref(), &a.text), a.retry_after),
            }
        })
        .await
    }

    /// Every page of a listing, `result` arrays concatenated.
    async fn list_all(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, String)],
        per_page: u32,
    ) -> Result<Vec<Value>, Failure> {
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("page", page.to_string()));
            q.push(("per_page", per_page.to_string()));
            let env = self.call(what, Method::GET, path, &q, None).await?;
            let items = match env.result {
                Value::Array(items) => items,
                Value::Null => Vec::new(),
                other => {
                    return Err(Failure {
                        kind: FailureKind::Invalid,
                        message: format!("{what}: expected a list in `result`, got {other}"),
                    })
                }
            };
            let empty = items.is_empty();
            out.extend(items);
            let total_pages = env.result_info.as_ref().map(|i| i.total_pages).unwrap_or(0);
            let this = env.result_info.as_ref().map(|i| i.page).filter(|p| *p > 0).unwrap_or(page);
            if empty || this >= total_pages {
                return Ok(out);
            }
            page = this + 1;
        }
    }

    async fn list_zones(&self) -> Result<Vec<Zone>, ProviderError> {
        let to_zone = |v: Value| -> Result<Zone, ProviderError> {
            let z: CfZone = serde_json::from_value(v)
                .map_err(|e| ProviderError::Rejected(format!("Cloudflare answered a zone we cannot read: {e}")))?;
            Ok(Zone { id: z.id, name: normalize_name(&z.name) })
        };
        let mut zones = Vec::new();
        if self.config.zone_names.is_empty() && self.config.zone_ids.is_empty() {
            let all = self
                .list_all("listing zones", "/zones", &[], ZONES_PER_PAGE)
                .await
                .map_err(Failure::into_provider_error)?;
            for v in all {
                zones.push(to_zone(v)?);
            }
        }
        for name in &self.config.zone_names {
            let name = normalize_name(name);
            let found = self
                .list_all(&format!("looking up zone {name}"), "/zones", &[("name", name.clone())], ZONES_PER_PAGE)
                .await
                .map_err(Failure::into_provider_error)?;
            let mut matched = Vec::new();
            for v in found {
                let z = to_zone(v)?;
                if z.name == name {
                    matched.push(z);
                }
            }
            if matched.is_empty() {
                return Err(ProviderError::ZoneNotFound(format!(
                    "{name}: Cloudflare has no zone of that name that this token can read"
                )));
            }
            zones.extend(matched);
        }
        for id in &self.config.zone_ids {
            let what = format!("looking up zone id {id}");
            let env = self.call(&what, Method::GET, &format!("/zones/{}", path_segment(id)), &[], None).await.map_err(
                |f| match f.kind {
                    FailureKind::ZoneNotFound | FailureKind::Invalid => {
                        ProviderError::ZoneNotFound(format!("zone id {id}: {}", f.message))
                    }
                    _ => f.into_provider_error(),
                },
            )?;
            zones.push(to_zone(env.result)?);
        }
        zones.sort();
        zones.dedup();
        Ok(zones)
    }

    /// Every record of a zone, as listed.
    async fn list_records(&self, zone: &Zone) -> Result<Vec<CfRecord>, ProviderError> {
        let path = format!("/zones/{}/dns_records", path_segment(&zone.id));
        let items = self
            .list_all(&format!("listing records of zone {}", zone.name), &path, &[], self.config.per_page)
            .await
            .map_err(|f| match f.kind {
                FailureKind::ZoneNotFound => ProviderError::ZoneNotFound(format!("{} ({})", zone.name, f.message)),
                _ => f.into_provider_error(),
            })?;
        let mut out = Vec::with_capacity(items.len());
        for v in items {
            match serde_json::from_value::<CfRecord>(v) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(zone = %zone.name, error = %e, "skipping a Cloudflare record we cannot read"),
            }
        }
        Ok(out)
    }

    /// Whether `ep` is proxied: its property, else the provider default; never for types
    /// Cloudflare cannot proxy.
    fn proxied(&self, ep: &Endpoint) -> Result<bool, ProviderError> {
        if !proxiable(ep.record_type) {
            return Ok(false);
        }
        match ep.provider_specific(property::PROXIED) {
            None => Ok(self.config.proxied),
            Some(v) => parse_bool(v).ok_or_else(|| {
                ProviderError::Rejected(format!(
                    "{} {}: {}={v:?} is not true or false",
                    ep.dns_name,
                    ep.record_type,
                    property::PROXIED
                ))
            }),
        }
    }

    /// The TTL Cloudflare holds for `ep`: 1 (automatic) when proxied.
    fn ttl_of(&self, ep: &Endpoint, proxied: bool) -> u32 {
        if proxied {
            AUTO_TTL
        } else {
            ep.ttl.unwrap_or(self.config.default_ttl)
        }
    }

    /// The record operations of one change against what `view` holds; `view` is updated as
    /// if they were applied.
    fn translate(
        &self,
        zone: &Zone,
        view: &mut BTreeMap<Key, Vec<Held>>,
        change: &Change,
    ) -> Result<Unit, ProviderError> {
        let ep = change.endpoint();
        let name = normalize_name(&ep.dns_name);
        if !zone.contains(&name) {
            return Err(ProviderError::Rejected(format!(
                "{name} is not in Cloudflare zone {} ({})",
                zone.name, zone.id
            )));
        }
        let key: Key = (name.clone(), ep.record_type);
        let held = view.get(&key).cloned().unwrap_or_default();
        let held_targets: BTreeSet<&str> = held.iter().map(|h| h.target.as_str()).collect();
        let mut unit = Unit::default();
        let expect_held = |old: &Endpoint| -> Result<(), ProviderError> {
            let want: BTreeSet<&str> = old.targets.iter().map(String::as_str).collect();
            if held.is_empty() {
                return Err(ProviderError::Rejected(format!(
                    "{name} {}: Cloudflare holds no such record",
                    ep.record_type
                )));
            }
            if held.iter().any(|h| h.id.is_none()) {
                return Err(ProviderError::Rejected(format!("{name} {}: changed twice in one apply", ep.record_type)));
            }
            if want != held_targets {
                return Err(ProviderError::Rejected(format!(
                    "{name} {}: Cloudflare holds {:?}, not {:?} (changed meanwhile)",
                    ep.record_type, held_targets, want
                )));
            }
            Ok(())
        };
        match change {
            Change::Create(new) => {
                if !held.is_empty() {
                    return Err(ProviderError::Rejected(format!(
                        "{name} {} already exists on Cloudflare with {:?}",
                        ep.record_type, held_targets
                    )));
                }
                let (posts, after) = self.posts(new, &new.targets)?;
                unit.posts = posts;
                view.insert(key, after);
            }
            Change::Delete(old) => {
                expect_held(old)?;
                unit.deletes = held.iter().filter_map(|h| h.id.clone()).map(|id| json!({ "id": id })).collect();
                view.remove(&key);
            }
            Change::Update { old, new } => {
                expect_held(old)?;
                if new.targets.is_empty() {
                    return Err(ProviderError::Rejected(format!("{name} {} has no targets", ep.record_type)));
                }
                let proxied = self.proxied(new)?;
                let ttl = self.ttl_of(new, proxied);
                let comment = comment_of(new);
                let wanted: BTreeSet<&str> = new.targets.iter().map(String::as_str).collect();
                let mut after = Vec::new();
                for h in &held {
                    let id = h.id.clone().unwrap_or_default();
                    if !wanted.contains(h.target.as_str()) {
                        unit.deletes.push(json!({ "id": id }));
                        continue;
                    }
                    if h.ttl != ttl || h.proxied != proxied || h.comment != comment {
                        let mut patch = json!({ "id": id, "ttl": ttl });
                        if proxiable(new.record_type) {
                            patch["proxied"] = json!(proxied);
                        }
                        if h.comment != comment {
                            patch["comment"] = json!(comment.clone().unwrap_or_default());
                        }
                        unit.patches.push(patch);
                    }
                    after.push(Held {
                        id: h.id.clone(),
                        target: h.target.clone(),
                        ttl,
                        proxied,
                        comment: comment.clone(),
                    });
                }
                let added: Vec<String> =
                    new.targets.iter().filter(|t| !held_targets.contains(t.as_str())).cloned().collect();
                let (posts, added_held) = self.posts(new, &added)?;
                unit.posts = posts;
                after.extend(added_held);
                view.insert(key, after);
            }
        }
        Ok(unit)
    }

    /// Post bodies for `targets` of `ep`, and the records they will be.
    fn posts(&self, ep: &Endpoint, targets: &[String]) -> Result<(Vec<Value>, Vec<Held>), ProviderError> {
        if ep.targets.is_empty() {
            return Err(ProviderError::Rejected(format!("{} {} has no targets", ep.dns_name, ep.record_type)));
        }
        let proxied = self.proxied(ep)?;
        let ttl = self.ttl_of(ep, proxied);
        let comment = comment_of(ep);
        let mut posts = Vec::new();
        let mut held = Vec::new();
        for t in targets {
            let mut body = record_body(&normalize_name(&ep.dns_name), ep.record_type, t)?;
            body["ttl"] = json!(ttl);
            if proxiable(ep.record_type) {
                body["proxied"] = json!(proxied);
            }
            if let Some(c) = &comment {
                body["comment"] = json!(c);
            }
            posts.push(body);
            held.push(Held { id: None, target: t.clone(), ttl, proxied, comment: comment.clone() });
        }
        Ok((posts, held))
    }

    /// Sends one batch request (built by [`batch_body`]); all of it applies or none.
    async fn send_batch(&self, zone: &Zone, body: Value) -> Result<Applied, Failure> {
        let path = format!("/zones/{}/dns_records/batch", path_segment(&zone.id));
        self.call(&format!("changing records of zone {}", zone.name), Method::POST, &path, &[], Some(&body))
            .await
            .map(|_| Applied::Live)
    }
}

/// The body of one batch request: every unit's deletes, patches and posts (Cloudflare runs
/// them in that order).
fn batch_body(units: &[Unit]) -> Value {
    let mut body = json!({});
    let collect =
        |f: fn(&Unit) -> &Vec<Value>| -> Vec<Value> { units.iter().flat_map(|u| f(u).iter().cloned()).collect() };
    for (field, ops) in
        [("deletes", collect(|u| &u.deletes)), ("patches", collect(|u| &u.patches)), ("posts", collect(|u| &u.posts))]
    {
        if !ops.is_empty() {
            body[field] = Value::Array(ops);
        }
    }
    body
}

/// The JSON body of a new record, type-specific fields set from the endpoint's target.
fn record_body(name: &str, rt: RecordType, target: &str) -> Result<Value, ProviderError> {
    let bad = |what: &str| ProviderError::Rejected(format!("{name} {rt}: {target:?} is not {what}"));
    let mut body = json!({ "type": rt.as_str(), "name": name });
    match rt {
        RecordType::MX => {
            let (prio, host) = target.trim().split_once(' ').ok_or_else(|| bad("\"<priority> <host>\""))?;
            let prio: u16 = prio.parse().map_err(|_| bad("\"<priority> <host>\""))?;
            body["priority"] = json!(prio);
            body["content"] = json!(host.trim());
        }
        RecordType::SRV => {
            let parts: Vec<&str> = target.split_whitespace().collect();
            let nums: Option<Vec<u16>> =
                parts.get(..3).and_then(|p| p.iter().map(|n| n.parse().ok()).collect::<Option<Vec<u16>>>());
            match (nums, parts.get(3), parts.len()) {
                (Some(n), Some(host), 4) => {
                    body["data"] = json!({ "priority": n[0], "weight": n[1], "port": n[2], "target": host });
                }
                _ => return Err(bad("\"<priority> <weight> <port> <target>\"")),
            }
        }
        RecordType::CAA => {
            let mut it = target.trim().splitn(3, ' ');
            let (flags, tag, value) = match (it.next(), it.next(), it.next()) {
                (Some(f), Some(t), Some(v)) => (f, t, v),
                _ => return Err(bad("\"<flags> <tag> \\\"<value>\\\"\"")),
            };
            let flags: u8 = flags.parse().map_err(|_| bad("\"<flags> <tag> \\\"<value>\\\"\""))?;
            let value = value.trim();
            let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
            body["data"] = json!({ "flags": flags, "tag": tag, "value": value });
        }
        RecordType::TXT => body["content"] = json!(quote_txt(target)),
        _ => body["content"] = json!(target),
    }
    Ok(body)
}

/// Longest DNS character-string (RFC 1035 3.3).
const MAX_CHARACTER_STRING: usize = 255;

/// TXT content as Cloudflare's schema asks for it, and as external-dns writes its ownership
/// values: quoted character-strings, `"` and `\` escaped, values longer than 255 bytes split
/// into several strings.
pub(crate) fn quote_txt(value: &str) -> String {
    let mut strings: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut len = 0;
    for c in value.chars() {
        if len + c.len_utf8() > MAX_CHARACTER_STRING {
            strings.push(std::mem::take(&mut current));
            len = 0;
        }
        if c == '"' || c == '\\' {
            current.push('\\');
        }
        current.push(c);
        len += c.len_utf8();
    }
    strings.push(current);
    strings.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(" ")
}

/// The value of listed TXT content: quoted character-strings joined (what [`quote_txt`] and
/// external-dns write), or, when the content is not made of quoted strings (written unquoted
/// by hand or by older extdns), the content as it is.
pub(crate) fn unquote_txt(content: &str) -> String {
    let mut out = String::new();
    let mut chars = content.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c != '"' {
            return content.to_string();
        }
        loop {
            match chars.next() {
                None => return content.to_string(),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some(e) => out.push(e),
                    None => return content.to_string(),
                },
                Some(ch) => out.push(ch),
            }
        }
        if chars.peek().is_some_and(|n| !n.is_whitespace()) {
            return content.to_string();
        }
    }
    out
}

/// The target string of a listed record, in the form our endpoints use.
fn target_of(r: &CfRecord, rt: RecordType) -> Option<String> {
    let data = r.data.as_ref();
    let num = |k: &str| data.and_then(|d| d.get(k)).and_then(Value::as_u64);
    let text = |k: &str| data.and_then(|d| d.get(k)).and_then(Value::as_str).map(str::to_string);
    let t = match rt {
        RecordType::MX => format!("{} {}", r.priority.unwrap_or(0), r.content),
        RecordType::SRV => match (num("priority"), num("weight"), num("port"), text("target")) {
            (Some(p), Some(w), Some(port), Some(t)) => format!("{p} {w} {port} {t}"),
            // Cloudflare's content of an SRV record is "<weight> <port> <target>".
            _ => format!("{} {}", r.priority.unwrap_or(0), r.content),
        },
        RecordType::CAA => match (num("flags"), text("tag"), text("value")) {
            (Some(f), Some(tag), Some(v)) => format!("{f} {tag} \"{v}\""),
            _ => r.content.clone(),
        },
        RecordType::TXT => unquote_txt(&r.content),
        _ => r.content.clone(),
    };
    Some(t)
}

/// Groups listed records into endpoints; `None` keys for what extdns does not manage.
fn group(zone: &Zone, records: &[CfRecord]) -> BTreeMap<Key, Vec<Held>> {
    let mut out: BTreeMap<Key, Vec<Held>> = BTreeMap::new();
    for r in records {
        let Ok(rt) = r.record_type.parse::<RecordType>() else { continue };
        let name = normalize_name(&r.name);
        if rt == RecordType::NS && name == zone.name {
            continue;
        }
        let Some(raw) = target_of(r, rt) else { continue };
        // The same normalisation as desired records get, so that they compare equal.
        let target = Endpoint::new(name.clone(), rt, vec![raw]).targets.into_iter().next().unwrap_or_default();
        out.entry((name, rt)).or_default().push(Held {
            id: Some(r.id.clone()),
            target,
            ttl: r.ttl,
            proxied: r.proxied,
            comment: r.comment.clone().filter(|c| !c.is_empty()),
        });
    }
    out
}

fn endpoints_of(view: &BTreeMap<Key, Vec<Held>>) -> Vec<Endpoint> {
    view.iter()
        .map(|((name, rt), held)| {
            let targets = held.iter().map(|h| h.target.clone()).collect();
            let mut ep = Endpoint::new(name.clone(), *rt, targets);
            ep.ttl = held.first().map(|h| h.ttl);
            if proxiable(*rt) {
                let proxied = held.iter().any(|h| h.proxied);
                ep.provider_specific =
                    vec![ProviderSpecificProperty { name: property::PROXIED.into(), value: proxied.to_string() }];
            }
            if let Some(c) = held.first().and_then(|h| h.comment.clone()) {
                ep.provider_specific.push(ProviderSpecificProperty { name: property::RECORD_COMMENT.into(), value: c });
            }
            ep.normalized()
        })
        .collect()
}

/// The record comment `ep` asks for (external-dns' `cloudflare-record-comment`).
fn comment_of(ep: &Endpoint) -> Option<String> {
    ep.provider_specific(property::RECORD_COMMENT).filter(|c| !c.is_empty()).map(str::to_string)
}

/// Cloudflare proxies only address records and CNAMEs.
fn proxiable(rt: RecordType) -> bool {
    matches!(rt, RecordType::A | RecordType::AAAA | RecordType::CNAME)
}

/// Go's `strconv.ParseBool`, which external-dns uses for the proxied annotation.
fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Zone ids are hex; anything else is escaped so it cannot change the path.
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sorts a failed answer into our reasons, keeping Cloudflare's codes and messages.
fn classify(what: &str, status: StatusCode, env: Option<&Envelope>, text: &str) -> Failure {
    let errors: Vec<&ApiMessage> = env.map(|e| e.errors.iter().collect()).unwrap_or_default();
    let codes: Vec<i64> =
        errors.iter().flat_map(|e| std::iter::once(e.code).chain(e.error_chain.iter().map(|c| c.code))).collect();
    let detail = if errors.is_empty() {
        let snippet: String = text.chars().take(200).collect();
        if snippet.trim().is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            format!("HTTP {}: {}", status.as_u16(), snippet.trim())
        }
    } else {
        errors
            .iter()
            .map(|e| {
                let chain: Vec<String> = e.error_chain.iter().map(|c| format!("{} {}", c.code, c.message)).collect();
                if chain.is_empty() {
                    format!("{} {}", e.code, e.message)
                } else {
                    format!("{} {} ({})", e.code, e.message, chain.join("; "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let message = format!("{what}: Cloudflare said {detail}");
    let kind = if status == StatusCode::TOO_MANY_REQUESTS || codes.contains(&971) || codes.contains(&10429) {
        FailureKind::Throttled
    } else if status.is_server_error() {
        FailureKind::Unreachable
    } else if status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || codes.iter().any(|c| AUTH_CODES.contains(c))
    {
        FailureKind::Auth
    } else if codes.iter().any(|c| ZONE_NOT_FOUND_CODES.contains(c)) {
        FailureKind::ZoneNotFound
    } else if status.is_success() && env.is_none() {
        // A 2xx answer that is not Cloudflare's envelope: something else answers on the URL.
        FailureKind::Unreachable
    } else {
        FailureKind::Invalid
    };
    Failure { kind, message }
}

#[async_trait]
impl Provider for CloudflareProvider {
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        self.list_zones().await
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        let records = self.list_records(zone).await?;
        Ok(endpoints_of(&group(zone, &records)))
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        if changes.is_empty() {
            return Vec::new();
        }
        let mut view = match self.list_records(zone).await {
            Ok(records) => group(zone, &records),
            Err(e) => return vec![Err(e); changes.len()],
        };
        let mut results: Vec<Option<ChangeResult>> = vec![None; changes.len()];
        let mut units = Vec::new();
        for (index, change) in changes.iter().enumerate() {
            match self.translate(zone, &mut view, change) {
                Ok(unit) if unit.ops() == 0 => results[index] = Some(Ok(Applied::Live)),
                Ok(mut unit) => {
                    unit.index = index;
                    units.push(unit);
                }
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let batches = pack(units, self.config.batch_size);
        send_bisecting("Cloudflare", &zone.name, batches, &mut results, |part: &[Unit]| {
            self.send_batch(zone, batch_body(part))
        })
        .await;
        collect_results(results)
    }

    /// external-dns' rules: the proxied property says what Cloudflare will hold (`true` or
    /// `false`, the provider default when unset), only on types Cloudflare can proxy; a
    /// proxied record has TTL 1 (automatic). A record comment is kept: listing reports it.
    fn adjust(&self, mut ep: Endpoint) -> Vec<Endpoint> {
        let proxied = self.proxied(&ep);
        ep.provider_specific.retain(|p| p.name != property::PROXIED);
        match proxied {
            Ok(proxied) if proxiable(ep.record_type) => {
                ep.provider_specific
                    .push(ProviderSpecificProperty { name: property::PROXIED.into(), value: proxied.to_string() });
                if proxied {
                    ep.ttl = Some(AUTO_TTL);
                }
            }
            Ok(_) => {}
            // Kept as asked, so that apply refuses it with the reason.
            Err(_) => return vec![ep],
        }
        vec![ep.normalized()]
    }
}

/// Cuts `units` into batches of at most `max_ops` operations. A unit larger than that goes
/// alone (and Cloudflare will say why it is refused).
fn pack(units: Vec<Unit>, max_ops: usize) -> Vec<Vec<Unit>> {
    let mut batches: Vec<Vec<Unit>> = Vec::new();
    let mut ops = 0;
    for u in units {
        let fits = batches.last().is_some_and(|b| !b.is_empty() && ops + u.ops() <= max_ops);
        if !fits {
            batches.push(Vec::new());
            ops = 0;
        }
        ops += u.ops();
        batches.last_mut().expect("a batch was just pushed").push(u);
    }
    batches
}

impl RequestLimited for CloudflareProvider {
    fn with_rate_limit(mut self, limiter: Limiter) -> Self {
        self.limiter = limiter;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CloudflareProvider {
        let mut cfg = CloudflareConfig::new("token");
        cfg.base_url = "http://127.0.0.1:1".into();
        CloudflareProvider::new(cfg).unwrap()
    }

    fn zone() -> Zone {
        Zone { id: "023e105f4ecef8ad9ca31a8372d0c353".into(), name: "example.test".into() }
    }

    fn rec(id: &str, name: &str, rt: &str, content: &str, ttl: u32, proxied: bool) -> CfRecord {
        CfRecord {
            id: id.into(),
            name: name.into(),
            record_type: rt.into(),
            content: content.into(),
            ttl,
            proxied,
            ..Default::default()
        }
    }

    fn a(name: &str, targets: &[&str]) -> Endpoint {
        Endpoint::new(name, RecordType::A, targets.iter().map(|t| t.to_string()).collect())
    }

    fn with_prop(mut ep: Endpoint, name: &str, value: &str) -> Endpoint {
        ep.provider_specific.push(ProviderSpecificProperty { name: name.into(), value: value.into() });
        ep.normalized()
    }

    #[test]
    fn listed_records_become_endpoints_grouped_by_name_and_type() {
        let mut mx = rec("4", "example.test", "MX", "mx.example.org", 300, false);
        mx.priority = Some(10);
        let mut srv = rec("5", "_sip._tcp.example.test", "SRV", "5 5060 sip.example.test", 300, false);
        srv.priority = Some(0);
        srv.data = Some(json!({"priority": 0, "weight": 5, "port": 5060, "target": "sip.example.test"}));
        let mut caa = rec("6", "example.test", "CAA", "0 issue letsencrypt.org", 300, false);
        caa.data = Some(json!({"flags": 0, "tag": "issue", "value": "letsencrypt.org"}));
        let records = vec![
            rec("1", "Web.Example.test", "A", "192.0.2.2", 1, true),
            rec("2", "web.example.test", "A", "192.0.2.1", 1, true),
            rec("3", "example.test", "NS", "ns1.cloudflare.com", 86400, false),
            mx,
            srv,
            caa,
            rec("7", "example.test", "HTTPS", "1 . alpn=h2", 300, false),
            rec("8", "t.example.test", "TXT", "heritage=external-dns", 120, false),
        ];
        let eps = endpoints_of(&group(&zone(), &records));
        type Shown = (String, RecordType, Vec<String>, Option<u32>, Vec<(String, String)>);
        let show: Vec<Shown> = eps
            .iter()
            .map(|e| {
                (
                    e.dns_name.clone(),
                    e.record_type,
                    e.targets.clone(),
                    e.ttl,
                    e.provider_specific.iter().map(|p| (p.name.clone(), p.value.clone())).collect(),
                )
            })
            .collect();
        let prox = |v: &str| vec![(property::PROXIED.to_string(), v.to_string())];
        assert_eq!(
            show,
            vec![
                (
                    "_sip._tcp.example.test".into(),
                    RecordType::SRV,
                    vec!["0 5 5060 sip.example.test".into()],
                    Some(300),
                    vec![]
                ),
                ("example.test".into(), RecordType::MX, vec!["10 mx.example.org".into()], Some(300), vec![]),
                ("example.test".into(), RecordType::CAA, vec!["0 issue \"letsencrypt.org\"".into()], Some(300), vec![]),
                ("t.example.test".into(), RecordType::TXT, vec!["heritage=external-dns".into()], Some(120), vec![]),
                (
                    "web.example.test".into(),
                    RecordType::A,
                    vec!["192.0.2.1".into(), "192.0.2.2".into()],
                    Some(1),
                    prox("true")
                ),
            ]
        );
    }

    #[test]
    fn record_bodies_carry_type_specific_fields() {
        assert_eq!(
            record_body("m.example.test", RecordType::MX, "10 mx.example.org").unwrap(),
            json!({"type": "MX", "name": "m.example.test", "priority": 10, "content": "mx.example.org"})
        );
        assert_eq!(
            record_body("_s._tcp.example.test", RecordType::SRV, "0 5 5060 sip.example.test").unwrap(),
            json!({"type": "SRV", "name": "_s._tcp.example.test",
                   "data": {"priority": 0, "weight": 5, "port": 5060, "target": "sip.example.test"}})
        );
        assert_eq!(
            record_body("c.example.test", RecordType::CAA, "0 issue \"letsencrypt.org\"").unwrap(),
            json!({"type": "CAA", "name": "c.example.test", "data": {"flags": 0, "tag": "issue", "value": "letsencrypt.org"}})
        );
        assert_eq!(
            record_body("t.example.test", RecordType::TXT, "say \"hi\"").unwrap(),
            json!({"type": "TXT", "name": "t.example.test", "content": "\"say \\\"hi\\\"\""})
        );
        let e = record_body("m.example.test", RecordType::MX, "mx.example.org").unwrap_err();
        assert!(matches!(&e, ProviderError::Rejected(m) if m.contains("<priority> <host>")), "{e:?}");
        assert!(record_body("s.example.test", RecordType::SRV, "0 5 sip").is_err());
    }

    #[test]
    fn txt_content_is_quoted_on_the_wire_and_unquoted_when_listed() {
        let ownership = "heritage=external-dns,external-dns/owner=default,external-dns/resource=service/ns/my svc";
        assert_eq!(quote_txt(ownership), format!("\"{ownership}\""), "as external-dns's registry writes it");
        let long = "x".repeat(300);
        assert_eq!(quote_txt(&long), format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45)));
        for v in [ownership, "say \"hi\" \\o/", long.as_str(), "", "\"already quoted\""] {
            assert_eq!(unquote_txt(&quote_txt(v)), v, "round trip of {v:?}");
            let listed = rec("9", "t.example.test", "TXT", &quote_txt(v), 120, false);
            assert_eq!(target_of(&listed, RecordType::TXT).as_deref(), Some(v));
        }
        // Unquoted content (written by hand or by older extdns) is taken as it is.
        for raw in ["heritage=external-dns", "a \"b\"", "\"open", "\"a\"b"] {
            assert_eq!(unquote_txt(raw), raw);
        }
        assert_eq!(unquote_txt("\"v=spf1 \" \"-all\""), "v=spf1 -all");
    }

    #[test]
    fn proxied_follows_the_property_then_the_default_and_forces_ttl_1() {
        let p = provider();
        let plain = a("web.example.test", &["192.0.2.1"]).with_ttl(60);
        let out = p.adjust(plain.clone());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].provider_specific(property::PROXIED), Some("false"));
        assert_eq!(out[0].ttl, Some(60));

        let on = with_prop(plain.clone(), property::PROXIED, "true");
        let out = p.adjust(on);
        assert_eq!((out[0].provider_specific(property::PROXIED), out[0].ttl), (Some("true"), Some(AUTO_TTL)));

        let mut cfg = CloudflareConfig::new("t");
        cfg.proxied = true;
        let by_default = CloudflareProvider::new(cfg).unwrap();
        assert_eq!(by_default.adjust(plain.clone())[0].provider_specific(property::PROXIED), Some("true"));
        let off = with_prop(plain.clone(), property::PROXIED, "0");
        assert_eq!(by_default.adjust(off)[0].provider_specific(property::PROXIED), Some("false"));

        // TXT cannot be proxied: no property, TTL kept, even with proxied by default.
        let txt = Endpoint::new("t.example.test", RecordType::TXT, vec!["v".into()]).with_ttl(120);
        let out = by_default.adjust(with_prop(txt, property::PROXIED, "true"));
        assert!(out[0].provider_specific.is_empty());
        assert_eq!(out[0].ttl, Some(120));
    }

    #[test]
    fn create_of_a_held_name_and_stale_changes_are_refused_before_sending() {
        let p = provider();
        let records = vec![rec("r1", "web.example.test", "A", "192.0.2.1", 300, false)];
        let mut view = group(&zone(), &records);
        let e = p.translate(&zone(), &mut view, &Change::Create(a("web.example.test", &["192.0.2.9"]))).unwrap_err();
        assert!(matches!(&e, ProviderError::Rejected(m) if m.contains("already exists")), "{e:?}");
        let stale =
            Change::Update { old: a("web.example.test", &["192.0.2.7"]), new: a("web.example.test", &["192.0.2.8"]) };
        let e = p.translate(&zone(), &mut view, &stale).unwrap_err();
        assert!(matches!(&e, ProviderError::Rejected(m) if m.contains("changed meanwhile")), "{e:?}");
        let gone = Change::Delete(a("gone.example.test", &["192.0.2.7"]));
        assert!(p.translate(&zone(), &mut view, &gone).is_err());
        let outside = Change::Create(a("web.other.test", &["192.0.2.7"]));
        let e = p.translate(&zone(), &mut view, &outside).unwrap_err();
        assert!(matches!(&e, ProviderError::Rejected(m) if m.contains("not in Cloudflare zone")), "{e:?}");
    }

    #[test]
    fn an_update_deletes_removed_patches_kept_and_posts_added_records() {
        let p = provider();
        let records = vec![
            rec("r1", "web.example.test", "A", "192.0.2.1", 300, false),
            rec("r2", "web.example.test", "A", "192.0.2.2", 300, false),
        ];
        let mut view = group(&zone(), &records);
        let old = a("web.example.test", &["192.0.2.1", "192.0.2.2"]).with_ttl(300);
        let new = a("web.example.test", &["192.0.2.2", "192.0.2.3"]).with_ttl(60);
        let unit = p.translate(&zone(), &mut view, &Change::Update { old, new: new.clone() }).unwrap();
        assert_eq!(unit.deletes, vec![json!({"id": "r1"})]);
        assert_eq!(unit.patches, vec![json!({"id": "r2", "ttl": 60, "proxied": false})]);
        assert_eq!(
            unit.posts,
            vec![json!({"type": "A", "name": "web.example.test", "content": "192.0.2.3", "ttl": 60, "proxied": false})]
        );
        // Deleting what this apply just posted is refused: there is no id yet.
        let e = p.translate(&zone(), &mut view, &Change::Delete(new)).unwrap_err();
        assert!(matches!(&e, ProviderError::Rejected(m) if m.contains("twice")), "{e:?}");

        // An update that changes nothing Cloudflare holds sends nothing.
        let mut view = group(&zone(), &records);
        let same = a("web.example.test", &["192.0.2.1", "192.0.2.2"]).with_ttl(300);
        let unit = p.translate(&zone(), &mut view, &Change::Update { old: same.clone(), new: same }).unwrap();
        assert_eq!(unit.ops(), 0);
    }

    #[test]
    fn record_comments_are_written_listed_and_patched() {
        let p = provider();
        let commented =
            with_prop(a("web.example.test", &["192.0.2.1"]).with_ttl(300), property::RECORD_COMMENT, "team-a");
        let mut view = BTreeMap::new();
        let unit = p.translate(&zone(), &mut view, &Change::Create(commented.clone())).unwrap();
        assert_eq!(unit.posts[0]["comment"], json!("team-a"));
        let mut r = rec("r1", "web.example.test", "A", "192.0.2.1", 300, false);
        r.comment = Some("team-a".into());
        let listed = endpoints_of(&group(&zone(), &[r.clone()]));
        assert_eq!(p.adjust(commented.clone()), listed, "listing shows what adjust asks for");
        let mut view = group(&zone(), &[r]);
        let moved = with_prop(a("web.example.test", &["192.0.2.1"]).with_ttl(300), property::RECORD_COMMENT, "team-b");
        let unit = p.translate(&zone(), &mut view, &Change::Update { old: commented, new: moved }).unwrap();
        assert_eq!(unit.patches, vec![json!({"id": "r1", "ttl": 300, "proxied": false, "comment": "team-b"})]);
    }

    #[test]
    fn errors_map_to_reasons() {
        let env = |code: i64, message: &str| Envelope {
            success: false,
            errors: vec![ApiMessage { code, message: message.into(), error_chain: vec![] }],
            ..Default::default()
        };
        let kind = |status: u16, e: Option<&Envelope>| classify("x", StatusCode::from_u16(status).unwrap(), e, "").kind;
        assert_eq!(kind(403, Some(&env(9109, "Invalid access token"))), FailureKind::Auth);
        assert_eq!(kind(401, None), FailureKind::Auth);
        assert_eq!(kind(400, Some(&env(6003, "Invalid request headers"))), FailureKind::Auth);
        assert_eq!(kind(400, Some(&env(10000, "Authentication error"))), FailureKind::Auth);
        assert_eq!(
            kind(429, Some(&env(971, "Please wait and consider throttling your request speed"))),
            FailureKind::Throttled
        );
        assert_eq!(kind(502, None), FailureKind::Unreachable);
        assert_eq!(kind(404, Some(&env(7003, "Could not route to /zones/x"))), FailureKind::ZoneNotFound);
        assert_eq!(kind(200, None), FailureKind::Unreachable, "a 2xx that is not Cloudflare's envelope");
        let f = classify(
            "changing records of zone example.test",
            StatusCode::BAD_REQUEST,
            Some(&env(81053, "An A, AAAA, or CNAME record with that host already exists.")),
            "",
        );
        assert_eq!(f.kind, FailureKind::Invalid);
        assert_eq!(
            f.message,
            "changing records of zone example.test: Cloudflare said 81053 An A, AAAA, or CNAME record with that host already exists."
        );
    }

    #[test]
    fn retry_after_and_path_segments() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(http::retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(http::retry_after(&h), None);
        assert_eq!(path_segment("023e105f4ecef8ad9ca31a8372d0c353"), "023e105f4ecef8ad9ca31a8372d0c353");
        assert_eq!(path_segment("../x?y"), "%2E%2E%2Fx%3Fy");
    }

    #[test]
    fn batches_respect_the_operation_limit_and_never_split_a_change() {
        let unit = |index, n| Unit { index, posts: vec![json!({}); n], ..Default::default() };
        let batches = pack(vec![unit(0, 150), unit(1, 40), unit(2, 20), unit(3, 250), unit(4, 1)], 200);
        let idx: Vec<Vec<usize>> = batches.iter().map(|b| b.iter().map(|u| u.index).collect()).collect();
        assert_eq!(idx, vec![vec![0, 1], vec![2], vec![3], vec![4]]);
    }

    #[test]
    fn config_debug_hides_the_token() {
        let cfg = CloudflareConfig::new("s3cr3t-token");
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        assert!(CloudflareProvider::new(CloudflareConfig::new(" ")).is_err());
    }
}
