//! End-to-end tests of the HTTP API backends: `powerdns` against the real PowerDNS 4.7 of
//! `e2e/dns/server.sh pdns`, `webhook` against the reference webhook `e2e/webhook/server.py`.
//! Each: a Service's record is written, follows the address and goes with the Service; a
//! record somebody else wrote stays as it is and the claim on it is reported.

use std::process::{Child, Command, Stdio};

use extdns::crd::{DNSEndpoint, DNSProvider};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use crate::harness::*;

const PDNS_API_KEY: &str = "e2e-secret-key";

/// A child process stopped with SIGTERM (then SIGKILL) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_file(name: &str) -> Stdio {
    std::fs::create_dir_all(repo().join("target/e2e")).expect("create target/e2e");
    Stdio::from(std::fs::File::create(repo().join("target/e2e").join(name)).expect("log file"))
}

async fn wait_http(url: &str) {
    let http = reqwest::Client::new();
    wait_for(&format!("{url} to answer"), DEADLINE, || {
        let (http, url) = (http.clone(), url.to_string());
        async move { http.get(&url).header("X-API-Key", PDNS_API_KEY).send().await.ok().map(|_| ()) }
    })
    .await;
}

/// (name, type) -> sorted contents, as the backend answers them.
type Held = Vec<(String, String, Vec<String>)>;

async fn pdns_rrsets(api: u16, zone: &str) -> Held {
    let v: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{api}/api/v1/servers/localhost/zones/{zone}."))
        .header("X-API-Key", PDNS_API_KEY)
        .send()
        .await
        .expect("GET zone")
        .json()
        .await
        .expect("zone JSON");
    let mut out: Held = v["rrsets"]
        .as_array()
        .expect("rrsets")
        .iter()
        .map(|r| {
            let mut c: Vec<String> = r["records"]
                .as_array()
                .expect("records")
                .iter()
                .map(|x| x["content"].as_str().unwrap_or("").to_string())
                .collect();
            c.sort();
            (
                r["name"].as_str().unwrap_or("").trim_end_matches('.').to_string(),
                r["type"].as_str().unwrap_or("").to_string(),
                c,
            )
        })
        .collect();
    out.sort();
    out
}

async fn webhook_records(port: u16) -> Held {
    let v: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/records"))
        .header("Accept", "application/external.dns.webhook+json;version=1")
        .send()
        .await
        .expect("GET /records")
        .json()
        .await
        .expect("records JSON");
    let mut out: Held = v
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            let mut t: Vec<String> = r["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect();
            t.sort();
            (r["dnsName"].as_str().unwrap_or("").to_string(), r["recordType"].as_str().unwrap_or("").to_string(), t)
        })
        .collect();
    out.sort();
    out
}

fn find<'a>(held: &'a Held, name: &str, rtype: &str) -> Option<&'a Vec<String>> {
    held.iter().find(|(n, t, _)| n == name && t == rtype).map(|(_, _, c)| c)
}

/// Waits until `read` shows `name rtype` holding exactly `want` (nothing when empty).
async fn wait_held<F, Fut>(what: &str, read: F, name: &str, rtype: &str, want: &[&str]) -> Held
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Held>,
{
    wait_for(&format!("{what}: {name} {rtype} = {want:?}"), DEADLINE, || async {
        let held = read().await;
        let got = find(&held, name, rtype).cloned().unwrap_or_default();
        (got == want.iter().map(|s| s.to_string()).collect::<Vec<_>>()).then_some(held)
    })
    .await
}

/// The shared scenario: a Service's record appears, follows the address, goes with the
/// Service, its ownership TXT with it; the foreign record stays and a claim on it is refused.
async fn service_scenario<F, Fut>(client: &kube::Client, ns: &str, zone: &str, read: F, txt_of: fn(&str) -> String)
where
    F: Fn() -> Fut + Copy,
    Fut: std::future::Future<Output = Held>,
{
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let host = format!("api.{zone}");
    apply(
        &svcs,
        "api",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "api", "annotations": {"external-dns.alpha.kubernetes.io/hostname": host}},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 443, "protocol": "TCP"}]}}),
    )
    .await;
    for ip in ["192.0.2.101", "192.0.2.102"] {
        svcs.patch_status(
            "api",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
        )
        .await
        .expect("status");
        wait_held("the Service's address", read, &host, "A", &[ip]).await;
    }
    let held = read().await;
    let owner = format!("heritage=external-dns,external-dns/owner=e2e,external-dns/resource=service/{ns}/api");
    assert_eq!(find(&held, &format!("a-{host}"), "TXT"), Some(&vec![txt_of(&owner)]), "{held:?}");

    // A claim on the foreign record is refused and reported; the record stays.
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), ns);
    apply(
        &eps,
        "claim",
        dnsendpoint(
            "claim",
            json!([{"dnsName": format!("manual.{zone}"), "recordType": "A", "targets": ["192.0.2.122"]}]),
        ),
    )
    .await;
    let ep = wait_condition(&eps, "claim", "Stalled", "True").await;
    let states: Vec<String> = ep.status.as_ref().expect("status").records.iter().map(|r| r.state.clone()).collect();
    assert_eq!(states, vec!["RecordExists".to_string()]);

    svcs.delete("api", &DeleteParams::foreground()).await.expect("delete");
    wait_held("the Service's deletion", read, &host, "A", &[]).await;
    let held = wait_held("the ownership TXT's removal", read, &format!("a-{host}"), "TXT", &[]).await;
    assert_eq!(
        find(&held, &format!("manual.{zone}"), "A"),
        Some(&vec!["198.51.100.2".to_string()]),
        "foreign record untouched: {held:?}"
    );
}

/// Issue 14: the `powerdns` backend against the real PowerDNS 4.7 through its HTTP API, from a
/// namespaced DNSProvider (allowed by --namespaced-custom-endpoint).
#[tokio::test]
async fn powerdns_service_record() {
    let client = client().await;
    let ns = TestNs::new(&client, "pdns-http", json!({})).await;
    let zone = "pdnshttp.e2e.test";
    let (dns_port, api) = (port(), port());
    let dir = repo().join("target/e2e/powerdns_service_record.pdns");
    let _ = std::fs::remove_dir_all(&dir);
    let _pdns = Proc(
        Command::new("bash")
            .arg(repo().join("e2e/dns/server.sh"))
            .args(["pdns", &dir.display().to_string(), &dns_port.to_string(), zone])
            .env("PDNS_API_PORT", api.to_string())
            .stdout(Stdio::null())
            .stderr(log_file("powerdns_service_record.pdns.log"))
            .spawn()
            .expect("start PowerDNS via e2e/dns/server.sh"),
    );
    wait_http(&format!("http://127.0.0.1:{api}/api/v1/servers/localhost/zones/{zone}.")).await;
    // A record somebody wrote by hand.
    let seeded = reqwest::Client::new()
        .patch(format!("http://127.0.0.1:{api}/api/v1/servers/localhost/zones/{zone}."))
        .header("X-API-Key", PDNS_API_KEY)
        .json(&json!({"rrsets": [{"name": format!("manual.{zone}."), "type": "A", "ttl": 300, "changetype": "REPLACE",
                                   "records": [{"content": "198.51.100.2", "disabled": false}]}]}))
        .send()
        .await
        .expect("seed PATCH");
    assert!(seeded.status().is_success(), "seeding the foreign record: {}", seeded.status());

    let _op = Operator::start_strict("powerdns_service_record", &["--namespaced-custom-endpoint"], &[]);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    apply(&secrets, "pdns", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pdns"}, "stringData": {"api-key": PDNS_API_KEY}})).await;
    apply(
        &Api::<DNSProvider>::namespaced(client.clone(), &ns.name),
        "pdns",
        json!({"apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "pdns"},
               "spec": {"powerdns": {"url": format!("http://127.0.0.1:{api}"), "apiKeySecretRef": {"name": "pdns", "key": "api-key"}, "zones": [zone], "timeout": "2s"},
                        "domains": {"include": [zone]}, "policy": "sync", "registry": {"txt": {"ownerId": "e2e"}}, "defaultTTL": 60}}),
    )
    .await;
    let read = || pdns_rrsets(api, zone);
    service_scenario(&client, &ns.name, zone, read, |v| format!("\"{v}\"")).await;
    ns.cleanup().await;
}

/// Issue 14: the `webhook` backend against the reference webhook, as a sidecar on loopback
/// of a namespaced DNSProvider (allowed by --namespaced-ambient-credentials).
#[tokio::test]
async fn webhook_service_record() {
    let client = client().await;
    let ns = TestNs::new(&client, "webhook", json!({})).await;
    let zone = "webhook.e2e.test";
    let hook_port = port();
    let _hook = Proc(
        Command::new("python3")
            .arg(repo().join("e2e/webhook/server.py"))
            .args(["--port", &hook_port.to_string(), "--domain", zone])
            .stdout(Stdio::null())
            .stderr(log_file("webhook_service_record.webhook.log"))
            .spawn()
            .expect("start e2e/webhook/server.py"),
    );
    wait_http(&format!("http://127.0.0.1:{hook_port}/healthz")).await;
    let seeded = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook_port}/records"))
        .header("Content-Type", "application/external.dns.webhook+json;version=1")
        .json(&json!({"create": [{"dnsName": format!("manual.{zone}"), "recordType": "A", "targets": ["198.51.100.2"], "recordTTL": 300}]}))
        .send()
        .await
        .expect("seed POST");
    assert!(seeded.status().is_success(), "seeding the foreign record: {}", seeded.status());

    let _op = Operator::start_strict("webhook_service_record", &["--namespaced-ambient-credentials"], &[]);
    apply(
        &Api::<DNSProvider>::namespaced(client.clone(), &ns.name),
        "hook",
        json!({"apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider", "metadata": {"name": "hook"},
               "spec": {"webhook": {"url": format!("http://127.0.0.1:{hook_port}"), "timeout": "2s"},
                        "policy": "sync", "registry": {"txt": {"ownerId": "e2e"}}, "defaultTTL": 60}}),
    )
    .await;
    let read = || webhook_records(hook_port);
    // Quoted, as external-dns's TXT registry hands its ownership values to a webhook.
    service_scenario(&client, &ns.name, zone, read, |v| format!("\"{v}\"")).await;
    ns.cleanup().await;
}
