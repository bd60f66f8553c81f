//! The HTTP transport of the JSON API backends (PowerDNS, the external-dns webhook,
//! Cloudflare, and the cloud APIs that follow them): one client setup, one URL check, one
//! reading of transport errors and `Retry-After`. Each backend keeps only what its API says
//! in its error bodies.

use std::future::Future;
use std::time::Duration;

use reqwest::Url;

use crate::failure::{Failure, FailureKind};

/// Why an HTTP backend cannot be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpConfigError {
    #[error("url {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("CA bundle: {0}")]
    CaBundle(String),
    #[error("API key: {0}")]
    ApiKey(String),
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// An HTTP client for an API: rustls (kube's TLS stack), no redirects (a redirect would carry
/// the credentials to another host), a timeout per request and for connecting, optional
/// extra CA certificates (PEM) besides the public roots.
pub fn client(timeout: Duration, ca_bundle: Option<&[u8]>) -> Result<reqwest::Client, HttpConfigError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("extdns/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout);
    if let Some(pem) = ca_bundle {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| HttpConfigError::CaBundle(e.to_string()))?;
        if certs.is_empty() {
            return Err(HttpConfigError::CaBundle("no PEM certificate found".into()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| HttpConfigError::Client(e.to_string()))
}

/// Parses a base URL: http or https, no query, no credentials in it.
pub fn base_url(url: &str) -> Result<Url, HttpConfigError> {
    let err = |message: &str| HttpConfigError::Url { url: url.to_string(), message: message.into() };
    let u = Url::parse(url).map_err(|e| err(&e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(err("the scheme must be http or https"));
    }
    if u.host_str().is_none() {
        return Err(err("no host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(err("credentials do not belong in the URL"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(err("no query or fragment, please"));
    }
    Ok(u)
}

/// `base` with `segments` appended as path segments (each percent-encoded, so an id from an
/// API answer cannot change the path).
pub fn join(base: &Url, segments: &[&str]) -> Url {
    let mut u = base.clone();
    if let Ok(mut p) = u.path_segments_mut() {
        p.pop_if_empty();
        p.extend(segments);
    }
    u
}

/// What the error of a request says, with its causes (reqwest's own message omits them).
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// A request that got no answer (connection refused, timeout, a broken body): the backend is
/// unreachable, and whether the request took effect is unknown.
pub(crate) fn transport_failure(what: &str, e: &reqwest::Error) -> Failure {
    let timed_out = if e.is_timeout() { "timed out: " } else { "" };
    Failure::new(FailureKind::Unreachable, format!("{what}: {timed_out}{}", error_chain(e)))
}

/// An API's answer to one request.
pub(crate) struct Answer {
    pub(crate) status: reqwest::StatusCode,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) text: String,
}

/// Sends `req` and reads the whole answer; a request that got none is [`transport_failure`].
pub(crate) async fn exchange(req: reqwest::RequestBuilder, what: &str) -> Result<Answer, Failure> {
    let resp = req.send().await.map_err(|e| transport_failure(what, &e))?;
    let (status, retry_after) = (resp.status(), retry_after(resp.headers()));
    let text = resp.text().await.map_err(|e| transport_failure(what, &e))?;
    Ok(Answer { status, retry_after, text })
}

/// The start of an error body, for messages: APIs and proxies in front of them answer HTML
/// pages or long JSON, and the status shows in `kubectl get`.
pub(crate) fn body_snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).trim().chars().take(300).collect()
}

/// `Retry-After` in seconds (a date form is not used by the APIs we call).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>()
        .ok()
        .map(Duration::from_secs)
        .or_else(|| v.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64))
}

/// A `Retry-After` longer than this is not waited for inside one call: the worker's backoff
/// takes over, and the provider's other work is not held up meanwhile.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// First wait between two attempts without a `Retry-After`, doubled each time (before jitter).
const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
/// Longest wait between two attempts without a `Retry-After`.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// The outcome of one attempt of a request.
pub(crate) enum Attempt<T> {
    Done(T),
    /// Failed, with the `Retry-After` the API sent, if any.
    Failed(Failure, Option<Duration>),
    /// Try again at once, not counted as an attempt: the credentials were renewed after a 401
    /// (the caller allows that once).
    Renewed,
}

/// The retry rules of the JSON API backends. Throttling is retried always; a request that got
/// no answer (or a 5xx) only when it is `idempotent` (a read: a write may have been applied);
/// anything else is not retried. Each retry waits the API's `Retry-After`, or an exponential
/// backoff with jitter; at most `max_attempts` attempts in all.
pub(crate) async fn retrying<T, F: Future<Output = Attempt<T>>>(
    api: &str,
    what: &str,
    idempotent: bool,
    max_attempts: u32,
    mut attempt: impl FnMut() -> F,
) -> Result<T, Failure> {
    let mut n = 1;
    let mut renewals = 0;
    loop {
        let (failure, wait) = match attempt().await {
            Attempt::Done(v) => return Ok(v),
            Attempt::Failed(f, wait) => (f, wait),
            // Bounded even if a caller renews on every attempt.
            Attempt::Renewed if renewals < max_attempts => {
                renewals += 1;
                continue;
            }
            Attempt::Renewed => {
                (Failure::new(FailureKind::Auth, format!("{what}: refused after new credentials")), None)
            }
        };
        let retryable = match failure.kind {
            FailureKind::Throttled => true,
            FailureKind::Unreachable => idempotent,
            _ => false,
        };
        if !retryable || n >= max_attempts {
            let message = match retryable {
                true => format!("{} (gave up after {n} attempts)", failure.message),
                false => failure.message,
            };
            return Err(Failure::new(failure.kind, message));
        }
        let delay = match wait {
            Some(w) if w <= MAX_RETRY_AFTER => w,
            Some(w) => {
                return Err(Failure::new(
                    failure.kind,
                    format!("{} ({api} asked to retry after {w:?})", failure.message),
                ))
            }
            None => extdns_core::backoff::delay(RETRY_BASE_DELAY, MAX_RETRY_DELAY, n - 1),
        };
        tracing::debug!(api, what, attempt = n, ?delay, error = %failure.message, "request failed, retrying");
        tokio::time::sleep(delay).await;
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_follow_one_rule() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let failing = |kind| {
            let calls = &calls;
            move || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { Attempt::<()>::Failed(Failure::new(kind, "x"), None) }
            }
        };
        // Throttling: every attempt is made.
        let e = retrying("API", "w", false, 3, failing(FailureKind::Throttled)).await.unwrap_err();
        assert_eq!(
            (calls.swap(0, std::sync::atomic::Ordering::SeqCst), e.message.as_str()),
            (3, "x (gave up after 3 attempts)")
        );
        // No answer to a write: it may have been applied, so it is not sent again.
        retrying("API", "w", false, 3, failing(FailureKind::Unreachable)).await.unwrap_err();
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 1);
        // No answer to a read: retried.
        retrying("API", "r", true, 3, failing(FailureKind::Unreachable)).await.unwrap_err();
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 3);
        // Refused data or credentials: never retried.
        retrying("API", "w", true, 3, failing(FailureKind::Invalid)).await.unwrap_err();
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retry_after_is_left_to_the_worker() {
        let r = retrying("API", "w", true, 5, || async {
            Attempt::<()>::Failed(Failure::new(FailureKind::Throttled, "slow down"), Some(Duration::from_secs(3600)))
        })
        .await
        .unwrap_err();
        assert_eq!(r.message, "slow down (API asked to retry after 3600s)");
        let renewed = std::sync::atomic::AtomicBool::new(false);
        let v = retrying("API", "r", true, 1, || async {
            match renewed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                false => Attempt::Renewed,
                true => Attempt::Done(7),
            }
        })
        .await;
        assert_eq!(v.unwrap(), 7, "a renewal is not an attempt");
    }

    #[test]
    fn urls_are_checked_and_joined() {
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("http://user:pw@x").is_err());
        assert!(base_url("http://x/?a=1").is_err());
        let b = base_url("http://pdns:8081/").unwrap();
        assert_eq!(join(&b, &["api", "v1", "a b/c"]).as_str(), "http://pdns:8081/api/v1/a%20b%2Fc");
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(reqwest::header::RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn a_ca_bundle_without_certificates_is_refused() {
        assert_eq!(
            client(Duration::from_secs(1), Some(b"nothing here")).unwrap_err(),
            HttpConfigError::CaBundle("no PEM certificate found".into())
        );
    }
}
