//! The crd source: external-dns's own DNSEndpoints (`externaldns.k8s.io/v1alpha1`, or what
//! `--crd-source-apiversion` and `--crd-source-kind` name) as they are. Each object is
//! rendered into an extdns.io DNSEndpoint in its namespace, so it goes through the same
//! validation and tenancy rules as one written by hand, and its records carry the `resource`
//! label external-dns gives them (`crd/<namespace>/<name>`): a takeover of records
//! external-dns published from it finds its own ownership TXT and sends nothing.
//!
//! Behaviour follows external-dns's `source/crd.go`: the label filter selects objects, the
//! annotation filter is matched on their annotations, and `status.observedGeneration` is
//! written once an object has been processed (see the source controller).

use kube::core::DynamicObject;
use kube::ResourceExt;
use serde_json::Value;

use super::{DesiredObject, SourceError, SourceKind, MAX_ENDPOINTS};
use crate::controller::provider::validate::validate_endpoint_spec;
use crate::crd::{DNSEndpoint, DnsEndpointSpec, EndpointSpec, ProviderRef};
use crate::dns::endpoint::label;

/// external-dns's `--crd-source-apiversion` default.
pub const DEFAULT_API_VERSION: &str = "externaldns.k8s.io/v1alpha1";
/// external-dns's `--crd-source-kind` default.
pub const DEFAULT_KIND: &str = "DNSEndpoint";
/// Start of the warning for an endpoint left out (Event reason `InvalidEndpoint`).
pub const SKIPPED_PREFIX: &str = "skipping spec.endpoints[";
/// extdns's own group: its DNSEndpoints are what this source writes, never what it reads.
const OWN_GROUP: &str = "extdns.io";

/// The group, version and kind the crd source reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdResource {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// A `--crd-source-*` flag that cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub struct FlagError {
    pub flag: &'static str,
    pub message: String,
}

impl CrdResource {
    pub fn parse(api_version: &str, kind: &str) -> Result<CrdResource, FlagError> {
        let bad = |message: String| FlagError { flag: "crd-source-apiversion", message };
        let (group, version) = api_version
            .trim()
            .split_once('/')
            .ok_or_else(|| bad(format!("{api_version:?} is not <group>/<version>, e.g. {DEFAULT_API_VERSION}")))?;
        if group.is_empty() || version.is_empty() || version.contains('/') {
            return Err(bad(format!("{api_version:?} is not <group>/<version>, e.g. {DEFAULT_API_VERSION}")));
        }
        // Reading the objects this source writes would render each of them again, forever.
        if group == OWN_GROUP {
            return Err(bad(format!(
                "{api_version:?}: extdns.io DNSEndpoints are always served; the crd source reads another group's objects"
            )));
        }
        let kind = kind.trim();
        if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(FlagError { flag: "crd-source-kind", message: format!("{kind:?} is not a kind name") });
        }
        Ok(CrdResource { group: group.into(), version: version.into(), kind: kind.into() })
    }

    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// "DNSEndpoint.externaldns.k8s.io", as kubectl names a kind of a group: extdns has a
/// DNSEndpoint kind of its own.
pub fn kind_of(o: &DynamicObject) -> String {
    match &o.types {
        Some(t) => match t.api_version.split_once('/') {
            Some((group, _)) => format!("{}.{group}", t.kind),
            None => t.kind.clone(),
        },
        None => format!("{DEFAULT_KIND}.externaldns.k8s.io"),
    }
}

/// The generation to write into `status.observedGeneration`, or `None` when it is there
/// already (or the object has no generation: nothing to report).
pub fn generation_to_record(o: &DynamicObject) -> Option<i64> {
    let generation = o.metadata.generation?;
    let observed = o.data.get("status").and_then(|s| s.get("observedGeneration")).and_then(Value::as_i64);
    (observed != Some(generation)).then_some(generation)
}

/// The extdns.io DNSEndpoint for one object of the crd source, or `None` when it lists no
/// endpoints. Invalid endpoints are left out with a warning naming the field; an object
/// whose endpoints are all invalid is an error, so that the records it published stay.
pub fn desired(
    o: &DynamicObject,
    object: &str,
    provider_ref: Option<ProviderRef>,
) -> Result<Option<DesiredObject>, SourceError> {
    let invalid = |message: String| SourceError::InvalidObject { object: object.into(), message };
    let items = match o.data.get("spec").and_then(|s| s.get("endpoints")) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("spec.endpoints: must be a list".into())),
    };
    if items.is_empty() {
        return Ok(None);
    }
    let resource = format!("crd/{}/{}", o.namespace().unwrap_or_default(), o.name_any());
    let mut warnings = Vec::new();
    // (index in spec.endpoints, endpoint as read)
    let mut parsed: Vec<(usize, EndpointSpec)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match serde_json::from_value::<EndpointSpec>(item.clone()) {
            Ok(mut ep) => {
                // external-dns sets it over whatever the object says.
                ep.labels.get_or_insert_with(Default::default).insert(label::RESOURCE.into(), resource.clone());
                parsed.push((i, ep));
            }
            Err(e) => warnings.push(format!("{SKIPPED_PREFIX}{i}]: {e}")),
        }
    }
    if parsed.len() > MAX_ENDPOINTS {
        let dropped = parsed.split_off(MAX_ENDPOINTS);
        warnings.push(format!(
            "{}{} endpoints; a DNSEndpoint holds at most {MAX_ENDPOINTS}: publishing spec.endpoints up to [{}] and skipping {} from [{}]",
            super::TOO_MANY_PREFIX,
            parsed.len() + dropped.len(),
            parsed[MAX_ENDPOINTS - 1].0,
            dropped.len(),
            dropped[0].0,
        ));
    }
    let check = DNSEndpoint::new(
        &o.name_any(),
        DnsEndpointSpec { endpoints: parsed.iter().map(|(_, e)| e.clone()).collect(), provider_ref: None },
    );
    let (_, bad) = validate_endpoint_spec(&check);
    let mut rejected = std::collections::BTreeSet::new();
    for (k, e) in bad {
        rejected.insert(k);
        let (i, ep) = &parsed[k];
        // Validation names the field by its place in the list it was given.
        let field = e.field.replacen(&format!("spec.endpoints[{k}]"), &format!("spec.endpoints[{i}]"), 1);
        warnings.push(format!("{SKIPPED_PREFIX}{i}] ({} {}): {field}: {}", ep.dns_name, ep.record_type, e.message));
    }
    let endpoints: Vec<EndpointSpec> =
        parsed.into_iter().enumerate().filter(|(k, _)| !rejected.contains(k)).map(|(_, (_, ep))| ep).collect();
    if endpoints.is_empty() {
        return Err(invalid(format!("no valid endpoint; its records are left as they are: {}", warnings.join("; "))));
    }
    Ok(Some(DesiredObject {
        name: super::dnsendpoint_name(&o.name_any(), SourceKind::Crd),
        namespace: o.namespace().unwrap_or_default(),
        spec: DnsEndpointSpec { endpoints, provider_ref },
        warnings,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{cfg, summary, Fixture};
    use super::super::{desired_dnsendpoint, selected, SourceArgs, SourceObject};
    use super::*;

    fn obj(s: &str) -> DynamicObject {
        serde_yaml::from_str(s).unwrap_or_else(|e| panic!("bad fixture: {e}\n{s}"))
    }

    /// An external-dns DNSEndpoint as users write it (external-dns's docs/tutorials).
    fn example(endpoints: &str) -> DynamicObject {
        obj(&format!(
            r#"
apiVersion: externaldns.k8s.io/v1alpha1
kind: DNSEndpoint
metadata:
  name: examplednsrecord
  namespace: shop
  uid: u-1
  generation: 3
  labels: {{team: blue}}
  annotations: {{owner: me}}
spec:
  endpoints: {endpoints}
status: {{observedGeneration: 2}}
"#
        ))
    }

    fn crd_cfg(f: impl FnOnce(&mut SourceArgs)) -> crate::source::SourceConfig {
        cfg(|a| {
            a.source = vec![SourceKind::Crd];
            f(a);
        })
    }

    fn render(o: &DynamicObject, c: &crate::source::SourceConfig) -> Result<Option<DesiredObject>, SourceError> {
        desired_dnsendpoint(SourceObject::Crd(o), &Fixture::default(), c)
    }

    #[test]
    fn renders_endpoints_with_external_dns_resource_label() {
        let o = example(
            r#"[{dnsName: foo.bar.com, recordTTL: 180, recordType: A, targets: [192.168.99.216],
                 labels: {resource: mine, team: blue}, setIdentifier: eu,
                 providerSpecific: [{name: aws/weight, value: "10"}]},
                {dnsName: txt.bar.com, recordType: TXT, targets: ["v=spf1 -all"]},
                {dnsName: www.bar.com, recordType: CNAME, targets: [foo.bar.com.]}]"#,
        );
        let d = render(&o, &crd_cfg(|_| {})).unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.namespace.as_str()), ("examplednsrecord-crd", "shop"));
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        // A target ending in a dot, which external-dns's crd source skips, is valid here as
        // on any DNSEndpoint.
        assert_eq!(
            summary(&d),
            vec!["foo.bar.com A 192.168.99.216", "txt.bar.com TXT v=spf1 -all", "www.bar.com CNAME foo.bar.com."]
        );
        let ep = &d.spec.endpoints[0];
        let labels = ep.labels.as_ref().unwrap();
        assert_eq!(labels["resource"], "crd/shop/examplednsrecord");
        assert_eq!(labels["team"], "blue");
        assert_eq!((ep.record_ttl, ep.set_identifier.as_deref()), (Some(180), Some("eu")));
        assert_eq!(ep.provider_specific.as_ref().unwrap()[0].name, "aws/weight");
        assert_eq!(d.spec.endpoints[1].labels.as_ref().unwrap()["resource"], "crd/shop/examplednsrecord");
        assert_eq!(d.spec.provider_ref, None);
    }

    #[test]
    fn filters_select_objects_as_external_dns_does() {
        let o = example("[{dnsName: a.bar.com, recordType: A, targets: [1.2.3.4]}]");
        assert!(selected(SourceObject::Crd(&o), &crd_cfg(|_| {})));
        assert!(selected(SourceObject::Crd(&o), &crd_cfg(|a| a.label_filter = "team=blue".into())));
        assert!(!selected(SourceObject::Crd(&o), &crd_cfg(|a| a.label_filter = "team=red".into())));
        assert!(selected(SourceObject::Crd(&o), &crd_cfg(|a| a.annotation_filter = "owner in (me)".into())));
        assert!(!selected(SourceObject::Crd(&o), &crd_cfg(|a| a.annotation_filter = "owner=you".into())));
        assert!(!selected(SourceObject::Crd(&o), &crd_cfg(|a| a.namespace = "other".into())));
        assert!(!selected(SourceObject::Crd(&o), &cfg(|_| {})), "the crd source is off by default");
        assert!(render(&o, &crd_cfg(|a| a.label_filter = "team=red".into())).unwrap().is_none());
        // external-dns's crd source does not read the controller annotation.
        let mut handed = o.clone();
        handed.annotations_mut().insert("external-dns.alpha.kubernetes.io/controller".into(), "other".into());
        assert!(selected(SourceObject::Crd(&handed), &crd_cfg(|_| {})));
    }

    #[test]
    fn invalid_endpoints_are_skipped_with_the_field_named() {
        let o = example(
            r#"[{dnsName: ok.bar.com, recordType: A, targets: [1.2.3.4]},
                {dnsName: empty.bar.com, recordType: CNAME, targets: []},
                {dnsName: bad.bar.com, recordType: A, targets: [not-an-ip]},
                {dnsName: odd.bar.com, recordType: BOGUS, targets: [x]},
                {dnsName: ttl.bar.com, recordType: A, targets: [1.2.3.5], recordTTL: -5}]"#,
        );
        let d = render(&o, &crd_cfg(|_| {})).unwrap().unwrap();
        assert_eq!(summary(&d), vec!["ok.bar.com A 1.2.3.4"]);
        assert_eq!(d.warnings.len(), 4, "{:?}", d.warnings);
        assert!(d.warnings.iter().all(|w| crate::source::warning_reason(w) == "InvalidEndpoint"));
        assert!(d.warnings.iter().any(|w| w.starts_with("skipping spec.endpoints[3]: unknown variant `BOGUS`")));
        assert!(d
            .warnings
            .iter()
            .any(|w| w.starts_with("skipping spec.endpoints[1] (empty.bar.com CNAME): spec.endpoints[1].targets: ")));
        assert!(d
            .warnings
            .iter()
            .any(|w| w.starts_with("skipping spec.endpoints[2] (bad.bar.com A): spec.endpoints[2].targets[0]: ")));
        assert!(d
            .warnings
            .iter()
            .any(|w| w.starts_with("skipping spec.endpoints[4] (ttl.bar.com A): spec.endpoints[4].recordTTL: ")));
    }

    #[test]
    fn an_object_without_a_valid_endpoint_is_an_error_naming_it() {
        let o = example("[{dnsName: bad.bar.com, recordType: A, targets: [nope]}]");
        let e = render(&o, &crd_cfg(|_| {})).unwrap_err();
        assert_eq!(e.reason(), "InvalidObject");
        let msg = e.to_string();
        assert!(
            msg.starts_with("DNSEndpoint.externaldns.k8s.io shop/examplednsrecord: no valid endpoint; its records are left as they are: skipping spec.endpoints[0] (bad.bar.com A): spec.endpoints[0].targets[0]: "),
            "{msg}"
        );
        let not_a_list = obj("apiVersion: externaldns.k8s.io/v1alpha1\nkind: DNSEndpoint\nmetadata: {name: x, namespace: shop}\nspec: {endpoints: {a: b}}");
        assert!(render(&not_a_list, &crd_cfg(|_| {}))
            .unwrap_err()
            .to_string()
            .ends_with("spec.endpoints: must be a list"));
    }

    #[test]
    fn no_endpoints_means_no_dnsendpoint() {
        assert!(render(&example("[]"), &crd_cfg(|_| {})).unwrap().is_none());
        let bare = obj("apiVersion: externaldns.k8s.io/v1alpha1\nkind: DNSEndpoint\nmetadata: {name: x, namespace: shop}\nspec: {}");
        assert!(render(&bare, &crd_cfg(|_| {})).unwrap().is_none());
    }

    #[test]
    fn provider_annotation_pins_the_provider() {
        let mut o = example("[{dnsName: a.bar.com, recordType: A, targets: [1.2.3.4]}]");
        o.annotations_mut().insert("extdns.io/provider".into(), "ClusterDNSProvider/route53".into());
        let d = render(&o, &crd_cfg(|_| {})).unwrap().unwrap();
        assert_eq!(d.spec.provider_ref.unwrap().name, "route53");
    }

    #[test]
    fn owner_is_the_external_dns_object() {
        let o = example("[{dnsName: a.bar.com, recordType: A, targets: [1.2.3.4]}]");
        let owner = SourceObject::Crd(&o).owner_info().unwrap();
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("externaldns.k8s.io/v1alpha1", "DNSEndpoint", "examplednsrecord", "u-1")
        );
    }

    #[test]
    fn observed_generation_is_written_only_when_behind() {
        let mut o = example("[]");
        assert_eq!(generation_to_record(&o), Some(3));
        o.data["status"]["observedGeneration"] = 3.into();
        assert_eq!(generation_to_record(&o), None);
        o.data.as_object_mut().unwrap().remove("status");
        assert_eq!(generation_to_record(&o), Some(3));
        o.metadata.generation = None;
        assert_eq!(generation_to_record(&o), None);
    }

    #[test]
    fn flags_name_a_group_version_and_kind() {
        let r = CrdResource::parse(DEFAULT_API_VERSION, DEFAULT_KIND).unwrap();
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.kind.as_str()),
            ("externaldns.k8s.io", "v1alpha1", "DNSEndpoint")
        );
        assert_eq!(r.api_version(), DEFAULT_API_VERSION);
        assert_eq!(CrdResource::parse("v1", "DNSEndpoint").unwrap_err().flag, "crd-source-apiversion");
        assert!(CrdResource::parse("extdns.io/v1alpha1", "DNSEndpoint").unwrap_err().message.contains("always served"));
        assert_eq!(CrdResource::parse("hive.openshift.io/v1", "").unwrap_err().flag, "crd-source-kind");
        let e = crate::source::SourceConfig::new(&SourceArgs {
            source: vec![SourceKind::Crd],
            crd_source_apiversion: "nogroup".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("--crd-source-apiversion: \"nogroup\" is not <group>/<version>"), "{e}");
        // Off, the crd source's flags are not checked.
        let off = SourceArgs { crd_source_apiversion: "nogroup".into(), ..Default::default() };
        assert!(crate::source::SourceConfig::new(&off).is_ok());
        // --fqdn-template is not used by the crd source, so its fields are not checked.
        assert!(crate::source::SourceConfig::new(&SourceArgs {
            source: vec![SourceKind::Crd],
            fqdn_template: "{{.Whatever}}.example.com".into(),
            ..Default::default()
        })
        .is_ok());
    }
}
