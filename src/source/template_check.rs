//! Start-up check of `--fqdn-template` against the kinds it will run on: a field that no
//! enabled source's kind has is a typo that would otherwise yield no names, silently, for
//! every object. external-dns refuses such a template at start-up too.
//!
//! Fields are looked up in the OpenAPI schemas k8s-openapi generates for the kinds, the way
//! the template engine looks them up at run time: case-insensitively, with ObjectMeta's and
//! TypeMeta's fields promoted to the top.

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::Value;

use super::template::Template;
use super::SourceKind;

/// The schema of a kind with every sub-schema inlined, so field lookups need no `$ref`s, and
/// the kind's name for messages. A kind without a schema here accepts every field.
fn schema_of(kind: SourceKind) -> (Value, &'static str) {
    let settings = schemars::generate::SchemaSettings::openapi3().with(|s| s.inline_subschemas = true);
    #[allow(unreachable_patterns)]
    let (schema, name) = match kind {
        SourceKind::Service => (settings.into_generator().into_root_schema_for::<Service>(), "Service"),
        SourceKind::Ingress => (settings.into_generator().into_root_schema_for::<Ingress>(), "Ingress"),
        SourceKind::Node => (settings.into_generator().into_root_schema_for::<Node>(), "Node"),
        SourceKind::Pod => (settings.into_generator().into_root_schema_for::<Pod>(), "Pod"),
        // Routes are read through projections without a published schema here: any field.
        other => return (Value::Null, other.as_str()),
    };
    (serde_json::to_value(schema).unwrap_or(Value::Null), name)
}

fn property<'a>(schema: &'a Value, name: &str) -> Option<&'a Value> {
    schema.get("properties")?.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// True when `chain` can name a field of an object with this schema. The walk stops (and
/// accepts) where the schema stops describing fields: maps such as `.Labels`, lists, and
/// values of any shape.
fn has_path(root: &Value, chain: &[String]) -> bool {
    let mut node = root;
    for (i, seg) in chain.iter().enumerate() {
        if node.get("properties").and_then(Value::as_object).is_none() {
            return true;
        }
        let found = match (i, seg.as_str()) {
            (0, "ObjectMeta") => property(node, "metadata"),
            // Kind and APIVersion, which the root has under its own name too.
            (0, "TypeMeta") => return chain.len() == 1 || (chain.len() == 2 && property(node, &chain[1]).is_some()),
            (0, _) => property(node, seg).or_else(|| property(node, "metadata").and_then(|m| property(m, seg))),
            _ => property(node, seg),
        };
        match found {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

/// The first field of `template` that none of `kinds` has, as `.A.B`, with the kinds named.
pub fn unknown_field(template: &Template, kinds: &[SourceKind]) -> Option<String> {
    let (schemas, names): (Vec<Value>, Vec<&str>) = kinds.iter().map(|k| schema_of(*k)).unzip();
    template
        .root_fields()
        .into_iter()
        .find(|chain| !schemas.iter().any(|s| has_path(s, chain)))
        .map(|chain| format!(".{} is not a field of {}", chain.join("."), names.join(" or ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str, kinds: &[SourceKind]) -> Option<String> {
        unknown_field(&Template::parse(src).unwrap(), kinds)
    }

    #[test]
    fn fields_of_the_kinds_pass() {
        let both = [SourceKind::Service, SourceKind::Ingress];
        for ok in [
            "{{.Name}}.{{.Namespace}}.example.com",
            "{{.ObjectMeta.Name}}.{{.metadata.namespace}}.{{.Labels.whatever}}.example.com",
            "{{.Kind}}{{.APIVersion}}{{.TypeMeta.Kind}}",
            "{{.Annotations.x}}{{range .Status.LoadBalancer.Ingress}}{{.Whatever}}{{end}}",
            "{{.Spec.Type}}.example.com",
            "{{.Spec.Rules}}",
        ] {
            assert_eq!(check(ok, &both), None, "{ok}");
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let both = [SourceKind::Service, SourceKind::Ingress];
        assert_eq!(check("{{.Nmae}}.example.com", &both).unwrap(), ".Nmae is not a field of Service or Ingress");
        assert_eq!(check("{{.Spec.Typo}}", &both).unwrap(), ".Spec.Typo is not a field of Service or Ingress");
        assert_eq!(check("{{.Spec.Rules}}", &[SourceKind::Service]).unwrap(), ".Spec.Rules is not a field of Service");
        assert!(check("{{with .Spec}}{{$.Metadata.Nope}}{{end}}", &both).is_some());
    }
}
