//! Failure recovery inside a running job ([`RestartPolicy`]): when a user function fails or
//! panics, a sink or source fails, or a checkpoint cannot be written, every shard stops, and the
//! job starts again from its newest complete checkpoint, as Flink's restart strategies do —
//! within a budget of restarts per time window, after a backoff, so that a record that fails
//! every time (a poison pill) ends the job with a typed error instead of a crash loop.
//!
//! A restart is a new run of the job in the same process: the shards are built again, restore
//! the newest complete checkpoint and resume their sources from its positions; exactly-once
//! sinks recover (`commit.rs`), so their output stays exactly once. Other sinks are made anew
//! by their factories: a run's returned sinks are its last attempt's, holding what it emitted
//! after the checkpoint it restored (what earlier attempts emitted went to their own sinks).

use std::time::{Duration, Instant};

use crate::error::PipelineError;

/// How often a failed job with checkpoints starts again from its newest complete checkpoint
/// ([`Checkpointing::restart`](super::Checkpointing::restart)). The default restarts never:
/// the first failure ends the run, as it does without checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestartPolicy {
    /// Restarts allowed within any [`window`](Self::window); one more failure ends the run with
    /// [`PipelineError::RestartsExhausted`].
    pub max_restarts: u32,
    /// The window the restarts are counted in.
    pub window: Duration,
    /// The wait before each restart.
    pub backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy::none()
    }
}

impl RestartPolicy {
    /// No restart: the first failure ends the run.
    pub fn none() -> Self {
        RestartPolicy { max_restarts: 0, window: Duration::MAX, backoff: Duration::ZERO }
    }

    /// Up to `max_restarts` restarts over the whole run, `backoff` apart (Flink's fixed-delay
    /// strategy); narrow the count to a window with [`within`](Self::within).
    pub fn fixed(max_restarts: u32, backoff: Duration) -> Self {
        RestartPolicy { max_restarts, window: Duration::MAX, backoff }
    }

    /// Counts the restarts within `window` only (Flink's failure-rate strategy): a job that
    /// fails rarely keeps going, one that fails again and again stops.
    pub fn within(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
}

/// Whether a run that ended with `e` may start again from a checkpoint: failures of user code,
/// sinks, sources and checkpoint I/O; not configuration errors, exhausted capacity, a timer
/// loop (they would fail the same way again), nor a stop asked for by the program.
pub(crate) fn recoverable(e: &PipelineError) -> bool {
    matches!(
        e,
        PipelineError::Function { .. }
            | PipelineError::Panicked { .. }
            | PipelineError::Sink { .. }
            | PipelineError::Source { .. }
            | PipelineError::Checkpoint(_)
            | PipelineError::Commit { .. }
            | PipelineError::Snapshot { .. }
    )
}

/// The restarts a run has taken, against its policy.
#[derive(Debug)]
pub(crate) struct Restarts {
    policy: RestartPolicy,
    at: Vec<Instant>,
}

impl Restarts {
    pub(crate) fn new(policy: RestartPolicy) -> Self {
        Restarts { policy, at: Vec::new() }
    }

    /// How many restarts were taken.
    pub(crate) fn taken(&self) -> u32 {
        self.at.len() as u32
    }

    /// Whether one more restart, at `now`, is within the policy (and counts it if so).
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        let window = self.policy.window;
        let recent = self.at.iter().filter(|&&t| now.saturating_duration_since(t) < window).count();
        if recent as u64 >= u64::from(self.policy.max_restarts) {
            return false;
        }
        self.at.push(now);
        true
    }

    /// The wait before a restart.
    pub(crate) fn backoff(&self) -> Duration {
        self.policy.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_counted_in_their_window() {
        let t0 = Instant::now();
        let mut none = Restarts::new(RestartPolicy::none());
        assert!(!none.allow(t0));
        let mut fixed = Restarts::new(RestartPolicy::fixed(2, Duration::ZERO));
        assert!(fixed.allow(t0) && fixed.allow(t0 + Duration::from_secs(3600)));
        assert!(!fixed.allow(t0 + Duration::from_secs(7200)), "two over the whole run");
        let mut rate =
            Restarts::new(RestartPolicy::fixed(2, Duration::ZERO).within(Duration::from_secs(60)));
        assert!(rate.allow(t0) && rate.allow(t0 + Duration::from_secs(10)));
        assert!(!rate.allow(t0 + Duration::from_secs(30)), "a third within the minute");
        assert!(rate.allow(t0 + Duration::from_secs(65)), "the first has left the window");
        assert_eq!(rate.taken(), 3);
    }
}
