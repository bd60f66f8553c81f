//! Access tokens for the Cloud DNS API.
//!
//! Two sources, as Google's own libraries have them:
//!
//! * **A service-account JSON key** (the file `gcloud iam service-accounts keys create` writes):
//!   the OAuth2 JWT-bearer grant (RFC 7523). A JWT `{iss: client_email, scope, aud: token_uri,
//!   iat, exp: iat + 1h}` is signed RS256 with the key's PKCS#8 private key by `ring` (already
//!   in the build through rustls; no JWT or OAuth crate is needed for one signature and one
//!   form POST) and POSTed to the key's `token_uri`, which answers an access token.
//! * **The metadata server** (GCE, GKE Workload Identity): `GET
//!   /computeMetadata/v1/instance/service-accounts/default/token` with `Metadata-Flavor:
//!   Google` answers a token of the identity the pod runs as.
//!
//! A token is cached and reused until [`REFRESH_MARGIN`] before it expires; callers asking
//! at once wait for one refresh. A token the API refuses (401) is dropped with
//! [`TokenSource::invalidate`] and fetched again once.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use extdns_core::provider::ProviderError;

/// Read-write access to Cloud DNS, the scope external-dns asks for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/ndev.clouddns.readwrite";
/// Google's token endpoint, where a key without `token_uri` sends its grant.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server of GCE and GKE; `GCE_METADATA_HOST` overrides it, as in Google's
/// client libraries.
pub const DEFAULT_METADATA_URL: &str = "http://metadata.google.internal";
/// Path of the metadata server's token of the default service account.
pub const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// Path of the metadata server's project id.
pub const METADATA_PROJECT_PATH: &str = "/computeMetadata/v1/project/project-id";
/// A cached token is refreshed this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Lifetime asked for in the JWT: Google's maximum.
const ASSERTION_LIFETIME: u64 = 3600;
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The metadata server's URL: `GCE_METADATA_HOST` (host[:port], as Google's libraries read it)
/// or [`DEFAULT_METADATA_URL`].
pub fn metadata_url_from_env() -> String {
    match std::env::var("GCE_METADATA_HOST") {
        Ok(h) if !h.trim().is_empty() => {
            let h = h.trim().trim_end_matches('/');
            if h.starts_with("http://") || h.starts_with("https://") {
                h.to_string()
            } else {
                format!("http://{h}")
            }
        }
        _ => DEFAULT_METADATA_URL.to_string(),
    }
}

/// The fields of a service-account JSON key that the grant needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    #[serde(rename = "type", default)]
    pub key_type: String,
    #[serde(default)]
    pub project_id: String,
    #[serde(default)]
    pub private_key_id: String,
    pub private_key: String,
    pub client_email: String,
    #[serde(default)]
    pub token_uri: String,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("project_id", &self.project_id)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"<redacted>")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccountKey {
    /// Parses and checks a JSON key: a `service_account` key with a PKCS#8 RSA private key.
    pub fn parse(json: &str) -> Result<ServiceAccountKey, ProviderError> {
        let bad = |m: String| ProviderError::Config(format!("Google service-account key: {m}"));
        let v: Value = serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "service_account" {
            return Err(bad(format!(
                "type is {kind:?}, not \"service_account\" (user credentials and workload identity federation files are not keys; use a service-account key, or the ambient identity)"
            )));
        }
        let key: ServiceAccountKey = serde_json::from_value(v).map_err(|e| bad(format!("missing field: {e}")))?;
        if key.client_email.trim().is_empty() {
            return Err(bad("client_email is empty".into()));
        }
        signer(&key.private_key).map_err(bad)?;
        Ok(key)
    }
}

/// The RSA key pair of a PEM `PRIVATE KEY` (PKCS#8), as Google writes it into keys.
fn signer(pem: &str) -> Result<RsaKeyPair, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    if body.is_empty() {
        return Err("private_key holds no PEM \"PRIVATE KEY\" (PKCS#8) block".into());
    }
    let der = STANDARD.decode(body.as_bytes()).map_err(|e| format!("private_key is not valid base64: {e}"))?;
    RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("private_key is not a PKCS#8 RSA key ring can use: {e}"))
}

/// Signs the JWT-bearer assertion of `key` for `aud`, issued at `now` (seconds since the epoch).
pub fn assertion(key: &ServiceAccountKey, aud: &str, now: u64) -> Result<String, ProviderError> {
    let pair =
        signer(&key.private_key).map_err(|m| ProviderError::Config(format!("Google service-account key: {m}")))?;
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if !key.private_key_id.is_empty() {
        header["kid"] = json!(key.private_key_id);
    }
    let claims = json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": aud,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut signature = vec![0u8; pair.public().modulus_len()];
    pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature)
        .map_err(|_| ProviderError::Config("Google service-account key: RS256 signing failed".into()))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// Where access tokens come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A service-account JSON key; `token_uri` overrides the key's own (a custom token
    /// endpoint).
    ServiceAccountKey { json: String, token_uri: Option<String> },
    /// The metadata server at this URL (GKE Workload Identity, GCE).
    Metadata { url: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ServiceAccountKey { token_uri, .. } => {
                f.debug_struct("ServiceAccountKey").field("json", &"<redacted>").field("token_uri", token_uri).finish()
            }
            Credentials::Metadata { url } => f.debug_struct("Metadata").field("url", url).finish(),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    value: String,
    expires_at: Instant,
}

#[derive(Debug)]
enum Source {
    Key { key: ServiceAccountKey, token_uri: String },
    Metadata { url: String },
}

/// A cached access token and how to get a new one.
#[derive(Debug)]
pub struct TokenSource {
    source: Source,
    http: reqwest::Client,
    cache: Mutex<Option<Token>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenSource {
    pub fn new(credentials: &Credentials, http: reqwest::Client) -> Result<TokenSource, ProviderError> {
        let source = match credentials {
            Credentials::ServiceAccountKey { json, token_uri } => {
                let key = ServiceAccountKey::parse(json)?;
                let token_uri = token_uri
                    .clone()
                    .filter(|u| !u.trim().is_empty())
                    .or_else(|| Some(key.token_uri.clone()).filter(|u| !u.trim().is_empty()))
                    .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
                Source::Key { key, token_uri }
            }
            Credentials::Metadata { url } => Source::Metadata { url: url.trim_end_matches('/').to_string() },
        };
        Ok(TokenSource { source, http, cache: Mutex::new(None) })
    }

    /// The identity tokens are asked for: the key's client_email, or "the metadata server's
    /// default service account".
    pub fn identity(&self) -> String {
        match &self.source {
            Source::Key { key, .. } => key.client_email.clone(),
            Source::Metadata { url } => format!("the default service account of the metadata server {url}"),
        }
    }

    /// The project of the key, if it names one.
    pub fn key_project(&self) -> Option<String> {
        match &self.source {
            Source::Key { key, .. } => Some(key.project_id.clone()).filter(|p| !p.trim().is_empty()),
            Source::Metadata { .. } => None,
        }
    }

    /// A valid access token: the cached one while it has more than [`REFRESH_MARGIN`] left,
    /// else a new one.
    pub async fn token(&self) -> Result<String, ProviderError> {
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.as_ref() {
            if t.expires_at > Instant::now() + REFRESH_MARGIN {
                return Ok(t.value.clone());
            }
        }
        let fresh = self.fetch().await?;
        let value = fresh.value.clone();
        *cache = Some(fresh);
        Ok(value)
    }

    /// Forgets the cached token (the API refused it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn fetch(&self) -> Result<Token, ProviderError> {
        let (what, req) = match &self.source {
            Source::Key { key, token_uri } => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                let jwt = assertion(key, token_uri, now)?;
                let body = format!("grant_type={}&assertion={jwt}", JWT_BEARER.replace(':', "%3A"));
                (
                    format!("getting an access token for {} from {token_uri}", key.client_email),
                    self.http
                        .post(token_uri)
                        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body),
                )
            }
            Source::Metadata { url } => (
                format!("getting an access token from the metadata server {url}"),
                self.http.get(format!("{url}{METADATA_TOKEN_PATH}")).header("Metadata-Flavor", "Google"),
            ),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable(format!("{what}: {}", crate::http::error_chain(&e))))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            let answer: TokenAnswer = serde_json::from_str(&text)
                .map_err(|e| ProviderError::Unreachable(format!("{what}: the answer is not a token ({e})")))?;
            if answer.access_token.is_empty() {
                return Err(ProviderError::AuthFailed(format!("{what}: the answer holds an empty token")));
            }
            let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
            return Ok(Token { value: answer.access_token, expires_at: Instant::now() + lifetime });
        }
        let detail = oauth_error(&text);
        let message = format!("{what}: HTTP {}{detail}", status.as_u16());
        Err(match status.as_u16() {
            429 => ProviderError::Throttled(message),
            s if s >= 500 => ProviderError::Unreachable(message),
            _ => ProviderError::AuthFailed(message),
        })
    }
}

/// `: error: description` of an OAuth2 error answer (or Google's JSON error), or the start of
/// the text.
fn oauth_error(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        let d = v.get("error_description").and_then(Value::as_str).unwrap_or("");
        return if d.is_empty() { format!(": {e}") } else { format!(": {e}: {d}") };
    }
    if let Some(m) = v.pointer("/error/message").and_then(Value::as_str) {
        return format!(": {m}");
    }
    let snippet: String = text.chars().take(200).collect();
    if snippet.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", snippet.trim())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A throwaway 2048-bit RSA key made for these tests with `openssl genpkey` (PKCS#8); it
    /// belongs to no account anywhere.
    pub const TEST_KEY_PEM: &str = include_str!("testdata/throwaway-key.pem");

    pub fn test_key_json(token_uri: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "0123abcd",
            "private_key": TEST_KEY_PEM,
            "client_email": "extdns@test-project.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        })
        .to_string()
    }

    #[test]
    fn the_assertion_is_an_rs256_jwt_of_the_key_that_its_public_key_verifies() {
        let key = ServiceAccountKey::parse(&test_key_json("https://oauth2.example.test/token")).unwrap();
        let jwt = assertion(&key, "https://oauth2.example.test/token", 1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "0123abcd"}));
        assert_eq!(
            claims,
            json!({"iss": "extdns@test-project.iam.gserviceaccount.com", "scope": SCOPE,
                   "aud": "https://oauth2.example.test/token", "iat": 1_700_000_000u64, "exp": 1_700_003_600u64})
        );
        let pair = signer(TEST_KEY_PEM).unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            pair.public().as_ref().to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).expect("signature verifies");
        assert!(public.verify(b"something else", &URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).is_err());
    }

    #[test]
    fn keys_that_are_not_service_account_keys_are_refused_with_the_reason() {
        let user = json!({"type": "authorized_user", "client_id": "x", "refresh_token": "y"}).to_string();
        let e = ServiceAccountKey::parse(&user).unwrap_err();
        assert!(matches!(&e, ProviderError::Config(m) if m.contains("authorized_user")), "{e:?}");
        let mut broken: Value = serde_json::from_str(&test_key_json("x")).unwrap();
        broken["private_key"] = json!("-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n");
        let e = ServiceAccountKey::parse(&broken.to_string()).unwrap_err();
        assert!(matches!(&e, ProviderError::Config(m) if m.contains("base64")), "{e:?}");
        assert!(ServiceAccountKey::parse("{").is_err());
        let k = ServiceAccountKey::parse(&test_key_json("x")).unwrap();
        assert!(!format!("{k:?}").contains("PRIVATE"), "the key stays out of logs");
        let c = Credentials::ServiceAccountKey { json: test_key_json("x"), token_uri: None };
        assert!(!format!("{c:?}").contains("PRIVATE"));
    }

    #[test]
    fn oauth_errors_are_shown_with_their_description() {
        assert_eq!(
            oauth_error(r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#),
            ": invalid_grant: Invalid JWT Signature."
        );
        assert_eq!(oauth_error(r#"{"error":{"code":403,"message":"nope"}}"#), ": nope");
        assert_eq!(oauth_error(""), "");
    }
}
