//! `extdns render --plan`: the DNS changes the rendered DNSEndpoints (and hand-written ones in
//! the same files) would cause in an empty zone, TXT ownership records included, computed by
//! the same planner and registry the operator uses.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::controller::provider::{validate_endpoint_spec, DEFAULT_OWNER_ID, DEFAULT_TTL};
use crate::crd::DNSEndpoint;
use crate::dns::endpoint::RecordType;
use crate::dns::plan::{self, Claimant, DesiredRecord, Outcome, Policy};
use crate::dns::registry::{TxtRegistry, TxtRegistryConfig};
use crate::dns::Change;

fn dnsendpoints_in(yaml: &str) -> Vec<DNSEndpoint> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
        .filter(|v| v["kind"] == "DNSEndpoint" && v["apiVersion"] == "extdns.io/v1alpha1")
        .filter_map(|v| serde_yaml::from_value(v).ok())
        .collect()
}

use serde::Deserialize as _;

/// Plan text for `rendered` (the output of `render`) plus DNSEndpoints found in `inputs`.
pub fn plan_text(rendered: &str, inputs: &[(String, String)], owner_id: Option<&str>) -> Result<String, String> {
    let mut objects = dnsendpoints_in(rendered);
    for (_, text) in inputs {
        objects.extend(dnsendpoints_in(text));
    }
    objects.sort_by_key(|o| (o.metadata.namespace.clone(), o.metadata.name.clone()));
    let owner = owner_id.unwrap_or(DEFAULT_OWNER_ID);
    let registry = TxtRegistry::new(TxtRegistryConfig { owner_id: owner.to_string(), ..Default::default() })
        .map_err(|e| format!("--owner-id: {e}"))?;
    let mut out = String::new();
    let mut desired = Vec::new();
    for obj in &objects {
        let ns = obj.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = obj.metadata.name.clone().unwrap_or_default();
        let (ok, bad) = validate_endpoint_spec(obj);
        for (_, e) in bad {
            let _ = writeln!(out, "# invalid  DNSEndpoint {ns}/{name}: {e}");
        }
        let claimant = Arc::new(Claimant { created: String::new(), namespace: ns.clone(), name: name.clone() });
        desired.extend(
            ok.into_iter()
                .map(|(_, endpoint)| DesiredRecord { endpoint: Arc::new(endpoint), claimant: claimant.clone() }),
        );
    }
    let p = plan::plan(&plan::PlanInput {
        desired: &desired,
        current: &[],
        policy: Policy::Sync,
        owner_id: Some(owner),
        managed_types: &RecordType::ALL,
        default_ttl: DEFAULT_TTL,
        orphan_claims: &Default::default(),
    });
    for (d, o) in desired.iter().zip(&p.outcomes) {
        if !matches!(o, Outcome::Change(_) | Outcome::InSync) {
            let _ = writeln!(out, "# {}  DNSEndpoint {}: {}", o.reason(), d.claimant, o.message(&d.endpoint.key()));
        }
    }
    let view = registry.view(Vec::new());
    for change in registry.expand(&view, &p.changes).into_iter().map(|e| e.change) {
        let (verb, e) = match &change {
            Change::Create(e) => ("create", e),
            Change::Update { new, .. } => ("update", new),
            Change::Delete(e) => ("delete", e),
        };
        let ttl = e.ttl.map(|t| t.to_string()).unwrap_or_else(|| format!("{DEFAULT_TTL} (provider default)"));
        let _ = writeln!(out, "{verb} {} {} ttl={ttl} {:?}", e.dns_name, e.record_type, e.targets);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_lists_records_and_their_ownership_records() {
        let yaml = "apiVersion: extdns.io/v1alpha1\nkind: DNSEndpoint\nmetadata: {name: a, namespace: ns}\nspec:\n  endpoints:\n  - {dnsName: web.example.com, recordType: A, targets: [192.0.2.1], recordTTL: 60}\n  - {dnsName: bad.example.com, recordType: A, targets: [nope]}\n";
        let out = plan_text(yaml, &[], Some("me")).unwrap();
        assert!(out.contains("create web.example.com A ttl=60 [\"192.0.2.1\"]"), "{out}");
        assert!(out.contains("create a-web.example.com TXT ttl=60 [\"heritage=external-dns,external-dns/owner=me,external-dns/resource=crd/ns/a\"]"), "{out}");
        assert!(out.contains("# invalid  DNSEndpoint ns/a: spec.endpoints[1].targets[0]"), "{out}");
    }
}
