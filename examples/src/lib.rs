//! The seeds' jobs (docs/benchmarks.md), written once and shared by the runnable examples and the benchmark
//! driver: each is an ordinary [`KeyedProcessFunction`], the same code a Flink user would write.
//!
//! * [`CountWithTimeout`] — Flink's documentation example: count per key, emit the count when a key
//!   has seen no event for a minute of event time.
//! * [`WindowSum`] — a one-minute tumbling sum built on an event-time timer.
//! * [`TimerBurst`] — every event registers a timer at the same far instant: a burst at the end.
//! * [`Heartbeat`] — forwards every event and raises a timeout after a minute of processing time
//!   without one.
//! * [`PeriodicReport`] — a per-key report that re-arms its own timer in `on_timer`.
//!
//! [`standard`] is the benchmarks' generated stream, which the examples and the benchmark driver
//! read.
#![forbid(unsafe_code)]

pub mod standard;

pub use standard::{Event, StandardStream, splitmix64};

use pinwheel::{
    Collector, Context, FnError, KeyedProcessFunction, MAX_WATERMARK, OnTimerContext, OpenContext,
    Timestamp, ValueState, ValueStateDescriptor,
};

/// One minute in milliseconds.
pub const MINUTE: i64 = 60_000;

/// The state of [`CountWithTimeout`]: Flink's `CountWithTimestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CountWithTimestamp {
    /// The key.
    pub key: u64,
    /// Events seen.
    pub count: u64,
    /// The timestamp of the last event.
    pub last_modified: Timestamp,
}

/// Flink's `CountWithTimeoutFunction`: every event increments its key's count, sets
/// `last_modified` to the event's timestamp and registers an event-time timer a timeout later;
/// `on_timer` emits `(key, count)` if no event came since (the timer is the latest one).
#[derive(Debug, Default)]
pub struct CountWithTimeout {
    timeout: i64,
    state: ValueState<CountWithTimestamp>,
}

impl CountWithTimeout {
    /// With a timeout of `timeout` ms (the seeds use one minute).
    pub fn new(timeout: i64) -> Self {
        CountWithTimeout { timeout, state: ValueState::default() }
    }

    /// With the seeds' one-minute timeout.
    pub fn one_minute() -> Self {
        Self::new(MINUTE)
    }
}

impl KeyedProcessFunction for CountWithTimeout {
    type Key = u64;
    type In = Event;
    type Out = (u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.state = ctx.value_state(ValueStateDescriptor::new("myState"))?;
        Ok(())
    }

    #[inline]
    fn process_element(
        &mut self,
        event: Event,
        ctx: &mut Context<'_, u64>,
        _out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        let mut current = self.state.value(ctx)?.unwrap_or(CountWithTimestamp {
            key: event.key,
            count: 0,
            last_modified: 0,
        });
        current.count += 1;
        current.last_modified = ctx.timestamp().unwrap_or(event.timestamp);
        self.state.update(ctx, current)?;
        // Saturating: a timeout past the end of time lands on i64::MAX, it never wraps.
        ctx.timer_service()
            .register_event_time_timer(current.last_modified.saturating_add(self.timeout))?;
        Ok(())
    }

    #[inline]
    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        if let Some(result) = self.state.value(ctx)? {
            if timestamp == result.last_modified.saturating_add(self.timeout) {
                out.collect((result.key, result.count));
            }
        }
        Ok(())
    }
}

/// The last millisecond of the one-minute tumbling window holding `ts` (Flink's
/// `TimeWindow.maxTimestamp()`), with floor division so negative timestamps fall in the right window.
#[inline]
pub fn window_end(ts: Timestamp, size: i64) -> Timestamp {
    ts.div_euclid(size).saturating_mul(size).saturating_add(size - 1)
}

/// A tumbling sum built on a timer: the first event of a key opens its window (a timer at the
/// window's last millisecond), later events add to the sum, the timer emits `(key, sum)` and clears
/// it.
#[derive(Debug, Default)]
pub struct WindowSum {
    size: i64,
    sum: ValueState<u64>,
}

impl WindowSum {
    /// Windows of `size` ms.
    pub fn new(size: i64) -> Self {
        WindowSum { size: size.max(1), sum: ValueState::default() }
    }

    /// The seeds' one-minute windows.
    pub fn one_minute() -> Self {
        Self::new(MINUTE)
    }
}

impl KeyedProcessFunction for WindowSum {
    type Key = u64;
    type In = Event;
    type Out = (u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.sum = ctx.value_state(ValueStateDescriptor::new("sum"))?;
        Ok(())
    }

    #[inline]
    fn process_element(
        &mut self,
        event: Event,
        ctx: &mut Context<'_, u64>,
        _out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        match self.sum.value(ctx)? {
            None => {
                let ts = ctx.timestamp().unwrap_or(event.timestamp);
                ctx.timer_service().register_event_time_timer(window_end(ts, self.size))?;
                self.sum.update(ctx, event.value)?;
            }
            Some(sum) => self.sum.update(ctx, sum + event.value)?,
        }
        Ok(())
    }

    #[inline]
    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        if let Some(sum) = self.sum.value(ctx)? {
            out.collect((*ctx.current_key(), sum));
        }
        self.sum.clear(ctx)?;
        Ok(())
    }
}

/// Every event registers one event-time timer at `i64::MAX - 1`; at the end of input they all fire
/// at once, one `(key, 1)` per key.
#[derive(Debug, Default, Clone, Copy)]
pub struct TimerBurst;

/// The instant every [`TimerBurst`] timer is set for.
pub const BURST_AT: Timestamp = i64::MAX - 1;

impl KeyedProcessFunction for TimerBurst {
    type Key = u64;
    type In = Event;
    type Out = (u64, u64);

    #[inline]
    fn process_element(
        &mut self,
        _event: Event,
        ctx: &mut Context<'_, u64>,
        _out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        ctx.timer_service().register_event_time_timer(BURST_AT)?;
        Ok(())
    }

    #[inline]
    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> Result<(), FnError> {
        out.collect((*ctx.current_key(), 1));
        Ok(())
    }
}

/// What [`Heartbeat`] emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOut {
    /// An event, forwarded at once.
    Seen(Event),
    /// A key fell silent for the whole timeout.
    Timeout(u64),
}

/// The seeds' heartbeat-timeout alert on processing time: every event is forwarded at once, its
/// key's previous timer is deleted and a new one registered a timeout ahead; `on_timer` raises
/// [`HeartbeatOut::Timeout`].
///
/// Flink users keep the pending timer's timestamp in a `ValueState` to delete it; Pinwheel's timer
/// service deletes a key's timers directly ([`TimerService::delete_all_timers`](pinwheel::TimerService::delete_all_timers)).
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    timeout: i64,
}

impl Heartbeat {
    /// With a timeout of `timeout` ms of processing time.
    pub fn new(timeout: i64) -> Self {
        Heartbeat { timeout }
    }
}

impl KeyedProcessFunction for Heartbeat {
    type Key = u64;
    type In = Event;
    type Out = HeartbeatOut;

    #[inline]
    fn process_element(
        &mut self,
        event: Event,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, HeartbeatOut>,
    ) -> Result<(), FnError> {
        out.collect(HeartbeatOut::Seen(event));
        let timers = ctx.timer_service();
        timers.delete_all_timers(pinwheel::TimeDomain::ProcessingTime)?;
        let at = timers.current_processing_time().saturating_add(self.timeout);
        timers.register_processing_time_timer(at)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, HeartbeatOut>,
    ) -> Result<(), FnError> {
        out.collect(HeartbeatOut::Timeout(*ctx.current_key()));
        Ok(())
    }
}

/// One report of [`PeriodicReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The key.
    pub key: u64,
    /// The end of the reported period (event time).
    pub at: Timestamp,
    /// Events of the key in the period.
    pub events: u64,
    /// The sum of their values.
    pub sum: u64,
}

/// A per-key report every `period` ms of event time: the first event of a key arms a timer, each
/// firing emits the period's count and sum and re-arms the timer from `on_timer` — unless the input
/// has ended (the watermark is `MAX`), which would otherwise re-arm forever.
#[derive(Debug, Default)]
pub struct PeriodicReport {
    period: i64,
    totals: ValueState<(u64, u64)>,
    armed: ValueState<bool>,
}

impl PeriodicReport {
    /// Reports every `period` ms.
    pub fn new(period: i64) -> Self {
        PeriodicReport { period: period.max(1), ..PeriodicReport::default() }
    }
}

impl KeyedProcessFunction for PeriodicReport {
    type Key = u64;
    type In = Event;
    type Out = Report;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.totals = ctx.value_state(ValueStateDescriptor::new("totals"))?;
        self.armed = ctx.value_state(ValueStateDescriptor::new("armed"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        event: Event,
        ctx: &mut Context<'_, u64>,
        _out: &mut Collector<'_, Report>,
    ) -> Result<(), FnError> {
        let (n, sum) = self.totals.value(ctx)?.unwrap_or((0, 0));
        self.totals.update(ctx, (n + 1, sum + event.value))?;
        if self.armed.value(ctx)?.is_none() {
            let ts = ctx.timestamp().unwrap_or(event.timestamp);
            ctx.timer_service().register_event_time_timer(window_end(ts, self.period))?;
            self.armed.update(ctx, true)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, Report>,
    ) -> Result<(), FnError> {
        let (events, sum) = self.totals.value(ctx)?.unwrap_or((0, 0));
        out.collect(Report { key: *ctx.current_key(), at: timestamp, events, sum });
        self.totals.clear(ctx)?;
        if ctx.current_watermark() < MAX_WATERMARK {
            ctx.timer_service().register_event_time_timer(timestamp.saturating_add(self.period))?;
        } else {
            self.armed.clear(ctx)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinwheel::StreamElement;
    use pinwheel::harness::KeyedHarness;

    fn ev(key: u64, timestamp: Timestamp, value: u64) -> Event {
        Event { key, timestamp, value }
    }

    #[test]
    fn count_with_timeout_emits_after_a_quiet_minute() {
        let mut h = KeyedHarness::new(CountWithTimeout::one_minute(), |e: &Event| e.key).unwrap();
        h.process_element(ev(1, 0, 0), 0).unwrap();
        h.process_element(ev(1, 30_000, 0), 30_000).unwrap();
        h.process_element(ev(2, 40_000, 0), 40_000).unwrap();
        h.process_watermark(60_000).unwrap(); // key 1's first timer: superseded, no output
        h.process_watermark(90_000).unwrap(); // key 1 quiet since 30 s
        h.end_input().unwrap();
        let out: Vec<_> =
            h.take_output().into_iter().filter_map(StreamElement::into_value).collect();
        assert_eq!(out, vec![(1, 2), (2, 1)]);
    }

    #[test]
    fn count_with_timeout_saturates_instead_of_wrapping() {
        let mut h = KeyedHarness::new(CountWithTimeout::one_minute(), |e: &Event| e.key).unwrap();
        h.process_element(ev(7, i64::MAX - 5, 0), i64::MAX - 5).unwrap();
        h.process_watermark(i64::MAX - 1).unwrap();
        assert!(h.output_values().is_empty(), "a saturated timer must not fire before the end");
        h.end_input().unwrap();
        assert_eq!(h.output_values(), vec![&(7, 1)]);
    }

    #[test]
    fn window_sum_sums_each_window() {
        let mut h = KeyedHarness::new(WindowSum::one_minute(), |e: &Event| e.key).unwrap();
        h.process_element(ev(1, 10, 5), 10).unwrap();
        h.process_element(ev(1, 59_999, 6), 59_999).unwrap();
        h.process_element(ev(1, 60_000, 7), 60_000).unwrap();
        h.process_element(ev(1, -1, 100), -1).unwrap(); // a late event joins the open window
        h.end_input().unwrap();
        let out: Vec<_> =
            h.take_output().into_iter().filter_map(StreamElement::into_value).collect();
        assert_eq!(out, vec![(1, 118)]);
        assert_eq!(window_end(-1, MINUTE), -1);
        assert_eq!(window_end(-60_000, MINUTE), -1);
        assert_eq!(window_end(0, MINUTE), 59_999);
        assert_eq!(window_end(i64::MAX, MINUTE), i64::MAX);
    }

    #[test]
    fn timer_burst_fires_once_per_key() {
        let mut h = KeyedHarness::new(TimerBurst, |e: &Event| e.key).unwrap();
        for i in 0..1000 {
            h.process_element(ev(i % 10, i as i64, 0), i as i64).unwrap();
        }
        assert_eq!(h.num_event_time_timers(), 10);
        h.end_input().unwrap();
        assert_eq!(h.output_values().len(), 10);
    }

    #[test]
    fn heartbeat_times_out_silent_keys_only() {
        let mut h = KeyedHarness::new(Heartbeat::new(100), |e: &Event| e.key).unwrap();
        h.process_element(ev(1, 0, 0), None).unwrap();
        h.process_element(ev(2, 0, 0), None).unwrap();
        h.set_processing_time(60).unwrap();
        h.process_element(ev(2, 0, 0), None).unwrap();
        h.set_processing_time(120).unwrap();
        let timeouts: Vec<_> = h
            .take_output()
            .into_iter()
            .filter_map(|e| match e.into_value() {
                Some(HeartbeatOut::Timeout(k)) => Some(k),
                _ => None,
            })
            .collect();
        assert_eq!(timeouts, vec![1]);
        assert_eq!(h.num_processing_time_timers(), 1);
    }

    #[test]
    fn periodic_report_rearms_until_the_end() {
        let mut h = KeyedHarness::new(PeriodicReport::new(10), |e: &Event| e.key).unwrap();
        h.process_element(ev(1, 1, 2), 1).unwrap();
        h.process_element(ev(1, 3, 3), 3).unwrap();
        h.process_watermark(25).unwrap();
        h.process_element(ev(1, 26, 4), 26).unwrap();
        h.end_input().unwrap();
        let out: Vec<_> =
            h.take_output().into_iter().filter_map(StreamElement::into_value).collect();
        assert_eq!(
            out,
            vec![
                Report { key: 1, at: 9, events: 2, sum: 5 },
                Report { key: 1, at: 19, events: 0, sum: 0 },
                Report { key: 1, at: 29, events: 1, sum: 4 },
            ]
        );
        assert_eq!(h.metrics().timers_ignored_after_end, 0);
    }
}
