//! The contexts handed to process functions: the element's timestamp, the timer service, side
//! outputs, the current key and (through [`KeyedScope`]) keyed state.

use std::ops::{Deref, DerefMut};

use pinwheel_engine::keyed::{KeyContext, KeyTimers};
use pinwheel_engine::state::{
    AggregateFunction, AggregatingState, AggregatingStateDescriptor, KeyedScope, ListState,
    ListStateDescriptor, MapState, MapStateDescriptor, ReducingState, ReducingStateDescriptor,
    StateError, StateRegistry, StateScope, StateValue, ValueState, ValueStateDescriptor,
};
use pinwheel_engine::time::{TimeDomain, Timestamp};

use crate::error::TimerServiceError;
use crate::output::{OutputTag, SideOutputs};
use crate::semantics::{Origin, SideOutputTimestamps};

/// Which shard an operator instance runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShardInfo {
    /// This shard's index, from 0.
    pub index: usize,
    /// How many shards run the operator.
    pub count: usize,
}

/// Handed to `open`: declare keyed state here.
#[derive(Debug)]
pub struct OpenContext<'a> {
    pub(crate) registry: Option<&'a mut StateRegistry>,
    pub(crate) shard: ShardInfo,
    pub(crate) operator: &'a str,
}

impl ShardInfo {
    /// Shard `index` of `count`.
    pub fn new(index: usize, count: usize) -> Self {
        ShardInfo { index, count }
    }
}

impl OpenContext<'_> {
    /// The shard this instance of the function runs on.
    pub fn shard(&self) -> ShardInfo {
        self.shard
    }

    /// The operator's name.
    pub fn operator_name(&self) -> &str {
        self.operator
    }

    fn registry(&mut self) -> Result<&mut StateRegistry, StateError> {
        self.registry.as_deref_mut().ok_or(StateError::NoKeyedContext)
    }

    /// Declares a [`ValueState`]. Declaring the same name again returns the same state.
    pub fn value_state<T: StateValue>(
        &mut self,
        descriptor: ValueStateDescriptor<T>,
    ) -> Result<ValueState<T>, StateError> {
        self.registry()?.value_state(descriptor)
    }

    /// Declares a [`ListState`].
    pub fn list_state<T: StateValue>(
        &mut self,
        descriptor: ListStateDescriptor<T>,
    ) -> Result<ListState<T>, StateError> {
        self.registry()?.list_state(descriptor)
    }

    /// Declares a [`MapState`].
    pub fn map_state<K, V>(
        &mut self,
        descriptor: MapStateDescriptor<K, V>,
    ) -> Result<MapState<K, V>, StateError>
    where
        K: Eq + std::hash::Hash + StateValue,
        V: StateValue,
    {
        self.registry()?.map_state(descriptor)
    }

    /// Declares a [`ReducingState`].
    pub fn reducing_state<T: StateValue>(
        &mut self,
        descriptor: ReducingStateDescriptor<T>,
    ) -> Result<ReducingState<T>, StateError> {
        self.registry()?.reducing_state(descriptor)
    }

    /// Declares an [`AggregatingState`].
    pub fn aggregating_state<A: AggregateFunction + 'static>(
        &mut self,
        descriptor: AggregatingStateDescriptor<A>,
    ) -> Result<AggregatingState<A>, StateError>
    where
        A::Acc: StateValue,
    {
        self.registry()?.aggregating_state(descriptor)
    }
}

/// Flink's `TimerService`: the current times, and timers for the current key.
///
/// A timer is unique per (key, timestamp) in each domain: registering it again does nothing, and
/// `on_timer` is called once. Timestamps are not validated: a timer at or below the current
/// watermark fires at the next watermark advance, a processing-time timer at or before the current
/// time fires as soon as the current callback returns (docs/semantics.md A1.6). Beyond Flink, the current
/// key's pending timers can be listed, counted and deleted all at once (FLINK-8322).
///
/// In a non-keyed function every timer method returns [`TimerServiceError::NotKeyed`].
#[derive(Debug)]
pub struct TimerService<'a> {
    timers: Option<KeyTimers<'a>>,
    watermark: Timestamp,
    processing_time: Timestamp,
}

impl<'a> TimerService<'a> {
    /// The timer service of a keyed callback.
    #[inline]
    fn keyed_service(timers: KeyTimers<'a>) -> Self {
        TimerService {
            watermark: timers.watermark(),
            processing_time: timers.processing_time(),
            timers: Some(timers),
        }
    }

    /// The timer service of a non-keyed callback: times only.
    pub(crate) fn times_only(watermark: Timestamp, processing_time: Timestamp) -> Self {
        TimerService { timers: None, watermark, processing_time }
    }

    /// The current processing time (epoch milliseconds; read once per loop turn).
    pub fn current_processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// The operator's current event-time watermark: `i64::MIN` before the first watermark; in an
    /// event-time `on_timer`, the watermark that fired the timer (docs/semantics.md A1.11).
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    fn keyed(&mut self) -> Result<&mut KeyTimers<'a>, TimerServiceError> {
        self.timers.as_mut().ok_or(TimerServiceError::NotKeyed)
    }

    /// Registers an event-time timer for the current key at `timestamp`.
    #[inline]
    pub fn register_event_time_timer(
        &mut self,
        timestamp: Timestamp,
    ) -> Result<(), TimerServiceError> {
        Ok(self.keyed()?.register(TimeDomain::EventTime, timestamp)?)
    }

    /// Registers a processing-time timer for the current key at `timestamp`.
    #[inline]
    pub fn register_processing_time_timer(
        &mut self,
        timestamp: Timestamp,
    ) -> Result<(), TimerServiceError> {
        Ok(self.keyed()?.register(TimeDomain::ProcessingTime, timestamp)?)
    }

    /// Deletes the current key's event-time timer at `timestamp`; a silent no-op if there is none.
    pub fn delete_event_time_timer(
        &mut self,
        timestamp: Timestamp,
    ) -> Result<(), TimerServiceError> {
        self.keyed()?.delete(TimeDomain::EventTime, timestamp);
        Ok(())
    }

    /// Deletes the current key's processing-time timer at `timestamp`; a silent no-op if there is
    /// none.
    pub fn delete_processing_time_timer(
        &mut self,
        timestamp: Timestamp,
    ) -> Result<(), TimerServiceError> {
        self.keyed()?.delete(TimeDomain::ProcessingTime, timestamp);
        Ok(())
    }

    /// The current key's pending timers in `domain`, in ascending timestamp order.
    pub fn timers(&mut self, domain: TimeDomain) -> Result<Vec<Timestamp>, TimerServiceError> {
        Ok(self.keyed()?.timers(domain))
    }

    /// How many timers the current key has pending in `domain`.
    pub fn timer_count(&mut self, domain: TimeDomain) -> Result<usize, TimerServiceError> {
        Ok(self.keyed()?.count(domain))
    }

    /// Deletes every pending timer of the current key in `domain`; returns how many there were.
    pub fn delete_all_timers(&mut self, domain: TimeDomain) -> Result<usize, TimerServiceError> {
        Ok(self.keyed()?.delete_all(domain))
    }
}

/// The context of `process_element` in a keyed function.
pub struct Context<'a, K> {
    /// Every key of the operator, by id; the current one is `keys[scope.key()]`.
    keys: &'a [K],
    scope: StateScope,
    timestamp: Option<Timestamp>,
    timers: TimerService<'a>,
    side: &'a mut SideOutputs,
    /// What the callback runs for, and the rule: the side-output timestamp follows from them.
    origin: Origin,
    side_rule: SideOutputTimestamps,
}

impl<K: std::fmt::Debug> std::fmt::Debug for Context<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("key", &self.keys[self.scope.key() as usize])
            .field("timestamp", &self.timestamp)
            .field("watermark", &self.timers.watermark)
            .field("processing_time", &self.timers.processing_time)
            .finish_non_exhaustive()
    }
}

impl<'a, K> Context<'a, K> {
    /// The context of a callback for the backend's current key.
    #[inline]
    pub(crate) fn new(
        key: KeyContext<'a, K>,
        timestamp: Option<Timestamp>,
        origin: Origin,
        side_rule: SideOutputTimestamps,
        side: &'a mut SideOutputs,
    ) -> Self {
        let KeyContext { keys, scope, timers, .. } = key;
        Context {
            keys,
            scope,
            timestamp,
            timers: TimerService::keyed_service(timers),
            side,
            origin,
            side_rule,
        }
    }

    /// The timestamp of the element being processed (`None` if it has none); in `on_timer`, the
    /// timer's timestamp, for both time domains (docs/semantics.md A1.12).
    #[inline]
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// The timer service.
    #[inline]
    pub fn timer_service(&mut self) -> &mut TimerService<'a> {
        &mut self.timers
    }

    /// The key of the element being processed, or of the timer firing.
    #[inline]
    pub fn current_key(&self) -> &K {
        &self.keys[self.scope.key() as usize]
    }

    /// Emits `value` to the side output `tag`.
    pub fn output<T: 'static>(&mut self, tag: &OutputTag<T>, value: T) {
        let ts = self.side_rule.of(self.origin, self.timestamp);
        self.side.push(tag, value, ts);
    }

    /// Shortcut for `timer_service().current_watermark()`.
    #[inline]
    pub fn current_watermark(&self) -> Timestamp {
        self.timers.watermark
    }

    /// Shortcut for `timer_service().current_processing_time()`.
    #[inline]
    pub fn current_processing_time(&self) -> Timestamp {
        self.timers.processing_time
    }
}

impl<K> KeyedScope for Context<'_, K> {
    #[inline]
    fn state_scope(&self) -> StateScope {
        self.scope
    }
}

/// The context of `on_timer`: everything [`Context`] has, plus the firing timer's domain.
#[derive(Debug)]
pub struct OnTimerContext<'a, K> {
    ctx: Context<'a, K>,
    domain: TimeDomain,
}

impl<'a, K> OnTimerContext<'a, K> {
    /// The context of `on_timer` for a timer of `domain`.
    #[inline]
    pub(crate) fn new(ctx: Context<'a, K>, domain: TimeDomain) -> Self {
        OnTimerContext { ctx, domain }
    }
}

impl<K> OnTimerContext<'_, K> {
    /// The time domain of the firing timer.
    #[inline]
    pub fn time_domain(&self) -> TimeDomain {
        self.domain
    }
}

impl<'a, K> Deref for OnTimerContext<'a, K> {
    type Target = Context<'a, K>;
    fn deref(&self) -> &Self::Target {
        &self.ctx
    }
}

impl<K> DerefMut for OnTimerContext<'_, K> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.ctx
    }
}

impl<K> KeyedScope for OnTimerContext<'_, K> {
    #[inline]
    fn state_scope(&self) -> StateScope {
        self.ctx.scope
    }
}

/// The context of a non-keyed [`ProcessFunction`](crate::ProcessFunction): the element's
/// timestamp, the current times and side outputs. It has no current key and no keyed state, and its
/// timer service refuses timers (docs/semantics.md A1.1).
#[derive(Debug)]
pub struct ProcessContext<'a> {
    timestamp: Option<Timestamp>,
    side_timestamp: Option<Timestamp>,
    timers: TimerService<'a>,
    side: &'a mut SideOutputs,
}

impl<'a> ProcessContext<'a> {
    /// The context of a non-keyed callback.
    pub(crate) fn new(
        timestamp: Option<Timestamp>,
        side_timestamp: Option<Timestamp>,
        timers: TimerService<'a>,
        side: &'a mut SideOutputs,
    ) -> Self {
        ProcessContext { timestamp, side_timestamp, timers, side }
    }

    /// The timestamp of the element being processed, if it has one.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// The timer service: times can be read, timers cannot be set.
    pub fn timer_service(&mut self) -> &mut TimerService<'a> {
        &mut self.timers
    }

    /// Emits `value` to the side output `tag`.
    pub fn output<T: 'static>(&mut self, tag: &OutputTag<T>, value: T) {
        self.side.push(tag, value, self.side_timestamp);
    }
}
