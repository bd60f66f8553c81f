//! End-to-end tests of the Route53 provider against moto's Route53 API, started by the
//! project's `e2e/dns/moto.sh`. moto serves no DNS, so records are read back with the SDK.

use std::process::{Child, Command, Stdio};

use extdns::crd::{DNSEndpoint, DNSProvider};
use extdns::dns::providers::route53::{Route53Config, Route53Provider};
use extdns::dns::{Endpoint, Provider, RecordType, Zone};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::harness::*;

struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    async fn start() -> Moto {
        let port = port();
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

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sdk(moto: &Moto) -> Route53Provider {
    let mut cfg = Route53Config::new("us-east-1");
    cfg.endpoint = Some(moto.endpoint());
    cfg.credentials = Some(("testing".into(), "testing".into()));
    Route53Provider::new(cfg).await.expect("Route53 client for moto")
}

async fn records(p: &Route53Provider, zone: &Zone, name: &str, rt: RecordType) -> Vec<Endpoint> {
    p.records(zone)
        .await
        .expect("list records")
        .into_iter()
        .filter(|e| e.dns_name == name && e.record_type == rt)
        .collect()
}

/// Issue 5: a Service's record lands in Route53 (moto) with its ownership TXT, weighted
/// records carry set identifiers and weights, and deletion removes them.
#[tokio::test]
async fn route53_records_in_moto() {
    let client = client().await;
    let ns = TestNs::new(&client, "r53", json!({})).await;
    let moto = Moto::start().await;
    let aws = sdk(&moto).await;
    let zone_name = "r53.e2e.test";
    let created = aws
        .client()
        .create_hosted_zone()
        .name(format!("{zone_name}."))
        .caller_reference(format!("e2e-{}", std::process::id()))
        .send()
        .await
        .expect("CreateHostedZone");
    let id = created.hosted_zone().map(|z| z.id().trim_start_matches("/hostedzone/").to_string()).unwrap_or_default();
    let zone = Zone { id, name: zone_name.into() };

    let _op = Operator::start("route53");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &secrets,
        "aws",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws"},
               "stringData": {"access-key-id": "testing", "secret-access-key": "testing"}}),
    )
    .await;
    apply(
        &Api::<DNSProvider>::namespaced(client.clone(), &ns.name),
        "r53",
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "r53"},
            "spec": {
                "route53": {"region": "us-east-1", "endpoint": moto.endpoint(), "credentials": {"secretRef": {"name": "aws"}}},
                "domains": {"include": [zone_name]},
                "policy": "sync",
                "registry": {"txt": {"ownerId": "e2e"}}
            }
        }),
    )
    .await;

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

    eps.delete("weighted", &DeleteParams::default()).await.expect("delete");
    wait_gone(&eps, "weighted").await;
    svcs.delete("web", &DeleteParams::foreground()).await.expect("delete Service");
    wait_gone(&eps, "web-service").await;
    assert!(records(&aws, &zone, &format!("api.{zone_name}"), RecordType::A).await.is_empty());
    assert!(records(&aws, &zone, &format!("web.{zone_name}"), RecordType::A).await.is_empty());
    assert!(records(&aws, &zone, &format!("a-web.{zone_name}"), RecordType::TXT).await.is_empty());
    ns.cleanup().await;
}
