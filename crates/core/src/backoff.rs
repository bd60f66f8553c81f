//! The one backoff of extdns: every retry (a provider's throttled API call, a worker's failed
//! sync, a status write, a restarted task) waits this long, so they all grow, cap and spread
//! the same way.

use std::time::Duration;

use backon::BackoffBuilder;

/// Delay before retry number `attempt` (from 0): exponential from `min`, capped at `max`,
/// plus up to 100 % jitter so that many retries started together spread out.
pub fn delay(min: Duration, max: Duration, attempt: u32) -> Duration {
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build();
    // Past 32 doublings every delay is capped anyway.
    delays.nth(attempt.min(32) as usize).unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_from_min_is_capped_and_jittered() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        let first = delay(min, max, 0);
        assert!(first >= min && first <= min * 2, "{first:?}");
        let fifth = delay(min, max, 4);
        assert!(fifth >= min * 16 && fifth <= min * 32, "{fifth:?}");
        for attempt in [20, 32, u32::MAX] {
            let d = delay(min, max, attempt);
            assert!(d >= max && d <= max * 2, "attempt {attempt}: {d:?}");
        }
    }
}
