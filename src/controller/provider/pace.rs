//! When a provider's worker starts its next pass. A change that arrives on its own goes out
//! at once: one DNSEndpoint edited, a Service's address assigned, the next one a second
//! later. Only a burst (many changes within one coalescing window: a bulk creation, a
//! restart, a namespace deleted) waits for the window, so that it goes out in a few large
//! batches instead of one backend call per change.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Changes within one window that make a burst. Below it, the window costs more latency
/// than it saves calls: a handful of changes a window apart each cost one call either way.
pub(super) const BURST: usize = 8;

pub(super) struct Pace {
    window: Duration,
    /// When the latest changes arrived, at most [`BURST`] of them.
    recent: VecDeque<Instant>,
    last_pass: Option<Instant>,
}

impl Pace {
    pub(super) fn new(window: Duration) -> Pace {
        Pace { window, recent: VecDeque::with_capacity(BURST), last_pass: None }
    }

    pub(super) fn arrived(&mut self, at: Instant) {
        if self.recent.len() == BURST {
            self.recent.pop_front();
        }
        self.recent.push_back(at);
    }

    pub(super) fn passed(&mut self, at: Instant) {
        self.last_pass = Some(at);
    }

    /// Until when the changes that arrived are held for more to join them: during a burst,
    /// a window after the previous pass; otherwise not at all.
    pub(super) fn hold_until(&self, now: Instant) -> Option<Instant> {
        let burst = self.recent.len() == BURST && self.recent.front().is_some_and(|t| now - *t < self.window);
        if !burst {
            return None;
        }
        self.last_pass.map(|t| t + self.window).filter(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_on_their_own_go_at_once_and_a_burst_waits_for_the_window() {
        let window = Duration::from_millis(100);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut p = Pace::new(window);
        // One change every 20 ms (a user, the benchmark's sequential changes): each goes at
        // once although the previous pass was within the window.
        for i in 0..20 {
            let at = ms(i * 20);
            p.arrived(at);
            assert_eq!(p.hold_until(at), None, "change {i}");
            p.passed(at + Duration::from_millis(2));
        }
        // Then a burst, one change a millisecond: the first ones go at once, the rest wait
        // a window after the last pass.
        let start = 1000;
        let mut held = None;
        for i in 0..BURST as u64 {
            let at = ms(start + i);
            p.arrived(at);
            held = p.hold_until(at);
            if held.is_none() {
                p.passed(at);
            }
        }
        let last_pass = ms(start + BURST as u64 - 2);
        assert_eq!(held, Some(last_pass + window));
        // Quiet again for a window: the next change goes at once.
        let later = ms(start + 300);
        p.arrived(later);
        assert_eq!(p.hold_until(later), None);
    }

    #[test]
    fn a_burst_is_not_held_past_a_window_after_the_last_pass() {
        let window = Duration::from_millis(100);
        let t0 = Instant::now();
        let mut p = Pace::new(window);
        for i in 0..BURST as u64 {
            p.arrived(t0 + Duration::from_millis(i));
        }
        // No pass yet (start-up): nothing to wait for.
        assert_eq!(p.hold_until(t0 + Duration::from_millis(10)), None);
        p.passed(t0);
        let now = t0 + Duration::from_millis(50);
        assert_eq!(p.hold_until(now), Some(t0 + window));
        assert_eq!(p.hold_until(t0 + window), None);
    }
}
