//! The provider conformance battery against real DNS servers: BIND, Knot and PowerDNS, each
//! started by `e2e/dns/server.sh` in its own scratch dir, on its own free port, with its own
//! zone, and stopped when the test ends. The Route53 provider runs it against moto, started by
//! `e2e/dns/moto.sh` (which builds its venv on first use), with the cases moto cannot emulate
//! skipped or adapted where the moto test says so.
//!
//! When a server binary is not installed the test is skipped with a message on stderr, unless
//! `EXTDNS_REQUIRE_DNS_SERVERS` is set (CI sets it): then `server.sh` is run anyway, installs the
//! packages or fails, and the test fails with it. `EXTDNS_DNS_LOG_DIR=dir` keeps the server logs.

use std::io::Write as _;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_route53::types::{
    Change as R53Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use extdns::dns::endpoint::{label, ProviderSpecificProperty};
use extdns::dns::providers::conformance;
use extdns::dns::providers::powerdns::{PowerDnsConfig, PowerDnsProvider};
use extdns::dns::providers::rfc2136::{Rfc2136Config, Rfc2136Provider, Transport, TsigAlgorithm, TsigConfig};
use extdns::dns::providers::route53::{Route53Config, Route53Provider};
use extdns::dns::providers::webhook::{WebhookConfig, WebhookProvider};
use extdns::dns::{Applied, Change, Endpoint, Provider, ProviderError, RecordType, Zone};

const KEY_NAME: &str = "externaldns-key";
const KEY_SECRET: &str = "e2a7m/0u+lZirz9VYyx2fdOgOLl0EY5tB4dHTDFRiLk=";
const REQUIRE_ENV: &str = "EXTDNS_REQUIRE_DNS_SERVERS";
/// When set, each server's log is copied into this dir when its test ends.
const LOG_DIR_ENV: &str = "EXTDNS_DNS_LOG_DIR";
/// Bound on one whole test, so that a wedged server fails the run instead of hanging it.
const TEST_DEADLINE: Duration = Duration::from_secs(300);

/// Written straight to stderr: the test harness captures `println!`/`eprintln!` of passing
/// tests, and a skip or a timing must be visible in a plain `cargo test` run.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/dns")
}

fn binary_of(kind: &str) -> &'static str {
    match kind {
        "bind" => "named",
        "knot" => "knotd",
        "pdns" => "pdns_server",
        other => panic!("unknown server kind {other}"),
    }
}

fn installed(binary: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(binary).is_file())
}

/// When set to `LOW-HIGH`, every port the tests pick comes from that range (so that parallel
/// runs on one machine can be kept apart); otherwise the kernel picks.
const PORTS_ENV: &str = "EXTDNS_TEST_PORTS";

fn port_range() -> Option<(u16, u16)> {
    let v = std::env::var(PORTS_ENV).ok()?;
    let (low, high) = v.split_once('-')?;
    let (low, high) = (low.trim().parse().ok()?, high.trim().parse().ok()?);
    (low <= high).then_some((low, high))
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    if let Some((low, high)) = port_range() {
        // Start at a point that differs between test threads and runs, so that two servers
        // started at once rarely race for the same port.
        static PICKED: AtomicU32 = AtomicU32::new(0);
        let span = u32::from(high - low) + 1;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let seed = std::process::id().wrapping_add(nanos).wrapping_add(PICKED.fetch_add(7919, Ordering::Relaxed));
        for i in 0..span {
            let port = low + (seed.wrapping_add(i) % span) as u16;
            if UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
        panic!("found no port free for both UDP and TCP on 127.0.0.1 in {PORTS_ENV}={low}-{high}");
    }
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("binding a UDP socket on 127.0.0.1 failed");
        let port = udp.local_addr().expect("UDP socket has no address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("found no port free for both UDP and TCP on 127.0.0.1");
}

/// A DNS server child; stopped with SIGTERM (then SIGKILL) when dropped.
struct Server {
    kind: &'static str,
    child: Child,
    port: u16,
    /// pdns only: the port of its HTTP API.
    api_port: u16,
    log: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Server {
    /// Starts the server or returns `None` when the test must be skipped.
    fn start(kind: &'static str, zone: &str) -> Option<Server> {
        let binary = binary_of(kind);
        if !installed(binary) {
            if std::env::var_os(REQUIRE_ENV).is_none() {
                say(&format!(
                    "\n!!! SKIPPED {kind} conformance: `{binary}` is not installed. \
                     Install it (e2e/dns/server.sh can, as root) or set {REQUIRE_ENV}=1 to make this a failure. !!!\n"
                ));
                return None;
            }
            say(&format!("{kind}: `{binary}` not installed and {REQUIRE_ENV} is set: letting server.sh install it"));
        }
        let scratch = tempfile::Builder::new()
            .prefix(&format!("extdns-{kind}-"))
            .tempdir()
            .expect("creating a scratch dir failed");
        let dir = scratch.path().join("server");
        let log = scratch.path().join("server.log");
        let port = free_port();
        let mut cmd = Command::new("bash");
        cmd.arg(scripts().join("server.sh")).arg(kind).arg(&dir).arg(port.to_string()).arg(zone);
        let api_port = if kind == "pdns" { free_port() } else { 0 };
        if kind == "pdns" {
            cmd.env("PDNS_API_PORT", api_port.to_string());
        }
        let log_file = std::fs::File::create(&log).expect("creating the server log failed");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("duplicating the log handle failed"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting e2e/dns/server.sh {kind} failed: {e}"));
        let server = Server { kind, child, port, api_port, log, _scratch: scratch };
        let started = Instant::now();
        let waited = Command::new("bash")
            .arg(scripts().join("wait.sh"))
            .arg(port.to_string())
            .arg(zone)
            .arg(server.child.id().to_string())
            .status()
            .expect("running e2e/dns/wait.sh failed");
        if !waited.success() {
            panic!("{kind} did not come up on 127.0.0.1:{port}; server log:\n{}", server.log_tail());
        }
        say(&format!("{kind}: serving {zone} on 127.0.0.1:{port} after {:?}", started.elapsed()));
        Some(server)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Server {
    fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        say(&format!("{}: did not stop within 10 s of SIGTERM, killing it", self.kind));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        // The scratch dir goes with the test; CI keeps the server logs by naming a dir here.
        if let Some(dir) = std::env::var_os(LOG_DIR_ENV) {
            let dest = Path::new(&dir).join(format!("{}-{}.log", self.kind, self.port));
            let copied = std::fs::create_dir_all(&dir).and_then(|_| std::fs::copy(&self.log, &dest));
            if let Err(e) = copied {
                say(&format!("{}: keeping the server log as {} failed: {e}", self.kind, dest.display()));
            }
        }
    }
}

fn provider(
    port: u16,
    zones: &[&str],
    secret: &str,
    key_name: &str,
    transport: Transport,
    timeout: Duration,
) -> Rfc2136Provider {
    let mut config = Rfc2136Config::new("127.0.0.1", port, zones.iter().map(|z| z.to_string()).collect());
    config.tsig =
        Some(TsigConfig { key_name: key_name.into(), algorithm: TsigAlgorithm::HmacSha256, secret: secret.into() });
    config.transport = transport;
    config.timeout = timeout;
    Rfc2136Provider::new(config).expect("the test provider config is valid")
}

async fn battery(kind: &'static str) {
    let zone_name = format!("conformance-{kind}.test");
    let Some(server) = Server::start(kind, &zone_name) else {
        return;
    };
    let zone = Zone::named(&zone_name);
    let timeout = Duration::from_secs(5);
    let fail = |what: &str, e: String| -> ! {
        panic!("{kind}: {what}: {e}\n--- {kind} log (tail) ---\n{}", server.log_tail())
    };

    let good = provider(server.port, &[&zone_name], KEY_SECRET, KEY_NAME, Transport::Udp, timeout);
    let started = Instant::now();
    let report = conformance::run_all(&good, &zone).await.unwrap_or_else(|e| fail("battery over UDP", e));
    say(&format!("{kind}: battery over UDP passed in {:?}\n{report}", started.elapsed()));

    conformance::case_names_in_any_case(&good, &zone).await.unwrap_or_else(|e| fail("names_in_any_case", e));
    // run_all refused a CNAME beside an A; a DNS server also refuses one at the apex.
    conformance::case_refused_record_leaves_no_ownership(&good, &zone, &[conformance::cname_at_apex(&zone)])
        .await
        .unwrap_or_else(|e| fail("refused_record_no_ownership (CNAME at the apex)", e));
    say(&format!("{kind}: a refused CNAME beside an A and one at the apex left no ownership TXT"));

    let tcp = provider(server.port, &[&zone_name], KEY_SECRET, KEY_NAME, Transport::Tcp, timeout);
    conformance::case_each_type_lifecycle(&tcp, &zone)
        .await
        .unwrap_or_else(|e| fail("each_type_lifecycle over TCP", e));
    let (create, delete) = conformance::case_bulk(&tcp, &zone, conformance::BULK_RECORDS)
        .await
        .unwrap_or_else(|e| fail("bulk over TCP", e));
    say(&format!("{kind}: over TCP, {} creates took {create:?}, deletes {delete:?}", conformance::BULK_RECORDS));

    let wrong_secret = provider(
        server.port,
        &[&zone_name],
        "c2VjcmV0IHRoYXQgdGhlIHNlcnZlciBkb2VzIG5vdCBrbm93",
        KEY_NAME,
        Transport::Udp,
        timeout,
    );
    let (update, transfer) = conformance::case_auth_failure(&wrong_secret, &zone)
        .await
        .unwrap_or_else(|e| fail("auth_failure (wrong secret)", e));
    say(&format!("{kind}: wrong secret:\n  {update}\n  {transfer}"));
    let unknown_key = provider(server.port, &[&zone_name], KEY_SECRET, "no-such-key", Transport::Udp, timeout);
    let (update, transfer) = conformance::case_auth_failure(&unknown_key, &zone)
        .await
        .unwrap_or_else(|e| fail("auth_failure (unknown key name)", e));
    say(&format!("{kind}: unknown key name:\n  {update}\n  {transfer}"));

    let missing = format!("missing-{kind}.test");
    let with_missing = provider(server.port, &[&zone_name, &missing], KEY_SECRET, KEY_NAME, Transport::Udp, timeout);
    match with_missing.zones().await {
        Err(ProviderError::ZoneNotFound(m)) if m.contains(&missing) && !m.contains(&zone_name) => {}
        other => fail(
            "zones() with a zone the server does not serve",
            format!("expected Err(ZoneNotFound) naming {missing}, got {other:?}"),
        ),
    }
    match with_missing.records(&Zone::named(&missing)).await {
        Err(ProviderError::ZoneNotFound(_)) => {}
        other => {
            fail("records() of a zone the server does not serve", format!("expected Err(ZoneNotFound), got {other:?}"))
        }
    }

    let down = provider(free_port(), &[&zone_name], KEY_SECRET, KEY_NAME, Transport::Udp, Duration::from_secs(2));
    let took = conformance::case_unreachable(&down, &zone, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| fail("unreachable", e));
    say(&format!("{kind}: a stopped server was reported Unreachable after {took:?}"));
}

async fn within_deadline(kind: &'static str) {
    if tokio::time::timeout(TEST_DEADLINE, battery(kind)).await.is_err() {
        panic!("{kind}: the conformance battery did not finish within {TEST_DEADLINE:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_passes_the_conformance_battery() {
    within_deadline("bind").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_passes_the_conformance_battery() {
    within_deadline("knot").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdns_passes_the_conformance_battery() {
    within_deadline("pdns").await;
}

/// A server that takes packets and connections but never answers: listing and changes fail
/// `Unreachable` after the configured timeout, not later. Needs no DNS server binary.
#[tokio::test]
async fn a_silent_server_is_reported_unreachable_within_the_timeout() {
    let (udp, tcp) = loop {
        let port = free_port();
        if let (Ok(udp), Ok(tcp)) = (UdpSocket::bind(("127.0.0.1", port)), TcpListener::bind(("127.0.0.1", port))) {
            break (udp, tcp);
        }
    };
    let port = tcp.local_addr().expect("TCP listener has no address").port();
    let zone = Zone::named("silent.test");
    let p = provider(port, &["silent.test"], KEY_SECRET, KEY_NAME, Transport::Udp, Duration::from_millis(500));
    // One timeout for the transfer (the kernel completes the TCP handshake, nobody reads) and
    // one for the first UPDATE; the other changes are not sent.
    let took = conformance::case_unreachable(&p, &zone, Duration::from_millis(2500))
        .await
        .unwrap_or_else(|e| panic!("silent server: {e}"));
    say(&format!("silent server: reported Unreachable after {took:?} (timeout 500 ms)"));
    drop((udp, tcp));
}

/// moto (a Route53 API emulator) started by `e2e/dns/moto.sh`, which execs `moto_server`, so
/// the child is the server; stopped with SIGTERM (then SIGKILL) when dropped.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _scratch: tempfile::TempDir,
}

/// First run builds the venv (pip install moto[server]); later runs reuse it.
const MOTO_READY_DEADLINE: Duration = Duration::from_secs(240);

impl Moto {
    fn cache_dir() -> PathBuf {
        std::env::var_os("EXTDNS_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/extdns"))
    }

    /// Starts moto or returns `None` when the test must be skipped.
    fn start() -> Option<Moto> {
        let venv_ready = Self::cache_dir().join("moto-venv/.extdns-moto-5.2.5").exists();
        let can_build_venv = Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !venv_ready && !can_build_venv {
            if std::env::var_os(REQUIRE_ENV).is_none() {
                say(&format!(
                    "\n!!! SKIPPED moto (Route53) conformance: no moto venv and no python3 with venv/ensurepip \
                     (install python3-venv) or set {REQUIRE_ENV}=1 to make this a failure. !!!\n"
                ));
                return None;
            }
            say(&format!("moto: python3-venv missing and {REQUIRE_ENV} is set: letting moto.sh install it"));
        }
        let scratch = tempfile::Builder::new().prefix("extdns-moto-").tempdir().expect("creating a scratch dir failed");
        let log = scratch.path().join("moto.log");
        let port = free_port();
        let log_file = std::fs::File::create(&log).expect("creating the moto log failed");
        let child = Command::new("bash")
            .arg(scripts().join("moto.sh"))
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("duplicating the log handle failed"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting e2e/dns/moto.sh failed: {e}"));
        let mut moto = Moto { child, port, log, _scratch: scratch };
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{port}/moto-api/");
        loop {
            let up = Command::new("curl")
                .args(["-fs", "-o", "/dev/null", "--max-time", "2", &url])
                .status()
                .expect("running curl failed");
            if up.success() {
                break;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto.sh exited with {status} before serving; log:\n{}", moto.log_tail());
            }
            if started.elapsed() > MOTO_READY_DEADLINE {
                panic!("moto did not answer on {url} within {MOTO_READY_DEADLINE:?}; log:\n{}", moto.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        say(&format!("moto: serving on 127.0.0.1:{port} after {:?}", started.elapsed()));
        Some(moto)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = self.child.try_wait() {
            say("moto: did not stop within 10 s of SIGTERM, killing it");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(dir) = std::env::var_os(LOG_DIR_ENV) {
            let dest = Path::new(&dir).join(format!("moto-{}.log", self.port));
            let copied = std::fs::create_dir_all(&dir).and_then(|_| std::fs::copy(&self.log, &dest));
            if let Err(e) = copied {
                say(&format!("moto: keeping the log as {} failed: {e}", dest.display()));
            }
        }
    }
}

fn route53_config(port: u16) -> Route53Config {
    let mut config = Route53Config::new("us-east-1");
    config.endpoint = Some(format!("http://127.0.0.1:{port}"));
    config.credentials = Some(("testing".into(), "testing".into()));
    config.zones_cache_ttl = Duration::ZERO;
    config.retry_base_delay = Duration::from_millis(20);
    config
}

/// moto stand-in for `case_bad_change_in_batch`. moto accepts the conflicts that case uses (a
/// CNAME next to an A, a CREATE of an existing RRset with other values) and, for a refused
/// CREATE, keeps the creates before it applied, so a bisected retry of them is refused as a
/// duplicate. It does check DELETEs against what it holds before applying anything, so bad
/// DELETEs exercise bisection against it faithfully. The out-of-zone create is refused by the
/// provider before anything is sent.
async fn moto_bad_change_in_batch(p: &Route53Provider, zone: &Zone) -> Result<Vec<String>, String> {
    let base = format!("badbatch.{}", zone.name);
    let a =
        |label: &str, ip: &str| Endpoint::new(format!("{label}.{base}"), RecordType::A, vec![ip.into()]).with_ttl(300);
    let taken = a("taken", "192.0.2.50");
    let seed = p.apply(zone, &[Change::Create(taken.clone())]).await;
    if seed != vec![Ok(Applied::Live)] {
        return Err(format!("seed: {seed:?}"));
    }
    let good: Vec<Endpoint> = (1..=5).map(|i| a(&format!("good{i}"), &format!("192.0.2.{}", 50 + i))).collect();
    let changes = vec![
        Change::Create(good[0].clone()),
        // Not held: nothing at this name.
        Change::Delete(a("missing", "192.0.2.97")),
        Change::Create(good[1].clone()),
        Change::Create(good[2].clone()),
        // Held with another value.
        Change::Delete(a("taken", "192.0.2.99")),
        Change::Create(good[3].clone()),
        Change::Create(Endpoint::new("stray.invalid", RecordType::A, vec!["192.0.2.98".into()]).with_ttl(300)),
        Change::Create(good[4].clone()),
    ];
    let results = p.apply(zone, &changes).await;
    if results.len() != changes.len() {
        return Err(format!("{} results for {} changes", results.len(), changes.len()));
    }
    let mut rejections = Vec::new();
    for (i, r) in results.iter().enumerate() {
        match (i, r) {
            (1 | 4 | 6, Err(e @ ProviderError::Rejected(_))) => rejections.push(e.to_string()),
            (1 | 4 | 6, other) => return Err(format!("change {i}: expected Err(Rejected), got {other:?}")),
            (_, Ok(_)) => {}
            (_, Err(e)) => return Err(format!("change {i} should have been applied but failed: {e}")),
        }
    }
    let mut listed: Vec<Endpoint> = p
        .records(zone)
        .await
        .map_err(|e| format!("listing: {e}"))?
        .into_iter()
        .filter(|e| e.dns_name.ends_with(&base))
        .collect();
    listed.sort();
    let mut want = good.clone();
    want.push(taken.clone());
    want.sort();
    if listed != want {
        return Err(format!("after the mixed batch: expected {want:?}, found {listed:?}"));
    }
    let cleanup: Vec<Change> = want.into_iter().map(Change::Delete).collect();
    let results = p.apply(zone, &cleanup).await;
    if results.iter().any(|r| r.is_err()) {
        return Err(format!("cleanup: {results:?}"));
    }
    Ok(rejections)
}

async fn moto_battery() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let fail =
        |what: &str, e: String| -> ! { panic!("moto: {what}: {e}\n--- moto log (tail) ---\n{}", moto.log_tail()) };
    let p = Route53Provider::new(route53_config(moto.port))
        .await
        .unwrap_or_else(|e| fail("building the provider", e.to_string()));
    let zone_name = "conformance-moto.test";
    let created = p
        .client()
        .create_hosted_zone()
        .name(format!("{zone_name}."))
        .caller_reference(format!("extdns-conformance-{}", std::process::id()))
        .send()
        .await
        .unwrap_or_else(|e| fail("CreateHostedZone", format!("{}", aws_sdk_route53::error::DisplayErrorContext(e))));
    let id = created.hosted_zone().map(|z| z.id().trim_start_matches("/hostedzone/").to_string()).unwrap_or_default();
    let zone = Zone { id, name: zone_name.into() };

    let started = Instant::now();
    macro_rules! case {
        ($name:literal, $call:expr) => {{
            let t = Instant::now();
            let out = $call.await.unwrap_or_else(|e| fail($name, e));
            say(&format!("  {:<28} {:>8.1} ms", $name, t.elapsed().as_secs_f64() * 1000.0));
            out
        }};
    }
    case!("zone_is_listed", conformance::case_zone_is_listed(&p, &zone));
    case!("each_type_lifecycle", conformance::case_each_type_lifecycle(&p, &zone));
    case!("txt_values", conformance::case_txt_values(&p, &zone));
    case!("multi_target_rrsets", conformance::case_multi_target_rrsets(&p, &zone));
    case!("ttl_change", conformance::case_ttl_change(&p, &zone));
    case!("wildcard_names", conformance::case_wildcard_names(&p, &zone));
    case!("apex_records", conformance::case_apex_records(&p, &zone));
    // Skipped: names_differ_in_case and names_in_any_case. Both end by expecting a CREATE of an
    // RRset that exists (under another spelling) to be refused; moto 5.2.5 accepts a CREATE of
    // an existing name and type with other values and stores a second RRset.
    // Adapted: bad_change_in_batch, see moto_bad_change_in_batch.
    let rejections = case!("bad_change_in_batch (moto)", moto_bad_change_in_batch(&p, &zone));
    for r in &rejections {
        say(&format!("  rejected: {r}"));
    }
    case!("stale_update_and_delete", conformance::case_stale_update_and_delete(&p, &zone));
    case!("applied_answer_lost", conformance::case_applied_answer_lost(&p, &zone));
    // moto accepts every create the DNS servers refuse (a CNAME beside an A or at the apex, an A
    // with 500 values, malformed values); the Route53 provider itself refuses an alias whose
    // target is in no known hosted zone, which is a record refused after its TXT went out.
    let mut bad_alias =
        Endpoint::new(format!("alias.refused.{zone_name}"), RecordType::A, vec!["lb.nowhere.invalid".into()])
            .with_ttl(300);
    bad_alias.provider_specific.push(ProviderSpecificProperty { name: "alias".into(), value: "true".into() });
    bad_alias.labels.insert(label::OWNER.into(), "conformance".into());
    bad_alias.labels.insert(label::RESOURCE.into(), "crd/conformance/alias".into());
    case!("refused_record_no_ownership", conformance::case_refused_record_leaves_no_ownership(&p, &zone, &[bad_alias]));
    // Skipped: refused_update_keeps_ownership. Taking back the TXT update is a DELETE+CREATE of
    // an RRset that the previous batch wrote by DELETE+CREATE, and moto 5.2.5 refuses such a
    // second replacement ("Tried to create resource record set ... but it already exists"),
    // which Route53 accepts.
    // Adapted: ownership_beside_apex_txt. moto refuses a CREATE that repeats one of its zone's
    // journal while the name holds records, even when the same batch DELETEs them first, so an
    // SPF seeded by CREATE could not be put back as it was when our value leaves. The SPF is
    // seeded by UPSERT instead, straight through the API.
    let spf = conformance::apex_spf(&zone);
    p.client()
        .change_resource_record_sets()
        .hosted_zone_id(&zone.id)
        .change_batch(
            ChangeBatch::builder()
                .changes(
                    R53Change::builder()
                        .action(ChangeAction::Upsert)
                        .resource_record_set(
                            ResourceRecordSet::builder()
                                .name(format!("{zone_name}."))
                                .r#type(RrType::Txt)
                                .ttl(300)
                                .resource_records(
                                    ResourceRecord::builder()
                                        .value(format!("\"{}\"", spf.targets[0]))
                                        .build()
                                        .unwrap_or_else(|e| fail("SPF value", e.to_string())),
                                )
                                .build()
                                .unwrap_or_else(|e| fail("SPF RRset", e.to_string())),
                        )
                        .build()
                        .unwrap_or_else(|e| fail("SPF change", e.to_string())),
                )
                .build()
                .unwrap_or_else(|e| fail("SPF batch", e.to_string())),
        )
        .send()
        .await
        .unwrap_or_else(|e| {
            fail("seeding the apex SPF", format!("{}", aws_sdk_route53::error::DisplayErrorContext(e)))
        });
    case!("ownership_beside_apex_txt", conformance::case_ownership_beside_seeded_apex_txt(&p, &zone));
    let (create, delete) = case!("bulk", conformance::case_bulk(&p, &zone, conformance::BULK_RECORDS));
    say(&format!(
        "moto: battery passed in {:?}; {} creates took {create:?}, deletes {delete:?}",
        started.elapsed(),
        conformance::BULK_RECORDS
    ));
    // Skipped: auth_failure. moto accepts any access key and secret.

    match p.records(&Zone { id: "NOSUCHZONE".into(), name: "missing-moto.test".into() }).await {
        Err(ProviderError::ZoneNotFound(_)) => {}
        other => {
            fail("records() of a hosted zone that does not exist", format!("expected Err(ZoneNotFound), got {other:?}"))
        }
    }

    let down =
        Route53Provider::new(route53_config(free_port())).await.unwrap_or_else(|e| fail("provider", e.to_string()));
    let took = conformance::case_unreachable(&down, &zone, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| fail("unreachable", e));
    say(&format!("moto: an endpoint where nothing listens was reported Unreachable after {took:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_passes_the_conformance_battery() {
    if tokio::time::timeout(TEST_DEADLINE, moto_battery()).await.is_err() {
        panic!("moto: the conformance battery did not finish within {TEST_DEADLINE:?}");
    }
}

/// API key `e2e/dns/server.sh` gives PowerDNS (its PDNS_API_KEY default).
const PDNS_API_KEY: &str = "e2e-secret-key";

fn powerdns(api_port: u16, zones: &[&str], key: &str) -> PowerDnsProvider {
    let mut config = PowerDnsConfig::new(format!("http://127.0.0.1:{api_port}"), key);
    config.zones = zones.iter().map(|z| z.to_string()).collect();
    config.timeout = Duration::from_secs(5);
    PowerDnsProvider::new(config).expect("the test provider config is valid")
}

/// The `powerdns` provider (HTTP API) against the real PowerDNS 4.7 of `server.sh pdns`: the
/// whole battery, names in any case, a CNAME refused at the apex, a wrong API key, a zone the
/// server does not hold, and a stopped server.
async fn powerdns_battery() {
    let zone_name = "conformance-pdns-http.test";
    let Some(server) = Server::start("pdns", zone_name) else {
        return;
    };
    let zone = Zone::named(zone_name);
    let fail = |what: &str, e: String| -> ! {
        panic!("powerdns: {what}: {e}\n--- pdns log (tail) ---\n{}", server.log_tail())
    };
    let good = powerdns(server.api_port, &[zone_name], PDNS_API_KEY);
    // The API answers before DNS does (wait.sh waited for DNS), so it is up by now.
    let started = Instant::now();
    // PowerDNS's API refuses '*' inside a label, so the wildcard's `a-*` TXT cannot be held
    // there (PowerDNS over RFC2136 takes it: see pdns_passes_the_conformance_battery). What
    // the provider must do instead: refuse the record with its TXT, leaving nothing behind.
    let report =
        conformance::run_all_except(&good, &zone, &["wildcard_ownership"]).await.unwrap_or_else(|e| fail("battery", e));
    conformance::case_refused_record_leaves_no_ownership(
        &good,
        &zone,
        &[conformance::wildcard_with_default_txt(&zone)],
    )
    .await
    .unwrap_or_else(|e| fail("refused_record_no_ownership (wildcard with an a-* TXT)", e));
    say(&format!("powerdns: battery passed in {:?}\n{report}", started.elapsed()));
    conformance::case_names_in_any_case(&good, &zone).await.unwrap_or_else(|e| fail("names_in_any_case", e));
    conformance::case_refused_record_leaves_no_ownership(&good, &zone, &[conformance::cname_at_apex(&zone)])
        .await
        .unwrap_or_else(|e| fail("refused_record_no_ownership (CNAME at the apex)", e));

    // Every zone of the server when none are configured.
    let all = powerdns(server.api_port, &[], PDNS_API_KEY);
    match all.zones().await {
        Ok(z) if z.iter().any(|z| z.name == zone_name) => {}
        other => fail("zones() without a zone list", format!("expected {zone_name} among them, got {other:?}")),
    }

    let wrong = powerdns(server.api_port, &[zone_name], "not-the-key");
    let (change, listing) =
        conformance::case_auth_failure(&wrong, &zone).await.unwrap_or_else(|e| fail("auth_failure (wrong API key)", e));
    say(&format!("powerdns: wrong API key:\n  {change}\n  {listing}"));

    let missing = "missing-pdns-http.test";
    let with_missing = powerdns(server.api_port, &[zone_name, missing], PDNS_API_KEY);
    match with_missing.zones().await {
        Err(ProviderError::ZoneNotFound(m)) if m.contains(missing) && !m.contains(zone_name) => {}
        other => fail("zones() with a zone the server does not hold", format!("expected ZoneNotFound, got {other:?}")),
    }
    match with_missing.records(&Zone::named(missing)).await {
        Err(ProviderError::ZoneNotFound(_)) => {}
        other => fail("records() of a zone the server does not hold", format!("expected ZoneNotFound, got {other:?}")),
    }

    let down = powerdns(free_port(), &[zone_name], PDNS_API_KEY);
    let took = conformance::case_unreachable(&down, &zone, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| fail("unreachable", e));
    say(&format!("powerdns: a stopped API was reported Unreachable after {took:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powerdns_http_api_passes_the_conformance_battery() {
    if tokio::time::timeout(TEST_DEADLINE, powerdns_battery()).await.is_err() {
        panic!("powerdns: the conformance battery did not finish within {TEST_DEADLINE:?}");
    }
}

/// The reference webhook server (`e2e/webhook/server.py`, Python stdlib only), stopped with
/// SIGTERM when dropped.
struct Webhook {
    child: Child,
    port: u16,
}

impl Webhook {
    fn start(domains: &[&str], extra: &[&str]) -> Webhook {
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/webhook/server.py"))
            .arg("--port")
            .arg(port.to_string());
        for d in domains {
            cmd.arg("--domain").arg(d);
        }
        cmd.args(extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 e2e/webhook/server.py failed (python3 is needed)");
        let mut hook = Webhook { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || matches!(hook.child.try_wait(), Ok(Some(_))) {
                panic!("the reference webhook did not come up on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        hook
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Makes the next `count` requests to `route` fail with `status` (-1: until reset).
    async fn fail(&self, route: &str, status: u16, count: i32) {
        let body =
            serde_json::json!({"route": route, "status": status, "count": count, "body": "injected by the test"});
        let r = reqwest::Client::new().post(format!("{}/_test/fail", self.url())).json(&body).send().await;
        assert!(r.is_ok_and(|r| r.status().is_success()), "setting a failure on the reference webhook failed");
    }

    /// Makes the next `count` requests to `route` be served, then answered with `status`.
    async fn fail_after_apply(&self, route: &str, status: u16, count: i32) {
        let body = serde_json::json!({"route": route, "status": status, "count": count,
            "body": "injected by the test after applying", "after_apply": true});
        let r = reqwest::Client::new().post(format!("{}/_test/fail", self.url())).json(&body).send().await;
        assert!(r.is_ok_and(|r| r.status().is_success()), "setting a failure on the reference webhook failed");
    }

    /// Every request the webhook served so far, as it logged them.
    async fn requests(&self) -> Vec<serde_json::Value> {
        let r = reqwest::get(format!("{}/_test/requests", self.url())).await.expect("asking the reference webhook");
        r.json().await.expect("the request log is JSON")
    }

    async fn reset_failures(&self) {
        // Reset forgets records too; the battery leaves none behind.
        let r = reqwest::Client::new().post(format!("{}/_test/reset", self.url())).send().await;
        assert!(r.is_ok_and(|r| r.status().is_success()), "resetting the reference webhook failed");
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webhook(url: &str, zones: &[&str]) -> WebhookProvider {
    let mut config = WebhookConfig::new(url);
    config.zones = zones.iter().map(|z| z.to_string()).collect();
    config.timeout = Duration::from_secs(5);
    WebhookProvider::new(config).expect("the test provider config is valid")
}

/// The `webhook` provider against the reference webhook server: the battery (zones from the
/// negotiated domain filter), names in any case, adjustendpoints, the webhook's error answers
/// (401, 429, 503, a batch refused by one bad change), and a stopped webhook. Skipped: a
/// CNAME at the apex (a webhook zone has no SOA or NS there, so nothing forbids it).
async fn webhook_battery() {
    let zone_name = "conformance-webhook.test";
    let hook = Webhook::start(&[zone_name], &["--exclude", &format!("excluded.{zone_name}"), "--min-ttl", "60"]);
    let zone = Zone::named(zone_name);
    let p = webhook(&hook.url(), &[]);
    match p.zones().await {
        Ok(z) if z == vec![zone.clone()] => {}
        other => panic!("webhook: zones() from the domain filter: expected [{zone_name}], got {other:?}"),
    }
    let started = Instant::now();
    let report = conformance::run_all(&p, &zone).await.unwrap_or_else(|e| panic!("webhook: battery: {e}"));
    say(&format!("webhook: battery passed in {:?}\n{report}", started.elapsed()));
    conformance::case_names_in_any_case(&p, &zone).await.unwrap_or_else(|e| panic!("webhook: names_in_any_case: {e}"));

    // adjustendpoints: the reference webhook raises TTLs below 60.
    let short = Endpoint::new(format!("short.{zone_name}"), RecordType::A, vec!["192.0.2.5".into()]).with_ttl(30);
    let adjusted = p.adjust_all(vec![short.clone()]).await;
    assert_eq!(adjusted.len(), 1);
    assert_eq!(adjusted[0].iter().map(|e| e.ttl).collect::<Vec<_>>(), vec![Some(60)], "{adjusted:?}");

    // The domain filter's exclusions: refused without a request.
    let excluded = Endpoint::new(format!("a.excluded.{zone_name}"), RecordType::A, vec!["192.0.2.6".into()]);
    let r = p.apply(&zone, &[Change::Create(excluded)]).await;
    assert!(matches!(&r[0], Err(ProviderError::Rejected(m)) if m.contains("excludes")), "{r:?}");

    // Error answers.
    let a =
        |i: u8| Change::Create(Endpoint::new(format!("e{i}.{zone_name}"), RecordType::A, vec![format!("192.0.2.{i}")]));
    hook.fail("POST /records", 503, 1).await;
    let r = p.apply(&zone, &[a(1), a(2)]).await;
    assert!(r.iter().all(|r| matches!(r, Err(e @ ProviderError::Unreachable(_)) if e.is_transient())), "503: {r:?}");
    hook.fail("POST /records", 429, 1).await;
    let r = p.apply(&zone, &[a(1)]).await;
    assert!(matches!(&r[0], Err(ProviderError::Throttled(_))), "429: {r:?}");
    hook.fail("*", 401, -1).await;
    let (change, listing) =
        conformance::case_auth_failure(&p, &zone).await.unwrap_or_else(|e| panic!("webhook: 401: {e}"));
    say(&format!("webhook: 401 answers:\n  {change}\n  {listing}"));
    hook.reset_failures().await;
    // One 400 for a batch of three: the good two still go through, the refused one alone fails.
    hook.fail("POST /records", 400, 1).await;
    hook.fail("POST /records", 400, 1).await;
    let r = p.apply(&zone, &[a(1), a(2), a(3)]).await;
    let ok = r.iter().filter(|r| r.is_ok()).count();
    assert!(ok == 2 && matches!(&r[0], Err(ProviderError::Rejected(_))), "one refused batch, then singles: {r:?}");
    let held = p.records(&zone).await.expect("listing");
    assert_eq!(held.len(), 2, "{held:?}");
    let cleanup: Vec<Change> = held.into_iter().map(Change::Delete).collect();
    assert!(p.apply(&zone, &cleanup).await.iter().all(|r| r.is_ok()));

    // Applied, answer lost: the webhook writes, then answers 500; the retry finds its own
    // records and reports success instead of "already exists".
    let lost = Endpoint::new(format!("lost.{zone_name}"), RecordType::A, vec!["192.0.2.50".into()]).with_ttl(300);
    hook.fail_after_apply("POST /records", 500, 1).await;
    let r = p.apply(&zone, &[Change::Create(lost.clone())]).await;
    assert!(matches!(&r[0], Err(e @ ProviderError::Unreachable(_)) if e.is_transient()), "500 after applying: {r:?}");
    let expanded = vec![extdns::dns::registry::Expanded {
        index: 0,
        role: extdns::dns::registry::Role::Data,
        change: Change::Create(lost.clone()),
    }];
    let r = extdns::dns::apply::apply_with_ownership(&p, &zone, &expanded).await;
    assert_eq!(r, vec![Ok(Applied::Live)], "the retry of a create applied with its answer lost");
    let r = p.apply(&zone, &[Change::Delete(lost)]).await;
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");

    // Zones from the spec; a webhook answering a foreign media type is misconfigured.
    let named = webhook(&hook.url(), &["other.test"]);
    assert_eq!(named.zones().await, Ok(vec![Zone::named("other.test")]));
    let down = webhook(&format!("http://127.0.0.1:{}", free_port()), &[zone_name]);
    let took = conformance::case_unreachable(&down, &zone, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("webhook: unreachable: {e}"));
    say(&format!("webhook: a stopped webhook was reported Unreachable after {took:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_passes_the_conformance_battery() {
    if tokio::time::timeout(TEST_DEADLINE, webhook_battery()).await.is_err() {
        panic!("webhook: the conformance battery did not finish within {TEST_DEADLINE:?}");
    }
}

/// What external-dns's OpenAPI file (`api/webhook.yaml` of kubernetes-sigs/external-dns)
/// says about the requests a webhook client sends, copied from it: the operations, the media
/// type of every request and answer body, the properties of the `changes` schema (POST
/// /records) and of the `endpoint` schema with their types.
mod webhook_openapi {
    /// `paths`: operationId negotiate, getRecords, setRecords, adjustRecords.
    pub const OPERATIONS: [(&str, &str); 4] =
        [("GET", "/"), ("GET", "/records"), ("POST", "/records"), ("POST", "/adjustendpoints")];
    /// The only `content` key of every requestBody and 200 answer.
    pub const MEDIA_TYPE: &str = "application/external.dns.webhook+json;version=1";
    /// `components.schemas.changes.properties`, each `$ref: endpoints` (an array of endpoint).
    pub const CHANGES: [&str; 4] = ["create", "updateOld", "updateNew", "delete"];
    /// `components.schemas.endpoint.properties` and their types.
    pub const ENDPOINT: [(&str, &str); 7] = [
        ("dnsName", "string"),
        ("targets", "array of string"),
        ("recordType", "string"),
        ("setIdentifier", "string"),
        ("recordTTL", "integer"),
        ("labels", "object of string"),
        ("providerSpecific", "array of providerSpecificProperty"),
    ];
    /// `components.schemas.providerSpecificProperty.properties`, both strings.
    pub const PROVIDER_SPECIFIC: [&str; 2] = ["name", "value"];
}

/// Whether `v` is an `endpoint` of the OpenAPI file; the reason when not.
fn check_openapi_endpoint(v: &Value) -> Result<(), String> {
    use webhook_openapi::{ENDPOINT, PROVIDER_SPECIFIC};
    let obj = v.as_object().ok_or_else(|| format!("an endpoint must be an object: {v}"))?;
    for (k, val) in obj {
        let ty = ENDPOINT.iter().find(|(name, _)| name == k).map(|(_, t)| *t);
        let ok = match ty {
            None => return Err(format!("endpoint property {k:?} is not in the schema: {v}")),
            Some("string") => val.is_string(),
            Some("integer") => val.is_i64() || val.is_u64(),
            Some("array of string") => val.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Some("object of string") => val.as_object().is_some_and(|o| o.values().all(Value::is_string)),
            Some(_) => val.as_array().is_some_and(|a| {
                a.iter().all(|p| {
                    p.as_object().is_some_and(|o| {
                        o.iter().all(|(pk, pv)| PROVIDER_SPECIFIC.contains(&pk.as_str()) && pv.is_string())
                    })
                })
            }),
        };
        if !ok {
            return Err(format!("endpoint property {k:?} is not a {}: {v}", ty.unwrap_or_default()));
        }
    }
    Ok(())
}

/// Whether one logged request is as the OpenAPI file describes it; the reason when not.
fn check_openapi_request(r: &Value) -> Result<(), String> {
    use webhook_openapi::{CHANGES, MEDIA_TYPE, OPERATIONS};
    let (method, path) = (r["method"].as_str().unwrap_or(""), r["path"].as_str().unwrap_or(""));
    if !OPERATIONS.contains(&(method, path)) {
        return Err(format!("{method} {path} is no operation of the OpenAPI file"));
    }
    if r["accept"].as_str() != Some(MEDIA_TYPE) {
        return Err(format!("{method} {path}: Accept {} is not {MEDIA_TYPE}", r["accept"]));
    }
    if method != "POST" {
        return Ok(());
    }
    if r["content_type"].as_str() != Some(MEDIA_TYPE) {
        return Err(format!("{method} {path}: Content-Type {} is not {MEDIA_TYPE}", r["content_type"]));
    }
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap_or(""))
        .map_err(|e| format!("{method} {path}: the body is not JSON: {e}"))?;
    let endpoints: Vec<&Value> = if path == "/records" {
        let obj = body.as_object().ok_or_else(|| format!("POST /records: changes must be an object: {body}"))?;
        let mut all = Vec::new();
        for (k, v) in obj {
            if !CHANGES.contains(&k.as_str()) {
                return Err(format!("POST /records: {k:?} is not a property of the changes schema {CHANGES:?}"));
            }
            all.extend(v.as_array().ok_or_else(|| format!("POST /records: {k} must be an array"))?);
        }
        all
    } else {
        body.as_array().ok_or_else(|| format!("POST {path}: endpoints must be an array"))?.iter().collect()
    };
    endpoints.into_iter().try_for_each(|e| check_openapi_endpoint(e).map_err(|m| format!("{method} {path}: {m}")))
}

/// Every request the webhook client sends (negotiation, listings, creates, updates, deletes,
/// adjustendpoints, ownership TXT records) holds to external-dns's OpenAPI file: its
/// operations, its media type as Accept and Content-Type, the `changes` and `endpoint` property
/// names and types. The reference webhook decodes exactly those names, so a change set under
/// other names would be refused there too.
#[tokio::test]
async fn webhook_requests_hold_to_external_dns_openapi_file() {
    let zone_name = "contract-webhook.test";
    let hook = Webhook::start(&[zone_name], &[]);
    let p = webhook(&hook.url(), &[]);
    let zone = Zone::named(zone_name);
    assert_eq!(p.zones().await, Ok(vec![zone.clone()]));
    let mut web = Endpoint::new(format!("web.{zone_name}"), RecordType::A, vec!["192.0.2.1".into()]).with_ttl(60);
    web.labels.insert(label::OWNER.into(), "contract".into());
    web.labels.insert(label::RESOURCE.into(), "crd/ns/web".into());
    web.provider_specific.push(ProviderSpecificProperty { name: "webhook/x".into(), value: "1".into() });
    let registry = extdns::dns::registry::TxtRegistry::new(extdns::dns::registry::TxtRegistryConfig {
        owner_id: "contract".into(),
        ..Default::default()
    })
    .expect("registry");
    let view = registry.view_in_zone(p.records(&zone).await.expect("records"), zone_name);
    let expanded = registry.expand(&view, &[Change::Create(web.clone())]);
    let r = extdns::dns::apply::apply_with_ownership(&p, &zone, &expanded).await;
    assert!(r.iter().all(|r| r.is_ok()), "create through the registry: {r:?}");
    let moved = Endpoint { targets: vec!["192.0.2.2".into()], ..web.clone() };
    let r = p.apply(&zone, &[Change::Update { old: web, new: moved.clone() }]).await;
    assert_eq!(r, vec![Ok(Applied::Live)]);
    assert_eq!(p.adjust_all(vec![moved.clone()]).await.len(), 1);
    let view = registry.view_in_zone(p.records(&zone).await.expect("records"), zone_name);
    let held = view.endpoints.iter().find(|e| e.record_type == RecordType::A).cloned().expect("web listed");
    let expanded = registry.expand(&view, &[Change::Delete(held)]);
    let r = extdns::dns::apply::apply_with_ownership(&p, &zone, &expanded).await;
    assert!(r.iter().all(|r| r.is_ok()), "delete through the registry: {r:?}");
    assert_eq!(p.records(&zone).await, Ok(vec![]), "everything sent was read and applied");

    let reqs = hook.requests().await;
    let posts: Vec<&Value> = reqs.iter().filter(|r| r["method"] == "POST" && r["path"] == "/records").collect();
    assert_eq!(posts.len(), 5, "TXT, record, update, record delete, TXT delete: {reqs:#?}");
    for r in &reqs {
        if let Err(m) = check_openapi_request(r) {
            panic!("a request breaks external-dns's OpenAPI file: {m}\n{r:#}");
        }
    }
    // The ownership TXT as external-dns's registry sends it: quoted text, no recordTTL, the
    // ownedRecord label naming its record.
    let txt: Value = serde_json::from_str(posts[0]["body"].as_str().unwrap_or("")).expect("JSON");
    assert_eq!(
        txt,
        json!({"create": [{"dnsName": format!("a-web.{zone_name}"), "recordType": "TXT",
            "targets": ["\"heritage=external-dns,external-dns/owner=contract,external-dns/resource=crd/ns/web\""],
            "labels": {"ownedRecord": format!("web.{zone_name}")},
            "providerSpecific": [{"name": "webhook/x", "value": "1"}]}]})
    );
    let record: Value = serde_json::from_str(posts[1]["body"].as_str().unwrap_or("")).expect("JSON");
    assert_eq!(record["create"][0]["recordTTL"], json!(60), "{record}");
}

// --- Cloudflare, against the local fake API (e2e/cloudflare/fake.py) -----------------------

#[path = "support/cloudflare_fake.rs"]
mod cloudflare_fake;

use cloudflare_fake::FakeCloudflare;
use extdns::dns::providers::cloudflare::{CloudflareConfig, CloudflareProvider};
use serde_json::{json, Value};

const CF_TOKEN: &str = "conformance-token-0123456789";

/// The fake, or `None` (test skipped) when there is no python3 and CI does not require it.
async fn start_fake(zones: &[&str]) -> Option<FakeCloudflare> {
    if !cloudflare_fake::python_available() {
        assert!(std::env::var_os(REQUIRE_ENV).is_none(), "python3 is missing and {REQUIRE_ENV} is set");
        say("\n!!! SKIPPED Cloudflare conformance: no python3 to run e2e/cloudflare/fake.py\n");
        return None;
    }
    Some(FakeCloudflare::start(free_port(), CF_TOKEN, zones).await.unwrap_or_else(|e| panic!("fake Cloudflare: {e}")))
}

fn cf_provider(base_url: String, token: &str, zones: &[&str]) -> CloudflareProvider {
    let mut cfg = CloudflareConfig::new(token);
    cfg.base_url = base_url;
    cfg.zone_names = zones.iter().map(|z| z.to_string()).collect();
    CloudflareProvider::new(cfg).expect("the test provider config is valid")
}

async fn cloudflare_battery() {
    let zone_name = "conformance-cf.test";
    let Some(fake) = start_fake(&[zone_name]).await else { return };
    let fail = |what: &str, e: String| -> ! {
        panic!("cloudflare: {what}: {e}\n--- fake log (tail) ---\n{}", fake.log_tail())
    };
    let p = cf_provider(fake.base_url(), CF_TOKEN, &[zone_name]);
    let zones = p.zones().await.unwrap_or_else(|e| fail("zones()", e.to_string()));
    let zone =
        zones.into_iter().find(|z| z.name == zone_name).unwrap_or_else(|| fail("zones()", "zone missing".into()));
    assert_eq!(zone.id, fake.zone_id(zone_name).await, "zones are addressed by Cloudflare's id");

    let started = Instant::now();
    let report = conformance::run_all(&p, &zone).await.unwrap_or_else(|e| fail("battery", e));
    say(&format!("cloudflare (fake): battery passed in {:?}\n{report}", started.elapsed()));
    conformance::case_names_in_any_case(&p, &zone).await.unwrap_or_else(|e| fail("names_in_any_case", e));
    // Skipped: refused_record_no_ownership with a CNAME at the apex. Cloudflare accepts one
    // (CNAME flattening), and so does the fake.

    let wrong = cf_provider(fake.base_url(), "not-the-token", &[zone_name]);
    let (change, listing) =
        conformance::case_auth_failure(&wrong, &zone).await.unwrap_or_else(|e| fail("auth_failure", e));
    say(&format!("cloudflare (fake): wrong token:\n  {change}\n  {listing}"));
    match wrong.zones().await {
        Err(ProviderError::AuthFailed(m)) if m.contains("10000") => {}
        other => fail("zones() with a wrong token", format!("expected AuthFailed naming code 10000, got {other:?}")),
    }

    let with_missing = cf_provider(fake.base_url(), CF_TOKEN, &[zone_name, "missing-cf.test"]);
    match with_missing.zones().await {
        Err(ProviderError::ZoneNotFound(m)) if m.contains("missing-cf.test") => {}
        other => {
            fail("zones() naming a zone Cloudflare does not have", format!("expected ZoneNotFound, got {other:?}"))
        }
    }
    match p.records(&Zone { id: "0123456789abcdef0123456789abcdef".into(), name: "gone-cf.test".into() }).await {
        Err(ProviderError::ZoneNotFound(_)) => {}
        other => fail("records() of an unknown zone id", format!("expected ZoneNotFound, got {other:?}")),
    }

    let mut down_cfg = CloudflareConfig::new(CF_TOKEN);
    down_cfg.base_url = format!("http://127.0.0.1:{}/client/v4", free_port());
    down_cfg.max_attempts = 2;
    let down = CloudflareProvider::new(down_cfg).expect("config");
    let took = conformance::case_unreachable(&down, &zone, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| fail("unreachable", e));
    say(&format!("cloudflare: an API where nothing listens was reported Unreachable after {took:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_passes_the_conformance_battery() {
    if tokio::time::timeout(TEST_DEADLINE, cloudflare_battery()).await.is_err() {
        panic!("cloudflare: the conformance battery did not finish within {TEST_DEADLINE:?}");
    }
}

/// The exact requests: a zone lookup by name, one listing and one batch per apply, the token
/// as a Bearer header, record bodies as Cloudflare documents them.
#[tokio::test]
async fn cloudflare_sends_exactly_the_documented_requests() {
    let zone_name = "requests-cf.test";
    let Some(fake) = start_fake(&[zone_name]).await else { return };
    let p = cf_provider(fake.base_url(), CF_TOKEN, &[zone_name]);
    let id = fake.zone_id(zone_name).await;
    fake.clear_requests().await;
    let zone = p.zones().await.expect("zones").remove(0);
    let web = Endpoint::new(format!("web.{zone_name}"), RecordType::A, vec!["192.0.2.1".into(), "192.0.2.2".into()])
        .with_ttl(300);
    let results = p.apply(&zone, &[Change::Create(web.clone())]).await;
    assert_eq!(results, vec![Ok(Applied::Live)]);

    let reqs = fake.requests().await;
    let shape: Vec<(String, String, Value)> = reqs
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or("").to_string(),
                r["path"].as_str().unwrap_or("").to_string(),
                r["query"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("GET".into(), "/client/v4/zones".into(), json!({"name": zone_name, "page": "1", "per_page": "50"})),
            ("GET".into(), format!("/client/v4/zones/{id}/dns_records"), json!({"page": "1", "per_page": "100"})),
            ("POST".into(), format!("/client/v4/zones/{id}/dns_records/batch"), json!({})),
        ]
    );
    assert!(reqs.iter().all(|r| r["authorization"] == json!(format!("Bearer {CF_TOKEN}"))), "{reqs:?}");
    assert_eq!(
        reqs[2]["body"],
        json!({"posts": [
            {"type": "A", "name": format!("web.{zone_name}"), "content": "192.0.2.1", "ttl": 300, "proxied": false},
            {"type": "A", "name": format!("web.{zone_name}"), "content": "192.0.2.2", "ttl": 300, "proxied": false},
        ]})
    );

    // One value goes, the other is kept and becomes proxied: a delete and a patch, one batch.
    let held = fake.records(zone_name).await;
    let id_of = |content: &str| {
        held.iter()
            .find(|r| r["content"] == json!(content))
            .and_then(|r| r["id"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut proxied = Endpoint::new(format!("web.{zone_name}"), RecordType::A, vec!["192.0.2.2".into()]);
    proxied.provider_specific = vec![ProviderSpecificProperty {
        name: "external-dns.alpha.kubernetes.io/cloudflare-proxied".into(),
        value: "true".into(),
    }];
    fake.clear_requests().await;
    let results = p.apply(&zone, &[Change::Update { old: web, new: proxied.clone() }]).await;
    assert_eq!(results, vec![Ok(Applied::Live)]);
    let reqs = fake.requests().await;
    assert_eq!(reqs.len(), 2, "a listing and one batch: {reqs:?}");
    assert_eq!(
        reqs[1]["body"],
        json!({"deletes": [{"id": id_of("192.0.2.1")}], "patches": [{"id": id_of("192.0.2.2"), "ttl": 1, "proxied": true}]})
    );
    let listed = p.records(&zone).await.expect("records");
    let web = listed.iter().find(|e| e.dns_name == format!("web.{zone_name}")).expect("web listed");
    assert_eq!((web.targets.clone(), web.ttl), (vec!["192.0.2.2".to_string()], Some(1)));
    assert_eq!(web.provider_specific("external-dns.alpha.kubernetes.io/cloudflare-proxied"), Some("true"));
    assert_eq!(p.adjust(proxied.clone()), vec![web.clone()], "adjust says what listing will show: no churn");
}

/// 429 with Retry-After is waited out and retried; 5xx is retried for reads, never for a
/// batch (it may have been applied), and reported Unreachable.
#[tokio::test]
async fn cloudflare_throttling_and_outages() {
    let zone_name = "throttle-cf.test";
    let Some(fake) = start_fake(&[zone_name]).await else { return };
    let p = cf_provider(fake.base_url(), CF_TOKEN, &[zone_name]);
    let zone = p.zones().await.expect("zones").remove(0);
    let a = |name: &str| Endpoint::new(format!("{name}.{zone_name}"), RecordType::A, vec!["192.0.2.9".into()]);

    fake.clear_requests().await;
    fake.fail(429, 1, "dns_records/batch", Some(1)).await;
    assert_eq!(p.apply(&zone, &[Change::Create(a("slow"))]).await, vec![Ok(Applied::Live)]);
    let batches: Vec<Value> =
        fake.requests().await.into_iter().filter(|r| r["path"].as_str().unwrap_or("").ends_with("/batch")).collect();
    assert_eq!(batches.iter().map(|r| r["status"].as_u64().unwrap_or(0)).collect::<Vec<_>>(), vec![429, 200]);
    let waited = batches[1]["time"].as_f64().unwrap_or(0.0) - batches[0]["time"].as_f64().unwrap_or(0.0);
    assert!(waited >= 0.99, "the retry came {waited:.3} s after a Retry-After of 1 s");

    let mut cfg = CloudflareConfig::new(CF_TOKEN);
    cfg.base_url = fake.base_url();
    cfg.max_attempts = 2;
    let impatient = CloudflareProvider::new(cfg).expect("config");
    fake.fail(429, 2, "dns_records/batch", Some(0)).await;
    match impatient.apply(&zone, &[Change::Create(a("throttled"))]).await.as_slice() {
        [Err(e @ ProviderError::Throttled(m))] if e.is_transient() && m.contains("971") => {}
        other => panic!("429 twice with 2 attempts: expected Throttled naming code 971, got {other:?}"),
    }

    fake.clear_requests().await;
    fake.fail(502, 1, "dns_records", None).await;
    assert!(p.records(&zone).await.is_ok(), "a listing is retried after a 502");
    assert_eq!(fake.requests().await.len(), 2);

    fake.clear_requests().await;
    fake.fail(500, 1, "dns_records/batch", None).await;
    match p.apply(&zone, &[Change::Create(a("outage"))]).await.as_slice() {
        [Err(e @ ProviderError::Unreachable(_))] if e.is_transient() => {}
        other => panic!("500 on a batch: expected Unreachable, got {other:?}"),
    }
    let batches =
        fake.requests().await.into_iter().filter(|r| r["path"].as_str().unwrap_or("").ends_with("/batch")).count();
    assert_eq!(batches, 1, "a batch is not resent after a 5xx");
    let held: Vec<String> =
        fake.records(zone_name).await.iter().filter_map(|r| r["name"].as_str().map(str::to_string)).collect();
    assert_eq!(held, vec![format!("slow.{zone_name}")], "nothing else was written");
}

/// Applied, answer lost: Cloudflare commits a batch and answers 502. The batch is not resent
/// (it may have been applied), and the retry, finding the record it wanted, is done instead of
/// refused as "already exists".
#[tokio::test]
async fn cloudflare_batch_applied_with_its_answer_lost_heals_on_the_retry() {
    let zone_name = "lost-cf.test";
    let Some(fake) = start_fake(&[zone_name]).await else { return };
    let p = cf_provider(fake.base_url(), CF_TOKEN, &[zone_name]);
    let zone = p.zones().await.expect("zones").remove(0);
    let lost = Endpoint::new(format!("lost.{zone_name}"), RecordType::TXT, vec!["some \"text\"".into()]).with_ttl(300);
    fake.fail_after_apply(502, 1, "dns_records/batch").await;
    match p.apply(&zone, &[Change::Create(lost.clone())]).await.as_slice() {
        [Err(e @ ProviderError::Unreachable(_))] if e.is_transient() => {}
        other => panic!("502 after committing a batch: expected Unreachable, got {other:?}"),
    }
    let held: Vec<Value> = fake.records(zone_name).await;
    assert_eq!(held.len(), 1, "the fake committed the batch: {held:?}");
    assert_eq!(held[0]["content"], json!("\"some \\\"text\\\"\""), "TXT content quoted on the wire");
    let expanded = vec![extdns::dns::registry::Expanded {
        index: 0,
        role: extdns::dns::registry::Role::Data,
        change: Change::Create(lost.clone()),
    }];
    let r = extdns::dns::apply::apply_with_ownership(&p, &zone, &expanded).await;
    assert_eq!(r, vec![Ok(Applied::Live)], "the retry finds the record it wanted");
    assert_eq!(fake.records(zone_name).await.len(), 1, "and writes no second one");
    let listed = p.records(&zone).await.expect("records");
    assert_eq!(
        listed.iter().map(|e| e.targets.clone()).collect::<Vec<_>>(),
        vec![lost.targets.clone()],
        "read back unquoted"
    );
}

// --- Azure DNS and Azure Private DNS, against the local fake ARM API (e2e/azure/fake.py) --------

#[path = "support/azure_fake.rs"]
mod azure_fake;

use azure_fake::FakeAzure;
use extdns::dns::providers::azure::{AzureConfig, AzureProvider, Credential, Flavour};

const AZ_ZONE: &str = "conformance-az.test";
const AZ_PRIVATE_ZONE: &str = "conformance-azpriv.test";

/// The fake, or `None` (test skipped) when python3 or openssl is missing and CI does not
/// require them. A small page size, so that every listing follows nextLink.
async fn start_azure(zones: &[&str], private_zones: &[&str]) -> Option<FakeAzure> {
    if !azure_fake::tools_available() {
        assert!(std::env::var_os(REQUIRE_ENV).is_none(), "python3 or openssl is missing and {REQUIRE_ENV} is set");
        say("\n!!! SKIPPED Azure conformance: no python3 or openssl to run e2e/azure/fake.py\n");
        return None;
    }
    Some(FakeAzure::start(free_port(), zones, private_zones, 50).await.unwrap_or_else(|e| panic!("fake Azure: {e}")))
}

fn az_config(fake: &FakeAzure, flavour: Flavour, secret: &str) -> AzureConfig {
    let credential = Credential::ClientSecret {
        tenant_id: azure_fake::TENANT.into(),
        client_id: azure_fake::CLIENT_ID.into(),
        client_secret: secret.into(),
    };
    let mut cfg = AzureConfig::new(flavour, azure_fake::SUBSCRIPTION, credential);
    cfg.resource_group = Some(azure_fake::RESOURCE_GROUP.into());
    cfg.resource_manager = fake.base_url();
    cfg.authority_host = fake.base_url();
    cfg.ca_bundle = Some(fake.ca_pem.clone());
    cfg
}

fn az_provider(fake: &FakeAzure, flavour: Flavour) -> AzureProvider {
    AzureProvider::new(az_config(fake, flavour, azure_fake::CLIENT_SECRET)).expect("the test provider config is valid")
}

async fn az_zone(p: &AzureProvider, name: &str) -> Zone {
    let zones = p.zones().await.unwrap_or_else(|e| panic!("zones(): {e}"));
    zones.into_iter().find(|z| z.name == name).unwrap_or_else(|| panic!("zone {name} is not listed"))
}

async fn azure_public_battery() {
    let Some(fake) = start_azure(&[AZ_ZONE], &[]).await else { return };
    let fail =
        |what: &str, e: String| -> ! { panic!("azure: {what}: {e}\n--- fake log (tail) ---\n{}", fake.log_tail()) };
    let p = az_provider(&fake, Flavour::Public);
    let zone = az_zone(&p, AZ_ZONE).await;
    assert!(zone.id.ends_with(&format!("/providers/Microsoft.Network/dnszones/{AZ_ZONE}")), "{}", zone.id);

    let started = Instant::now();
    let report = conformance::run_all(&p, &zone).await.unwrap_or_else(|e| fail("battery", e));
    say(&format!("azure (fake): battery passed in {:?}\n{report}", started.elapsed()));
    conformance::case_names_in_any_case(&p, &zone).await.unwrap_or_else(|e| fail("names_in_any_case", e));
    // Azure refuses a CNAME at the apex (it holds the SOA and NS), and one beside an A.
    let refused = [conformance::cname_beside_data(&zone), conformance::cname_at_apex(&zone)];
    conformance::case_refused_record_leaves_no_ownership(&p, &zone, &refused)
        .await
        .unwrap_or_else(|e| fail("refused_record_no_ownership (apex CNAME)", e));

    let wrong = AzureProvider::new(az_config(&fake, Flavour::Public, "not-the-secret")).expect("config");
    let (change, listing) =
        conformance::case_auth_failure(&wrong, &zone).await.unwrap_or_else(|e| fail("auth_failure", e));
    say(&format!("azure (fake): wrong client secret:\n  {change}\n  {listing}"));
    assert!(listing.contains("AADSTS7000215"), "Entra ID's code is kept: {listing}");

    let mut missing = az_config(&fake, Flavour::Public, azure_fake::CLIENT_SECRET);
    missing.zones = vec![AZ_ZONE.into(), "missing-az.test".into()];
    match AzureProvider::new(missing).expect("config").zones().await {
        Err(ProviderError::ZoneNotFound(m)) if m.contains("missing-az.test") => {}
        other => fail("zones() naming a zone Azure does not have", format!("expected ZoneNotFound, got {other:?}")),
    }
    let gone = Zone { id: zone.id.replace(AZ_ZONE, "gone-az.test"), name: "gone-az.test".into() };
    match p.records(&gone).await {
        Err(ProviderError::ZoneNotFound(_)) => {}
        other => fail("records() of a zone that is gone", format!("expected ZoneNotFound, got {other:?}")),
    }

    let mut down_cfg = az_config(&fake, Flavour::Public, azure_fake::CLIENT_SECRET);
    down_cfg.resource_manager = format!("https://127.0.0.1:{}", free_port());
    down_cfg.max_attempts = 2;
    let down = AzureProvider::new(down_cfg).expect("config");
    let took = conformance::case_unreachable(&down, &zone, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| fail("unreachable", e));
    say(&format!("azure: an ARM endpoint where nothing listens was reported Unreachable after {took:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_passes_the_conformance_battery() {
    if tokio::time::timeout(TEST_DEADLINE, azure_public_battery()).await.is_err() {
        panic!("azure: the conformance battery did not finish within {TEST_DEADLINE:?}");
    }
}

/// Azure Private DNS: the battery without `each_type_lifecycle` (Private DNS has no NS and no
/// CAA record sets), whose other types are checked here instead, and NS and CAA refused
/// before anything is sent.
async fn azure_private_battery() {
    let Some(fake) = start_azure(&[], &[AZ_PRIVATE_ZONE]).await else { return };
    let fail = |what: &str, e: String| -> ! {
        panic!("azure private: {what}: {e}\n--- fake log (tail) ---\n{}", fake.log_tail())
    };
    let p = az_provider(&fake, Flavour::Private);
    let zone = az_zone(&p, AZ_PRIVATE_ZONE).await;
    assert!(
        zone.id.ends_with(&format!("/providers/Microsoft.Network/privateDnsZones/{AZ_PRIVATE_ZONE}")),
        "{}",
        zone.id
    );
    let report =
        conformance::run_all_except(&p, &zone, &["each_type_lifecycle"]).await.unwrap_or_else(|e| fail("battery", e));
    say(&format!("azure private (fake): battery passed\n{report}"));
    conformance::case_names_in_any_case(&p, &zone).await.unwrap_or_else(|e| fail("names_in_any_case", e));

    let n = |l: &str| format!("{l}.types.{AZ_PRIVATE_ZONE}");
    let ep = |name: String, rt: RecordType, t: &str| Endpoint::new(name, rt, vec![t.to_string()]).with_ttl(300);
    let pairs = vec![
        (ep(n("a"), RecordType::A, "10.0.0.1"), ep(n("a"), RecordType::A, "10.0.0.2")),
        (ep(n("aaaa"), RecordType::AAAA, "fd00::1"), ep(n("aaaa"), RecordType::AAAA, "fd00::2")),
        (ep(n("cname"), RecordType::CNAME, &n("a")), ep(n("cname"), RecordType::CNAME, &n("aaaa"))),
        (ep(n("mx"), RecordType::MX, "10 mx1.example.org"), ep(n("mx"), RecordType::MX, "20 mx2.example.org")),
        (ep(n("ptr"), RecordType::PTR, "host.example.org"), ep(n("ptr"), RecordType::PTR, "other.example.org")),
        (
            ep(n("_sip._tcp"), RecordType::SRV, "0 5 5060 sip.example.org"),
            ep(n("_sip._tcp"), RecordType::SRV, "1 5 5061 sip.example.org"),
        ),
        (ep(n("txt"), RecordType::TXT, "v=1"), ep(n("txt"), RecordType::TXT, "v=2")),
    ];
    let results = p.apply(&zone, &pairs.iter().map(|(o, _)| Change::Create(o.clone())).collect::<Vec<_>>()).await;
    assert!(results.iter().all(|r| r.is_ok()), "private creates: {results:?}");
    let updates: Vec<Change> = pairs.iter().map(|(o, n)| Change::Update { old: o.clone(), new: n.clone() }).collect();
    assert!(p.apply(&zone, &updates).await.iter().all(|r| r.is_ok()), "private updates");
    let listed = p.records(&zone).await.expect("records");
    for (_, new) in &pairs {
        assert!(
            listed
                .iter()
                .any(|e| e.dns_name == new.dns_name && e.record_type == new.record_type && e.targets == new.targets),
            "{new:?} listed"
        );
    }
    assert!(p
        .apply(&zone, &pairs.iter().map(|(_, n)| Change::Delete(n.clone())).collect::<Vec<_>>())
        .await
        .iter()
        .all(|r| r.is_ok()));
    fake.clear_requests().await;
    for (rt, t) in [(RecordType::NS, "ns1.example.org"), (RecordType::CAA, "0 issue \"letsencrypt.org\"")] {
        match p.apply(&zone, &[Change::Create(ep(n("no"), rt, t))]).await.as_slice() {
            [Err(ProviderError::Rejected(m))] if m.contains("Azure Private DNS has no") => {}
            other => fail("an NS or CAA record in Private DNS", format!("expected Rejected, got {other:?}")),
        }
    }
    assert!(fake.writes().await.is_empty(), "NS and CAA are refused before sending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_private_dns_passes_the_conformance_battery() {
    if tokio::time::timeout(TEST_DEADLINE, azure_private_battery()).await.is_err() {
        panic!("azure private: the conformance battery did not finish within {TEST_DEADLINE:?}");
    }
}

/// The exact requests: one token for many calls, nextLink followed, a create with
/// `If-None-Match: *`, an update and a delete with `If-Match` on the etag just read.
#[tokio::test]
async fn azure_sends_conditional_writes_with_the_etag_read() {
    let Some(fake) = start_azure(&[AZ_ZONE], &[]).await else { return };
    let p = az_provider(&fake, Flavour::Public);
    let zone = az_zone(&p, AZ_ZONE).await;
    for i in 0..60 {
        fake.seed(
            false,
            AZ_ZONE,
            "A",
            &format!("f{i}"),
            json!({"TTL": 300, "ARecords": [{"ipv4Address": "192.0.2.200"}]}),
        )
        .await;
    }
    fake.clear_requests().await;
    let web = Endpoint::new(format!("web.{AZ_ZONE}"), RecordType::A, vec!["192.0.2.1".into()]).with_ttl(300);
    assert_eq!(p.apply(&zone, &[Change::Create(web.clone())]).await, vec![Ok(Applied::Live)]);
    let reqs = fake.requests().await;
    let shape: Vec<(String, String)> = reqs
        .iter()
        .map(|r| (r["method"].as_str().unwrap_or("").into(), r["query"]["$skipToken"].as_str().unwrap_or("").into()))
        .collect();
    assert_eq!(
        shape,
        vec![("GET".into(), "".into()), ("GET".into(), "50".into()), ("PUT".into(), "".into())],
        "{reqs:?}"
    );
    assert!(reqs[2]["path"].as_str().unwrap_or("").ends_with(&format!("/dnszones/{AZ_ZONE}/A/web")), "{:?}", reqs[2]);
    assert_eq!((reqs[2]["if_none_match"].clone(), reqs[2]["if_match"].clone()), (json!("*"), Value::Null));
    assert_eq!(reqs[2]["body"], json!({"properties": {"TTL": 300, "ARecords": [{"ipv4Address": "192.0.2.1"}]}}));
    assert_eq!(reqs[2]["query"]["api-version"], json!("2018-05-01"));

    let etag = |sets: &[Value]| {
        sets.iter().find(|s| s["name"] == json!("web")).map(|s| s["etag"].clone()).unwrap_or(Value::Null)
    };
    let read = etag(&fake.record_sets(false, AZ_ZONE).await);
    fake.clear_requests().await;
    let moved = Endpoint::new(format!("web.{AZ_ZONE}"), RecordType::A, vec!["192.0.2.2".into()]).with_ttl(60);
    assert_eq!(p.apply(&zone, &[Change::Update { old: web, new: moved.clone() }]).await, vec![Ok(Applied::Live)]);
    let put = fake.writes().await;
    assert_eq!((put.len(), put[0]["if_match"].clone()), (1, read), "the update carries the etag read: {put:?}");
    let read = etag(&fake.record_sets(false, AZ_ZONE).await);
    fake.clear_requests().await;
    assert_eq!(p.apply(&zone, &[Change::Delete(moved)]).await, vec![Ok(Applied::Live)]);
    let del = fake.writes().await;
    assert_eq!((del.len(), del[0]["method"].clone(), del[0]["if_match"].clone()), (1, json!("DELETE"), read));

    let tokens = fake.token_requests().await;
    assert_eq!(tokens.len(), 1, "one token for every call: {tokens:?}");
    assert_eq!(tokens[0]["tenant"], json!(azure_fake::TENANT));
    assert_eq!(tokens[0]["client_id"], json!(azure_fake::CLIENT_ID));
    assert_eq!(tokens[0]["scope"], json!(format!("{}/.default", fake.base_url())));
    let foreign = fake
        .record_sets(false, AZ_ZONE)
        .await
        .iter()
        .filter(|s| s["name"].as_str().unwrap_or("").starts_with('f'))
        .count();
    assert_eq!(foreign, 60, "foreign record sets untouched");

    // An alias record set (to an Azure resource) is not listed as extdns's; a create of its
    // name and type is refused by Azure (If-None-Match: *), not overwritten.
    let alias = json!({"TTL": 60, "ARecords": [], "targetResource": {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/ip"}});
    fake.seed(false, AZ_ZONE, "A", "lb", alias.clone()).await;
    assert!(!p.records(&zone).await.expect("records").iter().any(|e| e.dns_name == format!("lb.{AZ_ZONE}")));
    let lb = Endpoint::new(format!("lb.{AZ_ZONE}"), RecordType::A, vec!["192.0.2.3".into()]);
    match p.apply(&zone, &[Change::Create(lb)]).await.as_slice() {
        [Err(ProviderError::Rejected(m))] if m.contains("alias record set") => {}
        other => panic!("a create over an alias record set: expected Rejected, got {other:?}"),
    }
    let held = fake.record_sets(false, AZ_ZONE).await;
    let lb = held.iter().find(|s| s["name"] == json!("lb")).expect("lb");
    assert_eq!(lb["properties"]["targetResource"], alias["targetResource"], "the alias is untouched");
}

/// A record set changed behind extdns's back between its listing and the write is refused by
/// Azure (412) and not overwritten: the write is held up by a 429, and meanwhile somebody
/// changes the record set.
#[tokio::test]
async fn azure_refuses_to_overwrite_a_record_set_changed_behind_its_back() {
    let Some(fake) = start_azure(&[AZ_ZONE], &[]).await else { return };
    let p = az_provider(&fake, Flavour::Public);
    let zone = az_zone(&p, AZ_ZONE).await;
    let old = Endpoint::new(format!("race.{AZ_ZONE}"), RecordType::A, vec!["192.0.2.1".into()]).with_ttl(300);
    assert_eq!(p.apply(&zone, &[Change::Create(old.clone())]).await, vec![Ok(Applied::Live)]);
    fake.fail(429, 1, "/A/race", Some(2)).await;
    let new = Endpoint::new(format!("race.{AZ_ZONE}"), RecordType::A, vec!["192.0.2.2".into()]).with_ttl(300);
    let update = [Change::Update { old, new }];
    let apply = p.apply(&zone, &update);
    let meddle = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        fake.seed(false, AZ_ZONE, "A", "race", json!({"TTL": 300, "ARecords": [{"ipv4Address": "192.0.2.99"}]})).await;
    };
    let (results, ()) = tokio::join!(apply, meddle);
    match results.as_slice() {
        [Err(ProviderError::Rejected(m))] if m.contains("PreconditionFailed") && m.contains("not overwritten") => {}
        other => panic!("a write on a stale etag: expected Rejected naming PreconditionFailed, got {other:?}"),
    }
    let held = fake.record_sets(false, AZ_ZONE).await;
    let race = held.iter().find(|s| s["name"] == json!("race")).expect("race listed");
    assert_eq!(race["properties"]["ARecords"], json!([{"ipv4Address": "192.0.2.99"}]), "the other writer's data stays");
}

/// 429 with Retry-After is waited out and retried; 5xx is retried for reads, never for a
/// write (it may have been applied), and reported Unreachable.
#[tokio::test]
async fn azure_throttling_and_outages() {
    let Some(fake) = start_azure(&[AZ_ZONE], &[]).await else { return };
    let p = az_provider(&fake, Flavour::Public);
    let zone = az_zone(&p, AZ_ZONE).await;
    let a = |name: &str| Endpoint::new(format!("{name}.{AZ_ZONE}"), RecordType::A, vec!["192.0.2.9".into()]);

    fake.clear_requests().await;
    fake.fail(429, 1, "/A/slow", Some(1)).await;
    assert_eq!(p.apply(&zone, &[Change::Create(a("slow"))]).await, vec![Ok(Applied::Live)]);
    let puts = fake.writes().await;
    assert_eq!(puts.iter().map(|r| r["status"].as_u64().unwrap_or(0)).collect::<Vec<_>>(), vec![429, 201]);
    let waited = puts[1]["time"].as_f64().unwrap_or(0.0) - puts[0]["time"].as_f64().unwrap_or(0.0);
    assert!(waited >= 0.99, "the retry came {waited:.3} s after a Retry-After of 1 s");

    let mut cfg = az_config(&fake, Flavour::Public, azure_fake::CLIENT_SECRET);
    cfg.max_attempts = 2;
    let impatient = AzureProvider::new(cfg).expect("config");
    fake.fail(429, 2, "/A/throttled", Some(0)).await;
    match impatient.apply(&zone, &[Change::Create(a("throttled"))]).await.as_slice() {
        [Err(e @ ProviderError::Throttled(m))] if e.is_transient() && m.contains("TooManyRequests") => {}
        other => panic!("429 twice with 2 attempts: expected Throttled, got {other:?}"),
    }

    fake.clear_requests().await;
    fake.fail(502, 1, "/recordsets", None).await;
    assert!(p.records(&zone).await.is_ok(), "a listing is retried after a 502");
    assert_eq!(fake.requests().await.len(), 2);

    fake.clear_requests().await;
    fake.fail(500, 1, "/A/outage", None).await;
    match p.apply(&zone, &[Change::Create(a("outage")), Change::Create(a("after"))]).await.as_slice() {
        [Err(e1 @ ProviderError::Unreachable(_)), Err(ProviderError::Unreachable(_))] if e1.is_transient() => {}
        other => panic!("500 on a write: expected Unreachable for it and the write after it, got {other:?}"),
    }
    assert_eq!(fake.writes().await.len(), 1, "a write is not resent after a 5xx, and the next is not sent");
    let names: Vec<String> = fake
        .record_sets(false, AZ_ZONE)
        .await
        .iter()
        .filter(|s| s["type"].as_str().unwrap_or("").ends_with("/A"))
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, vec!["slow".to_string()], "nothing else was written");
}

/// A zone as external-dns writes it to Azure (ownership TXT record sets of both formats,
/// values with their quotes inside the data, TTL 300 by default): extdns reads it as owned by
/// the same owner id and plans nothing, and the listing writes nothing.
#[tokio::test]
async fn azure_takes_over_an_external_dns_zone_without_writing() {
    use extdns::dns::plan::{plan, Claimant, DesiredRecord, PlanInput, Policy};
    use extdns::dns::registry::{TxtRegistry, TxtRegistryConfig};
    let Some(fake) = start_azure(&[AZ_ZONE], &[]).await else { return };
    let p = az_provider(&fake, Flavour::Public);
    let zone = az_zone(&p, AZ_ZONE).await;
    let owner = "\"heritage=external-dns,external-dns/owner=default,external-dns/resource=service/default/web\"";
    fake.seed(false, AZ_ZONE, "A", "web", json!({"TTL": 300, "ARecords": [{"ipv4Address": "192.0.2.10"}]})).await;
    fake.seed(false, AZ_ZONE, "TXT", "web", json!({"TTL": 300, "TXTRecords": [{"value": [owner]}]})).await;
    fake.seed(false, AZ_ZONE, "TXT", "a-web", json!({"TTL": 300, "TXTRecords": [{"value": [owner]}]})).await;
    fake.seed(false, AZ_ZONE, "CNAME", "www", json!({"TTL": 300, "CNAMERecord": {"cname": "web.conformance-az.test"}}))
        .await;
    fake.seed(
        false,
        AZ_ZONE,
        "TXT",
        "cname-www",
        json!({"TTL": 300, "TXTRecords": [{"value": [owner.replace("service/default/web", "service/default/www")]}]}),
    )
    .await;
    fake.seed(false, AZ_ZONE, "A", "foreign", json!({"TTL": 300, "ARecords": [{"ipv4Address": "192.0.2.66"}]})).await;
    fake.clear_requests().await;

    let registry =
        TxtRegistry::new(TxtRegistryConfig { owner_id: "default".into(), ..Default::default() }).expect("registry");
    let view = registry.view_in_zone(p.records(&zone).await.expect("records"), &zone.name);
    let desired: Vec<DesiredRecord> =
        [("web", RecordType::A, "192.0.2.10", "web"), ("www", RecordType::CNAME, "web.conformance-az.test", "www")]
            .iter()
            .map(|(n, rt, t, svc)| {
                let mut e = Endpoint::new(format!("{n}.{AZ_ZONE}"), *rt, vec![t.to_string()]);
                e.labels.insert(label::RESOURCE.into(), format!("service/default/{svc}"));
                e.labels.insert(label::OWNER.into(), "default".into());
                DesiredRecord {
                    endpoint: std::sync::Arc::new(e),
                    claimant: std::sync::Arc::new(Claimant {
                        created: String::new(),
                        namespace: "default".into(),
                        name: svc.to_string(),
                    }),
                }
            })
            .collect();
    let out = plan(&PlanInput {
        desired: &desired,
        current: &view.endpoints,
        policy: Policy::Sync,
        owner_id: Some("default"),
        managed_types: &[RecordType::A, RecordType::AAAA, RecordType::CNAME],
        default_ttl: 300,
        orphan_claims: &Default::default(),
    });
    assert!(out.changes.is_empty(), "the takeover plans nothing: {:?}", out.changes);
    assert!(registry.missing_new_format(&view).is_empty(), "both formats are there already");
    let foreign = view.endpoints.iter().find(|e| e.dns_name == format!("foreign.{AZ_ZONE}")).expect("foreign listed");
    assert!(!foreign.labels.contains_key(label::OWNER), "the foreign record has no owner");
    assert!(fake.writes().await.is_empty(), "reading the zone wrote nothing");

    // What extdns writes, external-dns reads: the ownership value with its quotes inside.
    let later = {
        let mut e = Endpoint::new(format!("later.{AZ_ZONE}"), RecordType::A, vec!["192.0.2.11".into()]);
        e.labels.insert(label::OWNER.into(), "default".into());
        e.labels.insert(label::RESOURCE.into(), "service/default/later".into());
        e
    };
    let expanded = registry.expand(&view, &[Change::Create(later)]);
    let results = extdns::dns::apply::apply_with_ownership(&p, &zone, &expanded).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let sets = fake.record_sets(false, AZ_ZONE).await;
    let txt = sets.iter().find(|s| s["name"] == json!("a-later")).expect("a-later written");
    assert_eq!(
        txt["properties"]["TXTRecords"],
        json!([{"value": ["\"heritage=external-dns,external-dns/owner=default,external-dns/resource=service/default/later\""]}])
    );
}

/// The operator's own identities: a workload identity's federated token (read from its file,
/// sent as the client assertion) and a managed identity through IMDS (`Metadata: true`,
/// `resource`, `expires_in` as a string); a wrong assertion is `AuthFailed`.
#[tokio::test]
async fn azure_workload_and_managed_identities_get_tokens() {
    let Some(fake) = start_azure(&[AZ_ZONE], &[]).await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, format!("{}\n", azure_fake::FEDERATED_TOKEN)).expect("token file");
    let with = |credential: Credential| {
        let mut cfg = az_config(&fake, Flavour::Public, azure_fake::CLIENT_SECRET);
        cfg.credential = credential;
        AzureProvider::new(cfg).expect("config")
    };
    let workload = with(Credential::WorkloadIdentity {
        tenant_id: azure_fake::TENANT.into(),
        client_id: azure_fake::CLIENT_ID.into(),
        token_file: token_file.clone(),
    });
    let zone = az_zone(&workload, AZ_ZONE).await;
    let managed = with(Credential::ManagedIdentity {
        client_id: Some(azure_fake::CLIENT_ID.into()),
        endpoint: format!("{}/metadata/identity/oauth2/token", fake.base_url()),
    });
    assert!(managed.records(&zone).await.is_ok(), "a managed identity's token is accepted");
    let tokens = fake.token_requests().await;
    let shape: Vec<(Value, Value, Value)> =
        tokens.iter().map(|t| (t["grant_type"].clone(), t["assertion"].clone(), t["status"].clone())).collect();
    assert_eq!(
        shape,
        vec![(json!("client_credentials"), json!(true), json!(200)), (json!("imds"), json!(false), json!(200))]
    );
    assert_eq!(tokens[1]["scope"], json!(format!("{}/", fake.base_url())), "IMDS takes a resource, not a scope");

    std::fs::write(&token_file, "expired").expect("token file");
    let rotated = with(Credential::WorkloadIdentity {
        tenant_id: azure_fake::TENANT.into(),
        client_id: azure_fake::CLIENT_ID.into(),
        token_file,
    });
    match rotated.records(&zone).await {
        Err(ProviderError::AuthFailed(m)) if m.contains("AADSTS700024") => {}
        other => panic!("a refused client assertion: expected AuthFailed, got {other:?}"),
    }
}

/// The fake answers Microsoft's official Python SDKs (azure-identity, azure-mgmt-dns,
/// azure-mgmt-privatedns, pinned in e2e/azure/venv.sh) as Azure does: see
/// e2e/azure/sdk_check.py. The venv is built on first use.
#[test]
fn azure_fake_answers_the_official_sdks_as_azure_does() {
    if !azure_fake::tools_available() {
        assert!(std::env::var_os(REQUIRE_ENV).is_none(), "python3 or openssl is missing and {REQUIRE_ENV} is set");
        say("\n!!! SKIPPED the Azure SDK check: no python3 or openssl\n");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/azure");
    let venv = Command::new("bash").arg(dir.join("venv.sh")).output().expect("running e2e/azure/venv.sh");
    assert!(venv.status.success(), "e2e/azure/venv.sh failed:\n{}", String::from_utf8_lossy(&venv.stderr));
    let python = String::from_utf8_lossy(&venv.stdout).trim().to_string();
    let out = Command::new(&python).arg(dir.join("sdk_check.py")).output().expect("running sdk_check.py");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("all checks passed"), "sdk_check.py failed:\n{text}");
    say(&format!("azure SDK check:\n{}", text.lines().filter(|l| l.starts_with("ok:")).count()));
}

// --- Google Cloud DNS, against the local fake API (e2e/google/fake.py) ----------------------

#[path = "support/google_fake.rs"]
mod google_fake;

use extdns::dns::providers::google::{Credentials, GoogleConfig, GoogleProvider};
use google_fake::FakeGoogle;

const GCP_PROJECT: &str = "conformance-project";
const GCP_EMAIL: &str = "extdns@conformance-project.iam.gserviceaccount.com";

/// Whether the fake can run here: its venv is built, or can be (CI: `venv.sh` installs
/// python3-venv). False (test skipped) when not and CI does not require it.
fn google_runnable(what: &str) -> bool {
    if google_fake::python_available() || google_fake::venv_built() {
        return true;
    }
    if std::env::var_os(REQUIRE_ENV).is_some() {
        say(&format!("{what}: python3-venv missing and {REQUIRE_ENV} is set: letting e2e/google/venv.sh install it"));
        return true;
    }
    say(&format!(
        "\n!!! SKIPPED {what}: no google venv and no python3 with venv/ensurepip (install python3-venv) \
         or set {REQUIRE_ENV}=1 to make this a failure. !!!\n"
    ));
    false
}

/// The fake with one project holding `zones` (`name=dns.name.`), or `None` when skipped.
async fn start_google(zones: &[&str], extra: &[&str]) -> Option<FakeGoogle> {
    if !google_runnable("Google Cloud DNS conformance") {
        return None;
    }
    let zone_args: Vec<String> = zones.iter().map(|z| format!("{GCP_PROJECT}/{z}")).collect();
    let mut args: Vec<&str> = vec!["--project", GCP_PROJECT];
    for z in &zone_args {
        args.extend(["--zone", z.as_str()]);
    }
    args.extend(extra);
    Some(FakeGoogle::start(free_port(), &args).await.unwrap_or_else(|e| panic!("fake Cloud DNS: {e}")))
}

fn gcp_config(fake: &FakeGoogle, key: String, zones: &[&str]) -> GoogleConfig {
    let mut cfg =
        GoogleConfig::new(Some(GCP_PROJECT.into()), Credentials::ServiceAccountKey { json: key, token_uri: None });
    cfg.endpoint = fake.endpoint();
    cfg.zones = zones.iter().map(|z| z.to_string()).collect();
    cfg.batch_change_interval = Duration::ZERO;
    cfg
}

fn gcp_provider(fake: &FakeGoogle, key: String, zones: &[&str]) -> GoogleProvider {
    GoogleProvider::new(gcp_config(fake, key, zones)).expect("the test provider config is valid")
}

/// `key` with the private key of `other`: a JWT the token endpoint must refuse.
fn forged(key: &str, other: &str) -> String {
    let mut k: Value = serde_json::from_str(key).expect("key JSON");
    let o: Value = serde_json::from_str(other).expect("key JSON");
    k["private_key"] = o["private_key"].clone();
    k["private_key_id"] = o["private_key_id"].clone();
    k.to_string()
}

/// The fake answers what Cloud DNS answers to Google's own Python SDK (e2e/google/sdk_check.py):
/// the fake's behaviour is checked against the real client before extdns is checked against it.
#[test]
fn google_fake_answers_googles_python_sdk_as_cloud_dns_does() {
    if !google_runnable("the Google SDK check of the fake") {
        return;
    }
    let python = google_fake::venv_python().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(&python)
        .arg(google_fake::dir().join("sdk_check.py"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running sdk_check.py: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    say(&format!("google SDK check of the fake:\n{}", text.trim_end()));
    assert!(out.status.success(), "sdk_check.py failed ({}):\n{text}", out.status);
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

async fn google_battery() {
    let zone_name = "conformance-gcp.test";
    let Some(fake) = start_google(&[&format!("conformance-gcp={zone_name}.")], &[]).await else { return };
    let fail =
        |what: &str, e: String| -> ! { panic!("google: {what}: {e}\n--- fake log (tail) ---\n{}", fake.log_tail()) };
    let key = fake.key(GCP_EMAIL, GCP_PROJECT).await;
    let p = gcp_provider(&fake, key.clone(), &[]);
    let zones = p.zones().await.unwrap_or_else(|e| fail("zones()", e.to_string()));
    let zone =
        zones.into_iter().find(|z| z.name == zone_name).unwrap_or_else(|| fail("zones()", "zone missing".into()));
    assert_eq!(zone.id, "conformance-gcp", "zones are addressed by their managed zone name");

    let started = Instant::now();
    let report = conformance::run_all(&p, &zone).await.unwrap_or_else(|e| fail("battery", e));
    say(&format!("google (fake): battery passed in {:?}\n{report}", started.elapsed()));
    conformance::case_names_in_any_case(&p, &zone).await.unwrap_or_else(|e| fail("names_in_any_case", e));
    // A CNAME at the apex sits beside the zone's SOA and NS: refused as a CNAME beside data.
    conformance::case_refused_record_leaves_no_ownership(&p, &zone, &[conformance::cname_at_apex(&zone)])
        .await
        .unwrap_or_else(|e| fail("refused_record_no_ownership (apex CNAME)", e));

    let other = fake.key("someone@conformance-project.iam.gserviceaccount.com", GCP_PROJECT).await;
    let wrong = gcp_provider(&fake, forged(&key, &other), &[]);
    let (change, listing) =
        conformance::case_auth_failure(&wrong, &zone).await.unwrap_or_else(|e| fail("auth_failure", e));
    say(&format!("google (fake): a key the token endpoint refuses:\n  {change}\n  {listing}"));
    assert!(listing.contains("invalid_grant"), "{listing}");

    let stranger = gcp_provider(
        &fake,
        fake.key_without_grant("stranger@elsewhere.iam.gserviceaccount.com", GCP_PROJECT).await,
        &[],
    );
    match stranger.zones().await {
        Err(ProviderError::AuthFailed(m)) if m.contains("403") => {}
        other => fail("zones() of an identity without access", format!("expected AuthFailed (403), got {other:?}")),
    }

    let with_missing = gcp_provider(&fake, key.clone(), &["conformance-gcp", "missing-zone"]);
    match with_missing.zones().await {
        Err(ProviderError::ZoneNotFound(m)) if m.contains("missing-zone") => {}
        other => fail("zones() naming a zone Cloud DNS does not have", format!("expected ZoneNotFound, got {other:?}")),
    }
    match p.records(&Zone { id: "gone-zone".into(), name: "gone-gcp.test".into() }).await {
        Err(ProviderError::ZoneNotFound(_)) => {}
        other => fail("records() of an unknown managed zone", format!("expected ZoneNotFound, got {other:?}")),
    }

    let mut down_cfg = gcp_config(&fake, key.clone(), &[]);
    down_cfg.endpoint = format!("http://127.0.0.1:{}", free_port());
    down_cfg.max_attempts = 2;
    let down = GoogleProvider::new(down_cfg).expect("config");
    let took = conformance::case_unreachable(&down, &zone, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| fail("unreachable", e));
    say(&format!("google: an API where nothing listens was reported Unreachable after {took:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_passes_the_conformance_battery() {
    if tokio::time::timeout(TEST_DEADLINE, google_battery()).await.is_err() {
        panic!("google: the conformance battery did not finish within {TEST_DEADLINE:?}");
    }
}

fn a_record(name: &str, ips: &[&str]) -> Endpoint {
    Endpoint::new(name, RecordType::A, ips.iter().map(|s| s.to_string()).collect()).with_ttl(300)
}

/// One apply is one `changes.create` with additions and deletions together; the token is
/// fetched once (JWT-bearer, as the key's identity) and reused; a pending change propagates
/// until `changes.get` says done.
#[tokio::test]
async fn google_sends_one_change_per_apply_and_reuses_its_token() {
    let zone_name = "requests-gcp.test";
    let Some(fake) = start_google(&[&format!("requests-gcp={zone_name}.")], &["--pending-gets", "1"]).await else {
        return;
    };
    let p = gcp_provider(&fake, fake.key(GCP_EMAIL, GCP_PROJECT).await, &[]);
    let zone = p.zones().await.expect("zones").remove(0);
    let old = a_record(&format!("old.{zone_name}"), &["192.0.2.1"]);
    let gone = a_record(&format!("gone.{zone_name}"), &["192.0.2.2"]);
    let seeded = p.apply(&zone, &[Change::Create(old.clone()), Change::Create(gone.clone())]).await;
    assert!(seeded.iter().all(|r| r.is_ok()), "{seeded:?}");
    p.records(&zone).await.expect("records");

    fake.clear_requests().await;
    let new = a_record(&format!("new.{zone_name}"), &["192.0.2.3"]);
    let moved = a_record(&format!("old.{zone_name}"), &["192.0.2.4", "192.0.2.5"]).with_ttl(60);
    let results =
        p.apply(&zone, &[Change::Create(new), Change::Update { old, new: moved }, Change::Delete(gone)]).await;
    let id = match &results[..] {
        [Ok(Applied::Propagating(a)), Ok(Applied::Propagating(b)), Ok(Applied::Propagating(c))] if a == b && b == c => {
            a.clone()
        }
        other => panic!("expected three Propagating results of one change, got {other:?}"),
    };
    assert!(id.starts_with("requests-gcp/"), "{id}");
    let reqs = fake.requests().await;
    let posts: Vec<&Value> = reqs.iter().filter(|r| r["method"] == json!("POST")).collect();
    assert_eq!(posts.len(), 1, "one changes.create: {reqs:?}");
    assert_eq!(posts[0]["path"], json!(format!("/dns/v1/projects/{GCP_PROJECT}/managedZones/requests-gcp/changes")));
    let rrset = |name: &str, ttl: u32, ips: &[&str]| json!({"name": format!("{name}.{zone_name}."), "type": "A", "ttl": ttl, "rrdatas": ips});
    assert_eq!(
        posts[0]["body"],
        json!({
            "kind": "dns#change",
            "additions": [rrset("new", 300, &["192.0.2.3"]), rrset("old", 60, &["192.0.2.4", "192.0.2.5"])],
            "deletions": [rrset("old", 300, &["192.0.2.1"]), rrset("gone", 300, &["192.0.2.2"])],
        })
    );
    assert!(
        reqs.iter().all(|r| r["authorization"].as_str().is_some_and(|a| a.starts_with("Bearer ya29.fake-"))),
        "every API request carries the access token: {reqs:?}"
    );
    let tokens = fake.tokens().await;
    assert_eq!(tokens.len(), 1, "one token for every call: {tokens:?}");
    assert_eq!(tokens[0]["email"], json!(GCP_EMAIL));
    assert_eq!(tokens[0]["via"], json!("jwt-bearer"));
    assert_eq!(tokens[0]["aud"], json!(fake.token_uri()), "the assertion is for the key's token_uri");
    assert_eq!(tokens[0]["scope"], json!("https://www.googleapis.com/auth/ndev.clouddns.readwrite"));

    assert!(!p.in_sync(&id).await.expect("in_sync"), "pending on the first changes.get");
    assert!(p.in_sync(&id).await.expect("in_sync"), "done on the second");
    let listed = p.records(&zone).await.expect("records");
    let names: Vec<(String, Vec<String>, Option<u32>)> =
        listed.iter().map(|e| (e.dns_name.clone(), e.targets.clone(), e.ttl)).collect();
    assert_eq!(
        names,
        vec![
            (format!("new.{zone_name}"), vec!["192.0.2.3".to_string()], Some(300)),
            (format!("old.{zone_name}"), vec!["192.0.2.4".to_string(), "192.0.2.5".to_string()], Some(60)),
        ]
    );
}

/// Someone changed the zone between our listing and our change: Cloud DNS refuses the whole
/// change (412 for a deletion that no longer matches, 409 for an addition that exists). The
/// change it names is refused (ProviderRejected: the worker lists and plans again), the others
/// go out again without it; nothing is resent as it was.
#[tokio::test]
async fn google_conflicts_refuse_the_changed_record_and_apply_the_rest() {
    let zone_name = "conflict-gcp.test";
    let Some(fake) = start_google(&[&format!("conflict-gcp={zone_name}.")], &[]).await else { return };
    let p = gcp_provider(&fake, fake.key(GCP_EMAIL, GCP_PROJECT).await, &[]);
    let zone = p.zones().await.expect("zones").remove(0);
    let one = a_record(&format!("one.{zone_name}"), &["192.0.2.1"]);
    let two = a_record(&format!("two.{zone_name}"), &["192.0.2.2"]);
    assert!(p
        .apply(&zone, &[Change::Create(one.clone()), Change::Create(two.clone())])
        .await
        .iter()
        .all(|r| r.is_ok()));
    p.records(&zone).await.expect("records");
    // Behind our back: one gets another value, three appears.
    fake.seed(
        GCP_PROJECT,
        "conflict-gcp",
        json!({"name": format!("one.{zone_name}."), "type": "A", "ttl": 300, "rrdatas": ["192.0.2.9"]}),
    )
    .await;
    fake.seed(
        GCP_PROJECT,
        "conflict-gcp",
        json!({"name": format!("three.{zone_name}."), "type": "A", "ttl": 300, "rrdatas": ["192.0.2.8"]}),
    )
    .await;

    fake.clear_requests().await;
    let changes = [
        Change::Update { old: one.clone(), new: a_record(&format!("one.{zone_name}"), &["192.0.2.11"]) },
        Change::Update { old: two.clone(), new: a_record(&format!("two.{zone_name}"), &["192.0.2.12"]) },
        Change::Create(a_record(&format!("three.{zone_name}"), &["192.0.2.13"])),
    ];
    let results = p.apply(&zone, &changes).await;
    match &results[..] {
        [Err(ProviderError::Rejected(a)), Ok(_), Err(ProviderError::Rejected(c))] => {
            assert!(a.contains("412 conditionNotMet") && a.contains("listed again"), "{a}");
            assert!(c.contains("409 alreadyExists"), "{c}");
        }
        other => panic!("expected one and three refused, two applied: {other:?}"),
    }
    let posts: Vec<Value> = fake.requests_to("/changes").await;
    let statuses: Vec<u64> = posts.iter().map(|r| r["status"].as_u64().unwrap_or(0)).collect();
    assert_eq!(statuses, vec![412, 409, 200], "each refusal names one entry, which is left out of the next try");
    assert_eq!(posts[2]["body"]["additions"].as_array().map(Vec::len), Some(1), "{:?}", posts[2]);

    // The re-plan, from a new listing, goes through.
    let held = p.records(&zone).await.expect("records");
    let listed_one = held.iter().find(|e| e.dns_name == format!("one.{zone_name}")).cloned().expect("one listed");
    assert_eq!(listed_one.targets, vec!["192.0.2.9"]);
    let again = p
        .apply(
            &zone,
            &[Change::Update { old: listed_one, new: a_record(&format!("one.{zone_name}"), &["192.0.2.11"]) }],
        )
        .await;
    assert!(again[0].is_ok(), "{again:?}");

    // A record written in another spelling (split TXT strings) is deleted as listed.
    fake.seed(
        GCP_PROJECT,
        "conflict-gcp",
        json!({"name": format!("t.{zone_name}."), "type": "TXT", "ttl": 120, "rrdatas": ["\"v=spf1 \" \"-all\""]}),
    )
    .await;
    let held = p.records(&zone).await.expect("records");
    let txt = held.iter().find(|e| e.record_type == RecordType::TXT).cloned().expect("TXT listed");
    assert_eq!(txt.targets, vec!["v=spf1 -all"]);
    assert!(p.apply(&zone, &[Change::Delete(txt)]).await[0].is_ok());
    assert!(!fake.rrsets(GCP_PROJECT, "conflict-gcp").await.iter().any(|r| r["type"] == json!("TXT")));
}

/// Changes are split at the project's per-change limits (projects.get quota), and at
/// batchChangeSize, `batchChangeInterval` apart; each part is one atomic change.
#[tokio::test]
async fn google_splits_changes_at_the_project_limits() {
    let zone_name = "split-gcp.test";
    let Some(fake) = start_google(&[&format!("split-gcp={zone_name}.")], &[]).await else { return };
    fake.settings(json!({"quota": {GCP_PROJECT: {"rrsetAdditionsPerChange": 3, "rrsetDeletionsPerChange": 2, "totalRrdataSizePerChange": 10000}}})).await;
    let mut cfg = gcp_config(&fake, fake.key(GCP_EMAIL, GCP_PROJECT).await, &[]);
    cfg.batch_change_interval = Duration::from_millis(300);
    let p = GoogleProvider::new(cfg).expect("config");
    let zone = p.zones().await.expect("zones").remove(0);
    let eps: Vec<Endpoint> =
        (0..7).map(|i| a_record(&format!("h{i}.{zone_name}"), &[&format!("192.0.2.{i}")])).collect();
    let results = p.apply(&zone, &eps.iter().cloned().map(Change::Create).collect::<Vec<_>>()).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let posts = fake.requests_to("/changes").await;
    let sizes: Vec<usize> = posts.iter().map(|r| r["body"]["additions"].as_array().map_or(0, Vec::len)).collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    let gap = posts[1]["time"].as_f64().unwrap_or(0.0) - posts[0]["time"].as_f64().unwrap_or(0.0);
    assert!(gap >= 0.29, "batchChangeInterval between changes: {gap:.3} s");
    fake.clear_requests().await;
    let results = p.apply(&zone, &eps.iter().cloned().map(Change::Delete).collect::<Vec<_>>()).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let sizes: Vec<usize> = fake
        .requests_to("/changes")
        .await
        .iter()
        .map(|r| r["body"]["deletions"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![2, 2, 2, 1]);
}

/// 429 is waited out and retried (Retry-After when sent); 5xx is retried for reads, never for
/// a change (it may have been applied); a 401 gets one new token; an applied change whose
/// answer was lost is found done on the retry.
#[tokio::test]
async fn google_throttling_outages_and_lost_answers() {
    let zone_name = "throttle-gcp.test";
    let Some(fake) = start_google(&[&format!("throttle-gcp={zone_name}.")], &[]).await else { return };
    let key = fake.key(GCP_EMAIL, GCP_PROJECT).await;
    let p = gcp_provider(&fake, key.clone(), &[]);
    let zone = p.zones().await.expect("zones").remove(0);
    let a = |name: &str| a_record(&format!("{name}.{zone_name}"), &["192.0.2.9"]);

    fake.clear_requests().await;
    fake.fail(429, 1, "/changes", Some(1)).await;
    assert!(p.apply(&zone, &[Change::Create(a("slow"))]).await[0].is_ok());
    let posts = fake.requests_to("/changes").await;
    assert_eq!(posts.iter().map(|r| r["status"].as_u64().unwrap_or(0)).collect::<Vec<_>>(), vec![429, 200]);
    let waited = posts[1]["time"].as_f64().unwrap_or(0.0) - posts[0]["time"].as_f64().unwrap_or(0.0);
    assert!(waited >= 0.99, "the retry came {waited:.3} s after a Retry-After of 1 s");

    let mut cfg = gcp_config(&fake, key.clone(), &[]);
    cfg.max_attempts = 2;
    let impatient = GoogleProvider::new(cfg).expect("config");
    fake.fail(429, 2, "/changes", Some(0)).await;
    match impatient.apply(&zone, &[Change::Create(a("throttled"))]).await.as_slice() {
        [Err(e @ ProviderError::Throttled(m))] if e.is_transient() && m.contains("rateLimitExceeded") => {}
        other => panic!("429 twice with 2 attempts: expected Throttled, got {other:?}"),
    }

    fake.clear_requests().await;
    fake.fail(502, 1, "/rrsets", None).await;
    assert!(p.records(&zone).await.is_ok(), "a listing is retried after a 502");
    assert_eq!(fake.requests_to("/rrsets").await.len(), 2);

    fake.clear_requests().await;
    fake.fail(500, 1, "/changes", None).await;
    match p.apply(&zone, &[Change::Create(a("outage"))]).await.as_slice() {
        [Err(e @ ProviderError::Unreachable(_))] if e.is_transient() => {}
        other => panic!("500 on a change: expected Unreachable, got {other:?}"),
    }
    assert_eq!(fake.requests_to("/changes").await.len(), 1, "a change is not resent after a 5xx");

    // A revoked token: one new token, then the request goes through.
    let before = fake.tokens().await.len();
    fake.fail(401, 1, "/managedZones", None).await;
    assert!(p.zones().await.is_ok());
    assert_eq!(fake.tokens().await.len(), before + 1, "one new token after a 401");
    // A token endpoint that fails once is retried like any read; one that stays down is
    // reported Unreachable after the attempts.
    fake.fail(503, 1, "/token", None).await;
    let fresh = gcp_provider(&fake, key.clone(), &[]);
    assert!(fresh.zones().await.is_ok(), "a listing is retried after the token endpoint's 503");
    let attempts = extdns::dns::providers::google::DEFAULT_MAX_ATTEMPTS;
    fake.fail(503, attempts, "/token", None).await;
    let fresh = gcp_provider(&fake, key.clone(), &[]);
    match fresh.zones().await {
        Err(ProviderError::Unreachable(m)) if m.contains("503") => {}
        other => panic!("the token endpoint answering 503: expected Unreachable, got {other:?}"),
    }

    // Applied, answer lost: the retry finds the record it wanted.
    let lost = Endpoint::new(format!("lost.{zone_name}"), RecordType::TXT, vec!["some \"text\"".into()]).with_ttl(300);
    fake.fail_after_apply(502, 1, "/changes").await;
    match p.apply(&zone, &[Change::Create(lost.clone())]).await.as_slice() {
        [Err(e @ ProviderError::Unreachable(_))] if e.is_transient() => {}
        other => panic!("502 after applying a change: expected Unreachable, got {other:?}"),
    }
    let expanded = vec![extdns::dns::registry::Expanded {
        index: 0,
        role: extdns::dns::registry::Role::Data,
        change: Change::Create(lost.clone()),
    }];
    let r = extdns::dns::apply::apply_with_ownership(&p, &zone, &expanded).await;
    assert_eq!(r, vec![Ok(Applied::Live)], "the retry finds the record it wanted");
    let held: Vec<Value> =
        fake.rrsets(GCP_PROJECT, "throttle-gcp").await.into_iter().filter(|r| r["type"] == json!("TXT")).collect();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["rrdatas"], json!(["\"some \\\"text\\\"\""]), "TXT quoted on the wire");
}
