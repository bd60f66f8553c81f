//! Per-namespace record budgets: how many records, and how many bytes of record data, the
//! DNSEndpoints of one namespace may have the operator hold and publish. One tenant's objects
//! must not spend the memory every tenant shares (the schema bounds one object; this bounds
//! how many a namespace can make count).
//!
//! Which objects fit is a pure function of the namespace's objects, so every replica and
//! every restart decides alike: the oldest objects (by creation time, then name) are served
//! first, each whole or not at all; an object that does not fit is refused whole, and a
//! younger, smaller one may still fit after it. Objects being deleted that still hold
//! records keep them until they are released and count first.

use std::fmt;

/// The limits of one namespace; 0 means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub records: usize,
    pub bytes: usize,
}

impl Limits {
    pub const UNLIMITED: Limits = Limits { records: 0, bytes: 0 };

    pub fn fits(&self, cost: Cost) -> bool {
        !exceeds(cost.records, self.records) && !exceeds(cost.bytes, self.bytes)
    }
}

/// What one DNSEndpoint asks of its namespace's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cost {
    /// Entries of `spec.endpoints`.
    pub records: usize,
    /// Characters of their names, targets, set identifiers, labels and provider-specific
    /// properties: what the operator copies per record.
    pub bytes: usize,
}

impl Cost {
    pub fn plus(self, other: Cost) -> Cost {
        Cost { records: self.records + other.records, bytes: self.bytes + other.bytes }
    }

    pub fn minus(self, other: Cost) -> Cost {
        Cost { records: self.records.saturating_sub(other.records), bytes: self.bytes.saturating_sub(other.bytes) }
    }
}

/// One object of a namespace, as the budget sees it.
#[derive(Clone, Debug)]
pub struct Claim<'a, K> {
    pub key: K,
    /// creationTimestamp (RFC 3339) and name: the order in which objects are served.
    pub created: &'a str,
    pub name: &'a str,
    pub cost: Cost,
    /// Being deleted while still holding its records: keeps them until they are released.
    pub pinned: bool,
}

/// Why an object's records are not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverBudget {
    pub namespace: String,
    /// What the objects served before it hold.
    pub held: Cost,
    pub cost: Cost,
    pub limits: Limits,
}

/// The command-line flags that set the limits, for messages.
pub const RECORDS_FLAG: &str = "--max-records-per-namespace";
pub const BYTES_FLAG: &str = "--max-record-bytes-per-namespace";

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.held.plus(self.cost);
        let (unit, held, cost, flag, limit) = if exceeds(total.records, self.limits.records) {
            ("records", self.held.records, self.cost.records, RECORDS_FLAG, self.limits.records)
        } else {
            ("bytes of record data", self.held.bytes, self.cost.bytes, BYTES_FLAG, self.limits.bytes)
        };
        write!(
            f,
            "namespace {} is at its record limit: the DNSEndpoints served before this one hold {held} {unit}, \
             this one adds {cost}, over {flag}={limit}; none of its records is published (remove records from \
             the namespace, or ask the platform team to raise the limit)",
            self.namespace
        )
    }
}

fn exceeds(value: usize, limit: usize) -> bool {
    limit != 0 && value > limit
}

/// Decides which of a namespace's objects are served: pinned ones first, then the others
/// oldest first, each if it still fits. Returns a verdict per claim, in the claims' order.
pub fn admit<K: Clone>(namespace: &str, claims: &[Claim<'_, K>], limits: Limits) -> Vec<(K, Result<(), OverBudget>)> {
    let mut order: Vec<usize> = (0..claims.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&claims[a], &claims[b]);
        b.pinned.cmp(&a.pinned).then(a.created.cmp(b.created)).then(a.name.cmp(b.name))
    });
    let mut held = Cost::default();
    let mut verdicts: Vec<Option<Result<(), OverBudget>>> = vec![None; claims.len()];
    for i in order {
        let c = &claims[i];
        let total = held.plus(c.cost);
        verdicts[i] = Some(if limits.fits(total) || c.pinned {
            held = total;
            Ok(())
        } else {
            Err(OverBudget { namespace: namespace.to_string(), held, cost: c.cost, limits })
        });
    }
    claims.iter().zip(verdicts).map(|(c, v)| (c.key.clone(), v.unwrap_or(Ok(())))).collect()
}

/// Parses a byte count: a plain number, or one with a binary suffix `Ki`, `Mi` or `Gi`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let factor: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => return Err(format!("{s:?}: unknown unit {other:?}; use a number of bytes or Ki, Mi, Gi")),
    };
    let n: usize = digits.parse().map_err(|e| format!("{s:?} is not a byte count like 16Mi: {e}"))?;
    n.checked_mul(factor).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(key: &'a str, created: &'a str, records: usize, bytes: usize) -> Claim<'a, &'a str> {
        Claim { key, created, name: key, cost: Cost { records, bytes }, pinned: false }
    }

    fn admitted<'a>(v: &[(&'a str, Result<(), OverBudget>)]) -> Vec<&'a str> {
        v.iter().filter(|(_, r)| r.is_ok()).map(|(k, _)| *k).collect()
    }

    #[test]
    fn oldest_objects_are_served_first_and_whole() {
        let limits = Limits { records: 10, bytes: 0 };
        // Listed in another order than created.
        let claims = [
            claim("c", "2026-01-03T00:00:00Z", 4, 0),
            claim("a", "2026-01-01T00:00:00Z", 6, 0),
            claim("b", "2026-01-02T00:00:00Z", 5, 0),
            claim("d", "2026-01-04T00:00:00Z", 5, 0),
        ];
        let v = admit("ns", &claims, limits);
        // a (6) fits, b (5) would make 11, c (4) makes 10, d (5) would make 15.
        assert_eq!(admitted(&v), vec!["c", "a"]);
        let refused = v.iter().find(|(k, _)| *k == "b").and_then(|(_, r)| r.clone().err()).expect("b refused");
        assert_eq!(refused.held, Cost { records: 6, bytes: 0 });
        let msg = refused.to_string();
        assert!(msg.contains("--max-records-per-namespace=10"), "{msg}");
        assert!(msg.contains("namespace ns is at its record limit: the DNSEndpoints served before this one hold 6 records, this one adds 5"), "{msg}");
    }

    #[test]
    fn ties_in_creation_time_go_by_name_and_the_bytes_limit_counts_too() {
        let limits = Limits { records: 0, bytes: 100 };
        let t = "2026-01-01T00:00:00Z";
        let claims = [claim("y", t, 1, 60), claim("x", t, 1, 60)];
        let v = admit("ns", &claims, limits);
        assert_eq!(admitted(&v), vec!["x"]);
        let msg = v[0].1.clone().expect_err("y refused").to_string();
        assert!(msg.contains("--max-record-bytes-per-namespace=100"), "{msg}");
        assert!(msg.contains("hold 60 bytes of record data, this one adds 60"), "{msg}");
    }

    #[test]
    fn an_object_being_deleted_keeps_its_records_until_released() {
        let limits = Limits { records: 10, bytes: 0 };
        let mut going = claim("old-going", "2026-01-05T00:00:00Z", 8, 0);
        going.pinned = true;
        let claims = [claim("older", "2026-01-01T00:00:00Z", 5, 0), going];
        let v = admit("ns", &claims, limits);
        assert_eq!(admitted(&v), vec!["old-going"]);
    }

    #[test]
    fn zero_means_unlimited_and_one_object_over_the_limit_never_fits() {
        let claims = [claim("a", "2026-01-01T00:00:00Z", 100_000, 1 << 30)];
        assert_eq!(admitted(&admit("ns", &claims, Limits::UNLIMITED)), vec!["a"]);
        let v = admit("ns", &[claim("a", "t", 11, 0)], Limits { records: 10, bytes: 0 });
        assert!(v[0].1.is_err());
        assert_eq!(admitted(&admit("ns", &[claim("a", "t", 10, 0)], Limits { records: 10, bytes: 0 })), vec!["a"]);
    }

    #[test]
    fn byte_counts_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("16Mi"), Ok(16 << 20));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("2Gi"), Ok(2 << 30));
        assert!(parse_bytes("16MB").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("-1").is_err());
    }
}
