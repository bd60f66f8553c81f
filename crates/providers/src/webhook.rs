//! A client of external-dns's webhook provider protocol: the DNS provider is a separate
//! program (usually a sidecar on localhost, one of the dozens written for external-dns) that
//! answers `GET /` (negotiation: the domain filter), `GET /records`, `POST /records` (changes)
//! and `POST /adjustendpoints`, all with the media type
//! `application/external.dns.webhook+json;version=1`.
//!
//! * **Zones**: the protocol has none. They are `zones` of the spec when set, else the
//!   `include` entries of the webhook's domain filter. Its `exclude` entries hide names from
//!   listings and refuse changes to them. A regex filter is not evaluated here (the webhook
//!   still applies it): it needs `zones` in the spec.
//! * **Records**: `GET /records` lists everything; each zone keeps the names for which it is
//!   the longest zone.
//! * **Changes**: one `POST /records` per zone with `create`, `updateOld`/`updateNew` and
//!   `delete`, the names of external-dns's OpenAPI file. The protocol overwrites blindly and is all-or-nothing at best, so the records
//!   are read first and every change is checked against them ([`super::precheck`]). Changes
//!   touching a name an earlier change of the batch touched go in a later POST, since a webhook
//!   may apply the groups in any order. A refused POST (4xx) of several changes is followed
//!   by a fresh listing: changes whose effect shows are reported applied (webhooks are not
//!   always atomic), the others are sent one by one so that a bad one fails alone.
//! * **Errors**: connection failures, timeouts and 5xx → `Unreachable` (retried with backoff;
//!   external-dns retries exactly the 5xx too), 401/403 → `AuthFailed`, 429 → `Throttled`,
//!   other 4xx → `Rejected` with the webhook's text. A webhook answering another media type is
//!   a configuration error.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::precheck::{self, check_changes};
use crate::failure::{collect_results, Failure, FailureKind};
use crate::http::{self, base_url, join, HttpConfigError};
use crate::ratelimit::{Limiter, RequestLimited};
use extdns_core::endpoint::{label, normalize_name, Endpoint, ProviderSpecificProperty, RecordKey, RecordType};
use extdns_core::provider::{zone_for, Applied, Change, ChangeResult, Provider, ProviderError, Zone};
use extdns_core::registry::parse_labels;

/// The protocol's media type, sent as Accept and Content-Type and expected back.
pub const MEDIA_TYPE: &str = "application/external.dns.webhook+json;version=1";
/// Where an external-dns webhook sidecar listens by default.
pub const DEFAULT_URL: &str = "http://localhost:8888";

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    /// Zones to manage; empty: the include entries of the webhook's domain filter.
    pub zones: Vec<String>,
    pub timeout: Duration,
    pub default_ttl: u32,
}

impl WebhookConfig {
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig { url: url.into(), zones: Vec::new(), timeout: Duration::from_secs(10), default_ttl: 300 }
    }
}

/// external-dns's `endpoint.Endpoint` as JSON.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WireEndpoint {
    pub dns_name: String,
    #[serde(default)]
    pub targets: Vec<String>,
    pub record_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub set_identifier: String,
    #[serde(default, rename = "recordTTL", skip_serializing_if = "Option::is_none")]
    pub record_ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_specific: Vec<ProviderSpecificProperty>,
}

/// external-dns's `plan.Changes` as JSON: the names of the `changes` schema of external-dns's
/// `api/webhook.yaml` (and of `plan.Changes`' JSON tags since v0.17), sent exactly, since a
/// webhook decoding them exactly (serde, an OpenAPI-generated server) would read `Create` as
/// nothing and answer 204. Read back in either spelling: external-dns before v0.17 had no
/// tags, so Go wrote the field names capitalised.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct WireChanges {
    #[serde(default, deserialize_with = "null_as_empty", alias = "Create", skip_serializing_if = "Vec::is_empty")]
    pub create: Vec<WireEndpoint>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        rename = "updateOld",
        alias = "UpdateOld",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub update_old: Vec<WireEndpoint>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        rename = "updateNew",
        alias = "UpdateNew",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub update_new: Vec<WireEndpoint>,
    #[serde(default, deserialize_with = "null_as_empty", alias = "Delete", skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<WireEndpoint>,
}

/// A list Go encodes as `null` when it is nil (external-dns before v0.17 had no `omitempty`).
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<WireEndpoint>, D::Error> {
    Ok(Option::<Vec<WireEndpoint>>::deserialize(d)?.unwrap_or_default())
}

/// external-dns's `endpoint.DomainFilter` as JSON.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DomainFilter {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub regex_include: String,
    #[serde(default)]
    pub regex_exclude: String,
}

impl DomainFilter {
    /// True when an `exclude` entry covers `name` (normalised).
    fn excludes(&self, name: &str) -> bool {
        self.exclude.iter().any(|d| {
            let below_only = d.trim().starts_with('.');
            let d = normalize_name(d.trim().trim_start_matches('.'));
            (!below_only && name == d) || name.ends_with(&format!(".{d}"))
        })
    }
}

/// An endpoint as external-dns hands it to its webhook. An ownership TXT record (one labelled
/// `ownedRecord` by the registry) goes as external-dns's TXT registry writes it: its text in
/// double quotes (`Labels.Serialize(withQuotes=true)`), no `recordTTL` (the registry sets
/// none, so the webhook's default applies) and the `ownedRecord` label naming the record it
/// backs. An ownership value inside another TXT RRset (beside an SPF value) is quoted too.
pub fn to_wire(e: &Endpoint, default_ttl: u32) -> WireEndpoint {
    let ownership = is_ownership_record(e);
    let targets = if e.record_type == RecordType::TXT {
        e.targets.iter().map(|t| if ownership || is_ownership_text(t) { quoted(t) } else { t.clone() }).collect()
    } else {
        e.targets.clone()
    };
    WireEndpoint {
        dns_name: e.dns_name.clone(),
        targets,
        record_type: e.record_type.as_str().to_string(),
        set_identifier: e.set_identifier.clone(),
        record_ttl: (!ownership).then(|| i64::from(e.ttl.unwrap_or(default_ttl))),
        labels: e.labels.to_map(),
        provider_specific: e.provider_specific.clone(),
    }
}

/// An ownership TXT record built by the registry.
fn is_ownership_record(e: &Endpoint) -> bool {
    e.record_type == RecordType::TXT && e.labels.contains_key(label::OWNED_RECORD)
}

/// A TXT value holding external-dns's label text, quoted or not.
fn is_ownership_text(value: &str) -> bool {
    parse_labels(value).is_some()
}

fn quoted(value: &str) -> String {
    if is_quoted(value) {
        value.to_string()
    } else {
        format!("\"{value}\"")
    }
}

/// One pair of surrounding double quotes and none inside.
fn is_quoted(value: &str) -> bool {
    value.len() >= 2 && value.starts_with('"') && value.ends_with('"') && !value[1..value.len() - 1].contains('"')
}

/// A listed endpoint in our model; `None` for types extdns does not manage. The quotes around
/// an ownership value come off (external-dns's registry and extdns's alike write them), so
/// that it compares equal with the value the registry builds; other TXT values stay as held.
pub fn from_wire(w: WireEndpoint) -> Option<Endpoint> {
    let rt: RecordType = w.record_type.parse().ok()?;
    let owned = w.labels.contains_key(label::OWNED_RECORD);
    let targets = if rt == RecordType::TXT {
        w.targets
            .into_iter()
            .map(|t| if is_quoted(&t) && (owned || is_ownership_text(&t)) { t[1..t.len() - 1].to_string() } else { t })
            .collect()
    } else {
        w.targets
    };
    let mut e = Endpoint::new(w.dns_name, rt, targets);
    e.ttl = w.record_ttl.and_then(|t| u32::try_from(t).ok()).filter(|t| *t > 0);
    e.set_identifier = w.set_identifier;
    // Labels are not data: ownership lives in TXT records, which the registry reads itself.
    e.provider_specific = w.provider_specific;
    Some(e.normalized())
}

pub struct WebhookProvider {
    http: reqwest::Client,
    base: Url,
    config: WebhookConfig,
    limiter: Limiter,
    /// What the last negotiation said, and the zones it gave.
    negotiated: Mutex<Option<(DomainFilter, Vec<Zone>)>>,
}

impl WebhookProvider {
    pub fn new(config: WebhookConfig) -> Result<Self, HttpConfigError> {
        let base = base_url(&config.url)?;
        let http = http::client(config.timeout, None)?;
        Ok(WebhookProvider { http, base, config, limiter: Limiter::default(), negotiated: Mutex::new(None) })
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        route: &[&str],
        body: Option<&B>,
        what: &str,
    ) -> Result<Vec<u8>, Failure> {
        self.limiter.admit(what).await?;
        let url = if route.is_empty() { self.base.clone() } else { join(&self.base, route) };
        let mut req = self.http.request(method, url).header(reqwest::header::ACCEPT, MEDIA_TYPE);
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b)
                .map_err(|e| Failure::new(FailureKind::Config, format!("{what}: encoding: {e}")))?;
            req = req.header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE).body(bytes);
        }
        let resp = req.send().await.map_err(|e| http::transport_failure(what, &e))?;
        let status = resp.status();
        let content_type =
            resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let bytes = resp.bytes().await.map_err(|e| http::transport_failure(what, &e))?;
        if status.is_success() {
            if !bytes.is_empty() && !media_type_matches(&content_type) {
                return Err(Failure::new(
                    FailureKind::Config,
                    format!("{what}: the webhook answered Content-Type {content_type:?}, not {MEDIA_TYPE}: not an external-dns webhook of protocol version 1"),
                ));
            }
            return Ok(bytes.to_vec());
        }
        Err(classify(status, &bytes, what))
    }

    /// `GET /`: the domain filter, and the zones it (or the spec) gives.
    async fn negotiate(&self) -> Result<(DomainFilter, Vec<Zone>), ProviderError> {
        let what = format!("negotiating with the webhook at {}", self.config.url);
        let body = self.send::<()>(Method::GET, &[], None, &what).await.map_err(Failure::into_provider_error)?;
        let filter: DomainFilter = if body.iter().all(u8::is_ascii_whitespace) {
            DomainFilter::default()
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ProviderError::Config(format!("{what}: the domain filter is not JSON as expected: {e}")))?
        };
        let names: Vec<String> = if !self.config.zones.is_empty() {
            self.config.zones.clone()
        } else if !filter.regex_include.is_empty() {
            return Err(ProviderError::Config(format!(
                "{what}: the webhook filters domains by regex ({:?}), which names no zone: set spec.webhook.zones",
                filter.regex_include
            )));
        } else {
            filter.include.iter().map(|d| d.trim().trim_start_matches('.').to_string()).collect()
        };
        let mut zones: Vec<Zone> = names.iter().map(|n| Zone::named(n)).filter(|z| !z.name.is_empty()).collect();
        zones.sort();
        zones.dedup();
        if zones.is_empty() {
            return Err(ProviderError::Config(format!(
                "{what}: the webhook's domain filter names no domains and spec.webhook.zones is empty: set the zones to manage"
            )));
        }
        Ok((filter, zones))
    }

    /// The negotiated filter and zones, negotiating when nothing was negotiated yet.
    async fn state(&self) -> Result<(DomainFilter, Vec<Zone>), ProviderError> {
        if let Some(s) = self.negotiated.lock().map(|g| g.clone()).unwrap_or(None) {
            return Ok(s);
        }
        let s = self.negotiate().await?;
        if let Ok(mut g) = self.negotiated.lock() {
            *g = Some(s.clone());
        }
        Ok(s)
    }

    /// Every record the webhook holds in `zone` (the longest zone of each name).
    async fn list(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        let (filter, zones) = self.state().await?;
        let what = format!("listing records of the webhook at {}", self.config.url);
        let body =
            self.send::<()>(Method::GET, &["records"], None, &what).await.map_err(Failure::into_provider_error)?;
        let wire: Vec<WireEndpoint> = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unreachable(format!("{what}: unexpected answer: {e}")))?;
        Ok(wire
            .into_iter()
            .filter_map(from_wire)
            .filter(|e| !filter.excludes(&e.dns_name))
            .filter(|e| zone_for(&zones, &e.dns_name).is_some_and(|z| z.name == zone.name))
            .collect())
    }

    async fn post(&self, changes: &[&Change]) -> Result<(), Failure> {
        let mut wire = WireChanges::default();
        let ttl = self.config.default_ttl;
        for c in changes {
            match c {
                Change::Create(e) => wire.create.push(to_wire(e, ttl)),
                Change::Update { old, new } => {
                    wire.update_old.push(to_wire(old, ttl));
                    wire.update_new.push(to_wire(new, ttl));
                }
                Change::Delete(e) => wire.delete.push(to_wire(e, ttl)),
            }
        }
        let what = format!("applying {} changes through the webhook at {}", changes.len(), self.config.url);
        self.send(Method::POST, &["records"], Some(&wire), &what).await.map(|_| ())
    }

    /// Sends `batch` (indexes into `changes`); fills `results`. Returns an error that holds for
    /// every request, after which nothing more is sent.
    async fn send_batch(
        &self,
        zone: &Zone,
        changes: &[Change],
        batch: &[usize],
        results: &mut [Option<ChangeResult>],
    ) -> Result<(), ProviderError> {
        let refs: Vec<&Change> = batch.iter().map(|&i| &changes[i]).collect();
        match self.post(&refs).await {
            Ok(()) => {
                for &i in batch {
                    results[i] = Some(Ok(Applied::Live));
                }
                Ok(())
            }
            Err(f) if f.kind == FailureKind::Invalid && batch.len() == 1 => {
                results[batch[0]] = Some(Err(f.into_provider_error()));
                Ok(())
            }
            // A webhook applies a POST change by change (no transaction): after a refusal, the
            // changes the zone does not show yet go out one at a time.
            Err(f) if f.kind == FailureKind::Invalid => {
                tracing::debug!(zone = %zone.name, changes = batch.len(), error = %f.message, "webhook refused a batch; sending its changes one by one");
                let held = self.list(zone).await?;
                for &i in batch {
                    if shows(&held, &changes[i]) {
                        results[i] = Some(Ok(Applied::Live));
                        continue;
                    }
                    match self.post(&[&changes[i]]).await {
                        Ok(()) => results[i] = Some(Ok(Applied::Live)),
                        Err(f) if f.kind == FailureKind::Invalid => results[i] = Some(Err(f.into_provider_error())),
                        Err(f) => return Err(f.into_provider_error()),
                    }
                }
                Ok(())
            }
            Err(f) => Err(f.into_provider_error()),
        }
    }
}

fn media_type_matches(content_type: &str) -> bool {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    squash(content_type) == squash(MEDIA_TYPE)
}

/// Whether `change`'s effect shows in `held`.
fn shows(held: &[Endpoint], change: &Change) -> bool {
    let find = |k: &RecordKey| held.iter().find(|h| &h.key() == k);
    let same = |h: &Endpoint, e: &Endpoint| {
        let (mut a, mut b) = (h.targets.clone(), e.targets.clone());
        a.sort();
        b.sort();
        a == b
    };
    match change {
        Change::Create(e) | Change::Update { new: e, .. } => find(&e.key()).is_some_and(|h| same(h, e)),
        Change::Delete(e) => find(&e.key()).is_none(),
    }
}

fn classify(status: StatusCode, body: &[u8], what: &str) -> Failure {
    let text = http::body_snippet(body);
    let msg = if text.is_empty() { format!("{what}: HTTP {status}") } else { format!("{what}: HTTP {status}: {text}") };
    match status {
        // Not the protocol this speaks: whatever answers is no webhook of version 1.
        StatusCode::NOT_ACCEPTABLE | StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::NOT_FOUND => {
            Failure::new(FailureKind::Config, format!("{msg} (is this an external-dns webhook, protocol version 1?)"))
        }
        _ => match FailureKind::of_http_status(status.as_u16()) {
            FailureKind::Invalid if !text.is_empty() => Failure::new(FailureKind::Invalid, format!("webhook: {text}")),
            kind => Failure::new(kind, msg),
        },
    }
}

/// Cuts changes (indexes) into POSTs in order, starting a new one when a change touches a name
/// an earlier change of the current POST touched.
fn into_posts(changes: &[Change], indexes: Vec<usize>) -> Vec<Vec<usize>> {
    let names = |c: &Change| -> Vec<String> {
        match c {
            Change::Update { old, new } => vec![normalize_name(&old.dns_name), normalize_name(&new.dns_name)],
            other => vec![normalize_name(&other.endpoint().dns_name)],
        }
    };
    precheck::batches_without_repeats(indexes, |&i| names(&changes[i]))
}

#[async_trait]
impl Provider for WebhookProvider {
    /// Negotiates again on every call (the webhook may have restarted with another filter).
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        let s = self.negotiate().await?;
        let zones = s.1.clone();
        if let Ok(mut g) = self.negotiated.lock() {
            *g = Some(s);
        }
        Ok(zones)
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        self.list(zone).await
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        let mut results: Vec<Option<ChangeResult>> = vec![None; changes.len()];
        let (filter, _) = match self.state().await {
            Ok(s) => s,
            Err(e) => return changes.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut valid = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let eps: Vec<&Endpoint> = match c {
                Change::Update { old, new } => vec![old, new],
                other => vec![other.endpoint()],
            };
            let bad = eps.iter().find_map(|e| {
                let name = normalize_name(&e.dns_name);
                if !zone.contains(&name) {
                    Some(format!("{} {}: the name is outside zone {}", name, e.record_type, zone.name))
                } else if filter.excludes(&name) {
                    Some(format!("{} {}: the webhook's domain filter excludes the name", name, e.record_type))
                } else {
                    None
                }
            });
            match bad {
                Some(m) => results[i] = Some(Err(ProviderError::Rejected(m))),
                None => valid.push(i),
            }
        }
        if !valid.is_empty() {
            match self.list(zone).await {
                Err(e) => {
                    for &i in &valid {
                        results[i] = Some(Err(e.clone()));
                    }
                    valid.clear();
                }
                Ok(held) => {
                    let checked: Vec<Change> = valid.iter().map(|&i| changes[i].clone()).collect();
                    let verdicts = check_changes(&held, &checked, self.config.default_ttl);
                    let mut kept = Vec::new();
                    for (i, v) in valid.into_iter().zip(verdicts) {
                        match v {
                            Ok(()) => kept.push(i),
                            Err(m) => results[i] = Some(Err(ProviderError::Rejected(m))),
                        }
                    }
                    valid = kept;
                }
            }
        }
        let mut abort: Option<ProviderError> = None;
        for batch in into_posts(changes, valid) {
            if let Some(e) = &abort {
                for &i in &batch {
                    results[i] = Some(Err(e.clone()));
                }
                continue;
            }
            if let Err(e) = self.send_batch(zone, changes, &batch, &mut results).await {
                tracing::warn!(zone = %zone.name, error = %e, "webhook apply failed; not sending the remaining changes");
                for &i in &batch {
                    if results[i].is_none() {
                        results[i] = Some(Err(e.clone()));
                    }
                }
                abort = Some(e);
            }
        }
        collect_results(results)
    }

    /// `POST /adjustendpoints` with all records at once. The answer is matched back to the
    /// records asked for by name, setIdentifier and type (else name and setIdentifier); a
    /// record the webhook drops gets nothing. When the call fails the records stay as asked,
    /// which at worst makes extdns write what the webhook would have adjusted.
    async fn adjust_all(&self, endpoints: Vec<Endpoint>) -> Vec<Vec<Endpoint>> {
        if endpoints.is_empty() {
            return Vec::new();
        }
        let wire: Vec<WireEndpoint> = endpoints.iter().map(|e| to_wire(e, self.config.default_ttl)).collect();
        let what = format!("adjusting {} records through the webhook at {}", endpoints.len(), self.config.url);
        let answer = match self.send(Method::POST, &["adjustendpoints"], Some(&wire), &what).await {
            Ok(body) => serde_json::from_slice::<Vec<WireEndpoint>>(&body).map_err(|e| format!("{what}: {e}")),
            Err(f) => Err(f.into_provider_error().to_string()),
        };
        match answer {
            Ok(adjusted) => match_adjusted(&endpoints, adjusted),
            Err(e) => {
                tracing::warn!(error = %e, "webhook adjustendpoints failed; using the records as asked");
                endpoints.into_iter().map(|e| vec![e]).collect()
            }
        }
    }
}

/// Assigns each adjusted endpoint to the record asked for that it came from.
fn match_adjusted(asked: &[Endpoint], adjusted: Vec<WireEndpoint>) -> Vec<Vec<Endpoint>> {
    let mut out: Vec<Vec<Endpoint>> = vec![Vec::new(); asked.len()];
    for w in adjusted {
        let Some(mut e) = from_wire(w.clone()) else { continue };
        let exact = asked.iter().position(|a| a.key() == e.key());
        let loose = || {
            asked.iter().position(|a| normalize_name(&a.dns_name) == e.dns_name && a.set_identifier == e.set_identifier)
        };
        if let Some(i) = exact.or_else(loose) {
            // Labels travel with the record asked for: the registry needs owner and resource.
            e.labels = asked[i].labels.clone();
            if w.record_ttl.is_none() {
                e.ttl = asked[i].ttl;
            }
            out[i].push(e);
        }
    }
    out
}

impl RequestLimited for WebhookProvider {
    fn with_rate_limit(mut self, limiter: Limiter) -> Self {
        self.limiter = limiter;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_round_trip_through_the_wire_shape() {
        let mut e = Endpoint::new("www.example.org", RecordType::A, vec!["192.0.2.1".into()]).with_ttl(60);
        e.set_identifier = "eu".into();
        e.provider_specific.push(ProviderSpecificProperty { name: "webhook/x".into(), value: "1".into() });
        let w = to_wire(&e, 300);
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            serde_json::json!({"dnsName":"www.example.org","targets":["192.0.2.1"],"recordType":"A",
                "setIdentifier":"eu","recordTTL":60,"providerSpecific":[{"name":"webhook/x","value":"1"}]})
        );
        assert_eq!(from_wire(w), Some(e));
        let unknown = WireEndpoint { dns_name: "x".into(), record_type: "HTTPS".into(), ..Default::default() };
        assert_eq!(from_wire(unknown), None);
    }

    #[test]
    fn changes_use_external_dns_field_names_and_read_both_spellings() {
        let a = Endpoint::new("a.example.org", RecordType::A, vec!["192.0.2.1".into()]);
        let w = to_wire(&a, 300);
        let wire = WireChanges {
            create: vec![w.clone()],
            update_old: vec![w.clone()],
            update_new: vec![w.clone()],
            delete: vec![w.clone()],
        };
        let v = serde_json::to_value(&wire).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["create", "delete", "updateNew", "updateOld"]);
        let only_create = serde_json::to_value(WireChanges { create: vec![w.clone()], ..Default::default() }).unwrap();
        assert_eq!(only_create.as_object().unwrap().len(), 1, "empty lists are left out: {only_create}");
        let go_untagged = serde_json::json!({"Create": [v["create"][0]], "UpdateOld": null, "Delete": []});
        let read: WireChanges = serde_json::from_value(go_untagged).unwrap();
        assert_eq!(read, WireChanges { create: vec![w], ..Default::default() });
        assert_eq!(serde_json::from_value::<WireChanges>(v).unwrap(), wire);
    }

    #[test]
    fn domain_filter_excludes() {
        let f: DomainFilter =
            serde_json::from_str(r#"{"include":["example.org"],"exclude":["int.example.org",".only.example.org"]}"#)
                .unwrap();
        assert!(f.excludes("int.example.org") && f.excludes("a.int.example.org"));
        assert!(!f.excludes("only.example.org") && f.excludes("a.only.example.org"));
        assert!(!f.excludes("www.example.org"));
    }

    #[test]
    fn errors_map_to_reasons() {
        let reason = |s: u16| classify(StatusCode::from_u16(s).unwrap(), b"nope", "x").into_provider_error().reason();
        assert_eq!(reason(401), "AuthFailed");
        assert_eq!(reason(429), "Throttled");
        assert_eq!(reason(500), "Unreachable");
        assert_eq!(reason(503), "Unreachable");
        assert_eq!(reason(400), "ProviderRejected");
        assert_eq!(reason(409), "ProviderRejected");
        assert_eq!(reason(406), "InvalidProvider");
        assert!(media_type_matches("application/external.dns.webhook+json; version=1"));
        assert!(!media_type_matches("application/json"));
    }

    #[test]
    fn posts_never_hold_one_name_twice() {
        let a = |n: &str| Change::Create(Endpoint::new(n, RecordType::A, vec!["192.0.2.1".into()]));
        let changes = vec![a("x.example.org"), a("y.example.org"), a("X.example.org"), a("z.example.org")];
        assert_eq!(into_posts(&changes, vec![0, 1, 2, 3]), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn adjusted_records_find_their_origin() {
        let mut asked = Endpoint::new("www.example.org", RecordType::CNAME, vec!["lb.example.net".into()]);
        asked.labels.insert("owner".into(), "me".into());
        let other = Endpoint::new("api.example.org", RecordType::A, vec!["192.0.2.1".into()]);
        let adjusted = vec![
            WireEndpoint {
                dns_name: "WWW.example.org".into(),
                targets: vec!["192.0.2.9".into()],
                record_type: "A".into(),
                record_ttl: Some(60),
                ..Default::default()
            },
            WireEndpoint { dns_name: "unknown.example.org".into(), record_type: "A".into(), ..Default::default() },
        ];
        let out = match_adjusted(&[asked, other], adjusted);
        assert_eq!(out[0].len(), 1);
        assert_eq!((out[0][0].record_type, out[0][0].ttl), (RecordType::A, Some(60)));
        assert_eq!(out[0][0].labels.get("owner").map(String::as_str), Some("me"));
        assert!(out[1].is_empty(), "dropped by the webhook");
    }
}
