//! Where Pinwheel may differ from Flink, and the settings that choose.
//!
//! The defaults match Flink (docs/semantics.md) except where Pinwheel deliberately does better; every
//! such difference has a Flink-compatible setting, and [`Semantics::flink`] selects all of them.
//!
//! | topic | default | Flink |
//! |---|---|---|
//! | equal-timestamp timers | registration order (deterministic) | unspecified (heap artefact) — registration order is one of Flink's allowed orders |
//! | side-output timestamps | same rule as the main output: none for records without one and for processing-time timers | `i64::MIN` for records without a timestamp, the timer's timestamp for processing-time timers ([`SideOutputTimestamps::Flink`]) |
//! | processing-time timers at end of input | dropped, and counted | dropped ([`EndOfInputTimers::Drop`]); [`EndOfInputTimers::Fire`] fires them (FLINK-18647) |
//! | a timer re-registering its own timestamp from `on_timer` | an error after [`Semantics::max_timer_refires`] re-fires | loops forever (`None` here) |

use pinwheel_engine::time::{MIN_WATERMARK, TimeDomain, Timestamp};

/// What happens to pending processing-time timers when the input ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndOfInputTimers {
    /// Drop them, as Flink does (docs/semantics.md A6.3). The number dropped is in the operator metrics.
    #[default]
    Drop,
    /// Fire every pending processing-time timer, in timestamp order, after the final watermark
    /// (FLINK-18647). Timers registered while they fire are not fired.
    Fire,
}

/// Which timestamp side-output records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SideOutputTimestamps {
    /// The same rule as the main output (docs/semantics.md A9.6): the element's timestamp or none, the
    /// timer's timestamp for event-time timers, none for processing-time timers.
    #[default]
    SameAsMain,
    /// Flink's rule (A1.13): the element's timestamp or `i64::MIN` when it has none, and the timer's
    /// timestamp for timers of both domains.
    Flink,
}

/// The semantic settings of an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Semantics {
    /// Pending processing-time timers at end of input. Default: [`EndOfInputTimers::Drop`].
    pub end_of_input_timers: EndOfInputTimers,
    /// Side-output timestamps. Default: [`SideOutputTimestamps::SameAsMain`].
    pub side_output_timestamps: SideOutputTimestamps,
    /// How many times one timer (same key, timestamp and domain) may fire again within one advance
    /// because `on_timer` re-registered it, before the pipeline stops with
    /// [`PipelineError::TimerLoop`](crate::PipelineError::TimerLoop). `None`: no limit (Flink's
    /// infinite loop). Default: `Some(10_000)`.
    pub max_timer_refires: Option<u32>,
}

impl Default for Semantics {
    fn default() -> Self {
        Semantics {
            end_of_input_timers: EndOfInputTimers::Drop,
            side_output_timestamps: SideOutputTimestamps::SameAsMain,
            max_timer_refires: Some(10_000),
        }
    }
}

impl Semantics {
    /// Flink's behaviour wherever Pinwheel's default differs.
    pub fn flink() -> Self {
        Semantics {
            end_of_input_timers: EndOfInputTimers::Drop,
            side_output_timestamps: SideOutputTimestamps::Flink,
            max_timer_refires: None,
        }
    }

    /// Sets [`Semantics::end_of_input_timers`].
    pub fn end_of_input_timers(mut self, v: EndOfInputTimers) -> Self {
        self.end_of_input_timers = v;
        self
    }

    /// Sets [`Semantics::side_output_timestamps`].
    pub fn side_output_timestamps(mut self, v: SideOutputTimestamps) -> Self {
        self.side_output_timestamps = v;
        self
    }

    /// Sets [`Semantics::max_timer_refires`].
    pub fn max_timer_refires(mut self, v: Option<u32>) -> Self {
        self.max_timer_refires = v;
        self
    }
}

/// What a callback runs for, which decides the timestamp of its side-output records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A record.
    Element,
    /// A timer of this domain.
    Timer(TimeDomain),
}

impl SideOutputTimestamps {
    /// The timestamp of a side-output record emitted by a callback for `origin` whose timestamp
    /// (the element's, or the timer's) is `timestamp`. Computed when a side record is emitted,
    /// not for every callback.
    #[inline]
    pub(crate) fn of(self, origin: Origin, timestamp: Option<Timestamp>) -> Option<Timestamp> {
        match (self, origin) {
            (SideOutputTimestamps::SameAsMain, Origin::Element) => timestamp,
            (SideOutputTimestamps::Flink, Origin::Element) => {
                Some(timestamp.unwrap_or(MIN_WATERMARK))
            }
            (SideOutputTimestamps::SameAsMain, Origin::Timer(TimeDomain::ProcessingTime)) => None,
            (_, Origin::Timer(_)) => timestamp,
        }
    }
}
