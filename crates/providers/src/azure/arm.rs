//! One ARM request: the bearer token, the rate limit, retries after throttling, and ARM's
//! error shape (`{"error": {"code", "message"}}`) sorted into our reasons.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::auth::TokenSource;
use crate::ratelimit::Limiter;
use extdns_core::provider::ProviderError;

/// A `Retry-After` longer than this is not waited for inside one call: the worker's backoff
/// takes over.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Throttled,
    Unreachable,
    Auth,
    NotFound,
    /// 412: the etag sent with If-Match (or If-None-Match: *) no longer holds.
    Precondition,
    Rejected,
}

#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn into_provider_error(self) -> ProviderError {
        match self.kind {
            FailureKind::Throttled => ProviderError::Throttled(self.message),
            FailureKind::Unreachable => ProviderError::Unreachable(self.message),
            FailureKind::Auth => ProviderError::AuthFailed(self.message),
            FailureKind::NotFound => ProviderError::ZoneNotFound(self.message),
            FailureKind::Precondition | FailureKind::Rejected => ProviderError::Rejected(self.message),
        }
    }
}

/// The precondition of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Create only: `If-None-Match: *`.
    Absent,
    /// Only while the record set still has the etag that was read: `If-Match`.
    Etag(String),
}

/// A client of one ARM endpoint.
#[derive(Debug)]
pub struct Arm {
    pub http: reqwest::Client,
    /// `https://management.azure.com`, no trailing slash.
    pub base: String,
    pub tokens: TokenSource,
    pub limiter: Limiter,
    pub max_attempts: u32,
    pub label: &'static str,
}

impl Arm {
    /// Sends one request (URL absolute, below `base`), retried after 429 (and for reads after
    /// 5xx or a connection failure); a 401 fetches a new token once. The answer's JSON body.
    pub async fn call(
        &self,
        what: &str,
        method: Method,
        url: &str,
        condition: Option<&Condition>,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        if !url.starts_with(&format!("{}/", self.base)) {
            // A nextLink elsewhere would get our token.
            return Err(Failure {
                kind: FailureKind::Rejected,
                message: format!("{what}: {url} is not below {}", self.base),
            });
        }
        let read = method == Method::GET;
        let mut attempt = 1;
        let mut renewed = false;
        loop {
            let token = self.tokens.token().await.map_err(|e| match e {
                ProviderError::Unreachable(message) => Failure { kind: FailureKind::Unreachable, message },
                ProviderError::Throttled(message) => Failure { kind: FailureKind::Throttled, message },
                ProviderError::AuthFailed(message) => Failure { kind: FailureKind::Auth, message },
                other => Failure { kind: FailureKind::Auth, message: other.to_string() },
            })?;
            self.limiter
                .admit(what)
                .await
                .map_err(|e| Failure { kind: FailureKind::Unreachable, message: e.to_string() })?;
            let mut req = self.http.request(method.clone(), url).bearer_auth(&token);
            match condition {
                Some(Condition::Absent) => req = req.header(reqwest::header::IF_NONE_MATCH, "*"),
                Some(Condition::Etag(e)) => req = req.header(reqwest::header::IF_MATCH, e.as_str()),
                None => {}
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let (failure, wait) = match req.send().await {
                Err(e) => {
                    (Failure { kind: FailureKind::Unreachable, message: format!("{what}: {}", error_chain(&e)) }, None)
                }
                Ok(resp) => {
                    let status = resp.status();
                    let wait = retry_after(resp.headers());
                    let text = resp.text().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
                    }
                    (classify(self.label, what, status, &text), wait)
                }
            };
            if failure.kind == FailureKind::Auth && !renewed {
                renewed = true;
                self.tokens.invalidate().await;
                continue;
            }
            let retryable = match failure.kind {
                FailureKind::Throttled => true,
                FailureKind::Unreachable => read,
                _ => false,
            };
            if !retryable || attempt >= self.max_attempts {
                let message = if retryable {
                    format!("{} (gave up after {attempt} attempts)", failure.message)
                } else {
                    failure.message
                };
                return Err(Failure { kind: failure.kind, message });
            }
            let delay = match wait {
                Some(w) if w <= MAX_RETRY_AFTER => w,
                Some(w) => {
                    return Err(Failure {
                        kind: failure.kind,
                        message: format!("{} ({} asked to retry after {w:?})", failure.message, self.label),
                    })
                }
                None => extdns_core::backoff::delay(RETRY_BASE_DELAY, MAX_RETRY_DELAY, attempt - 1),
            };
            tracing::debug!(what, attempt, ?delay, error = %failure.message, "ARM request failed, retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Every item of a listing, following `nextLink` until there is none.
    pub async fn list_all(&self, what: &str, first: String) -> Result<Vec<Value>, Failure> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let page = self.call(what, Method::GET, &url, None, None).await?;
            match page.get("value") {
                Some(Value::Array(items)) => out.extend(items.iter().cloned()),
                None | Some(Value::Null) => {}
                Some(other) => {
                    return Err(Failure {
                        kind: FailureKind::Rejected,
                        message: format!("{what}: `value` is not a list: {other}"),
                    })
                }
            }
            next = page.get("nextLink").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        }
        Ok(out)
    }
}

/// `Retry-After` in seconds (ARM sends seconds).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Sorts a failed ARM answer into our reasons, keeping ARM's code and message.
pub fn classify(label: &str, what: &str, status: StatusCode, text: &str) -> Failure {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let detail = match body["error"]["message"].as_str() {
        Some(m) => format!("{code}: {m}"),
        None => {
            let snippet: String = text.chars().take(200).collect();
            format!("HTTP {} {}", status.as_u16(), snippet.trim())
        }
    };
    let message = format!("{what}: {label} said {detail}");
    let kind = match status.as_u16() {
        429 => FailureKind::Throttled,
        401 | 403 => FailureKind::Auth,
        412 => FailureKind::Precondition,
        404 => FailureKind::NotFound,
        s if s >= 500 => FailureKind::Unreachable,
        _ => FailureKind::Rejected,
    };
    Failure { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_errors_map_to_reasons() {
        let cloud = |code: &str, msg: &str| serde_json::json!({"error": {"code": code, "message": msg}}).to_string();
        let kind = |s: u16, t: &str| classify("Azure DNS", "x", StatusCode::from_u16(s).unwrap(), t).kind;
        assert_eq!(kind(429, &cloud("TooManyRequests", "slow down")), FailureKind::Throttled);
        assert_eq!(kind(401, &cloud("InvalidAuthenticationToken", "bad")), FailureKind::Auth);
        assert_eq!(kind(403, &cloud("AuthorizationFailed", "no role")), FailureKind::Auth);
        assert_eq!(kind(412, &cloud("PreconditionFailed", "etag")), FailureKind::Precondition);
        assert_eq!(kind(404, &cloud("ParentResourceNotFound", "zone")), FailureKind::NotFound);
        assert_eq!(kind(503, ""), FailureKind::Unreachable);
        let f = classify(
            "Azure DNS",
            "writing a.example.com A",
            StatusCode::CONFLICT,
            &cloud("Conflict", "CNAME beside A"),
        );
        assert_eq!(
            (f.kind, f.message.as_str()),
            (FailureKind::Rejected, "writing a.example.com A: Azure DNS said Conflict: CNAME beside A")
        );
    }

    #[test]
    fn retry_after_is_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }
}
