//! The record model shared by every part of extdns: what a DNSEndpoint asks for and what a
//! provider holds, in one normalised shape so that planning compares like with like.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::labels::Labels;

/// Record types extdns manages. external-dns spells them in upper case; so do we.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum RecordType {
    A,
    AAAA,
    CNAME,
    TXT,
    SRV,
    MX,
    NS,
    PTR,
    CAA,
}

impl RecordType {
    pub const ALL: [RecordType; 9] = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::CNAME,
        RecordType::TXT,
        RecordType::SRV,
        RecordType::MX,
        RecordType::NS,
        RecordType::PTR,
        RecordType::CAA,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::AAAA => "AAAA",
            RecordType::CNAME => "CNAME",
            RecordType::TXT => "TXT",
            RecordType::SRV => "SRV",
            RecordType::MX => "MX",
            RecordType::NS => "NS",
            RecordType::PTR => "PTR",
            RecordType::CAA => "CAA",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unsupported record type {s:?}"))
    }
}

/// A provider-specific property, e.g. `aws/weight`, passed through untouched.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProviderSpecificProperty {
    #[schemars(length(max = 253))]
    pub name: String,
    #[schemars(length(max = 1024))]
    pub value: String,
}

/// Label keys of the TXT registry, as external-dns names them.
pub mod label {
    pub const OWNER: &str = "owner";
    pub const RESOURCE: &str = "resource";
    /// Nonce of an encrypted TXT record, kept so that re-emitting it yields identical bytes.
    pub const TXT_ENCRYPTION_NONCE: &str = "txt-encryption-nonce";
    /// On an ownership TXT record (never inside its text): the name of the record it backs,
    /// as external-dns's registry labels the TXT records it hands to its provider.
    pub const OWNED_RECORD: &str = "ownedRecord";
}

/// One RRset: a name, a type, its values, and the metadata external-dns attaches.
///
/// Invariants after [`Endpoint::normalized`]: `dns_name` is lower case without a trailing dot,
/// targets are deduplicated and sorted (CNAME/NS/PTR/MX/SRV targets without trailing dots).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    pub dns_name: String,
    pub record_type: RecordType,
    pub targets: Vec<String>,
    /// `None` means "use the provider's default TTL".
    pub ttl: Option<u32>,
    /// Distinguishes records of one name and type under a routing policy; empty when unused.
    pub set_identifier: String,
    pub labels: Labels,
    pub provider_specific: Vec<ProviderSpecificProperty>,
}

/// Identity of an RRset for planning: (name, setIdentifier, type).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordKey {
    pub dns_name: String,
    pub set_identifier: String,
    pub record_type: RecordType,
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.dns_name, self.record_type)?;
        if !self.set_identifier.is_empty() {
            write!(f, " (setIdentifier {})", self.set_identifier)?;
        }
        Ok(())
    }
}

impl Endpoint {
    pub fn new(dns_name: impl Into<String>, record_type: RecordType, targets: Vec<String>) -> Self {
        Endpoint {
            dns_name: dns_name.into(),
            record_type,
            targets,
            ttl: None,
            set_identifier: String::new(),
            labels: Labels::new(),
            provider_specific: Vec::new(),
        }
        .normalized()
    }

    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = Some(ttl);
        self
    }

    pub fn key(&self) -> RecordKey {
        RecordKey {
            dns_name: self.dns_name.clone(),
            set_identifier: self.set_identifier.clone(),
            record_type: self.record_type,
        }
    }

    /// Canonical form, so that equal records compare equal whatever their spelling.
    pub fn normalized(mut self) -> Self {
        self.dns_name = normalize_name(&self.dns_name);
        if self.record_type != RecordType::TXT {
            for t in &mut self.targets {
                *t = normalize_target(self.record_type, t);
            }
        }
        self.targets.sort();
        self.targets.dedup();
        self.provider_specific.sort();
        self
    }

    /// True when the data a resolver sees (targets, TTL, provider-specific settings) differs.
    /// Labels are ownership metadata and deliberately not compared: a label-only change must
    /// never cause DNS churn.
    pub fn same_data(&self, other: &Endpoint, default_ttl: u32) -> bool {
        self.targets == other.targets
            && self.ttl.unwrap_or(default_ttl) == other.ttl.unwrap_or(default_ttl)
            && self.provider_specific == other.provider_specific
    }

    /// True when a held record `current` needs no update for this desired record: same
    /// targets and provider-specific settings, and the same TTL where this record configures
    /// one. As external-dns's planner (`shouldUpdateTTL`): a record without a configured TTL
    /// never causes a TTL update, so a zone written by external-dns (its RFC2136 provider
    /// writes TTL 0 when none is set) is taken over without rewriting every record.
    pub fn satisfied_by(&self, current: &Endpoint, default_ttl: u32) -> bool {
        self.targets == current.targets
            && self.ttl.is_none_or(|ttl| ttl == current.ttl.unwrap_or(default_ttl))
            && self.provider_specific == current.provider_specific
    }

    pub fn provider_specific(&self, name: &str) -> Option<&str> {
        self.provider_specific.iter().find(|p| p.name == name).map(|p| p.value.as_str())
    }
}

/// Lower case, without the trailing dot. DNS names compare case-insensitively.
pub fn normalize_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn normalize_target(rt: RecordType, target: &str) -> String {
    let t = target.trim();
    match rt {
        RecordType::CNAME | RecordType::NS | RecordType::PTR => normalize_name(t),
        RecordType::MX | RecordType::SRV => {
            // The host is the last field; only it is a name.
            let mut parts: Vec<&str> = t.split_whitespace().collect();
            let host = parts.pop().map(normalize_name).unwrap_or_default();
            parts.iter().map(|p| p.to_string()).chain(std::iter::once(host)).collect::<Vec<_>>().join(" ")
        }
        RecordType::AAAA => t.parse::<Ipv6Addr>().map(|a| a.to_string()).unwrap_or_else(|_| t.to_string()),
        // Backends list CAA values quoted; quote ours the same way so they compare equal.
        RecordType::CAA => match t.splitn(3, ' ').collect::<Vec<_>>().as_slice() {
            [flags, tag, value] => {
                let v = value.trim();
                let v = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                    v.to_string()
                } else {
                    format!("\"{v}\"")
                };
                format!("{flags} {} {v}", tag.to_ascii_lowercase())
            }
            _ => t.to_string(),
        },
        _ => t.to_string(),
    }
}

/// Why a requested record cannot be served. `field` is a path inside the DNSEndpoint spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError { field: field.into(), message: message.into() }
    }
}

pub const MAX_NAME_LEN: usize = 253;
pub const MAX_LABEL_LEN: usize = 63;
pub const MAX_TTL: u64 = (1 << 31) - 1;

/// Validates a DNS name the way resolvers will: 253 characters, labels of 1..=63 characters
/// from letters, digits, hyphen and underscore, a leading `*` label allowed for wildcards.
pub fn validate_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let n = name.trim_end_matches('.');
    if n.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if n.len() > MAX_NAME_LEN {
        return Err(ValidationError::new(
            field,
            format!("{name:?} is {} characters long, the limit is {MAX_NAME_LEN}", n.len()),
        ));
    }
    for (i, l) in n.split('.').enumerate() {
        if l.is_empty() {
            return Err(ValidationError::new(field, format!("{name:?} has an empty label")));
        }
        if l.len() > MAX_LABEL_LEN {
            return Err(ValidationError::new(
                field,
                format!("label {l:?} of {name:?} is {} characters long, the limit is {MAX_LABEL_LEN}", l.len()),
            ));
        }
        if l == "*" && i == 0 {
            continue;
        }
        if l.contains('*') {
            return Err(ValidationError::new(
                field,
                format!(
                    "label {l:?} of {name:?}: '*' must be the whole first label (a wildcard such as \"*.example.com\")"
                ),
            ));
        }
        if !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ValidationError::new(
                field,
                format!("label {l:?} of {name:?} may contain only letters, digits, '-' and '_'"),
            ));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err(ValidationError::new(field, format!("label {l:?} of {name:?} must not start or end with '-'")));
        }
    }
    Ok(())
}

/// Checks one target for its record type; `field` names it in the error.
pub fn validate_target(field: &str, rt: RecordType, target: &str) -> Result<(), ValidationError> {
    let t = target.trim();
    if t.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    match rt {
        RecordType::A => t
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| ValidationError::new(field, format!("{t:?} is not an IPv4 address (record type A)"))),
        RecordType::AAAA => t
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| ValidationError::new(field, format!("{t:?} is not an IPv6 address (record type AAAA)"))),
        RecordType::CNAME | RecordType::NS | RecordType::PTR => validate_name(field, t),
        RecordType::MX => {
            let parts: Vec<&str> = t.split_whitespace().collect();
            match parts.as_slice() {
                [pref, host] if pref.parse::<u16>().is_ok() => validate_name(field, host),
                _ => Err(ValidationError::new(
                    field,
                    format!("{t:?} is not a valid MX target, expected \"<preference 0-65535> <host>\""),
                )),
            }
        }
        RecordType::SRV => {
            let parts: Vec<&str> = t.split_whitespace().collect();
            match parts.as_slice() {
                [p, w, port, host] if [p, w, port].iter().all(|n| n.parse::<u16>().is_ok()) => {
                    validate_name(field, host)
                }
                _ => Err(ValidationError::new(
                    field,
                    format!("{t:?} is not a valid SRV target, expected \"<priority> <weight> <port> <host>\""),
                )),
            }
        }
        RecordType::CAA => {
            let parts: Vec<&str> = t.splitn(3, ' ').collect();
            match parts.as_slice() {
                [flags, tag, value]
                    if flags.parse::<u8>().is_ok()
                        && !tag.is_empty()
                        && tag.chars().all(|c| c.is_ascii_alphanumeric())
                        && !value.is_empty() =>
                {
                    Ok(())
                }
                _ => Err(ValidationError::new(
                    field,
                    format!("{t:?} is not a valid CAA target, expected \"<flags 0-255> <tag> <value>\""),
                )),
            }
        }
        RecordType::TXT => {
            if t.len() > 4000 {
                Err(ValidationError::new(field, "TXT value longer than 4000 characters"))
            } else {
                Ok(())
            }
        }
    }
}

pub fn validate_ttl(field: &str, ttl: i64) -> Result<u32, ValidationError> {
    if ttl < 1 || ttl as u64 > MAX_TTL {
        return Err(ValidationError::new(field, format!("TTL {ttl} is out of range 1..{MAX_TTL}")));
    }
    Ok(ttl as u32)
}

/// Checks a set of endpoints that will be served together (one DNSEndpoint): a CNAME must be
/// alone at its name, and one (name, setIdentifier, type) must appear only once. Returns the
/// index of the offending endpoint with the error.
pub fn validate_together(endpoints: &[(usize, &Endpoint)]) -> Vec<(usize, ValidationError)> {
    let mut errs = Vec::new();
    let mut seen: BTreeMap<RecordKey, usize> = BTreeMap::new();
    let mut types_at: BTreeMap<(&str, &str), Vec<(usize, RecordType)>> = BTreeMap::new();
    for (i, ep) in endpoints {
        if let Some(first) = seen.insert(ep.key(), *i) {
            errs.push((
                *i,
                ValidationError::new(
                    format!("endpoints[{i}]"),
                    format!("duplicates endpoints[{first}] ({}); merge their targets into one endpoint", ep.key()),
                ),
            ));
            continue;
        }
        types_at.entry((&ep.dns_name, &ep.set_identifier)).or_default().push((*i, ep.record_type));
    }
    for ((name, _), list) in types_at {
        if list.len() > 1 {
            for (i, rt) in &list {
                if *rt == RecordType::CNAME {
                    let others: Vec<String> =
                        list.iter().filter(|(j, _)| j != i).map(|(j, t)| format!("endpoints[{j}] ({t})")).collect();
                    errs.push((
                        *i,
                        ValidationError::new(
                            format!("endpoints[{i}].recordType"),
                            format!(
                                "CNAME at {name} cannot coexist with other records at that name: {}",
                                others.join(", ")
                            ),
                        ),
                    ));
                }
            }
        }
    }
    errs.sort_by_key(|(i, _)| *i);
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names_and_targets() {
        let e = Endpoint::new("Api.Example.COM.", RecordType::CNAME, vec!["LB.aws.com.".into(), "lb.aws.com".into()]);
        assert_eq!(e.dns_name, "api.example.com");
        assert_eq!(e.targets, vec!["lb.aws.com"]);
        let mx = Endpoint::new("x", RecordType::MX, vec!["10  Mail.Example.com.".into()]);
        assert_eq!(mx.targets, vec!["10 mail.example.com"]);
        let v6 = Endpoint::new("x", RecordType::AAAA, vec!["2001:DB8:0:0::1".into()]);
        assert_eq!(v6.targets, vec!["2001:db8::1"]);
        let caa = Endpoint::new("x", RecordType::CAA, vec!["0 issue letsencrypt.org".into()]);
        assert_eq!(caa.targets, vec!["0 issue \"letsencrypt.org\""]);
    }

    #[test]
    fn validates_targets_by_type() {
        assert!(validate_target("t", RecordType::A, "192.0.2.1").is_ok());
        let e = validate_target("endpoints[0].targets[0]", RecordType::A, "300.1.1.1").unwrap_err();
        assert_eq!(e.to_string(), "endpoints[0].targets[0]: \"300.1.1.1\" is not an IPv4 address (record type A)");
        assert!(validate_target("t", RecordType::A, "2001:db8::1").is_err());
        assert!(validate_target("t", RecordType::AAAA, "2001:db8::1").is_ok());
        assert!(validate_target("t", RecordType::SRV, "0 50 443 svc.example.com").is_ok());
        assert!(validate_target("t", RecordType::SRV, "0 50 svc.example.com").is_err());
        assert!(validate_target("t", RecordType::MX, "10 mail.example.com").is_ok());
        assert!(validate_target("t", RecordType::MX, "mail.example.com").is_err());
        assert!(validate_target("t", RecordType::CAA, "0 issue \"letsencrypt.org\"").is_ok());
        assert!(validate_target("t", RecordType::CNAME, "bad name.example.com").is_err());
    }

    #[test]
    fn validates_name_lengths() {
        let long_label = "a".repeat(64);
        assert!(validate_name("n", &format!("{long_label}.example.com")).unwrap_err().message.contains("limit is 63"));
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert!(long_name.len() > 253);
        assert!(validate_name("n", &long_name).unwrap_err().message.contains("limit is 253"));
        assert!(validate_name("n", "*.example.com.").is_ok());
        assert_eq!(
            validate_name("n", "a.*.example.com").unwrap_err().message,
            "label \"*\" of \"a.*.example.com\": '*' must be the whole first label (a wildcard such as \"*.example.com\")"
        );
        assert!(validate_name("n", "*a.example.com")
            .unwrap_err()
            .message
            .contains("'*' must be the whole first label"));
        assert!(validate_name("n", "a..b").is_err());
    }

    #[test]
    fn ttl_bounds() {
        assert!(validate_ttl("ttl", 0).is_err());
        assert_eq!(validate_ttl("ttl", 60), Ok(60));
        assert!(validate_ttl("ttl", 1 << 31).is_err());
    }

    #[test]
    fn cname_must_be_alone() {
        let a = Endpoint::new("x.example.com", RecordType::A, vec!["192.0.2.1".into()]);
        let c = Endpoint::new("x.example.com", RecordType::CNAME, vec!["y.example.com".into()]);
        let v6 = Endpoint::new("x.example.com", RecordType::AAAA, vec!["::1".into()]);
        let errs = validate_together(&[(0, &a), (1, &c)]);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, 1);
        assert!(errs[0].1.to_string().contains("CNAME at x.example.com cannot coexist"));
        assert!(validate_together(&[(0, &a), (1, &v6)]).is_empty());
        let dup = validate_together(&[(0, &a), (1, &a)]);
        assert_eq!(dup[0].0, 1);
    }
}
