//! `make bench`: measured figures for extdns against a real control plane, BIND9 and the
//! embedded DNS server. Prints a table with the targets next to the figures and writes
//! `target/bench/results.json`. Reports misses, never fails on them.
//!
//! Needs: KUBECONFIG of a cluster with the CRDs installed (the Makefile brings up a separate
//! bench cluster), a release `extdns` binary (`--extdns-bin` / `EXTDNS_BIN`), `dig` and
//! `nsupdate` (e2e/dns/install.sh), and BIND via e2e/dns/server.sh.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use extdns::crd::{DNSEndpoint, DNSProvider};
use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TSIG_NAME: &str = "externaldns-key";
const TSIG_SECRET: &str = "e2a7m/0u+lZirz9VYyx2fdOgOLl0EY5tB4dHTDFRiLk=";

#[derive(Parser, Debug, Clone)]
#[command(about = "extdns benchmark: latency, scale, steady state, restart, nsupdate baseline")]
struct Args {
    /// Latency: sequential DNSEndpoint creations per backend (2 samples each: the creation
    /// and a change of its target). 200 make 400 samples, so that p99 is not just the slowest
    /// sample of the phase.
    #[arg(long, env = "BENCH_K", default_value_t = 200)]
    k: usize,
    /// Scale: DNSEndpoints (one A record each).
    #[arg(long, env = "BENCH_N", default_value_t = 1000)]
    n: usize,
    /// Steady state: idle seconds after convergence.
    #[arg(long, env = "BENCH_IDLE", default_value_t = 30)]
    idle: u64,
    /// Scale: concurrent creations against the apiserver.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,
    /// Baseline: records per nsupdate message.
    #[arg(long, env = "BENCH_NSUPDATE_BATCH", default_value_t = 500)]
    nsupdate_batch: usize,
    /// rfc2136.batchSize of the benchmarked DNSProvider (unset: the provider default).
    #[arg(long, env = "BENCH_RFC2136_BATCH")]
    rfc2136_batch: Option<u32>,
    /// First of 5 consecutive local ports (BIND x3, embedded DNS, operator metrics).
    #[arg(long, env = "BENCH_PORT_BASE", default_value_t = 24500)]
    port_base: u16,
    /// Operator coalesce window (`--coalesce-window`); unset: the operator's default, as
    /// a user runs it.
    #[arg(long, env = "BENCH_COALESCE")]
    coalesce: Option<String>,
    /// The extdns binary (release).
    #[arg(long, env = "EXTDNS_BIN")]
    extdns_bin: Option<PathBuf>,
    /// Results directory (results.json, logs, BIND dirs).
    #[arg(long, env = "BENCH_OUT")]
    out: Option<PathBuf>,
    /// Cap on any single wait, seconds.
    #[arg(long, env = "BENCH_TIMEOUT", default_value_t = 900)]
    timeout: u64,
    /// Large scale: DNSEndpoints served by one embedded provider (`--only large`).
    #[arg(long, env = "BENCH_N_LARGE", default_value_t = 100_000)]
    n_large: usize,
    /// Noisy neighbour: DNSEndpoints queued on each of the blackholed and throttled providers.
    #[arg(long, env = "BENCH_NOISE_N", default_value_t = 200)]
    noise_n: usize,
    /// First of 4 consecutive local ports for the extra servers (blackhole, throttled
    /// embedded, large embedded, large-run metrics).
    #[arg(long, env = "BENCH_EXTRA_PORT_BASE", default_value_t = 34000)]
    extra_port_base: u16,
    /// `main`: latency, scale, steady state, restart, latency at scale, noisy neighbour,
    /// baseline. `large`: BENCH_N_LARGE DNSEndpoints on the embedded provider, merged into
    /// results.json; run it on a fresh cluster (`make bench` does).
    #[arg(long, env = "BENCH_ONLY", default_value = "main")]
    only: String,
    /// Record a call-graph CPU profile of the operator (`perf record --call-graph dwarf`)
    /// during the latency-at-scale changes, into target/bench/perf-<backend>.data, and print
    /// its top entries: where the CPU per change goes.
    #[arg(long, env = "BENCH_PROFILE")]
    profile: bool,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------
// Processes

struct Operator {
    child: Option<Child>,
    bin: PathBuf,
    metrics_port: u16,
    coalesce: Option<String>,
    log: PathBuf,
    extra: Vec<String>,
}

impl Operator {
    /// `extra`: flags after the benchmark's own.
    fn start(bin: PathBuf, metrics_port: u16, coalesce: Option<&str>, log: PathBuf, extra: &[&str]) -> Operator {
        let (coalesce, extra) = (coalesce.map(str::to_string), extra.iter().map(|a| a.to_string()).collect());
        let mut op = Operator { child: None, bin, metrics_port, coalesce, log, extra };
        op.spawn();
        op
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("operator log");
        let child = Command::new(&self.bin)
            .arg("run")
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--operator-namespace")
            .arg("extdns-bench")
            .args(self.coalesce.iter().flat_map(|c| ["--coalesce-window", c.as_str()]))
            // One process: no election, so a restart measures the operator, not a lease wait.
            .arg("--leader-elect=false")
            // The benchmark's providers are namespaced DNSProviders with embedded servers and
            // RFC2136 servers on loopback: the tenancy flags a single-tenant install sets.
            .args(["--namespaced-embedded", "--namespaced-custom-endpoint"])
            .args(&self.extra)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("operator running").id()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    async fn metrics(&self) -> Option<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    }

    /// Sum of a counter's samples whose line contains every filter; None when /metrics is down.
    async fn counter(&self, name: &str, filters: &[&str]) -> Option<u64> {
        let text = self.metrics().await?;
        Some(sum_counter(&text, name, filters))
    }

    /// Like `counter`, retrying until /metrics answers.
    async fn counter_wait(&self, name: &str, filters: &[&str]) -> u64 {
        for _ in 0..600 {
            if let Some(v) = self.counter(name, filters).await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("operator /metrics on port {} did not answer (log: {})", self.metrics_port, self.log.display());
    }

    fn cpu_seconds(&self) -> f64 {
        proc_cpu_seconds(self.pid())
    }

    fn status_kib(&self, key: &str) -> u64 {
        proc_status_kib(self.pid(), key)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `perf record` of one process, stopped and summarised by `finish`.
struct Profile {
    child: std::process::Child,
    data: std::path::PathBuf,
}

impl Profile {
    fn start(pid: u32, tag: &str) -> Profile {
        let data = std::path::PathBuf::from(format!("target/bench/perf-{tag}.data"));
        let child = Command::new("perf")
            .args(["record", "--call-graph", "dwarf,16384", "-F", "199", "-g", "-o"])
            .arg(&data)
            .args(["-p", &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("BENCH_PROFILE needs perf (Debian: linux-perf)");
        // perf needs a moment to attach; changes before that would be missing from the profile.
        std::thread::sleep(Duration::from_secs(1));
        Profile { child, data }
    }

    fn finish(mut self) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        for (title, extra) in [("self time", &["--no-children"][..]), ("with callees", &["--children"][..])] {
            let out = Command::new("perf")
                .args(["report", "--stdio", "--no-demangle", "-g", "none", "--percent-limit", "1.5", "-i"])
                .arg(&self.data)
                .args(extra)
                .output();
            let Ok(out) = out else { return };
            println!("  profile ({title}) of {}:", self.data.display());
            for line in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .take(25)
            {
                println!("    {}", line.trim_end());
            }
        }
    }
}

fn sum_counter(text: &str, name: &str, filters: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clk_tck()
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A BIND9 started by e2e/dns/server.sh, killed on drop.
struct Bind {
    child: Child,
    port: u16,
}

impl Bind {
    fn start(out: &Path, name: &str, port: u16, zone: &str) -> Bind {
        let dir = out.join(format!("{name}.bind"));
        let log = std::fs::File::create(out.join(format!("{name}.bind.log"))).expect("bind log");
        let child = Command::new("bash")
            .arg(repo().join("e2e/dns/server.sh"))
            .args(["bind", &dir.display().to_string(), &port.to_string(), zone])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start BIND via e2e/dns/server.sh");
        let ok = Command::new("bash")
            .arg(repo().join("e2e/dns/wait.sh"))
            .args([&port.to_string(), zone, &child.id().to_string()])
            .status()
            .expect("wait.sh");
        assert!(ok.success(), "BIND did not come up for {zone} on port {port}");
        Bind { child, port }
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// DNS

/// The A records of `name` on the server at `port`: the question `dig +short` asks, asked
/// in-process, so that a sample every 2 ms costs no process start (dig's own start-up, a
/// few ms, would otherwise be part of every latency sample).
async fn dig_a(port: u16, name: &str) -> Vec<String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let qname = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).expect("a DNS name");
    let mut q = Message::query();
    q.add_query(Query::query(qname, RecordType::A));
    let id = q.metadata.id;
    let packet = q.to_vec().expect("a DNS query encodes");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind a UDP socket");
    sock.send_to(&packet, ("127.0.0.1", port)).await.expect("send a DNS query");
    let mut buf = vec![0u8; 65535];
    let answer = async {
        loop {
            let (n, _) = sock.recv_from(&mut buf).await.ok()?;
            match Message::from_vec(&buf[..n]) {
                Ok(m) if m.metadata.id == id => return Some(m),
                _ => continue,
            }
        }
    };
    // As `dig +time=1 +tries=1`: no answer within a second is no address.
    let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), answer).await else { return Vec::new() };
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// A records in an AXFR of `zone`, without the zone's own ns1.
async fn axfr_a_count(port: u16, zone: &str) -> usize {
    let out = tokio::process::Command::new("dig")
        .args([
            "-y",
            &format!("hmac-sha256:{TSIG_NAME}:{TSIG_SECRET}"),
            "+time=5",
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            zone,
            "AXFR",
        ])
        .output()
        .await
        .expect("dig");
    let ns1 = format!("ns1.{zone}.");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 5 && f[3] == "A" && f[0] != ns1
        })
        .count()
}

async fn wait_axfr(port: u16, zone: &str, n: usize, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if axfr_a_count(port, zone).await >= n {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes

async fn create_ns(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    api.create(&PostParams::default(), &ns).await.unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

async fn apply<K>(api: &Api<K>, name: &str, obj: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply("extdns-bench").force(), &Patch::Apply(&obj))
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

async fn rfc2136_provider(client: &Client, ns: &str, name: &str, zone: &str, port: u16, batch: Option<u32>) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    apply(
        &secrets,
        "tsig",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tsig"}, "stringData": {"secret": TSIG_SECRET}}),
    )
    .await;
    let mut rfc = json!({
        "host": "127.0.0.1", "port": port, "zones": [zone], "timeout": "5s",
        "tsig": {"keyName": TSIG_NAME, "secretRef": {"name": "tsig", "key": "secret"}}
    });
    if let Some(b) = batch {
        rfc["batchSize"] = json!(b);
    }
    apply(
        &Api::<DNSProvider>::namespaced(client.clone(), ns),
        name,
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider",
            "metadata": {"name": name},
            "spec": {
                "rfc2136": rfc,
                "domains": {"include": [zone]},
                "policy": "sync",
                "registry": {"txt": {"ownerId": "bench"}},
                "defaultTTL": 60
            }
        }),
    )
    .await;
}

async fn embedded_provider(client: &Client, ns: &str, name: &str, zone: &str, port: u16, rate_limit: Option<Value>) {
    let mut spec = json!({
        "embedded": {"zones": [zone], "listen": format!("127.0.0.1:{port}")},
        "domains": {"include": [zone]},
        "policy": "sync",
        "registry": {"txt": {"ownerId": "bench"}},
        "defaultTTL": 30
    });
    if let Some(rl) = rate_limit {
        spec["rateLimit"] = rl;
    }
    apply(
        &Api::<DNSProvider>::namespaced(client.clone(), ns),
        name,
        json!({
            "apiVersion": "extdns.io/v1alpha1", "kind": "DNSProvider",
            "metadata": {"name": name},
            "spec": spec
        }),
    )
    .await;
}

fn endpoint(name: &str, dns_name: &str, ip: &str) -> DNSEndpoint {
    serde_json::from_value(json!({
        "apiVersion": "extdns.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {"name": name},
        "spec": {"endpoints": [{"dnsName": dns_name, "recordType": "A", "targets": [ip]}]}
    }))
    .expect("DNSEndpoint")
}

fn ip_of(i: usize, third: u8) -> String {
    format!("10.{third}.{}.{}", i / 250, i % 250 + 1)
}

/// (total, Ready=True for the current generation).
async fn count_ready(api: &Api<DNSEndpoint>) -> (usize, usize) {
    let Ok(list) = api.list(&ListParams::default()).await else { return (0, 0) };
    (list.items.len(), list.items.iter().filter(|ep| is_ready(ep)).count())
}

async fn wait_all_ready(api: &Api<DNSEndpoint>, n: usize, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        let (total, ready) = count_ready(api).await;
        if total >= n && ready >= n {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Creates `n` DNSEndpoints `{prefix}{i}` → `{prefix}{i}.{zone}` A `ip(i)`, `concurrency` at
/// a time, retrying each create (the apiserver sheds load under this burst); the time taken.
async fn create_many(
    api: &Api<DNSEndpoint>,
    prefix: &str,
    zone: &str,
    range: std::ops::Range<usize>,
    ip: fn(usize) -> String,
    concurrency: usize,
) -> Duration {
    let t0 = Instant::now();
    stream::iter(range)
        .map(|i| {
            let api = api.clone();
            async move {
                let ep = endpoint(&format!("{prefix}{i}"), &format!("{prefix}{i}.{zone}"), &ip(i));
                let mut tries = 0;
                while let Err(e) = api.create(&PostParams::default(), &ep).await {
                    if matches!(&e, kube::Error::Api(s) if s.code == 409) {
                        break;
                    }
                    tries += 1;
                    assert!(tries < 50, "create {prefix}{i}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<()>>()
        .await;
    t0.elapsed()
}

/// Polls `dig` until `name` answers exactly `ip`.
async fn wait_dig(port: u16, name: &str, ip: &str, timeout: Duration) {
    let start = Instant::now();
    while dig_a(port, name).await != [ip.to_string()] {
        assert!(start.elapsed() < timeout, "{name} never answered {ip} on port {port}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Change→`dig` samples of one backend: `k` sequential single-record changes, each the
/// creation of a new DNSEndpoint followed by a change of its target, every write timed from
/// the apiserver's answer until `dig` returns the new address; operator CPU over the lot.
struct ChangeRun {
    create_ms: Vec<f64>,
    update_ms: Vec<f64>,
    cpu_ms_per_change: f64,
}

impl ChangeRun {
    fn sorted(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.create_ms.iter().chain(&self.update_ms).copied().collect();
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        v
    }

    fn p(&self, q: f64) -> f64 {
        pct(&self.sorted(), q)
    }

    fn json(&self) -> Value {
        let v = self.sorted();
        json!({
            "changes": v.len(), "create_ms": self.create_ms, "update_ms": self.update_ms,
            "p50_ms": pct(&v, 0.5), "p90_ms": pct(&v, 0.9), "p99_ms": pct(&v, 0.99),
            "max_ms": v.last().copied(), "cpu_ms_per_change": self.cpu_ms_per_change,
        })
    }

    fn line(&self) -> String {
        let v = self.sorted();
        format!(
            "p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} changes, operator CPU {:.1} ms/change",
            pct(&v, 0.5),
            pct(&v, 0.9),
            pct(&v, 0.99),
            v.last().copied().unwrap_or(f64::NAN),
            v.len(),
            self.cpu_ms_per_change
        )
    }
}

#[allow(clippy::too_many_arguments)]
async fn change_latency(
    op: &Operator,
    eps: &Api<DNSEndpoint>,
    tag: &str,
    zone: &str,
    port: u16,
    k: usize,
    third: u8,
    timeout: Duration,
) -> ChangeRun {
    let (mut create_ms, mut update_ms) = (Vec::new(), Vec::new());
    let cpu0 = op.cpu_seconds();
    for i in 0..k {
        let obj = format!("{tag}{i}");
        let name = format!("{obj}.{zone}");
        let ip = ip_of(i, third);
        eps.create(&PostParams::default(), &endpoint(&obj, &name, &ip)).await.expect("create");
        let t0 = Instant::now();
        wait_dig(port, &name, &ip, timeout).await;
        create_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        let ip2 = ip_of(i, third + 100);
        let patch = json!({"spec": {"endpoints": [{"dnsName": name, "recordType": "A", "targets": [ip2]}]}});
        eps.patch(&obj, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("change target");
        let t0 = Instant::now();
        wait_dig(port, &name, &ip2, timeout).await;
        update_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let changes = (create_ms.len() + update_ms.len()).max(1) as f64;
    ChangeRun { create_ms, update_ms, cpu_ms_per_change: (op.cpu_seconds() - cpu0) * 1000.0 / changes }
}

/// A DNS server that never answers: UDP datagrams are read and dropped, TCP connections are
/// accepted and read but never replied to. Lives as long as the benchmark.
async fn blackhole(port: u16) {
    let udp = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await.expect("bind blackhole UDP");
    let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind blackhole TCP");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while udp.recv_from(&mut buf).await.is_ok() {}
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
}

/// How many of `names` the server answers with an A record: one `dig -f` batch, so a
/// sample of a thousand names costs one process, not a thousand.
async fn dig_batch_answered(out: &Path, port: u16, names: &[String]) -> usize {
    let file = out.join(format!("dig-batch-{port}.txt"));
    let batch: String =
        names.iter().map(|n| format!("@127.0.0.1 -p {port} +noall +answer +time=1 +tries=2 {n} A\n")).collect();
    std::fs::write(&file, batch).expect("write dig batch file");
    let out = tokio::process::Command::new("dig").arg("-f").arg(&file).output().await.expect("dig");
    let answered: std::collections::HashSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5 && f[3] == "A").then(|| f[0].trim_end_matches('.').to_string())
        })
        .collect();
    names.iter().filter(|n| answered.contains(n.trim_end_matches('.'))).count()
}

/// Like `count_ready`, in pages: a list of 100,000 objects in one response costs the
/// apiserver (and this process) hundreds of MiB.
async fn count_ready_paged(api: &Api<DNSEndpoint>) -> (usize, usize) {
    let (mut total, mut ready) = (0, 0);
    let mut lp = ListParams::default().limit(5000);
    loop {
        let Ok(list) = api.list(&lp).await else { return (total, ready) };
        total += list.items.len();
        ready += list.items.iter().filter(|ep| is_ready(ep)).count();
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return (total, ready),
        }
    }
}

fn is_ready(ep: &DNSEndpoint) -> bool {
    let v = serde_json::to_value(ep).unwrap_or(Value::Null);
    let gen = &v["metadata"]["generation"];
    v["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True" && &c["observedGeneration"] == gen)
    })
}

/// A distinct address for each of up to 15 million DNSEndpoints.
fn ip_large(i: usize) -> String {
    format!("10.{}.{}.{}", 20 + i / 62_500, (i / 250) % 250, i % 250 + 1)
}

// ---------------------------------------------------------------------------------------
// Figures

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Row {
    metric: String,
    value: String,
    target: String,
    ok: Option<bool>,
}

fn row(rows: &mut Vec<Row>, metric: impl Into<String>, value: impl Into<String>, target: &str, ok: Option<bool>) {
    rows.push(Row { metric: metric.into(), value: value.into(), target: target.into(), ok });
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn fmt_s(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2} s")).unwrap_or_else(|| "TIMEOUT".into())
}

// ---------------------------------------------------------------------------------------

/// What the phases of the main benchmark share.
struct Bench<'a> {
    args: &'a Args,
    client: Client,
    out: PathBuf,
    op: Operator,
    /// This run's id: namespaces and counters are scoped to it.
    run: u32,
    timeout: Duration,
    /// results.json as it fills.
    res: Value,
    /// The table: rows of the first phases, then those measured later.
    rows: Vec<Row>,
    rows_later: Vec<Row>,
}

/// Phase 1's setup, which later phases measure again.
struct LatencySetup {
    eps: Api<DNSEndpoint>,
    backends: [(&'static str, &'static str, u16); 2],
    _bind: Bind,
    empty: Vec<ChangeRun>,
}

/// Phase 2's figures and the objects phase 4 restarts with.
struct Scale {
    _bind: Bind,
    seps: Api<DNSEndpoint>,
    pid: String,
    served_s: Option<f64>,
    ready_s: Option<f64>,
    rate: Option<f64>,
    apply_calls: u64,
    changes: u64,
    cpu: f64,
    hwm_mib: f64,
}

struct Steady {
    calls: u64,
    cpu: f64,
    rss_mib: f64,
}

struct Restart {
    total_s: Option<f64>,
    changes: u64,
    embedded_changes: u64,
    hwm_mib: f64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let out = args.out.clone().unwrap_or_else(|| repo().join("target/bench"));
    std::fs::create_dir_all(&out).expect("create results dir");
    let out = out.canonicalize().expect("results dir");
    let bin = args.extdns_bin.clone().unwrap_or_else(|| repo().join("target/release/extdns"));
    assert!(bin.exists(), "{} missing: cargo build --release --bin extdns", bin.display());
    println!("extdns bench: {}", chrono_free_now());
    println!(
        "  K={} N={} idle={}s concurrency={} nsupdate-batch={} rfc2136-batch={} coalesce={} bin={}",
        args.k,
        args.n,
        args.idle,
        args.concurrency,
        args.nsupdate_batch,
        args.rfc2136_batch.map(|b| b.to_string()).unwrap_or_else(|| "default".into()),
        args.coalesce.as_deref().unwrap_or("default"),
        bin.display()
    );
    println!("  KUBECONFIG={}", std::env::var("KUBECONFIG").unwrap_or_default());
    let client = Client::try_default().await.expect("KUBECONFIG must point at the bench cluster");
    if args.only == "large" {
        large(&args, &client, &out, &bin).await;
        return;
    }
    assert_eq!(args.only, "main", "BENCH_ONLY is main or large");
    let p = args.port_base;
    let (lat_bind_port, scale_bind_port, base_bind_port, emb_port, metrics_port) = (p, p + 1, p + 2, p + 3, p + 4);
    let op = Operator::start(bin.clone(), metrics_port, args.coalesce.as_deref(), out.join("operator.log"), &[]);
    op.counter_wait("extdns_sync_passes_total", &[]).await;
    let res = json!({"params": {
        "k": args.k, "n": args.n, "idle_s": args.idle, "concurrency": args.concurrency,
        "nsupdate_batch": args.nsupdate_batch, "rfc2136_batch": args.rfc2136_batch, "coalesce": args.coalesce,
    }});
    let mut b = Bench {
        args: &args,
        client,
        out,
        op,
        run: std::process::id(),
        timeout: Duration::from_secs(args.timeout),
        res,
        rows: Vec::new(),
        rows_later: Vec::new(),
    };
    let lat = b.latency_empty(lat_bind_port, emb_port).await;
    let scale = b.scale(scale_bind_port).await;
    let steady = b.steady().await;
    let restart = b.restart(&scale).await;
    let lat_scale = b.latency_at_scale(&lat).await;
    b.noisy_neighbour(&lat, &lat_scale).await;
    b.op.stop();
    let base_s = b.baseline(base_bind_port).await;
    b.table(&scale, &steady, &restart, base_s);
}

impl Bench<'_> {
    /// Counters are scoped to this run's providers: leftovers of an earlier run on the same
    /// cluster must not count.
    fn run_filter(&self) -> String {
        format!("-{}/", self.run)
    }

    /// Phase 1: sequential changes per backend on an empty cluster.
    async fn latency_empty(&mut self, bind_port: u16, emb_port: u16) -> LatencySetup {
        let (args, client) = (self.args, &self.client);
        println!(
            "\n[1/7] latency, empty cluster: {} sequential changes per backend (create, then change the target), one DNS query (as dig) every 2 ms",
            args.k
        );
        let ns = format!("bench-lat-{}", self.run);
        create_ns(client, &ns).await;
        let (bind_zone, emb_zone) = ("latbind.bench.test", "latemb.bench.test");
        let bind = Bind::start(&self.out, "latency", bind_port, bind_zone);
        rfc2136_provider(client, &ns, "bind", bind_zone, bind.port, args.rfc2136_batch).await;
        embedded_provider(client, &ns, "emb", emb_zone, emb_port, None).await;
        let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns);
        let backends = [("embedded", emb_zone, emb_port), ("rfc2136", bind_zone, bind.port)];
        // Warm-up: both providers have listed their zone and answer.
        for (b, zone, port) in backends {
            let name = format!("warm.{zone}");
            eps.create(&PostParams::default(), &endpoint(&format!("warm-{b}"), &name, "10.0.0.1"))
                .await
                .expect("create");
            wait_dig(port, &name, "10.0.0.1", Duration::from_secs(120)).await;
        }
        let mut empty = Vec::new();
        for (b, zone, port) in backends {
            let r = change_latency(&self.op, &eps, &format!("e-{b}-"), zone, port, args.k, 1, self.timeout).await;
            println!("  {b}: {}", r.line());
            self.res["latency"][b] = r.json();
            let (p50, p99) = (r.p(0.5), r.p(0.99));
            let rows = &mut self.rows;
            row(rows, format!("latency {b} p50"), format!("{p50:.0} ms"), "< 30 ms", Some(p50 < 30.0));
            row(rows, format!("latency {b} p90"), format!("{:.0} ms", r.p(0.9)), "", None);
            row(rows, format!("latency {b} p99"), format!("{p99:.0} ms"), "< 1000 ms", Some(p99 < 1000.0));
            row(rows, format!("latency {b} max"), format!("{:.0} ms", r.p(1.0)), "", None);
            row(rows, format!("latency {b} operator CPU/change"), format!("{:.1} ms", r.cpu_ms_per_change), "", None);
            empty.push(r);
        }
        LatencySetup { eps, backends, _bind: bind, empty }
    }

    /// Phase 2: N DNSEndpoints written at once, served by RFC2136 to BIND.
    async fn scale(&mut self, bind_port: u16) -> Scale {
        let (args, client, op, n) = (self.args, &self.client, &self.op, self.args.n);
        println!("\n[2/7] scale: {n} DNSEndpoints (one A each), concurrency {}, RFC2136 to BIND", args.concurrency);
        let ns = format!("bench-scale-{}", self.run);
        let pid = format!("provider=\"DNSProvider/{ns}/bind\"");
        create_ns(client, &ns).await;
        let zone = "scale.bench.test";
        let bind = Bind::start(&self.out, "scale", bind_port, zone);
        rfc2136_provider(client, &ns, "bind", zone, bind.port, args.rfc2136_batch).await;
        // The provider has listed its (empty) zone before the clock starts.
        let start = Instant::now();
        while op.counter_wait("extdns_provider_calls_total", &[&pid, "operation=\"records\"", "outcome=\"ok\""]).await
            == 0
        {
            assert!(start.elapsed() < Duration::from_secs(120), "scale provider never listed its zone");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let apply_before = op.counter_wait("extdns_provider_calls_total", &[&pid, "operation=\"apply\""]).await;
        let changes_before = op.counter_wait("extdns_provider_changes_total", &[&pid]).await;
        let cpu_before = op.cpu_seconds();
        let status_kind = "kind=\"DNSEndpoint\"";
        let status_before = op.counter_wait("extdns_status_writes_total", &[status_kind]).await;
        let seps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns);
        let t0 = Instant::now();
        let writes = async {
            create_many(&seps, "r", zone, 0..n, |i| ip_of(i, 2), args.concurrency).await;
            t0.elapsed()
        };
        let (written, served) = tokio::join!(writes, wait_axfr(bind.port, zone, n, self.timeout));
        println!(
            "  all {n} written in {:.2} s ({:.0} writes/s)",
            written.as_secs_f64(),
            n as f64 / written.as_secs_f64()
        );
        let served_s = secs(served);
        let ready_s = secs(wait_all_ready(&seps, n, self.timeout).await.map(|_| t0.elapsed()));
        let apply_calls =
            op.counter_wait("extdns_provider_calls_total", &[&pid, "operation=\"apply\""]).await - apply_before;
        let changes = op.counter_wait("extdns_provider_changes_total", &[&pid]).await - changes_before;
        let cpu = op.cpu_seconds() - cpu_before;
        let status_writes = op.counter_wait("extdns_status_writes_total", &[status_kind]).await - status_before;
        let hwm_mib = op.status_kib("VmHWM") as f64 / 1024.0;
        let rate = served_s.map(|s| n as f64 / s);
        println!(
            "  served in {} ({} records/s), all Ready at {}, apply calls {apply_calls}, changes {changes}, DNSEndpoint status writes {status_writes}, CPU {cpu:.2} s, peak RSS {hwm_mib:.1} MiB",
            fmt_s(served_s),
            rate.map(|r| format!("{r:.0}")).unwrap_or("-".into()),
            fmt_s(ready_s)
        );
        self.res["scale"] = json!({
            "n": n, "written_s": written.as_secs_f64(), "served_s": served_s, "all_ready_s": ready_s,
            "records_per_s": rate, "apply_calls": apply_calls, "changes": changes, "status_writes": status_writes,
            "cpu_s": cpu, "peak_rss_mib": hwm_mib,
        });
        Scale { _bind: bind, seps, pid, served_s, ready_s, rate, apply_calls, changes, cpu, hwm_mib }
    }

    /// Phase 3: what an idle operator costs once everything converged.
    async fn steady(&mut self) -> Steady {
        let (op, idle, run_f) = (&self.op, self.args.idle, self.run_filter());
        println!("\n[3/7] steady state: idle {idle} s after convergence");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let calls_before = op.counter_wait("extdns_provider_calls_total", &[&run_f]).await;
        let passes_before = op.counter_wait("extdns_sync_passes_total", &[]).await;
        let cpu_before = op.cpu_seconds();
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let calls = op.counter_wait("extdns_provider_calls_total", &[&run_f]).await - calls_before;
        let passes = op.counter_wait("extdns_sync_passes_total", &[]).await - passes_before;
        let cpu = op.cpu_seconds() - cpu_before;
        let rss_mib = op.status_kib("VmRSS") as f64 / 1024.0;
        println!("  provider calls {calls}, sync passes {passes}, CPU {cpu:.3} s, RSS {rss_mib:.1} MiB");
        self.res["steady"] =
            json!({"idle_s": idle, "provider_calls": calls, "sync_passes": passes, "cpu_s": cpu, "rss_mib": rss_mib});
        Steady { calls, cpu, rss_mib }
    }

    /// Phase 4: the operator killed and started again with the records in place.
    async fn restart(&mut self, scale: &Scale) -> Restart {
        let (n, timeout, run_f) = (self.args.n, self.timeout, self.run_filter());
        println!("\n[4/7] restart: operator killed and started again with {n} records in place");
        self.op.restart();
        let op = &self.op;
        let t0 = Instant::now();
        let mut listed = None;
        while listed.is_none() && t0.elapsed() <= timeout {
            let v = op
                .counter("extdns_provider_calls_total", &[&scale.pid, "operation=\"records\"", "outcome=\"ok\""])
                .await;
            if v.unwrap_or(0) > 0 {
                listed = Some(t0.elapsed());
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let ready_after = wait_all_ready(&scale.seps, n, timeout).await.map(|_| t0.elapsed());
        let total_s = match (listed, ready_after) {
            (Some(a), Some(b)) => Some(a.max(b).as_secs_f64()),
            _ => None,
        };
        // Let any late pass show up before counting.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let metrics = op.metrics().await.unwrap_or_default();
        // The embedded provider keeps its zone in the operator's memory: a restart rebuilds
        // it, so only changes to the RFC2136 (BIND) providers count against "0 changes on
        // restart".
        let all = sum_counter(&metrics, "extdns_provider_changes_total", &[&run_f]);
        let embedded_changes = sum_counter(&metrics, "extdns_provider_changes_total", &[&run_f, "/emb\""]);
        let changes = all.saturating_sub(embedded_changes);
        let apply = sum_counter(&metrics, "extdns_provider_calls_total", &[&run_f, "operation=\"apply\""]);
        let status = sum_counter(&metrics, "extdns_status_writes_total", &[]);
        let passes = sum_counter(&metrics, "extdns_sync_passes_total", &[]);
        let (cpu, hwm_mib) = (op.cpu_seconds(), op.status_kib("VmHWM") as f64 / 1024.0);
        println!(
            "  zone listed at {}, all Ready at {}, changes sent to BIND {changes} (+{embedded_changes} rebuilding the embedded in-memory zone), apply calls {apply}, status writes {status}, CPU {cpu:.2} s, peak RSS {hwm_mib:.1} MiB",
            fmt_s(secs(listed)),
            fmt_s(secs(ready_after))
        );
        self.res["restart"] = json!({
            "zone_listed_s": secs(listed), "all_ready_s": secs(ready_after), "restart_s": total_s,
            "changes": changes, "embedded_rebuild_changes": embedded_changes, "apply_calls": apply, "status_writes": status, "sync_passes": passes,
            "cpu_s": cpu, "peak_rss_mib": hwm_mib,
        });
        Restart { total_s, changes, embedded_changes, hwm_mib }
    }

    /// Phase 5: phase 1 again with N DNSEndpoints Ready.
    async fn latency_at_scale(&mut self, lat: &LatencySetup) -> Vec<ChangeRun> {
        let (args, n) = (self.args, self.args.n);
        println!("\n[5/7] latency with {n} DNSEndpoints Ready: the same {} changes per backend", args.k);
        let mut at_scale = Vec::new();
        for (bi, (b, zone, port)) in lat.backends.iter().enumerate() {
            // The embedded zone was rebuilt by the restart: its warm-up record answers again first.
            wait_dig(*port, &format!("warm.{zone}"), "10.0.0.1", Duration::from_secs(120)).await;
            let perf = args.profile.then(|| Profile::start(self.op.pid(), b));
            let r = change_latency(&self.op, &lat.eps, &format!("s-{b}-"), zone, *port, args.k, 3, self.timeout).await;
            if let Some(perf) = perf {
                perf.finish();
            }
            let x = r.p(0.5) / lat.empty[bi].p(0.5);
            println!("  {b}: {} ({x:.2}x the empty-cluster p50)", r.line());
            self.res["latency_at_scale"][*b] = r.json();
            self.res["latency_at_scale"][*b]["n"] = json!(n);
            self.res["latency_at_scale"][*b]["p50_x_empty"] = json!(x);
            let m = |s: &str| format!("latency at {n} {b} {s}");
            let (rows, cpu) = (&mut self.rows_later, r.cpu_ms_per_change);
            row(rows, m("p50"), format!("{:.0} ms", r.p(0.5)), "< 30 ms", Some(r.p(0.5) < 30.0));
            row(rows, m("p50 x empty p50"), format!("{x:.2}x"), "<= 1.5x", Some(x <= 1.5));
            row(rows, m("p99"), format!("{:.0} ms", r.p(0.99)), "< 500 ms", Some(r.p(0.99) < 500.0));
            row(rows, m("operator CPU/change"), format!("{cpu:.1} ms"), "< 5 ms", Some(cpu < 5.0));
            at_scale.push(r);
        }
        at_scale
    }

    /// Phase 6: phase 5 again beside a provider whose server never answers and one that is
    /// throttled, both with work arriving.
    async fn noisy_neighbour(&mut self, lat: &LatencySetup, lat_scale: &[ChangeRun]) {
        let (args, client, run) = (self.args, &self.client, self.run);
        let (bh_port, thr_port) = (args.extra_port_base, args.extra_port_base + 1);
        println!(
            "\n[6/7] noisy neighbour: + a DNSProvider whose RFC2136 server never answers (port {bh_port}) and an embedded one limited to 0.2 calls/s (port {thr_port}), {} DNSEndpoints each plus 5 new ones/s each",
            args.noise_n
        );
        blackhole(bh_port).await;
        let (bh_ns, thr_ns) = (format!("bench-bh-{run}"), format!("bench-thr-{run}"));
        create_ns(client, &bh_ns).await;
        create_ns(client, &thr_ns).await;
        let (bh_zone, thr_zone) = ("bh.bench.test", "thr.bench.test");
        rfc2136_provider(client, &bh_ns, "bh", bh_zone, bh_port, args.rfc2136_batch).await;
        embedded_provider(client, &thr_ns, "thr", thr_zone, thr_port, Some(json!({"qps": 0.2, "burst": 1}))).await;
        let bh_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &bh_ns);
        let thr_eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &thr_ns);
        create_many(&bh_eps, "q", bh_zone, 0..args.noise_n, |i| ip_of(i, 5), args.concurrency).await;
        create_many(&thr_eps, "q", thr_zone, 0..args.noise_n, |i| ip_of(i, 6), args.concurrency).await;
        // New work keeps arriving for both while the healthy providers are measured.
        let churn = tokio::spawn(churn(bh_eps.clone(), bh_zone, thr_eps.clone(), thr_zone));
        // Both neighbours are busy: the blackhole's first listing is waiting out its timeout
        // and the throttled provider has spent its burst.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for (bi, (b, zone, port)) in lat.backends.iter().enumerate() {
            let r = change_latency(&self.op, &lat.eps, &format!("n-{b}-"), zone, *port, args.k, 4, self.timeout).await;
            let x50 = r.p(0.5) / lat_scale[bi].p(0.5);
            let x99 = r.p(0.99) / lat_scale[bi].p(0.99);
            println!("  {b}: {} ({x50:.2}x p50, {x99:.2}x p99 without the neighbours)", r.line());
            self.res["noisy_neighbour"][*b] = r.json();
            self.res["noisy_neighbour"][*b]["p50_x_without"] = json!(x50);
            self.res["noisy_neighbour"][*b]["p99_x_without"] = json!(x99);
            let m = |s: &str| format!("noisy neighbour {b} {s}");
            let rows = &mut self.rows_later;
            row(rows, m("p50"), format!("{:.0} ms", r.p(0.5)), "", None);
            row(rows, m("p50 x without"), format!("{x50:.2}x"), "<= 1.2x", Some(x50 <= 1.2));
            row(rows, m("p99"), format!("{:.0} ms", r.p(0.99)), "", None);
            row(rows, m("p99 x without"), format!("{x99:.2}x"), "<= 1.2x", Some(x99 <= 1.2));
        }
        churn.abort();
        // The neighbours really were stuck: calls the blackhole failed, records the throttled
        // provider still had to serve.
        let metrics = self.op.metrics().await.unwrap_or_default();
        let (bh_pid, thr_pid) =
            (format!("provider=\"DNSProvider/{bh_ns}/bh\""), format!("provider=\"DNSProvider/{thr_ns}/thr\""));
        let bh_calls = sum_counter(&metrics, "extdns_provider_calls_total", &[&bh_pid]);
        let bh_ok = sum_counter(&metrics, "extdns_provider_calls_total", &[&bh_pid, "outcome=\"ok\""]);
        let thr_calls = sum_counter(&metrics, "extdns_provider_calls_total", &[&thr_pid]);
        let (thr_total, thr_ready) = count_ready(&thr_eps).await;
        let (bh_total, bh_ready) = count_ready(&bh_eps).await;
        println!(
            "  blackhole provider: {bh_calls} calls, {bh_ok} ok, {bh_ready}/{bh_total} Ready; throttled provider: {thr_calls} calls, {thr_ready}/{thr_total} Ready"
        );
        self.res["noisy_neighbour"]["blackhole"] =
            json!({"calls": bh_calls, "ok": bh_ok, "objects": bh_total, "ready": bh_ready});
        self.res["noisy_neighbour"]["throttled"] =
            json!({"calls": thr_calls, "objects": thr_total, "ready": thr_ready});
        let rows = &mut self.rows_later;
        row(rows, "noisy neighbour: blackhole objects Ready", format!("{bh_ready}/{bh_total}"), "(stuck)", None);
        row(rows, "noisy neighbour: throttled objects Ready", format!("{thr_ready}/{thr_total}"), "(behind)", None);
        let hwm_all = self.op.status_kib("VmHWM") as f64 / 1024.0;
        self.res["operator_peak_rss_mib"] = json!(hwm_all);
        let n = self.args.n;
        let what = format!("memory: peak RSS, whole run after restart ({n} + latency + noise objects)");
        row(rows, what, format!("{hwm_all:.1} MiB"), "< 64 MiB", Some(hwm_all < 64.0));
    }

    /// Phase 7: the same N records sent to a fresh BIND by nsupdate alone, the floor of the
    /// DNS side. Returns when all were served.
    async fn baseline(&mut self, bind_port: u16) -> Option<f64> {
        let (n, batch) = (self.args.n, self.args.nsupdate_batch);
        println!("\n[7/7] baseline: {n} A records to a fresh BIND by nsupdate, {batch} per message (TCP)");
        let zone = "base.bench.test";
        let bind = Bind::start(&self.out, "baseline", bind_port, zone);
        let mut script = format!("server 127.0.0.1 {}\nzone {zone}\n", bind.port);
        for chunk in (0..n).collect::<Vec<_>>().chunks(batch.max(1)) {
            for i in chunk {
                script.push_str(&format!("update add r{i}.{zone} 60 A {}\n", ip_of(*i, 2)));
            }
            script.push_str("send\n");
        }
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new("nsupdate")
            .args(["-v", "-y", &format!("hmac-sha256:{TSIG_NAME}:{TSIG_SECRET}")])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nsupdate");
        child.stdin.take().expect("stdin").write_all(script.as_bytes()).await.expect("write nsupdate script");
        let ok = child.wait().await.expect("nsupdate").success();
        let sent = t0.elapsed();
        let served_s = secs(wait_axfr(bind.port, zone, n, self.timeout).await.map(|_| t0.elapsed()));
        let verdict = if ok { "ok" } else { "FAILED" };
        println!("  nsupdate {verdict} in {:.2} s, all served at {}", sent.as_secs_f64(), fmt_s(served_s));
        self.res["baseline"] =
            json!({"nsupdate_ok": ok, "sent_s": sent.as_secs_f64(), "served_s": served_s, "batch": batch});
        served_s
    }

    /// The table of every phase, printed and written to results.json.
    fn table(mut self, scale: &Scale, steady: &Steady, restart: &Restart, base_s: Option<f64>) {
        let (n, idle) = (self.args.n, self.args.idle);
        let ratio = match (scale.served_s, base_s) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        self.res["scale"]["x_baseline"] = json!(ratio);
        // The pipeline floor: what the apiserver needs to accept the objects plus what BIND
        // needs to ingest the records by itself; extdns cannot be faster than their sum.
        let floor = match (self.res["scale"]["written_s"].as_f64(), base_s) {
            (Some(w), Some(b)) => Some(w + b),
            _ => None,
        };
        let x_floor = match (scale.served_s, floor) {
            (Some(a), Some(f)) if f > 0.0 => Some(a / f),
            _ => None,
        };
        self.res["scale"]["pipeline_floor_s"] = json!(floor);
        self.res["scale"]["x_pipeline_floor"] = json!(x_floor);
        let ready_x_floor = match (scale.ready_s, floor) {
            (Some(a), Some(f)) if f > 0.0 => Some(a / f),
            _ => None,
        };
        self.res["scale"]["ready_x_pipeline_floor"] = json!(ready_x_floor);
        let rows = &mut self.rows;
        let scale_target = if n >= 10_000 { "< 60 s at 10k" } else { "(< 60 s target is at 10k)" };
        let served_ok = scale.served_s.filter(|_| n >= 10_000).map(|s| s < 60.0);
        row(rows, format!("scale: {n} records served"), fmt_s(scale.served_s), scale_target, served_ok);
        row(rows, "scale: records/s", scale.rate.map(|r| format!("{r:.0}")).unwrap_or("-".into()), "", None);
        row(rows, "scale: all DNSEndpoints Ready", fmt_s(scale.ready_s), "", None);
        let x = ratio.map(|r| format!("{r:.1}x")).unwrap_or("-".into());
        row(rows, "scale: x nsupdate baseline", x, "<= 2x", ratio.map(|r| r <= 2.0));
        row(rows, "scale: apply calls (DNS UPDATE passes)", scale.apply_calls.to_string(), "", None);
        row(rows, "scale: record changes sent", scale.changes.to_string(), "", None);
        row(rows, "scale: operator CPU", format!("{:.2} s", scale.cpu), "", None);
        let hwm = scale.hwm_mib;
        row(rows, "scale: operator peak RSS (VmHWM)", format!("{hwm:.1} MiB"), "< 64 MiB", Some(hwm < 64.0));
        let calls = steady.calls;
        row(rows, format!("steady {idle} s: provider calls"), calls.to_string(), "0", Some(calls == 0));
        row(rows, format!("steady {idle} s: CPU"), format!("{:.3} s", steady.cpu), "", None);
        let rss = steady.rss_mib;
        row(rows, "steady: RSS", format!("{rss:.1} MiB"), "< 64 MiB", Some(rss < 64.0));
        row(rows, "restart: zone listed + all Ready", fmt_s(restart.total_s), "", None);
        let changes = restart.changes;
        row(rows, "restart: changes sent to BIND (rfc2136)", changes.to_string(), "0", Some(changes == 0));
        let rebuilt = restart.embedded_changes.to_string();
        row(rows, "restart: embedded in-memory zone rebuild", rebuilt, "(expected)", None);
        let hwm = restart.hwm_mib;
        row(rows, "restart: peak RSS", format!("{hwm:.1} MiB"), "< 64 MiB", Some(hwm < 64.0));
        let batch = self.args.nsupdate_batch;
        row(rows, format!("baseline: nsupdate {n} A, {batch}/msg"), fmt_s(base_s), "", None);
        row(rows, format!("scale: pipeline floor (apiserver accepts {n} + nsupdate)"), fmt_s(floor), "", None);
        let x = x_floor.map(|r| format!("{r:.2}x")).unwrap_or("-".into());
        row(rows, "scale: served x pipeline floor", x, "<= 1.5x", x_floor.map(|r| r <= 1.5));
        let x = ready_x_floor.map(|r| format!("{r:.2}x")).unwrap_or("-".into());
        row(rows, "scale: all Ready x pipeline floor", x, "<= 2x", ready_x_floor.map(|r| r <= 2.0));
        rows.append(&mut self.rows_later);
        print_table(rows);
        self.res["table"] = table_json(rows);
        let path = self.out.join("results.json");
        std::fs::write(&path, serde_json::to_string_pretty(&self.res).expect("json")).expect("write results.json");
        println!("\nwritten: {}", path.display());
    }
}

/// New DNSEndpoints for the noisy neighbours, 5 per second each, until aborted.
async fn churn(bh_eps: Api<DNSEndpoint>, bh_zone: &str, thr_eps: Api<DNSEndpoint>, thr_zone: &str) {
    for i in 0.. {
        for (eps, zone, third) in [(&bh_eps, bh_zone, 7), (&thr_eps, thr_zone, 8)] {
            let ep = endpoint(&format!("c{i}"), &format!("c{i}.{zone}"), &ip_of(i % 60_000, third));
            let _ = eps.create(&PostParams::default(), &ep).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_table(rows: &[Row]) {
    let w = rows.iter().map(|r| r.metric.len()).max().unwrap_or(10);
    let wv = rows.iter().map(|r| r.value.len()).max().unwrap_or(10).max(5);
    let wt = rows.iter().map(|r| r.target.len()).max().unwrap_or(10).max(6);
    println!("\n{:<w$}  {:>wv$}  {:<wt$}", "metric", "value", "target");
    println!("{}", "-".repeat(w + wv + wt + 12));
    for r in rows {
        let verdict = match r.ok {
            Some(true) => "ok",
            Some(false) => "MISS",
            None => "",
        };
        println!("{:<w$}  {:>wv$}  {:<wt$}  {verdict}", r.metric, r.value, r.target);
    }
}

fn table_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter().map(|r| json!({"metric": r.metric, "value": r.value, "target": r.target, "ok": r.ok})).collect(),
    )
}

/// `BENCH_ONLY=large`: BENCH_N_LARGE DNSEndpoints on one embedded provider, on a cluster of
/// their own (a fresh one: RSS and time then belong to these objects alone). Time until a
/// sample of a thousand names is served, until all are Ready, peak RSS, and the change→dig
/// latency at that size. Merged into results.json under "large".
async fn large(args: &Args, client: &Client, out: &Path, bin: &Path) {
    let n = args.n_large;
    let timeout = Duration::from_secs(args.timeout);
    let (port, metrics_port) = (args.extra_port_base + 2, args.extra_port_base + 3);
    let run = std::process::id();
    println!("\n[large] {n} DNSEndpoints (one A each) on the embedded provider, concurrency {}", args.concurrency);
    // All objects are in one namespace: a single-tenant install lifts the per-namespace
    // record limits (their defaults, 10,000 records and 16 MiB, would refuse 90 % of them).
    let limits = ["--max-records-per-namespace=0", "--max-record-bytes-per-namespace=0"];
    let op = Operator::start(
        bin.to_path_buf(),
        metrics_port,
        args.coalesce.as_deref(),
        out.join("operator-large.log"),
        &limits,
    );
    op.counter_wait("extdns_sync_passes_total", &[]).await;
    let ns = format!("bench-large-{run}");
    create_ns(client, &ns).await;
    let zone = "large.bench.test";
    embedded_provider(client, &ns, "emb", zone, port, None).await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns);
    eps.create(&PostParams::default(), &endpoint("warm", &format!("warm.{zone}"), "10.0.0.1")).await.expect("create");
    wait_dig(port, &format!("warm.{zone}"), "10.0.0.1", Duration::from_secs(120)).await;
    let rss_idle = op.status_kib("VmRSS") as f64 / 1024.0;
    let step = (n / 1000).max(1);
    let sample: Vec<String> =
        (0..n).step_by(step).chain(std::iter::once(n - 1)).map(|i| format!("r{i}.{zone}")).collect();
    let cpu0 = op.cpu_seconds();
    let t0 = Instant::now();
    let writes = async {
        let w = create_many(&eps, "r", zone, 0..n, ip_large, args.concurrency).await;
        let hwm = op.status_kib("VmHWM") as f64 / 1024.0;
        println!(
            "  all {n} written in {:.1} s ({:.0} writes/s), peak RSS so far {hwm:.1} MiB",
            w.as_secs_f64(),
            n as f64 / w.as_secs_f64()
        );
        w
    };
    let served = wait_sample_served(out, port, &sample, t0, timeout);
    let (written, served) = tokio::join!(writes, served);
    println!("  sample of {} names served at {}", sample.len(), fmt_s(secs(served)));
    let ready = wait_ready_paged(&op, &eps, n, t0, timeout).await;
    let cpu = op.cpu_seconds() - cpu0;
    println!("  all Ready at {}, operator CPU {cpu:.1} s", fmt_s(secs(ready)));
    let k = args.k.min(20);
    let r = change_latency(&op, &eps, "s-", zone, port, k, 3, timeout).await;
    println!("  change latency at {n}: {}", r.line());
    let hwm = op.status_kib("VmHWM") as f64 / 1024.0;
    let rss = op.status_kib("VmRSS") as f64 / 1024.0;
    println!("  peak RSS {hwm:.1} MiB, RSS now {rss:.1} MiB (idle before the objects: {rss_idle:.1} MiB)");
    let mut rows = Vec::new();
    let m = |s: &str| format!("large: {n} embedded {s}");
    row(&mut rows, m("written to the apiserver"), format!("{:.1} s", written.as_secs_f64()), "", None);
    row(&mut rows, m("served (sample of 1,000 answers)"), fmt_s(secs(served)), "", None);
    let served_x = secs(served).map(|s| s / written.as_secs_f64());
    let x = served_x.map(|x| format!("{x:.2}x")).unwrap_or("-".into());
    row(&mut rows, m("served x written"), x, "<= 1.5x", served_x.map(|x| x <= 1.5));
    row(&mut rows, m("all Ready"), fmt_s(secs(ready)), "", None);
    row(&mut rows, m("operator CPU"), format!("{cpu:.1} s"), "", None);
    row(&mut rows, m("change latency p50 / p99"), format!("{:.0} / {:.0} ms", r.p(0.5), r.p(0.99)), "", None);
    let cpu_ok = Some(r.cpu_ms_per_change < 5.0);
    row(&mut rows, m("operator CPU/change"), format!("{:.1} ms", r.cpu_ms_per_change), "< 5 ms", cpu_ok);
    let target_ok = (n >= 100_000).then_some(hwm < 400.0);
    row(&mut rows, m("peak RSS (VmHWM)"), format!("{hwm:.1} MiB"), "< 400 MiB at 100k", target_ok);
    row(&mut rows, m("RSS after"), format!("{rss:.1} MiB"), "", None);
    print_table(&rows);
    let path = out.join("results.json");
    let mut res: Value =
        std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_else(|| json!({}));
    res["large"] = json!({
        "n": n, "written_s": written.as_secs_f64(), "served_s": secs(served), "served_x_written": served_x,
        "all_ready_s": secs(ready),
        "cpu_s": cpu, "peak_rss_mib": hwm, "rss_mib": rss, "rss_idle_mib": rss_idle, "latency": r.json(),
        "table": table_json(&rows),
    });
    std::fs::write(&path, serde_json::to_string_pretty(&res).expect("json")).expect("write results.json");
    println!("\nwritten: {}", path.display());
}

/// Polls `dig` for every name of `sample` until all answer; the time since `t0`.
async fn wait_sample_served(
    out: &Path,
    port: u16,
    sample: &[String],
    t0: Instant,
    timeout: Duration,
) -> Option<Duration> {
    let mut last = Instant::now();
    loop {
        let got = dig_batch_answered(out, port, sample).await;
        if got >= sample.len() {
            return Some(t0.elapsed());
        }
        if last.elapsed() > Duration::from_secs(30) {
            println!("  served: {got}/{} of the sample at {:.0} s", sample.len(), t0.elapsed().as_secs_f64());
            last = Instant::now();
        }
        if t0.elapsed() > timeout {
            println!("  served: {got}/{} of the sample at the timeout", sample.len());
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until more than `n` DNSEndpoints (the warm-up one too) are Ready; the time since `t0`.
async fn wait_ready_paged(
    op: &Operator,
    eps: &Api<DNSEndpoint>,
    n: usize,
    t0: Instant,
    timeout: Duration,
) -> Option<Duration> {
    let mut last = Instant::now();
    loop {
        let (total, ready) = count_ready_paged(eps).await;
        if total > n && ready > n {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            println!("  Ready: {ready}/{total} at the timeout");
            return None;
        }
        if last.elapsed() > Duration::from_secs(30) {
            let hwm = op.status_kib("VmHWM") as f64 / 1024.0;
            println!("  Ready: {ready}/{total} at {:.0} s, peak RSS so far {hwm:.1} MiB", t0.elapsed().as_secs_f64());
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

fn chrono_free_now() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%dT%H:%M:%SZ")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
