//! Runs `e2e/azure/fake.py`, the local stand-in for Azure DNS, Azure Private DNS and the Entra
//! ID token endpoint, over TLS with a throwaway CA made by `e2e/azure/certs.sh`, and talks to
//! its control endpoints. Shared by the conformance tests and the e2e suite (`#[path]`-included;
//! not every crate uses every helper).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const READY_DEADLINE: Duration = Duration::from_secs(20);

pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_ID: &str = "extdns-test-client";
pub const CLIENT_SECRET: &str = "extdns-test-secret";
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";
pub const RESOURCE_GROUP: &str = "extdns";
/// The client assertion the fake accepts (a workload identity's projected token).
pub const FEDERATED_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.extdns-test-federated-token.sig";

pub struct FakeAzure {
    child: Child,
    pub port: u16,
    /// PEM of the CA that signed the fake's certificate.
    pub ca_pem: Vec<u8>,
    log: PathBuf,
    _scratch: tempfile::TempDir,
    http: reqwest::Client,
}

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/azure")
}

/// Whether `python3` and `openssl` are on PATH.
pub fn tools_available() -> bool {
    ["python3", "openssl"].iter().all(|tool| {
        Command::new(tool)
            .arg(if *tool == "openssl" { "version" } else { "--version" })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl FakeAzure {
    /// Starts the fake on 127.0.0.1:`port` with public `zones` and `private_zones`, listing
    /// `page_size` record sets per page, and waits until it answers.
    pub async fn start(port: u16, zones: &[&str], private_zones: &[&str], page_size: u32) -> Result<FakeAzure, String> {
        let scratch =
            tempfile::Builder::new().prefix("extdns-azure-").tempdir().map_err(|e| format!("scratch dir: {e}"))?;
        let dir = scratch.path();
        let certs = Command::new("bash")
            .arg(e2e_dir().join("certs.sh"))
            .arg(dir)
            .output()
            .map_err(|e| format!("running certs.sh: {e}"))?;
        if !certs.status.success() {
            return Err(format!("certs.sh failed: {}", String::from_utf8_lossy(&certs.stderr)));
        }
        let ca_pem = std::fs::read(dir.join("ca.pem")).map_err(|e| format!("reading ca.pem: {e}"))?;
        let log = dir.join("fake.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("creating the fake's log: {e}"))?;
        let mut cmd = Command::new("python3");
        cmd.arg(e2e_dir().join("fake.py"))
            .args(["--port", &port.to_string(), "--tenant", TENANT, "--client-id", CLIENT_ID])
            .args([
                "--client-secret",
                CLIENT_SECRET,
                "--subscription",
                SUBSCRIPTION,
                "--resource-group",
                RESOURCE_GROUP,
            ])
            .args(["--page-size", &page_size.to_string(), "--federated-token", FEDERATED_TOKEN])
            .arg("--cert")
            .arg(dir.join("server.pem"))
            .arg("--key")
            .arg(dir.join("server.key"));
        for z in zones {
            cmd.args(["--zone", z]);
        }
        for z in private_zones {
            cmd.args(["--private-zone", z]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting python3 fake.py: {e}"))?;
        let cert = reqwest::Certificate::from_pem(&ca_pem).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .add_root_certificate(cert)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut fake = FakeAzure { child, port, ca_pem, log, _scratch: scratch, http };
        let started = Instant::now();
        loop {
            if let Ok(r) = fake.http.get(fake.control("health")).send().await {
                if r.status().is_success() {
                    return Ok(fake);
                }
            }
            if let Ok(Some(status)) = fake.child.try_wait() {
                return Err(format!("the fake exited with {status} before serving; log:\n{}", fake.log_tail()));
            }
            if started.elapsed() > READY_DEADLINE {
                return Err(format!("the fake did not answer within {READY_DEADLINE:?}; log:\n{}", fake.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ARM endpoint and authority host (one server for both).
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn control(&self, what: &str) -> String {
        format!("https://127.0.0.1:{}/__fake/{what}", self.port)
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> Value {
        let resp = req.send().await.unwrap_or_else(|e| panic!("fake Azure control call failed: {e}"));
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "fake Azure control call answered {status}: {body}");
        body
    }

    async fn list(&self, req: reqwest::RequestBuilder) -> Vec<Value> {
        match self.json(req).await {
            Value::Array(v) => v,
            other => panic!("fake Azure: expected a list, got {other}"),
        }
    }

    /// Every ARM request so far: `method`, `path`, `query`, `authorization`, `if_match`,
    /// `if_none_match`, `body`, `status`, `time`.
    pub async fn requests(&self) -> Vec<Value> {
        self.list(self.http.get(self.control("requests"))).await
    }

    /// The ARM requests that write (PUT, PATCH, DELETE).
    pub async fn writes(&self) -> Vec<Value> {
        self.requests().await.into_iter().filter(|r| r["method"] != json!("GET")).collect()
    }

    pub async fn clear_requests(&self) {
        self.json(self.http.delete(self.control("requests"))).await;
    }

    /// Every token request: `tenant`, `client_id`, `grant_type`, `scope`, `assertion`, `status`.
    pub async fn token_requests(&self) -> Vec<Value> {
        self.list(self.http.get(self.control("tokens"))).await
    }

    /// Makes the next `count` ARM requests whose path contains `matching` fail with `status`
    /// (a 429 carries `Retry-After: retry_after`).
    pub async fn fail(&self, status: u16, count: u32, matching: &str, retry_after: Option<u64>) {
        let spec = json!({"status": status, "count": count, "match": matching, "retry_after": retry_after});
        self.json(self.http.post(self.control("fail")).json(&spec)).await;
    }

    /// Serves the next `count` matching requests, then answers `status` (applied, answer lost).
    pub async fn fail_after_apply(&self, status: u16, count: u32, matching: &str) {
        let spec = json!({"status": status, "count": count, "match": matching, "after_apply": true});
        self.json(self.http.post(self.control("fail")).json(&spec)).await;
    }

    /// Writes a record set behind extdns's back; `properties` as the API takes them.
    pub async fn seed(&self, private: bool, zone: &str, rtype: &str, name: &str, properties: Value) -> Value {
        let body = json!({"private": private, "zone": zone, "type": rtype, "name": name, "properties": properties});
        self.json(self.http.post(self.control("recordsets")).json(&body)).await
    }

    /// The zone's record sets as the fake holds them.
    pub async fn record_sets(&self, private: bool, zone: &str) -> Vec<Value> {
        let q = [("zone", zone.to_string()), ("private", if private { "1".into() } else { String::new() })];
        self.list(self.http.get(self.control("recordsets")).query(&q)).await
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for FakeAzure {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
