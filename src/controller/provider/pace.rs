//! When a provider's worker starts its next pass. A change that finds the worker idle goes
//! out at once: one DNSEndpoint edited, a Service's address assigned, and the next change
//! once that one is live. Only when changes arrive faster than passes finish (a bulk
//! creation, a restart, a namespace deleted: the inbox is not empty when a pass ends) does
//! the worker wait out the coalescing window, so that a burst goes out in a few large
//! batches instead of one backend call per change.

use std::time::Duration;

use tokio::time::Instant;

pub(super) struct Pace {
    window: Duration,
    last_pass: Option<Instant>,
    /// Changes were waiting when the last pass ended.
    backlog: bool,
}

impl Pace {
    pub(super) fn new(window: Duration) -> Pace {
        Pace { window, last_pass: None, backlog: false }
    }

    /// A pass ended at `at`; `backlog`: changes arrived while it ran.
    pub(super) fn passed(&mut self, at: Instant, backlog: bool) {
        self.last_pass = Some(at);
        self.backlog = backlog;
    }

    /// Until when the changes that arrived are held for more to join them: a window after
    /// the last pass when changes outran it, otherwise not at all.
    pub(super) fn hold_until(&self, now: Instant) -> Option<Instant> {
        if !self.backlog {
            return None;
        }
        self.last_pass.map(|t| t + self.window).filter(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_that_finds_the_worker_idle_goes_at_once() {
        let window = Duration::from_millis(100);
        let t0 = Instant::now();
        let mut p = Pace::new(window);
        assert_eq!(p.hold_until(t0), None, "before the first pass");
        // Sequential changes, each once the one before is live, 5 ms apart: none waits,
        // although each comes well within a window of the pass before.
        for i in 0..20 {
            let at = t0 + Duration::from_millis(5 * i);
            assert_eq!(p.hold_until(at), None, "change {i}");
            p.passed(at + Duration::from_millis(2), false);
        }
    }

    #[test]
    fn changes_that_outrun_a_pass_wait_a_window_after_it() {
        let window = Duration::from_millis(100);
        let t0 = Instant::now();
        let mut p = Pace::new(window);
        p.passed(t0, true);
        assert_eq!(p.hold_until(t0 + Duration::from_millis(1)), Some(t0 + window));
        // Never past the window.
        assert_eq!(p.hold_until(t0 + window), None);
        // The burst is over once a pass ends with nothing waiting.
        p.passed(t0 + Duration::from_millis(200), false);
        assert_eq!(p.hold_until(t0 + Duration::from_millis(201)), None);
    }
}
