//! How GitOps tools read extdns's status, checked on status objects captured from real runs
//! of the operator (config/argocd/resource_customizations/extdns.io/*/testdata, made by
//! e2e/gitops/capture.sh):
//! - Argo CD: every case of every `health_test.yaml` runs its `health.lua` in a Lua 5.1
//!   interpreter (Argo CD runs gopher-lua, a Lua 5.1), as Argo CD's own test does;
//! - Flux / kstatus: kstatus's generic rules give each captured object the result below.

mod kstatus;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn customizations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/argocd/resource_customizations/extdns.io")
}

const KINDS: [&str; 3] = ["DNSEndpoint", "DNSProvider", "ClusterDNSProvider"];

fn load_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A Lua 5.1 expression building `v`, as Argo CD hands the object to the script.
fn lua_literal(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => lua_string(s, out),
        Value::Array(items) => {
            out.push('{');
            for i in items {
                lua_literal(i, out);
                out.push(',');
            }
            out.push('}');
        }
        Value::Object(map) => {
            out.push('{');
            for (k, v) in map {
                out.push('[');
                lua_string(k, out);
                out.push_str("]=");
                lua_literal(v, out);
                out.push(',');
            }
            out.push('}');
        }
    }
}

fn lua_string(s: &str, out: &mut String) {
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            // Decimal escapes carry any other byte (newlines, UTF-8) through unchanged.
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
}

fn lua_binary() -> Option<&'static str> {
    let found = Command::new("lua5.1").arg("-v").output().is_ok_and(|o| o.status.success());
    if found {
        return Some("lua5.1");
    }
    assert!(
        std::env::var_os("EXTDNS_REQUIRE_TOOLS").is_none(),
        "lua5.1 not found and EXTDNS_REQUIRE_TOOLS is set: install it with `bash e2e/install-tools.sh`"
    );
    eprintln!("skipping: lua5.1 not found (install it with `bash e2e/install-tools.sh`)");
    None
}

/// Runs `script` with global `obj`, returning (hs.status, hs.message).
fn run_health(lua: &str, script: &str, obj: &Value) -> (String, String) {
    let mut program = String::from("obj = ");
    lua_literal(obj, &mut program);
    program.push_str("\nlocal hs = (function()\n");
    program.push_str(script);
    program.push_str("\nend)()\nio.write(tostring(hs.status), \"\\0\", tostring(hs.message))\n");
    let mut child = Command::new(lua)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting lua5.1");
    child.stdin.take().expect("stdin").write_all(program.as_bytes()).expect("writing to lua5.1");
    let out = child.wait_with_output().expect("running lua5.1");
    assert!(out.status.success(), "health.lua failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("lua output is UTF-8");
    let (status, message) = text.split_once('\0').expect("status and message");
    (status.to_string(), message.to_string())
}

#[test]
fn argocd_health_checks_pass_their_cases() {
    let Some(lua) = lua_binary() else { return };
    let mut seen = BTreeSet::new();
    for kind in KINDS {
        let dir = customizations().join(kind);
        let script = std::fs::read_to_string(dir.join("health.lua")).expect("health.lua");
        let cases = load_yaml(&dir.join("health_test.yaml"));
        let cases = cases["tests"].as_array().unwrap_or_else(|| panic!("{kind}: health_test.yaml has no tests"));
        assert!(!cases.is_empty(), "{kind}: no cases");
        let mut referenced = BTreeSet::new();
        for case in cases {
            let input = case["inputPath"].as_str().expect("inputPath");
            referenced.insert(input.trim_start_matches("testdata/").to_string());
            let obj = load_yaml(&dir.join(input));
            assert_eq!(obj["kind"], kind, "{kind}/{input} holds another kind");
            let (status, message) = run_health(lua, &script, &obj);
            let want = &case["healthStatus"];
            assert_eq!(status, want["status"].as_str().expect("healthStatus.status"), "{kind}/{input}: status");
            assert_eq!(message, want["message"].as_str().expect("healthStatus.message"), "{kind}/{input}: message");
            seen.insert(status);
        }
        // Upstream's test loads only what the cases name: a file no case names is untested.
        let files: BTreeSet<String> = std::fs::read_dir(dir.join("testdata"))
            .expect("testdata")
            .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, referenced, "{kind}: testdata files and health_test.yaml cases differ");
    }
    for status in ["Healthy", "Progressing", "Degraded"] {
        assert!(seen.contains(status), "no case is {status}");
    }
}

/// What kstatus (and so Flux) says of each captured object.
const KSTATUS: &[(&str, &str, &str)] = &[
    ("DNSEndpoint", "ready.yaml", "Current"),
    ("DNSEndpoint", "unreachable.yaml", "InProgress"),
    ("DNSEndpoint", "conflict.yaml", "Failed"),
    ("DNSEndpoint", "invalid-record.yaml", "Failed"),
    ("DNSEndpoint", "deleting.yaml", "Terminating"),
    ("DNSEndpoint", "generation-lag.yaml", "InProgress"),
    // kstatus reads an object without any condition as Current: between its creation and
    // the operator's first status write only `kubectl wait --for=condition=Ready` waits.
    ("DNSEndpoint", "no-status.yaml", "Current"),
    ("DNSProvider", "ready.yaml", "Current"),
    ("DNSProvider", "unreachable.yaml", "InProgress"),
    ("DNSProvider", "generation-lag.yaml", "InProgress"),
    ("ClusterDNSProvider", "ready.yaml", "Current"),
    ("ClusterDNSProvider", "listener-taken.yaml", "Failed"),
    ("ClusterDNSProvider", "generation-lag.yaml", "InProgress"),
];

#[test]
fn kstatus_reads_captured_statuses() {
    let mut covered = BTreeSet::new();
    for (kind, file, want) in KSTATUS {
        covered.insert(format!("{kind}/{file}"));
        let obj = load_yaml(&customizations().join(kind).join("testdata").join(file));
        let got = kstatus::compute(&obj);
        assert_eq!(Some(got.status), kstatus::Status::parse(want), "{kind}/{file}: {got:?}");
    }
    for kind in KINDS {
        for e in std::fs::read_dir(customizations().join(kind).join("testdata")).expect("testdata") {
            let file = e.expect("dir entry").file_name().to_string_lossy().into_owned();
            assert!(covered.contains(&format!("{kind}/{file}")), "{kind}/{file} has no kstatus expectation");
        }
    }
}

#[test]
fn kstatus_rules_follow_kstatus_order() {
    let obj = |v: Value| v;
    // A deleted object is Terminating whatever its conditions say.
    let deleting = obj(serde_json::json!({"metadata": {"generation": 1, "deletionTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
    assert_eq!(kstatus::compute(&deleting).status, kstatus::Status::Terminating);
    // Without status.observedGeneration the generation check is skipped.
    let fresh = obj(serde_json::json!({"metadata": {"generation": 2},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
    assert_eq!(kstatus::compute(&fresh).status, kstatus::Status::Current);
    let none = obj(serde_json::json!({"metadata": {"generation": 2}}));
    assert_eq!(kstatus::compute(&none).status, kstatus::Status::Current);
}

/// config/argocd installs exactly the tested scripts, one argocd-cm key per kind.
#[test]
fn argocd_kustomization_installs_every_health_check() {
    let k = load_yaml(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/argocd/kustomization.yaml"));
    let files: Vec<&str> =
        k["configMapGenerator"][0]["files"].as_array().expect("files").iter().filter_map(|f| f.as_str()).collect();
    for kind in KINDS {
        let want = format!(
            "resource.customizations.health.extdns.io_{kind}=resource_customizations/extdns.io/{kind}/health.lua"
        );
        assert!(files.contains(&want.as_str()), "config/argocd/kustomization.yaml lacks {want}");
    }
    assert_eq!(files.len(), KINDS.len());
}
