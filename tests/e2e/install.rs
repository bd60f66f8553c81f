//! The install manifests against the suite's control plane (the oldest Kubernetes the README
//! supports): `config/default` applies, by a server-side dry run, on every supported version;
//! `config/pdb` needs `policy/v1` (1.21+) and is refused, as documented, where it is absent.

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use serde_json::json;

use crate::harness::{apply, client, repo};

fn kubectl_dry_run(dir: &str) -> std::process::Output {
    std::process::Command::new(std::env::var("EXTDNS_KUBECTL").unwrap_or_else(|_| "kubectl".into()))
        .args(["apply", "--dry-run=server", "-k"])
        .arg(repo().join(dir))
        .output()
        .unwrap_or_else(|e| panic!("running kubectl apply -k {dir}: {e}"))
}

#[tokio::test]
async fn config_default_applies_on_the_oldest_supported_kubernetes() {
    let client = client().await;
    // A server-side dry run does not create the Namespace it creates, so the namespaced
    // objects after it would find none: the namespace is made for real (it stays, empty).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    apply(&namespaces, "extdns", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "extdns"}}))
        .await;

    let out = tokio::task::spawn_blocking(|| kubectl_dry_run("config/default")).await.expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl apply -k config/default --dry-run=server failed:\n{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for object in
        ["deployment.apps/extdns", "service/extdns-metrics", "serviceaccount/extdns", "customresourcedefinition"]
    {
        assert!(stdout.contains(object), "{object} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("poddisruptionbudget"), "the PDB is config/pdb's:\n{stdout}");

    let version = client.apiserver_version().await.expect("apiserver version");
    let minor: u32 = version.minor.trim_end_matches('+').parse().expect("numeric minor version");
    let out = tokio::task::spawn_blocking(|| kubectl_dry_run("config/pdb")).await.expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if version.major == "1" && minor < 21 {
        assert!(!out.status.success() && stderr.contains("policy/v1"), "config/pdb on 1.{minor}: {stderr}");
    } else {
        assert!(out.status.success(), "config/pdb on {}.{minor}: {stderr}", version.major);
    }
}
