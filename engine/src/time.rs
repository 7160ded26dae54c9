//! Time: `i64` milliseconds for both domains, clocks, and arithmetic that never wraps.
//!
//! Flink reserves the extremes: `i64::MIN` is the watermark before any watermark arrived, and
//! `i64::MAX` is the end of event time (the watermark a bounded input sends when it ends). Pinwheel
//! keeps both meanings. "No timestamp" is `Option::None`, never `i64::MIN`.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::shard::ShardWaker;

/// A point in time in milliseconds: event time or processing time (epoch milliseconds).
pub type Timestamp = i64;

/// The watermark of an input before it has received any watermark.
pub const MIN_WATERMARK: Timestamp = i64::MIN;

/// The watermark that ends event time: every pending event-time timer fires when it arrives.
pub const MAX_WATERMARK: Timestamp = i64::MAX;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// Event time, advanced by watermarks.
    EventTime,
    /// Processing time, advanced by the wall clock (or a manual clock in tests).
    ProcessingTime,
}

impl fmt::Display for TimeDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeDomain::EventTime => "EVENT_TIME",
            TimeDomain::ProcessingTime => "PROCESSING_TIME",
        })
    }
}

/// Adds a duration to a timestamp, saturating at the ends of the `i64` axis instead of wrapping.
///
/// A timer at `ts + timeout` that would overflow lands on `i64::MAX` and so fires only at the end of
/// input; it never wraps into the past.
#[inline]
pub fn saturating_add(ts: Timestamp, delta: i64) -> Timestamp {
    ts.saturating_add(delta)
}

/// A source of processing time, read by the shard once per loop turn (never per record).
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current processing time in epoch milliseconds.
    fn now(&self) -> Timestamp;

    /// Asks the clock to wake the shard of `waker` whenever its time is moved by hand, for clocks
    /// whose time does not pass by itself (a parked shard would otherwise sleep through it). The
    /// wall clock needs nothing: a shard waiting for a processing time parks until that time.
    fn notify_on_change(&self, waker: &ShardWaker) {
        let _ = waker;
    }
}

/// The system wall clock (`SystemTime::now()` in epoch milliseconds), Flink's
/// `System.currentTimeMillis()`. Not monotonic: the timer services never move backwards even when
/// it does.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock that moves only when told to: tests and the harness use it.
///
/// It never advances by itself (tokio's paused clock without auto-advance). Clones share the same
/// time, so a test can keep one handle and give another to the engine. Moving it wakes the shards
/// that run on it.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
    /// The shards to wake when the time is moved.
    wakers: Arc<Mutex<Vec<ShardWaker>>>,
}

impl ManualClock {
    /// A manual clock starting at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock { now: Arc::new(AtomicI64::new(start)), wakers: Arc::default() }
    }

    /// Sets the time. Moving it backwards is allowed (wall clocks do), but timer services never fire
    /// "backwards": they keep the largest time they have seen.
    pub fn set(&self, now: Timestamp) {
        self.now.store(now, Ordering::Release);
        for waker in self.wakers.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            waker.wake();
        }
    }

    /// Moves the time forward by `delta` milliseconds, saturating.
    pub fn advance(&self, delta: i64) {
        let now = self.now.load(Ordering::Acquire);
        self.set(now.saturating_add(delta));
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(0)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.now.load(Ordering::Acquire)
    }

    fn notify_on_change(&self, waker: &ShardWaker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget the shards of earlier runs (a test may reuse one clock for many pipelines).
        wakers.retain(|w| !w.is_orphan());
        wakers.push(waker.clone());
    }
}

/// Formats a timestamp the way docs/semantics.md writes them: `MIN`, `MAX` or the number.
pub fn display_ts(ts: Timestamp) -> String {
    match ts {
        i64::MIN => "MIN".to_string(),
        i64::MAX => "MAX".to_string(),
        t => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_add_never_wraps() {
        assert_eq!(saturating_add(i64::MAX - 1, 60_000), i64::MAX);
        assert_eq!(saturating_add(i64::MIN, -1), i64::MIN);
        assert_eq!(saturating_add(5, 10), 15);
    }

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new(10);
        let b = a.clone();
        a.advance(5);
        assert_eq!(b.now(), 15);
        b.set(i64::MAX);
        a.advance(1);
        assert_eq!(a.now(), i64::MAX);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800_000);
    }
}
