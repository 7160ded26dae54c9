//! The counters of one operator instance.

/// Counters of one operator instance (keyed or not): plain integers on its shard, read between
/// steps. Counters that do not apply to an operator stay 0 (a non-keyed operator fires no timers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperatorMetrics {
    /// Elements processed.
    pub records_in: u64,
    /// Elements whose timestamp was at or below the watermark when they arrived (they are still
    /// processed: docs/semantics.md A2.9).
    pub late_records: u64,
    /// Watermarks dropped because they did not advance the operator's watermark (A2.3).
    pub watermarks_dropped: u64,
    /// Event-time timers fired.
    pub event_timers_fired: u64,
    /// Processing-time timers fired.
    pub processing_timers_fired: u64,
    /// Processing-time timers dropped at the end of input (Flink's rule, A6.3).
    pub processing_timers_dropped_at_end: u64,
    /// Event-time timers still pending when the operator finished (registered after the final
    /// watermark, so they can never fire).
    pub event_timers_never_fired: u64,
    /// Timer registrations ignored because the operator had already finished.
    pub timers_ignored_after_end: u64,
    /// Re-registrations of an event-time timer at `i64::MAX` from its own `on_timer` while it
    /// fired at `i64::MAX`, during the final watermark: dropped, because they would fire again at
    /// once, forever (the everyday periodic timer `t.saturating_add(period)` does this at the end
    /// of a bounded input).
    pub timers_dropped_at_end_of_time: u64,
    /// Expired TTL state rows removed by the background sweep.
    pub ttl_rows_swept: u64,
    /// Keys removed because a callback left them with no state and no pending timers (their ids
    /// are given out again).
    pub keys_removed: u64,
}
