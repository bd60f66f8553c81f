//! End-to-end tests with a real BIND9 behind the RFC2136 provider.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use extdns::crd::{DNSEndpoint, DNSProvider};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

use extdns::dns::providers::rfc2136::{Rfc2136Config, Rfc2136Provider, TsigAlgorithm, TsigConfig};

use crate::harness::*;

/// A client of the test's BIND with the test key, to read zones back as they are.
pub fn reader(port: u16, zone: &str) -> Rfc2136Provider {
    let mut config = Rfc2136Config::new("127.0.0.1", port, vec![zone.to_string()]);
    config.tsig = Some(TsigConfig {
        key_name: TSIG_NAME.into(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret: TSIG_SECRET.into(),
    });
    Rfc2136Provider::new(config).expect("the reader's config is valid")
}

pub const TSIG_NAME: &str = "externaldns-key";
pub const TSIG_SECRET: &str = "e2a7m/0u+lZirz9VYyx2fdOgOLl0EY5tB4dHTDFRiLk=";

/// A BIND9 started by the project's own script, stopped on drop.
pub struct Bind {
    child: Child,
    pub port: u16,
    _dir: PathBuf,
}

impl Bind {
    pub fn start(test: &str, zone: &str) -> Bind {
        let port = port();
        let dir = repo().join("target/e2e").join(format!("{test}.bind"));
        std::fs::create_dir_all(repo().join("target/e2e")).expect("create target/e2e");
        let child = Command::new("bash")
            .arg(repo().join("e2e/dns/server.sh"))
            .args(["bind", &dir.display().to_string(), &port.to_string(), zone])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(repo().join("target/e2e").join(format!("{test}.bind.log"))).expect("bind log"),
            ))
            .spawn()
            .expect("start BIND via e2e/dns/server.sh");
        let pid = child.id();
        let ok = Command::new("bash")
            .arg(repo().join("e2e/dns/wait.sh"))
            .args([&port.to_string(), zone, &pid.to_string()])
            .status()
            .expect("wait.sh");
        assert!(ok.success(), "BIND did not come up for {zone} on port {port}");
        Bind { child, port, _dir: dir }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill");
        assert!(ok.success(), "kill {sig} BIND");
    }

    /// Freezes the server: queries time out as if the network were down.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Sends an RFC2136 update script through `nsupdate`, as an operator by hand would.
    pub fn nsupdate(&self, zone: &str, lines: &[String]) {
        let mut child = Command::new("nsupdate")
            .args(["-y", &format!("hmac-sha256:{TSIG_NAME}:{TSIG_SECRET}")])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nsupdate");
        let mut script = format!("server 127.0.0.1 {}\nzone {zone}\n", self.port);
        for l in lines {
            script.push_str(l);
            script.push('\n');
        }
        script.push_str("send\n");
        child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write nsupdate script");
        assert!(child.wait().expect("nsupdate").success(), "nsupdate failed: {script}");
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn rfc2136_provider(client: &kube::Client, ns: &str, zone: &str, port: u16, owner: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    apply(&secrets, "tsig", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tsig"}, "stringData": {"secret": TSIG_SECRET}})).await;
    apply(
        &Api::<DNSProvider>::namespaced(client.clone(), ns),
        "bind",
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider",
            "metadata": {"name": "bind"},
            "spec": {
                "rfc2136": {
                    "host": "127.0.0.1", "port": port, "zones": [zone], "timeout": "1s",
                    "tsig": {"keyName": TSIG_NAME, "secretRef": {"name": "tsig", "key": "secret"}}
                },
                "domains": {"include": [zone]},
                "policy": "sync",
                "registry": {"txt": {"ownerId": owner}},
                "defaultTTL": 60
            }
        }),
    )
    .await;
}

/// Issue 4: a Service's record is written to BIND, follows the address and goes with the
/// Service.
#[tokio::test]
async fn rfc2136_service_record_in_bind() {
    let client = client().await;
    let ns = TestNs::new(&client, "bind-svc", json!({})).await;
    let zone = "bindsvc.e2e.test";
    let bind = Bind::start("rfc2136_service", zone);
    let _op = Operator::start("rfc2136_service");
    rfc2136_provider(&client, &ns.name, zone, bind.port, "e2e").await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &svcs,
        "api",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "api", "annotations": {"external-dns.alpha.kubernetes.io/hostname": "api.bindsvc.e2e.test"}},
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
        wait_dig(bind.port, "api.bindsvc.e2e.test", "A", &[ip]).await;
    }
    // The ownership record is there, in external-dns's format.
    let txt = dig(bind.port, "a-api.bindsvc.e2e.test", "TXT");
    assert_eq!(
        txt,
        vec![format!("\"heritage=external-dns,external-dns/owner=e2e,external-dns/resource=service/{}/api\"", ns.name)]
    );
    svcs.delete("api", &DeleteParams::foreground()).await.expect("delete");
    wait_dig(bind.port, "api.bindsvc.e2e.test", "A", &[]).await;
    wait_dig(bind.port, "a-api.bindsvc.e2e.test", "TXT", &[]).await;
    ns.cleanup().await;
}

/// Issue 4: foreign and unowned records are untouched and the claim is reported; a zone
/// written by external-dns with our owner id is adopted without a single UPDATE.
#[tokio::test]
async fn rfc2136_ownership_and_adoption() {
    let client = client().await;
    let ns = TestNs::new(&client, "bind-own", json!({})).await;
    let zone = "own.e2e.test";
    let bind = Bind::start("rfc2136_ownership", zone);
    bind.nsupdate(
        zone,
        &[
            format!("update add foreign.{zone}. 300 A 198.51.100.1"),
            format!("update add a-foreign.{zone}. 300 TXT \"heritage=external-dns,external-dns/owner=someone-else,external-dns/resource=service/x/y\""),
            format!("update add manual.{zone}. 300 A 198.51.100.2"),
            format!("update add adopt.{zone}. 300 A 192.0.2.120"),
            format!("update add a-adopt.{zone}. 300 TXT \"heritage=external-dns,external-dns/owner=e2e,external-dns/resource=crd/{}/adopt\"", ns.name),
        ],
    );
    let op = Operator::start("rfc2136_ownership");
    // The provider first and its DNSEndpoint after it, as one GitOps sync may apply them: the
    // provider's first plan may come before the DNSEndpoint reaches it, and a new provider
    // leaves the owned record alone for its grace instead of deleting it as undesired.
    rfc2136_provider(&client, &ns.name, zone, bind.port, "e2e").await;
    wait_for("the provider's first listing", DEADLINE, || {
        let op = &op;
        async move {
            (op.counter("extdns_provider_calls_total", &["operation=\"records\"", "outcome=\"ok\""]).await >= 1)
                .then_some(())
        }
    })
    .await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    apply(&eps, "adopt", dnsendpoint("adopt", json!([{"dnsName": format!("adopt.{zone}"), "recordType": "A", "targets": ["192.0.2.120"], "recordTTL": 300}]))).await;
    wait_condition(&eps, "adopt", "Ready", "True").await;
    assert_eq!(op.counter("extdns_provider_changes_total", &[]).await, 0, "adoption sent changes:\n{}", op.log_tail());

    apply(
        &eps,
        "claims",
        dnsendpoint(
            "claims",
            json!([
                {"dnsName": format!("foreign.{zone}"), "recordType": "A", "targets": ["192.0.2.121"]},
                {"dnsName": format!("manual.{zone}"), "recordType": "A", "targets": ["192.0.2.122"]}
            ]),
        ),
    )
    .await;
    let ep = wait_condition(&eps, "claims", "Stalled", "True").await;
    let reasons: Vec<String> = ep.status.as_ref().expect("status").records.iter().map(|r| r.state.clone()).collect();
    assert!(
        reasons.contains(&"OwnedByOther".to_string()) && reasons.contains(&"RecordExists".to_string()),
        "{reasons:?}"
    );
    let msg = &condition(&ep, "Stalled").expect("Stalled").message;
    assert!(msg.contains("someone-else"), "names the other owner: {msg}");
    assert_eq!(dig(bind.port, &format!("foreign.{zone}"), "A"), vec!["198.51.100.1"]);
    assert_eq!(dig(bind.port, &format!("manual.{zone}"), "A"), vec!["198.51.100.2"]);
    assert_eq!(op.counter("extdns_provider_changes_total", &[]).await, 0, "foreign records were touched");
    ns.cleanup().await;
    // Deleting the namespace removed only our record.
    assert_eq!(dig(bind.port, &format!("foreign.{zone}"), "A"), vec!["198.51.100.1"]);
    assert!(dig(bind.port, &format!("adopt.{zone}"), "A").is_empty());
}

/// 3 + 8. A hand-written DNSEndpoint: applied, edited (observedGeneration lags while the
/// server is down), and deleted while the server is down: the finalizer holds the object
/// until its records are gone.
#[tokio::test]
async fn dnsendpoint_edit_and_delete_with_provider_outage() {
    let client = client().await;
    let ns = TestNs::new(&client, "bind-manual", json!({})).await;
    let zone = "manual.e2e.test";
    let bind = Bind::start("rfc2136_manual", zone);
    let _op = Operator::start("rfc2136_manual");
    rfc2136_provider(&client, &ns.name, zone, bind.port, "e2e").await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let name = format!("m.{zone}");
    apply(&eps, "m", dnsendpoint("m", json!([{"dnsName": name, "recordType": "A", "targets": ["192.0.2.131"]}]))).await;
    let ep = wait_condition(&eps, "m", "Ready", "True").await;
    assert_eq!(ep.status.as_ref().and_then(|s| s.observed_generation), ep.metadata.generation);
    wait_dig(bind.port, &name, "A", &["192.0.2.131"]).await;

    bind.pause();
    apply(&eps, "m", dnsendpoint("m", json!([{"dnsName": name, "recordType": "A", "targets": ["192.0.2.132"]}]))).await;
    let ep = wait_condition(&eps, "m", "Reconciling", "True").await;
    assert!(
        ep.status.as_ref().and_then(|s| s.observed_generation) < ep.metadata.generation,
        "observedGeneration must lag while not applied"
    );
    assert_eq!(condition(&ep, "Ready").map(|c| c.status.as_str()), Some("False"));
    bind.resume();
    let ep = wait_condition(&eps, "m", "Ready", "True").await;
    assert_eq!(ep.status.as_ref().and_then(|s| s.observed_generation), ep.metadata.generation);
    wait_dig(bind.port, &name, "A", &["192.0.2.132"]).await;

    bind.pause();
    eps.delete("m", &DeleteParams::default()).await.expect("delete");
    let ep = wait_for("the deleting DNSEndpoint to report Deleting", DEADLINE, || {
        let eps = eps.clone();
        async move {
            let ep = eps.get_opt("m").await.ok()??;
            (condition(&ep, "Reconciling")?.reason == "Deleting").then_some(ep)
        }
    })
    .await;
    assert!(ep.metadata.deletion_timestamp.is_some());
    bind.resume();
    wait_gone(&eps, "m").await;
    assert!(dig(bind.port, &name, "A").is_empty(), "record removed before the object went");
    ns.cleanup().await;
}

/// 7. Restarting the operator sends no change; restarting the apiserver does not stop it.
#[tokio::test]
async fn restarts_send_no_changes_and_recover() {
    let client = client().await;
    let ns = TestNs::new(&client, "restart", json!({})).await;
    let zone = "restart.e2e.test";
    let bind = Bind::start("restart", zone);
    let mut op = Operator::start("restart");
    rfc2136_provider(&client, &ns.name, zone, bind.port, "e2e").await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let records: Vec<serde_json::Value> =
        (0..20).map(|i| json!({"dnsName": format!("r{i}.{zone}"), "recordType": "A", "targets": [format!("192.0.2.{}", 140 + i)]})).collect();
    apply(&eps, "many", dnsendpoint("many", json!(records))).await;
    let before = wait_condition(&eps, "many", "Ready", "True").await;

    op.restart();
    // The new process has listed the zone and planned at least once.
    wait_for("the restarted operator to list the zone", DEADLINE, || {
        let op = &op;
        async move { (op.counter("extdns_provider_calls_total", &["operation=\"records\""]).await >= 1).then_some(()) }
    })
    .await;
    wait_condition(&eps, "many", "Ready", "True").await;
    assert_eq!(op.counter("extdns_provider_changes_total", &[]).await, 0, "restart sent changes:\n{}", op.log_tail());
    assert_eq!(op.counter("extdns_provider_calls_total", &["operation=\"apply\""]).await, 0);
    // A record created now is planned after the restart's first full plan, and its status
    // written after what that plan reported: once it is Ready, a status the restart wrote
    // for "many" would have been written too. There is none (the status did not change):
    // the object is as it was.
    apply(
        &eps,
        "probe",
        dnsendpoint(
            "probe",
            json!([{"dnsName": format!("probe.{zone}"), "recordType": "A", "targets": ["192.0.2.198"]}]),
        ),
    )
    .await;
    wait_condition(&eps, "probe", "Ready", "True").await;
    let after = eps.get("many").await.expect("get many");
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version,
        "the restart rewrote an unchanged object: {:?}",
        after.status.map(|s| s.conditions)
    );

    restart_apiserver().await;
    apply(
        &eps,
        "after",
        dnsendpoint(
            "after",
            json!([{"dnsName": format!("after.{zone}"), "recordType": "A", "targets": ["192.0.2.199"]}]),
        ),
    )
    .await;
    wait_condition(&eps, "after", "Ready", "True").await;
    wait_dig(bind.port, &format!("after.{zone}"), "A", &["192.0.2.199"]).await;
    ns.cleanup().await;
}

/// Two replicas with leader election: only the leader writes to the DNS server; when it
/// dies the other takes over.
#[tokio::test]
async fn leader_election_single_writer_and_failover() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Namespace;
    let client = client().await;
    let ops_ns: Api<Namespace> = Api::all(client.clone());
    let _ = ops_ns
        .create(&Default::default(), &serde_json::from_value(json!({"metadata": {"name": "extdns-e2e"}})).expect("ns"))
        .await;
    let ns = TestNs::new(&client, "leader", json!({})).await;
    let zone = "leader.e2e.test";
    let bind = Bind::start("leader", zone);
    let lease_name = format!("e2e-leader-{}", std::process::id());
    let common = [
        "--leader-elect",
        "--leader-election-lease-duration",
        "4s",
        "--leader-election-renew-deadline",
        "3s",
        "--leader-election-retry-period",
        "1s",
        "--leader-election-lease",
        lease_name.as_str(),
    ];
    let mut a = Operator::start_with("leader_a", &[&common[..], &["--identity", "replica-a"]].concat());
    let mut b = Operator::start_with("leader_b", &[&common[..], &["--identity", "replica-b"]].concat());
    rfc2136_provider(&client, &ns.name, zone, bind.port, "e2e").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "extdns-e2e");
    let holder =
        |leases: Api<Lease>, name: String| async move { leases.get_opt(&name).await.ok()??.spec?.holder_identity };
    let first = wait_for("a lease holder", DEADLINE, || holder(leases.clone(), lease_name.clone())).await;

    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &eps,
        "x",
        dnsendpoint("x", json!([{"dnsName": format!("x.{zone}"), "recordType": "A", "targets": ["192.0.2.210"]}])),
    )
    .await;
    wait_condition(&eps, "x", "Ready", "True").await;
    wait_dig(bind.port, &format!("x.{zone}"), "A", &["192.0.2.210"]).await;
    let (leader, follower) = if first == "replica-a" { (&mut a, &mut b) } else { (&mut b, &mut a) };
    assert!(leader.counter("extdns_provider_changes_total", &[]).await > 0, "the leader wrote the record");
    assert_eq!(
        follower.counter("extdns_provider_calls_total", &[]).await,
        0,
        "the follower must not call the DNS server"
    );
    assert_eq!(follower.counter("extdns_status_writes_total", &[]).await, 0, "the follower must not write statuses");

    leader.stop();
    let second = wait_for("the other replica to take the lease", DEADLINE, || {
        let (l, n, first) = (leases.clone(), lease_name.clone(), first.clone());
        async move { holder(l, n).await.filter(|h| *h != first) }
    })
    .await;
    assert_ne!(first, second);
    apply(
        &eps,
        "y",
        dnsendpoint("y", json!([{"dnsName": format!("y.{zone}"), "recordType": "A", "targets": ["192.0.2.211"]}])),
    )
    .await;
    wait_condition(&eps, "y", "Ready", "True").await;
    wait_dig(bind.port, &format!("y.{zone}"), "A", &["192.0.2.211"]).await;
    ns.cleanup().await;
    let _ = leases.delete(&lease_name, &DeleteParams::default()).await;
}

/// Issue 4: a wrong TSIG key is reported on the provider (AuthFailed with the server's
/// answer) and on the DNSEndpoint; fixing the Secret heals both without a restart.
#[tokio::test]
async fn rfc2136_wrong_key_is_reported_and_recovers() {
    let client = client().await;
    let ns = TestNs::new(&client, "bind-auth", json!({})).await;
    let zone = "auth.e2e.test";
    let bind = Bind::start("rfc2136_auth", zone);
    let op = Operator::start("rfc2136_auth");
    rfc2136_provider(&client, &ns.name, zone, bind.port, "e2e").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    // Overwrite with a valid-looking but wrong key.
    apply(&secrets, "tsig", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tsig"}, "stringData": {"secret": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}})).await;
    // The provider may have been built with the right key before the overwrite: the Secret
    // is watched, so it is rebuilt with the wrong one without any edit of the provider.
    let providers: Api<DNSProvider> = Api::namespaced(client.clone(), &ns.name);
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &eps,
        "a",
        dnsendpoint("a", json!([{"dnsName": format!("a.{zone}"), "recordType": "A", "targets": ["192.0.2.220"]}])),
    )
    .await;
    let p = wait_for("the provider to report AuthFailed", DEADLINE, || {
        let providers = providers.clone();
        async move {
            let p = providers.get("bind").await.ok()?;
            let c = p.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?.clone();
            (c.status == "False" && c.reason == "AuthFailed").then_some(c)
        }
    })
    .await;
    assert!(
        p.message.contains("BADSIG") || p.message.contains("NOTAUTH"),
        "server answer in the message: {}",
        p.message
    );
    let ep = wait_condition(&eps, "a", "Stalled", "True").await;
    assert_eq!(condition(&ep, "Stalled").map(|c| c.reason.as_str()), Some("AuthFailed"));

    apply(&secrets, "tsig", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tsig"}, "stringData": {"secret": TSIG_SECRET}})).await;
    wait_condition(&eps, "a", "Ready", "True").await;
    wait_dig(bind.port, &format!("a.{zone}"), "A", &["192.0.2.220"]).await;
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    assert!(
        log.contains("a Secret the provider reads changed; rebuilding its backend"),
        "the rotated key was picked up by the Secret watch, not by a retry or an edit"
    );
    ns.cleanup().await;
}
