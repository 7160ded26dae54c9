//! Exactly-once output: the second phase of a two-phase commit ([`Committer`]), run by the
//! pipeline; the first phase is the sinks' [`Sink::on_barrier`](super::Sink::on_barrier) and
//! [`Sink::finish`](super::Sink::finish), run on the shards.
//!
//! ```text
//!  shard's sink ── writes records where nobody reads them yet (an in-progress file)
//!        │ barrier n: makes them durable as "pending n" (pre-commit), acknowledges n
//!  checkpoint n complete (its manifest durable) ──► Committer::commit(n): pending <= n visible
//!  restart from checkpoint r ──► Committer::recover(Some(r)): pending <= r visible (a crash came
//!                                between the manifest and the commit), everything else removed
//!                                (the replay writes it again)
//! ```
//!
//! Output that became visible is never written again: everything before a checkpoint's barriers
//! is reflected in it, so a run restored from it replays only what came after. A run that
//! completes ends with a final checkpoint, which commits what the sinks wrote after their last
//! barrier (they pre-commit it in `finish`). Without checkpoints, the pipeline recovers at start
//! (`recover(None)`) and commits everything once the run has completed.

use std::fmt;

use crate::error::SinkError;

/// The commit side of an exactly-once sink: what makes pre-committed output visible, and what
/// cleans up after a crash. Register it with
/// [`Pipeline::exactly_once`](super::Pipeline::exactly_once); the pipeline calls it from its
/// checkpoint thread (or, without checkpoints, from the thread that runs the job), never from
/// two threads at once.
pub trait Committer: Send + Sync + fmt::Debug {
    /// Before any shard starts: `restored` is the checkpoint the run resumes from (`None` for a
    /// fresh start). Makes visible what was pre-committed for checkpoints up to `restored`, and
    /// removes everything else that is not visible (it will be written again).
    ///
    /// # Errors
    ///
    /// Any; the run does not start.
    fn recover(&self, restored: Option<u64>) -> Result<(), SinkError>;

    /// Checkpoint `checkpoint` is complete: makes visible everything pre-committed for it and
    /// for earlier checkpoints. Must be idempotent (a crash may come in the middle, and the next
    /// run's `recover` finishes the job).
    ///
    /// # Errors
    ///
    /// Any; the run stops with [`PipelineError::Commit`](crate::PipelineError::Commit).
    fn commit(&self, checkpoint: u64) -> Result<(), SinkError>;
}
