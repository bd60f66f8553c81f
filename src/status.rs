//! Conditions from record states, as a pure function: kstatus/Argo CD semantics, reasons as
//! constants, `lastTransitionTime` kept unless a condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::RecordStatus;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Record states. Anything not listed as live or in progress needs a human.
pub mod state {
    pub const READY: &str = "Ready";
    pub const PENDING: &str = "Pending";
    /// Accepted by the backend, not yet live on all its name servers (Route53 PENDING).
    pub const PROPAGATING: &str = "Propagating";
    /// Transient backend failures, retried with backoff: the state is the error's reason.
    pub const UNREACHABLE: &str = "Unreachable";
    pub const THROTTLED: &str = "Throttled";
    pub const INVALID: &str = "Invalid";
    pub const NO_PROVIDER: &str = "NoProvider";
    pub const NO_ZONE: &str = "ZoneNotFound";
    /// Deliberately not published: the provider does not manage the record's type
    /// (`managedRecordTypes`). external-dns skips such records silently; extdns shows them
    /// without letting them hold back the object's Ready.
    pub const SKIPPED: &str = "Skipped";
}

pub mod reason {
    pub const RECORDS_LIVE: &str = "RecordsLive";
    pub const NO_RECORDS: &str = "NoRecords";
    pub const DELETING: &str = "Deleting";
    pub const PROGRESSING: &str = "Progressing";
    pub const INVALID_RECORD: &str = "InvalidRecord";
    pub const AS_EXPECTED: &str = "AsExpected";
    /// The object's namespace is at its record limit (`--max-records-per-namespace`,
    /// `--max-record-bytes-per-namespace`): none of its records is served.
    pub const RECORD_LIMIT: &str = "RecordLimit";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Live,
    InProgress,
    NeedsHuman,
    /// Left out on purpose (see [`state::SKIPPED`]): neither live nor a problem.
    Skipped,
}

pub fn classify(state: &str) -> Class {
    match state {
        state::READY => Class::Live,
        state::SKIPPED => Class::Skipped,
        state::PENDING | state::PROPAGATING | state::UNREACHABLE | state::THROTTLED => Class::InProgress,
        _ => Class::NeedsHuman,
    }
}

fn reason_for_state(state: &str) -> &str {
    match state {
        state::INVALID => reason::INVALID_RECORD,
        other => other,
    }
}

const MAX_MESSAGES: usize = 3;

fn summarize(records: &[&RecordStatus]) -> String {
    let mut parts: Vec<String> = records
        .iter()
        .take(MAX_MESSAGES)
        .map(|r| r.message.clone().unwrap_or_else(|| format!("{} {}: {}", r.dns_name, r.record_type, r.state)))
        .collect();
    if records.len() > MAX_MESSAGES {
        parts.push(format!("and {} more record(s), see status.records", records.len() - MAX_MESSAGES));
    }
    parts.join("; ")
}

/// The three conditions for a DNSEndpoint, and whether its generation counts as applied
/// (nothing left in progress), which decides `status.observedGeneration`.
pub fn endpoint_conditions(
    records: &[RecordStatus],
    deleting: bool,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> (Vec<Condition>, bool) {
    let stalled: Vec<&RecordStatus> = records.iter().filter(|r| classify(&r.state) == Class::NeedsHuman).collect();
    let progressing: Vec<&RecordStatus> = records.iter().filter(|r| classify(&r.state) == Class::InProgress).collect();

    let (ready, ready_reason, ready_msg) = if deleting {
        (false, reason::DELETING.to_string(), "removing this object's records before it is deleted".to_string())
    } else if let Some(first) = stalled.first() {
        (false, reason_for_state(&first.state).to_string(), summarize(&stalled))
    } else if let Some(first) = progressing.first() {
        (false, progress_reason(first), summarize(&progressing))
    } else if records.is_empty() {
        (true, reason::NO_RECORDS.to_string(), "this object requests no records".to_string())
    } else {
        let skipped: Vec<&RecordStatus> = records.iter().filter(|r| classify(&r.state) == Class::Skipped).collect();
        let live = records.len() - skipped.len();
        if skipped.is_empty() {
            (true, reason::RECORDS_LIVE.to_string(), format!("{live} record(s) live"))
        } else {
            let reason = if live == 0 { reason::NO_RECORDS } else { reason::RECORDS_LIVE };
            (
                true,
                reason.to_string(),
                format!("{live} record(s) live, {} skipped: {}", skipped.len(), summarize(&skipped)),
            )
        }
    };

    let reconciling = deleting || !progressing.is_empty();
    let (rec_reason, rec_msg) = if deleting {
        (reason::DELETING.to_string(), "removing records".to_string())
    } else if let Some(first) = progressing.first() {
        (progress_reason(first), summarize(&progressing))
    } else {
        (reason::AS_EXPECTED.to_string(), "no change in progress".to_string())
    };
    let is_stalled = !deleting && !stalled.is_empty();
    let (st_reason, st_msg) = if is_stalled {
        (reason_for_state(&stalled[0].state).to_string(), summarize(&stalled))
    } else {
        (reason::AS_EXPECTED.to_string(), "nothing needs attention".to_string())
    };

    let conds = vec![
        condition(READY, ready, &ready_reason, ready_msg, generation, previous, now),
        condition(RECONCILING, reconciling, &rec_reason, rec_msg, generation, previous, now),
        condition(STALLED, is_stalled, &st_reason, st_msg, generation, previous, now),
    ];
    (conds, !deleting && progressing.is_empty())
}

/// The three conditions for a DNSEndpoint none of whose records is served for a reason that
/// concerns the whole object (its namespace's record limit): Stalled with that reason, and
/// nothing in progress, so its generation counts as applied.
pub fn refused_conditions(
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    vec![
        condition(READY, false, reason, message.clone(), generation, previous, now),
        condition(RECONCILING, false, reason::AS_EXPECTED, "no change in progress".into(), generation, previous, now),
        condition(STALLED, true, reason, message, generation, previous, now),
    ]
}

/// Ready, Reconciling and Stalled for a DNSProvider or ClusterDNSProvider, from its Ready
/// verdict. A provider that is not ready is either on its way (`Pending` until its first
/// listing, `Unreachable`, `Throttled`: retried with backoff) or needs a human (refused by the
/// tenancy rules, a listener conflict, bad credentials or spec, no zone): GitOps tools show
/// the first as progressing and the second as degraded, as they do for DNSEndpoints.
pub fn provider_conditions(
    ready: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let class = if ready { Class::Live } else { classify(reason) };
    let (rec, rec_reason, rec_msg) = match class {
        Class::InProgress => (true, reason.to_string(), message.clone()),
        _ => (false, reason::AS_EXPECTED.to_string(), "no change in progress".to_string()),
    };
    let (st, st_reason, st_msg) = match class {
        Class::NeedsHuman => (true, reason.to_string(), message.clone()),
        _ => (false, reason::AS_EXPECTED.to_string(), "nothing needs attention".to_string()),
    };
    vec![
        condition(READY, ready, reason, message, generation, previous, now),
        condition(RECONCILING, rec, &rec_reason, rec_msg, generation, previous, now),
        condition(STALLED, st, &st_reason, st_msg, generation, previous, now),
    ]
}

/// Why a record is in progress, as a condition reason: its state, `Progressing` while it
/// merely waits for its turn.
fn progress_reason(r: &RecordStatus) -> String {
    if r.state == state::PENDING { reason::PROGRESSING } else { r.state.as_str() }.to_string()
}

/// Builds a condition, keeping the previous `lastTransitionTime` when the status is unchanged.
/// The message is never empty: some apiservers (1.20 with server-side apply) turn an empty
/// string into null and then reject it.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let message = if message.is_empty() { reason.to_string() } else { message };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Compares conditions ignoring nothing but order, so an unchanged status is not rewritten.
pub fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len() && a.iter().all(|c| b.iter().any(|d| d == c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: &str, msg: &str) -> RecordStatus {
        RecordStatus {
            dns_name: "a.example.com".into(),
            record_type: "A".into(),
            set_identifier: None,
            provider: "DNSProvider/ns/p".into(),
            zone: Some("example.com".into()),
            state: state.into(),
            message: Some(msg.into()),
        }
    }

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn get<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
        c.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn all_live_is_ready() {
        let (c, applied) = endpoint_conditions(&[rec("Ready", "ok")], false, Some(3), &[], &t("2026-01-01T00:00:00Z"));
        assert!(applied);
        assert_eq!(get(&c, READY).status, "True");
        assert_eq!(get(&c, READY).reason, "RecordsLive");
        assert_eq!(get(&c, READY).observed_generation, Some(3));
        assert_eq!(get(&c, RECONCILING).status, "False");
        assert_eq!(get(&c, STALLED).status, "False");
    }

    #[test]
    fn pending_is_reconciling_and_not_applied() {
        let (c, applied) =
            endpoint_conditions(&[rec("Pending", "writing")], false, Some(1), &[], &t("2026-01-01T00:00:00Z"));
        assert!(!applied);
        assert_eq!(get(&c, READY).status, "False");
        assert_eq!(get(&c, RECONCILING).status, "True");
        let (c, _) =
            endpoint_conditions(&[rec("Unreachable", "timeout")], false, Some(1), &[], &t("2026-01-01T00:00:00Z"));
        assert_eq!(get(&c, READY).reason, "Unreachable");
    }

    #[test]
    fn propagating_is_reconciling_with_its_own_reason() {
        let (c, applied) = endpoint_conditions(
            &[rec("Ready", "ok"), rec("Propagating", "waiting for change C1")],
            false,
            Some(1),
            &[],
            &t("2026-01-01T00:00:00Z"),
        );
        assert!(!applied, "a change not yet live does not count as applied");
        assert_eq!((get(&c, READY).status.as_str(), get(&c, READY).reason.as_str()), ("False", "Propagating"));
        assert_eq!(
            (get(&c, RECONCILING).status.as_str(), get(&c, RECONCILING).reason.as_str()),
            ("True", "Propagating")
        );
        assert_eq!(get(&c, STALLED).status, "False");
    }

    #[test]
    fn invalid_is_stalled_with_reason_and_message() {
        let (c, applied) = endpoint_conditions(
            &[rec("Ready", "ok"), rec("Invalid", "endpoints[1].targets[0]: \"x\" is not an IPv4 address")],
            false,
            Some(2),
            &[],
            &t("2026-01-01T00:00:00Z"),
        );
        assert!(applied, "a stalled generation is still fully processed");
        assert_eq!(get(&c, READY).status, "False");
        assert_eq!(get(&c, READY).reason, "InvalidRecord");
        assert_eq!(get(&c, STALLED).status, "True");
        assert!(get(&c, STALLED).message.contains("endpoints[1].targets[0]"));
    }

    #[test]
    fn skipped_records_neither_stall_nor_hold_back_ready() {
        let skipped = rec("Skipped", "_game._tcp.a.example.com SRV: skipped (UnmanagedType)");
        let (c, applied) = endpoint_conditions(
            &[rec("Ready", "ok"), skipped.clone()],
            false,
            Some(1),
            &[],
            &t("2026-01-01T00:00:00Z"),
        );
        assert!(applied);
        assert_eq!((get(&c, READY).status.as_str(), get(&c, READY).reason.as_str()), ("True", "RecordsLive"));
        assert_eq!(
            get(&c, READY).message,
            "1 record(s) live, 1 skipped: _game._tcp.a.example.com SRV: skipped (UnmanagedType)"
        );
        assert_eq!(get(&c, STALLED).status, "False");
        assert_eq!(get(&c, RECONCILING).status, "False");
        let (c, _) = endpoint_conditions(&[skipped], false, Some(1), &[], &t("2026-01-01T00:00:00Z"));
        assert_eq!((get(&c, READY).status.as_str(), get(&c, READY).reason.as_str()), ("True", "NoRecords"));
        // Something that needs a human still wins over skipped records.
        let (c, _) = endpoint_conditions(
            &[rec("Skipped", "s"), rec("Conflict", "x")],
            false,
            Some(1),
            &[],
            &t("2026-01-01T00:00:00Z"),
        );
        assert_eq!((get(&c, READY).status.as_str(), get(&c, STALLED).status.as_str()), ("False", "True"));
    }

    #[test]
    fn transition_time_kept_unless_status_flips() {
        let t0 = t("2026-01-01T00:00:00Z");
        let t1 = t("2026-01-01T01:00:00Z");
        let (c0, _) = endpoint_conditions(&[rec("Ready", "ok")], false, Some(1), &[], &t0);
        let (c1, _) = endpoint_conditions(&[rec("Ready", "ok"), rec("Ready", "ok")], false, Some(2), &c0, &t1);
        assert_eq!(get(&c1, READY).last_transition_time, t0);
        assert_eq!(get(&c1, READY).message, "2 record(s) live");
        let (c2, _) = endpoint_conditions(&[rec("Conflict", "x")], false, Some(3), &c1, &t1);
        assert_eq!(get(&c2, READY).last_transition_time, t1);
        assert_eq!(get(&c2, RECONCILING).last_transition_time, t0);
    }

    #[test]
    fn deleting_is_reconciling() {
        let (c, applied) = endpoint_conditions(&[rec("Ready", "ok")], true, Some(1), &[], &t("2026-01-01T00:00:00Z"));
        assert!(!applied);
        assert_eq!(get(&c, RECONCILING).status, "True");
        assert_eq!(get(&c, READY).reason, "Deleting");
    }
    #[test]
    fn provider_conditions_tell_progress_from_what_needs_a_human() {
        let now = t("2026-01-01T00:00:00Z");
        let of =
            |ready: bool, reason: &str| provider_conditions(ready, reason, format!("{reason} msg"), Some(3), &[], &now);
        let status = |c: &[Condition], ty: &str| (get(c, ty).status.clone(), get(c, ty).reason.clone());
        let ok = of(true, "ZonesFound");
        assert_eq!(status(&ok, READY), ("True".into(), "ZonesFound".into()));
        assert_eq!(status(&ok, RECONCILING).0, "False");
        assert_eq!(status(&ok, STALLED).0, "False");
        for r in ["Pending", "Unreachable", "Throttled"] {
            let c = of(false, r);
            assert_eq!(status(&c, RECONCILING), ("True".into(), r.to_string()), "{r}");
            assert_eq!(status(&c, STALLED).0, "False", "{r}");
        }
        for r in ["NotPermitted", "ListenerConflict", "InvalidProvider", "AuthFailed", "NoZones"] {
            let c = of(false, r);
            assert_eq!(status(&c, STALLED), ("True".into(), r.to_string()), "{r}");
            assert_eq!(get(&c, STALLED).message, format!("{r} msg"));
            assert_eq!(status(&c, RECONCILING).0, "False", "{r}");
        }
        assert!(of(false, "NoZones").iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn a_refused_object_is_stalled_and_not_in_progress() {
        let c = refused_conditions(reason::RECORD_LIMIT, "over".into(), Some(4), &[], &t("2026-01-01T00:00:00Z"));
        assert_eq!((get(&c, READY).status.as_str(), get(&c, READY).reason.as_str()), ("False", "RecordLimit"));
        assert_eq!(get(&c, RECONCILING).status, "False");
        assert_eq!((get(&c, STALLED).status.as_str(), get(&c, STALLED).message.as_str()), ("True", "over"));
        assert!(c.iter().all(|c| c.observed_generation == Some(4)));
    }
}
