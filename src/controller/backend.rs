//! Turns a provider spec into a live backend: reads the Secrets it references and starts
//! whatever it needs (the embedded DNS server).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use std::net::SocketAddr;

use crate::controller::azure;
use crate::crd::dnsprovider::{
    parse_duration, CloudflareSpec, EmbeddedSpec, GoogleSpec, GoogleZoneVisibility, HttpTlsSpec, PowerDnsSpec,
    ProviderSpec, Rfc2136Spec, Route53Spec, Route53ZoneType, SecretKeyRef, Transport, WebhookSpec,
    DEFAULT_EMBEDDED_LISTEN,
};
use crate::crd::{BackendCount, BackendRef};
use crate::dns::providers::azure::Flavour;
use crate::dns::providers::cloudflare::{CloudflareConfig, CloudflareProvider};
use crate::dns::providers::embedded::{self, EmbeddedConfig, ServerHandle};
use crate::dns::providers::google::{self, GoogleConfig, GoogleProvider};
use crate::dns::providers::inmemory::InMemoryProvider;
use crate::dns::providers::powerdns::{PowerDnsConfig, PowerDnsProvider};
use crate::dns::providers::ratelimit::{limit, Limiter, RateLimited, TokenBucket};
use crate::dns::providers::rfc2136::{self, Rfc2136Config, Rfc2136Provider, TsigAlgorithm, TsigConfig};
use crate::dns::providers::route53::{Route53Config, Route53Provider, ZoneType};
use crate::dns::providers::webhook::{WebhookConfig, WebhookProvider};
use crate::dns::Provider;
use crate::metrics::Metrics;

/// A running backend. Dropping it stops anything it started.
pub struct Backend {
    pub provider: Arc<dyn Provider>,
    /// The embedded DNS server, alive for as long as the backend exists.
    pub server: Option<ServerHandle>,
}

impl Backend {
    /// Stops what the backend started and waits until its ports are free, so a rebuilt
    /// backend can bind the same address.
    pub async fn close(self) {
        if let Some(s) = self.server {
            s.shutdown().await;
        }
    }
}

/// Why a provider spec cannot be turned into a backend. Needs a change by a human.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    BackendCount(#[from] BackendCount),
    #[error("reading Secret {namespace}/{name} key {key:?}: {message}")]
    Secret { namespace: String, name: String, key: String, message: String },
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("starting backend: {0}")]
    Start(String),
    /// The operator does not let this provider have a backend (tenancy rules).
    #[error(transparent)]
    Refused(#[from] crate::controller::tenancy::Refused),
}

impl BackendError {
    /// Condition reason and record state.
    pub fn reason(&self) -> &'static str {
        match self {
            BackendError::Refused(r) => r.reason(),
            _ => "InvalidProvider",
        }
    }
}

pub async fn read_secret(client: &Client, namespace: &str, r: &SecretKeyRef) -> Result<Vec<u8>, BackendError> {
    let err = |message: String| BackendError::Secret {
        namespace: namespace.to_string(),
        name: r.name.clone(),
        key: r.key.clone(),
        message,
    };
    let secret =
        Api::<Secret>::namespaced(client.clone(), namespace).get(&r.name).await.map_err(|e| err(e.to_string()))?;
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(&r.key)) {
        return Ok(v.0.clone());
    }
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(&r.key)) {
        return Ok(v.as_bytes().to_vec());
    }
    Err(err("the key is missing".into()))
}

/// What a backend needs besides its spec.
pub struct BuildContext<'a> {
    pub client: &'a Client,
    /// Where the provider's Secrets live.
    pub secret_ns: &'a str,
    pub default_ttl: u32,
    /// The provider's name in metrics labels.
    pub name: String,
    pub metrics: &'a Metrics,
    /// Whether the backend may use the operator's own identity: a ClusterDNSProvider, or the
    /// operator runs with --namespaced-ambient-credentials. Checked where the Secret decides
    /// it (an azure.json asking for a managed identity); the spec is checked by tenancy.
    pub ambient_allowed: bool,
}

/// Bounds of `spec.resyncInterval`. Every resync lists every zone, against a quota that all
/// tenants of a shared account spend: a provider may not list more often than this floor,
/// nor go longer than the ceiling without repairing drift.
/// `spec.resyncInterval` when unset.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(3600);
pub const MIN_RESYNC: Duration = Duration::from_secs(60);
pub const MAX_RESYNC: Duration = Duration::from_secs(24 * 3600);

/// `spec.resyncInterval`, checked against [`MIN_RESYNC`] and [`MAX_RESYNC`]; the default
/// when unset.
pub fn resync_interval(spec: &ProviderSpec) -> Result<Duration, BackendError> {
    let field = "spec.resyncInterval";
    let Some(text) = &spec.resync_interval else { return Ok(DEFAULT_RESYNC) };
    let d = parse_duration(field, text).map_err(|message| BackendError::Field { field: field.into(), message })?;
    if !(MIN_RESYNC..=MAX_RESYNC).contains(&d) {
        return Err(BackendError::Field {
            field: field.into(),
            message: format!(
                "{text:?} is outside {}..{}",
                humantime::format_duration(MIN_RESYNC),
                humantime::format_duration(MAX_RESYNC)
            ),
        });
    }
    Ok(d)
}

/// Builds the backend for `spec`, behind its rate limit.
pub async fn build(spec: &ProviderSpec, ctx: &BuildContext<'_>) -> Result<Backend, BackendError> {
    let block = spec.backend()?;
    resync_interval(spec)?;
    let limiter = limiter(spec)?;
    let (client, secret_ns, default_ttl) = (ctx.client, ctx.secret_ns, ctx.default_ttl);
    // The backends that make several requests per call (listing pages, batches, retries)
    // count requests: the limiter goes inside them. The others count calls.
    let remote = |provider| Ok(Backend { provider, server: None });
    let mut backend = match block {
        BackendRef::Route53(r) => {
            let provider = route53_provider(client, r, secret_ns, default_ttl)
                .await?
                .with_metrics(ctx.metrics.route53.clone(), ctx.name.clone());
            return remote(limit(provider, limiter));
        }
        BackendRef::Cloudflare(c) => {
            return remote(limit(cloudflare_provider(client, c, secret_ns, default_ttl).await?, limiter))
        }
        BackendRef::Google(g) => {
            return remote(limit(google_provider(client, g, secret_ns, default_ttl).await?, limiter))
        }
        BackendRef::PowerDns(p) => {
            return remote(limit(powerdns_provider(client, p, secret_ns, default_ttl).await?, limiter))
        }
        BackendRef::Webhook(w) => return remote(limit(webhook_provider(w, default_ttl)?, limiter)),
        BackendRef::Azure(a) => return remote(limit(azure::azure_provider(Flavour::Public, a, ctx).await?, limiter)),
        BackendRef::AzurePrivateDns(a) => {
            return remote(limit(azure::azure_provider(Flavour::Private, a, ctx).await?, limiter))
        }
        BackendRef::InMemory(m) => Backend { provider: Arc::new(InMemoryProvider::new(&m.zones)), server: None },
        BackendRef::Embedded(e) => embedded_backend(e, ctx).await?,
        BackendRef::Rfc2136(r) => {
            Backend { provider: Arc::new(rfc2136_provider(client, r, secret_ns, default_ttl).await?), server: None }
        }
    };
    if spec.rate_limit.is_some() {
        backend.provider = Arc::new(RateLimited::new(backend.provider, limiter));
    }
    Ok(backend)
}

/// The token bucket of `spec.rateLimit`; unlimited when unset.
fn limiter(spec: &ProviderSpec) -> Result<Limiter, BackendError> {
    match &spec.rate_limit {
        Some(rl) if !(rl.qps.is_finite() && rl.qps > 0.0) => Err(BackendError::Field {
            field: "spec.rateLimit.qps".into(),
            message: format!("{} must be a positive number", rl.qps),
        }),
        Some(rl) => Ok(Limiter::new(TokenBucket::new(rl.qps, rl.burst.unwrap_or_else(|| rl.qps.ceil() as u32)))),
        None => Ok(Limiter::default()),
    }
}

async fn embedded_backend(e: &EmbeddedSpec, ctx: &BuildContext<'_>) -> Result<Backend, BackendError> {
    let listen_s = e.listen.as_deref().unwrap_or(DEFAULT_EMBEDDED_LISTEN);
    let listen: SocketAddr = listen_s.parse().map_err(|err| BackendError::Field {
        field: "spec.embedded.listen".into(),
        message: format!("{listen_s:?} is not an address like \"0.0.0.0:5353\": {err}"),
    })?;
    let (provider, handle) = embedded::start(EmbeddedConfig {
        zones: e.zones.clone(),
        listen,
        nameservers: e.nameservers.clone(),
        default_ttl: ctx.default_ttl,
    })
    .await
    .map_err(|err| match err {
        // The OS error would tell whoever wrote the spec what holds a port; the log
        // keeps it.
        embedded::EmbeddedError::BindUdp { .. } | embedded::EmbeddedError::BindTcp { .. } => {
            tracing::warn!(provider = %ctx.name, %listen, error = %err, "embedded DNS server cannot listen");
            BackendError::Start(format!("listening on {listen}: address in use or not permitted"))
        }
        other => BackendError::Start(other.to_string()),
    })?;
    Ok(Backend { provider: Arc::new(provider), server: Some(handle) })
}

async fn route53_provider(
    client: &Client,
    r: &Route53Spec,
    secret_ns: &str,
    default_ttl: u32,
) -> Result<Route53Provider, BackendError> {
    let mut cfg = Route53Config::new(r.region.clone());
    cfg.endpoint = r.endpoint.clone();
    cfg.assume_role_arn = r.assume_role_arn.clone();
    cfg.zone_type = match r.zone_type {
        Route53ZoneType::Public => ZoneType::Public,
        Route53ZoneType::Private => ZoneType::Private,
        Route53ZoneType::Any => ZoneType::Any,
    };
    cfg.zone_tags = r.zone_tags.clone();
    if let Some(b) = r.batch_change_size {
        cfg.batch_change_size = b as usize;
    }
    if let Some(e) = r.evaluate_target_health {
        cfg.evaluate_target_health = e;
    }
    if let Some(t) = &r.zones_cache_ttl {
        cfg.zones_cache_ttl = parse_duration("spec.route53.zonesCacheTTL", t)
            .map_err(|message| BackendError::Field { field: "spec.route53.zonesCacheTTL".into(), message })?;
    }
    cfg.default_ttl = default_ttl;
    cfg.prefer_cname = r.prefer_cname;
    if let Some(c) = &r.credentials {
        let text = |key: Option<&String>, default: &str| SecretKeyRef {
            name: c.secret_ref.name.clone(),
            key: key.cloned().unwrap_or_else(|| default.to_string()),
        };
        let id =
            read_secret(client, secret_ns, &text(c.secret_ref.access_key_id_key.as_ref(), "access-key-id")).await?;
        let secret =
            read_secret(client, secret_ns, &text(c.secret_ref.secret_access_key_key.as_ref(), "secret-access-key"))
                .await?;
        let utf8 = |b: Vec<u8>| String::from_utf8(b).map(|s| s.trim().to_string());
        match (utf8(id), utf8(secret)) {
            (Ok(id), Ok(secret)) => cfg.credentials = Some((id, secret)),
            _ => {
                return Err(BackendError::Field {
                    field: "spec.route53.credentials.secretRef".into(),
                    message: "the keys are not UTF-8 text".into(),
                })
            }
        }
    }
    Route53Provider::new(cfg).await.map_err(|e| BackendError::Start(e.to_string()))
}

/// The default key of the Cloudflare API token in its Secret.
pub const DEFAULT_CLOUDFLARE_TOKEN_KEY: &str = "api-token";

async fn cloudflare_provider(
    client: &Client,
    c: &CloudflareSpec,
    secret_ns: &str,
    default_ttl: u32,
) -> Result<CloudflareProvider, BackendError> {
    let field =
        |field: &str, message: String| BackendError::Field { field: format!("spec.cloudflare.{field}"), message };
    let key_ref = SecretKeyRef {
        name: c.api_token.secret_ref.name.clone(),
        key: c.api_token.secret_ref.key.clone().unwrap_or_else(|| DEFAULT_CLOUDFLARE_TOKEN_KEY.to_string()),
    };
    let raw = read_secret(client, secret_ns, &key_ref).await?;
    let token = String::from_utf8(raw)
        .map_err(|_| field("apiToken.secretRef", "the token is not UTF-8 text".into()))?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(field("apiToken.secretRef", format!("key {:?} of Secret {} is empty", key_ref.key, key_ref.name)));
    }
    let mut cfg = CloudflareConfig::new(token);
    if let Some(url) = &c.base_url {
        let u = url.trim();
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            return Err(field("baseURL", format!("{u:?} is not an http(s) URL")));
        }
        cfg.base_url = u.to_string();
    }
    cfg.zone_names = c.zones.clone();
    cfg.zone_ids = c.zone_ids.clone();
    cfg.proxied = c.proxied;
    cfg.default_ttl = default_ttl;
    if let Some(b) = c.batch_size {
        cfg.batch_size = b as usize;
    }
    if let Some(p) = c.per_page {
        cfg.per_page = p;
    }
    if let Some(t) = &c.timeout {
        cfg.timeout = parse_duration("spec.cloudflare.timeout", t).map_err(|m| field("timeout", m))?;
    }
    CloudflareProvider::new(cfg).map_err(|e| BackendError::Start(e.to_string()))
}

/// The default key of the Google service-account JSON key in its Secret.
pub const DEFAULT_GOOGLE_CREDENTIALS_KEY: &str = "credentials.json";

/// Google's own OAuth2 token endpoints: a key's `token_uri` is used as it is only when it is
/// one of them. Any other token endpoint must be named in `spec.google.tokenURI`, where the
/// tenancy rules see it (a tenant's key could otherwise send the operator anywhere).
pub const GOOGLE_TOKEN_URIS: &[&str] = &[
    "https://oauth2.googleapis.com/token",
    "https://accounts.google.com/o/oauth2/token",
    "https://www.googleapis.com/oauth2/v4/token",
];

async fn google_provider(
    client: &Client,
    g: &GoogleSpec,
    secret_ns: &str,
    default_ttl: u32,
) -> Result<GoogleProvider, BackendError> {
    let field = |field: &str, message: String| BackendError::Field { field: format!("spec.google.{field}"), message };
    let http_url = |name: &str, u: &str| -> Result<String, BackendError> {
        let u = u.trim();
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            return Err(field(name, format!("{u:?} is not an http(s) URL")));
        }
        Ok(u.to_string())
    };
    let token_uri = g.token_uri.as_deref().map(|u| http_url("tokenURI", u)).transpose()?;
    let credentials = match &g.credentials {
        Some(c) => {
            let key_ref = SecretKeyRef {
                name: c.secret_ref.name.clone(),
                key: c.secret_ref.key.clone().unwrap_or_else(|| DEFAULT_GOOGLE_CREDENTIALS_KEY.to_string()),
            };
            let json = read_secret_text(client, secret_ns, &key_ref, "spec.google.credentials.secretRef").await?;
            let key = google::auth::ServiceAccountKey::parse(&json).map_err(|e| {
                field("credentials.secretRef", format!("Secret {} key {:?}: {e}", key_ref.name, key_ref.key))
            })?;
            let own = key.token_uri.trim();
            if token_uri.is_none() && !own.is_empty() && !GOOGLE_TOKEN_URIS.contains(&own) {
                return Err(field(
                    "credentials.secretRef",
                    format!(
                        "the key's token_uri {own:?} is not Google's token endpoint; name it in spec.google.tokenURI to use it"
                    ),
                ));
            }
            google::Credentials::ServiceAccountKey { json, token_uri }
        }
        None => {
            if token_uri.is_some() {
                return Err(field("tokenURI", "only used with credentials (a service-account key)".into()));
            }
            google::Credentials::Metadata { url: google::auth::metadata_url_from_env() }
        }
    };
    let mut cfg = GoogleConfig::new(g.project.clone().filter(|p| !p.trim().is_empty()), credentials);
    if let Some(url) = &g.endpoint {
        cfg.endpoint = http_url("endpoint", url)?;
    }
    cfg.zones = g.zones.clone();
    cfg.visibility = match g.zone_visibility {
        GoogleZoneVisibility::Public => google::Visibility::Public,
        GoogleZoneVisibility::Private => google::Visibility::Private,
        GoogleZoneVisibility::Any => google::Visibility::Any,
    };
    if let Some(b) = g.batch_change_size {
        cfg.batch_change_size = b as usize;
    }
    if let Some(t) = &g.batch_change_interval {
        cfg.batch_change_interval =
            parse_duration("spec.google.batchChangeInterval", t).map_err(|m| field("batchChangeInterval", m))?;
    }
    if let Some(t) = &g.timeout {
        cfg.timeout = parse_duration("spec.google.timeout", t).map_err(|m| field("timeout", m))?;
    }
    cfg.default_ttl = default_ttl;
    GoogleProvider::new(cfg).map_err(|e| match e {
        crate::dns::ProviderError::Config(m) => field("project", m),
        other => BackendError::Start(other.to_string()),
    })
}

async fn rfc2136_provider(
    client: &Client,
    r: &Rfc2136Spec,
    secret_ns: &str,
    default_ttl: u32,
) -> Result<Rfc2136Provider, BackendError> {
    let field = |field: &str, message: String| BackendError::Field { field: format!("spec.rfc2136.{field}"), message };
    let mut cfg = Rfc2136Config::new(r.host.clone(), r.port.unwrap_or(53), r.zones.clone());
    if r.zones.is_empty() {
        return Err(field("zones", "list at least one zone".into()));
    }
    if let Some(t) = &r.tsig {
        let algorithm: TsigAlgorithm =
            t.algorithm.as_deref().unwrap_or("hmac-sha256").parse().map_err(|e: String| field("tsig.algorithm", e))?;
        let raw = read_secret(client, secret_ns, &t.secret_ref).await?;
        let secret = String::from_utf8(raw)
            .map_err(|_| field("tsig.secretRef", "the key is not base64 text".into()))?
            .trim()
            .to_string();
        cfg.tsig = Some(TsigConfig { key_name: t.key_name.clone(), algorithm, secret });
    }
    cfg.transport = match r.transport {
        Transport::Udp => rfc2136::Transport::Udp,
        Transport::Tcp => rfc2136::Transport::Tcp,
    };
    cfg.min_ttl = r.min_ttl;
    if let Some(b) = r.batch_size {
        cfg.batch_size = b as usize;
    }
    if let Some(t) = &r.timeout {
        cfg.timeout = parse_duration("spec.rfc2136.timeout", t).map_err(|m| field("timeout", m))?;
    }
    cfg.default_ttl = default_ttl;
    Rfc2136Provider::new(cfg).map_err(|e| BackendError::Start(e.to_string()))
}

/// A Secret key read as trimmed UTF-8 text (API keys, tokens).
pub(crate) async fn read_secret_text(
    client: &Client,
    secret_ns: &str,
    r: &SecretKeyRef,
    field: &str,
) -> Result<String, BackendError> {
    let raw = read_secret(client, secret_ns, r).await?;
    String::from_utf8(raw)
        .map(|s| s.trim().to_string())
        .map_err(|_| BackendError::Field { field: field.into(), message: "the key is not UTF-8 text".into() })
}

/// The PEM bundle of `tls.caSecretRef`, when set.
pub(crate) async fn read_ca_bundle(
    client: &Client,
    secret_ns: &str,
    tls: Option<&HttpTlsSpec>,
) -> Result<Option<Vec<u8>>, BackendError> {
    match tls.and_then(|t| t.ca_secret_ref.as_ref()) {
        Some(r) => Ok(Some(read_secret(client, secret_ns, r).await?)),
        None => Ok(None),
    }
}

async fn powerdns_provider(
    client: &Client,
    p: &PowerDnsSpec,
    secret_ns: &str,
    default_ttl: u32,
) -> Result<PowerDnsProvider, BackendError> {
    let field = |field: &str, message: String| BackendError::Field { field: format!("spec.powerdns.{field}"), message };
    let api_key = read_secret_text(client, secret_ns, &p.api_key_secret_ref, "spec.powerdns.apiKeySecretRef").await?;
    let mut cfg = PowerDnsConfig::new(p.url.clone(), api_key);
    if let Some(s) = &p.server_id {
        cfg.server_id = s.clone();
    }
    cfg.zones = p.zones.clone();
    cfg.ca_bundle = read_ca_bundle(client, secret_ns, p.tls.as_ref()).await?;
    if let Some(t) = &p.timeout {
        cfg.timeout = parse_duration("spec.powerdns.timeout", t).map_err(|m| field("timeout", m))?;
    }
    cfg.default_ttl = default_ttl;
    PowerDnsProvider::new(cfg).map_err(|e| {
        use crate::dns::providers::http::HttpConfigError as E;
        match e {
            E::Url { .. } => field("url", e.to_string()),
            E::CaBundle(_) => field("tls.caSecretRef", e.to_string()),
            E::ApiKey(_) => field("apiKeySecretRef", e.to_string()),
            E::Client(_) => BackendError::Start(e.to_string()),
        }
    })
}

fn webhook_provider(w: &WebhookSpec, default_ttl: u32) -> Result<WebhookProvider, BackendError> {
    let field = |field: &str, message: String| BackendError::Field { field: format!("spec.webhook.{field}"), message };
    let mut cfg =
        WebhookConfig::new(w.url.clone().unwrap_or_else(|| crate::dns::providers::webhook::DEFAULT_URL.into()));
    cfg.zones = w.zones.clone();
    if let Some(t) = &w.timeout {
        cfg.timeout = parse_duration("spec.webhook.timeout", t).map_err(|m| field("timeout", m))?;
    }
    cfg.default_ttl = default_ttl;
    WebhookProvider::new(cfg).map_err(|e| {
        use crate::dns::providers::http::HttpConfigError as E;
        match e {
            E::Url { .. } => field("url", e.to_string()),
            other => BackendError::Start(other.to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_carry_the_refusal_reason() {
        use crate::controller::tenancy::{check_provider, Refused, REASON_LISTENER_CONFLICT, REASON_NOT_PERMITTED};
        let taken = BackendError::from(Refused::ListenerTaken("spec.embedded.listen: held".into()));
        assert_eq!(taken.reason(), REASON_LISTENER_CONFLICT);
        assert_eq!(taken.to_string(), "spec.embedded.listen: held");
        let embedded = ProviderSpec {
            embedded: Some(crate::crd::dnsprovider::EmbeddedSpec {
                zones: vec!["example.com".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let refused = BackendError::from(Refused::from(
            check_provider(&embedded, true, &crate::config::TenancyFlags::default()).unwrap_err(),
        ));
        assert_eq!(refused.reason(), REASON_NOT_PERMITTED);
        assert!(refused.to_string().starts_with("spec.embedded:"), "{refused}");
        assert_eq!(BackendError::BackendCount(BackendCount(vec![])).reason(), "InvalidProvider");
    }

    #[test]
    fn resync_interval_has_a_floor_and_a_ceiling() {
        let with = |s: &str| ProviderSpec { resync_interval: Some(s.into()), ..Default::default() };
        assert_eq!(resync_interval(&ProviderSpec::default()).unwrap(), Duration::from_secs(3600));
        assert_eq!(resync_interval(&with("10m")).unwrap(), Duration::from_secs(600));
        assert_eq!(resync_interval(&with("90")).unwrap(), Duration::from_secs(90));
        for bad in ["0", "0s", "30s", "25h", "soon"] {
            let err = resync_interval(&with(bad)).unwrap_err().to_string();
            assert!(err.starts_with("spec.resyncInterval: "), "{bad}: {err}");
        }
    }
}
