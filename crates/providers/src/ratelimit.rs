//! `rateLimit {qps, burst}`: a token bucket in front of a backend, so a burst of changes is
//! smoothed instead of tripping the backend's own throttling. One [`Limiter`] per provider is
//! the one way calls are limited: providers that make several API requests per call (pages,
//! batches, retries: Route53, Cloudflare, PowerDNS, webhook) implement [`RequestLimited`] and
//! admit each request through it; any other provider is wrapped in [`RateLimited`], which
//! admits each call. [`limit`] picks between the two.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use extdns_core::endpoint::{Endpoint, RecordKey};
use extdns_core::provider::{Change, ChangeResult, Provider, ProviderError, Zone};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

impl TokenBucket {
    /// `qps` must be positive; `burst` of at least 1 call is enforced.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { qps, burst, bucket: Mutex::new(Bucket { tokens: burst, last: Instant::now() }) }
    }

    /// Waits for a token.
    pub async fn take(&self) {
        let mut b = self.bucket.lock().await;
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.qps).min(self.burst);
        b.last = now;
        if b.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - b.tokens) / self.qps);
            // Holding the lock while sleeping keeps callers in order.
            tokio::time::sleep(wait).await;
            b.tokens = 1.0;
            b.last = Instant::now();
        }
        b.tokens -= 1.0;
    }
}

/// A provider's rate limit; without a bucket it admits everything at once.
#[derive(Clone, Debug, Default)]
pub struct Limiter(Option<Arc<TokenBucket>>);

impl Limiter {
    pub fn new(bucket: TokenBucket) -> Self {
        Limiter(Some(Arc::new(bucket)))
    }

    /// Waits for a token.
    pub async fn take(&self) {
        if let Some(bucket) = &self.0 {
            bucket.take().await;
        }
    }

    /// Waits for a token, then checks that this replica may still send `what`: the wait (and
    /// any throttling pause before it) may have outlasted its lease.
    pub async fn admit(&self, what: &str) -> Result<(), ProviderError> {
        self.take().await;
        extdns_core::provider::write_allowed(what)
    }
}

/// A provider that takes a token of its [`Limiter`] per API request rather than per call.
pub trait RequestLimited: Provider + Sized {
    /// Makes every request of the provider wait for a token of `limiter`.
    fn with_rate_limit(self, limiter: Limiter) -> Self;
}

/// `provider` behind `limiter`, per request where it makes several per call.
pub fn limit<P: RequestLimited + 'static>(provider: P, limiter: Limiter) -> Arc<dyn Provider> {
    Arc::new(provider.with_rate_limit(limiter))
}

/// A provider that makes one request per call, behind a limiter that admits each call.
pub struct RateLimited {
    inner: Arc<dyn Provider>,
    limiter: Limiter,
}

impl RateLimited {
    pub fn new(inner: Arc<dyn Provider>, limiter: Limiter) -> Self {
        RateLimited { inner, limiter }
    }

    async fn take(&self) {
        self.limiter.take().await;
    }
}

#[async_trait]
impl Provider for RateLimited {
    async fn zones(&self) -> Result<Vec<Zone>, ProviderError> {
        self.take().await;
        self.inner.zones().await
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<Endpoint>, ProviderError> {
        self.take().await;
        self.inner.records(zone).await
    }

    async fn records_shared(&self, zone: &Zone) -> Result<Vec<Arc<Endpoint>>, ProviderError> {
        self.take().await;
        self.inner.records_shared(zone).await
    }

    /// Reads this process's memory, not the backend: no token.
    fn held(&self, zone: &Zone, key: &RecordKey) -> Option<Arc<Endpoint>> {
        self.inner.held(zone, key)
    }

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        if let Err(e) = self.limiter.admit("applying changes").await {
            return changes.iter().map(|_| Err(e.clone())).collect();
        }
        self.inner.apply(zone, changes).await
    }

    async fn in_sync(&self, change_id: &str) -> Result<bool, ProviderError> {
        self.take().await;
        self.inner.in_sync(change_id).await
    }

    fn adjust(&self, endpoint: Endpoint) -> Vec<Endpoint> {
        self.inner.adjust(endpoint)
    }

    async fn adjust_all(&self, endpoints: Vec<Endpoint>) -> Vec<Vec<Endpoint>> {
        self.inner.adjust_all(endpoints).await
    }

    fn check(&self, zone: &Zone, change: &Change) -> Result<(), ProviderError> {
        self.inner.check(zone, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inmemory::InMemoryProvider;
    use extdns_core::provider::WriteGate;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A replica that loses its lease while it waits for a token sends nothing once it has
    /// the token.
    #[tokio::test(start_paused = true)]
    async fn a_change_queued_behind_a_token_is_dropped_once_leadership_is_lost() {
        let backend = Arc::new(InMemoryProvider::new(["example.com"]));
        let p = Arc::new(RateLimited::new(backend.clone(), Limiter::new(TokenBucket::new(0.1, 1))));
        let leading = Arc::new(AtomicBool::new(true));
        let gate = {
            let leading = leading.clone();
            WriteGate::new(move || leading.load(Ordering::SeqCst))
        };
        let zone = Zone::named("example.com");
        let create =
            |n: &str| vec![Change::Create(Endpoint::new(n, extdns_core::RecordType::A, vec!["192.0.2.1".into()]))];
        assert!(gate.clone().scope(p.apply(&zone, &create("first.example.com"))).await.iter().all(|r| r.is_ok()));
        let queued = tokio::spawn({
            let (p, gate, zone, changes) = (p.clone(), gate.clone(), zone.clone(), create("second.example.com"));
            async move { gate.scope(p.apply(&zone, &changes)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        leading.store(false, Ordering::SeqCst);
        let results = queued.await.unwrap();
        assert!(
            matches!(&results[0], Err(ProviderError::Unreachable(m)) if m.contains("no longer leads")),
            "{results:?}"
        );
        let names: Vec<String> = backend.all_records().into_iter().map(|e| e.dns_name.clone()).collect();
        assert_eq!(names, vec!["first.example.com".to_string()], "the queued change was never sent");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_burst_wait_for_tokens() {
        let p =
            RateLimited::new(Arc::new(InMemoryProvider::new(["example.com"])), Limiter::new(TokenBucket::new(2.0, 3)));
        let start = Instant::now();
        for _ in 0..3 {
            p.zones().await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes through at once");
        for _ in 0..4 {
            p.zones().await.unwrap();
        }
        // Four more calls at 2 per second.
        assert!(start.elapsed() >= Duration::from_millis(1990), "{:?}", start.elapsed());
        assert!(start.elapsed() < Duration::from_millis(2100), "{:?}", start.elapsed());
    }
}
