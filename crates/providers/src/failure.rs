//! How a request to a backend failed, in the terms the worker acts on, and the batch loop
//! the batching backends (Route53, Cloudflare, Google, Azure) share.
//!
//! "Was the change sent?" has one answer: a change a backend never sent (an earlier batch of
//! the same apply failed, so the rest was held back) is [`not_sent`], which is transient.

use std::future::Future;

use extdns_core::provider::not_sent;
use extdns_core::{Applied, ChangeResult, ProviderError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Throttled,
    Unreachable,
    Auth,
    /// Refused for its content: a batch is bisected to find the change at fault.
    Invalid,
    /// A conditional write whose condition no longer holds (HTTP 412: the record set changed
    /// since it was read). Refused, and the zone listed again.
    Precondition,
    ZoneNotFound,
    Config,
}

impl FailureKind {
    /// Label value of the error metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            FailureKind::Throttled => "throttled",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Auth => "auth",
            FailureKind::Invalid => "invalid",
            FailureKind::Precondition => "precondition",
            FailureKind::ZoneNotFound => "not_found",
            FailureKind::Config => "config",
        }
    }

    /// What an HTTP error status means for a JSON API, before the backend's own error codes
    /// refine it: 429 slow down, 5xx the service failed (retry), 401/403 credentials, 404 the
    /// zone (or the record set's zone) is gone, any other 4xx a refusal of the request's data.
    pub(crate) fn of_http_status(status: u16) -> FailureKind {
        match status {
            429 => FailureKind::Throttled,
            500..=599 => FailureKind::Unreachable,
            401 | 403 => FailureKind::Auth,
            404 => FailureKind::ZoneNotFound,
            _ => FailureKind::Invalid,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into() }
    }

    pub(crate) fn into_provider_error(self) -> ProviderError {
        match self.kind {
            FailureKind::Throttled => ProviderError::Throttled(self.message),
            FailureKind::Unreachable => ProviderError::Unreachable(self.message),
            FailureKind::Auth => ProviderError::AuthFailed(self.message),
            FailureKind::Invalid | FailureKind::Precondition => ProviderError::Rejected(self.message),
            FailureKind::ZoneNotFound => ProviderError::ZoneNotFound(self.message),
            FailureKind::Config => ProviderError::Config(self.message),
        }
    }

    /// The error of a request about `zone`: a missing zone is named.
    pub(crate) fn in_zone(self, zone: &str) -> ProviderError {
        match self.kind {
            FailureKind::ZoneNotFound => ProviderError::ZoneNotFound(format!("{zone} ({})", self.message)),
            _ => self.into_provider_error(),
        }
    }
}

/// A refusal before sending (the write gate closed, a rate-limit wait outlived the Lease)
/// travels through a backend's request path as a failure of that request.
impl From<ProviderError> for Failure {
    fn from(e: ProviderError) -> Failure {
        let kind = match &e {
            ProviderError::Unreachable(_) => FailureKind::Unreachable,
            ProviderError::AuthFailed(_) => FailureKind::Auth,
            ProviderError::Throttled(_) => FailureKind::Throttled,
            ProviderError::Rejected(_) => FailureKind::Invalid,
            ProviderError::ZoneNotFound(_) => FailureKind::ZoneNotFound,
            ProviderError::Config(_) => FailureKind::Config,
        };
        let message = match e {
            ProviderError::Unreachable(m)
            | ProviderError::AuthFailed(m)
            | ProviderError::Throttled(m)
            | ProviderError::Rejected(m)
            | ProviderError::ZoneNotFound(m)
            | ProviderError::Config(m) => m,
        };
        Failure { kind, message }
    }
}

/// The results of an apply; a change left without one was never sent.
pub(crate) fn collect_results(results: Vec<Option<ChangeResult>>) -> Vec<ChangeResult> {
    results.into_iter().map(|r| r.unwrap_or_else(|| Err(not_sent("an earlier request of this pass failed")))).collect()
}

/// A part of a batch carrying one change of the apply.
pub(crate) trait BatchUnit {
    /// Index of the change in the apply's input.
    fn index(&self) -> usize;
}

/// Sends `batches` in order with `send`, and fills `results` for every unit. A batch refused
/// for its content is halved until the refused change stands alone, so one bad change does
/// not hold back the others; any other failure stops the apply, and what is left gets that
/// error (the backend is down, throttling or refusing the credentials: more requests would
/// fail the same way and spend quota).
///
/// `send` builds the request of a part before it returns the future that sends it, so the
/// future owns what it sends (and is `Send` for any part).
pub(crate) async fn send_bisecting<U: BatchUnit, F: Future<Output = Result<Applied, Failure>>>(
    backend: &str,
    zone: &str,
    batches: Vec<Vec<U>>,
    results: &mut [Option<ChangeResult>],
    send: impl FnMut(&[U]) -> F,
) {
    send_isolating(backend, zone, batches, results, |_, _| None, send).await
}

/// [`send_bisecting`] for a backend whose refusals may name the change at fault (Cloud DNS
/// says `entity.change.deletions[3]`): `locate` gives the position in the part of the unit a
/// refusal names, which is refused at once while the rest of the part goes out again without
/// it; a refusal `locate` cannot place is bisected.
pub(crate) async fn send_isolating<U: BatchUnit, F: Future<Output = Result<Applied, Failure>>>(
    backend: &str,
    zone: &str,
    batches: Vec<Vec<U>>,
    results: &mut [Option<ChangeResult>],
    locate: impl Fn(&Failure, &[U]) -> Option<usize>,
    mut send: impl FnMut(&[U]) -> F,
) {
    let mut fatal: Option<ProviderError> = None;
    for batch in batches {
        // Bisection without recursion: halves are pushed second-first so they run in order.
        let mut stack: Vec<Vec<U>> = vec![batch];
        while let Some(part) = stack.pop() {
            if part.is_empty() {
                continue;
            }
            if let Some(e) = &fatal {
                for u in &part {
                    results[u.index()] = Some(Err(e.clone()));
                }
                continue;
            }
            match send(&part).await {
                Ok(applied) => {
                    for u in &part {
                        results[u.index()] = Some(Ok(applied.clone()));
                    }
                }
                Err(f) if f.kind == FailureKind::Invalid && part.len() > 1 => {
                    let mut rest = part;
                    match locate(&f, &rest) {
                        Some(at) if at < rest.len() => {
                            tracing::debug!(backend, zone, size = rest.len(), error = %f.message, "batch refused for one change, sending the rest again");
                            let bad = rest.remove(at);
                            results[bad.index()] = Some(Err(ProviderError::Rejected(f.message)));
                            stack.push(rest);
                        }
                        _ => {
                            tracing::debug!(backend, zone, size = rest.len(), error = %f.message, "batch refused, bisecting");
                            let second = rest.split_off(rest.len() / 2);
                            stack.push(second);
                            stack.push(rest);
                        }
                    }
                }
                Err(f) if f.kind == FailureKind::Invalid => {
                    results[part[0].index()] = Some(Err(ProviderError::Rejected(f.message)));
                }
                Err(f) => {
                    let e = f.in_zone(zone);
                    for u in &part {
                        results[u.index()] = Some(Err(e.clone()));
                    }
                    fatal = Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct U(usize);
    impl BatchUnit for U {
        fn index(&self) -> usize {
            self.0
        }
    }

    #[tokio::test]
    async fn a_refused_change_is_found_by_bisection_and_the_others_go_out() {
        let mut results = vec![None; 5];
        let mut sent = Vec::new();
        let batches = vec![(0..4).map(U).collect::<Vec<_>>(), vec![U(4)]];
        send_bisecting("test", "z.test", batches, &mut results, |part: &[U]| {
            sent.push(part.iter().map(|u| u.0).collect::<Vec<_>>());
            let bad = part.iter().any(|u| u.0 == 2);
            async move {
                match bad {
                    true => Err(Failure::new(FailureKind::Invalid, "bad 2")),
                    false => Ok(Applied::Live),
                }
            }
        })
        .await;
        assert_eq!(sent, vec![vec![0, 1, 2, 3], vec![0, 1], vec![2, 3], vec![2], vec![3], vec![4]]);
        let results = collect_results(results);
        assert!(matches!(&results[2], Err(ProviderError::Rejected(m)) if m == "bad 2"));
        assert!([0, 1, 3, 4].iter().all(|i| results[*i] == Ok(Applied::Live)));
    }

    #[tokio::test]
    async fn a_refusal_naming_its_change_refuses_that_one_and_resends_the_rest() {
        let mut results = vec![None; 4];
        let mut sent = Vec::new();
        let locate = |f: &Failure, part: &[U]| part.iter().position(|u| f.message == format!("bad {}", u.0));
        send_isolating("test", "z.test", vec![(0..4).map(U).collect()], &mut results, locate, |part: &[U]| {
            sent.push(part.iter().map(|u| u.0).collect::<Vec<_>>());
            let bad = part.iter().find(|u| u.0 == 2 || u.0 == 3).map(|u| u.0);
            async move {
                match bad {
                    Some(b) => Err(Failure::new(FailureKind::Invalid, format!("bad {b}"))),
                    None => Ok(Applied::Live),
                }
            }
        })
        .await;
        assert_eq!(sent, vec![vec![0, 1, 2, 3], vec![0, 1, 3], vec![0, 1]], "no bisection, no change sent twice alone");
        let results = collect_results(results);
        assert!(matches!(&results[2], Err(ProviderError::Rejected(m)) if m == "bad 2"));
        assert!(matches!(&results[3], Err(ProviderError::Rejected(m)) if m == "bad 3"));
        assert!(results[0] == Ok(Applied::Live) && results[1] == Ok(Applied::Live));
    }

    #[tokio::test]
    async fn an_outage_stops_the_apply_and_names_the_zone() {
        let mut results = vec![None; 3];
        let mut calls = 0;
        let batches = vec![vec![U(0)], vec![U(1)], vec![U(2)]];
        send_bisecting("test", "z.test", batches, &mut results, |_: &[U]| {
            calls += 1;
            async { Err(Failure::new(FailureKind::ZoneNotFound, "gone")) }
        })
        .await;
        assert_eq!(calls, 1, "nothing is sent after a failure that is not about the data");
        let results = collect_results(results);
        assert!(results.iter().all(|r| matches!(r, Err(ProviderError::ZoneNotFound(m)) if m == "z.test (gone)")));
    }

    #[test]
    fn an_unsent_change_is_retried_not_parked() {
        let r = collect_results(vec![None, Some(Ok(Applied::Live))]);
        assert!(r[0].as_ref().unwrap_err().is_transient());
        assert!(r[0].as_ref().unwrap_err().to_string().contains("change was not sent"));
    }

    #[test]
    fn http_statuses_have_one_reading() {
        let k = FailureKind::of_http_status;
        assert_eq!(
            (k(429), k(503), k(401), k(403), k(404)),
            (
                FailureKind::Throttled,
                FailureKind::Unreachable,
                FailureKind::Auth,
                FailureKind::Auth,
                FailureKind::ZoneNotFound
            )
        );
        assert_eq!(
            (k(400), k(409), k(412), k(422)),
            (FailureKind::Invalid, FailureKind::Invalid, FailureKind::Invalid, FailureKind::Invalid)
        );
    }
}
