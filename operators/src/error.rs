//! Errors: what user functions return, and what the runtime reports to the embedding program.

use std::fmt;
use std::sync::Arc;

use pinwheel_engine::key::KeyError;
use pinwheel_engine::time::{TimeDomain, Timestamp};
use pinwheel_engine::timer::TimerError;

/// The error type of user functions: anything that is an error. State and timer errors convert into
/// it with `?`.
pub type FnError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where in an operator's life an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Errors that stop a pipeline, each naming the operator and shard where it happened.
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
    /// (SEMANTICS A1.10, S09); Pinwheel stops after a configurable number of re-fires.
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
    /// A thread of the pipeline panicked (a user function, most likely).
    #[error("shard {shard} panicked: {message}")]
    Panicked {
        /// The shard.
        shard: usize,
        /// The panic message, if it was a string.
        message: String,
    },
    /// The pipeline's configuration is invalid.
    #[error("invalid pipeline configuration: {0}")]
    Config(String),
    /// The embedding program stopped the pipeline, or its output receiver went away.
    #[error("the pipeline was stopped before it finished")]
    Stopped,
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
