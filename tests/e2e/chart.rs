//! Issue 23: an external-dns chart values file installs an extdns that publishes the same
//! records as external-dns would.
//!
//! `charts/extdns/tests/values/external-dns-rfc2136.yaml` (external-dns's RFC2136 tutorial
//! values) is rendered by the chart through the real Helm engine (`charts/test.sh --render`),
//! changed only where it must point at this test's BIND: `--rfc2136-host/-port/-zone` and
//! `domainFilters` name the test's server and zone, and the Secret `rfc2136-keys` the values
//! file reads the TSIG secret from holds the test's key (its key name and algorithm are the
//! file's). One extdns-only value is added so that the test stays in its own namespace on the
//! shared cluster: `extdns.clusterDNSProvider.spec.namespaceSelector`.
//!
//! The rendered ClusterDNSProvider and Secrets are applied, and the operator runs with the
//! rendered Deployment's arguments (the control plane has no kubelet: the harness runs the
//! binary as the Deployment would, with config/rbac's ServiceAccount, which the chart's
//! tests prove equal to the chart's RBAC). A LoadBalancer Service then gets what external-dns
//! writes with those values: the A record with the `--rfc2136-min-ttl` TTL, and its ownership
//! TXT under owner `txtOwnerId` in external-dns's new format at `a-<name>` (the values set no
//! `txtPrefix`/`txtSuffix`), byte for byte
//! `heritage=external-dns,external-dns/owner=<id>,external-dns/resource=service/<ns>/<name>`.
//! The one documented difference (docs/migration.md, "TXT formats written"): external-dns
//! v0.18-v0.20 also write the old-format TXT at the record's own name; extdns writes it only
//! at a zone's apex, so the test asserts it absent (every external-dns since v0.12 reads the
//! new format first; tests/e2e/migration.rs proves a rollback reads what extdns writes).

use std::collections::BTreeSet;
use std::process::Command;

use extdns::crd::ClusterDNSProvider;
use extdns::dns::{Provider, Zone};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use crate::harness::*;
use crate::identity::OPERATOR_NS;
use crate::rfc2136::{reader, Bind, TSIG_SECRET};

const VALUES: &str = "charts/extdns/tests/values/external-dns-rfc2136.yaml";
/// The release: the ClusterDNSProvider is `<release>-extdns`, cluster-wide, and must not be
/// the name of another test's (charts/tests/run.py installs `chart-e2e`).
const RELEASE: &str = "chart-rfc2136-e2e";
const ZONE: &str = "chartrfc.e2e.test";

/// The manifests `charts/test.sh --render` prints for the values file with `overrides`, in
/// the operator's namespace (where the Deployment's pod would run: `POD_NAMESPACE`).
fn render(overrides: &Value) -> Vec<Value> {
    let out = Command::new("bash")
        .arg(repo().join("charts/test.sh"))
        .arg("--render")
        .arg(repo().join(VALUES))
        .args(["--set-json", &overrides.to_string(), "--release", RELEASE, "--namespace", OPERATOR_NS])
        .output()
        .expect("run charts/test.sh --render");
    assert!(
        out.status.success(),
        "charts/test.sh --render failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 manifests");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The values file's `extraArgs` with host, port and zone of the test's BIND.
fn extra_args(values: &Value, port: u16) -> Vec<String> {
    let args: Vec<String> = values["extraArgs"]
        .as_array()
        .expect("extraArgs is a list")
        .iter()
        .map(|a| {
            let a = a.as_str().expect("extraArgs entries are strings");
            match a.split_once('=') {
                Some(("--rfc2136-host", _)) => "--rfc2136-host=127.0.0.1".to_string(),
                Some(("--rfc2136-port", _)) => format!("--rfc2136-port={port}"),
                Some(("--rfc2136-zone", _)) => format!("--rfc2136-zone={ZONE}"),
                _ => a.to_string(),
            }
        })
        .collect();
    for flag in ["--rfc2136-host=", "--rfc2136-port=", "--rfc2136-zone="] {
        assert_eq!(args.iter().filter(|a| a.starts_with(flag)).count(), 1, "{flag} once in {args:?}");
    }
    args
}

/// The rendered Deployment's `extdns run` arguments and plain environment, minus what the
/// harness supplies itself: `run`, `--metrics-addr` (a free port of its own), and the
/// `POD_NAMESPACE`/`POD_NAME` the pod gets from the downward API (the harness passes
/// `--operator-namespace`/`--identity`). `RUST_LOG` stays the harness's (debug logs).
fn deployment_command(objs: &[Value]) -> (Vec<String>, Vec<(String, String)>) {
    let deps: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "Deployment").collect();
    assert_eq!(deps.len(), 1, "one Deployment rendered");
    let containers = deps[0]["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    let c = containers.iter().find(|c| c["name"] == "extdns").expect("the extdns container");
    let args: Vec<String> =
        c["args"].as_array().expect("args").iter().map(|a| a.as_str().expect("string arg").to_string()).collect();
    assert_eq!(args.first().map(String::as_str), Some("run"), "the container runs `extdns run`: {args:?}");
    let args = args[1..].iter().filter(|a| !a.starts_with("--metrics-addr")).cloned().collect();
    let mut env = Vec::new();
    for var in c["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().expect("env name");
        match (name, var.get("value").and_then(Value::as_str)) {
            ("POD_NAMESPACE" | "POD_NAME", _) => {
                let path = &var["valueFrom"]["fieldRef"]["fieldPath"];
                assert!(path == "metadata.namespace" || path == "metadata.name", "{name} from {var}");
            }
            ("RUST_LOG", _) => {}
            (_, Some(v)) => env.push((name.to_string(), v.to_string())),
            (_, None) => panic!("env {var} needs the pod's environment; the harness cannot supply it"),
        }
    }
    (args, env)
}

/// Records of the zone as (name, type, sorted targets, TTL), SOA and apex NS left out.
async fn zone_records(port: u16) -> Option<BTreeSet<(String, String, Vec<String>, Option<u32>)>> {
    let all = reader(port, ZONE).records(&Zone::named(ZONE)).await.ok()?;
    Some(
        all.into_iter()
            .map(|e| {
                let mut t = e.targets.clone();
                t.sort();
                (e.dns_name, e.record_type.to_string(), t, e.ttl)
            })
            .collect(),
    )
}

#[tokio::test]
async fn external_dns_rfc2136_values_publish_what_external_dns_would() {
    let client = client().await;
    let label = format!("chart-rfc2136-{}", std::process::id());
    let ns = TestNs::new(&client, "chart-rfc2136", json!({"extdns-e2e-chart": label})).await;
    let bind = Bind::start("chart_rfc2136", ZONE);

    // 1. The values file, pointed at this test's BIND.
    let file: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join(VALUES)).expect("values file")).expect("values YAML");
    let owner = file["txtOwnerId"].as_str().expect("txtOwnerId").to_string();
    assert_eq!(file["provider"]["name"], "rfc2136");
    assert!(file.get("txtPrefix").is_none() && file.get("txtSuffix").is_none(), "names below assume neither");
    let label_filter = file["labelFilter"].as_str().expect("labelFilter");
    let (lk, lv) = label_filter.split_once('=').expect("labelFilter is key=value");
    let overrides = json!({
        "domainFilters": [ZONE],
        "extraArgs": extra_args(&file, bind.port),
        "extdns": {"clusterDNSProvider": {"spec": {"namespaceSelector": {"matchLabels": {"extdns-e2e-chart": label}}}}}
    });
    let objs = render(&overrides);

    // 2. The operator as the rendered Deployment runs it (the harness creates the operator's
    // namespace and ServiceAccount).
    let (args, env) = deployment_command(&objs);
    assert!(args.contains(&"--source=service".to_string()), "the values' sources: {args:?}");
    assert!(args.contains(&format!("--label-filter={label_filter}")), "the values' labelFilter: {args:?}");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut op = Operator::start_strict("chart_rfc2136", &args, &env);

    // What the release would create for the records: the ClusterDNSProvider, Secrets
    // (none for this file: it reads the TSIG secret from `rfc2136-keys`, which the user
    // creates, here with the test's key), in the operator's namespace.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NS);
    let env_secret = file["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == "EXTERNAL_DNS_RFC2136_TSIG_SECRET"))
        .map(|v| v["valueFrom"]["secretKeyRef"].clone())
        .expect("the values file reads the TSIG secret from a Secret");
    let (key_secret, key_key) = (env_secret["name"].as_str().expect("name"), env_secret["key"].as_str().expect("key"));
    apply(
        &secrets,
        key_secret,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": key_secret}, "stringData": {key_key: TSIG_SECRET}}),
    )
    .await;
    let mut created_secrets = vec![key_secret.to_string()];
    let providers: Api<ClusterDNSProvider> = Api::all(client.clone());
    let mut provider_name = None;
    for o in &objs {
        let name = o["metadata"]["name"].as_str().expect("metadata.name").to_string();
        match o["kind"].as_str() {
            Some("ClusterDNSProvider") => {
                let spec = &o["spec"];
                assert_eq!(spec["rfc2136"]["host"], "127.0.0.1");
                assert_eq!(spec["rfc2136"]["zones"], json!([ZONE]));
                assert_eq!(spec["rfc2136"]["tsig"]["secretRef"], json!({"name": key_secret, "key": key_key}));
                assert_eq!(spec["registry"]["txt"], json!({"ownerId": owner}), "owner, no prefix or suffix");
                apply(&providers, &name, o.clone()).await;
                provider_name = Some(name);
            }
            Some("Secret") => {
                assert_eq!(o["metadata"]["namespace"], OPERATOR_NS);
                apply(&secrets, &name, o.clone()).await;
                created_secrets.push(name);
            }
            _ => {}
        }
    }
    let provider_name = provider_name.expect("a ClusterDNSProvider rendered");

    // 3. A LoadBalancer Service with the hostname annotation (and the label the values
    // file's labelFilter wants).
    let before = wait_for("a zone transfer of the test's zone", DEADLINE, || zone_records(bind.port)).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let host = format!("app.{ZONE}");
    let ip = "192.0.2.123";
    apply(
        &svcs,
        "app",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "app", "labels": {lk: lv},
                            "annotations": {"external-dns.alpha.kubernetes.io/hostname": host}},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}}),
    )
    .await;
    svcs.patch_status(
        "app",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
    )
    .await
    .expect("patch Service status");
    wait_dig(bind.port, &host, "A", &[ip]).await;

    // 4. What external-dns writes: the A record and its new-format ownership TXT, both with
    // the --rfc2136-min-ttl TTL (no TTL annotation); the zone holds nothing else new.
    let labels =
        format!("heritage=external-dns,external-dns/owner={owner},external-dns/resource=service/{}/app", ns.name);
    let ttl = file["extraArgs"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|a| a.as_str()?.strip_prefix("--rfc2136-min-ttl=")?.strip_suffix('s')?.parse::<u32>().ok())
        .expect("--rfc2136-min-ttl=<n>s in the values file");
    let rec =
        |name: &str, rt: &str, target: &str| (name.to_string(), rt.to_string(), vec![target.to_string()], Some(ttl));
    let mut want = before.clone();
    want.insert(rec(&host, "A", ip));
    want.insert(rec(&format!("a-{host}"), "TXT", &labels));
    let port = bind.port;
    let names = [(host.clone(), "A"), (format!("a-{host}"), "TXT")];
    let got = wait_for("the A record and its ownership TXT record", DEADLINE, || {
        let names = names.clone();
        async move {
            let got = zone_records(port).await?;
            names.iter().all(|(n, t)| got.iter().any(|r| &r.0 == n && r.1 == *t)).then_some(got)
        }
    })
    .await;
    assert_eq!(got, want, "the zone holds exactly the record and its new-format ownership TXT");
    // As any resolver sees them (dig shows TXT strings quoted).
    let quoted = format!("\"{labels}\"");
    assert_eq!(dig(port, &format!("a-{host}"), "TXT"), vec![quoted]);
    // No old-format TXT at the record's own name (docs/migration.md).
    assert!(dig(port, &host, "TXT").is_empty(), "old-format TXT at {host}");

    // 5. Deleting the Service removes the records and their ownership TXT records.
    svcs.delete("app", &DeleteParams::foreground()).await.expect("delete Service");
    wait_gone(&svcs, "app").await;
    wait_dig(port, &host, "A", &[]).await;
    wait_for("the zone to be as before the Service", DEADLINE, || {
        let before = before.clone();
        async move { (zone_records(port).await? == before).then_some(()) }
    })
    .await;

    ns.cleanup().await;
    // The operator releases the ClusterDNSProvider's finalizer: delete it while it runs.
    providers.delete(&provider_name, &DeleteParams::default()).await.expect("delete ClusterDNSProvider");
    wait_gone(&providers, &provider_name).await;
    for s in created_secrets {
        secrets.delete(&s, &DeleteParams::default()).await.expect("delete Secret");
    }
    op.stop();
}
