//! `samples/` stays runnable: every YAML parses, and `extdns render -f samples/` yields the
//! DNSEndpoints the README shows.

use std::path::PathBuf;

#[test]
fn render_of_samples_prints_the_expected_dnsendpoints() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples");
    let inputs = extdns::source::render::read_inputs(&[dir]).expect("samples are readable");
    let out = extdns::source::render::render(&inputs, &Default::default()).expect("samples render");
    let docs: Vec<extdns::crd::DNSEndpoint> = out
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml::from_str(d).expect("DNSEndpoint"))
        .collect();
    let names: Vec<String> = docs.iter().map(|d| d.metadata.name.clone().unwrap_or_default()).collect();
    assert_eq!(names, vec!["shop-ingress", "web-service"]);
    let web = &docs[1].spec.endpoints[0];
    assert_eq!(
        (web.dns_name.as_str(), web.targets.as_slice(), web.record_ttl),
        ("web.example.com", &["192.0.2.80".to_string()][..], Some(60))
    );
    let hosts: Vec<&str> = docs[0].spec.endpoints.iter().map(|e| e.dns_name.as_str()).collect();
    assert_eq!(hosts, vec!["api.shop.example.com", "shop.example.com"]);
}

#[test]
fn gateway_sample_renders_the_accepted_route() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples").join("gateway");
    let inputs = extdns::source::render::read_inputs(&[dir]).expect("samples are readable");
    let args =
        extdns::source::SourceArgs { source: vec![extdns::source::SourceKind::GatewayHttpRoute], ..Default::default() };
    let out = extdns::source::render::render(&inputs, &args).expect("samples render");
    let docs: Vec<extdns::crd::DNSEndpoint> = out
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml::from_str(d).expect("DNSEndpoint"))
        .collect();
    assert_eq!(docs.len(), 1, "{out}");
    assert_eq!(docs[0].metadata.name.as_deref(), Some("shop-httproute"));
    assert_eq!(docs[0].metadata.namespace.as_deref(), Some("shop"));
    let eps: Vec<(&str, &[String], Option<i64>)> =
        docs[0].spec.endpoints.iter().map(|e| (e.dns_name.as_str(), e.targets.as_slice(), e.record_ttl)).collect();
    assert_eq!(eps, vec![("shop.example.com", &["192.0.2.90".to_string()][..], Some(60))]);
}

#[test]
fn sample_dnsendpoints_parse_as_the_crd_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples");
    for f in ["dnsendpoint.yaml", "invalid-dnsendpoint.yaml"] {
        let text = std::fs::read_to_string(dir.join(f)).expect("sample");
        let ep: extdns::crd::DNSEndpoint = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
        let (ok, bad) = extdns::controller::provider::validate_endpoint_spec(&ep);
        if f.starts_with("invalid") {
            assert_eq!(bad.len(), 1, "{f}: exactly one invalid record");
            assert_eq!(ok.len(), 1);
        } else {
            assert!(bad.is_empty(), "{f}: {bad:?}");
        }
    }
    let text = std::fs::read_to_string(dir.join("dnsprovider.yaml")).expect("sample");
    let _: extdns::crd::ClusterDNSProvider = serde_yaml::from_str(&text).expect("dnsprovider.yaml");
    for f in [
        "rfc2136/bind-provider.yaml",
        "route53/route53-provider.yaml",
        "powerdns/powerdns-provider.yaml",
        "webhook/webhook-provider.yaml",
        "azure/azure-provider.yaml",
    ] {
        for doc in std::fs::read_to_string(dir.join(f)).expect("sample").split("---\n") {
            let v: serde_yaml::Value = serde_yaml::from_str(doc).expect("yaml");
            if v["kind"] == "DNSProvider" {
                let _: extdns::crd::DNSProvider = serde_yaml::from_value(v).unwrap_or_else(|e| panic!("{f}: {e}"));
            } else if v["kind"] == "ClusterDNSProvider" {
                let _: extdns::crd::ClusterDNSProvider =
                    serde_yaml::from_value(v).unwrap_or_else(|e| panic!("{f}: {e}"));
            } else if v["kind"] == "DNSEndpoint" {
                let ep: extdns::crd::DNSEndpoint = serde_yaml::from_value(v).unwrap_or_else(|e| panic!("{f}: {e}"));
                assert!(extdns::controller::provider::validate_endpoint_spec(&ep).1.is_empty(), "{f}: invalid record");
            }
        }
    }
}

#[test]
fn cloudflare_sample_parses_as_the_crd_types() {
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/cloudflare/cloudflare-provider.yaml");
    let mut kinds = Vec::new();
    for doc in std::fs::read_to_string(&f).expect("sample").split("---\n") {
        let v: serde_yaml::Value = serde_yaml::from_str(doc).expect("yaml");
        kinds.push(v["kind"].as_str().unwrap_or_default().to_string());
        if v["kind"] == "DNSProvider" {
            let p: extdns::crd::DNSProvider = serde_yaml::from_value(v).expect("DNSProvider");
            let cf = p.spec.spec.cloudflare.expect("a cloudflare block");
            assert_eq!(cf.api_token.secret_ref.name, "cloudflare-token");
            assert_eq!(cf.zones, vec!["example.org"]);
        } else if v["kind"] == "DNSEndpoint" {
            let ep: extdns::crd::DNSEndpoint = serde_yaml::from_value(v).expect("DNSEndpoint");
            assert!(extdns::controller::provider::validate_endpoint_spec(&ep).1.is_empty(), "invalid record");
        }
    }
    assert_eq!(kinds, vec!["Secret", "DNSProvider", "DNSEndpoint"]);
}

#[test]
fn google_sample_parses_as_the_crd_types() {
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/google/google-provider.yaml");
    let mut kinds = Vec::new();
    for doc in std::fs::read_to_string(&f).expect("sample").split("---\n") {
        let v: serde_yaml::Value = serde_yaml::from_str(doc).expect("yaml");
        kinds.push(v["kind"].as_str().unwrap_or_default().to_string());
        if v["kind"] == "DNSProvider" {
            let p: extdns::crd::DNSProvider = serde_yaml::from_value(v).expect("DNSProvider");
            let g = p.spec.spec.google.expect("a google block");
            assert_eq!(g.credentials.expect("credentials").secret_ref.name, "gcp-dns");
            assert_eq!(g.zones, vec!["example-org"]);
            assert_eq!(g.zone_visibility, extdns::crd::dnsprovider::GoogleZoneVisibility::Public);
        } else if v["kind"] == "Secret" {
            let key = v["stringData"]["credentials.json"].as_str().expect("credentials.json");
            let json: serde_json::Value = serde_json::from_str(key).expect("the key is JSON");
            assert_eq!(json["type"], "service_account");
        } else if v["kind"] == "DNSEndpoint" {
            let ep: extdns::crd::DNSEndpoint = serde_yaml::from_value(v).expect("DNSEndpoint");
            assert!(extdns::controller::provider::validate_endpoint_spec(&ep).1.is_empty(), "invalid record");
        }
    }
    assert_eq!(kinds, vec!["Secret", "DNSProvider", "DNSEndpoint"]);
}
