//! AWS Route53 through the official SDK (`aws-sdk-route53`): hosted zones are zones, resource
//! record sets are endpoints.
//!
//! Decisions worth knowing before changing anything here:
//!
//! * **An update is sent as DELETE of the old RRset plus CREATE of the new one, in one batch.**
//!   Route53 checks that a DELETE names the exact values and TTL it holds and applies a batch
//!   all-or-nothing, so an update of a record someone changed meanwhile is refused instead of
//!   silently overwriting their data (an UPSERT would). The pair is never split between batches
//!   or by bisection.
//! * **Batches are packed** up to `batch_change_size` ResourceRecord elements and 32,000
//!   characters of values, Route53's limits. A batch Route53 refuses as `InvalidChangeBatch`
//!   (moto says `InvalidInput`) is bisected until the refused change(s) are isolated; the others
//!   are applied and each refused one gets Route53's message.
//! * **Retries are ours, not the SDK's**: the client is built with SDK retries disabled, and
//!   throttling (`Throttling`, `PriorRequestNotComplete`, HTTP 429 and 5xx) is retried here with
//!   exponential backoff and jitter ([`extdns_core::backoff`]), so that the number of attempts is bounded in one
//!   place. Credentials refused, unreachable endpoints and refused batches are not retried:
//!   they affect every change alike, so the remaining batches are not sent either.
//! * **Listing drops the SOA and the apex NS RRset** (they belong to the hosted zone), and
//!   record types extdns does not model (SPF, DS, NAPTR, ...).
//! * **Names and TXT values are decoded** from Route53's presentation: `\052` for `*` and other
//!   `\DDD` octal escapes in names; TXT values are one or more quoted character-strings that
//!   are joined back into the one value that was written.
//! * **Alias records** are endpoints of type A/AAAA/CNAME carrying `alias=true`; the target is
//!   the alias DNS name and the alias' hosted zone is looked up (ELB/CloudFront/Global
//!   Accelerator table, then our own zones) unless `aws/target-hosted-zone` names it. As in
//!   external-dns, a CNAME to an AWS load balancer (or CloudFront, Global Accelerator) becomes
//!   an A and an AAAA alias unless the endpoint says `alias=false` or `prefer_cname` is set;
//!   see [`Provider::adjust`].
//! * **Changes propagate**: ChangeResourceRecordSets answers PENDING; the change id is handed
//!   back as [`Applied::Propagating`] and [`Provider::in_sync`] asks GetChange.
//! * **Every API attempt is counted** in [`Route53Metrics`] by operation and outcome, so API
//!   budgets can be watched per provider.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::config::retry::RetryConfig;
use aws_sdk_route53::config::timeout::TimeoutConfig;
use aws_sdk_route53::config::SharedHttpClient;
use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_route53::error::DisplayErrorContext;
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::operation::get_change::GetChangeError;
use aws_sdk_route53::operation::list_hosted_zones::ListHostedZonesError;
use aws_sdk_route53::operation::list_resource_record_sets::ListResourceRecordSetsError;
use aws_sdk_route53::operation::list_tags_for_resources::ListTagsForResourcesError;
use aws_sdk_route53::types::{
    AliasTarget, Change as R53Change, ChangeAction, ChangeBatch, ChangeInfo, ChangeStatus, GeoLocation, ResourceRecord,
    ResourceRecordSet, ResourceRecordSetFailover, ResourceRecordSetRegion, RrType, TagResourceType,
};
use aws_sdk_route53::Client;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::failure::{collect_results, send_bisecting, BatchUnit, Failure, FailureKind};
use crate::ratelimit::{Limiter, RequestLimited};
use extdns_core::endpoint::{normalize_name, Endpoint, ProviderSpecificProperty, RecordType};
use extdns_core::provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};

/// external-dns' `--aws-batch-change-size` default, and Route53's limit of ResourceRecord
/// elements in one ChangeResourceRecordSets.
pub const DEFAULT_BATCH_CHANGE_SIZE: usize = 1000;
pub const DEFAULT_TTL: u32 = 300;
pub const DEFAULT_ZONES_CACHE_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
/// Route53's limit on the characters of all values in one ChangeResourceRecordSets.
const MAX_BATCH_CHARS: usize = 32_000;
/// Route53 answers at most 300 RRsets per page whatever is asked.
const RECORDS_PAGE_SIZE: i32 = 300;
/// ListTagsForResources takes at most 10 resource ids.
const TAGS_PER_CALL: usize = 10;
/// RFC 1035 §3.3: a character-string holds at most 255 bytes.
const MAX_CHARACTER_STRING: usize = 255;
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// external-dns' provider-specific property names for Route53.
pub mod property {
    pub const ALIAS: &str = "alias";
    pub const TARGET_HOSTED_ZONE: &str = "aws/target-hosted-zone";
    pub const EVALUATE_TARGET_HEALTH: &str = "aws/evaluate-target-health";
    pub const WEIGHT: &str = "aws/weight";
    pub const REGION: &str = "aws/region";
    pub const FAILOVER: &str = "aws/failover";
    pub const GEOLOCATION_CONTINENT_CODE: &str = "aws/geolocation-continent-code";
    pub const GEOLOCATION_COUNTRY_CODE: &str = "aws/geolocation-country-code";
    pub const GEOLOCATION_SUBDIVISION_CODE: &str = "aws/geolocation-subdivision-code";
    pub const MULTI_VALUE_ANSWER: &str = "aws/multi-value-answer";
    pub const HEALTH_CHECK_ID: &str = "aws/health-check-id";
}

/// Canonical hosted zones of AWS alias targets, by DNS name suffix.
/// See <https://docs.aws.amazon.com/general/latest/gr/elb.html>.
const CANONICAL_HOSTED_ZONES: &[(&str, &str)] = &[
    // Application and Classic Load Balancers: <name>.<region>.elb.amazonaws.com
    ("us-east-1.elb.amazonaws.com", "Z35SXDOTRQ7X7K"),
    ("us-east-2.elb.amazonaws.com", "Z3AADJGX6KTTL2"),
    ("us-west-1.elb.amazonaws.com", "Z368ELLRRE2KJ0"),
    ("us-west-2.elb.amazonaws.com", "Z1H1FL5HABSF5"),
    ("ap-northeast-1.elb.amazonaws.com", "Z14GRHDCWA56QT"),
    ("ap-southeast-1.elb.amazonaws.com", "Z1LMS91P8CMLE5"),
    ("ap-southeast-2.elb.amazonaws.com", "Z1GM3OXH4ZPM65"),
    ("eu-central-1.elb.amazonaws.com", "Z215JYRZR1TBD5"),
    ("eu-west-1.elb.amazonaws.com", "Z32O12XQLNTSW2"),
    ("eu-west-2.elb.amazonaws.com", "ZHURV8PSTC4K8"),
    ("eu-west-3.elb.amazonaws.com", "Z3Q77PNBQS71R4"),
    ("eu-north-1.elb.amazonaws.com", "Z23TAZ6LKFMNIO"),
    ("sa-east-1.elb.amazonaws.com", "Z2P70J7HTTTPLU"),
    // Network Load Balancers: <name>.elb.<region>.amazonaws.com
    ("elb.us-east-1.amazonaws.com", "Z26RNL4JYFTOTI"),
    ("elb.us-east-2.amazonaws.com", "ZLMOA37VPKANP"),
    ("elb.us-west-1.amazonaws.com", "Z24FKFUX50B4VW"),
    ("elb.us-west-2.amazonaws.com", "Z18D5FSROUN65G"),
    ("elb.ap-northeast-1.amazonaws.com", "Z31USIVHYNEOWT"),
    ("elb.ap-southeast-1.amazonaws.com", "ZKVM4W9LS7TM"),
    ("elb.ap-southeast-2.amazonaws.com", "ZCT6FZBF4DROD"),
    ("elb.eu-central-1.amazonaws.com", "Z3F0SRJ5LGBH90"),
    ("elb.eu-west-1.amazonaws.com", "Z2IFOLAFXWLO4F"),
    ("elb.eu-west-2.amazonaws.com", "ZD4D7Y8KGAS4G"),
    ("elb.eu-west-3.amazonaws.com", "Z1CMS0P5QUZ6D5"),
    ("elb.eu-north-1.amazonaws.com", "Z1UDT6IFJ4EJM"),
    ("elb.sa-east-1.amazonaws.com", "ZTK26PT1VY4CU"),
    ("awsglobalaccelerator.com", "Z2BJ6XQ5FK7U4H"),
    ("cloudfront.net", "Z2FDTNDATAQYW2"),
];

/// Which hosted zones the provider considers, external-dns' `--aws-zone-type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ZoneType {
    Public,
    Private,
    #[default]
    Any,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Route53Config {
    pub region: String,
    /// Endpoint override (moto, a VPC endpoint); `None` = the region's Route53 endpoint.
    pub endpoint: Option<String>,
    /// Static (access key id, secret access key); `None` = the default AWS credential chain
    /// (environment, profile, web identity / IRSA, container and instance metadata).
    pub credentials: Option<(String, String)>,
    /// Role assumed through STS with the credentials above.
    pub assume_role_arn: Option<String>,
    pub zone_type: ZoneType,
    /// Hosted zones must carry all of these tags; an empty value only requires the key.
    pub zone_tags: BTreeMap<String, String>,
    /// Most ResourceRecord elements in one ChangeResourceRecordSets.
    pub batch_change_size: usize,
    /// `EvaluateTargetHealth` of alias records whose endpoint does not say.
    pub evaluate_target_health: bool,
    /// How long the hosted zone list is reused before it is listed again.
    pub zones_cache_ttl: Duration,
    /// TTL of records whose endpoint has none.
    pub default_ttl: u32,
    /// external-dns' `--aws-prefer-cname`: a CNAME to a load balancer stays a CNAME instead of
    /// becoming an alias.
    pub prefer_cname: bool,
    /// Attempts of one call when Route53 throttles, the first included.
    pub max_attempts: u32,
    /// First backoff after a throttled call; doubled on each retry, with jitter.
    pub retry_base_delay: Duration,
}

impl Route53Config {
    pub fn new(region: impl Into<String>) -> Self {
        Route53Config {
            region: region.into(),
            endpoint: None,
            credentials: None,
            assume_role_arn: None,
            zone_type: ZoneType::Any,
            zone_tags: BTreeMap::new(),
            batch_change_size: DEFAULT_BATCH_CHANGE_SIZE,
            evaluate_target_health: true,
            zones_cache_ttl: DEFAULT_ZONES_CACHE_TTL,
            default_ttl: DEFAULT_TTL,
            prefer_cname: false,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_base_delay: DEFAULT_RETRY_BASE_DELAY,
        }
    }
}

/// Keeps the secret access key out of logs and error messages.
impl fmt::Debug for Route53Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route53Config")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials.as_ref().map(|(id, _)| (id, "<redacted>")))
            .field("assume_role_arn", &self.assume_role_arn)
            .field("zone_type", &self.zone_type)
            .field("zone_tags", &self.zone_tags)
            .field("batch_change_size", &self.batch_change_size)
            .field("evaluate_target_health", &self.evaluate_target_health)
            .field("zones_cache_ttl", &self.zones_cache_ttl)
            .field("default_ttl", &self.default_ttl)
            .field("prefer_cname", &self.prefer_cname)
            .field("max_attempts", &self.max_attempts)
            .field("retry_base_delay", &self.retry_base_delay)
            .finish()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: String,
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    provider: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

/// Route53 API metrics of every Route53 provider in the process, told apart by the `provider`
/// label. Clones share the counters.
#[derive(Clone, Debug)]
pub struct Route53Metrics {
    calls: Family<CallLabels, Counter>,
    throttles: Family<OperationLabels, Counter>,
    batch_changes: Family<ProviderLabels, Histogram, fn() -> Histogram>,
}

impl Default for Route53Metrics {
    fn default() -> Self {
        fn batch_histogram() -> Histogram {
            // 1 .. 1024 changes: Route53 takes at most 1000 ResourceRecords per batch.
            Histogram::new(exponential_buckets(1.0, 2.0, 11))
        }
        Route53Metrics {
            calls: Family::default(),
            throttles: Family::default(),
            batch_changes: Family::new_with_constructor(batch_histogram),
        }
    }
}

impl Route53Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "route53_api_calls",
            "Route53 API requests (every attempt) by operation and outcome",
            self.calls.clone(),
        );
        registry.register(
            "route53_throttles",
            "Route53 API requests refused with Throttling or PriorRequestNotComplete",
            self.throttles.clone(),
        );
        registry.register(
            "route53_batch_changes",
            "Change elements per ChangeResourceRecordSets request",
            self.batch_changes.clone(),
        );
    }

    /// Requests of `operation` by `provider` that ended in `outcome` (`ok`, `throttled`,
    /// `invalid`, `auth`, `unreachable`, `not_found`, `config`).
    pub fn calls(&self, provider: &str, operation: &str, outcome: &str) -> u64 {
        self.calls
            .get_or_create(&CallLabels {
                provider: provider.into(),
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .get()
    }

    pub fn throttles(&self, provider: &str, operation: &str) -> u64 {
        self.throttles.get_or_create(&OperationLabels { provider: provider.into(), operation: operation.into() }).get()
    }

    fn record_call(&self, provider: &str, operation: &str, outcome: Result<(), FailureKind>) {
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(kind) => kind.label(),
        };
        self.calls
            .get_or_create(&CallLabels {
                provider: provider.into(),
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
        if outcome == FailureKind::Throttled.label() {
            self.throttles
                .get_or_create(&OperationLabels { provider: provider.into(), operation: operation.into() })
                .inc();
        }
    }

    fn record_batch(&self, provider: &str, changes: usize) {
        self.batch_changes.get_or_create(&ProviderLabels { provider: provider.into() }).observe(changes as f64);
    }
}

pub struct Route53Provider {
    client: Client,
    config: Route53Config,
    zones_cache: Mutex<Option<(Instant, Vec<Zone>)>>,
    metrics: Route53Metrics,
    /// The `provider` label of this provider's metrics.
    metrics_name: String,
    /// `rateLimit`: every request, retries and pages included, takes a token.
    limiter: Limiter,
}

impl fmt::Debug for Route53Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route53Provider").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Route53Provider {
    /// Builds the SDK client: TLS with ring, SDK retries off (ours are in [`Self::call`]).
    pub async fn new(config: Route53Config) -> Result<Self, ProviderError> {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        Self::with_http_client(config, http_client).await
    }

    /// As [`Self::new`] over the given HTTP client, for STS and Route53 alike (tests record
    /// the requests).
    pub async fn with_http_client(config: Route53Config, http_client: SharedHttpClient) -> Result<Self, ProviderError> {
        validate(&config)?;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .http_client(http_client)
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some((id, secret)) = &config.credentials {
            loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "extdns-static"));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk_config = loader.load().await;
        let mut builder = aws_sdk_route53::config::Builder::from(&sdk_config);
        if let Some(role) = &config.assume_role_arn {
            let assumed = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("extdns")
                .configure(&sdk_config)
                .build()
                .await;
            builder = builder.credentials_provider(assumed);
        }
        Ok(Route53Provider::assemble(Client::from_conf(builder.build()), config))
    }

    fn assemble(client: Client, config: Route53Config) -> Self {
        Route53Provider {
            client,
            config,
            zones_cache: Mutex::new(None),
            metrics: Route53Metrics::default(),
            metrics_name: String::new(),
            limiter: Limiter::default(),
        }
    }

    /// Counts this provider's API calls in `metrics` under the label `provider=name`.
    pub fn with_metrics(mut self, metrics: Route53Metrics, name: impl Into<String>) -> Self {
        self.metrics = metrics;
        self.metrics_name = name.into();
        self
    }

    /// A provider around a prebuilt client (tests with `aws-smithy-mocks`). The client's own
    /// retries are turned off; credentials, endpoint and region in `config` are not used.
    pub fn with_client(client: Client, config: Route53Config) -> Result<Self, ProviderError> {
        validate(&config)?;
        let conf = client.config().to_builder().retry_config(RetryConfig::disabled()).build();
        Ok(Route53Provider::assemble(Client::from_conf(conf), config))
    }

    /// The SDK client, for callers that manage hosted zones themselves (tests create zones).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `op`, retrying throttling with exponential backoff and jitter.
    async fn call<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, Failure>
    where
        E: Route53Error,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let mut attempt = 1;
        loop {
            self.limiter
                .admit(what)
                .await
                .map_err(|e| Failure { kind: FailureKind::Unreachable, message: e.to_string() })?;
            let err = match op().await {
                Ok(out) => {
                    self.metrics.record_call(&self.metrics_name, what, Ok(()));
                    return Ok(out);
                }
                Err(e) => classify(&e),
            };
            self.metrics.record_call(&self.metrics_name, what, Err(err.kind));
            if err.kind != FailureKind::Throttled || attempt >= self.config.max_attempts {
                // A refused change is shown to users as is: Route53's words name the record.
                let message = match err.kind {
                    FailureKind::Throttled => format!("{what}: {} (gave up after {attempt} attempts)", err.message),
                    FailureKind::Invalid => err.message,
                    _ => format!("{what}: {}", err.message),
                };
                return Err(Failure { kind: err.kind, message });
            }
            let delay = extdns_core::backoff::delay(self.config.retry_base_delay, MAX_RETRY_DELAY, attempt - 1);
            tracing::debug!(what, attempt, ?delay, error = %err.message, "Route53 throttled the call, retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn list_zones(&self) -> Result<Vec<Zone>, ProviderError> {
        let mut zones = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let m = marker.clone();
            let page = self
                .call("ListHostedZones", || self.client.list_hosted_zones().set_marker(m.clone()).send())
                .await
                .map_err(Failure::into_provider_error)?;
            for hz in page.hosted_zones() {
                let private = hz.config().map(|c| c.private_zone()).unwrap_or(false);
                let wanted = match self.config.zone_type {
                    ZoneType::Any => true,
                    ZoneType::Public => !private,
                    ZoneType::Private => private,
                };
                if wanted {
                    zones.push(Zone { id: strip_zone_prefix(hz.id()).to_string(), name: decode_name(hz.name()) });
                }
            }
            match page.next_marker() {
                Some(next) if page.is_truncated() => marker = Some(next.to_string()),
                _ => break,
            }
        }
        if !self.config.zone_tags.is_empty() {
            let tags = self.zone_tags(&zones).await?;
            zones.retain(|z| {
                let have = tags.get(&z.id);
                self.config
                    .zone_tags
                    .iter()
                    .all(|(k, v)| have.and_then(|t| t.get(k)).is_some_and(|actual| v.is_empty() || actual == v))
            });
        }
        zones.sort();
        Ok(zones)
    }

    async fn zone_tags(&self, zones: &[Zone]) -> Result<HashMap<String, HashMap<String, String>>, ProviderError> {
        let mut out = HashMap::new();
        for chunk in zones.chunks(TAGS_PER_CALL) {
            let ids: Vec<String> = chunk.iter().map(|z| z.id.clone()).collect();
            let resp = self
                .call("ListTagsForResources", || {
                    self.client
                        .list_tags_for_resources()
                        .resource_type(TagResourceType::Hostedzone)
                        .set_resource_ids(Some(ids.clone()))
                        .send()
                })
                .await
                .map_err(Failure::into_provider_error)?;
            for set in resp.resource_tag_sets() {
                let Some(id) = set.resource_id() else { continue };
                let tags = set
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
                    .collect();
                out.insert(strip_zone_prefix(id).to_string(), tags);
            }
        }
        Ok(out)
    }

    /// The hosted zone of an alias target, from the AWS table or the zones listed last.
    fn known_alias_zone(&self, target: &str) -> Option<String> {
        if let Some(id) = canonical_hosted_zone(target) {
            return Some(id.to_string());
        }
        let cache = self.zones_cache.lock().unwrap_or_else(|e| e.into_inner());
        let zones = &cache.as_ref()?.1;
        extdns_core::provider::zone_for(zones, &normalize_name(target)).map(|z| z.id.clone())
    }

    /// The hosted zone id an alias to `target` must name.
    async fn alias_zone_id(&self, ep: &Endpoint) -> Result<String, ProviderError> {
        if let Some(id) = ep.provider_specific(property::TARGET_HOSTED_ZONE) {
            return Ok(strip_zone_prefix(id).to_string());
        }
        let target = ep.targets.first().map(|t| normalize_name(t)).unwrap_or_default();
        if let Some(id) = self.known_alias_zone(&target) {
            return Ok(id);
        }
        // The zone list may be older than the target's zone.
        let zones = self.zones().await?;
        extdns_core::provider::zone_for(&zones, &target).map(|z| z.id.clone()).ok_or_else(|| {
            ProviderError::Rejected(format!(
                "alias target {target} is neither a known AWS load balancer, CloudFront or Global Accelerator \
                 name nor inside one of our hosted zones; name its hosted zone with {}",
                property::TARGET_HOSTED_ZONE
            ))
        })
    }

    async fn rrset(&self, zone: &Zone, ep: &Endpoint) -> Result<(ResourceRecordSet, usize, usize), ProviderError> {
        let name = normalize_name(&ep.dns_name);
        if !zone.contains(&name) {
            return Err(ProviderError::Rejected(format!("{name} is not in hosted zone {} ({})", zone.name, zone.id)));
        }
        if ep.targets.is_empty() {
            return Err(ProviderError::Rejected(format!("{name} {} has no targets", ep.record_type)));
        }
        let mut b = ResourceRecordSet::builder().name(format!("{name}.")).r#type(RrType::from(ep.record_type.as_str()));
        let (count, chars);
        if is_alias(ep) {
            if ep.targets.len() != 1 {
                return Err(ProviderError::Rejected(format!("alias {name} must have exactly one target")));
            }
            let evaluate = match ep.provider_specific(property::EVALUATE_TARGET_HEALTH) {
                Some(v) => parse_bool(property::EVALUATE_TARGET_HEALTH, v)?,
                None => self.config.evaluate_target_health,
            };
            let target = normalize_name(&ep.targets[0]);
            let alias = AliasTarget::builder()
                .hosted_zone_id(self.alias_zone_id(ep).await?)
                .dns_name(format!("{target}."))
                .evaluate_target_health(evaluate)
                .build()
                .map_err(|e| ProviderError::Rejected(format!("alias {name}: {e}")))?;
            b = b.alias_target(alias);
            count = 1;
            chars = target.len();
        } else {
            b = b.ttl(i64::from(ep.ttl.unwrap_or(self.config.default_ttl)));
            let values: Vec<String> = ep
                .targets
                .iter()
                .map(|t| if ep.record_type == RecordType::TXT { encode_txt(t) } else { t.clone() })
                .collect();
            count = values.len();
            chars = values.iter().map(String::len).sum();
            for v in values {
                let rr = ResourceRecord::builder()
                    .value(v)
                    .build()
                    .map_err(|e| ProviderError::Rejected(format!("{name}: {e}")))?;
                b = b.resource_records(rr);
            }
        }
        b = routing_policy(b, ep)?;
        let set = b.build().map_err(|e| ProviderError::Rejected(format!("{name} {}: {e}", ep.record_type)))?;
        Ok((set, count, chars))
    }

    /// The Route53 changes that make up one change, with their ResourceRecord count and value
    /// characters.
    async fn translate(&self, zone: &Zone, change: &Change) -> Result<Unit, ProviderError> {
        let parts: Vec<(ChangeAction, &Endpoint)> = match change {
            Change::Create(e) => vec![(ChangeAction::Create, e)],
            Change::Delete(e) => vec![(ChangeAction::Delete, e)],
            Change::Update { old, new } => vec![(ChangeAction::Delete, old), (ChangeAction::Create, new)],
        };
        let mut unit = Unit { index: 0, changes: Vec::new(), count: 0, chars: 0 };
        for (action, ep) in parts {
            let (set, count, chars) = self.rrset(zone, ep).await?;
            let c = R53Change::builder()
                .action(action)
                .resource_record_set(set)
                .build()
                .map_err(|e| ProviderError::Rejected(format!("{}: {e}", ep.dns_name)))?;
            unit.changes.push(c);
            unit.count += count;
            unit.chars += chars;
        }
        Ok(unit)
    }

    /// Sends one ChangeResourceRecordSets with the changes of `units`: all apply or none.
    fn send_batch(&self, zone: &Zone, units: &[Unit]) -> impl Future<Output = Result<Applied, Failure>> + Send + '_ {
        let changes: Vec<R53Change> = units.iter().flat_map(|u| u.changes.iter().cloned()).collect();
        self.metrics.record_batch(&self.metrics_name, changes.len());
        let batch = ChangeBatch::builder().set_changes(Some(changes)).build();
        let zone_id = zone.id.clone();
        async move {
            let batch = batch.map_err(|e| Failure::new(FailureKind::Invalid, e.to_string()))?;
            let out = self
                .call("ChangeResourceRecordSets", || {
                    self.client
                        .change_resource_record_sets()
                        .hosted_zone_id(&zone_id)
                        .change_batch(batch.clone())
                        .send()
                })
                .await?;
            Ok(applied(out.change_info()))
        }
    }

    /// The alias external-dns would make of `ep`, if any: `alias=true` said explicitly, or a
    /// CNAME to a name with a known canonical hosted zone.
    fn wants_alias(&self, ep: &Endpoint) -> bool {
        match ep.provider_specific(property::ALIAS) {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => {
                !self.config.prefer_cname
                    && ep.record_type == RecordType::CNAME
                    && ep.targets.len() == 1
                    && canonical_hosted_zone(&ep.targets[0]).is_some()
            }
        }
    }
}

fn validate(config: &Route53Config) -> Result<(), ProviderError> {
    if config.region.trim().is_empty() {
        return Err(ProviderError::Config("Route53 region must not be empty".into()));
    }
    if config.batch_change_size == 0 {
        return Err(ProviderError::Config("Route53 batch change size must be at least 1".into()));
    }
    if config.max_attempts == 0 {
        return Err(ProviderError::Config("Route53 max attempts must be at least 1".into()));
    }
    Ok(())
}

/// The Route53 changes of one [`Change`]; sent together, rejected together.
#[derive(Clone, Debug)]
struct Unit {
    index: usize,
    changes: Vec<R53Change>,
    /// ResourceRecord elements, as Route53 counts them against the batch limit.
    count: usize,
    chars: usize,
}

impl BatchUnit for Unit {
    fn index(&self) -> usize {
        self.index
    }
}

/// Cuts `units` into batches within Route53's limits. A unit larger than a limit goes alone
/// (and Route53 will say why it is refused).
fn pack(units: Vec<Unit>, max_count: usize, max_chars: usize) -> Vec<Vec<Unit>> {
    let mut batches: Vec<Vec<Unit>> = Vec::new();
    let (mut count, mut chars) = (0, 0);
    for u in units {
        let fits = batches
            .last()
            .is_some_and(|b| !b.is_empty() && count + u.count <= max_count && chars + u.chars <= max_chars);
        if !fits {
            batches.push(Vec::new());
            count = 0;
            chars = 0;
        }
        count += u.count;
        chars += u.chars;
        batches.last_mut().expect("a batch was just pushed").push(u);
    }
    batches
}

/// Error code and message of an operation error. Route53 puts the reasons of a refused batch
/// in a list of messages rather than in the message.
trait Route53Error: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static {
    fn code_and_message(&self) -> (Option<String>, String) {
        (self.code().map(str::to_string), self.message().unwrap_or_default().to_string())
    }
}

impl Route53Error for ListHostedZonesError {}
impl Route53Error for ListResourceRecordSetsError {}
impl Route53Error for ListTagsForResourcesError {}
impl Route53Error for GetChangeError {
    fn code_and_message(&self) -> (Option<String>, String) {
        let message = self.message().unwrap_or_default().to_string();
        match self {
            GetChangeError::NoSuchChange(_) => (Some("NoSuchChange".into()), message),
            _ => (self.code().map(str::to_string), message),
        }
    }
}
impl Route53Error for ChangeResourceRecordSetsError {
    fn code_and_message(&self) -> (Option<String>, String) {
        let message = self.message().unwrap_or_default().to_string();
        match self {
            ChangeResourceRecordSetsError::InvalidChangeBatch(e) => {
                let msg = if e.messages().is_empty() { message } else { e.messages().join("; ") };
                (Some("InvalidChangeBatch".into()), msg)
            }
            ChangeResourceRecordSetsError::InvalidInput(_) => (Some("InvalidInput".into()), message),
            ChangeResourceRecordSetsError::PriorRequestNotComplete(_) => {
                (Some("PriorRequestNotComplete".into()), message)
            }
            ChangeResourceRecordSetsError::NoSuchHostedZone(_) => (Some("NoSuchHostedZone".into()), message),
            _ => (self.code().map(str::to_string), message),
        }
    }
}

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "PriorRequestNotComplete",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];
const AUTH_CODES: &[&str] = &[
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "InvalidSignatureException",
];

fn classify<E: Route53Error>(err: &SdkError<E, HttpResponse>) -> Failure {
    let f = |kind, message: String| Failure { kind, message };
    match err {
        SdkError::ServiceError(se) => {
            let (code, message) = se.err().code_and_message();
            let status = se.raw().status().as_u16();
            let code_s = code.as_deref().unwrap_or("");
            let text = match (&code, message.is_empty()) {
                (Some(c), false) => format!("{c}: {message}"),
                (Some(c), true) => c.clone(),
                (None, false) => format!("HTTP {status}: {message}"),
                (None, true) => format!("HTTP {status}"),
            };
            if THROTTLING_CODES.contains(&code_s) || status == 429 || (500..600).contains(&status) {
                f(FailureKind::Throttled, text)
            } else if AUTH_CODES.contains(&code_s) || status == 403 {
                f(FailureKind::Auth, text)
            } else if code_s == "NoSuchHostedZone" {
                f(FailureKind::ZoneNotFound, text)
            } else {
                f(FailureKind::Invalid, text)
            }
        }
        SdkError::TimeoutError(_) => f(FailureKind::Unreachable, "timed out".into()),
        SdkError::DispatchFailure(d) => {
            let text = format!("{}", DisplayErrorContext(err));
            let lower = text.to_ascii_lowercase();
            // Loading credentials can fail for want of a network too (STS or the instance
            // metadata service down): that is an outage, retried, not refused credentials.
            let network = ["connection refused", "tcp connect error", "dns error", "timed out", "timeout"]
                .iter()
                .any(|p| lower.contains(p));
            if d.is_io() || d.is_timeout() || network {
                f(FailureKind::Unreachable, text)
            } else if lower.contains("credential") {
                f(FailureKind::Auth, text)
            } else {
                f(FailureKind::Unreachable, text)
            }
        }
        SdkError::ConstructionFailure(_) => f(FailureKind::Config, format!("{}", DisplayErrorContext(err))),
        _ => f(FailureKind::Unreachable, format!("{}", DisplayErrorContext(err))),
    }
}

fn strip_zone_prefix(id: &str) -> &str {
    id.trim_start_matches("/hostedzone/")
}

/// The canonical hosted zone of an AWS load balancer, CloudFront or Global Accelerator name.
fn canonical_hosted_zone(target: &str) -> Option<&'static str> {
    let target = normalize_name(target);
    CANONICAL_HOSTED_ZONES
        .iter()
        .find(|(suffix, _)| target == *suffix || target.ends_with(&format!(".{suffix}")))
        .map(|(_, id)| *id)
}

/// What ChangeResourceRecordSets or GetChange said of a change.
fn applied(info: Option<&ChangeInfo>) -> Applied {
    match info {
        Some(i) if *i.status() == ChangeStatus::Pending => {
            Applied::Propagating(i.id().trim_start_matches("/change/").to_string())
        }
        // INSYNC, or an answer without change info (some compatible APIs): nothing to wait for.
        _ => Applied::Live,
    }
}

/// Only address records and CNAMEs can be aliases; the ownership TXT of an alias carries the
/// record's properties (so that it gets the same routing policy) and is written plain, as
/// external-dns does.
fn is_alias(ep: &Endpoint) -> bool {
    matches!(ep.record_type, RecordType::A | RecordType::AAAA | RecordType::CNAME)
        && ep.provider_specific(property::ALIAS).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ProviderError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "" => Ok(true),
        "false" => Ok(false),
        _ => Err(ProviderError::Rejected(format!("{name}={v:?} is not true or false"))),
    }
}

/// Sets the routing policy fields named by the endpoint's provider-specific properties.
fn routing_policy(
    mut b: aws_sdk_route53::types::builders::ResourceRecordSetBuilder,
    ep: &Endpoint,
) -> Result<aws_sdk_route53::types::builders::ResourceRecordSetBuilder, ProviderError> {
    let get = |n: &str| ep.provider_specific(n).map(str::trim);
    let mut policy = false;
    if let Some(w) = get(property::WEIGHT) {
        let weight: i64 = w
            .parse()
            .ok()
            .filter(|w| (0..=255).contains(w))
            .ok_or_else(|| ProviderError::Rejected(format!("{}={w:?} is not a weight 0..255", property::WEIGHT)))?;
        b = b.weight(weight);
        policy = true;
    }
    if let Some(r) = get(property::REGION) {
        b = b.region(ResourceRecordSetRegion::from(r));
        policy = true;
    }
    if let Some(fo) = get(property::FAILOVER) {
        b = b.failover(ResourceRecordSetFailover::from(fo.to_ascii_uppercase().as_str()));
        policy = true;
    }
    let continent = get(property::GEOLOCATION_CONTINENT_CODE);
    let country = get(property::GEOLOCATION_COUNTRY_CODE);
    let subdivision = get(property::GEOLOCATION_SUBDIVISION_CODE);
    if continent.is_some() || country.is_some() || subdivision.is_some() {
        b = b.geo_location(
            GeoLocation::builder()
                .set_continent_code(continent.map(str::to_string))
                .set_country_code(country.map(str::to_string))
                .set_subdivision_code(subdivision.map(str::to_string))
                .build(),
        );
        policy = true;
    }
    if let Some(m) = get(property::MULTI_VALUE_ANSWER) {
        b = b.multi_value_answer(parse_bool(property::MULTI_VALUE_ANSWER, m)?);
        policy = true;
    }
    if let Some(h) = get(property::HEALTH_CHECK_ID) {
        b = b.health_check_id(h);
    }
    if policy && ep.set_identifier.is_empty() {
        return Err(ProviderError::Rejected(format!(
            "{} {} has a routing policy but no setIdentifier",
            ep.dns_name, ep.record_type
        )));
    }
    if !ep.set_identifier.is_empty() {
        b = b.set_identifier(&ep.set_identifier);
    }
    Ok(b)
}

/// An RRset as listed, as an endpoint; `None` for what extdns does not manage.
fn endpoint_of(zone: &Zone, set: &ResourceRecordSet) -> Option<Endpoint> {
    let record_type: RecordType = set.r#type().as_str().parse().ok()?;
    let name = decode_name(set.name());
    if record_type == RecordType::NS && name == zone.name {
        return None;
    }
    let mut ps: Vec<ProviderSpecificProperty> = Vec::new();
    let mut push = |n: &str, v: String| ps.push(ProviderSpecificProperty { name: n.to_string(), value: v });
    let (targets, ttl) = match set.alias_target() {
        Some(alias) => {
            push(property::ALIAS, "true".into());
            push(property::EVALUATE_TARGET_HEALTH, alias.evaluate_target_health().to_string());
            push(property::TARGET_HOSTED_ZONE, strip_zone_prefix(alias.hosted_zone_id()).to_string());
            (vec![decode_name(alias.dns_name())], None)
        }
        None => {
            let targets = set
                .resource_records()
                .iter()
                .map(|rr| if record_type == RecordType::TXT { decode_txt(rr.value()) } else { rr.value().to_string() })
                .collect();
            (targets, set.ttl().and_then(|t| u32::try_from(t).ok()))
        }
    };
    if let Some(w) = set.weight() {
        push(property::WEIGHT, w.to_string());
    }
    if let Some(r) = set.region() {
        push(property::REGION, r.as_str().to_string());
    }
    if let Some(f) = set.failover() {
        push(property::FAILOVER, f.as_str().to_string());
    }
    if let Some(g) = set.geo_location() {
        if let Some(c) = g.continent_code() {
            push(property::GEOLOCATION_CONTINENT_CODE, c.to_string());
        }
        if let Some(c) = g.country_code() {
            push(property::GEOLOCATION_COUNTRY_CODE, c.to_string());
        }
        if let Some(c) = g.subdivision_code() {
            push(property::GEOLOCATION_SUBDIVISION_CODE, c.to_string());
        }
    }
    if set.multi_value_answer() == Some(true) {
        push(property::MULTI_VALUE_ANSWER, "true".into());
    }
    if let Some(h) = set.health_check_id() {
        push(property::HEALTH_CHECK_ID, h.to_string());
    }
    let mut ep = Endpoint::new(name, record_type, targets);
    ep.ttl = ttl;
    ep.set_identifier = set.set_identifier().unwrap_or_default().to_string();
    ep.provider_specific = ps;
    Some(ep.normalized())
}

/// Decodes Route53's presentation of a name (`\052` for `*`, other `\DDD` octal escapes and
/// `\X`), then normalises it.
pub fn decode_name(raw: &str) -> String {
    normalize_name(&String::from_utf8_lossy(&unescape(raw.as_bytes())))
}

/// Resolves `\DDD` (three octal digits) and `\X` escapes.
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            let digits = &raw[i + 1..raw.len().min(i + 4)];
            if digits.len() == 3 && digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
            out.push(raw[i + 1]);
            i += 2;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// A TXT value as Route53 wants it: quoted character-strings of at most 255 bytes each, with
/// `"` and `\` escaped and bytes outside printable ASCII as `\DDD`.
pub fn encode_txt(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return "\"\"".into();
    }
    bytes
        .chunks(MAX_CHARACTER_STRING)
        .map(|chunk| {
            let mut s = String::with_capacity(chunk.len() + 2);
            s.push('"');
            for &b in chunk {
                match b {
                    b'"' | b'\\' => {
                        s.push('\\');
                        s.push(char::from(b));
                    }
                    0x20..=0x7e => s.push(char::from(b)),
                    _ => s.push_str(&format!("\\{b:03o}")),
                }
            }
            s.push('"');
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The one value a Route53 TXT record value holds: its quoted character-strings unescaped and
/// joined. A value without quotes is taken as one unquoted string.
pub fn decode_txt(raw: &str) -> String {
    let bytes = raw.trim().as_bytes();
    if !bytes.starts_with(b"\"") {
        return String::from_utf8_lossy(&unescape(bytes)).into_owned();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        // One quoted string: up to the next unescaped quote.
        let start = i + 1;
        let mut j = start;
        while j < bytes.len() && bytes[j] != b'"' {
            j += if bytes[j] == b'\\' { 2 } else { 1 };
        }
        let end = j.min(bytes.len());
        out.extend(unescape(&bytes[start..end]));
        i = end + 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[async_trait]
impl Provider for Route53Provider {
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        if let Some((at, zones)) = self.zones_cache.lock().expect("zones cache lock poisoned").as_ref() {
            if at.elapsed() < self.config.zones_cache_ttl {
                return Ok(zones.clone());
            }
        }
        let zones = self.list_zones().await?;
        *self.zones_cache.lock().expect("zones cache lock poisoned") = Some((Instant::now(), zones.clone()));
        Ok(zones)
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        let mut out = Vec::new();
        let mut next: Option<(String, RrType, Option<String>)> = None;
        loop {
            let start = next.clone();
            let page = self
                .call("ListResourceRecordSets", || {
                    let mut req =
                        self.client.list_resource_record_sets().hosted_zone_id(&zone.id).max_items(RECORDS_PAGE_SIZE);
                    if let Some((name, rtype, id)) = &start {
                        req = req
                            .start_record_name(name)
                            .start_record_type(rtype.clone())
                            .set_start_record_identifier(id.clone());
                    }
                    req.send()
                })
                .await
                .map_err(|f| f.in_zone(&zone.name))?;
            out.extend(page.resource_record_sets().iter().filter_map(|s| endpoint_of(zone, s)));
            match (page.is_truncated(), page.next_record_name(), page.next_record_type()) {
                (true, Some(name), Some(rtype)) => {
                    next = Some((name.to_string(), rtype.clone(), page.next_record_identifier().map(str::to_string)))
                }
                _ => break,
            }
        }
        Ok(out)
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        let mut results: Vec<Option<ChangeResult>> = vec![None; changes.len()];
        let mut units = Vec::new();
        for (index, change) in changes.iter().enumerate() {
            match self.translate(zone, change).await {
                Ok(mut unit) => {
                    unit.index = index;
                    units.push(unit);
                }
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let batches = pack(units, self.config.batch_change_size, MAX_BATCH_CHARS);
        send_bisecting("Route53", &zone.name, batches, &mut results, |part: &[Unit]| self.send_batch(zone, part)).await;
        collect_results(results)
    }

    async fn in_sync(&self, change_id: &str) -> Result<bool, ProviderError> {
        match self.call("GetChange", || self.client.get_change().id(change_id).send()).await {
            Ok(out) => Ok(applied(out.change_info()) == Applied::Live),
            // Route53 forgets changes after a while; one it no longer knows is long done.
            Err(f) if f.message.contains("NoSuchChange") => Ok(true),
            Err(f) => Err(f.into_provider_error()),
        }
    }

    /// external-dns' `AdjustEndpoints`: an alias has no TTL and an explicit
    /// `aws/evaluate-target-health`; a CNAME alias is an A and an AAAA alias, so IPv6 clients
    /// of a dual-stack load balancer resolve it too.
    fn adjust(&self, mut ep: Endpoint) -> Vec<Endpoint> {
        if !self.wants_alias(&ep) {
            // alias=false is the absence of an alias, as Route53 lists it.
            ep.provider_specific.retain(|p| p.name != property::ALIAS);
            return vec![ep];
        }
        ep.ttl = None;
        if ep.provider_specific(property::ALIAS).is_none() {
            ep.provider_specific.push(ProviderSpecificProperty { name: property::ALIAS.into(), value: "true".into() });
        }
        if ep.provider_specific(property::EVALUATE_TARGET_HEALTH).is_none() {
            ep.provider_specific.push(ProviderSpecificProperty {
                name: property::EVALUATE_TARGET_HEALTH.into(),
                value: self.config.evaluate_target_health.to_string(),
            });
        }
        // Listed aliases name their target's hosted zone; desired ones do too, so that both
        // compare equal whether or not the user named it.
        if ep.provider_specific(property::TARGET_HOSTED_ZONE).is_none() {
            if let Some(id) = ep.targets.first().and_then(|t| self.known_alias_zone(t)) {
                ep.provider_specific
                    .push(ProviderSpecificProperty { name: property::TARGET_HOSTED_ZONE.into(), value: id });
            }
        }
        for p in &mut ep.provider_specific {
            if p.name == property::ALIAS || p.name == property::EVALUATE_TARGET_HEALTH {
                p.value = p.value.trim().to_ascii_lowercase();
            }
        }
        if ep.record_type != RecordType::CNAME {
            return vec![ep.normalized()];
        }
        let mut a = ep;
        a.record_type = RecordType::A;
        let mut aaaa = a.clone();
        aaaa.record_type = RecordType::AAAA;
        vec![a.normalized(), aaaa.normalized()]
    }
}

impl RequestLimited for Route53Provider {
    fn with_rate_limit(mut self, limiter: Limiter) -> Self {
        self.limiter = limiter;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};

    use aws_sdk_route53::error::ErrorMetadata;
    use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsOutput;
    use aws_sdk_route53::operation::get_change::GetChangeOutput;
    use aws_sdk_route53::operation::list_resource_record_sets::ListResourceRecordSetsOutput;
    use aws_sdk_route53::types::error::{InvalidChangeBatch, PriorRequestNotComplete};
    use aws_smithy_mocks::{mock, mock_client, MockResponse, Rule, RuleMode};

    fn zone() -> Zone {
        Zone { id: "Z123".into(), name: "example.test".into() }
    }

    fn provider(rules: &[&Rule]) -> Route53Provider {
        let client = mock_client!(aws_sdk_route53, RuleMode::MatchAny, rules);
        let mut config = Route53Config::new("us-east-1");
        config.retry_base_delay = Duration::from_millis(1);
        Route53Provider::with_client(client, config).expect("test config is valid")
    }

    fn change_ok() -> ChangeResourceRecordSetsOutput {
        ChangeResourceRecordSetsOutput::builder()
            .change_info(
                ChangeInfo::builder()
                    .id("/change/C1")
                    .status(ChangeStatus::Insync)
                    .submitted_at(aws_sdk_route53::primitives::DateTime::from_secs(0))
                    .build()
                    .expect("change info"),
            )
            .build()
    }

    fn throttling() -> ChangeResourceRecordSetsError {
        ChangeResourceRecordSetsError::generic(
            ErrorMetadata::builder().code("Throttling").message("Rate exceeded").build(),
        )
    }

    fn a(name: &str, ip: &str) -> Endpoint {
        Endpoint::new(name, RecordType::A, vec![ip.into()]).with_ttl(300)
    }

    fn rrset(name: &str, rtype: RrType, values: &[&str]) -> ResourceRecordSet {
        let mut b = ResourceRecordSet::builder().name(name).r#type(rtype).ttl(300);
        for v in values {
            b = b.resource_records(ResourceRecord::builder().value(*v).build().expect("rr"));
        }
        b.build().expect("rrset")
    }

    #[tokio::test]
    async fn throttling_is_retried_until_success() {
        let rule =
            mock!(Client::change_resource_record_sets).sequence().error(throttling).times(2).output(change_ok).build();
        let p = provider(&[&rule]);
        let results = p.apply(&zone(), &[Change::Create(a("app.example.test", "192.0.2.1"))]).await;
        assert_eq!(results, vec![Ok(Applied::Live)]);
        assert_eq!(rule.num_calls(), 3, "two throttled calls and the successful one");
    }

    #[tokio::test]
    async fn throttling_gives_up_after_max_attempts() {
        let rule = mock!(Client::change_resource_record_sets).sequence().error(throttling).times(10).build();
        let p = provider(&[&rule]);
        let changes = [Change::Create(a("a.example.test", "192.0.2.1"))];
        let results = p.apply(&zone(), &changes).await;
        assert!(matches!(&results[0], Err(ProviderError::Throttled(m)) if m.contains("Rate exceeded")), "{results:?}");
        assert!(results[0].as_ref().unwrap_err().is_transient());
        assert_eq!(rule.num_calls(), DEFAULT_MAX_ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn prior_request_not_complete_is_retried() {
        let rule = mock!(Client::change_resource_record_sets)
            .sequence()
            .error(|| {
                ChangeResourceRecordSetsError::PriorRequestNotComplete(
                    PriorRequestNotComplete::builder().message("The request was rejected").build(),
                )
            })
            .output(change_ok)
            .build();
        let p = provider(&[&rule]);
        let results = p.apply(&zone(), &[Change::Delete(a("app.example.test", "192.0.2.1"))]).await;
        assert_eq!(results, vec![Ok(Applied::Live)]);
        assert_eq!(rule.num_calls(), 2);
    }

    #[tokio::test]
    async fn credentials_refused_is_auth_failed_and_stops_the_other_batches() {
        let rule = mock!(Client::change_resource_record_sets).then_error(|| {
            ChangeResourceRecordSetsError::generic(
                ErrorMetadata::builder().code("InvalidClientTokenId").message("The security token is invalid").build(),
            )
        });
        let mut p = provider(&[&rule]);
        p.config.batch_change_size = 1;
        let changes: Vec<Change> =
            (0..3).map(|i| Change::Create(a(&format!("r{i}.example.test"), "192.0.2.1"))).collect();
        let results = p.apply(&zone(), &changes).await;
        assert!(results.iter().all(|r| matches!(r, Err(ProviderError::AuthFailed(_)))), "{results:?}");
        assert_eq!(rule.num_calls(), 1, "after a refused credential nothing more is sent");
    }

    #[tokio::test]
    async fn a_refused_change_is_isolated_by_bisection() {
        let sent: Arc<StdMutex<Vec<usize>>> = Arc::default();
        let seen = sent.clone();
        let rule = mock!(Client::change_resource_record_sets).then_compute_response(move |req| {
            let changes = req.change_batch().map(|b| b.changes()).unwrap_or_default();
            seen.lock().unwrap().push(changes.len());
            if changes.iter().any(|c| c.resource_record_set().is_some_and(|s| s.name().starts_with("bad."))) {
                MockResponse::Error(ChangeResourceRecordSetsError::InvalidChangeBatch(
                    InvalidChangeBatch::builder()
                        .messages("RRSet of type CNAME with DNS name bad.example.test. is not permitted")
                        .build(),
                ))
            } else {
                MockResponse::Output(change_ok())
            }
        });
        let p = provider(&[&rule]);
        let changes = vec![
            Change::Create(a("one.example.test", "192.0.2.1")),
            Change::Create(a("two.example.test", "192.0.2.2")),
            Change::Create(a("bad.example.test", "192.0.2.3")),
            Change::Update { old: a("four.example.test", "192.0.2.4"), new: a("four.example.test", "192.0.2.5") },
        ];
        let results = p.apply(&zone(), &changes).await;
        assert_eq!(results[0], Ok(Applied::Live));
        assert_eq!(results[1], Ok(Applied::Live));
        assert_eq!(
            results[2],
            Err(ProviderError::Rejected(
                "InvalidChangeBatch: RRSet of type CNAME with DNS name bad.example.test. is not permitted".into()
            ))
        );
        assert_eq!(results[3], Ok(Applied::Live));
        // [1,2,3,4(delete+create)] refused -> [1,2] ok, [3,4] refused -> [3] refused, [4] ok.
        assert_eq!(*sent.lock().unwrap(), vec![5, 2, 3, 1, 2]);
        assert_eq!(rule.num_calls(), 5);
    }

    #[tokio::test]
    async fn records_are_listed_across_pages() {
        let rule = mock!(Client::list_resource_record_sets).then_compute_output(|req| {
            let b = ListResourceRecordSetsOutput::builder().max_items(2);
            let b = match req.start_record_name() {
                None => b
                    .resource_record_sets(
                        ResourceRecordSet::builder()
                            .name("example.test.")
                            .r#type(RrType::Soa)
                            .ttl(900)
                            .resource_records(
                                ResourceRecord::builder()
                                    .value("ns. hostmaster. 1 7200 900 1209600 86400")
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .resource_record_sets(rrset("example.test.", RrType::Ns, &["ns-1.awsdns-1.com."]))
                    .is_truncated(true)
                    .next_record_name("\\052.wild.example.test.")
                    .next_record_type(RrType::A),
                Some("\\052.wild.example.test.") => {
                    assert_eq!(req.start_record_type(), Some(&RrType::A));
                    b.resource_record_sets(rrset("\\052.wild.example.test.", RrType::A, &["192.0.2.1"]))
                        .resource_record_sets(rrset(
                            "txt.example.test.",
                            RrType::Txt,
                            &["\"heritage=external-dns,external-dns/owner=default\"", "\"a\" \"b c\""],
                        ))
                        .is_truncated(true)
                        .next_record_name("w.example.test.")
                        .next_record_type(RrType::A)
                        .next_record_identifier("blue")
                }
                Some(other) => {
                    assert_eq!(other, "w.example.test.");
                    assert_eq!(req.start_record_identifier(), Some("blue"));
                    let weighted = ResourceRecordSet::builder()
                        .name("w.example.test.")
                        .r#type(RrType::A)
                        .set_identifier("blue")
                        .weight(10)
                        .alias_target(
                            AliasTarget::builder()
                                .hosted_zone_id("Z35SXDOTRQ7X7K")
                                .dns_name("LB-1.us-east-1.elb.amazonaws.com.")
                                .evaluate_target_health(true)
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap();
                    b.resource_record_sets(weighted).is_truncated(false)
                }
            };
            b.build().unwrap()
        });
        let p = provider(&[&rule]);
        let mut eps = p.records(&zone()).await.expect("listing works");
        eps.sort();
        assert_eq!(rule.num_calls(), 3);
        let wild = Endpoint::new("*.wild.example.test", RecordType::A, vec!["192.0.2.1".into()]).with_ttl(300);
        let txt = Endpoint::new(
            "txt.example.test",
            RecordType::TXT,
            vec!["heritage=external-dns,external-dns/owner=default".into(), "ab c".into()],
        )
        .with_ttl(300);
        let mut alias = Endpoint::new("w.example.test", RecordType::A, vec!["lb-1.us-east-1.elb.amazonaws.com".into()]);
        alias.set_identifier = "blue".into();
        alias.provider_specific = vec![
            ProviderSpecificProperty { name: "alias".into(), value: "true".into() },
            ProviderSpecificProperty { name: "aws/evaluate-target-health".into(), value: "true".into() },
            ProviderSpecificProperty { name: "aws/target-hosted-zone".into(), value: "Z35SXDOTRQ7X7K".into() },
            ProviderSpecificProperty { name: "aws/weight".into(), value: "10".into() },
        ];
        let mut want = vec![wild, txt, alias.normalized()];
        want.sort();
        assert_eq!(eps, want, "SOA and apex NS are dropped, the rest decoded");
    }

    /// The registry gives an alias' ownership TXT the alias' properties, as external-dns does;
    /// it is still written as a plain TXT record, with the routing policy.
    #[tokio::test]
    async fn the_ownership_txt_of_an_alias_is_plain() {
        let (rule, sent) = capture_rrsets();
        let p = provider(&[&rule]);
        let mut txt = Endpoint::new("a-www.example.test", RecordType::TXT, vec!["heritage=external-dns".into()]);
        txt.set_identifier = "eu".into();
        txt.provider_specific = vec![
            ProviderSpecificProperty { name: "alias".into(), value: "true".into() },
            ProviderSpecificProperty { name: "aws/evaluate-target-health".into(), value: "true".into() },
            ProviderSpecificProperty { name: "aws/weight".into(), value: "10".into() },
        ];
        assert_eq!(p.apply(&zone(), &[Change::Create(txt)]).await, vec![Ok(Applied::Live)]);
        let sets = sent.lock().unwrap();
        assert!(sets[0].alias_target().is_none());
        assert_eq!(sets[0].ttl(), Some(300));
        assert_eq!(sets[0].resource_records()[0].value(), "\"heritage=external-dns\"");
        assert_eq!((sets[0].set_identifier(), sets[0].weight()), (Some("eu"), Some(10)));
    }

    #[tokio::test]
    async fn alias_and_routing_policy_are_sent() {
        let (rule, sent) = capture_rrsets();
        let p = provider(&[&rule]);
        let mut ep =
            Endpoint::new("www.example.test", RecordType::A, vec!["k8s-lb.elb.eu-west-1.amazonaws.com".into()]);
        ep.set_identifier = "eu".into();
        ep.provider_specific = vec![
            ProviderSpecificProperty { name: "alias".into(), value: "true".into() },
            ProviderSpecificProperty { name: "aws/geolocation-continent-code".into(), value: "EU".into() },
        ];
        let mut no_id = a("x.example.test", "192.0.2.1");
        no_id.provider_specific = vec![ProviderSpecificProperty { name: "aws/weight".into(), value: "5".into() }];
        let results = p.apply(&zone(), &[Change::Create(ep), Change::Create(no_id)]).await;
        assert_eq!(results[0], Ok(Applied::Live));
        assert!(matches!(&results[1], Err(ProviderError::Rejected(m)) if m.contains("setIdentifier")), "{results:?}");
        let sets = sent.lock().unwrap();
        assert_eq!(sets.len(), 1, "the invalid change is never sent");
        let alias = sets[0].alias_target().expect("sent as an alias");
        assert_eq!(alias.hosted_zone_id(), "Z2IFOLAFXWLO4F");
        assert_eq!(alias.dns_name(), "k8s-lb.elb.eu-west-1.amazonaws.com.");
        assert!(alias.evaluate_target_health());
        assert_eq!(sets[0].set_identifier(), Some("eu"));
        assert_eq!(sets[0].geo_location().and_then(|g| g.continent_code()), Some("EU"));
        assert_eq!(sets[0].ttl(), None);
    }

    /// A ChangeResourceRecordSets rule that accepts everything and keeps the RRsets sent.
    fn capture_rrsets() -> (Rule, Arc<StdMutex<Vec<ResourceRecordSet>>>) {
        let sent: Arc<StdMutex<Vec<ResourceRecordSet>>> = Arc::default();
        let seen = sent.clone();
        let rule = mock!(Client::change_resource_record_sets).then_compute_output(move |req| {
            let sets = req.change_batch().unwrap().changes().iter().filter_map(|c| c.resource_record_set().cloned());
            seen.lock().unwrap().extend(sets);
            change_ok()
        });
        (rule, sent)
    }

    fn change_info(id: &str, status: ChangeStatus) -> ChangeInfo {
        ChangeInfo::builder()
            .id(id)
            .status(status)
            .submitted_at(aws_sdk_route53::primitives::DateTime::from_secs(0))
            .build()
            .expect("change info")
    }

    #[tokio::test]
    async fn a_pending_change_propagates_until_get_change_says_insync() {
        let change = mock!(Client::change_resource_record_sets).then_output(|| {
            ChangeResourceRecordSetsOutput::builder()
                .change_info(change_info("/change/C9", ChangeStatus::Pending))
                .build()
        });
        let asked: Arc<StdMutex<Vec<String>>> = Arc::default();
        let seen = asked.clone();
        let get = mock!(Client::get_change).then_compute_output(move |req| {
            let mut seen = seen.lock().unwrap();
            seen.push(req.id().unwrap_or_default().to_string());
            let status = if seen.len() == 1 { ChangeStatus::Pending } else { ChangeStatus::Insync };
            GetChangeOutput::builder().change_info(change_info("/change/C9", status)).build()
        });
        let metrics = Route53Metrics::default();
        let p = provider(&[&change, &get]).with_metrics(metrics.clone(), "test");
        let results = p.apply(&zone(), &[Change::Create(a("app.example.test", "192.0.2.1"))]).await;
        assert_eq!(results, vec![Ok(Applied::Propagating("C9".into()))]);
        assert_eq!(p.in_sync("C9").await, Ok(false), "first poll: still PENDING");
        assert_eq!(p.in_sync("C9").await, Ok(true), "second poll: INSYNC");
        assert_eq!(*asked.lock().unwrap(), vec!["C9", "C9"]);
        assert_eq!(metrics.calls("test", "ChangeResourceRecordSets", "ok"), 1);
        assert_eq!(metrics.calls("test", "GetChange", "ok"), 2);
    }

    #[tokio::test]
    async fn a_change_route53_forgot_counts_as_live() {
        let get = mock!(Client::get_change).then_error(|| {
            GetChangeError::NoSuchChange(
                aws_sdk_route53::types::error::NoSuchChange::builder().message("no change C1").build(),
            )
        });
        let p = provider(&[&get]);
        assert_eq!(p.in_sync("C1").await, Ok(true));
    }

    #[tokio::test]
    async fn calls_throttles_and_batch_sizes_are_counted() {
        let rule =
            mock!(Client::change_resource_record_sets).sequence().error(throttling).times(2).output(change_ok).build();
        let metrics = Route53Metrics::default();
        let p = provider(&[&rule]).with_metrics(metrics.clone(), "DNSProvider/ns/r53");
        let changes: Vec<Change> =
            (0..3).map(|i| Change::Create(a(&format!("r{i}.example.test"), "192.0.2.1"))).collect();
        assert!(p.apply(&zone(), &changes).await.iter().all(|r| r.is_ok()));
        assert_eq!(metrics.calls("DNSProvider/ns/r53", "ChangeResourceRecordSets", "throttled"), 2);
        assert_eq!(metrics.calls("DNSProvider/ns/r53", "ChangeResourceRecordSets", "ok"), 1);
        assert_eq!(metrics.throttles("DNSProvider/ns/r53", "ChangeResourceRecordSets"), 2);

        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"route53_api_calls_total{provider="DNSProvider/ns/r53",operation="ChangeResourceRecordSets",outcome="throttled"} 2"#,
            r#"route53_throttles_total{provider="DNSProvider/ns/r53",operation="ChangeResourceRecordSets"} 2"#,
            // One batch of three changes: counted once, in the bucket of 4.
            r#"route53_batch_changes_count{provider="DNSProvider/ns/r53"} 1"#,
            r#"route53_batch_changes_sum{provider="DNSProvider/ns/r53"} 3.0"#,
            r#"route53_batch_changes_bucket{le="4.0",provider="DNSProvider/ns/r53"} 1"#,
            r#"route53_batch_changes_bucket{le="2.0",provider="DNSProvider/ns/r53"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    fn props(ep: &Endpoint) -> Vec<(&str, &str)> {
        ep.provider_specific.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect()
    }

    #[test]
    fn a_cname_to_a_load_balancer_becomes_a_and_aaaa_aliases() {
        let p = provider(&[]);
        let elb = Endpoint::new("web.example.test", RecordType::CNAME, vec!["lb-1.us-east-1.elb.amazonaws.com".into()])
            .with_ttl(60);
        let out = p.adjust(elb.clone());
        assert_eq!(out.iter().map(|e| e.record_type).collect::<Vec<_>>(), vec![RecordType::A, RecordType::AAAA]);
        for e in &out {
            assert_eq!(e.dns_name, "web.example.test");
            assert_eq!(e.targets, vec!["lb-1.us-east-1.elb.amazonaws.com"]);
            assert_eq!(e.ttl, None, "an alias has no TTL of its own");
            assert_eq!(
                props(e),
                vec![
                    ("alias", "true"),
                    ("aws/evaluate-target-health", "true"),
                    ("aws/target-hosted-zone", "Z35SXDOTRQ7X7K")
                ]
            );
        }

        // Told otherwise: alias=false on the record, or preferCNAME on the provider.
        let mut plain = elb.clone();
        plain.provider_specific = vec![ProviderSpecificProperty { name: "alias".into(), value: "false".into() }];
        let out = p.adjust(plain);
        assert_eq!((out.len(), out[0].record_type, out[0].ttl), (1, RecordType::CNAME, Some(60)));
        assert!(out[0].provider_specific.is_empty(), "alias=false is how Route53 lists a plain record");
        let mut cfg = Route53Config::new("us-east-1");
        cfg.prefer_cname = true;
        let prefer = Route53Provider::with_client(p.client().clone(), cfg).unwrap();
        assert_eq!(prefer.adjust(elb.clone()), vec![elb.clone()]);

        // A CNAME elsewhere stays; an explicit A alias keeps its type and evaluate-target-health.
        let other = Endpoint::new("w.example.test", RecordType::CNAME, vec!["example.org".into()]);
        assert_eq!(p.adjust(other.clone()), vec![other]);
        let mut a_alias = Endpoint::new("x.example.test", RecordType::A, vec!["d111.cloudfront.net".into()]);
        a_alias.provider_specific = vec![
            ProviderSpecificProperty { name: "alias".into(), value: "true".into() },
            ProviderSpecificProperty { name: "aws/evaluate-target-health".into(), value: "False".into() },
        ];
        let out = p.adjust(a_alias);
        assert_eq!(out.len(), 1);
        assert_eq!(
            props(&out[0]),
            vec![
                ("alias", "true"),
                ("aws/evaluate-target-health", "false"),
                ("aws/target-hosted-zone", "Z2FDTNDATAQYW2")
            ]
        );
    }

    /// The role is assumed through STS with the static credentials, and Route53 requests are
    /// signed with the credentials STS handed out.
    #[tokio::test]
    async fn assume_role_signs_route53_calls_with_the_role_credentials() {
        use aws_sdk_route53::config::IntoShared;
        use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
        use aws_smithy_types::body::SdkBody;

        let sts = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
            <AssumedRoleUser><AssumedRoleId>AROA1:extdns</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/dns/extdns</Arn></AssumedRoleUser>
            <Credentials><AccessKeyId>ASIAASSUMEDROLE</AccessKeyId><SecretAccessKey>role-secret</SecretAccessKey>
            <SessionToken>role-session-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
            </AssumeRoleResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></AssumeRoleResponse>"#;
        let zones = r#"<?xml version="1.0"?><ListHostedZonesResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
            <HostedZones><HostedZone><Id>/hostedzone/Z1</Id><Name>example.test.</Name><CallerReference>c</CallerReference>
            <Config><PrivateZone>false</PrivateZone></Config><ResourceRecordSetCount>2</ResourceRecordSetCount></HostedZone></HostedZones>
            <IsTruncated>false</IsTruncated><MaxItems>100</MaxItems></ListHostedZonesResponse>"#;
        let event = |body: &str| {
            ReplayEvent::new(
                http::Request::builder().uri("https://unused").body(SdkBody::empty()).unwrap(),
                http::Response::builder().status(200).body(SdkBody::from(body.to_string())).unwrap(),
            )
        };
        let http = StaticReplayClient::new(vec![event(sts), event(zones)]);
        let mut cfg = Route53Config::new("us-east-1");
        cfg.credentials = Some(("AKIDSTATIC".into(), "static-secret".into()));
        cfg.assume_role_arn = Some("arn:aws:iam::123456789012:role/dns".into());
        let p = Route53Provider::with_http_client(cfg, http.clone().into_shared()).await.unwrap();
        let listed = p.zones().await.expect("zones listed with the role's credentials");
        assert_eq!(listed, vec![Zone { id: "Z1".into(), name: "example.test".into() }]);

        let reqs: Vec<_> = http.actual_requests().collect();
        assert_eq!(reqs.len(), 2, "AssumeRole, then ListHostedZones");
        let auth = |i: usize| reqs[i].headers().get("authorization").unwrap_or_default().to_string();
        let body = std::str::from_utf8(reqs[0].body().bytes().unwrap_or_default()).unwrap().to_string();
        assert!(reqs[0].uri().contains("sts."), "{}", reqs[0].uri());
        assert!(body.contains("Action=AssumeRole"), "{body}");
        assert!(body.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdns"), "{body}");
        assert!(body.contains("RoleSessionName=extdns"), "{body}");
        assert!(auth(0).contains("Credential=AKIDSTATIC/"), "STS is called with the static key: {}", auth(0));
        assert!(reqs[1].uri().contains("route53") && reqs[1].uri().contains("/hostedzone"), "{}", reqs[1].uri());
        assert!(auth(1).contains("Credential=ASIAASSUMEDROLE/"), "Route53 is called as the role: {}", auth(1));
        assert_eq!(reqs[1].headers().get("x-amz-security-token"), Some("role-session-token"));
    }

    /// `rateLimit` holds for every request: batches of one apply wait for tokens too.
    #[tokio::test(start_paused = true)]
    async fn every_request_takes_a_token() {
        let rule = mock!(Client::change_resource_record_sets).then_output(change_ok);
        let mut p = provider(&[&rule])
            .with_rate_limit(crate::ratelimit::Limiter::new(crate::ratelimit::TokenBucket::new(2.0, 1)));
        p.config.batch_change_size = 1;
        let changes: Vec<Change> =
            (0..5).map(|i| Change::Create(a(&format!("r{i}.example.test"), "192.0.2.1"))).collect();
        let start = tokio::time::Instant::now();
        assert!(p.apply(&zone(), &changes).await.iter().all(|r| r.is_ok()));
        assert_eq!(rule.num_calls(), 5);
        // One token at once, then four at 2 per second.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1990) && took < Duration::from_millis(2100), "{took:?}");
    }

    /// STS down is an outage like Route53 down: retried with backoff, not reported as
    /// refused credentials.
    #[tokio::test]
    async fn sts_unreachable_is_unreachable_not_auth_failed() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cfg = Route53Config::new("us-east-1");
        cfg.endpoint = Some(format!("http://127.0.0.1:{port}"));
        cfg.credentials = Some(("AKIDSTATIC".into(), "static-secret".into()));
        cfg.assume_role_arn = Some("arn:aws:iam::123456789012:role/dns".into());
        let p = Route53Provider::new(cfg).await.unwrap();
        match p.zones().await {
            Err(e @ ProviderError::Unreachable(_)) => assert!(e.is_transient()),
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }

    #[test]
    fn txt_values_are_quoted_and_unquoted() {
        assert_eq!(encode_txt("v=spf1 -all"), "\"v=spf1 -all\"");
        assert_eq!(encode_txt("say \"hi\"; a\\b"), r#""say \"hi\"; a\\b""#);
        assert_eq!(encode_txt("é"), r#""\303\251""#);
        let long: String = "x".repeat(300);
        let encoded = encode_txt(&long);
        assert_eq!(encoded, format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45)));
        for v in ["v=spf1 -all", "say \"hi\"; a\\b", "é", long.as_str(), "", "a  b"] {
            assert_eq!(decode_txt(&encode_txt(v)), v, "round trip of {v:?}");
        }
        assert_eq!(decode_txt("\"a\" \"b\""), "ab");
        assert_eq!(decode_txt("unquoted"), "unquoted");
        assert_eq!(decode_txt(r#""\052 star""#), "* star");
    }

    #[test]
    fn names_are_unescaped() {
        assert_eq!(decode_name("\\052.wild.Example.Test."), "*.wild.example.test");
        assert_eq!(decode_name("a\\.b.example.test."), "a.b.example.test");
        assert_eq!(decode_name("\\137sip.example.test."), "_sip.example.test");
        assert_eq!(decode_name("plain.example.test"), "plain.example.test");
    }

    #[test]
    fn batches_respect_count_and_character_limits() {
        let unit = |index, count, chars| Unit { index, changes: Vec::new(), count, chars };
        let batches =
            pack(vec![unit(0, 600, 10), unit(1, 600, 10), unit(2, 300, 10), unit(3, 1, 31_990)], 1000, 32_000);
        let sizes: Vec<Vec<usize>> = batches.iter().map(|b| b.iter().map(|u| u.index).collect()).collect();
        assert_eq!(sizes, vec![vec![0], vec![1, 2], vec![3]]);
    }
}
