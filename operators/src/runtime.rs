//! Operator instances: a user function with its keys, state, timers and outputs, driven by
//! elements, watermarks and processing time.
//!
//! [`KeyedOperator`] is what runs on a shard and what the test harness drives: the same code. Its
//! event loop is Flink's (SEMANTICS C3):
//!
//! ```text
//! element(key, v, ts):   key id = intern(key); fn.process_element(v, ctx{key, ts, wm})
//! watermark(W):          drop unless W > current (counted); current = W
//!                        while a timer <= W is pending: pop the earliest; fn.on_timer(...)   (re-peek each time)
//!                        forward W on the main output and every side output
//! processing_time(T):    while a processing-time timer <= T is pending: pop; fn.on_timer(...)
//! end_of_input():        watermark(MAX); then drop or fire pending processing-time timers; close
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use pinwheel_engine::key::{KeyId, KeyInterner};
use pinwheel_engine::state::{StateRegistry, StateScope};
use pinwheel_engine::time::{MAX_WATERMARK, MIN_WATERMARK, TimeDomain, Timestamp};
use pinwheel_engine::timer::{RegistrationMark, Timer, TimerWheel};

use crate::context::{
    Context, KeyedTimers, OnTimerContext, OpenContext, ProcessContext, ShardInfo, TimerService,
};
use crate::error::{CapacityError, FnError, Phase, PipelineError};
use crate::function::{KeyedProcessFunction, ProcessFunction};
use crate::output::{Collector, SideOutputs, StreamElement};
use crate::semantics::{EndOfInputTimers, Semantics};

/// How many rows the TTL sweep visits per processing-time advance.
const TTL_SWEEP_BUDGET: usize = 64;

/// Counters of one operator instance. Plain integers on the shard; read them between steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperatorMetrics {
    /// Elements processed.
    pub records_in: u64,
    /// Elements whose timestamp was at or below the watermark when they arrived (they are still
    /// processed: SEMANTICS A2.9).
    pub late_records: u64,
    /// Watermarks dropped because they did not advance the operator's watermark (A2.3).
    pub watermarks_dropped: u64,
    /// Event-time timers fired.
    pub event_timers_fired: u64,
    /// Processing-time timers fired.
    pub processing_timers_fired: u64,
    /// Processing-time timers dropped at the end of input ([`EndOfInputTimers::Drop`]).
    pub processing_timers_dropped_at_end: u64,
    /// Event-time timers still pending when the operator finished (registered after the final
    /// watermark, so they can never fire).
    pub event_timers_never_fired: u64,
    /// Timer registrations ignored because the operator had already finished.
    pub timers_ignored_after_end: u64,
    /// Expired TTL state rows removed by the background sweep.
    pub ttl_rows_swept: u64,
}

/// Records between the prefetch of a key's slot and the prefetch of its rows (see
/// [`KeyedOperator::push_record`]).
pub const SLOT_AHEAD: usize = 8;
/// Records between the prefetch of a key's rows and the record's processing.
pub const DATA_AHEAD: usize = 8;
/// Records in flight in the prefetch pipeline.
pub const PIPELINE_DEPTH: usize = SLOT_AHEAD + DATA_AHEAD;

/// A record in the prefetch pipeline of [`KeyedOperator::push_record`]: its key, the key's hash
/// ([`KeyedOperator::key_hash`]), its value and timestamp.
#[derive(Debug)]
pub struct KeyedRecord<K, V> {
    /// The key.
    pub key: K,
    /// [`KeyedOperator::key_hash`] of the key.
    pub hash: u64,
    /// The record.
    pub value: V,
    /// Its timestamp, if it has one.
    pub timestamp: Option<Timestamp>,
}

/// Detects timers that keep re-firing within one advance (SEMANTICS A1.10, A9.5): `on_timer`
/// re-registering the timestamp being fired (or several keys doing it in turn) fires again at once,
/// forever. Within one firing loop it counts how often each timer that was *registered during the
/// loop* fires; timers registered before the loop are not tracked, so a burst of millions of timers
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
    #[inline]
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
/// advance. It runs in chunks ([`KeyedOperator::continue_advance`]), so that a burst of millions of
/// timers streams its outputs downstream instead of buffering them all.
#[derive(Debug)]
struct Advance {
    domain: TimeDomain,
    until: Timestamp,
    guard: RefireGuard,
}

/// A keyed process function at work: its keys, keyed state, two timer wheels and side outputs.
pub struct KeyedOperator<F: KeyedProcessFunction> {
    function: F,
    name: Arc<str>,
    shard: ShardInfo,
    semantics: Semantics,
    keys: KeyInterner<F::Key>,
    event_timers: TimerWheel,
    processing_timers: TimerWheel,
    state: StateRegistry,
    /// The prefetch pipeline: records taken but not yet processed.
    pending: VecDeque<KeyedRecord<F::Key, F::In>>,
    /// The firing loop in progress, if any.
    advance: Option<Advance>,
    side: SideOutputs,
    watermark: Timestamp,
    processing_time: Timestamp,
    finished: bool,
    metrics: OperatorMetrics,
}

impl<F: KeyedProcessFunction> std::fmt::Debug for KeyedOperator<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedOperator")
            .field("name", &self.name)
            .field("shard", &self.shard)
            .field("keys", &self.keys.len())
            .field("event_timers", &self.event_timers.len())
            .field("processing_timers", &self.processing_timers.len())
            .field("watermark", &self.watermark)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl<F: KeyedProcessFunction> KeyedOperator<F> {
    /// Builds the operator and runs the function's `open`.
    pub fn new(
        mut function: F,
        name: impl Into<Arc<str>>,
        shard: ShardInfo,
        semantics: Semantics,
        processing_time: Timestamp,
    ) -> Result<Self, PipelineError> {
        let name = name.into();
        let mut state = StateRegistry::new();
        let mut ctx = OpenContext { registry: Some(&mut state), shard, operator: &name };
        function.open(&mut ctx).map_err(|source| PipelineError::Function {
            operator: name.clone(),
            shard: shard.index,
            phase: Phase::Open,
            source,
        })?;
        Ok(KeyedOperator {
            function,
            name,
            shard,
            semantics,
            keys: KeyInterner::new(),
            event_timers: TimerWheel::new(),
            processing_timers: TimerWheel::new(),
            state,
            pending: VecDeque::with_capacity(PIPELINE_DEPTH + 1),
            advance: None,
            side: SideOutputs::default(),
            watermark: MIN_WATERMARK,
            processing_time,
            finished: false,
            metrics: OperatorMetrics::default(),
        })
    }

    fn fn_error(&self, phase: Phase, source: FnError) -> PipelineError {
        PipelineError::Function {
            operator: self.name.clone(),
            shard: self.shard.index,
            phase,
            source,
        }
    }

    fn capacity_error(&self, source: CapacityError) -> PipelineError {
        PipelineError::Capacity { operator: self.name.clone(), shard: self.shard.index, source }
    }

    /// Processes one element of key `key`.
    #[inline]
    pub fn process_element(
        &mut self,
        key: F::Key,
        value: F::In,
        timestamp: Option<Timestamp>,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        let hash = self.keys.hash(&key);
        self.process_hashed(key, hash, value, timestamp, out)
    }

    /// The key's hash in this operator's key table, for a [`KeyedRecord`].
    #[inline]
    pub fn key_hash(&self, key: &F::Key) -> u64 {
        self.keys.hash(key)
    }

    /// Takes a record into the prefetch pipeline; processes the record that entered
    /// [`PIPELINE_DEPTH`] records earlier, if any. Call [`flush`](Self::flush) before any other
    /// input (a watermark, processing time, the end of input) and whenever the input pauses.
    ///
    /// With millions of keys, the memory a record touches (its key's slot in the key table, the
    /// stored key, its rows in every state column, its timer records) is in DRAM, about 100 ns
    /// away. The pipeline overlaps those accesses across records: on entry, the key's slot is
    /// prefetched; [`SLOT_AHEAD`] records later the slot is read, which names the key's id
    /// (almost always), and the key's rows are prefetched; [`DATA_AHEAD`] records after that the
    /// record is processed, its memory in cache. The results are exactly those of calling
    /// [`process_element`](Self::process_element) for each record in order.
    #[inline]
    pub fn push_record(
        &mut self,
        record: KeyedRecord<F::Key, F::In>,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        self.keys.prefetch_slot(record.hash);
        self.pending.push_back(record);
        let n = self.pending.len();
        if n > SLOT_AHEAD {
            if let Some(id) = self.keys.candidate(self.pending[n - 1 - SLOT_AHEAD].hash) {
                self.prefetch_key_data(id);
            }
            if n > PIPELINE_DEPTH {
                let r = self.pending.pop_front().expect("n > 0");
                self.process_hashed(r.key, r.hash, r.value, r.timestamp, out)?;
            }
        }
        Ok(())
    }

    /// Processes every record still in the prefetch pipeline, in order.
    pub fn flush(&mut self, out: &mut Vec<StreamElement<F::Out>>) -> Result<(), PipelineError> {
        let n = self.pending.len();
        if n == 0 {
            return Ok(());
        }
        for r in self.pending.range(n.saturating_sub(SLOT_AHEAD)..) {
            if let Some(id) = self.keys.candidate(r.hash) {
                self.prefetch_key_data(id);
            }
        }
        while let Some(r) = self.pending.pop_front() {
            self.process_hashed(r.key, r.hash, r.value, r.timestamp, out)?;
        }
        self.state.refresh_prefetch();
        Ok(())
    }

    /// Prefetches what touching key `id` reads: the stored key, its state rows, its timer records.
    #[inline]
    fn prefetch_key_data(&self, id: KeyId) {
        self.keys.prefetch_key(id);
        self.state.prefetch_row(id);
        self.event_timers.prefetch_key(id);
        self.processing_timers.prefetch_key(id);
    }

    /// [`process_element`](Self::process_element) with the key's hash known.
    #[inline]
    fn process_hashed(
        &mut self,
        key: F::Key,
        hash: u64,
        value: F::In,
        timestamp: Option<Timestamp>,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        let key_id = match self.keys.intern_hashed(key, hash) {
            Ok(id) => id,
            Err(e) => return Err(self.capacity_error(e.into())),
        };
        if key_id.is_power_of_two() {
            // A new key whose row may have made the columns reallocate (they double): re-read
            // where they are, for the prefetches.
            self.state.refresh_prefetch();
        }
        self.metrics.records_in += 1;
        if matches!(timestamp, Some(ts) if ts <= self.watermark) {
            self.metrics.late_records += 1;
        }
        let mut ctx = Context {
            keys: self.keys.keys(),
            scope: StateScope::new(key_id, self.processing_time, self.state.id()),
            timestamp,
            side_timestamp: self.semantics.side_ts_for_element(timestamp),
            timers: TimerService {
                timers: Some(KeyedTimers {
                    event: &mut self.event_timers,
                    processing: &mut self.processing_timers,
                    key: key_id,
                    accepting: !self.finished,
                    ignored: &mut self.metrics.timers_ignored_after_end,
                }),
                watermark: self.watermark,
                processing_time: self.processing_time,
            },
            side: &mut self.side,
        };
        let mut collector = Collector::new(out, timestamp);
        match self.function.process_element(value, &mut ctx, &mut collector) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fn_error(Phase::ProcessElement, e)),
        }
    }

    /// Advances event time to `watermark`: fires every event-time timer `<= watermark`, then
    /// forwards the watermark to the main output and every side output. A watermark that does not
    /// advance the operator's watermark is dropped and counted; returns whether it advanced.
    ///
    /// This fires every due timer in one call; the pipeline uses
    /// [`begin_watermark`](Self::begin_watermark) and [`continue_advance`](Self::continue_advance)
    /// instead, so that a burst streams its outputs.
    pub fn process_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<bool, PipelineError> {
        if !self.begin_watermark(watermark) {
            return Ok(false);
        }
        while !self.continue_advance(usize::MAX, out)? {}
        Ok(true)
    }

    /// Starts advancing event time to `watermark` (the timers fire in
    /// [`continue_advance`](Self::continue_advance), then the watermark is forwarded). A watermark
    /// that does not advance the operator's watermark is dropped and counted, and `false`
    /// returned. Nothing else may reach the operator until the advance is complete: an advance
    /// is atomic with respect to the operator's inputs, as in Flink (SEMANTICS A2.2, A2.11).
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

    /// Fires up to `budget` timers of the advance in progress. When no due timer is left, it
    /// completes the advance (an event-time advance forwards its watermark to every output) and
    /// returns `true`; it also returns `true` when no advance is in progress.
    ///
    /// Timers registered by `on_timer` at or before the advance's time fire in the same advance
    /// (SEMANTICS A1.10), whatever chunk they fall in.
    pub fn continue_advance(
        &mut self,
        budget: usize,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<bool, PipelineError> {
        let Some(mut advance) = self.advance.take() else {
            return Ok(true);
        };
        self.state.refresh_prefetch();
        for _ in 0..budget {
            let wheel = match advance.domain {
                TimeDomain::EventTime => &mut self.event_timers,
                TimeDomain::ProcessingTime => &mut self.processing_timers,
            };
            let Some(timer) = wheel.poll(advance.until) else {
                if advance.domain == TimeDomain::EventTime {
                    out.push(StreamElement::Watermark(advance.until));
                    self.side.push_watermark(advance.until);
                }
                return Ok(true);
            };
            let ahead = wheel.upcoming_key();
            let refires = advance.guard.fired(wheel, timer);
            if let Some(ahead) = ahead {
                self.prefetch_fire_data(ahead);
            }
            self.fire(timer, advance.domain, refires, out)?;
        }
        self.advance = Some(advance);
        Ok(false)
    }

    /// True while an advance started by [`begin_watermark`](Self::begin_watermark) or
    /// [`begin_processing_time`](Self::begin_processing_time) has timers left to fire.
    pub fn is_advancing(&self) -> bool {
        self.advance.is_some()
    }

    /// Forwards an idle status: every input of this operator is idle.
    pub fn process_idle(&mut self, out: &mut Vec<StreamElement<F::Out>>) {
        out.push(StreamElement::Idle);
        self.side.push_idle();
    }

    /// Advances processing time to `now` (never backwards) and fires every processing-time timer
    /// `<= now`. Also sweeps a few rows of TTL state.
    pub fn advance_processing_time(
        &mut self,
        now: Timestamp,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        self.begin_processing_time(now);
        while !self.continue_advance(usize::MAX, out)? {}
        Ok(())
    }

    /// Moves processing time to `now` (never backwards), sweeps a few rows of TTL state, and
    /// starts an advance if a processing-time timer may be due (fired by
    /// [`continue_advance`](Self::continue_advance)).
    pub fn begin_processing_time(&mut self, now: Timestamp) {
        debug_assert!(self.advance.is_none(), "an advance is already in progress");
        self.processing_time = self.processing_time.max(now);
        let now = self.processing_time;
        if self.processing_timers.next_due_at_least().is_some_and(|t| t <= now) {
            self.advance = Some(Advance {
                domain: TimeDomain::ProcessingTime,
                until: now,
                guard: RefireGuard::new(&self.processing_timers),
            });
        }
        self.metrics.ttl_rows_swept += self.state.cleanup_expired(now, TTL_SWEEP_BUDGET) as u64;
    }

    /// When the shard must wake up next for a processing-time timer: no later than the earliest
    /// pending one (possibly earlier, which only costs a poll that fires nothing).
    pub fn next_processing_timer(&self) -> Option<Timestamp> {
        self.processing_timers.next_due_at_least()
    }

    /// Ends the input: the final watermark `i64::MAX` fires every event-time timer (and those they
    /// register); then pending processing-time timers are dropped or fired as
    /// [`Semantics::end_of_input_timers`] says; then `close` runs. Later calls do nothing.
    pub fn end_of_input(
        &mut self,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        if self.finished {
            return Ok(());
        }
        if self.watermark < MAX_WATERMARK {
            self.process_watermark(MAX_WATERMARK, out)?;
        }
        // From here on, registrations are ignored (SEMANTICS A6.4: a timer registered after the
        // final watermark never fires; Flink quiesces the processing-time service).
        self.finished = true;
        match self.semantics.end_of_input_timers {
            EndOfInputTimers::Drop => {
                self.metrics.processing_timers_dropped_at_end +=
                    self.processing_timers.len() as u64;
                self.processing_timers.clear();
            }
            EndOfInputTimers::Fire => {
                let mut guard = RefireGuard::new(&self.processing_timers);
                while let Some(timer) = self.processing_timers.poll(Timestamp::MAX) {
                    let refires = guard.fired(&self.processing_timers, timer);
                    self.fire(timer, TimeDomain::ProcessingTime, refires, out)?;
                }
            }
        }
        self.metrics.event_timers_never_fired += self.event_timers.len() as u64;
        self.event_timers.clear();
        self.function.close().map_err(|e| self.fn_error(Phase::Close, e))
    }

    /// Prefetches what firing a timer of key `id` reads: the stored key and its state rows (the
    /// timer store has prefetched its own record).
    #[inline]
    fn prefetch_fire_data(&self, id: KeyId) {
        self.keys.prefetch_key(id);
        self.state.prefetch_row(id);
    }

    fn fire(
        &mut self,
        timer: Timer,
        domain: TimeDomain,
        refires: u32,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        if self.semantics.max_timer_refires.is_some_and(|max| refires > max) {
            return Err(PipelineError::TimerLoop {
                operator: self.name.clone(),
                shard: self.shard.index,
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
        // The key itself is read only if the function asks for it (`current_key`).
        let mut ctx = OnTimerContext {
            ctx: Context {
                keys: self.keys.keys(),
                scope: StateScope::new(timer.key, self.processing_time, self.state.id()),
                timestamp: Some(timer.timestamp),
                side_timestamp: self.semantics.side_ts_for_timer(timer.timestamp, domain),
                timers: TimerService {
                    timers: Some(KeyedTimers {
                        event: &mut self.event_timers,
                        processing: &mut self.processing_timers,
                        key: timer.key,
                        accepting: !self.finished,
                        ignored: &mut self.metrics.timers_ignored_after_end,
                    }),
                    watermark: self.watermark,
                    processing_time: self.processing_time,
                },
                side: &mut self.side,
            },
            domain,
        };
        let out_ts = match domain {
            TimeDomain::EventTime => Some(timer.timestamp),
            TimeDomain::ProcessingTime => None,
        };
        let mut collector = Collector::new(out, out_ts);
        match self.function.on_timer(timer.timestamp, &mut ctx, &mut collector) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fn_error(Phase::OnTimer(domain), e)),
        }
    }

    /// The operator's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current event-time watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The current processing time.
    pub fn current_processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// The counters.
    pub fn metrics(&self) -> &OperatorMetrics {
        &self.metrics
    }

    /// Pending event-time timers, all keys.
    pub fn num_event_time_timers(&self) -> usize {
        self.event_timers.len()
    }

    /// Pending processing-time timers, all keys.
    pub fn num_processing_time_timers(&self) -> usize {
        self.processing_timers.len()
    }

    /// (state, key) pairs holding a value.
    pub fn num_keyed_state_entries(&self) -> usize {
        self.state.num_entries()
    }

    /// Distinct keys seen.
    pub fn num_keys(&self) -> usize {
        self.keys.len()
    }

    fn key_id(&self, key: &F::Key) -> Option<KeyId> {
        self.keys.get(key)
    }

    /// The pending timers of `key` in `domain`, ascending.
    pub fn timers_of(&self, key: &F::Key, domain: TimeDomain) -> Vec<Timestamp> {
        let Some(id) = self.key_id(key) else { return Vec::new() };
        match domain {
            TimeDomain::EventTime => self.event_timers.timers_for_key(id),
            TimeDomain::ProcessingTime => self.processing_timers.timers_for_key(id),
        }
    }

    /// The side outputs.
    pub fn side_outputs(&mut self) -> &mut SideOutputs {
        &mut self.side
    }

    /// The user function.
    pub fn function(&self) -> &F {
        &self.function
    }

    /// The user function, mutably.
    pub fn function_mut(&mut self) -> &mut F {
        &mut self.function
    }

    /// Approximate heap bytes held by keys' timers and state (not the interned keys themselves).
    pub fn memory_bytes(&self) -> usize {
        self.event_timers.memory_bytes()
            + self.processing_timers.memory_bytes()
            + self.state.memory_bytes()
    }

    /// True once `end_of_input` has run.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// A non-keyed process function at work.
pub struct ProcessOperator<F: ProcessFunction> {
    function: F,
    name: Arc<str>,
    shard: ShardInfo,
    semantics: Semantics,
    side: SideOutputs,
    watermark: Timestamp,
    processing_time: Timestamp,
    finished: bool,
    metrics: OperatorMetrics,
}

impl<F: ProcessFunction> std::fmt::Debug for ProcessOperator<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessOperator")
            .field("name", &self.name)
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

impl<F: ProcessFunction> ProcessOperator<F> {
    /// Builds the operator and runs `open`.
    pub fn new(
        mut function: F,
        name: impl Into<Arc<str>>,
        shard: ShardInfo,
        semantics: Semantics,
        processing_time: Timestamp,
    ) -> Result<Self, PipelineError> {
        let name = name.into();
        let mut ctx = OpenContext { registry: None, shard, operator: &name };
        function.open(&mut ctx).map_err(|source| PipelineError::Function {
            operator: name.clone(),
            shard: shard.index,
            phase: Phase::Open,
            source,
        })?;
        Ok(ProcessOperator {
            function,
            name,
            shard,
            semantics,
            side: SideOutputs::default(),
            watermark: MIN_WATERMARK,
            processing_time,
            finished: false,
            metrics: OperatorMetrics::default(),
        })
    }

    /// Processes one element.
    #[inline]
    pub fn process_element(
        &mut self,
        value: F::In,
        timestamp: Option<Timestamp>,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        self.metrics.records_in += 1;
        if matches!(timestamp, Some(ts) if ts <= self.watermark) {
            self.metrics.late_records += 1;
        }
        let mut ctx = ProcessContext {
            timestamp,
            side_timestamp: self.semantics.side_ts_for_element(timestamp),
            timers: TimerService {
                timers: None,
                watermark: self.watermark,
                processing_time: self.processing_time,
            },
            side: &mut self.side,
        };
        let mut collector = Collector::new(out, timestamp);
        self.function.process_element(value, &mut ctx, &mut collector).map_err(|source| {
            PipelineError::Function {
                operator: self.name.clone(),
                shard: self.shard.index,
                phase: Phase::ProcessElement,
                source,
            }
        })
    }

    /// Forwards a watermark if it advances this operator's watermark.
    pub fn process_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> bool {
        if watermark <= self.watermark {
            self.metrics.watermarks_dropped += 1;
            return false;
        }
        self.watermark = watermark;
        out.push(StreamElement::Watermark(watermark));
        self.side.push_watermark(watermark);
        true
    }

    /// Forwards an idle status.
    pub fn process_idle(&mut self, out: &mut Vec<StreamElement<F::Out>>) {
        out.push(StreamElement::Idle);
        self.side.push_idle();
    }

    /// Moves processing time forward.
    pub fn advance_processing_time(&mut self, now: Timestamp) {
        self.processing_time = self.processing_time.max(now);
    }

    /// Ends the input: forwards `i64::MAX` and runs `close`.
    pub fn end_of_input(
        &mut self,
        out: &mut Vec<StreamElement<F::Out>>,
    ) -> Result<(), PipelineError> {
        if self.finished {
            return Ok(());
        }
        if self.watermark < MAX_WATERMARK {
            self.process_watermark(MAX_WATERMARK, out);
        }
        self.finished = true;
        self.function.close().map_err(|source| PipelineError::Function {
            operator: self.name.clone(),
            shard: self.shard.index,
            phase: Phase::Close,
            source,
        })
    }

    /// The current watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The counters.
    pub fn metrics(&self) -> &OperatorMetrics {
        &self.metrics
    }

    /// The side outputs.
    pub fn side_outputs(&mut self) -> &mut SideOutputs {
        &mut self.side
    }

    /// The user function.
    pub fn function(&self) -> &F {
        &self.function
    }
}
