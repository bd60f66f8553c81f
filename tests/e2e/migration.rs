//! Issue 12: taking over zones written by external-dns (its last minor releases, v0.18 to
//! v0.20) sends no change at all, and every ownership TXT extdns writes afterwards is one
//! external-dns reads back (rollback).
//!
//! The fixtures are written here by hand, byte for byte as external-dns's TXT registry writes
//! them (`registry/txt.go`, `endpoint/labels.go`, `endpoint/crypto.go`): the label text
//! `heritage=external-dns,external-dns/owner=<id>,external-dns/resource=<kind>/<ns>/<name>`,
//! the old format at the record's own name beside the new `<type>-<name>` (both written by
//! default; AAAA and encrypted records get the new format only), the wildcard's TXT at
//! `a-*.<rest>` (no `--txt-wildcard-replacement`), the apex owned through a TXT at the apex,
//! TTL 0 where the RFC2136 provider had no TTL, and a Route53 alias owned through
//! `cname-<name>` only. They go to the servers through `nsupdate` and the Route53 API.

use std::io::{Read, Write};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use extdns::crd::{DNSEndpoint, DNSProvider};
use extdns::dns::endpoint::ProviderSpecificProperty;
use extdns::dns::providers::route53::property;
use extdns::dns::{Change, Endpoint, Provider, RecordType};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;

use crate::harness::*;
use crate::rfc2136::{rfc2136_provider, Bind};
use crate::route53::{create_zone, sdk, Moto};

const OWNER: &str = "ext-mig";
const AES_KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const ELB: &str = "k8s-mig-lb-0123456789.us-east-1.elb.amazonaws.com";
const ELB_ZONE: &str = "Z35SXDOTRQ7X7K";

fn labels(resource: &str) -> String {
    format!("heritage=external-dns,external-dns/owner={OWNER},external-dns/resource={resource}")
}

/// external-dns's `EncryptText`: base64-std(nonce || AES-256-GCM(gzip(text))).
fn seal(text: &str, nonce: [u8; 12]) -> String {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(text.as_bytes()).expect("gzip");
    let compressed = gz.finish().expect("gzip");
    let aead = Aes256Gcm::new_from_slice(AES_KEY).expect("32-byte key");
    let sealed = aead.encrypt(Nonce::from_slice(&nonce), compressed.as_slice()).expect("seal");
    let mut out = nonce.to_vec();
    out.extend(sealed);
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn open(value: &str) -> Option<String> {
    let data = base64::engine::general_purpose::STANDARD.decode(value.trim_matches('"')).ok()?;
    if data.len() <= 12 {
        return None;
    }
    let aead = Aes256Gcm::new_from_slice(AES_KEY).ok()?;
    let plain = aead.decrypt(Nonce::from_slice(&data[..12]), &data[12..]).ok()?;
    let mut out = String::new();
    flate2::read::GzDecoder::new(plain.as_slice()).read_to_string(&mut out).ok()?;
    Some(out)
}

/// external-dns's `NewLabelsFromStringPlain`, as written there: tokens split on `,`, a token
/// that is not exactly `key=value` skipped, `heritage` required and equal to `external-dns`,
/// `external-dns/` keys kept without the prefix.
fn external_dns_labels(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut heritage = false;
    for token in text.trim_matches('"').split(',') {
        let parts: Vec<&str> = token.split('=').collect();
        if parts.len() != 2 {
            continue;
        }
        let (key, value) = (parts[0], parts[1]);
        if key == "heritage" {
            if value != "external-dns" {
                return Err(format!("invalid heritage in {text:?}"));
            }
            heritage = true;
            continue;
        }
        if key.starts_with("external-dns") {
            out.insert(key.trim_start_matches("external-dns/").to_string(), value.to_string());
        }
    }
    if heritage {
        Ok(out)
    } else {
        Err(format!("no heritage in {text:?}"))
    }
}

/// external-dns's reading of a new-format TXT name without affixes: `<type>-<name>`.
fn backed_record(txt_name: &str) -> Option<(String, RecordType)> {
    let (head, rest) = txt_name.split_once('-')?;
    let rt = match head {
        "a" => RecordType::A,
        "aaaa" => RecordType::AAAA,
        "cname" => RecordType::CNAME,
        _ => return None,
    };
    Some((rest.to_string(), rt))
}

/// Checks, as external-dns would on a rollback, every ownership TXT of `records` that is not
/// in `before`: its labels parse (decrypted first when `encrypted`), carry our owner id, and
/// its name backs a record the zone holds (an alias A/AAAA for `cname-`, as external-dns
/// v0.18+ plans an alias as a CNAME).
fn assert_rollback_readable(records: &[Endpoint], before: &[Endpoint], encrypted: bool) -> usize {
    let mut checked = 0;
    for txt in records.iter().filter(|e| e.record_type == RecordType::TXT && !before.contains(e)) {
        for value in &txt.targets {
            let text = if encrypted {
                open(value).unwrap_or_else(|| panic!("{} {value:?} does not decrypt", txt.dns_name))
            } else {
                value.clone()
            };
            let parsed = external_dns_labels(&text).unwrap_or_else(|e| panic!("{}: {e}", txt.dns_name));
            assert_eq!(parsed.get("owner").map(String::as_str), Some(OWNER), "{}: {text}", txt.dns_name);
            assert!(parsed.contains_key("resource"), "{}: {text}", txt.dns_name);
            let (name, rt) =
                backed_record(&txt.dns_name).unwrap_or_else(|| panic!("{} is no new-format name", txt.dns_name));
            let held = records.iter().any(|e| {
                e.dns_name == name
                    && (e.record_type == rt
                        || (rt == RecordType::CNAME && e.provider_specific.iter().any(|p| p.name == property::ALIAS)))
            });
            assert!(held, "{} backs no record {name} {rt}", txt.dns_name);
            checked += 1;
        }
    }
    checked
}

/// BIND: both TXT formats, AAAA new format only, a wildcard through `a-*`, the apex through
/// a TXT at the apex, TTL 0 where no TTL was configured. extdns takes it over without one
/// UPDATE, and what it writes next external-dns reads.
#[tokio::test]
async fn takeover_of_an_external_dns_bind_zone_sends_nothing() {
    let client = client().await;
    let ns = TestNs::new(&client, "mig-bind", json!({})).await;
    let zone = "migbind.e2e.test";
    let bind = Bind::start("mig-bind", zone);
    let res = format!("crd/{}/mig", ns.name);
    let l = labels(&res);
    let z = |n: &str| if n.is_empty() { zone.to_string() } else { format!("{n}.{zone}") };
    let mut lines: Vec<String> = Vec::new();
    let mut add =
        |name: String, ttl: u32, rt: &str, data: &str| lines.push(format!("update add {name} {ttl} {rt} {data}"));
    // A without a TTL: RFC2136 writes 0. Old and new format (the default of v0.18-v0.20).
    add(z("web"), 0, "A", "192.0.2.10");
    add(z("web"), 0, "TXT", &format!("\"{l}\""));
    add(z("a-web"), 0, "TXT", &format!("\"{l}\""));
    // AAAA: new format only.
    add(z("v6"), 0, "AAAA", "2001:db8::10");
    add(z("aaaa-v6"), 0, "TXT", &format!("\"{l}\""));
    // CNAME with a configured TTL.
    add(z("www"), 120, "CNAME", "target.example.net.");
    add(z("www"), 120, "TXT", &format!("\"{l}\""));
    add(z("cname-www"), 120, "TXT", &format!("\"{l}\""));
    // Wildcard without a replacement: the TXT at a-*.
    add(z("*.w"), 0, "A", "192.0.2.11");
    add(z("*.w"), 0, "TXT", &format!("\"{l}\""));
    add(z("a-*.w"), 0, "TXT", &format!("\"{l}\""));
    // Apex: a-<zone> is outside the zone; the old format at the apex owns it.
    add(z(""), 0, "A", "192.0.2.12");
    add(z(""), 0, "TXT", &format!("\"{l}\""));
    // --txt-new-format-only.
    add(z("new"), 60, "A", "192.0.2.13");
    add(z("a-new"), 60, "TXT", &format!("\"{l}\""));
    bind.nsupdate(zone, &lines);

    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let rec = |name: String, rt: &str, target: &str| json!({"dnsName": name, "recordType": rt, "targets": [target]});
    let mut www = rec(z("www"), "CNAME", "target.example.net");
    www["recordTTL"] = json!(120);
    let mut new = rec(z("new"), "A", "192.0.2.13");
    new["recordTTL"] = json!(60);
    let endpoints = vec![
        rec(z("web"), "A", "192.0.2.10"),
        rec(z("v6"), "AAAA", "2001:db8::10"),
        www,
        rec(z("*.w"), "A", "192.0.2.11"),
        rec(z(""), "A", "192.0.2.12"),
        new,
    ];
    apply(&eps, "mig", dnsendpoint("mig", json!(endpoints.clone()))).await;
    // The provider (defaultTTL 60) as external-dns was configured: same owner id.
    rfc2136_provider(&client, &ns.name, zone, bind.port, OWNER).await;

    let op = Operator::start("mig-bind");
    wait_condition(&eps, "mig", "Ready", "True").await;
    assert_eq!(op.counter("extdns_provider_changes_total", &[]).await, 0, "takeover sent changes:\n{}", op.log_tail());
    assert_eq!(op.counter("extdns_provider_calls_total", &["operation=\"apply\""]).await, 0);
    // A listing that failed (the suite runs loaded, the provider's timeout is 1 s) is retried:
    // the claim is one zone transfer that worked, not one attempt.
    assert_eq!(
        op.counter("extdns_provider_calls_total", &["operation=\"records\"", "outcome=\"ok\""]).await,
        1,
        "one listing that worked ({} failed):\n{}",
        op.counter("extdns_provider_calls_total", &["operation=\"records\"", "outcome=\"error\""]).await,
        op.log_tail()
    );

    // Rollback: what extdns writes from now on, external-dns reads.
    let reader = crate::rfc2136::reader(bind.port, zone);
    let before = reader.records(&extdns::dns::Zone::named(zone)).await.expect("list the zone");
    let mut more = endpoints;
    more.push(rec(z("later"), "A", "192.0.2.14"));
    more.push(rec(z("later"), "AAAA", "2001:db8::14"));
    more.push(rec(z("*.x"), "A", "192.0.2.15"));
    apply(&eps, "mig", dnsendpoint("mig", json!(more))).await;
    wait_for("the new records to be written", DEADLINE, || {
        let reader = &reader;
        async move {
            let all = reader.records(&extdns::dns::Zone::named(zone)).await.ok()?;
            let has = |n: &str, rt: RecordType| all.iter().any(|e| e.dns_name == n && e.record_type == rt);
            (has(&z("a-*.x"), RecordType::TXT)
                && has(&z("aaaa-later"), RecordType::TXT)
                && has(&z("*.x"), RecordType::A))
            .then_some(())
        }
    })
    .await;
    wait_condition(&eps, "mig", "Ready", "True").await;
    let after = reader.records(&extdns::dns::Zone::named(zone)).await.expect("list the zone");
    assert_eq!(assert_rollback_readable(&after, &before, false), 3, "a-later, aaaa-later, a-*.x");
    ns.cleanup().await;
}

/// Route53 (moto): encrypted TXT in the new format only, an A with its default TTL, and an
/// A + AAAA alias to a load balancer owned through `cname-<name>` alone. The takeover sends
/// no ChangeResourceRecordSets and lists the zone once.
#[tokio::test]
async fn takeover_of_an_external_dns_route53_zone_sends_nothing() {
    let client = client().await;
    let ns = TestNs::new(&client, "mig-r53", json!({})).await;
    let moto = Moto::start().await;
    let aws = sdk(&moto).await;
    let zone_name = "migr53.e2e.test";
    let zone = create_zone(&aws, zone_name, false).await;
    let res = format!("crd/{}/mig", ns.name);
    let z = |n: &str| format!("{n}.{zone_name}");
    let txt = |name: String, nonce: u8| {
        Endpoint::new(name, RecordType::TXT, vec![seal(&labels(&res), [nonce; 12])]).with_ttl(300)
    };
    let alias = |rt: RecordType| {
        let mut e = Endpoint::new(z("lb"), rt, vec![ELB.to_string()]);
        e.provider_specific = vec![
            ProviderSpecificProperty { name: property::ALIAS.into(), value: "true".into() },
            ProviderSpecificProperty { name: property::EVALUATE_TARGET_HEALTH.into(), value: "true".into() },
            ProviderSpecificProperty { name: property::TARGET_HOSTED_ZONE.into(), value: ELB_ZONE.into() },
        ];
        e.normalized()
    };
    let seed = vec![
        Change::Create(Endpoint::new(z("web"), RecordType::A, vec!["192.0.2.20".into()]).with_ttl(300)),
        Change::Create(txt(z("a-web"), 1)),
        Change::Create(alias(RecordType::A)),
        Change::Create(alias(RecordType::AAAA)),
        Change::Create(txt(z("cname-lb"), 2)),
    ];
    let seeded = aws.apply(&zone, &seed).await;
    assert!(seeded.iter().all(|r| r.is_ok()), "seeding failed: {seeded:?}");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &secrets,
        "aws",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws"},
               "stringData": {"access-key-id": "testing", "secret-access-key": "testing",
                              "aes": std::str::from_utf8(AES_KEY).expect("ascii key")}}),
    )
    .await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let rec = |name: String, rt: &str, target: &str| json!({"dnsName": name, "recordType": rt, "targets": [target]});
    let endpoints = vec![rec(z("web"), "A", "192.0.2.20"), rec(z("lb"), "CNAME", ELB)];
    apply(&eps, "mig", dnsendpoint("mig", json!(endpoints.clone()))).await;
    apply(
        &Api::<DNSProvider>::namespaced(client.clone(), &ns.name),
        "r53",
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "r53"},
            "spec": {
                "route53": {"region": "us-east-1", "endpoint": moto.endpoint(), "credentials": {"secretRef": {"name": "aws"}}},
                "domains": {"include": [zone_name]},
                "policy": "sync",
                "registry": {"txt": {"ownerId": OWNER, "encryption": {"secretRef": {"name": "aws", "key": "aes"}}}}
            }
        }),
    )
    .await;

    let op = Operator::start("mig-r53");
    wait_condition(&eps, "mig", "Ready", "True").await;
    let calls = |operation: &'static str| {
        let op = &op;
        async move {
            op.counter(
                "extdns_route53_api_calls_total",
                &["provider=\"DNSProvider/", &format!("operation=\"{operation}\""), "outcome=\"ok\""],
            )
            .await
        }
    };
    assert_eq!(calls("ChangeResourceRecordSets").await, 0, "takeover sent changes:\n{}", op.log_tail());
    assert_eq!(calls("ListResourceRecordSets").await, 1, "the zone is listed once at start-up");

    let before = aws.records(&zone).await.expect("list");
    let mut more = endpoints;
    more.push(rec(z("later"), "A", "192.0.2.21"));
    apply(&eps, "mig", dnsendpoint("mig", json!(more))).await;
    wait_for("the new record to be written", DEADLINE, || {
        let aws = &aws;
        let zone = &zone;
        async move {
            let all = aws.records(zone).await.ok()?;
            all.iter().any(|e| e.dns_name == z("a-later") && e.record_type == RecordType::TXT).then_some(())
        }
    })
    .await;
    let after = aws.records(&zone).await.expect("list");
    assert_eq!(assert_rollback_readable(&after, &before, true), 1, "a-later");
    ns.cleanup().await;
}
