//! Shared pieces of the end-to-end suite: the cluster client, the operator as a separate
//! process, per-test namespaces, DNS servers, and waiting on conditions with a deadline.

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use extdns::crd::DNSEndpoint;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    // Ports are handed out from a per-process counter offset by the PID, so parallel runs of
    // the suite rarely probe the same ones; a port something else holds (a demo, another
    // cluster, a leftover server) is skipped. Servers need UDP and TCP on it.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // EXTDNS_E2E_PORT_BASE gives a run its own range when several share the machine.
    let base = std::env::var("EXTDNS_E2E_PORT_BASE")
        .ok()
        .and_then(|b| b.parse::<u16>().ok())
        .unwrap_or(20000 + (std::process::id() % 200) as u16 * 100);
    loop {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(offset < 10000, "no free port on 127.0.0.1 in {base}..{}", base + 10000);
        let p = base + offset;
        let free = std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok();
        if free {
            return p;
        }
    }
}

pub fn port() -> u16 {
    free_port()
}

pub async fn client() -> Client {
    Client::try_default().await.expect("KUBECONFIG must point at the local control plane (make cluster-up)")
}

/// Polls `f` every 100 ms until it yields `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The extdns binary running as it does when installed with `config/default`: under the
/// shipped ServiceAccount and RBAC (see `identity.rs`) and with leader election on a Lease in
/// its namespace. A `forbidden` in its log fails the test when the operator is stopped.
pub struct Operator {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
    kubeconfig: PathBuf,
    args: Vec<String>,
    /// Environment of the operator process on top of the test's.
    env: Vec<(String, String)>,
}

/// Flags that let namespaced DNSProviders use ambient credentials, custom endpoints and the
/// embedded backend. Most tests run tenants' providers of those kinds, so the suite's
/// operator allows them unless a test starts it with [`Operator::start_strict`].
const PERMISSIVE: [&str; 3] =
    ["--namespaced-ambient-credentials", "--namespaced-custom-endpoint", "--namespaced-embedded"];

impl Operator {
    pub fn start(test: &str) -> Operator {
        Self::start_with(test, &[])
    }

    /// `extra` flags come after the harness's own; a test that sets `--leader-elect`,
    /// `--leader-election-lease` or `--identity` itself gets no default for it.
    pub fn start_with(test: &str, extra: &[&str]) -> Operator {
        let args: Vec<&str> = PERMISSIVE.iter().chain(extra).copied().collect();
        Self::start_strict(test, &args, &[])
    }

    /// With extra environment variables, e.g. its own KUBECONFIG (which then replaces the
    /// ServiceAccount's).
    pub fn start_with_env(test: &str, extra: &[&str], env: &[(&str, &str)]) -> Operator {
        let args: Vec<&str> = PERMISSIVE.iter().chain(extra).copied().collect();
        Self::start_strict(test, &args, env)
    }

    /// The operator with the shipped tenancy defaults (namespaced DNSProviders get nothing
    /// ambient), `extra` flags and `env` variables.
    pub fn start_strict(test: &str, extra: &[&str], env: &[(&str, &str)]) -> Operator {
        let dir = repo().join("target/e2e");
        let kubeconfig = dir.join(format!("{test}.kubeconfig"));
        let mut stale_lease = None;
        let mut args: Vec<String> = Vec::new();
        let has = |flag: &str| extra.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        // As config/manager/deployment.yaml runs it. One Lease per test, so a test never
        // waits out the lease of the previous test's killed operator.
        if !has("--leader-elect") {
            args.push("--leader-elect".into());
        }
        if !has("--leader-election-lease") {
            let lease = format!("e2e-{test}").to_lowercase().replace('_', "-");
            stale_lease = Some(lease.clone());
            args.extend(["--leader-election-lease".into(), lease]);
        }
        if !has("--identity") {
            // Kept across restart(), like a Pod's name across container restarts: the new
            // process renews its own lease at once.
            args.extend(["--identity".into(), format!("{test}-{}", std::process::id())]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        crate::identity::prepare_operator_blocking(kubeconfig.clone(), stale_lease);
        let log = dir.join(format!("{test}.operator.log"));
        // A log of an earlier run would be scanned for `forbidden` too.
        let _ = std::fs::remove_file(&log);
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut op = Operator { child: None, metrics_port: free_port(), log, kubeconfig, args, env };
        op.spawn();
        op
    }

    fn spawn(&mut self) {
        let bin =
            std::env::var("EXTDNS_BIN").unwrap_or_else(|_| repo().join("target/debug/extdns").display().to_string());
        std::fs::create_dir_all(self.log.parent().expect("log dir")).expect("create target/e2e");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open operator log");
        let child = Command::new(&bin)
            .arg("run")
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--operator-namespace")
            .arg(crate::identity::OPERATOR_NS)
            .arg("--coalesce-window")
            .arg("50ms")
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,extdns=debug,kube=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e} (build it with `cargo build`)"));
        self.child = Some(child);
    }

    /// Stops the process and fails the test if the apiserver refused it anything (unless
    /// the test is failing already: a second panic would abort the run).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM is not exposed by std; the operator holds no state worth a clean exit.
            let _ = c.kill();
            let _ = c.wait();
            if !std::thread::panicking() {
                self.assert_no_forbidden();
            } else {
                // The test failed already, often by waiting for what a refused call would
                // have done: say so next to its message.
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let bad = crate::identity::forbidden_lines(&log);
                if !bad.is_empty() {
                    eprintln!("the operator was refused by the apiserver under config/rbac ({}):", self.log.display());
                    for l in bad.iter().take(10) {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }

    /// Fails when the operator's log shows a request refused by RBAC: config/rbac lacks a
    /// rule the code needs (or the code makes a call it should not).
    pub fn assert_no_forbidden(&self) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let bad = crate::identity::forbidden_lines(&log);
        assert!(
            bad.is_empty(),
            "the operator was refused by the apiserver under config/rbac ({}):\n{}",
            self.log.display(),
            bad.join("\n")
        );
    }

    /// Process id of the running operator.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("operator running").id()
    }

    /// Sends a signal by name (`-STOP`, `-CONT`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.pid().to_string()]).status().expect("kill");
        assert!(ok.success(), "kill {sig} operator");
    }

    /// The exit status, if the operator has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait"))
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The operator's /metrics text, once it answers.
    pub async fn metrics(&self) -> String {
        let port = self.metrics_port;
        wait_for("the operator's /metrics endpoint", DEADLINE, || async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
        })
        .await
    }

    /// Sum of a counter's samples whose labels contain every `label_filter` entry.
    pub async fn counter(&self, name: &str, label_filter: &[&str]) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| l.starts_with(name) && label_filter.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Restarts the kube-apiserver of the tests' cluster (`e2e/cluster/restart-apiserver.sh`,
/// which follows `$KUBECONFIG`) and waits until it authorizes the operator's ServiceAccount
/// again. A 1.20 apiserver reports ready before its RBAC caches are filled and denies
/// requests until they are (newer ones gate /readyz on that): refusals operators log in
/// that span are the apiserver's, not config/rbac's, and are excused.
pub async fn restart_apiserver() {
    let from = jiff::Timestamp::now();
    let status = tokio::task::spawn_blocking(|| {
        Command::new("bash").arg(repo().join("e2e/cluster/restart-apiserver.sh")).status().expect("restart apiserver")
    })
    .await
    .expect("join");
    assert!(status.success(), "e2e/cluster/restart-apiserver.sh failed");
    crate::identity::wait_rbac_effective(&client().await).await;
    // The margin covers a refusal received just before and logged just after, and watches
    // that retried (with backoff) against caches the 1.20 authorizer was still filling.
    let to = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(15);
    crate::identity::excuse(from, to);
}

/// A namespace of one test. `cleanup` deletes it and waits until it is gone, which also
/// proves that the operator released every finalizer.
pub struct TestNs {
    pub name: String,
    client: Client,
}

impl TestNs {
    pub async fn new(client: &Client, test: &str, labels: serde_json::Value) -> TestNs {
        let name = format!("e2e-{test}-{}", std::process::id() % 100000);
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("namespace");
        // A leftover from an aborted earlier run would make the test lie: wait it out.
        let _ = api.delete(&name, &DeleteParams::default()).await;
        wait_for("a stale namespace to go", Duration::from_secs(120), || {
            let api = api.clone();
            let name = name.clone();
            async move { matches!(api.get_opt(&name).await, Ok(None)).then_some(()) }
        })
        .await;
        api.create(&PostParams::default(), &ns).await.expect("create namespace");
        TestNs { name, client: client.clone() }
    }

    pub async fn cleanup(&self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let _ = api.delete(&self.name, &DeleteParams::default()).await;
        let name = self.name.clone();
        wait_for(&format!("namespace {name} to be deleted (finalizers released)"), Duration::from_secs(120), || {
            let api = api.clone();
            let name = name.clone();
            async move { matches!(api.get_opt(&name).await, Ok(None)).then_some(()) }
        })
        .await;
    }
}

/// Server-side apply of any object as JSON, like `kubectl apply --server-side`.
pub async fn apply<K>(api: &Api<K>, name: &str, obj: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply("e2e-test").force(), &Patch::Apply(&obj))
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

pub fn condition<'a>(
    ep: &'a DNSEndpoint,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    ep.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until the DNSEndpoint's condition `type_` has `status` for its current generation.
pub async fn wait_condition(api: &Api<DNSEndpoint>, name: &str, type_: &str, status: &str) -> DNSEndpoint {
    wait_for(&format!("DNSEndpoint {name} {type_}={status}"), DEADLINE, || {
        let api = api.clone();
        async move {
            let ep = api.get_opt(name).await.ok()??;
            let c = condition(&ep, type_)?;
            (c.status == status && c.observed_generation == ep.metadata.generation).then_some(ep)
        }
    })
    .await
}

/// `dig +short` answers for one name and type.
pub fn dig(port: u16, name: &str, rtype: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args(["+short", "+time=1", "+tries=2", "@127.0.0.1", "-p", &port.to_string(), name, rtype])
        .output()
        .expect("dig is installed (e2e/dns/install.sh)");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .collect();
    v.sort();
    v
}

/// Waits until `dig` answers exactly `want` (sorted).
pub async fn wait_dig(port: u16, name: &str, rtype: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let what = format!("dig @127.0.0.1 -p {port} {name} {rtype} to answer {want:?}");
    wait_for(&what, DEADLINE, || {
        let want = want.clone();
        async move { (dig(port, name, rtype) == want).then_some(()) }
    })
    .await
}

/// An embedded DNSProvider serving `zone` on 127.0.0.1:`port` in namespace `ns`.
pub fn embedded_provider(name: &str, zone: &str, port: u16) -> serde_json::Value {
    json!({
        "apiVersion": "extdns.io/v1alpha1",
        "kind": "DNSProvider",
        "metadata": {"name": name},
        "spec": {
            "embedded": {"zones": [zone], "listen": format!("127.0.0.1:{port}")},
            "domains": {"include": [zone]},
            "policy": "sync",
            "registry": {"txt": {"ownerId": "e2e"}},
            "defaultTTL": 30
        }
    })
}

pub fn dnsendpoint(name: &str, endpoints: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "extdns.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {"name": name},
        "spec": {"endpoints": endpoints}
    })
}

pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(&format!("{name} to be deleted"), DEADLINE, || {
        let api = api.clone();
        async move { matches!(api.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await
}

/// The common setup of a test against the embedded provider: its own namespace, an operator,
/// and a DNSProvider serving `zone` on a port of its own.
pub struct EmbeddedEnv {
    pub client: Client,
    pub ns: TestNs,
    pub port: u16,
    pub op: Operator,
}

impl EmbeddedEnv {
    pub async fn start(test: &str, zone: &str) -> EmbeddedEnv {
        let client = client().await;
        let ns = TestNs::new(&client, test, json!({})).await;
        let port = port();
        let op = Operator::start(test);
        let providers: Api<extdns::crd::DNSProvider> = Api::namespaced(client.clone(), &ns.name);
        apply(&providers, "dns", embedded_provider("dns", zone, port)).await;
        EmbeddedEnv { client, ns, port, op }
    }
}
