//! Leader election under the failures that used to split the brain: a leader frozen past
//! its lease and resumed, and an apiserver restart.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use extdns::crd::DNSEndpoint;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::harness::*;
use crate::rfc2136::{rfc2136_provider, Bind};

/// Which process a DNS message came from: a process id among the watched ones, or `None`
/// when the sending socket belongs to none of them.
type Sender = Option<u32>;

/// A UDP+TCP forwarder in front of a DNS server that counts the messages each process sends.
/// The sender of a message is found from its source port: the socket with that local port
/// in /proc/net/{udp,tcp}, and the watched process whose fds include that socket. The client
/// is still waiting for its answer while this runs, so its socket exists.
struct DnsProxy {
    port: u16,
    counts: Arc<Mutex<HashMap<Sender, u64>>>,
    pids: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The inode of the socket whose local port is `port`, from a /proc/net table.
fn socket_inode(table: &str, port: u16) -> Option<String> {
    let text = std::fs::read_to_string(table).ok()?;
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
        (local_port == port).then(|| f.get(9).map(|s| s.to_string())).flatten()
    })
}

fn owner(tables: &[&str], port: u16, pids: &[u32]) -> Sender {
    let inode = tables.iter().find_map(|t| socket_inode(t, port))?;
    let link = format!("socket:[{inode}]");
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == link))
    })
}

impl DnsProxy {
    fn start(upstream: u16) -> DnsProxy {
        let port = port();
        let udp = UdpSocket::bind(("127.0.0.1", port)).expect("proxy UDP port");
        let tcp = TcpListener::bind(("127.0.0.1", port)).expect("proxy TCP port");
        let proxy =
            DnsProxy { port, counts: Arc::default(), pids: Arc::default(), stop: Arc::new(AtomicBool::new(false)) };
        let upstream: SocketAddr = ([127, 0, 0, 1], upstream).into();

        udp.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let (counts, pids, stop) = (proxy.counts.clone(), proxy.pids.clone(), proxy.stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, client)) = udp.recv_from(&mut buf) else { continue };
                let sender = owner(&["/proc/net/udp", "/proc/net/udp6"], client.port(), &lock(&pids));
                *lock(&counts).entry(sender).or_default() += 1;
                let (query, reply) = (buf[..n].to_vec(), udp.try_clone().expect("clone socket"));
                std::thread::spawn(move || {
                    let up = UdpSocket::bind("127.0.0.1:0").expect("upstream socket");
                    up.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
                    let mut answer = [0u8; 65535];
                    if up.send_to(&query, upstream).is_ok() {
                        if let Ok(m) = up.recv(&mut answer) {
                            let _ = reply.send_to(&answer[..m], client);
                        }
                    }
                });
            }
        });

        tcp.set_nonblocking(true).expect("nonblocking");
        let (counts, pids, stop) = (proxy.counts.clone(), proxy.pids.clone(), proxy.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, peer)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let sender = owner(&["/proc/net/tcp", "/proc/net/tcp6"], peer.port(), &lock(&pids));
                let counts = counts.clone();
                std::thread::spawn(move || {
                    let _ = client.set_nonblocking(false);
                    let Ok(up) = TcpStream::connect(upstream) else { return };
                    let (mut from_client, mut to_up) =
                        (client.try_clone().expect("clone"), up.try_clone().expect("clone"));
                    let (mut from_up, mut to_client) = (up, client);
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from_up, &mut to_client);
                    });
                    // Messages on TCP are length-prefixed: count each one.
                    loop {
                        let mut len = [0u8; 2];
                        if from_client.read_exact(&mut len).is_err() {
                            break;
                        }
                        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if from_client.read_exact(&mut msg).is_err() {
                            break;
                        }
                        *lock(&counts).entry(sender).or_default() += 1;
                        if to_up.write_all(&len).and_then(|_| to_up.write_all(&msg)).is_err() {
                            break;
                        }
                    }
                    let _ = to_up.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        proxy
    }

    fn watch(&self, pids: &[u32]) {
        lock(&self.pids).extend_from_slice(pids);
    }

    fn sent_by(&self, sender: Sender) -> u64 {
        lock(&self.counts).get(&sender).copied().unwrap_or(0)
    }

    fn total(&self) -> u64 {
        lock(&self.counts).values().sum()
    }
}

impl Drop for DnsProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A TCP relay between one operator and the apiserver that a test can hold: while held, no
/// byte moves in either direction (as if the network to the apiserver hung), and nothing is
/// lost. The operator reaches the apiserver through it with a kubeconfig of its own.
struct ApiRelay {
    kubeconfig: std::path::PathBuf,
    held: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, held: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16384];
    while !stop.load(Ordering::SeqCst) {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        while held.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

impl ApiRelay {
    fn start(test: &str) -> ApiRelay {
        // The operator's own credentials (the shipped ServiceAccount's token), pointed at the
        // relay; a file of its own, since the harness rewrites `<test>.kubeconfig` on start.
        let source = repo().join("target/e2e").join(format!("{test}.kubeconfig"));
        crate::identity::prepare_operator_blocking(source.clone(), None);
        let mut config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&source).expect("read kubeconfig")).expect("kubeconfig");
        let server = config["clusters"][0]["cluster"]["server"].as_str().expect("server URL").to_string();
        let (base, upstream_port) = server.rsplit_once(':').expect("server URL with a port");
        let upstream: SocketAddr =
            ([127, 0, 0, 1], upstream_port.trim_end_matches('/').parse::<u16>().expect("port")).into();
        let listener = TcpListener::bind(("127.0.0.1", port())).expect("relay port");
        let relay_port = listener.local_addr().expect("addr").port();
        config["clusters"][0]["cluster"]["server"] = format!("{base}:{relay_port}").into();
        let kubeconfig = repo().join("target/e2e").join(format!("{test}.relay.kubeconfig"));
        std::fs::write(&kubeconfig, serde_yaml::to_string(&config).expect("yaml")).expect("write kubeconfig");
        let relay =
            ApiRelay { kubeconfig, held: Arc::new(AtomicBool::new(false)), stop: Arc::new(AtomicBool::new(false)) };
        listener.set_nonblocking(true).expect("nonblocking");
        let (held, stop) = (relay.held.clone(), relay.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(up) = TcpStream::connect(upstream) else { continue };
                let (c2, u2) = (client.try_clone().expect("clone"), up.try_clone().expect("clone"));
                let (h, s) = (held.clone(), stop.clone());
                std::thread::spawn(move || pump(client, up, h, s));
                let (h, s) = (held.clone(), stop.clone());
                std::thread::spawn(move || pump(u2, c2, h, s));
            }
        });
        relay
    }

    fn hold(&self, on: bool) {
        self.held.store(on, Ordering::SeqCst);
    }
}

impl Drop for ApiRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn ensure_operator_namespace(client: &Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api
        .create(&Default::default(), &serde_json::from_value(json!({"metadata": {"name": "extdns-e2e"}})).expect("ns"))
        .await;
}

async fn lease_holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get_opt(name).await.ok()??.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// The operator's log without terminal colours.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Leader election on Lease `lease` as replica `id`, with a lease short enough for a test
/// to see a takeover (6 s, renew deadline 4 s, retry 1 s).
fn short_lease_args(lease: &str, id: &str) -> Vec<String> {
    [
        "--leader-elect",
        "--leader-election-lease",
        lease,
        "--leader-election-lease-duration",
        "6s",
        "--leader-election-renew-deadline",
        "4s",
        "--leader-election-retry-period",
        "1s",
        "--identity",
        id,
    ]
    .map(String::from)
    .to_vec()
}

fn a_record(name: &str, host: &str, ip: &str) -> serde_json::Value {
    dnsendpoint(name, json!([{"dnsName": host, "recordType": "A", "targets": [ip]}]))
}

/// A leader frozen with SIGSTOP past its lease: the follower takes over; resumed with
/// SIGCONT, the old leader sends nothing to the DNS server and writes nothing to the API,
/// although new objects arrive that it would act on as leader.
#[tokio::test]
async fn frozen_leader_resumed_sends_nothing() {
    let client = client().await;
    ensure_operator_namespace(&client).await;
    let ns = TestNs::new(&client, "frozen", json!({})).await;
    let zone = "frozen.e2e.test";
    let bind = Bind::start("leader_frozen", zone);
    let proxy = DnsProxy::start(bind.port);
    let lease_name = format!("e2e-frozen-{}", std::process::id());
    let args = |id: &str| short_lease_args(&lease_name, id);
    let a_args = args("replica-a");
    let b_args = args("replica-b");
    // Each replica reaches the apiserver through a relay the test can hold.
    let (a_api, b_api) = (ApiRelay::start("leader_frozen_a"), ApiRelay::start("leader_frozen_b"));
    let start = |test: &str, args: &[String], relay: &ApiRelay| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let kubeconfig = relay.kubeconfig.display().to_string();
        Operator::start_with_env(test, &args, &[("KUBECONFIG", kubeconfig.as_str())])
    };
    let mut a = start("leader_frozen_a", &a_args, &a_api);
    let mut b = start("leader_frozen_b", &b_args, &b_api);
    proxy.watch(&[a.pid(), b.pid()]);
    // The provider talks to BIND only through the counting proxy.
    rfc2136_provider(&client, &ns.name, zone, proxy.port, "e2e").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "extdns-e2e");
    let first = wait_for("a lease holder", DEADLINE, || {
        let (leases, n) = (leases.clone(), lease_name.clone());
        async move { lease_holder(&leases, &n).await }
    })
    .await;
    let (leader, follower, leader_api) =
        if first == "replica-a" { (&mut a, &mut b, &a_api) } else { (&mut b, &mut a, &b_api) };

    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    apply(&eps, "x", a_record("x", &format!("x.{zone}"), "192.0.2.230")).await;
    wait_condition(&eps, "x", "Ready", "True").await;
    wait_dig(bind.port, &format!("x.{zone}"), "A", &["192.0.2.230"]).await;
    let (old_pid, new_pid) = (leader.pid(), follower.pid());
    assert!(proxy.sent_by(Some(old_pid)) > 0, "the proxy sees the leader's messages: {:?}", lock(&proxy.counts));
    assert_eq!(proxy.sent_by(Some(new_pid)), 0, "the follower sent DNS messages");
    assert_eq!(proxy.sent_by(None), 0, "messages from an unknown sender");
    let written_before = |name: &'static str| {
        let leader = &*leader;
        async move { leader.counter(name, &[]).await }
    };
    let calls_before = written_before("extdns_provider_calls_total").await;
    let statuses_before = written_before("extdns_status_writes_total").await;
    let source_before = written_before("extdns_source_writes_total").await;
    // Records desired cluster-wide as the leader saw them; y, z and web add three.
    let desired_before = written_before("extdns_desired_records").await;

    // Freeze the leader past its lease: the follower takes over and serves a new object.
    leader.signal("-STOP");
    let frozen_at = Instant::now();
    let second = wait_for("the follower to take the lease", DEADLINE, || {
        let (leases, n, first) = (leases.clone(), lease_name.clone(), first.clone());
        async move { lease_holder(&leases, &n).await.filter(|h| *h != first) }
    })
    .await;
    assert_ne!(first, second);
    apply(&eps, "y", a_record("y", &format!("y.{zone}"), "192.0.2.231")).await;
    wait_condition(&eps, "y", "Ready", "True").await;
    wait_dig(bind.port, &format!("y.{zone}"), "A", &["192.0.2.231"]).await;
    let takeover = frozen_at.elapsed();
    assert!(follower.counter("extdns_leader", &[]).await == 1, "the follower leads now");

    let old_sent = proxy.sent_by(Some(old_pid));
    let new_sent = proxy.sent_by(Some(new_pid));
    let unknown_sent = proxy.sent_by(None);
    let total_before = proxy.total();
    // Resume it with its apiserver connections hung: it wakes up to the watch events for y
    // that wait in its sockets, plans a pass with them, and cannot learn from the Lease that
    // it lost. Only the renew deadline on its own clock can stop it from writing y.
    let log_before = std::fs::metadata(&leader.log).map(|m| m.len() as usize).unwrap_or(0);
    leader_api.hold(true);
    leader.signal("-CONT");
    wait_for("the resumed replica, cut off from the apiserver, to plan y", DEADLINE, || {
        let leader = &*leader;
        async move { (leader.counter("extdns_desired_records", &[]).await == desired_before + 1).then_some(()) }
    })
    .await;
    wait_for("the resumed replica's Lease request to time out", DEADLINE, || {
        let log = leader.log.clone();
        async move {
            let text = std::fs::read_to_string(log).ok()?;
            text.get(log_before..)?.contains("Lease request failed").then_some(())
        }
    })
    .await;
    assert_eq!(proxy.sent_by(Some(old_pid)), old_sent, "the resumed old leader sent DNS messages while cut off");
    assert_eq!(leader.counter("extdns_leader", &[]).await, 0, "the resumed replica believes it leads");
    leader_api.hold(false);

    // Then give it work it would do as leader: a DNSEndpoint and a Service.
    apply(&eps, "z", a_record("z", &format!("z.{zone}"), "192.0.2.232")).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    apply(
        &svcs,
        "web",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "annotations": {"external-dns.alpha.kubernetes.io/hostname": format!("web.{zone}")}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}
        }),
    )
    .await;
    svcs.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.233"}]}}})),
    )
    .await
    .expect("patch Service status");
    wait_condition(&eps, "z", "Ready", "True").await;
    wait_condition(&eps, "web-service", "Ready", "True").await;
    wait_dig(bind.port, &format!("z.{zone}"), "A", &["192.0.2.232"]).await;
    wait_dig(bind.port, &format!("web.{zone}"), "A", &["192.0.2.233"]).await;
    // The old leader has seen the new objects in a pass of its own (so it had every
    // chance to act on them) and knows it follows.
    wait_for("the resumed replica to plan the new DNSEndpoints as a follower", DEADLINE, || {
        let leader = &*leader;
        async move {
            let desired = leader.counter("extdns_desired_records", &[]).await;
            let leading = leader.counter("extdns_leader", &[]).await;
            (desired == desired_before + 3 && leading == 0).then_some(())
        }
    })
    .await;
    // And once more, for a change that arrives while it runs normally.
    let passes = leader.counter("extdns_watch_events_total", &["kind=\"DNSEndpoint\""]).await;
    apply(&eps, "z", a_record("z", &format!("z.{zone}"), "192.0.2.234")).await;
    wait_condition(&eps, "z", "Ready", "True").await;
    wait_dig(bind.port, &format!("z.{zone}"), "A", &["192.0.2.234"]).await;
    // A follower routes the change to its workers, which do not act on a backend they do
    // not own: it has seen the event, and sends nothing.
    wait_for("the resumed replica to see the change", DEADLINE, || {
        let leader = &*leader;
        async move { (leader.counter("extdns_watch_events_total", &["kind=\"DNSEndpoint\""]).await > passes).then_some(()) }
    })
    .await;

    let after = lock(&proxy.counts).clone();
    eprintln!(
        "takeover after {takeover:?}; DNS messages after SIGCONT: total {}, by the old leader {}, by the new leader {}, unknown {}",
        proxy.total() - total_before,
        proxy.sent_by(Some(old_pid)) - old_sent,
        proxy.sent_by(Some(new_pid)) - new_sent,
        proxy.sent_by(None) - unknown_sent,
    );
    assert_eq!(proxy.sent_by(Some(old_pid)), old_sent, "the resumed old leader sent DNS messages: {after:?}");
    assert_eq!(proxy.sent_by(None), unknown_sent, "DNS messages from an unknown sender: {after:?}");
    assert!(proxy.sent_by(Some(new_pid)) > 0, "the new leader's messages are seen: {after:?}");
    assert_eq!(leader.counter("extdns_provider_calls_total", &[]).await, calls_before, "old leader called the backend");
    assert_eq!(leader.counter("extdns_status_writes_total", &[]).await, statuses_before, "old leader wrote statuses");
    assert_eq!(leader.counter("extdns_source_writes_total", &[]).await, source_before, "old leader wrote DNSEndpoints");
    assert!(leader.exited().is_none(), "the old leader exited: {}", leader.log_tail());
    assert!(follower.exited().is_none(), "the new leader exited: {}", follower.log_tail());

    ns.cleanup().await;
    let _ = leases.delete(&lease_name, &DeleteParams::default()).await;
}

/// An apiserver restart longer than the renew deadline: the operator loses the Lease, does
/// not exit, its embedded DNS answers throughout, and it leads again afterwards.
/// Issue 19 scenario 8: a leader waiting for a rate-limit token when it is frozen past its
/// lease sends nothing once it resumes: the lease is checked after the wait, right before
/// the message, and what it had queued is dropped.
#[tokio::test]
async fn a_leader_held_at_a_rate_limit_token_sends_nothing_after_losing_the_lease() {
    let client = client().await;
    ensure_operator_namespace(&client).await;
    let ns = TestNs::new(&client, "token", json!({})).await;
    let zone = "token.e2e.test";
    let bind = Bind::start("leader_token", zone);
    let proxy = DnsProxy::start(bind.port);
    let lease_name = format!("e2e-token-{}", std::process::id());
    let args = |id: &str| short_lease_args(&lease_name, id);
    let start = |test: &str, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Operator::start_with(test, &args)
    };
    let mut a = start("leader_token_a", args("replica-a"));
    let mut b = start("leader_token_b", args("replica-b"));
    proxy.watch(&[a.pid(), b.pid()]);
    rfc2136_provider(&client, &ns.name, zone, proxy.port, "e2e").await;
    // One backend call every 5 s: each pass's ownership TXT, record and removal phases wait
    // for tokens in turn.
    let providers: Api<extdns::crd::DNSProvider> = Api::namespaced(client.clone(), &ns.name);
    providers
        .patch(
            "bind",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"rateLimit": {"qps": 0.2, "burst": 1}}})),
        )
        .await
        .expect("rate-limit the provider");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "extdns-e2e");
    let first = wait_for("a lease holder", DEADLINE, || {
        let (leases, n) = (leases.clone(), lease_name.clone());
        async move { lease_holder(&leases, &n).await }
    })
    .await;
    let (leader, follower) = if first == "replica-a" { (&mut a, &mut b) } else { (&mut b, &mut a) };
    let old_pid = leader.pid();

    // The leader sends the new record's ownership TXT, then waits up to 5 s for the token of
    // the record itself: freeze it there.
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let before = proxy.sent_by(Some(old_pid));
    apply(&eps, "x", a_record("x", &format!("x.{zone}"), "192.0.2.240")).await;
    let txt = format!("a-x.{zone}");
    wait_for("the leader to write the ownership TXT", DEADLINE, || {
        let (port, txt) = (bind.port, txt.clone());
        async move { (!dig(port, &txt, "TXT").is_empty()).then_some(()) }
    })
    .await;
    leader.signal("-STOP");
    let sent_when_frozen = proxy.sent_by(Some(old_pid));
    assert!(sent_when_frozen > before, "the leader's TXT went through the proxy");
    let log_before = std::fs::metadata(&leader.log).map(|m| m.len() as usize).unwrap_or(0);
    wait_for("the follower to take the lease", DEADLINE, || {
        let (leases, n, first) = (leases.clone(), lease_name.clone(), first.clone());
        async move { lease_holder(&leases, &n).await.filter(|h| *h != first) }
    })
    .await;
    leader.signal("-CONT");
    wait_for("the resumed replica to drop what it queued", DEADLINE, || {
        let log = leader.log.clone();
        async move {
            let text = std::fs::read_to_string(log).ok()?;
            text.get(log_before..)?.contains("this replica no longer leads").then_some(())
        }
    })
    .await;
    assert_eq!(proxy.sent_by(Some(old_pid)), sent_when_frozen, "the old leader sent a message after losing the lease");
    // The new leader publishes the record.
    wait_dig(bind.port, &format!("x.{zone}"), "A", &["192.0.2.240"]).await;
    assert_eq!(proxy.sent_by(Some(old_pid)), sent_when_frozen);
    assert!(follower.counter("extdns_leader", &[]).await == 1, "the follower leads now");
    ns.cleanup().await;
}

#[tokio::test]
async fn apiserver_restart_keeps_operator_and_embedded_dns() {
    let client = client().await;
    ensure_operator_namespace(&client).await;
    let ns = TestNs::new(&client, "restart-lead", json!({})).await;
    let zone = "restart.e2e.test";
    let dns_port = port();
    let lease_name = format!("e2e-restart-{}", std::process::id());
    // The log is appended to across runs: read only this run's part.
    let log_start =
        std::fs::metadata(repo().join("target/e2e/leader_restart.operator.log")).map_or(0, |m| m.len() as usize);
    // Election on, as in the Deployment, with a renew deadline well inside the outage (the
    // apiserver alone needs ~10 s to start), so that leadership is surely lost and regained.
    let mut op = Operator::start_with(
        "leader_restart",
        &[
            "--leader-elect",
            "--leader-election-lease",
            lease_name.as_str(),
            "--leader-election-lease-duration",
            "4s",
            "--leader-election-renew-deadline",
            "3s",
            "--leader-election-retry-period",
            "1s",
        ],
    );
    apply(
        &Api::<extdns::crd::DNSProvider>::namespaced(client.clone(), &ns.name),
        "dns",
        embedded_provider("dns", zone, dns_port),
    )
    .await;
    let eps: Api<DNSEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let host = format!("before.{zone}");
    apply(&eps, "before", a_record("before", &host, "192.0.2.240")).await;
    wait_condition(&eps, "before", "Ready", "True").await;
    wait_dig(dns_port, &host, "A", &["192.0.2.240"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let digger = {
        let (stop, host) = (stop.clone(), host.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let answer = dig(dns_port, &host, "A");
                if answer == ["192.0.2.240"] {
                    ok += 1;
                } else {
                    failed.push(format!("{:?} after {:?}: {answer:?}", t, t.elapsed()));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (ok, failed)
        })
    };
    let started = Instant::now();
    // Also excuses what the restarted apiserver refuses before its RBAC caches are filled.
    restart_apiserver().await;
    let outage = started.elapsed();
    assert!(op.exited().is_none(), "the operator exited during the restart: {}", op.log_tail());

    // Leads again: a new object is written and served.
    let after = format!("after.{zone}");
    apply(&eps, "after", a_record("after", &after, "192.0.2.241")).await;
    wait_condition(&eps, "after", "Ready", "True").await;
    wait_dig(dns_port, &after, "A", &["192.0.2.241"]).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = digger.join().expect("dig thread");
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    let log = strip_ansi(log.get(log_start..).unwrap_or_default());
    let lost = log.lines().filter(|l| l.contains("leadership changed") && l.contains("leading=false")).count();
    eprintln!("restart took {outage:?}; {ok} dig answers, {} failed; leadership lost {lost} time(s)", failed.len());
    assert!(failed.is_empty(), "embedded DNS did not answer during the restart: {failed:?}");
    assert!(ok > 10, "too few digs ({ok}) to cover the restart");
    assert!(op.exited().is_none(), "the operator exited: {}", op.log_tail());
    assert!(lost >= 1, "the outage did not outlast the renew deadline; nothing was tested");
    assert_eq!(op.counter("extdns_leader", &[]).await, 1, "leads again");

    ns.cleanup().await;
    let _ = Api::<Lease>::namespaced(client.clone(), "extdns-e2e").delete(&lease_name, &DeleteParams::default()).await;
}
