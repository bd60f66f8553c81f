//! Validation of a DNSEndpoint's spec into the endpoint model: valid records become
//! endpoints, invalid ones errors naming the field.

use std::collections::BTreeSet;

use kube::ResourceExt;

use crate::crd::dnsendpoint::MAX_LABEL_VALUE_LENGTH as MAX_LABEL_VALUE;
use crate::crd::DNSEndpoint;
use crate::dns::endpoint::{self, label, Endpoint, ProviderSpecificProperty, RecordType};
use crate::dns::registry;

/// Longest label key that goes into an ownership TXT.
const MAX_LABEL_KEY: usize = 63;

/// Whether a label may go into an ownership TXT. external-dns's label text has no escaping:
/// a `,`, `=` or quote inside a key or value would read back as other labels (a forged
/// `owner`), so such labels are refused rather than written.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    let key_ok = !key.is_empty()
        && key.len() <= MAX_LABEL_KEY
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !key_ok {
        return Err(format!(
            "label key {key:?} must be 1-{MAX_LABEL_KEY} characters of letters, digits, '-', '_' and '.'"
        ));
    }
    if value.len() > MAX_LABEL_VALUE
        || value.chars().any(|c| matches!(c, ',' | '=' | '"') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "label value {value:?} must be at most {MAX_LABEL_VALUE} characters without ',', '=', '\"', spaces or control characters (they would change what its ownership TXT says)"
        ));
    }
    Ok(())
}

/// The TXT `resource` label external-dns writes for a hand-written DNSEndpoint.
fn default_resource(obj: &DNSEndpoint) -> String {
    format!("crd/{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Validates a DNSEndpoint's spec. Valid records come back as endpoints (by spec index),
/// invalid ones as errors naming the field.
/// Valid records and invalid ones, each with its index in `spec.endpoints`.
pub type Validated = (Vec<(usize, Endpoint)>, Vec<(usize, endpoint::ValidationError)>);

pub fn validate_endpoint_spec(obj: &DNSEndpoint) -> Validated {
    let mut ok: Vec<(usize, Endpoint)> = Vec::new();
    let mut bad: Vec<(usize, endpoint::ValidationError)> = Vec::new();
    for (i, spec) in obj.spec.endpoints.iter().enumerate() {
        let field = |f: &str| format!("spec.endpoints[{i}].{f}");
        let mut errs = Vec::new();
        if let Err(e) = endpoint::validate_name(&field("dnsName"), &spec.dns_name) {
            errs.push(e);
        }
        if spec.targets.is_empty() {
            errs.push(endpoint::ValidationError {
                field: field("targets"),
                message: "at least one target is required".into(),
            });
        }
        // An A or AAAA alias (Route53) points at a name, as external-dns users write it.
        let alias = matches!(spec.record_type, RecordType::A | RecordType::AAAA)
            && spec.provider_specific.iter().flatten().any(|p| p.name == "alias" && p.value.trim() == "true");
        let target_type = if alias { RecordType::CNAME } else { spec.record_type };
        for (j, t) in spec.targets.iter().enumerate() {
            if let Err(e) = endpoint::validate_target(&field(&format!("targets[{j}]")), target_type, t) {
                errs.push(e);
            }
            if spec.record_type == RecordType::TXT && registry::parse_labels(t).is_some() {
                errs.push(endpoint::ValidationError {
                    field: field(&format!("targets[{j}]")),
                    message: "a TXT value that reads as an external-dns ownership record (heritage=external-dns) \
                              is written only by the provider's registry, never published as data"
                        .into(),
                });
            }
        }
        for (k, v) in spec.labels.iter().flatten() {
            if let Err(message) = check_label(k, v) {
                errs.push(endpoint::ValidationError { field: field(&format!("labels.{k}")), message });
            }
        }
        let ttl = match spec.record_ttl {
            // external-dns reads 0 as "not configured": the provider's default.
            Some(0) | None => None,
            Some(t) => match endpoint::validate_ttl(&field("recordTTL"), t) {
                Ok(v) => Some(v),
                Err(e) => {
                    errs.push(e);
                    None
                }
            },
        };
        if let Some(e) = errs.into_iter().next() {
            bad.push((i, e));
            continue;
        }
        let mut labels = spec.labels.clone().unwrap_or_default();
        labels.entry(label::RESOURCE.to_string()).or_insert_with(|| default_resource(obj));
        // Owner and nonce labels come from the registry, never from the user: a nonce of the
        // user's choosing would seal another plaintext under a used nonce.
        labels.remove(label::OWNER);
        labels.remove(label::TXT_ENCRYPTION_NONCE);
        let ep = Endpoint {
            dns_name: spec.dns_name.clone(),
            record_type: spec.record_type,
            targets: spec.targets.clone(),
            ttl,
            set_identifier: spec.set_identifier.clone().unwrap_or_default(),
            labels: labels.into(),
            provider_specific: spec
                .provider_specific
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|p| ProviderSpecificProperty { name: p.name, value: p.value })
                .collect(),
        }
        .normalized();
        ok.push((i, ep));
    }
    let together: Vec<(usize, &Endpoint)> = ok.iter().map(|(i, e)| (*i, e)).collect();
    let cross = endpoint::validate_together(&together);
    for (i, mut e) in cross {
        e.field = format!("spec.{}", e.field);
        bad.push((i, e));
    }
    let bad_idx: BTreeSet<usize> = bad.iter().map(|(i, _)| *i).collect();
    ok.retain(|(i, _)| !bad_idx.contains(i));
    bad.sort_by_key(|(i, _)| *i);
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DnsEndpointSpec, EndpointSpec};

    fn obj(endpoints: Vec<EndpointSpec>) -> DNSEndpoint {
        let mut o = DNSEndpoint::new("web", DnsEndpointSpec { endpoints, provider_ref: None });
        o.metadata.namespace = Some("team-a".into());
        o
    }

    fn spec(name: &str, rt: RecordType, targets: &[&str]) -> EndpointSpec {
        EndpointSpec {
            dns_name: name.into(),
            targets: targets.iter().map(|s| s.to_string()).collect(),
            record_type: rt,
            record_ttl: None,
            set_identifier: None,
            labels: None,
            provider_specific: None,
        }
    }

    #[test]
    fn validation_names_the_field_and_keeps_valid_records() {
        let mut bad_ttl = spec("ttl.example.com", RecordType::A, &["192.0.2.1"]);
        bad_ttl.record_ttl = Some(-1);
        let o = obj(vec![
            spec("ok.example.com.", RecordType::A, &["192.0.2.1"]),
            spec("bad.example.com", RecordType::A, &["not-an-ip"]),
            bad_ttl,
            spec("c.example.com", RecordType::CNAME, &["x.example.net"]),
            spec("c.example.com", RecordType::A, &["192.0.2.1"]),
        ]);
        let (ok, bad) = validate_endpoint_spec(&o);
        assert_eq!(ok.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 4]);
        assert_eq!(ok[0].1.dns_name, "ok.example.com");
        assert_eq!(ok[0].1.labels.get("resource").map(String::as_str), Some("crd/team-a/web"));
        assert_eq!(bad[0].0, 1);
        assert_eq!(
            bad[0].1.to_string(),
            "spec.endpoints[1].targets[0]: \"not-an-ip\" is not an IPv4 address (record type A)"
        );
        assert!(bad[1].1.to_string().starts_with("spec.endpoints[2].recordTTL"));
        assert!(bad[2].1.to_string().starts_with("spec.endpoints[3].recordType: CNAME at c.example.com"));
    }

    /// Ownership is written only by the registry: a TXT value that reads as an ownership
    /// record, or a label that would inject one, is refused naming the field.
    #[test]
    fn forged_ownership_values_and_injected_labels_are_refused() {
        let forged = spec(
            "a-legacy.example.com",
            RecordType::TXT,
            &["heritage=external-dns,external-dns/owner=redteam,external-dns/resource=crd/tenant-a/hijack"],
        );
        let quoted = spec("aaaa-web.example.com", RecordType::TXT, &["\"heritage=external-dns,external-dns/owner=x\""]);
        let data = spec("txt.example.com", RecordType::TXT, &["v=spf1 -all", "heritage is a word"]);
        let mut injected = spec("leak.example.com", RecordType::A, &["192.0.2.1"]);
        injected.labels =
            Some([("resource".to_string(), "crd/tenant-a/leak,external-dns/owner=nobody".to_string())].into());
        let mut bad_key = spec("key.example.com", RecordType::A, &["192.0.2.1"]);
        bad_key.labels = Some([("a,b=c".to_string(), "x".to_string())].into());
        let mut nonce = spec("nonce.example.com", RecordType::A, &["192.0.2.1"]);
        nonce.labels = Some([("txt-encryption-nonce".to_string(), "AAAAAAAAAAAAAAAA".to_string())].into());
        let (ok, bad) = validate_endpoint_spec(&obj(vec![forged, quoted, data, injected, bad_key, nonce]));
        assert_eq!(ok.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![2, 5]);
        assert!(!ok[1].1.labels.contains_key(label::TXT_ENCRYPTION_NONCE), "a nonce is the registry's to choose");
        let fields: Vec<&str> = bad.iter().map(|(_, e)| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.endpoints[0].targets[0]",
                "spec.endpoints[1].targets[0]",
                "spec.endpoints[3].labels.resource",
                "spec.endpoints[4].labels.a,b=c"
            ]
        );
        assert!(bad[0].1.message.contains("ownership record"), "{}", bad[0].1);
    }

    #[test]
    fn a_zero_ttl_means_the_provider_default_as_in_external_dns() {
        let mut zero = spec("z.example.com", RecordType::A, &["192.0.2.1"]);
        zero.record_ttl = Some(0);
        let (ok, bad) = validate_endpoint_spec(&obj(vec![zero]));
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok[0].1.ttl, None);
    }

    #[test]
    fn an_address_alias_points_at_a_name() {
        let mut alias = spec("apex.example.com", RecordType::A, &["lb-1.us-east-1.elb.amazonaws.com"]);
        alias.provider_specific = Some(vec![ProviderSpecificProperty { name: "alias".into(), value: "true".into() }]);
        let not_alias = spec("x.example.com", RecordType::AAAA, &["lb-1.us-east-1.elb.amazonaws.com"]);
        let (ok, bad) = validate_endpoint_spec(&obj(vec![alias, not_alias]));
        assert_eq!(ok.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0]);
        assert!(bad[0].1.to_string().contains("is not an IPv6 address"), "{}", bad[0].1);
    }
}
