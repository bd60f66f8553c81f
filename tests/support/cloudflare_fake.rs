//! Runs `e2e/cloudflare/fake.py`, the local stand-in for Cloudflare's v4 API, as a child
//! process, and talks to its control endpoints. Shared by the conformance tests and the e2e
//! suite (`#[path]`-included; not every crate uses every helper).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long the fake may take to answer its health check after start.
const READY_DEADLINE: Duration = Duration::from_secs(20);

pub struct FakeCloudflare {
    child: Child,
    pub port: u16,
    pub token: String,
    log: PathBuf,
    _scratch: tempfile::TempDir,
    http: reqwest::Client,
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/cloudflare/fake.py")
}

/// Whether a `python3` is on PATH.
pub fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl FakeCloudflare {
    /// Starts the fake on 127.0.0.1:`port` accepting `token`, holding `zones`, and waits until
    /// it answers.
    pub async fn start(port: u16, token: &str, zones: &[&str]) -> Result<FakeCloudflare, String> {
        let scratch =
            tempfile::Builder::new().prefix("extdns-cloudflare-").tempdir().map_err(|e| format!("scratch dir: {e}"))?;
        let log = scratch.path().join("fake.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("creating the fake's log: {e}"))?;
        let mut cmd = Command::new("python3");
        cmd.arg(script()).arg("--port").arg(port.to_string()).arg("--token").arg(token);
        for z in zones {
            cmd.arg("--zone").arg(z);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting python3 {}: {e}", script().display()))?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
        let mut fake = FakeCloudflare { child, port, token: token.into(), log, _scratch: scratch, http };
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

    /// The API base URL, as `spec.cloudflare.baseURL` takes it.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/client/v4", self.port)
    }

    fn control(&self, what: &str) -> String {
        format!("http://127.0.0.1:{}/__fake/{what}", self.port)
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> Value {
        let resp = req.send().await.unwrap_or_else(|e| panic!("fake Cloudflare control call failed: {e}"));
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "fake Cloudflare control call answered {status}: {body}");
        body
    }

    /// Every API request received so far: `method`, `path`, `query`, `authorization`,
    /// `body`, `status`, `time` (seconds since the epoch).
    pub async fn requests(&self) -> Vec<Value> {
        match self.json(self.http.get(self.control("requests"))).await {
            Value::Array(v) => v,
            other => panic!("fake Cloudflare requests: expected a list, got {other}"),
        }
    }

    pub async fn clear_requests(&self) {
        self.json(self.http.delete(self.control("requests"))).await;
    }

    /// Makes the next `count` API requests whose path contains `matching` fail with `status`
    /// (a 429 carries `Retry-After: retry_after`).
    pub async fn fail(&self, status: u16, count: u32, matching: &str, retry_after: Option<u64>) {
        let spec = json!({"status": status, "count": count, "match": matching, "retry_after": retry_after});
        self.json(self.http.post(self.control("fail")).json(&spec)).await;
    }

    /// Serves the next `count` API requests whose path contains `matching`, then answers
    /// them with `status` as if the answer were lost on the way back.
    pub async fn fail_after_apply(&self, status: u16, count: u32, matching: &str) {
        let spec = json!({"status": status, "count": count, "match": matching, "after_apply": true});
        self.json(self.http.post(self.control("fail")).json(&spec)).await;
    }

    /// Adds a record behind extdns' back (somebody else's record).
    pub async fn seed(&self, zone: &str, record: Value) -> Value {
        self.json(self.http.post(self.control("records")).json(&json!({"zone": zone, "record": record}))).await
    }

    /// The zone's records as the fake holds them.
    pub async fn records(&self, zone: &str) -> Vec<Value> {
        match self.json(self.http.get(self.control("records")).query(&[("zone", zone)])).await {
            Value::Array(v) => v,
            other => panic!("fake Cloudflare records: expected a list, got {other}"),
        }
    }

    /// The zone's id, as the API reports it.
    pub async fn zone_id(&self, zone: &str) -> String {
        let resp: Value = self
            .http
            .get(format!("{}/zones", self.base_url()))
            .bearer_auth(&self.token)
            .query(&[("name", zone)])
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("looking up zone {zone} on the fake: {e}"))
            .json()
            .await
            .unwrap_or(Value::Null);
        resp["result"][0]["id"].as_str().unwrap_or_else(|| panic!("no zone {zone} on the fake: {resp}")).to_string()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for FakeCloudflare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
