//! `rateLimit {qps, burst}`: a token bucket in front of any provider. Every backend call
//! takes one token; without one it waits, so a burst of changes is smoothed instead of
//! tripping the backend's own throttling. Providers that make several API requests per call
//! (Route53: pages, batches, retries) take tokens per request from a [`TokenBucket`] instead.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::dns::endpoint::Endpoint;
use crate::dns::provider::{Change, ChangeResult, Provider, ProviderError, Zone};

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

pub struct RateLimited {
    inner: Arc<dyn Provider>,
    bucket: TokenBucket,
}

impl RateLimited {
    pub fn new(inner: Arc<dyn Provider>, bucket: TokenBucket) -> Self {
        RateLimited { inner, bucket }
    }

    async fn take(&self) {
        self.bucket.take().await;
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

    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Vec<ChangeResult> {
        self.take().await;
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
    use crate::dns::providers::inmemory::InMemoryProvider;

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_burst_wait_for_tokens() {
        let p = RateLimited::new(Arc::new(InMemoryProvider::new(["example.com"])), TokenBucket::new(2.0, 3));
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
