//! Runs `e2e/google/fake.py`, the local stand-in for Google Cloud DNS API v1 (built from the
//! discovery document that Google's Python SDK ships), with the venv of `e2e/google/venv.sh`,
//! and talks to its control endpoints. Shared by the conformance tests and the e2e suite
//! (`#[path]`-included; not every crate uses every helper).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The first start builds the venv (pip install of the pinned SDK).
const READY_DEADLINE: Duration = Duration::from_secs(240);

pub struct FakeGoogle {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _scratch: tempfile::TempDir,
    http: reqwest::Client,
}

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/google")
}

/// Whether a venv can be had: built already, or python3 with venv/ensurepip to build it.
pub fn python_available() -> bool {
    Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a google venv was built already (any version: `venv.sh` rebuilds a stale one).
pub fn venv_built() -> bool {
    let cache = std::env::var_os("EXTDNS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/extdns"));
    cache.join("google-venv/bin/python").exists()
}

/// The venv's python, built on first use by `e2e/google/venv.sh`.
pub fn venv_python() -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(dir().join("venv.sh"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running e2e/google/venv.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("e2e/google/venv.sh failed with {}", out.status));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

impl FakeGoogle {
    /// Starts the fake on 127.0.0.1:`port` with `args` (`--project`, `--zone P/NAME=DNS`, ...)
    /// and waits until it answers.
    pub async fn start(port: u16, args: &[&str]) -> Result<FakeGoogle, String> {
        let python = venv_python()?;
        let scratch =
            tempfile::Builder::new().prefix("extdns-google-").tempdir().map_err(|e| format!("scratch dir: {e}"))?;
        let log = scratch.path().join("fake.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("creating the fake's log: {e}"))?;
        let child = Command::new(&python)
            .arg(dir().join("fake.py"))
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting {} e2e/google/fake.py: {e}", python.display()))?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
        let mut fake = FakeGoogle { child, port, log, _scratch: scratch, http };
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

    /// The API root, as `spec.google.endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The fake's token endpoint (the `token_uri` of the keys it issues).
    pub fn token_uri(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The fake's metadata server root (`GCE_METADATA_HOST`).
    pub fn metadata_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn control(&self, what: &str) -> String {
        format!("http://127.0.0.1:{}/__fake/{what}", self.port)
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Value {
        let resp = req.send().await.unwrap_or_else(|e| panic!("fake Cloud DNS control call failed: {e}"));
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "fake Cloud DNS control call answered {status}: {body}");
        body
    }

    async fn post(&self, what: &str, body: Value) -> Value {
        self.call(self.http.post(self.control(what)).json(&body)).await
    }

    /// A new service-account JSON key for `email`, allowed to use `project`.
    pub async fn key(&self, email: &str, project: &str) -> String {
        self.post("keys", json!({"email": email, "project": project})).await.to_string()
    }

    /// A new key whose identity may use no project.
    pub async fn key_without_grant(&self, email: &str, project: &str) -> String {
        self.post("keys", json!({"email": email, "project": project, "grant": false})).await.to_string()
    }

    /// Lets `email` use `project` (an IAM binding of roles/dns.admin, say).
    pub async fn grant(&self, email: &str, project: &str) {
        self.post("grant", json!({"email": email, "project": project})).await;
    }

    pub async fn add_zone(&self, project: &str, name: &str, dns_name: &str, visibility: &str) -> Value {
        self.post("zones", json!({"project": project, "name": name, "dnsName": dns_name, "visibility": visibility}))
            .await
    }

    /// Adds an rrset behind extdns' back (somebody else's record, or a seeded zone).
    pub async fn seed(&self, project: &str, zone: &str, rrset: Value) -> Value {
        self.post("rrsets", json!({"project": project, "zone": zone, "rrset": rrset})).await
    }

    /// The zone's rrsets as the fake holds them, SOA and apex NS included.
    pub async fn rrsets(&self, project: &str, zone: &str) -> Vec<Value> {
        match self.call(self.http.get(self.control("rrsets")).query(&[("project", project), ("zone", zone)])).await {
            Value::Array(v) => v,
            other => panic!("fake Cloud DNS rrsets: expected a list, got {other}"),
        }
    }

    /// Every request received so far: `method`, `path`, `query`, `authorization`, `body`,
    /// `status`, `time`.
    pub async fn requests(&self) -> Vec<Value> {
        match self.call(self.http.get(self.control("requests"))).await {
            Value::Array(v) => v,
            other => panic!("fake Cloud DNS requests: expected a list, got {other}"),
        }
    }

    /// The requests whose path ends with `suffix` (e.g. "/changes", "/token").
    pub async fn requests_to(&self, suffix: &str) -> Vec<Value> {
        self.requests().await.into_iter().filter(|r| r["path"].as_str().unwrap_or("").ends_with(suffix)).collect()
    }

    pub async fn clear_requests(&self) {
        self.call(self.http.delete(self.control("requests"))).await;
    }

    /// Every access token issued: `email`, `via` ("jwt-bearer" or "metadata"), `scope`, `aud`.
    pub async fn tokens(&self) -> Vec<Value> {
        match self.call(self.http.get(self.control("tokens"))).await {
            Value::Array(v) => v,
            other => panic!("fake Cloud DNS tokens: expected a list, got {other}"),
        }
    }

    /// Makes the next `count` requests whose path contains `matching` fail with `status`.
    pub async fn fail(&self, status: u16, count: u32, matching: &str, retry_after: Option<u64>) {
        self.post("fail", json!({"status": status, "count": count, "match": matching, "retry_after": retry_after}))
            .await;
    }

    /// Serves the next `count` requests whose path contains `matching`, then answers `status`.
    pub async fn fail_after_apply(&self, status: u16, count: u32, matching: &str) {
        self.post("fail", json!({"status": status, "count": count, "match": matching, "after_apply": true})).await;
    }

    /// Changes settings: `pending_gets`, `page_size`, `token_ttl`, `metadata_email`, `quota`.
    pub async fn settings(&self, settings: Value) {
        self.post("settings", settings).await;
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
