//! `/readyz` tells the truth during start-up: 503 until every cache holds its first listing
//! and the election knows who leads, 200 from then on.

use std::io::{Read, Write};
use std::net::TcpStream;

use tokio::net::{TcpListener, TcpStream as AsyncTcpStream};

use crate::harness::*;

/// Status code and body of `GET path` on the operator's metrics port, once it answers.
pub(crate) fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// Relays connections on `listener` to `upstream` (TLS passes through untouched).
async fn relay(listener: TcpListener, upstream: String) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = AsyncTcpStream::connect(&upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// The operator starts while its apiserver is unreachable (it reaches it through a relay
/// that is not open yet): `/readyz` answers 503, naming what it waits for; once the relay
/// opens, the caches list, the election decides, and `/readyz` answers 200.
#[tokio::test]
async fn readyz_answers_503_until_the_caches_are_listed() {
    let test = "readyz";
    // The operator's ServiceAccount kubeconfig, pointed at the relay's port.
    let relayed = repo().join(format!("target/e2e/{test}.relayed.kubeconfig"));
    crate::identity::prepare_operator_blocking(relayed.clone(), None);
    let mut kc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&relayed).expect("read kubeconfig")).expect("kubeconfig JSON");
    let clusters = kc["clusters"].as_array_mut().expect("clusters");
    let server = clusters[0]["cluster"]["server"].as_str().expect("server").to_string();
    let upstream = server.trim_start_matches("https://").trim_end_matches('/').to_string();
    let relay_port = port();
    for c in clusters.iter_mut() {
        c["cluster"]["server"] = serde_json::json!(format!("https://127.0.0.1:{relay_port}"));
    }
    std::fs::write(&relayed, serde_json::to_string_pretty(&kc).expect("kubeconfig")).expect("write kubeconfig");

    let mut op = Operator::start_with_env(test, &[], &[("KUBECONFIG", relayed.to_str().expect("utf-8 path"))]);
    let metrics_port = op.metrics_port;
    // Nothing can be listed: the first answer is a 503.
    let (code, body) =
        wait_for("the operator's /readyz endpoint", DEADLINE, || async move { get(metrics_port, "/readyz") }).await;
    assert_eq!(code, 503, "ready before anything was listed: {body}\n{}", op.log_tail());
    assert!(body.contains("caches") && body.contains("leader election"), "{body}");
    let (code, _) = get(metrics_port, "/healthz").expect("/healthz");
    assert_eq!(code, 200, "alive while not ready");

    let listener = TcpListener::bind(("127.0.0.1", relay_port)).await.expect("bind the relay");
    tokio::spawn(relay(listener, upstream));
    let body = wait_for("/readyz to answer 200", DEADLINE, || async move {
        get(metrics_port, "/readyz").filter(|(code, _)| *code == 200).map(|(_, b)| b)
    })
    .await;
    assert_eq!(body.trim(), "ok");
    assert!(op.exited().is_none(), "the operator runs on:\n{}", op.log_tail());
    op.stop();
}
