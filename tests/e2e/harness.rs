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
    // the suite do not collide and nothing depends on a port being free "now".
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // EXTDNS_E2E_PORT_BASE gives a run its own range when several share the machine.
    let base = std::env::var("EXTDNS_E2E_PORT_BASE")
        .ok()
        .and_then(|b| b.parse::<u16>().ok())
        .unwrap_or(20000 + (std::process::id() % 200) as u16 * 100);
    base + NEXT.fetch_add(1, Ordering::SeqCst)
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

/// The extdns binary running as a user runs it.
pub struct Operator {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Operator {
    pub fn start(test: &str) -> Operator {
        Self::start_with(test, &[])
    }

    pub fn start_with(test: &str, extra: &[&str]) -> Operator {
        Self::start_with_env(test, extra, &[])
    }

    /// With extra environment variables, e.g. its own KUBECONFIG.
    pub fn start_with_env(test: &str, extra: &[&str], env: &[(&str, &str)]) -> Operator {
        let mut op = Operator {
            child: None,
            metrics_port: free_port(),
            log: repo().join("target/e2e").join(format!("{test}.operator.log")),
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        op.spawn();
        op
    }

    /// One operator alone needs no election: unless a test asks for `--leader-elect`, it
    /// runs with `--leader-elect=false` and writes at once, also right after a restart.
    fn election_args(&self) -> Vec<String> {
        if self.args.iter().any(|a| a.starts_with("--leader-elect")) {
            Vec::new()
        } else {
            vec!["--leader-elect=false".to_string()]
        }
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
            .arg("extdns-e2e")
            .arg("--coalesce-window")
            .arg("50ms")
            .args(&self.args)
            .args(self.election_args())
            .env("RUST_LOG", "info,extdns=debug,kube=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e} (build it with `cargo build`)"));
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM is not exposed by std; the operator holds no state worth a clean exit.
            let _ = c.kill();
            let _ = c.wait();
        }
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
