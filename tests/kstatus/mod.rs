//! kstatus's generic rules (sigs.k8s.io/cli-utils pkg/kstatus/status, `Compute`) for a custom
//! resource, which is what Flux's `healthChecks` and `kstatus`-based tools apply to extdns's
//! kinds: no type-specific rule exists for them. Kept apart from the product: it models
//! another tool's reading of our status, so it is shared by tests only.

// Shared by tests/gitops.rs and the e2e suite, each using a part of it.
#![allow(dead_code)]

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Failed,
    Current,
    Terminating,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "InProgress" => Status::InProgress,
            "Failed" => Status::Failed,
            "Current" => Status::Current,
            "Terminating" => Status::Terminating,
            _ => return None,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Result {
    pub status: Status,
    pub message: String,
}

fn result(status: Status, message: impl Into<String>) -> Result {
    Result { status, message: message.into() }
}

/// `status.Compute` for a kind without type-specific rules, in kstatus's order:
/// deletion, then `status.observedGeneration` against `metadata.generation` (only when the
/// status has one), then the first `Reconciling=True` or `Stalled=True` condition in list
/// order, then a `Ready` condition, and Current when nothing above decided.
pub fn compute(obj: &Value) -> Result {
    let meta = &obj["metadata"];
    if meta["deletionTimestamp"].as_str().is_some_and(|s| !s.is_empty()) {
        return result(Status::Terminating, "Resource scheduled for deletion");
    }
    let status = &obj["status"];
    if let (Some(observed), Some(generation)) = (status["observedGeneration"].as_i64(), meta["generation"].as_i64()) {
        if observed != generation {
            return result(
                Status::InProgress,
                format!("{} generation is {generation}, but latest observed generation is {observed}", kind(obj)),
            );
        }
    }
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    for c in &conditions {
        match (c["type"].as_str(), c["status"].as_str()) {
            (Some("Reconciling"), Some("True")) => return result(Status::InProgress, text(c, "message")),
            (Some("Stalled"), Some("True")) => return result(Status::Failed, text(c, "message")),
            _ => {}
        }
    }
    if let Some(ready) = conditions.iter().find(|c| c["type"] == "Ready") {
        return match ready["status"].as_str() {
            Some("True") => result(Status::Current, "Resource is Ready"),
            _ => result(Status::InProgress, text(ready, "message")),
        };
    }
    result(Status::Current, "Resource is current")
}

fn kind(obj: &Value) -> &str {
    obj["kind"].as_str().unwrap_or("Resource")
}

fn text(c: &Value, field: &str) -> String {
    c[field].as_str().unwrap_or_default().to_string()
}
