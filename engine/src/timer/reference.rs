//! [`ReferenceTimers`]: the obviously-correct timer store that the tests and benchmarks compare
//! [`TimerWheel`](super::TimerWheel) with.

use std::collections::{BTreeMap, HashMap};

use super::{Timer, TimerError};
use crate::key::KeyId;
use crate::time::Timestamp;

/// The test oracle: a timer store with the same methods and the same semantics as
/// [`TimerWheel`](super::TimerWheel), written to be obviously right rather than fast.
///
/// Pending timers are a `BTreeMap<(timestamp, sequence number), key>`, so the map's order *is* the
/// firing order (timestamp, then registration order), plus a `HashMap<(key, timestamp), sequence
/// number>` for uniqueness and deletes. Per-key queries scan the whole store. It never fails to
/// register. It is public so that the property tests (`engine/tests/timer_props.rs`) and the
/// benchmarks (`bench/benches/timers.rs`) can use it; the engine itself never does.
#[derive(Debug, Clone)]
pub struct ReferenceTimers {
    queue: BTreeMap<(Timestamp, u64), KeyId>,
    index: HashMap<(KeyId, Timestamp), u64>,
    next_seq: u64,
    time: Timestamp,
}

impl ReferenceTimers {
    /// An empty store; its time starts at `i64::MIN`.
    pub fn new() -> Self {
        ReferenceTimers {
            queue: BTreeMap::new(),
            index: HashMap::new(),
            next_seq: 0,
            time: Timestamp::MIN,
        }
    }

    /// Registers `(key, ts)`: `Ok(true)` if added, `Ok(false)` if already pending. Never fails.
    ///
    /// # Errors
    ///
    /// None; the `Result` mirrors [`TimerWheel::register`](super::TimerWheel::register).
    pub fn register(&mut self, key: KeyId, ts: Timestamp) -> Result<bool, TimerError> {
        if self.index.contains_key(&(key, ts)) {
            return Ok(false);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.insert((key, ts), seq);
        self.queue.insert((ts, seq), key);
        Ok(true)
    }

    /// Removes `(key, ts)` if pending; false (and nothing happens) otherwise.
    pub fn delete(&mut self, key: KeyId, ts: Timestamp) -> bool {
        match self.index.remove(&(key, ts)) {
            Some(seq) => {
                self.queue.remove(&(ts, seq));
                true
            }
            None => false,
        }
    }

    /// True if `(key, ts)` is pending.
    pub fn contains(&self, key: KeyId, ts: Timestamp) -> bool {
        self.index.contains_key(&(key, ts))
    }

    /// Removes and returns the first timer in (timestamp, registration) order if its timestamp is
    /// `<= now`. The store's time becomes `max(time, now)`.
    pub fn poll(&mut self, now: Timestamp) -> Option<Timer> {
        self.time = self.time.max(now);
        let entry = self.queue.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let ((timestamp, _), key) = entry.remove_entry();
        self.index.remove(&(key, timestamp));
        Some(Timer { key, timestamp })
    }

    /// The largest `now` polled so far (`i64::MIN` initially).
    pub fn current_time(&self) -> Timestamp {
        self.time
    }

    /// The earliest pending timestamp.
    pub fn peek_timestamp(&self) -> Option<Timestamp> {
        self.queue.first_key_value().map(|(&(ts, _), _)| ts)
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True if no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// How many timers `key` has pending (a scan).
    pub fn count_for_key(&self, key: KeyId) -> usize {
        self.index.keys().filter(|&&(k, _)| k == key).count()
    }

    /// The timestamps of `key`'s pending timers, ascending (a scan).
    pub fn timers_for_key(&self, key: KeyId) -> Vec<Timestamp> {
        let mut out: Vec<Timestamp> =
            self.index.keys().filter(|&&(k, _)| k == key).map(|&(_, ts)| ts).collect();
        out.sort_unstable();
        out
    }

    /// Deletes every pending timer of `key`; returns how many there were.
    pub fn delete_all_for_key(&mut self, key: KeyId) -> usize {
        let timestamps = self.timers_for_key(key);
        for &ts in &timestamps {
            self.delete(key, ts);
        }
        timestamps.len()
    }

    /// Calls `f` with every pending timer, in firing order.
    pub fn for_each(&self, mut f: impl FnMut(Timer)) {
        for (&(timestamp, _), &key) in &self.queue {
            f(Timer { key, timestamp });
        }
    }

    /// Removes every pending timer; the time stays.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.index.clear();
    }
}

impl Default for ReferenceTimers {
    fn default() -> Self {
        Self::new()
    }
}
