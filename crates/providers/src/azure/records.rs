//! Record sets as ARM holds them (`{name, type, etag, properties}`) and endpoints as extdns
//! plans them, both ways. Pure functions: no HTTP here.

use serde_json::{json, Map, Value};

use super::flavour::Flavour;
use extdns_core::endpoint::{normalize_name, Endpoint, RecordType};
use extdns_core::provider::{ProviderError, Zone};

/// Longest DNS character-string (RFC 1035 3.3): a longer TXT value is written as several.
const MAX_CHARACTER_STRING: usize = 255;

/// One record set as listed: the endpoint it is and the etag it was read with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldSet {
    pub endpoint: Endpoint,
    pub etag: String,
}

/// The record set name ARM uses below the zone: `@` at the apex, else the labels left of
/// the zone name.
pub fn relative_name(zone: &Zone, dns_name: &str) -> Option<String> {
    let name = normalize_name(dns_name);
    if name == zone.name {
        return Some("@".into());
    }
    zone.contains(&name).then(|| name[..name.len() - zone.name.len() - 1].to_string())
}

/// The record type of an ARM resource type (`Microsoft.Network/dnszones/A`).
fn type_of(resource_type: &str) -> Option<RecordType> {
    resource_type.rsplit('/').next()?.parse().ok()
}

/// The endpoint of a listed record set; `None` for what extdns does not manage: SOA, the apex
/// NS, unknown types, and record sets without values (an alias to an Azure resource).
pub fn endpoint_of(flavour: Flavour, zone: &Zone, set: &Value) -> Option<HeldSet> {
    let rt = type_of(set.get("type")?.as_str()?)?;
    let relative = set.get("name")?.as_str()?;
    let dns_name =
        if relative == "@" { zone.name.clone() } else { normalize_name(&format!("{relative}.{}", zone.name)) };
    if rt == RecordType::NS && dns_name == zone.name {
        return None;
    }
    let props = set.get("properties")?;
    let field = flavour.field(rt)?;
    let raw = props.get(field.key)?;
    let items: Vec<&Value> = if field.single { vec![raw] } else { raw.as_array()?.iter().collect() };
    let targets: Vec<String> = items.into_iter().filter_map(|v| target_of(rt, v)).collect();
    if targets.is_empty() {
        return None;
    }
    let mut endpoint = Endpoint::new(dns_name, rt, targets);
    endpoint.ttl = props.get(flavour.ttl_key()).and_then(Value::as_u64).and_then(|t| u32::try_from(t).ok());
    let etag = set.get("etag").and_then(Value::as_str).unwrap_or_default().to_string();
    Some(HeldSet { endpoint, etag })
}

/// The target string of one record item.
fn target_of(rt: RecordType, v: &Value) -> Option<String> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    match rt {
        RecordType::A => s("ipv4Address"),
        RecordType::AAAA => s("ipv6Address"),
        RecordType::CNAME => s("cname"),
        RecordType::NS => s("nsdname"),
        RecordType::PTR => s("ptrdname"),
        RecordType::MX => Some(format!("{} {}", n("preference")?, s("exchange")?)),
        RecordType::SRV => Some(format!("{} {} {} {}", n("priority")?, n("weight")?, n("port")?, s("target")?)),
        RecordType::CAA => Some(format!("{} {} \"{}\"", n("flags")?, s("tag")?, s("value")?)),
        // The strings of one TXT record are one value, as a resolver reads it.
        RecordType::TXT => {
            let parts = v.get("value")?.as_array()?;
            let value: String = parts.iter().filter_map(Value::as_str).collect();
            Some(unquote_ownership(value))
        }
    }
}

/// external-dns writes an ownership value to Azure with its quotes inside the TXT data
/// (`"heritage=external-dns,…"`, the quotes its registry adds for DNS zone files); extdns
/// writes it the same way, so that external-dns reads what extdns wrote and the other way
/// round, and lists it without them, as every other backend hands it to the registry.
fn unquote_ownership(value: String) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) if inner.starts_with(OWNERSHIP_PREFIX) => inner.to_string(),
        _ => value,
    }
}

/// How every ownership value starts (external-dns's `heritage` label comes first).
const OWNERSHIP_PREFIX: &str = "heritage=external-dns";

/// The `properties` of the record set that holds `ep`.
pub fn properties_of(flavour: Flavour, ep: &Endpoint, ttl: u32) -> Result<Value, ProviderError> {
    let rt = ep.record_type;
    let field = flavour.field(rt).ok_or_else(|| {
        ProviderError::Rejected(format!("{} {rt}: {} has no {rt} record sets", ep.dns_name, flavour.label()))
    })?;
    if ep.targets.is_empty() {
        return Err(ProviderError::Rejected(format!("{} {rt} has no targets", ep.dns_name)));
    }
    let mut props = Map::new();
    props.insert(flavour.ttl_key().into(), json!(ttl));
    let items: Vec<Value> = ep.targets.iter().map(|t| item_of(&ep.dns_name, rt, t)).collect::<Result<_, _>>()?;
    if field.single {
        if items.len() != 1 {
            return Err(ProviderError::Rejected(format!(
                "{} {rt}: a CNAME holds one target, not {}",
                ep.dns_name,
                items.len()
            )));
        }
        props.insert(field.key.into(), items.into_iter().next().unwrap_or(Value::Null));
    } else {
        props.insert(field.key.into(), Value::Array(items));
    }
    Ok(Value::Object(props))
}

/// One record item of a target.
fn item_of(name: &str, rt: RecordType, target: &str) -> Result<Value, ProviderError> {
    let bad = |what: &str| ProviderError::Rejected(format!("{name} {rt}: {target:?} is not {what}"));
    let words: Vec<&str> = target.split_whitespace().collect();
    Ok(match rt {
        RecordType::A => json!({ "ipv4Address": target }),
        RecordType::AAAA => json!({ "ipv6Address": target }),
        RecordType::CNAME => json!({ "cname": target }),
        RecordType::NS => json!({ "nsdname": target }),
        RecordType::PTR => json!({ "ptrdname": target }),
        RecordType::MX => match words.as_slice() {
            [pref, host] => {
                let pref: u16 = pref.parse().map_err(|_| bad("\"<preference> <host>\""))?;
                json!({ "preference": pref, "exchange": host })
            }
            _ => return Err(bad("\"<preference> <host>\"")),
        },
        RecordType::SRV => match words.as_slice() {
            [p, w, port, host] => {
                let num = |v: &str| v.parse::<u16>().map_err(|_| bad("\"<priority> <weight> <port> <target>\""));
                json!({ "priority": num(p)?, "weight": num(w)?, "port": num(port)?, "target": host })
            }
            _ => return Err(bad("\"<priority> <weight> <port> <target>\"")),
        },
        RecordType::CAA => {
            let mut it = target.trim().splitn(3, ' ');
            let (Some(flags), Some(tag), Some(value)) = (it.next(), it.next(), it.next()) else {
                return Err(bad("\"<flags> <tag> \\\"<value>\\\"\""));
            };
            let flags: u8 = flags.parse().map_err(|_| bad("\"<flags> <tag> \\\"<value>\\\"\""))?;
            let value = value.trim();
            let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
            json!({ "flags": flags, "tag": tag, "value": value })
        }
        RecordType::TXT if target.starts_with(OWNERSHIP_PREFIX) => {
            json!({ "value": split_txt(&format!("\"{target}\"")) })
        }
        RecordType::TXT => json!({ "value": split_txt(target) }),
    })
}

/// A TXT value as character-strings of at most 255 bytes, never splitting a character.
fn split_txt(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in value.chars() {
        let last = out.last_mut().expect("out starts with one string");
        if last.len() + c.len_utf8() > MAX_CHARACTER_STRING {
            out.push(String::new());
        }
        out.last_mut().expect("out is never empty").push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        Zone {
            id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/dnszones/example.com".into(),
            name: "example.com".into(),
        }
    }

    fn set(name: &str, rt: &str, props: Value) -> Value {
        json!({"name": name, "type": format!("Microsoft.Network/dnszones/{rt}"), "etag": "e1", "properties": props})
    }

    #[test]
    fn relative_names_use_at_for_the_apex() {
        assert_eq!(relative_name(&zone(), "Example.COM.").as_deref(), Some("@"));
        assert_eq!(relative_name(&zone(), "a.b.example.com").as_deref(), Some("a.b"));
        assert_eq!(relative_name(&zone(), "*.wild.example.com").as_deref(), Some("*.wild"));
        assert_eq!(relative_name(&zone(), "badexample.com"), None);
    }

    #[test]
    fn listed_sets_become_endpoints_and_soa_apex_ns_aliases_are_skipped() {
        let z = zone();
        let web = set(
            "Web",
            "A",
            json!({"TTL": 60, "ARecords": [{"ipv4Address": "192.0.2.2"}, {"ipv4Address": "192.0.2.1"}]}),
        );
        let held = endpoint_of(Flavour::Public, &z, &web).unwrap();
        assert_eq!(
            held.endpoint,
            Endpoint::new("web.example.com", RecordType::A, vec!["192.0.2.1".into(), "192.0.2.2".into()]).with_ttl(60)
        );
        assert_eq!(held.etag, "e1");
        let soa = set("@", "SOA", json!({"TTL": 3600, "SOARecord": {"host": "ns1"}}));
        assert!(endpoint_of(Flavour::Public, &z, &soa).is_none());
        let apex_ns = set("@", "NS", json!({"TTL": 172800, "NSRecords": [{"nsdname": "ns1-01.azure-dns.com."}]}));
        assert!(endpoint_of(Flavour::Public, &z, &apex_ns).is_none());
        let delegation = set("sub", "NS", json!({"TTL": 300, "NSRecords": [{"nsdname": "ns1.example.org."}]}));
        assert_eq!(endpoint_of(Flavour::Public, &z, &delegation).unwrap().endpoint.targets, vec!["ns1.example.org"]);
        let alias = set("lb", "A", json!({"TTL": 60, "ARecords": [], "targetResource": {"id": "/x"}}));
        assert!(endpoint_of(Flavour::Public, &z, &alias).is_none());
    }

    #[test]
    fn every_type_round_trips_through_properties() {
        let z = zone();
        let cases = [
            (RecordType::A, "192.0.2.1"),
            (RecordType::AAAA, "2001:db8::1"),
            (RecordType::CNAME, "target.example.org"),
            (RecordType::MX, "10 mx.example.org"),
            (RecordType::NS, "ns1.example.org"),
            (RecordType::PTR, "host.example.org"),
            (RecordType::SRV, "0 5 5060 sip.example.org"),
            (RecordType::CAA, "0 issue \"letsencrypt.org\""),
            (RecordType::TXT, "heritage=external-dns,external-dns/owner=default"),
        ];
        for flavour in [Flavour::Public, Flavour::Private] {
            for (rt, target) in cases {
                let ep = Endpoint::new("x.example.com", rt, vec![target.into()]).with_ttl(300);
                let Some(_) = flavour.field(rt) else {
                    assert!(properties_of(flavour, &ep, 300).is_err(), "{flavour:?} refuses {rt}");
                    continue;
                };
                let props = properties_of(flavour, &ep, 300).unwrap();
                let listed = json!({"name": "x", "type": format!("Microsoft.Network/{}/{rt}", flavour.zones_segment()), "etag": "e", "properties": props});
                assert_eq!(endpoint_of(flavour, &z, &listed).unwrap().endpoint, ep, "{flavour:?} {rt}");
            }
        }
    }

    #[test]
    fn txt_values_are_split_at_255_bytes_and_joined_when_read() {
        let long = "é".repeat(200);
        let ep = Endpoint::new("t.example.com", RecordType::TXT, vec![long.clone(), "short".into()]);
        let props = properties_of(Flavour::Public, &ep, 300).unwrap();
        // Targets are sorted: "short" comes first.
        assert_eq!(props["TXTRecords"][0], json!({"value": ["short"]}));
        let strings = props["TXTRecords"][1]["value"].as_array().unwrap();
        assert_eq!(strings.len(), 2);
        assert!(strings.iter().all(|s| s.as_str().unwrap().len() <= 255));
        // external-dns writes a whole value as one string; it reads back the same.
        let ext = set("t", "TXT", json!({"TTL": 300, "TXTRecords": [{"value": [long.clone()]}]}));
        assert_eq!(endpoint_of(Flavour::Public, &zone(), &ext).unwrap().endpoint.targets, vec![long]);
    }

    #[test]
    fn ownership_values_are_quoted_inside_the_data_as_external_dns_writes_them() {
        let value = "heritage=external-dns,external-dns/owner=default,external-dns/resource=service/default/web";
        let ep = Endpoint::new("a-web.example.com", RecordType::TXT, vec![value.into()]);
        let props = properties_of(Flavour::Public, &ep, 300).unwrap();
        assert_eq!(props["TXTRecords"], json!([{"value": [format!("\"{value}\"")]}]));
        let listed = set("a-web", "TXT", props);
        assert_eq!(endpoint_of(Flavour::Public, &zone(), &listed).unwrap().endpoint.targets, vec![value]);
        // Other quoted data stays as it is.
        let data = set("q", "TXT", json!({"TTL": 300, "TXTRecords": [{"value": ["\"v=spf1 -all\""]}]}));
        assert_eq!(endpoint_of(Flavour::Public, &zone(), &data).unwrap().endpoint.targets, vec!["\"v=spf1 -all\""]);
    }

    #[test]
    fn malformed_targets_and_cname_sets_are_refused() {
        let mx = Endpoint::new("m.example.com", RecordType::MX, vec!["mx.example.org".into()]);
        assert!(
            matches!(properties_of(Flavour::Public, &mx, 300), Err(ProviderError::Rejected(m)) if m.contains("<preference>"))
        );
        let two =
            Endpoint::new("c.example.com", RecordType::CNAME, vec!["a.example.org".into(), "b.example.org".into()]);
        assert!(
            matches!(properties_of(Flavour::Public, &two, 300), Err(ProviderError::Rejected(m)) if m.contains("one target"))
        );
    }
}
