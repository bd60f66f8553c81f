//! Leader election on a coordination.k8s.io/v1 Lease. Every replica serves embedded DNS from
//! its own watch cache; only the leader writes anything elsewhere (DNS backends, statuses,
//! finalizers, generated DNSEndpoints).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct ElectionSettings {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// What to do with the current Lease: the pure decision, tested on its own.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Someone else holds a live lease.
    Follow(String),
}

pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: jiff::Timestamp, default_duration: Duration) -> Decision {
    let Some(spec) = spec else { return Decision::Acquire };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let duration =
        spec.lease_duration_seconds.map(|s| Duration::from_secs(s.max(1) as u64)).unwrap_or(default_duration);
    let renewed = spec.renew_time.as_ref().map(|t| t.0).or(spec.acquire_time.as_ref().map(|t| t.0));
    match renewed {
        Some(t) if now.duration_since(t).unsigned_abs() < duration && now >= t => Decision::Follow(holder),
        Some(t) if now < t => Decision::Follow(holder),
        _ => Decision::Acquire,
    }
}

/// Runs for ever, publishing whether this replica leads. A leader that cannot renew for a
/// whole lease duration steps down.
pub async fn run(client: Client, s: ElectionSettings, tx: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    let mut last_renew = tokio::time::Instant::now();
    loop {
        let leading = match try_once(&api, &s).await {
            Ok(l) => {
                if l {
                    last_renew = tokio::time::Instant::now();
                }
                l
            }
            Err(e) => {
                warn!(error = %e, lease = %s.lease_name, "leader election: talking to the apiserver failed");
                *tx.borrow() && last_renew.elapsed() < s.lease_duration
            }
        };
        if leading != *tx.borrow() {
            info!(identity = %s.identity, leading, "leadership changed");
            let _ = tx.send(leading);
        }
        tokio::time::sleep(s.renew_every).await;
    }
}

async fn try_once(api: &Api<Lease>, s: &ElectionSettings) -> Result<bool, kube::Error> {
    let current = api.get_opt(&s.lease_name).await?;
    let t = now();
    let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &s.identity, t.0, s.lease_duration);
    match (decision, current) {
        (Decision::Follow(_), _) => Ok(false),
        (Decision::Acquire | Decision::Renew, None) => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(s.lease_name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(s.identity.clone()),
                    lease_duration_seconds: Some(s.lease_duration.as_secs() as i32),
                    acquire_time: Some(t.clone()),
                    renew_time: Some(t),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        (d, Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if d == Decision::Acquire {
                spec.holder_identity = Some(s.identity.clone());
                spec.acquire_time = Some(t.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(s.lease_duration.as_secs() as i32);
            spec.renew_time = Some(t);
            // replace() carries resourceVersion: a concurrent writer makes this fail with 409.
            match api.replace(&s.lease_name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed.parse().unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let now: jiff::Timestamp = "2026-01-01T00:00:20Z".parse().unwrap();
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "me", now, d), Decision::Acquire);
        assert_eq!(decide(Some(&spec("me", "2026-01-01T00:00:00Z")), "me", now, d), Decision::Renew);
        assert_eq!(
            decide(Some(&spec("other", "2026-01-01T00:00:10Z")), "me", now, d),
            Decision::Follow("other".into())
        );
        assert_eq!(decide(Some(&spec("other", "2026-01-01T00:00:01Z")), "me", now, d), Decision::Acquire);
        assert_eq!(decide(Some(&spec("", "2026-01-01T00:00:19Z")), "me", now, d), Decision::Acquire);
    }
}
