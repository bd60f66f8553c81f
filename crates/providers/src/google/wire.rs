//! Cloud DNS resource record sets and our endpoints, both ways.
//!
//! Cloud DNS holds one `ResourceRecordSet` per name and type: `name` and host names in
//! targets are absolute (trailing dot), `rrdatas` are values in zone-file presentation (TXT as
//! quoted character-strings), `ttl` is always set. external-dns writes the same: one rrset per
//! endpoint, its targets as rrdatas (CNAME and MX hosts with a trailing dot), TTL 300 when the
//! endpoint has none.

use serde::{Deserialize, Serialize};

use crate::cloudflare::{quote_txt, unquote_txt};
use extdns_core::endpoint::{normalize_name, Endpoint, RecordType};
use extdns_core::provider::Zone;

/// A `ResourceRecordSet` of the API, the fields extdns reads and writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RrSet {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default)]
    pub ttl: u32,
    #[serde(default)]
    pub rrdatas: Vec<String>,
    /// Present on routing-policy rrsets (geo, weighted round robin), which extdns does not
    /// model; kept so such a set is recognised and left alone.
    #[serde(rename = "routingPolicy", default, skip_serializing_if = "Option::is_none")]
    pub routing_policy: Option<serde_json::Value>,
}

impl RrSet {
    /// The key of this rrset in our terms, when extdns models its type.
    pub fn key(&self) -> Option<(String, RecordType)> {
        Some((normalize_name(&self.name), self.rtype.parse::<RecordType>().ok()?))
    }

    /// Bytes of rrdata, as Cloud DNS counts them against `totalRrdataSizePerChange`.
    pub fn rrdata_size(&self) -> usize {
        self.rrdatas.iter().map(String::len).sum()
    }
}

/// `name` absolute: with exactly one trailing dot.
pub fn absolute(name: &str) -> String {
    format!("{}.", name.trim().trim_end_matches('.'))
}

/// One target of ours as a Cloud DNS rrdata.
pub fn rrdata(rt: RecordType, target: &str) -> Result<String, String> {
    let t = target.trim();
    Ok(match rt {
        RecordType::CNAME | RecordType::NS | RecordType::PTR => absolute(t),
        RecordType::MX => {
            let (prio, host) = t.split_once(char::is_whitespace).ok_or("is not \"<priority> <host>\"")?;
            prio.parse::<u16>().map_err(|_| "is not \"<priority> <host>\"")?;
            format!("{prio} {}", absolute(host.trim()))
        }
        RecordType::SRV => {
            let parts: Vec<&str> = t.split_whitespace().collect();
            let numbers_ok = parts.len() == 4 && parts[..3].iter().all(|n| n.parse::<u16>().is_ok());
            if !numbers_ok {
                return Err("is not \"<priority> <weight> <port> <target>\"".into());
            }
            format!("{} {} {} {}", parts[0], parts[1], parts[2], absolute(parts[3]))
        }
        RecordType::TXT => quote_txt(target),
        RecordType::A | RecordType::AAAA | RecordType::CAA => t.to_string(),
    })
}

/// One Cloud DNS rrdata as a target of ours (before [`Endpoint`]'s normalisation).
pub fn target(rt: RecordType, rrdata: &str) -> String {
    let d = rrdata.trim();
    match rt {
        RecordType::CNAME | RecordType::NS | RecordType::PTR => d.trim_end_matches('.').to_string(),
        RecordType::MX | RecordType::SRV => match d.rsplit_once(char::is_whitespace) {
            Some((head, host)) => format!("{head} {}", host.trim_end_matches('.')),
            None => d.to_string(),
        },
        RecordType::TXT => unquote_txt(rrdata),
        RecordType::A | RecordType::AAAA | RecordType::CAA => d.to_string(),
    }
}

/// The rrset Cloud DNS should hold for `ep`.
pub fn rrset_of(ep: &Endpoint, default_ttl: u32) -> Result<RrSet, String> {
    let mut rrdatas = Vec::with_capacity(ep.targets.len());
    for t in &ep.targets {
        rrdatas.push(rrdata(ep.record_type, t).map_err(|why| format!("{t:?} {why}"))?);
    }
    Ok(RrSet {
        name: absolute(&ep.dns_name),
        rtype: ep.record_type.as_str().to_string(),
        ttl: ep.ttl.unwrap_or(default_ttl),
        rrdatas,
        routing_policy: None,
    })
}

/// What a listed rrset is to extdns: `None` for the zone's own SOA and apex NS, for types extdns
/// does not model, and for routing-policy rrsets (no plain rrdatas).
pub fn endpoint_of(zone: &Zone, set: &RrSet) -> Option<Endpoint> {
    let (name, rt) = set.key()?;
    if rt == RecordType::NS && name == zone.name {
        return None;
    }
    if set.routing_policy.is_some() || set.rrdatas.is_empty() {
        return None;
    }
    let targets = set.rrdatas.iter().map(|d| target(rt, d)).collect();
    Some(Endpoint::new(name, rt, targets).with_ttl(set.ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        Zone { id: "example-test".into(), name: "example.test".into() }
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
    fn endpoints_become_rrsets_as_external_dns_writes_them() {
        let cases = [
            (
                Endpoint::new("WWW.example.test.", RecordType::A, vec!["192.0.2.1".into()]),
                set("www.example.test.", "A", 300, &["192.0.2.1"]),
            ),
            (
                Endpoint::new("c.example.test", RecordType::CNAME, vec!["target.example.org".into()]).with_ttl(60),
                set("c.example.test.", "CNAME", 60, &["target.example.org."]),
            ),
            (
                Endpoint::new("m.example.test", RecordType::MX, vec!["10 mx.example.org".into()]),
                set("m.example.test.", "MX", 300, &["10 mx.example.org."]),
            ),
            (
                Endpoint::new("_s._tcp.example.test", RecordType::SRV, vec!["0 5 5060 sip.example.test".into()]),
                set("_s._tcp.example.test.", "SRV", 300, &["0 5 5060 sip.example.test."]),
            ),
            (
                Endpoint::new(
                    "example.test",
                    RecordType::TXT,
                    vec!["heritage=external-dns,external-dns/owner=default,external-dns/resource=service/ns/my svc"
                        .into()],
                ),
                set(
                    "example.test.",
                    "TXT",
                    300,
                    &["\"heritage=external-dns,external-dns/owner=default,external-dns/resource=service/ns/my svc\""],
                ),
            ),
            (
                Endpoint::new("caa.example.test", RecordType::CAA, vec!["0 issue \"letsencrypt.org\"".into()]),
                set("caa.example.test.", "CAA", 300, &["0 issue \"letsencrypt.org\""]),
            ),
        ];
        for (ep, want) in cases {
            let got = rrset_of(&ep, 300).unwrap();
            assert_eq!(got, want);
            let back = endpoint_of(&zone(), &got).unwrap();
            assert_eq!(
                (back.dns_name.clone(), back.targets.clone()),
                (ep.dns_name.clone(), ep.targets.clone()),
                "round trip"
            );
        }
        assert!(rrset_of(&Endpoint::new("m.example.test", RecordType::MX, vec!["mx.example.org".into()]), 300).is_err());
        assert!(rrset_of(&Endpoint::new("s.example.test", RecordType::SRV, vec!["1 2 sip".into()]), 300).is_err());
    }

    #[test]
    fn listing_drops_what_belongs_to_the_zone_and_what_extdns_does_not_model() {
        let z = zone();
        assert!(endpoint_of(&z, &set("example.test.", "SOA", 21600, &["ns. host. 1 2 3 4 5"])).is_none());
        assert!(endpoint_of(&z, &set("example.test.", "NS", 21600, &["ns-cloud-a1.googledomains.com."])).is_none());
        assert!(endpoint_of(&z, &set("example.test.", "HTTPS", 300, &["1 . alpn=h2"])).is_none());
        let mut geo = set("geo.example.test.", "A", 300, &[]);
        geo.routing_policy = Some(serde_json::json!({"geo": {"items": []}}));
        assert!(endpoint_of(&z, &geo).is_none());
        let delegation = endpoint_of(&z, &set("sub.example.test.", "NS", 300, &["ns1.example.org."])).unwrap();
        assert_eq!(delegation.targets, vec!["ns1.example.org"]);
        // TXT values written unquoted by hand are taken as they are; split strings are joined.
        let txt = endpoint_of(&z, &set("t.example.test.", "TXT", 300, &["plain", "\"v=spf1 \" \"-all\""])).unwrap();
        assert_eq!(txt.targets, vec!["plain", "v=spf1 -all"]);
    }
}
