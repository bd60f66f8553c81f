//! End-to-end tests of the Route53 provider against moto's Route53 API, started by the
//! project's `e2e/dns/moto.sh`. moto serves no DNS, so records are read back with the SDK.

use std::process::{Child, Command, Stdio};

use extdns::crd::{DNSEndpoint, DNSProvider};
use extdns::dns::providers::route53::{Route53Config, Route53Provider};
use extdns::dns::{Change, Endpoint, Provider, RecordType, Zone};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::harness::*;

pub(crate) struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    pub(crate) async fn start() -> Moto {
        let port = port();
        // The first test of a run may be this one: the log directory may not exist yet.
        std::fs::create_dir_all(repo().join("target/e2e")).expect("create target/e2e");
        let log = std::fs::File::create(repo().join("target/e2e/moto.log")).expect("moto log");
        let child = Command::new("bash")
            .arg(repo().join("e2e/dns/moto.sh"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start moto via e2e/dns/moto.sh");
        // The first run builds moto's venv, which takes about a minute.
        wait_for("moto to answer", std::time::Duration::from_secs(300), || async move {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        })
        .await;
        Moto { child, port }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn sdk(moto: &Moto) -> Route53Provider {
    let mut cfg = Route53Config::new("us-east-1");
    cfg.endpoint = Some(moto.endpoint());
    cfg.credentials = Some(("testing".into(), "testing".into()));
    Route53Provider::new(cfg).await.expect("Route53 client for moto")
}

pub(crate) async fn records(p: &Route53Provider, zone: &Zone, name: &str, rt: RecordType) -> Vec<Endpoint> {
    p.records(zone)
        .await
        .expect("list records")
        .into_iter()
        .filter(|e| e.dns_name == name && e.record_type == rt)
        .collect()
}

/// A hosted zone in moto; a private one is attached to a made-up VPC.
pub(crate) async fn create_zone(aws: &Route53Provider, name: &str, private: bool) -> Zone {
    let mut req = aws
        .client()
        .create_hosted_zone()
        .name(format!("{name}."))
        .caller_reference(format!("e2e-{name}-{private}-{}", std::process::id()));
    if private {
        req = req
            .vpc(
                aws_sdk_route53::types::Vpc::builder()
                    .vpc_id("vpc-0e2e")
                    .vpc_region(aws_sdk_route53::types::VpcRegion::UsEast1)
                    .build(),
            )
            .hosted_zone_config(aws_sdk_route53::types::HostedZoneConfig::builder().private_zone(true).build());
    }
    let created = req.send().await.expect("CreateHostedZone");
    let id = created.hosted_zone().map(|z| z.id().trim_start_matches("/hostedzone/").to_string()).unwrap_or_default();
    Zone { id, name: name.into() }
}

/// The Secret `aws` with moto's (any) keys, and a Route53 DNSProvider using it; `route53`
/// adds fields to the provider's `route53` block.
async fn route53_provider(
    client: &kube::Client,
    ns: &str,
    moto: &Moto,
    name: &str,
    route53: serde_json::Value,
    domain: &str,
    owner: &str,
) {
    apply(
        &Api::<Secret>::namespaced(client.clone(), ns),
        "aws",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws"},
               "stringData": {"access-key-id": "testing", "secret-access-key": "testing"}}),
    )
    .await;
    let mut block =
        json!({"region": "us-east-1", "endpoint": moto.endpoint(), "credentials": {"secretRef": {"name": "aws"}}});
    if let (Some(b), Some(extra)) = (block.as_object_mut(), route53.as_object()) {
        b.extend(extra.clone());
    }
    apply(
        &Api::<DNSProvider>::namespaced(client.clone(), ns),
        name,
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": name},
            "spec": {
                "route53": block,
                "domains": {"include": [domain]},
                "policy": "sync",
                "registry": {"txt": {"ownerId": owner}}
            }
        }),
    )
    .await;
}

/// Issue 5: a Service's record lands in Route53 (moto) with its ownership TXT, a Service
/// behind an ELB gets A and AAAA alias records, weighted records carry set identifiers and
/// weights, and deletion removes them. The provider assumes a role through (moto's) STS.
#[tokio::test]
async fn route53_records_in_moto() {
    let client = client().await;
    let ns = TestNs::new(&client, "r53", json!({})).await;
    let moto = Moto::start().await;
    let aws = sdk(&moto).await;
    let zone_name = "r53.e2e.test";
    let zone = create_zone(&aws, zone_name, false).await;

    let op = Operator::start("route53");
    let role = json!({"assumeRoleArn": "arn:aws:iam::123456789012:role/extdns-e2e"});
    route53_provider(&client, &ns.name, &moto, "r53", role, zone_name, "e2e").await;

    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &svcs,
        "web",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "annotations": {"external-dns.alpha.kubernetes.io/hostname": format!("web.{zone_name}")}},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}}),
    )
    .await;
    svcs.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.230"}]}}})),
    )
    .await
    .expect("status");
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    wait_condition(&eps, "web-service", "Ready", "True").await;
    let web = records(&aws, &zone, &format!("web.{zone_name}"), RecordType::A).await;
    assert_eq!(web.len(), 1, "{web:?}");
    assert_eq!(web[0].targets, vec!["192.0.2.230"]);
    let txt = records(&aws, &zone, &format!("a-web.{zone_name}"), RecordType::TXT).await;
    assert_eq!(
        txt.first().map(|t| t.targets.clone()),
        Some(vec![format!(
            "heritage=external-dns,external-dns/owner=e2e,external-dns/resource=service/{}/web",
            ns.name
        )])
    );

    // A load balancer with a hostname, as on EKS: a CNAME for the planner, A and AAAA aliases
    // in Route53, each with its ownership TXT.
    let elb = "k8s-e2e-lb-0123456789.us-east-1.elb.amazonaws.com";
    apply(
        &svcs,
        "lb",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "lb", "annotations": {"external-dns.alpha.kubernetes.io/hostname": format!("lb.{zone_name}")}},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}}),
    )
    .await;
    svcs.patch_status(
        "lb",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"loadBalancer": {"ingress": [{"hostname": elb}]}}})),
    )
    .await
    .expect("status");
    let lb = wait_condition(&eps, "lb-service", "Ready", "True").await;
    let message = lb.status.as_ref().and_then(|s| s.records.first()).and_then(|r| r.message.clone());
    assert!(message.as_deref().unwrap_or_default().contains("held as"), "{message:?}");
    let sets = aws
        .client()
        .list_resource_record_sets()
        .hosted_zone_id(&zone.id)
        .start_record_name(format!("lb.{zone_name}."))
        .max_items(10)
        .send()
        .await
        .expect("ListResourceRecordSets");
    let mut aliases: Vec<(String, String, String)> = sets
        .resource_record_sets()
        .iter()
        .filter(|s| s.name() == format!("lb.{zone_name}."))
        .map(|s| {
            let a = s.alias_target().expect("an alias record, not a CNAME");
            (s.r#type().as_str().to_string(), a.hosted_zone_id().to_string(), a.dns_name().to_string())
        })
        .collect();
    aliases.sort();
    assert_eq!(
        aliases,
        vec![
            ("A".to_string(), "Z35SXDOTRQ7X7K".to_string(), format!("{elb}.")),
            ("AAAA".to_string(), "Z35SXDOTRQ7X7K".to_string(), format!("{elb}.")),
        ]
    );
    for prefix in ["a", "aaaa"] {
        let txt = records(&aws, &zone, &format!("{prefix}-lb.{zone_name}"), RecordType::TXT).await;
        assert_eq!(txt.len(), 1, "ownership TXT of the {prefix} alias: {txt:?}");
    }
    assert!(records(&aws, &zone, &format!("lb.{zone_name}"), RecordType::CNAME).await.is_empty());

    // An alias at the apex to a record of the zone itself, written as external-dns users do.
    apply(
        &eps,
        "apex",
        dnsendpoint(
            "apex",
            json!([{"dnsName": zone_name, "recordType": "A", "targets": [format!("web.{zone_name}")],
                    "providerSpecific": [{"name": "alias", "value": "true"}]}]),
        ),
    )
    .await;
    wait_condition(&eps, "apex", "Ready", "True").await;
    let apex = aws
        .client()
        .list_resource_record_sets()
        .hosted_zone_id(&zone.id)
        .start_record_name(format!("{zone_name}."))
        .start_record_type(aws_sdk_route53::types::RrType::A)
        .max_items(1)
        .send()
        .await
        .expect("ListResourceRecordSets");
    let set = &apex.resource_record_sets()[0];
    assert_eq!((set.name(), set.r#type().as_str()), (format!("{zone_name}.").as_str(), "A"));
    let target = set.alias_target().expect("the apex is an alias");
    assert_eq!(target.hosted_zone_id().trim_start_matches("/hostedzone/"), zone.id, "an alias into its own zone");
    assert_eq!(target.dns_name(), format!("web.{zone_name}."));

    let weighted = |id: &str, ip: &str, w: &str| {
        json!({"dnsName": format!("api.{zone_name}"), "recordType": "A", "targets": [ip], "setIdentifier": id,
               "providerSpecific": [{"name": "aws/weight", "value": w}]})
    };
    apply(
        &eps,
        "weighted",
        dnsendpoint("weighted", json!([weighted("blue", "192.0.2.231", "90"), weighted("green", "192.0.2.232", "10")])),
    )
    .await;
    wait_condition(&eps, "weighted", "Ready", "True").await;
    let mut api = records(&aws, &zone, &format!("api.{zone_name}"), RecordType::A).await;
    api.sort_by(|a, b| a.set_identifier.cmp(&b.set_identifier));
    let got: Vec<(String, Vec<String>, Option<String>)> = api
        .iter()
        .map(|e| (e.set_identifier.clone(), e.targets.clone(), e.provider_specific("aws/weight").map(str::to_string)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("blue".to_string(), vec!["192.0.2.231".to_string()], Some("90".to_string())),
            ("green".to_string(), vec!["192.0.2.232".to_string()], Some("10".to_string())),
        ]
    );

    // The passes since the alias was written found it in sync: no update was ever planned,
    // which would happen if what Route53 lists differed from what extdns asks for.
    assert_eq!(op.counter("extdns_provider_changes_total", &["operation=\"update\""]).await, 0);
    assert!(
        op.counter("extdns_route53_api_calls_total", &["operation=\"ChangeResourceRecordSets\"", "outcome=\"ok\""])
            .await
            >= 3
    );

    svcs.delete("lb", &DeleteParams::foreground()).await.expect("delete Service");
    wait_gone(&eps, "lb-service").await;
    assert!(records(&aws, &zone, &format!("lb.{zone_name}"), RecordType::A).await.is_empty());
    assert!(records(&aws, &zone, &format!("lb.{zone_name}"), RecordType::AAAA).await.is_empty());
    eps.delete("apex", &DeleteParams::default()).await.expect("delete");
    wait_gone(&eps, "apex").await;
    eps.delete("weighted", &DeleteParams::default()).await.expect("delete");
    wait_gone(&eps, "weighted").await;
    svcs.delete("web", &DeleteParams::foreground()).await.expect("delete Service");
    wait_gone(&eps, "web-service").await;
    assert!(records(&aws, &zone, &format!("api.{zone_name}"), RecordType::A).await.is_empty());
    assert!(records(&aws, &zone, &format!("web.{zone_name}"), RecordType::A).await.is_empty());
    assert!(records(&aws, &zone, &format!("a-web.{zone_name}"), RecordType::TXT).await.is_empty());
    ns.cleanup().await;
}

/// Issue 5: a hosted zone holding 10,000 records is listed once, page by page, and not again
/// while records are added and changed: the cache is updated from our own changes.
#[tokio::test]
async fn route53_large_zone_is_listed_once() {
    const SEEDED: usize = 10_000;
    let client = client().await;
    let ns = TestNs::new(&client, "r53big", json!({})).await;
    let moto = Moto::start().await;
    let aws = sdk(&moto).await;
    let zone_name = "big.e2e.test";
    let zone = create_zone(&aws, zone_name, false).await;
    let seed: Vec<Change> = (0..SEEDED)
        .map(|i| {
            let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
            Change::Create(Endpoint::new(format!("r{i}.{zone_name}"), RecordType::A, vec![ip]).with_ttl(300))
        })
        .collect();
    let seeded = aws.apply(&zone, &seed).await;
    assert!(seeded.iter().all(|r| r.is_ok()), "seeding failed: {:?}", seeded.iter().find(|r| r.is_err()));
    // The pages one full listing takes, counted by listing it here once.
    let mut pages = 0u64;
    let mut start: Option<(String, aws_sdk_route53::types::RrType)> = None;
    loop {
        let mut req = aws.client().list_resource_record_sets().hosted_zone_id(&zone.id).max_items(300);
        if let Some((name, rtype)) = &start {
            req = req.start_record_name(name).start_record_type(rtype.clone());
        }
        let page = req.send().await.expect("ListResourceRecordSets");
        pages += 1;
        match (page.is_truncated(), page.next_record_name(), page.next_record_type()) {
            (true, Some(n), Some(t)) => start = Some((n.to_string(), t.clone())),
            _ => break,
        }
    }
    assert!(pages >= (SEEDED as u64).div_ceil(300), "{pages} pages for {SEEDED} records");

    let op = Operator::start("route53-big");
    route53_provider(&client, &ns.name, &moto, "r53", json!({}), zone_name, "e2e").await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let one =
        |name: &str, ip: &str| json!([{"dnsName": format!("{name}.{zone_name}"), "recordType": "A", "targets": [ip]}]);
    apply(&eps, "first", dnsendpoint("first", one("first", "192.0.2.1"))).await;
    wait_condition(&eps, "first", "Ready", "True").await;

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
    assert_eq!(calls("ListResourceRecordSets").await, pages, "one full listing");
    assert_eq!(calls("ListHostedZones").await, 1);
    let changed = calls("ChangeResourceRecordSets").await;

    // Steady state: a new record (its ownership TXT first, then the record, so a refused
    // record never leaves an orphaned TXT: two batches), then a changed one (one batch).
    apply(&eps, "second", dnsendpoint("second", one("second", "192.0.2.2"))).await;
    wait_condition(&eps, "second", "Ready", "True").await;
    apply(&eps, "first", dnsendpoint("first", one("first", "192.0.2.3"))).await;
    wait_condition(&eps, "first", "Ready", "True").await;
    let first = records(&aws, &zone, &format!("first.{zone_name}"), RecordType::A).await;
    assert_eq!(first.first().map(|e| e.targets.clone()), Some(vec!["192.0.2.3".to_string()]));
    assert_eq!(calls("ChangeResourceRecordSets").await, changed + 3, "TXT + record for the create, one for the change");
    assert_eq!(calls("ListResourceRecordSets").await, pages, "no listing in steady state");
    assert_eq!(calls("ListHostedZones").await, 1, "no zone listing in steady state");
    ns.cleanup().await;
}

/// Issue 5: a private and a public hosted zone of one name both get the record (split
/// horizon); `zoneType: private` restricts a provider to the private one.
#[tokio::test]
async fn route53_private_and_public_zones_of_one_name() {
    let client = client().await;
    let ns = TestNs::new(&client, "r53split", json!({})).await;
    let moto = Moto::start().await;
    let aws = sdk(&moto).await;
    let zone_name = "split.e2e.test";
    let (public, private) = (&create_zone(&aws, zone_name, false).await, &create_zone(&aws, zone_name, true).await);

    let _op = Operator::start("route53-split");
    for (zone_type, domain) in [("any", "both"), ("private", "inside")] {
        let block = json!({"zoneType": zone_type});
        let domain = format!("{domain}.{zone_name}");
        route53_provider(
            &client,
            &ns.name,
            &moto,
            &format!("r53-{zone_type}"),
            block,
            &domain,
            &format!("e2e-{zone_type}"),
        )
        .await;
    }
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let one =
        |name: &str, ip: &str| json!([{"dnsName": format!("{name}.{zone_name}"), "recordType": "A", "targets": [ip]}]);
    apply(&eps, "both", dnsendpoint("both", one("both", "192.0.2.61"))).await;
    apply(&eps, "inside", dnsendpoint("inside", one("inside", "10.0.0.61"))).await;
    wait_condition(&eps, "both", "Ready", "True").await;
    wait_condition(&eps, "inside", "Ready", "True").await;

    let targets = |zone: &Zone, name: &str| {
        let (aws, zone, name) = (&aws, zone.clone(), format!("{name}.{zone_name}"));
        async move { records(aws, &zone, &name, RecordType::A).await.into_iter().map(|e| e.targets).collect::<Vec<_>>() }
    };
    assert_eq!(targets(public, "both").await, vec![vec!["192.0.2.61".to_string()]], "public zone");
    assert_eq!(targets(private, "both").await, vec![vec!["192.0.2.61".to_string()]], "private zone");
    assert_eq!(targets(private, "inside").await, vec![vec!["10.0.0.61".to_string()]]);
    assert!(targets(public, "inside").await.is_empty(), "zoneType private never writes the public zone");

    eps.delete("both", &DeleteParams::default()).await.expect("delete");
    wait_gone(&eps, "both").await;
    assert!(targets(public, "both").await.is_empty());
    assert!(targets(private, "both").await.is_empty());
    ns.cleanup().await;
}
