//! The contexts handed to process functions: the element's timestamp, the timer service, side
//! outputs, the current key and (through [`KeyedScope`]) keyed state.

use std::ops::{Deref, DerefMut};

use pinwheel_engine::key::KeyId;
use pinwheel_engine::state::{
    AggregateFunction, AggregatingState, AggregatingStateDescriptor, KeyedScope, ListState,
    ListStateDescriptor, MapState, MapStateDescriptor, ReducingState, ReducingStateDescriptor,
    StateError, StateRegistry, StateScope, ValueState, ValueStateDescriptor,
};
use pinwheel_engine::time::{TimeDomain, Timestamp};
use pinwheel_engine::timer::TimerWheel;

use crate::error::TimerServiceError;
use crate::output::{OutputTag, SideOutputs};

/// Which shard an operator instance runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    pub fn value_state<T: Clone + 'static>(
        &mut self,
        descriptor: ValueStateDescriptor<T>,
    ) -> Result<ValueState<T>, StateError> {
        self.registry()?.value_state(descriptor)
    }

    /// Declares a [`ListState`].
    pub fn list_state<T: Clone + 'static>(
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
        K: Eq + std::hash::Hash + Clone + 'static,
        V: Clone + 'static,
    {
        self.registry()?.map_state(descriptor)
    }

    /// Declares a [`ReducingState`].
    pub fn reducing_state<T: Clone + 'static>(
        &mut self,
        descriptor: ReducingStateDescriptor<T>,
    ) -> Result<ReducingState<T>, StateError> {
        self.registry()?.reducing_state(descriptor)
    }

    /// Declares an [`AggregatingState`].
    pub fn aggregating_state<A: AggregateFunction + 'static>(
        &mut self,
        descriptor: AggregatingStateDescriptor<A>,
    ) -> Result<AggregatingState<A>, StateError> {
        self.registry()?.aggregating_state(descriptor)
    }
}

/// The timers of the current key, as seen from a keyed context.
#[derive(Debug)]
pub(crate) struct KeyedTimers<'a> {
    pub(crate) event: &'a mut TimerWheel,
    pub(crate) processing: &'a mut TimerWheel,
    pub(crate) key: KeyId,
    /// False once the operator has finished: registrations are then ignored and counted.
    pub(crate) accepting: bool,
    pub(crate) ignored: &'a mut u64,
}

/// Flink's `TimerService`: the current times, and timers for the current key.
///
/// A timer is unique per (key, timestamp) in each domain: registering it again does nothing, and
/// `on_timer` is called once. Timestamps are not validated: a timer at or below the current
/// watermark fires at the next watermark advance, a processing-time timer at or before the current
/// time fires as soon as the current callback returns (SEMANTICS A1.6). Beyond Flink, the current
/// key's pending timers can be listed, counted and deleted all at once (FLINK-8322).
///
/// In a non-keyed function every timer method returns [`TimerServiceError::NotKeyed`].
#[derive(Debug)]
pub struct TimerService<'a> {
    pub(crate) timers: Option<KeyedTimers<'a>>,
    pub(crate) watermark: Timestamp,
    pub(crate) processing_time: Timestamp,
}

impl<'a> TimerService<'a> {
    /// The current processing time (epoch milliseconds; read once per loop turn).
    pub fn current_processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// The operator's current event-time watermark: `i64::MIN` before the first watermark; in an
    /// event-time `on_timer`, the watermark that fired the timer (SEMANTICS A1.11).
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    fn keyed(&mut self) -> Result<&mut KeyedTimers<'a>, TimerServiceError> {
        match self.timers.as_mut() {
            Some(t) => Ok(t),
            None => Err(TimerServiceError::NotKeyed),
        }
    }

    fn wheel(&mut self, domain: TimeDomain) -> Result<(&mut TimerWheel, KeyId), TimerServiceError> {
        let t = self.keyed()?;
        let key = t.key;
        Ok(match domain {
            TimeDomain::EventTime => (&mut *t.event, key),
            TimeDomain::ProcessingTime => (&mut *t.processing, key),
        })
    }

    fn register(&mut self, domain: TimeDomain, ts: Timestamp) -> Result<(), TimerServiceError> {
        let t = self.keyed()?;
        if !t.accepting {
            *t.ignored += 1;
            return Ok(());
        }
        let (wheel, key) = self.wheel(domain)?;
        wheel.register(key, ts)?;
        Ok(())
    }

    /// Registers an event-time timer for the current key at `timestamp`.
    #[inline]
    pub fn register_event_time_timer(
        &mut self,
        timestamp: Timestamp,
    ) -> Result<(), TimerServiceError> {
        self.register(TimeDomain::EventTime, timestamp)
    }

    /// Registers a processing-time timer for the current key at `timestamp`.
    #[inline]
    pub fn register_processing_time_timer(
        &mut self,
        timestamp: Timestamp,
    ) -> Result<(), TimerServiceError> {
        self.register(TimeDomain::ProcessingTime, timestamp)
    }

    /// Deletes the current key's event-time timer at `timestamp`; a silent no-op if there is none.
    pub fn delete_event_time_timer(
        &mut self,
        timestamp: Timestamp,
    ) -> Result<(), TimerServiceError> {
        let (wheel, key) = self.wheel(TimeDomain::EventTime)?;
        wheel.delete(key, timestamp);
        Ok(())
    }

    /// Deletes the current key's processing-time timer at `timestamp`; a silent no-op if there is
    /// none.
    pub fn delete_processing_time_timer(
        &mut self,
        timestamp: Timestamp,
    ) -> Result<(), TimerServiceError> {
        let (wheel, key) = self.wheel(TimeDomain::ProcessingTime)?;
        wheel.delete(key, timestamp);
        Ok(())
    }

    /// The current key's pending timers in `domain`, in ascending timestamp order.
    pub fn timers(&mut self, domain: TimeDomain) -> Result<Vec<Timestamp>, TimerServiceError> {
        let (wheel, key) = self.wheel(domain)?;
        Ok(wheel.timers_for_key(key))
    }

    /// How many timers the current key has pending in `domain`.
    pub fn timer_count(&mut self, domain: TimeDomain) -> Result<usize, TimerServiceError> {
        let (wheel, key) = self.wheel(domain)?;
        Ok(wheel.count_for_key(key))
    }

    /// Deletes every pending timer of the current key in `domain`; returns how many there were.
    pub fn delete_all_timers(&mut self, domain: TimeDomain) -> Result<usize, TimerServiceError> {
        let (wheel, key) = self.wheel(domain)?;
        Ok(wheel.delete_all_for_key(key))
    }
}

/// The context of `process_element` in a keyed function.
pub struct Context<'a, K> {
    /// Every key of the operator, by id; the current one is `keys[scope.key()]`.
    pub(crate) keys: &'a [K],
    pub(crate) scope: StateScope,
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) side_timestamp: Option<Timestamp>,
    pub(crate) timers: TimerService<'a>,
    pub(crate) side: &'a mut SideOutputs,
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
    /// The timestamp of the element being processed (`None` if it has none); in `on_timer`, the
    /// timer's timestamp, for both time domains (SEMANTICS A1.12).
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
        self.side.push(tag, value, self.side_timestamp);
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
    pub(crate) ctx: Context<'a, K>,
    pub(crate) domain: TimeDomain,
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
/// timer service refuses timers (SEMANTICS A1.1).
#[derive(Debug)]
pub struct ProcessContext<'a> {
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) side_timestamp: Option<Timestamp>,
    pub(crate) timers: TimerService<'a>,
    pub(crate) side: &'a mut SideOutputs,
}

impl<'a> ProcessContext<'a> {
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
