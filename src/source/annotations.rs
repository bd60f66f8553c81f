//! The annotations external-dns reads on Services and Ingresses, parsed the way
//! external-dns parses them (`source/annotations/*.go`).
//!
//! external-dns reads one prefix, `external-dns.alpha.kubernetes.io/` unless
//! `--annotation-prefix` says otherwise. extdns reads that prefix and the stable
//! `external-dns.kubernetes.io/` as well; when both carry the same key the alpha one wins,
//! because that is the one external-dns would have acted on for the same manifest.

use std::collections::BTreeMap;

use crate::crd::{ProviderRef, ProviderRefKind};
use crate::dns::endpoint::{ProviderSpecificProperty, MAX_TTL};

pub const ALPHA_PREFIX: &str = "external-dns.alpha.kubernetes.io/";
pub const STABLE_PREFIX: &str = "external-dns.kubernetes.io/";
/// Pins the generated DNSEndpoint to one provider: `name` (a DNSProvider in the object's
/// namespace), `DNSProvider/name` or `ClusterDNSProvider/name`.
pub const PROVIDER_ANNOTATION: &str = "extdns.io/provider";
/// The ingress-class annotation that predates `spec.ingressClassName`.
pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The only `controller` annotation value under which external-dns still acts.
pub const CONTROLLER_VALUE: &str = "dns-controller";

pub const HOSTNAME: &str = "hostname";
pub const INTERNAL_HOSTNAME: &str = "internal-hostname";
pub const TARGET: &str = "target";
pub const TTL: &str = "ttl";
pub const CONTROLLER: &str = "controller";
pub const SET_IDENTIFIER: &str = "set-identifier";
pub const ALIAS: &str = "alias";
pub const ACCESS: &str = "access";
pub const ENDPOINTS_TYPE: &str = "endpoints-type";
pub const INGRESS_HOSTNAME_SOURCE: &str = "ingress-hostname-source";
pub const GATEWAY_HOSTNAME_SOURCE: &str = "gateway-hostname-source";
/// Values of the `ingress-hostname-source` and `gateway-hostname-source` annotations.
pub const DEFINED_HOSTS_ONLY: &str = "defined-hosts-only";
pub const ANNOTATION_ONLY: &str = "annotation-only";

/// `endpoints-type` values for headless Services.
pub const ENDPOINTS_TYPE_NODE_EXTERNAL_IP: &str = "NodeExternalIP";
pub const ENDPOINTS_TYPE_HOST_IP: &str = "HostIP";

/// Provider-specific annotation families: `<prefix><family><attr>` becomes the property
/// `<name prefix><attr>`, as in external-dns's `ProviderSpecificAnnotations`.
const PROVIDER_FAMILIES: [(&str, &str); 4] =
    [("aws-", "aws/"), ("scw-", "scw/"), ("webhook-", "webhook/"), ("coredns-", "coredns/")];
/// Cloudflare settings keep their full alpha annotation key as the property name; providers
/// look them up under exactly that name.
const CLOUDFLARE_KEYS: [&str; 5] = [
    "cloudflare-custom-hostname",
    "cloudflare-proxied",
    "cloudflare-region-key",
    "cloudflare-record-comment",
    "cloudflare-tags",
];

/// Read access to external-dns annotations under both prefixes.
#[derive(Clone, Copy, Debug)]
pub struct ExternalDnsAnnotations<'a> {
    all: &'a BTreeMap<String, String>,
}

impl<'a> ExternalDnsAnnotations<'a> {
    pub fn new(all: &'a BTreeMap<String, String>) -> Self {
        ExternalDnsAnnotations { all }
    }

    /// The value of `<prefix><key>`, alpha prefix first, and the full key it came from.
    pub fn get_with_key(&self, key: &str) -> Option<(String, &'a str)> {
        [ALPHA_PREFIX, STABLE_PREFIX].into_iter().find_map(|p| {
            let full = format!("{p}{key}");
            self.all.get(&full).map(|v| (full, v.as_str()))
        })
    }

    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.get_with_key(key).map(|(_, v)| v)
    }

    /// Every `(rest, value)` whose key is `<prefix><family><rest>`; alpha wins per `rest`.
    fn family(&self, family: &str) -> BTreeMap<&'a str, &'a str> {
        let mut out = BTreeMap::new();
        for prefix in [STABLE_PREFIX, ALPHA_PREFIX] {
            for (k, v) in self.all {
                if let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix(family)) {
                    out.insert(rest, v.as_str());
                }
            }
        }
        out
    }

    /// True when a `controller` annotation hands the object to another controller.
    pub fn controlled_elsewhere(&self) -> bool {
        self.get(CONTROLLER).is_some_and(|c| c != CONTROLLER_VALUE)
    }

    pub fn hostnames(&self) -> Vec<String> {
        self.get(HOSTNAME).map(split_hostname_list).unwrap_or_default()
    }

    pub fn internal_hostnames(&self) -> Vec<String> {
        self.get(INTERNAL_HOSTNAME).map(split_hostname_list).unwrap_or_default()
    }

    /// Targets from the `target` annotation; empty when absent.
    pub fn targets(&self) -> Vec<String> {
        self.get(TARGET).map(split_hostname_list).unwrap_or_default()
    }

    pub fn set_identifier(&self) -> Option<String> {
        self.get(SET_IDENTIFIER).filter(|s| !s.is_empty()).map(str::to_string)
    }

    pub fn access(&self) -> Option<&'a str> {
        self.get(ACCESS)
    }

    pub fn endpoints_type(&self) -> Option<&'a str> {
        self.get(ENDPOINTS_TYPE)
    }

    pub fn ingress_hostname_source(&self) -> Option<&'a str> {
        self.get(INGRESS_HOSTNAME_SOURCE)
    }

    pub fn gateway_hostname_source(&self) -> Option<&'a str> {
        self.get(GATEWAY_HOSTNAME_SOURCE)
    }

    /// The TTL annotation in seconds. `Ok(None)` when absent; `Err` carries a message for the
    /// user when present but unusable (external-dns then logs and falls back to the default).
    pub fn ttl(&self) -> Result<Option<i64>, String> {
        let Some((key, raw)) = self.get_with_key(TTL) else {
            return Ok(None);
        };
        let secs = parse_ttl(raw).map_err(|e| format!("annotation {key}: {raw:?} is not a valid TTL: {e}"))?;
        if secs < 1 || secs as u64 > MAX_TTL {
            return Err(format!("annotation {key}: TTL {secs} is out of range 1..{MAX_TTL}"));
        }
        Ok(Some(secs))
    }

    /// Provider-specific properties, sorted by name.
    pub fn provider_specific(&self) -> Vec<ProviderSpecificProperty> {
        let mut props: BTreeMap<String, String> = BTreeMap::new();
        if self.get(ALIAS) == Some("true") {
            props.insert("alias".into(), "true".into());
        }
        for (family, name_prefix) in PROVIDER_FAMILIES {
            for (rest, v) in self.family(family) {
                props.insert(format!("{name_prefix}{rest}"), v.to_string());
            }
        }
        for key in CLOUDFLARE_KEYS {
            if let Some(v) = self.get(key) {
                props.insert(format!("{ALPHA_PREFIX}{key}"), v.to_string());
            }
        }
        props.into_iter().map(|(name, value)| ProviderSpecificProperty { name, value }).collect()
    }
}

/// Splits a comma-separated hostname or target list the way external-dns does: whitespace
/// is dropped anywhere, trailing dots are removed. Empty entries (a trailing comma) are
/// skipped; external-dns would emit a nameless record for them.
pub fn split_hostname_list(raw: &str) -> Vec<String> {
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    compact.split(',').map(|h| h.trim_end_matches('.')).filter(|h| !h.is_empty()).map(str::to_string).collect()
}

/// Parses the `extdns.io/provider` annotation.
pub fn parse_provider_ref(raw: &str) -> Result<ProviderRef, String> {
    let raw = raw.trim();
    let (kind, name) = match raw.split_once('/') {
        None => (ProviderRefKind::DNSProvider, raw),
        Some(("DNSProvider", name)) => (ProviderRefKind::DNSProvider, name),
        Some(("ClusterDNSProvider", name)) => (ProviderRefKind::ClusterDNSProvider, name),
        Some((kind, _)) => {
            return Err(format!("unknown provider kind {kind:?}, expected DNSProvider or ClusterDNSProvider"))
        }
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(format!(
            "{raw:?} is not a provider reference; expected \"<name>\", \"DNSProvider/<name>\" or \"ClusterDNSProvider/<name>\""
        ));
    }
    Ok(ProviderRef { kind, name: name.to_string() })
}

/// A TTL in whole seconds: a Go duration ("90s", "1m", "1h30m", "1.5s" → 1) or a plain
/// integer ("60"), as external-dns's `parseTTL` accepts. Range is checked by the caller.
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    match parse_go_duration_nanos(s) {
        Ok(nanos) => Ok((nanos / 1_000_000_000) as i64),
        Err(duration_err) => s.parse::<i64>().map_err(|_| duration_err),
    }
}

/// Go's `time.ParseDuration`, in nanoseconds.
pub fn parse_go_duration_nanos(input: &str) -> Result<i128, String> {
    let invalid = || format!("invalid duration {input:?}");
    let (negative, mut s) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    // Go caps durations at 2^63-1 ns.
    let max = i64::MAX as i128;
    let mut total: i128 = 0;
    while !s.is_empty() {
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (int_part, rest) = s.split_at(int_len);
        let (frac_part, rest) = match rest.strip_prefix('.') {
            Some(r) => {
                let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                r.split_at(n)
            }
            None => ("", rest),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {input:?}")),
            _ => return Err(format!("unknown unit {unit:?} in duration {input:?}")),
        };
        let whole: i128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| invalid())? };
        let mut value = whole.checked_mul(scale).filter(|v| *v <= max).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            // Digits beyond nanosecond precision of an hour cannot matter; capping them keeps
            // the arithmetic below far from overflow.
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: i128 = digits.parse().map_err(|_| invalid())?;
            value += frac * scale / 10i128.pow(digits.len() as u32);
        }
        total = total.checked_add(value).filter(|v| *v <= max).ok_or_else(invalid)?;
        s = rest;
    }
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_both_prefixes_alpha_wins() {
        let m = map(&[
            ("external-dns.kubernetes.io/hostname", "stable.example.com"),
            ("external-dns.kubernetes.io/ttl", "30"),
            ("external-dns.alpha.kubernetes.io/ttl", "60"),
        ]);
        let a = ExternalDnsAnnotations::new(&m);
        assert_eq!(a.hostnames(), vec!["stable.example.com"]);
        assert_eq!(a.ttl(), Ok(Some(60)));
    }

    #[test]
    fn hostname_lists() {
        assert_eq!(
            split_hostname_list(" a.example.com., b.example.com ,c .example.com,"),
            vec!["a.example.com", "b.example.com", "c.example.com"]
        );
        assert!(split_hostname_list("").is_empty());
    }

    #[test]
    fn ttl_forms() {
        assert_eq!(parse_ttl("60"), Ok(60));
        assert_eq!(parse_ttl("1m"), Ok(60));
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        assert_eq!(parse_ttl("1.5s"), Ok(1));
        assert_eq!(parse_ttl("2h45m30.5s"), Ok(9930));
        assert_eq!(parse_ttl("500ms"), Ok(0));
        assert_eq!(parse_ttl("-1m"), Ok(-60));
        assert!(parse_ttl("abc").unwrap_err().contains("invalid duration"));
        assert!(parse_ttl("10x").unwrap_err().contains("unknown unit"));
        assert!(parse_ttl("1.5").is_err());
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("99999999999h").is_err());
        assert_eq!(parse_ttl("1.99999999999999999999999999999999999999h"), Ok(7199));
    }

    #[test]
    fn ttl_annotation_warnings() {
        let bad = map(&[("external-dns.alpha.kubernetes.io/ttl", "soon")]);
        let err = ExternalDnsAnnotations::new(&bad).ttl().unwrap_err();
        assert!(
            err.starts_with("annotation external-dns.alpha.kubernetes.io/ttl: \"soon\" is not a valid TTL"),
            "{err}"
        );
        let zero = map(&[("external-dns.kubernetes.io/ttl", "0")]);
        let err = ExternalDnsAnnotations::new(&zero).ttl().unwrap_err();
        assert_eq!(err, format!("annotation external-dns.kubernetes.io/ttl: TTL 0 is out of range 1..{MAX_TTL}"));
        let huge = map(&[("external-dns.kubernetes.io/ttl", "2147483648")]);
        assert!(ExternalDnsAnnotations::new(&huge).ttl().is_err());
    }

    #[test]
    fn controller_annotation() {
        let other = map(&[("external-dns.alpha.kubernetes.io/controller", "someone-else")]);
        assert!(ExternalDnsAnnotations::new(&other).controlled_elsewhere());
        let ours = map(&[("external-dns.kubernetes.io/controller", "dns-controller")]);
        assert!(!ExternalDnsAnnotations::new(&ours).controlled_elsewhere());
        assert!(!ExternalDnsAnnotations::new(&BTreeMap::new()).controlled_elsewhere());
    }

    #[test]
    fn provider_specific_names_match_external_dns() {
        let m = map(&[
            ("external-dns.alpha.kubernetes.io/alias", "true"),
            ("external-dns.alpha.kubernetes.io/aws-weight", "10"),
            ("external-dns.kubernetes.io/aws-weight", "99"),
            ("external-dns.kubernetes.io/aws-region", "eu-west-1"),
            ("external-dns.kubernetes.io/cloudflare-proxied", "true"),
            ("external-dns.alpha.kubernetes.io/webhook-foo", "bar"),
            ("external-dns.alpha.kubernetes.io/scw-x", "y"),
            ("external-dns.alpha.kubernetes.io/coredns-group", "g1"),
            ("external-dns.alpha.kubernetes.io/cloudflare-unknown", "ignored"),
            ("other.io/aws-weight", "ignored"),
        ]);
        let got: Vec<(String, String)> =
            ExternalDnsAnnotations::new(&m).provider_specific().into_iter().map(|p| (p.name, p.value)).collect();
        let want: Vec<(String, String)> = [
            ("alias", "true"),
            ("aws/region", "eu-west-1"),
            ("aws/weight", "10"),
            ("coredns/group", "g1"),
            ("external-dns.alpha.kubernetes.io/cloudflare-proxied", "true"),
            ("scw/x", "y"),
            ("webhook/foo", "bar"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
        let not_alias = map(&[("external-dns.alpha.kubernetes.io/alias", "yes")]);
        assert!(ExternalDnsAnnotations::new(&not_alias).provider_specific().is_empty());
    }

    #[test]
    fn provider_refs() {
        assert_eq!(
            parse_provider_ref("route53"),
            Ok(ProviderRef { kind: ProviderRefKind::DNSProvider, name: "route53".into() })
        );
        assert_eq!(
            parse_provider_ref("ClusterDNSProvider/shared"),
            Ok(ProviderRef { kind: ProviderRefKind::ClusterDNSProvider, name: "shared".into() })
        );
        assert_eq!(
            parse_provider_ref("DNSProvider/mine"),
            Ok(ProviderRef { kind: ProviderRefKind::DNSProvider, name: "mine".into() })
        );
        assert!(parse_provider_ref("Foo/bar").unwrap_err().contains("unknown provider kind"));
        assert!(parse_provider_ref("").is_err());
        assert!(parse_provider_ref("DNSProvider/").is_err());
        assert!(parse_provider_ref("a/b/c").is_err());
        assert!(parse_provider_ref("Upper").is_err());
    }
}
