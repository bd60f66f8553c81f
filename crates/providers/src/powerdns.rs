//! PowerDNS Authoritative through its HTTP API (`/api/v1/servers/{server}/zones`).
//!
//! * **Zones** are listed with `GET …/zones`; a configured zone the server does not hold fails
//!   the listing with `ZoneNotFound` naming it.
//! * **Records** are the zone's RRsets (`GET …/zones/{id}`), without the SOA and the apex NS,
//!   which belong to whoever runs the server. TXT contents come quoted and split into
//!   character-strings; they are joined and unquoted here, and quoted (255-byte strings) on the
//!   way back. Names carry a trailing dot on the wire and none in the model.
//! * **Changes** go out as one `PATCH` per zone holding one RRset per change, `changetype`
//!   `REPLACE` (create, update: the complete new RRset) or `DELETE`. PowerDNS applies a PATCH in
//!   one transaction, so a record and its ownership TXT in one PATCH land together or not at
//!   all. `REPLACE` overwrites blindly, so the zone is read first and every change checked
//!   against it ([`super::precheck`]): a create of an RRset that exists, or an update or delete
//!   of values somebody changed meanwhile, is refused without being sent. A PATCH PowerDNS
//!   refuses (422: a CNAME beside other data, a malformed value) is bisected until the refused
//!   changes are isolated; the others are applied. Two changes of one batch touching the same
//!   RRset go into consecutive PATCHes, since PowerDNS takes an RRset once per PATCH.
//! * **Errors**: 401/403 → `AuthFailed`, 404 of a zone → `ZoneNotFound`, 422 and other 4xx →
//!   `Rejected` with PowerDNS's `error` text, 429 → `Throttled`, 5xx, timeouts and connection
//!   failures → `Unreachable`.
//! * Redirects are not followed: the API key is a header a redirect would carry to another host.
//!
//! PowerDNS has no routing policies: a record with a `setIdentifier` is refused.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::precheck::{self, check_changes};
use crate::failure::{collect_results, send_bisecting, BatchUnit, Failure, FailureKind};
use crate::http::{self, base_url, join, HttpConfigError};
use crate::ratelimit::{Limiter, RequestLimited};
use extdns_core::endpoint::{normalize_name, Endpoint, RecordType};
use extdns_core::provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};

/// Everything the provider needs, already read from Secrets.
#[derive(Clone)]
pub struct PowerDnsConfig {
    /// Base URL of the API server, e.g. `http://pdns.dns.svc:8081`.
    pub url: String,
    /// PowerDNS server id; `localhost` on every stock installation.
    pub server_id: String,
    pub api_key: String,
    /// Zones to manage; empty means every zone the server holds.
    pub zones: Vec<String>,
    /// PEM CA certificates trusted for an `https` URL, besides the built-in roots.
    pub ca_bundle: Option<Vec<u8>>,
    /// Bound on one HTTP request.
    pub timeout: Duration,
    pub default_ttl: u32,
}

impl std::fmt::Debug for PowerDnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerDnsConfig")
            .field("url", &self.url)
            .field("server_id", &self.server_id)
            .field("api_key", &"<redacted>")
            .field("zones", &self.zones)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PowerDnsConfig {
    pub fn new(url: impl Into<String>, api_key: impl Into<String>) -> Self {
        PowerDnsConfig {
            url: url.into(),
            server_id: "localhost".into(),
            api_key: api_key.into(),
            zones: Vec::new(),
            ca_bundle: None,
            timeout: Duration::from_secs(10),
            default_ttl: 300,
        }
    }
}

pub struct PowerDnsProvider {
    http: reqwest::Client,
    /// `…/api/v1/servers/{server}/zones`.
    zones_url: Url,
    config: PowerDnsConfig,
    limiter: Limiter,
}

impl PowerDnsProvider {
    pub fn new(config: PowerDnsConfig) -> Result<Self, HttpConfigError> {
        let base = base_url(&config.url)?;
        if config.api_key.is_empty() || reqwest::header::HeaderValue::from_str(&config.api_key).is_err() {
            return Err(HttpConfigError::ApiKey("empty or not a valid header value".into()));
        }
        let http = http::client(config.timeout, config.ca_bundle.as_deref())?;
        let zones_url = join(&base, &["api", "v1", "servers", &config.server_id, "zones"]);
        Ok(PowerDnsProvider { http, zones_url, config, limiter: Limiter::default() })
    }

    fn zone_url(&self, zone: &Zone) -> Url {
        join(&self.zones_url, &[&zone.id])
    }

    /// Sends one request; returns the body of a 2xx answer, or the error the status means.
    async fn send(&self, method: Method, url: Url, body: Option<&PatchBody>, what: &str) -> Result<Vec<u8>, Failure> {
        self.limiter.admit(what).await?;
        let mut req = self
            .http
            .request(method, url)
            .header("X-API-Key", &self.config.api_key)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| http::transport_failure(what, &e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| http::transport_failure(what, &e))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(classify(status, &bytes, what))
    }

    async fn zone_rrsets(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        let what = format!("reading zone {}", zone.name);
        let body = self.send(Method::GET, self.zone_url(zone), None, &what).await.map_err(|f| f.in_zone(&zone.name))?;
        let detail: ZoneDetail = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unreachable(format!("{what}: unexpected answer: {e}")))?;
        Ok(rrsets_to_endpoints(zone, &detail.rrsets))
    }

    fn ttl_of(&self, e: &Endpoint) -> u32 {
        e.ttl.unwrap_or(self.config.default_ttl)
    }

    /// One change as the RRsets of a PATCH, or why it cannot be sent.
    fn prepare(&self, zone: &Zone, change: &Change) -> Result<Vec<RrSet>, String> {
        let check = |e: &Endpoint| -> Result<(), String> {
            let name = normalize_name(&e.dns_name);
            if !zone.contains(&name) {
                return Err(format!("{} {}: the name is outside zone {}", name, e.record_type, zone.name));
            }
            if !e.set_identifier.is_empty() {
                return Err(format!(
                    "{} {}: setIdentifier {:?}: PowerDNS has no routing policies, one RRset per name and type",
                    name, e.record_type, e.set_identifier
                ));
            }
            Ok(())
        };
        match change {
            Change::Create(e) => {
                check(e)?;
                Ok(vec![replace(e, self.ttl_of(e))?])
            }
            Change::Update { old, new } => {
                check(old)?;
                check(new)?;
                let mut out = Vec::new();
                if normalize_name(&old.dns_name) != normalize_name(&new.dns_name) || old.record_type != new.record_type
                {
                    out.push(delete(old));
                }
                out.push(replace(new, self.ttl_of(new))?);
                Ok(out)
            }
            Change::Delete(e) => {
                check(e)?;
                Ok(vec![delete(e)])
            }
        }
    }
}

/// PowerDNS answers errors as `{"error": "..."}`; some (401) as plain text.
fn error_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ApiError {
        error: String,
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => e.error,
        Err(_) => {
            let s = String::from_utf8_lossy(body);
            let s = s.trim();
            s.chars().take(300).collect()
        }
    }
}

fn classify(status: StatusCode, body: &[u8], what: &str) -> Failure {
    let text = error_text(body);
    let msg = if text.is_empty() { format!("{what}: HTTP {status}") } else { format!("{what}: HTTP {status}: {text}") };
    // 422 is PowerDNS's word for bad data; other 4xx are refusals of this request too.
    match FailureKind::of_http_status(status.as_u16()) {
        FailureKind::Auth => Failure::new(FailureKind::Auth, format!("{msg} (check the API key)")),
        FailureKind::Invalid => Failure::new(FailureKind::Invalid, text_or(msg, &text)),
        kind => Failure::new(kind, msg),
    }
}

/// A refusal reads best as PowerDNS's own words, which name the RRset.
fn text_or(msg: String, text: &str) -> String {
    if text.is_empty() {
        msg
    } else {
        format!("PowerDNS: {text}")
    }
}

#[derive(Deserialize)]
struct ZoneSummary {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct ZoneDetail {
    #[serde(default)]
    rrsets: Vec<RrSetIn>,
}

#[derive(Deserialize)]
struct RrSetIn {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    records: Vec<RecordIn>,
}

#[derive(Deserialize)]
struct RecordIn {
    content: String,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
struct PatchBody {
    rrsets: Vec<RrSet>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
struct RrSet {
    name: String,
    #[serde(rename = "type")]
    rtype: &'static str,
    changetype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<Vec<RecordOut>>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
struct RecordOut {
    content: String,
    disabled: bool,
}

fn fqdn(name: &str) -> String {
    format!("{}.", normalize_name(name))
}

fn replace(e: &Endpoint, ttl: u32) -> Result<RrSet, String> {
    let records = e
        .targets
        .iter()
        .map(|t| content_of(e.record_type, t).map(|content| RecordOut { content, disabled: false }))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| format!("{} {}: {m}", normalize_name(&e.dns_name), e.record_type))?;
    if records.is_empty() {
        return Err(format!("{} {}: no values", normalize_name(&e.dns_name), e.record_type));
    }
    Ok(RrSet {
        name: fqdn(&e.dns_name),
        rtype: e.record_type.as_str(),
        changetype: "REPLACE",
        ttl: Some(ttl),
        records: Some(records),
    })
}

fn delete(e: &Endpoint) -> RrSet {
    RrSet { name: fqdn(&e.dns_name), rtype: e.record_type.as_str(), changetype: "DELETE", ttl: None, records: None }
}

/// A target of ours as PowerDNS content: names fully qualified, TXT quoted.
fn content_of(rt: RecordType, target: &str) -> Result<String, String> {
    let t = target.trim();
    Ok(match rt {
        RecordType::CNAME | RecordType::NS | RecordType::PTR => fqdn(t),
        RecordType::MX | RecordType::SRV => {
            let mut parts: Vec<&str> = t.split_whitespace().collect();
            let want = if rt == RecordType::MX { 2 } else { 4 };
            if parts.len() != want {
                return Err(format!("{rt} value {t:?} needs {want} fields"));
            }
            let host = fqdn(parts.pop().unwrap_or_default());
            parts.iter().map(|p| p.to_string()).chain(std::iter::once(host)).collect::<Vec<_>>().join(" ")
        }
        RecordType::TXT => quote_txt(target),
        _ => t.to_string(),
    })
}

/// A TXT value as zone-file text: character-strings of at most 255 bytes, each quoted, with
/// `"` and `\` escaped and bytes outside printable ASCII as `\DDD`.
pub(crate) fn quote_txt(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return "\"\"".into();
    }
    bytes
        .chunks(255)
        .map(|chunk| {
            let mut s = String::with_capacity(chunk.len() + 2);
            s.push('"');
            for &b in chunk {
                match b {
                    b'"' => s.push_str("\\\""),
                    b'\\' => s.push_str("\\\\"),
                    0x20..=0x7e => s.push(char::from(b)),
                    _ => s.push_str(&format!("\\{b:03}")),
                }
            }
            s.push('"');
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Zone-file TXT content back to one value: the character-strings joined, escapes undone.
/// Unquoted words (PowerDNS never sends them, but zone files allow them) count as strings.
pub(crate) fn unquote_txt(content: &str) -> String {
    let b = content.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => i += 1,
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i = unescape_at(b, i, &mut out);
                }
                i += 1;
            }
            _ => {
                while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
                    i = unescape_at(b, i, &mut out);
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Copies the (possibly escaped) byte at `i` to `out`; returns the next index.
fn unescape_at(b: &[u8], i: usize, out: &mut Vec<u8>) -> usize {
    if b[i] != b'\\' || i + 1 >= b.len() {
        out.push(b[i]);
        return i + 1;
    }
    let digits = &b[i + 1..(i + 4).min(b.len())];
    if digits.len() == 3 && digits.iter().all(u8::is_ascii_digit) {
        let v = digits.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        if let Ok(byte) = u8::try_from(v) {
            out.push(byte);
            return i + 4;
        }
    }
    out.push(b[i + 1]);
    i + 2
}

fn rrsets_to_endpoints(zone: &Zone, rrsets: &[RrSetIn]) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for r in rrsets {
        let Ok(rt) = r.rtype.parse::<RecordType>() else { continue };
        let name = normalize_name(&r.name);
        // The apex NS belongs to whoever runs the server, like the SOA (not a type of ours).
        if rt == RecordType::NS && name == zone.name {
            continue;
        }
        if r.records.is_empty() {
            continue;
        }
        let targets: Vec<String> = r
            .records
            .iter()
            .map(|c| if rt == RecordType::TXT { unquote_txt(&c.content) } else { c.content.clone() })
            .collect();
        let mut e = Endpoint::new(name, rt, targets);
        e.ttl = r.ttl;
        out.push(e);
    }
    out
}

/// A change ready to send: its position and its RRsets.
struct Prepared {
    index: usize,
    rrsets: Vec<RrSet>,
}

impl BatchUnit for Prepared {
    fn index(&self) -> usize {
        self.index
    }
}

/// Cuts prepared changes into PATCHes in order, starting a new one when a change touches an
/// RRset the current one already holds.
fn into_patches(prepared: Vec<Prepared>) -> Vec<Vec<Prepared>> {
    precheck::batches_without_repeats(prepared, |p| p.rrsets.iter().map(|r| (r.name.clone(), r.rtype)).collect())
}

#[async_trait]
impl Provider for PowerDnsProvider {
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        let what = format!("listing zones of server {}", self.config.server_id);
        let body = self.send(Method::GET, self.zones_url.clone(), None, &what).await.map_err(|f| match f.kind {
            FailureKind::ZoneNotFound => ProviderError::Config(format!("{} (is serverId right?)", f.message)),
            _ => f.into_provider_error(),
        })?;
        let listed: Vec<ZoneSummary> = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unreachable(format!("{what}: unexpected answer: {e}")))?;
        let held: BTreeMap<String, Zone> = listed
            .into_iter()
            .map(|z| {
                let name = normalize_name(&z.name);
                (name.clone(), Zone { id: z.id, name })
            })
            .collect();
        if self.config.zones.is_empty() {
            return Ok(held.into_values().collect());
        }
        let mut zones = Vec::new();
        let mut missing = Vec::new();
        for want in &self.config.zones {
            match held.get(&normalize_name(want)) {
                Some(z) => zones.push(z.clone()),
                None => missing.push(normalize_name(want)),
            }
        }
        if !missing.is_empty() {
            return Err(ProviderError::ZoneNotFound(format!(
                "server {} at {} holds no zone {}",
                self.config.server_id,
                self.config.url,
                missing.join(", ")
            )));
        }
        Ok(zones)
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        self.zone_rrsets(zone).await
    }

    /// PowerDNS's API refuses a `*` that is not a whole label ("contains unsupported
    /// characters"), which is where external-dns puts a wildcard's ownership TXT
    /// (`a-*.name`) unless a wildcard replacement is configured: refuse it here, naming the
    /// setting, so the record and its TXT are refused together before anything is sent.
    fn check(&self, _zone: &Zone, change: &Change) -> Result<(), ProviderError> {
        let name = match change {
            Change::Create(e) | Change::Delete(e) => &e.dns_name,
            Change::Update { new, .. } => &new.dns_name,
        };
        if name.split('.').any(|label| label.contains('*') && label != "*") {
            return Err(ProviderError::Rejected(format!(
                "{name}: PowerDNS's API refuses a '*' inside a label (an ownership TXT of a wildcard \
                 record); set registry.txt.wildcardReplacement on the DNSProvider, e.g. \"any\""
            )));
        }
        Ok(())
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        let mut results: Vec<Option<ChangeResult>> = vec![None; changes.len()];
        let mut prepared = Vec::new();
        for (index, c) in changes.iter().enumerate() {
            match self.prepare(zone, c) {
                Ok(rrsets) => prepared.push(Prepared { index, rrsets }),
                Err(m) => results[index] = Some(Err(ProviderError::Rejected(m))),
            }
        }
        if !prepared.is_empty() {
            match self.zone_rrsets(zone).await {
                Err(e) => {
                    for p in &prepared {
                        results[p.index] = Some(Err(e.clone()));
                    }
                    prepared.clear();
                }
                Ok(held) => {
                    let checked: Vec<Change> = prepared.iter().map(|p| changes[p.index].clone()).collect();
                    let verdicts = check_changes(&held, &checked, self.config.default_ttl);
                    let mut kept = Vec::new();
                    for (p, v) in prepared.into_iter().zip(verdicts) {
                        match v {
                            Ok(()) => kept.push(p),
                            Err(m) => results[p.index] = Some(Err(ProviderError::Rejected(m))),
                        }
                    }
                    prepared = kept;
                }
            }
        }
        // One PATCH is one transaction: a refused one is bisected to isolate the refused changes.
        send_bisecting("PowerDNS", &zone.name, into_patches(prepared), &mut results, |part: &[Prepared]| {
            let body = PatchBody { rrsets: part.iter().flat_map(|p| p.rrsets.iter().cloned()).collect() };
            let what = format!("patching zone {} ({} changes)", zone.name, part.len());
            async move { self.send(Method::PATCH, self.zone_url(zone), Some(&body), &what).await.map(|_| Applied::Live) }
        })
        .await;
        collect_results(results)
    }
}

impl RequestLimited for PowerDnsProvider {
    fn with_rate_limit(mut self, limiter: Limiter) -> Self {
        self.limiter = limiter;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_inside_a_label_is_refused_before_sending() {
        let p = PowerDnsProvider::new(PowerDnsConfig::new("http://127.0.0.1:1".to_string(), "k")).unwrap();
        let zone = Zone::named("example.org");
        let create = |name: &str| Change::Create(Endpoint::new(name, RecordType::TXT, vec!["v".into()]));
        let err = p.check(&zone, &create("a-*.w.example.org")).unwrap_err().to_string();
        assert!(err.contains("a-*.w.example.org") && err.contains("wildcardReplacement"), "{err}");
        assert!(p.check(&zone, &create("*.w.example.org")).is_ok());
        assert!(p.check(&zone, &create("a-any.w.example.org")).is_ok());
    }

    #[test]
    fn txt_round_trips_through_zone_file_quoting() {
        let long: String = "x".repeat(300);
        for v in ["plain", "say \"hi\"; a\\b", "heritage=external-dns,external-dns/owner=default", &long, "ünï", ""] {
            assert_eq!(unquote_txt(&quote_txt(v)), v, "{v:?} -> {}", quote_txt(v));
        }
        assert_eq!(quote_txt("a\"b"), r#""a\"b""#);
        let split = quote_txt(&long);
        assert_eq!(split.matches('"').count(), 4, "two character-strings: {split}");
        assert_eq!(unquote_txt(r#""v=spf1 " "-all""#), "v=spf1 -all");
        assert_eq!(unquote_txt(r#""\195\188""#), "ü");
    }

    #[test]
    fn contents_are_fully_qualified() {
        assert_eq!(content_of(RecordType::CNAME, "a.example.org").unwrap(), "a.example.org.");
        assert_eq!(content_of(RecordType::MX, "10 mx.example.org").unwrap(), "10 mx.example.org.");
        assert_eq!(content_of(RecordType::SRV, "0 5 5060 sip.example.org.").unwrap(), "0 5 5060 sip.example.org.");
        assert!(content_of(RecordType::SRV, "0 5060 sip.example.org").is_err());
        assert_eq!(content_of(RecordType::A, "192.0.2.1").unwrap(), "192.0.2.1");
    }

    #[test]
    fn listing_skips_soa_and_apex_ns_and_normalises() {
        let zone = Zone::named("example.org");
        let json = r#"{"rrsets":[
            {"name":"example.org.","type":"SOA","ttl":300,"records":[{"content":"ns1. h. 1 2 3 4 5","disabled":false}]},
            {"name":"example.org.","type":"NS","ttl":300,"records":[{"content":"ns1.example.org.","disabled":false}]},
            {"name":"Sub.example.org.","type":"NS","ttl":300,"records":[{"content":"ns.other.","disabled":false}]},
            {"name":"www.example.org.","type":"CNAME","ttl":60,"records":[{"content":"app.example.org.","disabled":false}]},
            {"name":"www.example.org.","type":"TXT","ttl":60,"records":[{"content":"\"a\" \"b\"","disabled":false}]}
        ]}"#;
        let d: ZoneDetail = serde_json::from_str(json).unwrap();
        let eps = rrsets_to_endpoints(&zone, &d.rrsets);
        let got: Vec<(String, RecordType, Vec<String>, Option<u32>)> =
            eps.into_iter().map(|e| (e.dns_name, e.record_type, e.targets, e.ttl)).collect();
        assert_eq!(
            got,
            vec![
                ("sub.example.org".into(), RecordType::NS, vec!["ns.other".into()], Some(300)),
                ("www.example.org".into(), RecordType::CNAME, vec!["app.example.org".into()], Some(60)),
                ("www.example.org".into(), RecordType::TXT, vec!["ab".into()], Some(60)),
            ]
        );
    }

    #[test]
    fn status_codes_map_to_reasons() {
        let reason = |s: u16, body: &str| {
            let f = classify(StatusCode::from_u16(s).unwrap(), body.as_bytes(), "x");
            (f.clone().into_provider_error().reason(), f.message)
        };
        assert_eq!(reason(401, "Unauthorized").0, "AuthFailed");
        assert_eq!(reason(403, "").0, "AuthFailed");
        assert_eq!(reason(429, "").0, "Throttled");
        assert_eq!(reason(503, "").0, "Unreachable");
        assert_eq!(reason(404, "Not Found").0, "ZoneNotFound");
        let (r, m) = reason(422, r#"{"error": "RRset a.example.org. IN CNAME: Conflicts with pre-existing RRset"}"#);
        assert_eq!(r, "ProviderRejected");
        assert_eq!(m, "PowerDNS: RRset a.example.org. IN CNAME: Conflicts with pre-existing RRset");
    }

    #[test]
    fn a_patch_holds_each_rrset_once_in_order() {
        let p = |index: usize, name: &str| Prepared {
            index,
            rrsets: vec![RrSet { name: name.into(), rtype: "A", changetype: "DELETE", ttl: None, records: None }],
        };
        let patches = into_patches(vec![p(0, "a."), p(1, "b."), p(2, "a."), p(3, "c.")]);
        let idx: Vec<Vec<usize>> = patches.iter().map(|b| b.iter().map(|p| p.index).collect()).collect();
        assert_eq!(idx, vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn changes_become_replace_and_delete_rrsets() {
        let p = PowerDnsProvider::new(PowerDnsConfig::new("http://127.0.0.1:1", "k")).unwrap();
        let zone = Zone::named("example.org");
        let a = Endpoint::new("App.example.org", RecordType::A, vec!["192.0.2.1".into()]);
        let rr = p.prepare(&zone, &Change::Create(a.clone())).unwrap();
        assert_eq!(
            serde_json::to_value(&rr).unwrap(),
            serde_json::json!([{"name":"app.example.org.","type":"A","changetype":"REPLACE","ttl":300,
                "records":[{"content":"192.0.2.1","disabled":false}]}])
        );
        let rr = p.prepare(&zone, &Change::Delete(a.clone())).unwrap();
        assert_eq!(
            serde_json::to_value(&rr).unwrap(),
            serde_json::json!([{"name":"app.example.org.","type":"A","changetype":"DELETE"}])
        );
        let out = Endpoint::new("app.example.net", RecordType::A, vec!["192.0.2.1".into()]);
        assert!(p.prepare(&zone, &Change::Create(out)).unwrap_err().contains("outside zone"));
        let mut routed = a;
        routed.set_identifier = "eu".into();
        assert!(p.prepare(&zone, &Change::Create(routed)).unwrap_err().contains("setIdentifier"));
    }

    #[test]
    fn urls_are_checked_and_joined() {
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("http://user:pw@x").is_err());
        let u = base_url("https://pdns.example.org/prefix/").unwrap();
        assert_eq!(
            join(&u, &["api", "v1", "servers", "localhost", "zones", "a/b."]).as_str(),
            "https://pdns.example.org/prefix/api/v1/servers/localhost/zones/a%2Fb."
        );
        assert!(PowerDnsProvider::new(PowerDnsConfig::new("http://127.0.0.1:1", "")).is_err());
    }
}
