//! One ARM request: the bearer token, the rate limit, retries after throttling, and ARM's
//! error shape (`{"error": {"code", "message"}}`) sorted into our reasons.

use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::auth::TokenSource;
use crate::failure::{Failure, FailureKind};
use crate::http::{self, Attempt};
use crate::ratelimit::Limiter;

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
                kind: FailureKind::Invalid,
                message: format!("{what}: {url} is not below {}", self.base),
            });
        }
        let read = method == Method::GET;
        let renewed = AtomicBool::new(false);
        http::retrying(self.label, what, read, self.max_attempts, || async {
            let token = match self.tokens.token().await {
                Ok(t) => t,
                Err(e) => {
                    let f = Failure::from(e);
                    // A token endpoint refusing the identity is a credentials problem.
                    let kind = match f.kind {
                        FailureKind::Unreachable | FailureKind::Throttled => f.kind,
                        _ => FailureKind::Auth,
                    };
                    return Attempt::Failed(Failure::new(kind, f.message), None);
                }
            };
            if let Err(e) = self.limiter.admit(what).await {
                return Attempt::Failed(e.into(), None);
            }
            let mut req = self.http.request(method.clone(), url).bearer_auth(&token);
            match condition {
                Some(Condition::Absent) => req = req.header(reqwest::header::IF_NONE_MATCH, "*"),
                Some(Condition::Etag(e)) => req = req.header(reqwest::header::IF_MATCH, e.as_str()),
                None => {}
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let a = match http::exchange(req, what).await {
                Ok(a) => a,
                Err(f) => return Attempt::Failed(f, None),
            };
            if a.status.is_success() {
                return Attempt::Done(serde_json::from_str(&a.text).unwrap_or(Value::Null));
            }
            let failure = classify(self.label, what, a.status, &a.text);
            if failure.kind == FailureKind::Auth && !renewed.swap(true, Ordering::SeqCst) {
                self.tokens.invalidate().await;
                return Attempt::Renewed;
            }
            Attempt::Failed(failure, a.retry_after)
        })
        .await
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
                        kind: FailureKind::Invalid,
                        message: format!("{what}: `value` is not a list: {other}"),
                    })
                }
            }
            next = page.get("nextLink").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        }
        Ok(out)
    }
}

/// Sorts a failed ARM answer into our reasons, keeping ARM's code and message.
pub(crate) fn classify(label: &str, what: &str, status: StatusCode, text: &str) -> Failure {
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
        s => FailureKind::of_http_status(s),
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
        assert_eq!(kind(404, &cloud("ParentResourceNotFound", "zone")), FailureKind::ZoneNotFound);
        assert_eq!(kind(503, ""), FailureKind::Unreachable);
        let f = classify(
            "Azure DNS",
            "writing a.example.com A",
            StatusCode::CONFLICT,
            &cloud("Conflict", "CNAME beside A"),
        );
        assert_eq!(
            (f.kind, f.message.as_str()),
            (FailureKind::Invalid, "writing a.example.com A: Azure DNS said Conflict: CNAME beside A")
        );
    }
}
