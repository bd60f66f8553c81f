//! Microsoft Entra ID (Azure AD) access tokens for ARM: a client secret (OAuth2 client
//! credentials), a workload identity's federated token (client assertion), or a managed
//! identity through IMDS. Tokens are cached until shortly before they expire.
//!
//! Done by hand with reqwest rather than with Microsoft's `azure_identity` crate: that crate
//! brings its own HTTP stack and async runtime abstraction, while these are three small form
//! POSTs (one GET) whose answers are one JSON object.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use extdns_core::provider::ProviderError;

/// Azure's public cloud authority.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The Instance Metadata Service token endpoint of a VM or node with a managed identity.
pub const IMDS_TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// A token is renewed this long before it expires (Entra ID tokens live 60–90 minutes).
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// `client_assertion_type` of a federated (workload identity) token.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Who extdns is towards Entra ID.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// An app registration's client secret (a Secret, or azure.json's aadClientSecret).
    ClientSecret { tenant_id: String, client_id: String, client_secret: String },
    /// Azure Workload Identity: the projected service account token in `token_file` is the
    /// client assertion of `client_id`.
    WorkloadIdentity { tenant_id: String, client_id: String, token_file: PathBuf },
    /// The node's managed identity through IMDS; `client_id` picks a user-assigned one.
    ManagedIdentity { client_id: Option<String>, endpoint: String },
}

impl Credential {
    /// The client id, for messages (never a secret).
    pub fn identity(&self) -> String {
        match self {
            Credential::ClientSecret { client_id, tenant_id, .. }
            | Credential::WorkloadIdentity { client_id, tenant_id, .. } => {
                format!("client {client_id} of tenant {tenant_id}")
            }
            Credential::ManagedIdentity { client_id: Some(c), .. } => format!("managed identity {c}"),
            Credential::ManagedIdentity { client_id: None, .. } => "the system-assigned managed identity".into(),
        }
    }
}

/// Keeps the client secret out of logs.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::ClientSecret { tenant_id, client_id, .. } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
            Credential::WorkloadIdentity { tenant_id, client_id, token_file } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            Credential::ManagedIdentity { client_id, endpoint } => {
                f.debug_struct("ManagedIdentity").field("client_id", client_id).field("endpoint", endpoint).finish()
            }
        }
    }
}

/// Entra ID's token answer (v2 endpoint and IMDS; IMDS sends `expires_in` as a string).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// Entra ID's error answer.
#[derive(Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

struct Cached {
    token: String,
    renew_at: Instant,
}

/// Fetches and caches tokens of one credential for one resource.
pub struct TokenSource {
    credential: Credential,
    authority_host: String,
    /// The ARM endpoint the token is for (`{resource}/.default` is the scope).
    resource: String,
    http: reqwest::Client,
    cached: Mutex<Option<Cached>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("credential", &self.credential)
            .field("authority_host", &self.authority_host)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(credential: Credential, authority_host: &str, resource: &str, http: reqwest::Client) -> Self {
        TokenSource {
            credential,
            authority_host: authority_host.trim_end_matches('/').to_string(),
            resource: resource.trim_end_matches('/').to_string(),
            http,
            cached: Mutex::new(None),
        }
    }

    /// A valid access token, from the cache or fresh. Concurrent callers wait for one fetch.
    pub async fn token(&self) -> Result<String, ProviderError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.renew_at) {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        let renew_in = lifetime.saturating_sub(RENEW_BEFORE).max(lifetime / 2);
        *cached = Some(Cached { token: token.clone(), renew_at: Instant::now() + renew_in });
        Ok(token)
    }

    /// Forgets the cached token (ARM refused it: revoked, or the clock is off).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<(String, Duration), ProviderError> {
        let what = format!("getting an Entra ID token for {}", self.credential.identity());
        let scope = format!("{}/.default", self.resource);
        let request = match &self.credential {
            Credential::ClientSecret { tenant_id, client_id, client_secret } => {
                let form = form_encode(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", client_secret),
                    ("scope", &scope),
                ]);
                self.form_post(tenant_id, form)
            }
            Credential::WorkloadIdentity { tenant_id, client_id, token_file } => {
                // Read on every fetch: the kubelet rotates the projected token.
                let assertion = std::fs::read_to_string(token_file).map_err(|e| {
                    ProviderError::AuthFailed(format!(
                        "{what}: reading the federated token {}: {e}",
                        token_file.display()
                    ))
                })?;
                let form = form_encode(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", assertion.trim()),
                    ("scope", &scope),
                ]);
                self.form_post(tenant_id, form)
            }
            Credential::ManagedIdentity { client_id, endpoint } => {
                let resource = format!("{}/", self.resource);
                let mut query = vec![("api-version", "2018-02-01"), ("resource", resource.as_str())];
                if let Some(c) = client_id {
                    query.push(("client_id", c));
                }
                self.http.get(format!("{endpoint}?{}", form_encode(&query))).header("Metadata", "true")
            }
        };
        let resp = request.send().await.map_err(|e| ProviderError::Unreachable(format!("{what}: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            let answer: TokenAnswer = serde_json::from_str(&text)
                .map_err(|e| ProviderError::AuthFailed(format!("{what}: the answer is not a token: {e}")))?;
            return Ok((answer.access_token, lifetime_of(answer.expires_in.as_ref())));
        }
        let err: TokenError = serde_json::from_str(&text).unwrap_or_default();
        let detail = if err.error.is_empty() {
            format!("HTTP {}: {}", status.as_u16(), text.chars().take(200).collect::<String>())
        } else {
            format!("HTTP {}: {}: {}", status.as_u16(), err.error, err.error_description)
        };
        let message = format!("{what}: {detail}");
        Err(if status.as_u16() == 429 {
            ProviderError::Throttled(message)
        } else if status.is_server_error() {
            ProviderError::Unreachable(message)
        } else {
            ProviderError::AuthFailed(message)
        })
    }

    fn form_post(&self, tenant_id: &str, form: String) -> reqwest::RequestBuilder {
        let url = format!("{}/{}/oauth2/v2.0/token", self.authority_host, path_escape(tenant_id));
        self.http.post(url).header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(form)
    }
}

/// `expires_in` in seconds, a number or (IMDS) a string; an hour when missing.
fn lifetime_of(v: Option<&serde_json::Value>) -> Duration {
    let secs = match v {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Duration::from_secs(secs.unwrap_or(3600))
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", escape(k, false), escape(v, false))).collect::<Vec<_>>().join("&")
}

/// One URL path segment (a tenant id, a record set name): unreserved characters kept, `*`
/// and `@` too (wildcard and apex record set names), everything else percent-encoded.
pub(crate) fn path_escape(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, path: bool) -> String {
    s.bytes()
        .map(|b| {
            let keep = b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'.' | b'~')
                || (path && matches!(b, b'*' | b'@'));
            if keep {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_paths_are_escaped() {
        assert_eq!(
            form_encode(&[("scope", "https://management.azure.com/.default"), ("a b", "x&y=z")]),
            "scope=https%3A%2F%2Fmanagement.azure.com%2F.default&a%20b=x%26y%3Dz"
        );
        assert_eq!(path_escape("*.wild"), "*.wild");
        assert_eq!(path_escape("@"), "@");
        assert_eq!(path_escape("../x?y"), "..%2Fx%3Fy");
    }

    #[test]
    fn lifetimes_come_as_numbers_or_strings() {
        assert_eq!(lifetime_of(Some(&serde_json::json!(3599))), Duration::from_secs(3599));
        assert_eq!(lifetime_of(Some(&serde_json::json!("86399"))), Duration::from_secs(86399));
        assert_eq!(lifetime_of(None), Duration::from_secs(3600));
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let c =
            Credential::ClientSecret { tenant_id: "t".into(), client_id: "c".into(), client_secret: "s3cr3t".into() };
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(c.identity(), "client c of tenant t");
    }
}
