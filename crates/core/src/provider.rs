//! The seam between planning and DNS APIs. Kept small on purpose: list zones, list records,
//! apply changes with one result per change so that one bad record never hides the others.

use std::sync::Arc;

use async_trait::async_trait;

use crate::endpoint::{Endpoint, RecordKey};

/// A zone a provider can write to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Zone {
    /// Provider-side identifier (Route53 hosted zone id; the zone name elsewhere).
    pub id: String,
    /// Normalised zone name: lower case, no trailing dot.
    pub name: String,
}

impl Zone {
    pub fn named(name: &str) -> Self {
        let name = crate::endpoint::normalize_name(name);
        Zone { id: name.clone(), name }
    }

    /// True when `dns_name` (normalised) is the apex of the zone or below it.
    pub fn contains(&self, dns_name: &str) -> bool {
        dns_name == self.name
            || (dns_name.len() > self.name.len()
                && dns_name.ends_with(&self.name)
                && dns_name.as_bytes()[dns_name.len() - self.name.len() - 1] == b'.')
    }
}

/// One change to one RRset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Create(Endpoint),
    /// Replace `old` (exactly as the provider holds it) with `new`.
    Update {
        old: Endpoint,
        new: Endpoint,
    },
    Delete(Endpoint),
}

impl Change {
    /// The record as it will look after the change (or, for a delete, the record removed).
    pub fn endpoint(&self) -> &Endpoint {
        match self {
            Change::Create(e) | Change::Delete(e) => e,
            Change::Update { new, .. } => new,
        }
    }

    pub fn verb(&self) -> &'static str {
        match self {
            Change::Create(_) => "create",
            Change::Update { .. } => "update",
            Change::Delete(_) => "delete",
        }
    }
}

/// What a backend did with a change it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The change is live on the backend's name servers.
    Live,
    /// Accepted, but the backend is still propagating it to its name servers (Route53's
    /// PENDING). [`Provider::in_sync`] with this change id says when it is live.
    Propagating(String),
}

/// One result per change passed to [`Provider::apply`].
pub type ChangeResult = Result<Applied, ProviderError>;

/// What went wrong talking to a DNS backend. The variant decides the user-visible reason and
/// whether extdns retries on its own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The backend did not answer (timeout, connection refused). Retried with backoff.
    #[error("DNS backend unreachable: {0}")]
    Unreachable(String),
    /// Credentials or keys were refused. Needs a human; retried slowly.
    #[error("DNS backend rejected the credentials: {0}")]
    AuthFailed(String),
    /// The backend asked us to slow down. Retried with backoff.
    #[error("DNS backend throttled the request: {0}")]
    Throttled(String),
    /// The backend refused this particular change (bad data, conflict in the zone).
    #[error("DNS backend rejected the change: {0}")]
    Rejected(String),
    /// The zone does not exist on the backend.
    #[error("zone not found: {0}")]
    ZoneNotFound(String),
    /// Provider configuration is unusable (missing secret, bad field).
    #[error("provider misconfigured: {0}")]
    Config(String),
}

impl ProviderError {
    /// Transient errors are retried with backoff; the others need a change to the spec.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProviderError::Unreachable(_) | ProviderError::Throttled(_))
    }

    /// CamelCase reason for conditions and per-record status.
    pub fn reason(&self) -> &'static str {
        match self {
            ProviderError::Unreachable(_) => "Unreachable",
            ProviderError::AuthFailed(_) => "AuthFailed",
            ProviderError::Throttled(_) => "Throttled",
            ProviderError::Rejected(_) => "ProviderRejected",
            ProviderError::ZoneNotFound(_) => "ZoneNotFound",
            ProviderError::Config(_) => "InvalidProvider",
        }
    }
}

/// The error of a change that was never sent, with why. It was not applied, so sending it
/// again at the next pass is safe: transient, never Rejected, which would park a valid
/// change until someone edits its object. Every backend and the ownership phases answer
/// "was the change sent?" with this.
pub fn not_sent(why: &str) -> ProviderError {
    ProviderError::Unreachable(format!("change was not sent: {why}"))
}

tokio::task_local! {
    static WRITE_GATE: WriteGate;
}

/// Whether the task applying changes may still send them. A backend call can wait long
/// (a rate-limit token, a throttled retry, a frozen process); a replica that lost its Lease
/// meanwhile must not send what it queued, since the new leader is already writing. The
/// worker sets the gate around an apply; every backend checks it right before each message
/// it sends ([`write_allowed`]), after any wait. Task-local rather than a parameter: the
/// check belongs to the transport of each backend, many calls below the trait.
#[derive(Clone)]
pub struct WriteGate(std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl WriteGate {
    pub fn new(open: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        WriteGate(std::sync::Arc::new(open))
    }

    /// Runs `f` with this gate: backends called inside check it before each message.
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        WRITE_GATE.scope(self, f).await
    }
}

/// `Err` when the gate of this task is closed: the message about to go out is dropped, not
/// sent. Without a gate (tests, the embedded server) every message may go.
pub fn write_allowed(what: &str) -> Result<(), ProviderError> {
    match WRITE_GATE.try_with(|g| (g.0)()) {
        Ok(false) => Err(ProviderError::Unreachable(format!("{what}: not sent: this replica no longer leads"))),
        _ => Ok(()),
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Zones this backend holds and this provider may write to.
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError>;
    /// Every RRset of a zone, including TXT ownership records, names normalised.
    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError>;
    /// Applies changes to one zone. Returns exactly one result per change, in order.
    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult>;

    /// [`Provider::records`], each behind an `Arc`. A backend that keeps its records in this
    /// process (in memory, embedded) hands out its own, so that the worker's cache of the zone
    /// is no second copy of it.
    async fn records_shared(&self, zone: &Zone) -> Result<Vec<Arc<Endpoint>>, ProviderError> {
        Ok(self.records(zone).await?.into_iter().map(Arc::new).collect())
    }

    /// The RRset `key` of `zone` as this backend holds it now, from a backend that keeps its
    /// records in this process (see [`Provider::records_shared`]); `None` from the others.
    fn held(&self, _zone: &Zone, _key: &RecordKey) -> Option<Arc<Endpoint>> {
        None
    }

    /// Refuses, without contacting the backend, a change `apply` would refuse client-side
    /// (a name or value the wire format cannot carry), with the reason naming the record.
    /// [`crate::apply::apply_with_ownership`] checks every change of a batch first, so
    /// that a record and its ownership TXT are refused together before either is sent.
    fn check(&self, _zone: &Zone, _change: &Change) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Whether the change `apply` reported as [`Applied::Propagating`] with this id is live
    /// now. Backends that apply synchronously never report such ids.
    async fn in_sync(&self, _change_id: &str) -> Result<bool, ProviderError> {
        Ok(true)
    }

    /// The records this backend will actually hold for a desired record, as external-dns'
    /// `AdjustEndpoints`: Route53 turns a CNAME to a load balancer into A and AAAA aliases.
    /// Most backends hold what was asked.
    fn adjust(&self, endpoint: Endpoint) -> Vec<Endpoint> {
        vec![endpoint]
    }

    /// [`Provider::adjust`] of many records in one go, one result per record in order, for
    /// backends that must ask a server (a webhook's `POST /adjustendpoints`): one call per
    /// plan instead of one per record.
    async fn adjust_all(&self, endpoints: Vec<Endpoint>) -> Vec<Vec<Endpoint>> {
        endpoints.into_iter().map(|e| self.adjust(e)).collect()
    }
}

/// The zone with the longest name containing `dns_name`, as external-dns picks it.
pub fn zone_for<'a>(zones: &'a [Zone], dns_name: &str) -> Option<&'a Zone> {
    zones.iter().filter(|z| z.contains(dns_name)).max_by_key(|z| z.name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_zone_wins() {
        let zones = vec![Zone::named("example.com"), Zone::named("sub.example.com."), Zone::named("ample.com")];
        assert_eq!(zone_for(&zones, "a.sub.example.com").unwrap().name, "sub.example.com");
        assert_eq!(zone_for(&zones, "example.com").unwrap().name, "example.com");
        assert_eq!(zone_for(&zones, "x.example.com").unwrap().name, "example.com");
        assert!(zone_for(&zones, "badexample.com").is_none());
    }
}
