//! Owners for the tasks the controllers spawn. A watch, writer or elector that panics or
//! ends while it is still wanted is restarted with backoff, logged and counted in
//! `extdns_task_restarts_total`; one that keeps failing is given up on, and the process then
//! exits non-zero so that Kubernetes restarts it. No task is left running detached: dropping
//! an owner aborts what it owns.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::error;

use crate::metrics::Metrics;

/// First delay before a restart.
pub const RESTART_MIN: Duration = Duration::from_secs(1);
/// Longest delay between restarts.
pub const RESTART_MAX: Duration = Duration::from_secs(60);
/// A task that ran this long before failing starts its backoff afresh.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Failures in a row, each soon after its start, after which a task is taken as unable to
/// run (about four minutes of crash-looping with the delays above).
pub const MAX_FAILURES: u32 = 8;

/// Why a supervised task stopped while it was still wanted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("panicked: {0}")]
    Panicked(String),
    #[error("ended: {0}")]
    Ended(String),
}

/// A task failed too often to be restarted again.
#[derive(Debug, thiserror::Error)]
#[error("task {task} stopped {failures} times in a row, last {last}; giving up")]
pub struct GaveUp {
    pub task: String,
    pub failures: u32,
    pub last: Stopped,
}

/// Failures of one task and when it last started: decides the delay before the next start,
/// or that there is none.
#[derive(Debug, Clone)]
pub struct Restarts {
    failures: u32,
    started: Instant,
}

impl Default for Restarts {
    fn default() -> Self {
        Restarts { failures: 0, started: Instant::now() }
    }
}

impl Restarts {
    /// The task (re)starts now.
    pub fn started(&mut self) {
        self.started = Instant::now();
    }

    /// The task stopped: the delay before it starts again, or `None` when it failed
    /// [`MAX_FAILURES`] times in a row.
    pub fn failed(&mut self) -> Option<Duration> {
        if self.started.elapsed() >= STABLE_AFTER {
            self.failures = 0;
        }
        self.failures += 1;
        (self.failures <= MAX_FAILURES)
            .then(|| extdns_core::backoff::delay(RESTART_MIN, RESTART_MAX, self.failures - 1))
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p.downcast_ref::<&str>().map(|s| s.to_string()).unwrap_or_else(|| "(no message)".into()),
    }
}

/// What became of a spawned task: `Ok` when it returned `Ok` (it finished on purpose).
pub fn stopped<T>(r: Result<Result<T, Stopped>, tokio::task::JoinError>) -> Result<T, Stopped> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(Stopped::Panicked(panic_message(e.into_panic()))),
        Err(e) => Err(Stopped::Ended(format!("cancelled: {e}"))),
    }
}

/// Aborts the task when dropped, so that an owner that goes takes its task with it.
struct Owned<T>(JoinHandle<T>);

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts one restart of `task`.
pub fn count_restart(metrics: &Metrics, task: &str) {
    metrics.task_restarts.get_or_create(&crate::metrics::TaskLabels { task: task.into() }).inc();
}

/// Runs the task `make` builds, on a task of its own, until it returns `Ok`; builds and
/// starts it again with backoff whenever it panics or returns `Err`; gives up after
/// [`MAX_FAILURES`] quick failures in a row.
pub async fn supervise<F, Fut>(task: String, metrics: Arc<Metrics>, mut make: F) -> Result<(), GaveUp>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Stopped>> + Send + 'static,
{
    let mut restarts = Restarts::default();
    loop {
        restarts.started();
        let mut handle = Owned(tokio::spawn(make()));
        let why = match stopped((&mut handle.0).await) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        count_restart(&metrics, &task);
        match restarts.failed() {
            Some(delay) => {
                error!(task, reason = %why, restart_in = ?delay, "a supervised task stopped; restarting it");
                tokio::time::sleep(delay).await;
            }
            None => {
                let gave_up = GaveUp { task, failures: restarts.failures(), last: why };
                error!(error = %gave_up, "a supervised task cannot be restarted");
                return Err(gave_up);
            }
        }
    }
}

/// Owns a set of supervised tasks; [`Supervisor::gave_up`] says when one of them cannot be
/// restarted. Dropping it aborts them all.
pub struct Supervisor {
    metrics: Arc<Metrics>,
    tasks: JoinSet<Result<(), GaveUp>>,
}

impl Supervisor {
    pub fn new(metrics: Arc<Metrics>) -> Supervisor {
        Supervisor { metrics, tasks: JoinSet::new() }
    }

    /// Starts `make`'s task under [`supervise`].
    pub fn spawn<F, Fut>(&mut self, task: impl Into<String>, make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Stopped>> + Send + 'static,
    {
        self.tasks.spawn(supervise(task.into(), self.metrics.clone(), make));
    }

    /// Resolves when a task could not be restarted; pends for ever while every task runs or
    /// finished on purpose.
    pub async fn gave_up(&mut self) -> GaveUp {
        loop {
            match self.tasks.join_next().await {
                None => std::future::pending::<()>().await,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(g))) => return g,
                // The restart loop itself only awaits and sleeps.
                Some(Err(e)) => {
                    let last = stopped::<()>(Err(e)).err().unwrap_or(Stopped::Ended("unknown".into()));
                    return GaveUp { task: "supervisor".into(), failures: 1, last };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_is_restarted_and_counted() {
        let metrics = Arc::new(Metrics::default());
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let done = supervise("test".into(), metrics.clone(), move || {
            let r = r.clone();
            async move {
                match r.fetch_add(1, Ordering::SeqCst) {
                    0 => panic!("boom"),
                    1 => Err(Stopped::Ended("stream closed".into())),
                    _ => Ok(()),
                }
            }
        })
        .await;
        assert!(done.is_ok());
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(metrics.encode().contains("extdns_task_restarts_total{task=\"test\"} 2"), "{}", metrics.encode());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_keeps_failing_is_given_up() {
        let metrics = Arc::new(Metrics::default());
        let mut s = Supervisor::new(metrics);
        s.spawn("crashing", || async { panic!("always") });
        let g = s.gave_up().await;
        assert_eq!((g.task.as_str(), g.failures), ("crashing", MAX_FAILURES + 1));
        assert_eq!(g.last, Stopped::Panicked("always".into()));
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let mut r = Restarts::default();
        r.failed();
        r.failed();
        assert_eq!(r.failures(), 2);
        r.started = Instant::now() - STABLE_AFTER;
        r.failed();
        assert_eq!(r.failures(), 1);
    }
}
