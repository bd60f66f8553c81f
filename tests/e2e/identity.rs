//! The identity every e2e operator runs with: the ServiceAccount and RBAC of `config/rbac`,
//! exactly as shipped, and a TokenRequest token of that ServiceAccount in a kubeconfig of
//! its own. The suite never runs the operator as the admin of the test cluster, so a rule
//! missing from `config/rbac` fails a test (see [`forbidden_lines`]) instead of a user's
//! installation.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::harness::{repo, wait_for};

/// Namespace of the e2e operators: their ServiceAccount, its Role and the leader Leases.
pub const OPERATOR_NS: &str = "extdns-e2e";

/// The shipped ServiceAccount's name (config/rbac/service_account.yaml).
const SERVICE_ACCOUNT: &str = "extdns";

/// Field manager of what the harness applies.
const MANAGER: &str = "e2e-harness";

/// The documents of every file `config/rbac/kustomization.yaml` lists, as JSON values.
fn rbac_documents() -> Vec<Value> {
    let dir = repo().join("config/rbac");
    let kustomization: Value = read_yaml_docs(&dir.join("kustomization.yaml")).into_iter().next().unwrap_or_default();
    let files = kustomization["resources"].as_array().cloned().unwrap_or_default();
    assert!(!files.is_empty(), "config/rbac/kustomization.yaml lists no resources");
    files
        .iter()
        .flat_map(|f| {
            let f = f.as_str().unwrap_or_else(|| panic!("config/rbac/kustomization.yaml: resource {f} is not a path"));
            read_yaml_docs(&dir.join(f))
        })
        .collect()
}

fn read_yaml_docs(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// What `kubectl apply -k` with `namespace: <ns>` does to these documents, and nothing else:
/// namespaced objects and the ServiceAccount subjects of bindings move into `ns`.
fn in_namespace(mut doc: Value, ns: &str) -> Value {
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    if matches!(kind.as_str(), "ServiceAccount" | "Role" | "RoleBinding") {
        doc["metadata"]["namespace"] = json!(ns);
    }
    if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects.iter_mut().filter(|s| s["kind"] == "ServiceAccount") {
            s["namespace"] = json!(ns);
        }
    }
    doc
}

async fn apply_doc(client: &Client, doc: &Value) {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_else(|| panic!("config/rbac: {kind} without a name"));
    let pp = PatchParams::apply(MANAGER).force();
    let patch = Patch::Apply(doc);
    let res = match kind {
        "ServiceAccount" => {
            Api::<ServiceAccount>::namespaced(client.clone(), OPERATOR_NS).patch(name, &pp, &patch).await.map(drop)
        }
        "ClusterRole" => Api::<ClusterRole>::all(client.clone()).patch(name, &pp, &patch).await.map(drop),
        "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(client.clone()).patch(name, &pp, &patch).await.map(drop),
        "Role" => Api::<Role>::namespaced(client.clone(), OPERATOR_NS).patch(name, &pp, &patch).await.map(drop),
        "RoleBinding" => {
            Api::<RoleBinding>::namespaced(client.clone(), OPERATOR_NS).patch(name, &pp, &patch).await.map(drop)
        }
        other => panic!("config/rbac: the harness does not know how to apply a {other} ({name})"),
    };
    res.unwrap_or_else(|e| panic!("applying config/rbac {kind} {name} in {OPERATOR_NS}: {e}"));
}

/// Every (namespace, group, resource, verb) the applied roles grant, for [`wait_effective`].
fn granted(docs: &[Value]) -> Vec<(Option<String>, String, String, String)> {
    let mut out = Vec::new();
    for doc in docs {
        let ns = match doc["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(OPERATOR_NS.to_string()),
            _ => continue,
        };
        for rule in doc["rules"].as_array().into_iter().flatten() {
            let strings = |k: &str| -> Vec<String> {
                rule[k].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect()
            };
            for g in strings("apiGroups") {
                for r in strings("resources") {
                    for v in strings("verbs") {
                        out.push((ns.clone(), g.clone(), r.clone(), v));
                    }
                }
            }
        }
    }
    out
}

/// Waits until the apiserver's authorizer grants the ServiceAccount every rule just applied.
/// RBAC objects reach the authorizer through its informers a moment after they are written;
/// an operator started before that would log `forbidden` for reasons of the test, not of
/// the rules.
async fn wait_effective(client: &Client, docs: &[Value]) {
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let user = format!("system:serviceaccount:{OPERATOR_NS}:{SERVICE_ACCOUNT}");
    for (ns, group, resource, verb) in granted(docs) {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r.to_string(), Some(s.to_string())),
            None => (resource, None),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.clone()),
                resource_attributes: Some(ResourceAttributes {
                    namespace: ns,
                    group: Some(group.clone()),
                    resource: Some(resource.clone()),
                    subresource,
                    verb: Some(verb.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let what = format!("the apiserver to grant {user} {verb} on {group}/{resource}");
        wait_for(&what, Duration::from_secs(30), || {
            let (reviews, review) = (reviews.clone(), review.clone());
            async move {
                let r = reviews.create(&PostParams::default(), &review).await.ok()?;
                r.status.is_some_and(|s| s.allowed).then_some(())
            }
        })
        .await;
    }
}

/// Installs `config/rbac` for [`OPERATOR_NS`] and writes a kubeconfig at `path` that
/// authenticates as its ServiceAccount with a fresh TokenRequest token. Runs as the admin
/// of `$KUBECONFIG`, which stays the test's own identity.
pub async fn operator_kubeconfig(path: &Path) {
    let client =
        Client::try_default().await.expect("KUBECONFIG must point at the local control plane (make cluster-up)");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NS}});
    namespaces
        .patch(OPERATOR_NS, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&ns))
        .await
        .unwrap_or_else(|e| panic!("creating namespace {OPERATOR_NS}: {e}"));
    let docs: Vec<Value> = rbac_documents().into_iter().map(|d| in_namespace(d, OPERATOR_NS)).collect();
    assert!(
        docs.iter().any(|d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == SERVICE_ACCOUNT),
        "config/rbac has no ServiceAccount {SERVICE_ACCOUNT}"
    );
    for d in &docs {
        apply_doc(&client, d).await;
    }
    wait_effective(&client, &docs).await;

    let request = TokenRequest {
        spec: TokenRequestSpec {
            // Longer than any test; the apiserver may cap it, which is fine.
            expiration_seconds: Some(2 * 3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), OPERATOR_NS)
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for ServiceAccount {OPERATOR_NS}/{SERVICE_ACCOUNT}: {e}"))
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("TokenRequest for {OPERATOR_NS}/{SERVICE_ACCOUNT} returned no token"));

    // The admin kubeconfig with its users' credentials swapped for the token: same server,
    // same CA, same context names.
    let admin = kube::config::Kubeconfig::read().expect("reading $KUBECONFIG");
    let mut kc = serde_json::to_value(&admin).expect("kubeconfig as JSON");
    let users: Vec<Value> = kc["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| json!({"name": u["name"], "user": {"token": token}}))
        .collect();
    kc["users"] = json!(users);
    write_private(path, &serde_json::to_string_pretty(&kc).expect("kubeconfig JSON"));
}

async fn delete_lease(name: &str) {
    let client = Client::try_default().await.expect("KUBECONFIG must point at the local control plane");
    let leases: Api<Lease> = Api::namespaced(client, OPERATOR_NS);
    match leases.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => panic!("deleting the stale Lease {OPERATOR_NS}/{name}: {e}"),
    }
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(path.parent().expect("kubeconfig dir")).expect("create kubeconfig dir");
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    f.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming {} to {}: {e}", tmp.display(), path.display()));
}

/// Deletes what aborted earlier runs of the suite left in the cluster: namespaces of its
/// tests (`e2e-<test>-<pid>` of another pid) with their DNSEndpoints and providers, whose
/// finalizers are dropped since the DNS servers behind them are gone. Left alone, their
/// providers would be served by every operator of this run and make its tests lie (changes
/// on a restart that sends none, say). Once per process.
async fn remove_leftovers_of_earlier_runs(client: &Client) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let mine = format!("-{}", std::process::id() % 100000);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let list = namespaces.list(&Default::default()).await.unwrap_or_else(|e| panic!("listing namespaces: {e}"));
    let unfinalize = json!({"metadata": {"finalizers": null}});
    for ns in list.items {
        let Some(name) = ns.metadata.name else { continue };
        let pid = name.rsplit_once('-').map(|(_, p)| p).unwrap_or_default();
        if !name.starts_with("e2e-") || pid.parse::<u32>().is_err() || name.ends_with(&mine) {
            continue;
        }
        let eps: Api<extdns::crd::DNSEndpoint> = Api::namespaced(client.clone(), &name);
        let providers: Api<extdns::crd::DNSProvider> = Api::namespaced(client.clone(), &name);
        for ep in eps.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
            let n = ep.metadata.name.unwrap_or_default();
            let _ = eps.patch(&n, &PatchParams::default(), &Patch::Merge(&unfinalize)).await;
        }
        for p in providers.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
            let n = p.metadata.name.unwrap_or_default();
            let _ = providers.patch(&n, &PatchParams::default(), &Patch::Merge(&unfinalize)).await;
        }
        let _ = namespaces.delete(&name, &DeleteParams::default()).await;
        eprintln!("e2e: deleting namespace {name}, left by an earlier run");
        wait_for(&format!("namespace {name} of an earlier run to go"), Duration::from_secs(120), || {
            let (namespaces, name) = (namespaces.clone(), name.clone());
            async move { matches!(namespaces.get_opt(&name).await, Ok(None)).then_some(()) }
        })
        .await;
    }
}

/// Everything an operator needs before it starts: [`operator_kubeconfig`] at `kubeconfig`,
/// and `stale_lease` deleted (a lease an earlier run's operator left, which the new one would
/// otherwise wait out). Callable from synchronous code that may itself run inside a Tokio
/// runtime (`Operator::start` is called from async tests without `.await`): the work runs on
/// a thread of its own with its own runtime, and a panic there is raised again here.
pub fn prepare_operator_blocking(kubeconfig: PathBuf, stale_lease: Option<String>) {
    let res = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime for the harness")
            .block_on(async move {
                let client = Client::try_default().await.expect("KUBECONFIG must point at the local control plane");
                remove_leftovers_of_earlier_runs(&client).await;
                operator_kubeconfig(&kubeconfig).await;
                if let Some(lease) = stale_lease {
                    delete_lease(&lease).await;
                }
            })
    })
    .join();
    if let Err(panic) = res {
        std::panic::resume_unwind(panic);
    }
}

/// Waits until the apiserver grants the operator's ServiceAccount every rule of `config/rbac`
/// (as applied by [`operator_kubeconfig`]).
pub async fn wait_rbac_effective(client: &Client) {
    let docs: Vec<Value> = rbac_documents().into_iter().map(|d| in_namespace(d, OPERATOR_NS)).collect();
    wait_effective(client, &docs).await;
}

/// Time spans in which the apiserver itself denied what `config/rbac` grants (right after a
/// restart, see `harness::restart_apiserver`): refusals logged then are not the rules' fault.
static EXCUSED: Mutex<Vec<(Timestamp, Timestamp)>> = Mutex::new(Vec::new());

pub fn excuse(from: Timestamp, to: Timestamp) {
    EXCUSED.lock().unwrap_or_else(|e| e.into_inner()).push((from, to));
}

fn excused(line: &str) -> bool {
    let Some(t) = line_time(line) else { return false };
    EXCUSED.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(from, to)| *from <= t && t <= *to)
}

/// The timestamp a tracing log line starts with (text format, with or without colours).
fn line_time(line: &str) -> Option<Timestamp> {
    let plain: String = {
        let mut out = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI sequence: ESC [ ... final byte in @..~
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) && c != '[' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    plain.split_whitespace().next()?.parse().ok()
}

/// Lines of an operator log that show the apiserver refusing the operator something: its
/// RBAC is short of a rule. Lines from an excused span (see [`excuse`]) are left out.
pub fn forbidden_lines(log: &str) -> Vec<&str> {
    const VERBS: [&str; 8] = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("forbidden") || VERBS.iter().any(|v| l.contains(&format!("cannot {v} resource")))
        })
        // Not an RBAC refusal: a write into a namespace that a test's cleanup is deleting.
        .filter(|l| !l.contains("NamespaceTerminating"))
        .filter(|l| !excused(l))
        .collect()
}

#[test]
fn forbidden_lines_are_found() {
    let log = "INFO started\n\
               WARN updating the provider's finalizers failed: ApiError: dnsproviders.extdns.io \"dns\" is forbidden: User \"system:serviceaccount:extdns-e2e:extdns\" cannot patch resource \"dnsproviders\"\n\
               WARN watch error: cannot list resource \"secrets\" in API group \"\"\n\
               INFO Ready\n";
    assert_eq!(forbidden_lines(log).len(), 2);
    assert!(forbidden_lines("INFO all fine\n").is_empty());
    let terminating = "WARN applying DNSEndpoint x: \"web-service\" is forbidden: unable to create new content in namespace n because it is being terminated: Forbidden (Status { causes: [StatusCause { reason: \"NamespaceTerminating\" }] })\n";
    assert!(forbidden_lines(terminating).is_empty(), "a namespace being deleted is no RBAC refusal");
}

#[test]
fn log_lines_carry_their_time() {
    let coloured = "\u{1b}[2m2026-11-26T01:30:11.488847Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x is forbidden";
    assert_eq!(line_time(coloured), "2026-11-26T01:30:11.488847Z".parse().ok());
    assert_eq!(line_time("2026-11-26T01:30:11Z  WARN forbidden"), "2026-11-26T01:30:11Z".parse().ok());
    assert_eq!(line_time("no time here"), None);
}

#[test]
fn rbac_documents_move_into_the_namespace() {
    let docs: Vec<Value> = rbac_documents().into_iter().map(|d| in_namespace(d, "ns-x")).collect();
    for d in &docs {
        match d["kind"].as_str() {
            Some("ServiceAccount" | "Role" | "RoleBinding") => assert_eq!(d["metadata"]["namespace"], "ns-x"),
            Some("ClusterRole" | "ClusterRoleBinding") => assert!(d["metadata"].get("namespace").is_none()),
            other => panic!("unexpected kind {other:?} in config/rbac"),
        }
        for s in d["subjects"].as_array().into_iter().flatten() {
            assert_eq!(s["namespace"], "ns-x");
        }
    }
    assert!(!granted(&docs).is_empty());
}
