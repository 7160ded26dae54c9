//! Errors: what user functions and sinks return, and what the runtime reports to the embedding
//! program.

use std::fmt;
use std::sync::Arc;

use pinwheel_engine::exchange::ExchangeError;
use pinwheel_engine::key::KeyError;
use pinwheel_engine::keyed::SnapshotError;
use pinwheel_engine::keygroup::KeyGroupError;
use pinwheel_engine::placement::PlacementError;
use pinwheel_engine::time::{TimeDomain, Timestamp};
use pinwheel_engine::timer::TimerError;

/// The error type of user functions: anything that is an error. State and timer errors convert into
/// it with `?`.
pub type FnError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error type of sinks and custom sources: their own error, boxed.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where in an operator's life an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// `open`.
    Open,
    /// `process_element`.
    ProcessElement,
    /// `on_timer` for a timer of this domain.
    OnTimer(TimeDomain),
    /// `close`.
    Close,
    /// Reading a source.
    Source,
    /// Writing to a sink.
    Sink,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Open => f.write_str("open"),
            Phase::ProcessElement => f.write_str("process_element"),
            Phase::OnTimer(d) => write!(f, "on_timer ({d})"),
            Phase::Close => f.write_str("close"),
            Phase::Source => f.write_str("the source"),
            Phase::Sink => f.write_str("the sink"),
        }
    }
}

/// Errors that stop a pipeline, each naming where it happened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A user function returned an error.
    #[error("operator `{operator}` on shard {shard} failed in {phase}: {source}")]
    Function {
        /// The operator's name.
        operator: Arc<str>,
        /// The shard it ran on.
        shard: usize,
        /// What it was doing.
        phase: Phase,
        /// The function's error.
        #[source]
        source: FnError,
    },
    /// A timer kept re-registering itself at the timestamp that was firing: Flink would loop forever
    /// (docs/semantics.md A1.10, S09); Pinwheel stops after a configurable number of re-fires.
    #[error(
        "operator `{operator}` on shard {shard}: the {domain} timer at {timestamp} for key {key} \
         was re-registered from its own on_timer and fired {refires} times in one advance; \
         guard the re-registration (this would loop forever on Flink), or raise \
         Semantics::max_timer_refires"
    )]
    TimerLoop {
        /// The operator's name.
        operator: Arc<str>,
        /// The shard it ran on.
        shard: usize,
        /// The looping timer's domain.
        domain: TimeDomain,
        /// The looping timer's timestamp.
        timestamp: Timestamp,
        /// The key, formatted with `Debug`.
        key: String,
        /// How many times it fired.
        refires: u32,
    },
    /// The key space or the timer store of an operator is exhausted.
    #[error("operator `{operator}` on shard {shard}: {source}")]
    Capacity {
        /// The operator's name.
        operator: Arc<str>,
        /// The shard it ran on.
        shard: usize,
        /// What ran out.
        #[source]
        source: CapacityError,
    },
    /// A snapshot of an operator's keyed state could not be taken or restored.
    #[error("operator `{operator}` on shard {shard}: {source}")]
    Snapshot {
        /// The operator's name.
        operator: Arc<str>,
        /// The shard it ran on.
        shard: usize,
        /// What went wrong.
        #[source]
        source: SnapshotError,
    },
    /// A checkpoint could not be written, or the one to restore could not be read.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] pinwheel_engine::checkpoint::CheckpointError),
    /// A sink failed.
    #[error("the sink on shard {shard} failed: {source}")]
    Sink {
        /// The shard whose sink failed.
        shard: usize,
        /// The sink's error.
        #[source]
        source: SinkError,
    },
    /// An exactly-once sink's committer failed to recover its output at start or to commit it
    /// after a checkpoint ([`Committer`](crate::pipeline::Committer)).
    #[error("an exactly-once sink's commit failed: {source}")]
    Commit {
        /// The committer's error.
        #[source]
        source: SinkError,
    },
    /// A source failed.
    #[error("the source on shard {shard} failed: {source}")]
    Source {
        /// The shard whose source failed.
        shard: usize,
        /// The source's error.
        #[source]
        source: SinkError,
    },
    /// A thread of the pipeline panicked: where it was known, in which operator and phase.
    #[error("{}shard {shard} panicked{}: {message}", .operator.as_ref().map(|o| format!("operator `{o}` on ")).unwrap_or_default(), .phase.map(|p| format!(" in {p}")).unwrap_or_default())]
    Panicked {
        /// The operator whose code was running, if known.
        operator: Option<Arc<str>>,
        /// The shard.
        shard: usize,
        /// What the operator was doing, if known.
        phase: Option<Phase>,
        /// The panic message, if it was a string.
        message: String,
    },
    /// A job with a [`RestartPolicy`](crate::pipeline::RestartPolicy) failed once more after
    /// the restarts it allows (a record that fails every time, for example).
    #[error("the job failed again after {restarts} restarts: {last}")]
    RestartsExhausted {
        /// The restarts taken.
        restarts: u32,
        /// The last failure.
        #[source]
        last: Box<PipelineError>,
    },
    /// The pipeline's configuration is invalid.
    #[error("invalid pipeline configuration: {0}")]
    Config(#[from] ConfigError),
    /// The operating system refused to start a thread of the pipeline.
    #[error("cannot start thread `{thread}`: {message}")]
    Spawn {
        /// The thread's name.
        thread: String,
        /// The operating system's error.
        message: String,
    },
    /// The embedding program stopped the pipeline, or its output receiver went away.
    #[error("the pipeline was stopped before it finished")]
    Stopped,
}

impl PipelineError {
    /// The error of a custom source on shard `shard`.
    pub fn source(shard: usize, error: impl Into<SinkError>) -> Self {
        PipelineError::Source { shard, source: error.into() }
    }
}

/// What is wrong with a pipeline's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `Pipeline::shards(0)`: a pipeline needs at least one shard.
    #[error("a pipeline needs at least one shard")]
    NoShards,
    /// A pipeline with checkpoints reads a source that cannot resume from a position (it has no
    /// [`Stage::position`](crate::pipeline::Stage::position) or
    /// [`StagePlan::resume`](crate::pipeline::StagePlan::resume)).
    #[error(
        "the source on shard {shard} cannot resume from a checkpoint position: a pipeline with \
         checkpoints needs sources that implement Stage::position and StagePlan::resume"
    )]
    NotResumable {
        /// The shard whose source partition cannot resume.
        shard: usize,
    },
    /// The checkpoint to restore does not fit this pipeline.
    #[error("checkpoint {checkpoint} cannot be restored into this pipeline: {reason}")]
    CheckpointMismatch {
        /// The checkpoint's id.
        checkpoint: u64,
        /// What does not fit.
        reason: String,
    },
    /// The placement cannot run.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// The number of key groups is invalid, or smaller than the shard count.
    #[error(transparent)]
    KeyGroups(#[from] KeyGroupError),
    /// The exchange's rings cannot be sized as asked.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// A way of running that needs one shard was asked of a pipeline with more.
    #[error(
        "{method} runs on the calling thread and needs Pipeline::shards(1); use run_sharded, \
         for_each or into_channel for more shards"
    )]
    NeedsOneShard {
        /// The method.
        method: &'static str,
    },
    /// A stream added to a job comes from a pipeline with other settings.
    #[error(
        "a stream added to a job comes from a pipeline with other settings: build every stream of \
         a job from the Pipeline given to Job::new"
    )]
    ForeignStream,
    /// A side output was given two consumers.
    #[error(
        "side output {tag:?} has two consumers: read each side output through one stream or one \
         callback"
    )]
    SideOutputConsumedTwice {
        /// The side output's id.
        tag: String,
    },
    /// A push source was run a second time (its queue belongs to the first run).
    #[error("a push source can be run once: its queue was already taken by another run")]
    PushSourceReused,
    /// A setting of a custom source or sink is invalid.
    #[error("invalid setting `{setting}`: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Capacity limits of keyed operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapacityError {
    /// Too many distinct keys.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Too many pending timers.
    #[error(transparent)]
    Timers(#[from] TimerError),
}

/// Errors of the timer service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimerServiceError {
    /// Timers were used in a non-keyed function (Flink: `UnsupportedOperationException`).
    #[error(
        "Setting timers is only supported on a keyed stream: key the stream with key_by(...) \
         before process(...) to use timers"
    )]
    NotKeyed,
    /// The timer store is full.
    #[error(transparent)]
    Store(#[from] TimerError),
}
