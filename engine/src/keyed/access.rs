//! What a callback of a keyed operator sees of its backend: the current key, its state scope and
//! its timers.

use super::metrics::OperatorMetrics;
use crate::key::KeyId;
use crate::state::StateScope;
use crate::time::{MAX_WATERMARK, TimeDomain, Timestamp};
use crate::timer::{TimerError, TimerWheel};

/// The current key of a callback (`process_element`, `on_timer`): the backend's key vector (the
/// current key is `keys[scope.key()]`, [`key`](Self::key)), the scope through which keyed state
/// is accessed, and the key's timers.
#[derive(Debug)]
#[non_exhaustive]
pub struct KeyContext<'a, K> {
    /// The backend's keys by id (the entry of a removed key's id holds its last key until the id
    /// is given out again).
    pub keys: &'a [K],
    /// The current key's state scope (its id, the processing time, the registry).
    pub scope: StateScope,
    /// The current key's timers.
    pub timers: KeyTimers<'a>,
}

impl<K> KeyContext<'_, K> {
    /// The current key.
    #[inline]
    pub fn key(&self) -> &K {
        &self.keys[self.scope.key() as usize]
    }
}

/// The timers of the current key, in both time domains, and the current times.
///
/// A timer is unique per (key, timestamp) in each domain. Registrations are ignored (and
/// counted) once the operator has finished; a re-registration at `i64::MAX` from the `on_timer`
/// of the key's own timer at `i64::MAX` during the final watermark is dropped (and counted), since
/// it would fire again at once, forever.
#[derive(Debug)]
pub struct KeyTimers<'a> {
    pub(super) event: &'a mut TimerWheel,
    pub(super) processing: &'a mut TimerWheel,
    pub(super) key: KeyId,
    pub(super) watermark: Timestamp,
    pub(super) processing_time: Timestamp,
    /// False once the operator has finished.
    pub(super) accepting: bool,
    /// True while this key's event-time timer at `i64::MAX` fires.
    pub(super) firing_at_end_of_time: bool,
    pub(super) metrics: &'a mut OperatorMetrics,
}

impl KeyTimers<'_> {
    /// The operator's event-time watermark: in an event-time `on_timer`, the watermark that fired
    /// the timer.
    #[inline]
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The processing time, read once per loop turn.
    #[inline]
    pub fn processing_time(&self) -> Timestamp {
        self.processing_time
    }

    #[inline]
    fn wheel(&mut self, domain: TimeDomain) -> &mut TimerWheel {
        match domain {
            TimeDomain::EventTime => self.event,
            TimeDomain::ProcessingTime => self.processing,
        }
    }

    /// Registers the current key's timer at `timestamp` in `domain`; a duplicate does nothing.
    #[inline]
    pub fn register(&mut self, domain: TimeDomain, timestamp: Timestamp) -> Result<(), TimerError> {
        if !self.accepting {
            self.metrics.timers_ignored_after_end += 1;
            return Ok(());
        }
        if timestamp == MAX_WATERMARK
            && self.firing_at_end_of_time
            && domain == TimeDomain::EventTime
        {
            self.metrics.timers_dropped_at_end_of_time += 1;
            return Ok(());
        }
        let key = self.key;
        self.wheel(domain).register(key, timestamp)?;
        Ok(())
    }

    /// Deletes the current key's timer at `timestamp`; a silent no-op if there is none.
    #[inline]
    pub fn delete(&mut self, domain: TimeDomain, timestamp: Timestamp) {
        let key = self.key;
        self.wheel(domain).delete(key, timestamp);
    }

    /// The current key's pending timers in `domain`, ascending.
    pub fn timers(&mut self, domain: TimeDomain) -> Vec<Timestamp> {
        let key = self.key;
        self.wheel(domain).timers_for_key(key)
    }

    /// How many timers the current key has pending in `domain`.
    pub fn count(&mut self, domain: TimeDomain) -> usize {
        let key = self.key;
        self.wheel(domain).count_for_key(key)
    }

    /// Deletes every pending timer of the current key in `domain`; returns how many there were.
    pub fn delete_all(&mut self, domain: TimeDomain) -> usize {
        let key = self.key;
        self.wheel(domain).delete_all_for_key(key)
    }
}
