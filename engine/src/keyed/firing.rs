//! The firing loop: an advance of event time to a watermark, or of processing time, fired in
//! chunks, with the guard against timers that re-fire forever.

use std::collections::HashMap;

use super::{KeyContext, KeyedBackend};
use crate::key::Key;
use crate::state::rows_emptied;
use crate::time::{MAX_WATERMARK, TimeDomain, Timestamp};
use crate::timer::{RegistrationMark, Timer, TimerWheel};

/// What a step of an advance came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum AdvanceStep {
    /// Timers are left to fire: call [`KeyedBackend::continue_advance`] again (after handing on
    /// the outputs so far) before anything else reaches the backend.
    InProgress,
    /// No advance is in progress any more. `watermark` is the watermark to forward when the
    /// advance that just completed was an event-time one: every timer `<=` it has fired.
    Complete {
        /// The watermark to forward, if an event-time advance completed.
        watermark: Option<Timestamp>,
    },
}

/// Why firing stopped.
#[derive(Debug)]
pub enum FireError<E> {
    /// The callback failed.
    Callback(E),
    /// A timer kept re-registering the timestamp it fired at (docs/semantics.md A1.10, S09).
    TimerLoop {
        /// The looping timer's domain.
        domain: TimeDomain,
        /// The looping timer's timestamp.
        timestamp: Timestamp,
        /// Its key, formatted with `Debug`.
        key: String,
        /// How many times it fired in the advance.
        refires: u32,
    },
}

/// Detects timers that keep re-firing within one advance (A1.10, A9.5): `on_timer` re-registering
/// the timestamp being fired (or several keys doing it in turn) fires again at once, forever.
/// Within one firing loop it counts how often each timer that was *registered during the loop*
/// fires; timers registered before the loop are not tracked, so a burst of millions of timers
/// costs nothing here.
#[derive(Debug)]
struct RefireGuard {
    mark: RegistrationMark,
    counts: HashMap<Timer, u32>,
}

impl RefireGuard {
    /// A guard for a firing loop over `wheel` that starts now.
    fn new(wheel: &TimerWheel) -> Self {
        RefireGuard { mark: wheel.registration_mark(), counts: HashMap::new() }
    }

    /// Records that `wheel` just fired `t`; returns how many times `t` fired again within this
    /// loop after being registered during it (0 for a timer registered before the loop).
    #[inline(always)]
    fn fired(&mut self, wheel: &TimerWheel, t: Timer) -> u32 {
        if !wheel.last_fired_registered_since(self.mark) {
            return 0;
        }
        let count = self.counts.entry(t).or_insert(0);
        *count += 1;
        *count
    }
}

/// A firing loop in progress: an event-time advance to a watermark, or a processing-time
/// advance.
#[derive(Debug)]
pub(super) struct Advance {
    domain: TimeDomain,
    until: Timestamp,
    guard: RefireGuard,
}

impl<K: Key> KeyedBackend<K> {
    /// Starts advancing event time to `watermark`; the timers fire in
    /// [`continue_advance`](Self::continue_advance), which then reports the watermark for
    /// forwarding. A watermark that does not advance the backend's watermark is dropped and
    /// counted, and `false` returned (A2.3).
    pub fn begin_watermark(&mut self, watermark: Timestamp) -> bool {
        debug_assert!(self.advance.is_none(), "an advance is already in progress");
        if watermark <= self.watermark {
            self.metrics.watermarks_dropped += 1;
            return false;
        }
        self.watermark = watermark;
        self.advance = Some(Advance {
            domain: TimeDomain::EventTime,
            until: watermark,
            guard: RefireGuard::new(&self.event_timers),
        });
        true
    }

    /// Moves processing time to `now` (never backwards), sweeps a few rows of TTL state, and
    /// starts an advance if a processing-time timer may be due; the timers fire in
    /// [`continue_advance`](Self::continue_advance). Timers due at the current time fire whether
    /// or not the clock moved (a timer registered at or before the current time fires as soon as
    /// the current callback is done, A1.6).
    pub fn begin_processing_time(&mut self, now: Timestamp) {
        debug_assert!(self.advance.is_none(), "an advance is already in progress");
        self.set_processing_time(now);
        let now = self.processing_time;
        if self.processing_timers.next_due_at_least().is_some_and(|t| t <= now) {
            self.advance = Some(Advance {
                domain: TimeDomain::ProcessingTime,
                until: now,
                guard: RefireGuard::new(&self.processing_timers),
            });
        }
    }

    /// True while an advance has timers left to fire.
    pub fn is_advancing(&self) -> bool {
        self.advance.is_some()
    }

    /// The time domain of the advance in progress, if any.
    pub fn advancing(&self) -> Option<TimeDomain> {
        self.advance.as_ref().map(|a| a.domain)
    }

    /// Fires up to `budget` timers of the advance in progress, each through `fire(key context,
    /// timer, domain)`. Timers registered by the callbacks at or before the advance's time fire
    /// in the same advance, whatever chunk they fall in.
    pub fn continue_advance<E>(
        &mut self,
        budget: usize,
        mut fire: impl FnMut(KeyContext<'_, K>, Timer, TimeDomain) -> Result<(), E>,
    ) -> Result<AdvanceStep, FireError<E>> {
        let Some(mut advance) = self.advance.take() else {
            return Ok(AdvanceStep::Complete { watermark: None });
        };
        self.state.refresh_prefetch();
        for _ in 0..budget {
            let wheel = match advance.domain {
                TimeDomain::EventTime => &mut self.event_timers,
                TimeDomain::ProcessingTime => &mut self.processing_timers,
            };
            let Some(timer) = wheel.poll(advance.until) else {
                let watermark = (advance.domain == TimeDomain::EventTime).then_some(advance.until);
                return Ok(AdvanceStep::Complete { watermark });
            };
            let ahead = wheel.upcoming_key();
            let refires = advance.guard.fired(wheel, timer);
            if let Some(ahead) = ahead {
                // The timer store prefetched its own record of that key; the key and its state
                // rows are the callback's.
                self.keys.prefetch_key(ahead);
                self.state.prefetch_row(ahead);
            }
            // On an error the advance is abandoned with it: the operator stops.
            self.fire_one(timer, advance.domain, refires, &mut fire)?;
        }
        self.advance = Some(advance);
        Ok(AdvanceStep::InProgress)
    }

    /// Runs the callback of one timer, after the re-fire check.
    #[inline]
    fn fire_one<E>(
        &mut self,
        timer: Timer,
        domain: TimeDomain,
        refires: u32,
        fire: &mut impl FnMut(KeyContext<'_, K>, Timer, TimeDomain) -> Result<(), E>,
    ) -> Result<(), FireError<E>> {
        if self.settings.max_timer_refires.is_some_and(|max| refires > max) {
            return Err(FireError::TimerLoop {
                domain,
                timestamp: timer.timestamp,
                key: self.keys.key(timer.key).map_or_else(String::new, |k| format!("{k:?}")),
                refires,
            });
        }
        match domain {
            TimeDomain::EventTime => self.metrics.event_timers_fired += 1,
            TimeDomain::ProcessingTime => self.metrics.processing_timers_fired += 1,
        }
        let emptied = rows_emptied();
        let cx = self.context(timer.key, Some((domain, timer.timestamp)));
        fire(cx, timer, domain).map_err(FireError::Callback)?;
        // Firing took a timer away: the key is empty if that was its last and it has no state.
        // Its state can only have gone if the callback emptied a row (a key with state that a
        // callback leaves alone keeps it), unless the operator keeps no state at all.
        let maybe_empty = rows_emptied() != emptied || self.state.is_stateless();
        self.release_if_empty(timer.key, maybe_empty);
        Ok(())
    }

    /// Finishes the operator, once the final watermark `i64::MAX` has fired every event-time
    /// timer: from here on registrations are ignored (A6.4: a timer registered after the final
    /// watermark never fires); pending processing-time timers are dropped and counted (Flink's
    /// rule, A6.3), or, with `fire_processing_timers`, fired in timestamp order through `fire`
    /// (FLINK-18647); event-time timers still pending are counted as never fired. Later calls
    /// do nothing.
    pub fn finish<E>(
        &mut self,
        fire_processing_timers: bool,
        mut fire: impl FnMut(KeyContext<'_, K>, Timer, TimeDomain) -> Result<(), E>,
    ) -> Result<(), FireError<E>> {
        debug_assert!(self.advance.is_none(), "finish during an advance");
        if self.finished {
            return Ok(());
        }
        debug_assert_eq!(self.watermark, MAX_WATERMARK, "finish before the final watermark");
        self.finished = true;
        if fire_processing_timers {
            let mut guard = RefireGuard::new(&self.processing_timers);
            while let Some(timer) = self.processing_timers.poll(Timestamp::MAX) {
                let refires = guard.fired(&self.processing_timers, timer);
                self.fire_one(timer, TimeDomain::ProcessingTime, refires, &mut fire)?;
            }
        } else {
            self.metrics.processing_timers_dropped_at_end += self.processing_timers.len() as u64;
            self.processing_timers.clear();
        }
        self.metrics.event_timers_never_fired += self.event_timers.len() as u64;
        self.event_timers.clear();
        Ok(())
    }
}
